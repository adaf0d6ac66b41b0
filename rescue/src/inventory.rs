//! The machine's inventory for the case record: identity (DMI, BIOS), and every disk with its identity,
//! geometry, transport, partition table (GPT through the `gpt` crate, MBR parsed here) and the filesystem
//! or volume signature found at the start of each partition, and the HPA/DCO the drive reports
//! ([`crate::ata`], read-only commands only).
//!
//! Reads only, through `O_RDONLY` file handles; never prints.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::devices::{self, BlockDevice};
use crate::host::{self, HostInfo};

/// One partition as the on-disk table describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableEntry {
    pub number: u32,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// GPT type GUID, or the MBR type byte as `0xNN`.
    pub type_id: String,
    pub name: Option<String>,
    /// Filesystem or volume signature at the partition's start (`ext4`, `xfs`, `ntfs`, `luks`, …).
    pub signature: Option<String>,
}

/// A disk and what is on it.
#[derive(Debug, Clone, Serialize)]
pub struct DiskInventory {
    #[serde(flatten)]
    pub device: BlockDevice,
    /// `gpt`, `mbr`, or null when the disk has no partition table.
    pub table: Option<String>,
    pub entries: Vec<TableEntry>,
    /// Signature found at the start of the whole disk when it has no table.
    pub signature: Option<String>,
    pub error: Option<String>,
    /// Host Protected Area / Device Configuration Overlay as the drive reports them (ATA only).
    pub hidden_areas: crate::ata::HiddenAreas,
}

/// The machine and its disks.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub taken_utc: String,
    pub host: HostInfo,
    pub disks: Vec<DiskInventory>,
}

/// The filesystem or volume type whose magic appears in the first 72 KiB of a volume.
pub fn signature(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"LUKS\xba\xbe") {
        Some("luks")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(3, b"NTFS    ") {
        Some("ntfs")
    } else if at(3, b"EXFAT   ") {
        Some("exfat")
    } else if at(0x52, b"FAT32   ") || at(0x36, b"FAT16   ") || at(0x36, b"FAT12   ") {
        Some("vfat")
    } else if at(0x10040, b"_BHRfS_M") {
        Some("btrfs")
    } else if at(1080, &[0x53, 0xef]) {
        // ext2/3/4 share the magic; the incompat flags tell ext4 (extents, 0x40) apart.
        let incompat = head
            .get(1120..1124)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        Some(if incompat & 0x40 != 0 {
            "ext4"
        } else {
            "ext2/3"
        })
    } else if at(0x8001, b"CD001") {
        Some("iso9660")
    } else if at(0, b"hsqs") {
        Some("squashfs")
    } else if at(512 + 24, b"LVM2 001") || at(24, b"LVM2 001") {
        Some("lvm2")
    } else if at(4096, &[0xfc, 0x4e, 0x2b, 0xa9]) {
        Some("linux_raid_member")
    } else if at(4086, b"SWAPSPACE2") {
        Some("swap")
    } else if at(0, b"\xeb\x3c\x90") || at(0, b"\xeb\x58\x90") {
        Some("boot sector")
    } else {
        None
    }
}

