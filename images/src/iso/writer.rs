//! Laying out and writing an ISO 9660 image: the directory tree and its path tables, the volume
//! descriptors, the El Torito catalog and boot info table, the hybrid MBR, then every file as one
//! contiguous extent. The layout is fixed in [`IsoImage::new`], before anything is written.
//!
//! Writes only to the `Write + Seek` it is handed; never reads a medium (that is `reader`'s job).

use super::encode::{both16, both32, dir_record, extent_size, padded, record_len, vd_date};
use super::{
    BLOCK, BOOT_RECORD_LBA, Extent, FIRST_FREE_LBA, IsoFile, IsoOptions, MbrPartition, PVD_LBA,
    TAIL_PADDING, TERMINATOR_LBA,
};
use std::collections::BTreeMap;
use std::io::{self, Seek, SeekFrom, Write};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IsoImageError {
    #[error("volume id {id:?}: use at most 32 characters A-Z, 0-9 and _")]
    CheckVolumeId { id: String },
    #[error("ISO path {path:?}: {problem}")]
    CheckPath { path: String, problem: &'static str },
    #[error("boot image {path:?} is not in the tree")]
    FindBootImage { path: String },
    #[error("boot image {path:?} is {len} bytes; a boot info table needs at least 64")]
    FitBootInfoTable { path: String, len: u64 },
    #[error("the image would need {sectors} sectors, more than ISO 9660's 32-bit limit")]
    LimitSize { sectors: u64 },
    #[error("MBR boot code is {len} bytes; at most 440 fit in front of the partition table")]
    FitBootCode { len: usize },
    #[error("writing the image")]
    WriteImage(#[source] io::Error),
}

/// A directory of the tree being laid out.
#[derive(Debug, Default)]
struct Dir {
    /// Child directories by ISO name.
    dirs: BTreeMap<String, Dir>,
    /// Files by ISO name (with `;1`), value = index into `IsoImage::files`.
    files: BTreeMap<String, usize>,
    lba: u32,
    /// Bytes of the directory extent (a multiple of 2048).
    size: u32,
    /// Number in the path table (1 = root).
    number: u16,
}

/// A laid-out image: call [`IsoImage::layout`]/[`IsoImage::file_mut`] to patch, then [`IsoImage::write`].
#[derive(Debug)]
pub struct IsoImage {
    opts: IsoOptions,
    files: Vec<IsoFile>,
    extents: Vec<Extent>,
    root: Dir,
    path_table_lba_l: u32,
    path_table_lba_m: u32,
    path_table_size: u32,
    catalog_lba: Option<u32>,
    total_sectors: u32,
    system_area: Vec<u8>,
}

fn check_component(path: &str, name: &str, is_file: bool) -> Result<String, IsoImageError> {
    let bad = |problem| IsoImageError::CheckPath {
        path: path.to_owned(),
        problem,
    };
    if name.is_empty() {
        return Err(bad("empty component (leading, trailing or doubled '/')"));
    }
    if name.len() > 30 {
        return Err(bad("a component is longer than 30 characters"));
    }
    let dots = name.matches('.').count();
    if dots > usize::from(is_file) {
        return Err(bad(
            "directories take no '.', file names at most one (ISO 9660)",
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'.')
    {
        return Err(bad("use A-Z, 0-9, _ and one '.' (plain ISO 9660 names)"));
    }
    Ok(if is_file {
        if dots == 0 {
            format!("{name}.;1")
        } else {
            format!("{name};1")
        }
    } else {
        name.to_owned()
    })
}

impl Dir {
    fn records(&self) -> impl Iterator<Item = usize> + '_ {
        [record_len(1), record_len(1)].into_iter().chain(
            // ISO 9660 sorts a directory's records by name; files and directories together.
            self.sorted_names()
                .into_iter()
                .map(|(n, _)| record_len(n.len())),
        )
    }

    /// Child names (directories and files) in ISO order; `true` marks directories.
    fn sorted_names(&self) -> Vec<(&str, bool)> {
        let mut v: Vec<(&str, bool)> = self
            .dirs
            .keys()
            .map(|k| (k.as_str(), true))
            .chain(self.files.keys().map(|k| (k.as_str(), false)))
            .collect();
        v.sort();
        v
    }
}

impl IsoImage {
    /// Checks the names and lays the image out; nothing is written yet.
    pub fn new(opts: IsoOptions, mut files: Vec<IsoFile>) -> Result<Self, IsoImageError> {
        if opts.volume_id.is_empty()
            || opts.volume_id.len() > 32
            || !opts
                .volume_id
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        {
            return Err(IsoImageError::CheckVolumeId {
                id: opts.volume_id.clone(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut root = Dir::default();
        for (i, f) in files.iter().enumerate() {
            let parts: Vec<&str> = f.path.split('/').collect();
            let mut dir = &mut root;
            for (depth, part) in parts.iter().enumerate() {
                let is_file = depth + 1 == parts.len();
                let name = check_component(&f.path, part, is_file)?;
                if is_file {
                    if dir.dirs.contains_key(&name[..name.len() - 2])
                        || dir.files.insert(name, i).is_some()
                    {
                        return Err(IsoImageError::CheckPath {
                            path: f.path.clone(),
                            problem: "listed twice",
                        });
                    }
                } else {
                    if depth >= 7 {
                        return Err(IsoImageError::CheckPath {
                            path: f.path.clone(),
                            problem: "deeper than ISO 9660's 8 levels",
                        });
                    }
                    dir = dir.dirs.entry(name).or_default();
                }
            }
        }
        for boot in opts
            .bios_boot
            .as_ref()
            .map(|b| &b.path)
            .into_iter()
            .chain(opts.efi_boot.as_ref())
        {
            let Some(f) = files.iter().find(|f| &f.path == boot) else {
                return Err(IsoImageError::FindBootImage { path: boot.clone() });
            };
            if opts
                .bios_boot
                .as_ref()
                .is_some_and(|b| b.boot_info_table && &b.path == boot && f.data.len() < 64)
            {
                return Err(IsoImageError::FitBootInfoTable {
                    path: boot.clone(),
                    len: f.data.len() as u64,
                });
            }
        }

        // Path table numbers: breadth first, children sorted (ISO 9660 6.9.1).
        let mut order: Vec<Vec<String>> = vec![Vec::new()];
        let mut i = 0;
        while i < order.len() {
            let dir = Self::dir_at(&root, &order[i]);
            let children: Vec<Vec<String>> = dir
                .dirs
                .keys()
                .map(|k| {
                    let mut p = order[i].clone();
                    p.push(k.clone());
                    p
                })
                .collect();
            order.extend(children);
            i += 1;
        }
        let path_table_size: u32 = order
            .iter()
            .map(|p| {
                let n = p.last().map_or(1, |s| s.len());
                (8 + n + n % 2) as u32
            })
            .sum();
        let pt_sectors = u64::from(path_table_size).div_ceil(BLOCK) as u32;
        let path_table_lba_l = FIRST_FREE_LBA;
        let path_table_lba_m = path_table_lba_l + pt_sectors;
        let mut next = path_table_lba_m + pt_sectors;
        for (n, p) in order.iter().enumerate() {
            let dir = Self::dir_at_mut(&mut root, p);
            dir.number = (n + 1) as u16;
            dir.size = extent_size(dir.records());
            dir.lba = next;
            next += dir.size / BLOCK as u32;
        }
        let catalog_lba = if opts.bios_boot.is_some() || opts.efi_boot.is_some() {
            next += 1;
            Some(next - 1)
        } else {
            None
        };
        let mut extents = Vec::with_capacity(files.len());
        let mut lba = u64::from(next);
        for f in &files {
            extents.push(Extent {
                lba: lba as u32,
                len: f.data.len() as u64,
            });
            lba += (f.data.len() as u64).div_ceil(BLOCK);
        }
        let lba = lba + TAIL_PADDING;
        if lba > u64::from(u32::MAX) {
            return Err(IsoImageError::LimitSize { sectors: lba });
        }
        let mut image = IsoImage {
            opts,
            files,
            extents,
            root,
            path_table_lba_l,
            path_table_lba_m,
            path_table_size,
            catalog_lba,
            total_sectors: lba as u32,
            system_area: vec![0; (BLOCK * u64::from(PVD_LBA)) as usize],
        };
        image.patch_boot_info_table();
        Ok(image)
    }

    fn dir_at<'a>(root: &'a Dir, path: &[String]) -> &'a Dir {
        path.iter().fold(root, |d, p| &d.dirs[p])
    }

    fn dir_at_mut<'a>(root: &'a mut Dir, path: &[String]) -> &'a mut Dir {
        let mut d = root;
        for p in path {
            d = d.dirs.entry(p.clone()).or_default();
        }
        d
    }

    /// Extent of a file given by its tree path.
    pub fn layout(&self, path: &str) -> Option<Extent> {
        self.files
            .iter()
            .position(|f| f.path == path)
            .map(|i| self.extents[i])
    }

    /// Total bytes of the image.
    pub fn size(&self) -> u64 {
        u64::from(self.total_sectors) * BLOCK
    }

    /// A file's bytes, to patch in place (its size cannot change: the layout is fixed).
    pub fn file_mut(&mut self, path: &str) -> Option<&mut [u8]> {
        self.files
            .iter_mut()
            .find(|f| f.path == path)
            .map(|f| f.data.as_mut_slice())
    }

    /// Fills the first 512 bytes of the system area: `boot_code` (at most 440 bytes), a disk signature
    /// and up to four partition entries, so the image also boots as a disk.
    pub fn set_mbr(
        &mut self,
        boot_code: &[u8],
        signature: u32,
        partitions: &[MbrPartition],
    ) -> Result<(), IsoImageError> {
        if boot_code.len() > 440 {
            return Err(IsoImageError::FitBootCode {
                len: boot_code.len(),
            });
        }
        let mbr = &mut self.system_area[..512];
        mbr.fill(0);
        mbr[..boot_code.len()].copy_from_slice(boot_code);
        mbr[440..444].copy_from_slice(&signature.to_le_bytes());
        for (i, p) in partitions.iter().take(4).enumerate() {
            let e = &mut mbr[446 + 16 * i..462 + 16 * i];
            e[0] = if p.bootable { 0x80 } else { 0 };
            // CHS fields: "use LBA" (1023/254/63) as every hybrid image does.
            e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[4] = p.kind;
            e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[8..12].copy_from_slice(&p.first_lba.to_le_bytes());
            e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
        }
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        Ok(())
    }

    /// El Torito boot info table: where the volume descriptor and the boot file are, and a checksum of
    /// the file from byte 64, so a no-emulation loader can find the rest of itself.
    fn patch_boot_info_table(&mut self) {
        let Some(b) = self.opts.bios_boot.clone() else {
            return;
        };
        if !b.boot_info_table {
            return;
        }
        let Some(i) = self.files.iter().position(|f| f.path == b.path) else {
            return;
        };
        let ext = self.extents[i];
        let data = &mut self.files[i].data;
        let sum = data[64..].chunks(4).fold(0u32, |acc, c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            acc.wrapping_add(u32::from_le_bytes(w))
        });
        data[8..12].copy_from_slice(&PVD_LBA.to_le_bytes());
        data[12..16].copy_from_slice(&ext.lba.to_le_bytes());
        data[16..20].copy_from_slice(&(ext.len as u32).to_le_bytes());
        data[20..24].copy_from_slice(&sum.to_le_bytes());
        data[24..64].fill(0);
    }

    fn pvd(&self) -> Vec<u8> {
        let mut v = vec![0u8; BLOCK as usize];
        v[0] = 1;
        v[1..6].copy_from_slice(b"CD001");
        v[6] = 1;
        v[8..40].copy_from_slice(&padded::<32>("LINUX", b' '));
        v[40..72].copy_from_slice(&padded::<32>(&self.opts.volume_id, b' '));
        v[80..88].copy_from_slice(&both32(self.total_sectors));
        v[120..124].copy_from_slice(&both16(1));
        v[124..128].copy_from_slice(&both16(1));
        v[128..132].copy_from_slice(&both16(BLOCK as u16));
        v[132..140].copy_from_slice(&both32(self.path_table_size));
        v[140..144].copy_from_slice(&self.path_table_lba_l.to_le_bytes());
        v[148..152].copy_from_slice(&self.path_table_lba_m.to_be_bytes());
        let root = dir_record(&[0], self.root.lba, self.root.size, true, self.opts.epoch);
        v[156..190].copy_from_slice(&root);
        v[190..318].copy_from_slice(&padded::<128>("", b' '));
        v[318..446].copy_from_slice(&padded::<128>("RESCUE", b' '));
        v[446..574].copy_from_slice(&padded::<128>("RESCUE", b' '));
        v[574..702].copy_from_slice(&padded::<128>("RESCUE XTASK BUILD", b' '));
        for field in [702..739, 739..776, 776..813] {
            v[field].fill(b' ');
        }
        let date = vd_date(self.opts.epoch);
        v[813..830].copy_from_slice(&date);
        v[830..847].copy_from_slice(&date);
        // Expiration "not specified": digits '0', offset 0.
        v[847..863].fill(b'0');
        v[864..881].copy_from_slice(&date);
        v[881] = 1;
        v
    }

    fn boot_record(&self, catalog: u32) -> Vec<u8> {
        let mut v = vec![0u8; BLOCK as usize];
        v[1..6].copy_from_slice(b"CD001");
        v[6] = 1;
        v[7..7 + 23].copy_from_slice(b"EL TORITO SPECIFICATION");
        v[0x47..0x4b].copy_from_slice(&catalog.to_le_bytes());
        v
    }

    /// Boot entry: bootable, no emulation, default segment, `count` 512-byte sectors at `lba`.
    fn boot_entry(count: u16, lba: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[0] = 0x88;
        e[6..8].copy_from_slice(&count.to_le_bytes());
        e[8..12].copy_from_slice(&lba.to_le_bytes());
        e
    }

    fn catalog(&self) -> Vec<u8> {
        let mut v = vec![0u8; BLOCK as usize];
        let bios = self.opts.bios_boot.as_ref().and_then(|b| {
            self.layout(&b.path)
                .map(|e| Self::boot_entry(b.load_sectors, e.lba))
        });
        let efi = self
            .opts
            .efi_boot
            .as_ref()
            .and_then(|p| self.layout(p))
            .map(|e| {
                // Sector count is 16 bits of 512-byte sectors; larger images say 0 and firmware takes
                // the FAT's own size (UEFI spec 13.3.2.1, what xorriso does too).
                let count = u16::try_from(e.sectors512()).unwrap_or(0);
                Self::boot_entry(count, e.lba)
            });
        // Validation entry.
        v[0] = 1;
        v[1] = if bios.is_some() { 0 } else { 0xef };
        v[4..4 + 6].copy_from_slice(b"RESCUE");
        v[30] = 0x55;
        v[31] = 0xaa;
        let sum = v[..32].chunks(2).fold(0u16, |acc, w| {
            acc.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        v[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        match (bios, efi) {
            (Some(b), Some(e)) => {
                v[32..64].copy_from_slice(&b);
                // Final section header for platform 0xEF with one entry.
                v[64] = 0x91;
                v[65] = 0xef;
                v[66..68].copy_from_slice(&1u16.to_le_bytes());
                v[96..128].copy_from_slice(&e);
            }
            (Some(b), None) => v[32..64].copy_from_slice(&b),
            (None, Some(e)) => v[32..64].copy_from_slice(&e),
            (None, None) => {}
        }
        v
    }

    fn path_table(&self, big_endian: bool) -> Vec<u8> {
        let mut entries: Vec<(u16, Vec<String>, &Dir)> = Vec::new();
        let mut queue: Vec<(u16, Vec<String>, &Dir)> = vec![(1, Vec::new(), &self.root)];
        while !queue.is_empty() {
            let mut nextq = Vec::new();
            for (parent, path, dir) in queue {
                for (name, child) in &dir.dirs {
                    let mut p = path.clone();
                    p.push(name.clone());
                    nextq.push((dir.number, p, child));
                }
                entries.push((parent, path, dir));
            }
            queue = nextq;
        }
        entries.sort_by_key(|(_, _, d)| d.number);
        let mut v = Vec::new();
        for (parent, path, dir) in entries {
            let name = path.last().map_or(&[0u8][..], |s| s.as_bytes());
            v.push(name.len() as u8);
            v.push(0);
            if big_endian {
                v.extend_from_slice(&dir.lba.to_be_bytes());
                v.extend_from_slice(&parent.to_be_bytes());
            } else {
                v.extend_from_slice(&dir.lba.to_le_bytes());
                v.extend_from_slice(&parent.to_le_bytes());
            }
            v.extend_from_slice(name);
            if name.len() % 2 == 1 {
                v.push(0);
            }
        }
        v
    }

    fn dir_extent(&self, dir: &Dir, parent: &Dir) -> Vec<u8> {
        let mut v: Vec<u8> = Vec::with_capacity(dir.size as usize);
        let epoch = self.opts.epoch;
        let mut push = |rec: Vec<u8>| {
            let in_sector = v.len() % BLOCK as usize;
            if in_sector + rec.len() > BLOCK as usize {
                v.resize(v.len() + BLOCK as usize - in_sector, 0);
            }
            v.extend_from_slice(&rec);
        };
        push(dir_record(&[0], dir.lba, dir.size, true, epoch));
        push(dir_record(&[1], parent.lba, parent.size, true, epoch));
        for (name, is_dir) in dir.sorted_names() {
            if is_dir {
                let c = &dir.dirs[name];
                push(dir_record(name.as_bytes(), c.lba, c.size, true, epoch));
            } else {
                let e = self.extents[dir.files[name]];
                push(dir_record(
                    name.as_bytes(),
                    e.lba,
                    e.len as u32,
                    false,
                    epoch,
                ));
            }
        }
        v.resize(dir.size as usize, 0);
        v
    }

    fn write_dirs<W: Write + Seek>(&self, w: &mut W, dir: &Dir, parent: &Dir) -> io::Result<()> {
        w.seek(SeekFrom::Start(u64::from(dir.lba) * BLOCK))?;
        w.write_all(&self.dir_extent(dir, parent))?;
        for child in dir.dirs.values() {
            self.write_dirs(w, child, dir)?;
        }
        Ok(())
    }

    /// Writes every byte of the image from offset 0 to [`IsoImage::size`].
    pub fn write<W: Write + Seek>(&self, w: &mut W) -> Result<(), IsoImageError> {
        (|| {
            w.seek(SeekFrom::Start(0))?;
            w.write_all(&self.system_area)?;
            w.write_all(&self.pvd())?;
            match self.catalog_lba {
                Some(c) => w.write_all(&self.boot_record(c))?,
                None => w.write_all(&[0u8; BLOCK as usize])?,
            }
            let mut term = vec![0u8; BLOCK as usize];
            term[0] = 255;
            term[1..6].copy_from_slice(b"CD001");
            term[6] = 1;
            if self.catalog_lba.is_none() {
                // No boot record: the terminator moves up and sector 18 stays zero.
                w.seek(SeekFrom::Start(u64::from(BOOT_RECORD_LBA) * BLOCK))?;
            } else {
                w.seek(SeekFrom::Start(u64::from(TERMINATOR_LBA) * BLOCK))?;
            }
            w.write_all(&term)?;
            for (lba, be) in [
                (self.path_table_lba_l, false),
                (self.path_table_lba_m, true),
            ] {
                let mut t = self.path_table(be);
                t.resize(
                    (t.len() as u64).div_ceil(BLOCK).max(1) as usize * BLOCK as usize,
                    0,
                );
                w.seek(SeekFrom::Start(u64::from(lba) * BLOCK))?;
                w.write_all(&t)?;
            }
            self.write_dirs(w, &self.root, &self.root)?;
            if let Some(c) = self.catalog_lba {
                w.seek(SeekFrom::Start(u64::from(c) * BLOCK))?;
                w.write_all(&self.catalog())?;
            }
            for (f, e) in self.files.iter().zip(&self.extents) {
                w.seek(SeekFrom::Start(u64::from(e.lba) * BLOCK))?;
                w.write_all(&f.data)?;
                let pad = (BLOCK - f.data.len() as u64 % BLOCK) % BLOCK;
                w.write_all(&vec![0u8; pad as usize])?;
            }
            // The last file may be empty: make sure the image is exactly its declared size.
            let end = self.size();
            if w.seek(SeekFrom::End(0))? < end {
                w.seek(SeekFrom::Start(end - 1))?;
                w.write_all(&[0])?;
            }
            w.flush()
        })()
        .map_err(IsoImageError::WriteImage)
    }

    /// The whole image in memory.
    pub fn to_vec(&self) -> Result<Vec<u8>, IsoImageError> {
        let mut c = io::Cursor::new(Vec::with_capacity(self.size() as usize));
        self.write(&mut c)?;
        Ok(c.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::{BiosBoot, IsoReadError, find_file, volume_info};
    use crate::test_tools;
    use std::io::Cursor;

    fn sample() -> (IsoOptions, Vec<IsoFile>) {
        let mut cdboot = vec![0u8; 4096];
        cdboot[0] = 0xeb;
        cdboot[4000] = 7;
        let files = vec![
            IsoFile {
                path: "RESCUE/VMLINUZ".into(),
                data: vec![0x11; 5000],
            },
            IsoFile {
                path: "RESCUE/INITRD.IMG".into(),
                data: vec![0x22; 3000],
            },
            IsoFile {
                path: "BOOT/GRUB/ELTORITO.IMG".into(),
                data: cdboot,
            },
            IsoFile {
                path: "BOOT/GRUB/GRUB.CFG".into(),
                data: b"menuentry x {}\n".to_vec(),
            },
            IsoFile {
                path: "EFI/ESP.IMG".into(),
                data: vec![0xf0; 4 * 2048 + 100],
            },
            IsoFile {
                path: "EMPTY.TXT".into(),
                data: Vec::new(),
            },
        ];
        let opts = IsoOptions {
            volume_id: "RESCUE_TEST".into(),
            epoch: 1_700_000_000,
            bios_boot: Some(BiosBoot {
                path: "BOOT/GRUB/ELTORITO.IMG".into(),
                load_sectors: 4,
                boot_info_table: true,
            }),
            efi_boot: Some("EFI/ESP.IMG".into()),
        };
        (opts, files)
    }

    #[test]
    fn bad_names_are_refused_before_writing() {
        let (opts, mut files) = sample();
        files.push(IsoFile {
            path: "lower/case".into(),
            data: vec![],
        });
        let err = IsoImage::new(opts.clone(), files).unwrap_err();
        assert!(matches!(err, IsoImageError::CheckPath { .. }), "{err:?}");
        let (mut o, files) = sample();
        o.volume_id = "has space".into();
        assert!(matches!(
            IsoImage::new(o, files).unwrap_err(),
            IsoImageError::CheckVolumeId { .. }
        ));
        let (mut o, files) = sample();
        o.efi_boot = Some("EFI/MISSING.IMG".into());
        assert!(matches!(
            IsoImage::new(o, files).unwrap_err(),
            IsoImageError::FindBootImage { .. }
        ));
    }

    #[test]
    fn image_is_readable_bootable_and_reproducible() {
        let (opts, files) = sample();
        let mut iso = IsoImage::new(opts.clone(), files.clone()).unwrap();
        let esp = iso.layout("EFI/ESP.IMG").unwrap();
        iso.set_mbr(
            &[0xfa; 440],
            0x1234_5678,
            &[
                MbrPartition {
                    bootable: true,
                    kind: 0,
                    first_lba: 0,
                    sectors: (iso.size() / 512) as u32,
                },
                MbrPartition {
                    bootable: false,
                    kind: 0xef,
                    first_lba: esp.lba512() as u32,
                    sectors: esp.sectors512() as u32,
                },
            ],
        )
        .unwrap();
        let bytes = iso.to_vec().unwrap();
        assert_eq!(bytes.len() as u64, iso.size());
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        assert_eq!(bytes[446 + 16 + 4], 0xef);

        // Every file reads back at its extent through our reader.
        let mut c = Cursor::new(&bytes);
        let info = volume_info(&mut c).unwrap().unwrap();
        assert_eq!(info.volume_id, "RESCUE_TEST");
        assert_eq!(info.size, bytes.len() as u64);
        for f in &files {
            let e = find_file(&mut c, &f.path.to_lowercase()).unwrap();
            let at = (u64::from(e.lba) * BLOCK) as usize;
            if f.path != "BOOT/GRUB/ELTORITO.IMG" {
                assert_eq!(&bytes[at..at + f.data.len()], &f.data[..], "{}", f.path);
            }
        }
        assert!(matches!(
            find_file(&mut c, "RESCUE/NOPE"),
            Err(IsoReadError::FindFile { .. })
        ));

        // The boot info table names the PVD, the file and its checksum.
        let bt = iso.layout("BOOT/GRUB/ELTORITO.IMG").unwrap();
        let at = (u64::from(bt.lba) * BLOCK) as usize;
        assert_eq!(&bytes[at + 8..at + 12], &16u32.to_le_bytes());
        assert_eq!(&bytes[at + 12..at + 16], &bt.lba.to_le_bytes());
        assert_eq!(&bytes[at + 16..at + 20], &4096u32.to_le_bytes());
        assert_eq!(&bytes[at + 20..at + 24], &7u32.to_le_bytes());

        assert!(
            IsoImage::new(opts, files).unwrap().to_vec().unwrap()[32768..] == bytes[32768..],
            "same input, different bytes"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.iso");
        std::fs::write(&path, &bytes).unwrap();
        if let Some(xorriso) = test_tools::tool("xorriso") {
            let out = std::process::Command::new(xorriso)
                .args(["-indev"])
                .arg(&path)
                .args(["-report_el_torito", "plain", "-find", "/", "-type", "f"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "xorriso:\n{text}");
            let entry = |n: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("El Torito boot img :   {n}")))
                    .map(|l| l.split_whitespace().skip(6).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            };
            // Platform, bootable, emulation, load segment, header platform, load size, LBA.
            assert_eq!(
                entry("1"),
                format!("BIOS y none 0x0000 0x00 4 {}", bt.lba),
                "{text}"
            );
            assert_eq!(
                entry("2"),
                format!("UEFI y none 0x0000 0x00 17 {}", esp.lba),
                "{text}"
            );
            assert!(
                text.contains("El Torito img opts :   1  boot-info-table"),
                "{text}"
            );
            assert!(
                text.contains("El Torito img path :   2  /EFI/ESP.IMG"),
                "{text}"
            );
            assert!(text.contains("/RESCUE/VMLINUZ"), "{text}");
            assert!(
                !text.contains("FAILURE") && !text.contains("SORRY"),
                "{text}"
            );
        }
        if let Some(isoinfo) = test_tools::tool("isoinfo") {
            let out = std::process::Command::new(&isoinfo)
                .arg("-d")
                .arg("-i")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("Volume id: RESCUE_TEST"), "{text}");
            assert!(text.contains("El Torito VD version 1 found"), "{text}");
            assert!(
                text.contains(&format!("Volume size is: {}", bytes.len() / 2048)),
                "{text}"
            );
            let out = std::process::Command::new(&isoinfo)
                .args(["-f", "-i"])
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("/BOOT/GRUB/GRUB.CFG;1"), "{text}");
            assert!(text.contains("/EMPTY.TXT;1"), "{text}");
        }
    }

    #[test]
    fn big_directories_span_sectors_without_splitting_records() {
        let files: Vec<IsoFile> = (0..200)
            .map(|i| IsoFile {
                path: format!("D/FILE_NUMBER_{i:04}.BIN"),
                data: vec![i as u8; 10],
            })
            .collect();
        let opts = IsoOptions {
            volume_id: "BIG".into(),
            epoch: 0,
            bios_boot: None,
            efi_boot: None,
        };
        let iso = IsoImage::new(opts, files.clone()).unwrap();
        let bytes = iso.to_vec().unwrap();
        let mut c = Cursor::new(&bytes);
        for f in &files {
            let e = find_file(&mut c, &f.path).unwrap();
            let at = (u64::from(e.lba) * BLOCK) as usize;
            assert_eq!(&bytes[at..at + 10], &f.data[..]);
        }
    }
}
