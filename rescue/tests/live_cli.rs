//! `rescue live` through the real binary against a fixture of a running system
//! (`RESCUE_TEST_LIVE_ROOT`, a `test-hooks` hook): `proc/iomem` with known "System RAM" ranges (and
//! nested entries), a crafted `proc/kcore` ELF core whose segments hold patterned bytes (the last page
//! cut off, so it is unreadable), `sys/kernel/security/lockdown`. The LiME file is read by an
//! independent reader (a Python `struct.unpack` of the headers, written here), the lists by
//! `sha256sum -c`, the zstd seekable capture by `zstd -d`. The capture in the real kernel's memory is
//! the QEMU scenario's (livetest).

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
    let status = s3::wait_exit(child, TIMEOUT, &line);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The fixture's physical memory: byte at address `a`.
fn byte_at(a: u64) -> u8 {
    (a.wrapping_mul(131) ^ (a >> 9) ^ (a >> 17)) as u8
}

/// (start, end inclusive) of the fixture's System RAM.
const RAM: [(u64, u64); 2] = [(0x1000, 0x9fbff), (0x10_0000, 0x4f_ffff)];
const DIRECT: u64 = 0xffff_8880_0000_0000;
/// The page the kcore file is cut before: unreadable.
const CUT_PAGE: u64 = 0x4f_f000;

/// A fixture root: iomem, a kcore whose `PT_LOAD` segments carry `p_paddr` (or 0 with `paddr`
/// false, as kernels before 4.19 write it), a lockdown file; `dev/` empty.
fn fixture(dir: &Path, paddr: bool, lockdown: &str, kcore: bool) -> PathBuf {
    let root = dir.join("host");
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::create_dir_all(root.join("sys/kernel/security")).unwrap();
    fs::write(
        root.join("sys/kernel/security/lockdown"),
        format!("{lockdown}\n"),
    )
    .unwrap();
    fs::write(
        root.join("proc/iomem"),
        "00000000-00000fff : Reserved\n\
         00001000-0009fbff : System RAM\n\
         0009fc00-0009ffff : Reserved\n\
         000f0000-000fffff : System ROM\n\
         00100000-004fffff : System RAM\n  \
         00200000-002fffff : Kernel code\n  \
         00300000-0033ffff : Kernel data\n\
         fe000000-fe00ffff : PCI Bus 0000:00\n",
    )
    .unwrap();
    if !kcore {
        return root;
    }
    // ELF64 header, one vmalloc segment (no physical address), one segment per RAM range.
    let mut segs: Vec<(u64, u64, u64, u64)> = vec![(0xffff_c900_0000_0000, u64::MAX, 0, 0x1000)];
    for (s, e) in RAM {
        segs.push((DIRECT + s, if paddr { s } else { 0 }, s, e - s + 1));
    }
    if !paddr {
        segs[0].1 = 0;
    }
    let phoff = 64u64;
    let mut offset = phoff + 56 * segs.len() as u64;
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[6] = 1;
    elf[16..18].copy_from_slice(&4u16.to_le_bytes());
    elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    let mut data = Vec::new();
    for (vaddr, pa, phys, len) in &segs {
        let mut p = vec![0u8; 56];
        p[..4].copy_from_slice(&1u32.to_le_bytes());
        p[8..16].copy_from_slice(&offset.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[24..32].copy_from_slice(&pa.to_le_bytes());
        p[32..40].copy_from_slice(&len.to_le_bytes());
        p[40..48].copy_from_slice(&len.to_le_bytes());
        elf.extend_from_slice(&p);
        offset += len;
        data.extend((*phys..phys + len).map(|a| if *pa == u64::MAX { 0xee } else { byte_at(a) }));
    }
    elf.extend_from_slice(&data);
    // The file ends before the last page of RAM: reading it meets the end of the file.
    elf.truncate(elf.len() - 0x1000);
    fs::write(root.join("proc/kcore"), elf).unwrap();
    root
}

fn live(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("live")
        .args(args)
        .env("RESCUE_TEST_LIVE_ROOT", root)
        .env_remove("RESCUE_TEST_LIVE_OUT_PLACE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// A LiME reader written here, independent of ours: each header unpacked with `struct`, each
/// range's bytes written to `DIR/<start>.bin`; prints `start end` per range.
const LIME_READER: &str = r#"
import struct, sys
path, out = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    while True:
        h = f.read(32)
        if not h:
            break
        magic, version, start, end, pad = struct.unpack("<IIQQ8s", h)
        assert magic == 0x4C694D45, hex(magic)
        assert version == 1, version
        assert pad == b"\0" * 8, pad
        data = f.read(end - start + 1)
        assert len(data) == end - start + 1, "short range"
        open("%s/%x.bin" % (out, start), "wb").write(data)
        print("%x %x" % (start, end))
"#;

/// Unmounts (lazily) if a test stops while mounted.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = run(Command::new(BIN).args(["umount", "--lazy"]).arg(&self.0));
    }
}

/// Root and `/dev/fuse`, or a skip (a failure with `RESCUE_REQUIRE_LOOP=1`, as `cargo xtask test`
/// sets it for `tests/mount_cli.rs`).
fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("RESCUE_REQUIRE_LOOP").is_ok_and(|v| v == "1") {
        panic!("RESCUE_REQUIRE_LOOP=1 but FUSE mounts need root and /dev/fuse");
    }
    eprintln!("SKIP: rescue mount of the capture (needs root and /dev/fuse)");
    false
}

