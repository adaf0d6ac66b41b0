//! `state/network.json`: interfaces (`/sys/class/net/*`), addresses, routes and neighbours.
//! Addresses of both families come from the kernel by an rtnetlink dump (`RTM_GETADDR`, with the
//! interface names of an `RTM_GETLINK` dump; `rescue::net::netlink`), so each has its interface,
//! prefix, scope and flags whether or not a route contains it (`noprefixroute`). Where netlink fails,
//! or the collector reads a fixture tree rather than the running kernel, they come from files: IPv6
//! from `/proc/net/if_inet6`, IPv4 from `/proc/net/fib_trie` (its `/32 host LOCAL` entries), each
//! given the interface and prefix of the connected route that contains it (`/proc/net/route`; a
//! loopback-scope prefix such as `127.0.0.0/8` belongs to the loopback interface). Routes from
//! `/proc/net/route` and `/proc/net/ipv6_route`; neighbours from `/proc/net/arp`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};
use crate::net::netlink::{AddrInfo, Netlink, NetlinkError};

/// `ARPHRD_LOOPBACK` in `/sys/class/net/*/type`.
const ARPHRD_LOOPBACK: u32 = 772;

/// One network interface.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: Option<u32>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub operstate: Option<String>,
    /// `IFF_*` flags in words (`UP`, `BROADCAST`, `LOOPBACK`, `PROMISC`, …).
    pub flags: Vec<String>,
    /// `ARPHRD_*` number (1 Ethernet, 772 loopback, 65534 none/tun).
    #[serde(rename = "type")]
    pub kind: Option<u32>,
    pub driver: Option<String>,
    /// The bridge or bond it is enslaved to.
    pub master: Option<String>,
}

const IFF: [(u32, &str); 19] = [
    (0x1, "UP"),
    (0x2, "BROADCAST"),
    (0x4, "DEBUG"),
    (0x8, "LOOPBACK"),
    (0x10, "POINTOPOINT"),
    (0x20, "NOTRAILERS"),
    (0x40, "RUNNING"),
    (0x80, "NOARP"),
    (0x100, "PROMISC"),
    (0x200, "ALLMULTI"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1000, "MULTICAST"),
    (0x2000, "PORTSEL"),
    (0x4000, "AUTOMEDIA"),
    (0x8000, "DYNAMIC"),
    (0x10000, "LOWER_UP"),
    (0x20000, "DORMANT"),
    (0x40000, "ECHO"),
];

/// `IFF_*` bits in words.
pub fn flag_words(flags: u32) -> Vec<String> {
    IFF.iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, w)| (*w).to_owned())
        .collect()
}

fn small(p: &Path) -> Option<String> {
    doc::read(p).ok().map(|b| text(b.trim_ascii()))
}

fn link_name(p: &Path) -> Option<String> {
    let t = doc::readlink(p).ok()?;
    Some(text(t.rsplit(|&c| c == b'/').next().unwrap_or(&t)))
}

/// Reads `/sys/class/net/*`.
pub fn interfaces(dir: &Path, d: &mut Doc) -> Vec<Interface> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            d.note(format!("listing {}: {}", dir.display(), doc::why(&e)));
            return Vec::new();
        }
    };
    let mut out: Vec<Interface> = entries
        .flatten()
        .map(|e| {
            let p = e.path();
            let hex = |n: &str| {
                small(&p.join(n))
                    .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            };
            Interface {
                name: text(e.file_name().as_bytes()),
                ifindex: small(&p.join("ifindex")).and_then(|s| s.parse().ok()),
                mac: small(&p.join("address")),
                mtu: small(&p.join("mtu")).and_then(|s| s.parse().ok()),
                operstate: small(&p.join("operstate")),
                flags: hex("flags").map(flag_words).unwrap_or_default(),
                kind: small(&p.join("type")).and_then(|s| s.parse().ok()),
                driver: link_name(&p.join("device/driver")),
                master: link_name(&p.join("master")),
            }
        })
        .collect();
    out.sort_by_key(|i| (i.ifindex.unwrap_or(u32::MAX), i.name.clone()));
    out
}

/// One IPv4 route of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route4 {
    pub interface: String,
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub flags: u32,
    pub metric: u32,
}

fn le_ipv4(hex: &str) -> Option<Ipv4Addr> {
    if hex.len() != 8 {
        return None;
    }
    Some(Ipv4Addr::from(
        u32::from_str_radix(hex, 16).ok()?.to_ne_bytes(),
    ))
}

