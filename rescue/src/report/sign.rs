//! Signing the report with the examiner's OpenPGP secret key: loading it (armoured or binary), unlocking
//! it with a passphrase the UI asked for, choosing the key that signs (the primary key when its flags
//! allow signing, else the newest usable signing subkey, by the rules of [`crate::reinstall::keypolicy`])
//! and making armoured detached signatures that GnuPG's `gpgv` verifies. The key lives in memory only:
//! nothing here writes it anywhere. Never prints.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};

use crate::reinstall::keypolicy;

/// Errors loading or using the signing key.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading the signing key {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds no OpenPGP secret key{reason} (export one with `gpg --export-secret-keys KEYID`)"
    )]
    ParseKey { path: PathBuf, reason: String },
    #[error("{path} holds {count} secret keys: give a file with exactly one")]
    SeveralKeys { path: PathBuf, count: usize },
    #[error("the passphrase does not unlock key {fingerprint}")]
    WrongPassphrase { fingerprint: String },
    #[error(
        "key {fingerprint} ({uid}) cannot sign now: {reason}, and it has no usable signing subkey"
    )]
    NoSigningKey {
        fingerprint: String,
        uid: String,
        reason: String,
    },
    #[error("signing {what} with key {fingerprint}: {reason}")]
    Sign {
        what: String,
        fingerprint: String,
        reason: String,
    },
}

/// The examiner's key, parsed; unlocked on use with the passphrase it was loaded with.
pub struct SigningKey {
    key: SignedSecretKey,
    password: Password,
    /// Which key signs: `None` the primary key, `Some(i)` secret subkey `i`.
    signer: Option<usize>,
    /// Primary key fingerprint, uppercase hex.
    pub fingerprint: String,
    /// The signing subkey's fingerprint when a subkey signs.
    pub signing_subkey: Option<String>,
    pub uid: String,
    /// Public key algorithm of the key that signs, as OpenPGP names it.
    pub algorithm: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Reads the key file; the bytes stay in memory.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, SignError> {
    std::fs::read(path).map_err(|source| SignError::ReadKey {
        path: path.to_owned(),
        source,
    })
}

fn parse(bytes: &[u8], path: &Path) -> Result<SignedSecretKey, SignError> {
    let bad = |e: pgp::errors::Error| SignError::ParseKey {
        path: path.to_owned(),
        reason: format!(" ({e})"),
    };
    let head = &bytes[..bytes.len().min(4096)];
    let keys: Vec<SignedSecretKey> = if head.windows(10).any(|w| w == b"-----BEGIN") {
        let (iter, _) = SignedSecretKey::from_armor_many(bytes).map_err(bad)?;
        iter.collect::<Result<_, _>>().map_err(bad)?
    } else {
        SignedSecretKey::from_bytes_many(bytes)
            .map_err(bad)?
            .collect::<Result<_, _>>()
            .map_err(bad)?
    };
    let count = keys.len();
    let mut keys = keys.into_iter();
    match (keys.next(), count) {
        (Some(key), 1) => Ok(key),
        (None, _) => Err(SignError::ParseKey {
            path: path.to_owned(),
            reason: String::new(),
        }),
        (Some(_), count) => Err(SignError::SeveralKeys {
            path: path.to_owned(),
            count,
        }),
    }
}

/// Whether the key (or any of its subkeys) is protected by a passphrase: the UI asks only then.
pub fn needs_passphrase(bytes: &[u8], path: &Path) -> Result<bool, SignError> {
    let key = parse(bytes, path)?;
    Ok(key.primary_key.secret_params().is_encrypted()
        || key
            .secret_subkeys
            .iter()
            .any(|s| s.key.secret_params().is_encrypted()))
}

impl SigningKey {
    /// Parses the key, chooses the key that signs (valid now) and checks that `passphrase` unlocks it.
    pub fn load(
        bytes: &[u8],
        path: &Path,
        passphrase: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, SignError> {
        let key = parse(bytes, path)?;
        let public = key.signed_public_key();
        let fingerprint = format!("{:X}", key.primary_key.fingerprint());
        let uid = public
            .details
            .users
            .first()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .unwrap_or_else(|| "no user id".into());
        let signer = match keypolicy::check_primary_signs(&public, now) {
            Ok(()) => None,
            Err(primary_refusal) => {
                let usable = key.secret_subkeys.iter().enumerate().rev().find(|(_, s)| {
                    public
                        .public_subkeys
                        .iter()
                        .find(|p| p.key.fingerprint() == s.key.fingerprint())
                        .is_some_and(|p| keypolicy::check_signing_subkey(&public, p, now).is_ok())
                });
                match usable {
                    Some((i, _)) => Some(i),
                    None => {
                        return Err(SignError::NoSigningKey {
                            fingerprint,
                            uid,
                            reason: primary_refusal.to_string(),
                        });
                    }
                }
            }
        };
        let password = Password::from(passphrase);
        let unlocked = match signer {
            None => key.primary_key.unlock(&password, |_, _| Ok(())),
            Some(i) => key.secret_subkeys[i].key.unlock(&password, |_, _| Ok(())),
        };
        if !matches!(unlocked, Ok(Ok(()))) {
            return Err(SignError::WrongPassphrase { fingerprint });
        }
        let (signing_subkey, algorithm) = match signer {
            None => (None, format!("{:?}", key.primary_key.algorithm())),
            Some(i) => {
                let s = &key.secret_subkeys[i].key;
                (
                    Some(format!("{:X}", s.fingerprint())),
                    format!("{:?}", s.algorithm()),
                )
            }
        };
        Ok(SigningKey {
            key,
            password,
            signer,
            fingerprint,
            signing_subkey,
            uid,
            algorithm,
        })
    }

    /// An armoured detached signature (SHA-256, binary document) over `data`; `what` names the file in
    /// an error.
    pub fn sign(&self, data: &[u8], what: &str) -> Result<Vec<u8>, SignError> {
        let err = |e: pgp::errors::Error| SignError::Sign {
            what: what.to_owned(),
            fingerprint: self.fingerprint.clone(),
            reason: e.to_string(),
        };
        let rng = rand::rngs::OsRng;
        let sig = match self.signer {
            None => DetachedSignature::sign_binary_data(
                rng,
                &self.key.primary_key,
                &self.password,
                HashAlgorithm::Sha256,
                data,
            ),
            Some(i) => DetachedSignature::sign_binary_data(
                rng,
                &self.key.secret_subkeys[i].key,
                &self.password,
                HashAlgorithm::Sha256,
                data,
            ),
        }
        .map_err(err)?;
        sig.to_armored_bytes(ArmorOptions::default()).map_err(err)
    }

    /// The public half (armoured), shipped in the report so a verifier can see which key signed.
    pub fn public_armoured(&self) -> Result<Vec<u8>, SignError> {
        self.key
            .signed_public_key()
            .to_armored_bytes(ArmorOptions::default())
            .map_err(|e| SignError::Sign {
                what: "the public key".into(),
                fingerprint: self.fingerprint.clone(),
                reason: e.to_string(),
            })
    }
}
