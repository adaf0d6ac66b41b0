//! rtnetlink messages written by hand: set a link up or down (`RTM_NEWLINK`), add or remove an IPv4
//! address (`RTM_NEWADDR`/`RTM_DELADDR`), add a default route (`RTM_NEWROUTE`). Encoding is pure and
//! unit-tested; [`Netlink`] sends one request at a time and waits for the kernel's acknowledgement,
//! never longer than [`ANSWER_TIMEOUT`]: no answer, a malformed answer and a refusal are each an
//! error that says what the kernel did (so `net up` cannot hang on a silent or confused socket).

use std::net::Ipv4Addr;
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
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
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

/// Finds the acknowledgement for `seq` in one datagram: `Ok(Some(0))`, `Ok(Some(-errno))` for a
/// refusal, `Ok(None)` when the datagram is well-formed but answers something else; `Err` describes
/// what is malformed.
pub fn parse_ack(buf: &[u8], seq: u32) -> Result<Option<i32>, String> {
    let mut rest = buf;
    if rest.is_empty() {
        return Err("an empty datagram".to_owned());
    }
    while !rest.is_empty() {
        if rest.len() < 16 {
            return Err(format!(
                "{} bytes left, less than a message header",
                rest.len()
            ));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let s = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < 16 || len > rest.len() {
            return Err(format!(
                "a message of type {kind} claims {len} bytes where {} remain",
                rest.len()
            ));
        }
        if kind == NLMSG_ERROR && s == seq {
            if len < 20 {
                return Err(format!("an error message of {len} bytes, without its code"));
            }
            return Ok(Some(i32::from_ne_bytes([
                rest[16], rest[17], rest[18], rest[19],
            ])));
        }
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
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
