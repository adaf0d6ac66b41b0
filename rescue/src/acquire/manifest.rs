//! `manifest.json` (schema `rescue.acquisition/1`, documented in `docs/manifest.md`), the `SHA256SUMS`
//! list, RFC 3339 timestamps and durable (write, fsync, rename) file replacement.
//!
//! Parsing is from bytes ([`Manifest::parse`]); loading from a path is separate ([`Manifest::load`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::hash::{HashAlgorithm, Window};
use super::segments::OutputFile;
use super::source::Extent;

/// The value of the `schema` field this version writes and reads.
pub const SCHEMA: &str = "rescue.acquisition/1";
/// File names inside an acquisition directory.
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SUMS_FILE: &str = "SHA256SUMS";
pub const LOG_FILE: &str = "acquisition.log";
pub const MAP_FILE: &str = "unreadable.map";

/// Errors while reading or writing manifests and checksum lists.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifest is not valid JSON for schema {SCHEMA}")]
    ParseManifest(#[source] serde_json::Error),
    #[error("manifest has schema {found:?}; this tool reads {SCHEMA:?}")]
    UnsupportedSchema { found: String },
    #[error("manifest is inconsistent: {reason}")]
    InvalidManifest { reason: String },
    #[error("writing {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("line {line} of {SUMS_FILE} is not `<sha256>  <file>`")]
    ParseSums { line: usize },
}

/// The program that made the acquisition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub commit: String,
}

impl ToolInfo {
    /// This build: version from Cargo, commit from `RESCUE_GIT_COMMIT` at compile time.
    pub fn current() -> Self {
        Self {
            name: "rescue".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("RESCUE_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
        }
    }
}

/// Case metadata typed by the examiner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseInfo {
    pub case_id: Option<String>,
    pub evidence_id: Option<String>,
    pub examiner: Option<String>,
    pub notes: Option<String>,
    /// True time minus the machine's clock in seconds, as the operator stated it when opening the case
    /// (timestamps in this manifest are the machine's clock). Absent in manifests of older versions.
    #[serde(default)]
    pub clock_offset_seconds: Option<i64>,
}

/// The machine the acquisition ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub dmi_vendor: Option<String>,
    pub dmi_product: Option<String>,
    pub dmi_serial: Option<String>,
    pub kernel: String,
    pub boot_mode: String,
}

/// The evidence source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub path: String,
    /// `block_device` or `regular_file`.
    pub kind: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub transport: Option<String>,
}

/// How the image is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `raw` or `zstd-seekable`.
    pub format: String,
    /// Segment size with `--split`, else `null`.
    pub split_bytes: Option<u64>,
    /// Read size.
    pub block_bytes: u64,
    pub zstd_level: Option<i32>,
    /// Uncompressed size of every zstd frame but the last; absent (acquisitions made before frames
    /// were cut smaller than the read size) means `block_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_bytes: Option<u64>,
    /// Hash window size with `--window`, else `null` (and `windows` is empty).
    pub window_bytes: Option<u64>,
}

/// Software write-block state of a block device source and its family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOnlyState {
    /// False for a regular-file source (nothing to write-block).
    pub applied: bool,
    /// Kernel read-only flag of each family member before `rescue` set it.
    pub before: BTreeMap<String, bool>,
    /// The flag read back (`BLKROGET`) at the end of the acquisition.
    pub after: BTreeMap<String, bool>,
}

/// Result of re-reading the source after acquisition (`--verify-source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceVerification {
    pub matched: bool,
    pub hashes: BTreeMap<String, String>,
    pub unreadable: Vec<Extent>,
    pub finished_at: String,
}

/// One continuation of an interrupted run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub at: String,
    pub offset: u64,
}

/// One part of a multipart upload to an object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePart {
    /// The image object the part belongs to (`image.raw`, `image.raw.zst`, `image.raw.001`, …);
    /// absent in manifests from before zstd and split uploads, which only had `image.raw`.
    #[serde(default = "first_image_object")]
    pub file: String,
    /// Part number inside its object, from 1.
    pub number: u32,
    /// Offset of the part inside its object (for `image.raw` also the stream offset).
    pub offset: u64,
    pub size_bytes: u64,
    pub sha256: String,
}

fn first_image_object() -> String {
    "image.raw".to_owned()
}

