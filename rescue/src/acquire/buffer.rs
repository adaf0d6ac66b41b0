//! Page-aligned I/O buffers recycled through a fixed pool, and the [`Block`] that carries one buffer of
//! the stream to every consumer thread. The pool is what bounds memory: the reader waits for a free
//! buffer, so at most `count × size` bytes of stream data are ever in flight, whatever the disk size.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use super::source::Extent;

/// Alignment good for `O_DIRECT` on any logical sector size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// A heap buffer whose usable part starts on an [`ALIGN`] boundary. Safe code: over-allocate and offset.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `cap` usable bytes.
    pub fn new(cap: usize) -> Self {
        let raw = vec![0u8; cap + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self { raw, start, cap }
    }

    /// Usable capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The first `len` usable bytes.
    pub fn slice(&self, len: usize) -> &[u8] {
        &self.raw[self.start..self.start + len.min(self.cap)]
    }

    /// The first `len` usable bytes, writable.
    pub fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.raw[self.start..self.start + len.min(self.cap)]
    }
}

/// A fixed set of buffers handed out and returned through a channel. Shared by reference between
/// threads (the relayed stream hash reads on two), so the receiving end sits behind a lock.
pub struct BufferPool {
    home: Sender<AlignedBuf>,
    free: Mutex<Receiver<AlignedBuf>>,
    size: usize,
    count: usize,
}

impl BufferPool {
    /// `count` buffers of `size` bytes each.
    pub fn new(count: usize, size: usize) -> Self {
        let (home, free) = channel();
        let count = count.max(1);
        for _ in 0..count {
            // Sending on a channel whose receiver we hold cannot fail.
            let _ = home.send(AlignedBuf::new(size));
        }
        Self {
            home,
            free: Mutex::new(free),
            size,
            count,
        }
    }

    /// Number of buffers: the most blocks that can be in flight at once.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The pool for streaming a source in `block`-byte reads: up to [`super::POOL_BUFFERS`] buffers,
    /// and never more than `budget` bytes of them (at least four buffers, so threads overlap).
    pub fn for_stream(block: usize, budget: usize) -> Self {
        let count = super::POOL_BUFFERS.min(budget / block.max(1)).max(4);
        Self::new(count, block)
    }

    /// Buffer size.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Waits for a free buffer. `None` cannot happen while the pool is alive, but is handled anyway.
    pub fn take(&self) -> Option<AlignedBuf> {
        self.free.lock().ok()?.recv().ok()
    }

    /// Wraps a filled buffer into a block that returns the buffer here when the last consumer drops it.
    pub fn block(&self, buf: AlignedBuf, offset: u64, len: usize) -> Block {
        Block {
            offset,
            len,
            buf: Some(buf),
            home: self.home.clone(),
            unreadable: Vec::new(),
            stored: None,
            already_written: false,
        }
    }
}

/// One contiguous piece of the acquired stream, shared read-only by every consumer.
pub struct Block {
    /// Stream offset of the first byte.
    pub offset: u64,
    /// Number of valid bytes.
    pub len: usize,
    buf: Option<AlignedBuf>,
    home: Sender<AlignedBuf>,
    /// Zero-filled unreadable ranges inside this block.
    pub unreadable: Vec<Extent>,
    /// The output bytes that represent this block when they were read back from the image (a zstd
    /// frame on resume or verify); `None` means the output bytes are the data itself or not known yet.
    pub stored: Option<Vec<u8>>,
    /// True when the block came from the image being resumed: hash it, but do not write it again.
    pub already_written: bool,
}

impl Block {
    /// The stream bytes.
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => b.slice(self.len),
            None => &[],
        }
    }

    /// Stream offset one past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len as u64
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // The pool may be gone at shutdown; then the buffer is simply freed.
            let _ = self.home.send(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn buffers_are_aligned_and_come_back_when_the_last_reader_drops() {
        let pool = BufferPool::new(1, 8192);
        let mut buf = pool.take().unwrap();
        assert_eq!(buf.slice_mut(10).as_ptr() as usize % ALIGN, 0);
        buf.slice_mut(3).copy_from_slice(b"abc");
        let block = Arc::new(pool.block(buf, 0, 3));
        let other = Arc::clone(&block);
        drop(block);
        assert!(
            pool.free.lock().unwrap().try_recv().is_err(),
            "buffer returned while still shared"
        );
        assert_eq!(other.data(), b"abc");
        drop(other);
        assert!(pool.take().is_some());
    }
}
