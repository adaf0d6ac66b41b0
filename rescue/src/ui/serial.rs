//! Serial-console fitness: a serial line reports its window as 0x0 and sends no SIGWINCH, so at console
//! start-up the terminal at the other end is asked for its size (cursor to 999;999, then a cursor
//! position report) with a short timeout, falling back to 80x24; the answer is stored with `TIOCSWINSZ`
//! so dialoguer and indicatif lay out for the real width.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices};

/// Size assumed when the terminal does not answer.
pub const FALLBACK: (u16, u16) = (24, 80);

/// Parses a cursor position report `ESC [ row ; col R` anywhere in `bytes`.
pub fn parse_position_report(bytes: &[u8]) -> Option<(u16, u16)> {
    let start = bytes.windows(2).position(|w| w == b"\x1b[")?;
    let rest = &bytes[start + 2..];
    let end = rest.iter().position(|&b| b == b'R')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let (r, c) = text.split_once(';')?;
    let (rows, cols) = (r.parse().ok()?, c.parse().ok()?);
    (rows > 0 && cols > 0).then_some((rows, cols))
}

fn window_size(fd: i32) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; fd is open.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

fn set_window_size(fd: i32, (rows, cols): (u16, u16)) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the struct we pass; fd is open.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Asks the terminal on stdin/stdout for its size when the kernel does not know it; returns the size
/// now in effect.
pub fn probe_window_size(timeout: Duration) -> (u16, u16) {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd().as_raw_fd();
    if let Some(size) = window_size(fd) {
        return size;
    }
    let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
        return FALLBACK;
    };
    let mut raw = saved.clone();
    raw.local_flags
        .remove(LocalFlags::ICANON | LocalFlags::ECHO);
    // Non-blocking-ish reads: return after 0.1 s without input.
    raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
    raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 1;
    let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
    let mut out = std::io::stdout();
    // Save cursor, go far bottom-right (clamped by the terminal), report position, restore cursor.
    let _ = out.write_all(b"\x1b7\x1b[999;999H\x1b[6n\x1b8");
    let _ = out.flush();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut size = None;
    while Instant::now() < deadline && size.is_none() {
        let mut buf = [0u8; 32];
        if let Ok(n) = nix::unistd::read(stdin.as_fd(), &mut buf)
            && n > 0
        {
            got.extend_from_slice(&buf[..n]);
            size = parse_position_report(&got);
        }
    }
    let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    let size = size.unwrap_or(FALLBACK);
    set_window_size(fd, size);
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_position_reports_parse() {
        assert_eq!(parse_position_report(b"\x1b[50;132R"), Some((50, 132)));
        assert_eq!(parse_position_report(b"xy\x1b[24;80Rzz"), Some((24, 80)));
        assert_eq!(parse_position_report(b"\x1b[24;80"), None);
        assert_eq!(parse_position_report(b"\x1b[0;0R"), None);
        assert_eq!(parse_position_report(b""), None);
    }
}
