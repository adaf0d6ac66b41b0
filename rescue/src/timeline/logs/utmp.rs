//! `wtmp`/`btmp` (glibc `struct utmp`, 384 bytes a record, x86-64 and the other 64-bit Linux ABIs) and
//! `lastlog` (292 bytes per UID, indexed by UID, sparse). Times are UTC seconds (+ microseconds in
//! utmp). A trailing partial record is kept as unparsed, never silently dropped.

use std::io::Read;

use super::{Context, LogError, LogKind, open};

/// Size of one `struct utmp`.
pub const UTMP_SIZE: usize = 384;
/// Size of one `struct lastlog` (i32 time, 32-byte line, 256-byte host).
pub const LASTLOG_SIZE: usize = 292;

/// One utmp record, the fields a timeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utmp {
    pub kind: i16,
    pub pid: i32,
    pub line: String,
    pub user: String,
    pub host: String,
    pub sec: i64,
    pub usec: i64,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn le32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes one 384-byte record.
pub fn decode(b: &[u8; UTMP_SIZE]) -> Utmp {
    Utmp {
        kind: i16::from_le_bytes([b[0], b[1]]),
        pid: le32(b, 4),
        line: cstr(&b[8..40]),
        user: cstr(&b[44..76]),
        host: cstr(&b[76..332]),
        sec: i64::from(le32(b, 340)),
        usec: i64::from(le32(b, 344)),
    }
}

/// What a record means, in words, and its `timestamp_desc`.
fn describe(u: &Utmp, btmp: bool) -> Option<(String, &'static str)> {
    let from = if u.host.is_empty() {
        String::new()
    } else {
        format!(" from {}", u.host)
    };
    Some(match (btmp, u.kind) {
        (true, _) => (
            format!("failed login: {} on {}{from}", u.user, u.line),
            "Failed Login",
        ),
        (_, 1) if u.user == "shutdown" => ("system shutdown".to_owned(), "Shutdown"),
        (_, 1) => (format!("runlevel change ({})", u.user), "Runlevel Change"),
        (_, 2) => (format!("system boot ({})", u.host), "Boot"),
        (_, 3) | (_, 4) => ("system clock changed".to_owned(), "Clock Change"),
        (_, 5) => (
            format!("init process {} ({})", u.pid, u.line),
            "Process Start",
        ),
        (_, 6) => (format!("login prompt on {}", u.line), "Login Prompt"),
        (_, 7) => (format!("login: {} on {}{from}", u.user, u.line), "Login"),
        (_, 8) => (format!("logout on {}", u.line), "Logout"),
        (_, 9) => ("accounting record".to_owned(), "Accounting"),
        _ => return None,
    })
}

pub fn parse(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let btmp = ctx.file.kind == LogKind::Btmp;
    let mut r = open(&ctx.file.real)?;
    let mut rec = [0u8; UTMP_SIZE];
    let mut n = 0u64;
    loop {
        let mut got = 0;
        while got < UTMP_SIZE {
            let k = r.read(&mut rec[got..]).map_err(|source| LogError::Read {
                path: ctx.file.real.clone(),
                source,
            })?;
            if k == 0 {
                break;
            }
            got += k;
        }
        if got == 0 {
            break;
        }
        n += 1;
        if got < UTMP_SIZE {
            let raw = hex::encode(&rec[..got]);
            ctx.unparsed(
                n,
                &raw,
                &format!("a partial utmp record of {got} bytes (hex)"),
            )?;
            break;
        }
        let u = decode(&rec);
        let Some((msg, desc)) = describe(&u, btmp) else {
            ctx.unparsed(
                n,
                &hex::encode(rec),
                &format!("utmp record of unknown type {} (hex)", u.kind),
            )?;
            continue;
        };
        // EMPTY: skipped in wtmp; in btmp only when the record holds nothing at all (a zeroed
        // record would be a "failed login" in 1970 at the start of the timeline), since some
        // writers leave the type of a real failed login at 0.
        if u.kind == 0 && (!btmp || (u.sec == 0 && u.user.is_empty() && u.host.is_empty())) {
            continue;
        }
        let mut e = ctx
            .event(u.sec * 1_000_000 + u.usec.clamp(0, 999_999), desc, msg)
            .attr("user", u.user.as_str())
            .attr("terminal", u.line.as_str())
            .attr("remote_host", u.host.as_str())
            .attr("pid", i64::from(u.pid))
            .attr("record", n);
        if !btmp && u.kind == 7 && u.user == "root" && !u.host.is_empty() {
            e = e.flag("root logged in from the network");
        }
        ctx.emit(e)?;
    }
    ctx.stats.lines = n;
    Ok(())
}

