//! Writing a verified image onto a target disk and proving it landed: the image (raw, an `image.raw.zst`
//! from `rescue acquire`, or an installer ISO) is opened once ([`Image`]); verification and writing read
//! that one descriptor, and the file's identity, size and times are checked against its path before the
//! target is touched, after every chunk and after the last byte. The target's first MiB (partition
//! table, boot sector, ISO volume descriptors) is zeroed first and written last, only once the bytes
//! read from the image hash to the verified (signed) digest; on any failure after the target was opened
//! the first MiB is zeroed again, so an image that did not verify never becomes bootable. Then the
//! target is fsynced, its cached pages dropped, and the written range read back and hashed again.
//! Refuses a target smaller than the image. The caller (UI) decides *whether* the target may be written
//! (interlock, serial confirmation, unlock); this module only writes where it is told. Never prints.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::acquire::seekable;
use crate::reinstall::checksums::{Algorithm, Entry, Hasher, hash_reader};

/// The target's leading bytes that make it bootable (MBR/GPT, boot sector, ISO 9660 descriptors):
/// written last, zeroed on failure.
pub const BOOT_AREA: u64 = 1 << 20;

/// Errors of deploying.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("reading the image {path}")]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image {path} is not a regular file")]
    ImageKind { path: PathBuf },
    #[error(
        "the image {path} changed after it was opened ({what}); refusing to write bytes that were not the ones verified"
    )]
    ImageChanged { path: PathBuf, what: String },
    #[error("{path} ends in .zst but has no valid seek table: {reason}")]
    BadSeekTable { path: PathBuf, reason: String },
    #[error("opening the target {path} for writing")]
    OpenTarget {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a block device nor an existing regular file")]
    TargetKind { path: PathBuf },
    #[error(
        "the target {target} ({target_bytes} bytes) is smaller than the image ({image_bytes} bytes)"
    )]
    TargetTooSmall {
        target: PathBuf,
        target_bytes: u64,
        image_bytes: u64,
    },
    #[error("writing the target {path} at byte {at}")]
    WriteTarget {
        path: PathBuf,
        at: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the image stream was {actual} bytes, not the {expected} its seek table promised")]
    ShortImage { expected: u64, actual: u64 },
    #[error("reading the target {path} back")]
    ReadBack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "read-back MISMATCH on {target}: wrote sha256 {written}, read back {read_back}: the target does not hold the image"
    )]
    ReadBackMismatch {
        target: PathBuf,
        written: String,
        read_back: String,
    },
    #[error(
        "the image's content hash {actual} differs from the expected {expected} ({what}); nothing trustworthy was written"
    )]
    ContentMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A failure after the target was opened: its boot area was zeroed again.
    #[error(
        "deploy stopped; the first {wiped} bytes of {target} (partition table, boot sector) were zeroed, so it does not boot a partial or unverified image"
    )]
    Wiped {
        target: PathBuf,
        wiped: u64,
        #[source]
        source: Box<DeployError>,
    },
    #[error(
        "deploy stopped and zeroing the first {wiped} bytes of {target} FAILED ({wipe_error}): do not boot this disk"
    )]
    WipeFailed {
        target: PathBuf,
        wiped: u64,
        wipe_error: std::io::Error,
        #[source]
        source: Box<DeployError>,
    },
}

impl DeployError {
    /// The failure itself, beneath the note that the boot area was zeroed.
    pub fn cause(&self) -> &DeployError {
        match self {
            DeployError::Wiped { source, .. } | DeployError::WipeFailed { source, .. } => {
                source.cause()
            }
            e => e,
        }
    }

    /// The image or the target does not hold what was verified (exit code "not verified").
    pub fn is_not_verified(&self) -> bool {
        matches!(
            self.cause(),
            DeployError::ReadBackMismatch { .. }
                | DeployError::ContentMismatch { .. }
                | DeployError::ImageChanged { .. }
        )
    }
}

