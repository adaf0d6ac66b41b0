//! `rescue net up` against a crafted DHCP server on a real link (issue 17): two network namespaces
//! joined by a veth pair, the server end answered by a DHCP server written here (a thread that enters
//! the server namespace and answers each DISCOVER and REQUEST as the case says), the real `rescue`
//! binary run in the client namespace by `ip netns exec`. What the kernel ends up with is read back
//! with iproute2 (`ip -j addr`, `ip -j route`, `ip -j link`), not with our own code.
//!
//! Each bad reply (another client's `chaddr`, an ACK from another server, an OFFER of 0.0.0.0, a
//! lease without a netmask, an overload value that means nothing, a NAK) must be refused with words
//! naming what was wrong, leave no address on the interface, and end within a bounded time. A good
//! exchange, and one whose options are overloaded into `file`/`sname`, must configure exactly the
//! offered address, prefix, default route and resolver. A link whose peer stays down must end with
//! the carrier timeout, not hang. A default route the kernel refuses (a static gateway outside the
//! subnet) must be reported in the kernel's words and leave no address behind.
//!
//! `rescue` runs with `/run` and `/etc/resolv.conf` bind-mounted from the test's temporary directory
//! inside the mount namespace `ip netns exec` makes, so nothing on the host changes. Namespaces are
//! named per process and case and deleted by a guard on every path.
//!
//! Gated: needs root and `ip`; skipped otherwise unless `RESCUE_REQUIRE_TOOLS=1` (set by `cargo xtask
//! test`). Each test that ran leaves its marker (`net-veth-dhcp`, `net-veth-carrier`,
//! `net-veth-static`) in `RESCUE_TEST_MARKERS`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

const RESCUE: &str = env!("CARGO_BIN_EXE_rescue");
/// The interface names inside the namespaces (each namespace is private to one case).
const CLIENT_IF: &str = "rqc0";
const SERVER_IF: &str = "rqs0";
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 50);
/// Deliberately not /24, so a silently assumed /24 would show.
const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 192);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 53);
/// `--timeout` given to `net up` in the cases that must time out.
const DHCP_TIMEOUT_SECS: u64 = 3;
/// How long any one `net up` may take before the test calls it a hang: the DHCP timeout, the 5 s
/// carrier wait and generous room for a loaded machine.
const BOUND: Duration = Duration::from_secs(60);

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Whether this test can run here; otherwise skips, or fails under `RESCUE_REQUIRE_TOOLS`.
fn can_run(what: &str) -> bool {
    let required = std::env::var_os("RESCUE_REQUIRE_TOOLS").is_some();
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("needs root (network namespaces)")
    } else if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        Some("needs `ip` (iproute2)")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                !required,
                "{what}: {why}, and RESCUE_REQUIRE_TOOLS=1 forbids skipping"
            );
            eprintln!("skipped {what}: {why}");
            false
        }
    }
}

/// Records that the gated test `test` really ran (checked by `cargo xtask test`).
fn ran(test: &str) {
    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(Path::new(&m).join(test), b"ran\n").unwrap();
    }
}

/// Runs `ip ARGS`, failing with its stderr; returns stdout.
fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn ip_json(args: &[&str]) -> Value {
    serde_json::from_str(&ip(args)).unwrap()
}

/// Two namespaces joined by a veth pair; both namespaces (and with them the pair) are deleted on drop.
struct Pair {
    client: String,
    server: String,
    dir: tempfile::TempDir,
}

impl Pair {
    /// The server end gets [`SERVER`]/24 and is set up when `server_up`.
    fn new(server_up: bool) -> Pair {
        let n = CASE.fetch_add(1, Ordering::SeqCst);
        let base = format!("rescue-test-net-{}-{n}", std::process::id());
        let pair = Pair {
            client: format!("{base}-c"),
            server: format!("{base}-s"),
            dir: tempfile::tempdir().unwrap(),
        };
        // Drop deletes whatever of this was made if a step below fails.
        ip(&["netns", "add", &pair.client]);
        ip(&["netns", "add", &pair.server]);
        ip(&[
            "link",
            "add",
            CLIENT_IF,
            "netns",
            &pair.client,
            "type",
            "veth",
            "peer",
            "name",
            SERVER_IF,
            "netns",
            &pair.server,
        ]);
        ip(&[
            "-n",
            &pair.server,
            "addr",
            "add",
            &format!("{SERVER}/24"),
            "dev",
            SERVER_IF,
        ]);
        if server_up {
            ip(&["-n", &pair.server, "link", "set", SERVER_IF, "up"]);
        }
        std::fs::create_dir(pair.dir.path().join("run")).unwrap();
        std::fs::write(pair.dir.path().join("resolv.conf"), "# the test's\n").unwrap();
        pair
    }

