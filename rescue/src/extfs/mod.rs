//! A read-only reader of ext2, ext3 and ext4 filesystems, made for the body file: it lists every name
//! below the root with its inode's facts without mounting, so no kernel inode is created and none has
//! to be evicted afterwards.
//!
//! It reads through [`crate::acquire::source::ReadAt`] (an image file, a partition of one, a block
//! device, the image of an acquisition: [`Window`] cuts a partition out of it): the superblock
//! ([`layout`]; 32- and 64-bit group descriptors, flex_bg, meta_bg), each group's inode table in one
//! sequential read of its used part (`bg_itable_unused`, `INODE_UNINIT`), inodes with their extra
//! times and high uid/gid/size bits ([`inode`]), extent trees and classic block maps ([`blocks`]),
//! directories block by block, htree ones too, and inline data ([`dir`]), and the tree from inode 2
//! down ([`tree`]).
//!
//! Like `mount -o ro,noload` it never replays the journal; it never writes. A feature it cannot read
//! (encryption, compression, a journal device, Lustre's dirdata) is refused with an error naming it,
//! so the caller can fall back to mounting. Damage below the superblock (a directory block whose
//! records do not add up, an entry naming a free inode, an extent tree that loops) is counted and
//! skipped with a note; nothing on the device can make it panic or allocate beyond what the device
//! itself holds.
//!
//! Memory: the inode tables of recently used groups (at most [`ITABLE_CACHE`] bytes, 16 MiB), the
//! entries of each directory on the current path (its names, and 8 bytes per entry), and one 4-byte
//! inode number per directory already entered (a directory is never entered twice, so a corrupt tree
//! cannot loop).
//!
//! Never: write, replay the journal, follow a symlink, print.

pub mod blocks;
pub mod dir;
pub mod file;
pub mod inode;
pub mod layout;
pub mod tree;

use std::io;

use crate::acquire::source::ReadAt;

pub use inode::{Inode, Time};
pub use layout::Superblock;

/// Bytes of inode tables kept in memory (least recently used group out first). The knee, measured
/// walking two 200 000-file images with 4 to 64 MiB (docs/benchmarks.md): a `mke2fs -d` image reads
/// each table once at any size; a tree the kernel wrote (Orlov spreads directories over the groups)
/// reads 1.33× its tables at 4 MiB, 1.19× at 8, 1.11× at 16 and 1.0× from 32. Re-reads matter on a
/// block device (`O_DIRECT`, no page cache); memory matters in a RAM-only system: 16 MiB keeps the
/// walk's peak RSS near 20–23 MiB, where 64 MiB made it 52–58.
pub const ITABLE_CACHE: usize = 16 << 20;

/// Errors reading an ext filesystem as a whole, or one of its parts.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    #[error("reading {len} bytes at byte {offset} of the filesystem")]
    Read {
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("no ext2/3/4 superblock (magic {magic:#06x} at byte 1080, not 0xef53)")]
    NotExt { magic: u16 },
    #[error("the superblock is not plausible: {0}")]
    BadSuperblock(String),
    #[error("the filesystem uses {0}, which this reader cannot read")]
    Unsupported(String),
    #[error("inode {inode}: {why}")]
    BadInode { inode: u64, why: String },
}

/// A byte range of a [`ReadAt`] (a partition of a disk image) as a volume of its own.
pub struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
}

impl<R: ReadAt> Window<R> {
    pub fn new(inner: R, start: u64, len: u64) -> Self {
        Window { inner, start, len }
    }

    /// The length of the volume in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the volume holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<R: ReadAt> ReadAt for Window<R> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = usize::try_from(self.len - offset).map_or(buf.len(), |r| r.min(buf.len()));
        let Some(at) = self.start.checked_add(offset) else {
            return Ok(0);
        };
        self.inner.read_at(&mut buf[..n], at)
    }
}

