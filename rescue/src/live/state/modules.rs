//! `state/modules.json`: the loaded kernel modules as `/proc/modules` lists them, against the
//! loadable modules `/sys/module/*` holds (a directory with `initstate`; built-in modules have a
//! directory without it). A module in one and not the other is a finding: rootkits unlink themselves
//! from the module list, the sysfs tree or both. The kernel's taint (`/proc/sys/kernel/tainted`) and
//! each module's taint letters are decoded in words.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// The taint bits, their letter and what they mean (`Documentation/admin-guide/tainted-kernels.rst`).
pub const TAINTS: [(u32, char, &str); 20] = [
    (0, 'P', "proprietary module was loaded"),
    (1, 'F', "module was force loaded"),
    (2, 'S', "kernel running on an out of specification system"),
    (3, 'R', "module was force unloaded"),
    (4, 'M', "processor reported a Machine Check Exception"),
    (5, 'B', "bad page referenced or some unexpected page flags"),
    (6, 'U', "taint requested by userspace application"),
    (
        7,
        'D',
        "kernel died recently, i.e. there was an OOPS or BUG",
    ),
    (8, 'A', "an ACPI table was overridden by user"),
    (9, 'W', "kernel issued warning"),
    (10, 'C', "staging driver was loaded"),
    (11, 'I', "workaround for bug in platform firmware applied"),
    (12, 'O', "externally-built (out-of-tree) module was loaded"),
    (13, 'E', "unsigned module was loaded"),
    (14, 'L', "soft lockup occurred"),
    (15, 'K', "kernel has been live patched"),
    (16, 'X', "auxiliary taint, defined for and used by distros"),
    (
        17,
        'T',
        "kernel was built with the struct randomization plugin",
    ),
    (18, 'N', "an in-kernel test has been run"),
    (
        19,
        'J',
        "userspace used a mutating debug operation in fwctl",
    ),
];

/// The taint bitmask in words, one per bit set (unknown bits by number).
pub fn taint_words(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match TAINTS.iter().find(|t| u64::from(t.0) == b) {
            Some((_, l, w)) => format!("{l}: {w}"),
            None => format!("bit {b}: unknown to this build"),
        })
        .collect()
}

/// Module taint letters (`OE`) in words.
pub fn letters_words(letters: &str) -> Vec<String> {
    letters
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match TAINTS.iter().find(|t| t.1 == c) {
            Some((_, l, w)) => format!("{l}: {w}"),
            None => format!("{c}: unknown to this build"),
        })
        .collect()
}

/// One line of `/proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcModule {
    pub name: String,
    pub size: Option<u64>,
    pub refcount: Option<i64>,
    pub used_by: Vec<String>,
    /// `Live`, `Loading`, `Unloading`.
    pub state: Option<String>,
    /// The load address (`0x0000000000000000` when `kptr_restrict` hides it).
    pub address: Option<String>,
    /// Taint letters (`OE`), empty when none.
    pub taint: String,
}

/// Parses `/proc/modules`: `name size refcount deps state address [(taint)]`.
pub fn parse_proc_modules(b: &[u8]) -> (Vec<ProcModule>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = text(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        if f.len() < 3 {
            bad.push(format!(
                "line {}: {:?}",
                i + 1,
                s.chars().take(120).collect::<String>()
            ));
            continue;
        }
        let used_by = match f.get(3) {
            Some(&"-") | None => Vec::new(),
            Some(d) => d
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let taint = f
            .get(6)
            .map(|t| t.trim_start_matches('(').trim_end_matches(')').to_owned())
            .unwrap_or_default();
        out.push(ProcModule {
            name: f[0].to_owned(),
            size: f[1].parse().ok(),
            refcount: f[2].parse().ok(),
            used_by,
            state: f.get(4).map(|s| (*s).to_owned()),
            address: f.get(5).map(|s| (*s).to_owned()),
            taint,
        });
    }
    (out, bad)
}

/// A loadable module as sysfs shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SysModule {
    pub name: String,
    /// `live`, `coming`, `going`.
    pub initstate: String,
    pub refcnt: Option<i64>,
    pub coresize: Option<u64>,
    pub taint: String,
    pub version: Option<String>,
    pub srcversion: Option<String>,
    /// Whether `sections/` lists the module's ELF sections (root only).
    pub sections: bool,
}

