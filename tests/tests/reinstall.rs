//! Verified reinstall inside the rescue system: (a) an installer ISO built at test time from Debian's
//! `debian-installer-12-netboot-amd64` with a GnuPG-signed SHA256SUMS beside it on a media disk —
//! `reinstall verify` proves it, `reinstall boot` kexecs its kernel and the Debian installer's first
//! screen appears on the serial console; (b) a golden image signed by a key embedded in the initramfs
//! (as `--trust-key` does) deployed onto a target disk (the interlock, a wrong serial and a too-small
//! disk refused first), checked byte for byte on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::fixtures::{Signer, ext4_from, initrd_with_trusted_key, run_tool as run};
use tests::says;
use tests::{Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

const T: Duration = Duration::from_secs(180);

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// Debian's netboot installer package, downloaded once into target/cache/debian-installer.
fn installer_deb() -> anyhow::Result<PathBuf> {
    let cache = project_root().join("target/cache/debian-installer");
    std::fs::create_dir_all(&cache)?;
    let find = || {
        std::fs::read_dir(&cache).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy()
                        .starts_with("debian-installer-12-netboot-amd64_")
                })
            })
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    run(Command::new("apt-get")
        .current_dir(&cache)
        .args(["download", "debian-installer-12-netboot-amd64"]))?;
    find().ok_or_else(|| anyhow::anyhow!("apt-get download left no .deb in {}", cache.display()))
}

/// Debian's netboot installer kernel and initrd laid out as on a Debian CD (`/install.amd/`), in `work/iso`.
fn installer_tree(work: &Path) -> anyhow::Result<PathBuf> {
    let deb = installer_deb()?;
    let unpacked = work.join("deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let images =
        unpacked.join("usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64");
    let iso_root = work.join("iso");
    std::fs::create_dir_all(iso_root.join("install.amd"))?;
    std::fs::copy(images.join("linux"), iso_root.join("install.amd/vmlinuz"))?;
    std::fs::copy(
        images.join("initrd.gz"),
        iso_root.join("install.amd/initrd.gz"),
    )?;
    Ok(iso_root)
}

/// An ISO 9660 image (Rock Ridge + Joliet) of `root`.
fn make_iso(root: &Path, iso: &Path, volume: &str) -> anyhow::Result<()> {
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-R", "-J", "-V", volume, "-o"])
        .arg(iso)
        .arg(root))?;
    Ok(())
}

#[test]
fn reinstall_boot_kexecs_the_verified_debian_installer() -> anyhow::Result<()> {
    let Some(art) = gate("reinstall_boot_kexecs_the_verified_debian_installer") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let iso_root = installer_tree(work.path())?;
    let media_dir = work.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    make_iso(
        &iso_root,
        &media_dir.join("debian-installer.iso"),
        "DEBIAN_12",
    )?;
    let signer = Signer::new("Debian CD signing test key <cd@example.org>")?;
    signer.sign_sums(&media_dir, &["debian-installer.iso"])?;
    let media = work.path().join("media.img");
    ext4_from(&media_dir, &media, 16, "MEDIA")?;

    let mut d = Disk::new(&media, Bus::Virtio);
    d.serial = Some("MEDIA-1".into());
    let mut b = QemuBuilder::direct(&art, work.path()).disk(d);
    b.memory_mib = 2048;
    let mut vm = b.spawn()?;
    vm.wait_prompt(T)?;
    let args = "debian-installer.iso --media /dev/vda --sums SHA256SUMS --sig SHA256SUMS.sign --keyring signer.asc";
    let out = vm.run(
        &format!("reinstall verify {args}"),
        Duration::from_secs(300),
    )?;
    vm.check(
        out.contains(&format!(
            "signed by {} (Debian CD signing test key <cd@example.org>), sha256 matches entry debian-installer.iso",
            signer.fpr
        )),
        &format!("verify proves signer and hash:\n{out}"),
    )?;
    vm.send_line(&format!("reinstall boot {args} --append priority=high"))?;
    vm.expect(
        "installer kernel /install.amd/vmlinuz",
        Duration::from_secs(300),
    )?;
    vm.expect("console=ttyS0,115200n8 priority=high", T)?;
    vm.expect("booting the installer now", T)?;
    // The Debian installer's first screen (language selection), drawn on the serial console.
    vm.expect("Select a language", Duration::from_secs(900))?;
    Ok(())
}

