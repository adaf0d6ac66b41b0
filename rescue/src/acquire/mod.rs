//! Forensic acquisition engine: images a block device or a file read-only into a directory with inline
//! hashes, optional hash windows, optional zstd seekable compression and splitting, bad-sector
//! handling, a manifest and checksum list, and resume after interruption. Also verifies such a
//! directory.
//!
//! This module never prints, never exits and never panics on device input: it returns errors and
//! reports progress through a callback. It never opens the source for writing ([`source::Source`] has
//! no way to). The CLI glue is `crate::ui::acquire`; the manifest schema is documented in
//! `docs/manifest.md`.

pub mod buffer;
pub mod checkpoint;
pub mod driver;
pub mod hash;
pub mod local;
pub mod log;
pub mod manifest;
pub mod mapfile;
pub mod pipeline;
mod preflight;
pub mod reader;
mod relay;
pub mod seekable;
pub mod segments;
mod settings;
pub mod source;
pub mod verify;
mod verify_source;
pub mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use self::checkpoint::CheckpointError;
use self::hash::HashAlgorithm;
use self::manifest::{CaseInfo, Manifest, ManifestError, ReadOnlyState, SourceInfo};
use self::pipeline::{Control, StreamError};
use self::segments::SegmentError;
use self::source::{ReadAt, SourceError};

pub use self::preflight::{SourceFacts, open_source};
pub(crate) use self::preflight::{check_destination, prepare_directory};
pub use self::settings::Requested;
pub(crate) use self::settings::{names, resolve_settings, window_name};
pub use self::verify::{VerifyError, VerifyReport, verify};
pub(crate) use self::verify_source::verify_source;

/// Default read size: large enough for full-speed sequential I/O, small enough for seekable frames.
pub const DEFAULT_BLOCK: usize = 4 << 20;
/// Default zstd frame size: a read anywhere in a seekable image decodes one frame, so random reads
/// through `rescue mount` cost one 64 KiB decode (E01 chunks are 32 KiB). The seek table holds 8 bytes
/// per frame: 128 MiB for 1 TB.
pub const DEFAULT_FRAME: usize = 64 << 10;
/// Buffers in flight; with [`DEFAULT_BLOCK`] this bounds stream data to 64 MiB.
pub const POOL_BUFFERS: usize = 16;
/// Most bytes of stream buffers, whatever `--block-size` asks: half the 256 MiB memory bound, the rest
/// being compressed frames in flight and the program itself.
pub const STREAM_BUDGET: usize = 128 << 20;
/// Default retries of a failing sector.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default zstd level: the first "fast" level. On the bench disk it gives the same output size as
/// level 1 (random data does not compress, zeros and text compress at any level) at about 1.5 times the
/// speed, and stays smaller than E01 "fast".
pub const DEFAULT_ZSTD_LEVEL: i32 = -1;
/// Largest read size accepted.
pub const MAX_BLOCK: usize = 64 << 20;

/// Image container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Raw,
    Zstd,
}

impl ImageFormat {
    /// `format` value in the manifest.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Zstd => "zstd-seekable",
        }
    }

    /// The format a manifest's `format` value names.
    pub fn from_manifest_name(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "zstd-seekable" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Image file name (before any segment suffix).
    pub fn base_name(self) -> &'static str {
        match self {
            Self::Raw => "image.raw",
            Self::Zstd => "image.raw.zst",
        }
    }
}

/// What the caller asks for. `None` fields take defaults for a new acquisition and the recorded values
/// on `resume` (where a `Some` that differs from the record is refused).
#[derive(Debug, Clone, Default)]
pub struct AcquireOptions {
    pub source: PathBuf,
    pub out_dir: PathBuf,
    pub format: Option<ImageFormat>,
    pub split: Option<u64>,
    pub hashes: Option<Vec<HashAlgorithm>>,
    /// Hash window size; windows are opt-in (each costs a second SHA-256 pass over the stream), so a
    /// new acquisition without one records none.
    pub window: Option<u64>,
    pub case: CaseInfo,
    pub retries: Option<u32>,
    pub verify_source: bool,
    pub resume: bool,
    /// Read size (multiple of the logical sector size).
    pub block_size: Option<usize>,
    /// zstd frame size (at most the read size; default [`DEFAULT_FRAME`]).
    pub frame_size: Option<usize>,
    pub zstd_level: Option<i32>,
    /// Checkpoint at least every this many bytes (default 512 MiB; also every 10 s).
    pub checkpoint_bytes: Option<u64>,
    /// Set from another thread (e.g. a signal handler) to stop cleanly at the next block.
    pub cancel: Arc<AtomicBool>,
}

