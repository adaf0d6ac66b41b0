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
pub mod hash;
pub mod log;
pub mod manifest;
pub mod mapfile;
pub mod pipeline;
pub mod reader;
pub mod seekable;
pub mod segments;
pub mod source;
pub mod verify;
pub mod writer;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::buffer::BufferPool;
use self::checkpoint::{Checkpoint, CheckpointError, Settings};
use self::hash::HashAlgorithm;
use self::log::AcqLog;
use self::manifest::{
    CaseInfo, HostFacts, ImageInfo, LOG_FILE, MANIFEST_FILE, MAP_FILE, Manifest, ManifestError,
    ReadOnlyState, ResumeRecord, SCHEMA, SUMS_FILE, SourceInfo, SourceVerification, ToolInfo,
    now_rfc3339,
};
use self::pipeline::{Control, Ending, Output, StreamError, StreamFailure};
use self::reader::ImageReader;
use self::segments::{Layout, OutputFile, SegmentError, SegmentWriter};
use self::source::{BlockReader, Extent, ReadAt, Source, SourceError, SourceKind};
use self::writer::{Cadence, ImageWriter};

pub use self::verify::{VerifyError, VerifyReport, verify};

/// Default read size: large enough for full-speed sequential I/O, small enough for seekable frames.
pub const DEFAULT_BLOCK: usize = 4 << 20;
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

/// Identity and state of the source, gathered before reading.
pub struct SourceFacts {
    pub info: SourceInfo,
    pub read_only: ReadOnlyState,
    pub family: Vec<String>,
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

/// Opens a source the way every acquisition does: a block device (and its family) is refused when
/// mounted read-write and write-blocked before the read-only open; its identity is described.
pub fn open_source(path: &Path) -> Result<(Source, SourceFacts), AcquireError> {
    // Write-block a block device (and its family) before anything, even a read-only open, touches it.
    let is_block = fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    let protected = if is_block {
        Some(protect_block_device(path)?)
    } else {
        None
    };
    let source = Source::open(path)?;
    let size = source.size()?;
    let facts = match (source.kind(), protected) {
        (SourceKind::BlockDevice, Some(mut facts)) => {
            facts.info.size_bytes = size;
            facts
        }
        (SourceKind::BlockDevice, None) => protect_block_device(path).map(|mut f| {
            f.info.size_bytes = size;
            f
        })?,
        (SourceKind::RegularFile, _) => SourceFacts {
            info: SourceInfo {
                path: path.display().to_string(),
                kind: "regular_file".to_owned(),
                size_bytes: size,
                logical_sector_size: 512,
                physical_sector_size: 512,
                model: None,
                serial: None,
                wwn: None,
                transport: None,
            },
            read_only: ReadOnlyState::default(),
            family: Vec::new(),
        },
    };
    Ok((source, facts))
}

/// Refuses a family mounted read-write, sets BLKROSET on every member and checks it stuck. The size is
/// filled in by the caller once the source is open.
fn protect_block_device(path: &Path) -> Result<SourceFacts, AcquireError> {
    let dev = crate::devices::describe(path).map_err(|source| AcquireError::DescribeSource {
        path: path.to_owned(),
        source,
    })?;
    let protect = |source| AcquireError::ProtectSource {
        path: path.to_owned(),
        source,
    };
    let mounts: Vec<String> = crate::blkro::family_mounts(path)
        .map_err(protect)?
        .into_iter()
        .filter(|m| m.read_write)
        .map(|m| format!("{} on {}", m.source, m.target))
        .collect();
    if !mounts.is_empty() {
        return Err(AcquireError::RejectMountedSource {
            path: path.to_owned(),
            mounts: mounts.join(", "),
        });
    }
    let state = crate::blkro::protect_family(path).map_err(protect)?;
    if let Some(m) = state.members.iter().find(|m| !m.read_only_after) {
        return Err(AcquireError::RejectUnprotectedSource {
            path: path.to_owned(),
            member: m.path.clone(),
        });
    }
    let family = crate::blkro::family_names(path).map_err(protect)?;
    Ok(SourceFacts {
        info: SourceInfo {
            path: path.display().to_string(),
            kind: "block_device".to_owned(),
            size_bytes: 0,
            logical_sector_size: dev.logical_sector_size.max(512),
            physical_sector_size: dev
                .physical_sector_size
                .max(dev.logical_sector_size)
                .max(512),
            model: dev.model,
            serial: dev.serial,
            wwn: dev.wwn,
            transport: Some(dev.transport),
        },
        read_only: ReadOnlyState {
            applied: true,
            before: state
                .members
                .iter()
                .map(|m| (m.path.clone(), m.read_only_before))
                .collect(),
            after: state
                .members
                .iter()
                .map(|m| (m.path.clone(), m.read_only_after))
                .collect(),
        },
        family,
    })
}

/// The nearest existing ancestor of `p` (itself if it exists), canonicalized.
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    abs.ancestors().find_map(|a| fs::canonicalize(a).ok())
}

