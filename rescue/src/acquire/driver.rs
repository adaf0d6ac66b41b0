//! The one acquisition driver: the phases every acquisition runs in the same order, whatever the source
//! (anything that reads at an offset: a block device, an image file, memory ranges) and whatever the
//! destination (a local directory, an object-store prefix, …).
//!
//! 1. the destination loads the interrupted run's [`Record`] (`--resume`) or checks it is free;
//! 2. the settings are resolved against it ([`super::resolve_settings`]) and the source's identity is
//!    compared with the record (size, serial, case fields);
//! 3. the destination records the run before any evidence byte exists ([`Destination::begin`]);
//! 4. one pipeline pass: the destination's durable prefix re-hashed (if it has one), then the source,
//!    every block hashed on parallel threads and handed to the destination's output;
//! 5. a stop (failure, request, changed source size) is handed to the destination, which keeps what
//!    `--resume` needs and says what is left;
//! 6. the destination closes the image; the optional `--verify-source` re-read compares the source;
//! 7. `unreadable.map`, `manifest.json`, `acquisition.log` and `SHA256SUMS` are written through the
//!    destination, its resume record removed, and the status decided.
//!
//! Where a destination keeps its bytes and its resume record is its own business ([`Destination`]);
//! how an acquisition resumes, stops and finishes is decided here, once.
//!
//! Nothing here prints or exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::buffer::{self, BufferPool};
use super::checkpoint::Settings;
use super::hash::{self, HashAlgorithm};
use super::manifest::{
    CaseInfo, HostFacts, ImageInfo, LOG_FILE, MANIFEST_FILE, MAP_FILE, Manifest, ReadOnlyState,
    RemoteInfo, ResumeRecord, SCHEMA, SUMS_FILE, SourceInfo, ToolInfo, now_rfc3339,
};
use super::pipeline::{self, Control, Ending, Output, StreamFailure, StreamResult};
use super::reader::ImageReader;
use super::segments::OutputFile;
use super::source::{BlockReader, Extent, ReadAt, push_extent};
use super::{
    AcquireError, AcquireStatus, ImageFormat, Phase, Progress, Requested, mapfile, names,
    resolve_settings, verify_source, window_name,
};

/// What an interrupted run recorded that every destination keeps alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub settings: Settings,
    pub source_path: String,
    pub source_size: u64,
    pub source_serial: Option<String>,
    pub case: CaseInfo,
    pub started_at: String,
    pub resumes: Vec<ResumeRecord>,
    /// Read-only flags as the first run found them (empty where the destination does not record them).
    pub read_only_before: BTreeMap<String, bool>,
}

/// The output side a destination hands the driver for this run's stream.
pub struct Stream {
    pub output: Output,
    /// Blocks the destination already holds durably, re-hashed from it before the source is read.
    pub prefix: Option<ImageReader>,
    /// Where reading the source starts (the end of `prefix`).
    pub start: u64,
    /// Source bytes durably stored so far: the progress figure.
    pub durable: Arc<AtomicU64>,
    /// Bytes of read buffers in flight.
    pub budget: usize,
    /// Unreadable extents already recorded durably (the progress figure starts from them).
    pub unreadable: Vec<Extent>,
}

/// Where an acquisition's evidence goes. The driver calls these in the order listed.
pub trait Destination {
    type Error: From<AcquireError>;

