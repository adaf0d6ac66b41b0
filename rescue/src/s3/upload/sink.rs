//! The part sink: a [`BlockSink`] of the acquisition pipeline that cuts the output stream into image
//! objects (one, or `--split` segments) and each object into parts, which a bounded pool of uploader
//! threads sends (one multipart upload per object, each part with `x-amz-checksum-sha256`); on resume
//! a part the store already holds is checked against what was re-read and kept. The sink keeps the
//! upload state and stores it as parts land, so the state object always names every upload.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::super::client::{Client, CompletedPart, S3Error, Store, base64};
use super::state::{Held, StateObject, StatePart, UploadState, state_json};
use super::{Leftover, S3Url, UploadError};
use crate::acquire::buffer::Block;
use crate::acquire::hash::hex;
use crate::acquire::pipeline::{BlockSink, StreamError};
use crate::acquire::seekable::{self, FrameEntry};
use crate::acquire::segments::{Layout, OutputFile};

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
    /// On resume: the store lists this part from the interrupted run, proves nothing about its bytes
    /// (no checksum listed, no recorded hash) and refuses to take it again. The object's multipart
    /// upload is started again (see [`stop`]).
    #[error(
        "the store holds part {number} of {file} from the interrupted run, lists no checksum for it, and refuses to replace it"
    )]
    RestartObject {
        object: usize,
        file: String,
        number: u32,
        #[source]
        source: Box<S3Error>,
    },
}

impl SinkError {
    pub(super) fn is_network(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_network())
    }
}

pub(super) struct PartJob {
    pub(super) object: usize,
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) number: u32,
    /// Offset of the part inside its object.
    pub(super) offset: u64,
    pub(super) data: Vec<u8>,
    pub(super) held: Option<Held>,
    /// The object is already complete: a part that does not match `held` cannot be sent again.
    pub(super) completed: bool,
}

pub(super) enum PartResult {
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
pub(super) struct DonePart {
    pub(super) offset: u64,
    pub(super) size: u64,
    pub(super) sha256: [u8; 32],
    pub(super) etag: String,
}

/// The object the output stream is filling.
pub(super) struct OpenObject {
    pub(super) index: usize,
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) completed: bool,
    /// Bytes accepted into it so far (dispatched or in the part buffer).
    pub(super) size: u64,
    pub(super) next_number: u32,
    pub(super) hasher: Option<Sha256>,
}

/// The sink's state, shared with the caller (which needs it after the pipeline returns).
pub(super) struct SinkState {
    pub(super) url: S3Url,
    pub(super) layout: Layout,
    /// Output bytes are zstd frames: keep their sizes for the seek table.
    pub(super) zstd: bool,
    pub(super) frames: Vec<FrameEntry>,
    /// Hash each object here (not needed when the one raw object is the stream).
    pub(super) hash_objects: bool,
    pub(super) part_bytes: u64,
    pub(super) buf: Vec<u8>,
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) buffers: usize,
    pub(super) max_buffers: usize,
    /// Output stream bytes accepted.
    pub(super) pos: u64,
    pub(super) open: Option<OpenObject>,
    /// Finished objects in order (SHA-256 empty when `hash_objects` is false).
    pub(super) closed: Vec<OutputFile>,
    pub(super) held: BTreeMap<(usize, u32), Held>,
    pub(super) jobs: Option<SyncSender<PartJob>>,
    pub(super) results: Receiver<PartResult>,
    pub(super) workers: Vec<JoinHandle<()>>,
    pub(super) outstanding: usize,
    pub(super) done: BTreeMap<(usize, u32), DonePart>,
    pub(super) reused: usize,
    pub(super) state: UploadState,
    pub(super) state_client: Client,
    pub(super) state_key: String,
    pub(super) last_store: Instant,
    pub(super) state_interval: Duration,
    /// Source bytes whose output is stored without a gap from the start (what `--resume` keeps, and
    /// the manifest's `acquired_bytes` when the run stops).
    pub(super) uploaded: Arc<AtomicU64>,
    /// Source bytes whose parts the store has acknowledged without a gap (the progress figure; it runs
    /// ahead of `uploaded` by what the next state store will record), and when it was last updated.
    pub(super) acknowledged: Arc<AtomicU64>,
    pub(super) last_acknowledged: Instant,
    /// Objects whose held part the store refused to replace (see [`SinkError::RestartObject`]).
    pub(super) refused: std::collections::BTreeSet<usize>,
    /// With zstd: how far [`SinkState::source_end`] has walked `frames` (frame count, output bytes,
    /// source bytes), so each state store walks only the frames stored since the last one.
    pub(super) walked: (usize, u64, u64),
}

