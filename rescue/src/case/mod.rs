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

mod destination;
mod interlocks;

pub use self::destination::*;
pub use self::interlocks::*;

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

/// One `triage` run of this case: where its findings are, so that every later restore screens with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageRecord {
    /// What was examined (a disk, an image, an acquisition directory, a mounted root).
    pub source: String,
    /// The `findings.json` written.
    pub findings: String,
    /// Its SHA-256, as listed in the `SHA256SUMS` beside it.
    pub sha256: String,
    /// Findings by severity (`critical` … `info`).
    pub counts: std::collections::BTreeMap<String, usize>,
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
    /// Every triage run of this case (a restore inside the rescue system screens with their findings).
    #[serde(default)]
    pub triages: Vec<TriageRecord>,
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

/// Records a triage run; a new run writing the same findings file replaces the old record.
pub fn record_triage(locked: &mut Locked, mut record: TriageRecord) -> Result<(), CaseError> {
    record.findings = dir_key(Path::new(&record.findings));
    locked
        .state
        .triages
        .retain(|t| t.findings != record.findings);
    locked.state.triages.push(record);
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
        assert!(s.triages.is_empty());
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
