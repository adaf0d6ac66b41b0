//! The case log: every operator action and every result as one JSON line. Each line ends with `hash`, the
//! SHA-256 of the line's bytes before that field, and carries `prev`, the previous line's `hash`: any edit
//! (even of the last line), insertion or deletion breaks the chain. Entries are fsynced one
//! by one. Before an evidence destination exists the log lives in memory and is written out when it is
//! attached to a file.
//!
//! Never prints; callers decide what the operator sees.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::acquire::manifest::rfc3339;

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Errors writing or reading a case log.
#[derive(Debug, thiserror::Error)]
pub enum CaseLogError {
    #[error("opening case log {path}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing case log {path}")]
    WriteLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("case log {path} is not intact")]
    BrokenChain {
        path: PathBuf,
        #[source]
        source: ChainError,
    },
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChainError {
    pub line: usize,
    pub reason: String,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// System clock, RFC 3339 UTC.
    pub utc: String,
    /// The machine's hardware clock (RTC) at the same moment, when it can be read.
    pub rtc: Option<String>,
    /// `action` (what the operator asked), `result` (what happened) or `note`.
    pub kind: String,
    /// The command line or step, as typed or chosen.
    pub command: String,
    /// Structured detail: outcome, exit code, reason given for an override, …
    #[serde(default)]
    pub detail: serde_json::Value,
    /// `hash` of the previous line, [`GENESIS`] for the first.
    pub prev: String,
}

const HASH_FIELD: &str = ",\"hash\":\"";

/// The full line for an entry: its JSON with `"hash":"<sha256 of everything before it>"` appended.
fn seal(entry: &Entry) -> (String, String) {
    let json = serde_json::to_string(entry).unwrap_or_default();
    let body = json.strip_suffix('}').unwrap_or(&json);
    let hash = sha256_hex(body);
    (format!("{body}{HASH_FIELD}{hash}\"}}"), hash)
}

/// Splits a sealed line into the entry and its hash, checking the hash.
fn unseal(line: &str) -> Result<(Entry, String), String> {
    let at = line.rfind(HASH_FIELD).ok_or("no hash field")?;
    let (body, tail) = line.split_at(at);
    let hash = tail
        .strip_prefix(HASH_FIELD)
        .and_then(|t| t.strip_suffix("\"}"))
        .ok_or("malformed hash field")?;
    if hash != sha256_hex(body) {
        return Err("its content does not match its hash (the line was edited)".to_owned());
    }
    let entry: Entry =
        serde_json::from_str(&format!("{body}}}")).map_err(|e| format!("not a log entry: {e}"))?;
    Ok((entry, hash.to_owned()))
}

/// What a caller records; the log adds sequence, times and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub command: String,
    pub detail: serde_json::Value,
}

/// Reads the RTC (`/sys/class/rtc/rtc0/since_epoch`) as RFC 3339.
pub fn rtc_now() -> Option<String> {
    let secs: u64 = fs::read_to_string("/sys/class/rtc/rtc0/since_epoch")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)))
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A hash-chained log, in memory until attached to a file.
pub struct CaseLog {
    file: Option<(File, PathBuf)>,
    pending: Vec<String>,
    last_hash: String,
    next_seq: u64,
}

impl CaseLog {
    /// A log kept in memory until [`CaseLog::attach`].
    pub fn in_memory() -> Self {
        CaseLog {
            file: None,
            pending: Vec::new(),
            last_hash: GENESIS.to_owned(),
            next_seq: 1,
        }
    }

    /// Appends one entry (fsynced when the log has a file) and returns it.
    pub fn append(&mut self, record: Record) -> Result<Entry, CaseLogError> {
        self.append_at(record, SystemTime::now(), rtc_now())
    }

    fn append_at(
        &mut self,
        record: Record,
        now: SystemTime,
        rtc: Option<String>,
    ) -> Result<Entry, CaseLogError> {
        let entry = Entry {
            seq: self.next_seq,
            utc: rfc3339(now),
            rtc,
            kind: record.kind,
            command: record.command,
            detail: record.detail,
            prev: self.last_hash.clone(),
        };
        let (line, hash) = seal(&entry);
        match &mut self.file {
            Some((file, path)) => write_line(file, path, &line)?,
            None => self.pending.push(line),
        }
        self.last_hash = hash;
        self.next_seq += 1;
        Ok(entry)
    }

