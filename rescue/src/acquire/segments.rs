//! The image as one logical byte stream stored in one file (`image.raw`) or in numbered segments
//! (`image.raw.001`, `.002`, … with `--split`): writing with periodic durability, truncating back to a
//! checkpoint, hashing each file as it is written, and reading the files back as one stream. A sparse
//! writer (memory captures) leaves pages of zeros as holes: the files read the same, and the zeros
//! cost no write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::hash::hex;

/// Errors from segment files.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("creating image file {path}")]
    CreateSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing image file {path}")]
    WriteSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("flushing image file {path} to stable storage")]
    SyncSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("truncating image file {path} back to the checkpoint")]
    TruncateSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "image file {path} holds {actual} bytes, fewer than the {expected} the checkpoint recorded"
    )]
    MissingCheckpointData {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
}

/// One output file with its size and SHA-256 (when computed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// How the logical image stream maps onto files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// File name without segment suffix: `image.raw` or `image.raw.zst`.
    pub base: String,
    /// Segment size in bytes, or `None` for one file.
    pub split: Option<u64>,
}

impl Layout {
    /// Name of segment `index` (0-based).
    pub fn name(&self, index: u64) -> String {
        match self.split {
            None => self.base.clone(),
            Some(_) => format!("{}.{:03}", self.base, index + 1),
        }
    }

    /// Segment index and offset inside it of a stream position.
    pub fn locate(&self, pos: u64) -> (u64, u64) {
        match self.split {
            None => (0, pos),
            Some(s) => (pos / s, pos % s),
        }
    }

    /// Names and sizes of the files that hold a stream of `total` bytes (at least one file).
    pub fn files_for(&self, total: u64) -> Vec<(String, u64)> {
        match self.split {
            None => vec![(self.base.clone(), total)],
            Some(s) => {
                let count = total.div_ceil(s).max(1);
                (0..count)
                    .map(|i| (self.name(i), total.saturating_sub(i * s).min(s)))
                    .collect()
            }
        }
    }
}

/// Hashes a stream as the sequence of files the layout cuts it into.
pub struct SegmentHasher {
    layout: Layout,
    hash: bool,
    pos: u64,
    current: sha2::Sha256,
    done: Vec<OutputFile>,
}

impl SegmentHasher {
    /// `hash == false` only counts sizes (the caller knows the digest another way).
    pub fn new(layout: Layout, hash: bool) -> Self {
        Self {
            layout,
            hash,
            pos: 0,
            current: sha2::Sha256::new(),
            done: Vec::new(),
        }
    }

    /// Feeds the next output bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = match self.layout.split {
                None => data.len(),
                Some(s) => {
                    let room = s - self.pos % s;
                    usize::try_from(room).map_or(data.len(), |r| r.min(data.len()))
                }
            };
            if self.hash {
                self.current.update(&data[..take]);
            }
            self.pos += take as u64;
            data = &data[take..];
            if let Some(s) = self.layout.split
                && self.pos.is_multiple_of(s)
            {
                self.close(s);
            }
        }
    }

    fn close(&mut self, size: u64) {
        let digest = std::mem::take(&mut self.current).finalize();
        let index = self.done.len() as u64;
        self.done.push(OutputFile {
            file: self.layout.name(index),
            size_bytes: size,
            sha256: if self.hash {
                hex(&digest)
            } else {
                String::new()
            },
        });
    }

    /// Bytes seen so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Closes the last file and lists all of them (always at least one).
    pub fn finish(mut self) -> Vec<OutputFile> {
        let closed: u64 = self.done.iter().map(|f| f.size_bytes).sum();
        if self.pos > closed || self.done.is_empty() {
            self.close(self.pos - closed);
        }
        self.done
    }
}

