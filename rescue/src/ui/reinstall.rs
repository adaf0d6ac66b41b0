//! `reinstall verify|keys|boot` and `deploy`: the line-mode face of [`crate::reinstall`]. Prints what
//! was proven, asks the case for the target interlock, unlocks only the confirmed target, and logs every
//! result in the case log.
//!
//! Exit codes: 0 verified / written and read back, 1 error, 2 usage, 4 verification failed (bad or
//! untrusted signature, hash mismatch, read-back mismatch, the image changed after it was opened; a
//! deploy that fails once the target was opened leaves its first MiB zeroed).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::args::reinstall::{BootArgs, DeployArgs, ReinstallCommand, SumsArgs, VerifyArgs};
use crate::case::{self, Locked};
use crate::reinstall::{self, VerifyError, VerifyRequest, deploy, iso9660, kexec};

/// Exit code: the image, its signature or the read-back did not verify.
pub const EXIT_NOT_VERIFIED: u8 = 4;

/// The mounted `--media`, if any (unmounted when dropped).
struct Media(Option<crate::restore::source::Mounted>);

impl Media {
    fn mount(s: &SumsArgs) -> anyhow::Result<Self> {
        let Some(dev) = &s.media else {
            return Ok(Media(None));
        };
        let base = if crate::system::in_rescue_system() {
            case::state_dir()
        } else {
            std::env::temp_dir()
        };
        let m = crate::restore::source::mount_readonly(dev, &base)?;
        println!(
            "media {} ({}) mounted read-only on {}",
            m.device.display(),
            m.fstype,
            m.mountpoint.display()
        );
        Ok(Media(Some(m)))
    }

    fn path(&self, p: &Path) -> PathBuf {
        match &self.0 {
            Some(m) if p.is_relative() => m.mountpoint.join(p),
            _ => p.to_owned(),
        }
    }
}

/// Progress on stderr: a rewritten line on a terminal, a line every 10 % otherwise.
struct Meter {
    tty: bool,
    last: Instant,
    last_pct: u64,
}

impl Meter {
    fn new() -> Self {
        Meter {
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
            last_pct: 0,
        }
    }

    fn show(&mut self, what: &str, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if self.tty {
            if self.last.elapsed() >= Duration::from_millis(500) || done == total {
                self.last = Instant::now();
                eprint!(
                    "\r{what}: {pct:>3} % ({} / {})   ",
                    crate::devices::human_size(done),
                    crate::devices::human_size(total)
                );
                if done == total {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            }
        } else if pct >= self.last_pct + 10 || (done == total && self.last_pct != 100) {
            self.last_pct = pct - pct % 10;
            eprintln!("{what}: {pct} %");
        }
    }
}

fn request(media: &Media, image: &Path, s: &SumsArgs) -> Option<VerifyRequest> {
    s.sums.as_ref().map(|sums| VerifyRequest {
        image: media.path(image),
        sums: media.path(sums),
        sig: s.sig.as_deref().map(|p| media.path(p)),
        keyrings: s.keyring.iter().map(|p| media.path(p)).collect(),
        allow_unsigned: s.allow_unsigned,
    })
}

fn log(command: &str, detail: serde_json::Value) {
    if crate::system::in_rescue_system() {
        super::case::log_command("result", command, detail);
    }
}

/// Verifies before boot or deploy: prints what was proven, or prints and logs the refusal (then `None`).
/// Deploy passes the image it holds open, so what is verified is what is written.
fn verified_or_refused(
    req: &VerifyRequest,
    opened: Option<&deploy::Image>,
    shown: &Path,
    command: &str,
    refusal: &str,
) -> Option<reinstall::Proof> {
    match verify_with_meter(req, opened) {
        Ok(p) => {
            println!("VERIFIED {}: {}", shown.display(), p.statement());
            Some(p)
        }
        Err(e) => {
            let msg = crate::error_chain(&e);
            log(command, serde_json::json!({"refused": msg}));
            println!("NOT VERIFIED {}: {msg}", shown.display());
            println!("{refusal}");
            None
        }
    }
}

fn verify_with_meter(
    req: &VerifyRequest,
    opened: Option<&deploy::Image>,
) -> Result<reinstall::Proof, VerifyError> {
    let mut m = Meter::new();
    let mut show = |d, t| m.show("hashing", d, t);
    match opened {
        Some(image) => reinstall::verify_read(req, image.reader(), image.len(), &mut show),
        None => reinstall::verify_image(req, &mut show),
    }
}

pub fn run(cmd: ReinstallCommand) -> anyhow::Result<u8> {
    match cmd {
        ReinstallCommand::Verify(a) => run_verify(&a),
        ReinstallCommand::Keys { keyring, json } => run_keys(&keyring, json),
        ReinstallCommand::Boot(a) => run_boot(&a),
    }
}

fn run_verify(a: &VerifyArgs) -> anyhow::Result<u8> {
    if a.release.is_some() {
        return run_verify_apt(a);
    }
    let media = Media::mount(&a.sums)?;
    let Some(req) = request(&media, &a.image, &a.sums) else {
        anyhow::bail!("give the checksum list with --sums FILE");
    };
    let command = format!("reinstall verify {}", a.image.display());
    match verify_with_meter(&req, None) {
        Ok(proof) => {
            log(
                &command,
                serde_json::json!({"verified": proof.statement(), "proof": proof}),
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "statement": proof.statement(), "proof": proof})
                );
            } else {
                println!("VERIFIED {}: {}", a.image.display(), proof.statement());
                if proof.signer.is_none() {
                    println!(
                        "warning: the checksum list is not signed; nothing proves who published it"
                    );
                } else {
                    println!("policy: {}", reinstall::signature::POLICY);
                }
            }
            Ok(0)
        }
        Err(e) => Ok(not_verified(a, &command, &e)),
    }
}

