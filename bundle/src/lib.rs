//! Signed update bundles.
//!
//! A bundle carries one module image from the build machine to a running
//! system: `header | image | SHA-256(header | image) | ed25519 signature over
//! (header | image | digest)`. The manager holds the trusted public keys (set
//! at build time) and admits a bundle only when every check passes:
//!
//! - the header is well formed and its lengths add up, checked before any
//!   byte of the image is stored ([`BundleHeader::check_length`]);
//! - the digest matches and the signature verifies under a trusted key;
//! - the target, ABI and service are this system's, and the header agrees
//!   with the descriptor inside the image.
//!
//! Every refusal names its reason ([`BundleError`]).
#![no_std]

#[cfg(feature = "sign")]
extern crate std;

use interfaces::abi::{ModuleDescriptor, ABI_VERSION};
use interfaces::Name;
use sha2::{Digest, Sha256};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAGIC: [u8; 8] = *b"UPDBNDL1";
pub const FORMAT_VERSION: u32 = 1;
pub const DIGEST_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
pub const PUBLIC_KEY_LEN: usize = 32;
/// The largest image a bundle may carry (a slot's code region).
pub const MAX_IMAGE: u64 = 2 << 20;

/// What a bundle's image runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Target {
    /// The host runtime (x86-64 shared objects).
    Host = 1,
    /// seL4 Microkit on aarch64.
    Aarch64Sel4 = 2,
}

impl Target {
    pub fn from_u32(v: u32) -> Option<Target> {
        match v {
            1 => Some(Target::Host),
            2 => Some(Target::Aarch64Sel4),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Host => "host",
            Target::Aarch64Sel4 => "aarch64-sel4",
        }
    }
    pub fn parse(s: &str) -> Option<Target> {
        [Target::Host, Target::Aarch64Sel4].into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BundleHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub header_size: u32,
    pub service: Name,
    pub module_version: u32,
    pub abi_version: u32,
    pub target: u32,
    pub state_schema: u32,
    /// Schemas the module can import from (its own is implied).
    pub import_schemas: [u32; 4],
    pub n_import_schemas: u32,
    pub _reserved: u32,
    pub image_len: u64,
    /// The first 8 bytes of SHA-256 of the signing public key.
    pub key_id: [u8; 8],
}

pub const HEADER_LEN: usize = core::mem::size_of::<BundleHeader>();

/// Why a bundle is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    BadMagic,
    FormatVersion(u32),
    HeaderSize(u32),
    BadName,
    /// The image is larger than any slot's code region.
    TooLarge(u64),
    /// The bundle's length does not match the header's image length.
    Length {
        expected: u64,
        got: u64,
    },
    Truncated,
    DigestMismatch,
    UnknownKey([u8; 8]),
    BadSignature,
    WrongTarget {
        bundle: u32,
        system: Target,
    },
    WrongAbi(u32),
    /// The header disagrees with the descriptor inside the image.
    HeaderMismatch(&'static str),
    /// The image's own descriptor is unreadable.
    BadImage,
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::BadMagic => write!(f, "not an update bundle (bad magic)"),
            BundleError::FormatVersion(v) => {
                write!(f, "bundle format version {v} is not supported (this system reads {FORMAT_VERSION})")
            }
            BundleError::HeaderSize(s) => write!(f, "bundle header size {s} is wrong"),
            BundleError::BadName => write!(f, "bundle header names a service that is not valid text"),
            BundleError::TooLarge(n) => write!(f, "bundle image of {n} bytes exceeds the {MAX_IMAGE}-byte limit"),
            BundleError::Length { expected, got } => {
                write!(f, "bundle is {got} bytes but its header implies {expected}")
            }
            BundleError::Truncated => write!(f, "bundle is truncated"),
            BundleError::DigestMismatch => write!(f, "bundle digest does not match: corrupted in transit"),
            BundleError::UnknownKey(id) => {
                write!(f, "bundle is signed by an unknown key (id ")?;
                id.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
                write!(f, ")")
            }
            BundleError::BadSignature => write!(f, "bundle signature does not verify"),
            BundleError::WrongTarget { bundle, system } => match Target::from_u32(*bundle) {
                Some(t) => write!(f, "bundle is built for {}, this system is {}", t.as_str(), system.as_str()),
                None => write!(f, "bundle names unknown target {bundle}"),
            },
            BundleError::WrongAbi(v) => write!(f, "bundle module speaks ABI v{v}, this system speaks v{ABI_VERSION}"),
            BundleError::HeaderMismatch(what) => write!(f, "bundle header and module image disagree on the {what}"),
            BundleError::BadImage => write!(f, "bundle image carries no readable module descriptor"),
        }
    }
}

