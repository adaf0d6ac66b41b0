//! `rescue mount` / `rescue umount` through the real binary: an ext4 file system made with
//! `mke2fs -d` inside a GPT disk image is acquired (zstd seekable, split raw, and zstd into an S3
//! store served by s3s-fs), mounted, and read back with tools someone else wrote: `sha256sum` of
//! `MOUNTPOINT/image.raw` against the manifest, Sleuth Kit's `fls -r -m /` against `fls` on the
//! original disk (directly and through a read-only loop device), plus reads at many offsets compared
//! with the original; from S3, s3s's own request log shows every read of the image object was a ranged
//! GET of part of it. A damaged zstd frame with `--verify-windows` fails its window with EIO and
//! nothing else; SIGTERM to a foreground server unmounts.
//!
//! Gates: FUSE mounts need root and `/dev/fuse` (`RESCUE_REQUIRE_LOOP=1`, set by `cargo xtask test`,
//! turns the skip into a failure); `mke2fs`, `sfdisk`, `fls` (`RESCUE_REQUIRE_TOOLS=1`); the S3 test
//! needs s3s-fs (`RESCUE_REQUIRE_S3S=1`), found as `tests/remote_cli.rs` finds it.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rescue");
const TIMEOUT: Duration = Duration::from_secs(180);
const ACCESS: &str = "RESCUETESTKEY";
const SECRET: &str = "rescue-test-secret-0123456789";
/// The partition starts at sector 2048 (1 MiB).
const PART_SECTOR: &str = "2048";

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
    let status = wait_exit(child, &line);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Waits for `child` to exit (a blocking `wait` on a thread), killing it and failing after
/// [`TIMEOUT`].
fn wait_exit(mut child: Child, what: &str) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("timed out after {TIMEOUT:?}: {what}");
        }
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

fn rescue(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args))
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn gate(var: &str, what: &str, why: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        panic!("{var}=1 but {what} is unavailable: {why}");
    }
    eprintln!("SKIP: {what} unavailable ({why}); set {var}=1 to require it");
    false
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Root, `/dev/fuse` and the fixture tools, or a skip (a failure when required).
fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/fuse").exists() {
        return gate(
            "RESCUE_REQUIRE_LOOP",
            "FUSE mounts",
            "needs root and /dev/fuse",
        );
    }
    for tool in ["mke2fs", "sfdisk", "fls", "sha256sum", "losetup"] {
        if !have(tool) {
            return gate("RESCUE_REQUIRE_TOOLS", tool, "not installed");
        }
    }
    true
}

/// A 48 MiB GPT disk image whose one partition (sector 2048 on) is ext4 made with `mke2fs -d` from a
/// small tree: text, incompressible files of many sizes, nested directories, a symlink.
fn make_disk(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc/ssh")).unwrap();
    fs::create_dir_all(tree.join("var/log/nested/deeper")).unwrap();
    fs::write(tree.join("etc/hostname"), "suspect-01\n").unwrap();
    fs::write(
        tree.join("etc/ssh/sshd_config"),
        "PermitRootLogin no\n".repeat(200),
    )
    .unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..40u64 {
        let len = 1000 + i * 37_000;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(tree.join(format!("var/log/nested/deeper/blob{i}")), data).unwrap();
    }
    std::os::unix::fs::symlink("../etc/hostname", tree.join("var/hostname-link")).unwrap();
    let fs_img = dir.join("fs.img");
    ok(run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&fs_img)
        .arg("40M")));
    let disk = dir.join("disk.img");
    fs::File::create(&disk).unwrap().set_len(48 << 20).unwrap();
    let mut sf = Command::new("sfdisk")
        .args(["-q"])
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\nstart=2048, size=81920, type=linux\n")
        .unwrap();
    assert!(sf.wait().unwrap().success());
    let fs_bytes = fs::read(&fs_img).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .write_all_at(&fs_bytes, 2048 * 512)
        .unwrap();
    disk
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn sha256sum(path: &Path) -> String {
    let o = ok(run(Command::new("sha256sum").arg(path)));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `fls -r -m / -o 2048 IMAGE`: the bodyfile of every file, as Sleuth Kit sees it.
fn fls(image: &Path) -> String {
    let o = ok(run(Command::new("fls")
        .args(["-r", "-m", "/", "-o", PART_SECTOR])
        .arg(image)));
    String::from_utf8(o.stdout).unwrap()
}

/// Unmounts (lazily) on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn image(&self) -> PathBuf {
        self.0.join("image.raw")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.image().exists() {
            let _ = run(Command::new(BIN).args(["umount", "--lazy"]).arg(&self.0));
        }
    }
}

