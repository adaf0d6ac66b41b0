//! Triage findings (`findings.json`, schema `rescue.triage/1`, written by `rescue triage`) as a restore
//! screen: every file a finding names is refused (severity critical or high) or held for review
//! (medium, low, info), with the finding's id and why as the reason.
//!
//! A finding names a path inside the examined root (`/etc/passwd`). A restore SOURCE's root holds some
//! directory of that root: `/` for a backup of the whole system (the default), `/etc` for a tar of
//! `/etc`; [`crate::restore::policy::Policy::with_source_root`] says which. A finding that names a
//! directory covers everything beneath it. When the operator did not name the source root, a finding
//! whose path merely *ends* with a source file's path (`/etc/passwd` and a backup holding `passwd`) still
//! holds that file, with a reason saying the mapping is a guess: a forgotten option must not let a
//! finding's file back.
//!
//! Loading refuses a file that does not parse, names another schema, or holds a finding whose path is
//! not absolute, naming the file. Never prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The schema `rescue triage` writes.
pub const TRIAGE_SCHEMA: &str = "rescue.triage/1";

/// Errors loading findings files.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    #[error("reading the findings file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the findings file {path} is not JSON")]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the findings file {path} has schema {found}, not {TRIAGE_SCHEMA}: give the findings.json written by `rescue triage`"
    )]
    Schema { path: PathBuf, found: String },
    #[error("the findings file {path} does not hold a valid {TRIAGE_SCHEMA} findings list")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the findings file {path}: finding {id} names {finding_path:?}, which is not an absolute path inside the examined root"
    )]
    BadPath {
        path: PathBuf,
        id: String,
        finding_path: String,
    },
}

/// A finding's severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// Critical and high findings refuse their file; the others hold it for review.
    pub fn refuses(self) -> bool {
        matches!(self, Severity::Critical | Severity::High)
    }
}

/// One finding that names a path.
#[derive(Debug, Clone, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    #[serde(default)]
    pub category: String,
    /// Absolute inside the examined root; findings about no file (a missing package database) have none.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub why: String,
}

impl Finding {
    /// `finding ID (severity, category): why`.
    pub fn describe(&self) -> String {
        format!(
            "finding {} ({}, {}): {}",
            self.id,
            self.severity.name(),
            self.category,
            self.why
        )
    }
}

#[derive(Deserialize)]
struct FindingsFile {
    findings: Vec<Finding>,
}

/// How a source file relates to the findings naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The finding's path is this file (or a directory holding it) under the source root.
    Exact,
    /// The finding's path ends with this file's path: the backup may be of a subdirectory.
    Tail,
}

/// Every finding of the findings files given, indexed by path (without the leading `/`).
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// The files loaded, as given.
    pub files: Vec<PathBuf>,
    /// Findings that name a path, by that path ("etc/passwd"; "" for `/` itself).
    by_path: BTreeMap<String, Vec<Finding>>,
    /// The same paths by their last component, for tail matches.
    by_name: BTreeMap<String, Vec<String>>,
    /// All findings read, with or without a path.
    pub total: usize,
}

/// Loads every findings file (the `--findings` arguments, and inside the rescue system the case's own):
/// the one call that turns a list of files into the restore's screen.
pub fn load_all(paths: &[PathBuf]) -> Result<Findings, FindingsError> {
    let mut out = Findings::default();
    for p in paths {
        out.add(
            p,
            &std::fs::read(p).map_err(|source| FindingsError::Read {
                path: p.clone(),
                source,
            })?,
        )?;
    }
    Ok(out)
}

