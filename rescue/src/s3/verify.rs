//! `verify s3://…`: downloads `manifest.json`, re-downloads every image object (`image.raw`,
//! `image.raw.zst`, or their `--split` segments) part by part with `Range` requests, checks every part's
//! and every object's SHA-256 against the manifest, turns the objects back into the acquired stream
//! (joining segments; decompressing zstd frames found through the seek table, frame by frame),
//! recomputes the stream hashes and, window by window, the hash windows, and checks every other object
//! against `SHA256SUMS`. Memory stays at about one part plus one frame. A mismatch is a report with
//! `ok == false`, not an error.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::client::{Client, S3Error, Store};
use super::upload::{MIN_PART, S3Url};
use crate::acquire::buffer::{Block, BufferPool};
use crate::acquire::hash::{HashAlgorithm, hex, sha256_hex};
use crate::acquire::manifest::{MANIFEST_FILE, MAP_FILE, Manifest, ManifestError, SUMS_FILE};
use crate::acquire::pipeline::{self, Control, Ending, Output, StreamError};
use crate::acquire::seekable::{self, FOOTER_LEN, FrameEntry};
use crate::acquire::segments::OutputFile;
use crate::acquire::verify::{BadWindow, Check};
use crate::acquire::{DEFAULT_BLOCK, ImageFormat, MAX_BLOCK, Phase, Progress, STREAM_BUDGET};

/// Errors that prevent verification.
#[derive(Debug, thiserror::Error)]
pub enum RemoteVerifyError {
    #[error(transparent)]
    Store(#[from] S3Error),
    #[error("{url} holds no manifest.json (give the full prefix, as printed by acquire)")]
    MissingManifest { url: String },
    #[error("the manifest at {url} is invalid")]
    ParseManifest {
        url: String,
        #[source]
        source: ManifestError,
    },
    #[error("the acquisition at {url} is incomplete; finish it with `rescue acquire --resume`")]
    RejectIncomplete { url: String },
    #[error("verification was interrupted")]
    Interrupted,
    #[error("starting the zstd decoder")]
    StartDecoder(#[source] std::io::Error),
    #[error("hashing the image stream")]
    ReadStream(#[source] StreamError),
}

/// Outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct RemoteVerifyReport {
    pub url: String,
    pub ok: bool,
    /// Stream bytes recomputed.
    pub bytes: u64,
    pub parts: usize,
    pub checks: Vec<Check>,
    /// The first part whose bytes differ from the manifest's SHA-256, and its object.
    pub first_bad_part: Option<u32>,
    pub first_bad_object: Option<String>,
    /// The first hash window that differs (when windows were recorded).
    pub first_bad_window: Option<BadWindow>,
}

impl RemoteVerifyReport {
    fn check(&mut self, what: impl Into<String>, expected: &str, actual: &str) -> bool {
        Check::record(&mut self.checks, &mut self.ok, what, expected, actual)
    }
}

/// A zstd frame that did not decompress to its recorded size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFrame {
    pub index: usize,
    /// Stream offset of its first byte.
    pub offset: u64,
    pub reason: String,
}

/// Turns the bytes of a zstd seekable image, fed in any chunks, back into the stream, frame by frame.
/// A damaged frame comes out as zeros of its recorded size (so later windows stay aligned and only the
/// damaged one differs) and is listed in [`FrameDecoder::damaged`]. The seek table after the last
/// frame is ignored (the object's SHA-256 covers it).
pub struct FrameDecoder {
    frames: Vec<FrameEntry>,
    next: usize,
    pending: Vec<u8>,
    /// Where the next frame starts in `pending`.
    start: usize,
    stream_pos: u64,
    out: Vec<u8>,
    decoder: zstd::bulk::Decompressor<'static>,
    pub damaged: Vec<DamagedFrame>,
}

impl FrameDecoder {
    pub fn new(frames: Vec<FrameEntry>) -> std::io::Result<Self> {
        Ok(Self {
            frames,
            next: 0,
            pending: Vec::new(),
            start: 0,
            stream_pos: 0,
            out: Vec::new(),
            decoder: zstd::bulk::Decompressor::new()?,
            damaged: Vec::new(),
        })
    }

