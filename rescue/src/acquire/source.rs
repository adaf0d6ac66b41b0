//! The evidence source: a block device or a regular file, opened read-only and nothing else.
//!
//! [`Source`] has exactly one constructor, which opens with `O_RDONLY`, and exposes no way to write or to
//! reach the file descriptor: no code path can write to evidence through it. Reads go through the
//! [`ReadAt`] trait so the bad-sector logic in [`read_block`] can be tested with injected failures.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::buffer::{Block, BufferPool};

/// A byte range of the source, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// Appends an extent, merging it with the last one when they touch.
pub fn push_extent(list: &mut Vec<Extent>, e: Extent) {
    if e.length == 0 {
        return;
    }
    if let Some(last) = list.last_mut()
        && last.end() == e.offset
    {
        last.length += e.length;
        return;
    }
    list.push(e);
}

/// Errors while opening or sizing a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("opening source {path}")]
    OpenSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a directory; the source must be a block device or a regular file")]
    RejectDirectory { path: PathBuf },
    #[error("{path} is a character device; the source must be a block device or a regular file")]
    RejectCharDevice { path: PathBuf },
    #[error("{path} is neither a block device nor a regular file")]
    RejectSpecialFile { path: PathBuf },
    #[error("measuring the size of {path}")]
    MeasureSize {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Positioned reads, as from `pread(2)`. Implemented by [`Source`] and by test doubles.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; `Ok(0)` means end of data.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// What kind of node the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    BlockDevice,
    RegularFile,
}

/// A read-only evidence source.
pub struct Source {
    path: PathBuf,
    kind: SourceKind,
    /// Buffered descriptor: sizes, and reads when `O_DIRECT` is not possible.
    file: File,
    /// `O_DIRECT` descriptor for block devices, when the kernel accepts it.
    direct: Option<File>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Source {
    /// Opens `path` read-only (`O_RDONLY`); refuses directories, character devices, FIFOs and sockets.
    pub fn open(path: &Path) -> Result<Source, SourceError> {
        let meta = std::fs::metadata(path).map_err(|source| SourceError::OpenSource {
            path: path.to_owned(),
            source,
        })?;
        let ft = meta.file_type();
        let kind = if ft.is_block_device() {
            SourceKind::BlockDevice
        } else if ft.is_file() {
            SourceKind::RegularFile
        } else if ft.is_dir() {
            return Err(SourceError::RejectDirectory {
                path: path.to_owned(),
            });
        } else if ft.is_char_device() {
            return Err(SourceError::RejectCharDevice {
                path: path.to_owned(),
            });
        } else {
            return Err(SourceError::RejectSpecialFile {
                path: path.to_owned(),
            });
        };
        let file = Self::open_flags(path, 0).map_err(|source| SourceError::OpenSource {
            path: path.to_owned(),
            source,
        })?;
        // O_DIRECT skips the page cache copy on block devices; files (tmpfs, overlay) often refuse it.
        let direct = match kind {
            SourceKind::BlockDevice => Self::open_flags(path, libc::O_DIRECT).ok(),
            SourceKind::RegularFile => None,
        };
        Ok(Source {
            path: path.to_owned(),
            kind,
            file,
            direct,
        })
    }

    fn open_flags(path: &Path, extra: libc::c_int) -> io::Result<File> {
        // The only way this module opens anything: read-only.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | extra)
            .open(path)
    }

    /// The path given to [`Source::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block device or regular file.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The current size in bytes (`lseek(SEEK_END)` works for both files and block devices).
    pub fn size(&self) -> Result<u64, SourceError> {
        (&self.file)
            .seek(SeekFrom::End(0))
            .map_err(|source| SourceError::MeasureSize {
                path: self.path.clone(),
                source,
            })
    }
}

impl ReadAt for Source {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if let Some(direct) = &self.direct {
            // O_DIRECT needs sector-aligned address, offset and length; callers use aligned buffers and
            // sector-multiple lengths. EINVAL means this request was not aligned: use the page cache.
            match direct.read_at(buf, offset) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => return other,
            }
        }
        self.file.read_at(buf, offset)
    }
}

