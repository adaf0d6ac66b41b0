//! The line-mode incident flow inside the rescue system: open a case, unlock the evidence disk only with
//! its serial, mount it, acquire the source onto it, verify, power off. On the host the evidence disk
//! holds the image and a case log whose hash chain verifies (and breaks after one edited byte), and the
//! source disk is byte-identical. The boot medium is never unlocked, and the reinstall/restore target
//! interlock refuses the unverified source, the boot medium and the evidence disk.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::fixtures::debugfs_dump;
use tests::says;
use tests::{Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

const T: Duration = Duration::from_secs(120);
/// An acquisition's progress line (`acquire  12% [==>    ] …`) once some of its bar is filled: the
/// acquisition runs and has passed blocks through (on the 80-column fallback width the bar has 17
/// columns beside the figures, so one `=` is about 6 %: 2 MiB of the 32 MiB sources below).
const PROGRESSED: &str = "% [=";

#[test]
fn line_mode_case_flow_acquires_onto_the_unlocked_evidence_disk() -> anyhow::Result<()> {
    let Some(art) = gate("line_mode_case_flow_acquires_onto_the_unlocked_evidence_disk") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let source = work.path().join("source.img");
    make_disk(&source, 16 << 20, 9)?;
    let source_sha = sha256_file(&source)?;
    let evidence = work.path().join("evidence.img");
    std::fs::File::create(&evidence)?.set_len(128 << 20)?;
    let o = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-L", "EVIDENCE"])
        .arg(&evidence)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut src = Disk::new(&source, Bus::Virtio);
    src.serial = Some("SRC1".into());
    let mut ev = Disk::new(&evidence, Bus::Virtio);
    ev.serial = Some("EVIDENCE-0042".into());
    // A copy of the boot medium (FAT label RESCUE) as a third disk: it can never be unlocked.
    let boot_copy = work.path().join("rescue-usb.img");
    std::fs::copy(art.usb_image(), &boot_copy)?;
    let mut medium = Disk::new(&boot_copy, Bus::Virtio);
    medium.serial = Some("BOOTSTICK-1".into());
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(src)
        .disk(ev)
        .disk(medium)
        .spawn()?;
    vm.wait_prompt(T)?;

    let out = vm.run("case new CASE-1 --examiner tester", T)?;
    vm.check(
        says(&out, "case CASE-1 opened"),
        &format!("case opened:\n{out}"),
    )?;
    let out = vm.run("mount-evidence /dev/vdb", T)?;
    vm.check(
        says(&out, "is not unlocked"),
        &format!("a locked disk cannot be mounted:\n{out}"),
    )?;
    let out = vm.run("unlock /dev/vdb --confirm 0041", T)?;
    vm.check(
        says(&out, "has serial EVIDENCE-0042") && says(&out, "(exit status 1)"),
        &format!("wrong serial refused:\n{out}"),
    )?;
    let out = vm.run("unlock /dev/vdc --confirm BOOTSTICK-1", T)?;
    vm.check(
        says(&out, "is the rescue boot medium") && says(&out, "(exit status 1)"),
        &format!("the boot medium is never unlocked:\n{out}"),
    )?;
    let out = vm.run("unlock /dev/vdb --confirm E-0042", T)?;
    vm.check(
        says(&out, "unlocked for writing: vdb"),
        &format!("unlock with the last 6 characters:\n{out}"),
    )?;
    let out = vm.run("mount-evidence /dev/vdb", T)?;
    vm.check(
        says(&out, "mounted on /mnt/evidence"),
        &format!("mounted:\n{out}"),
    )?;
    let out = vm.run("inventory", T)?;
    vm.check(
        says(&out, "saved /mnt/evidence/CASE-1/inventory.json"),
        &format!("inventory saved in the case:\n{out}"),
    )?;
    let out = vm.run(
        "acquire /dev/vda --out /mnt/evidence/CASE-1/disk-1 --evidence-id disk-1",
        Duration::from_secs(300),
    )?;
    vm.check(
        !says(&out, "(exit status"),
        &format!("acquisition succeeded:\n{out}"),
    )?;
    let out = vm.run("case target /dev/vda", T)?;
    vm.check(
        says(&out, "not verified yet") && says(&out, "(exit status 1)"),
        &format!("an acquired but unverified disk is no reinstall target:\n{out}"),
    )?;
    let out = vm.run("case target /dev/vdc --reason 'reflash it'", T)?;
    vm.check(
        says(&out, "boot medium") && says(&out, "(exit status 1)"),
        &format!("the boot medium is never a target, whatever the reason:\n{out}"),
    )?;
    let out = vm.run("case target /dev/vdb --reason x", T)?;
    vm.check(
        says(&out, "evidence destination") && says(&out, "(exit status 1)"),
        &format!("the evidence disk is never a target:\n{out}"),
    )?;
    let out = vm.run(
        "verify /mnt/evidence/CASE-1/disk-1",
        Duration::from_secs(300),
    )?;
    vm.check(
        !says(&out, "(exit status"),
        &format!("verify passed:\n{out}"),
    )?;
    let out = vm.run("case target /dev/vda", T)?;
    vm.check(
        says(&out, "may be a reinstall/restore target") && !says(&out, "(exit status"),
        &format!("after verify the source may be reinstalled:\n{out}"),
    )?;
    let out = vm.run("unlock /dev/vda --confirm SRC1", T)?;
    vm.check(
        says(&out, "was chosen as a source"),
        &format!("a source disk can never be unlocked:\n{out}"),
    )?;
    let out = vm.run("acquire /dev/vdb --out /tmp/x", T)?;
    vm.check(
        says(&out, "(exit status 1)"),
        &format!("the evidence disk cannot be acquired as a source:\n{out}"),
    )?;
    let disks = vm.run_json("devices --json", T)?;
    let vda = disks
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == "vda").cloned())
        .unwrap_or_default();
    vm.check(vda["read_only"] == true, "the source stays write-blocked")?;
    vm.send_line("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), "clean power-off")?;

    assert_eq!(sha256_file(&source)?, source_sha, "the source disk changed");
    let image = work.path().join("image.raw");
    debugfs_dump(&evidence, "/CASE-1/disk-1/image.raw", &image)?;
    assert_eq!(
        sha256_file(&image)?,
        source_sha,
        "the image on the evidence disk equals the source"
    );
    let manifest = work.path().join("manifest.json");
    debugfs_dump(&evidence, "/CASE-1/disk-1/manifest.json", &manifest)?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    assert_eq!(
        m["case"]["case_id"], "CASE-1",
        "the case id comes from the open case"
    );
    assert_eq!(m["case"]["examiner"], "tester");
    let inventory = work.path().join("inventory.json");
    debugfs_dump(&evidence, "/CASE-1/inventory.json", &inventory)?;
    let inv: serde_json::Value = serde_json::from_slice(&std::fs::read(&inventory)?)?;
    let disk = |name: &str| {
        inv["disks"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or_default()
    };
    assert_eq!(disk("vda")["serial"], "SRC1", "{inv}");
    assert_eq!(
        disk("vdb")["signature"],
        "ext4",
        "the evidence disk's filesystem is recognised: {inv}"
    );
    let log = work.path().join("case-log.jsonl");
    debugfs_dump(&evidence, "/CASE-1/case-log.jsonl", &log)?;
    let bytes = std::fs::read(&log)?;
    let entries =
        rescue::caselog::verify(&bytes).map_err(|e| anyhow::anyhow!("case log chain: {e}"))?;
    let commands: Vec<&str> = entries.iter().map(|e| e.command.as_str()).collect();
    for want in [
        "case new CASE-1 --examiner tester",
        "unlock /dev/vdb --confirm 0041",
        "mount-evidence /dev/vdb",
        "poweroff",
    ] {
        assert!(
            commands.contains(&want),
            "the case log records {want:?}: {commands:?}"
        );
    }
    assert!(
        entries.iter().any(|e| e.detail["refused"]
            .as_str()
            .is_some_and(|r| says(r, "has serial"))),
        "the refusal is logged"
    );
    assert!(
        entries.iter().any(|e| e.command == "case target /dev/vda"
            && e.detail["refused"]
                .as_str()
                .is_some_and(|r| says(r, "not verified"))),
        "the target refusal is logged"
    );
    let mut edited = bytes.clone();
    let at = edited.windows(6).position(|w| w == b"CASE-1").unwrap_or(0);
    edited[at + 5] = b'2';
    assert!(
        rescue::caselog::verify(&edited).is_err(),
        "one edited byte breaks the chain"
    );
    Ok(())
}

/// Line mode on a FAT32 evidence disk: a raw image that cannot fit is refused before anything is written,
/// one that fits is split automatically below 4 GiB; `format` refuses a source disk and makes an exFAT
/// filesystem (with the initramfs's own mkfs.exfat) on an unlocked one; the inventory reports HPA/DCO for
/// an AHCI disk.
#[test]
fn line_mode_fat32_split_space_check_and_exfat_format() -> anyhow::Result<()> {
    let Some(art) = gate("line_mode_fat32_split_space_check_and_exfat_format") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let big = work.path().join("big.img");
    make_disk(&big, 64 << 20, 3)?;
    let big_sha = sha256_file(&big)?;
    let small = work.path().join("small.img");
    make_disk(&small, 8 << 20, 5)?;
    let small_sha = sha256_file(&small)?;
    let fat = work.path().join("fat32.img");
    std::fs::File::create(&fat)?.set_len(40 << 20)?;
    let o = Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "-n", "EVID32"])
        .arg(&fat)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "mkfs.vfat: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let exfat = work.path().join("exfat.img");
    std::fs::File::create(&exfat)?.set_len(64 << 20)?;
    let ata_img = work.path().join("ata.img");
    std::fs::File::create(&ata_img)?.set_len(16 << 20)?;
    let mut ata = Disk::new(&ata_img, Bus::Ahci);
    ata.serial = Some("ATA-1".into());

    let disk = |path: &Path, serial: &str| {
        let mut d = Disk::new(path, Bus::Virtio);
        d.serial = Some(serial.into());
        d
    };
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(disk(&big, "SRCBIG1"))
        .disk(disk(&small, "SRCSMALL1"))
        .disk(disk(&fat, "FAT-000032"))
        .disk(disk(&exfat, "EXF-000001"))
        .disk(ata)
        .spawn()?;
    vm.wait_prompt(T)?;
    vm.run("case new C2 --examiner tester", T)?;
    // An AHCI disk answers IDENTIFY: the inventory reports its HPA/DCO feature state.
    let out = vm.run("inventory", T)?;
    let sda = out
        .lines()
        .skip_while(|l| !l.starts_with("sda"))
        .find(|l| says(l, "hidden areas"))
        .unwrap_or_default()
        .to_owned();
    vm.check(
        sda.contains("HPA") && !says(&sda, "not reported"),
        &format!("HPA/DCO reported for the ATA disk: {sda:?}\n{out}"),
    )?;
    let out = vm.run("unlock /dev/vdc --confirm 000032", T)?;
    vm.check(says(&out, "unlocked for writing: vdc"), &out)?;
    let out = vm.run("mount-evidence /dev/vdc", T)?;
    vm.check(
        says(&out, "(vfat) mounted on /mnt/evidence"),
        &format!("FAT32 evidence mounted:\n{out}"),
    )?;
    let out = vm.run(
        "acquire /dev/vda --out /mnt/evidence/C2/big --evidence-id big",
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "free but the raw image of /dev/vda needs") && says(&out, "(exit status 1)"),
        &format!("no space: refused before starting:\n{out}"),
    )?;
    let out = vm.run("manifest /mnt/evidence/C2/big", T)?;
    vm.check(
        says(&out, "(exit status"),
        &format!("nothing was written for the refused acquisition:\n{out}"),
    )?;
    let out = vm.run(
        "acquire /dev/vdb --out /mnt/evidence/C2/small --evidence-id small",
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "splitting the image into") && !says(&out, "(exit status"),
        &format!("FAT32: split automatically:\n{out}"),
    )?;
    let m = vm.run_json("manifest /mnt/evidence/C2/small --json", T)?;
    vm.check(
        m["image"]["split_bytes"] == 4095u64 << 20 && m["hashes"]["sha256"] == small_sha.as_str(),
        &format!("manifest of the split image: {m}"),
    )?;
    let out = vm.run("format /dev/vda --fs ext4 --confirm SRCBIG1", T)?;
    vm.check(
        says(&out, "never formatted") && says(&out, "(exit status 1)"),
        &format!("a source disk is never formatted:\n{out}"),
    )?;
    let out = vm.run("format /dev/vdd --fs exfat --confirm EXF-000001", T)?;
    vm.check(
        says(&out, "is not unlocked") && says(&out, "(exit status 1)"),
        &format!("a locked disk is not formatted:\n{out}"),
    )?;
    vm.run("unlock /dev/vdd --confirm EXF-000001", T)?;
    let out = vm.run("format /dev/vdd --fs exfat --confirm 000002", T)?;
    vm.check(
        says(&out, "has serial EXF-000001") && says(&out, "(exit status 1)"),
        &format!("a wrong serial formats nothing:\n{out}"),
    )?;
    let out = vm.run(
        "format /dev/vdd --fs exfat --confirm EXF-000001",
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "empty exfat filesystem labelled EVIDENCE") && !says(&out, "(exit status"),
        &format!("exFAT made inside the rescue system:\n{out}"),
    )?;
    vm.send_line("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), "clean power-off")?;

    assert_eq!(
        sha256_file(&big)?,
        big_sha,
        "the refused source is unchanged"
    );
    assert_eq!(sha256_file(&small)?, small_sha, "the source is unchanged");
    let head = std::fs::read(&exfat)?;
    assert_eq!(
        &head[3..11],
        b"EXFAT   ",
        "an exFAT boot sector on the formatted disk"
    );
    Ok(())
}

