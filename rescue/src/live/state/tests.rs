//! Both phases over a crafted `/proc`, `/sys` and root tree: what a user of the JSON files would see
//! on a compromised host (a deleted executable copied once, a socket with its owner, a module hidden
//! from one view, the kernel's package), and hostile files (a name that is not UTF-8, truncated and
//! garbage lines, huge numbers, missing tables) that become notes, never a panic or a lost document.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::Value;

use super::{Phase, collect};
use crate::live::{Artifact, Roots};

fn write(p: &Path, b: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b).unwrap();
}

fn stat_line(pid: u32, comm: &[u8], ppid: u32, flags: u64, start: u64) -> Vec<u8> {
    let mut b = format!("{pid} (").into_bytes();
    b.extend_from_slice(comm);
    b.extend_from_slice(
        format!(") S {ppid} {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10\n")
            .as_bytes(),
    );
    b
}

fn process(proc: &Path, pid: u32, comm: &[u8], ppid: u32, exe: Option<&Path>) {
    let d = proc.join(pid.to_string());
    write(&d.join("stat"), stat_line(pid, comm, ppid, 0, 250));
    write(
        &d.join("status"),
        format!("Name:\tx\nTgid:\t{pid}\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n"),
    );
    write(&d.join("cmdline"), b"/usr/bin/x\0--flag\0");
    write(
        &d.join("environ"),
        b"PATH=/bin\0LD_PRELOAD=/dev/shm/.l.so\0",
    );
    if let Some(e) = exe {
        symlink(e, d.join("exe")).unwrap();
    }
    symlink("/", d.join("cwd")).unwrap();
    symlink("/", d.join("root")).unwrap();
    fs::create_dir_all(d.join("fd")).unwrap();
}

fn fixture(t: &Path) -> Roots {
    let (proc, sys, root) = (t.join("proc"), t.join("sys"), t.join("root"));
    write(&proc.join("stat"), "cpu 1 2 3\nbtime 1700000000\n");
    write(&proc.join("sys/kernel/pid_max"), "64\n");
    write(&proc.join("sys/kernel/osrelease"), "6.1.0-test-amd64\n");
    write(&proc.join("sys/kernel/tainted"), "12288\n");
    write(&proc.join("sys/kernel/kptr_restrict"), "1\n");
    write(
        &proc.join("version"),
        "Linux version 6.1.0-test-amd64 (fixture)\n",
    );
    write(
        &proc.join("cmdline"),
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1\n",
    );
    write(&proc.join("uptime"), "100.50 12.00\n");
    write(
        &proc.join("kallsyms"),
        "0000000000000000 T _stext\n0000000000000000 T x\n",
    );
    // Executables: one on "disk", one deleted (twice, same content), one memfd.
    let bin = t.join("bin");
    write(&bin.join("init"), b"\x7fELF init");
    write(&bin.join("implant (deleted)"), b"\x7fELF implant");
    write(&bin.join("memfd:x (deleted)"), b"\x7fELF fileless");
    process(&proc, 1, b"init", 0, Some(&bin.join("init")));
    process(
        &proc,
        42,
        b"\xff) R 1 (evil",
        1,
        Some(&bin.join("implant (deleted)")),
    );
    process(
        &proc,
        43,
        b"implant",
        1,
        Some(&bin.join("implant (deleted)")),
    );
    process(&proc, 44, b"x", 1, Some(&bin.join("memfd:x (deleted)")));
    // A kernel thread: no exe.
    let k = proc.join("2");
    write(
        &k.join("stat"),
        stat_line(2, b"kthreadd", 0, 0x0020_0040, 1),
    );
    write(
        &k.join("status"),
        "Tgid:\t2\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
    );
    // Garbage stat and a truncated status.
    write(&proc.join("50/stat"), b"garbage");
    write(
        &proc.join("51/stat"),
        stat_line(51, b"trunc", 1, 0, 99_999_999_999_999_999),
    );
    write(&proc.join("51/status"), b"Tgid:\t51\nUid:\t1\t2");
    // A socket held by 42.
    symlink("socket:[31337]", proc.join("42/fd/3")).unwrap();
    symlink("/dev/null", proc.join("42/fd/0")).unwrap();
    write(
        &proc.join("net/tcp"),
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1\n\
   1: 0100007F:00\n",
    );
    write(&proc.join("net/tcp6"), "hdr\n");
    write(&proc.join("net/udp"), "hdr\n\u{0}\u{0}\u{0}\n");
    write(
        &proc.join("net/unix"),
        "Num RefCount Protocol Flags Type St Inode Path\n",
    );
    // net/udp6, raw, raw6, packet missing: notes.
    write(
        &proc.join("modules"),
        "evil 16384 0 - Live 0x0000000000000000 (OE)\next4 1000 2 - Live 0x0000000000000000\n",
    );
    write(
        &proc.join("self/mountinfo"),
        "22 1 0:21 / /proc rw - proc proc rw\nbroken\n",
    );
    write(
        &proc.join("net/route"),
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
    );
    write(&proc.join("net/fib_trie"), "Main:\n");
    write(
        &proc.join("net/if_inet6"),
        "00000000000000000000000000000001 01 80 10 80 lo\n",
    );
    write(
        &proc.join("net/arp"),
        "IP address HW type Flags HW address Mask Device\n",
    );
    // sysfs: ext4 in both views, hidden only in sysfs, evil only in /proc/modules.
    for (m, state) in [("ext4", "live"), ("hidden", "live")] {
        write(
            &sys.join(format!("module/{m}/initstate")),
            format!("{state}\n"),
        );
        write(&sys.join(format!("module/{m}/taint")), "\n");
    }
    fs::create_dir_all(sys.join("module/printk/parameters")).unwrap();
    write(&sys.join("class/net/lo/type"), "772\n");
    write(&sys.join("class/net/lo/flags"), "0x9\n");
    write(&sys.join("class/net/lo/ifindex"), "1\n");
    write(&sys.join("kernel/btf/vmlinux"), b"\x9f\xeb\x01\x00btf");
    // The running system's root: the kernel image and the dpkg database owning it.
    write(&root.join("boot/vmlinuz-6.1.0-test-amd64"), b"MZ kernel");
    write(
        &root.join("boot/System.map-6.1.0-test-amd64"),
        b"ffffffff81000000 T _stext\n",
    );
    write(
        &root.join("var/lib/dpkg/status"),
        "Package: linux-image-6.1.0-test-amd64\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 6.1.76-1\n\n",
    );
    write(
        &root.join("var/lib/dpkg/info/linux-image-6.1.0-test-amd64.list"),
        "/.\n/boot\n/boot/vmlinuz-6.1.0-test-amd64\n/boot/System.map-6.1.0-test-amd64\n",
    );
    Roots {
        proc,
        sys,
        dev: t.join("dev"),
        root,
    }
}

