//! A whole GPT disk image holding a FAT32 EFI System Partition: protective MBR, primary and backup GPT
//! (via the `gpt` crate), the ESP at 1 MiB (via [`crate::fat`]). With [`BiosBoot`] it also boots on a
//! legacy BIOS: GRUB's `boot.img` in the MBR's code area and `core.img` in a BIOS boot partition
//! (LBA 40 up to the ESP, partition 2), the layout `grub-install` makes on a GPT disk.
//!
//! Reproducible: the disk and partition GUIDs come from [`DiskOptions`] (the `gpt` crate would
//! otherwise pick random ones). Writes only to the device it is given, and never past `disk_size`.

use crate::EspFile;
use crate::biosboot::{self, BiosBootError};
use crate::fat::{self, FatImageError, FatOptions};
use gpt::disk::LogicalBlockSize;
use gpt::mbr::{MBRError, ProtectiveMBR};
use gpt::{GptConfig, GptError};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use thiserror::Error;

const SECTOR: u64 = 512;
const MIB: u64 = 1024 * 1024;
/// First LBA of the ESP: 1 MiB, the alignment every partitioning tool uses.
const ESP_FIRST_LBA: u64 = MIB / SECTOR;
/// GPT partition name of the ESP.
pub const ESP_NAME: &str = "EFI System Partition";
/// GPT partition name of the BIOS boot partition.
pub const BIOS_BOOT_NAME: &str = "BIOS boot partition";
/// First LBA of the BIOS boot partition: after the primary GPT (LBA 1–33), 8-sector aligned.
pub const BIOS_BOOT_FIRST_LBA: u64 = 40;

/// GRUB i386-pc images that make the disk boot on a legacy BIOS (see [`crate::biosboot`]).
#[derive(Debug, Clone, Copy)]
pub struct BiosBoot<'a> {
    /// GRUB's 512-byte `boot.img`.
    pub boot_img: &'a [u8],
    /// `grub-mkimage -O i386-pc` output (starts with `diskboot.img`).
    pub core_img: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    /// Disk GUID, bytes in the order the GUID is written as text (`uuid::Uuid::from_bytes`):
    /// `00112233-4455-6677-8899-aabbccddeeff` is `[0x00, 0x11, …, 0xff]`.
    pub disk_guid: [u8; 16],
    /// Unique partition GUID of the ESP, same byte order as `disk_guid`.
    pub esp_guid: [u8; 16],
    /// Unique partition GUID of the BIOS boot partition (used only with [`BiosBoot`]).
    pub bios_guid: [u8; 16],
    /// ESP size in bytes (a multiple of 512); `None` means [`fat::esp_size_for`] the files.
    pub esp_size: Option<u64>,
    pub fat: FatOptions,
}

/// Where things ended up; sizes in bytes, LBAs in 512-byte sectors (`esp_last_lba` inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLayout {
    pub disk_size: u64,
    pub esp_first_lba: u64,
    pub esp_last_lba: u64,
}

