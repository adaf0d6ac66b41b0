//! Case state shared by every console of the rescue system: the case identity, which disks were chosen
//! as sources, which one is the evidence destination; the interlocks that keep them apart; and where the
//! case log lives (RAM under `/run/rescue` until a destination is mounted, then `<dest>/<case>/`).
//!
//! State is a small JSON file under the state directory (`/run/rescue`, a tmpfs), guarded by a lock file,
//! so that every console process sees the same case. Never prints.

use std::fs;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::caselog::{self, CaseLog, Record};
use crate::{blkro, devices};

/// Where the evidence destination is mounted.
pub const EVIDENCE_MOUNT: &str = "/mnt/evidence";

/// Errors of case handling and the interlocks.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("reading or writing the case state in {path}")]
    AccessState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no case is open: start one with `case new ID --examiner NAME`")]
    NoCase,
    #[error("case {0} is already open")]
    CaseOpen(String),
    #[error(
        "a case id may use letters, digits, '-', '_' and '.' only, and not start with '.': {0:?}"
    )]
    RejectCaseId(String),
    #[error("looking up {path}")]
    DescribeDevice {
        path: PathBuf,
        #[source]
        source: devices::DevicesError,
    },
    #[error(
        "{device} has serial {serial}; type it (or its last 6 characters) after --confirm to unlock that disk"
    )]
    WrongSerial { device: String, serial: String },
    #[error(
        "{device} reports no serial number; confirm with its size in bytes instead: --confirm {size}"
    )]
    WrongSize { device: String, size: u64 },
    #[error(
        "{device} was chosen as a source in this case: an evidence destination can never be a source disk"
    )]
    RefuseSource { device: String },
    #[error("{device} is the rescue boot medium and cannot be an evidence destination")]
    RefuseBootMedium { device: String },
    #[error("{device} has mounted filesystems ({mounts}); unmount them first")]
    RefuseMounted { device: String, mounts: String },
    #[error("{device} is not unlocked: run `unlock {device} --confirm SERIAL` first")]
    NotUnlocked { device: String },
    #[error("changing the write-block of {device}")]
    SetWriteBlock {
        device: String,
        #[source]
        source: blkro::BlkRoError,
    },
    #[error("mounting {device} on {target} (tried {tried})")]
    MountDevice {
        device: String,
        target: String,
        tried: String,
    },
    #[error("an evidence destination is already mounted: {0}")]
    EvidenceMounted(String),
    #[error(transparent)]
    Log(#[from] caselog::CaseLogError),
}

/// The evidence destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub device: String,
    pub serial: Option<String>,
    pub mountpoint: String,
    pub fstype: String,
}

/// The case as every console sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub case_id: Option<String>,
    pub examiner: Option<String>,
    pub notes: Option<String>,
    pub opened_utc: Option<String>,
    pub opened_rtc: Option<String>,
    /// Whole disks (sysfs names) chosen as acquisition sources.
    pub sources: Vec<String>,
    /// Whole disks unlocked for writing.
    pub unlocked: Vec<String>,
    pub destination: Option<Destination>,
}

/// The directory holding the state, the lock and the RAM case log.
pub fn state_dir() -> PathBuf {
    std::env::var_os("RESCUE_STATE_DIR").map_or_else(|| PathBuf::from("/run/rescue"), PathBuf::from)
}

/// Devices the operator unlocked for writing (one sysfs name per line); init's sweeper leaves them alone.
pub fn unlocked_path() -> PathBuf {
    state_dir().join("unlocked")
}

/// The sysfs names listed in [`unlocked_path`].
pub fn unlocked_names() -> Vec<String> {
    fs::read_to_string(unlocked_path())
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn state_path() -> PathBuf {
    state_dir().join("case.json")
}

/// Holds the state lock while alive.
pub struct Locked {
    _lock: nix::fcntl::Flock<fs::File>,
    pub state: CaseState,
}

impl Locked {
    /// Takes the lock and reads the state (empty if none yet).
    pub fn open() -> Result<Self, CaseError> {
        let dir = state_dir();
        let access = |source| CaseError::AccessState {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(access)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("case.lock"))
            .map_err(access)?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| access(std::io::Error::from(e)))?;
        let state = match fs::read(state_path()) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| access(std::io::Error::other(e)))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CaseState::default(),
            Err(e) => return Err(access(e)),
        };
        Ok(Locked { _lock: lock, state })
    }

    pub fn save(&self) -> Result<(), CaseError> {
        let path = state_path();
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| CaseError::AccessState { path, source })
    }

    /// Where the case log lives now.
    pub fn log_path(&self) -> PathBuf {
        match (&self.state.destination, &self.state.case_id) {
            (Some(d), Some(case)) => Path::new(&d.mountpoint).join(case).join("case-log.jsonl"),
            _ => state_dir().join("case-log.jsonl"),
        }
    }

    /// Appends one entry to the case log (under the lock, so consoles never interleave a chain).
    pub fn log(
        &self,
        kind: &str,
        command: &str,
        detail: serde_json::Value,
    ) -> Result<caselog::Entry, CaseError> {
        let mut log = CaseLog::in_memory();
        log.attach(&self.log_path())?;
        Ok(log.append(Record {
            kind: kind.to_owned(),
            command: command.to_owned(),
            detail,
        })?)
    }
}

