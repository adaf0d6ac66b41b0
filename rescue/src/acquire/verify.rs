//! `verify DIR`: recomputes every hash of an acquisition from its image files (joining segments,
//! decompressing zstd frames found through the seek table) and compares them with the manifest,
//! window by window when windows were recorded, plus the output file digests and `SHA256SUMS`. Reads
//! only; writes nothing.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::buffer::BufferPool;
use super::hash::{HashAlgorithm, Window};
use super::manifest::{MANIFEST_FILE, MAP_FILE, Manifest, ManifestError, SUMS_FILE};
use super::pipeline::{self, Ending, Output, StreamError};
use super::reader::{ImageReader, ReadImageError};
use super::seekable::{self, FOOTER_LEN};
use super::segments::{Layout, OutputFile};
use super::{DEFAULT_BLOCK, ImageFormat, MAX_BLOCK, Phase, Progress};

/// Read size of a raw image during verification (see the pool in [`verify`]).
const VERIFY_RAW_BLOCK: usize = 2 << 20;
/// Raw blocks in flight during verification: 8 MiB in all.
const VERIFY_RAW_BUFFERS: usize = 4;

/// Errors that prevent verification (a mismatch is not an error: it is a report with `ok == false`).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("loading the manifest of {dir}")]
    LoadManifest {
        dir: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error(
        "the acquisition in {dir} is incomplete ({reason}); finish it with `rescue acquire --resume`"
    )]
    RejectIncomplete { dir: PathBuf, reason: String },
    #[error("reading the image")]
    ReadImage(#[source] StreamError),
    #[error("verification was interrupted")]
    Interrupted,
}

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
}

/// Window that did not match, by index.
#[derive(Debug, Clone, Serialize)]
pub struct BadWindow {
    pub index: usize,
    pub offset: u64,
    pub length: u64,
    pub expected: String,
    pub actual: String,
}

/// Outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub ok: bool,
    pub bytes: u64,
    pub checks: Vec<Check>,
    pub first_bad_window: Option<BadWindow>,
    pub bad_windows: usize,
    /// Why the image could not be read to the end, if it could not.
    pub image_error: Option<String>,
    /// What the examiner should know beyond the checks, e.g. that a mismatch cannot be localised.
    pub note: Option<String>,
}

impl Check {
    /// Records one comparison in `checks`, clearing `all_ok` when it fails; returns whether it held.
    /// Local and object-store verification report alike through it.
    pub(crate) fn record(
        checks: &mut Vec<Check>,
        all_ok: &mut bool,
        what: impl Into<String>,
        expected: &str,
        actual: &str,
    ) -> bool {
        let ok = expected == actual;
        *all_ok &= ok;
        checks.push(Check {
            what: what.into(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
            ok,
        });
        ok
    }
}

impl VerifyReport {
    fn check(&mut self, what: impl Into<String>, expected: &str, actual: &str) {
        Check::record(&mut self.checks, &mut self.ok, what, expected, actual);
    }
}

fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = HashAlgorithm::Sha256.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish_hex());
        }
        h.update(&buf[..n]);
    }
}

/// Reads the last `n` bytes of the concatenation of `files` (name, size).
fn read_tail(dir: &Path, files: &[OutputFile], n: u64) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; usize::try_from(n).map_err(io::Error::other)?];
    let mut need = n;
    for f in files.iter().rev() {
        if need == 0 {
            break;
        }
        let take = need.min(f.size_bytes);
        let mut file = File::open(dir.join(&f.file))?;
        file.seek(SeekFrom::Start(f.size_bytes - take))?;
        let at = (need - take) as usize;
        file.read_exact(&mut out[at..at + take as usize])?;
        need -= take;
    }
    if need > 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "image shorter than its seek table",
        ));
    }
    Ok(out)
}

