//! Everything that knows a terminal exists: rendering command results, progress, errors, the banner and
//! the line-mode prompt. Other modules return values; this module decides how a person sees them.

pub mod acquire;
pub mod case;
pub mod caselog;
pub mod devices;
pub mod guided;
pub mod lineedit;
pub mod live;
pub mod mount;
pub mod net;
pub mod prompt;
pub mod reinstall;
pub mod remote;
pub mod report;
pub mod restore;
pub mod selftest;
pub mod serial;
pub mod status;
pub mod storage;
pub mod table;
pub mod timeline;
pub mod triage;

pub use crate::error_chain;

/// Prints `error: …` with the whole cause chain to stderr. On a console (stderr is a terminal: the
/// serial line, the VGA console, an SSH session) the message is word-wrapped to the console's width,
/// continuation lines aligned under the message; into a pipe or a log it stays one line that
/// `grep error:` finds whole.
pub fn print_error(err: &anyhow::Error) {
    print_labelled("error", &error_chain(err.as_ref()));
}

/// Prints `LABEL: text` on stderr (`error`, `refused`, `warning`) the way [`print_error`] does: wrapped
/// on a console, one line into a pipe or a log.
pub fn print_labelled(label: &str, text: &str) {
    use std::io::IsTerminal;
    let console = std::io::stderr().is_terminal();
    eprint!("{}", labelled_text(label, text, console.then(columns)));
}

