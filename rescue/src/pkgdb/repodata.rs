//! `--packages-from MEDIA` for rpm roots: installed rpm packages checked against a signed RPM
//! repository instead of the suspect's own (rewritable) rpmdb digests. The chain is dnf's with
//! `repo_gpgcheck`: `repodata/repomd.xml` and its detached signature `repomd.xml.asc` (verified by
//! the same OpenPGP code as apt's `InRelease`, [`crate::reinstall::signature`]) prove the `primary`
//! index by SHA-256, the index proves each `.rpm` by SHA-256, and the `.rpm`'s own header (file
//! digests, modes, owners, link targets, `%config` flags) is what the files on disk must be, compared
//! by the same [`super::verify`] as the rpmdb's.
//!
//! MEDIA is a directory: one or more repositories (`…/repodata/repomd.xml` with the packages where
//! its `location href`s say, as `createrepo_c` writes them and mirrors hold them). The XML read is
//! the small subset createrepo writes (elements, attributes, text, the five predefined entities);
//! anything else is refused with the file named.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::Digest;

use super::media::{MediaError, MediaReport, NotShipped, ReleaseUsed, Unlisted};
use super::root::Root;
use super::verify::{Change, VerifyProgress};
use super::{DbKind, Loaded, PackageDb, rpm};
use crate::reinstall::signature::{self, TrustedKey};

/// One XML event of the subset createrepo writes.
#[derive(Debug, PartialEq, Eq)]
enum Xml {
    /// `<name a="v">`, or `<name a="v"/>` (then `empty`).
    Open {
        name: String,
        attrs: Vec<(String, String)>,
        empty: bool,
    },
    Close(String),
    Text(String),
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find(';') else {
            return Err(format!("an unterminated entity near {:?}", &rest[i..]));
        };
        let ent = &rest[i + 1..i + j];
        match ent {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                match code.and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => return Err(format!("an unknown entity &{ent};")),
                }
            }
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits an XML document into events; declarations, comments and processing instructions are
/// skipped, CDATA is text.
fn xml_events(doc: &str) -> Result<Vec<Xml>, String> {
    let mut out = Vec::new();
    let mut rest = doc;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() {
                out.push(Xml::Text(unescape(rest)?));
            }
            break;
        };
        if lt > 0 && !rest[..lt].trim().is_empty() {
            out.push(Xml::Text(unescape(&rest[..lt])?));
        }
        rest = &rest[lt..];
        let skip_to = |r: &str, end: &str| -> Result<usize, String> {
            r.find(end)
                .map(|i| i + end.len())
                .ok_or_else(|| format!("an unterminated {:?}", &r[..r.len().min(20)]))
        };
        if rest.starts_with("<?") {
            rest = &rest[skip_to(rest, "?>")?..];
        } else if rest.starts_with("<!--") {
            rest = &rest[skip_to(rest, "-->")?..];
        } else if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata
                .find("]]>")
                .ok_or_else(|| "an unterminated CDATA section".to_owned())?;
            out.push(Xml::Text(cdata[..end].to_owned()));
            rest = &cdata[end + 3..];
        } else if rest.starts_with("<!") {
            rest = &rest[skip_to(rest, ">")?..];
        } else {
            // A tag: attribute values may hold '>' only escaped in what createrepo writes, but be
            // exact anyway: find the '>' outside quotes.
            let bytes = rest.as_bytes();
            let mut quote = None;
            let mut end = None;
            for (i, &b) in bytes.iter().enumerate().skip(1) {
                match (quote, b) {
                    (None, b'"' | b'\'') => quote = Some(b),
                    (Some(q), _) if b == q => quote = None,
                    (None, b'>') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| "an unterminated tag".to_owned())?;
            let inner = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = inner.strip_prefix('/') {
                out.push(Xml::Close(name.trim().to_owned()));
                continue;
            }
            let (inner, empty) = match inner.strip_suffix('/') {
                Some(i) => (i, true),
                None => (inner, false),
            };
            let name_end = inner
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(inner.len());
            let name = inner[..name_end].to_owned();
            if name.is_empty() {
                return Err("a tag without a name".into());
            }
            let mut attrs = Vec::new();
            let mut a = inner[name_end..].trim_start();
            while !a.is_empty() {
                let eq = a
                    .find('=')
                    .ok_or_else(|| format!("an attribute without a value in <{name}>"))?;
                let key = a[..eq].trim().to_owned();
                let v = a[eq + 1..].trim_start();
                let q = v
                    .chars()
                    .next()
                    .filter(|c| *c == '"' || *c == '\'')
                    .ok_or_else(|| format!("an unquoted attribute {key} in <{name}>"))?;
                let close = v[1..]
                    .find(q)
                    .ok_or_else(|| format!("an unterminated attribute {key} in <{name}>"))?;
                attrs.push((key, unescape(&v[1..1 + close])?));
                a = v[close + 2..].trim_start();
            }
            out.push(Xml::Open { name, attrs, empty });
        }
    }
    Ok(out)
}

fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The element name without its namespace prefix (`rpm:entry` → `entry`).
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// What `repomd.xml` says about one metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoData {
    kind: String,
    sha256: Option<String>,
    href: String,
}

fn parse_repomd(doc: &str) -> Result<Vec<RepoData>, String> {
    let mut out = Vec::new();
    let mut cur: Option<RepoData> = None;
    let mut in_checksum = None;
    for ev in xml_events(doc)? {
        match ev {
            Xml::Open { name, attrs, empty } => match local(&name) {
                "data" => {
                    cur = Some(RepoData {
                        kind: attr(&attrs, "type").unwrap_or_default().to_owned(),
                        sha256: None,
                        href: String::new(),
                    })
                }
                "checksum" if !empty => in_checksum = attr(&attrs, "type").map(str::to_owned),
                "location" => {
                    if let (Some(c), Some(h)) = (cur.as_mut(), attr(&attrs, "href")) {
                        c.href = h.to_owned();
                    }
                }
                _ => {}
            },
            Xml::Text(t) => {
                if let (Some(c), Some(kind)) = (cur.as_mut(), in_checksum.as_deref())
                    && kind == "sha256"
                {
                    c.sha256 = Some(t.trim().to_ascii_lowercase());
                }
            }
            Xml::Close(name) => match local(&name) {
                "checksum" => in_checksum = None,
                "data" => out.extend(cur.take()),
                _ => {}
            },
        }
    }
    if !out.iter().any(|d| d.kind == "primary") {
        return Err("it lists no primary metadata".into());
    }
    Ok(out)
}

/// One package of `primary.xml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listed {
    name: String,
    arch: String,
    epoch: Option<String>,
    ver: String,
    rel: String,
    sha256: Option<String>,
    href: String,
    size: Option<u64>,
}

impl Listed {
    /// The version as [`rpm::add_header`] spells an installed package's (`E:V-R`, epoch 0 left out
    /// when the header has none: compared both ways).
    fn versions(&self) -> [String; 2] {
        let vr = format!("{}-{}", self.ver, self.rel);
        let e = self.epoch.as_deref().unwrap_or("0");
        [format!("{e}:{vr}"), vr]
    }
}

