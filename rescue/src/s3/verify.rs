//! `verify s3://…`: downloads `manifest.json`, re-downloads the image part by part with `Range`
//! requests, checks every part's SHA-256 against the manifest, recomputes the stream hashes, and checks
//! every other object against `SHA256SUMS`. A mismatch is a report with `ok == false`, not an error.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::client::{S3Error, Store};
use super::upload::{MIN_PART, S3Url};
use crate::acquire::hash::{HashAlgorithm, hex, sha256_hex};
use crate::acquire::manifest::{MANIFEST_FILE, Manifest, ManifestError, SUMS_FILE, parse_sums};
use crate::acquire::verify::Check;
use crate::acquire::{Phase, Progress};

/// Errors that prevent verification.
#[derive(Debug, thiserror::Error)]
pub enum RemoteVerifyError {
    #[error(transparent)]
    Store(#[from] S3Error),
    #[error("{url} holds no manifest.json (give the full prefix, as printed by acquire)")]
    MissingManifest { url: String },
    #[error("the manifest at {url} is invalid")]
    ParseManifest {
        url: String,
        #[source]
        source: ManifestError,
    },
    #[error("the acquisition at {url} is incomplete; finish it with `rescue acquire --resume`")]
    RejectIncomplete { url: String },
    #[error("verification was interrupted")]
    Interrupted,
}

/// Outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct RemoteVerifyReport {
    pub url: String,
    pub ok: bool,
    pub bytes: u64,
    pub parts: usize,
    pub checks: Vec<Check>,
    /// The first part whose bytes differ from the manifest's SHA-256.
    pub first_bad_part: Option<u32>,
}

impl RemoteVerifyReport {
    fn check(&mut self, what: impl Into<String>, expected: &str, actual: &str) -> bool {
        let ok = expected == actual;
        self.ok &= ok;
        self.checks.push(Check {
            what: what.into(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
            ok,
        });
        ok
    }
}

/// Verifies the acquisition at `url`.
pub fn verify(
    store: &Store,
    url: &S3Url,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RemoteVerifyReport, RemoteVerifyError> {
    let mut client = store.client();
    let manifest_key = url.key(MANIFEST_FILE);
    let Some(_) = client.head_object(&manifest_key)? else {
        return Err(RemoteVerifyError::MissingManifest {
            url: url.to_string(),
        });
    };
    let bytes = client.get_object(&manifest_key, None)?;
    let manifest = Manifest::parse(&bytes).map_err(|source| RemoteVerifyError::ParseManifest {
        url: url.to_string(),
        source,
    })?;
    if !manifest.complete {
        return Err(RemoteVerifyError::RejectIncomplete {
            url: url.to_string(),
        });
    }
    let mut report = RemoteVerifyReport {
        url: url.to_string(),
        ok: true,
        bytes: 0,
        parts: 0,
        checks: Vec::new(),
        first_bad_part: None,
    };
    let size = manifest.source.size_bytes;
    let image_key = url.key("image.raw");
    let stored = client.head_object(&image_key)?;
    report.check(
        "image.raw size",
        &size.to_string(),
        &stored.map_or_else(|| "missing".to_owned(), |s| s.to_string()),
    );
    // Parts as recorded; a manifest without them is read in 8 MiB ranges.
    let parts: Vec<(u32, u64, u64, Option<String>)> = match manifest.remote.as_ref() {
        Some(r) if !r.parts.is_empty() => r
            .parts
            .iter()
            .map(|p| (p.number, p.offset, p.size_bytes, Some(p.sha256.clone())))
            .collect(),
        _ => (0..size.div_ceil(MIN_PART))
            .map(|i| {
                let o = i * MIN_PART;
                (i as u32 + 1, o, MIN_PART.min(size - o), None)
            })
            .collect(),
    };
    let mut hashers: Vec<(String, crate::acquire::hash::StreamHasher)> = manifest
        .hashes
        .keys()
        .filter_map(|name| {
            crate::acquire::hash::parse_hash_list(name)
                .ok()
                .and_then(|v| v.first().copied())
                .map(|a: HashAlgorithm| (name.clone(), a.hasher()))
        })
        .collect();
    if stored == Some(size) {
        for (number, offset, len, expected) in &parts {
            if cancel.load(Ordering::Relaxed) {
                return Err(RemoteVerifyError::Interrupted);
            }
            let data = if *len == 0 {
                Vec::new()
            } else {
                client.get_object(&image_key, Some((*offset, offset + len - 1)))?
            };
            let actual = hex(&Sha256::digest(&data));
            if let Some(e) = expected
                && !report.check(format!("part {number} sha256"), e, &actual)
            {
                report.first_bad_part.get_or_insert(*number);
            }
            for (_, h) in hashers.iter_mut() {
                h.update(&data);
            }
            report.bytes += *len;
            report.parts += 1;
            progress(&Progress {
                phase: Phase::Verify,
                done_bytes: offset + len,
                total_bytes: size,
                durable_bytes: size,
                unreadable_bytes: 0,
            });
        }
        for (name, h) in hashers {
            let expected = manifest.hashes.get(&name).cloned().unwrap_or_default();
            report.check(format!("{name} of the image"), &expected, &h.finish_hex());
        }
    }
    // Every other object against SHA256SUMS, and SHA256SUMS against the manifest.
    match client.head_object(&url.key(SUMS_FILE))? {
        None => {
            report.check(SUMS_FILE, "present", "missing");
        }
        Some(_) => {
            let sums = client.get_object(&url.key(SUMS_FILE), None)?;
            match parse_sums(&String::from_utf8_lossy(&sums)) {
                Ok(entries) => {
                    for (file, digest) in entries {
                        if file == "image.raw" {
                            let m = manifest.hashes.get("sha256").cloned().unwrap_or_default();
                            report.check("image.raw in SHA256SUMS", &digest, &m);
                            continue;
                        }
                        let actual = match client.head_object(&url.key(&file))? {
                            Some(_) => sha256_hex(&client.get_object(&url.key(&file), None)?),
                            None => "missing".to_owned(),
                        };
                        report.check(format!("{file} sha256"), &digest, &actual);
                    }
                }
                Err(e) => {
                    report.check(SUMS_FILE, "well-formed", &e.to_string());
                }
            }
        }
    }
    Ok(report)
}