fn mount(source: &str, mp: &Path, extra: &[&str]) -> Mounted {
    fs::create_dir_all(mp).unwrap();
    let mut c = Command::new(BIN);
    c.arg("mount").arg(source).arg(mp).args(extra);
    let o = ok(run(c
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("image.raw"), "{}", text(&o));
    Mounted(mp.to_owned())
}

/// Reads at many offsets and lengths (frame and segment boundaries included) equal the original.
fn random_reads_match(mounted: &Path, original: &Path) {
    let a = fs::File::open(mounted).unwrap();
    let b = fs::File::open(original).unwrap();
    let size = b.metadata().unwrap().len();
    assert_eq!(a.metadata().unwrap().len(), size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400 {
        let len = if i % 2 == 0 {
            4096
        } else {
            1 + (next() % 300_000) as usize
        };
        let off = next() % (size - len as u64);
        let (mut p, mut q) = (vec![0u8; len], vec![0u8; len]);
        a.read_exact_at(&mut p, off).unwrap();
        b.read_exact_at(&mut q, off).unwrap();
        assert!(p == q, "{len} bytes at offset {off} differ");
    }
    // The last byte, and a read past the end that returns nothing.
    let mut one = [0u8; 1];
    a.read_exact_at(&mut one, size - 1).unwrap();
    assert_eq!(a.read_at(&mut one, size).unwrap(), 0);
}

/// The same checks for every layout: sha256sum against the manifest, fls against the original's,
/// reads at many offsets; then `rescue umount` unmounts and the server exits.
fn check_mounted(acq: &Path, m: &Mounted, disk: &Path, want_fls: &str) {
    let man = manifest(acq);
    assert_eq!(
        sha256sum(&m.image()),
        man["hashes"]["sha256"].as_str().unwrap()
    );
    assert_eq!(fls(&m.image()), want_fls);
    random_reads_match(&m.image(), disk);
    let o = ok(rescue(&["umount", m.0.to_str().unwrap()]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("exited"), "{}", text(&o));
    assert!(!m.image().exists(), "still mounted after umount");
}

#[test]
fn zstd_and_split_acquisitions_mount_as_the_acquired_disk() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let want_fls = fls(&disk);
    assert!(
        want_fls.contains("/var/log/nested/deeper/blob39|") && want_fls.contains("/etc/hostname|"),
        "{want_fls}"
    );

    // zstd seekable, 256 KiB reads cut into the default 64 KiB frames: reads cross frames all the time.
    let zst = dir.path().join("acq-zstd");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        zst.to_str().unwrap(),
        "--format",
        "zstd",
        "--window",
        "4M",
        "--block-size",
        "256K",
    ]));
    let m = mount(
        zst.to_str().unwrap(),
        &dir.path().join("mnt-zstd"),
        &["--verify-windows"],
    );
    let table = frames(&fs::read(zst.join("image.raw.zst")).unwrap());
    assert_eq!(manifest(&zst)["image"]["frame_bytes"], 64 << 10);
    assert_eq!(
        table.len() as u64,
        fs::metadata(&disk).unwrap().len() / (64 << 10)
    );
    check_mounted(&zst, &m, &disk, &want_fls);

    // One frame per 4 MiB read, and a manifest without `frame_bytes`: an acquisition made before
    // frames were cut smaller than the read size still mounts.
    let old = dir.path().join("acq-zstd-4m");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        old.to_str().unwrap(),
        "--format",
        "zstd",
        "--frame-size",
        "4M",
    ]));
    let mut man = manifest(&old);
    assert_eq!(man["image"]["frame_bytes"], 4 << 20);
    man["image"].as_object_mut().unwrap().remove("frame_bytes");
    fs::write(old.join("manifest.json"), man.to_string()).unwrap();
    let table = frames(&fs::read(old.join("image.raw.zst")).unwrap());
    assert_eq!(
        table.len() as u64,
        fs::metadata(&disk).unwrap().len().div_ceil(4 << 20)
    );
    let m = mount(old.to_str().unwrap(), &dir.path().join("mnt-zstd-4m"), &[]);
    check_mounted(&old, &m, &disk, &want_fls);

    // Raw in 7 MiB segments, read through a read-only loop device as well.
    let split = dir.path().join("acq-split");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        split.to_str().unwrap(),
        "--split",
        "7M",
    ]));
    assert!(split.join("image.raw.007").exists());
    let m = mount(split.to_str().unwrap(), &dir.path().join("mnt-split"), &[]);
    let lo = run(Command::new("losetup")
        .args(["-f", "--show", "-r"])
        .arg(m.image()));
    if lo.status.success() {
        let dev = String::from_utf8_lossy(&lo.stdout).trim().to_owned();
        let via_loop = fls(Path::new(&dev));
        // While the loop device holds the file, umount refuses and says why.
        let busy = rescue(&["umount", m.0.to_str().unwrap()]);
        let _ = run(Command::new("losetup").args(["-d", &dev]));
        assert_eq!(via_loop, want_fls);
        assert!(!busy.status.success(), "{}", text(&busy));
        assert!(
            String::from_utf8_lossy(&busy.stderr).contains("in use"),
            "{}",
            text(&busy)
        );
    } else {
        gate("RESCUE_REQUIRE_LOOP", "losetup", &text(&lo));
    }
    // Without udev the detach is done when `losetup -d` returns. Where udev runs, it opens the loop device
    // to probe it on the change event `losetup -d` causes, which defers the detach (autoclear) until it
    // closes it: wait for udev's queue (returns at once without udev), then the mount is not in use.
    let _ = run(Command::new("udevadm").args(["settle", "--timeout=120"]));
    ok(rescue(&["umount", m.0.to_str().unwrap()]));
    assert!(!m.image().exists());
    let m = mount(split.to_str().unwrap(), &dir.path().join("mnt-split"), &[]);
    check_mounted(&split, &m, &disk, &want_fls);
}

