//! The local-directory destination of the acquisition driver: the image files (raw or zstd seekable,
//! whole or in segments) written and fsynced by [`ImageWriter`], the resume point in `.resume.json`
//! (fsynced image bytes first, then the checkpoint renamed into place), `acquisition.log` appended as
//! the run goes, and the record files written durably. A resume truncates the image back to the
//! checkpoint and re-hashes the durable part from the image, then reads the source from there on.
//!
//! A stop leaves an incomplete `manifest.json` and `unreadable.map` describing what is durable (best
//! effort: the destination may be full; the checkpoint stays authoritative).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::checkpoint::{self, Checkpoint, Settings};
use super::driver::{Destination, Record, Stream};
use super::log::AcqLog;
use super::manifest::{self, LOG_FILE, MANIFEST_FILE, MAP_FILE, Manifest, RemoteInfo};
use super::pipeline::{Output, StreamError, StreamFailure, StreamResult};
use super::reader::ImageReader;
use super::segments::{self, Layout, OutputFile, SegmentWriter};
use super::source::Extent;
use super::writer::{Cadence, ImageWriter};
use super::{
    AcquireError, ImageFormat, Progress, STREAM_BUDGET, error_chain, mapfile, prepare_directory,
};

/// An acquisition directory.
pub struct LocalDir {
    dir: PathBuf,
    checkpoint_bytes: Option<u64>,
    log: AcqLog,
    checkpoint: Option<Checkpoint>,
    layout: Layout,
    size: u64,
    start: u64,
    durable: Arc<AtomicU64>,
    /// The image file's name before `.zst` and segment suffixes, when not `image.raw`.
    image_stem: Option<String>,
    /// Bytes of read buffers in flight.
    budget: usize,
    /// Checkpoints while the stream runs (off: durable only at the end).
    checkpoints: bool,
    /// Pages of zeros left as holes in a raw image.
    sparse: bool,
}

impl LocalDir {
    /// The directory `dir`; a checkpoint at least every `checkpoint_bytes` (default 512 MiB) and 10 s.
    pub fn new(dir: &Path, size: u64, checkpoint_bytes: Option<u64>) -> Self {
        Self {
            dir: dir.to_owned(),
            checkpoint_bytes,
            log: AcqLog::none(),
            checkpoint: None,
            layout: Layout {
                base: String::new(),
                split: None,
            },
            size,
            start: 0,
            durable: Arc::new(AtomicU64::new(0)),
            image_stem: None,
            budget: STREAM_BUDGET,
            checkpoints: true,
            sparse: false,
        }
    }

    /// A capture that cannot be resumed (memory changes while it is read, so a second pass never
    /// continues the first): read buffers of at most `budget` bytes in flight, no checkpoint (and so
    /// no fsync) before the end, and pages of zeros left as holes in a raw image (the file reads the
    /// same; most of a machine's memory is zeros, which then cost no write).
    pub fn unresumable(mut self, budget: usize) -> Self {
        self.budget = budget;
        self.checkpoints = false;
        self.sparse = true;
        self
    }

    /// Names the image file `STEM` (`STEM.zst` in the zstd format) instead of `image.raw`: a memory
    /// capture is `memory.lime`. `verify` and `mount` take the name from the manifest's outputs.
    pub fn with_image_stem(mut self, stem: &str) -> Self {
        self.image_stem = Some(stem.to_owned());
        self
    }

    fn log_error(source: std::io::Error) -> AcquireError {
        AcquireError::WriteOutput {
            file: LOG_FILE.to_owned(),
            source,
        }
    }

    /// Best effort: an incomplete manifest and mapfile describing what is durable.
    fn write_incomplete(&self, base: &Manifest, acquired: u64) {
        let mut m = base.clone();
        m.finished_at = Some(manifest::now_rfc3339());
        m.unreadable.retain(|e| e.offset < acquired);
        let map = mapfile::render(
            self.size,
            acquired,
            &m.unreadable,
            &m.started_at,
            env!("CARGO_PKG_VERSION"),
        );
        let _ = manifest::write_reserved(&self.dir, MAP_FILE, map.as_bytes(), 16 << 10);
        let _ = manifest::write_reserved(&self.dir, MANIFEST_FILE, &m.to_json(), 64 << 10);
    }

    fn missing_writer(&self) -> AcquireError {
        AcquireError::StopStream {
            acquired: self.start,
            source: StreamError::PanicThread("writer".to_owned()),
        }
    }
}

impl Destination for LocalDir {
    type Error = AcquireError;

