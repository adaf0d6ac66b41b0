//! Triage of a suspect Linux root, offline: how the attacker stays. Reads the examined root only
//! ([`crate::examine`]: mounted read-only, or a directory) and never executes or loads anything from
//! it. Detectors over configuration ([`config`]: accounts, SSH, sudoers, PAM, cron/at, systemd,
//! init scripts, the dynamic loader, shell start-up files, udev, kernel module loading) and one walk
//! of the whole root ([`files`]: setuid/setgid and capabilities, temporary directories, hidden
//! directories, names imitating system ones, kernel modules, web shells). Every finding carries its
//! evidence (sha256, mode, owner, times, owning package) and the result is `findings.json`
//! (`rescue.triage/1`, see `docs/triage.md`).
//!
//! Never prints, never writes into the examined root; output files only into the directory asked for.

pub mod config;
pub mod files;
pub mod output;
pub mod owners;
pub mod patterns;
pub mod rootfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use rootfs::RootFs;

/// `findings.json` schema name.
pub const SCHEMA: &str = "rescue.triage/1";
/// The file name of the findings in the output directory.
pub const FINDINGS_FILE: &str = "findings.json";

/// Errors of a triage run.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("examining {path}")]
    Examine {
        path: PathBuf,
        #[source]
        source: crate::examine::source::ExamineError,
    },
    #[error("walking {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: crate::examine::walk::WalkError,
    },
    #[error("opening the root {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{text:?} is not a time: give \"YYYY-MM-DD\", \"YYYY-MM-DD HH:MM:SS\" (UTC) or RFC 3339"
    )]
    ParseSince { text: String },
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// What a finding is about (the `category` of `findings.json`).
pub mod category {
    pub const ACCOUNT: &str = "account";
    pub const SSH: &str = "ssh";
    pub const SUDO: &str = "sudo";
    pub const PAM: &str = "pam";
    pub const CRON: &str = "cron";
    pub const AT: &str = "at";
    pub const SYSTEMD: &str = "systemd";
    pub const INIT: &str = "init";
    pub const LOADER: &str = "loader";
    pub const SHELL: &str = "shell";
    pub const UDEV: &str = "udev";
    pub const KERNEL_MODULE: &str = "kernel-module";
    pub const SETUID: &str = "setuid";
    pub const CAPABILITY: &str = "capability";
    pub const TEMP: &str = "temp";
    pub const HIDDEN: &str = "hidden";
    pub const IMITATION: &str = "imitation";
    pub const WEB: &str = "web";
    pub const PACKAGE: &str = "package";
    pub const WINDOW: &str = "window";
}

/// The facts behind a finding, about the file it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// SHA-256 of a regular file's contents.
    pub sha256: Option<String>,
    /// `ls -l` style type and permissions with the octal mode: `-rwsr-xr-x 4755`.
    pub mode: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// User and group names from the examined root's own `passwd`/`group`.
    pub owner: Option<String>,
    pub group: Option<String>,
    pub size: Option<u64>,
    /// RFC 3339 UTC with nanoseconds.
    pub mtime: Option<String>,
    pub ctime: Option<String>,
    /// Birth time, where the filesystem records one.
    pub crtime: Option<String>,
    /// The package that owns the path; `null` with `package_db` set: owned by none.
    pub package: Option<String>,
    /// The package database consulted (`dpkg`, `rpm`), `null` when the root has none.
    pub package_db: Option<String>,
    /// The line (or an excerpt) of the file the finding is about, with its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_number: Option<usize>,
    /// For a symlink: where it points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable across runs on the same input: derived from root, category, path and why.
    pub id: String,
    pub severity: Severity,
    pub category: String,
    /// Absolute path inside the examined root, always starting with `/`.
    pub path: String,
    pub why: String,
    pub evidence: Evidence,
    /// Which examined root (`partition 2 (ext4)`, `the directory`).
    pub root: String,
    /// True when the path changed (mtime, ctime or crtime) inside the `--since` window.
    pub in_window: bool,
}

