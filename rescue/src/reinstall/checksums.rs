//! Checksum lists as distributions publish them: GNU coreutils format (`<hex>  <name>` or
//! `<hex> *<name>`) and BSD tag format (`SHA256 (<name>) = <hex>`), SHA-256 and SHA-512; and the
//! streaming hash of an image to compare against an entry. Never prints.

use std::io::Read;
use std::path::Path;

use sha2::Digest;

/// A hash algorithm a checksum list may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in results (`sha256`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// One line of a checksum list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub algorithm: Algorithm,
    /// Lowercase hex.
    pub digest: String,
    /// The name as written in the list (without a leading `*` or `./`).
    pub name: String,
}

/// Errors of checksum lists.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("the checksum list has no SHA-256 or SHA-512 entry in GNU or BSD tag format")]
    EmptyList,
    #[error("the checksum list has no entry for {name} (entries: {known})")]
    MissingEntry { name: String, known: String },
    #[error(
        "the checksum list has two different {algorithm} entries for {name} ({first} and {second}); refusing to guess which one was meant"
    )]
    ConflictingEntries {
        name: String,
        algorithm: &'static str,
        first: String,
        second: String,
    },
    #[error(
        "several entries of the checksum list end in {name} with different hashes ({candidates}); give the file a path that ends like one of them"
    )]
    AmbiguousEntry { name: String, candidates: String },
    #[error("reading {path}")]
    ReadImage {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn clean_name(name: &str) -> String {
    let name = name.strip_prefix('*').unwrap_or(name);
    name.strip_prefix("./").unwrap_or(name).to_owned()
}

/// Parses one line; `None` for comments, blank lines and algorithms we do not accept (MD5, SHA-1).
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return None;
    }
    // BSD tag: `SHA256 (name) = hex`.
    if let Some((left, hex)) = line.rsplit_once(") = ") {
        let (tag, name) = left.split_once(" (")?;
        let algorithm = Algorithm::from_tag(tag.trim())?;
        let hex = hex.trim();
        return (is_hex(hex) && hex.len() == algorithm.hex_len()).then(|| Entry {
            algorithm,
            digest: hex.to_ascii_lowercase(),
            name: clean_name(name),
        });
    }
    // GNU: `hex  name` (text mode) or `hex *name` (binary mode).
    let (hex, rest) = line.split_once(' ')?;
    let algorithm = match hex.len() {
        64 => Algorithm::Sha256,
        128 => Algorithm::Sha512,
        _ => return None,
    };
    let name = rest.strip_prefix(' ').unwrap_or(rest);
    if !is_hex(hex) || name.is_empty() {
        return None;
    }
    Some(Entry {
        algorithm,
        digest: hex.to_ascii_lowercase(),
        name: clean_name(name),
    })
}

/// Parses a whole checksum list (either format, or both mixed). Two entries for the same name and
/// algorithm with different hashes are refused: whichever one a reader picked, the other was signed too.
pub fn parse(text: &str) -> Result<Vec<Entry>, ChecksumError> {
    let entries: Vec<Entry> = text.lines().filter_map(parse_line).collect();
    if entries.is_empty() {
        return Err(ChecksumError::EmptyList);
    }
    let mut seen: std::collections::BTreeMap<(&str, Algorithm), &str> = Default::default();
    for e in &entries {
        if let Some(first) = seen.insert((e.name.as_str(), e.algorithm), e.digest.as_str())
            && first != e.digest
        {
            return Err(ChecksumError::ConflictingEntries {
                name: e.name.clone(),
                algorithm: e.algorithm.name(),
                first: first.to_owned(),
                second: e.digest.clone(),
            });
        }
    }
    Ok(entries)
}

/// How many trailing path components `entry` and `wanted` share.
fn common_tail(entry: &str, wanted: &str) -> usize {
    entry
        .rsplit('/')
        .zip(wanted.rsplit('/'))
        .take_while(|(a, b)| a == b)
        .count()
}

