//! Device-mapper through its ioctls on `/dev/mapper/control` (`linux/dm-ioctl.h`, interface 4):
//! `DM_VERSION`, `DM_DEV_CREATE`, `DM_TABLE_LOAD` (always with `DM_READONLY_FLAG`, so the kernel opens
//! the underlying devices for reading only), `DM_DEV_SUSPEND` without the suspend flag (resume: the
//! loaded table goes live), `DM_DEV_REMOVE` and `DM_LIST_DEVICES`. The `/dev/mapper/NAME` node is made
//! here (the rescue system has no udev). No read-write table can be loaded through this module.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors from device-mapper calls.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error(
        "this kernel has no device-mapper (/dev/mapper/control: dm_mod is neither built in nor loadable)"
    )]
    NoDeviceMapper(#[source] std::io::Error),
    #[error("device-mapper {call} for {name}")]
    Ioctl {
        call: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("device-mapper {call} for {name}: {what}")]
    Invalid {
        call: &'static str,
        name: String,
        what: String,
    },
    #[error("creating {path}")]
    Node {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const DM_IOCTL: u64 = 0xfd;
const HEADER: usize = 312;
const fn iowr(nr: u64) -> u64 {
    (3 << 30) | ((HEADER as u64) << 16) | (DM_IOCTL << 8) | nr
}
const DM_VERSION: u64 = iowr(0);
const DM_LIST_DEVICES: u64 = iowr(2);
const DM_DEV_CREATE: u64 = iowr(3);
const DM_DEV_REMOVE: u64 = iowr(4);
const DM_DEV_SUSPEND: u64 = iowr(6);
const DM_TABLE_LOAD: u64 = iowr(9);

/// `DM_READONLY_FLAG`.
const READONLY_FLAG: u32 = 1;
/// `DM_BUFFER_FULL_FLAG`: the reply did not fit.
const BUFFER_FULL_FLAG: u32 = 1 << 8;

/// One target line of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLine {
    pub start: u64,
    pub length: u64,
    pub kind: String,
    pub params: String,
}

/// A device-mapper device that exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DmDevice {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

/// The `/dev/mapper/control` handle.
pub struct Control {
    file: fs::File,
}

fn put_str(buf: &mut [u8], off: usize, max: usize, s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() >= max || b.contains(&0) {
        return false;
    }
    buf[off..off + b.len()].copy_from_slice(b);
    true
}

fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn rd64(b: &[u8], off: usize) -> u64 {
    u64::from(rd32(b, off)) | (u64::from(rd32(b, off + 4)) << 32)
}

/// Splits a kernel `dev_t` as the DM ioctl returns it (`huge_encode_dev`).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff_ff00)) as u32;
    (major, minor)
}