/// Writes the stream into the layout's files.
pub struct SegmentWriter {
    dir: PathBuf,
    layout: Layout,
    pos: u64,
    /// Bytes already on disk from an interrupted run; [`SegmentWriter::account`] walks over them.
    existing: u64,
    file: Option<(u64, File, PathBuf)>,
    /// Bytes of the open file the stream has reached (a sparse file may be shorter until synced).
    open_len: u64,
    /// Pages of zeros are skipped (holes) rather than written.
    sparse: bool,
    hasher: SegmentHasher,
}

/// The granularity of holes in a sparse image.
const HOLE_PAGE: usize = 4096;

/// True when `b` holds only zeros (a branch-free fold the compiler vectorises).
fn all_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(8);
    let tail = words.remainder().iter().fold(0u8, |a, x| a | x);
    let ored = words.fold(0u64, |a, w| {
        a | w.try_into().map_or(u64::MAX, u64::from_ne_bytes)
    });
    ored == 0 && tail == 0
}

/// Writes `data` at the file's position, seeking over whole runs of zero pages instead of writing
/// them (the file is extended to its full length at the next sync).
fn write_sparse(file: &mut File, data: &[u8]) -> io::Result<()> {
    let page_end = |at: usize| (at + HOLE_PAGE).min(data.len());
    let mut at = 0;
    while at < data.len() {
        let mut end = at;
        while end < data.len() && all_zero(&data[end..page_end(end)]) {
            end = page_end(end);
        }
        if end > at {
            file.seek(SeekFrom::Current((end - at) as i64))?;
            at = end;
            continue;
        }
        while end < data.len() && !all_zero(&data[end..page_end(end)]) {
            end = page_end(end);
        }
        file.write_all(&data[at..end])?;
        at = end;
    }
    Ok(())
}

impl SegmentWriter {
    /// A writer for a new image; `hash` selects per-file SHA-256.
    pub fn create(dir: &Path, layout: Layout, hash: bool) -> Self {
        let hasher = SegmentHasher::new(layout.clone(), hash);
        Self {
            dir: dir.to_owned(),
            layout,
            pos: 0,
            existing: 0,
            file: None,
            open_len: 0,
            sparse: false,
            hasher,
        }
    }

    /// Leaves pages of zeros as holes (see the module doc). Only for a new image or one truncated
    /// back to a checkpoint: a hole must fall where the file holds nothing yet.
    pub fn sparse(mut self, on: bool) -> Self {
        self.sparse = on;
        self
    }

    /// A writer that continues an image of which `existing` bytes are durable: later bytes and later
    /// segments are removed. The first `existing` bytes must then be fed through [`Self::account`].
    pub fn resume(
        dir: &Path,
        layout: Layout,
        existing: u64,
        hash: bool,
    ) -> Result<Self, SegmentError> {
        truncate_to(dir, &layout, existing)?;
        let mut w = Self::create(dir, layout, hash);
        w.existing = existing;
        Ok(w)
    }

    /// Feeds bytes that are already in the files (re-read from them) to the hashers.
    pub fn account(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.pos += data.len() as u64;
    }

    /// Appends bytes to the stream.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), SegmentError> {
        self.hasher.update(data);
        while !data.is_empty() {
            let (index, off) = self.layout.locate(self.pos);
            let take = match self.layout.split {
                None => data.len(),
                Some(s) => usize::try_from(s - off).map_or(data.len(), |r| r.min(data.len())),
            };
            let sparse = self.sparse;
            let (_, file, path) = self.open(index, off)?;
            let written = if sparse {
                write_sparse(file, &data[..take])
            } else {
                file.write_all(&data[..take])
            };
            written.map_err(|source| SegmentError::WriteSegment {
                path: path.clone(),
                source,
            })?;
            self.open_len = off + take as u64;
            self.pos += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    fn open(&mut self, index: u64, off: u64) -> Result<&mut (u64, File, PathBuf), SegmentError> {
        if self.file.as_ref().is_some_and(|(i, _, _)| *i != index) {
            // A finished segment is made durable before the next one starts.
            self.sync()?;
            self.file = None;
        }
        if self.file.is_none() {
            let path = self.dir.join(self.layout.name(index));
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|source| SegmentError::CreateSegment {
                    path: path.clone(),
                    source,
                })?;
            file.seek(SeekFrom::Start(off))
                .map_err(|source| SegmentError::CreateSegment {
                    path: path.clone(),
                    source,
                })?;
            self.file = Some((index, file, path));
            self.open_len = off;
        }
        self.file
            .as_mut()
            .ok_or_else(|| SegmentError::CreateSegment {
                path: self.dir.clone(),
                source: io::Error::other("segment not open"),
            })
    }

