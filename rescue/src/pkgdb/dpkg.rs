//! dpkg's database, as dpkg itself lays it out under `/var/lib/dpkg`: `status` (installed packages,
//! their conffiles with MD5), `info/<pkg>[:<arch>].list` (every path a package installed),
//! `info/<pkg>[:<arch>].md5sums` (MD5 of its non-conffile regular files), `diversions` (a file of one
//! package moved aside by another) and `statoverride` (owner and mode set by the administrator or a
//! maintainer script). Parsing is over bytes; loading reads beneath a [`Root`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::root::Root;
use super::{DbKind, DigestAlgo, FileEntry, Loaded, Package, PkgDbError, checks};

const STATUS: &str = "/var/lib/dpkg/status";

/// Whether the root has a dpkg status file.
pub fn present(root: &Root) -> bool {
    root.lstat(STATUS.as_bytes())
        .is_ok_and(|(_, st)| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// One conffile line of a status stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    pub path: Vec<u8>,
    /// `None` for `newconffile` (not yet installed).
    pub md5: Option<[u8; 16]>,
    /// No longer shipped by the package (kept on disk, not checked).
    pub obsolete: bool,
}

/// One package stanza of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `Multi-Arch: same`: dpkg names its info files `<pkg>:<arch>`.
    pub multi_arch_same: bool,
    /// The third word of `Status:` (`installed`, `unpacked`, `config-files`, …).
    pub state: String,
    pub conffiles: Vec<Conffile>,
}

impl StatusEntry {
    /// Whether the package's files are on disk (dpkg unpacked them and has not removed them).
    pub fn has_files(&self) -> bool {
        matches!(
            self.state.as_str(),
            "installed" | "unpacked" | "half-configured" | "triggers-awaited" | "triggers-pending"
        )
    }

    /// The name dpkg reports (`dpkg -S`) and names the info files by.
    pub fn name(&self) -> String {
        if self.multi_arch_same {
            format!("{}:{}", self.package, self.architecture)
        } else {
            self.package.clone()
        }
    }
}

fn hex16(s: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Parses `status`.
pub fn parse_status(bytes: &[u8], path: &Path) -> Result<Vec<StatusEntry>, PkgDbError> {
    let mut out = Vec::new();
    let mut cur: Option<StatusEntry> = None;
    let mut in_conffiles = false;
    let bad = |line: usize, what: String| PkgDbError::ParseLine {
        path: path.to_owned(),
        line,
        what,
    };
    let finish = |cur: &mut Option<StatusEntry>, out: &mut Vec<StatusEntry>| {
        if let Some(e) = cur.take() {
            out.push(e);
        }
    };
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            finish(&mut cur, &mut out);
            in_conffiles = false;
            continue;
        }
        let e = cur.get_or_insert_with(|| StatusEntry {
            package: String::new(),
            version: String::new(),
            architecture: String::new(),
            multi_arch_same: false,
            state: String::new(),
            conffiles: Vec::new(),
        });
        if line[0] == b' ' || line[0] == b'\t' {
            if in_conffiles {
                let text = line.trim_ascii();
                let bad_line = || {
                    bad(
                        n + 1,
                        format!(
                            "conffile line {:?} is not \"<path> <md5> [obsolete]\"",
                            String::from_utf8_lossy(text)
                        ),
                    )
                };
                // Path, MD5 and an optional flag, from the right: the path may contain spaces.
                let (mut path, last) = rsplit_space(text).ok_or_else(bad_line)?;
                let obsolete = last == b"obsolete" || last == b"remove-on-upgrade";
                let md5 = if obsolete {
                    let (p, m) = rsplit_space(path).ok_or_else(bad_line)?;
                    path = p;
                    m
                } else {
                    last
                };
                let md5 = parse_conffile_md5(md5, n, &bad)?;
                e.conffiles.push(Conffile {
                    path: path.to_vec(),
                    md5,
                    obsolete,
                });
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad(
                n + 1,
                format!(
                    "{:?} is neither a field nor a continuation",
                    String::from_utf8_lossy(line)
                ),
            ));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let value_s = || String::from_utf8_lossy(value).into_owned();
        in_conffiles = false;
        match name {
            b"Package" => e.package = value_s(),
            b"Version" => e.version = value_s(),
            b"Architecture" => e.architecture = value_s(),
            b"Multi-Arch" => e.multi_arch_same = value == b"same",
            b"Status" => {
                e.state = value_s()
                    .split_whitespace()
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned();
            }
            b"Conffiles" => in_conffiles = true,
            _ => {}
        }
    }
    finish(&mut cur, &mut out);
    out.retain(|e| !e.package.is_empty());
    Ok(out)
}

