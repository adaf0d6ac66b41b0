//! The volatile state of a running host, collected in order of volatility: [`Phase::Volatile`]
//! (processes with their executables' hashes, copies of deleted and `memfd:` executables, sockets with
//! their owning processes, PIDs hidden from the `/proc` listing) before the memory capture, and
//! [`Phase::Stable`] (modules and taint, mounts, interfaces/addresses/routes, logged-in users, kernel
//! command line and version, uptime and boot time, time sources, the symbol material Volatility needs)
//! after it.

use super::{Artifact, Roots};

/// Which part of the volatile state to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// What changes within seconds: collected before the memory capture.
    Volatile,
    /// What a memory capture does not change: collected after it.
    Stable,
}

/// Collects one phase. Never fails as a whole: what cannot be read becomes a note in the artifact
/// that needed it. `progress` receives the name of each collector as it starts.
pub fn collect(phase: Phase, roots: &Roots, progress: &mut dyn FnMut(&str)) -> Vec<Artifact> {
    // Filled in by the state collectors (issue 15); the orchestrator in `live` calls this.
    let _ = (phase, roots, progress);
    Vec::new()
}
