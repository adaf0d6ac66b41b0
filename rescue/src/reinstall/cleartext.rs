//! The cleartext signature framework (RFC 4880 §7, RFC 9580 §7) as gpgv and apt read it: Alma's
//! `CHECKSUM`, Debian's `InRelease`. Splits a file into the signed text and its armoured signature
//! block, and says in words what is wrong when it cannot. Blank lines before the header and after the
//! signature are accepted (gpgv does); any other text outside the signed part is refused, because the
//! signature does not cover it. Never prints.

use pgp::composed::{Deserializable, DetachedSignature};
use pgp::packet::Signature;

const BEGIN_MSG: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIG: &str = "-----BEGIN PGP SIGNATURE-----";
const END_SIG: &str = "-----END PGP SIGNATURE-----";

/// What is wrong with a cleartext-signed file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleartextError {
    #[error("it is not valid UTF-8 text")]
    NotText,
    #[error("it has no \"{BEGIN_MSG}\" line")]
    NoHeader,
    #[error(
        "line {0} holds text before \"{BEGIN_MSG}\"; that text would not be covered by the signature"
    )]
    TextBeforeHeader(usize),
    #[error(
        "line {line}: unexpected armour header {text:?} (only \"Hash:\" may follow the first line)"
    )]
    BadArmourHeader { line: usize, text: String },
    #[error("it ends before the signature (\"{BEGIN_SIG}\" is missing)")]
    NoSignature,
    #[error("it ends inside the signature (\"{END_SIG}\" is missing)")]
    UnterminatedSignature,
    #[error(
        "line {0} holds text after the signature; that text would not be covered by the signature"
    )]
    TextAfterSignature(usize),
    #[error(
        "line {0} starts with '-' but is not dash-escaped (\"- \"), so where the signed text ends is ambiguous"
    )]
    BadDashEscape(usize),
    #[error("its signature block cannot be read as OpenPGP signatures{0}")]
    BadSignatureBlock(String),
    #[error("its signature block holds no signature")]
    NoSignaturePackets,
}

/// A parsed cleartext-signed file.
#[derive(Debug, Clone)]
pub struct Cleartext {
    /// The text as its author wrote it (dash-escapes removed), lines joined with `\n`, ending with `\n`.
    pub text: String,
    /// The bytes the signature covers: trailing spaces and tabs removed from each line, lines joined
    /// with CR LF, no line break after the last line.
    pub signed: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// A short, human reason from a `pgp` error, or nothing when the error text is parser internals.
pub fn pgp_reason(e: &pgp::errors::Error) -> String {
    let s = e.to_string();
    if s.len() > 120 || s.contains("input:") || s.contains("assertion") || s.contains('{') {
        String::new()
    } else {
        format!(" ({s})")
    }
}

/// Parses the framework. The signatures are parsed, not verified.
pub fn parse(bytes: &[u8]) -> Result<Cleartext, CleartextError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CleartextError::NotText)?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let blank = |l: &str| l.trim().is_empty();
    let mut i = 0;
    while i < lines.len() && lines[i].trim_end() != BEGIN_MSG {
        if !blank(lines[i]) {
            return Err(if lines[i..].iter().any(|l| l.trim_end() == BEGIN_MSG) {
                CleartextError::TextBeforeHeader(i + 1)
            } else {
                CleartextError::NoHeader
            });
        }
        i += 1;
    }
    if i == lines.len() {
        return Err(CleartextError::NoHeader);
    }
    i += 1;
    // Armour headers up to the first empty line.
    while i < lines.len() && !blank(lines[i]) {
        if !lines[i].starts_with("Hash:") {
            return Err(CleartextError::BadArmourHeader {
                line: i + 1,
                text: lines[i].chars().take(60).collect(),
            });
        }
        i += 1;
    }
    i += 1;
    let mut body: Vec<&str> = Vec::new();
    loop {
        let Some(line) = lines.get(i) else {
            return Err(CleartextError::NoSignature);
        };
        if line.trim_end() == BEGIN_SIG {
            break;
        }
        if let Some(rest) = line.strip_prefix("- ") {
            body.push(rest);
        } else if line.starts_with('-') {
            return Err(CleartextError::BadDashEscape(i + 1));
        } else {
            body.push(line);
        }
        i += 1;
    }
    let start = i;
    let end = (start..lines.len())
        .find(|&j| lines[j].trim_end() == END_SIG)
        .ok_or(CleartextError::UnterminatedSignature)?;
    if let Some(j) = (end + 1..lines.len()).find(|&j| !blank(lines[j])) {
        return Err(CleartextError::TextAfterSignature(j + 1));
    }
    let block = lines[start..=end].join("\n") + "\n";
    let (iter, _) = DetachedSignature::from_armor_many(block.as_bytes())
        .map_err(|e| CleartextError::BadSignatureBlock(pgp_reason(&e)))?;
    let mut signatures = Vec::new();
    for s in iter {
        signatures.push(
            s.map_err(|e| CleartextError::BadSignatureBlock(pgp_reason(&e)))?
                .signature,
        );
    }
    if signatures.is_empty() {
        return Err(CleartextError::NoSignaturePackets);
    }
    let signed = body
        .iter()
        .map(|l| l.trim_end_matches([' ', '\t']))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    let mut text = body.join("\n");
    text.push('\n');
    Ok(Cleartext {
        text,
        signed,
        signatures,
    })
}

