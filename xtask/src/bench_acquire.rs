//! `cargo xtask bench acquire`: `rescue acquire` and `rescue verify` against `cat`, `dc3dd`, `dcfldd` and
//! `ewfacquire` on the same 2 GiB mixed test disk, attached as a read-only loop device, output to tmpfs
//! by default. Prints medians of repeated runs, throughput, our ratio to each peer, the issue's targets
//! and peak RSS, and writes the markdown table to `target/bench/acquire.md`.
//!
//! Flags: `--out-dir DIR` (default `/dev/shm/rescue-bench`), `--size SIZE` in MiB (default 2048),
//! `--runs N` (default 3), `--skip-peers`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{deps, util};

struct Options {
    out_dir: PathBuf,
    size_mib: u64,
    runs: usize,
    peers: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        out_dir: PathBuf::from("/dev/shm/rescue-bench"),
        size_mib: 2048,
        runs: 3,
        peers: true,
    };
    let mut it = args.iter().filter(|a| a.as_str() != "acquire");
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out-dir" => o.out_dir = PathBuf::from(value()?),
            "--size" => o.size_mib = value()?.parse().context("--size takes MiB")?,
            "--runs" => o.runs = value()?.parse().context("--runs takes a count")?,
            "--skip-peers" => o.peers = false,
            other => bail!(
                "unknown flag {other:?}; flags: --out-dir DIR --size MIB --runs N --skip-peers"
            ),
        }
    }
    o.runs = o.runs.max(1);
    Ok(o)
}

/// Detaches the loop device when the benchmark ends, however it ends.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("blockdev")
            .arg("--setrw")
            .arg(&self.0)
            .status();
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// The test disk: 16 MiB stripes cycling pseudo-random, zero and English-like text, so compressors and
/// zero detection see realistic mixed content. Deterministic, so sizes are comparable between runs.
pub(crate) fn make_disk(path: &Path, size_mib: u64) -> anyhow::Result<()> {
    let want = size_mib << 20;
    if fs::metadata(path).is_ok_and(|m| m.len() == want) {
        return Ok(());
    }
    eprintln!("bench: writing {size_mib} MiB test disk {}", path.display());
    let mut w = BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let text = b"Incident response: the examiner images the disk read-only, hashes it inline and records the chain of custody. ";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut stripe = vec![0u8; 16 << 20];
    for i in 0..(want / stripe.len() as u64) {
        match i % 3 {
            0 => {
                for chunk in stripe.chunks_exact_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
            }
            1 => stripe.fill(0),
            _ => {
                for (b, t) in stripe.iter_mut().zip(text.iter().cycle()) {
                    *b = *t;
                }
            }
        }
        w.write_all(&stripe)?;
    }
    w.flush()?;
    Ok(())
}

/// One timed run: wall seconds, and peak RSS in KiB when measured through `/usr/bin/time -v`.
struct Sample {
    secs: f64,
    rss_kib: Option<u64>,
}

fn timed(mut cmd: Command, stdout_to: Option<&Path>, rss: bool) -> anyhow::Result<Sample> {
    let mut cmd = if rss {
        let mut t = Command::new("/usr/bin/time");
        t.arg("-v").arg(cmd.get_program()).args(cmd.get_args());
        t
    } else {
        std::mem::replace(&mut cmd, Command::new("true"))
    };
    match stdout_to {
        Some(p) => {
            cmd.stdout(File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => cmd.stdout(Stdio::null()),
    };
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("starting `{}`", util::display(&cmd)))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "`{}` failed with {}: {}",
            util::display(&cmd),
            out.status,
            tail(&out.stderr)
        );
    }
    let rss_kib = String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes):")
            .and_then(|v| v.trim().parse().ok())
    });
    Ok(Sample { secs, rss_kib })
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Single-core SHA-256 speed in bytes/s from `openssl speed -evp sha256`.
fn openssl_sha256() -> anyhow::Result<f64> {
    let out = util::output(Command::new("openssl").args([
        "speed", "-mr", "-seconds", "2", "-bytes", "1048576", "-evp", "sha256",
    ]))?;
    // Machine-readable result line: `+F:<n>:<alg>:<bytes/s for each size>`.
    out.lines()
        .filter(|l| l.starts_with("+F:"))
        .find_map(|l| l.rsplit(':').next().and_then(|v| v.parse().ok()))
        .context("no +F: line in `openssl speed -mr` output")
}

