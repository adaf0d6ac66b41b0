//! The apt chain of trust, as apt walks it: a signed `InRelease` (or `Release` + `Release.gpg`) lists
//! the SHA-256 and size of every index of a suite; a `Packages` index lists the SHA-256 and size of
//! every `.deb`; the installer's `SHA256SUMS` (under `main/installer-*/current/images/`) lists the
//! images. [`SignedRelease`] is the verified root; [`SignedRelease::prove_index`] and
//! [`Packages::find_by_sha256`] walk down. A library for `reinstall verify --release` and for triage
//! (checking installed packages against signed metadata). The same key rules as every other signed
//! file ([`super::signature::POLICY`]). `Valid-Until` is reported, not enforced: an old snapshot still
//! proves what the archive published then. Never prints.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::checksums::{self, Algorithm};
use super::signature::{self, SignatureError, Signer, TrustedKey};

/// Errors of the apt chain.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checking the signature of {path}")]
    Signature {
        path: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error(
        "{path} is not signed: give an InRelease file, or Release with its detached Release.gpg (--sig)"
    )]
    UnsignedRelease { path: PathBuf },
    #[error(
        "{path} is cleartext-signed (an InRelease) and carries its own signature; --sig {sig} would not be checked: drop --sig"
    )]
    SigWithCleartext { path: PathBuf, sig: PathBuf },
    #[error("{path} has no SHA256 section listing the suite's files")]
    NoSha256 { path: PathBuf },
    #[error("{path} line {line}: the SHA256 entry {text:?} is not \"<hex> <size> <path>\"")]
    BadReleaseLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "{file} is not listed in {release}: no entry has its size ({size} bytes) and SHA-256 ({sha256}){hint}"
    )]
    NotInRelease {
        file: PathBuf,
        release: PathBuf,
        size: u64,
        sha256: String,
        hint: String,
    },
    #[error(
        "{path} is compressed ({kind}); give the uncompressed index (its hash is listed in the Release file too), e.g. `{tool} -dk {name}`"
    )]
    CompressedIndex {
        path: PathBuf,
        kind: &'static str,
        tool: &'static str,
        name: String,
    },
    #[error("{path} is not a valid gzip file")]
    Gunzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not text (UTF-8)")]
    NotText { path: PathBuf },
    #[error(
        "{file} is not listed in {packages}: no package has its size ({size} bytes) and SHA-256 ({sha256}){hint}"
    )]
    NotInPackages {
        file: PathBuf,
        packages: PathBuf,
        size: u64,
        sha256: String,
        hint: String,
    },
    #[error("{path}: stanza {stanza} ({package}) has {field} {value:?}, which is not valid")]
    BadPackagesField {
        path: PathBuf,
        stanza: usize,
        package: String,
        field: &'static str,
        value: String,
    },
    #[error("reading the checksum list {path}")]
    Checksums {
        path: PathBuf,
        #[source]
        source: checksums::ChecksumError,
    },
    #[error("{file} does NOT match its entry in {sums}: {detail}")]
    SumsMismatch {
        file: PathBuf,
        sums: PathBuf,
        detail: String,
    },
    #[error("hashing {path}")]
    Hash {
        path: PathBuf,
        #[source]
        source: checksums::ChecksumError,
    },
}

/// One file a Release lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseEntry {
    /// Path relative to the suite's directory (`main/binary-amd64/Packages`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A Release file whose signature was verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedRelease {
    pub path: PathBuf,
    pub signer: Signer,
    pub origin: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub entries: Vec<ReleaseEntry>,
}

