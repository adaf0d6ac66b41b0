//! Detectors over every file of the root, in one walk ([`crate::examine::source::Root::walk`]: the ext
//! reader where the root is an ext filesystem whose bytes are at hand, else the mounted walk): setuid/setgid files
//! and files with capabilities (`security.capability`) not owned by a package, executables and hidden
//! entries in `/tmp`, `/var/tmp` and `/dev/shm`, hidden directories (and hidden files among binaries)
//! in system paths, executables whose name imitates a system daemon or binary, kernel modules and PAM
//! modules not owned by a package, staged `ld.so.preload` copies, server-side scripts in web roots
//! (command-execution patterns, upload directories, recent changes), and with `--since` what changed
//! in the attack window.

use std::collections::BTreeSet;
use std::io::Read;

use super::category as cat;
use super::patterns;
use super::{Collector, Progress, Severity};
use crate::examine::source::Walked;
use crate::examine::walk::{Entry, FileKind, Visit, Visitor, WalkError};

/// Names attackers give their programs to pass for the system's own.
const DAEMON_NAMES: [&str; 44] = [
    "sshd",
    "systemd",
    "init",
    "cron",
    "crond",
    "atd",
    "rsyslogd",
    "syslogd",
    "udevd",
    "systemd-udevd",
    "dbus-daemon",
    "kworker",
    "kthreadd",
    "ksoftirqd",
    "kswapd0",
    "migration",
    "rcu_sched",
    "watchdogd",
    "httpd",
    "apache2",
    "nginx",
    "php-fpm",
    "mysqld",
    "postgres",
    "sh",
    "bash",
    "ls",
    "ps",
    "netstat",
    "ss",
    "top",
    "lsof",
    "login",
    "sudo",
    "su",
    "passwd",
    "agetty",
    "polkitd",
    "dhclient",
    "irqbalance",
    "auditd",
    "containerd",
    "dockerd",
    "snapd",
];

/// Where a system's own programs and libraries live: an imitating name there is not flagged by place.
const SYSTEM_DIRS: [&str; 9] = [
    "/usr/bin/",
    "/usr/sbin/",
    "/bin/",
    "/sbin/",
    "/usr/lib",
    "/lib",
    "/usr/libexec/",
    "/etc/",
    "/usr/share/",
];

/// Directories whose hidden subdirectories are suspicious.
const SYSTEM_PATHS: [&str; 12] = [
    "/usr/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/etc/", "/boot/", "/opt/", "/dev/",
    "/var/", "/srv/",
];

/// Hidden entries systemd and X create in /tmp on every boot.
const TMP_NORMAL: [&str; 5] = [
    ".X11-unix",
    ".ICE-unix",
    ".font-unix",
    ".XIM-unix",
    ".Test-unix",
];

const WEB_COMMON: [&str; 8] = [
    "/var/www",
    "/srv/www",
    "/srv/http",
    "/usr/share/nginx/html",
    "/usr/local/apache2/htdocs",
    "/opt/lampp/htdocs",
    "/var/lib/tomcat9/webapps",
    "/usr/share/tomcat/webapps",
];

/// How far back from the newest log entry a server-side script counts as recently changed.
const RECENT_SECS: i64 = 14 * 86400;

/// Document roots named by nginx and Apache configurations, and the common ones.
pub fn web_roots(c: &Collector<'_>) -> Vec<Vec<u8>> {
    let mut roots: BTreeSet<String> = WEB_COMMON.iter().map(|s| (*s).to_owned()).collect();
    let mut files = Vec::new();
    for dir in [
        "/etc/nginx",
        "/etc/nginx/conf.d",
        "/etc/nginx/sites-enabled",
        "/etc/nginx/sites-available",
        "/etc/apache2",
        "/etc/apache2/sites-enabled",
        "/etc/apache2/sites-available",
        "/etc/apache2/conf-enabled",
        "/etc/httpd/conf",
        "/etc/httpd/conf.d",
    ] {
        files.extend(c.fs.files_in(dir.as_bytes()));
    }
    for f in files {
        // `sites-enabled` and `conf-enabled` hold symlinks (a2ensite, a2enconf): followed, inside
        // the root, as the server follows them.
        let Some(text) = c.fs.read_through_links(&f) else {
            continue;
        };
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let path = match w.as_slice() {
                [k, p, ..] if *k == "root" || *k == "alias" => Some(*p),
                [k, p, ..] if k.eq_ignore_ascii_case("DocumentRoot") => Some(*p),
                [k, _, p, ..] if k.eq_ignore_ascii_case("Alias") => Some(*p),
                _ => None,
            };
            if let Some(p) = path {
                let p = p
                    .trim_end_matches(';')
                    .trim_matches('"')
                    .trim_end_matches('/');
                if p.starts_with('/') && p.len() > 1 && !p.contains('$') {
                    roots.insert(p.to_owned());
                }
            }
        }
    }
    roots.into_iter().map(String::into_bytes).collect()
}

