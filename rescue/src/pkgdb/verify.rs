//! Comparing package files on disk with what the database recorded: digest, presence, file type,
//! permissions, owner and group, symlink target (as far as the database records them). Files are
//! hashed in parallel on worker threads, streamed through a fixed buffer, opened beneath the root
//! with `O_NOFOLLOW` ([`super::root`]); results come back to the caller's thread, which reports
//! progress. Where the caller has the root's ext filesystem at hand ([`ByInode`]), a file found by
//! that `lstat` is read by its inode number through [`crate::extfs`] instead of being opened: no
//! open, no page cache of the mount, large reads from the image; the mount still resolves every path
//! and gives every fact compared, so the findings are the same.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::root::Root;
use super::{DigestAlgo, FileEntry, FileKind, PackageDb, PkgDbError, checks};

/// What changed about one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The file is gone.
    Missing,
    /// The content differs (hex digests).
    Digest {
        algorithm: DigestAlgo,
        expected: String,
        found: String,
    },
    /// Something else is where the file was (a symlink, a directory, a FIFO …).
    FileType {
        expected: FileKind,
        found: FileKind,
    },
    /// Permission bits (`0o7777`) differ.
    Mode {
        expected: u32,
        found: u32,
    },
    User {
        expected: String,
        found: String,
    },
    Group {
        expected: String,
        found: String,
    },
    LinkTarget {
        expected: String,
        found: String,
    },
    /// The file exists but could not be read (the error, in words).
    Unreadable {
        error: String,
    },
}

/// A package file that is not as installed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// Absolute path inside the root, as the package lists it (after dpkg diversions).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub package: String,
    /// A configuration file (dpkg conffile, rpm `%config`): an administrator may legitimately change
    /// it, so a change weighs less than one of a binary or library.
    pub config: bool,
    pub changes: Vec<Change>,
}

fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Where a verification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    /// Bytes the database expects to hash (0 where it does not record sizes).
    pub bytes_total: u64,
}

/// Names of uids and gids from the root's own `/etc/passwd` and `/etc/group` (read, never run).
#[derive(Debug, Default)]
struct Accounts {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

fn parse_ids(bytes: &[u8]) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        let mut f = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) else {
            continue;
        };
        out.entry(id)
            .or_insert_with(|| String::from_utf8_lossy(name).into_owned());
    }
    out
}

impl Accounts {
    fn load(root: &Root) -> Accounts {
        Accounts {
            users: parse_ids(&root.read(b"/etc/passwd").unwrap_or_default()),
            groups: parse_ids(&root.read(b"/etc/group").unwrap_or_default()),
        }
    }

    fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

/// A streaming hasher of one algorithm.
enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(a: DigestAlgo) -> Hasher {
        use sha2::Digest;
        match a {
            DigestAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            DigestAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            DigestAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha384(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// Hashes a reader through `buf`, returning the digest and the byte count.
pub(crate) fn hash_stream(
    mut r: impl Read,
    algo: DigestAlgo,
    buf: &mut [u8],
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut h = Hasher::new(algo);
    let mut n = 0u64;
    loop {
        match r.read(buf) {
            Ok(0) => return Ok((h.finish(), n)),
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The ext filesystem of the root being verified (the bytes of the mounted filesystem, read by
/// [`crate::extfs`]), to read package files by inode number.
pub struct ByInode<'a> {
    pub fs: &'a crate::extfs::ExtFs<'a>,
    /// `st_dev` of the mounted root: a file on another device is not in `fs`.
    pub dev: u64,
}

impl ByInode<'_> {
    /// Hashes the regular file an `lstat` through the mount found (`st`) from its inode; `None`
    /// when the inode is not that file as the mount sees it (another device, another size, mode,
    /// owner or mtime) or cannot be read, and the caller opens it through the mount instead.
    fn hash(
        &self,
        st: &nix::sys::stat::FileStat,
        algo: DigestAlgo,
        buf: &mut Vec<u8>,
    ) -> Option<(Vec<u8>, u64)> {
        if st.st_dev != self.dev {
            return None;
        }
        let inode = self.fs.inode_uncached(st.st_ino).ok()?;
        let same = u32::from(inode.mode) == st.st_mode
            && i64::try_from(inode.size).ok() == Some(st.st_size)
            && (inode.uid, inode.gid) == (st.st_uid, st.st_gid)
            && (inode.mtime.secs, i64::from(inode.mtime.nanos)) == (st.st_mtime, st.st_mtime_nsec);
        if !same {
            return None;
        }
        let mut h = Hasher::new(algo);
        let n = crate::extfs::file::read_contents(self.fs, st.st_ino, &inode, buf, &mut |b| {
            h.update(b)
        })
        .ok()?;
        Some((h.finish(), n))
    }
}

/// Whether an entry has anything to check.
fn checkable(f: &FileEntry) -> bool {
    f.digest.is_some()
        || (f.checks & checks::MODE != 0 && (f.perms.is_some() || f.kind.is_some()))
        || (f.checks & checks::USER != 0 && f.user.is_some())
        || (f.checks & checks::LINKTO != 0 && f.link_target.is_some())
}

/// Checks one entry; `None` when it is as installed. Also returns the bytes hashed.
fn check_one(
    root: &Root,
    ext: Option<&ByInode<'_>>,
    acc: &Accounts,
    f: &FileEntry,
    buf: &mut Vec<u8>,
) -> (Vec<Change>, u64) {
    let mut changes = Vec::new();
    let (fd, st) = match root.lstat(&f.path) {
        Ok(x) => x,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
            ) =>
        {
            if !f.missing_ok {
                changes.push(Change::Missing);
            }
            return (changes, 0);
        }
        Err(e) => {
            changes.push(Change::Unreadable {
                error: e.to_string(),
            });
            return (changes, 0);
        }
    };
    let found = FileKind::from_mode(st.st_mode);
    if let Some(expected) = f.kind
        && expected != found
    {
        changes.push(Change::FileType { expected, found });
        return (changes, 0);
    }
    let perms = st.st_mode & 0o7777;
    if f.checks & checks::MODE != 0
        && found != FileKind::Symlink
        && let Some(expected) = f.perms
        && perms != expected
    {
        changes.push(Change::Mode {
            expected,
            found: perms,
        });
    }
    if f.checks & checks::USER != 0
        && let Some(expected) = &f.user
    {
        let name = acc.user(st.st_uid);
        if &name != expected {
            changes.push(Change::User {
                expected: expected.clone(),
                found: name,
            });
        }
    }
    if f.checks & checks::GROUP != 0
        && let Some(expected) = &f.group
    {
        let name = acc.group(st.st_gid);
        if &name != expected {
            changes.push(Change::Group {
                expected: expected.clone(),
                found: name,
            });
        }
    }
    if found == FileKind::Symlink {
        if let (Some(expected), true) = (&f.link_target, f.checks & checks::LINKTO != 0) {
            match Root::readlink(&fd) {
                Ok(t) if &t == expected => {}
                Ok(t) => changes.push(Change::LinkTarget {
                    expected: String::from_utf8_lossy(expected).into_owned(),
                    found: String::from_utf8_lossy(&t).into_owned(),
                }),
                Err(e) => changes.push(Change::Unreadable {
                    error: e.to_string(),
                }),
            }
        }
        if f.digest.is_some() && f.kind.is_none() {
            // dpkg lists a digest only for regular files: a symlink planted in place of one.
            changes.push(Change::FileType {
                expected: FileKind::Regular,
                found,
            });
        }
        return (changes, 0);
    }
    drop(fd);
    let mut bytes = 0;
    if let (Some((algo, expected)), true) = (&f.digest, f.checks & checks::DIGEST != 0) {
        if found != FileKind::Regular {
            changes.push(Change::FileType {
                expected: FileKind::Regular,
                found,
            });
            return (changes, 0);
        }
        let by_inode = ext.and_then(|e| e.hash(&st, *algo, buf));
        match by_inode.map_or_else(
            || {
                root.open_seen(&f.path, &st)
                    .and_then(|file| hash_stream(file, *algo, buf))
            },
            Ok,
        ) {
            Ok((digest, n)) => {
                bytes = n;
                if digest[..] != expected[..] {
                    changes.push(Change::Digest {
                        algorithm: *algo,
                        expected: hex::encode(expected),
                        found: hex::encode(digest),
                    });
                }
            }
            Err(e) => changes.push(Change::Unreadable {
                error: e.to_string(),
            }),
        }
    }
    (changes, bytes)
}

/// How many files a worker takes at once (fewer trips to the shared counter).
const CHUNK: usize = 32;
const BUF: usize = 256 * 1024;

pub(super) fn verify(
    db: &PackageDb,
    root_path: &Path,
    ext: Option<&ByInode<'_>>,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<Vec<Changed>, PkgDbError> {
    let root = Root::open(root_path).map_err(|source| PkgDbError::OpenRoot {
        path: root_path.to_owned(),
        source,
    })?;
    let acc = Accounts::load(&root);
    let work: Vec<&FileEntry> = db.files.iter().filter(|f| checkable(f)).collect();
    let mut p = VerifyProgress {
        files_done: 0,
        files_total: work.len() as u64,
        bytes_done: 0,
        bytes_total: work.iter().filter_map(|f| f.size).sum(),
    };
    progress(p);
    // Reading from disk overlaps with hashing: more threads than cores keep the queue of a disk full.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 16)
        * 2;
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, Vec<Change>, u64)>(1024);
    let mut out = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..threads.min(work.len().div_ceil(CHUNK).max(1)) {
            let tx = tx.clone();
            let (work, next, root, acc) = (&work, &next, &root, &acc);
            s.spawn(move || {
                let mut buf = vec![0u8; BUF];
                loop {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if start >= work.len() {
                        return;
                    }
                    let end = (start + CHUNK).min(work.len());
                    for (i, f) in work[start..end].iter().enumerate() {
                        let (changes, n) = check_one(root, ext, acc, f, &mut buf);
                        if tx.send((start + i, changes, n)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        for (i, changes, n) in rx {
            p.files_done += 1;
            p.bytes_done += n;
            progress(p);
            if changes.is_empty() {
                continue;
            }
            let f = work[i];
            out.push(Changed {
                path: f.path().to_owned(),
                package: db.package_of(f).name.clone(),
                config: f.config,
                changes,
            });
        }
    });
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.package.cmp(&b.package)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_stream_through_a_small_buffer() {
        let data = vec![7u8; 100_000];
        let mut buf = [0u8; 4096];
        let (d, n) = hash_stream(&data[..], DigestAlgo::Sha256, &mut buf).unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(hex::encode(d), crate::reinstall::apt::sha256_hex(&data));
        let (d, _) = hash_stream(&b"abc"[..], DigestAlgo::Md5, &mut buf).unwrap();
        assert_eq!(hex::encode(d), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn account_names_come_from_the_roots_files() {
        let ids = parse_ids(
            b"root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\nbad\nwww:x:33:33::/:\n",
        );
        assert_eq!(
            ids[&0], "root",
            "the first name of a uid is the one ls shows"
        );
        assert_eq!(ids[&33], "www");
    }
}
