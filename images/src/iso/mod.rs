//! ISO 9660 images with El Torito boot entries and a hybrid MBR, written without external tools.
//!
//! What it writes: a 32 KiB system area (an MBR when [`IsoImage::set_mbr`] is used), the primary
//! volume descriptor, the El Torito boot record, the terminator, both path tables, the directories and
//! the files, each file one contiguous extent. Names are plain ISO 9660 (upper-case d-characters,
//! at most one dot, `;1` version); every reader, GRUB, isolinux and Linux `isofs` included, finds them
//! case-insensitively, so neither Joliet nor Rock Ridge is needed for boot files.
//!
//! The layout is fixed before anything is written ([`IsoImage::layout`]), so a caller can patch a boot
//! file with the sector it will land on (GRUB's `boot.img`/`diskboot.img` need that) without moving
//! anything. Reproducible by construction: every timestamp comes from [`IsoOptions::epoch`], the tree is
//! sorted, and nothing reads the clock.
//!
//! The one ISO 9660 reader of the project is here too ([`IsoReader`], [`find_file`], [`volume_info`]):
//! the rescue system finds its own files on a CD without mounting it, and reads an installer's kernel
//! out of a distribution ISO. It takes Rock Ridge `NM` names where present, ignores `;1` versions, the
//! trailing `.` of extensionless names and case, and refuses an extent that lies beyond the image's end.
//!
//! Rooms: `writer` lays out and writes an image, `reader` reads one (and must never write), `encode`
//! holds the byte encodings of ISO 9660 fields the writer emits (numbers, names, dates, records).

mod encode;
mod reader;
mod writer;

pub use reader::{DirEntry, IsoReadError, IsoReader, VolumeInfo, find_file, volume_info};
pub use writer::{IsoImage, IsoImageError};

/// Logical block size of every ISO 9660 image written here.
pub const BLOCK: u64 = 2048;
/// First sector after the system area: the primary volume descriptor.
pub(crate) const PVD_LBA: u32 = 16;
const BOOT_RECORD_LBA: u32 = 17;
const TERMINATOR_LBA: u32 = 18;
const FIRST_FREE_LBA: u32 = 19;
/// Zero sectors after the last file, inside the volume (xorriso's default `-padding 300k`): loaders
/// read ahead in whole blocks, and GRUB's BIOS CD driver read zeros for the last bytes of a kernel that
/// ended exactly at the end of the medium.
const TAIL_PADDING: u64 = 150;

/// One file of the image; `path` is `/`-separated, e.g. `BOOT/GRUB/CORE.IMG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// The BIOS ("x86", platform 0) El Torito entry: a no-emulation boot image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosBoot {
    /// Path of the boot image in the tree (e.g. GRUB's `cdboot.img` + `core.img`).
    pub path: String,
    /// 512-byte sectors the BIOS loads (4 is what every loader expects).
    pub load_sectors: u16,
    /// Patch an El Torito boot info table into bytes 8..64 of the image (GRUB's `cdboot.img` and
    /// ISOLINUX read it to find the rest of themselves).
    pub boot_info_table: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoOptions {
    /// Volume identifier: at most 32 d-characters (`A-Z`, `0-9`, `_`).
    pub volume_id: String,
    /// Seconds since 1970 for every timestamp (SOURCE_DATE_EPOCH).
    pub epoch: u32,
    pub bios_boot: Option<BiosBoot>,
    /// Path of a FAT image in the tree to boot on UEFI (El Torito platform 0xEF).
    pub efi_boot: Option<String>,
}

/// Where a file ended up: first 2048-byte sector and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lba: u32,
    pub len: u64,
}

impl Extent {
    /// First 512-byte sector, for MBR entries and BIOS disk loaders.
    pub fn lba512(&self) -> u64 {
        u64::from(self.lba) * 4
    }
    /// Length in 512-byte sectors, rounded up.
    pub fn sectors512(&self) -> u64 {
        self.len.div_ceil(512)
    }
}

/// An MBR partition entry for the hybrid system area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrPartition {
    pub bootable: bool,
    pub kind: u8,
    pub first_lba: u32,
    pub sectors: u32,
}
