//! Just enough ELF64 little-endian parsing for the initramfs builder: whether a binary needs a dynamic
//! loader (the rescue init must be static), the bytes of a named section (kernel modules keep their
//! `.modinfo` strings there), and the shared libraries (`DT_NEEDED`) a dynamically linked tool needs,
//! with their closure resolved through a caller-supplied lookup (the builder searches the host's library
//! directories; this module never touches the file system).
//!
//! Every offset is bounds-checked: a truncated or hostile file gives an [`ElfError`], never a panic.

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_type` of a relocatable object (kernel modules).
pub const ET_REL: u16 = 1;
/// `e_type` of a fixed-address executable.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object or position-independent executable.
pub const ET_DYN: u16 = 3;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_PIE: u64 = 0x0800_0000;
const SHN_XINDEX: u16 = 0xffff;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("checking the ELF magic: not an ELF file")]
    CheckMagic,
    #[error("checking the ELF class: {class} is not ELFCLASS64")]
    CheckClass { class: u8 },
    #[error("checking the ELF byte order: {data} is not little-endian")]
    CheckByteOrder { data: u8 },
    #[error("reading the {what}: file truncated or offset out of range")]
    ReadTruncated { what: &'static str },
    #[error("decoding the {what}: not NUL-terminated UTF-8")]
    DecodeString { what: &'static str },
}

/// What the builder needs to know about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// Runs without a dynamic loader or shared libraries: no `PT_INTERP` and no `DT_NEEDED`
    /// (true for static-pie too).
    pub is_static: bool,
    /// `ET_DYN` built as an executable (has an interpreter or `DF_1_PIE`), not a plain shared library.
    pub is_pie: bool,
    pub machine: u16,
}

/// Reads the ELF header and program headers of `bytes`.
pub fn inspect(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    let header = Header::parse(bytes)?;
    let mut interpreter = None;
    let mut has_needed = false;
    let mut pie_flag = false;
    for i in 0..u64::from(header.phnum) {
        let at = header
            .phoff
            .checked_add(i * u64::from(header.phentsize))
            .ok_or(ElfError::ReadTruncated {
                what: "program header table",
            })?;
        let what = "program header table";
        let p_type = u32_at(bytes, at, what)?;
        let p_offset = u64_at(bytes, at.saturating_add(8), what)?;
        let p_filesz = u64_at(bytes, at.saturating_add(32), what)?;
        match p_type {
            PT_INTERP => {
                let what = "PT_INTERP segment";
                let raw = slice(bytes, p_offset, p_filesz, what)?;
                let raw = raw
                    .strip_suffix(&[0])
                    .ok_or(ElfError::DecodeString { what })?;
                let text = std::str::from_utf8(raw).map_err(|_| ElfError::DecodeString { what })?;
                interpreter = Some(text.to_owned());
            }
            PT_DYNAMIC => {
                let dynamic = slice(bytes, p_offset, p_filesz, "PT_DYNAMIC segment")?;
                for entry in dynamic.chunks_exact(16) {
                    let tag = u64_at(entry, 0, "dynamic entry")?;
                    let value = u64_at(entry, 8, "dynamic entry")?;
                    match tag {
                        DT_NULL => break,
                        DT_NEEDED => has_needed = true,
                        DT_FLAGS_1 => pie_flag |= value & DF_1_PIE != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ElfInfo {
        is_static: interpreter.is_none() && !has_needed,
        is_pie: header.e_type == ET_DYN && (interpreter.is_some() || pie_flag),
        interpreter,
        machine: header.machine,
    })
}

/// The dynamic linking needs of an executable or shared library.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicNeeds {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` names in order, e.g. `libext2fs.so.2`.
    pub needed: Vec<String>,
}

