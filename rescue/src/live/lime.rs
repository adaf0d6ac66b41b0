//! The LiME stream of a memory capture as a source the acquisition driver reads like a disk: for each
//! RAM range a 32-byte header (magic `0x4C694D45` little-endian, version 1, first address, last
//! address inclusive, 8 zero bytes) followed by the range's bytes, read through a [`PhysRead`].
//!
//! The driver bisects a failing read down to its sector size and zero-fills what still fails; the
//! stream declares a 32-byte "sector" (the header size), so an unreadable page costs that page and
//! not its neighbours whatever the header offsets. [`LimeStream::physical`] turns the driver's
//! unreadable stream extents back into physical addresses.

use std::collections::BTreeSet;
use std::io;
use std::sync::Mutex;

use serde::Serialize;

use super::memory::{PhysRead, RamRange};
use crate::acquire::source::{Extent, ReadAt};

/// `LiME` in the file: `0x4C694D45` as a little-endian `u32`.
pub const LIME_MAGIC: u32 = 0x4C69_4D45;
pub const LIME_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 32;
/// The granularity the driver bisects failing reads to.
pub const SECTOR: u32 = 32;

/// The header of one range.
pub fn header(r: &RamRange) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(&LIME_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&LIME_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&r.start.to_le_bytes());
    h[16..24].copy_from_slice(&r.end.to_le_bytes());
    h
}

/// A physical range that could not be read (zero-filled in the capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhysExtent {
    pub start: u64,
    pub length: u64,
}

/// The LiME stream over `ranges`.
pub struct LimeStream {
    ranges: Vec<RamRange>,
    /// Stream offset of each range's header.
    at: Vec<u64>,
    size: u64,
    reader: Box<dyn PhysRead>,
    /// Pages (physical address / [`PAGE`]) a read within them failed: later reads touching them fail
    /// at once. The driver narrows a failing read down to 32 bytes and retries each piece; without
    /// this a page of memory the kernel refuses costs hundreds of failing reads.
    bad_pages: Mutex<BTreeSet<u64>>,
}

/// The page size the bad-page memory counts in.
const PAGE: u64 = 4096;

impl LimeStream {
    pub fn new(ranges: Vec<RamRange>, reader: Box<dyn PhysRead>) -> Self {
        let mut at = Vec::with_capacity(ranges.len());
        let mut size = 0u64;
        for r in &ranges {
            at.push(size);
            size += HEADER_LEN + r.bytes();
        }
        LimeStream {
            ranges,
            at,
            size,
            reader,
            bad_pages: Mutex::new(BTreeSet::new()),
        }
    }

    /// Bytes in the stream: the headers and every range.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The physical ranges behind unreadable stream extents (headers are never unreadable).
    pub fn physical(&self, extents: &[Extent]) -> Vec<PhysExtent> {
        let mut out: Vec<PhysExtent> = Vec::new();
        for e in extents {
            for (r, at) in self.ranges.iter().zip(&self.at) {
                let data = at + HEADER_LEN;
                let lo = e.offset.max(data);
                let hi = (e.offset + e.length).min(data + r.bytes());
                if hi > lo {
                    let start = r.start + (lo - data);
                    match out.last_mut() {
                        Some(last) if last.start + last.length == start => {
                            last.length += hi - lo;
                        }
                        _ => out.push(PhysExtent {
                            start,
                            length: hi - lo,
                        }),
                    }
                }
            }
        }
        out
    }
}

impl ReadAt for LimeStream {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let i = self.at.partition_point(|a| *a <= offset) - 1;
        let r = &self.ranges[i];
        let within = offset - self.at[i];
        if within < HEADER_LEN {
            let h = header(r);
            let n = buf.len().min((HEADER_LEN - within) as usize);
            buf[..n].copy_from_slice(&h[within as usize..within as usize + n]);
            return Ok(n);
        }
        let phys = r.start + (within - HEADER_LEN);
        let left = r.end - phys + 1;
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let (first, last) = (phys / PAGE, (phys + n as u64 - 1) / PAGE);
        let known_bad = self
            .bad_pages
            .lock()
            .map(|b| b.range(first..=last).next().is_some())
            .unwrap_or(false);
        if known_bad {
            return Err(io::Error::other(format!(
                "physical page {:#x} could not be read before",
                first * PAGE
            )));
        }
        let result = self.reader.read_phys(&mut buf[..n], phys);
        if result.is_err()
            && first == last
            && let Ok(mut b) = self.bad_pages.lock()
        {
            b.insert(first);
        }
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::acquire::buffer::BufferPool;
    use crate::acquire::source::BlockReader;

