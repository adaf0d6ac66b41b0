//! `timeline SOURCE --out DIR [--from TIME] [--to TIME] [--tz ZONE] [--findings FILE]`.

use std::path::PathBuf;

use clap::Args;

/// `timeline`.
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    /// A mounted root directory, a disk or partition (write-blocked first), a disk image file, or an
    /// acquisition directory.
    pub source: PathBuf,
    /// Where bodyfile.txt, timeline.jsonl, timeline.csv, unparsed.jsonl, timeline-summary.json and
    /// SHA256SUMS go (created; must not hold a timeline already).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep events at or after this time: YYYY-MM-DD, "YYYY-MM-DD HH:MM[:SS]" (UTC), RFC 3339, or @EPOCH.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Keep events at or before this time (a bare date means the end of that day).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Zone for log times written without one (UTC, +02:00, Europe/Berlin) [default: the examined
    /// system's /etc/timezone or /etc/localtime; unknown is stated in every such event].
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// A triage findings.json (rescue.triage/1) whose findings become events [default: findings.json
    /// in DIR or DIR's parent, else the one in a triage-* directory beside DIR (the only one, or the
    /// one named after SOURCE)].
    #[arg(long, value_name = "FILE")]
    pub findings: Option<PathBuf>,
}
