//! What every collector shares: the JSON document around its data (`schema`, `collected_at`,
//! `source`, `notes`), reading `/proc`-like files and links as bytes, names that may not be UTF-8, and
//! times. Nothing here fails a collection: a read returns an `io::Result` the collector turns into a
//! note.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::live::Artifact;

/// Most notes one document keeps; the rest are counted in a last note (a host with thousands of
/// unreadable entries must not make a document of notes).
const MAX_NOTES: usize = 200;

/// A JSON document being collected.
#[derive(Debug)]
pub struct Doc {
    name: String,
    schema: &'static str,
    source: String,
    collected_at: String,
    notes: Vec<String>,
    dropped: usize,
}

impl Doc {
    /// Starts the document `name` (`state/processes.json`) now.
    pub fn start(name: &str, schema: &'static str, source: &str) -> Doc {
        Doc {
            name: name.to_owned(),
            schema,
            source: source.to_owned(),
            collected_at: now_rfc3339(),
            notes: Vec::new(),
            dropped: 0,
        }
    }

    /// When this document's collection began.
    pub fn collected_at(&self) -> &str {
        &self.collected_at
    }

    /// Records what could not be read or looked wrong.
    pub fn note(&mut self, what: impl Into<String>) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(what.into());
        } else {
            self.dropped += 1;
        }
    }

    fn final_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if self.dropped > 0 {
            notes.push(format!(
                "{} more notes like these were left out",
                self.dropped
            ));
        }
        notes
    }

    /// The artifact: `{"schema", "collected_at", "source", "notes", <fields>}`.
    pub fn finish(self, fields: Vec<(&str, Value)>) -> Artifact {
        let notes = self.final_notes();
        let mut m = Map::new();
        m.insert("schema".into(), Value::from(self.schema));
        m.insert(
            "collected_at".into(),
            Value::from(self.collected_at.clone()),
        );
        m.insert("source".into(), Value::from(self.source.clone()));
        m.insert(
            "notes".into(),
            Value::Array(notes.iter().cloned().map(Value::from).collect()),
        );
        for (k, v) in fields {
            m.insert(k.to_owned(), v);
        }
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(m)).unwrap_or_default();
        bytes.push(b'\n');
        Artifact {
            name: self.name,
            bytes,
            source: self.source,
            collected_at: self.collected_at,
            notes,
        }
    }
}

/// `value` as JSON (plain data structs cannot fail to serialize; `null` if one ever did).
pub fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A copied file (an executable, the kernel image) as an artifact.
pub fn file_artifact(name: &str, bytes: Vec<u8>, source: &str, collected_at: &str) -> Artifact {
    Artifact {
        name: name.to_owned(),
        bytes,
        source: source.to_owned(),
        collected_at: collected_at.to_owned(),
        notes: Vec::new(),
    }
}

/// Bytes from the kernel or a suspect as a JSON string: valid UTF-8 as it is; otherwise each byte
/// that is not UTF-8 as `\xNN` and each backslash doubled (so the original bytes can be told).
pub fn text(raw: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(raw.len() + 8);
    let mut rest = raw;
    while !rest.is_empty() {
        let (good, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (g, b) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(g).unwrap_or(""), b)
            }
        };
        for c in good.chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        let Some((&b, tail)) = bad.split_first() else {
            break;
        };
        out.push_str(&format!("\\x{b:02x}"));
        rest = tail;
    }
    out
}

/// Reads a whole file (a `/proc` file reads to its end in a few calls).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// A symbolic link's target as bytes (`/proc/PID/exe`, `/proc/PID/fd/N`).
pub fn readlink(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read_link(path).map(|p| p.as_os_str().as_bytes().to_vec())
}

/// The error in words, without the path (the caller names what it read).
pub fn why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "it does not exist".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Whether an error means the process went away while it was read (normal on a live host).
pub fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// A UNIX time in seconds (with fractions) as RFC 3339 UTC with milliseconds; `None` when out of range.
pub fn rfc3339_secs(secs: f64) -> Option<String> {
    if !secs.is_finite() || !(0.0..1e11).contains(&secs) {
        return None;
    }
    let millis = (secs * 1000.0).round() as i64;
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    rfc3339_secs(secs).unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// The `key: value` lines of a `/proc` file whose values are numbers or words (`/proc/PID/status`,
/// `/proc/meminfo`): the value of `key`, trimmed.
pub fn field<'a>(content: &'a [u8], key: &str) -> Option<&'a [u8]> {
    content.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key.as_bytes())?;
        let rest = rest.strip_prefix(b":")?;
        Some(rest.trim_ascii())
    })
}

/// A decimal number from bytes; `None` for anything else (including overflow).
pub fn num<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b.trim_ascii()).ok()?.parse().ok()
}

/// The entries of a directory whose names are decimal numbers (PIDs, fds), sorted.
pub fn numeric_entries(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            let b = n.as_bytes();
            if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            num(b)
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes_readable() {
        assert_eq!(text(b"sshd"), "sshd");
        assert_eq!(text(b"a\\b"), "a\\b");
        assert_eq!(text(b"x\xffy\\"), "x\\xffy\\\\");
        assert_eq!(text(b"\xc3"), "\\xc3");
    }

    #[test]
    fn times_out_of_range_are_none_not_a_panic() {
        assert_eq!(
            rfc3339_secs(1_700_000_000.25).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(rfc3339_secs(f64::NAN), None);
        assert_eq!(rfc3339_secs(1e300), None);
        assert_eq!(rfc3339_secs(-1.0), None);
    }

    #[test]
    fn fields_and_numbers_from_status_lines() {
        let s = b"Name:\tbash\nTgid:\t42\nUid:\t0\t1\t2\t3\nHuge:\t99999999999999999999999\n";
        assert_eq!(field(s, "Tgid"), Some(&b"42"[..]));
        assert_eq!(num::<u32>(field(s, "Tgid").unwrap()), Some(42));
        assert_eq!(num::<u64>(field(s, "Huge").unwrap()), None);
        assert_eq!(field(s, "Missing"), None);
    }

    #[test]
    fn notes_are_capped_and_counted() {
        let mut d = Doc::start("state/x.json", "rescue.live.x/1", "/proc/x");
        for i in 0..(MAX_NOTES + 5) {
            d.note(format!("n{i}"));
        }
        let a = d.finish(vec![("x", Value::from(1))]);
        assert_eq!(a.notes.len(), MAX_NOTES + 1);
        assert!(a.notes.last().unwrap().starts_with("5 more notes"));
        let v: Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(v["schema"], "rescue.live.x/1");
        assert_eq!(v["x"], 1);
        assert_eq!(v["notes"].as_array().unwrap().len(), MAX_NOTES + 1);
    }
}
