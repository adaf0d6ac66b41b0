//! A volume group as its metadata text describes it, and the device-mapper tables of its logical
//! volumes: linear and striped segments only. Every other segment type (thin, cache, raid, mirror,
//! snapshot, vdo, writecache, integrity) is refused by name; nothing here writes metadata.

use std::collections::BTreeMap;

use super::text::{Section, Value};

/// Why a VG or LV cannot be described or activated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VgError {
    #[error("the metadata text holds no volume group section")]
    NoVolumeGroup,
    #[error("VG {vg}: {what}")]
    Malformed { vg: String, what: String },
}

/// One PV as the VG metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PhysicalVolume {
    /// The metadata's key (`pv0`).
    pub key: String,
    /// UUID in lvm2's dashed form.
    pub id: String,
    /// The device path lvm2 last saw it on (a hint only).
    pub device_hint: String,
    /// First sector of the first extent.
    pub pe_start: u64,
    pub pe_count: u64,
    /// lvm2 recorded the PV as missing.
    pub flagged_missing: bool,
}

/// What a segment maps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum SegmentKind {
    /// `striped` (one stripe: linear): `(pv key, first extent on it)` per stripe.
    Striped {
        stripe_size_sectors: u64,
        stripes: Vec<(String, u64)>,
    },
    /// Any other segment type, by its lvm2 name.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    pub kind: SegmentKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogicalVolume {
    pub name: String,
    pub id: String,
    pub visible: bool,
    pub segments: Vec<Segment>,
    /// Set when a snapshot segment names this LV as its copy-on-write store.
    pub snapshot_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeGroup {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    pub extent_size_sectors: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
}

fn uint(sec: &Section, key: &str, vg: &str) -> Result<u64, VgError> {
    sec.int(key)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| VgError::Malformed {
            vg: vg.to_owned(),
            what: format!("{key} missing or negative"),
        })
}

/// Reads the VG from the parsed metadata text (its one top-level section).
pub fn from_metadata(top: &Section) -> Result<VolumeGroup, VgError> {
    let (name, sec) = top.sections().next().ok_or(VgError::NoVolumeGroup)?;
    let bad = |what: String| VgError::Malformed {
        vg: name.to_owned(),
        what,
    };
    let id = sec.str("id").ok_or_else(|| bad("no id".into()))?.to_owned();
    let seqno = uint(sec, "seqno", name)?;
    let extent_size_sectors = uint(sec, "extent_size", name)?;
    if extent_size_sectors == 0 {
        return Err(bad("extent_size is 0".into()));
    }
    let mut pvs = Vec::new();
    for (key, pv) in sec
        .section("physical_volumes")
        .map(|s| s.sections().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        pvs.push(PhysicalVolume {
            key: key.to_owned(),
            id: pv
                .str("id")
                .ok_or_else(|| bad(format!("PV {key} has no id")))?
                .to_owned(),
            device_hint: pv.str("device").unwrap_or("").to_owned(),
            pe_start: uint(pv, "pe_start", name)?,
            pe_count: uint(pv, "pe_count", name)?,
            flagged_missing: pv.flags("flags").contains(&"MISSING")
                || pv.flags("status").contains(&"MISSING"),
        });
    }
    let mut lvs = Vec::new();
    let mut cow_of: BTreeMap<String, String> = BTreeMap::new();
    for (lv_name, lv) in sec
        .section("logical_volumes")
        .map(|s| s.sections().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let mut segments = Vec::new();
        for (_, seg) in lv.sections() {
            let start_extent = uint(seg, "start_extent", name)?;
            let extent_count = uint(seg, "extent_count", name)?;
            let ty = seg.str("type").unwrap_or("");
            let kind = if ty == "striped" {
                let items = seg.array("stripes").unwrap_or_default();
                let mut stripes = Vec::new();
                for pair in items.chunks(2) {
                    match pair {
                        [Value::Str(pv), Value::Int(pe)] if *pe >= 0 => {
                            stripes.push((pv.clone(), *pe as u64))
                        }
                        _ => return Err(bad(format!("LV {lv_name}: malformed stripes list"))),
                    }
                }
                let count = seg.int("stripe_count").unwrap_or(1);
                if stripes.is_empty() || count != stripes.len() as i64 {
                    return Err(bad(format!(
                        "LV {lv_name}: stripe_count {count} but {} stripes listed",
                        stripes.len()
                    )));
                }
                if !extent_count.is_multiple_of(stripes.len() as u64) {
                    return Err(bad(format!(
                        "LV {lv_name}: {extent_count} extents do not divide into {} stripes",
                        stripes.len()
                    )));
                }
                SegmentKind::Striped {
                    stripe_size_sectors: seg.int("stripe_size").unwrap_or(0).max(0) as u64,
                    stripes,
                }
            } else {
                if ty == "snapshot"
                    && let (Some(cow), Some(origin)) = (seg.str("cow_store"), seg.str("origin"))
                {
                    cow_of.insert(cow.to_owned(), origin.to_owned());
                }
                SegmentKind::Unsupported(ty.to_owned())
            };
            segments.push(Segment {
                start_extent,
                extent_count,
                kind,
            });
        }
        segments.sort_by_key(|s| s.start_extent);
        lvs.push(LogicalVolume {
            name: lv_name.to_owned(),
            id: lv.str("id").unwrap_or("").to_owned(),
            visible: lv.flags("status").contains(&"VISIBLE"),
            segments,
            snapshot_of: None,
        });
    }
    for lv in &mut lvs {
        lv.snapshot_of = cow_of.get(&lv.name).cloned();
    }
    Ok(VolumeGroup {
        name: name.to_owned(),
        id,
        seqno,
        extent_size_sectors,
        pvs,
        lvs,
    })
}

