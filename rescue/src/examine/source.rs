//! Opening a SOURCE for examination as a list of read-only roots: a directory (a root already mounted
//! somewhere), a raw image file (a whole disk: each partition; or one filesystem), a raw acquisition
//! directory (`manifest.json` and its `image.raw`), or a block device (write-blocked first; a disk's
//! partitions each examined). Image files and partitions are mounted from read-only loop devices
//! through [`super::mount`]; everything is unmounted and detached when [`Examined`] is dropped.
//!
//! A partition that cannot be examined (encrypted, swap, Windows, LVM or md member, unknown, corrupt)
//! becomes a [`Note`], not an error: the rest is still examined.
//!
//! Never: open a source writable, mount a block device before it is write-blocked.

use std::fs;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::mount::{self, LoopDevice, Mounted};
use crate::inventory::TableEntry;

/// Errors opening a source at all (a partition that fails is a [`Note`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ExamineError {
    #[error("opening the source {path}")]
    OpenSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write-blocking {path}")]
    WriteBlock {
        path: PathBuf,
        #[source]
        source: crate::blkro::BlkRoError,
    },
    #[error("reading the acquisition in {path}")]
    ReadAcquisition {
        path: PathBuf,
        #[source]
        source: crate::acquire::manifest::ManifestError,
    },
    #[error(
        "the acquisition in {path} is stored as {format}; make it readable as a disk with `rescue mount` first and examine what that gives"
    )]
    CompressedAcquisition { path: PathBuf, format: String },
    #[error(
        "the acquisition in {path} is split into {segments} files; make it readable as one disk with `rescue mount` first and examine what that gives"
    )]
    SegmentedAcquisition { path: PathBuf, segments: usize },
    #[error("the acquisition in {path} lists no image file")]
    EmptyAcquisition { path: PathBuf },
    #[error("{path} is a {kind}, not a disk, partition, image file or directory")]
    RejectSpecial { path: PathBuf, kind: &'static str },
}

/// What SOURCE turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory: the root of an already mounted system, examined in place.
    Directory,
    /// A raw image file.
    ImageFile,
    /// A raw acquisition directory (its image file is examined).
    Acquisition,
    /// A disk or partition.
    BlockDevice,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::ImageFile => "image file",
            Self::Acquisition => "acquisition",
            Self::BlockDevice => "block device",
        }
    }
}

/// One root to examine, read-only.
#[derive(Debug)]
pub struct Root {
    /// Where its files are on this machine: the directory itself, or the mount point.
    pub path: PathBuf,
    /// The partition number in the source's table, `None` for a whole device or a directory.
    pub partition: Option<u32>,
    /// The filesystem type that mounted (`None` for a directory source).
    pub fstype: Option<String>,
    /// The device mounted (the source or a loop device over it).
    pub device: Option<PathBuf>,
    /// The mount options (`ro,nodev,nosuid,noexec,noload`).
    pub options: Option<String>,
    /// Where the filesystem's bytes are (an image file or block device, and the partition's range),
    /// `None` for a directory source.
    pub volume: Option<Volume>,
    /// The partition's `PARTUUID` (GPT unique GUID, or MBR signature and number) and GPT name, as
    /// the examined system's fstab may name it.
    pub part_uuid: Option<String>,
    pub part_label: Option<String>,
    _mount: Option<Mounted>,
}

/// A filesystem's bytes: `len` bytes from byte `start` of the image file or block device `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub path: PathBuf,
    pub start: u64,
    pub len: u64,
}

/// How a root's entries were listed by [`Root::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    pub stats: super::walk::WalkStats,
    /// `ext reader` or `mounted walk`.
    pub backend: &'static str,
    /// Why the ext reader was not used for an ext filesystem.
    pub fallback: Option<String>,
}

impl Walked {
    /// "the ext reader", "the mounted walk (the ext reader: ...)".
    pub fn describe(&self) -> String {
        match &self.fallback {
            Some(why) => format!("the {} (not the ext reader: {why})", self.backend),
            None => format!("the {}", self.backend),
        }
    }
}

