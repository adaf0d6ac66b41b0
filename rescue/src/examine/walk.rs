//! The one filesystem walker of an examined root (triage, timeline and restore share it): depth first,
//! one open directory per level, `statx` on each name relative to its directory (no path is resolved
//! twice and no symlink is ever followed), never into another filesystem, names as raw bytes (non-UTF-8
//! is kept as it is), unreadable entries reported to the visitor instead of ending the walk.
//!
//! Entries come in each directory's own order (not sorted): callers that need an order sort what they
//! keep. The walker allocates nothing per entry: the path is one buffer that grows and shrinks, and a
//! directory's names are one buffer. A large directory's entries are stat'ed by a few threads at once
//! (many inode reads in flight on a cold mount); the visitor still runs on the caller's thread, one
//! entry at a time, in the directory's order.
//!
//! Never: follow a symlink, open anything writable, cross a mount point.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Errors that end a walk: only the root itself failing to open or stat, or the ext reader failing
/// before its first entry (so a caller can still walk the mounted filesystem instead).
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("reading the ext filesystem without mounting")]
    ReadExt {
        #[source]
        source: crate::extfs::ExtError,
    },
    #[error("opening the root directory {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

impl FileKind {
    fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Self::File,
            libc::S_IFDIR => Self::Dir,
            libc::S_IFLNK => Self::Symlink,
            libc::S_IFCHR => Self::CharDevice,
            libc::S_IFBLK => Self::BlockDevice,
            libc::S_IFIFO => Self::Fifo,
            libc::S_IFSOCK => Self::Socket,
            _ => Self::Unknown,
        }
    }

    /// The `ls -l` type letter (`-`, `d`, `l`, `c`, `b`, `p`, `s`, `?`).
    pub fn letter(self) -> char {
        match self {
            Self::File => '-',
            Self::Dir => 'd',
            Self::Symlink => 'l',
            Self::CharDevice => 'c',
            Self::BlockDevice => 'b',
            Self::Fifo => 'p',
            Self::Socket => 's',
            Self::Unknown => '?',
        }
    }
}

/// The inode facts of one entry, from `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub inode: u64,
    pub nlink: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Birth time, where the filesystem records one (ext4, XFS v5, btrfs) and the kernel reports it.
    pub crtime: Option<Time>,
    /// The filesystem's device (major, minor), to tell mount points apart.
    pub dev: (u32, u32),
    /// For a device node: the device it stands for (major, minor).
    pub rdev: (u32, u32),
}

impl Meta {
    /// From a `statx` result.
    pub fn from_statx(s: &libc::statx) -> Self {
        let t = |t: libc::statx_timestamp| Time {
            secs: t.tv_sec,
            nanos: t.tv_nsec,
        };
        let mode = u32::from(s.stx_mode);
        Meta {
            kind: FileKind::from_mode(mode),
            mode: mode & 0o7777,
            uid: s.stx_uid,
            gid: s.stx_gid,
            size: s.stx_size,
            inode: s.stx_ino,
            nlink: s.stx_nlink,
            atime: t(s.stx_atime),
            mtime: t(s.stx_mtime),
            ctime: t(s.stx_ctime),
            crtime: (s.stx_mask & libc::STATX_BTIME != 0).then(|| t(s.stx_btime)),
            dev: (s.stx_dev_major, s.stx_dev_minor),
            rdev: (s.stx_rdev_major, s.stx_rdev_minor),
        }
    }
}

/// `statx` of `name` in the directory `dirfd`, never following a symlink. `name` may be `""` with
/// `AT_EMPTY_PATH` for the directory itself.
fn statx_at(dirfd: RawFd, name: &CStr, extra: libc::c_int) -> io::Result<Meta> {
    // SAFETY: zero is a valid bit pattern for the plain-data statx struct.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated, `buf` is a statx we own; the kernel writes only into it.
    let rc = unsafe {
        libc::statx(
            dirfd,
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | extra,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut buf,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Meta::from_statx(&buf))
}

/// Facts about one file of a path given relative to nothing (the root of a walk, a file a detector
/// names): `statx` without following a final symlink.
pub fn stat_path(path: &Path) -> io::Result<Meta> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    statx_at(libc::AT_FDCWD, &c, 0)
}

