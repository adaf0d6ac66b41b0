//! The few host programs the rescue system runs: `mkfs.ext4` (e2fsprogs) and `mkfs.exfat` (exfatprogs),
//! copied from the build host into the initramfs with their shared-library closure and the dynamic
//! loader (resolved by `initramfs::elf::library_closure` against the host's library directories).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use initramfs::cpio::Archive;

/// Programs copied into `sbin/` of the initramfs.
pub const TOOLS: &[&str] = &["mkfs.ext4", "mkfs.exfat"];

const PROGRAM_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];
/// Where the libraries go in the initramfs: a directory the Debian loader searches without ld.so.cache.
const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// A file the builder put into the initramfs from the host.
#[derive(Debug, serde::Serialize)]
pub struct ToolFile {
    pub name: String,
    pub from: String,
    pub sha256: String,
    pub size: u64,
}

fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found in {}", PROGRAM_DIRS.join(" ")))
}

fn read_real(path: &Path) -> anyhow::Result<Vec<u8>> {
    let real = fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
    fs::read(&real).with_context(|| format!("reading {}", real.display()))
}

/// Adds every tool, its libraries and the loader to `archive`; returns what was added.
pub fn add_tools(archive: &mut Archive) -> anyhow::Result<Vec<ToolFile>> {
    let mut records = Vec::new();
    let mut bins = Vec::new();
    for name in TOOLS {
        let path = find_program(name)?;
        let bytes = read_real(&path)?;
        bins.push((name.to_string(), path, bytes));
    }
    let roots: Vec<&[u8]> = bins.iter().map(|(_, _, b)| b.as_slice()).collect();
    let closure = initramfs::elf::library_closure(&roots, |lib| {
        LIBRARY_DIRS.iter().find_map(|d| {
            let p = Path::new(d).join(lib);
            let bytes = read_real(&p).ok()?;
            Some((p.display().to_string(), bytes))
        })
    })
    .context("resolving the shared libraries of the initramfs tools")?;
    if !closure.missing.is_empty() {
        bail!(
            "shared libraries of {} not found in {}: {}",
            TOOLS.join(", "),
            LIBRARY_DIRS.join(" "),
            closure.missing.join(", ")
        );
    }
    let mut dirs = BTreeSet::from([LIB_DIR.to_owned(), "sbin".to_owned()]);
    for interp in &closure.interpreters {
        if let Some(parent) = Path::new(interp.trim_start_matches('/')).parent() {
            dirs.insert(parent.display().to_string());
        }
    }
    for d in &dirs {
        // Parents first: "lib" before "lib/x86_64-linux-gnu".
        let mut acc = String::new();
        for part in d.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            archive.add_dir(&acc, 0o755);
        }
    }
    let mut add = |name: String, from: String, mode: u32, bytes: Vec<u8>| {
        records.push(ToolFile {
            name: name.clone(),
            from,
            sha256: crate::util::sha256_hex(&bytes),
            size: bytes.len() as u64,
        });
        archive.add_file(&name, mode, bytes);
    };
    for (name, path, bytes) in bins {
        add(
            format!("sbin/{name}"),
            path.display().to_string(),
            0o755,
            bytes,
        );
    }
    let mut copied = BTreeSet::new();
    let mut links = Vec::new();
    for (path, bytes) in closure.libraries {
        let file = Path::new(&path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        copied.insert(format!("{LIB_DIR}/{file}"));
        add(format!("{LIB_DIR}/{file}"), path, 0o755, bytes);
    }
    for interp in closure.interpreters {
        let file = Path::new(&interp)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_lib_dir = format!("{LIB_DIR}/{file}");
        if copied.contains(&in_lib_dir) {
            // libc names the loader too: one copy, and the PT_INTERP path points at it.
            links.push((
                interp.trim_start_matches('/').to_owned(),
                format!("/{in_lib_dir}"),
            ));
        } else {
            let bytes = read_real(Path::new(&interp))?;
            add(
                interp.trim_start_matches('/').to_owned(),
                interp,
                0o755,
                bytes,
            );
        }
    }
    for (path, target) in links {
        archive.add_symlink(&path, &target);
    }
    // mke2fs looks for mounted filesystems in /etc/mtab.
    archive.add_symlink("etc/mtab", "/proc/self/mounts");
    Ok(records)
}
