//! Acquisition straight into an S3-compatible store: the source is read by the same pipeline as a local
//! acquisition (read-only source, parallel stream hashes, for `--format zstd` the same compressor pool
//! and frames), and an [`crate::acquire::pipeline::BlockSink`] cuts the output stream into objects
//! (one, or `--split` segments) and each object into parts that a bounded pool of uploader threads
//! sends, one multipart upload per object, each part with `x-amz-checksum-sha256`. The object layout
//! mirrors a local directory: `image.raw`, `image.raw.zst` (zstd seekable: frames, then the seek
//! table) or their segments `….001`, `….002`, …, `unreadable.map`, `manifest.json` (listing every
//! object and every part with its SHA-256), `acquisition.log`, `SHA256SUMS`.
//!
//! Durable state lives in the store itself (`.rescue-upload.json` under the prefix: settings, each
//! object's upload id and the parts uploaded with their SHA-256, log so far), so a killed process or a
//! restarted rescue system continues with `--resume`: the source is read (and compressed) again, each
//! part the store already holds is checked against what was re-read and skipped, the rest is
//! uploaded; zstd frames depend only on the data and the level, so the parts come out the same. A
//! second writer to a prefix that holds anything is refused. A fatal refusal by the store aborts the
//! multipart uploads and removes the state, leaving nothing half-written (if an abort fails, the
//! state stays and names what is left); a completed object that no longer matches the source keeps
//! the completed objects and the state but aborts the unfinished uploads; a network failure keeps
//! everything for `--resume`.
//!
//! Nothing here prints or exits; progress and clock skew are reported through the event callback.

mod prefix;
mod sink;
mod state;
mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::client::{S3Error, StoreConfig};
use crate::acquire::driver::{self, Request, SourceRead};
use crate::acquire::hash::HashAlgorithm;
use crate::acquire::manifest::{CaseInfo, Manifest};
use crate::acquire::pipeline::StreamError;
use crate::acquire::{AcquireError, AcquireStatus, ImageFormat, Progress, Requested};

pub use self::sink::SinkError;
pub use self::url::{S3Url, largest_object, part_size};

/// Name of the state object under the prefix while an upload is under way.
pub const STATE_OBJECT: &str = ".rescue-upload.json";
/// Schema of the state object.
pub const STATE_SCHEMA: &str = "rescue.s3-upload/2";
/// Smallest part (S3 allows 5 MiB; 8 MiB matches common tools).
pub const MIN_PART: u64 = 8 << 20;
/// Most parts S3 allows in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Part buffers (filling, queued, uploading) stay under this many bytes while two parts fit in it:
/// with the 64 MiB read pool that keeps the process under 256 MiB for parts up to 80 MiB, i.e.
/// sources up to about 800 GB. Larger parts still need two buffers (2 × part + 64 MiB).
pub const PART_MEMORY: u64 = 160 << 20;
/// Most uploader threads.
pub const MAX_UPLOADERS: usize = 4;
/// The state object (and with it the durable point) is rewritten at most this often.
pub const STATE_INTERVAL: Duration = Duration::from_secs(2);

/// What the caller asks for. `format`, `split` and `zstd_level` take defaults for a new upload and the
/// recorded values on `resume` (where a `Some` that differs from the record is refused).
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub source: PathBuf,
    /// Destination; an empty prefix gets the default one.
    pub url: S3Url,
    pub store: StoreConfig,
    /// Recorded in the manifest.
    pub insecure: bool,
    pub ca_file: Option<String>,
    /// Stream hashes; SHA-256 is always added (the image object's checksum).
    pub hashes: Option<Vec<HashAlgorithm>>,
    /// Hash window size (`--window`), recorded in the manifest like a local acquisition's.
    pub window: Option<u64>,
    /// Image format [default: raw]: zstd uploads `image.raw.zst` in the seekable format.
    pub format: Option<ImageFormat>,
    /// `--split`: the image stream is cut into objects of this many bytes (`image.raw.001`, …).
    pub split: Option<u64>,
    /// zstd level [default: [`crate::acquire::DEFAULT_ZSTD_LEVEL`]].
    pub zstd_level: Option<i32>,
    /// Re-read the source after the upload and compare the hashes (`--verify-source`).
    pub verify_source: bool,
    pub case: CaseInfo,
    pub retries: Option<u32>,
    pub resume: bool,
    pub block_size: Option<usize>,
    pub frame_size: Option<usize>,
    /// How often the state object is rewritten [default: STATE_INTERVAL]; zero records every part.
    pub state_interval: Option<Duration>,
    pub cancel: Arc<AtomicBool>,
}

