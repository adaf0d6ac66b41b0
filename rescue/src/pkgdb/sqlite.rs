//! A read-only reader of SQLite database files, enough for the rpmdb (`rpmdb.sqlite`): the file
//! header, table b-trees (interior and leaf pages, overflow chains), the record format, and the
//! write-ahead log (`-wal`): committed frames not yet checkpointed into the main file are what the
//! database says, so a page is read from the last committed WAL frame that holds it. Format:
//! <https://www.sqlite.org/fileformat.html>.
//!
//! Written here instead of linking SQLite (`rusqlite` with its bundled C library adds about 1 MiB to
//! the binary; this reader is a few hundred lines): it never writes, never creates the `-shm` file a
//! real SQLite would create even to read, and a corrupt file is an error, never a panic or a loop
//! (page visits are bounded by the page count).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// What is wrong with the file, in words.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("reading: {0}")]
    Read(#[source] std::io::Error),
    #[error("{0}")]
    Corrupt(String),
}

fn corrupt<T>(what: impl Into<String>) -> Result<T, SqliteError> {
    Err(SqliteError::Corrupt(what.into()))
}

/// One column value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// An open database file (and its WAL, if any).
#[derive(Debug)]
pub struct Sqlite {
    file: File,
    page_size: usize,
    usable: usize,
    pages: u32,
    /// Page number → offset of its newest committed frame in the WAL.
    wal_pages: HashMap<u32, u64>,
    wal: Option<File>,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A SQLite varint at `b[at..]`: (value, length).
fn varint(b: &[u8], at: usize) -> Result<(i64, usize), SqliteError> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let Some(&byte) = b.get(at + i) else {
            return corrupt("a varint runs past the end of its page");
        };
        if i == 8 {
            return Ok(((v << 8 | u64::from(byte)) as i64, 9));
        }
        v = v << 7 | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok((v as i64, i + 1));
        }
    }
    unreachable!("the loop returns at i == 8")
}

/// The WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn wal_checksum(data: &[u8], big_endian: bool, mut s: (u32, u32)) -> (u32, u32) {
    for c in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        s.0 = s.0.wrapping_add(word(&c[..4])).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(word(&c[4..])).wrapping_add(s.0);
    }
    s
}