/// An opened filesystem: its superblock, group descriptors and a cache of inode tables.
pub struct ExtFs<'r> {
    /// `Sync`, so that threads can share one opened filesystem for reads that need no cache
    /// ([`ExtFs::inode_uncached`], [`file::read_contents`]).
    vol: &'r (dyn ReadAt + Sync),
    /// The volume's length in bytes (reads past it fail).
    vol_len: u64,
    pub sb: Superblock,
    groups: Vec<layout::Group>,
    /// The used part of each group's inode table, for the groups read recently.
    itables: Vec<Option<Box<[u8]>>>,
    /// Groups in `itables`, least recently used first, and their bytes.
    loaded: std::collections::VecDeque<u32>,
    cached: usize,
    /// At most this many bytes in `itables` ([`ITABLE_CACHE`] unless set).
    cache_limit: usize,
    /// Bytes of inode tables read so far (more than the tables hold when the cache was too small).
    itable_read: u64,
    /// Groups whose inode table could not be read (each reported once).
    bad_groups: std::collections::HashMap<u32, String>,
}

impl<'r> ExtFs<'r> {
    /// Reads the superblock and group descriptors of the filesystem in `vol` (`vol_len` bytes long).
    pub fn open(vol: &'r (dyn ReadAt + Sync), vol_len: u64) -> Result<Self, ExtError> {
        let mut raw = vec![0u8; 1024];
        read_exact(vol, &mut raw, 1024)?;
        let sb = Superblock::parse(&raw)?;
        sb.check_features()?;
        let groups = layout::read_groups(vol, vol_len, &sb)?;
        let n = groups.len();
        Ok(ExtFs {
            vol,
            vol_len,
            sb,
            groups,
            itables: (0..n).map(|_| None).collect(),
            loaded: Default::default(),
            cached: 0,
            cache_limit: ITABLE_CACHE,
            itable_read: 0,
            bad_groups: Default::default(),
        })
    }

