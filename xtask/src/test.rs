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

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(a) = args.first() {
        bail!("unknown test option {a:?}");
    }
    let total = Instant::now();
    let root = util::project_root();
    deps::ensure_packages(deps::BUILD)?;
    deps::ensure_packages(deps::TEST)?;
    let s3s_fs = crate::bench_s3::ensure_s3s_fs()?;
    let dissect_python = crate::deps::ensure_dissect_target()?;

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

    let t = step("cargo xtask build (twice, for reproducibility)");
    let opts = BuildOptions::parse(&[])?;
    let art = build::build(&opts)?;
    let repro_dir = root.join("target/rescue-repro");
    let _ = fs::remove_dir_all(&repro_dir);
    build::build(&BuildOptions {
        out: repro_dir.clone(),
        ..opts.clone()
    })?;
    compare_builds(&art.dir, &repro_dir)?;
    eprintln!("    {:.0} s", t.elapsed().as_secs_f64());

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
            .env("RESCUE_REQUIRE_S3S", "1")
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
