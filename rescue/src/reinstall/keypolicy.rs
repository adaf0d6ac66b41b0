//! Which trusted key may have made a data signature: our own acceptance policy over the `pgp` crate's
//! packet checks, written to agree with GnuPG's `gpgv` on the keys distributions publish.
//!
//! What is checked, and nothing more: the primary key's self-signatures (user-id certifications and
//! direct-key signatures it made itself) and its own revocations; for a subkey, its bindings (the newest
//! valid one decides flags and expiry), its back-signature and its revocations. Third-party
//! certifications and the other subkeys are ignored, whatever state they are in, as gpgv does.
//! Self-signatures may use SHA-1 (gpgv accepts them and a key owner gains nothing by colliding their
//! own certificate); MD5 and unknown hashes never count. Revocations by designated revokers are not
//! applied (only the key's own revocations count); signatures dated in the future do not count.
//! Never prints.

use chrono::{DateTime, Utc};
use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, PublicKeyTrait, Tag};

/// Why a key (or subkey) may not make data signatures now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error(
        "none of its user ids or direct-key signatures carries a valid self-signature, so nothing binds it to a name"
    )]
    NoValidSelfSignature,
    #[error("it was revoked by its owner on {when}{reason}")]
    Revoked { when: String, reason: String },
    #[error("it expired on {0}")]
    Expired(String),
    #[error(
        "its newest self-signature does not allow it to make signatures (key flags lack \"sign\")"
    )]
    NotForSigning,
    #[error("subkey {0} has no valid binding signature from its primary key")]
    SubkeyUnbound(String),
    #[error(
        "subkey {0} is not cross-certified (its binding has no valid back-signature), so anyone could have attached it"
    )]
    SubkeyNotCrossCertified(String),
    #[error("subkey {subkey} was revoked on {when}{reason}")]
    SubkeyRevoked {
        subkey: String,
        when: String,
        reason: String,
    },
    #[error("subkey {subkey} expired on {when} (its newest binding, of {binding}, says so)")]
    SubkeyExpired {
        subkey: String,
        when: String,
        binding: String,
    },
    #[error("subkey {0} is not marked for signing by its newest binding")]
    SubkeyNotForSigning(String),
}

fn fpr(k: &impl KeyDetails) -> String {
    format!("{:X}", k.fingerprint())
}

/// Self-signatures count with any hash GnuPG accepts for them (SHA-1 and up), never with MD5 or
/// unknown algorithms.
fn hash_ok_for_self_sig(sig: &Signature) -> bool {
    !matches!(
        sig.hash_alg(),
        None | Some(
            HashAlgorithm::None
                | HashAlgorithm::Md5
                | HashAlgorithm::Private10
                | HashAlgorithm::Other(_)
        )
    )
}

fn created(sig: &Signature) -> Option<DateTime<Utc>> {
    sig.created().copied()
}

/// Issued by `key` (or names no issuer at all, as very old signatures do: then the math decides).
fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fprs = sig.issuer_fingerprint();
    let ids = sig.issuer();
    (fprs.is_empty() && ids.is_empty())
        || fprs.iter().any(|f| **f == key.fingerprint())
        || ids.iter().any(|i| **i == key.key_id())
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets
            .iter()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

fn reason_text(sig: &Signature) -> String {
    match sig.revocation_reason_string() {
        Some(r) if !r.is_empty() => format!(" (\"{}\")", String::from_utf8_lossy(r)),
        _ => String::new(),
    }
}

fn usable_at(sig: &Signature, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let c = created(sig)?;
    (c <= now && hash_ok_for_self_sig(sig)).then_some(c)
}

/// The newest valid user-id self-certification and the newest valid direct-key signature of the
/// primary key. As in GnuPG, the user-id self-signature's expiry and flags win; the direct-key
/// signature's count where the user-id one has none (Debian's keys carry later direct-key signatures
/// without an expiry, next to user-id self-signatures with one).
fn self_signatures(
    key: &SignedPublicKey,
    now: DateTime<Utc>,
) -> (Option<&Signature>, Option<&Signature>) {
    let primary = &key.primary_key;
    let mut best: Option<(DateTime<Utc>, &Signature)> = None;
    let mut direct: Option<(DateTime<Utc>, &Signature)> = None;
    fn consider<'a>(
        best: &mut Option<(DateTime<Utc>, &'a Signature)>,
        sig: &'a Signature,
        ok: bool,
        now: DateTime<Utc>,
    ) {
        if let Some(c) = usable_at(sig, now).filter(|_| ok)
            && best.is_none_or(|(b, _)| c >= b)
        {
            *best = Some((c, sig));
        }
    }
    for user in &key.details.users {
        for sig in user.signatures.iter().filter(|s| {
            matches!(
                s.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            ) && issued_by(s, primary)
        }) {
            let ok = sig
                .verify_certification(primary, Tag::UserId, &user.id)
                .is_ok();
            consider(&mut best, sig, ok, now);
        }
    }
    for sig in key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && issued_by(s, primary))
    {
        let ok = sig.verify_key(primary).is_ok();
        consider(&mut direct, sig, ok, now);
    }
    (best.map(|(_, s)| s), direct.map(|(_, s)| s))
}

/// The newest valid self-signature of the primary key: its user-id certification, else its
/// direct-key signature.
pub fn newest_self_signature(key: &SignedPublicKey, now: DateTime<Utc>) -> Option<&Signature> {
    let (uid, direct) = self_signatures(key, now);
    uid.or(direct)
}

