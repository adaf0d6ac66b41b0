//! Independent checks of what `cargo xtask build` wrote: `sgdisk -v` on the USB image, `fsck.vfat -n` on
//! its ESP, `objdump -h` on the UKI, the build manifest's hashes against the files, and the static binary
//! on both media (mtools, isoinfo, xorriso).

use std::process::Command;

use tests::says;
use tests::{gate, sha256_file};

fn tool(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "running {:?} (install gdisk, dosfstools, binutils): {e}",
            cmd.get_program()
        )
    })?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn usb_image_passes_sgdisk_and_fsck() -> anyhow::Result<()> {
    let Some(art) = gate("usb_image_passes_sgdisk_and_fsck") else {
        return Ok(());
    };
    let (ok, out) = tool(Command::new("sgdisk").arg("-v").arg(art.usb_image()))?;
    assert!(ok && says(&out, "No problems found"), "sgdisk -v:\n{out}");
    let (ok, table) = tool(Command::new("sgdisk").arg("-p").arg(art.usb_image()))?;
    assert!(ok, "sgdisk -p:\n{table}");
    // One partition, type EF00 (EFI system partition).
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains("EF00"))
        .collect();
    assert_eq!(rows.len(), 1, "one ESP expected:\n{table}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    let (start, end): (u64, u64) = (cols[1].parse()?, cols[2].parse()?);
    let image = std::fs::read(art.usb_image())?;
    let esp = &image[(start * 512) as usize..((end + 1) * 512) as usize];
    let dir = tempfile::tempdir()?;
    let esp_path = dir.path().join("esp.img");
    std::fs::write(&esp_path, esp)?;
    let (ok, out) = tool(Command::new("fsck.vfat").arg("-n").arg(&esp_path))?;
    assert!(ok, "fsck.vfat -n:\n{out}");
    // The UKI is on the ESP at the removable-media fallback path.
    let (ok, out) = tool(Command::new("fsck.vfat").arg("-n").arg("-l").arg(&esp_path))?;
    assert!(
        ok && out.to_uppercase().contains("/EFI/BOOT/BOOTX64.EFI"),
        "fsck.vfat -l:\n{out}"
    );
    Ok(())
}

#[test]
fn uki_has_the_spec_sections() -> anyhow::Result<()> {
    let Some(art) = gate("uki_has_the_spec_sections") else {
        return Ok(());
    };
    let (ok, out) = tool(Command::new("objdump").arg("-h").arg(art.efi()))?;
    assert!(ok, "objdump -h:\n{out}");
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|n| n.starts_with('.'))
        .collect();
    for s in [".osrel", ".cmdline", ".uname", ".initrd", ".linux"] {
        assert!(names.contains(&s), "UKI lacks {s}: {names:?}");
    }
    assert_eq!(
        names.last(),
        Some(&".linux"),
        ".linux must be the last section: {names:?}"
    );
    Ok(())
}

