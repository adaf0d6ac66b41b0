//! The build's pinned inputs: every Debian package the media are made from (kernel, shim, GRUB, the
//! systemd EFI stub, the packages of `mkfs.ext4`/`mkfs.exfat` and of their shared libraries), by name,
//! version, architecture and sha256 of the `.deb`, in the committed lock file `xtask/inputs.lock`.
//!
//! `cargo xtask build` takes exactly these files: each `.deb` comes from the download cache
//! (`target/cache/debs/`) or `apt-get download NAME:ARCH=VERSION`, and its sha256 must equal the pin,
//! else the build stops and says why. Nothing comes from what the build host has installed, so two
//! machines building one commit take the same inputs. `cargo xtask update-inputs` is the only way the
//! lock changes: it asks apt for the current versions, downloads them, resolves the tools' library
//! closure against the downloaded packages, rewrites the lock and prints what changed.
//!
//! The static `rescue` binary is made on the build host, from its C toolchain and C library (gcc's
//! driver and crt objects, `libc.a`, the kernel headers the C parts of crates include, the assembler)
//! and `grub-mkimage` links GRUB's BIOS image: those installed packages are pinned too, with role
//! `toolchain` (version, and the sha256 of the `.deb` as apt's signed index gives it). The build
//! checks them with `dpkg-query` ([`check_toolchain`]), installs the pinned versions when it runs as
//! root and the archive has them, and otherwise stops and says what to install or to run. The Rust
//! toolchain itself is pinned by `rust-toolchain.toml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util;

/// The lock file, relative to the project root.
pub const LOCK_FILE: &str = "xtask/inputs.lock";

/// Packages pinned under fixed roles (role, package). The kernel's package name changes with its ABI,
/// so `update-inputs` finds it through the `linux-image-amd64` metapackage.
const FIXED: &[(&str, &str)] = &[
    ("shim", "shim-signed"),
    ("mok-manager", "shim-helpers-amd64-signed"),
    ("grub-efi", "grub-efi-amd64-signed"),
    ("grub-pc", "grub-pc-bin"),
    ("stub", "systemd-boot-efi"),
    ("tool", "e2fsprogs"),
    ("tool", "exfatprogs"),
];

/// Installed host packages the build runs or reads (role `toolchain`), found by tracing a clean
/// release build (`strace -f -e trace=execve,openat` on `cargo xtask build`, each file the C compiler,
/// assembler, archiver and linker driver opened mapped with `dpkg -S`): gcc's driver, `collect2` and
/// `cc1`, the crt objects and `libgcc.a`, glibc's `libc.a` and headers, the kernel header they include
/// (`linux/limits.h`), `as`/`ar` with libbfd, the libraries these programs load, and `grub-mkimage`
/// (it links GRUB's BIOS image) with its LZMA library. rustc links with its own `rust-lld`, which
/// `rust-toolchain.toml` pins. Not pinned: locale files, and LTO plugins `ar` loads when they happen
/// to be installed (`LLVMgold` of llvm-*-linker-tools): they do not touch non-LTO objects.
pub const TOOLCHAIN: &[&str] = &[
    "binutils",
    "binutils-x86-64-linux-gnu",
    "cpp-12",
    "gcc",
    "gcc-12",
    "grub-common",
    "libbinutils",
    "libc6",
    "libc6-dev",
    "libgcc-12-dev",
    "libgcc-s1",
    "libgmp10",
    "libisl23",
    "liblzma5",
    "libmpc3",
    "libmpfr6",
    "libzstd1",
    "linux-libc-dev",
    "zlib1g",
];

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    /// What the build uses it for: `kernel`, `shim`, `mok-manager`, `grub-efi`, `grub-pc`, `stub`,
    /// `tool` (a program copied into the initramfs), `library` (shared libraries of the tools).
    pub role: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
}