/// Where an entry came from: a directory of a mounted filesystem, or the ext reader.
enum Origin<'a> {
    Dir {
        dirfd: RawFd,
        name: &'a CStr,
    },
    Ext {
        name: &'a [u8],
        link_target: Option<&'a [u8]>,
    },
}

/// One entry the walker reached.
pub struct Entry<'a> {
    full: &'a [u8],
    root_len: usize,
    origin: Origin<'a>,
    /// Directory levels below the root (1 for the root's own entries).
    pub depth: usize,
    pub meta: Meta,
    /// A directory on another filesystem than the root's (a mount point): reported, not entered.
    pub other_filesystem: bool,
}

impl Entry<'_> {
    /// The path relative to the root, as bytes without a leading `/` (`etc/passwd`).
    pub fn rel_path(&self) -> &[u8] {
        &self.full[self.root_len..]
    }

    /// The path inside the examined system, as it would be there: `/etc/passwd`.
    pub fn inner_path(&self) -> &[u8] {
        &self.full[self.root_len - 1..]
    }

    /// The path on this machine (under the mount point), for calls that need one.
    pub fn host_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.full))
    }

    /// The entry's own name.
    pub fn name(&self) -> &[u8] {
        match &self.origin {
            Origin::Dir { name, .. } => name.to_bytes(),
            Origin::Ext { name, .. } => name,
        }
    }

    /// Opens the entry for reading relative to its directory, refusing a symlink, without updating its
    /// access time where the kernel allows, without blocking on a FIFO or becoming a controlling tty.
    /// An entry of the ext reader has no directory handle: it is opened by its path under the mount
    /// point (the same filesystem, mounted read-only), which costs a name lookup for this file only.
    pub fn open(&self) -> io::Result<File> {
        match &self.origin {
            Origin::Dir { dirfd, name } => open_at(*dirfd, name),
            Origin::Ext { .. } => {
                let path = std::ffi::CString::new(self.full)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                open_at(libc::AT_FDCWD, &path)
            }
        }
    }

    /// The target of a symlink, as raw bytes.
    pub fn read_link(&self) -> io::Result<Vec<u8>> {
        let (dirfd, name) = match &self.origin {
            Origin::Dir { dirfd, name } => (*dirfd, *name),
            Origin::Ext { link_target, .. } => {
                return link_target.map(<[u8]>::to_vec).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the symlink's target is unreadable",
                    )
                });
            }
        };
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat writes at most buf.len() bytes into the buffer we own.
        let n =
            unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// The value of an extended attribute (`security.capability`), `None` where there is none.
    pub fn xattr(&self, name: &str) -> Option<Vec<u8>> {
        xattr(self.host_path(), name)
    }
}

/// An extended attribute of a path, not following a final symlink; `None` when absent or unreadable.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: lgetxattr writes at most buf.len() bytes into the buffer we own.
        let rc =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 16 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return None;
    }
}

/// Opens `name` in `dirfd` read-only, refusing a symlink.
fn open_at(dirfd: RawFd, name: &CStr) -> io::Result<File> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // O_NOATIME is refused (EPERM) on files we do not own without CAP_FOWNER: then open without it.
    for extra in [libc::O_NOATIME, 0] {
        // SAFETY: `name` is NUL-terminated; the returned descriptor is owned by the File below.
        let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags | extra) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor nobody else owns.
            return Ok(unsafe { File::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) || extra == 0 {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EPERM))
}

/// What the visitor wants after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Continue,
    /// Do not enter this directory (ignored for anything else).
    Skip,
    /// End the walk.
    Stop,
}