/// Reads `PT_INTERP` and the `DT_NEEDED` names (looked up in the `DT_STRTAB` string table, whose virtual
/// address is mapped to a file offset through the `PT_LOAD` segments).
pub fn dynamic_needs(bytes: &[u8]) -> Result<DynamicNeeds, ElfError> {
    let header = Header::parse(bytes)?;
    let what = "program header table";
    let mut loads = Vec::new();
    let mut dynamic = None;
    let mut interpreter = None;
    for i in 0..u64::from(header.phnum) {
        let at = header
            .phoff
            .checked_add(i * u64::from(header.phentsize))
            .ok_or(ElfError::ReadTruncated { what })?;
        let p_type = u32_at(bytes, at, what)?;
        let p_offset = u64_at(bytes, at.saturating_add(8), what)?;
        let p_vaddr = u64_at(bytes, at.saturating_add(16), what)?;
        let p_filesz = u64_at(bytes, at.saturating_add(32), what)?;
        match p_type {
            PT_LOAD => loads.push((p_vaddr, p_offset, p_filesz)),
            PT_DYNAMIC => dynamic = Some(slice(bytes, p_offset, p_filesz, "PT_DYNAMIC segment")?),
            PT_INTERP => {
                let what = "PT_INTERP segment";
                let raw = slice(bytes, p_offset, p_filesz, what)?;
                let raw = raw
                    .strip_suffix(&[0])
                    .ok_or(ElfError::DecodeString { what })?;
                let text = std::str::from_utf8(raw).map_err(|_| ElfError::DecodeString { what })?;
                interpreter = Some(text.to_owned());
            }
            _ => {}
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(DynamicNeeds {
            interpreter,
            needed: Vec::new(),
        });
    };
    let mut strtab = None;
    let mut needed_offsets = Vec::new();
    for entry in dynamic.chunks_exact(16) {
        let tag = u64_at(entry, 0, "dynamic entry")?;
        let value = u64_at(entry, 8, "dynamic entry")?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab = Some(value),
            _ => {}
        }
    }
    let mut needed = Vec::new();
    if !needed_offsets.is_empty() {
        let what = "DT_STRTAB string table";
        let vaddr = strtab.ok_or(ElfError::ReadTruncated { what })?;
        let (seg_vaddr, seg_offset, seg_size) = loads
            .iter()
            .copied()
            .find(|(v, _, size)| vaddr >= *v && vaddr - *v < *size)
            .ok_or(ElfError::ReadTruncated { what })?;
        let table = slice(
            bytes,
            seg_offset + (vaddr - seg_vaddr),
            seg_size - (vaddr - seg_vaddr),
            what,
        )?;
        for off in needed_offsets {
            let what = "DT_NEEDED name";
            let start = usize::try_from(off).map_err(|_| ElfError::ReadTruncated { what })?;
            let rest = table.get(start..).ok_or(ElfError::ReadTruncated { what })?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(ElfError::DecodeString { what })?;
            let name =
                std::str::from_utf8(&rest[..end]).map_err(|_| ElfError::DecodeString { what })?;
            needed.push(name.to_owned());
        }
    }
    Ok(DynamicNeeds {
        interpreter,
        needed,
    })
}

/// Every shared object a set of executables needs, transitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryClosure {
    /// `(path the lookup returned, contents)` for each library, in discovery order, each once.
    pub libraries: Vec<(String, Vec<u8>)>,
    /// Dynamic loaders named by `PT_INTERP` (absolute paths), each once.
    pub interpreters: Vec<String>,
    /// `DT_NEEDED` names the lookup could not find.
    pub missing: Vec<String>,
}

/// Resolves the `DT_NEEDED` closure of `roots`: `find(name)` returns where a library lives and its bytes.
pub fn library_closure(
    roots: &[&[u8]],
    mut find: impl FnMut(&str) -> Option<(String, Vec<u8>)>,
) -> Result<LibraryClosure, ElfError> {
    let mut out = LibraryClosure::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut visit = |needs: DynamicNeeds,
                     out: &mut LibraryClosure,
                     queue: &mut std::collections::VecDeque<String>| {
        if let Some(i) = needs.interpreter
            && !out.interpreters.contains(&i)
        {
            out.interpreters.push(i);
        }
        for n in needs.needed {
            if seen.insert(n.clone()) {
                queue.push_back(n);
            }
        }
    };
    for root in roots {
        visit(dynamic_needs(root)?, &mut out, &mut queue);
    }
    while let Some(name) = queue.pop_front() {
        match find(&name) {
            Some((path, bytes)) => {
                let needs = dynamic_needs(&bytes)?;
                out.libraries.push((path, bytes));
                visit(needs, &mut out, &mut queue);
            }
            None => out.missing.push(name),
        }
    }
    Ok(out)
}

/// `e_type` of the file (`ET_REL` for kernel modules, `ET_DYN` for PIE executables).
pub fn file_type(bytes: &[u8]) -> Result<u16, ElfError> {
    Ok(Header::parse(bytes)?.e_type)
}

