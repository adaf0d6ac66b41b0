//! rtnetlink messages written by hand: set a link up or down (`RTM_NEWLINK`), add or remove an IPv4
//! address (`RTM_NEWADDR`/`RTM_DELADDR`), add a default route (`RTM_NEWROUTE`); and the two dumps
//! `rescue live` reads (`RTM_GETLINK`, `RTM_GETADDR`: every interface's index and name, every address
//! of both families with its prefix, scope and flags). Encoding and parsing are pure and unit-tested;
//! [`Netlink`] sends one request at a time and waits for the kernel's acknowledgement (or the end of
//! the dump), never longer than [`ANSWER_TIMEOUT`]: no answer, a malformed answer and a refusal are
//! each an error that says what the kernel did (so `net up` cannot hang on a silent or confused
//! socket). A dump only reads: it changes nothing in the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

/// How long a request waits for the kernel's acknowledgement (it normally takes microseconds).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_ROOT | NLM_F_MATCH`: every object of the kind.
pub const NLM_F_DUMP: u16 = 0x300;
/// Set by the kernel on a dump's messages when the set changed while it was dumped.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Dumps tried before an interrupted one is an error.
const DUMP_TRIES: usize = 5;
const IFA_LABEL: u16 = 3;
const IFA_FLAGS: u16 = 8;
const IFLA_IFNAME: u16 = 3;
const AF_INET6: u8 = 10;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// Errors talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket")]
    OpenSocket(#[source] nix::Error),
    #[error("sending a netlink request for {what}")]
    SendRequest {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("reading the kernel's netlink answer to {what}")]
    ReceiveAnswer {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("the kernel did not answer {what} within {} s", .waited.as_secs_f32())]
    NoAnswer { what: String, waited: Duration },
    #[error("the kernel refused {what}")]
    Refuse {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel's netlink answer to {what} is malformed: {detail}")]
    ParseAnswer { what: String, detail: String },
    #[error("the kernel's dump of {what} was interrupted {tries} times by changes")]
    DumpInterrupted { what: String, tries: usize },
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// `RTM_NEWLINK` setting or clearing `IFF_UP` on interface `index`.
pub fn link_set(seq: u32, index: u32, up: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.push(0); // ifi_family AF_UNSPEC
    b.push(0);
    b.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&(if up { IFF_UP } else { 0 }).to_ne_bytes()); // ifi_flags
    b.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, &b)
}

/// `RTM_NEWADDR` (or `RTM_DELADDR` when `add` is false) for `addr/prefix` on interface `index`.
pub fn address(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8, add: bool) -> Vec<u8> {
    let mut b = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut b, IFA_LOCAL, &addr.octets());
    push_attr(&mut b, IFA_ADDRESS, &addr.octets());
    if add && prefix < 31 {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        push_attr(&mut b, IFA_BROADCAST, &bcast.octets());
    }
    if add {
        message(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            seq,
            &b,
        )
    } else {
        message(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, &b)
    }
}

/// `RTM_NEWROUTE`: default route via `gateway` out of interface `index`.
pub fn default_route(seq: u32, index: u32, gateway: Ipv4Addr, dhcp: bool) -> Vec<u8> {
    let protocol = if dhcp { RTPROT_DHCP } else { RTPROT_STATIC };
    let mut b = vec![
        AF_INET,
        0, // rtm_dst_len: default route
        0,
        0,
        RT_TABLE_MAIN,
        protocol,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    push_attr(&mut b, RTA_GATEWAY, &gateway.octets());
    push_attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    message(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        &b,
    )
}

/// A dump request for every object of `kind` (`RTM_GETLINK`, `RTM_GETADDR`) of every family: the
/// header and the kind's zeroed fixed part (`ifinfomsg`, 16 bytes, or `ifaddrmsg`, 8 bytes), as
/// iproute2 sends it.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    let fixed = if kind == RTM_GETLINK { 16 } else { 8 };
    message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, &vec![0u8; fixed])
}

/// The messages of a dump: `(type, body after the 16-byte header)`, in the kernel's order.
pub type Dumped = Vec<(u16, Vec<u8>)>;

/// What one datagram of a dump answer holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart {
    /// `(type, body after the 16-byte header)` of each message answering `seq`.
    pub messages: Dumped,
    /// `NLMSG_DONE` for `seq` was seen: the dump is complete.
    pub done: bool,
    /// A message carried `NLM_F_DUMP_INTR`: the set changed during the dump, which must be redone.
    pub interrupted: bool,
    /// `NLMSG_ERROR` for `seq`: the kernel's (negative) error code.
    pub error: Option<i32>,
}