impl UploadOptions {
    /// The image settings asked for, SHA-256 always among the hashes (the image object's checksum).
    fn requested(&self) -> Requested {
        let hashes = self.hashes.clone().map(|mut h| {
            if !h.contains(&HashAlgorithm::Sha256) {
                h.insert(0, HashAlgorithm::Sha256);
            }
            h
        });
        Requested {
            format: self.format,
            split: self.split,
            hashes,
            window: self.window,
            zstd_level: self.zstd_level,
            block_size: self.block_size,
            frame_size: self.frame_size,
            retries: self.retries,
        }
    }
}

/// What the operator is told while the upload runs.
#[derive(Debug, Clone)]
pub enum UploadEvent {
    Progress(Progress),
    /// The store's clock differs from ours; requests are signed with the corrected time.
    ClockSkew {
        offset_secs: i64,
    },
    /// Resuming: the store holds these parts of the interrupted upload.
    Resuming {
        parts: usize,
        bytes: u64,
    },
    /// `--resume`, but nothing at all is under the prefix (the run was interrupted before its first
    /// write): the upload starts from the beginning with the options given.
    NothingStored,
    /// Resuming: the store holds `part` of `file` from the interrupted run, proves nothing about it
    /// and refuses to replace it (`reason`, the store's words). That object's multipart upload was
    /// aborted and is started again by another pass over the source; the other objects' proven parts
    /// are kept.
    Restarting {
        file: String,
        part: u32,
        reason: String,
    },
}

/// Result of [`upload`].
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub status: AcquireStatus,
    pub manifest: Manifest,
    pub url: S3Url,
    /// Parts already in the store on resume that matched the re-read source and were not sent again.
    pub reused_parts: usize,
}

/// Errors of an upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    OpenSource(#[from] AcquireError),
    #[error(transparent)]
    Store(#[from] S3Error),
    #[error(
        "{url} already holds objects ({key}); another acquisition writes there: choose another --evidence-id or prefix, or --resume"
    )]
    RejectExisting { url: String, key: String },
    #[error("{url} holds no interrupted upload to resume")]
    MissingState { url: String },
    #[error("the acquisition at {url} is already complete")]
    RejectComplete { url: String },
    #[error("the upload state at {url} is unreadable")]
    ParseState {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot resume: {what} was {recorded} in the interrupted run but is {requested} now")]
    MismatchResume {
        what: String,
        recorded: String,
        requested: String,
    },
    #[error("invalid option: {0}")]
    RejectOption(String),
    #[error("upload stopped after {uploaded} bytes of the source were stored; {left}")]
    Stop {
        uploaded: u64,
        resumable: bool,
        /// What the stop left in the store.
        left: Leftover,
        #[source]
        source: StreamError,
    },
    #[error(
        "the source size changed during the run: {before} bytes at the start, {after} now; {left}"
    )]
    ChangeSourceSize {
        before: u64,
        after: u64,
        left: Leftover,
    },
    #[error("re-reading the source")]
    VerifySource(#[source] StreamError),
}

/// What a stopped upload left under its prefix, as the operator is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// Multipart uploads and state kept for `--resume`.
    Resumable,
    /// Every multipart upload aborted, every object and the state removed.
    Nothing,
    /// The unfinished multipart uploads were aborted; the completed image objects and the state (whose
    /// log says what happened) stay for the examiner.
    CompletedObjects { objects: usize },
    /// These aborts or deletions failed; the state naming what is left stays.
    Uncleaned { failed: Vec<String> },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resumable => write!(f, "run again with --resume"),
            Self::Nothing => write!(
                f,
                "the multipart uploads were aborted and nothing is left under the prefix"
            ),
            Self::CompletedObjects { objects } => write!(
                f,
                "the unfinished multipart uploads were aborted; {objects} completed image objects and the upload state {STATE_OBJECT} (its log says what happened) are kept for the examiner; this prefix cannot be completed from this source: acquire again to a new prefix"
            ),
            Self::Uncleaned { failed } => write!(
                f,
                "cleaning up failed for {}; the upload state {STATE_OBJECT} naming them is kept: abort or delete them with the store's tools",
                failed.join(", ")
            ),
        }
    }
}

impl UploadError {
    /// True when `--resume` can continue.
    pub fn is_resumable(&self) -> bool {
        match self {
            Self::Stop { resumable, .. } => *resumable,
            _ => false,
        }
    }

