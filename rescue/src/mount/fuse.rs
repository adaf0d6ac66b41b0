//! The read-only subset of the FUSE protocol (`include/uapi/linux/fuse.h`, protocol 7.31) that one
//! directory holding one regular file needs: INIT, LOOKUP, GETATTR, OPEN, READ, RELEASE, OPENDIR,
//! READDIR, RELEASEDIR, STATFS, FLUSH, FORGET/BATCH_FORGET (no reply), INTERRUPT (ignored: reads are
//! short, the kernel waits for their answer), DESTROY, and ENOSYS for everything else. Requests are
//! decoded from and replies encoded into byte buffers in native byte order: no `unsafe`, and every
//! decoder checks lengths, because the bytes come from the kernel but a bug must not become a panic.
//!
//! The tree is fixed: node 1 is the root directory (mode `0555`), node 2 is `image.raw` (mode `0444`).

/// Node id of the root directory.
pub const ROOT: u64 = 1;
/// Node id of `image.raw`.
pub const IMAGE: u64 = 2;
/// The one file's name.
pub const IMAGE_NAME: &str = "image.raw";

/// Protocol version we speak.
pub const MAJOR: u32 = 7;
pub const MINOR: u32 = 31;

/// Largest READ we ask the kernel for (`max_pages` × 4 KiB).
pub const MAX_PAGES: u16 = 256;
/// Size of the buffer a request is read into: requests are small (no WRITE reaches a read-only mount),
/// but the kernel refuses a buffer smaller than this.
pub const REQUEST_BUFFER: usize = 64 << 10;
/// Header of every reply.
pub const OUT_HEADER: usize = 16;
const IN_HEADER: usize = 40;

// INIT flags (fuse.h).
const FUSE_ASYNC_READ: u32 = 1 << 0;
const FUSE_MAX_PAGES: u32 = 1 << 22;

// OPEN reply flags.
const FOPEN_KEEP_CACHE: u32 = 1 << 1;
const FOPEN_CACHE_DIR: u32 = 1 << 3;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const DT_DIR: u32 = 4;
const DT_REG: u32 = 8;

/// One request from the kernel, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u32,
    },
    Lookup {
        parent: u64,
        name: Vec<u8>,
    },
    GetAttr {
        node: u64,
    },
    Open {
        node: u64,
        flags: u32,
    },
    Read {
        node: u64,
        offset: u64,
        size: u32,
    },
    OpenDir {
        node: u64,
    },
    ReadDir {
        node: u64,
        offset: u64,
        size: u32,
    },
    StatFs,
    /// RELEASE, RELEASEDIR, FLUSH, DESTROY: nothing to do but say so.
    Done,
    /// FORGET, BATCH_FORGET, INTERRUPT: no reply at all.
    NoReply,
    /// Any other opcode: ENOSYS (the kernel then stops asking for most of them).
    Unsupported {
        opcode: u32,
    },
}

/// The header fields a reply needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u32,
    pub unique: u64,
    pub node: u64,
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request of {len} bytes is shorter than its header or its opcode's arguments")]
    TruncatedRequest { len: usize },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_ne_bytes)
}

