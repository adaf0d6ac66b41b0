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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::{CompletedPart, S3Error, Store, StoreConfig, base64};
use crate::acquire::buffer::{Block, BufferPool};
use crate::acquire::checkpoint::Settings;
use crate::acquire::hash::{self, HashAlgorithm, hex};
use crate::acquire::manifest::{
    CaseInfo, ImageInfo, LOG_FILE, MANIFEST_FILE, MAP_FILE, Manifest, RemoteInfo, RemotePart,
    ResumeRecord, SCHEMA, SUMS_FILE, ToolInfo, now_rfc3339,
};
use crate::acquire::pipeline::{self, BlockSink, Control, Ending, Output, StreamError};
use crate::acquire::seekable::{self, FrameEntry};
use crate::acquire::segments::{Layout, OutputFile};
use crate::acquire::source::{BlockReader, Extent};
use crate::acquire::writer::WriteImageError;
use crate::acquire::{
    AcquireError, AcquireStatus, ImageFormat, Phase, Progress, Requested, mapfile, names,
    resolve_settings,
};

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

/// `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || prefix.starts_with('/') || prefix.contains("//") {
            return None;
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Some(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// This URL, or with the default prefix `<case>/<host serial>/<evidence-id>/` when it has none.
    pub fn with_default_prefix(
        &self,
        case: &CaseInfo,
        host_serial: Option<&str>,
        source: &str,
    ) -> Self {
        if !self.prefix.is_empty() {
            return self.clone();
        }
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
                .trim_matches('.')
                .to_owned()
        };
        let pick = |v: Option<&str>, dflt: &str| {
            let c = v.map(clean).unwrap_or_default();
            if c.is_empty() { dflt.to_owned() } else { c }
        };
        let source_name = std::path::Path::new(source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        Self {
            bucket: self.bucket.clone(),
            prefix: format!(
                "{}/{}/{}/",
                pick(case.case_id.as_deref(), "no-case"),
                pick(host_serial, "unknown-host"),
                pick(
                    case.evidence_id.as_deref().or(source_name.as_deref()),
                    "evidence"
                )
            ),
        }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Part size for an object of at most `size` bytes: max(8 MiB, ⌈size/10000⌉), rounded up to whole
/// read blocks.
pub fn part_size(size: u64, block: u64) -> u64 {
    let p = MIN_PART.max(size.div_ceil(MAX_PARTS));
    p.div_ceil(block.max(1)) * block.max(1)
}

/// The most bytes one object of the layout can hold: the source size for raw; for zstd the source plus
/// the growth of incompressible frames (zstd's bound is n/256 plus a header) and the seek table (8
/// bytes a frame); `--split` caps either.
pub fn largest_object(size: u64, block: u64, zstd: bool, split: Option<u64>) -> u64 {
    let stream = if zstd {
        let frames = size.div_ceil(block.max(1));
        size + size / 128 + (frames + 1) * 64
    } else {
        size
    };
    split.map_or(stream, |s| s.min(stream))
}

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
}

/// Errors of the part sink (the thread that cuts the output stream into objects and parts).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] S3Error),
    #[error(
        "part {number} of {file}, already complete in the store, differs from the source as read now"
    )]
    ChangeCompletedPart { file: String, number: u32 },
    #[error("the uploader threads stopped answering")]
    LoseUploaders,
}

impl SinkError {
    fn is_network(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_network())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatePart {
    size: u64,
    sha256: String,
    /// The ETag the store answered for this upload of the part. On resume `sha256` is trusted for a
    /// part the store lists without a checksum only when the listed ETag is this one (a store that
    /// lists no ETag, like s3s-fs, relies on the record being dropped durably before the part is
    /// replaced, see [`PartResult::Replace`]). Absent in older states: such a part is uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
}

/// ETags compare without their quotes; an empty one names nothing.
fn same_etag(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_matches('"'), b.trim_matches('"'));
    !a.is_empty() && a == b
}

/// What a resume may trust of a part the store lists: its own checksum when it lists one (required
/// then); else the recorded SHA-256 when the state recorded an ETag and the store lists the same one
/// or none at all; else nothing (the part is uploaded again).
fn held_part(listed: &super::client::ListedPart, recorded: Option<&StatePart>) -> Held {
    let (sha256_b64, sha256_hex) = match &listed.checksum_sha256 {
        Some(b64) => (Some(b64.clone()), None),
        None => (
            None,
            recorded
                .filter(|r| {
                    r.etag.as_deref().is_some_and(|e| {
                        listed.etag.trim_matches('"').is_empty() || same_etag(e, &listed.etag)
                    })
                })
                .map(|r| r.sha256.clone()),
        ),
    };
    Held {
        size: listed.size,
        sha256_b64,
        sha256_hex,
        etag: listed.etag.clone(),
    }
}

/// One image object (`image.raw`, `image.raw.zst`, or a segment of either) and its multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateObject {
    name: String,
    upload_id: String,
    parts: BTreeMap<u32, StatePart>,
    /// CompleteMultipartUpload succeeded: the object exists and its upload id is gone.
    #[serde(default)]
    completed: bool,
}

fn raw_format() -> String {
    ImageFormat::Raw.manifest_name().to_owned()
}

/// The state object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    schema: String,
    /// `rescue.s3-upload/1` (raw only) kept the one upload of `image.raw` here; read, never written.
    #[serde(default, skip_serializing)]
    upload_id: String,
    #[serde(default, skip_serializing)]
    parts: BTreeMap<u32, StatePart>,
    /// Image objects in stream order, each created when the stream reaches it.
    #[serde(default)]
    objects: Vec<StateObject>,
    #[serde(default = "raw_format")]
    format: String,
    #[serde(default)]
    split_bytes: Option<u64>,
    #[serde(default)]
    zstd_level: Option<i32>,
    part_bytes: u64,
    block_bytes: u64,
    hashes: Vec<HashAlgorithm>,
    #[serde(default)]
    window_bytes: Option<u64>,
    retries: u32,
    source_path: String,
    source_size: u64,
    source_serial: Option<String>,
    case: CaseInfo,
    started_at: String,
    resumes: Vec<ResumeRecord>,
    log: Vec<String>,
}