    /// Writes the log to `path` from now on. An existing log there is verified and continued: entries
    /// kept in memory are re-chained onto its end. Entries in memory are written and fsynced first.
    pub fn attach(&mut self, path: &Path) -> Result<(), CaseLogError> {
        let existing = match fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(CaseLogError::OpenLog {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let (mut last_hash, mut next_seq) = (GENESIS.to_owned(), 1);
        if let Some(bytes) = existing {
            let entries = verify(&bytes).map_err(|source| CaseLogError::BrokenChain {
                path: path.to_owned(),
                source,
            })?;
            if let Some(last) = String::from_utf8_lossy(&bytes).lines().last()
                && let Ok((_, hash)) = unseal(last)
            {
                last_hash = hash;
            }
            next_seq = entries.len() as u64 + 1;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| CaseLogError::OpenLog {
                path: path.to_owned(),
                source,
            })?;
        for line in std::mem::take(&mut self.pending) {
            let (mut entry, _) = unseal(&line).map_err(|e| CaseLogError::WriteLog {
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?;
            entry.seq = next_seq;
            entry.prev = last_hash.clone();
            let (relinked, hash) = seal(&entry);
            write_line(&mut file, path, &relinked)?;
            last_hash = hash;
            next_seq += 1;
        }
        self.file = Some((file, path.to_owned()));
        self.last_hash = last_hash;
        self.next_seq = next_seq;
        Ok(())
    }

    /// A log whose entries so far are the (verified) lines of another log, e.g. the one kept in RAM before
    /// a destination existed; [`CaseLog::attach`] then writes them out.
    pub fn from_verified_lines(bytes: &[u8]) -> Result<Self, ChainError> {
        let entries = verify(bytes)?;
        let text = String::from_utf8_lossy(bytes);
        let pending: Vec<String> = text.lines().map(str::to_owned).collect();
        let last_hash = pending
            .last()
            .and_then(|l| unseal(l).ok())
            .map_or_else(|| GENESIS.to_owned(), |(_, h)| h);
        Ok(CaseLog {
            file: None,
            pending,
            last_hash,
            next_seq: entries.len() as u64 + 1,
        })
    }

    /// Entries kept in memory, not yet written to a file.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The entries kept in memory as the log file's bytes (a log stored as an object, not a file).
    pub fn pending_text(&self) -> String {
        self.pending.iter().map(|l| format!("{l}\n")).collect()
    }
}

fn write_line(file: &mut File, path: &Path, line: &str) -> Result<(), CaseLogError> {
    let err = |source| CaseLogError::WriteLog {
        path: path.to_owned(),
        source,
    };
    file.write_all(format!("{line}\n").as_bytes())
        .map_err(err)?;
    file.sync_data().map_err(err)
}

/// Checks a whole log: every line matches its own hash, sequence numbers count up from 1, each `prev` is
/// the hash of the line before. Returns the entries.
pub fn verify(bytes: &[u8]) -> Result<Vec<Entry>, ChainError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ChainError {
        line: 0,
        reason: format!("not UTF-8: {e}"),
    })?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ChainError {
            line: text.lines().count(),
            reason: "the last line is truncated".to_owned(),
        });
    }
    let mut prev = GENESIS.to_owned();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (entry, hash) = unseal(line).map_err(|reason| ChainError { line: n, reason })?;
        if entry.prev != prev {
            return Err(ChainError { line: n, reason: "its prev does not match the SHA-256 of the line before (edited, inserted or deleted lines)".to_owned() });
        }
        if entry.seq != n as u64 {
            return Err(ChainError {
                line: n,
                reason: format!("sequence number {} where {n} was expected", entry.seq),
            });
        }
        prev = hash;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cmd: &str) -> Record {
        Record {
            kind: "action".into(),
            command: cmd.into(),
            detail: serde_json::json!({"exit": 0}),
        }
    }

    #[test]
    fn chain_verifies_and_detects_any_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case-log.jsonl");
        let mut log = CaseLog::in_memory();
        log.append(rec("case new CASE-7")).unwrap();
        log.append(rec("unlock /dev/sdc")).unwrap();
        assert_eq!(log.pending(), 2);
        log.attach(&path).unwrap();
        assert_eq!(log.pending(), 0);
        log.append(rec("acquire /dev/sda")).unwrap();
        let bytes = fs::read(&path).unwrap();
        let entries = verify(&bytes).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].command, "acquire /dev/sda");
        // Every single-byte change anywhere breaks verification.
        for i in 0..bytes.len() {
            let mut edited = bytes.clone();
            edited[i] = if edited[i] == b'a' { b'b' } else { b'a' };
            assert!(verify(&edited).is_err(), "edit at byte {i} went unnoticed");
        }
        // Deleting a line breaks it too.
        let text = String::from_utf8(bytes).unwrap();
        let without_second: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        assert_eq!(verify(without_second.as_bytes()).unwrap_err().line, 2);
    }

    #[test]
    fn attaching_to_an_existing_log_continues_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case-log.jsonl");
        let mut first = CaseLog::in_memory();
        first.attach(&path).unwrap();
        first.append(rec("one")).unwrap();
        drop(first);
        let mut second = CaseLog::in_memory();
        second.append(rec("two")).unwrap();
        second.attach(&path).unwrap();
        second.append(rec("three")).unwrap();
        let entries = verify(&fs::read(&path).unwrap()).unwrap();
        let cmds: Vec<&str> = entries.iter().map(|e| e.command.as_str()).collect();
        assert_eq!(cmds, ["one", "two", "three"]);
    }

    #[test]
    fn a_broken_log_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case-log.jsonl");
        fs::write(&path, "{\"seq\":1}\n").unwrap();
        let mut log = CaseLog::in_memory();
        assert!(matches!(
            log.attach(&path),
            Err(CaseLogError::BrokenChain { .. })
        ));
    }

    #[test]
    fn truncated_last_line_is_reported() {
        let mut log = CaseLog::in_memory();
        log.append_at(rec("x"), UNIX_EPOCH, None).unwrap();
        let line = format!("{}\n", log.pending[0]);
        assert!(verify(line.as_bytes()).is_ok());
        assert!(verify(&line.as_bytes()[..line.len() - 5]).is_err());
    }
}