/// Receives the walk.
pub trait Visitor {
    /// Every entry below the root, parents before children.
    fn entry(&mut self, entry: &Entry<'_>) -> Visit;
    /// An entry that could not be examined (`path` relative to the root, as in
    /// [`Entry::rel_path`]): a directory that cannot be read, a name that cannot be stat'ed.
    fn unreadable(&mut self, path: &[u8], error: &io::Error);
}

/// Totals of a walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub entries: u64,
    pub unreadable: u64,
    pub stopped: bool,
}

/// Walks everything below `root`, never following symlinks, never leaving the root's filesystem.
pub fn walk(root: &Path, visitor: &mut dyn Visitor) -> Result<WalkStats, WalkError> {
    let open_root = |source| WalkError::OpenRoot {
        path: root.to_owned(),
        source,
    };
    let dir = Dir::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| open_root(io::Error::from(e)))?;
    let root_meta = statx_at(dir.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(open_root)?;
    let mut full = root.as_os_str().as_bytes().to_vec();
    while full.len() > 1 && full.ends_with(b"/") {
        full.pop();
    }
    if full != b"/" {
        full.push(b'/');
    }
    let mut w = Walker {
        root_len: full.len(),
        full,
        dev: root_meta.dev,
        stats: WalkStats::default(),
        visitor,
    };
    w.dir(dir, 1);
    Ok(w.stats)
}

/// Walks an ext2/3/4 filesystem from its bytes (`vol`, `vol_len` bytes) with [`crate::extfs`]
/// instead of through a mount: the same entries in the same [`Entry`] type, paths placed under
/// `host_root` (where the same filesystem is mounted, for [`Entry::host_path`]). Each entry's
/// [`Meta`] is what `statx` on the mounted filesystem gives (the filesystem's device is that of
/// `host_root`). An error comes only before the first entry; damage below the root is reported to
/// [`Visitor::unreadable`] as `InvalidData` and skipped.
pub fn walk_ext(
    vol: &(dyn crate::acquire::source::ReadAt + Sync),
    vol_len: u64,
    host_root: &Path,
    visitor: &mut dyn Visitor,
) -> Result<WalkStats, WalkError> {
    use crate::extfs::{self, tree};
    let mut fs =
        extfs::ExtFs::open(vol, vol_len).map_err(|source| WalkError::ReadExt { source })?;
    let dev = stat_path(host_root).map_or((0, 0), |m| m.dev);
    let mut full = host_root.as_os_str().as_bytes().to_vec();
    while full.len() > 1 && full.ends_with(b"/") {
        full.pop();
    }
    if full != b"/" {
        full.push(b'/');
    }
    struct Adapt<'v> {
        full: Vec<u8>,
        root_len: usize,
        dev: (u32, u32),
        visitor: &'v mut dyn Visitor,
    }
    impl tree::TreeVisitor for Adapt<'_> {
        fn found(&mut self, f: &tree::Found<'_>) -> tree::Step {
            let i = f.inode;
            let t = |t: extfs::Time| Time {
                secs: t.secs,
                nanos: t.nanos,
            };
            let mode = u32::from(i.mode);
            let kind = FileKind::from_mode(mode);
            let meta = Meta {
                kind,
                mode: mode & 0o7777,
                uid: i.uid,
                gid: i.gid,
                size: i.size,
                inode: f.ino,
                nlink: u32::from(i.links),
                atime: t(i.atime),
                mtime: t(i.mtime),
                ctime: t(i.ctime),
                crtime: i.crtime.map(t),
                dev: self.dev,
                rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                    i.rdev()
                } else {
                    (0, 0)
                },
            };
            self.full.truncate(self.root_len);
            self.full.extend_from_slice(f.path);
            let visit = self.visitor.entry(&Entry {
                full: &self.full,
                root_len: self.root_len,
                origin: Origin::Ext {
                    name: f.name,
                    link_target: f.link_target,
                },
                depth: f.depth,
                meta,
                other_filesystem: false,
            });
            match visit {
                Visit::Continue => tree::Step::Continue,
                Visit::Skip => tree::Step::Skip,
                Visit::Stop => tree::Step::Stop,
            }
        }

        fn damaged(&mut self, path: &[u8], why: &str) {
            self.visitor.unreadable(
                path,
                &io::Error::new(io::ErrorKind::InvalidData, why.to_owned()),
            );
        }
    }
    let mut a = Adapt {
        root_len: full.len(),
        full,
        dev,
        visitor,
    };
    let s = tree::walk(&mut fs, &mut a).map_err(|source| WalkError::ReadExt { source })?;
    Ok(WalkStats {
        entries: s.entries,
        unreadable: s.damaged,
        stopped: s.stopped,
    })
}

