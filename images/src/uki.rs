//! Unified Kernel Image assembly: systemd's EFI stub plus `.osrel`, `.cmdline`, `.uname`,
//! `.initrd` and `.linux` sections, as the UAPI UKI specification and systemd's `ukify` lay them out.
//!
//! Pure: bytes in, bytes out. It never signs (an unsigned UKI does not boot under Secure Boot) and
//! never reads the clock: the only timestamp in the output is the stub's own.

use crate::pe::{self, PeParseError, SECTION_HEADER_SIZE, opt, read_u32};
use thiserror::Error;

/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`, what `ukify` gives every added section.
const DATA_SECTION_FLAGS: u32 = 0x0000_0040 | 0x4000_0000;

/// What goes into a UKI. Empty `osrel`, `cmdline`, `uname` or `initrd` leave that section out,
/// as `ukify` does for parts it was not given.
#[derive(Debug, Clone, Copy)]
pub struct UkiInputs<'a> {
    /// systemd's `linuxx64.efi.stub`.
    pub stub: &'a [u8],
    /// The kernel's bzImage; it must be an EFI-stub PE (Debian's are).
    pub linux: &'a [u8],
    pub initrd: &'a [u8],
    pub cmdline: &'a str,
    /// Contents of `os-release`.
    pub osrel: &'a str,
    /// The kernel release, as `uname -r` prints it.
    pub uname: &'a str,
}

#[derive(Debug, Error)]
pub enum UkiBuildError {
    #[error("parsing the EFI stub as PE32+")]
    ParseStub(#[source] PeParseError),
    #[error("parsing the kernel as a PE image (is it an EFI-stub bzImage?)")]
    ParseKernel(#[source] PeParseError),
    #[error("stub has unusable alignment: FileAlignment {file:#x}, SectionAlignment {section:#x}")]
    CheckStubAlignment { file: u32, section: u32 },
    #[error(
        "stub header has no room for {count} more section headers: {needed} bytes needed, {available} free \
         before the first section"
    )]
    FitSectionHeaders {
        count: usize,
        needed: usize,
        available: usize,
    },
    #[error("UKI would exceed the 4 GiB limit of a PE image")]
    ComputeLayout,
}

/// One section to append, before file and virtual placement.
struct NewSection<'a> {
    name: &'static [u8],
    data: &'a [u8],
    /// `data.len()`, checked to fit a PE field.
    len: u32,
    virtual_size: u32,
}

fn align_up(v: u32, align: u32) -> Option<u32> {
    // `align` is a checked power of two.
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Append the UKI sections to the stub; empty optional parts are left out (see [`UkiInputs`]).
///
/// Layout: raw data of each new section starts at a `FileAlignment` boundary after the stub's last
/// section (anything the stub carried after that, such as a signature, is dropped and its data
/// directory cleared); virtual addresses follow the stub's image at `SectionAlignment`; `.linux`
/// comes last with `VirtualSize = max(kernel SizeOfImage, kernel length)` so the kernel's
/// uninitialised data fits when the stub loads it in place. `NumberOfSections`, `SizeOfImage`,
/// `SizeOfInitializedData`, `SizeOfHeaders` (when the table grows past it) and `CheckSum` are updated.
pub fn build(inputs: &UkiInputs) -> Result<Vec<u8>, UkiBuildError> {
    let stub = inputs.stub;
    let h = pe::parse_headers(stub).map_err(UkiBuildError::ParseStub)?;
    let kernel_image_size = pe::size_of_image(inputs.linux).map_err(UkiBuildError::ParseKernel)?;
    // parse_headers guarantees the optional header holds every field up to the data directories.
    let field = |off: usize| read_u32(stub, h.field(off)).unwrap_or(0);
    let file_align = field(opt::FILE_ALIGNMENT);
    let section_align = field(opt::SECTION_ALIGNMENT);
    if !file_align.is_power_of_two() || !section_align.is_power_of_two() {
        return Err(UkiBuildError::CheckStubAlignment {
            file: file_align,
            section: section_align,
        });
    }
    let linux_len = u32::try_from(inputs.linux.len()).map_err(|_| UkiBuildError::ComputeLayout)?;

    let mut added: Vec<NewSection> = [
        (b".osrel".as_slice(), inputs.osrel.as_bytes()),
        (b".cmdline", inputs.cmdline.as_bytes()),
        (b".uname", inputs.uname.as_bytes()),
        (b".initrd", inputs.initrd),
    ]
    .into_iter()
    .filter(|(_, data)| !data.is_empty())
    .map(|(name, data)| {
        let len = u32::try_from(data.len()).map_err(|_| UkiBuildError::ComputeLayout)?;
        Ok(NewSection {
            name,
            data,
            len,
            virtual_size: len,
        })
    })
    .collect::<Result<_, _>>()?;
    added.push(NewSection {
        name: b".linux",
        data: inputs.linux,
        len: linux_len,
        virtual_size: kernel_image_size.max(linux_len),
    });

    // Room for the new headers: up to the first section's data or mapping, and only over zero bytes.
    let old_table_end = h.section_table + h.sections.len() * SECTION_HEADER_SIZE;
    let new_table_end = old_table_end + added.len() * SECTION_HEADER_SIZE;
    let first_raw = h
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .chain(h.sections.iter().map(|s| s.virtual_address as usize))
        .min()
        .unwrap_or(stub.len())
        .min(stub.len());
    let free_end = stub
        .get(old_table_end..first_raw)
        .and_then(|gap| gap.iter().position(|&b| b != 0))
        .map_or(first_raw, |p| old_table_end + p);
    let size_of_headers_now = field(opt::SIZE_OF_HEADERS);
    let size_of_headers = u32::try_from(new_table_end)
        .ok()
        .and_then(|end| align_up(end, file_align))
        .map_or(u32::MAX, |end| end.max(size_of_headers_now));
    if new_table_end > free_end || size_of_headers as usize > first_raw {
        return Err(UkiBuildError::FitSectionHeaders {
            count: added.len(),
            needed: added.len() * SECTION_HEADER_SIZE,
            available: free_end.saturating_sub(old_table_end),
        });
    }
    let section_count =
        u16::try_from(h.sections.len() + added.len()).map_err(|_| UkiBuildError::ComputeLayout)?;

    // File placement: after the last byte of the stub's own sections.
    let stub_end = h
        .sections
        .iter()
        .map(|s| u64::from(s.raw_offset) + u64::from(s.raw_size))
        .max()
        .unwrap_or(0)
        .max(u64::from(size_of_headers_now))
        .max(new_table_end as u64)
        .min(stub.len() as u64);
    let stub_end = u32::try_from(stub_end).map_err(|_| UkiBuildError::ComputeLayout)?;
    let mut raw_cursor = align_up(stub_end, file_align).ok_or(UkiBuildError::ComputeLayout)?;
    // Virtual placement: after the stub's image.
    let image_end = h
        .sections
        .iter()
        .map(|s| s.virtual_address.checked_add(s.virtual_size))
        .try_fold(field(opt::SIZE_OF_IMAGE), |acc, end| {
            end.map(|e| acc.max(e))
        })
        .ok_or(UkiBuildError::ComputeLayout)?;
    let mut va_cursor = align_up(image_end, section_align).ok_or(UkiBuildError::ComputeLayout)?;

    let mut headers = Vec::with_capacity(added.len() * SECTION_HEADER_SIZE);
    let mut placed = Vec::with_capacity(added.len());
    let mut initialized = field(opt::SIZE_OF_INITIALIZED_DATA);
    for s in &added {
        let raw_size = align_up(s.len, file_align).ok_or(UkiBuildError::ComputeLayout)?;
        let mut header = [0u8; SECTION_HEADER_SIZE];
        header[..s.name.len()].copy_from_slice(s.name);
        put_u32(&mut header, 8, s.virtual_size);
        put_u32(&mut header, 12, va_cursor);
        put_u32(&mut header, 16, raw_size);
        put_u32(&mut header, 20, raw_cursor);
        put_u32(&mut header, 36, DATA_SECTION_FLAGS);
        headers.extend_from_slice(&header);
        placed.push((raw_cursor, s.data));
        initialized = initialized
            .checked_add(s.virtual_size)
            .ok_or(UkiBuildError::ComputeLayout)?;
        raw_cursor = raw_cursor
            .checked_add(raw_size)
            .ok_or(UkiBuildError::ComputeLayout)?;
        va_cursor = va_cursor
            .checked_add(s.virtual_size)
            .and_then(|end| align_up(end, section_align))
            .ok_or(UkiBuildError::ComputeLayout)?;
    }

    let mut out = vec![0u8; raw_cursor as usize];
    out[..stub_end as usize].copy_from_slice(&stub[..stub_end as usize]);
    for (offset, data) in placed {
        out[offset as usize..offset as usize + data.len()].copy_from_slice(data);
    }
    out[old_table_end..new_table_end].copy_from_slice(&headers);
    put_u16(&mut out, h.number_of_sections_offset(), section_count);
    put_u32(&mut out, h.field(opt::SIZE_OF_IMAGE), va_cursor);
    put_u32(
        &mut out,
        h.field(opt::SIZE_OF_INITIALIZED_DATA),
        initialized,
    );
    put_u32(&mut out, h.field(opt::SIZE_OF_HEADERS), size_of_headers);
    // A signature or COFF symbol table after the stub's sections was dropped above; do not point at it.
    if let Some(dir) = h.data_directory(stub, opt::CERTIFICATE_TABLE) {
        out[dir..dir + 8].fill(0);
    }
    if read_u32(stub, h.coff + 8).is_some_and(|ptr| ptr >= stub_end) {
        out[h.coff + 8..h.coff + 16].fill(0);
    }
    let checksum_at = h.field(opt::CHECKSUM);
    let sum = pe::checksum(&out, checksum_at);
    put_u32(&mut out, checksum_at, sum);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pe::tests::tiny_pe;
    use crate::test_tools;

    const CMDLINE: &str = "console=ttyS0 rescue.mode=shell";

    fn inputs<'a>(stub: &'a [u8], linux: &'a [u8]) -> UkiInputs<'a> {
        UkiInputs {
            stub,
            linux,
            initrd: b"070701 not really a cpio",
            cmdline: CMDLINE,
            osrel: "ID=rescue\n",
            uname: "6.1.0-test-amd64",
        }
    }

    fn section<'a>(uki: &'a [u8], name: &str) -> &'a [u8] {
        let s = pe::sections(uki).unwrap();
        let s = s
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        s.data(uki).unwrap()
    }

    #[test]
    fn synthetic_stub_gets_sections_in_order_and_aligned() {
        let stub = tiny_pe(0x400, 0x2000);
        let kernel = tiny_pe(0x400, 0x9000);
        let uki = build(&inputs(&stub, &kernel)).unwrap();
        let s = pe::sections(&uki).unwrap();
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [".text", ".osrel", ".cmdline", ".uname", ".initrd", ".linux"]
        );
        for s in &s[1..] {
            assert_eq!(s.raw_offset % 0x200, 0, "{} raw offset", s.name);
            assert_eq!(s.raw_size % 0x200, 0, "{} raw size", s.name);
            assert_eq!(s.virtual_address % 0x1000, 0, "{} VA", s.name);
        }
        // New sections follow the stub's image and do not overlap each other.
        assert_eq!(s[1].virtual_address, 0x2000);
        for w in s.windows(2) {
            assert!(w[0].virtual_address + w[0].virtual_size <= w[1].virtual_address);
            assert!(w[0].raw_offset + w[0].raw_size <= w[1].raw_offset);
        }
        let linux = s.last().unwrap();
        assert_eq!(
            linux.virtual_size, 0x9000,
            ".linux VirtualSize is the kernel's SizeOfImage"
        );
        assert!(section(&uki, ".linux") == kernel.as_slice());
        assert_eq!(section(&uki, ".cmdline"), CMDLINE.as_bytes());
        assert_eq!(section(&uki, ".osrel"), b"ID=rescue\n");
        assert_eq!(section(&uki, ".uname"), b"6.1.0-test-amd64");
        assert_eq!(uki.len(), (linux.raw_offset + linux.raw_size) as usize);

        let h = pe::parse_headers(&uki).unwrap();
        let field = |off| read_u32(&uki, h.field(off)).unwrap();
        assert_eq!(field(opt::SIZE_OF_IMAGE), linux.virtual_address + 0x9000);
        assert_eq!(
            field(opt::SIZE_OF_INITIALIZED_DATA),
            0x200 + s[1..].iter().map(|s| s.virtual_size).sum::<u32>()
        );
        assert_eq!(
            read_u32(&uki, h.coff + 4),
            Some(0x1234_5678),
            "stub timestamp kept"
        );
        let sum = field(opt::CHECKSUM);
        assert_ne!(sum, 0);
        assert_eq!(sum, pe::checksum(&uki, h.field(opt::CHECKSUM)));
        assert_eq!(
            build(&inputs(&stub, &kernel)).unwrap(),
            uki,
            "deterministic"
        );
    }

    #[test]
    fn kernel_longer_than_its_image_size_keeps_its_length() {
        let stub = tiny_pe(0x400, 0x2000);
        let kernel = tiny_pe(0x400, 0x100);
        let uki = build(&inputs(&stub, &kernel)).unwrap();
        let s = pe::sections(&uki).unwrap();
        assert_eq!(s.last().unwrap().virtual_size, kernel.len() as u32);
    }

    #[test]
    fn empty_optional_parts_are_left_out() {
        let stub = tiny_pe(0x400, 0x2000);
        let kernel = tiny_pe(0x400, 0x9000);
        let uki = build(&UkiInputs {
            initrd: b"",
            osrel: "",
            ..inputs(&stub, &kernel)
        })
        .unwrap();
        let names: Vec<_> = pe::sections(&uki)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, [".text", ".cmdline", ".uname", ".linux"]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let stub = tiny_pe(0x400, 0x2000);
        let kernel = tiny_pe(0x400, 0x9000);
        let err = build(&inputs(
            b"#!/bin/sh\necho not a PE at all, but long enough for a DOS header......",
            &kernel,
        ));
        assert!(
            matches!(
                err,
                Err(UkiBuildError::ParseStub(PeParseError::FindMzSignature))
            ),
            "{err:?}"
        );
        let err = build(&inputs(&stub, b"plain ELF or garbage"));
        assert!(matches!(err, Err(UkiBuildError::ParseKernel(_))), "{err:?}");
        // Headers end at 0x200 and the table of 1 section ends at 0x170: no room for 5 more.
        let cramped = tiny_pe(0x200, 0x2000);
        let err = build(&inputs(&cramped, &kernel));
        assert!(
            matches!(
                err,
                Err(UkiBuildError::FitSectionHeaders {
                    count: 5,
                    needed: 200,
                    available: 0x90
                })
            ),
            "{err:?}"
        );
        assert!(err.unwrap_err().to_string().contains("200 bytes needed"));
        // Every prefix of a valid stub is handled without panicking.
        for len in (0..stub.len()).step_by(7) {
            let _ = build(&inputs(&stub[..len], &kernel));
        }
    }

    /// The real systemd stub and a real Debian kernel, checked with binutils' `objdump -h`.
    #[test]
    fn real_stub_and_kernel() {
        let Some((stub_path, kernel_path)) = test_tools::boot_files() else {
            return;
        };
        let stub = std::fs::read(&stub_path).unwrap();
        let kernel = std::fs::read(&kernel_path).unwrap();
        let uki = build(&inputs(&stub, &kernel)).unwrap();
        assert_eq!(section(&uki, ".cmdline"), CMDLINE.as_bytes());
        // .linux is padded to FileAlignment; its VirtualSize (SizeOfImage) is larger than the file.
        let linux = section(&uki, ".linux");
        assert!(
            linux[..kernel.len()] == kernel[..],
            ".linux differs from the kernel"
        );
        assert!(linux[kernel.len()..].iter().all(|&b| b == 0));
        let s = pe::sections(&uki).unwrap();
        assert_eq!(
            s.last().unwrap().virtual_size,
            pe::size_of_image(&kernel).unwrap()
        );

        let Some(objdump) = test_tools::tool("objdump") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rescue.efi");
        std::fs::write(&path, &uki).unwrap();
        let out = std::process::Command::new(objdump)
            .arg("-h")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "objdump -h failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("pei-x86-64"), "{text}");
        // Section lines look like "  8 .osrel  00000010  0000000000019400 ...".
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                f.next()?.parse::<u32>().ok()?;
                f.next()
            })
            .collect();
        let tail = &names[names.len() - 5..];
        assert_eq!(
            tail,
            [".osrel", ".cmdline", ".uname", ".initrd", ".linux"],
            "{text}"
        );
    }
}