fn parse_primary(doc: &str) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    let mut cur: Option<Listed> = None;
    let mut field: Option<&'static str> = None;
    let mut depth_in_format = 0u32;
    for ev in xml_events(doc)? {
        match ev {
            Xml::Open { name, attrs, empty } => {
                let l = local(&name);
                if l == "format" && !empty {
                    depth_in_format += 1;
                }
                let Some(c) = cur.as_mut() else {
                    if l == "package" && !empty {
                        cur = Some(Listed::default());
                    }
                    continue;
                };
                if depth_in_format > 0 {
                    continue;
                }
                match l {
                    "name" if !empty => field = Some("name"),
                    "arch" if !empty => field = Some("arch"),
                    "checksum" if !empty => {
                        field = (attr(&attrs, "type") == Some("sha256")).then_some("sha256")
                    }
                    "version" => {
                        c.epoch = attr(&attrs, "epoch").map(str::to_owned);
                        c.ver = attr(&attrs, "ver").unwrap_or_default().to_owned();
                        c.rel = attr(&attrs, "rel").unwrap_or_default().to_owned();
                    }
                    "location" => c.href = attr(&attrs, "href").unwrap_or_default().to_owned(),
                    "size" => c.size = attr(&attrs, "package").and_then(|s| s.parse().ok()),
                    _ => {}
                }
            }
            Xml::Text(t) => {
                if let (Some(c), Some(f)) = (cur.as_mut(), field) {
                    let t = t.trim().to_owned();
                    match f {
                        "name" => c.name = t,
                        "arch" => c.arch = t,
                        _ => c.sha256 = Some(t.to_ascii_lowercase()),
                    }
                }
            }
            Xml::Close(name) => {
                field = None;
                match local(&name) {
                    "format" => depth_in_format = depth_in_format.saturating_sub(1),
                    "package" => out.extend(cur.take()),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Decompresses a metadata file by its name (`.gz`, `.zst`, `.xz`, or plain `.xml`).
fn decompress(name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
    } else if name.ends_with(".zst") {
        out = zstd::decode_all(bytes).map_err(|e| format!("zstd: {e}"))?;
    } else if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(bytes), &mut out)
            .map_err(|e| format!("xz: {e}"))?;
    } else if name.ends_with(".xml") {
        out = bytes.to_vec();
    } else {
        return Err("a compression this build does not read (gzip, zstd, xz or plain XML)".into());
    }
    Ok(out)
}

/// The header blob of an `.rpm` (as the rpmdb stores it: without the 8-byte magic) and the SHA-256
/// of the whole file, read in one pass.
fn read_rpm(path: &Path) -> Result<(Vec<u8>, String, u64), String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    read_rpm_from(std::io::BufReader::with_capacity(256 * 1024, f))
}

fn read_rpm_from(mut r: impl Read) -> Result<(Vec<u8>, String, u64), String> {
    let mut hash = sha2::Sha256::new();
    let mut n = 0u64;
    let mut take = |r: &mut dyn Read, len: usize| -> Result<Vec<u8>, String> {
        // Grown as the bytes arrive: a claimed length reserves nothing the file does not hold.
        let mut b = Vec::new();
        r.take(len as u64)
            .read_to_end(&mut b)
            .map_err(|e| format!("unreadable ({e})"))?;
        if b.len() != len {
            return Err(format!("cut short ({} of {len} bytes)", b.len()));
        }
        hash.update(&b);
        n += len as u64;
        Ok(b)
    };
    let lead = take(&mut r, 96)?;
    if lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return Err("no rpm lead (not an .rpm file)".into());
    }
    let mut header = |r: &mut dyn Read, pad: bool| -> Result<Vec<u8>, String> {
        let intro = take(r, 16)?;
        if intro[..3] != [0x8e, 0xad, 0xe8] {
            return Err("no header magic".into());
        }
        let il = u32::from_be_bytes([intro[8], intro[9], intro[10], intro[11]]) as usize;
        let dl = u32::from_be_bytes([intro[12], intro[13], intro[14], intro[15]]) as usize;
        if il > 0xffff || dl > 256 << 20 {
            return Err(format!(
                "a header of {il} tags and {dl} bytes is past rpm's limits"
            ));
        }
        let mut len = il * 16 + dl;
        if pad {
            len += (8 - len % 8) % 8;
        }
        let body = take(r, len)?;
        let mut blob = intro[8..].to_vec();
        blob.extend_from_slice(&body[..il * 16 + dl]);
        Ok(blob)
    };
    header(&mut r, true)?;
    let blob = header(&mut r, false)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = r.read(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        hash.update(&buf[..k]);
        n += k as u64;
    }
    Ok((blob, hex::encode(hash.finalize()), n))
}

