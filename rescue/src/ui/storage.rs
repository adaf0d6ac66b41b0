//! `lvm activate|deactivate` and `md assemble|stop`: what was mapped or started read-only, what was
//! refused and why, and after teardown what is left in `/dev/mapper` and `/proc/mdstat`. In the rescue
//! system each activation and teardown goes into the case log.

use std::path::PathBuf;

use crate::args::storage::{LvmCommand, MdCommand};
use crate::devices::human_size;
use crate::{dm, lvm, md};

/// Exit code: everything found was activated (or torn down).
const EXIT_OK: u8 = 0;
/// Exit code: something was refused or could not be removed (the message says what).
const EXIT_FAILURE: u8 = 1;

fn case_log(kind: &str, command: &str, detail: serde_json::Value) {
    if crate::system::in_rescue_system()
        && let Ok(locked) = crate::case::Locked::open()
        && let Err(e) = locked.log(kind, command, detail)
    {
        super::print_labelled("warning", &format!("case log: {}", crate::error_chain(&e)));
    }
}

fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Runs `f` and says which kernel modules it loaded (md and device-mapper are never loaded at boot).
fn with_module_report(json: bool, f: impl FnOnce() -> anyhow::Result<u8>) -> anyhow::Result<u8> {
    let before = loaded_modules();
    let r = f();
    let mut new: Vec<String> = loaded_modules()
        .into_iter()
        .filter(|m| !before.contains(m))
        .collect();
    new.sort();
    if !new.is_empty() && !json {
        println!("kernel modules loaded for this command: {}", new.join(" "));
    }
    r
}

/// `lvm …`.
pub fn run_lvm(what: &LvmCommand) -> anyhow::Result<u8> {
    match what {
        LvmCommand::Activate { devices, json, .. } => {
            with_module_report(*json, || lvm_activate(devices, *json))
        }
        LvmCommand::Deactivate => lvm_deactivate(),
    }
}

/// `md …`.
pub fn run_md(what: &MdCommand) -> anyhow::Result<u8> {
    match what {
        MdCommand::Assemble {
            devices,
            degraded,
            json,
            ..
        } => with_module_report(*json, || md_assemble(devices, *degraded, *json)),
        MdCommand::Stop => md_stop(),
    }
}

/// Disks, partitions, loops and md arrays, without md members: a PV on a RAID1 with its superblock at
/// the end (0.90, 1.0) shows its label on every member too (lvm2's md component detection).
fn lvm_candidates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = md::assemble::candidate_devices()
        .into_iter()
        .filter(|d| {
            md::assemble::held_by(d).is_none()
                && !matches!(md::assemble::probe_member(d), Ok(Some(_)))
        })
        .collect();
    v.extend(
        crate::blkro::all_block_names()
            .into_iter()
            .filter(|n| n.starts_with("md"))
            .map(|n| PathBuf::from("/dev").join(n)),
    );
    v
}

/// PVs inside md arrays that are not assembled, seen through the members among `devices`.
fn pvs_inside_unassembled_arrays(devices: &[PathBuf]) -> Vec<lvm::PvInsideArray> {
    devices
        .iter()
        .filter(|d| md::assemble::held_by(d).is_none())
        .filter_map(|d| md::assemble::probe_member(d).ok().flatten())
        .filter_map(|m| lvm::pv_inside_member(&m))
        .collect()
}