/// Checks a `SHA256SUMS` text against the manifest and the files it lists, the same way for a
/// directory and an object store: every entry a plain name; image entries agree with the manifest
/// (the images themselves are hashed by the stream pass); every other entry hashed through
/// `sha256_of` (which answers a description such as `missing` when it cannot) and, when the manifest
/// records the file too (`unreadable.map`), against the manifest; every manifest output and
/// `manifest.json` itself listed. `check(what, expected, actual)` records one comparison.
pub(crate) fn check_sums<E>(
    text: &str,
    manifest: &Manifest,
    images: &[OutputFile],
    check: &mut dyn FnMut(String, &str, &str),
    mut sha256_of: impl FnMut(&str) -> Result<String, E>,
) -> Result<(), E> {
    let sums = match super::manifest::parse_sums(text) {
        Ok(s) => s,
        Err(e) => {
            check(format!("{SUMS_FILE} parses"), "yes", &format!("no ({e})"));
            return Ok(());
        }
    };
    for (name, digest) in &sums {
        if let Some(img) = images.iter().find(|o| &o.file == name) {
            check(
                format!("{SUMS_FILE} entry for {name} agrees with the manifest"),
                &img.sha256,
                digest,
            );
            continue;
        }
        if name.contains('/') || name.is_empty() {
            check(
                format!("{SUMS_FILE} entry {name}"),
                "a plain file name",
                name,
            );
            continue;
        }
        let actual = sha256_of(name)?;
        let what = if name == MANIFEST_FILE {
            format!("sha256 of {name} (an edited manifest fails here)")
        } else {
            format!("sha256 of {name}")
        };
        check(what, digest, &actual);
        if let Some(o) = manifest.outputs.iter().find(|o| &o.file == name) {
            check(
                format!("sha256 of {name} as the manifest records it"),
                &o.sha256,
                &actual,
            );
        }
    }
    for o in &manifest.outputs {
        if !sums.iter().any(|(n, _)| n == &o.file) {
            check(format!("{SUMS_FILE} lists {}", o.file), "listed", "missing");
        }
    }
    if !sums.iter().any(|(n, _)| n == MANIFEST_FILE) {
        check(
            format!("{SUMS_FILE} lists {MANIFEST_FILE}"),
            "listed",
            "missing",
        );
    }
    Ok(())
}

