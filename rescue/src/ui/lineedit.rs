//! Line input for serial consoles and VTs: Backspace (BS, 0x08) and DEL (0x7f) both erase, because
//! BMC serial-over-LAN clients send either; Ctrl-U clears the line; escape sequences (arrow keys as CSI
//! `ESC [ A` or SS3 `ESC O A`) are ignored rather than inserted; CR LF is one Enter, not an Enter and an
//! empty line. The kernel's line discipline knows only one erase character, so the prompt turns off
//! canonical mode, echo and CR-to-NL translation while a line is typed, and a guard restores them (and
//! the SIGINT disposition) on every return path before a command runs.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

/// What one input byte did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes to echo to the terminal.
    pub echo: Vec<u8>,
    /// A finished line, when the byte was Enter.
    pub line: Option<String>,
}

/// Where the editor is inside an escape sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Esc,
    /// Inside a CSI sequence (`ESC [` … final byte 0x40–0x7e).
    Csi,
    /// After `ESC O` (SS3: the arrow keys of a terminal in application cursor mode): one more byte.
    Ss3,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    buf: Vec<u8>,
    escape: Escape,
    /// The last line ended with CR: an LF right after it is the second half of the same Enter (terminals
    /// and SOL clients that send CR LF), not an empty line.
    after_cr: bool,
}

impl LineEditor {
    /// An editor whose previous line ended with CR when `after_cr` is set (the state [`read_line`] keeps
    /// between calls).
    pub fn continuing(after_cr: bool) -> Self {
        LineEditor {
            after_cr,
            ..LineEditor::default()
        }
    }

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
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match (self.escape, byte) {
            (Escape::Esc, b'[') => {
                self.escape = Escape::Csi;
                return none(Vec::new());
            }
            (Escape::Esc, b'O') => {
                self.escape = Escape::Ss3;
                return none(Vec::new());
            }
            (Escape::Esc | Escape::Ss3, _) => {
                self.escape = Escape::None;
                return none(Vec::new());
            }
            (Escape::Csi, 0x40..=0x7e) => {
                self.escape = Escape::None;
                return none(Vec::new());
            }
            (Escape::Csi, _) => return none(Vec::new()),
            (Escape::None, _) => {}
        }
        match byte {
            b'\n' if after_cr => none(Vec::new()),
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
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
                self.escape = Escape::Esc;
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

    /// Whether the last finished line ended with CR (an LF may still follow).
    pub fn after_cr(&self) -> bool {
        self.after_cr
    }

    /// Drops what was typed (Ctrl-C).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.escape = Escape::None;
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The last line [`read_line`] returned ended with CR and no LF has been seen since.
static AFTER_CR: AtomicBool = AtomicBool::new(false);

/// A byte read while looking for the LF of a CR LF that turned out to be something else: the next
/// [`read_line`] starts with it. `NO_BYTE` when empty.
static CARRIED: AtomicU16 = AtomicU16::new(NO_BYTE);
const NO_BYTE: u16 = 0x100;

/// How long to wait for the LF of a CR LF pair: it follows the CR at once (same packet on SOL, 87 µs at
/// 115200 baud), so this only bounds a wait that normally ends immediately.
const LF_WAIT_MS: u16 = 50;

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Raw-ish terminal mode and a SIGINT handler for the time a line is typed; restores both on drop, on
/// every return path.
pub struct RawGuard<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
    previous: Option<SigAction>,
}

impl<'a> RawGuard<'a> {
    /// Turns off canonical mode, echo and CR-to-NL translation (so CR LF can be told from LF LF) on `fd`
    /// and, with `catch_sigint`, makes Ctrl-C interrupt `read()` instead of being ignored. `None` when
    /// `fd` is no terminal.
    pub fn new(fd: BorrowedFd<'a>, catch_sigint: bool) -> Option<Self> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        raw.input_flags.remove(InputFlags::ICRNL);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &raw);
        let previous = catch_sigint.then(|| {
            // A handler without SA_RESTART makes read() return EINTR.
            let action = SigAction::new(
                SigHandler::Handler(on_interrupt),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { nix::sys::signal::sigaction(Signal::SIGINT, &action) }.ok()
        });
        Some(RawGuard {
            fd,
            saved,
            previous: previous.flatten(),
        })
    }
}

impl Drop for RawGuard<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
        if let Some(previous) = &self.previous {
            // SAFETY: restores the disposition that was in place before the guard was made.
            let _ = unsafe { nix::sys::signal::sigaction(Signal::SIGINT, previous) };
        }
    }
}

/// After an Enter that was CR: takes the LF that a CR LF terminal sends right behind it, so it neither
/// ends the next line empty nor answers the next prompt. Anything else read meanwhile is kept for the
/// next [`read_line`]. Call with the terminal in non-canonical mode without ICRNL.
fn take_lf_after_cr(fd: BorrowedFd<'_>) {
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    if !matches!(nix::poll::poll(&mut fds, LF_WAIT_MS), Ok(n) if n > 0) {
        return;
    }
    let mut byte = [0u8; 1];
    if let Ok(1) = nix::unistd::read(fd, &mut byte) {
        AFTER_CR.store(false, Ordering::SeqCst);
        if byte[0] != b'\n' {
            CARRIED.store(u16::from(byte[0]), Ordering::SeqCst);
        }
    }
}

