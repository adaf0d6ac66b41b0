//! Formatting an evidence destination: `mkfs.ext4` (e2fsprogs) or `mkfs.exfat` (exfatprogs), both
//! copied into the initramfs with their shared libraries by the builder.
//!
//! Only a device the operator unlocked (which the unlock interlock already refused for source disks and
//! the boot medium) can be formatted, and only after its serial is typed again; a source disk, the boot
//! medium or a mounted disk is refused here too, whatever the state file says. Never prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::case::{self, Locked};
use crate::{blkro, devices};

/// Volume label of every filesystem this module creates.
pub const LABEL: &str = "EVIDENCE";

/// Filesystems an evidence destination can be formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Filesystem {
    /// ext4: journaling, no file size limit worth mentioning; readable by every Linux examiner.
    Ext4,
    /// exFAT: readable on Windows and macOS too; no 4 GiB file limit.
    Exfat,
}

impl Filesystem {
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Exfat => "exfat",
        }
    }

    /// The program and its arguments (without the device).
    fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Filesystem::Ext4 => ("mkfs.ext4", &["-F", "-q", "-m", "0", "-L", LABEL]),
            Filesystem::Exfat => ("mkfs.exfat", &["-L", LABEL]),
        }
    }
}

/// Why a device was not formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("looking up {path}")]
    DescribeDevice {
        path: PathBuf,
        #[source]
        source: devices::DevicesError,
    },
    #[error("{device} was chosen as a source in this case: it is never formatted")]
    RefuseSource { device: String },
    #[error("{device} is the rescue boot medium: it is never formatted")]
    RefuseBootMedium { device: String },
    #[error("{device} is not unlocked: run `unlock {device} --confirm SERIAL` first")]
    NotUnlocked { device: String },
    #[error(
        "{device} has serial {serial}; type it (or its last 6 characters) after --confirm to format that disk"
    )]
    WrongSerial { device: String, serial: String },
    #[error(
        "{device} reports no serial number; confirm with its size in bytes instead: --confirm {size}"
    )]
    WrongSize { device: String, size: u64 },
    #[error("{device} has mounted filesystems ({mounts}); unmount them first")]
    RefuseMounted { device: String, mounts: String },
    #[error("{device} is still write-blocked")]
    StillReadOnly { device: String },
    #[error("{program} is not in this system (looked in {looked})")]
    FindProgram { program: String, looked: String },
    #[error("running {program}")]
    RunProgram {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    ProgramFailed {
        program: String,
        status: String,
        output: String,
    },
}

/// Where the rescue system (and a Debian host) keeps the mkfs programs.
const PROGRAM_DIRS: [&str; 4] = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"];

fn find_program(name: &str) -> Result<PathBuf, FormatError> {
    PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| FormatError::FindProgram {
            program: name.to_owned(),
            looked: PROGRAM_DIRS.join(" "),
        })
}

/// Creates an empty `fs` filesystem labelled [`LABEL`] on `device` (a disk or one of its partitions),
/// after checking every interlock and the typed serial.
pub fn format(
    locked: &Locked,
    device: &Path,
    fs: Filesystem,
    confirm: &str,
) -> Result<(), FormatError> {
    let disk = devices::describe(device).map_err(|source| FormatError::DescribeDevice {
        path: device.to_owned(),
        source,
    })?;
    let shown = device.display().to_string();
    if locked.state.sources.contains(&disk.name) {
        return Err(FormatError::RefuseSource { device: shown });
    }
    if case::boot_medium_disks().contains(&disk.name) {
        return Err(FormatError::RefuseBootMedium { device: shown });
    }
    if !locked.state.unlocked.contains(&disk.name) {
        return Err(FormatError::NotUnlocked { device: disk.path });
    }
    match &disk.serial {
        Some(serial) if !case::serial_confirms(serial, confirm) => {
            return Err(FormatError::WrongSerial {
                device: disk.path,
                serial: serial.clone(),
            });
        }
        None if confirm.trim() != disk.size_bytes.to_string() => {
            return Err(FormatError::WrongSize {
                device: disk.path,
                size: disk.size_bytes,
            });
        }
        _ => {}
    }
    let mounts = blkro::family_mounts(Path::new(&disk.path)).unwrap_or_default();
    if !mounts.is_empty() {
        let list = mounts
            .iter()
            .map(|m| format!("{} on {}", m.source, m.target))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(FormatError::RefuseMounted {
            device: disk.path,
            mounts: list,
        });
    }
    if blkro::is_read_only(device).unwrap_or(true) {
        return Err(FormatError::StillReadOnly { device: shown });
    }
    let (program, args) = fs.command();
    let path = find_program(program)?;
    let out = Command::new(&path)
        .args(args)
        .arg(device)
        .output()
        .map_err(|source| FormatError::RunProgram {
            program: program.to_owned(),
            source,
        })?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        return Err(FormatError::ProgramFailed {
            program: program.to_owned(),
            status: out.status.to_string(),
            output: text,
        });
    }
    nix::unistd::sync();
    Ok(())
}
