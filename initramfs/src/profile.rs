//! Named module sets for images. `generic` is the default: enough storage, filesystem, NIC and input
//! drivers to reach the disks and the keyboard of common servers, laptops and VMs without host probing.
//! Names are module names or aliases as [`crate::modules::ModuleIndex::closure`] takes them; a name that
//! is built into a kernel is simply skipped there.

/// A named list of modules to put in the initramfs (dependencies are added by the closure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub modules: &'static [&'static str],
}

const GENERIC: &[&str] = &[
    // Storage controllers and the SCSI/USB layers above them.
    "ahci",
    "ata_piix",
    "nvme",
    "nvme_core",
    "virtio_blk",
    "virtio_scsi",
    "virtio_pci",
    "scsi_mod",
    "sd_mod",
    "sr_mod",
    "usb_storage",
    "uas",
    "xhci_pci",
    "xhci_hcd",
    "ehci_pci",
    "ehci_hcd",
    "ohci_pci",
    "uhci_hcd",
    "megaraid_sas",
    "mpt3sas",
    "smartpqi",
    "hpsa",
    "aacraid",
    // Filesystems, and the code pages vfat mounts need by default.
    "ext4",
    "xfs",
    "btrfs",
    "vfat",
    "exfat",
    "ntfs3",
    "isofs",
    "squashfs",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    // NICs.
    "e1000e",
    "e1000",
    "igb",
    "ixgbe",
    "i40e",
    "ice",
    "bnxt_en",
    "tg3",
    "mlx5_core",
    "virtio_net",
    // Input: without these a USB or PS/2 keyboard does nothing.
    "usbhid",
    "hid_generic",
    "atkbd",
    // Console, entropy, loop images, EFI variables.
    "virtio_console",
    "virtio_rng",
    "loop",
    "efivarfs",
    // `rescue mount` serves acquisitions through FUSE; loaded when it runs, never at boot.
    "fuse",
    // Device-mapper and md for `rescue lvm activate` / `rescue md assemble`: loaded only when those
    // commands run, never at boot (no modalias matches them; coldplug loads by modalias).
    "dm_mod",
    "dm_mirror",
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
];

/// Just what the QEMU tests use: virtio devices, AHCI/NVMe/USB disks, ext4/vfat and a keyboard.
const QEMU: &[&str] = &[
    "virtio_blk",
    "virtio_scsi",
    "virtio_pci",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    "ahci",
    "nvme",
    "sd_mod",
    "sr_mod",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ext4",
    "vfat",
    "exfat",
    "nls_cp437",
    "nls_iso8859_1",
    "isofs",
    "atkbd",
    "usbhid",
    "hid_generic",
    "loop",
    "efivarfs",
    "fuse",
    "xfs",
    "dm_mod",
    "dm_mirror",
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
];

const NAMES: &[&str] = &["generic", "qemu"];

/// Profile entries some supported kernels lack entirely (Debian's 6.1 has `# CONFIG_NTFS3_FS is not set`),
/// so a build may report them missing without anything being wrong.
const MAY_BE_ABSENT: &[&str] = &["ntfs3"];

/// True if `module` may legitimately be missing from a kernel (`ntfs3` on Debian 6.1); callers can
/// report it quietly instead of warning.
pub fn may_be_absent(module: &str) -> bool {
    MAY_BE_ABSENT.contains(&module)
}

pub fn generic() -> Profile {
    Profile {
        name: "generic",
        modules: GENERIC,
    }
}

pub fn qemu() -> Profile {
    Profile {
        name: "qemu",
        modules: QEMU,
    }
}

pub fn by_name(name: &str) -> Option<Profile> {
    match name {
        "generic" => Some(generic()),
        "qemu" => Some(qemu()),
        _ => None,
    }
}

pub fn names() -> &'static [&'static str] {
    NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_lists_are_clean() {
        for name in names() {
            let profile = by_name(name).unwrap();
            assert_eq!(profile.name, *name);
            let mut sorted = profile.modules.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), profile.modules.len(), "duplicate in {name}");
            assert!(
                profile.modules.iter().all(|m| !m.contains('-')),
                "{name}: use '_' names"
            );
        }
        assert_eq!(by_name("nope"), None);
    }

    #[test]
    fn generic_covers_known_pitfalls() {
        // Modules other builders' users found missing (see docs/REFERENCES "Initramfs").
        for needed in [
            "virtio_pci",
            "sd_mod",
            "uas",
            "usbhid",
            "hid_generic",
            "atkbd",
            "mlx5_core",
            "nvme",
        ] {
            assert!(generic().modules.contains(&needed), "{needed}");
        }
        assert!(qemu().modules.iter().all(|m| generic().modules.contains(m)));
    }
}
