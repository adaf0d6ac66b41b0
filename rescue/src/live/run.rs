//! The live response, in order of volatility: the volatile state ([`state::Phase::Volatile`]), the
//! memory capture (a [`LimeStream`] through the one acquisition driver into `memory/`), the stable
//! state ([`state::Phase::Stable`]); then `live-manifest.json` (`rescue.live/1`, `docs/live.md`), a
//! case-log line and a top-level `SHA256SUMS` over every file written.
//!
//! `--out` is checked first ([`outcheck::classify`]): a disk of the running system or a RAM
//! filesystem is refused unless the operator allows it. Every file is written beneath `--out`, new
//! (never over an existing one) and fsynced with its directory. A memory capture that cannot start
//! (lockdown, no source, not root) is recorded with its reasons and the run goes on.
//!
//! Never prints, never loads a module.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use super::lime::{self, LimeStream, PhysExtent};
use super::memory::{self, Attempt, RamRange};
use super::outcheck::{self, OutPlace};
use super::state::{self, Phase};
use super::{Artifact, Roots};
use crate::acquire::driver::{self, Request, SourceRead};
use crate::acquire::hash::{self, HashAlgorithm};
use crate::acquire::local::LocalDir;
use crate::acquire::manifest::{
    self, CaseInfo, HostFacts, ReadOnlyState, SUMS_FILE, SourceInfo, ToolInfo, now_rfc3339,
};
use crate::acquire::{AcquireStatus, ImageFormat, Progress, Requested};
use crate::caselog::{CaseLog, Record};
use crate::s3::client::Client;
use crate::s3::upload::upload_source;
use crate::s3::{S3Error, S3Url, Store, UploadEvent, UploadOptions};

/// The value of `schema` in `live-manifest.json`.
pub const LIVE_SCHEMA: &str = "rescue.live/1";
pub const LIVE_MANIFEST: &str = "live-manifest.json";
/// The memory acquisition's directory beneath `--out`.
pub const MEMORY_DIR: &str = "memory";
/// The memory capture's file in [`MEMORY_DIR`] (`memory.lime.zst` in the zstd seekable format).
pub const MEMORY_IMAGE: &str = "memory.lime";
/// Read size of the memory capture: the LiME stream is read from kcore (or a device) in pieces of this
/// size, each hashed and written while the next is read.
pub const MEMORY_BLOCK: usize = 2 << 20;
/// Read buffers in flight during the memory capture: four blocks, enough for the reader, the hash
/// thread and the writer to overlap. A disk acquisition keeps up to 64 MiB in flight so that a
/// resumed run and a slow destination do not stall the source; a memory capture cannot be resumed,
/// and every MiB it holds is a MiB of the memory it captures displaced.
pub const MEMORY_BUDGET: usize = 4 * MEMORY_BLOCK;
/// The case log a live response on a foreign host starts in `--out`.
pub const CASE_LOG: &str = "case-log.jsonl";

/// Where the case-log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseLogAt {
    /// The rescue system's case log (`case::Locked::log`).
    RescueCase,
    /// A case log started in `--out` ([`CASE_LOG`]): on a foreign host there is no case yet.
    OutDir,
}

/// What the caller asks for.
pub struct LiveOptions {
    /// The directory (or, with `s3`, the `s3://` URL as typed, for messages and the manifest).
    pub out: PathBuf,
    /// An object-store destination instead of a directory: the prefix and the store's options (its
    /// `source` is not read; `resume` is not used).
    pub s3: Option<(S3Url, UploadOptions)>,
    /// Capture memory (`--no-memory` clears it).
    pub memory: bool,
    /// Raw LiME or the same stream in the zstd seekable format.
    pub format: ImageFormat,
    pub hashes: Option<Vec<HashAlgorithm>>,
    pub window: Option<u64>,
    pub case: CaseInfo,
    pub allow_local_out: bool,
    /// Where `--out` lies, if the caller knows better than [`outcheck::classify`] (tests).
    pub place: Option<OutPlace>,
    pub roots: Roots,
    pub case_log: CaseLogAt,
    /// The command line, for the case log.
    pub command: String,
    pub cancel: std::sync::Arc<AtomicBool>,
}

