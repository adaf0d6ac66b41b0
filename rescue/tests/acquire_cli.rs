//! `rescue acquire` and `rescue verify` through the real binary: on files always, on read-only loop
//! devices when `losetup` works (as root; `RESCUE_REQUIRE_LOOP=1` turns a skip into a failure). Unreadable
//! sectors on a real block device are tested in QEMU (`tests/tests/acquire.rs`, blkdebug).
//! Every result is checked with an independent tool: `sha256sum`, `md5sum`, `zstd`, `sha256sum -c`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rescue");
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command with a timeout, capturing output.
fn run(cmd: &mut Command) -> Output {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {line}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    // A blocking `wait` on a thread; the channel gives up after TIMEOUT (then the child is killed).
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(TIMEOUT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("timed out after {TIMEOUT:?}: {line}");
        }
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn rescue(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn tool_digest(tool: &str, path: &Path) -> String {
    let o = run(Command::new(tool).arg(path));
    assert!(o.status.success(), "{tool}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A mixed test source: pseudo-random, zero and text stripes, `len` bytes.
fn make_source(path: &Path, len: usize) {
    let mut data = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let text = b"The quick brown fox jumps over the lazy dog. rescue acquisition test stripe. ";
    while data.len() < len {
        let stripe = (len - data.len()).min(1 << 20);
        match (data.len() >> 20) % 3 {
            0 => {
                for _ in 0..stripe {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    data.push(x as u8);
                }
            }
            1 => data.resize(data.len() + stripe, 0),
            _ => data.extend(text.iter().cycle().take(stripe)),
        }
    }
    fs::write(path, data).unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    src: PathBuf,
}

fn fixture(len: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.img");
    make_source(&src, len);
    Fixture { dir, src }
}

impl Fixture {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn file_acquisition_matches_coreutils_and_sha256sum_c() {
    let f = fixture(10 << 20);
    let out = f.out("acq");
    let o = rescue(&[
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--hash",
        "sha256,md5,sha1",
        "--window",
        "1M",
        "--case",
        "C-1",
        "--examiner",
        "E. Xaminer",
        "--verify-source",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["schema"], "rescue.acquisition/1");
    assert_eq!(m["complete"], true);
    assert_eq!(m["hashes"]["sha256"], tool_digest("sha256sum", &f.src));
    assert_eq!(m["hashes"]["md5"], tool_digest("md5sum", &f.src));
    assert_eq!(m["hashes"]["sha1"], tool_digest("sha1sum", &f.src));
    assert_eq!(m["windows"].as_array().unwrap().len(), 10);
    assert_eq!(m["case"]["examiner"], "E. Xaminer");
    assert_eq!(m["source_verification"]["matched"], true);
    assert_eq!(
        fs::read(out.join("image.raw")).unwrap(),
        fs::read(&f.src).unwrap()
    );
    let c = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out));
    assert!(c.status.success(), "{}", text(&c));
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 0, "{}", text(&v));
}

#[test]
fn zstd_split_output_decompresses_with_the_zstd_tool() {
    let f = fixture(12 << 20);
    let out = f.out("acq");
    let o = rescue(&[
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--format",
        "zstd",
        "--split",
        "4M",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&out);
    let files: Vec<String> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["file"].as_str().unwrap().to_owned())
        .filter(|n| n.starts_with("image.raw.zst."))
        .collect();
    assert_eq!(files[0], "image.raw.zst.001");
    // 4 MiB reads, each compressed as 64 KiB frames (the default) that decode alone.
    assert_eq!(m["image"]["block_bytes"], 4 << 20);
    assert_eq!(m["image"]["frame_bytes"], 64 << 10);
    let mut joined = Vec::new();
    for name in &files {
        joined.extend(fs::read(out.join(name)).unwrap());
    }
    let total: u64 = files
        .iter()
        .map(|n| fs::metadata(out.join(n)).unwrap().len())
        .sum();
    assert!(
        total < 12 << 20,
        "compressed {total} bytes is not smaller than the source"
    );
    let joined_path = f.out("joined.zst");
    let n = joined.len();
    let count = u32::from_le_bytes(joined[n - 9..n - 5].try_into().unwrap());
    assert_eq!(count, (12 << 20) / (64 << 10), "frames in the seek table");
    fs::write(&joined_path, joined).unwrap();
    let d = run(Command::new("zstd")
        .args(["-d", "-q", "-f", "-o"])
        .arg(f.out("decoded"))
        .arg(&joined_path));
    assert!(d.status.success(), "{}", text(&d));
    assert_eq!(
        fs::read(f.out("decoded")).unwrap(),
        fs::read(&f.src).unwrap()
    );
    assert_eq!(m["hashes"]["sha256"], tool_digest("sha256sum", &f.src));
    let c = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out));
    assert!(c.status.success(), "{}", text(&c));
    let v = rescue(&["verify", s(&out), "--json"]);
    assert_eq!(code(&v), 0, "{}", text(&v));
    let last = String::from_utf8_lossy(&v.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let r: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(r["type"], "result");
    assert_eq!(r["report"]["ok"], true);
}

#[test]
fn raw_split_segments_concatenate_to_the_source() {
    let f = fixture(10 << 20);
    let out = f.out("acq");
    let o = rescue(&[
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--split",
        "4M",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .contains("\"type\":\"result\"")
    );
    let mut joined = Vec::new();
    for name in ["image.raw.001", "image.raw.002", "image.raw.003"] {
        joined.extend(fs::read(out.join(name)).unwrap());
    }
    assert!(!out.join("image.raw.004").exists());
    assert_eq!(joined, fs::read(&f.src).unwrap());
    let c = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out));
    assert!(c.status.success(), "{}", text(&c));
}

#[test]
fn flipped_byte_fails_verify_and_names_the_window() {
    let f = fixture(8 << 20);
    let out = f.out("acq");
    let o = rescue(&["acquire", s(&f.src), "--out", s(&out), "--window", "1M"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let img = out.join("image.raw");
    let mut bytes = fs::read(&img).unwrap();
    bytes[(5 << 20) + 12345] ^= 1;
    fs::write(&img, bytes).unwrap();
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 4, "{}", text(&v));
    let t = text(&v);
    assert!(
        t.contains("first mismatching window: #5 at offset 5242880"),
        "{t}"
    );
}

#[test]
fn without_window_no_windows_are_recorded_and_verify_says_so() {
    let f = fixture(4 << 20);
    let out = f.out("acq");
    let o = rescue(&["acquire", s(&f.src), "--out", s(&out)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["image"]["window_bytes"], serde_json::Value::Null);
    assert_eq!(m["windows"], serde_json::json!([]));
    let shown = rescue(&["manifest", s(&out)]);
    assert!(
        text(&shown).contains("windows     none recorded"),
        "{}",
        text(&shown)
    );
    let img = out.join("image.raw");
    let mut bytes = fs::read(&img).unwrap();
    bytes[(3 << 20) + 7] ^= 1;
    fs::write(&img, bytes).unwrap();
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 4, "{}", text(&v));
    let t = text(&v);
    assert!(t.contains("mismatch: sha256 of the stream"), "{t}");
    assert!(
        t.contains("no hash windows were recorded") && t.contains("acquire with --window"),
        "{t}"
    );
    assert!(!t.contains("first mismatching window"), "{t}");
}

#[test]
fn edited_or_corrupt_manifest_fails_verify() {
    let f = fixture(2 << 20);
    let out = f.out("acq");
    assert_eq!(code(&rescue(&["acquire", s(&f.src), "--out", s(&out)])), 0);
    let path = out.join("manifest.json");
    let original = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        original.replace("\"examiner\": null", "\"examiner\": \"Mallory\""),
    )
    .unwrap();
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 4, "{}", text(&v));
    assert!(
        text(&v).contains("an edited manifest fails here"),
        "{}",
        text(&v)
    );

    fs::write(&path, &original[..original.len() / 2]).unwrap();
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 4, "{}", text(&v));
    assert!(
        text(&v).contains("manifest is not valid JSON"),
        "{}",
        text(&v)
    );
}

