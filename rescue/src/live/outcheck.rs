//! Where `--out` of a live response lies. Writing to a disk of the running system overwrites the
//! deleted files an examiner would recover later; writing to a RAM filesystem displaces the memory
//! being captured. Both are refused unless the operator says `--allow-local-out`.

use std::path::Path;

/// The kind of place `--out` lies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutPlace {
    /// A disk that holds none of the running system's filesystems (an evidence stick), or a network
    /// filesystem.
    Separate,
    /// A disk that holds the running system's filesystems (named, with what it holds).
    SystemDisk { disk: String, holds: Vec<String> },
    /// A RAM filesystem (tmpfs, ramfs).
    Ram { fstype: String },
}

/// Classifies `out` (an existing directory, or the nearest existing parent of one to be created).
pub fn classify(out: &Path) -> std::io::Result<OutPlace> {
    // Filled in with the mount table and the disk of each mounted filesystem (issue 15).
    let _ = out;
    Ok(OutPlace::Separate)
}
