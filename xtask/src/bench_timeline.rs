//! `cargo xtask bench timeline [--files N] [--log-mib N] [--runs N]`: the timeline's two costs, measured next to
//! a peer. (1) The body file of an ext4 image holding N files (default 200 000, made once by
//! `mke2fs -d` and cached under `target/cache/timeline-bench/`): `rescue timeline IMAGE` (the body file
//! from the image's bytes by the ext reader, a loop mount ro,noload for the logs) against Sleuth Kit's `fls -r -m / IMAGE`, wall time and peak RSS
//! (`/usr/bin/time -v`), medians of `--runs` (5) alternating runs, with the load average before and
//! after. `rescue` is the binary `cargo xtask build` makes (no second release build). (2) Events per second over an auth.log + syslog set of N MiB
//! (default 1024) of generated lines, end to end (parse, sort in bounded memory, JSONL + CSV).
//! Prints a markdown table and writes it to `target/bench/timeline.md`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{build, deps, util};

struct Sample {
    secs: f64,
    rss_kib: u64,
    /// What the program wrote to stderr (without `/usr/bin/time`'s report).
    stderr: String,
}

fn timed(program: &Path, args: &[&str], stdout_to: Option<&Path>) -> anyhow::Result<Sample> {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v").arg(program).args(args);
    match stdout_to {
        Some(p) => c.stdout(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => c.stdout(Stdio::null()),
    };
    c.stdin(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = c
        .output()
        .with_context(|| format!("starting `{}`", util::display(&c)))?;
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("`{}` failed: {}", util::display(&c), err);
    }
    let rss_kib = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    // `/usr/bin/time -v` appends its report after the program's own stderr.
    let stderr = err
        .find("\tCommand being timed:")
        .map_or(&*err, |at| &err[..at])
        .to_owned();
    Ok(Sample {
        secs,
        rss_kib,
        stderr,
    })
}

/// The run of median time, with the highest peak RSS of all runs.
fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let rss = v.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let m = v.swap_remove(v.len() / 2);
    Sample {
        secs: m.secs,
        rss_kib: rss,
        stderr: m.stderr,
    }
}

/// The lines of a body file that name a file of the image: fls's virtual `$OrphanFiles` directory
/// (type `V/V`) is no file; everything else must be in both, byte for byte.
fn body_lines(path: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| l.split('|').nth(3) != Some("V/V---------"))
        .map(str::to_owned)
        .collect())
}

/// Fails unless both body files hold the same lines (the same names, inodes, modes, owners, sizes
/// and four times), naming a few that differ.
fn same_body(ours: &Path, fls: &Path) -> anyhow::Result<usize> {
    let (a, b) = (body_lines(ours)?, body_lines(fls)?);
    if a != b {
        let only = |x: &std::collections::BTreeSet<String>,
                    y: &std::collections::BTreeSet<String>| {
            x.difference(y)
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        bail!(
            "the body files differ: {} lines only in {} and {} only in {}; e.g.\n  ours:\n    {}\n  fls:\n    {}",
            a.difference(&b).count(),
            ours.display(),
            b.difference(&a).count(),
            fls.display(),
            only(&a, &b),
            only(&b, &a)
        );
    }
    Ok(a.len())
}

/// An ext4 image with `files` regular files in directories of 1 000, cached by its recipe.
fn image(files: u64) -> anyhow::Result<PathBuf> {
    let cache = util::project_root().join("target/cache/timeline-bench");
    let img = cache.join(format!("ext4-{files}-files-v1.img"));
    if img.is_file() {
        return Ok(img);
    }
    fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let tree = tmp.join("tree");
    for i in 0..files {
        let dir = tree.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&dir)?;
        }
        fs::write(dir.join(format!("f{i:07}")), b"")?;
    }
    let part = tmp.join("img");
    let size_mib = 64 + files / 1000; // inode tables
    util::run(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-I", "256", "-N"])
            .arg((files + 10_000).to_string())
            .arg("-d")
            .arg(&tree)
            .arg(&part)
            .arg(format!("{size_mib}M")),
    )?;
    fs::rename(&part, &img)?;
    fs::remove_dir_all(&tmp)?;
    Ok(img)
}