/// What the operator is told while the run goes.
pub enum LiveEvent<'a> {
    /// A step begins: `volatile state`, `memory`, `stable state`.
    Step(&'a str),
    /// A state collector begins.
    Collector(&'a str),
    /// Where memory was found (or not), once the sources were tried.
    Sources(&'a MemoryRecord),
    Memory(&'a Progress),
}

/// Errors that stop a live response.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("finding what {path} lies on")]
    ClassifyOut {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "refusing --out {path}: it is on {disk}, a disk of the running system ({holds}); writing there overwrites deleted files an examiner would recover. Use an evidence disk or s3://, or --allow-local-out to accept it"
    )]
    RejectSystemDisk {
        path: PathBuf,
        disk: String,
        holds: String,
    },
    #[error(
        "refusing --out {path}: it is on a {fstype} RAM filesystem; writing there displaces the memory being captured. Use an evidence disk or s3://, or --allow-local-out to accept it"
    )]
    RejectRam { path: PathBuf, fstype: String },
    #[error(
        "refusing --out {path}: it holds files already ({found}); choose a new or empty directory"
    )]
    RejectUsedOut { path: PathBuf, found: String },
    #[error("creating {path}")]
    CreateOut {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing artifact name {name:?}: not a plain relative path")]
    RejectArtifactName { name: String },
    #[error("writing {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    CaseLog(#[from] crate::caselog::CaseLogError),
    #[error(transparent)]
    Case(#[from] crate::case::CaseError),
    #[error(transparent)]
    Sums(#[from] manifest::ManifestError),
    #[error("writing {url}")]
    PutObject {
        url: String,
        #[source]
        source: S3Error,
    },
    #[error(
        "refusing --out {url}: the prefix holds objects already ({found}); choose a new prefix"
    )]
    RejectUsedPrefix { url: String, found: String },
    #[error("connecting to the store for {url}")]
    ConnectStore {
        url: String,
        #[source]
        source: S3Error,
    },
}

/// One step of the collection, in the order it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub started_at: String,
    pub finished_at: String,
    /// How long it took, to the millisecond (`started_at` and `finished_at` are whole seconds).
    pub elapsed_seconds: f64,
    /// The files this step wrote (the memory step: its directory).
    pub files: Vec<String>,
    /// What went wrong in the step as a whole (an artifact left out, and why).
    pub notes: Vec<String>,
}

/// One file of the live response.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub source: String,
    pub collected_at: String,
    pub notes: Vec<String>,
}

/// What the memory step gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryRecord {
    pub requested: bool,
    /// `lime` or `lime-zstd`.
    pub format: Option<String>,
    /// `none`, `integrity`, `confidentiality`; absent without the lockdown LSM.
    pub lockdown: Option<String>,
    pub ranges: Vec<RamRange>,
    /// Each source tried, in order: used, or why not.
    pub sources: Vec<Attempt>,
    pub captured: bool,
    /// Why there is no (complete) capture.
    pub reason: Option<String>,
    /// The acquisition directory (`memory`), its image file and status.
    pub directory: Option<String>,
    pub image: Option<String>,
    pub status: Option<AcquireStatus>,
    /// Bytes of the LiME stream.
    pub stream_bytes: u64,
    pub hashes: BTreeMap<String, String>,
    /// Physical ranges that could not be read (zero-filled in the capture).
    pub unreadable: Vec<PhysExtent>,
}

/// The host the live response ran on.
#[derive(Debug, Clone, Serialize)]
pub struct LiveHost {
    pub hostname: Option<String>,
    #[serde(flatten)]
    pub facts: HostFacts,
}

