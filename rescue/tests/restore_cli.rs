//! `rescue restore` through the real binary (issue 13): whole-disk images, dry runs that refuse what the
//! real run refuses, directory times; and every command ending quietly when its reader goes away.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rescue(args: &[&str]) -> Output {
    rescue_env(args, &[])
}

fn rescue_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `rescue ARGS` with stdout on a pipe whose reader is already gone: the first print hits a
/// closed pipe, as under `rescue … | head -0`.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn no_command_panics_when_its_reader_goes_away() {
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, vec![7u8; 200_000]).unwrap();
    let acq = d.path().join("acq");
    let o = rescue(&["acquire", s(&disk), "--out", s(&acq)]);
    assert!(o.status.success(), "{}", text(&o));
    let src = d.path().join("backup");
    std::fs::create_dir_all(src.join("srv")).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("srv/f{i}")), format!("file {i}")).unwrap();
    }
    let dst = d.path().join("root");
    std::fs::create_dir_all(&dst).unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["devices"],
        vec!["verify", s(&acq)],
        vec!["restore", "--dry-run", s(&src), s(&dst)],
        vec!["restore", s(&src), s(&dst), "--report-dir", s(d.path())],
    ];
    for args in runs {
        let o = into_closed_pipe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "rescue {args:?}: {err}"
        );
        // Killed by SIGPIPE like coreutils, or (clap's --help) a normal exit; never 101 (a panic).
        assert!(
            o.status.signal() == Some(libc::SIGPIPE) || o.status.code() == Some(0),
            "rescue {args:?} ended with {:?}: {err}",
            o.status
        );
    }
}

/// Skips a root-only test, unless `RESCUE_REQUIRE_LOOP=1` (set by `cargo xtask test`) makes it a failure.
fn need_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("RESCUE_REQUIRE_LOOP").is_err(),
        "{what} needs root and RESCUE_REQUIRE_LOOP=1 forbids skipping it"
    );
    eprintln!("skipped {what}: needs root");
    false
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An ext4 filesystem image of `mib` MiB holding `files` (mkfs.ext4 -d).
fn ext4(dir: &Path, name: &str, mib: u64, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let tree = dir.join(format!("{name}.d"));
    for (rel, data) in files {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let img = dir.join(format!("{name}.ext4"));
    std::fs::File::create(&img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-F", "-q", "-d"])
        .arg(&tree)
        .arg(&img));
    img
}

/// Copies `part` into `disk` at byte `offset` (dd conv=notrunc).
fn place(disk: &Path, part: &Path, offset: u64) {
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    f.write_all(&std::fs::read(part).unwrap()).unwrap();
}

/// A 48 MiB GPT disk image (sgdisk): partition 1 an 8 MiB FAT ESP, 2 and (when `second_linux`) 3
/// ext4 filesystems.
fn gpt_disk(dir: &Path, second_linux: bool) -> std::path::PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let mut sg = Command::new("sgdisk");
    sg.args([
        "-n",
        "1:2048:+8M",
        "-t",
        "1:ef00",
        "-n",
        "2:0:+16M",
        "-t",
        "2:8300",
    ]);
    if second_linux {
        sg.args(["-n", "3:0:+16M", "-t", "3:8300"]);
    }
    run(sg.arg(&disk));
    let esp = dir.join("esp.vfat");
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", "ESP"])
        .arg(&esp)
        .arg("8192"));
    place(&disk, &esp, 1 << 20);
    let root = ext4(dir, "root", 16, &[("srv/data.txt", b"from partition 2")]);
    place(&disk, &root, 9 << 20);
    if second_linux {
        let home = ext4(dir, "home", 16, &[("srv/data.txt", b"from partition 3")]);
        place(&disk, &home, 25 << 20);
    }
    disk
}

