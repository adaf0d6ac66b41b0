//! Host Protected Area and Device Configuration Overlay, where an ATA drive reports them: the kernel's
//! copy of IDENTIFY DEVICE (`HDIO_GET_IDENTITY`), then READ NATIVE MAX ADDRESS (EXT) and DEVICE
//! CONFIGURATION IDENTIFY through SG_IO ATA PASS-THROUGH(16), on an `O_RDONLY` handle.
//!
//! Only those read-only commands are ever sent (no SET MAX, no DCO SET/RESTORE/FREEZE); a drive that
//! is not ATA behind libata (virtio, NVMe, most USB bridges) or refuses them is "not reported".
//! Never prints.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

/// What the drive said about hidden areas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HiddenAreas {
    /// Sectors the drive reports to the OS (IDENTIFY: LBA48 or LBA28 user-addressable count).
    pub user_sectors: Option<u64>,
    /// IDENTIFY says the HPA feature set is supported / enabled.
    pub hpa_supported: Option<bool>,
    pub hpa_enabled: Option<bool>,
    /// READ NATIVE MAX ADDRESS: sectors the drive has without the HPA.
    pub native_sectors: Option<u64>,
    /// `native_sectors - user_sectors` when both are known.
    pub hpa_sectors: Option<u64>,
    /// IDENTIFY says the DCO feature set is supported.
    pub dco_supported: Option<bool>,
    /// DEVICE CONFIGURATION IDENTIFY: the largest capacity the DCO allows.
    pub dco_sectors: Option<u64>,
    /// One line for people: what was found, or why nothing is reported.
    pub summary: String,
}

/// Facts from a 512-byte IDENTIFY DEVICE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identify {
    pub user_sectors: u64,
    pub lba48: bool,
    pub hpa_supported: bool,
    pub hpa_enabled: bool,
    pub dco_supported: bool,
}

fn word(id: &[u8], n: usize) -> u64 {
    id.get(2 * n..2 * n + 2)
        .map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])))
}

/// Parses IDENTIFY DEVICE data (ATA8-ACS words 60-61, 82-86, 100-103).
pub fn parse_identify(id: &[u8]) -> Option<Identify> {
    if id.len() < 512 {
        return None;
    }
    let lba48 = word(id, 83) & (1 << 10) != 0;
    let lba28 = word(id, 60) | word(id, 61) << 16;
    let lba48_count =
        word(id, 100) | word(id, 101) << 16 | word(id, 102) << 32 | word(id, 103) << 48;
    Some(Identify {
        user_sectors: if lba48 && lba48_count != 0 {
            lba48_count
        } else {
            lba28
        },
        lba48,
        hpa_supported: word(id, 82) & (1 << 10) != 0,
        hpa_enabled: word(id, 85) & (1 << 10) != 0,
        dco_supported: word(id, 83) & (1 << 11) != 0,
    })
}

/// The LBA in an ATA Status Return sense descriptor (SAT, descriptor code 09h), from descriptor-format
/// sense data.
pub fn lba_from_sense(sense: &[u8]) -> Option<u64> {
    if sense.first().map(|b| b & 0x7f) != Some(0x72) {
        return None;
    }
    let total = 8 + usize::from(*sense.get(7)?);
    let mut at = 8;
    while at + 2 <= total.min(sense.len()) {
        let (code, len) = (sense[at], usize::from(sense[at + 1]));
        if code == 0x09 && len >= 12 {
            let d = sense.get(at..at + 14)?;
            if d[13] & 0x01 != 0 {
                return None; // ERR in the status register: the command was refused
            }
            let b = |i: usize| u64::from(d[i]);
            return Some(b(7) | b(9) << 8 | b(11) << 16 | b(6) << 24 | b(8) << 32 | b(10) << 40);
        }
        at += 2 + len;
    }
    None
}

/// Largest LBA the DCO allows, from DEVICE CONFIGURATION IDENTIFY data (words 3-6).
pub fn parse_dco_identify(data: &[u8]) -> Option<u64> {
    if data.len() < 512 {
        return None;
    }
    let max = word(data, 3) | word(data, 4) << 16 | word(data, 5) << 32 | word(data, 6) << 48;
    (max != 0).then_some(max)
}

const HDIO_GET_IDENTITY: libc::c_ulong = 0x030d;
const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_FROM_DEV: i32 = -3;

#[repr(C)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

/// Sends one ATA PASS-THROUGH(16) command; returns the sense data (with CK_COND set, the result
/// registers) and fills `data` for data-in commands.
fn ata16(file: &File, cdb: &[u8; 16], data: Option<&mut [u8; 512]>) -> Option<[u8; 32]> {
    let mut sense = [0u8; 32];
    let (direction, len, ptr) = match data {
        Some(buf) => (
            SG_DXFER_FROM_DEV,
            512u32,
            buf.as_mut_ptr().cast::<libc::c_void>(),
        ),
        None => (SG_DXFER_NONE, 0, std::ptr::null_mut()),
    };
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: direction,
        cmd_len: 16,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: ptr,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: 10_000,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: hdr points at live buffers (cdb, sense, data) of the lengths it states for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO as _, &mut hdr) };
    (rc == 0 && hdr.host_status == 0).then_some(sense)
}

