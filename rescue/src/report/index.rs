//! The evidence index: every file of the case directory with its SHA-256, written in `sha256sum` format
//! with paths relative to the report directory, so `cd REPORT && sha256sum -c evidence.sha256` checks
//! it and [`check`] reads it back the same way. Never prints.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ReportError;

/// File name of the index in the report directory.
pub const INDEX_NAME: &str = "evidence.sha256";

/// One evidence file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceFile {
    /// Path relative to the case directory.
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// Null when the file was hashed for this report; else where its SHA-256 comes from (the verified
    /// manifest of its acquisition, the file unchanged since: see [`super::reuse`]).
    #[serde(default)]
    pub sha256_from: Option<String>,
}

/// Every regular file below `case_dir`, sorted, except what `skip` names (the report directory being
/// written and the live case log, whose signed snapshot the report carries). Symbolic links are not
/// followed and are returned separately (relative paths), so the report can name them.
pub fn walk(case_dir: &Path, skip: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>), ReportError> {
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut stack = vec![case_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|source| ReportError::ReadCase {
            path: dir.clone(),
            source,
        })?;
        for e in rd {
            let e = e.map_err(|source| ReportError::ReadCase {
                path: dir.clone(),
                source,
            })?;
            let path = e.path();
            if skip.contains(&path) {
                continue;
            }
            let ft = e.file_type().map_err(|source| ReportError::ReadCase {
                path: path.clone(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                files.push(path);
            } else if ft.is_symlink() {
                links.push(relative(case_dir, &path));
            }
        }
    }
    files.sort();
    links.sort();
    Ok((files, links))
}

/// `path` relative to `base` as text (both below the same root).
pub fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// SHA-256 and size of one file, reporting progress in bytes.
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<(String, u64), ReportError> {
    let err = |source| ReportError::HashFile {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
    Ok((hex::encode(h.finalize()), total))
}

/// How the index names a path of the case directory, seen from the report directory: `prefix` is the
/// way from the report directory to the case directory (`../` when the report is `CASE/report`).
pub fn index_name(prefix: &str, rel: &str) -> String {
    format!("{prefix}{rel}")
}

/// The way from `from` to `to` as a relative path ending in `/` (empty when they are the same), for
/// two absolute, canonical directories.
pub fn way(from: &Path, to: &Path) -> String {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = String::new();
    for _ in common..a.len() {
        out.push_str("../");
    }
    for c in &b[common..] {
        out.push_str(&c.as_os_str().to_string_lossy());
        out.push('/');
    }
    out
}

/// The index text: `<sha256>  <name>` lines (`sha256sum` output). A name with a backslash or a newline
/// is written the way GNU sha256sum does: the line starts with `\` and the name is escaped.
pub fn render(lines: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, sha) in lines {
        if name.contains(['\\', '\n', '\r']) {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            out.push_str(&format!("\\{sha}  {escaped}\n"));
        } else {
            out.push_str(&format!("{sha}  {name}\n"));
        }
    }
    out
}

/// Parses an index written by [`render`]: `(name, sha256)` in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((sha, name)) = line.split_once("  ") else {
            return Err(format!("line {}: not `<sha256>  <file>`", i + 1));
        };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {}: {sha:?} is no SHA-256", i + 1));
        }
        let name = if escaped {
            let mut s = String::new();
            let mut chars = name.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    s.push(c);
                    continue;
                }
                s.push(match chars.next() {
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some(o) => o,
                    None => '\\',
                });
            }
            s
        } else {
            name.to_owned()
        };
        out.push((name, sha.to_ascii_lowercase()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_newlines_and_backslashes_round_trip() {
        let sha = "a".repeat(64);
        let lines = vec![
            ("../disk-1/image.raw".to_owned(), sha.clone()),
            ("odd\\name\nwith newline".to_owned(), sha.clone()),
        ];
        let text = render(&lines);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().nth(1).unwrap().starts_with('\\'));
        assert_eq!(parse(&text).unwrap(), lines);
        assert!(parse("xyz  file\n").is_err());
    }

    #[test]
    fn the_way_between_directories_is_relative() {
        assert_eq!(way(Path::new("/e/C/report"), Path::new("/e/C")), "../");
        assert_eq!(way(Path::new("/e/C"), Path::new("/e/C")), "");
        assert_eq!(way(Path::new("/tmp/out"), Path::new("/e/C")), "../../e/C/");
    }
}
