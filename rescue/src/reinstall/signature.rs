//! OpenPGP verification of checksum lists, in pure Rust (`pgp` crate): detached signatures (armoured,
//! as Debian's `SHA256SUMS.sign`, or binary, as Ubuntu's `SHA256SUMS.gpg`) and cleartext-signed lists
//! (as Alma's `CHECKSUM`). Keys come from `--keyring` files or from the keys embedded at build time
//! (`/etc/rescue/trusted-keys/`). SHA-1 (and weaker) signatures, unknown keys, expired and revoked keys
//! are refused. Never prints.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pgp::composed::{
    CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicKeyTrait};

/// Where `cargo xtask build --trust-key` puts the embedded keys inside the initramfs.
pub const EMBEDDED_KEYS_DIR: &str = "/etc/rescue/trusted-keys";

/// The embedded-keys directory (`RESCUE_TRUSTED_KEYS` overrides it, for tests on a host).
pub fn embedded_keys_dir() -> PathBuf {
    std::env::var_os("RESCUE_TRUSTED_KEYS")
        .map_or_else(|| PathBuf::from(EMBEDDED_KEYS_DIR), PathBuf::from)
}

/// Errors of signature verification.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no OpenPGP public key: {reason}")]
    ParseKeyring { path: PathBuf, reason: String },
    #[error("no trusted keys: pass --keyring FILE or build the image with --trust-key FILE")]
    NoTrustedKeys,
    #[error("the signature file holds no OpenPGP signature: {0}")]
    ParseSignature(String),
    #[error("the cleartext-signed list cannot be read: {0}")]
    ParseCleartext(String),
    #[error(
        "the signature uses {hash}, which is too weak to prove anything (SHA-256 or stronger is required)"
    )]
    RejectWeakHash { hash: String },
    #[error(
        "the signature was made by key {issuer}, which is not among the trusted keys ({trusted})"
    )]
    UnknownKey { issuer: String, trusted: String },
    #[error("key {fingerprint} ({uid}) expired on {expired}")]
    KeyExpired {
        fingerprint: String,
        uid: String,
        expired: String,
    },
    #[error("key {fingerprint} ({uid}) has been revoked")]
    KeyRevoked { fingerprint: String, uid: String },
    #[error("key {fingerprint} ({uid}) has invalid self-signatures: {reason}")]
    BadKey {
        fingerprint: String,
        uid: String,
        reason: String,
    },
    #[error("the signature expired on {0}")]
    SignatureExpired(String),
    #[error(
        "BAD signature by {fingerprint} ({uid}): the signed file was changed or is not the one that was signed"
    )]
    BadSignature { fingerprint: String, uid: String },
    #[error("{0} is not a data signature")]
    NotDataSignature(String),
}

/// A key we trust, and where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: SignedPublicKey,
    /// Uppercase hex fingerprint of the primary key.
    pub fingerprint: String,
    /// The first user id.
    pub uid: String,
    pub source: PathBuf,
}

/// Who signed, as proven.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// Primary key fingerprint.
    pub fingerprint: String,
    /// The (sub)key that made the signature, when it is not the primary key.
    pub signing_subkey: Option<String>,
    pub uid: String,
    pub hash: String,
    pub created: Option<String>,
}

fn fpr_hex(fp: &pgp::types::Fingerprint) -> String {
    format!("{fp:X}")
}

fn is_armoured(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    head.windows(10).any(|w| w == b"-----BEGIN")
}

/// Parses public keys from armoured or binary key material.
pub fn parse_keys(bytes: &[u8], source: &Path) -> Result<Vec<TrustedKey>, SignatureError> {
    let bad = |reason: String| SignatureError::ParseKeyring {
        path: source.to_owned(),
        reason,
    };
    let keys: Vec<SignedPublicKey> = if is_armoured(bytes) {
        let (iter, _) = SignedPublicKey::from_armor_many(bytes).map_err(|e| bad(e.to_string()))?;
        iter.filter_map(Result::ok).collect()
    } else {
        SignedPublicKey::from_bytes_many(bytes)
            .map_err(|e| bad(e.to_string()))?
            .filter_map(Result::ok)
            .collect()
    };
    if keys.is_empty() {
        return Err(bad("no key could be parsed".into()));
    }
    Ok(keys
        .into_iter()
        .map(|key| {
            let uid = key
                .details
                .users
                .first()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                .unwrap_or_else(|| "no user id".into());
            TrustedKey {
                fingerprint: fpr_hex(&key.primary_key.fingerprint()),
                uid,
                key,
                source: source.to_owned(),
            }
        })
        .collect())
}

