//! Verified reinstall: prove an installer or golden image authentic (checksum list + OpenPGP signature),
//! write it to a disk and read it back ([`deploy`]), or boot the installer's own kernel out of its ISO
//! ([`iso9660`], [`kexec`]). A file can also be proven through a distribution's signed archive
//! metadata ([`apt`]: InRelease → Packages → .deb, or InRelease → installer SHA256SUMS → image).
//! Never prints; progress goes through callbacks.

pub mod apt;
pub mod checksums;
pub mod cleartext;
pub mod deploy;
pub mod iso9660;
pub mod kexec;
pub mod keypolicy;
pub mod signature;

use std::path::{Path, PathBuf};

use checksums::{ChecksumError, Entry};
use signature::{SignatureError, Signer};

/// Errors of image verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checking the signature of {list}")]
    Signature {
        list: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error(
        "{list} is not signed: give its signature with --sig FILE (or --allow-unsigned to accept an unauthenticated list)"
    )]
    Unsigned { list: PathBuf },
    #[error(
        "{list} is cleartext-signed and carries its own signature; --sig {sig} would not be checked: drop --sig"
    )]
    SigWithCleartext { list: PathBuf, sig: PathBuf },
    #[error("reading the checksum list {list}")]
    Checksums {
        list: PathBuf,
        #[source]
        source: ChecksumError,
    },
    #[error(transparent)]
    HashImage(ChecksumError),
    #[error(transparent)]
    Apt(#[from] apt::AptError),
    #[error(
        "{image} does NOT match entry {entry} of the checksum list: {algorithm} is {actual}, the list says {expected}"
    )]
    Mismatch {
        image: PathBuf,
        entry: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
}

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    pub image: PathBuf,
    pub sums: PathBuf,
    pub sig: Option<PathBuf>,
    pub keyrings: Vec<PathBuf>,
    pub allow_unsigned: bool,
}

/// Exactly what was proven about an image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proof {
    pub image: PathBuf,
    pub size: u64,
    pub sums: PathBuf,
    /// `None` when the list was accepted unsigned (`--allow-unsigned`).
    pub signer: Option<Signer>,
    pub entry: Entry,
}

