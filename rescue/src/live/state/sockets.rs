//! `state/sockets.json`: the kernel's socket tables (`/proc/net/{tcp,tcp6,udp,udp6,raw,raw6,unix,
//! packet}`) joined by inode with the `socket:[INODE]` links of `/proc/PID/fd/*`, so each socket names
//! the processes holding it. Every network namespace a process lives in is read (through
//! `/proc/PID/net/*` of one of its processes), so a listener inside a container is not missed.
//! Packet sockets are listed because a sniffer holds one.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// The socket tables read, each with its protocol name.
const INET_TABLES: [&str; 6] = ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"];

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    pub fd: u32,
    pub comm: String,
}

/// One socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// `tcp`, `tcp6`, `udp`, `udp6`, `raw`, `raw6`, `unix`, `packet`.
    pub protocol: String,
    /// The network namespace (`net:[4026531840]`), when it could be read.
    pub netns: Option<String>,
    pub inode: u64,
    /// `LISTEN`, `ESTABLISHED`, … for TCP; `UNCONN`/`ESTABLISHED` for UDP and raw; `LISTEN`,
    /// `CONNECTED`, `UNCONNECTED`, … for UNIX sockets.
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    /// The port (TCP/UDP) or the IP protocol number (raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    /// The owner's UID as the table says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// UNIX sockets: `STREAM`, `DGRAM`, `SEQPACKET`; packet sockets: `RAW`, `DGRAM`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// UNIX sockets: the bound path (`@name` for the abstract namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Packet sockets: the ethertype (`0x0003` is every protocol) and interface index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    pub owners: Vec<Owner>,
}

fn tcp_state(st: u8) -> &'static str {
    match st {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// `0100007F` → 127.0.0.1: the kernel prints the address's 32-bit words as native integers.
fn ipv4(hex: &str) -> Option<Ipv4Addr> {
    if hex.len() != 8 {
        return None;
    }
    let w = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(w.to_ne_bytes()))
}

fn ipv6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut b = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Some(Ipv6Addr::from(b))
}

/// `ADDR:PORT` of a tcp/udp/raw table.
fn endpoint(s: &str) -> Option<(String, u16)> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let addr = match a.len() {
        8 => ipv4(a)?.to_string(),
        32 => ipv6(a)?.to_string(),
        _ => return None,
    };
    Some((addr, port))
}

/// Parses one of `/proc/net/{tcp,tcp6,udp,udp6,raw,raw6}`. Lines that are not in the kernel's
/// format are returned as errors (line number, text) instead of being dropped.
pub fn parse_inet(protocol: &str, b: &[u8]) -> (Vec<Socket>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let tcp = protocol.starts_with("tcp");
    for (i, line) in b.split(|&c| c == b'\n').enumerate().skip(1) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Ok(s) = std::str::from_utf8(line) else {
            bad.push(format!("line {}: not text", i + 1));
            continue;
        };
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            let (la, lp) = endpoint(f.get(1)?)?;
            let (ra, rp) = endpoint(f.get(2)?)?;
            let st = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let uid = f.get(7)?.parse().ok()?;
            let inode = f.get(9)?.parse().ok()?;
            let state = if tcp {
                tcp_state(st)
            } else if st == 0x01 {
                "ESTABLISHED"
            } else {
                "UNCONN"
            };
            Some(Socket {
                protocol: protocol.to_owned(),
                inode,
                state: Some(state.to_owned()),
                local_address: Some(la),
                local_port: Some(lp),
                remote_address: Some(ra),
                remote_port: Some(rp),
                uid: Some(uid),
                ..Socket::default()
            })
        })();
        match parsed {
            Some(sock) => out.push(sock),
            None => bad.push(format!("line {}: {:?}", i + 1, truncate(s))),
        }
    }
    (out, bad)
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Parses `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode [Path]`; the path may hold
/// spaces.
pub fn parse_unix(b: &[u8]) -> (Vec<Socket>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate().skip(1) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let f: Vec<&[u8]> = line
            .splitn(8, |&c| c == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let hexnum = |x: Option<&&[u8]>| -> Option<u32> {
            u32::from_str_radix(std::str::from_utf8(x?).ok()?, 16).ok()
        };
        let parsed = (|| {
            let flags = hexnum(f.get(3))?;
            let kind = hexnum(f.get(4))?;
            let st = hexnum(f.get(5))?;
            let inode: u64 = doc::num(f.get(6)?)?;
            let state = if flags & 0x0001_0000 != 0 {
                "LISTEN"
            } else {
                match st {
                    1 => "UNCONNECTED",
                    2 => "CONNECTING",
                    3 => "CONNECTED",
                    4 => "DISCONNECTING",
                    _ => "UNKNOWN",
                }
            };
            let kind = match kind {
                1 => "STREAM".to_owned(),
                2 => "DGRAM".to_owned(),
                5 => "SEQPACKET".to_owned(),
                k => format!("{k}"),
            };
            Some(Socket {
                protocol: "unix".into(),
                inode,
                state: Some(state.into()),
                kind: Some(kind),
                path: f.get(7).map(|p| text(p.trim_ascii_end())),
                ..Socket::default()
            })
        })();
        match parsed {
            Some(s) => out.push(s),
            None => bad.push(format!("line {}: {:?}", i + 1, truncate(&text(line)))),
        }
    }
    (out, bad)
}