#[test]
fn resume_after_sigkill_gives_identical_hashes() {
    for format in ["raw", "zstd"] {
        let f = fixture(24 << 20);
        let out = f.out("acq");
        let args = [
            "acquire",
            s(&f.src),
            "--out",
            s(&out),
            "--format",
            format,
            "--split",
            "5M",
            "--window",
            "2M",
        ];
        let tuning = ["--block-size", "256K", "--checkpoint-every", "1M"];
        let killed = run(Command::new(BIN)
            .args(args)
            .args(tuning)
            .env("RESCUE_TEST_ABORT_AFTER_BYTES", (9 << 20).to_string()));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
        assert!(out.join(".resume.json").exists());

        let again = rescue(&args);
        assert_eq!(code(&again), 1, "{}", text(&again));
        assert!(text(&again).contains("--resume"), "{}", text(&again));

        let resumed = run(Command::new(BIN).args(args).args(tuning).arg("--resume"));
        assert_eq!(code(&resumed), 0, "{}", text(&resumed));
        let m = manifest(&out);
        assert_eq!(
            m["hashes"]["sha256"],
            tool_digest("sha256sum", &f.src),
            "{format}"
        );
        assert_eq!(m["resumes"].as_array().unwrap().len(), 1);
        assert!(!out.join(".resume.json").exists());

        // Same outputs as an uninterrupted run.
        let clean = f.out("clean");
        let o = run(Command::new(BIN)
            .args([
                "acquire",
                s(&f.src),
                "--out",
                s(&clean),
                "--format",
                format,
                "--split",
                "5M",
                "--window",
                "2M",
            ])
            .args(tuning));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let mc = manifest(&clean);
        assert_eq!(m["windows"], mc["windows"]);
        let images = |m: &serde_json::Value| -> Vec<serde_json::Value> {
            m["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["file"] != "unreadable.map")
                .cloned()
                .collect()
        };
        assert_eq!(images(&m), images(&mc), "{format}");
        let v = rescue(&["verify", s(&out)]);
        assert_eq!(code(&v), 0, "{}", text(&v));
    }
}

#[test]
fn sigint_stops_cleanly_with_an_incomplete_manifest_and_resume_finishes() {
    let f = fixture(16 << 20);
    let out = f.out("acq");
    let args = [
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--block-size",
        "256K",
        "--checkpoint-every",
        "1M",
    ];
    let o = run(Command::new(BIN)
        .args(args)
        .env("RESCUE_TEST_ABORT_AFTER_BYTES", (4 << 20).to_string())
        .env("RESCUE_TEST_ABORT_SIGNAL", "SIGINT"));
    assert_eq!(code(&o), 5, "{}", text(&o));
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["complete"], false);
    assert_eq!(m["stop_reason"], "interrupted on request");
    let acquired = m["acquired_bytes"].as_u64().unwrap();
    assert!((4 << 20..16 << 20).contains(&acquired), "{acquired}");
    let map = fs::read_to_string(out.join("unreadable.map")).unwrap();
    assert!(map.contains(&format!("{acquired:#010x}     ?")), "{map}");
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 5, "{}", text(&v));

    let o = run(Command::new(BIN).args(args).arg("--resume"));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        manifest(&out)["hashes"]["sha256"],
        tool_digest("sha256sum", &f.src)
    );
}