/// The name device-mapper gets: VG and LV with each `-` doubled, joined by `-` (lvm2's `dm_build_dm_name`).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// lvm2's DM UUID: `LVM-` and both UUIDs without dashes.
pub fn dm_uuid(vg_id: &str, lv_id: &str) -> String {
    format!("LVM-{}{}", vg_id.replace('-', ""), lv_id.replace('-', ""))
}

/// One device-mapper target line: start and length in sectors, type and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub kind: &'static str,
    pub params: String,
}

/// Why an LV gets no table.
pub fn refusal(vg: &VolumeGroup, lv: &LogicalVolume) -> Option<String> {
    if let Some(origin) = &lv.snapshot_of {
        return Some(format!(
            "a snapshot of {origin} (snapshots are not supported; {origin} itself is)"
        ));
    }
    let kinds: Vec<&str> = lv
        .segments
        .iter()
        .filter_map(|s| match &s.kind {
            SegmentKind::Unsupported(t) => Some(t.as_str()),
            SegmentKind::Striped { .. } => None,
        })
        .collect();
    if let Some(t) = kinds.first() {
        let what = match *t {
            t if t.starts_with("thin") => "a thin volume or pool",
            t if t.starts_with("cache") || t == "writecache" => "a cached volume",
            t if t.starts_with("raid") => "an LVM RAID volume",
            "mirror" => "an LVM mirror",
            "snapshot" => "a snapshot",
            _ => "of an unsupported type",
        };
        return Some(format!(
            "{what} (segment type {t}); only linear and striped volumes are activated"
        ));
    }
    if lv.segments.is_empty() {
        return Some("it has no segments".into());
    }
    let mut next = 0;
    for s in &lv.segments {
        if s.start_extent != next {
            return Some(format!(
                "its segments leave a gap at extent {next} of {}",
                vg.name
            ));
        }
        next = s.start_extent + s.extent_count;
    }
    None
}

/// The table of `lv`: `pv_dev` gives `major:minor` of each PV key that is present.
pub fn table(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    pv_dev: &BTreeMap<String, String>,
) -> Result<Vec<Target>, String> {
    if let Some(why) = refusal(vg, lv) {
        return Err(why);
    }
    let es = vg.extent_size_sectors;
    let mut out = Vec::new();
    for seg in &lv.segments {
        let SegmentKind::Striped {
            stripe_size_sectors,
            stripes,
        } = &seg.kind
        else {
            return Err("unsupported segment".into());
        };
        // Extent numbers and sizes are the metadata's: arithmetic on them is checked.
        let overflow = || {
            format!(
                "segment at extent {} overflows 64-bit sectors",
                seg.start_extent
            )
        };
        let per_stripe = seg.extent_count / stripes.len() as u64;
        let mut places = Vec::new();
        for (key, pe) in stripes {
            let pv = vg
                .pvs
                .iter()
                .find(|p| &p.key == key)
                .ok_or_else(|| format!("segment names {key}, which the VG does not list"))?;
            if pe
                .checked_add(per_stripe)
                .is_none_or(|end| end > pv.pe_count)
            {
                return Err(format!(
                    "segment runs past the {} extents of {key}",
                    pv.pe_count
                ));
            }
            let dev = pv_dev
                .get(key)
                .ok_or_else(|| format!("PV {key} ({}) is missing", pv.id))?;
            let at = pe
                .checked_mul(es)
                .and_then(|s| s.checked_add(pv.pe_start))
                .ok_or_else(overflow)?;
            places.push(format!("{dev} {at}"));
        }
        let (kind, params) = if places.len() == 1 {
            ("linear", places.remove(0))
        } else {
            if *stripe_size_sectors == 0 {
                return Err("striped segment without a stripe_size".into());
            }
            (
                "striped",
                format!(
                    "{} {stripe_size_sectors} {}",
                    places.len(),
                    places.join(" ")
                ),
            )
        };
        out.push(Target {
            start: seg.start_extent.checked_mul(es).ok_or_else(overflow)?,
            length: seg.extent_count.checked_mul(es).ok_or_else(overflow)?,
            kind,
            params,
        });
    }
    Ok(out)
}
