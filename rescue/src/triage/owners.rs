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

    /// Checks every package file against the database ([`PackageDb::verify`]): the slow part of a
    /// triage (every package file read and hashed), so [`super::run`] runs it on its own thread beside
    /// the walk. `None` when the root has no database we read.
    /// With `ext` (the root's ext filesystem, read by [`crate::extfs`]) the files the mount finds
    /// are read by their inode instead of opened through it: the same findings, fewer system calls.
    pub fn verify(&self, root: &Path, ext: Option<&crate::pkgdb::ByInode<'_>>) -> Option<Verified> {
        let db = self.db.as_ref()?;
        Some(Verified(match ext {
            Some(ext) => db.verify_by_inode(root, ext, &mut |_| {}),
            None => db.verify(root, &mut |_| {}),
        }))
    }

    /// Package files that are not as installed, as findings: a changed program, library or other
    /// non-configuration file high, a changed configuration file low, a missing file low. A verify
    /// that could not run is not dropped: the note returned says which database and why.
    pub fn integrity(&self, verified: Verified, c: &mut Collector<'_>) -> Option<String> {
        let changed = match verified.0 {
            Ok(changed) => changed,
            Err(e) => {
                let (kind, location) = self
                    .db
                    .as_ref()
                    .map(|d| {
                        (
                            self.kind().unwrap_or("package"),
                            d.location().display().to_string(),
                        )
                    })
                    .unwrap_or(("package", String::new()));
                return Some(format!(
                    "the {kind} database ({location}) could not be checked against the files ({}): changed package files are not reported",
                    crate::error_chain(&e)
                ));
            }
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
        None
    }
}

/// What [`Owners::verify`] found: the changed package files, or why the check could not run.
pub struct Verified(Result<Vec<pkgdb::Changed>, pkgdb::PkgDbError>);

impl Owners {
    /// `--packages-from MEDIA`: the installed packages against the distribution's signed metadata and
    /// packages on MEDIA ([`pkgdb::media`]: dpkg against `InRelease` and `.deb`s, rpm against signed
    /// `repomd.xml` and `.rpm`s): a file differing from its signed package high (the suspect's own
    /// md5sums or rpmdb may have been rewritten to hide it), a package the signed metadata does
    /// not list medium, a listed path the signed package does not ship medium. Returns notes.
    pub fn against_media(
        &self,
        root: &Path,
        media: &Path,
        keyrings: &[std::path::PathBuf],
        c: &mut Collector<'_>,
    ) -> Vec<String> {
        let Some(db) = &self.db else {
            return vec!["--packages-from: no package database to check".into()];
        };
        let keys = match crate::reinstall::signature::trusted_keys(keyrings) {
            Ok(k) => k,
            Err(e) => {
                return vec![format!(
                    "--packages-from: no trusted keys ({})",
                    crate::error_chain(&e)
                )];
            }
        };
        let report = match pkgdb::media::verify_against_media(
            db,
            root,
            media,
            &keys,
            chrono::Utc::now(),
            &mut |_| {},
        ) {
            Ok(r) => r,
            Err(e) => {
                return vec![format!(
                    "--packages-from {}: {}",
                    media.display(),
                    crate::error_chain(&e)
                )];
            }
        };
        for ch in &report.changed {
            let what: Vec<String> = ch.changes.iter().map(describe).collect();
            c.add(
                Severity::High,
                cat::PACKAGE,
                ch.path.as_os_str().as_encoded_bytes(),
                format!(
                    "differs from the signed package {} on the medium: {}",
                    ch.package,
                    what.join("; ")
                ),
            );
        }
        // Where the installed package is recorded: dpkg's status file, the rpmdb file.
        let db_file = match db.kind() {
            pkgdb::DbKind::Dpkg => b"/var/lib/dpkg/status".to_vec(),
            pkgdb::DbKind::Rpm => db.location().as_os_str().as_encoded_bytes().to_vec(),
        };
        for u in &report.not_in_metadata {
            c.add(
                Severity::Medium,
                cat::PACKAGE,
                &db_file,
                format!(
                    "installed package {} {} is not in the signed metadata (listed: {})",
                    u.package.name,
                    u.package.version,
                    if u.listed_versions.is_empty() {
                        "none".into()
                    } else {
                        u.listed_versions.join(", ")
                    }
                ),
            );
        }
        for n in &report.not_shipped {
            c.add(
                Severity::Medium,
                cat::PACKAGE,
                n.path.as_os_str().as_encoded_bytes(),
                format!(
                    "the suspect's file list gives it to {}, whose signed package does not ship it",
                    n.package
                ),
            );
        }
        let mut notes = vec![format!(
            "--packages-from {}: {} package(s) compared with signed packages ({} signed index(es) verified), {} not on the medium",
            media.display(),
            report.packages_checked,
            report.releases.len(),
            report.deb_not_on_media.len()
        )];
        notes.extend(report.notes.iter().map(|n| format!("--packages-from: {n}")));
        notes
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

#[cfg(test)]
mod tests {
    use super::*;

    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn dpkg_root(r: &Path) {
        let info = r.join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/status"),
            "Package: tool\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n",
        )
        .unwrap();
        std::fs::write(info.join("tool.list"), "/usr\n/usr/bin\n/usr/bin/tool\n").unwrap();
        std::fs::write(
            info.join("tool.md5sums"),
            format!("{MD5_EMPTY}  usr/bin/tool\n"),
        )
        .unwrap();
        std::fs::write(r.join("usr/bin/tool"), b"trojaned").unwrap();
    }

    #[test]
    fn a_changed_package_file_is_a_high_finding() {
        let dir = tempfile::tempdir().unwrap();
        dpkg_root(dir.path());
        let owners = Owners::load(dir.path());
        let fs = super::super::RootFs::open(dir.path()).unwrap();
        let mut c = Collector::new(&fs, &owners, None, "the directory");
        let verified = owners.verify(dir.path(), None).unwrap();
        assert_eq!(owners.integrity(verified, &mut c), None);
        let f = c.into_findings();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].severity, f[0].path.as_str()),
            (Severity::High, "/usr/bin/tool")
        );
        assert!(
            f[0].why.contains("file of package tool changed"),
            "{}",
            f[0].why
        );
    }

    #[test]
    fn a_verify_that_cannot_run_is_a_note_naming_the_database_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        dpkg_root(&root);
        let owners = Owners::load(&root);
        assert_eq!(owners.kind(), Some("dpkg"));
        let fs = super::super::RootFs::open(&root).unwrap();
        // The root goes away between reading the database and checking the files (an unmounted or
        // pulled disk): the check cannot open it.
        let gone = dir.path().join("gone");
        std::fs::rename(&root, &gone).unwrap();
        let mut c = Collector::new(&fs, &owners, None, "the directory");
        let verified = owners.verify(&root, None).unwrap();
        let note = owners
            .integrity(verified, &mut c)
            .expect("a note, not silence");
        assert!(note.contains("dpkg database (/var/lib/dpkg)"), "{note}");
        assert!(note.contains(&root.display().to_string()), "{note}");
        assert!(note.contains("No such file or directory"), "{note}");
        assert!(
            note.contains("changed package files are not reported"),
            "{note}"
        );
        assert!(c.into_findings().is_empty());
    }
}