impl Pin {
    /// The file name `apt-get download` gives the package (`:` of an epoch as `%3a`).
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    /// The name dpkg and apt know it by: `NAME:ARCH`, or `NAME` for an `all` package.
    fn query_name(&self) -> String {
        if self.arch == "all" {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.arch)
        }
    }

    fn describe(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.arch)
    }
}

/// The parsed lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub pins: Vec<Pin>,
}

impl Lock {
    /// Parses the lock: `#` comments, blank lines, and one `role name version arch sha256` per line.
    pub fn parse(text: &str) -> anyhow::Result<Lock> {
        let mut pins = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let [role, name, version, arch, sha256] = f[..] else {
                bail!(
                    "{LOCK_FILE} line {}: expected `role package version architecture sha256`, found {} field(s)",
                    n + 1,
                    f.len()
                );
            };
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{LOCK_FILE} line {}: {sha256:?} is not a sha256 (64 hex digits)",
                    n + 1
                );
            }
            pins.push(Pin {
                role: role.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
                sha256: sha256.to_ascii_lowercase(),
            });
        }
        let lock = Lock { pins };
        for role in [
            "kernel",
            "shim",
            "mok-manager",
            "grub-efi",
            "grub-pc",
            "stub",
        ] {
            let n = lock.pins.iter().filter(|p| p.role == role).count();
            if n != 1 {
                bail!("{LOCK_FILE} pins {n} package(s) with role {role}; it needs exactly one");
            }
        }
        Ok(lock)
    }

    /// The lock file's text, columns aligned.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Build inputs of `cargo xtask build`: every Debian package the media are made from.\n\
             # Checked at build time (sha256 of the .deb). Change it only with `cargo xtask update-inputs`.\n\
             # Role toolchain: installed build-host packages, checked with dpkg-query; sha256 from apt's index.\n\
             # role, package, version, architecture, sha256 of the .deb\n",
        );
        let w = |f: fn(&Pin) -> &str| self.pins.iter().map(|p| f(p).len()).max().unwrap_or(0);
        let (wr, wn, wv, wa) = (
            w(|p| &p.role),
            w(|p| &p.name),
            w(|p| &p.version),
            w(|p| &p.arch),
        );
        for p in &self.pins {
            let _ = writeln!(
                out,
                "{:wr$}  {:wn$}  {:wv$}  {:wa$}  {}",
                p.role, p.name, p.version, p.arch, p.sha256
            );
        }
        out
    }

    /// Reads the committed lock of this checkout.
    pub fn load() -> anyhow::Result<Lock> {
        let path = util::project_root().join(LOCK_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (create it with `cargo xtask update-inputs`)",
                path.display()
            )
        })?;
        Lock::parse(&text)
    }

    /// The one package pinned under `role`.
    pub fn role(&self, role: &str) -> anyhow::Result<&Pin> {
        self.pins
            .iter()
            .find(|p| p.role == role)
            .with_context(|| format!("{LOCK_FILE} pins no package with role {role}"))
    }

    /// Every package pinned under `role`, in lock order.
    pub fn all(&self, role: &str) -> Vec<&Pin> {
        self.pins.iter().filter(|p| p.role == role).collect()
    }
}

/// Roles that pin several packages (a new name there is an addition, not a rename).
fn many(role: &str) -> bool {
    matches!(role, "tool" | "library" | "toolchain")
}