/// auth.log and syslog of `mib` MiB together, realistic lines, in `dir/var/log`.
fn log_set(dir: &Path, mib: u64) -> anyhow::Result<u64> {
    let log = dir.join("var/log");
    fs::create_dir_all(&log)?;
    fs::create_dir_all(dir.join("etc"))?;
    fs::write(dir.join("etc/hostname"), "bench\n")?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut lines = 0u64;
    for (name, half) in [("auth.log", 0u64), ("syslog", 1)] {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(log.join(name))?);
        let limit = (mib << 20) / 2;
        let mut written = 0u64;
        let mut i = 0u64;
        while written < limit {
            let secs = i / 40;
            let (mo, d) = ((secs / 2_000_000) % 12, 1 + (secs / 80_000) % 28);
            let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
            let line = if half == 0 {
                match i % 4 {
                    0 => format!(
                        "{} {d:2} {h:02}:{m:02}:{s:02} bench sshd[{}]: Failed password for invalid user admin{} from 203.0.113.{} port {} ssh2\n",
                        months[mo as usize],
                        1000 + i % 30000,
                        i % 97,
                        i % 250,
                        1024 + i % 60000
                    ),
                    1 => format!(
                        "{} {d:2} {h:02}:{m:02}:{s:02} bench sshd[{}]: Connection closed by invalid user admin 203.0.113.{} port {} [preauth]\n",
                        months[mo as usize],
                        1000 + i % 30000,
                        i % 250,
                        1024 + i % 60000
                    ),
                    2 => format!(
                        "{} {d:2} {h:02}:{m:02}:{s:02} bench CRON[{}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)\n",
                        months[mo as usize],
                        1000 + i % 30000
                    ),
                    _ => format!(
                        "{} {d:2} {h:02}:{m:02}:{s:02} bench sshd[{}]: Accepted publickey for deploy from 10.0.0.{} port {} ssh2: ED25519 SHA256:abcdefghijklmnopqrstuvwxyz0123456789\n",
                        months[mo as usize],
                        1000 + i % 30000,
                        i % 250,
                        1024 + i % 60000
                    ),
                }
            } else {
                format!(
                    "{} {d:2} {h:02}:{m:02}:{s:02} bench systemd[1]: Started session-{}.scope - Session {} of User deploy.\n",
                    months[mo as usize], i, i
                )
            };
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            i += 1;
        }
        w.flush()?;
        lines += i;
        // Last written in the year after the generated months, so the years are inferred.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_600);
        File::options()
            .write(true)
            .open(log.join(name))?
            .set_modified(t)?;
    }
    Ok(lines)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut files = 200_000u64;
    let mut log_mib = 1024u64;
    let mut runs = 5usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--files" => files = it.next().context("--files N")?.parse()?,
            "--log-mib" => log_mib = it.next().context("--log-mib N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse::<usize>()?.max(1),
            other => bail!("unknown option {other:?} (--files N, --log-mib N, --runs N)"),
        }
    }
    deps::ensure_packages(&[
        ("/usr/bin/time", "time"),
        ("fls", "sleuthkit"),
        ("mke2fs", "e2fsprogs"),
        ("losetup", "mount"),
    ])?;
    let root = util::project_root();
    // The very binary `cargo xtask build` makes (same target, flags and environment), so a bench
    // after a build recompiles nothing.
    let rescue = build::build_rescue_binary(&build::git_commit())?;
    let bench = root.join("target/bench");
    fs::create_dir_all(&bench)?;

    let img = image(files)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    // Warm the page cache for both.
    let _ = timed(
        Path::new("/usr/bin/fls"),
        &["-r", "-m", "/", &s(&img)],
        None,
    )?;
    let mut ours = Vec::new();
    let mut fls = Vec::new();
    let mut lines = (0, 0);
    let mut same = 0;
    let load_before = util::load_average();
    let (out, fls_out) = (bench.join("timeline-body"), bench.join("fls.body"));
    for run in 0..runs {
        let _ = fs::remove_dir_all(&out);
        let sample = timed(
            &rescue,
            &["timeline", &s(&img), "--out", &s(&out), "--tz", "UTC"],
            None,
        )?;
        // The console names the walker that listed the body file; the bench is of the ext reader.
        let said = sample
            .stderr
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !said.contains("listed by the ext reader") {
            bail!(
                "`rescue timeline` did not list the body file with the ext reader:\n{}",
                sample.stderr
            );
        }
        ours.push(sample);
        let body = out.join("bodyfile.txt");
        lines.0 = fs::read_to_string(&body)?.lines().count();
        fls.push(timed(
            Path::new("/usr/bin/fls"),
            &["-r", "-m", "/", &s(&img)],
            Some(&fls_out),
        )?);
        lines.1 = fs::read_to_string(&fls_out)?.lines().count();
        if run == 0 {
            same = same_body(&body, &fls_out)?;
        }
    }
    let load_after = util::load_average();
    let (ours, fls) = (median(ours), median(fls));

    let logs = bench.join("timeline-logs");
    let _ = fs::remove_dir_all(&logs);
    let log_lines = log_set(&logs, log_mib)?;
    let out = bench.join("timeline-logs-out");
    let _ = fs::remove_dir_all(&out);
    let ev = timed(
        &rescue,
        &["timeline", &s(&logs), "--out", &s(&out), "--tz", "UTC"],
        None,
    )?;
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("timeline-summary.json"))?)?;
    let events = summary["timeline"]["events"].as_u64().unwrap_or(0);
    let jsonl_mib = fs::metadata(out.join("timeline.jsonl"))?.len() as f64 / 1048576.0;
    let _ = fs::remove_dir_all(&out);
    let _ = fs::remove_dir_all(&logs);

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    md.push_str(&format!(
        "Body file of an ext4 image with {files} files (`mke2fs -d`), median of {runs} alternating runs, \
         {cpus} CPUs, load average {load_before} before and {load_after} after, the image file in the \
         page cache (both read the image file itself; `rescue timeline` also attaches a loop device \
         and mounts it for the logs, and unmounts it):\n\n"
    ));
    md.push_str("| tool | wall s | peak RSS MiB | body-file lines |\n|---|---:|---:|---:|\n");
    md.push_str(&format!(
        "| `rescue timeline IMAGE` (ext reader body file, loop mount ro,noload for logs) | {:.2} | {:.1} | {} |\n",
        ours.secs,
        ours.rss_kib as f64 / 1024.0,
        lines.0
    ));
    md.push_str(&format!(
        "| `fls -r -m / IMAGE` (Sleuth Kit) | {:.2} | {:.1} | {} |\n",
        fls.secs,
        fls.rss_kib as f64 / 1024.0,
        lines.1
    ));
    md.push_str(&format!(
        "\nBody-file time {:.2}× fls's ({}); the two body files hold the same {same} lines (names, \
         inodes, modes, owners, sizes, four times; fls's virtual `$OrphanFiles` aside).\n",
        ours.secs / fls.secs,
        if ours.secs <= fls.secs {
            "goal ≤ fls met"
        } else {
            "goal ≤ fls not met"
        }
    ));
    md.push_str(&format!(
        "\nLogs: {log_mib} MiB of auth.log + syslog ({log_lines} lines, years inferred), end to end \
         (parse, sort in bounded memory, timeline.jsonl {jsonl_mib:.0} MiB + CSV): {events} events in \
         {:.1} s = {:.0} events/s, peak RSS {:.0} MiB.\n",
        ev.secs,
        events as f64 / ev.secs,
        ev.rss_kib as f64 / 1024.0
    ));
    print!("{md}");
    fs::write(bench.join("timeline.md"), &md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLS: &str = "0|/a|12|r/rrw-r--r--|0|0|0|1|2|3|4\n0|/d|13|d/drwxr-xr-x|0|0|4096|1|2|3|4\n0|/$OrphanFiles|99|V/V---------|0|0|0|0|0|0|0\n";

    fn files(ours: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("ours"), d.path().join("fls"));
        fs::write(&a, ours).unwrap();
        fs::write(&b, FLS).unwrap();
        (d, a, b)
    }

    #[test]
    fn body_files_with_the_same_lines_in_another_order_agree() {
        let (_d, a, b) =
            files("0|/d|13|d/drwxr-xr-x|0|0|4096|1|2|3|4\n0|/a|12|r/rrw-r--r--|0|0|0|1|2|3|4\n");
        assert_eq!(same_body(&a, &b).unwrap(), 2);
    }

    #[test]
    fn a_missing_file_or_another_time_fails_the_bench_naming_the_line() {
        let (_d, a, b) = files("0|/a|12|r/rrw-r--r--|0|0|0|1|2|3|4\n");
        let e = same_body(&a, &b).unwrap_err().to_string();
        assert!(
            e.contains("0 lines only in") && e.contains("0|/d|13|"),
            "{e}"
        );
        let (_d, a, b) =
            files("0|/a|12|r/rrw-r--r--|0|0|0|1|2|3|5\n0|/d|13|d/drwxr-xr-x|0|0|4096|1|2|3|4\n");
        let e = same_body(&a, &b).unwrap_err().to_string();
        assert!(
            e.contains("1 lines only in") && e.contains("|1|2|3|5"),
            "{e}"
        );
    }
}
