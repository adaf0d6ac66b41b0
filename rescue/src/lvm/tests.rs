//! LVM on bytes lvm2 2.03.16 wrote (the fixture guest of `tests::storage`, Debian 12): the first MiB of
//! both PVs of VG `forensic-vg` (label, metadata area with every metadata version lvm2 wrote), with the
//! values `pvs`, `vgs` and `lvs` reported for them in the guest; then refusals on hand-written metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::label::{self, Area, RawLocation};
use super::*;

/// The first MiB of a fixture PV (zstd-compressed in testdata/).
fn head(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/lvm/testdata")
        .join(format!("{name}.head.zst"));
    let z = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    zstd::decode_all(&z[..]).unwrap()
}

/// Label, newest metadata text and VG of an in-memory PV head.
fn vg_of(head: &[u8]) -> (label::PvLabel, vg::VolumeGroup) {
    let lbl = label::parse_label(&head[..2048]).unwrap();
    let area = lbl.metadata_areas[0];
    let hdr = &head[area.offset as usize..area.offset as usize + 512];
    let raw = label::parse_mda_header(area, hdr).unwrap().unwrap();
    let text = label::read_text(area, raw, |off, buf| {
        buf.copy_from_slice(&head[off as usize..off as usize + buf.len()]);
        Ok(())
    })
    .unwrap();
    let top = text::parse(&text).unwrap();
    (lbl, vg::from_metadata(&top).unwrap())
}

fn pv_device(name: &str, dev: (u32, u32)) -> PvDevice {
    let h = head(name);
    let (label, vg) = vg_of(&h);
    PvDevice {
        device: PathBuf::from(format!("/dev/{name}")),
        dev,
        label,
        vg: Some(vg),
    }
}

#[test]
fn labels_and_metadata_read_as_lvm2_reports_them() {
    let (l0, vg) = vg_of(&head("pv0"));
    let (l1, vg1) = vg_of(&head("pv1"));
    // `pvs -o pv_uuid,pe_start` and `vgs -o vg_uuid,seqno,vg_extent_size` in the guest (testdata/lvm.txt).
    let facts = include_str!("testdata/lvm.txt");
    assert!(facts.contains(&label::dashed(&l0.pv_uuid)), "{facts}");
    assert!(facts.contains(&label::dashed(&l1.pv_uuid)), "{facts}");
    assert_eq!(l0.sector, 1);
    assert_eq!(l0.device_size, 200 << 20);
    assert_eq!(l0.data_areas[0].offset, 1 << 20);
    assert_eq!(l0.metadata_areas[0].offset, 4096);
    assert_eq!(vg, vg1, "both PVs hold the same newest metadata");
    assert_eq!(vg.name, "forensic-vg");
    assert!(facts.contains(&vg.id), "{facts}");
    let vgs: Vec<Vec<&str>> = facts
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        vgs.iter().any(|w| w.len() >= 3
            && w[0] == "forensic-vg"
            && w[1] == vg.id
            && w[2] == vg.seqno.to_string()),
        "seqno {} not what vgs said:\n{facts}",
        vg.seqno
    );
    let lv_ids: Vec<&str> = vg.lvs.iter().map(|l| l.id.as_str()).collect();
    for id in lv_ids {
        assert!(facts.contains(id), "{id}");
    }
    assert_eq!(vg.extent_size_sectors, 8192);
    let names: Vec<&str> = vg.lvs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["root", "data-striped"]);
}

#[test]
fn tables_follow_the_extents_lvs_reported() {
    let found = [pv_device("pv0", (254, 0)), pv_device("pv1", (254, 16))];
    let mut plans = plan(&found);
    let p = plans.remove(0).unwrap();
    let devs: BTreeMap<String, String> = p
        .pvs
        .iter()
        .map(|(k, (_, d))| (k.clone(), d.clone()))
        .collect();
    let v = &p.vg;
    let t = |lv: &str| -> Vec<(u64, u64, &'static str, String)> {
        let lv = v.lvs.iter().find(|l| l.name == lv).unwrap();
        vg::table(v, lv, &devs)
            .unwrap()
            .into_iter()
            .map(|t| (t.start, t.length, t.kind, t.params))
            .collect()
    };
    // lvs: root linear /dev/vda:0-7 /dev/vda:48-48 /dev/vdb:40-40; data-striped striped 2 64k
    // /dev/vda:8-47 /dev/vdb:0-39; pe_start 1 MiB (2048 sectors), extents 4 MiB (8192 sectors).
    assert_eq!(
        t("root"),
        [
            (0, 65536, "linear", "254:0 2048".to_owned()),
            (65536, 8192, "linear", format!("254:0 {}", 2048 + 48 * 8192)),
            (
                73728,
                8192,
                "linear",
                format!("254:16 {}", 2048 + 40 * 8192)
            ),
        ]
    );
    assert_eq!(
        t("data-striped"),
        [(
            0,
            655360,
            "striped",
            format!("2 128 254:0 {} 254:16 2048", 2048 + 8 * 8192)
        )]
    );
    assert_eq!(
        vg::dm_name("forensic-vg", "data-striped"),
        "forensic--vg-data--striped"
    );
    let lv = &v.lvs[0];
    let uuid = vg::dm_uuid(&v.id, &lv.id);
    assert!(uuid.starts_with("LVM-") && uuid.len() == 4 + 64 && !uuid[4..].contains('-'));
}

