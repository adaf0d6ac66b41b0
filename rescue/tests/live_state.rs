//! The volatile-state collectors of `rescue live` (issue 15) against THIS machine's real `/proc`,
//! each compared with a tool someone else wrote: the process list with `ps`, listening sockets and
//! their owners with `ss`, modules with `lsmod`, mounts with `findmnt -J`, addresses and routes with
//! `ip -j`; a process whose executable was deleted after it started, and one running from a
//! `memfd:`, have their executables copied with the SHA-256 `sha256sum` computes for the original.
//! Addresses with `noprefixroute` (in no route) and an alias label are compared with `ip -j addr` in
//! a network namespace of their own (this test binary run again under `unshare --net --mount`), so
//! nothing on the host changes.
//!
//! Gated: they need root (the open files and executables of every process) and the tools; a missing
//! one skips unless `RESCUE_REQUIRE_TOOLS=1` (set by `cargo xtask test`). Each part that ran leaves a
//! marker `live-state-*` in `RESCUE_TEST_MARKERS`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rescue::live::state::{Phase, collect, network};
use rescue::live::{Artifact, Roots};
use serde_json::Value;

/// Whether this test can run here; otherwise skips, or fails under `RESCUE_REQUIRE_TOOLS`.
fn can_run(what: &str, tools: &[&str]) -> bool {
    let required = std::env::var_os("RESCUE_REQUIRE_TOOLS").is_some();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !required,
            "{what} needs root and RESCUE_REQUIRE_TOOLS forbids skipping it"
        );
        eprintln!("skipped {what}: needs root");
        return false;
    }
    for t in tools {
        let ok = Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            assert!(
                !required,
                "{what} needs {t} and RESCUE_REQUIRE_TOOLS forbids skipping it"
            );
            eprintln!("skipped {what}: {t} is not installed");
            return false;
        }
    }
    true
}

/// Records that a gated check ran.
fn mark(name: &str) {
    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&m);
        let _ = std::fs::write(Path::new(&m).join(format!("live-state-{name}")), b"ran\n");
    }
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn volatile() -> Vec<Artifact> {
    let mut seen = Vec::new();
    let a = collect(Phase::Volatile, &Roots::host(), &mut |s| {
        seen.push(s.to_owned())
    });
    assert_eq!(seen, ["processes", "hidden processes", "sockets"]);
    a
}