/// Parses `/proc/net/route` (hex addresses as native 32-bit words).
pub fn parse_route(b: &[u8]) -> (Vec<Route4>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate().skip(1) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = text(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            let mask = le_ipv4(f.get(7)?)?;
            let m = u32::from(mask);
            // A netmask is contiguous ones; anything else is not a prefix.
            if m.leading_ones() + m.trailing_zeros() != 32 {
                return None;
            }
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let gw = le_ipv4(f.get(2)?)?;
            Some(Route4 {
                interface: (*f.first()?).to_owned(),
                destination: le_ipv4(f.get(1)?)?,
                prefix_len: m.leading_ones() as u8,
                // RTF_GATEWAY
                gateway: (flags & 0x2 != 0).then_some(gw),
                flags,
                metric: f.get(6)?.parse().ok()?,
            })
        })();
        match parsed {
            Some(r) => out.push(r),
            None => bad.push(format!(
                "line {}: {:?}",
                i + 1,
                s.chars().take(120).collect::<String>()
            )),
        }
    }
    (out, bad)
}

/// One entry of `/proc/net/fib_trie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibEntry {
    pub table: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// `host`, `link`, `universe`.
    pub scope: String,
    /// `LOCAL`, `UNICAST`, `BROADCAST`, …
    pub kind: String,
}

/// Parses `/proc/net/fib_trie`: `Table:` headers, `|-- ADDR` leaves, `/LEN SCOPE TYPE` lines.
pub fn parse_fib_trie(b: &[u8]) -> Vec<FibEntry> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in b.split(|&c| c == b'\n') {
        let s = String::from_utf8_lossy(line);
        if !s.starts_with(' ') && s.ends_with(':') {
            table = s.trim_end_matches(':').to_owned();
            leaf = None;
            continue;
        }
        let t = s.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            leaf = a.trim().parse().ok();
        } else if let Some(rest) = t.strip_prefix('/') {
            let f: Vec<&str> = rest.split_ascii_whitespace().collect();
            if let (Some(addr), Some(len), Some(scope), Some(kind)) = (
                leaf,
                f.first()
                    .and_then(|l| l.parse::<u8>().ok())
                    .filter(|l| *l <= 32),
                f.get(1),
                f.get(2),
            ) {
                out.push(FibEntry {
                    table: table.clone(),
                    address: addr,
                    prefix_len: len,
                    scope: (*scope).to_owned(),
                    kind: (*kind).to_owned(),
                });
            }
        } else if t.starts_with("+--") {
            leaf = None;
        }
    }
    out
}

fn contains(net: Ipv4Addr, len: u8, a: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len.min(32)));
    u32::from(net) & mask == u32::from(a) & mask
}

/// One address of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    pub prefix_len: Option<u8>,
    pub interface: Option<String>,
    pub scope: Option<String>,
    /// `IFA_F_*` in `ip`'s words (`secondary`/`temporary`, `tentative`, `deprecated`, `permanent`,
    /// `noprefixroute`, …); empty when read from files, which do not carry them.
    pub flags: Vec<String>,
    /// The IPv4 label where it is not the interface's name (an alias such as `eth0:1`).
    pub label: Option<String>,
    /// The far end of a point-to-point address.
    pub peer: Option<String>,
}

/// The IPv4 addresses (`/32 host LOCAL` entries) with the interface and prefix of the most specific
/// connected route containing each (a `link`-scope `UNICAST` route of `routes`, or a `host`-scope
/// `LOCAL` prefix shorter than /32, which belongs to the loopback interface).
pub fn ipv4_addresses(fib: &[FibEntry], routes: &[Route4], loopback: Option<&str>) -> Vec<Address> {
    let locals: BTreeSet<Ipv4Addr> = fib
        .iter()
        .filter(|e| e.kind == "LOCAL" && e.prefix_len == 32)
        .map(|e| e.address)
        .collect();
    locals
        .into_iter()
        .map(|a| {
            let connected = routes
                .iter()
                .filter(|r| {
                    r.gateway.is_none()
                        && r.prefix_len > 0
                        && contains(r.destination, r.prefix_len, a)
                })
                .max_by_key(|r| r.prefix_len);
            let host_prefix = fib
                .iter()
                .filter(|e| {
                    e.kind == "LOCAL" && e.prefix_len < 32 && contains(e.address, e.prefix_len, a)
                })
                .max_by_key(|e| e.prefix_len);
            let (len, iface) = match (connected, host_prefix) {
                (Some(r), _) => (Some(r.prefix_len), Some(r.interface.clone())),
                (None, Some(h)) => (Some(h.prefix_len), loopback.map(str::to_owned)),
                (None, None) => (None, None),
            };
            Address {
                family: "inet".into(),
                address: a.to_string(),
                prefix_len: len,
                interface: iface,
                scope: None,
                flags: Vec::new(),
                label: None,
                peer: None,
            }
        })
        .collect()
}

