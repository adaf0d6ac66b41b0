//! syslog-style text logs: `auth.log`/`secure`, `syslog`/`messages` and friends, `yum.log`.
//!
//! Two timestamp forms: the traditional `Jan  2 03:04:05` (local time, no year) and RFC 3339
//! (`2024-01-02T03:04:05.123456+01:00`, rsyslog's high-precision format). For the traditional form the
//! year is inferred: a first pass counts the year boundaries (a month lower than the line before),
//! the file's mtime dates the last line (the last line was written at or before the file's mtime, so
//! a last month after the mtime's month means the year before), and every event says the year was
//! inferred and from what. Rotated files (`.1`, `.2.gz`) each carry their own mtime.

use super::heuristics;
use super::{Context, LogError, LogKind, for_each_line, num};
use crate::timeline::event::{Civil, civil, month_number};

/// A parsed line header: time, host, program, pid, and the message.
#[derive(Debug, PartialEq)]
pub struct Line<'a> {
    pub time: Stamp,
    pub host: Option<&'a str>,
    pub program: &'a str,
    pub pid: Option<&'a str>,
    pub message: &'a str,
}

/// A line's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stamp {
    /// `Mmm dd hh:mm:ss`: the year is not known.
    NoYear(Civil),
    /// RFC 3339 with its offset: UTC microseconds.
    Utc(i64),
    /// ISO date and time without an offset.
    Local(Civil),
}

/// `Jan  2 03:04:05` → month, day, h, m, s; and the rest after the time.
fn bsd_time(s: &str) -> Option<(Civil, &str)> {
    let b = s.as_bytes();
    if b.len() < 15 || !b[..15].is_ascii() || b[3] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = month_number(&b[..3])?;
    let day: u32 = num(s[4..6].trim_start())?;
    let (h, m, sec) = (num(&s[7..9])?, num(&s[10..12])?, num(&s[13..15])?);
    let mut rest = &s[15..];
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        micros = frac_micros(&frac[..end])?;
        rest = &frac[end..];
    }
    let c = Civil {
        year: 2000,
        month,
        day,
        hour: h,
        minute: m,
        second: sec,
        micros,
    };
    c.valid().then_some((c, rest))
}

fn frac_micros(d: &str) -> Option<u32> {
    if d.is_empty() || d.len() > 9 {
        return None;
    }
    let mut s = d.to_owned();
    while s.len() < 6 {
        s.push('0');
    }
    num::<u32>(&s[..6])
}

/// `2024-01-02T03:04:05[.ffffff][Z|+hh:mm|+hhmm]` (a space instead of `T` too) → the time and the rest.
pub fn iso_time(s: &str) -> Option<(Stamp, &str)> {
    let b = s.as_bytes();
    if b.len() < 19
        || !b[..19].is_ascii()
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let mut c = Civil {
        year: num(&s[0..4])?,
        month: num(&s[5..7])?,
        day: num(&s[8..10])?,
        hour: num(&s[11..13])?,
        minute: num(&s[14..16])?,
        second: num(&s[17..19])?,
        micros: 0,
    };
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix(['.', ',']) {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        c.micros = frac_micros(&frac[..end])?;
        rest = &frac[end..];
    }
    if !c.valid() {
        return None;
    }
    let utc = |off: i64, rest| {
        Some((
            Stamp::Utc((c.as_utc_seconds() - off) * 1_000_000 + i64::from(c.micros)),
            rest,
        ))
    };
    if let Some(r) = rest.strip_prefix('Z') {
        return utc(0, r);
    }
    let rb = rest.as_bytes();
    if rb.len() >= 5 && rb[..5].is_ascii() && (rb[0] == b'+' || rb[0] == b'-') {
        let sign = if rb[0] == b'-' { -1 } else { 1 };
        let (hh, mm, len) = if rb.len() >= 6 && rb[5].is_ascii() && rb[3] == b':' {
            (num::<i64>(&rest[1..3]), num::<i64>(&rest[4..6]), 6)
        } else {
            (num::<i64>(&rest[1..3]), num::<i64>(&rest[3..5]), 5)
        };
        if let (Some(h), Some(m)) = (hh, mm) {
            return utc(sign * (h * 3600 + m * 60), &rest[len..]);
        }
    }
    Some((Stamp::Local(c), rest))
}

