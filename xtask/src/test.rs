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
use crate::{deps, util};

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.current_dir(util::project_root());
    c
}

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
    "timeline-fls",
    "timeline-separate-var",
    "timeline-ext-reader",
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

/// Builds the media a second time from a copy of the checkout at another path, with its own target
/// directory (compiled binaries, scratch files, output); only the download cache of pinned packages
/// (`target/cache`, every file checked against `xtask/inputs.lock`) is shared. Returns the output
/// directory.
fn build_from_copy(root: &Path, opts: &BuildOptions) -> anyhow::Result<std::path::PathBuf> {
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
    eprintln!(
        "xtask: {files} files copied to {}; building there with CARGO_TARGET_DIR={}",
        copy.display(),
        target.display()
    );
    util::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(&copy)
            .args([
                "run", "--locked", "-q", "-p", "xtask", "--", "build", "--out",
            ])
            .arg(&out)
            .env("CARGO_TARGET_DIR", &target)
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
    let second = build_from_copy(root, &opts)?;
    compare_builds(&art.dir, &second)?;
    eprintln!(
        "xtask: the second build, from the copy, took {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let total = Instant::now();
    let root = util::project_root();
    if let Some(a) = args.first() {
        match a.as_str() {
            "--reproducibility" => return reproducibility(&root),
            other => bail!("unknown test option {other:?}"),
        }
    }
    deps::ensure_packages(deps::BUILD)?;
    deps::ensure_packages(deps::TEST)?;
    let s3s_fs = crate::bench_s3::ensure_s3s_fs()?;
    let dissect_python = crate::deps::ensure_dissect_target()?;
    let volatility_python = crate::deps::ensure_volatility3()?;
    let moto_python = crate::deps::ensure_moto()?;

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
    let second = build_from_copy(&root, &opts)?;
    compare_builds(&art.dir, &second)?;
    eprintln!(
        "    {:.0} s (the copy compiles everything in its own target directory; only the \
         download cache of pinned .debs is shared)",
        t.elapsed().as_secs_f64()
    );

    let markers = root.join("target/test-markers");
    let _ = fs::remove_dir_all(&markers);
    let gated_env = |c: &mut Command| {
        c.env("RESCUE_ARTIFACTS", &art.dir)
            .env("RESCUE_TEST_MARKERS", &markers)
            .env("RESCUE_REQUIRE_TOOLS", "1")
            .env("RESCUE_REQUIRE_LOOP", "1")
            .env("RESCUE_REQUIRE_BOOT_FILES", "1")
            .env("RESCUE_S3S_FS", &s3s_fs)
            .env("RESCUE_DISSECT_PYTHON", &dissect_python)
            .env("RESCUE_VOLATILITY_PYTHON", &volatility_python)
            .env("RESCUE_REQUIRE_S3S", "1")
            .env("RESCUE_MOTO_PYTHON", &moto_python)
            .env("RESCUE_REQUIRE_MOTO", "1")
            .env("RESCUE_STUB", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
            .env("RESCUE_KERNEL", &art.vmlinuz);
        if let Some(m) = &art.modules_dir {
            c.env("RESCUE_KERNEL_MODULES_DIR", m);
        }
    };

    let t = step("unit and CLI tests");
    let mut c = cargo();
    c.args(["test", "--workspace", "--locked", "--exclude", "tests"]);
    gated_env(&mut c);
    util::run(&mut c)?;
    check_markers(&markers, GATED_HOST_TESTS)?;
    crate::fuzz::check_markers(&markers)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());

    let t = step("QEMU scenarios");
    let mut c = cargo();
    c.args(["test", "-p", "tests", "--locked", "--", "--test-threads=2"]);
    gated_env(&mut c);
    util::run(&mut c)?;
    let listed = util::output(cargo().args([
        "test", "-p", "tests", "--locked", "--", "--list", "--format", "terse",
    ]))?;
    let expected: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(|name| name.rsplit("::").next().unwrap_or(name).to_owned())
        .collect();
    let ran: BTreeSet<String> = fs::read_dir(&markers)
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
    eprintln!(
        "    {} QEMU scenarios ran, {:.0} s",
        ran.len(),
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "\nxtask: all tests passed in {:.0} s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
