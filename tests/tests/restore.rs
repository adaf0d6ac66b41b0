//! Screened restore inside the rescue system: a backup disk with good files, a file corrupted since the
//! backup's SHA256SUMS was written, a setuid binary, a file whose hash is on the investigation's
//! blocklist, an attacker's authorized_keys, a passwd with a second uid-0 account, a PHP webshell and a
//! file a triage finding names is restored onto a new root disk. On the host the target holds exactly
//! the good files (content and mode) and its own passwd, and the restore-manifest.json written to the
//! case directory names every refusal with its reason (the finding's id for the finding's file), beside
//! the held passwd's comparison with the new system's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tests::fixtures::{
    debugfs_dump, debugfs_rdump, mkfs_ext4 as mkfs, sha256_hex as sha256, tree, write_file as write,
};
use tests::says;
use tests::{Bus, Disk, QemuBuilder, gate};

const T: Duration = Duration::from_secs(180);

#[test]
fn screened_restore_brings_back_only_the_good_files() -> anyhow::Result<()> {
    let Some(art) = gate("screened_restore_brings_back_only_the_good_files") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let b = work.path().join("backup");
    write(&b, "srv/data/report.txt", b"quarterly numbers\n", 0o640)?;
    write(&b, "srv/data/sub/photo.bin", &[7u8; 100_000], 0o644)?;
    write(&b, "home/alice/notes.md", b"# notes\n", 0o600)?;
    write(&b, "srv/data/orders.db", b"rotted bytes", 0o644)?;
    write(&b, "usr/local/bin/helper", b"\x7fELF helper", 0o4755)?;
    write(&b, "srv/data/implant.so", b"attacker library", 0o644)?;
    write(
        &b,
        "root/.ssh/authorized_keys",
        b"ssh-ed25519 AAAA attacker@evil",
        0o600,
    )?;
    write(
        &b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/bash\n",
        0o644,
    )?;
    write(
        &b,
        "var/www/html/up/shell.php",
        b"<?php @eval($_POST['x']); ?>",
        0o644,
    )?;
    write(&b, "srv/data/dropper.txt", b"stage two", 0o644)?;
    // The backup's manifest was written before orders.db rotted.
    let mut sums = String::new();
    for (rel, data) in [
        ("srv/data/report.txt", &b"quarterly numbers\n"[..]),
        ("srv/data/sub/photo.bin", &[7u8; 100_000][..]),
        ("home/alice/notes.md", b"# notes\n"),
        ("srv/data/orders.db", b"original orders"),
        ("usr/local/bin/helper", b"\x7fELF helper"),
        ("srv/data/implant.so", b"attacker library"),
        (
            "root/.ssh/authorized_keys",
            b"ssh-ed25519 AAAA attacker@evil",
        ),
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/bash\n",
        ),
        ("var/www/html/up/shell.php", b"<?php @eval($_POST['x']); ?>"),
        ("srv/data/dropper.txt", b"stage two"),
    ] {
        sums.push_str(&format!("{}  ./{rel}\n", sha256(data)));
    }
    let ev = work.path().join("evidence-files");
    write(&ev, "SHA256SUMS", sums.as_bytes(), 0o644)?;
    write(
        &ev,
        "blocklist.txt",
        format!(
            "# IOCs from CASE-9\n{}  implant.so\n",
            sha256(b"attacker library")
        )
        .as_bytes(),
        0o644,
    )?;
    // What `rescue triage` wrote about the compromised root (schema rescue.triage/1).
    write(
        &ev,
        "findings.json",
        serde_json::json!({"schema": "rescue.triage/1", "findings": [
            {"id": "TMP-0007", "severity": "high", "category": "files", "path": "/srv/data/dropper.txt",
             "why": "dropped from /dev/shm in the attack window", "evidence": {}}
        ]})
        .to_string()
        .as_bytes(),
        0o644,
    )?;
    let backup = work.path().join("backup.img");
    mkfs(&backup, 32, Some(&b))?;
    // The freshly installed root already has its own accounts.
    let new_passwd =
        b"root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n";
    let n = work.path().join("newroot");
    write(&n, "etc/passwd", new_passwd, 0o644)?;
    let target = work.path().join("target.img");
    mkfs(&target, 32, Some(&n))?;
    let evidence = work.path().join("evidence.img");
    mkfs(&evidence, 32, Some(&ev))?;

    let disk = |p: &Path, serial: &str| {
        let mut d = Disk::new(p, Bus::Virtio);
        d.serial = Some(serial.into());
        d
    };
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(disk(&backup, "BACKUP-0001"))
        .disk(disk(&target, "NEWROOT-0001"))
        .disk(disk(&evidence, "EVIDENCE-0042"))
        .spawn()?;
    vm.wait_prompt(T)?;
    for (cmd, want) in [
        ("case new CASE-9 --examiner tester", "case CASE-9 opened"),
        (
            "unlock /dev/vdc --confirm EVIDENCE-0042",
            "unlocked for writing: vdc",
        ),
        ("mount-evidence /dev/vdc", "mounted on /mnt/evidence"),
    ] {
        let out = vm.run(cmd, T)?;
        vm.check(out.contains(want), &format!("{cmd}:\n{out}"))?;
    }
    let restore = "restore /dev/vda /dev/vdb --confirm NEWROOT-0001 --manifest /mnt/evidence/SHA256SUMS --blocklist /mnt/evidence/blocklist.txt --findings /mnt/evidence/findings.json";
    let out = vm.run(restore, T)?;
    vm.check(
        says(&out, "never acquired in this case") && says(&out, "(exit status 1)"),
        &format!("the interlock wants a reason:\n{out}"),
    )?;
    let out = vm.run(
        "restore /dev/vda /dev/vdc --confirm EVIDENCE-0042 --reason 'wrong disk'",
        T,
    )?;
    vm.check(
        says(&out, "is the evidence destination") && says(&out, "(exit status 1)"),
        &format!("the evidence disk is never a restore target, reason or not:\n{out}"),
    )?;
    let out = vm.run(
        &format!("{restore} --reason 'new root disk'"),
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "REFUSED   srv/data/orders.db: corrupted")
            && says(&out, "REFUSED   usr/local/bin/helper: setuid")
            && says(&out, "REFUSED   srv/data/implant.so: sha256")
            && says(
                &out,
                "HELD      root/.ssh/authorized_keys: ssh authorized_keys",
            )
            && says(&out, "HELD      etc/passwd: account database")
            && says(&out, "toor: UID 0: a second superuser")
            && out.contains(
                "HELD      var/www/html/up/shell.php: server-side script that runs commands",
            )
            && says(
                &out,
                "REFUSED   srv/data/dropper.txt: finding TMP-0007 (high, files)",
            )
            && says(&out, "restore complete: 3 held, 4 refused, 3 restored")
            && says(
                &out,
                "restore manifest: /mnt/evidence/CASE-9/restore-manifest.json",
            ),
        &format!("restore summary:\n{out}"),
    )?;
    // A rerun finds everything in place.
    let out = vm.run(
        &format!("{restore} --reason 'new root disk'"),
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "3 identical"),
        &format!("rerun skips identical files:\n{out}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(Duration::from_secs(60))?;

    let out_dir = work.path().join("restored");
    debugfs_rdump(&target, &out_dir)?;
    let got = tree(&out_dir)?;
    let want: BTreeMap<String, (Vec<u8>, u32)> = [
        (
            "srv/data/report.txt",
            (b"quarterly numbers\n".to_vec(), 0o640),
        ),
        ("srv/data/sub/photo.bin", (vec![7u8; 100_000], 0o644)),
        ("home/alice/notes.md", (b"# notes\n".to_vec(), 0o600)),
        ("etc/passwd", (new_passwd.to_vec(), 0o644)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly the good files (and the new system's passwd) are on the target"
    );
    assert_eq!(got, want, "content and mode of every restored file");

    let manifest = work.path().join("restore-manifest.json");
    debugfs_dump(&evidence, "/CASE-9/restore-manifest.json", &manifest)?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    let record = |p: &str| {
        m["files"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["path"] == p).cloned())
            .unwrap_or_default()
    };
    for (path, action, reason) in [
        ("srv/data/orders.db", "refused", "corrupted"),
        ("usr/local/bin/helper", "refused", "setuid"),
        ("srv/data/implant.so", "refused", "blocklist"),
        ("root/.ssh/authorized_keys", "held", "authorized_keys"),
        (
            "etc/passwd",
            "held",
            "1 account added (toor), 1 removed (_apt)",
        ),
        ("var/www/html/up/shell.php", "held", "PHP eval() of $_post"),
        ("srv/data/dropper.txt", "refused", "finding TMP-0007"),
        ("srv/data/report.txt", "identical", ""),
    ] {
        let r = record(path);
        assert_eq!(r["action"], action, "{path}: {r}");
        assert!(
            r["reason"].as_str().unwrap_or_default().contains(reason),
            "{path}: {r}"
        );
    }
    assert_eq!(m["complete"], true);
    assert_eq!(
        record("srv/data/dropper.txt")["findings"],
        serde_json::json!(["TMP-0007"])
    );
    let diff = work.path().join("passwd.diff");
    debugfs_dump(&evidence, "/CASE-9/restore-held/etc/passwd.diff", &diff)?;
    let diff = std::fs::read_to_string(&diff)?;
    assert!(
        says(&diff, "+ toor:<in shadow>:0:0::/root:/bin/bash   !! UID 0") && says(&diff, "- _apt:"),
        "the comparison beside the manifest:\n{diff}"
    );
    let log = work.path().join("case-log.jsonl");
    debugfs_dump(&evidence, "/CASE-9/case-log.jsonl", &log)?;
    let entries = rescue::caselog::verify(&std::fs::read(&log)?)
        .map_err(|e| anyhow::anyhow!("case log chain: {e}"))?;
    assert!(
        entries
            .iter()
            .any(|e| e.command.starts_with("restore /dev/vda")
                && e.detail["counts"]["refused"] == 4
                && e.detail["findings"]["matched"] == serde_json::json!(["TMP-0007"])),
        "the restore result and the findings it used are in the case log"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.detail["override_reason"] == "new root disk"),
        "the interlock override and its reason are logged"
    );
    Ok(())
}
