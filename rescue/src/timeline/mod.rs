//! `rescue timeline`: what happened when on an examined system, in formats examiners already use.
//!
//! One pass over the filesystem walker's entries writes `bodyfile.txt` (Sleuth Kit body file 3,
//! [`bodyfile`]) and picks out the logs ([`logs::classify`]); then each log is streamed into events
//! ([`logs`]), triage findings join them ([`findings`]), and the events are sorted in bounded memory
//! ([`sort`]) into `timeline.jsonl` (Timesketch) and `timeline.csv` ([`output`]). Lines no parser
//! understood go to `unparsed.jsonl`; `timeline-summary.json` says what was read, how years and zones
//! were inferred, and what was skipped; `SHA256SUMS` lists every output.
//!
//! Never: print, write outside the output directory, open the examined root for writing, run anything
//! found on it. The filesystem walk and mounting belong to `examine`; this module takes entries.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub mod bodyfile;
pub mod event;
pub mod findings;
pub mod logs;
pub mod mounts;
pub mod output;
pub mod sort;
pub mod tz;

use bodyfile::{BodyWriter, WalkEntry};
use event::Event;
use logs::{FileStats, LogFile, Sink};

/// The output files, in the order `SHA256SUMS` lists them.
pub const OUTPUTS: [&str; 5] = [
    "bodyfile.txt",
    "timeline.jsonl",
    "timeline.csv",
    "unparsed.jsonl",
    "timeline-summary.json",
];

/// Memory for sorting before runs spill to disk.
pub const SORT_BUDGET: usize = 256 << 20;