#[test]
fn a_whole_disk_image_is_restored_from_its_only_linux_partition_or_the_one_named() {
    if !need_root("a_whole_disk_image_is_restored_from_its_only_linux_partition_or_the_one_named") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let disk = gpt_disk(d.path(), false);
    let before = std::fs::read(&disk).unwrap();
    let dst = d.path().join("root");
    std::fs::create_dir_all(&dst).unwrap();
    let o = rescue(&["restore", s(&disk), s(&dst)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("partition 2 (ext4, 16.0 MiB) of the GPT, the only Linux filesystem"),
        "says which partition: {}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(dst.join("srv/data.txt")).unwrap(),
        b"from partition 2"
    );
    assert_eq!(
        std::fs::read(&disk).unwrap(),
        before,
        "the image is unchanged"
    );

    // Two Linux filesystems: the operator names one.
    let d2 = tempfile::tempdir().unwrap();
    let disk2 = gpt_disk(d2.path(), true);
    let dst2 = d2.path().join("root");
    std::fs::create_dir_all(&dst2).unwrap();
    let o = rescue(&["restore", s(&disk2), s(&dst2)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("more than one holds a Linux filesystem")
            && text(&o).contains("--partition N")
            && text(&o).contains("3: ext4"),
        "{}",
        text(&o)
    );
    assert!(!dst2.join("srv").exists());
    let o = rescue(&["restore", s(&disk2), s(&dst2), "--partition", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("partition 3 (ext4, 16.0 MiB) of the GPT, as named by --partition"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(dst2.join("srv/data.txt")).unwrap(),
        b"from partition 3"
    );
    let o = rescue(&["restore", s(&dst), s(&dst2), "--partition", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--partition applies to a disk image or a disk"),
        "{}",
        text(&o)
    );
    let o = rescue(&["restore", s(&disk2), s(&dst2), "--partition", "7"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("there is no partition 7"), "{}", text(&o));

    // The same disk as a whole-disk device (a read-only loop device standing in for a disk).
    let lo = Loop::attach_read_only(&disk);
    let dst3 = d.path().join("root3");
    std::fs::create_dir_all(&dst3).unwrap();
    let o = rescue(&["restore", s(&lo.0), s(&dst3)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("partition 2 (ext4, 16.0 MiB) of the GPT, the only Linux filesystem"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(dst3.join("srv/data.txt")).unwrap(),
        b"from partition 2"
    );
    drop(lo);
    assert_eq!(
        std::fs::read(&disk).unwrap(),
        before,
        "the disk is unchanged"
    );
}

/// A loop device attached with `losetup` (util-linux), detached when dropped.
struct Loop(std::path::PathBuf);

impl Loop {
    fn attach(file: &Path) -> Self {
        Self::losetup(file, &["-f", "--show"])
    }

    fn attach_read_only(file: &Path) -> Self {
        Self::losetup(file, &["-f", "--show", "-r"])
    }

    fn losetup(file: &Path, args: &[&str]) -> Self {
        let o = Command::new("losetup")
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Loop(std::path::PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim(),
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn a_dry_run_refuses_what_the_real_run_refuses_and_mounts_nothing_writable() {
    if !need_root("a_dry_run_refuses_what_the_real_run_refuses_and_mounts_nothing_writable") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let src = d.path().join("backup");
    std::fs::create_dir_all(src.join("srv")).unwrap();
    std::fs::write(src.join("srv/a.txt"), b"alpha").unwrap();
    let target_img = ext4(d.path(), "newroot", 16, &[("etc/hostname", b"new\n")]);
    let before = std::fs::read(&target_img).unwrap();
    let lo = Loop::attach(&target_img);
    let size = (16u64 << 20).to_string();
    let env = [("RESCUE_STATE_DIR", state.as_path())];

    // A wrong confirmation: the real run refuses it, and so does the dry run.
    for dry in [false, true] {
        let mut args = vec!["restore", s(&src), s(&lo.0), "--confirm", "12345"];
        args.extend(["--reason", "fresh install"]);
        if dry {
            args.push("--dry-run");
        }
        let o = rescue_env(&args, &env);
        assert_eq!(o.status.code(), Some(1), "dry run {dry}: {}", text(&o));
        assert!(
            text(&o).contains(&format!(
                "confirm with its size in bytes instead: --confirm {size}"
            )),
            "dry run {dry}: {}",
            text(&o)
        );
    }
    // Without a reason the interlock refuses a disk never acquired, dry run or not.
    let o = rescue_env(
        &[
            "restore",
            "--dry-run",
            s(&src),
            s(&lo.0),
            "--confirm",
            &size,
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("never acquired"), "{}", text(&o));

    // The right confirmation: the dry run reports, mounts the target read-only and writes nothing.
    let o = rescue_env(
        &[
            "restore",
            "--dry-run",
            s(&src),
            s(&lo.0),
            "--confirm",
            &size,
            "--reason",
            "fresh install",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("mounted read-only for the dry run")
            && text(&o).contains("1 would-restore"),
        "{}",
        text(&o)
    );
    let ro = Command::new("blockdev")
        .arg("--getro")
        .arg(&lo.0)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ro.stdout).trim(),
        "1",
        "the target stays write-blocked"
    );
    let unlocked = std::fs::read_to_string(state.join("unlocked")).unwrap_or_default();
    assert!(unlocked.trim().is_empty(), "nothing unlocked: {unlocked}");
    drop(lo);
    assert_eq!(
        std::fs::read(&target_img).unwrap(),
        before,
        "not one byte of the target changed"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("restore-source-"), "unmounted afterwards");
}
