//! Directory entries: every block of a directory parsed record by record (`inode`, `rec_len`,
//! `name_len`, `file_type`, name), which also lists an htree directory completely (its index blocks
//! look like one empty record), and inline directories (the parent's inode number, then records in
//! `i_block` and in `system.data`). `.` and `..` are left out. A record that does not fit its block
//! ends that block with a note; the other blocks are still read.

use super::blocks;
use super::inode::Inode;
use super::layout::incompat;
use super::{ExtError, ExtFs, le16, le32};

/// The live entries of one directory: names in one buffer, and per entry its inode and name span.
#[derive(Debug, Default)]
pub struct Listing {
    pub names: Vec<u8>,
    /// (inode, start of the name in `names`); the name runs to the next start.
    pub items: Vec<(u32, u32)>,
    /// Blocks whose records did not add up (what was wrong with each).
    pub damaged: Vec<String>,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entry `i`: its inode number and name.
    pub fn get(&self, i: usize) -> (u32, &[u8]) {
        let (ino, start) = self.items[i];
        let end = self
            .items
            .get(i + 1)
            .map_or(self.names.len(), |&(_, s)| s as usize);
        (ino, &self.names[start as usize..end])
    }

    fn push(&mut self, ino: u32, name: &[u8]) {
        if name == b"." || name == b".." {
            return;
        }
        // Names are at most 255 bytes and the directory's size is bounded by the volume's, so
        // `names` stays far below 4 GiB for any volume this reader accepts.
        self.items.push((ino, self.names.len() as u32));
        self.names.extend_from_slice(name);
    }
}

/// Parses the records of one block (or inline area) into `out`; an error says where the records
/// stopped adding up (the records before it are kept).
pub fn parse_records(
    area: &[u8],
    filetype: bool,
    block_size: u32,
    out: &mut Listing,
) -> Result<(), String> {
    let mut off = 0usize;
    while off + 8 <= area.len() {
        let ino = le32(area, off);
        let raw = le16(area, off + 4);
        // 64 KiB blocks store a whole-block record length as 65535 or 0.
        let rec_len = if block_size >= 65536 && (raw == 65535 || raw == 0) {
            65536
        } else {
            usize::from(raw)
        };
        let name_len = if filetype {
            usize::from(area[off + 6])
        } else {
            usize::from(le16(area, off + 6))
        };
        if rec_len < 8
            || !rec_len.is_multiple_of(4)
            || off + rec_len > area.len()
            || 8 + name_len > rec_len
        {
            return Err(format!(
                "a record at byte {off} has length {rec_len} and a name of {name_len} bytes, which do not fit"
            ));
        }
        if ino != 0 && name_len > 0 {
            out.push(ino, &area[off + 8..off + 8 + name_len]);
        }
        off += rec_len;
    }
    Ok(())
}

/// Reads every live entry of directory inode `ino`.
pub fn list(fs: &ExtFs<'_>, ino: u64, inode: &Inode) -> Result<Listing, ExtError> {
    let mut out = Listing::default();
    let filetype = fs.sb.has(incompat::FILETYPE);
    let bs = fs.sb.block_size;
    if let Some(data) = inode.inline_data() {
        // 4 bytes of parent inode, records to byte 60, then the records of system.data.
        let (head, extra) = data.split_at(60.min(data.len()));
        for (what, area) in [
            ("i_block", &head[4.min(head.len())..]),
            ("system.data", extra),
        ] {
            if let Err(why) = parse_records(area, filetype, bs, &mut out) {
                out.damaged.push(format!("inline data ({what}): {why}"));
            }
        }
        return Ok(out);
    }
    if inode.size > fs.volume_len() {
        return Err(ExtError::BadInode {
            inode: ino,
            why: format!(
                "a directory of {} bytes, larger than the volume",
                inode.size
            ),
        });
    }
    let wanted = inode.size.div_ceil(u64::from(bs));
    let runs = blocks::runs(fs, ino, inode, wanted)?;
    // Up to 64 KiB at a time: large sequential reads, little memory.
    let chunk = (65536 / u64::from(bs)).max(1);
    let mut buf = Vec::new();
    for r in runs {
        let mut done = 0;
        while done < r.len {
            let n = (r.len - done).min(chunk);
            if let Err(e) = fs.read_blocks(&mut buf, r.physical + done, n) {
                out.damaged.push(format!(
                    "blocks {}..{}: {}",
                    r.logical + done,
                    r.logical + done + n,
                    crate::error_chain(&e)
                ));
                done += n;
                continue;
            }
            for (k, block) in buf.chunks_exact(bs as usize).enumerate() {
                if let Err(why) = parse_records(block, filetype, bs, &mut out) {
                    out.damaged
                        .push(format!("block {}: {why}", r.logical + done + k as u64));
                }
            }
            done += n;
        }
    }
    Ok(out)
}
