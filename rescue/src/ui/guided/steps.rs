//! The steps of guided mode: the questions each step asks and the line-mode commands it then runs.

use super::*;

pub(super) fn step_case(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    if s.case_id.is_some() {
        say!("a case is open:");
        run(ask, &["case", "show"]);
        return Ok(());
    }
    let id = loop {
        let Some(id) = ask.input("Case id (letters, digits, - _ .)", None)? else {
            return Ok(());
        };
        match case::check_case_id(&id) {
            Ok(()) => break id,
            Err(e) => say!("{e}"),
        }
    };
    let Some(examiner) = ask.input("Examiner", None)? else {
        return Ok(());
    };
    let Some(notes) = ask.input("Notes (optional)", Some(""))? else {
        return Ok(());
    };
    let clock = crate::acquire::manifest::now_rfc3339();
    say!(
        "this machine's clock (RTC) says {clock} (RTC device: {})",
        crate::caselog::rtc_now().unwrap_or_else(|| "unreadable".into())
    );
    let true_time = loop {
        let Some(t) = ask.input(
            "True UTC time now, YYYY-MM-DD HH:MM:SS (Enter: the clock is right)",
            Some(""),
        )?
        else {
            return Ok(());
        };
        if t.is_empty() || case::parse_utc(&t).is_some() {
            break t;
        }
        say!("not a time: {t:?}; e.g. 2026-11-29 15:04:05");
    };
    let mut words = vec!["case", "new", id.as_str()];
    if !examiner.is_empty() {
        words.extend(["--examiner", examiner.as_str()]);
    }
    if !notes.is_empty() {
        words.extend(["--notes", notes.as_str()]);
    }
    if !true_time.is_empty() {
        words.extend(["--true-time", true_time.as_str()]);
    }
    run(ask, &words);
    Ok(())
}