/// One examined root in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootReport {
    pub description: String,
    pub partition: Option<u32>,
    pub fstype: Option<String>,
    pub device: Option<String>,
    pub mount_options: Option<String>,
    /// A Linux root (it has `/etc` and `/usr` or `/bin`): only such roots are triaged.
    pub linux: bool,
    /// `PRETTY_NAME` of its `os-release`.
    pub os: Option<String>,
    pub package_db: Option<String>,
    pub entries_walked: u64,
    pub unreadable: u64,
    /// How the entries were listed: "the ext reader", or "the mounted walk" (with why not the ext
    /// reader, for an ext filesystem it refused).
    #[serde(default)]
    pub walker: Option<String>,
}

/// Something that was not examined, and why (an encrypted partition, a missing package database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteReport {
    pub partition: Option<u32>,
    pub kind: String,
    pub message: String,
}

/// `findings.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool: crate::acquire::manifest::ToolInfo,
    pub source: String,
    pub source_kind: String,
    pub partition_table: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    /// The `--since` window's start (RFC 3339), when given.
    pub since: Option<String>,
    pub roots: Vec<RootReport>,
    pub notes: Vec<NoteReport>,
    /// Findings per severity.
    pub counts: BTreeMap<Severity, usize>,
    /// Most severe first, then by path.
    pub findings: Vec<Finding>,
}

/// What a triage run is asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start of the attack window (seconds since the epoch).
    pub since: Option<i64>,
    /// `--packages-from MEDIA`: a mirror or medium with signed metadata and `.deb`s.
    pub packages_from: Option<PathBuf>,
    /// Keyrings trusted for that metadata (empty: the embedded keys).
    pub keyrings: Vec<PathBuf>,
}

/// Progress of a run, for the UI.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Root { description: &'a str },
    Walked { entries: u64 },
}

/// Parses `--since`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (UTC) or RFC 3339.
pub fn parse_since(text: &str) -> Result<i64, TriageError> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(d.and_utc().timestamp());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(dt.and_utc().timestamp());
    }
    Err(TriageError::ParseSince {
        text: text.to_owned(),
    })
}

/// RFC 3339 UTC with nanoseconds.
pub fn rfc3339(t: crate::examine::walk::Time) -> String {
    chrono::DateTime::from_timestamp(t.secs, t.nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| format!("{}.{:09}", t.secs, t.nanos))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Collects the findings of one root.
pub struct Collector<'a> {
    pub fs: &'a RootFs,
    pub owners: &'a owners::Owners,
    pub since: Option<i64>,
    root_label: String,
    findings: Vec<Finding>,
}

impl<'a> Collector<'a> {
    pub fn new(fs: &'a RootFs, owners: &'a owners::Owners, since: Option<i64>, root: &str) -> Self {
        Collector {
            fs,
            owners,
            since,
            root_label: root.to_owned(),
            findings: Vec::new(),
        }
    }

    /// Adds a finding about `path` (inside the root), gathering its evidence.
    pub fn add(
        &mut self,
        severity: Severity,
        category: &str,
        path: &[u8],
        why: String,
    ) -> &mut Finding {
        let evidence = self.fs.evidence(path, self.owners);
        self.push(severity, category, path, why, evidence)
    }

    /// Adds a finding with the evidence already gathered.
    pub fn push(
        &mut self,
        severity: Severity,
        category: &str,
        path: &[u8],
        why: String,
        evidence: Evidence,
    ) -> &mut Finding {
        let path = String::from_utf8_lossy(path).into_owned();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let in_window = self.since.is_some_and(|s| {
            [&evidence.mtime, &evidence.ctime, &evidence.crtime]
                .into_iter()
                .flatten()
                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .any(|t| t.timestamp() >= s)
        });
        let id = finding_id(&self.root_label, category, &path, &why, None);
        self.findings.push(Finding {
            id,
            severity,
            category: category.to_owned(),
            path,
            why,
            evidence,
            root: self.root_label.clone(),
            in_window,
        });
        self.findings.last_mut().expect("just pushed")
    }

