//! The acquired stream, readable at any offset, on top of the [`Stored`] image files: raw bytes as
//! they are, or zstd seekable frames located through the seek table and decoded whole into a small LRU
//! cache. The seek table is checked whole when the image is opened (read a piece at a time), but only
//! where every group of [`GROUP`] entries starts is kept (16 bytes per group: 1 MiB for a 1 TB
//! acquisition in the default 64 KiB frames, where the whole table is 128 MiB); a lookup finds its
//! group by binary search and reads that group's entries from the table on demand, keeping the last
//! [`TABLE_GROUPS_CACHED`] groups. Reads from an object store go through the same frame cache in
//! aligned chunks, so a run of small reads is one ranged GET.
//!
//! `--verify-windows` ([`Image::verify_windows`]): before any byte of a hash window is served the
//! whole window is read and its SHA-256 compared with the manifest's; a window that differs (or does
//! not decode) answers every later read that touches it with an error, and is reported once through
//! the event callback. Windows that match are remembered, so each is hashed at most once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};

use super::stored::{Stored, StoredError};
use crate::acquire::hash::{Window, hex};
use crate::acquire::manifest::Manifest;
use crate::acquire::seekable::{self, FOOTER_LEN, FrameEntry};
use crate::acquire::{ImageFormat, MAX_BLOCK};

/// Decoded frames (or stored chunks) kept in memory.
pub const CACHE_ENTRIES: usize = 8;
/// Chunk size of reads from an object store for a raw image.
pub const REMOTE_CHUNK: u64 = 1 << 20;

/// Errors opening or reading the stream.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Stored(Box<StoredError>),
    #[error("the manifest's image format {format:?} is not one this version serves")]
    UnknownFormat { format: String },
    #[error(
        "the image files hold {stored} bytes, but the manifest records a {size}-byte raw stream"
    )]
    MismatchedRawSize { stored: u64, size: u64 },
    #[error("the zstd seek table at the end of the image is damaged")]
    ParseSeekTable(#[source] seekable::SeekTableError),
    #[error("the zstd seek table is larger than the image")]
    OversizedSeekTable,
    #[error(
        "the zstd seek table covers {covered} stream bytes in {compressed} stored bytes; the manifest records {size} and {stored}"
    )]
    MismatchedSeekTable {
        covered: u64,
        compressed: u64,
        size: u64,
        stored: u64,
    },
    #[error(
        "zstd frame {index} records impossible sizes ({compressed} compressed, {decompressed} uncompressed)"
    )]
    ImplausibleFrame {
        index: usize,
        compressed: u32,
        decompressed: u32,
    },
    #[error(
        "the zstd seek table no longer matches what was checked when the image was opened: no frame holds stream offset {offset}"
    )]
    LostFrame { offset: u64 },
    #[error("zstd frame {index} (stream offset {offset}) does not decompress")]
    DecompressFrame {
        index: usize,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "zstd frame {index} (stream offset {offset}) decompresses to {actual} bytes, not {expected}"
    )]
    MismatchedFrameSize {
        index: usize,
        offset: u64,
        expected: usize,
        actual: usize,
    },
    #[error(
        "--verify-windows: the manifest records no hash windows (acquire with --window to have them)"
    )]
    MissingWindows,
    #[error(
        "hash window {index} (stream offset {offset}, {length} bytes) does not match the manifest; it is not served"
    )]
    RejectWindow {
        index: usize,
        offset: u64,
        length: u64,
    },
}

impl From<StoredError> for ImageError {
    fn from(e: StoredError) -> Self {
        Self::Stored(Box::new(e))
    }
}

/// Something the server noticed while serving, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountEvent {
    /// A window hashed to the manifest's value.
    WindowVerified { index: usize, offset: u64 },
    /// A window that hashed to something else, or could not be read: its bytes are never served.
    WindowMismatch {
        index: usize,
        offset: u64,
        length: u64,
        expected: String,
        actual: String,
    },
    /// A read that failed (answered with EIO).
    ReadFailed {
        offset: u64,
        length: u64,
        error: String,
    },
}

