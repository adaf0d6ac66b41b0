//! `timeline SOURCE --out DIR`: the line-mode face of [`crate::timeline`]. Opens the source read-only
//! through [`crate::examine::source`] (mounting a disk or image), walks each root with the one walker,
//! prints progress on stderr and the summary (events per source, time span, first suspicious event,
//! zone, unparsed lines), and records the summary in the case log inside the rescue system.
//!
//! Exit codes: 0 done, 1 error, 2 usage.

use std::path::{Path, PathBuf};

use crate::args::timeline::TimelineArgs;
use crate::timeline::{self, Options, Progress, RootIn};

/// The findings file to use: `--findings`, else `findings.json` in DIR or DIR's parent, else the one
/// triage wrote beside DIR (`<case>/triage-NAME/findings.json`): the only one, or the one whose NAME
/// holds the source's name.
fn findings_file(a: &TimelineArgs) -> Option<PathBuf> {
    if let Some(f) = &a.findings {
        return Some(f.clone());
    }
    let parent = a.out.parent().unwrap_or(Path::new("."));
    if let Some(p) = [a.out.join("findings.json"), parent.join("findings.json")]
        .into_iter()
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("triage"))
        .map(|e| e.path().join("findings.json"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    if found.len() == 1 {
        return found.pop();
    }
    let name = a.source.file_name()?.to_string_lossy().into_owned();
    let mut named = found.into_iter().filter(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d.to_string_lossy().contains(&name))
    });
    match (named.next(), named.next()) {
        (Some(p), None) => Some(p),
        _ => None,
    }
}

fn window(s: &Option<String>, end: bool, flag: &str) -> anyhow::Result<Option<i64>> {
    match s {
        None => Ok(None),
        Some(t) => timeline::parse_time(t, end).map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} {t:?}: not a time (YYYY-MM-DD, \"YYYY-MM-DD HH:MM[:SS]\", RFC 3339 or @EPOCH)"
            )
        }),
    }
}

pub fn run(a: &TimelineArgs) -> anyhow::Result<u8> {
    let command = format!("timeline {} --out {}", a.source.display(), a.out.display());
    let from = window(&a.from, false, "--from")?;
    let to = window(&a.to, true, "--to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        anyhow::bail!("--from is after --to: the window holds nothing");
    }
    let mount_base = if crate::system::in_rescue_system() {
        crate::case::state_dir()
    } else {
        std::env::temp_dir()
    };
    let ex = crate::examine::source::open(&a.source, &mount_base)?;
    for n in &ex.notes {
        super::esayln!("note: {}", n.message);
    }
    if ex.roots.is_empty() {
        anyhow::bail!(
            "{}: no filesystem could be examined (see the notes above)",
            a.source.display()
        );
    }
    let several = ex.roots.len() > 1;
    let roots: Vec<RootIn> = ex
        .roots
        .iter()
        .map(|r| {
            super::esayln!("examining {} at {}", r.describe(), r.path.display());
            RootIn {
                path: r.path.clone(),
                prefix: match (several, r.partition) {
                    (true, Some(n)) => format!("/partition{n}"),
                    _ => String::new(),
                },
                device: r.device.clone(),
                partition: r.partition,
                part_uuid: r.part_uuid.clone(),
                part_label: r.part_label.clone(),
            }
        })
        .collect();
    let findings = findings_file(a);
    if let Some(f) = &findings {
        super::esayln!("triage findings: {}", f.display());
    }
    let opts = Options {
        out: a.out.clone(),
        from,
        to,
        tz: a.tz.clone(),
        findings,
        sort_budget: 0,
    };
    let mut progress = |p: Progress| match p {
        Progress::Walked { entries } => super::esayln!("walked {entries} entries"),
        Progress::Log { path, index, of } => super::esayln!("log {index}/{of}: {path}"),
        Progress::Sorting { events } => super::esayln!("sorting {events} events"),
    };
    let s = timeline::run(&roots, &opts, &mut progress, |root, stage| {
        let Some(r) = ex.roots.iter().find(|r| r.path == root) else {
            return Err(format!("{} is not a root of the source", root.display()));
        };
        let w = r.walk(stage).map_err(|e| crate::error_chain(&e))?;
        super::esayln!("body file of {} listed by {}", r.describe(), w.describe());
        Ok(w.describe())
    })?;
    drop(ex);

    let t = &s.timeline;
    super::sayln!(
        "timeline of {} ({}): {} events, {} body-file entries",
        s.host,
        a.source.display(),
        t.events,
        s.bodyfile_entries
    );
    for (src, n) in &t.per_source {
        super::sayln!("  {src:<14} {n}");
    }
    if s.roots.len() > 1 {
        for r in &s.roots {
            super::sayln!(
                "filesystem {}: {}",
                if r.prefix.is_empty() { "/" } else { &r.prefix },
                r.how
            );
        }
    }
    if let (Some(f), Some(l)) = (&t.first, &t.last) {
        super::sayln!("span: {f} .. {l}");
    }
    match &t.first_suspicious {
        Some(fs) => super::sayln!(
            "first suspicious: {} {} ({}): {}",
            fs.datetime,
            fs.source,
            fs.why,
            fs.message
        ),
        None => super::sayln!("first suspicious: none flagged"),
    }
    super::sayln!(
        "time zone for zone-less logs: {} ({}){}",
        s.zone.name,
        s.zone.from,
        if s.zone.known {
            ""
        } else {
            "; such times were read as UTC"
        }
    );
    let years: Vec<&str> = s
        .logs
        .iter()
        .filter(|l| l.stats.year_note.is_some())
        .map(|l| l.path.as_str())
        .collect();
    if !years.is_empty() {
        super::sayln!(
            "year inferred from file mtimes and rotation order for {} file(s) (see timeline-summary.json)",
            years.len()
        );
    }
    if s.unparsed > 0 {
        super::sayln!("{} unparsed lines kept in unparsed.jsonl", s.unparsed);
    }
    for l in s.logs.iter().filter(|l| l.error.is_some()) {
        super::sayln!(
            "could not read {}: {}",
            l.path,
            l.error.as_deref().unwrap_or("")
        );
    }
    let skipped: u64 = s.logs.iter().map(|l| l.stats.skipped).sum();
    if skipped > 0 {
        super::sayln!(
            "{skipped} journal records or fields not decoded (this reader decodes {})",
            s.journal_compression
        );
    }
    if !s.walk_problems.is_empty() {
        super::sayln!(
            "{} paths could not be read (see timeline-summary.json)",
            s.walk_problems.len()
        );
    }
    if s.outside_window > 0 {
        super::sayln!("{} events outside --from/--to left out", s.outside_window);
    }
    super::sayln!(
        "written to {} (SHA256SUMS lists every file)",
        a.out.display()
    );

    if crate::system::in_rescue_system() {
        super::case::log_command(
            "result",
            &command,
            serde_json::json!({
                "out": a.out,
                "events": t.events,
                "per_source": t.per_source,
                "first": t.first,
                "last": t.last,
                "first_suspicious": t.first_suspicious,
                "suspicious": t.suspicious,
                "unparsed": s.unparsed,
                "zone": s.zone,
                "sha256": s.sums.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            }),
        );
    }
    Ok(0)
}