    /// Adds a finding with a line of the file as part of the evidence.
    pub fn add_line(
        &mut self,
        severity: Severity,
        category: &str,
        path: &[u8],
        line_number: usize,
        line: &str,
        why: String,
    ) {
        let f = self.add(severity, category, path, why);
        f.evidence.line = Some(excerpt(line));
        f.evidence.line_number = Some(line_number);
        f.id = finding_id(
            &f.root,
            &f.category,
            &f.path,
            &f.why,
            Some((line_number, line)),
        );
    }

    /// Adds `severity` when `path` is owned by no package ("not owned" checks are skipped when the
    /// root has no package database we read: see [`owners::Owners::note`]). Returns whether it did.
    pub fn if_unowned(
        &mut self,
        severity: Severity,
        category: &str,
        path: &[u8],
        what: &str,
    ) -> bool {
        if !self.owners.unowned(path) {
            return false;
        }
        self.add(
            severity,
            category,
            path,
            format!("{what} not owned by any package"),
        );
        true
    }

    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }
}

/// `TR-` and 10 hex digits of SHA-256 over root, category, path, why and the line (when the finding is
/// about one): the same input gives the same id on every run.
fn finding_id(
    root: &str,
    category: &str,
    path: &str,
    why: &str,
    line: Option<(usize, &str)>,
) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [root, category, path, why] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if let Some((n, l)) = line {
        h.update(n.to_le_bytes());
        h.update(l.as_bytes());
    }
    let d = h.finalize();
    format!(
        "TR-{}",
        d[..5]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A line shortened to 200 characters for evidence.
pub fn excerpt(line: &str) -> String {
    let t = line.trim();
    if t.chars().count() > 200 {
        format!("{}…", t.chars().take(200).collect::<String>())
    } else {
        t.to_owned()
    }
}

/// Is this root a Linux system (an `/etc` and binaries)?
fn is_linux_root(fs: &RootFs) -> bool {
    fs.is_dir(b"/etc") && (fs.is_dir(b"/usr") || fs.is_dir(b"/bin"))
}

/// `PRETTY_NAME` of `/etc/os-release` (or `/usr/lib/os-release`).
fn os_name(fs: &RootFs) -> Option<String> {
    let text = fs
        .read(b"/etc/os-release")
        .or_else(|| fs.read(b"/usr/lib/os-release"))?;
    String::from_utf8_lossy(&text).lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_owned())
    })
}

