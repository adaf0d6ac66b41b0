//! Reads an image back as stream blocks: raw segments as they are, zstd frames one by one (with their
//! compressed bytes attached so output files can be re-hashed). Used to re-hash the durable part of an
//! interrupted acquisition and by `verify`.

use std::io::{self, Read};
use std::path::PathBuf;

use super::buffer::{Block, BufferPool};
use super::seekable::FrameEntry;
use super::segments::SegmentReader;

/// Errors while reading an image back.
#[derive(Debug, thiserror::Error)]
pub enum ReadImageError {
    #[error("reading the image at stream offset {offset}")]
    ReadImage {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("zstd frame {index} (stream offset {offset}) does not decompress")]
    DecompressFrame {
        index: usize,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "zstd frame {index} (stream offset {offset}) decompresses to {actual} bytes, not {expected}"
    )]
    MismatchedFrameSize {
        index: usize,
        offset: u64,
        expected: u64,
        actual: u64,
    },
    #[error(
        "zstd frame {index} (stream offset {offset}) records impossible sizes ({compressed} compressed, {decompressed} uncompressed)"
    )]
    ImplausibleFrame {
        index: usize,
        offset: u64,
        compressed: u64,
        decompressed: u64,
    },
}

impl ReadImageError {
    /// Stream offset where the problem is.
    pub fn offset(&self) -> u64 {
        match self {
            Self::ReadImage { offset, .. }
            | Self::DecompressFrame { offset, .. }
            | Self::MismatchedFrameSize { offset, .. }
            | Self::ImplausibleFrame { offset, .. } => *offset,
        }
    }
}

enum Shape {
    Raw {
        remaining: u64,
    },
    Zstd {
        frames: Vec<FrameEntry>,
        next: usize,
        decoder: Box<zstd::bulk::Decompressor<'static>>,
        trailer: u64,
    },
}

/// Yields the blocks of an image.
pub struct ImageReader {
    input: SegmentReader,
    shape: Shape,
    pos: u64,
    already_written: bool,
}

impl ImageReader {
    /// Raw image: `len` stream bytes.
    pub fn raw(paths: Vec<PathBuf>, len: u64, already_written: bool) -> Self {
        Self {
            input: SegmentReader::new(paths),
            shape: Shape::Raw { remaining: len },
            pos: 0,
            already_written,
        }
    }

    /// zstd image made of `frames`, followed by `trailer` bytes (the seek table) yielded as a last,
    /// empty block carrying them in `stored`.
    pub fn zstd(
        paths: Vec<PathBuf>,
        frames: Vec<FrameEntry>,
        trailer: u64,
        already_written: bool,
    ) -> io::Result<Self> {
        let decoder = Box::new(zstd::bulk::Decompressor::new()?);
        Ok(Self {
            input: SegmentReader::new(paths),
            shape: Shape::Zstd {
                frames,
                next: 0,
                decoder,
                trailer,
            },
            pos: 0,
            already_written,
        })
    }

    /// The next block, `None` at the end.
    pub fn next_block(&mut self, pool: &BufferPool) -> Result<Option<Block>, ReadImageError> {
        let offset = self.pos;
        let read_err = |source| ReadImageError::ReadImage { offset, source };
        let mut block = match &mut self.shape {
            Shape::Raw { remaining } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                let len = usize::try_from(*remaining)
                    .map_or(pool.buffer_size(), |r| r.min(pool.buffer_size()));
                let Some(mut buf) = pool.take() else {
                    return Ok(None);
                };
                self.input
                    .read_exact(buf.slice_mut(len))
                    .map_err(read_err)?;
                *remaining -= len as u64;
                pool.block(buf, offset, len)
            }
            Shape::Zstd {
                frames,
                next,
                decoder,
                trailer,
            } => {
                let index = *next;
                let Some(frame) = frames.get(index).copied() else {
                    if *trailer == 0 {
                        return Ok(None);
                    }
                    let mut table = vec![0u8; usize::try_from(*trailer).unwrap_or(0)];
                    self.input.read_exact(&mut table).map_err(read_err)?;
                    *trailer = 0;
                    let Some(buf) = pool.take() else {
                        return Ok(None);
                    };
                    let mut block = pool.block(buf, offset, 0);
                    block.stored = Some(table);
                    block.already_written = self.already_written;
                    return Ok(Some(block));
                };
                *next += 1;
                let expected = frame.decompressed as usize;
                // A frame never compresses to much more than its input; a larger size is damage, and
                // must not turn into a huge allocation.
                let bound = pool.buffer_size() + pool.buffer_size() / 128 + (1 << 16);
                if expected > pool.buffer_size() || frame.compressed as usize > bound {
                    return Err(ReadImageError::ImplausibleFrame {
                        index,
                        offset,
                        compressed: u64::from(frame.compressed),
                        decompressed: u64::from(frame.decompressed),
                    });
                }
                let mut compressed = vec![0u8; frame.compressed as usize];
                self.input.read_exact(&mut compressed).map_err(read_err)?;
                let Some(mut buf) = pool.take() else {
                    return Ok(None);
                };
                let n = decoder
                    .decompress_to_buffer(&compressed, buf.slice_mut(expected))
                    .map_err(|source| ReadImageError::DecompressFrame {
                        index,
                        offset,
                        source,
                    })?;
                if n != expected {
                    return Err(ReadImageError::MismatchedFrameSize {
                        index,
                        offset,
                        expected: expected as u64,
                        actual: n as u64,
                    });
                }
                let mut block = pool.block(buf, offset, n);
                block.stored = Some(compressed);
                block
            }
        };
        block.already_written = self.already_written;
        self.pos += block.len as u64;
        Ok(Some(block))
    }
}
