//! md superblocks made by mdadm 4.2 (in the fixture guest of `tests::storage`, Debian 12's kernel):
//! the 4 KiB superblock of each member of a RAID1 (1.2), RAID5 (1.2), RAID1 (0.90), RAID0 (1.0) and
//! RAID10 (1.1), with the byte offset it was read from and the device size, and what
//! `mdadm --examine` said about it. Then the set checks on those members.

use std::path::PathBuf;

use super::superblock::{self, Version};
use super::*;

/// `(fixture file, device size, superblock offset)`: each file holds the 4 KiB at that offset.
const FIXTURES: &[(&str, u64, u64)] = &[
    ("md-r1-a", 32 << 20, 4096),
    ("md-r1-b", 32 << 20, 4096),
    ("md-r5-a", 32 << 20, 4096),
    ("md-r5-b", 32 << 20, 4096),
    ("md-r5-c", 32 << 20, 4096),
    ("md-090-a", 16 << 20, (16 << 20) - 65536),
    ("md-090-b", 16 << 20, (16 << 20) - 65536),
    ("md-10-a", 16 << 20, (16 << 20) - 8192),
    ("md-10-b", 16 << 20, (16 << 20) - 8192),
    ("md-11-a", 16 << 20, 0),
    ("md-11-b", 16 << 20, 0),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/md/testdata")
        .join(format!("{name}.sb"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A device of `size` bytes that is all zeros but for `sb` at `at`.
fn probe_fixture(name: &str) -> Result<Superblock, SuperblockError> {
    let (_, size, at) = FIXTURES.iter().find(|f| f.0 == name).copied().unwrap();
    let sb = fixture(name);
    superblock::probe(size, |off, buf| {
        buf.fill(0);
        for (i, b) in buf.iter_mut().enumerate() {
            let pos = off + i as u64;
            if pos >= at && pos < at + sb.len() as u64 {
                *b = sb[(pos - at) as usize];
            }
        }
        Ok(buf.len())
    })
}

fn member(name: &str, dev: &str) -> Member {
    Member {
        device: PathBuf::from(dev),
        dev: (252, 0),
        superblock: probe_fixture(name).unwrap(),
    }
}

#[test]
fn every_version_is_found_where_mdadm_put_it() {
    let cases = [
        ("md-r1-a", Version::V12, 1, 2, Some(0)),
        ("md-r1-b", Version::V12, 1, 2, Some(1)),
        ("md-r5-a", Version::V12, 5, 3, Some(0)),
        ("md-r5-c", Version::V12, 5, 3, Some(2)),
        ("md-090-a", Version::V090, 1, 2, Some(0)),
        ("md-090-b", Version::V090, 1, 2, Some(1)),
        ("md-10-b", Version::V10, 0, 2, Some(1)),
        ("md-11-a", Version::V11, 10, 2, Some(0)),
    ];
    for (name, version, level, disks, role) in cases {
        let sb = probe_fixture(name).unwrap();
        assert_eq!(
            (sb.version, sb.level, sb.raid_disks, sb.role),
            (version, level, disks, role),
            "{name}"
        );
        assert!(sb.usable, "{name}");
    }
    let r5 = probe_fixture("md-r5-a").unwrap();
    assert_eq!(r5.chunk_bytes, 64 << 10);
    assert_eq!(r5.name, "fixture:r5");
    // What `mdadm --examine` printed in the guest (guest.log).
    assert_eq!(r5.array_uuid, include_str!("testdata/md-r5.uuid").trim());
    // `Device UUID : ce895698:a0ef66a2:0eb43de7:f4d5ddb7`, `Events : 18` for the first RAID5 member.
    assert_eq!(r5.device_uuid, "ce895698:a0ef66a2:0eb43de7:f4d5ddb7");
    assert_eq!(r5.events, 18);
    let m090 = probe_fixture("md-090-a").unwrap();
    assert_eq!(m090.array_uuid, include_str!("testdata/md-090.uuid").trim());
    // `Data Offset : 2048 sectors` for every 1.1 and 1.2 member; 0.90 and 1.0 start their data at 0.
    for (name, offset) in [
        ("md-r1-a", 2048 * 512),
        ("md-r5-c", 2048 * 512),
        ("md-11-b", 2048 * 512),
        ("md-090-a", 0),
        ("md-10-a", 0),
    ] {
        assert_eq!(
            probe_fixture(name).unwrap().data_offset_bytes,
            offset,
            "{name}"
        );
    }
}

#[test]
fn a_flipped_byte_is_a_checksum_error_not_a_member() {
    for name in ["md-r1-a", "md-090-a"] {
        let mut sb = fixture(name);
        sb[100] ^= 1;
        let v = if name == "md-090-a" {
            Version::V090
        } else {
            Version::V12
        };
        assert!(
            matches!(
                superblock::parse(v, &sb),
                Err(SuperblockError::Checksum { .. })
            ),
            "{name}"
        );
    }
    // Garbage and short reads never panic.
    for v in Version::ALL {
        assert!(superblock::parse(v, &[0xff; 4096]).is_err());
        assert!(superblock::parse(v, &[0; 10]).is_err());
    }
}

#[test]
fn complete_sets_plan_in_role_order() {
    let plans = plan(
        vec![
            member("md-r5-c", "/dev/vdg"),
            member("md-r1-b", "/dev/vdd"),
            member("md-r5-a", "/dev/vde"),
            member("md-r1-a", "/dev/vdc"),
            member("md-r5-b", "/dev/vdf"),
        ],
        false,
    );
    let plans: Vec<ArrayPlan> = plans.into_iter().map(Result::unwrap).collect();
    assert_eq!(plans.len(), 2);
    let r5 = plans.iter().find(|p| p.name == "r5").unwrap();
    assert_eq!(
        r5.members
            .iter()
            .map(|m| m.device.clone())
            .collect::<Vec<_>>(),
        [
            PathBuf::from("/dev/vde"),
            PathBuf::from("/dev/vdf"),
            PathBuf::from("/dev/vdg")
        ]
    );
    assert!(r5.missing_roles.is_empty());
}

#[test]
fn a_missing_member_is_refused_by_role_unless_degraded_is_asked() {
    let set = || vec![member("md-r5-a", "/dev/vde"), member("md-r5-b", "/dev/vdf")];
    let err = plan(set(), false).remove(0).unwrap_err().to_string();
    assert!(err.contains("array r5"), "{err}");
    assert!(
        err.contains("missing member role 2 (device number 3)"),
        "{err}"
    );
    assert!(err.contains("--degraded"), "{err}");
    assert!(err.contains("/dev/vde (role 0"), "{err}");
    let p = plan(set(), true).remove(0).unwrap();
    assert_eq!(p.missing_roles, [2]);
    // RAID5 cannot lose two; RAID0 cannot lose one, even with --degraded.
    let err = plan(vec![member("md-r5-a", "/dev/vde")], true)
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("roles") || err.contains("role 1"), "{err}");
    assert!(plan(vec![member("md-10-a", "/dev/vdj")], true)[0].is_err());
    // 0.90 names the missing member by the device numbers it had.
    let err = plan(vec![member("md-090-a", "/dev/vdh")], false)
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("role 1 (last seen as device "), "{err}");
}

#[test]
fn stale_and_duplicate_members_are_inconsistent() {
    let mut old = member("md-r1-b", "/dev/vdd");
    old.superblock.events -= 5;
    let err = plan(vec![member("md-r1-a", "/dev/vdc"), old.clone()], false)
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inconsistent") && err.contains("/dev/vdd"),
        "{err}"
    );
    let p = plan(vec![member("md-r1-a", "/dev/vdc"), old], true)
        .remove(0)
        .unwrap();
    assert_eq!(p.members.len(), 1);
    assert_eq!(p.missing_roles, [1]);
    let err = plan(
        vec![member("md-r1-a", "/dev/vdc"), member("md-r1-a", "/dev/sdz")],
        false,
    )
    .remove(0)
    .unwrap_err()
    .to_string();
    assert!(err.contains("both claim role 0"), "{err}");
}
