//! Reading Debian packages without `dpkg`: the `ar` archive, its `data.tar.xz`/`.zst`/plain member and
//! the regular files in that tar. Build-time only (feature `build`), pure functions over bytes.
//!
//! Only what boot loader packages need: regular files (ustar and GNU long names); directories, links and
//! device nodes are skipped, so nothing here can create a path outside the caller's hands.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum DebReadError {
    #[error("not an ar archive (no !<arch> magic)")]
    CheckArMagic,
    #[error("ar member header at byte {offset} is damaged")]
    ParseArHeader { offset: usize },
    #[error("the package has no data.tar member")]
    FindDataTar,
    #[error("decompressing {member}")]
    DecompressData {
        member: String,
        #[source]
        source: crate::decompress::DecompressError,
    },
    #[error("tar header at byte {offset} is damaged")]
    ParseTarHeader { offset: usize },
}

/// The members of an `ar` archive, in order: (name, bytes).
pub fn ar_members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, DebReadError> {
    let rest = bytes
        .strip_prefix(b"!<arch>\n")
        .ok_or(DebReadError::CheckArMagic)?;
    let mut offset = 8;
    let mut members = Vec::new();
    let mut rest = rest;
    while rest.len() >= 60 {
        let bad = || DebReadError::ParseArHeader { offset };
        let header = &rest[..60];
        if &header[58..60] != b"`\n" {
            return Err(bad());
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad)?;
        let data = rest.get(60..60 + size).ok_or_else(bad)?;
        members.push((name, data));
        let used = (60 + size + size % 2).min(rest.len());
        rest = &rest[used..];
        offset += used;
    }
    Ok(members)
}

fn octal(field: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(text, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Regular files of a tar archive by path (`./` stripped).
pub fn tar_files(tar: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, DebReadError> {
    let mut files = BTreeMap::new();
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    while offset + 512 <= tar.len() {
        let h = &tar[offset..offset + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let bad = || DebReadError::ParseTarHeader { offset };
        let size = octal(&h[124..136]).ok_or_else(bad)?;
        let data = tar.get(offset + 512..offset + 512 + size).ok_or_else(bad)?;
        let kind = h[156];
        let mut name = cstr(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        match kind {
            b'L' => long_name = Some(cstr(data)),
            b'0' | 0 => {
                let name = long_name.take().unwrap_or(name);
                let name = name.trim_start_matches("./").to_owned();
                files.insert(name, data.to_vec());
            }
            _ => long_name = None,
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    Ok(files)
}

/// Every regular file of a `.deb`'s data archive, by path (`usr/lib/shim/shimx64.efi.signed`).
pub fn data_files(deb: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, DebReadError> {
    let members = ar_members(deb)?;
    let (name, data) = members
        .iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .ok_or(DebReadError::FindDataTar)?;
    let (_, tar) = crate::decompress::decompress_by_name(name, data).map_err(|source| {
        DebReadError::DecompressData {
            member: name.clone(),
            source,
        }
    })?;
    tar_files(&tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_entry(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        let mut out = h;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, data) in members {
            out.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn regular_files_come_out_of_a_plain_data_tar() {
        let long = format!("./usr/lib/{}/x.efi", "d".repeat(120));
        let mut tar = tar_entry("./usr/", b'5', b"");
        tar.extend(tar_entry(
            "./usr/lib/shim/shimx64.efi.signed",
            b'0',
            b"MZ shim",
        ));
        tar.extend(tar_entry("./usr/lib/link", b'2', b""));
        tar.extend(tar_entry("././@LongLink", b'L', long.as_bytes()));
        tar.extend(tar_entry("./usr/lib/ddd", b'0', b"long"));
        tar.extend(vec![0u8; 1024]);
        let deb = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", b"x"),
            ("data.tar", &tar),
        ]);
        let files = data_files(&deb).unwrap();
        assert_eq!(files.len(), 2, "{:?}", files.keys().collect::<Vec<_>>());
        assert_eq!(files["usr/lib/shim/shimx64.efi.signed"], b"MZ shim");
        assert_eq!(files[long.trim_start_matches("./")], b"long");
    }

    #[test]
    fn damaged_packages_are_errors() {
        assert!(matches!(
            ar_members(b"junk"),
            Err(DebReadError::CheckArMagic)
        ));
        let deb = ar(&[("debian-binary", b"2.0\n")]);
        assert!(matches!(data_files(&deb), Err(DebReadError::FindDataTar)));
        let mut truncated = ar(&[("data.tar", &[0u8; 600])]);
        truncated.truncate(100);
        assert!(matches!(
            ar_members(&truncated),
            Err(DebReadError::ParseArHeader { .. })
        ));
    }
}
