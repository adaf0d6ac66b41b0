//! Finding the kernel to put on the media: an explicit `--kernel/--modules` pair, else the newest kernel
//! in `/boot` with its `/lib/modules` tree, else Debian's `linux-image-amd64` fetched with
//! `apt-get download` into a cache under `target/` and unpacked with `dpkg-deb`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::util;

/// Where the kernel came from, for the build manifest.
#[derive(Debug, Clone, Serialize)]
pub struct KernelPackage {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

/// The kernel image and its modules tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
    /// Kernel release, the name of the modules directory (`6.1.0-27-amd64`).
    pub release: String,
    pub package: Option<KernelPackage>,
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

/// Debian's `linux-image-amd64` kernel: the package already in `cache` if there is one (so repeated
/// builds use the same kernel and need no network), else the current one downloaded and unpacked.
pub fn debian_package(cache: &Path) -> anyhow::Result<Kernel> {
    let downloads = cache.join("debs");
    if let Some(deb) = find_deb(&downloads, "linux-image-") {
        return unpack(cache, &deb);
    }
    if !util::have("apt-get") || !util::have("apt-cache") {
        bail!(
            "no kernel found in /boot and no apt-get to download one: pass --kernel PATH --modules DIR"
        );
    }
    crate::deps::apt_update()?;
    // linux-image-amd64 is a metapackage: its first dependency names the real image package.
    let depends = util::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("asking apt which kernel linux-image-amd64 depends on")?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .context("apt-cache depends linux-image-amd64 names no linux-image-* package")?;
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    eprintln!("xtask: downloading {package} with apt-get download");
    util::run(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&downloads),
    )?;
    let deb = find_deb(&downloads, &format!("{package}_")).with_context(|| {
        format!(
            "apt-get download left no {package}_*.deb in {}",
            downloads.display()
        )
    })?;
    unpack(cache, &deb)
}

/// Unpacks a kernel package into the cache (once) and finds its kernel and modules.
fn unpack(cache: &Path, deb: &Path) -> anyhow::Result<Kernel> {
    let file = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut fields = file.trim_end_matches(".deb").split('_');
    let name = fields.next().unwrap_or_default().to_owned();
    let version = fields.next().unwrap_or("unknown").replace("%3a", ":");
    let root = cache.join("root").join(file.trim_end_matches(".deb"));
    if !root.join("boot").is_dir() {
        let tmp = root.with_extension("partial");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        util::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
        fs::rename(&tmp, &root)?;
    }
    let mut kernel =
        newest_installed(&root.join("boot"), &root.join("lib/modules")).with_context(|| {
            format!(
                "{} holds no vmlinuz with a matching modules directory",
                deb.display()
            )
        })?;
    kernel.package = Some(KernelPackage {
        name,
        version,
        sha256: util::sha256_file(deb)?,
        file,
    });
    Ok(kernel)
}

fn find_deb(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// Picks the kernel as documented in the module doc.
pub fn resolve(
    explicit_kernel: Option<&Path>,
    explicit_modules: Option<&Path>,
    cache: &Path,
) -> anyhow::Result<Kernel> {
    match (explicit_kernel, explicit_modules) {
        (Some(k), Some(m)) => explicit(k, m),
        (Some(_), None) | (None, Some(_)) => bail!("--kernel and --modules go together"),
        (None, None) => match newest_installed(Path::new("/boot"), Path::new("/lib/modules")) {
            Some(k) => Ok(k),
            None => debian_package(cache),
        },
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