/// For prompts drawn by another library (dialoguer reads keys raw, so CR is Enter and the LF behind it
/// would be a second Enter): takes a pending LF of a CR LF pair from the terminal on stdin.
pub fn take_pending_lf() {
    let stdin = std::io::stdin();
    let Some(_raw) = RawGuard::new(stdin.as_fd(), false) else {
        return;
    };
    take_lf_after_cr(stdin.as_fd());
}

/// Reads one line from the terminal on stdin with [`LineEditor`], echoing to stdout. Ctrl-C discards the
/// line and prompts again. `None` at end of input. Falls back to plain reading when stdin is no terminal.
pub fn read_line(prompt: &str) -> std::io::Result<Option<String>> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let Some(_raw) = RawGuard::new(stdin.as_fd(), true) else {
        print!("{prompt}");
        out.flush()?;
        let mut line = String::new();
        return Ok(
            (std::io::BufRead::read_line(&mut stdin.lock(), &mut line)? > 0).then_some(line),
        );
    };
    let mut editor = LineEditor::continuing(AFTER_CR.swap(false, Ordering::SeqCst));
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut carried = CARRIED.swap(NO_BYTE, Ordering::SeqCst);
    loop {
        let mut byte = [0u8; 1];
        let got = match u8::try_from(carried) {
            Ok(b) => {
                carried = NO_BYTE;
                byte[0] = b;
                Ok(1)
            }
            Err(_) => nix::unistd::read(stdin.as_fd(), &mut byte),
        };
        match got {
            Ok(0) => return Ok(None),
            Ok(_) => {
                let step = editor.feed(byte[0]);
                out.write_all(&step.echo)?;
                out.flush()?;
                if let Some(line) = step.line {
                    if editor.after_cr() {
                        AFTER_CR.store(true, Ordering::SeqCst);
                        take_lf_after_cr(stdin.as_fd());
                    }
                    return Ok(Some(line));
                }
            }
            Err(nix::errno::Errno::EINTR) => {
                if INTERRUPTED.swap(false, Ordering::SeqCst) {
                    editor.clear();
                    write!(out, "^C\r\n{prompt}")?;
                    out.flush()?;
                }
            }
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
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

    /// Every line a byte stream gives, with one editor kept across lines as `read_line` keeps its state.
    fn lines_of(bytes: &[u8]) -> Vec<String> {
        let mut e = LineEditor::default();
        let mut lines = Vec::new();
        for b in bytes {
            if let Some(l) = e.feed(*b).line {
                lines.push(l);
            }
        }
        lines
    }

    #[test]
    fn cr_lf_is_one_enter() {
        // A SOL client sending CR LF: two commands, not a command, an empty line (which re-prints the
        // menu) and a command.
        assert_eq!(lines_of(b"1\r\ncase show\r\n"), ["1", "case show"]);
        assert_eq!(lines_of(b"a\rb\r"), ["a", "b"]);
        assert_eq!(lines_of(b"a\nb\n"), ["a", "b"]);
        // Two LFs are two Enters; CR CR too.
        assert_eq!(lines_of(b"a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(lines_of(b"a\r\r"), ["a", ""]);
        // The state carries over to the next read_line.
        let mut e = LineEditor::continuing(true);
        assert_eq!(e.feed(b'\n').line, None);
        assert_eq!(e.feed(b'\n').line.as_deref(), Some(""));
        // Only the byte right after the CR is taken as its LF.
        assert_eq!(lines_of(b"a\rx\n"), ["a", "x"]);
    }

    #[test]
    fn ss3_arrow_keys_leave_nothing_behind() {
        assert_eq!(lines_of(b"sta\x1bOAtus\x1bOD\r"), ["status"]);
        assert_eq!(lines_of(b"\x1bOB\x1bOC\x1b[1;5Cls\r"), ["ls"]);
        // ESC followed by an ordinary key drops only that key (Alt-x).
        assert_eq!(lines_of(b"a\x1bxb\r"), ["ab"]);
    }

    #[test]
    fn the_guard_restores_the_terminal_and_sigint() {
        use nix::sys::signal::{SigHandler, Signal};
        let pty = nix::pty::openpty(None, None).unwrap();
        let fd = pty.slave.as_fd();
        let before = termios::tcgetattr(fd).unwrap();
        assert!(before.local_flags.contains(LocalFlags::ICANON));
        // SAFETY: installing SIG_IGN runs no code in signal context; this test restores nothing else.
        let old = unsafe { nix::sys::signal::signal(Signal::SIGINT, SigHandler::SigIgn) }.unwrap();
        let read_a_line = || -> std::io::Result<()> {
            let _raw = RawGuard::new(fd, true).expect("a pty is a terminal");
            let now = termios::tcgetattr(fd).unwrap();
            assert!(!now.local_flags.contains(LocalFlags::ICANON));
            assert!(!now.input_flags.contains(InputFlags::ICRNL));
            // An early error return, as a failed write to the terminal would give.
            Err(std::io::Error::other("write failed"))?;
            Ok(())
        };
        assert!(read_a_line().is_err());
        let after = termios::tcgetattr(fd).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.input_flags, before.input_flags);
        // SAFETY: as above; reads back the disposition the guard restored.
        let now = unsafe { nix::sys::signal::signal(Signal::SIGINT, old) }.unwrap();
        assert_eq!(now, SigHandler::SigIgn, "the SIGINT handler is restored");
    }

    #[test]
    fn multibyte_characters_erase_whole() {
        assert_eq!(
            type_in("naïve\x7f\x7f\x7fx\r".as_bytes()).0.as_deref(),
            Some("nax")
        );
    }
}