/// `rescue.run=PATH`: a command file on the boot medium (FAT, label RESCUE) runs unattended on the
/// primary console, then the machine powers off; reading it leaves the boot medium unchanged.
#[test]
fn run_file_on_the_boot_medium_runs_unattended() -> anyhow::Result<()> {
    let Some(art) = gate("run_file_on_the_boot_medium_runs_unattended") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let medium = work.path().join("rescue-usb.img");
    std::fs::copy(art.usb_image(), &medium)?;
    let cmds = work.path().join("incident.txt");
    std::fs::write(
        &cmds,
        "# unattended triage\ncase new RUN-1 --examiner robot\n\ncase show\ninventory\n",
    )?;
    // The ESP starts at sector 2048 (1 MiB), as the builder lays it out.
    let o = Command::new("mcopy")
        .arg("-i")
        .arg(format!("{}@@1M", medium.display()))
        .arg(&cmds)
        .arg("::/incident.txt")
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "mcopy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let medium_sha = sha256_file(&medium)?;
    let mut b = QemuBuilder::direct(&art, work.path()).disk(Disk::new(&medium, Bus::Virtio));
    if let tests::Boot::Direct { cmdline, .. } = &mut b.boot {
        cmdline.push_str(" rescue.run=/incident.txt");
    }
    let mut vm = b.spawn()?;
    let out = vm.expect("rescue> poweroff", Duration::from_secs(300))?;
    vm.check(
        says(
            &out,
            "rescue.run: running /incident.txt from the boot medium",
        ) && says(&out, "case RUN-1 opened")
            && says(&out, "examiner    robot")
            && says(&out, "saved /run/rescue/inventory.json"),
        &format!("the command file ran:\n{out}"),
    )?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), "powered off after the command file")?;
    assert_eq!(
        sha256_file(&medium)?,
        medium_sha,
        "reading the command file left the boot medium unchanged"
    );
    Ok(())
}

