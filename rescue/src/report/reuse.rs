//! Hashes the case already proved, so a report over a multi-terabyte acquisition need not read it all
//! again: `verify DIR` (inside a case) records, in its case log result, a stamp of every image file it
//! hashed — device, inode, size, modification and change times — and the SHA-256 of the manifest it
//! checked them against. A report built later takes an image's SHA-256 from that manifest only when the
//! verify passed, it is the last verify of that directory in the case log, the manifest still has the
//! same SHA-256, and the file still has the same stamp; anything else is hashed again.
//!
//! Why the stamp suffices: the change time (ctime) is set by the kernel on every write and cannot be set
//! back by a user. A file is stamped only when its ctime lies more than [`TICK_MARGIN`] (above any kernel
//! timestamp tick) before the verify started, so any write after that start — during the verify or
//! after it — gives the file a newer ctime and the stamps no longer match. A copy of the case directory
//! (another inode or device) is always hashed again.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::acquire::manifest::{MANIFEST_FILE, Manifest};

/// More than one kernel timestamp tick (a jiffy: 10 ms at HZ=100, the coarsest Linux has).
pub const TICK_MARGIN: Duration = Duration::from_millis(50);

/// Case log detail key of the stamps in a `verify` result.
pub const DETAIL_KEY: &str = "unchanged_since_verify";

/// What identifies one file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

/// The stamp of `path` now; `None` when it cannot be read or is not a regular file.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let ns = |s: i64, n: i64| s.checked_mul(1_000_000_000)?.checked_add(n);
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec())?,
        ctime_ns: ns(m.ctime(), m.ctime_nsec())?,
    })
}

/// What is taken just before a verify reads anything.
#[derive(Debug, Clone)]
pub struct BeforeVerify {
    manifest_sha256: Option<String>,
    files: BTreeMap<String, Stamp>,
}

/// Stamps the image files of the acquisition in `dir` (those the manifest lists whose ctime lies more
/// than [`TICK_MARGIN`] before now) and hashes its manifest. Call it right before verifying.
pub fn before_verify(dir: &Path) -> BeforeVerify {
    let started = SystemTime::now();
    let limit = started
        .checked_sub(TICK_MARGIN)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0);
    let mut files = BTreeMap::new();
    if let Ok(m) = Manifest::load(dir) {
        for o in &m.outputs {
            if o.file.contains('/') {
                continue;
            }
            if let Some(s) = stamp(&dir.join(&o.file)).filter(|s| s.ctime_ns < limit) {
                files.insert(o.file.clone(), s);
            }
        }
    }
    BeforeVerify {
        manifest_sha256: sha256_small(&dir.join(MANIFEST_FILE)),
        files,
    }
}

/// After a verify that passed: the case log detail recording the files whose stamp did not change while
/// it ran (and the manifest's SHA-256), to be stored under [`DETAIL_KEY`].
pub fn after_verify(dir: &Path, before: &BeforeVerify) -> Value {
    let files: BTreeMap<&String, &Stamp> = before
        .files
        .iter()
        .filter(|(name, s)| stamp(&dir.join(name)).as_ref() == Some(*s))
        .collect();
    let unchanged_manifest = before
        .manifest_sha256
        .as_ref()
        .filter(|h| sha256_small(&dir.join(MANIFEST_FILE)).as_ref() == Some(*h));
    serde_json::json!({
        "manifest_sha256": unchanged_manifest,
        "files": files,
    })
}

/// One file whose hash a report takes from a verified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reused {
    pub sha256: String,
    pub size: u64,
}

/// The files of the acquisition in `dir` whose SHA-256 may be taken from its manifest, given the detail
/// of the last `verify` result of that directory: it passed, the manifest is the one it checked, and
/// each file has the stamp it had then. File name → hash and size.
pub fn reusable(dir: &Path, verify_detail: &Value) -> BTreeMap<String, Reused> {
    let mut out = BTreeMap::new();
    if verify_detail.get("verified") != Some(&Value::Bool(true)) {
        return out;
    }
    let Some(rec) = verify_detail.get(DETAIL_KEY) else {
        return out;
    };
    let Some(want) = rec.get("manifest_sha256").and_then(Value::as_str) else {
        return out;
    };
    if sha256_small(&dir.join(MANIFEST_FILE)).as_deref() != Some(want) {
        return out;
    }
    let Ok(manifest) = Manifest::load(dir) else {
        return out;
    };
    let Some(files) = rec.get("files").and_then(Value::as_object) else {
        return out;
    };
    for (name, s) in files {
        let Ok(then) = serde_json::from_value::<Stamp>(s.clone()) else {
            continue;
        };
        let Some(o) = manifest.outputs.iter().find(|o| &o.file == name) else {
            continue;
        };
        if o.size_bytes == then.size && stamp(&dir.join(name)) == Some(then) {
            out.insert(
                name.clone(),
                Reused {
                    sha256: o.sha256.clone(),
                    size: then.size,
                },
            );
        }
    }
    out
}

/// SHA-256 of a small file (a manifest), `None` when unreadable or over 64 MiB.
fn sha256_small(path: &Path) -> Option<String> {
    use sha2::Digest;
    let m = fs::metadata(path).ok()?;
    if m.len() > 64 << 20 {
        return None;
    }
    Some(hex::encode(sha2::Sha256::digest(fs::read(path).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_with_every_write_and_a_copy_has_its_own() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("image.raw");
        fs::write(&p, b"0123456789").unwrap();
        let a = stamp(&p).unwrap();
        assert_eq!(stamp(&p), Some(a));
        assert_eq!(a.size, 10);
        let q = d.path().join("copy.raw");
        fs::copy(&p, &q).unwrap();
        assert_ne!(stamp(&q).unwrap().ino, a.ino);
        assert_eq!(stamp(d.path()), None, "a directory has no stamp");
    }

    #[test]
    fn nothing_is_reused_without_a_passing_verify_and_its_record() {
        let d = tempfile::tempdir().unwrap();
        let rec = serde_json::json!({"verified": false, DETAIL_KEY: {"manifest_sha256": "00", "files": {}}});
        assert!(reusable(d.path(), &rec).is_empty());
        let rec = serde_json::json!({"verified": true, "exit": 0});
        assert!(reusable(d.path(), &rec).is_empty());
        let rec = serde_json::json!({"verified": true, DETAIL_KEY: {"manifest_sha256": null, "files": {}}});
        assert!(reusable(d.path(), &rec).is_empty());
    }
}