/// Verifies the acquisition in `dir`.
pub fn verify(
    dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport, VerifyError> {
    let manifest = Manifest::load(dir).map_err(|source| VerifyError::LoadManifest {
        dir: dir.to_owned(),
        source,
    })?;
    if !manifest.complete {
        return Err(VerifyError::RejectIncomplete {
            dir: dir.to_owned(),
            reason: manifest
                .stop_reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".to_owned()),
        });
    }
    let mut report = VerifyReport {
        dir: dir.to_owned(),
        ok: true,
        bytes: 0,
        checks: Vec::new(),
        first_bad_window: None,
        bad_windows: 0,
        image_error: None,
        note: None,
    };
    let images: Vec<OutputFile> = manifest
        .outputs
        .iter()
        .filter(|o| o.file != MAP_FILE)
        .cloned()
        .collect();

    // SHA256SUMS: the small files are hashed here; image entries must agree with the manifest and are
    // hashed in the stream pass below.
    match fs::read_to_string(dir.join(SUMS_FILE)) {
        Err(e) => {
            report.check(
                format!("{SUMS_FILE} is readable"),
                "yes",
                &format!("no ({e})"),
            );
            // The map is still checked against the manifest.
            if let Some(map) = manifest.outputs.iter().find(|o| o.file == MAP_FILE) {
                let actual = file_sha256(&dir.join(MAP_FILE))
                    .unwrap_or_else(|e| format!("unreadable ({e})"));
                report.check(format!("sha256 of {MAP_FILE}"), &map.sha256, &actual);
            }
        }
        Ok(text) => {
            let hash = |name: &str| -> Result<String, std::convert::Infallible> {
                Ok(file_sha256(&dir.join(name)).unwrap_or_else(|e| format!("unreadable ({e})")))
            };
            let Ok(()) = check_sums(
                &text,
                &manifest,
                &images,
                &mut |what, expected, actual| report.check(what, expected, actual),
                hash,
            );
        }
    }

    // Image files must exist with their recorded sizes before the stream pass.
    let mut sizes_ok = true;
    // Raw image bytes present without a gap from the start of the stream.
    let mut whole = 0u64;
    let mut gap = false;
    for o in &images {
        let len = fs::metadata(dir.join(&o.file)).map(|m| m.len());
        let actual = match &len {
            Ok(n) => n.to_string(),
            Err(e) => format!("missing ({e})"),
        };
        sizes_ok &= actual == o.size_bytes.to_string();
        if !gap {
            let have = len.as_ref().map_or(0, |n| (*n).min(o.size_bytes));
            whole += have;
            gap = have < o.size_bytes;
        }
        report.check(
            format!("size of {}", o.file),
            &o.size_bytes.to_string(),
            &actual,
        );
    }
    if !sizes_ok {
        let format =
            ImageFormat::from_manifest_name(&manifest.image.format).unwrap_or(ImageFormat::Raw);
        name_incomplete_windows(&mut report, &manifest, format, gap.then_some(whole));
        return Ok(report);
    }

    let format =
        ImageFormat::from_manifest_name(&manifest.image.format).unwrap_or(ImageFormat::Raw);
    let paths: Vec<PathBuf> = images.iter().map(|o| dir.join(&o.file)).collect();
    let total_out: u64 = images.iter().map(|o| o.size_bytes).sum();
    let size = manifest.source.size_bytes;
    let block = usize::try_from(manifest.image.block_bytes)
        .unwrap_or(DEFAULT_BLOCK)
        .clamp(4096, MAX_BLOCK);
    let mut reader = match format {
        ImageFormat::Raw => ImageReader::raw(paths, total_out.min(size), false),
        ImageFormat::Zstd => {
            let table = read_tail(dir, &images, FOOTER_LEN as u64)
                .ok()
                .and_then(|footer| seekable::table_len_from_footer(&footer).ok())
                .filter(|len| *len <= total_out && *len <= 256 << 20)
                .and_then(|len| read_tail(dir, &images, len).ok())
                .map(|t| seekable::parse_seek_table(&t).map(|f| (t.len() as u64, f)));
            let (table_len, frames) = match table {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    report.check("zstd seek table", "valid", &e.to_string());
                    return Ok(report);
                }
                None => {
                    report.check("zstd seek table", "present", "missing or unreadable");
                    return Ok(report);
                }
            };
            let covered: u64 = frames.iter().map(|f| u64::from(f.decompressed)).sum();
            let compressed: u64 =
                frames.iter().map(|f| u64::from(f.compressed)).sum::<u64>() + table_len;
            report.check(
                "seek table: uncompressed bytes",
                &size.to_string(),
                &covered.to_string(),
            );
            report.check(
                "seek table: compressed bytes",
                &total_out.to_string(),
                &compressed.to_string(),
            );
            if covered != size || compressed != total_out {
                return Ok(report);
            }
            ImageReader::zstd(paths, frames, table_len, false)
                .map_err(|e| VerifyError::ReadImage(StreamError::CompressFrame(e)))?
        }
    };

    let algorithms: Vec<HashAlgorithm> = manifest
        .hashes
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect();
    let stream_is_file = format == ImageFormat::Raw && manifest.image.split_bytes.is_none();
    let reuse_stream_hash = stream_is_file && algorithms.contains(&HashAlgorithm::Sha256);
    let output = if reuse_stream_hash {
        Output::None
    } else {
        // The image's name as the acquisition recorded it (`image.raw`, or e.g. `memory.lime`).
        let base = images.first().map_or_else(
            || format.base_name().to_owned(),
            |o| match manifest.image.split_bytes {
                Some(_) => o
                    .file
                    .rsplit_once('.')
                    .map_or(&*o.file, |(b, _)| b)
                    .to_owned(),
                None => o.file.clone(),
            },
        );
        Output::HashFiles {
            layout: Layout {
                base,
                split: manifest.image.split_bytes,
            },
        }
    };
    let pool = match format {
        // A raw image is read in a few 2 MiB blocks, each small enough to stay in a core's L2 while the
        // thread that read it hashes it (`relay`, when the SHA-256 is the only work: blocks of 256 KiB,
        // 1 MiB and 2 MiB measured alike there). When windows or more hashes need their own threads,
        // those prefetch ahead of what they hash (`hash::feed_prefetched`): measured on the 2-core build
        // box, quiet (2 GiB on tmpfs, reader thread + SHA-256 thread), 4 blocks of 2 MiB took
        // 1.35-1.40 s, 4 of 256 KiB 1.41-1.70 s, 16 of 256 KiB 1.47-1.51 s; SHA-256 of the same bytes
        // hot in cache 1.23 s. Without the prefetch 4 of 256 KiB took 1.70-1.78 s.
        ImageFormat::Raw => BufferPool::new(VERIFY_RAW_BUFFERS, VERIFY_RAW_BLOCK),
        // A zstd frame decodes into one block of the acquisition's size.
        ImageFormat::Zstd => BufferPool::new(((64 << 20) / block).max(4), block),
    };
    let mut produce = |pool: &BufferPool| reader.next_block(pool).map_err(StreamError::from);
    let mut observe = super::reading_observer(Phase::Verify, size, progress, cancel);
    // Windows are recomputed only when the acquisition recorded them: they cost a SHA-256 pass.
    let result = pipeline::run(
        &pool,
        &algorithms,
        manifest.image.window_bytes,
        output,
        &mut produce,
        &mut observe,
    );
    let result = match result {
        Ok(r) if r.ending == Ending::Stopped => return Err(VerifyError::Interrupted),
        Ok(r) => r,
        Err(f) => match f.error {
            StreamError::ReadImage(e) => {
                // A damaged frame: name the window holding it.
                let off = e.offset();
                report.image_error = Some(super::error_chain(&e));
                report.ok = false;
                if let Some((i, w)) = manifest
                    .windows
                    .iter()
                    .enumerate()
                    .find(|(_, w)| off < w.offset + w.length)
                {
                    report.first_bad_window = Some(BadWindow {
                        index: i,
                        offset: w.offset,
                        length: w.length,
                        expected: w.sha256.clone(),
                        actual: describe_read_error(&e),
                    });
                    report.bad_windows = 1;
                }
                return Ok(report);
            }
            other => return Err(VerifyError::ReadImage(other)),
        },
    };
    report.bytes = result.bytes;
    report.check(
        "stream length",
        &size.to_string(),
        &result.bytes.to_string(),
    );
    let mut stream_ok = result.bytes == size;
    for (name, expected) in &manifest.hashes {
        let actual = result.hashes.get(name).cloned().unwrap_or_default();
        stream_ok &= *expected == actual;
        report.check(format!("{name} of the stream"), expected, &actual);
    }
    if manifest.image.window_bytes.is_some() {
        compare_windows(&mut report, &manifest.windows, &result.windows);
    } else if !stream_ok {
        report.note = Some(
            "the image differs from the acquired stream; no hash windows were recorded, so the \
             difference cannot be localised (acquire with --window to localise)"
                .to_owned(),
        );
    }
    let files = match result.files {
        Some(f) => f,
        None => images
            .iter()
            .map(|o| OutputFile {
                file: o.file.clone(),
                size_bytes: o.size_bytes,
                sha256: result.hashes.get("sha256").cloned().unwrap_or_default(),
            })
            .collect(),
    };
    for o in &images {
        let actual = files
            .iter()
            .find(|f| f.file == o.file)
            .map(|f| f.sha256.clone())
            .unwrap_or_default();
        report.check(format!("sha256 of {}", o.file), &o.sha256, &actual);
    }
    Ok(report)
}

