//! One FUSE mount: `/dev/fuse` opened (the `fuse` module loaded first when the node is missing, as in
//! the rescue system, which never loads it at boot), `mount(2)` with `fd=N,rootmode=40000,user_id=0,
//! group_id=0,allow_other,default_permissions`, read-only, `nodev,nosuid,noexec`, then several threads
//! reading requests from the same descriptor, so reads are served in parallel (the kernel hands each
//! request to one reader). Serving ends when the mount goes away: `umount(2)` aborts the connection and
//! every reader's next `read` fails with `ENODEV`.
//!
//! A user other than root mounts and unmounts through the setuid `fusermount3` (package `fuse3`), as
//! libfuse does: it mounts with the same options (without `allow_other`, which `/etc/fuse.conf` must
//! allow for users) and hands the `/dev/fuse` descriptor back over the socket named by `_FUSE_COMMFD`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};

use super::fuse::{self, IMAGE, IMAGE_NAME, ROOT, Request};
use super::image::Image;

/// File system type as `/proc/self/mountinfo` shows it.
pub const FSTYPE: &str = "fuse.rescue";
const DEVICE: &str = "/dev/fuse";
/// The setuid helper that mounts FUSE for users other than root.
pub const FUSERMOUNT: &str = "fusermount3";

/// Errors mounting, serving or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {path} is not a directory")]
    MissingMountpoint { path: PathBuf },
    #[error("opening {DEVICE} (is the fuse module available?)")]
    OpenDevice(#[source] std::io::Error),
    #[error("loading the fuse kernel module")]
    LoadModule(#[source] crate::coldplug::ColdplugError),
    #[error("mounting on {path} (mounting FUSE this way needs root)")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "mounting FUSE as a user other than root needs the setuid {FUSERMOUNT} (package fuse3); install it or run as root"
    )]
    MissingFusermount(#[source] std::io::Error),
    #[error("{FUSERMOUNT} could not {action} {path}: {message}")]
    Fusermount {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{FUSERMOUNT} mounted {path} but passed back no /dev/fuse descriptor")]
    MissingDescriptor { path: PathBuf },
    #[error("reading a request from {DEVICE}")]
    ReadRequest(#[source] std::io::Error),
    #[error("starting a serving thread")]
    SpawnThread(#[source] std::io::Error),
    #[error("{path} is not a `rescue mount` mount point")]
    RejectNotOurs { path: PathBuf },
    #[error(
        "{path} is in use (an open file, or a loop device on image.raw): close it or detach the loop device first"
    )]
    Busy { path: PathBuf },
    #[error("unmounting {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// A mounted, not yet served, FUSE file system.
pub struct Mounted {
    device: File,
    mountpoint: PathBuf,
    image: Arc<Image>,
    mtime: u64,
}

/// The effective user id: root mounts with `mount(2)`, anyone else through [`FUSERMOUNT`].
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn open_device() -> Result<File, MountError> {
    let open = || OpenOptions::new().read(true).write(true).open(DEVICE);
    match open() {
        Ok(f) => Ok(f),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
            // The rescue system loads drivers only by modalias at boot; fuse has none, so it is loaded
            // here, when it is first needed (devtmpfs creates the node as the module registers it).
            let mut c = crate::coldplug::Coldplug::open(&crate::coldplug::modules_dir())
                .map_err(MountError::LoadModule)?;
            c.load_module("fuse").map_err(MountError::LoadModule)?;
            open().map_err(MountError::OpenDevice)
        }
        Err(e) => Err(MountError::OpenDevice(e)),
    }
}

/// Mounts `image` read-only on `mountpoint` (an existing directory). The caller then calls
/// [`Mounted::serve`], possibly in another process (the descriptor is inherited).
pub fn mount(image: Image, mountpoint: &Path) -> Result<Mounted, MountError> {
    let mp = mountpoint
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| MountError::MissingMountpoint {
            path: mountpoint.to_owned(),
        })?;
    let max_read = usize::from(fuse::MAX_PAGES) * 4096;
    let device = if euid() == 0 {
        mount_as_root(&mp, max_read)?
    } else {
        mount_with_fusermount(&mp, max_read)?
    };
    let mtime = image
        .manifest()
        .finished_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .unwrap_or(0);
    Ok(Mounted {
        device,
        mountpoint: mp,
        image: Arc::new(image),
        mtime,
    })
}

