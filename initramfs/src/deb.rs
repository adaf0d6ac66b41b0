//! Reading Debian packages without `dpkg`: the `ar` archive, its `data.tar.xz`/`.zst`/plain member and
//! the regular files in that tar. Build-time only (feature `build`), pure functions over bytes.
//!
//! Only what boot loader packages need: regular files (ustar, GNU and pax headers, read by the `tar`
//! crate); directories, links and device nodes are skipped, so nothing here can create a path outside
//! the caller's hands.

use std::collections::BTreeMap;
use std::io::Read;

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
    #[error("reading the data tar")]
    ReadTar(#[source] std::io::Error),
    #[error("tar member {path:?} is cut off: {size} bytes declared, {found} present")]
    ReadTruncatedMember {
        path: String,
        size: u64,
        found: usize,
    },
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

/// Regular files of a tar archive by path (`./` stripped). The `tar` crate reads the headers: GNU long
/// names, pax `path` and `size` records and base-256 sizes included.
pub fn tar_files(tar: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, DebReadError> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(DebReadError::ReadTar)? {
        let mut entry = entry.map_err(DebReadError::ReadTar)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(DebReadError::ReadTar)?;
        // Reading past the end of the bytes yields less, not an error: a cut-off member is caught here.
        if data.len() as u64 != entry.size() {
            return Err(DebReadError::ReadTruncatedMember {
                path,
                size: entry.size(),
                found: data.len(),
            });
        }
        files.insert(path, data);
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
        h[263..265].copy_from_slice(b"00");
        // The checksum counts its own field as spaces.
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
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

    /// A GNU header whose size field is base-256 (high bit set), as GNU tar writes for members of 8 GiB
    /// and more; the value here is small so the test stays small.
    fn base256_member(path: &str, data: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let size = &mut h.as_gnu_mut().unwrap().size;
        size.fill(0);
        size[0] = 0x80;
        size[4..].copy_from_slice(&(data.len() as u64).to_be_bytes());
        h.set_cksum();
        h
    }

    #[test]
    fn pax_paths_and_base256_sizes_are_read() {
        let long = format!("usr/lib/grub/{}/core.efi", "x".repeat(160));
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("usr/lib/grub/placeholder").unwrap();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"pax!!"[..]).unwrap();
        let big = b"base-256 sized member";
        b.append(&base256_member("./usr/share/big.bin", big), &big[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        assert_eq!(tar[512 + 124] & 0x80, 0, "first member is the pax header");

        let files = tar_files(&tar).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [long.as_str(), "usr/share/big.bin"]
        );
        assert_eq!(files[&long], b"pax!!");
        assert_eq!(files["usr/share/big.bin"], big);
    }

    #[test]
    fn gnu_tar_pax_archives_are_read() {
        // GNU tar is an independent writer: a name no ustar header can hold goes into a pax record.
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}.efi", "n".repeat(180));
        std::fs::write(dir.path().join(&long), b"from GNU tar").unwrap();
        let out = std::process::Command::new("tar")
            .args(["--format=pax", "-cf", "-", "-C"])
            .arg(dir.path())
            .arg(&long)
            .output()
            .expect("GNU tar (Debian essential package)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = tar_files(&out.stdout).unwrap();
        assert_eq!(files.len(), 1, "{:?}", files.keys().collect::<Vec<_>>());
        assert_eq!(files[&long], b"from GNU tar");
    }

    #[test]
    fn cut_off_tar_members_are_errors() {
        let mut tar = tar_entry("./usr/lib/x.efi", b'0', &[7u8; 1000]);
        tar.truncate(512 + 600);
        assert!(matches!(
            tar_files(&tar),
            Err(DebReadError::ReadTruncatedMember { ref path, size: 1000, found: 600 }) if path == "usr/lib/x.efi"
        ));
        let mut bad_sum = tar_entry("./a", b'0', b"a");
        bad_sum[148] ^= 1;
        assert!(matches!(tar_files(&bad_sum), Err(DebReadError::ReadTar(_))));
    }
}
