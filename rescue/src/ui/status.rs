//! `status`, `drivers`, `poweroff`, `reboot` and the boot banner.

use std::fs;

use crate::coldplug::{ColdplugReport, REPORT_PATH};
use crate::system::{self, PowerAction};
use crate::{devices, host};

/// Build facts written by the builder into the initramfs.
pub const BUILD_INFO_PATH: &str = "/etc/rescue/build.json";

fn build_id() -> String {
    fs::read_to_string(BUILD_INFO_PATH)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| {
            v.get("build_id")
                .and_then(|b| b.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "host".to_owned())
}

/// The banner lines: what is running, where, and whether the disks are protected; every line fits in
/// `width` columns.
pub fn banner(console: &str, width: usize) -> String {
    let h = host::probe();
    let disks = devices::list().unwrap_or_default();
    let ro = disks
        .iter()
        .filter(|d| d.read_only && d.partitions.iter().all(|p| p.read_only))
        .count();
    let secure = match h.secure_boot {
        Some(true) => "Secure Boot enabled",
        Some(false) => "Secure Boot disabled",
        None => "Secure Boot unknown",
    };
    let machine = [h.dmi_vendor.as_deref(), h.dmi_product.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let rule = format!("{}\n", "=".repeat(width.saturating_sub(1).clamp(8, 66)));
    let mut out = rule.clone();
    out.push_str(&format!(
        " rescue {} (build {})\n",
        crate::VERSION,
        build_id()
    ));
    out.push_str(&format!(
        " kernel {}  boot {} ({secure})  console {console}\n",
        h.kernel, h.boot_mode
    ));
    if !machine.is_empty() {
        out.push_str(&format!(
            " machine {machine}  serial {}\n",
            h.dmi_serial.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        " disks {}, write-blocked {ro}; network down\n",
        disks.len()
    ));
    out.push_str(&selfcheck_lines(crate::selfcheck::stored()));
    out.push_str(" type 'help' for commands\n");
    let mut out = super::wrap_text(&out, width);
    out.push_str(&rule);
    out
}

/// The self-check lines of the banner: which medium, whether its files match the build, its sha256.
/// Lines break where a reader does not need them whole: at 80 columns "(KIND): OK, N files match build ID",
/// "(KIND): MISMATCH: FILE (what differs" and "medium sha256 HEX" each stay on one line;
/// [`super::wrap_text`] fits them to narrower consoles.
pub fn selfcheck_lines(check: Option<crate::selfcheck::SelfCheck>) -> String {
    let Some(c) = check else {
        return " self-check: not run (only inside the rescue system)\n".to_owned();
    };
    let Some(m) = &c.medium else {
        return format!(
            " self-check: {}\n",
            c.note.as_deref().unwrap_or("no boot medium found")
        );
    };
    let kind = match m.kind {
        crate::selfcheck::MediumKind::Fat => "FAT RESCUE",
        crate::selfcheck::MediumKind::Iso => "ISO 9660",
    };
    let mut out = if c.passed() {
        format!(
            " self-check: boot medium {}\n   ({kind}): OK, {} files match build {}\n",
            m.node.display(),
            c.files.len(),
            c.build_id.as_deref().unwrap_or("-")
        )
    } else {
        let bad: Vec<String> = c
            .files
            .iter()
            .filter(|f| !f.ok)
            .map(|f| format!("{} ({})", f.path, f.problem.as_deref().unwrap_or("differs")))
            .collect();
        format!(
            " self-check: boot medium {}\n   ({kind}): MISMATCH: {}\n",
            m.node.display(),
            bad.join("; ")
        )
    };
    match (&c.medium_sha256, &c.medium_hash_state) {
        (Some(sha), _) => out.push_str(&format!(
            " medium sha256 {sha}\n   ({} bytes of /dev/{})\n",
            c.medium_bytes.unwrap_or(0),
            m.disk
        )),
        (None, Some(state)) => {
            out.push_str(&format!(" medium sha256 {state} (see `status` later)\n"))
        }
        (None, None) => {}
    }
    out
}

/// `status [--wait SECONDS]`: the banner, after waiting for the whole-medium hash if asked to.
pub fn run(wait: Option<u64>) -> anyhow::Result<u8> {
    if let Some(seconds) = wait {
        let check = crate::selfcheck::wait_hashed(std::time::Duration::from_secs(seconds))?;
        if check
            .as_ref()
            .is_some_and(crate::selfcheck::SelfCheck::hashing)
        {
            super::say(&format!(
                "the whole-medium hash is still running after {seconds} s\n"
            ));
        }
    }
    print!(
        "{}",
        banner(
            &std::env::var("RESCUE_CONSOLE").unwrap_or_else(|_| "-".to_owned()),
            super::columns()
        )
    );
    Ok(0)
}

pub fn run_drivers() -> anyhow::Result<u8> {
    let text = fs::read_to_string(REPORT_PATH).map_err(|e| {
        anyhow::anyhow!("no coldplug report at {REPORT_PATH} (only inside the rescue system): {e}")
    })?;
    let report: ColdplugReport = serde_json::from_str(&text)?;
    println!(
        "loaded {} modules: {}",
        report.loaded.len(),
        report.loaded.join(" ")
    );
    for (m, e) in &report.failed {
        println!("failed {m}: {e}");
    }
    println!("{} devices without a driver:", report.unmatched.len());
    for u in &report.unmatched {
        println!("  {}  {}", u.devpath, u.modalias);
    }
    Ok(0)
}

pub fn run_power(action: PowerAction) -> anyhow::Result<u8> {
    system::request_power(action)?;
    // init stops this process; keep quiet until it does.
    std::thread::sleep(std::time::Duration::from_secs(30));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfcheck::{FileCheck, Medium, MediumKind, SelfCheck};

    fn check(ok: bool) -> SelfCheck {
        SelfCheck {
            build_id: Some("0123456789abcdef".into()),
            medium: Some(Medium {
                disk: "nvme10n1".into(),
                node: "/dev/nvme10n1p1".into(),
                kind: MediumKind::Iso,
                this_build: true,
            }),
            files: vec![
                FileCheck {
                    path: "RESCUE/VMLINUZ".into(),
                    ok: true,
                    problem: None,
                },
                FileCheck {
                    path: "RESCUE/INITRD.IMG".into(),
                    ok,
                    problem: (!ok).then(|| format!("main part sha256 {} differs", "e".repeat(64))),
                },
            ],
            note: None,
            medium_sha256: Some("a".repeat(64)),
            medium_bytes: Some(1 << 40),
            medium_hash_state: None,
        }
    }

    #[test]
    fn the_banner_fits_80_and_40_columns() {
        for width in [80, 40] {
            let text = banner("ttyS0", width);
            assert!(super::super::widest(&text) <= width, "{width}:\n{text}");
            assert!(text.contains("type 'help' for commands"), "{text}");
            for ok in [true, false] {
                let lines = super::super::wrap_text(&selfcheck_lines(Some(check(ok))), width);
                assert!(super::super::widest(&lines) <= width, "{width}:\n{lines}");
            }
        }
        // At 80 columns what a reader looks for stays on one line.
        let ok = super::super::wrap_text(&selfcheck_lines(Some(check(true))), 80);
        assert!(
            ok.contains("(ISO 9660): OK, 2 files match build 0123456789abcdef\n"),
            "{ok}"
        );
        assert!(
            ok.contains(&format!(" medium sha256 {}\n", "a".repeat(64))),
            "{ok}"
        );
        let bad = super::super::wrap_text(&selfcheck_lines(Some(check(false))), 80);
        assert!(
            bad.contains("(ISO 9660): MISMATCH: RESCUE/INITRD.IMG (main part sha256"),
            "{bad}"
        );
    }
}