fn doc(arts: &[Artifact], name: &str) -> Value {
    let a = arts
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no {name} among {:?}", names(arts)));
    serde_json::from_slice(&a.bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn names(arts: &[Artifact]) -> Vec<&str> {
    arts.iter().map(|a| a.name.as_str()).collect()
}

fn sha256sum(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn sha256sum_bytes(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn process(procs: &Value, pid: u32) -> &Value {
    procs["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("PID {pid} is not in processes.json"))
}

/// `ps -eo pid,ppid,uid,comm`: PID → (ppid, effective uid, comm).
fn ps() -> BTreeMap<u32, (u32, u32, String)> {
    run(Command::new("ps").args(["-eo", "pid,ppid,uid,comm", "--no-headers"]))
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let pid = f.next()?.parse().ok()?;
            let ppid = f.next()?.parse().ok()?;
            let uid = f.next()?.parse().ok()?;
            let comm = f.collect::<Vec<_>>().join(" ");
            Some((pid, (ppid, uid, comm)))
        })
        .collect()
}

/// `ps -eo pid,lstart` in UTC: PID → start time in UNIX seconds.
fn ps_start() -> BTreeMap<u32, i64> {
    run(Command::new("ps")
        .args(["-eo", "pid,lstart", "--no-headers"])
        .env("TZ", "UTC")
        .env("LC_ALL", "C"))
    .lines()
    .filter_map(|l| {
        let (pid, when) = l.trim_start().split_once(' ')?;
        let t = chrono::NaiveDateTime::parse_from_str(when.trim(), "%a %b %e %H:%M:%S %Y").ok()?;
        Some((pid.parse().ok()?, t.and_utc().timestamp()))
    })
    .collect()
}

#[test]
fn processes_agree_with_ps_and_our_own_executable_hash_with_sha256sum() {
    if !can_run("live processes vs ps", &["ps", "sha256sum"]) {
        return;
    }
    let before = ps();
    let starts = ps_start();
    let arts = volatile();
    let after = ps();
    let procs = doc(&arts, "state/processes.json");
    let ours: BTreeMap<u32, &Value> = procs["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap() as u32, p))
        .collect();
    let mut compared = 0;
    for (pid, b) in &before {
        // Alive, unchanged, across both ps runs: it was alive while we read.
        if after.get(pid) != Some(b) {
            continue;
        }
        let p = ours
            .get(pid)
            .unwrap_or_else(|| panic!("ps lists PID {pid} ({}) before and after, we do not", b.2));
        assert_eq!(p["ppid"], b.0, "ppid of {pid}");
        assert_eq!(p["uid"]["effective"], b.1, "uid of {pid}");
        // A kworker's name carries the workqueue it serves at the moment (`kworker/0:2-events`).
        let name = |c: &str| {
            if c.starts_with("kworker/") {
                c.split('-').next().unwrap_or(c).to_owned()
            } else {
                c.to_owned()
            }
        };
        assert_eq!(
            name(p["comm"].as_str().unwrap()),
            name(&b.2),
            "comm of {pid}"
        );
        if let Some(start) = starts.get(pid) {
            let t = chrono::DateTime::parse_from_rfc3339(p["start_time"].as_str().unwrap())
                .unwrap()
                .timestamp();
            assert!(
                (t - start).abs() <= 1,
                "start of {pid}: ours {}, ps {start}",
                p["start_time"]
            );
        }
        compared += 1;
    }
    assert!(compared > 10, "only {compared} processes compared with ps");
    let me = process(&procs, std::process::id());
    let exe = std::env::current_exe().unwrap();
    assert_eq!(me["exe"], exe.to_str().unwrap());
    assert_eq!(me["exe_sha256"], sha256sum(&exe).as_str());
    assert_eq!(me["exe_deleted"], false);
    assert_eq!(
        me["exe_copy"],
        Value::Null,
        "an executable on disk is not copied"
    );
    assert_eq!(
        me["cwd"],
        std::env::current_dir().unwrap().to_str().unwrap()
    );
    // Kernel threads have no executable and are marked.
    let kthreadd = ours.values().find(|p| p["comm"] == "kthreadd").unwrap();
    assert_eq!(kthreadd["kernel_thread"], true);
    assert_eq!(kthreadd["exe"], Value::Null);
    mark("processes-ps");
}

#[test]
fn nothing_is_hidden_here_and_threads_are_not_taken_for_hidden_processes() {
    if !can_run("live hidden processes", &[]) {
        return;
    }
    // A thread of this process: answers `stat /proc/TID`, is not listed.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (tidtx, tidrx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        tidtx.send(nix::unistd::gettid().as_raw()).unwrap();
        let _ = rx.recv();
    });
    let tid = tidrx.recv().unwrap() as u32;
    let arts = volatile();
    drop(tx);
    t.join().unwrap();
    let h = doc(&arts, "state/hidden-processes.json");
    assert_eq!(h["hidden"], Value::Array(vec![]), "{h:#}");
    assert!(h["threads_not_listed"].as_u64().unwrap() >= 1, "{h:#}");
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(h["pid_max"], max);
    assert!(u64::from(tid) <= max);
    mark("hidden");
}

/// `ss -tlnpH` / `ss -ulnpH`… output: (local port, owning PIDs) of each socket in `states`.
fn ss(args: &[&str]) -> BTreeSet<(u16, BTreeSet<u32>)> {
    run(Command::new("ss").args(args))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(3)?;
            let port = local.rsplit_once(':')?.1.parse().ok()?;
            let pids = l
                .split("pid=")
                .skip(1)
                .filter_map(|s| s.split(',').next()?.parse().ok())
                .collect();
            Some((port, pids))
        })
        .collect()
}