fn sha256sum_check(dir: &Path) {
    let o = run(Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(dir));
    assert!(o.status.success(), "sha256sum -c in {dir:?}: {}", text(&o));
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(out.join("live-manifest.json")).unwrap()).unwrap()
}

#[test]
fn live_captures_the_fixture_memory_as_lime_with_its_unreadable_page() {
    let tmp = tempfile::tempdir().unwrap();
    for paddr in [true, false] {
        let case = tmp.path().join(if paddr { "paddr" } else { "direct" });
        let root = fixture(&case, paddr, "[none] integrity confidentiality", true);
        let out = case.join("out");
        let o = live(
            &root,
            &[
                "--out",
                out.to_str().unwrap(),
                "--allow-local-out",
                "--case",
                "IR-7",
            ],
            &[],
        );
        // 3: captured, with unreadable pages.
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("memory: 4.6 MiB of System RAM"), "{stdout}");
        assert!(
            stdout.lines().all(|l| l.chars().count() < 80),
            "summary wider than 80 columns:\n{stdout}"
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("proc/kcore: reading it: "), "{stderr}");
        assert!(
            stderr.contains(if paddr {
                "from p_paddr"
            } else {
                "the direct map"
            }),
            "{stderr}"
        );

        // The independent reader: the ranges are iomem's, the bytes are the fixture's, the cut page
        // reads as zeros.
        let ranges = case.join("ranges");
        fs::create_dir(&ranges).unwrap();
        let r = run(Command::new("python3").args([
            "-c",
            LIME_READER,
            out.join("memory/memory.lime").to_str().unwrap(),
            ranges.to_str().unwrap(),
        ]));
        assert!(r.status.success(), "{}", text(&r));
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            "1000 9fbff\n100000 4fffff\n"
        );
        for (s, e) in RAM {
            let got = fs::read(ranges.join(format!("{s:x}.bin"))).unwrap();
            assert_eq!(got.len() as u64, e - s + 1);
            for (i, b) in got.iter().enumerate() {
                let a = s + i as u64;
                let want = if a >= CUT_PAGE { 0 } else { byte_at(a) };
                assert_eq!(*b, want, "byte at physical {a:#x} (paddr {paddr})");
            }
        }

        // The manifest names the source, the ranges and the unreadable page by physical address.
        let m = manifest(&out);
        assert_eq!(m["schema"], "rescue.live/1");
        assert_eq!(m["case"]["case_id"], "IR-7");
        assert_eq!(m["memory"]["captured"], true);
        assert_eq!(m["memory"]["lockdown"], "none");
        assert_eq!(
            m["memory"]["unreadable"],
            serde_json::json!([{"start": CUT_PAGE, "length": 4096}])
        );
        assert_eq!(m["memory"]["ranges"][1]["end"], 0x4f_ffff);
        let used = &m["memory"]["sources"][0];
        assert_eq!(used["used"], true);
        assert!(
            used["source"].as_str().unwrap().ends_with("proc/kcore"),
            "{used}"
        );
        let steps: Vec<&str> = m["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["volatile state", "memory", "stable state"]);
        // The acquisition's own list, the driver's manifest (sector = the LiME header size) and the
        // top-level list over everything.
        sha256sum_check(&out.join("memory"));
        sha256sum_check(&out);
        let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        for name in [
            "memory/memory.lime",
            "memory/manifest.json",
            "memory/SHA256SUMS",
            "live-manifest.json",
            "case-log.jsonl",
        ] {
            assert!(sums.contains(&format!("  {name}\n")), "{name}:\n{sums}");
        }
        let v = run(Command::new(BIN)
            .args(["log", "verify"])
            .arg(out.join("case-log.jsonl")));
        assert!(v.status.success(), "{}", text(&v));
        let v = run(Command::new(BIN).arg("verify").arg(out.join("memory")));
        assert!(v.status.success(), "{}", text(&v));
    }

    // The same fixture as lime-zstd decodes (with zstd itself) to the same LiME bytes.
    let root = tmp.path().join("paddr/host");
    let out2 = tmp.path().join("zstd-out");
    let o = live(
        &root,
        &[
            "--out",
            out2.to_str().unwrap(),
            "--allow-local-out",
            "--format",
            "lime-zstd",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    sha256sum_check(&out2);
    let d = run(Command::new("zstd")
        .args(["-d", "-q", "-c"])
        .arg(out2.join("memory/memory.lime.zst")));
    assert!(d.status.success(), "{}", text(&d));
    let raw = fs::read(tmp.path().join("paddr/out/memory/memory.lime")).unwrap();
    assert!(d.stdout == raw, "zstd -d of lime-zstd differs from lime");
    assert_eq!(manifest(&out2)["memory"]["format"], "lime-zstd");
    let v = run(Command::new(BIN).arg("verify").arg(out2.join("memory")));
    assert!(v.status.success(), "{}", text(&v));

    // `rescue mount` serves the zstd capture as the plain LiME file.
    if can_mount() {
        let mp = tmp.path().join("mp");
        fs::create_dir(&mp).unwrap();
        let o = run(Command::new(BIN)
            .arg("mount")
            .arg(out2.join("memory"))
            .arg(&mp));
        assert!(o.status.success(), "{}", text(&o));
        let mounted = Unmount(mp.clone());
        let served = fs::read(mp.join("image.raw")).unwrap();
        assert!(
            served == raw,
            "the mounted image.raw differs from the LiME file"
        );
        let o = run(Command::new(BIN).arg("umount").arg(&mounted.0));
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn live_without_a_memory_source_says_why_and_keeps_the_volatile_state() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path(), true, "none integrity [confidentiality]", false);
    let out = tmp.path().join("out");
    let o = live(
        &root,
        &["--out", out.to_str().unwrap(), "--allow-local-out"],
        &[],
    );
    // 7: the volatile state, but no memory.
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    // Words as printed, whatever the wrapping at 80 columns.
    let stdout = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stdout.contains("MEMORY NOT CAPTURED: no source of physical memory could be read; the kernel is locked down ([confidentiality])"),
        "{stdout}"
    );
    let m = manifest(&out);
    assert_eq!(m["memory"]["captured"], false);
    let details: Vec<String> = m["memory"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s["source"].as_str().unwrap(),
                s["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details[0].contains("kcore: missing"), "{details:?}");
    assert!(
        details[1].contains("crash: missing (the crash driver is not loaded"),
        "{details:?}"
    );
    assert!(!out.join("memory").exists());
    sha256sum_check(&out);

    // --no-memory records that it was not asked for.
    let out = tmp.path().join("out-nomem");
    let o = live(
        &root,
        &[
            "--out",
            out.to_str().unwrap(),
            "--allow-local-out",
            "--no-memory",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        manifest(&out)["memory"]["reason"],
        "not requested (--no-memory)"
    );
}

#[test]
fn ctrl_c_during_the_memory_capture_stops_it_and_keeps_the_rest_checkable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path(), true, "[none]", true);
    let out = tmp.path().join("out");
    let o = live(
        &root,
        &["--out", out.to_str().unwrap(), "--allow-local-out"],
        &[
            ("RESCUE_TEST_ABORT_AFTER_BYTES", "1"),
            ("RESCUE_TEST_ABORT_SIGNAL", "SIGINT"),
        ],
    );
    // 5: stopped on request.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let m = manifest(&out);
    assert_eq!(m["memory"]["captured"], false);
    assert_eq!(m["memory"]["status"], "interrupted");
    assert_eq!(m["memory"]["reason"], "interrupted on request");
    assert_eq!(m["steps"][2]["step"], "stable state");
    // The partial capture and its incomplete manifest are listed as they lie.
    sha256sum_check(&out);
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  memory/manifest.json\n"), "{sums}");
}

#[test]
fn live_refuses_an_out_on_the_system_disk_or_in_ram_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path(), true, "[none]", true);
    let out = tmp.path().join("out");
    for (place, why) in [
        (
            "system:sda:/,/home",
            "it is on sda, a disk of the running system (/, /home); writing there overwrites deleted files",
        ),
        (
            "ram:tmpfs",
            "it is on a tmpfs RAM filesystem; writing there displaces the memory being captured",
        ),
    ] {
        let o = live(
            &root,
            &["--out", out.to_str().unwrap()],
            &[("RESCUE_TEST_LIVE_OUT_PLACE", place)],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(why), "{stderr}");
        assert!(stderr.contains("--allow-local-out"), "{stderr}");
        assert!(!out.exists(), "a refused --out is not created");
    }
    // A used directory is refused too: nothing is written over.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "x").unwrap();
    let o = live(
        &root,
        &["--out", out.to_str().unwrap(), "--allow-local-out"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds files already (notes.txt)"),
        "{}",
        text(&o)
    );
}

