//! rescue's OpenPGP verdicts next to GnuPG's `gpgv` on the same files. Keys and signatures are made
//! at test time by `gpg` in a temporary GNUPGHOME (`--faked-system-time` for expiry cases); `gpgv` runs
//! on every case; every case where the two disagree carries the policy that explains it. The table is
//! also written to `docs/gpgv-comparison.md` and the README (checked here; `RESCUE_UPDATE_DOCS=1`
//! rewrites both).

use std::path::{Path, PathBuf};
use std::process::Command;

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let home = tempfile::Builder::new()
            .prefix("gv")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>) -> String {
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
        c.args(args);
        let o = if let Some(input) = stdin {
            use std::io::Write;
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().expect("gpg (package gnupg) runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        } else {
            c.output().expect("gpg (package gnupg) runs")
        };
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_with(args, None)
    }

    /// Fingerprints of the key with this uid: primary first, then subkeys.
    fn fprs(&self, uid: &str) -> Vec<String> {
        self.run(&["--with-colons", "--list-keys", uid])
            .lines()
            .filter_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .collect()
    }

    fn key(&self, uid: &str, algo: &str, usage: &str, expire: &str, at: Option<&str>) -> String {
        let mut args = Vec::new();
        if let Some(t) = at {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--quick-gen-key", uid, algo, usage, expire]);
        self.run(&args);
        self.fprs(uid)[0].clone()
    }

    fn subkey(
        &self,
        primary: &str,
        uid: &str,
        algo: &str,
        expire: &str,
        at: Option<&str>,
    ) -> String {
        let mut args = Vec::new();
        if let Some(t) = at {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--quick-add-key", primary, algo, "sign", expire]);
        self.run(&args);
        self.fprs(uid).last().unwrap().clone()
    }

    /// Binary export of these keys into one keyring file (gpgv reads binary keyrings only).
    fn export(&self, fprs: &[&str], out: &Path) {
        let mut args = vec!["--output", out.to_str().unwrap(), "--export"];
        args.extend(fprs);
        self.run(&args);
    }

    /// Signs `input` into `out` with the exact (sub)keys given (`FPR!`).
    fn sign(&self, signers: &[&str], extra: &[&str], input: &Path, out: &Path) {
        let exact: Vec<String> = signers.iter().map(|s| format!("{s}!")).collect();
        let mut args: Vec<&str> = Vec::new();
        for e in &exact {
            args.extend(["--local-user", e.as_str()]);
        }
        args.extend(["--output", out.to_str().unwrap()]);
        args.extend(extra);
        args.push(input.to_str().unwrap());
        self.run(&args);
    }

    fn revoke_key(&self, fpr: &str) {
        let cert = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = std::fs::read_to_string(&cert)
            .unwrap()
            .replace(":-----BEGIN", "-----BEGIN");
        let file = self.home.path().join("rev.asc");
        std::fs::write(&file, text).unwrap();
        self.run(&["--import", file.to_str().unwrap()]);
    }

    fn revoke_subkey(&self, primary: &str) {
        self.run_with(
            &["--command-fd", "0", "--edit-key", primary],
            Some("key 1\nrevkey\ny\n0\n\ny\nsave\n"),
        );
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

/// gpgv's verdict: accepted (exit 0) or not, and its status keyword(s).
fn gpgv(keyring: &Path, sig: Option<&Path>, data: &Path) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new("gpgv");
    c.env("GNUPGHOME", home.path())
        .args(["--status-fd", "1", "--keyring"])
        .arg(keyring);
    if let Some(s) = sig {
        c.arg(s);
    }
    let o = c.arg(data).output().expect("gpgv (package gpgv) runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let status: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|k| {
            matches!(
                *k,
                "GOODSIG" | "EXPKEYSIG" | "REVKEYSIG" | "BADSIG" | "ERRSIG" | "EXPSIG" | "NODATA"
            )
        })
        .collect();
    (o.status.success(), status.join(" "))
}

/// rescue's verdict (exit 0, or 4 = not verified) and its output.
fn rescue(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        matches!(o.status.code(), Some(0 | 4)),
        "rescue {args:?} must end verified (0) or not verified (4):\n{text}"
    );
    assert!(
        !text.contains("assertion") && !text.contains("input: ["),
        "parser internals reached the user: {text}"
    );
    (o.status.code() == Some(0), text)
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// OpenPGP packets of a binary export as (tag, whole packet bytes); old and new header formats.
fn packets(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let ctb = bytes[i];
        assert!(ctb & 0x80 != 0, "not an OpenPGP packet at {i}");
        let (tag, hdr, len) = if ctb & 0x40 == 0 {
            let tag = (ctb >> 2) & 0x0f;
            match ctb & 3 {
                0 => (tag, 2, bytes[i + 1] as usize),
                1 => (
                    tag,
                    3,
                    u16::from_be_bytes([bytes[i + 1], bytes[i + 2]]) as usize,
                ),
                2 => (
                    tag,
                    5,
                    u32::from_be_bytes(bytes[i + 1..i + 5].try_into().unwrap()) as usize,
                ),
                _ => panic!("indeterminate length in a key export"),
            }
        } else {
            let tag = ctb & 0x3f;
            let o1 = bytes[i + 1] as usize;
            match o1 {
                0..=191 => (tag, 2, o1),
                192..=223 => (tag, 3, ((o1 - 192) << 8) + bytes[i + 2] as usize + 192),
                255 => (
                    tag,
                    6,
                    u32::from_be_bytes(bytes[i + 2..i + 6].try_into().unwrap()) as usize,
                ),
                _ => panic!("partial length in a key export"),
            }
        };
        out.push((tag, bytes[i..i + hdr + len].to_vec()));
        i += hdr + len;
    }
    out
}

/// `host`'s export with `donor`'s subkeys (and their bindings, made by `donor`) attached: subkeys
/// whose binding does not verify for `host`.
fn graft_subkeys(host: &Path, donor: &Path, out: &Path) {
    let mut bytes = std::fs::read(host).unwrap();
    let mut in_subkey = false;
    for (tag, p) in packets(&std::fs::read(donor).unwrap()) {
        in_subkey = match tag {
            14 => true,
            2 => in_subkey,
            _ => false,
        };
        if in_subkey {
            bytes.extend(p);
        }
    }
    std::fs::write(out, bytes).unwrap();
}

struct Case {
    name: &'static str,
    /// gpgv input: the signed file and its detached signature (none for cleartext).
    data: PathBuf,
    sig: Option<PathBuf>,
    keyring: PathBuf,
    /// rescue input: the image the list names, and extra arguments.
    image: PathBuf,
    rescue_extra: Vec<String>,
    gpgv: bool,
    rescue: bool,
    /// What rescue's output must contain.
    says: &'static str,
    /// Why rescue and gpgv differ (empty when they agree).
    policy: &'static str,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian")
}

#[test]
fn rescue_agrees_with_gpgv_or_says_which_policy_differs() {
    let g = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Keys.
    let rsa3072 = g.key(
        "RSA 3072 <r3@example.org>",
        "rsa3072",
        "sign",
        "never",
        None,
    );
    let rsa4096 = g.key(
        "RSA 4096 <r4@example.org>",
        "rsa4096",
        "cert",
        "never",
        None,
    );
    let rsa4096_sub = g.subkey(&rsa4096, "r4@example.org", "rsa4096", "never", None);
    let ed = g.key("Ed25519 <ed@example.org>", "ed25519", "sign", "never", None);
    let stranger = g.key(
        "Stranger <st@example.org>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    // Third-party certifications on the RSA 3072 key, by two keys the keyring does not hold.
    for certifier in [&stranger, &ed] {
        g.run(&["--default-key", certifier, "--quick-sign-key", &rsa3072]);
    }
    let t2020 = "20200101T000000";
    let expired = g.key(
        "Expired <ex@example.org>",
        "ed25519",
        "sign",
        "1d",
        Some(t2020),
    );
    let revoked = g.key("Revoked <rv@example.org>", "ed25519", "sign", "never", None);
    let subexp = g.key(
        "Sub Expired <se@example.org>",
        "ed25519",
        "cert",
        "never",
        Some(t2020),
    );
    let subexp_sub = g.subkey(&subexp, "se@example.org", "ed25519", "1d", Some(t2020));
    let subrev = g.key(
        "Sub Revoked <sr@example.org>",
        "ed25519",
        "cert",
        "never",
        None,
    );
    let subrev_sub = g.subkey(&subrev, "sr@example.org", "ed25519", "never", None);
    // Two bindings: the older (2020) gives ten years, the newer (2021) one day, long past.
    let twob = g.key(
        "Two Bindings <tb@example.org>",
        "ed25519",
        "cert",
        "never",
        Some(t2020),
    );
    let twob_sub = g.subkey(&twob, "tb@example.org", "ed25519", "10y", Some(t2020));

    // Signed data: a checksum list naming an image.
    let image = d.join("installer.iso");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    let list_text = format!(
        "{}  installer.iso\n{}  other.iso\n",
        sha256(&bytes),
        sha256(b"o")
    );
    let list = d.join("SHA256SUMS");
    std::fs::write(&list, &list_text).unwrap();

    let sign = |signers: &[&str], extra: &[&str], name: &str| -> PathBuf {
        let out = d.join(name);
        g.sign(signers, extra, &list, &out);
        out
    };
    let asc = ["--armor", "--detach-sign"];
    let bin = ["--detach-sign"];
    let clear = ["--clearsign"];
    let sig_rsa3072 = sign(&[&rsa3072], &asc, "rsa3072.asc");
    let sig_rsa4096 = sign(&[&rsa4096_sub], &bin, "rsa4096.sig");
    let sig_ed = sign(&[&ed], &asc, "ed.asc");
    let sig_sha1 = sign(
        &[&ed],
        &["--digest-algo", "SHA1", "--armor", "--detach-sign"],
        "sha1.asc",
    );
    let sig_sha512 = sign(
        &[&rsa3072],
        &["--digest-algo", "SHA512", "--detach-sign"],
        "sha512.sig",
    );
    let sig_both = sign(&[&rsa3072, &ed], &asc, "both.asc");
    let sig_stranger_and_ed = sign(&[&stranger, &ed], &asc, "stranger-ed.asc");
    let sig_stranger = sign(&[&stranger], &asc, "stranger.asc");
    let sig_revoked = sign(&[&revoked], &asc, "revoked.asc");
    g.revoke_key(&revoked);
    let at = |t: &'static str| -> [&'static str; 2] { ["--faked-system-time", t] };
    let in2020 = at("20200101T120000");
    let sig_expired = sign(
        &[&expired],
        &[&in2020[..], &asc[..]].concat(),
        "expired.asc",
    );
    let sig_subexp = sign(
        &[&subexp_sub],
        &[&in2020[..], &asc[..]].concat(),
        "subexp.asc",
    );
    let sig_twob = sign(&[&twob_sub], &[&in2020[..], &asc[..]].concat(), "twob.asc");
    g.run(&[
        "--faked-system-time",
        "20210101T000000",
        "--quick-set-expire",
        &twob,
        "1d",
        &twob_sub,
    ]);
    let sig_subrev = sign(&[&subrev_sub], &asc, "subrev.asc");
    g.revoke_subkey(&subrev);

    // Cleartext-signed lists, and variants of their framing.
    let clear_ed = sign(&[&ed], &clear, "clear-ed.txt");
    let clear_rsa = sign(&[&rsa4096_sub], &clear, "clear-rsa.txt");
    let clear_text = std::fs::read_to_string(&clear_ed).unwrap();
    let variant = |name: &str, text: String| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let clear_leading = variant("clear-leading.txt", format!("\n{clear_text}"));
    let clear_trailing = variant("clear-trailing.txt", format!("{clear_text}\n"));
    let clear_before = variant(
        "clear-before.txt",
        format!("{}  installer.iso\n{clear_text}", sha256(b"forged")),
    );
    let clear_tampered = variant(
        "clear-tampered.txt",
        clear_text.replace(&sha256(b"o"), &sha256(b"p")),
    );

    // A tampered list (detached signature over the original) and a tampered image.
    let tampered_dir = d.join("tampered");
    std::fs::create_dir_all(&tampered_dir).unwrap();
    let tampered_list = tampered_dir.join("SHA256SUMS");
    std::fs::write(
        &tampered_list,
        list_text.replace(&sha256(b"o"), &sha256(b"p")),
    )
    .unwrap();
    let tampered_image = tampered_dir.join("installer.iso");
    let mut bad = bytes.clone();
    bad[1000] ^= 0x80;
    std::fs::write(&tampered_image, &bad).unwrap();

    // Keyrings (binary, as gpgv needs).
    let ring = d.join("trusted.gpg");
    g.export(
        &[
            &rsa3072, &rsa4096, &ed, &expired, &revoked, &subexp, &subrev, &twob,
        ],
        &ring,
    );

    // A key with a subkey whose binding is not its own (grafted from another key).
    let ed_only = d.join("ed.gpg");
    g.export(&[&ed], &ed_only);
    let r4_only = d.join("r4.gpg");
    g.export(&[&rsa4096], &r4_only);
    let grafted = d.join("grafted.gpg");
    graft_subkeys(&ed_only, &r4_only, &grafted);

    // Debian's real data.
    let deb = fixtures();
    let deb_ring = deb.join("debian-archive-keyring.gpg");
    let inrelease = deb.join("bookworm-updates_InRelease");
    let packages = deb.join("bookworm-updates_main_binary-amd64_Packages");
    let inrelease_tampered = variant(
        "InRelease-tampered",
        std::fs::read_to_string(&inrelease)
            .unwrap()
            .replacen("Suite: ", "Suite: x", 1),
    );

    let detached = |name, sig: &Path, gpgv, rescue, says, policy| Case {
        name,
        data: list.clone(),
        sig: Some(sig.to_owned()),
        keyring: ring.clone(),
        image: image.clone(),
        rescue_extra: vec![
            "--sums".into(),
            s(&list).into(),
            "--sig".into(),
            s(sig).into(),
        ],
        gpgv,
        rescue,
        says,
        policy,
    };
    let cleartext = |name, file: &Path, gpgv, rescue, says, policy| Case {
        name,
        data: file.to_owned(),
        sig: None,
        keyring: ring.clone(),
        image: image.clone(),
        rescue_extra: vec!["--sums".into(), s(file).into()],
        gpgv,
        rescue,
        says,
        policy,
    };
    let release = |name, file: &Path, gpgv, rescue, says| Case {
        name,
        data: file.to_owned(),
        sig: None,
        keyring: deb_ring.clone(),
        image: packages.clone(),
        rescue_extra: vec!["--release".into(), s(file).into()],
        gpgv,
        rescue,
        says,
        policy: "",
    };
    const EXPIRED: &str = "rescue refuses keys and subkeys that are expired today; gpgv reports EXPKEYSIG and exits 0 (apt refuses EXPKEYSIG too)";
    const REVOKED: &str = "rescue refuses revoked keys and subkeys; gpgv reports REVKEYSIG and exits 0 (apt refuses REVKEYSIG too)";
    let cases = vec![
        detached(
            "RSA 3072 key with two third-party certifications, armoured detached",
            &sig_rsa3072,
            true,
            true,
            "signed by",
            "",
        ),
        detached(
            "RSA 4096 signing subkey, binary detached",
            &sig_rsa4096,
            true,
            true,
            "signed by",
            "",
        ),
        detached(
            "Ed25519 key, armoured detached",
            &sig_ed,
            true,
            true,
            "signed by",
            "",
        ),
        Case {
            name: "key with a subkey whose binding does not verify; the primary signed",
            keyring: grafted.clone(),
            ..detached("", &sig_ed, true, true, "signed by", "")
        },
        Case {
            name: "signature by a subkey whose binding does not verify",
            keyring: grafted.clone(),
            ..detached(
                "",
                &sig_rsa4096,
                false,
                false,
                "has no valid binding signature",
                "",
            )
        },
        detached(
            "SHA-1 digest",
            &sig_sha1,
            true,
            false,
            "too weak",
            "rescue refuses SHA-1 (and weaker) data signatures; gpgv 2.2 accepts them",
        ),
        detached(
            "SHA-512 digest, binary detached",
            &sig_sha512,
            true,
            true,
            "signed by",
            "",
        ),
        detached(
            "two signatures, both keys trusted",
            &sig_both,
            true,
            true,
            "signed by",
            "",
        ),
        detached(
            "two signatures, one key unknown",
            &sig_stranger_and_ed,
            false,
            true,
            "signed by",
            "one good signature by a trusted key suffices (as apt decides); gpgv exits 2 because it cannot check the other",
        ),
        detached(
            "signed by a key not in the keyring",
            &sig_stranger,
            false,
            false,
            "not among the trusted keys",
            "",
        ),
        detached(
            "expired primary key (valid when it signed)",
            &sig_expired,
            true,
            false,
            "expired",
            EXPIRED,
        ),
        detached(
            "revoked primary key",
            &sig_revoked,
            true,
            false,
            "revoked",
            REVOKED,
        ),
        detached(
            "expired signing subkey (valid when it signed)",
            &sig_subexp,
            true,
            false,
            "expired",
            EXPIRED,
        ),
        detached(
            "revoked signing subkey",
            &sig_subrev,
            true,
            false,
            "revoked",
            REVOKED,
        ),
        detached(
            "subkey with two bindings: older one expires later, newer one has expired",
            &sig_twob,
            true,
            false,
            "expired",
            EXPIRED,
        ),
        Case {
            name: "tampered list under a good detached signature",
            data: tampered_list.clone(),
            rescue_extra: vec![
                "--sums".into(),
                s(&tampered_list).into(),
                "--sig".into(),
                s(&sig_ed).into(),
            ],
            ..detached("", &sig_ed, false, false, "BAD signature", "")
        },
        Case {
            name: "good signature, tampered image",
            image: tampered_image.clone(),
            ..detached(
                "",
                &sig_ed,
                true,
                false,
                "does NOT match",
                "gpgv checks the list only; rescue also hashes the image the list names",
            )
        },
        cleartext(
            "cleartext-signed, Ed25519",
            &clear_ed,
            true,
            true,
            "signed by",
            "",
        ),
        cleartext(
            "cleartext-signed, RSA 4096 subkey",
            &clear_rsa,
            true,
            true,
            "signed by",
            "",
        ),
        cleartext(
            "cleartext with a leading empty line",
            &clear_leading,
            true,
            true,
            "signed by",
            "",
        ),
        cleartext(
            "cleartext with a trailing empty line",
            &clear_trailing,
            true,
            true,
            "signed by",
            "",
        ),
        cleartext(
            "cleartext with text before the signed part",
            &clear_before,
            true,
            false,
            "not be covered by the signature",
            "rescue refuses text outside the signed part (gpgv verifies the signed part and ignores the rest; apt refuses it too)",
        ),
        cleartext(
            "cleartext with a tampered line",
            &clear_tampered,
            false,
            false,
            "BAD signature",
            "",
        ),
        Case {
            name: "cleartext list given with --sig as well",
            rescue_extra: vec![
                "--sums".into(),
                s(&clear_ed).into(),
                "--sig".into(),
                s(&sig_ed).into(),
            ],
            ..cleartext(
                "",
                &clear_ed,
                true,
                false,
                "drop --sig",
                "rescue refuses a detached signature next to a cleartext-signed list instead of ignoring one of them",
            )
        },
        release(
            "Debian bookworm-updates InRelease, Debian archive keyring (2 signatures, subkeys, third-party certifications)",
            &inrelease,
            true,
            true,
            "lists the file itself as main/binary-amd64/Packages",
        ),
        release(
            "Debian InRelease with one changed byte",
            &inrelease_tampered,
            false,
            false,
            "BAD signature",
        ),
    ];
    assert!(cases.len() >= 20);

    let mut table =
        String::from("| case | gpgv | rescue | policy when they differ |\n|---|---|---|---|\n");
    let mut failures = Vec::new();
    for c in &cases {
        let (gv, status) = gpgv(&c.keyring, c.sig.as_deref(), &c.data);
        let mut args: Vec<String> = vec![
            "reinstall".into(),
            "verify".into(),
            s(&c.image).into(),
            "--keyring".into(),
            s(&c.keyring).into(),
        ];
        args.extend(c.rescue_extra.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (rv, out) = rescue(&argv);
        if gv != c.gpgv {
            failures.push(format!(
                "{}: gpgv {} ({status}), expected {}",
                c.name, gv, c.gpgv
            ));
        }
        if rv != c.rescue || !out.contains(c.says) {
            failures.push(format!(
                "{}: rescue {} expected {} saying {:?}:\n{out}",
                c.name, rv, c.rescue, c.says
            ));
        }
        if (gv != rv) == c.policy.is_empty() {
            failures.push(format!(
                "{}: a difference needs a policy note, and only a difference",
                c.name
            ));
        }
        let verdict = |ok: bool| if ok { "accepted" } else { "refused" };
        table.push_str(&format!(
            "| {} | {} ({}) | {} | {} |\n",
            c.name,
            verdict(gv),
            if status.is_empty() {
                "no signature checked"
            } else {
                &status
            },
            verdict(rv),
            c.policy
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/gpgv-comparison.md");
    let doc = format!(
        "# rescue and gpgv on the same files\n\nGenerated by `cargo test -p rescue --test gpgv_compare` \
         (`RESCUE_UPDATE_DOCS=1` rewrites it): keys and signatures made by GnuPG at test time, gpgv \
         {} run on each case next to rescue's `reinstall verify`. gpgv's verdict is its exit status, with \
         the status keywords it printed.\n\nrescue's policy: {}.\n\n{table}",
        gpgv_version(),
        rescue_policy()
    );
    // The README carries the same table between two markers.
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_default();
    let (begin, end) = (
        "<!-- gpgv table: generated by rescue/tests/gpgv_compare.rs -->\n",
        "<!-- end of gpgv table -->",
    );
    let section = format!(
        "{begin}Each row: the same keyring, signature and files given to GnuPG's gpgv {} and to \
         rescue's `reinstall verify` (cases made by GnuPG at test time, plus Debian's real InRelease and \
         archive keyring). rescue's policy: {}. Details: [docs/gpgv-comparison.md](docs/gpgv-comparison.md).\n\n{table}{end}",
        gpgv_version(),
        rescue_policy()
    );
    let new_readme = match (readme.find(begin), readme.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &readme[..a], &readme[b + end.len()..])
        }
        _ => panic!("README.md lacks the markers {begin:?} … {end:?}"),
    };
    if std::env::var_os("RESCUE_UPDATE_DOCS").is_some() {
        std::fs::write(&doc_path, &doc).unwrap();
        std::fs::write(&readme_path, &new_readme).unwrap();
    }
    let committed = std::fs::read_to_string(&doc_path).unwrap_or_default();
    assert_eq!(
        committed.trim(),
        doc.trim(),
        "docs/gpgv-comparison.md is out of date: run with RESCUE_UPDATE_DOCS=1"
    );
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_default();
    assert!(
        readme == new_readme,
        "the gpgv table in README.md is out of date: run with RESCUE_UPDATE_DOCS=1"
    );
}

fn gpgv_version() -> String {
    let o = Command::new("gpgv").arg("--version").output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("?")
        .to_owned()
}

fn rescue_policy() -> String {
    let (_, out) = rescue(&[
        "reinstall",
        "verify",
        s(&fixtures().join("bookworm-updates_main_binary-amd64_Packages")),
        "--release",
        s(&fixtures().join("bookworm-updates_InRelease")),
        "--keyring",
        s(&fixtures().join("debian-archive-keyring.gpg")),
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix("policy: "))
        .expect("rescue shows its policy")
        .to_owned()
}

/// Every key of Debian's archive keyring (third-party certifications and all): rescue's reading of
/// expiry and usability equals gpg's `--show-keys` listing, key by key and subkey by subkey.
#[test]
fn every_key_of_debians_archive_keyring_reads_as_gpg_reads_it() {
    use rescue::reinstall::{keypolicy, signature};
    let ring = fixtures().join("debian-archive-keyring.gpg");
    let o = Command::new("gpg")
        .env("GNUPGHOME", tempfile::tempdir().unwrap().path())
        .args(["--with-colons", "--show-keys"])
        .arg(&ring)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    // (kind, validity, expiry, capabilities, fingerprint)
    let mut rows: Vec<(String, String, Option<i64>, String, String)> = Vec::new();
    let mut pending: Option<(String, String, Option<i64>, String)> = None;
    for line in listing.lines() {
        let f: Vec<&str> = line.split(':').collect();
        match f[0] {
            "pub" | "sub" => {
                pending = Some((
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[6].parse().ok(),
                    f[11].to_owned(),
                ));
            }
            "fpr" => {
                if let Some((k, v, e, c)) = pending.take() {
                    rows.push((k, v, e, c, f[9].to_owned()));
                }
            }
            _ => {}
        }
    }
    let keys = signature::load_keys(&ring).unwrap();
    let now = chrono::Utc::now();
    assert_eq!(
        keys.len(),
        rows.iter().filter(|r| r.0 == "pub").count(),
        "every key gpg lists is read"
    );
    let mut checked = 0;
    for t in &keys {
        let (_, validity, expiry, caps, _) = rows
            .iter()
            .find(|r| r.4 == t.fingerprint)
            .unwrap_or_else(|| panic!("gpg does not list {}", t.fingerprint));
        assert_eq!(
            keypolicy::primary_expiry(&t.key, now).map(|e| e.timestamp()),
            *expiry,
            "expiry of {}",
            t.fingerprint
        );
        let gpg_usable =
            !validity.contains(['r', 'e', 'i']) && expiry.is_none_or(|e| e > now.timestamp());
        assert_eq!(
            keypolicy::check_primary_signs(&t.key, now).is_ok(),
            gpg_usable && caps.contains('s'),
            "{} ({}): {:?}",
            t.fingerprint,
            t.uid,
            keypolicy::check_primary_signs(&t.key, now)
        );
        for sub in &t.key.public_subkeys {
            use pgp::types::KeyDetails;
            let fpr = format!("{:X}", sub.key.fingerprint());
            let (_, sv, se, sc, _) = rows.iter().find(|r| r.4 == fpr).unwrap();
            let usable = gpg_usable
                && !sv.contains(['r', 'e', 'i'])
                && se.is_none_or(|e| e > now.timestamp())
                && sc.contains('s');
            assert_eq!(
                keypolicy::check_signing_subkey(&t.key, sub, now).is_ok(),
                usable,
                "subkey {fpr} of {}: {:?}",
                t.uid,
                keypolicy::check_signing_subkey(&t.key, sub, now)
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "Debian's keyring has signing subkeys");
}