fn check_destination(
    src: &Path,
    kind: SourceKind,
    out: &Path,
    family: &[String],
) -> Result<(), AcquireError> {
    let Some(anchor) = existing_ancestor(out) else {
        return Ok(());
    };
    match kind {
        SourceKind::BlockDevice => {
            if let Ok(mounts) = crate::blkro::family_mounts(src)
                && let Some(m) = mounts.iter().find(|m| anchor.starts_with(&m.target))
            {
                return Err(AcquireError::RejectDestinationInsideSource {
                    dest: out.to_owned(),
                    mount: format!("{} on {}", m.source, m.target),
                });
            }
            let disks = crate::blkro::backing_disks(&anchor);
            if let Some(d) = disks.iter().find(|d| family.contains(d)) {
                return Err(AcquireError::RejectDestinationOnSource {
                    dest: out.to_owned(),
                    disk: d.clone(),
                });
            }
        }
        SourceKind::RegularFile => {
            if let Ok(canon) = fs::canonicalize(src) {
                let name = canon
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ours = name.starts_with("image.raw")
                    || [MANIFEST_FILE, SUMS_FILE, LOG_FILE, MAP_FILE].contains(&name.as_str())
                    || name.starts_with(".resume");
                if canon.parent() == Some(anchor.as_path()) && ours || canon == anchor {
                    return Err(AcquireError::RejectDestinationHoldingSource {
                        dest: out.to_owned(),
                        source_file: canon,
                    });
                }
            }
        }
    }
    Ok(())
}

