//! `unreadable.map` in GNU ddrescue mapfile format, so `ddrescue`/`ddrescuelog` and examiners' habits
//! work on our acquisitions: `+` finished, `-` bad sector (zero-filled in the image), `?` not yet read.

use super::source::Extent;

/// Renders a mapfile for a source of `size` bytes of which `[0, done)` was read, with `bad` extents
/// (sorted, inside `[0, done)`) unreadable.
pub fn render(
    size: u64,
    done: u64,
    bad: &[Extent],
    start_time: &str,
    tool_version: &str,
) -> String {
    let mut out = String::new();
    out.push_str(&format!("# Mapfile. Created by rescue {tool_version}\n"));
    out.push_str(&format!(
        "# Start time:   {}\n",
        start_time.replace('T', " ").trim_end_matches('Z')
    ));
    out.push_str("# current_pos  current_status  current_pass\n");
    let status = if done >= size { '+' } else { '?' };
    out.push_str(&format!(
        "{:#010x}     {status}               1\n",
        done.min(size)
    ));
    out.push_str("#      pos        size  status\n");
    let mut pos = 0;
    let mut line = |offset: u64, length: u64, s: char| {
        if length > 0 {
            out.push_str(&format!("{offset:#010x}  {length:#010x}  {s}\n"));
        }
    };
    for e in bad {
        let start = e.offset.clamp(pos, done);
        let end = e.end().clamp(start, done);
        line(pos, start - pos, '+');
        line(start, end - start, '-');
        pos = end;
    }
    line(pos, done.min(size) - pos.min(done), '+');
    line(done.min(size), size - done.min(size), '?');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(map: &str) -> Vec<(u64, u64, char)> {
        map.lines()
            .filter(|l| !l.starts_with('#'))
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let p = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
                (p(f[0]), p(f[1]), f[2].chars().next().unwrap())
            })
            .collect()
    }

    #[test]
    fn map_tiles_the_source_with_bad_and_untried_areas() {
        let bad = [
            Extent {
                offset: 1024,
                length: 512,
            },
            Extent {
                offset: 4096,
                length: 1024,
            },
        ];
        let map = render(10_000, 8192, &bad, "2024-05-01T13:01:01Z", "0.1.0");
        assert!(
            map.contains("# Start time:   2024-05-01 13:01:01\n"),
            "{map}"
        );
        assert!(map.contains("0x00002000     ?               1\n"), "{map}");
        assert_eq!(
            blocks(&map),
            [
                (0, 1024, '+'),
                (1024, 512, '-'),
                (1536, 2560, '+'),
                (4096, 1024, '-'),
                (5120, 3072, '+'),
                (8192, 1808, '?')
            ]
        );
        let clean = render(4096, 4096, &[], "2024-05-01T13:01:01Z", "0.1.0");
        assert_eq!(blocks(&clean), [(0, 4096, '+')]);
        assert!(clean.contains("0x00001000     +"));
    }
}
