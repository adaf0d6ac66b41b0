//! Package databases of a suspect root, read offline: which package owns a file, and which package
//! files changed since installation. Debian's dpkg database (`/var/lib/dpkg/status`, `info/*.list`,
//! `info/*.md5sums`, conffiles, diversions, stat overrides) and the rpmdb (SQLite `rpmdb.sqlite`).
//!
//! The root is a mounted suspect filesystem or a directory: nothing from it is executed (no `dpkg`,
//! no `rpm`, no library of the suspect), every file is opened beneath the root without following a
//! planted symlink out of it ([`root`]). The suspect's own database can be rewritten by an attacker:
//! checking installed packages against the distribution's signed metadata ([`media`], [`repodata`])
//! is the stronger check.
//!
//! Never prints; progress goes through a callback.

pub mod bdb;
pub mod deb;
pub mod dpkg;
pub mod media;
pub mod repodata;
pub mod root;
pub mod rpm;
pub mod sqlite;
mod verify;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use verify::{ByInode, Change, Changed, VerifyProgress};

/// Errors reading a package database.
#[derive(Debug, thiserror::Error)]
pub enum PkgDbError {
    #[error("opening the root {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {what}")]
    ParseLine {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path} is not a SQLite database rpm wrote: {what}")]
    ParseSqlite { path: PathBuf, what: String },
    #[error("{path} is not a Berkeley DB hash database rpm wrote: {what}")]
    ParseBdb { path: PathBuf, what: String },
    #[error("{path}: package header {index}: {what}")]
    ParseRpmHeader {
        path: PathBuf,
        index: usize,
        what: String,
    },
    #[error(
        "{path} is an rpm database in {format} format, which this build does not read yet (SQLite rpmdb.sqlite and Berkeley DB Packages only)"
    )]
    UnsupportedRpmdb { path: PathBuf, format: &'static str },
}

/// Which package manager the database belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Dpkg,
    Rpm,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    /// The name as the package manager reports it (`libc6:amd64` for a dpkg Multi-Arch: same package).
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// False for a dpkg package removed but not purged (`config-files`): only its conffiles remain,
    /// listed for [`PackageDb::owner`], not checked.
    pub installed: bool,
}

/// A digest algorithm a package database records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgo {
    /// Length of the binary digest.
    pub fn digest_len(self) -> usize {
        match self {
            DigestAlgo::Md5 => 16,
            DigestAlgo::Sha1 => 20,
            DigestAlgo::Sha256 => 32,
            DigestAlgo::Sha384 => 48,
            DigestAlgo::Sha512 => 64,
        }
    }
}

/// The file type a package database records for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    /// From an `st_mode`.
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// What to check of a file (rpm's `%verify`; dpkg checks the digest only).
pub mod checks {
    pub const DIGEST: u16 = 1 << 0;
    pub const SIZE: u16 = 1 << 1;
    pub const LINKTO: u16 = 1 << 2;
    pub const USER: u16 = 1 << 3;
    pub const GROUP: u16 = 1 << 4;
    pub const MODE: u16 = 1 << 6;
    pub const ALL: u16 = DIGEST | SIZE | LINKTO | USER | GROUP | MODE;
}

/// One file a package installed, with what the database says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path where the file is on disk (after dpkg diversions), as the package lists it.
    pub path: Vec<u8>,
    /// Index into [`PackageDb::packages`].
    pub package: u32,
    pub digest: Option<(DigestAlgo, Box<[u8]>)>,
    pub kind: Option<FileKind>,
    /// Permission bits (`0o7777`).
    pub perms: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub size: Option<u64>,
    pub link_target: Option<Vec<u8>>,
    /// A configuration file (dpkg conffile, rpm `%config`): the administrator may change it.
    pub config: bool,
    /// Absent is not a change (rpm `%ghost`, `%config(missingok)`).
    pub missing_ok: bool,
    /// Which of [`checks`] apply.
    pub checks: u16,
}

