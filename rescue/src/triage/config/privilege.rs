//! Privilege: sudoers (and `sudoers.d`) and the PAM stacks.

use super::lines;
use crate::triage::category as cat;
use crate::triage::{Collector, Severity};

pub(super) fn sudo(c: &mut Collector<'_>) {
    let mut files = vec![b"/etc/sudoers".to_vec()];
    for p in c.fs.files_in(b"/etc/sudoers.d") {
        c.if_unowned(Severity::Medium, cat::SUDO, &p, "a sudoers drop-in");
        files.push(p);
    }
    for path in files {
        let Some(text) = c.fs.read_text(&path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("defaults") {
                if lower.contains("!authenticate") {
                    c.add_line(
                        Severity::High,
                        cat::SUDO,
                        &path,
                        n,
                        line,
                        "sudo asks nobody for a password (!authenticate)".into(),
                    );
                }
                if lower.contains("ld_preload") || lower.contains("ld_library_path") {
                    c.add_line(
                        Severity::High,
                        cat::SUDO,
                        &path,
                        n,
                        line,
                        "sudo keeps loader variables (LD_PRELOAD/LD_LIBRARY_PATH)".into(),
                    );
                }
                continue;
            }
            if lower.contains("nopasswd") {
                c.add_line(
                    Severity::High,
                    cat::SUDO,
                    &path,
                    n,
                    line,
                    "sudo without a password (NOPASSWD)".into(),
                );
                continue;
            }
            let who = l.split_whitespace().next().unwrap_or("");
            let everything = l.contains('=') && l.trim_end().ends_with("ALL");
            let admin = ["root", "%sudo", "%admin", "%wheel"].contains(&who);
            if everything
                && !admin
                && !who.eq_ignore_ascii_case("defaults")
                && !who.ends_with("_Alias")
            {
                c.add_line(
                    Severity::High,
                    cat::SUDO,
                    &path,
                    n,
                    line,
                    format!("{who} may run anything as root through sudo"),
                );
            }
        }
    }
}

pub(super) fn pam(c: &mut Collector<'_>) {
    let mut files = c.fs.files_in(b"/etc/pam.d");
    for p in &files {
        // pam-auth-update writes these from the profiles packages install; their lines are checked below.
        if p.starts_with(b"/etc/pam.d/common-") {
            continue;
        }
        c.if_unowned(Severity::Medium, cat::PAM, p, "a PAM configuration file");
    }
    files.push(b"/etc/pam.conf".to_vec());
    for path in files {
        let Some(text) = c.fs.read_text(&path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let w: Vec<&str> = line.split_whitespace().collect();
            // pam.conf has the service name first.
            let w = if path.ends_with(b"pam.conf") && w.len() > 1 {
                &w[1..]
            } else {
                &w[..]
            };
            let (Some(kind), Some(control), Some(module)) = (w.first(), w.get(1), w.get(2)) else {
                continue;
            };
            if kind.starts_with('@') {
                continue;
            }
            let module = if control.starts_with('[') {
                // `[success=1 default=ignore] pam_unix.so`: the module follows the bracket.
                match w.iter().position(|x| x.ends_with(']')) {
                    Some(i) => w.get(i + 1).copied().unwrap_or(""),
                    None => continue,
                }
            } else {
                module
            };
            if module.contains("pam_exec") {
                c.add_line(
                    Severity::High,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    "PAM runs a program (pam_exec)".into(),
                );
            } else if module.contains("pam_permit")
                && kind.trim_start_matches('-') == "auth"
                && *control == "sufficient"
            {
                c.add_line(
                    Severity::Critical,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    "PAM accepts anyone (pam_permit.so sufficient in auth)".into(),
                );
            } else if module.starts_with('/') && !module.contains("/security/") {
                c.add_line(
                    Severity::High,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    format!("PAM loads a module from outside the module directories: {module}"),
                );
            }
        }
    }
}
