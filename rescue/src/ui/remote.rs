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
                notice(&format!(
                    "warning: {} is readable by every user; keep credentials files mode 0600",
                    path.display()
                ));
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
    let line = format!(
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
    super::esayln!("{line}");
}

/// A notice on stderr, wrapped to the console's width.
fn notice(text: &str) {
    super::esayln!("{text}");
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
        notice(
            "warning: --insecure: the store's TLS certificate is not checked (recorded in the manifest)",
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
            notice(&format!(
                "notice: this machine's clock differs from the store's by {offset_secs} s (store ahead); signing with the store's time and recording the offset"
            ));
            case_log(
                "clock",
                "store clock offset",
                serde_json::json!({"endpoint": endpoint, "offset_secs": offset_secs}),
            );
        }
        UploadEvent::Resuming { parts, bytes } => {
            notice(&format!(
                "resuming: the store holds {parts} parts ({}); re-reading the source to check them",
                crate::devices::human_size(*bytes)
            ));
        }
        UploadEvent::NothingStored => {
            notice(
                "resuming: nothing is stored under the prefix yet (the run stopped before its first write); starting the upload",
            );
        }
        UploadEvent::Restarting { file, part, reason } => {
            notice(&format!(
                "resume: the store holds part {part} of {file} from the interrupted run but lists no checksum for it and refuses to replace it ({reason}); aborted that multipart upload and uploading {file} again from the start"
            ));
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
            } else {
                print!("{}", acquire_summary(&out, super::columns()));
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
    } else {
        print!("{}", verify_summary(&report, super::columns()));
    }
    Ok(code)
}

