//! The LVM2 on-disk label and metadata area, as lvm2's `label.h`, `format_text/layout.h` lay them out:
//! a `LABELONE` label in one of the first four 512-byte sectors, the `pv_header` after it (PV UUID,
//! device size, data and metadata area lists), and in each metadata area an `mda_header` whose first
//! raw location points at the current metadata text in a circular buffer. All little-endian; every
//! piece is checked with lvm2's CRC (CRC-32, initial value `0xf597a6cf`, no final inversion).

/// lvm2's `INITIAL_CRC`.
const INITIAL_CRC: u32 = 0xf597_a6cf;
/// `FMTT_MAGIC` at byte 4 of an `mda_header`.
const MDA_MAGIC: &[u8; 16] = b"\x20\x4c\x56\x4d\x32\x20\x78\x5b\x35\x41\x25\x72\x30\x4e\x2a\x3e";
/// `MDA_HEADER_SIZE`: the circular text buffer starts after it.
pub const MDA_HEADER_SIZE: u64 = 512;

/// Why a label or metadata area could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("no LVM2 label in the first four sectors")]
    NotFound,
    #[error("LVM2 label: {0}")]
    Malformed(String),
    #[error("metadata area at byte {offset}: {what}")]
    Metadata { offset: u64, what: String },
}

/// lvm2's `calc_crc`.
pub fn crc(initial: u32, data: &[u8]) -> u32 {
    let mut c = initial;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg());
        }
    }
    c
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

/// A byte range on the device (`disk_locn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Area {
    pub offset: u64,
    pub size: u64,
}

/// What a PV label says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PvLabel {
    /// Sector the label was found in (0..3).
    pub sector: u64,
    /// The 32-character PV UUID without dashes.
    pub pv_uuid: String,
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

/// Parses the label from the first 2048 bytes of a device.
pub fn parse_label(head: &[u8]) -> Result<PvLabel, LabelError> {
    for sector in 0..4u64 {
        let s = sector as usize * 512;
        let Some(b) = head.get(s..s + 512) else {
            break;
        };
        if &b[0..8] != b"LABELONE" {
            continue;
        }
        let bad = |w: &str| LabelError::Malformed(format!("sector {sector}: {w}"));
        if le64(b, 8) != sector {
            return Err(bad("sector_xl does not name the sector it is in"));
        }
        let offset = le32(b, 20) as usize;
        if crc(INITIAL_CRC, &b[20..]) != le32(b, 16) {
            return Err(bad("checksum mismatch"));
        }
        if &b[24..32] != b"LVM2 001" {
            return Err(bad(&format!(
                "type {:?} is not LVM2 001",
                String::from_utf8_lossy(&b[24..32])
            )));
        }
        if !(32..=512 - 40).contains(&offset) {
            return Err(bad("pv_header offset out of the sector"));
        }
        let pv_uuid = String::from_utf8_lossy(&b[offset..offset + 32]).into_owned();
        let device_size = le64(b, offset + 32);
        let mut pos = offset + 40;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            loop {
                if pos + 16 > 512 {
                    return Err(bad("area list runs past the sector"));
                }
                let area = Area {
                    offset: le64(b, pos),
                    size: le64(b, pos + 8),
                };
                pos += 16;
                if area.offset == 0 {
                    break;
                }
                list.push(area);
            }
        }
        let [data_areas, metadata_areas] = lists;
        return Ok(PvLabel {
            sector,
            pv_uuid,
            device_size,
            data_areas,
            metadata_areas,
        });
    }
    Err(LabelError::NotFound)
}

/// The current metadata text's place in a metadata area (`raw_locns[0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLocation {
    /// Offset from the start of the metadata area.
    pub offset: u64,
    pub size: u64,
    pub checksum: u32,
}