    /// The interrupted run's record for `resume` (refusing when there is none or it is complete);
    /// otherwise checks nothing is in the way of a new acquisition and returns `None`.
    fn load(&mut self, resume: bool) -> Result<Option<Record>, Self::Error>;
    /// Words naming the destination in the first log line (` to s3://… via …`), empty for a directory.
    fn describe(&self) -> String;
    /// Where the durable part of a resumed run ends in the source (recorded in `resumes`).
    fn resume_offset(&self) -> u64;
    /// Records the run before any image byte is written: `record` as it now stands (a resume already
    /// counted in it), and `lines` to open the log of a new run with.
    fn begin(
        &mut self,
        record: &Record,
        resumed: bool,
        lines: &[String],
    ) -> Result<(), Self::Error>;
    /// Appends a line to the acquisition log (best effort while the run goes on).
    fn log(&mut self, line: &str);
    /// The manifest's `remote` member, for destinations that have one.
    fn remote(&self) -> Option<RemoteInfo>;
    /// The output for this run. `hash_files`: the image files need their own SHA-256 (false when the
    /// one raw file is the stream, whose SHA-256 the driver computes anyway). `in_progress` is the
    /// manifest to leave behind if the run dies without a clean stop.
    fn stream(
        &mut self,
        settings: &Settings,
        hash_files: bool,
        in_progress: &Manifest,
    ) -> Result<Stream, Self::Error>;
    /// The stream failed: keep what `--resume` needs (or clean up what cannot be resumed), fill in
    /// `base` (acquired bytes, unreadable extents, stop reason) and return the error to report.
    fn fail(&mut self, failure: StreamFailure, base: &mut Manifest) -> Self::Error;
    /// Stopped on request: make what was written durable and record it, filling in `base`.
    fn interrupt(&mut self, result: StreamResult, base: &mut Manifest) -> Result<(), Self::Error>;
    /// The source's size changed during the run: clean up and return the error to report.
    fn source_changed(
        &mut self,
        before: u64,
        after: u64,
        result: &mut StreamResult,
        base: &mut Manifest,
    ) -> Self::Error;
    /// Closes the image: its files (SHA-256 left empty when `hash_files` was false) and the unreadable
    /// extents of the whole acquisition (`observed`: those this run's source reads met).
    fn finish_stream(
        &mut self,
        result: &mut StreamResult,
        observed: &[Extent],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Vec<OutputFile>, Vec<Extent>), Self::Error>;
    /// The log line naming one finished image file.
    fn output_line(&self, file: &OutputFile) -> String;
    /// `--verify-source` was stopped on request after the image was complete: `true` when the run
    /// stops there (resumable, the comparison done by `--resume`), `false` to finish unverified.
    fn verify_interrupted(&mut self) -> Result<bool, Self::Error>;
    /// Stores one small record file (`unreadable.map`, `manifest.json`, `SHA256SUMS`) durably.
    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Appends `last` to the log, stores it durably and returns the whole log's bytes.
    fn seal_log(&mut self, last: &str) -> Result<Vec<u8>, Self::Error>;
    /// Removes the resume record: the acquisition is complete.
    fn close(&mut self) -> Result<(), Self::Error>;
}

/// The source as the driver reads it.
pub struct SourceRead<'a> {
    pub reader: &'a (dyn ReadAt + Sync),
    pub info: SourceInfo,
    pub read_only: ReadOnlyState,
    /// The source's size now (checked after the stream: a source that grew or shrank is refused).
    pub current_size: &'a dyn Fn() -> Option<u64>,
}

/// What the caller asks of the run, whatever the destination.
pub struct Request<'a> {
    pub requested: Requested,
    pub case: &'a CaseInfo,
    pub resume: bool,
    pub verify_source: bool,
    pub cancel: &'a AtomicBool,
}

/// How a run that returned normally ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: AcquireStatus,
    pub manifest: Manifest,
}

/// The host facts every manifest records.
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

/// Refuses a resume whose source or case differs from the interrupted run's.
fn check_identity(r: &Record, info: &SourceInfo, case: &CaseInfo) -> Result<(), AcquireError> {
    let mismatch = |what: &str, recorded: String, requested: String| {
        Err(AcquireError::MismatchResume {
            what: what.to_owned(),
            recorded,
            requested,
        })
    };
    if r.source_size != info.size_bytes {
        return mismatch(
            "the source size",
            r.source_size.to_string(),
            info.size_bytes.to_string(),
        );
    }
    if r.source_serial.is_some() && info.serial.is_some() && r.source_serial != info.serial {
        return mismatch(
            "the source serial number",
            format!("{:?}", r.source_serial),
            format!("{:?}", info.serial),
        );
    }
    for (what, given, had) in [
        ("--case", &case.case_id, &r.case.case_id),
        ("--evidence-id", &case.evidence_id, &r.case.evidence_id),
        ("--examiner", &case.examiner, &r.case.examiner),
        ("--notes", &case.notes, &r.case.notes),
    ] {
        if given.is_some() && given != had {
            return mismatch(what, format!("{had:?}"), format!("{given:?}"));
        }
    }
    Ok(())
}

