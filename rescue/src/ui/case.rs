//! `case new|show`, `unlock`, `mount-evidence`: the line-mode face of [`crate::case`].

use std::path::Path;

use crate::case::{self, Locked};
use crate::caselog;
use crate::evidence;

pub fn run_case_new(
    id: &str,
    examiner: Option<&str>,
    notes: Option<&str>,
    true_time: Option<&str>,
) -> anyhow::Result<u8> {
    case::check_case_id(id)?;
    let clock_offset = match true_time {
        None => None,
        Some(t) => {
            let truth = case::parse_utc(t).ok_or_else(|| {
                anyhow::anyhow!("--true-time {t:?} is not a UTC time like 2026-11-29 15:04:05")
            })?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Some(truth - now)
        }
    };
    let mut locked = Locked::open()?;
    if let Some(open) = &locked.state.case_id {
        return Err(case::CaseError::CaseOpen(open.clone()).into());
    }
    locked.state.case_id = Some(id.to_owned());
    locked.state.examiner = examiner.map(str::to_owned);
    locked.state.notes = notes.map(str::to_owned);
    locked.state.opened_utc = Some(crate::acquire::manifest::now_rfc3339());
    locked.state.opened_rtc = caselog::rtc_now();
    locked.state.clock_offset_seconds = clock_offset;
    locked.save()?;
    locked.log(
        "result",
        "case new",
        serde_json::json!({
            "case_id": id,
            "examiner": examiner,
            "notes": notes,
            "rtc": locked.state.opened_rtc,
            "system_clock": locked.state.opened_utc,
            "true_time": true_time,
            "clock_offset_seconds": clock_offset,
        }),
    )?;
    println!(
        "case {id} opened at {} (RTC {})",
        locked.state.opened_utc.as_deref().unwrap_or("-"),
        locked.state.opened_rtc.as_deref().unwrap_or("unreadable")
    );
    match clock_offset {
        Some(o) => println!(
            "clock offset {o:+} s (true time minus this machine's clock): recorded in the case log and every manifest"
        ),
        None => println!(
            "clock offset not recorded (no --true-time): the machine's clock is taken as right"
        ),
    }
    println!(
        "next: unlock the evidence disk with `unlock DEVICE --confirm SERIAL`, then `mount-evidence PARTITION`"
    );
    Ok(0)
}

pub fn run_case_show() -> anyhow::Result<u8> {
    let locked = Locked::open()?;
    let s = &locked.state;
    println!(
        "case        {}",
        s.case_id.as_deref().unwrap_or("(none: `case new ID`)")
    );
    println!("examiner    {}", s.examiner.as_deref().unwrap_or("-"));
    println!(
        "clock       {}",
        s.clock_offset_seconds.map_or_else(
            || "taken as right (no offset recorded)".to_owned(),
            |o| format!("offset {o:+} s (true time minus this machine's clock)")
        )
    );
    println!(
        "opened      {} (RTC {})",
        s.opened_utc.as_deref().unwrap_or("-"),
        s.opened_rtc.as_deref().unwrap_or("-")
    );
    println!(
        "sources     {}",
        if s.sources.is_empty() {
            "-".to_owned()
        } else {
            s.sources.join(" ")
        }
    );
    println!(
        "unlocked    {}",
        if s.unlocked.is_empty() {
            "-".to_owned()
        } else {
            s.unlocked.join(" ")
        }
    );
    match &s.destination {
        Some(d) => println!(
            "evidence    {} ({}) on {}",
            d.device, d.fstype, d.mountpoint
        ),
        None => println!("evidence    (not mounted; the case log is kept in RAM)"),
    }
    if s.triages.is_empty() {
        println!("triage      - (a restore screens with the findings of every triage run here)");
    }
    for t in &s.triages {
        let counts: Vec<String> = crate::triage::Severity::ALL
            .iter()
            .map(|sev| {
                let name = sev.as_str();
                format!("{} {name}", t.counts.get(name).copied().unwrap_or(0))
            })
            .collect();
        println!("triage      {}: {}", t.source, counts.join(", "));
        println!("            findings {}", t.findings);
    }
    println!("case log    {}", locked.log_path().display());
    Ok(0)
}