/// Parses the 512-byte `mda_header` at the start of metadata `area`; `None` when the area holds no
/// metadata yet.
pub fn parse_mda_header(area: Area, b: &[u8]) -> Result<Option<RawLocation>, LabelError> {
    let bad = |what: &str| LabelError::Metadata {
        offset: area.offset,
        what: what.to_owned(),
    };
    if b.len() < MDA_HEADER_SIZE as usize {
        return Err(bad("short read"));
    }
    if &b[4..20] != MDA_MAGIC {
        return Err(bad("no mda_header magic"));
    }
    if crc(INITIAL_CRC, &b[4..512]) != le32(b, 0) {
        return Err(bad("mda_header checksum mismatch"));
    }
    if le32(b, 20) != 1 {
        return Err(bad("mda_header version is not 1"));
    }
    if le64(b, 24) != area.offset {
        return Err(bad(
            "mda_header start does not match the label's metadata area",
        ));
    }
    let raw = RawLocation {
        offset: le64(b, 40),
        size: le64(b, 48),
        checksum: le32(b, 56),
    };
    if raw.offset == 0 || raw.size == 0 {
        return Ok(None);
    }
    if raw.offset < MDA_HEADER_SIZE
        || raw.offset >= area.size
        || raw.size > area.size - MDA_HEADER_SIZE
    {
        return Err(bad("raw location outside the metadata area"));
    }
    Ok(Some(raw))
}

/// The metadata text of `raw` in `area`, read through `read_at` (device offsets); the circular
/// buffer wraps from the end of the area back to just after the header.
pub fn read_text(
    area: Area,
    raw: RawLocation,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<String, LabelError> {
    let bad = |what: String| LabelError::Metadata {
        offset: area.offset,
        what,
    };
    let mut buf = vec![0u8; raw.size as usize];
    let first = (area.size - raw.offset).min(raw.size) as usize;
    read_at(area.offset + raw.offset, &mut buf[..first])
        .map_err(|e| bad(format!("reading the metadata text: {e}")))?;
    if first < buf.len() {
        read_at(area.offset + MDA_HEADER_SIZE, &mut buf[first..])
            .map_err(|e| bad(format!("reading the wrapped metadata text: {e}")))?;
    }
    if crc(INITIAL_CRC, &buf) != raw.checksum {
        return Err(bad("metadata text checksum mismatch".into()));
    }
    // The text ends with a NUL.
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).map_err(|_| bad("metadata text is not UTF-8".into()))
}

/// A UUID without dashes in lvm2's printed form (6-4-4-4-4-4-6).
pub fn dashed(uuid: &str) -> String {
    let u: String = uuid.chars().filter(|c| *c != '-').collect();
    if u.len() != 32 || !u.is_ascii() {
        return u;
    }
    let mut out = String::new();
    let mut pos = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(&u[pos..pos + n]);
        pos += n;
    }
    out
}

