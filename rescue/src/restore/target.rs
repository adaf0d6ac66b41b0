//! Writing beneath the restore TARGET without ever following a symlink: every directory is opened with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from the target's root fd, files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` under a temporary name and renamed into place only after they were
//! fsynced and read back. A symlink planted in the new root (`etc -> /mnt/evidence`) therefore makes
//! the restore of that path fail instead of writing through it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The opened target root.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        // SAFETY: open with a valid C string; the returned fd is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Root {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens (creating when `create`) every directory of `rel_dir`, never following a symlink.
    /// `mode_of` gives the mode for a directory it creates.
    pub fn dir(
        &self,
        rel_dir: &str,
        create: bool,
        mode_of: &dyn Fn(&str) -> u32,
    ) -> io::Result<Dir> {
        // SAFETY: dup of our own valid fd.
        let mut cur = unsafe { OwnedFd::from_raw_fd(check(libc::dup(self.fd.as_raw_fd()))?) };
        let mut sofar = String::new();
        for comp in rel_dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "'..' in a target path",
                ));
            }
            if !sofar.is_empty() {
                sofar.push('/');
            }
            sofar.push_str(comp);
            let c = cstr(comp)?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            // SAFETY: openat relative to an fd we own, with a valid C string.
            let mut fd = unsafe { libc::openat(cur.as_raw_fd(), c.as_ptr(), flags) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOENT) && create {
                    // SAFETY: mkdirat relative to an fd we own.
                    check(unsafe {
                        libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), mode_of(&sofar) & 0o7777)
                    })?;
                    // SAFETY: as above.
                    fd = check(unsafe { libc::openat(cur.as_raw_fd(), c.as_ptr(), flags) })?;
                } else if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{sofar} in the target is a symlink or not a directory; refusing to follow it"
                        ),
                    ));
                } else {
                    return Err(e);
                }
            }
            // SAFETY: fd is fresh and owned from here on.
            cur = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        Ok(Dir { fd: cur })
    }
}

/// An opened directory beneath the target.
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    pub fn raw(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// Opens an existing regular file for reading without following a symlink; `None` if absent or not
    /// a regular file.
    pub fn open_existing(&self, name: &str) -> io::Result<Option<File>> {
        let c = cstr(name)?;
        // SAFETY: openat relative to our fd with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return Ok(None);
        }
        // SAFETY: fresh fd.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(f.metadata()?.is_file().then_some(f))
    }

    /// Creates a new file exclusively (never through a symlink).
    pub fn create_exclusive(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        // SAFETY: openat relative to our fd with a valid C string.
        let fd = check(unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        })?;
        // SAFETY: fresh fd.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens a file this run created, for reading back.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        // SAFETY: openat relative to our fd with a valid C string.
        let fd = check(unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fresh fd.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn unlink(&self, name: &str) {
        if let Ok(c) = cstr(name) {
            // SAFETY: unlinkat relative to our fd.
            unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) };
        }
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (cstr(from)?, cstr(to)?);
        // SAFETY: renameat within one directory fd we own; renaming over a symlink replaces the link.
        check(unsafe { libc::renameat(self.raw(), a.as_ptr(), self.raw(), b.as_ptr()) })?;
        Ok(())
    }

    /// The target of an existing symlink `name`, if it is one.
    pub fn read_link(&self, name: &str) -> Option<Vec<u8>> {
        let c = cstr(name).ok()?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat into a buffer of the given size.
        let n =
            unsafe { libc::readlinkat(self.raw(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (n >= 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    pub fn symlink(&self, target: &[u8], name: &str) -> io::Result<()> {
        let t = CString::new(target)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a link"))?;
        let c = cstr(name)?;
        // SAFETY: symlinkat with valid C strings relative to our fd.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) })?;
        Ok(())
    }

    /// Sets owner and times of a symlink itself.
    pub fn lchown_times(&self, name: &str, uid: u32, gid: u32, mtime: i64) {
        if let Ok(c) = cstr(name) {
            // SAFETY: fchownat with AT_SYMLINK_NOFOLLOW acts on the link, not its target.
            unsafe {
                libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW);
            }
        }
        self.set_times(name, mtime, mtime);
    }

    /// Sets access and modification times of the entry `name` itself (a symlink is not followed).
    pub fn set_times(&self, name: &str, atime: i64, mtime: i64) {
        if let Ok(c) = cstr(name) {
            let at = |t: i64| libc::timespec {
                tv_sec: t as libc::time_t,
                tv_nsec: 0,
            };
            let ts = [at(atime), at(mtime)];
            // SAFETY: utimensat relative to our fd, valid C string, two timespecs; AT_SYMLINK_NOFOLLOW
            // acts on the entry itself.
            unsafe {
                libc::utimensat(
                    self.raw(),
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                );
            }
        }
    }

    /// Sets mode, owner and times of a directory entry that is a directory (by name, no follow).
    pub fn set_dir_meta(&self, name: &str, mode: u32, uid: u32, gid: u32) {
        if let Ok(c) = cstr(name) {
            // SAFETY: fchownat with AT_SYMLINK_NOFOLLOW; fchmodat (no-follow is the default for the
            // final component of a directory we just opened with O_NOFOLLOW).
            unsafe {
                libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW);
                libc::fchmodat(self.raw(), c.as_ptr(), mode & 0o7777, 0);
            }
        }
    }
}

/// Hard-links `from_dir/from` as `to_dir/to` (`linkat` without `AT_SYMLINK_FOLLOW`: a symlink is
/// linked as itself, never followed).
pub fn link(from_dir: &Dir, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
    let (a, b) = (cstr(from)?, cstr(to)?);
    // SAFETY: linkat between two directory fds we own, with valid C strings and no follow flag.
    check(unsafe { libc::linkat(from_dir.raw(), a.as_ptr(), to_dir.raw(), b.as_ptr(), 0) })?;
    Ok(())
}

/// Applies mode, owner, times and xattrs to an open file.
pub fn apply_meta(
    f: &File,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: plain syscalls on an fd we hold; xattr names are NUL-terminated below.
    unsafe {
        // Owner first: chown clears setuid/setgid, so the mode goes last.
        let _ = libc::fchown(fd, uid, gid);
        for (name, value) in xattrs {
            if let Ok(n) = CString::new(name.clone()) {
                libc::fsetxattr(fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0);
            }
        }
        check(libc::fchmod(fd, mode & 0o7777))?;
        let ts = [
            libc::timespec {
                tv_sec: atime as libc::time_t,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: mtime as libc::time_t,
                tv_nsec: 0,
            },
        ];
        check(libc::futimens(fd, ts.as_ptr()))?;
    }
    Ok(())
}

/// Extended attributes of a file (never following a symlink).
pub fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 65536];
    // SAFETY: llistxattr into a buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cn) = CString::new(name) else { continue };
        let mut val = vec![0u8; 65536];
        // SAFETY: lgetxattr into a buffer of the given size.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.push((name.to_vec(), val));
        }
    }
    out
}
