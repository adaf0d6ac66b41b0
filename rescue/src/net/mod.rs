//! Networking only when the operator asks: list interfaces (driver, MAC, link, speed from sysfs), bring
//! exactly one interface up with our DHCP client ([`dhcp`]) or a static address, set its address and
//! default route with rtnetlink messages we encode ([`netlink`]), write `/etc/resolv.conf` in the RAM
//! root, and take it down again. What is up is recorded in `/run/rescue/net.json`.
//!
//! Never opens a listening socket; init never calls this. Nothing here prints or exits.

pub mod dhcp;
pub mod netlink;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::netlink::{Netlink, NetlinkError};

const SYS_NET: &str = "/sys/class/net";
/// Where the configuration made by `net up` is recorded.
pub const STATE_FILE: &str = "/run/rescue/net.json";
/// The resolver configuration `--dns` writes.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Errors of `net`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("reading {path}")]
    ReadSysfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no network interface {0:?} (see `net status`)")]
    MissingInterface(String),
    #[error("{0} is the loopback interface")]
    RejectLoopback(String),
    #[error(
        "{up} is already up; run `net down` first (only one interface is brought up at a time)"
    )]
    RejectSecond { up: String },
    #[error(
        "{iface} has no link (carrier down after {secs} s): check the cable or the switch port"
    )]
    NoLink { iface: String, secs: u64 },
    #[error("{0:?} is not an IPv4 address with prefix length, e.g. 192.0.2.10/24")]
    ParseCidr(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Dhcp(#[from] dhcp::DhcpError),
    #[error("writing {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no interface was brought up with `net up`")]
    NothingUp,
}

/// One network interface as sysfs describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub driver: Option<String>,
    pub mac: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (only meaningful while up).
    pub link: bool,
    pub operstate: String,
    pub speed_mbps: Option<u32>,
    /// The configuration `net up` gave it, if any.
    pub config: Option<NetConfig>,
}

/// What `net up` configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub iface: String,
    pub method: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub dhcp_server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub wrote_resolv_conf: bool,
}

/// How to get an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Dhcp {
        timeout: Duration,
    },
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
}

/// Parses `192.0.2.10/24`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let bad = || NetError::ParseCidr(s.to_owned());
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    Ok((addr, prefix))
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