fn ours(sockets: &Value, protocols: &[&str], state: &str) -> BTreeSet<(u16, BTreeSet<u32>)> {
    let own_ns = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    sockets["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            protocols.contains(&s["protocol"].as_str().unwrap())
                && s["state"] == state
                && s["netns"].as_str().map(str::to_owned) == own_ns
        })
        .map(|s| {
            let port = s["local_port"].as_u64().unwrap() as u16;
            let pids = s["owners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["pid"].as_u64().unwrap() as u32)
                .collect();
            (port, pids)
        })
        .collect()
}

#[test]
fn listening_sockets_and_their_owners_agree_with_ss() {
    if !can_run("live sockets vs ss", &["ss"]) {
        return;
    }
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tport, uport) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let t_before = ss(&["-tlnpH"]);
    let u_before = ss(&["-ulnpH"]);
    let arts = volatile();
    let t_after = ss(&["-tlnpH"]);
    let u_after = ss(&["-ulnpH"]);
    let s = doc(&arts, "state/sockets.json");
    let me = std::process::id();
    let (t_ours, u_ours) = (
        ours(&s, &["tcp", "tcp6"], "LISTEN"),
        ours(&s, &["udp", "udp6"], "UNCONN"),
    );
    assert!(t_ours.contains(&(tport, [me].into())), "{t_ours:?}");
    assert!(u_ours.contains(&(uport, [me].into())), "{u_ours:?}");
    for (theirs, after, ours, what) in [
        (&t_before, &t_after, &t_ours, "TCP listeners"),
        (&u_before, &u_after, &u_ours, "UDP sockets"),
    ] {
        let stable: BTreeSet<_> = theirs.intersection(after).cloned().collect();
        let missing: Vec<_> = stable.difference(ours).collect();
        assert!(
            missing.is_empty(),
            "{what}: ss sees {missing:?}, we do not; ours {ours:?}"
        );
        assert!(stable.contains(&(tport, [me].into())) || what.starts_with("UDP"));
    }
    drop((tcp, udp));
    mark("sockets-ss");
}

/// Kills the child when the test ends, however it ends.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `pid` runs `exe_prefix` (exec done), with a generous timeout.
fn wait_exec(pid: u32, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let link = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if link.contains(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PID {pid} did not exec {want} within 60 s (exe {link:?})"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_deleted_executable_is_recovered_with_the_original_hash_once_per_content() {
    if !can_run("live deleted executable", &["sha256sum", "cp"]) {
        return;
    }
    let sleep = Path::new("/bin/sleep");
    let want = sha256sum(sleep);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("implant-a"), dir.path().join("implant-b"));
    // `cp` writes the copies, so no write descriptor of this (multi-threaded) process can make exec
    // fail with ETXTBSY.
    run(Command::new("cp").arg(sleep).arg(&a));
    run(Command::new("cp").arg(sleep).arg(&b));
    let ca = Kill(Command::new(&a).arg("1000").spawn().unwrap());
    let cb = Kill(Command::new(&b).arg("1000").spawn().unwrap());
    let (pa, pb) = (ca.0.id(), cb.0.id());
    wait_exec(pa, "implant-a");
    wait_exec(pb, "implant-b");
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    let arts = volatile();
    let procs = doc(&arts, "state/processes.json");
    let (ea, eb) = (process(&procs, pa), process(&procs, pb));
    assert_eq!(ea["exe"], format!("{} (deleted)", a.display()));
    assert_eq!(ea["exe_deleted"], true);
    assert_eq!(ea["exe_sha256"], want.as_str());
    assert_eq!(eb["exe_sha256"], want.as_str());
    let copy = ea["exe_copy"].as_str().unwrap();
    assert_eq!(copy, format!("state/exe/{pa}-implant-a"));
    assert_eq!(eb["exe_copy"], copy, "the same content is copied once");
    let copies: Vec<&Artifact> = arts
        .iter()
        .filter(|x| {
            x.name.starts_with("state/exe/")
                && (x.name.ends_with("-implant-a") || x.name.ends_with("-implant-b"))
        })
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", names(&arts));
    assert_eq!(sha256sum_bytes(&copies[0].bytes), want);
    mark("deleted-exe");
}