    /// Runs `rescue net ARGS` in the client namespace (with `/run` and `/etc/resolv.conf` from this
    /// pair's directory), failing the test if it has not ended after [`BOUND`].
    fn rescue_net(&self, args: &[&str]) -> Outcome {
        let script = r#"mount --bind "$1" /run && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@""#;
        let run = self.dir.path().join("run");
        let resolv = self.dir.path().join("resolv.conf");
        let out = self.dir.path().join("out");
        let err = self.dir.path().join("err");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.client, "sh", "-c", script, "sh"])
            .arg(&run)
            .arg(&resolv)
            .arg(RESCUE)
            .arg("net")
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env_remove("RESCUE_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("starting ip netns exec");
        let start = Instant::now();
        let status = wait_exit(child, BOUND, &format!("rescue net {}", args.join(" ")));
        Outcome {
            status,
            took: start.elapsed(),
            stdout: std::fs::read_to_string(out).unwrap(),
            stderr: std::fs::read_to_string(err).unwrap(),
        }
    }

    /// The IPv4 addresses on the client interface, as `ADDR/PREFIX`.
    fn client_addresses(&self) -> Vec<String> {
        let v = ip_json(&[
            "-j",
            "-n",
            &self.client,
            "-4",
            "addr",
            "show",
            "dev",
            CLIENT_IF,
        ]);
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// The client's IPv4 routes as `ip -j route` reports them.
    fn client_routes(&self) -> Vec<Value> {
        ip_json(&["-j", "-n", &self.client, "-4", "route", "show"])
            .as_array()
            .unwrap()
            .clone()
    }

    /// Whether the client interface is administratively up (`UP` among its flags).
    fn client_up(&self) -> bool {
        let v = ip_json(&["-j", "-n", &self.client, "link", "show", "dev", CLIENT_IF]);
        v[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str() == Some("UP"))
    }

    fn resolv_conf(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("resolv.conf")).unwrap()
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("run/rescue/net.json")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

struct Outcome {
    status: ExitStatus,
    took: Duration,
    stdout: String,
    stderr: String,
}

/// Waits for `child` (a blocking wait on a thread), killing it and failing after `timeout`.
fn wait_exit(mut child: std::process::Child, timeout: Duration, what: &str) -> ExitStatus {
    let pid = child.id() as i32;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped (the wait above
            // has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what} hung: still running after {timeout:?}");
        }
    }
}

/// What the crafted server does wrong (or right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Good,
    /// The good lease with mask, router and DNS only in `file` and `sname` (option 52 = 3).
    Overloaded,
    /// OFFERs carry another client's hardware address.
    WrongChaddr,
    /// The ACK names another server (option 54).
    WrongServerId,
    /// OFFERs of 0.0.0.0.
    ZeroYiaddr,
    /// Neither OFFER nor ACK has option 1.
    MissingNetmask,
    /// OFFERs whose option 52 is 7, which means nothing.
    BadOverload,
    /// The REQUEST is answered with a NAK.
    Nak,
}

/// The crafted DHCP server: a thread in the server namespace; it returns the DHCP message types it
/// received, in order.
struct Server {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u8>>,
}