/// Whether `bytes` look like a cleartext-signed file (the header within the first lines).
pub fn is_cleartext_signed(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(BEGIN_MSG.len())
        .any(|w| w == BEGIN_MSG.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_the_signed_part_is_named_by_line() {
        let doc = "\nhello\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n";
        assert_eq!(
            parse(doc.as_bytes()).unwrap_err(),
            CleartextError::TextBeforeHeader(2)
        );
        let doc = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n";
        assert_eq!(
            parse(doc.as_bytes()).unwrap_err(),
            CleartextError::NoSignature
        );
        let doc = "-----BEGIN PGP SIGNED MESSAGE-----\nComment: hi\n\nx\n";
        assert!(matches!(
            parse(doc.as_bytes()).unwrap_err(),
            CleartextError::BadArmourHeader { line: 2, .. }
        ));
        let doc = "-----BEGIN PGP SIGNED MESSAGE-----\n\n-x\n";
        assert_eq!(
            parse(doc.as_bytes()).unwrap_err(),
            CleartextError::BadDashEscape(3)
        );
        assert_eq!(
            parse(b"plain list\n").unwrap_err(),
            CleartextError::NoHeader
        );
    }
}

/// Fuzz targets (see `crate::fuzzing`): cleartext-signed files (`InRelease`, `SHA256SUMS.asc`) as a
/// mirror serves them: the framing, dash-escapes and the armoured signature block.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn documents(b: &[u8]) {
        if let Ok(c) = parse(b) {
            assert!(!c.signatures.is_empty());
            assert!(
                c.signed.len() <= b.len() * 2,
                "the signed text outgrew the file"
            );
        }
    }

    #[test]
    fn cleartext_framing() {
        let real = include_bytes!("../../tests/fixtures/debian/bookworm-updates_InRelease");
        // A short document with the real signature block: mutations reach the armour quickly.
        let sig = real
            .windows(29)
            .position(|w| w == b"-----BEGIN PGP SIGNATURE-----")
            .map_or(&real[..], |i| &real[i..]);
        let mut short =
            b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n- -- dashed\n"
                .to_vec();
        short.extend_from_slice(sig);
        Target::new("pgp-cleartext")
            .seed(&short)
            .seed(&real[..])
            .max_len(80 << 10)
            .dict(&[
                b"-----BEGIN PGP SIGNED MESSAGE-----\n",
                b"-----BEGIN PGP SIGNATURE-----\n",
                b"-----END PGP SIGNATURE-----\n",
                b"Hash: ",
                b"- ",
                b"\n=",
                b"\r\n",
            ])
            .run(documents);
    }
}