    fn load(&mut self, resume: bool) -> Result<Option<Record>, AcquireError> {
        let dir = self.dir.as_path();
        prepare_directory(dir, resume)?;
        if !resume {
            return Ok(None);
        }
        let Some(cp) = Checkpoint::load(dir)? else {
            if Manifest::load(dir).is_ok_and(|m| m.complete) {
                return Err(AcquireError::RejectCompleteAcquisition {
                    path: dir.to_owned(),
                });
            }
            return Err(AcquireError::MissingCheckpoint {
                path: dir.to_owned(),
            });
        };
        let record = Record {
            settings: cp.settings.clone(),
            source_path: cp.source_path.clone(),
            source_size: cp.source_size,
            source_serial: cp.source_serial.clone(),
            case: cp.case.clone(),
            started_at: cp.started_at.clone(),
            resumes: cp.resumes.clone(),
            read_only_before: cp.read_only_before.clone(),
        };
        self.checkpoint = Some(cp);
        Ok(Some(record))
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn resume_offset(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.source_offset)
    }

    fn begin(
        &mut self,
        record: &Record,
        resumed: bool,
        lines: &[String],
    ) -> Result<(), AcquireError> {
        self.log = AcqLog::open(&self.dir).map_err(Self::log_error)?;
        let cp = match self.checkpoint.take() {
            Some(mut cp) if resumed => {
                cp.settings = record.settings.clone();
                cp.resumes = record.resumes.clone();
                // Same durable point, now also recording this continuation.
                cp.store(&self.dir)?;
                self.log.line(&format!(
                    "resuming from source offset {} ({} image bytes durable); re-hashing them from the image",
                    cp.source_offset, cp.output_bytes
                ));
                cp
            }
            _ => {
                let cp = Checkpoint {
                    schema: checkpoint::CHECKPOINT_SCHEMA.to_owned(),
                    source_path: record.source_path.clone(),
                    source_size: record.source_size,
                    source_serial: record.source_serial.clone(),
                    settings: record.settings.clone(),
                    case: record.case.clone(),
                    started_at: record.started_at.clone(),
                    resumes: record.resumes.clone(),
                    read_only_before: record.read_only_before.clone(),
                    source_offset: 0,
                    output_bytes: 0,
                    frames: 0,
                    unreadable: Vec::new(),
                };
                for l in lines {
                    self.log.line(l);
                }
                // The first checkpoint marks the directory as ours before any image byte exists.
                cp.store(&self.dir)?;
                cp
            }
        };
        self.checkpoint = Some(cp);
        Ok(())
    }

    fn log(&mut self, line: &str) {
        self.log.line(line);
    }

    fn remote(&self) -> Option<RemoteInfo> {
        None
    }

    fn stream(
        &mut self,
        settings: &Settings,
        hash_files: bool,
        in_progress: &Manifest,
    ) -> Result<Stream, AcquireError> {
        let dir = self.dir.clone();
        let Some(cp) = self.checkpoint.take() else {
            return Err(self.missing_writer());
        };
        let format = ImageFormat::from_manifest_name(&settings.format).unwrap_or(ImageFormat::Raw);
        let base = match (&self.image_stem, format) {
            (None, _) => format.base_name().to_owned(),
            (Some(stem), ImageFormat::Raw) => stem.clone(),
            (Some(stem), ImageFormat::Zstd) => format!("{stem}.zst"),
        };
        self.layout = Layout {
            base,
            split: settings.split_bytes,
        };
        let layout = &self.layout;
        let segment_writer = if cp.output_bytes > 0 {
            SegmentWriter::resume(&dir, layout.clone(), cp.output_bytes, hash_files)
                .map_err(AcquireError::PrepareImage)?
        } else {
            segments::truncate_to(&dir, layout, 0).map_err(AcquireError::PrepareImage)?;
            SegmentWriter::create(&dir, layout.clone(), hash_files)
                .sparse(self.sparse && format == ImageFormat::Raw)
        };
        let paths = layout
            .files_for(cp.output_bytes)
            .into_iter()
            .map(|(n, _)| dir.join(n))
            .collect();
        let prefix = match format {
            ImageFormat::Raw => ImageReader::raw(paths, cp.source_offset, true),
            ImageFormat::Zstd => {
                let frames = checkpoint::read_frames(&dir, cp.frames)?;
                ImageReader::zstd(paths, frames, 0, true).map_err(|source| {
                    AcquireError::WriteOutput {
                        file: "zstd decoder".to_owned(),
                        source,
                    }
                })?
            }
        };
        // Reserve the manifest early: an incomplete one must still fit when the destination fills up.
        let mut m = in_progress.clone();
        m.acquired_bytes = cp.source_offset;
        m.unreadable = cp.unreadable.clone();
        self.write_incomplete(&m, cp.source_offset);
        self.start = cp.source_offset;
        let unreadable = cp.unreadable.clone();
        let cadence = if self.checkpoints {
            Cadence {
                bytes: self.checkpoint_bytes.unwrap_or(512 << 20).max(1),
                interval: Duration::from_secs(10),
            }
        } else {
            Cadence {
                bytes: u64::MAX,
                interval: Duration::MAX,
            }
        };
        let writer = ImageWriter::new(
            &dir,
            segment_writer,
            format == ImageFormat::Zstd,
            cp,
            cadence,
            Arc::clone(&self.durable),
        )
        .map_err(|e| AcquireError::StopStream {
            acquired: self.start,
            source: StreamError::WriteImage(e),
        })?;
        Ok(Stream {
            output: Output::Write {
                writer: Box::new(writer),
                zstd: settings.compress(),
            },
            prefix: Some(prefix),
            start: self.start,
            durable: Arc::clone(&self.durable),
            budget: self.budget,
            unreadable,
        })
    }