pub(super) fn step_evidence(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    if s.case_id.is_none() {
        say!("open a case first (step 1): the case log and the case directory need its id");
        return Ok(());
    }
    if let Some(d) = &s.destination {
        say!(
            "the evidence destination is {} ({}) on {}",
            d.device,
            d.fstype,
            d.mountpoint
        );
        return Ok(());
    }
    let boot = case::boot_medium_disks();
    let disks: Vec<BlockDevice> = devices::list()?
        .into_iter()
        .filter(|d| !boot.contains(&d.name) && !s.sources.contains(&d.name))
        .collect();
    if disks.is_empty() {
        say!(
            "no disk can be the destination (boot medium and source disks are never offered); attach one and try again"
        );
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(i) = ask.select("Evidence destination disk", &items)? else {
        return Ok(());
    };
    let disk = &disks[i];
    say!("chosen: {}", disk_line(disk));
    for p in &disk.partitions {
        say!(
            "  partition {:<10} {:>10}",
            p.name,
            devices::human_size(p.size_bytes)
        );
    }
    let confirm_what = if disk.serial.is_some() {
        "serial (or its last 6 characters)"
    } else {
        "size in bytes (it reports no serial)"
    };
    if !s.unlocked.contains(&disk.name) {
        let Some(typed) = ask.input(
            &format!(
                "Type the {confirm_what} of {} to make it writable",
                disk.path
            ),
            None,
        )?
        else {
            return Ok(());
        };
        if run(ask, &["unlock", &disk.path, "--confirm", &typed]) != 0 {
            say!("{} stays write-blocked", disk.path);
            return Ok(());
        }
    }
    let actions = [
        "Mount the filesystem it already has".to_owned(),
        "Format it as ext4 (ERASES it), then mount".to_owned(),
        "Format it as exFAT (ERASES it), then mount".to_owned(),
    ];
    let Some(action) = ask.select("What to do with it", &actions)? else {
        return Ok(());
    };
    // A disk with partitions: mount or format one of them, or the whole disk.
    let target = if !disk.partitions.is_empty() {
        let mut items: Vec<String> = disk
            .partitions
            .iter()
            .map(|p| format!("{} ({})", p.path, devices::human_size(p.size_bytes)))
            .collect();
        items.push(format!("{} (whole disk)", disk.path));
        let which = if action == 0 {
            "Which filesystem"
        } else {
            "Format which"
        };
        let Some(j) = ask.select(which, &items)? else {
            return Ok(());
        };
        disk.partitions
            .get(j)
            .map_or_else(|| disk.path.clone(), |p| p.path.clone())
    } else {
        disk.path.clone()
    };
    if action > 0 {
        let fs = if action == 1 { "ext4" } else { "exfat" };
        let Some(typed) = ask.input(
            &format!(
                "Formatting ERASES everything on {}. Type its {confirm_what} again",
                disk.path
            ),
            None,
        )?
        else {
            return Ok(());
        };
        if run(ask, &["format", &target, "--fs", fs, "--confirm", &typed]) != 0 {
            return Ok(());
        }
    }
    run(ask, &["mount-evidence", &target]);
    Ok(())
}

pub(super) fn step_acquire(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    let (Some(case_id), Some(dest)) = (&s.case_id, &s.destination) else {
        say!("open a case (step 1) and mount an evidence destination (step 3) first");
        return Ok(());
    };
    let boot = case::boot_medium_disks();
    let disks: Vec<BlockDevice> = devices::list()?
        .into_iter()
        .filter(|d| !boot.contains(&d.name) && !s.unlocked.contains(&d.name))
        .collect();
    if disks.is_empty() {
        say!("no disk to acquire (the boot medium and the evidence disk are never offered)");
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(chosen) = ask.multi("Disks to acquire", &items)? else {
        return Ok(());
    };
    if chosen.is_empty() {
        say!("nothing chosen");
        return Ok(());
    }
    let case_dir = Path::new(&dest.mountpoint).join(case_id);
    for i in chosen {
        let disk = &disks[i];
        let default_id = disk.name.clone();
        let evidence_id = loop {
            let Some(e) =
                ask.input(&format!("Evidence id for {}", disk.path), Some(&default_id))?
            else {
                return Ok(());
            };
            match case::check_case_id(&e) {
                Ok(()) => break e,
                Err(_) => say!("an evidence id names a directory: letters, digits, - _ ."),
            }
        };
        let dir: PathBuf = case_dir.join(&evidence_id);
        let dir_s = dir.display().to_string();
        let mut words = vec![
            "acquire",
            disk.path.as_str(),
            "--out",
            dir_s.as_str(),
            "--evidence-id",
            evidence_id.as_str(),
        ];
        if dir.join(".resume.json").exists() {
            say!("{dir_s} holds an interrupted acquisition: continuing it");
            words.push("--resume");
        }
        let code = run(ask, &words);
        if code != 0 && code != crate::ui::acquire::EXIT_UNREADABLE {
            say!(
                "{} is not completely acquired (exit status {code}); choose step 4 again to continue it",
                disk.path
            );
            continue;
        }
        let verdict = run(ask, &["verify", &dir_s]);
        say!(
            "{}: {}",
            disk.path,
            if verdict == 0 {
                "acquired and verified"
            } else {
                "acquired, but VERIFICATION FAILED"
            }
        );
    }
    Ok(())
}

pub(super) fn step_target(ask: &Ask, what: &str) -> anyhow::Result<()> {
    let disks = devices::list()?;
    if disks.is_empty() {
        say!("no disks");
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(i) = ask.select(&format!("Disk to {what}"), &items)? else {
        return Ok(());
    };
    let disk = &disks[i];
    let mut reason = None;
    let mut code = run(ask, &["case", "target", &disk.path]);
    if code != 0 {
        // The boot medium and the evidence disk are refused whatever the reason: do not ask for one.
        let hard =
            case::boot_medium_disks().contains(&disk.name) || state().unlocked.contains(&disk.name);
        if hard {
            return Ok(());
        }
        let Some(typed) = ask.input(
            "Reason to overwrite it anyway (recorded in the case log; empty cancels)",
            Some(""),
        )?
        else {
            return Ok(());
        };
        if typed.is_empty() {
            say!("{} is not cleared as a {what} target", disk.path);
            return Ok(());
        }
        code = run(ask, &["case", "target", &disk.path, "--reason", &typed]);
        reason = Some(typed);
    }
    if code != 0 {
        return Ok(());
    }
    say!("{} is cleared as the {what} target", disk.path);
    if what == "reinstall" {
        reinstall_onto(ask, &disk.path, reason.as_deref())
    } else {
        restore_onto(ask, &disk.path, reason.as_deref())
    }
}

/// Asks for a path; `None` when the operator leaves it empty or cancels.
pub(super) fn ask_path(ask: &Ask, prompt: &str) -> anyhow::Result<Option<String>> {
    Ok(ask
        .input(prompt, Some(""))?
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty()))
}

/// `--sums FILE [--sig FILE] [--keyring FILE]` as the operator names them (nothing when no list is given:
/// the command then says the image is not authenticated, or refuses).
pub(super) fn ask_sums(ask: &Ask) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    if let Some(sums) = ask_path(
        ask,
        "Checksum list (SHA256SUMS, CHECKSUM, ...; empty: none, an acquisition manifest is used if present)",
    )? {
        words.extend(["--sums".to_owned(), sums]);
        if let Some(sig) = ask_path(
            ask,
            "Its detached signature (.sign/.gpg; empty: the list is cleartext-signed)",
        )? {
            words.extend(["--sig".to_owned(), sig]);
        }
        if let Some(key) = ask_path(
            ask,
            "The signer's public key file (empty: the keys built into this image)",
        )? {
            words.extend(["--keyring".to_owned(), key]);
        }
    }
    Ok(words)
}

/// Where the image and its checksum list are read from: `--media DEVICE` (a disk, partition or CD other
/// than the target and the evidence disk, mounted read-only by the command), or no medium (paths in the
/// rescue system, e.g. under /mnt/evidence). `None` when the operator cancels.
pub(super) fn ask_media(ask: &Ask, target: &str) -> anyhow::Result<Option<Vec<String>>> {
    ask_medium(
        ask,
        target,
        "Disk or CD holding the image and its checksum list (mounted read-only)",
    )
}

/// A medium other than `target` and the evidence disk, chosen with `prompt`: `--media DEVICE`, or
/// nothing for paths in the rescue system. `None` when the operator cancels.
pub(super) fn ask_medium(
    ask: &Ask,
    target: &str,
    prompt: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let s = state();
    let mut choices: Vec<(String, Option<String>)> = vec![(
        "No medium: paths in the rescue system (e.g. /mnt/evidence/...)".to_owned(),
        None,
    )];
    for d in devices::list()? {
        if d.path == target || s.unlocked.contains(&d.name) {
            continue;
        }
        if d.partitions.is_empty() {
            choices.push((disk_line(&d), Some(d.path.clone())));
        }
        for p in &d.partitions {
            let line = format!(
                "{:<8} {:>10}  partition of {} (serial {})",
                p.name,
                devices::human_size(p.size_bytes),
                d.name,
                d.serial.as_deref().unwrap_or("none")
            );
            choices.push((line, Some(p.path.clone())));
        }
    }
    let items: Vec<String> = choices.iter().map(|(l, _)| l.clone()).collect();
    let Some(i) = ask.select(prompt, &items)? else {
        return Ok(None);
    };
    Ok(Some(match &choices[i].1 {
        Some(dev) => vec!["--media".to_owned(), dev.clone()],
        None => Vec::new(),
    }))
}

/// Reinstall step after the interlock: write a verified image onto the disk, or kexec a verified installer.
pub(super) fn reinstall_onto(ask: &Ask, target: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let actions = [
        format!("Write a verified golden/installer image onto {target} (deploy, read back)"),
        "Boot a verified installer ISO now (kexec; the rescue system ends)".to_owned(),
        "Nothing now".to_owned(),
    ];
    let Some(choice) = ask.select("Reinstall how", &actions)? else {
        return Ok(());
    };
    match choice {
        0 => {
            let Some(media) = ask_media(ask, target)? else {
                return Ok(());
            };
            let Some(image) = ask_path(ask, "Image file (raw, image.raw.zst or ISO)")? else {
                return Ok(());
            };
            let sums = ask_sums(ask)?;
            let Some(serial) = ask_path(
                ask,
                &format!("Type the serial of {target} (or its last 6 characters) to overwrite it"),
            )?
            else {
                return Ok(());
            };
            let mut words = vec!["deploy".to_owned(), image, "--target".to_owned()];
            words.extend([target.to_owned(), "--confirm".to_owned(), serial]);
            words.extend(media);
            words.extend(sums);
            if let Some(r) = reason {
                words.extend(["--reason".to_owned(), r.to_owned()]);
            }
            run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
        }
        1 => {
            let Some(media) = ask_media(ask, target)? else {
                return Ok(());
            };
            let Some(iso) = ask_path(ask, "Installer ISO")? else {
                return Ok(());
            };
            let mut words = vec!["reinstall".to_owned(), "boot".to_owned(), iso];
            words.extend(media);
            words.extend(ask_sums(ask)?);
            if ask.confirm("Verify it and boot it now (this ends the rescue system)?")? {
                run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Restore step after the interlock: a dry run first (what would be restored and what refused), then the
/// restore itself after a confirmation.
pub(super) fn restore_onto(ask: &Ask, target: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let Some(source) = ask_path(
        ask,
        "Backup to restore from (directory, .tar/.tar.zst, disk image or disk)",
    )?
    else {
        return Ok(());
    };
    let mut words = vec!["restore".to_owned(), source, target.to_owned()];
    if let Some(sums) = ask_path(
        ask,
        "The backup's checksum list (SHA256SUMS or restore-manifest.json; empty: none)",
    )? {
        words.extend(["--manifest".to_owned(), sums]);
    }
    if let Some(list) = ask_path(ask, "Blocklist of IOC hashes (empty: none)")? {
        words.extend(["--blocklist".to_owned(), list]);
    }
    if let Some(r) = reason {
        words.extend(["--reason".to_owned(), r.to_owned()]);
    }
    let Some(serial) = ask_path(
        ask,
        &format!("Type the serial of {target} (or its last 6 characters) to write to it"),
    )?
    else {
        return Ok(());
    };
    words.extend(["--confirm".to_owned(), serial]);
    let mut dry = words.clone();
    dry.push("--dry-run".to_owned());
    if run(ask, &dry.iter().map(String::as_str).collect::<Vec<_>>()) != 0 {
        return Ok(());
    }
    if ask.confirm("Restore these files now (screened files stay out, as listed above)?")? {
        run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
    }
    Ok(())
}

pub(super) fn step_report(ask: &Ask) -> anyhow::Result<()> {
    run(ask, &["case", "show"]);
    let s = state();
    for a in &s.acquisitions {
        say!(
            "  {:<8} {:<40} {} {}",
            a.disk,
            a.dir,
            if a.complete { "complete" } else { "INCOMPLETE" },
            if a.verified {
                "verified"
            } else {
                "NOT verified"
            }
        );
    }
    if s.case_id.is_some() {
        report_now(ask)?;
    }
    let log = Locked::open()?.log_path();
    run(ask, &["log", "verify", &log.display().to_string()]);
    if ask.confirm("Power off now (sync, unmount the evidence disk, power off)?")? {
        run(ask, &["poweroff"]);
    }
    Ok(())
}

/// Timeline: of an acquisition of this case (its image, read-only) or a source disk, into the case
/// directory, with the zone and window asked for (empty: the examined system's zone, everything).
/// What a timeline or a triage can examine: the complete acquisitions of the case, then the disks that
/// are neither the boot medium nor unlocked for writing; as (path, choice text).
fn examinable_sources(s: &CaseState) -> anyhow::Result<Vec<(String, String)>> {
    let boot = case::boot_medium_disks();
    let mut sources: Vec<(String, String)> = s
        .acquisitions
        .iter()
        .filter(|a| a.complete)
        .map(|a| {
            (
                a.dir.clone(),
                format!(
                    "acquisition {} of {}{}",
                    a.dir,
                    a.disk,
                    if a.verified { ", verified" } else { "" }
                ),
            )
        })
        .collect();
    let (stacked, disks): (Vec<BlockDevice>, Vec<BlockDevice>) = devices::list()?
        .into_iter()
        .filter(|d| !boot.contains(&d.name) && !s.unlocked.contains(&d.name))
        .partition(|d| d.name.starts_with("dm-") || d.name.starts_with("md"));
    // What `lvm activate` / `md assemble` opened comes before the disks: it is what they were run for.
    sources.extend(stacked.iter().filter_map(stacked_source));
    for d in disks {
        sources.push((d.path.clone(), format!("disk {}", disk_line(&d))));
    }
    Ok(sources)
}

/// An activated LV or an assembled md array as a source, by the name the operator knows it by
/// (`/dev/mapper/VG-LV`, `/dev/md/NAME`), which also names the triage and timeline directories.
fn stacked_source(d: &BlockDevice) -> Option<(String, String)> {
    let sys = Path::new("/sys/block").join(&d.name);
    let read = |rel: &str| {
        std::fs::read_to_string(sys.join(rel))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    let size = devices::human_size(d.size_bytes);
    if d.name.starts_with("dm-") {
        let name = read("dm/name");
        if name.is_empty() {
            return None;
        }
        let kind = if read("dm/uuid").starts_with("LVM-") {
            "LVM volume"
        } else {
            "device-mapper"
        };
        let path = format!("/dev/mapper/{name}");
        return Some((path.clone(), format!("{kind} {path} {size}")));
    }
    let path = std::fs::read_dir("/dev/md")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.file_name().is_some_and(|n| *n == *d.name))
        })
        .map(|e| e.path().display().to_string())
        .unwrap_or_else(|| d.path.clone());
    Some((
        path.clone(),
        format!("md array {path} ({} {}, {size})", d.name, read("md/level")),
    ))
}

/// `dir/NAME`, or `dir/NAME-2`, `-3` … when that exists already.
fn fresh_dir(dir: &Path, name: &str) -> PathBuf {
    let mut out = dir.join(name);
    let mut n = 2;
    while out.exists() {
        out = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    out
}

/// The source a Triage or Timeline step examines: one of [`examinable_sources`], or any other the
/// operator types the path of (an image file, such as the `MOUNTPOINT/image.raw` that `rescue mount`
/// serves for a compressed, split or remote acquisition; an acquisition directory; a mounted root).
/// `None` when the operator cancels.
fn choose_source(ask: &Ask, s: &CaseState, title: &str) -> anyhow::Result<Option<String>> {
    let mut sources = examinable_sources(s)?;
    sources.push((
        String::new(),
        "another source: an image file or a mounted root (type its path)".into(),
    ));
    let items: Vec<String> = sources.iter().map(|(_, l)| l.clone()).collect();
    let Some(i) = ask.select(title, &items)? else {
        return Ok(None);
    };
    if !sources[i].0.is_empty() {
        return Ok(Some(sources[i].0.clone()));
    }
    ask_path(
        ask,
        "Path of the image (an acquisition served by 'rescue mount' is MOUNTPOINT/image.raw), \
         acquisition directory or mounted root",
    )
}

/// Triage of a source disk or an acquisition (or an image or mounted root the operator names) into the
/// case directory; the `triage` command prints the findings by severity and records them in the case,
/// so that every restore of the case screens with them.
pub(super) fn step_triage(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    let Some(case_id) = &s.case_id else {
        say!("open a case (step 1) first");
        return Ok(());
    };
    let case_dir = match &s.destination {
        Some(dest) => Path::new(&dest.mountpoint).join(case_id),
        None => {
            say!(
                "no evidence destination is mounted (step 3): the findings stay in RAM under {} until one is",
                case::state_dir().display()
            );
            case::state_dir()
        }
    };
    let Some(source) = choose_source(ask, &s, "Triage of")? else {
        return Ok(());
    };
    let out = fresh_dir(
        &case_dir,
        &crate::triage::default_dir_name(Path::new(&source)),
    );
    let out_s = out.display().to_string();
    let Some(since) = ask.input(
        "Start of the attack window, YYYY-MM-DD (empty: none)",
        Some(""),
    )?
    else {
        return Ok(());
    };
    let mut words = vec!["triage", source.as_str(), "--out", out_s.as_str()];
    if !since.trim().is_empty() {
        words.extend(["--since", since.trim()]);
    }
    let code = run(ask, &words);
    if code == 0 || code == crate::ui::triage::EXIT_FINDINGS {
        say!(
            "findings recorded in the case: every restore of this case holds or refuses the files they name"
        );
    }
    Ok(())
}

/// The timeline of a source disk or an acquisition (or an image or mounted root the operator names)
/// into the case directory on the evidence destination.
pub(super) fn step_timeline(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    let (Some(case_id), Some(dest)) = (&s.case_id, &s.destination) else {
        say!("open a case (step 1) and mount an evidence destination (step 3) first");
        return Ok(());
    };
    let case_dir = Path::new(&dest.mountpoint).join(case_id);
    let Some(source) = choose_source(ask, &s, "Timeline of")? else {
        return Ok(());
    };
    let base = Path::new(&source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "source".into());
    let out = fresh_dir(&case_dir, &format!("timeline-{base}"));
    let Some(tz) = ask.input(
        "Zone of the logs' local times (empty: the examined system's own)",
        Some(""),
    )?
    else {
        return Ok(());
    };
    let Some(from) = ask.input("From (YYYY-MM-DD; empty: the beginning)", Some(""))? else {
        return Ok(());
    };
    let Some(to) = ask.input("To (YYYY-MM-DD; empty: the end)", Some(""))? else {
        return Ok(());
    };
    let out_s = out.display().to_string();
    let mut words = vec!["timeline", source.as_str(), "--out", out_s.as_str()];
    for (flag, v) in [("--tz", &tz), ("--from", &from), ("--to", &to)] {
        if !v.trim().is_empty() {
            words.push(flag);
            words.push(v.trim());
        }
    }
    if run(ask, &words) == 0 {
        say!(
            "timeline written to {out_s}: load timeline.jsonl into Timesketch, or run mactime on bodyfile.txt"
        );
    }
    Ok(())
}

/// The incident report before power-off: Markdown, JSON and HTML, signed when the examiner brought a
/// key (the `report` command asks its passphrase on the console).
fn report_now(ask: &Ask) -> anyhow::Result<()> {
    if !ask.confirm(
        "Build the incident report now (Markdown, JSON, HTML; every evidence file hashed)?",
    )? {
        return Ok(());
    }
    let mut words: Vec<String> = ["report", "--format", "md,json,html"]
        .map(str::to_owned)
        .to_vec();
    if ask.confirm("Sign it with your OpenPGP secret key (a key file on a medium you brought)?")? {
        let Some(media) = ask_medium(ask, "", "Disk or stick holding the key (mounted read-only)")?
        else {
            return Ok(());
        };
        let Some(key) = ask_path(
            ask,
            "Secret key file (armoured or binary; a path on that medium, or in the rescue system)",
        )?
        else {
            say!("no key given: the report is built unsigned");
            run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
            return Ok(());
        };
        words.extend(["--sign-key".to_owned(), key]);
        words.extend(media);
    }
    run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
    Ok(())
}