/// Errors that stop reading: the source changed under us. Media errors are not errors here; they
/// become unreadable extents.
#[derive(Debug, thiserror::Error)]
pub enum ReadBlockError {
    #[error(
        "the source ended at byte {at}, before its recorded size {expected}: its size changed during the run"
    )]
    ShrinkSource { at: u64, expected: u64 },
}

/// Reads a source front to back in blocks of the pool's buffer size, each through [`read_block`], the
/// unreadable ranges zero-filled and attached to the block. The one producer for every pass over a
/// source (acquisition to disk or object store, `--verify-source`).
pub struct BlockReader<'a> {
    src: &'a (dyn ReadAt + Sync),
    offset: u64,
    size: u64,
    sector: usize,
    retries: u32,
}

impl<'a> BlockReader<'a> {
    /// Reads `src` from byte `start` up to `size`, bisecting failures down to `sector` bytes.
    pub fn new(
        src: &'a (dyn ReadAt + Sync),
        start: u64,
        size: u64,
        sector: u32,
        retries: u32,
    ) -> Self {
        Self {
            src,
            offset: start,
            size,
            sector: sector as usize,
            retries,
        }
    }

    /// The next block, or `None` at the end (or when the pool is gone).
    pub fn next_block(&mut self, pool: &BufferPool) -> Result<Option<Block>, ReadBlockError> {
        if self.offset >= self.size {
            return Ok(None);
        }
        let block = pool.buffer_size();
        let len = usize::try_from(self.size - self.offset).map_or(block, |r| r.min(block));
        let Some(mut buf) = pool.take() else {
            return Ok(None);
        };
        let bad = read_block(
            self.src,
            buf.slice_mut(len),
            self.offset,
            self.sector,
            self.retries,
        )?;
        let mut b = pool.block(buf, self.offset, len);
        b.unreadable = bad;
        self.offset += len as u64;
        Ok(Some(b))
    }
}

/// Reads `buf.len()` bytes at `offset`. A failing range is retried and bisected down to single
/// `sector`-sized reads; a sector that still fails after `1 + retries` tries is zero-filled and
/// returned as unreadable. Interrupted reads are restarted.
pub fn read_block(
    src: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    sector: usize,
    retries: u32,
) -> Result<Vec<Extent>, ReadBlockError> {
    let mut bad = Vec::new();
    read_range(src, buf, offset, sector.max(1), retries, &mut bad)?;
    Ok(bad)
}

fn read_range(
    src: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    sector: usize,
    retries: u32,
    bad: &mut Vec<Extent>,
) -> Result<(), ReadBlockError> {
    match read_full(src, buf, offset) {
        Ok(()) => return Ok(()),
        Err(FullReadError::Eof(at)) => {
            return Err(ReadBlockError::ShrinkSource {
                at,
                expected: offset + buf.len() as u64,
            });
        }
        Err(FullReadError::Io) => {}
    }
    if buf.len() <= sector {
        for _ in 0..retries {
            match read_full(src, buf, offset) {
                Ok(()) => return Ok(()),
                Err(FullReadError::Eof(at)) => {
                    return Err(ReadBlockError::ShrinkSource {
                        at,
                        expected: offset + buf.len() as u64,
                    });
                }
                Err(FullReadError::Io) => {}
            }
        }
        buf.fill(0);
        push_extent(
            bad,
            Extent {
                offset,
                length: buf.len() as u64,
            },
        );
        return Ok(());
    }
    // Split at a sector boundary near the middle.
    let sectors = buf.len().div_ceil(sector);
    let mid = (sectors / 2).max(1) * sector;
    let (left, right) = buf.split_at_mut(mid);
    read_range(src, left, offset, sector, retries, bad)?;
    read_range(src, right, offset + mid as u64, sector, retries, bad)
}

enum FullReadError {
    Io,
    Eof(u64),
}