impl SinkState {
    /// Source bytes represented by the first `out_end` output bytes: the same number for raw; for
    /// zstd the source bytes of the whole frames inside it (never the seek table).
    pub(super) fn source_end(&mut self, out_end: u64) -> u64 {
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

    pub(super) fn take_buffer(&mut self) -> Result<Vec<u8>, SinkError> {
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

    pub(super) fn handle(&mut self, r: PartResult) -> Result<(), SinkError> {
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
                if self.outstanding == 0
                    || self.last_acknowledged.elapsed() >= Duration::from_millis(200)
                {
                    self.last_acknowledged = Instant::now();
                    let end = self.contiguous();
                    let source = self.source_end(end);
                    self.acknowledged.store(source, Ordering::Relaxed);
                }
                Ok(())
            }
            PartResult::Replace(mut job) => {
                if let Some(o) = self.state.objects.get_mut(job.object) {
                    o.parts.remove(&job.number);
                }
                self.store_state()?;
                // Still held by the store, now without a proof: sent again, and a refusal to
                // replace it restarts the object's upload.
                if let Some(h) = job.held.as_mut() {
                    h.sha256_b64 = None;
                    h.sha256_hex = None;
                }
                let Some(tx) = &self.jobs else {
                    return Err(SinkError::LoseUploaders);
                };
                tx.send(job).map_err(|_| SinkError::LoseUploaders)?;
                self.outstanding += 1;
                Ok(())
            }
            PartResult::Failed(e) => {
                if let SinkError::RestartObject { object, .. } = &e {
                    self.refused.insert(*object);
                }
                Err(e)
            }
        }
    }

    pub(super) fn wait_one(&mut self) -> Result<(), SinkError> {
        match self.results.recv() {
            Ok(r) => self.handle(r),
            Err(_) => Err(SinkError::LoseUploaders),
        }
    }

    pub(super) fn drain_ready(&mut self) -> Result<(), SinkError> {
        while let Ok(r) = self.results.try_recv() {
            self.handle(r)?;
        }
        Ok(())
    }

