//! Copying one file of the source into place: hashed while it is read, written to a temporary name
//! beside its destination, given back its metadata, fsynced, read back and compared, then renamed
//! over the destination (never through a symlink). A file already identical is left alone.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::policy::Verdict;
use super::{Action, RestoreError, Restorer, SourceEntry, scripts, split, target};
use crate::reinstall::checksums::{Algorithm, Hasher};

/// Copy and hash buffer: small enough to stay on the heap (a fresh mmap per file costs page faults on
/// every one of thousands of small files), big enough for full-speed SHA-256.
const COPY_BUF: usize = 128 << 10;

/// Hashes a reader, keeping its first `keep` bytes.
fn hash_with_head(
    r: &mut dyn Read,
    out: Option<&mut dyn Write>,
    keep: usize,
) -> std::io::Result<(String, Vec<u8>, u64)> {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut head = Vec::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    let mut out = out;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if head.len() < keep {
            head.extend_from_slice(&buf[..n.min(keep - head.len())]);
        }
        h.update(&buf[..n]);
        if let Some(w) = out.as_deref_mut() {
            w.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    Ok((h.finish(), head, total))
}

impl Restorer {
    /// The new system's file at `rel` (never through a symlink), if there is one.
    pub(super) fn read_target(&self, rel: &str) -> Option<Vec<u8>> {
        let (parent, name) = split(rel);
        let dir = self.root.dir(parent, false, &|_| 0o755).ok()?;
        let f = dir.open_existing(name).ok()??;
        let mut out = Vec::new();
        f.take(scripts::SCREEN_LIMIT as u64)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    fn existing_identical(dir: &target::Dir, name: &str, sha: &str) -> bool {
        match dir.open_existing(name) {
            Ok(Some(mut f)) => hash_with_head(&mut f, None, 0).is_ok_and(|(h, _, _)| h == sha),
            _ => false,
        }
    }

    pub(super) fn file_from_path(
        &mut self,
        rel: &str,
        e: &SourceEntry,
        path: &Path,
        meta_verdict: Verdict,
    ) -> Result<(), RestoreError> {
        let size = Some(e.size);
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags_nofollow()
                .open(path)
        };
        let keep = self.keep(rel);
        let first = open().and_then(|mut f| hash_with_head(&mut f, None, keep));
        let (sha, head, total) = match first {
            Ok(x) => x,
            Err(err) => {
                self.record(
                    rel,
                    "file",
                    size,
                    None,
                    Action::Failed,
                    Some(format!("reading the source: {err}")),
                );
                return Ok(());
            }
        };
        if meta_verdict != Verdict::Allow {
            return self.not_restored(rel, size, sha, meta_verdict, &head);
        }
        if let Some(v) = self.content_verdict(rel, &sha, &head, total) {
            return self.not_restored(rel, size, sha, v, &head);
        }
        if self.dry_run {
            self.record(rel, "file", size, Some(sha), Action::WouldRestore, None);
            return Ok(());
        }
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(err) => return self.io_failure(rel, "file", size, Some(sha), err),
        };
        if Self::existing_identical(&dir, name, &sha) {
            self.record(rel, "file", size, Some(sha), Action::Identical, None);
            return Ok(());
        }
        let tmp = format!(".{name}.rescue-restore");
        dir.unlink(&tmp);
        let copied = dir.create_exclusive(&tmp).and_then(|mut out| {
            let mut src = open()?;
            let (h, _, _) = hash_with_head(&mut src, Some(&mut out), 0)?;
            Ok((out, h))
        });
        let (out, second) = match copied {
            Ok(x) => x,
            Err(err) => {
                dir.unlink(&tmp);
                return self.io_failure(rel, "file", size, Some(sha), err);
            }
        };
        if second != sha {
            dir.unlink(&tmp);
            self.record(
                rel,
                "file",
                size,
                Some(sha.clone()),
                Action::Refused,
                Some(format!(
                    "changed between hashing and copying (sha256 {sha}, then {second})"
                )),
            );
            return Ok(());
        }
        self.commit(rel, e, &dir, &tmp, name, out, sha)
    }

    pub(super) fn file_from_stream(
        &mut self,
        rel: &str,
        e: &SourceEntry,
        r: &mut dyn Read,
        meta_verdict: Verdict,
    ) -> Result<(), RestoreError> {
        let size = Some(e.size);
        let keep = self.keep(rel);
        if meta_verdict != Verdict::Allow || self.dry_run {
            let (sha, head, total) = match hash_with_head(r, None, keep) {
                Ok(x) => x,
                Err(err) => return Err(RestoreError::ReadSource(err)),
            };
            if meta_verdict != Verdict::Allow {
                return self.not_restored(rel, size, sha, meta_verdict, &head);
            }
            if let Some(v) = self.content_verdict(rel, &sha, &head, total) {
                return self.not_restored(rel, size, sha, v, &head);
            }
            self.record(rel, "file", size, Some(sha), Action::WouldRestore, None);
            return Ok(());
        }
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(err) => {
                std::io::copy(r, &mut std::io::sink()).map_err(RestoreError::ReadSource)?;
                return self.io_failure(rel, "file", size, None, err);
            }
        };
        let tmp = format!(".{name}.rescue-restore");
        dir.unlink(&tmp);
        let mut out = match dir.create_exclusive(&tmp) {
            Ok(f) => f,
            Err(err) => {
                std::io::copy(r, &mut std::io::sink()).map_err(RestoreError::ReadSource)?;
                return self.io_failure(rel, "file", size, None, err);
            }
        };
        // Spool while hashing; a write error (full target) must be told apart from a read error.
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut head = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    dir.unlink(&tmp);
                    return Err(RestoreError::ReadSource(err));
                }
            };
            if head.len() < keep {
                head.extend_from_slice(&buf[..n.min(keep - head.len())]);
            }
            total += n as u64;
            h.update(&buf[..n]);
            if let Err(err) = out.write_all(&buf[..n]) {
                dir.unlink(&tmp);
                std::io::copy(r, &mut std::io::sink()).map_err(RestoreError::ReadSource)?;
                return self.io_failure(rel, "file", size, None, err);
            }
        }
        let sha = h.finish();
        if let Some(v) = self.content_verdict(rel, &sha, &head, total) {
            dir.unlink(&tmp);
            return self.not_restored(rel, size, sha, v, &head);
        }
        if Self::existing_identical(&dir, name, &sha) {
            dir.unlink(&tmp);
            self.record(rel, "file", size, Some(sha), Action::Identical, None);
            return Ok(());
        }
        self.commit(rel, e, &dir, &tmp, name, out, sha)
    }

    /// Metadata, fsync, read back, rename into place, fsync the directory.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rel: &str,
        e: &SourceEntry,
        dir: &target::Dir,
        tmp: &str,
        name: &str,
        out: std::fs::File,
        sha: String,
    ) -> Result<(), RestoreError> {
        let size = Some(e.size);
        let r = target::apply_meta(&out, e.mode, e.uid, e.gid, e.atime, e.mtime, &e.xattrs)
            .and_then(|()| out.sync_all());
        drop(out);
        if let Err(err) = r {
            dir.unlink(tmp);
            return self.io_failure(rel, "file", size, Some(sha), err);
        }
        let back = dir.open_read(tmp).and_then(|mut f| {
            // SAFETY: fadvise on an open fd; drops clean cached pages so the read-back hits the disk.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            hash_with_head(&mut f, None, 0)
        });
        match back {
            Ok((h, _, _)) if h == sha => {}
            Ok((h, _, _)) => {
                dir.unlink(tmp);
                self.record(
                    rel,
                    "file",
                    size,
                    Some(sha.clone()),
                    Action::Failed,
                    Some(format!("read-back mismatch: wrote {sha}, read {h}")),
                );
                return Ok(());
            }
            Err(err) => {
                dir.unlink(tmp);
                return self.io_failure(rel, "file", size, Some(sha), err);
            }
        }
        if let Err(err) = dir.rename(tmp, name) {
            dir.unlink(tmp);
            return self.io_failure(rel, "file", size, Some(sha), err);
        }
        // SAFETY: fsync on a directory fd we hold makes the rename durable.
        unsafe { libc::fsync(dir.raw()) };
        self.record(rel, "file", size, Some(sha), Action::Restored, None);
        Ok(())
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW)
    }
}