fn read_full(src: &dyn ReadAt, buf: &mut [u8], offset: u64) -> Result<(), FullReadError> {
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(FullReadError::Eof(offset + done as u64)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(FullReadError::Io),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory source whose chosen sectors always fail, and which can fail a few times transiently.
    pub(crate) struct FlakySource {
        pub data: Vec<u8>,
        pub sector: usize,
        pub bad_sectors: Vec<u64>,
        pub transient_failures: AtomicUsize,
    }

    impl ReadAt for FlakySource {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if offset >= self.data.len() as u64 {
                return Ok(0);
            }
            let end = (offset + buf.len() as u64).min(self.data.len() as u64);
            let first = offset / self.sector as u64;
            let last = (end - 1) / self.sector as u64;
            if self.bad_sectors.iter().any(|s| (first..=last).contains(s)) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            if self.transient_failures.load(Ordering::SeqCst) > 0 {
                self.transient_failures.fetch_sub(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = (end - offset) as usize;
            buf[..n].copy_from_slice(&self.data[offset as usize..end as usize]);
            Ok(n)
        }
    }

    pub(crate) fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7 + i / 512) % 253) as u8 + 1)
            .collect()
    }

    #[test]
    fn bad_sectors_are_zero_filled_and_listed() {
        let src = FlakySource {
            data: pattern(64 * 512),
            sector: 512,
            bad_sectors: vec![3, 4, 40],
            transient_failures: AtomicUsize::new(0),
        };
        let mut buf = vec![0xffu8; 64 * 512];
        let bad = read_block(&src, &mut buf, 0, 512, 2).unwrap();
        assert_eq!(
            bad,
            [
                Extent {
                    offset: 3 * 512,
                    length: 1024
                },
                Extent {
                    offset: 40 * 512,
                    length: 512
                }
            ]
        );
        assert!(buf[3 * 512..5 * 512].iter().all(|&b| b == 0));
        assert_eq!(&buf[..3 * 512], &src.data[..3 * 512]);
        assert_eq!(&buf[5 * 512..40 * 512], &src.data[5 * 512..40 * 512]);
        assert_eq!(&buf[41 * 512..], &src.data[41 * 512..]);
    }

    #[test]
    fn transient_errors_recover_through_bisection_and_retries() {
        let src = FlakySource {
            data: pattern(8 * 512),
            sector: 512,
            bad_sectors: vec![],
            transient_failures: AtomicUsize::new(3),
        };
        let mut buf = vec![0u8; 8 * 512];
        let bad = read_block(&src, &mut buf, 0, 512, 2).unwrap();
        assert!(bad.is_empty());
        assert_eq!(buf, src.data);
    }

    #[test]
    fn a_shrinking_source_is_an_error() {
        let src = FlakySource {
            data: pattern(4 * 512),
            sector: 512,
            bad_sectors: vec![],
            transient_failures: AtomicUsize::new(0),
        };
        let mut buf = vec![0u8; 8 * 512];
        let err = read_block(&src, &mut buf, 0, 512, 0).unwrap_err();
        assert!(
            matches!(err, ReadBlockError::ShrinkSource { at: 2048, .. }),
            "{err}"
        );
    }

    #[test]
    fn directories_and_char_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Source::open(dir.path()),
            Err(SourceError::RejectDirectory { .. })
        ));
        assert!(matches!(
            Source::open(Path::new("/dev/null")),
            Err(SourceError::RejectCharDevice { .. })
        ));
        assert!(matches!(
            Source::open(&dir.path().join("nope")),
            Err(SourceError::OpenSource { .. })
        ));
    }

    #[test]
    fn file_source_reads_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, pattern(3000)).unwrap();
        let src = Source::open(&p).unwrap();
        assert_eq!(src.size().unwrap(), 3000);
        let mut buf = vec![0u8; 1000];
        let bad = read_block(&src, &mut buf, 2000, 512, 0).unwrap();
        assert!(bad.is_empty());
        assert_eq!(buf, pattern(3000)[2000..]);
    }
}
