//! Acquisition inside the rescue system, end to end: a disk whose reads fail at chosen sectors (QEMU's
//! blkdebug driver) is imaged from the `rescue> ` prompt into a RAM directory; the manifest printed on the
//! console must list exactly the injected sectors as unreadable, and its hashes must equal the host's
//! own hash of the source with those sectors zeroed.

use std::time::Duration;

use sha2::Digest;
use tests::says;
use tests::{Boot, Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

#[test]
fn bad_sectors_are_zero_filled_and_listed_exactly() -> anyhow::Result<()> {
    let Some(art) = gate("bad_sectors_are_zero_filled_and_listed_exactly") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let disk = work.path().join("failing.img");
    let size: u64 = 8 << 20;
    make_disk(&disk, size, 3)?;
    let before = sha256_file(&disk)?;
    // Two adjacent sectors, one alone, and the very last sector of the disk.
    let bad: Vec<u64> = vec![100, 101, 5000, size / 512 - 1];
    let mut d = Disk::new(&disk, Bus::Virtio);
    d.fail_reads = bad.clone();
    d.serial = Some("FAILING1".to_owned());
    let mut b = QemuBuilder::direct(&art, work.path()).disk(d);
    // Kernel I/O error messages would interleave with the prompt's output.
    if let Boot::Direct { cmdline, .. } = &mut b.boot {
        cmdline.push_str(" loglevel=1");
    }
    let mut vm = b.spawn()?;
    vm.wait_prompt(Duration::from_secs(120))?;
    let out = vm.run(
        "acquire /dev/vda --out /tmp/evidence --case CASE-7 --evidence-id disk-1 --hash sha256,md5",
        Duration::from_secs(300),
    )?;
    vm.check(
        says(&out, "(exit status 3)"),
        &format!("acquire exits 3 (complete with unreadable sectors):\n{out}"),
    )?;
    let manifest = vm.run_json("manifest /tmp/evidence --json", Duration::from_secs(60))?;
    let verify = vm.run("verify /tmp/evidence", Duration::from_secs(300))?;
    vm.check(
        !says(&verify, "(exit status"),
        &format!("verify passes inside the rescue system:\n{verify}"),
    )?;
    vm.send_line("poweroff")?;
    vm.wait_exit(Duration::from_secs(60))?;

    assert_eq!(manifest["complete"], true, "{manifest}");
    assert_eq!(manifest["case"]["case_id"], "CASE-7");
    assert_eq!(manifest["source"]["serial"], "FAILING1");
    assert_eq!(manifest["source"]["size_bytes"].as_u64(), Some(size));
    let unreadable: Vec<(u64, u64)> = manifest["unreadable"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["offset"].as_u64().unwrap_or(0),
                        e["length"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Adjacent sectors merge into one range.
    let expected = vec![(100 * 512, 1024), (5000 * 512, 512), (size - 512, 512)];
    assert_eq!(
        unreadable, expected,
        "unreadable ranges are exactly the injected sectors"
    );

    let mut data = std::fs::read(&disk)?;
    for s in &bad {
        let at = (*s * 512) as usize;
        data[at..at + 512].fill(0);
    }
    let sha: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        manifest["hashes"]["sha256"].as_str(),
        Some(sha.as_str()),
        "sha256 of the source with bad sectors zeroed"
    );
    let zeroed = work.path().join("zeroed.img");
    std::fs::write(&zeroed, &data)?;
    let md5 = std::process::Command::new("md5sum").arg(&zeroed).output()?;
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        manifest["hashes"]["md5"].as_str(),
        Some(md5.as_str()),
        "md5 of the source with bad sectors zeroed"
    );
    assert_eq!(sha256_file(&disk)?, before, "the source disk changed");
    Ok(())
}