/// What changed between two locks, one line per package, for `update-inputs` to print.
pub fn changes(old: &Lock, new: &Lock) -> Vec<String> {
    let key = |p: &Pin| (p.role.clone(), p.name.clone());
    let old_by: BTreeMap<_, &Pin> = old.pins.iter().map(|p| (key(p), p)).collect();
    let new_by: BTreeMap<_, &Pin> = new.pins.iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    for p in &new.pins {
        match old_by.get(&key(p)) {
            None => {
                // A kernel ABI bump renames the package: show it as one change of the role.
                let replaced = old.pins.iter().find(|o| o.role == p.role && !many(&p.role));
                match replaced.filter(|o| !new_by.contains_key(&key(o))) {
                    Some(o) => {
                        out.push(format!("{}: {} -> {}", p.role, o.describe(), p.describe()))
                    }
                    None => out.push(format!("{}: added {}", p.role, p.describe())),
                }
            }
            Some(o) if *o != p => out.push(format!(
                "{}: {} {} -> {}{}",
                p.role,
                p.name,
                o.version,
                p.version,
                if o.version == p.version {
                    " (same version, different file: sha256 changed)"
                } else {
                    ""
                }
            )),
            Some(_) => {}
        }
    }
    for o in &old.pins {
        let renamed = !many(&o.role)
            && new
                .pins
                .iter()
                .any(|p| p.role == o.role && !old_by.contains_key(&key(p)));
        if !new_by.contains_key(&key(o)) && !renamed {
            out.push(format!("{}: removed {}", o.role, o.describe()));
        }
    }
    out
}

/// The download cache of pinned packages.
pub fn deb_cache() -> PathBuf {
    util::project_root().join("target/cache/debs")
}

/// Directories earlier builds downloaded packages into; a file there is used when its sha256 matches.
fn older_caches() -> Vec<PathBuf> {
    let cache = util::project_root().join("target/cache");
    vec![cache.join("kernel/debs"), cache.join("bootloader/debs")]
}

/// The pinned `.deb`: from the cache, else downloaded; its sha256 checked against the pin either way.
pub fn fetch(pin: &Pin) -> anyhow::Result<PathBuf> {
    let cache = deb_cache();
    let file = pin.file_name();
    let cached = cache.join(&file);
    if cached.is_file() {
        check(pin, &cached)?;
        return Ok(cached);
    }
    for dir in older_caches() {
        let p = dir.join(&file);
        if p.is_file() && util::sha256_file(&p)? == pin.sha256 {
            return Ok(p);
        }
    }
    let downloaded = download(pin, &cache).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n\nThe pinned {} could not be downloaded; it may have left the archive \
             (Debian keeps only current versions; https://snapshot.debian.org/binary/{}/ keeps them all). \
             Either refresh the pins with `cargo xtask update-inputs` and commit {LOCK_FILE}, \
             or put the file {file} (sha256 {}) at {}",
            pin.describe(),
            pin.name,
            pin.sha256,
            cached.display()
        )
    })?;
    check(pin, &downloaded)?;
    fs::rename(&downloaded, &cached)
        .with_context(|| format!("renaming {} to {}", downloaded.display(), cached.display()))?;
    if let Some(dir) = downloaded.parent() {
        let _ = fs::remove_dir_all(dir);
    }
    Ok(cached)
}

/// Refuses a `.deb` whose sha256 is not the pinned one.
fn check(pin: &Pin, deb: &Path) -> anyhow::Result<()> {
    let actual = util::sha256_file(deb)?;
    if actual != pin.sha256 {
        bail!(
            "{} does not match {LOCK_FILE}: its sha256 is {actual}, the lock pins {} {} with sha256 {}. \
             A rebuilt or tampered package is never used: delete the file to download the pinned one again, \
             or, if this version is meant, run `cargo xtask update-inputs` and review the change",
            deb.display(),
            pin.name,
            pin.version,
            pin.sha256
        );
    }
    Ok(())
}

