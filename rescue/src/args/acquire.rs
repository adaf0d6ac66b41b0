//! `acquire` and `verify`: the acquisition's options and the object-store options they share.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::acquire::hash::{HashAlgorithm, parse_hash_list};
use crate::acquire::manifest::CaseInfo;
use crate::acquire::parse_size;

/// Image container on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Plain bytes, `image.raw`.
    Raw,
    /// zstd seekable format, `image.raw.zst`.
    Zstd,
}

/// A parsed `--hash` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashList(pub Vec<HashAlgorithm>);

fn parse_hashes(s: &str) -> Result<HashList, String> {
    parse_hash_list(s).map(HashList).map_err(|e| e.to_string())
}

/// `rescue acquire`.
#[derive(Debug, Clone, Args)]
pub struct AcquireArgs {
    /// Block device or regular file to image (opened read-only; block devices are write-blocked first).
    pub source: PathBuf,
    /// Destination directory (created if missing; must not be on the source disk), or
    /// s3://BUCKET[/PREFIX] with --endpoint (default prefix <case>/<host serial>/<evidence-id>/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Image format [default: raw].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Split the image into numbered files of this size (FAT32 files must stay under 4 GiB: use e.g. 4000M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split: Option<u64>,
    /// Hashes of the acquired stream, comma-separated: sha256, md5, sha1, sha512, blake3 [default: sha256].
    #[arg(long, value_name = "LIST", value_parser = parse_hashes)]
    pub hash: Option<HashList>,
    /// Size of the per-window SHA-256 hashes in the manifest; none unless given, e.g. 1G. At least 4K,
    /// and large enough that a source has at most 65536 windows (they are kept in memory).
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
    /// True time minus this machine's clock, in seconds (recorded in the manifest; inside the rescue
    /// system the open case supplies it).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub clock_offset: Option<i64>,
    /// Extra reads of a failing sector before it is zero-filled [default: 2].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Re-read the source afterwards and compare its hashes.
    #[arg(long)]
    pub verify_source: bool,
    /// Continue an interrupted acquisition in DIR.
    #[arg(long)]
    pub resume: bool,
    /// JSON lines: progress, then the result.
    #[arg(long)]
    pub json: bool,
    /// Read size (multiple of the sector size).
    #[arg(long, hide = true, value_parser = parse_size)]
    pub block_size: Option<u64>,
    /// zstd frame size (default 64 KiB, at most the read size): a reader of the image decodes one
    /// frame for any read inside it.
    #[arg(long, hide = true, value_parser = parse_size)]
    pub frame_size: Option<u64>,
    /// zstd compression level.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub zstd_level: Option<i32>,
    /// Checkpoint at least every SIZE bytes.
    #[arg(long, hide = true, value_parser = parse_size)]
    pub checkpoint_every: Option<u64>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `rescue verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Acquisition directory (holding manifest.json), or s3://BUCKET/PREFIX/ with --endpoint.
    pub dir: PathBuf,
    /// JSON lines: progress, then the report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

impl AcquireArgs {
    /// The case fields of the manifest, as given on the command line (the same for local and S3).
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

/// Object-store options shared by `acquire --out s3://…` and `verify s3://…`.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteArgs {
    /// S3 endpoint URL for s3:// destinations, e.g. https://s3.example.org or http://10.0.2.100:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// S3 region used in signatures [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// File with aws_access_key_id / aws_secret_access_key (else the AWS_* environment variables).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// PEM file of CA certificates trusted for the endpoint (else the system bundle).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not check the endpoint's TLS certificate (recorded in the manifest and log).
    #[arg(long)]
    pub insecure: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: AcquireArgs,
    }

    #[test]
    fn hash_list_and_sizes_parse_on_the_command_line() {
        let t = T::try_parse_from([
            "t",
            "/dev/x",
            "--out",
            "d",
            "--hash",
            "sha256,md5",
            "--split",
            "2G",
        ])
        .unwrap();
        assert_eq!(
            t.a.hash,
            Some(HashList(vec![HashAlgorithm::Sha256, HashAlgorithm::Md5]))
        );
        assert_eq!(t.a.split, Some(2 << 30));
        let err = T::try_parse_from(["t", "/dev/x", "--out", "d", "--hash", "sha3"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown hash algorithm"), "{err}");
    }
}
