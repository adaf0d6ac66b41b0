//! The rpmdb: where it is (`/var/lib/rpm`, `/usr/lib/sysimage/rpm`) and which format it is in
//! (SQLite `rpmdb.sqlite` on RHEL 9 and Fedora ≥ 33, Berkeley DB `Packages` and NDB `Packages.db` on
//! older ones).

use super::root::Root;
use super::{Loaded, PkgDbError};

/// The directories rpm keeps its database in (Fedora ≥ 36 moved it to `/usr/lib/sysimage/rpm` and
/// left `/var/lib/rpm` as a symlink).
const DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];

/// An rpmdb found in a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sqlite,
    BerkeleyDb,
    Ndb,
}

/// A database file found: its format and path inside the root.
#[derive(Debug, Clone)]
pub struct Found {
    pub format: Format,
    pub path: String,
}

/// The rpmdb of the root, if any (SQLite first: a converted system may keep the old files).
pub fn find(root: &Root) -> Option<Found> {
    for (name, format) in [
        ("rpmdb.sqlite", Format::Sqlite),
        ("Packages.db", Format::Ndb),
        ("Packages", Format::BerkeleyDb),
    ] {
        for dir in DIRS {
            let path = format!("{dir}/{name}");
            if root
                .lstat(path.as_bytes())
                .is_ok_and(|(_, st)| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            {
                return Some(Found { format, path });
            }
        }
    }
    None
}

pub(crate) fn load(root: &Root, found: Found) -> Result<Loaded, PkgDbError> {
    let format = match found.format {
        Format::Sqlite => "SQLite",
        Format::BerkeleyDb => "Berkeley DB",
        Format::Ndb => "NDB",
    };
    Err(PkgDbError::UnsupportedRpmdb {
        path: root.display(found.path.as_bytes()),
        format,
    })
}
