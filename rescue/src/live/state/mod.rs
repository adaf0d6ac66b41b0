//! The volatile state of a running host, collected in order of volatility: [`Phase::Volatile`]
//! (processes with their executables' hashes, copies of deleted and `memfd:` executables, PIDs hidden
//! from the `/proc` listing, sockets with their owning processes) before the memory capture, and
//! [`Phase::Stable`] (modules and taint, mounts, interfaces/addresses/routes, logged-in users, kernel
//! command line and version, uptime and boot time, time sources, the symbol material Volatility needs)
//! after it.

//!
//! One submodule per collector, each writing one JSON document `state/NAME.json` (shapes in
//! `docs/live-state.md`) whose `notes` say what could not be read; [`doc`] holds what they share.
//! Everything is read from [`Roots`] (`/proc`, `/sys`, `/dev`, `/`): no program of the suspect host
//! runs and none of its libraries is loaded.

pub mod clock;
mod doc;
pub mod hidden;
pub mod kernel;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod processes;
pub mod sockets;
pub mod symbols;
pub mod users;

#[cfg(test)]
mod tests;

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
    let mut out = Vec::new();
    match phase {
        Phase::Volatile => {
            let mut cache = processes::ExeCache::default();
            progress("processes");
            let listing = processes::collect(roots, &mut cache, &mut out);
            // The probe comes before the sockets so that a hidden process's connections are
            // attributed to it.
            progress("hidden processes");
            let hidden = hidden::collect(roots, &listing.listed, &mut cache, &mut out);
            progress("sockets");
            let mut pids = listing.listed;
            pids.extend(hidden);
            out.push(sockets::collect(roots, &pids));
        }
        Phase::Stable => {
            progress("modules");
            out.push(modules::collect(roots));
            progress("mounts");
            out.push(mounts::collect(roots));
            progress("network");
            out.push(network::collect(roots));
            progress("users");
            out.push(users::collect(roots));
            progress("kernel");
            out.push(kernel::collect(roots));
            progress("time");
            out.push(clock::collect(roots));
            progress("symbols");
            symbols::collect(roots, &mut out);
        }
    }
    out
}