fn doc(arts: &[Artifact], name: &str) -> Value {
    let a = arts.iter().find(|a| a.name == name).unwrap();
    serde_json::from_slice(&a.bytes).unwrap()
}

#[test]
fn the_volatile_phase_on_a_fixture_tree() {
    let t = tempfile::tempdir().unwrap();
    let roots = fixture(t.path());
    let mut steps = Vec::new();
    let arts = collect(Phase::Volatile, &roots, &mut |s| steps.push(s.to_owned()));
    assert_eq!(steps, ["processes", "hidden processes", "sockets"]);
    let p = doc(&arts, "state/processes.json");
    let procs = p["processes"].as_array().unwrap();
    let pids: Vec<u64> = procs.iter().map(|x| x["pid"].as_u64().unwrap()).collect();
    assert_eq!(
        pids,
        [1, 2, 42, 43, 44, 51],
        "the garbage stat of 50 is a note"
    );
    let by = |pid: u64| procs.iter().find(|x| x["pid"] == pid).unwrap();
    let evil = by(42);
    assert_eq!(evil["comm"], "\\xff) R 1 (evil");
    assert_eq!(evil["uid"]["real"], 1000);
    assert_eq!(evil["uid"]["effective"], 0);
    assert_eq!(evil["start_time"], "2023-11-14T22:13:22.500Z");
    assert_eq!(evil["exe_deleted"], true);
    assert_eq!(evil["cmdline"], serde_json::json!(["/usr/bin/x", "--flag"]));
    assert_eq!(
        evil["loader_env"],
        serde_json::json!(["LD_PRELOAD=/dev/shm/.l.so"])
    );
    assert_eq!(evil["root"], Value::Null);
    let copy = evil["exe_copy"].as_str().unwrap();
    assert_eq!(copy, "state/exe/42-_xff__R_1__evil");
    assert_eq!(by(43)["exe_copy"], copy, "the same content is copied once");
    assert_eq!(by(44)["exe_memfd"], false, "a fixture path is not /memfd:");
    let copied: Vec<&Artifact> = arts
        .iter()
        .filter(|a| a.name.starts_with("state/exe/"))
        .collect();
    assert_eq!(
        copied.len(),
        2,
        "{:?}",
        arts.iter().map(|a| &a.name).collect::<Vec<_>>()
    );
    assert_eq!(copied[0].bytes, b"\x7fELF implant");
    assert_eq!(by(1)["exe_copy"], Value::Null);
    assert_eq!(
        by(1)["exe_sha256"],
        crate::acquire::hash::sha256_hex(b"\x7fELF init").as_str()
    );
    assert_eq!(by(2)["kernel_thread"], true);
    assert_eq!(
        by(51)["start_time"],
        Value::Null,
        "a start beyond any date is left out"
    );
    assert_eq!(
        by(51)["uid"],
        Value::Null,
        "a truncated Uid line is unknown"
    );
    let notes = p["notes"].to_string();
    assert!(
        notes.contains("50/stat: not in the kernel's format"),
        "{notes}"
    );

    let s = doc(&arts, "state/sockets.json");
    let socks = s["sockets"].as_array().unwrap();
    assert_eq!(socks.len(), 1);
    assert_eq!(socks[0]["local_port"], 8080);
    assert_eq!(socks[0]["state"], "LISTEN");
    assert_eq!(
        socks[0]["owners"],
        serde_json::json!([{"pid": 42, "fd": 3, "comm": ""}])
    );
    let notes = s["notes"].to_string();
    for missing in [
        "net/udp6",
        "net/raw6",
        "net/packet",
        "tcp: line 3",
        "udp: line 2",
    ] {
        assert!(notes.contains(missing), "{missing} not in {notes}");
    }

    let h = doc(&arts, "state/hidden-processes.json");
    assert_eq!(h["pid_max"], 64);
    assert_eq!(h["hidden"], serde_json::json!([]));
    for a in &arts {
        assert!(!a.collected_at.is_empty());
    }
}