impl FileEntry {
    fn new(path: Vec<u8>, package: u32) -> FileEntry {
        FileEntry {
            path,
            package,
            digest: None,
            kind: None,
            perms: None,
            user: None,
            group: None,
            size: None,
            link_target: None,
            config: false,
            missing_ok: false,
            checks: checks::ALL,
        }
    }

    /// The path as a `Path`.
    pub fn path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(&self.path))
    }
}

/// A package database read from a root.
#[derive(Debug)]
pub struct PackageDb {
    kind: DbKind,
    /// The database file or directory, inside the root (`/var/lib/dpkg`, `/var/lib/rpm/rpmdb.sqlite`).
    location: PathBuf,
    packages: Vec<Package>,
    files: Vec<FileEntry>,
    /// Canonical path → index of the first package listing it.
    owners: HashMap<Vec<u8>, u32>,
    /// `/bin` → `/usr/bin` where the root is /usr-merged.
    aliases: Vec<(Vec<u8>, Vec<u8>)>,
    /// What could not be read but did not stop the rest (a package without md5sums …).
    warnings: Vec<String>,
    /// dpkg diversions (empty for rpm).
    diversions: Vec<dpkg::Diversion>,
}

/// Top-level directories a /usr-merged root replaces by a symlink into `/usr`.
const USR_MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Finds the package database of the root and reads it. `None`: no package database (not an error:
/// the root may be a distribution without one, or not a Linux root at all).
pub fn open(root: &Path) -> Result<Option<PackageDb>, PkgDbError> {
    let r = root::Root::open(root).map_err(|source| PkgDbError::OpenRoot {
        path: root.to_owned(),
        source,
    })?;
    let aliases = usr_merge_aliases(&r);
    let db = if dpkg::present(&r) {
        dpkg::load(&r)?
    } else if let Some(found) = rpm::find(&r) {
        rpm::load(&r, found)?
    } else {
        return Ok(None);
    };
    Ok(Some(PackageDb::index(db, aliases)))
}

/// What a backend hands over before indexing.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub kind: DbKind,
    pub location: PathBuf,
    pub packages: Vec<Package>,
    pub files: Vec<FileEntry>,
    pub warnings: Vec<String>,
    pub diversions: Vec<dpkg::Diversion>,
}

/// `/bin` → `/usr/bin` for each top-level directory that is a symlink into `/usr` in this root.
fn usr_merge_aliases(r: &root::Root) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for name in USR_MERGED {
        let path = format!("/{name}");
        let Ok((fd, st)) = r.lstat(path.as_bytes()) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            continue;
        }
        let Ok(target) = root::Root::readlink(&fd) else {
            continue;
        };
        let target = String::from_utf8_lossy(&target);
        let target = target.trim_end_matches('/');
        let usr = format!("usr/{name}");
        if target == usr || target == format!("/{usr}") || target == format!("./{usr}") {
            out.push((path.into_bytes(), format!("/{usr}").into_bytes()));
        }
    }
    out
}

/// `a//b/./c/` → `/a/b/c`: the spelling the owner map uses.
pub(crate) fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for comp in path.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

impl PackageDb {
    fn index(loaded: Loaded, aliases: Vec<(Vec<u8>, Vec<u8>)>) -> PackageDb {
        let mut db = PackageDb {
            kind: loaded.kind,
            location: loaded.location,
            packages: loaded.packages,
            files: loaded.files,
            owners: HashMap::new(),
            aliases,
            warnings: loaded.warnings,
            diversions: loaded.diversions,
        };
        let mut owners = HashMap::with_capacity(db.files.len());
        for f in &db.files {
            owners.entry(db.canonical(&f.path)).or_insert(f.package);
        }
        db.owners = owners;
        db
    }

