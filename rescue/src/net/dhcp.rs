//! A minimal DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK on a UDP socket bound to one
//! interface (`SO_BINDTODEVICE`, port 68, broadcast flag set so replies come to 255.255.255.255).
//! Message encoding and parsing are pure and unit-tested. No lease renewal: the lease time is reported
//! and the address stays until `net down`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// Errors of the DHCP exchange.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("opening the DHCP socket on {iface}")]
    OpenSocket {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending a DHCP {what} on {iface}")]
    Send {
        what: &'static str,
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no DHCP {waiting} on {iface} within {secs} s: is a DHCP server on this network? (or use --address CIDR --gateway IP)"
    )]
    Timeout {
        waiting: &'static str,
        iface: String,
        secs: u64,
    },
    #[error("the DHCP server {server} refused the address {address} (NAK)")]
    Refuse { server: Ipv4Addr, address: Ipv4Addr },
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u8,
    pub xid: u32,
    pub your_address: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

/// The configuration a DHCP exchange produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: Option<u32>,
}

/// Encodes a client message (`DISCOVER`, or `REQUEST` for `requested` from `server`).
pub fn encode(
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast replies
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[53, 1, kind]);
    let mut id = vec![61, 7, 1];
    id.extend_from_slice(&mac);
    m.extend_from_slice(&id);
    if let Some(r) = requested {
        m.extend_from_slice(&[50, 4]);
        m.extend_from_slice(&r.octets());
    }
    if let Some(s) = server {
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&s.octets());
    }
    m.extend_from_slice(&[55, 4, 1, 3, 6, 51]); // mask, router, DNS, lease time
    m.push(255);
    if m.len() < 300 {
        m.resize(300, 0);
    }
    m
}

fn ip(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

fn ips(b: &[u8]) -> Vec<Ipv4Addr> {
    b.chunks_exact(4).filter_map(ip).collect()
}

/// Parses a server reply; `None` when it is not a BOOTREPLY with DHCP options.
pub fn parse(b: &[u8]) -> Option<Reply> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != MAGIC {
        return None;
    }
    let mut r = Reply {
        kind: 0,
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        your_address: ip(&b[16..20])?,
        server: None,
        netmask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        lease_secs: None,
    };
    let mut i = 240;
    while i < b.len() {
        let code = b[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = *b.get(i + 1)? as usize;
        let v = b.get(i + 2..i + 2 + len)?;
        match code {
            53 => r.kind = *v.first()?,
            54 => r.server = ip(v),
            1 => r.netmask = ip(v),
            3 => r.routers = ips(v),
            6 => r.dns = ips(v),
            51 => r.lease_secs = v.try_into().ok().map(u32::from_be_bytes),
            _ => {}
        }
        i += 2 + len;
    }
    (r.kind != 0).then_some(r)
}

/// Prefix length of a contiguous netmask.
pub fn prefix_of(mask: Ipv4Addr) -> u8 {
    u32::from(mask).leading_ones() as u8
}

/// Runs the exchange on `iface` (which must be up) with hardware address `mac`.
pub fn obtain(iface: &str, mac: [u8; 6], timeout: Duration) -> Result<Lease, DhcpError> {
    let open = |source| DhcpError::OpenSocket {
        iface: iface.to_owned(),
        source,
    };
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).map_err(open)?;
    setsockopt(
        &sock.as_fd(),
        sockopt::BindToDevice,
        &std::ffi::OsString::from(iface),
    )
    .map_err(|e| open(e.into()))?;
    sock.set_broadcast(true).map_err(open)?;
    let xid = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        t ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
    };
    let dest = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let deadline = Instant::now() + timeout;
    let exchange = |kind: u8,
                    what: &'static str,
                    waiting: &'static str,
                    requested: Option<Ipv4Addr>,
                    server: Option<Ipv4Addr>,
                    want: &[u8]|
     -> Result<Reply, DhcpError> {
        let msg = encode(kind, xid, mac, requested, server);
        let mut buf = [0u8; 1500];
        let mut resend = Instant::now();
        let mut interval = Duration::from_secs(1);
        loop {
            if Instant::now() >= resend {
                sock.send_to(&msg, dest).map_err(|source| DhcpError::Send {
                    what,
                    iface: iface.to_owned(),
                    source,
                })?;
                resend = Instant::now() + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DhcpError::Timeout {
                    waiting,
                    iface: iface.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            let wait = resend
                .min(deadline)
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            let _ = sock.set_read_timeout(Some(wait));
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && let Some(r) = parse(&buf[..n])
                && r.xid == xid
                && want.contains(&r.kind)
            {
                return Ok(r);
            }
        }
    };
    let offer = exchange(DISCOVER, "DISCOVER", "OFFER", None, None, &[OFFER])?;
    let server = offer.server.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ack = exchange(
        REQUEST,
        "REQUEST",
        "ACK",
        Some(offer.your_address),
        offer.server,
        &[ACK, NAK],
    )?;
    if ack.kind == NAK {
        return Err(DhcpError::Refuse {
            server,
            address: offer.your_address,
        });
    }
    Ok(Lease {
        address: ack.your_address,
        prefix: ack.netmask.or(offer.netmask).map_or(24, prefix_of),
        gateway: ack.routers.first().or(offer.routers.first()).copied(),
        dns: if ack.dns.is_empty() {
            offer.dns
        } else {
            ack.dns
        },
        server: ack.server.unwrap_or(server),
        lease_secs: ack.lease_secs.or(offer.lease_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind, 0, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        m.extend_from_slice(&[51, 4, 0, 1, 81, 128, 255]);
        m
    }

    #[test]
    fn discover_and_request_encode_per_rfc2131() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let d = encode(DISCOVER, 0xdead_beef, mac, None, None);
        assert_eq!(d.len(), 300);
        assert_eq!(&d[0..3], &[1, 1, 6]);
        assert_eq!(&d[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&d[10..12], &[0x80, 0]);
        assert_eq!(&d[28..34], &mac);
        assert_eq!(&d[236..243], &[99, 130, 83, 99, 53, 1, DISCOVER]);
        let r = encode(
            REQUEST,
            1,
            mac,
            Some(Ipv4Addr::new(10, 0, 2, 15)),
            Some(Ipv4Addr::new(10, 0, 2, 2)),
        );
        let opts = &r[240..];
        assert!(opts.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
        assert!(opts.windows(6).any(|w| w == [54, 4, 10, 0, 2, 2]));
    }

    #[test]
    fn offers_parse() {
        let r = parse(&reply(OFFER, 42)).unwrap();
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.xid, 42);
        assert_eq!(r.your_address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.netmask.map(prefix_of), Some(24));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(
            r.dns,
            vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(r.lease_secs, Some(86_400));
        let mut bad = reply(OFFER, 1);
        bad[0] = 1;
        assert!(parse(&bad).is_none());
        assert!(parse(&bad[..100]).is_none());
    }
}