pub fn run_unlock(device: &Path, confirm: &str) -> anyhow::Result<u8> {
    let mut locked = Locked::open()?;
    match case::unlock(&mut locked, device, confirm) {
        Ok(names) => {
            locked.log(
                "result",
                &format!("unlock {}", device.display()),
                serde_json::json!({"unlocked": names}),
            )?;
            println!(
                "unlocked for writing: {} (every other disk stays write-blocked)",
                names.join(" ")
            );
            Ok(0)
        }
        Err(e) => {
            locked.log(
                "result",
                &format!("unlock {}", device.display()),
                serde_json::json!({"refused": e.to_string()}),
            )?;
            Err(e.into())
        }
    }
}

/// `format DEVICE --fs ext4|exfat --confirm SERIAL`.
pub fn run_format(
    device: &Path,
    fs: crate::format::Filesystem,
    confirm: &str,
) -> anyhow::Result<u8> {
    let locked = Locked::open()?;
    let command = format!("format {} --fs {}", device.display(), fs.name());
    println!("formatting {} as {} ...", device.display(), fs.name());
    match crate::format::format(&locked, device, fs, confirm) {
        Ok(()) => {
            locked.log(
                "result",
                &command,
                serde_json::json!({"formatted": device.display().to_string(), "fs": fs.name(), "label": crate::format::LABEL}),
            )?;
            println!(
                "{} now holds an empty {} filesystem labelled {}; next: mount-evidence {}",
                device.display(),
                fs.name(),
                crate::format::LABEL,
                device.display()
            );
            Ok(0)
        }
        Err(e) => {
            locked.log(
                "result",
                &command,
                serde_json::json!({"refused": crate::error_chain(&e)}),
            )?;
            Err(e.into())
        }
    }
}

pub fn run_mount_evidence(device: &Path) -> anyhow::Result<u8> {
    let mut locked = Locked::open()?;
    let dest = case::mount_evidence(&mut locked, device)?;
    locked.log(
        "result",
        &format!("mount-evidence {}", device.display()),
        serde_json::to_value(&dest)?,
    )?;
    let case_id = locked.state.case_id.clone().unwrap_or_default();
    println!(
        "evidence destination {} ({}) mounted on {}",
        dest.device, dest.fstype, dest.mountpoint
    );
    println!(
        "case directory {}/{case_id}; case log moved there: {}",
        dest.mountpoint,
        locked.log_path().display()
    );
    Ok(0)
}

/// `acquire` inside the rescue system: the case's decisions before and after the acquisition
/// ([`crate::evidence`]), printed.
pub fn run_case_acquire(mut args: crate::args::acquire::AcquireArgs) -> anyhow::Result<u8> {
    let dest = Locked::open()?.state.destination;
    if let Some(split) = evidence::automatic_split(dest.as_ref(), &args.out, args.split) {
        args.split = Some(split);
        println!(
            "the evidence disk is FAT32 (files < 4 GiB): splitting the image into {} segments",
            crate::devices::human_size(split)
        );
    }
    if !args.resume {
        let compressed = args.format == Some(crate::args::acquire::FormatArg::Zstd);
        evidence::check_space(&args.source, &args.out, compressed)?;
    }
    let result = super::acquire::run_acquire(&args);
    let ended = match result {
        Ok(0 | super::acquire::EXIT_UNREADABLE) => evidence::Ended::Complete,
        Ok(super::acquire::EXIT_INCOMPLETE) => evidence::Ended::Resumable,
        _ => evidence::Ended::Other,
    };
    let mut locked = Locked::open()?;
    let settled = evidence::settle(&mut locked, &args.source, &args.out, ended)?;
    drop(locked);
    if let evidence::Settled::LostDestination {
        device,
        resume_with,
    } = settled
    {
        eprintln!(
            "error: the evidence destination {device} disappeared during the acquisition; what was made durable stays on it.\n  reattach it, then: unlock DEVICE --confirm SERIAL, mount-evidence DEVICE, {resume_with}"
        );
        // The directory on the lost disk keeps its checkpoint: resumable.
        return Ok(super::acquire::EXIT_INCOMPLETE);
    }
    result
}

