//! The outside judge of a file service's disk image after its clients
//! stopped cleanly (tests/tests/fs.rs on the host, build/xtask/tests/qemu.rs
//! on seL4): `fsck.fat -n` must find nothing, and the image must hold
//! exactly the files the clients' models (`fsmodel NAME GENERATION LEN`,
//! logged by `checking_clients::fs::run` when it stops) say, byte for byte. Also
//! what the tests of both backends do to a fresh image: the damages of
//! the damaged-disk tests ([`damage`]), and the one complaint of
//! `fsck.fat` the directories tests accept ([`fsck_tolerating`]).
use std::collections::BTreeMap;
use std::path::Path;

/// A client's model of its files: name (`C0F3.BIN`) to (generation, length).
pub type Models = BTreeMap<String, (u32, u32)>;

/// The models in the clients' log lines (any prefix before `fsmodel `).
/// Every file must be known (`fsmodel NAME unknown` is an error).
pub fn models<'a>(log: impl IntoIterator<Item = &'a str>) -> Result<Models, String> {
    let mut model = Models::new();
    for l in log {
        let Some(rest) = l.split("fsmodel ").nth(1) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let parsed = match f[..] {
            [name, g, len] => g.parse::<u32>().ok().zip(len.parse::<u32>().ok()).map(|m| (name, m)),
            _ => None,
        };
        let Some((name, m)) = parsed else { return Err(format!("a file the client does not know at the end: {l}")) };
        if model.insert(name.to_owned(), m).is_some() {
            return Err(format!("{name} has two models"));
        }
    }
    Ok(model)
}

/// `fsck.fat -n` on `image`: Ok if it finds nothing, else its report.
pub fn fsck(image: &Path) -> Result<(), String> {
    let (clean, text) = run_fsck(image)?;
    if clean {
        Ok(())
    } else {
        Err(format!("fsck.fat -n found errors:\n{text}"))
    }
}

