//! The tree from inode 2 down, depth first, parents before children, each directory's entries in the
//! order its blocks hold them: for each name its inode and, for a symlink, its target. The path is one
//! buffer that grows and shrinks; each directory on the current path keeps its [`Listing`]. A
//! directory is entered once (a corrupt tree naming a directory twice, or an ancestor, cannot loop);
//! an entry whose inode cannot be read, or names a free inode, is reported to the visitor and skipped.

use super::dir::{self, Listing};
use super::inode::Inode;
use super::{ExtError, ExtFs, blocks};

/// Paths deeper than this are not entered (PATH_MAX is 4096 bytes, so no real path is this deep).
pub const MAX_DEPTH: usize = 2048;

/// What the visitor wants after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Do not enter this directory.
    Skip,
    Stop,
}

/// One name reached.
pub struct Found<'a> {
    /// Path below the root, without a leading `/` (`etc/passwd`).
    pub path: &'a [u8],
    pub name: &'a [u8],
    /// 1 for the root's own entries.
    pub depth: usize,
    pub ino: u64,
    pub inode: &'a Inode,
    /// A symlink's target (`None` when it could not be read: reported as damage too).
    pub link_target: Option<&'a [u8]>,
}

/// Receives the tree.
pub trait TreeVisitor {
    fn found(&mut self, f: &Found<'_>) -> Step;
    /// A part that could not be read (`path` as in [`Found::path`], `b""` for the root).
    fn damaged(&mut self, path: &[u8], why: &str);
}

/// Totals of a walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub entries: u64,
    pub damaged: u64,
    pub stopped: bool,
}

struct Frame {
    listing: Listing,
    next: usize,
    /// Length of the path up to and including this directory's trailing `/`.
    base: usize,
}

/// Walks everything below the root directory.
pub fn walk(fs: &mut ExtFs<'_>, visitor: &mut dyn TreeVisitor) -> Result<TreeStats, ExtError> {
    let root = fs.inode(2)?;
    if !root.is_dir() {
        return Err(ExtError::BadInode {
            inode: 2,
            why: format!("the root is not a directory (mode {:o})", root.mode),
        });
    }
    let mut stats = TreeStats::default();
    let mut entered = std::collections::HashSet::new();
    entered.insert(2u64);
    let mut path: Vec<u8> = Vec::with_capacity(4096);
    let mut stack = vec![Frame {
        listing: open_dir(fs, 2, &root, b"", visitor, &mut stats)?,
        next: 0,
        base: 0,
    }];
    let mut link = Vec::new();
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else { break };
        if top.next >= top.listing.len() {
            stack.pop();
            continue;
        }
        let (ino, name) = top.listing.get(top.next);
        top.next += 1;
        let base = top.base;
        path.truncate(base);
        path.extend_from_slice(name);
        let ino = u64::from(ino);
        let name_ok = !name.contains(&b'/') && !name.contains(&0);
        let inode = match fs.inode(ino) {
            Ok(i) if i.mode == 0 || i.links == 0 => Err(format!(
                "names inode {ino}, which is free (deleted, or the directory is damaged)"
            )),
            Ok(_) if !name_ok => Err(format!(
                "a name holding '/' or NUL (inode {ino}): the directory is damaged"
            )),
            Ok(i) => Ok(i),
            Err(e) => Err(crate::error_chain(&e)),
        };
        let inode = match inode {
            Ok(i) => i,
            Err(why) => {
                stats.damaged += 1;
                visitor.damaged(&path, &why);
                continue;
            }
        };
        let target = if inode.is_symlink() {
            match symlink_target(fs, ino, &inode, &mut link) {
                Ok(()) => Some(link.as_slice()),
                Err(e) => {
                    stats.damaged += 1;
                    visitor.damaged(&path, &crate::error_chain(&e));
                    None
                }
            }
        } else {
            None
        };
        stats.entries += 1;
        let step = visitor.found(&Found {
            path: &path,
            name: &path[base..],
            depth,
            ino,
            inode: &inode,
            link_target: target,
        });
        match step {
            Step::Stop => {
                stats.stopped = true;
                return Ok(stats);
            }
            Step::Skip => continue,
            Step::Continue => {}
        }
        if !inode.is_dir() {
            continue;
        }
        if depth >= MAX_DEPTH {
            stats.damaged += 1;
            visitor.damaged(
                &path,
                &format!("deeper than {MAX_DEPTH} directories: not entered"),
            );
            continue;
        }
        if !entered.insert(ino) {
            stats.damaged += 1;
            visitor.damaged(
                &path,
                &format!(
                    "directory inode {ino} was already listed under another name: not entered again"
                ),
            );
            continue;
        }
        let listing = match open_dir(fs, ino, &inode, &path, visitor, &mut stats) {
            Ok(l) => l,
            Err(e) => {
                stats.damaged += 1;
                visitor.damaged(&path, &crate::error_chain(&e));
                continue;
            }
        };
        path.push(b'/');
        stack.push(Frame {
            listing,
            next: 0,
            base: path.len(),
        });
    }
    Ok(stats)
}

/// Lists a directory, reporting its damaged blocks.
fn open_dir(
    fs: &ExtFs<'_>,
    ino: u64,
    inode: &Inode,
    path: &[u8],
    visitor: &mut dyn TreeVisitor,
    stats: &mut TreeStats,
) -> Result<Listing, ExtError> {
    let mut l = dir::list(fs, ino, inode)?;
    for why in l.damaged.drain(..) {
        stats.damaged += 1;
        visitor.damaged(path, &format!("directory inode {ino}: {why}"));
    }
    Ok(l)
}

/// A symlink's target into `out`: from `i_block`, the inline data, or its first data block.
fn symlink_target(
    fs: &ExtFs<'_>,
    ino: u64,
    inode: &Inode,
    out: &mut Vec<u8>,
) -> Result<(), ExtError> {
    out.clear();
    let len = usize::try_from(inode.size).unwrap_or(usize::MAX);
    if len > fs.sb.block_size as usize || len > 4096 {
        return Err(ExtError::BadInode {
            inode: ino,
            why: format!("a symlink target of {} bytes", inode.size),
        });
    }
    if let Some(data) = inode.inline_data() {
        out.extend_from_slice(&data[..len.min(data.len())]);
    } else if inode.is_fast_symlink(&fs.sb) {
        out.extend_from_slice(&inode.block[..len.min(60)]);
    } else {
        let runs = blocks::runs(fs, ino, inode, 1)?;
        if let Some(r) = runs.first().filter(|r| r.logical == 0) {
            fs.read_blocks(out, r.physical, 1)?;
            out.truncate(len);
        }
    }
    // A target ends at its first NUL, as the kernel's readlink returns it.
    if let Some(nul) = out.iter().position(|&b| b == 0) {
        out.truncate(nul);
    }
    Ok(())
}