/// Identity, size and times of the image file; any change between open and the last byte written
/// refuses the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Self {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// What differs, in words.
    fn differences(&self, now: &Stamp) -> Option<String> {
        let mut what = Vec::new();
        if (self.dev, self.ino) != (now.dev, now.ino) {
            what.push("its path now names another file".to_owned());
        }
        if self.size != now.size {
            what.push(format!("size {} became {}", self.size, now.size));
        }
        if self.mtime != now.mtime {
            what.push("modification time changed".to_owned());
        }
        if self.ctime != now.ctime {
            what.push("inode change time changed".to_owned());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// The image, opened once. Verification ([`Image::reader`]) and writing read this descriptor; the file
/// the path names must stay this one, unchanged, until the last byte is written.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    file: File,
    stamp: Stamp,
}

impl Image {
    pub fn open(path: &Path) -> Result<Self, DeployError> {
        let file = File::open(path).map_err(image_err(path))?;
        let meta = file.metadata().map_err(image_err(path))?;
        if !meta.is_file() {
            return Err(DeployError::ImageKind {
                path: path.to_owned(),
            });
        }
        Ok(Image {
            path: path.to_owned(),
            stamp: Stamp::of(&meta),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size when opened.
    pub fn len(&self) -> u64 {
        self.stamp.size
    }

    pub fn is_empty(&self) -> bool {
        self.stamp.size == 0
    }

    /// A reader from the first byte, independent of every other reader of this image (`pread`).
    pub fn reader(&self) -> ImageReader<'_> {
        ImageReader {
            file: &self.file,
            pos: 0,
        }
    }

    /// Refuses when the path names another file now, or the open file changed size or times.
    pub fn check_unchanged(&self) -> Result<(), DeployError> {
        let changed = |what: String| DeployError::ImageChanged {
            path: self.path.clone(),
            what,
        };
        // The path first: a file renamed over the image also changes the held inode's change time,
        // and "another file" is the better explanation.
        match std::fs::metadata(&self.path) {
            Ok(m) => {
                if let Some(what) = self.stamp.differences(&Stamp::of(&m)) {
                    return Err(changed(what));
                }
            }
            Err(e) => return Err(changed(format!("its path no longer opens: {e}"))),
        }
        let held = Stamp::of(&self.file.metadata().map_err(image_err(&self.path))?);
        match self.stamp.differences(&held) {
            Some(what) => Err(changed(what)),
            None => Ok(()),
        }
    }
}

/// Reads an [`Image`] from its first byte with `pread`.
pub struct ImageReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ImageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ImageReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let base = match to {
            std::io::SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            std::io::SeekFrom::Current(d) => (self.pos, d),
            std::io::SeekFrom::End(d) => (self.file.metadata()?.len(), d),
        };
        self.pos = base.0.checked_add_signed(base.1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the image",
            )
        })?;
        Ok(self.pos)
    }
}

/// Hashes what passes through (the bytes read from the image, before any decompression).
struct HashingReader<'h, R> {
    inner: R,
    hasher: Option<&'h mut Hasher>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Test-only window into [`write`]: a test swaps or edits the image at a chosen stage.
#[cfg(test)]
pub(crate) mod hook {
    use std::cell::RefCell;

    /// Where [`super::write`] is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Stage {
        /// After verification, before the image is checked and the target opened.
        Start,
        /// The target's boot area was zeroed; no image byte written yet.
        BootAreaZeroed,
    }

    type Hook = Box<dyn FnMut(Stage)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = RefCell::new(None);
    }

    pub(crate) fn set(f: impl FnMut(Stage) + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub(crate) fn clear() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    pub(super) fn fire(stage: Stage) {
        HOOK.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f(stage);
            }
        });
    }
}

/// How the image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// Raw disk image or installer ISO: written as is.
    Raw,
    /// Seekable zstd from `rescue acquire`: decompressed while written.
    ZstdSeekable,
}

/// What will be written where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub image: PathBuf,
    pub format: ImageFormat,
    /// Bytes that land on the target (decompressed size).
    pub image_bytes: u64,
    pub target: PathBuf,
    pub target_bytes: u64,
    pub target_is_block_device: bool,
    /// SHA-256 the written content must have, when known (acquisition manifest, or a verified
    /// SHA-256 entry of a raw image).
    pub expected_sha256: Option<(String, String)>,
    /// The verified checksum-list entry: the bytes read from the image file (before decompression)
    /// while writing must hash to its digest, or the boot area is never written.
    pub signed: Option<Entry>,
}

/// What was written and read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub plan: Plan,
    pub written_sha256: String,
    pub read_back_sha256: String,
    pub seconds: f64,
}

fn image_err(path: &Path) -> impl Fn(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::ReadImage {
        path: path.to_owned(),
        source,
    }
}