pub fn parse_lastlog(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let mut r = open(&ctx.file.real)?;
    let mut rec = [0u8; LASTLOG_SIZE];
    let mut uid = 0u64;
    loop {
        let mut got = 0;
        while got < LASTLOG_SIZE {
            let k = r.read(&mut rec[got..]).map_err(|source| LogError::Read {
                path: ctx.file.real.clone(),
                source,
            })?;
            if k == 0 {
                break;
            }
            got += k;
        }
        if got < LASTLOG_SIZE {
            if got > 0 && rec[..got].iter().any(|&b| b != 0) {
                ctx.unparsed(
                    uid + 1,
                    &hex::encode(&rec[..got]),
                    "a partial lastlog record (hex)",
                )?;
            }
            break;
        }
        let t = le32(&rec, 0);
        if t != 0 {
            let line = cstr(&rec[4..36]);
            let host = cstr(&rec[36..292]);
            let from = if host.is_empty() {
                String::new()
            } else {
                format!(" from {host}")
            };
            let e = ctx
                .event(
                    i64::from(t) * 1_000_000,
                    "Last Login",
                    format!("last login of UID {uid} on {line}{from}"),
                )
                .attr("uid", uid)
                .attr("terminal", line.as_str())
                .attr("remote_host", host.as_str());
            ctx.emit(e)?;
        }
        uid += 1;
    }
    ctx.stats.lines = uid;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::logs::testutil::run;
    use crate::timeline::tz::Zone;

    pub fn record(kind: i16, pid: i32, line: &str, user: &str, host: &str, sec: i32) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_SIZE];
        r[0..2].copy_from_slice(&kind.to_le_bytes());
        r[4..8].copy_from_slice(&pid.to_le_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r[340..344].copy_from_slice(&sec.to_le_bytes());
        r
    }

    #[test]
    fn wtmp_records_become_logins_and_a_partial_record_is_kept() {
        let mut f = record(2, 0, "~", "reboot", "6.1.0", 1_700_000_000);
        f.extend(record(7, 42, "pts/0", "root", "203.0.113.9", 1_700_000_100));
        f.extend(record(8, 42, "pts/0", "", "", 1_700_000_200));
        f.extend_from_slice(&[1, 2, 3]);
        let (c, s) = run(LogKind::Wtmp, "/var/log/wtmp", &f, 0, &Zone::utc("t"));
        assert_eq!((s.events, s.unparsed), (3, 1));
        assert_eq!(c.events[1].message, "login: root on pts/0 from 203.0.113.9");
        assert_eq!(c.events[1].timestamp, 1_700_000_100_000_000);
        assert!(c.events[1].suspicious.is_some());
        assert_eq!(c.events[2].timestamp_desc, "Logout");
        assert!(c.unparsed[0].2.contains("partial"));
    }

    #[test]
    fn a_zeroed_btmp_record_is_no_failed_login_in_1970() {
        let mut f = vec![0u8; UTMP_SIZE];
        f.extend(record(
            0,
            0,
            "ssh:notty",
            "admin",
            "198.51.100.7",
            1_700_000_300,
        ));
        f.extend(record(
            6,
            77,
            "ssh:notty",
            "oracle",
            "198.51.100.7",
            1_700_000_400,
        ));
        let (c, s) = run(LogKind::Btmp, "/var/log/btmp", &f, 0, &Zone::utc("t"));
        assert_eq!((s.events, s.unparsed), (2, 0), "{:?}", c.events);
        assert_eq!(c.events[0].timestamp, 1_700_000_300_000_000);
        assert_eq!(c.events[1].timestamp, 1_700_000_400_000_000);
    }

    #[test]
    fn lastlog_is_indexed_by_uid() {
        let mut f = vec![0u8; LASTLOG_SIZE * 1001];
        let at = LASTLOG_SIZE * 1000;
        f[at..at + 4].copy_from_slice(&1_700_000_000i32.to_le_bytes());
        f[at + 4..at + 9].copy_from_slice(b"pts/1");
        f[at + 36..at + 44].copy_from_slice(b"10.0.0.1");
        let (c, s) = run(LogKind::Lastlog, "/var/log/lastlog", &f, 0, &Zone::utc("t"));
        assert_eq!(s.events, 1);
        assert_eq!(
            c.events[0].message,
            "last login of UID 1000 on pts/1 from 10.0.0.1"
        );
    }
}
