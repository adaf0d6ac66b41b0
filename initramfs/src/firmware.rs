//! Firmware files a module may request (`firmware=` in its `.modinfo`), looked up under a firmware root
//! such as `/lib/firmware`. Distributions ship them plain or compressed (`NAME.xz`, `NAME.zst`); all three
//! are accepted. Absence is normal (a build host rarely has every NIC's firmware), so missing names are
//! returned for the caller to warn about, not raised as errors.

use std::path::{Path, PathBuf};

/// Result of [`resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareSet {
    /// (name relative to `lib/firmware/` in the initramfs, file on disk). The name is the requested one
    /// plus the suffix of the file found (`.xz`/`.zst` kept, e.g. `i915/kbl_dmc_ver1_04.bin.xz`), so
    /// `decompress::decompress_by_name` on it yields the plain name the kernel asks for.
    pub found: Vec<(String, PathBuf)>,
    /// Requested names with no file, in request order.
    pub missing: Vec<String>,
}

/// Looks up each firmware name under `root`, preferring the plain file, then `.zst`, then `.xz`.
/// Duplicate names are resolved once; names that are absolute or contain `..` count as missing.
pub fn resolve(names: &[String], root: &Path) -> FirmwareSet {
    let mut set = FirmwareSet::default();
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let safe = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        let found = safe
            .then(|| {
                ["", ".zst", ".xz"].iter().find_map(|suffix| {
                    let file = format!("{name}{suffix}");
                    let path = root.join(&file);
                    path.is_file().then_some((file, path))
                })
            })
            .flatten();
        match found {
            Some(entry) => set.found.push(entry),
            None => set.missing.push(name.clone()),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_and_compressed_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("rtl_nic")).unwrap();
        std::fs::create_dir_all(root.join("i915")).unwrap();
        std::fs::write(root.join("rtl_nic/rtl8168d-1.fw"), b"plain").unwrap();
        std::fs::write(root.join("i915/kbl_dmc_ver1_04.bin.xz"), b"xz").unwrap();
        std::fs::write(root.join("bnx2x.fw.zst"), b"zst").unwrap();
        std::fs::write(root.join("both.bin"), b"plain").unwrap();
        std::fs::write(root.join("both.bin.xz"), b"xz").unwrap();
        std::os::unix::fs::symlink("rtl_nic/rtl8168d-1.fw", root.join("link.fw")).unwrap();
        std::fs::create_dir_all(root.join("adir")).unwrap();

        let names: Vec<String> = [
            "rtl_nic/rtl8168d-1.fw",
            "i915/kbl_dmc_ver1_04.bin",
            "bnx2x.fw",
            "both.bin",
            "link.fw",
            "e1000e/missing.bin",
            "adir",
            "../etc/passwd",
            "rtl_nic/rtl8168d-1.fw",
        ]
        .map(String::from)
        .to_vec();
        let set = resolve(&names, root);
        assert_eq!(
            set.found,
            [
                (
                    "rtl_nic/rtl8168d-1.fw".to_owned(),
                    root.join("rtl_nic/rtl8168d-1.fw")
                ),
                (
                    "i915/kbl_dmc_ver1_04.bin.xz".to_owned(),
                    root.join("i915/kbl_dmc_ver1_04.bin.xz")
                ),
                ("bnx2x.fw.zst".to_owned(), root.join("bnx2x.fw.zst")),
                ("both.bin".to_owned(), root.join("both.bin")),
                ("link.fw".to_owned(), root.join("link.fw")),
            ]
        );
        assert_eq!(set.missing, ["e1000e/missing.bin", "adir", "../etc/passwd"]);
    }

    #[test]
    fn missing_root_means_everything_missing() {
        let set = resolve(&["a.bin".to_owned()], Path::new("/nonexistent/firmware"));
        assert!(set.found.is_empty());
        assert_eq!(set.missing, ["a.bin"]);
    }
}
