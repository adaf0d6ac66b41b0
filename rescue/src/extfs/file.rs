//! A regular file's contents, read from the volume by its inode instead of through a mount: the
//! bytes of its extents or block map in logical order, holes and unwritten extents as zeros (what
//! `read(2)` gives), inline data from the inode, all cut at `i_size`. Each run of contiguous blocks
//! is read in pieces of at most the caller's buffer, so a file costs a few large reads and no
//! kernel inode, page cache of a mount or open file.
//!
//! Never: write, follow anything, allocate beyond the buffer the caller gives and the file's runs
//! (which [`super::blocks::runs`] bounds by the volume).

use super::blocks;
use super::inode::{Inode, S_IFREG};
use super::{ExtError, ExtFs};

/// Streams the contents of the regular file `inode` (inode number `ino`) to `sink`, in order, in
/// pieces of at most `buf`'s length (at least one block: a smaller buffer is grown). Returns the
/// bytes given to `sink`, which is the file's size.
pub fn read_contents(
    fs: &ExtFs<'_>,
    ino: u64,
    inode: &Inode,
    buf: &mut Vec<u8>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<u64, ExtError> {
    let bad = |why: String| ExtError::BadInode { inode: ino, why };
    if inode.file_type() != S_IFREG {
        return Err(bad(format!("not a regular file (mode {:o})", inode.mode)));
    }
    let size = inode.size;
    if inode.is_inline() {
        let data = inode
            .inline_data()
            .ok_or_else(|| bad("inline data without its system.data attribute".into()))?;
        let n = usize::try_from(size).ok().filter(|&n| n <= data.len());
        let n = n.ok_or_else(|| {
            bad(format!(
                "size {size} but {} bytes of inline data",
                data.len()
            ))
        })?;
        sink(&data[..n]);
        return Ok(size);
    }
    let bs = u64::from(fs.sb.block_size);
    let chunk_blocks = (buf.len() as u64 / bs).max(1);
    if (buf.len() as u64) < bs {
        buf.resize(bs as usize, 0);
    }
    let runs = blocks::runs(fs, ino, inode, size.div_ceil(bs))?;
    // `at`: the byte of the file given to the sink next.
    let mut at = 0u64;
    for r in runs {
        let start = r.logical.saturating_mul(bs);
        if start >= size {
            break;
        }
        if start < at {
            return Err(bad(format!(
                "logical block {} is mapped twice or out of order",
                r.logical
            )));
        }
        zeros(start, &mut at, sink, buf);
        let mut block = r.physical;
        let mut left = r.len;
        while left > 0 && at < size {
            let count = left.min(chunk_blocks);
            let want = (count * bs).min(size - at) as usize;
            fs.read(&mut buf[..want], block.saturating_mul(bs))?;
            sink(&buf[..want]);
            at += want as u64;
            block += count;
            left -= count;
        }
    }
    zeros(size, &mut at, sink, buf);
    Ok(size)
}

/// Gives the sink zeros from `*at` up to `upto` (a hole, or the unwritten end of a file).
fn zeros(upto: u64, at: &mut u64, sink: &mut dyn FnMut(&[u8]), buf: &mut [u8]) {
    while *at < upto {
        let n = (upto - *at).min(buf.len() as u64) as usize;
        buf[..n].fill(0);
        sink(&buf[..n]);
        *at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::inode::S_IFMT;
    use super::super::tests::{Collect, seed};
    use super::super::{Bytes, tree};
    use super::*;
    use std::process::Command;

    /// Every regular file of `img` read by inode, as (path, contents).
    fn files(img: &[u8], buf_len: usize) -> Vec<(String, Vec<u8>)> {
        let vol = Bytes(img);
        let mut fs = ExtFs::open(&vol, img.len() as u64).unwrap();
        let mut c = Collect::default();
        tree::walk(&mut fs, &mut c).unwrap();
        assert!(c.damaged.is_empty(), "{:?}", c.damaged);
        let mut out = Vec::new();
        let mut buf = vec![0u8; buf_len];
        for (path, ino, mode, _) in c.seen {
            if mode & S_IFMT != S_IFREG {
                continue;
            }
            let inode = fs.inode_uncached(ino).unwrap();
            assert_eq!(inode, fs.inode(ino).unwrap(), "{path}: cached and uncached");
            let mut data = Vec::new();
            let n = read_contents(&fs, ino, &inode, &mut buf, &mut |b| {
                data.extend_from_slice(b)
            })
            .unwrap();
            assert_eq!(n, data.len() as u64, "{path}");
            out.push((path, data));
        }
        out.sort();
        out
    }

    /// What `debugfs -R "cat PATH"` (e2fsprogs, not ours) prints for each file of the image.
    fn debugfs_cat(img_path: &std::path::Path, path: &str) -> Vec<u8> {
        let o = Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /{path}"))
            .arg(img_path)
            .output()
            .unwrap();
        assert!(o.status.success(), "debugfs: {o:?}");
        o.stdout
    }

    fn have(tool: &str) -> bool {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).exists());
        assert!(
            found || std::env::var("RESCUE_REQUIRE_TOOLS").is_err(),
            "{tool} is not installed and RESCUE_REQUIRE_TOOLS=1 forbids skipping"
        );
        found
    }

    /// Files made by `mke2fs -d` (extents, 1 KiB blocks so a file spans many), one with a hole, one
    /// with a byte changed in place, an empty one, inline ones, and the same tree with a block map
    /// (ext2): every file reads as debugfs reads it, whatever the buffer size.
    #[test]
    fn files_read_by_inode_are_what_debugfs_reads() {
        if !have("mke2fs") || !have("debugfs") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("d")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(tree.join("d/big"), &big).unwrap();
        let mut flipped = big.clone();
        flipped[150_001] ^= 1;
        std::fs::write(tree.join("d/flipped"), &flipped).unwrap();
        std::fs::write(tree.join("empty"), b"").unwrap();
        std::fs::write(tree.join("small"), b"hello\n").unwrap();
        std::fs::write(tree.join("odd"), vec![b'x'; 1025]).unwrap();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(tree.join("sparse")).unwrap();
            f.write_all(b"head").unwrap();
            f.seek(SeekFrom::Start(200_000)).unwrap();
            f.write_all(b"tail").unwrap();
        }
        for (name, opts) in [
            ("ext4", "^has_journal,inline_data"),
            ("ext4", "^has_journal"),
            ("ext2", "^has_journal"),
        ] {
            let img_path = t.path().join(format!("{name}.img"));
            let _ = std::fs::remove_file(&img_path);
            let o = Command::new("mke2fs")
                .args(["-q", "-t", name, "-b", "1024", "-O", opts, "-d"])
                .arg(&tree)
                .arg(&img_path)
                .arg("4M")
                .output()
                .unwrap();
            assert!(o.status.success(), "mke2fs: {o:?}");
            let img = std::fs::read(&img_path).unwrap();
            let a = files(&img, 4096);
            let names: Vec<&str> = a.iter().map(|f| f.0.as_str()).collect();
            assert_eq!(
                names,
                ["d/big", "d/flipped", "empty", "odd", "small", "sparse"]
            );
            for (path, data) in &a {
                // debugfs 1.47 prints all 60 bytes of `i_block` for a file inline in it, whatever
                // its size; such files are compared with the tree they were made from only.
                if data.len() > 60 {
                    assert_eq!(*data, debugfs_cat(&img_path, path), "{name} {opts}: {path}");
                }
                assert_eq!(*data, std::fs::read(tree.join(path)).unwrap(), "{path}");
            }
            assert_ne!(a[0].1, a[1].1, "a byte changed in place is seen");
            assert_eq!(files(&img, 100), a, "a buffer smaller than a block");
            assert_eq!(files(&img, 1 << 20), a, "a buffer of many blocks");
        }
    }

    #[test]
    fn the_seed_images_read_without_error_and_a_directory_is_refused() {
        for zst in [
            &include_bytes!("../fuzz-seeds/ext4-small.img.zst")[..],
            &include_bytes!("../fuzz-seeds/ext2-small.img.zst")[..],
        ] {
            let img = seed(zst);
            files(&img, 4096);
            let vol = Bytes(&img);
            let fs = ExtFs::open(&vol, img.len() as u64).unwrap();
            let root = fs.inode_uncached(2).unwrap();
            let e = read_contents(&fs, 2, &root, &mut Vec::new(), &mut |_| {}).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }
}