/// Triages every Linux root of an opened source.
pub fn run(
    ex: &crate::examine::source::Examined,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, TriageError> {
    let started_at = now_rfc3339();
    let mut notes: Vec<NoteReport> = ex
        .notes
        .iter()
        .map(|n| NoteReport {
            partition: n.partition,
            kind: n.kind.as_str().to_owned(),
            message: n.message.clone(),
        })
        .collect();
    let mut roots = Vec::new();
    let mut findings = Vec::new();
    for root in &ex.roots {
        let description = root.describe();
        progress(Progress::Root {
            description: &description,
        });
        let fs = RootFs::open(&root.path).map_err(|source| TriageError::OpenRoot {
            path: root.path.clone(),
            source,
        })?;
        let mut rr = RootReport {
            description: description.clone(),
            partition: root.partition,
            fstype: root.fstype.clone(),
            device: root.device.as_ref().map(|d| d.display().to_string()),
            mount_options: root.options.clone(),
            linux: is_linux_root(&fs),
            os: os_name(&fs),
            package_db: None,
            entries_walked: 0,
            unreadable: 0,
            walker: None,
        };
        if !rr.linux {
            notes.push(NoteReport {
                partition: root.partition,
                kind: "not-linux".into(),
                message: format!(
                    "{description}: no /etc with /usr or /bin: not a Linux root, not triaged"
                ),
            });
            roots.push(rr);
            continue;
        }
        let owners = owners::Owners::load(&root.path);
        rr.package_db = owners.kind().map(str::to_owned);
        if let Some(n) = owners.note() {
            notes.push(NoteReport {
                partition: root.partition,
                kind: "package-db".into(),
                message: format!("{description}: {n}"),
            });
        }
        let mut c = Collector::new(&fs, &owners, opts.since, &description);
        // The package verify (every package file read and hashed) runs on its own threads while this
        // one reads the configuration and walks the root: both are mostly waiting for the disk.
        // Package files are found through the mount and, on an ext filesystem, read by inode from
        // its bytes ([`crate::pkgdb::ByInode`]).
        let volume = root.ext_volume();
        let ext_fs = volume
            .as_ref()
            .and_then(|v| crate::extfs::ExtFs::open(v, v.len()).ok());
        let by_inode = ext_fs.as_ref().and_then(|fs| {
            Some(crate::pkgdb::ByInode {
                fs,
                dev: std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&root.path).ok()?),
            })
        });
        let (walked, verified) = std::thread::scope(|s| {
            let verify = s.spawn(|| owners.verify(&root.path, by_inode.as_ref()));
            config::run_all(&mut c);
            let walked = files::walk_root(root, &mut c, progress);
            (walked, verify.join())
        });
        let walked = walked.map_err(|source| TriageError::Walk {
            path: root.path.clone(),
            source,
        })?;
        rr.walker = Some(walked.describe());
        let stats = walked.stats;
        let verify_note = match verified {
            Ok(Some(v)) => owners.integrity(v, &mut c),
            Ok(None) => None,
            Err(_) => Some(
                "the package verify stopped unexpectedly: changed package files are not reported"
                    .to_owned(),
            ),
        };
        if let Some(n) = verify_note {
            notes.push(NoteReport {
                partition: root.partition,
                kind: "package-verify".into(),
                message: format!("{description}: {n}"),
            });
        }
        if let Some(media) = &opts.packages_from {
            for n in owners.against_media(&root.path, media, &opts.keyrings, &mut c) {
                notes.push(NoteReport {
                    partition: root.partition,
                    kind: "packages-from".into(),
                    message: format!("{description}: {n}"),
                });
            }
        }
        rr.entries_walked = stats.entries;
        rr.unreadable = stats.unreadable;
        if stats.unreadable > 0 {
            notes.push(NoteReport {
                partition: root.partition,
                kind: "unreadable".into(),
                message: format!(
                    "{description}: {} entries could not be read (a damaged filesystem?); the rest was examined",
                    stats.unreadable
                ),
            });
        }
        findings.extend(c.into_findings());
        roots.push(rr);
    }
    if !roots.iter().any(|r| r.linux) {
        notes.push(NoteReport {
            partition: None,
            kind: "no-linux-root".into(),
            message: format!("{}: no Linux root found to triage", ex.source.display()),
        });
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.root, &a.path, &a.category, &a.why).cmp(&(
            b.severity,
            &b.root,
            &b.path,
            &b.category,
            &b.why,
        ))
    });
    findings.dedup_by(|a, b| a.id == b.id);
    let mut counts: BTreeMap<Severity, usize> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
    for f in &findings {
        *counts.entry(f.severity).or_default() += 1;
    }
    Ok(Report {
        schema: SCHEMA.to_owned(),
        tool: crate::acquire::manifest::ToolInfo::current(),
        source: ex.source.display().to_string(),
        source_kind: ex.kind.as_str().to_owned(),
        partition_table: ex.table.clone(),
        started_at,
        finished_at: now_rfc3339(),
        since: opts.since.and_then(|s| {
            chrono::DateTime::from_timestamp(s, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }),
        roots,
        notes,
        counts,
        findings,
    })
}

/// Where `findings.json` for `source` goes inside a case directory: `triage-NAME`.
pub fn default_dir_name(source: &Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("triage-{clean}")
}
