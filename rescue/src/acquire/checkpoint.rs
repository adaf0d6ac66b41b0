//! The durable resume point of an acquisition: `.resume.json` (replaced atomically) and, for zstd, the
//! `.resume.frames` sidecar listing every frame written (8 bytes each: compressed and uncompressed size).
//!
//! Invariant: everything the checkpoint describes (image bytes, frames) was fsynced before the
//! checkpoint itself was renamed into place.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::HashAlgorithm;
use super::manifest::{self, CaseInfo, ManifestError, ResumeRecord};
use super::seekable::FrameEntry;
use super::source::Extent;

/// Checkpoint file name.
pub const CHECKPOINT_FILE: &str = ".resume.json";
/// zstd frame list sidecar.
pub const FRAMES_FILE: &str = ".resume.frames";
/// Schema tag of the checkpoint.
pub const CHECKPOINT_SCHEMA: &str = "rescue.checkpoint/1";

/// Errors while reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {path}")]
    ReadCheckpoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is damaged")]
    ParseCheckpoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the checkpoint")]
    WriteCheckpoint(#[source] ManifestError),
    #[error("writing the zstd frame list {path}")]
    WriteFrames {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the zstd frame list {path} holds {found} frames, fewer than the {expected} the checkpoint recorded"
    )]
    MissingFrames {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
}

/// Image settings; fixed for the life of an acquisition, so a resume must use the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `raw` or `zstd-seekable`.
    pub format: String,
    pub split_bytes: Option<u64>,
    pub hashes: Vec<HashAlgorithm>,
    /// Hash window size with `--window`; `None` records no windows.
    pub window_bytes: Option<u64>,
    pub block_bytes: u64,
    pub zstd_level: Option<i32>,
    /// zstd frame size; `None` (and every record made before frames were cut smaller than the read
    /// block) means one frame per read block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_bytes: Option<u64>,
    pub retries: u32,
}

impl Settings {
    /// Bytes of stream in each zstd frame (the last frame of a block may be shorter).
    pub fn frame(&self) -> u64 {
        self.frame_bytes.unwrap_or(self.block_bytes)
    }

    /// How the pipeline compresses: `None` for a raw image.
    pub fn compress(&self) -> Option<super::pipeline::Compress> {
        self.zstd_level.map(|level| super::pipeline::Compress {
            level,
            workers: super::compressor_threads(),
            frame: usize::try_from(self.frame()).unwrap_or(usize::MAX),
        })
    }
}

/// `.resume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub schema: String,
    pub source_path: String,
    pub source_size: u64,
    pub source_serial: Option<String>,
    pub settings: Settings,
    pub case: CaseInfo,
    pub started_at: String,
    pub resumes: Vec<ResumeRecord>,
    pub read_only_before: BTreeMap<String, bool>,
    /// Source bytes `[0, source_offset)` are durably in the image.
    pub source_offset: u64,
    /// Length of the image stream (all segments) that holds them.
    pub output_bytes: u64,
    /// zstd frames in `.resume.frames` that belong to the image.
    pub frames: u64,
    pub unreadable: Vec<Extent>,
}

impl Checkpoint {
    /// Reads `DIR/.resume.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::ReadCheckpoint { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CheckpointError::ParseCheckpoint { path, source })
    }

    /// Atomically replaces `DIR/.resume.json`.
    pub fn store(&self, dir: &Path) -> Result<(), CheckpointError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        manifest::write_durable(dir, CHECKPOINT_FILE, &json)
            .map_err(CheckpointError::WriteCheckpoint)
    }
}