/// `a/./b//c/` → `a/b/c`; `None` when it climbs with `..`.
fn normalise(p: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Findings {
    /// Adds the findings of one file's bytes (`path` names it in errors).
    pub fn add(&mut self, path: &Path, bytes: &[u8]) -> Result<(), FindingsError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| FindingsError::NotJson {
                path: path.to_owned(),
                source,
            })?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(TRIAGE_SCHEMA) => {}
            other => {
                return Err(FindingsError::Schema {
                    path: path.to_owned(),
                    found: other.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}")),
                });
            }
        }
        let file: FindingsFile =
            serde_json::from_value(v).map_err(|source| FindingsError::Malformed {
                path: path.to_owned(),
                source,
            })?;
        self.files.push(path.to_owned());
        self.total += file.findings.len();
        for f in file.findings {
            let Some(fp) = f.path.as_deref().filter(|p| !p.is_empty()) else {
                continue;
            };
            let bad = || FindingsError::BadPath {
                path: path.to_owned(),
                id: f.id.clone(),
                finding_path: fp.to_owned(),
            };
            if !fp.starts_with('/') {
                return Err(bad());
            }
            let key = normalise(fp).ok_or_else(bad)?;
            let name = key.rsplit('/').next().unwrap_or("").to_owned();
            let names = self.by_name.entry(name).or_default();
            if !names.contains(&key) {
                names.push(key.clone());
            }
            self.by_path.entry(key).or_default().push(f);
        }
        Ok(())
    }

    /// Whether no finding names a path.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Findings that name a path.
    pub fn naming_paths(&self) -> impl Iterator<Item = &Finding> {
        self.by_path.values().flatten()
    }

    /// The findings naming `orig` (a path in the examined root, without the leading `/`) or a directory
    /// above it, most severe first.
    pub fn exact(&self, orig: &str) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = Vec::new();
        let mut prefix = orig;
        loop {
            if let Some(v) = self.by_path.get(prefix) {
                out.extend(v);
            }
            match prefix.rsplit_once('/') {
                Some((up, _)) => prefix = up,
                None if !prefix.is_empty() => prefix = "",
                None => break,
            }
        }
        out.sort_by_key(|f| f.severity);
        out
    }

    /// The findings whose path ends with `/rel` (or with `/D` for a directory `D` above `rel`), but
    /// which are not `rel` itself: where the backup may be of a subdirectory of the examined root.
    pub fn tail(&self, rel: &str) -> Vec<(&Finding, &str)> {
        let mut out: Vec<(&Finding, &str)> = Vec::new();
        let mut sub = rel;
        loop {
            let name = sub.rsplit('/').next().unwrap_or(sub);
            for key in self.by_name.get(name).into_iter().flatten() {
                if key.len() > sub.len()
                    && key.ends_with(sub)
                    && key[..key.len() - sub.len()].ends_with('/')
                {
                    out.extend(self.by_path[key].iter().map(|f| (f, key.as_str())));
                }
            }
            match sub.rsplit_once('/') {
                Some((up, _)) => sub = up,
                None => break,
            }
        }
        out.sort_by_key(|(f, _)| f.severity);
        out
    }

    /// The findings that name `rel`, seen through the source root (`root` without slashes at the ends,
    /// "" for `/`), with how; tail matches only when `guess` (the root was not named by the operator).
    pub fn lookup(&self, root: &str, rel: &str, guess: bool) -> (Vec<&Finding>, Match) {
        let orig = if root.is_empty() {
            rel.to_owned()
        } else {
            format!("{root}/{rel}")
        };
        let exact = self.exact(&orig);
        if !exact.is_empty() || !guess {
            return (exact, Match::Exact);
        }
        (
            self.tail(rel).into_iter().map(|(f, _)| f).collect(),
            Match::Tail,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(json: &str) -> Result<Findings, FindingsError> {
        let mut f = Findings::default();
        f.add(Path::new("case/findings.json"), json.as_bytes())?;
        Ok(f)
    }

    const GOOD: &str = r#"{"schema":"rescue.triage/1","source":"/dev/sda2","findings":[
        {"id":"ACC-1","severity":"critical","category":"accounts","path":"/etc/passwd","why":"uid 0 account other than root: toor","evidence":{"sha256":"ab"}},
        {"id":"WEB-2","severity":"medium","category":"web","path":"/var/www/html/uploads/","why":"scripts in an upload directory","evidence":{}},
        {"id":"PKG-3","severity":"info","category":"packages","why":"no rpm database","evidence":{}}
    ]}"#;

    #[test]
    fn exact_matches_cover_files_and_directories_most_severe_first() {
        let f = findings(GOOD).unwrap();
        assert_eq!(f.total, 3);
        assert_eq!(f.naming_paths().count(), 2);
        let (m, how) = f.lookup("", "etc/passwd", true);
        assert_eq!(how, Match::Exact);
        assert_eq!(m[0].id, "ACC-1");
        assert!(m[0].severity.refuses());
        let (m, _) = f.lookup("", "var/www/html/uploads/a/x.php", true);
        assert_eq!(m[0].id, "WEB-2");
        assert!(!m[0].severity.refuses());
        assert!(f.lookup("", "var/www/html/index.php", true).0.is_empty());
        // A tar of /etc, mapped by the operator.
        let (m, how) = f.lookup("etc", "passwd", false);
        assert_eq!((m[0].id.as_str(), how), ("ACC-1", Match::Exact));
        assert!(f.lookup("etc", "etc/passwd", false).0.is_empty());
    }

    #[test]
    fn without_a_named_root_a_tail_match_still_catches_the_file() {
        let f = findings(GOOD).unwrap();
        let (m, how) = f.lookup("", "passwd", true);
        assert_eq!((m[0].id.as_str(), how), ("ACC-1", Match::Tail));
        let (m, how) = f.lookup("", "html/uploads/s.php", true);
        assert_eq!((m[0].id.as_str(), how), ("WEB-2", Match::Tail));
        // Not a component boundary: no match.
        assert!(f.lookup("", "asswd", true).0.is_empty());
        // A named root is exact: no guessing.
        assert!(f.lookup("srv", "passwd", false).0.is_empty());
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let e = findings("{not json").unwrap_err().to_string();
        assert!(
            e.contains("case/findings.json") && e.contains("not JSON"),
            "{e}"
        );
        let e = findings(r#"{"schema":"rescue.restore/1","findings":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("case/findings.json") && e.contains("\"rescue.restore/1\""),
            "{e}"
        );
        let e = findings(r#"{"findings":[]}"#).unwrap_err().to_string();
        assert!(e.contains("schema (none)"), "{e}");
        let e = findings(
            r#"{"schema":"rescue.triage/1","findings":[{"id":"X","severity":"dire","path":"/a"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not hold a valid"), "{e}");
        let e = findings(r#"{"schema":"rescue.triage/1","findings":[{"id":"X","severity":"low","path":"etc/a"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("finding X") && e.contains("not an absolute path"),
            "{e}"
        );
        let e = findings(r#"{"schema":"rescue.triage/1","findings":[{"id":"Y","severity":"low","path":"/etc/../x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("finding Y"), "{e}");
    }
}