fn read(path: &Path) -> Result<Vec<u8>, AptError> {
    std::fs::read(path).map_err(|source| AptError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// The value of a single-line field of an RFC 822-style stanza.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Parses the `SHA256:` section of a Release text.
pub fn parse_release_sha256(text: &str, path: &Path) -> Result<Vec<ReleaseEntry>, AptError> {
    let mut out = Vec::new();
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        if !line.starts_with([' ', '\t']) {
            inside = line.trim_end() == "SHA256:";
            continue;
        }
        if !inside {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let bad = || AptError::BadReleaseLine {
            path: path.to_owned(),
            line: n + 1,
            text: line.chars().take(80).collect(),
        };
        let [hex, size, file] = parts[..] else {
            return Err(bad());
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        out.push(ReleaseEntry {
            path: file.to_owned(),
            size: size.parse().map_err(|_| bad())?,
            sha256: hex.to_ascii_lowercase(),
        });
    }
    if out.is_empty() {
        return Err(AptError::NoSha256 {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

impl SignedRelease {
    /// Verifies `InRelease` (cleartext-signed), or `Release` with its detached signature, under the
    /// trusted keys, and parses what it lists.
    pub fn load(
        release: &Path,
        detached_sig: Option<&Path>,
        keys: &[TrustedKey],
        now: DateTime<Utc>,
    ) -> Result<Self, AptError> {
        let bytes = read(release)?;
        let sig_err = |source| AptError::Signature {
            path: release.to_owned(),
            source,
        };
        let (signer, text) = match detached_sig {
            Some(sig) if signature::is_cleartext_signed(&bytes) => {
                return Err(AptError::SigWithCleartext {
                    path: release.to_owned(),
                    sig: sig.to_owned(),
                });
            }
            Some(sig) => {
                let s =
                    signature::verify_detached(&bytes, &read(sig)?, keys, now).map_err(sig_err)?;
                let text = String::from_utf8(bytes).map_err(|_| AptError::NotText {
                    path: release.to_owned(),
                })?;
                (s, text)
            }
            None if signature::is_cleartext_signed(&bytes) => {
                signature::verify_cleartext(&bytes, keys, now).map_err(sig_err)?
            }
            None => {
                return Err(AptError::UnsignedRelease {
                    path: release.to_owned(),
                });
            }
        };
        let entries = parse_release_sha256(&text, release)?;
        let f = |name| field(&text, name).map(str::to_owned);
        Ok(SignedRelease {
            path: release.to_owned(),
            signer,
            origin: f("Origin"),
            suite: f("Suite"),
            codename: f("Codename"),
            date: f("Date"),
            valid_until: f("Valid-Until"),
            entries,
        })
    }

    /// The entry of the Release that has exactly this size and SHA-256, if any.
    pub fn entry_for(&self, size: u64, sha256: &str) -> Option<&ReleaseEntry> {
        self.entries
            .iter()
            .find(|e| e.size == size && e.sha256 == sha256)
    }

    /// Proves a file (an index such as `Packages`, or the installer's `SHA256SUMS`) by its hash: the
    /// Release entry it is, whatever the local file is called (apt renames its lists).
    pub fn prove_index(&self, file: &Path) -> Result<(ReleaseEntry, Vec<u8>), AptError> {
        let bytes = read(file)?;
        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        match self.entry_for(size, &sha256) {
            Some(e) => Ok((e.clone(), bytes)),
            None => {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let hint = self
                    .entries
                    .iter()
                    .find(|e| name.ends_with(&e.path.replace('/', "_")) || e.path == name)
                    .map(|e| {
                        format!(
                            "; its name matches {} which the Release lists with {} bytes and SHA-256 {}",
                            e.path, e.size, e.sha256
                        )
                    })
                    .or_else(|| {
                        compression(&bytes).map(|kind| {
                            format!(
                                "; it is {kind}-compressed, and only the archive's own compressed file has the listed hash: give the uncompressed index instead"
                            )
                        })
                    })
                    .unwrap_or_default();
                Err(AptError::NotInRelease {
                    file: file.to_owned(),
                    release: self.path.clone(),
                    size,
                    sha256,
                    hint,
                })
            }
        }
    }
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    checksums::hex(&sha2::Sha256::digest(bytes))
}

/// One package of a `Packages` index (the fields the chain needs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// A parsed `Packages` index.
#[derive(Debug, Clone, Default)]
pub struct Packages {
    pub packages: Vec<Package>,
}

impl Packages {
    /// Parses a `Packages` index, uncompressed or `.gz` (the caller proved the bytes as they are);
    /// stanzas without `SHA256` are skipped. `.xz` is refused with what to do: an xz decoder would
    /// grow the binary, and every Release lists the uncompressed index too.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, AptError> {
        let plain;
        let bytes = match compression(bytes) {
            Some("gzip") => {
                use std::io::Read;
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .map_err(|source| AptError::Gunzip {
                        path: path.to_owned(),
                        source,
                    })?;
                plain = out;
                &plain[..]
            }
            Some(kind) => return Err(compressed(path, kind, kind)),
            None => bytes,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| AptError::NotText {
            path: path.to_owned(),
        })?;
        let mut packages = Vec::new();
        for (n, stanza) in text.split("\n\n").enumerate() {
            let Some(sha256) = field(stanza, "SHA256") else {
                continue;
            };
            let package = field(stanza, "Package").unwrap_or_default().to_owned();
            let bad = |field: &'static str, value: &str| AptError::BadPackagesField {
                path: path.to_owned(),
                stanza: n + 1,
                package: package.clone(),
                field,
                value: value.chars().take(80).collect(),
            };
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("SHA256", sha256));
            }
            let size = field(stanza, "Size").unwrap_or_default();
            packages.push(Package {
                version: field(stanza, "Version").unwrap_or_default().to_owned(),
                architecture: field(stanza, "Architecture").unwrap_or_default().to_owned(),
                filename: field(stanza, "Filename").unwrap_or_default().to_owned(),
                size: size.parse().map_err(|_| bad("Size", size))?,
                sha256: sha256.to_ascii_lowercase(),
                package,
            });
        }
        Ok(Packages { packages })
    }

    /// The package whose `.deb` has exactly this size and SHA-256.
    pub fn find_by_sha256(&self, size: u64, sha256: &str) -> Option<&Package> {
        self.packages
            .iter()
            .find(|p| p.size == size && p.sha256 == sha256)
    }

    /// The packages named `name` (for triage: every version the index lists).
    pub fn by_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Package> + 'a {
        self.packages.iter().filter(move |p| p.package == name)
    }
}

/// The compression a file's magic number names (`xz`, `gzip`, `lz4`, `zstd`), if any.
fn compression(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if bytes.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Some("lz4")
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    }
}

fn compressed(path: &Path, kind: &'static str, tool: &'static str) -> AptError {
    AptError::CompressedIndex {
        path: path.to_owned(),
        kind,
        tool,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// What the chain proved about a file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AptProof {
    pub file: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub release: SignedRelease,
    /// The Release entry of the index (or checksum list) that leads to the file.
    pub index: Option<ReleaseEntry>,
    /// The package the file is, when proven through `Packages`.
    pub package: Option<Package>,
    /// The checksum-list entry, when proven through the installer's `SHA256SUMS`.
    pub sums_entry: Option<checksums::Entry>,
}

impl AptProof {
    /// One sentence naming each link of the chain.
    pub fn statement(&self) -> String {
        let r = &self.release;
        let head = format!(
            "{} {} signed by {} ({})",
            r.path.display(),
            r.suite
                .as_deref()
                .or(r.codename.as_deref())
                .map(|s| format!("(suite {s})"))
                .unwrap_or_default(),
            r.signer.fingerprint,
            r.signer.uid
        );
        match (&self.index, &self.package, &self.sums_entry) {
            (Some(i), Some(p), _) => format!(
                "{head} lists {} (sha256 matches), which lists {} {} {} as {} (sha256 matches)",
                i.path, p.package, p.version, p.architecture, p.filename
            ),
            (Some(i), None, Some(e)) => format!(
                "{head} lists {} (sha256 matches), whose entry {} matches ({})",
                i.path,
                e.name,
                e.algorithm.name()
            ),
            _ => format!(
                "{head} lists the file itself as {} (sha256 matches)",
                self.index.as_ref().map_or("?", |i| i.path.as_str())
            ),
        }
    }
}

/// Proves `file` through the signed Release: via a `Packages` index (a `.deb`), via a checksum list
/// the Release lists (an installer image), or directly (an index the Release lists).
pub fn prove_file(
    file: &Path,
    release: SignedRelease,
    packages: Option<&Path>,
    sums: Option<&Path>,
    progress: &mut dyn FnMut(u64),
) -> Result<AptProof, AptError> {
    let mut hash = |algorithm| {
        checksums::hash_file(file, algorithm, progress).map_err(|source| AptError::Hash {
            path: file.to_owned(),
            source,
        })
    };
    if let Some(p) = packages {
        let (index, bytes) = release.prove_index(p)?;
        let list = Packages::parse(&bytes, p)?;
        let (sha256, size) = hash(Algorithm::Sha256)?;
        let Some(pkg) = list.find_by_sha256(size, &sha256).cloned() else {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let hint = list
                .packages
                .iter()
                .find(|p| p.filename.rsplit('/').next() == Some(name.as_str()))
                .map(|p| {
                    format!(
                        "; {} lists {} with {} bytes and SHA-256 {}: the file was changed",
                        p.filename, name, p.size, p.sha256
                    )
                })
                .unwrap_or_default();
            return Err(AptError::NotInPackages {
                file: file.to_owned(),
                packages: p.to_owned(),
                size,
                sha256,
                hint,
            });
        };
        return Ok(AptProof {
            file: file.to_owned(),
            size,
            sha256,
            release,
            index: Some(index),
            package: Some(pkg),
            sums_entry: None,
        });
    }
    if let Some(s) = sums {
        let (index, bytes) = release.prove_index(s)?;
        let text =
            String::from_utf8(bytes).map_err(|_| AptError::NotText { path: s.to_owned() })?;
        let entries = checksums::parse(&text).map_err(|source| AptError::Checksums {
            path: s.to_owned(),
            source,
        })?;
        let entry = checksums::find(&entries, &file.to_string_lossy())
            .map_err(|source| AptError::Checksums {
                path: s.to_owned(),
                source,
            })?
            .clone();
        let (digest, size) = hash(entry.algorithm)?;
        if digest != entry.digest {
            return Err(AptError::SumsMismatch {
                file: file.to_owned(),
                sums: s.to_owned(),
                detail: format!(
                    "{} is {digest}, entry {} says {}",
                    entry.algorithm.name(),
                    entry.name,
                    entry.digest
                ),
            });
        }
        let sha256 = if entry.algorithm == Algorithm::Sha256 {
            digest
        } else {
            hash(Algorithm::Sha256)?.0
        };
        return Ok(AptProof {
            file: file.to_owned(),
            size,
            sha256,
            release,
            index: Some(index),
            package: None,
            sums_entry: Some(entry),
        });
    }
    let (sha256, size) = hash(Algorithm::Sha256)?;
    let (index, _) = release.prove_index(file)?;
    Ok(AptProof {
        file: file.to_owned(),
        size,
        sha256,
        release,
        index: Some(index),
        package: None,
        sums_entry: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "80a1f6ee524222c49f230fc5700d00f946d0a47eb5258180106dd03df126e16a";

    #[test]
    fn release_sha256_section_is_read_and_bad_lines_are_named() {
        let p = Path::new("InRelease");
        let text = format!(
            "Origin: Debian\nMD5Sum:\n 0123 1 main/x\nSHA256:\n {H}    32757 main/binary-amd64/Packages\n {H} 7 main/i18n/Index\nAcquire-By-Hash: yes\n"
        );
        let e = parse_release_sha256(&text, p).unwrap();
        assert_eq!(e.len(), 2, "MD5Sum lines are not SHA-256 entries");
        assert_eq!(e[0].path, "main/binary-amd64/Packages");
        assert_eq!(e[0].size, 32757);
        let err = parse_release_sha256(&format!("SHA256:\n {H} many main/x\n"), p).unwrap_err();
        assert!(err.to_string().contains("InRelease line 2"), "{err}");
        let err = parse_release_sha256("Origin: x\n", p).unwrap_err();
        assert!(matches!(err, AptError::NoSha256 { .. }), "{err}");
    }

    #[test]
    fn packages_are_found_by_hash_and_bad_fields_are_named() {
        let p = Path::new("Packages");
        let text = format!(
            "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a_1_all.deb\nSize: 10\nSHA256: {H}\n\nPackage: b\nVersion: 2\nSize: 3\n"
        );
        let list = Packages::parse(text.as_bytes(), p).unwrap();
        assert_eq!(
            list.packages.len(),
            1,
            "a stanza without SHA256 proves nothing"
        );
        assert_eq!(list.find_by_sha256(10, H).unwrap().package, "a");
        assert!(
            list.find_by_sha256(11, H).is_none(),
            "the size is part of the proof"
        );
        assert_eq!(list.by_name("a").count(), 1);
        let bad = text.replace("Size: 10", "Size: ten");
        let err = Packages::parse(bad.as_bytes(), p).unwrap_err().to_string();
        assert!(err.contains("stanza 1 (a) has Size \"ten\""), "{err}");
        let err = Packages::parse(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1], p).unwrap_err();
        assert!(err.to_string().contains("compressed (xz)"), "{err}");
    }
}

/// Fuzz targets (see `crate::fuzzing`): the `SHA256:` list of a Release file as a mirror serves it.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn releases(b: &[u8]) {
        if let Ok(entries) = parse_release_sha256(&String::from_utf8_lossy(b), Path::new("Release"))
        {
            for e in &entries {
                assert_eq!(e.sha256.len(), 64);
                assert!(!e.path.is_empty());
            }
        }
    }

    #[test]
    fn apt_release() {
        let in_release = include_str!("../../tests/fixtures/debian/bookworm-updates_InRelease");
        // The Release text alone (what the cleartext framing hands over), cut to a few entries.
        let text: String = in_release.lines().take(60).collect::<Vec<_>>().join("\n");
        Target::new("apt-release")
            .seed(text)
            .dict(&[
                b"SHA256:\n",
                b"\n ",
                b"\t",
                b"MD5Sum:\n",
                b" 18446744073709551616 ",
            ])
            .run(releases);
    }
}
