//! Which package owns a path of the examined root: the one question triage asks the package database.
//! Everything else in triage goes through [`Owners::owner`], so the database reader behind it is one
//! change away.

use std::collections::HashMap;

use super::RootFs;

/// The ownership index of one root.
pub struct Owners {
    kind: Option<&'static str>,
    /// path → package, from dpkg's `info/*.list`.
    dpkg: HashMap<Vec<u8>, String>,
    note: Option<String>,
}

impl Owners {
    /// Reads the root's package database; a root without one gets a note, and every "owned by a
    /// package" question answers `None` with no database named.
    pub fn load(fs: &RootFs) -> Owners {
        let info = b"/var/lib/dpkg/info";
        if fs.lstat(b"/var/lib/dpkg/status").is_some() {
            let mut dpkg = HashMap::new();
            for name in fs.list(info) {
                let Some(pkg) = name.strip_suffix(b".list") else {
                    continue;
                };
                let pkg = String::from_utf8_lossy(pkg).into_owned();
                let Some(text) = fs.read(&super::rootfs::join(info, &name)) else {
                    continue;
                };
                for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    dpkg.entry(line.to_vec()).or_insert_with(|| pkg.clone());
                }
            }
            return Owners {
                kind: Some("dpkg"),
                dpkg,
                note: None,
            };
        }
        let rpm = [
            &b"/var/lib/rpm/rpmdb.sqlite"[..],
            b"/usr/lib/sysimage/rpm/rpmdb.sqlite",
            b"/var/lib/rpm/Packages",
            b"/var/lib/rpm/Packages.db",
        ]
        .into_iter()
        .find(|p| fs.lstat(p).is_some());
        Owners {
            kind: None,
            dpkg: HashMap::new(),
            note: Some(match rpm {
                Some(p) => format!(
                    "an rpm database ({}) this build does not read yet: no file is known to be owned by a package, so checks for files not owned by a package were skipped",
                    String::from_utf8_lossy(p)
                ),
                None => "no package database (no /var/lib/dpkg/status, no rpmdb): no file is known to be owned by a package, so checks for files not owned by a package were skipped".into(),
            }),
        }
    }

    /// `dpkg`, `rpm`, or `None` when the root has no database we read.
    pub fn kind(&self) -> Option<&'static str> {
        self.kind
    }

    /// Why ownership is unknown, when it is.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Is ownership known at all (a database was read)?
    pub fn known(&self) -> bool {
        self.kind.is_some()
    }

    /// The package owning `path` (absolute inside the root), trying its merged-/usr twin (`/bin/x` and
    /// `/usr/bin/x` are one file on a merged-/usr system, listed under either name).
    pub fn owner(&self, path: &[u8]) -> Option<String> {
        if let Some(p) = self.dpkg.get(path) {
            return Some(p.clone());
        }
        for top in [
            &b"/bin/"[..],
            b"/sbin/",
            b"/lib/",
            b"/lib32/",
            b"/lib64/",
            b"/libx32/",
        ] {
            if path.starts_with(top) {
                let mut twin = b"/usr".to_vec();
                twin.extend_from_slice(path);
                return self.dpkg.get(&twin).cloned();
            }
            let mut usr = b"/usr".to_vec();
            usr.extend_from_slice(top);
            if let Some(rest) = path.strip_prefix(usr.as_slice()) {
                let mut twin = top.to_vec();
                twin.extend_from_slice(rest);
                return self.dpkg.get(&twin).cloned();
            }
        }
        None
    }

    /// True when a database was read and no package owns `path`.
    pub fn unowned(&self, path: &[u8]) -> bool {
        self.known() && self.owner(path).is_none()
    }
}
