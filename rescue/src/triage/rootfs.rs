//! Reading the examined root as the suspect system would see its own files, without ever leaving it:
//! every path resolves through `openat2(RESOLVE_IN_ROOT)` from a handle on the root, so an absolute
//! symlink planted on the disk (`/etc/ssh/sshd_config -> /etc/shadow`) resolves inside the root, never
//! on the rescue system. Only regular files are read (a FIFO planted where a configuration file was is
//! never opened), and reads are capped. Nothing here writes or executes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use super::Evidence;
use crate::examine::walk::{FileKind, Meta};

/// The most a configuration file read may hold (a bigger one is read up to this).
pub const READ_CAP: u64 = 16 << 20;

/// A handle on the examined root.
pub struct RootFs {
    fd: OwnedFd,
    path: PathBuf,
    users: OnceLock<(HashMap<u32, String>, HashMap<u32, String>)>,
}

fn relative(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let rel = &path[start..];
    if rel.is_empty() { b"." } else { rel }
}

impl RootFs {
    pub fn open(path: &Path) -> std::io::Result<RootFs> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(std::io::Error::from)?;
        Ok(RootFs {
            fd,
            path: path.to_owned(),
            users: OnceLock::new(),
        })
    }

    /// The root on this machine.
    pub fn host_root(&self) -> &Path {
        &self.path
    }

    fn openat(&self, path: &[u8], flags: OFlag) -> std::io::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), OsStr::from_bytes(relative(path)), how)
            .map_err(std::io::Error::from)
    }

    /// Facts about `path` (a final symlink is not followed).
    pub fn lstat(&self, path: &[u8]) -> Option<Meta> {
        let fd = self.openat(path, OFlag::O_PATH).ok()?;
        stat_fd(&fd)
    }

    pub fn is_dir(&self, path: &[u8]) -> bool {
        self.lstat(path).is_some_and(|m| m.kind == FileKind::Dir)
    }

    /// The contents of a regular file, up to [`READ_CAP`]; `None` when absent, not a regular file or
    /// unreadable.
    pub fn read(&self, path: &[u8]) -> Option<Vec<u8>> {
        let fd = self
            .openat(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .ok()?;
        if stat_fd(&fd)?.kind != FileKind::File {
            return None;
        }
        let mut out = Vec::new();
        File::from(fd).take(READ_CAP).read_to_end(&mut out).ok()?;
        Some(out)
    }

    /// [`RootFs::read`], but a symlink at `path` (or a chain of them) is followed, still inside the
    /// root: for the files a program reads through a link (`/etc/ld.so.preload -> …`).
    pub fn read_through_links(&self, path: &[u8]) -> Option<String> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(self.fd.as_fd(), OsStr::from_bytes(relative(path)), how).ok()?;
        if stat_fd(&fd)?.kind != FileKind::File {
            return None;
        }
        let mut out = Vec::new();
        File::from(fd).take(READ_CAP).read_to_end(&mut out).ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// [`RootFs::read`] as text (lossy UTF-8).
    pub fn read_text(&self, path: &[u8]) -> Option<String> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The names in a directory, sorted; empty when it is absent or not a directory.
    pub fn list(&self, path: &[u8]) -> Vec<Vec<u8>> {
        let Ok(fd) = self.openat(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else {
            return Vec::new();
        };
        let Ok(mut dir) = nix::dir::Dir::from_fd(fd) else {
            return Vec::new();
        };
        let mut names: Vec<Vec<u8>> = dir
            .iter()
            .flatten()
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        names.sort();
        names
    }

    /// Every regular file (or symlink) directly in `dir`, as absolute paths inside the root.
    pub fn files_in(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        self.list(dir)
            .into_iter()
            .map(|n| join(dir, &n))
            .filter(|p| {
                self.lstat(p)
                    .is_some_and(|m| matches!(m.kind, FileKind::File | FileKind::Symlink))
            })
            .collect()
    }

    /// Every regular file (or symlink) in the first of `dirs` that names each directory: on a
    /// merged-/usr root `/lib/…` and `/usr/lib/…` are one directory, listed once under the first
    /// spelling given.
    pub fn files_in_each(&self, dirs: &[&str]) -> Vec<Vec<u8>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for dir in dirs {
            let Some(m) = self.lstat(dir.as_bytes()) else {
                continue;
            };
            if m.kind == FileKind::Dir && seen.insert((m.dev, m.inode)) {
                out.extend(self.files_in(dir.as_bytes()));
            }
        }
        out
    }

    /// Where a symlink points (raw bytes).
    pub fn read_link(&self, path: &[u8]) -> Option<Vec<u8>> {
        let fd = self.openat(path, OFlag::O_PATH).ok()?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat with an empty name reads the O_PATH symlink itself into our buffer.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// SHA-256 of a regular file (whole file, streamed).
    pub fn sha256(&self, path: &[u8]) -> Option<String> {
        use sha2::Digest;
        let fd = self
            .openat(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .ok()?;
        if stat_fd(&fd)?.kind != FileKind::File {
            return None;
        }
        let mut f = File::from(fd);
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(_) => return None,
            }
        }
        Some(hex::encode(h.finalize()))
    }

    fn users(&self) -> &(HashMap<u32, String>, HashMap<u32, String>) {
        self.users.get_or_init(|| {
            let ids = |file: &[u8]| -> HashMap<u32, String> {
                self.read_text(file)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| {
                        let mut f = l.split(':');
                        let name = f.next()?;
                        let id = f.nth(1)?.parse().ok()?;
                        Some((id, name.to_owned()))
                    })
                    .collect()
            };
            (ids(b"/etc/passwd"), ids(b"/etc/group"))
        })
    }

    /// The evidence about `path`: type and mode, owner, times, sha256, owning package.
    pub fn evidence(&self, path: &[u8], owners: &super::owners::Owners) -> Evidence {
        let mut e = Evidence {
            package_db: owners.kind().map(str::to_owned),
            package: owners.owner(path),
            ..Evidence::default()
        };
        let Some(m) = self.lstat(path) else {
            return e;
        };
        let (users, groups) = self.users();
        e.mode = Some(mode_string(&m));
        e.uid = Some(m.uid);
        e.gid = Some(m.gid);
        e.owner = users.get(&m.uid).cloned();
        e.group = groups.get(&m.gid).cloned();
        e.size = Some(m.size);
        e.mtime = Some(super::rfc3339(m.mtime));
        e.ctime = Some(super::rfc3339(m.ctime));
        e.crtime = m.crtime.map(super::rfc3339);
        match m.kind {
            FileKind::File => e.sha256 = self.sha256(path),
            FileKind::Symlink => {
                e.link_target = self
                    .read_link(path)
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
            }
            _ => {}
        }
        e
    }

    /// User name for a uid, from the root's own `/etc/passwd`.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users().0.get(&uid).map(String::as_str)
    }
}