/// Ctrl-C during an acquisition asks first ("no" continues), then stops cleanly and leaves a state that
/// `--resume` completes into an image equal to the source. The source disk is read-throttled so the
/// acquisition lasts long enough to interrupt.
#[test]
fn ctrl_c_during_acquisition_asks_then_leaves_a_resumable_state() -> anyhow::Result<()> {
    let Some(art) = gate("ctrl_c_during_acquisition_asks_then_leaves_a_resumable_state") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let source = work.path().join("slow.img");
    make_disk(&source, 32 << 20, 11)?;
    let source_sha = sha256_file(&source)?;
    let mut b = QemuBuilder::direct(&art, work.path());
    b.extra.extend([
        "-drive".to_owned(),
        format!(
            "if=none,id=slow,format=raw,readonly=on,file={},throttling.bps-read=2097152",
            source.display()
        ),
        "-device".to_owned(),
        "virtio-blk-pci,drive=slow,serial=SLOW-1".to_owned(),
    ]);
    let mut vm = b.spawn()?;
    vm.wait_prompt(T)?;
    vm.send_line("acquire /dev/vda --out /tmp/ev --evidence-id slow")?;
    // A progress line with some of the bar filled: the acquisition reads, and its Ctrl-C handler (set
    // before the first progress line) is in place.
    vm.expect(PROGRESSED, T)?;
    vm.send_raw(b"\x03")?;
    let out = vm.expect("stop? [y/N] ", T)?;
    vm.check(
        says(&out, "rescue acquire /dev/vda --out /tmp/ev --resume"),
        &format!("the question shows how to resume:\n{out}"),
    )?;
    vm.send_line("n")?;
    vm.expect("continuing", T)?;
    // The bar drawn again after the answer, twice: the second is a later block's (the first may be the
    // redraw of the bar the question hid, a moment before the Ctrl-C flag is cleared).
    vm.expect(PROGRESSED, T)?;
    vm.expect(PROGRESSED, T)?;
    vm.send_raw(b"\x03")?;
    vm.expect("stop? [y/N] ", T)?;
    vm.send_line("y")?;
    let out = vm.expect(tests::PROMPT, Duration::from_secs(300))?;
    vm.check(
        says(&out, "interrupted after") && says(&out, "(exit status 5)"),
        &format!("stopped cleanly, resumable (exit 5):\n{out}"),
    )?;
    let out = vm.run(
        "acquire /dev/vda --out /tmp/ev --evidence-id slow --resume",
        Duration::from_secs(600),
    )?;
    vm.check(
        says(&out, "acquired /dev/vda") && !says(&out, "(exit status"),
        &format!("resumed to completion:\n{out}"),
    )?;
    let m = vm.run_json("manifest /tmp/ev --json", T)?;
    vm.check(
        m["complete"] == true && m["hashes"]["sha256"] == source_sha.as_str(),
        &format!("the resumed image hashes like the source: {m}"),
    )?;
    vm.send_line("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), "clean power-off")?;
    assert_eq!(sha256_file(&source)?, source_sha, "the source disk changed");
    Ok(())
}

/// The evidence disk is pulled (PCIe hot-unplug) in the middle of an acquisition: a clear error, a case-log
/// entry (kept in RAM, then re-chained onto the case log), and a state that `--resume` completes after the
/// disk is plugged back, unlocked and mounted again.
#[test]
fn evidence_disk_pulled_mid_acquisition_is_resumable() -> anyhow::Result<()> {
    let Some(art) = gate("evidence_disk_pulled_mid_acquisition_is_resumable") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let source = work.path().join("slow.img");
    make_disk(&source, 32 << 20, 13)?;
    let source_sha = sha256_file(&source)?;
    let evidence = work.path().join("evidence.img");
    std::fs::File::create(&evidence)?.set_len(128 << 20)?;
    let o = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-L", "EVIDENCE"])
        .arg(&evidence)
        .output()?;
    anyhow::ensure!(o.status.success(), "mkfs.ext4 failed");
    let mut b = QemuBuilder::direct(&art, work.path());
    b.extra.extend([
        "-drive".to_owned(),
        format!(
            "if=none,id=slow,format=raw,readonly=on,file={},throttling.bps-read=2097152",
            source.display()
        ),
        "-device".to_owned(),
        "virtio-blk-pci,drive=slow,serial=SLOW-2".to_owned(),
        "-device".to_owned(),
        "pcie-root-port,id=rp1,chassis=1".to_owned(),
        "-drive".to_owned(),
        format!(
            "if=none,id=ev,format=raw,cache=unsafe,file={}",
            evidence.display()
        ),
        "-device".to_owned(),
        "virtio-blk-pci,bus=rp1,id=evdev,drive=ev,serial=EV-LOST-1".to_owned(),
    ]);
    let mut vm = b.spawn()?;
    vm.wait_prompt(T)?;
    let name_of = |vm: &mut tests::Qemu, serial: &str| -> anyhow::Result<String> {
        let disks = vm.run_json("devices --json", T)?;
        Ok(disks
            .as_array()
            .and_then(|a| a.iter().find(|d| d["serial"] == serial))
            .and_then(|d| d["name"].as_str())
            .unwrap_or_default()
            .to_owned())
    };
    let src = name_of(&mut vm, "SLOW-2")?;
    let ev = name_of(&mut vm, "EV-LOST-1")?;
    vm.check(!src.is_empty() && !ev.is_empty(), "both disks are listed")?;
    vm.run("case new C3 --examiner tester", T)?;
    vm.run(&format!("unlock /dev/{ev} --confirm EV-LOST-1"), T)?;
    let out = vm.run(&format!("mount-evidence /dev/{ev}"), T)?;
    vm.check(says(&out, "mounted on /mnt/evidence"), &out)?;
    vm.send_line(&format!(
        "acquire /dev/{src} --out /mnt/evidence/C3/d1 --evidence-id d1"
    ))?;
    // Pulled once the acquisition writes: its output files exist before the first progress line, and a
    // bar with some of it filled means blocks went through.
    vm.expect(PROGRESSED, T)?;
    vm.hmp("device_del evdev")?;
    let out = vm.expect(tests::PROMPT, Duration::from_secs(300))?;
    vm.check(
        says(&out, "disappeared during the acquisition") && says(&out, "(exit status 5)"),
        &format!("a clear error and a resumable exit:\n{out}"),
    )?;
    let out = vm.run("case show", T)?;
    vm.check(
        says(&out, "evidence    (not mounted"),
        &format!("the lost destination is forgotten:\n{out}"),
    )?;
    // Plug it back once QEMU has let go of the pulled device: QEMU says so with DEVICE_DELETED after
    // the guest acknowledged the unplug (asynchronously, after the attention button's 5 s).
    vm.expect_event("DEVICE_DELETED", |d| d["device"] == "evdev", T)?;
    vm.hmp(&format!(
        "drive_add 0 if=none,id=ev2,format=raw,cache=unsafe,file.locking=off,file={}",
        evidence.display()
    ))?;
    vm.hmp("device_add virtio-blk-pci,bus=rp1,id=evdev2,drive=ev2,serial=EV-LOST-1")?;
    // It appears asynchronously (PCIe hotplug, then the kernel's probe); init write-blocks it as it
    // appears and says so on the console, which is what a responder at the console sees.
    let ev2 = vm.expect_new_disk("EV-LOST-1", T)?;
    let listed = name_of(&mut vm, "EV-LOST-1")?;
    vm.check(
        listed == ev2,
        &format!("the disk init announced ({ev2}) is the evidence disk"),
    )?;
    let out = vm.run(&format!("mount-evidence /dev/{ev2}"), T)?;
    vm.check(
        says(&out, "is not unlocked"),
        &format!("a returning disk is write-blocked until unlocked again:\n{out}"),
    )?;
    vm.run(&format!("unlock /dev/{ev2} --confirm EV-LOST-1"), T)?;
    let out = vm.run(&format!("mount-evidence /dev/{ev2}"), T)?;
    vm.check(says(&out, "mounted on /mnt/evidence"), &out)?;
    let out = vm.run(
        &format!("acquire /dev/{src} --out /mnt/evidence/C3/d1 --evidence-id d1 --resume"),
        Duration::from_secs(600),
    )?;
    vm.check(
        !says(&out, "(exit status"),
        &format!("resumed onto the returned disk:\n{out}"),
    )?;
    let out = vm.run("verify /mnt/evidence/C3/d1", Duration::from_secs(300))?;
    vm.check(!says(&out, "(exit status"), &format!("verified:\n{out}"))?;
    vm.send_line("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), "clean power-off")?;

    assert_eq!(sha256_file(&source)?, source_sha, "the source disk changed");
    let image = work.path().join("image.raw");
    debugfs_dump(&evidence, "/C3/d1/image.raw", &image)?;
    assert_eq!(sha256_file(&image)?, source_sha, "resumed image == source");
    let log = work.path().join("case-log.jsonl");
    debugfs_dump(&evidence, "/C3/case-log.jsonl", &log)?;
    let entries = rescue::caselog::verify(&std::fs::read(&log)?)
        .map_err(|e| anyhow::anyhow!("case log chain: {e}"))?;
    assert!(
        entries
            .iter()
            .any(|e| e.command == "evidence destination lost"),
        "the loss is in the case log: {:?}",
        entries.iter().map(|e| &e.command).collect::<Vec<_>>()
    );
    Ok(())
}
