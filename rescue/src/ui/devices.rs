//! `devices`: the disk table for people (fitted to the console's width), one-line JSON for scripts and
//! tests.

use super::table::{Align, Column, Row};
use crate::devices::{self, BlockDevice};

/// Renders the disk list; `json` prints one JSON array on one line.
pub fn run(json: bool) -> anyhow::Result<u8> {
    let list = devices::list()?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
    } else {
        print!("{}", table(&list, super::columns()));
    }
    Ok(0)
}

fn or_dash(s: &Option<String>) -> String {
    s.as_deref().unwrap_or("-").to_owned()
}

const COLUMNS: &[Column] = &[
    Column {
        title: "DEVICE",
        align: Align::Left,
    },
    Column {
        title: "SIZE",
        align: Align::Right,
    },
    Column {
        title: "SECTOR",
        align: Align::Right,
    },
    Column {
        title: "TRANSPORT",
        align: Align::Left,
    },
    Column {
        title: "RO",
        align: Align::Left,
    },
    Column {
        title: "MODEL",
        align: Align::Left,
    },
    Column {
        title: "SERIAL",
        align: Align::Left,
    },
];

fn ro(read_only: bool) -> String {
    if read_only { "yes" } else { "NO" }.to_owned()
}

/// The human-readable table in at most `width` columns, ASCII only for serial consoles: side by side
/// when it fits, else one block per disk (serials and models are never cut).
pub fn table(list: &[BlockDevice], width: usize) -> String {
    if list.is_empty() {
        return "(no disks found)\n".to_owned();
    }
    let mut rows = Vec::new();
    for d in list {
        rows.push(Row::new(vec![
            d.name.clone(),
            devices::human_size(d.size_bytes),
            format!("{}/{}", d.logical_sector_size, d.physical_sector_size),
            d.transport.clone(),
            ro(d.read_only),
            or_dash(&d.model),
            or_dash(&d.serial),
        ]));
        for p in &d.partitions {
            rows.push(Row::sub(vec![
                p.name.clone(),
                devices::human_size(p.size_bytes),
                String::new(),
                String::new(),
                ro(p.read_only),
            ]));
        }
    }
    super::table::render(COLUMNS, &rows, 0, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, model: &str, serial: &str) -> BlockDevice {
        BlockDevice {
            name: name.to_owned(),
            path: format!("/dev/{name}"),
            size_bytes: 2_000_398_934_016,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            model: Some(model.to_owned()),
            serial: Some(serial.to_owned()),
            wwn: None,
            transport: "sata".to_owned(),
            removable: false,
            read_only: true,
            partitions: vec![devices::Partition {
                name: format!("{name}1"),
                path: format!("/dev/{name}1"),
                number: Some(1),
                start_bytes: 1 << 20,
                size_bytes: 1 << 30,
                read_only: true,
            }],
        }
    }

    #[test]
    fn the_table_fits_80_and_40_columns_and_keeps_every_serial_whole() {
        let list = [
            disk("sda", "WDC WD20EFRX-68EUZN0", "WD-WCC4M0ABCDEF"),
            disk(
                "nvme0n1",
                "Samsung SSD 980 PRO with Heatsink 2TB",
                "S6WSNJ0T123456789012",
            ),
        ];
        for width in [80, 40] {
            let t = table(&list, width);
            assert!(super::super::widest(&t) <= width, "{width}:\n{t}");
            for d in &list {
                let serial = d.serial.as_deref().unwrap();
                assert!(
                    t.lines().any(|l| l.split_whitespace().any(|w| w == serial)),
                    "{width}: {serial} whole:\n{t}"
                );
                assert!(t.contains(&format!("{}1", d.name)), "{t}");
            }
        }
        // Short names and serials still make one table with its header.
        let t = table(&[disk("vda", "QEMU", "RESCUE-TEST-0")], 80);
        assert!(t.starts_with("DEVICE "), "{t}");
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.lines().nth(1).unwrap().starts_with("vda "), "{t}");
        assert_eq!(table(&[], 40), "(no disks found)\n");
    }
}
