//! Scanning devices for md members and assembling a planned array read-only through the md ioctls of
//! `md_u.h`: a new `mdN` (`new_array` in sysfs), `SET_ARRAY_INFO` with only the superblock version
//! (the kernel then reads each member's superblock itself), `ADD_NEW_DISK` per member, and instead of
//! `RUN_ARRAY` the sysfs `array_state` set to `readonly`, which starts the array with `mddev->ro` set:
//! the kernel's md driver then writes no superblock, starts no resync and refuses writes. `STOP_ARRAY`
//! tears it down. Members are write-blocked (`BLKROSET`) before their superblocks are read.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ArrayPlan, MdError, Member, superblock};

const MD_MAJOR: u64 = 9;
const fn iow(nr: u64, size: u64) -> u64 {
    (1 << 30) | (size << 16) | (MD_MAJOR << 8) | nr
}
/// `_IOW(MD_MAJOR, 0x23, mdu_array_info_t)`: 18 ints.
const SET_ARRAY_INFO: u64 = iow(0x23, 72);
/// `_IOW(MD_MAJOR, 0x21, mdu_disk_info_t)`: 5 ints.
const ADD_NEW_DISK: u64 = iow(0x21, 20);
/// `_IO(MD_MAJOR, 0x32)`.
const STOP_ARRAY: u64 = (MD_MAJOR << 8) | 0x32;

#[repr(C)]
#[derive(Default)]
struct ArrayInfo {
    major_version: i32,
    minor_version: i32,
    rest: [i32; 16],
}

#[repr(C)]
#[derive(Default)]
struct DiskInfo {
    number: i32,
    major: i32,
    minor: i32,
    raid_disk: i32,
    state: i32,
}

