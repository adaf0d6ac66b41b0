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
    #[error(
        "{device} was unlocked for writing in this case (an evidence destination): a writable disk can never be an acquisition source"
    )]
    RefuseEvidenceAsSource { device: String },
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
    #[error(
        "no boot medium (a FAT32 filesystem labelled RESCUE, or an ISO 9660 volume RESCUE_*) was found"
    )]
    FindBootMedium,
    #[error("reading {path} from the boot medium {medium}")]
    ReadBootMediumFile {
        path: PathBuf,
        medium: String,
        #[source]
        source: crate::selfcheck::SelfCheckError,
    },
    #[error("an evidence destination is already mounted: {0}")]
    EvidenceMounted(String),
    #[error("{device} is the rescue boot medium and can never be a reinstall or restore target")]
    RefuseTargetBootMedium { device: String },
    #[error(
        "{device} is the evidence destination of this case and can never be a reinstall or restore target"
    )]
    RefuseTargetEvidence { device: String },
    #[error(
        "{device} holds evidence acquired into {dir} that is not verified yet: run `verify {dir}` first, or give a reason (--reason TEXT) to override"
    )]
    RefuseTargetUnverified { device: String, dir: String },
    #[error(
        "{device} was never acquired in this case: acquire and verify it first, or give a reason (--reason TEXT) to override"
    )]
    RefuseTargetNotAcquired { device: String },
    #[error(transparent)]
    Log(#[from] caselog::CaseLogError),
    /// A deploy/restore target refused by the target interlock.
    #[error("{device} cannot be a deploy or restore target: {why}")]
    RefuseTarget { device: String, why: String },
}

/// One acquisition of a source disk in this case, as the target interlock sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquisitionRecord {
    /// Whole disk (sysfs name) that was acquired.
    pub disk: String,
    /// The acquisition directory.
    pub dir: String,
    /// Every byte acquired and the manifest final (false: interrupted, resumable).
    pub complete: bool,
    /// `verify` recomputed every hash of this directory and they all matched.
    pub verified: bool,
}

/// A disk the target interlock cleared for reinstall or restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetClearance {
    /// The whole disk, e.g. `/dev/sda`.
    pub disk: String,
    /// The operator's reason when the interlock was overridden (logged in the case log).
    pub overridden: Option<String>,
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
    /// Every acquisition of a source disk in this case (for the reinstall/restore target interlock).
    #[serde(default)]
    pub acquisitions: Vec<AcquisitionRecord>,
    /// True time minus the system (RTC) clock in seconds, as the operator stated it when opening the case.
    #[serde(default)]
    pub clock_offset_seconds: Option<i64>,
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
            // A destination whose device disappeared cannot take entries: they wait in RAM and are
            // re-chained onto the case log when the disk is mounted again.
            (Some(d), Some(case)) if destination_present(d) => {
                Path::new(&d.mountpoint).join(case).join("case-log.jsonl")
            }
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

/// Seconds since the Unix epoch for a UTC time typed by the operator: `YYYY-MM-DD HH:MM[:SS]`, also with
/// `T` between date and time and a trailing `Z`.
pub fn parse_utc(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches(['Z', 'z']);
    let (date, time) = t.split_once([' ', 'T', 't'])?;
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.trim().split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&h.len()) {
        return None;
    }
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm) = (num(h[0])?, num(h[1])?);
    let ss = h.get(2).map_or(Some(0), |s| num(s))?;
    if !(1970..=9999).contains(&y) {
        return None;
    }
    // chrono refuses what the calendar does not have: February 29th of a common year, hour 24, second 60.
    let utc =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, day)?.and_hms_opt(hh, mm, ss)?;
    Some(utc.and_utc().timestamp())
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

/// Whole disks holding the rescue system's own boot medium, found by the self-check's rule
/// ([`crate::selfcheck::media`]: a FAT32 filesystem labelled `RESCUE`, or an ISO 9660 volume `RESCUE_*`).
pub fn boot_medium_disks() -> Vec<String> {
    crate::selfcheck::media()
        .into_iter()
        .map(|m| m.disk)
        .collect()
}

