//! Where each examined filesystem was mounted on the examined system, so that logs on a separate
//! `/var` (or `/var/log`) partition are found as `/var/log/...`: the system root's `/etc/fstab` is
//! matched to the other filesystems by the UUID or label in their superblocks (ext2/3/4, XFS,
//! btrfs), read from the read-only device they were mounted from, by the partition's `PARTUUID` or
//! GPT name (`PARTLABEL`), or by a device name (`/dev/sda3`, `/dev/nvme0n1p3`) when `/` itself is named
//! by a device name on the same disk (the examined disk is then that disk; its partition numbers are
//! the same). `/dev/disk/by-id/` and `by-path/` names cannot be matched from the disk alone.
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
    /// The partition holding it: its number on the examined disk, `PARTUUID`, GPT name.
    pub partition: Option<u32>,
    pub part_uuid: Option<String>,
    pub part_label: Option<String>,
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
            ..FsId::default()
        });
    }
    // XFS: "XFSB" at 0, UUID at 32, name (12 bytes) at 108.
    if head.len() >= 120 && &head[0..4] == b"XFSB" {
        return Some(FsId {
            uuid: uuid_string(&head[32..48]),
            label: label_string(&head[108..120]),
            ..FsId::default()
        });
    }
    // btrfs: superblock at 64 KiB, magic at +0x40, fsid at +0x20, label (256 bytes) at +0x12b.
    const B: usize = 0x10000;
    if head.len() >= B + 0x22b && &head[B + 0x40..B + 0x48] == b"_BHRfS_M" {
        return Some(FsId {
            uuid: uuid_string(&head[B + 0x20..B + 0x30]),
            label: label_string(&head[B + 0x12b..B + 0x22b]),
            ..FsId::default()
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

/// The spec fstab mounts at `/` (`UUID=…`, `/dev/sda1`), if any.
pub fn root_spec(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        if l.starts_with('#') {
            return None;
        }
        let mut f = l.split_whitespace();
        let spec = unescape(f.next()?);
        (f.next()? == "/").then_some(spec)
    })
}

/// A partition's device name split into its disk and number: `/dev/sda3` → (`sda`, 3),
/// `/dev/nvme0n1p2` → (`nvme0n1`, 2); `None` for a whole disk or anything else.
pub fn disk_and_number(spec: &str) -> Option<(&str, u32)> {
    let name = spec.strip_prefix("/dev/")?;
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == name.len() {
        return None;
    }
    let (base, num) = name.split_at(name.len() - digits);
    let number = num.parse().ok()?;
    // nvme0n1p2, mmcblk0p1, loop0p1, md0p1: the disk's name ends in a digit, then `p`.
    if let Some(disk) = base.strip_suffix('p')
        && disk.ends_with(|c: char| c.is_ascii_digit())
    {
        return Some((disk, number));
    }
    let classic = ["sd", "vd", "hd", "xvd"].iter().any(|p| {
        base.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase()))
    });
    classic.then_some((base, number))
}

