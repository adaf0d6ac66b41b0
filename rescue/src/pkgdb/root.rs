//! Reading files of a suspect root without ever leaving it: every path is resolved by `openat2` with
//! `RESOLVE_IN_ROOT` (an absolute symlink planted on the suspect disk, `/var/lib/rpm -> /`, resolves
//! inside the root, not on the rescue system), the last component is never followed (`O_NOFOLLOW`),
//! and only regular files are opened for reading (a FIFO or device node planted where a package file
//! was is reported, never opened). Nothing here writes or executes.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, fstat};

/// The suspect root: a directory handle every lookup starts from.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// `path` without its leading slashes (`.` for the root itself), as `openat2` wants it beneath a dirfd.
fn relative(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let rel = &path[start..];
    if rel.is_empty() { b"." } else { rel }
}

fn nix_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Root {
    /// Opens the root directory (`O_PATH`: no read access to anything is implied by the handle).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(nix_err)?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    /// The directory this root was opened from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` (absolute inside the root) as the host sees it, for messages only.
    pub fn display(&self, path: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.path.join(std::ffi::OsStr::from_bytes(relative(path)))
    }

    fn openat(&self, path: &[u8], flags: OFlag) -> io::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let rel = relative(path);
        openat2(self.fd.as_fd(), rel, how).map_err(nix_err)
    }

    /// A handle on whatever is at `path` (the symlink itself if it is one) and its `lstat`.
    pub fn lstat(&self, path: &[u8]) -> io::Result<(OwnedFd, FileStat)> {
        let fd = self.openat(path, OFlag::O_PATH)?;
        let st = fstat(&fd).map_err(nix_err)?;
        Ok((fd, st))
    }

    /// Opens a regular file for reading; anything else (symlink, FIFO, device, directory) is an error
    /// and is never opened for reading.
    pub fn open_file(&self, path: &[u8]) -> io::Result<(File, FileStat)> {
        let (_, st) = self.lstat(path)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let fd = self.openat(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let st = fstat(&fd).map_err(nix_err)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok((File::from(fd), st))
    }

    /// Opens for reading the regular file an [`Root::lstat`] of `path` just found (`seen`): one path
    /// resolution instead of [`Root::open_file`]'s two. Refused, as there, when what is opened is not a
    /// regular file, and when it is not the file `seen` describes (replaced in between).
    pub fn open_seen(&self, path: &[u8], seen: &FileStat) -> io::Result<File> {
        let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        if seen.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_regular());
        }
        let fd = self.openat(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let st = fstat(&fd).map_err(nix_err)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_regular());
        }
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "replaced while it was being checked",
            ));
        }
        Ok(File::from(fd))
    }

    /// The whole content of a regular file (package database files, account databases).
    pub fn read(&self, path: &[u8]) -> io::Result<Vec<u8>> {
        let (mut f, st) = self.open_file(path)?;
        let mut out = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0).min(1 << 26));
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The target of the symlink `fd` is a handle on (from [`Root::lstat`]).
    pub fn readlink(fd: &OwnedFd) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: `fd` is an open O_PATH handle on a symlink; an empty path makes readlinkat read
        // that link itself; `buf` is valid for `buf.len()` bytes.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_resolve_inside_the_root_and_fifos_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("inner/etc")).unwrap();
        std::fs::write(r.join("inner/etc/hostname"), b"suspect\n").unwrap();
        // An absolute link planted on the suspect disk must not reach the rescue system's /etc.
        std::os::unix::fs::symlink("/etc", r.join("inner/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", r.join("inner/final")).unwrap();
        nix::unistd::mkfifo(&r.join("inner/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = Root::open(&r.join("inner")).unwrap();
        assert_eq!(root.read(b"/link/hostname").unwrap(), b"suspect\n");
        assert_eq!(root.read(b"etc/hostname").unwrap(), b"suspect\n");
        let err = root.read(b"/final").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = root.read(b"/fifo").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let (fd, _) = root.lstat(b"/final").unwrap();
        assert_eq!(Root::readlink(&fd).unwrap(), b"/etc/hostname");
        let (_, fifo) = root.lstat(b"/fifo").unwrap();
        let err = root.open_seen(b"/fifo", &fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let (_, seen) = root.lstat(b"/etc/hostname").unwrap();
        let mut text = String::new();
        root.open_seen(b"/etc/hostname", &seen)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "suspect\n");
        // Another file put in its place after the lstat is not read as the one seen.
        std::fs::rename(r.join("inner/etc/hostname"), r.join("inner/etc/old")).unwrap();
        std::fs::write(r.join("inner/etc/hostname"), b"swapped\n").unwrap();
        let err = root.open_seen(b"/etc/hostname", &seen).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(
            root.read(b"/missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
