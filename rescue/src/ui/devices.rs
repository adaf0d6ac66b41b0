//! `devices`: the disk table for people, one-line JSON for scripts and tests.

use crate::devices::{self, BlockDevice};

/// Renders the disk list; `json` prints one JSON array on one line.
pub fn run(json: bool) -> anyhow::Result<u8> {
    let list = devices::list()?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
    } else {
        print!("{}", table(&list));
    }
    Ok(0)
}

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// The human-readable table, ASCII only for serial consoles.
pub fn table(list: &[BlockDevice]) -> String {
    let mut out = format!(
        "{:<10} {:>10} {:>9} {:<11} {:<4} {:<20} {}\n",
        "DEVICE", "SIZE", "SECTOR", "TRANSPORT", "RO", "MODEL", "SERIAL"
    );
    for d in list {
        out.push_str(&format!(
            "{:<10} {:>10} {:>9} {:<11} {:<4} {:<20} {}\n",
            d.name,
            devices::human_size(d.size_bytes),
            format!("{}/{}", d.logical_sector_size, d.physical_sector_size),
            d.transport,
            if d.read_only { "yes" } else { "NO" },
            or_dash(&d.model),
            or_dash(&d.serial)
        ));
        for p in &d.partitions {
            out.push_str(&format!(
                "  {:<8} {:>10} {:>9} {:<11} {:<4}\n",
                p.name,
                devices::human_size(p.size_bytes),
                "",
                "",
                if p.read_only { "yes" } else { "NO" }
            ));
        }
    }
    if list.is_empty() {
        out.push_str("(no disks found)\n");
    }
    out
}
