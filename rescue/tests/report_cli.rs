//! `rescue report` and `rescue report verify` through the real binary, checked by tools someone else
//! wrote: GnuPG's `gpgv` verifies every detached signature (keys made by `gpg --quick-gen-key` in a
//! temporary GNUPGHOME: RSA with a passphrase, Ed25519 without), `sha256sum -c` checks the evidence
//! index, and editing one byte of the report makes both `report verify` and `gpgv` fail.
//!
//! The case is made by the binary itself: an acquisition and a restore on the host, the case log written
//! by `case new` and `verify` in rescue-system mode (`RESCUE_SYSTEM=1`, state in a temp dir).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "common/root.rs"]
mod root;
use root::need_root;

fn rescue(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.args(args)
        .env_remove("RESCUE_SYSTEM")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `rescue report verify DIR --keyring KEYRING`.
fn report_verify(dir: &Path, keyring: &Path) -> Output {
    rescue(
        &[
            "report",
            "verify",
            dir.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
        ],
        &[],
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// A case directory `root/case/C-7`: an acquisition `disk-1` verified in the case, a restore manifest,
/// and the case log with a clock offset. Returns the case directory.
fn make_case(root: &Path, with_triage: bool) -> PathBuf {
    let case = root.join("case/C-7");
    let state = root.join("state");
    fs::create_dir_all(&case).unwrap();
    let src = root.join("src.img");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&src, data).unwrap();
    let disk = case.join("disk-1");
    ok(rescue(
        &[
            "acquire",
            src.to_str().unwrap(),
            "--out",
            disk.to_str().unwrap(),
        ],
        &[],
    ));
    let in_rescue = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env("RESCUE_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(o)
    };
    // The machine's clock is 1 h 30 min behind the true time the examiner states.
    let truth = chrono::Utc::now() + chrono::Duration::seconds(5400);
    in_rescue(&[
        "case",
        "new",
        "C-7",
        "--examiner",
        "Jane Doe",
        "--true-time",
        &truth.format("%Y-%m-%d %H:%M:%S").to_string(),
    ]);
    // verify records the image as unchanged (for the report to reuse its hash) only when it was last
    // written more than a kernel timestamp tick before verify starts: make sure of that, from its ctime.
    wait_ctime_older(
        &disk.join("image.raw"),
        std::time::Duration::from_millis(60),
    );
    in_rescue(&["verify", disk.to_str().unwrap()]);
    fs::rename(state.join("case-log.jsonl"), case.join("case-log.jsonl")).unwrap();
    // A restore whose report lands in the case directory: authorized_keys is held for review.
    let backup = root.join("backup");
    fs::create_dir_all(backup.join("root/.ssh")).unwrap();
    fs::write(
        backup.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA x\n",
    )
    .unwrap();
    fs::create_dir_all(backup.join("etc")).unwrap();
    fs::write(backup.join("etc/motd"), "hello\n").unwrap();
    let target = root.join("newroot");
    fs::create_dir_all(&target).unwrap();
    let o = rescue(
        &[
            "restore",
            backup.to_str().unwrap(),
            target.to_str().unwrap(),
            "--report-dir",
            case.to_str().unwrap(),
        ],
        &[],
    );
    assert!(case.join("restore-manifest.json").exists(), "{}", text(&o));
    if with_triage {
        let t = case.join("triage");
        fs::create_dir_all(&t).unwrap();
        fs::write(
            t.join("findings.json"),
            serde_json::json!({"schema": "rescue.triage/1", "findings": [
                {"id": "F2", "severity": "low", "category": "hidden", "path": "/tmp/.x", "why": "hidden file in /tmp", "evidence": {}},
                {"id": "F1", "severity": "critical", "category": "cron", "path": "/etc/cron.d/backdoor",
                 "why": "cron job not owned by a package", "evidence": {"sha256": "ab", "mtime": "2026-11-20T03:04:05Z"}},
            ]})
            .to_string(),
        )
        .unwrap();
        let line = |ts: i64, msg: &str, path: &str| {
            let dt = chrono::DateTime::from_timestamp_micros(ts).unwrap();
            serde_json::json!({"message": msg, "datetime": dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "timestamp": ts, "timestamp_desc": "mtime", "source": "bodyfile", "path": path, "host": "web1"})
            .to_string()
        };
        // The attacker's login, flagged by the timeline, a day before the backdoor appears.
        let mut login: serde_json::Value = serde_json::from_str(&line(
            1_763_500_000_000_000,
            "Accepted password for root from 203.0.113.9",
            "/var/log/auth.log",
        ))
        .unwrap();
        login["suspicious"] = "root login from the network".into();
        let mut timeline = [
            line(1_700_000_000_000_000, "boot", "/var/log/syslog"),
            login.to_string(),
            line(
                1_763_600_645_000_000,
                "file written",
                "/etc/cron.d/backdoor",
            ),
            "this line is no event".to_owned(),
            line(
                1_763_700_000_000_000,
                "file changed",
                "/etc/cron.d/backdoor",
            ),
            line(1_764_000_000_000_000, "login", "/var/log/auth.log"),
        ]
        .join("\n")
        .into_bytes();
        // Bytes that are no UTF-8 are one more line not understood, not the end of the file.
        timeline.extend_from_slice(b"\n\xff\xfe{\n");
        timeline
            .extend_from_slice(line(1_764_100_000_000_000, "logout", "/var/log/wtmp").as_bytes());
        timeline.push(b'\n');
        fs::write(t.join("timeline.jsonl"), timeline).unwrap();
    }
    case
}

/// Returns once `path`'s change time is more than `age` in the past (at most `age` from now).
fn wait_ctime_older(path: &Path, age: std::time::Duration) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    let ctime =
        std::time::UNIX_EPOCH + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32);
    let since = std::time::SystemTime::now()
        .duration_since(ctime)
        .unwrap_or_default();
    if since <= age {
        // allow(sleep): waits for the clock itself to pass the file's ctime by `age`, not for an event
        std::thread::sleep(age - since + std::time::Duration::from_millis(1));
    }
}