    /// The object whose multipart upload a resume had to start again, when that stopped the pass.
    fn restarted(&self) -> Option<&SinkError> {
        let Self::Stop {
            source: StreamError::WriteSink(e),
            left: Leftover::Resumable,
            ..
        } = self
        else {
            return None;
        };
        e.downcast_ref::<SinkError>()
            .filter(|e| matches!(e, SinkError::RestartObject { .. }))
    }
}

/// Passes over the source one resume may need. A refusal restarts every object holding a part that
/// nothing proves, and an object started again holds no part from before, so two passes do; the
/// bound stops a loop with a store that does not keep its word (the run then ends resumable).
const MAX_PASSES: usize = 4;

/// Acquires `opts.source` into the store: the acquisition driver's phases over an [`prefix::S3Prefix`]
/// destination. See the module doc. A resume that meets a part it can neither prove nor replace
/// (see [`UploadEvent::Restarting`]) starts that object's upload again and passes over the source
/// once more, so a resume finishes whenever the store is reachable.
pub fn upload(
    opts: &UploadOptions,
    events: &mut dyn FnMut(&UploadEvent),
) -> Result<UploadOutcome, UploadError> {
    let mut pass = 1;
    loop {
        let result = upload_pass(opts, events);
        let restart = match &result {
            Err(e) if pass < MAX_PASSES => e.restarted(),
            _ => None,
        };
        let Some(SinkError::RestartObject {
            file,
            number,
            source,
            ..
        }) = restart
        else {
            return result;
        };
        events(&UploadEvent::Restarting {
            file: file.clone(),
            part: *number,
            reason: crate::error_chain(source.as_ref()),
        });
        pass += 1;
    }
}

fn upload_pass(
    opts: &UploadOptions,
    events: &mut dyn FnMut(&UploadEvent),
) -> Result<UploadOutcome, UploadError> {
    let (source, facts) = crate::acquire::open_source(&opts.source)?;
    let info = facts.info;
    let size = info.size_bytes;
    let host = driver::host_facts();
    let url = opts
        .url
        .with_default_prefix(&opts.case, host.dmi_serial.as_deref(), &info.path);
    // A size that cannot be read again is not taken for a change.
    let current_size = || Some(source.size().unwrap_or(size));
    let read = SourceRead {
        reader: &source,
        info,
        read_only: facts.read_only,
        current_size: &current_size,
    };
    upload_source(opts, url, &read, None, events)
}

/// The driver's phases from any source (a memory capture: `crate::live`) into `url` (its prefix as
/// given: no default is made up). `image_stem` names the image object when not `image.raw`.
/// `opts.source` is not read.
pub fn upload_source(
    opts: &UploadOptions,
    url: S3Url,
    read: &SourceRead<'_>,
    image_stem: Option<&str>,
    events: &mut dyn FnMut(&UploadEvent),
) -> Result<UploadOutcome, UploadError> {
    let mut dest = prefix::S3Prefix::connect(opts, url, read.info.size_bytes, events)?;
    dest.image_stem = image_stem.map(str::to_owned);
    let request = Request {
        requested: opts.requested(),
        case: &opts.case,
        resume: opts.resume,
        verify_source: opts.verify_source,
        cancel: &opts.cancel,
    };
    let finished = driver::run(&request, read, &mut dest, &mut |p: &Progress| {
        events(&UploadEvent::Progress(p.clone()))
    })?;
    Ok(UploadOutcome {
        status: finished.status,
        manifest: finished.manifest,
        url: dest.url.clone(),
        reused_parts: dest.reused,
    })
}

#[cfg(test)]
mod tests {
    use super::state::*;
    use super::*;