#[derive(Debug, Error)]
pub enum DiskImageError {
    #[error("building the FAT32 ESP")]
    BuildEsp(#[source] FatImageError),
    #[error(
        "device already holds {len} bytes, more than the {disk_size}-byte disk image; truncate it first"
    )]
    CheckDeviceSize { len: u64, disk_size: u64 },
    #[error("writing the disk image")]
    WriteDevice(#[source] io::Error),
    #[error("writing the protective MBR")]
    WriteProtectiveMbr(#[source] MBRError),
    #[error("creating the GPT headers")]
    CreatePartitionTable(#[source] GptError),
    #[error("adding the ESP to the partition table")]
    AddPartition(#[source] GptError),
    #[error("writing the GPT")]
    WritePartitionTable(#[source] GptError),
    #[error("core.img is {len} bytes; the BIOS boot partition holds {room}")]
    FitCoreImage { len: usize, room: u64 },
    #[error("placing GRUB's BIOS boot code")]
    PlaceBiosBoot(#[source] BiosBootError),
}

/// Layout for an ESP of `esp_size` bytes: 1 MiB in front (MBR, primary GPT, alignment), the ESP,
/// then padding to a whole MiB plus 1 MiB for the backup GPT, so the disk is MiB-aligned too.
pub fn layout(esp_size: u64) -> DiskLayout {
    let esp_sectors = esp_size.div_ceil(SECTOR).max(1);
    let esp_end = ESP_FIRST_LBA * SECTOR + esp_sectors * SECTOR;
    DiskLayout {
        disk_size: esp_end.div_ceil(MIB) * MIB + MIB,
        esp_first_lba: ESP_FIRST_LBA,
        esp_last_lba: ESP_FIRST_LBA + esp_sectors - 1,
    }
}

/// The `gpt` crate wants `Debug` on its device; callers' devices need not have it.
struct Device<'a, D>(&'a mut D);

impl<D> fmt::Debug for Device<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Device")
    }
}

impl<D: Read> Read for Device<'_, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<D: Write> Write for Device<'_, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<D: Seek> Seek for Device<'_, D> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

fn write_zeros<W: Write>(w: &mut W, mut len: u64) -> io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// Write a GPT disk holding one FAT32 ESP with `files` into `dev`, every byte of it from offset 0
/// to `disk_size`. `dev` must be empty or at most `disk_size` long (a `Read + Write + Seek` cannot
/// be truncated), and readable as well as writable, because the `gpt` crate reads sectors back
/// while writing the table: open files with
/// `OpenOptions::new().read(true).write(true).create(true).truncate(true)`, not `File::create`
/// (which is write-only and fails with "Bad file descriptor").
pub fn write_esp_disk<D: Read + Write + Seek>(
    dev: &mut D,
    files: &[EspFile],
    opts: &DiskOptions,
) -> Result<DiskLayout, DiskImageError> {
    write_disk(dev, files, opts, None)
}

/// [`write_esp_disk`], plus GRUB's BIOS boot code when `bios` is given (partition 2, LBA 40).
pub fn write_disk<D: Read + Write + Seek>(
    dev: &mut D,
    files: &[EspFile],
    opts: &DiskOptions,
    bios: Option<BiosBoot>,
) -> Result<DiskLayout, DiskImageError> {
    let esp_size = opts.esp_size.unwrap_or_else(|| fat::esp_size_for(files));
    // Check and patch the BIOS pieces before anything is written.
    let bios = match bios {
        Some(b) => {
            let room = (ESP_FIRST_LBA - BIOS_BOOT_FIRST_LBA) * SECTOR;
            if b.core_img.len() as u64 > room {
                return Err(DiskImageError::FitCoreImage {
                    len: b.core_img.len(),
                    room,
                });
            }
            let mut core = b.core_img.to_vec();
            biosboot::place_core(&mut core, BIOS_BOOT_FIRST_LBA)
                .map_err(DiskImageError::PlaceBiosBoot)?;
            let code = biosboot::mbr_code(b.boot_img, BIOS_BOOT_FIRST_LBA)
                .map_err(DiskImageError::PlaceBiosBoot)?;
            Some((code, core))
        }
        None => None,
    };
    let esp = fat::build_fat32(files, esp_size, &opts.fat).map_err(DiskImageError::BuildEsp)?;
    let layout = layout(esp_size);

    let len = dev
        .seek(SeekFrom::End(0))
        .map_err(DiskImageError::WriteDevice)?;
    if len > layout.disk_size {
        return Err(DiskImageError::CheckDeviceSize {
            len,
            disk_size: layout.disk_size,
        });
    }
    // Every byte is written, so stale data on a reused device cannot survive; the gpt crate finds
    // the backup header's place from the device's end, which is now exactly `disk_size`.
    let tail = layout.disk_size - (layout.esp_last_lba + 1) * SECTOR;
    (|| {
        dev.seek(SeekFrom::Start(0))?;
        write_zeros(dev, ESP_FIRST_LBA * SECTOR)?;
        dev.write_all(&esp)?;
        write_zeros(dev, tail)?;
        if let Some((_, core)) = &bios {
            dev.seek(SeekFrom::Start(BIOS_BOOT_FIRST_LBA * SECTOR))?;
            dev.write_all(core)?;
        }
        Ok(())
    })()
    .map_err(DiskImageError::WriteDevice)?;

    let mut dev = Device(dev);
    let total_lba = layout.disk_size / SECTOR;
    let mbr_size = u32::try_from(total_lba - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(mbr_size)
        .overwrite_lba0(&mut dev)
        .map_err(DiskImageError::WriteProtectiveMbr)?;

    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(dev, Some(uuid::Uuid::from_bytes(opts.disk_guid)))
        .map_err(DiskImageError::CreatePartitionTable)?;
    let esp_sectors = layout.esp_last_lba - layout.esp_first_lba + 1;
    let id = disk
        .add_partition_at(
            ESP_NAME,
            1,
            layout.esp_first_lba,
            esp_sectors,
            gpt::partition_types::EFI,
            0,
        )
        .map_err(DiskImageError::AddPartition)?;
    let bios_id = match bios {
        Some(_) => Some(
            disk.add_partition_at(
                BIOS_BOOT_NAME,
                2,
                BIOS_BOOT_FIRST_LBA,
                ESP_FIRST_LBA - BIOS_BOOT_FIRST_LBA,
                gpt::partition_types::BIOS,
                0,
            )
            .map_err(DiskImageError::AddPartition)?,
        ),
        None => None,
    };
    // add_partition_at draws a random partition GUID; replace it with the fixed one.
    let mut partitions = disk.take_partitions();
    if let Some(p) = partitions.get_mut(&id) {
        p.part_guid = uuid::Uuid::from_bytes(opts.esp_guid);
    }
    if let Some(p) = bios_id.and_then(|b| partitions.get_mut(&b)) {
        p.part_guid = uuid::Uuid::from_bytes(opts.bios_guid);
    }
    disk.update_partitions(partitions)
        .map_err(DiskImageError::AddPartition)?;
    let dev = disk.write().map_err(DiskImageError::WritePartitionTable)?;
    if let Some((code, _)) = &bios {
        // The protective MBR's code area; its partition entry and signature stay as written.
        (|| {
            dev.0.seek(SeekFrom::Start(0))?;
            dev.0.write_all(code)
        })()
        .map_err(DiskImageError::WriteDevice)?;
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fat::tests::{OPTS, assert_fsck_clean, assert_holds, sample_files};
    use crate::test_tools;
    use std::io::Cursor;

    const DISK_GUID: [u8; 16] = *b"rescue-disk-guid";
    const ESP_GUID: [u8; 16] = *b"rescue-esp--guid";

    fn opts(esp_size: Option<u64>) -> DiskOptions {
        DiskOptions {
            disk_guid: DISK_GUID,
            esp_guid: ESP_GUID,
            bios_guid: *b"rescue-biosboot!",
            esp_size,
            fat: OPTS,
        }
    }

    fn esp_disk(files: &[EspFile], opts: &DiskOptions) -> (Vec<u8>, DiskLayout) {
        let mut dev = Cursor::new(Vec::new());
        let layout = write_esp_disk(&mut dev, files, opts).unwrap();
        (dev.into_inner(), layout)
    }

    #[test]
    fn layout_is_mib_aligned() {
        assert_eq!(
            layout(64 * MIB),
            DiskLayout {
                disk_size: 66 * MIB,
                esp_first_lba: 2048,
                esp_last_lba: 2048 + 131_072 - 1
            }
        );
        // An ESP that is not a whole MiB still leaves the disk MiB-aligned, with >= 1 MiB for the backup GPT.
        let l = layout(40 * MIB + 512);
        assert_eq!((l.disk_size, l.esp_last_lba), (43 * MIB, 2048 + 81_920));
    }

    #[test]
    fn esp_disk_is_valid_and_holds_the_files() {
        let files = sample_files();
        let (image, layout) = esp_disk(&files, &opts(None));
        assert_eq!(image.len() as u64, layout.disk_size);
        assert_eq!(layout.disk_size, 66 * MIB);

        // Read the table back with the gpt crate: fixed GUIDs, type, name, placement.
        let disk = GptConfig::new()
            .open_from_device(Cursor::new(image.clone()))
            .unwrap();
        assert_eq!(disk.guid().as_bytes(), &DISK_GUID);
        let parts: Vec<_> = disk.partitions().values().filter(|p| p.is_used()).collect();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].part_guid.as_bytes(), &ESP_GUID);
        assert_eq!(parts[0].part_type_guid, gpt::partition_types::EFI);
        assert_eq!(parts[0].name, ESP_NAME);
        assert_eq!(
            (parts[0].first_lba, parts[0].last_lba),
            (layout.esp_first_lba, layout.esp_last_lba)
        );
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(image[446 + 4], 0xee, "protective MBR partition type");

        let esp = &image[(layout.esp_first_lba * SECTOR) as usize
            ..((layout.esp_last_lba + 1) * SECTOR) as usize];
        assert_holds(esp, &files);
        assert_fsck_clean(esp);

        assert_sgdisk_clean(&image);

        assert!(
            esp_disk(&files, &opts(None)).0 == image,
            "same inputs, different bytes"
        );
    }

    /// `sgdisk -v` finds no problems in `image` (when sgdisk is installed; the test-tools gate decides
    /// whether its absence is an error).
    fn assert_sgdisk_clean(image: &[u8]) {
        if let Some(sgdisk) = test_tools::tool("sgdisk") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("disk.img");
            std::fs::write(&path, image).unwrap();
            let out = std::process::Command::new(sgdisk)
                .arg("-v")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("No problems found"),
                "sgdisk -v:\n{text}"
            );
        }
    }

    #[test]
    fn bios_bootable_disk_keeps_the_esp_and_passes_sgdisk() {
        use crate::biosboot::tests::{fake_boot_img, fake_core_img};
        let files = sample_files();
        let core = fake_core_img(300);
        let mut dev = Cursor::new(Vec::new());
        let bios = BiosBoot {
            boot_img: &fake_boot_img(),
            core_img: &core,
        };
        let layout = write_disk(&mut dev, &files, &opts(None), Some(bios)).unwrap();
        let image = dev.into_inner();
        // MBR: GRUB's code pointing at LBA 40, then the protective 0xEE entry and the signature.
        assert_eq!(&image[0x5c..0x64], &40u64.to_le_bytes());
        assert_eq!(image[446 + 4], 0xee);
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        let at = (BIOS_BOOT_FIRST_LBA * SECTOR) as usize;
        assert_eq!(&image[at + 0x1f4..at + 0x1fc], &41u64.to_le_bytes());
        assert_eq!(&image[at + 0x200..at + core.len()], &core[0x200..]);

        let disk = GptConfig::new()
            .open_from_device(Cursor::new(image.clone()))
            .unwrap();
        let parts = disk.partitions();
        assert_eq!(parts[&1].part_type_guid, gpt::partition_types::EFI);
        assert_eq!(parts[&2].part_type_guid, gpt::partition_types::BIOS);
        assert_eq!((parts[&2].first_lba, parts[&2].last_lba), (40, 2047));
        let esp = &image[(layout.esp_first_lba * SECTOR) as usize
            ..((layout.esp_last_lba + 1) * SECTOR) as usize];
        assert_holds(esp, &files);
        assert_sgdisk_clean(&image);
        let too_big = vec![0u8; 2 << 20];
        let err = write_disk(
            &mut Cursor::new(Vec::new()),
            &files,
            &opts(None),
            Some(BiosBoot {
                boot_img: &fake_boot_img(),
                core_img: &too_big,
            }),
        )
        .unwrap_err();
        assert!(
            matches!(err, DiskImageError::FitCoreImage { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn stale_device_contents_are_overwritten() {
        let files = sample_files();
        let (clean, layout) = esp_disk(&files, &opts(None));
        let mut dev = Cursor::new(vec![0xa5; layout.disk_size as usize]);
        write_esp_disk(&mut dev, &files, &opts(None)).unwrap();
        assert!(dev.into_inner() == clean);
        let mut longer = Cursor::new(vec![0; layout.disk_size as usize + 512]);
        let err = write_esp_disk(&mut longer, &files, &opts(None)).unwrap_err();
        assert!(
            matches!(err, DiskImageError::CheckDeviceSize { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn esp_too_small_is_an_error() {
        let files = [EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            data: vec![1; 70 * MIB as usize],
        }];
        let mut dev = Cursor::new(Vec::new());
        let err = write_esp_disk(&mut dev, &files, &opts(Some(64 * MIB))).unwrap_err();
        assert!(
            matches!(
                err,
                DiskImageError::BuildEsp(FatImageError::FitFiles { .. })
            ),
            "{err:?}"
        );
        assert!(dev.into_inner().is_empty(), "nothing written on error");
        // Without an explicit size the ESP grows to fit.
        let (image, layout) = esp_disk(&files, &opts(None));
        assert_eq!(layout.disk_size, (70 + 7 + 4 + 2) * MIB);
        assert_eq!(image.len() as u64, layout.disk_size);
    }
}
