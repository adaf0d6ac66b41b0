//! The incident report of a case (`rescue report`): what the case directory and its hash-chained case
//! log hold, told as one document (`rescue.report/1`, documented in `docs/report.md`) in Markdown, JSON
//! and optionally HTML; a snapshot of the case log and an index of every evidence file's SHA-256 beside
//! it; with the examiner's key, detached OpenPGP signatures over all of them ([`sign`]);
//! `rescue report verify` checks a report directory ([`verify`]).
//!
//! Only what the case holds is reported: a part that is absent (no triage, no timeline, no memory
//! capture, no host identity) is said to be absent, never filled in. Never prints.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::acquire::manifest::{self, Manifest};
use crate::case::CaseState;
use crate::caselog;

mod document;
pub mod index;
mod render;
pub mod reuse;
pub mod sign;
pub mod verify;

pub use document::{
    Acquisition, Action, CaseLogSection, CaseSection, Event, Finding, FindingsSection, Generated,
    Persistence, ReinstallRestore, Report, RestoreSummary, Scope, SignatureSection,
    TimelineSection,
};

pub use self::index::{EvidenceFile, INDEX_NAME};

/// Schema of `report.json`.
pub const SCHEMA: &str = "rescue.report/1";
/// The case log snapshot in the report directory.
pub const LOG_SNAPSHOT: &str = "case-log.jsonl";
/// The signer's public key in the report directory.
pub const SIGNER_KEY: &str = "signer.asc";
/// Suffix of a detached signature.
pub const SIG_SUFFIX: &str = ".asc";
/// Severities from the most to the least urgent (findings with another word come last).
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
/// Items of a long list shown in the report; the JSON carries them all.
const LIST_CAP: usize = 200;

/// Errors building or checking a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the case directory {path}")]
    ReadCase {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no case log (case-log.jsonl): is this a case directory?")]
    NoCaseLog { path: PathBuf },
    #[error("hashing {path}")]
    HashFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    WriteReport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the report directory {out} is the case directory itself: choose a directory of its own (default: report/ inside it)"
    )]
    RefuseOut { out: PathBuf },
    #[error(transparent)]
    Sign(#[from] sign::SignError),
}

/// What to build a report from.
#[derive(Debug, Clone)]
pub struct Request {
    /// The case directory (absolute, canonical).
    pub case_dir: PathBuf,
    /// The live case log (normally `case_dir/case-log.jsonl`).
    pub log: PathBuf,
    /// The report directory (absolute, canonical; created by the caller).
    pub out: PathBuf,
    pub formats: Formats,
    /// The case state when built inside the rescue system.
    pub state: Option<CaseState>,
}

/// Which report files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub md: bool,
    pub json: bool,
    pub html: bool,
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    pub report: Report,
    /// Files written into the report directory, in order.
    pub files: Vec<String>,
}

/// Progress: the evidence file being hashed, bytes done and total over all files.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

fn write(out: &Path, name: &str, bytes: &[u8]) -> Result<(), ReportError> {
    manifest::write_durable(out, name, bytes).map_err(|e| ReportError::WriteReport {
        path: out.join(name),
        source: std::io::Error::other(e),
    })
}

