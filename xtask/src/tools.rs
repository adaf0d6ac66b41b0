//! The few programs the rescue system runs: `mkfs.ext4` (e2fsprogs) and `mkfs.exfat` (exfatprogs), put
//! into the initramfs with their shared-library closure and the dynamic loader, all taken from the
//! packages pinned in `xtask/inputs.lock` (roles `tool` and `library`), unpacked with `dpkg-deb` into
//! the cache. Nothing comes from the build host's own files (resolved by
//! `initramfs::elf::library_closure`, symlinks followed inside each package's tree).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use initramfs::cpio::Archive;

use crate::inputs::{self, Lock, Pin};

/// Programs copied into `sbin/` of the initramfs.
pub const TOOLS: &[&str] = &["mkfs.ext4", "mkfs.exfat"];

const PROGRAM_DIRS: &[&str] = &["usr/sbin", "sbin", "usr/bin", "bin"];
const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];
/// Where the libraries go in the initramfs: a directory the Debian loader searches without ld.so.cache.
const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// A file the builder put into the initramfs from a pinned package.
#[derive(Debug, serde::Serialize)]
pub struct ToolFile {
    pub name: String,
    /// `package_version_arch.deb:/path/in/package`.
    pub from: String,
    pub sha256: String,
    pub size: u64,
}

/// One pinned package, unpacked.
struct Tree {
    pin: Pin,
    root: PathBuf,
}

impl Tree {
    fn origin(&self, rel: &Path) -> String {
        format!("{}:/{}", self.pin.file_name(), rel.display())
    }
}

/// `rel` inside `root`, following symlinks inside the tree (an absolute target means the tree's own
/// root, never the build host's). `None` when it is not there or leaves the tree.
fn resolve_in(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut rel = rel.to_owned();
    for _ in 0..16 {
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(rel);
        }
        let target = fs::read_link(&full).ok()?;
        rel = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_owned()
        } else {
            let mut r = rel.parent()?.to_owned();
            for c in target.components() {
                match c {
                    std::path::Component::ParentDir if !r.pop() => return None,
                    std::path::Component::Normal(n) => r.push(n),
                    _ => {}
                }
            }
            r
        };
    }
    None
}

/// Where `lib` is in an unpacked package, if there: (the path the loader looks up, the real file it
/// leads to), both inside the package.
pub fn find_library(root: &Path, lib: &str) -> Option<(PathBuf, PathBuf)> {
    LIBRARY_DIRS.iter().find_map(|d| {
        let shown = Path::new(d).join(lib);
        let real = resolve_in(root, &shown)?;
        Some((shown, real))
    })
}

/// `rel` itself, when it (or what its symlinks lead to) is a file in `root`.
fn file_in(root: &Path, rel: &Path) -> Option<(PathBuf, PathBuf)> {
    Some((rel.to_owned(), resolve_in(root, rel)?))
}

fn trees(pins: &[&Pin]) -> anyhow::Result<Vec<Tree>> {
    pins.iter()
        .map(|p| {
            Ok(Tree {
                root: inputs::unpacked(p)?,
                pin: (*p).clone(),
            })
        })
        .collect()
}

/// Finds a file in the first tree that has it: (tree, path looked up inside the package, bytes of the
/// file it leads to).
fn find_in(
    trees: &[Tree],
    lookup: impl Fn(&Path) -> Option<(PathBuf, PathBuf)>,
) -> Option<(&Tree, PathBuf, Vec<u8>)> {
    trees.iter().find_map(|t| {
        let (shown, real) = lookup(&t.root)?;
        let bytes = fs::read(t.root.join(real)).ok()?;
        Some((t, shown, bytes))
    })
}

type Program = (String, String, Vec<u8>);

