//! The superblock and the group descriptors: block and inode geometry, the features this reader
//! accepts, and where each group's inode table lies (32- or 64-bit descriptors, one table or meta_bg).

use super::{ExtError, le16, le32};
use crate::acquire::source::ReadAt;

/// `s_feature_incompat` bits.
pub mod incompat {
    pub const COMPRESSION: u32 = 0x1;
    pub const FILETYPE: u32 = 0x2;
    pub const RECOVER: u32 = 0x4;
    pub const JOURNAL_DEV: u32 = 0x8;
    pub const META_BG: u32 = 0x10;
    pub const EXTENTS: u32 = 0x40;
    pub const BIT64: u32 = 0x80;
    pub const MMP: u32 = 0x100;
    pub const FLEX_BG: u32 = 0x200;
    pub const EA_INODE: u32 = 0x400;
    pub const DIRDATA: u32 = 0x1000;
    pub const CSUM_SEED: u32 = 0x2000;
    pub const LARGEDIR: u32 = 0x4000;
    pub const INLINE_DATA: u32 = 0x8000;
    pub const ENCRYPT: u32 = 0x10000;
    pub const CASEFOLD: u32 = 0x20000;
}

/// `s_feature_ro_compat` bits this reader looks at.
pub mod ro_compat {
    pub const SPARSE_SUPER: u32 = 0x1;
    pub const HUGE_FILE: u32 = 0x8;
    pub const GDT_CSUM: u32 = 0x10;
    pub const METADATA_CSUM: u32 = 0x400;
}

/// `s_feature_compat`: backups only in the two groups the superblock names.
const COMPAT_SPARSE_SUPER2: u32 = 0x200;

/// What the reader needs of the superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub first_data_block: u32,
    pub block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inode_size: u32,
    pub rev_level: u32,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub desc_size: u32,
    pub first_meta_bg: u32,
    pub backup_bgs: [u32; 2],
    pub groups: u32,
}

impl Superblock {
    /// Parses the 1024 bytes at byte 1024 of the volume.
    pub fn parse(b: &[u8]) -> Result<Self, ExtError> {
        let magic = le16(b, 0x38);
        if b.len() < 1024 || magic != 0xef53 {
            return Err(ExtError::NotExt { magic });
        }
        let bad = |s: String| Err(ExtError::BadSuperblock(s));
        let log = le32(b, 0x18);
        if log > 6 {
            return bad(format!("block size 1024 << {log}"));
        }
        let block_size = 1024u32 << log;
        let rev_level = le32(b, 0x4c);
        let incompat = le32(b, 0x60);
        let inode_size = if rev_level == 0 {
            128
        } else {
            u32::from(le16(b, 0x58))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return bad(format!("inode size {inode_size}"));
        }
        let blocks_per_group = le32(b, 0x20);
        let inodes_per_group = le32(b, 0x28);
        if blocks_per_group == 0 || blocks_per_group > block_size * 8 {
            return bad(format!("{blocks_per_group} blocks per group"));
        }
        if inodes_per_group == 0 || inodes_per_group > block_size * 8 {
            return bad(format!("{inodes_per_group} inodes per group"));
        }
        let lo = u64::from(le32(b, 0x4));
        let blocks_count = if incompat & incompat::BIT64 != 0 {
            lo | u64::from(le32(b, 0x150)) << 32
        } else {
            lo
        };
        let first_data_block = le32(b, 0x14);
        if u64::from(first_data_block) >= blocks_count {
            return bad(format!(
                "first data block {first_data_block} of {blocks_count}"
            ));
        }
        let desc_size = if incompat & incompat::BIT64 != 0 {
            u32::from(le16(b, 0xfe))
        } else {
            32
        };
        if desc_size < 32 || !desc_size.is_power_of_two() || desc_size > block_size {
            return bad(format!("group descriptor size {desc_size}"));
        }
        let groups =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let Ok(groups) = u32::try_from(groups) else {
            return bad(format!("{groups} groups"));
        };
        let inodes_count = le32(b, 0x0);
        if u64::from(inodes_count) > u64::from(groups) * u64::from(inodes_per_group) {
            return bad(format!(
                "{inodes_count} inodes in {groups} groups of {inodes_per_group}"
            ));
        }
        Ok(Superblock {
            inodes_count,
            blocks_count,
            first_data_block,
            block_size,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            rev_level,
            compat: le32(b, 0x5c),
            incompat,
            ro_compat: le32(b, 0x64),
            desc_size,
            first_meta_bg: le32(b, 0x104),
            backup_bgs: [le32(b, 0x24c), le32(b, 0x250)],
            groups,
        })
    }

    /// Refuses the features this reader cannot read (the caller mounts instead).
    pub fn check_features(&self) -> Result<(), ExtError> {
        use incompat::*;
        let known = FILETYPE
            | RECOVER
            | META_BG
            | EXTENTS
            | BIT64
            | MMP
            | FLEX_BG
            | EA_INODE
            | CSUM_SEED
            | LARGEDIR
            | INLINE_DATA
            | CASEFOLD;
        let named = [
            (ENCRYPT, "encryption (names and contents need a key)"),
            (COMPRESSION, "compression"),
            (
                JOURNAL_DEV,
                "an external journal device (it holds no files)",
            ),
            (DIRDATA, "Lustre's dirdata"),
        ];
        for (bit, what) in named {
            if self.incompat & bit != 0 {
                return Err(ExtError::Unsupported(what.to_owned()));
            }
        }
        let unknown = self.incompat & !known;
        if unknown != 0 {
            return Err(ExtError::Unsupported(format!(
                "incompatible feature bits {unknown:#x}"
            )));
        }
        Ok(())
    }

