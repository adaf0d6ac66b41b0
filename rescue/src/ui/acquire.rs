//! CLI glue for `rescue acquire` and `rescue verify` (grammar in [`crate::args::acquire`]):
//! signal-driven cancellation, progress rendering (one line fitted to the terminal's width, plain
//! lines otherwise, JSON lines with `--json`) and the final summary. The engine is [`crate::acquire`];
//! this is the only acquisition code that prints.
//!
//! Exit codes: 0 complete (or verified), 1 error, 2 usage, 3 complete with unreadable sectors,
//! 4 verification mismatch (`verify`, also for a damaged manifest, or `--verify-source`), 5 incomplete:
//! interrupted or destination full, continue with `--resume`, 6 the image is complete and its hashes
//! final, but the `--verify-source` re-read was interrupted, so the source was not compared (neither
//! success, which would claim a check that did not happen, nor 4, which would claim the source changed,
//! nor 5, since there is nothing to resume).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::acquire::manifest::ManifestError;
use crate::acquire::{
    self, AcquireOptions, AcquireStatus, ImageFormat, Phase, Progress, VerifyError, error_chain,
};
use crate::args::acquire::{AcquireArgs, FormatArg, VerifyArgs};

/// Exit code: complete, but some sectors were unreadable (zero-filled, listed in the manifest).
pub const EXIT_UNREADABLE: u8 = 3;
/// Exit code: a hash did not match (verify, or `--verify-source`).
pub const EXIT_MISMATCH: u8 = 4;
/// Exit code: the acquisition is incomplete (interrupted, destination full); `--resume` continues it.
pub const EXIT_INCOMPLETE: u8 = 5;
/// Exit code: complete, but the `--verify-source` re-read was interrupted; the source was not compared.
pub const EXIT_UNVERIFIED: u8 = 6;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT/SIGTERM arrived (after [`install_signal_handlers`]).
pub(crate) fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM ask the engine to stop at the next block, checkpoint and write an incomplete manifest.
pub(crate) fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    // A console runs many commands in one process: a Ctrl-C that stopped the last one must not stop this one.
    SIGNALLED.store(false, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Renders progress at most twice a second.
struct Reporter {
    json: bool,
    /// A terminal on stderr: one progress line that indicatif redraws in place.
    bar: Option<indicatif::ProgressBar>,
    phase: Option<Phase>,
    last: Option<Instant>,
    every: Duration,
    started: Instant,
    width: usize,
}

/// stderr as indicatif's terminal, with the width the console really has (probed on a serial line,
/// where the kernel reports none) less one column, so that neither the line nor indicatif's padding
/// reaches the last column and wraps to a second row.
#[derive(Debug)]
struct Console {
    width: u16,
}

impl indicatif::TermLike for Console {
    fn width(&self) -> u16 {
        self.width
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write_str("\r\x1b[K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

impl Reporter {
    fn new(json: bool) -> Self {
        let width = super::columns();
        // indicatif draws (in place, at most twice a second: 115200 baud is about 11 KB/s); the line's
        // layout is ours, fitted to the console's width (`progress_line`).
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let target = indicatif::ProgressDrawTarget::term_like_with_hz(
                Box::new(Console {
                    width: u16::try_from(width.saturating_sub(1).max(1)).unwrap_or(u16::MAX),
                }),
                2,
            );
            let bar = indicatif::ProgressBar::with_draw_target(None, target);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg}") {
                bar.set_style(style);
            }
            bar
        });
        let every = if json {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        Self {
            json,
            bar,
            phase: None,
            last: None,
            every,
            started: Instant::now(),
            width,
        }
    }

    fn update(&mut self, p: &Progress) {
        let new_phase = self.phase != Some(p.phase);
        if new_phase {
            self.phase = Some(p.phase);
            self.started = Instant::now();
        }
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            bar.set_message(progress_line(
                phase_name(p.phase),
                p.done_bytes,
                p.total_bytes,
                self.started.elapsed().as_secs_f64(),
                self.width,
            ));
            if new_phase || p.done_bytes >= p.total_bytes {
                // A phase's start and end are shown whatever the rate limit.
                bar.tick();
            }
            return;
        }
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.every)
            && p.done_bytes < p.total_bytes
        {
            return;
        }
        self.last = Some(now);
        if self.json {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), "progress".into());
            }
            println!("{v}");
        } else {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let pct = if p.total_bytes == 0 {
                100.0
            } else {
                p.done_bytes as f64 * 100.0 / p.total_bytes as f64
            };
            eprintln!(
                "{}: {} / {} ({pct:.0}%), {}/s, {} unreadable",
                phase_name(p.phase),
                crate::devices::human_size(p.done_bytes),
                crate::devices::human_size(p.total_bytes),
                crate::devices::human_size((p.done_bytes as f64 / secs) as u64),
                crate::devices::human_size(p.unreadable_bytes),
            );
        }
    }

    /// Runs `f` with the bar hidden (to ask a question under it).
    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Clears the progress line.
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One progress line that fits in `width` columns (one column spare, for terminals that wrap as soon as
/// the last column is written): phase, percentage, a bar, and as room allows bytes done, rate and ETA.
pub(crate) fn progress_line(
    phase: &str,
    done: u64,
    total: u64,
    elapsed_secs: f64,
    width: usize,
) -> String {
    use crate::devices::human_size;
    let limit = width.saturating_sub(1).max(1);
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let left = format!("{phase} {:>3}%", (frac * 100.0).floor() as u64);
    let rate = done as f64 / elapsed_secs.max(1e-3);
    let eta = if rate >= 1.0 && done < total {
        let secs = ((total - done) as f64 / rate) as u64;
        format!("ETA {}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        "ETA -".to_owned()
    };
    let extras = [
        format!("{}/{}", human_size(done), human_size(total)),
        format!("{}/s", human_size(rate as u64)),
        eta,
    ];
    // The widest each extra can get for this total, so the bar keeps its width while the figures change.
    let widest = [
        format!("{}/{}", human_size(total), human_size(total)).len() + 2,
        "1023.9 MiB/s".len(),
        "ETA 999:59:59".len(),
    ];
    const MIN_BAR: usize = 10;
    // Drop the extras from the right while the line with a minimal bar would not fit.
    let mut kept = extras.len();
    let reserved = loop {
        let reserved: usize = widest[..kept].iter().map(|w| w + 1).sum();
        if kept == 0 || left.len() + 3 + MIN_BAR + reserved <= limit {
            break reserved;
        }
        kept -= 1;
    };
    let right: String = extras[..kept].iter().map(|e| format!(" {e}")).collect();
    let room = limit.saturating_sub(left.len() + 3 + reserved);
    if room < MIN_BAR.min(4) {
        return super::truncate(&left, limit);
    }
    let bar_width = room.min(40);
    let filled = ((frac * bar_width as f64) as usize).min(bar_width);
    let mut bar = "=".repeat(filled);
    if filled < bar_width {
        bar.push('>');
        bar.push_str(&" ".repeat(bar_width - filled - 1));
    }
    format!("{left} [{bar}]{right}")
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Rehash => "rehash",
        Phase::Acquire => "acquire",
        Phase::VerifySource => "re-read",
        Phase::Verify => "verify",
    }
}

/// Test hook: `RESCUE_TEST_ABORT_AFTER_BYTES=N` sends the process SIGKILL (or the signal named by
/// `RESCUE_TEST_ABORT_SIGNAL`, e.g. `SIGINT`) once a checkpoint covers at least N bytes, so CLI tests can
/// interrupt at a deterministic point. Read only here, never in the engine. Only with the `test-hooks`
/// feature, which the release binary does not have.
#[cfg(feature = "test-hooks")]
pub(crate) fn abort_after() -> Option<(u64, nix::sys::signal::Signal)> {
    let bytes = std::env::var("RESCUE_TEST_ABORT_AFTER_BYTES")
        .ok()?
        .parse()
        .ok()?;
    let signal = std::env::var("RESCUE_TEST_ABORT_SIGNAL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(nix::sys::signal::Signal::SIGKILL);
    Some((bytes, signal))
}

#[cfg(not(feature = "test-hooks"))]
pub(crate) fn abort_after() -> Option<(u64, nix::sys::signal::Signal)> {
    None
}

/// Test hook: `RESCUE_TEST_INTERRUPT_REREAD_AFTER_BYTES=N` sends this process SIGINT (a Ctrl-C) once
/// the `--verify-source` re-read has passed N bytes.
#[cfg(feature = "test-hooks")]
pub(crate) fn interrupt_reread(p: &Progress) {
    static SENT: AtomicBool = AtomicBool::new(false);
    let Some(limit) = std::env::var("RESCUE_TEST_INTERRUPT_REREAD_AFTER_BYTES")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    if p.phase == Phase::VerifySource && p.done_bytes >= limit && !SENT.swap(true, Ordering::SeqCst)
    {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGINT);
    }
}

#[cfg(not(feature = "test-hooks"))]
pub(crate) fn interrupt_reread(_: &Progress) {}

/// Ctrl-C during an acquisition: asks before stopping. Any answer but yes continues.
fn confirm_stop(resume_hint: &str) -> bool {
    eprintln!(
        "\nstop the acquisition? It stops cleanly and can be resumed later with:\n  {resume_hint}"
    );
    let answer = super::lineedit::read_line("stop? [y/N] ")
        .ok()
        .flatten()
        .unwrap_or_default();
    let stop = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !stop {
        eprintln!("continuing");
    }
    stop
}

pub(crate) fn json_line(kind: &str, body: serde_json::Value) {
    let mut v = body;
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), kind.into());
    }
    println!("{v}");
    let _ = std::io::stdout().flush();
}