/// A named benchmark step: one timed run per call, writing into `dir`, which is measured and then
/// removed after each run (unless `keep`) so tmpfs never fills with earlier tools' images: page reclaim
/// would otherwise slow down whichever tool runs last.
struct Step {
    name: &'static str,
    dir: PathBuf,
    keep: bool,
    run: Box<dyn Fn() -> anyhow::Result<Sample>>,
}

struct Row {
    name: String,
    secs: f64,
    rss_kib: Option<u64>,
    out_bytes: Option<u64>,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let mut tools = vec![
        ("losetup", "mount"),
        ("/usr/bin/time", "time"),
        ("openssl", "openssl"),
    ];
    if o.peers {
        tools.extend([
            ("dc3dd", "dc3dd"),
            ("dcfldd", "dcfldd"),
            ("ewfacquire", "ewf-tools"),
        ]);
    }
    deps::ensure_packages(&tools)?;
    let root = util::project_root();
    util::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", "rescue"])
            .current_dir(&root),
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let rescue = target.join("release/rescue");
    let bench_dir = root.join("target/bench");
    fs::create_dir_all(&bench_dir)?;
    let disk = bench_dir.join("acquire-disk.img");
    make_disk(&disk, o.size_mib)?;
    let dev = Loop(
        util::output(
            Command::new("losetup")
                .args(["-r", "-f", "--show"])
                .arg(&disk),
        )?
        .trim()
        .to_owned(),
    );
    let size = o.size_mib << 20;
    // Warm the backing file's page cache so every tool reads at the same speed.
    timed(cmd("cat", &[&dev.0]), None, false)?;
    fs::create_dir_all(&o.out_dir)?;

    let out = |n: &str| o.out_dir.join(n);
    let mut plan: Vec<Step> = Vec::new();
    let d = dev.0.clone();
    plan.push(Step {
        name: "cat",
        dir: out("cat"),
        keep: false,
        run: Box::new({
            let (d, p) = (d.clone(), out("cat"));
            move || {
                fresh(&p)?;
                timed(cmd("cat", &[&d]), Some(&p.join("image.raw")), false)
            }
        }),
    });
    if o.peers {
        plan.push(Step {
            name: "dc3dd hash=sha256",
            dir: out("dc3dd"),
            keep: false,
            run: Box::new({
                let (d, p) = (d.clone(), out("dc3dd"));
                move || {
                    fresh(&p)?;
                    let of = format!("of={}", p.join("image.raw").display());
                    let log = format!("log={}", p.join("dc3dd.log").display());
                    timed(
                        cmd("dc3dd", &[&format!("if={d}"), &of, "hash=sha256", &log]),
                        None,
                        false,
                    )
                }
            }),
        });
        plan.push(Step {
            name: "dcfldd hash=sha256",
            dir: out("dcfldd"),
            keep: false,
            run: Box::new({
                let (d, p) = (d.clone(), out("dcfldd"));
                move || {
                    fresh(&p)?;
                    let of = format!("of={}", p.join("image.raw").display());
                    let log = format!("hashlog={}", p.join("hash.log").display());
                    timed(
                        cmd("dcfldd", &[&format!("if={d}"), &of, "hash=sha256", &log]),
                        None,
                        false,
                    )
                }
            }),
        });
        plan.push(Step {
            name: "ewfacquire -c fast -d sha256",
            dir: out("ewf"),
            keep: false,
            run: Box::new({
                let (d, p) = (d.clone(), out("ewf"));
                move || {
                    fresh(&p)?;
                    let target = p.join("image");
                    let t = target.to_string_lossy().into_owned();
                    timed(
                        cmd(
                            "ewfacquire",
                            &[
                                "-u", "-q", "-t", &t, "-c", "fast", "-d", "sha256", "-S", "8EiB",
                                &d,
                            ],
                        ),
                        None,
                        false,
                    )
                }
            }),
        });
    }
    for (name, extra) in [
        ("rescue raw+sha256", &[][..]),
        ("rescue zstd+sha256", &["--format", "zstd"][..]),
        ("rescue raw+sha256+md5", &["--hash", "sha256,md5"][..]),
    ] {
        let (d, p, bin) = (
            d.clone(),
            out(&name.replace([' ', '+'], "-")),
            rescue.clone(),
        );
        plan.push(Step {
            name,
            dir: p.clone(),
            // The raw image stays for the verify step, which removes it.
            keep: name == "rescue raw+sha256",
            run: Box::new(move || {
                fresh(&p)?;
                let acq = p.join("acq");
                let mut c = Command::new(&bin);
                c.arg("acquire").arg(&d).arg("--out").arg(&acq).args(extra);
                timed(c, None, true)
            }),
        });
    }
    {
        // Verify re-hashes the raw+sha256 image, which the previous raw run left in place.
        let dir = out("rescue-raw-sha256");
        let (p, bin) = (dir.join("acq"), rescue.clone());
        plan.push(Step {
            name: "rescue verify (raw)",
            dir: dir.clone(),
            keep: true,
            run: Box::new(move || {
                let mut c = Command::new(&bin);
                c.arg("verify").arg(&p);
                timed(c, None, true)
            }),
        });
        // The same image hashed by two other programs: what reading a file from memory and hashing it
        // costs any tool here, next to `openssl speed`, which hashes one hot buffer. The last one
        // removes the image.
        for (name, program, args, keep) in [
            ("sha256sum (same image)", "sha256sum", &[][..], true),
            (
                "openssl dgst -sha256 (same image)",
                "openssl",
                &["dgst", "-sha256"][..],
                false,
            ),
        ] {
            let image = dir.join("acq/image.raw");
            plan.push(Step {
                name,
                dir: dir.clone(),
                keep,
                run: Box::new(move || {
                    let mut c = Command::new(program);
                    c.args(args).arg(&image);
                    timed(c, None, false)
                }),
            });
        }
    }