impl Root {
    /// The bytes of an ext2/3/4 root, for [`crate::extfs`]; `None` for another filesystem, a
    /// directory, or a source that cannot be opened again.
    pub fn ext_volume(&self) -> Option<crate::extfs::Window<crate::acquire::source::Source>> {
        self.open_ext_volume()?.ok()
    }

    fn open_ext_volume(
        &self,
    ) -> Option<
        Result<
            crate::extfs::Window<crate::acquire::source::Source>,
            crate::acquire::source::SourceError,
        >,
    > {
        let ext = matches!(self.fstype.as_deref(), Some("ext2" | "ext3" | "ext4"));
        let v = self.volume.as_ref().filter(|_| ext)?;
        Some(
            crate::acquire::source::Source::open(&v.path)
                .map(|src| crate::extfs::Window::new(src, v.start, v.len)),
        )
    }

    /// Lists every entry below the root: an ext2/3/4 filesystem whose bytes are at hand is read by
    /// [`crate::extfs`] (no kernel inode is made, so nothing has to be evicted at unmount); anything
    /// else, or an ext filesystem the reader refuses (a feature it cannot read, a damaged superblock),
    /// through the mount with [`super::walk::walk`]. The one place that chooses.
    pub fn walk(
        &self,
        visitor: &mut dyn super::walk::Visitor,
    ) -> Result<Walked, super::walk::WalkError> {
        let mut fallback = None;
        if let Some(opened) = self.open_ext_volume() {
            match opened {
                Ok(win) => match super::walk::walk_ext(&win, win.len(), &self.path, visitor) {
                    Ok(stats) => {
                        return Ok(Walked {
                            stats,
                            backend: "ext reader",
                            fallback: None,
                        });
                    }
                    Err(e) => fallback = Some(crate::error_chain(&e)),
                },
                Err(e) => fallback = Some(crate::error_chain(&e)),
            }
        }
        let stats = super::walk::walk(&self.path, visitor)?;
        Ok(Walked {
            stats,
            backend: "mounted walk",
            fallback,
        })
    }

    /// "partition 2 (ext4)", "the whole image (xfs)", "the directory".
    pub fn describe(&self) -> String {
        let fs = self.fstype.as_deref().unwrap_or("directory");
        match self.partition {
            Some(n) => format!("partition {n} ({fs})"),
            None if self._mount.is_some() => format!("the whole device ({fs})"),
            None => "the directory".to_owned(),
        }
    }
}

/// Why part of a source was not examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// LUKS, BitLocker: needs a key.
    Encrypted,
    Swap,
    /// NTFS: a Windows system, not examined by Linux triage.
    Windows,
    /// An LVM physical volume or md member: its volumes are assembled elsewhere.
    VolumeMember,
    /// A signature we know but do not mount (squashfs, ZFS, bcache, VMFS, a boot sector).
    NotMounted,
    /// No signature at all.
    Unknown,
    /// A filesystem that was recognised but refused to mount read-only (corrupt, unsupported).
    MountFailed,
    /// Something about the source itself (an incomplete acquisition).
    Source,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encrypted => "encrypted",
            Self::Swap => "swap",
            Self::Windows => "windows",
            Self::VolumeMember => "volume-member",
            Self::NotMounted => "not-mounted",
            Self::Unknown => "unknown",
            Self::MountFailed => "mount-failed",
            Self::Source => "source",
        }
    }
}

/// A part of the source that was not examined, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub partition: Option<u32>,
    pub kind: NoteKind,
    pub message: String,
}

/// A source opened for examination: its roots (mounted while this lives) and notes.
#[derive(Debug)]
pub struct Examined {
    pub source: PathBuf,
    pub kind: SourceKind,
    /// The image file examined for an acquisition; the source itself otherwise.
    pub image: PathBuf,
    /// `gpt` or `mbr` when the source has a partition table.
    pub table: Option<String>,
    pub roots: Vec<Root>,
    pub notes: Vec<Note>,
}

