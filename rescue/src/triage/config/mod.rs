//! Detectors over the examined root's configuration: accounts, SSH, sudoers, PAM, cron and at,
//! systemd, init scripts, the dynamic loader, shell start-up files and XDG autostart, udev rules,
//! kernel module loading, apt hooks. Each reads files through [`super::RootFs`] (inside the root,
//! never executing anything) and adds findings to the [`Collector`].

mod accounts;
mod autostart;
mod hooks;
mod privilege;
mod ssh;

use super::patterns::suspicious_command;
use super::{Collector, Severity};

/// Runs every configuration detector.
pub fn run_all(c: &mut Collector<'_>) {
    let users = accounts::accounts(c);
    ssh::ssh(c, &users);
    privilege::sudo(c);
    privilege::pam(c);
    autostart::cron(c);
    autostart::systemd(c, &users);
    autostart::init_scripts(c);
    hooks::loader(c);
    autostart::shell(c, &users);
    hooks::udev(c);
    hooks::kernel_modules(c);
    hooks::apt_hooks(c);
}

/// An account of the root's `/etc/passwd`.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: String,
    pub shell: String,
}

/// A shell that lets an account log in.
fn login_shell(shell: &str) -> bool {
    !(shell.is_empty()
        || shell.ends_with("/nologin")
        || shell.ends_with("/false")
        || shell.ends_with("/sync")
        || shell.ends_with("/shutdown")
        || shell.ends_with("/halt"))
}

/// Non-comment, non-empty lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
}

/// Flags the suspicious lines of a script not owned by a package (a package's own scripts are long
/// and legitimately use every pattern; a changed one is a package-integrity finding instead).
fn script_lines(c: &mut Collector<'_>, path: &[u8], category: &str, what: &str) {
    if c.owners.owner(path).is_some() {
        return;
    }
    let Some(text) = c.fs.read_text(path) else {
        return;
    };
    for (n, line) in lines(&text) {
        if let Some(why) = suspicious_command(line) {
            c.add_line(
                Severity::High,
                category,
                path,
                n,
                line,
                format!("{what} {why}"),
            );
        }
    }
}