fn parse_conffile_md5(
    md5: &[u8],
    n: usize,
    bad: &dyn Fn(usize, String) -> PkgDbError,
) -> Result<Option<[u8; 16]>, PkgDbError> {
    if md5 == b"newconffile" {
        return Ok(None);
    }
    hex16(md5).map(Some).ok_or_else(|| {
        bad(
            n + 1,
            format!(
                "conffile MD5 {:?} is not 32 hex digits",
                String::from_utf8_lossy(md5)
            ),
        )
    })
}

/// `a b c` → (`a b`, `c`).
fn rsplit_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// One line of an md5sums file: absolute path, MD5.
pub type Md5Line = (Vec<u8>, [u8; 16]);

/// Parses an `info/*.md5sums` file: `<md5>  <path without leading slash>` per line.
pub fn parse_md5sums(bytes: &[u8], path: &Path) -> Result<Vec<Md5Line>, PkgDbError> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = (line.len() > 34)
            .then(|| hex16(&line[..32]))
            .flatten()
            .filter(|_| line[32] == b' ');
        let Some(md5) = parsed else {
            return Err(PkgDbError::ParseLine {
                path: path.to_owned(),
                line: n + 1,
                what: format!(
                    "{:?} is not \"<md5>  <path>\"",
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                ),
            });
        };
        // Two spaces (text mode) or space-asterisk (binary mode), as md5sum writes them.
        let rest = &line[33..];
        let rest = rest
            .strip_prefix(b" ")
            .or_else(|| rest.strip_prefix(b"*"))
            .unwrap_or(rest);
        let mut p = Vec::with_capacity(rest.len() + 1);
        if !rest.starts_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(rest);
        out.push((p, md5));
    }
    Ok(out)
}

/// One diversion: `from` (as packages list it) is on disk at `to`, except for `by`'s own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    /// The diverting package, `:` for a local diversion (`dpkg-divert --local`).
    pub by: String,
}

/// Parses `diversions`: three lines per diversion.
pub fn parse_diversions(bytes: &[u8]) -> Vec<Diversion> {
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines
        .chunks_exact(3)
        .filter(|c| !c[0].is_empty())
        .map(|c| Diversion {
            from: c[0].to_vec(),
            to: c[1].to_vec(),
            by: String::from_utf8_lossy(c[2]).into_owned(),
        })
        .collect()
}

/// One `statoverride` line: `user group mode path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatOverride {
    pub user: String,
    pub group: String,
    pub perms: u32,
    pub path: Vec<u8>,
}

/// Parses `statoverride` (lines that do not parse are skipped: dpkg would refuse them too).
pub fn parse_statoverride(bytes: &[u8]) -> Vec<StatOverride> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut it = line.splitn(4, |&b| b == b' ');
            let user = String::from_utf8_lossy(it.next()?).into_owned();
            let group = String::from_utf8_lossy(it.next()?).into_owned();
            let perms = u32::from_str_radix(std::str::from_utf8(it.next()?).ok()?, 8).ok()?;
            let path = it.next()?.to_vec();
            Some(StatOverride {
                user: user.trim_start_matches('#').to_owned(),
                group: group.trim_start_matches('#').to_owned(),
                perms,
                path,
            })
        })
        .collect()
}

