//! The machine's inventory for the case record: identity (DMI, BIOS), and every disk with its identity,
//! geometry, transport, partition table (GPT through the `gpt` crate, MBR with its chain of extended boot
//! records parsed here) and the filesystem or volume signature of each partition (at its start, and where
//! md 0.90/1.0 and ZFS keep theirs, at its end), and the HPA/DCO the drive reports ([`crate::ata`],
//! read-only commands only).
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
    /// What the walk of the tables found odd (an extended boot record chain that loops, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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

/// The filesystem or volume type whose magic appears in the first 72 KiB of a volume (md superblocks,
/// bcache, ZFS and VMFS need more than the head: see [`probe`]).
pub fn signature(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"LUKS\xba\xbe") {
        Some("luks")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(3, b"-FVE-FS-") || (at(3, b"MSWIN4.1") && at(424, &BITLOCKER_GUID)) {
        Some("BitLocker")
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
    } else if at(4086, b"SWAPSPACE2") {
        Some("swap")
    } else if at(0, b"\xeb\x3c\x90") || at(0, b"\xeb\x58\x90") {
        Some("boot sector")
    } else {
        None
    }
}

/// Reads `len` bytes at a byte offset of the volume being probed (fewer at its end, none past it).
pub trait ReadAt {
    fn read_at(&self, offset: u64, len: usize) -> Vec<u8>;
}

impl<F: Fn(u64, usize) -> Vec<u8>> ReadAt for F {
    fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        self(offset, len)
    }
}

/// md superblock magic (`MD_SB_MAGIC`), little-endian on disk for 1.x, host order (little on x86) for 0.90.
const MD_MAGIC: u32 = 0xa92b_4efc;
/// ZFS uberblock magic (`UBERBLOCK_MAGIC`), in the writer's byte order.
const ZFS_UB_MAGIC: u64 = 0x00ba_b10c;
/// ZFS vdev label size; labels L0, L1 at the start, L2, L3 at the (256 KiB aligned) end.
const ZFS_LABEL: u64 = 256 * 1024;
/// bcache superblock magic, 24 bytes into the superblock at 4 KiB.
const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];
/// The BitLocker GUID (at 0xa0 in a Windows 7+ volume, at 424 in a BitLocker To Go volume; mixed-endian bytes of
/// 4967D63B-2E29-4AD8-8399-F6A339E3D001).
const BITLOCKER_GUID: [u8; 16] = [
    0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a, 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0, 0x01,
];
/// GPT partition type of a Windows Storage Spaces member.
pub const STORAGE_SPACES_TYPE: &str = "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D";

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// An md 1.x superblock at byte `off`: magic, major version 1, and its own recorded position.
fn md1_at(vol: &impl ReadAt, off: u64) -> bool {
    let sb = vol.read_at(off, 256);
    le32(&sb, 0) == Some(MD_MAGIC) && le32(&sb, 4) == Some(1) && le64(&sb, 144) == Some(off / 512)
}

/// md superblocks, where each metadata version keeps it (the offsets blkid and the kernel use).
fn md_version(vol: &impl ReadAt, size: u64) -> Option<&'static str> {
    if size > 0x10000 {
        // 0.90: the last 64 KiB-aligned 64 KiB block; host byte order, so either.
        let sb = vol.read_at((size & !0xffff) - 0x10000, 8);
        let magic = sb.get(0..4).map(|m| [m[0], m[1], m[2], m[3]]);
        if magic == Some(MD_MAGIC.to_le_bytes()) || magic == Some(MD_MAGIC.to_be_bytes()) {
            return Some("linux_raid_member (md 0.90)");
        }
        // 1.0: 8 KiB before the 4 KiB-aligned end.
        if md1_at(vol, (size & !0xfff) - 0x2000) {
            return Some("linux_raid_member (md 1.0)");
        }
    }
    if md1_at(vol, 0) {
        return Some("linux_raid_member (md 1.1)");
    }
    if md1_at(vol, 0x1000) {
        return Some("linux_raid_member (md 1.2)");
    }
    None
}

/// ZFS vdev labels: uberblocks (1 KiB slots in the second half of each 256 KiB label) carrying the magic
/// in either byte order; like blkid, four are wanted for a match.
fn zfs_member(vol: &impl ReadAt, size: u64) -> bool {
    let aligned = size - size % ZFS_LABEL;
    let mut labels = vec![0, ZFS_LABEL];
    if aligned >= 4 * ZFS_LABEL {
        labels.extend([aligned - 2 * ZFS_LABEL, aligned - ZFS_LABEL]);
    }
    let mut found = 0;
    for label in labels {
        let ring = vol.read_at(label + ZFS_LABEL / 2, (ZFS_LABEL / 2) as usize);
        for slot in ring.chunks_exact(1024) {
            let magic = u64::from_le_bytes(slot[..8].try_into().unwrap_or_default());
            if magic == ZFS_UB_MAGIC || magic.swap_bytes() == ZFS_UB_MAGIC {
                found += 1;
            }
        }
        if found >= 4 {
            return true;
        }
    }
    false
}

