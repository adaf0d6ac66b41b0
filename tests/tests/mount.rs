//! `rescue mount` inside the rescue system: the `fuse` module is not loaded at boot, `mount` loads it,
//! serves a zstd acquisition of the disk in the background (the prompt comes back), a second
//! acquisition reads the mounted `image.raw` as its source, and its SHA-256 must equal the host's own
//! hash of the disk; `umount` unmounts and waits for the server to exit.

use std::time::Duration;

use tests::says;
use tests::{Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

#[test]
fn an_acquisition_mounts_inside_the_rescue_system() -> anyhow::Result<()> {
    let Some(art) = gate("an_acquisition_mounts_inside_the_rescue_system") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let disk = work.path().join("source.img");
    make_disk(&disk, 16 << 20, 5)?;
    let want = sha256_file(&disk)?;
    let mut vm = QemuBuilder::direct(&art, work.path())
        .disk(Disk::new(&disk, Bus::Virtio))
        .spawn()?;
    vm.wait_prompt(Duration::from_secs(120))?;
    let drivers = vm.run("drivers", Duration::from_secs(60))?;
    vm.check(
        !drivers
            .split_whitespace()
            .any(|w| w.trim_matches(',') == "fuse"),
        &format!("fuse is not loaded at boot:\n{drivers}"),
    )?;
    let out = vm.run(
        "acquire /dev/vda --out /tmp/acq --format zstd --window 1M",
        Duration::from_secs(300),
    )?;
    vm.check(
        !says(&out, "(exit status"),
        &format!("acquire succeeds:\n{out}"),
    )?;
    let out = vm.run(
        "mount /tmp/acq /tmp/disk --verify-windows",
        Duration::from_secs(120),
    )?;
    vm.check(
        says(&out, "mounted /tmp/acq on /tmp/disk/image.raw")
            && says(&out, "served in the background"),
        &format!("mount serves in the background and the prompt comes back:\n{out}"),
    )?;
    let out = vm.run(
        "acquire /tmp/disk/image.raw --out /tmp/again",
        Duration::from_secs(300),
    )?;
    vm.check(
        !says(&out, "(exit status"),
        &format!("acquiring the mounted image succeeds:\n{out}"),
    )?;
    let manifest = vm.run_json("manifest /tmp/again --json", Duration::from_secs(60))?;
    let out = vm.run("umount /tmp/disk", Duration::from_secs(120))?;
    vm.check(
        says(&out, "unmounted /tmp/disk; server process") && out.contains("exited"),
        &format!("umount waits for the server:\n{out}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(Duration::from_secs(60))?;
    assert_eq!(
        manifest["hashes"]["sha256"].as_str(),
        Some(want.as_str()),
        "the stream served inside the rescue system is the disk's"
    );
    assert_eq!(manifest["source"]["size_bytes"].as_u64(), Some(16 << 20));
    Ok(())
}