/// `IFA_F_*` bits as `ip` names them; bit 0 is `temporary` for IPv6, `secondary` for IPv4.
const IFA_F: [(u32, &str); 11] = [
    (0x02, "nodad"),
    (0x04, "optimistic"),
    (0x08, "dadfailed"),
    (0x10, "homeaddress"),
    (0x20, "deprecated"),
    (0x40, "tentative"),
    (0x80, "permanent"),
    (0x100, "mngtmpaddr"),
    (0x200, "noprefixroute"),
    (0x400, "autojoin"),
    (0x800, "stable-privacy"),
];

/// `RT_SCOPE_*` in words (the words `/proc/net/if_inet6` scopes are given in, too).
fn scope_word(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

/// An address of the kernel's dump, on the interface its index names.
pub fn from_netlink(a: &AddrInfo, interface: Option<&str>) -> Address {
    let v6 = a.local.is_ipv6();
    let mut flags = Vec::new();
    if a.flags & 0x01 != 0 {
        flags.push(if v6 { "temporary" } else { "secondary" }.to_owned());
    }
    flags.extend(
        IFA_F
            .iter()
            .filter(|(b, _)| a.flags & b != 0)
            .map(|(_, w)| (*w).to_owned()),
    );
    Address {
        family: if v6 { "inet6" } else { "inet" }.into(),
        address: a.local.to_string(),
        prefix_len: Some(a.prefix_len),
        interface: interface.map(str::to_owned),
        scope: Some(scope_word(a.scope)),
        flags,
        label: a.label.clone().filter(|l| Some(l.as_str()) != interface),
        peer: a.peer.map(|p: IpAddr| p.to_string()),
    }
}

/// The addresses of the running kernel by rtnetlink.
fn kernel_addresses() -> Result<Vec<Address>, NetlinkError> {
    Ok(Netlink::open()?
        .addresses()?
        .iter()
        .map(|(a, name)| from_netlink(a, name.as_deref()))
        .collect())
}

/// Netlink answers for the kernel this process runs on, which is what `/proc` shows; a fixture tree
/// (tests, `RESCUE_TEST_LIVE_ROOT`) is read from its files.
fn asks_running_kernel(roots: &Roots) -> bool {
    roots.proc == Path::new("/proc")
}

fn ipv6_hex(h: &str) -> Option<Ipv6Addr> {
    if h.len() != 32 || !h.is_ascii() {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::from_str_radix(&h[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(Ipv6Addr::from(b))
}

/// Parses `/proc/net/if_inet6`: `ADDR IFINDEX PREFIXLEN SCOPE FLAGS NAME` (hex, address bytes in order).
pub fn parse_if_inet6(b: &[u8]) -> (Vec<Address>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = text(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            let scope = match u8::from_str_radix(f.get(3)?, 16).ok()? {
                0x00 => "global",
                0x10 => "host",
                0x20 => "link",
                0x40 => "site",
                _ => "other",
            };
            Some(Address {
                family: "inet6".into(),
                address: ipv6_hex(f.first()?)?.to_string(),
                prefix_len: Some(u8::from_str_radix(f.get(2)?, 16).ok()?),
                interface: Some((*f.get(5)?).to_owned()),
                scope: Some(scope.into()),
                flags: Vec::new(),
                label: None,
                peer: None,
            })
        })();
        match parsed {
            Some(a) => out.push(a),
            None => bad.push(format!(
                "line {}: {:?}",
                i + 1,
                s.chars().take(120).collect::<String>()
            )),
        }
    }
    (out, bad)
}

/// One IPv6 route of `/proc/net/ipv6_route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route6 {
    pub interface: String,
    pub destination: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv6Addr>,
    pub metric: u32,
    pub flags: u32,
}

/// Parses `/proc/net/ipv6_route`.
pub fn parse_ipv6_route(b: &[u8]) -> (Vec<Route6>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = text(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            let gw = ipv6_hex(f.get(4)?)?;
            Some(Route6 {
                destination: ipv6_hex(f.first()?)?,
                prefix_len: u8::from_str_radix(f.get(1)?, 16)
                    .ok()
                    .filter(|l| *l <= 128)?,
                gateway: (!gw.is_unspecified()).then_some(gw),
                metric: u32::from_str_radix(f.get(5)?, 16).ok()?,
                flags: u32::from_str_radix(f.get(8)?, 16).ok()?,
                interface: (*f.get(9)?).to_owned(),
            })
        })();
        match parsed {
            Some(r) => out.push(r),
            None => bad.push(format!(
                "line {}: {:?}",
                i + 1,
                s.chars().take(120).collect::<String>()
            )),
        }
    }
    (out, bad)
}

