//! A read-only ISO 9660 directory reader: enough to find an installer's kernel and initrd in a
//! distribution ISO and read them out. Handles `;1` version suffixes, the trailing `.` of extensionless
//! names, case differences, and Rock Ridge `NM` names (so `install.amd` is found whether or not the
//! image was mastered with Rock Ridge). Generic over `Read + Seek`; never writes.

use std::io::{Read, Seek, SeekFrom};

const SECTOR: u64 = 2048;

/// Errors of the ISO reader.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("reading the ISO image")]
    Read(#[source] std::io::Error),
    #[error("not an ISO 9660 image (no primary volume descriptor at sector 16)")]
    NotIso,
    #[error("the ISO image is truncated: {what} lies beyond its end ({size} bytes)")]
    Truncated { what: String, size: u64 },
    #[error("{0} is not in the ISO image")]
    NotFound(String),
    #[error(
        "no known installer kernel in the ISO (looked for {0}); give --kernel PATH --initrd PATH"
    )]
    NoKnownKernel(String),
    #[error("a directory record in the ISO image is malformed")]
    BadRecord,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoEntry {
    pub name: String,
    pub lba: u32,
    pub size: u32,
    pub is_dir: bool,
}

/// An opened ISO image.
pub struct Iso<R> {
    r: R,
    size: u64,
    root: IsoEntry,
}

/// Known installer layouts: (kernel, initrd), first match wins.
pub const KNOWN_KERNELS: &[(&str, &str)] = &[
    ("/install.amd/vmlinuz", "/install.amd/initrd.gz"),
    ("/casper/vmlinuz", "/casper/initrd"),
    ("/casper/vmlinuz", "/casper/initrd.gz"),
    ("/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img"),
    ("/live/vmlinuz", "/live/initrd.img"),
];

fn normalise(name: &str) -> String {
    let base = name.split(';').next().unwrap_or(name);
    let base = base.strip_suffix('.').unwrap_or(base);
    base.to_ascii_lowercase()
}

fn parse_record(rec: &[u8]) -> Result<IsoEntry, IsoError> {
    if rec.len() < 34 {
        return Err(IsoError::BadRecord);
    }
    let lba = u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]]);
    let size = u32::from_le_bytes([rec[10], rec[11], rec[12], rec[13]]);
    let is_dir = rec[25] & 0x02 != 0;
    let name_len = rec[32] as usize;
    if 33 + name_len > rec.len() {
        return Err(IsoError::BadRecord);
    }
    let raw = &rec[33..33 + name_len];
    let mut name = match raw {
        [0] => ".".to_owned(),
        [1] => "..".to_owned(),
        _ => String::from_utf8_lossy(raw).into_owned(),
    };
    // Rock Ridge: System Use entries follow the name (padded to an even offset).
    let mut su = 33 + name_len;
    if su % 2 == 1 {
        su += 1;
    }
    let mut rr_name = String::new();
    while su + 4 <= rec.len() {
        let len = rec[su + 2] as usize;
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
    Ok(IsoEntry {
        name,
        lba,
        size,
        is_dir,
    })
}