/// One repository found on the medium.
struct Repo {
    repomd: PathBuf,
    /// The directory `location href`s are relative to (the parent of `repodata/`).
    base: PathBuf,
}

fn find_repos(dir: &Path, out: &mut Vec<Repo>, depth: u32) -> Result<(), MediaError> {
    let walk_err = |path: &Path| {
        let path = path.to_owned();
        move |source| MediaError::Walk { path, source }
    };
    let md = dir.join("repodata/repomd.xml");
    if md.is_file() {
        out.push(Repo {
            repomd: md,
            base: dir.to_owned(),
        });
    }
    if depth == 0 {
        return Ok(());
    }
    let mut subdirs = Vec::new();
    for e in std::fs::read_dir(dir).map_err(walk_err(dir))? {
        let e = e.map_err(walk_err(dir))?;
        if e.file_type().map_err(walk_err(&e.path()))?.is_dir() && e.file_name() != "repodata" {
            subdirs.push(e.path());
        }
    }
    subdirs.sort();
    for d in subdirs {
        find_repos(&d, out, depth - 1)?;
    }
    Ok(())
}

/// A relative `href` beneath `base`, refusing anything that climbs out of it.
fn beneath(base: &Path, href: &str) -> Option<PathBuf> {
    let rel = Path::new(href);
    rel.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| base.join(rel))
}