impl UploadState {
    fn line(&mut self, msg: &str) {
        self.log.push(format!("{} {msg}", now_rfc3339()));
    }

    /// Moves a version-1 record (one `image.raw` upload) into `objects`.
    fn upgrade(&mut self) {
        if self.objects.is_empty() && !self.upload_id.is_empty() {
            self.objects.push(StateObject {
                name: ImageFormat::Raw.base_name().to_owned(),
                upload_id: std::mem::take(&mut self.upload_id),
                parts: std::mem::take(&mut self.parts),
                completed: false,
            });
        }
    }

    /// The image settings recorded, as a local checkpoint holds them.
    fn settings(&self) -> Settings {
        Settings {
            format: self.format.clone(),
            split_bytes: self.split_bytes,
            hashes: self.hashes.clone(),
            window_bytes: self.window_bytes,
            block_bytes: self.block_bytes,
            zstd_level: self.zstd_level,
            retries: self.retries,
        }
    }

    fn set_settings(&mut self, s: Settings) {
        self.format = s.format;
        self.split_bytes = s.split_bytes;
        self.hashes = s.hashes;
        self.window_bytes = s.window_bytes;
        self.block_bytes = s.block_bytes;
        self.zstd_level = s.zstd_level;
        self.retries = s.retries;
    }

    fn layout(&self) -> Layout {
        let format = ImageFormat::from_manifest_name(&self.format).unwrap_or(ImageFormat::Raw);
        Layout {
            base: format.base_name().to_owned(),
            split: self.split_bytes,
        }
    }
}

/// What the store already holds of a part on resume.
#[derive(Debug, Clone)]
struct Held {
    size: u64,
    /// Base64 checksum from ListParts, or hex from our state object.
    sha256_b64: Option<String>,
    sha256_hex: Option<String>,
    etag: String,
}

struct PartJob {
    object: usize,
    key: String,
    upload_id: String,
    number: u32,
    /// Offset of the part inside its object.
    offset: u64,
    data: Vec<u8>,
    held: Option<Held>,
    /// The object is already complete: a part that does not match `held` cannot be sent again.
    completed: bool,
}

enum PartResult {
    Done {
        object: usize,
        number: u32,
        offset: u64,
        size: u64,
        sha256: [u8; 32],
        etag: String,
        reused: bool,
        data: Vec<u8>,
    },
    /// The store holds a different upload of this part than the source gives now, and the state
    /// records a hash for it: the record is removed and the state stored before the part is sent
    /// again, so a state never names bytes the store may no longer hold (a store that lists neither
    /// checksums nor ETags gives no other way to tell).
    Replace(PartJob),
    Failed(SinkError),
}

#[derive(Debug, Clone)]
struct DonePart {
    offset: u64,
    size: u64,
    sha256: [u8; 32],
    etag: String,
}

/// The object the output stream is filling.
struct OpenObject {
    index: usize,
    key: String,
    upload_id: String,
    completed: bool,
    /// Bytes accepted into it so far (dispatched or in the part buffer).
    size: u64,
    next_number: u32,
    hasher: Option<Sha256>,
}

/// The sink's state, shared with the caller (which needs it after the pipeline returns).
struct SinkState {
    url: S3Url,
    layout: Layout,
    /// Output bytes are zstd frames: keep their sizes for the seek table.
    zstd: bool,
    frames: Vec<FrameEntry>,
    /// Hash each object here (not needed when the one raw object is the stream).
    hash_objects: bool,
    part_bytes: u64,
    buf: Vec<u8>,
    spare: Vec<Vec<u8>>,
    buffers: usize,
    max_buffers: usize,
    /// Output stream bytes accepted.
    pos: u64,
    open: Option<OpenObject>,
    /// Finished objects in order (SHA-256 empty when `hash_objects` is false).
    closed: Vec<OutputFile>,
    held: BTreeMap<(usize, u32), Held>,
    jobs: Option<SyncSender<PartJob>>,
    results: Receiver<PartResult>,
    workers: Vec<JoinHandle<()>>,
    outstanding: usize,
    done: BTreeMap<(usize, u32), DonePart>,
    reused: usize,
    state: UploadState,
    state_client: super::client::Client,
    state_key: String,
    last_store: Instant,
    state_interval: Duration,
    /// Source bytes whose output is stored without a gap from the start (what `--resume` keeps, and
    /// the manifest's `acquired_bytes` when the run stops).
    uploaded: Arc<AtomicU64>,
    /// With zstd: how far [`SinkState::source_end`] has walked `frames` (frame count, output bytes,
    /// source bytes), so each state store walks only the frames stored since the last one.
    walked: (usize, u64, u64),
}

impl SinkState {
    /// Source bytes represented by the first `out_end` output bytes: the same number for raw; for
    /// zstd the source bytes of the whole frames inside it (never the seek table).
    fn source_end(&mut self, out_end: u64) -> u64 {
        if !self.zstd {
            return out_end;
        }
        if out_end < self.walked.1 {
            self.walked = (0, 0, 0);
        }
        let (mut i, mut out, mut src) = self.walked;
        while let Some(f) = self.frames.get(i) {
            if out + u64::from(f.compressed) > out_end {
                break;
            }
            out += u64::from(f.compressed);
            src += u64::from(f.decompressed);
            i += 1;
        }
        self.walked = (i, out, src);
        src
    }

    fn take_buffer(&mut self) -> Result<Vec<u8>, SinkError> {
        loop {
            if let Some(b) = self.spare.pop() {
                return Ok(b);
            }
            if self.buffers < self.max_buffers {
                self.buffers += 1;
                return Ok(Vec::with_capacity(self.part_bytes as usize));
            }
            self.wait_one()?;
        }
    }