/// Reads a file from the boot medium (`rescue.run=`) without mounting it: `path` relative to the root of
/// its FAT filesystem (the ISO 9660 tree on a CD).
pub fn read_boot_medium_file(path: &Path) -> Result<Vec<u8>, CaseError> {
    let media = crate::selfcheck::media();
    let Some(medium) = crate::selfcheck::boot_medium(&media) else {
        return Err(CaseError::FindBootMedium);
    };
    let label = crate::selfcheck::load_record()
        .map(|(b, _)| b.fat_label)
        .unwrap_or_else(|_| "RESCUE".to_owned());
    let medium = crate::selfcheck::fat_of(&medium, &label).unwrap_or(medium);
    let inside = path.strip_prefix("/").unwrap_or(path);
    crate::selfcheck::read_file(&medium, &inside.to_string_lossy()).map_err(|source| {
        CaseError::ReadBootMediumFile {
            path: path.to_owned(),
            medium: medium.node.display().to_string(),
            source,
        }
    })
}

/// The part of unlocking shared by the evidence destination and a deploy/restore target: the typed serial
/// (or size) must match, nothing of the disk may be mounted; then init's sweeper is told (first, so it does
/// not write-block the disk again behind our back) and the disk and its partitions become writable.
fn confirm_and_write_enable(
    disk: &devices::BlockDevice,
    confirm: &str,
) -> Result<Vec<String>, CaseError> {
    confirm_disk(disk, confirm)?;
    let mut names = vec![disk.name.clone()];
    names.extend(disk.partitions.iter().map(|p| p.name.clone()));
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
    Ok(names)
}

/// The checks of [`confirm_and_write_enable`] before anything changes: the typed serial (or size), and
/// nothing of the disk mounted.
fn confirm_disk(disk: &devices::BlockDevice, confirm: &str) -> Result<(), CaseError> {
    let device = disk.path.clone();
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
    Ok(())
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
    refuse_layered_on_evidence(&locked.state, &disk)?;
    let names = confirm_and_write_enable(&disk, confirm)?;
    if !locked.state.unlocked.contains(&disk.name) {
        locked.state.unlocked.push(disk.name.clone());
    }
    locked.save()?;
    Ok(names)
}

/// Whether disk `name` (shown as `device`) may become an acquisition source: not a disk unlocked for
/// writing (the evidence destination).
pub fn source_interlock(state: &CaseState, name: &str, device: &str) -> Result<(), CaseError> {
    if state.unlocked.iter().any(|u| u == name) {
        return Err(CaseError::RefuseEvidenceAsSource {
            device: device.to_owned(),
        });
    }
    Ok(())
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
    source_interlock(&locked.state, &disk.name, &disk.path)?;
    if !locked.state.sources.contains(&disk.name) {
        locked.state.sources.push(disk.name);
        locked.save()?;
    }
    Ok(())
}

/// Records that `source` was acquired into `dir` (complete or resumable); a new acquisition into the same
/// directory replaces the old record and is unverified again.
pub fn record_acquired(
    locked: &mut Locked,
    source: &Path,
    dir: &Path,
    complete: bool,
) -> Result<(), CaseError> {
    let Ok(disk) = devices::describe(source) else {
        // A regular file is no disk: nothing to reinstall onto.
        return Ok(());
    };
    let dir = dir_key(dir);
    locked.state.acquisitions.retain(|a| a.dir != dir);
    locked.state.acquisitions.push(AcquisitionRecord {
        disk: disk.name,
        dir,
        complete,
        verified: false,
    });
    locked.save()
}

/// Records the verdict of `verify` on an acquisition directory of this case; returns whether the
/// directory belongs to one.
pub fn record_verified(locked: &mut Locked, dir: &Path, ok: bool) -> Result<bool, CaseError> {
    let dir = dir_key(dir);
    let mut found = false;
    for a in locked
        .state
        .acquisitions
        .iter_mut()
        .filter(|a| a.dir == dir)
    {
        a.verified = ok && a.complete;
        found = true;
    }
    if found {
        locked.save()?;
    }
    Ok(found)
}