fn kernel(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MdError {
    let what = what.into();
    move |source| MdError::Kernel { what, source }
}

/// Block devices worth scanning when none are named: disks, partitions, loop devices with a backing
/// file; not md (no md on md here), not device-mapper, ram or optical drives.
pub fn candidate_devices() -> Vec<PathBuf> {
    crate::blkro::all_block_names()
        .into_iter()
        .filter(|n| {
            !["md", "dm-", "ram", "zram", "sr", "fd", "nbd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .filter(|n| {
            fs::read_to_string(format!("/sys/class/block/{n}/size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|s| s > 0)
        })
        .map(|n| PathBuf::from("/dev").join(n))
        .collect()
}

/// Size in bytes of a block device or file through an open handle.
pub fn device_size(file: &fs::File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 into `size`, which lives for the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), 0x8008_1272, &mut size as *mut u64) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(size)
    } else {
        Ok(meta.len())
    }
}

/// Drops a whole disk whose superblock is really its last partition's: a 0.90 or 1.0 superblock at the
/// end of a partition that ends where the disk does is found through both (mdadm has the same ambiguity).
pub fn drop_shadowed_disks(members: Vec<Member>) -> Vec<Member> {
    let name = |m: &Member| crate::blkro::sysfs_name(&m.device).unwrap_or_default();
    let names: Vec<(String, String)> = members
        .iter()
        .map(|m| (name(m), m.superblock.array_uuid.clone()))
        .collect();
    members
        .into_iter()
        .filter(|m| {
            let parts = crate::blkro::partitions_of(&name(m));
            !names
                .iter()
                .any(|(n, uuid)| *uuid == m.superblock.array_uuid && parts.contains(n))
        })
        .collect()
}

/// The md array already holding `device` (its sysfs `holders`), if any.
pub fn held_by(device: &Path) -> Option<String> {
    let name = crate::blkro::sysfs_name(device).ok()?;
    fs::read_dir(format!("/sys/class/block/{name}/holders"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|h| h.starts_with("md"))
}

/// Write-blocks `device` (a block device named by the operator) and reads its md superblock; `Ok(None)`
/// when it has none.
pub fn read_member(device: &Path) -> Result<Option<Member>, MdError> {
    member(device, true)
}

/// Write-blocks `device`, its disk, partitions and holders.
fn protect(device: &Path) -> Result<(), MdError> {
    crate::blkro::protect_family(device)
        .map(drop)
        .map_err(|source| MdError::WriteBlock {
            device: device.display().to_string(),
            source,
        })
}

/// Reads the md superblock of `device` without write-blocking it: a scan of every block device looks
/// (reads cannot change a disk) and write-blocks only the members of an array it then assembles
/// ([`assemble`]). On a host a scan thus leaves no read-only flag on disks it merely looked at, which
/// would make the host's own `fdisk`, `mkfs` or LVM tools fail until the next reboot.
pub fn probe_member(device: &Path) -> Result<Option<Member>, MdError> {
    member(device, false)
}

/// The md superblock of `device`, write-blocked first with `protect`.
fn member(device: &Path, protect: bool) -> Result<Option<Member>, MdError> {
    let name = device.display().to_string();
    let meta = fs::metadata(device).map_err(|source| MdError::Read {
        device: name.clone(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(MdError::NotBlockDevice(name));
    }
    if protect {
        self::protect(device)?;
    }
    let file = fs::File::open(device).map_err(|source| MdError::Read {
        device: name.clone(),
        source,
    })?;
    let size = device_size(&file).map_err(|source| MdError::Read {
        device: name.clone(),
        source,
    })?;
    let rdev = meta.rdev();
    let dev = (libc::major(rdev), libc::minor(rdev));
    match superblock::probe(size, |off, buf| file.read_at(buf, off)) {
        Ok(sb) => Ok(Some(Member {
            device: device.to_owned(),
            dev,
            superblock: sb,
        })),
        Err(superblock::SuperblockError::NotFound) => Ok(None),
        Err(source) => Err(MdError::Superblock {
            device: name,
            source,
        }),
    }
}

fn load_modules(level: i32) -> Result<(), MdError> {
    let personality = match level {
        0 => "raid0",
        1 => "raid1",
        4..=6 => "raid456",
        10 => "raid10",
        -1 => "linear",
        _ => "md_mod",
    };
    if let Ok(mut c) = crate::coldplug::Coldplug::open(&crate::coldplug::modules_dir()) {
        let _ = c.load_module("md_mod");
        let _ = c.load_module(personality);
    }
    if !Path::new("/sys/module/md_mod").exists() {
        return Err(MdError::Kernel {
            what: "this kernel has no md driver (md_mod is neither built in nor loadable)".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Ok(())
}

/// The first free md unit from 127 down, as mdadm numbers arrays it assembles.
fn free_unit() -> Option<u32> {
    (0..=127u32)
        .rev()
        .find(|n| !Path::new(&format!("/sys/block/md{n}")).exists())
}

fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An array this module assembled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assembled {
    pub device: PathBuf,
    /// `/dev/md/NAME`, a symlink to `device`.
    pub link: Option<PathBuf>,
    pub name: String,
    pub level: i32,
    pub members: Vec<PathBuf>,
    pub missing_roles: Vec<u32>,
    /// `array_state` read back from sysfs after the start: `readonly`.
    pub array_state: String,
    pub size_bytes: u64,
}

/// Write-blocks every member of `plan`, then assembles it read-only; on any failure the half-made array
/// is stopped again.
pub fn assemble(plan: &ArrayPlan) -> Result<Assembled, MdError> {
    for m in &plan.members {
        protect(&m.device)?;
    }
    load_modules(plan.level)?;
    let unit = free_unit().ok_or_else(|| MdError::Kernel {
        what: "every md unit md0..md127 is taken".into(),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })?;
    let md = format!("md{unit}");
    fs::write("/sys/module/md_mod/parameters/new_array", &md)
        .map_err(kernel(format!("creating {md} (md_mod new_array)")))?;
    let dev = PathBuf::from("/dev").join(&md);
    if !wait_for(&dev) {
        // No devtmpfs node: make it ourselves.
        let rdev = libc::makedev(MD_MAJOR as u32, unit);
        nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            rdev,
        )
        .map_err(|e| kernel(format!("creating {}", dev.display()))(e.into()))?;
    }
    let file = fs::File::open(&dev).map_err(kernel(format!("opening {}", dev.display())))?;
    let result = start(plan, &md, &dev, &file);
    if result.is_err() {
        // SAFETY: STOP_ARRAY takes no argument.
        unsafe { libc::ioctl(file.as_raw_fd(), STOP_ARRAY as _) };
    }
    result
}

fn start(plan: &ArrayPlan, md: &str, dev: &Path, file: &fs::File) -> Result<Assembled, MdError> {
    let (major_version, minor_version) = plan.version.numbers();
    let info = ArrayInfo {
        major_version,
        minor_version,
        ..Default::default()
    };
    // SAFETY: SET_ARRAY_INFO reads one mdu_array_info_t (72 bytes) that lives for the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            SET_ARRAY_INFO as _,
            &info as *const ArrayInfo,
        )
    };
    if rc < 0 {
        return Err(kernel(format!("SET_ARRAY_INFO on {}", dev.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    for m in &plan.members {
        let disk = DiskInfo {
            major: m.dev.0 as i32,
            minor: m.dev.1 as i32,
            ..Default::default()
        };
        // SAFETY: ADD_NEW_DISK reads one mdu_disk_info_t (20 bytes) that lives for the call.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                ADD_NEW_DISK as _,
                &disk as *const DiskInfo,
            )
        };
        if rc < 0 {
            return Err(kernel(format!(
                "adding {} to {}",
                m.device.display(),
                dev.display()
            ))(std::io::Error::last_os_error()));
        }
    }
    let state_path = format!("/sys/block/{md}/md/array_state");
    fs::write(&state_path, "readonly").map_err(kernel(format!(
        "starting {} read-only ({state_path} = readonly)",
        dev.display()
    )))?;
    let state = fs::read_to_string(&state_path)
        .map_err(kernel(format!("reading {state_path}")))?
        .trim()
        .to_owned();
    if state != "readonly" {
        return Err(MdError::Kernel {
            what: format!(
                "{} started as {state:?}, not readonly; stopped it again",
                dev.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::Other),
        });
    }
    // The array itself is write-blocked like every disk.
    let _ = crate::blkro::set_read_only(dev, true);
    let size_bytes = device_size(file).unwrap_or(0);
    let link = Path::new("/dev/md").join(&plan.name);
    let link = (fs::create_dir_all("/dev/md").is_ok()
        && !link.exists()
        && std::os::unix::fs::symlink(format!("../{md}"), &link).is_ok())
    .then_some(link);
    Ok(Assembled {
        device: dev.to_owned(),
        link,
        name: plan.name.clone(),
        level: plan.level,
        members: plan.members.iter().map(|m| m.device.clone()).collect(),
        missing_roles: plan.missing_roles.clone(),
        array_state: state,
        size_bytes,
    })
}

/// One array `stop_all` stopped or could not stop.
#[derive(Debug, serde::Serialize)]
pub struct Stopped {
    pub device: PathBuf,
    /// `None` when stopped; else why not.
    pub error: Option<String>,
}

/// Stops every md array (the rescue system assembles none at boot, so every one is ours) and removes
/// its `/dev/md/NAME` link.
pub fn stop_all() -> Vec<Stopped> {
    let mut out = Vec::new();
    let units: Vec<String> = fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("md"))
        .collect();
    for md in units {
        let dev = PathBuf::from("/dev").join(&md);
        let error = match fs::File::open(&dev) {
            // SAFETY: STOP_ARRAY takes no argument.
            Ok(f) => match unsafe { libc::ioctl(f.as_raw_fd(), STOP_ARRAY as _) } {
                0 => None,
                _ => {
                    let e = std::io::Error::last_os_error();
                    Some(if e.raw_os_error() == Some(libc::EBUSY) {
                        "still in use (a mounted filesystem or an active LV on it?)".to_owned()
                    } else {
                        e.to_string()
                    })
                }
            },
            Err(e) => Some(format!("opening it: {e}")),
        };
        if error.is_none() {
            for l in fs::read_dir("/dev/md").into_iter().flatten().flatten() {
                if fs::read_link(l.path()).is_ok_and(|t| t.file_name() == Some(md.as_ref())) {
                    let _ = fs::remove_file(l.path());
                }
            }
        }
        out.push(Stopped { device: dev, error });
    }
    let _ = fs::remove_dir("/dev/md");
    out
}

/// Array lines of `/proc/mdstat` (`mdN : active …`), empty when no array is left.
pub fn mdstat_arrays() -> Vec<String> {
    fs::read_to_string("/proc/mdstat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("md"))
        .map(str::to_owned)
        .collect()
}
