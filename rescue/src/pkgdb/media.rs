//! `--packages-from MEDIA`: installed Debian packages checked against the distribution's signed
//! metadata instead of the suspect's own (rewritable) md5sums. The chain is apt's
//! ([`crate::reinstall::apt`]): a signed `InRelease` (or `Release` + `Release.gpg`) proves a
//! `Packages` index by hash, the index proves each `.deb` by SHA-256 and size, and the `.deb`'s data
//! archive is what the files on disk must be (compared by SHA-256, symlink targets too); its control
//! archive's `conffiles` says which of them an administrator may change.
//!
//! MEDIA is a directory the responder brings: a mirror (`dists/…/InRelease`, `pool/…/*.deb`), or apt's
//! lists and archives copied from a clean machine (`*_InRelease`, `*_Packages`, `*.deb`), in any
//! layout: files are found by name and proven by hash. Reported: files that differ from the signed
//! package, installed packages the signed metadata does not list (at that version), packages whose
//! `.deb` is not on the medium, and paths the suspect's file lists claim for a package that its signed
//! `.deb` does not ship (a planted file made to look owned).
//!
//! An rpm root is checked the same way against signed RPM repositories ([`super::repodata`]), into the
//! same report.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use sha2::Digest;

use super::deb::{self, DebError, Flow};
use super::root::Root;
use super::verify::{Change, Changed, VerifyProgress, hash_stream};
use super::{DbKind, DigestAlgo, FileKind, Package, PackageDb, normalize};
use crate::reinstall::apt::{self, SignedRelease};
use crate::reinstall::signature::TrustedKey;

/// Errors of the media check (what stops it; problems with single files are notes in the report).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("reading the media directory {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{media} holds no Release file whose signature a trusted key verifies{tried}")]
    NoSignedRelease { media: PathBuf, tried: String },
    #[error("{media} holds no Packages index that a verified Release lists{tried}")]
    NoProvenIndex { media: PathBuf, tried: String },
    #[error("opening the root {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("comparing the root with the signed packages")]
    Verify(#[source] super::PkgDbError),
}

/// A verified Release the check used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseUsed {
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub suite: Option<String>,
    pub signer: String,
}

/// An installed package the signed metadata does not list at its version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unlisted {
    pub package: Package,
    /// The versions the signed metadata lists under that name and architecture.
    pub listed_versions: Vec<String>,
}

/// A path the suspect's file list gives a package but its signed `.deb` does not ship.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotShipped {
    pub package: String,
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
}

/// What the check found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MediaReport {
    pub releases: Vec<ReleaseUsed>,
    /// Packages whose files were compared with their signed `.deb`.
    pub packages_checked: usize,
    /// Files that differ from the signed `.deb` (SHA-256), are missing or are something else.
    pub changed: Vec<Changed>,
    pub not_in_metadata: Vec<Unlisted>,
    /// Listed in the signed metadata, but the `.deb` is not on the medium (nothing compared).
    pub deb_not_on_media: Vec<Package>,
    pub not_shipped: Vec<NotShipped>,
    /// Files of the medium that could not be used (a bad signature, a `.deb` whose hash is not the
    /// signed one, a compressed index), in words.
    pub notes: Vec<String>,
}

fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Every regular file beneath `dir` (symlinks are not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), MediaError> {
    let rd = std::fs::read_dir(dir).map_err(|source| MediaError::Walk {
        path: dir.to_owned(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| MediaError::Walk {
            path: dir.to_owned(),
            source,
        })?;
        let ft = e.file_type().map_err(|source| MediaError::Walk {
            path: e.path(),
            source,
        })?;
        if ft.is_dir() {
            walk(&e.path(), out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One package to compare: the installed entry, its signed `Packages` stanza and the `.deb` found.
struct Job<'a> {
    installed: u32,
    signed: &'a apt::Package,
    deb: PathBuf,
}

/// What comparing one package gave.
#[derive(Default)]
struct JobResult {
    changed: Vec<Changed>,
    not_shipped: Vec<NotShipped>,
    note: Option<String>,
    bytes: u64,
}

/// Checks the installed dpkg packages of `root` against signed metadata and `.deb`s on `media`.
pub fn verify_against_media(
    db: &PackageDb,
    root: &Path,
    media: &Path,
    keys: &[TrustedKey],
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<MediaReport, MediaError> {
    if db.kind() == DbKind::Rpm {
        return super::repodata::verify_against_repodata(db, root, media, keys, now, progress);
    }
    let r = Root::open(root).map_err(|source| MediaError::OpenRoot {
        path: root.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    walk(media, &mut files)?;
    files.sort();
    let mut report = MediaReport::default();

    // 1. Releases whose signature verifies.
    let mut releases = Vec::new();
    let mut tried = Vec::new();
    for f in &files {
        let n = name_of(f);
        let sig = PathBuf::from(format!("{}.gpg", f.display()));
        let candidate = if n == "InRelease" || n.ends_with("_InRelease") {
            Some(None)
        } else if (n == "Release" || n.ends_with("_Release")) && sig.is_file() {
            Some(Some(sig))
        } else {
            None
        };
        let Some(sig) = candidate else { continue };
        match SignedRelease::load(f, sig.as_deref(), keys, now) {
            Ok(rel) => {
                report.releases.push(ReleaseUsed {
                    path: f.clone(),
                    suite: rel.suite.clone().or_else(|| rel.codename.clone()),
                    signer: rel.signer.fingerprint.clone(),
                });
                releases.push(rel);
            }
            Err(e) => {
                let msg = crate::error_chain(&e);
                tried.push(msg.clone());
                report.notes.push(msg);
            }
        }
    }
    if releases.is_empty() {
        return Err(MediaError::NoSignedRelease {
            media: media.to_owned(),
            tried: list(&tried),
        });
    }

    // 2. Packages indexes a verified Release lists (by hash, whatever the file is called).
    let mut signed: Vec<apt::Package> = Vec::new();
    let mut tried = Vec::new();
    for f in &files {
        let n = name_of(f);
        if !(n.ends_with("Packages") || n.ends_with("Packages.gz")) {
            if n.contains("Packages.") && !n.ends_with(".deb") {
                report.notes.push(format!(
                    "{}: a compressed index this build does not read; give the uncompressed Packages (the Release lists it too)",
                    f.display()
                ));
            }
            continue;
        }
        let Ok(bytes) = std::fs::read(f) else {
            report
                .notes
                .push(format!("{}: cannot be read", f.display()));
            continue;
        };
        let sha = apt::sha256_hex(&bytes);
        if !releases
            .iter()
            .any(|r| r.entry_for(bytes.len() as u64, &sha).is_some())
        {
            let msg = format!("{}: not listed by any verified Release", f.display());
            tried.push(msg.clone());
            report.notes.push(msg);
            continue;
        }
        match apt::Packages::parse(&bytes, f) {
            Ok(p) => signed.extend(p.packages),
            Err(e) => report.notes.push(crate::error_chain(&e)),
        }
    }
    if signed.is_empty() {
        return Err(MediaError::NoProvenIndex {
            media: media.to_owned(),
            tried: list(&tried),
        });
    }
    let mut by_key: HashMap<(&str, &str, &str), &apt::Package> = HashMap::new();
    let mut versions: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for p in &signed {
        by_key.insert(
            (
                p.package.as_str(),
                p.version.as_str(),
                p.architecture.as_str(),
            ),
            p,
        );
        versions
            .entry((p.package.as_str(), p.architecture.as_str()))
            .or_default()
            .push(p.version.clone());
    }
    let mut debs: HashMap<String, Vec<&PathBuf>> = HashMap::new();
    for f in files.iter().filter(|f| name_of(f).ends_with(".deb")) {
        debs.entry(name_of(f)).or_default().push(f);
    }

    // 3. Each installed package: listed? its .deb on the medium?
    let mut jobs = Vec::new();
    for (i, p) in db.packages().iter().enumerate() {
        if !p.installed {
            continue;
        }
        let base = p.name.split(':').next().unwrap_or(&p.name);
        let Some(s) = by_key.get(&(base, p.version.as_str(), p.architecture.as_str())) else {
            report.not_in_metadata.push(Unlisted {
                package: p.clone(),
                listed_versions: versions
                    .get(&(base, p.architecture.as_str()))
                    .cloned()
                    .unwrap_or_default(),
            });
            continue;
        };
        let pool_name = s.filename.rsplit('/').next().unwrap_or_default().to_owned();
        // apt's archive cache spells an epoch's colon as %3a; the pool leaves the epoch out.
        let cache_name = format!(
            "{}_{}_{}.deb",
            s.package,
            s.version.replace(':', "%3a"),
            s.architecture
        );
        let found = [pool_name, cache_name]
            .iter()
            .filter_map(|n| debs.get(n))
            .flatten()
            .find(|d| std::fs::metadata(d).is_ok_and(|m| m.len() == s.size));
        match found {
            Some(d) => jobs.push(Job {
                installed: i as u32,
                signed: s,
                deb: (*d).clone(),
            }),
            None => report.deb_not_on_media.push(p.clone()),
        }
    }

    // 4. Compare, in parallel.
    let mut by_pkg: HashMap<u32, Vec<&super::FileEntry>> = HashMap::new();
    for f in db.files() {
        by_pkg.entry(f.package).or_default().push(f);
    }
    let mut p = VerifyProgress {
        files_done: 0,
        files_total: jobs.len() as u64,
        bytes_done: 0,
        bytes_total: jobs.iter().map(|j| j.signed.size).sum(),
    };
    progress(p);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 16);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<JobResult>(64);
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len()) {
            let tx = tx.clone();
            let (jobs, next, r, by_pkg) = (&jobs, &next, &r, &by_pkg);
            s.spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    let listed = by_pkg.get(&job.installed).map_or(&[][..], |v| &v[..]);
                    let res = compare_package(db, r, job, listed, &mut buf);
                    if tx.send(res).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for res in rx {
            p.files_done += 1;
            p.bytes_done += res.bytes;
            progress(p);
            if let Some(n) = res.note {
                report.notes.push(n);
            } else {
                report.packages_checked += 1;
            }
            report.changed.extend(res.changed);
            report.not_shipped.extend(res.not_shipped);
        }
    });
    report
        .changed
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.package.cmp(&b.package)));
    report
        .not_shipped
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.package.cmp(&b.package)));
    Ok(report)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(" ({})", v.join("; "))
    }
}