/// A report over an acquisition verified in the case takes the image's SHA-256 from the manifest
/// without reading it again (`sha256_from` says so, and `sha256sum -c` agrees with the hash); after one
/// write to the image the next report reads it again and states its new hash, never the manifest's.
#[test]
fn a_verified_unchanged_image_keeps_its_proved_hash_and_a_written_one_is_hashed_again() {
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(case.join("disk-1/manifest.json")).unwrap()).unwrap();
    let proved = manifest["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["file"] == "image.raw"))
        .map(|o| o["sha256"].as_str().unwrap().to_owned())
        .expect("the manifest lists image.raw");
    let image_entry = |dir: &Path| -> serde_json::Value {
        let r: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
        r["evidence"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["path"] == "disk-1/image.raw"))
            .cloned()
            .expect("the evidence lists the image")
    };
    ok(rescue(
        &["report", "--case-dir", case.to_str().unwrap()],
        &[],
    ));
    let dir = case.join("report");
    let e = image_entry(&dir);
    assert_eq!(e["sha256"], proved.as_str(), "{e}");
    assert!(
        e["sha256_from"]
            .as_str()
            .is_some_and(|f| f.starts_with("disk-1/manifest.json, proved by verify")),
        "the image's hash is the verified one, not read again: {e}"
    );
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("Not read again for this report: disk-1/image.raw"),
        "{md}"
    );
    let (sums_ok, sums) = sha256sum_c(&dir);
    assert!(sums_ok, "sha256sum -c agrees with the reused hash: {sums}");

    flip_byte(&case.join("disk-1/image.raw"), 1_000_000);
    ok(rescue(
        &["report", "--case-dir", case.to_str().unwrap()],
        &[],
    ));
    let e = image_entry(&dir);
    assert!(e["sha256_from"].is_null(), "{e}");
    assert_ne!(
        e["sha256"],
        proved.as_str(),
        "the written image is hashed again"
    );
    let (sums_ok, sums) = sha256sum_c(&dir);
    assert!(sums_ok, "sha256sum -c agrees with the new hash: {sums}");
}

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        Gpg {
            home: tempfile::Builder::new()
                .prefix("rg")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    fn run(&self, pass: &str, args: &[&str]) -> Vec<u8> {
        let o = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--yes",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                pass,
            ])
            .args(args)
            .output()
            .expect("gpg (package gnupg) runs");
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// A key: its secret key file (armoured or binary) and its public keyring for gpgv.
    fn key(
        &self,
        uid: &str,
        algo: &str,
        pass: &str,
        armour: bool,
        dir: &Path,
    ) -> (PathBuf, PathBuf) {
        self.run(pass, &["--quick-gen-key", uid, algo, "sign", "never"]);
        let mut args = vec!["--export-secret-keys"];
        if armour {
            args.insert(0, "--armor");
        }
        args.push(uid);
        let sec = dir.join(format!("{algo}.sec"));
        fs::write(&sec, self.run(pass, &args)).unwrap();
        let public = dir.join(format!("{algo}.pub"));
        fs::write(&public, self.run("", &["--export", uid])).unwrap();
        (sec, public)
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

/// gpgv's verdict on one detached signature.
fn gpgv(keyring: &Path, sig: &Path, data: &Path) -> bool {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg("--keyring")
        .arg(keyring)
        .arg(sig)
        .arg(data)
        .output()
        .expect("gpgv (package gpgv) runs");
    o.status.success()
}

fn sha256sum_c(dir: &Path) -> (bool, String) {
    let o = Command::new("sha256sum")
        .args(["-c", "evidence.sha256"])
        .current_dir(dir)
        .output()
        .expect("sha256sum runs");
    (o.status.success(), text(&o))
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x20;
    fs::write(path, b).unwrap();
}

const SIGNED: [&str; 5] = [
    "case-log.jsonl",
    "report.md",
    "report.json",
    "report.html",
    "evidence.sha256",
];

#[test]
fn signed_reports_verify_with_gpgv_and_sha256sum_and_one_edited_byte_fails_both() {
    let gpg = Gpg::new();
    for (algo, pass, armour) in [("rsa3072", "correct horse", true), ("ed25519", "", false)] {
        let root = tempfile::tempdir().unwrap();
        let case = make_case(root.path(), true);
        let (sec, public) = gpg.key(
            &format!("Examiner {algo} <x@example.org>"),
            algo,
            pass,
            armour,
            root.path(),
        );
        let pw = root.path().join("pw");
        fs::write(&pw, format!("{pass}\n")).unwrap();
        let out = ok(rescue(
            &[
                "report",
                "--case-dir",
                case.to_str().unwrap(),
                "--sign-key",
                sec.to_str().unwrap(),
                "--passphrase-file",
                pw.to_str().unwrap(),
                "--format",
                "md,json,html",
            ],
            &[],
        ));
        assert!(out.contains("signed by"), "{algo}: {out}");
        let dir = case.join("report");
        for f in SIGNED {
            assert!(
                gpgv(&public, &dir.join(format!("{f}.asc")), &dir.join(f)),
                "{algo}: gpgv refuses the signature over {f}"
            );
        }
        let (sums_ok, sums) = sha256sum_c(&dir);
        assert!(sums_ok, "{algo}: {sums}");
        assert!(sums.contains("../disk-1/image.raw: OK"), "{sums}");
        let v = report_verify(&dir, &public);
        assert_eq!(v.status.code(), Some(0), "{algo}: {}", text(&v));
        // The secret key never reaches the evidence disk.
        for e in walk(&case) {
            let b = fs::read(&e).unwrap();
            assert!(
                !b.windows(19).any(|w| w == b"PRIVATE KEY BLOCK--")
                    && !contains(&b, &fs::read(&sec).unwrap()[..64]),
                "{algo}: {} holds secret key material",
                e.display()
            );
        }
        // One byte of the report changed: gpgv, sha256sum and report verify all fail, naming the file.
        flip_byte(&dir.join("report.md"), 40);
        assert!(
            !gpgv(&public, &dir.join("report.md.asc"), &dir.join("report.md")),
            "{algo}"
        );
        assert!(!sha256sum_c(&dir).0, "{algo}");
        let v = report_verify(&dir, &public);
        assert_eq!(v.status.code(), Some(4), "{algo}: {}", text(&v));
        assert!(
            text(&v).contains("FAILED report.md: CHANGED"),
            "{}",
            text(&v)
        );
        assert!(text(&v).contains("FAILED report.md.asc"), "{}", text(&v));
    }
}

#[test]
fn an_edited_evidence_file_or_a_foreign_key_is_named() {
    let gpg = Gpg::new();
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    let (sec, public) = gpg.key("Examiner <e@example.org>", "ed25519", "", true, root.path());
    let other = tempfile::tempdir().unwrap();
    let (_, foreign) = gpg.key(
        "Someone Else <s@example.org>",
        "rsa2048",
        "",
        true,
        other.path(),
    );
    let out = root.path().join("elsewhere");
    ok(rescue(
        &[
            "report",
            "--case-dir",
            case.to_str().unwrap(),
            "--sign-key",
            sec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    ));
    // The report outside the case directory still indexes the evidence relative to itself.
    let (sums_ok, sums) = sha256sum_c(&out);
    assert!(sums_ok, "{sums}");
    let v = report_verify(&out, &foreign);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains("not among the trusted keys"),
        "{}",
        text(&v)
    );
    assert!(gpgv(
        &public,
        &out.join("evidence.sha256.asc"),
        &out.join("evidence.sha256")
    ));
    flip_byte(&case.join("disk-1/image.raw"), 1_000_000);
    let v = report_verify(&out, &public);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains("FAILED ../case/C-7/disk-1/image.raw: CHANGED"),
        "{}",
        text(&v)
    );
    // The index's signature still holds: the index is right, the evidence changed.
    assert!(gpgv(
        &public,
        &out.join("evidence.sha256.asc"),
        &out.join("evidence.sha256")
    ));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_report_tells_the_case_with_true_times_findings_and_timeline() {
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), true);
    ok(rescue(
        &[
            "report",
            "--case-dir",
            case.to_str().unwrap(),
            "--format",
            "json,md,html",
        ],
        &[],
    ));
    let dir = case.join("report");
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["schema"], "rescue.report/1");
    assert_eq!(r["case"]["case_id"], "C-7");
    assert_eq!(r["case"]["examiner"], "Jane Doe");
    let offset = r["case"]["clock_offset_seconds"].as_i64().unwrap();
    assert!((5390..=5410).contains(&offset), "{offset}");
    // Every action carries its time with the offset applied.
    let actions = r["actions"].as_array().unwrap();
    assert!(actions.len() >= 2);
    for a in actions {
        let sys =
            chrono::DateTime::parse_from_rfc3339(a["system_clock"].as_str().unwrap()).unwrap();
        let truth = chrono::DateTime::parse_from_rfc3339(a["true_time"].as_str().unwrap()).unwrap();
        assert_eq!((truth - sys).num_seconds(), offset, "{a}");
    }
    // The acquisition with the manifest's hash, verified in the case; the evidence list as sha256sum sees it.
    let acq = &r["scope"]["acquisitions"][0];
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(case.join("disk-1/manifest.json")).unwrap()).unwrap();
    assert_eq!(acq["dir"], "disk-1");
    assert_eq!(acq["verification"], "verified", "{acq}");
    assert_eq!(acq["hashes"]["sha256"], manifest["hashes"]["sha256"]);
    let sha = String::from_utf8(
        Command::new("sha256sum")
            .arg(case.join("disk-1/image.raw"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let image = r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "disk-1/image.raw")
        .unwrap();
    assert_eq!(
        image["sha256"].as_str().unwrap(),
        sha.split_whitespace().next().unwrap()
    );
    assert!(
        !r["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "case-log.jsonl"),
        "the live case log is covered by its signed snapshot, not the index"
    );
    // Findings most severe first, with the timeline's times on their paths.
    let f = &r["findings"];
    assert_eq!(f["counts"]["critical"], 1);
    assert_eq!(f["items"][0]["id"], "F1");
    assert_eq!(f["items"][0]["times"]["mtime"], "2026-11-20T03:04:05Z");
    assert!(
        f["items"][0]["first_seen"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-20T01:04:05")
    );
    let t = &r["timeline"];
    assert_eq!(t["events"], 6);
    assert_eq!(t["unparsed_lines"], 2);
    assert_eq!(t["first_event"]["message"], "boot");
    assert_eq!(t["last_event"]["message"], "logout");
    // Attacker activity starts with the flagged login (on no finding's path), ends with the backdoor.
    assert_eq!(t["attacker_events"], 3, "{t}");
    assert_eq!(
        t["first_attacker_activity"]["message"],
        "Accepted password for root from 203.0.113.9"
    );
    assert_eq!(
        t["first_attacker_activity"]["suspicious"],
        "root login from the network"
    );
    assert_eq!(t["last_attacker_activity"]["message"], "file changed");
    // Persistence with its times: the cron backdoor; the low hidden file in /tmp is no persistence.
    let persistence = t["persistence"].as_array().unwrap();
    assert_eq!(persistence.len(), 1, "{t}");
    assert_eq!(persistence[0]["path"], "/etc/cron.d/backdoor");
    assert_eq!(persistence[0]["category"], "cron");
    assert_eq!(persistence[0]["mtime"], "2026-11-20T03:04:05Z");
    assert!(
        persistence[0]["first_seen"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-20T01:04:05")
            && persistence[0]["last_seen"]
                .as_str()
                .unwrap()
                .starts_with("2025-11-21T04:40:00"),
        "{t}"
    );
    // The restore: authorized_keys held for review, named as an open item.
    let restore = &r["reinstall_restore"]["restores"][0];
    assert!(
        restore["held"][0]
            .as_str()
            .unwrap()
            .contains("root/.ssh/authorized_keys"),
        "{restore}"
    );
    let open = r["open_items"].to_string();
    assert!(open.contains("held for review"), "{open}");
    assert!(open.contains("1 critical/high findings"), "{open}");
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    for heading in [
        "## Host",
        "## Scope",
        "## Timeline highlights",
        "## Actions taken",
        "## Open items",
        "## Evidence files",
    ] {
        assert!(md.contains(heading), "{heading}\n{md}");
    }
    assert!(md.contains("/etc/cron.d/backdoor"), "{md}");
    assert!(
        md.contains("flagged: root login from the network")
            && md.contains("Persistence found by triage, earliest first (1)"),
        "{md}"
    );
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("@media print"),
        "{html}"
    );
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(banned), "not self-contained: {banned}");
    }
}

#[test]
fn absent_parts_are_stated_and_an_unsigned_report_gives_the_final_chain_hash() {
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    let log = fs::read_to_string(case.join("case-log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let hash = last["hash"].as_str().unwrap();
    let out = ok(rescue(
        &["report", "--case-dir", case.to_str().unwrap()],
        &[],
    ));
    assert!(out.contains("UNSIGNED"), "{out}");
    assert!(out.contains(hash), "the final chain hash is printed: {out}");
    let dir = case.join("report");
    assert!(
        !dir.join("report.html").exists(),
        "html only when asked for"
    );
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    for said in [
        "No triage was run",
        "No timeline was built",
        "No memory capture was made",
        "This report is UNSIGNED",
    ] {
        assert!(md.contains(said), "{said}\n{md}");
    }
    let v = rescue(&["report", "verify", dir.to_str().unwrap()], &[]);
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("UNSIGNED"), "{}", text(&v));
    // On an 80-column console (the width without a terminal) every line fits, the 64-digit chain
    // hash included, and stays whole.
    let shown = String::from_utf8_lossy(&v.stdout).into_owned();
    for said in [&out, &shown] {
        assert!(
            said.lines().all(|l| l.chars().count() <= 80),
            "a line wider than 80 columns:\n{said}"
        );
        assert!(said.contains(hash), "{said}");
    }
    assert!(sha256sum_c(&dir).0);
    // The live case log must go on from the snapshot: an edit of its history is named.
    flip_byte(&case.join("case-log.jsonl"), 30);
    let v = rescue(&["report", "verify", dir.to_str().unwrap()], &[]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains(
            "FAILED ../case-log.jsonl: the live case log does not begin with the snapshot"
        ),
        "{}",
        text(&v)
    );
}

#[test]
fn bad_keys_passphrases_and_places_are_refused_in_words() {
    let gpg = Gpg::new();
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    let (sec, _) = gpg.key(
        "Examiner <p@example.org>",
        "ed25519",
        "right",
        true,
        root.path(),
    );
    let pw = root.path().join("pw");
    fs::write(&pw, "wrong\n").unwrap();
    let c = case.to_str().unwrap();
    let o = rescue(
        &[
            "report",
            "--case-dir",
            c,
            "--sign-key",
            sec.to_str().unwrap(),
            "--passphrase-file",
            pw.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("the passphrase does not unlock key"),
        "{}",
        text(&o)
    );
    assert!(
        !case.join("report").exists(),
        "nothing written before the key is unlocked"
    );
    // Without a console to ask on and without a passphrase file: say so.
    let o = rescue(
        &[
            "report",
            "--case-dir",
            c,
            "--sign-key",
            sec.to_str().unwrap(),
        ],
        &[],
    );
    assert!(text(&o).contains("no console to ask it on"), "{}", text(&o));
    // A key lying in the case directory is refused.
    let inside = case.join("key.asc");
    fs::copy(&sec, &inside).unwrap();
    let o = rescue(
        &[
            "report",
            "--case-dir",
            c,
            "--sign-key",
            inside.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&o).contains("lies on the evidence disk"),
        "{}",
        text(&o)
    );
    fs::remove_file(&inside).unwrap();
    // A public key is no secret key.
    let public = root.path().join("ed25519.pub");
    let o = rescue(
        &[
            "report",
            "--case-dir",
            c,
            "--sign-key",
            public.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&o).contains("holds no OpenPGP secret key"),
        "{}",
        text(&o)
    );
    // On a host the case directory must be named; a directory without a case log is no case.
    let o = rescue(&["report"], &[]);
    assert!(text(&o).contains("--case-dir DIR"), "{}", text(&o));
    let o = rescue(
        &["report", "--case-dir", root.path().to_str().unwrap()],
        &[],
    );
    assert!(text(&o).contains("holds no case log"), "{}", text(&o));
}

#[test]
fn guided_step_9_builds_a_signed_report_before_power_off() {
    let gpg = Gpg::new();
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let (sec, public) = gpg.key("Examiner <g@example.org>", "ed25519", "", true, root.path());
    let rescue_mode = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env_remove("RESCUE_CONSOLE")
            .env("RESCUE_STATE_DIR", &state)
            .env("RESCUE_MENU", "numbered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        text(&o)
    };
    rescue_mode(&["case", "new", "G-1", "--examiner", "Guide"], "");
    // Step 9: build the report (y), sign it (y), no medium (1), the key's path, no power-off (n).
    let out = rescue_mode(&["shell"], &format!("9\ny\ny\n1\n{}\nn\n", sec.display()));
    assert!(
        out.contains(&format!(
            "[guided] report --format md,json,html --sign-key {}",
            sec.display()
        )),
        "{out}"
    );
    assert!(out.contains("signed by"), "{out}");
    let dir = state.join("report");
    for f in SIGNED {
        assert!(
            gpgv(&public, &dir.join(format!("{f}.asc")), &dir.join(f)),
            "{f}\n{out}"
        );
    }
    // The case log records the report with the chain hash it signed.
    let log = fs::read_to_string(state.join("case-log.jsonl")).unwrap();
    assert!(log.contains("\"command\":\"report\""), "{log}");
}

#[test]
fn a_broken_case_log_is_reported_as_broken_and_fails_verify() {
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    flip_byte(&case.join("case-log.jsonl"), 60);
    let out = ok(rescue(
        &["report", "--case-dir", case.to_str().unwrap()],
        &[],
    ));
    assert!(out.contains("chain BROKEN"), "{out}");
    let dir = case.join("report");
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["case_log"]["intact"], false);
    assert!(
        r["actions"].as_array().unwrap().is_empty(),
        "no action is taken from a broken log"
    );
    assert!(
        r["open_items"][0].as_str().unwrap().contains("NOT intact"),
        "{}",
        r["open_items"]
    );
    let v = rescue(&["report", "verify", dir.to_str().unwrap()], &[]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains("FAILED case-log.jsonl: chain BROKEN at line 1"),
        "{}",
        text(&v)
    );
}

/// The text of the Markdown section `## title` (up to the next section).
fn md_section<'a>(md: &'a str, title: &str) -> &'a str {
    let head = format!("\n## {title}\n");
    let start = md
        .find(&head)
        .unwrap_or_else(|| panic!("no section {title}:\n{md}"))
        + head.len();
    let end = md[start..].find("\n## ").map_or(md.len(), |i| start + i);
    &md[start..end]
}