    // Verify and the hashes of the same image right after the raw run that made it, so no later tool
    // runs with that image still occupying memory.
    if let Some(raw) = plan.iter().position(|s| s.name == "rescue raw+sha256") {
        let rehash: Vec<Step> = plan
            .extract_if(.., |s| {
                s.name == "rescue verify (raw)" || s.name.ends_with("(same image)")
            })
            .collect();
        for (i, step) in rehash.into_iter().enumerate() {
            plan.insert(raw + 1 + i, step);
        }
    }

    let mut rows: Vec<Row> = Vec::new();
    let mut samples: Vec<Vec<(Sample, u64)>> = (0..plan.len()).map(|_| Vec::new()).collect();
    let mut sha_speeds = Vec::new();
    // Interleave repetitions so a noisy moment hurts every tool alike; the single-core SHA-256
    // reference is measured in every round too, so its ratio compares medians of the same moments.
    for round in 0..o.runs {
        sha_speeds.push(openssl_sha256()?);
        settle();
        for (i, step) in plan.iter().enumerate() {
            let s = (step.run)().with_context(|| format!("benchmark {}", step.name))?;
            eprintln!("bench: round {} {}: {:.2} s", round + 1, step.name, s.secs);
            let bytes = util::dir_size(&step.dir) + util::dir_size(&step.dir.join("acq"));
            if !step.keep {
                fs::remove_dir_all(&step.dir)
                    .with_context(|| format!("removing {}", step.dir.display()))?;
            }
            samples[i].push((s, bytes));
            settle();
        }
    }
    for (step, s) in plan.iter().zip(samples) {
        let rss = s.iter().filter_map(|(x, _)| x.rss_kib).max();
        let out_bytes = matches!(
            step.name,
            "rescue zstd+sha256" | "ewfacquire -c fast -d sha256"
        )
        .then(|| s.last().map_or(0, |(_, b)| *b));
        rows.push(Row {
            name: step.name.to_string(),
            secs: util::median(s.iter().map(|(x, _)| x.secs).collect()),
            rss_kib: rss,
            out_bytes,
        });
    }
    let sha = util::median(sha_speeds);
    let md = report(&rows, size, sha, &o)?;
    print!("{md}");
    util::write_atomic(&bench_dir.join("acquire.md"), md.as_bytes())?;
    eprintln!("bench: wrote {}", bench_dir.join("acquire.md").display());
    drop(dev);
    let _ = fs::remove_dir_all(&o.out_dir);
    Ok(())
}

