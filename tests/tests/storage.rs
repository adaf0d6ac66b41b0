//! LVM and md read-only inside the rescue system. Fixture disks made by lvm2, mdadm, mkfs.ext4 and
//! mkfs.xfs in a guest (`tests::storage`) are attached; the rescue system write-blocks them at boot and
//! loads no md or device-mapper module. On request, `md assemble --read-only` starts RAID1, RAID5 and
//! the 0.90/1.0/1.1 arrays read-only, `lvm activate --read-only` maps the linear (three segments over
//! both PVs) and the striped LV; the known files are read through those devices (restore's dry run
//! mounts them read-only and hashes every file) and equal what the guest wrote. A RAID5 named with
//! one member left out and a VG with one PV left out are refused naming what is missing. After
//! `lvm deactivate` and `md stop`, /dev/mapper and /proc/mdstat are empty, and on the host every
//! fixture disk has the sha256 it had before the boot. LVM on md: `lvm activate` on the members of the
//! unassembled RAID1 says the PV is inside it and to assemble first; after `md assemble` the VG's PV is
//! found on the array and its LV reads back the known files.
//!
//! The guided scenario boots with the two LVM-on-md disks alone: `lvm activate` typed first names the
//! array to assemble; step 2 (inventory) offers "activate LVM/md read-only", which assembles the array
//! and maps the LV; step 5 (triage) lists `/dev/mapper/raidvg-root` first and its triage shows the cron
//! backdoor planted on that root; teardown leaves nothing mapped or running and both members unchanged.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use tests::says;
use tests::storage::{self, DISKS};
use tests::{Bus, Disk, PROMPT, QemuBuilder, gate, sha256_file};

const T: Duration = Duration::from_secs(300);

/// `text` with every run of white space one space: a long message is wrapped to the console's width.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sha256(data: &[u8]) -> String {
    tests::fixtures::sha256_hex(data)
}

/// The sha256 of each known file that restore's dry run reports for `device`.
fn hashes_through(vm: &mut tests::Qemu, device: &str) -> anyhow::Result<BTreeMap<String, String>> {
    // Not run_json: the kernel's "Can't find ext4 filesystem" (restore tries ext4 first on the XFS
    // volume) is printed on the console too, and its "[" starts a line.
    let command = format!("restore {device} /tmp --dry-run --json");
    let out = vm.run(&command, T)?;
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        anyhow::anyhow!(
            "`{command}` printed no JSON object ({e}):\n{out}\n{}",
            vm.log()
        )
    })?;
    let mut out = BTreeMap::new();
    for f in v["files"].as_array().into_iter().flatten() {
        if let (Some(p), Some(h)) = (f["path"].as_str(), f["sha256"].as_str()) {
            out.insert(p.trim_start_matches("./").to_owned(), h.to_owned());
        }
    }
    Ok(out)
}