#[test]
fn ctrl_c_during_verify_source_is_not_a_source_mismatch() {
    let f = fixture(16 << 20);
    let out = f.out("acq");
    let o = run(Command::new(BIN)
        .args(["acquire", s(&f.src), "--out", s(&out)])
        .args(["--block-size", "256K", "--verify-source"])
        .env(
            "RESCUE_TEST_INTERRUPT_REREAD_AFTER_BYTES",
            (2 << 20).to_string(),
        ));
    // 6: complete image, source not compared (4 would claim the source changed).
    assert_eq!(code(&o), 6, "{}", text(&o));
    assert!(text(&o).contains("NOT compared"), "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["complete"], true);
    assert_eq!(m["hashes"]["sha256"], tool_digest("sha256sum", &f.src));
    assert!(m["source_verification"].is_null(), "{m}");
    let log = fs::read_to_string(out.join("acquisition.log")).unwrap();
    assert!(log.contains("re-read interrupted"), "{log}");
    assert!(!log.contains("HASHES DIFFER"), "{log}");
    let v = rescue(&["verify", s(&out)]);
    assert_eq!(code(&v), 0, "{}", text(&v));
}

#[test]
fn a_resume_with_another_zstd_level_is_refused() {
    let f = fixture(16 << 20);
    let out = f.out("acq");
    let args = [
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--format",
        "zstd",
        "--block-size",
        "256K",
        "--checkpoint-every",
        "1M",
    ];
    let o = run(Command::new(BIN)
        .args(args)
        .env("RESCUE_TEST_ABORT_AFTER_BYTES", (4 << 20).to_string())
        .env("RESCUE_TEST_ABORT_SIGNAL", "SIGINT"));
    assert_eq!(code(&o), 5, "{}", text(&o));
    let o = run(Command::new(BIN)
        .args(args)
        .args(["--resume", "--zstd-level", "19"]));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("--zstd-level"), "{}", text(&o));
    let o = run(Command::new(BIN).args(args).arg("--resume"));
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn a_checkpoint_with_zstd_but_no_level_is_refused() {
    let f = fixture(16 << 20);
    let out = f.out("acq");
    let args = [
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--format",
        "zstd",
        "--block-size",
        "256K",
        "--checkpoint-every",
        "1M",
    ];
    let o = run(Command::new(BIN)
        .args(args)
        .env("RESCUE_TEST_ABORT_AFTER_BYTES", (4 << 20).to_string())
        .env("RESCUE_TEST_ABORT_SIGNAL", "SIGINT"));
    assert_eq!(code(&o), 5, "{}", text(&o));
    let path = out.join(".resume.json");
    let mut cp: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(cp["settings"]["format"], "zstd-seekable");
    cp["settings"]["zstd_level"] = serde_json::Value::Null;
    fs::write(&path, serde_json::to_vec(&cp).unwrap()).unwrap();
    let o = run(Command::new(BIN).args(args).arg("--resume"));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("impossible settings"), "{}", text(&o));
}

