//! Kernel uevents from the `NETLINK_KOBJECT_UEVENT` socket: the listener and a parser for its messages.
//! Used by init to write-block new disks the moment they appear and to load drivers for hotplugged devices.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};

/// The fields of a uevent that init acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: Option<String>,
    pub devname: Option<String>,
    pub devtype: Option<String>,
    pub modalias: Option<String>,
}

/// Parses one kernel uevent datagram (`ACTION@DEVPATH\0KEY=VALUE\0…`). Messages from udev
/// (`libudev` magic) and malformed ones give `None`.
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    let mut fields = msg.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = std::str::from_utf8(fields.next()?).ok()?;
    let (_, _) = header.split_once('@')?;
    let mut ev = Uevent::default();
    for field in fields {
        let Ok(text) = std::str::from_utf8(field) else {
            continue;
        };
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        let value = value.to_owned();
        match key {
            "ACTION" => ev.action = value,
            "DEVPATH" => ev.devpath = value,
            "SUBSYSTEM" => ev.subsystem = Some(value),
            "DEVNAME" => ev.devname = Some(value),
            "DEVTYPE" => ev.devtype = Some(value),
            "MODALIAS" => ev.modalias = Some(value),
            _ => {}
        }
    }
    (!ev.action.is_empty()).then_some(ev)
}

/// Errors opening the uevent socket.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    #[error("opening the uevent netlink socket")]
    OpenSocket(#[source] nix::Error),
    #[error("binding the uevent netlink socket")]
    BindSocket(#[source] nix::Error),
}

/// A bound uevent socket (kernel multicast group 1).
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    pub fn open() -> Result<Self, UeventError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(UeventError::OpenSocket)?;
        // A large buffer so a burst of events during coldplug is not dropped; failure is harmless.
        let _ = socket::setsockopt(&fd, socket::sockopt::RcvBufForce, &(4 << 20));
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1)).map_err(UeventError::BindSocket)?;
        Ok(Self { fd })
    }

    /// Blocks for the next kernel uevent. Errors (e.g. `ENOBUFS` after an overflow) are returned so the
    /// caller can rescan sysfs.
    pub fn next(&self) -> Result<Option<Uevent>, nix::Error> {
        let mut buf = vec![0u8; 16 * 1024];
        let n = socket::recv(self.fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty())?;
        Ok(parse(&buf[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_add_event_is_parsed() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/virtio1/block/vda\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio1/block/vda\0SUBSYSTEM=block\0MAJOR=254\0MINOR=0\0DEVNAME=vda\0DEVTYPE=disk\0SEQNUM=1000\0";
        let ev = parse(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem.as_deref(), Some("block"));
        assert_eq!(ev.devname.as_deref(), Some("vda"));
        assert_eq!(ev.devtype.as_deref(), Some("disk"));
        assert_eq!(ev.modalias, None);
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"libudev\0\xfe\xed"), None);
    }
}