/// `apt-get download NAME:ARCH=VERSION` into a fresh directory under `cache`; returns the file.
fn download(pin: &Pin, cache: &Path) -> anyhow::Result<PathBuf> {
    if !util::have("apt-get") {
        bail!("no apt-get on this machine to download {}", pin.describe());
    }
    crate::deps::apt_update()?;
    let dir = cache.join(format!(".download-{}-{}", pin.name, std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("xtask: downloading {}", pin.describe());
    if let Err(e) = util::output(
        Command::new("apt-get")
            .args(["download", "-q"])
            .arg(format!("{}:{}={}", pin.name, pin.arch, pin.version))
            .current_dir(&dir),
    ) {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let deb = dir.join(pin.file_name());
    if !deb.is_file() {
        bail!(
            "apt-get download left no {} in {}",
            pin.file_name(),
            dir.display()
        );
    }
    Ok(deb)
}

/// Unpacks `deb` with `dpkg-deb -x` into `dir` (once; built beside it and renamed into place).
pub fn unpack(deb: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    util::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    if let Err(e) = fs::rename(&tmp, dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another build unpacked the same package first.
        if !dir.is_dir() {
            return Err(e).with_context(|| format!("renaming into {}", dir.display()));
        }
    }
    Ok(())
}

/// The unpacked tree of a pinned package, in the cache keyed by its sha256.
pub fn unpacked(pin: &Pin) -> anyhow::Result<PathBuf> {
    let deb = fetch(pin)?;
    let dir = util::project_root()
        .join("target/cache/unpacked")
        .join(format!("{}_{}", pin.name, &pin.sha256[..16]));
    unpack(&deb, &dir)?;
    Ok(dir)
}

/// What dpkg says is installed: name -> (version, architecture), for the packages asked about.
fn installed(pins: &[&Pin]) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Package} ${Version} ${Architecture} ${db:Status-Abbrev}\n",
        ])
        .args(pins.iter().map(|p| p.query_name()))
        .output()
        .context("starting dpkg-query (is this a Debian machine?)")?;
    // dpkg-query exits 1 when some package is unknown; the others are still listed.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [name, version, arch, status, ..] if status.starts_with("ii") => {
                    Some((name.to_owned(), (version.to_owned(), arch.to_owned())))
                }
                _ => None,
            }
        })
        .collect())
}

/// The toolchain pins the installed packages do not satisfy, in words.
pub fn toolchain_mismatches(
    pins: &[&Pin],
    installed: &BTreeMap<String, (String, String)>,
) -> Vec<String> {
    pins.iter()
        .filter_map(|p| match installed.get(&p.name) {
            None => Some(format!(
                "{} is not installed; the lock pins {}",
                p.name, p.version
            )),
            Some((v, a)) if *v != p.version || *a != p.arch => Some(format!(
                "{} {v} ({a}) is installed; the lock pins {} ({})",
                p.name, p.version, p.arch
            )),
            Some(_) => None,
        })
        .collect()
}

/// The SHA256 of each `NAME:ARCH=VERSION`'s `.deb` in apt's signed index, with one `apt-cache show`
/// (one per pin when apt does not know some version): name -> sha256, for the pins whose version apt
/// knows (a version that left the archive, or lists not updated, is absent).
fn index_sha256s(pins: &[&Pin]) -> BTreeMap<String, String> {
    let show = |pins: &[&Pin]| -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["show", "-q"])
            .args(
                pins.iter()
                    .map(|p| format!("{}={}", p.query_name(), p.version)),
            )
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let text = match show(pins) {
        Some(t) => t,
        None => pins
            .iter()
            .filter_map(|p| show(&[p]))
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    let mut found = BTreeMap::new();
    for para in text.split("\n\n") {
        let field = |f: &str| para.lines().find_map(|l| l.strip_prefix(f)).map(str::trim);
        if let (Some(name), Some(version), Some(sha)) =
            (field("Package:"), field("Version:"), field("SHA256:"))
            && pins.iter().any(|p| p.name == name && p.version == version)
        {
            found
                .entry(name.to_owned())
                .or_insert_with(|| sha.to_ascii_lowercase());
        }
    }
    found
}

