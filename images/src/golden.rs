//! Golden hashes of every medium this crate writes, from fixed inputs: an ISO (El Torito BIOS + UEFI,
//! boot info table, hybrid MBR), a FAT32 ESP, a GPT disk with a BIOS boot partition and a UKI.
//!
//! The hashes were computed with the code as it was before the ISO writer was split into modules and
//! its calendar moved to `chrono`: a refactoring that changes one byte of a medium fails here.

use crate::EspFile;
use crate::biosboot::tests::{fake_boot_img, fake_core_img};
use crate::fat::tests::{OPTS, noise};
use crate::iso::{BiosBoot, IsoFile, IsoImage, IsoOptions, MbrPartition};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn esp_files() -> Vec<EspFile> {
    vec![
        EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            data: noise(200_001, 7),
        },
        EspFile {
            path: "EFI/BOOT/GRUB.CFG".into(),
            data: b"set timeout=5\n".to_vec(),
        },
        EspFile {
            path: "RESCUE/VMLINUZ".into(),
            data: noise(90_000, 8),
        },
    ]
}

/// The hybrid ISO the builder makes (`xtask` `build_iso`), from fixed inputs and the given epoch.
fn hybrid_iso(epoch: u32) -> Vec<u8> {
    let esp = crate::fat::build_fat32(&esp_files(), 36 * 1024 * 1024, &OPTS).unwrap();
    let mut eltorito = vec![0u8; 4096];
    eltorito[0] = 0xeb;
    eltorito[3000] = 0x42;
    let mut files = vec![
        IsoFile {
            path: "BOOT/GRUB/ELTORITO.IMG".into(),
            data: eltorito,
        },
        IsoFile {
            path: "BOOT/GRUB/CORE.IMG".into(),
            data: fake_core_img(60),
        },
        IsoFile {
            path: "BOOT/GRUB/GRUB.CFG".into(),
            data: b"menuentry rescue {}\n".to_vec(),
        },
        IsoFile {
            path: "EFI/ESP.IMG".into(),
            data: esp,
        },
        IsoFile {
            path: "RESCUE/VMLINUZ".into(),
            data: noise(123_457, 9),
        },
        IsoFile {
            path: "RESCUE/INITRD.IMG".into(),
            data: noise(77_777, 10),
        },
        IsoFile {
            path: "RESCUE_ID".into(),
            data: Vec::new(),
        },
        IsoFile {
            path: "A/B/C/D/E/F/G/DEEP.TXT".into(),
            data: b"deep".to_vec(),
        },
    ];
    // Enough names to spread one directory over several sectors.
    files.extend((0..90).map(|i| IsoFile {
        path: format!("MANY/FILE_{i:03}.BIN"),
        data: noise(i * 37, i as u32),
    }));
    let mut iso = IsoImage::new(
        IsoOptions {
            volume_id: "RESCUE_GOLDEN".into(),
            epoch,
            bios_boot: Some(BiosBoot {
                path: "BOOT/GRUB/ELTORITO.IMG".into(),
                load_sectors: 4,
                boot_info_table: true,
            }),
            efi_boot: Some("EFI/ESP.IMG".into()),
        },
        files,
    )
    .unwrap();
    let core = iso.layout("BOOT/GRUB/CORE.IMG").unwrap();
    let esp = iso.layout("EFI/ESP.IMG").unwrap();
    crate::biosboot::place_core(iso.file_mut("BOOT/GRUB/CORE.IMG").unwrap(), core.lba512())
        .unwrap();
    let code = crate::biosboot::mbr_code(&fake_boot_img(), core.lba512()).unwrap();
    let size = iso.size();
    iso.set_mbr(
        &code,
        0x1234_abcd,
        &[
            MbrPartition {
                bootable: true,
                kind: 0,
                first_lba: 0,
                sectors: (size / 512) as u32,
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
    iso.to_vec().unwrap()
}

#[test]
fn iso_bytes_are_what_they_were() {
    let golden = [
        (
            0,
            "f57e6b63dd39752992fd64290cc8eb27ceca34421cf630de0204b1d46b84ac24",
        ),
        (
            951_782_400,
            "98df1ca40c6e714de2eca466e0afa588afd7b7d86c334abf3c563f5059fa3254",
        ),
        (
            1_700_000_000,
            "f9e0bbe21b1bb0466d7174d107d211dd85cebc8cf30c3b28280cf93f078157a1",
        ),
        (
            u32::MAX,
            "11769279f877ad86f3e5c8d939015a39ab9e6980d02a5e4f0cb5f5713f494d34",
        ),
    ];
    for (epoch, hash) in golden {
        assert_eq!(sha256(&hybrid_iso(epoch)), hash, "epoch {epoch}");
    }
    let plain = IsoImage::new(
        IsoOptions {
            volume_id: "PLAIN".into(),
            epoch: 86_399,
            bios_boot: None,
            efi_boot: None,
        },
        vec![IsoFile {
            path: "README.TXT".into(),
            data: b"no boot entries\n".to_vec(),
        }],
    )
    .unwrap()
    .to_vec()
    .unwrap();
    assert_eq!(
        sha256(&plain),
        "49cfb79083dd33b73ba0848a36902b8d737344f207929be5b17ee8c2ce98fbf0"
    );
}

#[test]
fn esp_disk_and_uki_bytes_are_what_they_were() {
    let esp = crate::fat::build_fat32(&esp_files(), 36 * 1024 * 1024, &OPTS).unwrap();
    assert_eq!(
        sha256(&esp),
        "062e35035b2a67eb09133979f5c93c35b73e3ea6c9552e8a0df5e00c568d5b54"
    );

    let mut disk = std::io::Cursor::new(Vec::new());
    crate::disk::write_disk(
        &mut disk,
        &esp_files(),
        &crate::disk::DiskOptions {
            disk_guid: *b"golden-disk-guid",
            esp_guid: *b"golden-esp--guid",
            bios_guid: *b"golden-biosboot!",
            esp_size: None,
            fat: OPTS,
        },
        Some(crate::disk::BiosBoot {
            boot_img: &fake_boot_img(),
            core_img: &fake_core_img(60),
        }),
    )
    .unwrap();
    assert_eq!(
        sha256(disk.get_ref()),
        "271b4a83af8acee34617b56dd0a278411697932c018662dd2e5118f53fad647b"
    );

    let stub = crate::pe::tests::tiny_pe(0x400, 0x2000);
    let kernel = crate::pe::tests::tiny_pe(0x400, 0x9000);
    let uki = crate::uki::build(&crate::uki::UkiInputs {
        stub: &stub,
        linux: &kernel,
        initrd: &noise(5000, 11),
        cmdline: "console=ttyS0",
        osrel: "ID=rescue\n",
        uname: "6.1.0-golden",
    })
    .unwrap();
    assert_eq!(
        sha256(&uki),
        "b0cd789c1a89a64c5f2b55f5c4c589e245e46b0b31c12eb4a51924165a4aaf20"
    );
}