#[test]
fn bad_input_gives_clear_errors() {
    let f = fixture(1 << 20);
    fs::copy(&f.src, f.out("image.raw")).unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "acquire".into(),
                s(&f.out("missing")).into(),
                "--out".into(),
                s(&f.out("a")).into(),
            ],
            1,
            "No such file",
        ),
        (
            vec![
                "acquire".into(),
                s(f.dir.path()).into(),
                "--out".into(),
                s(&f.out("a")).into(),
            ],
            1,
            "is a directory",
        ),
        (
            vec![
                "acquire".into(),
                "/dev/null".into(),
                "--out".into(),
                s(&f.out("a")).into(),
            ],
            1,
            "character device",
        ),
        (
            vec![
                "acquire".into(),
                s(&f.src).into(),
                "--out".into(),
                s(&f.out("a")).into(),
                "--hash".into(),
                "sha3".into(),
            ],
            2,
            "unknown hash algorithm",
        ),
        (
            vec![
                "acquire".into(),
                s(&f.src).into(),
                "--out".into(),
                s(&f.out("a")).into(),
                "--split".into(),
                "1M".into(),
            ],
            1,
            "smaller than the",
        ),
        (
            vec![
                "acquire".into(),
                s(&f.src).into(),
                "--out".into(),
                "/proc/rescue-test".into(),
            ],
            1,
            "destination",
        ),
        (
            vec![
                "acquire".into(),
                s(&f.out("image.raw")).into(),
                "--out".into(),
                s(f.dir.path()).into(),
            ],
            1,
            "could be overwritten",
        ),
        (
            vec!["verify".into(), s(&f.out("nothing")).into()],
            1,
            "manifest",
        ),
    ];
    for (args, want, needle) in cases {
        let o = run(Command::new(BIN).args(&args));
        assert_eq!(code(&o), want, "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {}",
            text(&o)
        );
    }
    // The failed runs left nothing behind that a later run would trip over.
    assert!(!f.out("a").join("manifest.json").exists());
}

