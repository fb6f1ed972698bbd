//! The images the manager can load: the built-in store (a read-only
//! region written by the image build) and the images uploaded since (see
//! `uploads`). Each is listed with its descriptor, or why it is refused.
use crate::image::{self, Image};
use alloc::{format, string::String, vec::Vec};
use interfaces::store::Store;

#[derive(Default)]
pub struct ImageStore {
    images: Vec<Image>,
}

impl ImageStore {
    /// The images of a built-in store region.
    pub fn parse(bytes: &'static [u8]) -> Result<ImageStore, String> {
        let store = Store::parse(bytes).map_err(|e| format!("{e}"))?;
        let images =
            store.images().map(|(name, bytes)| Image { name, bytes, descriptor: image::descriptor(bytes) }).collect();
        Ok(ImageStore { images })
    }

    pub fn get(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Image> {
        self.images.iter()
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// The lowest version of `service` at or above `floor`: the one a
    /// service boots with.
    pub fn first_of(&self, service: &str, floor: u32) -> Option<&'static str> {
        self.images
            .iter()
            .filter_map(|i| {
                i.descriptor.as_ref().ok().filter(|d| d.service() == service).map(|d| (d.module_version, i.name))
            })
            .filter(|&(v, _)| v >= floor)
            .min()
            .map(|(_, n)| n)
    }

    /// Lists an image (an upload, verified and admitted).
    pub fn add(&mut self, image: Image) {
        self.images.push(image);
    }

    /// Unlists the image named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Image> {
        let i = self.images.iter().position(|i| i.name == name)?;
        Some(self.images.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interfaces::abi::ModuleDescriptor;

    #[test]
    fn a_service_boots_with_its_lowest_version_at_or_above_the_floor() {
        let image = |name, d: Result<ModuleDescriptor, String>| Image { name, bytes: b"", descriptor: d };
        let mut store = ImageStore::default();
        store.add(image("kv-v3", Ok(ModuleDescriptor::new("kv", 3, 3))));
        store.add(image("kv-v2", Ok(ModuleDescriptor::new("kv", 2, 2))));
        store.add(image("kv-bad", Err("not a module".into())));
        store.add(image("fs-v1", Ok(ModuleDescriptor::new("fs", 1, 1))));
        assert_eq!(store.first_of("kv", 0), Some("kv-v2"));
        assert_eq!(store.first_of("kv", 3), Some("kv-v3"));
        assert_eq!(store.first_of("kv", 4), None);
        assert_eq!(store.first_of("db", 0), None);
        assert_eq!(store.remove("kv-v2").map(|i| i.name), Some("kv-v2"));
        assert_eq!(store.first_of("kv", 0), Some("kv-v3"));
        assert!(store.remove("kv-v2").is_none() && store.get("kv-bad").is_some());
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_store_that_is_not_one_is_refused() {
        static GARBAGE: [u8; 64] = [0xa5; 64];
        assert!(ImageStore::parse(&GARBAGE).is_err());
    }
}
