//! The report document, `rescue.report/1` (documented in `docs/report.md`): what [`super::build`]
//! writes as `report.json` and renders as Markdown and HTML, and what `rescue report verify` reads back.

use super::index::EvidenceFile;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `rescue.report/1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub generated: Generated,
    pub case: CaseSection,
    /// Identity of the examined machine; null when the case recorded none.
    pub host: Option<Value>,
    /// Where `host` comes from, in words; null with `host`.
    pub host_source: Option<String>,
    pub scope: Scope,
    /// Null when no timeline was built in this case.
    pub timeline: Option<TimelineSection>,
    /// Null when no triage was run in this case.
    pub findings: Option<FindingsSection>,
    pub actions: Vec<Action>,
    pub reinstall_restore: ReinstallRestore,
    pub open_items: Vec<String>,
    /// Every file of the case directory (outside the report) with its SHA-256.
    pub evidence: Vec<EvidenceFile>,
    /// Symbolic links in the case directory (not followed, not hashed).
    pub evidence_links: Vec<String>,
    pub case_log: CaseLogSection,
    /// Null when the report is unsigned.
    pub signature: Option<SignatureSection>,
}

/// When and by what the report was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// This machine's clock, RFC 3339 UTC.
    pub system_clock: String,
    /// With the case's clock offset applied; null when no offset was recorded.
    pub true_time: Option<String>,
    pub tool: String,
    pub version: String,
}

/// The case's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSection {
    pub case_id: Option<String>,
    pub examiner: Option<String>,
    pub notes: Option<String>,
    pub opened_utc: Option<String>,
    /// True time minus this machine's clock (seconds); null when the operator stated none.
    pub clock_offset_seconds: Option<i64>,
    /// The case directory as it was given when the report was built.
    pub case_dir: String,
}

/// What was examined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// Disks of the machine (from `inventory.json`); null when no inventory was taken.
    pub disks: Option<Vec<Value>>,
    pub acquisitions: Vec<Acquisition>,
    /// Memory captures (`*.lime*` files); empty when there are none.
    pub memory: Vec<EvidenceFile>,
}

/// One acquisition directory of the case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    /// Directory relative to the case directory.
    pub dir: String,
    pub evidence_id: Option<String>,
    pub source: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub complete: bool,
    /// `verified`, `FAILED` or `not verified` (from the case).
    pub verification: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub unreadable_extents: usize,
    pub hashes: BTreeMap<String, String>,
}

/// One timeline event as the report quotes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub datetime: String,
    pub timestamp: i64,
    pub message: String,
    pub source: String,
    pub path: String,
    /// The `timeline.jsonl` it came from (relative to the case directory).
    pub file: String,
    /// Why the timeline flagged the event as suspicious (its `suspicious` field), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<String>,
}

/// Highlights of the timeline(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSection {
    pub files: Vec<String>,
    pub events: u64,
    /// Lines that were not events with an integer `timestamp` (counted, not used).
    pub unparsed_lines: u64,
    pub first_event: Option<Event>,
    pub last_event: Option<Event>,
    /// Attacker activity: events the timeline flagged suspicious, events on a path a finding names,
    /// and triage's own events. The first and the last of them, and how many.
    pub first_attacker_activity: Option<Event>,
    pub last_attacker_activity: Option<Event>,
    pub attacker_events: u64,
    /// The persistence triage found (findings of a persistence category, medium or worse), each with
    /// the times the timeline and its evidence give, earliest first.
    #[serde(default)]
    pub persistence: Vec<Persistence>,
}

/// One way the attacker stays, on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persistence {
    /// The finding's id in `findings`.
    pub id: String,
    pub severity: String,
    pub category: String,
    pub path: String,
    /// The first and last timeline events on its path.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Its file's modification time from the finding's evidence.
    pub mtime: Option<String>,
}

/// The triage findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsSection {
    pub files: Vec<String>,
    /// Severity → number of findings.
    pub counts: BTreeMap<String, u64>,
    /// Every finding, most severe first, with the times the timeline and its evidence give.
    pub items: Vec<Finding>,
}

/// One finding (fields of `rescue.triage/1`) and its times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    pub category: String,
    pub path: String,
    pub why: String,
    pub evidence: Value,
    /// mtime/ctime/crtime/atime from the evidence, as given.
    pub times: BTreeMap<String, Value>,
    /// The first and last timeline events on this path.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

/// One case log entry, with the clock offset applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub seq: u64,
    pub system_clock: String,
    pub true_time: Option<String>,
    pub kind: String,
    pub command: String,
    pub outcome: String,
}

/// What reinstall and restore did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReinstallRestore {
    /// Case log results of `reinstall`, `deploy`, `restore` and `case target`.
    pub records: Vec<Action>,
    /// Every `restore-manifest.json` of the case directory.
    pub restores: Vec<RestoreSummary>,
}

/// One restore manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSummary {
    pub file: String,
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub complete: bool,
    pub counts: BTreeMap<String, u64>,
    /// `path: reason` of every refused file.
    pub refused: Vec<String>,
    /// `path: reason` of every held file.
    pub held: Vec<String>,
}

/// The case log as the report saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseLogSection {
    /// The snapshot in the report directory.
    pub file: String,
    pub entries: usize,
    pub intact: bool,
    /// Where the chain breaks, when it does.
    pub broken: Option<String>,
    /// `hash` of the last entry: write it down to prove later that the log was not changed.
    pub final_hash: Option<String>,
}

/// Who signed and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureSection {
    pub fingerprint: String,
    pub signing_subkey: Option<String>,
    pub uid: String,
    pub algorithm: String,
    pub hash: String,
    /// Files signed, each with `<file>.asc` beside it.
    pub files: Vec<String>,
}
