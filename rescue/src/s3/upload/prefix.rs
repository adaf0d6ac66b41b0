//! The object-store destination of the acquisition driver: an `s3://BUCKET/PREFIX`. Connecting lists
//! the prefix (refusing one that holds anything, unless resuming), measures the store's clock, and on
//! `--resume` reads the state object and asks the store which parts it holds. The stream goes to the
//! part sink; a stop keeps the uploads for `--resume` after a network failure and cleans up after a
//! refusal; the record files are small objects; completing removes the state object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::super::client::{Client, S3Error, Store};
use super::sink::{PartJob, PartResult, S3Sink, SinkError, SinkState, lock, spawn_uploader, stop};
use super::state::{Held, UploadState, held_part, state_json};
use super::{
    Leftover, MAX_UPLOADERS, PART_MEMORY, S3Url, STATE_INTERVAL, STATE_OBJECT, STATE_SCHEMA,
    UploadError, UploadEvent, UploadOptions, largest_object, part_size,
};
use crate::acquire::checkpoint::Settings;
use crate::acquire::driver::{Destination, Record, Stream};
use crate::acquire::manifest::{
    LOG_FILE, MANIFEST_FILE, Manifest, RemoteInfo, RemotePart, now_rfc3339,
};
use crate::acquire::pipeline::{Output, StreamError, StreamFailure, StreamResult};
use crate::acquire::segments::OutputFile;
use crate::acquire::source::Extent;
use crate::acquire::{Phase, Progress, STREAM_BUDGET};

/// An object-store prefix as an acquisition destination.
pub(super) struct S3Prefix<'a> {
    opts: &'a UploadOptions,
    pub(super) url: S3Url,
    store: Store,
    client: Client,
    state_key: String,
    skew: Option<i64>,
    size: u64,
    /// The state until the stream starts; then the sink holds it.
    state: Option<UploadState>,
    held: BTreeMap<(usize, u32), Held>,
    sink: Option<Arc<Mutex<SinkState>>>,
    uploaded: Arc<AtomicU64>,
    /// What the store acknowledged so far (progress).
    acknowledged: Arc<AtomicU64>,
    part_bytes: u64,
    parts: Vec<RemotePart>,
    pub(super) reused: usize,
    /// The image's name when not `image.raw` (see `UploadState::image_stem`).
    pub(super) image_stem: Option<String>,
}

