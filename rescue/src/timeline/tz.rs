//! The time zone zone-less log times are read in (syslog, dpkg.log, nginx error.log, ...): `--tz ZONE`
//! (`UTC`, `+02:00`, or a zone name looked up in the examined root's zoneinfo), else the examined
//! system's own `/etc/timezone` or `/etc/localtime`, read from the root, never from the host. A zone
//! that cannot be known is said so: times are then read as UTC and every such event says it.
//!
//! TZif (RFC 8536) versions 1–4: the 64-bit transitions, and the footer's POSIX TZ rule
//! (`CET-1CEST,M3.5.0,M10.5.0/3`) for times after the last transition.

use std::fs;
use std::path::{Path, PathBuf};

use super::event::{Civil, days_from_civil};

/// Errors choosing a zone.
#[derive(Debug, thiserror::Error)]
pub enum TzError {
    #[error("time zone {zone:?} is neither UTC, an offset like +02:00, nor a zone in {searched}")]
    UnknownZone { zone: String, searched: String },
    #[error("{path} is not a TZif time zone file")]
    NotTzif { path: PathBuf },
}

/// How the zone was chosen (said in the output).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZoneChoice {
    /// `Europe/Berlin`, `+02:00`, `UTC`, or `unknown`.
    pub name: String,
    /// `--tz`, `/etc/timezone of the examined root`, ...; or why it is unknown.
    pub from: String,
    pub known: bool,
}

/// A zone: local wall-clock time ↔ UTC.
#[derive(Debug, Clone)]
pub struct Zone {
    pub choice: ZoneChoice,
    rules: Rules,
}

#[derive(Debug, Clone)]
enum Rules {
    Fixed(i64),
    Tzif {
        transitions: Vec<(i64, usize)>,
        offsets: Vec<i64>,
        /// The offset before the first transition.
        initial: i64,
        footer: Option<Posix>,
    },
}

impl Zone {
    /// UTC, labelled with where it came from.
    pub fn utc(from: &str) -> Self {
        Zone {
            choice: ZoneChoice {
                name: "UTC".into(),
                from: from.into(),
                known: true,
            },
            rules: Rules::Fixed(0),
        }
    }

    /// A zone nobody could name: times read as UTC, and `known` is false.
    pub fn unknown(why: &str) -> Self {
        Zone {
            choice: ZoneChoice {
                name: "unknown".into(),
                from: why.into(),
                known: false,
            },
            rules: Rules::Fixed(0),
        }
    }

    /// `--tz` if given, else the examined root's own zone, else unknown.
    pub fn choose(tz: Option<&str>, root: &Path) -> Result<Zone, TzError> {
        if let Some(z) = tz {
            return Zone::named(z, root, "--tz");
        }
        if let Ok(text) = fs::read_to_string(root.join("etc/timezone")) {
            let name = text.trim();
            if !name.is_empty()
                && let Ok(z) = Zone::named(name, root, "/etc/timezone of the examined root")
            {
                return Ok(z);
            }
        }
        let lt = root.join("etc/localtime");
        if let Ok(bytes) = fs::read(&lt) {
            // The link's target names the zone; the content is what counts.
            let name = fs::read_link(&lt)
                .ok()
                .and_then(|t| {
                    let s = t.to_string_lossy().into_owned();
                    s.split_once("zoneinfo/").map(|(_, n)| n.to_owned())
                })
                .unwrap_or_else(|| "localtime".into());
            if let Some(rules) = parse_tzif(&bytes) {
                return Ok(Zone {
                    choice: ZoneChoice {
                        name,
                        from: "/etc/localtime of the examined root".into(),
                        known: true,
                    },
                    rules,
                });
            }
        }
        // /etc/localtime is often an absolute symlink: resolve it inside the root.
        if let Ok(t) = fs::read_link(&lt) {
            let s = t.to_string_lossy().into_owned();
            if let Some((_, n)) = s.split_once("zoneinfo/")
                && let Ok(z) = Zone::named(n, root, "/etc/localtime of the examined root")
            {
                return Ok(z);
            }
        }
        Ok(Zone::unknown(
            "the examined root has no readable /etc/timezone or /etc/localtime and no --tz was given",
        ))
    }