#[test]
fn deploy_writes_a_verified_golden_image_to_the_target_disk() -> anyhow::Result<()> {
    let Some(art) = gate("deploy_writes_a_verified_golden_image_to_the_target_disk") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let media_dir = work.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    let golden = media_dir.join("golden.img");
    let golden_len: u64 = 24 << 20;
    make_disk(&golden, golden_len, 42)?;
    let golden_sha = sha256_file(&golden)?;
    let signer = Signer::new("Golden image builder <golden@example.org>")?;
    signer.sign_sums(&media_dir, &["golden.img"])?;
    let media = work.path().join("media.img");
    ext4_from(&media_dir, &media, 16, "MEDIA")?;
    let target = work.path().join("target.img");
    std::fs::File::create(&target)?.set_len(32 << 20)?;
    let small = work.path().join("small.img");
    std::fs::File::create(&small)?.set_len(8 << 20)?;

    let disk = |p: &Path, serial: &str| {
        let mut d = Disk::new(p, Bus::Virtio);
        d.serial = Some(serial.into());
        d
    };
    // Embed the signer's key the way `cargo xtask build --trust-key` does.
    let initrd =
        initrd_with_trusted_key(&art, &media_dir.join("signer.asc"), "golden", work.path())?;
    let mut b = QemuBuilder::direct(&art, work.path())
        .disk(disk(&media, "MEDIA-2"))
        .disk(disk(&target, "TARGET-0007"))
        .disk(disk(&small, "SMALL-0001"));
    if let tests::Boot::Direct { initrd: i, .. } = &mut b.boot {
        *i = initrd;
    }
    let mut vm = b.spawn()?;
    vm.wait_prompt(T)?;
    let out = vm.run("reinstall keys", T)?;
    vm.check(
        out.contains(&signer.fpr) && says(&out, "Golden image builder <golden@example.org>"),
        &format!("the embedded key is listed:\n{out}"),
    )?;
    let out = vm.run("case new CASE-R --examiner tester", T)?;
    vm.check(says(&out, "case CASE-R opened"), &out)?;
    // No --keyring: the key embedded in the initramfs is the trust anchor.
    let src = "golden.img --media /dev/vda --sums SHA256SUMS --sig SHA256SUMS.sign";
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm TARGET-0007"),
        T,
    )?;
    vm.check(
        says(&out, "never acquired in this case") && says(&out, "(exit status 1)"),
        &format!("the interlock wants a reason for a disk never acquired:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm 123456 --reason 'replacement disk'"),
        T,
    )?;
    vm.check(
        says(&out, "has serial TARGET-0007") && says(&out, "(exit status 1)"),
        &format!("a wrong serial is refused:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdc --confirm SMALL-0001 --reason 'too small'"),
        T,
    )?;
    vm.check(
        says(&out, "is smaller than the image") && says(&out, "(exit status 1)"),
        &format!("a target smaller than the image is refused:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm T-0007 --reason 'replacement disk'"),
        Duration::from_secs(600),
    )?;
    vm.check(
        out.contains(&format!("signed by {}", signer.fpr))
            && out.contains(&format!("DEPLOYED and read back: sha256 {golden_sha}"))
            && says(&out, "matches the verified checksum list"),
        &format!("deployed and read back:\n{out}"),
    )?;
    let disks = vm.run_json("devices --json", T)?;
    let ro = |name: &str| {
        disks
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or_default()["read_only"]
            .clone()
    };
    vm.check(
        ro("vda") == true && ro("vdc") == true && ro("vdb") == false,
        &format!("only the deploy target was unlocked: {disks}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(Duration::from_secs(60))?;

    let bytes = std::fs::read(&target)?;
    let head = &bytes[..golden_len as usize];
    use sha2::Digest;
    let got: String = sha2::Sha256::digest(head)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, golden_sha, "the target starts with the golden image");
    assert!(
        bytes[golden_len as usize..].iter().all(|b| *b == 0),
        "nothing written past the image"
    );
    assert!(
        std::fs::read(&small)?.iter().all(|b| *b == 0),
        "the refused small disk is untouched"
    );
    Ok(())
}