    /// Stream bytes written or accounted so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Flushes the open file to stable storage (a sparse file first extended over its trailing hole).
    pub fn sync(&mut self) -> Result<(), SegmentError> {
        if let Some((_, file, path)) = &self.file {
            if self.sparse {
                let extend = file.metadata().and_then(|m| {
                    if m.len() < self.open_len {
                        file.set_len(self.open_len)
                    } else {
                        Ok(())
                    }
                });
                extend.map_err(|source| SegmentError::WriteSegment {
                    path: path.clone(),
                    source,
                })?;
            }
            file.sync_data()
                .map_err(|source| SegmentError::SyncSegment {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Makes everything durable and lists the files (sizes, and SHA-256 when hashing was on).
    pub fn finish(mut self) -> Result<Vec<OutputFile>, SegmentError> {
        if self.pos == 0 && self.existing == 0 {
            // An empty stream still has one (empty) file.
            self.open(0, 0)?;
        }
        self.sync()?;
        Ok(self.hasher.finish())
    }
}

/// Removes everything after stream byte `keep`: later segments are deleted, the segment holding `keep`
/// is truncated. Fails when the files hold fewer bytes than `keep`.
pub fn truncate_to(dir: &Path, layout: &Layout, keep: u64) -> Result<(), SegmentError> {
    let files = layout.files_for(keep);
    for (name, len) in &files {
        let path = dir.join(name);
        let actual = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if actual < *len {
            return Err(SegmentError::MissingCheckpointData {
                path,
                expected: *len,
                actual,
            });
        }
        if actual > *len {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| SegmentError::TruncateSegment {
                    path: path.clone(),
                    source,
                })?;
            f.set_len(*len)
                .map_err(|source| SegmentError::TruncateSegment {
                    path: path.clone(),
                    source,
                })?;
            f.sync_all()
                .map_err(|source| SegmentError::TruncateSegment {
                    path: path.clone(),
                    source,
                })?;
        }
    }
    if layout.split.is_some() {
        let mut index = files.len() as u64;
        loop {
            let path = dir.join(layout.name(index));
            match fs::remove_file(&path) {
                Ok(()) => index += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(source) => return Err(SegmentError::TruncateSegment { path, source }),
            }
        }
    }
    Ok(())
}

/// Reads a list of files as one stream, in order.
pub struct SegmentReader {
    paths: Vec<PathBuf>,
    next: usize,
    current: Option<File>,
}

impl SegmentReader {
    /// Opens nothing yet; each file is opened when the stream reaches it.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            next: 0,
            current: None,
        }
    }
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.paths.get(self.next) else {
                    return Ok(0);
                };
                let file = File::open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                self.current = Some(file);
                self.next += 1;
            }
            if let Some(f) = self.current.as_mut() {
                let n = f.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
            }
            self.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquire::hash::sha256_hex;

    fn layout(split: Option<u64>) -> Layout {
        Layout {
            base: "image.raw".into(),
            split,
        }
    }

