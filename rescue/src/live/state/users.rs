//! `state/users.json`: who is logged in, from the running system's `utmp` (`/var/run/utmp`, else
//! `/run/utmp`, read beneath [`Roots::root`] without leaving it), decoded by the timeline's utmp
//! reader ([`crate::timeline::logs::utmp::decode`]). Each session says whether its process is still
//! alive (a stale record is what an attacker who killed a shell leaves, or what a log cleaner missed).

use serde::Serialize;

use super::doc::{self, Doc};
use crate::live::{Artifact, Roots};
use crate::pkgdb::root::Root;
use crate::timeline::logs::utmp::{UTMP_SIZE, Utmp, decode};

/// `USER_PROCESS` and `BOOT_TIME` in `ut_type`.
const USER_PROCESS: i16 = 7;
const BOOT_TIME: i16 = 2;

/// One logged-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub user: String,
    /// The terminal (`pts/0`, `tty1`).
    pub line: String,
    /// Where from (an address or host name; empty for a local login).
    pub host: String,
    pub pid: i32,
    /// RFC 3339 UTC.
    pub login_time: Option<String>,
    /// Whether `/proc/PID` exists now.
    pub process_alive: bool,
}

/// The sessions and the boot record of a `utmp` file; a trailing partial record is reported.
pub fn parse(
    b: &[u8],
    alive: &dyn Fn(i32) -> bool,
) -> (Vec<Session>, Option<String>, Option<String>) {
    let mut sessions = Vec::new();
    let mut boot = None;
    let mut chunks = b.chunks_exact(UTMP_SIZE);
    for c in &mut chunks {
        let Ok(rec) = <&[u8; UTMP_SIZE]>::try_from(c) else {
            continue;
        };
        let u: Utmp = decode(rec);
        let when = doc::rfc3339_secs(u.sec as f64 + u.usec as f64 / 1e6);
        match u.kind {
            USER_PROCESS => sessions.push(Session {
                process_alive: alive(u.pid),
                user: u.user,
                line: u.line,
                host: u.host,
                pid: u.pid,
                login_time: when,
            }),
            BOOT_TIME => boot = when,
            _ => {}
        }
    }
    let rest = chunks.remainder().len();
    let partial = (rest > 0).then(|| format!("{rest} bytes at the end are not a whole record"));
    (sessions, boot, partial)
}

/// Collects `state/users.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let mut d = Doc::start(
        "state/users.json",
        "rescue.live.users/1",
        "/var/run/utmp (else /run/utmp) beneath the root",
    );
    let mut found = None;
    match Root::open(&roots.root) {
        Ok(r) => {
            for p in ["/var/run/utmp", "/run/utmp"] {
                match r.read(p.as_bytes()) {
                    Ok(b) => {
                        found = Some((p, b));
                        break;
                    }
                    Err(e) => d.note(format!(
                        "{}: {}",
                        roots.root.join(&p[1..]).display(),
                        doc::why(&e)
                    )),
                }
            }
        }
        Err(e) => d.note(format!("{}: {}", roots.root.display(), doc::why(&e))),
    }
    let proc = roots.proc.clone();
    let alive = move |pid: i32| pid > 0 && proc.join(pid.to_string()).exists();
    let (file, sessions, boot) = match &found {
        Some((p, b)) => {
            let (s, boot, partial) = parse(b, &alive);
            if let Some(x) = partial {
                d.note(format!("{p}: {x}"));
            }
            (Some(*p), s, boot)
        }
        None => (None, Vec::new(), None),
    };
    for s in sessions.iter().filter(|s| !s.process_alive) {
        d.note(format!(
            "the session of {} on {} (PID {}) has no live process: a stale utmp record",
            s.user, s.line, s.pid
        ));
    }
    d.finish(vec![
        ("file", doc::json(&file)),
        ("boot_time", doc::json(&boot)),
        ("sessions", doc::json(&sessions)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: i16, pid: i32, line: &str, user: &str, host: &str, sec: i32) -> Vec<u8> {
        let mut b = vec![0u8; UTMP_SIZE];
        b[0..2].copy_from_slice(&kind.to_le_bytes());
        b[4..8].copy_from_slice(&pid.to_le_bytes());
        b[8..8 + line.len()].copy_from_slice(line.as_bytes());
        b[44..44 + user.len()].copy_from_slice(user.as_bytes());
        b[76..76 + host.len()].copy_from_slice(host.as_bytes());
        b[340..344].copy_from_slice(&sec.to_le_bytes());
        b
    }

    #[test]
    fn sessions_boot_and_a_partial_record() {
        let mut b = record(BOOT_TIME, 0, "~", "reboot", "6.1.0", 1_700_000_000);
        b.extend(record(
            USER_PROCESS,
            4242,
            "pts/0",
            "root",
            "203.0.113.9",
            1_700_000_100,
        ));
        b.extend(record(8, 99, "pts/1", "", "", 1_700_000_200));
        b.extend(record(USER_PROCESS, 7, "tty1", "alice", "", 1_700_000_300));
        b.extend_from_slice(&[0xff; 100]);
        let (s, boot, partial) = parse(&b, &|pid| pid == 7);
        assert_eq!(boot.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].user, "root");
        assert_eq!(s[0].host, "203.0.113.9");
        assert!(!s[0].process_alive);
        assert!(s[1].process_alive);
        assert_eq!(
            partial.as_deref(),
            Some("100 bytes at the end are not a whole record")
        );
    }

    #[test]
    fn utmp_is_read_beneath_the_root_through_a_var_run_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        std::fs::create_dir_all(t.path().join("var")).unwrap();
        // Absolute, as on a real system: resolves inside the root, not on this host.
        std::os::unix::fs::symlink("/run", t.path().join("var/run")).unwrap();
        std::fs::write(
            t.path().join("run/utmp"),
            record(
                USER_PROCESS,
                1,
                "pts/3",
                "mallory",
                "198.51.100.7",
                1_700_000_000,
            ),
        )
        .unwrap();
        let roots = Roots {
            proc: t.path().join("proc"),
            sys: t.path().join("sys"),
            dev: t.path().join("dev"),
            root: t.path().to_owned(),
        };
        let a = collect(&roots);
        let v: serde_json::Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(v["file"], "/var/run/utmp");
        assert_eq!(v["sessions"][0]["user"], "mallory");
        assert_eq!(v["sessions"][0]["process_alive"], false);
        assert!(
            a.notes.iter().any(|n| n.contains("stale utmp record")),
            "{:?}",
            a.notes
        );
    }
}
