//! Acquisition straight into an S3-compatible store: the source is read by the same pipeline as a local
//! acquisition (read-only source, parallel stream hashes), and an [`crate::acquire::pipeline::BlockSink`]
//! cuts the stream into parts that a bounded pool of uploader threads sends as a multipart upload, each
//! part with `x-amz-checksum-sha256`. The object layout mirrors a local directory: `image.raw`,
//! `unreadable.map`, `manifest.json` (listing every part and its SHA-256), `acquisition.log`,
//! `SHA256SUMS`.
//!
//! Durable state lives in the store itself (`.rescue-upload.json` under the prefix: upload id, settings,
//! parts uploaded with their SHA-256, log so far), so a killed process or a restarted rescue system
//! continues with `--resume`: the source is read again, each part the store already holds is checked
//! against what was re-read and skipped, the rest is uploaded. A second writer to a prefix that holds
//! anything is refused. A fatal refusal by the store aborts the multipart upload and removes the state,
//! leaving nothing half-written; a network failure keeps both for `--resume`.
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
use crate::acquire::hash::{self, HashAlgorithm, hex};
use crate::acquire::manifest::{
    CaseInfo, ImageInfo, LOG_FILE, MANIFEST_FILE, MAP_FILE, Manifest, RemoteInfo, RemotePart,
    ResumeRecord, SCHEMA, SUMS_FILE, ToolInfo, now_rfc3339,
};
use crate::acquire::pipeline::{self, BlockSink, Control, Ending, Output, StreamError};
use crate::acquire::segments::OutputFile;
use crate::acquire::source::{Extent, read_block};
use crate::acquire::{
    AcquireError, AcquireStatus, DEFAULT_BLOCK, DEFAULT_RETRIES, MAX_BLOCK, Phase, Progress,
    mapfile,
};

/// Name of the state object under the prefix while an upload is under way.
pub const STATE_OBJECT: &str = ".rescue-upload.json";
/// Schema of the state object.
pub const STATE_SCHEMA: &str = "rescue.s3-upload/1";
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

/// Part size for a source: max(8 MiB, ⌈size/10000⌉), rounded up to whole read blocks.
pub fn part_size(size: u64, block: u64) -> u64 {
    let p = MIN_PART.max(size.div_ceil(MAX_PARTS));
    p.div_ceil(block.max(1)) * block.max(1)
}

/// What the caller asks for.
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
    pub case: CaseInfo,
    pub retries: Option<u32>,
    pub resume: bool,
    pub block_size: Option<usize>,
    /// How often the state object is rewritten [default: STATE_INTERVAL]; zero records every part.
    pub state_interval: Option<Duration>,
    pub cancel: Arc<AtomicBool>,
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
    #[error("upload stopped after {uploaded} bytes were stored{}", if *.resumable { "; run again with --resume" } else { "; the multipart upload was aborted" })]
    Stop {
        uploaded: u64,
        resumable: bool,
        #[source]
        source: StreamError,
    },
    #[error("the source size changed during the run: {before} bytes at the start, {after} now")]
    ChangeSourceSize { before: u64, after: u64 },
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatePart {
    size: u64,
    sha256: String,
}

/// The state object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    schema: String,
    upload_id: String,
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
    parts: BTreeMap<u32, StatePart>,
    log: Vec<String>,
}

impl UploadState {
    fn line(&mut self, msg: &str) {
        self.log.push(format!("{} {msg}", now_rfc3339()));
    }
}

/// What the store already holds of part `n` on resume.
#[derive(Debug, Clone)]
struct Held {
    size: u64,
    /// Base64 checksum from ListParts, or hex from our state object.
    sha256_b64: Option<String>,
    sha256_hex: Option<String>,
    etag: String,
}

struct PartJob {
    number: u32,
    offset: u64,
    data: Vec<u8>,
}

