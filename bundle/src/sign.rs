//! Making bundles and keys (std: xtask and tests).
use super::*;
use std::vec::Vec;

/// An ed25519 key pair, stored as its 32-byte seed.
pub struct SigningKey {
    pair: ed25519_compact::KeyPair,
}

impl SigningKey {
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey { pair: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)) }
    }

    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        *self.pair.pk
    }

    pub fn seed(&self) -> [u8; 32] {
        *self.pair.sk.seed()
    }
}

/// Builds a signed bundle of `image`, whose descriptor is `d`.
pub fn make_bundle(image: &[u8], d: &ModuleDescriptor, target: Target, key: &SigningKey) -> Vec<u8> {
    let h = BundleHeader {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        header_size: HEADER_LEN as u32,
        service: d.service,
        module_version: d.module_version,
        abi_version: d.abi_version,
        target: target as u32,
        state_schema: d.state_schema,
        import_schemas: d.import_schemas,
        n_import_schemas: d.n_import_schemas,
        _reserved: 0,
        image_len: image.len() as u64,
        key_id: key_id(&key.public()),
    };
    let mut out = Vec::with_capacity(h.bundle_len() as usize);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(image);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    let sig = key.pair.sk.sign(&out, None);
    out.extend_from_slice(sig.as_ref());
    out
}
