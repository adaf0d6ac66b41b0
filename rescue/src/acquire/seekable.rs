//! The zstd seekable format (zstd `contrib/seekable_format`): the image is a run of independent zstd
//! frames followed by a skippable frame holding the seek table, so a reader can find and decompress any
//! frame without decompressing what comes before. Any zstd decoder still reads the file as one stream.
//!
//! Layout of the seek table frame (little-endian):
//! `0x184D2A5E` skippable magic, u32 frame size, then per frame u32 compressed size, u32 decompressed
//! size (and u32 checksum when the descriptor's bit 7 is set), then the footer: u32 number of frames,
//! u8 descriptor, u32 `0x8F92EAB1` seekable magic.

use serde::{Deserialize, Serialize};

/// Magic of the skippable frame that holds the seek table.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic at the very end of a seekable zstd file.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Size of the footer at the end of the seek table.
pub const FOOTER_LEN: usize = 9;

/// Errors while decoding a seek table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeekTableError {
    #[error("the file is too short to end with a seek table")]
    TruncatedTable,
    #[error("the file does not end with the seekable magic number (found {found:#010x})")]
    MissingSeekableMagic { found: u32 },
    #[error("the seek table descriptor sets reserved bits ({descriptor:#04x})")]
    ReservedDescriptorBits { descriptor: u8 },
    #[error("the seek table is not inside a skippable frame")]
    MissingSkippableFrame,
    #[error("the seek table frame size {found} does not match its {frames} entries")]
    MismatchedTableSize { found: u32, frames: u32 },
}

/// Sizes of one zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameEntry {
    pub compressed: u32,
    pub decompressed: u32,
}

/// Encodes a seek table (without checksums) as a complete skippable frame.
pub fn encode_seek_table(frames: &[FrameEntry]) -> Vec<u8> {
    let entries = frames.len() * 8;
    let mut out = Vec::with_capacity(8 + entries + FOOTER_LEN);
    out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&((entries + FOOTER_LEN) as u32).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&f.compressed.to_le_bytes());
        out.extend_from_slice(&f.decompressed.to_le_bytes());
    }
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    out
}

/// Total length of the seek table frame, read from the file's last [`FOOTER_LEN`] bytes.
pub fn table_len_from_footer(footer: &[u8]) -> Result<u64, SeekTableError> {
    let (count, entry) = parse_footer(footer)?;
    Ok(8 + u64::from(count) * entry as u64 + FOOTER_LEN as u64)
}

/// The number of frames and the size of each seek table entry (8, or 12 with checksums), read from the
/// file's last [`FOOTER_LEN`] bytes.
pub fn parse_footer(footer: &[u8]) -> Result<(u32, usize), SeekTableError> {
    let f: &[u8; FOOTER_LEN] = footer
        .get(footer.len().saturating_sub(FOOTER_LEN)..)
        .and_then(|s| s.try_into().ok())
        .ok_or(SeekTableError::TruncatedTable)?;
    let magic = u32::from_le_bytes([f[5], f[6], f[7], f[8]]);
    if magic != SEEKABLE_MAGIC {
        return Err(SeekTableError::MissingSeekableMagic { found: magic });
    }
    let descriptor = f[4];
    if descriptor & 0x7c != 0 {
        return Err(SeekTableError::ReservedDescriptorBits { descriptor });
    }
    let count = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
    let entry = if descriptor & 0x80 != 0 { 12 } else { 8 };
    Ok((count, entry))
}

/// Decodes a complete seek table frame (as located with [`table_len_from_footer`]).
pub fn parse_seek_table(table: &[u8]) -> Result<Vec<FrameEntry>, SeekTableError> {
    let (count, entry) = parse_footer(table)?;
    let body = count as usize * entry;
    if table.len() != 8 + body + FOOTER_LEN {
        return Err(SeekTableError::TruncatedTable);
    }
    check_table_header(&table[..8], count, entry)?;
    Ok(table[8..8 + body]
        .chunks_exact(entry)
        .map(entry_at)
        .collect())
}

/// Checks the skippable frame header (the table's first 8 bytes) against the footer's `count` entries
/// of `entry` bytes.
pub fn check_table_header(header: &[u8], count: u32, entry: usize) -> Result<(), SeekTableError> {
    let h: &[u8; 8] = header
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(SeekTableError::TruncatedTable)?;
    if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) != SKIPPABLE_MAGIC {
        return Err(SeekTableError::MissingSkippableFrame);
    }
    let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if u64::from(size) != count as u64 * entry as u64 + FOOTER_LEN as u64 {
        return Err(SeekTableError::MismatchedTableSize {
            found: size,
            frames: count,
        });
    }
    Ok(())
}

/// One seek table entry (at least 8 bytes: compressed, then decompressed size; a checksum after them
/// is ignored).
pub fn entry_at(e: &[u8]) -> FrameEntry {
    FrameEntry {
        compressed: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
        decompressed: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_table_round_trips_and_zstd_reads_the_whole_file() {
        let a = vec![7u8; 100_000];
        let b: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut file = Vec::new();
        let mut frames = Vec::new();
        for part in [&a, &b] {
            let c = zstd::bulk::compress(part, 1).unwrap();
            frames.push(FrameEntry {
                compressed: c.len() as u32,
                decompressed: part.len() as u32,
            });
            file.extend_from_slice(&c);
        }
        let table = encode_seek_table(&frames);
        file.extend_from_slice(&table);

        let len = table_len_from_footer(&file[file.len() - FOOTER_LEN..]).unwrap() as usize;
        assert_eq!(len, table.len());
        assert_eq!(parse_seek_table(&file[file.len() - len..]).unwrap(), frames);

        // A plain zstd decoder skips the skippable frame and yields the concatenation.
        let all = zstd::stream::decode_all(&file[..]).unwrap();
        assert_eq!(all.len(), a.len() + b.len());
        assert_eq!(&all[a.len()..], &b[..]);

        // Seeking: the second frame decompresses on its own.
        let start = frames[0].compressed as usize;
        let second =
            zstd::bulk::decompress(&file[start..start + frames[1].compressed as usize], b.len())
                .unwrap();
        assert_eq!(second, b);
    }

    #[test]
    fn damaged_tables_are_rejected() {
        let mut table = encode_seek_table(&[FrameEntry {
            compressed: 10,
            decompressed: 20,
        }]);
        let n = table.len();
        table[n - 1] ^= 1;
        assert!(matches!(
            parse_seek_table(&table),
            Err(SeekTableError::MissingSeekableMagic { .. })
        ));
        let mut table = encode_seek_table(&[]);
        table[0] = 0;
        assert_eq!(
            parse_seek_table(&table),
            Err(SeekTableError::MissingSkippableFrame)
        );
        assert_eq!(
            table_len_from_footer(&[1, 2]),
            Err(SeekTableError::TruncatedTable)
        );
    }
}
