//! Live response on a running, suspect host, before anyone reboots it: memory in LiME format and the
//! volatile state (processes, sockets, modules, mounts, network, users, kernel and its symbols), read
//! from `/proc`, `/sys` and `/dev` by this static binary alone, hashed and written to the same
//! destinations as a disk acquisition.
//!
//! - [`state`]: the volatile-state collectors, each a JSON file or a copied file ([`Artifact`]);
//! - [`memory`]: the RAM ranges and the sources of physical memory (`/proc/kcore`, `/dev/crash`,
//!   `/dev/mem`); [`lime`]: the LiME stream read from one, a source of the acquisition driver;
//! - [`run`]: the orchestrator, in order of volatility, with the manifest and `SHA256SUMS`;
//! - [`outcheck`]: whether `--out` lies on a disk of the running system (it would overwrite deleted
//!   evidence) or in RAM (it would displace the memory being captured).
//!
//! Nothing here prints, reads a terminal, loads a module, or writes anywhere but the destination.

pub mod lime;
pub mod memory;
pub mod outcheck;
mod run;
pub mod state;

pub use run::{
    CASE_LOG, CaseLogAt, LIVE_MANIFEST, LIVE_SCHEMA, LiveError, LiveEvent, LiveManifest,
    LiveOptions, LiveOutcome, MEMORY_DIR, MEMORY_IMAGE, MemoryRecord, format_name, run,
};

use std::path::PathBuf;

/// One collected file of the live response: a JSON document or a copied file (an executable, the
/// kernel image, `kallsyms`), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path relative to the live-response directory, `/`-separated (`state/processes.json`,
    /// `state/exe/1234-sshd`, `symbols/kallsyms`).
    pub name: String,
    pub bytes: Vec<u8>,
    /// What was read to make it (`/proc/*/stat, /proc/*/cmdline, /proc/*/exe`).
    pub source: String,
    /// RFC 3339 UTC time the collection of this artifact began.
    pub collected_at: String,
    /// What could not be read or looked wrong while collecting it, in words.
    pub notes: Vec<String>,
}

/// Where the collectors read the running system: `/proc`, `/sys`, `/dev` and `/` on a real host; a
/// fixture tree in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
    /// The running system's root (for `/boot`, `/var/run/utmp`, `/etc`, the package database).
    pub root: PathBuf,
}

impl Roots {
    /// The running system's own.
    pub fn host() -> Self {
        Roots {
            proc: "/proc".into(),
            sys: "/sys".into(),
            dev: "/dev".into(),
            root: "/".into(),
        }
    }
}
