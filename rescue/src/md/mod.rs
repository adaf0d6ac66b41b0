//! md RAID on request, read-only: find member superblocks on write-blocked devices ([`superblock`]),
//! group them by array UUID, check that each set is complete and consistent ([`plan`]), and assemble
//! it read-only through the md ioctls with the array started `readonly` so the kernel writes no
//! superblock and starts no resync ([`assemble`]). Never called at boot (init must not assemble md).

pub mod assemble;
pub mod superblock;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use superblock::{Superblock, SuperblockError, Version};

/// Why an array cannot be assembled, or assembly failed.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("array {name} ({uuid}, {level}) is missing {missing}; found {found}")]
    Incomplete {
        name: String,
        uuid: String,
        level: String,
        missing: String,
        found: String,
    },
    #[error("array {name} ({uuid}) is inconsistent: {what}")]
    Inconsistent {
        name: String,
        uuid: String,
        what: String,
    },
    #[error("{0} is not a block device (attach an image with a read-only loop device first)")]
    NotBlockDevice(String),
    #[error("no md member superblock on {0}")]
    NoSuperblock(String),
    #[error("reading the md superblock of {device}")]
    Read {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{device}")]
    Superblock {
        device: String,
        #[source]
        source: SuperblockError,
    },
    #[error("write-blocking {device} before reading it")]
    WriteBlock {
        device: String,
        #[source]
        source: crate::blkro::BlkRoError,
    },
    #[error("{what}")]
    Kernel {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One member found on a device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Member {
    pub device: PathBuf,
    /// `major:minor` of the device.
    pub dev: (u32, u32),
    pub superblock: Superblock,
}

/// An array ready to assemble: members ordered by role, the newest superblock's view of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArrayPlan {
    pub uuid: String,
    /// 1.x name without the `homehost:` prefix; 0.90: `md-` and the UUID's first word.
    pub name: String,
    pub version: Version,
    pub level: i32,
    pub raid_disks: u32,
    pub events: u64,
    pub members: Vec<Member>,
    /// Roles with no member (only with `degraded` allowed).
    pub missing_roles: Vec<u32>,
}

/// The level as people write it: RAID1, RAID5, linear.
pub fn level_name(level: i32) -> String {
    match level {
        -1 => "linear".to_owned(),
        -4 => "multipath".to_owned(),
        -5 => "faulty".to_owned(),
        l => format!("RAID{l}"),
    }
}

/// How many members a level can lose and still serve every byte.
fn redundancy(level: i32, raid_disks: u32) -> u32 {
    match level {
        1 => raid_disks.saturating_sub(1),
        4 | 5 => 1,
        6 => 2,
        // RAID10 depends on which copies are gone; the kernel decides when degraded is allowed.
        10 => raid_disks / 2,
        _ => 0,
    }
}

/// The array's name as `md assemble` shows it (`/dev/md/NAME`): the 1.x name without `homehost:`.
pub fn short_name(sb: &Superblock) -> String {
    match sb.name.rsplit_once(':') {
        Some((_, n)) if !n.is_empty() => n.to_owned(),
        _ if !sb.name.is_empty() => sb.name.clone(),
        _ => format!("md-{}", &sb.array_uuid[..8]),
    }
}

/// Groups members by array UUID and checks each set: every role of the newest superblock present on
/// a member with the newest event count, no role twice, no member mid-reshape. `degraded` accepts a
/// set missing no more members than its level can lose (stale members are then left out).
pub fn plan(members: Vec<Member>, degraded: bool) -> Vec<Result<ArrayPlan, MdError>> {
    let mut sets: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for m in members {
        sets.entry(m.superblock.array_uuid.clone())
            .or_default()
            .push(m);
    }
    sets.into_values()
        .map(|set| plan_one(set, degraded))
        .collect()
}

fn describe(m: &Member) -> String {
    match m.superblock.role {
        Some(r) => format!(
            "{} (role {r}, events {})",
            m.device.display(),
            m.superblock.events
        ),
        None => format!("{} (spare)", m.device.display()),
    }
}

fn plan_one(mut set: Vec<Member>, degraded: bool) -> Result<ArrayPlan, MdError> {
    set.sort_by(|a, b| a.device.cmp(&b.device));
    let newest = set
        .iter()
        .max_by_key(|m| m.superblock.events)
        .map(|m| m.superblock.clone())
        .ok_or_else(|| MdError::NoSuperblock("an empty set".to_owned()))?;
    let name = short_name(&newest);
    let inconsistent = |what: String| MdError::Inconsistent {
        name: name.clone(),
        uuid: newest.array_uuid.clone(),
        what,
    };
    for m in &set {
        let sb = &m.superblock;
        if sb.version != newest.version
            || sb.level != newest.level
            || sb.raid_disks != newest.raid_disks
            || sb.chunk_bytes != newest.chunk_bytes
            || sb.layout != newest.layout
        {
            return Err(inconsistent(format!(
                "{} says {} {} with {} disks, the newest member says {} {} with {} disks",
                m.device.display(),
                sb.version,
                level_name(sb.level),
                sb.raid_disks,
                newest.version,
                level_name(newest.level),
                newest.raid_disks
            )));
        }
        if let Some(why) = &sb.unusable_reason {
            return Err(inconsistent(format!("{}: {why}", m.device.display())));
        }
    }
    let mut by_role: BTreeMap<u32, Member> = BTreeMap::new();
    let mut stale = Vec::new();
    for m in &set {
        let Some(role) = m.superblock.role else {
            continue;
        };
        if m.superblock.events < newest.events {
            stale.push(m.clone());
            continue;
        }
        if let Some(other) = by_role.get(&role) {
            return Err(inconsistent(format!(
                "{} and {} both claim role {role}",
                other.device.display(),
                m.device.display()
            )));
        }
        by_role.insert(role, m.clone());
    }
    let missing_roles: Vec<u32> = (0..newest.raid_disks)
        .filter(|r| !by_role.contains_key(r))
        .collect();
    if !stale.is_empty() && !degraded {
        return Err(inconsistent(format!(
            "{} older than the newest superblock (events {}); assemble with --degraded to leave {} out",
            stale.iter().map(describe).collect::<Vec<_>>().join(", "),
            newest.events,
            if stale.len() == 1 { "it" } else { "them" }
        )));
    }
    if !missing_roles.is_empty() {
        let recorded: BTreeMap<u32, String> = newest.active_roles.iter().cloned().collect();
        let missing = missing_roles
            .iter()
            .map(|r| match (recorded.get(r), newest.version) {
                (Some(d), Version::V090) => format!("role {r} (last seen as device {d})"),
                (Some(d), _) => format!("role {r} ({d})"),
                (None, _) => format!("role {r} (already missing when the array last ran)"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let too_many = missing_roles.len() as u32 > redundancy(newest.level, newest.raid_disks);
        if !degraded || too_many {
            return Err(MdError::Incomplete {
                name,
                uuid: newest.array_uuid.clone(),
                level: format!(
                    "{}, {} members",
                    level_name(newest.level),
                    newest.raid_disks
                ),
                missing: format!(
                    "member {missing}{}",
                    if too_many {
                        ""
                    } else {
                        " (--degraded reads it without that member)"
                    }
                ),
                found: set.iter().map(describe).collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(ArrayPlan {
        uuid: newest.array_uuid.clone(),
        name,
        version: newest.version,
        level: newest.level,
        raid_disks: newest.raid_disks,
        events: newest.events,
        members: by_role.into_values().collect(),
        missing_roles,
    })
}

#[cfg(test)]
mod tests;
