//! What starts programs: cron and at, systemd units and timers, SysV init scripts and `rc.local`,
//! shell start-up files and XDG autostart.

use super::{User, lines, script_lines};
use crate::triage::category as cat;
use crate::triage::patterns::suspicious_command;
use crate::triage::rootfs::join;
use crate::triage::{Collector, Severity};

pub(super) fn cron(c: &mut Collector<'_>) {
    let mut system = vec![b"/etc/crontab".to_vec(), b"/etc/anacrontab".to_vec()];
    for p in c.fs.files_in(b"/etc/cron.d") {
        c.if_unowned(Severity::Medium, cat::CRON, &p, "a cron.d file");
        system.push(p);
    }
    for path in &system {
        let Some(text) = c.fs.read_text(path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            // Variable assignments (`SHELL=/bin/sh`) are not jobs.
            if l.split_whitespace().next().is_some_and(|w| w.contains('=')) {
                continue;
            }
            match suspicious_command(l) {
                Some(why) => c.add_line(
                    Severity::High,
                    cat::CRON,
                    path,
                    n,
                    line,
                    format!("cron job {why}"),
                ),
                None => c.add_line(Severity::Info, cat::CRON, path, n, line, "cron job".into()),
            }
        }
    }
    for period in ["hourly", "daily", "weekly", "monthly", "yearly"] {
        let dir = format!("/etc/cron.{period}");
        for p in c.fs.files_in(dir.as_bytes()) {
            let name = p.rsplit(|&b| b == b'/').next().unwrap_or(b"");
            if name == b".placeholder" {
                continue;
            }
            if !c.if_unowned(
                Severity::Medium,
                cat::CRON,
                &p,
                &format!("a cron.{period} script"),
            ) {
                c.add(
                    Severity::Info,
                    cat::CRON,
                    &p,
                    format!("cron.{period} script"),
                );
            }
            script_lines(c, &p, cat::CRON, "cron script");
        }
    }
    for dir in [
        &b"/var/spool/cron/crontabs"[..],
        b"/var/spool/cron",
        b"/var/spool/cron/tabs",
    ] {
        for p in c.fs.files_in(dir) {
            let Some(text) = c.fs.read_text(&p) else {
                continue;
            };
            let user = String::from_utf8_lossy(p.rsplit(|&b| b == b'/').next().unwrap_or(b""))
                .into_owned();
            for (n, line) in lines(&text) {
                if line
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains('='))
                {
                    continue;
                }
                match suspicious_command(line) {
                    Some(why) => c.add_line(
                        Severity::High,
                        cat::CRON,
                        &p,
                        n,
                        line,
                        format!("{user}'s crontab job {why}"),
                    ),
                    None => c.add_line(
                        Severity::Medium,
                        cat::CRON,
                        &p,
                        n,
                        line,
                        format!("{user}'s crontab job"),
                    ),
                }
            }
        }
    }
    for dir in [&b"/var/spool/cron/atjobs"[..], b"/var/spool/at"] {
        for p in c.fs.files_in(dir) {
            if p.ends_with(b".SEQ") {
                continue;
            }
            let text = c.fs.read_text(&p).unwrap_or_default();
            // The command is at the end of the job file, after at's environment set-up.
            let cmd = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with('}'))
                .unwrap_or("");
            match suspicious_command(&text) {
                Some(why) => c.add_line(
                    Severity::High,
                    cat::AT,
                    &p,
                    0,
                    cmd,
                    format!("queued at job {why}"),
                ),
                None => c.add_line(
                    Severity::Medium,
                    cat::AT,
                    &p,
                    0,
                    cmd,
                    "queued at job".into(),
                ),
            }
        }
    }
}

const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".timer", ".socket", ".path", ".mount", ".target",
];