impl Server {
    /// Enters the server namespace on a new thread and answers per `case` until stopped.
    fn start(ns: &str, case: Case) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = channel();
        let ns_path = PathBuf::from("/run/netns").join(ns);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&ns_path).unwrap();
            // SAFETY: setns(2) with a namespace file we opened; CLONE_NEWNET moves only this thread.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {}", ns_path.display());
            let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)).unwrap();
            let name = std::ffi::CString::new(SERVER_IF).unwrap();
            // SAFETY: SO_BINDTODEVICE with a NUL-terminated name and its length.
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_ptr().cast(),
                    name.as_bytes_with_nul().len() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "SO_BINDTODEVICE");
            sock.set_broadcast(true).unwrap();
            // The read timeout only lets the loop see `stop`; answers never wait on it.
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some(kind) = message_type(&buf[..n]) else {
                    continue;
                };
                seen.push(kind);
                if let Some(answer) = answer(case, kind, &buf[..n]) {
                    sock.send_to(&answer, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68))
                        .unwrap();
                }
            }
            seen
        });
        ready_rx
            .recv_timeout(BOUND)
            .expect("the DHCP server thread did not start");
        Server { stop, thread }
    }

    /// Stops the server; returns the message types it received.
    fn finish(self) -> Vec<u8> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// The DHCP message type (option 53) of a client message, read here rather than by `rescue`.
fn message_type(m: &[u8]) -> Option<u8> {
    if m.len() < 240 || m[0] != 1 || m[236..240] != MAGIC {
        return None;
    }
    let mut i = 240;
    while i + 1 < m.len() && m[i] != 255 {
        if m[i] == 0 {
            i += 1;
            continue;
        }
        let len = m[i + 1] as usize;
        if m[i] == 53 && len == 1 {
            return m.get(i + 2).copied();
        }
        i += 2 + len;
    }
    None
}

fn opt(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    out.push(code);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// The crafted reply to a client message of type `kind`, or none.
fn answer(case: Case, kind: u8, request: &[u8]) -> Option<Vec<u8>> {
    let reply_kind = match (kind, case) {
        (DISCOVER, _) => OFFER,
        (REQUEST, Case::Nak) => NAK,
        (REQUEST, _) => ACK,
        _ => return None,
    };
    let mut m = vec![0u8; 236];
    m[0] = 2; // BOOTREPLY
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&request[4..8]); // xid
    m[10..12].copy_from_slice(&request[10..12]); // flags
    m[28..44].copy_from_slice(&request[28..44]); // chaddr
    let yiaddr = match (case, reply_kind) {
        (Case::ZeroYiaddr, _) | (_, NAK) => Ipv4Addr::UNSPECIFIED,
        _ => OFFERED,
    };
    m[16..20].copy_from_slice(&yiaddr.octets());
    m[20..24].copy_from_slice(&SERVER.octets()); // siaddr
    if case == Case::WrongChaddr {
        m[28..34].copy_from_slice(&[0x02, 0xde, 0xad, 0xbe, 0xef, 0x01]);
    }
    m.extend_from_slice(&MAGIC);
    opt(&mut m, 53, &[reply_kind]);
    let server_id = if case == Case::WrongServerId && reply_kind == ACK {
        Ipv4Addr::new(10, 213, 7, 99)
    } else {
        SERVER
    };
    opt(&mut m, 54, &server_id.octets());
    if reply_kind == NAK {
        m.push(255);
        return Some(m);
    }
    opt(&mut m, 51, &3600u32.to_be_bytes());
    let mut rest = Vec::new();
    if case != Case::MissingNetmask {
        opt(&mut rest, 1, &NETMASK.octets());
    }
    opt(&mut rest, 3, &SERVER.octets());
    opt(&mut rest, 6, &DNS.octets());
    match case {
        Case::Overloaded => {
            // Options field: type, server, lease, overload; `file` (bytes 108..236) holds the
            // netmask and router, `sname` (44..108) the DNS server.
            opt(&mut m, 52, &[3]);
            let mut file = Vec::new();
            opt(&mut file, 1, &NETMASK.octets());
            opt(&mut file, 3, &SERVER.octets());
            file.push(255);
            m[108..108 + file.len()].copy_from_slice(&file);
            let mut sname = Vec::new();
            opt(&mut sname, 6, &DNS.octets());
            sname.push(255);
            m[44..44 + sname.len()].copy_from_slice(&sname);
        }
        Case::BadOverload => {
            opt(&mut m, 52, &[7]);
            m.extend_from_slice(&rest);
        }
        _ => m.extend_from_slice(&rest),
    }
    m.push(255);
    m.resize(m.len().max(300), 0);
    Some(m)
}

