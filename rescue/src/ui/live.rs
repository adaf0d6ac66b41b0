//! CLI glue for `rescue live` (grammar in [`crate::args::live`]): the case defaults inside the rescue
//! system, progress on stderr (each step, each collector, the memory sources, the capture's progress
//! line with rate and ETA), and the summary at the end, fitted to the console's width. The engine is
//! [`crate::live`].
//!
//! Exit codes: 0 everything collected; 3 memory captured with unreadable pages (zero-filled, listed in
//! the manifests); 5 stopped on request; 7 the volatile state was collected but memory was NOT (the
//! reason is printed and in `live-manifest.json`); 1 error, 2 usage.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::acquire::{AcquireStatus, ImageFormat, Progress};
use crate::args::live::{LiveArgs, LiveFormat};
use crate::devices::human_size;
use crate::live::outcheck::OutPlace;
use crate::live::{CaseLogAt, LiveEvent, LiveOptions, LiveOutcome, MemoryRecord, Roots};
use crate::s3::UploadOptions;

/// Exit code: memory was not captured; the volatile state was.
pub const EXIT_NO_MEMORY: u8 = 7;

/// Test hook: `RESCUE_TEST_LIVE_ROOT=DIR` reads `DIR/proc`, `DIR/sys`, `DIR/dev` and `DIR` instead of
/// the running system's, so a CLI test can capture a fixture's "memory". Only with `test-hooks`.
#[cfg(feature = "test-hooks")]
fn test_roots() -> Option<Roots> {
    let root = std::path::PathBuf::from(std::env::var_os("RESCUE_TEST_LIVE_ROOT")?);
    Some(Roots {
        proc: root.join("proc"),
        sys: root.join("sys"),
        dev: root.join("dev"),
        root,
    })
}

#[cfg(not(feature = "test-hooks"))]
fn test_roots() -> Option<Roots> {
    None
}

/// Test hook: `RESCUE_TEST_LIVE_OUT_PLACE=ram:FSTYPE` or `system:DISK:WHAT,WHAT` stands for what
/// `--out` lies on. Only with `test-hooks`.
#[cfg(feature = "test-hooks")]
fn test_place() -> Option<OutPlace> {
    let v = std::env::var("RESCUE_TEST_LIVE_OUT_PLACE").ok()?;
    let mut parts = v.splitn(3, ':');
    match (parts.next()?, parts.next(), parts.next()) {
        ("ram", Some(fstype), _) => Some(OutPlace::Ram {
            fstype: fstype.to_owned(),
        }),
        ("system", Some(disk), holds) => Some(OutPlace::SystemDisk {
            disk: disk.to_owned(),
            holds: holds
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect(),
        }),
        _ => Some(OutPlace::Separate),
    }
}

#[cfg(not(feature = "test-hooks"))]
fn test_place() -> Option<OutPlace> {
    None
}

/// Progress on stderr: one line redrawn in place on a terminal (twice a second at most), plain lines
/// every 5 s elsewhere.
struct Reporter {
    tty: bool,
    width: usize,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Reporter {
    fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{}", super::truncate(text, self.width.saturating_sub(1)));
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }

    fn memory(&mut self, p: &Progress) {
        let every = if self.tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let end = p.done_bytes >= p.total_bytes;
        if self.last.is_some_and(|l| l.elapsed() < every) && !end {
            return;
        }
        self.last = Some(Instant::now());
        let text = super::acquire::progress_line(
            "memory",
            p.done_bytes,
            p.total_bytes,
            self.started.elapsed().as_secs_f64(),
            self.width,
        );
        if self.tty {
            eprint!("\r\x1b[K{text}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            eprintln!("{text}");
        }
    }

    fn sources(&mut self, m: &MemoryRecord) {
        if let Some(mode) = &m.lockdown {
            self.line(&format!("  kernel lockdown: {mode}"));
        }
        if !m.ranges.is_empty() {
            let total: u64 = m.ranges.iter().map(|r| r.bytes()).sum();
            self.line(&format!(
                "  System RAM: {} in {} ranges",
                human_size(total),
                m.ranges.len()
            ));
        }
        for a in &m.sources {
            let mark = if a.used { "reading it" } else { "not used" };
            for l in super::wrap(
                &format!("  {}: {mark}: {}", a.source, a.detail),
                self.width.saturating_sub(1),
                4,
            ) {
                self.line(&l);
            }
        }
        self.started = Instant::now();
    }
}

/// Runs `rescue live` and returns the exit code.
pub fn run(args: &LiveArgs) -> anyhow::Result<u8> {
    super::acquire::install_signal_handlers();
    let mut case = args.case_info();
    let in_rescue = crate::system::in_rescue_system();
    if in_rescue {
        let locked = crate::case::Locked::open()?;
        case.case_id = case.case_id.or_else(|| locked.state.case_id.clone());
        case.examiner = case.examiner.or_else(|| locked.state.examiner.clone());
        case.clock_offset_seconds = case
            .clock_offset_seconds
            .or(locked.state.clock_offset_seconds);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let s3 = if super::remote::is_s3(&args.out) {
        let url = super::remote::parse_url(&args.out)?;
        let store = super::remote::store_config(&args.remote, &url.bucket)?;
        let host = crate::host::probe();
        // The prefix of an acquisition's default: CASE/HOST-SERIAL/EVIDENCE-ID (else `live`)/.
        let url = url.with_default_prefix(&case, host.dmi_serial.as_deref(), "live");
        if args.remote.insecure {
            eprintln!(
                "warning: --insecure: the store's TLS certificate is not checked (recorded in the manifest)"
            );
        }
        let upload = UploadOptions {
            source: "memory".into(),
            url: url.clone(),
            store,
            insecure: args.remote.insecure,
            ca_file: args.remote.ca.as_ref().map(|p| p.display().to_string()),
            hashes: None,
            window: None,
            format: None,
            split: None,
            zstd_level: None,
            verify_source: false,
            case: case.clone(),
            retries: None,
            resume: false,
            block_size: None,
            frame_size: None,
            state_interval: None,
            cancel: Arc::clone(&cancel),
        };
        Some((url, upload))
    } else {
        None
    };
    let command: Vec<String> = std::env::args().collect();
    let opts = LiveOptions {
        out: s3
            .as_ref()
            .map_or_else(|| args.out.clone(), |(u, _)| u.to_string().into()),
        s3,
        memory: !args.no_memory,
        format: match args.format {
            LiveFormat::Lime => ImageFormat::Raw,
            LiveFormat::LimeZstd => ImageFormat::Zstd,
        },
        hashes: args.hash.clone().map(|h| h.0),
        window: args.window,
        case,
        allow_local_out: args.allow_local_out,
        place: test_place(),
        roots: test_roots().unwrap_or_else(Roots::host),
        case_log: if in_rescue {
            CaseLogAt::RescueCase
        } else {
            CaseLogAt::OutDir
        },
        command: command.join(" "),
        cancel: Arc::clone(&cancel),
    };
    let mut rep = Reporter {
        tty: std::io::stderr().is_terminal(),
        width: super::columns(),
        started: Instant::now(),
        last: None,
        drawn: false,
    };
    let abort = super::acquire::abort_after();
    let outcome = crate::live::run(&opts, &mut |e| match e {
        LiveEvent::Step(s) => rep.line(&format!("{s}:")),
        LiveEvent::Collector(c) => rep.line(&format!("  {c}")),
        LiveEvent::Sources(m) => rep.sources(m),
        LiveEvent::Memory(p) => {
            // Test hook (`test-hooks` only): a signal once the capture has read this many bytes.
            if let Some((limit, signal)) = abort
                && p.done_bytes >= limit
                && !super::acquire::signalled()
            {
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
            }
            if super::acquire::signalled() {
                cancel.store(true, Ordering::Relaxed);
            }
            rep.memory(p);
        }
    });
    rep.clear();
    let outcome = outcome?;
    print_summary(&outcome, super::columns());
    let m = &outcome.manifest.memory;
    Ok(match m.status {
        Some(AcquireStatus::Interrupted) => super::acquire::EXIT_INCOMPLETE,
        _ if m.requested && !m.captured => EXIT_NO_MEMORY,
        Some(AcquireStatus::CompleteWithUnreadable) => super::acquire::EXIT_UNREADABLE,
        _ => 0,
    })
}

fn print_summary(o: &LiveOutcome, width: usize) {
    let width = width.saturating_sub(1);
    let m = &o.manifest;
    let mut lines = vec![format!(
        "live response of {} written to {}",
        m.host.hostname.as_deref().unwrap_or("this host"),
        o.out.display()
    )];
    for s in &m.steps {
        let files = s.files.len();
        lines.push(format!(
            "  {:<15} {} to {}{}",
            s.step,
            s.started_at,
            s.finished_at,
            if s.step == "memory" {
                String::new()
            } else {
                format!(", {files} files")
            }
        ));
    }
    let mem = &m.memory;
    if mem.captured {
        lines.push(format!(
            "  memory: {} of System RAM, {} ({})",
            human_size(mem.ranges.iter().map(|r| r.bytes()).sum()),
            mem.image.as_deref().unwrap_or("-"),
            mem.format.as_deref().unwrap_or("-")
        ));
        for (algo, digest) in &mem.hashes {
            lines.push(format!("    {algo:<7} {digest}"));
        }
        if !mem.unreadable.is_empty() {
            let bytes: u64 = mem.unreadable.iter().map(|e| e.length).sum();
            lines.push(format!(
                "    {} unreadable in {} physical ranges (zero-filled; listed in live-manifest.json)",
                human_size(bytes),
                mem.unreadable.len()
            ));
        }
    } else if mem.requested {
        lines.push(format!(
            "  MEMORY NOT CAPTURED: {}",
            mem.reason.as_deref().unwrap_or("no reason recorded")
        ));
        for a in &mem.sources {
            lines.push(format!("    {}: {}", a.source, a.detail));
        }
    } else {
        lines.push("  memory: not requested (--no-memory)".to_owned());
    }
    if !o.out.to_string_lossy().starts_with("s3://") {
        lines.push(format!(
            "  check: cd {} && sha256sum -c SHA256SUMS",
            o.out.display()
        ));
    }
    for l in lines {
        for w in super::wrap(&l, width, 4) {
            println!("{}", w.trim_end());
        }
    }
}