/// Stream offsets and stored offsets of every frame, from the seek table at the end of the file.
fn frames(zst: &[u8]) -> Vec<(u64, u64, u64)> {
    let n = zst.len();
    let count = u32::from_le_bytes(zst[n - 9..n - 5].try_into().unwrap()) as usize;
    let table = &zst[n - 9 - count * 8..n - 9];
    let (mut stored, mut stream) = (0u64, 0u64);
    table
        .chunks_exact(8)
        .map(|e| {
            let c = u64::from(u32::from_le_bytes(e[..4].try_into().unwrap()));
            let d = u64::from(u32::from_le_bytes(e[4..].try_into().unwrap()));
            let r = (stored, c, stream);
            stored += c;
            stream += d;
            r
        })
        .collect()
}

#[test]
fn a_damaged_zstd_frame_fails_its_window_with_eio_and_nothing_else() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let acq = dir.path().join("acq");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        acq.to_str().unwrap(),
        "--format",
        "zstd",
        "--window",
        "1M",
        "--block-size",
        "256K",
    ]));
    // Damage the middle of the frame holding stream offset 3 MiB + 300 KiB (window 3), which lies in
    // the file system's data (incompressible blobs), so the frame is not all zeros.
    let path = acq.join("image.raw.zst");
    let mut bytes = fs::read(&path).unwrap();
    let target = (3 << 20) + 300 * 1024;
    let (stored, len, _) = frames(&bytes)
        .into_iter()
        .rfind(|(_, _, stream)| *stream <= target)
        .unwrap();
    for b in &mut bytes[(stored + len / 2) as usize..(stored + len / 2 + 16) as usize] {
        *b ^= 0x5a;
    }
    fs::write(&path, &bytes).unwrap();

    let mp = dir.path().join("mnt");
    let m = mount(acq.to_str().unwrap(), &mp, &["--verify-windows"]);
    let f = fs::File::open(m.image()).unwrap();
    let orig = fs::File::open(&disk).unwrap();
    let mut buf = vec![0u8; 4096];
    for off in [3u64 << 20, target, (4 << 20) - 4096] {
        let e = f.read_exact_at(&mut buf, off).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "offset {off}: {e}");
    }
    let mut want = vec![0u8; 4096];
    for off in [0u64, (3 << 20) - 4096, 4 << 20, (47 << 20) + 12_345] {
        f.read_exact_at(&mut buf, off).unwrap();
        orig.read_exact_at(&mut want, off).unwrap();
        assert!(buf == want, "offset {off}");
    }
    drop(f);
    ok(rescue(&["umount", mp.to_str().unwrap()]));
    let log = fs::read_dir("/run/rescue/mounts")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .find(|t| t.contains(&mp.display().to_string()))
        .expect("the server's log");
    assert!(
        log.contains("window 3 at offset 3145728 (1048576 bytes) DOES NOT MATCH"),
        "{log}"
    );
    assert_eq!(log.matches("DOES NOT MATCH").count(), 1, "{log}");
}

