//! `report` and `report verify DIR`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// A format of the incident report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// `report.md`
    Md,
    /// `report.json` (schema `rescue.report/1`)
    Json,
    /// `report.html` (self-contained, prints well)
    Html,
}

/// `report`: build (and sign) the incident report of the case.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub verify: Option<ReportCommand>,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// How to build the report.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Where the report goes (default: `report/` in the case directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The case directory on the evidence disk (holding case-log.jsonl). Inside the rescue system the
    /// open case supplies it; on a host it is required.
    #[arg(long, value_name = "DIR")]
    pub case_dir: Option<PathBuf>,
    /// The examiner's OpenPGP secret key (armoured or binary): signs the report, the case log and the
    /// evidence index with detached signatures. Read into memory only, never written anywhere.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// The key's passphrase in a file (first line) instead of asking on the console.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub passphrase_file: Option<PathBuf>,
    /// A disk, partition or CD holding the key: mounted read-only; a relative --sign-key (and
    /// --passphrase-file) is looked up inside it.
    #[arg(long, value_name = "DEVICE", requires = "sign_key")]
    pub media: Option<PathBuf>,
    /// Formats to write, comma-separated (Markdown and JSON by default).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["md", "json"])]
    pub format: Vec<ReportFormat>,
}

/// What `report` does besides building.
#[derive(Debug, Clone, Subcommand)]
pub enum ReportCommand {
    /// Check every signature of a report directory and every hash of its evidence index.
    Verify {
        /// The report directory (holding report.json and evidence.sha256).
        dir: PathBuf,
        /// The examiner's public key (armoured or binary); repeatable. Default: the key shipped in the
        /// report (signer.asc), whose fingerprint must then be compared with the examiner's.
        #[arg(long, value_name = "FILE")]
        keyring: Vec<PathBuf>,
    },
}
