//! Finding the kernel to put on the media: an explicit `--kernel/--modules` pair (an override, recorded
//! as such in the build manifest), else the kernel package pinned in `xtask/inputs.lock`, fetched and
//! checked by [`crate::inputs`] and unpacked with `dpkg-deb` into a cache under `target/`. The build
//! host's own `/boot` is never looked at.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::inputs;

/// The kernel image and its modules tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
    /// Kernel release, the name of the modules directory (`6.1.0-27-amd64`).
    pub release: String,
    /// The pinned package it came from; `None` for a `--kernel/--modules` override.
    pub package: Option<inputs::Pin>,
    /// `/lib/firmware` of the same root, when there is one.
    pub firmware_dir: PathBuf,
}

/// Resolves the kernel from explicit paths.
pub fn explicit(vmlinuz: &Path, modules: &Path) -> anyhow::Result<Kernel> {
    if !vmlinuz.is_file() {
        bail!("kernel {} does not exist", vmlinuz.display());
    }
    if !modules.join("modules.builtin").is_file() && !modules.join("modules.dep").is_file() {
        bail!(
            "{} is not a kernel modules directory (no modules.dep or modules.builtin); pass the /lib/modules/<release> directory matching {}",
            modules.display(),
            vmlinuz.display()
        );
    }
    let release = modules
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Kernel {
        vmlinuz: vmlinuz.to_owned(),
        modules_dir: modules.to_owned(),
        release,
        package: None,
        firmware_dir: PathBuf::from("/lib/firmware"),
    })
}

/// The release (`6.1.0-27-amd64`) from a bzImage's setup header: at 0x202 the magic `HdrS`, at 0x20E the
/// offset (minus 0x200) of a NUL-terminated version string whose first word is the release.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = usize::from(u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?])) + 0x200;
    let tail = image.get(ptr..)?;
    let end = tail.iter().take(256).position(|b| *b == 0)?;
    let text = std::str::from_utf8(&tail[..end]).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// Compares kernel releases like `6.1.0-27-amd64` numerically where they are numbers.
fn release_key(release: &str) -> Vec<(u64, String)> {
    release
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_owned()))
        .collect()
}

/// The newest `/boot/vmlinuz-*` that has a matching `/lib/modules/<release>`.
pub fn newest_installed(boot: &Path, modules_root: &Path) -> Option<Kernel> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(boot)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let release = name.strip_prefix("vmlinuz-")?.to_owned();
            modules_root
                .join(&release)
                .join("modules.builtin")
                .is_file()
                .then(|| (release, e.path()))
        })
        .collect();
    found.sort_by_key(|(r, _)| release_key(r));
    let (release, vmlinuz) = found.pop()?;
    Some(Kernel {
        modules_dir: modules_root.join(&release),
        release,
        vmlinuz,
        package: None,
        firmware_dir: PathBuf::from("/lib/firmware"),
    })
}

/// The kernel pinned in the lock (role `kernel`): its `.deb` fetched and checked by [`inputs::fetch`],
/// unpacked once into the cache (keyed by the file, whose sha256 the lock fixes).
pub fn pinned(lock: &inputs::Lock, cache: &Path) -> anyhow::Result<Kernel> {
    let pin = lock.role("kernel")?;
    let deb = inputs::fetch(pin)?;
    let root = cache
        .join("root")
        .join(pin.file_name().trim_end_matches(".deb"));
    inputs::unpack(&deb, &root)?;
    let mut kernel =
        newest_installed(&root.join("boot"), &root.join("lib/modules")).with_context(|| {
            format!(
                "{} holds no vmlinuz with a matching modules directory",
                pin.file_name()
            )
        })?;
    // Firmware only from pinned packages too (the kernel package has none): never the build host's.
    kernel.firmware_dir = root.join("lib/firmware");
    kernel.package = Some(pin.clone());
    Ok(kernel)
}

/// The kernel as documented in the module doc: `--kernel/--modules` (an override the manifest records),
/// else the pinned package.
pub fn resolve(
    explicit_kernel: Option<&Path>,
    explicit_modules: Option<&Path>,
    lock: &inputs::Lock,
    cache: &Path,
) -> anyhow::Result<Kernel> {
    match (explicit_kernel, explicit_modules) {
        (Some(k), Some(m)) => explicit(k, m),
        (Some(_), None) | (None, Some(_)) => bail!("--kernel and --modules go together"),
        (None, None) => pinned(lock, cache),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_release_wins_numerically() {
        let dir = tempfile_dir();
        for r in ["6.1.0-9-amd64", "6.1.0-27-amd64", "6.1.0-10-amd64"] {
            fs::write(dir.join(format!("boot/vmlinuz-{r}")), b"k").unwrap();
            fs::create_dir_all(dir.join(format!("lib/modules/{r}"))).unwrap();
            fs::write(dir.join(format!("lib/modules/{r}/modules.builtin")), b"").unwrap();
        }
        fs::write(dir.join("boot/vmlinuz-7.0.0-no-modules"), b"k").unwrap();
        let k = newest_installed(&dir.join("boot"), &dir.join("lib/modules")).unwrap();
        assert_eq!(k.release, "6.1.0-27-amd64");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bzimage_release_is_read_from_the_setup_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x0400u16.to_le_bytes());
        let v = b"6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        img[0x600..0x600 + v.len()].copy_from_slice(v);
        assert_eq!(bzimage_release(&img).as_deref(), Some("6.1.0-57-amd64"));
        img[0x202] = b'X';
        assert_eq!(bzimage_release(&img), None);
        assert_eq!(bzimage_release(&img[..0x100]), None);
    }

    #[test]
    fn explicit_kernel_needs_a_modules_directory() {
        let dir = tempfile_dir();
        fs::write(dir.join("boot/vmlinuz-x"), b"k").unwrap();
        let err = explicit(&dir.join("boot/vmlinuz-x"), &dir.join("boot")).unwrap_err();
        assert!(
            err.to_string().contains("not a kernel modules directory"),
            "{err}"
        );
        let err = explicit(&dir.join("boot/missing"), &dir).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xtask-kernel-test-{}-{n}", std::process::id()));
        fs::create_dir_all(dir.join("boot")).unwrap();
        dir
    }
}
