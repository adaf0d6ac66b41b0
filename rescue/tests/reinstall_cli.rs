//! `rescue reinstall verify`, `reinstall keys`, `deploy` and `restore` through the real binary on a host,
//! with OpenPGP keys generated at test time by GnuPG (Debian package `gnupg`): signed, tampered,
//! wrongly signed, SHA-1-signed, expired-key and revoked-key checksum lists, in GNU, BSD-tag and
//! cleartext-signed form, armoured and binary; conflicting entries, malformed files and keyrings refused
//! in words; the apt chain (InRelease → Packages → .deb) on real Debian fixtures
//! (`tests/fixtures/debian`: bookworm-updates InRelease and Packages, debian-archive-keyring.gpg, one
//! .deb, as apt and `apt-get download` fetched them) and InRelease → installer SHA256SUMS → image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/root.rs"]
mod root;
use root::need_root;

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let o = self
            .cmd()
            .args(args)
            .output()
            .expect("gpg (package gnupg) runs");
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Generates a key and returns its fingerprint.
    fn key(&self, uid: &str, algo: &str, expire: &str, faked_time: Option<&str>) -> String {
        let mut args = Vec::new();
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--quick-gen-key", uid, algo, "sign", expire]);
        self.run(&args);
        let listing = self.run(&["--with-colons", "--list-keys", uid]);
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .expect("fingerprint")
    }

    fn export(&self, fpr: &str, out: &Path, armour: bool) {
        let mut args = vec!["--output", out.to_str().unwrap()];
        if armour {
            args.push("--armor");
        }
        args.extend(["--export", fpr]);
        self.run(&args);
    }

    fn sign(&self, fpr: &str, extra: &[&str], input: &Path, out: &Path) {
        let mut args = vec!["--local-user", fpr, "--output", out.to_str().unwrap()];
        args.extend(extra);
        args.push(input.to_str().unwrap());
        self.run(&args);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

fn rescue(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.args(args).env_remove("RESCUE_SYSTEM");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha512(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha512::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Fixture {
    gpg: Gpg,
    dir: tempfile::TempDir,
    good: String,
    other: String,
    image: PathBuf,
    sums: PathBuf,
    keyring: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture() -> Fixture {
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = gpg.key("Test Signer <signer@example.org>", "rsa2048", "never", None);
    let other = gpg.key("Someone Else <else@example.org>", "ed25519", "never", None);
    let image = d.join("debian-12-netinst.iso");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&image, &data).unwrap();
    let sums = d.join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!(
            "{}  other.iso\n{}  debian-12-netinst.iso\n",
            sha256(b"x"),
            sha256(&data)
        ),
    )
    .unwrap();
    let keyring = d.join("signer.asc");
    gpg.export(&good, &keyring, true);
    Fixture {
        gpg,
        dir,
        good,
        other,
        image,
        sums,
        keyring,
    }
}

#[test]
fn signed_lists_verify_and_every_kind_of_bad_input_is_refused() {
    let f = fixture();
    let d = f.dir.path();
    let sign = d.join("SHA256SUMS.sign");
    f.gpg
        .sign(&f.good, &["--armor", "--detach-sign"], &f.sums, &sign);

    // Debian style: armoured detached signature over a GNU list.
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "signed by {} (Test Signer <signer@example.org>), sha256 matches entry debian-12-netinst.iso",
            f.good
        )),
        "{}",
        text(&o)
    );

    // Ubuntu style: binary signature, binary keyring, JSON result.
    let gpgsig = d.join("SHA256SUMS.gpg");
    f.gpg.sign(&f.good, &["--detach-sign"], &f.sums, &gpgsig);
    let binkey = d.join("signer.gpg");
    f.gpg.export(&f.good, &binkey, false);
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&gpgsig),
            "--keyring",
            s(&binkey),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["proof"]["signer"]["fingerprint"], f.good.as_str());
    assert_eq!(v["proof"]["entry"]["algorithm"], "sha256");

    // Alma style: cleartext-signed BSD tag list with SHA-256 and SHA-512 entries.
    let data = std::fs::read(&f.image).unwrap();
    let plain = d.join("CHECKSUM.txt");
    std::fs::write(
        &plain,
        format!(
            "# debian-12-netinst.iso: {} bytes\nSHA256 (debian-12-netinst.iso) = {}\nSHA512 (debian-12-netinst.iso) = {}\n",
            data.len(),
            sha256(&data),
            sha512(&data)
        ),
    )
    .unwrap();
    let checksum = d.join("CHECKSUM");
    f.gpg.sign(&f.good, &["--clearsign"], &plain, &checksum);
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&checksum),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("sha512 matches entry debian-12-netinst.iso"),
        "{}",
        text(&o)
    );

    let refused = |args: &[&str], want: &str| {
        let o = rescue(args, &[]);
        assert_eq!(
            o.status.code(),
            Some(4),
            "{args:?} must fail with 4:\n{}",
            text(&o)
        );
        assert!(
            text(&o).contains(want),
            "{args:?}: wanted {want:?} in:\n{}",
            text(&o)
        );
        assert!(text(&o).contains("NOT VERIFIED"), "{}", text(&o));
    };

    // A tampered image: one byte.
    let tampered = d.join("tampered").join("debian-12-netinst.iso");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    let mut bad = data.clone();
    bad[123_456] ^= 1;
    std::fs::write(&tampered, &bad).unwrap();
    refused(
        &[
            "reinstall",
            "verify",
            s(&tampered),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        "does NOT match entry debian-12-netinst.iso",
    );

    // A tampered list under a good signature.
    let edited = d.join("edited").join("SHA256SUMS");
    std::fs::create_dir_all(edited.parent().unwrap()).unwrap();
    std::fs::write(
        &edited,
        std::fs::read_to_string(&f.sums)
            .unwrap()
            .replace(&sha256(b"x"), &sha256(b"y")),
    )
    .unwrap();
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&edited),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        "BAD signature",
    );

    // Signed by a key that is not trusted.
    let wrong = d.join("wrong.sign");
    f.gpg
        .sign(&f.other, &["--armor", "--detach-sign"], &f.sums, &wrong);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&wrong),
            "--keyring",
            s(&f.keyring),
        ],
        "not among the trusted keys",
    );

    // SHA-1 signature by the trusted key.
    let sha1 = d.join("sha1.sign");
    f.gpg.sign(
        &f.good,
        &["--digest-algo", "SHA1", "--armor", "--detach-sign"],
        &f.sums,
        &sha1,
    );
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sha1),
            "--keyring",
            s(&f.keyring),
        ],
        "SHA1",
    );

    // An expired key: made in 2020, valid one day, used while it was valid.
    let expired = f.gpg.key(
        "Expired Key <old@example.org>",
        "ed25519",
        "1d",
        Some("20200101T000000"),
    );
    let exp_sig = d.join("expired.sign");
    f.gpg.sign(
        &expired,
        &[
            "--faked-system-time",
            "20200101T010000",
            "--armor",
            "--detach-sign",
        ],
        &f.sums,
        &exp_sig,
    );
    let exp_key = d.join("expired.asc");
    f.gpg.export(&expired, &exp_key, true);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&exp_sig),
            "--keyring",
            s(&exp_key),
        ],
        "expired",
    );

    // A revoked key (GnuPG writes a revocation certificate for every new key).
    let revoked = f
        .gpg
        .key("Revoked Key <rev@example.org>", "ed25519", "never", None);
    let rev_sig = d.join("revoked.sign");
    f.gpg
        .sign(&revoked, &["--armor", "--detach-sign"], &f.sums, &rev_sig);
    let cert = f
        .gpg
        .home
        .path()
        .join("openpgp-revocs.d")
        .join(format!("{revoked}.rev"));
    let cert_text = std::fs::read_to_string(&cert)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let cert_file = d.join("rev.asc");
    std::fs::write(&cert_file, cert_text).unwrap();
    f.gpg.run(&["--import", s(&cert_file)]);
    let rev_key = d.join("revoked.asc");
    f.gpg.export(&revoked, &rev_key, true);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&rev_sig),
            "--keyring",
            s(&rev_key),
        ],
        "revoked",
    );
    let o = rescue(&["reinstall", "keys", "--keyring", s(&rev_key)], &[]);
    assert!(
        text(&o).contains("REVOKED, NOT USABLE: it was revoked by its owner"),
        "{}",
        text(&o)
    );

    // A list without the image's entry.
    let nolist = d.join("nolist").join("SHA256SUMS");
    std::fs::create_dir_all(nolist.parent().unwrap()).unwrap();
    std::fs::write(&nolist, format!("{}  other.iso\n", sha256(b"x"))).unwrap();
    let nolist_sig = d.join("nolist.sign");
    f.gpg
        .sign(&f.good, &["--armor", "--detach-sign"], &nolist, &nolist_sig);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&nolist),
            "--sig",
            s(&nolist_sig),
            "--keyring",
            s(&f.keyring),
        ],
        "no entry for debian-12-netinst.iso",
    );

    // An unsigned list is refused unless explicitly accepted, and then says so.
    refused(
        &["reinstall", "verify", s(&f.image), "--sums", s(&f.sums)],
        "is not signed",
    );
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--allow-unsigned",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("UNSIGNED list"), "{}", text(&o));

    // Embedded keys (as the build puts them in /etc/rescue/trusted-keys) are used without --keyring.
    let embedded = d.join("trusted-keys");
    std::fs::create_dir_all(&embedded).unwrap();
    std::fs::copy(&f.keyring, embedded.join("01-signer.asc")).unwrap();
    let o = rescue(
        &["reinstall", "keys"],
        &[("RESCUE_TRUSTED_KEYS", &embedded)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&f.good) && text(&o).contains("Test Signer"),
        "{}",
        text(&o)
    );
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
        ],
        &[("RESCUE_TRUSTED_KEYS", &embedded)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
        ],
        &[("RESCUE_TRUSTED_KEYS", &d.join("none"))],
    );
    assert!(text(&o).contains("no trusted keys"), "{}", text(&o));
}