impl Sqlite {
    /// Opens a database from its file and, when present, its `-wal` file.
    pub fn open(file: File, wal: Option<File>) -> Result<Sqlite, SqliteError> {
        let mut h = [0u8; 100];
        file.read_exact_at(&mut h, 0).map_err(SqliteError::Read)?;
        if &h[..16] != b"SQLite format 3\0" {
            return corrupt("no \"SQLite format 3\" header");
        }
        let page_size = match be16(&h, 16) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => n,
            n => return corrupt(format!("page size {n} is not valid")),
        };
        let reserved = usize::from(h[20]);
        let usable = page_size - reserved;
        if usable < 480 {
            return corrupt(format!("usable page size {usable} is below 480"));
        }
        let len = file.metadata().map_err(SqliteError::Read)?.len();
        let mut pages = u32::try_from(len / page_size as u64).unwrap_or(u32::MAX);
        let mut db = Sqlite {
            file,
            page_size,
            usable,
            pages,
            wal_pages: HashMap::new(),
            wal: None,
        };
        if let Some(wal) = wal {
            if let Some(n) = db.read_wal(&wal)? {
                pages = n;
            }
            db.pages = pages;
            db.wal = Some(wal);
        }
        Ok(db)
    }

    /// Indexes the committed frames of the WAL; returns the database size in pages after the last
    /// commit, if there was one.
    fn read_wal(&mut self, wal: &File) -> Result<Option<u32>, SqliteError> {
        let mut h = [0u8; 32];
        if wal.read_exact_at(&mut h, 0).is_err() {
            return Ok(None); // empty or cut-off WAL: nothing committed in it
        }
        let big_endian = match be32(&h, 0) {
            0x377f_0682 => false,
            0x377f_0683 => true,
            _ => return corrupt("the -wal file has no WAL magic"),
        };
        if be32(&h, 8) as usize != self.page_size {
            return corrupt("the -wal file's page size differs from the database's");
        }
        let mut sum = wal_checksum(&h[..24], big_endian, (0, 0));
        if sum != (be32(&h, 24), be32(&h, 28)) {
            return Ok(None); // a WAL header never completed: SQLite ignores the file
        }
        let salts = (be32(&h, 16), be32(&h, 20));
        let frame = 24 + self.page_size as u64;
        let mut pending: Vec<(u32, u64)> = Vec::new();
        let mut committed = None;
        let mut buf = vec![0u8; frame as usize];
        let mut off = 32u64;
        while wal.read_exact_at(&mut buf, off).is_ok() {
            if (be32(&buf, 8), be32(&buf, 12)) != salts {
                break;
            }
            sum = wal_checksum(&buf[..8], big_endian, sum);
            sum = wal_checksum(&buf[24..], big_endian, sum);
            if sum != (be32(&buf, 16), be32(&buf, 20)) {
                break;
            }
            pending.push((be32(&buf, 0), off + 24));
            let size_after_commit = be32(&buf, 4);
            if size_after_commit != 0 {
                self.wal_pages.extend(pending.drain(..));
                committed = Some(size_after_commit);
            }
            off += frame;
        }
        Ok(committed)
    }

    /// Reads page `n` (1-based).
    fn page(&self, n: u32) -> Result<Vec<u8>, SqliteError> {
        if n == 0 || n > self.pages {
            return corrupt(format!(
                "page {n} is outside the database ({} pages)",
                self.pages
            ));
        }
        let mut buf = vec![0u8; self.page_size];
        match (self.wal_pages.get(&n), &self.wal) {
            (Some(&off), Some(wal)) => wal.read_exact_at(&mut buf, off),
            _ => self
                .file
                .read_exact_at(&mut buf, u64::from(n - 1) * self.page_size as u64),
        }
        .map_err(SqliteError::Read)?;
        Ok(buf)
    }

    /// Calls `row(rowid, record)` for each row of the table b-tree rooted at `root`, in rowid order.
    pub fn for_each_row(
        &self,
        root: u32,
        row: &mut dyn FnMut(i64, Vec<Value>) -> Result<(), SqliteError>,
    ) -> Result<(), SqliteError> {
        let mut stack = vec![root];
        let mut visited = 0u32;
        while let Some(n) = stack.pop() {
            visited += 1;
            if visited > self.pages {
                return corrupt("the table b-tree visits more pages than the file has (a loop)");
            }
            let page = self.page(n)?;
            let hdr = if n == 1 { 100 } else { 0 };
            let kind = page[hdr];
            let cells = be16(&page, hdr + 3);
            match kind {
                5 => {
                    let ptrs = hdr + 12;
                    // Children are pushed right-most first so the stack pops them in key order.
                    stack.push(be32(&page, hdr + 8));
                    for i in (0..cells).rev() {
                        let at = ptrs + 2 * i;
                        if at + 2 > page.len() {
                            return corrupt(format!("page {n}: cell pointers run past the page"));
                        }
                        let cell = be16(&page, at);
                        if cell + 4 > page.len() {
                            return corrupt(format!("page {n}: cell {i} is outside the page"));
                        }
                        stack.push(be32(&page, cell));
                    }
                }
                13 => {
                    let ptrs = hdr + 8;
                    for i in 0..cells {
                        let at = ptrs + 2 * i;
                        if at + 2 > page.len() {
                            return corrupt(format!("page {n}: cell pointers run past the page"));
                        }
                        let cell = be16(&page, at);
                        let (len, a) = varint(&page, cell)?;
                        let (rowid, b) = varint(&page, cell + a)?;
                        let payload = self.payload(&page, cell + a + b, len, n)?;
                        row(rowid, record(&payload)?)?;
                    }
                }
                k => return corrupt(format!("page {n} has type {k}, not a table b-tree page")),
            }
        }
        Ok(())
    }

    /// The whole payload of a table leaf cell starting at `at`, following its overflow chain.
    fn payload(&self, page: &[u8], at: usize, len: i64, n: u32) -> Result<Vec<u8>, SqliteError> {
        let p = usize::try_from(len)
            .ok()
            .filter(|&p| p <= 1 << 30)
            .ok_or_else(|| SqliteError::Corrupt(format!("page {n}: payload size {len}")))?;
        let u = self.usable;
        let x = u - 35;
        let local = if p <= x {
            p
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((p - m) % (u - 4));
            if k <= x { k } else { m }
        };
        let Some(head) = page.get(at..at + local) else {
            return corrupt(format!("page {n}: a cell runs past the page"));
        };
        // The overflow chain is at most every page of the file: no more is reserved for it.
        let chain_max = (self.pages as usize).saturating_mul(u - 4);
        let mut out = Vec::with_capacity(p.min(local.saturating_add(chain_max)));
        out.extend_from_slice(head);
        if local < p {
            let Some(next) = page.get(at + local..at + local + 4) else {
                return corrupt(format!("page {n}: a cell's overflow pointer is cut off"));
            };
            let mut next = be32(next, 0);
            let mut hops = 0;
            while out.len() < p {
                hops += 1;
                if next == 0 || hops > self.pages {
                    return corrupt(format!("page {n}: an overflow chain ends early or loops"));
                }
                let o = self.page(next)?;
                let take = (p - out.len()).min(u - 4);
                out.extend_from_slice(&o[4..4 + take]);
                next = be32(&o, 0);
            }
        }
        Ok(out)
    }

    /// The root page of the table `name` (from `sqlite_schema`, page 1).
    pub fn table_root(&self, name: &str) -> Result<Option<u32>, SqliteError> {
        let mut found = None;
        self.for_each_row(1, &mut |_, rec| {
            if let [Value::Text(kind), Value::Text(n), _, Value::Int(root), ..] = &rec[..]
                && kind == b"table"
                && n == name.as_bytes()
            {
                found = u32::try_from(*root).ok();
            }
            Ok(())
        })?;
        Ok(found)
    }
}

