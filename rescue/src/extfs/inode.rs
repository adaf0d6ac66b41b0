//! One inode as the kernel reads it (`ext4_iget`): mode, uid/gid with their high 16 bits, size with
//! its high 32 bits (regular files, and directories on a `largedir` filesystem), the four times with
//! the nanoseconds and epoch bits of the extra fields where the inode is large enough to hold them,
//! flags, `i_block`, and for an inline-data inode the rest of its data from the `system.data`
//! extended attribute in the inode body.

use super::layout::{Superblock, incompat, ro_compat};
use super::{le16, le32};

/// The file-type bits of `i_mode` (`S_IFMT`).
pub const S_IFMT: u16 = 0o170000;
/// A regular file (`S_IFREG`).
pub const S_IFREG: u16 = 0o100000;

/// A time: seconds since the epoch (signed, with the epoch bits) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

/// `i_flags` bits.
pub const INDEX_FL: u32 = 0x1000;
pub const ENCRYPT_FL: u32 = 0x800;
pub const HUGE_FILE_FL: u32 = 0x40000;
pub const EXTENTS_FL: u32 = 0x80000;
pub const EA_INODE_FL: u32 = 0x200000;
pub const INLINE_DATA_FL: u32 = 0x1000_0000;

/// The inode facts the body file and the tree walk need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// `i_mode` with its type bits.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Birth time, where the inode has room for it (what `statx` reports as `btime`).
    pub crtime: Option<Time>,
    pub flags: u32,
    /// `i_blocks` in 512-byte units.
    pub blocks_512: u64,
    pub file_acl: u64,
    /// `i_block`: block map, extent tree root, fast symlink target or the first inline bytes.
    pub block: [u8; 60],
    /// The `system.data` value of an inline-data inode (its bytes past the first 60).
    pub inline_extra: Option<Vec<u8>>,
}

/// Bytes of an inode everyone has (`EXT4_GOOD_OLD_INODE_SIZE`).
const OLD_SIZE: usize = 128;

impl Inode {
    /// Parses the raw inode (`sb.inode_size` bytes); the error says what is implausible.
    pub fn parse(raw: &[u8], sb: &Superblock) -> Result<Inode, String> {
        if raw.len() < OLD_SIZE {
            return Err(format!("only {} bytes", raw.len()));
        }
        let extra_isize = if raw.len() > OLD_SIZE {
            usize::from(le16(raw, 0x80))
        } else {
            0
        };
        if OLD_SIZE + extra_isize > raw.len() || !extra_isize.is_multiple_of(4) {
            return Err(format!(
                "extra inode size {extra_isize} does not fit its {} bytes",
                raw.len()
            ));
        }
        // A field at `off` of `len` bytes is there when the extra part covers it.
        let fits = |off: usize, len: usize| off + len <= OLD_SIZE + extra_isize;
        let time = |base: usize, extra: usize| {
            let mut t = Time {
                secs: i64::from(le32(raw, base) as i32),
                nanos: 0,
            };
            if fits(extra, 4) {
                let x = le32(raw, extra);
                t.secs += i64::from(x & 3) << 32;
                t.nanos = x >> 2;
            }
            t
        };
        let mode = le16(raw, 0x0);
        let is_reg = mode & S_IFMT == S_IFREG;
        let size_lo = u64::from(le32(raw, 0x4));
        let size = if is_reg || sb.has(incompat::LARGEDIR) {
            size_lo | u64::from(le32(raw, 0x6c)) << 32
        } else {
            size_lo
        };
        let flags = le32(raw, 0x20);
        let mut blocks_512 = u64::from(le32(raw, 0x1c));
        if sb.ro_compat & ro_compat::HUGE_FILE != 0 {
            blocks_512 |= u64::from(le16(raw, 0x74)) << 32;
            if flags & HUGE_FILE_FL != 0 {
                blocks_512 = blocks_512.saturating_mul(u64::from(sb.block_size / 512));
            }
        }
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x28 + 60]);
        let mut inode = Inode {
            mode,
            uid: u32::from(le16(raw, 0x2)) | u32::from(le16(raw, 0x78)) << 16,
            gid: u32::from(le16(raw, 0x18)) | u32::from(le16(raw, 0x7a)) << 16,
            size,
            links: le16(raw, 0x1a),
            atime: time(0x8, 0x8c),
            mtime: time(0x10, 0x88),
            ctime: time(0xc, 0x84),
            crtime: fits(0x90, 4).then(|| time(0x90, 0x94)),
            flags,
            blocks_512,
            file_acl: u64::from(le32(raw, 0x68)) | u64::from(le16(raw, 0x76)) << 32,
            block,
            inline_extra: None,
        };
        if flags & INLINE_DATA_FL != 0 {
            inode.inline_extra = Some(
                ibody_xattr(&raw[OLD_SIZE + extra_isize..], 7, b"data")
                    .unwrap_or_default()
                    .to_vec(),
            );
        }
        Ok(inode)
    }

    pub fn file_type(&self) -> u16 {
        self.mode & S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == 0o040000
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == 0o120000
    }

    pub fn is_inline(&self) -> bool {
        self.flags & INLINE_DATA_FL != 0
    }

    /// The whole inline data (`i_block`, then `system.data`), for an inline-data inode.
    pub fn inline_data(&self) -> Option<Vec<u8>> {
        let extra = self.inline_extra.as_ref()?;
        let mut v = self.block.to_vec();
        v.extend_from_slice(extra);
        Some(v)
    }

    /// A symlink whose target lies in `i_block` (the kernel's `ext4_inode_is_fast_symlink`).
    pub fn is_fast_symlink(&self, sb: &Superblock) -> bool {
        if !self.is_symlink() || self.is_inline() {
            return false;
        }
        if self.flags & EA_INODE_FL != 0 {
            return self.size > 0 && self.size < 60;
        }
        let ea = if self.file_acl != 0 {
            u64::from(sb.block_size / 512)
        } else {
            0
        };
        self.blocks_512.saturating_sub(ea) == 0 && self.size < 60
    }

    /// Major and minor of a device node, from `i_block` (old 16-bit or new 32-bit encoding).
    pub fn rdev(&self) -> (u32, u32) {
        let old = le32(&self.block, 0);
        if old != 0 {
            return ((old >> 8) & 0xff, old & 0xff);
        }
        let new = le32(&self.block, 4);
        ((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00))
    }
}