pub(super) fn systemd(c: &mut Collector<'_>, users: &[User]) {
    let mut dirs: Vec<Vec<u8>> = [
        "/etc/systemd/system",
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/etc/systemd/user",
        "/usr/lib/systemd/user",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for u in users.iter().filter(|u| !u.home.is_empty() && u.home != "/") {
        dirs.push(format!("{}/.config/systemd/user", u.home.trim_end_matches('/')).into_bytes());
    }
    let mut seen_dirs = std::collections::BTreeSet::new();
    for dir in &dirs {
        // /lib is /usr/lib on a merged-/usr system: read each real directory once.
        let key = c.fs.lstat(dir).map(|m| m.inode);
        if key.is_none() || !seen_dirs.insert(key) {
            continue;
        }
        let in_home =
            !dir.starts_with(b"/etc") && !dir.starts_with(b"/usr") && !dir.starts_with(b"/lib");
        for name in c.fs.list(dir) {
            let p = join(dir, &name);
            let Some(m) = c.fs.lstat(&p) else {
                continue;
            };
            let n = String::from_utf8_lossy(&name).into_owned();
            use crate::examine::walk::FileKind;
            match m.kind {
                FileKind::File if UNIT_SUFFIXES.iter().any(|s| n.ends_with(s)) => {
                    if in_home {
                        c.add(
                            Severity::Medium,
                            cat::SYSTEMD,
                            &p,
                            format!("a user's systemd unit {n}"),
                        );
                    } else {
                        c.if_unowned(
                            Severity::Medium,
                            cat::SYSTEMD,
                            &p,
                            &format!("systemd unit {n}"),
                        );
                    }
                    unit_exec_lines(c, &p);
                }
                FileKind::Dir if n.ends_with(".d") => {
                    for f in c.fs.files_in(&p) {
                        if f.ends_with(b".conf") {
                            c.if_unowned(Severity::Medium, cat::SYSTEMD, &f, "a systemd drop-in");
                            unit_exec_lines(c, &f);
                        }
                    }
                }
                // What the administrator (or an attacker) enabled; packages' static wants are theirs.
                FileKind::Dir
                    if (n.ends_with(".wants") || n.ends_with(".requires"))
                        && !dir.starts_with(b"/usr")
                        && !dir.starts_with(b"/lib") =>
                {
                    for unit in c.fs.list(&p) {
                        let up = join(&p, &unit);
                        let u = String::from_utf8_lossy(&unit);
                        c.add(
                            Severity::Info,
                            cat::SYSTEMD,
                            &up,
                            format!("enabled unit {u} ({n})"),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    for p in c.fs.files_in_each(&[
        "/etc/systemd/system-generators",
        "/usr/local/lib/systemd/system-generators",
        "/usr/lib/systemd/system-generators",
        "/lib/systemd/system-generators",
        "/etc/systemd/user-generators",
        "/usr/lib/systemd/user-generators",
    ]) {
        c.if_unowned(
            Severity::High,
            cat::SYSTEMD,
            &p,
            "a systemd generator (runs early at every boot)",
        );
    }
}

fn unit_exec_lines(c: &mut Collector<'_>, path: &[u8]) {
    let Some(text) = c.fs.read_text(path) else {
        return;
    };
    for (n, line) in lines(&text) {
        let l = line.trim_start();
        if l.starts_with("Exec")
            && let Some(why) = suspicious_command(l)
        {
            c.add_line(
                Severity::High,
                cat::SYSTEMD,
                path,
                n,
                line,
                format!("systemd unit {why}"),
            );
        }
    }
}

/// The `Exec=`/`TryExec=` lines of an XDG autostart entry (run at every desktop login) that look
/// like an attacker's.
fn autostart_exec_lines(c: &mut Collector<'_>, path: &[u8]) {
    let Some(text) = c.fs.read_text(path) else {
        return;
    };
    for (n, line) in lines(&text) {
        let l = line.trim_start();
        if (l.starts_with("Exec=") || l.starts_with("TryExec="))
            && let Some(why) = suspicious_command(l)
        {
            c.add_line(
                Severity::High,
                cat::SHELL,
                path,
                n,
                line,
                format!("XDG autostart entry {why}"),
            );
        }
    }
}

pub(super) fn init_scripts(c: &mut Collector<'_>) {
    let rc = b"/etc/rc.local";
    if let Some(text) = c.fs.read_text(rc) {
        let body: Vec<(usize, &str)> = lines(&text).filter(|(_, l)| l.trim() != "exit 0").collect();
        if !body.is_empty() {
            let (n, first) = body[0];
            let bad = body
                .iter()
                .find_map(|(n, l)| suspicious_command(l).map(|w| (*n, *l, w)));
            match bad {
                Some((n, l, why)) => c.add_line(
                    Severity::High,
                    cat::INIT,
                    rc,
                    n,
                    l,
                    format!("rc.local {why}"),
                ),
                None => c.add_line(
                    Severity::Medium,
                    cat::INIT,
                    rc,
                    n,
                    first,
                    format!("rc.local runs {} command(s) at boot", body.len()),
                ),
            }
        }
    }
    for p in c.fs.files_in(b"/etc/init.d") {
        c.if_unowned(Severity::Medium, cat::INIT, &p, "an init.d script");
        script_lines(c, &p, cat::INIT, "init.d script");
    }
}

pub(super) fn shell(c: &mut Collector<'_>, users: &[User]) {
    let mut files: Vec<Vec<u8>> = [
        "/etc/profile",
        "/etc/bash.bashrc",
        "/etc/bashrc",
        "/etc/environment",
        "/etc/zsh/zshrc",
        "/etc/zsh/zprofile",
        "/etc/zsh/zshenv",
        "/etc/csh.cshrc",
        "/etc/csh.login",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for p in c.fs.files_in(b"/etc/profile.d") {
        c.if_unowned(Severity::Medium, cat::SHELL, &p, "a profile.d script");
        files.push(p);
    }
    for p in c.fs.files_in(b"/etc/xdg/autostart") {
        c.if_unowned(Severity::Medium, cat::SHELL, &p, "an XDG autostart entry");
        autostart_exec_lines(c, &p);
    }
    let mut homes = std::collections::BTreeSet::new();
    for u in users {
        let home = u.home.trim_end_matches('/');
        if home.is_empty() || !homes.insert(home.to_owned()) {
            continue;
        }
        for rc in [
            ".bashrc",
            ".bash_profile",
            ".bash_login",
            ".profile",
            ".bash_logout",
            ".zshrc",
            ".zprofile",
            ".zshenv",
            ".config/fish/config.fish",
        ] {
            files.push(format!("{home}/{rc}").into_bytes());
        }
        for p in
            c.fs.files_in(format!("{home}/.config/autostart").as_bytes())
        {
            c.add(
                Severity::Medium,
                cat::SHELL,
                &p,
                format!("{}'s XDG autostart entry", u.name),
            );
            autostart_exec_lines(c, &p);
        }
    }
    for p in files {
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            let lower = l.to_ascii_lowercase();
            if let Some(why) = suspicious_command(l) {
                c.add_line(
                    Severity::High,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    format!("shell start-up file {why}"),
                );
            } else if ["alias sudo=", "alias su=", "alias ssh=", "alias passwd="]
                .iter()
                .any(|a| lower.starts_with(a))
            {
                c.add_line(
                    Severity::High,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    "an alias replaces a credential-handling command".into(),
                );
            } else if lower.contains("prompt_command=")
                || (lower.starts_with("trap ") && lower.contains("debug"))
            {
                c.add_line(
                    Severity::Medium,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    "runs a command at every prompt".into(),
                );
            }
        }
    }
}
