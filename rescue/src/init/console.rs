//! Messages from PID 1 to the kernel console during boot (init's stdout is `/dev/console`). Only init
//! writes here; a console prompt prints through `crate::ui`.

use std::io::Write;

/// An informational line on the console.
pub fn info(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "rescue: {msg}");
    let _ = out.flush();
}

/// A warning line on the console.
pub fn warn(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "rescue: warning: {msg}");
    let _ = out.flush();
}