#[test]
fn lvm_and_md_activate_read_only_and_tear_down() -> anyhow::Result<()> {
    let Some(art) = gate("lvm_and_md_activate_read_only_and_tear_down") else {
        return Ok(());
    };
    let fixtures = storage::storage_fixtures(&art)?;
    let work = tempfile::tempdir()?;
    let mut disks = Vec::new();
    for (name, _) in DISKS {
        let p = work.path().join(name);
        let st = Command::new("cp")
            .args(["--sparse=always"])
            .arg(fixtures.disk(name))
            .arg(&p)
            .status()?;
        anyhow::ensure!(st.success(), "copying {name}");
        disks.push(p);
    }
    let before: Vec<String> = disks
        .iter()
        .map(|d| sha256_file(d))
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir(work.path().join("vm"))?;
    let mut b = QemuBuilder::direct(&art, &work.path().join("vm"));
    b.memory_mib = 1024;
    for d in &disks {
        b = b.disk(Disk::new(d.clone(), Bus::Virtio));
    }
    let mut vm = b.spawn()?;
    vm.wait_prompt(T)?;

    // Nothing of md or device-mapper is loaded at boot.
    let drivers = vm.run("drivers", T)?;
    for m in ["dm_mod", "md_mod", "raid1", "raid456", "raid0", "raid10"] {
        vm.check(
            !drivers.split_whitespace().any(|w| w == m),
            &format!("{m} was loaded at boot:\n{drivers}"),
        )?;
    }

    // A RAID5 with one member left out is refused, naming the missing role.
    let out = vm.run("md assemble --read-only /dev/vde /dev/vdf", T)?;
    vm.check(
        says(&out, "refused: array r5") && says(&out, "missing member role 2"),
        &format!("a RAID5 without its third member was not refused by name:\n{out}"),
    )?;
    vm.check(
        !says(&out, "read-only (array_state"),
        &format!("a degraded RAID5 was assembled without --degraded:\n{out}"),
    )?;
    // A VG with one PV left out is refused, naming the PV.
    let out = vm.run("lvm activate --read-only /dev/vda", T)?;
    vm.check(
        says(&out, "refused: VG forensic-vg is missing PV") && out.contains("pv1"),
        &format!("a VG without its second PV was not refused by name:\n{out}"),
    )?;

    // LVM on md asked for before the array runs: the PV is inside it, and the order is said.
    let [ma, mb] = storage::MD_LVM_MEMBERS.map(storage::vd);
    let out = words(&vm.run(&format!("lvm activate --read-only {ma} {mb}"), T)?);
    vm.check(
        out.contains(&format!(
            "not activated: members {ma} {mb} of md array {} (RAID1, not assembled) hold LVM PV",
            storage::MD_LVM_ARRAY
        )) && out.contains(&format!("of VG {}", storage::MD_LVM_VG))
            && says(&out, "run `md assemble --read-only` first")
            && !says(&out, "no LVM2 label")
            && !says(&out, " -> /dev/mapper/"),
        &format!(
            "lvm activate on the members of an unassembled md array did not say md first:\n{out}"
        ),
    )?;

    // Asked for, the RAID5 is read without its third member: still read-only, still the same files.
    let out = vm.run("md assemble --read-only --degraded /dev/vde /dev/vdf", T)?;
    vm.check(
        out.contains("(/dev/md/r5)")
            && says(&out, "DEGRADED: roles [2] missing")
            && says(&out, "array_state readonly"),
        &format!("--degraded did not read the RAID5 without its third member:\n{out}"),
    )?;
    vm.check(
        says(&out, "kernel modules loaded for this command:") && says(&out, " md_mod "),
        &format!("md assemble did not load md_mod itself:\n{out}"),
    )?;
    let h = hashes_through(&mut vm, "/dev/md/r5")?;
    vm.check(
        h.get("numbers.txt") == Some(&sha256(storage::numbers_text().as_bytes())),
        &format!("files read through the degraded RAID5 differ: {h:?}"),
    )?;
    let out = vm.run("md stop", T)?;
    vm.check(
        says(&out, "/proc/mdstat: no array left"),
        &format!("md stop left the degraded RAID5:\n{out}"),
    )?;

    let out = vm.run("md assemble --read-only", T)?;
    for name in ["r1", "r5", "2", "m10", "m11", storage::MD_LVM_ARRAY] {
        vm.check(
            out.lines().any(|l| {
                l.contains(&format!("/dev/md/{name})")) && says(l, "array_state readonly")
            }),
            &format!("array {name} was not assembled read-only:\n{out}"),
        )?;
    }
    vm.check(
        says(
            &out,
            "kernel modules loaded for this command: raid0 raid1 raid10",
        ),
        &format!("md assemble did not load the RAID personalities itself:\n{out}"),
    )?;
    let out = vm.run("lvm activate --read-only", T)?;
    for (vg, lv, mapper) in [
        ("forensic-vg", "root", "forensic--vg-root"),
        ("forensic-vg", "data-striped", "forensic--vg-data--striped"),
        (storage::MD_LVM_VG, storage::MD_LVM_LV, "raidvg-root"),
    ] {
        vm.check(
            out.contains(&format!("/dev/{vg}/{lv} -> /dev/mapper/{mapper}")),
            &format!("LV {lv} was not activated as /dev/mapper/{mapper}:\n{out}"),
        )?;
    }
    // The PV of raidvg was found on the assembled array, not on one of its members.
    vm.check(
        out.lines().any(|l| {
            l.starts_with(&format!("VG {} ", storage::MD_LVM_VG)) && says(l, "PVs /dev/md1")
        }) && !says(&out, "not activated"),
        &format!("the VG on the md array was not activated from /dev/mdN:\n{out}"),
    )?;
    vm.check(
        says(&out, "linear, 3 segments") && says(&out, "striped (2), 1 segment"),
        &format!("LV layouts not as lvm2 made them:\n{out}"),
    )?;
    vm.check(
        out.contains("dm_mod"),
        &format!("lvm activate did not load dm_mod itself:\n{out}"),
    )?;
    // Twice is harmless: what is mapped or assembled is reported, not made again.
    let out = vm.run("lvm activate --read-only", T)?;
    vm.check(
        out.matches("already active").count() == 3 && !out.contains("error"),
        &format!("a second lvm activate did not report the active LVs:\n{out}"),
    )?;
    let out = vm.run("md assemble --read-only", T)?;
    vm.check(
        says(&out, "/dev/vdc: already a member of /dev/md") && !out.contains("refused"),
        &format!("a second md assemble did not report the running arrays:\n{out}"),
    )?;

    let numbers = sha256(storage::numbers_text().as_bytes());
    for (device, fs_name) in [
        ("/dev/mapper/forensic--vg-root", "lvm-root"),
        ("/dev/forensic-vg/data-striped", "lvm-data"),
        ("/dev/md/r1", "md-r1"),
        ("/dev/md/r5", "md-r5"),
        ("/dev/md/2", "md-m090"),
        ("/dev/md/m10", "md-m10"),
        ("/dev/md/m11", "md-m11"),
        ("/dev/mapper/raidvg-root", "lvm-md"),
    ] {
        let h = hashes_through(&mut vm, device)?;
        vm.check(
            h.get("known.txt") == Some(&sha256(storage::known_text(fs_name).as_bytes()))
                && h.get("numbers.txt") == Some(&numbers),
            &format!("files read through {device} differ from what the guest wrote: {h:?}"),
        )?;
    }

    let out = vm.run("lvm deactivate", T)?;
    vm.check(
        says(&out, "removed /dev/mapper/raidvg-root")
            && says(&out, "removed /dev/mapper/forensic--vg-root")
            && says(&out, "removed /dev/mapper/forensic--vg-data--striped")
            && says(&out, "/dev/mapper: no device left"),
        &format!("lvm deactivate did not empty /dev/mapper:\n{out}"),
    )?;
    let out = vm.run("md stop", T)?;
    vm.check(
        out.matches("stopped /dev/md").count() == 6 && says(&out, "/proc/mdstat: no array left"),
        &format!("md stop did not stop the six arrays:\n{out}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(T)?;

    for ((d, b), (name, _)) in disks.iter().zip(&before).zip(DISKS) {
        let after = sha256_file(d)?;
        anyhow::ensure!(
            &after == b,
            "{name} changed: sha256 {b} before the boot, {after} after\n{}",
            vm.log()
        );
    }
    Ok(())
}

/// Copies fixture disks `indexes` into `dir` (sparse) and returns their paths and sha256s.
fn copy_disks(
    fixtures: &storage::StorageFixtures,
    dir: &std::path::Path,
    indexes: &[usize],
) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    let mut out = Vec::new();
    for &i in indexes {
        let name = DISKS[i].0;
        let p = dir.join(name);
        let st = Command::new("cp")
            .args(["--sparse=always"])
            .arg(fixtures.disk(name))
            .arg(&p)
            .status()?;
        anyhow::ensure!(st.success(), "copying {name}");
        let sha = sha256_file(&p)?;
        out.push((p, sha));
    }
    Ok(out)
}

#[test]
fn guided_offer_activates_lvm_on_md_and_triage_reads_the_lv() -> anyhow::Result<()> {
    let Some(art) = gate("guided_offer_activates_lvm_on_md_and_triage_reads_the_lv") else {
        return Ok(());
    };
    const LONG: Duration = Duration::from_secs(900);
    let fixtures = storage::storage_fixtures(&art)?;
    let work = tempfile::tempdir()?;
    let disks = copy_disks(&fixtures, work.path(), &storage::MD_LVM_MEMBERS)?;
    std::fs::create_dir(work.path().join("vm"))?;
    let mut b = QemuBuilder::direct(&art, &work.path().join("vm"));
    for (d, _) in &disks {
        b = b.disk(Disk::new(d.clone(), Bus::Virtio));
    }
    let mut vm = b.spawn()?;
    let boot = vm.wait_prompt(T)?;
    vm.check(
        says(&boot, "guided mode"),
        &format!("the guided menu is in front of the prompt at boot:\n{boot}"),
    )?;
    let (vg, array) = (storage::MD_LVM_VG, storage::MD_LVM_ARRAY);

    // LVM first, as an operator used to lvm2 would: the PV is inside an array nobody assembled.
    let out = words(&vm.run("lvm activate --read-only", T)?);
    vm.check(
        out.contains(&format!(
            "not activated: members /dev/vda /dev/vdb of md array {array} (RAID1, not assembled) \
             hold LVM PV"
        )) && out.contains(&format!("of VG {vg}: the PV is inside the array"))
            && !says(&out, " -> /dev/mapper/"),
        &format!("lvm activate before md assemble did not say to assemble first:\n{out}"),
    )?;

    // Step 1: a case (the clock taken as right).
    vm.send_line("1")?;
    vm.expect("Case id", T)?;
    vm.send_line("CASE-LVM")?;
    vm.expect("Examiner", T)?;
    vm.send_line("tester")?;
    vm.expect("Notes (optional)", T)?;
    vm.send_line("")?;
    vm.expect("True UTC time now", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "case CASE-LVM opened"),
        &format!("case opened:\n{out}"),
    )?;

    // Step 2: the inventory finds the md members and offers to open them read-only.
    vm.send_line("2")?;
    let out = vm.expect("Activate LVM/md read-only now", T)?;
    vm.check(
        says(&out, "md RAID members: /dev/vda /dev/vdb"),
        &format!("the inventory did not name the md members before the offer:\n{out}"),
    )?;
    vm.send_raw(b"y")?;
    let out = vm.expect(PROMPT, T)?;
    vm.check(
        says(&out, "[guided] md assemble --read-only")
            && out.lines().any(|l| {
                l.contains(&format!("(/dev/md/{array})")) && says(l, "array_state readonly")
            }),
        &format!("the guided offer did not assemble the RAID1 read-only:\n{out}"),
    )?;
    vm.check(
        says(&out, "[guided] lvm activate --read-only")
            && out.contains(&format!("/dev/{vg}/root -> /dev/mapper/{vg}-root"))
            && !says(&out, "not activated"),
        &format!("the guided offer did not map the LV on the array:\n{out}"),
    )?;

    // Step 5: the activated LV is the first source offered, and its triage reads the root on it.
    vm.send_line("5")?;
    vm.expect("Triage of", T)?;
    vm.expect(&format!("LVM volume /dev/mapper/{vg}-root"), T)?;
    vm.send_raw(b"\r")?;
    vm.expect("Start of the attack window", T)?;
    vm.send_line("")?;
    let out = vm.expect(PROMPT, LONG)?;
    vm.check(
        out.contains(&format!(
            "[guided] triage /dev/mapper/{vg}-root --out /run/rescue/triage-{vg}-root"
        )) && out.contains(&format!("/{}", storage::MD_LVM_BACKDOOR))
            && says(&out, "findings recorded in the case"),
        &format!("the guided triage of the LV did not show the planted backdoor:\n{out}"),
    )?;

    let out = vm.run("lvm deactivate", T)?;
    vm.check(
        out.contains(&format!("removed /dev/mapper/{vg}-root"))
            && says(&out, "/dev/mapper: no device left"),
        &format!("lvm deactivate did not empty /dev/mapper:\n{out}"),
    )?;
    let out = vm.run("md stop", T)?;
    vm.check(
        says(&out, "stopped /dev/md") && says(&out, "/proc/mdstat: no array left"),
        &format!("md stop did not stop the array:\n{out}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(T)?;
    for (d, before) in &disks {
        let after = sha256_file(d)?;
        anyhow::ensure!(
            &after == before,
            "{} changed: sha256 {before} before the boot, {after} after\n{}",
            d.display(),
            vm.log()
        );
    }
    Ok(())
}
