//! Every way a bundle can be wrong is refused with its own reason; a good
//! bundle of a real module image verifies.
use bundle::sign::{make_bundle, SigningKey};
use bundle::{verify, BundleError, BundleHeader, Target, TrustedKey, HEADER_LEN, MAX_IMAGE, SIGNATURE_LEN};
use interfaces::abi::ModuleDescriptor;
use std::sync::OnceLock;
use zerocopy::IntoBytes;

fn image() -> &'static [u8] {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| xtask::build_module("kv-v1").expect("build kv-v1"))
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

fn descriptor() -> ModuleDescriptor {
    update_manager::image::descriptor(image()).unwrap()
}

fn check(bundle: &[u8], keys: &[TrustedKey]) -> Result<(), BundleError> {
    verify(bundle, Target::Host, keys, |img| update_manager::image::descriptor(img).ok()).map(|_| ())
}

fn trusted() -> Vec<TrustedKey> {
    vec![TrustedKey(key(1).public())]
}

#[test]
fn a_good_bundle_verifies() {
    let b = make_bundle(image(), &descriptor(), Target::Host, &key(1));
    let v = verify(&b, Target::Host, &trusted(), |img| update_manager::image::descriptor(img).ok()).unwrap();
    assert_eq!(v.image, image());
    assert_eq!(v.header.service.as_str(), Some("kv"));
}

#[test]
fn each_hostile_bundle_is_refused_with_its_reason() {
    let d = descriptor();
    let good = make_bundle(image(), &d, Target::Host, &key(1));
    let mut cases: Vec<(&str, Vec<u8>, Vec<TrustedKey>, BundleError)> = Vec::new();
    let mut bad_sig = good.clone();
    *bad_sig.last_mut().unwrap() ^= 1;
    cases.push(("bad signature", bad_sig, trusted(), BundleError::BadSignature));
    let other = make_bundle(image(), &d, Target::Host, &key(2));
    let id = bundle::key_id(&key(2).public());
    cases.push(("unknown key", other, trusted(), BundleError::UnknownKey(id)));
    let mut corrupt = good.clone();
    corrupt[HEADER_LEN + 100] ^= 0x40;
    cases.push(("corrupted image", corrupt, trusted(), BundleError::DigestMismatch));
    let truncated = good[..good.len() - 10].to_vec();
    let expected = good.len() as u64;
    cases.push(("truncated", truncated, trusted(), BundleError::Length { expected, got: expected - 10 }));
    cases.push((
        "wrong target",
        make_bundle(image(), &d, Target::Aarch64Sel4, &key(1)),
        trusted(),
        BundleError::WrongTarget { bundle: 2, system: Target::Host },
    ));
    let mut abi = d;
    abi.abi_version = 9;
    cases.push(("wrong ABI", make_bundle(image(), &abi, Target::Host, &key(1)), trusted(), BundleError::WrongAbi(9)));
    let mut svc = d;
    svc.service = interfaces::Name::new("blob");
    cases.push((
        "service mismatch",
        make_bundle(image(), &svc, Target::Host, &key(1)),
        trusted(),
        BundleError::HeaderMismatch("service"),
    ));
    let mut ver = d;
    ver.module_version = 7;
    cases.push((
        "version mismatch",
        make_bundle(image(), &ver, Target::Host, &key(1)),
        trusted(),
        BundleError::HeaderMismatch("module version"),
    ));
    cases.push((
        "not an image",
        make_bundle(b"not an elf", &d, Target::Host, &key(1)),
        trusted(),
        BundleError::BadImage,
    ));
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push(("bad magic", magic, trusted(), BundleError::BadMagic));
    cases.push(("not a bundle", b"hello".to_vec(), trusted(), BundleError::Truncated));
    for (what, b, keys, want) in cases {
        assert_eq!(check(&b, &keys), Err(want), "{what}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn oversize_lengths_are_refused_from_the_header_alone() {
    let mut h = BundleHeader::parse(&make_bundle(image(), &descriptor(), Target::Host, &key(1))).unwrap();
    h.image_len = MAX_IMAGE + 1;
    assert_eq!(BundleHeader::parse(h.as_bytes()).err(), Some(BundleError::TooLarge(MAX_IMAGE + 1)));
    h.image_len = 100;
    assert_eq!(h.check_length(1 << 40).err(), Some(BundleError::Length { expected: h.bundle_len(), got: 1 << 40 }));
    let _ = SIGNATURE_LEN;
}