fn read_exact_at(image: &Image, buf: &mut [u8], at: u64) -> Result<(), DeployError> {
    image
        .file
        .read_exact_at(buf, at)
        .map_err(image_err(&image.path))
}

/// Decompressed size of a seekable zstd image, from its seek table.
fn zstd_size(image: &Image) -> Result<u64, DeployError> {
    let path = &image.path;
    let len = image.len();
    let bad = |reason: String| DeployError::BadSeekTable {
        path: path.to_owned(),
        reason,
    };
    if len < seekable::FOOTER_LEN as u64 {
        return Err(bad("file too short".into()));
    }
    let mut footer = vec![0u8; seekable::FOOTER_LEN];
    read_exact_at(image, &mut footer, len - seekable::FOOTER_LEN as u64)?;
    let table_len = seekable::table_len_from_footer(&footer).map_err(|e| bad(e.to_string()))?;
    if table_len > len {
        return Err(bad("seek table longer than the file".into()));
    }
    let mut table = vec![0u8; table_len as usize];
    read_exact_at(image, &mut table, len - table_len)?;
    let frames = seekable::parse_seek_table(&table).map_err(|e| bad(e.to_string()))?;
    Ok(frames.iter().map(|f| u64::from(f.decompressed)).sum())
}

/// Size of a target: block device (`lseek(SEEK_END)`) or regular file.
fn target_size(path: &Path) -> Result<(u64, bool), DeployError> {
    use std::io::{Seek, SeekFrom};
    let open_err = |source| DeployError::OpenTarget {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        let mut f = File::open(path).map_err(open_err)?;
        let n = f.seek(SeekFrom::End(0)).map_err(open_err)?;
        Ok((n, true))
    } else if ft.is_file() {
        Ok((meta.len(), false))
    } else {
        Err(DeployError::TargetKind {
            path: path.to_owned(),
        })
    }
}

/// Works out format and sizes and refuses a target that is too small. Writes nothing.
pub fn plan(image: &Image, target: &Path) -> Result<Plan, DeployError> {
    let is_zst = image.path.extension().is_some_and(|e| e == "zst");
    let (format, image_bytes) = if is_zst {
        (ImageFormat::ZstdSeekable, zstd_size(image)?)
    } else {
        (ImageFormat::Raw, image.len())
    };
    let (target_bytes, is_block) = target_size(target)?;
    if target_bytes < image_bytes {
        return Err(DeployError::TargetTooSmall {
            target: target.to_owned(),
            target_bytes,
            image_bytes,
        });
    }
    // An acquisition directory records the SHA-256 of the content.
    let expected_sha256 = image
        .path
        .parent()
        .and_then(|dir| crate::acquire::manifest::Manifest::load(dir).ok())
        .and_then(|m| m.hashes.get("sha256").cloned())
        .map(|h| (h, "the acquisition manifest".to_owned()));
    Ok(Plan {
        image: image.path.clone(),
        format,
        image_bytes,
        target: target.to_owned(),
        target_bytes,
        target_is_block_device: is_block,
        expected_sha256,
        signed: None,
    })
}

/// Zeroes `len` bytes from the start of the target and makes that durable.
fn zero_boot_area(out: &File, len: u64) -> std::io::Result<()> {
    out.write_all_at(&vec![0u8; len as usize], 0)?;
    out.sync_data()
}