    /// Reads `buf.len()` bytes at `offset`, all or an error.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), ExtError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.vol_len) {
            return Err(ExtError::Read {
                offset,
                len: buf.len(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("past the end of the volume ({} bytes)", self.vol_len),
                ),
            });
        }
        read_exact(self.vol, buf, offset)
    }

    /// Reads `count` blocks from block `block` into `buf` (resized to fit).
    pub fn read_blocks(&self, buf: &mut Vec<u8>, block: u64, count: u64) -> Result<(), ExtError> {
        let bs = u64::from(self.sb.block_size);
        let len = count.saturating_mul(bs);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let offset = block.saturating_mul(bs);
        if offset.saturating_add(len as u64) > self.vol_len {
            return Err(ExtError::Read {
                offset,
                len,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("past the end of the volume ({} bytes)", self.vol_len),
                ),
            });
        }
        buf.clear();
        buf.resize(len, 0);
        self.read(buf, offset)
    }

    /// The volume's length in bytes.
    pub fn volume_len(&self) -> u64 {
        self.vol_len
    }

    /// Keeps at most `bytes` of inode tables in memory (at least the one group in use).
    pub fn set_cache_limit(&mut self, bytes: usize) {
        self.cache_limit = bytes;
    }

    /// Bytes of inode tables read so far: each table once when the cache holds them all, more when
    /// groups had to be read again.
    pub fn itable_bytes_read(&self) -> u64 {
        self.itable_read
    }

    /// The group of inode `ino` (1-based) and its index in that group's inode table; an error for a
    /// number outside the filesystem's inodes.
    fn locate(&self, ino: u64) -> Result<(u64, u64), ExtError> {
        if ino == 0 || ino > u64::from(self.sb.inodes_count) {
            return Err(ExtError::BadInode {
                inode: ino,
                why: format!("outside the filesystem's {} inodes", self.sb.inodes_count),
            });
        }
        let ipg = u64::from(self.sb.inodes_per_group);
        Ok(((ino - 1) / ipg, (ino - 1) % ipg))
    }

    /// Reads inode `ino` (1-based), through the cache of inode tables.
    pub fn inode(&mut self, ino: u64) -> Result<Inode, ExtError> {
        let (group, index) = self.locate(ino)?;
        let group = u32::try_from(group).unwrap_or(u32::MAX);
        let index = index as usize;
        let isz = self.sb.inode_size as usize;
        self.load_itable(group)
            .map_err(|why| ExtError::BadInode { inode: ino, why })?;
        let table = self.itables[group as usize].as_deref().unwrap_or(&[]);
        let Some(raw) = table.get(index * isz..(index + 1) * isz) else {
            return Err(ExtError::BadInode {
                inode: ino,
                why: format!(
                    "in the unused part of group {group}'s inode table (the group says it uses {} inodes)",
                    table.len() / isz
                ),
            });
        };
        Inode::parse(raw, &self.sb).map_err(|why| ExtError::BadInode { inode: ino, why })
    }

    /// Reads inode `ino` (1-based) by itself, past the cache of inode tables: for a reader that
    /// wants a few inodes in no particular order, possibly on several threads at once.
    pub fn inode_uncached(&self, ino: u64) -> Result<Inode, ExtError> {
        let sb = &self.sb;
        let (group, index) = self.locate(ino)?;
        let Some(grp) = usize::try_from(group).ok().and_then(|g| self.groups.get(g)) else {
            return Err(ExtError::BadInode {
                inode: ino,
                why: format!("in group {group}, which does not exist"),
            });
        };
        if index >= u64::from(grp.used_inodes(sb)) {
            return Err(ExtError::BadInode {
                inode: ino,
                why: format!("in the unused part of group {group}'s inode table"),
            });
        }
        let isz = u64::from(sb.inode_size);
        let offset = grp
            .inode_table
            .saturating_mul(u64::from(sb.block_size))
            .saturating_add(index * isz);
        let mut raw = vec![0u8; sb.inode_size as usize];
        self.read(&mut raw, offset)?;
        Inode::parse(&raw, sb).map_err(|why| ExtError::BadInode { inode: ino, why })
    }

    /// The used part of group `g`'s inode table, read in one piece on first use.
    fn load_itable(&mut self, g: u32) -> Result<(), String> {
        let gi = g as usize;
        if gi >= self.groups.len() {
            return Err(format!("group {g} does not exist"));
        }
        if self.itables[gi].is_some() {
            // Least recently used leaves first: a group in use moves to the back (a walk comes back
            // to its parent directories' groups after each subtree).
            if self.loaded.back() != Some(&g)
                && let Some(at) = self.loaded.iter().position(|&x| x == g)
            {
                self.loaded.remove(at);
                self.loaded.push_back(g);
            }
            return Ok(());
        }
        if let Some(why) = self.bad_groups.get(&g) {
            return Err(why.clone());
        }
        let grp = self.groups[gi];
        let used = grp.used_inodes(&self.sb) as usize;
        let len = used * self.sb.inode_size as usize;
        let offset = grp
            .inode_table
            .saturating_mul(u64::from(self.sb.block_size));
        let mut buf = vec![0u8; 0];
        if len > 0 {
            if offset.saturating_add(len as u64) > self.vol_len {
                let why = format!(
                    "group {g}'s inode table (block {}) lies past the end of the volume",
                    grp.inode_table
                );
                self.bad_groups.insert(g, why.clone());
                return Err(why);
            }
            buf.resize(len, 0);
            if let Err(e) = self.read(&mut buf, offset) {
                let why = format!("group {g}'s inode table: {}", crate::error_chain(&e));
                self.bad_groups.insert(g, why.clone());
                return Err(why);
            }
        }
        self.itable_read += len as u64;
        while self.cached + len > self.cache_limit {
            let Some(old) = self.loaded.pop_front() else {
                break;
            };
            if let Some(b) = self.itables[old as usize].take() {
                self.cached -= b.len();
            }
        }
        self.cached += len;
        self.loaded.push_back(g);
        self.itables[gi] = Some(buf.into_boxed_slice());
        Ok(())
    }
}