/// Stage of the run being reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Re-hashing the durable part of an interrupted run from the image.
    Rehash,
    /// Reading the source.
    Acquire,
    /// Re-reading the source to compare (`--verify-source`).
    VerifySource,
    /// Re-hashing the image (`verify`).
    Verify,
}

/// A progress report.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Source bytes durably in the image (last checkpoint).
    pub durable_bytes: u64,
    pub unreadable_bytes: u64,
}

impl Progress {
    /// Progress of a pass that only reads (`verify`, `--verify-source`): nothing is durable but the whole.
    fn reading(phase: Phase, done_bytes: u64, total_bytes: u64) -> Self {
        Progress {
            phase,
            done_bytes,
            total_bytes,
            durable_bytes: total_bytes,
            unreadable_bytes: 0,
        }
    }
}

/// The observer of a read-only pass: reports each block's progress and stops once `cancel` is set.
fn reading_observer<'a>(
    phase: Phase,
    total_bytes: u64,
    progress: &'a mut dyn FnMut(&Progress),
    cancel: &'a std::sync::atomic::AtomicBool,
) -> impl FnMut(&buffer::Block) -> Control + 'a {
    move |b| {
        progress(&Progress::reading(phase, b.end(), total_bytes));
        if cancel.load(Ordering::Relaxed) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// How an acquisition that returned normally ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcquireStatus {
    /// Every sector read; hashes final.
    Complete,
    /// Complete, but some sectors were unreadable and are zero-filled.
    CompleteWithUnreadable,
    /// Complete, but re-reading the source (`--verify-source`) gave different hashes.
    SourceMismatch,
    /// Complete (unreadable sectors, if any, are in the manifest), but the `--verify-source` re-read
    /// was stopped on request: the source was not compared (`source_verification` stays absent).
    SourceUnverified,
    /// Stopped on request; `--resume` continues.
    Interrupted,
}

/// Result of [`acquire`].
#[derive(Debug, Clone)]
pub struct AcquireOutcome {
    pub status: AcquireStatus,
    pub manifest: Manifest,
    pub dir: PathBuf,
}

