//! One event on the timeline, in the shape Timesketch imports: `message`, `datetime` (ISO 8601 UTC),
//! `timestamp` (integer microseconds since the epoch), `timestamp_desc`, plus `source`, `path`, `host`
//! and any attributes a parser adds (user, address, pid, how the year was inferred, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The columns every output line carries, in CSV order.
pub const COLUMNS: [&str; 7] = [
    "datetime",
    "timestamp",
    "timestamp_desc",
    "message",
    "source",
    "path",
    "host",
];

/// One event. `timestamp` is UTC microseconds; `datetime` is derived from it when written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub message: String,
    pub datetime: String,
    pub timestamp: i64,
    pub timestamp_desc: String,
    /// The parser: `auth.log`, `syslog`, `journal`, `wtmp`, `dpkg`, `triage`, ...
    pub source: String,
    /// The file the event came from, as a path on the examined system (`/var/log/auth.log.2.gz`).
    pub path: String,
    pub host: String,
    /// Why a responder should look at this event first (failed logins, new users, findings, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<String>,
    /// Parser-specific fields, flattened into the JSON object.
    #[serde(flatten)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// An event at `timestamp` (UTC microseconds) with the required fields; `datetime` is filled in.
    pub fn new(
        timestamp: i64,
        timestamp_desc: &str,
        source: &str,
        path: &str,
        host: &str,
        message: String,
    ) -> Self {
        Event {
            message,
            datetime: iso8601(timestamp),
            timestamp,
            timestamp_desc: timestamp_desc.to_owned(),
            source: source.to_owned(),
            path: path.to_owned(),
            host: host.to_owned(),
            suspicious: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Adds an attribute (skipped when the value is empty).
    pub fn attr(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        let v = value.into();
        if v != serde_json::Value::String(String::new()) && !v.is_null() {
            self.attributes.insert(key.to_owned(), v);
        }
        self
    }

    /// Flags the event as suspicious, with the reason.
    pub fn flag(mut self, why: &str) -> Self {
        self.suspicious = Some(why.to_owned());
        self
    }

    /// The event as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `2024-01-02T03:04:05+00:00`, or with `.ffffff` when the time has microseconds.
pub fn iso8601(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let (y, mo, d, h, mi, s) = civil(secs);
    if us == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}+00:00")
    }
}

/// UNIX seconds → (year, month, day, hour, minute, second), UTC, proleptic Gregorian.
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// (year, month 1–12, day) at 00:00 UTC → UNIX seconds.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A wall-clock time with no zone: what a log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Civil {
    /// Checks ranges (a log line with month 13 is not a time; a year of more than four digits would
    /// overflow the microseconds since the epoch).
    pub fn valid(&self) -> bool {
        (0..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60
            && self.micros < 1_000_000
    }

    /// Seconds since the epoch if this wall-clock time were UTC.
    pub fn as_utc_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// `Jan` → 1 … `Dec` → 12 (English abbreviations, as syslog writes them).
pub fn month_number(abbr: &[u8]) -> Option<u32> {
    const M: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    M.iter()
        .position(|m| m.as_slice() == abbr)
        .map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_is_utc_with_optional_microseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            iso8601(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456+00:00"
        );
        assert_eq!(iso8601(-1_000_000), "1969-12-31T23:59:59+00:00");
        assert_eq!(iso8601(951_782_400_000_000), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn civil_round_trips() {
        for secs in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            -86_400 * 365,
        ] {
            let (y, m, d, h, mi, s) = civil(secs);
            let c = Civil {
                year: y,
                month: m,
                day: d,
                hour: h,
                minute: mi,
                second: s,
                micros: 0,
            };
            assert_eq!(c.as_utc_seconds(), secs);
        }
    }

    #[test]
    fn attributes_flatten_into_the_line() {
        let e = Event::new(
            1_000_000,
            "Entry Written",
            "auth.log",
            "/var/log/auth.log",
            "web1",
            "m".into(),
        )
        .attr("user", "root")
        .attr("empty", "")
        .flag("root login");
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).unwrap();
        assert_eq!(v["user"], "root");
        assert!(v.get("empty").is_none());
        assert_eq!(v["timestamp"], 1_000_000);
        assert_eq!(v["suspicious"], "root login");
        let back: Event = serde_json::from_str(&e.to_line()).unwrap();
        assert_eq!(back, e);
    }
}