/// A property of the primary key: from the user-id self-signature when it states it, else from the
/// direct-key signature.
fn key_property<'a, T>(
    key: &'a SignedPublicKey,
    now: DateTime<Utc>,
    get: impl Fn(&'a Signature) -> Option<T>,
) -> Option<T> {
    let (uid, direct) = self_signatures(key, now);
    uid.and_then(&get).or_else(|| direct.and_then(&get))
}

/// The first valid revocation of the primary key by itself.
fn primary_revocation(key: &SignedPublicKey, now: DateTime<Utc>) -> Option<&Signature> {
    let primary = &key.primary_key;
    key.details.revocation_signatures.iter().find(|s| {
        s.typ() == Some(SignatureType::KeyRevocation)
            && issued_by(s, primary)
            && usable_at(s, now).is_some()
            && s.verify_key(primary).is_ok()
    })
}

/// Whether the primary key, as a certificate, is usable now: validly self-signed, not revoked by
/// itself, not expired according to its newest self-signature.
pub fn check_primary(key: &SignedPublicKey, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
    if newest_self_signature(key, now).is_none() {
        return Err(KeyRefusal::NoValidSelfSignature);
    }
    if let Some(rev) = primary_revocation(key, now) {
        return Err(KeyRefusal::Revoked {
            when: created(rev).map(|c| c.to_rfc3339()).unwrap_or_default(),
            reason: reason_text(rev),
        });
    }
    if let Some(at) = primary_expiry(key, now)
        && at <= now
    {
        return Err(KeyRefusal::Expired(at.to_rfc3339()));
    }
    Ok(())
}

/// Whether the primary key itself may make data signatures (its newest self-signature's key flags,
/// when it has any, must say "sign").
pub fn check_primary_signs(key: &SignedPublicKey, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
    check_primary(key, now)?;
    let flags = key_property(key, now, |s| has_key_flags(s).then(|| s.key_flags()));
    match flags {
        Some(f) if !f.sign() => Err(KeyRefusal::NotForSigning),
        _ => Ok(()),
    }
}

/// The expiry the newest valid self-signature gives the primary key, if any.
pub fn primary_expiry(key: &SignedPublicKey, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let exp = key_property(key, now, |s| s.key_expiration_time().copied())?;
    (exp.num_seconds() > 0).then(|| *key.primary_key.created_at() + exp)
}

/// Whether the primary key has revoked itself (a valid revocation signature).
pub fn is_revoked(key: &SignedPublicKey, now: DateTime<Utc>) -> bool {
    primary_revocation(key, now).is_some()
}

/// Whether `sub` may make data signatures now: the primary key is usable, the subkey is validly
/// bound, its newest valid binding is for signing, cross-certified and unexpired, and it is not revoked.
pub fn check_signing_subkey(
    key: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    now: DateTime<Utc>,
) -> Result<(), KeyRefusal> {
    check_primary(key, now)?;
    let primary = &key.primary_key;
    let name = fpr(&sub.key);
    if let Some(rev) = sub.signatures.iter().find(|s| {
        s.typ() == Some(SignatureType::SubkeyRevocation)
            && issued_by(s, primary)
            && usable_at(s, now).is_some()
            && s.verify_subkey_binding(primary, &sub.key).is_ok()
    }) {
        return Err(KeyRefusal::SubkeyRevoked {
            subkey: name,
            when: created(rev).map(|c| c.to_rfc3339()).unwrap_or_default(),
            reason: reason_text(rev),
        });
    }
    let binding = sub
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding) && issued_by(s, primary))
        .filter_map(|s| usable_at(s, now).map(|c| (c, s)))
        .filter(|(_, s)| s.verify_subkey_binding(primary, &sub.key).is_ok())
        .max_by_key(|(c, _)| *c);
    let Some((bound_at, binding)) = binding else {
        return Err(KeyRefusal::SubkeyUnbound(name));
    };
    if has_key_flags(binding) && !binding.key_flags().sign() {
        return Err(KeyRefusal::SubkeyNotForSigning(name));
    }
    let back = binding.embedded_signature().is_some_and(|b| {
        b.typ() == Some(SignatureType::KeyBinding)
            && hash_ok_for_self_sig(b)
            && b.verify_primary_key_binding(&sub.key, primary).is_ok()
    });
    if !back {
        return Err(KeyRefusal::SubkeyNotCrossCertified(name));
    }
    if let Some(exp) = binding.key_expiration_time()
        && exp.num_seconds() > 0
    {
        let at = *sub.key.created_at() + *exp;
        if at <= now {
            return Err(KeyRefusal::SubkeyExpired {
                subkey: name,
                when: at.to_rfc3339(),
                binding: bound_at.to_rfc3339(),
            });
        }
    }
    Ok(())
}

/// Why neither the primary key nor any of its subkeys may make data signatures now; `None` when one
/// of them may.
pub fn why_unusable(key: &SignedPublicKey, now: DateTime<Utc>) -> Option<String> {
    let primary = match check_primary_signs(key, now) {
        Ok(()) => return None,
        Err(e) => e,
    };
    if matches!(primary, KeyRefusal::NotForSigning) {
        let mut first = None;
        for sub in &key.public_subkeys {
            match check_signing_subkey(key, sub, now) {
                Ok(()) => return None,
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        return Some(first.unwrap_or(primary).to_string());
    }
    Some(primary.to_string())
}
