//! Legacy-BIOS boot code from GRUB's i386-pc images, placed for a disk or a hybrid ISO: the 440 bytes of
//! `boot.img` for the MBR (told where `core.img` starts) and `core.img` itself (its first sector is
//! `diskboot.img`, whose block list is told where the rest of it starts).
//!
//! The byte offsets are GRUB's own (`include/grub/i386/pc/boot.h`, `grub-core/boot/i386/pc/diskboot.S`),
//! what `grub-bios-setup` patches; `core.img` must lie contiguously on the disk, which a BIOS boot
//! partition or a file extent in an ISO guarantees. Pure functions: nothing here runs GRUB's tools.

use thiserror::Error;

/// `GRUB_BOOT_MACHINE_KERNEL_SECTOR`: the 64-bit LBA of `core.img`'s first sector.
const KERNEL_SECTOR: usize = 0x5c;
/// `GRUB_BOOT_MACHINE_DRIVE_CHECK`: a 2-byte jump that `grub-bios-setup` turns into NOPs for hard
/// disks, so a BIOS that passes a bogus drive number still boots the disk as 0x80.
const DRIVE_CHECK: usize = 0x66;
/// Bytes of boot code in front of the disk signature and partition table.
pub const MBR_CODE: usize = 440;
/// The first block list entry sits at the end of `diskboot.img`: start LBA (u64), sectors (u16),
/// segment (u16).
const BLOCKLIST_START: usize = 0x200 - 12;

#[derive(Debug, Error)]
pub enum BiosBootError {
    #[error("boot.img is {len} bytes, not GRUB's 512-byte i386-pc boot sector")]
    CheckBootImg { len: usize },
    #[error("boot.img has no drive-check jump at 0x66 (not GRUB 2's i386-pc boot.img?)")]
    FindDriveCheck,
    #[error(
        "core.img does not start with diskboot.img (block list at 0x1f4 says {sectors} sectors for {len} bytes); build it with grub-mkimage -O i386-pc"
    )]
    CheckCoreImg { sectors: u16, len: usize },
}

/// The MBR boot code: `boot.img` with the LBA of `core.img`'s first sector and the hard-disk drive fix.
pub fn mbr_code(boot_img: &[u8], core_lba: u64) -> Result<[u8; MBR_CODE], BiosBootError> {
    if boot_img.len() != 512 || boot_img[510..512] != [0x55, 0xaa] {
        return Err(BiosBootError::CheckBootImg {
            len: boot_img.len(),
        });
    }
    if boot_img[DRIVE_CHECK] != 0xeb {
        return Err(BiosBootError::FindDriveCheck);
    }
    let mut code = [0u8; MBR_CODE];
    code.copy_from_slice(&boot_img[..MBR_CODE]);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    code[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(code)
}

/// Points `core.img`'s block list at the sector after `core_lba`, where the rest of it lies.
pub fn place_core(core_img: &mut [u8], core_lba: u64) -> Result<(), BiosBootError> {
    let sectors = core_img
        .get(BLOCKLIST_START + 8..BLOCKLIST_START + 10)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    if core_img.len() < 512 || usize::from(sectors) != core_img.len().div_ceil(512) - 1 {
        return Err(BiosBootError::CheckCoreImg {
            sectors,
            len: core_img.len(),
        });
    }
    core_img[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in with GRUB's shape: jump at 0x66, signature, and a diskboot block list.
    pub fn fake_boot_img() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0xeb;
        b[DRIVE_CHECK] = 0xeb;
        b[DRIVE_CHECK + 1] = 0x05;
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    pub fn fake_core_img(sectors: usize) -> Vec<u8> {
        let mut c = vec![0x5a; sectors * 512 - 100];
        c[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&2u64.to_le_bytes());
        c[BLOCKLIST_START + 8..BLOCKLIST_START + 10]
            .copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
        c
    }

    #[test]
    fn boot_sector_points_at_core() {
        let code = mbr_code(&fake_boot_img(), 40).unwrap();
        assert_eq!(&code[0x5c..0x64], &40u64.to_le_bytes());
        assert_eq!(&code[0x66..0x68], &[0x90, 0x90]);
        assert!(matches!(
            mbr_code(&[0u8; 100], 40),
            Err(BiosBootError::CheckBootImg { len: 100 })
        ));
    }

    #[test]
    fn core_block_list_starts_after_its_first_sector() {
        let mut core = fake_core_img(10);
        place_core(&mut core, 40).unwrap();
        assert_eq!(&core[0x1f4..0x1fc], &41u64.to_le_bytes());
        let mut not_core = vec![0u8; 4096];
        assert!(matches!(
            place_core(&mut not_core, 40),
            Err(BiosBootError::CheckCoreImg { .. })
        ));
    }
}