    fn handle(&mut self, r: PartResult) -> Result<(), SinkError> {
        self.outstanding -= 1;
        match r {
            PartResult::Done {
                object,
                number,
                offset,
                size,
                sha256,
                etag,
                reused,
                mut data,
            } => {
                data.clear();
                self.spare.push(data);
                if reused {
                    self.reused += 1;
                }
                if let Some(o) = self.state.objects.get_mut(object) {
                    o.parts.insert(
                        number,
                        StatePart {
                            size,
                            sha256: hex(&sha256),
                            etag: Some(etag.clone()),
                        },
                    );
                }
                self.done.insert(
                    (object, number),
                    DonePart {
                        offset,
                        size,
                        sha256,
                        etag,
                    },
                );
                // Parts count as durable once the state object records them: a resume trusts only
                // recorded checksums (stores like s3s-fs list parts without them). One small PUT per
                // part would cost more than the parts on a fast link, so it is rewritten every
                // STATE_INTERVAL; a resume re-sends the few parts stored after it.
                if self.last_store.elapsed() >= self.state_interval {
                    self.store_state()?;
                }
                Ok(())
            }
            PartResult::Replace(mut job) => {
                if let Some(o) = self.state.objects.get_mut(job.object) {
                    o.parts.remove(&job.number);
                }
                self.store_state()?;
                job.held = None;
                let Some(tx) = &self.jobs else {
                    return Err(SinkError::LoseUploaders);
                };
                tx.send(job).map_err(|_| SinkError::LoseUploaders)?;
                self.outstanding += 1;
                Ok(())
            }
            PartResult::Failed(e) => Err(e),
        }
    }

    fn wait_one(&mut self) -> Result<(), SinkError> {
        match self.results.recv() {
            Ok(r) => self.handle(r),
            Err(_) => Err(SinkError::LoseUploaders),
        }
    }

    fn drain_ready(&mut self) -> Result<(), SinkError> {
        while let Ok(r) = self.results.try_recv() {
            self.handle(r)?;
        }
        Ok(())
    }

    /// Opens object `index`: the one recorded by an interrupted run, or a new multipart upload.
    fn begin_object(&mut self, index: usize) -> Result<(), SinkError> {
        let name = self.layout.name(index as u64);
        let key = self.url.key(&name);
        // An empty upload id: the store dropped the recorded upload; it is started again in place.
        let dropped = self
            .state
            .objects
            .get(index)
            .is_some_and(|o| o.name == name && !o.completed && o.upload_id.is_empty());
        let recorded = self
            .state
            .objects
            .get(index)
            .filter(|o| o.name == name && !dropped)
            .map(|o| (o.upload_id.clone(), o.completed));
        let (upload_id, completed) = match recorded {
            Some(r) => r,
            None => {
                let id = self.state_client.create_multipart(&key)?;
                let fresh = StateObject {
                    name,
                    upload_id: id.clone(),
                    parts: BTreeMap::new(),
                    completed: false,
                };
                if dropped {
                    self.state.objects[index] = fresh;
                } else {
                    self.state.objects.truncate(index);
                    self.state.objects.push(fresh);
                }
                self.state.line(&format!(
                    "multipart upload {id} of {key}, parts of {} bytes",
                    self.part_bytes
                ));
                // Recorded at once: an upload the state does not name could be neither resumed nor
                // aborted.
                self.store_state()?;
                (id, false)
            }
        };
        self.open = Some(OpenObject {
            index,
            key,
            upload_id,
            completed,
            size: 0,
            next_number: 1,
            hasher: self.hash_objects.then(Sha256::new),
        });
        Ok(())
    }

    /// Sends the part buffer as the open object's next part.
    fn dispatch(&mut self) -> Result<(), SinkError> {
        let Some(o) = self.open.as_mut() else {
            return Ok(());
        };
        let data = std::mem::take(&mut self.buf);
        let size = data.len() as u64;
        let number = o.next_number;
        o.next_number += 1;
        let job = PartJob {
            object: o.index,
            key: o.key.clone(),
            upload_id: o.upload_id.clone(),
            number,
            offset: o.size - size,
            data,
            held: self.held.remove(&(o.index, number)),
            completed: o.completed,
        };
        let Some(tx) = &self.jobs else {
            return Ok(());
        };
        if tx.send(job).is_err() {
            return Err(SinkError::LoseUploaders);
        }
        self.outstanding += 1;
        Ok(())
    }

