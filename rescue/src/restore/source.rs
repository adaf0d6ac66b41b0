//! Restore sources: a directory (walked without following symlinks), a `tar` or `tar.zst` archive
//! (streamed; member paths are passed on raw so the policy can refuse `../` and absolute names), or a
//! filesystem in a disk image (attached through a read-only loop device) or on a disk (write-blocked
//! first), mounted read-only without journal or log replay by [`crate::examine::mount`] (the options it
//! chose are kept in [`Mounted::options`]) and unmounted when dropped.
//! A whole-disk image or disk is read through its own partition table ([`crate::inventory::read_table`],
//! GPT or MBR): the partition the operator names, or the only Linux filesystem, is attached as a
//! read-only loop device over just that byte range.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Content, EntryKind, RestoreError, SourceEntry};
use crate::examine::mount::{self, LoopDevice};

/// Errors opening a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("opening the restore source {path}")]
    Open {
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
    #[error("mounting {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: crate::examine::mount::MountError,
    },
    #[error("{path} holds a{table} partition table ({partitions}): {why}")]
    ChoosePartition {
        path: PathBuf,
        table: String,
        partitions: String,
        why: String,
    },
    #[error("reading the archive {path}")]
    Archive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What kind of source a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Dir,
    Tar,
    TarZst,
    /// A disk image file: attached through a loop device.
    Image,
    /// A block device: write-blocked and mounted.
    Device,
}

/// Classifies a source by type and content.
pub fn classify(path: &Path) -> Result<SourceKind, SourceError> {
    let open = |source| SourceError::Open {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(open)?;
    if meta.is_dir() {
        return Ok(SourceKind::Dir);
    }
    if meta.file_type().is_block_device() {
        return Ok(SourceKind::Device);
    }
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path).map_err(open)?;
    let n = f.read(&mut head).map_err(open)?;
    if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        return Ok(SourceKind::TarZst);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Ok(SourceKind::Tar);
    }
    Ok(SourceKind::Image)
}

/// Walks a directory tree in sorted order, never following symlinks.
pub fn walk_dir(
    root: &Path,
    f: &mut dyn FnMut(&SourceEntry, Content<'_>) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    fn walk(
        root: &Path,
        rel: &str,
        f: &mut dyn FnMut(&SourceEntry, Content<'_>) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let dir = if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(RestoreError::ReadSource)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = root.join(&child_rel);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else if ft.is_symlink() {
                let to = fs::read_link(&path).map_err(RestoreError::ReadSource)?;
                EntryKind::Symlink(std::os::unix::ffi::OsStrExt::as_bytes(to.as_os_str()).to_vec())
            } else {
                EntryKind::Special(if ft.is_block_device() || ft.is_char_device() {
                    "device node".into()
                } else if ft.is_fifo() {
                    "fifo".into()
                } else {
                    "socket".into()
                })
            };
            let entry = SourceEntry {
                raw_path: child_rel.clone(),
                kind: kind.clone(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                atime: meta.atime(),
                mtime: meta.mtime(),
                size: meta.len(),
                xattrs: if ft.is_file() {
                    super::target::read_xattrs(&path)
                } else {
                    Vec::new()
                },
            };
            let content = if ft.is_file() {
                Content::Path(&path)
            } else {
                Content::None
            };
            f(&entry, content)?;
            if ft.is_dir() {
                walk(root, &child_rel, f)?;
            }
        }
        Ok(())
    }
    walk(root, "", f)
}

/// Streams a tar archive (optionally zstd-compressed).
pub fn walk_tar(
    path: &Path,
    zst: bool,
    f: &mut dyn FnMut(&SourceEntry, Content<'_>) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let arch = |source| {
        RestoreError::Source(SourceError::Archive {
            path: path.to_owned(),
            source,
        })
    };
    let file = fs::File::open(path).map_err(arch)?;
    let reader: Box<dyn Read> = if zst {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(arch)?)
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(arch)? {
        let mut entry = entry.map_err(arch)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let h = entry.header();
        let et = h.entry_type();
        let kind = if et.is_dir() {
            EntryKind::Dir
        } else if et.is_file() || et == tar::EntryType::Continuous {
            EntryKind::File
        } else if et.is_symlink() {
            EntryKind::Symlink(
                entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            )
        } else if et.is_hard_link() {
            EntryKind::HardLink(
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default(),
            )
        } else {
            EntryKind::Special(format!("{et:?}").to_lowercase())
        };
        // GNU tar and bsdtar store xattrs as PAX records `SCHILY.xattr.<name>`.
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = entry.header();
        let mtime = h.mtime().unwrap_or(0) as i64;
        let se = SourceEntry {
            raw_path,
            kind,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            atime: mtime,
            mtime,
            size: entry.size(),
            xattrs,
        };
        if matches!(se.kind, EntryKind::File) {
            f(&se, Content::Stream(&mut entry))?;
        } else {
            f(&se, Content::None)?;
        }
    }
    Ok(())
}