impl Proof {
    /// One sentence: "signed by <fingerprint> (<uid>), sha256 matches entry <name>".
    pub fn statement(&self) -> String {
        let matched = format!(
            "{} matches entry {}",
            self.entry.algorithm.name(),
            self.entry.name
        );
        match &self.signer {
            Some(s) => format!("signed by {} ({}), {matched}", s.fingerprint, s.uid),
            None => format!("UNSIGNED list {}, {matched}", self.sums.display()),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, VerifyError> {
    std::fs::read(path).map_err(|source| VerifyError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Authenticates the checksum list, then hashes the image and compares it with its entry.
pub fn verify_image(
    req: &VerifyRequest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Proof, VerifyError> {
    let open = || {
        let read_err = |source| VerifyError::ReadFile {
            path: req.image.clone(),
            source,
        };
        let file = std::fs::File::open(&req.image).map_err(read_err)?;
        let total = file.metadata().map_err(read_err)?.len();
        Ok((file, total))
    };
    verify_with(req, open, progress)
}

/// [`verify_image`] over an image the caller already holds open (`total` bytes): deploy verifies and
/// writes from one descriptor.
pub fn verify_read(
    req: &VerifyRequest,
    image: impl std::io::Read,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Proof, VerifyError> {
    verify_with(req, || Ok((image, total)), progress)
}

fn verify_with<R: std::io::Read>(
    req: &VerifyRequest,
    open: impl FnOnce() -> Result<(R, u64), VerifyError>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Proof, VerifyError> {
    let now = chrono::Utc::now();
    let list = read(&req.sums)?;
    let sig_err = |source| VerifyError::Signature {
        list: req.sums.clone(),
        source,
    };
    let cleartext = signature::is_cleartext_signed(&list);
    if let (true, Some(sig)) = (cleartext, &req.sig) {
        return Err(VerifyError::SigWithCleartext {
            list: req.sums.clone(),
            sig: sig.clone(),
        });
    }
    let (signer, text) = if cleartext {
        let keys = signature::trusted_keys(&req.keyrings).map_err(sig_err)?;
        let (s, t) = signature::verify_cleartext(&list, &keys, now).map_err(sig_err)?;
        (Some(s), t)
    } else if let Some(sig) = &req.sig {
        let keys = signature::trusted_keys(&req.keyrings).map_err(sig_err)?;
        let s = signature::verify_detached(&list, &read(sig)?, &keys, now).map_err(sig_err)?;
        (Some(s), String::from_utf8_lossy(&list).into_owned())
    } else if req.allow_unsigned {
        (None, String::from_utf8_lossy(&list).into_owned())
    } else {
        return Err(VerifyError::Unsigned {
            list: req.sums.clone(),
        });
    };
    let list_err = |source| VerifyError::Checksums {
        list: req.sums.clone(),
        source,
    };
    let entries = checksums::parse(&text).map_err(list_err)?;
    let entry = checksums::find(&entries, &req.image.to_string_lossy())
        .map_err(list_err)?
        .clone();
    let (image, total) = open()?;
    let (actual, size) =
        checksums::hash_reader(image, entry.algorithm, &mut |n| progress(n, total)).map_err(
            |source| {
                VerifyError::HashImage(ChecksumError::ReadImage {
                    path: req.image.display().to_string(),
                    source,
                })
            },
        )?;
    if actual != entry.digest {
        return Err(VerifyError::Mismatch {
            image: req.image.clone(),
            entry: entry.name.clone(),
            algorithm: entry.algorithm.name(),
            expected: entry.digest.clone(),
            actual,
        });
    }
    Ok(Proof {
        image: req.image.clone(),
        size,
        sums: req.sums.clone(),
        signer,
        entry,
    })
}

/// A trusted key as `reinstall keys` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub fingerprint: String,
    pub uid: String,
    pub created: String,
    pub expires: Option<String>,
    pub revoked: bool,
    /// Why neither the key nor any of its subkeys may make signatures today (`None`: one may).
    pub refused: Option<String>,
    pub source: PathBuf,
}

/// The keys embedded at build time (or in `--keyring` files).
pub fn list_keys(keyrings: &[PathBuf]) -> Result<Vec<KeyInfo>, SignatureError> {
    let keys = if keyrings.is_empty() {
        signature::embedded_keys()?
    } else {
        signature::trusted_keys(keyrings)?
    };
    use pgp::types::PublicKeyTrait;
    let now = chrono::Utc::now();
    Ok(keys
        .into_iter()
        .map(|t| KeyInfo {
            created: t.key.primary_key.created_at().to_rfc3339(),
            expires: keypolicy::primary_expiry(&t.key, now).map(|e| e.to_rfc3339()),
            revoked: keypolicy::is_revoked(&t.key, now),
            refused: keypolicy::why_unusable(&t.key, now),
            fingerprint: t.fingerprint,
            uid: t.uid,
            source: t.source,
        })
        .collect())
}

/// What to prove through a distribution's signed archive metadata.
#[derive(Debug, Clone, Default)]
pub struct AptRequest {
    pub file: PathBuf,
    /// `InRelease`, or `Release` with `release_sig`.
    pub release: PathBuf,
    pub release_sig: Option<PathBuf>,
    pub packages: Option<PathBuf>,
    /// The installer's `SHA256SUMS` (listed in the Release).
    pub sums: Option<PathBuf>,
    pub keyrings: Vec<PathBuf>,
}

/// Proves `req.file` through the signed Release ([`apt::prove_file`]), under the trusted keys.
pub fn verify_apt(
    req: &AptRequest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<apt::AptProof, VerifyError> {
    let keys = signature::trusted_keys(&req.keyrings).map_err(|source| VerifyError::Signature {
        list: req.release.clone(),
        source,
    })?;
    let release = apt::SignedRelease::load(
        &req.release,
        req.release_sig.as_deref(),
        &keys,
        chrono::Utc::now(),
    )?;
    let total = std::fs::metadata(&req.file)
        .map_err(|source| VerifyError::ReadFile {
            path: req.file.clone(),
            source,
        })?
        .len();
    Ok(apt::prove_file(
        &req.file,
        release,
        req.packages.as_deref(),
        req.sums.as_deref(),
        &mut |n| progress(n, total),
    )?)
}
