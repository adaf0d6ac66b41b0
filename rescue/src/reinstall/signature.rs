//! OpenPGP verification of signed files, in pure Rust (`pgp` crate for packets and cryptography, our
//! own key-acceptance rules in [`super::keypolicy`]): detached signatures (armoured, as Debian's
//! `SHA256SUMS.sign`, or binary, as Ubuntu's `SHA256SUMS.gpg`) and cleartext-signed files (Alma's
//! `CHECKSUM`, Debian's `InRelease`, framed by [`super::cleartext`]). Keys come from `--keyring` files
//! or from the keys embedded at build time (`/etc/rescue/trusted-keys/`).
//!
//! Policy (shown to the user as [`POLICY`]): a data signature counts when it is made with SHA-256 or
//! stronger by a trusted key or a signing subkey of one that is usable *now* (validly self-signed, not
//! revoked, not expired); SHA-1 and weaker data signatures, expired and revoked keys are refused even
//! where gpgv would accept them. With several signatures, one good signature by a trusted key suffices
//! unless another signature by a trusted key is BAD (then the file was changed). Never prints.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicKeyTrait};

use super::cleartext::{self, CleartextError, pgp_reason};
use super::keypolicy::{self, KeyRefusal};

/// The rules in one sentence, for output.
pub const POLICY: &str = "data signatures need SHA-256 or stronger; the key (and signing subkey) must be validly self-signed, not revoked and not expired today; third-party certifications are ignored";

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
    #[error("{path} holds no OpenPGP public key that can be read{reason}")]
    ParseKeyring { path: PathBuf, reason: String },
    #[error("no trusted keys: pass --keyring FILE or build the image with --trust-key FILE")]
    NoTrustedKeys,
    #[error("the signature file holds no OpenPGP signature{0}")]
    ParseSignature(String),
    #[error("the cleartext-signed file is malformed")]
    ParseCleartext(#[from] CleartextError),
    #[error(
        "the signature uses {hash}, which is too weak to prove anything (policy: SHA-256 or stronger)"
    )]
    RejectWeakHash { hash: String },
    #[error(
        "the signature was made by key {issuer}, which is not among the trusted keys ({trusted})"
    )]
    UnknownKey { issuer: String, trusted: String },
    #[error("key {fingerprint} ({uid}) may not sign (policy: {POLICY})")]
    KeyRefused {
        fingerprint: String,
        uid: String,
        #[source]
        reason: Box<KeyRefusal>,
    },
    #[error("the signature expired on {0}")]
    SignatureExpired(String),
    #[error("the signature claims to be made on {made}, in the future (now {now})")]
    SignatureInFuture { made: String, now: String },
    #[error("the signature claims to be made on {made}, before its key existed ({key_created})")]
    SignatureBeforeKey { made: String, key_created: String },
    #[error(
        "BAD signature by {fingerprint} ({uid}): the signed file was changed or is not the one that was signed"
    )]
    BadSignature { fingerprint: String, uid: String },
    #[error("the signature is of type {0}, not a signature over a file")]
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