/// The installed rpm packages of `db` against the signed repositories on `media`.
pub fn verify_against_repodata(
    db: &PackageDb,
    root: &Path,
    media: &Path,
    keys: &[TrustedKey],
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<MediaReport, MediaError> {
    Root::open(root).map_err(|source| MediaError::OpenRoot {
        path: root.to_owned(),
        source,
    })?;
    let mut repos = Vec::new();
    find_repos(media, &mut repos, 4)?;
    let mut report = MediaReport::default();

    // 1. repomd.xml whose detached signature a trusted key verifies → its primary index.
    let mut listed: Vec<(Listed, PathBuf)> = Vec::new();
    let mut tried = Vec::new();
    for repo in &repos {
        let shown = repo.repomd.display();
        let sig_path = PathBuf::from(format!("{}.asc", repo.repomd.display()));
        let (bytes, sig) = match (std::fs::read(&repo.repomd), std::fs::read(&sig_path)) {
            (Ok(b), Ok(s)) => (b, s),
            (Err(e), _) => {
                tried.push(format!("{shown}: {e}"));
                continue;
            }
            (_, Err(e)) => {
                tried.push(format!(
                    "{shown}: no signature {} ({e}): an unsigned repository proves nothing",
                    sig_path.display()
                ));
                continue;
            }
        };
        let signer = match signature::verify_detached(&bytes, &sig, keys, now) {
            Ok(s) => s,
            Err(e) => {
                tried.push(format!("{shown}: {}", crate::error_chain(&e)));
                continue;
            }
        };
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| "it is not UTF-8 text".to_owned())
            .and_then(parse_repomd);
        let data = match parsed {
            Ok(d) => d,
            Err(e) => {
                tried.push(format!("{shown}: {e}"));
                continue;
            }
        };
        report.releases.push(ReleaseUsed {
            path: repo.repomd.clone(),
            suite: None,
            signer: signer.fingerprint.clone(),
        });
        for d in data.iter().filter(|d| d.kind == "primary") {
            let Some(path) = beneath(&repo.base, &d.href) else {
                report.notes.push(format!(
                    "{shown}: primary location {:?} leaves the repository",
                    d.href
                ));
                continue;
            };
            let got = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    let sha = hex::encode(sha2::Sha256::digest(&b));
                    if d.sha256.as_deref() != Some(sha.as_str()) {
                        return Err(format!(
                            "SHA-256 {sha}, but the signed repomd.xml says {}",
                            d.sha256
                                .as_deref()
                                .unwrap_or("nothing (no sha256 checksum)")
                        ));
                    }
                    decompress(&d.href, &b)
                })
                .and_then(|x| String::from_utf8(x).map_err(|_| "not UTF-8 text".to_owned()))
                .and_then(|t| parse_primary(&t));
            match got {
                Ok(pkgs) => listed.extend(pkgs.into_iter().map(|p| (p, repo.base.clone()))),
                Err(e) => report.notes.push(format!("{}: {e}", path.display())),
            }
        }
    }
    if report.releases.is_empty() {
        return Err(MediaError::NoSignedRelease {
            media: media.to_owned(),
            tried: if tried.is_empty() {
                " (no repodata/repomd.xml found)".into()
            } else {
                format!(" ({})", tried.join("; "))
            },
        });
    }
    report.notes.extend(tried);
    if listed.is_empty() {
        return Err(MediaError::NoProvenIndex {
            media: media.to_owned(),
            tried: format!(" ({})", report.notes.join("; ")),
        });
    }

    // 2. Each installed package: listed at its version? its .rpm on the medium and as signed?
    let mut by_key: HashMap<(&str, &str, String), &(Listed, PathBuf)> = HashMap::new();
    let mut versions: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for l in &listed {
        for v in l.0.versions() {
            by_key.insert((l.0.name.as_str(), l.0.arch.as_str(), v), l);
        }
        versions
            .entry((l.0.name.as_str(), l.0.arch.as_str()))
            .or_default()
            .push(l.0.versions()[1].clone());
    }
    let mut signed = Loaded {
        kind: DbKind::Rpm,
        location: db.location().to_owned(),
        packages: Vec::new(),
        files: Vec::new(),
        warnings: Vec::new(),
        diversions: Vec::new(),
    };
    // Signed package index → installed package index.
    let mut installed_of: Vec<u32> = Vec::new();
    for (i, p) in db.packages().iter().enumerate() {
        // The public-key pseudo-packages are never in a repository.
        if !p.installed || p.name == "gpg-pubkey" {
            continue;
        }
        let Some((l, base)) = by_key
            .get(&(p.name.as_str(), p.architecture.as_str(), p.version.clone()))
            .copied()
        else {
            report.not_in_metadata.push(Unlisted {
                package: p.clone(),
                listed_versions: versions
                    .get(&(p.name.as_str(), p.architecture.as_str()))
                    .cloned()
                    .unwrap_or_default(),
            });
            continue;
        };
        let Some(path) = beneath(base, &l.href).filter(|p| p.is_file()) else {
            report.deb_not_on_media.push(p.clone());
            continue;
        };
        let (blob, sha, size) = match read_rpm(&path) {
            Ok(x) => x,
            Err(e) => {
                report.notes.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if l.sha256.as_deref() != Some(sha.as_str()) || l.size.is_some_and(|s| s != size) {
            report.notes.push(format!(
                "{}: SHA-256 {sha} ({size} bytes) is not the signed index's {} ({} bytes): not used",
                path.display(),
                l.sha256.as_deref().unwrap_or("none"),
                l.size.map_or("?".into(), |s| s.to_string())
            ));
            continue;
        }
        if let Err(e) = rpm::add_header(&mut signed, &blob) {
            report
                .notes
                .push(format!("{}: header: {e}", path.display()));
            signed.packages.truncate(installed_of.len());
            signed
                .files
                .retain(|f| (f.package as usize) < installed_of.len());
            continue;
        }
        installed_of.push(i as u32);
    }
    report.packages_checked = installed_of.len();

    // 3. The files on disk against the signed headers, by the rpmdb's own verify.
    let signed_db = PackageDb::index(signed, db.aliases.clone());
    let listed_locally: HashSet<(&str, Vec<u8>)> = db
        .files()
        .iter()
        .map(|f| (db.package_of(f).name.as_str(), db.canonical(&f.path)))
        .collect();
    let changed = signed_db
        .verify(root, progress)
        .map_err(MediaError::Verify)?;
    for ch in changed {
        let path = ch.path.as_os_str().as_encoded_bytes();
        // Missing and not listed by the local database: not installed (--excludedocs, a language
        // not installed), as rpm itself leaves such files out.
        let missing = ch.changes.iter().all(|c| matches!(c, Change::Missing));
        if missing && !listed_locally.contains(&(ch.package.as_str(), db.canonical(path))) {
            continue;
        }
        report.changed.push(ch);
    }
    // 4. Paths the local database gives a package whose signed header does not ship them.
    let shipped: HashSet<(u32, Vec<u8>)> = signed_db
        .files()
        .iter()
        .map(|f| {
            (
                installed_of[f.package as usize],
                signed_db.canonical(&f.path),
            )
        })
        .collect();
    let checked: HashSet<u32> = installed_of.iter().copied().collect();
    for f in db.files() {
        if checked.contains(&f.package) && !shipped.contains(&(f.package, db.canonical(&f.path))) {
            report.not_shipped.push(NotShipped {
                package: db.packages()[f.package as usize].name.clone(),
                path: f.path().to_owned(),
            });
        }
    }
    report
        .changed
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.package.cmp(&b.package)));
    report
        .not_shipped
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.package.cmp(&b.package)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repomd_gives_the_primary_location_and_checksum() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1796505691</revision>
  <data type="primary">
    <checksum type="sha256">45532176C98B</checksum>
    <open-checksum type="sha256">fc9d80e6</open-checksum>
    <location href="repodata/4553-primary.xml.gz"/>
  </data>
  <data type="filelists">
    <checksum type="sha256">df84</checksum>
    <location href="repodata/df84-filelists.xml.gz"/>
  </data>
