//! `cargo xtask repro --fresh-root`: the issue's "a clean clone built on two machines gives the same
//! SHA256SUMS", as closely as one machine allows.
//!
//! The first machine is this checkout: `cargo xtask build` here. The second is a fresh Debian 12 root
//! made by `debootstrap` (the cached tarball the package-database tests use, keyed by suite,
//! architecture, mirror and debootstrap version) entered through `unshare --mount --uts` and `chroot`,
//! with its own host name, build user (uid 4321, not root), home, umask, time zone and locale. Into it
//! go a `git clone` of HEAD (never a copy of the work tree: the work tree must be clean), the toolchain
//! packages pinned in `xtask/inputs.lock` (and git: the build reads the commit and its date)
//! installed by `apt-get` from the Debian archive, this machine's pinned Rust toolchain mounted
//! read-only (the bits rustup downloads; nothing is fetched),
//! the downloaded `.crate` files (checked by cargo against `Cargo.lock`) and the pinned `.deb` inputs
//! (checked by the build against the lock). There `cargo xtask build` runs as the build user; both
//! SHA256SUMS files are printed with their difference, and any difference is an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::build::{self, BuildOptions};
use crate::{inputs, util};

const SUITE: &str = "bookworm";
const ARCH: &str = "amd64";
/// The second machine's build user, host name, time zone, locale and umask: all unlike this one's.
const USER: &str = "examiner";
const UID: u32 = 4321;
const HOSTNAME: &str = "second-machine";
const TZ: &str = "Pacific/Chatham";
const LOCALE: &str = "C.UTF-8";
const UMASK: &str = "0027";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The mirror debootstrap downloads from (`RESCUE_DEBIAN_MIRROR` overrides it, as in the tests).
fn mirror() -> String {
    std::env::var("RESCUE_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// The cached tarball of a fresh Debian 12 root (shared with `rescue/tests/common/pkgroots.rs`, same
/// key), made now when missing: debootstrap into a temporary directory, packed, renamed into place.
pub(crate) fn debian12_tarball(root: &Path) -> anyhow::Result<PathBuf> {
    let version =
        util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", "debootstrap"]))
            .context("debootstrap is not installed (apt-get install debootstrap)")?;
    let mirror = mirror();
    let key = mirror
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .replace('/', "_");
    let dir = root.join("target/cache/debootstrap");
    let tarball = dir.join(format!(
        "{SUITE}-{ARCH}-{key}-debootstrap_{}.tar.zst",
        version.trim()
    ));
    if tarball.is_file() {
        return Ok(tarball);
    }
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".tmp-repro-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let r = tmp.join("root");
    eprintln!(
        "xtask: debootstrap {SUITE} from {mirror} (cached in {})",
        dir.display()
    );
    util::run(
        Command::new("debootstrap")
            .arg(format!("--arch={ARCH}"))
            .arg(SUITE)
            .arg(&r)
            .arg(&mirror),
    )?;
    let part = tmp.join("root.tar.zst");
    util::run(
        Command::new("tar")
            .args([
                "--zstd",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-C",
            ])
            .arg(&r)
            .arg("-cpf")
            .arg(&part)
            .arg("."),
    )?;
    fs::rename(&part, &tarball)?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(tarball)
}

/// The rust toolchain directory rustup uses for this checkout (`rust-toolchain.toml`), resolved.
fn rust_sysroot(root: &Path) -> anyhow::Result<PathBuf> {
    let out = util::output(
        Command::new("rustc")
            .current_dir(root)
            .args(["--print", "sysroot"]),
    )?;
    let p = PathBuf::from(out.trim());
    fs::canonicalize(&p).with_context(|| format!("resolving {}", p.display()))
}

/// Shell-quotes one word for the generated scripts.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Parses SHA256SUMS into (name, hash) pairs.
fn sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, n)| (n.to_owned(), h.to_owned()))
        .collect()
}