/// Where one zstd frame is, in the stored bytes and in the stream.
#[derive(Debug, Clone, Copy)]
struct Frame {
    stored_at: u64,
    stored_len: u32,
    stream_at: u64,
    stream_len: u32,
}

/// Seek table entries per lookup group of the [`FrameIndex`] (2 KiB of table, 16 MiB of stream in
/// 64 KiB frames).
pub const GROUP: usize = 256;
/// Groups of seek table entries kept in memory (512 KiB with 8-byte entries).
pub const TABLE_GROUPS_CACHED: usize = 256;

/// The seek table, read on demand: where each group of [`GROUP`] entries starts, and the groups
/// used last.
struct FrameIndex {
    /// `(stored offset, stream offset)` of the frames of entries `0, GROUP, 2 * GROUP, …`.
    marks: Vec<(u64, u64)>,
    /// Where entry 0 is in the stored bytes, the size of an entry (8, or 12 with checksums) and how
    /// many there are.
    table_at: u64,
    entry: usize,
    count: usize,
    groups: Cache,
}

impl FrameIndex {
    /// The raw entries of group `g`, from the cache or read from the table.
    fn group(&self, stored: &Stored, g: usize) -> Result<Arc<Vec<u8>>, ImageError> {
        self.groups.get_or_load(g as u64, || {
            let first = g * GROUP;
            let n = GROUP.min(self.count.saturating_sub(first));
            let mut raw = vec![0u8; n * self.entry];
            stored.read_exact_at(&mut raw, self.table_at + (first * self.entry) as u64)?;
            Ok(raw)
        })
    }

    /// The frame holding stream offset `at` (inside the stream) and its number (its seek table entry).
    fn locate(&self, stored: &Stored, at: u64) -> Result<(usize, Frame), ImageError> {
        let mut g = self.marks.partition_point(|m| m.1 <= at).saturating_sub(1);
        while g < self.marks.len() {
            let raw = self.group(stored, g)?;
            let (mut stored_at, mut stream_at) = self.marks[g];
            for (i, bytes) in raw.chunks_exact(self.entry).enumerate() {
                let index = g * GROUP + i;
                let e = plausible(index, seekable::entry_at(bytes))?;
                let end = stream_at + u64::from(e.decompressed);
                if at < end {
                    return Ok((
                        index,
                        Frame {
                            stored_at,
                            stored_len: e.compressed,
                            stream_at,
                            stream_len: e.decompressed,
                        },
                    ));
                }
                stored_at += u64::from(e.compressed);
                stream_at = end;
            }
            // Only empty frames after the mark (or a table that changed since it was checked).
            g += 1;
        }
        Err(ImageError::LostFrame { offset: at })
    }
}

/// `e`, unless its sizes are impossible: a frame holds at most one read block, and a larger one is
/// damage, not an allocation to make.
fn plausible(index: usize, e: FrameEntry) -> Result<FrameEntry, ImageError> {
    let bound = MAX_BLOCK + MAX_BLOCK / 128 + (1 << 16);
    if e.decompressed as usize > MAX_BLOCK
        || e.compressed as usize > bound
        || (e.decompressed == 0) != (e.compressed == 0)
    {
        return Err(ImageError::ImplausibleFrame {
            index,
            compressed: e.compressed,
            decompressed: e.decompressed,
        });
    }
    Ok(e)
}

enum Shape {
    Raw,
    Zstd(FrameIndex),
}

