//! `cargo xtask bench live`: memory capture on a running host, `rescue live` next to AVML (Microsoft's
//! static Rust memory acquirer, built from crates.io), one after the other in the same QEMU guest
//! (`tests::live`: the build's kernel, busybox, an ext4 evidence disk, the boot stick). Both write
//! raw LiME to the evidence disk; each run is timed inside the guest (`livetarget time`: wall clock
//! and the child's peak RSS). Prints the medians and writes the table to `target/bench/live.md`.
//!
//! Flags: `--memory MIB` (guest RAM, default 512, as the live scenario), `--runs N` (default 3).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tests::Artifacts;
use tests::live;

use crate::{deps, util};

/// The AVML release the comparison builds (`cargo install avml --version`).
pub const AVML: &str = "0.20.0";

const LIVE_TIMEOUT: Duration = Duration::from_secs(3600);
const T: Duration = Duration::from_secs(120);

/// AVML built static (glibc, `+crt-static`) without its upload features, cached under
/// `target/cache/avml-VERSION/avml` (built in a temporary directory, then renamed).
pub fn ensure_avml() -> anyhow::Result<PathBuf> {
    let cache = util::project_root().join("target/cache");
    let dir = cache.join(format!("avml-{AVML}"));
    let bin = dir.join("avml");
    if bin.is_file() {
        return Ok(bin);
    }
    let tmp = cache.join(format!(".tmp-avml-{AVML}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    util::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .args(["install", "avml", "--version", AVML, "--locked"])
            .args([
                "--no-default-features",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("--root")
            .arg(tmp.join("root"))
            .env("CARGO_TARGET_DIR", tmp.join("build"))
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )?;
    fs::create_dir_all(tmp.join("out"))?;
    fs::rename(tmp.join("root/bin/avml"), tmp.join("out/avml"))?;
    fs::rename(tmp.join("out"), &dir).with_context(|| format!("moving to {}", dir.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(bin)
}

struct Options {
    memory_mib: u32,
    runs: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        memory_mib: 512,
        runs: 3,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--memory" => o.memory_mib = value()?.parse().context("--memory takes MiB")?,
            "--runs" => o.runs = value()?.parse().context("--runs takes a count")?,
            other => bail!("unknown flag {other:?}; flags: --memory MIB --runs N"),
        }
    }
    o.runs = o.runs.max(1);
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Seconds the memory step took according to `live-manifest.json` (its `steps`, times in whole
/// seconds), when it says.
fn memory_seconds(manifest: &serde_json::Value) -> Option<f64> {
    let step = manifest["steps"]
        .as_array()?
        .iter()
        .find(|s| s["step"] == "memory")?;
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(step[k].as_str()?).ok();
    let (a, b) = (at("started_at")?, at("finished_at")?);
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    deps::ensure_packages(deps::TEST)?;
    let art = Artifacts {
        dir: util::project_root().join("target/rescue"),
    };
    if !art.usb_image().is_file() {
        bail!("run `cargo xtask build` first");
    }
    let avml = ensure_avml()?;
    let work = util::project_root().join("target/bench-live");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let evidence_mib = u64::from(o.memory_mib) * 3 + 512;
    let (builder, _evidence) =
        live::suspect_host(&art, &work, o.memory_mib, evidence_mib, &[("avml", &avml)])?;
    let load_before = loadavg();
    let mut vm = builder.spawn()?;
    live::wait_shell(&mut vm, Duration::from_secs(600))?;
    // The static binary on the stick, as a responder runs it from the mounted medium.
    let rescue = live::STICK_RESCUE;
    live::sh_ok(&mut vm, &format!("test -x {rescue}"), T)?;
    let iomem = live::sh_ok(&mut vm, "cat /proc/iomem", T)?;
    let ram: u64 = live::system_ram(&iomem)?
        .iter()
        .map(|(a, b)| b - a + 1)
        .sum();
    let mib = ram as f64 / 1048576.0;

    let (mut avml_secs, mut avml_rss) = (Vec::new(), Vec::new());
    let (mut ours_secs, mut ours_rss, mut ours_mem_secs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..o.runs {
        eprintln!("bench live: run {} of {}", i + 1, o.runs);
        let (s, rss) = live::timed(
            &mut vm,
            "/avml acquire /evidence/avml.lime",
            &[0],
            LIVE_TIMEOUT,
        )?;
        let size = live::sh_ok(&mut vm, "wc -c < /evidence/avml.lime", T)?;
        eprintln!("  avml: {s:.1} s, {rss} KiB peak, {} bytes", size.trim());
        live::sh_ok(&mut vm, "rm /evidence/avml.lime; sync", T)?;
        avml_secs.push(s);
        avml_rss.push(rss as f64);

        let (s, rss) = live::timed(
            &mut vm,
            &format!("{rescue} live --out /evidence/rl"),
            // 3: captured, with pages it could not read (zero-filled and listed).
            &[0, 3],
            LIVE_TIMEOUT,
        )?;
        let manifest = live::sh_ok(&mut vm, "cat /evidence/rl/live-manifest.json; echo", T)?;
        let manifest: serde_json::Value = serde_json::from_str(manifest.trim())
            .with_context(|| format!("live-manifest.json is no JSON:\n{manifest}"))?;
        let mem_s = memory_seconds(&manifest);
        eprintln!("  rescue live: {s:.1} s, {rss} KiB peak, memory step {mem_s:?} s");
        live::sh_ok(&mut vm, "rm -r /evidence/rl; sync", T)?;
        ours_secs.push(s);
        ours_rss.push(rss as f64);
        if let Some(m) = mem_s {
            ours_mem_secs.push(m);
        }
    }
    vm.send_line("poweroff -f")?;
    let _ = vm.wait_exit(T);
    let load_after = loadavg();

    let (a, r) = (median(avml_secs), median(ours_secs));
    let mut table = format!(
        "| `{}` MiB guest RAM ({mib:.0} MiB System RAM), median of {} | wall s | MiB/s | peak RSS MiB |\n\
         |---|---|---|---|\n",
        o.memory_mib, o.runs
    );
    table.push_str(&format!(
        "| AVML {AVML} (static, raw LiME, no hashing) | {a:.1} | {:.1} | {:.1} |\n",
        mib / a,
        median(avml_rss) / 1024.0
    ));
    table.push_str(&format!(
        "| rescue live (LiME with inline hashes, and the volatile state) | {r:.1} | {:.1} | {:.1} |\n",
        mib / r,
        median(ours_rss) / 1024.0
    ));
    if !ours_mem_secs.is_empty() {
        let m = median(ours_mem_secs);
        table.push_str(&format!(
            "| rescue live, memory step alone (its manifest's times) | {m:.1} | {:.1} | |\n",
            mib / m
        ));
    }
    table.push_str(&format!(
        "\nHost load average before/after: {load_before} / {load_after}; {} CPUs; QEMU TCG, 2 vCPUs.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    println!("{table}");
    let out = util::project_root().join("target/bench/live.md");
    fs::create_dir_all(out.parent().unwrap_or(&work))?;
    fs::write(&out, &table)?;
    eprintln!("bench live: table written to {}", out.display());
    Ok(())
}
