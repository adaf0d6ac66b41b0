//! The offer to open LVM and md read-only, made after the inventory when it found PV labels or md
//! member superblocks: nothing is assembled unless the operator says yes, and then only through the
//! same `md assemble --read-only` / `lvm activate --read-only` lines an operator would type.

use super::*;
use crate::inventory::Inventory;

/// Devices (`/dev/NAME`) whose signature is an md member, and those holding an LVM2 PV label.
pub(super) fn stacked_volumes(inv: &Inventory) -> (Vec<String>, Vec<String>) {
    let (mut md, mut lvm) = (Vec::new(), Vec::new());
    for d in &inv.disks {
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
    let (md, lvm) = stacked_volumes(&inv);
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