/// `verify` inside the rescue system: records the verdict for the acquisition directory in the case.
pub fn run_case_verify(args: &crate::args::acquire::VerifyArgs) -> anyhow::Result<u8> {
    let code = super::acquire::run_verify(args)?;
    let mut locked = Locked::open()?;
    case::record_verified(&mut locked, &args.dir, code == 0)?;
    // The verdict in the case log too: a report built later on a host reads it there.
    locked.log(
        "result",
        &format!("verify {}", args.dir.display()),
        serde_json::json!({"verified": code == 0, "exit": code}),
    )?;
    Ok(code)
}

/// `case target DEVICE [--reason TEXT]`: the reinstall/restore interlock's verdict on one disk.
pub fn run_case_target(device: &Path, reason: Option<&str>) -> anyhow::Result<u8> {
    let mut locked = Locked::open()?;
    let clearance = case::target_interlock(&mut locked, device, reason)?;
    match &clearance.overridden {
        None => println!(
            "{} may be a reinstall/restore target: its evidence is acquired and verified",
            clearance.disk
        ),
        Some(r) => println!(
            "{} may be a reinstall/restore target by override; reason logged: {r}",
            clearance.disk
        ),
    }
    Ok(0)
}

/// Records the operator's command line and, after it ran, its exit status. Logging failures are reported
/// but do not stop the rescue system.
pub fn log_command(kind: &str, line: &str, detail: serde_json::Value) {
    if let Err(e) = Locked::open().and_then(|l| l.log(kind, line, detail)) {
        eprintln!("warning: case log: {}", super::error_chain(&e));
    }
}

/// `inventory [--json]`: machine identity and every disk with its partition table and signatures; saved as
/// `inventory.json` in the case directory when an evidence destination is mounted (else under /run/rescue).
pub fn run_inventory(json: bool) -> anyhow::Result<u8> {
    let inv = crate::inventory::take()?;
    let bytes = serde_json::to_vec_pretty(&inv)?;
    if json {
        println!("{}", serde_json::to_string(&inv)?);
    } else {
        let h = &inv.host;
        println!(
            "machine  {} {}  serial {}  BIOS {} {}",
            h.dmi_vendor.as_deref().unwrap_or("-"),
            h.dmi_product.as_deref().unwrap_or("-"),
            h.dmi_serial.as_deref().unwrap_or("-"),
            h.bios_vendor.as_deref().unwrap_or("-"),
            h.bios_version.as_deref().unwrap_or("-")
        );
        for d in &inv.disks {
            let dev = &d.device;
            println!(
                "{:<10} {:>10} {:<11} {:<20} {:<20} table {}{}",
                dev.name,
                crate::devices::human_size(dev.size_bytes),
                dev.transport,
                dev.model.as_deref().unwrap_or("-"),
                dev.serial.as_deref().unwrap_or("-"),
                d.table.as_deref().unwrap_or("none"),
                d.signature
                    .as_deref()
                    .map(|s| format!(", whole disk: {s}"))
                    .unwrap_or_default()
            );
            for e in &d.entries {
                println!(
                    "  #{:<3} at {:>12} {:>10} {:<38} {:<16} {}",
                    e.number,
                    e.start_bytes,
                    crate::devices::human_size(e.size_bytes),
                    e.type_id,
                    e.name.as_deref().unwrap_or("-"),
                    e.signature.as_deref().unwrap_or("-")
                );
            }
            for note in &d.notes {
                println!("  note: {note}");
            }
            println!("  hidden areas: {}", d.hidden_areas.summary);
            if let Some(err) = &d.error {
                println!("  error: {err}");
            }
        }
    }
    if crate::system::in_rescue_system() {
        let locked = Locked::open()?;
        let dir = match (&locked.state.destination, &locked.state.case_id) {
            (Some(d), Some(case)) => Path::new(&d.mountpoint).join(case),
            _ => case::state_dir(),
        };
        let path = dir.join("inventory.json");
        crate::acquire::manifest::write_durable(&dir, "inventory.json", &bytes)?;
        locked.log(
            "result",
            "inventory",
            serde_json::json!({"saved": path.display().to_string(), "disks": inv.disks.len()}),
        )?;
        if !json {
            println!("saved {}", path.display());
        }
    }
    Ok(0)
}
