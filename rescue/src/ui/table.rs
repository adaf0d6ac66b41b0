//! Tables and labelled lines that fit the console's width. A table whose columns fit is drawn side by
//! side; one that does not (a long serial, a GPT type GUID, a 40-column console) is drawn as one block
//! per row: the row's first cell, then `title value` pairs packed onto indented lines. Nothing is cut:
//! every value a person may have to type again (a serial, a path) stays whole unless it is wider than a
//! whole line.

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A column: its title (also the label of the value in the block layout) and alignment.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub align: Align,
}

/// One row; `sub` rows (a disk's partitions) are drawn indented under the row before them.
#[derive(Debug, Clone)]
pub struct Row {
    pub cells: Vec<String>,
    pub sub: bool,
}

impl Row {
    pub fn new(cells: Vec<String>) -> Self {
        Row { cells, sub: false }
    }
    pub fn sub(cells: Vec<String>) -> Self {
        Row { cells, sub: true }
    }
}

fn len(s: &str) -> usize {
    s.chars().count()
}

/// `columns` over `rows`, every line at most `width` characters, indented by `indent` spaces. Empty
/// cells are left out of the block layout.
pub fn render(columns: &[Column], rows: &[Row], indent: usize, width: usize) -> String {
    let lead = " ".repeat(indent);
    let mut widths: Vec<usize> = columns.iter().map(|c| len(c.title)).collect();
    for r in rows {
        for (i, cell) in r.cells.iter().enumerate().take(columns.len()) {
            let extra = if i == 0 && r.sub { 2 } else { 0 };
            widths[i] = widths[i].max(len(cell) + extra);
        }
    }
    let line = |cells: &[String], sub: bool| -> String {
        let mut out = lead.clone();
        for (i, c) in columns.iter().enumerate() {
            let mut cell = cells.get(i).cloned().unwrap_or_default();
            if i == 0 && sub {
                cell = format!("  {cell}");
            }
            if i > 0 {
                out.push(' ');
            }
            let pad = " ".repeat(widths[i].saturating_sub(len(&cell)));
            match c.align {
                Align::Left => {
                    out.push_str(&cell);
                    out.push_str(&pad);
                }
                Align::Right => {
                    out.push_str(&pad);
                    out.push_str(&cell);
                }
            }
        }
        out.trim_end().to_owned()
    };
    let titles: Vec<String> = columns.iter().map(|c| c.title.to_owned()).collect();
    let mut lines = vec![line(&titles, false)];
    lines.extend(rows.iter().map(|r| line(&r.cells, r.sub)));
    if lines.iter().all(|l| len(l) <= width) {
        return lines.iter().map(|l| format!("{l}\n")).collect();
    }
    // One block per row.
    let mut out = String::new();
    for r in rows {
        let at = indent + if r.sub { 2 } else { 0 };
        let first = r.cells.first().cloned().unwrap_or_default();
        for l in super::wrap(&format!("{}{first}", " ".repeat(at)), width, 2) {
            out.push_str(&l);
            out.push('\n');
        }
        let items: Vec<String> = columns
            .iter()
            .zip(&r.cells)
            .skip(1)
            .filter(|(_, v)| !v.is_empty())
            .map(|(c, v)| format!("{} {v}", c.title.to_lowercase()))
            .collect();
        for l in pack(&items, at + 2, at + 2, width) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// `items` (each a label and its value) on lines of at most `width` characters, two spaces apart, the
/// first line indented by `first`, the others by `indent`; an item is split only when it is wider than a
/// whole line.
pub fn pack(items: &[String], first: usize, indent: usize, width: usize) -> Vec<String> {
    let indent = indent.min(width / 2);
    let mut lines = Vec::new();
    let mut at = first.min(width / 2);
    let mut cur = String::new();
    for item in items {
        let sep = if cur.is_empty() { 0 } else { 2 };
        if at + len(&cur) + sep + len(item) <= width {
            if sep > 0 {
                cur.push_str("  ");
            }
            cur.push_str(item);
            continue;
        }
        if !cur.is_empty() {
            lines.push(format!("{}{}", " ".repeat(at), std::mem::take(&mut cur)));
            at = indent;
        }
        if at + len(item) <= width {
            cur = item.clone();
            continue;
        }
        // Wider than a line: the label on a line of its own, the value under it at the same indent
        // (a GPT type GUID stays whole on 40 columns), cut only when even that is too narrow.
        let (label, value) = item.split_once(' ').unwrap_or(("", item));
        if !label.is_empty() {
            lines.push(format!("{}{label}", " ".repeat(at)));
        }
        lines.extend(labelled(&" ".repeat(at), value, width));
        at = indent;
    }
    if !cur.is_empty() {
        lines.push(format!("{}{cur}", " ".repeat(at)));
    }
    lines
}

/// `label` followed by `value`, which continues under itself when the line is too long (a digest on
/// a 40-column console): the value is cut where a line ends, never elsewhere.
pub fn labelled(label: &str, value: &str, width: usize) -> Vec<String> {
    let head = len(label);
    let room = width.saturating_sub(head).max(8);
    let chars: Vec<char> = value.chars().collect();
    if chars.is_empty() {
        return vec![label.trim_end().to_owned()];
    }
    chars
        .chunks(room)
        .enumerate()
        .map(|(i, part)| {
            let part: String = part.iter().collect();
            if i == 0 {
                format!("{label}{part}")
            } else {
                format!("{}{part}", " ".repeat(head.min(width.saturating_sub(room))))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[Column] = &[
        Column {
            title: "DEVICE",
            align: Align::Left,
        },
        Column {
            title: "SIZE",
            align: Align::Right,
        },
        Column {
            title: "SERIAL",
            align: Align::Left,
        },
    ];

    #[test]
    fn a_table_that_fits_is_drawn_side_by_side() {
        let rows = [
            Row::new(vec!["sda".into(), "1.0 GiB".into(), "S1".into()]),
            Row::sub(vec!["sda1".into(), "512 MiB".into(), String::new()]),
        ];
        let t = render(COLS, &rows, 0, 80);
        assert_eq!(
            t, "DEVICE    SIZE SERIAL\nsda    1.0 GiB S1\n  sda1 512 MiB\n",
            "{t}"
        );
    }

    #[test]
    fn a_table_too_wide_becomes_blocks_with_every_value_whole() {
        let serial = "WD-WCC4E0123456789AB";
        let rows = [
            Row::new(vec!["nvme0n1".into(), "1.8 TiB".into(), serial.into()]),
            Row::sub(vec!["nvme0n1p1".into(), "512 MiB".into(), String::new()]),
        ];
        let t = render(COLS, &rows, 0, 30);
        assert!(super::super::widest(&t) <= 30, "{t}");
        assert_eq!(
            t,
            format!("nvme0n1\n  size 1.8 TiB\n  serial {serial}\n  nvme0n1p1\n    size 512 MiB\n"),
        );
    }

    #[test]
    fn packing_splits_only_what_is_wider_than_a_line() {
        let items = ["a 1".to_owned(), "b 2".to_owned(), "c 3".to_owned()];
        assert_eq!(pack(&items, 2, 2, 12), ["  a 1  b 2", "  c 3"]);
        assert_eq!(pack(&items, 0, 2, 10), ["a 1  b 2", "  c 3"]);
        let guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        assert_eq!(
            pack(&["start 1".to_owned(), format!("type {guid}")], 4, 4, 40),
            ["    start 1", "    type", &format!("    {guid}")]
        );
        let long = pack(&["x ".to_owned() + &"y".repeat(30)], 2, 2, 20);
        assert!(long.iter().all(|l| len(l) <= 20), "{long:?}");
        assert_eq!(
            long.concat().replace(' ', ""),
            format!("x{}", "y".repeat(30))
        );
    }

    #[test]
    fn a_labelled_digest_continues_under_itself() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            labelled("  sha256  ", &hex, 80),
            [format!("  sha256  {hex}")]
        );
        let lines = labelled("  sha256  ", &hex, 40);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().all(|l| len(l) <= 40), "{lines:?}");
        assert!(lines[1].starts_with("          ") && !lines[1].starts_with("           "));
        assert_eq!(
            lines
                .iter()
                .flat_map(|l| l.split_whitespace())
                .collect::<String>(),
            format!("sha256{hex}")
        );
    }
}
