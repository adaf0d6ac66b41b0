//! A read-only reader of Berkeley DB hash databases, enough for the rpmdb `Packages` file of RHEL ≤ 8
//! and older Fedora/SUSE: the metadata page (magic, page size, last page, byte order), hash pages
//! (key/data item pairs, `H_KEYDATA` inline or `H_OFFPAGE` in an overflow chain) and overflow pages.
//! Layout: Berkeley DB's `dbinc/db_page.h`. Pages are read one at a time (`pread`); a corrupt file is
//! an error naming the page, never a panic or an endless chain.
//!
//! Encrypted databases are refused; page checksums are not verified (rpm's database is the
//! suspect's own either way: what it says is compared with the disk, not trusted).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// What is wrong with the file, in words.
#[derive(Debug, thiserror::Error)]
pub enum BdbError {
    #[error("reading: {0}")]
    Read(#[source] std::io::Error),
    #[error("{0}")]
    Corrupt(String),
}

fn corrupt<T>(what: impl Into<String>) -> Result<T, BdbError> {
    Err(BdbError::Corrupt(what.into()))
}

const HASH_MAGIC: u32 = 0x0006_1561;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// The generic page header (`SIZEOF_PAGE`): lsn, pgno, prev, next, entries, hf_offset, level, type.
const PAGE_HEADER: usize = 26;

/// What [`Bdb::for_each`] calls with each key and its data.
pub type Visitor<'a> = dyn FnMut(&[u8], Vec<u8>) -> Result<(), BdbError> + 'a;

/// An open hash database.
#[derive(Debug)]
pub struct Bdb {
    file: File,
    page_size: usize,
    last_page: u32,
    big_endian: bool,
}

impl Bdb {
    pub fn open(file: File) -> Result<Bdb, BdbError> {
        let mut meta = [0u8; 72];
        file.read_exact_at(&mut meta, 0).map_err(BdbError::Read)?;
        let le = u32::from_le_bytes([meta[12], meta[13], meta[14], meta[15]]);
        let big_endian = match le {
            HASH_MAGIC => false,
            m if m.swap_bytes() == HASH_MAGIC => true,
            m => return corrupt(format!("magic {m:#x} is not a Berkeley DB hash database")),
        };
        let u32_at = |at: usize| {
            let b = [meta[at], meta[at + 1], meta[at + 2], meta[at + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let page_size = u32_at(20) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return corrupt(format!("page size {page_size} is not valid"));
        }
        if meta[24] != 0 {
            return corrupt("the database is encrypted");
        }
        let len = file.metadata().map_err(BdbError::Read)?.len();
        let in_file = u32::try_from(len / page_size as u64).unwrap_or(u32::MAX);
        let last_page = u32_at(32).min(in_file.saturating_sub(1));
        Ok(Bdb {
            file,
            page_size,
            last_page,
            big_endian,
        })
    }

    fn u16(&self, b: &[u8], at: usize) -> usize {
        let v = [b[at], b[at + 1]];
        usize::from(if self.big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    fn page(&self, n: u32) -> Result<Vec<u8>, BdbError> {
        if n > self.last_page {
            return corrupt(format!(
                "page {n} is past the last page ({})",
                self.last_page
            ));
        }
        let mut buf = vec![0u8; self.page_size];
        self.file
            .read_exact_at(&mut buf, u64::from(n) * self.page_size as u64)
            .map_err(BdbError::Read)?;
        Ok(buf)
    }

    /// Calls `record(key, data)` for every key/data pair of every hash page, in page order.
    pub fn for_each(&self, record: &mut Visitor<'_>) -> Result<(), BdbError> {
        for n in 1..=self.last_page {
            let page = self.page(n)?;
            if !matches!(page[25], P_HASH | P_HASH_UNSORTED) {
                continue;
            }
            let entries = self.u16(&page, 20);
            let index_end = PAGE_HEADER + 2 * entries;
            if index_end > page.len() {
                return corrupt(format!("page {n}: {entries} entries overflow the page"));
            }
            let item = |i: usize| -> Result<&[u8], BdbError> {
                let start = self.u16(&page, PAGE_HEADER + 2 * i);
                let end = if i == 0 {
                    self.page_size
                } else {
                    self.u16(&page, PAGE_HEADER + 2 * (i - 1))
                };
                match page.get(start..end) {
                    Some(b) if start >= index_end && !b.is_empty() => Ok(b),
                    _ => corrupt(format!("page {n}: item {i} spans {start}..{end}")),
                }
            };
            for i in (0..entries.saturating_sub(1)).step_by(2) {
                let key = item(i)?;
                let data = item(i + 1)?;
                let key = match key[0] {
                    H_KEYDATA => &key[1..],
                    // rpm's keys are 4-byte header numbers; an off-page key is not rpm's.
                    _ => continue,
                };
                let value = match data[0] {
                    H_KEYDATA => data[1..].to_vec(),
                    H_OFFPAGE if data.len() >= 12 => {
                        self.overflow(self.u32(data, 4), self.u32(data, 8) as usize, n)?
                    }
                    t => return corrupt(format!("page {n}: item {} has type {t}", i + 1)),
                };
                record(key, value)?;
            }
        }
        Ok(())
    }

    /// The `len` bytes of an overflow chain starting at page `first`.
    fn overflow(&self, first: u32, len: usize, from: u32) -> Result<Vec<u8>, BdbError> {
        if len > 256 << 20 {
            return corrupt(format!("page {from}: an off-page item of {len} bytes"));
        }
        // The chain's pages are in the file: no more than the file is reserved for it.
        let in_file = (self.last_page as usize).saturating_mul(self.page_size);
        let mut out = Vec::with_capacity(len.min(in_file));
        let mut next = first;
        let mut hops = 0;
        while out.len() < len {
            hops += 1;
            if next == 0 || hops > self.last_page {
                return corrupt(format!(
                    "page {from}: the overflow chain from page {first} ends early or loops"
                ));
            }
            let p = self.page(next)?;
            if p[25] != P_OVERFLOW {
                return corrupt(format!("page {next} is not an overflow page"));
            }
            let here = self.u16(&p, 22).min(self.page_size - PAGE_HEADER);
            let take = here.min(len - out.len());
            out.extend_from_slice(&p[PAGE_HEADER..PAGE_HEADER + take]);
            next = self.u32(&p, 16);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_hash_database_and_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Packages");
        std::fs::write(&p, [0u8; 4096]).unwrap();
        let err = Bdb::open(File::open(&p).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not a Berkeley DB hash"), "{err}");
        // A metadata page, then a hash page whose one pair points at an overflow chain that loops.
        let mut f = vec![0u8; 3 * 512];
        f[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        f[20..24].copy_from_slice(&512u32.to_le_bytes());
        f[32..36].copy_from_slice(&2u32.to_le_bytes());
        let pg = &mut f[512..1024];
        pg[25] = P_HASH;
        pg[20] = 2;
        // Item 0 (key) at 500..512, item 1 (data, H_OFFPAGE) at 488..500.
        pg[26..28].copy_from_slice(&500u16.to_le_bytes());
        pg[28..30].copy_from_slice(&488u16.to_le_bytes());
        pg[500] = H_KEYDATA;
        pg[488] = H_OFFPAGE;
        pg[492..496].copy_from_slice(&2u32.to_le_bytes());
        pg[496..500].copy_from_slice(&100_000u32.to_le_bytes());
        let ov = &mut f[1024..];
        ov[25] = P_OVERFLOW;
        ov[16..20].copy_from_slice(&2u32.to_le_bytes());
        ov[22..24].copy_from_slice(&10u16.to_le_bytes());
        std::fs::write(&p, &f).unwrap();
        let db = Bdb::open(File::open(&p).unwrap()).unwrap();
        let err = db.for_each(&mut |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("loops"), "{err}");
    }
}

/// Fuzz targets (see `crate::fuzzing`): a Berkeley DB hash rpmdb (`Packages`) from a suspect root.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::{Target, file_of};

    fn databases(b: &[u8]) {
        let Ok(db) = Bdb::open(file_of(b)) else {
            return;
        };
        let mut total = 0usize;
        let _ = db.for_each(&mut |_, data| {
            total += data.len();
            Ok(())
        });
    }

    #[test]
    fn berkeley_db() {
        // Written by db5.3_load -t hash (page size 512), five records, overflow pages among them.
        let db = zstd::decode_all(&include_bytes!("../fuzz-seeds/Packages.bdb.zst")[..])
            .unwrap_or_else(|e| panic!("fuzz seed: {e}"));
        Target::new("bdb")
            .seed(db)
            .dict(&[b"\x61\x15\x06\x00", b"\x00\x06\x15\x61", b"\x0d", b"\x02"])
            .run(databases);
    }

    /// Found by `bdb`: an off-page item claiming 7.7 MB in a 5 KB database reserved it all before
    /// following the chain; the file's size now bounds the reservation.
    #[test]
    fn regression_an_off_page_length_does_not_reserve_more_than_the_file() {
        let input = zstd::decode_all(
            &include_bytes!("../fuzz-seeds/regressions/bdb-overflow-item-length.bin.zst")[..],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(crate::fuzzing::replay(databases, &input), Ok(()));
    }
}
