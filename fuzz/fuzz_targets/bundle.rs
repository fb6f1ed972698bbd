//! Bundle headers and whole-bundle verification. The fuzzer cannot forge a
//! signature, so half the inputs are signed here with a key the verifier
//! trusts: that reaches the checks behind the signature (target, ABI, the
//! image's own descriptor, header against descriptor).
#![no_main]
use bundle::{BundleHeader, Target, TrustedKey, DIGEST_LEN, HEADER_LEN, MAX_IMAGE, SIGNATURE_LEN};
use ed25519_compact::{KeyPair, Seed};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::mem::offset_of;
use std::sync::OnceLock;

fn signer() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| KeyPair::from_seed(Seed::new([9; 32])))
}

fn check(bundle: &[u8], keys: &[TrustedKey]) {
    let read = |img: &[u8]| update_manager::image::descriptor(img).ok();
    if let Ok(v) = bundle::verify(bundle, Target::Host, keys, read) {
        assert_eq!(v.image.len() as u64, v.header.image_len);
        assert_eq!(v.header.bundle_len(), bundle.len() as u64);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if let Ok(h) = BundleHeader::parse(rest) {
        assert!(h.image_len > 0 && h.image_len <= MAX_IMAGE && h.n_import_schemas <= 4);
        assert!(h.check_length(h.bundle_len()).is_ok());
    }
    let trusted = [TrustedKey([7; 32]), TrustedKey(*signer().pk)];
    if mode & 1 == 0 {
        // As received: `rest` is the whole bundle.
        check(rest, &trusted);
        return;
    }
    // `rest` is header | image; fix the lengths and key id, then sign.
    if rest.len() <= HEADER_LEN {
        return;
    }
    let mut b = rest.to_vec();
    let image_len = (rest.len() - HEADER_LEN) as u64;
    let (len_at, id_at) = (offset_of!(BundleHeader, image_len), offset_of!(BundleHeader, key_id));
    b[len_at..len_at + 8].copy_from_slice(&image_len.to_le_bytes());
    b[id_at..id_at + 8].copy_from_slice(&bundle::key_id(&signer().pk));
    let digest = Sha256::digest(&b);
    b.extend_from_slice(&digest);
    let sig = signer().sk.sign(&b, None);
    b.extend_from_slice(sig.as_ref());
    assert_eq!(b.len(), HEADER_LEN + image_len as usize + DIGEST_LEN + SIGNATURE_LEN);
    let read = |img: &[u8]| update_manager::image::descriptor(img).ok();
    if let Ok(v) = bundle::verify(&b, Target::Host, &trusted, read) {
        // Only a real module image with a matching header gets here.
        let d = update_manager::image::descriptor(v.image).expect("verified image has a descriptor");
        assert_eq!(d.service.as_str(), v.header.service.as_str());
        assert_eq!((d.module_version, d.state_schema), (v.header.module_version, v.header.state_schema));
    }
});