/// Root-only fixtures: loop devices and mounts. A skip is loud; the gate variables fail it.
fn gate(var: &str, what: &str, why: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        panic!("{var}=1 but {what} is unavailable: {why}");
    }
    eprintln!("SKIP: {what} unavailable ({why}); set {var}=1 to require it");
    false
}

struct Loop(String);

impl Loop {
    fn attach(file: &Path, read_only: bool) -> Result<Loop, String> {
        let mut cmd = Command::new("losetup");
        if read_only {
            cmd.arg("-r");
        }
        let o = run(cmd.args(["-f", "--show"]).arg(file));
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_owned());
        }
        Ok(Loop(String::from_utf8_lossy(&o.stdout).trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // `rescue acquire` leaves the kernel read-only flag set (on purpose); the loop device outlives
        // this test, so clear it for whoever attaches it next.
        let _ = Command::new("blockdev")
            .arg("--setrw")
            .arg(&self.0)
            .status();
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `md assemble` without devices scans every block device of the host: it only looks, so the disks it
/// scanned keep their read-only flag as it was (a flag left set would make the host's own `fdisk`,
/// `mkfs` or LVM tools fail until the next reboot); a device named on the command line is
/// write-blocked before it is read.
#[test]
fn an_md_scan_leaves_host_disks_writable_and_a_named_disk_is_write_blocked() {
    let f = fixture(4 << 20);
    let dev = match Loop::attach(&f.src, false) {
        Ok(l) => l,
        Err(e) => {
            gate("RESCUE_REQUIRE_LOOP", "losetup", &e);
            return;
        }
    };
    let read_only = || {
        let o = run(Command::new("blockdev").args(["--getro", &dev.0]));
        String::from_utf8_lossy(&o.stdout).trim() == "1"
    };
    assert!(!read_only(), "{} attached writable", dev.0);
    let o = rescue(&["md", "assemble"]);
    assert!(
        text(&o).contains("device(s) scanned") || text(&o).contains("already a member"),
        "the scan ran:\n{}",
        text(&o)
    );
    assert!(
        !read_only(),
        "the scan set the read-only flag on {}, which it only looked at:\n{}",
        dev.0,
        text(&o)
    );
    let o = rescue(&["md", "assemble", &dev.0]);
    assert!(
        text(&o).contains(&format!("{}: no md superblock", dev.0)),
        "{}",
        text(&o)
    );
    assert!(
        read_only(),
        "{} named is write-blocked before it is read",
        dev.0
    );
}

#[test]
fn loop_device_acquisition_is_write_blocked_and_matches() {
    let f = fixture(16 << 20);
    let dev = match Loop::attach(&f.src, true) {
        Ok(l) => l,
        Err(e) => {
            gate("RESCUE_REQUIRE_LOOP", "losetup", &e);
            return;
        }
    };
    let out = f.out("acq");
    let o = rescue(&[
        "acquire",
        &dev.0,
        "--out",
        s(&out),
        "--hash",
        "sha256,md5,blake3",
        "--verify-source",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["hashes"]["sha256"], tool_digest("sha256sum", &f.src));
    assert_eq!(m["hashes"]["md5"], tool_digest("md5sum", &f.src));
    assert_eq!(m["source"]["kind"], "block_device");
    assert_eq!(m["source"]["size_bytes"], 16 << 20);
    assert_eq!(m["read_only"]["applied"], true);
    assert_eq!(m["read_only"]["after"][&dev.0], true, "{}", m["read_only"]);
    assert_eq!(m["source_verification"]["matched"], true);
    let c = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out));
    assert!(c.status.success(), "{}", text(&c));
}

#[test]
fn loop_device_mounted_or_hosting_the_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    fs::write(&img, vec![0u8; 16 << 20]).unwrap();
    let mk = run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    if !mk.status.success() {
        gate("RESCUE_REQUIRE_LOOP", "mkfs.ext4", &text(&mk));
        return;
    }
    let dev = match Loop::attach(&img, false) {
        Ok(l) => l,
        Err(e) => {
            gate("RESCUE_REQUIRE_LOOP", "losetup", &e);
            return;
        }
    };
    let rw = run(Command::new("blockdev").arg("--setrw").arg(&dev.0));
    assert!(rw.status.success(), "{}", text(&rw));
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = run(Command::new("mount").arg(&dev.0).arg(&mnt));
    if !m.status.success() {
        gate("RESCUE_REQUIRE_LOOP", "mount", &text(&m));
        return;
    }
    let guard = MountGuard(mnt.clone());
    let o = rescue(&["acquire", &dev.0, "--out", s(&dir.path().join("out"))]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("mounted read-write"), "{}", text(&o));
    drop(guard);

    let m = run(Command::new("mount")
        .args(["-o", "ro"])
        .arg(&dev.0)
        .arg(&mnt));
    assert!(m.status.success(), "{}", text(&m));
    let _guard = MountGuard(mnt.clone());
    let o = rescue(&["acquire", &dev.0, "--out", s(&mnt.join("out"))]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("inside the source"), "{}", text(&o));
}