/// `live-manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveManifest {
    pub schema: String,
    pub tool: ToolInfo,
    pub case: CaseInfo,
    pub host: LiveHost,
    /// This machine's clock, UTC; `clock_offset_seconds` (true time minus it) when the case knows it.
    pub started_at: String,
    pub finished_at: String,
    pub clock_offset_seconds: Option<i64>,
    pub steps: Vec<StepRecord>,
    pub memory: MemoryRecord,
    pub artifacts: Vec<ArtifactRecord>,
}

/// How a live response ended.
#[derive(Debug, Clone)]
pub struct LiveOutcome {
    pub manifest: LiveManifest,
    pub out: PathBuf,
}

/// Refuses an `--out` on the running system's disks or in RAM unless allowed.
fn check_out(opts: &LiveOptions) -> Result<(), LiveError> {
    let place = match &opts.place {
        Some(p) => p.clone(),
        None => outcheck::classify(&opts.out).map_err(|source| LiveError::ClassifyOut {
            path: opts.out.clone(),
            source,
        })?,
    };
    if opts.allow_local_out {
        return Ok(());
    }
    match place {
        OutPlace::Separate => Ok(()),
        OutPlace::SystemDisk { disk, holds } => Err(LiveError::RejectSystemDisk {
            path: opts.out.clone(),
            disk,
            holds: holds.join(", "),
        }),
        OutPlace::Ram { fstype } => Err(LiveError::RejectRam {
            path: opts.out.clone(),
            fstype,
        }),
    }
}

/// Creates `out` (or takes it empty).
fn prepare_out(out: &Path) -> Result<(), LiveError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if let Some(e) = entries.next() {
                let found = e.map_or_else(
                    |_| "an entry".to_owned(),
                    |e| e.file_name().to_string_lossy().into_owned(),
                );
                return Err(LiveError::RejectUsedOut {
                    path: out.to_owned(),
                    found,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(|source| LiveError::CreateOut {
                path: out.to_owned(),
                source,
            })?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = manifest::sync_dir(parent);
            }
        }
        Err(source) => {
            return Err(LiveError::CreateOut {
                path: out.to_owned(),
                source,
            });
        }
    }
    Ok(())
}