fn mount_as_root(mp: &Path, max_read: usize) -> Result<File, MountError> {
    let device = open_device()?;
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read={max_read}",
        device.as_raw_fd(),
    );
    nix::mount::mount(
        Some("rescue"),
        mp,
        Some(FSTYPE),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|source| MountError::Mount {
        path: mp.to_owned(),
        source,
    })?;
    Ok(device)
}

/// Runs `fusermount3 ARGS`; its error output becomes the message of a failure.
fn fusermount(
    args: &[&std::ffi::OsStr],
    commfd: Option<&std::os::fd::OwnedFd>,
    action: &'static str,
    mp: &Path,
) -> Result<(), MountError> {
    let mut cmd = std::process::Command::new(FUSERMOUNT);
    cmd.args(args).stdin(std::process::Stdio::null());
    if let Some(fd) = commfd {
        cmd.env("_FUSE_COMMFD", fd.as_raw_fd().to_string());
    }
    let out = cmd.output().map_err(MountError::MissingFusermount)?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    let message = text
        .strip_prefix(&format!("{FUSERMOUNT}: "))
        .unwrap_or(text);
    if message.contains("busy") {
        return Err(MountError::Busy {
            path: mp.to_owned(),
        });
    }
    Err(MountError::Fusermount {
        action,
        path: mp.to_owned(),
        message: if message.is_empty() {
            out.status.to_string()
        } else {
            message.to_owned()
        },
    })
}

/// Mounts through the setuid `fusermount3` and receives the `/dev/fuse` descriptor it opened.
fn mount_with_fusermount(mp: &Path, max_read: usize) -> Result<File, MountError> {
    use nix::sys::socket::{
        AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
    };
    let socket_error = |e: nix::Error| MountError::Fusermount {
        action: "mount",
        path: mp.to_owned(),
        message: format!("socket to receive the descriptor: {e}"),
    };
    // The child's end must survive exec (no close-on-exec); ours is closed once the descriptor is in.
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .map_err(socket_error)?;
    let options = format!(
        "ro,nosuid,nodev,noexec,default_permissions,fsname=rescue,subtype=rescue,max_read={max_read}"
    );
    fusermount(
        &[
            "-o".as_ref(),
            options.as_ref(),
            "--".as_ref(),
            mp.as_os_str(),
        ],
        Some(&theirs),
        "mount",
        mp,
    )?;
    drop(theirs);
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = recvmsg::<()>(
        ours.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(socket_error)?;
    let fd = msg.cmsgs().map_err(socket_error)?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    });
    match fd {
        // SAFETY: the descriptor was just received with SCM_RIGHTS: it is open and nothing else in this
        // process owns it.
        Some(fd) => Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) }),
        None => {
            let _ = fusermount(
                &["-u".as_ref(), "-z".as_ref(), mp.as_os_str()],
                None,
                "unmount",
                mp,
            );
            Err(MountError::MissingDescriptor {
                path: mp.to_owned(),
            })
        }
    }
}

