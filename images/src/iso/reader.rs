//! Reading ISO 9660 media: the primary volume descriptor, directories (with Rock Ridge `NM` names) and
//! whole files, over any `Read + Seek`. Every extent is checked against the medium's end before it is
//! read, and a damaged record is an [`IsoReadError`], never a panic.
//!
//! Read-only by construction: nothing here writes, so the reader is safe on a source medium.

use super::{BLOCK, Extent, PVD_LBA};
use std::io::{self, Read, Seek, SeekFrom};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IsoReadError {
    #[error("reading the medium")]
    ReadMedium(#[source] io::Error),
    #[error("no ISO 9660 primary volume descriptor at sector 16")]
    FindVolumeDescriptor,
    #[error("{path:?} is not on the medium")]
    FindFile { path: String },
    #[error("directory record in sector {lba} is damaged")]
    ParseDirectory { lba: u32 },
    #[error("the image is truncated: {what} lies beyond its end ({size} bytes)")]
    FindExtent { what: String, size: u64 },
}

/// Facts from the primary volume descriptor of an ISO 9660 medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub volume_id: String,
    /// Bytes the volume declares (volume space size × 2048).
    pub size: u64,
}

/// Reads the primary volume descriptor; `None` if the medium is not ISO 9660.
pub fn volume_info<R: Read + Seek>(r: &mut R) -> Result<Option<VolumeInfo>, IsoReadError> {
    let mut pvd = [0u8; BLOCK as usize];
    r.seek(SeekFrom::Start(u64::from(PVD_LBA) * BLOCK))
        .map_err(IsoReadError::ReadMedium)?;
    if let Err(e) = r.read_exact(&mut pvd) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(None)
        } else {
            Err(IsoReadError::ReadMedium(e))
        };
    }
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Ok(None);
    }
    let le32 = |o: usize| u32::from_le_bytes([pvd[o], pvd[o + 1], pvd[o + 2], pvd[o + 3]]);
    Ok(Some(VolumeInfo {
        volume_id: String::from_utf8_lossy(&pvd[40..72]).trim_end().to_owned(),
        size: u64::from(le32(80)) * BLOCK,
    }))
}

/// Finds the file `path` (`/`-separated, compared as [`IsoReader::lookup`] does) and returns its extent.
pub fn find_file<R: Read + Seek>(r: &mut R, path: &str) -> Result<Extent, IsoReadError> {
    let e = IsoReader::open(r)?.lookup(path)?;
    if e.is_dir || path.split('/').all(str::is_empty) {
        return Err(IsoReadError::FindFile {
            path: path.to_owned(),
        });
    }
    Ok(Extent {
        lba: e.lba,
        len: u64::from(e.size),
    })
}

/// One directory entry, named by its Rock Ridge `NM` entry when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub lba: u32,
    pub size: u32,
    pub is_dir: bool,
}

/// The name as lookups compare it: no `;1` version, no trailing `.`, lower case.
fn normalise(name: &str) -> String {
    let base = name.split(';').next().unwrap_or(name);
    let base = base.strip_suffix('.').unwrap_or(base);
    base.to_ascii_lowercase()
}

fn parse_record(rec: &[u8], lba: u32) -> Result<DirEntry, IsoReadError> {
    let damaged = IsoReadError::ParseDirectory { lba };
    if rec.len() < 34 {
        return Err(damaged);
    }
    let le32 = |o: usize| u32::from_le_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
    let name_len = usize::from(rec[32]);
    if 33 + name_len > rec.len() {
        return Err(damaged);
    }
    let raw = &rec[33..33 + name_len];
    let mut name = match raw {
        [0] => ".".to_owned(),
        [1] => "..".to_owned(),
        _ => String::from_utf8_lossy(raw).into_owned(),
    };
    // Rock Ridge: System Use entries follow the name, padded to an even offset.
    let mut su = 33 + name_len + (33 + name_len) % 2;
    let mut rr_name = String::new();
    while su + 4 <= rec.len() {
        let len = usize::from(rec[su + 2]);
        if len < 4 || su + len > rec.len() {
            break;
        }
        if &rec[su..su + 2] == b"NM" && len >= 5 {
            rr_name.push_str(&String::from_utf8_lossy(&rec[su + 5..su + len]));
        }
        su += len;
    }
    if !rr_name.is_empty() {
        name = rr_name;
    }
    Ok(DirEntry {
        name,
        lba: le32(2),
        size: le32(10),
        is_dir: rec[25] & 2 != 0,
    })
}