/// Runs `rescue acquire` and returns the exit code.
pub fn run_acquire(args: &AcquireArgs) -> anyhow::Result<u8> {
    if super::remote::is_s3(&args.out) {
        return super::remote::run_acquire(args);
    }
    install_signal_handlers();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = AcquireOptions {
        source: args.source.clone(),
        out_dir: args.out.clone(),
        format: args.format.map(|f| match f {
            FormatArg::Raw => ImageFormat::Raw,
            FormatArg::Zstd => ImageFormat::Zstd,
        }),
        split: args.split,
        hashes: args.hash.clone().map(|h| h.0),
        window: args.window,
        case: args.case_info(),
        retries: args.retries,
        verify_source: args.verify_source,
        resume: args.resume,
        block_size: args
            .block_size
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        frame_size: args
            .frame_size
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        zstd_level: args.zstd_level,
        checkpoint_bytes: args.checkpoint_every,
        cancel: Arc::clone(&cancel),
    };
    let abort = abort_after();
    let mut reporter = Reporter::new(args.json);
    // On a terminal Ctrl-C asks first (the acquisition pauses meanwhile); elsewhere it stops at once.
    let ask = !args.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let resume_hint = format!(
        "rescue acquire {} --out {} --resume",
        args.source.display(),
        args.out.display()
    );
    let result = acquire::acquire(&opts, &mut |p| {
        if SIGNALLED.load(Ordering::Relaxed) && !cancel.load(Ordering::Relaxed) {
            let stop = !ask || reporter.suspend(|| confirm_stop(&resume_hint));
            if stop {
                cancel.store(true, Ordering::Relaxed);
            } else {
                SIGNALLED.store(false, Ordering::SeqCst);
            }
        }
        if let Some((limit, signal)) = abort
            && p.phase == Phase::Acquire
            && p.durable_bytes >= limit
            && !SIGNALLED.load(Ordering::Relaxed)
        {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
        }
        interrupt_reread(p);
        reporter.update(p);
    });
    reporter.finish();
    match result {
        Ok(out) => {
            let code = match out.status {
                AcquireStatus::Complete => 0,
                AcquireStatus::CompleteWithUnreadable => EXIT_UNREADABLE,
                AcquireStatus::SourceMismatch => EXIT_MISMATCH,
                AcquireStatus::Interrupted => EXIT_INCOMPLETE,
                AcquireStatus::SourceUnverified => EXIT_UNVERIFIED,
            };
            if args.json {
                json_line(
                    "result",
                    serde_json::json!({
                        "status": out.status,
                        "exit_code": code,
                        "dir": out.dir,
                        "manifest": out.manifest,
                    }),
                );
            } else {
                print_acquire_summary(&out);
            }
            Ok(code)
        }
        Err(err) => {
            let code = if err.is_resumable() {
                EXIT_INCOMPLETE
            } else {
                1
            };
            if args.json {
                json_line(
                    "error",
                    serde_json::json!({ "message": error_chain(&err), "exit_code": code }),
                );
            }
            if code == 1 {
                return Err(anyhow::Error::new(err));
            }
            crate::ui::print_error(&anyhow::Error::new(err));
            Ok(code)
        }
    }
}

