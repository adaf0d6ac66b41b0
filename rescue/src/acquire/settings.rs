//! The image settings of an acquisition: what a new one uses (the options with their defaults,
//! refused when impossible) and what a resume must agree with (the record of the interrupted run,
//! checked as strictly as options). The same rules for every destination.

use super::checkpoint::Settings;
use super::hash::HashAlgorithm;
use super::{
    AcquireError, AcquireOptions, DEFAULT_BLOCK, DEFAULT_FRAME, DEFAULT_RETRIES,
    DEFAULT_ZSTD_LEVEL, ImageFormat, MAX_BLOCK,
};

/// The image settings asked for on the command line, of a local or an object-store acquisition: what a
/// new acquisition uses (with the defaults) and what a resume must agree with.
pub struct Requested {
    pub format: Option<ImageFormat>,
    pub split: Option<u64>,
    pub hashes: Option<Vec<HashAlgorithm>>,
    pub window: Option<u64>,
    pub zstd_level: Option<i32>,
    pub block_size: Option<usize>,
    pub frame_size: Option<usize>,
    pub retries: Option<u32>,
}

impl AcquireOptions {
    pub(super) fn requested(&self) -> Requested {
        Requested {
            format: self.format,
            split: self.split,
            hashes: self.hashes.clone(),
            window: self.window,
            zstd_level: self.zstd_level,
            block_size: self.block_size,
            frame_size: self.frame_size,
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
    size: u64,
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
        if let Some(frame) = opts.frame_size
            && r.zstd_level.is_some()
            && frame as u64 != r.frame()
        {
            return mismatch("--frame-size", r.frame().to_string(), frame.to_string());
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
            || s.frame_bytes
                .is_some_and(|f| f == 0 || !s.block_bytes.is_multiple_of(f))
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
    // Every frame but the stream's last holds the same bytes: the frame size divides the read size.
    let frame = (format == ImageFormat::Zstd).then(|| {
        opts.frame_size
            .unwrap_or(if block.is_multiple_of(DEFAULT_FRAME) {
                DEFAULT_FRAME
            } else {
                block
            })
    });
    if let Some(frame) = frame
        && (frame == 0 || !block.is_multiple_of(frame))
    {
        return Err(AcquireError::RejectOption(format!(
            "the zstd frame size {frame} must divide the {block}-byte read size"
        )));
    }
    if let Some(split) = opts.split
        && split < block as u64
    {
        return Err(AcquireError::RejectSmallSplit { split, block });
    }
    if let Some(w) = opts.window {
        let floor = window_floor(size);
        if w < floor {
            return Err(AcquireError::RejectOption(format!(
                "--window {w} is too small for a {size}-byte source: at least {floor} bytes (windows are \
                 kept in memory and listed in the manifest: at most {MAX_WINDOWS} of them, each at least \
                 {MIN_WINDOW} bytes)"
            )));
        }
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
        frame_bytes: frame.map(|f| f as u64),
        retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
    })
}

/// Most hash windows one acquisition records: they are kept in memory while hashing and verifying and
/// listed in the manifest (about 130 bytes each there), so this bounds both (≈ 8.5 MB of manifest).
pub const MAX_WINDOWS: u64 = 1 << 16;
/// Smallest hash window.
pub const MIN_WINDOW: u64 = 4096;

/// The smallest `--window` for a source of `size` bytes: [`MIN_WINDOW`], or larger so that there are at
/// most [`MAX_WINDOWS`] windows.
pub fn window_floor(size: u64) -> u64 {
    MIN_WINDOW.max(size.div_ceil(MAX_WINDOWS))
}

/// A recorded zstd image has a level and a raw one has none: a damaged record that breaks this would
/// write raw bytes as `image.raw.zst`, or compress `image.raw`.
fn level_fits_format(format: &str, zstd_level: Option<i32>) -> bool {
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

pub(crate) fn window_name(w: Option<u64>) -> String {
    w.map_or_else(|| "none".to_owned(), |w| w.to_string())
}
