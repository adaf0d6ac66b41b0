//! Boot scenarios: the rescue system comes up from each medium, lists every disk on every bus with the
//! right size and `read_only: true` (read back from the kernel), refuses every write, leaves the disk
//! files byte-identical, and powers off cleanly.

use std::time::Duration;

use tests::says;
use tests::{Boot, Bus, Disk, Firmware, QemuBuilder, gate, make_disk, sha256_file};

/// As in bootmatrix: firmware, GRUB and the kernel under TCG on a loaded 2-core host (a soak run
/// next to two busy loops and five compiling sessions needed over 120 s through OVMF).
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

fn devices(vm: &mut tests::Qemu) -> anyhow::Result<Vec<serde_json::Value>> {
    let v = vm.run_json("devices --json", CMD_TIMEOUT)?;
    v.as_array()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("devices --json is not an array: {v}"))
}

fn poweroff(vm: &mut tests::Qemu) -> anyhow::Result<()> {
    vm.send_line("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(
        status.success(),
        &format!("qemu exited with {status} after poweroff"),
    )
}

#[test]
fn direct_kernel_boot_reaches_prompt_and_powers_off() -> anyhow::Result<()> {
    let Some(art) = gate("direct_kernel_boot_reaches_prompt_and_powers_off") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let mut vm = QemuBuilder::direct(&art, work.path()).spawn()?;
    let banner = vm.wait_prompt(BOOT_TIMEOUT)?;
    vm.check(says(&banner, "rescue 0."), "banner names the version")?;
    vm.check(
        says(&banner, "boot BIOS"),
        "banner says the boot mode (SeaBIOS direct boot)",
    )?;
    vm.check(says(&banner, "console ttyS0"), "banner names the console")?;
    let help = vm.run("help", CMD_TIMEOUT)?;
    for cmd in [
        "devices", "acquire", "verify", "selftest", "poweroff", "reboot",
    ] {
        vm.check(help.contains(cmd), &format!("help lists {cmd}"))?;
    }
    // Ctrl-C at the prompt discards the line; it must not kill the console (which would reprint the banner).
    vm.send_raw(b"devi\x03")?;
    let status = vm.run("status", CMD_TIMEOUT)?;
    vm.check(says(&status, "rescue 0."), "status prints the banner")?;
    let log = vm.log();
    vm.check(
        log.matches("type 'help' for commands").count() == 2,
        "one banner at boot, one from status: the console survived Ctrl-C",
    )?;
    // BMC serial consoles send BS or DEL for Backspace: both must erase.
    vm.send_raw(b"devx\x7f\x08vices --json\r")?;
    let out = vm.expect(tests::PROMPT, CMD_TIMEOUT)?;
    vm.check(
        out.lines().any(|l| l.trim_start().starts_with('[')),
        &format!("the corrected line ran `devices --json`:\n{out}"),
    )?;
    let unknown = vm.run("frobnicate", CMD_TIMEOUT)?;
    vm.check(
        says(&unknown, "unrecognized subcommand") || unknown.contains("error"),
        "an unknown command gets an error",
    )?;
    poweroff(&mut vm)
}

#[test]
fn usb_image_boots_through_ovmf() -> anyhow::Result<()> {
    let Some(art) = gate("usb_image_boots_through_ovmf") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let usb = work.path().join("rescue-usb.img");
    std::fs::copy(art.usb_image(), &usb)?;
    let before = sha256_file(&usb)?;
    let mut vm = QemuBuilder::new(Boot::UsbImage(usb.clone()), work.path())
        .firmware(Firmware::Ovmf)
        .spawn()?;
    let banner = vm.wait_prompt(BOOT_TIMEOUT)?;
    vm.check(says(&banner, "boot UEFI"), "banner says UEFI")?;
    vm.check(
        says(&banner, "Secure Boot disabled"),
        "banner reads Secure Boot state from efivars",
    )?;
    let disks = devices(&mut vm)?;
    let boot = disks.iter().find(|d| d["transport"] == "usb");
    vm.check(boot.is_some(), "the USB boot stick is listed")?;
    let boot = boot.cloned().unwrap_or_default();
    vm.check(
        boot["size_bytes"].as_u64() == Some(std::fs::metadata(&usb)?.len()),
        "boot stick size matches the image",
    )?;
    vm.check(
        boot["read_only"] == true,
        "the boot stick is write-blocked too",
    )?;
    vm.check(
        boot["partitions"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["read_only"] == true)),
        "its ESP and BIOS boot partitions are listed and write-blocked",
    )?;
    // `reboot` restarts the machine; QEMU runs with -no-reboot, so it exits instead.
    vm.send_line("reboot")?;
    vm.expect("syncing disks and rebooting", CMD_TIMEOUT)?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(
        status.success(),
        &format!("qemu exited with {status} after reboot"),
    )?;
    assert_eq!(sha256_file(&usb)?, before, "the boot medium changed");
    Ok(())
}

