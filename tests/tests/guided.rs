//! The guided incident flow over the serial console (TERM=vt220, dialoguer prompts answered with the keys
//! a BMC serial line sends): open a case with the true time, inventory, unlock and format the evidence
//! disk, acquire and verify a 256 MiB "compromised" source disk (GPT + ext4 with known files), clear it
//! as a reinstall target, report and power off. On the host the evidence disk holds the image, manifest,
//! SHA256SUMS, inventory and case log; the image equals the source; the chain verifies (and breaks after
//! one edited byte); the source is byte-identical.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::{Bus, Disk, PROMPT, QemuBuilder, gate, sha256_file};

const T: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(1200);

fn run_tool(cmd: &mut Command) -> anyhow::Result<()> {
    let o = cmd.output()?;
    anyhow::ensure!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// A 256 MiB GPT disk whose one partition holds an ext4 filesystem with known files, made without root:
/// the filesystem is built in its own file with `mkfs.ext4 -d` and copied to the partition's offset.
fn make_compromised_disk(work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let files = work.join("files");
    std::fs::create_dir_all(files.join("etc/cron.d"))?;
    std::fs::write(
        files.join("etc/cron.d/backdoor"),
        "* * * * * root /tmp/.x\n",
    )?;
    std::fs::write(
        files.join("notes.txt"),
        "known content for the guided test\n",
    )?;
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

fn debugfs_dump(image: &Path, inside: &str, out: &Path) -> anyhow::Result<()> {
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {inside} {}", out.display()))
        .arg(image)
        .output()?;
    anyhow::ensure!(
        o.status.success() && out.exists(),
        "debugfs dump {inside}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

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
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(src)
        .disk(ev)
        .spawn()?;
    let boot = vm.wait_prompt(T)?;
    vm.check(
        boot.contains("guided mode") && boot.contains("next> 1  Case"),
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
        out.contains("case CASE-G opened") && out.contains("clock offset +"),
        &format!("case opened with a clock offset:\n{out}"),
    )?;
    vm.check(
        out.contains("next> 2"),
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
        out.contains("has serial USBEVIDENCE-77") && out.contains("stays write-blocked"),
        &format!("a wrong serial leaves the disk locked:\n{out}"),
    )?;
    vm.send_line("3")?;
    vm.expect("Evidence destination disk", T)?;
    vm.send_raw(b"j\r")?;
    vm.expect("to make it writable", T)?;
    vm.send_line("ENCE-77")?;
    let out = vm.expect("What to do with it", T)?;
    vm.check(
        out.contains("unlocked for writing: vdb"),
        &format!("unlocked with the last 6 characters of its serial:\n{out}"),
    )?;
    vm.send_raw(b"j\r")?;
    vm.expect("Type its serial", T)?;
    vm.send_line("USBEVIDENCE-77")?;
    let out = vm.expect(PROMPT, Duration::from_secs(300))?;
    vm.check(
        out.contains("empty ext4 filesystem") && out.contains("mounted on /mnt/evidence"),
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
        out.contains("/dev/vda: acquired and verified"),
        &format!("acquired and verified:\n{out}"),
    )?;

    // Step 5: the verified source may be a reinstall target; the evidence disk never.
    vm.send_line("5")?;
    vm.expect("Disk to reinstall", T)?;
    vm.send_raw(b"\r")?;
    let out = vm.expect("Reinstall how", T)?;
    vm.check(
        out.contains("/dev/vda is cleared as the reinstall target"),
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
    vm.send_line("5")?;
    vm.expect("Disk to reinstall", T)?;
    vm.send_raw(b"j\r")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        out.contains("evidence destination of this case") && !out.contains("Reason to overwrite"),
        &format!("the evidence disk is refused without asking for a reason:\n{out}"),
    )?;

    // Step 7: report, chain check, power off.
    vm.send_line("7")?;
    vm.expect("Power off now", T)?;
    vm.send_raw(b"y")?;
    let status = vm.wait_exit(Duration::from_secs(120))?;
    vm.check(status.success(), "clean power-off")?;
    let log = vm.log();
    vm.check(
        log.contains("chain intact"),
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
        "case target /dev/vda",
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
    let mut edited = bytes.clone();
    let at = edited.windows(6).position(|w| w == b"CASE-G").unwrap_or(0);
    edited[at + 5] = b'H';
    assert!(
        rescue::caselog::verify(&edited).is_err(),
        "one edited byte breaks the chain"
    );
    Ok(())
}