/// Parses `/proc/net/packet`: `sk RefCnt Type Proto Iface R Rmem User Inode`.
pub fn parse_packet(b: &[u8]) -> (Vec<Socket>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate().skip(1) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = String::from_utf8_lossy(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            let kind = match f.get(2)?.parse::<u32>().ok()? {
                3 => "RAW".to_owned(),
                2 => "DGRAM".to_owned(),
                k => k.to_string(),
            };
            let proto = u16::from_str_radix(f.get(3)?, 16).ok()?;
            Some(Socket {
                protocol: "packet".into(),
                inode: f.get(8)?.parse().ok()?,
                kind: Some(kind),
                ethertype: Some(format!("0x{proto:04x}")),
                ifindex: f.get(4)?.parse().ok(),
                uid: f.get(7)?.parse().ok(),
                ..Socket::default()
            })
        })();
        match parsed {
            Some(s) => out.push(s),
            None => bad.push(format!("line {}: {:?}", i + 1, truncate(&s))),
        }
    }
    (out, bad)
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    doc::num(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

/// The sockets each process holds: inode → owners; and network namespace → one PID in it.
#[derive(Debug, Default)]
pub struct FdMap {
    pub owners: HashMap<u64, Vec<Owner>>,
    pub namespaces: BTreeMap<String, u32>,
}

/// Walks `/proc/PID/fd` of every listed process.
pub fn fd_map(proc: &Path, pids: &[u32], d: &mut Doc) -> FdMap {
    let mut m = FdMap::default();
    let mut denied = 0usize;
    for &pid in pids {
        let dir = proc.join(pid.to_string());
        if let Ok(ns) = doc::readlink(&dir.join("ns/net")) {
            m.namespaces.entry(text(&ns)).or_insert(pid);
        }
        let fds = match doc::numeric_entries(&dir.join("fd")) {
            Ok(f) => f,
            Err(e) if doc::gone(&e) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                denied += 1;
                continue;
            }
            Err(e) => {
                d.note(format!("{}: {}", dir.join("fd").display(), doc::why(&e)));
                continue;
            }
        };
        let comm = doc::read(&dir.join("comm"))
            .map(|c| text(c.strip_suffix(b"\n").unwrap_or(&c)))
            .unwrap_or_default();
        for fd in fds {
            let Ok(link) = doc::readlink(&dir.join("fd").join(fd.to_string())) else {
                continue;
            };
            if let Some(inode) = socket_inode(&link) {
                m.owners.entry(inode).or_default().push(Owner {
                    pid,
                    fd,
                    comm: comm.clone(),
                });
            }
        }
    }
    if denied > 0 {
        d.note(format!(
            "the open files of {denied} processes could not be read (permission denied: run as root)"
        ));
    }
    m
}

/// Reads every table of one namespace from `net` (`/proc/net` or `/proc/PID/net`).
fn read_tables(net: &Path, netns: Option<&str>, d: &mut Doc) -> Vec<Socket> {
    let mut all = Vec::new();
    let names = INET_TABLES.iter().copied().chain(["unix", "packet"]);
    for name in names {
        let path = net.join(name);
        let b = match doc::read(&path) {
            Ok(b) => b,
            Err(e) => {
                d.note(format!("{}: {}", path.display(), doc::why(&e)));
                continue;
            }
        };
        let (socks, bad) = match name {
            "unix" => parse_unix(&b),
            "packet" => parse_packet(&b),
            _ => parse_inet(name, &b),
        };
        for b in bad {
            d.note(format!("{}: {b}", path.display()));
        }
        all.extend(socks.into_iter().map(|mut s| {
            s.netns = netns.map(str::to_owned);
            s
        }));
    }
    all
}

