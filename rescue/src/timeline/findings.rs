//! Triage findings as events: each finding in a `findings.json` (schema `rescue.triage/1`:
//! `findings[].path`, `.why`, `.severity`, `.evidence.{mtime,ctime,atime,crtime,...}`) becomes one event
//! per time its evidence carries (UNIX seconds, or RFC 3339 text); critical, high and medium findings are
//! flagged with the finding's reason.
//! A finding without any time is kept with the unparsed records, never dropped.

use std::path::Path;

use super::event::Event;
use super::logs::syslog::{Stamp, iso_time};
use super::logs::{FileStats, Sink};

/// Errors reading a findings file.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    #[error("reading the findings file {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a rescue.triage/1 findings file: {why}")]
    Schema {
        path: std::path::PathBuf,
        why: String,
    },
    #[error("passing on a finding from {path}")]
    Sink {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `timestamp_desc` for an evidence time key.
fn desc(key: &str) -> &'static str {
    match key {
        "mtime" => "Content Modification Time",
        "ctime" => "Metadata Modification Time",
        "atime" => "Last Access Time",
        "crtime" | "btime" | "birthtime" => "Creation Time",
        _ => "Finding Time",
    }
}

fn micros(v: &serde_json::Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n * 1_000_000);
    }
    if let Some(f) = v.as_f64() {
        return Some((f * 1e6) as i64);
    }
    match iso_time(v.as_str()?) {
        Some((Stamp::Utc(t), _)) => Some(t),
        _ => None,
    }
}

/// Reads `path` and hands every finding to `sink`.
pub fn read(path: &Path, host: &str, sink: &mut dyn Sink) -> Result<FileStats, FindingsError> {
    let bytes = std::fs::read(path).map_err(|source| FindingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let schema = |why: &str| FindingsError::Schema {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| schema(&e.to_string()))?;
    match doc.get("schema").and_then(|s| s.as_str()) {
        Some("rescue.triage/1") => {}
        Some(other) => return Err(schema(&format!("schema is {other:?}"))),
        None => return Err(schema("no `schema` field")),
    }
    let list = doc
        .get("findings")
        .and_then(|f| f.as_array())
        .ok_or_else(|| schema("no `findings` array"))?;
    let shown = path.display().to_string();
    let mut stats = FileStats::default();
    let sink_err = |source| FindingsError::Sink {
        path: path.to_owned(),
        source,
    };
    for (i, f) in list.iter().enumerate() {
        stats.lines += 1;
        let s = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (fpath, why, severity) = (s("path"), s("why"), s("severity"));
        let mut times = Vec::new();
        if let Some(ev) = f.get("evidence").and_then(|e| e.as_object()) {
            for (k, v) in ev {
                if (k.ends_with("time") || k == "time")
                    && let Some(t) = micros(v)
                {
                    times.push((k.as_str(), t));
                }
            }
        }
        if times.is_empty() {
            stats.unparsed += 1;
            sink.unparsed(
                &shown,
                i as u64 + 1,
                &f.to_string(),
                "finding without a time",
            )
            .map_err(sink_err)?;
            continue;
        }
        for (k, t) in times {
            let msg = format!("{severity} finding: {why}: {fpath} ({k})");
            let mut e = Event::new(t, desc(k), "triage", fpath, host, msg)
                .attr("severity", severity)
                .attr("findings_file", shown.as_str());
            // Low and info findings are context (a file in the window), not leads.
            if matches!(severity, "critical" | "high" | "medium") {
                e = e.flag(if why.is_empty() {
                    "triage finding"
                } else {
                    why
                });
            }
            if let Some(kind) = f.get("kind").or_else(|| f.get("category")) {
                e = e.attr("finding_kind", kind.clone());
            }
            stats.events += 1;
            sink.event(e).map_err(sink_err)?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::logs::testutil::Collect;

    #[test]
    fn findings_become_flagged_events_per_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("findings.json");
        std::fs::write(
            &p,
            r#"{"schema":"rescue.triage/1","findings":[
              {"path":"/root/.ssh/authorized_keys","why":"SSH key added","severity":"high",
               "evidence":{"mtime":1700000000,"ctime":"2023-11-14T22:13:21.123456789Z","sha256":"ab"}},
              {"path":"/etc/ld.so.preload","why":"preload present","severity":"critical","evidence":{}}]}"#,
        )
        .unwrap();
        let mut c = Collect::default();
        let s = read(&p, "web1", &mut c).unwrap();
        assert_eq!((s.events, s.unparsed), (2, 1));
        let m = c
            .events
            .iter()
            .find(|e| e.timestamp_desc == "Content Modification Time")
            .unwrap();
        assert_eq!(m.timestamp, 1_700_000_000_000_000);
        assert_eq!(m.suspicious.as_deref(), Some("SSH key added"));
        assert_eq!(m.path, "/root/.ssh/authorized_keys");
        let ct = c
            .events
            .iter()
            .find(|e| e.timestamp_desc == "Metadata Modification Time")
            .unwrap();
        assert_eq!(ct.timestamp, 1_700_000_001_123_456);
        assert!(c.unparsed[0].1.contains("ld.so.preload"));

        std::fs::write(&p, r#"{"schema":"other/1","findings":[]}"#).unwrap();
        assert!(read(&p, "h", &mut c).is_err());
    }
}