#[test]
fn sigterm_to_a_foreground_server_unmounts() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let acq = dir.path().join("acq");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        acq.to_str().unwrap(),
        "--format",
        "zstd",
    ]));
    let mp = dir.path().join("mnt");
    fs::create_dir_all(&mp).unwrap();
    let mut child: Child = Command::new(BIN)
        .args(["mount", "--foreground"])
        .arg(&acq)
        .arg(&mp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = Mounted(mp.clone());
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("mounted "), "{line:?}");
    assert_eq!(fls(&mp.join("image.raw")), fls(&disk));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let status = wait_exit(child, "the server after SIGTERM");
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status:?}\n{err}");
    assert!(err.contains("unmounted"), "{err}");
    assert!(!mp.join("image.raw").exists());
}

#[test]
fn umount_refuses_what_rescue_did_not_mount_and_mount_reports_a_bad_source() {
    let dir = tempfile::tempdir().unwrap();
    let o = rescue(&["umount", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a `rescue mount` mount point"),
        "{}",
        text(&o)
    );
    if !can_mount() {
        return;
    }
    // The background server's error comes back to the command that started it.
    let mp = dir.path().join("mnt");
    fs::create_dir_all(&mp).unwrap();
    let o = rescue(&["mount", dir.path().to_str().unwrap(), mp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds no manifest.json"),
        "{}",
        text(&o)
    );
    assert!(!mp.join("image.raw").exists());
    // A mount point with something in it is refused: mounting would hide it.
    fs::write(mp.join("notes.txt"), "examiner notes").unwrap();
    let o = rescue(&["mount", dir.path().to_str().unwrap(), mp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not empty"),
        "{}",
        text(&o)
    );
}

fn s3s_fs() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let found = [
        std::env::var_os("RESCUE_S3S_FS").map(PathBuf::from),
        Some(root.join("target/tools/bin/s3s-fs")),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    if found.is_none() {
        gate("RESCUE_REQUIRE_S3S", "s3s-fs", "no binary");
    }
    found
}

/// An s3s-fs server on 127.0.0.1, killed on drop.
struct Store {
    child: Child,
    port: u16,
    /// Its log (every request it took, headers included), written by `logger`.
    log: PathBuf,
    logger: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Stops the server and returns its whole log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(l) = self.logger.take() {
            l.join().unwrap();
        }
        fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_store(dir: &Path, bucket: &str) -> Option<Store> {
    let bin = s3s_fs()?;
    let root = dir.join("store");
    fs::create_dir_all(root.join(bucket)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.join("server.log");
    let mut log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS, "--secret-key", SECRET])
        .arg(&root)
        // Its log says when it listens: "server is running at http://…", printed after the bind; s3s
        // logs each request (method, URI, headers) at debug level.
        .env("RUST_LOG", "info,s3s::service=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .expect("starting s3s-fs");
    // Its log is read on a thread: the line that says it listens is sent back, then the rest of the log
    // goes to server.log (a full pipe would stop the server).
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logger = std::thread::spawn(move || {
        use std::io::Write;
        let mut out = BufReader::new(out);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = tx.send(Err(seen));
                return;
            }
            seen.push_str(&line);
            if line.contains("server is running at") {
                let _ = tx.send(Ok(()));
                break;
            }
        }
        let _ = log.write_all(seen.as_bytes());
        let _ = std::io::copy(&mut out, &mut log);
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("s3s-fs exited before it listened:\n{seen}"),
        Err(_) => {
            let _ = child.kill();
            panic!("s3s-fs did not say it listens within {TIMEOUT:?}");
        }
    }
    Some(Store {
        child,
        port,
        log: log_path,
        logger: Some(logger),
    })
}

#[test]
fn an_s3_acquisition_mounts_through_ranged_gets() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = start_store(dir.path(), "evidence") else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", store.port);
    let disk = make_disk(dir.path());
    let url = "s3://evidence/case-7/disk/";
    ok(run(Command::new(BIN)
        .args(["acquire", disk.to_str().unwrap(), "--out", url])
        .args([
            "--format",
            "zstd",
            "--window",
            "4M",
            "--endpoint",
            &endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)));
    let man: Value = serde_json::from_slice(
        &fs::read(dir.path().join("store/evidence/case-7/disk/manifest.json")).unwrap(),
    )
    .unwrap();
    let mp = dir.path().join("mnt");
    let m = mount(url, &mp, &["--endpoint", &endpoint, "--verify-windows"]);
    assert_eq!(
        sha256sum(&m.image()),
        man["hashes"]["sha256"].as_str().unwrap()
    );
    assert_eq!(fls(&m.image()), fls(&disk));
    random_reads_match(&m.image(), &disk);
    ok(rescue(&["umount", mp.to_str().unwrap()]));
    assert!(!m.image().exists());

    // Every byte came from ranged GETs of the stored object, none from a download of all of it: the
    // server's own log of the requests it took (the acquisition before only PUT it).
    let image = man["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["file"].as_str().is_some_and(|f| f.starts_with("image.")))
        .unwrap_or_else(|| panic!("no image file in the manifest: {man}"));
    let object = format!("/evidence/case-7/disk/{}", image["file"].as_str().unwrap());
    let size = image["size_bytes"].as_u64().unwrap();
    let log = store.stop();
    let gets: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("method: GET, uri: {object},")))
        .collect();
    assert!(
        gets.len() > 1,
        "the reads went to the server as GETs of {object}:\n{log}"
    );
    for get in &gets {
        let range = get
            .split("\"range\": \"bytes=")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("a GET without a Range header: {get}"));
        let (first, last) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .unwrap_or_else(|| panic!("not a closed byte range: {get}"));
        assert!(
            first <= last && last - first + 1 < size,
            "a range of {size}-byte {object} that is not a part of it: {get}"
        );
    }
}

/// The absolute path of `tool`, from `PATH`.
fn which(tool: &str) -> PathBuf {
    let o = ok(run(
        Command::new("sh").args(["-c", &format!("command -v {tool}")])
    ));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// `rescue ARGS` as the user `nobody` (uid and gid 65534, no supplementary groups) through `setpriv`,
/// with `TMPDIR` for the server's state files and the given `PATH`.
fn as_nobody(args: &[&OsStr], tmp: &Path, path: &str) -> Output {
    run(Command::new(which("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(BIN)
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", tmp)
        .env("PATH", path))
}

#[test]
fn a_user_other_than_root_mounts_through_fusermount3_or_is_told_what_is_missing() {
    use std::os::unix::fs::{PermissionsExt, chown};
    if !can_mount() {
        return;
    }
    for tool in ["fusermount3", "setpriv"] {
        if !have(tool) {
            gate("RESCUE_REQUIRE_TOOLS", tool, "not installed");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let disk = make_disk(dir.path());
    let want_fls = fls(&disk);
    let acq = dir.path().join("acq");
    ok(rescue(&[
        "acquire",
        disk.to_str().unwrap(),
        "--out",
        acq.to_str().unwrap(),
        "--format",
        "zstd",
    ]));
    ok(run(Command::new("chmod").arg("-R").arg("a+rX").arg(&acq)));
    let tmp = dir.path().join("tmp-nobody");
    let mnt = dir.path().join("mnt-nobody");
    for d in [&tmp, &mnt] {
        fs::create_dir(d).unwrap();
        chown(d, Some(65534), Some(65534)).unwrap();
    }
    let path = std::env::var("PATH").unwrap_or_default();

    // Mounted by fusermount3 for nobody, readable by nobody, the acquired disk byte for byte.
    let o = ok(as_nobody(
        &["mount".as_ref(), acq.as_ref(), mnt.as_ref()],
        &tmp,
        &path,
    ));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("image.raw"),
        "{}",
        text(&o)
    );
    let m = Mounted(mnt.clone());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(mnt.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not in mountinfo:\n{info}", mnt.display()));
    assert!(
        line.contains(" - fuse.rescue ") && line.contains("user_id=65534"),
        "{line}"
    );
    let read = |tool: &str, extra: &[&str]| {
        ok(run(Command::new(which("setpriv"))
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", tool])
            .args(extra)
            .arg(m.image())))
        .stdout
    };
    let sum = String::from_utf8_lossy(&read("sha256sum", &[])).to_string();
    assert_eq!(
        sum.split_whitespace().next().unwrap(),
        manifest(&acq)["hashes"]["sha256"].as_str().unwrap()
    );
    let via_mount = String::from_utf8(read("fls", &["-r", "-m", "/", "-o", PART_SECTOR])).unwrap();
    assert_eq!(via_mount, want_fls);
    let state: Vec<_> = fs::read_dir(tmp.join("rescue-mounts-65534"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(state.iter().any(|n| n.ends_with(".pid")), "{state:?}");

    // nobody unmounts it again (fusermount3 -u) and the server exits.
    let u = ok(as_nobody(&["umount".as_ref(), mnt.as_ref()], &tmp, &path));
    assert!(
        String::from_utf8_lossy(&u.stdout).contains("exited"),
        "{}",
        text(&u)
    );
    assert!(!m.image().exists(), "still mounted after umount");
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(mnt.to_str().unwrap())
    );

    // Without fusermount3 the refusal says what to install; a mount point nobody may not write to is
    // refused by fusermount3, and its reason is passed on.
    let o = as_nobody(
        &["mount".as_ref(), acq.as_ref(), mnt.as_ref()],
        &tmp,
        "/nonexistent",
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("fusermount3 (package fuse3)"),
        "{}",
        text(&o)
    );
    let roots = dir.path().join("mnt-root");
    fs::create_dir(&roots).unwrap();
    let o = as_nobody(
        &["mount".as_ref(), acq.as_ref(), roots.as_ref()],
        &tmp,
        &path,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("fusermount3 could not mount") && text(&o).contains("access"),
        "{}",
        text(&o)
    );
    assert!(!roots.join("image.raw").exists());
}
