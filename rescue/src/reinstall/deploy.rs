//! Writing a verified image onto a target disk and proving it landed: the image (raw, an `image.raw.zst`
//! from `rescue acquire`, or an installer ISO) is streamed onto the target while hashed, the target is
//! fsynced, its cached pages dropped, and the written range read back and hashed again. Refuses a target
//! smaller than the image. The caller (UI) decides *whether* the target may be written (interlock,
//! serial confirmation, unlock); this module only writes where it is told. Never prints.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::acquire::seekable;
use crate::reinstall::checksums::{Algorithm, Hasher, hash_reader};

/// Errors of deploying.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("reading the image {path}")]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// Decompressed size of a seekable zstd image, from its seek table.
fn zstd_size(path: &Path) -> Result<u64, DeployError> {
    let mut f = File::open(path).map_err(image_err(path))?;
    let len = f.seek(SeekFrom::End(0)).map_err(image_err(path))?;
    let bad = |reason: String| DeployError::BadSeekTable {
        path: path.to_owned(),
        reason,
    };
    if len < seekable::FOOTER_LEN as u64 {
        return Err(bad("file too short".into()));
    }
    let mut footer = vec![0u8; seekable::FOOTER_LEN];
    f.seek(SeekFrom::End(-(seekable::FOOTER_LEN as i64)))
        .and_then(|_| f.read_exact(&mut footer))
        .map_err(image_err(path))?;
    let table_len = seekable::table_len_from_footer(&footer).map_err(|e| bad(e.to_string()))?;
    if table_len > len {
        return Err(bad("seek table longer than the file".into()));
    }
    let mut table = vec![0u8; table_len as usize];
    f.seek(SeekFrom::End(-(table_len as i64)))
        .and_then(|_| f.read_exact(&mut table))
        .map_err(image_err(path))?;
    let frames = seekable::parse_seek_table(&table).map_err(|e| bad(e.to_string()))?;
    Ok(frames.iter().map(|f| u64::from(f.decompressed)).sum())
}

/// Size of a target: block device (`lseek(SEEK_END)`) or regular file.
fn target_size(path: &Path) -> Result<(u64, bool), DeployError> {
    let meta = std::fs::metadata(path).map_err(|source| DeployError::OpenTarget {
        path: path.to_owned(),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        let mut f = File::open(path).map_err(|source| DeployError::OpenTarget {
            path: path.to_owned(),
            source,
        })?;
        let n = f
            .seek(SeekFrom::End(0))
            .map_err(|source| DeployError::OpenTarget {
                path: path.to_owned(),
                source,
            })?;
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
pub fn plan(image: &Path, target: &Path) -> Result<Plan, DeployError> {
    let is_zst = image.extension().is_some_and(|e| e == "zst");
    let (format, image_bytes) = if is_zst {
        (ImageFormat::ZstdSeekable, zstd_size(image)?)
    } else {
        let len = std::fs::metadata(image).map_err(image_err(image))?.len();
        (ImageFormat::Raw, len)
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
        .parent()
        .and_then(|dir| crate::acquire::manifest::Manifest::load(dir).ok())
        .and_then(|m| m.hashes.get("sha256").cloned())
        .map(|h| (h, "the acquisition manifest".to_owned()));
    Ok(Plan {
        image: image.to_owned(),
        format,
        image_bytes,
        target: target.to_owned(),
        target_bytes,
        target_is_block_device: is_block,
        expected_sha256,
    })
}

/// Writes the image, fsyncs, drops the cache and reads the target back.
pub fn write(plan: &Plan, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Report, DeployError> {
    let started = std::time::Instant::now();
    let raw = File::open(&plan.image).map_err(image_err(&plan.image))?;
    let mut input: Box<dyn Read> = match plan.format {
        ImageFormat::Raw => Box::new(raw),
        ImageFormat::ZstdSeekable => {
            Box::new(zstd::stream::read::Decoder::new(raw).map_err(image_err(&plan.image))?)
        }
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if plan.target_is_block_device {
        // O_EXCL on a block device fails if anything has it mounted or claimed.
        opts.custom_flags(libc::O_EXCL);
    }
    let mut out = opts
        .open(&plan.target)
        .map_err(|source| DeployError::OpenTarget {
            path: plan.target.clone(),
            source,
        })?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(image_err(&plan.image)(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|source| DeployError::WriteTarget {
                path: plan.target.clone(),
                at: done,
                source,
            })?;
        hasher.update(&buf[..n]);
        done += n as u64;
        progress("write", done, plan.image_bytes);
    }
    if done != plan.image_bytes {
        return Err(DeployError::ShortImage {
            expected: plan.image_bytes,
            actual: done,
        });
    }
    out.sync_all().map_err(|source| DeployError::WriteTarget {
        path: plan.target.clone(),
        at: done,
        source,
    })?;
    let written = hasher.finish();
    drop(out);

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
    if let Some((expected, what)) = &plan.expected_sha256
        && *expected != written
    {
        return Err(DeployError::ContentMismatch {
            what: what.clone(),
            expected: expected.clone(),
            actual: written,
        });
    }
    Ok(Report {
        plan: plan.clone(),
        written_sha256: written,
        read_back_sha256: read_back,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_zstd_images_land_byte_for_byte_and_small_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let raw = dir.path().join("golden.img");
        std::fs::write(&raw, &data).unwrap();
        let target = dir.path().join("target.img");
        std::fs::write(&target, vec![0xAAu8; 400_000]).unwrap();
        let p = plan(&raw, &target).unwrap();
        let r = write(&p, &mut |_, _, _| {}).unwrap();
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
        let p = plan(&zpath, &target).unwrap();
        assert_eq!(p.image_bytes, data.len() as u64);
        assert_eq!(p.format, ImageFormat::ZstdSeekable);
        write(&p, &mut |_, _, _| {}).unwrap();
        assert_eq!(&std::fs::read(&target).unwrap()[..data.len()], &data[..]);

        let small = dir.path().join("small.img");
        std::fs::write(&small, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            plan(&raw, &small),
            Err(DeployError::TargetTooSmall { .. })
        ));
        assert_eq!(std::fs::read(&small).unwrap(), vec![0u8; 1000]);
    }
}
