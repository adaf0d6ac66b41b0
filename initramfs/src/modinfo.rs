//! The `.modinfo` section of a kernel module: NUL-separated `key=value` strings written by `MODULE_*`
//! macros and modpost. We read the keys the initramfs builder needs: `name`, `firmware` (files the driver
//! may request), `depends` (modules whose symbols it uses), `softdep` and `alias`.
//!
//! Takes the bytes of a decompressed `.ko`; decompression lives in `decompress`, file access in callers.

use crate::elf::{self, ElfError};

#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    #[error("parsing the module's ELF structure")]
    ParseElf(#[source] ElfError),
    #[error("finding the .modinfo section: the file has none")]
    FindModinfoSection,
}

/// The interesting keys of one module's `.modinfo`, in the order they appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    pub name: Option<String>,
    pub firmware: Vec<String>,
    /// Normalised module names (`-` → `_`) from the comma-separated `depends=`.
    pub depends: Vec<String>,
    /// Raw `softdep=` values, e.g. `pre: crc32c post: foo`.
    pub softdeps: Vec<String>,
    pub aliases: Vec<String>,
}

/// Parses the `.modinfo` section of a decompressed module ELF.
pub fn parse(elf: &[u8]) -> Result<ModInfo, ModinfoError> {
    let section = elf::section_by_name(elf, ".modinfo")
        .map_err(ModinfoError::ParseElf)?
        .ok_or(ModinfoError::FindModinfoSection)?;
    Ok(parse_strings(section))
}

/// Parses the NUL-separated `key=value` strings themselves (the section contents).
pub fn parse_strings(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for raw in section.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let text = String::from_utf8_lossy(raw);
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(value.to_owned()),
            "firmware" => info.firmware.push(value.to_owned()),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(crate::modules::normalize),
            ),
            "softdep" => info.softdeps.push(value.to_owned()),
            "alias" => info.aliases.push(value.to_owned()),
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::fixture::elf;

    const E1000E: &[u8] =
        b"version=3.2.6-k\0license=GPL v2\0description=Intel(R) PRO/1000 Network Driver\0\
        firmware=e1000e/fw-a.bin\0firmware=e1000e/fw-b.bin\0\
        alias=pci:v00008086d0000105Esv*sd*bc*sc*i*\0alias=pci:v00008086d0000105Fsv*sd*bc*sc*i*\0\
        depends=ptp,pps_core,crc-itu-t\0retpoline=Y\0intree=Y\0name=e1000e\0\
        softdep=pre: crc32c\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0\0\0";

    #[test]
    fn reads_keys_from_a_module_elf() {
        let bytes = elf(
            crate::elf::ET_REL,
            &[],
            &[(".text", vec![0xc3]), (".modinfo", E1000E.to_vec())],
        );
        let info = parse(&bytes).unwrap();
        assert_eq!(
            info,
            ModInfo {
                name: Some("e1000e".into()),
                firmware: vec!["e1000e/fw-a.bin".into(), "e1000e/fw-b.bin".into()],
                depends: vec!["ptp".into(), "pps_core".into(), "crc_itu_t".into()],
                softdeps: vec!["pre: crc32c".into()],
                aliases: vec![
                    "pci:v00008086d0000105Esv*sd*bc*sc*i*".into(),
                    "pci:v00008086d0000105Fsv*sd*bc*sc*i*".into()
                ],
            }
        );
    }

    #[test]
    fn empty_depends_gives_no_names() {
        let info = parse_strings(b"depends=\0name=loop\0");
        assert!(info.depends.is_empty());
        assert_eq!(info.name.as_deref(), Some("loop"));
    }

    #[test]
    fn errors_on_non_modules() {
        assert!(matches!(
            parse(b"not an elf"),
            Err(ModinfoError::ParseElf(ElfError::CheckMagic))
        ));
        let no_modinfo = elf(crate::elf::ET_REL, &[], &[(".text", vec![0xc3])]);
        assert!(matches!(
            parse(&no_modinfo),
            Err(ModinfoError::FindModinfoSection)
        ));
    }
}