/// Where an acquisition streamed to an S3-compatible store (`--out s3://…`). Absent for local ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteInfo {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix of every object of this acquisition, ending in `/`.
    pub prefix: String,
    /// `--insecure`: the store's TLS certificate was not checked.
    pub insecure: bool,
    /// `--ca FILE` when given.
    pub ca_file: Option<String>,
    pub part_bytes: u64,
    /// Every part of the image object in order, with the SHA-256 of its bytes (an ETag is not one).
    pub parts: Vec<RemotePart>,
    /// Seconds the store's clock (its `Date` header) was ahead of ours; requests were signed with the
    /// corrected time. `null` when the clocks agreed within a minute.
    pub clock_offset_secs: Option<i64>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub tool: ToolInfo,
    pub case: CaseInfo,
    pub host: HostFacts,
    pub source: SourceInfo,
    pub image: ImageInfo,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub complete: bool,
    pub stop_reason: Option<String>,
    pub acquired_bytes: u64,
    pub hashes: BTreeMap<String, String>,
    pub windows: Vec<Window>,
    pub unreadable: Vec<Extent>,
    pub outputs: Vec<OutputFile>,
    pub read_only: ReadOnlyState,
    pub source_verification: Option<SourceVerification>,
    pub resumes: Vec<ResumeRecord>,
    /// Object-store destination; only present for `--out s3://…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteInfo>,
}

impl Manifest {
    /// Parses and checks a manifest: schema, hash names and digests, windows (when recorded) tiling
    /// the source.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(ManifestError::ParseManifest)?;
        if let Some(found) = value.get("schema").and_then(|s| s.as_str())
            && found != SCHEMA
        {
            return Err(ManifestError::UnsupportedSchema {
                found: found.to_owned(),
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(ManifestError::ParseManifest)?;
        m.check()?;
        Ok(m)
    }

    /// Reads and parses `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes =
            fs::read(&path).map_err(|source| ManifestError::ReadManifest { path, source })?;
        Self::parse(&bytes)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let bad = |reason: String| Err(ManifestError::InvalidManifest { reason });
        for (name, digest) in &self.hashes {
            let Ok(algo) = name.parse::<HashAlgorithm>() else {
                return bad(format!("unknown hash algorithm {name:?}"));
            };
            if !is_hex_of_len(digest, expected_hex_len(algo)) {
                return bad(format!(
                    "{name} digest {digest:?} is not lowercase hex of the right length"
                ));
            }
        }
        if !matches!(self.image.format.as_str(), "raw" | "zstd-seekable") {
            return bad(format!("unknown image format {:?}", self.image.format));
        }
        if self.image.split_bytes == Some(0)
            || self.image.block_bytes == 0
            || self.image.window_bytes == Some(0)
        {
            return bad("split, block and window sizes must be larger than 0".to_owned());
        }
        if self.image.window_bytes.is_none() && !self.windows.is_empty() {
            return bad(format!(
                "{} windows are listed but window_bytes is null",
                self.windows.len()
            ));
        }
        if !self.complete {
            return Ok(());
        }
        if self.image.window_bytes.is_some() {
            let mut next = 0;
            for (i, w) in self.windows.iter().enumerate() {
                if w.offset != next || w.length == 0 || !is_hex_of_len(&w.sha256, 64) {
                    return bad(format!(
                        "window {i} (offset {}) does not continue the previous one",
                        w.offset
                    ));
                }
                let Some(end) = w.offset.checked_add(w.length) else {
                    return bad(format!("window {i} ends past 2^64 bytes"));
                };
                next = end;
            }
            if next != self.source.size_bytes {
                return bad(format!(
                    "windows cover {next} bytes but the source has {}",
                    self.source.size_bytes
                ));
            }
        }
        if self.outputs.is_empty() {
            return bad("no output files are listed".to_owned());
        }
        for o in &self.outputs {
            if o.file.contains('/') || o.file.starts_with('.') || !is_hex_of_len(&o.sha256, 64) {
                return bad(format!(
                    "output entry {:?} is not a plain file name with a SHA-256",
                    o.file
                ));
            }
        }
        Ok(())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

fn expected_hex_len(algo: HashAlgorithm) -> usize {
    match algo {
        HashAlgorithm::Md5 => 32,
        HashAlgorithm::Sha1 => 40,
        HashAlgorithm::Sha256 | HashAlgorithm::Blake3 => 64,
        HashAlgorithm::Sha512 => 128,
    }
}

fn is_hex_of_len(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Renders `SHA256SUMS` (`<hex>  <name>` per line, as `sha256sum` writes and `sha256sum -c` reads).
pub fn render_sums(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(name, digest)| format!("{digest}  {name}\n"))
        .collect()
}

/// Parses `SHA256SUMS` lines in GNU text (`<hex>  <name>`) or binary (`<hex> *<name>`) form.
pub fn parse_sums(text: &str) -> Result<Vec<(String, String)>, ManifestError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(digest, rest)| {
            let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            (is_hex_of_len(digest, 64) && !name.is_empty())
                .then(|| (name.to_owned(), digest.to_owned()))
        });
        out.push(parsed.ok_or(ManifestError::ParseSums { line: i + 1 })?);
    }
    Ok(out)
}

