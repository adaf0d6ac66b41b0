//! `cargo xtask test`, what CI runs: install what is missing, `cargo fmt --check`, clippy with
//! `-D warnings`, the build (twice, to prove it is reproducible), unit and CLI tests, then the QEMU
//! scenarios. Gated suites are enabled here, and the run fails if any gated scenario did not run.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::build::{self, BuildOptions};
use crate::util::cargo;
use crate::{deps, util};

fn step(name: &str) -> Instant {
    eprintln!("\n==> {name}");
    Instant::now()
}

/// Compares every file of two build directories byte for byte.
fn compare_builds(a: &Path, b: &Path) -> anyhow::Result<()> {
    let mut names: Vec<String> = fs::read_dir(a)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut differ = Vec::new();
    for n in &names {
        let (x, y) = (
            fs::read(a.join(n))?,
            fs::read(b.join(n)).with_context(|| format!("{n} missing from the second build"))?,
        );
        if x != y {
            differ.push(n.clone());
        }
    }
    if !differ.is_empty() {
        bail!(
            "the build is not reproducible: {} differ between {} and {}",
            differ.join(", "),
            a.display(),
            b.display()
        );
    }
    eprintln!(
        "xtask: reproducible: {} files identical in two builds",
        names.len()
    );
    Ok(())
}

/// Gated unit/CLI tests (they need root and host tools) that leave a marker when they ran.
const GATED_HOST_TESTS: &[&str] = &[
    "debian_root_changes_agree_with_debsums",
    "a_compromised_debootstrap_disk_image_shows_every_plant_and_the_clean_one_nothing_serious",
    "dissect_target_lists_nothing_triage_missed",
    "packages_from_signed_media_finds_a_trojan_the_local_md5sums_hide",
    "rpm_root_changes_agree_with_rpm_va",
    "sqlite_reader_agrees_with_sqlite3_including_the_wal",
    "debian_root_against_signed_media_agrees_with_debsums_on_the_debs",
    "rpm_berkeley_db_as_db_load_writes_it",
    "a_compromised_rpm_root_image_shows_every_plant_and_agrees_with_rpm_va",
    "an_rpm_root_against_a_signed_repository_shows_a_package_rebuilt_by_the_attacker",
    "timeline-journalctl",
    "timeline-last",
    "timeline-lastb",
    "timeline-fls",
    "timeline-separate-var",
    "timeline-ext-reader",
    "btrfs-dirty-log",
    "live-state-processes-ps",
    "live-state-hidden",
    "live-state-sockets-ss",
    "live-state-deleted-exe",
    "live-state-memfd-exe",
    // Issue 17: the kill matrix on both stores, and moto's server as a second store.
    "kill-matrix-s3s-fs",
    "kill-matrix-moto",
    "moto-store",
    "moto-session-token",
    // Issue 17: `net up` against a crafted DHCP server and a link without carrier, on a veth pair.
    "net-veth-dhcp",
    "net-veth-carrier",
    "net-veth-static",
    "live-state-modules-lsmod",
    "live-state-mounts-findmnt",
    "live-state-network-ip",
    "live-state-network-noprefixroute",
    "live-state-kernel-symbols",
];

/// Fails when one of `names` left no marker in `markers`.
fn check_markers(markers: &Path, names: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !markers.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        bail!("gated tests did not run: {missing:?}");
    }
    Ok(())
}

/// Copies the checkout's files (tracked and untracked, not ignored: no `target/`) to `to`.
fn copy_checkout(root: &Path, to: &Path) -> anyhow::Result<usize> {
    let listing = util::output(Command::new("git").arg("-C").arg(root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))?;
    let mut n = 0;
    for rel in listing.split('\0').filter(|r| !r.is_empty()) {
        let (from, dest) = (root.join(rel), to.join(rel));
        // A tracked file deleted in the working tree is not part of what is built.
        let Ok(meta) = fs::symlink_metadata(&from) else {
            continue;
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &dest)?;
        } else {
            fs::copy(&from, &dest)
                .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        }
        n += 1;
    }
    Ok(n)
}

/// How the second build treats cargo's compiled dependencies.
#[derive(Clone, Copy, PartialEq)]
enum Deps {
    /// Compiled again in the copy's own cargo target directory (`--reproducibility`).
    Own,
    /// Taken from the first build's cargo target directory (CI): the workspace's crates are compiled
    /// again from the copy's sources (their paths differ, so cargo never reuses them), the dependencies,
    /// compiled from cargo's home with the same flags, are not.
    Shared,
}