impl Mounted {
    /// The mount point, canonical.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves requests on `threads` threads until the file system is unmounted.
    pub fn serve(self, threads: usize) -> Result<(), MountError> {
        let threads = threads.max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    std::thread::Builder::new()
                        .name(format!("fuse-{i}"))
                        .spawn_scoped(s, || self.serve_one())
                        .map_err(MountError::SpawnThread)
                })
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = match h {
                    Ok(h) => h.join().unwrap_or(Ok(())),
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }

    fn serve_one(&self) -> Result<(), MountError> {
        let mut req = vec![0u8; fuse::REQUEST_BUFFER];
        let mut out = Vec::with_capacity(fuse::OUT_HEADER + usize::from(fuse::MAX_PAGES) * 4096);
        loop {
            let n = match (&self.device).read(&mut req) {
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    // The request was interrupted before we got it, or a signal woke us.
                    Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                    // Unmounted: the connection is gone.
                    Some(libc::ENODEV) => return Ok(()),
                    _ => return Err(MountError::ReadRequest(e)),
                },
            };
            let Ok((h, r)) = fuse::decode(&req[..n]) else {
                // Without a header there is nobody to answer.
                continue;
            };
            if !self.answer(h, r, &mut out) {
                continue;
            }
            if let Err(e) = (&self.device).write(&out)
                && e.raw_os_error() == Some(libc::ENODEV)
            {
                return Ok(());
            }
            // Other write errors (ENOENT: the request was interrupted meanwhile) lose one answer the
            // kernel no longer waits for.
        }
    }

    /// Encodes the answer to one request into `out`; false when the request takes no answer.
    fn answer(&self, h: fuse::Header, r: Request, out: &mut Vec<u8>) -> bool {
        let u = h.unique;
        let size = self.image.size();
        match r {
            Request::Init {
                max_readahead,
                flags,
                ..
            } => fuse::init(out, u, flags, max_readahead),
            Request::Lookup { parent, name } => {
                if parent == ROOT && name == IMAGE_NAME.as_bytes() {
                    fuse::entry(out, u, IMAGE, size, self.mtime);
                } else {
                    fuse::error(out, u, libc::ENOENT);
                }
            }
            Request::GetAttr { node } if node == ROOT || node == IMAGE => {
                fuse::attr_reply(out, u, node, size, self.mtime);
            }
            Request::Open { node, flags } if node == IMAGE => {
                if flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                    fuse::error(out, u, libc::EROFS);
                } else {
                    fuse::open(out, u, false);
                }
            }
            Request::Read { node, offset, size } if node == IMAGE => {
                fuse::begin(out, u);
                let want = (size as usize).min(usize::from(fuse::MAX_PAGES) * 4096);
                out.resize(fuse::OUT_HEADER + want, 0);
                match self.image.read_at(&mut out[fuse::OUT_HEADER..], offset) {
                    Ok(n) => {
                        out.truncate(fuse::OUT_HEADER + n);
                        fuse::finish(out);
                    }
                    Err(_) => fuse::error(out, u, libc::EIO),
                }
            }
            Request::OpenDir { node } if node == ROOT => fuse::open(out, u, true),
            Request::ReadDir { node, offset, size } if node == ROOT => {
                fuse::readdir(out, u, offset, size);
            }
            Request::StatFs => fuse::statfs(out, u, size),
            Request::Done => fuse::error(out, u, 0),
            Request::NoReply => return false,
            Request::Unsupported { .. } => fuse::error(out, u, libc::ENOSYS),
            Request::GetAttr { .. }
            | Request::Open { .. }
            | Request::Read { .. }
            | Request::OpenDir { .. }
            | Request::ReadDir { .. } => fuse::error(out, u, libc::ENOENT),
        }
        true
    }
}

/// The file system type mounted at `path` (`/proc/self/mountinfo`), if something is mounted there.
fn mounted_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    // Fields: id parent major:minor root mountpoint options … - fstype source super-options.
    info.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let mp = fields.nth(4)?;
        if unescape_octal(mp) != want {
            return None;
        }
        let rest = line.split(" - ").nth(1)?;
        rest.split(' ').next().map(str::to_owned)
    })
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when a `rescue mount` file system is mounted at `path`.
pub fn is_ours(path: &Path) -> bool {
    path.canonicalize()
        .ok()
        .and_then(|p| mounted_type(&p))
        .is_some_and(|t| t == FSTYPE)
}

/// Unmounts a `rescue mount` mount point; its server then sees `ENODEV` and exits. `lazy` detaches
/// it even while in use (the server keeps answering until the last user lets go).
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<PathBuf, MountError> {
    let mp = mountpoint
        .canonicalize()
        .map_err(|_| MountError::RejectNotOurs {
            path: mountpoint.to_owned(),
        })?;
    if mounted_type(&mp).as_deref() != Some(FSTYPE) {
        return Err(MountError::RejectNotOurs { path: mp });
    }
    if euid() != 0 {
        let mut args: Vec<&std::ffi::OsStr> = vec!["-u".as_ref()];
        if lazy {
            args.push("-z".as_ref());
        }
        args.push(mp.as_os_str());
        fusermount(&args, None, "unmount", &mp)?;
        return Ok(mp);
    }
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match nix::mount::umount2(&mp, flags) {
        Ok(()) => Ok(mp),
        Err(nix::Error::EBUSY) => Err(MountError::Busy { path: mp }),
        Err(source) => Err(MountError::Unmount { path: mp, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_octal(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_octal(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_octal(r"/plain\9"), r"/plain\9");
        assert_eq!(mounted_type(Path::new("/nonexistent/for/sure")), None);
    }
}