/// Checks a case id: it names a directory on the evidence disk.
pub fn check_case_id(id: &str) -> Result<(), CaseError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CaseError::RejectCaseId(id.to_owned()))
    }
}

/// Whether `typed` confirms `serial`: the whole serial or at least its last 6 characters, ignoring case
/// and surrounding spaces.
pub fn serial_confirms(serial: &str, typed: &str) -> bool {
    let (s, t) = (
        serial.trim().to_ascii_uppercase(),
        typed.trim().to_ascii_uppercase(),
    );
    !t.is_empty() && (s == t || (t.len() >= 6 && s.ends_with(&t)))
}

/// Whole disks holding the rescue system's own boot medium: a partition whose FAT volume label is the one
/// the builder writes (`RESCUE`).
pub fn boot_medium_disks() -> Vec<String> {
    let mut out = Vec::new();
    for disk in devices::list().unwrap_or_default() {
        let candidates = disk
            .partitions
            .iter()
            .map(|p| p.path.clone())
            .chain(std::iter::once(disk.path.clone()));
        for path in candidates {
            let mut sector = [0u8; 512];
            let read = fs::File::open(&path)
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut sector, 0));
            // FAT32 BPB: volume label at 0x47, filesystem type "FAT32   " at 0x52; or a rescue ISO
            // (a CD such as sr0, or the hybrid ISO written to a disk).
            let rescue_iso = crate::selfcheck::iso_volume_id(Path::new(&path))
                .is_some_and(|id| id.starts_with("RESCUE"));
            if rescue_iso
                || read.is_ok()
                    && &sector[0x52..0x5a] == b"FAT32   "
                    && &sector[0x47..0x52] == b"RESCUE     "
            {
                out.push(disk.name.clone());
                break;
            }
        }
    }
    out
}

/// Unlocks exactly one disk for writing after the operator confirmed its serial; the interlocks refuse
/// source disks, the boot medium and mounted disks. Returns the unlocked device names (disk and partitions).
pub fn unlock(locked: &mut Locked, dev: &Path, confirm: &str) -> Result<Vec<String>, CaseError> {
    let disk = devices::describe(dev).map_err(|source| CaseError::DescribeDevice {
        path: dev.to_owned(),
        source,
    })?;
    let device = disk.path.clone();
    if locked.state.sources.contains(&disk.name) {
        return Err(CaseError::RefuseSource { device });
    }
    if boot_medium_disks().contains(&disk.name) {
        return Err(CaseError::RefuseBootMedium { device });
    }
    match &disk.serial {
        Some(serial) if !serial_confirms(serial, confirm) => {
            return Err(CaseError::WrongSerial {
                device,
                serial: serial.clone(),
            });
        }
        None if confirm.trim() != disk.size_bytes.to_string() => {
            return Err(CaseError::WrongSize {
                device,
                size: disk.size_bytes,
            });
        }
        _ => {}
    }
    let mounts = blkro::family_mounts(Path::new(&device)).unwrap_or_default();
    if !mounts.is_empty() {
        let list = mounts
            .iter()
            .map(|m| format!("{} on {}", m.source, m.target))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CaseError::RefuseMounted {
            device,
            mounts: list,
        });
    }
    let mut names = vec![disk.name.clone()];
    names.extend(disk.partitions.iter().map(|p| p.name.clone()));
    // Tell init's sweeper first, so it does not write-block the disk again behind our back.
    let unlocked_file = unlocked_path();
    let mut current = unlocked_names();
    for n in &names {
        if !current.contains(n) {
            current.push(n.clone());
        }
    }
    fs::write(&unlocked_file, current.join("\n") + "\n").map_err(|source| {
        CaseError::AccessState {
            path: unlocked_file.clone(),
            source,
        }
    })?;
    for n in &names {
        let path = PathBuf::from("/dev").join(n);
        blkro::set_read_only(&path, false).map_err(|source| CaseError::SetWriteBlock {
            device: path.display().to_string(),
            source,
        })?;
    }
    if !locked.state.unlocked.contains(&disk.name) {
        locked.state.unlocked.push(disk.name.clone());
    }
    locked.save()?;
    Ok(names)
}

