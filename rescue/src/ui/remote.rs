//! CLI glue for acquisitions to and verification from an S3-compatible store (`--out s3://…`,
//! `verify s3://…`; options in [`crate::args::acquire::RemoteArgs`]): credentials (never echoed),
//! progress, the clock-skew notice, the summary, and the case-log entries inside the rescue system. The engine is [`crate::s3`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::acquire::{AcquireStatus, ImageFormat, Phase, error_chain};
use crate::s3::http::Trust;
use crate::s3::upload::{UploadEvent, UploadOptions};
use crate::s3::{S3Url, Store, StoreConfig, credentials};

use super::acquire::{EXIT_INCOMPLETE, EXIT_MISMATCH, EXIT_UNREADABLE, EXIT_UNVERIFIED};
use crate::args::acquire::{AcquireArgs, FormatArg, RemoteArgs, VerifyArgs};

/// True when `p` names an object-store location.
pub fn is_s3(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// Test hook: `RESCUE_TEST_CLOCK_ERROR_SECS=N` pretends the local clock is N seconds off (a wrong RTC),
/// so tests can show the skew correction. Read only here, never in the engine. Only with the
/// `test-hooks` feature: the release binary records the clock as it is.
#[cfg(feature = "test-hooks")]
fn clock_error() -> i64 {
    std::env::var("RESCUE_TEST_CLOCK_ERROR_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(not(feature = "test-hooks"))]
fn clock_error() -> i64 {
    0
}

pub(crate) fn store_config(r: &RemoteArgs, bucket: &str) -> anyhow::Result<StoreConfig> {
    let endpoint = r
        .endpoint
        .clone()
        .ok_or_else(|| anyhow::anyhow!("an s3:// location needs --endpoint URL"))?;
    let credentials = match &r.credentials {
        Some(path) => {
            let (c, world_readable) = credentials::load_file(path)?;
            if world_readable {
                eprintln!(
                    "warning: {} is readable by every user; keep credentials files mode 0600",
                    path.display()
                );
            }
            c
        }
        None => credentials::from_env()?,
    };
    let trust = if r.insecure {
        Trust::Insecure
    } else if let Some(ca) = &r.ca {
        Trust::CaFile(ca.clone())
    } else {
        Trust::System
    };
    Ok(StoreConfig {
        endpoint,
        region: r.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
        bucket: bucket.to_owned(),
        credentials,
        trust,
        timeout: Duration::from_secs(60),
        local_clock_error: clock_error(),
    })
}

pub(crate) fn parse_url(p: &Path) -> anyhow::Result<S3Url> {
    let s = p.to_string_lossy();
    S3Url::parse(&s).ok_or_else(|| anyhow::anyhow!("{s:?} is not s3://BUCKET[/PREFIX]"))
}

fn case_log(kind: &str, line: &str, detail: serde_json::Value) {
    if crate::system::in_rescue_system() {
        super::case::log_command(kind, line, detail);
    }
}

fn progress_line(json: bool, p: &crate::acquire::Progress, started: std::time::Instant) {
    if json {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "progress".into());
        }
        println!("{v}");
        return;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!(
        "{}: {} / {} read, {} stored, {}/s",
        match p.phase {
            Phase::Verify => "verify",
            Phase::VerifySource => "verify-source",
            Phase::Acquire | Phase::Rehash => "upload",
        },
        crate::devices::human_size(p.done_bytes),
        crate::devices::human_size(p.total_bytes),
        crate::devices::human_size(p.durable_bytes),
        crate::devices::human_size((p.done_bytes as f64 / secs) as u64),
    );
}

/// `acquire SOURCE --out s3://…`.
pub fn run_acquire(args: &AcquireArgs) -> anyhow::Result<u8> {
    super::acquire::install_signal_handlers();
    let url = parse_url(&args.out)?;
    let store = store_config(&args.remote, &url.bucket)?;
    let endpoint = store.endpoint.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = UploadOptions {
        source: args.source.clone(),
        url,
        store,
        insecure: args.remote.insecure,
        ca_file: args.remote.ca.as_ref().map(|p| p.display().to_string()),
        hashes: args.hash.clone().map(|h| h.0),
        window: args.window,
        format: args.format.map(|f| match f {
            FormatArg::Raw => ImageFormat::Raw,
            FormatArg::Zstd => ImageFormat::Zstd,
        }),
        split: args.split,
        zstd_level: args.zstd_level,
        verify_source: args.verify_source,
        case: args.case_info(),
        retries: args.retries,
        resume: args.resume,
        block_size: args
            .block_size
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        frame_size: args
            .frame_size
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        // The kill-at-offset test hook needs every part recorded as it lands.
        state_interval: super::acquire::abort_after().map(|_| Duration::ZERO),
        cancel: Arc::clone(&cancel),
    };
    if args.remote.insecure {
        eprintln!(
            "warning: --insecure: the store's TLS certificate is not checked (recorded in the manifest)"
        );
    }
    let abort = super::acquire::abort_after();
    let started = std::time::Instant::now();
    let mut last = None::<std::time::Instant>;
    let every = if args.json {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let result = crate::s3::upload(&opts, &mut |e| match e {
        UploadEvent::Progress(p) => {
            if super::acquire::signalled() {
                cancel.store(true, Ordering::Relaxed);
            }
            super::acquire::interrupt_reread(p);
            if let Some((limit, signal)) = abort
                && p.phase == Phase::Acquire
                && p.durable_bytes >= limit
                && !super::acquire::signalled()
            {
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
            }
            if last.is_none_or(|l| l.elapsed() >= every) || p.done_bytes == p.total_bytes {
                last = Some(std::time::Instant::now());
                progress_line(args.json, p, started);
            }
        }
        UploadEvent::ClockSkew { offset_secs } => {
            eprintln!(
                "notice: this machine's clock differs from the store's by {offset_secs} s (store ahead); signing with the store's time and recording the offset"
            );
            case_log(
                "clock",
                "store clock offset",
                serde_json::json!({"endpoint": endpoint, "offset_secs": offset_secs}),
            );
        }
        UploadEvent::Resuming { parts, bytes } => {
            eprintln!(
                "resuming: the store holds {parts} parts ({}); re-reading the source to check them",
                crate::devices::human_size(*bytes)
            );
        }
        UploadEvent::NothingStored => {
            eprintln!(
                "resuming: nothing is stored under the prefix yet (the run stopped before its first write); starting the upload"
            );
        }
        UploadEvent::Restarting { file, part, reason } => {
            eprintln!(
                "resume: the store holds part {part} of {file} from the interrupted run but lists no checksum for it and refuses to replace it ({reason}); aborted that multipart upload and uploading {file} again from the start"
            );
        }
    });
    match result {
        Ok(out) => {
            let code = match out.status {
                AcquireStatus::Complete => 0,
                AcquireStatus::CompleteWithUnreadable => EXIT_UNREADABLE,
                AcquireStatus::SourceMismatch => EXIT_MISMATCH,
                AcquireStatus::Interrupted => EXIT_INCOMPLETE,
                AcquireStatus::SourceUnverified => EXIT_UNVERIFIED,
            };
            case_log(
                "remote",
                "acquisition to object store",
                serde_json::json!({
                    "url": out.url.to_string(),
                    "endpoint": endpoint,
                    "status": out.status,
                    "hashes": out.manifest.hashes,
                    "clock_offset_secs": out.manifest.remote.as_ref().and_then(|r| r.clock_offset_secs),
                    "insecure": args.remote.insecure,
                }),
            );
            if args.json {
                super::acquire::json_line(
                    "result",
                    serde_json::json!({
                        "status": out.status,
                        "exit_code": code,
                        "url": out.url.to_string(),
                        "reused_parts": out.reused_parts,
                        "manifest": out.manifest,
                    }),
                );
            } else if out.status == AcquireStatus::Interrupted {
                println!(
                    "interrupted: {} bytes of the source stored at {}; continue with the same command and --resume",
                    out.manifest.acquired_bytes, out.url
                );
            } else {
                let m = &out.manifest;
                println!("acquired {} → {}", m.source.path, out.url);
                println!(
                    "  {} bytes ({}) in {} parts of {} bytes ({} already in the store were checked and kept)",
                    m.source.size_bytes,
                    m.image.format,
                    m.remote.as_ref().map_or(0, |r| r.parts.len()),
                    m.remote.as_ref().map_or(0, |r| r.part_bytes),
                    out.reused_parts
                );
                for o in &m.outputs {
                    println!(
                        "  {:<16} {:>14} bytes  sha256 {}",
                        o.file, o.size_bytes, o.sha256
                    );
                }
                for (algo, digest) in &m.hashes {
                    println!("  {algo:<7} {digest}");
                }
                if let Some(o) = m.remote.as_ref().and_then(|r| r.clock_offset_secs) {
                    println!("  clock offset to the store: {o} s (recorded)");
                }
                if !m.unreadable.is_empty() {
                    println!("  UNREADABLE: {} extents zero-filled", m.unreadable.len());
                }
                match &m.source_verification {
                    Some(v) if v.matched => {
                        println!("  source re-read (--verify-source): hashes match");
                    }
                    Some(_) => println!(
                        "  SOURCE RE-READ GAVE DIFFERENT HASHES (--verify-source): the source changed or reads unstably"
                    ),
                    None => {}
                }
            }
            Ok(code)
        }
        Err(err) => {
            let code = if err.is_resumable() {
                EXIT_INCOMPLETE
            } else {
                1
            };
            case_log(
                "remote",
                "acquisition to object store failed",
                serde_json::json!({"error": error_chain(&err), "exit": code}),
            );
            if args.json {
                super::acquire::json_line(
                    "error",
                    serde_json::json!({ "message": error_chain(&err), "exit_code": code }),
                );
            }
            super::print_error(&anyhow::Error::new(err));
            Ok(code)
        }
    }
}

/// `verify s3://…`.
pub fn run_verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    super::acquire::install_signal_handlers();
    let url = parse_url(&args.dir)?;
    let store = Store::new(store_config(&args.remote, &url.bucket)?)?;
    let cancel = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let mut last = None::<std::time::Instant>;
    let result = crate::s3::verify::verify(&store, &url, &cancel, &mut |p| {
        if super::acquire::signalled() {
            cancel.store(true, Ordering::Relaxed);
        }
        if last.is_none_or(|l| l.elapsed() >= Duration::from_secs(5)) {
            last = Some(std::time::Instant::now());
            progress_line(args.json, p, started);
        }
    });
    let report = match result {
        Ok(r) => r,
        Err(err) => {
            let code = match &err {
                crate::s3::verify::RemoteVerifyError::ParseManifest { .. } => EXIT_MISMATCH,
                crate::s3::verify::RemoteVerifyError::RejectIncomplete { .. }
                | crate::s3::verify::RemoteVerifyError::Interrupted => EXIT_INCOMPLETE,
                _ => 1,
            };
            if args.json {
                super::acquire::json_line(
                    "error",
                    serde_json::json!({ "message": error_chain(&err), "exit_code": code }),
                );
            }
            super::print_error(&anyhow::Error::new(err));
            return Ok(code);
        }
    };
    let code = if report.ok { 0 } else { EXIT_MISMATCH };
    if args.json {
        super::acquire::json_line(
            "result",
            serde_json::json!({ "exit_code": code, "report": report }),
        );
    } else if report.ok {
        println!(
            "verified {}: {} checks match, {} bytes in {} parts re-downloaded",
            report.url,
            report.checks.len(),
            report.bytes,
            report.parts
        );
    } else {
        println!("VERIFICATION FAILED for {}", report.url);
        for c in report.checks.iter().filter(|c| !c.ok) {
            println!(
                "  mismatch: {}: expected {}, found {}",
                c.what, c.expected, c.actual
            );
        }
        if let Some(p) = report.first_bad_part {
            match &report.first_bad_object {
                Some(o) => println!("  first bad part: {p} of {o}"),
                None => println!("  first bad part: {p}"),
            }
        }
        if let Some(w) = &report.first_bad_window {
            println!(
                "  first bad window: {} (bytes {}..{})",
                w.index,
                w.offset,
                w.offset.saturating_add(w.length)
            );
        }
    }
    Ok(code)
}
