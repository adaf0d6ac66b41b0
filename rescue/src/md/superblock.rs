//! md superblocks as the kernel's `md_p.h` lays them out: 0.90 (host-endian, 4 KiB in the last 64 KiB
//! aligned block of the device), 1.0 (little-endian, at the end), 1.1 (at the start), 1.2 (4 KiB from
//! the start). Pure parsing of bytes read through an `O_RDONLY` handle.

use std::fmt;

/// `MD_SB_MAGIC`, the same in both formats.
pub const MD_MAGIC: u32 = 0xa92b_4efc;
/// A role in `dev_roles[]`: a spare.
pub const ROLE_SPARE: u16 = 0xffff;
/// A role in `dev_roles[]`: a faulty device.
pub const ROLE_FAULTY: u16 = 0xfffe;
/// A role in `dev_roles[]`: a write journal.
pub const ROLE_JOURNAL: u16 = 0xfffd;

/// 1.x `feature_map` bits.
const FEATURE_RECOVERY_OFFSET: u32 = 2;
const FEATURE_RESHAPE_ACTIVE: u32 = 4;

/// Why a superblock could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuperblockError {
    #[error("no md superblock")]
    NotFound,
    #[error(
        "md superblock {version}: checksum {stored:#010x} does not match the computed {computed:#010x}"
    )]
    Checksum {
        version: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("md superblock {version}: {what}")]
    Malformed { version: &'static str, what: String },
}

/// Superblock layout versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Version {
    #[serde(rename = "0.90")]
    V090,
    #[serde(rename = "1.0")]
    V10,
    #[serde(rename = "1.1")]
    V11,
    #[serde(rename = "1.2")]
    V12,
}

impl Version {
    /// The `major.minor` string mdadm prints and the kernel's `metadata_version` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V090 => "0.90",
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    /// (major, minor) as `SET_ARRAY_INFO` takes them.
    pub fn numbers(self) -> (i32, i32) {
        match self {
            Version::V090 => (0, 90),
            Version::V10 => (1, 0),
            Version::V11 => (1, 1),
            Version::V12 => (1, 2),
        }
    }

    /// Every version, in the order a device is probed.
    pub const ALL: [Version; 4] = [Version::V12, Version::V11, Version::V10, Version::V090];