#[test]
fn a_memfd_executable_is_recovered_with_its_hash() {
    if !can_run("live memfd executable", &["sha256sum"]) {
        return;
    }
    use std::io::Write;
    use std::os::fd::AsRawFd;
    // The bytes of sleep with a trailer: an ELF runs with bytes after its last segment, and the
    // content differs from every file on disk.
    let mut bytes = std::fs::read("/bin/sleep").unwrap();
    bytes.extend_from_slice(b"rescue memfd test trailer\n");
    let want = sha256sum_bytes(&bytes);
    let fd =
        nix::sys::memfd::memfd_create(c"rescue-test", nix::sys::memfd::MFdFlags::empty()).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(&bytes).unwrap();
    // Executed through the descriptor the child inherits (no CLOEXEC), as fileless malware does.
    let child = Kill(
        Command::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .arg("1000")
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    wait_exec(pid, "memfd:rescue-test");
    drop(f);
    let arts = volatile();
    let procs = doc(&arts, "state/processes.json");
    let p = process(&procs, pid);
    assert!(
        p["exe"].as_str().unwrap().starts_with("/memfd:rescue-test"),
        "{p:#}"
    );
    assert_eq!(p["exe_memfd"], true);
    assert_eq!(p["exe_sha256"], want.as_str());
    let copy = p["exe_copy"].as_str().unwrap();
    let a = arts.iter().find(|a| a.name == copy).unwrap();
    assert_eq!(sha256sum_bytes(&a.bytes), want);
    mark("memfd-exe");
}

fn stable() -> Vec<Artifact> {
    let mut seen = Vec::new();
    let a = collect(Phase::Stable, &Roots::host(), &mut |s| {
        seen.push(s.to_owned())
    });
    assert_eq!(
        seen,
        [
            "modules", "mounts", "network", "users", "kernel", "time", "symbols"
        ]
    );
    a
}

#[test]
fn modules_agree_with_lsmod() {
    if !can_run("live modules vs lsmod", &["lsmod"]) {
        return;
    }
    let before = Command::new("lsmod").output().unwrap();
    let arts = stable();
    let m = doc(&arts, "state/modules.json");
    let ours: BTreeSet<String> = m["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["in_proc_modules"] == true)
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect();
    if before.status.success() {
        let theirs: BTreeSet<String> = String::from_utf8_lossy(&before.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(m["proc_modules_readable"], true);
        assert_eq!(m["findings"], Value::Array(vec![]), "{m:#}");
    } else {
        // A kernel without loadable modules (this host's): lsmod cannot read /proc/modules either,
        // and no loadable module is in sysfs.
        assert!(
            String::from_utf8_lossy(&before.stderr).contains("/proc/modules"),
            "lsmod failed for another reason: {}",
            String::from_utf8_lossy(&before.stderr)
        );
        assert_eq!(m["proc_modules_readable"], false);
        assert!(ours.is_empty());
        assert_eq!(m["modules"], Value::Array(vec![]), "{m:#}");
        assert!(m["notes"][0].as_str().unwrap().contains("/proc/modules"));
    }
    let tainted: u64 = std::fs::read_to_string("/proc/sys/kernel/tainted")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        m["taint_words"].as_array().unwrap().len() as u32,
        tainted.count_ones()
    );
    mark("modules-lsmod");
}

/// `findmnt -J -l -o ID,TARGET,FSTYPE`: id → (target, fstype).
fn findmnt() -> BTreeMap<u64, (String, String)> {
    let v: Value = serde_json::from_str(&run(Command::new("findmnt").args([
        "-J",
        "-l",
        "-o",
        "ID,TARGET,FSTYPE",
    ])))
    .unwrap();
    v["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_u64().unwrap(),
                (
                    f["target"].as_str().unwrap().to_owned(),
                    f["fstype"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn mounts_agree_with_findmnt() {
    if !can_run("live mounts vs findmnt", &["findmnt"]) {
        return;
    }
    let before = findmnt();
    let arts = stable();
    let after = findmnt();
    let m = doc(&arts, "state/mounts.json");
    let ours: BTreeMap<u64, (String, String)> = m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_u64().unwrap(),
                (
                    x["mount_point"].as_str().unwrap().to_owned(),
                    x["fstype"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let mut compared = 0;
    for (id, b) in &before {
        if after.get(id) == Some(b) {
            assert_eq!(ours.get(id), Some(b), "mount {id}");
            compared += 1;
        }
    }
    for id in ours.keys() {
        assert!(
            before.contains_key(id) || after.contains_key(id),
            "findmnt never saw our mount {id}"
        );
    }
    assert!(compared >= 5, "{compared}");
    mark("mounts-findmnt");
}

/// `ip -j addr`: (family, address, prefix length, interface).
fn ip_addr() -> BTreeSet<(String, String, u64, String)> {
    let v: Value = serde_json::from_str(&run(Command::new("ip").args(["-j", "addr"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            let name = l["ifname"].as_str().unwrap().to_owned();
            l["addr_info"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| {
                    (
                        a["family"].as_str().unwrap().to_owned(),
                        a["local"].as_str().unwrap().to_owned(),
                        a["prefixlen"].as_u64().unwrap(),
                        name.clone(),
                    )
                })
        })
        .collect()
}

/// `ip -j route` (IPv4 main table): (destination with prefix, gateway, interface).
fn ip_route() -> BTreeSet<(String, Option<String>, String)> {
    let v: Value = serde_json::from_str(&run(Command::new("ip").args(["-j", "route"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let dst = r["dst"].as_str().unwrap();
            let dst = match dst {
                "default" => "0.0.0.0/0".to_owned(),
                d if d.contains('/') => d.to_owned(),
                d => format!("{d}/32"),
            };
            (
                dst,
                r["gateway"].as_str().map(str::to_owned),
                r["dev"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn addresses_and_routes_agree_with_ip() {
    if !can_run("live network vs ip", &["ip"]) {
        return;
    }
    let (a_before, r_before) = (ip_addr(), ip_route());
    let arts = stable();
    let (a_after, r_after) = (ip_addr(), ip_route());
    assert_eq!(a_before, a_after, "addresses changed during the test");
    assert_eq!(r_before, r_after, "routes changed during the test");
    let n = doc(&arts, "state/network.json");
    let addrs: BTreeSet<(String, String, u64, String)> = n["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["family"].as_str().unwrap().to_owned(),
                a["address"].as_str().unwrap().to_owned(),
                a["prefix_len"].as_u64().unwrap(),
                a["interface"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(addrs, a_before);
    assert!(
        addrs.iter().any(|a| a.0 == "inet"),
        "no IPv4 address compared"
    );
    let routes: BTreeSet<(String, Option<String>, String)> = n["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r["destination"].as_str().unwrap(), r["prefix_len"]),
                r["gateway"].as_str().map(str::to_owned),
                r["interface"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(routes, r_before);
    // Every interface ip lists is in ours.
    let ifs: BTreeSet<&str> = n["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for a in &a_before {
        assert!(ifs.contains(a.3.as_str()), "{}", a.3);
    }
    mark("network-ip");
}

/// Set in the child run inside the new network namespace.
const NETNS_CHILD: &str = "RESCUE_TEST_LIVE_NETNS_CHILD";

/// Addresses no route contains (`noprefixroute`, both families) and an alias label keep their
/// interface: the collector asks the kernel (rtnetlink), as `ip` does. Before, IPv4 addresses were
/// placed by the connected route containing them, and these had no interface.
#[test]
fn addresses_without_a_prefix_route_agree_with_ip() {
    if std::env::var_os(NETNS_CHILD).is_some() {
        noprefixroute_in_namespace();
        return;
    }
    if !can_run("live network noprefixroute vs ip", &["ip", "unshare"]) {
        return;
    }
    // A network and mount namespace of its own: sysfs mounted again shows its interfaces.
    let me = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", r#"mount -t sysfs sysfs /sys && exec "$0" "$@""#])
        .arg(me)
        .args([
            "--exact",
            "addresses_without_a_prefix_route_agree_with_ip",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_CHILD, "1")
        .output()
        .expect("running unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the namespace run failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the namespace run ran no test:\n{text}"
    );
    mark("network-noprefixroute");
}

fn noprefixroute_in_namespace() {
    for args in [
        "link add rqa0 type veth peer name rqa1",
        "addr add 192.0.2.5/24 dev rqa0 noprefixroute",
        "addr add 198.51.100.7/24 dev rqa0 label rqa0:1",
        "-6 addr add fd00:5::5/64 dev rqa0 noprefixroute nodad",
        "link set rqa1 up",
        "link set rqa0 up",
        "link set lo up",
    ] {
        run(Command::new("ip").args(args.split(' ')));
    }
    let before = ip_addr();
    let a = network::collect(&Roots::host());
    assert_eq!(ip_addr(), before, "addresses changed during the test");
    let n: Value = serde_json::from_slice(&a.bytes).unwrap();
    let ours: BTreeSet<(String, String, u64, String)> = n["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["family"].as_str().unwrap().to_owned(),
                a["address"].as_str().unwrap().to_owned(),
                a["prefix_len"].as_u64().unwrap(),
                a["interface"].as_str().unwrap_or("(none)").to_owned(),
            )
        })
        .collect();
    assert_eq!(ours, before, "{}", n["notes"]);
    // ip's own words for each address: its flags and label.
    let v: Value = serde_json::from_str(&run(Command::new("ip").args(["-j", "addr"]))).unwrap();
    let ip_info = |addr: &str| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .find(|a| a["local"] == addr)
            .unwrap_or_else(|| panic!("ip does not list {addr}"))
    };
    let find = |addr: &str| -> &Value {
        n["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["address"] == addr)
            .unwrap_or_else(|| panic!("{addr} is not in network.json"))
    };
    for addr in ["192.0.2.5", "fd00:5::5"] {
        assert_eq!(ip_info(addr)["noprefixroute"], true);
        let flags = find(addr)["flags"].to_string();
        assert!(flags.contains("noprefixroute"), "{addr}: {flags}");
    }
    assert_eq!(ip_info("198.51.100.7")["label"], "rqa0:1");
    assert_eq!(find("198.51.100.7")["label"], "rqa0:1");
    assert!(find("192.0.2.5")["label"].is_null());
    // No route contains the noprefixroute address: what the old reading of fib_trie needed.
    let routes = n["routes"].to_string();
    assert!(!routes.contains("192.0.2.0"), "{routes}");
    assert!(routes.contains("198.51.100.0"), "{routes}");
}

#[test]
fn kernel_facts_and_symbols_agree_with_uname_and_sha256sum() {
    if !can_run("live kernel and symbols", &["uname", "sha256sum"]) {
        return;
    }
    let arts = stable();
    let k = doc(&arts, "state/kernel.json");
    assert_eq!(k["release"], run(Command::new("uname").arg("-r")).trim());
    assert_eq!(k["hostname"], run(Command::new("uname").arg("-n")).trim());
    let s = doc(&arts, "symbols/symbols.json");
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if btf.exists() {
        let a = arts
            .iter()
            .find(|a| a.name == "symbols/vmlinux.btf")
            .unwrap();
        assert_eq!(sha256sum_bytes(&a.bytes), sha256sum(btf));
        let f = s["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["artifact"] == "symbols/vmlinux.btf")
            .unwrap();
        assert_eq!(f["sha256"], sha256sum(btf).as_str());
    }
    let ks = arts.iter().find(|a| a.name == "symbols/kallsyms").unwrap();
    // As root with kptr_restrict < 2, kallsyms has real addresses and says so by no note.
    let kptr = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict").unwrap();
    if kptr.trim() != "2" {
        let stext = String::from_utf8_lossy(&ks.bytes)
            .lines()
            .find(|l| l.ends_with(" T _stext"))
            .map(str::to_owned)
            .unwrap();
        assert!(!stext.starts_with("0000000000000000"), "{stext}");
        assert!(!s["notes"].to_string().contains("kptr_restrict="), "{s:#}");
    }
    let rel = k["release"].as_str().unwrap();
    let map = format!("/boot/System.map-{rel}");
    if Path::new(&map).exists() {
        let a = arts
            .iter()
            .find(|a| a.name == format!("symbols/System.map-{rel}"))
            .unwrap();
        assert_eq!(sha256sum_bytes(&a.bytes), sha256sum(Path::new(&map)));
    } else {
        assert!(s["notes"].to_string().contains(&map), "{s:#}");
    }
    mark("kernel-symbols");
}