/// A read-only ISO 9660 directory reader over any `Read + Seek` (a file, a CD, a disk the ISO was
/// written to). Never writes.
pub struct IsoReader<R> {
    r: R,
    size: u64,
    root: DirEntry,
}

impl<R: Read + Seek> IsoReader<R> {
    /// Reads the primary volume descriptor; fails when there is none.
    pub fn open(mut r: R) -> Result<Self, IsoReadError> {
        let size = r.seek(SeekFrom::End(0)).map_err(IsoReadError::ReadMedium)?;
        let mut pvd = [0u8; BLOCK as usize];
        r.seek(SeekFrom::Start(u64::from(PVD_LBA) * BLOCK))
            .map_err(IsoReadError::ReadMedium)?;
        match r.read_exact(&mut pvd) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(IsoReadError::FindVolumeDescriptor);
            }
            Err(e) => return Err(IsoReadError::ReadMedium(e)),
        }
        if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
            return Err(IsoReadError::FindVolumeDescriptor);
        }
        let root = parse_record(&pvd[156..156 + 34], PVD_LBA)?;
        Ok(IsoReader { r, size, root })
    }

    fn read_extent(&mut self, e: &DirEntry, what: &str) -> Result<Vec<u8>, IsoReadError> {
        let start = u64::from(e.lba) * BLOCK;
        if start + u64::from(e.size) > self.size {
            return Err(IsoReadError::FindExtent {
                what: what.to_owned(),
                size: self.size,
            });
        }
        let mut buf = vec![0u8; e.size as usize];
        self.r
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.r.read_exact(&mut buf))
            .map_err(IsoReadError::ReadMedium)?;
        Ok(buf)
    }

    /// The entries of a directory, without `.` and `..`.
    pub fn list(&mut self, dir: &DirEntry) -> Result<Vec<DirEntry>, IsoReadError> {
        let data = self.read_extent(dir, &dir.name.clone())?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let len = usize::from(data[off]);
            if len == 0 {
                // Records never cross a sector boundary: the rest of this sector is padding.
                off = (off / BLOCK as usize + 1) * BLOCK as usize;
                continue;
            }
            let lba = dir.lba + (off / BLOCK as usize) as u32;
            let rec = data
                .get(off..off + len)
                .ok_or(IsoReadError::ParseDirectory { lba })?;
            let e = parse_record(rec, lba)?;
            if e.name != "." && e.name != ".." {
                out.push(e);
            }
            off += len;
        }
        Ok(out)
    }

    /// Finds an absolute path, ignoring case, `;1` versions and the trailing `.` of extensionless names.
    pub fn lookup(&mut self, path: &str) -> Result<DirEntry, IsoReadError> {
        let not_found = || IsoReadError::FindFile {
            path: path.to_owned(),
        };
        let mut cur = self.root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_dir {
                return Err(not_found());
            }
            let want = normalise(part);
            cur = self
                .list(&cur)?
                .into_iter()
                .find(|e| normalise(&e.name) == want)
                .ok_or_else(not_found)?;
        }
        Ok(cur)
    }

    /// Reads a whole file.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, IsoReadError> {
        let e = self.lookup(path)?;
        if e.is_dir {
            return Err(IsoReadError::FindFile {
                path: path.to_owned(),
            });
        }
        self.read_extent(&e, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn record(name: &[u8], lba: u32, size: u32, dir: bool, rr: Option<&str>) -> Vec<u8> {
        let mut r = vec![0u8; 33];
        r.extend_from_slice(name);
        if r.len() % 2 == 1 {
            r.push(0);
        }
        if let Some(n) = rr {
            r.extend_from_slice(b"NM");
            r.push(5 + n.len() as u8);
            r.extend_from_slice(&[1, 0]);
            r.extend_from_slice(n.as_bytes());
        }
        if r.len() % 2 == 1 {
            r.push(0);
        }
        r[0] = r.len() as u8;
        r[2..6].copy_from_slice(&lba.to_le_bytes());
        r[6..10].copy_from_slice(&lba.to_be_bytes());
        r[10..14].copy_from_slice(&size.to_le_bytes());
        r[14..18].copy_from_slice(&size.to_be_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r
    }

    /// root (lba 18) → INSTALL_AMD (lba 19, RR name install.amd) → VMLINUZ.;1 (lba 20), INITRD.GZ;1 (lba 21)
    fn mastered(truncate: bool) -> Vec<u8> {
        let mut img = vec![0u8; 22 * 2048];
        let pvd = 16 * 2048;
        img[pvd] = 1;
        img[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        let root = record(&[0], 18, 2048, true, None);
        img[pvd + 156..pvd + 156 + root.len()].copy_from_slice(&root);
        let mut d = Vec::new();
        d.extend(record(&[0], 18, 2048, true, None));
        d.extend(record(&[1], 18, 2048, true, None));
        d.extend(record(b"INSTALL_AMD", 19, 2048, true, Some("install.amd")));
        img[18 * 2048..18 * 2048 + d.len()].copy_from_slice(&d);
        let mut d = Vec::new();
        d.extend(record(&[0], 19, 2048, true, None));
        d.extend(record(&[1], 18, 2048, true, None));
        d.extend(record(b"VMLINUZ.;1", 20, 5, false, None));
        d.extend(record(b"INITRD.GZ;1", 21, 3, false, None));
        img[19 * 2048..19 * 2048 + d.len()].copy_from_slice(&d);
        img[20 * 2048..20 * 2048 + 5].copy_from_slice(b"KERNL");
        img[21 * 2048..21 * 2048 + 3].copy_from_slice(b"INI");
        if truncate {
            img.truncate(20 * 2048 + 2);
        }
        img
    }

    #[test]
    fn the_reader_follows_rock_ridge_names_and_version_suffixes() {
        let mut iso = IsoReader::open(Cursor::new(mastered(false))).unwrap();
        assert_eq!(iso.read_file("/install.amd/vmlinuz").unwrap(), b"KERNL");
        assert_eq!(iso.read_file("/INSTALL.AMD/INITRD.GZ").unwrap(), b"INI");
        assert!(matches!(
            iso.read_file("/casper/vmlinuz"),
            Err(IsoReadError::FindFile { .. })
        ));
        assert!(matches!(
            iso.read_file("/install.amd"),
            Err(IsoReadError::FindFile { .. })
        ));
        let e = find_file(&mut Cursor::new(mastered(false)), "install.amd/vmlinuz").unwrap();
        assert_eq!((e.lba, e.len), (20, 5));
    }

    #[test]
    fn the_reader_refuses_truncated_and_foreign_images() {
        let mut iso = IsoReader::open(Cursor::new(mastered(true))).unwrap();
        assert!(matches!(
            iso.read_file("/install.amd/initrd.gz"),
            Err(IsoReadError::FindExtent { .. })
        ));
        assert!(matches!(
            IsoReader::open(Cursor::new(vec![0u8; 40 * 2048])),
            Err(IsoReadError::FindVolumeDescriptor)
        ));
        assert!(matches!(
            IsoReader::open(Cursor::new(vec![0u8; 100])),
            Err(IsoReadError::FindVolumeDescriptor)
        ));
    }
}