/// The strongest entry naming `file`: a file name, or a path whose trailing components are matched
/// against the list's names (the longest match wins, so `netboot/gtk/mini.iso` picks that entry and
/// not `netboot/mini.iso`). Entries that match equally well with different hashes are refused.
pub fn find<'a>(entries: &'a [Entry], file: &str) -> Result<&'a Entry, ChecksumError> {
    let file = file.trim_start_matches("./");
    let best = entries
        .iter()
        .map(|e| common_tail(&e.name, file))
        .max()
        .unwrap_or(0);
    let name = file.rsplit('/').next().unwrap_or(file);
    if best == 0 {
        let mut known: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        known.truncate(8);
        return Err(ChecksumError::MissingEntry {
            name: name.to_owned(),
            known: known.join(", "),
        });
    }
    let candidates: Vec<&Entry> = entries
        .iter()
        .filter(|e| common_tail(&e.name, file) == best)
        .collect();
    let strongest = candidates
        .iter()
        .map(|e| e.algorithm)
        .max()
        .unwrap_or(Algorithm::Sha256);
    let chosen: Vec<&&Entry> = candidates
        .iter()
        .filter(|e| e.algorithm == strongest)
        .collect();
    if chosen.iter().any(|e| e.digest != chosen[0].digest) {
        return Err(ChecksumError::AmbiguousEntry {
            name: name.to_owned(),
            candidates: chosen
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(chosen[0])
}

/// A running hash of either algorithm.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Lowercase hex digest.
    pub fn finish(self) -> String {
        let bytes = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        hex(&bytes)
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Hashes everything `reader` yields; `progress` gets the running byte count.
pub fn hash_reader(
    mut reader: impl Read,
    algorithm: Algorithm,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<(String, u64)> {
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
        progress(total);
    }
    Ok((h.finish(), total))
}

/// Hashes a file.
pub fn hash_file(
    path: &Path,
    algorithm: Algorithm,
    progress: &mut dyn FnMut(u64),
) -> Result<(String, u64), ChecksumError> {
    let read = |source| ChecksumError::ReadImage {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    hash_reader(f, algorithm, progress).map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn gnu_text_and_binary_lines() {
        let list =
            format!("{A}  debian-12.iso\n{A} *ubuntu.iso\n# comment\n\n{A}  ./sub/dir/x.img\n");
        let e = parse(&list).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "debian-12.iso");
        assert_eq!(e[1].name, "ubuntu.iso");
        assert_eq!(e[2].name, "sub/dir/x.img");
        assert!(
            e.iter()
                .all(|x| x.algorithm == Algorithm::Sha256 && x.digest == A)
        );
        assert_eq!(find(&e, "x.img").unwrap().name, "sub/dir/x.img");
    }

    #[test]
    fn bsd_tag_lines_as_alma_writes_them() {
        let s512 = "ab".repeat(64);
        let list = format!(
            "# AlmaLinux-9.4-x86_64-boot.iso: 1000 bytes\nSHA256 (AlmaLinux-9.4-x86_64-boot.iso) = {}\nSHA512 (AlmaLinux-9.4-x86_64-boot.iso) = {s512}\nMD5 (x) = 00112233445566778899aabbccddeeff\n",
            A.to_uppercase()
        );
        let e = parse(&list).unwrap();
        assert_eq!(e.len(), 2, "MD5 is not accepted");
        assert_eq!(e[0].algorithm, Algorithm::Sha256);
        assert_eq!(e[0].digest, A, "hex is normalised to lowercase");
        let best = find(&e, "AlmaLinux-9.4-x86_64-boot.iso").unwrap();
        assert_eq!(
            best.algorithm,
            Algorithm::Sha512,
            "the strongest entry wins"
        );
    }

    #[test]
    fn wrong_lengths_md5_and_sha1_are_ignored() {
        assert!(parse_line(&format!("{}  short", &A[..40])).is_none());
        assert!(parse_line("SHA1 (x) = 0123456789012345678901234567890123456789").is_none());
        assert!(parse_line(&format!("SHA256 (x) = {}", &A[..60])).is_none());
        assert!(parse_line(&format!("{}zz  x", &A[..62])).is_none());
        assert!(matches!(
            parse("nothing here\n"),
            Err(ChecksumError::EmptyList)
        ));
    }

    #[test]
    fn a_missing_entry_is_named() {
        let e = parse(&format!("{A}  other.iso\n")).unwrap();
        let err = find(&e, "mine.iso").unwrap_err().to_string();
        assert!(
            err.contains("mine.iso") && err.contains("other.iso"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_duplicates_are_refused_and_identical_ones_accepted() {
        let b = "b".repeat(64);
        let same = format!("{A}  x.iso\n{A}  ./x.iso\n");
        assert_eq!(parse(&same).unwrap().len(), 2);
        let err = parse(&format!("{A}  x.iso\n{b}  x.iso\n")).unwrap_err();
        assert!(
            matches!(err, ChecksumError::ConflictingEntries { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("x.iso") && err.to_string().contains(&b));
    }

    #[test]
    fn the_longest_path_match_wins_and_equal_matches_must_agree() {
        let b = "b".repeat(64);
        let list = parse(&format!(
            "{A}  ./netboot/mini.iso\n{b}  ./netboot/gtk/mini.iso\n"
        ))
        .unwrap();
        assert_eq!(find(&list, "/tmp/gtk/mini.iso").unwrap().digest, b);
        assert_eq!(find(&list, "/srv/netboot/mini.iso").unwrap().digest, A);
        let err = find(&list, "/tmp/mini.iso").unwrap_err();
        assert!(matches!(err, ChecksumError::AmbiguousEntry { .. }), "{err}");
    }

    #[test]
    fn hashes_match_known_vectors() {
        let (h, n) = hash_reader(&b""[..], Algorithm::Sha256, &mut |_| {}).unwrap();
        assert_eq!((h.as_str(), n), (A, 0));
        let (h, _) = hash_reader(&b"abc"[..], Algorithm::Sha512, &mut |_| {}).unwrap();
        assert!(h.starts_with("ddaf35a193617aba"));
    }
}

/// Fuzz targets (see `crate::fuzzing`): checksum lists as a mirror or an installer medium serves them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn lists(b: &[u8]) {
        let text = String::from_utf8_lossy(b);
        if let Ok(entries) = parse(&text) {
            for e in &entries {
                assert_eq!(e.digest.len(), e.algorithm.hex_len(), "{e:?}");
                // The GNU line we would write for it parses back to the same entry.
                if !e.name.contains(['\n', '\r']) && !e.name.starts_with(['*', ' ']) {
                    let line = format!("{}  {}", e.digest, e.name);
                    if let Some(back) = parse_line(&line) {
                        assert_eq!(back.digest, e.digest);
                    }
                }
            }
        }
    }

    #[test]
    fn checksum_lists() {
        let d256 = "a".repeat(64);
        let d512 = "0123456789abcdef".repeat(8);
        Target::new("checksum-list")
            .seed(format!("{d256}  debian-12.5.0-amd64-netinst.iso\n{d256} *./install.amd/vmlinuz\n# c\n\n"))
            .seed(format!("SHA256 (AlmaLinux-9-x86_64-boot.iso) = {d256}\nSHA512 (images/pxeboot/vmlinuz) = {d512}\n"))
            .seed(format!("{d512}  a\r\n{d256}  a\n{d256}  a\n"))
            .dict(&[b"  ", b" *", b"./", b"SHA256 (", b"SHA512 (", b") = ", b"\n", b"#"])
            .run(lists);
    }
}
