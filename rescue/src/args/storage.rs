//! `lvm activate|deactivate` and `md assemble|stop`.

use std::path::PathBuf;

use clap::Subcommand;

/// What `lvm` does.
#[derive(Debug, Clone, Subcommand)]
pub enum LvmCommand {
    /// Read PV labels and VG metadata from write-blocked devices and map every linear or striped LV
    /// read-only as /dev/mapper/VG-LV and /dev/VG/LV (no lvm2 tools, no metadata write).
    Activate {
        /// Read-only is the only mode; the flag is accepted so the command reads as it acts.
        #[arg(long)]
        read_only: bool,
        /// Devices to scan for PVs [default: every disk, partition, loop and md device].
        devices: Vec<PathBuf>,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Remove every LV mapping that `lvm activate` made.
    Deactivate,
}

/// What `md` does.
#[derive(Debug, Clone, Subcommand)]
pub enum MdCommand {
    /// Read md superblocks (0.90, 1.0, 1.1, 1.2) from write-blocked devices and start each complete,
    /// consistent array read-only (no superblock write, no resync).
    Assemble {
        /// Read-only is the only mode; the flag is accepted so the command reads as it acts.
        #[arg(long)]
        read_only: bool,
        /// Start an array with members missing or stale if its level still serves every byte.
        #[arg(long)]
        degraded: bool,
        /// Devices to scan for members [default: every disk, partition and loop device].
        devices: Vec<PathBuf>,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Stop every md array (after `lvm deactivate` when LVs sit on one).
    Stop,
}
