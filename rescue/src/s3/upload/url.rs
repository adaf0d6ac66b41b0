//! `s3://BUCKET/PREFIX` URLs, the default prefix, and how large parts and objects get.

use super::{MAX_PARTS, MIN_PART};
use crate::acquire::manifest::CaseInfo;

/// `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || prefix.starts_with('/') || prefix.contains("//") {
            return None;
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Some(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// This URL, or with the default prefix `<case>/<host serial>/<evidence-id>/` when it has none.
    pub fn with_default_prefix(
        &self,
        case: &CaseInfo,
        host_serial: Option<&str>,
        source: &str,
    ) -> Self {
        if !self.prefix.is_empty() {
            return self.clone();
        }
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
                .trim_matches('.')
                .to_owned()
        };
        let pick = |v: Option<&str>, dflt: &str| {
            let c = v.map(clean).unwrap_or_default();
            if c.is_empty() { dflt.to_owned() } else { c }
        };
        let source_name = std::path::Path::new(source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        Self {
            bucket: self.bucket.clone(),
            prefix: format!(
                "{}/{}/{}/",
                pick(case.case_id.as_deref(), "no-case"),
                pick(host_serial, "unknown-host"),
                pick(
                    case.evidence_id.as_deref().or(source_name.as_deref()),
                    "evidence"
                )
            ),
        }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Part size for an object of at most `size` bytes: max(8 MiB, ⌈size/10000⌉), rounded up to whole
/// read blocks.
pub fn part_size(size: u64, block: u64) -> u64 {
    let p = MIN_PART.max(size.div_ceil(MAX_PARTS));
    p.div_ceil(block.max(1)) * block.max(1)
}

/// The most bytes one object of the layout can hold: the source size for raw; for zstd the source plus
/// the growth of incompressible frames (zstd's bound is n/256 plus a header) and the seek table (8
/// bytes a frame); `--split` caps either.
pub fn largest_object(size: u64, block: u64, zstd: bool, split: Option<u64>) -> u64 {
    let stream = if zstd {
        let frames = size.div_ceil(block.max(1));
        size + size / 128 + (frames + 1) * 64
    } else {
        size
    };
    split.map_or(stream, |s| s.min(stream))
}
