//! Proof of the write-block: try to write to every block device and record how the kernel refused.
//!
//! This is the one place that opens block devices for writing, on purpose, to show the operator that
//! `BLKROSET` holds. It writes back exactly the bytes it just read from the first logical sector, so even a
//! device that is *not* protected keeps its contents (a changed mtime of the device node aside).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use serde::Serialize;

use crate::blkro;
use crate::devices::read_u64;

/// How a write attempt ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WriteOutcome {
    /// `open(O_WRONLY)` failed.
    RefusedAtOpen { error: String },
    /// The open succeeded but the write failed.
    RefusedAtWrite { error: String },
    /// The write went through: the device is NOT write-blocked.
    Accepted,
    /// The first sector could not be read, so nothing was attempted.
    NotTested { error: String },
}

/// One device's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WriteProbe {
    pub device: String,
    pub read_only_flag: Option<bool>,
    #[serde(flatten)]
    pub outcome: WriteOutcome,
}

impl WriteProbe {
    /// True when the write did not reach the device.
    pub fn refused(&self) -> bool {
        matches!(
            self.outcome,
            WriteOutcome::RefusedAtOpen { .. } | WriteOutcome::RefusedAtWrite { .. }
        )
    }
}

fn probe_one(dev: &Path) -> WriteOutcome {
    let sector = read_u64(
        Path::new("/sys/class/block")
            .join(dev.file_name().unwrap_or_default())
            .join("queue/logical_block_size"),
    )
    .map_or(512, |s| s as usize);
    let mut original = vec![0u8; sector];
    let read = fs::File::open(dev).and_then(|mut f| f.read_exact(&mut original));
    if let Err(e) = read {
        return WriteOutcome::NotTested {
            error: e.to_string(),
        };
    }
    let file = match fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_SYNC)
        .open(dev)
    {
        Ok(f) => f,
        Err(e) => {
            return WriteOutcome::RefusedAtOpen {
                error: e.to_string(),
            };
        }
    };
    match file.write_at(&original, 0).and_then(|_| file.sync_all()) {
        Ok(()) => WriteOutcome::Accepted,
        Err(e) => WriteOutcome::RefusedAtWrite {
            error: e.to_string(),
        },
    }
}

/// Tries every disk and partition with a non-zero size (RAM disks excluded).
pub fn write_block() -> Vec<WriteProbe> {
    blkro::all_block_names()
        .into_iter()
        .filter(|n| !n.starts_with("ram") && !n.starts_with("zram"))
        .filter(|n| read_u64(Path::new("/sys/class/block").join(n).join("size")).unwrap_or(0) > 0)
        .map(|name| {
            let dev = Path::new("/dev").join(&name);
            WriteProbe {
                read_only_flag: blkro::is_read_only(&dev).ok(),
                outcome: probe_one(&dev),
                device: dev.display().to_string(),
            }
        })
        .collect()
}
