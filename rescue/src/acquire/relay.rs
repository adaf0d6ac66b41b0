//! The stream hash relayed between two reading threads, for a stream whose only work is one hash (a
//! raw image verified without hash windows, the source re-read of `--verify-source`, one object store
//! hash). Blocks are dealt alternately: each thread reads its block and hashes it itself, while the
//! bytes its own copy brought in are still in its core's cache, and the hash state passes from one
//! thread to the other in stream order, so one thread reads while the other hashes.
//!
//! With a reader thread and a separate hash thread, every cache line the hash touches was last written
//! by the other core, and the hash waits on each one: on the 2-core build box (quiet, 2026-12-06,
//! 2 GiB raw image on tmpfs, `openssl speed -evp sha256` 1960–2010 MB/s, so 1.07–1.10 s for 2 GiB of
//! hot memory) `verify` took 1.21–1.25 s that way and 1.09 s relayed.
//!
//! The calling thread is one of the two threads and the observer's: a block the other thread hashed
//! waits in a channel until the calling thread's next turn (or its end), which keeps the order and
//! leaves no third thread to wake up for every block. Memory stays bounded by the buffer pool: a thread
//! reads only after the other has read the block before, so at most two blocks are held and two
//! queued, and the calling thread empties the queue at every turn.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::buffer::{Block, BufferPool};
use super::hash::{HashAlgorithm, StreamHasher};
use super::pipeline::{Control, Ending, Produce, StreamError, StreamFailure, StreamResult};

/// How long a thread spins for its turn before it sleeps. Longer than a verify block takes to hash
/// (2 MiB at 2 GB/s is 1 ms): in the steady state the other thread hands over while this one spins,
/// with no wake-up to wait for (a wake-up costs tens of microseconds on a VM).
const SPIN: Duration = Duration::from_millis(2);

struct Relay<'a, 'p> {
    pool: &'a BufferPool,
    /// The source. Block `n` is read by thread `n % 2`, once block `n - 1` has been read.
    produce: Mutex<&'a mut Produce<'p>>,
    /// Blocks read so far.
    produced: AtomicUsize,
    /// The source has no more blocks.
    ended: AtomicBool,
    /// Number of the next block to hash.
    turn: AtomicUsize,
    hasher: Mutex<StreamHasher>,
    /// Where a thread whose turn has not come after [`SPIN`] sleeps.
    sleep: Mutex<()>,
    woken: Condvar,
    /// Set on a read error, a stop, a gone observer or a panic: every thread leaves.
    stop: AtomicBool,
    error: Mutex<Option<StreamError>>,
}

/// Stops the relay when a thread unwinds, so the other one does not wait for a turn forever.
struct HaltOnPanic<'r, 'a, 'p>(&'r Relay<'a, 'p>);

impl Drop for HaltOnPanic<'_, '_, '_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.halt();
        }
    }
}