#[test]
fn a_missing_pv_refuses_the_vg_naming_its_uuid() {
    let pv1 = pv_device("pv1", (254, 16));
    let missing_uuid = label::dashed(&pv1.label.pv_uuid);
    let err = plan(&[pv_device("pv0", (254, 0))])
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VG forensic-vg is missing PV") && err.contains(&missing_uuid),
        "{err}"
    );
    assert!(err.contains("pv1, last seen as /dev/vdb"), "{err}");
    // The same PV on two devices (a disk and its clone) is refused too.
    let mut clone = pv_device("pv0", (7, 0));
    clone.device = PathBuf::from("/dev/loop0");
    let err = plan(&[pv_device("pv0", (254, 0)), clone, pv1])
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/dev/pv0 and /dev/loop0"), "{err}");
}

#[test]
fn corrupt_labels_and_headers_are_errors() {
    let mut h = head("pv0");
    h[512 + 100] ^= 1;
    assert!(matches!(
        label::parse_label(&h[..2048]),
        Err(label::LabelError::Malformed(_))
    ));
    let mut h = head("pv0");
    h[4096 + 30] ^= 1;
    let area = label::parse_label(&h[..2048]).unwrap().metadata_areas[0];
    assert!(label::parse_mda_header(area, &h[4096..4608]).is_err());
    assert_eq!(
        label::parse_label(&[0u8; 2048]),
        Err(label::LabelError::NotFound)
    );
    assert!(label::parse_label(&[0u8; 100]).is_err());
}

#[test]
fn metadata_text_wrapping_the_circular_buffer_is_joined() {
    let text = b"vg { id = \"x\" seqno = 3 extent_size = 8 }\n\0";
    let area = Area {
        offset: 8192,
        size: 1024,
    };
    let mut disk = vec![0u8; 8192 + 1024];
    // The text starts 20 bytes before the end of the area and continues after the 512-byte header.
    let start = 1024 - 20;
    disk[8192 + start..8192 + 1024].copy_from_slice(&text[..20]);
    disk[8192 + 512..8192 + 512 + text.len() - 20].copy_from_slice(&text[20..]);
    let raw = RawLocation {
        offset: start as u64,
        size: text.len() as u64,
        checksum: label::crc(0xf597_a6cf, text),
    };
    let got = label::read_text(area, raw, |off, buf| {
        buf.copy_from_slice(&disk[off as usize..off as usize + buf.len()]);
        Ok(())
    })
    .unwrap();
    assert_eq!(got.as_bytes(), &text[..text.len() - 1]);
    let bad = RawLocation {
        checksum: raw.checksum ^ 1,
        ..raw
    };
    assert!(label::read_text(area, bad, |_, _| Ok(())).is_err());
}

const OTHER_TYPES: &str = r#"
vg1 {
id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
seqno = 9
extent_size = 8192
physical_volumes {
pv0 { id = "bbbbbb-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb" device = "/dev/sda2" pe_start = 2048 pe_count = 100 }
}
logical_volumes {
pool { id = "p" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "thin-pool" metadata = "pool_tmeta" pool = "pool_tdata" } }
thin1 { id = "t" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "thin" thin_pool = "pool" device_id = 1 } }
r { id = "r" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "raid1" device_count = 2 } }
c { id = "c" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "cache" } }
m { id = "m" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "mirror" } }
origin { id = "o" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
snap { id = "s" status = ["READ", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 10] } }
snapshot0 { id = "s0" status = ["READ"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 10 type = "snapshot" chunk_size = 8 origin = "origin" cow_store = "snap" } }
gap { id = "g" status = ["READ", "VISIBLE"] segment_count = 2
  segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 20] }
  segment2 { start_extent = 5 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 30] } }
big { id = "b" status = ["READ", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 99] } }
}
}
"#;

#[test]
fn thin_cache_raid_mirror_and_snapshots_are_refused_by_name() {
    let v = vg::from_metadata(&text::parse(OTHER_TYPES).unwrap()).unwrap();
    let devs = BTreeMap::from([("pv0".to_owned(), "8:2".to_owned())]);
    let why = |name: &str| {
        let lv = v.lvs.iter().find(|l| l.name == name).unwrap();
        vg::table(&v, lv, &devs).err().unwrap_or_default()
    };
    assert!(why("pool").contains("thin volume or pool (segment type thin-pool)"));
    assert!(why("thin1").contains("thin volume or pool (segment type thin)"));
    assert!(why("r").contains("LVM RAID volume (segment type raid1)"));
    assert!(why("c").contains("cached volume"));
    assert!(why("m").contains("LVM mirror"));
    assert!(why("snap").contains("a snapshot of origin"));
    assert!(why("gap").contains("gap at extent 2"));
    assert!(why("big").contains("runs past the 100 extents"));
    // The origin of a snapshot is an ordinary linear volume.
    assert_eq!(why("origin"), "");
    let hidden: Vec<&str> = v
        .lvs
        .iter()
        .filter(|l| !l.visible)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(hidden, ["snapshot0"]);
}
