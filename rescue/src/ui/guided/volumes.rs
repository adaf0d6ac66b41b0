//! The offer to open LVM and md read-only, made after the inventory when it found PV labels or md
//! member superblocks: nothing is assembled unless the operator says yes, and then only through the
//! same `md assemble --read-only` / `lvm activate --read-only` lines an operator would type.

use super::*;
use crate::inventory::DiskInventory;

/// Devices (`/dev/NAME`) whose signature is an md member, and those holding an LVM2 PV label.
pub(super) fn stacked_volumes(disks: &[DiskInventory]) -> (Vec<String>, Vec<String>) {
    let (mut md, mut lvm) = (Vec::new(), Vec::new());
    for d in disks {
        let whole = d
            .signature
            .iter()
            .map(|s| (d.device.name.clone(), s.clone()));
        let parts = d.entries.iter().filter_map(|e| {
            let sig = e.signature.clone()?;
            let name = d
                .device
                .partitions
                .iter()
                .find(|p| p.number == Some(e.number))
                .map(|p| p.name.clone())?;
            Some((name, sig))
        });
        for (name, sig) in whole.chain(parts) {
            if sig.starts_with("linux_raid_member") {
                md.push(format!("/dev/{name}"));
            } else if sig == "lvm2" {
                lvm.push(format!("/dev/{name}"));
            }
        }
    }
    (md, lvm)
}

/// Offers to assemble md and activate LVM read-only when the inventory found either.
pub(super) fn offer(ask: &Ask) -> anyhow::Result<()> {
    let Ok(inv) = crate::inventory::take() else {
        return Ok(());
    };
    let (md, lvm) = stacked_volumes(&inv.disks);
    if md.is_empty() && lvm.is_empty() {
        return Ok(());
    }
    if !md.is_empty() {
        say!("md RAID members: {}", md.join(" "));
    }
    if !lvm.is_empty() {
        say!("LVM physical volumes: {}", lvm.join(" "));
    }
    if !ask.confirm("Activate LVM/md read-only now (no metadata is written)?")? {
        say!("not activated; later: md assemble --read-only, lvm activate --read-only");
        return Ok(());
    }
    if !md.is_empty() {
        run(ask, &["md", "assemble", "--read-only"]);
    }
    // PVs may sit on the arrays just assembled, so LVM is scanned after md even without a PV seen.
    run(ask, &["lvm", "activate", "--read-only"]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Partition;
    use crate::inventory::TableEntry;

    fn disk(name: &str, signature: Option<&str>, parts: &[(u32, &str)]) -> DiskInventory {
        DiskInventory {
            device: BlockDevice {
                name: name.into(),
                path: format!("/dev/{name}"),
                size_bytes: 1 << 30,
                logical_sector_size: 512,
                physical_sector_size: 512,
                model: None,
                serial: None,
                wwn: None,
                transport: "virtio".into(),
                removable: false,
                read_only: true,
                partitions: parts
                    .iter()
                    .map(|(n, _)| Partition {
                        name: format!("{name}{n}"),
                        path: format!("/dev/{name}{n}"),
                        number: Some(*n),
                        start_bytes: 0,
                        size_bytes: 0,
                        read_only: true,
                    })
                    .collect(),
            },
            table: (!parts.is_empty()).then(|| "gpt".into()),
            entries: parts
                .iter()
                .map(|(n, sig)| TableEntry {
                    number: *n,
                    start_bytes: 0,
                    size_bytes: 0,
                    type_id: String::new(),
                    name: None,
                    signature: Some((*sig).into()),
                })
                .collect(),
            signature: signature.map(str::to_owned),
            error: None,
            notes: Vec::new(),
            hidden_areas: Default::default(),
        }
    }

    #[test]
    fn md_members_and_pvs_are_found_on_disks_and_partitions() {
        let disks = [
            disk("vda", Some("lvm2"), &[]),
            disk(
                "sdb",
                None,
                &[(1, "vfat"), (2, "linux_raid_member (md 1.2)"), (3, "lvm2")],
            ),
            disk("sdc", Some("ext4"), &[]),
        ];
        let (md, lvm) = stacked_volumes(&disks);
        assert_eq!(md, ["/dev/sdb2"]);
        assert_eq!(lvm, ["/dev/vda", "/dev/sdb3"]);
        assert_eq!(
            stacked_volumes(&[disk("sdc", Some("ext4"), &[(1, "xfs")])]),
            (vec![], vec![])
        );
    }
}
