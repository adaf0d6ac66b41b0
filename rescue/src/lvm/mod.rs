//! LVM2 on request, read-only, without the lvm2 tools: PV labels and metadata areas are read from
//! write-blocked devices ([`label`]), the newest VG metadata text (highest `seqno` over all PVs) is
//! parsed ([`text`], [`vg`]), and each linear or striped LV becomes a device-mapper device with a
//! read-only table ([`crate::dm`]), named as lvm2 names it: `/dev/mapper/VG-LV` (dashes doubled) and
//! `/dev/VG/LV`. No metadata is ever written. Never called at boot (init must not activate LVM).

pub mod label;
pub mod text;
pub mod vg;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::dm::{self, DmError};

/// Why LVM could not be read or activated.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("reading {device}")]
    Read {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a block device (attach an image with a read-only loop device first)")]
    NotBlockDevice(String),
    #[error("write-blocking {device} before reading it")]
    WriteBlock {
        device: String,
        #[source]
        source: crate::blkro::BlkRoError,
    },
    #[error("{device}")]
    Label {
        device: String,
        #[source]
        source: label::LabelError,
    },
    #[error("{device}: VG metadata")]
    Text {
        device: String,
        #[source]
        source: text::TextError,
    },
    #[error("{device}")]
    Vg {
        device: String,
        #[source]
        source: vg::VgError,
    },
    #[error("PV {uuid} is on both {first} and {second}; name the devices to use")]
    DuplicatePv {
        uuid: String,
        first: String,
        second: String,
    },
    #[error("VG {vg} is missing {missing}; refusing to activate any of its volumes")]
    MissingPv { vg: String, missing: String },
    #[error("two different VGs are named {name} ({a} and {b}); name the devices of one")]
    DuplicateVgName { name: String, a: String, b: String },
    #[error(transparent)]
    Dm(#[from] DmError),
    #[error("creating {path}")]
    Link {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A device holding a PV label, and the newest metadata found in its areas.
#[derive(Debug, Clone)]
pub struct PvDevice {
    pub device: PathBuf,
    pub dev: (u32, u32),
    pub label: label::PvLabel,
    /// The newest parsed VG in this PV's metadata areas (`None` for a PV without metadata areas).
    pub vg: Option<vg::VolumeGroup>,
}

/// Write-blocks `device` and reads its PV label and metadata; `Ok(None)` without a label.
pub fn read_pv(device: &Path) -> Result<Option<PvDevice>, LvmError> {
    read_pv_at(device, 0, true)
}

/// [`read_pv`] without write-blocking: a scan of every block device looks (reads cannot change a
/// disk) and write-blocks only the PVs of a VG it then activates ([`activate`]). On a host a scan thus
/// leaves no read-only flag on disks it merely looked at, which would make the host's own `fdisk`,
/// `mkfs` or LVM tools fail until the next reboot.
pub fn probe_pv(device: &Path) -> Result<Option<PvDevice>, LvmError> {
    read_pv_at(device, 0, false)
}

/// Write-blocks `device`, its disk, partitions and holders.
fn protect(device: &Path) -> Result<(), LvmError> {
    crate::blkro::protect_family(device)
        .map(drop)
        .map_err(|source| LvmError::WriteBlock {
            device: device.display().to_string(),
            source,
        })
}

/// [`read_pv`] of a PV whose first byte is at `base` on `device` (inside an md member: the array's data
/// offset). Every offset of the label and metadata areas counts from `base`. With `protect` the device
/// is write-blocked first.
fn read_pv_at(device: &Path, base: u64, protect: bool) -> Result<Option<PvDevice>, LvmError> {
    let name = device.display().to_string();
    let read_err = |source| LvmError::Read {
        device: name.clone(),
        source,
    };
    let meta = fs::metadata(device).map_err(read_err)?;
    if !meta.file_type().is_block_device() {
        return Err(LvmError::NotBlockDevice(name));
    }
    if protect {
        self::protect(device)?;
    }
    let file = fs::File::open(device).map_err(read_err)?;
    let at = |off: u64| base.saturating_add(off);
    let mut head = vec![0u8; 2048];
    let n = file.read_at(&mut head, at(0)).map_err(read_err)?;
    let lbl = match label::parse_label(&head[..n]) {
        Ok(l) => l,
        Err(label::LabelError::NotFound) => return Ok(None),
        Err(source) => {
            return Err(LvmError::Label {
                device: name,
                source,
            });
        }
    };
    let mut newest: Option<vg::VolumeGroup> = None;
    for area in &lbl.metadata_areas {
        let mut hdr = vec![0u8; label::MDA_HEADER_SIZE as usize];
        file.read_exact_at(&mut hdr, at(area.offset))
            .map_err(read_err)?;
        let lbl_err = |source| LvmError::Label {
            device: name.clone(),
            source,
        };
        let Some(raw) = label::parse_mda_header(*area, &hdr).map_err(lbl_err)? else {
            continue;
        };
        let txt = label::read_text(*area, raw, |off, buf| file.read_exact_at(buf, at(off)))
            .map_err(lbl_err)?;
        let top = text::parse(&txt).map_err(|source| LvmError::Text {
            device: name.clone(),
            source,
        })?;
        let parsed = vg::from_metadata(&top).map_err(|source| LvmError::Vg {
            device: name.clone(),
            source,
        })?;
        if newest.as_ref().is_none_or(|v| parsed.seqno > v.seqno) {
            newest = Some(parsed);
        }
    }
    let rdev = meta.rdev();
    Ok(Some(PvDevice {
        device: device.to_owned(),
        dev: (libc::major(rdev), libc::minor(rdev)),
        label: lbl,
        vg: newest,
    }))
}

/// A PV seen through one member of an md array that is not assembled: LVM cannot use it until the
/// array runs (`md assemble` first), which is what the operator must be told.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PvInsideArray {
    pub member: PathBuf,
    /// The array's name (`/dev/md/NAME` once assembled) and UUID.
    pub array: String,
    pub array_uuid: String,
    pub level: i32,
    /// PV UUID as lvm2 prints it (dashed).
    pub pv_uuid: String,
    /// The VG named by the PV's metadata, where it could be read through this member alone.
    pub vg: Option<String>,
}

/// Looks for an LVM2 label at the array's data offset on `member`: the array's first sectors are there
/// on a RAID1 member and on the member holding the first chunk of a striped level. Only a RAID1 member
/// holds the whole metadata area, so only there the VG is named. `None` when there is no label (or it
/// cannot be read: the array itself is scanned once assembled).
pub fn pv_inside_member(member: &crate::md::Member) -> Option<PvInsideArray> {
    let sb = &member.superblock;
    let pv = if sb.level == 1 {
        read_pv_at(&member.device, sb.data_offset_bytes, false).ok()??
    } else {
        let file = fs::File::open(&member.device).ok()?;
        let mut head = vec![0u8; 2048];
        let n = file.read_at(&mut head, sb.data_offset_bytes).ok()?;
        let lbl = label::parse_label(&head[..n]).ok()?;
        PvDevice {
            device: member.device.clone(),
            dev: member.dev,
            label: lbl,
            vg: None,
        }
    };
    Some(PvInsideArray {
        member: member.device.clone(),
        array: crate::md::short_name(sb),
        array_uuid: sb.array_uuid.clone(),
        level: sb.level,
        pv_uuid: label::dashed(&pv.label.pv_uuid),
        vg: pv.vg.map(|v| v.name),
    })
}

/// A VG ready to activate: its newest metadata and the device of every PV.
#[derive(Debug, Clone)]
pub struct VgPlan {
    pub vg: vg::VolumeGroup,
    /// PV key → device path and `major:minor`.
    pub pvs: BTreeMap<String, (PathBuf, String)>,
}

/// Groups PV devices into VGs (newest seqno wins) and checks every PV is present exactly once.
pub fn plan(found: &[PvDevice]) -> Vec<Result<VgPlan, LvmError>> {
    let mut by_uuid: BTreeMap<String, &PvDevice> = BTreeMap::new();
    let mut out = Vec::new();
    for pv in found {
        if let Some(first) = by_uuid.insert(pv.label.pv_uuid.clone(), pv) {
            out.push(Err(LvmError::DuplicatePv {
                uuid: label::dashed(&pv.label.pv_uuid),
                first: first.device.display().to_string(),
                second: pv.device.display().to_string(),
            }));
            return out;
        }
    }
    let mut vgs: BTreeMap<String, vg::VolumeGroup> = BTreeMap::new();
    for pv in found {
        if let Some(v) = &pv.vg {
            let e = vgs.entry(v.id.clone()).or_insert_with(|| v.clone());
            if v.seqno > e.seqno {
                *e = v.clone();
            }
        }
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for v in vgs.into_values() {
        if let Some(other) = names.insert(v.name.clone(), v.id.clone()) {
            out.push(Err(LvmError::DuplicateVgName {
                name: v.name.clone(),
                a: other,
                b: v.id.clone(),
            }));
            continue;
        }
        let mut pvs = BTreeMap::new();
        let mut missing = Vec::new();
        for p in &v.pvs {
            let key = p.id.replace('-', "");
            match by_uuid.get(&key) {
                Some(d) if !p.flagged_missing => {
                    pvs.insert(
                        p.key.clone(),
                        (d.device.clone(), format!("{}:{}", d.dev.0, d.dev.1)),
                    );
                }
                _ => missing.push(format!(
                    "PV {} ({}, last seen as {}{})",
                    p.id,
                    p.key,
                    if p.device_hint.is_empty() {
                        "an unknown device"
                    } else {
                        &p.device_hint
                    },
                    if p.flagged_missing {
                        "; lvm2 recorded it as missing"
                    } else {
                        ""
                    }
                )),
            }
        }
        if missing.is_empty() {
            out.push(Ok(VgPlan { vg: v, pvs }));
        } else {
            out.push(Err(LvmError::MissingPv {
                vg: v.name.clone(),
                missing: missing.join(", "),
            }));
        }
    }
    out
}

/// What happened to one LV.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LvOutcome {
    pub vg: String,
    pub lv: String,
    /// `/dev/mapper/VG-LV` when activated.
    pub device: Option<PathBuf>,
    /// `/dev/VG/LV` when activated.
    pub link: Option<PathBuf>,
    pub size_bytes: u64,
    /// linear / striped (N stripes).
    pub layout: String,
    /// Why it was not activated.
    pub refused: Option<String>,
}

/// Activates every visible LV of `plan` read-only. Refused LVs are reported, not fatal; a failing
/// ioctl is.
pub fn activate(ctl: &dm::Control, plan: &VgPlan) -> Result<Vec<LvOutcome>, LvmError> {
    for (device, _) in plan.pvs.values() {
        protect(device)?;
    }
    let devs: BTreeMap<String, String> = plan
        .pvs
        .iter()
        .map(|(k, (_, d))| (k.clone(), d.clone()))
        .collect();
    let v = &plan.vg;
    let active: Vec<String> = ctl.list()?.into_iter().map(|d| d.name).collect();
    let mut out = Vec::new();
    for lv in v.lvs.iter().filter(|l| l.visible) {
        let mut o = LvOutcome {
            vg: v.name.clone(),
            lv: lv.name.clone(),
            device: None,
            link: None,
            size_bytes: lv
                .segments
                .iter()
                .map(|s| s.extent_count * v.extent_size_sectors * 512)
                .sum(),
            layout: layout(lv),
            refused: None,
        };
        let name = vg::dm_name(&v.name, &lv.name);
        if active.contains(&name) {
            o.device = Some(Path::new("/dev/mapper").join(&name));
            o.link = Some(Path::new("/dev").join(&v.name).join(&lv.name));
            o.layout.push_str(", already active");
            out.push(o);
            continue;
        }
        match vg::table(v, lv, &devs) {
            Err(why) => o.refused = Some(why),
            Ok(targets) => {
                let lines: Vec<dm::TargetLine> = targets
                    .into_iter()
                    .map(|t| dm::TargetLine {
                        start: t.start,
                        length: t.length,
                        kind: t.kind.to_owned(),
                        params: t.params,
                    })
                    .collect();
                let d = ctl.create_read_only(&name, &vg::dm_uuid(&v.id, &lv.id), &lines)?;
                let node = dm::make_node(&d)?;
                let _ = crate::blkro::set_read_only(&node, true);
                let dir = Path::new("/dev").join(&v.name);
                let link = dir.join(&lv.name);
                fs::create_dir_all(&dir).map_err(|source| LvmError::Link {
                    path: dir.clone(),
                    source,
                })?;
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(format!("../mapper/{name}"), &link).map_err(
                    |source| LvmError::Link {
                        path: link.clone(),
                        source,
                    },
                )?;
                o.device = Some(node);
                o.link = Some(link);
            }
        }
        out.push(o);
    }
    Ok(out)
}

fn layout(lv: &vg::LogicalVolume) -> String {
    let mut kinds: Vec<String> = lv
        .segments
        .iter()
        .map(|s| match &s.kind {
            vg::SegmentKind::Striped { stripes, .. } if stripes.len() == 1 => "linear".to_owned(),
            vg::SegmentKind::Striped { stripes, .. } => format!("striped ({})", stripes.len()),
            vg::SegmentKind::Unsupported(t) => t.clone(),
        })
        .collect();
    kinds.dedup();
    format!(
        "{}, {} segment{}",
        kinds.join("+"),
        lv.segments.len(),
        if lv.segments.len() == 1 { "" } else { "s" }
    )
}

/// One device `deactivate_all` removed or could not remove.
#[derive(Debug, serde::Serialize)]
pub struct Removed {
    pub name: String,
    pub error: Option<String>,
}

/// Removes every device-mapper device carrying an lvm2 UUID (`LVM-…`; the rescue system activates
/// none at boot, so each is ours) with its `/dev/mapper` node and `/dev/VG/LV` link.
pub fn deactivate_all(ctl: &dm::Control) -> Result<Vec<Removed>, LvmError> {
    let mut out = Vec::new();
    for d in ctl.list()? {
        let uuid = fs::read_to_string(format!("/sys/dev/block/{}:{}/dm/uuid", d.major, d.minor))
            .unwrap_or_default();
        if !uuid.starts_with("LVM-") {
            continue;
        }
        let error = match ctl.remove(&d.name) {
            Ok(()) => None,
            Err(DmError::Ioctl { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                Some("still in use (a mounted filesystem on it?)".to_owned())
            }
            Err(e) => Some(crate::error_chain(&e)),
        };
        if error.is_none() {
            let _ = fs::remove_file(Path::new("/dev/mapper").join(&d.name));
            remove_links_to(&d.name);
        }
        out.push(Removed {
            name: d.name,
            error,
        });
    }
    Ok(out)
}

/// Removes `/dev/VG/LV` links pointing at `../mapper/NAME` and VG directories left empty.
fn remove_links_to(name: &str) {
    let target = format!("../mapper/{name}");
    for dir in fs::read_dir("/dev").into_iter().flatten().flatten() {
        let p = dir.path();
        if !dir.file_type().is_ok_and(|t| t.is_dir()) || p == Path::new("/dev/mapper") {
            continue;
        }
        let mut linked = false;
        for l in fs::read_dir(&p).into_iter().flatten().flatten() {
            if fs::read_link(l.path()).is_ok_and(|t| t == Path::new(&target)) {
                let _ = fs::remove_file(l.path());
                linked = true;
            }
        }
        if linked {
            let _ = fs::remove_dir(&p);
        }
    }
}

/// Entries of `/dev/mapper` other than `control` (what is still mapped).
pub fn mapper_entries() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/dev/mapper")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "control")
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