/// Appends frame entries to the sidecar.
pub struct FrameLog {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

impl FrameLog {
    /// Opens the sidecar, keeping its first `keep` entries and dropping the rest.
    pub fn open(dir: &Path, keep: u64) -> Result<FrameLog, CheckpointError> {
        let path = dir.join(FRAMES_FILE);
        let err = |source| CheckpointError::WriteFrames {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        file.set_len(keep * 8).map_err(err)?;
        Ok(FrameLog {
            path,
            file,
            pending: Vec::new(),
        })
    }

    /// Queues one entry; it reaches the file at the next [`FrameLog::sync`].
    pub fn push(&mut self, f: FrameEntry) {
        self.pending.extend_from_slice(&f.compressed.to_le_bytes());
        self.pending
            .extend_from_slice(&f.decompressed.to_le_bytes());
    }

    /// Writes queued entries and fsyncs.
    pub fn sync(&mut self) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::WriteFrames {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&self.pending).map_err(err)?;
        self.pending.clear();
        self.file.sync_data().map_err(err)
    }
}

/// Reads the first `count` entries of the sidecar.
pub fn read_frames(dir: &Path, count: u64) -> Result<Vec<FrameEntry>, CheckpointError> {
    let path = dir.join(FRAMES_FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|source| CheckpointError::ReadCheckpoint {
                    path: path.clone(),
                    source,
                })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && count == 0 => {}
        Err(source) => return Err(CheckpointError::ReadCheckpoint { path, source }),
    }
    let found = (bytes.len() / 8) as u64;
    if found < count {
        return Err(CheckpointError::MissingFrames {
            path,
            expected: count,
            found,
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .take(count as usize)
        .map(|e| FrameEntry {
            compressed: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            decompressed: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        })
        .collect())
}

/// Removes the checkpoint and sidecar after a complete acquisition.
pub fn remove(dir: &Path) {
    for name in [CHECKPOINT_FILE, FRAMES_FILE] {
        let _ = fs::remove_file(dir.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_log_keeps_only_checkpointed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FrameLog::open(dir.path(), 0).unwrap();
        for i in 1..=3 {
            log.push(FrameEntry {
                compressed: i,
                decompressed: i * 10,
            });
        }
        log.sync().unwrap();
        drop(log);
        let log = FrameLog::open(dir.path(), 2).unwrap();
        drop(log);
        let frames = read_frames(dir.path(), 2).unwrap();
        assert_eq!(
            frames[1],
            FrameEntry {
                compressed: 2,
                decompressed: 20
            }
        );
        assert!(matches!(
            read_frames(dir.path(), 3),
            Err(CheckpointError::MissingFrames { found: 2, .. })
        ));
        assert!(Checkpoint::load(dir.path()).unwrap().is_none());
    }
}

/// Fuzz targets (see `crate::fuzzing`): the resume record `.resume.json` and its frame sidecar, as a
/// crash or a broken destination may leave them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn records(b: &[u8]) {
        if let Ok(cp) = serde_json::from_slice::<Checkpoint>(b) {
            let back = serde_json::to_vec_pretty(&cp).unwrap_or_default();
            assert_eq!(
                serde_json::from_slice::<Checkpoint>(&back).ok().as_ref(),
                Some(&cp)
            );
        }
    }

    fn frames(b: &[u8]) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let (count, content) = b.split_first().unwrap_or((&0, b));
        let _ = fs::write(dir.path().join(FRAMES_FILE), content);
        match read_frames(dir.path(), u64::from(*count)) {
            Ok(f) => assert_eq!(f.len(), usize::from(*count)),
            Err(CheckpointError::MissingFrames { found, .. }) => {
                assert_eq!(found, content.len() as u64 / 8)
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            source_path: "/dev/sdb".into(),
            source_size: 1 << 30,
            source_serial: Some("WD-1234".into()),
            settings: Settings {
                format: "zstd-seekable".into(),
                split_bytes: Some(4 << 30),
                hashes: vec![HashAlgorithm::Sha256, HashAlgorithm::Md5],
                window_bytes: Some(1 << 20),
                block_bytes: 1 << 20,
                zstd_level: Some(3),
                frame_bytes: Some(64 << 10),
                retries: 2,
            },
            case: CaseInfo::default(),
            started_at: "2024-05-01T13:01:01Z".into(),
            resumes: Vec::new(),
            read_only_before: BTreeMap::from([("/dev/sdb".into(), false)]),
            source_offset: 1 << 24,
            output_bytes: 123_456,
            frames: 16,
            unreadable: vec![Extent {
                offset: 4096,
                length: 512,
            }],
        }
    }

    #[test]
    fn resume_record() {
        Target::new("resume-json")
            .seed(serde_json::to_vec_pretty(&sample()).unwrap_or_default())
            .dict(&[
                b"null",
                b"\"\"",
                b"[]",
                b"{}",
                b"18446744073709551615",
                b"-1",
                b"1e400",
            ])
            .run(records);
    }

    #[test]
    fn resume_frames() {
        let mut b = vec![3u8];
        for i in 0..3u32 {
            b.extend_from_slice(&(1000 + i).to_le_bytes());
            b.extend_from_slice(&(1u32 << 20).to_le_bytes());
        }
        Target::new("resume-frames")
            .seed(b)
            .max_len(4096)
            .run(frames);
    }
}