/// A small LRU of immutable byte blocks keyed by index (frame, chunk or seek table group number). A block that
/// one thread is loading is waited for by the others instead of being loaded again: the kernel sends
/// several reads of the same frame at once during sequential reading.
struct Cache {
    state: Mutex<CacheState>,
    loaded: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct CacheState {
    /// Key, bytes, and the tick of the last use.
    entries: Vec<(u64, Arc<Vec<u8>>, u64)>,
    loading: Vec<u64>,
    tick: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(CacheState::default()),
            loaded: Condvar::new(),
            capacity,
        }
    }

    /// The block `key`, loaded with `load` unless it is cached or another thread is loading it.
    fn get_or_load(
        &self,
        key: u64,
        load: impl FnOnce() -> Result<Vec<u8>, ImageError>,
    ) -> Result<Arc<Vec<u8>>, ImageError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            st.tick += 1;
            let tick = st.tick;
            if let Some(entry) = st.entries.iter_mut().find(|(k, _, _)| *k == key) {
                entry.2 = tick;
                return Ok(Arc::clone(&entry.1));
            }
            if !st.loading.contains(&key) {
                break;
            }
            st = self.loaded.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.loading.push(key);
        drop(st);
        let result = load().map(Arc::new);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.loading.retain(|k| *k != key);
        if let Ok(data) = &result {
            if st.entries.len() >= self.capacity
                && let Some(oldest) = st
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (_, _, used))| *used)
                    .map(|(i, _)| i)
            {
                st.entries.swap_remove(oldest);
            }
            st.tick += 1;
            let tick = st.tick;
            st.entries.push((key, Arc::clone(data), tick));
        }
        drop(st);
        // A failed load is not cached: a waiting reader tries again and gets the error itself.
        self.loaded.notify_all();
        result
    }
}

thread_local! {
    /// One zstd decoding context per serving thread, reused for every frame.
    static DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(compressed: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    DECODER.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress_to_buffer(compressed, out),
            None => Err(std::io::Error::other("no zstd decoder")),
        }
    })
}

const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

struct WindowCheck {
    windows: Vec<Window>,
    state: Vec<AtomicU8>,
    /// One window is hashed at a time; a second reader of the same window waits for the verdict.
    running: Mutex<()>,
}

type EventSink = Box<dyn Fn(&MountEvent) + Send + Sync>;

/// The acquired stream of one acquisition.
pub struct Image {
    stored: Stored,
    shape: Shape,
    size: u64,
    cache: Cache,
    windows: Option<WindowCheck>,
    events: EventSink,
    manifest: Manifest,
}

impl Image {
    /// The stream described by `manifest`, stored in `stored`.
    pub fn new(manifest: Manifest, stored: Stored) -> Result<Self, ImageError> {
        let size = manifest.source.size_bytes;
        let shape = match ImageFormat::from_manifest_name(&manifest.image.format) {
            Some(ImageFormat::Raw) => {
                if stored.len() != size {
                    return Err(ImageError::MismatchedRawSize {
                        stored: stored.len(),
                        size,
                    });
                }
                Shape::Raw
            }
            Some(ImageFormat::Zstd) => Shape::Zstd(frames(&stored, size)?),
            None => {
                return Err(ImageError::UnknownFormat {
                    format: manifest.image.format.clone(),
                });
            }
        };
        Ok(Self {
            stored,
            shape,
            size,
            cache: Cache::new(CACHE_ENTRIES),
            windows: None,
            events: Box::new(|_| {}),
            manifest,
        })
    }

    /// Checks every window against the manifest before serving any of its bytes.
    pub fn verify_windows(mut self) -> Result<Self, ImageError> {
        if self.manifest.windows.is_empty() {
            return Err(ImageError::MissingWindows);
        }
        let windows = self.manifest.windows.clone();
        self.windows = Some(WindowCheck {
            state: windows.iter().map(|_| AtomicU8::new(UNCHECKED)).collect(),
            windows,
            running: Mutex::new(()),
        });
        Ok(self)
    }

    /// Where events go (the caller logs them).
    pub fn on_event(mut self, sink: impl Fn(&MountEvent) + Send + Sync + 'static) -> Self {
        self.events = Box::new(sink);
        self
    }