/// Serialises one `DM_TABLE_LOAD` payload: `struct dm_target_spec` + NUL-terminated params, each
/// padded to 8 bytes, `next` the distance to the following spec.
pub fn encode_targets(targets: &[TargetLine]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for t in targets {
        if t.kind.len() >= 16 {
            return Err(format!("target type {:?} is too long", t.kind));
        }
        let mut spec = vec![0u8; 40];
        spec[0..8].copy_from_slice(&t.start.to_le_bytes());
        spec[8..16].copy_from_slice(&t.length.to_le_bytes());
        spec[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        spec.extend_from_slice(t.params.as_bytes());
        spec.push(0);
        while !spec.len().is_multiple_of(8) {
            spec.push(0);
        }
        let next = spec.len() as u32;
        spec[20..24].copy_from_slice(&next.to_le_bytes());
        out.extend(spec);
    }
    Ok(out)
}

impl Control {
    /// Opens `/dev/mapper/control`, loading `dm_mod` first if needed, and checks the interface version.
    pub fn open() -> Result<Control, DmError> {
        let path = Path::new("/dev/mapper/control");
        if !path.exists() {
            if let Ok(mut c) = crate::coldplug::Coldplug::open(&crate::coldplug::modules_dir()) {
                let _ = c.load_module("dm_mod");
            }
            make_control_node();
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(DmError::NoDeviceMapper)?;
        let c = Control { file };
        let reply = c.call(DM_VERSION, "DM_VERSION", "", None, 0, &[], HEADER)?;
        let major = rd32(&reply, 0);
        if major != 4 {
            return Err(DmError::Invalid {
                call: "DM_VERSION",
                name: String::new(),
                what: format!("kernel speaks interface {major}, this program 4"),
            });
        }
        Ok(c)
    }

    /// One ioctl: header + `payload`, with room for `reply_room` bytes back.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        nr: u64,
        call: &'static str,
        name: &str,
        uuid: Option<&str>,
        flags: u32,
        payload: &[u8],
        reply_room: usize,
    ) -> Result<Vec<u8>, DmError> {
        let invalid = |what: String| DmError::Invalid {
            call,
            name: name.to_owned(),
            what,
        };
        let size = (HEADER + payload.len()).max(reply_room);
        let mut buf = vec![0u8; size];
        buf[0..4].copy_from_slice(&4u32.to_le_bytes());
        buf[12..16].copy_from_slice(&(size as u32).to_le_bytes());
        buf[16..20].copy_from_slice(&(HEADER as u32).to_le_bytes());
        let count = if nr == DM_TABLE_LOAD {
            let mut n = 0u32;
            let mut off = 0usize;
            while off + 40 <= payload.len() {
                n += 1;
                let next = rd32(payload, off + 20) as usize;
                if next == 0 {
                    break;
                }
                off += next;
            }
            n
        } else {
            0
        };
        buf[20..24].copy_from_slice(&count.to_le_bytes());
        buf[28..32].copy_from_slice(&flags.to_le_bytes());
        if !put_str(&mut buf, 48, 128, name) {
            return Err(invalid("the name is longer than 127 bytes".into()));
        }
        if let Some(u) = uuid
            && !put_str(&mut buf, 176, 129, u)
        {
            return Err(invalid("the UUID is longer than 128 bytes".into()));
        }
        buf[HEADER..HEADER + payload.len()].copy_from_slice(payload);
        // SAFETY: the buffer starts with a struct dm_ioctl whose data_size is the buffer's length; the
        // kernel reads and writes at most that many bytes, and the buffer outlives the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), nr as _, buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(DmError::Ioctl {
                call,
                name: name.to_owned(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(buf)
    }

    /// Creates `name` with a read-only table of `targets` and makes it live; returns its device
    /// numbers. On failure after the create, the device is removed again.
    pub fn create_read_only(
        &self,
        name: &str,
        uuid: &str,
        targets: &[TargetLine],
    ) -> Result<DmDevice, DmError> {
        let payload = encode_targets(targets).map_err(|what| DmError::Invalid {
            call: "DM_TABLE_LOAD",
            name: name.to_owned(),
            what,
        })?;
        self.call(
            DM_DEV_CREATE,
            "DM_DEV_CREATE",
            name,
            Some(uuid),
            READONLY_FLAG,
            &[],
            HEADER,
        )?;
        let live = self
            .call(
                DM_TABLE_LOAD,
                "DM_TABLE_LOAD",
                name,
                None,
                READONLY_FLAG,
                &payload,
                HEADER,
            )
            .and_then(|_| {
                // Resume: DM_DEV_SUSPEND without DM_SUSPEND_FLAG swaps the loaded table in.
                self.call(
                    DM_DEV_SUSPEND,
                    "DM_DEV_SUSPEND (resume)",
                    name,
                    None,
                    READONLY_FLAG,
                    &[],
                    HEADER,
                )
            });
        let reply = match live {
            Ok(r) => r,
            Err(e) => {
                let _ = self.remove(name);
                return Err(e);
            }
        };
        let (major, minor) = split_dev(rd64(&reply, 40));
        if rd32(&reply, 28) & READONLY_FLAG == 0 {
            let _ = self.remove(name);
            return Err(DmError::Invalid {
                call: "DM_DEV_SUSPEND",
                name: name.to_owned(),
                what: "the kernel did not report the table read-only; removed it".into(),
            });
        }
        Ok(DmDevice {
            name: name.to_owned(),
            major,
            minor,
        })
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) -> Result<(), DmError> {
        self.call(DM_DEV_REMOVE, "DM_DEV_REMOVE", name, None, 0, &[], HEADER)
            .map(|_| ())
    }

    /// Every device-mapper device, with its device numbers.
    pub fn list(&self) -> Result<Vec<DmDevice>, DmError> {
        let mut room = 16 << 10;
        loop {
            let reply = self.call(DM_LIST_DEVICES, "DM_LIST_DEVICES", "", None, 0, &[], room)?;
            if rd32(&reply, 28) & BUFFER_FULL_FLAG != 0 && room < 4 << 20 {
                room *= 4;
                continue;
            }
            return Ok(parse_name_list(&reply));
        }
    }
}

/// Parses the `struct dm_name_list` chain after the header of a `DM_LIST_DEVICES` reply.
fn parse_name_list(reply: &[u8]) -> Vec<DmDevice> {
    let start = rd32(reply, 16) as usize;
    let end = (rd32(reply, 12) as usize).min(reply.len());
    let mut out = Vec::new();
    let mut off = start;
    // Each entry: u64 dev, u32 next, char name[]; an empty list is one entry with dev 0.
    while off + 12 <= end {
        let dev = rd64(reply, off);
        let next = rd32(reply, off + 8) as usize;
        let name_start = off + 12;
        let name_end = reply[name_start..end]
            .iter()
            .position(|&c| c == 0)
            .map_or(end, |p| name_start + p);
        if dev == 0 && next == 0 && name_end == name_start {
            break;
        }
        let (major, minor) = split_dev(dev);
        out.push(DmDevice {
            name: String::from_utf8_lossy(&reply[name_start..name_end]).into_owned(),
            major,
            minor,
        });
        if next == 0 {
            break;
        }
        off += next;
    }
    out
}

/// devtmpfs makes `/dev/mapper/control` when dm_mod loads; without devtmpfs, make it from the misc
/// minor in `/proc/misc`.
fn make_control_node() {
    let minor = fs::read_to_string("/proc/misc")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (m, n) = l.trim().split_once(' ')?;
            (n == "device-mapper").then(|| m.parse::<u32>().ok())?
        });
    if let Some(minor) = minor {
        let _ = fs::create_dir_all("/dev/mapper");
        let _ = nix::sys::stat::mknod(
            "/dev/mapper/control",
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            libc::makedev(10, minor),
        );
    }
}