/// The value of an extended attribute stored in the inode body after `i_extra_isize` (`area` starts
/// with the magic), by name index and name.
fn ibody_xattr<'a>(area: &'a [u8], index: u8, name: &[u8]) -> Option<&'a [u8]> {
    if le32(area, 0) != 0xea02_0000 {
        return None;
    }
    let entries = area.get(4..)?;
    let mut off = 0usize;
    // Each entry is at least 16 bytes, so this ends within the area.
    while off + 16 <= entries.len() {
        let e = &entries[off..];
        if le32(e, 0) == 0 {
            break;
        }
        let name_len = usize::from(e[0]);
        let name_index = e[1];
        let value_offs = usize::from(le16(e, 2));
        let value_inum = le32(e, 4);
        let value_size = le32(e, 8) as usize;
        let ename = e.get(16..16 + name_len)?;
        if name_index == index && ename == name && value_inum == 0 {
            return entries.get(value_offs..value_offs.checked_add(value_size)?);
        }
        off += (16 + name_len).div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_time_bits_carry_nanoseconds_and_the_epoch() {
        let sb = Superblock {
            inodes_count: 16,
            blocks_count: 64,
            first_data_block: 0,
            block_size: 4096,
            blocks_per_group: 32768,
            inodes_per_group: 16,
            inode_size: 256,
            rev_level: 1,
            compat: 0,
            incompat: 0,
            ro_compat: 0,
            desc_size: 32,
            first_meta_bg: 0,
            backup_bgs: [0, 0],
            groups: 1,
        };
        let mut raw = vec![0u8; 256];
        raw[0..2].copy_from_slice(&0o100644u16.to_le_bytes());
        raw[0x10..0x14].copy_from_slice(&(-1i32).to_le_bytes());
        raw[0x80..0x82].copy_from_slice(&32u16.to_le_bytes());
        // mtime extra: epoch 1, 500 ns: -1 + 2^32 seconds (2106-02-07).
        raw[0x88..0x8c].copy_from_slice(&(1u32 | 500 << 2).to_le_bytes());
        raw[0x90..0x94].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        raw[0x2..0x4].copy_from_slice(&1u16.to_le_bytes());
        raw[0x78..0x7a].copy_from_slice(&1u16.to_le_bytes());
        let i = Inode::parse(&raw, &sb).unwrap();
        assert_eq!(
            i.mtime,
            Time {
                secs: (1 << 32) - 1,
                nanos: 500
            }
        );
        assert_eq!(i.crtime.unwrap().secs, 1_700_000_000);
        assert_eq!(i.uid, 65537);
        // A 128-byte inode has no crtime.
        let old = Inode::parse(&raw[..128], &sb).unwrap();
        assert_eq!(old.crtime, None);
        assert_eq!(old.mtime.secs, -1);
        // An extra size past the inode is refused, not read.
        raw[0x80..0x82].copy_from_slice(&200u16.to_le_bytes());
        assert!(Inode::parse(&raw, &sb).is_err());
    }
}