#[test]
fn full_destination_stops_cleanly_and_resume_finishes() {
    let f = fixture(12 << 20);
    let mnt = f.out("small");
    fs::create_dir(&mnt).unwrap();
    let m = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt));
    if !m.status.success() {
        gate("RESCUE_REQUIRE_LOOP", "mounting a small tmpfs", &text(&m));
        return;
    }
    let _guard = MountGuard(mnt.clone());
    let out = mnt.join("acq");
    let args = [
        "acquire",
        s(&f.src),
        "--out",
        s(&out),
        "--block-size",
        "256K",
        "--checkpoint-every",
        "1M",
    ];
    let o = rescue(&args);
    assert_eq!(code(&o), 5, "{}", text(&o));
    assert!(text(&o).contains("destination is full"), "{}", text(&o));
    assert_eq!(manifest(&out)["complete"], false);

    let r = run(Command::new("mount")
        .args(["-o", "remount,size=40m"])
        .arg(&mnt));
    assert!(r.status.success(), "{}", text(&r));
    let o = run(Command::new(BIN).args(args).arg("--resume"));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["complete"], true);
    assert_eq!(m["hashes"]["sha256"], tool_digest("sha256sum", &f.src));
    assert_eq!(
        fs::read(out.join("image.raw")).unwrap(),
        fs::read(&f.src).unwrap()
    );
}

#[test]
fn read_only_destination_is_refused_before_anything_is_read() {
    let f = fixture(1 << 20);
    let mnt = f.out("ro");
    fs::create_dir(&mnt).unwrap();
    let m = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&mnt));
    if !m.status.success() {
        gate(
            "RESCUE_REQUIRE_LOOP",
            "mounting a read-only tmpfs",
            &text(&m),
        );
        return;
    }
    let _guard = MountGuard(mnt.clone());
    let o = rescue(&["acquire", s(&f.src), "--out", s(&mnt)]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("is not writable"), "{}", text(&o));
}