/// Builds the media a second time from a copy of the checkout at another path, with its own scratch
/// files and output, and cargo's compiled dependencies as `deps` says; the download cache of pinned
/// packages (`target/cache`, every file checked against `xtask/inputs.lock`) is shared. Returns the
/// output directory.
fn build_from_copy(
    root: &Path,
    opts: &BuildOptions,
    deps: Deps,
) -> anyhow::Result<std::path::PathBuf> {
    let copy = root.join("target/repro-checkout");
    let target = copy.join("target");
    // The checkout files are copied afresh; the copy's own target directory (its compiled
    // dependencies, never the first build's) is kept, so a later run recompiles only what changed.
    if let Ok(entries) = fs::read_dir(&copy) {
        for e in entries.flatten() {
            if e.file_name() == "target" {
                continue;
            }
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            }
            .with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let files = copy_checkout(root, &copy)?;
    fs::create_dir_all(&target)?;
    let _ = fs::remove_dir_all(target.join("rescue"));
    let cache = fs::canonicalize(root.join("target/cache"))
        .with_context(|| format!("resolving {}", root.join("target/cache").display()))?;
    let link = target.join("cache");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&cache, &link)?;
    let out = target.join("rescue");
    let mut c = match deps {
        // xtask itself, compiled from the copy too.
        Deps::Own => {
            let mut c = cargo();
            c.args(["run", "--locked", "-q", "-p", "xtask", "--"])
                .env("CARGO_TARGET_DIR", &target);
            c
        }
        // This xtask, pointed at the copy; cargo builds the copy's crates into the shared target
        // directory. (Compiling the copy's xtask there would replace the binary running now.)
        Deps::Shared => {
            let mut c = this_xtask()?;
            c.env("XTASK_PROJECT_ROOT", &copy)
                .env("CARGO_TARGET_DIR", build::target_dir(root));
            c
        }
    };
    eprintln!(
        "xtask: {files} files copied to {}; building there, {}",
        copy.display(),
        match deps {
            Deps::Own => format!("everything compiled in {}", target.display()),
            Deps::Shared =>
                "the workspace's crates compiled again, the dependencies shared".to_owned(),
        }
    );
    util::run(
        c.current_dir(&copy)
            .args(["build", "--out"])
            .arg(&out)
            // The copy has no .git: the same commit and date as the first build.
            .env("SOURCE_DATE_EPOCH", opts.epoch.to_string())
            .env("RESCUE_GIT_COMMIT", &opts.commit),
    )?;
    Ok(out)
}

