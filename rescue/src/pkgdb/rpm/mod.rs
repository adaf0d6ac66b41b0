//! The rpmdb: where it is (`/var/lib/rpm`, `/usr/lib/sysimage/rpm`) and which format it is in
//! (SQLite `rpmdb.sqlite` on RHEL 9 and Fedora ≥ 33, Berkeley DB `Packages` and NDB `Packages.db` on
//! older ones).

pub mod header;

use std::path::PathBuf;

use super::root::Root;
use super::sqlite::{Sqlite, Value};
use super::{DbKind, DigestAlgo, FileEntry, FileKind, Loaded, Package, PkgDbError, checks};
use header::{Header, tag};

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
        Format::Sqlite => return load_sqlite(root, &found.path),
        Format::BerkeleyDb => return load_bdb(root, &found.path),
        Format::Ndb => "NDB",
    };
    Err(PkgDbError::UnsupportedRpmdb {
        path: root.display(found.path.as_bytes()),
        format,
    })
}

/// rpm's file flags (`rpmfileAttrs`).
const RPMFILE_CONFIG: i64 = 1 << 0;
const RPMFILE_MISSINGOK: i64 = 1 << 3;
const RPMFILE_GHOST: i64 = 1 << 6;

fn digest_algo(n: i64) -> Option<DigestAlgo> {
    match n {
        1 => Some(DigestAlgo::Md5),
        2 => Some(DigestAlgo::Sha1),
        8 => Some(DigestAlgo::Sha256),
        9 => Some(DigestAlgo::Sha384),
        10 => Some(DigestAlgo::Sha512),
        _ => None,
    }
}

fn load_sqlite(root: &Root, path: &str) -> Result<Loaded, PkgDbError> {
    let shown = root.display(path.as_bytes());
    let read_err = |p: &str| {
        let shown = root.display(p.as_bytes());
        move |source| PkgDbError::ReadFile {
            path: shown,
            source,
        }
    };
    let (file, _) = root.open_file(path.as_bytes()).map_err(read_err(path))?;
    let wal_path = format!("{path}-wal");
    let wal = match root.open_file(wal_path.as_bytes()) {
        Ok((f, _)) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(read_err(&wal_path)(e)),
    };
    let sql_err = |e: super::sqlite::SqliteError| PkgDbError::ParseSqlite {
        path: shown.clone(),
        what: e.to_string(),
    };
    let db = Sqlite::open(file, wal).map_err(sql_err)?;
    let Some(table) = db.table_root("Packages").map_err(sql_err)? else {
        return Err(PkgDbError::ParseSqlite {
            path: shown.clone(),
            what: "it has no Packages table".into(),
        });
    };
    let mut loaded = Loaded {
        kind: DbKind::Rpm,
        location: PathBuf::from(path),
        packages: Vec::new(),
        files: Vec::new(),
        warnings: Vec::new(),
        diversions: Vec::new(),
    };
    let mut index = 0usize;
    let mut header_err = None;
    db.for_each_row(table, &mut |hnum, rec| {
        index += 1;
        let Some(Value::Blob(blob)) = rec.get(1) else {
            loaded.warnings.push(format!(
                "{}: row {hnum} has no header blob",
                shown.display()
            ));
            return Ok(());
        };
        if let Err(what) = add_header(&mut loaded, blob) {
            header_err.get_or_insert(PkgDbError::ParseRpmHeader {
                path: shown.clone(),
                index: hnum as usize,
                what: what.to_string(),
            });
        }
        Ok(())
    })
    .map_err(sql_err)?;
    if let Some(e) = header_err {
        return Err(e);
    }
    Ok(loaded)
}

