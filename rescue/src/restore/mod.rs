//! Checksummed, screened restore from a backup onto a freshly installed root.
//!
//! Every file of the SOURCE (a directory, a `tar`/`tar.zst` archive, or a filesystem in a disk image or
//! on a disk, mounted read-only by [`source`]) is screened by [`policy`], compared with the backup's
//! manifest when one is given, copied beneath TARGET without ever following a symlink ([`target`]),
//! given back its mode, owner, times and xattrs, fsynced, read back and checked by SHA-256, and only
//! then renamed into place. A rerun skips files already identical, so a run stopped by a full target
//! resumes where it stopped. Every decision lands in a [`RestoreManifest`]. Never prints.

pub mod accounts;
mod copy;
pub mod findings;
pub mod policy;
pub mod scripts;
pub mod source;
pub mod target;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use policy::{Policy, Verdict};
use serde::Serialize;

use crate::reinstall::checksums::{self, Algorithm};

/// Schema of `restore-manifest.json`.
pub const SCHEMA: &str = "rescue.restore/1";
/// File name of the restore manifest.
pub const MANIFEST_NAME: &str = "restore-manifest.json";

/// Errors that stop a restore (per-file problems are records, not errors).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "the target filesystem is full while writing {path} ({restored} files restored so far): free space or use a bigger target, then run the same command again; files already restored are skipped"
    )]
    TargetFull { path: String, restored: u64 },
    #[error("opening the target {path}")]
    OpenTarget {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the backup manifest {path}")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the backup manifest {path} lists no files (expected SHA256SUMS or restore-manifest.json)"
    )]
    EmptyManifest { path: PathBuf },
    #[error("reading the source")]
    ReadSource(#[source] std::io::Error),
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Restored,
    Identical,
    WouldRestore,
    Refused,
    Held,
    Excluded,
    Missing,
    Failed,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Restored => "restored",
            Action::Identical => "identical",
            Action::WouldRestore => "would-restore",
            Action::Refused => "refused",
            Action::Held => "held",
            Action::Excluded => "excluded",
            Action::Missing => "missing",
            Action::Failed => "failed",
        }
    }
}

/// One line of the restore manifest.
#[derive(Debug, Clone, Serialize)]
pub struct FileRecord {
    pub path: String,
    /// `file` or `symlink` (or `hardlink`, `special`).
    pub kind: &'static str,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub action: Action,
    pub reason: Option<String>,
    /// The ids of the triage findings that name this file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// An account database held: its comparison with the new system's, relative to the manifest's
    /// directory ([`HELD_DIR`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Where the comparisons of held account databases go, beside `restore-manifest.json`.
pub const HELD_DIR: &str = "restore-held";

/// A held account database's comparison with the new system's, to be written to `HELD_DIR/<path>.diff`.
#[derive(Debug, Clone)]
pub struct HeldDiff {
    /// The file's path in the backup.
    pub path: String,
    pub text: String,
}

/// How the triage findings were used.
#[derive(Debug, Clone, Serialize)]
pub struct FindingsUse {
    /// The findings files read.
    pub files: Vec<String>,
    /// Those of them the case recorded (`rescue triage` inside the rescue system), used without
    /// `--findings`.
    pub from_case: Vec<String>,
    /// Findings read, and how many of them name a path.
    pub total: usize,
    pub naming_paths: usize,
    /// Ids of the findings that named a file of this backup.
    pub matched: Vec<String>,
    /// Ids of the findings naming a path no file of this backup is (outside the backup, or under
    /// another source root).
    pub unmatched: Vec<String>,
}

/// `restore-manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreManifest {
    pub schema: &'static str,
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub allow_executables: bool,
    pub backup_manifest: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub complete: bool,
    pub stop_reason: Option<String>,
    pub counts: BTreeMap<&'static str, u64>,
    /// The directory of the original system the backup's root held (`--source-root`, default `/`).
    pub source_root: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingsUse>,
    /// Files held back (persistence points, account databases, webshells, findings): paths to review
    /// (restore them by listing each with --include).
    pub review: Vec<String>,
    pub files: Vec<FileRecord>,
    /// Comparisons of held account databases (written by [`write_held_diffs`]).
    #[serde(skip)]
    pub diffs: Vec<HeldDiff>,
}

