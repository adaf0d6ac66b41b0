//! Boot media writers, pure functions over bytes and `Read + Write + Seek`: a Unified Kernel Image
//! (PE sections appended to systemd's EFI stub) and a GPT disk image holding a FAT32 EFI System Partition.
//!
//! Nothing here runs external tools, needs root, or reads the clock: identical inputs give identical bytes.

pub mod biosboot;
pub mod disk;
pub mod fat;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod golden;
pub mod iso;
pub mod pe;
pub mod uki;

/// One file for an EFI System Partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspFile {
    /// `/`-separated path inside the ESP, e.g. `EFI/BOOT/BOOTX64.EFI`; parent directories are created.
    pub path: String,
    pub data: Vec<u8>,
}

/// Finding the independent checkers (`objdump`, `sgdisk`, `fsck.vfat`) and real boot files for tests.
///
/// A missing tool or file skips the check with a note on stderr, unless `RESCUE_REQUIRE_TOOLS=1`
/// (or `RESCUE_REQUIRE_BOOT_FILES=1`) says the run must not skip, as `cargo xtask test` does.
#[cfg(test)]
pub(crate) mod test_tools {
    use std::path::{Path, PathBuf};

    fn required(var: &str) -> bool {
        std::env::var(var).is_ok_and(|v| v == "1")
    }

    pub fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        // fsck.vfat and sgdisk live in sbin, which is not on every user's PATH.
        let found = std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| p.is_file());
        if found.is_none() {
            assert!(
                !required("RESCUE_REQUIRE_TOOLS"),
                "{name} not found and RESCUE_REQUIRE_TOOLS=1"
            );
            eprintln!("skipping the {name} check: {name} not found");
        }
        found
    }

    /// systemd's x86-64 stub and a Debian kernel: `RESCUE_STUB` / `RESCUE_KERNEL` if set, else the
    /// installed stub and the first `vmlinuz-*` in `/tmp/kpkg/root/boot` or `/boot`.
    pub fn boot_files() -> Option<(PathBuf, PathBuf)> {
        let stub = std::env::var_os("RESCUE_STUB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"));
        let kernel = std::env::var_os("RESCUE_KERNEL")
            .map(PathBuf::from)
            .or_else(|| {
                ["/tmp/kpkg/root/boot", "/boot"].iter().find_map(|dir| {
                    let mut found: Vec<PathBuf> = std::fs::read_dir(Path::new(dir))
                        .ok()?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                        })
                        .collect();
                    found.sort();
                    found.pop()
                })
            });
        match kernel {
            Some(kernel) if stub.is_file() && kernel.is_file() => Some((stub, kernel)),
            _ => {
                assert!(
                    !required("RESCUE_REQUIRE_BOOT_FILES"),
                    "systemd stub ({}) or kernel ({kernel:?}) missing and RESCUE_REQUIRE_BOOT_FILES=1",
                    stub.display()
                );
                eprintln!("skipping the real stub + kernel check: stub or kernel not found");
                None
            }
        }
    }
}