/// Reads dpkg's database beneath `root`.
pub(crate) fn load(root: &Root) -> Result<Loaded, PkgDbError> {
    let read = |p: &str| {
        root.read(p.as_bytes())
            .map_err(|source| PkgDbError::ReadFile {
                path: root.display(p.as_bytes()),
                source,
            })
    };
    let status = parse_status(&read(STATUS)?, Path::new(STATUS))?;
    let optional = |p: &str| match root.read(p.as_bytes()) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(PkgDbError::ReadFile {
            path: root.display(p.as_bytes()),
            source,
        }),
    };
    let diversions = parse_diversions(&optional("/var/lib/dpkg/diversions")?);
    let overrides = parse_statoverride(&optional("/var/lib/dpkg/statoverride")?);
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let mut removed = Vec::new();
    for st in &status {
        if st.state == "config-files" {
            removed.push(st);
        }
    }
    for st in status.iter().filter(|s| s.has_files()) {
        let idx = packages.len() as u32;
        let name = st.name();
        // The info file name: `pkg:arch` for Multi-Arch: same; plain `pkg` otherwise (and on a
        // database from before multi-arch).
        let info = |ext: &str| -> Result<Option<(String, Vec<u8>)>, PkgDbError> {
            for base in [
                format!("{}:{}", st.package, st.architecture),
                st.package.clone(),
            ] {
                let p = format!("/var/lib/dpkg/info/{base}.{ext}");
                match root.read(p.as_bytes()) {
                    Ok(b) => return Ok(Some((p, b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Err(PkgDbError::ReadFile {
                            path: root.display(p.as_bytes()),
                            source,
                        });
                    }
                }
            }
            Ok(None)
        };
        let first = files.len();
        let mut by_path: HashMap<Vec<u8>, usize> = HashMap::new();
        match info("list")? {
            Some((_, list)) => {
                for line in list.split(|&b| b == b'\n') {
                    if line.is_empty() || line == b"/." {
                        continue;
                    }
                    by_path.insert(line.to_vec(), files.len());
                    files.push(FileEntry::new(line.to_vec(), idx));
                }
            }
            None => warnings.push(format!("{name}: no file list (info/{name}.list)")),
        }
        let mut entry = |files: &mut Vec<FileEntry>, path: &[u8]| -> usize {
            *by_path.entry(path.to_vec()).or_insert_with(|| {
                files.push(FileEntry::new(path.to_vec(), idx));
                files.len() - 1
            })
        };
        match info("md5sums")? {
            Some((p, sums)) => {
                for (path, md5) in parse_md5sums(&sums, Path::new(&p))? {
                    let i = entry(&mut files, &path);
                    files[i].digest = Some((DigestAlgo::Md5, Box::new(md5)));
                    files[i].kind = Some(super::FileKind::Regular);
                }
            }
            None => warnings.push(format!(
                "{name}: no md5sums (info/{name}.md5sums): its files cannot be checked"
            )),
        }
        for c in &st.conffiles {
            let i = entry(&mut files, &c.path);
            let f = &mut files[i];
            f.config = true;
            if c.obsolete {
                // Kept by dpkg after the package stopped shipping it: nothing to compare with.
                f.digest = None;
                f.missing_ok = true;
                continue;
            }
            if let Some(md5) = c.md5 {
                f.digest = Some((DigestAlgo::Md5, Box::new(md5)));
                f.kind = Some(super::FileKind::Regular);
            }
        }
        for f in &mut files[first..] {
            f.checks = checks::DIGEST;
            if let Some(d) = diversions
                .iter()
                .find(|d| d.from == f.path && d.by != st.package)
            {
                f.path = d.to.clone();
            }
            if let Some(o) = overrides.iter().find(|o| o.path == f.path) {
                f.user = Some(o.user.clone());
                f.group = Some(o.group.clone());
                f.perms = Some(o.perms & 0o7777);
                f.checks |= checks::USER | checks::GROUP | checks::MODE;
            }
        }
        packages.push(Package {
            name,
            version: st.version.clone(),
            architecture: st.architecture.clone(),
            installed: true,
        });
    }
    // Removed but not purged: its conffiles stay on disk and still belong to it (`dpkg -S`), but
    // nothing is checked (debsums does not either): the package is no longer installed.
    let config_only = packages.len() as u32;
    for (i, st) in removed.into_iter().enumerate() {
        for c in &st.conffiles {
            let mut f = FileEntry::new(c.path.clone(), config_only + i as u32);
            f.config = true;
            f.missing_ok = true;
            f.checks = 0;
            files.push(f);
        }
        packages.push(Package {
            name: st.name(),
            version: st.version.clone(),
            architecture: st.architecture.clone(),
            installed: false,
        });
    }
    Ok(Loaded {
        kind: DbKind::Dpkg,
        location: PathBuf::from("/var/lib/dpkg"),
        packages,
        files,
        warnings,
        diversions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn status_stanzas_states_multiarch_and_conffiles() {
        let text = format!(
            "Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\nConffiles:\n /etc/debian_version {M}\n /etc/old {M} obsolete\n /etc/with space {M}\n /etc/new newconffile\nDescription: x\n continuation\n\nPackage: libc6\nStatus: install ok installed\nMulti-Arch: same\nArchitecture: amd64\nVersion: 2.36\n\nPackage: gone\nStatus: deinstall ok config-files\n"
        );
        let s = parse_status(text.as_bytes(), Path::new("status")).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name(), "base-files");
        assert_eq!(s[0].conffiles.len(), 4);
        assert_eq!(s[0].conffiles[0].path, b"/etc/debian_version");
        assert!(s[0].conffiles[1].obsolete);
        assert_eq!(s[0].conffiles[2].path, b"/etc/with space");
        assert_eq!(s[0].conffiles[3].md5, None);
        assert_eq!(s[1].name(), "libc6:amd64");
        assert!(s[1].has_files() && !s[2].has_files());
        let err = parse_status(b"Package: x\nConffiles:\n /etc/a zz\n", Path::new("status"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("status line 3"), "{err}");
    }

    #[test]
    fn md5sums_diversions_and_statoverrides() {
        let text = format!("{M}  usr/bin/ls\n{M}  usr/share/doc/a b\n");
        let s = parse_md5sums(text.as_bytes(), Path::new("x.md5sums")).unwrap();
        assert_eq!(s[0].0, b"/usr/bin/ls");
        assert_eq!(s[1].0, b"/usr/share/doc/a b");
        let err = parse_md5sums(b"nothex  usr/x\n", Path::new("x.md5sums")).unwrap_err();
        assert!(err.to_string().contains("x.md5sums line 1"), "{err}");
        let d = parse_diversions(b"/usr/bin/a\n/usr/bin/a.distrib\npkg\n/x\n/y\n:\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].by, ":");
        let o = parse_statoverride(b"root crontab 2755 /usr/bin/crontab\nbad line\n");
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].perms, 0o2755);
        assert_eq!(o[0].group, "crontab");
    }

    #[test]
    fn a_root_with_a_diversion_a_statoverride_and_a_removed_package() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let info = r.join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/status"),
            format!(
                "Package: tool\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
                 Package: wrapper\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n\n\
                 Package: gone\nStatus: deinstall ok config-files\nVersion: 3\nArchitecture: amd64\n\
                 Conffiles:\n /etc/gone.conf {M}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            info.join("tool.list"),
            "/.\n/usr\n/usr/bin\n/usr/bin/tool\n",
        )
        .unwrap();
        std::fs::write(info.join("tool.md5sums"), format!("{M}  usr/bin/tool\n")).unwrap();
        std::fs::write(info.join("wrapper.list"), "/usr/bin/tool\n").unwrap();
        std::fs::write(info.join("wrapper.md5sums"), format!("{M}  usr/bin/tool\n")).unwrap();
        // wrapper moved tool's /usr/bin/tool aside and ships its own in its place.
        std::fs::write(
            r.join("var/lib/dpkg/diversions"),
            "/usr/bin/tool\n/usr/bin/tool.real\nwrapper\n",
        )
        .unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/statoverride"),
            "root root 4755 /usr/bin/tool\n",
        )
        .unwrap();
        let db = super::super::open(r).unwrap().unwrap();
        assert_eq!(db.owner(Path::new("/usr/bin/tool")), Some("wrapper"));
        assert_eq!(db.owner(Path::new("/usr/bin/tool.real")), Some("tool"));
        assert_eq!(db.owner(Path::new("/etc/gone.conf")), Some("gone"));
        assert_eq!(db.owner(Path::new("/")), None, "dpkg's /. is not a file");
        let gone = db.packages().iter().find(|p| p.name == "gone").unwrap();
        assert!(!gone.installed);
        let tool_real = db
            .files()
            .iter()
            .find(|f| f.path == b"/usr/bin/tool.real")
            .unwrap();
        assert_eq!(
            tool_real.perms, None,
            "the override names /usr/bin/tool, wrapper's file"
        );
        let wrapper = db
            .files()
            .iter()
            .find(|f| f.path == b"/usr/bin/tool")
            .unwrap();
        assert_eq!(wrapper.perms, Some(0o4755));
        // Nothing exists on disk: both md5sums entries are missing, the removed conffile is not checked.
        let changed = db.verify(r, &mut |_| {}).unwrap();
        let paths: Vec<_> = changed
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, ["/usr/bin/tool", "/usr/bin/tool.real"]);
    }
}

