//! Inventory of block devices from sysfs: identity (model, serial, WWN), geometry, transport and the
//! kernel's read-only flag as read back with `BLKROGET`.
//!
//! Read-only: this module never opens a device for writing and never reads device contents.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blkro;

/// Errors while describing block devices.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("listing /sys/block")]
    ListBlockDevices(#[source] std::io::Error),
    #[error("looking up {path}")]
    ResolveDevice {
        path: PathBuf,
        #[source]
        source: blkro::BlkRoError,
    },
}

/// A partition of a [`BlockDevice`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub path: String,
    pub number: Option<u32>,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub read_only: bool,
}

/// A whole disk as the kernel sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub transport: String,
    pub removable: bool,
    pub read_only: bool,
    pub partitions: Vec<Partition>,
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let t = s.trim().trim_matches('\0').trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// A number from a sysfs attribute file.
pub(crate) fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// The kernel's read-only flag: `BLKROGET` on the node, falling back to sysfs `ro` when there is no node.
fn kernel_read_only(name: &str, sys: &Path) -> bool {
    match blkro::is_read_only(&Path::new("/dev").join(name)) {
        Ok(ro) => ro,
        Err(_) => read_u64(sys.join("ro")) == Some(1),
    }
}

/// Classifies how a disk is attached from its sysfs device path.
pub fn transport_from_sysfs_path(name: &str, real: &str) -> &'static str {
    if real.contains("/usb") {
        "usb"
    } else if name.starts_with("nvme") {
        "nvme"
    } else if name.starts_with("vd") || (real.contains("/virtio") && !real.contains("/host")) {
        "virtio"
    } else if real.contains("/virtio") {
        "virtio-scsi"
    } else if real.contains("/ata") {
        "sata"
    } else if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("dm-") || name.starts_with("md") {
        "virtual"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else if name.starts_with("sr") || name.starts_with("sd") {
        "scsi"
    } else {
        "unknown"
    }
}

/// Describes the whole disk `name` (a directory under `/sys/block`).
pub fn describe_name(name: &str) -> BlockDevice {
    let sys = Path::new("/sys/block").join(name);
    let real = fs::canonicalize(&sys)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let device = sys.join("device");
    // NVMe namespaces keep identity on the controller (device/), SCSI/ATA on device/, virtio-blk on the disk.
    let model = read_trimmed(device.join("model")).or_else(|| read_trimmed(sys.join("model")));
    let serial = read_trimmed(sys.join("serial"))
        .or_else(|| read_trimmed(device.join("serial")))
        .or_else(|| {
            fs::read(device.join("vpd_pg80"))
                .ok()
                .and_then(|b| serial_from_vpd80(&b))
        })
        .or_else(|| usb_serial(&real));
    let wwn = read_trimmed(sys.join("wwid"))
        .or_else(|| read_trimmed(device.join("wwid")))
        .or_else(|| read_trimmed(device.join("wwn")));
    let mut partitions: Vec<Partition> = blkro::partitions_of(name)
        .into_iter()
        .map(|p| {
            let psys = sys.join(&p);
            Partition {
                path: format!("/dev/{p}"),
                number: read_u64(psys.join("partition")).map(|n| n as u32),
                start_bytes: read_u64(psys.join("start")).unwrap_or(0) * 512,
                size_bytes: read_u64(psys.join("size")).unwrap_or(0) * 512,
                read_only: kernel_read_only(&p, &psys),
                name: p,
            }
        })
        .collect();
    partitions.sort_by_key(|p| (p.number, p.name.clone()));
    BlockDevice {
        path: format!("/dev/{name}"),
        size_bytes: read_u64(sys.join("size")).unwrap_or(0) * 512,
        logical_sector_size: read_u64(sys.join("queue/logical_block_size")).unwrap_or(512) as u32,
        physical_sector_size: read_u64(sys.join("queue/physical_block_size")).unwrap_or(512) as u32,
        model,
        serial,
        wwn,
        transport: transport_from_sysfs_path(name, &real).to_owned(),
        removable: read_u64(sys.join("removable")) == Some(1),
        read_only: kernel_read_only(name, &sys),
        partitions,
        name: name.to_owned(),
    }
}

/// The unit serial number from a SCSI VPD page 0x80 (4-byte header, then the ASCII serial).
pub fn serial_from_vpd80(page: &[u8]) -> Option<String> {
    let len = usize::from(u16::from_be_bytes([*page.get(2)?, *page.get(3)?]));
    let body = page.get(4..4 + len).or_else(|| page.get(4..))?;
    let text: String = String::from_utf8_lossy(body)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned();
    (!text.is_empty()).then_some(text)
}

/// The serial string of the USB device a disk hangs off (the ancestor with `idVendor`).
fn usb_serial(real_sysfs_path: &str) -> Option<String> {
    let mut dir = Path::new(real_sysfs_path);
    while let Some(parent) = dir.parent() {
        if parent.join("idVendor").is_file() {
            return read_trimmed(parent.join("serial"));
        }
        dir = parent;
    }
    None
}

/// Whether a disk is worth listing: RAM disks, zram and empty loop devices are not.
fn listed(name: &str) -> bool {
    if name.starts_with("ram") || name.starts_with("zram") {
        return false;
    }
    if name.starts_with("loop") {
        return read_u64(Path::new("/sys/block").join(name).join("size")).unwrap_or(0) > 0;
    }
    true
}

/// Every whole disk, sorted by name.
pub fn list() -> Result<Vec<BlockDevice>, DevicesError> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .map_err(DevicesError::ListBlockDevices)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| listed(n))
        .collect();
    names.sort();
    Ok(names.iter().map(|n| describe_name(n)).collect())
}

/// Describes the disk holding a device node (`/dev/sda` or `/dev/sda1` → the disk `sda`).
pub fn describe(dev: &Path) -> Result<BlockDevice, DevicesError> {
    let name = blkro::sysfs_name(dev).map_err(|source| DevicesError::ResolveDevice {
        path: dev.to_owned(),
        source,
    })?;
    Ok(describe_name(&blkro::whole_disk(&name)))
}

/// Human-readable size with binary units, e.g. `256.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_classified_from_sysfs_paths() {
        let cases = [
            (
                "vda",
                "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda",
                "virtio",
            ),
            (
                "sda",
                "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
                "sata",
            ),
            (
                "nvme0n1",
                "/sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1",
                "nvme",
            ),
            (
                "sdb",
                "/sys/devices/pci0000:00/0000:00:06.0/usb2/2-1/2-1:1.0/host3/target3:0:0/3:0:0:0/block/sdb",
                "usb",
            ),
            (
                "sdc",
                "/sys/devices/pci0000:00/0000:00:07.0/virtio2/host4/target4:0:0/4:0:0:0/block/sdc",
                "virtio-scsi",
            ),
            ("loop0", "/sys/devices/virtual/block/loop0", "loop"),
        ];
        for (name, path, want) in cases {
            assert_eq!(transport_from_sysfs_path(name, path), want, "{name}");
        }
    }

    #[test]
    fn vpd_page_80_gives_the_serial() {
        let mut page = vec![0x00, 0x80, 0x00, 0x0a];
        page.extend_from_slice(b"  SER1SATA");
        assert_eq!(serial_from_vpd80(&page).as_deref(), Some("SER1SATA"));
        assert_eq!(serial_from_vpd80(&[0, 0x80, 0, 0]), None);
        assert_eq!(serial_from_vpd80(&[0]), None);
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(256 << 20), "256.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