enum PartResult {
    Done {
        number: u32,
        offset: u64,
        size: u64,
        sha256: [u8; 32],
        etag: String,
        reused: bool,
        data: Vec<u8>,
    },
    Failed(S3Error),
}

#[derive(Debug, Clone)]
struct DonePart {
    offset: u64,
    size: u64,
    sha256: [u8; 32],
    etag: String,
}

/// The sink's state, shared with the caller (which needs it after the pipeline returns).
struct SinkState {
    part_bytes: u64,
    buf: Vec<u8>,
    spare: Vec<Vec<u8>>,
    buffers: usize,
    max_buffers: usize,
    next_number: u32,
    part_offset: u64,
    jobs: Option<SyncSender<PartJob>>,
    results: Receiver<PartResult>,
    workers: Vec<JoinHandle<()>>,
    outstanding: usize,
    done: BTreeMap<u32, DonePart>,
    reused: usize,
    state: UploadState,
    state_client: super::client::Client,
    state_key: String,
    last_store: Instant,
    state_interval: Duration,
    uploaded: Arc<AtomicU64>,
    failure: Option<S3Error>,
}

impl SinkState {
    fn take_buffer(&mut self) -> Result<Vec<u8>, S3Error> {
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

    fn handle(&mut self, r: PartResult) -> Result<(), S3Error> {
        self.outstanding -= 1;
        match r {
            PartResult::Done {
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
                self.state.parts.insert(
                    number,
                    StatePart {
                        size,
                        sha256: hex(&sha256),
                    },
                );
                self.done.insert(
                    number,
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
            PartResult::Failed(e) => Err(e),
        }
    }

    fn wait_one(&mut self) -> Result<(), S3Error> {
        match self.results.recv() {
            Ok(r) => self.handle(r),
            Err(_) => Err(S3Error::ParseAnswer {
                op: "UploadPart".to_owned(),
                what: "an answer from the uploader threads".to_owned(),
            }),
        }
    }

    fn drain_ready(&mut self) -> Result<(), S3Error> {
        while let Ok(r) = self.results.try_recv() {
            self.handle(r)?;
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), S3Error> {
        let data = std::mem::take(&mut self.buf);
        let size = data.len() as u64;
        let job = PartJob {
            number: self.next_number,
            offset: self.part_offset,
            data,
        };
        self.next_number += 1;
        self.part_offset += size;
        let Some(tx) = &self.jobs else {
            return Ok(());
        };
        if tx.send(job).is_err() {
            return Err(S3Error::ParseAnswer {
                op: "UploadPart".to_owned(),
                what: "a running uploader thread".to_owned(),
            });
        }
        self.outstanding += 1;
        Ok(())
    }

    fn accept(&mut self, mut data: &[u8]) -> Result<(), S3Error> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.drain_ready()?;
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf = self.take_buffer()?;
            }
            let room = self.part_bytes as usize - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() as u64 == self.part_bytes {
                self.dispatch()?;
            }
        }
        Ok(())
    }

    /// Waits for every part in flight (keeping the first error).
    fn settle(&mut self) -> Result<(), S3Error> {
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

    fn store_state(&mut self) -> Result<(), S3Error> {
        // Contiguous bytes stored from the start, as this snapshot records them.
        let mut end = 0;
        for p in self.done.values() {
            if p.offset != end {
                break;
            }
            end += p.size;
        }
        let json = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        self.state_client
            .put_object(&self.state_key, &json, false)?;
        self.last_store = Instant::now();
        self.uploaded.store(end, Ordering::Relaxed);
        Ok(())
    }
}

struct S3Sink(Arc<Mutex<SinkState>>);

fn lock(m: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlockSink for S3Sink {
    fn accept(&mut self, _block: &Block, out: &[u8]) -> Result<(), StreamError> {
        lock(&self.0)
            .accept(out)
            .map_err(|e| StreamError::WriteSink(Box::new(e)))
    }
}

fn spawn_uploader(
    store: &Store,
    key: String,
    upload_id: String,
    held: Arc<BTreeMap<u32, Held>>,
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
                let reusable = held.get(&job.number).filter(|h| {
                    h.size == size
                        && (h.sha256_b64.as_deref() == Some(base64(&sha256).as_str())
                            || h.sha256_hex.as_deref() == Some(hex(&sha256).as_str()))
                });
                let result = match reusable {
                    Some(h) => Ok((h.etag.clone(), true)),
                    None => client
                        .upload_part(&key, &upload_id, job.number, &job.data, &sha256)
                        .map(|e| (e, false)),
                };
                let msg = match result {
                    Ok((etag, reused)) => PartResult::Done {
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
    let image_key = url.key("image.raw");
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
        if let Some(h) = &opts.hashes {
            let mut h = h.clone();
            if !h.contains(&HashAlgorithm::Sha256) {
                h.insert(0, HashAlgorithm::Sha256);
            }
            if h != st.hashes {
                return mismatch("--hash", names(&st.hashes), names(&h));
            }
        }
        if st.upload_id.is_empty() {
            // Killed between claiming the prefix and starting the upload.
            st.upload_id = client.create_multipart(&image_key)?;
        }
        if opts.window.is_some() && opts.window != st.window_bytes {
            return mismatch(
                "--window",
                format!("{:?}", st.window_bytes),
                format!("{:?}", opts.window),
            );
        }
        let listed = client.list_parts(&image_key, &st.upload_id)?;
        let mut bytes_held = 0;
        for p in &listed {
            bytes_held += p.size;
            held.insert(
                p.number,
                Held {
                    size: p.size,
                    sha256_b64: p.checksum_sha256.clone(),
                    sha256_hex: st.parts.get(&p.number).map(|s| s.sha256.clone()),
                    etag: p.etag.clone(),
                },
            );
        }
        // Only what the store lists is there; the rest of the record is re-uploaded.
        st.parts.retain(|n, _| held.contains_key(n));
        events(&UploadEvent::Resuming {
            parts: listed.len(),
            bytes: bytes_held,
        });
        st.resumes.push(ResumeRecord {
            at: now_rfc3339(),
            offset: 0,
        });
        st.line(&format!(
            "resuming upload {}: the store holds {} parts ({} bytes); re-reading the source to check them",
            st.upload_id,
            listed.len(),
            bytes_held
        ));
        st
    } else {
        if let Some((k, _)) = existing.first() {
            return Err(UploadError::RejectExisting {
                url: url.to_string(),
                key: k.clone(),
            });
        }
        let block = opts.block_size.unwrap_or(DEFAULT_BLOCK);
        if block == 0 || block > MAX_BLOCK || !block.is_multiple_of(sector as usize) {
            return Err(UploadError::RejectOption(format!(
                "the read size {block} must be a multiple of the {sector}-byte sector and at most {MAX_BLOCK}"
            )));
        }
        if opts.window == Some(0) {
            return Err(UploadError::RejectOption(
                "--window must be larger than 0".to_owned(),
            ));
        }
        let mut hashes = opts
            .hashes
            .clone()
            .unwrap_or_else(|| vec![HashAlgorithm::Sha256]);
        if !hashes.contains(&HashAlgorithm::Sha256) {
            hashes.insert(0, HashAlgorithm::Sha256);
        }
        let mut st = UploadState {
            schema: STATE_SCHEMA.to_owned(),
            upload_id: String::new(),
            part_bytes: part_size(size, block as u64),
            block_bytes: block as u64,
            hashes,
            window_bytes: opts.window,
            retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
            source_path: info.path.clone(),
            source_size: size,
            source_serial: info.serial.clone(),
            case: opts.case.clone(),
            started_at: now_rfc3339(),
            resumes: Vec::new(),
            parts: BTreeMap::new(),
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
        if opts.insecure {
            st.line("TLS certificate of the store NOT checked (--insecure)");
        }
        // Claim the prefix first (a racing writer's conditional put fails), then start the upload.
        let json = serde_json::to_vec_pretty(&st).unwrap_or_default();
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
        st.upload_id = match client.create_multipart(&image_key) {
            Ok(id) => id,
            Err(e) => {
                let _ = client.delete_object(&state_key);
                return Err(e.into());
            }
        };
        st.line(&format!(
            "multipart upload {} of {image_key}, parts of {} bytes, hashes {}",
            st.upload_id,
            st.part_bytes,
            names(&st.hashes)
        ));
        st
    };
    if let Some(offset) = skew {
        state.line(&format!(
            "clock: the store's Date header is {offset} s ahead of this machine's clock; requests signed with the corrected time"
        ));
    }
    let upload_id = state.upload_id.clone();
    let block = state.block_bytes as usize;
    let part_bytes = state.part_bytes;
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
        part_bytes: state.part_bytes,
        parts: Vec::new(),
        clock_offset_secs: skew,
    };

    // One buffer fills while the others upload: at most PART_MEMORY of part data.
    let buffers = ((PART_MEMORY / part_bytes) as usize).clamp(2, MAX_UPLOADERS + 1);
    let uploaders = buffers - 1;
    let (job_tx, job_rx) = sync_channel::<PartJob>(0);
    let (res_tx, res_rx) = sync_channel::<PartResult>(uploaders + 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let held = Arc::new(held);
    let mut workers = Vec::new();
    for _ in 0..uploaders {
        match spawn_uploader(
            &store,
            image_key.clone(),
            upload_id.clone(),
            Arc::clone(&held),
            Arc::clone(&job_rx),
            res_tx.clone(),
        ) {
            Ok(h) => workers.push(h),
            Err(e) => {
                return Err(UploadError::Stop {
                    uploaded: 0,
                    resumable: true,
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
        part_bytes,
        buf: Vec::new(),
        spare: Vec::new(),
        buffers: 0,
        max_buffers: buffers,
        next_number: 1,
        part_offset: 0,
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
        failure: None,
    }));
    lock(&sink).store_state()?;

    let pool = BufferPool::new(
        crate::acquire::POOL_BUFFERS
            .min((256 << 20) / block / 4)
            .max(4),
        block,
    );
    let mut offset = 0u64;
    let mut produce = |pool: &BufferPool| -> Result<Option<Block>, StreamError> {
        if offset >= size {
            return Ok(None);
        }
        let len = usize::try_from(size - offset).map_or(block, |r| r.min(block));
        let Some(mut buf) = pool.take() else {
            return Ok(None);
        };
        let bad = read_block(
            &source,
            buf.slice_mut(len),
            offset,
            sector as usize,
            retries,
        )?;
        let mut b = pool.block(buf, offset, len);
        b.unreadable = bad;
        offset += len as u64;
        Ok(Some(b))
    };
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
            zstd: None,
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
                "interrupted on request after {stored} bytes stored; continue with --resume"
            ));
            s.store_state()?;
            settled?;
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
            let error = failure.error;
            let network = match &error {
                StreamError::WriteSink(e) => {
                    e.downcast_ref::<S3Error>().is_some_and(S3Error::is_network)
                }
                _ => settled.as_ref().err().is_some_and(S3Error::is_network),
            };
            let stored = uploaded.load(Ordering::Relaxed);
            let msg = crate::error_chain(&error);
            if network {
                s.state
                    .line(&format!("stopped: {msg}; continue with --resume"));
                let _ = s.store_state();
            } else {
                // A refusal by the store or a local failure: leave nothing half-written.
                let _ = client.abort_multipart(&image_key, &upload_id);
                let _ = client.delete_object(&state_key);
            }
            return Err(UploadError::Stop {
                uploaded: stored,
                resumable: network,
                source: error,
            });
        }
    };
    if let Ok(now) = source.size()
        && now != size
    {
        let _ = s.settle();
        s.stop_workers();
        let _ = client.abort_multipart(&image_key, &upload_id);
        let _ = client.delete_object(&state_key);
        return Err(UploadError::ChangeSourceSize {
            before: size,
            after: now,
        });
    }

    // The last (short) part, then every answer.
    // The reader usually finishes first (its buffers absorb the last parts): keep reporting what
    // becomes durable while the uploads drain.
    let finish = (|| -> Result<(), S3Error> {
        if !s.buf.is_empty() || s.next_number == 1 {
            s.dispatch()?;
        }
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
    if let Err(e) = finish {
        let network = e.is_network();
        if network {
            let _ = s.store_state();
        } else {
            let _ = client.abort_multipart(&image_key, &upload_id);
            let _ = client.delete_object(&state_key);
        }
        return Err(UploadError::Stop {
            uploaded: uploaded.load(Ordering::Relaxed),
            resumable: network,
            source: StreamError::WriteSink(Box::new(e)),
        });
    }
    let parts: Vec<(u32, DonePart)> = s.done.iter().map(|(n, p)| (*n, p.clone())).collect();
    let completed: Vec<CompletedPart> = parts
        .iter()
        .map(|(n, p)| CompletedPart {
            number: *n,
            etag: p.etag.clone(),
            checksum_sha256: base64(&p.sha256),
        })
        .collect();
    if let Err(e) = client.complete_multipart(&image_key, &upload_id, &completed) {
        if !e.is_network() {
            let _ = client.abort_multipart(&image_key, &upload_id);
            let _ = client.delete_object(&state_key);
        }
        return Err(e.into());
    }
    let reused = s.reused;
    let mut state = s.state.clone();
    drop(s);

    // Small objects: unreadable.map, manifest.json, acquisition.log, SHA256SUMS.
    let sha = result.hashes.get("sha256").cloned().unwrap_or_default();
    for e in &unreadable {
        state.line(&format!(
            "unreadable: {} bytes at offset {} (zero-filled)",
            e.length, e.offset
        ));
    }
    state.line(&format!(
        "stored {image_key} ({size} bytes in {} parts, sha256 {sha}); {} parts already in the store were checked and kept",
        parts.len(),
        reused
    ));
    for (algo, digest) in &result.hashes {
        state.line(&format!("{algo} of the acquired stream: {digest}"));
    }
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
    manifest.outputs = vec![
        OutputFile {
            file: "image.raw".to_owned(),
            size_bytes: size,
            sha256: sha,
        },
        OutputFile {
            file: MAP_FILE.to_owned(),
            size_bytes: map.len() as u64,
            sha256: hash::sha256_hex(map.as_bytes()),
        },
    ];
    if let Some(r) = manifest.remote.as_mut() {
        r.parts = parts
            .iter()
            .map(|(n, p)| RemotePart {
                number: *n,
                offset: p.offset,
                size_bytes: p.size,
                sha256: hex(&p.sha256),
            })
            .collect();
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
    let status = if unreadable.is_empty() {
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

fn names(h: &[HashAlgorithm]) -> String {
    h.iter().map(|a| a.name()).collect::<Vec<_>>().join(",")
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
            format: "raw".to_owned(),
            split_bytes: None,
            block_bytes: state.block_bytes,
            zstd_level: None,
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
    fn part_size_is_at_least_8_mib_and_at_most_10000_parts() {
        let mib = 1 << 20;
        assert_eq!(part_size(1, 4 * mib), 8 * mib);
        assert_eq!(part_size(80_000 * mib, 4 * mib), 8 * mib);
        let big = 10u64 << 40; // 10 TiB
        let p = part_size(big, 4 * mib);
        assert!(p * MAX_PARTS >= big && p.is_multiple_of(4 * mib) && p < 2 * big / MAX_PARTS);
    }
}