fn stat_fd(fd: &OwnedFd) -> Option<Meta> {
    // SAFETY: zero is a valid bit pattern for the plain-data statx struct.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated name with AT_EMPTY_PATH stats the descriptor itself.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut buf,
        )
    };
    (rc == 0).then(|| Meta::from_statx(&buf))
}

/// `parent/name` for absolute paths inside the root.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// `-rwsr-xr-x 4755`.
pub fn mode_string(m: &Meta) -> String {
    let mut s = String::with_capacity(15);
    s.push(m.kind.letter());
    let bits = m.mode;
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let p = (bits >> shift) & 7;
        s.push(if p & 4 != 0 { 'r' } else { '-' });
        s.push(if p & 2 != 0 { 'w' } else { '-' });
        s.push(match (p & 1 != 0, bits & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    format!("{s} {:04o}", bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_symlink_resolves_inside_the_root_never_on_this_machine() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/hostname"), b"suspect\n").unwrap();
        // Points at /etc/hostname: inside the root that is the suspect's file, not ours.
        std::os::unix::fs::symlink("/etc/hostname", r.join("etc/name-link")).unwrap();
        // A directory symlink climbing out of the root is clamped to it.
        std::os::unix::fs::symlink("../../../../../../", r.join("up")).unwrap();
        let fs = RootFs::open(r).unwrap();
        // A final symlink is never followed (O_NOFOLLOW): nothing read.
        assert_eq!(fs.read(b"/etc/name-link"), None);
        assert_eq!(fs.read_link(b"/etc/name-link").unwrap(), b"/etc/hostname");
        assert_eq!(fs.read(b"/etc/hostname").unwrap(), b"suspect\n");
        assert_eq!(fs.read(b"/up/etc/hostname").unwrap(), b"suspect\n");
        assert_eq!(
            fs.list(b"/etc"),
            [b"hostname".to_vec(), b"name-link".to_vec()]
        );
        assert!(fs.is_dir(b"/etc"));
        assert!(fs.is_dir(b"/"));
        let m = fs.lstat(b"/etc/hostname").unwrap();
        assert!(mode_string(&m).starts_with("-rw"));
    }

    #[test]
    fn links_are_followed_inside_the_root_only_when_asked_and_a_merged_usr_dir_is_listed_once() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/modprobe.d")).unwrap();
        std::fs::write(r.join("usr/lib/modprobe.d/a.conf"), b"install x /bin/x\n").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/modprobe.d/a.conf", r.join("etc/link")).unwrap();
        let fs = RootFs::open(r).unwrap();
        assert_eq!(fs.read(b"/etc/link"), None);
        assert_eq!(
            fs.read_through_links(b"/etc/link").unwrap(),
            "install x /bin/x\n"
        );
        assert_eq!(
            fs.files_in_each(&["/usr/lib/modprobe.d", "/lib/modprobe.d", "/etc/absent"]),
            [b"/usr/lib/modprobe.d/a.conf".to_vec()]
        );
    }

    #[test]
    fn modes_read_like_ls() {
        let mut m = crate::examine::walk::stat_path(Path::new("/")).unwrap();
        m.kind = FileKind::File;
        m.mode = 0o4755;
        assert_eq!(mode_string(&m), "-rwsr-xr-x 4755");
        m.mode = 0o2644;
        assert_eq!(mode_string(&m), "-rw-r-Sr-- 2644");
        m.kind = FileKind::Dir;
        m.mode = 0o1777;
        assert_eq!(mode_string(&m), "drwxrwxrwt 1777");
    }
}