/// A filesystem mounted read-only for the duration of a restore.
pub struct Mounted {
    pub mountpoint: PathBuf,
    pub device: PathBuf,
    pub fstype: String,
    /// The mount options [`crate::examine::mount`] chose for `fstype`, as `mount(8)` shows them.
    pub options: String,
    /// The partition mounted, when the source is a whole disk with a partition table.
    pub partition: Option<ChosenPartition>,
    /// Unmounts (and detaches the loop device) when dropped.
    _mount: Box<mount::Mounted>,
}

/// The partition of a whole-disk source that was chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenPartition {
    /// `gpt` or `mbr`.
    pub table: String,
    pub entry: crate::inventory::TableEntry,
    /// `--partition N` given, or the only Linux filesystem.
    pub named: bool,
}

impl ChosenPartition {
    /// "partition 2 (ext4, 15.0 MiB) of the GPT, the only Linux filesystem".
    pub fn describe(&self) -> String {
        format!(
            "partition {} ({}, {}) of the {}{}",
            self.entry.number,
            self.entry
                .signature
                .as_deref()
                .unwrap_or("no known signature"),
            crate::devices::human_size(self.entry.size_bytes),
            self.table.to_uppercase(),
            if self.named {
                ", as named by --partition"
            } else {
                ", the only Linux filesystem"
            }
        )
    }
}

/// Filesystem signatures ([`crate::inventory::signature`]) that hold a Linux system's files.
const LINUX_FILESYSTEMS: [&str; 4] = ["ext4", "ext2/3", "xfs", "btrfs"];
/// Other signatures a backup may sit on (an ISO, a USB stick).
const OTHER_FILESYSTEMS: [&str; 3] = ["vfat", "exfat", "iso9660"];

