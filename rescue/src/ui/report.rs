//! `report` and `report verify DIR`: the line-mode face of [`crate::report`]. Finds the case, asks the
//! signing key's passphrase on the console without echo, shows hashing progress, prints what was written
//! and, without a key, the case log's final chain hash to write down; logs the result in the case log.
//!
//! Exit codes: 0 built (or verified: every hash and signature good), 1 error, 2 usage, 3 verify: every
//! hash matches but the report is unsigned, 4 verify: a file or signature failed (named).

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::termios;

use crate::args::report::{BuildArgs, ReportArgs, ReportCommand, ReportFormat};
use crate::case::{self, Locked};
use crate::report::{self, sign};

/// Exit code of `report verify`: the hashes match but nothing is signed.
pub const EXIT_UNSIGNED: u8 = 3;
/// Exit code of `report verify`: a file or a signature failed.
pub const EXIT_FAILED: u8 = 4;

pub fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    match &args.verify {
        Some(ReportCommand::Verify { dir, keyring }) => run_verify(dir, keyring),
        None => run_build(&args.build),
    }
}

/// Where the case is: its directory, its live log and (inside the rescue system) its state.
fn find_case(a: &BuildArgs) -> anyhow::Result<(PathBuf, PathBuf, Option<case::CaseState>)> {
    if let Some(dir) = &a.case_dir {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("opening the case directory {}", dir.display()))?;
        return Ok((dir.join("case-log.jsonl"), dir, None));
    }
    if !crate::system::in_rescue_system() {
        bail!(
            "on a host, name the case directory (the one holding case-log.jsonl): report --case-dir DIR"
        );
    }
    let locked = Locked::open()?;
    let Some(case_id) = locked.state.case_id.clone() else {
        return Err(case::CaseError::NoCase.into());
    };
    let log = locked.log_path();
    let dir = match &locked.state.destination {
        Some(d) if case::destination_present(d) => Path::new(&d.mountpoint).join(&case_id),
        _ => case::state_dir(),
    };
    Ok((log, dir, Some(locked.state.clone())))
}