/// Parses `TIME HOST PROGRAM[PID]: MESSAGE` (or `TIME MESSAGE` for yum.log, `with_host` false).
pub fn parse_line(s: &str, with_host: bool) -> Option<Line<'_>> {
    let (time, rest) = if let Some((c, r)) = bsd_time(s) {
        (Stamp::NoYear(c), r)
    } else {
        iso_time(s)?
    };
    let rest = rest.strip_prefix(' ')?;
    if !with_host {
        return Some(Line {
            time,
            host: None,
            program: "",
            pid: None,
            message: rest,
        });
    }
    let (host, rest) = rest.split_once(' ')?;
    // `program[pid]: message`, `program: message`; kernel lines are `kernel: [  1.2] ...`.
    let (tag, message) = match rest.split_once(": ") {
        Some((t, m)) if !t.contains(' ') => (t, m),
        _ => match rest.strip_suffix(':') {
            Some(t) if !t.contains(' ') => (t, ""),
            _ => ("", rest),
        },
    };
    let (program, pid) = match tag.split_once('[') {
        Some((p, r)) => (p, r.strip_suffix(']')),
        None => (tag, None),
    };
    Some(Line {
        time,
        host: Some(host),
        program,
        pid,
        message,
    })
}

/// The time of a traditional syslog line (year unknown), for the first pass.
fn no_year_time(s: &str) -> Option<Civil> {
    bsd_time(s).map(|(c, _)| c)
}

/// Where the year of a file's last line came from.
enum YearFrom {
    /// The file's mtime alone (no newer rotation to compare with).
    Mtime,
    /// The mtime, and the newer rotation's first line allows it.
    MtimeAndRotation(String),
    /// The newer rotation's first line: the mtime's year would put the last line after it.
    Rotation { newer: String, mtime_year: i64 },
}