/// Reads all of `buf` at `offset`; a short read is an error.
fn read_exact(vol: &dyn ReadAt, buf: &mut [u8], offset: u64) -> Result<(), ExtError> {
    let mut done = 0;
    while done < buf.len() {
        match vol.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(ExtError::Read {
                    offset,
                    len: buf.len(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the volume ended after {done} bytes"),
                    ),
                });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ExtError::Read {
                    offset,
                    len: buf.len(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// A byte slice as a volume (unit tests and fuzz targets).
#[cfg(test)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

#[cfg(test)]
impl ReadAt for Bytes<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(rest) = usize::try_from(offset).ok().and_then(|o| self.0.get(o..)) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::tree::{Found, Step, TreeVisitor};
    use super::*;

    /// Every path with its inode, mode and symlink target; damage as (path, why).
    #[derive(Default)]
    pub(super) struct Collect {
        pub seen: Vec<(String, u64, u16, Option<String>)>,
        pub damaged: Vec<(String, String)>,
    }

    impl TreeVisitor for Collect {
        fn found(&mut self, f: &Found<'_>) -> Step {
            self.seen.push((
                String::from_utf8_lossy(f.path).into_owned(),
                f.ino,
                f.inode.mode,
                f.link_target
                    .map(|t| String::from_utf8_lossy(t).into_owned()),
            ));
            Step::Continue
        }
        fn damaged(&mut self, path: &[u8], why: &str) {
            self.damaged
                .push((String::from_utf8_lossy(path).into_owned(), why.to_owned()));
        }
    }

    pub(super) fn seed(zst: &[u8]) -> Vec<u8> {
        zstd::decode_all(zst).unwrap_or_else(|e| panic!("seed image: {e}"))
    }

    /// `mke2fs -t ext4 -b 1024 -N 64 -O ^has_journal,inline_data,metadata_csum,64bit -d TREE`: `inl`
    /// is an inline directory, `d/sub` holds 40 names, `d/ll` is a symlink of 80 bytes (in a block).
    #[test]
    fn a_small_ext4_lists_inline_dirs_block_dirs_and_both_kinds_of_symlink() {
        let img = seed(include_bytes!("../fuzz-seeds/ext4-small.img.zst"));
        let vol = Bytes(&img);
        let mut fs = ExtFs::open(&vol, img.len() as u64).unwrap();
        assert!(fs.sb.has(layout::incompat::INLINE_DATA));
        assert_eq!(fs.sb.desc_size, 64);
        let mut c = Collect::default();
        let stats = tree::walk(&mut fs, &mut c).unwrap();
        assert!(c.damaged.is_empty(), "{:?}", c.damaged);
        let paths: Vec<&str> = c.seen.iter().map(|s| s.0.as_str()).collect();
        for p in [
            "lost+found",
            "d/a",
            "d/sub",
            "d/sub/name-number-40",
            "inl/b",
        ] {
            assert!(paths.contains(&p), "{p} in {paths:?}");
        }
        assert_eq!(stats.entries as usize, 8 + 40);
        let link = |p: &str| c.seen.iter().find(|s| s.0 == p).unwrap().3.clone();
        assert_eq!(link("d/l").as_deref(), Some("a"));
        assert_eq!(link("d/ll"), Some("y".repeat(80)));
    }

    #[test]
    fn an_ext2_block_map_lists_the_same_tree() {
        let img = seed(include_bytes!("../fuzz-seeds/ext2-small.img.zst"));
        let vol = Bytes(&img);
        let mut fs = ExtFs::open(&vol, img.len() as u64).unwrap();
        assert!(!fs.sb.has(layout::incompat::EXTENTS));
        let mut c = Collect::default();
        tree::walk(&mut fs, &mut c).unwrap();
        assert!(c.damaged.is_empty(), "{:?}", c.damaged);
        assert_eq!(c.seen.len(), 8 + 40);
        let link = |p: &str| c.seen.iter().find(|s| s.0 == p).unwrap().3.clone();
        assert_eq!(link("d/ll"), Some("y".repeat(80)));
    }

    /// `mke2fs -q -t ext4 -b 1024 -g 1024 -N 512 -O ^has_journal -d TREE IMG 4M`: TREE holds `a`..`e`,
    /// each with 40 files and `sub` holding 10, and `e/hardlink-to-a-f1` (a name in group 2 for an
    /// inode in group 0, so the walk comes back to a group it left); three groups of 128 inodes.
    #[test]
    fn a_cache_smaller_than_the_inode_tables_lists_the_same_tree_reading_groups_again() {
        let img = seed(include_bytes!("../fuzz-seeds/ext4-groups.img.zst"));
        let vol = Bytes(&img);
        let walk = |limit: Option<usize>| {
            let mut fs = ExtFs::open(&vol, img.len() as u64).unwrap();
            if let Some(l) = limit {
                fs.set_cache_limit(l);
            }
            let mut c = Collect::default();
            tree::walk(&mut fs, &mut c).unwrap();
            assert!(c.damaged.is_empty(), "{:?}", c.damaged);
            let tables: u64 = fs
                .groups
                .iter()
                .map(|g| u64::from(g.used_inodes(&fs.sb)) * u64::from(fs.sb.inode_size))
                .sum();
            (c.seen, fs.itable_bytes_read(), tables)
        };
        let (all, once, tables) = walk(None);
        // lost+found, the hard link, and per directory itself, 40 files, `sub` and its 10.
        assert_eq!(all.len(), 2 + 5 * (1 + 40 + 1 + 10));
        assert_eq!(once, tables, "each group's table read once");
        let (small, again, _) = walk(Some(1));
        assert_eq!(small, all);
        assert!(
            again > once,
            "one group at a time reads some again: {again} vs {once}"
        );
    }

    #[test]
    fn a_truncated_image_and_a_refused_feature_are_errors_naming_what_is_wrong() {
        let img = seed(include_bytes!("../fuzz-seeds/ext4-small.img.zst"));
        let short = &img[..1500];
        let e = ExtFs::open(&Bytes(short), short.len() as u64)
            .err()
            .unwrap();
        assert!(crate::error_chain(&e).contains("ended after"), "{e}");
        let mut enc = img.clone();
        enc[1024 + 0x62] |= 0x1; // INCOMPAT_ENCRYPT (0x10000)
        let e = ExtFs::open(&Bytes(&enc), enc.len() as u64).err().unwrap();
        assert!(e.to_string().contains("encryption"), "{e}");
    }
}

/// Fuzz targets (see `crate::fuzzing`): a whole filesystem image as a hostile device presents it
/// (superblock, group descriptors, inode tables, extent trees and block maps, directory blocks,
/// inline data), and directory records alone.
#[cfg(test)]
mod fuzz {
    use super::tests::{Collect, seed};
    use super::*;
    use crate::fuzzing::Target;

    fn image(b: &[u8]) {
        let vol = Bytes(b);
        let Ok(mut fs) = ExtFs::open(&vol, b.len() as u64) else {
            return;
        };
        let mut c = Collect::default();
        if let Ok(s) = tree::walk(&mut fs, &mut c) {
            assert_eq!(s.entries as usize, c.seen.len());
            assert_eq!(s.damaged as usize, c.damaged.len());
            // A directory is entered once: no path is deeper than the directories it could cross.
            let dirs = c.seen.iter().filter(|e| e.2 & 0o170000 == 0o040000).count();
            for e in &c.seen {
                assert!(e.0.matches('/').count() <= dirs, "{} is too deep", e.0);
            }
        }
        // Every regular file read by inode (`file`): as many bytes as its size, or an error. Sizes
        // beyond the image are skipped (a sparse file of a terabyte reads as zeros, slowly).
        let mut buf = Vec::new();
        for e in &c.seen {
            let Ok(inode) = fs.inode_uncached(e.1) else {
                continue;
            };
            if inode.file_type() != inode::S_IFREG || inode.size > 4 * b.len() as u64 {
                continue;
            }
            let mut n = 0u64;
            if let Ok(size) =
                file::read_contents(&fs, e.1, &inode, &mut buf, &mut |d| n += d.len() as u64)
            {
                assert_eq!((size, n), (inode.size, inode.size));
            }
        }
    }

    fn records(b: &[u8]) {
        let (flags, area) = b.split_first().unwrap_or((&0, b));
        let mut l = dir::Listing::default();
        let bs = if flags & 2 == 0 { 1024 } else { 65536 };
        let _ = dir::parse_records(area, flags & 1 == 0, bs, &mut l);
        for i in 0..l.len() {
            let (ino, name) = l.get(i);
            assert!(ino != 0 && !name.is_empty() && name.len() <= 0xffff);
        }
    }

    #[test]
    fn ext_images() {
        Target::new("extfs-image")
            .seed(seed(include_bytes!("../fuzz-seeds/ext4-small.img.zst")))
            .seed(seed(include_bytes!("../fuzz-seeds/ext2-small.img.zst")))
            .dict(&[b"\x53\xef", b"\x0a\xf3", b"\x00\x00\x02\xea", b"data"])
            .max_len(256 << 10)
            .run(image);
    }

    #[test]
    fn ext_directory_records() {
        Target::new("extfs-records")
            .seed(b"\x00\x0c\x00\x00\x00\x0c\x00\x01\x02.\x00\x00\x00\x0d\x00\x00\x00\x0c\x00\x01\x01a\x00\x00")
            .seed(b"\x01\x0c\x00\x00\x00\x10\x00\x04\x00abcd\x00\x00\x00\x00")
            .run(records);
    }
}
