//! Software write-blocking of block devices with `BLKROSET`/`BLKROGET`, and the facts needed to decide
//! whether a device is safe to read as evidence: its family (disk, partitions, parent), its mounts, and
//! which disk a destination path lives on.
//!
//! This module only ever opens devices `O_RDONLY`; it never writes to a device.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors from write-block ioctls and sysfs lookups.
#[derive(Debug, thiserror::Error)]
pub enum BlkRoError {
    #[error("opening {path}")]
    OpenDevice {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a block device")]
    NotBlockDevice { path: PathBuf },
    #[error("reading the read-only flag of {path}")]
    GetReadOnly {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("setting the read-only flag of {path}")]
    SetReadOnly {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("finding {path} in sysfs")]
    ResolveSysfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the mount table")]
    ReadMounts(#[source] std::io::Error),
}

impl BlkRoError {
    /// The device could not be opened because nothing is there to read or write yet: a loop device
    /// with no backing file or one being torn down (ENXIO), a drive without a medium (ENOMEDIUM), a node
    /// gone since it was listed (ENOENT, ENODEV). Nobody can write to it either; the kernel announces
    /// the moment it gains a backing file or a medium with a "change" uevent, which write-blocks it then.
    pub fn nothing_to_block(&self) -> bool {
        matches!(self, BlkRoError::OpenDevice { source, .. }
        if matches!(
            source.raw_os_error(),
            Some(libc::ENXIO | libc::ENOMEDIUM | libc::ENOENT | libc::ENODEV)
        ))
    }
}

nix::ioctl_write_ptr_bad!(
    ioctl_blkroset,
    nix::request_code_none!(0x12, 93),
    libc::c_int
);
nix::ioctl_read_bad!(
    ioctl_blkroget,
    nix::request_code_none!(0x12, 94),
    libc::c_int
);

fn open_ro(dev: &Path) -> Result<fs::File, BlkRoError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dev)
        .map_err(|source| BlkRoError::OpenDevice {
            path: dev.to_owned(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| BlkRoError::OpenDevice {
        path: dev.to_owned(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(BlkRoError::NotBlockDevice {
            path: dev.to_owned(),
        });
    }
    Ok(file)
}

/// The kernel's read-only flag for this block device (`BLKROGET`).
pub fn is_read_only(dev: &Path) -> Result<bool, BlkRoError> {
    let file = open_ro(dev)?;
    let mut value: libc::c_int = 0;
    // SAFETY: BLKROGET writes one c_int through the pointer, which points at a live local.
    unsafe { ioctl_blkroget(file.as_raw_fd(), &mut value) }.map_err(|source| {
        BlkRoError::GetReadOnly {
            path: dev.to_owned(),
            source,
        }
    })?;
    Ok(value != 0)
}

/// Sets or clears the kernel's read-only flag (`BLKROSET`). Needs CAP_SYS_ADMIN.
pub fn set_read_only(dev: &Path, ro: bool) -> Result<(), BlkRoError> {
    let file = open_ro(dev)?;
    let value: libc::c_int = ro.into();
    // SAFETY: BLKROSET reads one c_int through the pointer, which points at a live local.
    unsafe { ioctl_blkroset(file.as_raw_fd(), &value) }.map_err(|source| {
        BlkRoError::SetReadOnly {
            path: dev.to_owned(),
            source,
        }
    })?;
    Ok(())
}

/// Clears the kernel's read-only flag (`BLKROSET` 0) through a handle already open on the device: for
/// a device this process attached and is about to release, so that no second open can name another.
pub fn clear_read_only_fd(file: &fs::File) -> nix::Result<()> {
    let value: libc::c_int = 0;
    // SAFETY: BLKROSET reads one c_int through the pointer, which points at a live local.
    unsafe { ioctl_blkroset(file.as_raw_fd(), &value) }.map(drop)
}

/// Read-only state of one member of a device family, before and after protection.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MemberState {
    pub path: String,
    pub read_only_before: bool,
    pub read_only_after: bool,
}

/// Read-only state of a disk, its partitions and the devices built on them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FamilyState {
    pub members: Vec<MemberState>,
}

impl FamilyState {
    /// True when every member reads back read-only from the kernel.
    pub fn all_read_only(&self) -> bool {
        self.members.iter().all(|m| m.read_only_after)
    }
}

/// The sysfs name (`sda`, `nvme0n1p2`) of a block device node.
pub fn sysfs_name(dev: &Path) -> Result<String, BlkRoError> {
    let meta = fs::metadata(dev).map_err(|source| BlkRoError::ResolveSysfs {
        path: dev.to_owned(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(BlkRoError::NotBlockDevice {
            path: dev.to_owned(),
        });
    }
    let rdev = meta.rdev();
    let link = format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev));
    let real = fs::canonicalize(&link).map_err(|source| BlkRoError::ResolveSysfs {
        path: dev.to_owned(),
        source,
    })?;
    real.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BlkRoError::NotBlockDevice {
            path: dev.to_owned(),
        })
}

/// The sysfs root the running system's lookups use; tests pass a fake tree to the `_in` functions.
const SYS: &str = "/sys";

/// Whole disk of a sysfs block name: itself for a disk, the parent for a partition.
pub fn whole_disk(name: &str) -> String {
    whole_disk_in(Path::new(SYS), name)
}

/// [`whole_disk`] under the sysfs root `sys`.
pub fn whole_disk_in(sys: &Path, name: &str) -> String {
    let class = sys.join("class/block").join(name);
    if class.join("partition").exists()
        && let Ok(real) = fs::canonicalize(&class)
        && let Some(parent) = real.parent().and_then(|p| p.file_name())
    {
        return parent.to_string_lossy().into_owned();
    }
    name.to_owned()
}

/// Partitions of a whole disk, by sysfs name, sorted.
pub fn partitions_of(disk: &str) -> Vec<String> {
    partitions_of_in(Path::new(SYS), disk)
}

/// [`partitions_of`] under the sysfs root `sys`.
pub fn partitions_of_in(sys: &Path, disk: &str) -> Vec<String> {
    let dir = sys.join("class/block").join(disk);
    let mut parts: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    parts
}

/// Devices built directly on `name` (`holders/`: device-mapper targets such as LVM volumes and LUKS
/// mappings, md arrays, bcache), sorted.
fn holders_in(sys: &Path, name: &str) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(sys.join("class/block").join(name).join("holders"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Sysfs names of the device's family: its whole disk first, then every partition of that disk, then
/// every device built on any of them, recursively (an LV on an md array on the partitions), with the
/// partitions of each.
pub fn family_names(dev: &Path) -> Result<Vec<String>, BlkRoError> {
    Ok(family_names_in(Path::new(SYS), &sysfs_name(dev)?))
}

/// [`family_names`] of the sysfs block name `name` under the sysfs root `sys`.
pub fn family_names_in(sys: &Path, name: &str) -> Vec<String> {
    let disk = whole_disk_in(sys, name);
    let mut names = vec![disk.clone()];
    names.extend(partitions_of_in(sys, &disk));
    // Breadth-first over holders; `names` doubles as the visited set, so a cycle in a broken or crafted
    // tree ends the walk.
    let mut i = 0;
    while i < names.len() {
        for holder in holders_in(sys, &names[i]) {
            if names.contains(&holder) {
                continue;
            }
            let parts = partitions_of_in(sys, &holder);
            names.push(holder);
            names.extend(
                parts
                    .into_iter()
                    .filter(|p| !names.contains(p))
                    .collect::<Vec<_>>(),
            );
        }
        i += 1;
    }
    names
}

/// Marks the device, its whole disk, every partition and every device built on them read-only, and reads
/// the flag back from the kernel.
pub fn protect_family(dev: &Path) -> Result<FamilyState, BlkRoError> {
    let mut members = Vec::new();
    for name in family_names(dev)? {
        let path = PathBuf::from("/dev").join(&name);
        let before = is_read_only(&path)?;
        if !before {
            set_read_only(&path, true)?;
        }
        let after = is_read_only(&path)?;
        members.push(MemberState {
            path: path.display().to_string(),
            read_only_before: before,
            read_only_after: after,
        });
    }
    Ok(FamilyState { members })
}

/// One line of the mount table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_write: bool,
    /// Device number "major:minor" of the mounted filesystem.
    pub device: String,
    /// Filesystem type (`ext4`, `tmpfs`, `fuse.sshfs`).
    pub fstype: String,
    /// The filesystem's own options (`rw,upperdir=…` of an overlay), after the source.
    pub options: String,
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let device = (*l.get(2)?).to_owned();
            let target = unescape_mount(l.get(4)?);
            let opts = l.get(5)?;
            let fstype = (*r.first()?).to_owned();
            let source = unescape_mount(r.get(1)?);
            let options = unescape_mount(r.get(2).copied().unwrap_or_default());
            let read_write = opts.split(',').any(|o| o == "rw");
            Some(Mount {
                source,
                target,
                read_write,
                device,
                fstype,
                options,
            })
        })
        .collect()
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts whose filesystem lives on the device or any member of its family (holders included: a mounted
/// LV or md array built on the disk counts).
pub fn family_mounts(dev: &Path) -> Result<Vec<Mount>, BlkRoError> {
    let names = family_names(dev)?;
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(BlkRoError::ReadMounts)?;
    Ok(mounts_of_in(Path::new(SYS), &names, &text))
}

/// The mounts in mountinfo `text` whose device is one of the sysfs block `names` under `sys`.
pub fn mounts_of_in(sys: &Path, names: &[String], text: &str) -> Vec<Mount> {
    let numbers: Vec<String> = names
        .iter()
        .filter_map(|n| fs::read_to_string(sys.join("class/block").join(n).join("dev")).ok())
        .map(|s| s.trim().to_owned())
        .collect();
    parse_mountinfo(text)
        .into_iter()
        .filter(|m| {
            numbers.contains(&m.device) || names.iter().any(|n| m.source == format!("/dev/{n}"))
        })
        .collect()
}

/// Sysfs names of the block devices (partition and whole disk) holding the filesystem that contains `path`.
/// Empty when the filesystem is not on a block device (tmpfs, proc, network).
pub fn backing_disks(path: &Path) -> Vec<String> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    let dev = meta.dev();
    let link = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let Ok(real) = fs::canonicalize(&link) else {
        return Vec::new();
    };
    let Some(name) = real.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let mut out = vec![name.clone()];
    // Stacked devices (dm, md, loop) name their lower devices under slaves/.
    let disk = whole_disk(&name);
    if disk != name {
        out.push(disk.clone());
    }
    for lower in fs::read_dir(real.join("slaves"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let lname = lower.file_name().to_string_lossy().into_owned();
        let ldisk = whole_disk(&lname);
        out.push(lname);
        out.push(ldisk);
    }
    // A loop device's backing file may itself sit on a disk.
    if let Ok(backing) = fs::read_to_string(real.join("loop/backing_file")) {
        out.extend(backing_disks(Path::new(backing.trim())));
    }
    out.sort();
    out.dedup();
    out
}

/// What a block device (sysfs name) is stacked on, all the way down: the whole disks beneath it
/// (`slaves/` of dm, md and loop devices, a loop device's backing device or the disks holding its
/// backing file) and every loop backing file met on the way.
pub fn lower_storage(name: &str) -> (Vec<String>, Vec<PathBuf>) {
    let (mut disks, mut files) = (Vec::new(), Vec::new());
    let mut todo = vec![name.to_owned()];
    let mut seen = Vec::new();
    while let Some(n) = todo.pop() {
        if seen.contains(&n) || seen.len() > 64 {
            continue;
        }
        seen.push(n.clone());
        let class = Path::new("/sys/class/block").join(&n);
        for lower in fs::read_dir(class.join("slaves"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let l = lower.file_name().to_string_lossy().into_owned();
            disks.push(whole_disk(&l));
            todo.push(l);
        }
        let Ok(backing) = fs::read_to_string(class.join("loop/backing_file")) else {
            continue;
        };
        let backing = PathBuf::from(backing.trim_end_matches('\n'));
        match sysfs_name(&backing) {
            // A loop over a block device.
            Ok(l) => {
                disks.push(whole_disk(&l));
                todo.push(l);
            }
            Err(_) => {
                disks.extend(backing_disks(&backing).iter().map(|d| whole_disk(d)));
                files.push(backing);
            }
        }
    }
    disks.sort();
    disks.dedup();
    (disks, files)
}

/// Every block device the kernel knows, by sysfs name (disks and partitions).
pub fn all_block_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Marks every block device read-only except those named in `skip`. Returns the names that could not be protected with the error.
pub fn protect_all(skip: &[String]) -> Vec<(String, BlkRoError)> {
    let mut failures = Vec::new();
    for name in all_block_names().into_iter().filter(|n| !skip.contains(n)) {
        let path = PathBuf::from("/dev").join(&name);
        let result = is_read_only(&path).and_then(|ro| {
            if ro {
                Ok(())
            } else {
                set_read_only(&path, true)
            }
        });
        if let Err(e) = result {
            failures.push((name, e));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parses_rw_flag_and_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 8:2 / /mnt/with\\040space ro,nosuid - vfat /dev/sda2 ro\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 2);
        assert!(mounts[0].read_write);
        assert_eq!(mounts[0].device, "8:1");
        assert_eq!(mounts[1].target, "/mnt/with space");
        assert!(!mounts[1].read_write);
        assert_eq!(
            (mounts[1].fstype.as_str(), mounts[1].options.as_str()),
            ("vfat", "ro")
        );
    }

    #[test]
    fn a_node_that_cannot_be_opened_has_nothing_to_block_but_a_refusal_is_reported() {
        let gone = set_read_only(Path::new("/dev/rescue-test-no-such-device"), true).unwrap_err();
        assert!(gone.nothing_to_block(), "{gone:?}");
        let not_block = is_read_only(Path::new("/dev/null")).unwrap_err();
        assert!(!not_block.nothing_to_block(), "{not_block:?}");
        let refused = BlkRoError::SetReadOnly {
            path: PathBuf::from("/dev/sda"),
            source: nix::Error::EACCES,
        };
        assert!(!refused.nothing_to_block());
    }

    #[test]
    fn non_block_device_is_refused() {
        let err = is_read_only(Path::new("/dev/null")).unwrap_err();
        assert!(matches!(err, BlkRoError::NotBlockDevice { .. }), "{err:?}");
    }

    /// A fake sysfs: `sda` with partitions `sda1`, `sda2`; `sda2` holds `md0`, which holds `dm-0`
    /// (an LV) and has a partition `md0p1`; `dm-0` names `sda` as a holder (a loop in a broken tree).
    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let dev = |rel: &str, number: &str| {
            let d = sys.join("devices").join(rel);
            fs::create_dir_all(d.join("holders")).unwrap();
            fs::write(d.join("dev"), format!("{number}\n")).unwrap();
            d
        };
        let link = |name: &str, rel: &str| {
            fs::create_dir_all(sys.join("class/block")).unwrap();
            std::os::unix::fs::symlink(
                sys.join("devices").join(rel),
                sys.join("class/block").join(name),
            )
            .unwrap();
        };
        dev("pci/block/sda", "8:0");
        for (p, n) in [("sda1", "8:1"), ("sda2", "8:2")] {
            let d = dev(&format!("pci/block/sda/{p}"), n);
            fs::write(d.join("partition"), "1\n").unwrap();
            link(p, &format!("pci/block/sda/{p}"));
        }
        link("sda", "pci/block/sda");
        dev("virtual/block/md0", "9:0");
        let p = dev("virtual/block/md0/md0p1", "259:0");
        fs::write(p.join("partition"), "1\n").unwrap();
        link("md0", "virtual/block/md0");
        link("md0p1", "virtual/block/md0/md0p1");
        dev("virtual/block/dm-0", "253:0");
        link("dm-0", "virtual/block/dm-0");
        dev("virtual/block/sdb", "8:16");
        link("sdb", "virtual/block/sdb");
        fs::write(sys.join("devices/pci/block/sda/sda2/holders/md0"), "").unwrap();
        fs::write(sys.join("devices/virtual/block/md0/holders/dm-0"), "").unwrap();
        fs::write(sys.join("devices/virtual/block/dm-0/holders/sda"), "").unwrap();
        root
    }

    #[test]
    fn the_family_follows_holders_recursively() {
        let root = fake_sysfs();
        let sys = root.path();
        assert_eq!(whole_disk_in(sys, "sda2"), "sda");
        assert_eq!(
            family_names_in(sys, "sda1"),
            ["sda", "sda1", "sda2", "md0", "md0p1", "dm-0"]
        );
        assert_eq!(family_names_in(sys, "sdb"), ["sdb"]);
    }

    #[test]
    fn a_mounted_volume_built_on_the_disk_is_a_mount_of_its_family() {
        let root = fake_sysfs();
        let sys = root.path();
        let text = "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n\
                    30 22 259:0 / /srv ro,relatime - xfs /dev/md0p1 ro\n\
                    31 22 8:16 / /mnt/other rw,relatime - ext4 /dev/sdb rw\n";
        let family = family_names_in(sys, "sda");
        let mounts = mounts_of_in(sys, &family, text);
        let targets: Vec<(&str, bool)> = mounts
            .iter()
            .map(|m| (m.target.as_str(), m.read_write))
            .collect();
        assert_eq!(targets, [("/", true), ("/srv", false)]);
        // Without the holders only the disk's own partitions count, and the LV on it is missed.
        let own: Vec<String> = ["sda", "sda1", "sda2"].map(str::to_owned).into();
        assert!(mounts_of_in(sys, &own, text).is_empty());
    }
}
