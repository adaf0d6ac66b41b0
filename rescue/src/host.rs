//! Identity of the machine the rescue system runs on: DMI strings, kernel release, firmware boot mode
//! and Secure Boot state. Read-only sysfs/efivarfs lookups; missing facts are `None`, never errors.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// What the manifest and the banner say about the machine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostInfo {
    pub dmi_vendor: Option<String>,
    pub dmi_product: Option<String>,
    pub dmi_serial: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    pub kernel: String,
    /// `UEFI` or `BIOS`.
    pub boot_mode: String,
    /// `Some(true)` when UEFI reports Secure Boot enabled; `None` when unknown (BIOS, no efivars).
    pub secure_boot: Option<bool>,
}

fn dmi(field: &str) -> Option<String> {
    let s = fs::read_to_string(Path::new("/sys/class/dmi/id").join(field)).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Kernel release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `UEFI` when the kernel was started by UEFI firmware, else `BIOS`.
pub fn boot_mode() -> &'static str {
    if Path::new("/sys/firmware/efi").exists() {
        "UEFI"
    } else {
        "BIOS"
    }
}

const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Secure Boot state from the `SecureBoot` EFI variable (4 attribute bytes, then one data byte).
pub fn secure_boot() -> Option<bool> {
    for dir in ["/sys/firmware/efi/efivars", "/sys/firmware/efi/vars"] {
        let path = Path::new(dir).join(SECURE_BOOT_VAR);
        if let Ok(bytes) = fs::read(&path) {
            return parse_secure_boot(&bytes);
        }
        if let Ok(bytes) = fs::read(path.join("data")) {
            return bytes.first().map(|b| *b == 1);
        }
    }
    None
}

fn parse_secure_boot(efivarfs_bytes: &[u8]) -> Option<bool> {
    efivarfs_bytes.get(4).map(|b| *b == 1)
}

/// Reads every fact once.
pub fn probe() -> HostInfo {
    HostInfo {
        dmi_vendor: dmi("sys_vendor"),
        dmi_product: dmi("product_name"),
        dmi_serial: dmi("product_serial"),
        bios_vendor: dmi("bios_vendor"),
        bios_version: dmi("bios_version"),
        bios_date: dmi("bios_date"),
        kernel: kernel_release(),
        boot_mode: boot_mode().to_owned(),
        secure_boot: secure_boot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_byte_follows_attributes() {
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_secure_boot(&[6, 0]), None);
    }
}