    /// Appends image bytes; [`FrameDecoder::next_frame`] decodes what they complete.
    pub fn push(&mut self, data: &[u8]) {
        if self.next < self.frames.len() {
            self.pending.extend_from_slice(data);
        }
    }

    /// The stream bytes of the next frame whose image bytes are all pushed (zeros of its recorded size
    /// when it is damaged), or `None` until more are pushed. Memory stays at the bytes pushed and not
    /// yet decoded plus one frame.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        let Some(frame) = self.frames.get(self.next).copied() else {
            // Only the seek table is left.
            self.pending.clear();
            self.start = 0;
            return None;
        };
        let c = frame.compressed as usize;
        let d = frame.decompressed as usize;
        if self.pending.len() - self.start < c {
            self.pending.drain(..self.start);
            self.start = 0;
            return None;
        }
        self.out.clear();
        self.out.resize(d, 0);
        let result = self
            .decoder
            .decompress_to_buffer(&self.pending[self.start..self.start + c], &mut self.out[..]);
        let reason = match result {
            Ok(n) if n == d => None,
            Ok(n) => Some(format!("decompresses to {n} bytes")),
            Err(e) => Some(format!("does not decompress ({e})")),
        };
        if let Some(reason) = reason {
            self.damaged.push(DamagedFrame {
                index: self.next,
                offset: self.stream_pos,
                reason,
            });
            self.out.clear();
            self.out.resize(d, 0);
        }
        self.stream_pos += d as u64;
        self.next += 1;
        self.start += c;
        Some(&self.out[..])
    }

    /// Feeds image bytes; `emit` receives each frame's stream bytes in order.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        self.push(data);
        while let Some(frame) = self.next_frame() {
            emit(frame);
        }
    }
}

/// The last `n` bytes of the concatenation of `objects`, or `None` when they hold fewer.
fn get_tail(
    client: &mut Client,
    url: &S3Url,
    objects: &[OutputFile],
    n: u64,
) -> Result<Option<Vec<u8>>, S3Error> {
    let Ok(len) = usize::try_from(n) else {
        return Ok(None);
    };
    let mut out = vec![0u8; len];
    let mut need = n;
    for o in objects.iter().rev() {
        if need == 0 {
            break;
        }
        let take = need.min(o.size_bytes);
        if take > 0 {
            let d = client.get_object(
                &url.key(&o.file),
                Some((o.size_bytes - take, o.size_bytes - 1)),
            )?;
            if d.len() as u64 != take {
                return Ok(None);
            }
            out[(need - take) as usize..need as usize].copy_from_slice(&d);
        }
        need -= take;
    }
    Ok((need == 0).then_some(out))
}

/// The image objects read back part by part with ranged GETs, each part's and each object's SHA-256
/// checked as it passes, turned back into the acquired stream (zstd frames decoded one at a time) and
/// cut into pipeline blocks. Memory stays at about one part plus the read pool.
struct RemoteParts<'a> {
    client: &'a mut Client,
    url: &'a S3Url,
    manifest: &'a Manifest,
    objects: &'a [OutputFile],
    report: &'a mut RemoteVerifyReport,
    decoder: Option<&'a mut FrameDecoder>,
    object_is_stream: bool,
    /// The next object to open.
    object: usize,
    /// Parts of the open object still to fetch (number, offset, size, recorded SHA-256), last first.
    queue: Vec<(u32, u64, u64, Option<String>)>,
    object_hash: Option<Sha256>,
    /// Raw stream bytes of the last part fetched, `taken` of them handed out.
    pending: Vec<u8>,
    taken: usize,
    stream_pos: u64,
    done_out: u64,
    /// A store error, returned as such once the pipeline stopped.
    error: Option<S3Error>,
}

