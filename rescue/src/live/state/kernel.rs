//! `state/kernel.json`: what the running kernel says about itself: release and version banner
//! (`/proc/version`, which Volatility's `banners.Banners` looks for in the memory image), command
//! line, host name, uptime and boot time, lockdown, and the hardening switches a responder reads
//! before trusting `/proc` (`kptr_restrict`, `dmesg_restrict`, `modules_disabled`, …).

use std::path::Path;

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// One sysctl and its value.
#[derive(Debug, Clone, Serialize)]
pub struct Sysctl {
    pub name: String,
    pub value: Option<String>,
}

/// The sysctls recorded (under `/proc/sys/`).
const SYSCTLS: [&str; 9] = [
    "kernel/kptr_restrict",
    "kernel/dmesg_restrict",
    "kernel/modules_disabled",
    "kernel/kexec_load_disabled",
    "kernel/perf_event_paranoid",
    "kernel/unprivileged_bpf_disabled",
    "kernel/yama/ptrace_scope",
    "kernel/randomize_va_space",
    "kernel/core_pattern",
];

fn read_text(path: &Path, d: &mut Doc) -> Option<String> {
    match doc::read(path) {
        Ok(b) => Some(text(b.strip_suffix(b"\n").unwrap_or(&b))),
        Err(e) => {
            d.note(format!("{}: {}", path.display(), doc::why(&e)));
            None
        }
    }
}

/// `/proc/uptime`: seconds since boot and idle seconds.
pub fn parse_uptime(b: &[u8]) -> Option<(f64, f64)> {
    let s = std::str::from_utf8(b).ok()?;
    let mut f = s.split_ascii_whitespace();
    let up: f64 = f.next()?.parse().ok()?;
    let idle: f64 = f.next()?.parse().ok()?;
    (up.is_finite() && idle.is_finite() && up >= 0.0).then_some((up, idle))
}

/// `[none] integrity confidentiality` → `none`.
pub fn lockdown_mode(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_owned())
}

/// Collects `state/kernel.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let mut d = Doc::start(
        "state/kernel.json",
        "rescue.live.kernel/1",
        "/proc/{version,cmdline,uptime,stat}, /proc/sys/kernel/*, /sys/kernel/security/lockdown",
    );
    let p = &roots.proc;
    let release = read_text(&p.join("sys/kernel/osrelease"), &mut d);
    let version = read_text(&p.join("version"), &mut d);
    let cmdline = read_text(&p.join("cmdline"), &mut d);
    let hostname = read_text(&p.join("sys/kernel/hostname"), &mut d);
    let uptime = match doc::read(&p.join("uptime")) {
        Ok(b) => {
            let u = parse_uptime(&b);
            if u.is_none() {
                d.note(format!("{}: not two numbers", p.join("uptime").display()));
            }
            u
        }
        Err(e) => {
            d.note(format!("{}: {}", p.join("uptime").display(), doc::why(&e)));
            None
        }
    };
    let btime: Option<u64> = doc::read(&p.join("stat")).ok().and_then(|b| {
        b.split(|&c| c == b'\n')
            .find_map(|l| doc::num(l.strip_prefix(b"btime ")?))
    });
    if btime.is_none() {
        d.note(format!("{}: no btime line", p.join("stat").display()));
    }
    let lockdown = match doc::read(&roots.sys.join("kernel/security/lockdown")) {
        Ok(b) => lockdown_mode(&b),
        Err(e) => {
            d.note(format!(
                "{}: {} (securityfs not mounted, or a kernel without lockdown)",
                roots.sys.join("kernel/security/lockdown").display(),
                doc::why(&e)
            ));
            None
        }
    };
    let sysctls: Vec<Sysctl> = SYSCTLS
        .iter()
        .map(|n| Sysctl {
            name: n.replace('/', "."),
            value: read_text(&p.join("sys").join(n), &mut d),
        })
        .collect();
    d.finish(vec![
        ("release", doc::json(&release)),
        ("version", doc::json(&version)),
        ("cmdline", doc::json(&cmdline)),
        ("hostname", doc::json(&hostname)),
        ("uptime_seconds", doc::json(&uptime.map(|u| u.0))),
        ("idle_seconds", doc::json(&uptime.map(|u| u.1))),
        (
            "boot_time",
            doc::json(&btime.and_then(|b| doc::rfc3339_secs(b as f64))),
        ),
        ("boot_time_unix", doc::json(&btime)),
        ("lockdown", doc::json(&lockdown)),
        ("sysctls", doc::json(&sysctls)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_and_lockdown() {
        assert_eq!(
            parse_uptime(b"23422.47 45000.10\n"),
            Some((23422.47, 45000.10))
        );
        assert_eq!(parse_uptime(b"nan 1"), None);
        assert_eq!(parse_uptime(b"12"), None);
        assert_eq!(parse_uptime(b"\xff"), None);
        assert_eq!(
            lockdown_mode(b"none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(lockdown_mode(b"none integrity"), None);
        assert_eq!(lockdown_mode(b"]["), None);
    }
}