/// The mount point fstab gives the filesystem `id`, with the fstab spec that named it. `root_disk`:
/// the disk fstab's `/` is on when it names `/` by device name (`sda` for `/dev/sda1`), so that a
/// device name of another partition of the same disk can be matched by its number.
pub fn mount_point<'a>(
    entries: &'a [FstabEntry],
    id: &FsId,
    root_disk: Option<&str>,
) -> Option<&'a FstabEntry> {
    entries.iter().find(|e| {
        let spec = e.spec.trim_matches('"');
        let by = |prefix: &str, dir: &str| {
            spec.strip_prefix(prefix)
                .or_else(|| spec.strip_prefix(dir))
                .map(|v| v.trim_matches('"'))
        };
        if let Some(v) = by("UUID=", "/dev/disk/by-uuid/") {
            return id.uuid.as_ref().is_some_and(|u| v.eq_ignore_ascii_case(u));
        }
        if let Some(v) = by("LABEL=", "/dev/disk/by-label/") {
            return id.label.as_ref().is_some_and(|l| v == l);
        }
        if let Some(v) = by("PARTUUID=", "/dev/disk/by-partuuid/") {
            return id
                .part_uuid
                .as_ref()
                .is_some_and(|u| v.eq_ignore_ascii_case(u));
        }
        if let Some(v) = by("PARTLABEL=", "/dev/disk/by-partlabel/") {
            return id.part_label.as_ref().is_some_and(|l| v == l);
        }
        match (disk_and_number(spec), root_disk, id.partition) {
            (Some((disk, n)), Some(root), Some(p)) => disk == root && n == p,
            _ => false,
        }
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
            ..FsId::default()
        };
        assert_eq!(
            mount_point(&e, &id("0a1b2c3d-0000-4000-8000-00000000000b", None), None)
                .unwrap()
                .mount_point,
            "/var"
        );
        assert_eq!(
            mount_point(
                &e,
                &id("ffffffff-0000-4000-8000-00000000000b", Some("logs")),
                None
            )
            .unwrap()
            .mount_point,
            "/var/log"
        );
        assert_eq!(
            mount_point(&e, &id("0a1b2c3d-0000-4000-8000-00000000000c", None), None)
                .unwrap()
                .mount_point,
            "/srv/my data"
        );
        assert!(mount_point(&e, &id("99999999-0000-4000-8000-00000000000c", None), None).is_none());
    }

    #[test]
    fn partuuid_partlabel_and_device_names_match_the_partition() {
        let fstab = "/dev/sda1 / ext4 errors=remount-ro 0 1\n\
            PARTUUID=6c2e8f6a-9a1b-4c55-8d1e-3f0c2b7a9e10 /srv ext4 defaults 0 2\n\
            /dev/disk/by-partlabel/logs /var/log ext4 defaults 0 2\n\
            /dev/sda3 /home ext4 defaults 0 2\n\
            /dev/sdb2 /data ext4 defaults 0 2\n\
            PARTUUID=1234abcd-05 /opt ext4 defaults 0 2\n";
        let e = parse_fstab(fstab);
        assert_eq!(root_spec(fstab).as_deref(), Some("/dev/sda1"));
        let root_disk = disk_and_number("/dev/sda1").map(|d| d.0);
        let part = |n: u32, uuid: &str, label: Option<&str>| FsId {
            uuid: Some("00000000-0000-4000-8000-000000000000".into()),
            partition: Some(n),
            part_uuid: Some(uuid.into()),
            part_label: label.map(str::to_owned),
            ..FsId::default()
        };
        let at = |id: &FsId| mount_point(&e, id, root_disk).map(|m| m.mount_point.as_str());
        assert_eq!(
            at(&part(4, "6C2E8F6A-9A1B-4C55-8D1E-3F0C2B7A9E10", None)),
            Some("/srv")
        );
        assert_eq!(
            at(&part(
                5,
                "aaaaaaaa-0000-4000-8000-000000000000",
                Some("logs")
            )),
            Some("/var/log")
        );
        assert_eq!(
            at(&part(3, "bbbbbbbb-0000-4000-8000-000000000000", None)),
            Some("/home")
        );
        assert_eq!(at(&part(5, "1234abcd-05", None)), Some("/opt"));
        // /dev/sdb2 is another disk than the one holding /: partition 2 of this one is not it.
        assert_eq!(
            at(&part(2, "cccccccc-0000-4000-8000-000000000000", None)),
            None
        );
        // Without a device-named / the disk is unknown: device names match nothing.
        assert_eq!(mount_point(&e, &part(3, "x", None), None), None);
        assert_eq!(disk_and_number("/dev/nvme0n1p3"), Some(("nvme0n1", 3)));
        assert_eq!(disk_and_number("/dev/mmcblk0p2"), Some(("mmcblk0", 2)));
        assert_eq!(disk_and_number("/dev/xvda1"), Some(("xvda", 1)));
        assert_eq!(disk_and_number("/dev/nvme0n1"), None);
        assert_eq!(disk_and_number("/dev/sda"), None);
        assert_eq!(disk_and_number("/dev/mapper/vg-var"), None);
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