    pub fn has(&self, incompat_bit: u32) -> bool {
        self.incompat & incompat_bit != 0
    }

    /// Whether group descriptors carry a checksum, so that `bg_itable_unused` and `INODE_UNINIT`
    /// can be believed (the kernel reads them only then).
    pub fn group_checksums(&self) -> bool {
        self.ro_compat & (ro_compat::GDT_CSUM | ro_compat::METADATA_CSUM) != 0
    }

    /// Whether group `g` holds a superblock backup (and so a descriptor copy after it).
    fn has_super(&self, g: u32) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if self.ro_compat & ro_compat::SPARSE_SUPER == 0 || g == 1 {
            return g > 0;
        }
        [3u32, 5, 7].iter().any(|&p| {
            let mut x = g;
            while x.is_multiple_of(p) {
                x /= p;
            }
            x == 1
        })
    }

    /// The block holding descriptor block `nr` (the kernel's `descriptor_loc`).
    fn descriptor_block(&self, nr: u32) -> u64 {
        let sb_block = u64::from(self.first_data_block);
        if !self.has(incompat::META_BG) || nr < self.first_meta_bg {
            return sb_block + 1 + u64::from(nr);
        }
        let per_block = self.block_size / self.desc_size;
        let bg = u64::from(per_block) * u64::from(nr);
        let mut extra = u64::from(u32::try_from(bg).is_ok_and(|g| self.has_super(g)));
        if self.block_size == 1024 && self.first_data_block == 0 {
            extra += 1;
        }
        u64::from(self.first_data_block) + bg * u64::from(self.blocks_per_group) + extra
    }
}

/// What the reader needs of a group descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// First block of the inode table.
    pub inode_table: u64,
    pub flags: u16,
    /// Inodes at the end of the table never used (valid with group checksums only).
    pub itable_unused: u32,
}

/// `bg_flags`: the inode table was never initialised.
const INODE_UNINIT: u16 = 0x1;

impl Group {
    fn parse(d: &[u8], sb: &Superblock) -> Group {
        let wide = sb.desc_size >= 64 && sb.has(incompat::BIT64);
        let hi = |off: usize, bits: u32| if wide { le32(d, off) & bits } else { 0 };
        Group {
            inode_table: u64::from(le32(d, 0x8)) | u64::from(hi(0x28, u32::MAX)) << 32,
            flags: le16(d, 0x12),
            itable_unused: u32::from(le16(d, 0x1c))
                | if wide {
                    u32::from(le16(d, 0x32)) << 16
                } else {
                    0
                },
        }
    }

    /// Inodes of this group that may be in use: the whole table, less what the checksummed
    /// descriptor says was never used.
    pub fn used_inodes(&self, sb: &Superblock) -> u32 {
        if !sb.group_checksums() {
            return sb.inodes_per_group;
        }
        if self.flags & INODE_UNINIT != 0 {
            return 0;
        }
        sb.inodes_per_group.saturating_sub(self.itable_unused)
    }
}

/// Reads every group descriptor.
pub fn read_groups(
    vol: &dyn ReadAt,
    vol_len: u64,
    sb: &Superblock,
) -> Result<Vec<Group>, ExtError> {
    let ds = sb.desc_size as usize;
    let bs = sb.block_size as usize;
    let per_block = bs / ds;
    let blocks = (sb.groups as usize).div_ceil(per_block);
    // Every descriptor block must lie in the volume: this bounds what a hostile count can allocate.
    if (blocks as u64).saturating_mul(bs as u64) > vol_len {
        return Err(ExtError::BadSuperblock(format!(
            "{} groups need {blocks} descriptor blocks, more than the volume holds",
            sb.groups
        )));
    }
    let mut groups = Vec::with_capacity(sb.groups as usize);
    let mut buf = vec![0u8; bs];
    for nr in 0..blocks {
        let block = sb.descriptor_block(nr as u32);
        let offset = block.saturating_mul(bs as u64);
        if offset.saturating_add(bs as u64) > vol_len {
            return Err(ExtError::BadSuperblock(format!(
                "group descriptor block {nr} at block {block} lies past the end of the volume"
            )));
        }
        super::read_exact(vol, &mut buf, offset)?;
        for d in buf.chunks_exact(ds) {
            if groups.len() == sb.groups as usize {
                break;
            }
            groups.push(Group::parse(d, sb));
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups_follow_sparse_super() {
        let mut b = vec![0u8; 1024];
        b[0x38..0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        b[0x4..0x8].copy_from_slice(&100_000u32.to_le_bytes());
        b[0x18] = 2;
        b[0x20..0x24].copy_from_slice(&32768u32.to_le_bytes());
        b[0x28..0x2c].copy_from_slice(&8192u32.to_le_bytes());
        b[0x4c] = 1;
        b[0x58..0x5a].copy_from_slice(&256u16.to_le_bytes());
        b[0x64] = 1;
        let sb = Superblock::parse(&b).unwrap();
        assert_eq!(sb.block_size, 4096);
        assert_eq!(sb.groups, 4);
        let with: Vec<u32> = (0..60).filter(|&g| sb.has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
        b[0x60] = 0x1; // compression
        let sb = Superblock::parse(&b).unwrap();
        let e = sb.check_features().unwrap_err();
        assert!(e.to_string().contains("compression"), "{e}");
    }
}