fn prepare_directory(dir: &Path, resume: bool) -> Result<(), AcquireError> {
    fs::create_dir_all(dir).map_err(|source| AcquireError::CreateDestination {
        path: dir.to_owned(),
        source,
    })?;
    let probe = dir.join(".rescue-write-test");
    let unwritable = |source| AcquireError::RejectUnwritableDestination {
        path: dir.to_owned(),
        source,
    };
    fs::write(&probe, b"x").map_err(unwritable)?;
    fs::remove_file(&probe).map_err(unwritable)?;
    if !resume {
        let entries = fs::read_dir(dir).map_err(|source| AcquireError::CreateDestination {
            path: dir.to_owned(),
            source,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("image.raw")
                || name == MANIFEST_FILE
                || name == SUMS_FILE
                || name.starts_with(".resume")
            {
                return Err(AcquireError::RejectExistingAcquisition {
                    path: dir.to_owned(),
                    found: name,
                });
            }
        }
    }
    Ok(())
}

/// The image settings asked for on the command line, of a local or an object-store acquisition: what a
/// new acquisition uses (with the defaults) and what a resume must agree with.
pub(crate) struct Requested {
    pub format: Option<ImageFormat>,
    pub split: Option<u64>,
    pub hashes: Option<Vec<HashAlgorithm>>,
    pub window: Option<u64>,
    pub zstd_level: Option<i32>,
    pub block_size: Option<usize>,
    pub retries: Option<u32>,
}

impl AcquireOptions {
    fn requested(&self) -> Requested {
        Requested {
            format: self.format,
            split: self.split,
            hashes: self.hashes.clone(),
            window: self.window,
            zstd_level: self.zstd_level,
            block_size: self.block_size,
            retries: self.retries,
        }
    }
}

/// The settings of this run: those `recorded` by the interrupted run (checked as strictly as options:
/// the record is a file on the destination), which what was asked for must not contradict; or, for a
/// new acquisition, what was asked for with the defaults, refused when impossible.
pub(crate) fn resolve_settings(
    opts: &Requested,
    sector: u32,
    recorded: Option<&Settings>,
) -> Result<Settings, AcquireError> {
    if let Some(r) = recorded {
        let mismatch = |what: &str, recorded: String, requested: String| {
            Err(AcquireError::MismatchResume {
                what: what.to_owned(),
                recorded,
                requested,
            })
        };
        if let Some(f) = opts.format
            && f.manifest_name() != r.format
        {
            return mismatch("--format", r.format.clone(), f.manifest_name().to_owned());
        }
        if opts.split.is_some() && opts.split != r.split_bytes {
            return mismatch(
                "--split",
                format!("{:?}", r.split_bytes),
                format!("{:?}", opts.split),
            );
        }
        if let Some(h) = &opts.hashes
            && *h != r.hashes
        {
            return mismatch("--hash", names(&r.hashes), names(h));
        }
        // Leaving --window out on resume keeps the recorded choice, like the other settings; giving one
        // must match, and cannot add windows to a run that recorded none.
        if opts.window.is_some() && opts.window != r.window_bytes {
            return mismatch(
                "--window",
                window_name(r.window_bytes),
                window_name(opts.window),
            );
        }
        // The frames of a resumed zstd image must come out as before; a raw image has no level, and
        // --zstd-level is ignored for it as it is for a new raw acquisition.
        if let Some(level) = opts.zstd_level
            && r.zstd_level.is_some_and(|l| l != level)
        {
            return mismatch(
                "--zstd-level",
                format!("{:?}", r.zstd_level),
                format!("{:?}", opts.zstd_level),
            );
        }
        let mut s = r.clone();
        if let Some(n) = opts.retries {
            s.retries = n;
        }
        let block = usize::try_from(s.block_bytes).unwrap_or(0);
        if block == 0
            || block > MAX_BLOCK
            || s.split_bytes.is_some_and(|x| x < s.block_bytes)
            || s.window_bytes == Some(0)
            || !level_fits_format(&s.format, s.zstd_level)
        {
            return Err(AcquireError::RejectOption(format!(
                "the interrupted run records impossible settings (format {}, zstd level {:?}, block {}, split {:?}, window {})",
                s.format,
                s.zstd_level,
                s.block_bytes,
                s.split_bytes,
                window_name(s.window_bytes)
            )));
        }
        return Ok(s);
    }
    let format = opts.format.unwrap_or(ImageFormat::Raw);
    let block = opts.block_size.unwrap_or(DEFAULT_BLOCK);
    if block == 0 || block > MAX_BLOCK || !block.is_multiple_of(sector as usize) {
        return Err(AcquireError::RejectOption(format!(
            "the read size {block} must be a multiple of the {sector}-byte sector and at most {MAX_BLOCK}"
        )));
    }
    if let Some(split) = opts.split
        && split < block as u64
    {
        return Err(AcquireError::RejectSmallSplit { split, block });
    }
    if opts.window == Some(0) {
        return Err(AcquireError::RejectOption(
            "--window must be larger than 0".to_owned(),
        ));
    }
    let hashes = opts
        .hashes
        .clone()
        .unwrap_or_else(|| vec![HashAlgorithm::Sha256]);
    if hashes.is_empty() {
        return Err(AcquireError::RejectOption(
            "--hash needs at least one algorithm".to_owned(),
        ));
    }
    Ok(Settings {
        format: format.manifest_name().to_owned(),
        split_bytes: opts.split,
        hashes,
        window_bytes: opts.window,
        block_bytes: block as u64,
        zstd_level: (format == ImageFormat::Zstd)
            .then(|| opts.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL)),
        retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
    })
}

/// A recorded zstd image has a level and a raw one has none: a damaged record that breaks this would
/// write raw bytes as `image.raw.zst`, or compress `image.raw`.
pub(crate) fn level_fits_format(format: &str, zstd_level: Option<i32>) -> bool {
    match ImageFormat::from_manifest_name(format) {
        Some(ImageFormat::Zstd) => zstd_level.is_some(),
        Some(ImageFormat::Raw) => zstd_level.is_none(),
        None => false,
    }
}