/// Collects `state/sockets.json` for the processes in `pids`.
pub fn collect(roots: &Roots, pids: &[u32]) -> Artifact {
    let proc = &roots.proc;
    let mut d = Doc::start(
        "state/sockets.json",
        "rescue.live.sockets/1",
        "/proc/net/{tcp,tcp6,udp,udp6,raw,raw6,unix,packet} and /proc/PID/net/* per network namespace, /proc/PID/fd/*",
    );
    let map = fd_map(proc, pids, &mut d);
    let own = doc::readlink(&proc.join("self/ns/net"))
        .ok()
        .map(|b| text(&b));
    // Our own namespace through /proc/net; every other through one of its processes.
    let mut sources: Vec<(Option<String>, PathBuf)> = vec![(own.clone(), proc.join("net"))];
    for (ns, pid) in &map.namespaces {
        if Some(ns) != own.as_ref() {
            sources.push((Some(ns.clone()), proc.join(pid.to_string()).join("net")));
        }
    }
    let mut sockets = Vec::new();
    for (ns, net) in &sources {
        sockets.extend(read_tables(net, ns.as_deref(), &mut d));
    }
    for s in &mut sockets {
        if let Some(o) = map.owners.get(&s.inode)
            && s.inode != 0
        {
            s.owners = o.clone();
        }
    }
    let known: std::collections::HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let unmatched = map.owners.keys().filter(|i| !known.contains(i)).count();
    if unmatched > 0 {
        d.note(format!(
            "{unmatched} sockets held by processes are in none of these tables (netlink, \
             vsock, bluetooth and other families)"
        ));
    }
    d.finish(vec![
        (
            "namespaces",
            doc::json(&sources.iter().map(|s| &s.0).collect::<Vec<_>>()),
        ),
        ("sockets", doc::json(&sockets)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_table_lines_become_endpoints_states_and_inodes() {
        let t = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
   1: 0200A8C0:0016 0100A8C0:D431 01 00000000:00000000 02:000A7D5E 00000000  1000        0 4242 4 0000000000000000 20 4 30 10 -1\n";
        let (s, bad) = parse_inet("tcp", t);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(s[0].local_port, Some(22));
        assert_eq!(s[0].state.as_deref(), Some("LISTEN"));
        assert_eq!(s[0].inode, 31337);
        assert_eq!(s[1].remote_address.as_deref(), Some("192.168.0.1"));
        assert_eq!(s[1].remote_port, Some(0xD431));
        assert_eq!(s[1].uid, Some(1000));
        assert_eq!(s[1].state.as_deref(), Some("ESTABLISHED"));
    }

    #[test]
    fn tcp6_addresses() {
        let t = b"hdr\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n";
        let (s, bad) = parse_inet("tcp6", t);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(s[0].local_address.as_deref(), Some("::1"));
        assert_eq!(s[0].local_port, Some(80));
        assert_eq!(s[0].remote_address.as_deref(), Some("::"));
    }

    #[test]
    fn udp_states_and_hostile_lines_become_notes() {
        let t = b"hdr\n   0: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9 2\n\
   1: 0100007F:00\n\
   2: GGGGGGGG:0044 00000000:0000 07 0 0 0 0 0 99999999999999999999999 2\n\
\xff\xfe\n";
        let (s, bad) = parse_inet("udp", t);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].state.as_deref(), Some("UNCONN"));
        assert_eq!(s[0].local_port, Some(68));
        assert_eq!(bad.len(), 3, "{bad:?}");
    }

    #[test]
    fn unix_paths_with_spaces_abstract_names_and_listeners() {
        let t = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000 00010000 0001 01 1111 /run/my socket\n\
0000000000000000: 00000002 00000000 00000000 0002 03 2222 @abstract\n\
0000000000000000: 00000003 00000000 00000000 0001 03 3333\n\
0000000000000000: 0000\n";
        let (s, bad) = parse_unix(t);
        assert_eq!(s.len(), 3);
        assert_eq!(bad.len(), 1);
        assert_eq!(s[0].path.as_deref(), Some("/run/my socket"));
        assert_eq!(s[0].state.as_deref(), Some("LISTEN"));
        assert_eq!(s[0].kind.as_deref(), Some("STREAM"));
        assert_eq!(s[1].path.as_deref(), Some("@abstract"));
        assert_eq!(s[1].kind.as_deref(), Some("DGRAM"));
        assert_eq!(s[2].path, None);
        assert_eq!(s[2].inode, 3333);
    }

    #[test]
    fn packet_sockets_name_their_ethertype() {
        let t = b"sk       RefCnt Type Proto  Iface R Rmem   User   Inode\n\
ffff8880 3      3    0003   2     1 0      0      5555\n";
        let (s, bad) = parse_packet(t);
        assert!(bad.is_empty());
        assert_eq!(s[0].inode, 5555);
        assert_eq!(s[0].kind.as_deref(), Some("RAW"));
        assert_eq!(s[0].ifindex, Some(2));
        assert_eq!(s[0].ethertype.as_deref(), Some("0x0003"));
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[123]"), Some(123));
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"socket:[99999999999999999999999]"), None);
    }
}