/// One neighbour of `/proc/net/arp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub address: String,
    pub mac: String,
    pub interface: String,
    /// `ATF_*`: 0x2 complete, 0x4 permanent (static).
    pub flags: u32,
}

/// Parses `/proc/net/arp`.
pub fn parse_arp(b: &[u8]) -> (Vec<Neighbour>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate().skip(1) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let s = text(line);
        let f: Vec<&str> = s.split_ascii_whitespace().collect();
        let parsed = (|| {
            Some(Neighbour {
                address: f.first()?.parse::<Ipv4Addr>().ok()?.to_string(),
                flags: u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?,
                mac: (*f.get(3)?).to_owned(),
                interface: (*f.get(5)?).to_owned(),
            })
        })();
        match parsed {
            Some(n) => out.push(n),
            None => bad.push(format!(
                "line {}: {:?}",
                i + 1,
                s.chars().take(120).collect::<String>()
            )),
        }
    }
    (out, bad)
}

fn parsed<T>(path: &Path, d: &mut Doc, parse: impl Fn(&[u8]) -> (Vec<T>, Vec<String>)) -> Vec<T> {
    match doc::read(path) {
        Ok(b) => {
            let (v, bad) = parse(&b);
            for x in bad {
                d.note(format!("{}: {x}", path.display()));
            }
            v
        }
        Err(e) => {
            d.note(format!("{}: {}", path.display(), doc::why(&e)));
            Vec::new()
        }
    }
}

/// The addresses from files: IPv4 from `fib_trie` placed by the connected routes, IPv6 from
/// `if_inet6`.
fn file_addresses(net: &Path, routes: &[Route4], lo: Option<&str>, d: &mut Doc) -> Vec<Address> {
    let fib = match doc::read(&net.join("fib_trie")) {
        Ok(b) => parse_fib_trie(&b),
        Err(e) => {
            d.note(format!(
                "{}: {}",
                net.join("fib_trie").display(),
                doc::why(&e)
            ));
            Vec::new()
        }
    };
    let mut addresses = ipv4_addresses(&fib, routes, lo);
    for a in &addresses {
        if a.interface.is_none() {
            d.note(format!(
                "{}: no connected route contains it, so its interface and prefix are unknown",
                a.address
            ));
        }
    }
    addresses.extend(parsed(&net.join("if_inet6"), d, parse_if_inet6));
    addresses
}

