//! `cargo xtask bench live`: memory capture on a running host, `rescue live` next to AVML (Microsoft's
//! static Rust memory acquirer, built from crates.io), one after the other in the same QEMU guest
//! (`tests::live`: the build's kernel, busybox, an ext4 evidence disk, the boot stick). Both write
//! raw LiME to the evidence disk; each run is timed inside the guest (`livetarget time`: wall clock,
//! the child's peak RSS and CPU seconds). Each round also runs `rescue live --hash blake3`, and once
//! the guest hashes 128 MiB from RAM with busybox's `sha256sum`: where the time goes under TCG
//! (SHA-256 is emulated; the table says whether the guest CPU has SHA-NI), and `rescue verify` of an
//! acquisition of those 128 MiB, rescue's own SHA-256 alone. Prints the medians and
//! writes the table to `target/bench/live.md`.
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

/// Seconds the memory step took according to `live-manifest.json`: its `elapsed_seconds`, else
/// (older binaries) its whole-second times.
fn memory_seconds(manifest: &serde_json::Value) -> Option<f64> {
    let step = manifest["steps"]
        .as_array()?
        .iter()
        .find(|s| s["step"] == "memory")?;
    if let Some(s) = step["elapsed_seconds"].as_f64() {
        return Some(s);
    }
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(step[k].as_str()?).ok();
    let (a, b) = (at("started_at")?, at("finished_at")?);
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

/// Size and bytes allocated on disk (`du`) of a file in the guest, MiB.
fn sizes(vm: &mut tests::Qemu, path: &str) -> anyhow::Result<(f64, f64)> {
    let out = live::sh_ok(vm, &format!("wc -c < {path}; du -k {path}"), T)?;
    let mut words = out.split_whitespace();
    let bytes: f64 = words.next().context("no size")?.parse()?;
    let kib: f64 = words.next().context("no du")?.parse()?;
    Ok((bytes / 1048576.0, kib / 1024.0))
}

/// One `rescue live` run: its timing and the memory step's seconds.
fn rescue_live(
    vm: &mut tests::Qemu,
    extra: &str,
) -> anyhow::Result<(live::Timing, Option<f64>, (f64, f64))> {
    let t = live::timing(
        vm,
        &format!("{} live --out /evidence/rl{extra}", live::STICK_RESCUE),
        // 3: captured, with pages it could not read (zero-filled and listed).
        &[0, 3],
        LIVE_TIMEOUT,
    )?;
    let manifest = live::sh_ok(vm, "cat /evidence/rl/live-manifest.json; echo", T)?;
    let manifest: serde_json::Value = serde_json::from_str(manifest.trim())
        .with_context(|| format!("live-manifest.json is no JSON:\n{manifest}"))?;
    let size = sizes(vm, "/evidence/rl/memory/memory.lime")?;
    live::sh_ok(vm, "rm -r /evidence/rl; sync", T)?;
    Ok((t, memory_seconds(&manifest), size))
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
    let load_before = util::load_average();
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

    let mut avml = Vec::new();
    let mut ours = Vec::new();
    let mut ours_mem = Vec::new();
    let mut blake3_mem = Vec::new();
    let (mut avml_size, mut ours_size) = ((0.0, 0.0), (0.0, 0.0));
    for i in 0..o.runs {
        eprintln!("bench live: run {} of {}", i + 1, o.runs);
        let t = live::timing(
            &mut vm,
            "/avml acquire /evidence/avml.lime",
            &[0],
            LIVE_TIMEOUT,
        )?;
        avml_size = sizes(&mut vm, "/evidence/avml.lime")?;
        eprintln!(
            "  avml: {:.1} s, {} KiB peak, {:.1}+{:.1} CPU s, {:.0} MiB written",
            t.wall, t.maxrss_kib, t.user, t.sys, avml_size.0
        );
        live::sh_ok(&mut vm, "rm /evidence/avml.lime; sync", T)?;
        avml.push(t);

        let (t, mem_s, size) = rescue_live(&mut vm, "")?;
        ours_size = size;
        eprintln!(
            "  rescue live: {:.1} s, {} KiB peak, {:.1}+{:.1} CPU s, memory step {mem_s:?} s, \
             memory.lime {:.0} MiB ({:.0} MiB allocated)",
            t.wall, t.maxrss_kib, t.user, t.sys, size.0, size.1
        );
        ours.push(t);
        ours_mem.extend(mem_s);

        let (t, mem_s, _) = rescue_live(&mut vm, " --hash blake3")?;
        eprintln!(
            "  rescue live --hash blake3: {:.1} s, memory step {mem_s:?} s",
            t.wall
        );
        blake3_mem.extend(mem_s);
    }
    // SHA-256 alone in the guest: busybox's, over 128 MiB in RAM (the initramfs root).
    let sha_ni = live::sh_ok(&mut vm, "grep -c -w sha_ni /proc/cpuinfo; true", T)?;
    let sha_ni = sha_ni.trim().parse::<u32>().unwrap_or(0) > 0;
    live::sh_ok(
        &mut vm,
        "head -c 134217728 /dev/zero > /tmp/hashprobe",
        LIVE_TIMEOUT,
    )?;
    let mut sha = Vec::new();
    let mut ours_sha = Vec::new();
    // rescue's own SHA-256: `rescue verify` of an acquisition of the same 128 MiB, whose image is
    // still in the page cache, is one SHA-256 pass over it (the raw image is the stream).
    live::sh_ok(
        &mut vm,
        &format!(
            "{} acquire /tmp/hashprobe --out /evidence/hp > /dev/null",
            live::STICK_RESCUE
        ),
        LIVE_TIMEOUT,
    )?;
    for _ in 0..o.runs {
        sha.push(
            live::timing(
                &mut vm,
                "busybox sha256sum /tmp/hashprobe",
                &[0],
                LIVE_TIMEOUT,
            )?
            .wall,
        );
        ours_sha.push(
            live::timing(
                &mut vm,
                &format!("{} verify /evidence/hp", live::STICK_RESCUE),
                &[0],
                LIVE_TIMEOUT,
            )?
            .wall,
        );
    }
    live::sh_ok(&mut vm, "rm -r /evidence/hp", T)?;
    live::sh_ok(&mut vm, "rm /tmp/hashprobe", T)?;
    vm.send_line("poweroff -f")?;
    let _ = vm.wait_exit(T);
    let load_after = util::load_average();

    let med =
        |v: &[live::Timing], f: fn(&live::Timing) -> f64| util::median(v.iter().map(f).collect());
    let (a, r) = (med(&avml, |t| t.wall), med(&ours, |t| t.wall));
    let mut table = format!(
        "| `{}` MiB guest RAM ({mib:.0} MiB System RAM), median of {} | wall s | MiB/s | peak RSS MiB | CPU s (user+sys) |\n\
         |---|---|---|---|---|\n",
        o.memory_mib, o.runs
    );
    table.push_str(&format!(
        "| AVML {AVML} (static, raw LiME, no hashing; all-zero 16 MiB blocks left out) | {a:.1} | {:.1} | {:.1} | {:.1} |\n",
        mib / a,
        med(&avml, |t| t.maxrss_kib as f64) / 1024.0,
        med(&avml, |t| t.user + t.sys),
    ));
    table.push_str(&format!(
        "| rescue live (LiME with inline SHA-256, and the volatile state) | {r:.1} | {:.1} | {:.1} | {:.1} |\n",
        mib / r,
        med(&ours, |t| t.maxrss_kib as f64) / 1024.0,
        med(&ours, |t| t.user + t.sys),
    ));
    if !ours_mem.is_empty() {
        let m = util::median(ours_mem);
        table.push_str(&format!(
            "| rescue live, memory step alone (its manifest's `elapsed_seconds`) | {m:.1} | {:.1} | | |\n",
            mib / m
        ));
    }
    if !blake3_mem.is_empty() {
        let m = util::median(blake3_mem);
        table.push_str(&format!(
            "| rescue live --hash blake3, memory step alone | {m:.1} | {:.1} | | |\n",
            mib / m
        ));
    }
    let s = util::median(sha);
    table.push_str(&format!(
        "| busybox sha256sum of 128 MiB in RAM (SHA-256 alone, one thread) | {s:.1} | {:.1} | | |\n",
        128.0 / s
    ));
    let s = util::median(ours_sha);
    table.push_str(&format!(
        "| rescue verify of an acquisition of the same 128 MiB, in the page cache (rescue's SHA-256 alone) | {s:.1} | {:.1} | | |\n",
        128.0 / s
    ));
    table.push_str(&format!(
        "\nGuest CPU (QEMU `-cpu max`, TCG) has SHA-NI: {}. Written to the evidence disk: AVML {:.0} MiB \
         ({:.0} MiB allocated), rescue's memory.lime {:.0} MiB ({:.0} MiB allocated).\n",
        if sha_ni { "yes" } else { "no" },
        avml_size.0,
        avml_size.1,
        ours_size.0,
        ours_size.1
    ));
    table.push_str(&format!(
        "Host load average before/after: {load_before} / {load_after}; {} CPUs; QEMU TCG, 2 vCPUs.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    println!("{table}");
    let out = util::project_root().join("target/bench/live.md");
    fs::create_dir_all(out.parent().unwrap_or(&work))?;
    fs::write(&out, &table)?;
    eprintln!("bench live: table written to {}", out.display());
    Ok(())
}