/// Under Secure Boot the kernel is locked down and `kexec_file_load` takes only kernels signed by a key
/// it trusts. An installer ISO whose checksum list is authentic but whose kernel carries no valid
/// Secure Boot signature (one byte of the signed kernel changed, as in a rebuilt or tampered kernel) is
/// refused with an error that says why, and the rescue system stays up; Debian's signed installer
/// kernel is then accepted and its first screen appears. Booted from rescue-usb.img through shim and
/// GRUB with OVMF's Secure Boot enforced.
#[test]
fn under_secure_boot_kexec_refuses_an_unsigned_installer_kernel_and_boots_a_signed_one()
-> anyhow::Result<()> {
    let Some(art) =
        gate("under_secure_boot_kexec_refuses_an_unsigned_installer_kernel_and_boots_a_signed_one")
    else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let iso_root = installer_tree(work.path())?;
    let media_dir = work.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    make_iso(&iso_root, &media_dir.join("signed.iso"), "DEBIAN_12")?;
    let kernel = iso_root.join("install.amd/vmlinuz");
    let mut bytes = std::fs::read(&kernel)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&kernel, bytes)?;
    make_iso(&iso_root, &media_dir.join("unsigned.iso"), "CUSTOM_12")?;
    let signer = Signer::new("Golden installer builder <build@example.org>")?;
    signer.sign_sums(&media_dir, &["signed.iso", "unsigned.iso"])?;
    let media = work.path().join("media.img");
    ext4_from(&media_dir, &media, 16, "MEDIA")?;

    let usb = work.path().join("rescue-usb.img");
    std::fs::copy(art.usb_image(), &usb)?;
    let mut d = Disk::new(&media, Bus::Virtio);
    d.serial = Some("MEDIA-3".into());
    let mut b = QemuBuilder::new(tests::Boot::UsbImage(usb), work.path())
        .firmware(tests::Firmware::OvmfSecureBoot)
        .disk(d);
    b.memory_mib = 2048;
    let mut vm = b.spawn()?;
    let banner = vm.wait_prompt(Duration::from_secs(600))?;
    vm.check(
        says(&banner, "Secure Boot enabled"),
        &format!("booted with Secure Boot enforced:\n{banner}"),
    )?;
    let sums = "--media /dev/vda --sums SHA256SUMS --sig SHA256SUMS.sign --keyring signer.asc";
    let out = vm.run(
        &format!("reinstall boot unsigned.iso {sums}"),
        Duration::from_secs(600),
    )?;
    vm.check(
        says(&out, "sha256 matches entry unsigned.iso")
            && (says(&out, "signature was rejected") || says(&out, "locked down"))
            && says(&out, "(exit status")
            && !says(&out, "booting the installer now"),
        &format!("the unsigned kernel is refused, saying why:\n{out}"),
    )?;
    let out = vm.run("status", T)?;
    vm.check(
        says(&out, "Secure Boot enabled"),
        &format!("the rescue system is still running:\n{out}"),
    )?;
    vm.send_line(&format!("reinstall boot signed.iso {sums}"))?;
    vm.expect("booting the installer now", Duration::from_secs(600))?;
    vm.expect("Select a language", Duration::from_secs(900))?;
    Ok(())
}
