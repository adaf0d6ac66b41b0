//! The streaming engine: one producer (the calling thread) fills pooled buffers and fans each block out,
//! shared behind an `Arc`, to one thread per hash algorithm, a window-hash thread (only when hash
//! windows were asked for: they cost a second SHA-256 pass) and the output side (a writer thread, fed
//! in order by a small pool of zstd compressors when compressing). Memory is bounded by the buffer pool
//! plus at most two compressed frames per compressor.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use super::buffer::{Block, BufferPool};
use super::hash::{HashAlgorithm, Window, WindowHasher};
use super::reader::ReadImageError;
use super::seekable::FrameEntry;
use super::segments::{Layout, OutputFile, SegmentHasher};
use super::source::ReadBlockError;
use super::writer::{ImageWriter, WriteImageError};

/// Errors that stop a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    ReadSource(#[from] ReadBlockError),
    #[error(transparent)]
    ReadImage(#[from] ReadImageError),
    #[error(transparent)]
    WriteImage(#[from] WriteImageError),
    #[error("compressing a zstd frame")]
    CompressFrame(#[source] io::Error),
    #[error("starting the {name} thread")]
    SpawnThread {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("the {0} thread panicked")]
    PanicThread(String),
    #[error("writing to the destination")]
    WriteSink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A destination other than the local image writer (e.g. an object store): takes every block in order
/// on its own thread, with its output bytes: the block's data, or its zstd frame when the
/// [`Output::Sink`] compresses (the same frames a local `--format zstd` acquisition writes).
pub trait BlockSink: Send {
    /// `frames` lists the zstd frames `out` is made of (empty for raw output).
    fn accept(
        &mut self,
        block: &Block,
        out: &[u8],
        frames: &[FrameEntry],
    ) -> Result<(), StreamError>;
}

/// How blocks are compressed: zstd `level` on `workers` threads, each block cut into frames of `frame`
/// bytes (the last one of a block shorter), so that a reader decodes only the frame it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compress {
    pub level: i32,
    pub workers: usize,
    pub frame: usize,
}

/// What happens to the bytes besides hashing.
pub enum Output {
    /// Nothing (re-reading the source).
    None,
    /// Write the image, compressing with zstd when `Some`.
    Write {
        writer: Box<ImageWriter>,
        zstd: Option<Compress>,
    },
    /// Hash the output files as the layout cuts them (verify); bytes come from `Block::stored` or the data.
    HashFiles { layout: Layout },
    /// Hand every block to a [`BlockSink`], returned in the result to be finished by the caller;
    /// compressed like [`Output::Write`] when `zstd` is `Some`.
    Sink {
        sink: Box<dyn BlockSink>,
        zstd: Option<Compress>,
    },
}

/// What the producer's observer wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// How the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The producer had no more blocks.
    Complete,
    /// The observer asked to stop.
    Stopped,
}

/// Everything computed over the stream.
pub struct StreamResult {
    pub ending: Ending,
    pub hashes: BTreeMap<String, String>,
    pub windows: Vec<Window>,
    pub bytes: u64,
    /// The writer, to finish or checkpoint, for [`Output::Write`].
    pub writer: Option<Box<ImageWriter>>,
    /// Output files, for [`Output::HashFiles`].
    pub files: Option<Vec<OutputFile>>,
    /// The sink, for [`Output::Sink`].
    pub sink: Option<Box<dyn BlockSink>>,
}

/// A stream failure, with the writer when it survived (so the caller can still checkpoint it).
pub struct StreamFailure {
    pub error: StreamError,
    pub writer: Option<Box<ImageWriter>>,
    pub bytes: u64,
    /// The sink, for [`Output::Sink`], when its thread survived.
    pub sink: Option<Box<dyn BlockSink>>,
}

/// A block and, when it was compressed here, its zstd frames (concatenated) and their sizes.
type Framed = (Arc<Block>, Option<(Vec<u8>, Vec<FrameEntry>)>);

/// Compresses `data` as independent zstd frames of `frame` bytes each (the last one shorter).
fn compress_frames(
    c: &mut zstd::bulk::Compressor<'_>,
    data: &[u8],
    frame: usize,
) -> io::Result<(Vec<u8>, Vec<FrameEntry>)> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut entries = Vec::with_capacity(data.len().div_ceil(frame.max(1)));
    for part in data.chunks(frame.max(1)) {
        let f = c.compress(part)?;
        out.extend_from_slice(&f);
        entries.push(FrameEntry {
            compressed: u32::try_from(f.len()).map_err(io::Error::other)?,
            decompressed: u32::try_from(part.len()).map_err(io::Error::other)?,
        });
    }
    Ok((out, entries))
}