impl<'a> S3Prefix<'a> {
    /// Lists the prefix (the first request also measures the store's clock) and, for `--resume`,
    /// reads the state and what the store holds of each recorded upload.
    pub(super) fn connect(
        opts: &'a UploadOptions,
        url: S3Url,
        size: u64,
        events: &mut dyn FnMut(&UploadEvent),
    ) -> Result<Self, UploadError> {
        let state_key = url.key(STATE_OBJECT);
        let store = Store::new(opts.store.clone())?;
        let mut client = store.client();
        let existing = client.list_objects(&url.prefix)?;
        let skew = store.clock_offset();
        if let Some(offset_secs) = skew {
            events(&UploadEvent::ClockSkew { offset_secs });
        }
        let mut held = BTreeMap::new();
        let mut state = None;
        if opts.resume && existing.is_empty() {
            // Interrupted before the prefix claim was stored: there is nothing to lose, and the
            // same command with --resume must still finish.
            events(&UploadEvent::NothingStored);
        } else if opts.resume {
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
            abort_unnamed_uploads(&mut client, &url, &mut st);
            for (index, obj) in st.objects.iter_mut().enumerate() {
                let key = url.key(&obj.name);
                if !obj.completed && obj.upload_id.is_empty() {
                    // Dropped by an earlier pass (a part neither provable nor replaceable, or the
                    // store forgot the upload): nothing of it is held; the sink starts it again.
                    obj.parts.clear();
                    continue;
                }
                if !obj.completed {
                    // A store may forget a finished upload (moto: 404) or list nothing for it
                    // (s3s-fs lists no parts for an upload it completed or never knew).
                    let listed = match client.list_parts(&key, &obj.upload_id) {
                        Ok(listed) => Some(listed),
                        Err(S3Error::Status { status: 404, .. }) => None,
                        Err(e) => return Err(e.into()),
                    };
                    match listed {
                        Some(listed) if !listed.is_empty() => {
                            for p in &listed {
                                held.insert(
                                    (index, p.number),
                                    held_part(p, obj.parts.get(&p.number)),
                                );
                            }
                            // Only what the store lists is there; the rest of the record is re-uploaded.
                            obj.parts.retain(|n, _| held.contains_key(&(index, *n)));
                            continue;
                        }
                        _ if client.head_object(&key)?.is_some() => {
                            // Completed just before the interruption, before the state recorded it
                            // (the prefix is ours: nothing else writes this key). Checked below.
                            st.log.push(format!(
                                "{} {key} was completed before the interruption; checking it",
                                now_rfc3339()
                            ));
                            obj.completed = true;
                        }
                        listed => {
                            // The store dropped the upload (aborted, or expired by a lifecycle rule)
                            // or holds no part of it: nothing is held; the sink starts it again.
                            if listed.is_some() {
                                let _ = client.abort_multipart(&key, &obj.upload_id);
                            }
                            st.log.push(format!(
                                "{} the store holds nothing of multipart upload {} of {key}; starting it again",
                                now_rfc3339(),
                                obj.upload_id
                            ));
                            obj.upload_id.clear();
                            obj.parts.clear();
                            continue;
                        }
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
            events(&UploadEvent::Resuming {
                parts: held.len(),
                bytes: held.values().map(|h| h.size).sum(),
            });
            state = Some(st);
        } else if let Some((k, _)) = existing.first() {
            return Err(UploadError::RejectExisting {
                url: url.to_string(),
                key: k.clone(),
            });
        }
        Ok(Self {
            opts,
            url,
            store,
            client,
            state_key,
            skew,
            size,
            part_bytes: state.as_ref().map_or(0, |s| s.part_bytes.max(1)),
            state,
            held,
            sink: None,
            uploaded: Arc::new(AtomicU64::new(0)),
            acknowledged: Arc::new(AtomicU64::new(0)),
            parts: Vec::new(),
            reused: 0,
            image_stem: None,
        })
    }

    fn sink(&self) -> Result<&Arc<Mutex<SinkState>>, UploadError> {
        self.sink.as_ref().ok_or_else(|| UploadError::Stop {
            uploaded: 0,
            resumable: true,
            left: Leftover::Resumable,
            source: StreamError::PanicThread("s3 sink".to_owned()),
        })
    }

    /// The state, wherever it is now.
    fn with_state<T>(&mut self, f: impl FnOnce(&mut UploadState) -> T) -> Option<T> {
        match (&self.sink, self.state.as_mut()) {
            (Some(s), _) => Some(f(&mut lock(s).state)),
            (None, Some(st)) => Some(f(st)),
            (None, None) => None,
        }
    }

    /// Puts one small object under the prefix.
    fn put_object(&mut self, name: &str, bytes: &[u8]) -> Result<(), UploadError> {
        Ok(self.client.put_object(&self.url.key(name), bytes, false)?)
    }
}

/// A kill between CreateMultipartUpload and the state write that names the upload leaves an upload
/// no state names: invisible in a listing of objects, billed, never completed. On resume, the
/// uploads under the prefix (ours: the prefix is claimed) that the state does not name are aborted.
/// A store that keeps no listing of uploads (s3s-fs) cannot be asked: the log says so, since such an
/// upload (a record without parts) may then stay in the store.
fn abort_unnamed_uploads(client: &mut Client, url: &S3Url, st: &mut UploadState) {
    let uploads = match client.list_multipart_uploads(&url.prefix) {
        Ok(uploads) => uploads,
        Err(e) => {
            st.line(&format!(
                "not looked for: a multipart upload the interrupted run may have started just before the state named it (it would hold no parts); the store did not list the uploads under {} ({}); its own tools can",
                url.prefix,
                crate::error_chain(&e)
            ));
            return;
        }
    };
    for (key, id) in uploads {
        let named = st
            .objects
            .iter()
            .any(|o| o.upload_id == id && url.key(&o.name) == key);
        if named {
            continue;
        }
        let line = match client.abort_multipart(&key, &id) {
            Ok(()) => format!(
                "aborted multipart upload {id} of {key}: the interrupted run started it but stopped before the state named it"
            ),
            Err(e) => format!(
                "LEFT IN THE STORE: multipart upload {id} of {key}, which no state names; aborting it failed ({}): abort it with the store's tools",
                crate::error_chain(&e)
            ),
        };
        st.line(&line);
    }
}

impl Destination for S3Prefix<'_> {
    type Error = UploadError;

    fn load(&mut self, _resume: bool) -> Result<Option<Record>, UploadError> {
        Ok(self.state.as_ref().map(|st| Record {
            settings: st.settings(),
            source_path: st.source_path.clone(),
            source_size: st.source_size,
            source_serial: st.source_serial.clone(),
            case: st.case.clone(),
            started_at: st.started_at.clone(),
            resumes: st.resumes.clone(),
            // The state does not keep them: the flags are read from the source again.
            read_only_before: BTreeMap::new(),
        }))
    }

    fn describe(&self) -> String {
        format!(" to {} via {}", self.url, self.opts.store.endpoint)
    }

    fn resume_offset(&self) -> u64 {
        // The whole source is read again and every held part checked.
        0
    }

    fn begin(
        &mut self,
        record: &Record,
        resumed: bool,
        lines: &[String],
    ) -> Result<(), UploadError> {
        let s = &record.settings;
        match self.state.as_mut() {
            Some(st) if resumed => {
                st.set_settings(s.clone());
                st.resumes = record.resumes.clone();
                let bytes_held: u64 = self.held.values().map(|h| h.size).sum();
                st.line(&format!(
                    "resuming: the store holds {} parts ({} bytes) of {} objects; re-reading the source to check them",
                    self.held.len(),
                    bytes_held,
                    st.objects.len()
                ));
            }
            _ => {
                let part_bytes = part_size(
                    largest_object(
                        record.source_size,
                        s.block_bytes,
                        s.zstd_level.is_some(),
                        s.split_bytes,
                    ),
                    s.block_bytes,
                );
                let mut st = UploadState {
                    schema: STATE_SCHEMA.to_owned(),
                    upload_id: String::new(),
                    parts: BTreeMap::new(),
                    objects: Vec::new(),
                    part_bytes,
                    format: s.format.clone(),
                    split_bytes: s.split_bytes,
                    zstd_level: s.zstd_level,
                    block_bytes: s.block_bytes,
                    frame_bytes: s.frame_bytes,
                    hashes: s.hashes.clone(),
                    window_bytes: s.window_bytes,
                    retries: s.retries,
                    source_path: record.source_path.clone(),
                    source_size: record.source_size,
                    source_serial: record.source_serial.clone(),
                    case: record.case.clone(),
                    started_at: record.started_at.clone(),
                    resumes: Vec::new(),
                    log: Vec::new(),
                    image_stem: self.image_stem.clone(),
                };
                for l in lines {
                    st.line(l);
                }
                st.line(&format!("multipart parts of {part_bytes} bytes"));
                if self.opts.insecure {
                    st.line("TLS certificate of the store NOT checked (--insecure)");
                }
                // Claim the prefix first (a racing writer's conditional put fails); the sink starts
                // each object's multipart upload when the stream reaches it.
                let json = state_json(&st)?;
                match self.client.put_object(&self.state_key, &json, true) {
                    Ok(()) => {}
                    Err(S3Error::Status { status: 412, .. }) => {
                        return Err(UploadError::RejectExisting {
                            url: self.url.to_string(),
                            key: self.state_key.clone(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                self.state = Some(st);
            }
        }
        if let (Some(offset), Some(st)) = (self.skew, self.state.as_mut()) {
            st.line(&format!(
                "clock: the store's Date header is {offset} s ahead of this machine's clock; requests signed with the corrected time"
            ));
        }
        self.part_bytes = self.state.as_ref().map_or(1, |st| st.part_bytes.max(1));
        Ok(())
    }

    fn log(&mut self, line: &str) {
        self.with_state(|st| st.line(line));
    }

    fn remote(&self) -> Option<RemoteInfo> {
        Some(RemoteInfo {
            endpoint: self.opts.store.endpoint.clone(),
            region: self.opts.store.region.clone(),
            bucket: self.url.bucket.clone(),
            prefix: self.url.prefix.clone(),
            insecure: self.opts.insecure,
            ca_file: self.opts.ca_file.clone(),
            part_bytes: self.part_bytes,
            parts: self.parts.clone(),
            clock_offset_secs: self.skew,
        })
    }

    fn stream(
        &mut self,
        settings: &Settings,
        hash_files: bool,
        _in_progress: &Manifest,
    ) -> Result<Stream, UploadError> {
        let Some(state) = self.state.take() else {
            return Err(UploadError::RejectOption(
                "the upload state is missing".to_owned(),
            ));
        };
        let part_bytes = self.part_bytes;
        // One buffer fills while the others upload: at most PART_MEMORY of part data.
        let buffers = ((PART_MEMORY / part_bytes) as usize).clamp(2, MAX_UPLOADERS + 1);
        let uploaders = buffers - 1;
        let (job_tx, job_rx) = sync_channel::<PartJob>(0);
        let (res_tx, res_rx) = sync_channel::<PartResult>(uploaders + 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::new();
        for _ in 0..uploaders {
            match spawn_uploader(&self.store, Arc::clone(&job_rx), res_tx.clone()) {
                Ok(h) => workers.push(h),
                Err(e) => {
                    self.state = Some(state);
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
        let layout = state.layout();
        let sink = Arc::new(Mutex::new(SinkState {
            url: self.url.clone(),
            layout,
            zstd: settings.zstd_level.is_some(),
            frames: Vec::new(),
            hash_objects: hash_files,
            part_bytes,
            buf: Vec::new(),
            spare: Vec::new(),
            buffers: 0,
            max_buffers: buffers,
            pos: 0,
            open: None,
            closed: Vec::new(),
            held: std::mem::take(&mut self.held),
            jobs: Some(job_tx),
            results: res_rx,
            workers,
            outstanding: 0,
            done: BTreeMap::new(),
            reused: 0,
            state,
            state_client: self.store.client(),
            state_key: self.state_key.clone(),
            last_store: Instant::now(),
            state_interval: self.opts.state_interval.unwrap_or(STATE_INTERVAL),
            uploaded: Arc::clone(&self.uploaded),
            acknowledged: Arc::clone(&self.acknowledged),
            last_acknowledged: Instant::now(),
            walked: (0, 0, 0),
            refused: Default::default(),
        }));
        lock(&sink).store_state()?;
        self.sink = Some(Arc::clone(&sink));
        Ok(Stream {
            output: Output::Sink {
                sink: Box::new(S3Sink(sink)),
                zstd: settings.compress(),
            },
            prefix: None,
            start: 0,
            durable: Arc::clone(&self.acknowledged),
            // Half the local budget: the uploaders hold whole parts besides.
            budget: STREAM_BUDGET / 2,
            unreadable: Vec::new(),
        })
    }

    fn fail(&mut self, failure: StreamFailure, base: &mut Manifest) -> UploadError {
        let sink = match self.sink() {
            Ok(s) => Arc::clone(s),
            Err(e) => return e,
        };
        let mut s = lock(&sink);
        let settled = s.settle();
        s.stop_workers();
        let error = match (failure.error, settled) {
            // A consumer-gone stop hides the sink's real cause.
            (StreamError::WriteSink(e), _) => StreamError::WriteSink(e),
            (_, Err(e)) if e.is_network() => StreamError::WriteSink(Box::new(e)),
            (other, _) => other,
        };
        let err = stop(&mut s, &self.uploaded, error);
        base.acquired_bytes = self.uploaded.load(Ordering::Relaxed);
        base.stop_reason = Some(crate::error_chain(&err));
        err
    }

    fn interrupt(&mut self, _result: StreamResult, base: &mut Manifest) -> Result<(), UploadError> {
        let sink = Arc::clone(self.sink()?);
        let mut s = lock(&sink);
        // Let the parts in flight land, record them, keep the upload.
        let settled = s.settle();
        s.stop_workers();
        let stored = self.uploaded.load(Ordering::Relaxed);
        s.state.line(&format!(
            "interrupted on request after {stored} bytes of the source stored; continue with --resume"
        ));
        s.store_state()?;
        if let Err(e) = settled {
            return Err(stop(
                &mut s,
                &self.uploaded,
                StreamError::WriteSink(Box::new(e)),
            ));
        }
        self.reused = s.reused;
        base.acquired_bytes = self.uploaded.load(Ordering::Relaxed);
        base.finished_at = Some(now_rfc3339());
        Ok(())
    }

    fn source_changed(
        &mut self,
        before: u64,
        after: u64,
        _result: &mut StreamResult,
        _base: &mut Manifest,
    ) -> UploadError {
        let left = match self.sink() {
            Ok(sink) => {
                let mut s = lock(sink);
                let _ = s.settle();
                s.stop_workers();
                if s.state.objects.iter().any(|o| o.completed) {
                    s.abort_unfinished()
                } else {
                    s.abort_all()
                }
            }
            Err(e) => return e,
        };
        UploadError::ChangeSourceSize {
            before,
            after,
            left,
        }
    }

    fn finish_stream(
        &mut self,
        _result: &mut StreamResult,
        observed: &[Extent],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Vec<OutputFile>, Vec<Extent>), UploadError> {
        let sink = Arc::clone(self.sink()?);
        let mut s = lock(&sink);
        let size = self.size;
        let unreadable_bytes = observed.iter().map(|e| e.length).sum();
        // The seek table and the last parts, then every answer. The reader usually finishes first (its
        // buffers absorb the last parts): keep reporting what becomes durable while the uploads drain.
        let finish = (|| -> Result<(), SinkError> {
            s.end_stream()?;
            while s.outstanding > 0 {
                s.wait_one()?;
                progress(&Progress {
                    phase: Phase::Acquire,
                    done_bytes: size,
                    total_bytes: size,
                    durable_bytes: self.acknowledged.load(Ordering::Relaxed),
                    unreadable_bytes,
                });
            }
            Ok(())
        })();
        if finish.is_err() {
            // Parts still in flight land and are recorded before the stop stores the state: a part
            // stored but not recorded is one a resume cannot prove.
            let _ = s.settle();
        }
        s.stop_workers();
        if let Err(e) = finish.and_then(|()| s.complete_objects()) {
            return Err(stop(
                &mut s,
                &self.uploaded,
                StreamError::WriteSink(Box::new(e)),
            ));
        }
        let objects = s.closed.clone();
        let mut parts = Vec::new();
        for (index, o) in objects.iter().enumerate() {
            for (number, p) in s.parts_of(index) {
                parts.push(RemotePart {
                    file: o.file.clone(),
                    number,
                    offset: p.offset,
                    size_bytes: p.size,
                    sha256: crate::acquire::hash::hex(&p.sha256),
                });
            }
        }
        self.parts = parts;
        self.reused = s.reused;
        let reused = s.reused;
        s.state.line(&format!(
            "{reused} parts already in the store were checked against the source and kept"
        ));
        // The part buffers are not needed any more; --verify-source brings its own.
        s.spare = Vec::new();
        s.buf = Vec::new();
        Ok((objects, observed.to_vec()))
    }

    fn output_line(&self, f: &OutputFile) -> String {
        format!(
            "stored {} ({} bytes in {} parts, sha256 {})",
            self.url.key(&f.file),
            f.size_bytes,
            self.parts.iter().filter(|p| p.file == f.file).count(),
            f.sha256
        )
    }

    fn verify_interrupted(&mut self) -> Result<bool, UploadError> {
        // The image objects are complete, the comparison is not done. The state stays so that
        // `--resume --verify-source` checks the parts and re-reads again.
        let sink = Arc::clone(self.sink()?);
        let json = {
            let mut s = lock(&sink);
            s.state.line(
                "source re-read interrupted on request: the image objects are complete, the source was NOT compared; continue with --resume --verify-source",
            );
            state_json(&s.state)?
        };
        let key = self.state_key.clone();
        self.client.put_object(&key, &json, false)?;
        Ok(true)
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), UploadError> {
        self.put_object(name, bytes)
    }

    fn seal_log(&mut self, last: &str) -> Result<Vec<u8>, UploadError> {
        let log = self
            .with_state(|st| {
                st.line(last);
                let mut log = st.log.join("\n");
                log.push('\n');
                log
            })
            .unwrap_or_default();
        self.put_object(LOG_FILE, log.as_bytes())?;
        Ok(log.into_bytes())
    }

    fn close(&mut self) -> Result<(), UploadError> {
        let key = self.state_key.clone();
        Ok(self.client.delete_object(&key)?)
    }
}
