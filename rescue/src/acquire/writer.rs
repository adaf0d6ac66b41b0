//! The image writer: appends output bytes (raw blocks or zstd frames) to the segment files, keeps the
//! zstd frame list and the unreadable extents, and at a steady cadence makes everything durable and
//! records a checkpoint so an interrupted run can resume from there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::buffer::Block;
use super::checkpoint::{Checkpoint, CheckpointError, FrameLog};
use super::seekable::{self, FrameEntry};
use super::segments::{OutputFile, SegmentError, SegmentWriter};
use super::source::{Extent, push_extent};

/// Errors while writing the image.
#[derive(Debug, thiserror::Error)]
pub enum WriteImageError {
    #[error(transparent)]
    WriteSegment(#[from] SegmentError),
    #[error(transparent)]
    WriteCheckpoint(#[from] CheckpointError),
}

impl WriteImageError {
    /// True when the destination ran out of space.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            Self::WriteSegment(SegmentError::WriteSegment { source, .. })
            | Self::WriteSegment(SegmentError::SyncSegment { source, .. })
            | Self::WriteSegment(SegmentError::CreateSegment { source, .. }) => Some(source),
            Self::WriteCheckpoint(CheckpointError::WriteFrames { source, .. }) => Some(source),
            _ => None,
        };
        io.and_then(|e| e.raw_os_error())
            .is_some_and(|c| c == libc::ENOSPC || c == libc::EDQUOT)
    }
}

/// When to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub bytes: u64,
    pub interval: Duration,
}

/// State of the image being written.
pub struct ImageWriter {
    dir: PathBuf,
    segments: SegmentWriter,
    frame_log: Option<FrameLog>,
    frames: Vec<FrameEntry>,
    unreadable: Vec<Extent>,
    stream_pos: u64,
    checkpoint: Checkpoint,
    cadence: Cadence,
    last_at: Instant,
    last_pos: u64,
    durable: Arc<AtomicU64>,
}

impl ImageWriter {
    /// A writer continuing from `checkpoint` (all zero for a new image). Resumed bytes and frames are
    /// fed again through [`ImageWriter::accept`] as `already_written` blocks.
    pub fn new(
        dir: &Path,
        segments: SegmentWriter,
        zstd: bool,
        checkpoint: Checkpoint,
        cadence: Cadence,
        durable: Arc<AtomicU64>,
    ) -> Result<Self, WriteImageError> {
        let frame_log = if zstd {
            Some(FrameLog::open(dir, checkpoint.frames)?)
        } else {
            None
        };
        durable.store(checkpoint.source_offset, Ordering::Relaxed);
        Ok(Self {
            dir: dir.to_owned(),
            segments,
            frame_log,
            frames: Vec::new(),
            unreadable: checkpoint.unreadable.clone(),
            stream_pos: 0,
            last_pos: checkpoint.source_offset,
            checkpoint,
            cadence,
            last_at: Instant::now(),
            durable,
        })
    }

    /// Takes one block and its output bytes (the block itself for raw, its frames for zstd, listed in
    /// `frames`).
    pub fn accept(
        &mut self,
        block: &Block,
        out: &[u8],
        frames: &[FrameEntry],
    ) -> Result<(), WriteImageError> {
        if block.already_written {
            self.segments.account(out);
        } else {
            self.segments.write(out)?;
        }
        if let Some(log) = &mut self.frame_log {
            for &entry in frames {
                if !block.already_written {
                    log.push(entry);
                }
                self.frames.push(entry);
            }
        }
        if !block.already_written {
            for e in &block.unreadable {
                push_extent(&mut self.unreadable, *e);
            }
        }
        self.stream_pos = block.end();
        if !block.already_written
            && (self.stream_pos - self.last_pos >= self.cadence.bytes
                || self.last_at.elapsed() >= self.cadence.interval)
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the image durable up to the last accepted block and records that point.
    pub fn checkpoint(&mut self) -> Result<(), WriteImageError> {
        if self.stream_pos < self.checkpoint.source_offset {
            // Still walking over resumed data: the stored checkpoint is already further along.
            return Ok(());
        }
        self.segments.sync()?;
        if let Some(log) = &mut self.frame_log {
            log.sync()?;
        }
        self.checkpoint.source_offset = self.stream_pos;
        self.checkpoint.output_bytes = self.segments.position();
        self.checkpoint.frames = self.frames.len() as u64;
        self.checkpoint.unreadable = self.unreadable.clone();
        self.checkpoint.store(&self.dir)?;
        self.last_pos = self.stream_pos;
        self.last_at = Instant::now();
        self.durable.store(self.stream_pos, Ordering::Relaxed);
        Ok(())
    }

    /// Source bytes accepted so far.
    pub fn position(&self) -> u64 {
        self.stream_pos
    }

    /// The checkpoint as last stored.
    pub fn last_checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Unreadable extents so far.
    pub fn unreadable(&self) -> &[Extent] {
        &self.unreadable
    }

    /// Appends the seek table (zstd), makes everything durable and lists the output files.
    pub fn finish(mut self) -> Result<(Vec<OutputFile>, Vec<Extent>), WriteImageError> {
        if self.frame_log.is_some() {
            let table = seekable::encode_seek_table(&self.frames);
            self.segments.write(&table)?;
        }
        let files = self.segments.finish()?;
        Ok((files, self.unreadable))
    }
}