/// Runs `rescue net up --dhcp` against the crafted server; returns the pair (still alive, for
/// checks), the outcome and the message types the server received.
fn dhcp_case(case: Case, timeout: u64) -> (Pair, Outcome, Vec<u8>) {
    let pair = Pair::new(true);
    let server = Server::start(&pair.server, case);
    let out = pair.rescue_net(&["up", CLIENT_IF, "--dhcp", "--timeout", &timeout.to_string()]);
    let seen = server.finish();
    (pair, out, seen)
}

/// A refused case: non-zero exit, every word of `words` in the message, no address, link down
/// again, no state recorded, within the DHCP timeout and the bound.
fn assert_refused(case: Case, pair: &Pair, out: &Outcome, words: &[&str]) {
    let what = format!(
        "{case:?}: exit {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        out.stdout,
        out.stderr
    );
    assert_eq!(out.status.code(), Some(1), "{what}");
    for w in words {
        assert!(out.stderr.contains(w), "{what}: no {w:?}");
    }
    assert!(out.stdout.is_empty(), "{what}: something printed as done");
    assert_eq!(pair.client_addresses(), Vec::<String>::new(), "{what}");
    assert!(pair.client_routes().is_empty(), "{what}: routes left");
    assert!(!pair.client_up(), "{what}: the link was left up");
    assert!(!pair.state_file().exists(), "{what}: net.json written");
    assert_eq!(pair.resolv_conf(), "# the test's\n", "{what}");
}

/// A configured case: exactly the offered address, prefix, default route and resolver.
fn assert_configured(case: Case, pair: &Pair, out: &Outcome) {
    let what = format!(
        "{case:?}: exit {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        out.stdout,
        out.stderr
    );
    assert!(out.status.success(), "{what}");
    assert_eq!(
        out.stdout,
        format!("{CLIENT_IF}: {OFFERED}/26, gateway {SERVER} (dhcp from {SERVER}), dns {DNS}\n"),
        "{what}"
    );
    assert_eq!(pair.client_addresses(), [format!("{OFFERED}/26")], "{what}");
    let routes = pair.client_routes();
    let default: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1, "{what}: routes {routes:?}");
    assert_eq!(default[0]["gateway"], SERVER.to_string(), "{what}");
    assert_eq!(default[0]["dev"], CLIENT_IF, "{what}");
    assert_eq!(default[0]["protocol"], "dhcp", "{what}");
    // The prefix route the kernel made for the address: the /26, not a /24.
    assert!(
        routes.iter().any(|r| r["dst"] == "10.213.7.0/26"),
        "{what}: routes {routes:?}"
    );
    assert_eq!(
        pair.resolv_conf(),
        format!("# written by rescue net up\nnameserver {DNS}\n"),
        "{what}"
    );
    let state: Value = serde_json::from_slice(&std::fs::read(pair.state_file()).unwrap()).unwrap();
    assert_eq!(state["address"], OFFERED.to_string(), "{what}");
    assert_eq!(state["prefix"], 26, "{what}");
    assert_eq!(state["lease_secs"], 3600, "{what}");
}