/// Loads a keyring file.
pub fn load_keys(path: &Path) -> Result<Vec<TrustedKey>, SignatureError> {
    let bytes = std::fs::read(path).map_err(|source| SignatureError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_keys(&bytes, path)
}

/// The keys embedded at build time (none if the directory does not exist).
pub fn embedded_keys() -> Result<Vec<TrustedKey>, SignatureError> {
    let dir = embedded_keys_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths.iter().filter(|p| p.is_file()) {
        out.extend(load_keys(p)?);
    }
    Ok(out)
}

/// `--keyring` files if any were given, else the embedded keys.
pub fn trusted_keys(keyrings: &[PathBuf]) -> Result<Vec<TrustedKey>, SignatureError> {
    let keys = if keyrings.is_empty() {
        embedded_keys()?
    } else {
        let mut v = Vec::new();
        for k in keyrings {
            v.extend(load_keys(k)?);
        }
        v
    };
    if keys.is_empty() {
        return Err(SignatureError::NoTrustedKeys);
    }
    Ok(keys)
}

fn weak(hash: HashAlgorithm) -> bool {
    matches!(
        hash,
        HashAlgorithm::None
            | HashAlgorithm::Md5
            | HashAlgorithm::Sha1
            | HashAlgorithm::Ripemd160
            | HashAlgorithm::Private10
            | HashAlgorithm::Other(_)
    )
}

enum SigningKey<'a> {
    Primary(&'a TrustedKey),
    Sub(&'a TrustedKey, &'a SignedPublicSubKey),
}

fn find_key<'a>(sig: &Signature, keys: &'a [TrustedKey]) -> Option<SigningKey<'a>> {
    let fprs = sig.issuer_fingerprint();
    let ids = sig.issuer();
    let hit = |k: &dyn PublicKeyTrait| {
        fprs.iter().any(|f| **f == k.fingerprint()) || ids.iter().any(|i| **i == k.key_id())
    };
    for t in keys {
        if hit(&t.key.primary_key) {
            return Some(SigningKey::Primary(t));
        }
        for s in &t.key.public_subkeys {
            if hit(&s.key) {
                return Some(SigningKey::Sub(t, s));
            }
        }
    }
    None
}

fn check_key_usable(t: &TrustedKey, now: DateTime<Utc>) -> Result<(), SignatureError> {
    if let Err(e) = t.key.verify() {
        return Err(SignatureError::BadKey {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
            reason: e.to_string(),
        });
    }
    if !t.key.details.revocation_signatures.is_empty() {
        return Err(SignatureError::KeyRevoked {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
        });
    }
    if let Some(exp) = t.key.expires_at()
        && exp <= now
    {
        return Err(SignatureError::KeyExpired {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
            expired: exp.to_rfc3339(),
        });
    }
    Ok(())
}

fn check_subkey_usable(
    t: &TrustedKey,
    s: &SignedPublicSubKey,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let fingerprint = format!(
        "{} (subkey {})",
        t.fingerprint,
        fpr_hex(&s.key.fingerprint())
    );
    if s.signatures
        .iter()
        .any(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Err(SignatureError::KeyRevoked {
            fingerprint,
            uid: t.uid.clone(),
        });
    }
    let created = *s.key.created_at();
    if let Some(exp) = s
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
        .filter_map(|sig| sig.key_expiration_time())
        .max()
    {
        let at = created + *exp;
        if at <= now {
            return Err(SignatureError::KeyExpired {
                fingerprint,
                uid: t.uid.clone(),
                expired: at.to_rfc3339(),
            });
        }
    }
    Ok(())
}