/// `cargo xtask test --reproducibility`: only the two builds (the second from a copy at another path)
/// and their comparison.
fn reproducibility(root: &Path) -> anyhow::Result<()> {
    deps::ensure_packages(deps::BUILD)?;
    let opts = BuildOptions::parse(&[])?;
    let art = build::build(&opts)?;
    let t = Instant::now();
    let second = build_from_copy(root, &opts, Deps::Own)?;
    compare_builds(&art.dir, &second)?;
    eprintln!(
        "xtask: the second build, from the copy, took {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Paths of the tools the gated suites use, made or found once per run.
struct GatedTools {
    s3s_fs: std::path::PathBuf,
    dissect_python: std::path::PathBuf,
    volatility_python: std::path::PathBuf,
    moto_python: std::path::PathBuf,
}

impl GatedTools {
    fn ensure() -> anyhow::Result<Self> {
        deps::ensure_packages(deps::BUILD)?;
        deps::ensure_packages(deps::TEST)?;
        Self::made()
    }

    /// The tools that are neither Debian packages nor built by the build: made when missing.
    fn made() -> anyhow::Result<Self> {
        Ok(Self {
            s3s_fs: crate::bench_s3::ensure_s3s_fs()?,
            dissect_python: crate::deps::ensure_dissect_target()?,
            volatility_python: crate::deps::ensure_volatility3()?,
            moto_python: crate::deps::ensure_moto()?,
        })
    }

    /// Enables every gated suite on `c` and makes it require its tools.
    fn apply(&self, c: &mut Command, art: &build::Artifacts, markers: &Path) {
        c.env("RESCUE_ARTIFACTS", &art.dir)
            .env("RESCUE_TEST_MARKERS", markers)
            .env("RESCUE_REQUIRE_TOOLS", "1")
            .env("RESCUE_REQUIRE_LOOP", "1")
            .env("RESCUE_REQUIRE_BOOT_FILES", "1")
            .env("RESCUE_S3S_FS", &self.s3s_fs)
            .env("RESCUE_DISSECT_PYTHON", &self.dissect_python)
            .env("RESCUE_VOLATILITY_PYTHON", &self.volatility_python)
            .env("RESCUE_REQUIRE_S3S", "1")
            .env("RESCUE_MOTO_PYTHON", &self.moto_python)
            .env("RESCUE_REQUIRE_MOTO", "1")
            .env("RESCUE_STUB", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
            .env("RESCUE_KERNEL", &art.vmlinuz);
        if let Some(m) = &art.modules_dir {
            c.env("RESCUE_KERNEL_MODULES_DIR", m);
        }
    }
}

/// A command running this xtask binary again (not the checkout's xtask, which cargo would compile).
fn this_xtask() -> anyhow::Result<Command> {
    Ok(Command::new(
        std::env::current_exe().context("finding xtask's binary")?,
    ))
}

/// The gated suites' tools made by a child xtask (`test --tools`) while fmt, clippy and the builds
/// run: its compile (s3s-fs) and downloads (pip) fill what the builds leave idle. Its output goes to
/// `target/tools-setup.log`, shown when it fails.
struct ToolsInBackground {
    child: std::process::Child,
    log: std::path::PathBuf,
    started: Instant,
}

impl ToolsInBackground {
    fn start(root: &Path) -> anyhow::Result<Self> {
        let log = root.join("target/tools-setup.log");
        fs::create_dir_all(root.join("target"))?;
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = this_xtask()?
            .args(["test", "--tools"])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting `xtask test --tools`")?;
        eprintln!(
            "xtask: making s3s-fs and the Python virtualenvs in the background (log: {})",
            log.display()
        );
        Ok(Self {
            child,
            log,
            started: Instant::now(),
        })
    }

    /// Waits for the child, then returns the tools (found, not made, when it succeeded).
    fn finish(mut self) -> anyhow::Result<GatedTools> {
        let waiting = Instant::now();
        let status = self
            .child
            .wait()
            .context("waiting for `xtask test --tools`")?;
        eprintln!(
            "    started {:.0} s ago in the background; waited {:.0} s for it here",
            self.started.elapsed().as_secs_f64(),
            waiting.elapsed().as_secs_f64()
        );
        if !status.success() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            bail!(
                "making the gated suites' tools failed ({status}); the end of {}:\n{tail}",
                self.log.display()
            );
        }
        GatedTools::made()
    }
}

/// Runs every QEMU scenario (two at a time) and fails unless each left its marker in `markers`
/// (emptied first). Returns how many ran.
fn qemu_scenarios(
    tools: &GatedTools,
    art: &build::Artifacts,
    markers: &Path,
) -> anyhow::Result<usize> {
    let _ = fs::remove_dir_all(markers);
    let mut c = cargo();
    c.args(["test", "-p", "tests", "--locked", "--", "--test-threads=2"]);
    tools.apply(&mut c, art, markers);
    util::run(&mut c)?;
    // The scenarios are the integration tests; the harness's own unit tests (src/) leave no marker.
    let listed = util::output(cargo().args([
        "test", "-p", "tests", "--locked", "--test", "*", "--", "--list", "--format", "terse",
    ]))?;
    let expected: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(|name| name.rsplit("::").next().unwrap_or(name).to_owned())
        .collect();
    let ran: BTreeSet<String> = fs::read_dir(markers)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&String> = expected.difference(&ran).collect();
    if expected.is_empty() || !missing.is_empty() {
        bail!(
            "gated QEMU scenarios did not run: {missing:?} (of {} listed)",
            expected.len()
        );
    }
    Ok(ran.len())
}

/// `cargo xtask test --soak N [--busy K]`: the QEMU scenarios N times in a row while K threads spin
/// at the same priority (a machine that is busy with something else), failing on the first run that
/// fails. The suite must not depend on a quiet machine: its waits are on console output, never on
/// time. Writes the record to `target/soak.md`.
fn soak(root: &Path, runs: usize, busy: usize) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tools = GatedTools::ensure()?;
    let t = step("cargo xtask build");
    let art = build::build(&BuildOptions::parse(&[])?)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..busy)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15_u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(x.rotate_left(7) ^ x.wrapping_mul(31));
                    }
                }
            })
        })
        .collect();
    let markers = root.join("target/test-markers");
    let commit = util::output(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut result = Ok(());
    for i in 1..=runs {
        let t = step(&format!(
            "QEMU scenarios, run {i} of {runs}, {busy} busy loops"
        ));
        let load_before = util::load_average();
        let r = qemu_scenarios(&tools, &art, &markers);
        let secs = t.elapsed().as_secs_f64();
        let load_after = util::load_average();
        match r {
            Ok(n) => {
                eprintln!("    run {i}: {n} QEMU scenarios passed, {secs:.0} s");
                rows.push(format!(
                    "| {i} | {n} | passed | {secs:.0} | {load_before} → {load_after} |"
                ));
            }
            Err(e) => {
                rows.push(format!(
                    "| {i} | — | **failed**: {e} | {secs:.0} | {load_before} → {load_after} |"
                ));
                result = Err(e.context(format!("soak run {i} of {runs}")));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    let record = format!(
        "`cargo xtask test --soak {runs} --busy {busy}` at {}, {} UTC ({busy} busy loops at the \
         suite's priority next to it):\n\n| run | scenarios | result | seconds | load (1 min) |\n\
         |---:|---:|---|---:|---|\n{}\n",
        commit.trim(),
        util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"]))
            .unwrap_or_default()
            .trim(),
        rows.join("\n")
    );
    fs::write(root.join("target/soak.md"), &record)?;
    eprintln!("\n{record}");
    result
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let total = Instant::now();
    let root = util::project_root();
    match args.first().map(String::as_str) {
        None => {}
        Some("--reproducibility") => return reproducibility(&root),
        // The child of a full run that makes the gated suites' tools (see `ToolsInBackground`).
        Some("--tools") => return GatedTools::made().map(drop),
        Some("--soak") => {
            let mut runs = None;
            let mut busy = 2;
            let mut it = args.iter();
            while let Some(a) = it.next() {
                let mut value = |what: &str| -> anyhow::Result<usize> {
                    it.next()
                        .with_context(|| format!("{a} takes {what}"))?
                        .parse()
                        .with_context(|| format!("{a} takes {what}"))
                };
                match a.as_str() {
                    "--soak" => runs = Some(value("a number of runs")?),
                    "--busy" => busy = value("a number of busy loops")?,
                    other => bail!("unknown soak option {other:?}; options: --soak N --busy K"),
                }
            }
            let runs = runs
                .filter(|n| *n > 0)
                .context("--soak takes a number of runs ≥ 1")?;
            return soak(&root, runs, busy);
        }
        Some(other) => bail!("unknown test option {other:?}"),
    }
    let t = step("Debian packages");
    deps::ensure_packages(deps::BUILD)?;
    deps::ensure_packages(deps::TEST)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());
    let tools = ToolsInBackground::start(&root)?;

    let t = step("cargo fmt --check");
    util::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());

    let t = step("cargo clippy --all-targets -D warnings");
    util::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());

    let t = step("cargo xtask build");
    let opts = BuildOptions::parse(&[])?;
    let art = build::build(&opts)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());
    let t = step("cargo xtask build again, from a copy of the checkout at another path");
    let second = build_from_copy(&root, &opts, Deps::Shared)?;
    compare_builds(&art.dir, &second)?;
    eprintln!(
        "    {:.0} s (the copy compiles the workspace's crates from its own sources; the compiled \
         dependencies are shared; `cargo xtask test --reproducibility` compiles everything twice)",
        t.elapsed().as_secs_f64()
    );

    step("s3s-fs and the Python virtualenvs");
    let tools = tools.finish()?;

    let markers = root.join("target/test-markers");
    let _ = fs::remove_dir_all(&markers);
    let t = step("unit and CLI tests");
    let mut c = cargo();
    c.args(["test", "--workspace", "--locked", "--exclude", "tests"]);
    tools.apply(&mut c, &art, &markers);
    util::run(&mut c)?;
    check_markers(&markers, GATED_HOST_TESTS)?;
    crate::fuzz::check_markers(&markers)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());

    let t = step("QEMU scenarios");
    let ran = qemu_scenarios(&tools, &art, &markers)?;
    eprintln!(
        "    {} QEMU scenarios ran, {:.0} s",
        ran,
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "\nxtask: all tests passed in {:.0} s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
