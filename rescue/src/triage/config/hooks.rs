//! Hooks into the system: the dynamic loader (`ld.so.preload`, `ld.so.conf`), udev rules, kernel
//! module loading and apt hooks.

use super::lines;
use crate::triage::category as cat;
use crate::triage::patterns::suspicious_command;
use crate::triage::rootfs::join;
use crate::triage::{Collector, Severity};

pub(super) fn loader(c: &mut Collector<'_>) {
    // Read raw: every non-blank line is a library loaded into every dynamically linked program.
    for name in c.fs.list(b"/etc") {
        if !name.starts_with(b"ld.so.preload") {
            continue;
        }
        let p = join(b"/etc", &name);
        if name != b"ld.so.preload" {
            c.add(
                Severity::High,
                cat::LOADER,
                &p,
                "a file named like ld.so.preload (a renamed or staged preload list)".into(),
            );
        }
        // ld.so follows a symlink here: so does this read (inside the root).
        let text = c.fs.read_through_links(&p).unwrap_or_default();
        for (n, line) in lines(&text) {
            c.add_line(
                Severity::Critical,
                cat::LOADER,
                &p,
                n,
                line,
                format!("preloads {} into every program", line.trim()),
            );
        }
    }
    let mut confs = vec![b"/etc/ld.so.conf".to_vec()];
    for p in c.fs.files_in(b"/etc/ld.so.conf.d") {
        c.if_unowned(
            Severity::Medium,
            cat::LOADER,
            &p,
            "a library path file (ld.so.conf.d)",
        );
        confs.push(p);
    }
    for p in confs {
        let text = c.fs.read_text(&p).unwrap_or_default();
        for (n, line) in lines(&text) {
            let l = line.trim();
            let odd = ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root"]
                .iter()
                .any(|d| l.starts_with(d))
                || l.split('/')
                    .any(|part| part.starts_with('.') && part.len() > 1 && part != "..");
            if odd {
                c.add_line(
                    Severity::High,
                    cat::LOADER,
                    &p,
                    n,
                    line,
                    format!("libraries are searched in {l}"),
                );
            }
        }
    }
}

pub(super) fn udev(c: &mut Collector<'_>) {
    for p in c.fs.files_in_each(&[
        "/etc/udev/rules.d",
        "/usr/lib/udev/rules.d",
        "/lib/udev/rules.d",
        "/usr/local/lib/udev/rules.d",
    ]) {
        let unowned = c.owners.unowned(&p);
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        let mut runs = 0;
        for (n, line) in lines(&text) {
            if !line.contains("RUN") && !line.contains("PROGRAM") {
                continue;
            }
            runs += 1;
            if let Some(why) = suspicious_command(line) {
                c.add_line(
                    Severity::High,
                    cat::UDEV,
                    &p,
                    n,
                    line,
                    format!("udev rule {why}"),
                );
            } else if unowned {
                c.add_line(
                    Severity::High,
                    cat::UDEV,
                    &p,
                    n,
                    line,
                    "a udev rule not owned by any package runs a program (RUN/PROGRAM)".into(),
                );
            }
        }
        if unowned && runs == 0 {
            c.add(
                Severity::Low,
                cat::UDEV,
                &p,
                "a udev rules file not owned by any package".into(),
            );
        }
    }
}

pub(super) fn kernel_modules(c: &mut Collector<'_>) {
    let mut load = vec![b"/etc/modules".to_vec()];
    load.extend(c.fs.files_in_each(&[
        "/etc/modules-load.d",
        "/usr/lib/modules-load.d",
        "/lib/modules-load.d",
    ]));
    for p in load {
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        let unowned = c.owners.unowned(&p);
        for (n, line) in lines(&text) {
            let m = line.trim();
            c.add_line(
                if unowned {
                    Severity::Medium
                } else {
                    Severity::Info
                },
                cat::KERNEL_MODULE,
                &p,
                n,
                line,
                format!(
                    "module {m} loaded at boot{}",
                    if unowned {
                        " from a file not owned by any package"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    for p in
        c.fs.files_in_each(&["/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"])
    {
        c.if_unowned(
            Severity::Medium,
            cat::KERNEL_MODULE,
            &p,
            "a modprobe.d file",
        );
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let w: Vec<&str> = line.split_whitespace().collect();
            if matches!(w.first(), Some(&"install") | Some(&"remove")) {
                let cmd = w.get(2..).map(|r| r.join(" ")).unwrap_or_default();
                let harmless = [
                    "/bin/true",
                    "/bin/false",
                    "/usr/bin/true",
                    "/usr/bin/false",
                    "true",
                    "false",
                ]
                .contains(&cmd.as_str());
                if !harmless {
                    c.add_line(
                        Severity::High,
                        cat::KERNEL_MODULE,
                        &p,
                        n,
                        line,
                        "modprobe runs a command instead of (or with) loading a module".into(),
                    );
                }
            }
        }
    }
}

pub(super) fn apt_hooks(c: &mut Collector<'_>) {
    for p in c.fs.files_in(b"/etc/apt/apt.conf.d") {
        let unowned = c.owners.unowned(&p);
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        for (n, line) in lines(&text) {
            if !line.contains("Invoke") && !line.contains("Pre-Install-Pkgs") {
                continue;
            }
            if let Some(why) = suspicious_command(line) {
                c.add_line(
                    Severity::High,
                    cat::PACKAGE,
                    &p,
                    n,
                    line,
                    format!("an apt hook {why}"),
                );
            } else if unowned {
                c.add_line(
                    Severity::High,
                    cat::PACKAGE,
                    &p,
                    n,
                    line,
                    "an apt hook (runs with every apt run) not owned by any package".into(),
                );
            }
        }
    }
}