#[test]
fn disks_on_every_bus_are_listed_read_only_and_refuse_writes() -> anyhow::Result<()> {
    let Some(art) = gate("disks_on_every_bus_are_listed_read_only_and_refuse_writes") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let specs = [
        (Bus::Virtio, 64u64 << 20, Some(4096)),
        (Bus::Ahci, 48 << 20, None),
        (Bus::Nvme, 40 << 20, Some(4096)),
        (Bus::Usb, 32 << 20, None),
    ];
    let mut builder = QemuBuilder::direct(&art, work.path());
    let mut hashes = Vec::new();
    for (i, (bus, size, sector)) in specs.iter().enumerate() {
        let path = work.path().join(format!("disk{i}.img"));
        make_disk(&path, *size, i as u8)?;
        hashes.push(sha256_file(&path)?);
        let mut d = Disk::new(&path, *bus);
        d.sector = *sector;
        d.serial = Some(format!("SER{i}{}", bus.transport().to_uppercase()));
        builder = builder.disk(d);
    }
    let mut vm = builder.spawn()?;
    vm.wait_prompt(BOOT_TIMEOUT)?;
    let disks = devices(&mut vm)?;
    for (i, (bus, size, sector)) in specs.iter().enumerate() {
        let serial = format!("SER{i}{}", bus.transport().to_uppercase());
        let d = disks.iter().find(|d| d["serial"] == serial.as_str());
        vm.check(
            d.is_some(),
            &format!("disk {i} on {bus:?} (serial {serial}) is listed: {disks:?}"),
        )?;
        let d = d.cloned().unwrap_or_default();
        vm.check(
            d["transport"] == bus.transport(),
            &format!("disk {i} transport is {}: {d}", bus.transport()),
        )?;
        vm.check(
            d["size_bytes"].as_u64() == Some(*size),
            &format!("disk {i} size is {size}: {d}"),
        )?;
        vm.check(
            d["read_only"] == true,
            &format!("disk {i} is read-only: {d}"),
        )?;
        vm.check(
            d["logical_sector_size"].as_u64() == Some(u64::from(sector.unwrap_or(512))),
            &format!("disk {i} sector size: {d}"),
        )?;
        for key in [
            "name",
            "path",
            "physical_sector_size",
            "model",
            "removable",
            "partitions",
        ] {
            vm.check(d.get(key).is_some(), &format!("disk {i} has {key}: {d}"))?;
        }
    }
    let out = vm.run("selftest write-block", CMD_TIMEOUT)?;
    vm.check(
        says(&out, "write-block selftest: PASSED"),
        &format!("selftest passes:\n{out}"),
    )?;
    vm.check(!says(&out, "WRITE ACCEPTED"), "no device accepted a write")?;
    for d in &disks {
        let path = d["path"].as_str().unwrap_or("?");
        vm.check(
            out.lines()
                .any(|l| l.starts_with(path) && l.contains("refused")),
            &format!("{path} refused the write:\n{out}"),
        )?;
    }
    let drivers = vm.run("drivers", CMD_TIMEOUT)?;
    for m in [
        "virtio_blk",
        "ahci",
        "nvme",
        "usb_storage",
        "xhci_pci",
        "sd_mod",
    ] {
        vm.check(
            drivers.split_whitespace().any(|w| w == m),
            &format!("coldplug loaded {m}:\n{drivers}"),
        )?;
    }
    poweroff(&mut vm)?;
    for (i, want) in hashes.iter().enumerate() {
        let got = sha256_file(&work.path().join(format!("disk{i}.img")))?;
        assert_eq!(&got, want, "disk {i} changed during the run");
    }
    Ok(())
}