    /// Physical memory whose byte at `a` is a function of `a`, with pages that always fail.
    pub(crate) struct Patterned {
        pub bad_pages: Vec<u64>,
        pub failed_reads: Arc<AtomicUsize>,
    }

    pub(crate) fn byte_at(a: u64) -> u8 {
        (a.wrapping_mul(31) ^ (a >> 12)) as u8
    }

    impl PhysRead for Patterned {
        fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize> {
            let end = phys + buf.len() as u64;
            if self.bad_pages.iter().any(|p| *p < end && phys < p + 4096) {
                self.failed_reads.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = byte_at(phys + i as u64);
            }
            Ok(buf.len())
        }
    }

    fn ranges() -> Vec<RamRange> {
        vec![
            RamRange {
                start: 0x1000,
                end: 0x9fbff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x2f_ffff,
            },
        ]
    }

    #[test]
    fn the_stream_is_a_header_then_the_bytes_of_each_range() {
        let lime = LimeStream::new(
            ranges(),
            Box::new(Patterned {
                bad_pages: vec![],
                failed_reads: Arc::default(),
            }),
        );
        assert_eq!(lime.size(), 32 + 0x9ec00 + 32 + 0x20_0000);
        let mut all = vec![0u8; lime.size() as usize];
        let mut done = 0;
        while done < all.len() {
            done += lime.read_at(&mut all[done..], done as u64).unwrap();
        }
        // The first header, byte by byte as a LiME reader sees it.
        assert_eq!(
            &all[..32],
            &[
                0x45, 0x4d, 0x69, 0x4c, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0xff, 0xfb, 0x09, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(all[32], byte_at(0x1000));
        let second = 32 + 0x9ec00;
        assert_eq!(
            u32::from_le_bytes(all[second..second + 4].try_into().unwrap()),
            LIME_MAGIC
        );
        assert_eq!(
            u64::from_le_bytes(all[second + 16..second + 24].try_into().unwrap()),
            0x2f_ffff
        );
        assert_eq!(all[second + 32 + 0x1234], byte_at(0x10_1234));
        assert_eq!(*all.last().unwrap(), byte_at(0x2f_ffff));
        assert_eq!(lime.read_at(&mut [0u8; 8], lime.size()).unwrap(), 0);
    }

    #[test]
    fn an_unreadable_page_is_zeroed_and_listed_alone() {
        let bad = 0x12_3000;
        let failed = Arc::new(AtomicUsize::new(0));
        let lime = LimeStream::new(
            ranges(),
            Box::new(Patterned {
                bad_pages: vec![bad],
                failed_reads: Arc::clone(&failed),
            }),
        );
        // The driver's reader with 4 MiB blocks: the one bad page, not its block, is zero-filled.
        let pool = BufferPool::new(2, 4 << 20);
        let mut blocks = BlockReader::new(&lime, 0, lime.size(), SECTOR, 1);
        let mut stream = Vec::new();
        let mut bad_extents = Vec::new();
        while let Some(b) = blocks.next_block(&pool).unwrap() {
            stream.extend_from_slice(b.data());
            bad_extents.extend(b.unreadable.iter().copied());
        }
        let at = 32 + 0x9ec00 + 32 + (bad - 0x10_0000) as usize;
        assert!(stream[at..at + 4096].iter().all(|b| *b == 0));
        assert_eq!(stream[at - 1], byte_at(bad - 1));
        assert_eq!(stream[at + 4096], byte_at(bad + 4096));
        assert_eq!(
            lime.physical(&bad_extents),
            vec![PhysExtent {
                start: bad,
                length: 4096
            }]
        );
        // The page is remembered once a read within it failed: a few dozen failing reads of the
        // memory, not one (and its retries) for each of the page's 128 pieces.
        let n = failed.load(Ordering::Relaxed);
        assert!(n < 40, "{n} failing reads of physical memory");
    }
}
