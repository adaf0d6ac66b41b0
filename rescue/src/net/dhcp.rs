//! A minimal DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK on a UDP socket bound to one
//! interface (`SO_BINDTODEVICE`, port 68, broadcast flag set so replies come to 255.255.255.255).
//! Message encoding and parsing are pure and unit-tested. No lease renewal: the lease time is reported
//! and the address stays until `net down`.
//!
//! A reply is taken only when it is for us and for this exchange: our xid and our hardware address
//! (`chaddr`); an OFFER must name an address and its server; the ACK must come from the server whose
//! OFFER we requested and grant that address. Options overloaded into `file`/`sname` (option 52) are
//! read. A lease without a subnet mask is refused rather than guessed. Replies that were not taken
//! are named in the timeout error, so a rogue or confused server is visible.

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
        "no DHCP {waiting} on {iface} within {secs} s{}: is a DHCP server on this network? (or use --address CIDR --gateway IP)",
        ignored_note(.ignored)
    )]
    Timeout {
        waiting: &'static str,
        iface: String,
        secs: u64,
        /// Why the last reply with our xid was not taken.
        ignored: Option<String>,
    },
    #[error("the DHCP server {server} refused the address {address} (NAK)")]
    Refuse { server: Ipv4Addr, address: Ipv4Addr },
    #[error(
        "the DHCP server {server} leased {address} without a subnet mask (option 1); the prefix is not guessed: use --address {address}/PREFIX --gateway IP"
    )]
    MissingNetmask { server: Ipv4Addr, address: Ipv4Addr },
    #[error("the DHCP server {server} gave the subnet mask {mask}, which is not a valid prefix")]
    BadNetmask { server: Ipv4Addr, mask: Ipv4Addr },
}

