//! `rescue report verify DIR`: every hash of the evidence index (read as `sha256sum -c` reads it, from
//! DIR), every detached signature over the report's own files (under the OpenPGP policy of
//! [`crate::reinstall::signature`]) and the case log snapshot's chain. Each check names its file; the
//! verdict says which failed. Never prints.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{INDEX_NAME, LOG_SNAPSHOT, ReportError, SIG_SUFFIX, SIGNER_KEY, index};
use crate::reinstall::signature::{self, TrustedKey};

/// One check on one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub file: String,
    pub ok: bool,
    /// What was found, in words.
    pub what: String,
}

/// The verdict on a report directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
    /// Whether the report carries signatures at all.
    pub signed: bool,
    /// Where the keys came from: the `--keyring` files, or the key shipped in the report.
    pub keys_from: String,
    /// Fingerprints of the keys signatures were checked against.
    pub key_fingerprints: Vec<String>,
    /// The case log snapshot's final chain hash.
    pub final_hash: Option<String>,
}

impl Verdict {
    /// The checks that failed.
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }
}

fn fail(file: &str, what: String) -> Check {
    Check {
        file: file.to_owned(),
        ok: false,
        what,
    }
}

fn pass(file: &str, what: String) -> Check {
    Check {
        file: file.to_owned(),
        ok: true,
        what,
    }
}

/// Checks a report directory. `keyrings` empty: the signatures are checked against the key shipped in
/// the report (`signer.asc`), which proves integrity but not who signed until its fingerprint is
/// compared with the examiner's.
pub fn verify_dir(
    dir: &Path,
    keyrings: &[PathBuf],
    now: DateTime<Utc>,
) -> Result<Verdict, ReportError> {
    let index_path = dir.join(INDEX_NAME);
    let text = fs::read_to_string(&index_path).map_err(|source| ReportError::ReadCase {
        path: index_path.clone(),
        source,
    })?;
    let mut checks = Vec::new();
    let lines = match index::parse(&text) {
        Ok(l) => l,
        Err(e) => {
            checks.push(fail(INDEX_NAME, format!("not a sha256sum list: {e}")));
            Vec::new()
        }
    };
    // The report's own files: those the index names inside DIR.
    let mut own: Vec<String> = Vec::new();
    for (name, want) in &lines {
        let path = dir.join(name);
        if !name.contains('/') {
            own.push(name.clone());
        }
        match index::hash_file(&path, &mut |_| {}) {
            Ok((got, _)) if got == *want => checks.push(pass(name, "sha256 matches".into())),
            Ok((got, _)) => checks.push(fail(
                name,
                format!("CHANGED: sha256 {got}, the index says {want}"),
            )),
            Err(e) => checks.push(fail(
                name,
                format!("MISSING or unreadable: {}", crate::error_chain(&e)),
            )),
        }
    }
    own.push(INDEX_NAME.into());
    // The snapshot's chain and the hash the report states.
    let mut final_hash = None;
    if let Ok(bytes) = fs::read(dir.join(LOG_SNAPSHOT)) {
        match crate::caselog::verify(&bytes) {
            Ok(entries) => {
                final_hash = String::from_utf8_lossy(&bytes)
                    .lines()
                    .last()
                    .and_then(super::last_hash);
                checks.push(pass(
                    LOG_SNAPSHOT,
                    format!("{} entries, chain intact", entries.len()),
                ));
            }
            Err(e) => checks.push(fail(LOG_SNAPSHOT, format!("chain BROKEN at {e}"))),
        }
        // A report inside its case directory: the live log there must still begin with the snapshot.
        if let Some(live) = dir.parent().map(|p| p.join(LOG_SNAPSHOT))
            && let Ok(live_bytes) = fs::read(&live)
        {
            if live_bytes.starts_with(&bytes) {
                checks.push(pass(
                    "../case-log.jsonl",
                    "the live case log continues the snapshot".into(),
                ));
            } else {
                checks.push(fail(
                    "../case-log.jsonl",
                    "the live case log does not begin with the snapshot: it was changed after the report"
                        .into(),
                ));
            }
        }
        let stated = fs::read(dir.join("report.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|r| super::text(r.get("case_log")?, "final_hash"));
        if let (Some(stated), Some(got)) = (&stated, &final_hash)
            && stated != got
        {
            checks.push(fail(
                "report.json",
                format!("states the case log's final hash {stated}, the snapshot ends in {got}"),
            ));
        }
    }
    // Signatures: when any exists, every one of the report's own files must carry one.
    let signed = own
        .iter()
        .any(|n| dir.join(format!("{n}{SIG_SUFFIX}")).exists());
    let mut keys_from = String::new();
    let mut key_fingerprints = Vec::new();
    if signed {
        let keys: Result<Vec<TrustedKey>, String> = if keyrings.is_empty() {
            keys_from = format!(
                "{SIGNER_KEY} shipped in the report (compare its fingerprint with the examiner's)"
            );
            signature::load_keys(&dir.join(SIGNER_KEY)).map_err(|e| crate::error_chain(&e))
        } else {
            keys_from = keyrings
                .iter()
                .map(|k| k.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            signature::trusted_keys(keyrings).map_err(|e| crate::error_chain(&e))
        };
        match keys {
            Err(e) => checks.push(fail(
                SIGNER_KEY,
                format!("no key to check the signatures: {e}"),
            )),
            Ok(keys) => {
                key_fingerprints = keys.iter().map(|k| k.fingerprint.clone()).collect();
                for name in &own {
                    let sig_name = format!("{name}{SIG_SUFFIX}");
                    let (Ok(data), Ok(sig)) =
                        (fs::read(dir.join(name)), fs::read(dir.join(&sig_name)))
                    else {
                        checks.push(fail(
                            &sig_name,
                            format!("MISSING: {name} or its signature cannot be read"),
                        ));
                        continue;
                    };
                    match signature::verify_detached(&data, &sig, &keys, now) {
                        Ok(s) => checks.push(pass(
                            &sig_name,
                            format!(
                                "good signature over {name} by {} ({})",
                                s.fingerprint, s.uid
                            ),
                        )),
                        Err(e) => checks.push(fail(
                            &sig_name,
                            format!(
                                "signature over {name} does not verify: {}",
                                crate::error_chain(&e)
                            ),
                        )),
                    }
                }
            }
        }
    }
    Ok(Verdict {
        checks,
        signed,
        keys_from,
        key_fingerprints,
        final_hash,
    })
}