/// The same directory spelled differently (`dir/`, `./dir`) must map to one record.
fn dir_key(dir: &Path) -> String {
    fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .display()
        .to_string()
}

/// The whole disk (sysfs name) a device path belongs to, or the path itself when it is no block device.
fn disk_name_of(path: &str) -> String {
    devices::describe(Path::new(path))
        .map(|d| d.name)
        .unwrap_or_else(|_| path.trim_start_matches("/dev/").to_owned())
}

/// Why a disk may or may not be overwritten by a reinstall or restore, from the case state alone.
fn target_decision(
    state: &CaseState,
    disk: &str,
    device: &str,
    boot_medium: bool,
    evidence_disk: Option<&str>,
    reason: Option<&str>,
) -> Result<Option<String>, CaseError> {
    let device = device.to_owned();
    if boot_medium {
        return Err(CaseError::RefuseTargetBootMedium { device });
    }
    if evidence_disk == Some(disk) || state.unlocked.iter().any(|u| u == disk) {
        return Err(CaseError::RefuseTargetEvidence { device });
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let mine: Vec<&AcquisitionRecord> = state
        .acquisitions
        .iter()
        .filter(|a| a.disk == disk)
        .collect();
    if mine.iter().any(|a| a.verified) {
        return Ok(None);
    }
    match (reason, mine.last()) {
        (Some(r), _) => Ok(Some(r.to_owned())),
        (None, Some(a)) => Err(CaseError::RefuseTargetUnverified {
            device,
            dir: a.dir.clone(),
        }),
        (None, None) => Err(CaseError::RefuseTargetNotAcquired { device }),
    }
}

/// Whether `path` is (part of) an acquisition image: a file in a directory whose `manifest.json` has
/// schema `rescue.acquisition/1` (or that holds an acquisition's resume checkpoint).
pub fn is_acquisition_image(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    let schema = |file: &str, want: &str| {
        fs::read(dir.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["schema"] == want)
    };
    schema(
        crate::acquire::manifest::MANIFEST_FILE,
        crate::acquire::manifest::SCHEMA,
    ) || schema(
        crate::acquire::checkpoint::CHECKPOINT_FILE,
        crate::acquire::checkpoint::CHECKPOINT_SCHEMA,
    )
}

/// Refuses a device stacked on case evidence (a loop, dm or md device): writing it would write into an
/// acquisition image, a source disk or the evidence destination beneath it, whatever reason is given.
fn refuse_layered_on_evidence(
    state: &CaseState,
    disk: &devices::BlockDevice,
) -> Result<(), CaseError> {
    let (lower, files) = blkro::lower_storage(&disk.name);
    let evidence = state.destination.as_ref().map(|d| disk_name_of(&d.device));
    layered_decision(state, evidence.as_deref(), &disk.path, &lower, &files)
}

fn layered_decision(
    state: &CaseState,
    evidence_disk: Option<&str>,
    device: &str,
    lower: &[String],
    files: &[PathBuf],
) -> Result<(), CaseError> {
    let refuse = |why: String| {
        Err(CaseError::RefuseTarget {
            device: device.to_owned(),
            why,
        })
    };
    if let Some(f) = files.iter().find(|f| is_acquisition_image(f)) {
        return refuse(format!(
            "it is a loop device over the acquisition image {}",
            f.display()
        ));
    }
    for d in lower {
        if state.sources.contains(d) {
            return refuse(format!("it is stacked on {d}, a source disk of this case"));
        }
        if evidence_disk == Some(d.as_str()) || state.unlocked.contains(d) {
            return refuse(format!(
                "it is stacked on {d}, the evidence destination of this case"
            ));
        }
    }
    Ok(())
}

/// The reinstall/restore interlock: whether `device` may be overwritten. Refuses the boot medium and the
/// evidence destination always; refuses a disk whose evidence was acquired but not verified, or that was
/// never acquired in this case, unless `reason` is given (non-empty). Every decision, and the reason of
/// an override, goes to the case log.
pub fn target_interlock(
    locked: &mut Locked,
    device: &Path,
    reason: Option<&str>,
) -> Result<TargetClearance, CaseError> {
    let disk = devices::describe(device).map_err(|source| CaseError::DescribeDevice {
        path: device.to_owned(),
        source,
    })?;
    let evidence_disk = locked
        .state
        .destination
        .as_ref()
        .map(|d| disk_name_of(&d.device));
    let boot = boot_medium_disks().contains(&disk.name);
    let command = format!("case target {}", device.display());
    let decision = refuse_layered_on_evidence(&locked.state, &disk).and_then(|()| {
        target_decision(
            &locked.state,
            &disk.name,
            &disk.path,
            boot,
            evidence_disk.as_deref(),
            reason,
        )
    });
    match decision {
        Ok(overridden) => {
            locked.log(
                "result",
                &command,
                serde_json::json!({"target": disk.path, "cleared": true, "override_reason": overridden}),
            )?;
            Ok(TargetClearance {
                disk: disk.path,
                overridden,
            })
        }
        Err(e) => {
            locked.log(
                "result",
                &command,
                serde_json::json!({"target": disk.path, "refused": e.to_string()}),
            )?;
            Err(e)
        }
    }
}

/// Whether the evidence destination's device still exists (a USB disk can be pulled mid-acquisition).
pub fn destination_present(d: &Destination) -> bool {
    Path::new(&d.device).exists()
}

/// When the evidence destination's device has disappeared: detaches its stale mount, forgets it (and
/// takes its disk off the unlocked list, so a disk that comes back is write-blocked until unlocked
/// again) and returns it. The case log continues in RAM until a destination is mounted again.
pub fn forget_lost_destination(locked: &mut Locked) -> Result<Option<Destination>, CaseError> {
    let Some(dest) = locked.state.destination.clone() else {
        return Ok(None);
    };
    if destination_present(&dest) {
        return Ok(None);
    }
    let _ = nix::mount::umount2(dest.mountpoint.as_str(), nix::mount::MntFlags::MNT_DETACH);
    let disk = blkro::whole_disk(dest.device.trim_start_matches("/dev/"));
    locked.state.destination = None;
    locked.state.unlocked.retain(|u| *u != disk);
    let family: Vec<String> = unlocked_names()
        .into_iter()
        .filter(|n| blkro::whole_disk(n) != disk)
        .collect();
    let file = unlocked_path();
    let text = if family.is_empty() {
        String::new()
    } else {
        family.join("\n") + "\n"
    };
    fs::write(&file, text).map_err(|source| CaseError::AccessState { path: file, source })?;
    locked.save()?;
    Ok(Some(dest))
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
    // vfat's default character set is the kernel's CONFIG_FAT_DEFAULT_IOCHARSET (Debian: "ascii", a
    // module the initramfs need not carry); name UTF-8, which exFAT uses too, explicitly.
    let options = |fs: &str| (fs == "vfat").then_some("iocharset=utf8");
    let fstype = tried
        .iter()
        .find(|fs| {
            nix::mount::mount(Some(dev), EVIDENCE_MOUNT, Some(**fs), flags, options(fs)).is_ok()
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
    // An inventory taken before the destination existed belongs in the case directory too.
    if let Ok(bytes) = fs::read(state_dir().join("inventory.json"))
        && !case_dir.join("inventory.json").exists()
    {
        crate::acquire::manifest::write_durable(&case_dir, "inventory.json", &bytes).map_err(
            |e| CaseError::AccessState {
                path: case_dir.join("inventory.json"),
                source: std::io::Error::other(e),
            },
        )?;
    }
    locked.state.destination = Some(dest.clone());
    locked.save()?;
    Ok(dest)
}

/// Makes a deploy or restore target writable (disk and partitions) after the operator confirmed its
/// serial, once [`target_interlock`] cleared it. Unlike [`unlock`] it does not make the disk an evidence
/// destination, and a source disk that was acquired may be cleared (that is what reinstalling means).
pub fn unlock_target(
    locked: &Locked,
    clearance: &TargetClearance,
    dev: &Path,
    confirm: &str,
) -> Result<Vec<String>, CaseError> {
    let disk = devices::describe(dev).map_err(|source| CaseError::DescribeDevice {
        path: dev.to_owned(),
        source,
    })?;
    let device = disk.path.clone();
    if disk.path != clearance.disk {
        return Err(CaseError::RefuseTarget {
            device,
            why: format!("the interlock cleared {}, not this disk", clearance.disk),
        });
    }
    let _ = locked;
    confirm_and_write_enable(&disk, confirm)
}

/// Everything [`unlock_target`] checks (the cleared disk, the typed serial, nothing mounted), without
/// making anything writable: a dry run refuses what the real run refuses.
pub fn confirm_target(
    clearance: &TargetClearance,
    dev: &Path,
    confirm: &str,
) -> Result<(), CaseError> {
    let disk = devices::describe(dev).map_err(|source| CaseError::DescribeDevice {
        path: dev.to_owned(),
        source,
    })?;
    if disk.path != clearance.disk {
        return Err(CaseError::RefuseTarget {
            device: disk.path,
            why: format!("the interlock cleared {}, not this disk", clearance.disk),
        });
    }
    confirm_disk(&disk, confirm)
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

    fn acquired(disk: &str, dir: &str, verified: bool) -> AcquisitionRecord {
        AcquisitionRecord {
            disk: disk.into(),
            dir: dir.into(),
            complete: true,
            verified,
        }
    }

    #[test]
    fn refusing_the_evidence_disk_as_a_source_says_what_is_true() {
        let state = CaseState {
            unlocked: vec!["sdb".into()],
            sources: vec!["sda".into()],
            ..CaseState::default()
        };
        let e = source_interlock(&state, "sdb", "/dev/sdb").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/dev/sdb was unlocked for writing in this case"),
            "{text}"
        );
        assert!(!text.contains("chosen as a source"), "it never was: {text}");
        assert!(source_interlock(&state, "sda", "/dev/sda").is_ok());
        assert!(source_interlock(&state, "sdc", "/dev/sdc").is_ok());
        // The other direction stays as it was: a source disk is never unlocked.
        let e = CaseError::RefuseSource {
            device: "/dev/sda".into(),
        };
        assert!(e.to_string().contains("/dev/sda was chosen as a source"));
    }

    #[test]
    fn target_interlock_wants_verified_evidence_or_a_reason() {
        let mut state = CaseState {
            unlocked: vec!["sdb".into()],
            acquisitions: vec![
                acquired("sda", "/mnt/evidence/C/disk-1", true),
                acquired("sdc", "/mnt/evidence/C/disk-2", false),
            ],
            ..CaseState::default()
        };
        let d = |s: &CaseState, disk: &str, boot, reason| {
            target_decision(s, disk, &format!("/dev/{disk}"), boot, Some("sdb"), reason)
        };
        assert_eq!(d(&state, "sda", false, None).unwrap(), None);
        assert!(matches!(
            d(&state, "sdc", false, None),
            Err(CaseError::RefuseTargetUnverified { ref dir, .. }) if dir == "/mnt/evidence/C/disk-2"
        ));
        assert!(matches!(
            d(&state, "sdc", false, Some("  ")),
            Err(CaseError::RefuseTargetUnverified { .. })
        ));
        assert_eq!(
            d(&state, "sdc", false, Some("copy is on tape")).unwrap(),
            Some("copy is on tape".to_owned())
        );
        assert!(matches!(
            d(&state, "sdd", false, None),
            Err(CaseError::RefuseTargetNotAcquired { .. })
        ));
        assert!(d(&state, "sdd", false, Some("spare disk")).is_ok());
        // The boot medium and the evidence destination: never, whatever the reason.
        assert!(matches!(
            d(&state, "sda", true, Some("x")),
            Err(CaseError::RefuseTargetBootMedium { .. })
        ));
        assert!(matches!(
            d(&state, "sdb", false, Some("x")),
            Err(CaseError::RefuseTargetEvidence { .. })
        ));
        state.unlocked.clear();
        assert!(matches!(
            target_decision(&state, "sdb", "/dev/sdb", false, Some("sdb"), Some("x")),
            Err(CaseError::RefuseTargetEvidence { .. })
        ));
        // A newer, unverified acquisition does not undo a verified one of the same disk.
        state
            .acquisitions
            .push(acquired("sda", "/mnt/evidence/C/disk-3", false));
        assert_eq!(d(&state, "sda", false, None).unwrap(), None);
    }

    #[test]
    fn devices_stacked_on_evidence_are_never_cleared() {
        let d = tempfile::tempdir().unwrap();
        let acq = d.path().join("disk-1");
        fs::create_dir_all(&acq).unwrap();
        fs::write(
            acq.join("manifest.json"),
            br#"{"schema":"rescue.acquisition/1"}"#,
        )
        .unwrap();
        let other = d.path().join("other");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("manifest.json"), br#"{"schema":"other/1"}"#).unwrap();
        assert!(is_acquisition_image(&acq.join("image.raw")));
        assert!(is_acquisition_image(&acq.join("image.raw.003")));
        assert!(!is_acquisition_image(&other.join("image.raw")));
        assert!(!is_acquisition_image(&d.path().join("golden.img")));

        let state = CaseState {
            sources: vec!["sda".into()],
            unlocked: vec!["sdb".into()],
            ..CaseState::default()
        };
        let decide = |lower: &[&str], files: &[PathBuf]| {
            let lower: Vec<String> = lower.iter().map(|s| (*s).to_owned()).collect();
            layered_decision(&state, Some("sdc"), "/dev/loop4", &lower, files)
        };
        let why = |r: Result<(), CaseError>| match r {
            Err(CaseError::RefuseTarget { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        assert!(why(decide(&["sdd"], &[acq.join("image.raw")])).contains("acquisition image"));
        assert!(why(decide(&["sda"], &[])).contains("source disk"));
        assert!(why(decide(&["sdb"], &[])).contains("evidence destination"));
        assert!(why(decide(&["sdc"], &[])).contains("evidence destination"));
        assert!(decide(&["sdd"], &[other.join("image.raw")]).is_ok());
        assert!(decide(&[], &[]).is_ok());
    }

    #[test]
    fn older_case_state_without_the_new_fields_still_loads() {
        let old = br#"{"case_id":"C","examiner":null,"notes":null,"opened_utc":null,"opened_rtc":null,"sources":["sda"],"unlocked":[],"destination":null}"#;
        let s: CaseState = serde_json::from_slice(old).unwrap();
        assert!(s.acquisitions.is_empty() && s.clock_offset_seconds.is_none());
    }

    #[test]
    fn typed_utc_times_parse() {
        assert_eq!(parse_utc("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_utc("2026-11-29 15:04:05"), Some(1_795_964_645));
        assert_eq!(parse_utc("2026-11-29T15:04:05Z"), Some(1_795_964_645));
        assert_eq!(parse_utc("2026-11-29 15:04"), Some(1_795_964_640));
        assert_eq!(parse_utc("2024-02-29 00:00:00"), Some(1_709_164_800));
        for bad in [
            "",
            "2026-11-29",
            "2023-02-29 00:00",
            "2026-13-01 00:00",
            "2026-11-29 24:00",
            "yesterday 10:00",
            "2026-11-29 10:-1",
            "2026-11-31 00:00",
            "2026-11-29 10:00:60",
            "1969-12-31 23:59:59",
            "+2026-11-29 10:00",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn case_ids_name_safe_directories() {
        assert!(check_case_id("CASE-2026.11_7").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", "x\n"] {
            assert!(check_case_id(bad).is_err(), "{bad:?}");
        }
    }
}