fn describe(root: &Path, name: &str, config: Option<&NetConfig>) -> Option<Interface> {
    let dir = root.join(name);
    let index = read_trim(&dir.join("ifindex"))?.parse().ok()?;
    let flags = read_trim(&dir.join("flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let driver = fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let speed = read_trim(&dir.join("speed"))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .map(|s| s as u32);
    Some(Interface {
        name: name.to_owned(),
        index,
        driver,
        mac: read_trim(&dir.join("address")).unwrap_or_default(),
        up: flags & 1 != 0,
        link: read_trim(&dir.join("carrier")).as_deref() == Some("1"),
        operstate: read_trim(&dir.join("operstate")).unwrap_or_default(),
        speed_mbps: speed,
        config: config.filter(|c| c.iface == name).cloned(),
    })
}

/// Every interface but loopback, sorted by name, from `root` (normally `/sys/class/net`).
pub fn interfaces_in(root: &Path, config: Option<&NetConfig>) -> Result<Vec<Interface>, NetError> {
    let entries = fs::read_dir(root).map_err(|source| NetError::ReadSysfs {
        path: root.to_owned(),
        source,
    })?;
    let mut out: Vec<Interface> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name != "lo")
                .then(|| describe(root, &name, config))
                .flatten()
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every interface of this machine.
pub fn interfaces() -> Result<Vec<Interface>, NetError> {
    interfaces_in(Path::new(SYS_NET), load_config().as_ref())
}

/// The configuration recorded by `net up`, if any.
pub fn load_config() -> Option<NetConfig> {
    fs::read(STATE_FILE)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The `/etc/resolv.conf` text for these servers.
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    let mut s = String::from("# written by rescue net up\n");
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    if let Some(p) = path.parent() {
        let _ = fs::create_dir_all(p);
    }
    fs::write(path, bytes).map_err(|source| NetError::WriteFile {
        path: path.to_owned(),
        source,
    })
}

/// Brings `name` up: link, address (DHCP or static), default route, DNS. Refuses a second interface.
pub fn up(name: &str, method: &Method, dns: &[Ipv4Addr]) -> Result<NetConfig, NetError> {
    if name == "lo" {
        return Err(NetError::RejectLoopback(name.to_owned()));
    }
    if let Some(c) = load_config()
        && c.iface != name
    {
        return Err(NetError::RejectSecond { up: c.iface });
    }
    let iface = describe(Path::new(SYS_NET), name, None)
        .ok_or_else(|| NetError::MissingInterface(name.to_owned()))?;
    let mut nl = Netlink::open()?;
    nl.request(&format!("setting {name} up"), |seq| {
        netlink::link_set(seq, iface.index, true)
    })?;
    // Carrier takes a moment after the link comes up.
    let wait = Duration::from_secs(5);
    let start = Instant::now();
    while read_trim(&Path::new(SYS_NET).join(name).join("carrier")).as_deref() != Some("1") {
        if start.elapsed() >= wait {
            let _ = nl.request("setting the link down", |seq| {
                netlink::link_set(seq, iface.index, false)
            });
            return Err(NetError::NoLink {
                iface: name.to_owned(),
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The address once added, so that a later failure takes it away again.
    let mut added = None;
    let result = (|| {
        let (address, prefix, gateway, mut servers, server, lease, kind) = match method {
            Method::Dhcp { timeout } => {
                let mac = parse_mac(&iface.mac).unwrap_or([0; 6]);
                let l = dhcp::obtain(name, mac, *timeout)?;
                (
                    l.address,
                    l.prefix,
                    l.gateway,
                    l.dns,
                    Some(l.server),
                    l.lease_secs,
                    "dhcp",
                )
            }
            Method::Static {
                address,
                prefix,
                gateway,
            } => (
                *address,
                *prefix,
                *gateway,
                Vec::new(),
                None,
                None,
                "static",
            ),
        };
        nl.request(&format!("adding {address}/{prefix} to {name}"), |seq| {
            netlink::address(seq, iface.index, address, prefix, true)
        })?;
        added = Some((address, prefix));
        if let Some(gw) = gateway {
            nl.request(&format!("adding a default route via {gw}"), |seq| {
                netlink::default_route(seq, iface.index, gw, kind == "dhcp")
            })?;
        }
        if !dns.is_empty() {
            servers = dns.to_vec();
        }
        let wrote = !servers.is_empty();
        if wrote {
            write(Path::new(RESOLV_CONF), resolv_conf(&servers).as_bytes())?;
        }
        let config = NetConfig {
            iface: name.to_owned(),
            method: kind.to_owned(),
            address,
            prefix,
            gateway,
            dns: servers,
            dhcp_server: server,
            lease_secs: lease,
            wrote_resolv_conf: wrote,
        };
        write(
            Path::new(STATE_FILE),
            &serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )?;
        Ok(config)
    })();
    if result.is_err() {
        // Nothing of a failed `net up` stays: not the address (which takes its routes), not the link.
        if let Some((address, prefix)) = added {
            let _ = nl.request("removing the address", |seq| {
                netlink::address(seq, iface.index, address, prefix, false)
            });
        }
        let _ = nl.request("setting the link down", |seq| {
            netlink::link_set(seq, iface.index, false)
        });
    }
    result
}

/// Takes the interface `net up` configured (or `name`) down: address removed, link down, resolver
/// configuration removed. Returns the interface name.
pub fn down(name: Option<&str>) -> Result<String, NetError> {
    let config = load_config();
    let target = match (name, &config) {
        (Some(n), _) => n.to_owned(),
        (None, Some(c)) => c.iface.clone(),
        (None, None) => return Err(NetError::NothingUp),
    };
    let iface = describe(Path::new(SYS_NET), &target, None)
        .ok_or_else(|| NetError::MissingInterface(target.clone()))?;
    let mut nl = Netlink::open()?;
    if let Some(c) = config.as_ref().filter(|c| c.iface == target) {
        // Removing the address takes its routes with it.
        let _ = nl.request("removing the address", |seq| {
            netlink::address(seq, iface.index, c.address, c.prefix, false)
        });
        if c.wrote_resolv_conf {
            let _ = fs::remove_file(RESOLV_CONF);
        }
    }
    nl.request(&format!("setting {target} down"), |seq| {
        netlink::link_set(seq, iface.index, false)
    })?;
    if config.as_ref().is_some_and(|c| c.iface == target) {
        let _ = fs::remove_file(STATE_FILE);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_read_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let eth = root.path().join("eth0");
        fs::create_dir_all(eth.join("device")).unwrap();
        let drivers = root.path().join("drivers/virtio_net");
        fs::create_dir_all(&drivers).unwrap();
        std::os::unix::fs::symlink(&drivers, eth.join("device/driver")).unwrap();
        for (f, v) in [
            ("ifindex", "2\n"),
            ("flags", "0x1003\n"),
            ("address", "52:54:00:12:34:56\n"),
            ("carrier", "1\n"),
            ("operstate", "up\n"),
            ("speed", "1000\n"),
        ] {
            fs::write(eth.join(f), v).unwrap();
        }
        let lo = root.path().join("lo");
        fs::create_dir_all(&lo).unwrap();
        fs::write(lo.join("ifindex"), "1").unwrap();
        let list = interfaces_in(root.path(), None).unwrap();
        let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0"]);
        let e = &list[0];
        assert_eq!(e.driver.as_deref(), Some("virtio_net"));
        assert_eq!(
            (e.index, e.up, e.link, e.speed_mbps),
            (2, true, true, Some(1000))
        );
        assert_eq!(parse_mac(&e.mac), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    }

    #[test]
    fn cidrs_and_resolv_conf() {
        assert_eq!(
            parse_cidr("192.0.2.10/24").unwrap(),
            (Ipv4Addr::new(192, 0, 2, 10), 24)
        );
        assert!(parse_cidr("192.0.2.10").is_err());
        assert!(parse_cidr("192.0.2.10/33").is_err());
        assert!(parse_cidr("host/24").is_err());
        assert_eq!(
            resolv_conf(&[Ipv4Addr::new(10, 0, 2, 3)]),
            "# written by rescue net up\nnameserver 10.0.2.3\n"
        );
    }
}