/// Fuzz targets (see `crate::fuzzing`): a PV's label, metadata area header and metadata text, read
/// from a device that may be damaged or planted, as `lvm::read_pv` reads them; then the text parsed
/// into a VG. The targets set the checksums right after mutating, so the mutations reach the fields
/// and the text behind them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;
    use crate::lvm::{text, vg};

    fn pv_head() -> Vec<u8> {
        zstd::decode_all(&include_bytes!("testdata/pv0.head.zst")[..])
            .unwrap_or_else(|e| panic!("fuzz seed: {e}"))
    }

    fn fix_label(d: &mut [u8]) {
        for s in 0..4 {
            let at = s * 512;
            if d.len() >= at + 512 && &d[at..at + 8] == b"LABELONE" {
                let c = crc(INITIAL_CRC, &d[at + 20..at + 512]);
                d[at + 16..at + 20].copy_from_slice(&c.to_le_bytes());
            }
        }
    }

    fn fix_mda(d: &mut [u8], area: Area) {
        let Some(at) = usize::try_from(area.offset)
            .ok()
            .filter(|&a| a.checked_add(512).is_some_and(|end| end <= d.len()))
        else {
            return;
        };
        let (off, size) = (le64(d, at + 40), le64(d, at + 48));
        // The text's checksum, when the text is where the header says (no wrap in the seeds).
        if let Some(text) = usize::try_from(area.offset.saturating_add(off))
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(s, n)| d.get(s..s.checked_add(n)?))
        {
            let c = crc(INITIAL_CRC, text);
            d[at + 56..at + 60].copy_from_slice(&c.to_le_bytes());
        }
        let c = crc(INITIAL_CRC, &d[at + 4..at + 512]);
        d[at..at + 4].copy_from_slice(&c.to_le_bytes());
    }

    /// The input is the start of a PV (zeros after its end, as a short read would give).
    fn pvs(b: &[u8]) {
        let (flags, rest) = b.split_first().unwrap_or((&0, b));
        let mut d = rest.to_vec();
        if flags & 1 == 0 {
            fix_label(&mut d);
        }
        let Ok(lbl) = parse_label(&d[..d.len().min(2048)]) else {
            return;
        };
        for area in lbl.metadata_areas.iter().take(4) {
            if flags & 2 == 0 {
                fix_mda(&mut d, *area);
            }
            let mut hdr = vec![0u8; MDA_HEADER_SIZE as usize];
            let Some(at) = usize::try_from(area.offset).ok().filter(|&a| a < d.len()) else {
                continue;
            };
            let n = hdr.len().min(d.len() - at);
            hdr[..n].copy_from_slice(&d[at..at + n]);
            let Ok(Some(raw)) = parse_mda_header(*area, &hdr) else {
                continue;
            };
            let read = |off: u64, buf: &mut [u8]| -> std::io::Result<()> {
                let src = usize::try_from(off)
                    .ok()
                    .and_then(|s| d.get(s..s.checked_add(buf.len())?))
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
            };
            if let Ok(t) = read_text(*area, raw, read)
                && let Ok(top) = text::parse(&t)
            {
                let _ = vg::from_metadata(&top);
            }
        }
    }

    fn metadata_text(b: &[u8]) {
        if let Ok(top) = text::parse(&String::from_utf8_lossy(b))
            && let Ok(v) = vg::from_metadata(&top)
        {
            let devs = v
                .pvs
                .iter()
                .map(|p| (p.key.clone(), "254:0".to_owned()))
                .collect();
            for lv in &v.lvs {
                let _ = vg::table(&v, lv, &devs);
            }
        }
    }

    /// The seed PV up to the end of its newest metadata text.
    fn seed_pv() -> (Vec<u8>, String) {
        let head = pv_head();
        let lbl = parse_label(&head[..2048]).unwrap_or_else(|e| panic!("seed label: {e}"));
        let area = lbl.metadata_areas[0];
        let at = area.offset as usize;
        let raw = parse_mda_header(area, &head[at..at + 512])
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("seed metadata header"));
        let end = (area.offset + raw.offset + raw.size) as usize;
        let text = read_text(area, raw, |off, buf| {
            buf.copy_from_slice(&head[off as usize..off as usize + buf.len()]);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("seed text: {e}"));
        (head[..end.min(head.len())].to_vec(), text)
    }

    #[test]
    fn lvm_physical_volumes() {
        let (pv, _) = seed_pv();
        let mut b = vec![0u8];
        b.extend(pv);
        Target::new("lvm-pv")
            .seed(b)
            .max_len(1 << 20)
            .dict(&[b"LABELONE", b"LVM2 001", MDA_MAGIC])
            .run(pvs);
    }

    #[test]
    fn lvm_metadata_text() {
        let (_, text) = seed_pv();
        Target::new("lvm-text")
            .seed(text)
            .dict(&[
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"",
                b"=",
                b"#",
                b"\n",
                b"\\\"",
                b"segment_count = 9999999999\n",
                b"stripes = [\n",
            ])
            .run(metadata_text);
    }

    /// Found by `lvm-text`: an `extent_size` near 2^63 made the segment's sector offsets overflow
    /// (a panic in `vg::table` on metadata a planted PV carries).
    #[test]
    fn regression_extent_size_overflow_is_an_error() {
        let input = include_bytes!("../fuzz-seeds/regressions/lvm-text-extent-size-overflow.bin");
        assert_eq!(crate::fuzzing::replay(metadata_text, input), Ok(()));
    }
}