#[path = "common/s3.rs"]
mod s3;
use s3::{ACCESS, SECRET};

#[test]
fn live_streams_to_an_s3_prefix_that_sha256sum_checks() {
    // s3s-fs, waited for on its own "server is running" line.
    let Some(server) = s3::Server::s3s_fs("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = server.root.clone().unwrap();
    let endpoint = server.endpoint();
    let root = fixture(tmp.path(), true, "[none]", true);
    let s3 = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .args(["--endpoint", &endpoint])
            .env("RESCUE_TEST_LIVE_ROOT", &root)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        run(&mut c)
    };
    let o = s3(&["live", "--out", "s3://evidence/ir7/web01", "--case", "IR-7"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // s3s-fs keeps each object as a plain file: the prefix is checked like a directory.
    let prefix = store.join("evidence/ir7/web01");
    sha256sum_check(&prefix);
    sha256sum_check(&prefix.join("memory"));
    let m = manifest(&prefix);
    assert_eq!(m["memory"]["image"], "memory/memory.lime");
    assert_eq!(
        m["memory"]["unreadable"],
        serde_json::json!([{"start": CUT_PAGE, "length": 4096}])
    );
    let lime = fs::read(prefix.join("memory/memory.lime")).unwrap();
    assert_eq!(lime.len() as u64, 32 + 0x9ec00 + 32 + 0x40_0000);
    assert_eq!(lime[32 + 0x9ec00 + 32 + 5], byte_at(0x10_0005));
    let sums = fs::read_to_string(prefix.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  case-log.jsonl\n"), "{sums}");
    let v = run(Command::new(BIN)
        .args(["log", "verify"])
        .arg(prefix.join("case-log.jsonl")));
    assert!(v.status.success(), "{}", text(&v));
    let v = s3(&["verify", "s3://evidence/ir7/web01/memory/"]);
    assert!(v.status.success(), "{}", text(&v));
    // A second run into the same prefix is refused: nothing is written over.
    let o = s3(&["live", "--out", "s3://evidence/ir7/web01", "--no-memory"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds objects already"),
        "{}",
        text(&o)
    );
}
