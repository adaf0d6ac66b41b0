//! Real package-database roots for tests (issue 18): a Debian 12 root made by `debootstrap` and a
//! RHEL-like root whose rpmdb (SQLite) is made by Debian's `rpm` from small packages built with
//! `rpmbuild`. Include it from a test with
//! `#[path = "common/pkgroots.rs"] mod pkgroots;`.
//!
//! The debootstrap root is slow to make (minutes, network to the Debian mirror), so it is cached as a
//! tarball in `target/cache/debootstrap/`, keyed by suite, architecture, mirror and debootstrap
//! version, built in a temporary directory and renamed into place. Each test extracts its own copy
//! (a few seconds) and may change it freely.
//!
//! Every helper returns `None` when it cannot run here (not root, a tool missing) after saying why on
//! stderr, unless `RESCUE_REQUIRE_TOOLS=1` (set by `cargo xtask test`) makes that a failure. A test
//! that ran calls [`ran`] to leave its marker in `RESCUE_TEST_MARKERS`; `cargo xtask test` fails when
//! a listed gated test left none.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SUITE: &str = "bookworm";
pub const ARCH: &str = "amd64";

/// The mirror debootstrap downloads from (`RESCUE_DEBIAN_MIRROR` overrides it).
pub fn mirror() -> String {
    std::env::var("RESCUE_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// Skips (returns false) or, under `RESCUE_REQUIRE_TOOLS`, fails.
pub fn skip(test: &str, why: &str) -> bool {
    assert!(
        std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
        "{test}: {why}, and RESCUE_REQUIRE_TOOLS=1 forbids skipping"
    );
    eprintln!("skipped {test}: {why}");
    false
}

/// Records that the gated test `test` really ran.
pub fn ran(test: &str) {
    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&m);
        let _ = std::fs::write(Path::new(&m).join(test), b"ran\n");
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The shared cache of heavy fixtures (`target/cache`).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cache")
}

fn debootstrap_version() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "debootstrap"]));
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// The cached tarball of a Debian 12 debootstrap root, made now if missing.
pub fn debian12_tarball(test: &str) -> Option<PathBuf> {
    if !is_root() {
        skip(test, "extracting a Debian root with its owners needs root");
        return None;
    }
    for tool in ["debootstrap", "tar", "zstd"] {
        if !have(tool) {
            skip(test, &format!("{tool} is not installed"));
            return None;
        }
    }
    let mirror = mirror();
    let key = mirror
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .replace('/', "_");
    let dir = cache_dir().join("debootstrap");
    let tarball = dir.join(format!(
        "{SUITE}-{ARCH}-{key}-debootstrap_{}.tar.zst",
        debootstrap_version()
    ));
    if tarball.is_file() {
        return Some(tarball);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&dir)
        .unwrap();
    let root = tmp.path().join("root");
    run(Command::new("debootstrap")
        .arg(format!("--arch={ARCH}"))
        .args([SUITE])
        .arg(&root)
        .arg(&mirror));
    let part = tmp.path().join("root.tar.zst");
    run(Command::new("tar")
        .args([
            "--zstd",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
        ])
        .arg(&root)
        .arg("-cpf")
        .arg(&part)
        .arg("."));
    std::fs::rename(&part, &tarball).unwrap();
    Some(tarball)
}

