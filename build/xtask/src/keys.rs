//! `cargo xtask keygen` and `cargo xtask sign`: ed25519 keys and signed
//! update bundles.
use bundle::sign::{make_bundle, SigningKey};
use bundle::Target;
use std::path::{Path, PathBuf};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str, what: &Path) -> Result<[u8; 32], String> {
    let t = text.split_whitespace().next().unwrap_or("");
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{}: not a 32-byte hex key", what.display()));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// Reads a `.key` file (a hex seed).
pub fn load_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(SigningKey::from_seed(unhex32(&text, path)?))
}

/// Writes `STEM.key` (secret, mode 0600) and `STEM.pub`; refuses to
/// overwrite an existing key.
pub fn keygen(stem: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (secret, public) = (stem.with_extension("key"), stem.with_extension("pub"));
    for p in [&secret, &public] {
        if p.exists() {
            return Err(format!("{} exists: refusing to overwrite a key", p.display()));
        }
    }
    let mut seed = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?, &mut seed)
        .map_err(|e| e.to_string())?;
    let key = SigningKey::from_seed(seed);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .map_err(|e| format!("{}: {e}", secret.display()))?;
    std::io::Write::write_all(&mut f, format!("{}\n", hex(&key.seed())).as_bytes()).map_err(|e| e.to_string())?;
    std::fs::write(&public, format!("{}\n", hex(&key.public()))).map_err(|e| format!("{}: {e}", public.display()))?;
    Ok((secret, public))
}

/// The public key file contents for a secret key (e.g. to check a pair).
pub fn public_of(key: &SigningKey) -> String {
    format!("{}\n", hex(&key.public()))
}

/// Signs `image` (a module built for `target`) into a bundle at `out`.
pub fn sign(key: &Path, target: Target, image: &Path, out: &Path) -> Result<(), String> {
    let key = load_key(key)?;
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let arch = match target {
        Target::Host => update_manager::image::Architecture::X86_64,
        Target::Aarch64Sel4 => update_manager::image::Architecture::Aarch64,
    };
    let d = update_manager::image::descriptor_for(&bytes, arch).map_err(|e| format!("{}: {e}", image.display()))?;
    if bytes.len() as u64 > bundle::MAX_IMAGE {
        return Err(format!(
            "{}: {} bytes exceed the {}-byte bundle limit",
            image.display(),
            bytes.len(),
            bundle::MAX_IMAGE
        ));
    }
    let b = make_bundle(&bytes, &d, target, &key);
    std::fs::write(out, &b).map_err(|e| format!("{}: {e}", out.display()))
}