/// Fuzz targets (see `crate::fuzzing`): a suspect root's dpkg database files.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    const M: &str = "0123456789abcdef0123456789abcdef";

    fn status(b: &[u8]) {
        if let Ok(entries) = parse_status(b, Path::new("status")) {
            for e in &entries {
                let _ = (e.name(), e.has_files());
            }
        }
    }

    fn lists(b: &[u8]) {
        let _ = parse_md5sums(b, Path::new("x.md5sums"));
        let _ = parse_diversions(b);
        let _ = parse_statoverride(b);
    }

    #[test]
    fn dpkg_status() {
        Target::new("dpkg-status")
            .seed(format!("Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\nConffiles:\n /etc/debian_version {M}\n /etc/old {M} obsolete\n /etc/with space {M}\n /etc/new newconffile\nDescription: x\n continuation\n\nPackage: libc6\nStatus: install ok installed\nMulti-Arch: same\nArchitecture: amd64\nVersion: 2.36\n\nPackage: gone\nStatus: deinstall ok config-files\n"))
            .dict(&[b"\nPackage: ", b"\nStatus: ", b"\nConffiles:\n ", b"\n\n", b"\n ", b"Multi-Arch: same\n", b": "])
            .run(status);
    }

    #[test]
    fn dpkg_lists() {
        Target::new("dpkg-lists")
            .seed(format!("{M}  usr/bin/ls\n{M}  usr/share/doc/a b\n"))
            .seed(b"/usr/bin/a\n/usr/bin/a.distrib\npkg\n/x\n/y\n:\n")
            .seed(b"root root 4755 /usr/bin/sudo\nroot shadow 2755 /usr/bin/chage\n")
            .run(lists);
    }
}