/// A reader that hashes what passes through (the `.deb` is proven in the same pass that reads it).
struct Sha256Reader<R> {
    inner: R,
    hash: sha2::Sha256,
    n: u64,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// Where the package's file `path` is on disk: moved aside when another package diverted it.
fn disk_path<'a>(db: &'a PackageDb, package: &str, path: &'a [u8]) -> &'a [u8] {
    db.diversions()
        .iter()
        .find(|d| d.from == path && d.by != package)
        .map_or(path, |d| &d.to[..])
}

fn compare_package(
    db: &PackageDb,
    r: &Root,
    job: &Job<'_>,
    listed: &[&super::FileEntry],
    buf: &mut [u8],
) -> JobResult {
    let installed = &db.packages()[job.installed as usize];
    let base = installed
        .name
        .split(':')
        .next()
        .unwrap_or(&installed.name)
        .to_owned();
    let mut out = JobResult::default();
    let file = match std::fs::File::open(&job.deb) {
        Ok(f) => f,
        Err(e) => {
            out.note = Some(format!("{}: {e}", job.deb.display()));
            return out;
        }
    };
    let mut reader = Sha256Reader {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        hash: sha2::Sha256::new(),
        n: 0,
    };
    let listed_here: HashSet<Vec<u8>> = listed.iter().map(|f| db.canonical(&f.path)).collect();
    let mut conffiles: HashSet<Vec<u8>> = HashSet::new();
    let mut shipped: HashSet<Vec<u8>> = HashSet::new();
    let mut changed = Vec::new();
    let mut hash_buf = vec![0u8; 64 * 1024];
    let result = deb::ar_members(&mut reader, &mut |name, member| {
        if name.starts_with("control.tar") {
            deb::with_tar(name, member, &mut |t| {
                let mut a = tar::Archive::new(t);
                for e in a.entries().map_err(DebError::Read)? {
                    let mut e = e.map_err(DebError::Read)?;
                    if e.path_bytes().as_ref() == b"./conffiles" {
                        let mut text = Vec::new();
                        e.read_to_end(&mut text).map_err(DebError::Read)?;
                        conffiles.extend(
                            text.split(|&b| b == b'\n')
                                .map(|l| l.trim_ascii())
                                .filter(|l| !l.is_empty())
                                .map(|l| l.strip_prefix(b"remove-on-upgrade ").unwrap_or(l))
                                .map(normalize),
                        );
                    }
                }
                Ok(())
            })?;
        } else if name.starts_with("data.tar") {
            deb::with_tar(name, member, &mut |t| {
                let mut a = tar::Archive::new(t);
                for e in a.entries().map_err(DebError::Read)? {
                    let mut e = e.map_err(DebError::Read)?;
                    let path = normalize(&e.path_bytes());
                    shipped.insert(path.clone());
                    let kind = e.header().entry_type();
                    let on_disk = disk_path(db, &base, &path).to_vec();
                    // A file another package took over (Replaces:) is that package's to answer for.
                    if db
                        .owner_bytes(&on_disk)
                        .is_some_and(|o| o != installed.name)
                        && !listed_here.contains(&db.canonical(&on_disk))
                    {
                        continue;
                    }
                    let mut changes = Vec::new();
                    if kind.is_file() {
                        let (want, _) = hash_stream(&mut e, DigestAlgo::Sha256, &mut hash_buf)
                            .map_err(DebError::Read)?;
                        match r.lstat(&on_disk) {
                            Err(_) => changes.push(Change::Missing),
                            Ok((_, st)) if FileKind::from_mode(st.st_mode) != FileKind::Regular => {
                                changes.push(Change::FileType {
                                    expected: FileKind::Regular,
                                    found: FileKind::from_mode(st.st_mode),
                                })
                            }
                            Ok(_) => match r
                                .open_file(&on_disk)
                                .and_then(|(f, _)| hash_stream(f, DigestAlgo::Sha256, buf))
                            {
                                Ok((got, _)) if got == want => {}
                                Ok((got, _)) => changes.push(Change::Digest {
                                    algorithm: DigestAlgo::Sha256,
                                    expected: hex::encode(want),
                                    found: hex::encode(got),
                                }),
                                Err(err) => changes.push(Change::Unreadable {
                                    error: err.to_string(),
                                }),
                            },
                        }
                    } else if kind.is_symlink() {
                        let want = e
                            .link_name_bytes()
                            .map(|l| l.into_owned())
                            .unwrap_or_default();
                        match r.lstat(&on_disk) {
                            Err(_) => changes.push(Change::Missing),
                            Ok((fd, st)) => {
                                let found = FileKind::from_mode(st.st_mode);
                                if found != FileKind::Symlink {
                                    changes.push(Change::FileType {
                                        expected: FileKind::Symlink,
                                        found,
                                    });
                                } else if let Ok(t) = Root::readlink(&fd)
                                    && t != want
                                {
                                    changes.push(Change::LinkTarget {
                                        expected: String::from_utf8_lossy(&want).into_owned(),
                                        found: String::from_utf8_lossy(&t).into_owned(),
                                    });
                                }
                            }
                        }
                    }
                    if !changes.is_empty() {
                        changed.push(Changed {
                            path: PathBuf::from(std::ffi::OsStr::from_bytes(&on_disk)),
                            package: installed.name.clone(),
                            config: conffiles.contains(&path),
                            changes,
                        });
                    }
                }
                Ok(())
            })?;
            return Ok(Flow::Continue);
        }
        Ok(Flow::Continue)
    });
    if let Err(e) = result {
        out.note = Some(format!("{}: {}", job.deb.display(), crate::error_chain(&e)));
        return out;
    }
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    out.bytes = reader.n;
    let sha = hex::encode(reader.hash.finalize());
    if reader.n != job.signed.size || sha != job.signed.sha256 {
        out.note = Some(format!(
            "{}: {} bytes, SHA-256 {sha}, but the signed index lists {} {} with {} bytes and SHA-256 {}: not used",
            job.deb.display(),
            reader.n,
            job.signed.package,
            job.signed.version,
            job.signed.size,
            job.signed.sha256
        ));
        return out;
    }
    out.changed = changed;
    for f in listed {
        let p = normalize(&f.path);
        let diverted_from = db
            .diversions()
            .iter()
            .find(|d| d.to == f.path && d.by != base)
            .map(|d| normalize(&d.from));
        let shipped_here =
            shipped.contains(&p) || diverted_from.is_some_and(|from| shipped.contains(&from));
        if !shipped_here {
            out.not_shipped.push(NotShipped {
                package: installed.name.clone(),
                path: f.path().to_owned(),
            });
        }
    }
    out
}