/// `sha256,md5`: hash names as options and logs spell them.
pub(crate) fn names(h: &[HashAlgorithm]) -> String {
    h.iter().map(|a| a.name()).collect::<Vec<_>>().join(",")
}

fn window_name(w: Option<u64>) -> String {
    w.map_or_else(|| "none".to_owned(), |w| w.to_string())
}

pub(crate) fn host_facts() -> HostFacts {
    let h = crate::host::probe();
    HostFacts {
        dmi_vendor: h.dmi_vendor,
        dmi_product: h.dmi_product,
        dmi_serial: h.dmi_serial,
        kernel: h.kernel,
        boot_mode: h.boot_mode,
    }
}

/// The engine proper, over any [`ReadAt`]: [`acquire`] calls it after opening and write-blocking the
/// source and checking the destination; tests call it with injected failing readers.
pub fn acquire_from(
    opts: &AcquireOptions,
    reader: &dyn ReadAt,
    info: SourceInfo,
    read_only: ReadOnlyState,
    current_size: &dyn Fn() -> Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<AcquireOutcome, AcquireError> {
    let dir = opts.out_dir.as_path();
    let size = info.size_bytes;
    let sector = info.logical_sector_size.max(1);
    prepare_directory(dir, opts.resume)?;

    let recorded = if opts.resume {
        match Checkpoint::load(dir)? {
            Some(cp) => Some(cp),
            None => {
                if Manifest::load(dir).is_ok_and(|m| m.complete) {
                    return Err(AcquireError::RejectCompleteAcquisition {
                        path: dir.to_owned(),
                    });
                }
                return Err(AcquireError::MissingCheckpoint {
                    path: dir.to_owned(),
                });
            }
        }
    } else {
        None
    };
    let settings = resolve_settings(
        &opts.requested(),
        sector,
        recorded.as_ref().map(|c| &c.settings),
    )?;
    let format = ImageFormat::from_manifest_name(&settings.format).ok_or_else(|| {
        AcquireError::RejectOption(format!(
            "unknown format {:?} in the checkpoint",
            settings.format
        ))
    })?;
    let layout = Layout {
        base: format.base_name().to_owned(),
        split: settings.split_bytes,
    };

    let mut log = AcqLog::open(dir).map_err(|source| AcquireError::WriteOutput {
        file: LOG_FILE.to_owned(),
        source,
    })?;
    let checkpoint = match recorded {
        Some(cp) => {
            if cp.source_size != size {
                return Err(AcquireError::MismatchResume {
                    what: "the source size".to_owned(),
                    recorded: cp.source_size.to_string(),
                    requested: size.to_string(),
                });
            }
            if cp.source_serial.is_some()
                && info.serial.is_some()
                && cp.source_serial != info.serial
            {
                return Err(AcquireError::MismatchResume {
                    what: "the source serial number".to_owned(),
                    recorded: format!("{:?}", cp.source_serial),
                    requested: format!("{:?}", info.serial),
                });
            }
            for (what, given, had) in [
                ("--case", &opts.case.case_id, &cp.case.case_id),
                (
                    "--evidence-id",
                    &opts.case.evidence_id,
                    &cp.case.evidence_id,
                ),
                ("--examiner", &opts.case.examiner, &cp.case.examiner),
                ("--notes", &opts.case.notes, &cp.case.notes),
            ] {
                if given.is_some() && given != had {
                    return Err(AcquireError::MismatchResume {
                        what: what.to_owned(),
                        recorded: format!("{had:?}"),
                        requested: format!("{given:?}"),
                    });
                }
            }
            let mut cp = cp;
            cp.settings = settings.clone();
            cp.resumes.push(ResumeRecord {
                at: now_rfc3339(),
                offset: cp.source_offset,
            });
            // Same durable point, now also recording this continuation.
            cp.store(dir)?;
            log.line(&format!(
                "resuming from source offset {} ({} image bytes durable); re-hashing them from the image",
                cp.source_offset, cp.output_bytes
            ));
            cp
        }
        None => {
            let cp = Checkpoint {
                schema: checkpoint::CHECKPOINT_SCHEMA.to_owned(),
                source_path: info.path.clone(),
                source_size: size,
                source_serial: info.serial.clone(),
                settings: settings.clone(),
                case: opts.case.clone(),
                started_at: now_rfc3339(),
                resumes: Vec::new(),
                read_only_before: read_only.before.clone(),
                source_offset: 0,
                output_bytes: 0,
                frames: 0,
                unreadable: Vec::new(),
            };
            log.line(&format!(
                "rescue {} acquisition of {} ({} bytes) started",
                env!("CARGO_PKG_VERSION"),
                info.path,
                size
            ));
            log.line(&format!(
                "source: {} model={:?} serial={:?} sector={}/{}",
                info.kind,
                info.model,
                info.serial,
                info.logical_sector_size,
                info.physical_sector_size
            ));
            for (member, before) in &read_only.before {
                log.line(&format!(
                    "write-block: {member} read-only before={before} after=true"
                ));
            }
            log.line(&format!(
                "settings: format={} split={:?} hashes={} window={} block={} retries={}",
                settings.format,
                settings.split_bytes,
                names(&settings.hashes),
                window_name(settings.window_bytes),
                settings.block_bytes,
                settings.retries
            ));
            // The first checkpoint marks the directory as ours before any image byte exists.
            cp.store(dir)?;
            cp
        }
    };

    // Raw, unsplit, with SHA-256 among the stream hashes: the file hash is the stream hash; skip a pass.
    let stream_is_file = format == ImageFormat::Raw && settings.split_bytes.is_none();
    let hash_files = !(stream_is_file && settings.hashes.contains(&HashAlgorithm::Sha256));
    let segment_writer = if checkpoint.output_bytes > 0 {
        SegmentWriter::resume(dir, layout.clone(), checkpoint.output_bytes, hash_files)
            .map_err(AcquireError::PrepareImage)?
    } else {
        segments::truncate_to(dir, &layout, 0).map_err(AcquireError::PrepareImage)?;
        SegmentWriter::create(dir, layout.clone(), hash_files)
    };
    let durable = Arc::new(AtomicU64::new(0));
    let cadence = Cadence {
        bytes: opts.checkpoint_bytes.unwrap_or(512 << 20).max(1),
        interval: Duration::from_secs(10),
    };
    let block = settings.block_bytes as usize;
    let pool = BufferPool::for_stream(block, STREAM_BUDGET);
    let prefix = match format {
        ImageFormat::Raw => {
            let paths = layout
                .files_for(checkpoint.output_bytes)
                .into_iter()
                .map(|(n, _)| dir.join(n))
                .collect();
            ImageReader::raw(paths, checkpoint.source_offset, true)
        }
        ImageFormat::Zstd => {
            let frames = checkpoint::read_frames(dir, checkpoint.frames)?;
            let paths = layout
                .files_for(checkpoint.output_bytes)
                .into_iter()
                .map(|(n, _)| dir.join(n))
                .collect();
            ImageReader::zstd(paths, frames, 0, true).map_err(|source| {
                AcquireError::WriteOutput {
                    file: "zstd decoder".to_owned(),
                    source,
                }
            })?
        }
    };
    let mut base = Manifest {
        schema: SCHEMA.to_owned(),
        tool: ToolInfo::current(),
        case: checkpoint.case.clone(),
        host: host_facts(),
        source: info.clone(),
        image: ImageInfo {
            format: settings.format.clone(),
            split_bytes: settings.split_bytes,
            block_bytes: settings.block_bytes,
            zstd_level: settings.zstd_level,
            window_bytes: settings.window_bytes,
        },
        started_at: checkpoint.started_at.clone(),
        finished_at: None,
        complete: false,
        stop_reason: None,
        acquired_bytes: 0,
        hashes: BTreeMap::new(),
        windows: Vec::new(),
        unreadable: Vec::new(),
        outputs: Vec::new(),
        read_only: ReadOnlyState {
            // On resume the flags were already set by the first run; its "before" is the true one.
            before: if checkpoint.read_only_before.is_empty() {
                read_only.before.clone()
            } else {
                checkpoint.read_only_before.clone()
            },
            ..read_only.clone()
        },
        source_verification: None,
        resumes: checkpoint.resumes.clone(),
        remote: None,
    };
    // Reserve the manifest early: an incomplete one must still fit when the destination fills up.
    let mut in_progress = base.clone();
    in_progress.stop_reason = Some("in progress (or interrupted without a clean stop)".to_owned());
    in_progress.acquired_bytes = checkpoint.source_offset;
    in_progress.unreadable = checkpoint.unreadable.clone();
    write_incomplete(dir, &in_progress, size, checkpoint.source_offset);
    let start = checkpoint.source_offset;
    let writer = ImageWriter::new(
        dir,
        segment_writer,
        format == ImageFormat::Zstd,
        checkpoint,
        cadence,
        Arc::clone(&durable),
    )
    .map_err(|e| AcquireError::StopStream {
        acquired: start,
        source: StreamError::WriteImage(e),
    })?;
    let zstd = settings.zstd_level.map(|l| (l, compressor_threads()));

    let mut prefix = Some(prefix);
    let mut unreadable_bytes: u64 = writer.unreadable().iter().map(|e| e.length).sum();
    let mut blocks = BlockReader::new(reader, start, size, sector, settings.retries);
    let mut produce = |pool: &BufferPool| -> Result<Option<buffer::Block>, StreamError> {
        if let Some(r) = prefix.as_mut() {
            match r.next_block(pool)? {
                Some(b) => return Ok(Some(b)),
                None => prefix = None,
            }
        }
        Ok(blocks.next_block(pool)?)
    };
    let mut bad_log: Vec<Extent> = Vec::new();
    let mut observe = |b: &buffer::Block| {
        for e in &b.unreadable {
            unreadable_bytes += e.length;
            bad_log.push(*e);
        }
        progress(&Progress {
            phase: if b.already_written {
                Phase::Rehash
            } else {
                Phase::Acquire
            },
            done_bytes: b.end(),
            total_bytes: size,
            durable_bytes: durable.load(Ordering::Relaxed),
            unreadable_bytes,
        });
        if opts.cancel.load(Ordering::Relaxed) {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let result = pipeline::run(
        &pool,
        &settings.hashes,
        settings.window_bytes,
        Output::Write {
            writer: Box::new(writer),
            zstd,
        },
        &mut produce,
        &mut observe,
    );
    for e in &bad_log {
        log.line(&format!(
            "unreadable: {} bytes at offset {} (zero-filled)",
            e.length, e.offset
        ));
    }

    let result = match result {
        Ok(r) => r,
        Err(failure) => {
            let StreamFailure { error, writer, .. } = *failure;
            let is_full = matches!(&error, StreamError::WriteImage(e) if e.is_disk_full());
            let mut acquired = durable.load(Ordering::Relaxed);
            if let (true, Some(w)) = (is_full, &writer) {
                // Give back the space written after the checkpoint so the records below fit;
                // resume would cut it anyway.
                let _ = segments::truncate_to(dir, &layout, w.last_checkpoint().output_bytes);
                base.unreadable = w.last_checkpoint().unreadable.clone();
            }
            if let (false, Some(mut w)) = (matches!(error, StreamError::WriteImage(_)), writer) {
                if w.checkpoint().is_ok() {
                    acquired = w.last_checkpoint().source_offset;
                }
                base.unreadable = w.unreadable().to_vec();
                base.case = w.last_checkpoint().case.clone();
            }
            let err = if is_full {
                AcquireError::FillDestination {
                    acquired,
                    source: error,
                }
            } else {
                AcquireError::StopStream {
                    acquired,
                    source: error,
                }
            };
            base.acquired_bytes = acquired;
            base.stop_reason = Some(error_chain(&err));
            log.line(&format!("stopped: {}", error_chain(&err)));
            write_incomplete(dir, &base, size, acquired);
            return Err(err);
        }
    };
    let Some(mut writer) = result.writer else {
        return Err(AcquireError::StopStream {
            acquired: start,
            source: StreamError::PanicThread("writer".to_owned()),
        });
    };
    base.case = writer.last_checkpoint().case.clone();

    if result.ending == Ending::Stopped {
        let stopped = writer.checkpoint();
        // Stopping while re-hashing a resumed prefix keeps the older, further checkpoint.
        let acquired = if stopped.is_ok() {
            writer.last_checkpoint().source_offset
        } else {
            durable.load(Ordering::Relaxed)
        };
        base.acquired_bytes = acquired;
        base.unreadable = writer.unreadable().to_vec();
        base.stop_reason = Some("interrupted on request".to_owned());
        log.line(&format!(
            "interrupted on request after {acquired} durable bytes; continue with --resume"
        ));
        write_incomplete(dir, &base, size, acquired);
        if let Err(e) = stopped {
            return Err(AcquireError::StopStream {
                acquired,
                source: StreamError::WriteImage(e),
            });
        }
        return Ok(AcquireOutcome {
            status: AcquireStatus::Interrupted,
            manifest: base,
            dir: dir.to_owned(),
        });
    }

    let now = current_size();
    if now != Some(size) {
        let err = AcquireError::ChangeSourceSize {
            before: size,
            after: now.unwrap_or(0),
        };
        base.acquired_bytes = writer.position();
        base.stop_reason = Some(err.to_string());
        log.line(&format!("stopped: {err}"));
        write_incomplete(dir, &base, size, writer.position());
        return Err(err);
    }

    let (mut files, unreadable) = writer.finish().map_err(|e| {
        let err = AcquireError::StopStream {
            acquired: durable.load(Ordering::Relaxed),
            source: StreamError::WriteImage(e),
        };
        log.line(&format!("stopped: {}", error_chain(&err)));
        err
    })?;
    if !hash_files && let (Some(f), Some(h)) = (files.first_mut(), result.hashes.get("sha256")) {
        f.sha256 = h.clone();
    }
    for f in &files {
        log.line(&format!(
            "wrote {} ({} bytes, sha256 {})",
            f.file, f.size_bytes, f.sha256
        ));
    }
    for (algo, digest) in &result.hashes {
        log.line(&format!("{algo} of the acquired stream: {digest}"));
    }

    // Optional second read of the source.
    let mut source_unverified = false;
    if opts.verify_source {
        let verification = verify_source(
            reader,
            size,
            sector,
            settings.block_bytes as usize,
            &settings.hashes,
            settings.retries,
            &opts.cancel,
            progress,
            (&result.hashes, &unreadable),
            &mut |l| log.line(l),
        )
        .map_err(AcquireError::VerifySource)?;
        match verification {
            Some(v) => base.source_verification = Some(v),
            None => {
                source_unverified = true;
                log.line(
                    "source re-read interrupted on request: the image is complete, the source was NOT compared (--verify-source not done)",
                );
            }
        }
    }

    if base.read_only.applied {
        for (member, flag) in base.read_only.after.iter_mut() {
            *flag = crate::blkro::is_read_only(Path::new(member)).unwrap_or(false);
        }
    }

    let map = mapfile::render(
        size,
        size,
        &unreadable,
        &base.started_at,
        env!("CARGO_PKG_VERSION"),
    );
    manifest::write_durable(dir, MAP_FILE, map.as_bytes())?;
    files.push(OutputFile {
        file: MAP_FILE.to_owned(),
        size_bytes: map.len() as u64,
        sha256: hash::sha256_hex(map.as_bytes()),
    });

    base.complete = true;
    base.acquired_bytes = size;
    base.hashes = result.hashes;
    base.windows = result.windows;
    base.unreadable = unreadable;
    base.outputs = files;
    base.finished_at = Some(now_rfc3339());
    let json = base.to_json();
    manifest::write_durable(dir, MANIFEST_FILE, &json)?;
    let unreadable_total: u64 = base.unreadable.iter().map(|e| e.length).sum();
    let finish_line = format!(
        "acquisition complete: {size} bytes, {unreadable_total} unreadable bytes in {} extents",
        base.unreadable.len()
    );
    let log_err = |source| AcquireError::WriteOutput {
        file: LOG_FILE.to_owned(),
        source,
    };
    log.try_line(&finish_line).map_err(log_err)?;
    log.sync().map_err(log_err)?;
    drop(log);

    let mut sums: Vec<(String, String)> = base
        .outputs
        .iter()
        .map(|o| (o.file.clone(), o.sha256.clone()))
        .collect();
    sums.push((MANIFEST_FILE.to_owned(), hash::sha256_hex(&json)));
    let log_bytes = fs::read(dir.join(LOG_FILE)).map_err(log_err)?;
    sums.push((LOG_FILE.to_owned(), hash::sha256_hex(&log_bytes)));
    manifest::write_durable(dir, SUMS_FILE, manifest::render_sums(&sums).as_bytes())?;
    checkpoint::remove(dir);
    let _ = manifest::sync_dir(dir);

    let status = if base
        .source_verification
        .as_ref()
        .is_some_and(|v| !v.matched)
    {
        AcquireStatus::SourceMismatch
    } else if source_unverified {
        AcquireStatus::SourceUnverified
    } else if base.unreadable.is_empty() {
        AcquireStatus::Complete
    } else {
        AcquireStatus::CompleteWithUnreadable
    };
    Ok(AcquireOutcome {
        status,
        manifest: base,
        dir: dir.to_owned(),
    })
}

/// zstd compressor threads: the machine's cores, at most 8.
pub(crate) fn compressor_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

/// Best effort: an incomplete manifest and mapfile describing what is durable (the destination may be
/// full, so failures are ignored; the checkpoint stays authoritative).
fn write_incomplete(dir: &Path, base: &Manifest, size: u64, acquired: u64) {
    let mut m = base.clone();
    m.finished_at = Some(now_rfc3339());
    m.unreadable.retain(|e| e.offset < acquired);
    let map = mapfile::render(
        size,
        acquired,
        &m.unreadable,
        &m.started_at,
        env!("CARGO_PKG_VERSION"),
    );
    let _ = manifest::write_reserved(dir, MAP_FILE, map.as_bytes(), 16 << 10);
    let _ = manifest::write_reserved(dir, MANIFEST_FILE, &m.to_json(), 64 << 10);
}

/// `--verify-source` for local and object-store acquisitions: re-reads the source, compares with what
/// the acquisition hashed (`acquired`: stream hashes and unreadable extents) and logs both steps.
/// `None` when `cancel` stopped the re-read: partial hashes say nothing about the source, which is not a
/// mismatch (the caller says what that leaves).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_source(
    reader: &dyn ReadAt,
    size: u64,
    sector: u32,
    block: usize,
    hashes: &[HashAlgorithm],
    retries: u32,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
    acquired: (&BTreeMap<String, String>, &[Extent]),
    log: &mut dyn FnMut(&str),
) -> Result<Option<SourceVerification>, StreamError> {
    log("re-reading the source to compare (--verify-source)");
    let pool = BufferPool::for_stream(block, STREAM_BUDGET);
    let mut unreadable = Vec::new();
    let mut blocks = BlockReader::new(reader, 0, size, sector, retries);
    let mut produce = |pool: &BufferPool| -> Result<Option<buffer::Block>, StreamError> {
        let b = blocks.next_block(pool)?;
        for e in b.iter().flat_map(|b| &b.unreadable) {
            source::push_extent(&mut unreadable, *e);
        }
        Ok(b)
    };
    let mut observe = reading_observer(Phase::VerifySource, size, progress, cancel);
    let r = pipeline::run(
        &pool,
        hashes,
        None,
        Output::None,
        &mut produce,
        &mut observe,
    )
    .map_err(|f| f.error)?;
    if r.ending == Ending::Stopped {
        // Stopped on request: partial hashes say nothing about the source.
        return Ok(None);
    }
    let matched = r.hashes == *acquired.0 && unreadable == acquired.1;
    log(&format!(
        "source re-read: {}",
        if matched {
            "hashes match"
        } else {
            "HASHES DIFFER"
        }
    ));
    Ok(Some(SourceVerification {
        matched,
        hashes: r.hashes,
        unreadable,
        finished_at: now_rfc3339(),
    }))
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