struct FileScan<'c, 'a> {
    c: &'c mut Collector<'a>,
    progress: &'c mut dyn FnMut(Progress<'_>),
    web_roots: Vec<Vec<u8>>,
    daemon_names: BTreeSet<Vec<u8>>,
    /// Server-side scripts seen: (path, mtime) for the "recently changed" check after the walk.
    scripts: Vec<(Vec<u8>, i64)>,
    newest_log: i64,
    entries: u64,
    unreadable: u64,
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

fn starts_any(path: &[u8], dirs: &[&str]) -> bool {
    dirs.iter().any(|d| path.starts_with(d.as_bytes()))
}

fn first_bytes(e: &Entry<'_>, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let got = e.open().and_then(|mut f| f.read(&mut buf)).unwrap_or(0);
    buf.truncate(got);
    buf
}

impl FileScan<'_, '_> {
    fn file(&mut self, e: &Entry<'_>, p: &[u8]) {
        let m = &e.meta;
        let name = e.name();
        let exec = m.mode & 0o111 != 0;
        let owners = self.c.owners;
        let in_temp = under(p, b"/tmp") || under(p, b"/var/tmp") || under(p, b"/dev/shm");
        if m.mode & 0o6000 != 0 {
            let what = if m.mode & 0o4000 != 0 {
                "setuid"
            } else {
                "setgid"
            };
            let sev = if in_temp || under(p, b"/home") || under(p, b"/root") {
                Some(Severity::Critical)
            } else if !owners.known() {
                Some(Severity::Medium)
            } else if owners.owner(p).is_none() {
                Some(Severity::High)
            } else {
                None
            };
            match sev {
                Some(s) => {
                    let why = if owners.known() {
                        format!("a {what} file not owned by any package")
                    } else {
                        format!(
                            "a {what} file (no package database to tell whether it is the system's)"
                        )
                    };
                    self.c.add(s, cat::SETUID, p, why);
                }
                None => {
                    self.c.add(
                        Severity::Info,
                        cat::SETUID,
                        p,
                        format!("{what} file of a package"),
                    );
                }
            }
        }
        if exec && let Some(cap) = e.xattr("security.capability") {
            let hex: String = cap.iter().take(24).map(|b| format!("{b:02x}")).collect();
            let owned = owners.owner(p);
            let (s, why) = match owned {
                Some(_) => (
                    Severity::Info,
                    format!("file capabilities (security.capability {hex}) on a package's file"),
                ),
                None if owners.known() => (
                    Severity::High,
                    format!(
                        "file capabilities (security.capability {hex}) on a file not owned by any package"
                    ),
                ),
                None => (
                    Severity::Medium,
                    format!("file capabilities (security.capability {hex})"),
                ),
            };
            self.c.add(s, cat::CAPABILITY, p, why);
        }
        if in_temp {
            let head = first_bytes(e, 4);
            let elf = head.starts_with(b"\x7fELF");
            if exec || elf || head.starts_with(b"#!") {
                let kind = if elf {
                    "an ELF program"
                } else if head.starts_with(b"#!") {
                    "a script"
                } else {
                    "an executable file"
                };
                self.c.add(
                    Severity::High,
                    cat::TEMP,
                    p,
                    format!("{kind} in a temporary directory"),
                );
            }
        }
        let n = String::from_utf8_lossy(name);
        let ko = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|s| n.ends_with(s));
        if ko {
            let in_modules = p.starts_with(b"/lib/modules/") || p.starts_with(b"/usr/lib/modules/");
            if !in_modules {
                self.c.add(
                    Severity::High,
                    cat::KERNEL_MODULE,
                    p,
                    "a kernel module outside the module directories".into(),
                );
            } else {
                self.c
                    .if_unowned(Severity::High, cat::KERNEL_MODULE, p, "a kernel module");
            }
        }
        if n.ends_with(".so") && p.windows(10).any(|w| w == b"/security/") {
            self.c
                .if_unowned(Severity::Critical, cat::PAM, p, "a PAM module");
        }
        if name.starts_with(b"ld.so.preload") && !p.starts_with(b"/etc/ld.so.preload") {
            self.c.add(
                Severity::High,
                cat::LOADER,
                p,
                "a file named like ld.so.preload outside /etc".into(),
            );
        }
        if name.starts_with(b".")
            && (under(p, b"/usr/bin")
                || under(p, b"/usr/sbin")
                || under(p, b"/bin")
                || under(p, b"/sbin")
                || p.starts_with(b"/dev/")
                || p.starts_with(b"/lib/modules/")
                || p.starts_with(b"/usr/lib/modules/"))
            && owners.owner(p).is_none()
        {
            self.c.add(
                Severity::High,
                cat::HIDDEN,
                p,
                "a hidden file among system programs or devices".into(),
            );
        }
        if exec && !in_temp {
            self.imitation(p, name);
        }
        let bin_dir = [&b"/usr/bin"[..], b"/usr/sbin", b"/bin", b"/sbin"]
            .iter()
            .any(|d| under(p, d) && !p[d.len() + 1..].contains(&b'/'));
        if bin_dir && !name.starts_with(b".") {
            self.c.if_unowned(
                Severity::Medium,
                cat::PACKAGE,
                p,
                "a program in a system binary directory",
            );
        }
        if patterns::is_script_name(name) && self.web_roots.iter().any(|r| under(p, r)) {
            self.web_script(e, p);
        }
        if p.starts_with(b"/var/log/") {
            self.newest_log = self.newest_log.max(m.mtime.secs);
        }
        if let Some(since) = self.c.since {
            let changed = m.mtime.secs >= since
                || m.ctime.secs >= since
                || m.crtime.is_some_and(|t| t.secs >= since);
            let noisy = starts_any(
                p,
                &[
                    "/var/log/",
                    "/var/cache/",
                    "/var/lib/apt/lists/",
                    "/var/lib/systemd/",
                    "/run/",
                    "/proc/",
                    "/sys/",
                ],
            );
            if changed && !noisy {
                self.c.add(
                    Severity::Low,
                    cat::WINDOW,
                    p,
                    "changed in the attack window".into(),
                );
            }
        }
    }

    fn imitation(&mut self, p: &[u8], name: &[u8]) {
        let n = String::from_utf8_lossy(name);
        let trick =
            n.starts_with(' ') || n.ends_with(' ') || (n.starts_with('[') && n.ends_with(']'));
        let imitates = self.daemon_names.contains(name)
            || self
                .daemon_names
                .contains(name.strip_prefix(b".").unwrap_or(name));
        if !(trick || (imitates && !starts_any(p, &SYSTEM_DIRS))) {
            return;
        }
        if self.c.owners.owner(p).is_some() {
            return;
        }
        let why = if trick {
            format!(
                "an executable named {n:?}, dressed up like a kernel thread or padded with spaces"
            )
        } else {
            format!(
                "an executable named like the system's {} outside the system directories",
                n.trim_start_matches('.')
            )
        };
        self.c.add(Severity::High, cat::IMITATION, p, why);
    }

    fn web_script(&mut self, e: &Entry<'_>, p: &[u8]) {
        let upload = p
            .split(|&b| b == b'/')
            .any(|part| part.to_ascii_lowercase().windows(6).any(|w| w == b"upload"));
        if upload {
            self.c.add(
                Severity::High,
                cat::WEB,
                p,
                "a server-side script in an upload directory".into(),
            );
        }
        let mut text = Vec::new();
        if let Ok(f) = e.open() {
            let _ = f.take(4 << 20).read_to_end(&mut text);
        }
        if let Some((rank, why)) = patterns::web_shell(&String::from_utf8_lossy(&text)) {
            let sev = match rank {
                0 => Severity::Critical,
                1 => Severity::High,
                _ => Severity::Medium,
            };
            self.c
                .add(sev, cat::WEB, p, format!("web shell pattern: {why}"));
        }
        self.scripts.push((p.to_vec(), e.meta.mtime.secs));
    }
}