/// A refused `reinstall verify`, either route: logged, said in words (or as JSON), exit 4.
fn not_verified(a: &VerifyArgs, command: &str, e: &dyn std::error::Error) -> u8 {
    let msg = crate::error_chain(e);
    log(
        command,
        serde_json::json!({"verified": false, "error": msg}),
    );
    if a.json {
        println!("{}", serde_json::json!({"verified": false, "error": msg}));
    } else {
        println!("NOT VERIFIED {}: {msg}", a.image.display());
    }
    EXIT_NOT_VERIFIED
}

/// `reinstall verify FILE --release InRelease [--packages Packages | --sums SHA256SUMS]`.
fn run_verify_apt(a: &VerifyArgs) -> anyhow::Result<u8> {
    let media = Media::mount(&a.sums)?;
    let Some(release) = &a.release else {
        anyhow::bail!("give the signed Release file with --release FILE");
    };
    let req = reinstall::AptRequest {
        file: media.path(&a.image),
        release: media.path(release),
        release_sig: a.sums.sig.as_deref().map(|p| media.path(p)),
        packages: a.packages.as_deref().map(|p| media.path(p)),
        sums: a.sums.sums.as_deref().map(|p| media.path(p)),
        keyrings: a.sums.keyring.iter().map(|p| media.path(p)).collect(),
    };
    let command = format!("reinstall verify {} --release", a.image.display());
    let mut m = Meter::new();
    match reinstall::verify_apt(&req, &mut |d, t| m.show("hashing", d, t)) {
        Ok(proof) => {
            log(
                &command,
                serde_json::json!({"verified": proof.statement(), "proof": proof}),
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "statement": proof.statement(), "proof": proof})
                );
            } else {
                println!("VERIFIED {}: {}", a.image.display(), proof.statement());
                if let Some(v) = &proof.release.valid_until {
                    println!(
                        "note: the Release says it is valid until {v}; an older snapshot still proves what the archive published then"
                    );
                }
                println!("policy: {}", reinstall::signature::POLICY);
            }
            Ok(0)
        }
        Err(e) => Ok(not_verified(a, &command, &e)),
    }
}