#[test]
fn deploy_writes_a_verified_image_and_refuses_a_tampered_one() {
    let f = fixture();
    let d = f.dir.path();
    let sign = d.join("SHA256SUMS.sign");
    f.gpg
        .sign(&f.good, &["--armor", "--detach-sign"], &f.sums, &sign);
    let target = d.join("target.img");
    std::fs::write(&target, vec![0u8; 2_000_000]).unwrap();
    let o = rescue(
        &[
            "deploy",
            s(&f.image),
            "--target",
            s(&target),
            "--confirm",
            "x",
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("DEPLOYED and read back"), "{}", text(&o));
    assert!(
        text(&o).contains("matches the verified checksum list"),
        "{}",
        text(&o)
    );
    let data = std::fs::read(&f.image).unwrap();
    assert_eq!(&std::fs::read(&target).unwrap()[..data.len()], &data[..]);

    // Tampered image: refused before the target is touched.
    let tdir = d.join("t");
    std::fs::create_dir_all(&tdir).unwrap();
    let tampered = tdir.join("debian-12-netinst.iso");
    let mut bad = data.clone();
    bad[7] ^= 0x80;
    std::fs::write(&tampered, &bad).unwrap();
    let target2 = d.join("target2.img");
    std::fs::write(&target2, vec![0u8; 2_000_000]).unwrap();
    let o = rescue(
        &[
            "deploy",
            s(&tampered),
            "--target",
            s(&target2),
            "--confirm",
            "x",
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(
        std::fs::read(&target2).unwrap(),
        vec![0u8; 2_000_000],
        "target untouched"
    );

    // Target too small.
    let small = d.join("small.img");
    std::fs::write(&small, vec![0u8; 1000]).unwrap();
    let o = rescue(
        &[
            "deploy",
            s(&f.image),
            "--target",
            s(&small),
            "--confirm",
            "x",
            "--sums",
            s(&f.sums),
            "--sig",
            s(&sign),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is smaller than the image"),
        "{}",
        text(&o)
    );
}

#[test]
fn restore_cli_writes_the_manifest_and_resumes_identical_files() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("backup");
    std::fs::create_dir_all(src.join("srv")).unwrap();
    std::fs::write(src.join("srv/a.txt"), b"alpha").unwrap();
    std::fs::create_dir_all(src.join("etc/cron.d")).unwrap();
    std::fs::write(src.join("etc/cron.d/job"), b"* * * * * root /tmp/x").unwrap();
    let dst = d.path().join("root");
    std::fs::create_dir_all(&dst).unwrap();
    let report = d.path().join("report");
    let run = || {
        rescue(
            &["restore", s(&src), s(&dst), "--report-dir", s(&report)],
            &[],
        )
    };
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("HELD      etc/cron.d/job: cron entry"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("1 restored"), "{}", text(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("restore-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["schema"], "rescue.restore/1");
    assert_eq!(m["review"][0], "etc/cron.d/job");
    let o = run();
    assert!(text(&o).contains("1 identical"), "{}", text(&o));
    assert!(!dst.join("etc/cron.d/job").exists());
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn restore_into_a_full_target_stops_cleanly_and_a_rerun_resumes() {
    if !need_root("restore_into_a_full_target_stops_cleanly_and_a_rerun_resumes") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("backup");
    std::fs::create_dir_all(src.join("srv")).unwrap();
    for i in 0..6u8 {
        std::fs::write(src.join(format!("srv/f{i}.bin")), vec![i; 300_000]).unwrap();
    }
    let dst = d.path().join("root");
    std::fs::create_dir_all(&dst).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dst)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let _guard = Unmount(dst.clone());
    let report = d.path().join("report");
    let run = || {
        rescue(
            &["restore", s(&src), s(&dst), "--report-dir", s(&report)],
            &[],
        )
    };
    let o = run();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        text(&o).contains("the target filesystem is full"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("run the same command again"),
        "{}",
        text(&o)
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("restore-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["complete"], false);
    let first = m["counts"]["restored"].as_u64().unwrap_or(0);
    assert!((1..6).contains(&first), "some files fit: {m}");
    let temps: Vec<_> = std::fs::read_dir(dst.join("srv"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("rescue-restore"))
        .collect();
    assert!(temps.is_empty(), "no half-written temporary file is left");

    let grown = Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(&dst)
        .status()
        .unwrap();
    assert!(grown.success());
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{first} identical"))
            && text(&o).contains(&format!("{} restored", 6 - first)),
        "the rerun skips what was done and finishes the rest:\n{}",
        text(&o)
    );
    for i in 0..6u8 {
        assert_eq!(
            std::fs::read(dst.join(format!("srv/f{i}.bin"))).unwrap(),
            vec![i; 300_000]
        );
    }
}

#[test]
fn restore_from_a_disk_image_mounts_it_read_only_through_a_loop_device() {
    if !need_root("restore_from_a_disk_image_mounts_it_read_only_through_a_loop_device") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let files = d.path().join("files");
    std::fs::create_dir_all(files.join("srv")).unwrap();
    std::fs::write(files.join("srv/data.txt"), b"from the image").unwrap();
    let image = d.path().join("backup.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mk = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-d"])
        .arg(&files)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        mk.status.success(),
        "{}",
        String::from_utf8_lossy(&mk.stderr)
    );
    let before = std::fs::read(&image).unwrap();
    let dst = d.path().join("root");
    std::fs::create_dir_all(&dst).unwrap();
    let o = rescue(&["restore", s(&image), s(&dst), "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("mounted read-only"), "{}", text(&o));
    assert_eq!(
        std::fs::read(dst.join("srv/data.txt")).unwrap(),
        b"from the image"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the image is unchanged"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("restore-source-"),
        "the source is unmounted afterwards"
    );
}

#[test]
fn deploy_writes_back_a_zstd_acquisition_and_checks_it_against_its_manifest() {
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("disk.img");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i / 1000 % 251) as u8).collect();
    std::fs::write(&disk, &data).unwrap();
    let acq = d.path().join("disk-1");
    let o = rescue(
        &["acquire", s(&disk), "--out", s(&acq), "--format", "zstd"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let target = d.path().join("target.img");
    std::fs::write(&target, vec![0xFFu8; 4_000_000]).unwrap();
    let o = rescue(
        &[
            "deploy",
            s(&acq.join("image.raw.zst")),
            "--target",
            s(&target),
            "--confirm",
            "x",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("seekable zstd") && text(&o).contains("matches the acquisition manifest"),
        "{}",
        text(&o)
    );
    let t = std::fs::read(&target).unwrap();
    assert_eq!(&t[..data.len()], &data[..]);
    assert!(t[data.len()..].iter().all(|b| *b == 0xFF));
}

fn debian() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian")
}

const DEB: &str = "samba-ad-dc_4.17.12+dfsg-0+deb12u2_all.deb";

#[test]
fn the_apt_chain_proves_a_real_debian_package_and_refuses_changed_links() {
    let deb = debian();
    let inrelease = deb.join("bookworm-updates_InRelease");
    let packages = deb.join("bookworm-updates_main_binary-amd64_Packages");
    let keyring = deb.join("debian-archive-keyring.gpg");
    // The fixtures hang together by sha256sum's account too: Packages is listed in InRelease.
    let o = Command::new("sha256sum").arg(&packages).output().unwrap();
    let sum = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        std::fs::read_to_string(&inrelease)
            .unwrap()
            .contains(&format!("{sum}    32757 main/binary-amd64/Packages")),
        "fixture Packages ({sum}) is not the one InRelease lists"
    );

    // Every key of the archive keyring is listed as usable, with the expiry gpg shows.
    let o = rescue(&["reinstall", "keys", "--keyring", s(&keyring)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).lines().count(), 9, "{}", text(&o));
    assert!(
        text(&o).contains("B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8  Debian Archive Automatic Signing Key (12/bookworm) <ftpmaster@debian.org>  created 2023-01-21T11:44:21+00:00, expires 2031-01-19T11:44:21+00:00"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("NOT USABLE"), "{}", text(&o));

    let verify = |file: &Path, release: &Path, packages: &Path| {
        rescue(
            &[
                "reinstall",
                "verify",
                s(file),
                "--release",
                s(release),
                "--packages",
                s(packages),
                "--keyring",
                s(&keyring),
            ],
            &[],
        )
    };
    let o = verify(&deb.join(DEB), &inrelease, &packages);
    assert!(o.status.success(), "{}", text(&o));
    for want in [
        "signed by B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8 (Debian Archive Automatic Signing Key (12/bookworm)",
        "lists main/binary-amd64/Packages (sha256 matches)",
        "which lists samba-ad-dc 2:4.17.12+dfsg-0+deb12u2 all as pool/main/s/samba/samba-ad-dc_4.17.12+dfsg-0+deb12u2_all.deb",
        "policy: data signatures need SHA-256 or stronger",
    ] {
        assert!(text(&o).contains(want), "wanted {want:?} in:\n{}", text(&o));
    }

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refused = |o: Output, want: &str| {
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            text(&o).contains("NOT VERIFIED") && text(&o).contains(want),
            "wanted {want:?} in:\n{}",
            text(&o)
        );
    };
    // A changed .deb.
    let mut bytes = std::fs::read(deb.join(DEB)).unwrap();
    bytes[20_000] ^= 1;
    let changed = d.join(DEB);
    std::fs::write(&changed, &bytes).unwrap();
    refused(
        verify(&changed, &inrelease, &packages),
        "lists samba-ad-dc_4.17.12+dfsg-0+deb12u2_all.deb with 30344 bytes",
    );
    // A changed Packages index.
    let pk = std::fs::read_to_string(&packages).unwrap().replacen(
        "Priority: optional",
        "Priority: required",
        1,
    );
    let changed_pk = d.join("Packages");
    std::fs::write(&changed_pk, pk).unwrap();
    refused(
        verify(&deb.join(DEB), &inrelease, &changed_pk),
        "is not listed in",
    );
    // A compressed index is named as such, with what to do.
    let xz = d.join("Packages.xz");
    let o = Command::new("xz")
        .args(["-kc"])
        .arg(&packages)
        .output()
        .unwrap();
    std::fs::write(&xz, o.stdout).unwrap();
    refused(
        verify(&deb.join(DEB), &inrelease, &xz),
        "it is xz-compressed, and only the archive's own compressed file has the listed hash",
    );
    // Not signed by a trusted key.
    let f = fixture();
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&deb.join(DEB)),
            "--release",
            s(&inrelease),
            "--packages",
            s(&packages),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    refused(o, "not among the trusted keys");
}

#[test]
fn the_apt_chain_proves_an_installer_image_through_the_signed_sha256sums() {
    let f = fixture();
    let d = f.dir.path();
    let images = d.join("images");
    std::fs::create_dir_all(images.join("netboot/gtk")).unwrap();
    let mini: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(images.join("netboot/mini.iso"), &mini).unwrap();
    std::fs::write(images.join("netboot/gtk/mini.iso"), b"gtk").unwrap();
    let sums = images.join("SHA256SUMS");
    let sums_text = format!(
        "{}  ./netboot/gtk/mini.iso\n{}  ./netboot/mini.iso\n",
        sha256(b"gtk"),
        sha256(&mini)
    );
    std::fs::write(&sums, &sums_text).unwrap();
    let release = d.join("Release");
    std::fs::write(
        &release,
        format!(
            "Origin: Test\nSuite: stable\nCodename: test\nSHA256:\n {} {:>8} main/binary-amd64/Packages\n {} {:>8} main/installer-amd64/current/images/SHA256SUMS\n",
            sha256(b""),
            0,
            sha256(sums_text.as_bytes()),
            sums_text.len()
        ),
    )
    .unwrap();
    let inrelease = d.join("InRelease");
    f.gpg.sign(&f.good, &["--clearsign"], &release, &inrelease);
    let verify = |file: &Path, sums: &Path| {
        rescue(
            &[
                "reinstall",
                "verify",
                s(file),
                "--release",
                s(&inrelease),
                "--sums",
                s(sums),
                "--keyring",
                s(&f.keyring),
            ],
            &[],
        )
    };
    let o = verify(&images.join("netboot/mini.iso"), &sums);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "lists main/installer-amd64/current/images/SHA256SUMS (sha256 matches), whose entry netboot/mini.iso matches (sha256)"
        ),
        "{}",
        text(&o)
    );
    // The detached form: Release + Release.gpg.
    let release_gpg = d.join("Release.gpg");
    f.gpg.sign(
        &f.good,
        &["--armor", "--detach-sign"],
        &release,
        &release_gpg,
    );
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&images.join("netboot/mini.iso")),
            "--release",
            s(&release),
            "--sig",
            s(&release_gpg),
            "--sums",
            s(&sums),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));

    // A changed image, and a changed list.
    let bad = d.join("bad").join("netboot");
    std::fs::create_dir_all(&bad).unwrap();
    let mut b = mini.clone();
    b[7] ^= 4;
    std::fs::write(bad.join("mini.iso"), &b).unwrap();
    let o = verify(&bad.join("mini.iso"), &sums);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("does NOT match its entry"),
        "{}",
        text(&o)
    );
    let forged = d.join("SHA256SUMS.forged");
    std::fs::write(&forged, sums_text.replace(&sha256(&mini), &sha256(&b))).unwrap();
    let o = verify(&bad.join("mini.iso"), &forged);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("is not listed in"), "{}", text(&o));
    // InRelease carries its own signature: a --sig next to it is refused, not ignored.
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&images.join("netboot/mini.iso")),
            "--release",
            s(&inrelease),
            "--sig",
            s(&release_gpg),
            "--sums",
            s(&sums),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("drop --sig"), "{}", text(&o));
    // An unsigned Release is refused.
    let o = verify(&images.join("netboot/mini.iso"), &sums);
    assert!(o.status.success());
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&images.join("netboot/mini.iso")),
            "--release",
            s(&release),
            "--sums",
            s(&sums),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("is not signed"), "{}", text(&o));
}