type Joined<'s, T> = thread::ScopedJoinHandle<'s, T>;

fn spawn<'s, 'e, T: Send + 's>(
    scope: &'s thread::Scope<'s, 'e>,
    name: &str,
    f: impl FnOnce() -> T + Send + 's,
) -> Result<Joined<'s, T>, StreamError> {
    thread::Builder::new()
        .name(format!("acq-{name}"))
        .spawn_scoped(scope, f)
        .map_err(|source| StreamError::SpawnThread {
            name: name.to_owned(),
            source,
        })
}

fn join<T>(h: Joined<'_, T>, name: &str) -> Result<T, StreamError> {
    h.join()
        .map_err(|_| StreamError::PanicThread(name.to_owned()))
}

/// Where the producer hands blocks: to every consumer, to one compressor in turn, and the compressor
/// threads to join.
type Fanout<'a, 's> = (
    &'a mut Vec<SyncSender<Arc<Block>>>,
    &'a mut Vec<SyncSender<Arc<Block>>>,
    &'a mut Vec<Joined<'s, Result<(), StreamError>>>,
);

/// How the ordered output thread hands a block to its consumer: the block, its output bytes and the
/// zstd frames they are made of.
type Accept<C> = fn(&mut C, &Block, &[u8], &[FrameEntry]) -> Result<(), StreamError>;

/// The ordered output thread, which gives its consumer back with how it ended.
type OrderedThread<'s, C> = Joined<'s, (C, Result<(), StreamError>)>;

/// Starts the ordered output side: a thread that hands `consumer` every block in stream order with its
/// output bytes (the block's stored bytes or data for raw; its zstd frames, compressed by a pool of
/// threads, when `zstd` is `Some`; a block read back from a zstd image is one stored frame). Returns
/// the thread (which gives the consumer back) and the first setup error. Frames depend only on the
/// block, the level and the frame size, never on the number of workers, so a re-read compresses to the
/// same bytes.
fn spawn_ordered<'s, 'e, C: Send + 's>(
    s: &'s thread::Scope<'s, 'e>,
    name: &str,
    mut consumer: C,
    accept: Accept<C>,
    zstd: Option<Compress>,
    depth: usize,
    (broadcast, round_robin, compressors): Fanout<'_, 's>,
) -> (Option<OrderedThread<'s, C>>, Option<StreamError>) {
    let mut setup_error = None;
    let Some(Compress {
        level,
        workers,
        frame,
    }) = zstd
    else {
        let (tx, rx) = sync_channel::<Arc<Block>>(depth);
        return match spawn(s, name, move || {
            for b in rx {
                let out = b.stored.as_deref().unwrap_or(b.data());
                if let Err(e) = accept(&mut consumer, &b, out, &[]) {
                    return (consumer, Err(e));
                }
            }
            (consumer, Ok(()))
        }) {
            Ok(j) => {
                broadcast.push(tx);
                (Some(j), None)
            }
            Err(e) => (None, Some(e)),
        };
    };
    let mut frame_rx: Vec<Receiver<Framed>> = Vec::new();
    for i in 0..workers.max(1) {
        let (tx, rx) = sync_channel::<Arc<Block>>(1);
        let (ftx, frx) = sync_channel::<Framed>(1);
        match spawn(
            s,
            &format!("zstd{i}"),
            move || -> Result<(), StreamError> {
                let mut c =
                    zstd::bulk::Compressor::new(level).map_err(StreamError::CompressFrame)?;
                for b in rx {
                    let frame = match b.stored {
                        Some(_) => None,
                        None => Some(
                            compress_frames(&mut c, b.data(), frame)
                                .map_err(StreamError::CompressFrame)?,
                        ),
                    };
                    if ftx.send((b, frame)).is_err() {
                        break;
                    }
                }
                Ok(())
            },
        ) {
            Ok(j) => {
                round_robin.push(tx);
                frame_rx.push(frx);
                compressors.push(j);
            }
            Err(e) => setup_error = Some(e),
        }
    }
    match spawn(s, name, move || {
        // Frames come back in block order because blocks were dealt round-robin.
        let mut turn = 0;
        while let Some(Ok((b, frame))) = frame_rx
            .get(turn % frame_rx.len().max(1))
            .map(Receiver::recv)
        {
            turn += 1;
            let result = match &frame {
                Some((out, entries)) => accept(&mut consumer, &b, out, entries),
                None => {
                    // A block read back from the image: its stored bytes are one frame.
                    let out = b.stored.as_deref().unwrap_or(&[]);
                    let entry = FrameEntry {
                        compressed: u32::try_from(out.len()).unwrap_or(u32::MAX),
                        decompressed: u32::try_from(b.len).unwrap_or(u32::MAX),
                    };
                    let entries: &[FrameEntry] = if b.len == 0 { &[] } else { &[entry] };
                    accept(&mut consumer, &b, out, entries)
                }
            };
            if let Err(e) = result {
                return (consumer, Err(e));
            }
        }
        (consumer, Ok(()))
    }) {
        Ok(j) => (Some(j), setup_error),
        Err(e) => (None, Some(e)),
    }
}