    /// Byte offset of this version's superblock on a device of `size` bytes, and how many bytes to read.
    pub fn location(self, size: u64) -> Option<(u64, usize)> {
        let sectors = size / 512;
        match self {
            // MD_NEW_SIZE_SECTORS: the last 64 KiB-aligned 64 KiB block.
            Version::V090 => {
                let s = (sectors & !127).checked_sub(128)?;
                Some((s * 512, 4096))
            }
            // (size - 8 KiB) rounded down to 4 KiB, as mdadm and the kernel place it.
            Version::V10 => {
                let s = sectors.checked_sub(16)? & !7;
                Some((s * 512, 4096))
            }
            Version::V11 => Some((0, 4096)),
            Version::V12 => (size >= 8192).then_some((4096, 4096)),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one member's superblock says about its array and itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Superblock {
    pub version: Version,
    /// The array's UUID as mdadm prints it (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    pub array_uuid: String,
    /// 1.x: `homehost:name`; 0.90: the preferred minor (`md_minor`), which mdadm names it by.
    pub name: String,
    /// RAID level: -1 linear, 0, 1, 4, 5, 6, 10 (negative for linear/multipath/faulty).
    pub level: i32,
    pub layout: u32,
    /// Chunk size in bytes (0 where the level has none).
    pub chunk_bytes: u64,
    pub raid_disks: u32,
    pub events: u64,
    /// This member's role (slot) in the array; `None` for a spare, faulty or journal device.
    pub role: Option<u32>,
    /// 1.x: this device's UUID (as mdadm prints it); 0.90: empty.
    pub device_uuid: String,
    /// The roles the superblock records as active members: (role, what the superblock calls the device:
    /// 0.90 "major:minor when last assembled", 1.x "device number N").
    pub active_roles: Vec<(u32, String)>,
    /// False while a reshape is in progress or the member is only partially recovered.
    pub usable: bool,
    /// Why not usable, in words.
    pub unusable_reason: Option<String>,
    /// The array was shut down cleanly (0.90 state bit / 1.x `resync_offset` at the end).
    pub clean: bool,
    /// Where the array's data starts on this member, in bytes (1.x `data_offset`; 0.90: 0, its
    /// superblock is at the end). What lies there is what the array's first chunk shows.
    pub data_offset_bytes: u64,
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn uuid_words(words: [u32; 4]) -> String {
    words
        .iter()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// 0.90 stores each UUID word host-endian; mdadm prints them as 4 words.
fn uuid_bytes(b: &[u8]) -> String {
    let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    uuid_words([w(0), w(4), w(8), w(12)])
}

/// Parses the 4 KiB read at `version.location()`.
pub fn parse(version: Version, b: &[u8]) -> Result<Superblock, SuperblockError> {
    if b.len() < 4096 {
        return Err(SuperblockError::NotFound);
    }
    match version {
        Version::V090 => parse_090(b),
        v => parse_1x(v, b),
    }
}

fn parse_090(b: &[u8]) -> Result<Superblock, SuperblockError> {
    let w = |i: usize| le32(b, i * 4);
    if w(0) != MD_MAGIC || w(1) != 0 || w(2) != 90 {
        return Err(SuperblockError::NotFound);
    }
    let malformed = |what: String| SuperblockError::Malformed {
        version: "0.90",
        what,
    };
    // sb_csum is word 38: the folded 64-bit sum of all 1024 words with it zeroed.
    let stored = w(38);
    let mut sum: u64 = (0..1024).map(|i| u64::from(w(i))).sum();
    sum -= u64::from(stored);
    let computed = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    if computed != stored {
        return Err(SuperblockError::Checksum {
            version: "0.90",
            stored,
            computed,
        });
    }
    let level = w(7) as i32;
    let raid_disks = w(10);
    if raid_disks == 0 || raid_disks > 27 {
        return Err(malformed(format!("{raid_disks} raid disks")));
    }
    // Host-endian (x86: little) words; events_lo before events_hi on a little-endian host.
    let events = u64::from(w(39)) | (u64::from(w(40)) << 32);
    let state = w(33);
    let descriptor = |i: usize| {
        let d = 128 + i * 32;
        (w(d), w(d + 1), w(d + 2), w(d + 3), w(d + 4))
    };
    let mut active_roles = Vec::new();
    for i in 0..27 {
        let (_number, major, minor, raid_disk, st) = descriptor(i);
        // MD_DISK_ACTIVE (1) and MD_DISK_SYNC (2), not FAULTY (0) or REMOVED (3).
        if st & 0b0110 == 0b0110 && st & 0b1001 == 0 && raid_disk < raid_disks {
            active_roles.push((raid_disk, format!("{major}:{minor}")));
        }
    }
    active_roles.sort();
    let this = 992;
    let (this_state, this_role) = (w(this + 4), w(this + 3));
    let role =
        (this_state & 0b0110 == 0b0110 && this_state & 0b1001 == 0 && this_role < raid_disks)
            .then_some(this_role);
    // uuid0 is word 5, uuid1..3 words 13..15; mdadm prints each host-endian word as hex.
    let uuid = uuid_words([w(5), w(13), w(14), w(15)]);
    Ok(Superblock {
        version: Version::V090,
        array_uuid: uuid,
        // No name field: mdadm names the array by its preferred minor.
        name: w(11).to_string(),
        level,
        layout: w(64),
        chunk_bytes: u64::from(w(65)),
        raid_disks,
        events,
        role,
        device_uuid: String::new(),
        active_roles,
        usable: true,
        unusable_reason: None,
        clean: state & 1 == 1,
        data_offset_bytes: 0,
    })
}

fn parse_1x(version: Version, b: &[u8]) -> Result<Superblock, SuperblockError> {
    let vs = version.as_str();
    if le32(b, 0) != MD_MAGIC || le32(b, 4) != 1 {
        return Err(SuperblockError::NotFound);
    }
    let malformed = |what: String| SuperblockError::Malformed { version: vs, what };
    let max_dev = le32(b, 220) as usize;
    if max_dev > (4096 - 256) / 2 {
        return Err(malformed(format!("max_dev {max_dev} does not fit")));
    }
    // calc_sb_1_csum: le32 words over 256 + 2*max_dev bytes with sb_csum zeroed, an odd u16 added, folded.
    let len = 256 + 2 * max_dev;
    let stored = le32(b, 216);
    let mut sum: u64 = 0;
    let mut i = 0;
    while i + 4 <= len {
        sum += u64::from(le32(b, i));
        i += 4;
    }
    if len - i == 2 {
        sum += u64::from(le16(b, i));
    }
    sum -= u64::from(stored);
    let computed = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    if computed != stored {
        return Err(SuperblockError::Checksum {
            version: vs,
            stored,
            computed,
        });
    }
    // super_offset must say where we read it: tells 1.1 at 0 apart from 1.2's copy seen elsewhere.
    let super_offset = le64(b, 144);
    let expected = match version {
        Version::V11 => Some(0),
        Version::V12 => Some(8),
        _ => None,
    };
    if let Some(e) = expected
        && super_offset != e
    {
        return Err(SuperblockError::NotFound);
    }
    let feature_map = le32(b, 8);
    let level = le32(b, 72) as i32;
    let raid_disks = le32(b, 92);
    if raid_disks == 0 || raid_disks > 1920 {
        return Err(malformed(format!("{raid_disks} raid disks")));
    }
    let dev_number = le32(b, 160) as usize;
    let roles: Vec<u16> = (0..max_dev).map(|i| le16(b, 256 + 2 * i)).collect();
    let mut active_roles: Vec<(u32, String)> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| u32::from(**r) < raid_disks)
        .map(|(n, r)| (u32::from(*r), format!("device number {n}")))
        .collect();
    active_roles.sort();
    let role = roles
        .get(dev_number)
        .copied()
        .filter(|r| u32::from(*r) < raid_disks)
        .map(u32::from);
    let name_raw = &b[32..64];
    let name_end = name_raw.iter().position(|&c| c == 0).unwrap_or(32);
    let unusable_reason = if feature_map & FEATURE_RESHAPE_ACTIVE != 0 {
        Some("a reshape is in progress".to_owned())
    } else if feature_map & FEATURE_RECOVERY_OFFSET != 0 {
        Some(format!(
            "this member was only recovered up to sector {}",
            le64(b, 152)
        ))
    } else {
        None
    };
    Ok(Superblock {
        version,
        array_uuid: uuid_bytes(&b[16..32]),
        name: String::from_utf8_lossy(&name_raw[..name_end]).into_owned(),
        level,
        layout: le32(b, 76),
        chunk_bytes: u64::from(le32(b, 88)) * 512,
        raid_disks,
        events: le64(b, 200),
        role,
        device_uuid: uuid_bytes(&b[168..184]),
        active_roles,
        usable: unusable_reason.is_none(),
        unusable_reason,
        clean: le64(b, 208) == u64::MAX,
        data_offset_bytes: le64(b, 128).saturating_mul(512),
    })
}

/// Reads every superblock version a device of `size` bytes could hold, through `read_at`; returns the
/// first that parses (a 1.x at the start wins over a stale 0.90/1.0 at the end, as mdadm's probe order).
pub fn probe(
    size: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
) -> Result<Superblock, SuperblockError> {
    let mut first_err = SuperblockError::NotFound;
    for v in Version::ALL {
        let Some((off, len)) = v.location(size) else {
            continue;
        };
        let mut buf = vec![0u8; len];
        let Ok(n) = read_at(off, &mut buf) else {
            continue;
        };
        match parse(v, &buf[..n]) {
            Ok(sb) => return Ok(sb),
            Err(SuperblockError::NotFound) => {}
            Err(e) => {
                if first_err == SuperblockError::NotFound {
                    first_err = e;
                }
            }
        }
    }
    Err(first_err)
}

/// Fuzz targets (see `crate::fuzzing`): md superblocks of every version, as `md assemble` reads them
/// from a disk that may be damaged or planted. The target sets the checksum right after mutating (the
/// mutations should reach the fields behind it).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn fix_checksum(b: &mut [u8]) {
        if le32(b, 0) != MD_MAGIC {
            return;
        }
        let fold = |sum: u64| ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
        if le32(b, 4) == 0 && le32(b, 8) == 90 {
            b[152..156].fill(0);
            let sum: u64 = (0..1024).map(|i| u64::from(le32(b, i * 4))).sum();
            let c = fold(sum);
            b[152..156].copy_from_slice(&c.to_le_bytes());
        } else if le32(b, 4) == 1 {
            let max_dev = (le32(b, 220) as usize).min((4096 - 256) / 2);
            let len = 256 + 2 * max_dev;
            b[216..220].fill(0);
            let mut sum = 0u64;
            let mut i = 0;
            while i + 4 <= len {
                sum += u64::from(le32(b, i));
                i += 4;
            }
            if len - i == 2 {
                sum += u64::from(le16(b, i));
            }
            let c = fold(sum);
            b[216..220].copy_from_slice(&c.to_le_bytes());
        }
    }

    fn superblocks(b: &[u8]) {
        let (flags, rest) = b.split_first().unwrap_or((&0, b));
        let mut sb = rest.to_vec();
        if flags & 0x80 == 0 && sb.len() >= 4096 {
            fix_checksum(&mut sb);
        }
        let v = Version::ALL[usize::from(flags & 3)];
        if let Ok(s) = parse(v, &sb) {
            assert!(s.active_roles.len() <= 4096);
        }
    }

    #[test]
    fn md_superblocks() {
        let mut t = Target::new("md-superblock");
        for (v, sb) in [
            // The index into Version::ALL: 1.2, 1.1, 1.0, 0.90.
            (3u8, &include_bytes!("testdata/md-090-a.sb")[..]),
            (2, include_bytes!("testdata/md-10-a.sb")),
            (1, include_bytes!("testdata/md-11-b.sb")),
            (0, include_bytes!("testdata/md-r1-a.sb")),
            (0, include_bytes!("testdata/md-r5-c.sb")),
        ] {
            let mut b = vec![v];
            b.extend_from_slice(sb);
            t = t.seed(b);
        }
        t.max_len(4097).run(superblocks);
    }
}
