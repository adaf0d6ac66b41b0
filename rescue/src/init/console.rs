//! Messages from PID 1 to the kernel console during boot (init's stdout is `/dev/console`), word-wrapped
//! to the console's width. Only init writes here; a console prompt prints through `crate::ui`.

use std::io::Write;

/// `rescue: {msg}` (or `rescue: warning: {msg}`) fitted to `width` columns, continuation lines indented.
pub fn message_lines(prefix: &str, msg: &str, width: usize) -> String {
    format!("{prefix}{msg}")
        .lines()
        .flat_map(|line| crate::ui::wrap(line, width, 4))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

fn emit(prefix: &str, msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(message_lines(prefix, msg, crate::ui::columns()).as_bytes());
    let _ = out.flush();
}

/// An informational line on the console.
pub fn info(msg: &str) {
    emit("rescue: ", msg);
}

/// A warning line on the console.
pub fn warn(msg: &str) {
    emit("rescue: warning: ", msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_messages_fit_80_and_40_columns() {
        let msg = "Ctrl-Alt-Del ignored: type 'poweroff' or 'reboot' at the prompt";
        for width in [80, 40] {
            let text = message_lines("rescue: warning: ", msg, width);
            assert!(crate::ui::widest(&text) <= width, "{width}:\n{text}");
            assert!(text.starts_with("rescue: warning: "), "{text}");
            assert_eq!(
                text.split_whitespace().collect::<Vec<_>>().join(" "),
                format!("rescue: warning: {msg}")
            );
        }
        assert_eq!(
            message_lines("rescue: ", "syncing disks and powering off", 80),
            "rescue: syncing disks and powering off\n"
        );
    }
}
