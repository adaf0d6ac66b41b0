//! Minimal PE32+ reader: the DOS stub's pointer to the PE header, the COFF file header, the
//! optional header fields a UKI builder needs, and the section table.
//!
//! It only reads; it never trusts an offset from the file without a bounds check, so any byte
//! slice gives either a value or a [`PeParseError`], never a panic. Writing lives in [`crate::uki`].

use thiserror::Error;

/// `IMAGE_NT_OPTIONAL_HDR64_MAGIC`.
pub const PE32_PLUS_MAGIC: u16 = 0x20b;

/// Size of one section header in the section table.
pub(crate) const SECTION_HEADER_SIZE: usize = 40;

/// Offsets inside the optional header of a PE32+ image (Microsoft PE format, "Optional Header").
pub(crate) mod opt {
    pub const SIZE_OF_INITIALIZED_DATA: usize = 8;
    pub const SECTION_ALIGNMENT: usize = 32;
    pub const FILE_ALIGNMENT: usize = 36;
    pub const SIZE_OF_IMAGE: usize = 56;
    pub const SIZE_OF_HEADERS: usize = 60;
    pub const CHECKSUM: usize = 64;
    pub const NUMBER_OF_RVA_AND_SIZES: usize = 108;
    pub const DATA_DIRECTORIES: usize = 112;
    /// Index of the certificate table ("security directory") among the data directories.
    pub const CERTIFICATE_TABLE: usize = 4;
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name with trailing NULs removed (names longer than 8 bytes via the string table are not resolved).
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    /// `PointerToRawData`.
    pub raw_offset: u32,
    /// `SizeOfRawData` (padded to `FileAlignment`).
    pub raw_size: u32,
}

impl Section {
    /// The section's initialised bytes in `pe`: `min(raw_size, virtual_size)` bytes from
    /// `raw_offset`, so file-alignment padding is not included. `None` if out of bounds.
    pub fn data<'a>(&self, pe: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.raw_offset).ok()?;
        let len = usize::try_from(self.raw_size.min(self.virtual_size)).ok()?;
        pe.get(start..start.checked_add(len)?)
    }
}

#[derive(Debug, Error)]
pub enum PeParseError {
    #[error("file is {len} bytes, too short for a DOS header")]
    ReadDosHeader { len: usize },
    #[error("no MZ signature at offset 0")]
    FindMzSignature,
    #[error("no PE signature at offset {offset:#x} (from e_lfanew)")]
    FindPeSignature { offset: u32 },
    #[error("optional header at {offset:#x} is cut off by the end of the file")]
    ReadOptionalHeader { offset: usize },
    #[error("optional header magic is {magic:#x}, expected {PE32_PLUS_MAGIC:#x} (PE32+)")]
    CheckOptionalHeaderMagic { magic: u16 },
    #[error("section table of {count} entries at {offset:#x} is cut off by the end of the file")]
    ReadSectionTable { count: u16, offset: usize },
}

/// Where the parts of a PE32+ header are, as file offsets; what the UKI builder edits.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// Offset of the COFF file header (just after `PE\0\0`).
    pub coff: usize,
    /// Offset of the optional header.
    pub optional: usize,
    pub optional_size: usize,
    /// Offset of the section table.
    pub section_table: usize,
    pub sections: Vec<Section>,
}

impl Headers {
    pub fn number_of_sections_offset(&self) -> usize {
        self.coff + 2
    }

    /// Offset of an optional-header field.
    pub fn field(&self, offset_in_optional: usize) -> usize {
        self.optional + offset_in_optional
    }

