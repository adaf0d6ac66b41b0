//! Line input for serial consoles and VTs: Backspace (BS, 0x08) and DEL (0x7f) both erase, because
//! BMC serial-over-LAN clients send either; Ctrl-U clears the line; escape sequences (arrow keys) are
//! ignored rather than inserted. The kernel's line discipline knows only one erase character, so the
//! prompt turns off canonical mode and echo while a line is typed, and restores them before a command runs.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices};

/// What one input byte did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes to echo to the terminal.
    pub echo: Vec<u8>,
    /// A finished line, when the byte was Enter.
    pub line: Option<String>,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    buf: Vec<u8>,
    /// 0: normal; 1: after ESC; 2: inside a CSI sequence (ESC [ … final byte).
    escape: u8,
}

impl LineEditor {
    fn erase_one(&mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            return Vec::new();
        }
        // Remove a whole UTF-8 character: continuation bytes are 0b10xxxxxx.
        while let Some(b) = self.buf.pop() {
            if b & 0xc0 != 0x80 {
                break;
            }
        }
        b"\x08 \x08".to_vec()
    }

    /// Feeds one byte.
    pub fn feed(&mut self, byte: u8) -> Step {
        let none = |echo: Vec<u8>| Step { echo, line: None };
        match (self.escape, byte) {
            (1, b'[') => {
                self.escape = 2;
                return none(Vec::new());
            }
            (1, _) => {
                self.escape = 0;
                return none(Vec::new());
            }
            (2, 0x40..=0x7e) => {
                self.escape = 0;
                return none(Vec::new());
            }
            (2, _) => return none(Vec::new()),
            _ => {}
        }
        match byte {
            b'\r' | b'\n' => {
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                Step {
                    echo: b"\r\n".to_vec(),
                    line: Some(line),
                }
            }
            0x08 | 0x7f => none(self.erase_one()),
            0x15 => {
                let mut echo = Vec::new();
                while !self.buf.is_empty() {
                    echo.extend(self.erase_one());
                }
                none(echo)
            }
            0x1b => {
                self.escape = 1;
                none(Vec::new())
            }
            b'\t' => {
                self.buf.push(b' ');
                none(b" ".to_vec())
            }
            0x00..=0x1f => none(Vec::new()),
            _ => {
                self.buf.push(byte);
                none(vec![byte])
            }
        }
    }

    /// Drops what was typed (Ctrl-C).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.escape = 0;
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Reads one line from the terminal on stdin with [`LineEditor`], echoing to stdout. Ctrl-C discards the
/// line and prompts again. `None` at end of input. Falls back to plain reading when stdin is no terminal.
pub fn read_line(prompt: &str) -> std::io::Result<Option<String>> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
        print!("{prompt}");
        out.flush()?;
        let mut line = String::new();
        return Ok(
            (std::io::BufRead::read_line(&mut stdin.lock(), &mut line)? > 0).then_some(line),
        );
    };
    let mut raw = saved.clone();
    raw.local_flags
        .remove(LocalFlags::ICANON | LocalFlags::ECHO);
    raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
    // Ctrl-C while typing: a handler without SA_RESTART makes read() return EINTR.
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_interrupt),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous =
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action) };
    let mut editor = LineEditor::default();
    write!(out, "{prompt}")?;
    out.flush()?;
    let result = loop {
        let mut byte = [0u8; 1];
        match nix::unistd::read(stdin.as_fd(), &mut byte) {
            Ok(0) => break Ok(None),
            Ok(_) => {
                let step = editor.feed(byte[0]);
                out.write_all(&step.echo)?;
                out.flush()?;
                if let Some(line) = step.line {
                    break Ok(Some(line));
                }
            }
            Err(nix::errno::Errno::EINTR) => {
                if INTERRUPTED.swap(false, Ordering::SeqCst) {
                    editor.clear();
                    write!(out, "^C\r\n{prompt}")?;
                    out.flush()?;
                }
            }
            Err(e) => break Err(std::io::Error::from(e)),
        }
    };
    let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    if let Ok(previous) = previous {
        // SAFETY: restores the disposition that was in place before this call.
        let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &previous) };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_in(bytes: &[u8]) -> (Option<String>, Vec<u8>) {
        let mut e = LineEditor::default();
        let mut echo = Vec::new();
        for b in bytes {
            let s = e.feed(*b);
            echo.extend(s.echo);
            if s.line.is_some() {
                return (s.line, echo);
            }
        }
        (None, echo)
    }

    #[test]
    fn backspace_and_delete_both_erase() {
        assert_eq!(
            type_in(b"devx\x7f\x7fvices\r").0.as_deref(),
            Some("devices")
        );
        assert_eq!(
            type_in(b"devx\x7f\x08vices\r").0.as_deref(),
            Some("devices")
        );
        assert_eq!(
            type_in(b"dev\x08\x08\x08\x08\x08ls\n").0.as_deref(),
            Some("ls")
        );
    }

    #[test]
    fn erase_echoes_backspace_space_backspace() {
        let (_, echo) = type_in(b"ab\x7f\r");
        assert_eq!(echo, b"ab\x08 \x08\r\n");
    }

    #[test]
    fn ctrl_u_clears_and_arrow_keys_are_ignored() {
        assert_eq!(type_in(b"rm -rf\x15status\r").0.as_deref(), Some("status"));
        assert_eq!(
            type_in(b"sta\x1b[Atus\x1b[D\r").0.as_deref(),
            Some("status")
        );
        assert_eq!(type_in(b"a\x07b\r").0.as_deref(), Some("ab"));
    }

    #[test]
    fn multibyte_characters_erase_whole() {
        assert_eq!(
            type_in("naïve\x7f\x7f\x7fx\r".as_bytes()).0.as_deref(),
            Some("nax")
        );
    }
}
