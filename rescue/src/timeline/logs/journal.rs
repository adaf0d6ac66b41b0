//! systemd journal files (`*.journal`, `*.journal~`), read natively: never through the examined
//! system's own `journalctl`. The format (systemd's "Journal File Format"): a header, then 8-byte
//! aligned objects (DATA, FIELD, ENTRY, hash tables, ENTRY_ARRAY, TAG). Entries are found by a
//! sequential scan of the objects (so a file cut short or with a broken entry array still yields what
//! it holds); each ENTRY lists the offsets of its DATA objects (`FIELD=value`). Regular and compact
//! (`COMPACT`, 32-bit offsets) files. DATA payloads compressed with zstd, LZ4 or XZ are decompressed
//! (XZ by `lzma-rs`, after its LZMA2 chunk headers have shown the field's size is within bounds).
//! Objects are read with positioned reads and a bounded cache, never the whole file.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::heuristics;
use super::{Context, LogError};

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
const INCOMPAT_COMPACT: u32 = 1 << 4;
const OBJ_DATA: u8 = 1;
const OBJ_ENTRY: u8 = 3;
const FLAG_XZ: u8 = 1;
const FLAG_LZ4: u8 = 2;
const FLAG_ZSTD: u8 = 4;
/// Largest object read (a DATA object can hold a core dump; larger ones are skipped and counted).
const MAX_OBJECT: u64 = 64 << 20;
/// Decoded DATA objects kept (hostnames, boot ids and units repeat in every entry).
const CACHE: usize = 16_384;

/// Which compressions this reader decodes (said in `docs/` and the summary).
pub const SUPPORTED_COMPRESSION: &str = "zstd, LZ4, XZ";

/// One journal entry: its realtime (µs), seqnum, and fields in the entry's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub realtime: u64,
    pub monotonic: u64,
    pub seqnum: u64,
    pub boot_id: [u8; 16],
    pub fields: Vec<(String, Vec<u8>)>,
    /// Fields whose DATA could not be decoded, with why.
    pub undecoded: Vec<String>,
}