/// The volume's type by signature, read-only: md superblocks (also those kept at the end, 0.90 and 1.0),
/// bcache, then the filesystem and volume signatures at the start ([`signature`]), then ZFS labels and
/// VMFS. `size` is the volume's size in bytes (0 when unknown: the end is not looked at).
pub fn probe(vol: &impl ReadAt, size: u64) -> Option<&'static str> {
    if let Some(md) = md_version(vol, size) {
        return Some(md);
    }
    let head = vol.read_at(0, HEAD);
    if head.get(4096 + 24..4096 + 40) == Some(&BCACHE_MAGIC[..]) {
        return Some("bcache");
    }
    if let Some(sig) = signature(&head) {
        return Some(sig);
    }
    if size >= 2 * ZFS_LABEL && zfs_member(vol, size) {
        return Some("zfs_member");
    }
    if vol.read_at(2 << 20, 4) == b"\x5e\xf1\xab\x2f" {
        return Some("VMFS");
    }
    if vol.read_at(1 << 20, 4) == b"\x0d\xd0\x01\xc0" {
        return Some("VMFS_volume_member");
    }
    None
}

/// One MBR or EBR entry: (partition number, type byte, first sector, sectors).
pub type MbrEntry = (u32, u8, u64, u64);

/// MBR primary entries (type, first sector, sectors) from sector 0, or `None` without the 0x55AA mark.
/// A protective MBR (type 0xEE) is reported too; the caller prefers GPT then.
pub fn parse_mbr(sector0: &[u8]) -> Option<Vec<MbrEntry>> {
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

/// MBR partition types that hold a chain of extended boot records (CHS, LBA, Linux extended).
pub fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// Most logical partitions the walk reports: far more than any partitioning tool makes, few enough that a
/// crafted chain cannot make the inventory large.
const MAX_LOGICAL: u32 = 256;

/// The logical partitions of an extended partition at `ext_first` (sectors) of `ext_count` sectors, as
/// (number from 5, type, first sector, sectors), walking the EBR chain with `read_sector`. The walk ends
/// with a note, never a hang, when a link points back into the chain, leaves the extended partition, or
/// reaches a sector without the 0x55AA mark.
pub fn walk_ebr(
    mut read_sector: impl FnMut(u64) -> Vec<u8>,
    ext_first: u64,
    ext_count: u64,
) -> (Vec<MbrEntry>, Option<String>) {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let ext_end = ext_first.saturating_add(ext_count);
    let mut ebr = ext_first;
    let mut number = 5u32;
    loop {
        if !seen.insert(ebr) {
            return (
                out,
                Some(format!(
                    "the extended boot record chain loops back to sector {ebr}; walk stopped after {} logical partitions",
                    number - 5
                )),
            );
        }
        if number - 5 >= MAX_LOGICAL {
            return (
                out,
                Some(format!(
                    "more than {MAX_LOGICAL} logical partitions; walk stopped"
                )),
            );
        }
        let sector = read_sector(ebr);
        let Some(entries) = parse_mbr(&sector) else {
            let note = if number == 5 {
                format!("the extended partition at sector {ext_first} holds no boot record")
            } else {
                format!(
                    "no extended boot record at sector {ebr} (linked from the one before); walk stopped"
                )
            };
            return (out, Some(note));
        };
        // Entry 1: the logical partition, relative to this EBR; entry 2: the next EBR, relative to the
        // extended partition's start. parse_mbr drops empty slots, so tell them apart by type.
        let mut next = None;
        for (slot, kind, first, count) in entries {
            if slot == 1 && !is_extended(kind) {
                out.push((number, kind, ebr.saturating_add(first), count));
                number += 1;
            } else if slot == 2 && is_extended(kind) {
                next = Some(ext_first.saturating_add(first));
            }
        }
        let Some(n) = next else {
            return (out, None);
        };
        if n < ext_first || n >= ext_end {
            return (
                out,
                Some(format!(
                    "an extended boot record links to sector {n}, outside the extended partition (sectors {ext_first}..{ext_end}); walk stopped"
                )),
            );
        }
        ebr = n;
    }
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

/// [`probe`] of the `size` bytes at `start` of `file`.
fn volume_signature(file: &File, start: u64, size: u64) -> Option<String> {
    let vol = |off: u64, len: usize| {
        if size > 0 && off >= size {
            return Vec::new();
        }
        let len = if size > 0 {
            len.min(usize::try_from(size - off).unwrap_or(len))
        } else {
            len
        };
        read_at(file, start.saturating_add(off), len)
    };
    probe(&vol, size).map(str::to_owned)
}

/// A GPT partition whose type says Windows Storage Spaces (its pool metadata has no documented magic).
fn storage_spaces(type_guid: &str) -> Option<String> {
    type_guid
        .eq_ignore_ascii_case(STORAGE_SPACES_TYPE)
        .then(|| "Windows Storage Spaces".to_owned())
}

/// The partition table of a disk or disk image open for reading: `gpt` (through the `gpt` crate) or
/// `mbr` (with the logical partitions of an extended one), and its entries with the signature at each
/// partition's start; `(None, [])` without one.
pub fn read_table(file: &File, sector: u64) -> (Option<String>, Vec<TableEntry>) {
    let (table, entries, _) = read_table_noting(file, sector);
    (table, entries)
}

/// [`read_table`], and what walking an extended partition's chain noted (a loop, a broken link).
fn read_table_noting(file: &File, sector: u64) -> (Option<String>, Vec<TableEntry>, Vec<String>) {
    let mut table = None;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let lb = if sector == 4096 {
        gpt::disk::LogicalBlockSize::Lb4096
    } else {
        gpt::disk::LogicalBlockSize::Lb512
    };
    // The gpt crate asserts 128-byte partition entries (the spec allows 128 × 2^n): such a header is
    // noted and the disk read as MBR, instead of a panic on a disk that says so.
    let entry_size = {
        let h = read_at(file, sector, 512);
        (h.get(..8) == Some(b"EFI PART"))
            .then(|| le32(&h, 84))
            .flatten()
    };
    if let Some(n) = entry_size.filter(|&n| n != 128) {
        notes.push(format!(
            "the GPT header says partition entries are {n} bytes; only 128-byte entries are read"
        ));
    }
    let gpt = (entry_size.is_none_or(|n| n == 128))
        .then(|| file.try_clone().ok())
        .flatten()
        .and_then(|f| {
            gpt::GptConfig::new()
                .writable(false)
                .logical_block_size(lb)
                .open_from_device(f)
                .ok()
        });
    if let Some(disk) = gpt {
        table = Some("gpt".to_owned());
        for (n, p) in disk.partitions() {
            // A GPT entry's LBAs are whatever the disk says: saturate rather than overflow.
            let start = p.first_lba.saturating_mul(sector);
            let size = (p.last_lba.saturating_add(1))
                .saturating_sub(p.first_lba)
                .saturating_mul(sector);
            out.push(TableEntry {
                number: *n,
                start_bytes: start,
                size_bytes: size,
                type_id: p.part_type_guid.guid.to_string(),
                name: (!p.name.is_empty()).then(|| p.name.clone()),
                signature: volume_signature(file, start, size)
                    .or_else(|| storage_spaces(&p.part_type_guid.guid.to_string())),
            });
        }
    } else if let Some(entries) = parse_mbr(&read_at(file, 0, 512)).filter(|e| !e.is_empty()) {
        table = Some("mbr".to_owned());
        let mut all = Vec::new();
        for (number, kind, first, count) in entries {
            all.push((number, kind, first, count));
            if is_extended(kind) {
                let (logical, note) = walk_ebr(
                    |lba| read_at(file, lba.saturating_mul(sector), 512),
                    first,
                    count,
                );
                all.extend(logical);
                notes.extend(note);
            }
        }
        all.sort_by_key(|e| e.0);
        for (number, kind, first, count) in all {
            let start = first * sector;
            out.push(TableEntry {
                number,
                start_bytes: start,
                size_bytes: count * sector,
                type_id: format!("0x{kind:02x}"),
                name: None,
                signature: if is_extended(kind) {
                    None
                } else {
                    volume_signature(file, start, count * sector)
                },
            });
        }
    }
    (table, out, notes)
}

/// A partition's `PARTUUID` as Linux names it (fstab `PARTUUID=`, `/dev/disk/by-partuuid/`): a GPT
/// entry's unique GUID in lowercase, or for MBR the disk signature and the partition number
/// (`1234abcd-02`); `None` without such a partition or an MBR signature.
pub fn partition_uuid(file: &File, sector: u64, table: &str, number: u32) -> Option<String> {
    match table {
        "gpt" => {
            let h = read_at(file, sector, 512);
            if h.get(..8) != Some(b"EFI PART") || le32(&h, 84) != Some(128) {
                return None;
            }
            let lb = if sector == 4096 {
                gpt::disk::LogicalBlockSize::Lb4096
            } else {
                gpt::disk::LogicalBlockSize::Lb512
            };
            let disk = gpt::GptConfig::new()
                .writable(false)
                .logical_block_size(lb)
                .open_from_device(file.try_clone().ok()?)
                .ok()?;
            disk.partitions()
                .get(&number)
                .map(|p| p.part_guid.to_string().to_ascii_lowercase())
        }
        "mbr" => {
            let sig = le32(&read_at(file, 0, 512), 440).filter(|&s| s != 0)?;
            Some(format!("{sig:08x}-{number:02x}"))
        }
        _ => None,
    }
}

fn inspect(device: BlockDevice) -> DiskInventory {
    let mut inv = DiskInventory {
        table: None,
        entries: Vec::new(),
        signature: None,
        error: None,
        notes: Vec::new(),
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
    let (table, entries, notes) = read_table_noting(&file, sector);
    inv.table = table;
    inv.entries = entries;
    inv.notes.extend(notes);
    if inv.table.is_none() {
        inv.signature = volume_signature(&file, 0, inv.device.size_bytes);
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

    /// Runs a tool that makes a fixture; `None` (and a loud note) when it is not installed and
    /// `RESCUE_REQUIRE_TOOLS` is not set.
    fn fixture_tool(cmd: &mut std::process::Command) -> Option<std::process::Output> {
        match cmd.output() {
            Ok(out) => Some(out),
            Err(e) => {
                assert!(
                    std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                    "{cmd:?}: {e} (RESCUE_REQUIRE_TOOLS is set)"
                );
                eprintln!("SKIPPED: {cmd:?} cannot run ({e}); install it to run this test");
                None
            }
        }
    }

    #[test]
    fn logical_partitions_made_by_sfdisk_are_listed() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        File::create(&path).unwrap().set_len(32 << 20).unwrap();
        let mut cmd = std::process::Command::new("sfdisk");
        cmd.arg("-q").arg(&path).stdin(std::process::Stdio::piped());
        let Ok(mut child) = cmd.spawn() else {
            fixture_tool(&mut cmd);
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                b"label: dos\n\
                  start=2048, size=8192, type=83\n\
                  start=10240, size=49152, type=5\n\
                  start=12288, size=8192, type=83\n\
                  start=22528, size=8192, type=7\n",
            )
            .unwrap();
        assert!(child.wait().unwrap().success());
        // An ext4 magic at the start of logical partition 6.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x53, 0xef], 22528 * 512 + 1080).unwrap();
        let inv = inspect(fake_device(&path));
        let got: Vec<(u32, u64, u64, &str)> = inv
            .entries
            .iter()
            .map(|e| {
                (
                    e.number,
                    e.start_bytes / 512,
                    e.size_bytes / 512,
                    e.type_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 2048, 8192, "0x83"),
                (2, 10240, 49152, "0x05"),
                (5, 12288, 8192, "0x83"),
                (6, 22528, 8192, "0x07"),
            ],
            "{inv:?}"
        );
        assert_eq!(inv.entries[3].signature.as_deref(), Some("ext2/3"));
        assert!(inv.notes.is_empty(), "{:?}", inv.notes);
    }

    /// An EBR at `lba` in `disk` (sectors of 512 bytes) with a logical entry and a link.
    fn put_ebr(disk: &mut [u8], lba: u64, logical: Option<(u8, u32, u32)>, next: Option<u32>) {
        let s = &mut disk[lba as usize * 512..][..512];
        s[510] = 0x55;
        s[511] = 0xaa;
        if let Some((kind, rel, count)) = logical {
            s[446 + 4] = kind;
            s[446 + 8..446 + 12].copy_from_slice(&rel.to_le_bytes());
            s[446 + 12..446 + 16].copy_from_slice(&count.to_le_bytes());
        }
        if let Some(rel) = next {
            s[462 + 4] = 0x05;
            s[462 + 8..462 + 12].copy_from_slice(&rel.to_le_bytes());
            s[462 + 12..462 + 16].copy_from_slice(&100u32.to_le_bytes());
        }
    }

    fn walk(disk: &[u8], first: u64, count: u64) -> (Vec<MbrEntry>, Option<String>) {
        walk_ebr(
            |lba| {
                disk.get(lba as usize * 512..lba as usize * 512 + 512)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            },
            first,
            count,
        )
    }

    #[test]
    fn a_looping_ebr_chain_ends_the_walk_with_a_note() {
        let mut disk = vec![0u8; 64 * 512];
        // Extended partition at sector 10, 50 sectors. EBR 10 -> EBR 20 -> back to EBR 10.
        put_ebr(&mut disk, 10, Some((0x83, 1, 5)), Some(10));
        put_ebr(&mut disk, 20, Some((0x07, 1, 5)), Some(0));
        let (parts, note) = walk(&disk, 10, 50);
        assert_eq!(parts, [(5, 0x83, 11, 5), (6, 0x07, 21, 5)]);
        let note = note.expect("a note");
        assert!(note.contains("loops back to sector 10"), "{note}");
        // An EBR that links to itself.
        let mut disk = vec![0u8; 64 * 512];
        put_ebr(&mut disk, 10, Some((0x83, 1, 5)), Some(0));
        let (parts, note) = walk(&disk, 10, 50);
        assert_eq!(parts.len(), 1);
        assert!(note.unwrap().contains("loops back to sector 10"));
        // A link out of the extended partition, and one to a sector without the mark.
        let mut disk = vec![0u8; 64 * 512];
        put_ebr(&mut disk, 10, Some((0x83, 1, 5)), Some(200));
        assert!(
            walk(&disk, 10, 50)
                .1
                .unwrap()
                .contains("outside the extended partition")
        );
        let mut disk = vec![0u8; 64 * 512];
        put_ebr(&mut disk, 10, Some((0x83, 1, 5)), Some(30));
        let (parts, note) = walk(&disk, 10, 50);
        assert_eq!(parts.len(), 1);
        assert!(
            note.unwrap()
                .contains("no extended boot record at sector 40")
        );
        // The end of a well-formed chain is no note.
        let mut disk = vec![0u8; 64 * 512];
        put_ebr(&mut disk, 10, Some((0x83, 1, 5)), None);
        assert_eq!(walk(&disk, 10, 50), (vec![(5, 0x83, 11, 5)], None));
    }

    /// What blkid (util-linux, an independent prober) calls the volume in `path`, when it is installed.
    fn blkid_type(path: &Path) -> Option<String> {
        let out = fixture_tool(
            std::process::Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "TYPE"])
                .arg(path),
        )?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn image(dir: &Path, name: &str, size: u64, writes: &[(u64, &[u8])]) -> std::path::PathBuf {
        let path = dir.join(name);
        let f = File::create(&path).unwrap();
        f.set_len(size).unwrap();
        for (off, bytes) in writes {
            f.write_all_at(bytes, *off).unwrap();
        }
        path
    }

    fn probe_file(path: &Path) -> Option<String> {
        let f = File::open(path).unwrap();
        volume_signature(&f, 0, f.metadata().unwrap().len())
    }

    /// An md 1.x superblock for position `off` with the kernel's checksum (`calc_sb_1_csum`).
    fn md1_superblock(off: u64) -> Vec<u8> {
        let mut sb = vec![0u8; 256];
        sb[0..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        sb[4..8].copy_from_slice(&1u32.to_le_bytes());
        sb[16..32].copy_from_slice(&[0x5a; 16]);
        sb[72..76].copy_from_slice(&1u32.to_le_bytes()); // raid1
        sb[92..96].copy_from_slice(&2u32.to_le_bytes()); // raid_disks
        sb[136..144].copy_from_slice(&1024u64.to_le_bytes()); // data_size
        sb[144..152].copy_from_slice(&(off / 512).to_le_bytes()); // super_offset
        let sum: u64 = sb
            .chunks_exact(4)
            .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .sum();
        let csum = (sum & 0xffff_ffff) + (sum >> 32);
        sb[216..220].copy_from_slice(&(csum as u32).to_le_bytes());
        sb
    }

    #[test]
    fn md_superblocks_are_found_where_each_version_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4 << 20;
        // Crafted from md_p.h (the kernel here has no md driver for mdadm --create); blkid checks them.
        let mut sb0 = vec![0u8; 64];
        sb0[0..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        sb0[8..12].copy_from_slice(&90u32.to_le_bytes());
        let end0 = (size & !0xffff) - 0x10000;
        let end1 = (size & !0xfff) - 0x2000;
        let cases = [
            (
                image(dir.path(), "md090", size, &[(end0, &sb0)]),
                "linux_raid_member (md 0.90)",
            ),
            (
                image(dir.path(), "md10", size, &[(end1, &md1_superblock(end1))]),
                "linux_raid_member (md 1.0)",
            ),
            (
                image(dir.path(), "md11", size, &[(0, &md1_superblock(0))]),
                "linux_raid_member (md 1.1)",
            ),
            (
                image(dir.path(), "md12", size, &[(4096, &md1_superblock(4096))]),
                "linux_raid_member (md 1.2)",
            ),
        ];
        for (path, name) in &cases {
            assert_eq!(
                probe_file(path).as_deref(),
                Some(*name),
                "{}",
                path.display()
            );
            if let Some(t) = blkid_type(path) {
                assert_eq!(t, "linux_raid_member", "blkid on {}", path.display());
            }
        }
        // An md 1.0 superblock wins over the filesystem it mirrors at the start.
        let both = image(
            dir.path(),
            "md10-ext",
            size,
            &[(end1, &md1_superblock(end1)), (1080, &[0x53, 0xef])],
        );
        assert_eq!(
            probe_file(&both).as_deref(),
            Some("linux_raid_member (md 1.0)")
        );
        // A superblock that names another position is no superblock.
        let moved = image(dir.path(), "moved", size, &[(end1, &md1_superblock(0))]);
        assert_eq!(probe_file(&moved), None);
    }

    #[test]
    fn md_members_made_by_mdadm_are_recognised() {
        if fixture_tool(std::process::Command::new("mdadm").arg("--version")).is_none() {
            return;
        }
        if !Path::new("/proc/mdstat").exists() {
            eprintln!("SKIPPED: this kernel has no md driver, mdadm --create cannot run");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (meta, name) in [
            ("0.90", "linux_raid_member (md 0.90)"),
            ("1.0", "linux_raid_member (md 1.0)"),
            ("1.2", "linux_raid_member (md 1.2)"),
        ] {
            let files: Vec<_> = ["a", "b"]
                .iter()
                .map(|n| image(dir.path(), &format!("{meta}-{n}"), 16 << 20, &[]))
                .collect();
            let loops: Vec<String> = files
                .iter()
                .map(|f| {
                    let out = std::process::Command::new("losetup")
                        .args(["-f", "--show"])
                        .arg(f)
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "losetup: {out:?}");
                    String::from_utf8_lossy(&out.stdout).trim().to_owned()
                })
                .collect();
            let md = format!("/dev/md/rescue-test-{}", std::process::id());
            let created = std::process::Command::new("mdadm")
                .args(["--create", &md, "--run", "--level=1", "--raid-devices=2"])
                .arg(format!("--metadata={meta}"))
                .args(&loops)
                // A question mdadm might ask gets end of input, not a wait on the test's terminal.
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let _ = std::process::Command::new("mdadm")
                .args(["--stop", &md])
                .output();
            for l in &loops {
                let _ = std::process::Command::new("losetup")
                    .args(["-d", l])
                    .output();
            }
            assert!(created.status.success(), "mdadm --create: {created:?}");
            assert_eq!(
                probe_file(&files[0]).as_deref(),
                Some(name),
                "metadata {meta}"
            );
        }
    }

    #[test]
    fn zfs_bitlocker_vmfs_and_bcache_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let size = 8 << 20;
        // ZFS (zfsutils-linux is not in Debian main): uberblocks in the rings of labels L0 and L1, as
        // the on-disk format specification lays them out (label 256 KiB, ring from 128 KiB, 1 KiB slots).
        let mut ub = vec![0u8; 16];
        ub[0..8].copy_from_slice(&ZFS_UB_MAGIC.to_le_bytes());
        ub[8..16].copy_from_slice(&5000u64.to_le_bytes());
        let mut writes: Vec<(u64, &[u8])> = Vec::new();
        for label in [0, ZFS_LABEL] {
            for slot in [0u64, 1, 2, 7] {
                writes.push((label + ZFS_LABEL / 2 + slot * 1024, &ub));
            }
        }
        // blkid looks at no ZFS member under 64 MiB.
        let zfs = image(dir.path(), "zfs", 64 << 20, &writes);
        // BitLocker (no Debian tool creates one): the boot sector of a Windows 7+ BitLocker volume.
        let mut bs = vec![0u8; 512];
        bs[0..3].copy_from_slice(b"\xeb\x58\x90");
        bs[3..11].copy_from_slice(b"-FVE-FS-");
        bs[0xa0..0xb0].copy_from_slice(&BITLOCKER_GUID);
        bs[510..512].copy_from_slice(&[0x55, 0xaa]);
        let mut fve = vec![0u8; 64];
        fve[0..8].copy_from_slice(b"-FVE-FS-");
        fve[8..10].copy_from_slice(&64u16.to_le_bytes());
        fve[10..12].copy_from_slice(&2u16.to_le_bytes());
        bs[0xb0..0xb8].copy_from_slice(&0x10000u64.to_le_bytes()); // FVE metadata offset
        let bitlocker = image(dir.path(), "bitlocker", size, &[(0, &bs), (0x10000, &fve)]);
        // VMFS: the filesystem magic 2 MiB in (what blkid looks for).
        let vmfs = image(dir.path(), "vmfs", size, &[(2 << 20, b"\x5e\xf1\xab\x2f")]);
        for (path, ours, theirs) in [
            (&zfs, "zfs_member", "zfs_member"),
            (&bitlocker, "BitLocker", "BitLocker"),
            (&vmfs, "VMFS", "VMFS"),
        ] {
            assert_eq!(
                probe_file(path).as_deref(),
                Some(ours),
                "{}",
                path.display()
            );
            if let Some(t) = blkid_type(path) {
                assert_eq!(t, theirs, "blkid on {}", path.display());
            }
        }
        // Three uberblocks are not enough (blkid wants four too).
        let few = image(dir.path(), "few", size, &writes[..3]);
        assert_eq!(probe_file(&few), None);

        let bcache = image(dir.path(), "bcache", 16 << 20, &[]);
        if let Some(out) = fixture_tool(
            std::process::Command::new("make-bcache")
                .arg("-B")
                .arg(&bcache),
        ) {
            assert!(out.status.success(), "make-bcache: {out:?}");
            assert_eq!(probe_file(&bcache).as_deref(), Some("bcache"));
        }
    }

    #[test]
    fn a_storage_spaces_partition_is_named_by_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(dir.path(), "disk.img", 8 << 20, &[]);
        let Some(out) = fixture_tool(
            std::process::Command::new("sgdisk")
                .args(["-o", "-n", "1:2048:+2M", "-t"])
                .arg(format!("1:{STORAGE_SPACES_TYPE}"))
                .arg(&path),
        ) else {
            return;
        };
        assert!(out.status.success(), "{out:?}");
        let inv = inspect(fake_device(&path));
        assert_eq!(
            inv.entries[0].signature.as_deref(),
            Some("Windows Storage Spaces"),
            "{inv:?}"
        );
    }
}

/// Fuzz targets (see `crate::fuzzing`): partition tables (GPT, MBR, EBR chains) and filesystem
/// signatures of a disk a broken or hostile device presents.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::{Target, file_of};

    fn seed(zst: &[u8]) -> Vec<u8> {
        zstd::decode_all(zst).unwrap_or_else(|e| panic!("fuzz seed: {e}"))
    }

    fn gpt_disk() -> Vec<u8> {
        seed(include_bytes!("fuzz-seeds/gpt-disk.img.zst"))
    }

    fn mbr_disk() -> Vec<u8> {
        seed(include_bytes!("fuzz-seeds/mbr-ebr-disk.img.zst"))
    }

    fn crc32(b: &[u8]) -> u32 {
        let mut c = flate2::Crc::new();
        c.update(b);
        c.sum()
    }

    /// Makes a mutated GPT's checksums right again, so mutations of its fields reach the code past
    /// the CRC checks (where a hostile disk's values are believed).
    fn fix_gpt(d: &mut [u8]) {
        let le32 = |d: &[u8], o: usize| u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        if d.len() < 1024 || &d[512..520] != b"EFI PART" {
            return;
        }
        let lba = u64::from_le_bytes(d[512 + 72..512 + 80].try_into().unwrap_or_default());
        let (n, size) = (le32(d, 512 + 80) as usize, le32(d, 512 + 84) as usize);
        let start = usize::try_from(lba.saturating_mul(512)).unwrap_or(usize::MAX);
        if let Some(entries) = n
            .checked_mul(size)
            .and_then(|len| d.get(start..start.checked_add(len)?))
        {
            let c = crc32(entries);
            d[512 + 88..512 + 92].copy_from_slice(&c.to_le_bytes());
        }
        let hsize = (le32(d, 512 + 12) as usize).clamp(92, 512);
        d[512 + 16..512 + 20].fill(0);
        let c = crc32(&d[512..512 + hsize]);
        d[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
    }

    fn tables(b: &[u8]) {
        let (flags, rest) = b.split_first().unwrap_or((&0, b));
        let mut disk = rest.to_vec();
        if flags & 1 == 0 {
            fix_gpt(&mut disk);
        }
        let sector = if flags & 2 == 0 { 512 } else { 4096 };
        let (table, entries, _notes) = read_table_noting(&file_of(&disk), sector);
        if table.is_none() {
            assert!(entries.is_empty());
        }
        assert!(entries.len() <= 4 + MAX_LOGICAL as usize + 128 * 8);
    }

    fn ebr_chains(b: &[u8]) {
        // The input is the extended partition, sector after sector; first and count from its head.
        let (head, disk) = b.split_at(b.len().min(8));
        let mut h = [0u8; 8];
        h[..head.len()].copy_from_slice(head);
        let first = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % 64);
        let count = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        let (logical, _note) = walk_ebr(
            |lba| {
                let at = usize::try_from(lba.saturating_mul(512)).unwrap_or(usize::MAX);
                disk.get(at..)
                    .map_or(Vec::new(), |s| s[..s.len().min(512)].to_vec())
            },
            first,
            count,
        );
        assert!(logical.len() <= MAX_LOGICAL as usize);
    }

    fn signatures(b: &[u8]) {
        // First 8 bytes: the volume size; then whether the bytes sit at its start or its end.
        let (head, data) = b.split_at(b.len().min(9));
        let mut h = [0u8; 9];
        h[..head.len()].copy_from_slice(head);
        let size = u64::from_le_bytes(h[..8].try_into().unwrap_or_default()) % (1 << 42);
        let at_end = h[8] & 1 == 1;
        let base = if at_end {
            size.saturating_sub(data.len() as u64)
        } else {
            0
        };
        // A volume of `size` bytes, zeros but for `data` at `base`.
        let vol = |off: u64, len: usize| -> Vec<u8> {
            if off >= size {
                return Vec::new();
            }
            let len = len.min(usize::try_from(size - off).unwrap_or(usize::MAX));
            let mut out = vec![0u8; len.min(1 << 20)];
            let end = off + out.len() as u64;
            let (from, to) = (off.max(base), end.min(base + data.len() as u64));
            if from < to {
                let src = &data[(from - base) as usize..(to - base) as usize];
                out[(from - off) as usize..(to - off) as usize].copy_from_slice(src);
            }
            out
        };
        let _ = probe(&vol, size);
        let _ = signature(data);
    }

    #[test]
    fn partition_tables() {
        let mut gpt = vec![0u8];
        gpt.extend(gpt_disk());
        let mut mbr = vec![1u8];
        mbr.extend(mbr_disk());
        Target::new("partition-table")
            .seed(gpt)
            .seed(mbr)
            .max_len(80 << 10)
            .dict(&[b"EFI PART", b"\x55\xaa", b"\x05", b"\x0f", b"\x85", b"\xee"])
            .run(tables);
    }

    #[test]
    fn ebr_chain() {
        let disk = mbr_disk();
        // The extended partition of the sample starts at sector 30.
        let mut b = 0u32.to_le_bytes().to_vec();
        b.extend_from_slice(&90u32.to_le_bytes());
        b.extend_from_slice(&disk[30 * 512..]);
        Target::new("ebr-chain")
            .seed(b)
            .max_len(48 << 10)
            .dict(&[b"\x55\xaa", b"\x05", b"\x0f", b"\x85"])
            .run(ebr_chains);
    }

    #[test]
    fn filesystem_signatures() {
        let mut ext4 = (1u64 << 20).to_le_bytes().to_vec();
        ext4.push(0);
        let mut sb = vec![0u8; 2048];
        sb[1080..1082].copy_from_slice(&[0x53, 0xef]);
        sb[1120] = 0x40;
        ext4.extend(&sb);
        let mut md10 = (1u64 << 20).to_le_bytes().to_vec();
        md10.push(1);
        let mut tail = vec![0u8; 0x2000];
        tail[..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        tail[4] = 1;
        tail[144..152].copy_from_slice(&(((1u64 << 20) - 0x2000) / 512).to_le_bytes());
        md10.extend(&tail);
        let mut zfs = (1u64 << 20).to_le_bytes().to_vec();
        zfs.push(0);
        zfs.extend(vec![0u8; 128 << 10]);
        for slot in 0..5 {
            let at = 9 + (128 << 10) + slot * 1024;
            if at + 8 <= zfs.len() {
                zfs[at..at + 8].copy_from_slice(&ZFS_UB_MAGIC.to_le_bytes());
            }
        }
        Target::new("fs-signature")
            .seed(ext4)
            .seed(md10)
            .seed(zfs)
            .max_len(160 << 10)
            .dict(&[
                b"LUKS\xba\xbe",
                b"XFSB",
                b"NTFS    ",
                b"EXFAT   ",
                b"FAT32   ",
                b"_BHRfS_M",
                b"CD001",
                b"hsqs",
                b"LVM2 001",
                b"SWAPSPACE2",
                b"\xfc\x4e\x2b\xa9",
            ])
            .run(signatures);
    }

    /// Found by `partition-table`: a GPT entry (checksums right) whose LBAs times the sector size
    /// overflowed u64 panicked the inventory of that disk.
    #[test]
    fn regression_gpt_lba_overflow() {
        let input = seed(include_bytes!(
            "fuzz-seeds/regressions/partition-table-lba-overflow.bin.zst"
        ));
        assert_eq!(crate::fuzzing::replay(tables, &input), Ok(()));
    }

    /// Found by `partition-table`: a GPT header with partition entries of another size than 128
    /// bytes hit an assertion in the `gpt` crate.
    #[test]
    fn regression_gpt_entry_size_other_than_128() {
        let input = seed(include_bytes!(
            "fuzz-seeds/regressions/partition-table-gpt-entry-size.bin.zst"
        ));
        assert_eq!(crate::fuzzing::replay(tables, &input), Ok(()));
    }
}