/// The text [`print_labelled`] prints: one `LABEL: …` line, or with `width` the same words wrapped to
/// it, continuation lines aligned after `LABEL: `.
fn labelled_text(label: &str, text: &str, width: Option<usize>) -> String {
    let text = format!("{label}: {text}");
    let Some(width) = width else {
        return format!("{text}\n");
    };
    let mut out = String::new();
    for line in text.lines() {
        for l in wrap(line, width, label.len() + 2) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Prints `text` on stdout, word-wrapped to the console's width (a path, a key or a digest stays whole
/// unless it is wider than a line).
pub fn say(text: &str) {
    print!("{}", wrap_text(text, columns()));
}

/// `println!` for a person: the text word-wrapped to the console's width (see [`say`]). Machine
/// output (JSON lines) keeps `println!`.
macro_rules! sayln {
    ($($arg:tt)*) => {
        $crate::ui::say(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use sayln;

/// `eprintln!` for a person: notes, progress and warnings on stderr, word-wrapped like [`say`].
macro_rules! esayln {
    ($($arg:tt)*) => {
        eprint!(
            "{}",
            $crate::ui::wrap_text(&format!("{}", format_args!($($arg)*)), $crate::ui::columns())
        )
    };
}
pub(crate) use esayln;

/// Columns assumed when the terminal does not say (a serial line that did not answer the size probe).
pub const FALLBACK_COLUMNS: usize = 80;

/// The width of the terminal on stdout (stderr when stdout is no terminal), else `COLUMNS`, else
/// [`FALLBACK_COLUMNS`].
pub fn columns() -> usize {
    use std::os::fd::AsRawFd;
    for fd in [std::io::stdout().as_raw_fd(), std::io::stderr().as_raw_fd()] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; fd is open.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    columns_from_env(std::env::var("COLUMNS").ok().as_deref())
}

/// Without a terminal: `COLUMNS` when it holds a usable width (a script or a log that wants
/// narrower lines), else [`FALLBACK_COLUMNS`].
fn columns_from_env(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|w| (20..=1000).contains(w))
        .unwrap_or(FALLBACK_COLUMNS)
}

/// Word-wraps one line to `width` columns: continuation lines start with the line's own indentation plus
/// `hang` spaces; a word longer than a line is cut. Every returned line is at most `width` characters.
pub fn wrap(line: &str, width: usize, hang: usize) -> Vec<String> {
    let width = width.max(8);
    if line.chars().count() <= width {
        // Fits: keep the spacing (table columns) as it is.
        return vec![line.to_owned()];
    }
    let lead = line.len() - line.trim_start_matches(' ').len();
    let indent = " ".repeat((lead + hang).min(width / 2));
    let mut out = Vec::new();
    let mut cur = " ".repeat(lead.min(width / 2));
    let mut cur_len = cur.chars().count();
    let mut fresh = true;
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let sep = usize::from(!fresh);
            if cur_len + sep + word.len() <= width {
                if !fresh {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                cur_len += sep + word.len();
                fresh = false;
                break;
            }
            if !fresh {
                out.push(std::mem::replace(&mut cur, indent.clone()));
                cur_len = indent.len();
                fresh = true;
                continue;
            }
            // A word wider than a whole line: cut it.
            let room = width - cur_len;
            cur.extend(word.drain(..room));
            out.push(std::mem::replace(&mut cur, indent.clone()));
            cur_len = indent.len();
        }
    }
    if !fresh || out.is_empty() {
        out.push(cur);
    }
    out
}

/// [`wrap`] applied to every line of `text` (continuation lines hang by 2), newline-terminated.
pub fn wrap_text(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        for l in wrap(line, width, 2) {
            out.push_str(l.trim_end());
            out.push('\n');
        }
    }
    out
}

/// `text` cut to `width` characters, the cut marked with `..`.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let keep = width.saturating_sub(2);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&"..".chars().take(width - keep).collect::<String>());
    out
}

/// The widest line of `text`, in characters.
pub fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_columns_comes_from_the_environment_when_usable() {
        assert_eq!(columns_from_env(Some("40")), 40);
        assert_eq!(columns_from_env(Some(" 132\n")), 132);
        assert_eq!(columns_from_env(None), FALLBACK_COLUMNS);
        for bad in ["", "wide", "0", "5", "-40", "100000"] {
            assert_eq!(columns_from_env(Some(bad)), FALLBACK_COLUMNS, "{bad:?}");
        }
    }

    #[test]
    fn wrapping_keeps_every_word_and_every_line_within_the_width() {
        let line = " self-check: boot medium /dev/sda (FAT RESCUE): OK, 12 files match build 0123456789abcdef0123456789abcdef";
        for width in [80, 40, 20] {
            let lines = wrap(line, width, 2);
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{width}: {lines:?}"
            );
            let words: Vec<String> = lines
                .iter()
                .flat_map(|l| l.split_whitespace())
                .map(str::to_owned)
                .collect();
            assert_eq!(
                words.concat(),
                line.split_whitespace().collect::<String>(),
                "{width}"
            );
        }
        assert_eq!(wrap("  a    b", 80, 2), ["  a    b"]);
        assert_eq!(wrap("aaaa bbbb", 8, 2), ["aaaa", "  bbbb"]);
        assert_eq!(wrap("", 80, 2), [""]);
        assert_eq!(truncate("abcdef", 4), "ab..");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn an_error_fits_the_console_and_stays_one_line_in_a_pipe() {
        let err = anyhow::anyhow!(
            "/dev/vdc is the rescue boot medium and cannot be an evidence destination"
        )
        .context("unlock /dev/vdc");
        let error_text = |width| labelled_text("error", &error_chain(err.as_ref()), width);
        let one = error_text(None);
        assert_eq!(
            one,
            "error: unlock /dev/vdc: /dev/vdc is the rescue boot medium and cannot be an evidence destination\n"
        );
        for width in [80, 40] {
            let t = error_text(Some(width));
            let lines: Vec<&str> = t.lines().collect();
            assert!(lines.len() > 1, "{width}: {t:?}");
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{width}: {t:?}"
            );
            assert!(
                lines[1..]
                    .iter()
                    .all(|l| l.starts_with("       ") && !l.starts_with("        "))
            );
            assert_eq!(
                t.split_whitespace().collect::<Vec<_>>(),
                one.split_whitespace().collect::<Vec<_>>(),
                "{width}: every word, in order"
            );
        }
    }
}