/// Makes the block node `/dev/mapper/NAME` for a device that exists.
pub fn make_node(dev: &DmDevice) -> Result<PathBuf, DmError> {
    let path = Path::new("/dev/mapper").join(&dev.name);
    let _ = fs::remove_file(&path);
    nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        libc::makedev(dev.major, dev.minor),
    )
    .map_err(|e| DmError::Node {
        path: path.clone(),
        source: e.into(),
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs_are_packed_as_the_kernel_reads_them() {
        let b = encode_targets(&[
            TargetLine {
                start: 0,
                length: 65536,
                kind: "linear".into(),
                params: "254:0 2048".into(),
            },
            TargetLine {
                start: 65536,
                length: 8192,
                kind: "striped".into(),
                params: "2 128 254:0 10240 254:16 2048".into(),
            },
        ])
        .unwrap();
        // 40-byte spec + "254:0 2048\0" (11) = 51, padded to 56.
        assert_eq!(rd32(&b, 20), 56);
        assert_eq!(rd64(&b, 8), 65536);
        assert_eq!(&b[24..30], b"linear");
        assert_eq!(&b[40..51], b"254:0 2048\0");
        assert_eq!(rd64(&b, 56), 65536);
        assert_eq!(&b[56 + 24..56 + 31], b"striped");
        assert_eq!(b.len() % 8, 0);
        assert!(
            encode_targets(&[TargetLine {
                start: 0,
                length: 1,
                kind: "x".repeat(16),
                params: String::new()
            }])
            .is_err()
        );
    }

    #[test]
    fn device_numbers_and_name_lists_decode() {
        assert_eq!(split_dev((254 << 8) | 3), (254, 3));
        assert_eq!(split_dev((254 << 8) | 0x12 | (0x3 << 20)), (254, 0x312));
        let mut reply = vec![0u8; HEADER];
        reply[16..20].copy_from_slice(&(HEADER as u32).to_le_bytes());
        let mut add = |dev: u64, next: u32, name: &str| {
            reply.extend(dev.to_le_bytes());
            reply.extend(next.to_le_bytes());
            reply.extend(name.as_bytes());
            reply.push(0);
            while !reply.len().is_multiple_of(8) {
                reply.push(0);
            }
        };
        add((254 << 8) | 1, 24, "vg--a-lv");
        add(254 << 8, 0, "vg-b");
        let len = reply.len() as u32;
        reply[12..16].copy_from_slice(&len.to_le_bytes());
        let l = parse_name_list(&reply);
        assert_eq!(
            l,
            [
                DmDevice {
                    name: "vg--a-lv".into(),
                    major: 254,
                    minor: 1
                },
                DmDevice {
                    name: "vg-b".into(),
                    major: 254,
                    minor: 0
                }
            ]
        );
    }
}
