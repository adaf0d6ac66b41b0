//! Host packages the builder and tests need. Missing ones are installed with `apt-get` when running as
//! root; otherwise the build stops with the exact command to run.

use std::process::Command;
use std::sync::Once;

use anyhow::bail;

use crate::util;

static APT_UPDATE: Once = Once::new();

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Refreshes apt's package lists once per run (a fresh machine may have none), when running as root.
pub fn apt_update() -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut result = Ok(());
    APT_UPDATE.call_once(|| {
        result = util::run(Command::new("apt-get").args(["update", "-q"]));
    });
    result
}

/// Ensures each `(tool, package)` is present: `tool` is a program name on PATH or an absolute file path.
pub fn ensure_packages(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !util::have(tool))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let cmdline = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() || !util::have("apt-get") {
        bail!("missing host packages; run as root: {cmdline}");
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    apt_update()?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !util::have(tool))
        .map(|(t, _)| *t)
        .collect();
    if !still.is_empty() {
        bail!("still missing after `{cmdline}`: {}", still.join(", "));
    }
    Ok(())
}

/// What `cargo xtask build` needs.
pub const BUILD: &[(&str, &str)] = &[
    (
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "systemd-boot-efi",
    ),
    ("dpkg-deb", "dpkg"),
    // Copied into the initramfs to format evidence disks.
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.exfat", "exfatprogs"),
    // Links GRUB's BIOS core.img from the pinned grub-pc-bin modules (issue 6).
    ("grub-mkimage", "grub-common"),
];

/// What booting and checking the images needs.
pub const TEST: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    ("sgdisk", "gdisk"),
    ("fsck.vfat", "dosfstools"),
    ("objdump", "binutils"),
    ("zstd", "zstd"),
    ("losetup", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("blockdev", "util-linux"),
    ("sha256sum", "coreutils"),
    ("cpio", "cpio"),
    // Puts a rescue.run command file onto a copy of the boot medium.
    ("mcopy", "mtools"),
    // reinstall/restore: test keys and signatures, the installer ISO built at test time.
    ("gpg", "gnupg"),
    ("gpgconf", "gnupg"),
    ("xorriso", "xorriso"),
    ("apt-get", "apt"),
    ("socat", "socat"),
    ("openssl", "openssl"),
    // Independent checks of the hybrid ISO (issue 6).
    ("isoinfo", "genisoimage"),
    // Inventory fixtures (issue 19): MBR logical partitions, md superblocks, bcache.
    ("sfdisk", "fdisk"),
    ("mdadm", "mdadm"),
    ("make-bcache", "bcache-tools"),
    ("blkid", "util-linux"),
    // LVM/md fixtures, made in a QEMU guest with these tools copied in (tests::storage, issue 20).
    ("lvm", "lvm2"),
    ("mkfs.xfs", "xfsprogs"),
    ("busybox", "busybox"),
];