#[test]
fn hotplugged_usb_disk_is_write_blocked_with_its_partitions() -> anyhow::Result<()> {
    let Some(art) = gate("hotplugged_usb_disk_is_write_blocked_with_its_partitions") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let disk = work.path().join("hot.img");
    make_disk(&disk, 24 << 20, 7)?;
    // A GPT with one partition, so the kernel's partition scan creates a second block device.
    let out = std::process::Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:0"])
        .arg(&disk)
        .output()?;
    assert!(
        out.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = sha256_file(&disk)?;
    let mut vm = QemuBuilder::direct(&art, work.path()).spawn()?;
    vm.wait_prompt(BOOT_TIMEOUT)?;
    vm.hmp(&format!(
        "drive_add 0 if=none,id=hot,format=raw,file={}",
        disk.display()
    ))?;
    vm.hmp("device_add usb-storage,bus=xhci.0,drive=hot,id=hotdev,serial=HOTPLUG1")?;
    // The disk appears asynchronously (USB enumeration, SCSI scan): init write-blocks it and its
    // partition as it appears and says so on the console.
    let name = vm.expect_new_disk("HOTPLUG1", BOOT_TIMEOUT)?;
    let disks = devices(&mut vm)?;
    let hot = disks
        .into_iter()
        .find(|d| d["serial"] == "HOTPLUG1")
        .unwrap_or_default();
    vm.check(
        hot["name"] == name.as_str() && hot["partitions"].as_array().is_some_and(|p| p.len() == 1),
        &format!("the announced disk {name} is the hotplugged one, with its partition: {hot}"),
    )?;
    vm.check(
        hot["read_only"] == true,
        &format!("hotplugged disk is read-only: {hot}"),
    )?;
    vm.check(
        hot["partitions"][0]["read_only"] == true,
        &format!("its partition is read-only: {hot}"),
    )?;
    let out = vm.run("selftest write-block", CMD_TIMEOUT)?;
    vm.check(
        says(&out, "write-block selftest: PASSED"),
        &format!("selftest passes:\n{out}"),
    )?;
    poweroff(&mut vm)?;
    assert_eq!(sha256_file(&disk)?, before, "the hotplugged disk changed");
    Ok(())
}

#[test]
fn unattended_command_list_runs_and_powers_off() -> anyhow::Result<()> {
    let Some(art) = gate("unattended_command_list_runs_and_powers_off") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let disk = work.path().join("disk.img");
    make_disk(&disk, 8 << 20, 5)?;
    let before = sha256_file(&disk)?;
    let mut b = QemuBuilder::direct(&art, work.path()).disk(Disk::new(&disk, Bus::Virtio));
    if let Boot::Direct { cmdline, .. } = &mut b.boot {
        cmdline.push_str(" rescue.auto=\"devices --json;selftest write-block\"");
    }
    let mut vm = b.spawn()?;
    // Nobody types anything: the list runs and the machine powers off by itself.
    let status = vm.wait_exit(BOOT_TIMEOUT)?;
    let log = vm.log();
    vm.check(status.success(), &format!("qemu exited cleanly ({status})"))?;
    vm.check(
        log.lines()
            .any(|l| l.starts_with("[{") && l.contains("\"name\":\"vda\"")),
        "devices --json ran",
    )?;
    vm.check(says(&log, "write-block selftest: PASSED"), "selftest ran")?;
    vm.check(
        says(&log, "syncing disks and powering off"),
        "it powered off by itself",
    )?;
    assert_eq!(sha256_file(&disk)?, before);
    Ok(())
}
