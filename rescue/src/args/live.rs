//! `live`: the live response's options (`--out`, memory format, case fields, the object-store options
//! `acquire` takes).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::acquire::{HashList, RemoteArgs};
use crate::acquire::hash::parse_hash_list;
use crate::acquire::manifest::CaseInfo;
use crate::acquire::parse_size;

/// The memory capture's container on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LiveFormat {
    /// The LiME file as Volatility and other LiME readers open it.
    Lime,
    /// The same stream in the zstd seekable format (`rescue mount` serves it as the LiME file).
    LimeZstd,
}

fn parse_hashes(s: &str) -> Result<HashList, String> {
    parse_hash_list(s).map(HashList).map_err(|e| e.to_string())
}

/// `rescue live`.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// New or empty directory on an evidence disk (not a disk of this system, not a RAM filesystem),
    /// or s3://BUCKET[/PREFIX] with --endpoint.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Collect the volatile state only, no memory capture.
    #[arg(long)]
    pub no_memory: bool,
    /// Memory capture format.
    #[arg(long, value_enum, default_value = "lime")]
    pub format: LiveFormat,
    /// Hashes of the memory stream, comma-separated: sha256, md5, sha1, sha512, blake3 [default: sha256].
    #[arg(long, value_name = "LIST", value_parser = parse_hashes)]
    pub hash: Option<HashList>,
    /// Size of per-window SHA-256 hashes of the memory stream; none unless given, e.g. 256M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub window: Option<u64>,
    /// Case identifier.
    #[arg(long = "case", value_name = "ID")]
    pub case_id: Option<String>,
    /// Evidence item identifier.
    #[arg(long, value_name = "ID")]
    pub evidence_id: Option<String>,
    /// Examiner name.
    #[arg(long, value_name = "NAME")]
    pub examiner: Option<String>,
    /// Free-text notes.
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
    /// True time minus this machine's clock, in seconds (recorded in the manifest).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub clock_offset: Option<i64>,
    /// Write to a disk of the running system or a RAM filesystem anyway (it overwrites deleted files,
    /// or displaces the memory being captured).
    #[arg(long)]
    pub allow_local_out: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

impl LiveArgs {
    /// The case fields of the manifests.
    pub fn case_info(&self) -> CaseInfo {
        CaseInfo {
            case_id: self.case_id.clone(),
            evidence_id: self.evidence_id.clone(),
            examiner: self.examiner.clone(),
            notes: self.notes.clone(),
            clock_offset_seconds: self.clock_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: LiveArgs,
    }

    #[test]
    fn live_takes_a_format_and_the_case_fields() {
        let t = T::try_parse_from([
            "t",
            "--out",
            "/mnt/e/live",
            "--format",
            "lime-zstd",
            "--case",
            "IR-1",
        ])
        .unwrap();
        assert_eq!(t.a.format, LiveFormat::LimeZstd);
        assert!(!t.a.no_memory);
        assert_eq!(t.a.case_info().case_id.as_deref(), Some("IR-1"));
        let t = T::try_parse_from(["t", "--out", "d", "--no-memory"]).unwrap();
        assert_eq!(t.a.format, LiveFormat::Lime);
        assert!(T::try_parse_from(["t", "--out", "d", "--format", "raw"]).is_err());
    }
}
