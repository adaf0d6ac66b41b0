//! The symbol material Volatility 3 needs for the `linux.*` plugins, kept beside the memory image
//! because nobody can fetch it for this exact kernel afterwards: the kernel's BTF
//! (`/sys/kernel/btf/vmlinux` → `symbols/vmlinux.btf`), `/proc/kallsyms` (→ `symbols/kallsyms`; as
//! root, else `kptr_restrict` zeroes its addresses, which is said), and from `/boot` of the running
//! system the `System.map`, `vmlinuz` and `config` of the running release (`/proc/sys/kernel/osrelease`),
//! each with the package that owns it and its version from the package database
//! ([`crate::pkgdb`]: dpkg or rpm, read offline). `symbols/symbols.json` lists what was found.

use std::path::Path;

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};
use crate::pkgdb::root::Root;

/// One piece of symbol material.
#[derive(Debug, Clone, Serialize)]
pub struct Symbol {
    /// Where it was read (`/sys/kernel/btf/vmlinux`, `/boot/System.map-6.1.0-18-amd64`).
    pub source: String,
    /// The artifact (`symbols/vmlinux.btf`), or `null` when it could not be read.
    pub artifact: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// The package owning it, and that package's version.
    pub package: Option<String>,
    pub package_version: Option<String>,
}

/// Whether every address in a kallsyms text is zero (`kptr_restrict` hid them from this reader).
pub fn kallsyms_zeroed(b: &[u8]) -> bool {
    let mut lines = b
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .peekable();
    lines.peek().is_some()
        && lines.all(|l| {
            let a = l.split(|&c| c == b' ').next().unwrap_or(b"");
            !a.is_empty() && a.iter().all(|&c| c == b'0')
        })
}

/// A file name part from a kernel release: anything but letters, digits, `.`, `_`, `-`, `+` is `_`.
fn release_part(r: &str) -> String {
    r.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn entry(source: &str, artifact: &str, bytes: &[u8]) -> Symbol {
    Symbol {
        source: source.to_owned(),
        artifact: Some(artifact.to_owned()),
        size: Some(bytes.len() as u64),
        sha256: Some(crate::acquire::hash::sha256_hex(bytes)),
        package: None,
        package_version: None,
    }
}

/// Collects the symbol files and `symbols/symbols.json`.
pub fn collect(roots: &Roots, out: &mut Vec<Artifact>) {
    let mut d = Doc::start(
        "symbols/symbols.json",
        "rescue.live.symbols/1",
        "/sys/kernel/btf/vmlinux, /proc/kallsyms, /boot/{System.map,vmlinuz,config}-RELEASE beneath the root, its package database",
    );
    let at = d.collected_at().to_owned();
    let mut found: Vec<Symbol> = Vec::new();

    let btf = roots.sys.join("kernel/btf/vmlinux");
    match doc::read(&btf) {
        Ok(b) => {
            found.push(entry(&btf.display().to_string(), "symbols/vmlinux.btf", &b));
            out.push(doc::file_artifact(
                "symbols/vmlinux.btf",
                b,
                &btf.display().to_string(),
                &at,
            ));
        }
        Err(e) => d.note(format!(
            "{}: {} (a kernel built without CONFIG_DEBUG_INFO_BTF has none)",
            btf.display(),
            doc::why(&e)
        )),
    }

    let ks = roots.proc.join("kallsyms");
    let kptr = doc::read(&roots.proc.join("sys/kernel/kptr_restrict"))
        .ok()
        .map(|b| text(b.trim_ascii()));
    match doc::read(&ks) {
        Ok(b) => {
            if kallsyms_zeroed(&b) {
                d.note(format!(
                    "{}: every address reads as zero: kptr_restrict={} hides them from this reader \
                     (run as root; with kptr_restrict=2 not even root sees them)",
                    ks.display(),
                    kptr.as_deref().unwrap_or("unknown")
                ));
            }
            found.push(entry(&ks.display().to_string(), "symbols/kallsyms", &b));
            out.push(doc::file_artifact(
                "symbols/kallsyms",
                b,
                &ks.display().to_string(),
                &at,
            ));
        }
        Err(e) => d.note(format!("{}: {}", ks.display(), doc::why(&e))),
    }

    let osr = roots.proc.join("sys/kernel/osrelease");
    let release = match doc::read(&osr) {
        Ok(b) => Some(text(b.trim_ascii())),
        Err(e) => {
            d.note(format!(
                "{}: {}; /boot was not searched",
                osr.display(),
                doc::why(&e)
            ));
            None
        }
    };
    let mut boot_files = Vec::new();
    if let Some(rel) = &release {
        match Root::open(&roots.root) {
            Ok(r) => {
                for base in ["System.map", "vmlinuz", "config"] {
                    let path = format!("/boot/{base}-{rel}");
                    match r.read(path.as_bytes()) {
                        Ok(b) => {
                            let name = format!("symbols/{base}-{}", release_part(rel));
                            let mut s = entry(&path, &name, &b);
                            s.source = path.clone();
                            boot_files.push(found.len());
                            found.push(s);
                            out.push(doc::file_artifact(&name, b, &path, &at));
                        }
                        Err(e) => d.note(format!(
                            "{}: {}",
                            roots.root.join(&path[1..]).display(),
                            doc::why(&e)
                        )),
                    }
                }
            }
            Err(e) => d.note(format!("{}: {}", roots.root.display(), doc::why(&e))),
        }
    }
    if !boot_files.is_empty() {
        owners(&roots.root, &mut found, &boot_files, &mut d);
    }
    out.push(d.finish(vec![
        ("release", doc::json(&release)),
        ("kptr_restrict", doc::json(&kptr)),
        ("files", doc::json(&found)),
    ]));
}

/// Fills in the owning package and version of the `/boot` files.
fn owners(root: &Path, found: &mut [Symbol], which: &[usize], d: &mut Doc) {
    let db = match crate::pkgdb::open(root) {
        Ok(Some(db)) => db,
        Ok(None) => {
            d.note(format!(
                "{}: no dpkg or rpm database, so the kernel's package is unknown",
                root.display()
            ));
            return;
        }
        Err(e) => {
            d.note(format!(
                "reading the package database of {}: {e}",
                root.display()
            ));
            return;
        }
    };
    for &i in which {
        let s = &mut found[i];
        match db.owner_bytes(s.source.as_bytes()) {
            Some(name) => {
                s.package = Some(name.to_owned());
                s.package_version = db
                    .packages()
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.version.clone());
            }
            None => d.note(format!(
                "{} is owned by no package (a hand-built kernel, or the file was replaced)",
                s.source
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_kallsyms_is_told_from_real_addresses() {
        assert!(kallsyms_zeroed(
            b"0000000000000000 T _stext\n0000000000000000 t x [mod]\n"
        ));
        assert!(!kallsyms_zeroed(b"ffffffff81000000 T _stext\n"));
        assert!(!kallsyms_zeroed(b""));
        assert!(!kallsyms_zeroed(b"\n\n"));
        assert!(!kallsyms_zeroed(b" T x\n"));
    }

    #[test]
    fn release_names_are_safe_file_names() {
        assert_eq!(release_part("6.1.0-18-amd64"), "6.1.0-18-amd64");
        assert_eq!(release_part("../../x y"), ".._.._x_y");
    }
}