    #[test]
    fn urls_and_default_prefixes() {
        let u = S3Url::parse("s3://evidence").unwrap();
        assert_eq!(u.prefix, "");
        let case = CaseInfo {
            case_id: Some("CASE 7".into()),
            evidence_id: Some("disk-1".into()),
            ..CaseInfo::default()
        };
        let d = u.with_default_prefix(&case, Some("SN/123"), "/dev/sda");
        assert_eq!(d.to_string(), "s3://evidence/CASE_7/SN_123/disk-1/");
        let d = u.with_default_prefix(&CaseInfo::default(), None, "/dev/sda");
        assert_eq!(d.prefix, "no-case/unknown-host/sda/");
        let u = S3Url::parse("s3://b/x/y").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("b", "x/y/"));
        assert_eq!(u.with_default_prefix(&case, None, "a").prefix, "x/y/");
        assert!(S3Url::parse("s3:///x").is_none());
        assert!(S3Url::parse("/tmp/x").is_none());
    }

    #[test]
    fn a_version_1_state_becomes_one_image_raw_object() {
        let v1 = serde_json::json!({
            "schema": "rescue.s3-upload/1",
            "upload_id": "abc",
            "part_bytes": 8388608,
            "block_bytes": 4194304,
            "hashes": ["sha256"],
            "retries": 2,
            "source_path": "/dev/sda",
            "source_size": 100,
            "source_serial": null,
            "case": {},
            "started_at": "2024-01-01T00:00:00Z",
            "resumes": [],
            "parts": {"1": {"size": 8388608, "sha256": "00"}},
            "log": []
        });
        let mut st: UploadState = serde_json::from_value(v1).unwrap();
        st.upgrade();
        assert_eq!(st.format, "raw");
        assert_eq!((st.split_bytes, st.zstd_level), (None, None));
        assert_eq!(st.objects.len(), 1);
        assert_eq!(st.objects[0].name, "image.raw");
        assert_eq!(st.objects[0].upload_id, "abc");
        assert_eq!(st.objects[0].parts[&1].size, 8388608);
        assert!(!st.objects[0].completed);
        // Written back, only the new form remains.
        let again = serde_json::to_value(&st).unwrap();
        assert!(again.get("upload_id").is_none() && again.get("parts").is_none());
        assert_eq!(st.layout().name(0), "image.raw");
    }

    #[test]
    fn a_held_part_is_trusted_only_through_the_store_checksum_or_a_matching_etag() {
        let listed = |etag: &str, checksum: Option<&str>| super::super::client::ListedPart {
            number: 1,
            size: 8,
            etag: etag.to_owned(),
            checksum_sha256: checksum.map(str::to_owned),
        };
        let recorded: StatePart = serde_json::from_value(
            serde_json::json!({"size": 8, "sha256": "aa", "etag": "\"e1\""}),
        )
        .unwrap();
        // The store's checksum, when listed, is required; the state's hash does not stand in for it.
        let h = held_part(&listed("\"e1\"", Some("Y2hr")), Some(&recorded));
        assert_eq!(
            (h.sha256_b64.as_deref(), h.sha256_hex),
            (Some("Y2hr"), None)
        );
        // No checksum listed: the recorded hash holds only for the upload it was recorded for.
        let h = held_part(&listed("e1", None), Some(&recorded));
        assert_eq!(h.sha256_hex.as_deref(), Some("aa"));
        let h = held_part(&listed("\"e2\"", None), Some(&recorded));
        assert_eq!((h.sha256_b64, h.sha256_hex), (None, None));
        // A store that lists no ETag (s3s-fs): the record stands, as it is dropped before a replacement.
        let h = held_part(&listed("", None), Some(&recorded));
        assert_eq!(h.sha256_hex.as_deref(), Some("aa"));
        // A state written before ETags were recorded still loads, and its parts are sent again.
        let old: StatePart =
            serde_json::from_value(serde_json::json!({"size": 8, "sha256": "aa"})).unwrap();
        let h = held_part(&listed("\"e1\"", None), Some(&old));
        assert_eq!((h.sha256_b64, h.sha256_hex), (None, None));
        assert!(held_part(&listed("", None), None).sha256_hex.is_none());
    }

    #[test]
    fn zstd_and_split_bound_the_largest_object() {
        let mib = 1 << 20;
        // Incompressible frames grow a little; the bound leaves room for that and the seek table.
        let size = 100_000 * mib;
        let block = 4 * mib;
        let bound = largest_object(size, block, true, None);
        let frames = size / block;
        assert!(bound >= size + size / 256 + frames * 8 + 17);
        assert!(part_size(bound, block) * MAX_PARTS >= bound);
        assert_eq!(largest_object(size, block, false, None), size);
        assert_eq!(largest_object(size, block, true, Some(64 * mib)), 64 * mib);
        assert_eq!(
            part_size(largest_object(size, block, false, Some(64 * mib)), block),
            8 * mib
        );
    }

    #[test]
    fn part_size_is_at_least_8_mib_and_at_most_10000_parts() {
        let mib = 1 << 20;
        assert_eq!(part_size(1, 4 * mib), 8 * mib);
        assert_eq!(part_size(80_000 * mib, 4 * mib), 8 * mib);
        let big = 10u64 << 40; // 10 TiB
        let p = part_size(big, 4 * mib);
        assert!(p * MAX_PARTS >= big && p.is_multiple_of(4 * mib) && p < 2 * big / MAX_PARTS);
    }
}