impl RemoteParts<'_> {
    /// Opens the next object: its parts as the manifest records them, or 8 MiB ranges.
    fn open_object(&mut self) -> bool {
        let Some(o) = self.objects.get(self.object) else {
            return false;
        };
        self.object += 1;
        let recorded: Vec<(u32, u64, u64, Option<String>)> = self
            .manifest
            .remote
            .iter()
            .flat_map(|r| r.parts.iter())
            .filter(|p| p.file == o.file)
            .map(|p| (p.number, p.offset, p.size_bytes, Some(p.sha256.clone())))
            .collect();
        let mut parts = if recorded.is_empty() {
            (0..o.size_bytes.div_ceil(MIN_PART).max(1))
                .map(|i| {
                    let at = i * MIN_PART;
                    (i as u32 + 1, at, MIN_PART.min(o.size_bytes - at), None)
                })
                .collect()
        } else {
            recorded
        };
        parts.reverse();
        self.queue = parts;
        self.object_hash = (!self.object_is_stream).then(Sha256::new);
        true
    }

    /// Checks the open object's SHA-256 once its parts are all fetched.
    fn close_object(&mut self) {
        if let (Some(h), Some(o)) = (
            self.object_hash.take(),
            self.object.checked_sub(1).and_then(|i| self.objects.get(i)),
        ) {
            self.report.check(
                format!("sha256 of {}", o.file),
                &o.sha256,
                &hex(&h.finalize()),
            );
        }
    }

    /// Fetches the next part (opening objects as needed); `Ok(false)` at the end of the last object.
    fn fetch(&mut self) -> Result<bool, S3Error> {
        loop {
            let Some((number, offset, len, expected)) = self.queue.pop() else {
                self.close_object();
                if !self.open_object() {
                    return Ok(false);
                }
                continue;
            };
            let o = &self.objects[self.object - 1];
            let data = if len == 0 {
                Vec::new()
            } else {
                // The range comes from the manifest, which may have been edited.
                let Some(last) = offset.checked_add(len).and_then(|end| end.checked_sub(1)) else {
                    self.report.check(
                        format!("part {number} of {} lies within the object", o.file),
                        "an offset and size that fit in 64 bits",
                        &format!("offset {offset}, size {len}"),
                    );
                    if self.report.first_bad_part.is_none() {
                        self.report.first_bad_part = Some(number);
                        self.report.first_bad_object = Some(o.file.clone());
                    }
                    continue;
                };
                self.client
                    .get_object(&self.url.key(&o.file), Some((offset, last)))?
            };
            let actual = hex(&Sha256::digest(&data));
            if let Some(e) = &expected
                && !self
                    .report
                    .check(format!("part {number} of {} sha256", o.file), e, &actual)
                && self.report.first_bad_part.is_none()
            {
                self.report.first_bad_part = Some(number);
                self.report.first_bad_object = Some(o.file.clone());
            }
            if let Some(h) = self.object_hash.as_mut() {
                h.update(&data);
            }
            self.report.parts += 1;
            self.done_out += len;
            match self.decoder.as_mut() {
                Some(d) => d.push(&data),
                None => {
                    self.pending = data;
                    self.taken = 0;
                }
            }
            return Ok(true);
        }
    }

    /// The next block of the stream: one frame (zstd) or up to a pool buffer of raw bytes.
    fn next_block(&mut self, pool: &BufferPool) -> Result<Option<Block>, StreamError> {
        loop {
            let frame = match self.decoder.as_mut() {
                Some(d) => d.next_frame(),
                None => (self.taken < self.pending.len()).then(|| {
                    let n = (self.pending.len() - self.taken).min(pool.buffer_size());
                    let s = &self.pending[self.taken..self.taken + n];
                    self.taken += n;
                    s
                }),
            };
            if let Some(bytes) = frame {
                let n = bytes.len();
                if n > pool.buffer_size() {
                    return Err(StreamError::CompressFrame(std::io::Error::other(format!(
                        "a frame of {n} bytes is larger than the {}-byte read block",
                        pool.buffer_size()
                    ))));
                }
                let Some(mut buf) = pool.take() else {
                    return Ok(None);
                };
                buf.slice_mut(n).copy_from_slice(bytes);
                let block = pool.block(buf, self.stream_pos, n);
                self.stream_pos += n as u64;
                return Ok(Some(block));
            }
            match self.fetch() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.error = Some(e);
                    return Err(StreamError::WriteSink(Box::new(std::io::Error::other(
                        "fetching a part of the image",
                    ))));
                }
            }
        }
    }
}