/// Decodes a record: the header of serial types, then the values.
pub fn record(b: &[u8]) -> Result<Vec<Value>, SqliteError> {
    let (hlen, mut at) = varint(b, 0)?;
    let hlen = usize::try_from(hlen)
        .ok()
        .filter(|&h| h <= b.len())
        .ok_or_else(|| SqliteError::Corrupt("a record header is longer than the record".into()))?;
    let mut body = hlen;
    let mut out = Vec::new();
    while at < hlen {
        let (t, l) = varint(b, at)?;
        at += l;
        let size = match t {
            0 | 8 | 9 => 0,
            1..=4 => t as usize,
            5 => 6,
            6 | 7 => 8,
            t if t >= 12 => ((t - 12) / 2) as usize,
            t => return corrupt(format!("serial type {t} is reserved")),
        };
        let Some(v) = b.get(body..body + size) else {
            return corrupt("a record value runs past the record");
        };
        body += size;
        let int = || {
            let mut x: i64 = if v.first().is_some_and(|&f| f & 0x80 != 0) {
                -1
            } else {
                0
            };
            for &byte in v {
                x = x << 8 | i64::from(byte);
            }
            x
        };
        out.push(match t {
            0 => Value::Null,
            1..=6 => Value::Int(int()),
            7 => Value::Real(f64::from_bits(int() as u64)),
            8 => Value::Int(0),
            9 => Value::Int(1),
            t if t % 2 == 0 => Value::Blob(v.to_vec()),
            _ => Value::Text(v.to_vec()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_records() {
        assert_eq!(varint(&[0x7f], 0).unwrap(), (127, 1));
        assert_eq!(varint(&[0x81, 0x00], 0).unwrap(), (128, 2));
        assert_eq!(varint(&[0xff; 9], 0).unwrap(), (-1, 9));
        assert!(varint(&[0x81], 0).is_err());
        // header: len 4, NULL, int8, blob of 2; body: 0xfe, "ab".
        let r = record(&[4, 0, 1, 16, 0xfe, b'a', b'b']).unwrap();
        assert_eq!(
            r,
            vec![Value::Null, Value::Int(-2), Value::Blob(b"ab".to_vec())]
        );
        assert!(record(&[3, 0, 20, 1]).is_err(), "a blob past the end");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, [b'x'; 200]).unwrap();
        let err = Sqlite::open(File::open(&p).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("SQLite format 3"), "{err}");
        let mut h = b"SQLite format 3\0".to_vec();
        h.extend_from_slice(&[0x10, 0x00]);
        h.resize(4096, 0);
        // Page 1 claims to be an interior page whose right-most child is itself.
        h[100] = 5;
        h[108..112].copy_from_slice(&1u32.to_be_bytes());
        std::fs::write(&p, &h).unwrap();
        let db = Sqlite::open(File::open(&p).unwrap(), None).unwrap();
        let err = db.table_root("Packages").unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
    }
}

/// Fuzz targets (see `crate::fuzzing`): an rpmdb SQLite file and its WAL from a suspect root.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::{Target, file_of};

    fn seed(zst: &[u8]) -> Vec<u8> {
        zstd::decode_all(zst).unwrap_or_else(|e| panic!("fuzz seed: {e}"))
    }

    /// Input: a 2-byte length of the database, the database, then the WAL (none when empty).
    fn databases(b: &[u8]) {
        let (len, rest) = b.split_at(b.len().min(2));
        let n = len.iter().fold(0usize, |a, &x| a << 8 | usize::from(x)) * 16;
        let (db, wal) = rest.split_at(n.min(rest.len()));
        let wal = (!wal.is_empty()).then(|| file_of(wal));
        let Ok(db) = Sqlite::open(file_of(db), wal) else {
            return;
        };
        if let Ok(Some(root)) = db.table_root("Packages") {
            let mut rows = 0u64;
            let _ = db.for_each_row(root, &mut |_, _| {
                rows += 1;
                Ok(())
            });
        }
    }

    #[test]
    fn sqlite_rpmdb() {
        let db = seed(include_bytes!("../fuzz-seeds/rpmdb.sqlite.zst"));
        let wal = seed(include_bytes!("../fuzz-seeds/rpmdb.sqlite-wal.zst"));
        let mut with_wal = ((db.len() / 16) as u16).to_be_bytes().to_vec();
        with_wal.extend(&db);
        with_wal.extend(&wal);
        let mut without = ((db.len() / 16) as u16).to_be_bytes().to_vec();
        without.extend(&db);
        Target::new("sqlite")
            .seed(with_wal)
            .seed(without)
            .dict(&[
                b"SQLite format 3\0",
                b"\x0d",
                b"\x05",
                b"\x37\x7f\x06\x82",
                b"Packages",
            ])
            .run(databases);
    }

    /// Found by `sqlite`: a cell declaring a 1.8 MB payload in a 7.7 KB database reserved it before
    /// following the overflow chain.
    #[test]
    fn regression_a_payload_size_does_not_reserve_memory() {
        let input = include_bytes!("../fuzz-seeds/regressions/sqlite-payload-reservation.bin");
        assert_eq!(crate::fuzzing::replay(databases, input), Ok(()));
    }
}
