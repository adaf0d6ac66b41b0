//! What the case decides around an acquisition into its evidence destination, before and after the
//! acquisition engine runs: the segment size a FAT32 destination needs, whether a raw image can fit, and
//! what the case records afterwards (the acquisition, or that the destination disappeared and how to
//! resume). The line-mode and guided faces (`ui::case`) only print what these return.

use std::path::Path;

use crate::case::{self, CaseError, Destination, Locked};

/// Segment size on a FAT32 destination: files there must stay below 4 GiB.
pub const FAT32_SPLIT: u64 = 4095 << 20;

/// The `--split` an acquisition into `out` must use when the operator gave none: [`FAT32_SPLIT`] when `out`
/// lies on a FAT evidence destination, else nothing (`None` also when the operator chose a split).
pub fn automatic_split(dest: Option<&Destination>, out: &Path, asked: Option<u64>) -> Option<u64> {
    let d = dest?;
    (asked.is_none() && d.fstype == "vfat" && out.starts_with(&d.mountpoint)).then_some(FAT32_SPLIT)
}

/// Errors of the checks before an acquisition.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "the destination has {} free but the raw image of {source_path} needs {}: free space, choose another destination, or use --format zstd",
        crate::devices::human_size(*free),
        crate::devices::human_size(*need)
    )]
    LackSpace {
        free: u64,
        need: u64,
        source_path: String,
    },
}

/// The size of what an acquisition of `source` reads: a disk or partition as the kernel sizes exactly
/// that device, a regular file by its length; `None` when it cannot be told.
pub fn source_size(source: &Path) -> Option<u64> {
    let meta = std::fs::metadata(source).ok()?;
    if std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
        let name = crate::blkro::sysfs_name(source).ok()?;
        let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        return Some(sectors * 512);
    }
    meta.is_file().then_some(meta.len())
}

/// Refuses, before anything is written, a raw image that cannot fit: the source's size is known and the
/// free space where `out` will be (its nearest existing ancestor) is smaller. A compressed image's size is
/// not known beforehand and is never refused here.
pub fn check_space(source: &Path, out: &Path, compressed: bool) -> Result<(), EvidenceError> {
    if compressed {
        return Ok(());
    }
    let Some(need) = source_size(source) else {
        return Ok(());
    };
    let Some(probe) = out.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    let Ok(st) = nix::sys::statvfs::statvfs(probe) else {
        return Ok(());
    };
    let free = st.blocks_available() * st.fragment_size();
    if free < need {
        return Err(EvidenceError::LackSpace {
            free,
            need,
            source_path: source.display().to_string(),
        });
    }
    Ok(())
}

/// How the acquisition ended, as far as the case cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Complete (with or without unreadable sectors).
    Complete,
    /// Stopped with a checkpoint `--resume` continues from.
    Resumable,
    /// Failed, or complete with a mismatch: nothing to record.
    Other,
}

/// What the case recorded after an acquisition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The evidence destination disappeared during the run; what was made durable stays on it. The case
    /// forgot it and logged how to continue.
    LostDestination { device: String, resume_with: String },
    /// The acquisition is recorded (complete or resumable) for the reinstall/restore interlock.
    Recorded,
    /// Nothing to record.
    Nothing,
}

/// Records an acquisition of `source` into `out` that ended as `ended` (see [`Settled`]).
pub fn settle(
    locked: &mut Locked,
    source: &Path,
    out: &Path,
    ended: Ended,
) -> Result<Settled, CaseError> {
    if let Some(lost) = case::forget_lost_destination(locked)? {
        let resume_with = format!(
            "acquire {} --out {} --resume",
            source.display(),
            out.display()
        );
        locked.log(
            "result",
            "evidence destination lost",
            serde_json::json!({
                "device": lost.device,
                "during": format!("acquire {} --out {}", source.display(), out.display()),
                "resume_with": resume_with,
            }),
        )?;
        return Ok(Settled::LostDestination {
            device: lost.device,
            resume_with,
        });
    }
    if ended == Ended::Other {
        return Ok(Settled::Nothing);
    }
    case::record_acquired(locked, source, out, ended == Ended::Complete)?;
    Ok(Settled::Recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(fstype: &str) -> Destination {
        Destination {
            device: "/dev/sdc1".into(),
            serial: None,
            mountpoint: "/mnt/evidence".into(),
            fstype: fstype.into(),
        }
    }

    #[test]
    fn a_fat_destination_splits_what_is_acquired_onto_it() {
        let out = Path::new("/mnt/evidence/case-1/sda");
        assert_eq!(
            automatic_split(Some(&dest("vfat")), out, None),
            Some(FAT32_SPLIT)
        );
        const { assert!(FAT32_SPLIT < 4 << 30, "FAT32 files stay below 4 GiB") };
        // The operator's own split, another filesystem, another directory, no destination: left alone.
        assert_eq!(
            automatic_split(Some(&dest("vfat")), out, Some(1 << 30)),
            None
        );
        assert_eq!(automatic_split(Some(&dest("exfat")), out, None), None);
        assert_eq!(automatic_split(Some(&dest("ext4")), out, None), None);
        assert_eq!(
            automatic_split(Some(&dest("vfat")), Path::new("/tmp/x"), None),
            None
        );
        assert_eq!(automatic_split(None, out, None), None);
    }

    #[test]
    fn a_raw_image_larger_than_the_free_space_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big.img");
        // A sparse file far larger than any free space here.
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(8 << 40).unwrap();
        let out = dir.path().join("not-yet/acq");
        let err = check_space(&src, &out, false).unwrap_err();
        assert!(err.to_string().contains("--format zstd"), "{err}");
        assert!(!out.exists() && !dir.path().join("not-yet").exists());
        // Compressed: its size is unknown beforehand, so never refused here.
        check_space(&src, &out, true).unwrap();
        // A small source fits.
        let small = dir.path().join("small.img");
        std::fs::write(&small, [0u8; 4096]).unwrap();
        check_space(&small, &out, false).unwrap();
        assert_eq!(source_size(&small), Some(4096));
    }
}
