//! Loading an installer's kernel with `kexec_file_load(2)` and rebooting into it
//! (`LINUX_REBOOT_CMD_KEXEC`). The kernel and initrd are handed over as memfds, so nothing is written to
//! any disk. The command line is made console-aware: the `console=` arguments of the running rescue
//! kernel are carried over. Never prints.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors of kexec.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    #[error("creating an in-memory file for the {0}")]
    Memfd(&'static str, #[source] std::io::Error),
    #[error(
        "the kernel refused kexec_file_load: {0}; it is locked down (Secure Boot or lockdown=), so only a kernel signed by a key it trusts can be loaded"
    )]
    LockedDown(String),
    #[error(
        "the installer's kernel signature was rejected (Secure Boot / kexec signature enforcement): {0}"
    )]
    SignatureRejected(std::io::Error),
    #[error("this kernel has no kexec_file_load (CONFIG_KEXEC_FILE is not set)")]
    NotSupported,
    #[error("the installer's kernel is not a bootable bzImage")]
    NotKernel,
    #[error("kexec_file_load failed")]
    Load(#[source] std::io::Error),
    #[error("rebooting into the loaded kernel")]
    Reboot(#[source] std::io::Error),
}

/// The kernel lockdown mode, as `/sys/kernel/security/lockdown` shows it (`none`, `integrity`, …).
pub fn lockdown_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_owned())
}

/// The `console=` arguments of a kernel command line.
pub fn consoles(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("console="))
        .map(str::to_owned)
        .collect()
}

/// The installer's command line: our own `console=` arguments (unless `append` sets its own), then `append`.
pub fn installer_cmdline(own_cmdline: &str, append: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if consoles(append).is_empty() {
        parts.extend(consoles(own_cmdline));
    }
    parts.extend(append.split_whitespace().map(str::to_owned));
    parts.join(" ")
}

fn memfd(name: &'static str, data: &[u8]) -> Result<OwnedFd, KexecError> {
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: memfd_create takes a valid NUL-terminated name and flags; it returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(KexecError::Memfd(name, std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(data)
        .map_err(|e| KexecError::Memfd(name, e))?;
    Ok(OwnedFd::from(file))
}

/// Loads `kernel` and `initrd` for kexec with `cmdline`.
pub fn load(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Result<(), KexecError> {
    let k = memfd("kernel", kernel)?;
    let i = memfd("initrd", initrd)?;
    let c = std::ffi::CString::new(cmdline.replace('\0', " ")).unwrap_or_default();
    let len = c.as_bytes_with_nul().len();
    // SAFETY: kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags): both fds are open
    // and live until the call returns; cmdline is NUL-terminated and cmdline_len counts the NUL.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            k.as_raw_fd(),
            i.as_raw_fd(),
            len as libc::c_ulong,
            c.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => KexecError::NotSupported,
        Some(libc::ENOEXEC) => KexecError::NotKernel,
        Some(libc::EKEYREJECTED) | Some(libc::EBADMSG) | Some(libc::ENOKEY) => {
            KexecError::SignatureRejected(err)
        }
        Some(libc::EPERM) if lockdown_mode().is_some_and(|m| m != "none") => {
            KexecError::LockedDown(format!(
                "{err} (lockdown: {})",
                lockdown_mode().unwrap_or_default()
            ))
        }
        _ => KexecError::Load(err),
    })
}

/// Syncs and reboots into the kernel loaded by [`load`]. Returns only on failure.
pub fn reboot_into_loaded() -> KexecError {
    nix::unistd::sync();
    // SAFETY: reboot(2) with a valid command; it does not return on success.
    let rc = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    let _ = rc;
    KexecError::Reboot(std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installer_inherits_our_serial_console() {
        let own = "console=tty0 console=ttyS0,115200n8 quiet noresume";
        assert_eq!(
            installer_cmdline(own, "priority=low"),
            "console=tty0 console=ttyS0,115200n8 priority=low"
        );
        assert_eq!(
            installer_cmdline(own, "console=ttyS1 auto=true"),
            "console=ttyS1 auto=true",
            "an explicit console= wins"
        );
        assert_eq!(installer_cmdline("quiet", ""), "");
    }
}