pub fn parse(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let with_host = ctx.file.kind != LogKind::Yum;
    // Pass 1: year boundaries and the last line, for lines without a year.
    let mut rollovers = 0i64;
    let mut last: Option<Civil> = None;
    let path = ctx.file.real.clone();
    for_each_line(&path, |_, l, _| {
        if let Some(c) = no_year_time(l) {
            if last.is_some_and(|p| c.month < p.month) {
                rollovers += 1;
            }
            last = Some(c);
        }
        Ok(())
    })?;
    // The last line was written at or before the file's mtime: a last month after the mtime's month
    // means the year before. An older rotation's last line is at or before the newer rotation's
    // first: the latest year that keeps it so is a second bound. The earlier of the two wins (a
    // rotated file copied or touched later has an mtime that says nothing about its lines).
    let (my, mm, ..) = civil(ctx.file.mtime);
    let mut from = YearFrom::Mtime;
    let last_year = last.map(|c| {
        let by_mtime = if c.month <= mm { my } else { my - 1 };
        let Some(newer) = &ctx.newer else {
            return by_mtime;
        };
        let (by, ..) = civil(newer.first_time.div_euclid(1_000_000));
        let by_rotation = [by + 1, by, by - 1].into_iter().find(|&y| {
            let mut t = c;
            t.year = y;
            ctx.local(&t) <= newer.first_time
        });
        match by_rotation {
            Some(r) if r < by_mtime => {
                from = YearFrom::Rotation {
                    newer: newer.shown.clone(),
                    mtime_year: by_mtime,
                };
                r
            }
            _ => {
                from = YearFrom::MtimeAndRotation(newer.shown.clone());
                by_mtime
            }
        }
    });
    let base_year = last_year.map(|y| y - rollovers);
    let mtime_day = &crate::timeline::event::iso8601(ctx.file.mtime * 1_000_000)[..10];
    let rotation = if ctx.file.rotation > 0 {
        format!(", rotation {}", ctx.file.rotation)
    } else {
        String::new()
    };
    let newer_first = ctx
        .newer
        .as_ref()
        .map(|n| crate::timeline::event::iso8601(n.first_time))
        .unwrap_or_default();
    if let Some(y) = last_year {
        let boundaries = format!(
            "{} year boundar{} in the file",
            rollovers,
            if rollovers == 1 { "y" } else { "ies" }
        );
        ctx.stats.year_note = Some(match &from {
            YearFrom::Mtime => format!(
                "year inferred: the last line dated by the file's mtime ({}), {boundaries}{rotation}",
                crate::timeline::event::iso8601(ctx.file.mtime * 1_000_000),
            ),
            YearFrom::MtimeAndRotation(newer) => format!(
                "year inferred: the last line dated by the file's mtime ({}), {boundaries}{rotation}; \
                 consistent with the rotation order (the last line, in {y}, is not after the first \
                 line of {newer}, {newer_first})",
                crate::timeline::event::iso8601(ctx.file.mtime * 1_000_000),
            ),
            YearFrom::Rotation { newer, mtime_year } => format!(
                "year inferred from the rotation order: the last line is in {y}, the latest year that \
                 keeps it before the first line of {newer} ({newer_first}); the file's mtime ({}) \
                 would have put it in {mtime_year}, after that, so the mtime was not used; \
                 {boundaries}{rotation}",
                crate::timeline::event::iso8601(ctx.file.mtime * 1_000_000),
            ),
        });
    }
    // Short in each event; the whole reasoning is in the summary, per file.
    let note = match &from {
        YearFrom::Mtime => format!("from the file's mtime {mtime_day}{rotation}"),
        YearFrom::MtimeAndRotation(newer) => format!(
            "from the file's mtime {mtime_day}{rotation}; consistent with the rotation order \
             (before {newer})"
        ),
        YearFrom::Rotation { newer, .. } => format!(
            "from the rotation order: before the first line of {newer} ({}){rotation}; the file's \
             mtime {mtime_day} would be later",
            &newer_first[..newer_first.len().min(10)]
        ),
    };

    // Pass 2: events.
    let mut year_off = 0i64;
    let mut prev = None;
    let kind = ctx.file.kind;
    let desc = "Entry Written";
    let lines = for_each_line(&path, |n, l, cut| {
        let Some(line) = parse_line(l, with_host) else {
            return ctx.unparsed(n, l, "not a syslog line (TIME HOST PROGRAM: MESSAGE)");
        };
        let (micros, inferred, local) = match line.time {
            Stamp::Utc(us) => (us, false, false),
            Stamp::Local(c) => (ctx.local(&c), false, true),
            Stamp::NoYear(mut c) => {
                if prev.is_some_and(|p| c.month < p) {
                    year_off += 1;
                }
                prev = Some(c.month);
                c.year = base_year.unwrap_or(1970) + year_off;
                (ctx.local(&c), true, true)
            }
        };
        let host = line.host.unwrap_or(ctx.host).to_owned();
        let message = if line.program.is_empty() {
            line.message.to_owned()
        } else {
            format!("{}: {}", line.program, line.message)
        };
        let mut e = ctx.event(micros, desc, message);
        e.host = host;
        let mut e = e
            .attr("program", line.program)
            .attr("pid", line.pid.unwrap_or(""));
        if inferred {
            e = e.attr("year_inferred", note.as_str());
        }
        if local {
            e = e.attr("local_time", ctx.zone.choice.name.as_str());
        }
        if cut {
            e = e.attr("line_cut_at", super::MAX_LINE as u64);
        }
        if line.program.starts_with("sshd") {
            let (user, from) = heuristics::sshd_fields(line.message);
            e = e
                .attr("user", user.unwrap_or(""))
                .attr("from", from.unwrap_or(""));
        }
        if kind == LogKind::Yum {
            e.timestamp_desc = "Package Change".into();
        }
        if let Some(why) = heuristics::judge_message(line.program, line.message) {
            e = e.flag(why);
        }
        ctx.emit(e)
    })?;
    ctx.stats.lines = lines;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::event::iso8601;
    use crate::timeline::logs::testutil::run;
    use crate::timeline::tz::Zone;

    #[test]
    fn headers_parse_in_both_time_forms() {
        let l = parse_line(
            "Jan  2 03:04:05 web1 sshd[812]: Accepted password for root from 10.0.0.9 port 22 ssh2",
            true,
        )
        .unwrap();
        assert_eq!(l.host, Some("web1"));
        assert_eq!(l.program, "sshd");
        assert_eq!(l.pid, Some("812"));
        assert!(l.message.starts_with("Accepted"));
        let l = parse_line(
            "2024-03-01T10:00:00.250000+01:00 web1 CRON[5]: (root) CMD (x)",
            true,
        )
        .unwrap();
        assert_eq!(l.time, Stamp::Utc(1_709_283_600_250_000));
        let l = parse_line("Mar  1 10:00:00 web1 kernel: [    1.0] Linux version", true).unwrap();
        assert_eq!(l.program, "kernel");
        assert!(parse_line("garbage", true).is_none());
        assert!(parse_line("Foo  1 10:00:00 web1 x: y", true).is_none());
    }

    /// A file spanning New Year, last written in January 2025: December lines are 2024.
    #[test]
    fn the_year_comes_from_the_mtime_across_a_new_year() {
        let log =
            b"Dec 31 23:59:58 web1 sshd[1]: Failed password for root from 1.2.3.4 port 1 ssh2\n\
                    this line is noise\n\
                    Jan  1 00:00:01 web1 useradd[2]: new user: name=backdoor, UID=1001\n";
        // mtime 2025-01-01 12:00 UTC
        let zone = Zone::utc("test");
        let (c, stats) = run(
            LogKind::Auth,
            "/var/log/auth.log.1",
            log,
            1_735_732_800,
            &zone,
        );
        assert_eq!(stats.lines, 3);
        assert_eq!(stats.events, 2);
        assert_eq!(stats.unparsed, 1);
        assert_eq!(c.unparsed[0].1, "this line is noise");
        assert_eq!(iso8601(c.events[0].timestamp), "2024-12-31T23:59:58+00:00");
        assert_eq!(iso8601(c.events[1].timestamp), "2025-01-01T00:00:01+00:00");
        assert_eq!(
            c.events[1].suspicious.as_deref(),
            Some("user account created")
        );
        assert!(
            c.events[0].attributes["year_inferred"]
                .as_str()
                .unwrap()
                .contains("rotation 1")
        );
        assert_eq!(c.events[0].attributes["user"], "root");
        assert_eq!(c.events[0].attributes["from"], "1.2.3.4");
        assert_eq!(c.events[0].host, "web1");
    }

    /// A file whose last line is in a month after its mtime's month was last written the year before.
    #[test]
    fn a_last_month_after_the_mtime_means_the_year_before() {
        let log = b"Nov 20 08:00:00 h cron[1]: x\n";
        // mtime 2025-02-01
        let zone = Zone::named("+02:00", std::path::Path::new("/nonexistent"), "--tz").unwrap();
        let (c, _) = run(
            LogKind::Syslog,
            "/var/log/syslog",
            log,
            1_738_368_000,
            &zone,
        );
        assert_eq!(iso8601(c.events[0].timestamp), "2024-11-20T06:00:00+00:00");
        assert_eq!(c.events[0].attributes["local_time"], "+02:00");
    }

    /// auth.log.1 copied later (mtime 2025-12-01) while auth.log began on 2025-03-01: its April lines
    /// cannot be April 2025, they are the April before; the events and the summary say so.
    #[test]
    fn the_rotation_order_overrides_an_mtime_that_is_too_late() {
        use crate::timeline::logs::NewerRotation;
        use crate::timeline::logs::testutil::run_after;
        let zone = Zone::utc("test");
        let newer = NewerRotation {
            shown: "/var/log/auth.log".into(),
            first_time: 1_740_787_200_000_000, // 2025-03-01T00:00:00Z
        };
        let log = b"Apr 10 10:00:00 h sshd[1]: Failed password for root from 1.2.3.4 port 1 ssh2\n\
                    Apr 12 11:00:00 h sshd[2]: Failed password for root from 1.2.3.4 port 2 ssh2\n";
        let (c, stats) = run_after(
            LogKind::Auth,
            "/var/log/auth.log.1",
            log,
            1_764_547_200, // 2025-12-01
            &zone,
            Some(newer.clone()),
        );
        assert_eq!(iso8601(c.events[0].timestamp), "2024-04-10T10:00:00+00:00");
        assert_eq!(iso8601(c.events[1].timestamp), "2024-04-12T11:00:00+00:00");
        let why = c.events[0].attributes["year_inferred"].as_str().unwrap();
        assert!(why.contains("rotation order"), "{why}");
        assert!(why.contains("/var/log/auth.log"), "{why}");
        let note = stats.year_note.unwrap();
        assert!(
            note.contains("mtime (2025-12-01") && note.contains("in 2025"),
            "{note}"
        );
        assert_eq!(stats.first_time, Some(c.events[0].timestamp));

        // Without the newer rotation, the mtime alone would have said April 2025, after auth.log began.
        let (c, _) = run(
            LogKind::Auth,
            "/var/log/auth.log.1",
            log,
            1_764_547_200,
            &zone,
        );
        assert_eq!(iso8601(c.events[0].timestamp), "2025-04-10T10:00:00+00:00");

        // An mtime the rotation order agrees with is kept, and the events say both agree.
        let (c, _) = run_after(
            LogKind::Auth,
            "/var/log/auth.log.1",
            log,
            1_713_000_000, // 2024-04-13
            &zone,
            Some(newer),
        );
        assert_eq!(iso8601(c.events[0].timestamp), "2024-04-10T10:00:00+00:00");
        let why = c.events[0].attributes["year_inferred"].as_str().unwrap();
        assert!(
            why.contains("mtime 2024-04-13") && why.contains("consistent"),
            "{why}"
        );
    }

    #[test]
    fn unknown_zone_is_said_in_each_event() {
        let zone = Zone::unknown("no zone");
        let (c, _) = run(
            LogKind::Syslog,
            "/var/log/syslog",
            b"Nov 20 08:00:00 h cron[1]: x\n",
            1_738_368_000,
            &zone,
        );
        assert!(
            c.events[0].attributes["time_zone"]
                .as_str()
                .unwrap()
                .contains("unknown")
        );
    }
}