    fn fail(&mut self, failure: StreamFailure, base: &mut Manifest) -> AcquireError {
        let StreamFailure { error, writer, .. } = failure;
        let is_full = matches!(&error, StreamError::WriteImage(e) if e.is_disk_full());
        let mut acquired = self.durable.load(Ordering::Relaxed);
        if let (true, Some(w)) = (is_full, &writer) {
            // Give back the space written after the checkpoint so the records below fit; resume
            // would cut it anyway.
            let _ =
                segments::truncate_to(&self.dir, &self.layout, w.last_checkpoint().output_bytes);
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
        self.log.line(&format!("stopped: {}", error_chain(&err)));
        self.write_incomplete(base, acquired);
        err
    }

    fn interrupt(&mut self, result: StreamResult, base: &mut Manifest) -> Result<(), AcquireError> {
        let Some(mut writer) = result.writer else {
            return Err(self.missing_writer());
        };
        base.case = writer.last_checkpoint().case.clone();
        let stopped = writer.checkpoint();
        // Stopping while re-hashing a resumed prefix keeps the older, further checkpoint.
        let acquired = if stopped.is_ok() {
            writer.last_checkpoint().source_offset
        } else {
            self.durable.load(Ordering::Relaxed)
        };
        base.acquired_bytes = acquired;
        base.unreadable = writer.unreadable().to_vec();
        self.log.line(&format!(
            "interrupted on request after {acquired} durable bytes; continue with --resume"
        ));
        self.write_incomplete(base, acquired);
        stopped.map_err(|e| AcquireError::StopStream {
            acquired,
            source: StreamError::WriteImage(e),
        })
    }

    fn source_changed(
        &mut self,
        before: u64,
        after: u64,
        result: &mut StreamResult,
        base: &mut Manifest,
    ) -> AcquireError {
        let err = AcquireError::ChangeSourceSize { before, after };
        let position = result.writer.as_ref().map_or(self.start, |w| w.position());
        base.acquired_bytes = position;
        base.stop_reason = Some(err.to_string());
        self.log.line(&format!("stopped: {err}"));
        self.write_incomplete(base, position);
        err
    }

    fn finish_stream(
        &mut self,
        result: &mut StreamResult,
        _observed: &[Extent],
        _progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Vec<OutputFile>, Vec<Extent>), AcquireError> {
        let Some(writer) = result.writer.take() else {
            return Err(self.missing_writer());
        };
        // The checkpoint's extents: this run's reads and those of the runs before it.
        writer.finish().map_err(|e| {
            let err = AcquireError::StopStream {
                acquired: self.durable.load(Ordering::Relaxed),
                source: StreamError::WriteImage(e),
            };
            self.log.line(&format!("stopped: {}", error_chain(&err)));
            err
        })
    }

    fn output_line(&self, f: &OutputFile) -> String {
        format!(
            "wrote {} ({} bytes, sha256 {})",
            f.file, f.size_bytes, f.sha256
        )
    }

    fn verify_interrupted(&mut self) -> Result<bool, AcquireError> {
        self.log.line(
            "source re-read interrupted on request: the image is complete, the source was NOT compared (--verify-source not done)",
        );
        Ok(false)
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), AcquireError> {
        Ok(manifest::write_durable(&self.dir, name, bytes)?)
    }

    fn seal_log(&mut self, last: &str) -> Result<Vec<u8>, AcquireError> {
        self.log.try_line(last).map_err(Self::log_error)?;
        self.log.sync().map_err(Self::log_error)?;
        self.log = AcqLog::none();
        fs::read(self.dir.join(LOG_FILE)).map_err(Self::log_error)
    }

    fn close(&mut self) -> Result<(), AcquireError> {
        checkpoint::remove(&self.dir);
        let _ = manifest::sync_dir(&self.dir);
        Ok(())
    }
}