fn ignored_note(ignored: &Option<String>) -> String {
    ignored
        .as_deref()
        .map(|i| format!(" (a reply was ignored: {i})"))
        .unwrap_or_default()
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u8,
    pub xid: u32,
    /// The client hardware address the reply is for (first six bytes of `chaddr`).
    pub client_mac: [u8; 6],
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

/// Reads the options in `region` (named `what` in errors) into `r`; returns the overload value
/// (option 52) if present.
fn read_options(region: &[u8], what: &str, r: &mut Reply) -> Result<Option<u8>, String> {
    let mut overload = None;
    let mut i = 0;
    while i < region.len() {
        let code = region[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let short = || format!("option {code} runs past the end of the {what}");
        let len = *region.get(i + 1).ok_or_else(short)? as usize;
        let v = region.get(i + 2..i + 2 + len).ok_or_else(short)?;
        let empty = || format!("option {code} in the {what} is empty");
        match code {
            53 => r.kind = *v.first().ok_or_else(empty)?,
            54 => r.server = ip(v),
            1 => r.netmask = ip(v),
            3 => r.routers = ips(v),
            6 => r.dns = ips(v),
            51 => r.lease_secs = v.try_into().ok().map(u32::from_be_bytes),
            52 => overload = Some(*v.first().ok_or_else(empty)?),
            _ => {}
        }
        i += 2 + len;
    }
    Ok(overload)
}

/// Parses a server reply; `None` when it is not a well-formed BOOTREPLY with DHCP options (see
/// [`parse_checked`] for why).
pub fn parse(b: &[u8]) -> Option<Reply> {
    parse_checked(b).ok()
}

/// Parses a server reply, or says why it is not a well-formed BOOTREPLY with DHCP options. Options
/// overloaded into `file` and `sname` (option 52, RFC 2132 §9.3) are read after the options field,
/// `file` first (RFC 2131 §4.1); an overload value other than 1, 2 or 3 refuses the reply.
pub fn parse_checked(b: &[u8]) -> Result<Reply, String> {
    if b.len() < 240 {
        return Err(format!("{} bytes, shorter than a DHCP message", b.len()));
    }
    if b[0] != 2 {
        return Err(format!("op {} where a BOOTREPLY (2) was due", b[0]));
    }
    if b[236..240] != MAGIC {
        return Err("no DHCP magic cookie".to_owned());
    }
    let mut r = Reply {
        kind: 0,
        xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        client_mac: [b[28], b[29], b[30], b[31], b[32], b[33]],
        your_address: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        server: None,
        netmask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        lease_secs: None,
    };
    match read_options(&b[240..], "options field", &mut r)? {
        None => {}
        Some(overload @ 1..=3) => {
            if overload & 1 != 0 {
                read_options(&b[108..236], "file field (overload)", &mut r)?;
            }
            if overload & 2 != 0 {
                read_options(&b[44..108], "sname field (overload)", &mut r)?;
            }
        }
        Some(v) => {
            return Err(format!(
                "option overload (52) of {v}, which is not 1, 2 or 3"
            ));
        }
    }
    if r.kind == 0 {
        return Err("no DHCP message type (option 53)".to_owned());
    }
    Ok(r)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `r` answers our exchange `xid` from `mac`: an OFFER (when `offer` is `None`), else the
/// ACK or NAK to the REQUEST for `offer`. `Err` says why it is not taken.
pub fn judge(r: &Reply, xid: u32, mac: [u8; 6], offer: Option<&Reply>) -> Result<(), String> {
    let from = r.server.map_or_else(
        || "a server without identifier".to_owned(),
        |s| s.to_string(),
    );
    if r.xid != xid {
        return Err(format!(
            "reply from {from} to another exchange (xid {:#x})",
            r.xid
        ));
    }
    if r.client_mac != mac {
        return Err(format!(
            "reply from {from} for another client ({})",
            mac_text(r.client_mac)
        ));
    }
    match offer {
        None => {
            if r.kind != OFFER {
                return Err(format!(
                    "message type {} from {from} where an OFFER was due",
                    r.kind
                ));
            }
            if r.server.is_none() {
                return Err("OFFER without a server identifier (option 54)".to_owned());
            }
            if r.your_address.is_unspecified() {
                return Err(format!("OFFER from {from} of no address (0.0.0.0)"));
            }
        }
        Some(offer) => {
            if r.kind != ACK && r.kind != NAK {
                return Err(format!(
                    "message type {} from {from} where an ACK was due",
                    r.kind
                ));
            }
            if r.server != offer.server {
                return Err(format!(
                    "{} from {from}, not from the server whose OFFER was requested ({})",
                    if r.kind == ACK { "ACK" } else { "NAK" },
                    offer.server.map_or_else(String::new, |s| s.to_string())
                ));
            }
            if r.kind == ACK && r.your_address != offer.your_address {
                return Err(format!(
                    "ACK from {from} of {}, not the offered {}",
                    r.your_address, offer.your_address
                ));
            }
        }
    }
    Ok(())
}

/// The lease an OFFER and its ACK make (the ACK's options first).
pub fn lease(offer: &Reply, ack: &Reply) -> Result<Lease, DhcpError> {
    let server = ack.server.or(offer.server).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mask = ack
        .netmask
        .or(offer.netmask)
        .ok_or(DhcpError::MissingNetmask {
            server,
            address: ack.your_address,
        })?;
    let prefix = prefix_of(mask);
    let contiguous = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0) == u32::from(mask);
    if prefix == 0 || !contiguous {
        return Err(DhcpError::BadNetmask { server, mask });
    }
    Ok(Lease {
        address: ack.your_address,
        prefix,
        gateway: ack.routers.first().or(offer.routers.first()).copied(),
        dns: if ack.dns.is_empty() {
            offer.dns.clone()
        } else {
            ack.dns.clone()
        },
        server,
        lease_secs: ack.lease_secs.or(offer.lease_secs),
    })
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
                    offer: Option<&Reply>|
     -> Result<Reply, DhcpError> {
        let msg = encode(
            kind,
            xid,
            mac,
            offer.map(|o| o.your_address),
            offer.and_then(|o| o.server),
        );
        let mut buf = [0u8; 1500];
        let mut resend = Instant::now();
        let mut interval = Duration::from_secs(1);
        let mut ignored = None;
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
                    ignored,
                });
            }
            let wait = resend
                .min(deadline)
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            let _ = sock.set_read_timeout(Some(wait));
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                match parse_checked(&buf[..n]) {
                    Ok(r) => match judge(&r, xid, mac, offer) {
                        Ok(()) => return Ok(r),
                        // Other clients' exchanges are normal traffic, not worth naming.
                        Err(_) if r.xid != xid => {}
                        Err(why) => ignored = Some(why),
                    },
                    // A malformed reply to this exchange is named; other traffic is not.
                    Err(why) if n >= 8 && buf[4..8] == xid.to_be_bytes() => {
                        ignored = Some(format!("malformed reply from {}: {why}", from.ip()));
                    }
                    Err(_) => {}
                }
            }
        }
    };
    let offer = exchange(DISCOVER, "DISCOVER", "OFFER", None)?;
    let ack = exchange(REQUEST, "REQUEST", "ACK", Some(&offer))?;
    if ack.kind == NAK {
        return Err(DhcpError::Refuse {
            server: offer.server.unwrap_or(Ipv4Addr::UNSPECIFIED),
            address: offer.your_address,
        });
    }
    lease(&offer, &ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m[28..34].copy_from_slice(&MAC);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind, 0, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        m.extend_from_slice(&[51, 4, 0, 1, 81, 128, 255]);
        m
    }

    /// Removes option `code` from a reply built by [`reply`].
    fn without(mut m: Vec<u8>, code: u8) -> Vec<u8> {
        let mut i = 240;
        while i < m.len() && m[i] != 255 {
            if m[i] == 0 {
                i += 1;
                continue;
            }
            let len = m[i + 1] as usize;
            if m[i] == code {
                m.drain(i..i + 2 + len);
                continue;
            }
            i += 2 + len;
        }
        m
    }

    #[test]
    fn discover_and_request_encode_per_rfc2131() {
        let mac = MAC;
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
        let r = parse(&reply(2, 42)).unwrap();
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.xid, 42);
        assert_eq!(r.client_mac, MAC);
        assert_eq!(r.your_address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.netmask.map(prefix_of), Some(24));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(
            r.dns,
            vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(r.lease_secs, Some(86_400));
        let mut bad = reply(2, 1);
        bad[0] = 1;
        assert!(parse(&bad).is_none());
        assert!(parse(&bad[..100]).is_none());
    }

    #[test]
    fn a_good_exchange_makes_a_lease() {
        let offer = parse(&reply(2, 7)).unwrap();
        assert_eq!(judge(&offer, 7, MAC, None), Ok(()));
        let ack = parse(&reply(ACK, 7)).unwrap();
        assert_eq!(judge(&ack, 7, MAC, Some(&offer)), Ok(()));
        let l = lease(&offer, &ack).unwrap();
        assert_eq!(
            (l.address, l.prefix, l.gateway, l.server),
            (
                Ipv4Addr::new(10, 0, 2, 15),
                24,
                Some(Ipv4Addr::new(10, 0, 2, 2)),
                Ipv4Addr::new(10, 0, 2, 2)
            )
        );
    }

    #[test]
    fn replies_for_another_client_are_not_taken() {
        let mut m = reply(2, 7);
        m[33] ^= 1;
        let offer = parse(&m).unwrap();
        let why = judge(&offer, 7, MAC, None).unwrap_err();
        assert!(why.contains("another client (52:54:00:12:34:57)"), "{why}");
        assert!(judge(&offer, 8, MAC, None).is_err());
    }

    #[test]
    fn an_ack_from_another_server_or_for_another_address_is_not_taken() {
        let offer = parse(&reply(2, 7)).unwrap();
        let mut m = reply(ACK, 7);
        // Server identifier 10.0.2.2 -> 10.0.2.99.
        m[249] = 99;
        let ack = parse(&m).unwrap();
        assert_eq!(ack.server, Some(Ipv4Addr::new(10, 0, 2, 99)));
        let why = judge(&ack, 7, MAC, Some(&offer)).unwrap_err();
        assert!(
            why.contains("not from the server whose OFFER was requested (10.0.2.2)"),
            "{why}"
        );
        // A NAK from a server we did not ask is not a refusal of our request either.
        let mut nak = m.clone();
        nak[242] = NAK;
        assert!(judge(&parse(&nak).unwrap(), 7, MAC, Some(&offer)).is_err());
        let mut other = reply(ACK, 7);
        other[19] = 16;
        let why = judge(&parse(&other).unwrap(), 7, MAC, Some(&offer)).unwrap_err();
        assert!(why.contains("not the offered 10.0.2.15"), "{why}");
        let no_id = parse(&without(reply(ACK, 7), 54)).unwrap();
        assert!(judge(&no_id, 7, MAC, Some(&offer)).is_err());
    }

    #[test]
    fn offers_of_no_address_or_without_a_server_are_not_taken() {
        let mut m = reply(2, 7);
        m[16..20].copy_from_slice(&[0, 0, 0, 0]);
        let why = judge(&parse(&m).unwrap(), 7, MAC, None).unwrap_err();
        assert!(why.contains("no address (0.0.0.0)"), "{why}");
        let no_id = parse(&without(reply(2, 7), 54)).unwrap();
        assert!(
            judge(&no_id, 7, MAC, None)
                .unwrap_err()
                .contains("option 54")
        );
    }

    #[test]
    fn a_lease_without_a_netmask_is_refused_not_guessed() {
        let offer = parse(&without(reply(2, 7), 1)).unwrap();
        let ack = parse(&without(reply(ACK, 7), 1)).unwrap();
        let e = lease(&offer, &ack).unwrap_err();
        assert!(matches!(e, DhcpError::MissingNetmask { .. }), "{e:?}");
        assert!(e.to_string().contains("--address 10.0.2.15/PREFIX"), "{e}");
        // The OFFER's mask serves when the ACK omits it.
        let offer = parse(&reply(2, 7)).unwrap();
        assert_eq!(lease(&offer, &ack).unwrap().prefix, 24);
        // A non-contiguous mask is no prefix.
        let mut m = reply(ACK, 7);
        m[252..256].copy_from_slice(&[255, 0, 255, 0]);
        let ack = parse(&m).unwrap();
        assert!(matches!(
            lease(&offer, &ack).unwrap_err(),
            DhcpError::BadNetmask { .. }
        ));
    }

    #[test]
    fn options_overloaded_into_file_and_sname_are_read() {
        // The options field holds the type, the overload and the end; mask and router are in
        // `file`, DNS and the server identifier in `sname`.
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[4..8].copy_from_slice(&7u32.to_be_bytes());
        m[16..20].copy_from_slice(&[192, 0, 2, 10]);
        m[28..34].copy_from_slice(&MAC);
        m[108..120].copy_from_slice(&[1, 4, 255, 255, 0, 0, 3, 4, 192, 0, 2, 1]);
        m[120] = 255;
        m[44..56].copy_from_slice(&[6, 4, 192, 0, 2, 53, 54, 4, 192, 0, 2, 1]);
        m[56] = 255;
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, OFFER, 52, 1, 3, 255]);
        let r = parse(&m).unwrap();
        assert_eq!(r.netmask, Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(r.routers, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(r.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
        assert_eq!(r.server, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(judge(&r, 7, MAC, None), Ok(()));
        // Only `file` (1): the sname options are not read.
        let n = m.len();
        m[n - 2] = 1;
        let r = parse(&m).unwrap();
        assert_eq!((r.netmask.is_some(), r.dns.len()), (true, 0));
        // An overload value that means nothing: the reply is refused, saying so.
        m[n - 2] = 9;
        assert_eq!(
            parse_checked(&m).unwrap_err(),
            "option overload (52) of 9, which is not 1, 2 or 3"
        );
        // Options that run past the end of `file` are named with the field.
        m[n - 2] = 1;
        m[120..236].fill(0);
        m[234] = 6;
        m[235] = 8;
        assert_eq!(
            parse_checked(&m).unwrap_err(),
            "option 6 runs past the end of the file field (overload)"
        );
    }

    #[test]
    fn timeouts_name_the_reply_that_was_ignored() {
        let e = DhcpError::Timeout {
            waiting: "ACK",
            iface: "eth0".to_owned(),
            secs: 10,
            ignored: Some(
                "ACK from 10.0.2.99, not from the server whose OFFER was requested (10.0.2.2)"
                    .to_owned(),
            ),
        };
        assert!(
            e.to_string()
                .contains("a reply was ignored: ACK from 10.0.2.99"),
            "{e}"
        );
    }
}

/// Fuzz targets (see `crate::fuzzing`): a DHCP server's reply, parsed and judged.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn reply(kind: u8, overload: bool) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m[28..34].copy_from_slice(&MAC);
        if overload {
            m[108..114].copy_from_slice(&[3, 4, 10, 0, 2, 1, 255][..6]);
            m[44..50].copy_from_slice(&[6, 4, 1, 1, 1, 1]);
        }
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind, 0, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        if overload {
            m.extend_from_slice(&[52, 1, 3]);
        }
        m.extend_from_slice(&[51, 4, 0, 1, 81, 128, 255]);
        m
    }

    fn replies(b: &[u8]) {
        if let Some(r) = parse(b) {
            let _ = judge(&r, 0x1234_5678, MAC, None);
            let _ = judge(&r, 0x1234_5678, MAC, Some(&r));
        }
    }

    #[test]
    fn dhcp_replies() {
        Target::new("dhcp-reply")
            .seed(reply(2, false))
            .seed(reply(5, false))
            .seed(reply(2, true))
            .max_len(1500)
            .run(replies);
    }
}