/// Puts every run in the same starting state: dirty pages written back, then a pause long enough for
/// the memory the previous run freed to be handed back to the hypervisor (free page reporting reports
/// after about 2 s), so every tool writes into memory the VM must fault in again, as a first run on a
/// fresh machine does. Without it a run's time depended on what ran before it: zstd+sha256 took 3.4 s
/// right after a raw run that kept its 2 GiB image in tmpfs and 2.4 s when that image was gone (medians
/// of two); hence also verify runs right after the raw run.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(2));
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn report(rows: &[Row], size: u64, sha: f64, o: &Options) -> anyhow::Result<String> {
    let find = |n: &str| rows.iter().find(|r| r.name == n);
    let ours = find("rescue raw+sha256").context("missing rescue raw run")?;
    let mut md = String::new();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    md.push_str(&format!(
        "### Acquisition benchmark\n\n{} MiB mixed test disk (random, zero and text stripes) on a read-only loop device, \
         output to `{}`; median of {} runs; {cores} cores, {cpu}. Command: `cargo xtask bench acquire`.\n\n",
        size >> 20,
        o.out_dir.display(),
        o.runs
    ));
    md.push_str("| run | time (s) | MB/s | rescue raw+sha256 is × faster | output | peak RSS |\n|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let ratio = r.secs / ours.secs;
        md.push_str(&format!(
            "| {} | {:.2} | {:.0} | {} | {} | {} |\n",
            r.name,
            r.secs,
            size as f64 / r.secs / 1e6,
            if r.name.starts_with("rescue") || r.name.ends_with("(same image)") {
                "—".to_owned()
            } else {
                format!("{ratio:.2}")
            },
            r.out_bytes.map_or("—".to_owned(), |b| format!(
                "{:.0} MiB",
                b as f64 / 1048576.0
            )),
            r.rss_kib.map_or("—".to_owned(), |k| format!(
                "{:.0} MiB",
                k as f64 / 1024.0
            )),
        ));
    }
    md.push_str(&format!(
        "\nSingle-core SHA-256 (`openssl speed -evp sha256`, median of the rounds): {:.0} MB/s.\n\n",
        sha / 1e6
    ));
    md.push_str("| target (issue #3) | measured | met |\n|---|---:|:---:|\n");
    let mut target = |what: &str, value: f64, goal: f64, fmt: &dyn Fn(f64) -> String| {
        md.push_str(&format!(
            "| {what} | {} | {} |\n",
            fmt(value),
            if value >= goal { "yes" } else { "**no**" }
        ));
    };
    let x = |v: f64| format!("{v:.2}×");
    if let Some(cat) = find("cat") {
        target("raw+sha256 ≥ 0.85 × `cat`", cat.secs / ours.secs, 0.85, &x);
    }
    if let Some(p) = find("dc3dd hash=sha256") {
        target("raw+sha256 ≥ 4 × dc3dd", p.secs / ours.secs, 4.0, &x);
    }
    if let Some(p) = find("dcfldd hash=sha256") {
        target("raw+sha256 ≥ 8 × dcfldd", p.secs / ours.secs, 8.0, &x);
    }
    if let (Some(z), Some(e)) = (
        find("rescue zstd+sha256"),
        find("ewfacquire -c fast -d sha256"),
    ) {
        target(
            "zstd+sha256 ≥ 8 × `ewfacquire -c fast`",
            e.secs / z.secs,
            8.0,
            &x,
        );
        if let (Some(zb), Some(eb)) = (z.out_bytes, e.out_bytes) {
            target(
                "zstd output ≤ E01 size",
                eb as f64 / zb as f64,
                1.0,
                &|v| format!("E01/zstd = {v:.2}"),
            );
        }
    }
    if let Some(v) = find("rescue verify (raw)") {
        target(
            "verify ≥ 0.9 × single-core SHA-256",
            size as f64 / v.secs / sha,
            0.9,
            &x,
        );
        if let Some(o) = find("openssl dgst -sha256 (same image)") {
            md.push_str(&format!(
                "| verify vs `openssl dgst -sha256` of the same image file (informative) | {:.2}× | — |\n",
                o.secs / v.secs
            ));
        }
    }
    let rss = rows.iter().filter_map(|r| r.rss_kib).max().unwrap_or(0);
    md.push_str(&format!(
        "| peak RSS ≤ 256 MiB | {:.0} MiB | {} |\n",
        rss as f64 / 1024.0,
        if rss <= 256 * 1024 { "yes" } else { "**no**" }
    ));
    Ok(md)
}