/// Writes the comparisons of held account databases beneath `dir/restore-held/`, never following a
/// symlink there (the report directory may be TARGET, which the backup has just written to).
pub fn write_held_diffs(dir: &Path, m: &RestoreManifest) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if m.diffs.is_empty() {
        return Ok(out);
    }
    let root = target::Root::open(dir)?;
    for d in &m.diffs {
        let rel = format!("{HELD_DIR}/{}.diff", d.path);
        let (parent, name) = split(&rel);
        let dir_fd = root.dir(parent, true, &|_| 0o700)?;
        let tmp = format!(".{name}.tmp");
        dir_fd.unlink(&tmp);
        let mut f = dir_fd.create_exclusive(&tmp)?;
        f.write_all(d.text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        dir_fd.rename(&tmp, name)?;
        out.push(dir.join(rel));
    }
    Ok(out)
}

/// Kind of a source entry.
#[derive(Debug, Clone)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// An archive member that names an earlier member (path as written in the archive).
    HardLink(String),
    Special(String),
}

/// One entry of the source, with its metadata.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// The path as the source names it (relative; an archive may hold anything here).
    pub raw_path: String,
    pub kind: EntryKind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub mtime: i64,
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How a file's bytes are read.
pub enum Content<'a> {
    /// A file that can be opened (again): hashed first, then copied and hashed again.
    Path(&'a Path),
    /// A stream that can be read once (archive member): hashed while spooled.
    Stream(&'a mut dyn Read),
    /// No content (directories, links).
    None,
}

/// Parses a backup manifest: SHA256SUMS (GNU or BSD) or our restore-manifest.json. Paths are relative.
pub fn load_backup_manifest(path: &Path) -> Result<BTreeMap<String, String>, RestoreError> {
    let bytes = std::fs::read(path).map_err(|source| RestoreError::ReadManifest {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BTreeMap::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        for f in v["files"].as_array().into_iter().flatten() {
            if let (Some(p), Some(h)) = (f["path"].as_str(), f["sha256"].as_str()) {
                out.insert(normalise(p), h.to_ascii_lowercase());
            }
        }
    } else if let Ok(entries) = checksums::parse(&String::from_utf8_lossy(&bytes)) {
        for e in entries
            .into_iter()
            .filter(|e| e.algorithm == Algorithm::Sha256)
        {
            out.insert(normalise(&e.name), e.digest);
        }
    }
    if out.is_empty() {
        return Err(RestoreError::EmptyManifest {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

fn normalise(p: &str) -> String {
    let mut p = p;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_end_matches('/').to_owned()
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A source directory's metadata.
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
}

/// The restore engine: feed it source entries, then [`Restorer::finish`].
pub struct Restorer {
    source_name: String,
    target_path: PathBuf,
    policy: Policy,
    dry_run: bool,
    root: target::Root,
    backup_manifest: Option<(PathBuf, BTreeMap<String, String>)>,
    seen: BTreeSet<String>,
    /// Directories of the source: mode, owner and times, applied in [`Restorer::finish`].
    dirs: HashMap<String, DirMeta>,
    records: Vec<FileRecord>,
    diffs: Vec<HeldDiff>,
    /// Files of the source that are setuid, setgid or carry capabilities: a hard link to one of them
    /// is another name for a privileged binary, so it must be listed exactly like the file.
    privileged: BTreeSet<String>,
    started_at: String,
    restored: u64,
}

impl Restorer {
    pub fn new(
        source_name: &str,
        target: &Path,
        policy: Policy,
        backup_manifest: Option<&Path>,
        dry_run: bool,
    ) -> Result<Self, RestoreError> {
        let root = target::Root::open(target).map_err(|source| RestoreError::OpenTarget {
            path: target.to_owned(),
            source,
        })?;
        let backup_manifest = match backup_manifest {
            Some(p) => Some((p.to_owned(), load_backup_manifest(p)?)),
            None => None,
        };
        Ok(Restorer {
            source_name: source_name.to_owned(),
            target_path: target.to_owned(),
            policy,
            dry_run,
            root,
            backup_manifest,
            seen: BTreeSet::new(),
            dirs: HashMap::new(),
            records: Vec::new(),
            diffs: Vec::new(),
            privileged: BTreeSet::new(),
            started_at: crate::acquire::manifest::now_rfc3339(),
            restored: 0,
        })
    }

    fn record(
        &mut self,
        path: &str,
        kind: &'static str,
        size: Option<u64>,
        sha256: Option<String>,
        action: Action,
        reason: Option<String>,
    ) {
        if action == Action::Restored {
            self.restored += 1;
        }
        let findings = if matches!(action, Action::Refused | Action::Held) {
            self.policy.finding_ids(path)
        } else {
            Vec::new()
        };
        self.records.push(FileRecord {
            path: path.to_owned(),
            kind,
            size,
            sha256,
            action,
            reason,
            findings,
            diff: None,
        });
    }

    fn open_dir(&self, parent: &str) -> std::io::Result<target::Dir> {
        let dirs = &self.dirs;
        self.root
            .dir(parent, true, &|p| dirs.get(p).map_or(0o755, |d| d.mode))
    }

    /// The manifest's verdict on a content hash.
    fn manifest_check(&self, rel: &str, sha: &str) -> Option<String> {
        let (path, m) = self.backup_manifest.as_ref()?;
        match m.get(rel) {
            None => Some(format!(
                "not listed in the backup manifest {}",
                path.display()
            )),
            Some(h) if h != sha => Some(format!(
                "corrupted: sha256 {sha} differs from the backup manifest's {h}"
            )),
            Some(_) => None,
        }
    }

    /// Processes one source entry.
    pub fn entry(&mut self, e: &SourceEntry, content: Content<'_>) -> Result<(), RestoreError> {
        let raw = e.raw_path.strip_prefix("./").unwrap_or(&e.raw_path);
        let rel = raw.trim_end_matches('/').to_owned();
        if rel.is_empty() || rel == "." {
            return Ok(());
        }
        let kind_name = match &e.kind {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::HardLink(_) => "hardlink",
            EntryKind::Special(_) => "special",
        };
        if let Some(why) = policy::traversal(raw) {
            self.record(
                &rel,
                kind_name,
                Some(e.size),
                None,
                Action::Refused,
                Some(why),
            );
            return Ok(());
        }
        self.seen.insert(rel.clone());
        match &e.kind {
            EntryKind::Dir => {
                self.dirs.insert(
                    rel.clone(),
                    DirMeta {
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                        atime: e.atime,
                        mtime: e.mtime,
                    },
                );
                Ok(())
            }
            EntryKind::HardLink(to) => self.hard_link(&rel, e, to),
            EntryKind::Special(what) => {
                self.record(
                    &rel,
                    kind_name,
                    None,
                    None,
                    Action::Refused,
                    Some(format!("{what}: special files are never restored")),
                );
                Ok(())
            }
            EntryKind::Symlink(to) => self.symlink(&rel, e, to),
            EntryKind::File => self.file(&rel, e, content),
        }
    }

    fn symlink(&mut self, rel: &str, e: &SourceEntry, to: &[u8]) -> Result<(), RestoreError> {
        let size = Some(to.len() as u64);
        match self.policy.check_meta(rel, 0o644) {
            Verdict::Allow => {}
            v => return self.verdict(rel, "symlink", size, None, v),
        }
        match self.policy.link_verdict(rel, None) {
            Verdict::Allow => {}
            v => return self.verdict(rel, "symlink", size, None, v),
        }
        if self.dry_run {
            self.record(rel, "symlink", size, None, Action::WouldRestore, None);
            return Ok(());
        }
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(err) => return self.io_failure(rel, "symlink", size, None, err),
        };
        if dir.read_link(name).as_deref() == Some(to) {
            self.record(rel, "symlink", size, None, Action::Identical, None);
            return Ok(());
        }
        let tmp = format!(".{name}.rescue-restore");
        dir.unlink(&tmp);
        let r = dir.symlink(to, &tmp).and_then(|()| {
            dir.lchown_times(&tmp, e.uid, e.gid, e.mtime);
            dir.rename(&tmp, name)
        });
        match r {
            Ok(()) => {
                self.record(rel, "symlink", size, None, Action::Restored, None);
                Ok(())
            }
            Err(err) => {
                dir.unlink(&tmp);
                self.io_failure(rel, "symlink", size, None, err)
            }
        }
    }

    /// A hard link is restored only as a link to a file this run restored (or found identical), so its
    /// content was screened; its own path is screened like any file's.
    fn hard_link(&mut self, rel: &str, e: &SourceEntry, to: &str) -> Result<(), RestoreError> {
        let to_rel = to.strip_prefix("./").unwrap_or(to).trim_end_matches('/');
        if let Some(why) = policy::traversal(to) {
            self.record(rel, "hardlink", None, None, Action::Refused, Some(why));
            return Ok(());
        }
        let linked = self
            .records
            .iter()
            .rev()
            .find(|r| r.path == to_rel && r.kind == "file")
            .map(|r| (r.action, r.sha256.clone(), r.size));
        let (sha, size) = match linked {
            Some((Action::Restored | Action::Identical | Action::WouldRestore, sha, size)) => {
                (sha, size)
            }
            _ => {
                self.record(
                    rel,
                    "hardlink",
                    None,
                    None,
                    Action::Refused,
                    Some(format!("hard link to {to_rel}, which was not restored")),
                );
                return Ok(());
            }
        };
        match self.policy.check_meta(rel, e.mode) {
            Verdict::Allow => {}
            v => return self.verdict(rel, "hardlink", size, sha, v),
        }
        match self.policy.link_verdict(rel, Some(to_rel)) {
            Verdict::Allow => {}
            v => return self.verdict(rel, "hardlink", size, sha, v),
        }
        if self.privileged.contains(to_rel) && !self.policy.include_literal.contains(rel) {
            let v = Verdict::Refuse(format!(
                "hard link to the setuid/setgid file {to_rel}: another name for it is listed exactly too or not restored: --include /{rel}"
            ));
            return self.verdict(rel, "hardlink", size, sha, v);
        }
        if self.dry_run {
            self.record(rel, "hardlink", size, sha, Action::WouldRestore, None);
            return Ok(());
        }
        let (tp, tn) = split(to_rel);
        let (parent, name) = split(rel);
        let dirs = (self.open_dir(tp), self.open_dir(parent));
        let (from_dir, dir) = match dirs {
            (Ok(a), Ok(b)) => (a, b),
            (Err(err), _) | (_, Err(err)) => {
                return self.io_failure(rel, "hardlink", size, sha, err);
            }
        };
        let tmp = format!(".{name}.rescue-restore");
        dir.unlink(&tmp);
        match target::link(&from_dir, tn, &dir, &tmp).and_then(|()| dir.rename(&tmp, name)) {
            Ok(()) => {
                self.record(rel, "hardlink", size, sha, Action::Restored, None);
                Ok(())
            }
            Err(err) => {
                dir.unlink(&tmp);
                self.io_failure(rel, "hardlink", size, sha, err)
            }
        }
    }

    fn verdict(
        &mut self,
        rel: &str,
        kind: &'static str,
        size: Option<u64>,
        sha: Option<String>,
        v: Verdict,
    ) -> Result<(), RestoreError> {
        let (action, reason) = match v {
            Verdict::Allow => (Action::Restored, None),
            Verdict::Excluded(r) => (Action::Excluded, Some(r)),
            Verdict::Refuse(r) => (Action::Refused, Some(r)),
            Verdict::Hold(r) => (Action::Held, Some(r)),
        };
        self.record(rel, kind, size, sha, action, reason);
        Ok(())
    }

    fn io_failure(
        &mut self,
        rel: &str,
        kind: &'static str,
        size: Option<u64>,
        sha: Option<String>,
        err: std::io::Error,
    ) -> Result<(), RestoreError> {
        if is_full(&err) {
            return Err(RestoreError::TargetFull {
                path: rel.to_owned(),
                restored: self.restored,
            });
        }
        self.record(rel, kind, size, sha, Action::Failed, Some(err.to_string()));
        Ok(())
    }

    fn file(
        &mut self,
        rel: &str,
        e: &SourceEntry,
        content: Content<'_>,
    ) -> Result<(), RestoreError> {
        let size = Some(e.size);
        let caps = e.xattrs.iter().any(|(n, _)| n == b"security.capability");
        if caps || e.mode & 0o6000 != 0 {
            self.privileged.insert(rel.to_owned());
        }
        let meta_verdict = self.policy.check_entry(rel, e.mode, caps);
        if let Verdict::Excluded(_) = meta_verdict {
            return self.verdict(rel, "file", size, None, meta_verdict);
        }
        match content {
            Content::Path(p) => self.file_from_path(rel, e, p, meta_verdict),
            Content::Stream(r) => self.file_from_stream(rel, e, r, meta_verdict),
            Content::None => Ok(()),
        }
    }

    /// How many leading bytes of `rel` its screening needs: a server-side script or an account
    /// database whole (up to the limit), anything else its magic.
    fn keep(&self, rel: &str) -> usize {
        if self.policy.is_script(rel) || self.policy.account_database(rel).is_some() {
            scripts::SCREEN_LIMIT
        } else {
            16
        }
    }

    /// Screens by content (blocklist, ELF, manifest, server-side script). `None` means restore.
    /// `head` is the file's first [`Restorer::keep`] bytes, of `total`.
    fn content_verdict(&self, rel: &str, sha: &str, head: &[u8], total: u64) -> Option<Verdict> {
        match self.policy.check_content(sha, head) {
            Verdict::Allow => {}
            v => return Some(v),
        }
        if let Some(r) = self.manifest_check(rel, sha) {
            return Some(Verdict::Refuse(r));
        }
        match self
            .policy
            .script_verdict(rel, head, total <= head.len() as u64)
        {
            Verdict::Allow => None,
            v => Some(v),
        }
    }

    /// The record of a file not restored; an account database's also gets its comparison with the new
    /// system's (`content`: the backup's bytes).
    fn not_restored(
        &mut self,
        rel: &str,
        size: Option<u64>,
        sha: String,
        v: Verdict,
        content: &[u8],
    ) -> Result<(), RestoreError> {
        let db = match (&v, self.policy.account_database(rel)) {
            (Verdict::Hold(_) | Verdict::Refuse(_), Some(db)) => db,
            _ => return self.verdict(rel, "file", size, Some(sha), v),
        };
        let new = self.read_target(rel);
        let c = accounts::compare(db, rel, content, new.as_deref());
        let diff = format!("{HELD_DIR}/{rel}.diff");
        let v = match v {
            Verdict::Hold(r) => Verdict::Hold(format!("{r}; {}; see {diff}", c.summary)),
            Verdict::Refuse(r) => Verdict::Refuse(format!("{r}; {}; see {diff}", c.summary)),
            other => other,
        };
        self.diffs.push(HeldDiff {
            path: rel.to_owned(),
            text: c.text,
        });
        self.verdict(rel, "file", size, Some(sha), v)?;
        if let Some(r) = self.records.last_mut() {
            r.diff = Some(diff);
        }
        Ok(())
    }

    /// Sets directory modes, owners and times (now that nothing more is written into them), lists
    /// manifest entries the source lacked, and builds the manifest.
    pub fn finish(mut self, stop_reason: Option<String>) -> RestoreManifest {
        if !self.dry_run {
            let mut dirs: Vec<(&String, &DirMeta)> = self.dirs.iter().collect();
            dirs.sort_by(|a, b| a.0.cmp(b.0));
            for (rel, meta) in dirs {
                let (parent, name) = split(rel);
                if policy::traversal(rel).is_some() {
                    continue;
                }
                if let Ok(d) = self.root.dir(parent, false, &|_| 0o755) {
                    // Only directories that exist (something was restored into them).
                    if d.read_link(name).is_none() {
                        d.set_dir_meta(name, meta.mode, meta.uid, meta.gid);
                        d.set_times(name, meta.atime, meta.mtime);
                    }
                }
            }
        }
        if let Some((path, m)) = &self.backup_manifest {
            let missing: Vec<(String, String)> = m
                .iter()
                .filter(|(p, _)| !self.seen.contains(*p))
                .map(|(p, h)| (p.clone(), h.clone()))
                .collect();
            let reason = format!(
                "listed in the backup manifest {} but absent from the source",
                path.display()
            );
            for (p, h) in missing {
                self.record(
                    &p,
                    "file",
                    None,
                    Some(h),
                    Action::Missing,
                    Some(reason.clone()),
                );
            }
        }
        let mut counts = BTreeMap::new();
        for r in &self.records {
            *counts.entry(r.action.name()).or_insert(0) += 1;
        }
        let review = self
            .records
            .iter()
            .filter(|r| r.action == Action::Held)
            .map(|r| r.path.clone())
            .collect();
        let findings = (!self.policy.findings.files.is_empty()).then(|| {
            let matched: BTreeSet<&str> = self
                .records
                .iter()
                .flat_map(|r| r.findings.iter().map(String::as_str))
                .collect();
            let mut unmatched: Vec<String> = self
                .policy
                .findings
                .naming_paths()
                .map(|f| f.id.clone())
                .filter(|id| !matched.contains(id.as_str()))
                .collect();
            unmatched.sort();
            unmatched.dedup();
            FindingsUse {
                files: (self.policy.findings.files.iter())
                    .map(|p| p.display().to_string())
                    .collect(),
                from_case: Vec::new(),
                total: self.policy.findings.total,
                naming_paths: self.policy.findings.naming_paths().count(),
                matched: matched.iter().map(|s| s.to_string()).collect(),
                unmatched,
            }
        });
        RestoreManifest {
            schema: SCHEMA,
            source: self.source_name,
            target: self.target_path.display().to_string(),
            dry_run: self.dry_run,
            allow_executables: self.policy.allow_executables,
            backup_manifest: self
                .backup_manifest
                .as_ref()
                .map(|(p, _)| p.display().to_string()),
            started_at: self.started_at,
            finished_at: crate::acquire::manifest::now_rfc3339(),
            complete: stop_reason.is_none(),
            stop_reason,
            counts,
            source_root: self.policy.source_root_display(),
            findings,
            review,
            files: self.records,
            diffs: self.diffs,
        }
    }
}

#[cfg(test)]
mod tests;
