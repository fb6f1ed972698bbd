//! Putting an admitted image where a slot can run it: the backend-specific
//! half of loading (the shell's `ModuleLoader` is the other half).
use alloc::{format, string::String, vec, vec::Vec};
use pd_api::Region;

/// A slot's code region as the manager sees it (writable here, read/execute
/// in the slot).
pub struct SlotCode<'a> {
    /// The slot PD's name.
    pub pd_name: &'a str,
    pub code: Region,
}

pub trait ImagePlacer {
    /// Writes `image` into `slot`'s code region (and does whatever the
    /// backend needs for the slot to run it, such as cache maintenance).
    /// Returns the words of the LOAD call that tells the shell to load it.
    fn place(&mut self, image: &[u8], slot: &SlotCode) -> Result<Vec<u64>, String>;
}

/// Host backend: the image is a shared object; its bytes go to the start of
/// the code region unchanged and the shell `dlopen`s them.
#[derive(Default)]
pub struct SharedObjectPlacer;

impl ImagePlacer for SharedObjectPlacer {
    fn place(&mut self, image: &[u8], slot: &SlotCode) -> Result<Vec<u64>, String> {
        if image.len() > slot.code.size {
            return Err(format!(
                "image ({} bytes) does not fit the code region ({} bytes)",
                image.len(),
                slot.code.size
            ));
        }
        // SAFETY: the code region is the manager's to write (read-only in
        // the slot), and the slot does not read it until told to load.
        unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), slot.code.base, image.len()) };
        Ok(vec![image.len() as u64])
    }
}