/// Checks the installed toolchain packages against the lock (role `toolchain`). Installs the pinned
/// versions when running as root and apt has them; otherwise stops with what to do. A pinned version
/// apt knows must have the pinned sha256 in apt's signed index. Returns the pins, as installed.
pub fn check_toolchain(lock: &Lock) -> anyhow::Result<Vec<Pin>> {
    let pins = lock.all("toolchain");
    if pins.is_empty() {
        bail!("{LOCK_FILE} pins no toolchain packages; run `cargo xtask update-inputs`");
    }
    let mut wrong = toolchain_mismatches(&pins, &installed(&pins)?);
    if !wrong.is_empty() && crate::deps::is_root() && util::have("apt-get") {
        crate::deps::apt_update()?;
        let wanted: Vec<&Pin> = pins
            .iter()
            .copied()
            .filter(|p| wrong.iter().any(|w| w.starts_with(&format!("{} ", p.name))))
            .collect();
        if index_sha256s(&wanted).len() == wanted.len() {
            let specs: Vec<String> = wanted
                .iter()
                .map(|p| format!("{}={}", p.query_name(), p.version))
                .collect();
            eprintln!(
                "xtask: installing the pinned toolchain: {}",
                specs.join(" ")
            );
            util::run(
                Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-q",
                        "--no-install-recommends",
                        "--allow-downgrades",
                    ])
                    .args(&specs)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            wrong = toolchain_mismatches(&pins, &installed(&pins)?);
        }
    }
    if !wrong.is_empty() {
        let specs: Vec<String> = pins
            .iter()
            .filter(|p| wrong.iter().any(|w| w.starts_with(&format!("{} ", p.name))))
            .map(|p| format!("{}={}", p.query_name(), p.version))
            .collect();
        bail!(
            "the build host's toolchain is not the one {LOCK_FILE} pins, so this machine would make a \
             different rescue binary:\n  {}\nInstall the pinned versions as root: apt-get install \
             --no-install-recommends --allow-downgrades {} (a version that left the archive is on \
             https://snapshot.debian.org/); or, to move the pins to what apt installs today, run \
             `cargo xtask update-inputs`, install what it pins, and commit {LOCK_FILE}",
            wrong.join("\n  "),
            specs.join(" ")
        );
    }
    let index = index_sha256s(&pins);
    for p in &pins {
        if let Some(sha) = index.get(&p.name)
            && *sha != p.sha256
        {
            bail!(
                "apt's signed index gives {} {} ({}) the sha256 {sha}, {LOCK_FILE} pins {}: the archive \
                 holds a different file under the pinned version. Review it, then run `cargo xtask \
                 update-inputs`",
                p.name,
                p.version,
                p.arch,
                p.sha256
            );
        }
    }
    Ok(pins.into_iter().cloned().collect())
}

/// The candidate apt would install: (version, architecture, sha256 of the .deb in the signed index).
fn candidate(name: &str) -> anyhow::Result<(String, String, String)> {
    let text = util::output(Command::new("apt-cache").args(["show", "--no-all-versions", name]))
        .with_context(|| format!("asking apt for the current version of {name}"))?;
    let field = |f: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(f))
            .map(|v| v.trim().to_owned())
    };
    match (field("Version:"), field("Architecture:"), field("SHA256:")) {
        (Some(v), Some(a), Some(h)) => Ok((v, a, h.to_ascii_lowercase())),
        _ => bail!("apt-cache show {name} names no Version/Architecture/SHA256"),
    }
}

/// Downloads the current version of `name` and pins it under `role`.
fn pin_current(role: &str, name: &str) -> anyhow::Result<(Pin, PathBuf)> {
    let (version, arch, _) = candidate(name)?;
    let mut pin = Pin {
        role: role.to_owned(),
        name: name.to_owned(),
        version,
        arch,
        sha256: String::new(),
    };
    let cached = deb_cache().join(pin.file_name());
    let older = older_caches()
        .into_iter()
        .map(|d| d.join(pin.file_name()))
        .find(|p| p.is_file());
    let deb = if cached.is_file() {
        cached
    } else if let Some(older) = older {
        older
    } else {
        let d = download(&pin, &deb_cache())?;
        fs::rename(&d, &cached)?;
        if let Some(dir) = d.parent() {
            let _ = fs::remove_dir_all(dir);
        }
        cached
    };
    pin.sha256 = util::sha256_file(&deb)?;
    Ok((pin, deb))
}