/// Contents of the first section called `name` (e.g. `.modinfo`), or `None` if there is none.
pub fn section_by_name<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    let header = Header::parse(bytes)?;
    if header.shoff == 0 {
        return Ok(None);
    }
    let what = "section header table";
    let entsize = u64::from(header.shentsize);
    let section_at = |index: u64| -> Result<u64, ElfError> {
        index
            .checked_mul(entsize)
            .and_then(|off| off.checked_add(header.shoff))
            .ok_or(ElfError::ReadTruncated { what })
    };
    // Extended numbering: counts that do not fit the header live in section 0.
    let first = section_at(0)?;
    let shnum = match header.shnum {
        0 => u64_at(bytes, first.saturating_add(32), what)?,
        n => u64::from(n),
    };
    let shstrndx = match header.shstrndx {
        SHN_XINDEX => u64::from(u32_at(bytes, first.saturating_add(40), what)?),
        n => u64::from(n),
    };
    let section = |index: u64| -> Result<(u32, &'a [u8]), ElfError> {
        let at = section_at(index)?;
        let sh_name = u32_at(bytes, at, what)?;
        let offset = u64_at(bytes, at.saturating_add(24), what)?;
        let size = u64_at(bytes, at.saturating_add(32), what)?;
        // SHT_NOBITS (8) occupies no file bytes.
        let sh_type = u32_at(bytes, at.saturating_add(4), what)?;
        let data = if sh_type == 8 {
            &[][..]
        } else {
            slice(bytes, offset, size, "section contents")?
        };
        Ok((sh_name, data))
    };
    if shstrndx >= shnum {
        return Err(ElfError::ReadTruncated {
            what: "section name table index",
        });
    }
    let (_, names) = section(shstrndx)?;
    for index in 0..shnum {
        let (sh_name, data) = section(index)?;
        let start = usize::try_from(sh_name).map_err(|_| ElfError::ReadTruncated {
            what: "section name",
        })?;
        let rest = names.get(start..).ok_or(ElfError::ReadTruncated {
            what: "section name",
        })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ElfError::DecodeString {
                what: "section name",
            })?;
        if &rest[..end] == name.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

struct Header {
    e_type: u16,
    machine: u16,
    phoff: u64,
    shoff: u64,
    phentsize: u16,
    phnum: u16,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Self, ElfError> {
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::CheckMagic);
        }
        let what = "ELF header";
        let ident = bytes.get(..64).ok_or(ElfError::ReadTruncated { what })?;
        if ident[4] != 2 {
            return Err(ElfError::CheckClass { class: ident[4] });
        }
        if ident[5] != 1 {
            return Err(ElfError::CheckByteOrder { data: ident[5] });
        }
        Ok(Header {
            e_type: u16_at(bytes, 0x10, what)?,
            machine: u16_at(bytes, 0x12, what)?,
            phoff: u64_at(bytes, 0x20, what)?,
            shoff: u64_at(bytes, 0x28, what)?,
            phentsize: u16_at(bytes, 0x36, what)?,
            phnum: u16_at(bytes, 0x38, what)?,
            shentsize: u16_at(bytes, 0x3a, what)?,
            shnum: u16_at(bytes, 0x3c, what)?,
            shstrndx: u16_at(bytes, 0x3e, what)?,
        })
    }
}

fn slice<'a>(
    bytes: &'a [u8],
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], ElfError> {
    let start = usize::try_from(offset).map_err(|_| ElfError::ReadTruncated { what })?;
    let len = usize::try_from(len).map_err(|_| ElfError::ReadTruncated { what })?;
    let end = start
        .checked_add(len)
        .ok_or(ElfError::ReadTruncated { what })?;
    bytes
        .get(start..end)
        .ok_or(ElfError::ReadTruncated { what })
}

fn array_at<const N: usize>(
    bytes: &[u8],
    offset: u64,
    what: &'static str,
) -> Result<[u8; N], ElfError> {
    let raw = slice(bytes, offset, N as u64, what)?;
    raw.try_into().map_err(|_| ElfError::ReadTruncated { what })
}

