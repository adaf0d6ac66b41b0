//! Where each examined filesystem was mounted on the examined system, so that logs on a separate
//! `/var` (or `/var/log`) partition are found as `/var/log/...`: the system root's `/etc/fstab` is
//! matched to the other filesystems by the UUID or label in their superblocks (ext2/3/4, XFS,
//! btrfs), read from the read-only device they were mounted from.
//!
//! Never: trust a path from the examined fstab to open anything (only its mount points are used, as
//! names), or guess a mount point that fstab does not give.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A filesystem's identity as fstab can name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsId {
    /// `8-4-4-4-12` lowercase hex.
    pub uuid: Option<String>,
    pub label: Option<String>,
}

fn uuid_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&x| x == 0) {
        return None;
    }
    let h = hex::encode(b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn label_string(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The UUID and label of the filesystem in `head` (the first 68 KiB of a device or more).
pub fn fs_id_of(head: &[u8]) -> Option<FsId> {
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +0x38, UUID at +0x68, volume name at +0x78.
    if head.len() >= 2048 && head[1024 + 0x38..1024 + 0x3a] == [0x53, 0xef] {
        return Some(FsId {
            uuid: uuid_string(&head[1024 + 0x68..1024 + 0x78]),
            label: label_string(&head[1024 + 0x78..1024 + 0x88]),
        });
    }
    // XFS: "XFSB" at 0, UUID at 32, name (12 bytes) at 108.
    if head.len() >= 120 && &head[0..4] == b"XFSB" {
        return Some(FsId {
            uuid: uuid_string(&head[32..48]),
            label: label_string(&head[108..120]),
        });
    }
    // btrfs: superblock at 64 KiB, magic at +0x40, fsid at +0x20, label (256 bytes) at +0x12b.
    const B: usize = 0x10000;
    if head.len() >= B + 0x22b && &head[B + 0x40..B + 0x48] == b"_BHRfS_M" {
        return Some(FsId {
            uuid: uuid_string(&head[B + 0x20..B + 0x30]),
            label: label_string(&head[B + 0x12b..B + 0x22b]),
        });
    }
    None
}

/// Reads the identity of the filesystem on `device` (read-only).
pub fn fs_id(device: &Path) -> Option<FsId> {
    let f = File::open(device).ok()?;
    let mut head = vec![0u8; 0x10000 + 4096];
    let mut got = 0;
    while got < head.len() {
        match f.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    head.truncate(got);
    fs_id_of(&head)
}

/// fstab's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One fstab line that mounts a filesystem somewhere below `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// `UUID=…`, `LABEL=…`, `/dev/disk/by-uuid/…`, `/dev/sda3`, ...
    pub spec: String,
    /// `/var`
    pub mount_point: String,
}

/// The entries of an fstab that mount something at an absolute path other than `/` (swap, `none`
/// and comments are left out).
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split_whitespace();
            let spec = unescape(f.next()?);
            let mount_point = unescape(f.next()?);
            let clean = mount_point.trim_end_matches('/');
            (clean.starts_with('/') && !clean.split('/').any(|c| c == ".." || c == ".")).then(
                || FstabEntry {
                    spec,
                    mount_point: clean.to_owned(),
                },
            )
        })
        .collect()
}

/// The mount point fstab gives the filesystem `id`, with the fstab spec that named it.
pub fn mount_point<'a>(entries: &'a [FstabEntry], id: &FsId) -> Option<&'a FstabEntry> {
    entries.iter().find(|e| {
        let spec = e.spec.trim_matches('"');
        let by = |prefix: &str, dir: &str| {
            spec.strip_prefix(prefix)
                .or_else(|| spec.strip_prefix(dir))
                .map(|v| v.trim_matches('"'))
        };
        if let (Some(v), Some(u)) = (by("UUID=", "/dev/disk/by-uuid/"), &id.uuid) {
            return v.eq_ignore_ascii_case(u);
        }
        if let (Some(v), Some(l)) = (by("LABEL=", "/dev/disk/by-label/"), &id.label) {
            return v == l;
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_lines_give_mount_points_and_match_by_uuid_or_label() {
        let fstab = "# /etc/fstab\n\
            UUID=0a1b2c3d-0000-4000-8000-00000000000a / ext4 errors=remount-ro 0 1\n\
            UUID=0A1B2C3D-0000-4000-8000-00000000000B /var ext4 defaults 0 2\n\
            LABEL=logs /var/log xfs defaults 0 2\n\
            /dev/disk/by-uuid/0a1b2c3d-0000-4000-8000-00000000000c /srv/my\\040data ext4 defaults 0 2\n\
            UUID=1234 none swap sw 0 0\n\
            UUID=5678 /../etc ext4 defaults 0 2\n";
        let e = parse_fstab(fstab);
        assert_eq!(e.len(), 3, "{e:#?}");
        let id = |u: &str, l: Option<&str>| FsId {
            uuid: Some(u.to_owned()),
            label: l.map(str::to_owned),
        };
        assert_eq!(
            mount_point(&e, &id("0a1b2c3d-0000-4000-8000-00000000000b", None))
                .unwrap()
                .mount_point,
            "/var"
        );
        assert_eq!(
            mount_point(
                &e,
                &id("ffffffff-0000-4000-8000-00000000000b", Some("logs"))
            )
            .unwrap()
            .mount_point,
            "/var/log"
        );
        assert_eq!(
            mount_point(&e, &id("0a1b2c3d-0000-4000-8000-00000000000c", None))
                .unwrap()
                .mount_point,
            "/srv/my data"
        );
        assert!(mount_point(&e, &id("99999999-0000-4000-8000-00000000000c", None)).is_none());
    }

    /// mke2fs (an independent writer) sets the UUID and label we read back.
    #[test]
    fn ext4_uuid_and_label_from_mke2fs() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("fs.img");
        let o = std::process::Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-F", "-L", "varfs", "-U"])
            .arg("5e1f0c2a-1b2c-4d3e-8f40-123456789abc")
            .arg(&img)
            .arg("8M")
            .output();
        let Ok(o) = o else {
            assert!(
                std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                "mke2fs (package e2fsprogs) is needed"
            );
            return;
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let id = fs_id(&img).unwrap();
        assert_eq!(
            id.uuid.as_deref(),
            Some("5e1f0c2a-1b2c-4d3e-8f40-123456789abc")
        );
        assert_eq!(id.label.as_deref(), Some("varfs"));
        assert_eq!(fs_id_of(&[0u8; 70_000]), None);
        assert_eq!(fs_id_of(&[]), None);
    }
}