/// Builds the report into `req.out`: the case log snapshot, the report files, the evidence index and,
/// with a key, a detached signature beside each of them and the signer's public key.
pub fn build(
    req: &Request,
    key: Option<&sign::SigningKey>,
    progress: Progress,
) -> Result<Built, ReportError> {
    if req.out == req.case_dir {
        return Err(ReportError::RefuseOut {
            out: req.out.clone(),
        });
    }
    let log_bytes = match fs::read(&req.log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportError::NoCaseLog {
                path: req.case_dir.clone(),
            });
        }
        Err(source) => {
            return Err(ReportError::ReadCase {
                path: req.log.clone(),
                source,
            });
        }
    };
    // Gather what the case directory holds, then hash it.
    let (files, links) = index::walk(&req.case_dir, &[req.out.clone(), req.log.clone()])?;
    let total: u64 = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut done = 0u64;
    let mut evidence = Vec::new();
    let reused = reusable_hashes(req, &log_bytes, &files);
    for f in &files {
        let rel = index::relative(&req.case_dir, f);
        if let Some((r, from)) = reused.get(f) {
            done += r.size;
            progress(&rel, done, total);
            evidence.push(EvidenceFile {
                path: rel,
                size_bytes: r.size,
                sha256: r.sha256.clone(),
                sha256_from: Some(from.clone()),
            });
            continue;
        }
        let (sha256, size_bytes) = index::hash_file(f, &mut |n| {
            done += n;
            progress(&rel, done, total);
        })?;
        evidence.push(EvidenceFile {
            path: rel,
            size_bytes,
            sha256,
            sha256_from: None,
        });
    }
    let mut report = gather(req, &log_bytes, &files, evidence, links)?;
    report.signature = key.map(|k| SignatureSection {
        fingerprint: k.fingerprint.clone(),
        signing_subkey: k.signing_subkey.clone(),
        uid: k.uid.clone(),
        algorithm: k.algorithm.clone(),
        hash: "SHA256".into(),
        files: Vec::new(),
    });
    report.open_items = open_items(&report);
    // The files to write, then sign.
    let mut outputs: Vec<(String, Vec<u8>)> = vec![(LOG_SNAPSHOT.into(), log_bytes)];
    let mut names: Vec<String> = vec![LOG_SNAPSHOT.into()];
    if req.formats.md {
        names.push("report.md".into());
    }
    if req.formats.json {
        names.push("report.json".into());
    }
    if req.formats.html {
        names.push("report.html".into());
    }
    names.push(INDEX_NAME.into());
    if let Some(s) = &mut report.signature {
        s.files = names.clone();
    }
    if req.formats.md {
        outputs.push(("report.md".into(), render::markdown(&report).into_bytes()));
    }
    if req.formats.json {
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        outputs.push(("report.json".into(), json));
    }
    if req.formats.html {
        outputs.push(("report.html".into(), render::html(&report).into_bytes()));
    }
    // The index: every evidence file as seen from the report directory, then the report's own files.
    let prefix = index::way(&req.out, &req.case_dir);
    let mut lines: Vec<(String, String)> = report
        .evidence
        .iter()
        .map(|e| (index::index_name(&prefix, &e.path), e.sha256.clone()))
        .collect();
    for (name, bytes) in &outputs {
        lines.push((name.clone(), sha256_hex(bytes)));
    }
    outputs.push((INDEX_NAME.into(), index::render(&lines).into_bytes()));
    let mut written = Vec::new();
    for (name, bytes) in &outputs {
        write(&req.out, name, bytes)?;
        written.push(name.clone());
    }
    // Older signatures in the directory would no longer match: a rebuilt report drops them.
    for name in &names {
        let _ = fs::remove_file(req.out.join(format!("{name}{SIG_SUFFIX}")));
    }
    let _ = fs::remove_file(req.out.join(SIGNER_KEY));
    if let Some(k) = key {
        for (name, bytes) in &outputs {
            let sig = k.sign(bytes, name)?;
            let sig_name = format!("{name}{SIG_SUFFIX}");
            write(&req.out, &sig_name, &sig)?;
            written.push(sig_name);
        }
        write(&req.out, SIGNER_KEY, &k.public_armoured()?)?;
        written.push(SIGNER_KEY.into());
    }
    Ok(Built {
        report,
        files: written,
    })
}

/// Image files of the case's acquisitions whose SHA-256 the case already proved ([`reuse`]): the last
/// `verify` of their directory in an intact case log passed and recorded them unchanged since. Path →
/// hash, and where it comes from in words.
fn reusable_hashes(
    req: &Request,
    log_bytes: &[u8],
    files: &[PathBuf],
) -> HashMap<PathBuf, (reuse::Reused, String)> {
    let mut out = HashMap::new();
    let Ok(entries) = caselog::verify(log_bytes) else {
        return out;
    };
    for m in named(files, "manifest.json") {
        let Some(dir) = m.parent() else { continue };
        let rel = index::relative(&req.case_dir, dir);
        let Some(e) = last_verify(&entries, &rel) else {
            continue;
        };
        for (name, r) in reuse::reusable(dir, &e.detail) {
            let from = format!(
                "{}/manifest.json, proved by verify (case log entry {}); the file is unchanged since (same inode, size, modification and change time)",
                if rel.is_empty() { "." } else { rel.as_str() },
                e.seq
            );
            out.insert(dir.join(name), (r, from));
        }
    }
    out
}