    /// The spelling of `path` the owner map uses: normalized, `/bin/x` → `/usr/bin/x` on a merged root.
    pub fn canonical(&self, path: &[u8]) -> Vec<u8> {
        let p = normalize(path);
        for (from, to) in &self.aliases {
            if p.starts_with(from) && (p.len() == from.len() || p[from.len()] == b'/') {
                let mut out = to.clone();
                out.extend_from_slice(&p[from.len()..]);
                return out;
            }
        }
        p
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Where the database is, inside the root.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The installed packages.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// Every file (and directory, symlink) the packages list.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The package a file entry belongs to.
    pub fn package_of(&self, entry: &FileEntry) -> &Package {
        &self.packages[entry.package as usize]
    }

    /// What could not be read without stopping the rest (a package without its md5sums file …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// dpkg's diversions (a file of one package moved aside by another); empty for rpm.
    pub fn diversions(&self) -> &[dpkg::Diversion] {
        &self.diversions
    }

    /// The package owning `path` (absolute inside the root; either spelling on a /usr-merged root),
    /// or `None` when no package lists it.
    pub fn owner(&self, path: &Path) -> Option<&str> {
        self.owner_bytes(path.as_os_str().as_bytes())
    }

    /// [`PackageDb::owner`] for a path as bytes.
    pub fn owner_bytes(&self, path: &[u8]) -> Option<&str> {
        let i = *self.owners.get(&self.canonical(path))?;
        Some(&self.packages[i as usize].name)
    }

    /// Checks every file the database can check against the root (see [`Change`]); hashes in
    /// parallel, streaming, files opened beneath the root with `O_NOFOLLOW`. Sorted by path.
    pub fn verify(
        &self,
        root: &Path,
        progress: &mut dyn FnMut(VerifyProgress),
    ) -> Result<Vec<Changed>, PkgDbError> {
        verify::verify(self, root, None, progress)
    }

    /// [`PackageDb::verify`], reading the files the mount finds by their inode from `ext` (the
    /// root's own ext filesystem): the same findings, without opening each file through the mount.
    pub fn verify_by_inode(
        &self,
        root: &Path,
        ext: &ByInode<'_>,
        progress: &mut dyn FnMut(VerifyProgress),
    ) -> Result<Vec<Changed>, PkgDbError> {
        verify::verify(self, root, Some(ext), progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_usr_merge_aliases_apply_to_whole_components() {
        let loaded = Loaded {
            kind: DbKind::Dpkg,
            location: PathBuf::from("/var/lib/dpkg"),
            packages: vec![Package {
                name: "coreutils".into(),
                version: "9.1-1".into(),
                architecture: "amd64".into(),
                installed: true,
            }],
            files: vec![
                FileEntry::new(b"/bin/ls".to_vec(), 0),
                FileEntry::new(b"/binaries/x".to_vec(), 0),
            ],
            warnings: vec![],
            diversions: vec![],
        };
        let db = PackageDb::index(loaded, vec![(b"/bin".to_vec(), b"/usr/bin".to_vec())]);
        assert_eq!(db.owner(Path::new("/usr/bin/ls")), Some("coreutils"));
        assert_eq!(db.owner(Path::new("/bin/ls")), Some("coreutils"));
        assert_eq!(db.owner(Path::new("//usr/./bin/ls/")), Some("coreutils"));
        assert_eq!(db.owner(Path::new("/binaries/x")), Some("coreutils"));
        assert_eq!(db.owner(Path::new("/usr/binaries/x")), None);
        assert_eq!(db.owner(Path::new("/usr/bin/sl")), None);
    }

    #[test]
    fn no_database_is_none_and_a_damaged_one_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        assert!(
            open(r).unwrap().is_none(),
            "a root without a package database"
        );
        std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
        std::fs::write(r.join("var/lib/rpm/rpmdb.sqlite"), [0u8; 4096]).unwrap();
        let err = open(r).unwrap_err().to_string();
        assert!(
            err.contains("var/lib/rpm/rpmdb.sqlite") && err.contains("SQLite"),
            "{err}"
        );
        std::fs::remove_file(r.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
        std::fs::write(r.join("var/lib/rpm/Packages.db"), b"RpmP").unwrap();
        let err = open(r).unwrap_err().to_string();
        assert!(err.contains("NDB"), "{err}");
        // A status planted as a symlink to the rescue system's own database is not followed.
        std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
        std::os::unix::fs::symlink("/var/lib/dpkg/status", r.join("var/lib/dpkg/status")).unwrap();
        assert!(!dpkg::present(&root::Root::open(r).unwrap()));
    }
}
