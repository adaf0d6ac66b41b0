//! `triage SOURCE`.

use std::path::PathBuf;

use clap::Args;

/// `triage`.
#[derive(Debug, Clone, Args)]
pub struct TriageArgs {
    /// A disk or partition (write-blocked first), a raw image file, a raw acquisition directory, or a
    /// directory holding a mounted root.
    pub source: PathBuf,
    /// Where findings.json goes (its hash into DIR/SHA256SUMS) [default in the rescue system: the case
    /// directory on the evidence destination; elsewhere: nothing is written].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the findings as one JSON object (findings.json) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Start of the attack window (UTC "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" or RFC 3339): marks every
    /// finding changed since then and reports files of system paths changed since then.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// A mirror or a medium with the distribution's signed metadata and packages to check the
    /// installed packages against (apt: InRelease and .debs; rpm: repodata/repomd.xml.asc and .rpms).
    #[arg(long, value_name = "MEDIA")]
    pub packages_from: Option<PathBuf>,
    /// OpenPGP keyring trusted for the metadata on --packages-from (repeatable) [default: the keys
    /// embedded in the rescue system].
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
}