/// Collects `state/network.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let live = asks_running_kernel(roots);
    let mut d = Doc::start(
        "state/network.json",
        "rescue.live.network/1",
        if live {
            "/sys/class/net/*, rtnetlink (RTM_GETLINK, RTM_GETADDR), /proc/net/{route,ipv6_route,arp}"
        } else {
            "/sys/class/net/*, /proc/net/{fib_trie,route,if_inet6,ipv6_route,arp}"
        },
    );
    let net = roots.proc.join("net");
    let ifaces = interfaces(&roots.sys.join("class/net"), &mut d);
    let routes = parsed(&net.join("route"), &mut d, parse_route);
    let lo = ifaces
        .iter()
        .find(|i| i.kind == Some(ARPHRD_LOOPBACK))
        .map(|i| i.name.as_str());
    let addresses = match live.then(kernel_addresses) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            d.note(format!(
                "the rtnetlink address dump failed ({}); addresses read from /proc/net/fib_trie and if_inet6 instead",
                crate::error_chain(&e)
            ));
            file_addresses(&net, &routes, lo, &mut d)
        }
        None => file_addresses(&net, &routes, lo, &mut d),
    };
    let routes6 = parsed(&net.join("ipv6_route"), &mut d, parse_ipv6_route);
    let arp = parsed(&net.join("arp"), &mut d, parse_arp);
    for i in &ifaces {
        if i.flags.iter().any(|f| f == "PROMISC") {
            d.note(format!(
                "{} is in promiscuous mode (a sniffer may be running)",
                i.name
            ));
        }
    }
    d.finish(vec![
        ("interfaces", doc::json(&ifaces)),
        ("addresses", doc::json(&addresses)),
        ("routes", doc::json(&routes)),
        ("routes6", doc::json(&routes6)),
        ("neighbours", doc::json(&arp)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &[u8] = b"Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n\
           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n\
     +-- 192.0.2.0/24 2 0 2\n        +-- 192.0.2.0/30 2 0 2\n           |-- 192.0.2.0\n              /24 link UNICAST\n\
           |-- 192.0.2.2\n              /32 host LOCAL\n        |-- 192.0.2.255\n           /32 link BROADCAST\n\
Local:\n  +-- 0.0.0.0/0 3 0 5\n           |-- 10.9.9.9\n              /32 host LOCAL\n              /99 host LOCAL\n";

    const ROUTE: &[u8] =
        b"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0\n\
short\n";

    #[test]
    fn routes_from_native_hex_words() {
        let (r, bad) = parse_route(ROUTE);
        assert_eq!(
            bad.len(),
            2,
            "a non-contiguous mask and a short line: {bad:?}"
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(r[0].prefix_len, 0);
        assert_eq!(r[1].destination, Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(r[1].prefix_len, 24);
        assert_eq!(r[1].gateway, None);
    }

    #[test]
    fn ipv4_addresses_from_fib_trie_with_interface_and_prefix() {
        let fib = parse_fib_trie(FIB);
        let (routes, _) = parse_route(ROUTE);
        let a = ipv4_addresses(&fib, &routes, Some("lo"));
        let got: Vec<(&str, Option<u8>, Option<&str>)> = a
            .iter()
            .map(|a| (a.address.as_str(), a.prefix_len, a.interface.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.9.9.9", None, None),
                ("127.0.0.1", Some(8), Some("lo")),
                ("192.0.2.2", Some(24), Some("eth0")),
            ]
        );
    }

    #[test]
    fn ipv6_addresses_routes_and_arp() {
        let (a, bad) = parse_if_inet6(
            b"00000000000000000000000000000001 01 80 10 80       lo\n\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0\nzz 1\n",
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(a[0].address, "::1");
        assert_eq!(a[0].prefix_len, Some(128));
        assert_eq!(a[0].scope.as_deref(), Some("host"));
        assert_eq!(a[1].address, "fe80::fc:ff:fe00:1");
        assert_eq!(a[1].interface.as_deref(), Some("eth0"));
        let (r, bad) = parse_ipv6_route(
            b"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n\
fd000000000000000000000000000000 ff 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n",
        );
        assert_eq!(bad.len(), 1, "prefix 255 is not a route");
        assert_eq!(r[0].gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(r[0].metric, 1024);
        let (n, bad) = parse_arp(
            b"IP address       HW type     Flags       HW address            Mask     Device\n\
192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n999.1.1.1 0x1 0x2 x * eth0\n",
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(n[0].mac, "02:fc:00:00:00:05");
        assert_eq!(n[0].flags, 2);
    }

    #[test]
    fn kernel_addresses_keep_interface_scope_and_flags() {
        let a = AddrInfo {
            index: 3,
            prefix_len: 24,
            scope: 0,
            flags: 0x200 | 0x80 | 0x01,
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)),
            peer: None,
            label: Some("v0".into()),
        };
        let got = from_netlink(&a, Some("v0"));
        assert_eq!(
            (got.family.as_str(), got.address.as_str(), got.prefix_len),
            ("inet", "192.0.2.5", Some(24))
        );
        assert_eq!(got.interface.as_deref(), Some("v0"));
        assert_eq!(got.scope.as_deref(), Some("global"));
        assert_eq!(got.flags, ["secondary", "permanent", "noprefixroute"]);
        assert_eq!(got.label, None, "the label that is the interface's name");
        let alias = from_netlink(
            &AddrInfo {
                label: Some("v0:1".into()),
                ..a.clone()
            },
            Some("v0"),
        );
        assert_eq!(alias.label.as_deref(), Some("v0:1"));
        let v6 = from_netlink(
            &AddrInfo {
                local: IpAddr::V6("fd00::5".parse().unwrap()),
                scope: 253,
                flags: 0x01 | 0x40,
                label: None,
                peer: Some(IpAddr::V6("fd00::6".parse().unwrap())),
                ..a
            },
            None,
        );
        assert_eq!(v6.family, "inet6");
        assert_eq!(v6.scope.as_deref(), Some("link"));
        assert_eq!(v6.flags, ["temporary", "tentative"]);
        assert_eq!(v6.peer.as_deref(), Some("fd00::6"));
        assert_eq!(v6.interface, None);
    }

    #[test]
    fn interface_flags_in_words() {
        assert_eq!(flag_words(0x1003), ["UP", "BROADCAST", "MULTICAST"]);
        assert_eq!(flag_words(0x109), ["UP", "LOOPBACK", "PROMISC"]);
    }
}