/// Splits one datagram of a dump answer to `seq`; messages for other sequence numbers are skipped.
/// `Err` describes what is malformed.
pub fn parse_dump(buf: &[u8], seq: u32) -> Result<DumpPart, String> {
    let mut part = DumpPart::default();
    for m in messages(buf)? {
        let m = m?;
        if m.seq != seq {
            continue;
        }
        part.interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
        match m.kind {
            NLMSG_DONE => {
                part.done = true;
                return Ok(part);
            }
            NLMSG_ERROR => {
                part.error = Some(m.error_code()?);
                return Ok(part);
            }
            _ => part.messages.push((m.kind, m.payload.to_vec())),
        }
    }
    Ok(part)
}

/// One netlink message of a datagram: its header fields and what follows the 16-byte header.
struct Message<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

impl Message<'_> {
    /// The code of an `NLMSG_ERROR` message (0 is an acknowledgement).
    fn error_code(&self) -> Result<i32, String> {
        match self.payload.get(..4) {
            Some(c) => Ok(i32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
            None => Err(format!(
                "an error message of {} bytes, without its code",
                self.payload.len() + 16
            )),
        }
    }
}

/// The messages of a datagram, in order; an item is `Err` (and the last) where a header is cut short or
/// claims more bytes than remain. `Err` at once for an empty datagram.
fn messages(buf: &[u8]) -> Result<impl Iterator<Item = Result<Message<'_>, String>>, String> {
    if buf.is_empty() {
        return Err("an empty datagram".to_owned());
    }
    let mut rest = buf;
    Ok(std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 16 {
            let e = format!("{} bytes left, less than a message header", rest.len());
            rest = &[];
            return Some(Err(e));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            let e = format!(
                "a message of type {kind} claims {len} bytes where {} remain",
                rest.len()
            );
            rest = &[];
            return Some(Err(e));
        }
        let m = Message {
            kind,
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            payload: &rest[16..len],
        };
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some(Ok(m))
    }))
}

/// The routing attributes after a message's fixed part: `(type, payload)`; `Err` when one runs past
/// the end.
fn attributes(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        // The top bits of the type are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return Err(format!(
                "an attribute of type {kind} claims {len} bytes where {} remain",
                b.len()
            ));
        }
        out.push((kind, &b[4..len]));
        b = b.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    Ok(out)
}

/// A NUL-terminated attribute string.
fn attr_text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One interface of an `RTM_NEWLINK` dump message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: Option<String>,
}

/// Reads an `RTM_NEWLINK` body (`ifinfomsg` and attributes).
pub fn parse_link(body: &[u8]) -> Result<LinkInfo, String> {
    let fixed = body.get(..16).ok_or_else(|| {
        format!(
            "a link message of {} bytes, less than ifinfomsg",
            body.len()
        )
    })?;
    let index = u32::from_ne_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let name = attributes(&body[16..])?
        .into_iter()
        .find(|(k, _)| *k == IFLA_IFNAME)
        .map(|(_, v)| attr_text(v));
    Ok(LinkInfo { index, name })
}

/// One address of an `RTM_NEWADDR` dump message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub prefix_len: u8,
    /// `RT_SCOPE_*`: 0 global, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// `IFA_F_*` (the 32-bit `IFA_FLAGS` attribute where the kernel gives one).
    pub flags: u32,
    /// The address itself (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub local: IpAddr,
    /// The other end of a point-to-point link (`IFA_ADDRESS` where it differs from `IFA_LOCAL`).
    pub peer: Option<IpAddr>,
    /// `IFA_LABEL` (IPv4 only: the interface name, or an alias such as `eth0:1`).
    pub label: Option<String>,
}