</repomd>"#;
        let d = parse_repomd(doc).unwrap();
        assert_eq!(
            d[0],
            RepoData {
                kind: "primary".into(),
                sha256: Some("45532176c98b".into()),
                href: "repodata/4553-primary.xml.gz".into()
            }
        );
        assert_eq!(d.len(), 2);
        assert!(parse_repomd("<repomd></repomd>").is_err());
    }

    #[test]
    fn primary_packages_with_entities_and_format_sections() {
        let doc = r#"<metadata packages="2">
<package type="rpm">
  <name>bash</name><arch>x86_64</arch>
  <version epoch="0" ver="5.1.8" rel="6.el9"/>
  <checksum type="sha256" pkgid="YES">ABCD</checksum>
  <summary>The GNU Bourne Again shell &amp; more &lt;x&gt; &#x41;</summary>
  <description><![CDATA[<not a tag>]]></description>
  <size package="1234" installed="99"/>
  <location href="Packages/b/bash-5.1.8-6.el9.x86_64.rpm"/>
  <format><rpm:provides><rpm:entry name="bash" ver="5.1.8"/></rpm:provides>
    <file>/usr/bin/bash</file></format>
</package>
<package type="rpm"><name>tzdata</name><arch>noarch</arch>
  <version epoch="1" ver="2024a" rel="1"/><location href="t.rpm"/></package>
</metadata>"#;
        let p = parse_primary(doc).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[0].sha256.as_deref(), Some("abcd"));
        assert_eq!(p[0].size, Some(1234));
        assert_eq!(p[0].href, "Packages/b/bash-5.1.8-6.el9.x86_64.rpm");
        assert_eq!(
            p[0].versions(),
            ["0:5.1.8-6.el9".to_owned(), "5.1.8-6.el9".into()]
        );
        assert_eq!(p[1].versions()[0], "1:2024a-1");
        assert!(parse_primary("<metadata><package><name>x</name").is_err());
        assert!(xml_events("<a b=c>").is_err());
        assert!(xml_events("<a>&bogus;</a>").is_err());
    }

    #[test]
    fn hrefs_stay_beneath_the_repository() {
        let b = Path::new("/m/repo");
        assert_eq!(
            beneath(b, "Packages/a.rpm"),
            Some(PathBuf::from("/m/repo/Packages/a.rpm"))
        );
        assert_eq!(beneath(b, "../../etc/shadow"), None);
        assert_eq!(beneath(b, "/etc/shadow"), None);
    }
}

