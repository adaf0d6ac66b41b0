//! `restore SOURCE TARGET`.

use std::path::PathBuf;

use clap::Args;

/// `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A directory, a tar / tar.zst archive, a disk image file or a disk holding the backup.
    pub source: PathBuf,
    /// The mounted new root, or a disk (then --confirm SERIAL; it is mounted on /mnt/restore-target).
    pub target: PathBuf,
    /// The backup's manifest: SHA256SUMS (GNU or BSD) or a restore-manifest.json.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Restore only paths matching this glob (repeatable); an exact path also releases a held
    /// persistence point (authorized_keys, cron, systemd units, ld.so.preload, shell rc files).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Never restore paths matching this glob (repeatable; beats --include).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// SHA-256 hashes to refuse (one per line; sha256sum output works).
    #[arg(long, value_name = "FILE")]
    pub blocklist: Option<PathBuf>,
    /// Restore setuid/setgid files and executables too.
    #[arg(long)]
    pub allow_executables: bool,
    /// Decide and report everything, write nothing: the target disk goes through the same interlock and
    /// --confirm check as a real run, stays write-blocked and is mounted read-only (ro,noload).
    #[arg(long)]
    pub dry_run: bool,
    /// When SOURCE is a whole-disk image or disk: restore from partition N of its GPT/MBR [default:
    /// the only partition holding a Linux filesystem].
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// The restore manifest as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// When TARGET is a disk: its serial (or last 6 characters).
    #[arg(long, value_name = "SERIAL")]
    pub confirm: Option<String>,
    /// Why the target interlock may be overridden; logged.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Where restore-manifest.json goes [default: the case directory, else TARGET].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}