/// Opens `source` for examination, mounting what it holds under `mount_base`.
pub fn open(source: &Path, mount_base: &Path) -> Result<Examined, ExamineError> {
    let meta = fs::metadata(source).map_err(|e| ExamineError::OpenSource {
        path: source.to_owned(),
        source: e,
    })?;
    let ft = meta.file_type();
    let mut ex = Examined {
        source: source.to_owned(),
        kind: SourceKind::ImageFile,
        image: source.to_owned(),
        table: None,
        roots: Vec::new(),
        notes: Vec::new(),
    };
    if ft.is_dir() {
        if source
            .join(crate::acquire::manifest::MANIFEST_FILE)
            .is_file()
        {
            ex.kind = SourceKind::Acquisition;
            let (image, note) = acquisition_image(source)?;
            ex.image = image;
            ex.notes.extend(note);
        } else {
            ex.kind = SourceKind::Directory;
            ex.roots.push(Root {
                path: source.to_owned(),
                partition: None,
                fstype: None,
                device: None,
                options: None,
                volume: None,
                part_uuid: None,
                part_label: None,
                _mount: None,
            });
            return Ok(ex);
        }
    } else if ft.is_block_device() {
        ex.kind = SourceKind::BlockDevice;
        crate::blkro::protect_family(source).map_err(|e| ExamineError::WriteBlock {
            path: source.to_owned(),
            source: e,
        })?;
    } else if !ft.is_file() {
        return Err(ExamineError::RejectSpecial {
            path: source.to_owned(),
            kind: if ft.is_char_device() {
                "character device"
            } else if ft.is_fifo() {
                "FIFO"
            } else {
                "socket"
            },
        });
    }
    open_device(&mut ex, mount_base)?;
    Ok(ex)
}

/// The raw image of an acquisition directory, and a note when the acquisition is incomplete.
fn acquisition_image(dir: &Path) -> Result<(PathBuf, Option<Note>), ExamineError> {
    let m = crate::acquire::manifest::Manifest::load(dir).map_err(|e| {
        ExamineError::ReadAcquisition {
            path: dir.to_owned(),
            source: e,
        }
    })?;
    if m.image.format != "raw" {
        return Err(ExamineError::CompressedAcquisition {
            path: dir.to_owned(),
            format: m.image.format,
        });
    }
    // The image files (`image.raw`, or `image.raw.001` … with --split); the others are the map and logs.
    let images: Vec<_> = m
        .outputs
        .iter()
        .filter(|o| o.file == "image.raw" || o.file.starts_with("image.raw."))
        .collect();
    let image = match images.as_slice() {
        [] => {
            return Err(ExamineError::EmptyAcquisition {
                path: dir.to_owned(),
            });
        }
        [one] => dir.join(&one.file),
        more => {
            return Err(ExamineError::SegmentedAcquisition {
                path: dir.to_owned(),
                segments: more.len(),
            });
        }
    };
    let note = (!m.complete).then(|| Note {
        partition: None,
        kind: NoteKind::Source,
        message: format!(
            "the acquisition is incomplete ({} bytes acquired{}): what lies past it reads as missing",
            m.acquired_bytes,
            m.stop_reason
                .map(|r| format!(", stopped: {r}"))
                .unwrap_or_default()
        ),
    });
    Ok((image, note))
}