    /// Sends the open object's last part (an empty object gets one empty part) and lists it.
    fn close_object(&mut self) -> Result<(), SinkError> {
        if !self.buf.is_empty() || self.open.as_ref().is_some_and(|o| o.next_number == 1) {
            self.dispatch()?;
        }
        if let Some(o) = self.open.take() {
            self.closed.push(OutputFile {
                file: self.layout.name(o.index as u64),
                size_bytes: o.size,
                sha256: o.hasher.map(|h| hex(&h.finalize())).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Appends output bytes: cut into objects as the layout says, and into parts inside each.
    fn write(&mut self, mut data: &[u8]) -> Result<(), SinkError> {
        self.drain_ready()?;
        while !data.is_empty() {
            let (index, off) = self.layout.locate(self.pos);
            if self.open.is_none() {
                self.begin_object(usize::try_from(index).unwrap_or(usize::MAX))?;
            }
            if self.buf.capacity() == 0 {
                self.buf = self.take_buffer()?;
            }
            let object_room = self.layout.split.map_or(u64::MAX, |s| s - off);
            let room = (self.part_bytes as usize - self.buf.len())
                .min(usize::try_from(object_room).unwrap_or(usize::MAX));
            let (chunk, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(chunk);
            if let Some(o) = self.open.as_mut() {
                o.size += chunk.len() as u64;
                if let Some(h) = o.hasher.as_mut() {
                    h.update(chunk);
                }
            }
            self.pos += chunk.len() as u64;
            data = rest;
            if self
                .layout
                .split
                .is_some_and(|s| self.pos.is_multiple_of(s))
            {
                self.close_object()?;
            } else if self.buf.len() as u64 == self.part_bytes {
                self.dispatch()?;
            }
        }
        Ok(())
    }

    /// The end of the stream: the seek table (zstd), the last part, and one empty object for an empty
    /// stream (as a local acquisition has one empty file).
    fn end_stream(&mut self) -> Result<(), SinkError> {
        if self.zstd {
            let table = seekable::encode_seek_table(&self.frames);
            self.write(&table)?;
        }
        if self.open.is_none() && self.closed.is_empty() {
            self.begin_object(0)?;
        }
        self.close_object()
    }

    /// Waits for every part in flight (keeping the first error).
    fn settle(&mut self) -> Result<(), SinkError> {
        let mut first = None;
        while self.outstanding > 0 {
            if let Err(e) = self.wait_one() {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Parts of object `index` done so far, in order.
    fn parts_of(&self, index: usize) -> impl Iterator<Item = (u32, &DonePart)> {
        self.done
            .range((index, 0)..(index + 1, 0))
            .map(|((_, n), p)| (*n, p))
    }

    /// Output stream bytes stored without a gap from the start.
    fn contiguous(&self) -> u64 {
        let mut end = 0;
        for index in 0..self.state.objects.len() {
            let mut inside = 0;
            for (_, p) in self.parts_of(index) {
                if p.offset != inside {
                    break;
                }
                inside += p.size;
            }
            end += inside;
            if self
                .closed
                .get(index)
                .is_none_or(|c| c.size_bytes != inside)
            {
                break;
            }
        }
        end
    }

    fn store_state(&mut self) -> Result<(), S3Error> {
        let end = self.contiguous();
        let json = state_json(&self.state)?;
        self.state_client
            .put_object(&self.state_key, &json, false)?;
        self.last_store = Instant::now();
        let source = self.source_end(end);
        self.uploaded.store(source, Ordering::Relaxed);
        Ok(())
    }

    /// Completes every object's multipart upload in order, recording each; uploads an interrupted run
    /// recorded beyond this run's objects are aborted.
    fn complete_objects(&mut self) -> Result<(), SinkError> {
        // Every part recorded first: a kill while completing leaves a state that names them all.
        self.store_state()?;
        for index in 0..self.closed.len() {
            let Some(obj) = self.state.objects.get(index).cloned() else {
                continue;
            };
            if obj.completed {
                continue;
            }
            let parts: Vec<CompletedPart> = self
                .parts_of(index)
                .map(|(number, p)| CompletedPart {
                    number,
                    etag: p.etag.clone(),
                    checksum_sha256: base64(&p.sha256),
                })
                .collect();
            self.state_client.complete_multipart(
                &self.url.key(&obj.name),
                &obj.upload_id,
                &parts,
            )?;
            if let Some(o) = self.state.objects.get_mut(index) {
                o.completed = true;
            }
            self.store_state()?;
        }
        // Objects an interrupted run recorded beyond this run's (the stream came out shorter): not
        // part of this acquisition, so removed; what cannot be removed is named in the log.
        let extra = self.state.objects.split_off(self.closed.len());
        for o in &extra {
            if let Err(what) = self.remove_object(o) {
                self.state.line(&format!(
                    "LEFT IN THE STORE: {what}; not part of this acquisition, remove it with the store's tools"
                ));
            }
        }
        Ok(())
    }

    /// Aborts an object's multipart upload or deletes the completed object; `Err` names what is left.
    fn remove_object(&mut self, o: &StateObject) -> Result<(), String> {
        let key = self.url.key(&o.name);
        let result = if o.completed {
            self.state_client.delete_object(&key)
        } else if o.upload_id.is_empty() {
            Ok(())
        } else {
            match self.state_client.abort_multipart(&key, &o.upload_id) {
                // Already gone (aborted, or expired by the store).
                Err(S3Error::Status { status: 404, .. }) => Ok(()),
                r => r,
            }
        };
        result.map_err(|e| {
            if o.completed {
                format!("object {key} ({})", crate::error_chain(&e))
            } else {
                format!(
                    "multipart upload {} of {key} ({})",
                    o.upload_id,
                    crate::error_chain(&e)
                )
            }
        })
    }

    /// Leaves nothing half-written: aborts every upload, removes completed objects, then the state,
    /// but only when everything else went; otherwise the state keeps naming what is left.
    fn abort_all(&mut self) -> Leftover {
        let mut failed = Vec::new();
        let mut left = Vec::new();
        for o in std::mem::take(&mut self.state.objects) {
            if let Err(what) = self.remove_object(&o) {
                failed.push(what);
                left.push(o);
            }
        }
        self.state.objects = left;
        if failed.is_empty() {
            match self.state_client.delete_object(&self.state_key) {
                Ok(()) => return Leftover::Nothing,
                Err(e) => failed.push(format!("{} ({})", self.state_key, crate::error_chain(&e))),
            }
        } else {
            self.state.line(&format!(
                "stopping: could not remove {}; the state is kept",
                failed.join(", ")
            ));
            if let Err(e) = self.store_state() {
                failed.push(format!(
                    "updating {} ({})",
                    self.state_key,
                    crate::error_chain(&e)
                ));
            }
        }
        Leftover::Uncleaned { failed }
    }

    /// For a stop that cannot be resumed but whose completed objects are evidence to keep: aborts the
    /// unfinished multipart uploads (invisible in a listing, and billed) and records that in the state.
    fn abort_unfinished(&mut self) -> Leftover {
        let mut failed = Vec::new();
        let mut kept = Vec::new();
        for o in std::mem::take(&mut self.state.objects) {
            if o.completed {
                kept.push(o);
            } else if let Err(what) = self.remove_object(&o) {
                failed.push(what);
                kept.push(o);
            } else if !o.upload_id.is_empty() {
                self.state.line(&format!(
                    "aborted the unfinished multipart upload {} of {}",
                    o.upload_id,
                    self.url.key(&o.name)
                ));
            }
        }
        let objects = kept.iter().filter(|o| o.completed).count();
        self.state.objects = kept;
        if let Err(e) = self.store_state() {
            failed.push(format!(
                "updating {} ({})",
                self.state_key,
                crate::error_chain(&e)
            ));
        }
        if failed.is_empty() {
            Leftover::CompletedObjects { objects }
        } else {
            Leftover::Uncleaned { failed }
        }
    }
}

struct S3Sink(Arc<Mutex<SinkState>>);

fn lock(m: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlockSink for S3Sink {
    fn accept(&mut self, block: &Block, out: &[u8]) -> Result<(), StreamError> {
        let mut s = lock(&self.0);
        if s.zstd {
            let entry = FrameEntry {
                compressed: u32::try_from(out.len())
                    .map_err(|_| WriteImageError::OversizeFrame(out.len()))?,
                decompressed: u32::try_from(block.len)
                    .map_err(|_| WriteImageError::OversizeFrame(block.len))?,
            };
            s.frames.push(entry);
        }
        s.write(out)
            .map_err(|e| StreamError::WriteSink(Box::new(e)))
    }
}

fn spawn_uploader(
    store: &Store,
    jobs: Arc<Mutex<Receiver<PartJob>>>,
    results: SyncSender<PartResult>,
) -> std::io::Result<JoinHandle<()>> {
    let mut client = store.client();
    std::thread::Builder::new()
        .name("s3-upload".to_owned())
        .spawn(move || {
            loop {
                let job = match jobs.lock().map(|rx| rx.recv()) {
                    Ok(Ok(j)) => j,
                    _ => return,
                };
                let sha256: [u8; 32] = Sha256::digest(&job.data).into();
                let size = job.data.len() as u64;
                let reusable = job.held.as_ref().filter(|h| {
                    h.size == size
                        && (h.sha256_b64.as_deref() == Some(base64(&sha256).as_str())
                            || h.sha256_hex.as_deref() == Some(hex(&sha256).as_str()))
                });
                let recorded = job.held.as_ref().is_some_and(|h| h.sha256_hex.is_some());
                let result = match reusable {
                    Some(h) => Ok((h.etag.clone(), true)),
                    None if !job.completed && recorded => {
                        if results.send(PartResult::Replace(job)).is_err() {
                            return;
                        }
                        continue;
                    }
                    None if job.completed => Err(SinkError::ChangeCompletedPart {
                        file: job.key.rsplit('/').next().unwrap_or_default().to_owned(),
                        number: job.number,
                    }),
                    None => client
                        .upload_part(&job.key, &job.upload_id, job.number, &job.data, &sha256)
                        .map(|e| (e, false))
                        .map_err(SinkError::from),
                };
                let msg = match result {
                    Ok((etag, reused)) => PartResult::Done {
                        object: job.object,
                        number: job.number,
                        offset: job.offset,
                        size,
                        sha256,
                        etag,
                        reused,
                        data: job.data,
                    },
                    Err(e) => PartResult::Failed(e),
                };
                if results.send(msg).is_err() {
                    return;
                }
            }
        })
}

/// Acquires `opts.source` into the store. See the module doc.
pub fn upload(
    opts: &UploadOptions,
    events: &mut dyn FnMut(&UploadEvent),
) -> Result<UploadOutcome, UploadError> {
    let (source, facts) = crate::acquire::open_source(&opts.source)?;
    let info = facts.info;
    let size = info.size_bytes;
    let sector = info.logical_sector_size.max(1);
    let host = crate::acquire::host_facts();
    let url = opts
        .url
        .with_default_prefix(&opts.case, host.dmi_serial.as_deref(), &info.path);
    let state_key = url.key(STATE_OBJECT);
    let store = Store::new(opts.store.clone())?;
    let mut client = store.client();

    // The first request also measures the clock.
    let existing = client.list_objects(&url.prefix)?;
    let skew = store.clock_offset();
    if let Some(offset_secs) = skew {
        events(&UploadEvent::ClockSkew { offset_secs });
    }

    let mut held = BTreeMap::new();
    let mut state = if opts.resume {
        if !existing.iter().any(|(k, _)| *k == state_key) {
            return Err(
                if existing.iter().any(|(k, _)| *k == url.key(MANIFEST_FILE)) {
                    UploadError::RejectComplete {
                        url: url.to_string(),
                    }
                } else {
                    UploadError::MissingState {
                        url: url.to_string(),
                    }
                },
            );
        }
        let bytes = client.get_object(&state_key, None)?;
        let mut st: UploadState =
            serde_json::from_slice(&bytes).map_err(|source| UploadError::ParseState {
                url: url.to_string(),
                source,
            })?;
        st.upgrade();
        let mismatch = |what: &str, recorded: String, requested: String| {
            Err(UploadError::MismatchResume {
                what: what.to_owned(),
                recorded,
                requested,
            })
        };
        if st.source_size != size {
            return mismatch(
                "the source size",
                st.source_size.to_string(),
                size.to_string(),
            );
        }
        if st.source_serial.is_some() && info.serial.is_some() && st.source_serial != info.serial {
            return mismatch(
                "the source serial number",
                format!("{:?}", st.source_serial),
                format!("{:?}", info.serial),
            );
        }
        // The same rules as a local resume (a zstd upload's level must stay: the parts held are its
        // frames; a raw upload ignores --zstd-level as a new one does).
        let settings = resolve_settings(&opts.requested(), sector, Some(&st.settings()))?;
        st.set_settings(settings);
        for (index, obj) in st.objects.iter_mut().enumerate() {
            let key = url.key(&obj.name);
            if !obj.completed {
                match client.list_parts(&key, &obj.upload_id) {
                    Ok(listed) => {
                        for p in &listed {
                            held.insert((index, p.number), held_part(p, obj.parts.get(&p.number)));
                        }
                        // Only what the store lists is there; the rest of the record is re-uploaded.
                        obj.parts.retain(|n, _| held.contains_key(&(index, *n)));
                        continue;
                    }
                    Err(S3Error::Status { status: 404, .. }) => {
                        if client.head_object(&key)?.is_some() {
                            // Completed just before the interruption, before the state recorded it.
                            obj.completed = true;
                        } else {
                            // The store dropped the upload (aborted, or expired by a lifecycle rule):
                            // nothing of it is held; the sink starts a new upload for this object.
                            st.log.push(format!(
                                "{} the store no longer knows multipart upload {} of {key}; starting it again",
                                now_rfc3339(),
                                obj.upload_id
                            ));
                            obj.upload_id.clear();
                            obj.parts.clear();
                            continue;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // A complete object is checked against the part hashes its state recorded.
            for (n, p) in &obj.parts {
                held.insert(
                    (index, *n),
                    Held {
                        size: p.size,
                        sha256_b64: None,
                        sha256_hex: Some(p.sha256.clone()),
                        etag: String::new(),
                    },
                );
            }
        }
        let bytes_held: u64 = held.values().map(|h| h.size).sum();
        events(&UploadEvent::Resuming {
            parts: held.len(),
            bytes: bytes_held,
        });
        st.resumes.push(ResumeRecord {
            at: now_rfc3339(),
            offset: 0,
        });
        st.line(&format!(
            "resuming: the store holds {} parts ({} bytes) of {} objects; re-reading the source to check them",
            held.len(),
            bytes_held,
            st.objects.len()
        ));
        st
    } else {
        if let Some((k, _)) = existing.first() {
            return Err(UploadError::RejectExisting {
                url: url.to_string(),
                key: k.clone(),
            });
        }
        let s = resolve_settings(&opts.requested(), sector, None)?;
        let mut st = UploadState {
            schema: STATE_SCHEMA.to_owned(),
            upload_id: String::new(),
            parts: BTreeMap::new(),
            objects: Vec::new(),
            part_bytes: part_size(
                largest_object(size, s.block_bytes, s.zstd_level.is_some(), s.split_bytes),
                s.block_bytes,
            ),
            format: s.format,
            split_bytes: s.split_bytes,
            zstd_level: s.zstd_level,
            block_bytes: s.block_bytes,
            hashes: s.hashes,
            window_bytes: s.window_bytes,
            retries: s.retries,
            source_path: info.path.clone(),
            source_size: size,
            source_serial: info.serial.clone(),
            case: opts.case.clone(),
            started_at: now_rfc3339(),
            resumes: Vec::new(),
            log: Vec::new(),
        };
        st.line(&format!(
            "rescue {} acquisition of {} ({} bytes) to {} via {} started",
            env!("CARGO_PKG_VERSION"),
            info.path,
            size,
            url,
            opts.store.endpoint
        ));
        st.line(&format!(
            "source: {} model={:?} serial={:?} sector={}/{}",
            info.kind, info.model, info.serial, info.logical_sector_size, info.physical_sector_size
        ));
        for (member, before) in &facts.read_only.before {
            st.line(&format!(
                "write-block: {member} read-only before={before} after=true"
            ));
        }
        st.line(&format!(
            "settings: format={} split={:?} zstd_level={:?} hashes={} window={:?} block={} parts of {} bytes",
            st.format,
            st.split_bytes,
            st.zstd_level,
            names(&st.hashes),
            st.window_bytes,
            st.block_bytes,
            st.part_bytes
        ));
        if opts.insecure {
            st.line("TLS certificate of the store NOT checked (--insecure)");
        }
        // Claim the prefix first (a racing writer's conditional put fails); the sink starts each
        // object's multipart upload when the stream reaches it.
        let json = state_json(&st)?;
        match client.put_object(&state_key, &json, true) {
            Ok(()) => {}
            Err(S3Error::Status { status: 412, .. }) => {
                return Err(UploadError::RejectExisting {
                    url: url.to_string(),
                    key: state_key,
                });
            }
            Err(e) => return Err(e.into()),
        }
        st
    };
    if let Some(offset) = skew {
        state.line(&format!(
            "clock: the store's Date header is {offset} s ahead of this machine's clock; requests signed with the corrected time"
        ));
    }
    let format = ImageFormat::from_manifest_name(&state.format).ok_or_else(|| {
        UploadError::RejectOption(format!(
            "unknown format {:?} in the upload state",
            state.format
        ))
    })?;
    let zstd_level = state.zstd_level;
    let layout = state.layout();
    // Checked by resolve_settings, for a recorded state as for options.
    let block = state.block_bytes as usize;
    let part_bytes = state.part_bytes.max(1);
    let hashes = state.hashes.clone();
    let window = state.window_bytes;
    let retries = opts.retries.unwrap_or(state.retries);
    let remote = RemoteInfo {
        endpoint: opts.store.endpoint.clone(),
        region: opts.store.region.clone(),
        bucket: url.bucket.clone(),
        prefix: url.prefix.clone(),
        insecure: opts.insecure,
        ca_file: opts.ca_file.clone(),
        part_bytes,
        parts: Vec::new(),
        clock_offset_secs: skew,
    };

    // One buffer fills while the others upload: at most PART_MEMORY of part data.
    let buffers = ((PART_MEMORY / part_bytes) as usize).clamp(2, MAX_UPLOADERS + 1);
    let uploaders = buffers - 1;
    let (job_tx, job_rx) = sync_channel::<PartJob>(0);
    let (res_tx, res_rx) = sync_channel::<PartResult>(uploaders + 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut workers = Vec::new();
    for _ in 0..uploaders {
        match spawn_uploader(&store, Arc::clone(&job_rx), res_tx.clone()) {
            Ok(h) => workers.push(h),
            Err(e) => {
                return Err(UploadError::Stop {
                    uploaded: 0,
                    resumable: true,
                    left: Leftover::Resumable,
                    source: StreamError::SpawnThread {
                        name: "s3-upload".to_owned(),
                        source: e,
                    },
                });
            }
        }
    }
    drop(res_tx);
    let uploaded = Arc::new(AtomicU64::new(0));
    let sink = Arc::new(Mutex::new(SinkState {
        url: url.clone(),
        layout,
        zstd: zstd_level.is_some(),
        frames: Vec::new(),
        hash_objects: format != ImageFormat::Raw || state.split_bytes.is_some(),
        part_bytes,
        buf: Vec::new(),
        spare: Vec::new(),
        buffers: 0,
        max_buffers: buffers,
        pos: 0,
        open: None,
        closed: Vec::new(),
        held,
        jobs: Some(job_tx),
        results: res_rx,
        workers,
        outstanding: 0,
        done: BTreeMap::new(),
        reused: 0,
        state,
        state_client: store.client(),
        state_key: state_key.clone(),
        last_store: Instant::now(),
        state_interval: opts.state_interval.unwrap_or(STATE_INTERVAL),
        uploaded: Arc::clone(&uploaded),
        walked: (0, 0, 0),
    }));
    lock(&sink).store_state()?;

    // Half the local budget: the uploaders hold whole parts besides.
    let pool = BufferPool::for_stream(block, crate::acquire::STREAM_BUDGET / 2);
    let mut blocks = BlockReader::new(&source, 0, size, sector, retries);
    let mut produce =
        |pool: &BufferPool| -> Result<Option<Block>, StreamError> { Ok(blocks.next_block(pool)?) };
    let mut unreadable: Vec<Extent> = Vec::new();
    let mut unreadable_bytes = 0;
    let mut observe = |b: &Block| {
        for e in &b.unreadable {
            unreadable_bytes += e.length;
            crate::acquire::source::push_extent(&mut unreadable, *e);
        }
        events(&UploadEvent::Progress(Progress {
            phase: Phase::Acquire,
            done_bytes: b.end(),
            total_bytes: size,
            durable_bytes: uploaded.load(Ordering::Relaxed),
            unreadable_bytes,
        }));
        if opts.cancel.load(Ordering::Relaxed) {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let result = pipeline::run(
        &pool,
        &hashes,
        window,
        Output::Sink {
            sink: Box::new(S3Sink(Arc::clone(&sink))),
            zstd: zstd_level.map(|l| (l, crate::acquire::compressor_threads())),
        },
        &mut produce,
        &mut observe,
    );
    let mut s = lock(&sink);
    let result = match result {
        Ok(r) if r.ending == Ending::Complete => r,
        Ok(_) => {
            // Stopped on request: let the parts in flight land, record them, keep the upload.
            let settled = s.settle();
            s.stop_workers();
            let stored = uploaded.load(Ordering::Relaxed);
            s.state.line(&format!(
                "interrupted on request after {stored} bytes of the source stored; continue with --resume"
            ));
            s.store_state()?;
            if let Err(e) = settled {
                return Err(stop(&mut s, &uploaded, StreamError::WriteSink(Box::new(e))));
            }
            return Ok(UploadOutcome {
                status: AcquireStatus::Interrupted,
                manifest: incomplete_manifest(
                    &s.state,
                    &info,
                    &facts.read_only,
                    host,
                    stored,
                    remote,
                ),
                url,
                reused_parts: s.reused,
            });
        }
        Err(failure) => {
            let settled = s.settle();
            s.stop_workers();
            let error = match (failure.error, settled) {
                // A consumer-gone stop hides the sink's real cause.
                (StreamError::WriteSink(e), _) => StreamError::WriteSink(e),
                (_, Err(e)) if e.is_network() => StreamError::WriteSink(Box::new(e)),
                (other, _) => other,
            };
            return Err(stop(&mut s, &uploaded, error));
        }
    };
    if let Ok(now) = source.size()
        && now != size
    {
        let _ = s.settle();
        s.stop_workers();
        let left = s.abort_all();
        return Err(UploadError::ChangeSourceSize {
            before: size,
            after: now,
            left,
        });
    }

    // The seek table and the last parts, then every answer.
    // The reader usually finishes first (its buffers absorb the last parts): keep reporting what
    // becomes durable while the uploads drain.
    let finish = (|| -> Result<(), SinkError> {
        s.end_stream()?;
        while s.outstanding > 0 {
            s.wait_one()?;
            events(&UploadEvent::Progress(Progress {
                phase: Phase::Acquire,
                done_bytes: size,
                total_bytes: size,
                durable_bytes: uploaded.load(Ordering::Relaxed),
                unreadable_bytes: unreadable.iter().map(|e| e.length).sum(),
            }));
        }
        Ok(())
    })();
    s.stop_workers();
    if let Err(e) = finish.and_then(|()| s.complete_objects()) {
        return Err(stop(&mut s, &uploaded, StreamError::WriteSink(Box::new(e))));
    }
    let sha = result.hashes.get("sha256").cloned().unwrap_or_default();
    let mut objects = s.closed.clone();
    if !s.hash_objects
        && let Some(o) = objects.first_mut()
    {
        o.sha256 = sha.clone();
    }
    let mut parts = Vec::new();
    for (index, o) in objects.iter().enumerate() {
        for (number, p) in s.parts_of(index) {
            parts.push(RemotePart {
                file: o.file.clone(),
                number,
                offset: p.offset,
                size_bytes: p.size,
                sha256: hex(&p.sha256),
            });
        }
    }
    let reused = s.reused;
    let mut state = s.state.clone();
    // The part buffers and the read pool are not needed any more; --verify-source brings its own.
    s.spare = Vec::new();
    s.buf = Vec::new();
    drop(s);
    drop(pool);

    for e in &unreadable {
        state.line(&format!(
            "unreadable: {} bytes at offset {} (zero-filled)",
            e.length, e.offset
        ));
    }
    for o in &objects {
        state.line(&format!(
            "stored {} ({} bytes in {} parts, sha256 {})",
            url.key(&o.file),
            o.size_bytes,
            parts.iter().filter(|p| p.file == o.file).count(),
            o.sha256
        ));
    }
    state.line(&format!(
        "{reused} parts already in the store were checked against the source and kept"
    ));
    for (algo, digest) in &result.hashes {
        state.line(&format!("{algo} of the acquired stream: {digest}"));
    }

    // Optional second read of the source, as a local acquisition does it.
    let mut source_verification = None;
    if opts.verify_source {
        let verification = crate::acquire::verify_source(
            &source,
            size,
            sector,
            block,
            &hashes,
            retries,
            &opts.cancel,
            &mut |p| events(&UploadEvent::Progress(p.clone())),
            (&result.hashes, &unreadable),
            &mut |l| state.line(l),
        )
        .map_err(UploadError::VerifySource)?;
        let Some(verification) = verification else {
            // Stopped on request: the image objects are complete, the comparison is not done. The
            // state stays so that `--resume --verify-source` checks the parts and re-reads again.
            state.line(
                "source re-read interrupted on request: the image objects are complete, the source was NOT compared; continue with --resume --verify-source",
            );
            client.put_object(&state_key, &state_json(&state)?, false)?;
            return Ok(UploadOutcome {
                status: AcquireStatus::Interrupted,
                manifest: incomplete_manifest(&state, &info, &facts.read_only, host, size, remote),
                url,
                reused_parts: reused,
            });
        };
        source_verification = Some(verification);
    }

    // Small objects: unreadable.map, manifest.json, acquisition.log, SHA256SUMS.
    let map = mapfile::render(
        size,
        size,
        &unreadable,
        &state.started_at,
        env!("CARGO_PKG_VERSION"),
    );
    client.put_object(&url.key(MAP_FILE), map.as_bytes(), false)?;
    let mut manifest = incomplete_manifest(&state, &info, &facts.read_only, host, size, remote);
    manifest.complete = true;
    manifest.stop_reason = None;
    manifest.hashes = result.hashes.clone();
    manifest.windows = result.windows.clone();
    manifest.unreadable = unreadable.clone();
    manifest.source_verification = source_verification;
    manifest.outputs = objects;
    manifest.outputs.push(OutputFile {
        file: MAP_FILE.to_owned(),
        size_bytes: map.len() as u64,
        sha256: hash::sha256_hex(map.as_bytes()),
    });
    if let Some(r) = manifest.remote.as_mut() {
        r.parts = parts;
    }
    if manifest.read_only.applied {
        for (member, flag) in manifest.read_only.after.iter_mut() {
            *flag = crate::blkro::is_read_only(std::path::Path::new(member)).unwrap_or(false);
        }
    }
    let json = manifest.to_json();
    client.put_object(&url.key(MANIFEST_FILE), &json, false)?;
    let unreadable_total: u64 = unreadable.iter().map(|e| e.length).sum();
    state.line(&format!(
        "acquisition complete: {size} bytes, {unreadable_total} unreadable bytes in {} extents",
        unreadable.len()
    ));
    let mut log = state.log.join("\n");
    log.push('\n');
    client.put_object(&url.key(LOG_FILE), log.as_bytes(), false)?;
    let mut sums: Vec<(String, String)> = manifest
        .outputs
        .iter()
        .map(|o| (o.file.clone(), o.sha256.clone()))
        .collect();
    sums.push((MANIFEST_FILE.to_owned(), hash::sha256_hex(&json)));
    sums.push((LOG_FILE.to_owned(), hash::sha256_hex(log.as_bytes())));
    let sums_text = crate::acquire::manifest::render_sums(&sums);
    client.put_object(&url.key(SUMS_FILE), sums_text.as_bytes(), false)?;
    client.delete_object(&state_key)?;
    let status = if manifest
        .source_verification
        .as_ref()
        .is_some_and(|v| !v.matched)
    {
        AcquireStatus::SourceMismatch
    } else if unreadable.is_empty() {
        AcquireStatus::Complete
    } else {
        AcquireStatus::CompleteWithUnreadable
    };
    Ok(UploadOutcome {
        status,
        manifest,
        url,
        reused_parts: reused,
    })
}

/// The error for a stream that stopped: a network failure keeps the uploads and the state for
/// `--resume`; a completed object that no longer matches the source is left for the examiner with the
/// state, the unfinished uploads aborted; any other failure (a refusal by the store, a local error)
/// removes everything (or, where that fails, keeps the state naming what is left).
fn stop(s: &mut SinkState, uploaded: &AtomicU64, error: StreamError) -> UploadError {
    let sink_error = match &error {
        StreamError::WriteSink(e) => e.downcast_ref::<SinkError>(),
        _ => None,
    };
    let network = sink_error.is_some_and(SinkError::is_network);
    let changed = matches!(sink_error, Some(SinkError::ChangeCompletedPart { .. }));
    let msg = crate::error_chain(&error);
    let left = if network {
        s.state.line(&format!("stopped: {msg}"));
        // If this write fails too, the last stored state still names every upload: resumable.
        let _ = s.store_state();
        Leftover::Resumable
    } else if changed {
        s.state.line(&format!("stopped: {msg}"));
        s.abort_unfinished()
    } else {
        s.abort_all()
    };
    UploadError::Stop {
        uploaded: uploaded.load(Ordering::Relaxed),
        resumable: network,
        left,
        source: error,
    }
}

/// The state object's bytes. Serialising plain data does not fail in practice, but an empty state
/// written over a good one would lose the upload ids, so a failure is an error, never `[]`.
fn state_json(state: &UploadState) -> Result<Vec<u8>, S3Error> {
    serde_json::to_vec_pretty(state).map_err(S3Error::EncodeState)
}

fn incomplete_manifest(
    state: &UploadState,
    info: &crate::acquire::manifest::SourceInfo,
    read_only: &crate::acquire::manifest::ReadOnlyState,
    host: crate::acquire::manifest::HostFacts,
    acquired: u64,
    remote: RemoteInfo,
) -> Manifest {
    Manifest {
        schema: SCHEMA.to_owned(),
        tool: ToolInfo::current(),
        case: state.case.clone(),
        host,
        source: info.clone(),
        image: ImageInfo {
            format: state.format.clone(),
            split_bytes: state.split_bytes,
            block_bytes: state.block_bytes,
            zstd_level: state.zstd_level,
            window_bytes: state.window_bytes,
        },
        started_at: state.started_at.clone(),
        finished_at: Some(now_rfc3339()),
        complete: false,
        stop_reason: Some("interrupted".to_owned()),
        acquired_bytes: acquired,
        hashes: BTreeMap::new(),
        windows: Vec::new(),
        unreadable: Vec::new(),
        outputs: Vec::new(),
        read_only: read_only.clone(),
        source_verification: None,
        resumes: state.resumes.clone(),
        remote: Some(remote),
    }
}

#[cfg(test)]
mod tests {
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
