//! Installer layouts inside distribution ISOs: which kernel and initrd to take (Debian `/install.amd/`,
//! Ubuntu `/casper/`, Rocky/Alma `/images/pxeboot/`, live images). Reading the ISO is
//! [`images::iso::IsoReader`]'s job (Rock Ridge names, `;1` versions, truncated images refused).
//! [`read_installer`] reads both files from the descriptor the ISO was verified through
//! ([`super::deploy::Image`]) and refuses when the file changed since it was opened.

use std::io::{Read, Seek};

pub use images::iso::IsoReader;

/// Errors of finding an installer in an ISO.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("reading the installer ISO")]
    Read(#[from] images::iso::IsoReadError),
    #[error(
        "no known installer kernel in the ISO (looked for {0}); give --kernel PATH --initrd PATH"
    )]
    NoKnownKernel(String),
    #[error(transparent)]
    Image(#[from] super::deploy::DeployError),
}

/// The installer's kernel and initrd as read out of the verified ISO.
#[derive(Debug, Clone)]
pub struct Installer {
    pub kernel_path: String,
    pub initrd_path: String,
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
}

/// Reads the kernel and initrd (`paths`, else the first [`KNOWN_KERNELS`] layout present) from `image`,
/// the descriptor the ISO was verified through, then refuses if the file changed since it was opened
/// (another file renamed over its path, size or modification time changed): the bytes booted are the
/// bytes verified.
pub fn read_installer(
    image: &super::deploy::Image,
    paths: Option<(&str, &str)>,
) -> Result<Installer, IsoError> {
    let mut iso = IsoReader::open(std::io::BufReader::new(image.reader()))?;
    let (kernel_path, initrd_path) = match paths {
        Some((k, i)) => (k.to_owned(), i.to_owned()),
        None => {
            let (k, i) = find_installer(&mut iso)?;
            (k.to_owned(), i.to_owned())
        }
    };
    let kernel = iso.read_file(&kernel_path)?;
    let initrd = iso.read_file(&initrd_path)?;
    image.check_unchanged()?;
    Ok(Installer {
        kernel_path,
        initrd_path,
        kernel,
        initrd,
    })
}

/// Known installer layouts: (kernel, initrd), first match wins.
pub const KNOWN_KERNELS: &[(&str, &str)] = &[
    ("/install.amd/vmlinuz", "/install.amd/initrd.gz"),
    ("/casper/vmlinuz", "/casper/initrd"),
    ("/casper/vmlinuz", "/casper/initrd.gz"),
    ("/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img"),
    ("/live/vmlinuz", "/live/initrd.img"),
];

