//! Property tests of the parsers that read bytes a damaged medium or a hostile file controls (issue 19):
//! the ISO 9660 reader ([`crate::iso::IsoReader`], [`crate::iso::volume_info`], [`crate::iso::find_file`])
//! and the PE reader ([`crate::pe`], also through [`crate::uki::build`], which parses the stub and the
//! kernel). Arbitrary and mutated-valid inputs must give a value or an error, never a panic.
//!
//! Each property runs proptest's default 256 cases, so `cargo test` stays fast; `PROPTEST_CASES=N`
//! runs more. Inputs that once made a parser panic are kept at the end as named regression tests.

use crate::iso::{IsoFile, IsoImage, IsoOptions, IsoReader};
use crate::pe;
use crate::pe::tests::tiny_pe;
use proptest::prelude::*;
use std::io::Cursor;

fn config() -> ProptestConfig {
    // Crashing inputs are kept as named tests below, not in files proptest would write into src/.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Overwrites bytes at `start + at % span` and optionally cuts the result short.
fn mutate(mut bytes: Vec<u8>, start: usize, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let span = bytes.len().saturating_sub(start);
    if span > 0 {
        for &(at, b) in edits {
            bytes[start + at % span] = b;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

/// Reads everything the reader can reach: the volume descriptor, every directory (at most 64, so a
/// directory that lists itself cannot keep the walk going) and every file.
fn read_all_of_iso(bytes: &[u8]) {
    let _ = crate::iso::volume_info(&mut Cursor::new(bytes));
    let _ = crate::iso::find_file(&mut Cursor::new(bytes), "A/B.TXT");
    let Ok(mut iso) = IsoReader::open(Cursor::new(bytes)) else {
        return;
    };
    let Ok(root) = iso.lookup("/") else {
        return;
    };
    let mut queue = vec![(String::new(), root)];
    let mut visited = 0;
    while let Some((path, dir)) = queue.pop() {
        visited += 1;
        if visited > 64 {
            break;
        }
        let Ok(entries) = iso.list(&dir) else {
            continue;
        };
        for e in entries {
            let child = format!("{path}/{}", e.name);
            if e.is_dir {
                queue.push((child, e));
            } else {
                let _ = iso.read_file(&child);
            }
        }
    }
}

/// A small image from our writer: sectors 16 up to the first file hold everything the reader parses.
fn small_iso() -> (Vec<u8>, usize) {
    let files = vec![
        IsoFile {
            path: "A/B.TXT".into(),
            data: b"bee".to_vec(),
        },
        IsoFile {
            path: "A/C/D.BIN".into(),
            data: vec![0xd; 3000],
        },
        IsoFile {
            path: "README".into(),
            data: b"top".to_vec(),
        },
    ];
    let iso = IsoImage::new(
        IsoOptions {
            volume_id: "FUZZ".into(),
            epoch: 0,
            bios_boot: None,
            efi_boot: None,
        },
        files,
    )
    .unwrap();
    let first_file = iso.layout("A/B.TXT").unwrap().lba as usize * 2048;
    (iso.to_vec().unwrap(), first_file)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn iso_reader_survives_arbitrary_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        // Put the bytes where a volume descriptor is looked for, with and without its magic.
        let mut image = vec![0u8; 16 * 2048];
        if bytes.len() > 6 && bytes[0] % 2 == 0 {
            bytes[..6].copy_from_slice(b"\x01CD001");
        }
        image.extend_from_slice(&bytes);
        read_all_of_iso(&image);
        read_all_of_iso(&bytes);
    }

    #[test]
    fn iso_reader_survives_mutated_images(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24),
        cut in proptest::option::weighted(0.2, any::<usize>()),
    ) {
        let (image, first_file) = small_iso();
        let meta = first_file - 16 * 2048;
        let edits: Vec<(usize, u8)> = edits.into_iter().map(|(at, b)| (at % meta, b)).collect();
        read_all_of_iso(&mutate(image, 16 * 2048, &edits, cut));
    }

    #[test]
    fn iso_reader_survives_arbitrary_directory_records(records in proptest::collection::vec(any::<u8>(), 2048)) {
        // Keep the volume descriptor intact and let the root directory's extent be anything.
        let (mut image, _) = small_iso();
        let root_lba = u32::from_le_bytes(image[16 * 2048 + 158..16 * 2048 + 162].try_into().unwrap());
        let at = root_lba as usize * 2048;
        image[at..at + 2048].copy_from_slice(&records);
        read_all_of_iso(&image);
    }

    #[test]
    fn pe_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), checksum_at in any::<usize>()) {
        let mut with_magic = bytes.clone();
        if with_magic.len() >= 64 {
            with_magic[..2].copy_from_slice(b"MZ");
            with_magic[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
            if with_magic.len() >= 0x44 {
                with_magic[0x40..0x44].copy_from_slice(b"PE\0\0");
            }
        }
        for pe in [&bytes, &with_magic] {
            if let Ok(sections) = pe::sections(pe) {
                for s in sections {
                    let _ = s.data(pe);
                }
            }
            let _ = pe::size_of_image(pe);
            let _ = pe::checksum(pe, checksum_at);
        }
    }

    #[test]
    fn pe_reader_and_uki_builder_survive_mutated_images(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in proptest::option::weighted(0.2, any::<usize>()),
        mutate_kernel in any::<bool>(),
    ) {
        // The headers and section table live in the first 0x400 bytes.
        let edits: Vec<(usize, u8)> = edits.into_iter().map(|(at, b)| (at % 0x400, b)).collect();
        let stub = tiny_pe(0x400, 0x2000);
        let kernel = tiny_pe(0x400, 0x9000);
        let (stub, kernel) = if mutate_kernel {
            (stub, mutate(kernel, 0, &edits, cut))
        } else {
            (mutate(stub, 0, &edits, cut), kernel)
        };
        for pe in [&stub, &kernel] {
            if let Ok(sections) = pe::sections(pe) {
                for s in sections {
                    let _ = s.data(pe);
                }
            }
            let _ = pe::size_of_image(pe);
        }
        let _ = crate::uki::build(&crate::uki::UkiInputs {
            stub: &stub,
            linux: &kernel,
            initrd: b"initrd",
            cmdline: "console=ttyS0",
            osrel: "ID=rescue\n",
            uname: "6.1.0-fuzz",
        });
    }
}