/// The last `verify DIR` result of the case log whose DIR ends with `rel` (an acquisition directory
/// relative to the case directory).
fn last_verify<'a>(entries: &'a [caselog::Entry], rel: &str) -> Option<&'a caselog::Entry> {
    entries.iter().rev().find(|e| {
        e.kind == "result"
            && e.command.split_whitespace().next() == Some("verify")
            && e.command
                .split_whitespace()
                .nth(1)
                .is_some_and(|p| Path::new(p).ends_with(rel))
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Applies the clock offset to an RFC 3339 time.
fn true_time(utc: &str, offset: Option<i64>) -> Option<String> {
    let o = offset?;
    let t = chrono::DateTime::parse_from_rfc3339(utc).ok()?;
    Some(
        (t.with_timezone(&chrono::Utc) + chrono::Duration::seconds(o))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// One line saying how a case log entry ended.
fn outcome(detail: &Value) -> String {
    if let Some(r) = detail.get("refused") {
        return format!(
            "REFUSED: {}",
            r.as_str().map_or(r.to_string(), str::to_owned)
        );
    }
    if let Some(e) = detail.get("error") {
        return format!("ERROR: {}", e.as_str().map_or(e.to_string(), str::to_owned));
    }
    if let Some(e) = detail.get("kexec_error") {
        return format!("ERROR: {}", e.as_str().map_or(e.to_string(), str::to_owned));
    }
    match detail.get("verified") {
        Some(Value::String(s)) => return format!("verified: {s}"),
        Some(Value::Bool(true)) => return "verified".into(),
        Some(Value::Bool(false)) => return "NOT verified".into(),
        _ => {}
    }
    if detail.get("report").is_some() && detail.get("proof").is_some() {
        return "written and read back".into();
    }
    if detail.get("kexec_loaded").is_some() {
        return "installer loaded for kexec".into();
    }
    // The reinstall/restore interlock's clearance (`case target`), on the examiner's word or not.
    if detail.get("cleared").and_then(Value::as_bool) == Some(true) {
        return match detail.get("override_reason").and_then(Value::as_str) {
            Some(why) => format!("cleared by OVERRIDE: {why}"),
            None => "cleared".into(),
        };
    }
    if let Some(c) = detail.get("counts") {
        let complete = detail.get("complete").and_then(Value::as_bool) == Some(true);
        return format!(
            "{}: {}",
            if complete { "complete" } else { "INCOMPLETE" },
            c.as_object()
                .map(|m| m
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    if let Some(x) = detail.get("exit").or_else(|| detail.get("exit_code")) {
        return format!("exit {x}");
    }
    let mut s = match detail {
        Value::Null => String::new(),
        v => v.to_string(),
    };
    if s.chars().count() > 160 {
        s = s.chars().take(157).collect::<String>() + "...";
    }
    s
}

fn gather(
    req: &Request,
    log_bytes: &[u8],
    files: &[PathBuf],
    evidence: Vec<EvidenceFile>,
    links: Vec<String>,
) -> Result<Report, ReportError> {
    let (entries, case_log) = match caselog::verify(log_bytes) {
        Ok(entries) => {
            let final_hash = String::from_utf8_lossy(log_bytes)
                .lines()
                .last()
                .and_then(last_hash);
            let n = entries.len();
            (
                entries,
                CaseLogSection {
                    file: LOG_SNAPSHOT.into(),
                    entries: n,
                    intact: true,
                    broken: None,
                    final_hash,
                },
            )
        }
        Err(e) => (
            Vec::new(),
            CaseLogSection {
                file: LOG_SNAPSHOT.into(),
                entries: String::from_utf8_lossy(log_bytes).lines().count(),
                intact: false,
                broken: Some(e.to_string()),
                final_hash: None,
            },
        ),
    };
    // The case's identity: the open case inside the rescue system, else the log's `case new` entry.
    let opened = entries.iter().find(|e| e.command == "case new");
    let from_log = |k: &str| opened.and_then(|e| text(&e.detail, k));
    let st = req.state.as_ref();
    let case = CaseSection {
        case_id: st
            .and_then(|s| s.case_id.clone())
            .or_else(|| from_log("case_id")),
        examiner: st
            .and_then(|s| s.examiner.clone())
            .or_else(|| from_log("examiner")),
        notes: st
            .and_then(|s| s.notes.clone())
            .or_else(|| from_log("notes")),
        opened_utc: st
            .and_then(|s| s.opened_utc.clone())
            .or_else(|| opened.map(|e| e.utc.clone())),
        clock_offset_seconds: st
            .and_then(|s| s.clock_offset_seconds)
            .or_else(|| opened.and_then(|e| e.detail.get("clock_offset_seconds")?.as_i64())),
        case_dir: req.case_dir.display().to_string(),
    };
    let offset = case.clock_offset_seconds;
    let actions: Vec<Action> = entries
        .iter()
        .map(|e| Action {
            seq: e.seq,
            system_clock: e.utc.clone(),
            true_time: true_time(&e.utc, offset),
            kind: e.kind.clone(),
            command: e.command.clone(),
            outcome: outcome(&e.detail),
        })
        .collect();
    let now = manifest::now_rfc3339();
    let generated = Generated {
        true_time: true_time(&now, offset),
        system_clock: now,
        tool: "rescue".into(),
        version: crate::VERSION.into(),
    };
    // What the case directory holds.
    let rel = |p: &Path| index::relative(&req.case_dir, p);
    let inventory: Option<Value> = fs::read(req.case_dir.join("inventory.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut acquisitions = Vec::new();
    let mut manifest_host = None;
    for m in named(files, "manifest.json") {
        let Ok(bytes) = fs::read(m) else { continue };
        let Ok(man) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        if man.schema != manifest::SCHEMA {
            continue;
        }
        let dir = m.parent().unwrap_or(&req.case_dir);
        manifest_host.get_or_insert_with(|| serde_json::to_value(&man.host).unwrap_or_default());
        acquisitions.push(Acquisition {
            dir: rel(dir),
            evidence_id: man.case.evidence_id.clone(),
            source: man.source.path.clone(),
            model: man.source.model.clone(),
            serial: man.source.serial.clone(),
            size_bytes: man.source.size_bytes,
            complete: man.complete,
            verification: verification(dir, &rel(dir), st, &entries),
            started_at: man.started_at.clone(),
            finished_at: man.finished_at.clone(),
            unreadable_extents: man.unreadable.len(),
            hashes: man.hashes.clone(),
        });
    }
    let (host, host_source) = match inventory.as_ref().and_then(|i| i.get("host").cloned()) {
        Some(h) => (Some(h), Some("inventory.json (DMI read by the rescue system on this machine)".to_owned())),
        None => match manifest_host {
            Some(h) => (Some(h), Some("the first acquisition manifest: DMI of the machine that ran the acquisition; its kernel and boot mode are those of the rescue system or host that acquired".to_owned())),
            None => (None, None),
        },
    };
    let disks = inventory.as_ref().and_then(|i| {
        i.get("disks")?.as_array().map(|ds| {
            ds.iter()
                .map(|d| d.get("device").cloned().unwrap_or(Value::Null))
                .collect()
        })
    });
    let memory: Vec<EvidenceFile> = evidence
        .iter()
        .filter(|e| {
            let name = e.path.rsplit('/').next().unwrap_or("");
            name.ends_with(".lime") || name.contains(".lime.")
        })
        .cloned()
        .collect();
    let findings = read_findings(&req.case_dir, files);
    let paths: HashMap<String, usize> = findings
        .as_ref()
        .map(|f| {
            f.items
                .iter()
                .enumerate()
                .filter(|(_, x)| !x.path.is_empty())
                .map(|(i, x)| (x.path.clone(), i))
                .collect()
        })
        .unwrap_or_default();
    let mut findings = findings;
    let timeline = read_timelines(&req.case_dir, files, &paths, findings.as_mut());
    let records = actions
        .iter()
        .zip(&entries)
        .filter(|(_, e)| {
            let first = e.command.split_whitespace().next().unwrap_or("");
            e.kind == "result"
                && (matches!(first, "reinstall" | "deploy" | "restore")
                    || e.command.starts_with("case target"))
        })
        .map(|(a, _)| a.clone())
        .collect();
    let restores = named(files, crate::restore::MANIFEST_NAME)
        .filter_map(|f| restore_summary(f, &rel(f)))
        .collect();
    Ok(Report {
        schema: SCHEMA.into(),
        generated,
        case,
        host,
        host_source,
        scope: Scope {
            disks,
            acquisitions,
            memory,
        },
        timeline,
        findings,
        actions,
        reinstall_restore: ReinstallRestore { records, restores },
        open_items: Vec::new(),
        evidence,
        evidence_links: links,
        case_log,
        signature: None,
    })
}

/// The files of the case directory with this name.
fn named<'a>(files: &'a [PathBuf], name: &'a str) -> impl Iterator<Item = &'a PathBuf> {
    files
        .iter()
        .filter(move |f| f.file_name().is_some_and(|n| n == name))
}

/// The `hash` field of a sealed case log line.
fn last_hash(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    text(&v, "hash")
}

/// Whether the case verified an acquisition: the open case's record inside the rescue system, else the
/// last `verify DIR` result in the case log whose DIR ends with the acquisition's directory.
fn verification(
    dir: &Path,
    rel: &str,
    st: Option<&CaseState>,
    entries: &[caselog::Entry],
) -> String {
    let word = |ok: bool| if ok { "verified" } else { "FAILED" }.to_owned();
    if let Some(s) = st {
        let key = dir.display().to_string();
        if let Some(a) = s.acquisitions.iter().find(|a| a.dir == key) {
            return if a.verified {
                "verified".into()
            } else {
                "not verified".into()
            };
        }
    }
    match last_verify(entries, rel) {
        Some(e) => match (e.detail.get("verified"), e.detail.get("exit")) {
            (Some(Value::Bool(ok)), _) => word(*ok),
            (_, Some(x)) => word(x.as_i64() == Some(0)),
            _ => "not verified".into(),
        },
        None => "not verified".into(),
    }
}

fn severity_rank(s: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|x| x.eq_ignore_ascii_case(s))
        .unwrap_or(SEVERITIES.len())
}

fn read_findings(case_dir: &Path, files: &[PathBuf]) -> Option<FindingsSection> {
    let mut section = FindingsSection {
        files: Vec::new(),
        counts: BTreeMap::new(),
        items: Vec::new(),
    };
    for f in files.iter().filter(|f| f.ends_with("findings.json")) {
        let Some(doc) = fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        if text(&doc, "schema").as_deref() != Some("rescue.triage/1") {
            continue;
        }
        section.files.push(index::relative(case_dir, f));
        for x in doc
            .get("findings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let evidence = x.get("evidence").cloned().unwrap_or(Value::Null);
            let times = ["mtime", "ctime", "crtime", "atime"]
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), evidence.get(*k)?.clone())))
                .filter(|(_, v)| !v.is_null())
                .collect();
            let finding = Finding {
                id: text(x, "id").unwrap_or_default(),
                severity: text(x, "severity").unwrap_or_else(|| "unknown".into()),
                category: text(x, "category").unwrap_or_default(),
                path: text(x, "path").unwrap_or_default(),
                why: text(x, "why").unwrap_or_default(),
                evidence,
                times,
                first_seen: None,
                last_seen: None,
            };
            *section.counts.entry(finding.severity.clone()).or_default() += 1;
            section.items.push(finding);
        }
    }
    if section.files.is_empty() {
        return None;
    }
    section.items.sort_by_key(|f| {
        (
            severity_rank(&f.severity),
            f.category.clone(),
            f.path.clone(),
        )
    });
    Some(section)
}

/// Triage's categories of the ways an attacker stays (docs/triage.md); the report's timeline
/// highlights list their findings of medium severity or worse with their times.
const PERSISTENCE_CATEGORIES: [&str; 15] = [
    "account",
    "ssh",
    "sudo",
    "pam",
    "cron",
    "at",
    "systemd",
    "init",
    "loader",
    "shell",
    "udev",
    "kernel-module",
    "setuid",
    "capability",
    "web",
];

/// Streams every `timeline.jsonl` of the case: counts, the first and last event, and the attacker
/// activity: events the timeline flagged suspicious, triage's events and events on paths a finding
/// names, whose times go into those findings. Then lists the persistence findings with their times.
fn read_timelines(
    case_dir: &Path,
    files: &[PathBuf],
    paths: &HashMap<String, usize>,
    findings: Option<&mut FindingsSection>,
) -> Option<TimelineSection> {
    let mut t = TimelineSection {
        files: Vec::new(),
        events: 0,
        unparsed_lines: 0,
        first_event: None,
        last_event: None,
        first_attacker_activity: None,
        last_attacker_activity: None,
        attacker_events: 0,
        persistence: Vec::new(),
    };
    let mut seen: HashMap<usize, (i64, String, i64, String)> = HashMap::new();
    for f in files.iter().filter(|f| f.ends_with("timeline.jsonl")) {
        let Ok(file) = fs::File::open(f) else {
            continue;
        };
        let name = index::relative(case_dir, f);
        t.files.push(name.clone());
        for line in std::io::BufReader::new(file).split(b'\n') {
            // A read error ends this file (counted); bytes that are no UTF-8 make an unparsed line.
            let Ok(line) = line else {
                t.unparsed_lines += 1;
                break;
            };
            let line = String::from_utf8_lossy(&line);
            if line.trim().is_empty() {
                continue;
            }
            let Some(v) = serde_json::from_str::<Value>(&line).ok() else {
                t.unparsed_lines += 1;
                continue;
            };
            let Some(ts) = v.get("timestamp").and_then(Value::as_i64) else {
                t.unparsed_lines += 1;
                continue;
            };
            t.events += 1;
            let suspicious = text(&v, "suspicious").filter(|w| !w.is_empty());
            let event = || Event {
                datetime: text(&v, "datetime").unwrap_or_default(),
                timestamp: ts,
                message: text(&v, "message").unwrap_or_default(),
                source: text(&v, "source").unwrap_or_default(),
                path: text(&v, "path").unwrap_or_default(),
                file: name.clone(),
                suspicious: suspicious.clone(),
            };
            if t.first_event.as_ref().is_none_or(|e| ts < e.timestamp) {
                t.first_event = Some(event());
            }
            if t.last_event.as_ref().is_none_or(|e| ts >= e.timestamp) {
                t.last_event = Some(event());
            }
            let path = text(&v, "path").unwrap_or_default();
            let hit = paths.get(&path).copied();
            let from_triage = text(&v, "source").is_some_and(|s| s.contains("triage"));
            if hit.is_none() && !from_triage && suspicious.is_none() {
                continue;
            }
            t.attacker_events += 1;
            if t.first_attacker_activity
                .as_ref()
                .is_none_or(|e| ts < e.timestamp)
            {
                t.first_attacker_activity = Some(event());
            }
            if t.last_attacker_activity
                .as_ref()
                .is_none_or(|e| ts >= e.timestamp)
            {
                t.last_attacker_activity = Some(event());
            }
            if let Some(i) = hit {
                let dt = text(&v, "datetime").unwrap_or_default();
                let s = seen.entry(i).or_insert((ts, dt.clone(), ts, dt.clone()));
                if ts < s.0 {
                    (s.0, s.1) = (ts, dt.clone());
                }
                if ts > s.2 {
                    (s.2, s.3) = (ts, dt);
                }
            }
        }
    }
    if let Some(f) = findings {
        for (i, (_, first, _, last)) in seen {
            if let Some(x) = f.items.get_mut(i) {
                x.first_seen = Some(first);
                x.last_seen = Some(last);
            }
        }
        t.persistence = persistence(f);
    }
    (!t.files.is_empty()).then_some(t)
}

/// The findings of a persistence category, medium or worse, earliest first: by the first timeline
/// event on their path, else by their file's mtime; those with no time last.
fn persistence(f: &FindingsSection) -> Vec<Persistence> {
    let medium = severity_rank("medium");
    let mut list: Vec<Persistence> = f
        .items
        .iter()
        .filter(|x| {
            PERSISTENCE_CATEGORIES.contains(&x.category.as_str())
                && severity_rank(&x.severity) <= medium
        })
        .map(|x| Persistence {
            id: x.id.clone(),
            severity: x.severity.clone(),
            category: x.category.clone(),
            path: x.path.clone(),
            first_seen: x.first_seen.clone(),
            last_seen: x.last_seen.clone(),
            mtime: x
                .times
                .get("mtime")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
        .collect();
    // Parsed once per item: the times with nothing else to sort by (None) go last.
    list.sort_by_cached_key(|p| {
        let when = [&p.first_seen, &p.mtime]
            .into_iter()
            .flatten()
            .find_map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .ok()
                    .map(|d| d.timestamp_micros())
            });
        (when.is_none(), when, p.path.clone())
    });
    list
}

fn restore_summary(path: &Path, rel: &str) -> Option<RestoreSummary> {
    let doc: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    if text(&doc, "schema").as_deref() != Some(crate::restore::SCHEMA) {
        return None;
    }
    let list = |action: &str| -> Vec<String> {
        doc.get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.get("action").and_then(Value::as_str) == Some(action))
            .map(|f| {
                format!(
                    "{}: {}",
                    text(f, "path").unwrap_or_default(),
                    text(f, "reason").unwrap_or_else(|| "-".into())
                )
            })
            .collect()
    };
    Some(RestoreSummary {
        file: rel.to_owned(),
        source: text(&doc, "source").unwrap_or_default(),
        target: text(&doc, "target").unwrap_or_default(),
        dry_run: doc.get("dry_run").and_then(Value::as_bool) == Some(true),
        complete: doc.get("complete").and_then(Value::as_bool) == Some(true),
        counts: doc
            .get("counts")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default(),
        refused: list("refused"),
        held: list("held"),
    })
}

/// What is still to do, from what the report found.
fn open_items(r: &Report) -> Vec<String> {
    let mut items = Vec::new();
    if !r.case_log.intact {
        items.push(format!(
            "the case log is NOT intact ({}): find out why before relying on it",
            r.case_log.broken.as_deref().unwrap_or("broken chain")
        ));
    }
    if r.case.clock_offset_seconds.is_none() {
        items.push(
            "no clock offset was recorded: every time is this machine's clock, not checked against a true time"
                .into(),
        );
    }
    if r.scope.acquisitions.is_empty() {
        items.push("no acquisition in the case directory: nothing was imaged".into());
    }
    for a in &r.scope.acquisitions {
        if !a.complete {
            items.push(format!(
                "acquisition {} is INCOMPLETE: resume it with `acquire ... --resume`",
                a.dir
            ));
        } else if a.verification != "verified" {
            items.push(format!(
                "acquisition {} is {}: run `verify` on it",
                a.dir, a.verification
            ));
        }
    }
    if r.scope.memory.is_empty() {
        items.push("no memory capture in this case: volatile evidence was not preserved".into());
    }
    match &r.findings {
        None => items.push("no triage was run (no findings.json in the case directory)".into()),
        Some(f) => {
            let urgent: u64 = f
                .counts
                .iter()
                .filter(|(s, _)| severity_rank(s) < 2)
                .map(|(_, n)| n)
                .sum();
            if urgent > 0 {
                items.push(format!(
                    "{urgent} critical/high findings: make sure the rebuild removes each of them"
                ));
            }
        }
    }
    if r.timeline.is_none() {
        items.push("no timeline was built (no timeline.jsonl in the case directory)".into());
    }
    for s in &r.reinstall_restore.restores {
        if !s.held.is_empty() {
            items.push(format!(
                "{} files held for review by the restore {}: decide on each",
                s.held.len(),
                s.file
            ));
        }
        if !s.complete {
            items.push(format!("the restore {} is INCOMPLETE", s.file));
        }
    }
    if r.signature.is_none() {
        items.push(format!(
            "the report is UNSIGNED: write down the case log's final chain hash {} (or send it out of band)",
            r.case_log.final_hash.as_deref().unwrap_or("(none)")
        ));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_is_listed_earliest_first_by_timeline_then_mtime_and_undated_last() {
        let finding =
            |id: &str, category: &str, severity: &str, first: Option<&str>, mtime: Option<&str>| {
                Finding {
                    id: id.into(),
                    severity: severity.into(),
                    category: category.into(),
                    path: format!("/{id}"),
                    why: String::new(),
                    evidence: Value::Null,
                    times: mtime
                        .map(|m| [("mtime".to_owned(), Value::from(m))].into())
                        .unwrap_or_default(),
                    first_seen: first.map(str::to_owned),
                    last_seen: first.map(str::to_owned),
                }
            };
        let f = FindingsSection {
            files: Vec::new(),
            counts: BTreeMap::new(),
            items: vec![
                finding("undated", "cron", "high", None, None),
                // A zone offset: 03:00+02:00 is 01:00 UTC, before the 02:00Z below.
                finding(
                    "late",
                    "ssh",
                    "critical",
                    Some("2026-11-28T03:00:00+02:00"),
                    None,
                ),
                finding(
                    "early",
                    "systemd",
                    "medium",
                    Some("2026-11-28T02:00:00Z"),
                    None,
                ),
                finding(
                    "by-mtime",
                    "web",
                    "high",
                    None,
                    Some("2026-11-28T00:30:00Z"),
                ),
                finding("low", "cron", "low", Some("2026-11-27T00:00:00Z"), None),
                finding("temp", "temp", "high", Some("2026-11-27T00:00:00Z"), None),
            ],
        };
        let ids: Vec<String> = persistence(&f).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["by-mtime", "late", "early", "undated"]);
    }

    #[test]
    fn the_clock_offset_moves_every_time() {
        assert_eq!(
            true_time("2026-12-05T14:00:00Z", Some(5400)).as_deref(),
            Some("2026-12-05T15:30:00Z")
        );
        assert_eq!(true_time("2026-12-05T14:00:00Z", None), None);
        assert_eq!(true_time("not a time", Some(1)), None);
    }

    #[test]
    fn outcomes_read_in_one_line() {
        let o = |v: Value| outcome(&v);
        assert_eq!(o(serde_json::json!({"refused": "no"})), "REFUSED: no");
        assert_eq!(
            o(serde_json::json!({"verified": false, "exit": 4})),
            "NOT verified"
        );
        assert_eq!(o(serde_json::json!({"exit": 0})), "exit 0");
        assert_eq!(
            o(
                serde_json::json!({"target": "/dev/sdb", "cleared": true, "override_reason": "rebuild"})
            ),
            "cleared by OVERRIDE: rebuild"
        );
        assert_eq!(
            o(serde_json::json!({"target": "/dev/sdb", "cleared": true, "override_reason": null})),
            "cleared"
        );
        assert_eq!(
            o(serde_json::json!({"counts": {"restored": 3, "held": 1}, "complete": true})),
            "complete: 1 held, 3 restored"
        );
        assert!(o(serde_json::json!({"x": "y".repeat(500)})).chars().count() <= 160);
    }

    #[test]
    fn severities_sort_most_urgent_first_and_unknown_words_last() {
        let mut v = vec!["low", "whatever", "critical", "info", "HIGH"];
        v.sort_by_key(|s| severity_rank(s));
        assert_eq!(v, ["critical", "HIGH", "low", "info", "whatever"]);
    }
}
