//! `acquisition.log`: a human-readable, append-only account of the run (UTC timestamps), written as it
//! happens so it survives an interruption. Writing it is best effort while the run goes on (a full
//! destination must not hide the real error); the closing lines are checked.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::manifest::{LOG_FILE, now_rfc3339};

/// The open log.
pub struct AcqLog {
    file: Option<File>,
}

impl AcqLog {
    /// Opens `DIR/acquisition.log` for appending.
    pub fn open(dir: &Path) -> io::Result<AcqLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        Ok(AcqLog { file: Some(file) })
    }

    /// A log that writes nowhere (unit tests of parts that log).
    pub fn none() -> AcqLog {
        AcqLog { file: None }
    }

    /// Appends one timestamped line, ignoring errors.
    pub fn line(&mut self, msg: &str) {
        let _ = self.try_line(msg);
    }

    /// Appends one timestamped line.
    pub fn try_line(&mut self, msg: &str) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(format!("{} {msg}\n", now_rfc3339()).as_bytes()),
            None => Ok(()),
        }
    }

    /// Flushes to stable storage.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_all(),
            None => Ok(()),
        }
    }
}