/// Replaces `dir/name` durably: write a temporary file, fsync it, rename over, fsync the directory.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ManifestError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |source| ManifestError::WriteFile {
        path: path.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(err)?;
    sync_dir(dir).map_err(err)
}

/// Overwrites `dir/name` in place, padding with spaces to at least `reserve` bytes (JSON and the
/// mapfile allow trailing whitespace). Rewriting within the reserved size allocates nothing, so an
/// incomplete manifest can still be recorded on a destination that is full.
pub fn write_reserved(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    reserve: usize,
) -> Result<(), ManifestError> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let err = |source| ManifestError::WriteFile {
        path: path.clone(),
        source,
    };
    let f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(err)?;
    let have = usize::try_from(f.metadata().map_err(err)?.len()).unwrap_or(0);
    let len = bytes.len().max(reserve).max(have);
    let mut padded = bytes.to_vec();
    padded.resize(len, b' ');
    if len > bytes.len()
        && let Some(last) = padded.last_mut()
    {
        *last = b'\n';
    }
    f.write_all_at(&padded, 0).map_err(err)?;
    f.sync_all().map_err(err)
}

/// fsyncs a directory so renames and new names in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `SystemTime` as RFC 3339 UTC with second precision, e.g. `2024-05-01T12:00:00Z` (fractions of a
/// second are dropped; a time before 1970 reads as the epoch).
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t.max(UNIX_EPOCH))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3661)),
            "2024-05-01T13:01:01Z"
        );
        // Second precision: fractions are dropped, not rounded.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_399_999)),
            "2000-02-28T23:59:59Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn sums_round_trip_and_accept_binary_marker() {
        let d = "a".repeat(64);
        let text = render_sums(&[("image.raw".into(), d.clone())]);
        assert_eq!(text, format!("{d}  image.raw\n"));
        assert_eq!(
            parse_sums(&text).unwrap(),
            [("image.raw".to_owned(), d.clone())]
        );
        assert_eq!(
            parse_sums(&format!("{d} *x y\n")).unwrap(),
            [("x y".to_owned(), d)]
        );
        assert!(matches!(
            parse_sums("zz  file\n"),
            Err(ManifestError::ParseSums { line: 1 })
        ));
    }

    pub(crate) fn sample() -> Manifest {
        Manifest {
            schema: SCHEMA.into(),
            tool: ToolInfo::current(),
            case: CaseInfo::default(),
            host: HostFacts::default(),
            source: SourceInfo {
                path: "/dev/x".into(),
                kind: "block_device".into(),
                size_bytes: 10,
                logical_sector_size: 512,
                physical_sector_size: 512,
                model: None,
                serial: None,
                wwn: None,
                transport: None,
            },
            image: ImageInfo {
                format: "raw".into(),
                split_bytes: None,
                block_bytes: 4096,
                zstd_level: None,
                frame_bytes: None,
                window_bytes: Some(8),
            },
            started_at: "2024-05-01T13:01:01Z".into(),
            finished_at: None,
            complete: true,
            stop_reason: None,
            acquired_bytes: 10,
            hashes: BTreeMap::from([("md5".into(), "0".repeat(32))]),
            windows: vec![
                Window {
                    offset: 0,
                    length: 8,
                    sha256: "1".repeat(64),
                },
                Window {
                    offset: 8,
                    length: 2,
                    sha256: "2".repeat(64),
                },
            ],
            unreadable: vec![],
            outputs: vec![OutputFile {
                file: "image.raw".into(),
                size_bytes: 10,
                sha256: "3".repeat(64),
            }],
            read_only: ReadOnlyState::default(),
            source_verification: None,
            resumes: vec![],
            remote: None,
        }
    }

    #[test]
    fn manifest_round_trips_and_edits_are_caught() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);

        let mut gap = sample();
        gap.windows[1].offset = 9;
        assert!(matches!(
            Manifest::parse(&gap.to_json()),
            Err(ManifestError::InvalidManifest { .. })
        ));

        // Windows are opt-in: none recorded is consistent, windows without a size are not.
        let mut unwindowed = sample();
        unwindowed.image.window_bytes = None;
        unwindowed.windows.clear();
        assert_eq!(Manifest::parse(&unwindowed.to_json()).unwrap(), unwindowed);
        let mut stray = sample();
        stray.image.window_bytes = None;
        assert!(matches!(
            Manifest::parse(&stray.to_json()),
            Err(ManifestError::InvalidManifest { .. })
        ));
        let mut zero = sample();
        zero.image.window_bytes = Some(0);
        assert!(matches!(
            Manifest::parse(&zero.to_json()),
            Err(ManifestError::InvalidManifest { .. })
        ));

        let mut bad_hash = sample();
        bad_hash.hashes.insert("sha256".into(), "XYZ".into());
        assert!(matches!(
            Manifest::parse(&bad_hash.to_json()),
            Err(ManifestError::InvalidManifest { .. })
        ));

        let mut escape = sample();
        escape.outputs[0].file = "../etc/passwd".into();
        assert!(matches!(
            Manifest::parse(&escape.to_json()),
            Err(ManifestError::InvalidManifest { .. })
        ));

        let other = String::from_utf8(m.to_json())
            .unwrap()
            .replace(SCHEMA, "other/9");
        assert!(matches!(
            Manifest::parse(other.as_bytes()),
            Err(ManifestError::UnsupportedSchema { .. })
        ));
        assert!(matches!(
            Manifest::parse(b"{\"schema\": "),
            Err(ManifestError::ParseManifest(_))
        ));
    }
}