impl<R: Read + Seek> Iso<R> {
    /// Reads the primary volume descriptor.
    pub fn open(mut r: R) -> Result<Self, IsoError> {
        let size = r.seek(SeekFrom::End(0)).map_err(IsoError::Read)?;
        if size < 17 * SECTOR {
            return Err(IsoError::NotIso);
        }
        let mut pvd = vec![0u8; SECTOR as usize];
        r.seek(SeekFrom::Start(16 * SECTOR))
            .map_err(IsoError::Read)?;
        r.read_exact(&mut pvd).map_err(IsoError::Read)?;
        if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
            return Err(IsoError::NotIso);
        }
        let root = parse_record(&pvd[156..156 + 34])?;
        Ok(Iso { r, size, root })
    }

    fn read_extent(&mut self, e: &IsoEntry, what: &str) -> Result<Vec<u8>, IsoError> {
        let start = u64::from(e.lba) * SECTOR;
        if start + u64::from(e.size) > self.size {
            return Err(IsoError::Truncated {
                what: what.to_owned(),
                size: self.size,
            });
        }
        let mut buf = vec![0u8; e.size as usize];
        self.r
            .seek(SeekFrom::Start(start))
            .map_err(IsoError::Read)?;
        self.r.read_exact(&mut buf).map_err(IsoError::Read)?;
        Ok(buf)
    }

    /// The entries of a directory (without `.` and `..`).
    pub fn list(&mut self, dir: &IsoEntry) -> Result<Vec<IsoEntry>, IsoError> {
        let data = self.read_extent(dir, &dir.name.clone())?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let len = data[off] as usize;
            if len == 0 {
                // Records never cross a sector boundary: skip to the next sector.
                off = (off / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if off + len > data.len() {
                return Err(IsoError::BadRecord);
            }
            let e = parse_record(&data[off..off + len])?;
            if e.name != "." && e.name != ".." {
                out.push(e);
            }
            off += len;
        }
        Ok(out)
    }

    /// Finds an absolute path, case-insensitively, ignoring `;1` versions.
    pub fn lookup(&mut self, path: &str) -> Result<IsoEntry, IsoError> {
        let mut cur = self.root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_dir {
                return Err(IsoError::NotFound(path.to_owned()));
            }
            let want = normalise(part);
            cur = self
                .list(&cur)?
                .into_iter()
                .find(|e| normalise(&e.name) == want)
                .ok_or_else(|| IsoError::NotFound(path.to_owned()))?;
        }
        Ok(cur)
    }

    /// Reads a whole file.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, IsoError> {
        let e = self.lookup(path)?;
        if e.is_dir {
            return Err(IsoError::NotFound(path.to_owned()));
        }
        self.read_extent(&e, path)
    }

    /// The first known (kernel, initrd) pair present in the image.
    pub fn find_installer(&mut self) -> Result<(&'static str, &'static str), IsoError> {
        for (k, i) in KNOWN_KERNELS {
            if self.lookup(k).is_ok() && self.lookup(i).is_ok() {
                return Ok((k, i));
            }
        }
        let tried: Vec<String> = KNOWN_KERNELS
            .iter()
            .map(|(k, i)| format!("{k} + {i}"))
            .collect();
        Err(IsoError::NoKnownKernel(tried.join(", ")))
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
    fn image(truncate: bool) -> Vec<u8> {
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
    fn finds_the_debian_installer_through_rock_ridge_and_version_suffixes() {
        let mut iso = Iso::open(Cursor::new(image(false))).unwrap();
        let (k, i) = iso.find_installer().unwrap();
        assert_eq!((k, i), ("/install.amd/vmlinuz", "/install.amd/initrd.gz"));
        assert_eq!(iso.read_file(k).unwrap(), b"KERNL");
        assert_eq!(iso.read_file("/INSTALL.AMD/INITRD.GZ").unwrap(), b"INI");
        assert!(matches!(
            iso.read_file("/casper/vmlinuz"),
            Err(IsoError::NotFound(_))
        ));
    }

    #[test]
    fn truncated_and_foreign_images_are_refused() {
        let mut iso = Iso::open(Cursor::new(image(true))).unwrap();
        assert!(matches!(
            iso.read_file("/install.amd/initrd.gz"),
            Err(IsoError::Truncated { .. })
        ));
        assert!(matches!(
            Iso::open(Cursor::new(vec![0u8; 40 * 2048])),
            Err(IsoError::NotIso)
        ));
        let mut no_kernel = image(false);
        // Rename the kernel so no known layout matches.
        let at = no_kernel.windows(7).position(|w| w == b"VMLINUZ").unwrap();
        no_kernel[at..at + 7].copy_from_slice(b"BZIMAGE");
        let mut iso = Iso::open(Cursor::new(no_kernel)).unwrap();
        assert!(matches!(
            iso.find_installer(),
            Err(IsoError::NoKnownKernel(_))
        ));
    }
}