/// The log lines that open a new acquisition.
fn start_lines(
    info: &SourceInfo,
    read_only: &ReadOnlyState,
    settings: &Settings,
    destination: &str,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "rescue {} acquisition of {} ({} bytes){destination} started",
            env!("CARGO_PKG_VERSION"),
            info.path,
            info.size_bytes
        ),
        format!(
            "source: {} model={:?} serial={:?} sector={}/{}",
            info.kind, info.model, info.serial, info.logical_sector_size, info.physical_sector_size
        ),
    ];
    for (member, before) in &read_only.before {
        lines.push(format!(
            "write-block: {member} read-only before={before} after=true"
        ));
    }
    lines.push(format!(
        "settings: format={} split={:?} zstd_level={:?} hashes={} window={} block={} frame={} retries={}",
        settings.format,
        settings.split_bytes,
        settings.zstd_level,
        names(&settings.hashes),
        window_name(settings.window_bytes),
        settings.block_bytes,
        settings
            .frame_bytes
            .map_or_else(|| "block".to_owned(), |f| f.to_string()),
        settings.retries
    ));
    lines
}

/// The manifest as it stands before the stream: everything but the results.
fn base_manifest(
    record: &Record,
    info: &SourceInfo,
    read_only: &ReadOnlyState,
    remote: Option<RemoteInfo>,
) -> Manifest {
    let s = &record.settings;
    Manifest {
        schema: SCHEMA.to_owned(),
        tool: ToolInfo::current(),
        case: record.case.clone(),
        host: host_facts(),
        source: info.clone(),
        image: ImageInfo {
            format: s.format.clone(),
            split_bytes: s.split_bytes,
            block_bytes: s.block_bytes,
            zstd_level: s.zstd_level,
            frame_bytes: s.frame_bytes,
            window_bytes: s.window_bytes,
        },
        started_at: record.started_at.clone(),
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
            before: if record.read_only_before.is_empty() {
                read_only.before.clone()
            } else {
                record.read_only_before.clone()
            },
            ..read_only.clone()
        },
        source_verification: None,
        resumes: record.resumes.clone(),
        remote,
    }
}

/// The status of a complete acquisition.
fn status(m: &Manifest, source_unverified: bool) -> AcquireStatus {
    if m.source_verification.as_ref().is_some_and(|v| !v.matched) {
        AcquireStatus::SourceMismatch
    } else if source_unverified {
        AcquireStatus::SourceUnverified
    } else if m.unreadable.is_empty() {
        AcquireStatus::Complete
    } else {
        AcquireStatus::CompleteWithUnreadable
    }
}

