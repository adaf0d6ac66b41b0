//! The interlocks that keep sources, the evidence destination, the boot medium and deploy/restore
//! targets apart: unlocking a disk for writing (serial typed again, nothing mounted), choosing a source,
//! clearing a target (acquired and verified, or an override with a reason; never a device stacked on
//! evidence).

use super::*;

/// The part of unlocking shared by the evidence destination and a deploy/restore target: the typed serial
/// (or size) must match, nothing of the disk may be mounted; then init's sweeper is told (first, so it does
/// not write-block the disk again behind our back) and the disk and its partitions become writable.
pub(super) fn confirm_and_write_enable(
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
pub(super) fn confirm_disk(disk: &devices::BlockDevice, confirm: &str) -> Result<(), CaseError> {
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

/// Why a disk may or may not be overwritten by a reinstall or restore, from the case state alone.
pub(super) fn target_decision(
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
pub(super) fn refuse_layered_on_evidence(
    state: &CaseState,
    disk: &devices::BlockDevice,
) -> Result<(), CaseError> {
    let (lower, files) = blkro::lower_storage(&disk.name);
    let evidence = state.destination.as_ref().map(|d| disk_name_of(&d.device));
    layered_decision(state, evidence.as_deref(), &disk.path, &lower, &files)
}

pub(super) fn layered_decision(
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
