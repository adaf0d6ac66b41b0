//! Installer layouts inside distribution ISOs: which kernel and initrd to take (Debian `/install.amd/`,
//! Ubuntu `/casper/`, Rocky/Alma `/images/pxeboot/`, live images). Reading the ISO is
//! [`images::iso::IsoReader`]'s job (Rock Ridge names, `;1` versions, truncated images refused).

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
}