fn print_acquire_summary(out: &acquire::AcquireOutcome) {
    print!("{}", acquire_summary(out, super::columns()));
}

/// Lines of text, each wrapped to `width` (continuations two columns in).
fn fitted(lines: &[String], width: usize) -> String {
    let mut text = String::new();
    for line in lines {
        for l in super::wrap(line, width, 2) {
            text.push_str(l.trim_end());
            text.push('\n');
        }
    }
    text
}

/// `  NAME    DIGEST` lines, the digest continuing under itself when the console is narrower.
fn digest_lines(
    text: &mut String,
    hashes: &std::collections::BTreeMap<String, String>,
    width: usize,
) {
    for (algo, digest) in hashes {
        for l in super::table::labelled(&format!("  {algo:<7} "), digest, width) {
            text.push_str(&l);
            text.push('\n');
        }
    }
}

/// What `acquire` says when it ends, every line at most `width` characters.
fn acquire_summary(out: &acquire::AcquireOutcome, width: usize) -> String {
    let m = &out.manifest;
    let head = match out.status {
        AcquireStatus::Interrupted => {
            // The command on a line of its own, so that it can be copied whole.
            return fitted(
                &[
                    format!(
                        "interrupted after {} of {}; continue with:",
                        crate::devices::human_size(m.acquired_bytes),
                        crate::devices::human_size(m.source.size_bytes),
                    ),
                    format!(
                        "  rescue acquire {} --out {} --resume",
                        m.source.path,
                        out.dir.display()
                    ),
                ],
                width,
            );
        }
        AcquireStatus::Complete => format!(
            "acquired {} ({} bytes) into {}",
            m.source.path,
            m.source.size_bytes,
            out.dir.display()
        ),
        AcquireStatus::CompleteWithUnreadable => {
            let bad: u64 = m.unreadable.iter().map(|e| e.length).sum();
            format!(
                "acquired {} into {} with {bad} unreadable bytes in {} extents (zero-filled; see unreadable.map)",
                m.source.path,
                out.dir.display(),
                m.unreadable.len()
            )
        }
        AcquireStatus::SourceMismatch => format!(
            "acquired {} into {}, but RE-READING THE SOURCE GAVE DIFFERENT HASHES",
            m.source.path,
            out.dir.display()
        ),
        AcquireStatus::SourceUnverified => format!(
            "acquired {} into {}; the source re-read (--verify-source) was interrupted, so the source was NOT compared",
            m.source.path,
            out.dir.display()
        ),
    };
    let mut text = fitted(&[head], width);
    digest_lines(&mut text, &m.hashes, width);
    let mut rest: Vec<String> = m
        .outputs
        .iter()
        .map(|o| format!("  wrote {} ({} bytes)", o.file, o.size_bytes))
        .collect();
    if let Some(v) = &m.source_verification {
        rest.push(format!(
            "  source re-read: {}",
            if v.matched {
                "hashes match"
            } else {
                "hashes differ"
            }
        ));
    }
    text.push_str(&fitted(&rest, width));
    text
}