impl Visitor for FileScan<'_, '_> {
    fn entry(&mut self, e: &Entry<'_>) -> Visit {
        self.entries += 1;
        if self.entries.is_multiple_of(20_000) {
            (self.progress)(Progress::Walked {
                entries: self.entries,
            });
        }
        let p = e.inner_path();
        match e.meta.kind {
            FileKind::File => self.file(e, p),
            FileKind::Dir => {
                if p == b"/proc" || p == b"/sys" {
                    return Visit::Skip;
                }
                let name = e.name();
                let in_temp = under(p, b"/tmp") || under(p, b"/var/tmp") || under(p, b"/dev/shm");
                if name.starts_with(b".") && name != b"." {
                    if in_temp {
                        if e.depth > 0 && !TMP_NORMAL.iter().any(|t| t.as_bytes() == name) {
                            self.c.add(
                                Severity::Medium,
                                cat::TEMP,
                                p,
                                "a hidden directory in a temporary directory".into(),
                            );
                        }
                    } else if starts_any(p, &SYSTEM_PATHS) && !p.starts_with(b"/etc/skel/") {
                        let owners = self.c.owners;
                        if !owners.known() {
                            self.c.add(Severity::Low, cat::HIDDEN, p, "a hidden directory in a system path (no package database to tell whether it is the system's)".into());
                        } else if owners.owner(p).is_none() {
                            self.c.add(
                                Severity::Medium,
                                cat::HIDDEN,
                                p,
                                "a hidden directory in a system path, not owned by any package"
                                    .into(),
                            );
                        }
                    }
                }
            }
            FileKind::Symlink => {}
            _ => {
                if (under(p, b"/tmp") || under(p, b"/var/tmp")) && e.name().starts_with(b".") {
                    self.c.add(
                        Severity::Medium,
                        cat::TEMP,
                        p,
                        "a hidden special file in a temporary directory".into(),
                    );
                }
            }
        }
        if e.meta.kind != FileKind::Dir
            && e.name().starts_with(b".")
            && (under(p, b"/tmp") || under(p, b"/var/tmp") || under(p, b"/dev/shm"))
            && e.meta.kind == FileKind::File
        {
            self.c.add(
                Severity::Medium,
                cat::TEMP,
                p,
                "a hidden file in a temporary directory".into(),
            );
        }
        Visit::Continue
    }