/// The note for a partition signature we do not mount, `None` for one we do.
fn note_for(signature: Option<&str>) -> Option<(NoteKind, String)> {
    let Some(sig) = signature else {
        return Some((
            NoteKind::Unknown,
            "no filesystem signature: unknown contents, not examined".into(),
        ));
    };
    if mount::kernel_type(sig).is_some() {
        return None;
    }
    Some(match sig {
        "luks" => (
            NoteKind::Encrypted,
            "LUKS encrypted volume: not examined (open it with its key on another machine, or acquire it)".into(),
        ),
        "BitLocker" => (
            NoteKind::Encrypted,
            "BitLocker encrypted volume: not examined".into(),
        ),
        "swap" => (
            NoteKind::Swap,
            "swap space: not examined (never activated)".into(),
        ),
        "ntfs" => (
            NoteKind::Windows,
            "NTFS (a Windows system): not a Linux root, not examined".into(),
        ),
        s if s == "lvm2" || s.starts_with("linux_raid_member") => (
            NoteKind::VolumeMember,
            format!("{s}: a member of a volume group or RAID set; its volumes are not assembled here"),
        ),
        s => (
            NoteKind::NotMounted,
            format!("{s}: not a filesystem triage mounts"),
        ),
    })
}

fn is_extended(e: &TableEntry) -> bool {
    u8::from_str_radix(e.type_id.trim_start_matches("0x"), 16)
        .is_ok_and(crate::inventory::is_extended)
        && e.type_id.starts_with("0x")
}