/// A trusted public key.
#[derive(Clone, Copy)]
pub struct TrustedKey(pub [u8; PUBLIC_KEY_LEN]);

impl TrustedKey {
    pub fn id(&self) -> [u8; 8] {
        key_id(&self.0)
    }
}

pub fn key_id(public: &[u8; PUBLIC_KEY_LEN]) -> [u8; 8] {
    let d = Sha256::digest(public);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

impl BundleHeader {
    /// Validates a header read from a peer, before anything else of the
    /// bundle is looked at or stored.
    pub fn parse(bytes: &[u8]) -> Result<BundleHeader, BundleError> {
        let (h, _) = BundleHeader::read_from_prefix(bytes).map_err(|_| BundleError::Truncated)?;
        if h.magic != MAGIC {
            return Err(BundleError::BadMagic);
        }
        if h.format_version != FORMAT_VERSION {
            return Err(BundleError::FormatVersion(h.format_version));
        }
        if h.header_size as usize != HEADER_LEN {
            return Err(BundleError::HeaderSize(h.header_size));
        }
        if h.service.as_str().is_none_or(str::is_empty) || h.n_import_schemas > 4 {
            return Err(BundleError::BadName);
        }
        if h.image_len == 0 || h.image_len > MAX_IMAGE {
            return Err(BundleError::TooLarge(h.image_len));
        }
        Ok(h)
    }

    /// The whole bundle's length, as this header says.
    pub fn bundle_len(&self) -> u64 {
        HEADER_LEN as u64 + self.image_len + (DIGEST_LEN + SIGNATURE_LEN) as u64
    }

    /// Checks a announced total length against the header, so a receiver
    /// can refuse an oversize upload before storing a byte of it.
    pub fn check_length(&self, total: u64) -> Result<(), BundleError> {
        if total != self.bundle_len() {
            return Err(BundleError::Length { expected: self.bundle_len(), got: total });
        }
        Ok(())
    }
}

/// A verified bundle: its header and its image.
pub struct Verified<'a> {
    pub header: BundleHeader,
    pub image: &'a [u8],
}

/// Verifies a complete bundle for a system of `target` trusting `keys`.
/// `descriptor` reads the module descriptor out of an image (the manager's
/// image reader), so the header can be checked against the image itself.
pub fn verify<'a>(
    bundle: &'a [u8],
    target: Target,
    keys: &[TrustedKey],
    descriptor: impl FnOnce(&[u8]) -> Option<ModuleDescriptor>,
) -> Result<Verified<'a>, BundleError> {
    let h = BundleHeader::parse(bundle)?;
    h.check_length(bundle.len() as u64)?;
    let signed_end = bundle.len() - SIGNATURE_LEN;
    let body_end = signed_end - DIGEST_LEN;
    let digest = Sha256::digest(&bundle[..body_end]);
    if digest.as_slice() != &bundle[body_end..signed_end] {
        return Err(BundleError::DigestMismatch);
    }
    let key = keys.iter().find(|k| k.id() == h.key_id).ok_or(BundleError::UnknownKey(h.key_id))?;
    let public = ed25519_compact::PublicKey::new(key.0);
    let sig = ed25519_compact::Signature::from_slice(&bundle[signed_end..]).map_err(|_| BundleError::BadSignature)?;
    public.verify(&bundle[..signed_end], &sig).map_err(|_| BundleError::BadSignature)?;
    // Signed, so from a trusted builder; still, check it fits this system.
    if h.target != target as u32 {
        return Err(BundleError::WrongTarget { bundle: h.target, system: target });
    }
    if h.abi_version != ABI_VERSION {
        return Err(BundleError::WrongAbi(h.abi_version));
    }
    let image = &bundle[HEADER_LEN..body_end];
    let d = descriptor(image).ok_or(BundleError::BadImage)?;
    if d.service.as_str() != h.service.as_str() {
        return Err(BundleError::HeaderMismatch("service"));
    }
    if d.module_version != h.module_version {
        return Err(BundleError::HeaderMismatch("module version"));
    }
    if d.state_schema != h.state_schema {
        return Err(BundleError::HeaderMismatch("state schema"));
    }
    Ok(Verified { header: h, image })
}

#[cfg(feature = "sign")]
pub mod sign;