fn run_keys(keyring: &[PathBuf], json: bool) -> anyhow::Result<u8> {
    let keys = reinstall::list_keys(keyring)?;
    if json {
        println!("{}", serde_json::to_string(&keys)?);
        return Ok(0);
    }
    if keys.is_empty() {
        println!(
            "no trusted keys embedded in this build ({}); build with `cargo xtask build --trust-key FILE` or pass --keyring FILE",
            crate::reinstall::signature::embedded_keys_dir().display()
        );
        return Ok(0);
    }
    for k in &keys {
        println!(
            "{}  {}  created {}{}{}{}",
            k.fingerprint,
            k.uid,
            k.created,
            k.expires
                .as_deref()
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default(),
            if k.revoked { ", REVOKED" } else { "" },
            k.refused
                .as_deref()
                .map(|r| format!(", NOT USABLE: {r}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

fn run_boot(a: &BootArgs) -> anyhow::Result<u8> {
    let command = format!("reinstall boot {}", a.iso.display());
    let media = Media::mount(&a.sums)?;
    // Opened once: verified, and the kernel and initrd read, from this descriptor.
    let image = deploy::Image::open(&media.path(&a.iso))?;
    let proof = match request(&media, &a.iso, &a.sums) {
        Some(req) => match verified_or_refused(
            &req,
            Some(&image),
            &a.iso,
            &command,
            "refusing to boot an installer that did not verify",
        ) {
            Some(p) => Some(p),
            None => return Ok(EXIT_NOT_VERIFIED),
        },
        None => anyhow::bail!(
            "give the installer's checksum list with --sums FILE (and --sig FILE): an unverified installer is never booted"
        ),
    };
    let paths = match (&a.kernel, &a.initrd) {
        (Some(k), Some(i)) => Some((k.as_str(), i.as_str())),
        _ => None,
    };
    let iso9660::Installer {
        kernel_path: kpath,
        initrd_path: ipath,
        kernel,
        initrd,
    } = match iso9660::read_installer(&image, paths) {
        Ok(i) => i,
        Err(e @ iso9660::IsoError::Image(_)) => {
            let msg = crate::error_chain(&e);
            log(&command, serde_json::json!({"refused": msg}));
            println!("NOT VERIFIED {}: {msg}", a.iso.display());
            println!("refusing to boot an installer that did not verify");
            return Ok(EXIT_NOT_VERIFIED);
        }
        Err(e) => return Err(e.into()),
    };
    let own = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmdline = kexec::installer_cmdline(&own, &a.append);
    println!(
        "installer kernel {kpath} ({} bytes), initrd {ipath} ({} bytes), command line: {cmdline}",
        kernel.len(),
        initrd.len()
    );
    let detail = serde_json::json!({
        "proof": proof, "kernel": kpath, "initrd": ipath, "cmdline": cmdline,
    });
    if let Err(e) = kexec::load(&kernel, &initrd, &cmdline) {
        log(
            &command,
            serde_json::json!({"kexec_error": crate::error_chain(&e), "detail": detail}),
        );
        return Err(e.into());
    }
    log(&command, serde_json::json!({"kexec_loaded": detail}));
    if a.no_reboot {
        println!("loaded; not rebooting (--no-reboot)");
        return Ok(0);
    }
    println!("booting the installer now");
    let _ = std::io::stdout().flush();
    if crate::system::in_rescue_system() {
        // Through init's shutdown: consoles stopped and drained, evidence unmounted, then the kexec.
        crate::system::request_power(crate::system::PowerAction::Kexec)?;
        return Ok(0);
    }
    Err(kexec::reboot_into_loaded().into())
}

/// `deploy IMAGE --target DEVICE --confirm SERIAL`.
pub fn run_deploy(a: &DeployArgs) -> anyhow::Result<u8> {
    let command = format!(
        "deploy {} --target {}",
        a.image.display(),
        a.target.display()
    );
    let media = Media::mount(&a.sums)?;
    let image_path = media.path(&a.image);
    // Opened once: verified, planned and written from this descriptor.
    let image = deploy::Image::open(&image_path)?;
    let proof = match request(&media, &a.image, &a.sums) {
        Some(req) => match verified_or_refused(
            &req,
            Some(&image),
            &a.image,
            &command,
            "refusing to deploy an image that did not verify; the target was not touched",
        ) {
            Some(p) => Some(p),
            None => return Ok(EXIT_NOT_VERIFIED),
        },
        None => None,
    };
    if let Some(disk) = crate::restore::source::shared_disk(&image_path, &a.target) {
        anyhow::bail!(
            "the image {} is on {disk}, the disk it would overwrite",
            image_path.display()
        );
    }
    let mut plan = deploy::plan(&image, &a.target)?;
    plan.signed = proof.as_ref().map(|p| p.entry.clone());
    if plan.expected_sha256.is_none()
        && let Some(p) = proof.as_ref().filter(|p| {
            p.entry.algorithm == reinstall::checksums::Algorithm::Sha256
                && plan.format == deploy::ImageFormat::Raw
        })
    {
        plan.expected_sha256 = Some((p.entry.digest.clone(), "the verified checksum list".into()));
    }
    if proof.is_none() && plan.expected_sha256.is_none() {
        println!(
            "warning: no --sums given and no acquisition manifest beside the image: the image is not authenticated"
        );
    }
    let mut clearance = None;
    if plan.target_is_block_device {
        let mut locked = Locked::open()?;
        let c = match case::target_interlock(&mut locked, &a.target, a.reason.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                locked.log(
                    "result",
                    &command,
                    serde_json::json!({"refused": e.to_string()}),
                )?;
                return Err(e.into());
            }
        };
        match case::unlock_target(&locked, &c, &a.target, &a.confirm) {
            Ok(names) => {
                println!("unlocked for writing: {} (deploy target)", names.join(" "));
            }
            Err(e) => {
                locked.log(
                    "result",
                    &command,
                    serde_json::json!({"refused": e.to_string()}),
                )?;
                return Err(e.into());
            }
        }
        clearance = Some(c);
    }
    println!(
        "writing {} ({}, {}) to {} ({})",
        a.image.display(),
        crate::devices::human_size(plan.image_bytes),
        match plan.format {
            deploy::ImageFormat::Raw => "raw",
            deploy::ImageFormat::ZstdSeekable => "seekable zstd",
        },
        a.target.display(),
        crate::devices::human_size(plan.target_bytes)
    );
    let mut m = Meter::new();
    match deploy::write(&plan, &image, &mut |what, d, t| m.show(what, d, t)) {
        Ok(report) => {
            let detail = serde_json::json!({
                "proof": proof, "clearance": clearance, "report": report,
            });
            log(&command, detail.clone());
            if a.json {
                println!("{}", serde_json::to_string(&detail)?);
            } else {
                println!(
                    "DEPLOYED and read back: sha256 {} over {} bytes on {} ({:.1} s){}",
                    report.read_back_sha256,
                    report.plan.image_bytes,
                    a.target.display(),
                    report.seconds,
                    report
                        .plan
                        .expected_sha256
                        .as_ref()
                        .map(|(_, w)| format!("; matches {w}"))
                        .unwrap_or_default()
                );
            }
            Ok(0)
        }
        Err(e) => {
            let msg = crate::error_chain(&e);
            log(
                &command,
                serde_json::json!({"error": msg, "clearance": clearance}),
            );
            if e.is_not_verified() {
                println!("NOT VERIFIED: {msg}");
                return Ok(EXIT_NOT_VERIFIED);
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reinstall::checksums::{Algorithm, hash_reader};
    use crate::reinstall::deploy::{BOOT_AREA, hook};

    /// `deploy` as the operator runs it, with another file renamed over the image right after
    /// `VERIFIED` (before the target is touched) or once writing has begun.
    fn swap_at(stage: hook::Stage) -> (u8, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
        let evil: Vec<u8> = (0..2u32 << 20).map(|i| (i % 239) as u8 ^ 0xA5).collect();
        let image = d.join("golden.img");
        std::fs::write(&image, &data).unwrap();
        std::fs::write(d.join("evil.img"), &evil).unwrap();
        let sha = hash_reader(&data[..], Algorithm::Sha256, &mut |_| {})
            .unwrap()
            .0;
        let sums = d.join("SHA256SUMS");
        std::fs::write(&sums, format!("{sha}  golden.img\n")).unwrap();
        let target = d.join("target.img");
        std::fs::write(&target, vec![0xAAu8; 3 << 20]).unwrap();
        let args = DeployArgs {
            image: image.clone(),
            target: target.clone(),
            confirm: "x".into(),
            sums: SumsArgs {
                sums: Some(sums),
                allow_unsigned: true,
                ..SumsArgs::default()
            },
            reason: None,
            json: false,
        };
        let from = d.join("evil.img");
        hook::set(move |s| {
            if s == stage {
                std::fs::rename(&from, &image).unwrap();
            }
        });
        let code = run_deploy(&args);
        hook::clear();
        (code.unwrap(), std::fs::read(&target).unwrap(), evil)
    }

    #[test]
    fn deploy_refuses_an_image_swapped_after_it_was_verified() {
        let (code, target, evil) = swap_at(hook::Stage::Start);
        assert_eq!(code, EXIT_NOT_VERIFIED);
        assert!(
            target.iter().all(|b| *b == 0xAA),
            "refused before the target is touched"
        );
        let _ = evil;

        let (code, target, evil) = swap_at(hook::Stage::BootAreaZeroed);
        assert_eq!(code, EXIT_NOT_VERIFIED);
        let boot = BOOT_AREA as usize;
        assert!(
            target[..boot].iter().all(|b| *b == 0),
            "the first MiB is wiped"
        );
        assert_ne!(
            &target[boot..evil.len()],
            &evil[boot..],
            "the swapped bytes never land"
        );
        assert!(target[evil.len()..].iter().all(|b| *b == 0xAA));
    }
}