/// The first known (kernel, initrd) pair present in the image.
pub fn find_installer<R: Read + Seek>(
    iso: &mut IsoReader<R>,
) -> Result<(&'static str, &'static str), IsoError> {
    for (k, i) in KNOWN_KERNELS {
        if iso.lookup(k).is_ok_and(|e| !e.is_dir) && iso.lookup(i).is_ok_and(|e| !e.is_dir) {
            return Ok((k, i));
        }
    }
    let tried: Vec<String> = KNOWN_KERNELS
        .iter()
        .map(|(k, i)| format!("{k} + {i}"))
        .collect();
    Err(IsoError::NoKnownKernel(tried.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::iso::{IsoFile, IsoImage, IsoOptions};
    use std::io::Cursor;

    fn iso(files: &[(&str, &[u8])]) -> IsoReader<Cursor<Vec<u8>>> {
        let files = files
            .iter()
            .map(|(p, d)| IsoFile {
                path: (*p).into(),
                data: d.to_vec(),
            })
            .collect();
        let opts = IsoOptions {
            volume_id: "INSTALLER".into(),
            epoch: 0,
            bios_boot: None,
            efi_boot: None,
        };
        let bytes = IsoImage::new(opts, files).unwrap().to_vec().unwrap();
        IsoReader::open(Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn finds_each_distribution_layout_and_names_what_it_looked_for() {
        // (Debian's `install.amd` needs Rock Ridge or a dotted directory name, which our writer does not
        // make; `images::iso`'s reader tests cover it.)
        let mut ubuntu = iso(&[("CASPER/VMLINUZ", b"KERNL"), ("CASPER/INITRD", b"INI")]);
        let (k, i) = find_installer(&mut ubuntu).unwrap();
        assert_eq!((k, i), ("/casper/vmlinuz", "/casper/initrd"));
        assert_eq!(ubuntu.read_file(k).unwrap(), b"KERNL");
        let mut rocky = iso(&[
            ("IMAGES/PXEBOOT/VMLINUZ", b"K"),
            ("IMAGES/PXEBOOT/INITRD.IMG", b"I"),
        ]);
        assert_eq!(
            find_installer(&mut rocky).unwrap(),
            ("/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img")
        );
        // A kernel without its initrd is no installer.
        let mut half = iso(&[("LIVE/VMLINUZ", b"K"), ("LIVE/README", b"x")]);
        match find_installer(&mut half) {
            Err(IsoError::NoKnownKernel(tried)) => {
                assert!(
                    tried.contains("/casper/vmlinuz + /casper/initrd"),
                    "{tried}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    fn ubuntu_iso(dir: &std::path::Path, name: &str, kernel: &[u8]) -> std::path::PathBuf {
        let files = [
            ("CASPER/VMLINUZ", kernel),
            ("CASPER/INITRD", &b"INITRD"[..]),
        ]
        .iter()
        .map(|(p, d)| IsoFile {
            path: (*p).into(),
            data: d.to_vec(),
        })
        .collect();
        let opts = IsoOptions {
            volume_id: "INSTALLER".into(),
            epoch: 0,
            bios_boot: None,
            efi_boot: None,
        };
        let path = dir.join(name);
        std::fs::write(&path, IsoImage::new(opts, files).unwrap().to_vec().unwrap()).unwrap();
        path
    }

    #[test]
    fn the_installer_is_read_from_the_verified_descriptor_and_a_changed_iso_is_refused() {
        use crate::reinstall::deploy::{DeployError, Image};
        let dir = tempfile::tempdir().unwrap();
        let path = ubuntu_iso(dir.path(), "installer.iso", b"VERIFIED-KERNEL");
        let image = Image::open(&path).unwrap();
        let got = read_installer(&image, None).unwrap();
        assert_eq!(got.kernel_path, "/casper/vmlinuz");
        assert_eq!(got.kernel, b"VERIFIED-KERNEL");
        assert_eq!(got.initrd, b"INITRD");

        // Another ISO renamed over the verified one after it was opened (and verified).
        let swapped = ubuntu_iso(dir.path(), "swapped.iso", b"UNVERIFIED-KERN");
        std::fs::rename(&swapped, &path).unwrap();
        match read_installer(&image, None) {
            Err(IsoError::Image(DeployError::ImageChanged { what, .. })) => {
                assert!(what.contains("another file"), "{what}")
            }
            other => panic!("a swapped ISO must be refused: {other:?}"),
        }

        // The same file edited in place (same size, new bytes): refused by its modification time.
        let path = ubuntu_iso(dir.path(), "edited.iso", b"VERIFIED-KERNEL");
        let image = Image::open(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(15)
            .position(|w| w == b"VERIFIED-KERNEL")
            .unwrap();
        bytes[at..at + 15].copy_from_slice(b"UNVERIFIED-KRNL");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0).unwrap();
        f.set_modified(mtime + std::time::Duration::from_secs(1))
            .unwrap();
        drop(f);
        match read_installer(&image, Some(("/casper/vmlinuz", "/casper/initrd"))) {
            Err(IsoError::Image(DeployError::ImageChanged { what, .. })) => {
                assert!(what.contains("modification time"), "{what}")
            }
            other => panic!("an edited ISO must be refused: {other:?}"),
        }
    }
}
