//! FAT32 filesystem images for an EFI System Partition, built in memory with `fatfs`.
//!
//! Reproducible by construction: volume id and label come from [`FatOptions`], `fatfs` without its
//! `chrono` feature stamps every entry 1980-01-01 00:00, and files are written in the order given.
//! `fatfs` 0.3 with `alloc` writes a long-name entry in front of every short entry, including the
//! `.` and `..` entries of a new directory, which `fsck.vfat` rejects ("Expected a valid '.' entry in
//! this slot"); [`build_fat32`] rewrites those slots after unmounting (see `fix_dot_entries`).
//!
//! This module never touches a real device and never guesses sizes silently: content that does
//! not fit is an error that says how much room is missing.

use crate::EspFile;
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Write};
use thiserror::Error;

const MIB: u64 = 1024 * 1024;
const SECTOR: u64 = 512;
/// Smallest image `fatfs` formats as FAT32: it picks 512-byte clusters below 260 MiB, and FAT32
/// needs at least 65525 clusters plus reserved sectors and two FATs (about 32.6 MiB).
pub const MIN_FAT32_SIZE: u64 = 33 * MIB;
/// 2^32 sectors of 512 bytes: the most a FAT32 boot sector can describe.
pub const MAX_FAT32_SIZE: u64 = (u32::MAX as u64) * SECTOR;
/// The floor of [`esp_size_for`]; comfortably above the FAT32 minimum, which some firmware insists on.
pub const MIN_ESP_SIZE: u64 = 64 * MIB;

/// Fixed identity of the filesystem, so that images are reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatOptions {
    pub volume_id: u32,
    /// Upper-case ASCII, padded with spaces, e.g. `*b"RESCUE     "`.
    pub volume_label: [u8; 11],
}