struct Walker<'v> {
    full: Vec<u8>,
    root_len: usize,
    dev: (u32, u32),
    stats: WalkStats,
    visitor: &'v mut dyn Visitor,
}

/// Directories with at least this many entries have their entries stat'ed by several threads.
const PARALLEL_MIN: usize = 128;
/// Entries one thread takes at a time.
const STAT_CHUNK: usize = 64;

/// Threads stat'ing one large directory: more than the CPUs, because most of a cold `statx` is
/// waiting for an inode-table block, and each thread keeps one such read in flight.
fn stat_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cpus * 2).clamp(4, 8)
}

/// The names of one directory, NUL-terminated, in one buffer (one allocation per directory).
#[derive(Default)]
struct Names {
    bytes: Vec<u8>,
    /// Start of each name in `bytes`; the name runs to its NUL.
    starts: Vec<usize>,
}

impl Names {
    fn get(&self, i: usize) -> &CStr {
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
        // Each name was pushed with exactly one trailing NUL and holds none inside (a directory
        // entry's name cannot), so this never fails; an empty name stands in if it ever did.
        CStr::from_bytes_with_nul(&self.bytes[start..end]).unwrap_or(c"")
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// `statx` of every name in `dirfd`, in the names' order; several threads share a large directory so
/// that many inode reads are in flight at once (a fresh mount over a loop device otherwise waits for
/// each inode-table block in turn).
fn stat_all(fd: RawFd, names: &Names) -> Vec<io::Result<Meta>> {
    let n = names.len();
    if n < PARALLEL_MIN {
        return (0..n).map(|i| statx_at(fd, names.get(i), 0)).collect();
    }
    let mut out: Vec<Option<io::Result<Meta>>> = (0..n).map(|_| None).collect();
    let threads = stat_threads().min(n.div_ceil(STAT_CHUNK));
    let chunks = std::sync::Mutex::new(out.chunks_mut(STAT_CHUNK).enumerate());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = match chunks.lock() {
                        Ok(mut it) => it.next(),
                        Err(_) => None,
                    };
                    let Some((c, slots)) = next else { return };
                    for (k, slot) in slots.iter_mut().enumerate() {
                        *slot = Some(statx_at(fd, names.get(c * STAT_CHUNK + k), 0));
                    }
                }
            });
        }
    });
    out.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| statx_at(fd, names.get(i), 0)))
        .collect()
}

