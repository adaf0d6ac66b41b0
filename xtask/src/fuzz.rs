//! `cargo xtask fuzz [--seconds N] [--seed S] [NAME]`: runs every fuzz target of the `rescue` crate (the
//! `#[cfg(test)] mod fuzz` blocks beside each parser, driven by `rescue::fuzzing`) for N seconds each,
//! two at a time, and reports the cases each ran. The same targets run as a short smoke in every
//! `cargo test`; [`check_markers`] is how `cargo xtask test` proves the smoke ran them all.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{self, cargo};

/// The fuzz tests of the rescue library (regression tests of crashing inputs excluded), by name.
fn fuzz_tests() -> anyhow::Result<Vec<String>> {
    let listed = util::output(cargo().args([
        "test", "-p", "rescue", "--lib", "--locked", "--", "--list", "--format", "terse",
    ]))?;
    let tests: Vec<String> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|n| {
            n.contains("::fuzz::")
                && !n
                    .rsplit("::")
                    .next()
                    .unwrap_or("")
                    .starts_with("regression_")
        })
        .map(str::to_owned)
        .collect();
    if tests.is_empty() {
        bail!("no fuzz test found in `cargo test -p rescue --lib -- --list`");
    }
    Ok(tests)
}

/// The `fuzz-NAME` markers in `dir`: target name → cases run.
fn read_markers(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(target) = name.strip_prefix("fuzz-") else {
            continue;
        };
        let text = fs::read_to_string(e.path())?;
        let cases: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("marker {name} holds {text:?}"))?;
        out.insert(target.to_owned(), cases);
    }
    Ok(out)
}

/// Fails unless every fuzz test left a marker with a case count above zero (`cargo xtask test`, after
/// the unit tests ran with `RESCUE_TEST_MARKERS=dir`).
pub fn check_markers(dir: &Path) -> anyhow::Result<()> {
    let tests = fuzz_tests()?;
    let markers = read_markers(dir)?;
    if markers.len() < tests.len() {
        bail!(
            "{} fuzz tests but only {} fuzz targets left a marker in {} (ran: {:?})",
            tests.len(),
            markers.len(),
            dir.display(),
            markers.keys().collect::<Vec<_>>()
        );
    }
    if let Some((t, _)) = markers.iter().find(|(_, c)| **c == 0) {
        bail!("fuzz target {t} ran no case");
    }
    let total: u64 = markers.values().sum();
    eprintln!(
        "xtask: fuzz smoke: {} targets, {total} cases, 0 failures",
        markers.len()
    );
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut seed = None;
    let mut filter = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .with_context(|| format!("--seconds {v:?} is not a positive number"))?;
            }
            "--seed" => seed = Some(it.next().context("--seed needs a number")?.clone()),
            s if !s.starts_with('-') && filter.is_none() => filter = Some(s.to_owned()),
            other => bail!(
                "usage: cargo xtask fuzz [--seconds N] [--seed S] [TEST-NAME-PART]; not {other:?}"
            ),
        }
    }
    let root = util::project_root();
    let markers = root.join("target/fuzz-markers");
    let _ = fs::remove_dir_all(&markers);
    fs::create_dir_all(&markers)?;
    let mut tests = fuzz_tests()?;
    if let Some(f) = &filter {
        tests.retain(|t| t.contains(f.as_str()));
        if tests.is_empty() {
            bail!("no fuzz test matches {f:?}");
        }
    }
    eprintln!(
        "xtask: fuzzing {} targets for {seconds} s each, two at a time (about {} s)",
        tests.len(),
        (tests.len() as u64).div_ceil(2) * seconds
    );
    let t = Instant::now();
    let mut c = cargo();
    c.args(["test", "-p", "rescue", "--lib", "--locked", "--"])
        .args(&tests)
        .args(["--exact", "--test-threads=2"])
        .env("RESCUE_FUZZ_SECONDS", seconds.to_string())
        .env("RESCUE_TEST_MARKERS", &markers);
    if let Some(s) = &seed {
        c.env("RESCUE_FUZZ_SEED", s);
    }
    let result = util::run(&mut c);
    let ran = read_markers(&markers)?;
    for (name, cases) in &ran {
        eprintln!("    {name:<20} {cases:>10} cases");
    }
    let total: u64 = ran.values().sum();
    if let Err(e) = result {
        bail!(
            "a fuzz target failed (its input is printed above and saved under target/fuzz-failures/; \
             {} of {} targets finished): {e}",
            ran.len(),
            tests.len()
        );
    }
    if ran.len() < tests.len() {
        bail!(
            "{} fuzz tests ran but {} targets left a marker",
            tests.len(),
            ran.len()
        );
    }
    eprintln!(
        "xtask: fuzz: {} targets, {total} cases in {:.0} s, 0 failures",
        ran.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
