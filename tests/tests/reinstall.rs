//! Verified reinstall inside the rescue system: (a) an installer ISO built at test time from Debian's
//! `debian-installer-12-netboot-amd64` with a GnuPG-signed SHA256SUMS beside it on a media disk —
//! `reinstall verify` proves it, `reinstall boot` kexecs its kernel and the Debian installer's first
//! screen appears on the serial console; (b) a golden image signed by a key embedded in the initramfs
//! (as `--trust-key` does) deployed onto a target disk (the interlock, a wrong serial and a too-small
//! disk refused first), checked byte for byte on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::{Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

const T: Duration = Duration::from_secs(180);

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output()?;
    anyhow::ensure!(
        o.status.success(),
        "{} failed: {}",
        tests::display(cmd),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A throw-away GnuPG home with one signing key.
struct Signer {
    home: tempfile::TempDir,
    fpr: String,
}

impl Signer {
    fn new(uid: &str) -> anyhow::Result<Self> {
        let home = tempfile::Builder::new().prefix("g").tempdir_in("/tmp")?;
        let mut s = Signer {
            home,
            fpr: String::new(),
        };
        s.gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"])?;
        let listing = s.gpg(&["--with-colons", "--list-keys", uid])?;
        s.fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .ok_or_else(|| anyhow::anyhow!("no fingerprint in {listing}"))?;
        Ok(s)
    }

    fn gpg(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--yes",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args))
    }

    /// Writes SHA256SUMS for `files` into `dir`, its armoured detached signature and the public key.
    fn sign_sums(&self, dir: &Path, files: &[&str]) -> anyhow::Result<()> {
        let mut sums = String::new();
        for f in files {
            sums.push_str(&format!("{}  {f}\n", sha256_file(&dir.join(f))?));
        }
        std::fs::write(dir.join("SHA256SUMS"), sums)?;
        let sums = dir.join("SHA256SUMS");
        let sig = dir.join("SHA256SUMS.sign");
        let key = dir.join("signer.asc");
        self.gpg(&[
            "--local-user",
            &self.fpr,
            "--armor",
            "--output",
            sig.to_str().unwrap_or_default(),
            "--detach-sign",
            sums.to_str().unwrap_or_default(),
        ])?;
        self.gpg(&[
            "--armor",
            "--output",
            key.to_str().unwrap_or_default(),
            "--export",
            &self.fpr,
        ])?;
        Ok(())
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// An ext4 image holding the files of `dir`.
fn ext4_from(dir: &Path, image: &Path, extra_mib: u64) -> anyhow::Result<()> {
    let mut size = 0u64;
    for e in std::fs::read_dir(dir)?.flatten() {
        size += e.metadata()?.len();
    }
    std::fs::File::create(image)?.set_len(size + (extra_mib << 20))?;
    run(Command::new("mkfs.ext4")
        .args(["-F", "-q", "-L", "MEDIA", "-d"])
        .arg(dir)
        .arg(image))?;
    Ok(())
}

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

#[test]
fn reinstall_boot_kexecs_the_verified_debian_installer() -> anyhow::Result<()> {
    let Some(art) = gate("reinstall_boot_kexecs_the_verified_debian_installer") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let deb = installer_deb()?;
    let unpacked = work.path().join("deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let images =
        unpacked.join("usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64");
    let iso_root = work.path().join("iso");
    std::fs::create_dir_all(iso_root.join("install.amd"))?;
    std::fs::copy(images.join("linux"), iso_root.join("install.amd/vmlinuz"))?;
    std::fs::copy(
        images.join("initrd.gz"),
        iso_root.join("install.amd/initrd.gz"),
    )?;
    let media_dir = work.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-R", "-J", "-V", "DEBIAN_12", "-o"])
        .arg(media_dir.join("debian-installer.iso"))
        .arg(&iso_root))?;
    let signer = Signer::new("Debian CD signing test key <cd@example.org>")?;
    signer.sign_sums(&media_dir, &["debian-installer.iso"])?;
    let media = work.path().join("media.img");
    ext4_from(&media_dir, &media, 16)?;

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
    ext4_from(&media_dir, &media, 16)?;
    let target = work.path().join("target.img");
    std::fs::File::create(&target)?.set_len(32 << 20)?;
    let small = work.path().join("small.img");
    std::fs::File::create(&small)?.set_len(8 << 20)?;

    let disk = |p: &Path, serial: &str| {
        let mut d = Disk::new(p, Bus::Virtio);
        d.serial = Some(serial.into());
        d
    };
    // Embed the signer's key the way `cargo xtask build --trust-key` does (/etc/rescue/trusted-keys/), as
    // an uncompressed cpio in front of the build's initramfs (the kernel unpacks concatenated archives).
    let extra = work.path().join("extra");
    std::fs::create_dir_all(extra.join("etc/rescue/trusted-keys"))?;
    std::fs::copy(
        media_dir.join("signer.asc"),
        extra.join("etc/rescue/trusted-keys/01-golden.asc"),
    )?;
    let mut child = Command::new("cpio")
        .current_dir(&extra)
        .args(["--quiet", "-o", "-H", "newc", "--owner", "0:0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("cpio stdin"))?;
        stdin.write_all(
            b"etc\netc/rescue\netc/rescue/trusted-keys\netc/rescue/trusted-keys/01-golden.asc\n",
        )?;
    }
    let cpio = child.wait_with_output()?;
    anyhow::ensure!(
        cpio.status.success(),
        "cpio: {}",
        String::from_utf8_lossy(&cpio.stderr)
    );
    let initrd = work.path().join("initrd-with-key");
    let mut bytes = cpio.stdout;
    bytes.extend(std::fs::read(art.initramfs())?);
    std::fs::write(&initrd, bytes)?;
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
        out.contains(&signer.fpr) && out.contains("Golden image builder <golden@example.org>"),
        &format!("the embedded key is listed:\n{out}"),
    )?;
    let out = vm.run("case new CASE-R --examiner tester", T)?;
    vm.check(out.contains("case CASE-R opened"), &out)?;
    // No --keyring: the key embedded in the initramfs is the trust anchor.
    let src = "golden.img --media /dev/vda --sums SHA256SUMS --sig SHA256SUMS.sign";
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm TARGET-0007"),
        T,
    )?;
    vm.check(
        out.contains("never acquired in this case") && out.contains("(exit status 1)"),
        &format!("the interlock wants a reason for a disk never acquired:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm 123456 --reason 'replacement disk'"),
        T,
    )?;
    vm.check(
        out.contains("has serial TARGET-0007") && out.contains("(exit status 1)"),
        &format!("a wrong serial is refused:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdc --confirm SMALL-0001 --reason 'too small'"),
        T,
    )?;
    vm.check(
        out.contains("is smaller than the image") && out.contains("(exit status 1)"),
        &format!("a target smaller than the image is refused:\n{out}"),
    )?;
    let out = vm.run(
        &format!("deploy {src} --target /dev/vdb --confirm T-0007 --reason 'replacement disk'"),
        Duration::from_secs(600),
    )?;
    vm.check(
        out.contains(&format!("signed by {}", signer.fpr))
            && out.contains(&format!("DEPLOYED and read back: sha256 {golden_sha}"))
            && out.contains("matches the verified checksum list"),
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
