//! `rescue::pkgdb` on real roots (issue 18), cross-checked with tools no one here wrote: on a Debian
//! 12 debootstrap root, `debsums --root` reports the same changed package files as `pkgdb::verify`
//! after the test modified some (and none on the clean root); on a RHEL-like root whose rpmdb Debian's
//! `rpm` made, `rpm --root … -Va` does.

#[path = "common/pkgroots.rs"]
mod pkgroots;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rescue::pkgdb::{self, Change, DbKind};

/// The changed files debsums reports: `-c` lists changed files on stdout, missing ones are
/// "missing file X (from P package)" on stderr; both with the root in front.
fn debsums_changed(root: &Path) -> BTreeSet<String> {
    let prefix = root.to_string_lossy().into_owned();
    let strip = |p: &str| p.strip_prefix(prefix.as_str()).unwrap_or(p).to_owned();
    let o = Command::new("debsums")
        .args(["-a", "-c", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let mut out: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(strip)
        .collect();
    for line in String::from_utf8_lossy(&o.stderr).lines() {
        if let Some(rest) = line.split("missing file ").nth(1) {
            out.insert(strip(rest.split(" (from ").next().unwrap()));
        } else {
            panic!("debsums said something unexpected: {line}");
        }
    }
    out
}

fn pkgdb_changed(root: &Path) -> (BTreeSet<String>, Vec<pkgdb::Changed>) {
    let db = pkgdb::open(root).unwrap().expect("a package database");
    let changed = db.verify(root, &mut |_| {}).unwrap();
    let set = changed
        .iter()
        .map(|c| c.path.to_string_lossy().into_owned())
        .collect();
    (set, changed)
}

#[test]
fn debian_root_changes_agree_with_debsums() {
    const NAME: &str = "debian_root_changes_agree_with_debsums";
    if !pkgroots::have("debsums") && !pkgroots::skip(NAME, "debsums is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    if pkgroots::debian12_root(NAME, root).is_none() {
        return;
    }

    let db = pkgdb::open(root).unwrap().expect("dpkg database");
    assert_eq!(db.kind(), DbKind::Dpkg);
    assert!(
        db.packages().len() > 100,
        "{} packages",
        db.packages().len()
    );
    // /usr-merged: dpkg lists /bin/ls, the file is /usr/bin/ls; both spellings find the owner.
    assert_eq!(db.owner(Path::new("/usr/bin/ls")), Some("coreutils"));
    assert_eq!(db.owner(Path::new("/bin/ls")), Some("coreutils"));
    assert_eq!(
        db.owner(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
        Some("libc6:amd64"),
        "a Multi-Arch: same package is named with its architecture"
    );
    // dash diverts /bin/sh to /bin/sh.distrib for other packages and ships /bin/sh itself.
    assert_eq!(db.owner(Path::new("/bin/sh")), Some("dash"));
    // Made by a maintainer script, not shipped: no owner.
    assert_eq!(db.owner(Path::new("/etc/passwd")), None);
    assert_eq!(db.owner(Path::new("/usr/bin/planted")), None);

    let (clean, _) = pkgdb_changed(root);
    let ds_clean = debsums_changed(root);
    assert_eq!(clean, ds_clean, "on the clean root");
    assert!(clean.is_empty(), "a fresh debootstrap root: {clean:?}");

    // The attacker's work: a trojaned binary, a library cut short, a deleted tool, a symlink planted
    // where a binary was, a changed conffile, a mode change on a stat-overridden file.
    let ls = root.join("usr/bin/ls");
    let mut bytes = std::fs::read(&ls).unwrap();
    bytes.extend_from_slice(b"trojan");
    std::fs::write(&ls, bytes).unwrap();
    let lib = std::fs::read_dir(root.join("usr/lib/x86_64-linux-gnu"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libpam.so.0."))
        })
        .expect("libpam in the root");
    let len = std::fs::metadata(&lib).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::remove_file(root.join("usr/bin/whoami")).unwrap();
    std::fs::remove_file(root.join("usr/bin/id")).unwrap();
    std::os::unix::fs::symlink("/tmp/.x/id", root.join("usr/bin/id")).unwrap();
    std::fs::write(root.join("etc/debian_version"), "13.0\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/crontab"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();

    let t = Instant::now();
    let (ours, changed) = pkgdb_changed(root);
    let t_ours = t.elapsed();
    let t = Instant::now();
    let theirs = debsums_changed(root);
    let t_debsums = t.elapsed();
    eprintln!(
        "verify: pkgdb {:.2} s, debsums --root {:.2} s",
        t_ours.as_secs_f64(),
        t_debsums.as_secs_f64()
    );
    // debsums does not read statoverride: the crontab mode change is ours alone.
    let mut ours_comparable = ours.clone();
    assert!(ours_comparable.remove("/usr/bin/crontab"), "{ours:?}");
    assert_eq!(ours_comparable, theirs, "pkgdb vs debsums");
    let by_path = |p: &str| changed.iter().find(|c| c.path == Path::new(p)).unwrap();
    assert!(matches!(
        by_path("/bin/ls").changes[..],
        [Change::Digest { .. }]
    ));
    assert!(matches!(
        by_path("/usr/bin/whoami").changes[..],
        [Change::Missing]
    ));
    assert!(matches!(
        by_path("/usr/bin/id").changes[..],
        [Change::FileType { .. }]
    ));
    assert!(by_path("/etc/debian_version").config);
    assert!(!by_path("/bin/ls").config);
    assert_eq!(
        by_path("/usr/bin/crontab").changes,
        [Change::Mode {
            expected: 0o2755,
            found: 0o4755
        }]
    );
    assert_eq!(by_path("/bin/ls").package, "coreutils");
    pkgroots::ran(NAME);
}