/// Reads the table of an image file or block device and mounts every partition that holds a
/// filesystem (or the whole device when it is one).
fn open_device(ex: &mut Examined, mount_base: &Path) -> Result<(), ExamineError> {
    let path = ex.image.clone();
    let file = fs::File::open(&path).map_err(|e| ExamineError::OpenSource {
        path: path.clone(),
        source: e,
    })?;
    let device = ex.kind == SourceKind::BlockDevice;
    let sector = if device {
        crate::devices::describe(&path)
            .map(|d| u64::from(d.logical_sector_size.max(512)))
            .unwrap_or(512)
    } else {
        512
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let size = if device {
        crate::devices::describe(&path)
            .map(|d| d.size_bytes)
            .unwrap_or(size)
    } else {
        size
    };
    let (table, entries) = crate::inventory::read_table(&file, sector);
    let whole = crate::inventory::probe(
        &|off: u64, len: usize| {
            let mut b = vec![0u8; len];
            let n = file.read_at(&mut b, off).unwrap_or(0);
            b.truncate(n);
            b
        },
        size,
    );
    // A filesystem on the whole device (an ISO with a hybrid MBR, a partitionless disk) is used whole.
    let whole_fs = whole.is_some_and(|s| mount::kernel_type(s).is_some());
    if table.is_none() || entries.is_empty() || whole_fs {
        if let Some((kind, message)) = note_for(whole) {
            ex.notes.push(Note {
                partition: None,
                kind,
                message,
            });
            return Ok(());
        }
        let (dev, lo) = if device {
            (path.clone(), None)
        } else {
            match mount::attach_loop(&path, None) {
                Ok(l) => (l.path.clone(), Some(l)),
                Err(e) => {
                    ex.notes.push(failed(None, whole, &e));
                    return Ok(());
                }
            }
        };
        let vol = Volume {
            path: path.clone(),
            start: 0,
            len: size,
        };
        mount_one(ex, mount_base, &dev, lo, None, whole, vol);
        return Ok(());
    }
    ex.table = table;
    for e in entries.iter().filter(|e| !is_extended(e)) {
        let sig = e.signature.as_deref();
        if let Some((kind, message)) = note_for(sig) {
            ex.notes.push(Note {
                partition: Some(e.number),
                kind,
                message,
            });
            continue;
        }
        match mount::attach_loop(&path, Some((e.start_bytes, e.size_bytes))) {
            Ok(l) => {
                let dev = l.path.clone();
                let vol = Volume {
                    path: path.clone(),
                    start: e.start_bytes,
                    len: e.size_bytes,
                };
                mount_one(ex, mount_base, &dev, Some(l), Some(e.number), sig, vol);
                if let Some(r) = ex
                    .roots
                    .last_mut()
                    .filter(|r| r.partition == Some(e.number))
                {
                    r.part_uuid = ex
                        .table
                        .as_deref()
                        .and_then(|t| crate::inventory::partition_uuid(&file, sector, t, e.number));
                    r.part_label = e.name.clone();
                }
            }
            Err(err) => ex.notes.push(failed(Some(e.number), sig, &err)),
        }
    }
    Ok(())
}

fn failed(partition: Option<u32>, sig: Option<&str>, err: &mount::MountError) -> Note {
    Note {
        partition,
        kind: NoteKind::MountFailed,
        message: format!(
            "{} could not be mounted read-only (corrupt or unsupported?): {}",
            sig.unwrap_or("filesystem"),
            crate::error_chain(err)
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn mount_one(
    ex: &mut Examined,
    mount_base: &Path,
    dev: &Path,
    lo: Option<LoopDevice>,
    partition: Option<u32>,
    sig: Option<&str>,
    volume: Volume,
) {
    match mount::mount_readonly(dev, lo, sig, mount_base, "examine") {
        Ok(m) => ex.roots.push(Root {
            path: m.mountpoint.clone(),
            partition,
            fstype: Some(m.fstype.clone()),
            device: Some(m.device.clone()),
            options: Some(m.options.clone()),
            volume: Some(volume),
            part_uuid: None,
            part_label: None,
            _mount: Some(m),
        }),
        Err(e) => ex.notes.push(failed(partition, sig, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_examined_in_place_and_a_fifo_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let ex = open(t.path(), t.path()).unwrap();
        assert_eq!(ex.kind, SourceKind::Directory);
        assert_eq!(ex.roots.len(), 1);
        assert_eq!(ex.roots[0].path, t.path());
        assert_eq!(ex.roots[0].describe(), "the directory");
        let fifo = t.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = open(&fifo, t.path()).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
    }

    #[test]
    fn encrypted_swap_windows_and_unknown_partitions_become_notes() {
        assert_eq!(note_for(Some("luks")).unwrap().0, NoteKind::Encrypted);
        assert_eq!(note_for(Some("BitLocker")).unwrap().0, NoteKind::Encrypted);
        assert_eq!(note_for(Some("swap")).unwrap().0, NoteKind::Swap);
        assert_eq!(note_for(Some("ntfs")).unwrap().0, NoteKind::Windows);
        assert_eq!(note_for(Some("lvm2")).unwrap().0, NoteKind::VolumeMember);
        assert_eq!(
            note_for(Some("linux_raid_member (md 1.2)")).unwrap().0,
            NoteKind::VolumeMember
        );
        assert_eq!(note_for(None).unwrap().0, NoteKind::Unknown);
        assert!(note_for(Some("ext4")).is_none());
        assert!(note_for(Some("xfs")).is_none());
    }

    #[test]
    fn an_image_without_any_filesystem_is_a_note_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("blank.img");
        fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let ex = open(&img, t.path()).unwrap();
        assert_eq!(ex.kind, SourceKind::ImageFile);
        assert!(ex.roots.is_empty());
        assert_eq!(ex.notes.len(), 1);
        assert_eq!(ex.notes[0].kind, NoteKind::Unknown);
    }

    #[test]
    fn an_unreadable_manifest_is_an_error_naming_the_acquisition() {
        let t = tempfile::tempdir().unwrap();
        let m = serde_json::json!({
            "schema": crate::acquire::manifest::SCHEMA,
        });
        // A manifest that does not parse is an error naming the directory.
        fs::write(t.path().join("manifest.json"), m.to_string()).unwrap();
        let err = open(t.path(), t.path()).unwrap_err();
        assert!(
            crate::error_chain(&err).contains(&t.path().display().to_string()),
            "{err}"
        );
    }

    fn run(cmd: &mut std::process::Command) {
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A GPT disk image made by sgdisk: 1 ext4 (mkfs.ext4 -d), 2 a LUKS header, 3 swap (mkswap),
    /// 4 zeros, 5 an ext4 whose superblock is wiped past the magic (corrupt).
    #[test]
    fn every_partition_of_a_disk_image_is_mounted_read_only_or_noted() {
        if !crate::testing::can_attach_loop_devices() {
            return;
        }
        use std::process::Command;
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let disk = d.join("disk.img");
        fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
        run(Command::new("sgdisk")
            .args([
                "-n",
                "1:2048:+16M",
                "-t",
                "1:8300",
                "-n",
                "2:0:+4M",
                "-t",
                "2:8309",
                "-n",
                "3:0:+4M",
                "-t",
                "3:8200",
                "-n",
                "4:0:+4M",
                "-n",
                "5:0:+16M",
            ])
            .arg(&disk));
        let tree = d.join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/hostname"), b"suspect\n").unwrap();
        let part = |n: u64| {
            let p = d.join(format!("p{n}"));
            fs::File::create(&p)
                .unwrap()
                .set_len(if n == 1 || n == 5 { 16 << 20 } else { 4 << 20 })
                .unwrap();
            p
        };
        let p1 = part(1);
        run(Command::new("mkfs.ext4")
            .args(["-F", "-q", "-d"])
            .arg(&tree)
            .arg(&p1));
        let p2 = part(2);
        {
            let mut h = vec![0u8; 4096];
            h[..6].copy_from_slice(b"LUKS\xba\xbe");
            fs::write(&p2, &h).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(&p2)
                .unwrap()
                .set_len(4 << 20)
                .unwrap();
        }
        let p3 = part(3);
        run(Command::new("mkswap").arg(&p3));
        let p5 = part(5);
        run(Command::new("mkfs.ext4").args(["-F", "-q"]).arg(&p5));
        {
            // Keep the magic (so it is recognised as ext4) but wreck the rest of the superblock.
            let f = fs::OpenOptions::new().write(true).open(&p5).unwrap();
            f.write_at(&[0xffu8; 56], 1024).unwrap();
            f.write_at(&[0xffu8; 128], 1024 + 60).unwrap();
        }
        let place = |p: &Path, off: u64| {
            let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
            f.write_all_at(&fs::read(p).unwrap(), off).unwrap();
        };
        place(&p1, 1 << 20);
        place(&p2, 17 << 20);
        place(&p3, 21 << 20);
        place(&p5, 29 << 20);

        let ex = open(&disk, d).unwrap();
        assert_eq!(ex.table.as_deref(), Some("gpt"));
        assert_eq!(ex.roots.len(), 1, "{:?}", ex.notes);
        let root = &ex.roots[0];
        assert_eq!(root.partition, Some(1));
        assert_eq!(root.fstype.as_deref(), Some("ext4"));
        assert_eq!(
            fs::read(root.path.join("etc/hostname")).unwrap(),
            b"suspect\n"
        );
        // The kernel's view of the mount: read-only, nodev, nosuid, noexec.
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .find(|l| l.contains(&root.path.display().to_string()))
            .unwrap();
        for opt in ["ro", "nodev", "nosuid", "noexec"] {
            assert!(line.split([' ', ',']).any(|w| w == opt), "{opt} in {line}");
        }
        let kinds: Vec<_> = ex.notes.iter().map(|n| (n.partition, n.kind)).collect();
        assert_eq!(
            kinds,
            [
                (Some(2), NoteKind::Encrypted),
                (Some(3), NoteKind::Swap),
                (Some(4), NoteKind::Unknown),
                (Some(5), NoteKind::MountFailed),
            ]
        );
        let mountpoint = root.path.clone();
        let device = root.device.clone().unwrap();
        drop(ex);
        assert!(!mountpoint.exists(), "mount point removed");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&mountpoint.display().to_string()),
            "unmounted"
        );
        let name = device.file_name().unwrap().to_str().unwrap().to_owned();
        let backing = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"));
        assert!(
            backing.is_err() || !backing.unwrap().contains("disk.img"),
            "loop device detached"
        );
    }
}