/// Asks on the console with echo off.
fn ask_passphrase(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    // Echo goes off before the question is shown: the line discipline echoes a character when it
    // arrives, so anything typed the moment the question appears must already meet a quiet console.
    let saved = termios::tcgetattr(stdin.as_fd()).context("reading the console's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(termios::LocalFlags::ECHO);
    quiet.local_flags.insert(termios::LocalFlags::ECHONL);
    termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &quiet)
        .context("turning off the console's echo")?;
    eprint!("{prompt}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &saved);
    read.context("reading the passphrase")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Loads the signing key: from `--media` when given, never from the evidence disk; the passphrase
/// from `--passphrase-file` or the console.
fn load_key(a: &BuildArgs, key: &Path, case_dir: &Path) -> anyhow::Result<sign::SigningKey> {
    let media = match &a.media {
        Some(dev) => {
            let base = if crate::system::in_rescue_system() {
                case::state_dir()
            } else {
                std::env::temp_dir()
            };
            let evidence = crate::system::in_rescue_system()
                .then(Locked::open)
                .and_then(Result::ok)
                .and_then(|l| l.state.destination)
                .map(|d| crate::blkro::whole_disk(d.device.trim_start_matches("/dev/")));
            let disk = crate::devices::describe(dev).map(|d| d.name).ok();
            if evidence.is_some() && disk == evidence {
                bail!(
                    "{} is the evidence disk: a secret key never belongs there; bring it on its own medium",
                    dev.display()
                );
            }
            let m = crate::restore::source::mount_readonly(dev, &base)?;
            println!(
                "media {} ({}) mounted read-only on {}",
                m.device.display(),
                m.fstype,
                m.mountpoint.display()
            );
            Some(m)
        }
        None => None,
    };
    let on_media = |p: &Path| match &media {
        Some(m) if p.is_relative() => m.mountpoint.join(p),
        _ => p.to_owned(),
    };
    let key_path = on_media(key);
    let real = std::fs::canonicalize(&key_path)
        .with_context(|| format!("opening the signing key {}", key_path.display()))?;
    let on_the_medium = media
        .as_ref()
        .is_some_and(|m| real.starts_with(&m.mountpoint));
    if !on_the_medium && (real.starts_with(case_dir) || real.starts_with(case::EVIDENCE_MOUNT)) {
        bail!(
            "the signing key {} lies on the evidence disk: a secret key never belongs there; bring it on its own medium (--media DEVICE)",
            key_path.display()
        );
    }
    let bytes = sign::read_key_file(&real)?;
    let now = chrono::Utc::now();
    let passphrase = if !sign::needs_passphrase(&bytes, &key_path)? {
        String::new()
    } else if let Some(f) = &a.passphrase_file {
        let f = on_media(f);
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("reading the passphrase file {}", f.display()))?;
        text.lines().next().unwrap_or("").to_owned()
    } else if std::io::stdin().is_terminal() {
        ask_passphrase(&format!(
            "Passphrase of the signing key {}",
            key_path.display()
        ))?
    } else {
        bail!(
            "the signing key {} is protected by a passphrase and there is no console to ask it on: give --passphrase-file FILE",
            key_path.display()
        );
    };
    let key = sign::SigningKey::load(&bytes, &key_path, &passphrase, now)?;
    drop(media);
    Ok(key)
}

/// Progress on stderr: a rewritten line on a terminal, a line every 10 % otherwise.
struct Meter {
    tty: bool,
    last: Instant,
    last_pct: u64,
}

impl Meter {
    fn show(&mut self, file: &str, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if self.tty {
            if self.last.elapsed() >= Duration::from_millis(500) || done == total {
                self.last = Instant::now();
                let line = format!("hashing evidence: {pct:>3} % {file}");
                eprint!(
                    "\r{}   ",
                    super::truncate(&line, super::columns().saturating_sub(4))
                );
                if done == total {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            }
        } else if pct >= self.last_pct + 10 {
            self.last_pct = pct - pct % 10;
            eprintln!("hashing evidence: {pct} %");
        }
    }
}

fn run_build(a: &BuildArgs) -> anyhow::Result<u8> {
    let (log, case_dir, state) = find_case(a)?;
    if !log.exists() {
        return Err(report::ReportError::NoCaseLog { path: case_dir }.into());
    }
    let key = match &a.sign_key {
        Some(k) => Some(load_key(a, k, &case_dir)?),
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| case_dir.join("report"));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("creating the report directory {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    let formats = report::Formats {
        md: a.format.contains(&ReportFormat::Md),
        json: a.format.contains(&ReportFormat::Json),
        html: a.format.contains(&ReportFormat::Html),
    };
    let req = report::Request {
        case_dir: case_dir.clone(),
        log: log.clone(),
        out: out.clone(),
        formats,
        state,
    };
    let mut meter = Meter {
        tty: std::io::stderr().is_terminal(),
        last: Instant::now() - Duration::from_secs(1),
        last_pct: 0,
    };
    let built = report::build(&req, key.as_ref(), &mut |f, d, t| meter.show(f, d, t))?;
    let r = &built.report;
    if crate::system::in_rescue_system() {
        super::case::log_command(
            "result",
            "report",
            serde_json::json!({
                "report": out.display().to_string(),
                "files": built.files,
                "evidence_files": r.evidence.len(),
                "signed_by": r.signature.as_ref().map(|s| &s.fingerprint),
                "case_log_final_hash": r.case_log.final_hash,
            }),
        );
    }
    super::say(&format!(
        "report of case {} written to {}: {}",
        r.case.case_id.as_deref().unwrap_or("-"),
        out.display(),
        built.files.join(" ")
    ));
    super::say(&format!(
        "{} evidence files hashed into {}; case log: {} entries, chain {}",
        r.evidence.len(),
        report::INDEX_NAME,
        r.case_log.entries,
        if r.case_log.intact {
            "intact"
        } else {
            "BROKEN"
        }
    ));
    match &r.signature {
        Some(s) => super::say(&format!(
            "signed by {} ({}{}): check with `rescue report verify {}` or gpgv",
            s.fingerprint,
            s.uid,
            s.signing_subkey
                .as_ref()
                .map(|k| format!(", subkey {k}"))
                .unwrap_or_default(),
            out.display()
        )),
        None => super::say(&format!(
            "the report is UNSIGNED (no --sign-key). Write down the case log's final chain hash:\n  {}",
            r.case_log
                .final_hash
                .as_deref()
                .unwrap_or("(the case log is empty or broken)")
        )),
    }
    if !r.open_items.is_empty() {
        println!("open items:");
        for i in &r.open_items {
            super::say(&format!("  - {i}"));
        }
    }
    Ok(0)
}

fn run_verify(dir: &Path, keyrings: &[PathBuf]) -> anyhow::Result<u8> {
    let v = report::verify::verify_dir(dir, keyrings, chrono::Utc::now())?;
    for c in &v.checks {
        if !c.ok {
            super::say(&format!("FAILED {}: {}", c.file, c.what));
        }
    }
    let failed = v.failed();
    let good = v.checks.len() - failed.len();
    if v.signed {
        super::say(&format!(
            "signatures checked against {} ({})",
            v.keys_from,
            v.key_fingerprints.join(", ")
        ));
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|c| c.file.as_str()).collect();
        super::say(&format!(
            "{}: NOT verified: {} of {} checks failed ({})",
            dir.display(),
            failed.len(),
            v.checks.len(),
            names.join(", ")
        ));
        return Ok(EXIT_FAILED);
    }
    if !v.signed {
        super::say(&format!(
            "{}: every hash matches ({good} checks), but the report is UNSIGNED; case log final chain hash {}",
            dir.display(),
            v.final_hash.as_deref().unwrap_or("-")
        ));
        return Ok(EXIT_UNSIGNED);
    }
    super::say(&format!(
        "{}: verified: {good} checks, every hash and signature good; case log final chain hash {}",
        dir.display(),
        v.final_hash.as_deref().unwrap_or("-")
    ));
    Ok(0)
}