/// One line per array: LVM cannot see a PV whose md array is not running, so the order is md first.
fn explain_pvs_inside_arrays(inside: &[lvm::PvInsideArray]) {
    let mut arrays: Vec<&str> = Vec::new();
    for p in inside {
        if !arrays.contains(&p.array_uuid.as_str()) {
            arrays.push(&p.array_uuid);
        }
    }
    for uuid in arrays {
        let of: Vec<&lvm::PvInsideArray> = inside.iter().filter(|p| p.array_uuid == uuid).collect();
        let first = of[0];
        let msg = format!(
            "not activated: {} {} of md array {} ({}, not assembled) hold{} LVM PV {}{}: \
             the PV is inside the array; run `md assemble --read-only` first, then \
             `lvm activate --read-only`",
            if of.len() == 1 { "member" } else { "members" },
            of.iter()
                .map(|p| p.member.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            first.array,
            md::level_name(first.level),
            if of.len() == 1 { "s" } else { "" },
            first.pv_uuid,
            first
                .vg
                .as_ref()
                .map(|v| format!(" of VG {v}"))
                .unwrap_or_default()
        );
        super::esayln!("{msg}");
    }
}

fn lvm_activate(devices: &[PathBuf], json: bool) -> anyhow::Result<u8> {
    let scan = if devices.is_empty() {
        lvm_candidates()
    } else {
        devices.to_vec()
    };
    let mut code = EXIT_OK;
    let mut found = Vec::new();
    let mut unlabelled = Vec::new();
    // A device the operator named is write-blocked before it is read; a scan only looks, and
    // `lvm::activate` write-blocks the PVs of what it activates.
    let read = if devices.is_empty() {
        lvm::probe_pv
    } else {
        lvm::read_pv
    };
    for d in &scan {
        match read(d) {
            Ok(Some(pv)) => found.push(pv),
            Ok(None) => unlabelled.push(d.clone()),
            Err(e) => {
                super::print_labelled("error", &crate::error_chain(&e));
                code = EXIT_FAILURE;
            }
        }
    }
    // md members are left out of the scan (or have no label of their own at offset 0); a PV inside an
    // array that is not running is reported, never read around the md layer.
    let members = if devices.is_empty() {
        md::assemble::candidate_devices()
    } else {
        unlabelled.clone()
    };
    let inside = pvs_inside_unassembled_arrays(&members);
    if !json {
        explain_pvs_inside_arrays(&inside);
    }
    if !inside.is_empty() {
        code = EXIT_FAILURE;
    }
    if !devices.is_empty() {
        for d in unlabelled
            .iter()
            .filter(|d| !inside.iter().any(|p| &p.member == *d))
        {
            eprintln!("{}: no LVM2 label", d.display());
            code = EXIT_FAILURE;
        }
    }
    if found.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::json!({"volume_groups": [], "lvs": [], "pvs_inside_unassembled_md": inside})
            );
        } else if inside.is_empty() {
            println!("no LVM physical volume on {} device(s) scanned", scan.len());
        }
        return Ok(code);
    }
    let plans = lvm::plan(&found);
    let ctl = if plans.iter().any(Result::is_ok) {
        Some(dm::Control::open()?)
    } else {
        None
    };
    let mut all = Vec::new();
    let mut vgs = Vec::new();
    for p in plans {
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                super::print_labelled("refused", &crate::error_chain(&e));
                code = EXIT_FAILURE;
                continue;
            }
        };
        let Some(ctl) = &ctl else { continue };
        if !json {
            println!(
                "VG {} (seqno {}, PVs {})",
                p.vg.name,
                p.vg.seqno,
                p.pvs
                    .values()
                    .map(|(d, _)| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let outcomes = lvm::activate(ctl, &p)?;
        for o in &outcomes {
            match (&o.device, &o.refused) {
                (Some(dev), _) if !json => println!(
                    "  {} -> {}  {}  {}  read-only",
                    o.link
                        .as_ref()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default(),
                    dev.display(),
                    human_size(o.size_bytes),
                    o.layout
                ),
                (None, Some(why)) => {
                    super::esayln!("  refused {}/{}: {why}", o.vg, o.lv);
                    code = EXIT_FAILURE;
                }
                _ => {}
            }
        }
        vgs.push(serde_json::json!({
            "name": p.vg.name, "id": p.vg.id, "seqno": p.vg.seqno,
            "pvs": p.pvs.values().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>(),
        }));
        all.extend(outcomes);
    }
    let detail = serde_json::json!({
        "volume_groups": vgs, "lvs": all, "pvs_inside_unassembled_md": inside,
    });
    if json {
        println!("{detail}");
    }
    case_log("lvm-activate", "lvm activate --read-only", detail);
    Ok(code)
}

fn lvm_deactivate() -> anyhow::Result<u8> {
    let ctl = dm::Control::open()?;
    let removed = lvm::deactivate_all(&ctl)?;
    let mut code = EXIT_OK;
    for r in &removed {
        match &r.error {
            None => println!("removed /dev/mapper/{}", r.name),
            Some(e) => {
                super::esayln!("could not remove /dev/mapper/{}: {e}", r.name);
                code = EXIT_FAILURE;
            }
        }
    }
    let left = lvm::mapper_entries();
    if left.is_empty() {
        println!("/dev/mapper: no device left (only control)");
    } else {
        println!("/dev/mapper still holds: {}", left.join(" "));
    }
    case_log(
        "lvm-deactivate",
        "lvm deactivate",
        serde_json::json!({"removed": removed, "left": left}),
    );
    Ok(code)
}

fn md_assemble(devices: &[PathBuf], degraded: bool, json: bool) -> anyhow::Result<u8> {
    let scan = if devices.is_empty() {
        md::assemble::candidate_devices()
    } else {
        devices.to_vec()
    };
    let mut code = EXIT_OK;
    let mut members = Vec::new();
    let mut held = 0;
    // A device the operator named is write-blocked before it is read; a scan only looks, and
    // `md::assemble::assemble` write-blocks the members of what it assembles.
    let read = if devices.is_empty() {
        md::assemble::probe_member
    } else {
        md::assemble::read_member
    };
    for d in &scan {
        match read(d) {
            Ok(Some(m)) => match md::assemble::held_by(d) {
                Some(md) => {
                    held += 1;
                    println!("{}: already a member of /dev/{md}", d.display());
                }
                None => members.push(m),
            },
            Ok(None) => {
                if !devices.is_empty() {
                    eprintln!("{}: no md superblock", d.display());
                    code = EXIT_FAILURE;
                }
            }
            Err(e) => {
                super::print_labelled("error", &crate::error_chain(&e));
                code = EXIT_FAILURE;
            }
        }
    }
    if members.is_empty() && held == 0 && !json {
        println!("no md member on {} device(s) scanned", scan.len());
    }
    let mut assembled = Vec::new();
    let mut refused = Vec::new();
    let members = md::assemble::drop_shadowed_disks(members);
    for p in md::plan(members, degraded) {
        let result = p.and_then(|p| md::assemble::assemble(&p));
        match result {
            Ok(a) => {
                if !json {
                    println!(
                        "{}{} : {} {}, members {}{}  {}  read-only (array_state {})",
                        a.device.display(),
                        a.link
                            .as_ref()
                            .map(|l| format!(" ({})", l.display()))
                            .unwrap_or_default(),
                        md::level_name(a.level),
                        a.name,
                        a.members
                            .iter()
                            .map(|m| m.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                        if a.missing_roles.is_empty() {
                            String::new()
                        } else {
                            format!(" DEGRADED: roles {:?} missing", a.missing_roles)
                        },
                        human_size(a.size_bytes),
                        a.array_state
                    );
                }
                assembled.push(a);
            }
            Err(e) => {
                let msg = crate::error_chain(&e);
                super::print_labelled("refused", &msg);
                refused.push(msg);
                code = EXIT_FAILURE;
            }
        }
    }
    let detail = serde_json::json!({"assembled": assembled, "refused": refused});
    if json {
        println!("{detail}");
    }
    case_log("md-assemble", "md assemble --read-only", detail);
    Ok(code)
}

fn md_stop() -> anyhow::Result<u8> {
    let stopped = md::assemble::stop_all();
    let mut code = EXIT_OK;
    for s in &stopped {
        match &s.error {
            None => println!("stopped {}", s.device.display()),
            Some(e) => {
                super::esayln!("could not stop {}: {e}", s.device.display());
                code = EXIT_FAILURE;
            }
        }
    }
    let left = md::assemble::mdstat_arrays();
    if left.is_empty() {
        println!("/proc/mdstat: no array left");
    } else {
        println!("/proc/mdstat still lists: {}", left.join("; "));
    }
    case_log(
        "md-stop",
        "md stop",
        serde_json::json!({"stopped": stopped, "left": left}),
    );
    Ok(code)
}