/// Writes the image (boot area last, only after the bytes read hashed to the verified digest), fsyncs,
/// drops the cache and reads the target back. Any failure once the target is open zeroes its boot area.
pub fn write(
    plan: &Plan,
    image: &Image,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Report, DeployError> {
    let started = std::time::Instant::now();
    #[cfg(test)]
    hook::fire(hook::Stage::Start);
    // Before the target is touched: the file verified is still the one the path names, unchanged.
    image.check_unchanged()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if plan.target_is_block_device {
        // O_EXCL on a block device fails if anything has it mounted or claimed.
        opts.custom_flags(libc::O_EXCL);
    }
    let out = opts
        .open(&plan.target)
        .map_err(|source| DeployError::OpenTarget {
            path: plan.target.clone(),
            source,
        })?;
    match write_open(plan, image, &out, progress) {
        Ok((written, read_back)) => Ok(Report {
            plan: plan.clone(),
            written_sha256: written,
            read_back_sha256: read_back,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            let wiped = BOOT_AREA.min(plan.target_bytes);
            let source = Box::new(e);
            Err(match zero_boot_area(&out, wiped) {
                Ok(()) => DeployError::Wiped {
                    target: plan.target.clone(),
                    wiped,
                    source,
                },
                Err(wipe_error) => DeployError::WipeFailed {
                    target: plan.target.clone(),
                    wiped,
                    wipe_error,
                    source,
                },
            })
        }
    }
}

/// The body of [`write`] once the target is open; returns (written, read back) SHA-256.
fn write_open(
    plan: &Plan,
    image: &Image,
    out: &File,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(String, String), DeployError> {
    let target_err = |at: u64| {
        move |source| DeployError::WriteTarget {
            path: plan.target.clone(),
            at,
            source,
        }
    };
    // An interrupted deploy (power cut, killed) must not leave the old boot sector in front of new data.
    let head_len = BOOT_AREA.min(plan.image_bytes);
    zero_boot_area(out, head_len).map_err(target_err(0))?;
    #[cfg(test)]
    hook::fire(hook::Stage::BootAreaZeroed);

    // A raw image's SHA-256 entry is checked against the written stream's hash: the same bytes, so not
    // hashed twice.
    let reuse_written = plan.format == ImageFormat::Raw
        && plan
            .signed
            .as_ref()
            .is_some_and(|e| e.algorithm == Algorithm::Sha256);
    let mut signed_hasher = plan
        .signed
        .as_ref()
        .filter(|_| !reuse_written)
        .map(|e| Hasher::new(e.algorithm));
    let raw = HashingReader {
        inner: image.reader(),
        hasher: signed_hasher.as_mut(),
    };
    let mut input: Box<dyn Read + '_> = match plan.format {
        ImageFormat::Raw => Box::new(raw),
        ImageFormat::ZstdSeekable => {
            Box::new(zstd::stream::read::Decoder::new(raw).map_err(image_err(&image.path))?)
        }
    };
    let mut head = Vec::with_capacity(head_len as usize);
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(image_err(&image.path)(e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        // The boot area is held back in memory; the rest goes out now.
        let keep = (head_len.saturating_sub(done) as usize).min(n);
        head.extend_from_slice(&chunk[..keep]);
        let at = done + keep as u64;
        if keep < n {
            out.write_all_at(&chunk[keep..], at)
                .map_err(target_err(at))?;
        }
        done += n as u64;
        image.check_unchanged()?;
        progress("write", done, plan.image_bytes);
    }
    drop(input);
    if done != plan.image_bytes {
        return Err(DeployError::ShortImage {
            expected: plan.image_bytes,
            actual: done,
        });
    }
    image.check_unchanged()?;
    let written = hasher.finish();
    // The bytes this descriptor gave while writing must be the ones verified and recorded.
    if let Some(entry) = &plan.signed {
        let actual = match signed_hasher {
            Some(h) => h.finish(),
            None => written.clone(),
        };
        if actual != entry.digest {
            return Err(DeployError::ContentMismatch {
                what: format!(
                    "{} of entry {} in the verified checksum list",
                    entry.algorithm.name(),
                    entry.name
                ),
                expected: entry.digest.clone(),
                actual,
            });
        }
    }
    if let Some((expected, what)) = &plan.expected_sha256
        && *expected != written
    {
        return Err(DeployError::ContentMismatch {
            what: what.clone(),
            expected: expected.clone(),
            actual: written,
        });
    }
    // Only now does the target become bootable.
    out.write_all_at(&head, 0).map_err(target_err(0))?;
    out.sync_all().map_err(target_err(done))?;

    let back = File::open(&plan.target).map_err(|source| DeployError::ReadBack {
        path: plan.target.clone(),
        source,
    })?;
    // SAFETY: posix_fadvise on an open fd; DONTNEED drops clean cached pages so the read-back comes
    // from the device, not from what we just wrote into the page cache.
    unsafe {
        libc::posix_fadvise(back.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    let (read_back, _) = hash_reader(back.take(plan.image_bytes), Algorithm::Sha256, &mut |n| {
        progress("read back", n, plan.image_bytes)
    })
    .map_err(|source| DeployError::ReadBack {
        path: plan.target.clone(),
        source,
    })?;
    if read_back != written {
        return Err(DeployError::ReadBackMismatch {
            target: plan.target.clone(),
            written,
            read_back,
        });
    }
    Ok((written, read_back))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> String {
        hash_reader(data, Algorithm::Sha256, &mut |_| {}).unwrap().0
    }

    #[test]
    fn raw_and_zstd_images_land_byte_for_byte_and_small_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let raw = dir.path().join("golden.img");
        std::fs::write(&raw, &data).unwrap();
        let target = dir.path().join("target.img");
        std::fs::write(&target, vec![0xAAu8; 400_000]).unwrap();
        let img = Image::open(&raw).unwrap();
        let p = plan(&img, &target).unwrap();
        let r = write(&p, &img, &mut |_, _, _| {}).unwrap();
        assert_eq!(r.written_sha256, r.read_back_sha256);
        let t = std::fs::read(&target).unwrap();
        assert_eq!(&t[..data.len()], &data[..]);
        assert_eq!(t[data.len()], 0xAA, "bytes past the image are untouched");

        // Seekable zstd: two frames plus the seek table.
        let mut zst = Vec::new();
        let mut frames = Vec::new();
        for chunk in data.chunks(200_000) {
            let c = zstd::bulk::compress(chunk, 3).unwrap();
            frames.push(seekable::FrameEntry {
                compressed: c.len() as u32,
                decompressed: chunk.len() as u32,
            });
            zst.extend(c);
        }
        zst.extend(seekable::encode_seek_table(&frames));
        let zpath = dir.path().join("image.raw.zst");
        std::fs::write(&zpath, &zst).unwrap();
        std::fs::write(&target, vec![0u8; 400_000]).unwrap();
        let zimg = Image::open(&zpath).unwrap();
        let mut p = plan(&zimg, &target).unwrap();
        assert_eq!(p.image_bytes, data.len() as u64);
        assert_eq!(p.format, ImageFormat::ZstdSeekable);
        // The verified entry of a compressed image is the compressed file's digest.
        p.signed = Some(Entry {
            algorithm: Algorithm::Sha256,
            digest: sha256(&zst),
            name: "image.raw.zst".into(),
        });
        write(&p, &zimg, &mut |_, _, _| {}).unwrap();
        assert_eq!(&std::fs::read(&target).unwrap()[..data.len()], &data[..]);

        let small = dir.path().join("small.img");
        std::fs::write(&small, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            plan(&img, &small),
            Err(DeployError::TargetTooSmall { .. })
        ));
        assert_eq!(std::fs::read(&small).unwrap(), vec![0u8; 1000]);
    }

    /// A 3 MiB image whose verified digest is known, a 4 MiB target full of 0xAA, and a look-alike
    /// (same size, other bytes) ready to be renamed over the image.
    struct Race {
        _dir: tempfile::TempDir,
        image: PathBuf,
        swapped: PathBuf,
        swapped_data: Vec<u8>,
        target: PathBuf,
        data: Vec<u8>,
    }

    fn race() -> Race {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let swapped_data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 241) as u8 ^ 0x5A).collect();
        let image = dir.path().join("debian.iso");
        let swapped = dir.path().join("evil.iso");
        let target = dir.path().join("target.img");
        std::fs::write(&image, &data).unwrap();
        std::fs::write(&swapped, &swapped_data).unwrap();
        std::fs::write(&target, vec![0xAAu8; 4 << 20]).unwrap();
        Race {
            _dir: dir,
            image,
            swapped,
            swapped_data,
            target,
            data,
        }
    }

    fn verified_plan(r: &Race, img: &Image) -> Plan {
        let mut p = plan(img, &r.target).unwrap();
        p.signed = Some(Entry {
            algorithm: Algorithm::Sha256,
            digest: sha256(&r.data),
            name: "debian.iso".into(),
        });
        p
    }

    /// Whether `needle`'s bytes at `from..` appear where the image's bytes would land.
    fn holds(target: &[u8], needle: &[u8], from: usize) -> bool {
        target[from..needle.len()] == needle[from..]
    }

    #[test]
    fn an_image_renamed_over_before_the_write_is_refused_with_the_target_untouched() {
        let r = race();
        let img = Image::open(&r.image).unwrap();
        let p = verified_plan(&r, &img);
        let (from, to) = (r.swapped.clone(), r.image.clone());
        hook::set(move |stage| {
            if stage == hook::Stage::Start {
                std::fs::rename(&from, &to).unwrap();
            }
        });
        let e = write(&p, &img, &mut |_, _, _| {}).unwrap_err();
        hook::clear();
        assert!(
            matches!(e, DeployError::ImageChanged { ref what, .. } if what.contains("another file")),
            "{e}"
        );
        assert!(e.is_not_verified());
        let t = std::fs::read(&r.target).unwrap();
        assert!(t.iter().all(|b| *b == 0xAA), "the target was not touched");
    }

    #[test]
    fn an_image_renamed_over_during_the_write_never_lands_and_the_boot_area_is_wiped() {
        let r = race();
        let img = Image::open(&r.image).unwrap();
        let p = verified_plan(&r, &img);
        let (from, to) = (r.swapped.clone(), r.image.clone());
        hook::set(move |stage| {
            if stage == hook::Stage::BootAreaZeroed {
                std::fs::rename(&from, &to).unwrap();
            }
        });
        let e = write(&p, &img, &mut |_, _, _| {}).unwrap_err();
        hook::clear();
        assert!(
            matches!(e, DeployError::Wiped { wiped: BOOT_AREA, ref source, .. }
                if matches!(**source, DeployError::ImageChanged { .. })),
            "{e}"
        );
        assert!(e.is_not_verified());
        assert!(crate::error_chain(&e).contains("were zeroed"), "{e}");
        let t = std::fs::read(&r.target).unwrap();
        assert!(
            t[..BOOT_AREA as usize].iter().all(|b| *b == 0),
            "the first MiB is zeroed"
        );
        assert!(
            !holds(&t, &r.swapped_data, BOOT_AREA as usize),
            "the swapped bytes never reach the target"
        );
        assert!(t[r.data.len()..].iter().all(|b| *b == 0xAA));
    }

    #[test]
    fn an_image_edited_in_place_during_the_write_is_refused_and_wiped() {
        let r = race();
        let img = Image::open(&r.image).unwrap();
        let p = verified_plan(&r, &img);
        let path = r.image.clone();
        let evil = r.swapped_data.clone();
        hook::set(move |stage| {
            if stage == hook::Stage::BootAreaZeroed {
                // Same inode, same size; the modification time is put back as it was.
                let before = std::fs::metadata(&path).unwrap().modified().unwrap();
                std::fs::write(&path, &evil).unwrap();
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(before).unwrap();
            }
        });
        let e = write(&p, &img, &mut |_, _, _| {}).unwrap_err();
        hook::clear();
        assert!(e.is_not_verified(), "{e}");
        assert!(matches!(e, DeployError::Wiped { .. }), "{e}");
        let t = std::fs::read(&r.target).unwrap();
        assert!(t[..BOOT_AREA as usize].iter().all(|b| *b == 0));
    }

    #[test]
    fn the_boot_area_is_written_last_and_only_for_the_verified_digest() {
        let r = race();
        let img = Image::open(&r.image).unwrap();
        // While the body is written, the target's first MiB holds zeroes, not the image nor the old bytes.
        let mut p = verified_plan(&r, &img);
        let target = r.target.clone();
        let mut seen = Vec::new();
        write(&p, &img, &mut |what, _, _| {
            if what == "write" {
                let t = std::fs::read(&target).unwrap();
                seen.push(t[..BOOT_AREA as usize].iter().all(|b| *b == 0));
            }
        })
        .unwrap();
        assert!(!seen.is_empty() && seen.iter().all(|z| *z), "{seen:?}");
        assert_eq!(
            &std::fs::read(&r.target).unwrap()[..r.data.len()],
            &r.data[..]
        );

        // The same image against another verified digest: the stream does not hash to it, so the boot
        // area is never written and is left zeroed.
        std::fs::write(&r.target, vec![0xAAu8; 4 << 20]).unwrap();
        p.signed.as_mut().unwrap().digest = sha256(b"another image");
        let e = write(&p, &img, &mut |_, _, _| {}).unwrap_err();
        assert!(
            matches!(e.cause(), DeployError::ContentMismatch { what, .. } if what.contains("verified checksum list")),
            "{e}"
        );
        let t = std::fs::read(&r.target).unwrap();
        assert!(t[..BOOT_AREA as usize].iter().all(|b| *b == 0));
    }
}
