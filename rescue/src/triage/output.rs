//! Writing a triage's results into its output directory: `findings.json` (durably) and its line in the
//! directory's `SHA256SUMS` (other lines kept), so `sha256sum -c SHA256SUMS` checks it.

use std::path::{Path, PathBuf};

use super::{FINDINGS_FILE, Report, TriageError};
use crate::acquire::manifest;

/// The written files.
#[derive(Debug, Clone)]
pub struct Written {
    pub findings: PathBuf,
    pub sums: PathBuf,
    pub sha256: String,
}

/// Writes `findings.json` into `dir` (created if needed) and records its hash in `dir/SHA256SUMS`.
pub fn write(dir: &Path, report: &Report) -> Result<Written, TriageError> {
    let werr = |path: PathBuf| move |source| TriageError::WriteOutput { path, source };
    std::fs::create_dir_all(dir).map_err(werr(dir.to_owned()))?;
    let mut json = serde_json::to_vec_pretty(report).unwrap_or_default();
    json.push(b'\n');
    let me = |e: manifest::ManifestError| std::io::Error::other(crate::error_chain(&e));
    manifest::write_durable(dir, FINDINGS_FILE, &json)
        .map_err(me)
        .map_err(werr(dir.join(FINDINGS_FILE)))?;
    let sha256 = crate::acquire::hash::sha256_hex(&json);
    let sums_path = dir.join("SHA256SUMS");
    let mut entries = match std::fs::read_to_string(&sums_path) {
        Ok(text) => manifest::parse_sums(&text).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    entries.retain(|(name, _)| name != FINDINGS_FILE);
    entries.push((FINDINGS_FILE.to_owned(), sha256.clone()));
    entries.sort();
    manifest::write_durable(
        dir,
        "SHA256SUMS",
        manifest::render_sums(&entries).as_bytes(),
    )
    .map_err(me)
    .map_err(werr(sums_path.clone()))?;
    Ok(Written {
        findings: dir.join(FINDINGS_FILE),
        sums: sums_path,
        sha256,
    })
}