fn programs(trees: &[Tree]) -> anyhow::Result<Vec<Program>> {
    TOOLS
        .iter()
        .map(|name| {
            let (tree, rel, bytes) = find_in(trees, |root| {
                PROGRAM_DIRS
                    .iter()
                    .find_map(|d| file_in(root, &Path::new(d).join(name)))
            })
            .with_context(|| {
                format!(
                    "{name} is in none of the pinned tool packages ({})",
                    trees
                        .iter()
                        .map(|t| t.pin.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            Ok((name.to_string(), tree.origin(&rel), bytes))
        })
        .collect()
}

fn closure(trees: &[Tree], bins: &[Program]) -> anyhow::Result<initramfs::elf::LibraryClosure> {
    let roots: Vec<&[u8]> = bins.iter().map(|(_, _, b)| b.as_slice()).collect();
    initramfs::elf::library_closure(&roots, |lib| {
        let (tree, rel, bytes) = find_in(trees, |root| find_library(root, lib))?;
        Some((tree.origin(&rel), bytes))
    })
    .context("resolving the shared libraries of the initramfs tools")
}

/// The `DT_NEEDED` names of the tools that no package in `pins` provides (for `update-inputs`).
pub fn missing_libraries(pins: &[Pin]) -> anyhow::Result<Vec<String>> {
    let trees = trees(&pins.iter().collect::<Vec<_>>())?;
    let bins = programs(&trees)?;
    Ok(closure(&trees, &bins)?.missing)
}

/// Adds every tool, its libraries and the loader, from the pinned packages, to `archive`; returns
/// what was added.
pub fn add_tools(archive: &mut Archive, lock: &Lock) -> anyhow::Result<Vec<ToolFile>> {
    let mut records = Vec::new();
    let pins: Vec<&Pin> = lock
        .all("tool")
        .into_iter()
        .chain(lock.all("library"))
        .collect();
    let trees = trees(&pins)?;
    let bins = programs(&trees)?;
    let closure = closure(&trees, &bins)?;
    if !closure.missing.is_empty() {
        bail!(
            "shared libraries of {} are in none of the packages pinned in {}: {}; run `cargo xtask update-inputs`",
            TOOLS.join(", "),
            inputs::LOCK_FILE,
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
    for (name, from, bytes) in bins {
        add(format!("sbin/{name}"), from, 0o755, bytes);
    }
    let mut copied = BTreeSet::new();
    let mut links = Vec::new();
    for (from, bytes) in closure.libraries {
        let file = Path::new(&from)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        copied.insert(format!("{LIB_DIR}/{file}"));
        add(format!("{LIB_DIR}/{file}"), from, 0o755, bytes);
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
            let rel = Path::new(interp.trim_start_matches('/'));
            let (tree, found, bytes) =
                find_in(&trees, |root| file_in(root, rel)).with_context(|| {
                    format!("the loader {interp} is in none of the pinned packages")
                })?;
            add(
                interp.trim_start_matches('/').to_owned(),
                tree.origin(&found),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_package_never_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/libext2fs.so.2.4"), b"real").unwrap();
        std::os::unix::fs::symlink(
            "libext2fs.so.2.4",
            root.join("lib/x86_64-linux-gnu/libext2fs.so.2"),
        )
        .unwrap();
        // Absolute, as libc6 ships the loader link: it means the package's own tree.
        fs::write(
            root.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            b"ld",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            root.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        // A host file the package does not have: an absolute link to it leads nowhere.
        std::os::unix::fs::symlink("/etc/hostname", root.join("lib64/escape")).unwrap();

        let (shown, real) = find_library(root, "libext2fs.so.2").unwrap();
        assert_eq!(shown, Path::new("lib/x86_64-linux-gnu/libext2fs.so.2"));
        assert_eq!(real, Path::new("lib/x86_64-linux-gnu/libext2fs.so.2.4"));
        assert_eq!(
            resolve_in(root, Path::new("lib64/ld-linux-x86-64.so.2")).unwrap(),
            Path::new("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(resolve_in(root, Path::new("lib64/escape")), None);
        assert_eq!(find_library(root, "libc.so.6"), None);
    }
}