/// Picks the partition to mount from a partition table: number `wanted`, else the only partition
/// holding a Linux filesystem, else the only one holding any filesystem we mount. `Ok(None)`: no table.
pub fn choose_partition(
    path: &Path,
    table: Option<&str>,
    entries: &[crate::inventory::TableEntry],
    wanted: Option<u32>,
) -> Result<Option<ChosenPartition>, SourceError> {
    let listing = || {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{}: {}, {}",
                    e.number,
                    e.signature.as_deref().unwrap_or("unknown"),
                    crate::devices::human_size(e.size_bytes)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let err = |why: String| SourceError::ChoosePartition {
        path: path.to_owned(),
        table: table
            .map(|t| format!(" {}", t.to_uppercase()))
            .unwrap_or_else(|| " no".into()),
        partitions: if entries.is_empty() {
            "none".into()
        } else {
            listing()
        },
        why,
    };
    let Some(table) = table.filter(|_| !entries.is_empty()) else {
        return match wanted {
            Some(n) => Err(err(format!("there is no partition {n} to mount"))),
            None => Ok(None),
        };
    };
    let chosen = |e: &crate::inventory::TableEntry, named| {
        Ok(Some(ChosenPartition {
            table: table.to_owned(),
            entry: e.clone(),
            named,
        }))
    };
    if let Some(n) = wanted {
        return match entries.iter().find(|e| e.number == n) {
            Some(e) => chosen(e, true),
            None => Err(err(format!("there is no partition {n}"))),
        };
    }
    let holding = |kinds: &[&str]| -> Vec<&crate::inventory::TableEntry> {
        entries
            .iter()
            .filter(|e| e.signature.as_deref().is_some_and(|s| kinds.contains(&s)))
            .collect()
    };
    let linux = holding(&LINUX_FILESYSTEMS);
    match linux.as_slice() {
        [one] => return chosen(one, false),
        [] => {}
        _ => {
            return Err(err(
                "more than one holds a Linux filesystem; name the one to restore from with --partition N"
                    .into(),
            ));
        }
    }
    match holding(&OTHER_FILESYSTEMS).as_slice() {
        [one] => Ok(Some(ChosenPartition {
            table: table.to_owned(),
            entry: (*one).clone(),
            named: false,
        })),
        _ => Err(err(
            "none holds exactly one Linux filesystem; name the one to restore from with --partition N"
                .into(),
        )),
    }
}

fn attach(path: &Path, range: Option<(u64, u64)>) -> Result<LoopDevice, SourceError> {
    mount::attach_loop(path, range).map_err(|source| SourceError::Mount {
        path: path.to_owned(),
        source,
    })
}

/// The partition table of an image file or disk, read through an `O_RDONLY` handle, and whether the
/// whole device starts with a filesystem we mount.
type Table = (Option<String>, Vec<crate::inventory::TableEntry>, bool);

fn partition_table(path: &Path, kind: SourceKind) -> Result<Table, SourceError> {
    let file = fs::File::open(path).map_err(|source| SourceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let sector = if kind == SourceKind::Device {
        crate::devices::describe(path)
            .map(|d| u64::from(d.logical_sector_size.max(512)))
            .unwrap_or(512)
    } else {
        512
    };
    let (table, entries) = crate::inventory::read_table(&file, sector);
    let mut head = vec![0u8; 72 << 10];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    let whole_fs = crate::inventory::signature(&head[..n])
        .is_some_and(|s| LINUX_FILESYSTEMS.contains(&s) || OTHER_FILESYSTEMS.contains(&s));
    Ok((table, entries, whole_fs))
}

/// Which partition of an image file or disk gets mounted (`None`: the whole device). A filesystem on
/// the whole device (an ISO, also a hybrid one with its MBR; a partitionless disk) is used whole unless
/// `partition` names one; else [`choose_partition`].
pub fn partition_to_mount(
    path: &Path,
    kind: SourceKind,
    partition: Option<u32>,
) -> Result<Option<ChosenPartition>, SourceError> {
    let (table, entries, whole_fs) = partition_table(path, kind)?;
    if partition.is_none() && (table.is_none() || whole_fs) {
        return Ok(None);
    }
    choose_partition(path, table.as_deref(), &entries, partition)
}

/// Mounts the filesystem of an image file or block device read-only under `mount_base`.
pub fn mount_readonly(path: &Path, mount_base: &Path) -> Result<Mounted, SourceError> {
    mount_readonly_partition(path, mount_base, None)
}

/// [`mount_readonly`], choosing among the partitions of a whole-disk source: `partition` (`--partition
/// N`), else the whole device when it holds a filesystem itself, else [`choose_partition`].
pub fn mount_readonly_partition(
    path: &Path,
    mount_base: &Path,
    partition: Option<u32>,
) -> Result<Mounted, SourceError> {
    let kind = classify(path)?;
    if kind == SourceKind::Device {
        crate::blkro::protect_family(path).map_err(|source| SourceError::WriteBlock {
            path: path.to_owned(),
            source,
        })?;
    }
    let chosen = partition_to_mount(path, kind, partition)?;
    let (device, loop_dev) = match (&chosen, kind) {
        (None, SourceKind::Device) => (path.to_owned(), None),
        (None, _) => {
            let l = attach(path, None)?;
            (l.path.clone(), Some(l))
        }
        (Some(c), _) => {
            let l = attach(path, Some((c.entry.start_bytes, c.entry.size_bytes)))?;
            (l.path.clone(), Some(l))
        }
    };
    try_mount(path, mount_base, device, loop_dev, chosen)
}

/// Mounts `device` (the source itself, or a loop device over it) read-only through
/// [`crate::examine::mount`], the one place that decides the options.
fn try_mount(
    path: &Path,
    mount_base: &Path,
    device: PathBuf,
    loop_dev: Option<LoopDevice>,
    partition: Option<ChosenPartition>,
) -> Result<Mounted, SourceError> {
    let signature = partition
        .as_ref()
        .and_then(|p| p.entry.signature.as_deref());
    let m = mount::mount_readonly(&device, loop_dev, signature, mount_base, "restore-source")
        .map_err(|source| SourceError::Mount {
            path: path.to_owned(),
            source,
        })?;
    Ok(Mounted {
        mountpoint: m.mountpoint.clone(),
        device: m.device.clone(),
        fstype: m.fstype.clone(),
        options: m.options.clone(),
        partition,
        _mount: Box::new(m),
    })
}

/// Whole disks a path lives on: the disk of a block device, or the disks holding a file's filesystem
/// (through loop devices and stacked devices). Used to refuse a source and target on the same disk.
pub fn disks_of(path: &Path) -> Vec<String> {
    let is_block = fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let names = if is_block {
        crate::blkro::sysfs_name(path).into_iter().collect()
    } else {
        crate::blkro::backing_disks(path)
    };
    let mut disks: Vec<String> = names.iter().map(|n| crate::blkro::whole_disk(n)).collect();
    disks.sort();
    disks.dedup();
    disks
}

/// The first disk both paths live on, when at least one of them is a block device (two files on one
/// host filesystem are fine; a disk and a file on it, or one disk twice, are not).
pub fn shared_disk(a: &Path, b: &Path) -> Option<String> {
    let is_block = |p: &Path| fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device());
    if !is_block(a) && !is_block(b) {
        return None;
    }
    let other = disks_of(b);
    disks_of(a).into_iter().find(|d| other.contains(d))
}