/// Runs `rescue verify` and returns the exit code.
pub fn run_verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    if super::remote::is_s3(&args.dir) {
        return super::remote::run_verify(args);
    }
    install_signal_handlers();
    let cancel = AtomicBool::new(false);
    let mut reporter = Reporter::new(args.json);
    let result = acquire::verify(&args.dir, &cancel, &mut |p| {
        if SIGNALLED.load(Ordering::Relaxed) {
            cancel.store(true, Ordering::Relaxed);
        }
        reporter.update(p);
    });
    reporter.finish();
    let report = match result {
        Ok(r) => r,
        Err(err) => {
            let code = match &err {
                VerifyError::LoadManifest {
                    source: ManifestError::ReadManifest { .. },
                    ..
                } => 1,
                VerifyError::LoadManifest { .. } => EXIT_MISMATCH,
                VerifyError::RejectIncomplete { .. } | VerifyError::Interrupted => EXIT_INCOMPLETE,
                VerifyError::ReadImage(_) => 1,
            };
            if args.json {
                json_line(
                    "error",
                    serde_json::json!({ "message": error_chain(&err), "exit_code": code }),
                );
            }
            crate::ui::print_error(&anyhow::Error::new(err));
            return Ok(code);
        }
    };
    let code = if report.ok { 0 } else { EXIT_MISMATCH };
    if args.json {
        json_line(
            "result",
            serde_json::json!({ "exit_code": code, "report": report }),
        );
        return Ok(code);
    }
    print!("{}", verify_summary(&args.dir, &report, super::columns()));
    Ok(code)
}

