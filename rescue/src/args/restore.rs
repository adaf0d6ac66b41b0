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
    /// Restore only paths matching this glob (repeatable); an exact path also releases a held file
    /// (persistence point, account database, server-side script, medium/low/info finding) and, with
    /// --allow-executables, a setuid/setgid file or one with capabilities.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Never restore paths matching this glob (repeatable; beats --include).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// SHA-256 hashes to refuse (one per line; sha256sum output works).
    #[arg(long, value_name = "FILE")]
    pub blocklist: Option<PathBuf>,
    /// Restore executables too (setuid/setgid files and files with capabilities only when also listed
    /// exactly with --include).
    #[arg(long)]
    pub allow_executables: bool,
    /// A findings.json written by `rescue triage` (repeatable): every file a finding names is refused
    /// (critical, high) or held (medium, low, info), the finding as the reason.
    #[arg(long, value_name = "FILE")]
    pub findings: Vec<PathBuf>,
    /// The directory of the original system SOURCE's root holds, e.g. /etc for a tar of /etc: findings'
    /// paths and the policy's system paths are matched against it [default: /, also matching findings
    /// whose path ends with a file's path].
    #[arg(long, value_name = "DIR", alias = "findings-root")]
    pub source_root: Option<String>,
    /// Decide and report everything, write nothing: the target disk goes through the same interlock and
    /// --confirm check as a real run, stays write-blocked and is mounted read-only without journal or log replay.
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