    /// `UTC`, `Z`, `+HH:MM`/`-HHMM`, or a zone name in the root's (then the host's) zoneinfo.
    pub fn named(zone: &str, root: &Path, from: &str) -> Result<Zone, TzError> {
        let choice = |name: &str| ZoneChoice {
            name: name.to_owned(),
            from: from.to_owned(),
            known: true,
        };
        if [
            "UTC",
            "Z",
            "Etc/UTC",
            "GMT",
            "Etc/GMT",
            "UCT",
            "Universal",
            "Zulu",
        ]
        .contains(&zone)
        {
            return Ok(Zone {
                choice: choice(zone),
                rules: Rules::Fixed(0),
            });
        }
        if let Some(off) = parse_offset(zone) {
            return Ok(Zone {
                choice: choice(zone),
                rules: Rules::Fixed(off),
            });
        }
        let clean = !zone.is_empty()
            && !zone.starts_with('/')
            && zone
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        let places = [
            root.join("usr/share/zoneinfo"),
            PathBuf::from("/usr/share/zoneinfo"),
        ];
        if clean {
            for dir in &places {
                let p = dir.join(zone);
                if let Ok(bytes) = fs::read(&p) {
                    let rules = parse_tzif(&bytes).ok_or(TzError::NotTzif { path: p.clone() })?;
                    let mut c = choice(zone);
                    if !p.starts_with(root) || root == Path::new("/") {
                        c.from = format!("{from} (rules from {})", p.display());
                    }
                    return Ok(Zone { choice: c, rules });
                }
            }
        }
        Err(TzError::UnknownZone {
            zone: zone.to_owned(),
            searched: places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
        })
    }

    /// The UTC offset (seconds east) in force at a UTC instant.
    pub fn offset_at(&self, utc: i64) -> i64 {
        match &self.rules {
            Rules::Fixed(o) => *o,
            Rules::Tzif {
                transitions,
                offsets,
                initial,
                footer,
            } => {
                let i = transitions.partition_point(|(t, _)| *t <= utc);
                if i == 0 {
                    return *initial;
                }
                if i == transitions.len()
                    && let Some(p) = footer
                {
                    return p.offset_at(utc);
                }
                offsets[transitions[i - 1].1]
            }
        }
    }

    /// A local wall-clock time → UTC seconds (in a DST fold, the first of the two instants).
    pub fn to_utc(&self, local: &Civil) -> i64 {
        let l = local.as_utc_seconds();
        // The offsets in force a day either side cover any transition near this time.
        let before = l - self.offset_at(l - 86_400);
        let after = l - self.offset_at(l + 86_400);
        let fits = |u: i64| l - self.offset_at(u) == u;
        match (fits(before), fits(after)) {
            (true, true) => before.min(after),
            (true, false) => before,
            (false, true) => after,
            // A local time the clock skipped (spring forward): read with the offset before the gap.
            (false, false) => before,
        }
    }
}

/// `+02:00`, `-0530`, `+2` → seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i64>().ok()?, 0)
    } else {
        let (h, m) = digits.split_at(digits.len() - 2);
        (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)
    };
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a TZif file (the 64-bit part when the version has one).
fn parse_tzif(b: &[u8]) -> Option<Rules> {
    if b.get(..4)? != b"TZif" {
        return None;
    }
    let counts = |at: usize| -> Option<[usize; 6]> {
        let mut c = [0usize; 6];
        for (i, v) in c.iter_mut().enumerate() {
            *v = be32(b, at + 20 + 4 * i)? as usize;
        }
        Some(c)
    };
    let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(0)?;
    if [isut, isstd, leap, timecnt, typecnt, charcnt]
        .iter()
        .any(|&n| n > b.len())
    {
        return None;
    }
    let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
    let (base, width, c) = if *b.get(4)? >= b'2' {
        let h2 = 44 + v1_len;
        if b.get(h2..h2 + 4)? != b"TZif" {
            return None;
        }
        (h2, 8usize, counts(h2)?)
    } else {
        (0, 4usize, [isut, isstd, leap, timecnt, typecnt, charcnt])
    };
    let [isut, isstd, leap, timecnt, typecnt, charcnt] = c;
    // Counts larger than the file are lies; never allocate for them.
    if typecnt == 0 || c.iter().any(|&n| n > b.len()) {
        return None;
    }
    let mut at = base + 44;
    let mut times = Vec::with_capacity(timecnt);
    for i in 0..timecnt {
        let p = at + i * width;
        let t = if width == 8 {
            i64::from_be_bytes(b.get(p..p + 8)?.try_into().ok()?)
        } else {
            i64::from(be32(b, p)? as i32)
        };
        times.push(t);
    }
    at += timecnt * width;
    let idx = b.get(at..at + timecnt)?;
    at += timecnt;
    let mut offsets = Vec::with_capacity(typecnt);
    let mut isdst = Vec::with_capacity(typecnt);
    for i in 0..typecnt {
        offsets.push(i64::from(be32(b, at + i * 6)? as i32));
        isdst.push(*b.get(at + i * 6 + 4)? != 0);
    }
    at += typecnt * 6 + charcnt + leap * (width + 4) + isstd + isut;
    let transitions: Vec<(i64, usize)> = times
        .into_iter()
        .zip(idx.iter().map(|&i| usize::from(i).min(typecnt - 1)))
        .collect();
    let initial = (0..typecnt)
        .find(|&i| !isdst[i])
        .map(|i| offsets[i])
        .unwrap_or(offsets[0]);
    let footer = if width == 8 {
        b.get(at..)
            .and_then(|rest| rest.strip_prefix(b"\n"))
            .and_then(|rest| rest.split(|&c| c == b'\n').next())
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(Posix::parse)
    } else {
        None
    };
    if transitions.is_empty()
        && let Some(p) = &footer
        && p.dst.is_none()
    {
        return Some(Rules::Fixed(p.std));
    }
    Some(Rules::Tzif {
        transitions,
        offsets,
        initial,
        footer,
    })
}