/// Runs one acquisition of `source` into `dest`. See the module doc.
pub fn run<D: Destination>(
    req: &Request<'_>,
    source: &SourceRead<'_>,
    dest: &mut D,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Finished, D::Error> {
    let info = &source.info;
    let size = info.size_bytes;
    let sector = info.logical_sector_size.max(1);

    // 1–3: the record, the settings, the run recorded. A new run's options are checked before the
    // destination is touched, so a refused option leaves nothing behind.
    if !req.resume {
        resolve_settings(&req.requested, sector, size, None)?;
    }
    let recorded = dest.load(req.resume)?;
    let settings = resolve_settings(
        &req.requested,
        sector,
        size,
        recorded.as_ref().map(|r| &r.settings),
    )?;
    let resumed = recorded.is_some();
    let record = match recorded {
        Some(mut r) => {
            check_identity(&r, info, req.case)?;
            r.settings = settings.clone();
            r.resumes.push(ResumeRecord {
                at: now_rfc3339(),
                offset: dest.resume_offset(),
            });
            r
        }
        None => Record {
            settings: settings.clone(),
            source_path: info.path.clone(),
            source_size: size,
            source_serial: info.serial.clone(),
            case: req.case.clone(),
            started_at: now_rfc3339(),
            resumes: Vec::new(),
            read_only_before: source.read_only.before.clone(),
        },
    };
    let lines = if resumed {
        Vec::new()
    } else {
        start_lines(info, &source.read_only, &settings, &dest.describe())
    };
    dest.begin(&record, resumed, &lines)?;
    let format = ImageFormat::from_manifest_name(&settings.format).ok_or_else(|| {
        AcquireError::RejectOption(format!(
            "unknown format {:?} in the record of the interrupted run",
            settings.format
        ))
    })?;

    // 4: the stream.
    let mut base = base_manifest(&record, info, &source.read_only, dest.remote());
    // Raw, unsplit, with SHA-256 among the stream hashes: the file hash is the stream hash; skip a pass.
    let stream_is_file = format == ImageFormat::Raw
        && settings.split_bytes.is_none()
        && settings.hashes.contains(&HashAlgorithm::Sha256);
    let mut in_progress = base.clone();
    in_progress.stop_reason = Some("in progress (or interrupted without a clean stop)".to_owned());
    let stream = dest.stream(&settings, !stream_is_file, &in_progress)?;
    let pool = BufferPool::for_stream(settings.block_bytes as usize, stream.budget);
    let durable = stream.durable;
    let mut prefix = stream.prefix;
    let mut blocks = BlockReader::new(source.reader, stream.start, size, sector, settings.retries);
    let mut produce = |pool: &BufferPool| -> Result<Option<buffer::Block>, pipeline::StreamError> {
        if let Some(r) = prefix.as_mut() {
            match r.next_block(pool)? {
                Some(b) => return Ok(Some(b)),
                None => prefix = None,
            }
        }
        Ok(blocks.next_block(pool)?)
    };
    let mut observed: Vec<Extent> = Vec::new();
    let mut bad_log: Vec<Extent> = Vec::new();
    let mut unreadable_bytes: u64 = stream.unreadable.iter().map(|e| e.length).sum();
    let mut observe = |b: &buffer::Block| {
        for e in &b.unreadable {
            unreadable_bytes += e.length;
            bad_log.push(*e);
            push_extent(&mut observed, *e);
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
        if req.cancel.load(Ordering::Relaxed) {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let result = pipeline::run(
        &pool,
        &settings.hashes,
        settings.window_bytes,
        stream.output,
        &mut produce,
        &mut observe,
    );
    drop(pool);
    for e in &bad_log {
        dest.log(&format!(
            "unreadable: {} bytes at offset {} (zero-filled)",
            e.length, e.offset
        ));
    }

    // 5: stops.
    let mut result = match result {
        Ok(r) => r,
        Err(failure) => return Err(dest.fail(*failure, &mut base)),
    };
    if result.ending == Ending::Stopped {
        base.stop_reason = Some("interrupted on request".to_owned());
        dest.interrupt(result, &mut base)?;
        return Ok(Finished {
            status: AcquireStatus::Interrupted,
            manifest: base,
        });
    }
    let now = (source.current_size)();
    if now != Some(size) {
        return Err(dest.source_changed(size, now.unwrap_or(0), &mut result, &mut base));
    }

    // 6: the image closed, the source compared.
    let (mut files, unreadable) = dest.finish_stream(&mut result, &observed, progress)?;
    if stream_is_file && let (Some(f), Some(h)) = (files.first_mut(), result.hashes.get("sha256")) {
        f.sha256 = h.clone();
    }
    for f in &files {
        let line = dest.output_line(f);
        dest.log(&line);
    }
    for (algo, digest) in &result.hashes {
        dest.log(&format!("{algo} of the acquired stream: {digest}"));
    }
    let mut source_unverified = false;
    if req.verify_source {
        let verification = verify_source(
            source.reader,
            size,
            sector,
            settings.block_bytes as usize,
            &settings.hashes,
            settings.retries,
            req.cancel,
            progress,
            (&result.hashes, &unreadable),
            &mut |l| dest.log(l),
        );
        match verification.map_err(AcquireError::VerifySource)? {
            Some(v) => base.source_verification = Some(v),
            None => {
                if dest.verify_interrupted()? {
                    base.acquired_bytes = size;
                    base.stop_reason = Some("interrupted on request".to_owned());
                    return Ok(Finished {
                        status: AcquireStatus::Interrupted,
                        manifest: base,
                    });
                }
                source_unverified = true;
            }
        }
    }
    if base.read_only.applied {
        for (member, flag) in base.read_only.after.iter_mut() {
            *flag = crate::blkro::is_read_only(std::path::Path::new(member)).unwrap_or(false);
        }
    }

    // 7: the records.
    let map = mapfile::render(
        size,
        size,
        &unreadable,
        &base.started_at,
        env!("CARGO_PKG_VERSION"),
    );
    dest.put(MAP_FILE, map.as_bytes())?;
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
    base.remote = dest.remote();
    base.finished_at = Some(now_rfc3339());
    let json = base.to_json();
    dest.put(MANIFEST_FILE, &json)?;
    let unreadable_total: u64 = base.unreadable.iter().map(|e| e.length).sum();
    let log = dest.seal_log(&format!(
        "acquisition complete: {size} bytes, {unreadable_total} unreadable bytes in {} extents",
        base.unreadable.len()
    ))?;
    let mut sums: Vec<(String, String)> = base
        .outputs
        .iter()
        .map(|o| (o.file.clone(), o.sha256.clone()))
        .collect();
    sums.push((MANIFEST_FILE.to_owned(), hash::sha256_hex(&json)));
    sums.push((LOG_FILE.to_owned(), hash::sha256_hex(&log)));
    dest.put(SUMS_FILE, super::manifest::render_sums(&sums).as_bytes())?;
    dest.close()?;
    Ok(Finished {
        status: status(&base, source_unverified),
        manifest: base,
    })
}

#[cfg(test)]
mod tests {
    //! The driver over a source and a destination that exist only here: a list of memory ranges read
    //! as one stream, and an in-memory object store. Neither needed a change to the driver's phases.

    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::acquire::buffer::Block;
    use crate::acquire::pipeline::{BlockSink, StreamError};
    use crate::acquire::seekable::FrameEntry;
    use crate::acquire::segments::{Layout, SegmentHasher};

    /// Physical memory ranges, read back to back as one stream (as a memory capture reads them).
    struct Ranges(Vec<(u64, Vec<u8>)>);

    impl ReadAt for Ranges {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let mut start = 0u64;
            for (_, bytes) in &self.0 {
                let end = start + bytes.len() as u64;
                if offset < end {
                    let from = (offset - start) as usize;
                    let n = buf.len().min(bytes.len() - from);
                    buf[..n].copy_from_slice(&bytes[from..from + n]);
                    return Ok(n);
                }
                start = end;
            }
            Ok(0)
        }
    }

    /// What the in-memory store holds: objects by name, and the resume record.
    #[derive(Default)]
    struct Shelf {
        objects: BTreeMap<String, Vec<u8>>,
        record: Option<Record>,
        log: Vec<String>,
    }

    struct ShelfSink(Arc<Mutex<Shelf>>, Arc<AtomicU64>);

    impl BlockSink for ShelfSink {
        fn accept(
            &mut self,
            block: &Block,
            out: &[u8],
            _: &[FrameEntry],
        ) -> Result<(), StreamError> {
            let mut s = self.0.lock().unwrap();
            s.objects
                .entry("image.raw".to_owned())
                .or_default()
                .extend_from_slice(out);
            self.1.store(block.end(), Ordering::Relaxed);
            Ok(())
        }
    }

    struct MemoryStore {
        shelf: Arc<Mutex<Shelf>>,
        durable: Arc<AtomicU64>,
    }

    impl Destination for MemoryStore {
        type Error = AcquireError;

        fn load(&mut self, resume: bool) -> Result<Option<Record>, AcquireError> {
            let shelf = self.shelf.lock().unwrap();
            match (resume, &shelf.record) {
                (true, None) => Err(AcquireError::MissingCheckpoint {
                    path: "mem:".into(),
                }),
                (true, Some(r)) => Ok(Some(r.clone())),
                (false, _) if !shelf.objects.is_empty() => {
                    Err(AcquireError::RejectExistingAcquisition {
                        path: "mem:".into(),
                        found: "objects".into(),
                    })
                }
                (false, _) => Ok(None),
            }
        }
        fn describe(&self) -> String {
            " to memory".to_owned()
        }
        fn resume_offset(&self) -> u64 {
            0
        }
        fn begin(
            &mut self,
            record: &Record,
            _: bool,
            lines: &[String],
        ) -> Result<(), AcquireError> {
            let mut shelf = self.shelf.lock().unwrap();
            shelf.record = Some(record.clone());
            shelf.log.extend(lines.iter().cloned());
            // A resume starts the image again (like an object store re-reading the source).
            shelf.objects.remove("image.raw");
            Ok(())
        }
        fn log(&mut self, line: &str) {
            self.shelf.lock().unwrap().log.push(line.to_owned());
        }
        fn remote(&self) -> Option<RemoteInfo> {
            None
        }
        fn stream(&mut self, _: &Settings, _: bool, _: &Manifest) -> Result<Stream, AcquireError> {
            Ok(Stream {
                output: Output::Sink {
                    sink: Box::new(ShelfSink(
                        Arc::clone(&self.shelf),
                        Arc::clone(&self.durable),
                    )),
                    zstd: None,
                },
                prefix: None,
                start: 0,
                durable: Arc::clone(&self.durable),
                budget: 4 << 20,
                unreadable: Vec::new(),
            })
        }
        fn fail(&mut self, failure: StreamFailure, _: &mut Manifest) -> AcquireError {
            AcquireError::StopStream {
                acquired: 0,
                source: failure.error,
            }
        }
        fn interrupt(&mut self, _: StreamResult, base: &mut Manifest) -> Result<(), AcquireError> {
            base.acquired_bytes = self.durable.load(Ordering::Relaxed);
            Ok(())
        }
        fn source_changed(
            &mut self,
            before: u64,
            after: u64,
            _: &mut StreamResult,
            _: &mut Manifest,
        ) -> AcquireError {
            AcquireError::ChangeSourceSize { before, after }
        }
        fn finish_stream(
            &mut self,
            _: &mut StreamResult,
            observed: &[Extent],
            _: &mut dyn FnMut(&Progress),
        ) -> Result<(Vec<OutputFile>, Vec<Extent>), AcquireError> {
            let shelf = self.shelf.lock().unwrap();
            let image = shelf.objects.get("image.raw").cloned().unwrap_or_default();
            let mut h = SegmentHasher::new(
                Layout {
                    base: "image.raw".to_owned(),
                    split: None,
                },
                false,
            );
            h.update(&image);
            Ok((h.finish(), observed.to_vec()))
        }
        fn output_line(&self, f: &OutputFile) -> String {
            format!("kept {} in memory", f.file)
        }
        fn verify_interrupted(&mut self) -> Result<bool, AcquireError> {
            Ok(false)
        }
        fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), AcquireError> {
            let mut shelf = self.shelf.lock().unwrap();
            shelf.objects.insert(name.to_owned(), bytes.to_vec());
            Ok(())
        }
        fn seal_log(&mut self, last: &str) -> Result<Vec<u8>, AcquireError> {
            let mut shelf = self.shelf.lock().unwrap();
            shelf.log.push(last.to_owned());
            let text = shelf.log.join("\n").into_bytes();
            shelf.objects.insert(LOG_FILE.to_owned(), text.clone());
            Ok(text)
        }
        fn close(&mut self) -> Result<(), AcquireError> {
            self.shelf.lock().unwrap().record = None;
            Ok(())
        }
    }

    fn ranges() -> Ranges {
        let fill = |seed: u8, n: usize| (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        Ranges(vec![
            (0x1000, fill(3, 640 << 10)),
            (0x10_0000, fill(7, 1 << 20)),
            (0x400_0000, fill(11, 384 << 10)),
        ])
    }

    fn info_of(r: &Ranges) -> SourceInfo {
        SourceInfo {
            path: "memory:ranges".into(),
            kind: "memory".into(),
            size_bytes: r.0.iter().map(|(_, b)| b.len() as u64).sum(),
            logical_sector_size: 4096,
            physical_sector_size: 4096,
            model: None,
            serial: None,
            wwn: None,
            transport: None,
        }
    }

    fn memory_store() -> (Arc<Mutex<Shelf>>, MemoryStore) {
        let shelf = Arc::new(Mutex::new(Shelf::default()));
        let dest = MemoryStore {
            shelf: Arc::clone(&shelf),
            durable: Arc::new(AtomicU64::new(0)),
        };
        (shelf, dest)
    }

    fn case_ir9() -> CaseInfo {
        CaseInfo {
            case_id: Some("IR-9".into()),
            ..CaseInfo::default()
        }
    }

    fn request<'a>(case: &'a CaseInfo, cancel: &'a AtomicBool, resume: bool) -> Request<'a> {
        Request {
            requested: Requested {
                format: None,
                split: None,
                hashes: Some(vec![HashAlgorithm::Sha256, HashAlgorithm::Md5]),
                window: Some(1 << 20),
                zstd_level: None,
                block_size: Some(256 << 10),
                frame_size: None,
                retries: None,
            },
            case,
            resume,
            verify_source: true,
            cancel,
        }
    }

    #[test]
    fn a_new_source_and_a_new_destination_run_through_the_same_phases() {
        let src = ranges();
        let whole: Vec<u8> = src.0.iter().flat_map(|(_, b)| b.clone()).collect();
        let size = whole.len() as u64;
        let read = SourceRead {
            reader: &src,
            info: info_of(&src),
            read_only: ReadOnlyState::default(),
            current_size: &|| Some(size),
        };
        let (shelf, mut dest) = memory_store();
        let case = case_ir9();
        let cancel = AtomicBool::new(false);
        let done = run(
            &request(&case, &cancel, false),
            &read,
            &mut dest,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(done.status, AcquireStatus::Complete);
        let m = &done.manifest;
        assert!(m.complete);
        assert_eq!(m.acquired_bytes, size);
        assert_eq!(m.hashes["sha256"], hash::sha256_hex(&whole));
        assert_eq!(m.windows.len(), 2, "1 MiB windows over 2 MiB");
        assert!(m.source_verification.as_ref().is_some_and(|v| v.matched));

        let shelf = shelf.lock().unwrap();
        assert_eq!(
            shelf.objects["image.raw"], whole,
            "the stored image is the stream"
        );
        assert!(shelf.record.is_none(), "a complete run removes its record");
        // SHA256SUMS names every record object with its true hash.
        let sums = String::from_utf8(shelf.objects[SUMS_FILE].clone()).unwrap();
        for (name, digest) in super::super::manifest::parse_sums(&sums).unwrap() {
            assert_eq!(digest, hash::sha256_hex(&shelf.objects[&name]), "{name}");
        }
        let parsed = Manifest::parse(&shelf.objects[MANIFEST_FILE]).unwrap();
        assert_eq!(parsed.outputs[0].sha256, m.hashes["sha256"]);
        let log = String::from_utf8(shelf.objects[LOG_FILE].clone()).unwrap();
        assert!(log.contains("(2097152 bytes) to memory started"), "{log}");
        assert!(log.contains("source re-read: hashes match"), "{log}");
    }

    #[test]
    fn a_resume_is_checked_against_the_record_whatever_the_destination() {
        let src = ranges();
        let size = info_of(&src).size_bytes;
        let read = SourceRead {
            reader: &src,
            info: info_of(&src),
            read_only: ReadOnlyState::default(),
            current_size: &|| Some(size),
        };
        let (shelf, mut dest) = memory_store();
        let case = case_ir9();
        // Stopped at once: the record stays, the outcome says so.
        let cancel = AtomicBool::new(true);
        let stopped = run(
            &request(&case, &cancel, false),
            &read,
            &mut dest,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(stopped.status, AcquireStatus::Interrupted);
        assert_eq!(
            stopped.manifest.stop_reason.as_deref(),
            Some("interrupted on request")
        );
        assert!(shelf.lock().unwrap().record.is_some());

        // Another case on resume is refused before anything is written.
        let other = CaseInfo {
            case_id: Some("IR-10".into()),
            ..CaseInfo::default()
        };
        let go = AtomicBool::new(false);
        let err = run(&request(&other, &go, true), &read, &mut dest, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, AcquireError::MismatchResume { what, .. } if what == "--case"),
            "{err}"
        );
        // The same case resumes and completes, and the record counts the resume.
        let done = run(&request(&case, &go, true), &read, &mut dest, &mut |_| {}).unwrap();
        assert_eq!(done.status, AcquireStatus::Complete);
        assert_eq!(done.manifest.resumes.len(), 1);
    }
}