/// Verifies the acquisition at `url`.
pub fn verify(
    store: &Store,
    url: &S3Url,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RemoteVerifyReport, RemoteVerifyError> {
    let mut client = store.client();
    let manifest_key = url.key(MANIFEST_FILE);
    let Some(_) = client.head_object(&manifest_key)? else {
        return Err(RemoteVerifyError::MissingManifest {
            url: url.to_string(),
        });
    };
    let bytes = client.get_object(&manifest_key, None)?;
    let manifest = Manifest::parse(&bytes).map_err(|source| RemoteVerifyError::ParseManifest {
        url: url.to_string(),
        source,
    })?;
    if !manifest.complete {
        return Err(RemoteVerifyError::RejectIncomplete {
            url: url.to_string(),
        });
    }
    let mut report = RemoteVerifyReport {
        url: url.to_string(),
        ok: true,
        bytes: 0,
        parts: 0,
        checks: Vec::new(),
        first_bad_part: None,
        first_bad_object: None,
        first_bad_window: None,
    };
    let size = manifest.source.size_bytes;
    let format =
        ImageFormat::from_manifest_name(&manifest.image.format).unwrap_or(ImageFormat::Raw);
    let objects: Vec<OutputFile> = manifest
        .outputs
        .iter()
        .filter(|o| o.file != MAP_FILE)
        .cloned()
        .collect();
    let mut sizes_ok = true;
    for o in &objects {
        let stored = client.head_object(&url.key(&o.file))?;
        sizes_ok &= report.check(
            format!("size of {}", o.file),
            &o.size_bytes.to_string(),
            &stored.map_or_else(|| "missing".to_owned(), |s| s.to_string()),
        );
    }
    let total_out: u64 = objects.iter().map(|o| o.size_bytes).sum();

    // zstd: the seek table at the end of the (last) object says where each frame is.
    let mut decoder = None;
    if sizes_ok && format == ImageFormat::Zstd {
        let table = match get_tail(&mut client, url, &objects, FOOTER_LEN as u64)? {
            Some(footer) => match seekable::table_len_from_footer(&footer) {
                Ok(len) if len <= total_out && len <= 256 << 20 => {
                    get_tail(&mut client, url, &objects, len)?
                        .map(|t| seekable::parse_seek_table(&t).map(|f| (len, f)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            },
            None => None,
        };
        match table {
            Some(Ok((table_len, frames))) => {
                let covered: u64 = frames.iter().map(|f| u64::from(f.decompressed)).sum();
                let compressed: u64 =
                    frames.iter().map(|f| u64::from(f.compressed)).sum::<u64>() + table_len;
                // A frame holds one read block; anything larger is damage, not an allocation to make.
                let block = manifest.image.block_bytes;
                let plausible = frames.iter().all(|f| {
                    u64::from(f.decompressed) <= block
                        && u64::from(f.compressed) <= block + block / 128 + (1 << 16)
                });
                let a = report.check(
                    "seek table: uncompressed bytes",
                    &size.to_string(),
                    &covered.to_string(),
                );
                let b = report.check(
                    "seek table: compressed bytes",
                    &total_out.to_string(),
                    &compressed.to_string(),
                );
                let c = report.check(
                    "seek table: frame sizes",
                    "at most one read block each",
                    if plausible {
                        "at most one read block each"
                    } else {
                        "larger"
                    },
                );
                if a && b && c {
                    decoder =
                        Some(FrameDecoder::new(frames).map_err(RemoteVerifyError::StartDecoder)?);
                }
            }
            Some(Err(e)) => {
                report.check("zstd seek table", "valid", &e.to_string());
            }
            None => {
                report.check("zstd seek table", "present", "missing or unreadable");
            }
        }
    }
    let stream_pass = sizes_ok && (format == ImageFormat::Raw || decoder.is_some());

    // One raw object is the stream: its SHA-256 is the stream's.
    let object_is_stream = format == ImageFormat::Raw && objects.len() == 1;
    if stream_pass {
        // The stream hashes and windows on the acquisition pipeline's hash threads, as `verify DIR`
        // computes them; this thread fetches parts and checks their and their objects' SHA-256.
        let algorithms: Vec<(String, HashAlgorithm)> = manifest
            .hashes
            .keys()
            .filter_map(|name| {
                crate::acquire::hash::parse_hash_list(name)
                    .ok()
                    .and_then(|v| v.first().copied())
                    .map(|a| (name.clone(), a))
            })
            .collect();
        let block = usize::try_from(manifest.image.block_bytes)
            .unwrap_or(DEFAULT_BLOCK)
            .clamp(4096, MAX_BLOCK);
        let pool = BufferPool::for_stream(block, STREAM_BUDGET / 2);
        let mut parts = RemoteParts {
            client: &mut client,
            url,
            manifest: &manifest,
            objects: &objects,
            report: &mut report,
            decoder: decoder.as_mut(),
            object_is_stream,
            object: 0,
            queue: Vec::new(),
            object_hash: None,
            pending: Vec::new(),
            taken: 0,
            stream_pos: 0,
            done_out: 0,
            error: None,
        };
        let result = pipeline::run(
            &pool,
            &algorithms.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
            manifest.image.window_bytes,
            Output::None,
            &mut |pool: &BufferPool| parts.next_block(pool),
            &mut |b: &Block| {
                progress(&Progress {
                    phase: Phase::Verify,
                    done_bytes: b.end(),
                    total_bytes: size,
                    durable_bytes: size,
                    unreadable_bytes: 0,
                });
                if cancel.load(Ordering::Relaxed) {
                    Control::Stop
                } else {
                    Control::Continue
                }
            },
        );
        let done_out = parts.done_out;
        if let Some(e) = parts.error.take() {
            return Err(e.into());
        }
        let result = match result {
            Ok(r) if r.ending == Ending::Stopped => return Err(RemoteVerifyError::Interrupted),
            Ok(r) => r,
            Err(f) => return Err(RemoteVerifyError::ReadStream(f.error)),
        };
        report.bytes = result.bytes;
        report.check(
            "image bytes re-downloaded",
            &total_out.to_string(),
            &done_out.to_string(),
        );
        report.check(
            "stream length",
            &size.to_string(),
            &result.bytes.to_string(),
        );
        for f in decoder.iter().flat_map(|d| d.damaged.iter()) {
            let window = manifest
                .windows
                .iter()
                .enumerate()
                .find(|(_, w)| f.offset < w.offset + w.length)
                .map(|(i, w)| format!(" (window {i} at offset {})", w.offset))
                .unwrap_or_default();
            report.check(
                format!(
                    "zstd frame {} at stream offset {}{window}",
                    f.index, f.offset
                ),
                "decompresses",
                &f.reason,
            );
        }
        for (name, algo) in &algorithms {
            let expected = manifest.hashes.get(name).cloned().unwrap_or_default();
            let actual = result.hashes.get(algo.name()).cloned().unwrap_or_default();
            report.check(format!("{name} of the image"), &expected, &actual);
            if object_is_stream
                && *algo == HashAlgorithm::Sha256
                && let Some(o) = objects.first()
            {
                report.check(format!("sha256 of {}", o.file), &o.sha256, &actual);
            }
        }
        if manifest.image.window_bytes.is_some() {
            let got = &result.windows;
            for (i, want) in manifest.windows.iter().enumerate() {
                let actual = got.get(i).map_or("missing", |g| g.sha256.as_str());
                if actual != want.sha256 {
                    report.check(
                        format!("window {i} at offset {}", want.offset),
                        &want.sha256,
                        actual,
                    );
                    report.first_bad_window.get_or_insert(BadWindow {
                        index: i,
                        offset: want.offset,
                        length: want.length,
                        expected: want.sha256.clone(),
                        actual: actual.to_owned(),
                    });
                }
            }
            report.check(
                "hash windows",
                &manifest.windows.len().to_string(),
                &got.len().to_string(),
            );
        }
    }
    // Every other object against SHA256SUMS, and SHA256SUMS against the manifest.
    match client.head_object(&url.key(SUMS_FILE))? {
        None => {
            report.check(SUMS_FILE, "present", "missing");
        }
        Some(_) => {
            // Image objects were hashed above; the rest is fetched here.
            let sums = client.get_object(&url.key(SUMS_FILE), None)?;
            crate::acquire::verify::check_sums(
                &String::from_utf8_lossy(&sums),
                &manifest,
                &objects,
                &mut |what, expected, actual| {
                    report.check(what, expected, actual);
                },
                |file| -> Result<String, S3Error> {
                    Ok(match client.head_object(&url.key(file))? {
                        Some(_) => sha256_hex(&client.get_object(&url.key(file), None)?),
                        None => "missing".to_owned(),
                    })
                },
            )?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seekable_image(blocks: &[Vec<u8>]) -> (Vec<u8>, Vec<FrameEntry>) {
        let mut file = Vec::new();
        let mut frames = Vec::new();
        for b in blocks {
            let c = zstd::bulk::compress(b, -1).unwrap();
            frames.push(FrameEntry {
                compressed: c.len() as u32,
                decompressed: b.len() as u32,
            });
            file.extend_from_slice(&c);
        }
        file.extend_from_slice(&seekable::encode_seek_table(&frames));
        (file, frames)
    }

    fn decode(file: &[u8], frames: Vec<FrameEntry>, chunk: usize) -> (Vec<u8>, Vec<DamagedFrame>) {
        let mut d = FrameDecoder::new(frames).unwrap();
        let mut out = Vec::new();
        for c in file.chunks(chunk) {
            d.feed(c, &mut |s| out.extend_from_slice(s));
        }
        (out, d.damaged)
    }

    #[test]
    fn frames_fed_in_any_chunks_decode_to_the_stream() {
        let blocks: Vec<Vec<u8>> = (0..4u32)
            .map(|k| {
                (0..10_000u32)
                    .map(|i| ((i * (k + 3)) % 251) as u8)
                    .collect()
            })
            .collect();
        let stream: Vec<u8> = blocks.concat();
        let (file, frames) = seekable_image(&blocks);
        for chunk in [1, 7, 4096, file.len()] {
            let (out, damaged) = decode(&file, frames.clone(), chunk);
            assert_eq!(out, stream, "chunk {chunk}");
            assert!(damaged.is_empty());
        }
    }

    #[test]
    fn a_damaged_frame_becomes_zeros_and_is_named_by_stream_offset() {
        let blocks: Vec<Vec<u8>> = (0..3u32)
            .map(|k| (0..10_000u32).map(|i| ((i * (k + 5)) % 13) as u8).collect())
            .collect();
        let (mut file, frames) = seekable_image(&blocks);
        // Break the magic number of the second frame.
        let at = frames[0].compressed as usize;
        file[at] ^= 0xff;
        let (out, damaged) = decode(&file, frames, 1000);
        assert_eq!(out.len(), 30_000);
        assert_eq!(&out[..10_000], &blocks[0][..]);
        assert!(out[10_000..20_000].iter().all(|b| *b == 0));
        assert_eq!(&out[20_000..], &blocks[2][..]);
        assert_eq!(damaged.len(), 1);
        assert_eq!((damaged[0].index, damaged[0].offset), (1, 10_000));
    }
}