/// What `acquire … --out s3://…` says when it ends, every line at most `width` characters.
fn acquire_summary(out: &crate::s3::upload::UploadOutcome, width: usize) -> String {
    let m = &out.manifest;
    if out.status == AcquireStatus::Interrupted {
        return super::wrap_text(
            &format!(
                "interrupted: {} bytes of the source stored at {}; continue with the same command and --resume",
                m.acquired_bytes, out.url
            ),
            width,
        );
    }
    let parts = m.remote.as_ref().map_or(0, |r| r.parts.len());
    let part_bytes = m.remote.as_ref().map_or(0, |r| r.part_bytes);
    let mut lines = vec![
        format!("acquired {} → {}", m.source.path, out.url),
        format!(
            "  {} bytes ({}) in {parts} parts of {part_bytes} bytes ({} already in the store were checked and kept)",
            m.source.size_bytes, m.image.format, out.reused_parts
        ),
    ];
    let mut text = String::new();
    let flush = |lines: &mut Vec<String>, text: &mut String| {
        for l in lines.drain(..) {
            text.push_str(&super::wrap_text(&l, width));
        }
    };
    flush(&mut lines, &mut text);
    for o in &m.outputs {
        lines.push(format!("  wrote {} ({} bytes)", o.file, o.size_bytes));
        flush(&mut lines, &mut text);
        for l in super::table::labelled("    sha256 ", &o.sha256, width) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    for (algo, digest) in &m.hashes {
        for l in super::table::labelled(&format!("  {algo:<7} "), digest, width) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    if let Some(o) = m.remote.as_ref().and_then(|r| r.clock_offset_secs) {
        lines.push(format!("  clock offset to the store: {o} s (recorded)"));
    }
    if !m.unreadable.is_empty() {
        lines.push(format!(
            "  UNREADABLE: {} extents zero-filled",
            m.unreadable.len()
        ));
    }
    match &m.source_verification {
        Some(v) if v.matched => {
            lines.push("  source re-read (--verify-source): hashes match".to_owned());
        }
        Some(_) => lines.push(
            "  SOURCE RE-READ GAVE DIFFERENT HASHES (--verify-source): the source changed or reads unstably"
                .to_owned(),
        ),
        None => {}
    }
    flush(&mut lines, &mut text);
    text
}

/// What `verify s3://…` says when it ends, every line at most `width` characters.
fn verify_summary(report: &crate::s3::verify::RemoteVerifyReport, width: usize) -> String {
    if report.ok {
        return super::wrap_text(
            &format!(
                "verified {}: {} checks match, {} bytes in {} parts re-downloaded",
                report.url,
                report.checks.len(),
                report.bytes,
                report.parts
            ),
            width,
        );
    }
    let mut text = super::wrap_text(&format!("VERIFICATION FAILED for {}", report.url), width);
    for c in report.checks.iter().filter(|c| !c.ok) {
        text.push_str(&super::wrap_text(
            &format!("  mismatch: {}:", c.what),
            width,
        ));
        for l in super::table::labelled("    expected ", &c.expected, width)
            .into_iter()
            .chain(super::table::labelled("    found    ", &c.actual, width))
        {
            text.push_str(&l);
            text.push('\n');
        }
    }
    if let Some(p) = report.first_bad_part {
        let line = match &report.first_bad_object {
            Some(o) => format!("  first bad part: {p} of {o}"),
            None => format!("  first bad part: {p}"),
        };
        text.push_str(&super::wrap_text(&line, width));
    }
    if let Some(w) = &report.first_bad_window {
        text.push_str(&super::wrap_text(
            &format!(
                "  first bad window: {} (bytes {}..{})",
                w.index,
                w.offset,
                w.offset.saturating_add(w.length)
            ),
            width,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquire::hash::HashAlgorithm;
    use crate::acquire::manifest::{Manifest, RemoteInfo, RemotePart};
    use crate::acquire::verify::{BadWindow, Check};
    use crate::s3::S3Url;
    use crate::s3::upload::UploadOutcome;
    use crate::s3::verify::RemoteVerifyReport;

    /// Words and digests as a person reads them: everything but the whitespace the wrapping added.
    fn squeezed(text: &str) -> String {
        text.split_whitespace().collect()
    }

    const PREFIX: &str =
        "CASE-2026-1205-webserver-intrusion/evidence-0001-system-disk-acquired-on-site/";

    /// A real manifest (a local acquisition of a small file with a long name), told as an upload to a
    /// long prefix.
    fn uploaded(tmp: &Path) -> UploadOutcome {
        let src = tmp.join("source-disk-image-of-the-compromised-web-server-in-rack-14.img");
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i / 509) as u8 ^ i as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let out = tmp.join("out");
        let opts = crate::acquire::AcquireOptions {
            source: src,
            out_dir: out.clone(),
            hashes: Some(vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512]),
            ..Default::default()
        };
        crate::acquire::acquire(&opts, &mut |_| {}).unwrap();
        let mut manifest = Manifest::load(&out).unwrap();
        let sha = manifest.outputs[0].sha256.clone();
        manifest.remote = Some(RemoteInfo {
            endpoint: "https://objects.evidence-store.internal.example.org:9000".into(),
            region: "eu-central-1".into(),
            bucket: "incident-response-evidence".into(),
            prefix: PREFIX.into(),
            insecure: false,
            ca_file: None,
            part_bytes: 1 << 20,
            parts: vec![RemotePart {
                file: "image.raw".into(),
                number: 1,
                offset: 0,
                size_bytes: 1 << 20,
                sha256: sha,
            }],
            clock_offset_secs: Some(-3600),
        });
        UploadOutcome {
            status: AcquireStatus::Complete,
            manifest,
            url: S3Url::parse(&format!("s3://incident-response-evidence/{PREFIX}")).unwrap(),
            reused_parts: 0,
        }
    }

    #[test]
    fn remote_acquire_and_verify_summaries_fit_80_and_40_columns_with_long_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let done = uploaded(tmp.path());
        let m = &done.manifest;
        let sha512 = m.hashes["sha512"].clone();
        let url = done.url.to_string();
        let mut bad = RemoteVerifyReport {
            url: url.clone(),
            ok: true,
            bytes: 1 << 20,
            parts: 1,
            checks: Vec::new(),
            first_bad_part: Some(1),
            first_bad_object: Some(format!("{PREFIX}image.raw")),
            first_bad_window: Some(BadWindow {
                index: 0,
                offset: 0,
                length: 1 << 20,
                expected: m.hashes["sha256"].clone(),
                actual: "0".repeat(64),
            }),
        };
        let mut good = RemoteVerifyReport {
            first_bad_part: None,
            first_bad_object: None,
            first_bad_window: None,
            ..bad.clone()
        };
        Check::record(
            &mut good.checks,
            &mut good.ok,
            "stream sha512",
            &sha512,
            &sha512,
        );
        Check::record(
            &mut bad.checks,
            &mut bad.ok,
            format!("part 1 of {PREFIX}image.raw sha256"),
            &m.outputs[0].sha256,
            &"f".repeat(64),
        );
        Check::record(
            &mut bad.checks,
            &mut bad.ok,
            "stream sha512",
            &sha512,
            &"e".repeat(128),
        );
        assert!(!bad.ok && good.ok);
        for width in [80, 40] {
            let acquired = acquire_summary(&done, width);
            let failed = verify_summary(&bad, width);
            let verified = verify_summary(&good, width);
            for text in [&acquired, &failed, &verified] {
                assert!(super::super::widest(text) <= width, "{width}:\n{text}");
                // Nothing is cut: the URL and the digests are all there once the wrapping is undone.
                assert!(squeezed(text).contains(&squeezed(&url)), "{width}:\n{text}");
            }
            assert!(
                squeezed(&acquired).contains(&sha512),
                "{width}:\n{acquired}"
            );
            assert!(
                squeezed(&acquired).contains(&m.outputs[0].sha256),
                "{width}:\n{acquired}"
            );
            assert!(
                squeezed(&failed).contains(&"e".repeat(128)),
                "{width}:\n{failed}"
            );
            assert!(
                squeezed(&failed).contains(&squeezed(&format!(
                    "first bad part: 1 of {PREFIX}image.raw"
                ))),
                "{width}:\n{failed}"
            );
        }
        // At 80 columns a SHA-256 is one line and the first bad window is named as scripts grep it.
        let failed = verify_summary(&bad, 80);
        assert!(
            failed.contains(&format!("found    {}", "f".repeat(64))),
            "{failed}"
        );
        assert!(
            failed.contains("  first bad window: 0 (bytes 0..1048576)"),
            "{failed}"
        );
        let interrupted = UploadOutcome {
            status: AcquireStatus::Interrupted,
            ..done
        };
        let text = acquire_summary(&interrupted, 40);
        assert!(super::super::widest(&text) <= 40, "{text}");
        assert!(squeezed(&text).contains(&squeezed(&url)), "{text}");
    }
}