/// Verifies one signature over `data` against the trusted keys.
pub fn verify_one(
    sig: &Signature,
    data: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Signer, SignatureError> {
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => return Err(SignatureError::NotDataSignature(format!("{other:?}"))),
    }
    let hash = sig.hash_alg().unwrap_or(HashAlgorithm::None);
    if weak(hash) {
        return Err(SignatureError::RejectWeakHash {
            hash: hash.to_string(),
        });
    }
    let Some(signing) = find_key(sig, keys) else {
        let issuer = sig
            .issuer_fingerprint()
            .first()
            .map(|f| fpr_hex(f))
            .or_else(|| {
                sig.issuer()
                    .first()
                    .map(|i| crate::reinstall::checksums::hex(i.as_ref()).to_uppercase())
            })
            .unwrap_or_else(|| "(no issuer)".into());
        let trusted = keys
            .iter()
            .map(|k| k.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SignatureError::UnknownKey { issuer, trusted });
    };
    let (t, result, subkey) = match signing {
        SigningKey::Primary(t) => {
            check_key_usable(t, now)?;
            (t, sig.verify(&t.key.primary_key, data), None)
        }
        SigningKey::Sub(t, s) => {
            check_key_usable(t, now)?;
            check_subkey_usable(t, s, now)?;
            (
                t,
                sig.verify(&s.key, data),
                Some(fpr_hex(&s.key.fingerprint())),
            )
        }
    };
    if result.is_err() {
        return Err(SignatureError::BadSignature {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
        });
    }
    if let (Some(created), Some(exp)) = (sig.created(), sig.signature_expiration_time())
        && exp.num_seconds() > 0
        && *created + *exp <= now
    {
        return Err(SignatureError::SignatureExpired(
            (*created + *exp).to_rfc3339(),
        ));
    }
    Ok(Signer {
        fingerprint: t.fingerprint.clone(),
        signing_subkey: subkey,
        uid: t.uid.clone(),
        hash: hash.to_string(),
        created: sig.created().map(|c| c.to_rfc3339()),
    })
}

/// The first good signature among several; otherwise the first error.
fn first_good(
    sigs: &[Signature],
    data: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Signer, SignatureError> {
    let mut first_err = None;
    for s in sigs {
        match verify_one(s, data, keys, now) {
            Ok(signer) => return Ok(signer),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| SignatureError::ParseSignature("no signature packets".into())))
}

/// Verifies a detached signature (armoured or binary) over `data`.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Signer, SignatureError> {
    let parse = |e: pgp::errors::Error| SignatureError::ParseSignature(e.to_string());
    let sigs: Vec<Signature> = if is_armoured(signature) {
        let (iter, _) = DetachedSignature::from_armor_many(signature).map_err(parse)?;
        iter.filter_map(Result::ok).map(|d| d.signature).collect()
    } else {
        DetachedSignature::from_bytes_many(signature)
            .map_err(parse)?
            .filter_map(Result::ok)
            .map(|d| d.signature)
            .collect()
    };
    if sigs.is_empty() {
        return Err(SignatureError::ParseSignature(
            "no signature packets".into(),
        ));
    }
    first_good(&sigs, data, keys, now)
}

/// Whether a checksum list is itself cleartext-signed.
pub fn is_cleartext_signed(list: &[u8]) -> bool {
    let head = &list[..list.len().min(1024)];
    head.windows(34)
        .any(|w| w == b"-----BEGIN PGP SIGNED MESSAGE-----")
}

/// Verifies a cleartext-signed list and returns the signer and the list's text (dash-unescaped).
pub fn verify_cleartext(
    list: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<(Signer, String), SignatureError> {
    let (msg, _) = CleartextSignedMessage::from_armor(list)
        .map_err(|e| SignatureError::ParseCleartext(e.to_string()))?;
    let signed = msg.signed_text();
    let signer = first_good(msg.signatures(), signed.as_bytes(), keys, now)?;
    let text = msg
        .text()
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Ok((signer, text))
}