/// The image files do not have their recorded sizes: names the first hash window that cannot be
/// complete (for a raw image, the first one reaching past the bytes present without a gap, `whole`).
fn name_incomplete_windows(
    report: &mut VerifyReport,
    manifest: &Manifest,
    format: ImageFormat,
    whole: Option<u64>,
) {
    if manifest.windows.is_empty() {
        return;
    }
    match (format, whole) {
        (ImageFormat::Raw, Some(end)) => {
            let mut bad = manifest
                .windows
                .iter()
                .enumerate()
                .filter(|(_, w)| w.offset + w.length > end);
            if let Some((i, w)) = bad.next() {
                report.first_bad_window = Some(BadWindow {
                    index: i,
                    offset: w.offset,
                    length: w.length,
                    expected: w.sha256.clone(),
                    actual: format!("incomplete: the image ends at stream offset {end}"),
                });
                report.bad_windows = 1 + bad.count();
                report.note = Some(format!(
                    "the image holds {end} bytes of the stream without a gap; window {i} (offset {}) and every later one cannot be complete",
                    w.offset
                ));
            }
        }
        (ImageFormat::Zstd, _) => {
            report.note = Some(
                "the compressed image does not have its recorded size; its seek table, which maps it \
                 to stream offsets and windows, is at its end and cannot be trusted"
                    .to_owned(),
            );
        }
        (ImageFormat::Raw, None) => {}
    }
}

fn describe_read_error(e: &ReadImageError) -> String {
    match e {
        ReadImageError::DecompressFrame { index, .. } => {
            format!("frame {index} does not decompress")
        }
        ReadImageError::MismatchedFrameSize { index, .. }
        | ReadImageError::ImplausibleFrame { index, .. } => {
            format!("frame {index} has the wrong size")
        }
        ReadImageError::ReadImage { .. } => "unreadable".to_owned(),
    }
}

fn compare_windows(report: &mut VerifyReport, expected: &[Window], actual: &[Window]) {
    let mut bad = 0;
    for (i, w) in expected.iter().enumerate() {
        let got = actual.get(i);
        let same = got
            .is_some_and(|g| g.offset == w.offset && g.length == w.length && g.sha256 == w.sha256);
        if !same {
            bad += 1;
            if report.first_bad_window.is_none() {
                report.first_bad_window = Some(BadWindow {
                    index: i,
                    offset: w.offset,
                    length: w.length,
                    expected: w.sha256.clone(),
                    actual: got
                        .map(|g| g.sha256.clone())
                        .unwrap_or_else(|| "missing".to_owned()),
                });
            }
        }
    }
    if actual.len() != expected.len() {
        bad += 1;
    }
    report.bad_windows = bad;
    report.check(
        format!("{} hash windows", expected.len()),
        "all match",
        &if bad == 0 {
            "all match".to_owned()
        } else {
            format!("{bad} differ")
        },
    );
}
