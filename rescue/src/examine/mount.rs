//! The one place that decides how a suspect filesystem is mounted: read-only, without journal or log
//! replay, and `nodev,nosuid,noexec` (so nothing on it can be run or used as a device node), from the
//! device itself (write-blocked by the caller) or from a read-only loop device over an image file or a
//! byte range of one. Triage, timeline and restore all mount through [`mount_readonly`].
//!
//! Per filesystem: ext2/3/4 `noload` (no journal replay; the ext4 driver serves all three) with
//! `inode_readahead_blks=4096` (a walk that stats every file reads each group's inode table in one
//! request instead of one per 32 blocks: the body file of 200 000 files went from ~13 s to ~5 s on a
//! loaded machine; refused options fall back to plain `noload`), XFS
//! `norecovery,nouuid` (no log recovery; a copy of a mounted filesystem still mounts), btrfs
//! `rescue=nologreplay` (the kernel's older spelling `nologreplay` where the newer is refused),
//! vfat, exfat and iso9660 with no extra option.
//!
//! Never: mount writable, mount without the four flags, or leave a loop device or mount point behind
//! (both are released when [`Mounted`] or [`LoopDevice`] is dropped).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::MsFlags;

/// Errors attaching a loop device or mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("attaching {path} to a read-only loop device")]
    AttachLoop {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the mount point {path}")]
    CreateMountpoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no filesystem on {device} could be mounted read-only (tried {tried})")]
    MountFilesystem { device: PathBuf, tried: String },
}

/// The flags every examination mount carries, whatever the filesystem.
pub const FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NOEXEC);

/// The filesystems we mount, in the order they are tried when the signature does not name one.
pub const FILESYSTEMS: [&str; 6] = ["ext4", "iso9660", "xfs", "btrfs", "vfat", "exfat"];

/// The kernel filesystem type for a signature from [`crate::inventory::signature`] (`ext2/3` is
/// mounted by the ext4 driver); `None` for one we do not mount (swap, LUKS, NTFS, LVM, ...).
pub fn kernel_type(signature: &str) -> Option<&'static str> {
    match signature {
        "ext4" | "ext2/3" => Some("ext4"),
        "xfs" => Some("xfs"),
        "btrfs" => Some("btrfs"),
        "vfat" => Some("vfat"),
        "exfat" => Some("exfat"),
        "iso9660" => Some("iso9660"),
        _ => None,
    }
}

/// The mount data for a read-only mount of `fstype` without replay, best first: later entries are the
/// kernel's older spellings, tried when the first is refused. `""`: no option.
pub fn data_for(fstype: &str) -> &'static [&'static str] {
    match fstype {
        "ext4" | "ext3" | "ext2" => &["noload,inode_readahead_blks=4096", "noload"],
        "xfs" => &["norecovery,nouuid"],
        "btrfs" => &["rescue=nologreplay", "nologreplay"],
        _ => &[""],
    }
}

/// The options of a mount as `mount(8)` would show them: `ro,nodev,nosuid,noexec[,data]`.
pub fn describe_options(data: &str) -> String {
    let mut s = "ro,nodev,nosuid,noexec".to_owned();
    if !data.is_empty() {
        s.push(',');
        s.push_str(data);
    }
    s
}

/// A loop device attached read-only (with autoclear) to a file or a byte range of it; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    file: fs::File,
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // A write-block of this device while it was ours (`BLKROSET`, e.g. by a scan of every block
        // device for md or LVM members) outlives the detach: whoever attaches the same /dev/loopN next
        // would get a read-only device. Clear it first; until LOOP_CLR_FD the device stays read-only
        // through its own LO_FLAGS_READ_ONLY, and the mount (if any) is already gone.
        let _ = crate::blkro::clear_read_only_fd(&self.file);
        // SAFETY: LOOP_CLR_FD on the loop device we configured; autoclear would also release it once
        // the last user is gone.
        unsafe { libc::ioctl(self.file.as_raw_fd(), LOOP_CLR_FD) };
    }
}

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

fn ensure_module(name: &str) {
    if let Ok(mut c) = crate::coldplug::Coldplug::open(&crate::coldplug::modules_dir()) {
        let _ = c.load_module(name);
    }
}

/// Attaches an image file (or a disk) to a free loop device, read-only; `range` (offset, size in bytes)
/// limits it to one partition.
pub fn attach_loop(image: &Path, range: Option<(u64, u64)>) -> Result<LoopDevice, MountError> {
    let err = |source| MountError::AttachLoop {
        path: image.to_owned(),
        source,
    };
    if !Path::new("/dev/loop-control").exists() {
        ensure_module("loop");
    }
    let backing = fs::File::open(image).map_err(err)?;
    let ctl = fs::File::open("/dev/loop-control").map_err(err)?;
    // Another process may take the free device between the two calls: LOOP_CONFIGURE then fails with
    // EBUSY and we ask again.
    let mut last = None;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a loop number or -1.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let file = open_when_present(&path).map_err(err)?;
        // SAFETY: zero is a valid bit pattern for this plain-data struct.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        if let Some((offset, size)) = range {
            cfg.info.lo_offset = offset;
            cfg.info.lo_sizelimit = size;
        }
        // SAFETY: LOOP_CONFIGURE reads a struct loop_config we own for the duration of the call.
        let rc =
            unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if rc == 0 {
            return Ok(LoopDevice { path, file });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(err(e));
        }
        last = Some(e);
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::from_raw_os_error(libc::EBUSY)
    })))
}

