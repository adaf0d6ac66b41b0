//! The evidence destination: mounting an unlocked device for the case (and moving the case log onto it),
//! noticing that it disappeared, and forgetting it so the case can go on.

use super::*;

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
