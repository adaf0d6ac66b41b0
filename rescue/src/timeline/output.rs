//! Writing the sorted events: `timeline.jsonl` (one Timesketch event per line, attributes included) and
//! `timeline.csv` (the same events, the seven columns every line has, RFC 4180 quoting), and the summary
//! the case log records: events per source, the time span, the first suspicious event.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::event::{COLUMNS, Event};

/// What the written timeline holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Written {
    pub events: u64,
    pub per_source: BTreeMap<String, u64>,
    /// First and last event time (ISO 8601 UTC).
    pub first: Option<String>,
    pub last: Option<String>,
    /// The earliest event flagged suspicious: its time, source and message.
    pub first_suspicious: Option<FirstSuspicious>,
    pub suspicious: u64,
}

/// The earliest suspicious event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirstSuspicious {
    pub datetime: String,
    pub source: String,
    pub path: String,
    pub message: String,
    pub why: String,
}

/// Writes both files from sorted JSON lines; call [`TimelineWriter::line`] per event in order.
pub struct TimelineWriter<J: Write, C: Write> {
    jsonl: J,
    csv: C,
    pub written: Written,
}

impl<J: Write, C: Write> TimelineWriter<J, C> {
    /// Starts both outputs (the CSV with its header).
    pub fn new(jsonl: J, mut csv: C) -> std::io::Result<Self> {
        writeln!(csv, "{}", COLUMNS.join(","))?;
        Ok(TimelineWriter {
            jsonl,
            csv,
            written: Written::default(),
        })
    }

    /// Writes one event given as its JSON line.
    pub fn line(&mut self, line: &str) -> std::io::Result<()> {
        let e: Event = serde_json::from_str(line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.jsonl.write_all(line.as_bytes())?;
        self.jsonl.write_all(b"\n")?;
        let ts = e.timestamp.to_string();
        let fields: [&str; 7] = [
            &e.datetime,
            &ts,
            &e.timestamp_desc,
            &e.message,
            &e.source,
            &e.path,
            &e.host,
        ];
        let mut row = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                row.push(',');
            }
            csv_field(&mut row, f);
        }
        row.push('\n');
        self.csv.write_all(row.as_bytes())?;

        let w = &mut self.written;
        w.events += 1;
        *w.per_source.entry(e.source.clone()).or_default() += 1;
        if w.first.is_none() {
            w.first = Some(e.datetime.clone());
        }
        w.last = Some(e.datetime.clone());
        if let Some(why) = &e.suspicious {
            w.suspicious += 1;
            if w.first_suspicious.is_none() {
                w.first_suspicious = Some(FirstSuspicious {
                    datetime: e.datetime.clone(),
                    source: e.source.clone(),
                    path: e.path.clone(),
                    message: e.message.clone(),
                    why: why.clone(),
                });
            }
        }
        Ok(())
    }

    /// Flushes both outputs and returns them with the summary.
    pub fn finish(mut self) -> std::io::Result<(J, C, Written)> {
        self.jsonl.flush()?;
        self.csv.flush()?;
        Ok((self.jsonl, self.csv, self.written))
    }
}

/// Appends a CSV field, quoted when it holds a comma, quote, CR or LF.
fn csv_field(out: &mut String, f: &str) {
    if f.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_carry_the_same_events() {
        let mut w = TimelineWriter::new(Vec::new(), Vec::new()).unwrap();
        let a = Event::new(
            1_000_000,
            "Entry Written",
            "auth.log",
            "/var/log/auth.log",
            "h",
            "plain".into(),
        );
        let b = Event::new(
            2_000_000,
            "Entry Written",
            "syslog",
            "/var/log/syslog",
            "h",
            "say \"hi\", twice\nok".into(),
        )
        .flag("odd");
        w.line(&a.to_line()).unwrap();
        w.line(&b.to_line()).unwrap();
        let (j, c, s) = w.finish().unwrap();
        let j = String::from_utf8(j).unwrap();
        let c = String::from_utf8(c).unwrap();
        assert_eq!(j.lines().count(), 2);
        assert_eq!(
            c,
            "datetime,timestamp,timestamp_desc,message,source,path,host\n\
             1970-01-01T00:00:01+00:00,1000000,Entry Written,plain,auth.log,/var/log/auth.log,h\n\
             1970-01-01T00:00:02+00:00,2000000,Entry Written,\"say \"\"hi\"\", twice\nok\",syslog,/var/log/syslog,h\n"
        );
        assert_eq!(s.events, 2);
        assert_eq!(s.per_source["syslog"], 1);
        assert_eq!(s.first.as_deref(), Some("1970-01-01T00:00:01+00:00"));
        assert_eq!(s.first_suspicious.unwrap().why, "odd");
    }
}