/// Decodes one request as read from `/dev/fuse`.
pub fn decode(msg: &[u8]) -> Result<(Header, Request), DecodeError> {
    let short = DecodeError::TruncatedRequest { len: msg.len() };
    let len = u32_at(msg, 0).ok_or(short.clone())? as usize;
    let opcode = u32_at(msg, 4).ok_or(short.clone())?;
    let unique = u64_at(msg, 8).ok_or(short.clone())?;
    let node = u64_at(msg, 16).ok_or(short.clone())?;
    let _ = u16_at(msg, 36).ok_or(short.clone())?;
    let body = msg
        .get(IN_HEADER..len.min(msg.len()))
        .ok_or(short.clone())?;
    let header = Header {
        opcode,
        unique,
        node,
    };
    let need = |v: Option<u32>| v.ok_or(short.clone());
    let need64 = |v: Option<u64>| v.ok_or(short.clone());
    let request = match opcode {
        26 => Request::Init {
            major: need(u32_at(body, 0))?,
            minor: need(u32_at(body, 4))?,
            max_readahead: need(u32_at(body, 8))?,
            flags: need(u32_at(body, 12))?,
        },
        1 => {
            let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
            Request::Lookup {
                parent: node,
                name: body[..end].to_vec(),
            }
        }
        3 => Request::GetAttr { node },
        14 => Request::Open {
            node,
            flags: need(u32_at(body, 0))?,
        },
        15 => Request::Read {
            node,
            offset: need64(u64_at(body, 8))?,
            size: need(u32_at(body, 16))?,
        },
        27 => Request::OpenDir { node },
        28 => Request::ReadDir {
            node,
            offset: need64(u64_at(body, 8))?,
            size: need(u32_at(body, 16))?,
        },
        17 => Request::StatFs,
        18 | 25 | 29 | 38 => Request::Done,
        2 | 36 | 42 => Request::NoReply,
        _ => Request::Unsupported { opcode },
    };
    Ok((header, request))
}

/// Starts a reply in `out`: a header whose length [`finish`] fills in.
pub fn begin(out: &mut Vec<u8>, unique: u64) {
    out.clear();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&0i32.to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
}

/// Sets the reply's length field.
pub fn finish(out: &mut [u8]) {
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
}

/// A reply carrying only an error (`errno` positive, e.g. `libc::ENOENT`) or success (0).
pub fn error(out: &mut Vec<u8>, unique: u64, errno: i32) {
    begin(out, unique);
    out[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    finish(out);
}

/// The INIT answer: our version, parallel reads, 1 MiB reads.
pub fn init(out: &mut Vec<u8>, unique: u64, kernel_flags: u32, max_readahead: u32) {
    begin(out, unique);
    let flags = kernel_flags & (FUSE_ASYNC_READ | FUSE_MAX_PAGES);
    for v in [MAJOR, MINOR, max_readahead.min(1 << 20), flags] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&16u16.to_ne_bytes()); // max_background
    out.extend_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
    out.extend_from_slice(&4096u32.to_ne_bytes()); // max_write (nothing is written)
    out.extend_from_slice(&1u32.to_ne_bytes()); // time_gran
    out.extend_from_slice(&MAX_PAGES.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes()); // map_alignment
    out.extend_from_slice(&0u32.to_ne_bytes()); // flags2
    out.extend_from_slice(&[0u8; 28]); // unused
    finish(out);
}

