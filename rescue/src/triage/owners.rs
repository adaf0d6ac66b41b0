//! Which package owns a path of the examined root, and which package files changed since installation:
//! the questions triage asks the root's own package database ([`crate::pkgdb`]: dpkg, rpmdb). Every
//! "owned by a package?" in triage goes through [`Owners::owner`].

use std::path::Path;

use super::{Collector, Severity, category as cat};
use crate::pkgdb::{self, Change, PackageDb};

/// The ownership index of one root.
pub struct Owners {
    db: Option<PackageDb>,
    note: Option<String>,
}

impl Owners {
    /// Reads the root's package database; a root without one (or with one that cannot be read) gets a
    /// note, and every "owned by a package" question answers `None` with no database named.
    pub fn load(root: &Path) -> Owners {
        match pkgdb::open(root) {
            Ok(Some(db)) => Owners {
                note: (!db.warnings().is_empty()).then(|| {
                    format!(
                        "the package database was read with {} warning(s): {}",
                        db.warnings().len(),
                        db.warnings().iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                    )
                }),
                db: Some(db),
            },
            Ok(None) => Owners {
                db: None,
                note: Some("no package database (no dpkg status, no rpmdb): no file is known to be owned by a package, so checks for files not owned by a package were skipped".into()),
            },
            Err(e) => Owners {
                db: None,
                note: Some(format!(
                    "the package database could not be read ({}): checks for files not owned by a package were skipped",
                    crate::error_chain(&e)
                )),
            },
        }
    }

    /// An index without any database (tests, roots without one).
    pub fn none() -> Owners {
        Owners {
            db: None,
            note: None,
        }
    }

    /// `dpkg`, `rpm`, or `None` when the root has no database we read.
    pub fn kind(&self) -> Option<&'static str> {
        self.db.as_ref().map(|d| match d.kind() {
            pkgdb::DbKind::Dpkg => "dpkg",
            pkgdb::DbKind::Rpm => "rpm",
        })
    }

    /// Why ownership is unknown or partial, when it is.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Is ownership known at all (a database was read)?
    pub fn known(&self) -> bool {
        self.db.is_some()
    }

    /// The package owning `path` (absolute inside the root; either spelling on a merged-/usr root).
    pub fn owner(&self, path: &[u8]) -> Option<String> {
        self.db.as_ref()?.owner_bytes(path).map(str::to_owned)
    }

    /// True when a database was read and no package owns `path`.
    pub fn unowned(&self, path: &[u8]) -> bool {
        self.known() && self.owner(path).is_none()
    }

    /// Package files that are not as installed, as findings: a changed program, library or other
    /// non-configuration file high, a changed configuration file low, a missing file low.
    pub fn integrity(&self, root: &Path, c: &mut Collector<'_>) {
        let Some(db) = &self.db else {
            return;
        };
        let Ok(changed) = db.verify(root, &mut |_| {}) else {
            return;
        };
        for ch in changed {
            let path = ch.path.as_os_str().as_encoded_bytes().to_vec();
            let what: Vec<String> = ch.changes.iter().map(describe).collect();
            let missing = ch.changes.iter().all(|x| matches!(x, Change::Missing));
            let gained_setuid = ch.changes.iter().any(|x| {
                matches!(x, Change::Mode { expected, found } if found & 0o6000 & !expected != 0)
            });
            let sev = if gained_setuid {
                Severity::High
            } else if missing || ch.config {
                Severity::Low
            } else {
                Severity::High
            };
            c.add(
                sev,
                cat::PACKAGE,
                &path,
                format!(
                    "{} of package {} changed since installation: {}",
                    if ch.config {
                        "configuration file"
                    } else {
                        "file"
                    },
                    ch.package,
                    what.join("; ")
                ),
            );
        }
    }
}

fn describe(c: &Change) -> String {
    match c {
        Change::Missing => "missing".into(),
        Change::Digest { .. } => "content differs".into(),
        Change::FileType { expected, found } => format!("a {found:?} where a {expected:?} was"),
        Change::Mode { expected, found } => format!("mode {found:04o}, was {expected:04o}"),
        Change::User { expected, found } => format!("owner {found}, was {expected}"),
        Change::Group { expected, found } => format!("group {found}, was {expected}"),
        Change::LinkTarget { expected, found } => format!("points to {found}, was {expected}"),
        Change::Unreadable { error } => format!("unreadable: {error}"),
    }
}