#[test]
fn the_stable_phase_on_a_fixture_tree() {
    let t = tempfile::tempdir().unwrap();
    let roots = fixture(t.path());
    let arts = collect(Phase::Stable, &roots, &mut |_| {});
    let m = doc(&arts, "state/modules.json");
    assert_eq!(m["tainted"], 12288);
    assert_eq!(m["taint_words"].as_array().unwrap().len(), 2);
    let f = m["findings"].to_string();
    assert!(f.contains("evil is in /proc/modules but"), "{f}");
    assert!(f.contains("hidden is loaded"), "{f}");
    assert!(m["notes"].to_string().contains("kptr_restrict"));
    let mounts = doc(&arts, "state/mounts.json");
    assert_eq!(mounts["mounts"][0]["mount_point"], "/proc");
    assert!(mounts["notes"].to_string().contains("line 2"));
    let n = doc(&arts, "state/network.json");
    assert_eq!(
        n["interfaces"][0]["flags"],
        serde_json::json!(["UP", "LOOPBACK"])
    );
    assert_eq!(n["addresses"][0]["address"], "::1");
    let u = doc(&arts, "state/users.json");
    assert_eq!(u["sessions"], serde_json::json!([]));
    assert!(u["notes"].to_string().contains("utmp"));
    let k = doc(&arts, "state/kernel.json");
    assert_eq!(k["release"], "6.1.0-test-amd64");
    assert_eq!(k["uptime_seconds"], 100.5);
    assert_eq!(k["boot_time"], "2023-11-14T22:13:20.000Z");
    assert!(doc(&arts, "state/time.json")["realtime"].is_string());
    let s = doc(&arts, "symbols/symbols.json");
    let files = s["files"].as_array().unwrap();
    let vmlinuz = files
        .iter()
        .find(|f| f["artifact"] == "symbols/vmlinuz-6.1.0-test-amd64")
        .unwrap();
    assert_eq!(vmlinuz["package"], "linux-image-6.1.0-test-amd64");
    assert_eq!(vmlinuz["package_version"], "6.1.76-1");
    assert!(files.iter().any(|f| f["artifact"] == "symbols/vmlinux.btf"));
    let notes = s["notes"].to_string();
    assert!(notes.contains("kptr_restrict=1"), "{notes}");
    assert!(notes.contains("config-6.1.0-test-amd64"), "{notes}");
    let names: Vec<&str> = arts.iter().map(|a| a.name.as_str()).collect();
    for want in [
        "symbols/kallsyms",
        "symbols/vmlinux.btf",
        "symbols/System.map-6.1.0-test-amd64",
        "symbols/vmlinuz-6.1.0-test-amd64",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
}

#[test]
fn an_empty_tree_gives_every_document_with_notes() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("proc/sys/kernel")).unwrap();
    fs::write(t.path().join("proc/sys/kernel/pid_max"), "10\n").unwrap();
    let roots = Roots {
        proc: t.path().join("proc"),
        sys: t.path().join("sys"),
        dev: t.path().join("dev"),
        root: t.path().join("root"),
    };
    for phase in [Phase::Volatile, Phase::Stable] {
        let arts = collect(phase, &roots, &mut |_| {});
        assert!(!arts.is_empty());
        for a in arts.iter().filter(|a| a.name.ends_with(".json")) {
            let v: Value = serde_json::from_slice(&a.bytes).unwrap();
            assert_eq!(v["notes"].as_array().unwrap().len(), a.notes.len());
            if a.name != "state/hidden-processes.json" && a.name != "state/time.json" {
                assert!(
                    !a.notes.is_empty(),
                    "{} says nothing about what it missed",
                    a.name
                );
            }
        }
    }
}
