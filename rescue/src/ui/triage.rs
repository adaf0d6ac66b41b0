//! `rescue triage SOURCE`: opens the source read-only ([`crate::examine`]), runs the triage
//! ([`crate::triage`]), shows the findings most severe first in a table that fits the terminal (80
//! columns on a serial console), writes `findings.json` and its `SHA256SUMS` line, and in the rescue
//! system puts a summary line into the case log.
//!
//! Exit codes: 0 the triage ran and found nothing of severity high or critical; 3
//! ([`EXIT_FINDINGS`]) it found something high or critical; 1 it could not run (the source cannot be
//! opened, no Linux root in it, the output cannot be written); 2 usage.

use std::path::{Path, PathBuf};

use crate::triage::{self, Report, Severity};

/// Exit code: at least one finding of severity high or critical.
pub const EXIT_FINDINGS: u8 = 3;

/// Runs `triage`.
pub fn run(a: &crate::args::triage::TriageArgs) -> anyhow::Result<u8> {
    use anyhow::Context;
    let since = a.since.as_deref().map(triage::parse_since).transpose()?;
    let in_rescue = crate::system::in_rescue_system();
    if in_rescue {
        let mut locked = crate::case::Locked::open()?;
        crate::case::add_source(&mut locked, &a.source)?;
    }
    let out: Option<PathBuf> = match &a.out {
        Some(d) => Some(d.clone()),
        None if in_rescue => Some(default_out(&a.source)?),
        None => None,
    };
    let mount_base = if in_rescue {
        crate::case::state_dir()
    } else {
        std::env::temp_dir()
    };
    let ex = crate::examine::source::open(&a.source, &mount_base)
        .with_context(|| format!("triage of {}", a.source.display()))?;
    if !a.json {
        for root in &ex.roots {
            eprintln!(
                "examining {} of {}{}",
                root.describe(),
                a.source.display(),
                root.options
                    .as_deref()
                    .map(|o| format!(", mounted {o}"))
                    .unwrap_or_default()
            );
        }
    }
    let json = a.json;
    let mut progress = |p: triage::Progress<'_>| {
        if let triage::Progress::Walked { entries } = p
            && !json
        {
            eprint!("\r  {entries} entries walked");
            if entries % 200_000 == 0 {
                eprintln!();
            }
        }
    };
    let report = triage::run(
        &ex,
        &triage::Options {
            since,
            packages_from: a.packages_from.clone(),
            keyrings: a.keyring.clone(),
        },
        &mut progress,
    )?;
    if !json {
        eprint!("\r");
    }
    let written = match &out {
        Some(dir) => Some(triage::output::write(dir, &report)?),
        None => None,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report, super::columns()));
        if let Some(w) = &written {
            let line = format!(
                "findings.json: {} (listed in {}) sha256 {}",
                w.findings.display(),
                w.sums.display(),
                w.sha256,
            );
            super::say(&line);
        }
    }
    // Unmounted only now: the kernel drops every inode the walk read (a second or more on a large
    // root), and the findings are already shown and written by then.
    drop(ex);
    let triaged = report.roots.iter().any(|r| r.linux);
    if in_rescue {
        let mut locked = crate::case::Locked::open()?;
        // Only a triage that examined a Linux root counts as a run of the case (the menu's Triage step,
        // the restore's screening): an empty list from no root at all would read as a clean disk.
        if let Some(w) = written.as_ref().filter(|_| triaged) {
            // The case remembers the findings: every restore of this case screens with them.
            crate::case::record_triage(
                &mut locked,
                crate::case::TriageRecord {
                    source: a.source.display().to_string(),
                    findings: w.findings.display().to_string(),
                    sha256: w.sha256.clone(),
                    counts: Severity::ALL
                        .iter()
                        .map(|s| {
                            (
                                s.as_str().to_owned(),
                                report.counts.get(s).copied().unwrap_or(0),
                            )
                        })
                        .collect(),
                },
            )?;
        }
        locked.log(
            "result",
            &format!("triage {}", a.source.display()),
            serde_json::json!({
                "summary": summary(&report),
                "counts": report.counts,
                "findings": written.as_ref().map(|w| w.findings.display().to_string()),
                "sha256": written.as_ref().map(|w| w.sha256.clone()),
            }),
        )?;
    }
    if !triaged {
        anyhow::bail!(
            "{}: no Linux root to triage ({})",
            a.source.display(),
            report
                .notes
                .iter()
                .map(|n| n.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let serious = report.counts.get(&Severity::Critical).copied().unwrap_or(0)
        + report.counts.get(&Severity::High).copied().unwrap_or(0);
    Ok(if serious > 0 { EXIT_FINDINGS } else { 0 })
}

/// `<case directory>/triage-NAME` on the evidence destination (the RAM state directory when none is
/// mounted yet).
fn default_out(source: &Path) -> anyhow::Result<PathBuf> {
    let locked = crate::case::Locked::open()?;
    let base = match (&locked.state.destination, &locked.state.case_id) {
        (Some(d), Some(case)) if crate::case::destination_present(d) => {
            Path::new(&d.mountpoint).join(case)
        }
        _ => {
            eprintln!(
                "note: no evidence destination mounted: findings go to {} (RAM) until one is",
                crate::case::state_dir().display()
            );
            crate::case::state_dir()
        }
    };
    Ok(base.join(triage::default_dir_name(source)))
}

/// "2 critical, 1 high, 0 medium, 3 low, 12 info".
pub fn summary(report: &Report) -> String {
    Severity::ALL
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                report.counts.get(s).copied().unwrap_or(0),
                s.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The findings table (info findings counted, not listed), the notes and the summary, every line at
/// most `width` columns.
pub fn render(report: &Report, width: usize) -> String {
    let width = width.max(40);
    let mut out = String::new();
    for r in &report.roots {
        let line = format!(
            "root {}: {}{}",
            r.description,
            r.os.as_deref()
                .unwrap_or(if r.linux { "Linux" } else { "not Linux" }),
            match &r.package_db {
                Some(db) => format!(", package database {db}"),
                None => String::new(),
            }
        );
        for l in super::wrap(&line, width, 2) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let listed: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if !listed.is_empty() {
        out.push_str(&format!(
            "{:<8} {:<13} {}\n",
            "SEVERITY", "CATEGORY", "PATH / WHY"
        ));
        for f in listed {
            let mark = if f.in_window { "*" } else { "" };
            let head = format!(
                "{:<8} {:<13} ",
                format!("{}{mark}", f.severity.as_str()),
                super::truncate(&f.category, 13)
            );
            let room = width.saturating_sub(head.chars().count());
            out.push_str(&head);
            out.push_str(&super::truncate(&f.path, room));
            out.push('\n');
            let why = format!("         {}", f.why);
            for l in super::wrap(&why, width, 0) {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    for n in &report.notes {
        let line = format!(
            "note{}: {}",
            n.partition
                .map(|p| format!(" (partition {p})"))
                .unwrap_or_default(),
            n.message
        );
        for l in super::wrap(&line, width, 2) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let line = format!(
        "triage: {}{}",
        summary(report),
        if report.since.is_some() {
            "; * = changed in the --since window"
        } else {
            ""
        }
    );
    for l in super::wrap(&line, width, 2) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}