fn load_bdb(root: &Root, path: &str) -> Result<Loaded, PkgDbError> {
    let shown = root.display(path.as_bytes());
    let (file, _) = root
        .open_file(path.as_bytes())
        .map_err(|source| PkgDbError::ReadFile {
            path: shown.clone(),
            source,
        })?;
    let bdb_err = |e: super::bdb::BdbError| PkgDbError::ParseBdb {
        path: shown.clone(),
        what: e.to_string(),
    };
    let db = super::bdb::Bdb::open(file).map_err(bdb_err)?;
    let mut loaded = Loaded {
        kind: DbKind::Rpm,
        location: PathBuf::from(path),
        packages: Vec::new(),
        files: Vec::new(),
        warnings: Vec::new(),
        diversions: Vec::new(),
    };
    let mut header_err = None;
    db.for_each(&mut |key, blob| {
        // Record 0 holds rpm's next header number, not a header.
        let Ok(k) = <[u8; 4]>::try_from(key) else {
            return Ok(());
        };
        let num = u32::from_le_bytes(k);
        if num == 0 || blob.len() < 8 {
            return Ok(());
        }
        if let Err(what) = add_header(&mut loaded, &blob) {
            header_err.get_or_insert(PkgDbError::ParseRpmHeader {
                path: shown.clone(),
                index: num as usize,
                what: what.to_string(),
            });
        }
        Ok(())
    })
    .map_err(bdb_err)?;
    match header_err {
        Some(e) => Err(e),
        None => Ok(loaded),
    }
}

/// Adds one package and its files from a header blob.
pub(crate) fn add_header(loaded: &mut Loaded, blob: &[u8]) -> Result<(), header::HeaderError> {
    let h = Header::parse(blob)?;
    let name = h.string(tag::NAME)?.unwrap_or_default();
    // The public key pseudo-packages (gpg-pubkey) carry no files; they are packages all the same.
    let version = h.string(tag::VERSION)?.unwrap_or_default();
    let release = h.string(tag::RELEASE)?.unwrap_or_default();
    let epoch = h.ints(tag::EPOCH)?.first().copied();
    let idx = loaded.packages.len() as u32;
    loaded.packages.push(Package {
        name,
        version: match epoch {
            Some(e) => format!("{e}:{version}-{release}"),
            None => format!("{version}-{release}"),
        },
        architecture: h.string(tag::ARCH)?.unwrap_or_default(),
        installed: true,
    });
    let base = h.strings(tag::BASENAMES)?;
    let paths: Vec<Vec<u8>> = if base.is_empty() {
        h.strings(tag::OLDFILENAMES)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    } else {
        let dirs = h.strings(tag::DIRNAMES)?;
        let di = h.ints(tag::DIRINDEXES)?;
        if di.len() != base.len() {
            return Err(header::HeaderError::new(format!(
                "{} basenames but {} dirindexes",
                base.len(),
                di.len()
            )));
        }
        let mut out = Vec::with_capacity(base.len());
        for (b, &d) in base.iter().zip(&di) {
            let Some(dir) = usize::try_from(d).ok().and_then(|d| dirs.get(d)) else {
                return Err(header::HeaderError::new(format!(
                    "dirindex {d} is past the {} dirnames",
                    dirs.len()
                )));
            };
            let mut p = dir.to_vec();
            p.extend_from_slice(b);
            out.push(p);
        }
        out
    };
    let digests = h.strings(tag::FILEDIGESTS)?;
    let algo = match h.ints(tag::FILEDIGESTALGO)?.first() {
        None => Some(DigestAlgo::Md5),
        Some(&a) => digest_algo(a),
    };
    let modes = h.ints(tag::FILEMODES)?;
    let flags = h.ints(tag::FILEFLAGS)?;
    let states = h.ints(tag::FILESTATES)?;
    let verify = h.ints(tag::FILEVERIFYFLAGS)?;
    let users = h.strings(tag::FILEUSERNAME)?;
    let groups = h.strings(tag::FILEGROUPNAME)?;
    let links = h.strings(tag::FILELINKTOS)?;
    let mut sizes = h.ints(tag::LONGFILESIZES)?;
    if sizes.is_empty() {
        sizes = h.ints(tag::FILESIZES)?;
    }
    if algo.is_none() && !digests.is_empty() {
        loaded.warnings.push(format!(
            "{}: file digest algorithm {:?} is unknown: contents not checked",
            loaded.packages[idx as usize].name,
            h.ints(tag::FILEDIGESTALGO)?.first()
        ));
    }
    for (i, path) in paths.into_iter().enumerate() {
        // Not installed (excluded by --excludedocs, another colour, replaced): rpm -V skips it too.
        if states.get(i).is_some_and(|&s| s != 0) {
            continue;
        }
        let mut f = FileEntry::new(path, idx);
        let fl = flags.get(i).copied().unwrap_or(0);
        f.config = fl & RPMFILE_CONFIG != 0;
        f.missing_ok = fl & (RPMFILE_MISSINGOK | RPMFILE_GHOST) != 0;
        if let Some(&m) = modes.get(i) {
            let m = m as u32;
            f.kind = Some(FileKind::from_mode(m));
            f.perms = Some(m & 0o7777);
        }
        if let (Some(a), Some(d)) = (algo, digests.get(i))
            && !d.is_empty()
        {
            let mut bin = vec![0u8; a.digest_len()];
            if hex::decode_to_slice(d, &mut bin).is_ok() {
                f.digest = Some((a, bin.into_boxed_slice()));
            }
        }
        f.user = users
            .get(i)
            .map(|u| String::from_utf8_lossy(u).into_owned());
        f.group = groups
            .get(i)
            .map(|g| String::from_utf8_lossy(g).into_owned());
        f.size = sizes.get(i).and_then(|&s| u64::try_from(s).ok());
        f.link_target = links.get(i).filter(|l| !l.is_empty()).map(|l| l.to_vec());
        f.checks = verify
            .get(i)
            .map_or(checks::ALL, |&v| v as u16 & checks::ALL);
        if fl & RPMFILE_GHOST != 0 {
            f.checks &= !(checks::DIGEST | checks::SIZE | checks::LINKTO);
        }
        loaded.files.push(f);
    }
    Ok(())
}