/// Attributes of a node (`struct fuse_attr`).
fn attr(out: &mut Vec<u8>, node: u64, size: u64, mtime: u64) {
    let (mode, nlink) = if node == ROOT {
        (S_IFDIR | 0o555, 2u32)
    } else {
        (S_IFREG | 0o444, 1)
    };
    let size = if node == ROOT { 0 } else { size };
    out.extend_from_slice(&node.to_ne_bytes());
    out.extend_from_slice(&size.to_ne_bytes());
    out.extend_from_slice(&size.div_ceil(512).to_ne_bytes());
    for _ in 0..3 {
        out.extend_from_slice(&mtime.to_ne_bytes());
    }
    for _ in 0..3 {
        out.extend_from_slice(&0u32.to_ne_bytes());
    }
    for v in [mode, nlink, 0, 0, 0, 4096, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

/// Attribute and entry validity: the tree never changes while mounted.
const VALID_SECS: u64 = 3600;

/// LOOKUP answer for `image.raw`.
pub fn entry(out: &mut Vec<u8>, unique: u64, node: u64, size: u64, mtime: u64) {
    begin(out, unique);
    for v in [node, 0, VALID_SECS, VALID_SECS] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&[0u8; 8]);
    attr(out, node, size, mtime);
    finish(out);
}

/// GETATTR answer.
pub fn attr_reply(out: &mut Vec<u8>, unique: u64, node: u64, size: u64, mtime: u64) {
    begin(out, unique);
    out.extend_from_slice(&VALID_SECS.to_ne_bytes());
    out.extend_from_slice(&[0u8; 8]);
    attr(out, node, size, mtime);
    finish(out);
}

/// OPEN/OPENDIR answer: the data never changes, so the kernel may keep its page cache.
pub fn open(out: &mut Vec<u8>, unique: u64, dir: bool) {
    begin(out, unique);
    out.extend_from_slice(&0u64.to_ne_bytes());
    let flags = if dir {
        FOPEN_CACHE_DIR
    } else {
        FOPEN_KEEP_CACHE
    };
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    finish(out);
}

/// STATFS answer: one file of `size` bytes, nothing free.
pub fn statfs(out: &mut Vec<u8>, unique: u64, size: u64) {
    begin(out, unique);
    for v in [size.div_ceil(4096), 0, 0, 2, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [4096u32, 255, 4096, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&[0u8; 24]);
    finish(out);
}

/// READDIR answer: the entries from index `offset` on that fit in `size` bytes.
pub fn readdir(out: &mut Vec<u8>, unique: u64, offset: u64, size: u32) {
    begin(out, unique);
    let entries: [(u64, &[u8], u32); 3] = [
        (ROOT, b".", DT_DIR),
        (ROOT, b"..", DT_DIR),
        (IMAGE, IMAGE_NAME.as_bytes(), DT_REG),
    ];
    let limit = OUT_HEADER + size as usize;
    for (i, (ino, name, kind)) in entries.iter().enumerate().skip(offset as usize) {
        let len = (24 + name.len()).next_multiple_of(8);
        if out.len() + len > limit {
            break;
        }
        out.extend_from_slice(&ino.to_ne_bytes());
        out.extend_from_slice(&(i as u64 + 1).to_ne_bytes());
        out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(name);
        out.resize(out.len() + len - 24 - name.len(), 0);
    }
    finish(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u32, unique: u64, node: u64, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((IN_HEADER + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&opcode.to_ne_bytes());
        m.extend_from_slice(&unique.to_ne_bytes());
        m.extend_from_slice(&node.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn requests_decode_and_short_ones_are_errors() {
        let mut body = Vec::new();
        body.extend_from_slice(&7u64.to_ne_bytes()); // fh
        body.extend_from_slice(&(1u64 << 33).to_ne_bytes()); // offset
        body.extend_from_slice(&131_072u32.to_ne_bytes());
        body.extend_from_slice(&[0u8; 20]);
        let (h, r) = decode(&request(15, 9, IMAGE, &body)).unwrap();
        assert_eq!((h.unique, h.node), (9, IMAGE));
        assert_eq!(
            r,
            Request::Read {
                node: IMAGE,
                offset: 1 << 33,
                size: 131_072
            }
        );
        let (_, r) = decode(&request(1, 1, ROOT, b"image.raw\0")).unwrap();
        assert_eq!(
            r,
            Request::Lookup {
                parent: ROOT,
                name: b"image.raw".to_vec()
            }
        );
        assert_eq!(
            decode(&request(15, 9, IMAGE, &body[..10])),
            Err(DecodeError::TruncatedRequest {
                len: IN_HEADER + 10
            })
        );
        assert!(decode(&[1, 2, 3]).is_err());
        assert_eq!(
            decode(&request(16, 3, IMAGE, &[0u8; 64])).unwrap().1,
            Request::Unsupported { opcode: 16 }
        );
    }

    #[test]
    fn replies_have_the_kernel_struct_sizes() {
        let mut out = Vec::new();
        init(&mut out, 1, u32::MAX, 131_072);
        assert_eq!(out.len(), OUT_HEADER + 64);
        entry(&mut out, 1, IMAGE, 10, 0);
        assert_eq!(out.len(), OUT_HEADER + 128);
        attr_reply(&mut out, 1, ROOT, 10, 0);
        assert_eq!(out.len(), OUT_HEADER + 104);
        open(&mut out, 1, false);
        assert_eq!(out.len(), OUT_HEADER + 16);
        statfs(&mut out, 1, 10);
        assert_eq!(out.len(), OUT_HEADER + 80);
        error(&mut out, 5, libc::ENOENT);
        assert_eq!(out.len(), OUT_HEADER);
        assert_eq!(
            i32::from_ne_bytes(out[4..8].try_into().unwrap()),
            -libc::ENOENT
        );
        assert_eq!(u32::from_ne_bytes(out[..4].try_into().unwrap()), 16);
    }

    #[test]
    fn readdir_lists_the_image_and_resumes_at_an_offset() {
        let mut out = Vec::new();
        readdir(&mut out, 1, 0, 4096);
        // ".", ".." (24 + 8 each, padded) and "image.raw" (24 + 9 → 40).
        assert_eq!(out.len(), OUT_HEADER + 32 + 32 + 40);
        readdir(&mut out, 1, 2, 4096);
        assert_eq!(out.len(), OUT_HEADER + 40);
        assert_eq!(&out[OUT_HEADER + 24..OUT_HEADER + 33], b"image.raw");
        readdir(&mut out, 1, 3, 4096);
        assert_eq!(out.len(), OUT_HEADER);
        // Too small for even one entry: an empty answer, not a partial entry.
        readdir(&mut out, 1, 0, 16);
        assert_eq!(out.len(), OUT_HEADER);
    }
}

/// Fuzz targets (see `crate::fuzzing`): requests as read from `/dev/fuse` (the kernel writes them, but
/// any process that can open the mount asks for them), decoded and answered the way the session
/// answers the ones that need no image.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn request(opcode: u32, unique: u64, node: u64, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((IN_HEADER + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&opcode.to_ne_bytes());
        m.extend_from_slice(&unique.to_ne_bytes());
        m.extend_from_slice(&node.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(body);
        m
    }

    fn requests(b: &[u8]) {
        let Ok((h, r)) = decode(b) else { return };
        let mut out = Vec::new();
        match r {
            Request::Init {
                flags,
                max_readahead,
                ..
            } => init(&mut out, h.unique, flags, max_readahead),
            Request::ReadDir { offset, size, .. } => readdir(&mut out, h.unique, offset, size),
            Request::Lookup { parent, .. } => entry(&mut out, h.unique, parent, 1 << 40, 0),
            Request::GetAttr { node } => attr_reply(&mut out, h.unique, node, 1 << 40, 0),
            _ => error(&mut out, h.unique, libc::ENOSYS),
        }
        assert!(out.len() <= REQUEST_BUFFER + b.len() + 4096);
    }

    #[test]
    fn fuse_requests() {
        let mut read = Vec::new();
        read.extend_from_slice(&7u64.to_ne_bytes());
        read.extend_from_slice(&(1u64 << 33).to_ne_bytes());
        read.extend_from_slice(&131_072u32.to_ne_bytes());
        read.extend_from_slice(&[0u8; 20]);
        let mut init_body = Vec::new();
        for v in [7u32, 31, 128 << 10, 0xffff_ffff] {
            init_body.extend_from_slice(&v.to_ne_bytes());
        }
        init_body.extend_from_slice(&[0u8; 48]);
        let mut t = Target::new("fuse-request")
            .seed(request(15, 9, IMAGE, &read))
            .seed(request(26, 1, 0, &init_body))
            .seed(request(1, 2, ROOT, b"image.raw\0"))
            .seed(request(28, 3, ROOT, &read))
            .max_len(REQUEST_BUFFER + 4096);
        for op in [3u32, 14, 17, 18, 25, 27, 29, 38] {
            t = t.seed(request(op, 4, IMAGE, &[0u8; 16]));
        }
        t.run(requests);
    }
}