impl Entry {
    /// A field's value as text (lossy UTF-8).
    pub fn get(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A journal file opened for reading.
pub struct Journal {
    file: File,
    compact: bool,
    header_size: u64,
    end: u64,
    cache: HashMap<u64, Result<(String, Vec<u8>), String>>,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Journal {
    /// Opens a journal and checks its header. `Err` is a sentence saying what is wrong.
    pub fn open(file: File) -> Result<Journal, String> {
        let mut h = [0u8; 272];
        let n = read_at_most(&file, &mut h, 0).map_err(|e| format!("reading the header: {e}"))?;
        if n < 208 || &h[..8] != SIGNATURE {
            return Err("not a journal file (no LPKSHHRH signature)".into());
        }
        let incompat = u32_at(&h, 12).unwrap_or(0);
        let known = 1 | 2 | 4 | 8 | 16;
        if incompat & !known != 0 {
            return Err(format!(
                "journal uses incompatible features this reader does not know (flags {incompat:#x})"
            ));
        }
        let header_size = u64_at(&h, 88).unwrap_or(0);
        let arena = u64_at(&h, 96).unwrap_or(0);
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if header_size < 208 || header_size > len {
            return Err(format!("header size {header_size} does not fit the file"));
        }
        Ok(Journal {
            file,
            compact: incompat & INCOMPAT_COMPACT != 0,
            header_size,
            end: header_size.saturating_add(arena).min(len),
            cache: HashMap::new(),
        })
    }

    fn object(&self, off: u64, want: Option<u8>) -> Result<(u8, u8, Vec<u8>), String> {
        let mut h = [0u8; 16];
        if read_at_most(&self.file, &mut h, off).map_err(|e| e.to_string())? < 16 {
            return Err(format!("object at {off} is cut short"));
        }
        let (kind, flags) = (h[0], h[1]);
        let size = u64_at(&h, 8).unwrap_or(0);
        if let Some(w) = want
            && kind != w
        {
            return Err(format!("object at {off} is type {kind}, expected {w}"));
        }
        if size < 16 || size > self.end.saturating_sub(off) {
            return Err(format!("object at {off} has an impossible size {size}"));
        }
        if size > MAX_OBJECT {
            return Err(format!(
                "object at {off} is {size} bytes, larger than this reader takes"
            ));
        }
        let mut b = vec![0u8; size as usize];
        if read_at_most(&self.file, &mut b, off).map_err(|e| e.to_string())? < b.len() {
            return Err(format!("object at {off} is cut short"));
        }
        Ok((kind, flags, b))
    }

    /// The `FIELD=value` of a DATA object, decompressed.
    fn data(&mut self, off: u64) -> Result<(String, Vec<u8>), String> {
        if let Some(r) = self.cache.get(&off) {
            return r.clone();
        }
        let r = (|| {
            let (_, flags, b) = self.object(off, Some(OBJ_DATA))?;
            let start = if self.compact { 72 } else { 64 };
            let payload = b.get(start..).ok_or("DATA object without payload")?;
            let raw = if flags & FLAG_ZSTD != 0 {
                // A field is at most MAX_OBJECT bytes decompressed (a frame may claim any size).
                let mut raw = Vec::new();
                zstd::stream::read::Decoder::new(payload)
                    .and_then(|d| {
                        std::io::Read::read_to_end(
                            &mut std::io::Read::take(d, MAX_OBJECT + 1),
                            &mut raw,
                        )
                    })
                    .map_err(|e| format!("zstd: {e}"))?;
                if raw.len() as u64 > MAX_OBJECT {
                    return Err(format!(
                        "a field decompresses to more than {MAX_OBJECT} bytes"
                    ));
                }
                raw
            } else if flags & FLAG_LZ4 != 0 {
                let size = u64_at(payload, 0).ok_or("LZ4 payload without size")?;
                lz4_block(
                    payload.get(8..).unwrap_or(&[]),
                    size.min(MAX_OBJECT) as usize,
                )?
            } else if flags & FLAG_XZ != 0 {
                xz_field(payload)?
            } else {
                payload.to_vec()
            };
            let eq = raw
                .iter()
                .position(|&c| c == b'=')
                .ok_or("DATA without `=`")?;
            Ok((
                String::from_utf8_lossy(&raw[..eq]).into_owned(),
                raw[eq + 1..].to_vec(),
            ))
        })();
        if self.cache.len() >= CACHE {
            self.cache.clear();
        }
        self.cache.insert(off, r.clone());
        r
    }

    /// Calls `each` for every entry in file order; `bad` for objects or fields that could not be
    /// read (with why). Stops at the first object whose header is broken (the rest is unreachable).
    pub fn entries(
        &mut self,
        mut each: impl FnMut(Entry) -> Result<(), LogError>,
        mut bad: impl FnMut(u64, String) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut off = self.header_size;
        while off.saturating_add(16) <= self.end {
            let mut h = [0u8; 16];
            if read_at_most(&self.file, &mut h, off).unwrap_or(0) < 16 {
                break;
            }
            let size = u64_at(&h, 8).unwrap_or(0);
            if h[0] == 0 && size == 0 {
                break; // unused tail of the arena
            }
            if size < 16 || size > self.end.saturating_sub(off) {
                bad(
                    off,
                    format!(
                        "object at {off} has an impossible size {size}; the rest of the file is not read"
                    ),
                )?;
                break;
            }
            if h[0] == OBJ_ENTRY {
                match self.entry(off) {
                    Ok(e) => each(e)?,
                    Err(why) => bad(off, why)?,
                }
            }
            off += size.div_ceil(8) * 8;
        }
        Ok(())
    }

    fn entry(&mut self, off: u64) -> Result<Entry, String> {
        let (_, _, b) = self.object(off, Some(OBJ_ENTRY))?;
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(b.get(40..56).ok_or("ENTRY too short")?);
        let mut e = Entry {
            seqnum: u64_at(&b, 16).ok_or("ENTRY too short")?,
            realtime: u64_at(&b, 24).ok_or("ENTRY too short")?,
            monotonic: u64_at(&b, 32).ok_or("ENTRY too short")?,
            boot_id,
            fields: Vec::new(),
            undecoded: Vec::new(),
        };
        let items = &b[64.min(b.len())..];
        let offsets: Vec<u64> = if self.compact {
            items
                .chunks_exact(4)
                .map(|c| u64::from(u32_at(c, 0).unwrap_or(0)))
                .collect()
        } else {
            items
                .chunks_exact(16)
                .map(|c| u64_at(c, 0).unwrap_or(0))
                .collect()
        };
        for d in offsets.into_iter().filter(|&d| d != 0) {
            match self.data(d) {
                Ok(f) => e.fields.push(f),
                Err(why) => e.undecoded.push(why),
            }
        }
        Ok(e)
    }
}

fn read_at_most(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off.saturating_add(got as u64)) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The size an XZ stream decompresses to, read from its LZMA2 chunk headers without decoding
/// anything (each chunk states its unpacked size, and the decoder produces exactly that), so a
/// field is refused before a small payload could expand into gigabytes in memory.
pub fn xz_unpacked_size(x: &[u8]) -> Result<u64, String> {
    const MAGIC: &[u8] = b"\xfd7zXZ\0";
    if x.len() < 12 || &x[..6] != MAGIC {
        return Err("XZ field without an XZ stream header".into());
    }
    let check_size = match x[7] & 0x0f {
        0x00 => 0,
        0x01 => 4,
        0x04 => 8,
        0x0a => 32,
        c => return Err(format!("XZ stream with an unknown check type {c:#x}")),
    };
    let cut = || "XZ stream cut short".to_owned();
    let mut at = 12usize;
    let mut total = 0u64;
    loop {
        let hs = *x.get(at).ok_or_else(cut)?;
        if hs == 0 {
            return Ok(total); // the index: no more blocks
        }
        let header_len = (usize::from(hs) + 1) * 4;
        let header = x.get(at..at + header_len).ok_or_else(cut)?;
        // Block flags: filter count - 1 in the low 2 bits; 0x40/0x80: sizes present. Only one
        // filter, LZMA2 (what liblzma's single-call encoder, and so systemd, writes).
        let bflags = header[1];
        if bflags & 0x03 != 0 {
            return Err("XZ block with more than one filter (only LZMA2 is read)".into());
        }
        let mut p = 2usize;
        for present in [bflags & 0x40 != 0, bflags & 0x80 != 0] {
            if present {
                // A multibyte integer: 7 bits a byte, high bit = more.
                while header.get(p).ok_or_else(cut)? & 0x80 != 0 {
                    p += 1;
                }
                p += 1;
            }
        }
        if header.get(p) != Some(&0x21) {
            return Err("XZ block whose filter is not LZMA2".into());
        }
        at += header_len;
        let start = at;
        loop {
            let control = *x.get(at).ok_or_else(cut)?;
            let be16 = |i: usize| -> Result<u64, String> {
                Ok(u64::from(u16::from_be_bytes([
                    *x.get(i).ok_or_else(cut)?,
                    *x.get(i + 1).ok_or_else(cut)?,
                ])))
            };
            match control {
                0x00 => {
                    at += 1;
                    break;
                }
                0x01 | 0x02 => {
                    let n = be16(at + 1)? + 1;
                    total += n;
                    at += 3 + n as usize;
                }
                0x80..=0xff => {
                    let unpacked = ((u64::from(control & 0x1f) << 16) | be16(at + 1)?) + 1;
                    let packed = be16(at + 3)? + 1;
                    total += unpacked;
                    at += 5 + usize::from(control >= 0xc0) + packed as usize;
                }
                c => return Err(format!("XZ block with an invalid LZMA2 chunk {c:#x}")),
            }
            if total > MAX_OBJECT {
                return Err(format!(
                    "an XZ field decompresses to more than {MAX_OBJECT} bytes"
                ));
            }
        }
        // Block padding to a multiple of four, then the check.
        at += (4 - (at - start) % 4) % 4 + check_size;
    }
}

/// Decodes an XZ-compressed DATA payload (systemd before 246 compressed with XZ by default, and
/// later versions can be built or configured to).
fn xz_field(payload: &[u8]) -> Result<Vec<u8>, String> {
    let size = xz_unpacked_size(payload)?;
    let mut raw = Vec::with_capacity(size as usize);
    lzma_rs::xz_decompress(&mut &payload[..], &mut raw).map_err(|e| format!("XZ: {e}"))?;
    Ok(raw)
}

/// Decodes one LZ4 block (the format liblz4's `LZ4_decompress_safe` reads) of at most `max` bytes.
pub fn lz4_block(src: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let bad = || "corrupt LZ4 block".to_string();
    // LZ4 expands at most 255 times; the declared size alone does not reserve memory.
    let mut out: Vec<u8> = Vec::with_capacity(max.min(src.len().saturating_mul(255)));
    let mut i = 0;
    let len_ext = |i: &mut usize, mut n: usize| -> Result<usize, String> {
        if n == 15 {
            loop {
                let b = *src.get(*i).ok_or_else(bad)?;
                *i += 1;
                n += usize::from(b);
                if b != 255 {
                    break;
                }
            }
        }
        Ok(n)
    };
    loop {
        let token = *src.get(i).ok_or_else(bad)?;
        i += 1;
        let lit = len_ext(&mut i, usize::from(token >> 4))?;
        let lits = src.get(i..i + lit).ok_or_else(bad)?;
        if out.len() + lit > max {
            return Err(bad());
        }
        out.extend_from_slice(lits);
        i += lit;
        if i == src.len() {
            return Ok(out);
        }
        let o = usize::from(u16::from_le_bytes([
            *src.get(i).ok_or_else(bad)?,
            *src.get(i + 1).ok_or_else(bad)?,
        ]));
        i += 2;
        let m = len_ext(&mut i, usize::from(token & 15))? + 4;
        if o == 0 || o > out.len() || out.len() + m > max {
            return Err(bad());
        }
        let start = out.len() - o;
        for k in 0..m {
            out.push(out[start + k]);
        }
    }
}

pub fn parse(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    let f = File::open(&path).map_err(|source| LogError::Open {
        path: path.clone(),
        source,
    })?;
    let mut j = match Journal::open(f) {
        Ok(j) => j,
        Err(why) => {
            ctx.stats.skipped += 1;
            return ctx.unparsed(0, "", &why);
        }
    };
    let mut n = 0u64;
    let mut skipped = 0u64;
    let mut bad_objects = Vec::new();
    j.entries(
        |e| {
            n += 1;
            skipped += e.undecoded.len() as u64;
            let ident = e
                .get("SYSLOG_IDENTIFIER")
                .or_else(|| e.get("_COMM"))
                .unwrap_or_default();
            let pid = e
                .get("SYSLOG_PID")
                .or_else(|| e.get("_PID"))
                .unwrap_or_default();
            let msg = e.get("MESSAGE").unwrap_or_default();
            let text = match (ident.is_empty(), pid.is_empty()) {
                (true, _) => msg.clone(),
                (false, true) => format!("{ident}: {msg}"),
                (false, false) => format!("{ident}[{pid}]: {msg}"),
            };
            let mut ev = ctx.event(e.realtime as i64, "Entry Written", text);
            if let Some(h) = e.get("_HOSTNAME") {
                ev.host = h;
            }
            let mut ev = ev
                .attr("program", ident.as_str())
                .attr("pid", pid.as_str())
                .attr("priority", e.get("PRIORITY").unwrap_or_default())
                .attr("unit", e.get("_SYSTEMD_UNIT").unwrap_or_default())
                .attr("uid", e.get("_UID").unwrap_or_default())
                .attr("transport", e.get("_TRANSPORT").unwrap_or_default())
                .attr("boot_id", hex::encode(e.boot_id))
                .attr("seqnum", e.seqnum)
                .attr("monotonic_us", e.monotonic);
            if !e.undecoded.is_empty() {
                ev = ev.attr("undecoded_fields", e.undecoded.join("; "));
            }
            if ident.starts_with("sshd") {
                let (user, from) = heuristics::sshd_fields(&msg);
                ev = ev
                    .attr("user", user.unwrap_or(""))
                    .attr("from", from.unwrap_or(""));
            }
            if let Some(why) = heuristics::judge_message(&ident, &msg) {
                ev = ev.flag(why);
            }
            ctx.emit(ev)
        },
        |off, why| {
            bad_objects.push((off, why));
            Ok(())
        },
    )?;
    for (off, why) in bad_objects {
        ctx.stats.skipped += 1;
        ctx.unparsed(off, "", &format!("journal object at byte {off}: {why}"))?;
    }
    ctx.stats.skipped += skipped;
    ctx.stats.lines = n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_blocks_decode_literals_and_overlapping_matches() {
        // "abc" then a match of offset 3, length 9 → "abcabcabcabc", then literal "!".
        let src = [0x35, b'a', b'b', b'c', 3, 0, 0x10, b'!'];
        assert_eq!(lz4_block(&src, 100).unwrap(), b"abcabcabcabc!");
        assert!(lz4_block(&[0x35, b'a'], 100).is_err());
        assert!(
            lz4_block(&src, 5).is_err(),
            "output over the declared size is refused"
        );
    }

    /// lz4(1) is an independent encoder: the first block of its frame decodes to the input.
    #[test]
    fn lz4_blocks_from_the_lz4_tool_decode() {
        use std::io::Write;
        let input: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {} of a journal message\n", i % 97).into_bytes())
            .take(60_000)
            .collect();
        let child = std::process::Command::new("lz4")
            .args(["-c", "-q", "-B4"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                "lz4 (package lz4) is needed"
            );
            return;
        };
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let frame = child.wait_with_output().unwrap().stdout;
        assert_eq!(&frame[..4], &[0x04, 0x22, 0x4d, 0x18]);
        let flg = frame[4];
        let mut at = 6 + if flg & 8 != 0 { 8 } else { 0 } + if flg & 1 != 0 { 4 } else { 0 } + 1;
        let size = u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
        at += 4;
        assert_eq!(size & 0x8000_0000, 0, "the block is compressed");
        let block = &frame[at..at + size as usize];
        assert_eq!(
            lz4_block(block, 64 << 10).unwrap(),
            input[..input.len().min(64 << 10)]
        );
    }

    fn xz(input: &[u8], args: &[&str]) -> Option<Vec<u8>> {
        use std::io::Write;
        let child = std::process::Command::new("xz")
            .args(args)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                "xz (package xz-utils) is needed"
            );
            return None;
        };
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&feed));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        Some(out.stdout)
    }

    /// xz(1) is an independent encoder: its streams decode with the check types systemd (none) and
    /// xz (CRC64 by default, CRC32) write, and their size is known from the chunk headers before
    /// decoding. A SHA-256 check, which lzma-rs lacks, is an error naming it, not a panic.
    #[test]
    fn xz_fields_from_the_xz_tool_decode() {
        let field: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("MESSAGE=session {} opened\n", i % 31).into_bytes())
            .collect();
        for check in ["none", "crc32", "crc64"] {
            let Some(x) = xz(&field, &["--format=xz", &format!("--check={check}")]) else {
                return;
            };
            assert_eq!(xz_unpacked_size(&x).unwrap(), field.len() as u64, "{check}");
            assert_eq!(xz_field(&x).unwrap(), field, "{check}");
        }
        let Some(x) = xz(&field, &["--check=sha256"]) else {
            return;
        };
        let e = xz_field(&x).unwrap_err();
        assert!(e.contains("SHA-256"), "{e}");
        // Incompressible data: xz stores it in uncompressed LZMA2 chunks.
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let Some(x) = xz(&noise, &["-0"]) else { return };
        assert_eq!(xz_field(&x).unwrap(), noise);
        // Cut short or not XZ: an error, never a panic.
        for n in [0, 5, 12, 13, 20, x.len() / 2, x.len() - 1] {
            assert!(xz_field(&x[..n]).is_err(), "cut at {n}");
        }
    }

    /// A small field that would expand past the bound is refused before anything is decoded.
    #[test]
    fn an_xz_field_that_expands_past_the_bound_is_refused() {
        let zeros = vec![0u8; (MAX_OBJECT + (1 << 20)) as usize];
        let Some(x) = xz(&zeros, &["-0", "--check=none"]) else {
            return;
        };
        assert!(x.len() < 1 << 20, "{} bytes", x.len());
        let e = xz_field(&x).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.journal");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        assert!(Journal::open(File::open(&p).unwrap()).is_err());
    }
}