fn ip_of(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// Reads an `RTM_NEWADDR` body (`ifaddrmsg` and attributes); `Ok(None)` for a family other than
/// IPv4 and IPv6.
pub fn parse_addr(body: &[u8]) -> Result<Option<AddrInfo>, String> {
    let fixed = body.get(..8).ok_or_else(|| {
        format!(
            "an address message of {} bytes, less than ifaddrmsg",
            body.len()
        )
    })?;
    let family = fixed[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let (mut local, mut address, mut label, mut flags) = (None, None, None, u32::from(fixed[2]));
    for (kind, v) in attributes(&body[8..])? {
        match kind {
            IFA_ADDRESS => {
                address = Some(ip_of(family, v).ok_or("an IFA_ADDRESS of the wrong size")?)
            }
            IFA_LOCAL => local = Some(ip_of(family, v).ok_or("an IFA_LOCAL of the wrong size")?),
            IFA_LABEL => label = Some(attr_text(v)),
            IFA_FLAGS => {
                flags =
                    u32::from_ne_bytes(v.try_into().map_err(|_| "an IFA_FLAGS of the wrong size")?)
            }
            _ => {}
        }
    }
    let Some(own) = local.or(address) else {
        return Err("an address message without IFA_LOCAL or IFA_ADDRESS".to_owned());
    };
    Ok(Some(AddrInfo {
        index: u32::from_ne_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        prefix_len: fixed[1],
        scope: fixed[3],
        flags,
        local: own,
        peer: address.filter(|a| local.is_some() && *a != own),
        label,
    }))
}

/// Finds the acknowledgement for `seq` in one datagram: `Ok(Some(0))`, `Ok(Some(-errno))` for a
/// refusal, `Ok(None)` when the datagram is well-formed but answers something else; `Err` describes
/// what is malformed.
pub fn parse_ack(buf: &[u8], seq: u32) -> Result<Option<i32>, String> {
    for m in messages(buf)? {
        let m = m?;
        if m.kind == NLMSG_ERROR && m.seq == seq {
            return m.error_code().map(Some);
        }
    }
    Ok(None)
}

/// A `NETLINK_ROUTE` socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    timeout: Duration,
}

impl Netlink {
    pub fn open() -> Result<Self, NetlinkError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(NetlinkError::OpenSocket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NetlinkError::OpenSocket)?;
        Self::with_socket(fd, ANSWER_TIMEOUT)
    }

    /// Any datagram socket that answers like the kernel (tests use a socket pair).
    fn with_socket(fd: OwnedFd, timeout: Duration) -> Result<Self, NetlinkError> {
        let usecs = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
        setsockopt(
            &fd.as_fd(),
            sockopt::ReceiveTimeout,
            &TimeVal::new(usecs / 1_000_000, usecs % 1_000_000),
        )
        .map_err(NetlinkError::OpenSocket)?;
        Ok(Self {
            fd,
            seq: 1,
            timeout,
        })
    }

    /// Sends the message built by `build(seq)` and waits for its acknowledgement.
    pub fn request(
        &mut self,
        what: &str,
        build: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<(), NetlinkError> {
        self.seq += 1;
        let seq = self.seq;
        let msg = build(seq);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty()).map_err(|source| {
            NetlinkError::SendRequest {
                what: what.to_owned(),
                source,
            }
        })?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let no_answer = || NetlinkError::NoAnswer {
                what: what.to_owned(),
                waited: self.timeout,
            };
            if Instant::now() >= deadline {
                return Err(no_answer());
            }
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => n,
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => continue,
                Err(source) => {
                    return Err(NetlinkError::ReceiveAnswer {
                        what: what.to_owned(),
                        source,
                    });
                }
            };
            let malformed = |detail: String| NetlinkError::ParseAnswer {
                what: what.to_owned(),
                detail,
            };
            if n > buf.len() {
                return Err(malformed(format!(
                    "a datagram of {n} bytes, more than {}",
                    buf.len()
                )));
            }
            match parse_ack(&buf[..n], seq).map_err(malformed)? {
                Some(0) => return Ok(()),
                Some(e) => {
                    return Err(NetlinkError::Refuse {
                        what: what.to_owned(),
                        source: std::io::Error::from_raw_os_error(-e),
                    });
                }
                // An answer to something else (an earlier request that timed out): keep waiting.
                None => {}
            }
        }
    }

    /// Dumps every object of `kind` (`RTM_GETLINK`, `RTM_GETADDR`): the bodies of the messages of
    /// that kind's answer, in the kernel's order. A dump the kernel marks interrupted (the set changed
    /// meanwhile) is redone, up to [`DUMP_TRIES`] times.
    pub fn dump(&mut self, what: &str, kind: u16) -> Result<Dumped, NetlinkError> {
        for _ in 0..DUMP_TRIES {
            if let Some(messages) = self.dump_once(what, kind)? {
                return Ok(messages);
            }
        }
        Err(NetlinkError::DumpInterrupted {
            what: what.to_owned(),
            tries: DUMP_TRIES,
        })
    }

    /// One dump; `None` when the kernel marked it interrupted.
    fn dump_once(&mut self, what: &str, kind: u16) -> Result<Option<Dumped>, NetlinkError> {
        self.seq += 1;
        let seq = self.seq;
        send(
            self.fd.as_raw_fd(),
            &dump_request(kind, seq),
            MsgFlags::empty(),
        )
        .map_err(|source| NetlinkError::SendRequest {
            what: what.to_owned(),
            source,
        })?;
        let deadline = Instant::now() + self.timeout;
        // The kernel fills a dump datagram up to 32 KiB at most.
        let mut buf = vec![0u8; 64 << 10];
        let (mut messages, mut interrupted) = (Vec::new(), false);
        loop {
            if Instant::now() >= deadline {
                return Err(NetlinkError::NoAnswer {
                    what: what.to_owned(),
                    waited: self.timeout,
                });
            }
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => n,
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => continue,
                Err(source) => {
                    return Err(NetlinkError::ReceiveAnswer {
                        what: what.to_owned(),
                        source,
                    });
                }
            };
            let malformed = |detail: String| NetlinkError::ParseAnswer {
                what: what.to_owned(),
                detail,
            };
            if n > buf.len() {
                return Err(malformed(format!(
                    "a datagram of {n} bytes, more than {}",
                    buf.len()
                )));
            }
            let part = parse_dump(&buf[..n], seq).map_err(malformed)?;
            if let Some(e) = part.error.filter(|e| *e != 0) {
                return Err(NetlinkError::Refuse {
                    what: what.to_owned(),
                    source: std::io::Error::from_raw_os_error(-e),
                });
            }
            interrupted |= part.interrupted;
            messages.extend(part.messages);
            if part.done || part.error.is_some() {
                return Ok((!interrupted).then_some(messages));
            }
        }
    }

    /// Every IPv4 and IPv6 address the kernel holds, each with its interface's name (from an
    /// `RTM_GETLINK` dump: the names of this network namespace, whatever sysfs shows).
    pub fn addresses(&mut self) -> Result<Vec<(AddrInfo, Option<String>)>, NetlinkError> {
        let malformed = |what: &str, detail: String| NetlinkError::ParseAnswer {
            what: what.to_owned(),
            detail,
        };
        let mut names = std::collections::BTreeMap::new();
        for (kind, body) in self.dump("the interface list", RTM_GETLINK)? {
            if kind == RTM_NEWLINK {
                let l = parse_link(&body).map_err(|d| malformed("the interface list", d))?;
                if let Some(name) = l.name {
                    names.insert(l.index, name);
                }
            }
        }
        let mut out = Vec::new();
        for (kind, body) in self.dump("the address list", RTM_GETADDR)? {
            if kind == RTM_NEWADDR
                && let Some(a) = parse_addr(&body).map_err(|d| malformed("the address list", d))?
            {
                let name = names.get(&a.index).cloned();
                out.push((a, name));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_message_layout() {
        let m = link_set(7, 3, true);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(
            u16::from_ne_bytes(m[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), IFF_UP);
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().unwrap()), IFF_UP);
        let down = link_set(7, 3, false);
        assert_eq!(u32::from_ne_bytes(down[24..28].try_into().unwrap()), 0);
    }

    #[test]
    fn address_message_carries_local_address_and_broadcast() {
        let m = address(1, 2, Ipv4Addr::new(10, 0, 2, 15), 24, true);
        // header 16 + ifaddrmsg 8 + three 8-byte attributes
        assert_eq!(m.len(), 48);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
        assert_eq!(u16::from_ne_bytes(m[26..28].try_into().unwrap()), IFA_LOCAL);
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
        let del = address(1, 2, Ipv4Addr::new(10, 0, 2, 15), 24, false);
        assert_eq!(
            u16::from_ne_bytes(del[4..6].try_into().unwrap()),
            RTM_DELADDR
        );
        assert_eq!(del.len(), 40);
    }

    #[test]
    fn default_route_message_and_acks() {
        let m = default_route(5, 2, Ipv4Addr::new(10, 0, 2, 2), true);
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(
            &m[16..24],
            &[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, 0, RTN_UNICAST]
        );
        assert_eq!(
            u16::from_ne_bytes(m[30..32].try_into().unwrap()),
            RTA_GATEWAY
        );
        assert_eq!(&m[32..36], &[10, 0, 2, 2]);
        assert_eq!(u32::from_ne_bytes(m[40..44].try_into().unwrap()), 2);
        // An ack: nlmsghdr(NLMSG_ERROR, seq 5) + error 0; a refusal: -EEXIST.
        let mut ack = message(NLMSG_ERROR, 0, 5, &0i32.to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(parse_ack(&ack, 5).unwrap(), Some(0));
        let nack = message(NLMSG_ERROR, 0, 5, &(-17i32).to_ne_bytes());
        assert_eq!(parse_ack(&nack, 5).unwrap(), Some(-17));
        assert_eq!(parse_ack(&nack, 6).unwrap(), None);
        let mut two = nack.clone();
        two.extend_from_slice(&ack);
        assert_eq!(parse_ack(&two, 5).unwrap(), Some(-17));
        for bad in [&nack[..10], &[], &message(NLMSG_ERROR, 0, 5, &[])[..]] {
            assert!(parse_ack(bad, 5).is_err(), "{bad:?}");
        }
        let mut long = nack.clone();
        long[0] = 200;
        assert!(
            parse_ack(&long, 5)
                .unwrap_err()
                .contains("claims 200 bytes")
        );
    }

    /// A request to a peer playing the kernel: it answers with `answer(seq)` (or not at all).
    fn ask(answer: Option<fn(u32) -> Vec<u8>>) -> Result<(), NetlinkError> {
        let (ours, kernel) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut nl = Netlink::with_socket(OwnedFd::from(ours), Duration::from_millis(300)).unwrap();
        let peer = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let n = kernel.recv(&mut buf).unwrap();
            let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
            assert_eq!(n, 32);
            if let Some(answer) = answer {
                kernel.send(&answer(seq)).unwrap();
            }
            // Keep the socket open until the request gave up.
            kernel
        });
        let r = nl.request("setting eth9 up", |seq| link_set(seq, 9, true));
        drop(peer.join().unwrap());
        r
    }

    #[test]
    fn silence_malformed_answers_and_refusals_are_errors_not_a_hang() {
        let start = Instant::now();
        let e = ask(None).unwrap_err();
        assert!(matches!(e, NetlinkError::NoAnswer { .. }), "{e:?}");
        assert!(
            e.to_string().contains("did not answer setting eth9 up"),
            "{e}"
        );
        // An acknowledgement of something else, then silence: still bounded.
        let e = ask(Some(|seq| {
            message(NLMSG_ERROR, 0, seq + 100, &0i32.to_ne_bytes())
        }))
        .unwrap_err();
        assert!(matches!(e, NetlinkError::NoAnswer { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(30));
        let e = ask(Some(|_| vec![1, 2, 3])).unwrap_err();
        assert!(e.to_string().contains("malformed: 3 bytes left"), "{e}");
        let e = ask(Some(|seq| {
            message(NLMSG_ERROR, 0, seq, &(-19i32).to_ne_bytes())
        }))
        .unwrap_err();
        match e {
            NetlinkError::Refuse { source, .. } => assert_eq!(source.raw_os_error(), Some(19)),
            e => panic!("{e:?}"),
        }
        ask(Some(|seq| {
            message(NLMSG_ERROR, 0, seq, &0i32.to_ne_bytes())
        }))
        .unwrap();
    }

    /// An `RTM_NEWADDR` dump message as the kernel writes one.
    pub(crate) fn addr_message(
        seq: u32,
        family: u8,
        prefix: u8,
        scope: u8,
        index: u32,
        attrs: &[(u16, &[u8])],
    ) -> Vec<u8> {
        let mut b = vec![family, prefix, 0x80, scope];
        b.extend_from_slice(&index.to_ne_bytes());
        for (k, v) in attrs {
            push_attr(&mut b, *k, v);
        }
        message(RTM_NEWADDR, 0x2, seq, &b)
    }

    pub(crate) fn link_message(seq: u32, index: u32, name: &str) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        push_attr(&mut b, IFLA_IFNAME, &n);
        message(RTM_NEWLINK, 0x2, seq, &b)
    }

    fn done(seq: u32) -> Vec<u8> {
        message(NLMSG_DONE, 0x2, seq, &0i32.to_ne_bytes())
    }

    #[test]
    fn dump_requests_and_address_messages() {
        let r = dump_request(RTM_GETADDR, 9);
        assert_eq!(r.len(), 24);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), RTM_GETADDR);
        assert_eq!(
            u16::from_ne_bytes(r[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(dump_request(RTM_GETLINK, 9).len(), 32);

        // `ip addr add 192.0.2.5/24 dev v0 noprefixroute label v0:1`: the flag lives in IFA_FLAGS only.
        let noprefix = 0x200u32.to_ne_bytes();
        let v4 = addr_message(
            9,
            AF_INET,
            24,
            0,
            3,
            &[
                (IFA_ADDRESS, &[192, 0, 2, 5]),
                (IFA_LOCAL, &[192, 0, 2, 5]),
                (IFA_LABEL, b"v0:1\0"),
                (IFA_FLAGS, &noprefix),
            ],
        );
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let v6 = addr_message(9, AF_INET6, 64, 253, 3, &[(IFA_ADDRESS, &ll.octets())]);
        // A point-to-point address: IFA_ADDRESS is the peer.
        let ptp = addr_message(
            9,
            AF_INET,
            32,
            0,
            4,
            &[(IFA_ADDRESS, &[10, 0, 0, 2]), (IFA_LOCAL, &[10, 0, 0, 1])],
        );
        let mut datagram = v4.clone();
        datagram.extend_from_slice(&addr_message(8, AF_INET, 8, 0, 1, &[])); // another request's
        datagram.extend_from_slice(&v6);
        datagram.extend_from_slice(&ptp);
        let part = parse_dump(&datagram, 9).unwrap();
        assert!(!part.done && !part.interrupted && part.error.is_none());
        assert_eq!(part.messages.len(), 3);
        let a = parse_addr(&part.messages[0].1).unwrap().unwrap();
        assert_eq!(
            a,
            AddrInfo {
                index: 3,
                prefix_len: 24,
                scope: 0,
                flags: 0x200,
                local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)),
                peer: None,
                label: Some("v0:1".to_owned()),
            }
        );
        let b = parse_addr(&part.messages[1].1).unwrap().unwrap();
        assert_eq!((b.local, b.scope, b.flags), (IpAddr::V6(ll), 253, 0x80));
        let c = parse_addr(&part.messages[2].1).unwrap().unwrap();
        assert_eq!(c.local, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(c.peer, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert!(parse_dump(&done(9), 9).unwrap().done);

        // Malformed: an address of the wrong size, an attribute past the end, no address at all.
        let short = addr_message(9, AF_INET, 24, 0, 3, &[(IFA_LOCAL, &[192, 0, 2])]);
        assert!(parse_addr(&short[16..]).unwrap_err().contains("wrong size"));
        let mut cut = v4[16..].to_vec();
        cut.truncate(cut.len() - 2);
        assert!(parse_addr(&cut).unwrap_err().contains("claims"));
        let none = addr_message(9, AF_INET, 24, 0, 3, &[]);
        assert!(parse_addr(&none[16..]).unwrap_err().contains("without"));
        assert_eq!(parse_addr(&[17, 0, 0, 0, 1, 0, 0, 0]).unwrap(), None);
        let l = parse_link(&link_message(9, 7, "eth7")[16..]).unwrap();
        assert_eq!((l.index, l.name.as_deref()), (7, Some("eth7")));
    }

    /// A dump answered by a peer playing the kernel, whose first answer is marked interrupted.
    #[test]
    fn an_interrupted_dump_is_redone_and_a_silent_one_is_bounded() {
        let (ours, kernel) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut nl = Netlink::with_socket(OwnedFd::from(ours), Duration::from_millis(300)).unwrap();
        let peer = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut asked = Vec::new();
            for round in 0..3 {
                let n = kernel.recv(&mut buf).unwrap();
                let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
                let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
                asked.push((kind, n));
                if kind == RTM_GETLINK {
                    let mut d = link_message(seq, 1, "lo");
                    d.extend_from_slice(&link_message(seq, 3, "v0"));
                    kernel.send(&d).unwrap();
                    kernel.send(&done(seq)).unwrap();
                    continue;
                }
                let mut m = addr_message(
                    seq,
                    AF_INET,
                    24,
                    0,
                    3,
                    &[(IFA_LOCAL, &[192, 0, 2, round as u8])],
                );
                if round == 1 {
                    m[6..8].copy_from_slice(&(0x2 | NLM_F_DUMP_INTR).to_ne_bytes());
                }
                kernel.send(&m).unwrap();
                kernel.send(&done(seq)).unwrap();
            }
            (kernel, asked)
        });
        let got = nl.addresses().unwrap();
        let (kernel, asked) = peer.join().unwrap();
        assert_eq!(
            asked,
            [(RTM_GETLINK, 32), (RTM_GETADDR, 24), (RTM_GETADDR, 24)]
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.local, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(got[0].1.as_deref(), Some("v0"));
        // Silence: an error within the timeout, not a hang.
        let e = nl.dump("the address list", RTM_GETADDR).unwrap_err();
        assert!(matches!(e, NetlinkError::NoAnswer { .. }), "{e:?}");
        drop(kernel);
    }

    #[test]
    fn the_kernel_dumps_its_interfaces_and_addresses() {
        // This machine's own kernel: whatever it holds, the loopback interface is index 1 (the
        // first interface of every network namespace) and the answer parses.
        let mut nl = Netlink::open().unwrap();
        let links = nl.dump("the interface list", RTM_GETLINK).unwrap();
        let names: Vec<LinkInfo> = links.iter().map(|(_, b)| parse_link(b).unwrap()).collect();
        assert!(
            names
                .iter()
                .any(|l| l.index == 1 && l.name.as_deref() == Some("lo")),
            "{names:?}"
        );
        nl.addresses().unwrap();
    }

    #[test]
    fn the_kernel_says_why_it_refuses_a_request_for_no_interface() {
        // Index 0x7ffffff0 names no interface: nothing on this machine changes.
        let mut nl = Netlink::open().unwrap();
        let e = nl
            .request("setting interface 2147483632 up", |seq| {
                link_set(seq, 0x7fff_fff0, true)
            })
            .unwrap_err();
        match e {
            NetlinkError::Refuse { source, .. } => {
                assert!(
                    matches!(
                        source.raw_os_error(),
                        Some(libc::ENODEV) | Some(libc::EPERM)
                    ),
                    "{source}"
                );
            }
            e => panic!("{e:?}"),
        }
    }
}

/// Fuzz targets (see `crate::fuzzing`): the kernel's answer datagrams as `parse_ack` reads them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn answers(b: &[u8]) {
        let seq = 5;
        if let Ok(Some(code)) = parse_ack(b, seq) {
            // Only an error message for our sequence number answers.
            assert!(b.len() >= 20, "an answer from {} bytes", b.len());
            let _ = code;
        }
    }

    fn dumps(b: &[u8]) {
        if let Ok(part) = parse_dump(b, 5) {
            for (kind, body) in part.messages {
                let _ = match kind {
                    RTM_NEWLINK => parse_link(&body).map(|_| ()),
                    _ => parse_addr(&body).map(|_| ()),
                };
            }
        }
    }

    #[test]
    fn netlink_dumps() {
        let mut links = tests::link_message(5, 1, "lo");
        links.extend_from_slice(&tests::link_message(5, 2, "eth0"));
        let mut addrs = tests::addr_message(
            5,
            AF_INET,
            24,
            0,
            2,
            &[(IFA_LOCAL, &[192, 0, 2, 2]), (IFA_LABEL, b"eth0\0")],
        );
        addrs.extend_from_slice(&tests::addr_message(
            5,
            AF_INET6,
            128,
            254,
            1,
            &[
                (IFA_ADDRESS, &Ipv6Addr::LOCALHOST.octets()),
                (IFA_FLAGS, &0x200u32.to_ne_bytes()),
            ],
        ));
        Target::new("netlink-dump")
            .seed(&links)
            .seed(&addrs)
            .seed(message(NLMSG_DONE, 0x2, 5, &0i32.to_ne_bytes()))
            .max_len(8192)
            .run(dumps);
    }

    #[test]
    fn netlink_answers() {
        let mut ack = message(NLMSG_ERROR, 0, 5, &0i32.to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        let nack = message(NLMSG_ERROR, 0, 5, &(-17i32).to_ne_bytes());
        let mut two = message(NLMSG_ERROR, 0, 4, &(-1i32).to_ne_bytes());
        two.extend_from_slice(&nack);
        Target::new("netlink-answer")
            .seed(&ack)
            .seed(&nack)
            .seed(&two)
            .seed(default_route(5, 2, Ipv4Addr::new(10, 0, 2, 2), true))
            .max_len(8192)
            .run(answers);
    }
}