/// Reads what the drive reports about its HPA and DCO. Never fails: absence is reported in the summary.
pub fn hidden_areas(dev: &Path) -> HiddenAreas {
    let mut out = HiddenAreas::default();
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dev)
    else {
        out.summary = "not reported (device not readable)".into();
        return out;
    };
    let mut id = [0u8; 512];
    // SAFETY: HDIO_GET_IDENTITY copies at most 512 bytes into the buffer we pass.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), HDIO_GET_IDENTITY as _, id.as_mut_ptr()) };
    let Some(ident) = (rc == 0).then(|| parse_identify(&id)).flatten() else {
        out.summary = "not reported (not an ATA drive behind libata)".into();
        return out;
    };
    out.user_sectors = Some(ident.user_sectors);
    out.hpa_supported = Some(ident.hpa_supported);
    out.hpa_enabled = Some(ident.hpa_enabled);
    out.dco_supported = Some(ident.dco_supported);
    if ident.hpa_supported {
        // READ NATIVE MAX ADDRESS EXT (27h) or (F8h): non-data, CK_COND to get the registers back.
        let mut cdb = [0u8; 16];
        cdb[0] = 0x85;
        cdb[1] = (3 << 1) | u8::from(ident.lba48);
        cdb[2] = 0x20;
        cdb[13] = 0x40;
        cdb[14] = if ident.lba48 { 0x27 } else { 0xf8 };
        if let Some(max) = ata16(&file, &cdb, None).and_then(|s| lba_from_sense(&s)) {
            let native = max + 1;
            out.native_sectors = Some(native);
            out.hpa_sectors = Some(native.saturating_sub(ident.user_sectors));
        }
    }
    if ident.dco_supported {
        // DEVICE CONFIGURATION IDENTIFY: B1h feature C2h, PIO data-in, one 512-byte block.
        let mut cdb = [0u8; 16];
        cdb[0] = 0x85;
        cdb[1] = 4 << 1;
        cdb[2] = 0x0e;
        cdb[4] = 0xc2;
        cdb[6] = 1;
        cdb[13] = 0x40;
        cdb[14] = 0xb1;
        let mut data = [0u8; 512];
        if ata16(&file, &cdb, Some(&mut data)).is_some() {
            out.dco_sectors = parse_dco_identify(&data).map(|m| m + 1);
        }
    }
    out.summary = summarize(&out);
    out
}

fn summarize(h: &HiddenAreas) -> String {
    let hpa = match (h.hpa_supported, h.hpa_sectors) {
        (Some(false), _) => "HPA feature not supported".to_owned(),
        (_, Some(0)) => "no HPA".to_owned(),
        (_, Some(n)) => format!("HPA HIDES {n} sectors"),
        (_, None) => "HPA: native max not reported".to_owned(),
    };
    let dco = match (
        h.dco_supported,
        h.dco_sectors,
        h.native_sectors.or(h.user_sectors),
    ) {
        (Some(false), _, _) => "DCO not supported".to_owned(),
        (_, Some(d), Some(n)) if d > n => format!("DCO HIDES {} sectors", d - n),
        (_, Some(_), _) => "no DCO restriction".to_owned(),
        _ => "DCO: not reported".to_owned(),
    };
    format!("{hpa}; {dco}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(words: &[(usize, u16)]) -> Vec<u8> {
        let mut id = vec![0u8; 512];
        for (n, v) in words {
            id[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
        }
        id
    }

    #[test]
    fn identify_gives_capacity_and_feature_bits() {
        // LBA48, 0x0123_4567_89ab sectors, HPA supported+enabled, DCO supported.
        let id = identify(&[
            (60, 0xffff),
            (61, 0x0fff),
            (82, 1 << 10),
            (83, (1 << 10) | (1 << 11)),
            (85, 1 << 10),
            (100, 0x89ab),
            (101, 0x4567),
            (102, 0x0123),
        ]);
        let i = parse_identify(&id).unwrap();
        assert_eq!(i.user_sectors, 0x0123_4567_89ab);
        assert!(i.lba48 && i.hpa_supported && i.hpa_enabled && i.dco_supported);
        let small = identify(&[(60, 0x0000), (61, 0x0010)]);
        let i = parse_identify(&small).unwrap();
        assert_eq!(i.user_sectors, 0x10_0000);
        assert!(!i.lba48 && !i.hpa_supported && !i.dco_supported);
        assert_eq!(parse_identify(&[0u8; 100]), None);
    }

    #[test]
    fn native_max_comes_from_the_status_return_descriptor() {
        let mut sense = [0u8; 32];
        sense[0] = 0x72;
        sense[7] = 14;
        let d = &mut sense[8..22];
        d[0] = 0x09;
        d[1] = 0x0c;
        d[2] = 1;
        // LBA 0x0000_1234_5678_9abc: low(7:0)=bc mid(7:0)=9a high(7:0)=78 low(15:8)=56 mid(15:8)=34 high(15:8)=12
        d[7] = 0xbc;
        d[9] = 0x9a;
        d[11] = 0x78;
        d[6] = 0x56;
        d[8] = 0x34;
        d[10] = 0x12;
        d[13] = 0x50;
        assert_eq!(lba_from_sense(&sense), Some(0x1234_5678_9abc));
        sense[8 + 13] = 0x51;
        assert_eq!(lba_from_sense(&sense), None, "ERR set: refused");
        sense[0] = 0x70;
        assert_eq!(
            lba_from_sense(&sense),
            None,
            "fixed-format sense has no descriptor"
        );
    }

    #[test]
    fn summaries_say_what_is_hidden() {
        let h = HiddenAreas {
            user_sectors: Some(1000),
            hpa_supported: Some(true),
            native_sectors: Some(1200),
            hpa_sectors: Some(200),
            dco_supported: Some(true),
            dco_sectors: Some(1500),
            ..HiddenAreas::default()
        };
        assert_eq!(
            summarize(&h),
            "HPA HIDES 200 sectors; DCO HIDES 300 sectors"
        );
        let none = HiddenAreas {
            hpa_supported: Some(true),
            hpa_sectors: Some(0),
            dco_supported: Some(false),
            ..HiddenAreas::default()
        };
        assert_eq!(summarize(&none), "no HPA; DCO not supported");
    }
}