/// The source of a stream: the next block read into a buffer from the pool, `Ok(None)` at the end.
/// Called by one thread at a time, not always the same one (see [`super::relay`]).
pub type Produce<'p> = dyn FnMut(&BufferPool) -> Result<Option<Block>, StreamError> + Send + 'p;

/// Runs the stream to its end. `produce` yields blocks (`Ok(None)` at the end); `observe` sees every
/// block after it was handed to the consumers and may stop the stream.
///
/// A stream whose only work is one hash (no windows, no output) is relayed between two reading
/// threads instead ([`super::relay`]) on a machine with two CPUs or more: the hash then reads bytes its
/// own core has just copied.
pub fn run(
    pool: &BufferPool,
    algorithms: &[HashAlgorithm],
    window: Option<u64>,
    output: Output,
    produce: &mut Produce<'_>,
    observe: &mut dyn FnMut(&Block) -> Control,
) -> Result<StreamResult, Box<StreamFailure>> {
    // Only with two CPUs or more: on one, a thread spinning for its turn would hold up the thread that
    // has it.
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if let ([algo], None, Output::None, 2.., 2..) =
        (algorithms, window, &output, pool.count(), cpus)
    {
        return super::relay::run(pool, *algo, produce, observe);
    }
    // Blocks queued per consumer: as many as the pool holds, so that a consumer that is ahead (the
    // hash, say) never waits on one that is behind (the writer) before the pool itself runs dry; the
    // pool alone bounds memory. On 2 cores (2 GiB raw+sha256 into tmpfs, 5 runs interleaved) a depth
    // of 4 left a core idle 0.1–0.4 s per run and took 2.05 s (median), a depth of 15 1.91 s.
    let depth = pool.count();
    thread::scope(|s| {
        let mut broadcast: Vec<SyncSender<Arc<Block>>> = Vec::new();
        let mut round_robin: Vec<SyncSender<Arc<Block>>> = Vec::new();
        let mut setup_error = None;

        let mut hash_threads = Vec::new();
        for &algo in algorithms {
            let (tx, rx) = sync_channel::<Arc<Block>>(depth);
            match spawn(s, algo.name(), move || {
                let mut h = algo.hasher();
                for b in rx {
                    h.update(b.data());
                }
                h.finish_hex()
            }) {
                Ok(j) => {
                    broadcast.push(tx);
                    hash_threads.push((algo, j));
                }
                Err(e) => setup_error = Some(e),
            }
        }
        let window_thread = match window {
            Some(size) => {
                let (tx, rx) = sync_channel::<Arc<Block>>(depth);
                match spawn(s, "windows", move || {
                    let mut w = WindowHasher::new(size);
                    for b in rx {
                        w.update(b.data());
                    }
                    w.finish()
                }) {
                    Ok(j) => {
                        broadcast.push(tx);
                        Some(j)
                    }
                    Err(e) => {
                        setup_error = Some(e);
                        None
                    }
                }
            }
            None => None,
        };

        let mut writer_thread = None;
        let mut compressors = Vec::new();
        let mut files_thread = None;
        let mut sink_thread = None;
        match output {
            Output::None => {}
            Output::Sink { sink, zstd } => {
                let (j, e) = spawn_ordered(
                    s,
                    "sink",
                    sink,
                    |k: &mut Box<dyn BlockSink>, b, out, frames| k.accept(b, out, frames),
                    zstd,
                    depth,
                    (&mut broadcast, &mut round_robin, &mut compressors),
                );
                sink_thread = j;
                setup_error = setup_error.or(e);
            }
            Output::HashFiles { layout } => {
                let (tx, rx) = sync_channel::<Arc<Block>>(depth);
                match spawn(s, "outputs", move || {
                    let mut h = SegmentHasher::new(layout, true);
                    for b in rx {
                        h.update(b.stored.as_deref().unwrap_or(b.data()));
                    }
                    h.finish()
                }) {
                    Ok(j) => {
                        broadcast.push(tx);
                        files_thread = Some(j);
                    }
                    Err(e) => setup_error = Some(e),
                }
            }
            Output::Write { writer, zstd } => {
                let (j, e) = spawn_ordered(
                    s,
                    "writer",
                    writer,
                    |w: &mut Box<ImageWriter>, b, out, frames| {
                        w.accept(b, out, frames).map_err(StreamError::from)
                    },
                    zstd,
                    depth,
                    (&mut broadcast, &mut round_robin, &mut compressors),
                );
                writer_thread = j;
                setup_error = setup_error.or(e);
            }
        }

        // Produce.
        let mut ending = Ending::Complete;
        let mut error = setup_error;
        let mut bytes = 0;
        let mut seq = 0usize;
        while error.is_none() {
            let block = match produce(pool) {
                Ok(Some(b)) => Arc::new(b),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let mut delivered = true;
            for tx in &broadcast {
                delivered &= tx.send(Arc::clone(&block)).is_ok();
            }
            if !round_robin.is_empty() {
                delivered &= round_robin[seq % round_robin.len()]
                    .send(Arc::clone(&block))
                    .is_ok();
            }
            seq += 1;
            if !delivered {
                // A consumer quit; its join below says why.
                ending = Ending::Stopped;
                break;
            }
            bytes = block.end();
            if observe(&block) == Control::Stop {
                ending = Ending::Stopped;
                break;
            }
        }
        drop(broadcast);
        drop(round_robin);

        // Collect, keeping the first error.
        fn keep(error: &mut Option<StreamError>, r: Result<(), StreamError>) {
            if let Err(e) = r {
                error.get_or_insert(e);
            }
        }
        let mut hashes = BTreeMap::new();
        for (algo, j) in hash_threads {
            match join(j, algo.name()) {
                Ok(hex) => {
                    hashes.insert(algo.name().to_owned(), hex);
                }
                Err(e) => keep(&mut error, Err(e)),
            }
        }
        let windows = match window_thread.map(|j| join(j, "windows")) {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                keep(&mut error, Err(e));
                Vec::new()
            }
            None => Vec::new(),
        };
        for (i, j) in compressors.into_iter().enumerate() {
            keep(&mut error, join(j, &format!("zstd{i}")).and_then(|r| r));
        }
        let mut writer = None;
        if let Some(j) = writer_thread {
            match join(j, "writer") {
                Ok((w, r)) => {
                    // A writer error is the real cause; replace a consumer-gone stop.
                    if let Err(e) = r {
                        error = Some(e);
                    }
                    writer = Some(w);
                }
                Err(e) => keep(&mut error, Err(e)),
            }
        }
        let mut sink = None;
        if let Some(j) = sink_thread {
            match join(j, "sink") {
                Ok((k, r)) => {
                    if let Err(e) = r {
                        error = Some(e);
                    }
                    sink = Some(k);
                }
                Err(e) => keep(&mut error, Err(e)),
            }
        }
        let files = match files_thread.map(|j| join(j, "outputs")) {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                keep(&mut error, Err(e));
                None
            }
            None => None,
        };
        match error {
            Some(error) => Err(Box::new(StreamFailure {
                error,
                writer,
                bytes,
                sink,
            })),
            None => Ok(StreamResult {
                ending,
                hashes,
                windows,
                bytes,
                writer,
                files,
                sink,
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a sink was handed: each block's offset and length, all output bytes and frames.
    type Seen = (Vec<(u64, usize)>, Vec<u8>, Vec<FrameEntry>);

    /// Records what a sink is handed.
    struct Collect(Arc<Mutex<Seen>>);

    impl BlockSink for Collect {
        fn accept(
            &mut self,
            block: &Block,
            out: &[u8],
            frames: &[FrameEntry],
        ) -> Result<(), StreamError> {
            let mut g = self.0.lock().unwrap();
            g.0.push((block.offset, block.len));
            g.1.extend_from_slice(out);
            g.2.extend_from_slice(frames);
            Ok(())
        }
    }

    fn through_sink(data: &[u8], block: usize, zstd: Option<Compress>) -> Seen {
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new(), Vec::new())));
        let pool = BufferPool::new(4, block);
        let mut offset = 0;
        let mut produce = |pool: &BufferPool| -> Result<Option<Block>, StreamError> {
            if offset >= data.len() {
                return Ok(None);
            }
            let len = block.min(data.len() - offset);
            let mut buf = pool.take().unwrap();
            buf.slice_mut(len)
                .copy_from_slice(&data[offset..offset + len]);
            let b = pool.block(buf, offset as u64, len);
            offset += len;
            Ok(Some(b))
        };
        let r = run(
            &pool,
            &[HashAlgorithm::Sha256],
            None,
            Output::Sink {
                sink: Box::new(Collect(Arc::clone(&seen))),
                zstd,
            },
            &mut produce,
            &mut |_| Control::Continue,
        )
        .map_err(|f| f.error)
        .unwrap();
        assert_eq!(r.ending, Ending::Complete);
        assert!(r.sink.is_some());
        let g = seen.lock().unwrap();
        g.clone()
    }

    #[test]
    fn a_compressing_sink_gets_every_frame_in_order_whatever_the_worker_count() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| if i % 7 == 0 { (i * 31 % 251) as u8 } else { 0 })
            .collect();
        let (order, raw, none) = through_sink(&data, 64 << 10, None);
        assert_eq!(raw, data);
        assert!(none.is_empty());
        assert_eq!(order.len(), 5);
        let zstd = |workers, frame| {
            Some(Compress {
                level: -1,
                workers,
                frame,
            })
        };
        let (order1, one, frames1) = through_sink(&data, 64 << 10, zstd(1, 64 << 10));
        let (order3, three, frames3) = through_sink(&data, 64 << 10, zstd(3, 64 << 10));
        assert_eq!(order1, order);
        assert_eq!(order3, order);
        // The same bytes whatever the pool size: a resumed upload can compare part hashes.
        assert_eq!(one, three);
        assert_eq!(frames1, frames3);
        assert_eq!(frames1.len(), 5);
        assert!(one.len() < data.len() / 2, "not compressed");
        assert_eq!(zstd::stream::decode_all(&one[..]).unwrap(), data);

        // Frames smaller than the block: each block is cut into frames of 16 KiB that each decode
        // alone, in stream order.
        let (order_small, small, frames) = through_sink(&data, 64 << 10, zstd(2, 16 << 10));
        assert_eq!(order_small, order);
        assert_eq!(frames.len(), data.len().div_ceil(16 << 10));
        assert_eq!(zstd::stream::decode_all(&small[..]).unwrap(), data);
        let mut at = 0;
        for (i, f) in frames.iter().enumerate() {
            let part = &small[at..at + f.compressed as usize];
            let plain = zstd::bulk::decompress(part, f.decompressed as usize).unwrap();
            let start = i * (16 << 10);
            assert_eq!(
                plain,
                &data[start..start + f.decompressed as usize],
                "frame {i}"
            );
            at += f.compressed as usize;
        }
        assert_eq!(at, small.len());
    }
}