impl Relay<'_, '_> {
    /// Wakes a sleeping thread after a counter or flag changed. The lock is taken and released so that
    /// a thread between its check and its wait cannot miss the wake-up.
    fn wake(&self) {
        drop(self.sleep.lock());
        self.woken.notify_all();
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    fn fail(&self, e: StreamError) {
        if let Ok(mut error) = self.error.lock() {
            error.get_or_insert(e);
        }
        self.halt();
    }

    /// Waits until `ready()`; false when the relay stopped first.
    fn wait_until(&self, ready: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if ready() {
                return true;
            }
            if self.stop.load(Ordering::Acquire) || start.elapsed() > SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        let Ok(mut guard) = self.sleep.lock() else {
            return false;
        };
        loop {
            if ready() {
                return true;
            }
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            guard = match self.woken.wait(guard) {
                Ok(g) => g,
                Err(_) => return false,
            };
        }
    }

    /// Thread `first` (0 or 1): reads blocks `first`, `first + 2`, …; hashes each in its turn and
    /// hands it on with `deliver` (still in its turn, so blocks are delivered in stream order);
    /// `deliver` returns false to stop the stream.
    fn work(&self, first: usize, deliver: &mut dyn FnMut(Block) -> bool) {
        let _halt = HaltOnPanic(self);
        let mut seq = first;
        loop {
            let my_read = || {
                self.produced.load(Ordering::Acquire) == seq || self.ended.load(Ordering::Acquire)
            };
            if !self.wait_until(my_read) || self.ended.load(Ordering::Acquire) {
                return;
            }
            let read = match self.produce.lock() {
                Ok(mut produce) => produce(self.pool),
                Err(_) => return,
            };
            let block = match read {
                Ok(Some(b)) => b,
                Ok(None) => {
                    self.ended.store(true, Ordering::Release);
                    self.wake();
                    return;
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            };
            self.produced.store(seq + 1, Ordering::Release);
            self.wake();
            if !self.wait_until(|| self.turn.load(Ordering::Acquire) == seq) {
                return;
            }
            match self.hasher.lock() {
                Ok(mut h) => h.update_cached(block.data()),
                Err(_) => return,
            }
            let go_on = deliver(block);
            self.turn.store(seq + 1, Ordering::Release);
            self.wake();
            if !go_on {
                self.halt();
                return;
            }
            seq += 2;
        }
    }
}

/// Runs a stream whose only consumer is the `algo` hash (see the module documentation). `pool` must
/// hold at least two buffers.
pub(super) fn run(
    pool: &BufferPool,
    algo: HashAlgorithm,
    produce: &mut Produce<'_>,
    observe: &mut dyn FnMut(&Block) -> Control,
) -> Result<StreamResult, Box<StreamFailure>> {
    let relay = Relay {
        pool,
        produce: Mutex::new(produce),
        produced: AtomicUsize::new(0),
        ended: AtomicBool::new(false),
        turn: AtomicUsize::new(0),
        hasher: Mutex::new(algo.hasher()),
        sleep: Mutex::new(()),
        woken: Condvar::new(),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    let name = format!("{} relay", algo.name());
    let (mut ending, mut bytes) = (Ending::Complete, 0);
    let mut panicked = false;
    thread::scope(|s| {
        let (tx, rx) = channel::<Block>();
        let other = match thread::Builder::new()
            .name(format!("acq-{}", algo.name()))
            .spawn_scoped(s, {
                let relay = &relay;
                move || relay.work(1, &mut |b| tx.send(b).is_ok())
            }) {
            Ok(j) => Some(j),
            Err(source) => {
                relay.fail(StreamError::SpawnThread {
                    name: name.clone(),
                    source,
                });
                None
            }
        };
        let mut see = |b: Block| {
            bytes = b.end();
            let go_on = observe(&b) == Control::Continue;
            if !go_on {
                ending = Ending::Stopped;
            }
            go_on
        };
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The other thread's blocks before this one, then this one.
            relay.work(0, &mut |b| rx.try_iter().chain([b]).all(&mut see));
            // The other thread's last blocks, once it is done.
            if !relay.stop.load(Ordering::Acquire) {
                for b in &rx {
                    if !see(b) {
                        relay.halt();
                        break;
                    }
                }
            }
        }));
        drop(rx);
        panicked = mine.is_err() || other.is_some_and(|j| j.join().is_err());
    });
    let failure = |error| {
        Box::new(StreamFailure {
            error,
            writer: None,
            bytes,
            sink: None,
        })
    };
    if let Some(error) = relay.error.into_inner().unwrap_or(None) {
        return Err(failure(error));
    }
    // A hasher poisoned by a panic is a panicked thread too.
    let hasher = match relay.hasher.into_inner() {
        Ok(h) if !panicked => h,
        _ => return Err(failure(StreamError::PanicThread(name))),
    };
    Ok(StreamResult {
        ending,
        hashes: [(algo.name().to_owned(), hasher.finish_hex())].into(),
        windows: Vec::new(),
        bytes,
        writer: None,
        files: None,
        sink: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::pipeline::{self, Output};
    use super::*;
    use sha2::Digest;

    /// What a source does at one block.
    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        Fail(usize),
        Panic(usize),
    }

    /// Blocks of `block` bytes over `data`, failing or panicking at one block when asked.
    fn source(
        data: &[u8],
        block: usize,
        fault: Fault,
    ) -> impl FnMut(&BufferPool) -> Result<Option<Block>, StreamError> + Send + '_ {
        let (mut offset, mut n) = (0, 0);
        move |pool| {
            if offset >= data.len() {
                return Ok(None);
            }
            if fault == Fault::Fail(n) {
                return Err(StreamError::WriteSink("the disk went away".into()));
            }
            assert!(fault != Fault::Panic(n), "a reader bug");
            let len = block.min(data.len() - offset);
            let mut buf = pool.take().expect("pool alive");
            buf.slice_mut(len)
                .copy_from_slice(&data[offset..offset + len]);
            let b = pool.block(buf, offset as u64, len);
            offset += len;
            n += 1;
            Ok(Some(b))
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 % 251) as u8).collect()
    }

    /// Through the pipeline's entry point, which hands such a stream to the relay (with two CPUs or
    /// more; the tests below call the relay itself).
    #[test]
    fn the_relayed_hash_is_the_hash_of_the_stream_and_blocks_arrive_in_order() {
        for (len, block) in [
            (0, 4096),
            (100, 4096),
            (4096, 4096),
            (1_000_003, 4096),
            (1 << 20, 65536),
        ] {
            let data = data(len);
            let pool = BufferPool::new(4, block);
            let mut seen = Vec::new();
            let r = pipeline::run(
                &pool,
                &[HashAlgorithm::Sha256],
                None,
                Output::None,
                &mut source(&data, block, Fault::None),
                &mut |b| {
                    seen.push((b.offset, b.len));
                    Control::Continue
                },
            )
            .map_err(|f| f.error)
            .unwrap();
            assert_eq!(r.ending, Ending::Complete);
            assert_eq!(r.bytes, len as u64);
            assert_eq!(
                r.hashes["sha256"],
                hex::encode(sha2::Sha256::digest(&data)),
                "{len}"
            );
            let expected: Vec<(u64, usize)> = (0..len)
                .step_by(block)
                .map(|o| (o as u64, block.min(len - o)))
                .collect();
            assert_eq!(seen, expected, "{len}");
        }
    }

    #[test]
    fn the_relay_never_waits_on_itself_whatever_the_pool_size_and_the_observer_speed() {
        // A thread waiting for a buffer that only the other can free, or for a turn nobody will give,
        // would hang here: the watchdog turns that into a failure.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let data = data(300 * 4096 + 17);
            for buffers in 2..=5 {
                for slow_every in [1, 3, 7] {
                    let pool = BufferPool::new(buffers, 4096);
                    let mut n = 0;
                    let r = run(
                        &pool,
                        HashAlgorithm::Sha256,
                        &mut source(&data, 4096, Fault::None),
                        &mut |_| {
                            n += 1;
                            if n % slow_every == 0 {
                                thread::yield_now();
                            }
                            Control::Continue
                        },
                    )
                    .map_err(|f| f.error)
                    .unwrap();
                    assert_eq!(r.hashes["sha256"], hex::encode(sha2::Sha256::digest(&data)));
                    assert_eq!(n, 301, "{buffers} buffers");
                }
            }
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the relay finished every stream");
    }

    #[test]
    fn a_read_error_a_stop_and_a_panic_end_the_relay_without_hanging() {
        let data = data(200 * 4096);
        let pool = BufferPool::new(4, 4096);
        let f = run(
            &pool,
            HashAlgorithm::Sha256,
            &mut source(&data, 4096, Fault::Fail(50)),
            &mut |_| Control::Continue,
        )
        .err()
        .expect("the read error is returned");
        assert!(
            f.error.to_string().contains("writing to the destination"),
            "{}",
            f.error
        );
        assert!(f.bytes <= 50 * 4096, "{}", f.bytes);

        let mut observed = 0;
        let r = run(
            &pool,
            HashAlgorithm::Md5,
            &mut source(&data, 4096, Fault::None),
            &mut |_| {
                observed += 1;
                if observed == 3 {
                    Control::Stop
                } else {
                    Control::Continue
                }
            },
        )
        .map_err(|f| f.error)
        .unwrap();
        assert_eq!(r.ending, Ending::Stopped);
        assert_eq!(r.bytes, 3 * 4096);

        let f = run(
            &pool,
            HashAlgorithm::Sha256,
            &mut source(&data, 4096, Fault::Panic(7)),
            &mut |_| Control::Continue,
        )
        .err()
        .expect("the panic is returned");
        assert!(
            matches!(f.error, StreamError::PanicThread(_)),
            "{}",
            f.error
        );
        // Every buffer came back: the pool serves a whole stream again.
        let r = run(
            &pool,
            HashAlgorithm::Sha256,
            &mut source(&data, 4096, Fault::None),
            &mut |_| Control::Continue,
        )
        .map_err(|f| f.error)
        .unwrap();
        assert_eq!(r.hashes["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    }
}
