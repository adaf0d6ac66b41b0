//! The line-mode `rescue> ` prompt on one console: attaches the terminal, prints the banner and runs
//! every CLI command typed at it.

use std::os::fd::AsRawFd;
use std::path::Path;

use clap::CommandFactory;

use crate::args::{self, Command};
use crate::system::{AUTO_ENV, RUN_ENV, SHELL_ENV};

/// Runs one parsed command and returns its exit status. The caller hands in the dispatcher
/// (`cli::run`), so the prompt depends only on the grammar, not on what runs it.
pub type Executor = fn(Command) -> u8;

fn attach_tty(tty: &Path) -> anyhow::Result<()> {
    let _ = nix::unistd::setsid();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tty)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", tty.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: TIOCSCTTY takes an int argument by value; fd is open for the duration of the call.
    unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    nix::unistd::dup2_stdin(&file)?;
    nix::unistd::dup2_stdout(&file)?;
    nix::unistd::dup2_stderr(&file)?;
    Ok(())
}

/// Names and one-line descriptions of the prompt's commands, fitted to `width` columns (descriptions
/// wrap under their column).
pub fn help_text(width: usize) -> String {
    let mut lines = vec!["commands:".to_owned()];
    for sub in args::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
    {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        lines.push(format!("  {:<12} {about}", sub.get_name()));
    }
    lines.push("  help         this list; 'COMMAND --help' for details".to_owned());
    lines.push(
        "  1 .. 7       a guided step; 'shell' shows the guided menu, 'line' hides it".to_owned(),
    );
    let mut out = String::new();
    for line in lines {
        for l in super::wrap(&line, width, 13) {
            out.push_str(l.trim_end());
            out.push('\n');
        }
    }
    out
}

pub fn run_console(tty: &Path, exec: Executor) -> anyhow::Result<u8> {
    // Init blocks the signals it waits for, and a spawned child may inherit that mask: unblock them so
    // SIGTERM at power-off ends this process at once.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    // Ctrl-C, Ctrl-\ and Ctrl-Z at the prompt must not kill or stop the console (a long-running command
    // installs its own SIGINT handler to stop cleanly).
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGQUIT,
        nix::sys::signal::Signal::SIGTSTP,
    ] {
        // SAFETY: installing SIG_IGN runs no code in signal context.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) };
    }
    attach_tty(tty)?;
    let name = tty
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: this process has started no other thread yet, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var(
            "TERM",
            if name.starts_with("ttyS") {
                "vt220"
            } else {
                "linux"
            },
        );
        std::env::set_var("RESCUE_CONSOLE", &name);
    }
    if name.starts_with("ttyS") {
        super::serial::probe_window_size(std::time::Duration::from_millis(500));
    }
    print!("{}", super::status::banner(&name, super::columns()));
    // Unattended mode: init hands the primary console the `rescue.auto=` command list from the kernel
    // command line, or `rescue.run=` names a command file on the boot medium; the commands run like
    // typed lines, then the machine powers off.
    let mut unattended: Option<Vec<String>> = std::env::var(AUTO_ENV).ok().map(|list| {
        list.split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if let Ok(file) = std::env::var(RUN_ENV) {
        match crate::case::read_boot_medium_file(Path::new(&file)) {
            Ok(bytes) => {
                println!("rescue.run: running {file} from the boot medium");
                unattended.get_or_insert_with(Vec::new).extend(
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            Err(e) => {
                // Nothing to run: stay up so whoever looks at the console sees why.
                println!("rescue.run: {}; not powering off", crate::error_chain(&e));
            }
        }
    }
    if let Some(commands) = unattended {
        for command in &commands {
            println!("rescue> {command}");
            execute(command, &name, exec);
        }
        println!("rescue> poweroff");
        execute("poweroff", &name, exec);
    }
    if std::env::var(SHELL_ENV).map_or(true, |m| m != "line") {
        super::guided::enable();
    }
    interactive_loop(&name, exec)?;
    Ok(0)
}

/// The prompt loop: the guided menu in front of `rescue> ` (when shown), step numbers start guided
/// steps, anything else is a line-mode command. Returns at end of input (hang-up: init respawns it).
pub fn interactive_loop(console: &str, exec: Executor) -> anyhow::Result<()> {
    if super::guided::enabled() {
        super::guided::print_menu();
    }
    loop {
        let Some(line) = super::lineedit::read_line("rescue> ")? else {
            return Ok(());
        };
        let typed = line.trim();
        if let Some(step) = super::guided::Step::from_number(typed) {
            super::case::log_command(
                "action",
                &format!("guided step {typed}"),
                serde_json::json!({"console": console}),
            );
            if let Err(e) = super::guided::run_step(step, exec) {
                super::print_error(&e);
            }
            continue;
        }
        match typed {
            "" if super::guided::enabled() => super::guided::print_menu(),
            "line" => super::guided::disable(),
            _ => {
                execute(&line, console, exec);
            }
        }
    }
}

/// Runs one prompt line: help, or a CLI command; both the line and its outcome go to the case log.
/// Returns the command's exit status (`None` when nothing ran).
pub fn execute(line: &str, console: &str, exec: Executor) -> Option<u8> {
    let words = match args::split_words(line.trim()) {
        Ok(w) => w,
        Err(e) => {
            println!("error: {e}");
            return None;
        }
    };
    match words.first().map(String::as_str) {
        None => return None,
        Some("help" | "?") => {
            print!("{}", help_text(super::columns()));
            return Some(0);
        }
        _ => {}
    }
    let typed = line.trim();
    super::case::log_command("action", typed, serde_json::json!({"console": console}));
    match args::parse_line(&words) {
        Ok(Command::Console { .. }) => {
            println!("error: not a prompt command");
            None
        }
        Ok(command) => {
            let code = exec(command);
            super::case::log_command("result", typed, serde_json::json!({"exit": code}));
            if code != 0 {
                println!("(exit status {code})");
            }
            Some(code)
        }
        Err(e) => {
            super::case::log_command(
                "result",
                typed,
                serde_json::json!({"error": "not understood"}),
            );
            let _ = e.print();
            Some(args::EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_fits_80_and_40_columns() {
        for width in [80, 40] {
            let text = help_text(width);
            assert!(super::super::widest(&text) <= width, "{width}:\n{text}");
            assert!(text.contains("  acquire "), "{text}");
        }
    }
}