    /// Stream length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The manifest the image was opened with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads stream bytes at `offset` into `buf`; returns how many (fewer only at the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, ImageError> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = usize::try_from(self.size - offset).map_or(buf.len(), |r| r.min(buf.len()));
        let buf = &mut buf[..n];
        let result = self
            .check_windows(offset, n as u64)
            .and_then(|()| self.fill(buf, offset));
        if let Err(e) = &result {
            (self.events)(&MountEvent::ReadFailed {
                offset,
                length: n as u64,
                error: crate::error_chain(e),
            });
        }
        result.map(|()| n)
    }

    fn check_windows(&self, offset: u64, len: u64) -> Result<(), ImageError> {
        let Some(check) = &self.windows else {
            return Ok(());
        };
        let end = offset + len;
        let first = check
            .windows
            .partition_point(|w| w.offset.saturating_add(w.length) <= offset);
        for (i, w) in check.windows.iter().enumerate().skip(first) {
            if w.offset >= end {
                break;
            }
            self.check_window(check, i)?;
        }
        Ok(())
    }

    fn check_window(&self, check: &WindowCheck, index: usize) -> Result<(), ImageError> {
        let w = &check.windows[index];
        let reject = || ImageError::RejectWindow {
            index,
            offset: w.offset,
            length: w.length,
        };
        match check.state[index].load(Ordering::Acquire) {
            GOOD => return Ok(()),
            BAD => return Err(reject()),
            _ => {}
        }
        let _running = check.running.lock().unwrap_or_else(|p| p.into_inner());
        match check.state[index].load(Ordering::Acquire) {
            GOOD => return Ok(()),
            BAD => return Err(reject()),
            _ => {}
        }
        let actual = self.hash_range(w.offset, w.length);
        let ok = actual.as_ref().is_ok_and(|h| *h == w.sha256);
        check.state[index].store(if ok { GOOD } else { BAD }, Ordering::Release);
        if ok {
            (self.events)(&MountEvent::WindowVerified {
                index,
                offset: w.offset,
            });
            Ok(())
        } else {
            (self.events)(&MountEvent::WindowMismatch {
                index,
                offset: w.offset,
                length: w.length,
                expected: w.sha256.clone(),
                actual: match actual {
                    Ok(h) => h,
                    Err(e) => format!("unreadable: {}", crate::error_chain(&e)),
                },
            });
            Err(reject())
        }
    }

    fn hash_range(&self, offset: u64, length: u64) -> Result<String, ImageError> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = offset;
        let end = offset.saturating_add(length).min(self.size);
        while at < end {
            let n = usize::try_from(end - at).map_or(buf.len(), |r| r.min(buf.len()));
            self.fill(&mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hex(&h.finalize()))
    }

    /// Fills `buf` with stream bytes from `offset` (the range is inside the stream).
    fn fill(&self, buf: &mut [u8], offset: u64) -> Result<(), ImageError> {
        match &self.shape {
            Shape::Raw if !self.stored.is_remote() => Ok(self.stored.read_exact_at(buf, offset)?),
            Shape::Raw => {
                let mut done = 0;
                while done < buf.len() {
                    let at = offset + done as u64;
                    let index = at / REMOTE_CHUNK;
                    let chunk = self.chunk(index)?;
                    let inside = (at - index * REMOTE_CHUNK) as usize;
                    let take = (chunk.len() - inside).min(buf.len() - done);
                    buf[done..done + take].copy_from_slice(&chunk[inside..inside + take]);
                    done += take;
                }
                Ok(())
            }
            Shape::Zstd(frames) => {
                let mut done = 0;
                while done < buf.len() {
                    let at = offset + done as u64;
                    let (index, frame) = frames.locate(&self.stored, at)?;
                    let data = self.frame(frame, index)?;
                    let inside = (at - frame.stream_at) as usize;
                    let take = (data.len() - inside).min(buf.len() - done);
                    buf[done..done + take].copy_from_slice(&data[inside..inside + take]);
                    done += take;
                }
                Ok(())
            }
        }
    }

    fn chunk(&self, index: u64) -> Result<Arc<Vec<u8>>, ImageError> {
        self.cache.get_or_load(index, || {
            let start = index * REMOTE_CHUNK;
            let len = REMOTE_CHUNK.min(self.size - start) as usize;
            let mut data = vec![0u8; len];
            self.stored.read_exact_at(&mut data, start)?;
            Ok(data)
        })
    }

    fn frame(&self, f: Frame, index: usize) -> Result<Arc<Vec<u8>>, ImageError> {
        self.cache.get_or_load(index as u64, || {
            let mut compressed = vec![0u8; f.stored_len as usize];
            self.stored.read_exact_at(&mut compressed, f.stored_at)?;
            let expected = f.stream_len as usize;
            let mut out = vec![0u8; expected];
            let n = decompress(&compressed, &mut out).map_err(|source| {
                ImageError::DecompressFrame {
                    index,
                    offset: f.stream_at,
                    source,
                }
            })?;
            if n != expected {
                return Err(ImageError::MismatchedFrameSize {
                    index,
                    offset: f.stream_at,
                    expected,
                    actual: n,
                });
            }
            Ok(out)
        })
    }
}