impl Walker<'_> {
    /// Walks the open directory whose path (with a trailing `/`) is `self.full`: lists it, stats its
    /// entries (in parallel when there are many), then visits them in the directory's order.
    fn dir(&mut self, mut dir: Dir, depth: usize) {
        let fd = dir.as_raw_fd();
        let base = self.full.len();
        let mut names = Names::default();
        let mut list_error = None;
        for item in dir.iter() {
            match item {
                Ok(i) => {
                    let bytes = i.file_name().to_bytes_with_nul();
                    if bytes == b".\0" || bytes == b"..\0" {
                        continue;
                    }
                    names.starts.push(names.bytes.len());
                    names.bytes.extend_from_slice(bytes);
                }
                Err(e) => {
                    list_error = Some(io::Error::from(e));
                    break;
                }
            }
        }
        let metas = stat_all(fd, &names);
        for (i, meta) in metas.into_iter().enumerate() {
            if self.stats.stopped {
                return;
            }
            let name = names.get(i);
            self.full.truncate(base);
            self.full.extend_from_slice(name.to_bytes());
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    self.stats.unreadable += 1;
                    self.visitor.unreadable(&self.full[self.root_len..], &e);
                    continue;
                }
            };
            self.stats.entries += 1;
            let other_filesystem = meta.kind == FileKind::Dir && meta.dev != self.dev;
            let visit = self.visitor.entry(&Entry {
                full: &self.full,
                root_len: self.root_len,
                origin: Origin::Dir { dirfd: fd, name },
                depth,
                meta,
                other_filesystem,
            });
            match visit {
                Visit::Stop => {
                    self.stats.stopped = true;
                    return;
                }
                Visit::Skip => continue,
                Visit::Continue => {}
            }
            if meta.kind != FileKind::Dir || other_filesystem {
                continue;
            }
            // SAFETY: `fd` belongs to `dir`, which stays open for the whole loop.
            let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match Dir::openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => {
                    self.full.push(b'/');
                    self.dir(sub, depth + 1);
                }
                Err(e) => {
                    self.stats.unreadable += 1;
                    self.visitor
                        .unreadable(&self.full[self.root_len..], &io::Error::from(e));
                }
            }
        }
        self.full.truncate(base);
        if let Some(e) = list_error {
            self.stats.unreadable += 1;
            let rel = &self.full[self.root_len..base];
            self.visitor
                .unreadable(rel.strip_suffix(b"/").unwrap_or(rel), &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[derive(Default)]
    struct Collect {
        seen: BTreeMap<Vec<u8>, (Meta, Vec<u8>)>,
        bad: Vec<(Vec<u8>, i32)>,
    }

    impl Visitor for Collect {
        fn entry(&mut self, e: &Entry<'_>) -> Visit {
            assert_eq!(e.inner_path()[0], b'/');
            assert_eq!(&e.inner_path()[1..], e.rel_path());
            assert!(e.rel_path().ends_with(e.name()));
            self.seen.insert(
                e.rel_path().to_vec(),
                (e.meta, e.host_path().as_os_str().as_bytes().to_vec()),
            );
            if e.name() == b"skipme" {
                Visit::Skip
            } else {
                Visit::Continue
            }
        }
        fn unreadable(&mut self, path: &[u8], error: &io::Error) {
            self.bad
                .push((path.to_vec(), error.raw_os_error().unwrap_or(0)));
        }
    }

    #[test]
    fn walks_every_entry_without_following_symlinks_and_keeps_raw_names() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/ssh")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::set_permissions(
            r.join("etc/passwd"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        let raw = OsStr::from_bytes(b"caf\xe9");
        std::fs::write(r.join("etc").join(raw), b"x").unwrap();
        // A symlink to a directory outside the root: reported as a symlink, never entered.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        symlink(outside.path(), r.join("etc/out")).unwrap();
        std::fs::create_dir(r.join("skipme")).unwrap();
        std::fs::write(r.join("skipme/hidden"), b"h").unwrap();

        let mut c = Collect::default();
        let stats = walk(r, &mut c).unwrap();
        let keys: Vec<&[u8]> = c.seen.keys().map(|k| k.as_slice()).collect();
        assert_eq!(
            keys,
            [
                &b"etc"[..],
                b"etc/caf\xe9",
                b"etc/out",
                b"etc/passwd",
                b"etc/ssh",
                b"skipme"
            ]
        );
        assert_eq!(stats.entries, 6);
        let (passwd, host) = &c.seen[&b"etc/passwd"[..]];
        assert_eq!(passwd.kind, FileKind::File);
        assert_eq!(passwd.mode, 0o4755);
        assert_eq!(passwd.size, 26);
        assert_eq!(host.as_slice(), r.join("etc/passwd").as_os_str().as_bytes());
        let std_meta = std::fs::symlink_metadata(r.join("etc/passwd")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(passwd.inode, std_meta.ino());
        assert_eq!(passwd.mtime.secs, std_meta.mtime());
        assert_eq!(i64::from(passwd.mtime.nanos), std_meta.mtime_nsec());
        assert_eq!(passwd.ctime.secs, std_meta.ctime());
        assert_eq!(c.seen[&b"etc/out"[..]].0.kind, FileKind::Symlink);
        assert!(c.bad.is_empty());
    }

    #[test]
    fn a_large_directory_stated_in_parallel_gives_every_entry_in_its_own_order() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let n = PARALLEL_MIN * 3 + 7;
        for i in 0..n {
            // Sizes differ, so a result given to the wrong name would show.
            std::fs::write(r.join(format!("f{i}")), vec![b'x'; i]).unwrap();
        }
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/inner"), b"1234").unwrap();

        struct Ordered(Vec<(Vec<u8>, Meta)>);
        impl Visitor for Ordered {
            fn entry(&mut self, e: &Entry<'_>) -> Visit {
                self.0.push((e.rel_path().to_vec(), e.meta));
                Visit::Continue
            }
            fn unreadable(&mut self, path: &[u8], error: &io::Error) {
                panic!("{path:?}: {error}");
            }
        }
        let mut v = Ordered(Vec::new());
        let stats = walk(r, &mut v).unwrap();
        assert_eq!(stats.entries as usize, n + 2);
        // The root's entries in the order the directory lists them (std reads the same getdents).
        let listed: Vec<Vec<u8>> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        let top: Vec<Vec<u8>> =
            v.0.iter()
                .filter(|(p, _)| !p.contains(&b'/'))
                .map(|(p, _)| p.clone())
                .collect();
        assert_eq!(top, listed);
        use std::os::unix::fs::MetadataExt;
        for (p, m) in &v.0 {
            let host = r.join(OsStr::from_bytes(p));
            let std_meta = std::fs::symlink_metadata(&host).unwrap();
            assert_eq!(m.inode, std_meta.ino(), "{}", host.display());
            assert_eq!(m.size, std_meta.size(), "{}", host.display());
        }
        let sub = v.0.iter().position(|(p, _)| p == b"sub").unwrap();
        let inner = v.0.iter().position(|(p, _)| p == b"sub/inner").unwrap();
        assert_eq!(inner, sub + 1, "a directory's children follow it");
    }

    /// Removes `locked` as soon as the walker has seen it, so opening it fails whoever runs the
    /// test (root reads a mode 000 directory, so permissions alone would not do).
    struct Vanish<'a>(Collect, &'a Path);

    impl Visitor for Vanish<'_> {
        fn entry(&mut self, e: &Entry<'_>) -> Visit {
            if e.name() == b"locked" {
                std::fs::remove_file(self.1.join("locked/x")).unwrap();
                std::fs::remove_dir(self.1.join("locked")).unwrap();
            }
            self.0.entry(e)
        }
        fn unreadable(&mut self, path: &[u8], error: &io::Error) {
            self.0.unreadable(path, error)
        }
    }

    #[test]
    fn an_unreadable_directory_is_reported_and_the_walk_goes_on() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir(r.join("locked")).unwrap();
        std::fs::write(r.join("locked/x"), b"x").unwrap();
        std::fs::create_dir(r.join("after")).unwrap();
        std::fs::write(r.join("after/z"), b"z").unwrap();
        let mut v = Vanish(Collect::default(), r);
        let stats = walk(r, &mut v).unwrap();
        assert_eq!(stats.unreadable, 1);
        assert_eq!(v.0.bad, [(b"locked".to_vec(), libc::ENOENT)]);
        assert!(v.0.seen.contains_key(&b"after/z"[..]), "the walk went on");
    }

    #[test]
    fn a_mount_point_is_reported_but_never_entered() {
        if !crate::testing::can_attach_loop_devices() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir(r.join("proc")).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &r.join("proc"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(r.join("proc/inside"), b"i").unwrap();
        let mut c = Collect::default();
        let r1 = walk(r, &mut c);
        nix::mount::umount2(&r.join("proc"), nix::mount::MntFlags::MNT_DETACH).unwrap();
        r1.unwrap();
        assert!(c.seen.contains_key(&b"proc"[..]));
        assert!(!c.seen.contains_key(&b"proc/inside"[..]), "not entered");
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let err = walk(Path::new("/nonexistent/root"), &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/root"));
    }
}
