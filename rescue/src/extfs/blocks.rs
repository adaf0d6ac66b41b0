//! Where an inode's data lies: its extent tree (ext4) or its classic block map (ext2/3: 12 direct
//! blocks, then single, double and triple indirect blocks), as runs of contiguous blocks in logical
//! order. Only the first `wanted` logical blocks are mapped (a directory's or symlink's size); holes
//! and unwritten extents read as nothing. A tree that is deeper than its header says, points outside
//! the volume or repeats itself is an error naming what is wrong.

use super::inode::{EXTENTS_FL, Inode};
use super::{ExtError, ExtFs, le16, le32};

/// Contiguous blocks: `len` blocks from `physical`, standing for logical blocks from `logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
}

/// Extent trees are at most this deep (the kernel's limit is 5).
const MAX_DEPTH: u16 = 5;

fn bad(ino: u64, why: String) -> ExtError {
    ExtError::BadInode { inode: ino, why }
}

/// The runs of the first `wanted` logical blocks of inode `ino`.
pub fn runs(fs: &ExtFs<'_>, ino: u64, inode: &Inode, wanted: u64) -> Result<Vec<Run>, ExtError> {
    let mut out = Vec::new();
    if wanted == 0 {
        return Ok(out);
    }
    if inode.flags & EXTENTS_FL != 0 {
        let mut t = Tree {
            fs,
            ino,
            wanted,
            out: &mut out,
            reads: 0,
        };
        t.node(&inode.block, None, 0)?;
    } else {
        block_map(fs, ino, &inode.block, wanted, &mut out)?;
    }
    // Keep only what lies in the volume; a run past its end is damage.
    let total = fs.volume_len() / u64::from(fs.sb.block_size);
    for r in &out {
        if r.physical.saturating_add(r.len) > total {
            return Err(bad(
                ino,
                format!(
                    "data block {} lies past the end of the volume ({total} blocks)",
                    r.physical.saturating_add(r.len) - 1
                ),
            ));
        }
    }
    Ok(out)
}

/// One extent tree being mapped.
struct Tree<'a, 'f> {
    fs: &'a ExtFs<'f>,
    ino: u64,
    wanted: u64,
    out: &'a mut Vec<Run>,
    /// Node blocks read so far: a tree whose index entries all point at the same empty leaf
    /// would otherwise be read hundreds of millions of times.
    reads: u64,
}

impl Tree<'_, '_> {
    /// Adds the extents of one tree node (`node`: the 60 bytes in the inode, or a block).
    fn node(&mut self, node: &[u8], want_depth: Option<u16>, level: u16) -> Result<(), ExtError> {
        let ino = self.ino;
        if le16(node, 0) != 0xf30a {
            return Err(bad(ino, "an extent tree node has no magic 0xf30a".into()));
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if depth > MAX_DEPTH || level > MAX_DEPTH || want_depth.is_some_and(|d| d != depth) {
            return Err(bad(
                ino,
                format!("extent tree node of depth {depth} at level {level}"),
            ));
        }
        if 12 + entries * 12 > node.len() {
            return Err(bad(
                ino,
                format!("extent tree node claims {entries} entries, more than fit"),
            ));
        }
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            let logical = u64::from(le32(e, 0));
            if logical >= self.wanted {
                break;
            }
            if depth == 0 {
                let raw_len = le16(e, 4);
                // Above 32768: an unwritten extent, which reads as zeros.
                if raw_len > 32768 || raw_len == 0 {
                    continue;
                }
                let physical = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                let len = u64::from(raw_len).min(self.wanted - logical);
                if self
                    .out
                    .last()
                    .is_some_and(|l: &Run| l.logical + l.len > logical)
                {
                    return Err(bad(ino, "extents overlap or go backwards".into()));
                }
                self.out.push(Run {
                    logical,
                    physical,
                    len,
                });
            } else {
                self.reads += 1;
                if self.reads > 64 + self.wanted {
                    return Err(bad(
                        ino,
                        "the extent tree has more nodes than its blocks need".into(),
                    ));
                }
                let child = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
                let mut own = Vec::new();
                self.fs.read_blocks(&mut own, child, 1)?;
                self.node(&own, Some(depth - 1), level + 1)?;
            }
        }
        Ok(())
    }
}

/// Adds the runs of a classic block map.
fn block_map(
    fs: &ExtFs<'_>,
    ino: u64,
    i_block: &[u8; 60],
    wanted: u64,
    out: &mut Vec<Run>,
) -> Result<(), ExtError> {
    let per = u64::from(fs.sb.block_size / 4);
    let mut push = |logical: u64, physical: u64| {
        if physical == 0 {
            return;
        }
        if let Some(l) = out.last_mut()
            && l.logical + l.len == logical
            && l.physical + l.len == physical
        {
            l.len += 1;
            return;
        }
        out.push(Run {
            logical,
            physical,
            len: 1,
        });
    };
    for i in 0..12u64 {
        if i >= wanted {
            return Ok(());
        }
        push(i, u64::from(le32(i_block, i as usize * 4)));
    }
    // Logical start of each level, and how many blocks one pointer at that level covers.
    let mut start = 12u64;
    let mut span = 1u64;
    for level in 0..3usize {
        if start >= wanted {
            return Ok(());
        }
        let top = u64::from(le32(i_block, (12 + level) * 4));
        let covers = span.saturating_mul(per);
        if top != 0 {
            indirect(fs, ino, top, level, start, wanted, per, &mut push)?;
        }
        start = start.saturating_add(covers);
        span = covers;
    }
    Ok(())
}

/// Walks one indirect block of `level` (0: pointers to data) covering logical blocks from `start`.
#[allow(clippy::too_many_arguments)]
fn indirect(
    fs: &ExtFs<'_>,
    ino: u64,
    block: u64,
    level: usize,
    start: u64,
    wanted: u64,
    per: u64,
    push: &mut dyn FnMut(u64, u64),
) -> Result<(), ExtError> {
    let mut buf = Vec::new();
    fs.read_blocks(&mut buf, block, 1).map_err(|e| {
        bad(
            ino,
            format!("indirect block {block}: {}", crate::error_chain(&e)),
        )
    })?;
    let span = per.saturating_pow(level as u32);
    for i in 0..per {
        let logical = start.saturating_add(i.saturating_mul(span));
        if logical >= wanted {
            break;
        }
        let p = u64::from(le32(&buf, i as usize * 4));
        if p == 0 {
            continue;
        }
        if level == 0 {
            push(logical, p);
        } else {
            indirect(fs, ino, p, level - 1, logical, wanted, per, push)?;
        }
    }
    Ok(())
}