/// Records a disk as an acquisition source; refuses the evidence destination.
pub fn add_source(locked: &mut Locked, dev: &Path) -> Result<(), CaseError> {
    let meta = fs::metadata(dev).map_err(|source| CaseError::AccessState {
        path: dev.to_owned(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Ok(());
    }
    let disk = devices::describe(dev).map_err(|source| CaseError::DescribeDevice {
        path: dev.to_owned(),
        source,
    })?;
    if locked.state.unlocked.contains(&disk.name) {
        return Err(CaseError::RefuseSource { device: disk.path });
    }
    if !locked.state.sources.contains(&disk.name) {
        locked.state.sources.push(disk.name);
        locked.save()?;
    }
    Ok(())
}

/// Mounts an unlocked device (a partition, or a whole disk holding a filesystem) as the evidence
/// destination and moves the case log from RAM onto it.
pub fn mount_evidence(locked: &mut Locked, dev: &Path) -> Result<Destination, CaseError> {
    if let Some(d) = &locked.state.destination {
        return Err(CaseError::EvidenceMounted(d.device.clone()));
    }
    let case_id = locked.state.case_id.clone().ok_or(CaseError::NoCase)?;
    let disk = devices::describe(dev).map_err(|source| CaseError::DescribeDevice {
        path: dev.to_owned(),
        source,
    })?;
    let device = dev.display().to_string();
    if !locked.state.unlocked.contains(&disk.name) {
        return Err(CaseError::NotUnlocked { device: disk.path });
    }
    fs::create_dir_all(EVIDENCE_MOUNT).map_err(|source| CaseError::AccessState {
        path: EVIDENCE_MOUNT.into(),
        source,
    })?;
    let flags = nix::mount::MsFlags::MS_NOSUID
        | nix::mount::MsFlags::MS_NODEV
        | nix::mount::MsFlags::MS_NOEXEC;
    let tried = ["ext4", "exfat", "vfat"];
    let fstype = tried
        .iter()
        .find(|fs| {
            nix::mount::mount(Some(dev), EVIDENCE_MOUNT, Some(**fs), flags, None::<&str>).is_ok()
        })
        .ok_or_else(|| CaseError::MountDevice {
            device: device.clone(),
            target: EVIDENCE_MOUNT.into(),
            tried: tried.join(", "),
        })?;
    let dest = Destination {
        device,
        serial: disk.serial,
        mountpoint: EVIDENCE_MOUNT.to_owned(),
        fstype: (*fstype).to_owned(),
    };
    let case_dir = Path::new(EVIDENCE_MOUNT).join(&case_id);
    fs::create_dir_all(&case_dir).map_err(|source| CaseError::AccessState {
        path: case_dir.clone(),
        source,
    })?;
    // Move the RAM log: its entries are re-chained onto any log the case already has on this disk.
    let ram = state_dir().join("case-log.jsonl");
    let pending = fs::read(&ram).unwrap_or_default();
    let mut log = CaseLog::from_verified_lines(&pending).map_err(|source| {
        caselog::CaseLogError::BrokenChain {
            path: ram.clone(),
            source,
        }
    })?;
    log.attach(&case_dir.join("case-log.jsonl"))?;
    let _ = fs::remove_file(&ram);
    locked.state.destination = Some(dest.clone());
    locked.save()?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_confirmation_takes_the_whole_serial_or_its_last_six() {
        assert!(serial_confirms("WD-WCC4E1234567", "WD-WCC4E1234567"));
        assert!(serial_confirms("WD-WCC4E1234567", "234567"));
        assert!(serial_confirms("WD-WCC4E1234567", " wcc4e1234567 "));
        assert!(!serial_confirms("WD-WCC4E1234567", "4567"));
        assert!(!serial_confirms("WD-WCC4E1234567", "234568"));
        assert!(!serial_confirms("WD-WCC4E1234567", ""));
        assert!(serial_confirms("AB12", "ab12"));
        assert!(!serial_confirms("AB12", "B12"));
    }

    #[test]
    fn case_ids_name_safe_directories() {
        assert!(check_case_id("CASE-2026.11_7").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", "x\n"] {
            assert!(check_case_id(bad).is_err(), "{bad:?}");
        }
    }
}