/// Fuzz targets (see `crate::fuzzing`): rpm header blobs (what each rpmdb row holds), as
/// [`add_header`] turns them into packages and files.
#[cfg(test)]
mod fuzz {
    use super::header::tests::{blob, i32s, strs};
    use super::*;
    use crate::fuzzing::Target;

    fn headers(b: &[u8]) {
        let mut loaded = Loaded {
            kind: DbKind::Rpm,
            location: PathBuf::from("fuzz"),
            packages: Vec::new(),
            files: Vec::new(),
            warnings: Vec::new(),
            diversions: Vec::new(),
        };
        if add_header(&mut loaded, b).is_ok() {
            assert_eq!(loaded.packages.len(), 1);
        }
    }

    #[test]
    fn rpm_headers() {
        let (string, array, int16, int32) = (6, 8, 3, 4);
        let b = blob(&[
            (tag::NAME, string, 1, strs(&["bash"])),
            (tag::VERSION, string, 1, strs(&["5.1"])),
            (tag::RELEASE, string, 1, strs(&["1.el9"])),
            (tag::EPOCH, int32, 1, i32s(&[1])),
            (tag::ARCH, string, 1, strs(&["x86_64"])),
            (tag::BASENAMES, array, 2, strs(&["bash", "sh"])),
            (tag::DIRNAMES, array, 1, strs(&["/usr/bin/"])),
            (tag::DIRINDEXES, int32, 2, i32s(&[0, 0])),
            (tag::FILEMODES, int16, 2, vec![0x81, 0xed, 0xa1, 0xff]),
            (tag::FILESIZES, int32, 2, i32s(&[1_234_567, 4])),
            (tag::FILEDIGESTS, array, 2, strs(&[&"ab".repeat(32), ""])),
            (tag::FILEDIGESTALGO, int32, 1, i32s(&[8])),
            (tag::FILEUSERNAME, array, 2, strs(&["root", "root"])),
            (tag::FILEGROUPNAME, array, 2, strs(&["root", "root"])),
            (tag::FILELINKTOS, array, 2, strs(&["", "bash"])),
            (tag::FILEFLAGS, int32, 2, i32s(&[0, 17])),
        ]);
        let old = blob(&[
            (tag::NAME, string, 1, strs(&["old"])),
            (tag::OLDFILENAMES, array, 1, strs(&["/etc/old.conf"])),
        ]);
        Target::new("rpm-header").seed(b).seed(old).run(headers);
    }

    /// Found by `rpm-header`: a string-array tag claiming 1.8 million strings in a 440-byte header
    /// reserved 16 MiB before reading the first one; the data now bounds the reservation.
    #[test]
    fn regression_a_string_count_does_not_reserve_memory() {
        let input = include_bytes!("../../fuzz-seeds/regressions/rpm-header-string-count.bin");
        assert_eq!(crate::fuzzing::replay(headers, input), Ok(()));
    }
}
