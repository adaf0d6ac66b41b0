//! Byte encodings of the ISO 9660 fields the writer emits: both-endian numbers, padded strings, UTC
//! dates (through `chrono`), directory records and the size of a directory extent.
//!
//! Pure functions of their arguments; nothing here knows the layout of an image.

use super::BLOCK;
use chrono::{DateTime, Datelike, Timelike, Utc};

/// Bytes of a directory record with a name of `name_len` bytes.
pub(super) fn record_len(name_len: usize) -> usize {
    let l = 33 + name_len;
    l + (l % 2)
}

/// Bytes of a directory extent holding records of these lengths (records never straddle sectors).
pub(super) fn extent_size(records: impl Iterator<Item = usize>) -> u32 {
    let mut used = 0usize;
    for len in records {
        let in_sector = used % BLOCK as usize;
        if in_sector + len > BLOCK as usize {
            used += BLOCK as usize - in_sector;
        }
        used += len;
    }
    (used.div_ceil(BLOCK as usize) * BLOCK as usize) as u32
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(epoch: u32) -> (i64, u32, u32, u32, u32, u32) {
    // Every u32 of seconds is a valid chrono date (1970 to 2106), so the default is never taken.
    let t: DateTime<Utc> = DateTime::from_timestamp(i64::from(epoch), 0).unwrap_or_default();
    (
        i64::from(t.year()),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

/// The 7-byte date of a directory record.
pub(super) fn dir_date(epoch: u32) -> [u8; 7] {
    let (y, m, d, hh, mm, ss) = civil(epoch);
    [
        (y - 1900).clamp(0, 255) as u8,
        m as u8,
        d as u8,
        hh as u8,
        mm as u8,
        ss as u8,
        0,
    ]
}

/// The 17-byte date of a volume descriptor.
pub(super) fn vd_date(epoch: u32) -> [u8; 17] {
    let (y, m, d, hh, mm, ss) = civil(epoch);
    let text = format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(&text.as_bytes()[..16]);
    out
}

pub(super) fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

pub(super) fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

pub(super) fn padded<const N: usize>(text: &str, fill: u8) -> [u8; N] {
    let mut out = [fill; N];
    for (o, c) in out.iter_mut().zip(text.bytes()) {
        *o = c;
    }
    out
}

pub(super) fn dir_record(name: &[u8], lba: u32, len: u32, is_dir: bool, epoch: u32) -> Vec<u8> {
    let mut r = vec![0u8; record_len(name.len())];
    r[0] = r.len() as u8;
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(len));
    r[18..25].copy_from_slice(&dir_date(epoch));
    r[25] = if is_dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_time() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(&vd_date(1_700_000_000)[..16], b"2023111422132000");
    }
}