/// What `verify` says when it ends, every line at most `width` characters.
fn verify_summary(dir: &std::path::Path, report: &acquire::VerifyReport, width: usize) -> String {
    if report.ok {
        return fitted(
            &[format!(
                "verified {}: {} checks match, {} bytes re-hashed",
                dir.display(),
                report.checks.len(),
                report.bytes
            )],
            width,
        );
    }
    let mut text = fitted(
        &[format!("VERIFICATION FAILED for {}", dir.display())],
        width,
    );
    for c in report.checks.iter().filter(|c| !c.ok) {
        text.push_str(&fitted(&[format!("  mismatch: {}:", c.what)], width));
        for l in super::table::labelled("    expected ", &c.expected, width)
            .into_iter()
            .chain(super::table::labelled("    found    ", &c.actual, width))
        {
            text.push_str(&l);
            text.push('\n');
        }
    }
    let mut rest = Vec::new();
    if let Some(e) = &report.image_error {
        rest.push(format!("  image error: {e}"));
    }
    if let Some(w) = &report.first_bad_window {
        rest.push(format!(
            "  first mismatching window: #{} at offset {} ({} bytes); {} window(s) differ",
            w.index, w.offset, w.length, report.bad_windows
        ));
    }
    if let Some(note) = &report.note {
        rest.push(format!("  {note}"));
    }
    text.push_str(&fitted(&rest, width));
    text
}

/// `rescue manifest DIR [--json]`: what an acquisition recorded, without re-reading the image.
pub fn run_manifest(dir: &std::path::Path, json: bool) -> anyhow::Result<u8> {
    let manifest = crate::acquire::manifest::Manifest::load(dir)?;
    if json {
        println!("{}", serde_json::to_string(&manifest)?);
        return Ok(0);
    }
    print!("{}", manifest_text(&manifest, super::columns()));
    Ok(0)
}

