//! Before an acquisition reads a byte: the source opened read-only (a block device's whole family
//! write-blocked first and refused when mounted read-write), its identity described, and the
//! destination checked (not inside or on the source, not a directory that already holds an
//! acquisition, writable).

use std::fs;
use std::path::{Path, PathBuf};

use super::AcquireError;
use super::manifest::{LOG_FILE, MANIFEST_FILE, MAP_FILE, ReadOnlyState, SUMS_FILE, SourceInfo};
use super::source::{Source, SourceKind};

/// Identity and state of the source, gathered before reading.
pub struct SourceFacts {
    pub info: SourceInfo,
    pub read_only: ReadOnlyState,
    pub family: Vec<String>,
}

/// Opens a source the way every acquisition does: a block device (and its family) is refused when
/// mounted read-write and write-blocked before the read-only open; its identity is described.
pub fn open_source(path: &Path) -> Result<(Source, SourceFacts), AcquireError> {
    // Write-block a block device (and its family) before anything, even a read-only open, touches it.
    let is_block = fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    let protected = if is_block {
        Some(protect_block_device(path)?)
    } else {
        None
    };
    let source = Source::open(path)?;
    let size = source.size()?;
    let facts = match (source.kind(), protected) {
        (SourceKind::BlockDevice, Some(mut facts)) => {
            facts.info.size_bytes = size;
            facts
        }
        (SourceKind::BlockDevice, None) => protect_block_device(path).map(|mut f| {
            f.info.size_bytes = size;
            f
        })?,
        (SourceKind::RegularFile, _) => SourceFacts {
            info: SourceInfo {
                path: path.display().to_string(),
                kind: "regular_file".to_owned(),
                size_bytes: size,
                logical_sector_size: 512,
                physical_sector_size: 512,
                model: None,
                serial: None,
                wwn: None,
                transport: None,
            },
            read_only: ReadOnlyState::default(),
            family: Vec::new(),
        },
    };
    Ok((source, facts))
}

/// Refuses a family mounted read-write, sets BLKROSET on every member and checks it stuck. The size is
/// filled in by the caller once the source is open.
fn protect_block_device(path: &Path) -> Result<SourceFacts, AcquireError> {
    let dev = crate::devices::describe(path).map_err(|source| AcquireError::DescribeSource {
        path: path.to_owned(),
        source,
    })?;
    let protect = |source| AcquireError::ProtectSource {
        path: path.to_owned(),
        source,
    };
    let mounts: Vec<String> = crate::blkro::family_mounts(path)
        .map_err(protect)?
        .into_iter()
        .filter(|m| m.read_write)
        .map(|m| format!("{} on {}", m.source, m.target))
        .collect();
    if !mounts.is_empty() {
        return Err(AcquireError::RejectMountedSource {
            path: path.to_owned(),
            mounts: mounts.join(", "),
        });
    }
    let state = crate::blkro::protect_family(path).map_err(protect)?;
    if let Some(m) = state.members.iter().find(|m| !m.read_only_after) {
        return Err(AcquireError::RejectUnprotectedSource {
            path: path.to_owned(),
            member: m.path.clone(),
        });
    }
    let family = crate::blkro::family_names(path).map_err(protect)?;
    Ok(SourceFacts {
        info: SourceInfo {
            path: path.display().to_string(),
            kind: "block_device".to_owned(),
            size_bytes: 0,
            logical_sector_size: dev.logical_sector_size.max(512),
            physical_sector_size: dev
                .physical_sector_size
                .max(dev.logical_sector_size)
                .max(512),
            model: dev.model,
            serial: dev.serial,
            wwn: dev.wwn,
            transport: Some(dev.transport),
        },
        read_only: ReadOnlyState {
            applied: true,
            before: state
                .members
                .iter()
                .map(|m| (m.path.clone(), m.read_only_before))
                .collect(),
            after: state
                .members
                .iter()
                .map(|m| (m.path.clone(), m.read_only_after))
                .collect(),
        },
        family,
    })
}

/// The nearest existing ancestor of `p` (itself if it exists), canonicalized.
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    abs.ancestors().find_map(|a| fs::canonicalize(a).ok())
}

pub(crate) fn check_destination(
    src: &Path,
    kind: SourceKind,
    out: &Path,
    family: &[String],
) -> Result<(), AcquireError> {
    let Some(anchor) = existing_ancestor(out) else {
        return Ok(());
    };
    match kind {
        SourceKind::BlockDevice => {
            if let Ok(mounts) = crate::blkro::family_mounts(src)
                && let Some(m) = mounts.iter().find(|m| anchor.starts_with(&m.target))
            {
                return Err(AcquireError::RejectDestinationInsideSource {
                    dest: out.to_owned(),
                    mount: format!("{} on {}", m.source, m.target),
                });
            }
            let disks = crate::blkro::backing_disks(&anchor);
            if let Some(d) = disks.iter().find(|d| family.contains(d)) {
                return Err(AcquireError::RejectDestinationOnSource {
                    dest: out.to_owned(),
                    disk: d.clone(),
                });
            }
        }
        SourceKind::RegularFile => {
            if let Ok(canon) = fs::canonicalize(src) {
                let name = canon
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ours = name.starts_with("image.raw")
                    || [MANIFEST_FILE, SUMS_FILE, LOG_FILE, MAP_FILE].contains(&name.as_str())
                    || name.starts_with(".resume");
                if canon.parent() == Some(anchor.as_path()) && ours || canon == anchor {
                    return Err(AcquireError::RejectDestinationHoldingSource {
                        dest: out.to_owned(),
                        source_file: canon,
                    });
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn prepare_directory(dir: &Path, resume: bool) -> Result<(), AcquireError> {
    refuse_nested(dir)?;
    fs::create_dir_all(dir).map_err(|source| AcquireError::CreateDestination {
        path: dir.to_owned(),
        source,
    })?;
    let probe = dir.join(".rescue-write-test");
    let unwritable = |source| AcquireError::RejectUnwritableDestination {
        path: dir.to_owned(),
        source,
    };
    fs::write(&probe, b"x").map_err(unwritable)?;
    fs::remove_file(&probe).map_err(unwritable)?;
    if !resume {
        let entries = fs::read_dir(dir).map_err(|source| AcquireError::CreateDestination {
            path: dir.to_owned(),
            source,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("image.raw")
                || name == MANIFEST_FILE
                || name == SUMS_FILE
                || name.starts_with(".resume")
            {
                return Err(AcquireError::RejectExistingAcquisition {
                    path: dir.to_owned(),
                    found: name,
                });
            }
        }
    }
    Ok(())
}

/// Refuses a destination inside another acquisition: a directory above it (or it, for a file path
/// given as `--out`) holds a `manifest.json` of an acquisition or a resume checkpoint.
fn refuse_nested(dir: &Path) -> Result<(), AcquireError> {
    let Some(anchor) = existing_ancestor(dir) else {
        return Ok(());
    };
    let canon_dir = fs::canonicalize(dir).ok();
    for a in anchor.ancestors() {
        if Some(a) == canon_dir.as_deref() {
            // The directory itself: a new run refuses an existing acquisition there, a resume wants it.
            continue;
        }
        let holds_manifest = fs::read(a.join(MANIFEST_FILE)).is_ok_and(|b| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .is_ok_and(|v| v["schema"] == super::manifest::SCHEMA)
        });
        if holds_manifest || a.join(super::checkpoint::CHECKPOINT_FILE).is_file() {
            return Err(AcquireError::RejectNestedDestination {
                dest: dir.to_owned(),
                holder: a.to_owned(),
            });
        }
    }
    Ok(())
}
