//! LVM and md read-only inside the rescue system. Fixture disks made by lvm2, mdadm, mkfs.ext4 and
//! mkfs.xfs in a guest (`tests::storage`) are attached; the rescue system write-blocks them at boot and
//! loads no md or device-mapper module. On request, `md assemble --read-only` starts RAID1, RAID5 and
//! the 0.90/1.0/1.1 arrays read-only, `lvm activate --read-only` maps the linear (three segments over
//! both PVs) and the striped LV; the known files are read through those devices (restore's dry run
//! mounts them read-only and hashes every file) and equal what the guest wrote. A RAID5 named with
//! one member left out and a VG with one PV left out are refused naming what is missing. After
//! `lvm deactivate` and `md stop`, /dev/mapper and /proc/mdstat are empty, and on the host every
//! fixture disk has the sha256 it had before the boot.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use tests::storage::{self, DISKS};
use tests::{Bus, Disk, QemuBuilder, gate, sha256_file};

const T: Duration = Duration::from_secs(300);

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
        out.contains("refused: array r5") && out.contains("missing member role 2"),
        &format!("a RAID5 without its third member was not refused by name:\n{out}"),
    )?;
    vm.check(
        !out.contains("read-only (array_state"),
        &format!("a degraded RAID5 was assembled without --degraded:\n{out}"),
    )?;
    // A VG with one PV left out is refused, naming the PV.
    let out = vm.run("lvm activate --read-only /dev/vda", T)?;
    vm.check(
        out.contains("refused: VG forensic-vg is missing PV") && out.contains("pv1"),
        &format!("a VG without its second PV was not refused by name:\n{out}"),
    )?;

    // Asked for, the RAID5 is read without its third member: still read-only, still the same files.
    let out = vm.run("md assemble --read-only --degraded /dev/vde /dev/vdf", T)?;
    vm.check(
        out.contains("(/dev/md/r5)")
            && out.contains("DEGRADED: roles [2] missing")
            && out.contains("array_state readonly"),
        &format!("--degraded did not read the RAID5 without its third member:\n{out}"),
    )?;
    vm.check(
        out.contains("kernel modules loaded for this command:") && out.contains(" md_mod "),
        &format!("md assemble did not load md_mod itself:\n{out}"),
    )?;
    let h = hashes_through(&mut vm, "/dev/md/r5")?;
    vm.check(
        h.get("numbers.txt") == Some(&sha256(storage::numbers_text().as_bytes())),
        &format!("files read through the degraded RAID5 differ: {h:?}"),
    )?;
    let out = vm.run("md stop", T)?;
    vm.check(
        out.contains("/proc/mdstat: no array left"),
        &format!("md stop left the degraded RAID5:\n{out}"),
    )?;

    let out = vm.run("md assemble --read-only", T)?;
    for name in ["r1", "r5", "2", "m10", "m11"] {
        vm.check(
            out.lines().any(|l| {
                l.contains(&format!("/dev/md/{name})")) && l.contains("array_state readonly")
            }),
            &format!("array {name} was not assembled read-only:\n{out}"),
        )?;
    }
    vm.check(
        out.contains("kernel modules loaded for this command: raid0 raid1 raid10"),
        &format!("md assemble did not load the RAID personalities itself:\n{out}"),
    )?;
    let out = vm.run("lvm activate --read-only", T)?;
    for (lv, mapper) in [
        ("root", "forensic--vg-root"),
        ("data-striped", "forensic--vg-data--striped"),
    ] {
        vm.check(
            out.contains(&format!("/dev/forensic-vg/{lv} -> /dev/mapper/{mapper}")),
            &format!("LV {lv} was not activated as /dev/mapper/{mapper}:\n{out}"),
        )?;
    }
    vm.check(
        out.contains("linear, 3 segments") && out.contains("striped (2), 1 segment"),
        &format!("LV layouts not as lvm2 made them:\n{out}"),
    )?;
    vm.check(
        out.contains("dm_mod"),
        &format!("lvm activate did not load dm_mod itself:\n{out}"),
    )?;
    // Twice is harmless: what is mapped or assembled is reported, not made again.
    let out = vm.run("lvm activate --read-only", T)?;
    vm.check(
        out.matches("already active").count() == 2 && !out.contains("error"),
        &format!("a second lvm activate did not report the active LVs:\n{out}"),
    )?;
    let out = vm.run("md assemble --read-only", T)?;
    vm.check(
        out.contains("/dev/vdc: already a member of /dev/md") && !out.contains("refused"),
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
        out.contains("removed /dev/mapper/forensic--vg-root")
            && out.contains("removed /dev/mapper/forensic--vg-data--striped")
            && out.contains("/dev/mapper: no device left"),
        &format!("lvm deactivate did not empty /dev/mapper:\n{out}"),
    )?;
    let out = vm.run("md stop", T)?;
    vm.check(
        out.matches("stopped /dev/md").count() == 5 && out.contains("/proc/mdstat: no array left"),
        &format!("md stop did not stop the five arrays:\n{out}"),
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