/// Errors building a timeline.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("creating the output directory {path}")]
    CreateOut {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already holds a timeline (timeline.jsonl); choose an empty directory")]
    OutNotEmpty { path: PathBuf },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Zone(#[from] tz::TzError),
    #[error(transparent)]
    Findings(#[from] findings::FindingsError),
    #[error(transparent)]
    Sort(#[from] sort::SortError),
    #[error("sorting the events")]
    Finish(#[from] sort::FinishError),
}

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub out: PathBuf,
    /// Inclusive window, UTC microseconds.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// `--tz`: the zone for zone-less log times.
    pub tz: Option<String>,
    /// A triage `findings.json` to add.
    pub findings: Option<PathBuf>,
    /// Sort memory; [`SORT_BUDGET`] when 0.
    pub sort_budget: usize,
}

/// A walk entry the walker could not read (a directory it could not list, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalkProblem {
    pub path: String,
    pub why: String,
}

/// Progress for the UI.
#[derive(Debug, Clone)]
pub enum Progress {
    Walked {
        entries: u64,
    },
    Log {
        path: String,
        index: usize,
        of: usize,
    },
    Sorting {
        events: u64,
    },
}

/// Per log file, what it gave.
#[derive(Debug, Clone, Serialize)]
pub struct LogSummary {
    pub path: String,
    pub kind: logs::LogKind,
    #[serde(flatten)]
    pub stats: FileStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a timeline run produced (also written as `timeline-summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub host: String,
    pub zone: tz::ZoneChoice,
    pub window: Window,
    pub bodyfile_entries: u64,
    /// Each filesystem examined, and where it was mounted on the examined system.
    pub roots: Vec<RootSummary>,
    pub walk_problems: Vec<WalkProblem>,
    pub logs: Vec<LogSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<LogSummary>,
    pub unparsed: u64,
    pub outside_window: u64,
    pub journal_compression: &'static str,
    pub timeline: output::Written,
    /// SHA-256 of each output (also in `SHA256SUMS`).
    #[serde(skip)]
    pub sums: Vec<(String, String)>,
}

/// One examined filesystem in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RootSummary {
    /// Its body-file prefix (empty for a single root, `/partition2`, or its mount point).
    pub prefix: String,
    /// Where the examined system mounted it (`/` for the one with `/etc`, `/var` from fstab), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted_at: Option<String>,
    /// How that was known.
    pub how: String,
    /// How its body-file entries were listed (`the ext reader`, `the mounted walk`, and why not
    /// the ext reader when it could have been).
    pub listed_by: String,
}

/// The `--from`/`--to` window as given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Events go to the sorter, unparsed lines to `unparsed.jsonl`.
struct Collector<'a> {
    sorter: sort::Sorter,
    unparsed: BufWriter<File>,
    unparsed_n: u64,
    _p: std::marker::PhantomData<&'a ()>,
}

type SinkResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

impl Sink for Collector<'_> {
    fn event(&mut self, e: Event) -> SinkResult {
        self.sorter.push(&e)?;
        Ok(())
    }
    fn unparsed(&mut self, path: &str, line: u64, raw: &str, why: &str) -> SinkResult {
        self.unparsed_n += 1;
        let v = serde_json::json!({"path": path, "line": line, "why": why, "raw": raw});
        writeln!(self.unparsed, "{v}")?;
        Ok(())
    }
}

/// The examined system's host name (`/etc/hostname` in the root), or `unknown`.
pub fn host_name(root: &Path) -> String {
    fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn rel_to_shown(path: &[u8]) -> String {
    let s = String::from_utf8_lossy(path);
    if s.starts_with('/') {
        s.into_owned()
    } else {
        format!("/{s}")
    }
}

/// The walk stage: every entry becomes a body-file line; the regular files that are logs are noted
/// for the next stage. Fed by [`crate::examine::walk`] (as its [`Visitor`]) or, in tests, by hand.
///
/// [`Visitor`]: crate::examine::walk::Visitor
pub struct WalkStage<'a> {
    root: PathBuf,
    /// Prefix for body-file names when a source has several roots (`/partition2`, `/var`).
    prefix: Vec<u8>,
    /// Where the examined system mounted this root (`/var`), empty for `/` or unknown: log paths
    /// are classified as the system saw them.
    mount_at: Vec<u8>,
    body: BodyWriter<BufWriter<File>>,
    body_path: PathBuf,
    found: Vec<LogFile>,
    problems: Vec<WalkProblem>,
    error: Option<TimelineError>,
    progress: &'a mut dyn FnMut(Progress),
}

impl WalkStage<'_> {
    /// Takes one entry (path as on the examined system) with its mtime in UNIX seconds.
    pub fn add(&mut self, e: &WalkEntry) {
        if self.error.is_some() {
            return;
        }
        let r = if self.prefix.is_empty() {
            self.body.write(e)
        } else {
            let mut p = e.clone();
            p.path = [self.prefix.as_slice(), &e.path].concat();
            self.body.write(&p)
        };
        if let Err(source) = r {
            self.error = Some(TimelineError::Write {
                path: self.body_path.clone(),
                source,
            });
            return;
        }
        if self.body.lines.is_multiple_of(50_000) {
            (self.progress)(Progress::Walked {
                entries: self.body.lines,
            });
        }
        if e.mode & libc::S_IFMT != libc::S_IFREG {
            return;
        }
        let shown = if self.mount_at.is_empty() {
            rel_to_shown(&e.path)
        } else {
            rel_to_shown(&[self.mount_at.as_slice(), &e.path].concat())
        };
        if let Some(kind) = logs::classify(&shown) {
            let rel = e.path.strip_prefix(b"/").unwrap_or(&e.path);
            let name = shown.rsplit('/').next().unwrap_or("");
            self.found.push(LogFile {
                kind,
                real: self.root.join(std::ffi::OsStr::from_bytes(rel)),
                rotation: logs::rotation(name).1,
                mtime: e.mtime.map(|(s, _)| s).unwrap_or(0),
                shown,
            });
        }
    }

    /// Notes an entry the walker could not read.
    pub fn problem(&mut self, path: &[u8], why: String) {
        self.problems.push(WalkProblem {
            path: rel_to_shown(path),
            why,
        });
    }
}

impl crate::examine::walk::Visitor for WalkStage<'_> {
    fn entry(&mut self, entry: &crate::examine::walk::Entry<'_>) -> crate::examine::walk::Visit {
        use crate::examine::walk::{FileKind, Visit};
        let m = &entry.meta;
        let ifmt = match m.kind {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::Unknown => 0,
        };
        let t = |t: crate::examine::walk::Time| Some((t.secs, t.nanos));
        let e = WalkEntry {
            path: entry.inner_path().to_vec(),
            mode: ifmt | m.mode,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            inode: m.inode,
            atime: t(m.atime),
            mtime: t(m.mtime),
            ctime: t(m.ctime),
            crtime: m.crtime.and_then(t),
            link_target: (m.kind == FileKind::Symlink)
                .then(|| entry.read_link().ok())
                .flatten(),
        };
        self.add(&e);
        if self.error.is_some() {
            Visit::Stop
        } else {
            Visit::Continue
        }
    }

    fn unreadable(&mut self, path: &[u8], error: &std::io::Error) {
        self.problem(path, error.to_string());
    }
}

/// One root of the examined source: where it is mounted, and the body-file prefix for its names
/// (empty for a single root).
#[derive(Debug, Clone)]
pub struct RootIn {
    pub path: PathBuf,
    pub prefix: String,
    /// The device it was mounted from (read-only), to read its UUID and label for the fstab match.
    pub device: Option<PathBuf>,
    /// Its partition on the examined disk: number, `PARTUUID`, GPT name (fstab may name it so).
    pub partition: Option<u32>,
    pub part_uuid: Option<String>,
    pub part_label: Option<String>,
}

/// Builds the timeline of the system whose roots are mounted at `roots`: `feed` walks one root into
/// the [`WalkStage`] (in production `examine::source::Root::walk`, which reads an ext filesystem's
/// bytes itself and walks anything else through its mount) and says how it listed it. The host name
/// and zone come from the first root that has an `/etc`.
pub fn run(
    roots: &[RootIn],
    opts: &Options,
    progress: &mut dyn FnMut(Progress),
    mut feed: impl FnMut(&Path, &mut WalkStage<'_>) -> Result<String, String>,
) -> Result<Summary, TimelineError> {
    let out = &opts.out;
    fs::create_dir_all(out).map_err(|source| TimelineError::CreateOut {
        path: out.clone(),
        source,
    })?;
    if out.join("timeline.jsonl").exists() {
        return Err(TimelineError::OutNotEmpty { path: out.clone() });
    }
    let werr = |p: &Path| {
        let p = p.to_owned();
        move |source| TimelineError::Write { path: p, source }
    };
    let system = roots
        .iter()
        .find(|r| r.path.join("etc").is_dir())
        .or(roots.first())
        .map(|r| r.path.clone())
        .unwrap_or_default();
    let zone = tz::Zone::choose(opts.tz.as_deref(), &system)?;
    let host = host_name(&system);
    // Where the system mounted each other root (fstab by UUID or label): a separate /var's logs
    // are then read as /var/log/...; its body-file names carry the mount point.
    let fstab_text = fs::read_to_string(system.join("etc/fstab")).unwrap_or_default();
    let fstab = mounts::parse_fstab(&fstab_text);
    let root_spec = mounts::root_spec(&fstab_text);
    let root_disk = root_spec
        .as_deref()
        .and_then(mounts::disk_and_number)
        .map(|d| d.0);
    let mut root_summaries = Vec::new();
    let placed: Vec<(String, Vec<u8>)> = roots
        .iter()
        .map(|r| {
            if r.path == system {
                // The system's root: its names as the system saw them (`/etc/passwd`).
                let is_root = system.join("etc").is_dir();
                let prefix = if is_root {
                    String::new()
                } else {
                    r.prefix.clone()
                };
                root_summaries.push(RootSummary {
                    prefix: prefix.clone(),
                    mounted_at: is_root.then(|| "/".to_owned()),
                    how: if is_root {
                        "the examined system's root (it holds /etc)"
                    } else {
                        "no filesystem holds /etc: names as found"
                    }
                    .to_owned(),
                    listed_by: String::new(),
                });
                return (prefix, Vec::new());
            }
            let id = r
                .device
                .as_deref()
                .and_then(mounts::fs_id)
                .map(|id| mounts::FsId {
                    partition: r.partition,
                    part_uuid: r.part_uuid.clone(),
                    part_label: r.part_label.clone(),
                    ..id
                });
            match id
                .as_ref()
                .and_then(|id| mounts::mount_point(&fstab, id, root_disk))
            {
                Some(e) => {
                    root_summaries.push(RootSummary {
                        prefix: e.mount_point.clone(),
                        mounted_at: Some(e.mount_point.clone()),
                        how: format!("/etc/fstab names it {} at {}", e.spec, e.mount_point),
                        listed_by: String::new(),
                    });
                    (e.mount_point.clone(), e.mount_point.clone().into_bytes())
                }
                None => {
                    root_summaries.push(RootSummary {
                        prefix: r.prefix.clone(),
                        mounted_at: None,
                        how: match &id {
                            Some(id) => format!(
                                "not in /etc/fstab (UUID {}, label {})",
                                id.uuid.as_deref().unwrap_or("none"),
                                id.label.as_deref().unwrap_or("none")
                            ),
                            None => "its filesystem has no UUID or label we read".to_owned(),
                        },
                        listed_by: String::new(),
                    });
                    (r.prefix.clone(), Vec::new())
                }
            }
        })
        .collect();

    // 1. The walk: body file lines, and the logs among the entries.
    let body_path = out.join("bodyfile.txt");
    let body = BodyWriter::new(BufWriter::with_capacity(
        1 << 20,
        File::create(&body_path).map_err(werr(&body_path))?,
    ));
    let mut stage = WalkStage {
        root: PathBuf::new(),
        prefix: Vec::new(),
        mount_at: Vec::new(),
        body,
        body_path: body_path.clone(),
        found: Vec::new(),
        problems: Vec::new(),
        error: None,
        progress,
    };
    for ((r, (prefix, mount_at)), summary) in roots.iter().zip(&placed).zip(&mut root_summaries) {
        stage.root = r.path.clone();
        stage.prefix = prefix.clone().into_bytes();
        stage.mount_at = mount_at.clone();
        match feed(&r.path, &mut stage) {
            Ok(how) => summary.listed_by = how,
            Err(why) => stage.problem(b"", format!("walking {}: {why}", r.path.display())),
        }
        if let Some(e) = stage.error.take() {
            return Err(e);
        }
    }
    let WalkStage {
        body,
        mut found,
        problems,
        progress,
        ..
    } = stage;
    let bodyfile_entries = body.lines;
    body.finish()
        .and_then(|mut w| w.flush())
        .map_err(werr(&body_path))?;
    progress(Progress::Walked {
        entries: bodyfile_entries,
    });
    // Oldest rotation first within a log, so the summary reads in time order.
    found.sort_by(|a, b| {
        (
            a.kind,
            logs::rotation(a.shown.rsplit('/').next().unwrap_or("")).0,
            std::cmp::Reverse(a.rotation),
            &a.shown,
        )
            .cmp(&(
                b.kind,
                logs::rotation(b.shown.rsplit('/').next().unwrap_or("")).0,
                std::cmp::Reverse(b.rotation),
                &b.shown,
            ))
    });

    // 2. Logs and findings → events.
    let unparsed_path = out.join("unparsed.jsonl");
    let budget = if opts.sort_budget == 0 {
        SORT_BUDGET
    } else {
        opts.sort_budget
    };
    let mut col = Collector {
        sorter: sort::Sorter::new(&out.join(".sort"), budget, opts.from, opts.to),
        unparsed: BufWriter::new(File::create(&unparsed_path).map_err(werr(&unparsed_path))?),
        unparsed_n: 0,
        _p: std::marker::PhantomData,
    };
    // Read newest rotation first, so each older rotation knows where the newer one begins (a bound
    // on its inferred year); the summary keeps the oldest-first order.
    let mut log_summaries = Vec::new();
    let n_logs = found.len();
    let mut first_of: std::collections::HashMap<(logs::LogKind, String), logs::NewerRotation> =
        std::collections::HashMap::new();
    for (i, f) in found.iter().rev().enumerate() {
        progress(Progress::Log {
            path: f.shown.clone(),
            index: i + 1,
            of: n_logs,
        });
        let (dir, name) = f.shown.rsplit_once('/').unwrap_or(("", &f.shown));
        let key = (f.kind, format!("{dir}/{}", logs::rotation(name).0));
        let mut ctx = logs::Context {
            file: f,
            host: &host,
            zone: &zone,
            sink: &mut col,
            stats: FileStats::default(),
            newer: first_of.get(&key).cloned(),
        };
        let r = logs::parse(&mut ctx);
        let stats = ctx.stats;
        if let Some(first_time) = stats.first_time {
            first_of.insert(
                key,
                logs::NewerRotation {
                    shown: f.shown.clone(),
                    first_time,
                },
            );
        }
        log_summaries.push(LogSummary {
            path: f.shown.clone(),
            kind: f.kind,
            stats,
            error: r.err().map(|e| crate::error_chain(&e)),
        });
    }
    log_summaries.reverse();
    let findings = match &opts.findings {
        Some(p) => {
            let stats = findings::read(p, &host, &mut col)?;
            Some(LogSummary {
                path: p.display().to_string(),
                kind: logs::LogKind::Audit,
                stats,
                error: None,
            })
        }
        None => None,
    };
    col.unparsed.flush().map_err(werr(&unparsed_path))?;
    let unparsed = col.unparsed_n;
    drop(col.unparsed);

    // 3. Sort and write.
    progress(Progress::Sorting {
        events: col.sorter.kept,
    });
    let outside_window = col.sorter.outside;
    let jpath = out.join("timeline.jsonl");
    let cpath = out.join("timeline.csv");
    let j = BufWriter::with_capacity(1 << 20, File::create(&jpath).map_err(werr(&jpath))?);
    let c = BufWriter::with_capacity(1 << 20, File::create(&cpath).map_err(werr(&cpath))?);
    let mut w = output::TimelineWriter::new(j, c).map_err(werr(&cpath))?;
    col.sorter.finish(|_, line| w.line(line))?;
    let (_, _, written) = w.finish().map_err(werr(&jpath))?;

    let mut summary = Summary {
        schema: "rescue.timeline/1",
        host,
        zone: zone.choice.clone(),
        window: Window {
            from: opts.from.map(event::iso8601),
            to: opts.to.map(event::iso8601),
        },
        bodyfile_entries,
        roots: root_summaries,
        walk_problems: problems,
        logs: log_summaries,
        findings,
        unparsed,
        outside_window,
        journal_compression: logs::journal::SUPPORTED_COMPRESSION,
        timeline: written,
        sums: Vec::new(),
    };
    let spath = out.join("timeline-summary.json");
    let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    fs::write(&spath, &json).map_err(werr(&spath))?;

    // 4. SHA256SUMS.
    let mut sums = Vec::new();
    for name in OUTPUTS {
        let p = out.join(name);
        sums.push((name.to_owned(), sha256_file(&p).map_err(werr(&p))?));
    }
    let sums_path = out.join("SHA256SUMS");
    let text: String = sums.iter().map(|(n, h)| format!("{h}  {n}\n")).collect();
    fs::write(&sums_path, text).map_err(werr(&sums_path))?;
    summary.sums = sums;
    Ok(summary)
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Parses a `--from`/`--to` time: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`, RFC 3339, or `@EPOCH`
/// (zone-less forms are UTC). `end` makes a bare date mean the end of that day.
pub fn parse_time(s: &str, end: bool) -> Option<i64> {
    let s = s.trim();
    if let Some(e) = s.strip_prefix('@') {
        return e.parse::<i64>().ok().map(|v| v * 1_000_000);
    }
    if s.len() == 10 {
        let day = format!("{s}T00:00:00Z");
        if let (logs::syslog::Stamp::Utc(us), _) = logs::syslog::iso_time(&day)? {
            return Some(if end { us + 86_400_000_000 - 1 } else { us });
        }
        return None;
    }
    let padded = if s.len() == 16 {
        format!("{s}:00")
    } else {
        s.to_owned()
    };
    match logs::syslog::iso_time(&padded)? {
        (logs::syslog::Stamp::Utc(us), "") => Some(us),
        (logs::syslog::Stamp::Local(c), "") => {
            Some(c.as_utc_seconds() * 1_000_000 + i64::from(c.micros))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