/// Seek table bytes read at a time while indexing.
const TABLE_CHUNK: usize = 1 << 20;

/// Reads and checks the seek table at the end of the stored bytes, a piece at a time (only where each
/// group starts is kept).
fn frames(stored: &Stored, size: u64) -> Result<FrameIndex, ImageError> {
    let total = stored.len();
    let mut footer = [0u8; FOOTER_LEN];
    if total < FOOTER_LEN as u64 {
        return Err(ImageError::ParseSeekTable(
            seekable::SeekTableError::TruncatedTable,
        ));
    }
    stored.read_exact_at(&mut footer, total - FOOTER_LEN as u64)?;
    let (count, entry) = seekable::parse_footer(&footer).map_err(ImageError::ParseSeekTable)?;
    let table_len = seekable::table_len_from_footer(&footer).map_err(ImageError::ParseSeekTable)?;
    if table_len > total {
        return Err(ImageError::OversizedSeekTable);
    }
    let table_at = total - table_len;
    let mut header = [0u8; 8];
    stored.read_exact_at(&mut header, table_at)?;
    seekable::check_table_header(&header, count, entry).map_err(ImageError::ParseSeekTable)?;

    let count = count as usize;
    let mut marks = Vec::with_capacity(count.div_ceil(GROUP));
    let (mut stored_at, mut stream_at) = (0u64, 0u64);
    let per_chunk = TABLE_CHUNK / entry;
    let mut buf = vec![0u8; per_chunk * entry];
    let mut done = 0usize;
    while done < count {
        let n = per_chunk.min(count - done);
        let piece = &mut buf[..n * entry];
        stored.read_exact_at(piece, table_at + 8 + (done * entry) as u64)?;
        for (i, raw) in piece.chunks_exact(entry).enumerate() {
            let e = plausible(done + i, seekable::entry_at(raw))?;
            if (done + i).is_multiple_of(GROUP) {
                marks.push((stored_at, stream_at));
            }
            stored_at += u64::from(e.compressed);
            stream_at += u64::from(e.decompressed);
        }
        done += n;
    }
    if stream_at != size || stored_at + table_len != total {
        return Err(ImageError::MismatchedSeekTable {
            covered: stream_at,
            compressed: stored_at + table_len,
            size,
            stored: total,
        });
    }
    Ok(FrameIndex {
        marks,
        table_at: table_at + 8,
        entry,
        count,
        groups: Cache::new(TABLE_GROUPS_CACHED),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquire::hash::sha256_hex;
    use crate::acquire::seekable::encode_seek_table;
    use crate::mount::stored::{self, Location};

    /// Writes an acquisition directory the way `acquire` lays it out (manifest fields that matter
    /// here), with the stream cut into frames of `frame` bytes and windows of `window` bytes.
    fn acquisition(stream: &[u8], zstd: bool, frame: usize, window: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (name, bytes) = if zstd {
            let mut file = Vec::new();
            let mut entries = Vec::new();
            for part in stream.chunks(frame) {
                let c = zstd::bulk::compress(part, 1).unwrap();
                entries.push(FrameEntry {
                    compressed: c.len() as u32,
                    decompressed: part.len() as u32,
                });
                file.extend_from_slice(&c);
            }
            file.extend_from_slice(&encode_seek_table(&entries));
            ("image.raw.zst", file)
        } else {
            ("image.raw", stream.to_vec())
        };
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let windows: Vec<serde_json::Value> = stream
            .chunks(window as usize)
            .enumerate()
            .map(|(i, w)| {
                serde_json::json!({"offset": i as u64 * window, "length": w.len(), "sha256": sha256_hex(w)})
            })
            .collect();
        let manifest = serde_json::json!({
            "schema": "rescue.acquisition/1",
            "tool": {"name": "rescue", "version": "0", "commit": "x"},
            "case": {"case_id": null, "evidence_id": null, "examiner": null, "notes": null},
            "host": {"dmi_vendor": null, "dmi_product": null, "dmi_serial": null, "kernel": "k", "boot_mode": "bios"},
            "source": {"path": "/dev/x", "kind": "regular_file", "size_bytes": stream.len(),
                "logical_sector_size": 512, "physical_sector_size": 512, "model": null, "serial": null,
                "wwn": null, "transport": null},
            "image": {"format": if zstd { "zstd-seekable" } else { "raw" }, "split_bytes": null,
                "block_bytes": frame, "zstd_level": null, "window_bytes": window},
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "complete": true, "stop_reason": null, "acquired_bytes": stream.len(),
            "hashes": {"sha256": sha256_hex(stream)},
            "windows": windows, "unreadable": [],
            "outputs": [{"file": name, "size_bytes": bytes.len(), "sha256": sha256_hex(&bytes)}],
            "read_only": {"applied": false, "before": {}, "after": {}},
            "source_verification": null, "resumes": []
        });
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }

    fn open(dir: &std::path::Path) -> Image {
        let (m, s) = stored::open(&Location::Dir(dir.to_owned())).unwrap();
        Image::new(m, s).unwrap()
    }

    fn stream(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                if (i / 5000) % 2 == 0 {
                    0
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn zstd_reads_at_any_offset_equal_the_stream() {
        let s = stream(100_000);
        let dir = acquisition(&s, true, 8192, 16384);
        let img = open(dir.path());
        assert_eq!(img.size(), s.len() as u64);
        for (off, len) in [
            (0usize, 100_000usize),
            (8191, 2),
            (12_345, 40_000),
            (99_999, 1),
            (99_000, 4096),
        ] {
            let mut buf = vec![0u8; len];
            let n = img.read_at(&mut buf, off as u64).unwrap();
            let want = &s[off..(off + len).min(s.len())];
            assert_eq!(&buf[..n], want, "{off}+{len}");
        }
        let mut buf = [0u8; 10];
        assert_eq!(img.read_at(&mut buf, 100_000).unwrap(), 0);
    }

    #[test]
    fn reads_across_index_groups_equal_the_stream() {
        // 3.5 groups of 1000-byte frames and a short last one; reads straddle frame and group edges.
        let frame = 1000;
        let s = stream(GROUP * 3 * frame + GROUP / 2 * frame + 123);
        let dir = acquisition(&s, true, frame, 1 << 20);
        let img = open(dir.path());
        let Shape::Zstd(index) = &img.shape else {
            panic!("not zstd")
        };
        assert_eq!(index.count, s.len().div_ceil(frame));
        assert_eq!(index.marks.len(), 4);
        for at in [
            0,
            frame - 1,
            GROUP * frame - 1,
            GROUP * frame,
            2 * GROUP * frame - 7,
            3 * GROUP * frame + 5,
            s.len() - 200,
        ] {
            let mut buf = vec![0u8; 2500];
            let n = img.read_at(&mut buf, at as u64).unwrap();
            assert_eq!(&buf[..n], &s[at..(at + 2500).min(s.len())], "{at}");
        }
    }

    #[test]
    fn the_seek_table_is_held_a_few_groups_at_a_time() {
        // More groups than the cache holds, read from the back: every read is right, and no more than
        // TABLE_GROUPS_CACHED groups of entries are ever in memory.
        let frame = 16;
        let groups = TABLE_GROUPS_CACHED + 9;
        let s = stream(GROUP * groups * frame);
        let dir = acquisition(&s, true, frame, 1 << 20);
        let img = open(dir.path());
        let Shape::Zstd(index) = &img.shape else {
            panic!("not zstd")
        };
        assert_eq!(index.marks.len(), groups);
        let held = || index.groups.state.lock().unwrap().entries.len();
        assert_eq!(held(), 0, "nothing but the group marks is kept at open");
        for g in (0..groups).rev() {
            let at = (g * GROUP + g % GROUP) * frame + 3;
            let mut buf = [0u8; 40];
            let n = img.read_at(&mut buf, at as u64).unwrap();
            assert_eq!(&buf[..n], &s[at..at + 40], "group {g}");
            assert!(held() <= TABLE_GROUPS_CACHED);
        }
        assert_eq!(held(), TABLE_GROUPS_CACHED);
    }

    #[test]
    fn a_seek_table_damaged_after_opening_is_an_error_not_a_panic() {
        let s = stream(20_000);
        let dir = acquisition(&s, true, 1000, 1 << 20);
        let img = open(dir.path());
        // Entry 7's uncompressed size grows past any block once the table was checked.
        let path = dir.path().join("image.raw.zst");
        let mut bytes = std::fs::read(&path).unwrap();
        let entry7 = bytes.len() - FOOTER_LEN - (20 - 7) * 8;
        bytes[entry7 + 4..entry7 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let mut buf = [0u8; 10];
        assert!(matches!(
            img.read_at(&mut buf, 7500),
            Err(ImageError::ImplausibleFrame { index: 7, .. })
        ));
    }

    #[test]
    fn a_damaged_frame_fails_only_its_window_when_windows_are_verified() {
        let s = stream(64 * 1024);
        let dir = acquisition(&s, true, 4096, 8192);
        // Flip a byte in the middle of the compressed bytes of frame 5 (stream 20480..24576, window 2).
        let path = dir.path().join("image.raw.zst");
        let mut bytes = std::fs::read(&path).unwrap();
        let st = stored::open(&Location::Dir(dir.path().to_owned()))
            .unwrap()
            .1;
        let frames = frames(&st, s.len() as u64).unwrap();
        let (five, f) = frames.locate(&st, 20480).unwrap();
        assert_eq!((five, f.stream_at), (5, 20480));
        bytes[(f.stored_at + u64::from(f.stored_len) / 2) as usize] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let img = open(dir.path())
            .verify_windows()
            .unwrap()
            .on_event(move |e| seen.lock().unwrap().push(e.clone()));
        let mut buf = vec![0u8; 4096];
        // Window 2 is [16384, 24576): the clean frame 4 inside it is refused too.
        for off in [16384u64, 20480, 24575] {
            assert!(
                matches!(
                    img.read_at(&mut buf, off),
                    Err(ImageError::RejectWindow { index: 2, .. })
                ),
                "{off}"
            );
        }
        for off in [0u64, 8192, 24576, 60000] {
            let n = img.read_at(&mut buf, off).unwrap();
            assert_eq!(&buf[..n], &s[off as usize..off as usize + n]);
        }
        let events = events.lock().unwrap();
        let mismatches: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, MountEvent::WindowMismatch { .. }))
            .collect();
        assert_eq!(mismatches.len(), 1, "{events:?}");
        assert!(matches!(
            mismatches[0],
            MountEvent::WindowMismatch { index: 2, .. }
        ));
    }

    #[test]
    fn raw_bytes_changed_after_acquisition_are_refused_by_window() {
        let s = stream(40_000);
        let dir = acquisition(&s, false, 4096, 10_000);
        let path = dir.path().join("image.raw");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[25_000] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let plain = open(dir.path());
        let mut buf = vec![0u8; 100];
        // Without verification the changed byte is served as stored.
        plain.read_at(&mut buf, 24_950).unwrap();
        assert_eq!(buf[50], s[25_000] ^ 1);
        let checked = open(dir.path()).verify_windows().unwrap();
        assert!(matches!(
            checked.read_at(&mut buf, 24_950),
            Err(ImageError::RejectWindow { index: 2, .. })
        ));
        checked.read_at(&mut buf, 30_000).unwrap();
        assert_eq!(&buf[..], &s[30_000..30_100]);
    }

    #[test]
    fn damaged_seek_tables_and_sizes_are_refused() {
        let s = stream(30_000);
        let dir = acquisition(&s, true, 4096, 10_000);
        let path = dir.path().join("image.raw.zst");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        // The last frame's recorded uncompressed size, inside the table: 9-byte footer, then 8 per entry.
        bytes[n - FOOTER_LEN - 4] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let (m, st) = stored::open(&Location::Dir(dir.path().to_owned())).unwrap();
        assert!(matches!(
            Image::new(m, st),
            Err(ImageError::MismatchedSeekTable { .. })
        ));
        bytes.push(0);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            stored::open(&Location::Dir(dir.path().to_owned())),
            Err(StoredError::MismatchedImageSize { .. })
        ));
    }
}
