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
    super::sayln!(
        "case {id} opened at {} (RTC {})",
        locked.state.opened_utc.as_deref().unwrap_or("-"),
        locked.state.opened_rtc.as_deref().unwrap_or("unreadable")
    );
    match clock_offset {
        Some(o) => super::sayln!(
            "clock offset {o:+} s (true time minus this machine's clock): recorded in the case log and every manifest"
        ),
        None => super::sayln!(
            "clock offset not recorded (no --true-time): the machine's clock is taken as right"
        ),
    }
    super::sayln!(
        "next: unlock the evidence disk with `unlock DEVICE --confirm SERIAL`, then `mount-evidence PARTITION`"
    );
    Ok(0)
}

pub fn run_case_show() -> anyhow::Result<u8> {
    let locked = Locked::open()?;
    let s = &locked.state;
    super::sayln!(
        "case        {}",
        s.case_id.as_deref().unwrap_or("(none: `case new ID`)")
    );
    super::sayln!("examiner    {}", s.examiner.as_deref().unwrap_or("-"));
    super::sayln!(
        "clock       {}",
        s.clock_offset_seconds.map_or_else(
            || "taken as right (no offset recorded)".to_owned(),
            |o| format!("offset {o:+} s (true time minus this machine's clock)")
        )
    );
    super::sayln!(
        "opened      {} (RTC {})",
        s.opened_utc.as_deref().unwrap_or("-"),
        s.opened_rtc.as_deref().unwrap_or("-")
    );
    super::sayln!(
        "sources     {}",
        if s.sources.is_empty() {
            "-".to_owned()
        } else {
            s.sources.join(" ")
        }
    );
    super::sayln!(
        "unlocked    {}",
        if s.unlocked.is_empty() {
            "-".to_owned()
        } else {
            s.unlocked.join(" ")
        }
    );
    match &s.destination {
        Some(d) => super::sayln!(
            "evidence    {} ({}) on {}",
            d.device,
            d.fstype,
            d.mountpoint
        ),
        None => super::sayln!("evidence    (not mounted; the case log is kept in RAM)"),
    }
    if s.triages.is_empty() {
        super::sayln!(
            "triage      - (a restore screens with the findings of every triage run here)"
        );
    }
    for t in &s.triages {
        let counts: Vec<String> = crate::triage::Severity::ALL
            .iter()
            .map(|sev| {
                let name = sev.as_str();
                format!("{} {name}", t.counts.get(name).copied().unwrap_or(0))
            })
            .collect();
        super::sayln!("triage      {}: {}", t.source, counts.join(", "));
        super::sayln!("            findings {}", t.findings);
    }
    super::sayln!("case log    {}", locked.log_path().display());
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
            super::sayln!(
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
    super::sayln!("formatting {} as {} ...", device.display(), fs.name());
    match crate::format::format(&locked, device, fs, confirm) {
        Ok(()) => {
            locked.log(
                "result",
                &command,
                serde_json::json!({"formatted": device.display().to_string(), "fs": fs.name(), "label": crate::format::LABEL}),
            )?;
            super::sayln!(
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
    super::sayln!(
        "evidence destination {} ({}) mounted on {}",
        dest.device,
        dest.fstype,
        dest.mountpoint
    );
    super::sayln!(
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
        super::sayln!(
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
        super::esayln!(
            "error: the evidence destination {device} disappeared during the acquisition; what was made durable stays on it.\n  reattach it, then: unlock DEVICE --confirm SERIAL, mount-evidence DEVICE, {resume_with}"
        );
        // The directory on the lost disk keeps its checkpoint: resumable.
        return Ok(super::acquire::EXIT_INCOMPLETE);
    }
    result
}

/// `verify` inside the rescue system: records the verdict for the acquisition directory in the case.
pub fn run_case_verify(args: &crate::args::acquire::VerifyArgs) -> anyhow::Result<u8> {
    let before = crate::report::reuse::before_verify(&args.dir);
    let code = super::acquire::run_verify(args)?;
    let mut locked = Locked::open()?;
    case::record_verified(&mut locked, &args.dir, code == 0)?;
    // The verdict in the case log too: a report built later on a host reads it there, and takes the
    // hashes of the image files still unchanged since instead of reading them again.
    let mut detail = serde_json::json!({"verified": code == 0, "exit": code});
    if code == 0 {
        detail[crate::report::reuse::DETAIL_KEY] =
            crate::report::reuse::after_verify(&args.dir, &before);
    }
    locked.log("result", &format!("verify {}", args.dir.display()), detail)?;
    Ok(code)
}

/// `case target DEVICE [--reason TEXT]`: the reinstall/restore interlock's verdict on one disk.
pub fn run_case_target(device: &Path, reason: Option<&str>) -> anyhow::Result<u8> {
    let mut locked = Locked::open()?;
    let clearance = case::target_interlock(&mut locked, device, reason)?;
    match &clearance.overridden {
        None => super::sayln!(
            "{} may be a reinstall/restore target: its evidence is acquired and verified",
            clearance.disk
        ),
        Some(r) => super::sayln!(
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
        super::esayln!("warning: case log: {}", super::error_chain(&e));
    }
}

/// The columns of a disk's partition table in `inventory`.
const ENTRY_COLUMNS: &[super::table::Column] = &[
    super::table::Column {
        title: "#",
        align: super::table::Align::Left,
    },
    super::table::Column {
        title: "START",
        align: super::table::Align::Right,
    },
    super::table::Column {
        title: "SIZE",
        align: super::table::Align::Right,
    },
    super::table::Column {
        title: "TYPE",
        align: super::table::Align::Left,
    },
    super::table::Column {
        title: "NAME",
        align: super::table::Align::Left,
    },
    super::table::Column {
        title: "CONTENT",
        align: super::table::Align::Left,
    },
];

/// `inventory` for people, every line at most `width` characters: the machine, then per disk a line
/// starting with its name, its partition table (side by side when it fits, else one block per
/// partition), notes and hidden areas.
pub fn inventory_text(inv: &crate::inventory::Inventory, width: usize) -> String {
    use super::table::{Row, pack};
    let dash = |s: &Option<String>| s.as_deref().unwrap_or("-").to_owned();
    let mut out = String::new();
    let mut push = |lines: Vec<String>| {
        for l in lines {
            out.push_str(l.trim_end());
            out.push('\n');
        }
    };
    let h = &inv.host;
    // A first line of `items`, continued two columns in.
    let lines = |items: &[String]| pack(items, 0, 2, width);
    push(lines(&[
        "machine".to_owned(),
        format!("{} {}", dash(&h.dmi_vendor), dash(&h.dmi_product)),
        format!("serial {}", dash(&h.dmi_serial)),
        format!("BIOS {} {}", dash(&h.bios_vendor), dash(&h.bios_version)),
    ]));
    for d in &inv.disks {
        let dev = &d.device;
        let mut items = vec![
            dev.name.clone(),
            crate::devices::human_size(dev.size_bytes),
            dev.transport.clone(),
            format!("model {}", dash(&dev.model)),
            format!("serial {}", dash(&dev.serial)),
            format!("table {}", d.table.as_deref().unwrap_or("none")),
        ];
        if let Some(s) = &d.signature {
            items.push(format!("whole disk: {s}"));
        }
        push(lines(&items));
        if !d.entries.is_empty() {
            let rows: Vec<Row> = d
                .entries
                .iter()
                .map(|e| {
                    Row::new(vec![
                        format!("#{}", e.number),
                        e.start_bytes.to_string(),
                        crate::devices::human_size(e.size_bytes),
                        e.type_id.clone(),
                        dash(&e.name),
                        dash(&e.signature),
                    ])
                })
                .collect();
            push(
                super::table::render(ENTRY_COLUMNS, &rows, 2, width)
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            );
        }
        for note in &d.notes {
            push(super::wrap(&format!("  note: {note}"), width, 2));
        }
        push(super::wrap(
            &format!("  hidden areas: {}", d.hidden_areas.summary),
            width,
            2,
        ));
        if let Some(err) = &d.error {
            push(super::wrap(&format!("  error: {err}"), width, 2));
        }
    }
    out
}

/// `inventory [--json]`: machine identity and every disk with its partition table and signatures; saved as
/// `inventory.json` in the case directory when an evidence destination is mounted (else under /run/rescue).
pub fn run_inventory(json: bool) -> anyhow::Result<u8> {
    let inv = crate::inventory::take()?;
    let bytes = serde_json::to_vec_pretty(&inv)?;
    if json {
        println!("{}", serde_json::to_string(&inv)?);
    } else {
        print!("{}", inventory_text(&inv, super::columns()));
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
            super::sayln!("saved {}", path.display());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{DiskInventory, Inventory, TableEntry};

    fn inventory() -> Inventory {
        let entry = |number: u32, type_id: &str, name: &str, sig: &str| TableEntry {
            number,
            start_bytes: u64::from(number) * 1_000_000_000_000,
            size_bytes: 999_000_000_000,
            type_id: type_id.to_owned(),
            name: Some(name.to_owned()),
            signature: Some(sig.to_owned()),
        };
        Inventory {
            taken_utc: "2026-12-05T00:00:00Z".to_owned(),
            host: crate::host::HostInfo {
                dmi_vendor: Some("Dell Inc.".to_owned()),
                dmi_product: Some("PowerEdge R750xs".to_owned()),
                dmi_serial: Some("7XK2L93".to_owned()),
                bios_vendor: Some("Dell Inc.".to_owned()),
                bios_version: Some("1.8.2".to_owned()),
                bios_date: None,
                kernel: "6.1.0".to_owned(),
                boot_mode: "UEFI".to_owned(),
                secure_boot: Some(true),
            },
            disks: vec![DiskInventory {
                device: crate::devices::BlockDevice {
                    name: "nvme0n1".to_owned(),
                    path: "/dev/nvme0n1".to_owned(),
                    size_bytes: 3_840_755_982_336,
                    logical_sector_size: 512,
                    physical_sector_size: 512,
                    model: Some("Dell Ent NVMe CM6 RI 3.84TB".to_owned()),
                    serial: Some("Y0R0A0ZZ1234567890AB".to_owned()),
                    wwn: None,
                    transport: "nvme".to_owned(),
                    removable: false,
                    read_only: true,
                    partitions: Vec::new(),
                },
                table: Some("gpt".to_owned()),
                entries: vec![
                    entry(
                        1,
                        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                        "EFI System Partition",
                        "vfat",
                    ),
                    entry(
                        2,
                        "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                        "root",
                        "ext4",
                    ),
                ],
                signature: None,
                error: None,
                notes: vec!["the extended boot record chain loops back to sector 10 after 3 logical partitions".to_owned()],
                hidden_areas: crate::ata::HiddenAreas {
                    summary: "HPA HIDES 2048 sectors; DCO: not reported".to_owned(),
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn the_inventory_fits_80_and_40_columns_and_keeps_guids_and_serials_whole() {
        let inv = inventory();
        for width in [80, 40] {
            let t = inventory_text(&inv, width);
            assert!(super::super::widest(&t) <= width, "{width}:\n{t}");
            let words: Vec<&str> = t.split_whitespace().collect();
            for whole in [
                "Y0R0A0ZZ1234567890AB",
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                "7XK2L93",
                "2000000000000",
            ] {
                assert!(words.contains(&whole), "{width}: {whole} whole:\n{t}");
            }
            // What tests and people look for: the disk's line starts with its name, and the
            // hidden-areas line after it says what the drive hides.
            let disk = t.lines().position(|l| l.starts_with("nvme0n1")).unwrap();
            let hidden = t.lines().skip(disk).find(|l| l.contains("hidden areas"));
            assert!(hidden.is_some_and(|l| l.contains("HPA")), "{width}:\n{t}");
            assert!(t.contains("loops back"), "{t}");
        }
    }
}