    /// Opens object `index`: the one recorded by an interrupted run, or a new multipart upload.
    pub(super) fn begin_object(&mut self, index: usize) -> Result<(), SinkError> {
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
    pub(super) fn dispatch(&mut self) -> Result<(), SinkError> {
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
    pub(super) fn close_object(&mut self) -> Result<(), SinkError> {
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
    pub(super) fn write(&mut self, mut data: &[u8]) -> Result<(), SinkError> {
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
    pub(super) fn end_stream(&mut self) -> Result<(), SinkError> {
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
    pub(super) fn settle(&mut self) -> Result<(), SinkError> {
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

    pub(super) fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Parts of object `index` done so far, in order.
    pub(super) fn parts_of(&self, index: usize) -> impl Iterator<Item = (u32, &DonePart)> {
        self.done
            .range((index, 0)..(index + 1, 0))
            .map(|((_, n), p)| (*n, p))
    }

    /// Output stream bytes stored without a gap from the start.
    pub(super) fn contiguous(&self) -> u64 {
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

    pub(super) fn store_state(&mut self) -> Result<(), S3Error> {
        let end = self.contiguous();
        let json = state_json(&self.state)?;
        self.state_client
            .put_object(&self.state_key, &json, false)?;
        self.last_store = Instant::now();
        let source = self.source_end(end);
        self.uploaded.store(source, Ordering::Relaxed);
        self.acknowledged.fetch_max(source, Ordering::Relaxed);
        Ok(())
    }

    /// Completes every object's multipart upload in order, recording each; uploads an interrupted run
    /// recorded beyond this run's objects are aborted.
    pub(super) fn complete_objects(&mut self) -> Result<(), SinkError> {
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
    pub(super) fn remove_object(&mut self, o: &StateObject) -> Result<(), String> {
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
    pub(super) fn abort_all(&mut self) -> Leftover {
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
    pub(super) fn abort_unfinished(&mut self) -> Leftover {
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

pub(super) struct S3Sink(pub(super) Arc<Mutex<SinkState>>);

pub(super) fn lock(m: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlockSink for S3Sink {
    fn accept(
        &mut self,
        _block: &Block,
        out: &[u8],
        frames: &[FrameEntry],
    ) -> Result<(), StreamError> {
        let mut s = lock(&self.0);
        if s.zstd {
            s.frames.extend_from_slice(frames);
        }
        s.write(out)
            .map_err(|e| StreamError::WriteSink(Box::new(e)))
    }
}

pub(super) fn spawn_uploader(
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
                        .map_err(|e| match e {
                            // A part the store lists but cannot prove, and refuses to take again:
                            // no number of retries or resumes gets past it.
                            S3Error::Status {
                                status: 400..500, ..
                            }
                            | S3Error::RejectCredentials { .. }
                                if job.held.is_some() =>
                            {
                                SinkError::RestartObject {
                                    object: job.object,
                                    file: job.key.rsplit('/').next().unwrap_or_default().to_owned(),
                                    number: job.number,
                                    source: Box::new(e),
                                }
                            }
                            e => SinkError::from(e),
                        }),
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

/// The error for a stream that stopped: a network failure keeps the uploads and the state for
/// `--resume`; a completed object that no longer matches the source is left for the examiner with the
/// state, the unfinished uploads aborted; any other failure (a refusal by the store, a local error)
/// removes everything (or, where that fails, keeps the state naming what is left).
pub(super) fn stop(s: &mut SinkState, uploaded: &AtomicU64, error: StreamError) -> UploadError {
    let sink_error = match &error {
        StreamError::WriteSink(e) => e.downcast_ref::<SinkError>(),
        _ => None,
    };
    let network = sink_error.is_some_and(SinkError::is_network);
    let changed = matches!(sink_error, Some(SinkError::ChangeCompletedPart { .. }));
    let restart = matches!(sink_error, Some(SinkError::RestartObject { .. }));
    let msg = crate::error_chain(&error);
    let left = if restart {
        s.state.line(&format!("stopped: {msg}"));
        // The store refuses to replace a part it holds: every object holding a part that nothing
        // proves and that is still to be sent meets the same refusal, so all of them start again now
        // (one more pass over the source, not one per object).
        let unproven = s
            .held
            .iter()
            .filter(|(_, h)| h.sha256_b64.is_none() && h.sha256_hex.is_none())
            .map(|((o, _), _)| *o);
        let mut objects: std::collections::BTreeSet<usize> = s.refused.clone();
        objects.extend(unproven);
        for index in objects {
            if s.state.objects.get(index).is_some_and(|o| !o.completed) {
                restart_object(s, index);
            }
        }
        let _ = s.store_state();
        Leftover::Resumable
    } else if network {
        s.state.line(&format!("stopped: {msg}"));
        // If this write fails too, the last stored state still names every upload: resumable.
        let _ = s.store_state();
        Leftover::Resumable
    } else if changed || s.state.objects.iter().any(|o| o.completed) {
        // Completed objects are evidence: a refusal never deletes them (issue 17).
        s.state.line(&format!("stopped: {msg}"));
        s.abort_unfinished()
    } else {
        s.abort_all()
    };
    UploadError::Stop {
        uploaded: uploaded.load(Ordering::Relaxed),
        resumable: network || restart,
        left,
        source: error,
    }
}

/// Aborts object `index`'s multipart upload and records it as dropped (no upload id, no parts), so
/// the next pass over the source starts that object's upload again in place; every other object and
/// its proven parts stay. An abort that fails keeps the record (the next resume tries again).
fn restart_object(s: &mut SinkState, index: usize) {
    let Some(o) = s.state.objects.get(index).cloned() else {
        return;
    };
    let key = s.url.key(&o.name);
    match s.remove_object(&o) {
        Ok(()) => {
            s.state.line(&format!(
                "aborted multipart upload {} of {key}: it holds parts that can be neither proven nor replaced; the upload of {key} starts again",
                o.upload_id
            ));
            if let Some(obj) = s.state.objects.get_mut(index) {
                obj.upload_id.clear();
                obj.parts.clear();
            }
        }
        Err(what) => s.state.line(&format!(
            "could not abort {what}; a later --resume tries again"
        )),
    }
}