#[test]
fn build_manifest_hashes_every_output() -> anyhow::Result<()> {
    let Some(art) = gate("build_manifest_hashes_every_output") else {
        return Ok(());
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(art.dir.join("build-manifest.json"))?)?;
    assert_eq!(manifest["schema"], "rescue.build/1");
    let outputs = manifest["outputs"].as_array().cloned().unwrap_or_default();
    // rescue.efi, rescue-usb.img, rescue.iso, initramfs.cpio.zst, vmlinuz.
    assert_eq!(outputs.len(), 5, "{outputs:?}");
    for o in &outputs {
        let name = o["name"].as_str().unwrap_or_default();
        assert_eq!(
            o["sha256"].as_str(),
            Some(sha256_file(&art.dir.join(name))?.as_str()),
            "{name}"
        );
    }
    assert!(
        manifest["kernel"]["vmlinuz"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    assert!(
        manifest["stub"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    assert!(
        manifest["rescue_binary"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    let modules = manifest["modules"].as_array().cloned().unwrap_or_default();
    let builtin = manifest["modules_builtin"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Each driver a rescue needs is either shipped in the initramfs or built into the kernel.
    for m in [
        "virtio_blk",
        "ahci",
        "nvme",
        "usb-storage",
        "ext4",
        "vfat",
        "e1000e",
        "atkbd",
        "usbhid",
        "xhci_pci",
    ] {
        // Module names treat '-' and '_' alike (the file is xhci-pci.ko, the module xhci_pci).
        let shipped = modules.iter().any(|x| {
            x["name"].as_str().is_some_and(|n| {
                n.rsplit('/').next().unwrap_or(n).replace('-', "_")
                    == format!("{}.ko", m.replace('-', "_"))
            })
        });
        let built_in = builtin.iter().any(|b| {
            b.as_str()
                .is_some_and(|b| b.replace('-', "_") == m.replace('-', "_"))
        });
        assert!(shipped || built_in, "the image lacks {m}");
    }
    let size = std::fs::metadata(art.initramfs())?.len();
    assert!(
        size <= 40 << 20,
        "initramfs is {size} bytes, over the 40 MiB budget"
    );
    // sha256sum -c accepts SHA256SUMS.
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&art.dir)
        .output()?;
    assert!(
        out.status.success(),
        "sha256sum -c SHA256SUMS: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

/// Runs `cmd`, failing with its output when it fails; returns stdout.
fn run_ok(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("running {cmd:?}: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// `FILE --version` of an extracted copy of the binary: it runs on this host and names this version.
fn runs_as_this_build(file: &std::path::Path, version: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(file)?.permissions();
    if perm.mode() & 0o111 == 0 {
        perm.set_mode(0o755);
        std::fs::set_permissions(file, perm)?;
    }
    let out = String::from_utf8(run_ok(Command::new(file).arg("--version"))?)?;
    assert_eq!(
        out.trim(),
        format!("rescue {version}"),
        "{} --version",
        file.display()
    );
    Ok(())
}

/// The static binary a responder runs on the suspect host (issue 15) is on both media as the build
/// made it: mtools reads it from the USB image's FAT (`::RESCUE/RESCUE`), isoinfo and xorriso from the
/// ISO (`/RESCUE/RESCUE.;1`), each copy equals the built binary's sha256 (manifest and
/// `boot-files.json`, which the self-check uses) and runs here. (Loop mounts are not possible here: this
/// host's kernel has neither `vfat` nor `iso9660`.)
#[test]
fn the_static_binary_is_on_both_media_and_runs() -> anyhow::Result<()> {
    let Some(art) = gate("the_static_binary_is_on_both_media_and_runs") else {
        return Ok(());
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(art.dir.join("build-manifest.json"))?)?;
    let sha = manifest["rescue_binary"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let size = manifest["rescue_binary"]["size"].as_u64().unwrap_or(0);
    let version = manifest["version"].as_str().unwrap_or("?").to_owned();
    assert_eq!(sha.len(), 64, "{manifest}");
    // Listed where the self-check and the media listings look for it.
    let record = manifest["boot_files"]["files"]
        .as_array()
        .and_then(|f| f.iter().find(|r| r["path"] == "RESCUE/RESCUE"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("boot-files.json lacks RESCUE/RESCUE"))?;
    assert_eq!(record["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(record["size"].as_u64(), Some(size));
    assert_eq!(record["on"], serde_json::json!(["fat", "iso"]));
    for medium in ["rescue-usb.img", "rescue.iso"] {
        let listed = manifest["media"][medium]
            .as_array()
            .and_then(|f| f.iter().find(|r| r["path"] == "RESCUE/RESCUE"))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the manifest lists no RESCUE/RESCUE on {medium}"))?;
        assert_eq!(listed["sha256"].as_str(), Some(sha.as_str()), "{medium}");
    }
    let dir = tempfile::tempdir()?;

    // The USB image: the ESP's byte offset from sgdisk, the file through mtools.
    let (ok, table) = tool(Command::new("sgdisk").arg("-p").arg(art.usb_image()))?;
    assert!(ok, "sgdisk -p:\n{table}");
    let start: u64 = table
        .lines()
        .find(|l| l.contains("EF00"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no ESP in:\n{table}"))?;
    let image_at = format!("{}@@{}", art.usb_image().display(), start * 512);
    let listing = String::from_utf8(run_ok(
        Command::new("mdir").args(["-b", "-i", &image_at, "::RESCUE"]),
    )?)?;
    assert!(
        listing.lines().any(|l| l.trim() == "::/RESCUE/RESCUE"),
        "mdir -b lists the long name RESCUE:\n{listing}"
    );
    let from_fat = dir.path().join("from-fat");
    run_ok(
        Command::new("mcopy")
            .args(["-n", "-i", &image_at, "::RESCUE/RESCUE"])
            .arg(&from_fat),
    )?;
    assert_eq!(sha256_file(&from_fat)?, sha, "RESCUE/RESCUE on the FAT");
    runs_as_this_build(&from_fat, &version)?;

    // The ISO: isoinfo names it as recorded, xorriso extracts it by the path a user types.
    let listing = String::from_utf8(run_ok(
        Command::new("isoinfo").arg("-f").arg("-i").arg(art.iso()),
    )?)?;
    assert!(
        listing.lines().any(|l| l.trim() == "/RESCUE/RESCUE.;1"),
        "isoinfo -f:\n{listing}"
    );
    let from_isoinfo = dir.path().join("from-isoinfo");
    std::fs::write(
        &from_isoinfo,
        run_ok(
            Command::new("isoinfo")
                .arg("-i")
                .arg(art.iso())
                .args(["-x", "/RESCUE/RESCUE.;1"]),
        )?,
    )?;
    assert_eq!(sha256_file(&from_isoinfo)?, sha, "isoinfo -x on the ISO");
    let from_xorriso = dir.path().join("from-xorriso");
    run_ok(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(art.iso())
            .args(["-extract", "/RESCUE/RESCUE"])
            .arg(&from_xorriso),
    )?;
    assert_eq!(
        sha256_file(&from_xorriso)?,
        sha,
        "xorriso -extract on the ISO"
    );
    runs_as_this_build(&from_xorriso, &version)?;

    Ok(())
}