fn small(path: &Path) -> Option<String> {
    doc::read(path).ok().map(|b| text(b.trim_ascii()))
}

/// Reads every `/sys/module/NAME` that has `initstate` (a loadable, loaded module).
pub fn sys_modules(dir: &Path, d: &mut Doc) -> Vec<SysModule> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            d.note(format!("listing {}: {}", dir.display(), doc::why(&e)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let m = e.path();
        let Some(initstate) = small(&m.join("initstate")) else {
            continue;
        };
        let sections = std::fs::read_dir(m.join("sections"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false);
        out.push(SysModule {
            name: text(std::os::unix::ffi::OsStrExt::as_bytes(
                e.file_name().as_os_str(),
            )),
            initstate,
            refcnt: small(&m.join("refcnt")).and_then(|s| s.parse().ok()),
            coresize: small(&m.join("coresize")).and_then(|s| s.parse().ok()),
            taint: small(&m.join("taint")).unwrap_or_default(),
            version: small(&m.join("version")),
            srcversion: small(&m.join("srcversion")),
            sections,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One module in the report, both views joined.
#[derive(Debug, Clone, Serialize)]
pub struct Module {
    pub name: String,
    pub in_proc_modules: bool,
    pub in_sys_module: bool,
    pub proc: Option<ProcModule>,
    pub sys: Option<SysModule>,
    pub taint_words: Vec<String>,
}

/// Joins both views; returns the modules and the findings (in one view only).
pub fn join(procs: Vec<ProcModule>, syss: Vec<SysModule>) -> (Vec<Module>, Vec<String>) {
    let mut m: BTreeMap<String, (Option<ProcModule>, Option<SysModule>)> = BTreeMap::new();
    for p in procs {
        let name = p.name.clone();
        m.entry(name).or_default().0 = Some(p);
    }
    for s in syss {
        let name = s.name.clone();
        m.entry(name).or_default().1 = Some(s);
    }
    let mut findings = Vec::new();
    let modules = m
        .into_iter()
        .map(|(name, (p, s))| {
            match (&p, &s) {
                (Some(_), None) => findings.push(format!(
                    "{name} is in /proc/modules but has no /sys/module/{name}/initstate: \
                     its sysfs entry was removed (a rootkit hides this way)"
                )),
                (None, Some(_)) => findings.push(format!(
                    "{name} is loaded (/sys/module/{name}/initstate) but missing from \
                     /proc/modules: it was unlinked from the module list (a rootkit hides this way)"
                )),
                _ => {}
            }
            let letters = p
                .as_ref()
                .map(|p| p.taint.clone())
                .filter(|t| !t.is_empty())
                .or_else(|| s.as_ref().map(|s| s.taint.clone()))
                .unwrap_or_default();
            Module {
                name,
                in_proc_modules: p.is_some(),
                in_sys_module: s.is_some(),
                taint_words: letters_words(&letters),
                proc: p,
                sys: s,
            }
        })
        .collect();
    (modules, findings)
}

/// Collects `state/modules.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let mut d = Doc::start(
        "state/modules.json",
        "rescue.live.modules/1",
        "/proc/modules, /sys/module/*/{initstate,refcnt,coresize,taint,version,srcversion,sections}, /proc/sys/kernel/tainted",
    );
    let pm = roots.proc.join("modules");
    let procs = match doc::read(&pm) {
        Ok(b) => {
            let (p, bad) = parse_proc_modules(&b);
            for x in bad {
                d.note(format!("{}: {x}", pm.display()));
            }
            Some(p)
        }
        Err(e) => {
            d.note(format!(
                "{}: {} (a kernel built without loadable modules has none)",
                pm.display(),
                doc::why(&e)
            ));
            None
        }
    };
    let proc_readable = procs.is_some();
    let syss = sys_modules(&roots.sys.join("module"), &mut d);
    let (modules, findings) = join(procs.unwrap_or_default(), syss);
    let tp = roots.proc.join("sys/kernel/tainted");
    let tainted: Option<u64> = match doc::read(&tp) {
        Ok(b) => {
            let v = doc::num(&b);
            if v.is_none() {
                d.note(format!("{}: not a number", tp.display()));
            }
            v
        }
        Err(e) => {
            d.note(format!("{}: {}", tp.display(), doc::why(&e)));
            None
        }
    };
    if modules.iter().any(|m| {
        m.proc.as_ref().is_some_and(|p| {
            p.address
                .as_deref()
                .is_some_and(|a| a.trim_start_matches("0x").bytes().all(|c| c == b'0'))
        })
    }) {
        d.note("module addresses read as zero: kptr_restrict hides them from this reader");
    }
    d.finish(vec![
        ("proc_modules_readable", doc::json(&proc_readable)),
        ("tainted", doc::json(&tainted)),
        (
            "taint_words",
            doc::json(&tainted.map(taint_words).unwrap_or_default()),
        ),
        ("findings", doc::json(&findings)),
        ("modules", doc::json(&modules)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_lines_with_deps_and_taint() {
        let b = b"nf_tables 344064 3 nft_ct,nft_chain_nat, Live 0xffffffffc0a00000\n\
diamorphine 16384 0 - Live 0x0000000000000000 (OE)\n\
short 1\n\
\xff\xfe 1 2 - Live 0x0\n";
        let (m, bad) = parse_proc_modules(b);
        assert_eq!(m.len(), 3);
        assert_eq!(bad.len(), 1);
        assert_eq!(m[0].used_by, ["nft_ct", "nft_chain_nat"]);
        assert_eq!(m[0].refcount, Some(3));
        assert_eq!(m[1].taint, "OE");
        assert_eq!(m[1].state.as_deref(), Some("Live"));
        assert_eq!(m[2].name, "\\xff\\xfe");
    }

    #[test]
    fn a_module_in_one_view_only_is_a_finding() {
        let p = |n: &str| ProcModule {
            name: n.into(),
            size: Some(1),
            refcount: Some(0),
            used_by: vec![],
            state: Some("Live".into()),
            address: None,
            taint: String::new(),
        };
        let s = |n: &str, t: &str| SysModule {
            name: n.into(),
            initstate: "live".into(),
            taint: t.into(),
            ..SysModule::default()
        };
        let (m, f) = join(
            vec![p("ext4"), p("ghost")],
            vec![s("ext4", ""), s("hidden", "OE")],
        );
        assert_eq!(m.len(), 3);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f.iter()
                .any(|x| x.starts_with("ghost is in /proc/modules but"))
        );
        assert!(f.iter().any(|x| x.starts_with("hidden is loaded")));
        let h = m.iter().find(|m| m.name == "hidden").unwrap();
        assert_eq!(
            h.taint_words,
            [
                "O: externally-built (out-of-tree) module was loaded",
                "E: unsigned module was loaded"
            ]
        );
    }

    #[test]
    fn taint_mask_in_words() {
        assert!(taint_words(0).is_empty());
        let w = taint_words((1 << 12) | (1 << 13) | (1 << 40));
        assert_eq!(w.len(), 3);
        assert!(w[0].starts_with("O: "));
        assert_eq!(w[2], "bit 40: unknown to this build");
        assert_eq!(taint_words(u64::MAX).len(), 64);
    }

    #[test]
    fn sysfs_tree_built_ins_are_not_loaded_modules() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("module");
        std::fs::create_dir_all(m.join("printk/parameters")).unwrap();
        std::fs::create_dir_all(m.join("ext4/sections")).unwrap();
        std::fs::write(m.join("ext4/initstate"), "live\n").unwrap();
        std::fs::write(m.join("ext4/refcnt"), "2\n").unwrap();
        std::fs::write(m.join("ext4/taint"), "\n").unwrap();
        std::fs::write(m.join("ext4/sections/.text"), "0x0\n").unwrap();
        let mut d = Doc::start("x", "x", "x");
        let s = sys_modules(&m, &mut d);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "ext4");
        assert_eq!(s[0].refcnt, Some(2));
        assert!(s[0].sections);
    }
}