#[test]
fn bad_lists_keys_and_signatures_are_refused_in_words_naming_the_file() {
    let f = fixture();
    let d = f.dir.path();
    let refused = |args: &[&str], wants: &[&str]| {
        let o = rescue(args, &[]);
        assert_eq!(o.status.code(), Some(4), "{args:?}:\n{}", text(&o));
        for want in wants {
            assert!(text(&o).contains(want), "wanted {want:?} in:\n{}", text(&o));
        }
        for internal in ["assertion", "input: [", "Error {"] {
            assert!(
                !text(&o).contains(internal),
                "parser internals:\n{}",
                text(&o)
            );
        }
    };
    // Two entries for the image with different hashes, under a good signature.
    let dup = d.join("dup").join("SHA256SUMS");
    std::fs::create_dir_all(dup.parent().unwrap()).unwrap();
    let data = std::fs::read(&f.image).unwrap();
    std::fs::write(
        &dup,
        format!(
            "{}  debian-12-netinst.iso\n{}  debian-12-netinst.iso\n",
            sha256(b"evil"),
            sha256(&data)
        ),
    )
    .unwrap();
    let dup_sig = d.join("dup.sign");
    f.gpg
        .sign(&f.good, &["--armor", "--detach-sign"], &dup, &dup_sig);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&dup),
            "--sig",
            s(&dup_sig),
            "--keyring",
            s(&f.keyring),
        ],
        &[
            s(&dup),
            "two different sha256 entries for debian-12-netinst.iso",
        ],
    );
    // A cleartext-signed list with --sig too.
    let clear = d.join("CHECKSUM");
    f.gpg.sign(&f.good, &["--clearsign"], &f.sums, &clear);
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&clear),
            "--sig",
            s(&dup_sig),
            "--keyring",
            s(&f.keyring),
        ],
        &["is cleartext-signed", "drop --sig"],
    );
    // A cleartext list cut before its signature.
    let cut = d.join("CUT");
    let t = std::fs::read_to_string(&clear).unwrap();
    std::fs::write(&cut, &t[..t.find("-----BEGIN PGP SIGNATURE").unwrap()]).unwrap();
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&cut),
            "--keyring",
            s(&f.keyring),
        ],
        &[s(&cut), "ends before the signature"],
    );
    // Garbage as keyring and as signature.
    let junk = d.join("junk.bin");
    std::fs::write(&junk, b"  d\x99\x01\x0d not a key at all, just bytes\n").unwrap();
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&dup_sig),
            "--keyring",
            s(&junk),
        ],
        &[s(&junk), "holds no OpenPGP public key"],
    );
    refused(
        &[
            "reinstall",
            "verify",
            s(&f.image),
            "--sums",
            s(&f.sums),
            "--sig",
            s(&junk),
            "--keyring",
            s(&f.keyring),
        ],
        &[s(&f.sums), "holds no OpenPGP signature"],
    );
}