/// Errors that stop an acquisition.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(transparent)]
    OpenSource(#[from] SourceError),
    #[error("describing source device {path}")]
    DescribeSource {
        path: PathBuf,
        #[source]
        source: crate::devices::DevicesError,
    },
    #[error("write-blocking source device {path}")]
    ProtectSource {
        path: PathBuf,
        #[source]
        source: crate::blkro::BlkRoError,
    },
    #[error("refusing to read {path}: {mounts} mounted read-write; unmount first")]
    RejectMountedSource { path: PathBuf, mounts: String },
    #[error("refusing to read {path}: {member} did not stay read-only after BLKROSET")]
    RejectUnprotectedSource { path: PathBuf, member: String },
    #[error("refusing destination {dest}: it is inside the source (mounted from {mount})")]
    RejectDestinationInsideSource { dest: PathBuf, mount: String },
    #[error("refusing destination {dest}: it is on {disk}, part of the source disk")]
    RejectDestinationOnSource { dest: PathBuf, disk: String },
    #[error(
        "refusing destination {dest}: the source file {source_file} is in it and could be overwritten"
    )]
    RejectDestinationHoldingSource { dest: PathBuf, source_file: PathBuf },
    #[error("creating destination directory {path}")]
    CreateDestination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("destination {path} is not writable")]
    RejectUnwritableDestination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} already holds an acquisition ({found}); use --resume to continue it or choose another directory"
    )]
    RejectExistingAcquisition { path: PathBuf, found: String },
    #[error(
        "refusing destination {dest}: it is inside the acquisition in {holder}; choose a directory outside it"
    )]
    RejectNestedDestination { dest: PathBuf, holder: PathBuf },
    #[error("{path} holds no interrupted acquisition to resume")]
    MissingCheckpoint { path: PathBuf },
    #[error("the acquisition in {path} is already complete")]
    RejectCompleteAcquisition { path: PathBuf },
    #[error("cannot resume: {what} was {recorded} in the interrupted run but is {requested} now")]
    MismatchResume {
        what: String,
        recorded: String,
        requested: String,
    },
    #[error(transparent)]
    ReadCheckpoint(#[from] CheckpointError),
    #[error("--split {split} is smaller than the {block}-byte read buffer")]
    RejectSmallSplit { split: u64, block: usize },
    #[error("invalid option: {0}")]
    RejectOption(String),
    #[error("the source size changed during the run: {before} bytes at the start, {after} now")]
    ChangeSourceSize { before: u64, after: u64 },
    #[error(
        "the destination is full after {acquired} bytes were made durable; free space and run again with --resume"
    )]
    FillDestination {
        acquired: u64,
        #[source]
        source: StreamError,
    },
    #[error("acquisition stopped after {acquired} durable bytes")]
    StopStream {
        acquired: u64,
        #[source]
        source: StreamError,
    },
    #[error("preparing the image files")]
    PrepareImage(#[source] SegmentError),
    #[error("writing {file}")]
    WriteOutput {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    WriteManifest(#[from] ManifestError),
    #[error("re-reading the source")]
    VerifySource(#[source] StreamError),
}

impl AcquireError {
    /// True when the directory holds a checkpoint that `--resume` can continue from.
    pub fn is_resumable(&self) -> bool {
        matches!(self, Self::FillDestination { .. } | Self::StopStream { .. })
    }
}

/// Acquires `opts.source` into `opts.out_dir`. See the module doc.
pub fn acquire(
    opts: &AcquireOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<AcquireOutcome, AcquireError> {
    let (source, facts) = open_source(&opts.source)?;
    check_destination(&opts.source, source.kind(), &opts.out_dir, &facts.family)?;
    let current_size = || source.size().ok();
    acquire_from(
        opts,
        &source,
        facts.info,
        facts.read_only,
        &current_size,
        progress,
    )
}

/// The engine proper, over any [`ReadAt`]: [`acquire`] calls it after opening and write-blocking the
/// source and checking the destination; tests call it with injected failing readers. The phases are
/// [`driver::run`]'s; the directory is a [`local::LocalDir`].
pub fn acquire_from(
    opts: &AcquireOptions,
    reader: &(dyn ReadAt + Sync),
    info: SourceInfo,
    read_only: ReadOnlyState,
    current_size: &dyn Fn() -> Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<AcquireOutcome, AcquireError> {
    let mut dest = local::LocalDir::new(&opts.out_dir, info.size_bytes, opts.checkpoint_bytes);
    let request = driver::Request {
        requested: opts.requested(),
        case: &opts.case,
        resume: opts.resume,
        verify_source: opts.verify_source,
        cancel: &opts.cancel,
    };
    let source = driver::SourceRead {
        reader,
        info,
        read_only,
        current_size,
    };
    let finished = driver::run(&request, &source, &mut dest, progress)?;
    Ok(AcquireOutcome {
        status: finished.status,
        manifest: finished.manifest,
        dir: opts.out_dir.clone(),
    })
}

/// zstd compressor threads: the machine's cores, at most 8.
pub(crate) fn compressor_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

pub use crate::error_chain;

/// Parses a size such as `4096`, `512K`, `4M`, `1G`, `4GiB` (binary units) or `4GB` (decimal units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 512K, 4M, 1G, 4GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit (use K, M, G, T, KiB…, or KB… for powers of 1000)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests;
