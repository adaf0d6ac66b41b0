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