/// The lines that differ between two SHA256SUMS files, one per file name.
pub fn sums_diff(first: &str, second: &str) -> Vec<String> {
    let (a, b) = (sums(first), sums(second));
    let mut out = Vec::new();
    for (n, h) in &a {
        match b.iter().find(|(m, _)| m == n) {
            None => out.push(format!("{n}: only in the first build")),
            Some((_, g)) if g != h => out.push(format!("{n}: {h} (first) != {g} (second)")),
            Some(_) => {}
        }
    }
    for (n, _) in &b {
        if !a.iter().any(|(m, _)| m == n) {
            out.push(format!("{n}: only in the second build"));
        }
    }
    out
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut warm = false;
    let mut fresh = false;
    for a in args {
        match a.as_str() {
            "--fresh-root" => fresh = true,
            "--warm" => warm = true,
            other => bail!("unknown repro option {other:?} (see `cargo xtask help`)"),
        }
    }
    if !fresh {
        bail!("`cargo xtask repro` needs --fresh-root (the only mode: see `cargo xtask help`)");
    }
    if !is_root() {
        bail!(
            "`cargo xtask repro --fresh-root` needs root (debootstrap root, chroot, mount and uts namespaces)"
        );
    }
    crate::deps::ensure_packages(&[
        ("unshare", "util-linux"),
        ("chroot", "coreutils"),
        ("tar", "tar"),
        ("zstd", "zstd"),
        ("debootstrap", "debootstrap"),
        ("git", "git"),
    ])?;
    let root = util::project_root();
    let dirty = util::output(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))?;
    if !dirty.trim().is_empty() {
        bail!(
            "the work tree has uncommitted changes; the second machine builds a clean clone of HEAD, so commit first:\n{dirty}"
        );
    }
    let head = util::output(
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "HEAD"]),
    )?
    .trim()
    .to_owned();
    // The first build runs last: it builds this commit's identity even if HEAD moves meanwhile, and
    // the run fails if the work tree no longer holds that commit.
    let first_opts = BuildOptions::parse(&[])?;

    // The second machine: a fresh Debian 12 root (built first: it is the slow one).
    let t = Instant::now();
    let tarball = debian12_tarball(&root)?;
    let work = root.join("target/repro-fresh");
    let r = work.join("root");
    if r.exists() {
        util::run(Command::new("rm").arg("-rf").arg(&r))?;
    }
    fs::create_dir_all(&r)?;
    util::run(
        Command::new("tar")
            .args([
                "--zstd",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
            ])
            .arg(&tarball)
            .arg("-C")
            .arg(&r),
    )?;
    let home = r.join("home").join(USER);
    let clone = home.join("rescue");
    util::run(
        Command::new("git")
            .args(["clone", "-q", "--no-local", "--no-checkout"])
            .arg(&root)
            .arg(&clone),
    )?;
    util::run(
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["checkout", "-q", "--detach", &head]),
    )?;
    // The pinned .debs (each checked against the lock by the build), instead of downloading them again.
    let lock = inputs::Lock::load()?;
    // The second build's target directory: new (`rm -rf`) unless --warm keeps the last run's compiled
    // crates; mounted over the clone's `target/`.
    let target = work.join("target-second");
    if !warm && target.exists() {
        util::run(Command::new("rm").arg("-rf").arg(&target))?;
    }
    fs::create_dir_all(clone.join("target"))?;
    let _ = fs::remove_dir_all(target.join("rescue"));
    let debs = target.join("cache/debs");
    fs::create_dir_all(&debs)?;
    for pin in lock.pins.iter().filter(|p| p.role != "toolchain") {
        let deb = inputs::fetch(pin)?;
        fs::copy(&deb, debs.join(pin.file_name()))
            .with_context(|| format!("copying {}", deb.display()))?;
    }
    // Downloaded crates (cargo checks each against Cargo.lock) and rustup's proxy.
    let cargo_home = build::cargo_home();
    let inner_cargo = home.join(".cargo");
    fs::create_dir_all(inner_cargo.join("registry"))?;
    fs::create_dir_all(inner_cargo.join("bin"))?;
    for sub in ["cache", "index"] {
        let from = cargo_home.join("registry").join(sub);
        if from.is_dir() {
            util::run(
                Command::new("cp")
                    .arg("-a")
                    .arg(&from)
                    .arg(inner_cargo.join("registry")),
            )?;
        }
    }
    let rustup = cargo_home.join("bin/rustup");
    fs::copy(&rustup, inner_cargo.join("bin/rustup"))
        .with_context(|| format!("copying {}", rustup.display()))?;
    for proxy in [
        "cargo",
        "rustc",
        "rustdoc",
        "rustfmt",
        "cargo-fmt",
        "cargo-clippy",
        "clippy-driver",
    ] {
        std::os::unix::fs::symlink("rustup", inner_cargo.join("bin").join(proxy))?;
    }
    let sysroot = rust_sysroot(&root)?;
    let channel = build::toolchain_channel(&root)?;
    let toolchain_dir = home
        .join(".rustup/toolchains")
        .join(format!("{channel}-x86_64-unknown-linux-gnu"));
    fs::create_dir_all(&toolchain_dir)?;
    for dir in [&home, &target] {
        util::run(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{UID}:{UID}"))
                .arg(dir),
        )?;
    }
    // apt sources of a fresh Debian 12 machine; name service from this one.
    fs::write(
        r.join("etc/apt/sources.list"),
        format!(
            "deb http://deb.debian.org/debian {SUITE} main\n\
             deb http://deb.debian.org/debian {SUITE}-updates main\n\
             deb http://deb.debian.org/debian-security {SUITE}-security main\n"
        ),
    )?;
    fs::copy("/etc/resolv.conf", r.join("etc/resolv.conf")).context("copying /etc/resolv.conf")?;
    fs::write(r.join("etc/hostname"), format!("{HOSTNAME}\n"))?;

    let toolchain: Vec<String> = lock
        .all("toolchain")
        .iter()
        .map(|p| format!("{}:{}={}", p.name, p.arch, p.version))
        .collect();
    let script_dir = r.join("repro");
    fs::create_dir_all(&script_dir)?;
    let inner = format!(
        "set -eu\n\
         export DEBIAN_FRONTEND=noninteractive\n\
         apt-get update -q\n\
         apt-get install -y -q --no-install-recommends ca-certificates git {pkgs}\n\
         echo '{USER}:x:{UID}:{UID}:build user:/home/{USER}:/bin/sh' >> /etc/passwd\n\
         echo '{USER}:x:{UID}:' >> /etc/group\n\
         echo \"second machine: $(hostname), build user {USER} (uid {UID}), umask {UMASK}, TZ {TZ}, {LOCALE}\"\n\
         exec setpriv --reuid={UID} --regid={UID} --clear-groups \\\n\
           env -i HOME=/home/{USER} USER={USER} LOGNAME={USER} TZ={TZ} LANG={LOCALE} LC_ALL={LOCALE} \\\n\
           PATH=/home/{USER}/.cargo/bin:/usr/local/bin:/usr/bin:/bin \\\n\
           /bin/sh -c 'umask {UMASK} && cd /home/{USER}/rescue && date && cargo xtask build'\n",
        pkgs = toolchain.join(" "),
    );
    fs::write(script_dir.join("inner.sh"), inner)?;
    let outer = format!(
        "set -eu\n\
         R={r}\n\
         hostname {HOSTNAME}\n\
         mount --rbind /dev \"$R/dev\"\n\
         mount -t proc proc \"$R/proc\"\n\
         mount -t sysfs sysfs \"$R/sys\"\n\
         mount --bind {sysroot} {tc}\n\
         mount -o remount,bind,ro {tc}\n\
         mount --bind {target} {clone_target}\n\
         exec chroot \"$R\" /bin/sh /repro/inner.sh\n",
        r = q(&r.to_string_lossy()),
        sysroot = q(&sysroot.to_string_lossy()),
        tc = q(&toolchain_dir.to_string_lossy()),
        target = q(&target.to_string_lossy()),
        clone_target = q(&clone.join("target").to_string_lossy()),
    );
    fs::write(work.join("outer.sh"), outer)?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--uts",
        "--fork",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
    ])
    .arg(work.join("outer.sh"));
    eprintln!(
        "xtask: second build, in a fresh Debian 12 root at {} (clone of {head})",
        r.display()
    );
    util::run(&mut cmd)?;
    let second_secs = t.elapsed().as_secs_f64();
    let second_sums = fs::read_to_string(target.join("rescue/SHA256SUMS"))
        .context("the second build wrote no SHA256SUMS")?;

    // The first machine: this checkout (second in time, so both compile from scratch at once when
    // this one is cold too, and the slow root build is not waiting behind it).
    let t = Instant::now();
    eprintln!("xtask: first build, in {}", root.display());
    let now = util::output(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))?;
    let now_head = util::output(
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "HEAD"]),
    )?;
    if now_head.trim() != head || !now.trim().is_empty() {
        bail!(
            "the work tree moved from {head} during the run (now {}, {} changed file(s)); run again",
            now_head.trim(),
            now.lines().count()
        );
    }
    let first = build::build(&first_opts)?;
    let first_secs = t.elapsed().as_secs_f64();
    let first_sums = fs::read_to_string(first.dir.join("SHA256SUMS"))?;

    println!("first machine ({}):\n{first_sums}", first.dir.display());
    println!("second machine (fresh Debian 12 root, {HOSTNAME}):\n{second_sums}");
    let diff = sums_diff(&first_sums, &second_sums);
    println!(
        "first build {first_secs:.0} s, second build (root, toolchain, full compile) {second_secs:.0} s"
    );
    if diff.is_empty() && !first_sums.trim().is_empty() {
        println!("identical: {} files", sums(&first_sums).len());
        Ok(())
    } else {
        for d in &diff {
            println!("DIFFERS {d}");
        }
        bail!(
            "the two machines built different media ({} difference(s)); the second build is kept in {}",
            diff.len(),
            target.join("rescue").display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_diff_names_every_difference() {
        let a = "aa  x.img\nbb  y.iso\ncc  z\n";
        let b = "aa  x.img\nbd  y.iso\ndd  w\n";
        assert_eq!(
            sums_diff(a, b),
            [
                "y.iso: bb (first) != bd (second)",
                "z: only in the first build",
                "w: only in the second build"
            ]
        );
        assert!(sums_diff(a, a).is_empty());
    }
}