/// `manifest DIR` for people, every line at most `width` characters.
fn manifest_text(manifest: &crate::acquire::manifest::Manifest, width: usize) -> String {
    let mut lines = vec![
        format!(
            "source      {} ({} bytes)",
            manifest.source.path, manifest.source.size_bytes
        ),
        format!("started     {}", manifest.started_at),
        format!(
            "finished    {}",
            manifest.finished_at.as_deref().unwrap_or("-")
        ),
        format!(
            "complete    {}",
            if manifest.complete {
                "yes"
            } else {
                "NO (resume with --resume)"
            }
        ),
    ];
    let mut text = fitted(&lines, width);
    for (alg, hex) in &manifest.hashes {
        for l in super::table::labelled(&format!("{alg:<11} "), hex, width) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    let unreadable: u64 = manifest.unreadable.iter().map(|e| e.length).sum();
    lines = vec![match manifest.image.window_bytes {
        Some(size) => format!("windows     {} of {size} bytes", manifest.windows.len()),
        None => "windows     none recorded".to_owned(),
    }];
    lines.push(format!(
        "unreadable  {} range(s), {unreadable} bytes",
        manifest.unreadable.len()
    ));
    for e in &manifest.unreadable {
        lines.push(format!(
            "            offset {} length {}",
            e.offset, e.length
        ));
    }
    text.push_str(&fitted(&lines, width));
    for o in &manifest.outputs {
        text.push_str(&fitted(
            &[format!("output      {} {} bytes", o.file, o.size_bytes)],
            width,
        ));
        for l in super::table::labelled("            sha256 ", &o.sha256, width) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words and digests as a person reads them: everything but the whitespace the wrapping added.
    fn squeezed(text: &str) -> String {
        text.split_whitespace().collect()
    }

    #[test]
    fn acquire_verify_and_manifest_summaries_fit_80_and_40_columns() {
        use crate::acquire::hash::HashAlgorithm;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp
            .path()
            .join("source-disk-image-of-the-compromised-web-server.img");
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i / 511) as u8 ^ i as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let out = tmp
            .path()
            .join("CASE-2026-1205-webserver-intrusion")
            .join("evidence-0001-system-disk-acquired-on-site");
        let opts = AcquireOptions {
            source: src.clone(),
            out_dir: out.clone(),
            hashes: Some(vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512]),
            window: Some(1 << 20),
            ..Default::default()
        };
        let mut done = acquire::acquire(&opts, &mut |_| {}).unwrap();
        let manifest = crate::acquire::manifest::Manifest::load(&out).unwrap();
        let sha512 = manifest.hashes["sha512"].clone();
        assert_eq!(sha512.len(), 128);
        let mut img = std::fs::read(out.join("image.raw")).unwrap();
        img[(2 << 20) + 5] ^= 1;
        std::fs::write(out.join("image.raw"), img).unwrap();
        let report = acquire::verify(&out, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert!(!report.ok);
        for width in [80, 40] {
            let acquired = acquire_summary(&done, width);
            let verified = verify_summary(&out, &report, width);
            let shown = manifest_text(&manifest, width);
            for text in [&acquired, &verified, &shown] {
                assert!(super::super::widest(text) <= width, "{width}:\n{text}");
                assert!(squeezed(text).contains(&sha512), "{width}:\n{text}");
            }
            assert!(
                squeezed(&acquired).contains(&squeezed(&format!("into {}", out.display()))),
                "{acquired}"
            );
            assert!(
                squeezed(&verified).contains("firstmismatchingwindow:#2atoffset2097152"),
                "{verified}"
            );
        }
        // At 80 columns a digest is one line, and the resume command of an interrupted acquisition is a
        // line of its own that can be copied.
        let acquired = acquire_summary(&done, 80);
        let sha256 = &manifest.hashes["sha256"];
        assert!(
            acquired.lines().any(|l| l == format!("  sha256  {sha256}")),
            "{acquired}"
        );
        done.status = AcquireStatus::Interrupted;
        let interrupted = acquire_summary(&done, 200);
        assert_eq!(
            interrupted.lines().nth(1),
            Some(
                format!(
                    "  rescue acquire {} --out {} --resume",
                    done.manifest.source.path,
                    out.display()
                )
                .as_str()
            ),
            "{interrupted}"
        );
    }

    #[test]
    fn the_progress_line_fits_the_console() {
        for width in [132, 80, 40, 20] {
            for (done, total, secs) in [
                (0, 0, 0.0),
                (1 << 20, 1 << 40, 1.0),
                (999 << 30, 1000 << 30, 3601.5),
                ((1u64 << 50) - 1, 1 << 50, 1e9),
            ] {
                let line = progress_line("re-read", done, total, secs, width);
                assert!(line.len() < width, "{width}: {line:?}");
                assert!(line.starts_with("re-read "), "{line}");
            }
        }
        // At 80 columns everything is shown, with a bar.
        let line = progress_line("acquire", 1 << 30, 4 << 30, 10.0, 80);
        assert!(line.contains("1.0 GiB/4.0 GiB"), "{line}");
        assert!(line.contains("/s ETA 0:00:30"), "{line}");
        assert!(line.contains(" [====>    "), "{line}");
        // The bar keeps its width while the figures beside it change.
        let bar_of = |l: &str| l[l.find('[').unwrap()..=l.find(']').unwrap()].len();
        let later = progress_line("acquire", 3 << 30, 4 << 30, 2.0, 80);
        assert_eq!(bar_of(&line), bar_of(&later), "{line}\n{later}");
        // At 40 the percentage and a bar remain.
        let line = progress_line("acquire", 1 << 30, 4 << 30, 10.0, 40);
        assert!(line.starts_with("acquire  25% [==="), "{line}");
    }
}
