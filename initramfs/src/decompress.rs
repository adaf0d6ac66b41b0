//! Decompression of kernel modules and firmware by file name: `.xz` (lzma-rs) and `.zst` (ruzstd), both
//! pure Rust. Build-time only (feature `build`): the initramfs stores plain files so the rescue system
//! needs no decompressor and `finit_module` gets an ELF.

use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressing {name} as xz")]
    DecompressXz {
        name: String,
        #[source]
        source: lzma_rs::error::Error,
    },
    #[error("decompressing {name} as zstd")]
    DecompressZstd {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// `foo.ko.xz` / `foo.ko.zst` → (`foo.ko`, plain bytes). Any other name is returned unchanged with a copy
/// of `bytes`.
pub fn decompress_by_name(name: &str, bytes: &[u8]) -> Result<(String, Vec<u8>), DecompressError> {
    if let Some(plain) = name.strip_suffix(".xz") {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        lzma_rs::xz_decompress(&mut &bytes[..], &mut out).map_err(|source| {
            DecompressError::DecompressXz {
                name: name.to_owned(),
                source,
            }
        })?;
        return Ok((plain.to_owned(), out));
    }
    if let Some(plain) = name.strip_suffix(".zst") {
        let out = zstd_decompress(bytes).map_err(|source| DecompressError::DecompressZstd {
            name: name.to_owned(),
            source,
        })?;
        return Ok((plain.to_owned(), out));
    }
    Ok((name.to_owned(), bytes.to_vec()))
}

/// Decodes every frame (a `.zst` file may hold several, as `cat a.zst b.zst` makes).
fn zstd_decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut input = bytes;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    loop {
        let mut decoder =
            ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(std::io::Error::other)?;
        decoder.read_to_end(&mut out)?;
        if input.is_empty() {
            return Ok(out);
        }
        if !input.starts_with(&ZSTD_MAGIC) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "trailing bytes after the last zstd frame",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial: a fake module with repeated sections.
        let mut data = b"\x7fELF".to_vec();
        for i in 0..5000u32 {
            data.extend_from_slice(format!("alias=pci:v{i:08X}d*sv*sd*bc*sc*i*\0").as_bytes());
        }
        data
    }

    #[test]
    fn xz_round_trip() {
        let plain = sample();
        let mut compressed = Vec::new();
        // lzma-rs's encoder stores literals only, so the output is not smaller; the CLI test covers real xz.
        lzma_rs::xz_compress(&mut &plain[..], &mut compressed).unwrap();
        let (name, out) = decompress_by_name("kernel/drivers/ata/ahci.ko.xz", &compressed).unwrap();
        assert_eq!(name, "kernel/drivers/ata/ahci.ko");
        assert_eq!(out, plain);
    }

    #[test]
    fn zstd_round_trip() {
        let plain = sample();
        let compressed = ruzstd::encoding::compress_to_vec(
            &plain[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(compressed.len() < plain.len());
        let (name, out) = decompress_by_name("iwlwifi-cc-a0-77.ucode.zst", &compressed).unwrap();
        assert_eq!(name, "iwlwifi-cc-a0-77.ucode");
        assert_eq!(out, plain);
    }

    #[test]
    fn zstd_cli_output_with_checksum_and_two_frames() {
        // `printf 'hello kernel module\n' | zstd --check` followed by `printf 'second\n' | zstd`.
        const TWO_FRAMES: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x20, 0xd5, 0x00, 0x00, 0xa0, 0x68, 0x65, 0x6c, 0x6c,
            0x6f, 0x20, 0x6b, 0x65, 0x72, 0x6e, 0x65, 0x6c, 0x20, 0x6d, 0x6f, 0x64, 0x75, 0x6c,
            0x65, 0x0a, 0x01, 0x00, 0xe1, 0x4a, 0x11, 0x41, 0x97, 0xde, 0x6d, 0x28, 0xb5, 0x2f,
            0xfd, 0x04, 0x58, 0x39, 0x00, 0x00, 0x73, 0x65, 0x63, 0x6f, 0x6e, 0x64, 0x0a, 0x16,
            0x40, 0x4c, 0x55,
        ];
        let (_, out) = decompress_by_name("x.zst", TWO_FRAMES).unwrap();
        assert_eq!(out, b"hello hello hello kernel module\nsecond\n");
    }

    #[test]
    fn xz_cli_output() {
        // `printf 'hello hello hello kernel module\n' | xz --check=crc64`
        const XZ: &[u8] = &[
            0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04, 0xe6, 0xd6, 0xb4, 0x46, 0x02, 0x00,
            0x21, 0x01, 0x16, 0x00, 0x00, 0x00, 0x74, 0x2f, 0xe5, 0xa3, 0xe0, 0x00, 0x1f, 0x00,
            0x19, 0x5d, 0x00, 0x34, 0x19, 0x49, 0xee, 0x8d, 0xe9, 0x50, 0x95, 0xfb, 0x81, 0x85,
            0x0b, 0xb5, 0xc3, 0xa8, 0x01, 0xa6, 0x27, 0xb1, 0x6b, 0x89, 0xd6, 0x5a, 0x75, 0x00,
            0x00, 0x00, 0x00, 0x00, 0xdb, 0xb0, 0x59, 0x8b, 0xf8, 0xec, 0xe8, 0xa4, 0x00, 0x01,
            0x35, 0x20, 0x55, 0x57, 0xd9, 0xb9, 0x1f, 0xb6, 0xf3, 0x7d, 0x01, 0x00, 0x00, 0x00,
            0x00, 0x04, 0x59, 0x5a,
        ];
        let (name, out) = decompress_by_name("fw.bin.xz", XZ).unwrap();
        assert_eq!(name, "fw.bin");
        assert_eq!(out, b"hello hello hello kernel module\n");
        let mut corrupt = XZ.to_vec();
        corrupt[40] ^= 0xff;
        assert!(decompress_by_name("fw.bin.xz", &corrupt).is_err());
    }

    #[test]
    fn unknown_suffix_is_unchanged() {
        let (name, out) = decompress_by_name("kernel/fs/ext4/ext4.ko", b"\x7fELF...").unwrap();
        assert_eq!(name, "kernel/fs/ext4/ext4.ko");
        assert_eq!(out, b"\x7fELF...");
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(matches!(
            decompress_by_name("a.ko.xz", b"garbage"),
            Err(DecompressError::DecompressXz { .. })
        ));
        assert!(matches!(
            decompress_by_name("a.ko.zst", b"garbage"),
            Err(DecompressError::DecompressZstd { .. })
        ));
        let compressed = ruzstd::encoding::compress_to_vec(
            &sample()[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let truncated = &compressed[..compressed.len() / 2];
        assert!(decompress_by_name("a.ko.zst", truncated).is_err());
        let mut with_junk = compressed.clone();
        with_junk.extend_from_slice(b"junk");
        assert!(decompress_by_name("a.ko.zst", &with_junk).is_err());
    }
}