/// Extracts a fresh copy of the Debian 12 root into `dest` (an empty directory).
pub fn debian12_root(test: &str, dest: &Path) -> Option<()> {
    let tarball = debian12_tarball(test)?;
    run(Command::new("tar")
        .args([
            "--zstd",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-xpf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(dest));
    Some(())
}

/// Moves debootstrap's signed lists (`*_InRelease`, `*_Packages`) and the `.deb`s it installed out of
/// a Debian root into `media` (`lists/`, `debs/`): the medium a responder brings for
/// `--packages-from`. Returns the `.deb` paths.
pub fn media_from_debootstrap_root(root: &Path, media: &Path) -> Vec<PathBuf> {
    let (lists, debs) = (media.join("lists"), media.join("debs"));
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::create_dir_all(&debs).unwrap();
    let mut out = Vec::new();
    for (from, to) in [
        (root.join("var/lib/apt/lists"), &lists),
        (root.join("var/cache/apt/archives"), &debs),
    ] {
        for e in std::fs::read_dir(&from).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with("_InRelease") || n.ends_with("_Packages") || n.ends_with(".deb") {
                std::fs::rename(e.path(), to.join(&n)).unwrap();
                if n.ends_with(".deb") {
                    out.push(to.join(&n));
                }
            }
        }
    }
    out.sort();
    assert!(out.len() > 100, "debootstrap kept {} .debs", out.len());
    out
}

/// One file of a test rpm: path, content (`None`: a directory), mode, owner, and the `%files` line
/// prefix (`%config(noreplace)`, `%ghost` …).
pub struct RpmFile {
    pub path: &'static str,
    pub content: RpmContent,
    pub mode: u32,
    pub user: &'static str,
    pub group: &'static str,
    pub attr: &'static str,
}

pub enum RpmContent {
    File(Vec<u8>),
    Dir,
    Symlink(&'static str),
}

/// One test package.
pub struct RpmPackage {
    pub name: &'static str,
    pub version: &'static str,
    pub files: Vec<RpmFile>,
}

fn f(path: &'static str, content: &[u8], mode: u32) -> RpmFile {
    RpmFile {
        path,
        content: RpmContent::File(content.to_vec()),
        mode,
        user: "root",
        group: "root",
        attr: "",
    }
}

/// The packages of the RHEL-like root: binaries, a library, a setuid program, config files, a
/// directory owned by a service account, a symlink, a ghost file and a 3 MiB file (streamed hashing).
pub fn rpm_packages() -> Vec<RpmPackage> {
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    vec![
        RpmPackage {
            name: "rescue-tools",
            version: "1.0",
            files: vec![
                f("/usr/bin/rt-hello", b"#!/bin/sh\necho hello\n", 0o755),
                f("/usr/bin/rt-world", b"#!/bin/sh\necho world\n", 0o755),
                f("/usr/sbin/rt-su", b"\x7fELF pretend setuid\n", 0o4755),
                RpmFile {
                    path: "/usr/bin/rt-link",
                    content: RpmContent::Symlink("rt-hello"),
                    mode: 0o777,
                    user: "root",
                    group: "root",
                    attr: "",
                },
                RpmFile {
                    attr: "%config(noreplace)",
                    ..f("/etc/rt.conf", b"setting = 1\n", 0o644)
                },
            ],
        },
        RpmPackage {
            name: "rescue-libs",
            version: "2.3",
            files: vec![
                f("/usr/lib64/librt-demo.so.1", &big, 0o755),
                f("/usr/share/rt/data.txt", b"data\n", 0o644),
                RpmFile {
                    attr: "%ghost",
                    ..f("/var/log/rt.log", b"", 0o640)
                },
            ],
        },
        RpmPackage {
            name: "rescue-daemon",
            version: "0.9",
            files: vec![
                RpmFile {
                    path: "/var/lib/rtd",
                    content: RpmContent::Dir,
                    mode: 0o750,
                    user: "daemon",
                    group: "daemon",
                    attr: "",
                },
                // allow(sleep): a file planted in the suspect root, never run
                f("/usr/sbin/rtd", b"#!/bin/sh\nexec sleep 1\n", 0o755),
                RpmFile {
                    attr: "%config",
                    ..f("/etc/rtd/rtd.conf", b"port = 9\n", 0o600)
                },
            ],
        },
    ]
}

/// Builds the test packages with `rpmbuild` into `out` and returns the `.rpm` paths.
pub fn build_rpms(out: &Path) -> Vec<PathBuf> {
    build_these_rpms(out, rpm_packages())
}

/// Builds `packages` with `rpmbuild` into `out` and returns the `.rpm` paths.
pub fn build_these_rpms(out: &Path, packages: Vec<RpmPackage>) -> Vec<PathBuf> {
    let mut rpms = Vec::new();
    for p in packages {
        let top = out.join(format!("build-{}", p.name));
        let src = top.join("payload");
        let mut install = String::new();
        let mut files = String::new();
        for (i, file) in p.files.iter().enumerate() {
            let dest = format!("%{{buildroot}}{}", file.path);
            let parent = Path::new(file.path).parent().unwrap().display().to_string();
            install.push_str(&format!("mkdir -p %{{buildroot}}{parent}\n"));
            match &file.content {
                RpmContent::File(bytes) => {
                    std::fs::create_dir_all(&src).unwrap();
                    std::fs::write(src.join(i.to_string()), bytes).unwrap();
                    install.push_str(&format!("cp {}/{i} {dest}\n", src.display()));
                }
                RpmContent::Dir => install.push_str(&format!("mkdir -p {dest}\n")),
                RpmContent::Symlink(t) => install.push_str(&format!("ln -s {t} {dest}\n")),
            }
            let mode = if matches!(file.content, RpmContent::Symlink(_)) {
                "-".to_owned()
            } else {
                format!("{:o}", file.mode)
            };
            let dir = if matches!(file.content, RpmContent::Dir) {
                "%dir "
            } else {
                ""
            };
            files.push_str(&format!(
                "%attr({mode},{},{}) {} {dir}{}\n",
                file.user, file.group, file.attr, file.path
            ));
        }
        let spec = format!(
            "Name: {name}\nVersion: {ver}\nRelease: 1\nSummary: test package\nLicense: MIT\nBuildArch: x86_64\n\
             %description\ntest package for rescue pkgdb\n\
             %install\n{install}\n\
             %files\n{files}",
            name = p.name,
            ver = p.version
        );
        let spec_path = top.join(format!("{}.spec", p.name));
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(&spec_path, spec).unwrap();
        run(Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--define", "_build_id_links none"])
            .args(["--define", "__spec_install_post %{nil}"])
            .args(["--define", "_binary_filedigest_algorithm 8"])
            .arg("-bb")
            .arg(&spec_path));
        let rpm = top.join(format!("RPMS/x86_64/{}-{}-1.x86_64.rpm", p.name, p.version));
        assert!(rpm.is_file(), "rpmbuild made no {}", rpm.display());
        rpms.push(rpm);
    }
    rpms
}

/// Makes a RHEL-like root in `dest`: `/etc/passwd` and `/etc/group` with the accounts the packages
/// use, `/bin` → `usr/bin` and friends (/usr-merged as RHEL 9 is), an rpmdb in SQLite format at
/// `/var/lib/rpm` made by `rpm --initdb`, and the test packages installed with `rpm -i --nodeps`.
pub fn rpm_root(test: &str, dest: &Path, work: &Path) -> Option<()> {
    if !is_root() {
        skip(test, "installing rpms with their owners needs root");
        return None;
    }
    for tool in ["rpm", "rpmbuild"] {
        if !have(tool) {
            skip(test, &format!("{tool} is not installed"));
            return None;
        }
    }
    for d in [
        "etc",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "var/lib/rpm",
    ] {
        std::fs::create_dir_all(dest.join(d)).unwrap();
    }
    for l in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), dest.join(l)).unwrap();
    }
    std::fs::write(
        dest.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:2:2:daemon:/sbin:/sbin/nologin\nnobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        dest.join("etc/group"),
        "root:x:0:\ndaemon:x:2:\nnobody:x:65534:\n",
    )
    .unwrap();
    let rpms = build_rpms(work);
    let rpm = |args: &[&str]| {
        let mut c = Command::new("rpm");
        c.arg("--root")
            .arg(dest)
            .args(["--dbpath", "/var/lib/rpm", "--define", "_db_backend sqlite"])
            .args(args);
        c
    };
    run(&mut rpm(&["--initdb"]));
    run(rpm(&["-i", "--nodeps", "--noscripts"]).args(&rpms));
    assert!(
        dest.join("var/lib/rpm/rpmdb.sqlite").is_file(),
        "rpm --initdb made no rpmdb.sqlite"
    );
    Some(())
}

/// The files `rpm -Va` reports as changed in what pkgdb compares: digest (5), mode (M), user (U),
/// group (G), link target (L), or missing. Size-only, mtime-only and "could not test" columns are
/// left out (pkgdb does not compare mtimes; a changed size comes with a changed digest).
pub fn rpm_va_changed(root: &Path) -> std::collections::BTreeSet<String> {
    let o = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-Va"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.stderr.is_empty(),
        "rpm -Va: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with("missing") || l[..9].contains(['5', 'M', 'U', 'G', 'L']))
        .map(|l| l.split_whitespace().last().unwrap().to_owned())
        .collect()
}