#[test]
fn dhcp_on_a_veth_pair_takes_only_a_good_lease() {
    if !can_run("net-veth-dhcp") {
        return;
    }
    for case in [Case::Good, Case::Overloaded] {
        let (pair, out, seen) = dhcp_case(case, 30);
        assert_configured(case, &pair, &out);
        // DISCOVERs (resent after 1 s on a slow machine), then the REQUEST.
        let first_request = seen.iter().position(|k| *k == REQUEST);
        assert!(
            first_request.is_some_and(|i| i > 0 && seen[..i].iter().all(|k| *k == DISCOVER)),
            "{case:?}: the server saw {seen:?}"
        );
        // And `net down` takes it all away again.
        let down = pair.rescue_net(&["down"]);
        assert!(down.status.success(), "net down: {}", down.stderr);
        assert_eq!(down.stdout, format!("{CLIENT_IF}: down\n"));
        assert_eq!(pair.client_addresses(), Vec::<String>::new());
        assert!(pair.client_routes().is_empty());
        assert!(!pair.client_up());
        assert!(!pair.state_file().exists());
    }

    let t = DHCP_TIMEOUT_SECS;
    // OFFERs that must not be taken: no REQUEST follows, the wait ends with the reason.
    for (case, why) in [
        (Case::WrongChaddr, "for another client (02:de:ad:be:ef:01)"),
        (
            Case::ZeroYiaddr,
            "OFFER from 10.213.7.1 of no address (0.0.0.0)",
        ),
        (Case::BadOverload, "option overload (52) of 7"),
    ] {
        let (pair, out, seen) = dhcp_case(case, t);
        let timeout = format!("no DHCP OFFER on {CLIENT_IF} within {t} s (a reply was ignored: ");
        assert_refused(case, &pair, &out, &[&timeout, why]);
        assert!(
            !seen.is_empty() && seen.iter().all(|k| *k == DISCOVER),
            "{case:?}: the server saw {seen:?}"
        );
        assert!(
            out.took >= Duration::from_secs(t),
            "{case:?}: {:?}",
            out.took
        );
    }

    // An ACK from another server: the wait for the ACK ends with the reason.
    let (pair, out, seen) = dhcp_case(Case::WrongServerId, t);
    assert_refused(
        Case::WrongServerId,
        &pair,
        &out,
        &[
            &format!("no DHCP ACK on {CLIENT_IF} within {t} s"),
            "ACK from 10.213.7.99, not from the server whose OFFER was requested (10.213.7.1)",
        ],
    );
    assert_eq!(seen.first(), Some(&DISCOVER));
    assert!(seen.contains(&REQUEST), "{seen:?}");

    // Answers that end the exchange at once: the NAK, and a lease without a netmask.
    let (pair, out, _) = dhcp_case(Case::Nak, 30);
    assert_refused(
        Case::Nak,
        &pair,
        &out,
        &["the DHCP server 10.213.7.1 refused the address 10.213.7.50 (NAK)"],
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    let (pair, out, _) = dhcp_case(Case::MissingNetmask, 30);
    assert_refused(
        Case::MissingNetmask,
        &pair,
        &out,
        &[
            "leased 10.213.7.50 without a subnet mask (option 1); the prefix is not guessed",
            "--address 10.213.7.50/PREFIX",
        ],
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    ran("net-veth-dhcp");
}

#[test]
fn net_up_without_carrier_ends_with_the_timeout_and_the_link_down() {
    if !can_run("net-veth-carrier") {
        return;
    }
    // The peer end stays down, so the client end never has carrier.
    let pair = Pair::new(false);
    let out = pair.rescue_net(&["up", CLIENT_IF, "--dhcp", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1), "stderr {:?}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{CLIENT_IF} has no link (carrier down after 5 s): check the cable or the switch port"
        )),
        "{}",
        out.stderr
    );
    assert!(out.took >= Duration::from_secs(5), "{:?}", out.took);
    assert_eq!(pair.client_addresses(), Vec::<String>::new());
    assert!(!pair.client_up(), "the link was left up");
    assert!(!pair.state_file().exists());
    ran("net-veth-carrier");
}

#[test]
fn a_route_the_kernel_refuses_leaves_no_address_behind() {
    if !can_run("net-veth-static") {
        return;
    }
    // A gateway outside the address's subnet: the kernel refuses the default route.
    let pair = Pair::new(true);
    let out = pair.rescue_net(&[
        "up",
        CLIENT_IF,
        "--address",
        &format!("{OFFERED}/26"),
        "--gateway",
        "192.0.2.1",
    ]);
    let what = format!("exit {:?}, stderr {:?}", out.status.code(), out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}");
    assert!(
        out.stderr.contains(
            "the kernel refused adding a default route via 192.0.2.1: Network is unreachable"
        ),
        "{what}"
    );
    assert_eq!(pair.client_addresses(), Vec::<String>::new(), "{what}");
    assert!(pair.client_routes().is_empty(), "{what}");
    assert!(!pair.client_up(), "{what}: the link was left up");
    assert!(!pair.state_file().exists(), "{what}");

    // The same with a reachable gateway configures exactly that.
    let out = pair.rescue_net(&[
        "up",
        CLIENT_IF,
        "--address",
        &format!("{OFFERED}/26"),
        "--gateway",
        &SERVER.to_string(),
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(pair.client_addresses(), [format!("{OFFERED}/26")]);
    let routes = pair.client_routes();
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == SERVER.to_string()),
        "{routes:?}"
    );
    ran("net-veth-static");
}