/// Parses public keys from armoured or binary key material. Keys that cannot be parsed are skipped
/// (as gpgv skips them); a file with none at all is an error.
pub fn parse_keys(bytes: &[u8], source: &Path) -> Result<Vec<TrustedKey>, SignatureError> {
    let bad = |e: pgp::errors::Error| SignatureError::ParseKeyring {
        path: source.to_owned(),
        reason: pgp_reason(&e),
    };
    let keys: Vec<SignedPublicKey> = if is_armoured(bytes) {
        let (iter, _) = SignedPublicKey::from_armor_many(bytes).map_err(bad)?;
        iter.filter_map(Result::ok).collect()
    } else {
        SignedPublicKey::from_bytes_many(bytes)
            .map_err(bad)?
            .filter_map(Result::ok)
            .collect()
    };
    if keys.is_empty() {
        return Err(SignatureError::ParseKeyring {
            path: source.to_owned(),
            reason: " (armoured or binary OpenPGP public keys expected)".into(),
        });
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

fn issuer_text(sig: &Signature) -> String {
    sig.issuer_fingerprint()
        .first()
        .map(|f| fpr_hex(f))
        .or_else(|| {
            sig.issuer()
                .first()
                .map(|i| crate::reinstall::checksums::hex(i.as_ref()).to_uppercase())
        })
        .unwrap_or_else(|| "(no issuer)".into())
}

/// Verifies one signature over `data` against the trusted keys, under [`POLICY`].
pub fn verify_one(
    sig: &Signature,
    data: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Signer, SignatureError> {
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(SignatureError::NotDataSignature(
                other.map_or_else(|| "unknown".into(), |t| format!("{t:?}")),
            ));
        }
    }
    let hash = sig.hash_alg().unwrap_or(HashAlgorithm::None);
    if weak(hash) {
        return Err(SignatureError::RejectWeakHash {
            hash: hash.to_string(),
        });
    }
    let Some(signing) = find_key(sig, keys) else {
        let trusted = keys
            .iter()
            .map(|k| k.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SignatureError::UnknownKey {
            issuer: issuer_text(sig),
            trusted,
        });
    };
    let (t, math, subkey, key_created) = match signing {
        SigningKey::Primary(t) => (
            t,
            sig.verify(&t.key.primary_key, data),
            None,
            *t.key.primary_key.created_at(),
        ),
        SigningKey::Sub(t, s) => (
            t,
            sig.verify(&s.key, data),
            Some((s, fpr_hex(&s.key.fingerprint()))),
            *s.key.created_at(),
        ),
    };
    if math.is_err() {
        return Err(SignatureError::BadSignature {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
        });
    }
    let policy = match &subkey {
        None => keypolicy::check_primary_signs(&t.key, now),
        Some((s, _)) => keypolicy::check_signing_subkey(&t.key, s, now),
    };
    if let Err(reason) = policy {
        return Err(SignatureError::KeyRefused {
            fingerprint: t.fingerprint.clone(),
            uid: t.uid.clone(),
            reason: Box::new(reason),
        });
    }
    if let Some(created) = sig.created() {
        if *created > now + chrono::Duration::minutes(5) {
            return Err(SignatureError::SignatureInFuture {
                made: created.to_rfc3339(),
                now: now.to_rfc3339(),
            });
        }
        if *created < key_created {
            return Err(SignatureError::SignatureBeforeKey {
                made: created.to_rfc3339(),
                key_created: key_created.to_rfc3339(),
            });
        }
        if let Some(exp) = sig.signature_expiration_time()
            && exp.num_seconds() > 0
            && *created + *exp <= now
        {
            return Err(SignatureError::SignatureExpired(
                (*created + *exp).to_rfc3339(),
            ));
        }
    }
    Ok(Signer {
        fingerprint: t.fingerprint.clone(),
        signing_subkey: subkey.map(|(_, f)| f),
        uid: t.uid.clone(),
        hash: hash.to_string(),
        created: sig.created().map(|c| c.to_rfc3339()),
    })
}

/// All signatures over `data`: the good signers (first the first good one), or why none counts.
/// A BAD signature by a trusted key refuses the file even when another signature is good.
pub fn verify_all(
    sigs: &[Signature],
    data: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Vec<Signer>, SignatureError> {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for s in sigs {
        match verify_one(s, data, keys, now) {
            Ok(signer) => good.push(signer),
            Err(e @ SignatureError::BadSignature { .. }) => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    if !good.is_empty() {
        return Ok(good);
    }
    // The most telling reason: a trusted key's refusal before "made by an unknown key".
    let pos = errors
        .iter()
        .position(|e| !matches!(e, SignatureError::UnknownKey { .. }))
        .unwrap_or(0);
    if errors.is_empty() {
        return Err(SignatureError::ParseSignature(
            " (no signature packets)".into(),
        ));
    }
    Err(errors.swap_remove(pos))
}

/// Parses a detached signature file (armoured or binary; several signatures allowed).
pub fn parse_detached(signature: &[u8]) -> Result<Vec<Signature>, SignatureError> {
    let parse = |e: pgp::errors::Error| SignatureError::ParseSignature(pgp_reason(&e));
    let mut sigs = Vec::new();
    if is_armoured(signature) {
        let (iter, _) = DetachedSignature::from_armor_many(signature).map_err(parse)?;
        for d in iter {
            sigs.push(d.map_err(parse)?.signature);
        }
    } else {
        for d in DetachedSignature::from_bytes_many(signature).map_err(parse)? {
            sigs.push(d.map_err(parse)?.signature);
        }
    }
    if sigs.is_empty() {
        return Err(SignatureError::ParseSignature(
            " (no signature packets)".into(),
        ));
    }
    Ok(sigs)
}

/// Verifies a detached signature (armoured or binary) over `data`; the first good signer.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Signer, SignatureError> {
    let sigs = parse_detached(signature)?;
    let mut good = verify_all(&sigs, data, keys, now)?;
    Ok(good.swap_remove(0))
}

/// Whether a file is cleartext-signed.
pub fn is_cleartext_signed(list: &[u8]) -> bool {
    cleartext::is_cleartext_signed(list)
}

/// Verifies a cleartext-signed file and returns the first good signer and the text (dash-unescaped).
pub fn verify_cleartext(
    list: &[u8],
    keys: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<(Signer, String), SignatureError> {
    let msg = cleartext::parse(list)?;
    let mut good = verify_all(&msg.signatures, &msg.signed, keys, now)?;
    Ok((good.swap_remove(0), msg.text))
}

/// Fuzz targets (see `crate::fuzzing`): detached signatures and keyrings, armoured and binary, as
/// they arrive from a mirror or a stick.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    const IN_RELEASE: &[u8] =
        include_bytes!("../../tests/fixtures/debian/bookworm-updates_InRelease");
    const KEYRING: &[u8] = include_bytes!("../../tests/fixtures/debian/debian-archive-keyring.gpg");

    fn armoured_signature() -> &'static [u8] {
        IN_RELEASE
            .windows(29)
            .position(|w| w == b"-----BEGIN PGP SIGNATURE-----")
            .map_or(IN_RELEASE, |i| &IN_RELEASE[i..])
    }

    fn detached(b: &[u8]) {
        let _ = parse_detached(b);
    }

    fn keyrings(b: &[u8]) {
        if let Ok(keys) = parse_keys(b, Path::new("fuzz.gpg")) {
            assert!(!keys.is_empty());
        }
    }

    #[test]
    fn pgp_detached_signatures() {
        let armoured = armoured_signature();
        let mut t = Target::new("pgp-detached").seed(armoured);
        // The same block dearmoured: binary signature packets.
        if let Ok(sigs) = parse_detached(armoured) {
            use pgp::ser::Serialize;
            let mut bin = Vec::new();
            for s in &sigs {
                let _ = s.to_writer(&mut bin);
            }
            t = t.seed(bin);
        }
        t.dict(&[
            b"-----BEGIN PGP SIGNATURE-----\n",
            b"\n=",
            b"-----END PGP SIGNATURE-----",
        ])
        .run(detached);
    }

    #[test]
    fn pgp_keyrings() {
        // One key of the archive keyring (the packets up to the second public-key packet), and the
        // whole file.
        Target::new("pgp-keyring")
            .seed(&KEYRING[..KEYRING.len().min(4096)])
            .seed(KEYRING)
            .max_len(64 << 10)
            .run(keyrings);
    }
}