fn u16_at(bytes: &[u8], offset: u64, what: &'static str) -> Result<u16, ElfError> {
    array_at(bytes, offset, what).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: u64, what: &'static str) -> Result<u32, ElfError> {
    array_at(bytes, offset, what).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], offset: u64, what: &'static str) -> Result<u64, ElfError> {
    array_at(bytes, offset, what).map(u64::from_le_bytes)
}

/// Builds small synthetic ELF files for this crate's tests.
#[cfg(test)]
pub(crate) mod fixture {
    /// A 64-bit LE ELF with the given program headers `(p_type, contents)` and sections `(name, contents)`.
    pub fn elf(e_type: u16, segments: &[(u32, Vec<u8>)], sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
        out[0x12..0x14].copy_from_slice(&super::EM_X86_64.to_le_bytes());
        // Segment contents first, then the program header table.
        let mut placed = Vec::new();
        for (p_type, data) in segments {
            placed.push((*p_type, out.len() as u64, data.len() as u64));
            out.extend_from_slice(data);
        }
        let phoff = out.len() as u64;
        for (p_type, offset, size) in placed {
            let mut ph = [0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[32..40].copy_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&ph);
        }
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        if !sections.is_empty() {
            // Section 0 is the null section; the last is .shstrtab.
            let mut names = vec![0u8];
            let mut headers = vec![(0u32, 0u64, 0u64)];
            for (name, data) in sections {
                let name_at = names.len() as u32;
                names.extend_from_slice(name.as_bytes());
                names.push(0);
                headers.push((name_at, out.len() as u64, data.len() as u64));
                out.extend_from_slice(data);
            }
            let name_at = names.len() as u32;
            names.extend_from_slice(b".shstrtab\0");
            headers.push((name_at, out.len() as u64, names.len() as u64));
            out.extend_from_slice(&names);
            let shoff = out.len() as u64;
            for (name, offset, size) in &headers {
                let mut sh = [0u8; 64];
                sh[..4].copy_from_slice(&name.to_le_bytes());
                sh[4..8].copy_from_slice(&1u32.to_le_bytes());
                sh[24..32].copy_from_slice(&offset.to_le_bytes());
                sh[32..40].copy_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&sh);
            }
            out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            out[0x3c..0x3e].copy_from_slice(&(headers.len() as u16).to_le_bytes());
            out[0x3e..0x40].copy_from_slice(&((headers.len() - 1) as u16).to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::elf;
    use super::*;

    fn dynamic(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, value) in entries.iter().chain(&[(DT_NULL, 0)]) {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// A shared object or executable needing `needed`, with its string table in a PT_LOAD at vaddr 0.
    fn needing(interp: Option<&str>, needed: &[&str]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut entries = vec![(DT_STRTAB, 0)];
        for n in needed {
            entries.push((DT_NEEDED, strtab.len() as u64));
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        let mut segments = vec![(PT_LOAD, strtab), (PT_DYNAMIC, dynamic(&entries))];
        if let Some(i) = interp {
            segments.push((PT_INTERP, format!("{i}\0").into_bytes()));
        }
        elf(ET_DYN, &segments, &[])
    }

    #[test]
    fn needed_libraries_are_read_from_the_string_table() {
        let bin = needing(Some("/lib64/ld.so"), &["libext2fs.so.2", "libc.so.6"]);
        let needs = dynamic_needs(&bin).unwrap();
        assert_eq!(needs.interpreter.as_deref(), Some("/lib64/ld.so"));
        assert_eq!(needs.needed, ["libext2fs.so.2", "libc.so.6"]);
        let lone = elf(ET_DYN, &[(PT_DYNAMIC, dynamic(&[(DT_NEEDED, 1)]))], &[]);
        assert!(
            dynamic_needs(&lone).is_err(),
            "DT_NEEDED without a string table"
        );
    }

    #[test]
    fn closure_follows_needed_transitively_once_each() {
        let mkfs = needing(Some("/lib64/ld.so"), &["libext2fs.so.2", "libc.so.6"]);
        let exfat = needing(Some("/lib64/ld.so"), &["libc.so.6"]);
        let libs = std::collections::BTreeMap::from([
            (
                "libext2fs.so.2",
                needing(None, &["libcom_err.so.2", "libc.so.6"]),
            ),
            ("libcom_err.so.2", needing(None, &["libc.so.6"])),
            ("libc.so.6", needing(Some("/lib64/ld.so"), &[])),
        ]);
        let mut asked = Vec::new();
        let closure = library_closure(&[&mkfs, &exfat, &needing(None, &["libgone.so.1"])], |n| {
            asked.push(n.to_owned());
            libs.get(n).map(|b| (format!("/lib/{n}"), b.clone()))
        })
        .unwrap();
        let paths: Vec<&str> = closure.libraries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/lib/libext2fs.so.2",
                "/lib/libc.so.6",
                "/lib/libcom_err.so.2"
            ]
        );
        assert_eq!(closure.interpreters, ["/lib64/ld.so"]);
        assert_eq!(closure.missing, ["libgone.so.1"]);
        assert_eq!(asked.len(), 4, "each name is looked up once: {asked:?}");
    }

    #[test]
    fn dynamic_pie_has_interpreter() {
        let bytes = elf(
            ET_DYN,
            &[
                (PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec()),
                (PT_DYNAMIC, dynamic(&[(DT_NEEDED, 1)])),
            ],
            &[],
        );
        let info = inspect(&bytes).unwrap();
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(!info.is_static);
        assert!(info.is_pie);
        assert_eq!(info.machine, EM_X86_64);
    }

    #[test]
    fn static_pie_is_static() {
        let bytes = elf(
            ET_DYN,
            &[(PT_DYNAMIC, dynamic(&[(DT_FLAGS_1, DF_1_PIE)]))],
            &[],
        );
        let info = inspect(&bytes).unwrap();
        assert_eq!(info.interpreter, None);
        assert!(info.is_static);
        assert!(info.is_pie);
    }

    #[test]
    fn shared_library_is_neither_static_nor_pie() {
        let bytes = elf(ET_DYN, &[(PT_DYNAMIC, dynamic(&[(DT_NEEDED, 1)]))], &[]);
        let info = inspect(&bytes).unwrap();
        assert!(!info.is_static);
        assert!(!info.is_pie);
    }

    #[test]
    fn static_exec() {
        let info = inspect(&elf(ET_EXEC, &[], &[])).unwrap();
        assert!(info.is_static);
        assert!(!info.is_pie);
        assert_eq!(file_type(&elf(ET_EXEC, &[], &[])).unwrap(), ET_EXEC);
    }

    #[test]
    fn this_test_binary_is_a_dynamic_pie() {
        // A real linker's output, not our own fixture: cargo test binaries on Linux are dynamic PIEs.
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = inspect(&bytes).unwrap();
        assert!(
            info.interpreter
                .as_deref()
                .is_some_and(|i| i.contains("ld-linux")),
            "{info:?}"
        );
        assert!(!info.is_static);
        assert!(info.is_pie);
        assert_eq!(info.machine, EM_X86_64);
        assert!(
            section_by_name(&bytes, ".text")
                .unwrap()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(section_by_name(&bytes, ".modinfo").unwrap().is_none());
    }

    #[test]
    fn finds_sections_by_name() {
        let bytes = elf(
            ET_REL,
            &[],
            &[
                (".text", vec![0x90; 3]),
                (".modinfo", b"license=GPL\0".to_vec()),
            ],
        );
        assert_eq!(
            section_by_name(&bytes, ".modinfo").unwrap(),
            Some(&b"license=GPL\0"[..])
        );
        assert_eq!(
            section_by_name(&bytes, ".text").unwrap(),
            Some(&[0x90; 3][..])
        );
        assert_eq!(section_by_name(&bytes, ".data").unwrap(), None);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(inspect(b"MZ\x90\0"), Err(ElfError::CheckMagic)));
        let mut bytes = elf(
            ET_DYN,
            &[(PT_INTERP, b"/lib/ld.so\0".to_vec())],
            &[(".modinfo", vec![1])],
        );
        for cut in 0..bytes.len() {
            // Must return (Ok or Err), not panic.
            let _ = inspect(&bytes[..cut]);
            let _ = section_by_name(&bytes[..cut], ".modinfo");
        }
        assert!(inspect(&bytes[..40]).is_err());
        bytes[4] = 1;
        assert!(matches!(
            inspect(&bytes),
            Err(ElfError::CheckClass { class: 1 })
        ));
        let mut bytes = elf(ET_DYN, &[], &[]);
        bytes[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        bytes[0x38] = 1;
        assert!(matches!(
            inspect(&bytes),
            Err(ElfError::ReadTruncated { .. })
        ));
    }
}