/// MBR primary entries (type, first sector, sectors) from sector 0, or `None` without the 0x55AA mark.
/// A protective MBR (type 0xEE) is reported too; the caller prefers GPT then.
pub fn parse_mbr(sector0: &[u8]) -> Option<Vec<(u32, u8, u64, u64)>> {
    if sector0.get(510..512) != Some(&[0x55, 0xaa]) {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..4 {
        let e = sector0.get(446 + i * 16..446 + (i + 1) * 16)?;
        let kind = e[4];
        let first = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let count = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        if kind != 0 && count != 0 {
            out.push((i as u32 + 1, kind, first, count));
        }
    }
    Some(out)
}

fn read_at(file: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    buf.truncate(done);
    buf
}

const HEAD: usize = 72 * 1024;

/// The partition table of a disk or disk image open for reading: `gpt` (through the `gpt` crate) or
/// `mbr`, and its entries with the signature at each partition's start; `(None, [])` without one.
pub fn read_table(file: &File, sector: u64) -> (Option<String>, Vec<TableEntry>) {
    let mut table = None;
    let mut out = Vec::new();
    let lb = if sector == 4096 {
        gpt::disk::LogicalBlockSize::Lb4096
    } else {
        gpt::disk::LogicalBlockSize::Lb512
    };
    let gpt = file.try_clone().ok().and_then(|f| {
        gpt::GptConfig::new()
            .writable(false)
            .logical_block_size(lb)
            .open_from_device(f)
            .ok()
    });
    if let Some(disk) = gpt {
        table = Some("gpt".to_owned());
        for (n, p) in disk.partitions() {
            let start = p.first_lba * sector;
            out.push(TableEntry {
                number: *n,
                start_bytes: start,
                size_bytes: (p.last_lba + 1).saturating_sub(p.first_lba) * sector,
                type_id: p.part_type_guid.guid.to_string(),
                name: (!p.name.is_empty()).then(|| p.name.clone()),
                signature: signature(&read_at(file, start, HEAD)).map(str::to_owned),
            });
        }
    } else if let Some(entries) = parse_mbr(&read_at(file, 0, 512)).filter(|e| !e.is_empty()) {
        table = Some("mbr".to_owned());
        for (number, kind, first, count) in entries {
            let start = first * sector;
            out.push(TableEntry {
                number,
                start_bytes: start,
                size_bytes: count * sector,
                type_id: format!("0x{kind:02x}"),
                name: None,
                signature: signature(&read_at(file, start, HEAD)).map(str::to_owned),
            });
        }
    }
    (table, out)
}

fn inspect(device: BlockDevice) -> DiskInventory {
    let mut inv = DiskInventory {
        table: None,
        entries: Vec::new(),
        signature: None,
        error: None,
        hidden_areas: crate::ata::hidden_areas(Path::new(&device.path)),
        device,
    };
    let file = match File::open(&inv.device.path) {
        Ok(f) => f,
        Err(e) => {
            inv.error = Some(format!("opening {}: {e}", inv.device.path));
            return inv;
        }
    };
    let sector = u64::from(inv.device.logical_sector_size.max(512));
    let (table, entries) = read_table(&file, sector);
    inv.table = table;
    inv.entries = entries;
    if inv.table.is_none() {
        inv.signature = signature(&read_at(&file, 0, HEAD)).map(str::to_owned);
    }
    inv
}

/// Takes the inventory of every disk.
pub fn take() -> Result<Inventory, devices::DevicesError> {
    Ok(Inventory {
        taken_utc: crate::acquire::manifest::now_rfc3339(),
        host: host::probe(),
        disks: devices::list()?.into_iter().map(inspect).collect(),
    })
}

/// Inventory of one disk given by path.
pub fn take_one(dev: &Path) -> Result<DiskInventory, devices::DevicesError> {
    Ok(inspect(devices::describe(dev)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        let mut ext4 = vec![0u8; HEAD];
        ext4[1080] = 0x53;
        ext4[1081] = 0xef;
        ext4[1120] = 0x40;
        assert_eq!(signature(&ext4), Some("ext4"));
        ext4[1120] = 0;
        assert_eq!(signature(&ext4), Some("ext2/3"));
        let mut fat = vec![0u8; 512];
        fat[0x52..0x5a].copy_from_slice(b"FAT32   ");
        assert_eq!(signature(&fat), Some("vfat"));
        let mut ntfs = vec![0u8; 512];
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(signature(&ntfs), Some("ntfs"));
        assert_eq!(signature(b"LUKS\xba\xbe\x00\x02"), Some("luks"));
        assert_eq!(signature(&[0u8; 4096]), None);
        assert_eq!(signature(&[]), None);
    }

    #[test]
    fn mbr_entries_are_read() {
        let mut s = vec![0u8; 512];
        s[510] = 0x55;
        s[511] = 0xaa;
        s[446 + 4] = 0x83;
        s[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        s[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        s[462 + 4] = 0x07;
        s[462 + 8..462 + 12].copy_from_slice(&8192u32.to_le_bytes());
        s[462 + 12..462 + 16].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            parse_mbr(&s),
            Some(vec![(1, 0x83, 2048, 4096), (2, 0x07, 8192, 100)])
        );
        s[511] = 0;
        assert_eq!(parse_mbr(&s), None);
    }

    fn fake_device(path: &Path) -> BlockDevice {
        BlockDevice {
            name: "test".into(),
            path: path.display().to_string(),
            size_bytes: 8 << 20,
            logical_sector_size: 512,
            physical_sector_size: 512,
            model: None,
            serial: None,
            wwn: None,
            transport: "file".into(),
            removable: false,
            read_only: true,
            partitions: Vec::new(),
        }
    }

    #[test]
    fn gpt_and_mbr_disks_are_inventoried_with_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        File::create(&path).unwrap().set_len(8 << 20).unwrap();
        let out = std::process::Command::new("sgdisk")
            .args(["-o", "-n", "1:2048:+2M", "-c", "1:evidence"])
            .arg(&path)
            .output();
        let Ok(out) = out else {
            assert!(
                std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                "sgdisk missing"
            );
            return;
        };
        assert!(out.status.success());
        // An ext4 superblock magic (with the extents flag) at the partition's start.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x53, 0xef], (1 << 20) + 1080).unwrap();
        f.write_all_at(&0x40u32.to_le_bytes(), (1 << 20) + 1120)
            .unwrap();
        let inv = inspect(fake_device(&path));
        assert_eq!(inv.table.as_deref(), Some("gpt"), "{inv:?}");
        assert_eq!(inv.entries.len(), 1);
        let e = &inv.entries[0];
        assert_eq!(
            (e.number, e.start_bytes, e.size_bytes),
            (1, 1 << 20, 2 << 20)
        );
        assert_eq!(e.name.as_deref(), Some("evidence"));
        assert_eq!(
            e.type_id.to_uppercase(),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
        assert_eq!(e.signature.as_deref(), Some("ext4"));

        // The same bytes with a classic MBR instead: wipe GPT headers, write one type-0x83 entry.
        f.write_all_at(&[0u8; 512], 512).unwrap();
        f.write_all_at(&[0u8; 512], (8 << 20) - 512).unwrap();
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        f.write_all_at(&mbr, 0).unwrap();
        let inv = inspect(fake_device(&path));
        assert_eq!(inv.table.as_deref(), Some("mbr"), "{inv:?}");
        assert_eq!(inv.entries[0].type_id, "0x83");
        assert_eq!(inv.entries[0].signature.as_deref(), Some("ext4"));
    }
}