/// `sha256sum FILE`'s digest.
fn sha256sum(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn report_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// The Host section states the machine's identity with its values: from the acquisition manifest
/// (the kernel `uname -r` names) when there is no inventory, from `inventory.json` when there is one;
/// memory captures in the case (`memory.lime`, `memory.lime.zst`) are in the Scope with their size
/// and the SHA-256 `sha256sum` prints, and no longer an open item.
#[test]
fn host_identity_and_memory_captures_are_stated_with_their_values() {
    let root = tempfile::tempdir().unwrap();
    let case = make_case(root.path(), false);
    let c = case.to_str().unwrap();
    let dir = case.join("report");

    // No inventory: the acquisition manifest's host, every field of it.
    ok(rescue(&["report", "--case-dir", c], &[]));
    let r = report_json(&dir);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(case.join("disk-1/manifest.json")).unwrap()).unwrap();
    assert_eq!(r["host"], manifest["host"], "{}", r["host"]);
    assert!(
        r["host_source"]
            .as_str()
            .unwrap()
            .starts_with("the first acquisition manifest"),
        "{}",
        r["host_source"]
    );
    let uname = Command::new("uname").arg("-r").output().unwrap();
    let kernel = String::from_utf8_lossy(&uname.stdout).trim().to_owned();
    assert_eq!(r["host"]["kernel"], kernel.as_str());
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    let host = md_section(&md, "Host");
    assert!(host.contains(&format!("| kernel | {kernel} |")), "{host}");
    assert!(
        host.contains(&format!(
            "| boot_mode | {} |",
            manifest["host"]["boot_mode"].as_str().unwrap()
        )),
        "{host}"
    );
    assert!(
        host.contains("| from | the first acquisition manifest"),
        "{host}"
    );

    // An inventory as `rescue inventory --json` writes it, on a machine with DMI: its host wins.
    let inv = rescue(&["inventory", "--json"], &[]);
    assert!(inv.status.success(), "{}", text(&inv));
    let mut inventory: serde_json::Value = serde_json::from_slice(&inv.stdout).unwrap();
    inventory["host"]["dmi_vendor"] = "ACME Servers".into();
    inventory["host"]["dmi_product"] = "R740 | rack".into();
    inventory["host"]["dmi_serial"] = "SN-4711".into();
    fs::write(
        case.join("inventory.json"),
        serde_json::to_vec_pretty(&inventory).unwrap(),
    )
    .unwrap();

    // Memory captures: a raw LiME file and a zstd one, as `live` names them.
    let data = |n: u32, seed: u32| -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(seed).wrapping_add(7) >> 9) as u8)
            .collect()
    };
    fs::create_dir_all(case.join("memory")).unwrap();
    fs::create_dir_all(case.join("live-2/memory")).unwrap();
    let raw = case.join("memory/memory.lime");
    let zst = case.join("live-2/memory/memory.lime.zst");
    fs::write(&raw, data(1_234_567, 2_246_822_519)).unwrap();
    fs::write(&zst, data(54_321, 3_266_489_917)).unwrap();
    // Not a memory capture, although its name has `lime` in it.
    fs::write(case.join("sublime.txt"), "notes\n").unwrap();

    ok(rescue(&["report", "--case-dir", c], &[]));
    let r = report_json(&dir);
    assert_eq!(r["host"], inventory["host"], "{}", r["host"]);
    assert!(
        r["host_source"]
            .as_str()
            .unwrap()
            .starts_with("inventory.json"),
        "{}",
        r["host_source"]
    );
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    let host = md_section(&md, "Host");
    for row in [
        "| dmi_vendor | ACME Servers |",
        "| dmi_product | R740 \\| rack |",
        "| dmi_serial | SN-4711 |",
        &format!("| kernel | {kernel} |"),
    ] {
        assert!(host.contains(row), "{row}\n{host}");
    }
    assert!(host.contains("| from | inventory.json"), "{host}");

    let memory = r["scope"]["memory"].as_array().unwrap();
    let listed: Vec<(&str, u64, &str)> = memory
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap(),
                m["size_bytes"].as_u64().unwrap(),
                m["sha256"].as_str().unwrap(),
            )
        })
        .collect();
    let (raw_sha, zst_sha) = (sha256sum(&raw), sha256sum(&zst));
    assert_eq!(
        listed,
        [
            ("live-2/memory/memory.lime.zst", 54_321, zst_sha.as_str()),
            ("memory/memory.lime", 1_234_567, raw_sha.as_str()),
        ],
        "{}",
        r["scope"]
    );
    let scope = md_section(&md, "Scope");
    for (path, size, sha) in &listed {
        let line = format!("- memory capture {path} ({size} bytes, sha256 {sha})");
        assert!(scope.contains(&line), "{line}\n{scope}");
    }
    assert!(!scope.contains("No memory capture"), "{scope}");
    assert!(
        !r["open_items"].to_string().contains("no memory capture"),
        "{}",
        r["open_items"]
    );
    let (sums_ok, sums) = sha256sum_c(&dir);
    assert!(sums_ok, "{sums}");
    assert!(sums.contains("../memory/memory.lime: OK"), "{sums}");
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    fn new(file: &Path) -> Loop {
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "losetup: {}", text(&o));
        Loop(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Reinstall and restore as the report tells them: every `reinstall`, `restore` and `case target`
/// result of the case log, with its verdict (verified, not verified, refused), and no other entry;
/// for the restore, the files it refused (an executable, a file on the blocklist) and held, each
/// with the reason the restore manifest gives, none of the refused written to the target.
#[test]
fn reinstall_and_restore_records_name_what_was_verified_refused_and_held() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let case = d.join("case/C-9");
    let state = d.join("state");
    fs::create_dir_all(&case).unwrap();
    let in_rescue = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env("RESCUE_STATE_DIR", &state)
            .env_remove("RESCUE_CONSOLE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    ok(in_rescue(&["case", "new", "C-9", "--examiner", "R"]));

    // Two installer images and their checksum list, written by sha256sum; the second one then changed.
    let media = d.join("media");
    fs::create_dir_all(&media).unwrap();
    fs::write(media.join("good.iso"), vec![0x5a; 70_000]).unwrap();
    fs::write(media.join("bad.iso"), vec![0xa5; 70_000]).unwrap();
    let o = Command::new("sha256sum")
        .args(["good.iso", "bad.iso"])
        .current_dir(&media)
        .output()
        .unwrap();
    fs::write(media.join("SHA256SUMS"), &o.stdout).unwrap();
    flip_byte(&media.join("bad.iso"), 100);
    let sums = media.join("SHA256SUMS");
    let verify = |iso: &str| {
        in_rescue(&[
            "reinstall",
            "verify",
            media.join(iso).to_str().unwrap(),
            "--sums",
            sums.to_str().unwrap(),
            "--allow-unsigned",
        ])
    };
    ok(verify("good.iso"));
    let o = verify("bad.iso");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // A restore inside the case: an executable and a blocklisted file refused, authorized_keys held.
    let backup = d.join("backup");
    fs::create_dir_all(backup.join("root/.ssh")).unwrap();
    fs::create_dir_all(backup.join("usr/local/bin")).unwrap();
    fs::create_dir_all(backup.join("srv")).unwrap();
    fs::create_dir_all(backup.join("etc")).unwrap();
    fs::write(
        backup.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA x\n",
    )
    .unwrap();
    fs::write(
        backup.join("usr/local/bin/sync-agent"),
        "#!/bin/sh\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        backup.join("usr/local/bin/sync-agent"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(backup.join("srv/payload.dat"), "beacon c2\n").unwrap();
    fs::write(backup.join("etc/motd"), "hello\n").unwrap();
    let blocklist = d.join("iocs.txt");
    let o = Command::new("sha256sum")
        .arg(backup.join("srv/payload.dat"))
        .output()
        .unwrap();
    fs::write(&blocklist, &o.stdout).unwrap();
    let target = d.join("newroot");
    fs::create_dir_all(&target).unwrap();
    ok(in_rescue(&[
        "restore",
        backup.to_str().unwrap(),
        target.to_str().unwrap(),
        "--blocklist",
        blocklist.to_str().unwrap(),
        "--report-dir",
        case.to_str().unwrap(),
        // The directory lies on this machine's disk, never acquired in this case.
        "--reason",
        "rebuilt system disk",
    ]));
    assert!(target.join("etc/motd").is_file());
    for gone in [
        "usr/local/bin/sync-agent",
        "srv/payload.dat",
        "root/.ssh/authorized_keys",
    ] {
        assert!(!target.join(gone).exists(), "{gone} was written");
    }

    // The interlock's verdict on a disk never acquired in this case.
    let mut expected = vec![
        (
            format!("reinstall verify {}", media.join("good.iso").display()),
            "verified: ",
        ),
        (
            format!("reinstall verify {}", media.join("bad.iso").display()),
            "ERROR: ",
        ),
        (
            format!("restore {} {}", backup.display(), target.display()),
            "complete: 1 held, 2 refused, 1 restored",
        ),
    ];
    let _disk = if need_root("the case target record") {
        let img = d.join("disk.img");
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let dev = Loop::new(&img);
        let o = in_rescue(&["case", "target", &dev.0]);
        assert!(!o.status.success(), "{}", text(&o));
        expected.push((format!("case target {}", dev.0), "REFUSED: "));
        ok(in_rescue(&[
            "case",
            "target",
            &dev.0,
            "--reason",
            "wiped for reinstall",
        ]));
        expected.push((
            format!("case target {}", dev.0),
            "cleared by OVERRIDE: wiped for reinstall",
        ));
        Some(dev)
    } else {
        None
    };
    fs::rename(state.join("case-log.jsonl"), case.join("case-log.jsonl")).unwrap();

    ok(rescue(
        &["report", "--case-dir", case.to_str().unwrap()],
        &[],
    ));
    let dir = case.join("report");
    let r = report_json(&dir);
    let rr = &r["reinstall_restore"];
    let records = rr["records"].as_array().unwrap();
    let all: Vec<(&str, &str)> = records
        .iter()
        .map(|a| {
            (
                a["command"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    // The restore's own interlock clears the disk under the target directory (when it lies on one)
    // on the reason given; which disk that is depends on this machine.
    let (interlock, got): (Vec<_>, Vec<_>) = all.iter().partition(|(cmd, _)| {
        cmd.starts_with("case target ") && !expected.iter().any(|(c, _)| c == cmd)
    });
    for (cmd, outcome) in &interlock {
        assert_eq!(
            *outcome, "cleared by OVERRIDE: rebuilt system disk",
            "{cmd}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{rr}");
    for ((cmd, outcome), (want_cmd, want)) in got.iter().zip(&expected) {
        assert_eq!(cmd, want_cmd, "{rr}");
        assert!(outcome.starts_with(want), "{cmd}: {outcome}");
        assert_eq!(
            records.iter().find(|a| a["command"] == *cmd).unwrap()["kind"],
            "result"
        );
    }
    assert!(got[0].1.contains("sha256"), "{}", got[0].1);

    // The restore's files as its manifest says, reasons included.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(case.join("restore-manifest.json")).unwrap()).unwrap();
    let reason = |path: &str, action: &str| -> String {
        let f = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in the manifest: {manifest}"));
        assert_eq!(f["action"], action, "{f}");
        format!("{path}: {}", f["reason"].as_str().unwrap())
    };
    let refused = [
        reason("srv/payload.dat", "refused"),
        reason("usr/local/bin/sync-agent", "refused"),
    ];
    let held = [reason("root/.ssh/authorized_keys", "held")];
    let restore = &rr["restores"][0];
    assert_eq!(restore["refused"], serde_json::json!(refused), "{restore}");
    assert_eq!(restore["held"], serde_json::json!(held), "{restore}");
    assert!(refused[0].contains("blocklist"), "{}", refused[0]);

    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    let section = md_section(&md, "Reinstall and restore");
    for (cmd, outcome) in &all {
        assert!(
            section.contains(&format!("| {cmd} | {outcome} |")),
            "{cmd}\n{section}"
        );
    }
    let list = |items: &[String]| items.iter().map(|i| format!("- {i}\n")).collect::<String>();
    assert!(
        section.contains(&format!("Refused:\n\n{}", list(&refused))),
        "{section}"
    );
    assert!(
        section.contains(&format!("Held for review:\n\n{}", list(&held))),
        "{section}"
    );
    // Only these: case new, the report itself and other entries are no reinstall record.
    assert!(!section.contains("case new"), "{section}");
}