/// The `Pre-Depends:` and `Depends:` of a package, as apt sees them.
fn depends(name: &str) -> anyhow::Result<Vec<String>> {
    let text = util::output(Command::new("apt-cache").args(["depends", name]))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("PreDepends: ")
                .or_else(|| l.strip_prefix("Depends: "))
        })
        .map(|d| {
            d.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
        .map(|d| d.split(':').next().unwrap_or_default().to_owned())
        .collect())
}

/// `cargo xtask update-inputs`: pins the current versions and prints what changed.
pub fn update(args: &[String]) -> anyhow::Result<()> {
    if let Some(a) = args.first() {
        bail!("unknown update-inputs option {a:?}");
    }
    crate::deps::ensure_packages(&[("dpkg-deb", "dpkg"), ("apt-get", "apt")])?;
    crate::deps::apt_update()?;
    fs::create_dir_all(deb_cache())?;
    let root = util::project_root();
    let old = fs::read_to_string(root.join(LOCK_FILE))
        .ok()
        .and_then(|t| Lock::parse(&t).ok())
        .unwrap_or_default();
    let kernel = depends("linux-image-amd64")?
        .into_iter()
        .find(|d| d.starts_with("linux-image-"))
        .context("apt-cache depends linux-image-amd64 names no linux-image-* package")?;
    let mut pins = vec![pin_current("kernel", &kernel)?.0];
    for (role, name) in FIXED {
        pins.push(pin_current(role, name)?.0);
    }
    // The tools' libraries: try the library packages the pinned packages depend on until every
    // DT_NEEDED name resolves inside the pinned set; pin exactly the packages that provided one.
    let mut tried: Vec<String> = pins.iter().map(|p| p.name.clone()).collect();
    let mut libraries: Vec<Pin> = Vec::new();
    loop {
        let set: Vec<Pin> = pins
            .iter()
            .filter(|p| p.role == "tool")
            .chain(&libraries)
            .cloned()
            .collect();
        let missing = crate::tools::missing_libraries(&set)?;
        if missing.is_empty() {
            break;
        }
        let mut candidates = Vec::new();
        for p in &set {
            for d in depends(&p.name)? {
                if !tried.contains(&d) && (d.starts_with("lib") || d == "libc6") {
                    tried.push(d.clone());
                    candidates.push(d);
                }
            }
        }
        if candidates.is_empty() {
            bail!(
                "no package among the dependencies of {} provides {}",
                set.iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.join(", ")
            );
        }
        for c in candidates {
            let (pin, _) = pin_current("library", &c)?;
            let dir = unpacked(&pin)?;
            if missing
                .iter()
                .any(|lib| crate::tools::find_library(&dir, lib).is_some())
            {
                libraries.push(pin);
            }
        }
    }
    libraries.sort_by(|a, b| a.name.cmp(&b.name));
    pins.extend(libraries);
    // The build host's toolchain: what apt installs today, pinned by the signed index's sha256
    // (installed packages, so nothing is downloaded).
    for name in TOOLCHAIN {
        let (version, arch, sha256) = candidate(name)?;
        pins.push(Pin {
            role: "toolchain".into(),
            name: (*name).into(),
            version,
            arch,
            sha256,
        });
    }
    let new = Lock { pins };
    util::write_atomic(&root.join(LOCK_FILE), new.render().as_bytes())?;
    let changed = changes(&old, &new);
    if changed.is_empty() {
        println!("{LOCK_FILE}: unchanged ({} packages)", new.pins.len());
    } else {
        println!(
            "{LOCK_FILE}: {} change(s) (review and commit):",
            changed.len()
        );
        for c in changed {
            println!("  {c}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(role: &str, name: &str, version: &str) -> Pin {
        Pin {
            role: role.into(),
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "ab".repeat(32),
        }
    }

    fn lock(extra: &[Pin]) -> Lock {
        let mut pins = vec![
            pin("kernel", "linux-image-6.1.0-57-amd64", "6.1.192-3"),
            pin("shim", "shim-signed", "1.51"),
            pin("mok-manager", "shim-helpers-amd64-signed", "1+16.1"),
            pin("grub-efi", "grub-efi-amd64-signed", "1+2.06+13"),
            pin("grub-pc", "grub-pc-bin", "2.06-13"),
            pin("stub", "systemd-boot-efi", "252.39-1"),
        ];
        pins.extend_from_slice(extra);
        Lock { pins }
    }

    #[test]
    fn the_lock_reads_back_what_it_writes_and_refuses_bad_lines() {
        let l = lock(&[pin("library", "libc6", "1:2.36-9")]);
        let text = l.render();
        assert!(
            text.contains("linux-image-6.1.0-57-amd64  6.1.192-3"),
            "{text}"
        );
        assert_eq!(Lock::parse(&text).unwrap(), l);
        assert_eq!(l.pins[6].file_name(), "libc6_1%3a2.36-9_amd64.deb");

        let short = text.replace(&format!(" {}", "ab".repeat(32)), "");
        let e = Lock::parse(&short).unwrap_err().to_string();
        assert!(
            e.contains("expected `role package version architecture sha256`"),
            "{e}"
        );
        let bad = text.replacen(&"ab".repeat(32), &"zz".repeat(32), 1);
        let e = Lock::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("is not a sha256"), "{e}");
        let no_stub: String = text
            .lines()
            .filter(|l| !l.starts_with("stub"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = Lock::parse(&no_stub).unwrap_err().to_string();
        assert!(e.contains("0 package(s) with role stub"), "{e}");
    }

    #[test]
    fn the_committed_lock_pins_every_input() {
        let l = Lock::load().unwrap();
        let k = l.role("kernel").unwrap();
        assert!(k.name.starts_with("linux-image-"), "{k:?}");
        let tools: Vec<&str> = l.all("tool").iter().map(|p| p.name.as_str()).collect();
        assert_eq!(tools, ["e2fsprogs", "exfatprogs"]);
        let libs: Vec<&str> = l.all("library").iter().map(|p| p.name.as_str()).collect();
        assert!(libs.contains(&"libc6"), "{libs:?}");
        assert_eq!(l.role("stub").unwrap().name, "systemd-boot-efi");
        let toolchain: Vec<&str> = l.all("toolchain").iter().map(|p| p.name.as_str()).collect();
        for name in [
            "gcc-12",
            "cpp-12",
            "libc6-dev",
            "libgcc-12-dev",
            "linux-libc-dev",
            "binutils",
        ] {
            assert!(
                toolchain.contains(&name),
                "{name} not pinned: {toolchain:?}"
            );
        }
    }

    #[test]
    fn a_toolchain_that_is_not_the_pinned_one_is_named_with_what_is_installed() {
        let gcc = pin("toolchain", "gcc-12", "12.2.0-14+deb12u1");
        let headers = pin("toolchain", "linux-libc-dev", "6.1.192-3");
        let libc = pin("toolchain", "libc6-dev", "2.36-9+deb12u14");
        let mut installed = BTreeMap::new();
        installed.insert(
            "gcc-12".into(),
            ("12.2.0-14+deb12u1".into(), "amd64".into()),
        );
        installed.insert(
            "linux-libc-dev".into(),
            ("6.1.187-1".into(), "amd64".into()),
        );
        assert_eq!(
            toolchain_mismatches(&[&gcc, &headers, &libc], &installed),
            [
                "linux-libc-dev 6.1.187-1 (amd64) is installed; the lock pins 6.1.192-3 (amd64)",
                "libc6-dev is not installed; the lock pins 2.36-9+deb12u14",
            ]
        );
        installed.insert(
            "linux-libc-dev".into(),
            ("6.1.192-3".into(), "amd64".into()),
        );
        installed.insert(
            "libc6-dev".into(),
            ("2.36-9+deb12u14".into(), "amd64".into()),
        );
        assert!(toolchain_mismatches(&[&gcc, &headers, &libc], &installed).is_empty());
    }

    /// What a fresh Debian 12 machine installs today is what the lock pins: every toolchain pin is
    /// apt's candidate, with the sha256 apt's signed index gives its `.deb`.
    #[test]
    fn every_toolchain_pin_is_what_apt_installs_today() {
        if !util::have("apt-cache") {
            panic!("this test needs apt-cache (a Debian 12 build host)");
        }
        let l = Lock::load().unwrap();
        let names: Vec<&str> = l.all("toolchain").iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, TOOLCHAIN);
        for p in l.all("toolchain") {
            let (version, arch, sha256) = candidate(&p.name).unwrap();
            assert_eq!(
                (&version, &arch, &sha256),
                (&p.version, &p.arch, &p.sha256),
                "{}: apt installs {version} today; run `cargo xtask update-inputs`",
                p.name
            );
        }
        let pins = l.all("toolchain");
        let index = index_sha256s(&pins);
        for p in &pins {
            assert_eq!(index.get(&p.name), Some(&p.sha256), "{}", p.name);
        }
    }

    #[test]
    fn changes_name_upgrades_kernel_renames_additions_and_removals() {
        let old = lock(&[
            pin("tool", "e2fsprogs", "1.47.0-2"),
            pin("library", "libuuid1", "2.38"),
        ]);
        let mut new = lock(&[
            pin("tool", "e2fsprogs", "1.47.0-2+b2"),
            pin("library", "libc6", "2.36"),
        ]);
        new.pins[0] = pin("kernel", "linux-image-6.1.0-58-amd64", "6.1.200-1");
        let c = changes(&old, &new);
        assert_eq!(
            c,
            [
                "kernel: linux-image-6.1.0-57-amd64 6.1.192-3 (amd64) -> linux-image-6.1.0-58-amd64 6.1.200-1 (amd64)",
                "tool: e2fsprogs 1.47.0-2 -> 1.47.0-2+b2",
                "library: added libc6 2.36 (amd64)",
                "library: removed libuuid1 2.38 (amd64)",
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn a_deb_that_is_not_the_pinned_one_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("x.deb");
        fs::write(&deb, b"not the pinned bytes").unwrap();
        let p = pin("tool", "e2fsprogs", "1.47.0-2");
        let e = check(&p, &deb).unwrap_err().to_string();
        assert!(e.contains("does not match xtask/inputs.lock"), "{e}");
        assert!(e.contains("cargo xtask update-inputs"), "{e}");
        let ok = Pin {
            sha256: util::sha256_hex(b"not the pinned bytes"),
            ..p
        };
        check(&ok, &deb).unwrap();
    }

    #[test]
    fn a_pinned_version_gone_from_the_archive_stops_with_what_to_do() {
        if !util::have("apt-get") {
            panic!("this test needs apt-get (installed by `cargo xtask test`)");
        }
        let p = Pin {
            version: "0.0-not-in-any-archive".into(),
            ..pin("tool", "e2fsprogs", "")
        };
        let e = format!("{:#}", fetch(&p).unwrap_err());
        assert!(e.contains("could not be downloaded"), "{e}");
        assert!(e.contains("cargo xtask update-inputs"), "{e}");
        assert!(
            e.contains("e2fsprogs_0.0-not-in-any-archive_amd64.deb")
                && e.contains("target/cache/debs"),
            "{e}"
        );
        assert!(!deb_cache().join(p.file_name()).exists());
    }
}