/// A POSIX TZ rule: standard offset, and optionally DST with its start and end (`Mm.w.d/time`).
#[derive(Debug, Clone)]
struct Posix {
    std: i64,
    dst: Option<(i64, Rule, Rule)>,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Month, week (5 = last), weekday (0 = Sunday), local seconds.
    MonthWeekDay(u32, u32, u32, i64),
    /// Julian day 1–365 ignoring Feb 29, local seconds.
    Julian(u32, i64),
    /// Zero-based day of year, local seconds.
    Day(u32, i64),
}

impl Posix {
    fn parse(s: &str) -> Option<Posix> {
        let mut p = s;
        let name = |p: &mut &str| -> Option<()> {
            if let Some(r) = p.strip_prefix('<') {
                let end = r.find('>')?;
                *p = &r[end + 1..];
            } else {
                let n = p
                    .find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(p.len());
                if n < 3 {
                    return None;
                }
                *p = &p[n..];
            }
            Some(())
        };
        // [+-]hh[:mm[:ss]], hours up to 167 for rule times.
        let time = |p: &mut &str| -> Option<i64> {
            let (sign, r) = match p.as_bytes().first() {
                Some(b'-') => (-1, &p[1..]),
                Some(b'+') => (1, &p[1..]),
                _ => (1, *p),
            };
            let end = r
                .find(|c: char| !(c.is_ascii_digit() || c == ':'))
                .unwrap_or(r.len());
            let mut secs = 0i64;
            for (i, part) in r[..end].split(':').enumerate() {
                let v: i64 = part.parse().ok()?;
                secs += v * [3600, 60, 1].get(i)?;
            }
            *p = &r[end..];
            Some(sign * secs)
        };
        let rule = |p: &mut &str| -> Option<Rule> {
            let r = p.strip_prefix(',')?;
            let end = r.find([',', '/']).unwrap_or(r.len());
            let spec = &r[..end];
            *p = &r[end..];
            let at = if let Some(rest) = p.strip_prefix('/') {
                *p = rest;
                time(p)?
            } else {
                7200
            };
            if let Some(m) = spec.strip_prefix('M') {
                let mut it = m.split('.').map(|x| x.parse::<u32>().ok());
                let (mo, w, d) = (it.next()??, it.next()??, it.next()??);
                ((1..=12).contains(&mo) && (1..=5).contains(&w) && d <= 6)
                    .then_some(Rule::MonthWeekDay(mo, w, d, at))
            } else if let Some(j) = spec.strip_prefix('J') {
                Some(Rule::Julian(j.parse().ok()?, at))
            } else {
                Some(Rule::Day(spec.parse().ok()?, at))
            }
        };
        name(&mut p)?;
        let std = -time(&mut p)?;
        if p.is_empty() {
            return Some(Posix { std, dst: None });
        }
        name(&mut p)?;
        let dst_off = if p.starts_with(',') || p.is_empty() {
            std + 3600
        } else {
            -time(&mut p)?
        };
        let start = rule(&mut p)?;
        let end = rule(&mut p)?;
        Some(Posix {
            std,
            dst: Some((dst_off, start, end)),
        })
    }

    fn offset_at(&self, utc: i64) -> i64 {
        let Some((dst, start, end)) = self.dst else {
            return self.std;
        };
        let year = super::event::civil(utc + self.std).0;
        // Transition instants in UTC: start is given in standard local time, end in DST local time.
        let s = start.local_seconds(year) - self.std;
        let e = end.local_seconds(year) - dst;
        let in_dst = if s < e {
            utc >= s && utc < e
        } else {
            utc >= s || utc < e
        };
        if in_dst { dst } else { self.std }
    }
}