/// Fuzz targets (see `crate::fuzzing`): repository metadata as createrepo writes it, and `.rpm`
/// framing (lead, signature header, header) read before the file's hash is known.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn metadata(b: &[u8]) {
        let Ok(doc) = std::str::from_utf8(b) else {
            return;
        };
        if let Ok(d) = parse_repomd(doc) {
            assert!(d.iter().any(|d| d.kind == "primary"));
        }
        if let Ok(p) = parse_primary(doc) {
            for l in p {
                let _ = l.versions();
            }
        }
    }

    #[test]
    fn repodata_xml() {
        let repomd = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">4553</checksum>
<location href="repodata/4553-primary.xml.gz"/><size>593</size></data></repomd>"#;
        let primary = r#"<metadata packages="1"><package type="rpm"><name>rt</name>
<arch>x86_64</arch><version epoch="0" ver="1.0" rel="1"/>
<checksum type="sha256" pkgid="YES">b32f</checksum><summary>a &amp; b &#65;</summary>
<description><![CDATA[x]]></description><location href="Packages/rt-1.0-1.x86_64.rpm"/>
<format><rpm:provides><rpm:entry name="rt" flags="EQ"/></rpm:provides><file>/etc/rt.conf</file></format>
</package></metadata>"#;
        Target::new("repodata-xml")
            .seed(repomd)
            .seed(primary)
            .dict(&[
                b"<data type=\"primary\">",
                b"<package>",
                b"</package>",
                b"&amp;",
                b"<![CDATA[",
            ])
            .run(metadata);
    }

    fn rpm_file(b: &[u8]) {
        if let Ok((blob, sha, n)) = read_rpm_from(b) {
            assert_eq!(n, b.len() as u64);
            assert_eq!(sha.len(), 64);
            assert!(blob.len() >= 8);
        }
    }

    #[test]
    fn rpm_files() {
        let mut seed = vec![0xed, 0xab, 0xee, 0xdb];
        seed.resize(96, 0);
        for (il, dl, pad) in [(1u32, 4u32, 4usize), (1, 8, 0)] {
            seed.extend_from_slice(&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);
            seed.extend_from_slice(&il.to_be_bytes());
            seed.extend_from_slice(&dl.to_be_bytes());
            seed.extend_from_slice(&1000u32.to_be_bytes());
            seed.extend_from_slice(&6u32.to_be_bytes());
            seed.extend_from_slice(&0u32.to_be_bytes());
            seed.extend_from_slice(&1u32.to_be_bytes());
            seed.extend_from_slice(&b"rt\0\0\0\0\0\0"[..dl as usize]);
            seed.extend(std::iter::repeat_n(0, pad));
        }
        seed.extend_from_slice(b"payload");
        Target::new("rpm-file").seed(seed).run(rpm_file);
    }

    #[test]
    fn regression_rpm_file_header_length_reservation() {
        // A lead and a header intro claiming 16 MiB of header in 112 bytes: once reserved before a
        // byte of the header was read.
        let input =
            include_bytes!("../fuzz-seeds/regressions/rpm-file-header-length-reservation.bin");
        assert_eq!(crate::fuzzing::replay(rpm_file, input), Ok(()));
    }
}