/// Fuzz targets (see `crate::fuzzing`): `manifest.json` and `SHA256SUMS` of an acquisition directory
/// or an object-store prefix (`verify`, `mount`, `--resume` read them; anyone with the medium could
/// have edited them).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn manifests(b: &[u8]) {
        if let Ok(m) = Manifest::parse(b) {
            // What parses and passes the checks writes back to the same manifest.
            assert_eq!(Manifest::parse(&m.to_json()).ok().as_ref(), Some(&m));
        }
    }

    fn sums(b: &[u8]) {
        if let Ok(entries) = parse_sums(&String::from_utf8_lossy(b))
            && entries.iter().all(|(n, _)| !n.contains(['\n', '\r']))
        {
            let text = render_sums(&entries);
            assert_eq!(parse_sums(&text).ok().as_ref(), Some(&entries));
        }
    }

    #[test]
    fn acquisition_manifest() {
        let m = super::tests::sample();
        let mut incomplete = m.clone();
        incomplete.complete = false;
        incomplete.unreadable = vec![Extent {
            offset: 4,
            length: 2,
        }];
        Target::new("manifest-json")
            .seed(m.to_json())
            .seed(incomplete.to_json())
            .dict(&[
                b"null",
                b"true",
                b"\"\"",
                b"[]",
                b"{}",
                b",",
                b"\"schema\"",
                b"\\u0000",
            ])
            .run(manifests);
    }

    #[test]
    fn acquisition_sums() {
        let d = "0123456789abcdef".repeat(4);
        Target::new("sha256sums")
            .seed(format!(
                "{d}  image.raw\n{d} *image.raw.001\n\n{d}  manifest.json\n"
            ))
            .run(sums);
    }

    /// Found by `manifest-json`: a window whose offset + length passes 2^64 overflowed the check that
    /// windows tile the source.
    #[test]
    fn regression_a_window_ending_past_2_64_is_refused() {
        let input =
            include_bytes!("../fuzz-seeds/regressions/manifest-json-window-end-overflow.bin");
        assert_eq!(crate::fuzzing::replay(manifests, input), Ok(()));
    }
}