    /// File offset of the data directory entry `index`, if the optional header has it.
    pub fn data_directory(&self, pe: &[u8], index: usize) -> Option<usize> {
        let count = read_u32(pe, self.field(opt::NUMBER_OF_RVA_AND_SIZES))?;
        let in_optional = opt::DATA_DIRECTORIES + index * 8;
        (u32::try_from(index).ok()? < count && in_optional + 8 <= self.optional_size)
            .then(|| self.field(in_optional))
    }
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn parse_headers(pe: &[u8]) -> Result<Headers, PeParseError> {
    const DOS_HEADER_LEN: usize = 64;
    const E_LFANEW: usize = 0x3c;
    const COFF_LEN: usize = 20;

    if pe.len() < DOS_HEADER_LEN {
        return Err(PeParseError::ReadDosHeader { len: pe.len() });
    }
    if &pe[..2] != b"MZ" {
        return Err(PeParseError::FindMzSignature);
    }
    let lfanew = read_u32(pe, E_LFANEW).ok_or(PeParseError::ReadDosHeader { len: pe.len() })?;
    let pe_sig =
        usize::try_from(lfanew).map_err(|_| PeParseError::FindPeSignature { offset: lfanew })?;
    if pe.get(pe_sig..pe_sig.saturating_add(4)) != Some(b"PE\0\0".as_slice()) {
        return Err(PeParseError::FindPeSignature { offset: lfanew });
    }
    let coff = pe_sig + 4;
    let optional = coff + COFF_LEN;
    let (Some(count), Some(optional_size)) = (read_u16(pe, coff + 2), read_u16(pe, coff + 16))
    else {
        return Err(PeParseError::ReadOptionalHeader { offset: optional });
    };
    let optional_size = usize::from(optional_size);
    let magic =
        read_u16(pe, optional).ok_or(PeParseError::ReadOptionalHeader { offset: optional })?;
    if magic != PE32_PLUS_MAGIC {
        return Err(PeParseError::CheckOptionalHeaderMagic { magic });
    }
    // Everything up to and including the first data directory must be present for the fields we use.
    if optional_size < opt::DATA_DIRECTORIES || pe.len() < optional + optional_size {
        return Err(PeParseError::ReadOptionalHeader { offset: optional });
    }
    let section_table = optional + optional_size;
    let table_end = section_table + usize::from(count) * SECTION_HEADER_SIZE;
    let table = pe
        .get(section_table..table_end)
        .ok_or(PeParseError::ReadSectionTable {
            count,
            offset: section_table,
        })?;
    let sections = table
        .chunks_exact(SECTION_HEADER_SIZE)
        .map(|h| {
            let field = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            let name_len = h[..8].iter().position(|&c| c == 0).unwrap_or(8);
            Section {
                name: String::from_utf8_lossy(&h[..name_len]).into_owned(),
                virtual_size: field(8),
                virtual_address: field(12),
                raw_size: field(16),
                raw_offset: field(20),
            }
        })
        .collect();
    Ok(Headers {
        coff,
        optional,
        optional_size,
        section_table,
        sections,
    })
}

/// The section table of a PE32+ image, in file order.
pub fn sections(pe: &[u8]) -> Result<Vec<Section>, PeParseError> {
    parse_headers(pe).map(|h| h.sections)
}

/// `SizeOfImage` from the optional header of a PE32+ image.
pub fn size_of_image(pe: &[u8]) -> Result<u32, PeParseError> {
    let h = parse_headers(pe)?;
    read_u32(pe, h.field(opt::SIZE_OF_IMAGE))
        .ok_or(PeParseError::ReadOptionalHeader { offset: h.optional })
}

/// The PE image checksum (`ImageHlp!CheckSumMappedFile`): a 16-bit one's-complement-style sum of
/// the file's little-endian words with the `CheckSum` field counted as zero, plus the file length.
pub fn checksum(pe: &[u8], checksum_offset: usize) -> u32 {
    // Summing without folding and folding once at the end is the same one's-complement sum as
    // folding after every word; a u64 cannot overflow for files below 2^48 bytes.
    let word_at = |at: usize| {
        u64::from(u16::from_le_bytes([
            pe[at],
            pe.get(at + 1).copied().unwrap_or(0),
        ]))
    };
    let mut sum: u64 = (0..pe.len()).step_by(2).map(word_at).sum();
    // Take the CheckSum field back out, byte by byte so an odd offset works too.
    for at in checksum_offset..checksum_offset.saturating_add(4) {
        if let Some(&b) = pe.get(at) {
            sum -= u64::from(b) << (8 * (at % 2));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // PE files are < 4 GiB, so the length fits; truncation would only affect invalid inputs.
    (sum as u32).wrapping_add(pe.len() as u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid PE32+ EFI application: one `.text` section, 16 data directories.
    /// `size_of_headers` is also where `.text` starts, so it controls the room for more section headers.
    pub(crate) fn tiny_pe(size_of_headers: u32, size_of_image: u32) -> Vec<u8> {
        let mut pe = vec![0u8; size_of_headers as usize + 0x200];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        let put16 =
            |pe: &mut Vec<u8>, at: usize, v: u16| pe[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |pe: &mut Vec<u8>, at: usize, v: u32| pe[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut pe, coff, 0x8664);
        put16(&mut pe, coff + 2, 1);
        put32(&mut pe, coff + 4, 0x1234_5678); // TimeDateStamp must survive untouched
        put16(&mut pe, coff + 16, 240);
        put16(&mut pe, coff + 18, 0x0206);
        let o = coff + 20;
        put16(&mut pe, o, PE32_PLUS_MAGIC);
        put32(&mut pe, o + 4, 0x200); // SizeOfCode
        put32(&mut pe, o + 8, 0x200); // SizeOfInitializedData
        put32(&mut pe, o + 16, 0x1000); // AddressOfEntryPoint
        put32(&mut pe, o + opt::SECTION_ALIGNMENT, 0x1000);
        put32(&mut pe, o + opt::FILE_ALIGNMENT, 0x200);
        put32(&mut pe, o + opt::SIZE_OF_IMAGE, size_of_image);
        put32(&mut pe, o + opt::SIZE_OF_HEADERS, size_of_headers);
        put16(&mut pe, o + 68, 10); // EFI application
        put32(&mut pe, o + opt::NUMBER_OF_RVA_AND_SIZES, 16);
        let s = o + 240;
        pe[s..s + 5].copy_from_slice(b".text");
        put32(&mut pe, s + 8, 0x10);
        put32(&mut pe, s + 12, 0x1000);
        put32(&mut pe, s + 16, 0x200);
        put32(&mut pe, s + 20, size_of_headers);
        put32(&mut pe, s + 36, 0x6000_0020);
        let text = size_of_headers as usize;
        pe[text..text + 4].copy_from_slice(&[0xc3, 0xc3, 0xc3, 0xc3]);
        pe
    }

    #[test]
    fn sections_of_tiny_pe() {
        let pe = tiny_pe(0x400, 0x2000);
        let s = sections(&pe).unwrap();
        assert_eq!(
            s,
            vec![Section {
                name: ".text".into(),
                virtual_address: 0x1000,
                virtual_size: 0x10,
                raw_offset: 0x400,
                raw_size: 0x200
            }]
        );
        assert_eq!(s[0].data(&pe).unwrap().len(), 0x10);
        assert_eq!(size_of_image(&pe).unwrap(), 0x2000);
    }

    #[test]
    fn rejects_non_pe_and_truncated_input() {
        assert!(matches!(
            sections(b"MZ"),
            Err(PeParseError::ReadDosHeader { len: 2 })
        ));
        assert!(matches!(
            sections(&[0u8; 128]),
            Err(PeParseError::FindMzSignature)
        ));
        let mut pe = tiny_pe(0x400, 0x2000);
        pe[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            sections(&pe),
            Err(PeParseError::FindPeSignature { .. })
        ));
        let mut pe = tiny_pe(0x400, 0x2000);
        pe[0x58..0x5a].copy_from_slice(&0x10bu16.to_le_bytes()); // PE32, not PE32+
        assert!(matches!(
            sections(&pe),
            Err(PeParseError::CheckOptionalHeaderMagic { magic: 0x10b })
        ));
        let pe = tiny_pe(0x400, 0x2000);
        // Every cut before the end of the section table is an error, never a panic.
        for len in 0..0x170 {
            assert!(
                sections(&pe[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn checksum_by_hand() {
        // words 0xffff + 0x0001 fold to 0x0001; the checksum field (offset 4) is skipped;
        // the odd last byte counts as 0x0003; plus the length 9.
        let data = [0xff, 0xff, 0x01, 0x00, 0xaa, 0xbb, 0xcc, 0xdd, 0x03];
        assert_eq!(checksum(&data, 4), 1 + 3 + 9);
    }
}