/// `fsck.fat -n` on `image`: whether it found nothing, and what it said.
fn run_fsck(image: &Path) -> Result<(bool, String), String> {
    let out = std::process::Command::new(crate::dosfstools("fsck.fat")?)
        .arg("-n")
        .arg(image)
        .output()
        .map_err(|e| format!("running fsck.fat: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// What `fsck.fat -n` says of a directory made in the root of a FAT32
/// volume by a release that writes its `..` entry with the root's cluster
/// number instead of 0 (see the README's *The file service*); it prints
/// the directory's path on the line before.
pub const BAD_DOT_DOT: &str = "  Invalid '..' entry in the second slot. Fixing.";

/// `fsck.fat -n` on `image`: Ok if it finds nothing but complaints in
/// `tolerated`, each a (path line, complaint line) pair as `fsck.fat`
/// prints them (e.g. `("/C0D", BAD_DOT_DOT)`); else its report. The
/// FSInfo free count the images leave "unknown" is not a complaint.
pub fn fsck_tolerating(image: &Path, tolerated: &[(&str, &str)]) -> Result<(), String> {
    let (_, text) = run_fsck(image)?;
    if !text.starts_with("fsck.fat ") {
        return Err(format!("fsck.fat -n did not run as expected:\n{text}"));
    }
    let complaints: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("Leaving filesystem unchanged") && !l.contains(" files, ") && !l.is_empty())
        .filter(|l| !l.starts_with("Free cluster summary uninitialized"))
        .collect();
    let pairs: Vec<(&str, &str)> = complaints.chunks(2).map(|p| (p[0], p.get(1).copied().unwrap_or(""))).collect();
    if pairs.iter().all(|p| tolerated.contains(p)) {
        Ok(())
    } else {
        Err(format!("fsck.fat -n found more than {tolerated:?}:\n{text}"))
    }
}

/// The damages [`damage`] knows.
pub const DAMAGES: [&str; 3] = ["loop", "boot", "fat"];

/// Damages a fresh image (of [`crate::make_disk_image`]: its boot sector
/// is block 0): `loop` makes the root directory's cluster chain lead back
/// to itself; `boot` zeroes the boot sector; `fat` fills the FAT with
/// bytes from a fixed pseudo-random sequence.
pub fn damage(image: &Path, how: &str) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let io = |e: std::io::Error| format!("{}: {e}", image.display());
    let f = std::fs::OpenOptions::new().read(true).write(true).open(image).map_err(io)?;
    let mut boot = [0u8; 512];
    f.read_exact_at(&mut boot, 0).map_err(io)?;
    let reserved = u16::from_le_bytes([boot[14], boot[15]]) as u64;
    let fat_sectors = u32::from_le_bytes(boot[36..40].try_into().unwrap()) as u64;
    let root = u32::from_le_bytes(boot[44..48].try_into().unwrap());
    match how {
        "loop" => f.write_all_at(&root.to_le_bytes(), reserved * 512 + root as u64 * 4).map_err(io),
        "boot" => f.write_all_at(&[0u8; 512], 0).map_err(io),
        "fat" => {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let bytes: Vec<u8> = (0..fat_sectors.min(64) * 512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            f.write_all_at(&bytes, reserved * 512).map_err(io)
        }
        _ => Err(format!("no damage '{how}' (known: {DAMAGES:?})")),
    }
}

/// The image's root directory holds exactly the files of `model`, each
/// of its length and with the bytes `pattern(client, file, generation,
/// offset)` (`checking_clients::fs::pattern`) for a name `C<client>F<file>.BIN`.
pub fn check_files(image: &Path, model: &Models, pattern: fn(u32, u32, u32, u32) -> u8) -> Result<(), String> {
    let on_disk = root_files(image)?;
    let names: Vec<&String> = on_disk.keys().collect();
    if names != model.keys().collect::<Vec<_>>() {
        return Err(format!("the root holds {names:?}, the clients' models {:?}", model.keys().collect::<Vec<_>>()));
    }
    for (name, &(generation, len)) in model {
        let b = name.as_bytes();
        let (n, k) = match b {
            [b'C', n, b'F', k, ..] if n.is_ascii_digit() && k.is_ascii_digit() => (n - b'0', k - b'0'),
            _ => return Err(format!("{name}: not a client's file")),
        };
        let data = &on_disk[name];
        if data.len() != len as usize {
            return Err(format!("{name}: {} bytes on the disk, {len} in the model", data.len()));
        }
        let bad = data.iter().enumerate().position(|(i, &b)| b != pattern(n as u32, k as u32, generation, i as u32));
        if let Some(i) = bad {
            return Err(format!("{name}: first wrong byte at offset {i} (generation {generation})"));
        }
    }
    Ok(())
}

/// Every file in the image's root directory, read with embedded-sdmmc.
pub fn root_files(image: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    files_in(image, None)
}

/// Every file in the image's root directory, or in its directory `dir` of
/// the root (`C0D`), read with embedded-sdmmc.
pub fn files_in(image: &Path, dir: Option<&str>) -> Result<BTreeMap<String, Vec<u8>>, String> {
    use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, Mode, VolumeIdx, VolumeManager};
    use std::os::unix::fs::FileExt;
    struct Img(std::fs::File);
    impl BlockDevice for Img {
        type Error = std::io::Error;
        fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
            for (i, b) in blocks.iter_mut().enumerate() {
                self.0.read_exact_at(&mut b.contents, (start.0 as u64 + i as u64) * 512)?;
            }
            Ok(())
        }
        fn write(&self, _: &[Block], _: BlockIdx) -> Result<(), Self::Error> {
            Err(std::io::Error::other("read-only"))
        }
        fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
            Ok(BlockCount((self.0.metadata()?.len() / 512) as u32))
        }
    }
    struct Clock;
    impl embedded_sdmmc::TimeSource for Clock {
        fn get_timestamp(&self) -> embedded_sdmmc::Timestamp {
            embedded_sdmmc::Timestamp::from_fat(0, 0)
        }
    }
    let file = std::fs::File::open(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let vm: VolumeManager<Img, Clock, 4, 4, 1> = VolumeManager::new_with_limits(Img(file), Clock, 0);
    fn e<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> String + '_ {
        move |e| format!("{what}: {e:?}")
    }
    let vol = vm.open_raw_volume(VolumeIdx(0)).map_err(e("opening the volume"))?;
    let mut root = vm.open_root_dir(vol).map_err(e("opening the root directory"))?;
    if let Some(dir) = dir {
        root = vm.open_dir(root, dir).map_err(e(dir))?;
    }
    let mut names = Vec::new();
    vm.iterate_dir(root, |d| {
        if !d.attributes.is_volume() && !d.attributes.is_directory() {
            names.push(d.name.to_string());
        }
    })
    .map_err(e("listing the directory"))?;
    let mut files = BTreeMap::new();
    for name in names {
        let f = vm.open_file_in_dir(root, name.as_str(), Mode::ReadOnly).map_err(e(&name))?;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = vm.read(f, &mut buf).map_err(e(&name))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        vm.close_file(f).map_err(e(&name))?;
        files.insert(name, data);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn models_are_read_from_any_log_line_and_unknown_files_refused() {
        let m = super::models(["fsc0: fsmodel C0F1.BIN 3 4096", "other", "[c1] fsmodel C1F0.BIN 1 7"]).unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), [("C0F1.BIN".into(), (3, 4096)), ("C1F0.BIN".into(), (1, 7))]);
        assert!(super::models(["fsmodel C0F1.BIN unknown"]).unwrap_err().contains("does not know"));
        assert!(super::models(["fsmodel C0F1.BIN 1 2", "fsmodel C0F1.BIN 1 2"]).unwrap_err().contains("two models"));
    }

    #[test]
    fn every_damage_makes_fsck_complain_and_a_fresh_image_is_clean() {
        let dir = std::env::temp_dir().join(format!("fs-image-damage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("disk.img");
        crate::make_disk_image(&image).unwrap();
        super::fsck_tolerating(&image, &[]).unwrap();
        assert!(super::damage(&image, "nonsense").unwrap_err().contains("no damage"));
        for how in super::DAMAGES {
            crate::make_disk_image(&image).unwrap();
            super::damage(&image, how).unwrap();
            assert!(super::fsck(&image).is_err(), "{how}");
            assert!(super::fsck_tolerating(&image, &[("/C0D", super::BAD_DOT_DOT)]).is_err(), "{how}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