/// Opens a loop device node read-only, waiting up to 5 s for devtmpfs to create it.
fn open_when_present(path: &Path) -> std::io::Result<fs::File> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match fs::OpenOptions::new().read(true).open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::time::Instant::now() > deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} did not appear", path.display()),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A filesystem mounted read-only; unmounted (and its loop device detached) when dropped.
#[derive(Debug)]
pub struct Mounted {
    pub mountpoint: PathBuf,
    /// The device mounted: the source itself or the loop device over it.
    pub device: PathBuf,
    /// The kernel filesystem type that mounted.
    pub fstype: String,
    /// The mount options, as `mount(8)` shows them (`ro,nodev,nosuid,noexec,noload`).
    pub options: String,
    loop_dev: Option<LoopDevice>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.mountpoint);
        // The loop device (if any) is detached after the unmount by its own Drop.
        self.loop_dev.take();
    }
}

/// Mounts `device` read-only on a new directory `mount_base/LABEL-PID-N`. `signature` (from
/// [`crate::inventory::signature`]) picks the filesystem to try first; the others follow, each with its
/// options from [`data_for`]. `loop_dev` (the loop device `device` is) is kept attached while mounted and
/// detached on failure.
pub fn mount_readonly(
    device: &Path,
    loop_dev: Option<LoopDevice>,
    signature: Option<&str>,
    mount_base: &Path,
    label: &str,
) -> Result<Mounted, MountError> {
    // One process may hold several (every partition of a disk; a restore source and a dry run's target).
    static MOUNTS: AtomicU32 = AtomicU32::new(0);
    let n = MOUNTS.fetch_add(1, Ordering::Relaxed);
    let mountpoint = mount_base.join(format!("{label}-{}-{n}", std::process::id()));
    fs::create_dir_all(&mountpoint).map_err(|source| MountError::CreateMountpoint {
        path: mountpoint.clone(),
        source,
    })?;
    let first = signature.and_then(kernel_type);
    let order = first
        .into_iter()
        .chain(FILESYSTEMS.into_iter().filter(|t| Some(*t) != first));
    let mut tried = Vec::new();
    for fstype in order {
        for data in data_for(fstype) {
            let d = (!data.is_empty()).then_some(*data);
            if nix::mount::mount(Some(device), &mountpoint, Some(fstype), FLAGS, d).is_ok() {
                return Ok(Mounted {
                    mountpoint,
                    device: device.to_owned(),
                    fstype: fstype.to_owned(),
                    options: describe_options(data),
                    loop_dev,
                });
            }
            tried.push(if data.is_empty() {
                fstype.to_owned()
            } else {
                format!("{fstype} ({data})")
            });
        }
    }
    let _ = fs::remove_dir(&mountpoint);
    drop(loop_dev);
    Err(MountError::MountFilesystem {
        device: device.to_owned(),
        tried: tried.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filesystem_is_mounted_without_replay_and_with_the_four_flags() {
        assert!(FLAGS.contains(MsFlags::MS_RDONLY));
        assert!(FLAGS.contains(MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
        assert_eq!(
            data_for("ext4"),
            ["noload,inode_readahead_blks=4096", "noload"]
        );
        assert_eq!(data_for("xfs"), ["norecovery,nouuid"]);
        assert_eq!(data_for("btrfs"), ["rescue=nologreplay", "nologreplay"]);
        for plain in ["vfat", "exfat", "iso9660"] {
            assert_eq!(data_for(plain), [""]);
        }
        assert_eq!(describe_options("noload"), "ro,nodev,nosuid,noexec,noload");
        assert_eq!(describe_options(""), "ro,nodev,nosuid,noexec");
    }

    /// A loop device rescue attached and that got write-blocked (`BLKROSET`) while attached comes back
    /// writable for the next user: the flag, which outlives LOOP_CLR_FD, is cleared on detach.
    #[test]
    fn a_detached_loop_device_attaches_writable_again() {
        if !crate::testing::can_attach_loop_devices() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk.img");
        fs::File::create(&img).unwrap().set_len(4 << 20).unwrap();
        let lo = attach_loop(&img, None).unwrap();
        let dev = lo.path.clone();
        crate::blkro::set_read_only(&dev, true).unwrap();
        assert!(crate::blkro::is_read_only(&dev).unwrap());
        drop(lo);
        // Attach the same node again the way anyone would (util-linux, writable) and ask the kernel.
        let out = std::process::Command::new("losetup")
            .arg("--show")
            .arg(&dev)
            .arg(&img)
            .output()
            .unwrap();
        let ro = crate::blkro::is_read_only(&dev);
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&dev)
            .output();
        assert!(out.status.success(), "losetup {}: {out:?}", dev.display());
        assert!(
            !ro.unwrap(),
            "{} came back read-only after rescue detached it",
            dev.display()
        );
    }

    #[test]
    fn signatures_map_to_the_driver_that_mounts_them_and_others_to_none() {
        assert_eq!(kernel_type("ext2/3"), Some("ext4"));
        assert_eq!(kernel_type("xfs"), Some("xfs"));
        for never in ["swap", "luks", "BitLocker", "ntfs", "lvm2", "squashfs"] {
            assert_eq!(kernel_type(never), None, "{never}");
        }
        for fs in FILESYSTEMS {
            assert!(!data_for(fs).is_empty());
        }
    }
}