impl Rule {
    /// Seconds since the epoch of this rule's moment in `year`, in the rule's local time.
    fn local_seconds(self, year: i64) -> i64 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match self {
            Rule::MonthWeekDay(m, w, d, at) => {
                let first = days_from_civil(year, m, 1);
                // 1970-01-01 was a Thursday (4).
                let wd_first = (first + 4).rem_euclid(7) as u32;
                let mut day = 1 + (d + 7 - wd_first) % 7 + 7 * (w - 1);
                let dim = [
                    31,
                    if leap { 29 } else { 28 },
                    31,
                    30,
                    31,
                    30,
                    31,
                    31,
                    30,
                    31,
                    30,
                    31,
                ][m as usize - 1];
                while day > dim {
                    day -= 7;
                }
                days_from_civil(year, m, day) * 86_400 + at
            }
            Rule::Julian(n, at) => {
                let mut doy = i64::from(n.clamp(1, 365)) - 1;
                if leap && n >= 60 {
                    doy += 1;
                }
                (days_from_civil(year, 1, 1) + doy) * 86_400 + at
            }
            Rule::Day(n, at) => (days_from_civil(year, 1, 1) + i64::from(n)) * 86_400 + at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civ(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> Civil {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: 0,
            micros: 0,
        }
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+02:00"), Some(7200));
        assert_eq!(parse_offset("-0530"), Some(-19800));
        assert_eq!(parse_offset("+2"), Some(7200));
        assert_eq!(parse_offset("Europe/Berlin"), None);
    }

    #[test]
    fn posix_rule_gives_summer_and_winter_time() {
        let p = Posix::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2040-07-01 12:00 UTC: summer; 2040-01-15: winter.
        assert_eq!(p.offset_at(civ(2040, 7, 1, 12, 0).as_utc_seconds()), 7200);
        assert_eq!(p.offset_at(civ(2040, 1, 15, 12, 0).as_utc_seconds()), 3600);
        // Last Sunday of March 2040 is the 25th: the switch is at 01:00 UTC.
        assert_eq!(p.offset_at(civ(2040, 3, 25, 0, 59).as_utc_seconds()), 3600);
        assert_eq!(p.offset_at(civ(2040, 3, 25, 1, 0).as_utc_seconds()), 7200);
        let s = Posix::parse("<-03>3").unwrap();
        assert_eq!(s.offset_at(0), -10800);
    }

    /// The host's tzdata is an independent reference: Berlin is +01:00 in winter, +02:00 in summer,
    /// and a local time converts back to the UTC instant `date` would give.
    #[test]
    fn tzif_from_zoneinfo_converts_local_times() {
        let root = tempfile::tempdir().unwrap();
        let Ok(z) = Zone::named("Europe/Berlin", root.path(), "--tz") else {
            assert!(
                std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
                "tzdata (/usr/share/zoneinfo) is needed"
            );
            return;
        };
        // 2024-07-01 14:00 CEST = 12:00 UTC; 2024-01-15 13:00 CET = 12:00 UTC.
        assert_eq!(
            z.to_utc(&civ(2024, 7, 1, 14, 0)),
            civ(2024, 7, 1, 12, 0).as_utc_seconds()
        );
        assert_eq!(
            z.to_utc(&civ(2024, 1, 15, 13, 0)),
            civ(2024, 1, 15, 12, 0).as_utc_seconds()
        );
        // Beyond the table (2050): the footer rule.
        assert_eq!(
            z.to_utc(&civ(2050, 7, 1, 14, 0)),
            civ(2050, 7, 1, 12, 0).as_utc_seconds()
        );
    }

    #[test]
    fn cut_or_lying_tzif_files_are_refused_not_a_panic() {
        let Ok(b) = fs::read("/usr/share/zoneinfo/Europe/Berlin") else {
            return;
        };
        for n in (0..b.len()).step_by(7) {
            let _ = parse_tzif(&b[..n]);
        }
        let mut lie = b.clone();
        lie[32..36].copy_from_slice(&u32::MAX.to_be_bytes()); // timecnt
        assert!(parse_tzif(&lie).is_none());
        assert!(parse_tzif(b"TZif").is_none());
    }

    #[test]
    fn the_examined_roots_zone_wins_over_the_hosts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/timezone"), "+05:30\n").unwrap();
        let z = Zone::choose(None, r).unwrap();
        assert_eq!(z.choice.name, "+05:30");
        assert!(z.choice.from.contains("examined root"));
        assert_eq!(
            z.to_utc(&civ(2024, 1, 1, 5, 30)),
            civ(2024, 1, 1, 0, 0).as_utc_seconds()
        );

        let empty = tempfile::tempdir().unwrap();
        let z = Zone::choose(None, empty.path()).unwrap();
        assert!(!z.choice.known);
        assert!(Zone::choose(Some("Mars/Olympus"), empty.path()).is_err());
        assert!(Zone::choose(Some("../../etc/passwd"), empty.path()).is_err());
    }
}