/// Writes a new file `out/name` (a `/`-separated relative path), fsynced with its directory.
fn write_new(out: &Path, name: &str, bytes: &[u8]) -> Result<(), LiveError> {
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(LiveError::RejectArtifactName {
            name: name.to_owned(),
        });
    }
    let path = out.join(rel);
    let err = |source| LiveError::WriteFile {
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(out);
    fs::create_dir_all(dir).map_err(err)?;
    let mut f = File::create_new(&path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    manifest::sync_dir(dir).map_err(err)
}

/// Where the files go.
enum Sink {
    Dir,
    Store { client: Box<Client>, url: S3Url },
}

/// Files written so far with their SHA-256, for `SHA256SUMS`.
struct Written {
    out: PathBuf,
    sink: Sink,
    sums: Vec<(String, String)>,
}

impl Written {
    /// Stores `bytes` as `name` (a new file, or an object refused if it exists).
    fn store(&mut self, name: &str, bytes: &[u8]) -> Result<(), LiveError> {
        match &mut self.sink {
            Sink::Dir => write_new(&self.out, name, bytes),
            Sink::Store { client, url } => {
                let rel = Path::new(name);
                if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                    return Err(LiveError::RejectArtifactName {
                        name: name.to_owned(),
                    });
                }
                client
                    .put_object(&url.key(name), bytes, true)
                    .map_err(|source| LiveError::PutObject {
                        url: format!("{url}{name}"),
                        source,
                    })
            }
        }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<String, LiveError> {
        self.store(name, bytes)?;
        let digest = hash::sha256_hex(bytes);
        self.sums.push((name.to_owned(), digest.clone()));
        Ok(digest)
    }

    /// Writes a step's artifacts. One whose name is not a plain relative path, or repeats a name
    /// already written, is left out and named in `skipped` (a collector's slip must not cost the
    /// rest of the live response).
    fn artifacts(
        &mut self,
        list: Vec<Artifact>,
        skipped: &mut Vec<String>,
    ) -> Result<Vec<ArtifactRecord>, LiveError> {
        let mut out = Vec::new();
        for a in list {
            let plain = !a.name.is_empty()
                && Path::new(&a.name)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !plain || self.sums.iter().any(|(n, _)| *n == a.name) {
                skipped.push(format!(
                    "{:?} from {} not written: {}",
                    a.name,
                    a.source,
                    if plain {
                        "the name was written already"
                    } else {
                        "not a plain relative path"
                    }
                ));
                continue;
            }
            let sha256 = self.put(&a.name, &a.bytes)?;
            out.push(ArtifactRecord {
                size_bytes: a.bytes.len() as u64,
                name: a.name,
                sha256,
                source: a.source,
                collected_at: a.collected_at,
                notes: a.notes,
            });
        }
        Ok(out)
    }

    /// Every file of the memory directory: as its `SHA256SUMS` lists them when the acquisition
    /// finished, else (a stop) hashed as they lie.
    fn memory_files(&mut self, complete: bool) -> Result<(), LiveError> {
        if let Sink::Store { client, url } = &mut self.sink {
            // The store's memory prefix: its list when the acquisition finished (an interrupted
            // upload leaves its parts and state object, which the list cannot cover).
            if complete {
                let key = url.key(&format!("{MEMORY_DIR}/{SUMS_FILE}"));
                let sums =
                    client
                        .get_object(&key, None)
                        .map_err(|source| LiveError::PutObject {
                            url: format!("{url}{MEMORY_DIR}/{SUMS_FILE}"),
                            source,
                        })?;
                for (name, digest) in manifest::parse_sums(&String::from_utf8_lossy(&sums))? {
                    self.sums.push((format!("{MEMORY_DIR}/{name}"), digest));
                }
                self.sums
                    .push((format!("{MEMORY_DIR}/{SUMS_FILE}"), hash::sha256_hex(&sums)));
            }
            return Ok(());
        }
        let dir = self.out.join(MEMORY_DIR);
        let read = |path: &Path| {
            fs::read(path).map_err(|source| LiveError::ReadFile {
                path: path.to_owned(),
                source,
            })
        };
        if complete {
            let sums = read(&dir.join(SUMS_FILE))?;
            for (name, digest) in manifest::parse_sums(&String::from_utf8_lossy(&sums))? {
                self.sums.push((format!("{MEMORY_DIR}/{name}"), digest));
            }
            self.sums
                .push((format!("{MEMORY_DIR}/{SUMS_FILE}"), hash::sha256_hex(&sums)));
            return Ok(());
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let mut f = File::open(&path).map_err(|source| LiveError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let digest = sha256_of(&mut f).map_err(|source| LiveError::ReadFile {
                path: path.clone(),
                source,
            })?;
            self.sums.push((format!("{MEMORY_DIR}/{name}"), digest));
        }
        Ok(())
    }
}

/// SHA-256 of everything `r` gives, as hex.
fn sha256_of(r: &mut dyn io::Read) -> io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(hash::hex(&h.finalize())),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The memory step: ranges, a source, the LiME stream through the acquisition driver.
fn capture_memory(opts: &LiveOptions, events: &mut dyn FnMut(LiveEvent<'_>)) -> MemoryRecord {
    let mut rec = MemoryRecord {
        requested: true,
        format: Some(format_name(opts.format).to_owned()),
        lockdown: memory::lockdown(&opts.roots),
        ..MemoryRecord::default()
    };
    let ranges = match memory::ram_ranges(&opts.roots) {
        Ok(r) => r,
        Err(e) => {
            rec.reason = Some(crate::error_chain(&e));
            events(LiveEvent::Sources(&rec));
            return rec;
        }
    };
    rec.ranges = ranges.clone();
    let opened = memory::open_source(&opts.roots, &ranges, rec.lockdown.as_deref());
    rec.sources = opened.attempts;
    let Some(reader) = opened.reader else {
        rec.reason = Some(match rec.lockdown.as_deref() {
            Some(mode @ ("integrity" | "confidentiality")) => format!(
                "no source of physical memory could be read; the kernel is locked down ([{mode}])"
            ),
            _ => "no source of physical memory could be read".to_owned(),
        });
        events(LiveEvent::Sources(&rec));
        return rec;
    };
    events(LiveEvent::Sources(&rec));
    let used = rec
        .sources
        .iter()
        .find(|a| a.used)
        .map_or_else(String::new, |a| a.source.clone());
    let stream = LimeStream::new(ranges, reader);
    let size = stream.size();
    rec.stream_bytes = size;
    let dir = opts.out.join(MEMORY_DIR);
    rec.directory = Some(MEMORY_DIR.to_owned());
    rec.image = Some(match opts.format {
        ImageFormat::Raw => format!("{MEMORY_DIR}/{MEMORY_IMAGE}"),
        ImageFormat::Zstd => format!("{MEMORY_DIR}/{MEMORY_IMAGE}.zst"),
    });
    let info = SourceInfo {
        path: format!("{used} (LiME)"),
        kind: "memory".to_owned(),
        size_bytes: size,
        logical_sector_size: lime::SECTOR,
        physical_sector_size: lime::SECTOR,
        model: None,
        serial: None,
        wwn: None,
        transport: None,
    };
    let request = Request {
        requested: Requested {
            format: Some(opts.format),
            split: None,
            hashes: opts.hashes.clone(),
            window: opts.window,
            zstd_level: None,
            block_size: Some(MEMORY_BLOCK),
            frame_size: None,
            retries: None,
        },
        case: &opts.case,
        resume: false,
        // Memory changes while it is read: a second pass would never match.
        verify_source: false,
        cancel: &opts.cancel,
    };
    let read = SourceRead {
        reader: &stream,
        info,
        read_only: ReadOnlyState::default(),
        current_size: &|| Some(size),
    };
    let result = match &opts.s3 {
        None => {
            let mut local = LocalDir::new(&dir, size, None)
                .with_image_stem(MEMORY_IMAGE)
                .unresumable(MEMORY_BUDGET);
            driver::run(&request, &read, &mut local, &mut |p| {
                events(LiveEvent::Memory(p))
            })
            .map(|done| (done.status, done.manifest))
            .map_err(|e| crate::error_chain(&e))
        }
        Some((url, upload)) => {
            let memory_url = S3Url {
                bucket: url.bucket.clone(),
                prefix: format!("{}{MEMORY_DIR}/", url.prefix),
            };
            let upload = UploadOptions {
                hashes: opts.hashes.clone(),
                window: opts.window,
                format: Some(opts.format),
                split: None,
                zstd_level: None,
                verify_source: false,
                case: opts.case.clone(),
                retries: None,
                resume: false,
                block_size: None,
                cancel: std::sync::Arc::clone(&opts.cancel),
                ..upload.clone()
            };
            upload_source(&upload, memory_url, &read, Some(MEMORY_IMAGE), &mut |e| {
                if let UploadEvent::Progress(p) = e {
                    events(LiveEvent::Memory(p));
                }
            })
            .map(|done| (done.status, done.manifest))
            .map_err(|e| crate::error_chain(&e))
        }
    };
    match result {
        Ok((status, manifest)) => {
            rec.status = Some(status);
            rec.captured = matches!(
                status,
                AcquireStatus::Complete | AcquireStatus::CompleteWithUnreadable
            );
            if !rec.captured {
                rec.reason = manifest.stop_reason.clone();
            }
            rec.hashes = manifest.hashes.clone();
            rec.unreadable = stream.physical(&manifest.unreadable);
        }
        Err(e) => rec.reason = Some(e),
    }
    rec
}

/// One state phase: collected, written, recorded as a step.
fn collect(
    opts: &LiveOptions,
    phase: Phase,
    written: &mut Written,
    (steps, artifacts): &mut (Vec<StepRecord>, Vec<ArtifactRecord>),
    events: &mut dyn FnMut(LiveEvent<'_>),
) -> Result<(), LiveError> {
    let name = match phase {
        Phase::Volatile => "volatile state",
        Phase::Stable => "stable state",
    };
    events(LiveEvent::Step(name));
    let started = now_rfc3339();
    let clock = Instant::now();
    let list = state::collect(phase, &opts.roots, &mut |c| events(LiveEvent::Collector(c)));
    let mut notes = Vec::new();
    let records = written.artifacts(list, &mut notes)?;
    steps.push(StepRecord {
        step: name.to_owned(),
        started_at: started,
        finished_at: now_rfc3339(),
        elapsed_seconds: elapsed(clock),
        files: records.iter().map(|r| r.name.clone()).collect(),
        notes,
    });
    artifacts.extend(records);
    Ok(())
}

/// Seconds since `clock`, to the millisecond.
fn elapsed(clock: Instant) -> f64 {
    (clock.elapsed().as_millis() as f64) / 1000.0
}

/// `lime` or `lime-zstd`.
pub fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Raw => "lime",
        ImageFormat::Zstd => "lime-zstd",
    }
}

/// Runs a live response. See the module doc.
pub fn run(
    opts: &LiveOptions,
    events: &mut dyn FnMut(LiveEvent<'_>),
) -> Result<LiveOutcome, LiveError> {
    let sink = match &opts.s3 {
        None => {
            check_out(opts)?;
            prepare_out(&opts.out)?;
            Sink::Dir
        }
        Some((url, upload)) => {
            let connect = |source| LiveError::ConnectStore {
                url: url.to_string(),
                source,
            };
            let mut client = Store::new(upload.store.clone()).map_err(connect)?.client();
            let held = client.list_objects(&url.prefix).map_err(connect)?;
            if let Some((key, _)) = held.first() {
                return Err(LiveError::RejectUsedPrefix {
                    url: url.to_string(),
                    found: key.clone(),
                });
            }
            Sink::Store {
                client: Box::new(client),
                url: url.clone(),
            }
        }
    };
    let started_at = now_rfc3339();
    let mut written = Written {
        out: opts.out.clone(),
        sink,
        sums: Vec::new(),
    };
    // A store holds the case log as an object, written once at the end.
    let mut log = match (opts.case_log, &opts.s3) {
        (CaseLogAt::OutDir, None) => {
            let mut l = CaseLog::in_memory();
            l.attach(&opts.out.join(CASE_LOG))?;
            Some(l)
        }
        (CaseLogAt::OutDir, Some(_)) => Some(CaseLog::in_memory()),
        (CaseLogAt::RescueCase, _) => None,
    };
    let mut log_line = |kind: &str, detail: serde_json::Value| -> Result<(), LiveError> {
        match &mut log {
            Some(l) => {
                l.append(Record {
                    kind: kind.to_owned(),
                    command: opts.command.clone(),
                    detail,
                })?;
            }
            None => {
                crate::case::Locked::open()?.log(kind, &opts.command, detail)?;
            }
        }
        Ok(())
    };
    log_line(
        "action",
        serde_json::json!({"out": opts.out, "memory": opts.memory}),
    )?;

    let mut acc = (Vec::new(), Vec::new());
    collect(opts, Phase::Volatile, &mut written, &mut acc, events)?;
    let memory = if opts.memory {
        events(LiveEvent::Step("memory"));
        let started = now_rfc3339();
        let clock = Instant::now();
        let rec = capture_memory(opts, events);
        if rec.directory.is_some() {
            written.memory_files(rec.captured)?;
        }
        acc.0.push(StepRecord {
            step: "memory".to_owned(),
            started_at: started,
            finished_at: now_rfc3339(),
            elapsed_seconds: elapsed(clock),
            files: rec.directory.iter().cloned().collect(),
            notes: Vec::new(),
        });
        rec
    } else {
        MemoryRecord {
            reason: Some("not requested (--no-memory)".to_owned()),
            ..MemoryRecord::default()
        }
    };
    collect(opts, Phase::Stable, &mut written, &mut acc, events)?;
    let (steps, artifacts) = acc;

    let manifest = LiveManifest {
        schema: LIVE_SCHEMA.to_owned(),
        tool: ToolInfo::current(),
        case: opts.case.clone(),
        host: LiveHost {
            hostname: nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned()),
            facts: driver::host_facts(),
        },
        started_at,
        finished_at: now_rfc3339(),
        clock_offset_seconds: opts.case.clock_offset_seconds,
        steps,
        memory,
        artifacts,
    };
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let manifest_sha = written.put(LIVE_MANIFEST, &json)?;
    log_line(
        "result",
        serde_json::json!({
            "out": opts.out,
            "memory_captured": manifest.memory.captured,
            "memory_status": manifest.memory.status,
            "memory_hashes": manifest.memory.hashes,
            "memory_reason": manifest.memory.reason,
            "artifacts": manifest.artifacts.len(),
            "live_manifest_sha256": manifest_sha,
        }),
    )?;
    match (log, &opts.s3) {
        (Some(l), Some(_)) => {
            written.put(CASE_LOG, l.pending_text().as_bytes())?;
        }
        (Some(l), None) => {
            drop(l);
            let path = opts.out.join(CASE_LOG);
            let bytes = fs::read(&path).map_err(|source| LiveError::ReadFile { path, source })?;
            written
                .sums
                .push((CASE_LOG.to_owned(), hash::sha256_hex(&bytes)));
        }
        (None, _) => {}
    }
    let mut sums = written.sums.clone();
    sums.sort();
    let text = manifest::render_sums(&sums);
    match &written.sink {
        Sink::Dir => manifest::write_durable(&opts.out, SUMS_FILE, text.as_bytes())?,
        Sink::Store { .. } => written.store(SUMS_FILE, text.as_bytes())?,
    }
    Ok(LiveOutcome {
        manifest,
        out: opts.out.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(name: &str) -> Artifact {
        Artifact {
            name: name.to_owned(),
            bytes: b"{}".to_vec(),
            source: "/proc/test".to_owned(),
            collected_at: now_rfc3339(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn artifacts_stay_beneath_out_and_a_bad_name_is_left_out_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let mut w = Written {
            out: out.clone(),
            sink: Sink::Dir,
            sums: Vec::new(),
        };
        let mut skipped = Vec::new();
        let records = w
            .artifacts(
                vec![
                    artifact("state/processes.json"),
                    artifact("../escape.json"),
                    artifact("/etc/passwd"),
                    artifact("state/processes.json"),
                    artifact(""),
                ],
                &mut skipped,
            )
            .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].sha256, hash::sha256_hex(b"{}"));
        assert_eq!(fs::read(out.join("state/processes.json")).unwrap(), b"{}");
        assert!(!dir.path().join("escape.json").exists());
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped[0].contains("not a plain relative path"),
            "{skipped:?}"
        );
        assert!(skipped[2].contains("written already"), "{skipped:?}");
        // Nothing is written over: a file that exists is an error, not a replacement.
        let err = write_new(&out, "state/processes.json", b"x").unwrap_err();
        assert!(matches!(err, LiveError::WriteFile { .. }), "{err}");
    }
}