    fn unreadable(&mut self, _path: &[u8], _error: &std::io::Error) {
        self.unreadable += 1;
    }
}

/// Walks the root once with every file detector.
pub fn walk_root(
    root: &crate::examine::source::Root,
    c: &mut Collector<'_>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Walked, WalkError> {
    let web_roots = web_roots(c);
    let mut daemon_names: BTreeSet<Vec<u8>> =
        DAEMON_NAMES.iter().map(|n| n.as_bytes().to_vec()).collect();
    for dir in [&b"/usr/sbin"[..], b"/sbin"] {
        daemon_names.extend(c.fs.list(dir));
    }
    let mut scan = FileScan {
        c,
        progress,
        web_roots,
        daemon_names,
        scripts: Vec::new(),
        newest_log: 0,
        entries: 0,
        unreadable: 0,
    };
    let walked = root.walk(&mut scan)?;
    let reference = scan.newest_log.min(chrono::Utc::now().timestamp());
    let scripts = std::mem::take(&mut scan.scripts);
    for (p, mtime) in scripts {
        let recent = match scan.c.since {
            Some(s) => mtime >= s,
            None => reference > 0 && mtime >= reference - RECENT_SECS,
        };
        if recent {
            scan.c.add(
                Severity::Medium,
                cat::WEB,
                &p,
                if scan.c.since.is_some() {
                    "a server-side script changed in the attack window".into()
                } else {
                    "a server-side script changed in the 14 days before the newest log entry".into()
                },
            );
        }
    }
    Ok(walked)
}