#[test]
fn a_gzip_packages_index_is_proven_as_listed_then_read() {
    let f = fixture();
    let d = f.dir.path();
    let deb: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let deb_path = d.join("tool_1.0-1_amd64.deb");
    std::fs::write(&deb_path, &deb).unwrap();
    let packages = d.join("Packages");
    std::fs::write(
        &packages,
        format!(
            "Package: other\nVersion: 2\nArchitecture: all\nFilename: pool/main/o/other/other_2_all.deb\nSize: 1\nSHA256: {}\n\nPackage: tool\nVersion: 1.0-1\nArchitecture: amd64\nFilename: pool/main/t/tool/tool_1.0-1_amd64.deb\nSize: {}\nSHA256: {}\n",
            sha256(b"x"),
            deb.len(),
            sha256(&deb)
        ),
    )
    .unwrap();
    // gzip (an independent tool) makes the index the Release lists.
    let st = Command::new("gzip")
        .args(["-n9k"])
        .arg(&packages)
        .status()
        .unwrap();
    assert!(st.success());
    let gz = d.join("Packages.gz");
    let gz_bytes = std::fs::read(&gz).unwrap();
    let release = d.join("Release");
    std::fs::write(
        &release,
        format!(
            "Suite: test\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
            sha256(&gz_bytes),
            gz_bytes.len()
        ),
    )
    .unwrap();
    let inrelease = d.join("InRelease");
    f.gpg.sign(&f.good, &["--clearsign"], &release, &inrelease);
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&deb_path),
            "--release",
            s(&inrelease),
            "--packages",
            s(&gz),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "lists main/binary-amd64/Packages.gz (sha256 matches), which lists tool 1.0-1 amd64 as pool/main/t/tool/tool_1.0-1_amd64.deb"
        ),
        "{}",
        text(&o)
    );
    // The uncompressed index is not what this Release lists.
    let o = rescue(
        &[
            "reinstall",
            "verify",
            s(&deb_path),
            "--release",
            s(&inrelease),
            "--packages",
            s(&packages),
            "--keyring",
            s(&f.keyring),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("is not listed in"), "{}", text(&o));
}