#[derive(Debug, Error)]
pub enum FatImageError {
    #[error("image size {size} is not a multiple of {SECTOR}-byte sectors")]
    AlignSize { size: u64 },
    #[error("image size {size} is too small for FAT32 (minimum {MIN_FAT32_SIZE} bytes)")]
    FitFat32 { size: u64 },
    #[error(
        "image size {size} is too large for FAT32 with 512-byte sectors (maximum {MAX_FAT32_SIZE} bytes)"
    )]
    LimitSize { size: u64 },
    #[error(
        "volume label {label:?} has characters FAT does not allow (use A-Z, 0-9, space, _ or -)"
    )]
    CheckLabel { label: String },
    #[error("ESP path {path:?}: {problem}")]
    CheckPath { path: String, problem: &'static str },
    #[error(
        "files do not fit in a {size}-byte FAT32 image: they need {needed} bytes, {available} are free"
    )]
    FitFiles {
        size: u64,
        needed: u64,
        available: u64,
    },
    #[error("formatting the FAT32 volume")]
    FormatVolume(#[source] io::Error),
    #[error("mounting the freshly formatted volume")]
    MountVolume(#[source] io::Error),
    #[error("creating directory {path:?}")]
    CreateDirectory { path: String, source: io::Error },
    #[error("writing {path:?}")]
    WriteFile { path: String, source: io::Error },
    #[error("unmounting the volume")]
    UnmountVolume(#[source] io::Error),
    #[error("repairing the '.' and '..' entries fatfs wrote: {problem}")]
    FixDotEntries { problem: &'static str },
}

/// Smallest sensible ESP for `files`: `max(64 MiB, content + 10 % + 4 MiB)`, rounded up to 1 MiB.
/// The 10 % covers cluster slack and the FATs (about 0.8 % with 512-byte clusters); 4 MiB covers
/// directories and leaves room to replace a file by hand.
pub fn esp_size_for(files: &[EspFile]) -> u64 {
    let content: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let wanted = content
        .saturating_add(content / 10)
        .saturating_add(4 * MIB)
        .max(MIN_ESP_SIZE);
    wanted.div_ceil(MIB).saturating_mul(MIB)
}

fn check_label(label: &[u8; 11]) -> Result<(), FatImageError> {
    let allowed =
        |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || b" _-!#$%&'()@^`{}~".contains(&c);
    if label.iter().all(|&c| allowed(c)) && label[0] != b' ' {
        Ok(())
    } else {
        Err(FatImageError::CheckLabel {
            label: String::from_utf8_lossy(label).into_owned(),
        })
    }
}

/// Split and check an ESP path: `/`-separated, no empty, `.` or `..` components, no backslashes.
fn components(path: &str) -> Result<Vec<&str>, FatImageError> {
    let bad = |problem| FatImageError::CheckPath {
        path: path.to_owned(),
        problem,
    };
    if path.contains('\\') {
        return Err(bad("use '/' as the separator"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty component (leading, trailing or doubled '/')"));
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad("'.' and '..' are not allowed"));
    }
    if parts.iter().any(|p| p.encode_utf16().count() > 255) {
        return Err(bad("a component is longer than 255 characters"));
    }
    Ok(parts)
}

/// Bytes that writing `files` takes from the free space of a fresh volume with `cluster`-byte
/// clusters: file data rounded to clusters, plus directory clusters. Directory entries are
/// counted with long-name entries for every name, so this may overestimate by a few clusters.
fn space_needed(files: &[(Vec<&str>, &EspFile)], cluster: u64) -> u64 {
    let slots = |name: &str| 1 + (name.encode_utf16().count() as u64).div_ceil(13);
    // Directory path → directory-entry slots; the root starts with its volume label entry.
    let mut dirs: BTreeMap<Vec<&str>, u64> = BTreeMap::from([(Vec::new(), 1)]);
    let mut data = 0u64;
    for (parts, file) in files {
        data = data.saturating_add(
            (file.data.len() as u64)
                .div_ceil(cluster)
                .saturating_mul(cluster),
        );
        for depth in 0..parts.len() {
            let parent = parts[..depth].to_vec();
            let is_new_child = depth + 1 == parts.len() || !dirs.contains_key(&parts[..=depth]);
            if is_new_child {
                *dirs.entry(parent).or_default() += slots(parts[depth]);
            }
            if depth + 1 < parts.len() {
                // "." and ".." in every subdirectory.
                dirs.entry(parts[..=depth].to_vec()).or_insert(2);
            }
        }
    }
    let dir_clusters: u64 = dirs
        .values()
        .map(|&slots| (slots * 32).div_ceil(cluster).max(1))
        .sum();
    // The formatter already allocated the root directory's first cluster.
    data.saturating_add((dir_clusters - 1) * cluster)
}

/// A FAT32 image of exactly `size` bytes holding `files` (paths like `EFI/BOOT/BOOTX64.EFI`,
/// parent directories created as needed, written in the given order).
pub fn build_fat32(
    files: &[EspFile],
    size: u64,
    opts: &FatOptions,
) -> Result<Vec<u8>, FatImageError> {
    if size % SECTOR != 0 {
        return Err(FatImageError::AlignSize { size });
    }
    if size < MIN_FAT32_SIZE {
        return Err(FatImageError::FitFat32 { size });
    }
    if size > MAX_FAT32_SIZE || usize::try_from(size).is_err() {
        return Err(FatImageError::LimitSize { size });
    }
    check_label(&opts.volume_label)?;
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(files.len());
    for file in files {
        let parts = components(&file.path)?;
        // FAT compares names case-insensitively.
        if !seen.insert(file.path.to_uppercase()) {
            return Err(FatImageError::CheckPath {
                path: file.path.clone(),
                problem: "listed twice",
            });
        }
        checked.push((parts, file));
    }

    let mut image = Cursor::new(vec![0u8; size as usize]);
    let format = FormatVolumeOptions::new()
        .fat_type(FatType::Fat32)
        .volume_id(opts.volume_id)
        .volume_label(opts.volume_label);
    fatfs::format_volume(&mut image, format).map_err(FatImageError::FormatVolume)?;
    image.set_position(0);
    let fs = FileSystem::new(&mut image, FsOptions::new()).map_err(FatImageError::MountVolume)?;
    if fs.fat_type() != FatType::Fat32 {
        return Err(FatImageError::FitFat32 { size });
    }
    let stats = fs.stats().map_err(FatImageError::MountVolume)?;
    let cluster = u64::from(stats.cluster_size());
    let available = u64::from(stats.free_clusters()) * cluster;
    let needed = space_needed(&checked, cluster);
    if needed > available {
        return Err(FatImageError::FitFiles {
            size,
            needed,
            available,
        });
    }

    write_files(&fs, &checked)?;
    fs.unmount().map_err(FatImageError::UnmountVolume)?;
    let mut image = image.into_inner();
    fix_dot_entries(&mut image)?;
    Ok(image)
}

fn write_files<T: fatfs::ReadWriteSeek>(
    fs: &FileSystem<T>,
    files: &[(Vec<&str>, &EspFile)],
) -> Result<(), FatImageError> {
    let root = fs.root_dir();
    for (parts, file) in files {
        let mut dir = root.clone();
        for depth in 0..parts.len() - 1 {
            dir =
                dir.create_dir(parts[depth])
                    .map_err(|source| FatImageError::CreateDirectory {
                        path: parts[..=depth].join("/"),
                        source,
                    })?;
        }
        let write_err = |source| FatImageError::WriteFile {
            path: file.path.clone(),
            source,
        };
        let mut f = dir.create_file(parts[parts.len() - 1]).map_err(write_err)?;
        f.truncate().map_err(write_err)?;
        f.write_all(&file.data).map_err(write_err)?;
        f.flush().map_err(write_err)?;
    }
    Ok(())
}

/// Byte offsets of the FAT32 structures in an image, from its boot sector.
struct Geometry {
    fat: usize,
    data: usize,
    cluster: usize,
    clusters: u32,
    root: u32,
}

impl Geometry {
    fn read(image: &[u8]) -> Option<Self> {
        let u16_at = |at: usize| {
            Some(usize::from(u16::from_le_bytes(
                image.get(at..at + 2)?.try_into().ok()?,
            )))
        };
        let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
        let sector = u16_at(11)?;
        let cluster = sector * usize::from(*image.get(13)?);
        let reserved = u16_at(14)?;
        let fats = usize::from(*image.get(16)?);
        let fat_sectors = usize::try_from(u32_at(36)?).ok()?;
        let data = (reserved + fats * fat_sectors) * sector;
        let clusters = u32::try_from(image.len().checked_sub(data)? / cluster.max(1)).ok()?;
        Some(Geometry {
            fat: reserved * sector,
            data,
            cluster,
            clusters,
            root: u32_at(44)?,
        })
    }

    /// Byte range of cluster `c` in the image, if it is a data cluster.
    fn cluster_range(&self, c: u32) -> Option<std::ops::Range<usize>> {
        if c < 2 || c - 2 >= self.clusters {
            return None;
        }
        let start = self.data + (c as usize - 2) * self.cluster;
        Some(start..start + self.cluster)
    }

    /// The cluster chain starting at `first`, cut off at `clusters` links so a loop cannot hang.
    fn chain(&self, image: &[u8], first: u32) -> Vec<u32> {
        let mut chain = vec![first];
        let mut c = first;
        while chain.len() <= self.clusters as usize {
            let at = self.fat + c as usize * 4;
            let Some(next) = image
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
            else {
                break;
            };
            c = next & 0x0fff_ffff;
            if !(2..0x0fff_fff8).contains(&c) {
                break;
            }
            chain.push(c);
        }
        chain
    }
}

const ENTRY: usize = 32;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";
const ATTR_LFN: u8 = 0x0f;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_VOLUME_ID: u8 = 0x08;

/// In every subdirectory, turn `[LFN, ".", LFN, "..", …]` (what fatfs 0.3 writes) into
/// `[".", "..", deleted, deleted, …]`, and point a `..` that means the root at cluster 0 as the FAT
/// specification asks. Walks the tree from the root directory.
fn fix_dot_entries(image: &mut [u8]) -> Result<(), FatImageError> {
    let bad = |problem| FatImageError::FixDotEntries { problem };
    let geo = Geometry::read(image).ok_or(bad("boot sector unreadable"))?;
    let mut pending = vec![(geo.root, true)];
    let mut visited = BTreeSet::new();
    while let Some((first, is_root)) = pending.pop() {
        if !visited.insert(first) {
            return Err(bad("directory tree has a loop"));
        }
        for c in geo.chain(image, first) {
            let range = geo
                .cluster_range(c)
                .ok_or(bad("directory cluster out of range"))?;
            for entry in image[range].chunks_exact(ENTRY) {
                let (name, attr) = (&entry[..11], entry[11]);
                if name[0] == 0 {
                    break;
                }
                if name[0] == 0xe5
                    || attr == ATTR_LFN
                    || attr & ATTR_VOLUME_ID != 0
                    || name == DOT
                    || name == DOTDOT
                {
                    continue;
                }
                if attr & ATTR_DIRECTORY != 0 {
                    let hi = u32::from(u16::from_le_bytes([entry[20], entry[21]]));
                    let lo = u32::from(u16::from_le_bytes([entry[26], entry[27]]));
                    pending.push(((hi << 16) | lo, false));
                }
            }
        }
        if is_root {
            continue;
        }
        let range = geo
            .cluster_range(first)
            .ok_or(bad("directory cluster out of range"))?;
        let dir = &mut image[range];
        if dir.len() < 4 * ENTRY {
            return Err(bad("cluster smaller than four entries"));
        }
        let slot = |i: usize| i * ENTRY..(i + 1) * ENTRY;
        let written_by_fatfs = dir[11] == ATTR_LFN
            && &dir[slot(1)][..11] == DOT
            && dir[slot(2)][11] == ATTR_LFN
            && &dir[slot(3)][..11] == DOTDOT;
        if !written_by_fatfs {
            if &dir[..11] == DOT && &dir[slot(1)][..11] == DOTDOT {
                continue;
            }
            return Err(bad("unexpected layout at the start of a directory"));
        }
        dir.copy_within(slot(1), 0);
        dir.copy_within(slot(3), ENTRY);
        for i in [2, 3] {
            dir[slot(i)].fill(0);
            dir[i * ENTRY] = 0xe5;
        }
        let dotdot = &mut dir[slot(1)];
        let parent = u32::from(u16::from_le_bytes([dotdot[20], dotdot[21]])) << 16
            | u32::from(u16::from_le_bytes([dotdot[26], dotdot[27]]));
        if parent == geo.root {
            dotdot[20..22].fill(0);
            dotdot[26..28].fill(0);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_tools;
    use std::io::Read;

    pub(crate) const OPTS: FatOptions = FatOptions {
        volume_id: 0x5245_5343,
        volume_label: *b"RESCUE     ",
    };

    /// Deterministic, incompressible-looking bytes.
    pub(crate) fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    pub(crate) fn sample_files() -> Vec<EspFile> {
        vec![
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                data: noise(3 * 1024 * 1024 + 17, 1),
            },
            EspFile {
                path: "EFI/Linux/rescue-6.1.0.efi".into(),
                data: noise(700_001, 2),
            },
            EspFile {
                path: "loader/entries.srel".into(),
                data: b"type1\n".to_vec(),
            },
            EspFile {
                path: "empty".into(),
                data: Vec::new(),
            },
        ]
    }

    /// Read every file back with fatfs and compare with what was written.
    pub(crate) fn assert_holds(image: &[u8], files: &[EspFile]) {
        let fs = FileSystem::new(Cursor::new(image.to_vec()), FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_id(), OPTS.volume_id);
        assert_eq!(fs.volume_label(), "RESCUE");
        for f in files {
            let mut back = Vec::new();
            fs.root_dir()
                .open_file(&f.path)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == f.data, "{} differs after reading it back", f.path);
        }
    }

    /// `fsck.vfat -n` (check only) must exit 0 on the image.
    pub(crate) fn assert_fsck_clean(image: &[u8]) {
        let Some(fsck) = test_tools::tool("fsck.vfat") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp.img");
        std::fs::write(&path, image).unwrap();
        let out = std::process::Command::new(&fsck)
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck.vfat -n failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn files_read_back_and_fsck_is_clean() {
        let files = sample_files();
        let size = esp_size_for(&files);
        assert_eq!(size, 64 * MIB);
        let image = build_fat32(&files, size, &OPTS).unwrap();
        assert_eq!(image.len() as u64, size);
        assert_holds(&image, &files);
        assert_fsck_clean(&image);
        assert!(
            build_fat32(&files, size, &OPTS).unwrap() == image,
            "same inputs, different bytes"
        );
    }

    #[test]
    fn smallest_fat32_size_works() {
        let files = &sample_files()[2..];
        let image = build_fat32(files, MIN_FAT32_SIZE, &OPTS).unwrap();
        assert_holds(&image, files);
        assert_fsck_clean(&image);
    }

    #[test]
    fn esp_size_grows_with_content() {
        let big = [EspFile {
            path: "a".into(),
            data: vec![0; 100 * MIB as usize],
        }];
        // 100 MiB + 10 MiB + 4 MiB, already a whole MiB.
        assert_eq!(esp_size_for(&big), 114 * MIB);
        let odd = [EspFile {
            path: "a".into(),
            data: vec![0; 70 * MIB as usize + 1],
        }];
        assert_eq!(esp_size_for(&odd), 82 * MIB);
        assert_eq!(esp_size_for(&[]), MIN_ESP_SIZE);
    }

    #[test]
    fn content_that_does_not_fit_says_how_much_is_needed() {
        let files = [EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            data: vec![7; 40 * MIB as usize],
        }];
        let err = build_fat32(&files, 34 * MIB, &OPTS).unwrap_err();
        let FatImageError::FitFiles {
            needed, available, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(
            needed >= 40 * MIB && available < 34 * MIB,
            "{needed} {available}"
        );
        assert!(
            err.to_string().contains(&format!("need {needed} bytes")),
            "{err}"
        );
        // The estimate is an upper bound: content sized exactly to `available` minus directories fits.
        let exact = [EspFile {
            path: "BOOTX64.EFI".into(),
            data: vec![1; (available - 512) as usize],
        }];
        assert!(build_fat32(&exact, 34 * MIB, &OPTS).is_ok());
    }

    #[test]
    fn bad_sizes_labels_and_paths_are_errors() {
        let files = sample_files();
        assert!(matches!(
            build_fat32(&files, 64 * MIB + 1, &OPTS),
            Err(FatImageError::AlignSize { .. })
        ));
        assert!(matches!(
            build_fat32(&files, 0, &OPTS),
            Err(FatImageError::FitFat32 { size: 0 })
        ));
        assert!(matches!(
            build_fat32(&files, 32 * MIB, &OPTS),
            Err(FatImageError::FitFat32 { .. })
        ));
        assert!(matches!(
            build_fat32(&files, MAX_FAT32_SIZE + SECTOR, &OPTS),
            Err(FatImageError::LimitSize { .. })
        ));
        let lower = FatOptions {
            volume_label: *b"rescue     ",
            ..OPTS
        };
        assert!(matches!(
            build_fat32(&files, 64 * MIB, &lower),
            Err(FatImageError::CheckLabel { .. })
        ));
        for path in ["/EFI/x", "EFI//x", "EFI/", "", "a/../b", "EFI\\BOOT"] {
            let f = [EspFile {
                path: path.into(),
                data: vec![1],
            }];
            assert!(
                matches!(
                    build_fat32(&f, 64 * MIB, &OPTS),
                    Err(FatImageError::CheckPath { .. })
                ),
                "{path:?}"
            );
        }
        let twice = [
            EspFile {
                path: "EFI/a".into(),
                data: vec![1],
            },
            EspFile {
                path: "efi/A".into(),
                data: vec![2],
            },
        ];
        assert!(matches!(
            build_fat32(&twice, 64 * MIB, &OPTS),
            Err(FatImageError::CheckPath { .. })
        ));
        // A file where a directory must go: reported by the write, not a panic.
        let clash = [
            EspFile {
                path: "EFI".into(),
                data: vec![1],
            },
            EspFile {
                path: "EFI/x".into(),
                data: vec![2],
            },
        ];
        assert!(matches!(
            build_fat32(&clash, 64 * MIB, &OPTS),
            Err(FatImageError::CreateDirectory { .. })
        ));
    }
}