    #[test]
    fn split_files_concatenate_to_the_stream_and_hash_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut w = SegmentWriter::create(dir.path(), layout(Some(1000)), true);
        for chunk in data.chunks(300) {
            w.write(chunk).unwrap();
        }
        let out = w.finish().unwrap();
        let names: Vec<_> = out.iter().map(|o| o.file.as_str()).collect();
        assert_eq!(names, ["image.raw.001", "image.raw.002", "image.raw.003"]);
        assert_eq!(out[2].size_bytes, 500);
        assert_eq!(out[1].sha256, sha256_hex(&data[1000..2000]));
        let mut joined = Vec::new();
        SegmentReader::new(out.iter().map(|o| dir.path().join(&o.file)).collect())
            .read_to_end(&mut joined)
            .unwrap();
        assert_eq!(joined, data);
    }

    #[test]
    fn resume_truncates_and_rehashes_to_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 3) as u8).collect();
        let mut w = SegmentWriter::create(dir.path(), layout(Some(1000)), true);
        w.write(&data[..2200]).unwrap();
        w.sync().unwrap();
        drop(w);
        // The checkpoint said 1100 bytes were durable; everything after is discarded.
        let mut w = SegmentWriter::resume(dir.path(), layout(Some(1000)), 1100, true).unwrap();
        assert!(!dir.path().join("image.raw.003").exists());
        assert_eq!(
            fs::metadata(dir.path().join("image.raw.002"))
                .unwrap()
                .len(),
            100
        );
        w.account(&data[..1100]);
        w.write(&data[1100..]).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].sha256, sha256_hex(&data[..1000]));
        assert_eq!(out[2].sha256, sha256_hex(&data[2000..]));
        assert_eq!(
            fs::read(dir.path().join("image.raw.003")).unwrap(),
            &data[2000..]
        );
    }

    /// Memory is mostly pages of zeros: a sparse writer leaves them as holes, and every file still
    /// reads back as its part of the stream, at its full length, also when it ends in a hole.
    #[test]
    fn a_sparse_image_reads_as_the_stream_with_zero_pages_left_as_holes() {
        use std::os::unix::fs::MetadataExt;
        let page = HOLE_PAGE;
        // data page, 64 zero pages, a page with one byte set at its end, 40 zero pages (the end).
        let mut data = vec![0u8; 106 * page];
        data[..page].fill(0xa5);
        data[66 * page - 1] = 1;
        for split in [None, Some(48 * page as u64)] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = SegmentWriter::create(dir.path(), layout(split), true).sparse(true);
            // Writes that do not fall on page boundaries.
            for chunk in data.chunks(3 * page + 100) {
                w.write(chunk).unwrap();
            }
            let out = w.finish().unwrap();
            let mut joined = Vec::new();
            SegmentReader::new(out.iter().map(|o| dir.path().join(&o.file)).collect())
                .read_to_end(&mut joined)
                .unwrap();
            assert!(
                joined == data,
                "split {split:?}: the files differ from the stream"
            );
            let mut allocated = 0;
            for o in &out {
                let m = fs::metadata(dir.path().join(&o.file)).unwrap();
                assert_eq!(m.len(), o.size_bytes, "{}", o.file);
                allocated += m.blocks() * 512;
            }
            assert!(
                allocated < data.len() as u64 / 4,
                "split {split:?}: {allocated} bytes allocated for {} bytes of mostly zeros",
                data.len()
            );
            if split.is_none() {
                assert_eq!(out[0].sha256, sha256_hex(&data));
            }
        }
        assert!(all_zero(&[0; 13]) && !all_zero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn resume_refuses_when_files_are_shorter_than_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("image.raw"), [0u8; 10]).unwrap();
        let err = SegmentWriter::resume(dir.path(), layout(None), 20, true)
            .err()
            .unwrap();
        assert!(matches!(
            err,
            SegmentError::MissingCheckpointData {
                expected: 20,
                actual: 10,
                ..
            }
        ));
    }

    #[test]
    fn empty_stream_has_one_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = SegmentWriter::create(dir.path(), layout(None), true)
            .finish()
            .unwrap();
        assert_eq!(
            out,
            [OutputFile {
                file: "image.raw".into(),
                size_bytes: 0,
                sha256: sha256_hex(b"")
            }]
        );
    }
}
