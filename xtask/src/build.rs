//! `cargo xtask build`: the static `rescue` binary, the initramfs (profile modules, their dependency and
//! firmware closure, a small module index), the UKI, the USB disk image and the hybrid ISO, plus a build
//! manifest that hashes every input, every output and every file on the boot media. Identical inputs
//! give byte-identical outputs.
//!
//! Boot media (issue 6): shim → signed GRUB → Debian's signed kernel + our initramfs is the default
//! path on UEFI (Secure Boot or not), GRUB i386-pc on legacy BIOS, the unsigned UKI a fallback entry.
//! The initramfs is two concatenated archives so that it can carry the hashes of the media files
//! including its own main part: `INITRD.IMG` = small uncompressed cpio holding
//! `/etc/rescue/boot-files.json` ‖ the zstd-compressed main cpio. `boot-files.json` records the main
//! part's sha256 and size; the rescue system checks that part by hash and the small head by comparing
//! it with its own copy (see `rescue::selfcheck`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use initramfs::cpio::Archive;
use initramfs::modules::ModuleIndex;
use serde::Serialize;
use serde_json::json;

use crate::kernel::{self, Kernel};
use crate::{bootloader, deps, inputs, util};

/// The kernel command line on every medium.
/// `noresume` and `raid=noautodetect` make sure the kernel itself never resumes a hibernation image or
/// assembles RAID from the evidence disks.
pub const DEFAULT_CMDLINE: &str =
    "console=tty0 console=ttyS0,115200n8 quiet noresume raid=noautodetect";
/// Target triple of the static rescue binary.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The systemd EFI stub inside the pinned `systemd-boot-efi` package.
const STUB_IN_PACKAGE: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const ZSTD_LEVEL: i32 = 12;
/// The static `rescue` binary on both media, for `rescue live` on a running host: the FAT path, and
/// the ISO 9660 path as readers match it (recorded `RESCUE.;1`; Linux `isofs` shows it lower-cased,
/// `rescue/rescue`). See docs/live-media.md.
pub const RESCUE_ON_MEDIA: &str = "RESCUE/RESCUE";

/// Parsed `cargo xtask build` options.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub kernel: Option<PathBuf>,
    pub modules: Option<PathBuf>,
    pub profile: String,
    pub out: PathBuf,
    pub cmdline: String,
    /// `--stub FILE`: an override of the pinned `systemd-boot-efi` stub, recorded as such.
    pub stub: Option<PathBuf>,
    /// ESP size in bytes; `None` sizes it to the content.
    pub esp_size: Option<u64>,
    /// Source date and commit, fixed once so that builds compared with each other see the same values.
    pub epoch: u32,
    pub commit: String,
    /// OpenPGP public keys to embed in the initramfs (`--trust-key FILE`, repeatable).
    pub trust_keys: Vec<PathBuf>,
    /// Optional key and certificate to sign the UKI with `sbsign` (users' own Secure Boot keys).
    pub sign: Option<(PathBuf, PathBuf)>,
}

impl BuildOptions {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let root = util::project_root();
        let mut o = BuildOptions {
            profile: "generic".to_owned(),
            out: root.join("target/rescue"),
            cmdline: DEFAULT_CMDLINE.to_owned(),
            epoch: source_date_epoch(),
            commit: git_commit(),
            ..Default::default()
        };
        let mut it = args.iter();
        let (mut sign_key, mut sign_cert) = (None, None);
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--kernel" => o.kernel = Some(PathBuf::from(value("--kernel")?)),
                "--modules" => o.modules = Some(PathBuf::from(value("--modules")?)),
                "--profile" => o.profile = value("--profile")?,
                "--out" => o.out = PathBuf::from(value("--out")?),
                "--cmdline" => o.cmdline = value("--cmdline")?,
                "--stub" => o.stub = Some(PathBuf::from(value("--stub")?)),
                "--trust-key" => o.trust_keys.push(PathBuf::from(value("--trust-key")?)),
                "--esp-size" => {
                    let mib: u64 = value("--esp-size")?
                        .parse()
                        .context("--esp-size takes a number of MiB")?;
                    o.esp_size = Some(mib << 20);
                }
                "--sign-key" => sign_key = Some(PathBuf::from(value("--sign-key")?)),
                "--sign-cert" => sign_cert = Some(PathBuf::from(value("--sign-cert")?)),
                other => bail!("unknown build option {other:?} (see `cargo xtask help`)"),
            }
        }
        o.sign = match (sign_key, sign_cert) {
            (Some(k), Some(c)) => Some((k, c)),
            (None, None) => None,
            _ => bail!("--sign-key and --sign-cert go together"),
        };
        Ok(o)
    }
}

/// Paths of what a build produced.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
    pub efi: PathBuf,
    pub usb: PathBuf,
    pub iso: PathBuf,
    pub initramfs: PathBuf,
    pub vmlinuz: PathBuf,
    /// The modules tree the initramfs was built from.
    pub modules_dir: Option<PathBuf>,
}

impl Artifacts {
    pub fn in_dir(dir: &Path) -> Self {
        Artifacts {
            dir: dir.to_owned(),
            efi: dir.join("rescue.efi"),
            usb: dir.join("rescue-usb.img"),
            iso: dir.join("rescue.iso"),
            initramfs: dir.join("initramfs.cpio.zst"),
            vmlinuz: dir.join("vmlinuz"),
            modules_dir: None,
        }
    }
}

pub fn run(args: &[String]) -> anyhow::Result<Artifacts> {
    build(&BuildOptions::parse(args)?)
}

/// SOURCE_DATE_EPOCH, else the last commit's time, else 0.
fn source_date_epoch() -> u32 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    util::output(
        Command::new("git")
            .arg("-C")
            .arg(util::project_root())
            .args(["log", "-1", "--format=%ct"]),
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

/// `RESCUE_GIT_COMMIT` (a copy of the checkout has no `.git`), else `git rev-parse`, else "unknown".
pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("RESCUE_GIT_COMMIT")
        && !c.is_empty()
    {
        return c;
    }
    util::output(
        Command::new("git")
            .arg("-C")
            .arg(util::project_root())
            .args(["rev-parse", "--short=12", "HEAD"]),
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "unknown".to_owned())
}

/// Cargo's home (`CARGO_HOME`, else `~/.cargo`): the crates' sources are under it, and their paths
/// end up in panic messages, so the binary names it `/cargo` whatever the build user's home is.
pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent/.cargo"))
}

/// The Rust toolchain `rust-toolchain.toml` pins (its `channel`).
pub fn toolchain_channel(root: &Path) -> anyhow::Result<String> {
    let path = root.join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|l| l.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .with_context(|| format!("{} has no `channel = \"...\"`", path.display()))
}

/// `rustc -vV` of the compiler cargo uses here, checked against `rust-toolchain.toml`; its lines.
pub fn check_rustc(root: &Path) -> anyhow::Result<Vec<String>> {
    let channel = toolchain_channel(root)?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let text = util::output(Command::new(&rustc).current_dir(root).arg("-vV"))?;
    let release = text
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .unwrap_or_default();
    if release != channel {
        bail!(
            "`{rustc} -vV` says release {release:?}, but rust-toolchain.toml pins {channel}: this \
             machine would compile a different rescue binary. Build through rustup (it reads \
             rust-toolchain.toml): `rustup toolchain install {channel} --component rustfmt,clippy`"
        );
    }
    Ok(text.lines().map(str::to_owned).collect())
}

/// `dir` (followed by `/`) when it occurs in `bytes`.
fn path_in(bytes: &[u8], dir: &Path) -> Option<String> {
    let needle = format!("{}/", dir.display());
    (needle.len() > 2 && bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .then_some(needle)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (the second build of `cargo xtask test`
/// shares the first one's), else `target` in the checkout.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Builds the static rescue binary and checks that it has no program interpreter, and that it names
/// neither the checkout, nor the target directory, nor cargo's home (crate sources) of this machine.
///
/// Cargo hands rustc the workspace's sources by paths relative to the checkout, so the checkout's own
/// path never reaches rustc; only generated code under the target directory (build scripts' `OUT_DIR`)
/// and crate sources under cargo's home are named by absolute path, and both are remapped. The flags
/// are therefore the same from any checkout, and a second build from a copy elsewhere that shares the
/// target directory reuses the compiled dependencies and recompiles only the workspace's crates.
pub fn build_rescue_binary(commit: &str) -> anyhow::Result<PathBuf> {
    let root = util::project_root();
    let target = target_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    util::run(
        Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "rescue",
                "--bin",
                "rescue",
                "--target",
                TARGET,
            ])
            .env(
                "RUSTFLAGS",
                format!(
                    "-C target-feature=+crt-static --remap-path-prefix={}=/cargo \
                     --remap-path-prefix={}=/target",
                    cargo_home().display(),
                    target.display()
                ),
            )
            // Not SOURCE_DATE_EPOCH: nothing in the binary reads the clock at build time, and C build
            // scripts (ring, zstd-sys) rerun when it changes, which recompiled them after every commit.
            .env_remove("SOURCE_DATE_EPOCH")
            .env("RESCUE_GIT_COMMIT", commit),
    )?;
    let bin = target.join(TARGET).join("release/rescue");
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    for (what, dir) in [
        ("checkout", root.clone()),
        ("target directory", target.clone()),
        ("cargo home", cargo_home()),
    ] {
        if let Some(p) = path_in(&bytes, &dir) {
            bail!(
                "{} names the {what} {p} of this build machine: another machine would build a \
                 different binary (is its --remap-path-prefix missing?)",
                bin.display()
            );
        }
    }
    let elf =
        initramfs::elf::inspect(&bytes).with_context(|| format!("inspecting {}", bin.display()))?;
    if let Some(interp) = elf.interpreter {
        bail!(
            "{} is dynamically linked (PT_INTERP {interp}); PID 1 must be static",
            bin.display()
        );
    }
    Ok(bin)
}

#[derive(Debug, Serialize)]
struct FileRecord {
    name: String,
    sha256: String,
    size: u64,
}

/// Loads the kernel's module index, generating it from the `.ko` files when the tree has no depmod output
/// (Debian's packages ship none: `depmod` runs at install time).
fn module_index(kernel: &Kernel) -> anyhow::Result<ModuleIndex> {
    if kernel.modules_dir.join("modules.dep").is_file()
        && kernel.modules_dir.join("modules.alias").is_file()
    {
        ModuleIndex::load(&kernel.modules_dir).with_context(|| {
            format!(
                "reading the module index in {}",
                kernel.modules_dir.display()
            )
        })
    } else {
        initramfs::modules::generate_index(&kernel.modules_dir)
            .with_context(|| format!("indexing the modules in {}", kernel.modules_dir.display()))
    }
}

struct InitramfsBuild {
    cpio_zst: Vec<u8>,
    modules: Vec<FileRecord>,
    modules_missing: Vec<String>,
    /// Profile entries the kernel has built in (nothing to ship).
    modules_builtin: Vec<String>,
    firmware: Vec<FileRecord>,
    firmware_missing: Vec<String>,
    /// Host programs (mkfs) with their libraries and loader.
    tools: Vec<crate::tools::ToolFile>,
    uncompressed_size: u64,
}

#[allow(clippy::too_many_arguments)]
fn build_initramfs(
    lock: &inputs::Lock,
    kernel: &Kernel,
    index: &ModuleIndex,
    profile: &str,
    rescue_bin: &[u8],
    build_info: &[u8],
    trusted: &[TrustedKey],
    epoch: u32,
) -> anyhow::Result<InitramfsBuild> {
    let profile = initramfs::profile::by_name(profile).with_context(|| {
        format!(
            "unknown profile {profile:?}; known: {}",
            initramfs::profile::names().join(", ")
        )
    })?;
    let closure = index.closure(profile.modules);
    if !closure.missing.is_empty() {
        eprintln!(
            "xtask: warning: kernel {} lacks {} module(s) named in profile {}: {} (continuing)",
            kernel.release,
            closure.missing.len(),
            profile.name,
            closure.missing.join(", ")
        );
    }
    let mut archive = Archive::new();
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "mnt",
        "root",
        "etc/rescue",
        "bin",
        "sbin",
        "usr/bin",
    ] {
        archive.add_dir(dir, 0o755);
    }
    archive.add_char_device("dev/console", 0o600, 5, 1);
    archive.add_char_device("dev/null", 0o666, 1, 3);
    archive.add_file("init", 0o755, rescue_bin.to_vec());
    archive.add_symlink("bin/rescue", "/init");
    archive.add_symlink("sbin/modprobe", "/init");
    archive.add_file("etc/rescue/build.json", 0o644, build_info.to_vec());
    archive.add_file("etc/hostname", 0o644, b"rescue\n".to_vec());
    if !trusted.is_empty() {
        archive.add_dir("etc/rescue/trusted-keys", 0o755);
        for k in trusted {
            archive.add_file(
                &format!("etc/rescue/trusted-keys/{}", k.file),
                0o644,
                k.data.clone(),
            );
        }
    }
    archive.add_file(
        "etc/os-release",
        0o644,
        format!(
            "NAME=rescue\nID=rescue\nPRETTY_NAME=\"rescue {}\"\nVERSION_ID={}\n",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes(),
    );

    let modroot = format!("lib/modules/{}", kernel.release);
    let mut kept = BTreeSet::new();
    let mut modules = Vec::new();
    let mut firmware_names = BTreeSet::new();
    let mut small_index = index.restrict(&closure.modules);
    for name in &closure.modules {
        let Some(rel) = index.module_path(name) else {
            continue;
        };
        let path = kernel.modules_dir.join(rel);
        let raw = fs::read(&path).with_context(|| format!("reading module {}", path.display()))?;
        let (plain_rel, plain) = initramfs::decompress::decompress_by_name(rel, &raw)
            .with_context(|| format!("decompressing {}", path.display()))?;
        let info = initramfs::modinfo::parse(&plain)
            .with_context(|| format!("reading .modinfo of {}", path.display()))?;
        firmware_names.extend(info.firmware);
        modules.push(FileRecord {
            name: plain_rel.clone(),
            sha256: util::sha256_hex(&plain),
            size: plain.len() as u64,
        });
        archive.add_file(&format!("{modroot}/{plain_rel}"), 0o644, plain);
        kept.insert(name.clone());
    }
    // The index inside the initramfs names the decompressed files.
    small_index.strip_compression_suffixes();
    let files = small_index.to_files();
    for (file, text) in [
        ("modules.dep", files.dep),
        ("modules.alias", files.alias),
        ("modules.softdep", files.softdep),
        ("modules.builtin", files.builtin),
    ] {
        archive.add_file(&format!("{modroot}/{file}"), 0o644, text.into_bytes());
    }
    let firmware_names: Vec<String> = firmware_names.into_iter().collect();
    let fw = initramfs::firmware::resolve(&firmware_names, &kernel.firmware_dir);
    let mut firmware = Vec::new();
    for (name, path) in &fw.found {
        let raw = fs::read(path).with_context(|| format!("reading firmware {}", path.display()))?;
        let (plain_name, plain) = initramfs::decompress::decompress_by_name(name, &raw)
            .with_context(|| format!("decompressing {}", path.display()))?;
        firmware.push(FileRecord {
            name: plain_name.clone(),
            sha256: util::sha256_hex(&plain),
            size: plain.len() as u64,
        });
        archive.add_file(&format!("lib/firmware/{plain_name}"), 0o644, plain);
    }
    if !fw.missing.is_empty() {
        eprintln!(
            "xtask: note: {} firmware file(s) named by included modules are not in {} (NICs needing them will lack firmware; see build-manifest.json)",
            fw.missing.len(),
            kernel.firmware_dir.display()
        );
    }
    let tools = crate::tools::add_tools(&mut archive, lock)?;
    let mut cpio = Vec::new();
    archive
        .write(&mut cpio, epoch)
        .context("writing the initramfs cpio")?;
    let uncompressed_size = cpio.len() as u64;
    let cpio_zst = zstd::bulk::compress(&cpio, ZSTD_LEVEL).context("compressing the initramfs")?;
    Ok(InitramfsBuild {
        cpio_zst,
        modules,
        modules_missing: closure.missing,
        modules_builtin: profile
            .modules
            .iter()
            .filter(|m| index.is_builtin(m))
            .map(|m| m.to_string())
            .collect(),
        firmware,
        firmware_missing: fw.missing,
        tools,
        uncompressed_size,
    })
}

fn guid_from(seed: &str, what: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{what}:{seed}").as_bytes());
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    // RFC 4122 version 4 / variant bits so tools print it as a well-formed GUID.
    g[7] = (g[7] & 0x0f) | 0x40;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

pub fn build(o: &BuildOptions) -> anyhow::Result<Artifacts> {
    let started = Instant::now();
    deps::ensure_packages(deps::BUILD)?;
    let root = util::project_root();
    let lock = inputs::Lock::load()?;
    // The compilers and libraries the static binary is made from, before anything is compiled.
    let rustc_vv = check_rustc(&root)?;
    let toolchain = inputs::check_toolchain(&lock)?;
    let kernel = kernel::resolve(
        o.kernel.as_deref(),
        o.modules.as_deref(),
        &lock,
        &root.join("target/cache/kernel"),
    )?;
    let kernel_source = match &kernel.package {
        Some(p) => format!(
            "{}:/{}",
            p.file_name(),
            kernel
                .vmlinuz
                .strip_prefix(
                    root.join("target/cache/kernel/root")
                        .join(p.file_name().trim_end_matches(".deb"))
                )
                .unwrap_or(&kernel.vmlinuz)
                .display()
        ),
        None => format!("--kernel {}", file_name(&kernel.vmlinuz)),
    };
    eprintln!("xtask: kernel {} from {kernel_source}", kernel.release);
    // Check every input before the slow steps, so bad input fails fast and writes nothing.
    let vmlinuz = fs::read(&kernel.vmlinuz)
        .with_context(|| format!("reading {}", kernel.vmlinuz.display()))?;
    if let Some(release) = kernel::bzimage_release(&vmlinuz)
        && release != kernel.release
    {
        bail!(
            "kernel {} is release {release} but the modules directory {} is for {}",
            kernel.vmlinuz.display(),
            kernel.modules_dir.display(),
            kernel.release
        );
    }
    let (stub, stub_source) = match &o.stub {
        Some(path) => (
            fs::read(path).with_context(|| format!("reading the EFI stub {}", path.display()))?,
            format!("--stub {}", file_name(path)),
        ),
        None => {
            let pin = lock.role("stub")?;
            let deb = inputs::fetch(pin)?;
            let bytes = fs::read(&deb).with_context(|| format!("reading {}", deb.display()))?;
            let mut files = initramfs::deb::data_files(&bytes)
                .with_context(|| format!("unpacking {}", deb.display()))?;
            let stub = files
                .remove(STUB_IN_PACKAGE)
                .with_context(|| format!("{} has no {STUB_IN_PACKAGE}", pin.file_name()))?;
            (stub, format!("{}:/{STUB_IN_PACKAGE}", pin.file_name()))
        }
    };
    images::pe::sections(&stub)
        .with_context(|| format!("the EFI stub {stub_source} is not a usable PE file"))?;
    if initramfs::profile::by_name(&o.profile).is_none() {
        bail!(
            "unknown profile {:?}; known: {}",
            o.profile,
            initramfs::profile::names().join(", ")
        );
    }
    for key in &o.trust_keys {
        let data =
            fs::read(key).with_context(|| format!("reading --trust-key {}", key.display()))?;
        // Armoured key block, or a binary OpenPGP packet (tag byte with bit 7 set); parsed in full later.
        let armoured = data
            .windows(36)
            .any(|w| w == b"-----BEGIN PGP PUBLIC KEY BLOCK-----");
        if !armoured && data.first().is_none_or(|b| b & 0x80 == 0) {
            bail!(
                "--trust-key {} is not an OpenPGP public key (armoured or binary)",
                key.display()
            );
        }
    }
    let index = module_index(&kernel)?;
    let epoch = o.epoch;
    let rescue_bin_path = build_rescue_binary(&o.commit)?;
    let rescue_bin = fs::read(&rescue_bin_path)?;

    let kernel_sha = util::sha256_hex(&vmlinuz);
    let rescue_sha = util::sha256_hex(&rescue_bin);
    let stub_sha = util::sha256_hex(&stub);
    let trusted = trusted_keys(&rescue_bin_path, &o.trust_keys)?;
    // Trusted keys change what the image accepts, so they are part of its identity (only when present,
    // so that builds without keys keep their id).
    let keys_id: String = trusted
        .iter()
        .map(|k| format!("\nkey {} {}", k.fingerprint, k.sha256))
        .collect();
    let build_id = util::sha256_hex(
        format!(
            "{kernel_sha}\n{rescue_sha}\n{stub_sha}\n{}\n{}\n{}{keys_id}",
            o.cmdline,
            o.profile,
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    )[..16]
        .to_owned();
    let build_info = serde_json::to_vec_pretty(&json!({
        "build_id": build_id,
        "version": env!("CARGO_PKG_VERSION"),
        "commit": o.commit,
        "kernel_release": kernel.release,
        "kernel_sha256": kernel_sha,
        "profile": o.profile,
        "cmdline": o.cmdline,
    }))?;

    let initrd = build_initramfs(
        &lock,
        &kernel,
        &index,
        &o.profile,
        &rescue_bin,
        &build_info,
        &trusted,
        epoch,
    )?;
    let marker = format!("RESCUE/ID_{}", build_id.to_uppercase());
    let marker_data = format!("{build_id}\n").into_bytes();
    // Scratch files of this checkout's build (never in the shared cache: builds run in parallel).
    let work = root.join("target/build-work");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let loaders = bootloader::prepare(&lock, &work, &marker)?;
    let grub_cfg = bootloader::grub_cfg(&o.cmdline, env!("CARGO_PKG_VERSION"), &build_id, &marker)
        .into_bytes();
    let iso_volume_id = format!("RESCUE_{}", build_id.to_uppercase());

    // Stage two of the initramfs: the hashes of the media files, the main part's included.
    let main_sha = util::sha256_hex(&initrd.cpio_zst);
    let record = |path: &str, data: &[u8], on: &[&str]| json!({ "path": path, "sha256": util::sha256_hex(data), "size": data.len(), "on": on });
    let boot_files = json!({
        "schema": "rescue.boot-files/1",
        "build_id": build_id,
        "fat_label": "RESCUE",
        "iso_volume_id": iso_volume_id,
        "initramfs": {
            "path": "RESCUE/INITRD.IMG",
            "main_sha256": main_sha,
            "main_size": initrd.cpio_zst.len(),
        },
        "files": [
            record("RESCUE/VMLINUZ", &vmlinuz, &["fat", "iso"]),
            record(RESCUE_ON_MEDIA, &rescue_bin, &["fat", "iso"]),
            record(&marker, &marker_data, &["fat", "iso"]),
            record("BOOT/GRUB/GRUB.CFG", &grub_cfg, &["fat", "iso"]),
            record("EFI/BOOT/BOOTX64.EFI", &loaders.shim, &["fat"]),
            record("EFI/BOOT/GRUBX64.EFI", &loaders.grub_efi, &["fat"]),
            record("EFI/BOOT/MMX64.EFI", &loaders.mok_manager, &["fat"]),
            record("EFI/BOOT/GRUB.CFG", &grub_cfg, &["fat"]),
            record("EFI/DEBIAN/GRUB.CFG", &grub_cfg, &["fat"]),
        ],
    });
    let mut boot_files_bytes = serde_json::to_vec_pretty(&boot_files)?;
    boot_files_bytes.push(b'\n');
    let mut head = Archive::new();
    head.add_dir("etc", 0o755);
    head.add_dir("etc/rescue", 0o755);
    head.add_file("etc/rescue/boot-files.json", 0o644, boot_files_bytes);
    let mut initrd_file = Vec::new();
    head.write(&mut initrd_file, epoch)
        .context("writing the initramfs head archive")?;
    initrd_file.extend_from_slice(&initrd.cpio_zst);

    let uname = kernel.release.clone();
    let osrel = format!(
        "NAME=rescue\nID=rescue\nPRETTY_NAME=\"rescue {} ({build_id})\"\nVERSION_ID={}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    );
    let mut uki = images::uki::build(&images::uki::UkiInputs {
        stub: &stub,
        linux: &vmlinuz,
        initrd: &initrd_file,
        cmdline: &o.cmdline,
        osrel: &osrel,
        uname: &uname,
    })
    .context("building the UKI")?;
    if let Some((key, cert)) = &o.sign {
        uki = bootloader::sbsign(&uki, key, cert, &work).context("signing the UKI")?;
    }

    let esp_file = |path: &str, data: &[u8]| images::EspFile {
        path: path.to_owned(),
        data: data.to_vec(),
    };
    let files = vec![
        esp_file("EFI/BOOT/BOOTX64.EFI", &loaders.shim),
        esp_file("EFI/BOOT/GRUBX64.EFI", &loaders.grub_efi),
        esp_file("EFI/BOOT/MMX64.EFI", &loaders.mok_manager),
        esp_file("EFI/BOOT/GRUB.CFG", &grub_cfg),
        esp_file("EFI/DEBIAN/GRUB.CFG", &grub_cfg),
        esp_file("EFI/RESCUE/RESCUE.EFI", &uki),
        esp_file("BOOT/GRUB/GRUB.CFG", &grub_cfg),
        esp_file("RESCUE/VMLINUZ", &vmlinuz),
        esp_file("RESCUE/INITRD.IMG", &initrd_file),
        esp_file(&marker, &marker_data),
    ];
    // The static binary for a live response on the running suspect host (issue 15). Only on the USB
    // image's FAT: the ISO carries it in its ISO 9660 tree, and its ESP image (El Torito UEFI entry,
    // hybrid partition 2) needs only what boots, so the ISO does not hold the binary twice.
    let mut usb_files = files.clone();
    usb_files.push(esp_file(RESCUE_ON_MEDIA, &rescue_bin));
    let mut label = *b"RESCUE     ";
    label[..6].copy_from_slice(b"RESCUE");
    let disk_opts = images::disk::DiskOptions {
        disk_guid: guid_from(&build_id, "disk"),
        esp_guid: guid_from(&build_id, "esp"),
        bios_guid: guid_from(&build_id, "bios"),
        esp_size: o.esp_size,
        fat: images::fat::FatOptions {
            volume_id: u32::from_le_bytes(
                guid_from(&build_id, "fat")[..4]
                    .try_into()
                    .unwrap_or([0; 4]),
            ),
            volume_label: label,
        },
    };
    let mut disk = std::io::Cursor::new(Vec::new());
    images::disk::write_disk(
        &mut disk,
        &usb_files,
        &disk_opts,
        Some(images::disk::BiosBoot {
            boot_img: &loaders.boot_img,
            core_img: &loaders.core_disk,
        }),
    )
    .context("building the USB disk image")?;

    // The ISO: BIOS El Torito image, hybrid MBR, and the same ESP as El Torito EFI image and partition 2.
    let esp_size = o
        .esp_size
        .unwrap_or_else(|| images::fat::esp_size_for(&files));
    let esp_image = images::fat::build_fat32(&files, esp_size, &disk_opts.fat)
        .context("building the ESP image for the ISO")?;
    let iso_file = |path: &str, data: &[u8]| images::iso::IsoFile {
        path: path.to_owned(),
        data: data.to_vec(),
    };
    let iso_files = vec![
        iso_file("BOOT/GRUB/ELTORITO.IMG", &loaders.core_cd),
        iso_file("BOOT/GRUB/CORE.IMG", &loaders.core_disk),
        iso_file("BOOT/GRUB/GRUB.CFG", &grub_cfg),
        iso_file("RESCUE/VMLINUZ", &vmlinuz),
        iso_file("RESCUE/INITRD.IMG", &initrd_file),
        iso_file(RESCUE_ON_MEDIA, &rescue_bin),
        iso_file(&marker, &marker_data),
        iso_file("EFI/ESP.IMG", &esp_image),
    ];
    let iso = build_iso(
        &iso_files,
        &iso_volume_id,
        epoch,
        &loaders.boot_img,
        &build_id,
    )?;

    let mut art = Artifacts::in_dir(&o.out);
    art.modules_dir = Some(kernel.modules_dir.clone());
    fs::create_dir_all(&art.dir).with_context(|| format!("creating {}", art.dir.display()))?;
    util::write_atomic(&art.vmlinuz, &vmlinuz)?;
    util::write_atomic(&art.initramfs, &initrd_file)?;
    util::write_atomic(&art.efi, &uki)?;
    util::write_atomic(&art.usb, disk.get_ref())?;
    util::write_atomic(&art.iso, &iso)?;

    let outputs: Vec<FileRecord> = [&art.efi, &art.usb, &art.iso, &art.initramfs, &art.vmlinuz]
        .iter()
        .map(|p| {
            let data = fs::read(p)?;
            Ok(FileRecord {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: util::sha256_hex(&data),
                size: data.len() as u64,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let manifest = json!({
        "schema": "rescue.build/1",
        "build_id": build_id,
        "version": env!("CARGO_PKG_VERSION"),
        "commit": o.commit,
        "source_date_epoch": epoch,
        "profile": o.profile,
        "cmdline": o.cmdline,
        "kernel": {
            "release": kernel.release,
            "vmlinuz": { "source": kernel_source, "sha256": kernel_sha, "size": vmlinuz.len() },
            "package": kernel.package,
            "override": kernel.package.is_none(),
        },
        "stub": { "source": stub_source, "sha256": stub_sha, "override": o.stub.is_some() },
        "inputs": { "lock": inputs::LOCK_FILE, "lock_sha256": util::sha256_hex(lock.render().as_bytes()), "packages": lock.pins },
        "rescue_binary": { "target": TARGET, "sha256": rescue_sha, "size": rescue_bin.len(), "static": true },
        "toolchain": {
            "rust_toolchain_toml": toolchain_channel(&root)?,
            "rustc": rustc_vv,
            "packages": toolchain.iter().map(|p| json!({ "name": p.name, "version": p.version, "arch": p.arch, "sha256": p.sha256 })).collect::<Vec<_>>(),
        },
        "initramfs": { "compression": format!("zstd-{ZSTD_LEVEL}"), "uncompressed_size": initrd.uncompressed_size, "compressed_size": initrd.cpio_zst.len() },
        "modules": initrd.modules,
        "modules_missing": initrd.modules_missing,
        "modules_builtin": initrd.modules_builtin,
        "firmware": initrd.firmware,
        "firmware_missing": initrd.firmware_missing,
        "tools": initrd.tools,
        "trusted_keys": trusted.iter().map(|k| json!({
            "fingerprint": k.fingerprint, "uid": k.uid, "file": format!("/etc/rescue/trusted-keys/{}", k.file),
            "source": file_name(&k.source), "sha256": k.sha256,
        })).collect::<Vec<_>>(),
        "outputs": outputs,
        "bootloader": { "packages": loaders.packages, "grub_bios_modules": "grub-mkimage -d <grub-pc-bin>/usr/lib/grub/i386-pc" },
        "boot_files": boot_files,
        "media": {
            "rescue-usb.img": usb_files.iter().map(|f| json!({ "path": f.path, "sha256": util::sha256_hex(&f.data), "size": f.data.len() })).collect::<Vec<_>>(),
            "rescue.iso": iso_files_on_medium(&iso, &iso_files)?,
        },
    });
    let leaked = host_paths_in(
        &manifest,
        &[
            root.clone(),
            o.out.clone(),
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
        ],
    );
    if !leaked.is_empty() {
        bail!(
            "build-manifest.json would hold paths of this build machine: {}",
            leaked.join(", ")
        );
    }
    let manifest_path = art.dir.join("build-manifest.json");
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    manifest_bytes.push(b'\n');
    util::write_atomic(&manifest_path, &manifest_bytes)?;
    let mut sums = String::new();
    for r in &outputs {
        sums.push_str(&format!("{}  {}\n", r.sha256, r.name));
    }
    sums.push_str(&format!(
        "{}  build-manifest.json\n",
        util::sha256_hex(&manifest_bytes)
    ));
    util::write_atomic(&art.dir.join("SHA256SUMS"), sums.as_bytes())?;
    eprintln!(
        "xtask: built {} in {:.1} s: initramfs {:.1} MiB ({} modules), UKI {:.1} MiB, USB image {:.1} MiB, ISO {:.1} MiB",
        art.dir.display(),
        started.elapsed().as_secs_f64(),
        initrd.cpio_zst.len() as f64 / 1048576.0,
        initrd.modules.len(),
        uki.len() as f64 / 1048576.0,
        disk.get_ref().len() as f64 / 1048576.0,
        iso.len() as f64 / 1048576.0
    );
    Ok(art)
}

/// The last component of a path: what the manifest says about a file given on the command line.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Strings of the manifest that are paths of the build machine: any absolute path (the only absolute
/// paths it may hold are inside the rescue system, under `/etc/rescue/`) and anything naming one of
/// `forbidden` (checkout, output directory, home).
fn host_paths_in(manifest: &serde_json::Value, forbidden: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![manifest];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                let named = forbidden
                    .iter()
                    .filter(|f| f.as_os_str().len() > 1)
                    .any(|f| s.contains(&*f.to_string_lossy()));
                if named || (s.starts_with('/') && !s.starts_with("/etc/rescue/")) {
                    out.push(s.clone());
                }
            }
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    out.sort();
    out
}

/// A `--trust-key` input, checked and fingerprinted.
#[derive(Debug, Clone)]
struct TrustedKey {
    source: PathBuf,
    /// Name inside `/etc/rescue/trusted-keys/`.
    file: String,
    data: Vec<u8>,
    sha256: String,
    fingerprint: String,
    uid: String,
}

/// Reads every `--trust-key` file and fingerprints it with the freshly built rescue binary itself
/// (`rescue reinstall keys --keyring FILE --json`), so the build accepts exactly the keys the rescue
/// system will be able to parse, and xtask needs no OpenPGP code of its own.
fn trusted_keys(rescue_bin: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<TrustedKey>> {
    let mut out = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let data =
            fs::read(path).with_context(|| format!("reading --trust-key {}", path.display()))?;
        let listing = util::output(
            Command::new(rescue_bin)
                .args(["reinstall", "keys", "--json", "--keyring"])
                .arg(path),
        )
        .with_context(|| {
            format!(
                "--trust-key {} is not a usable OpenPGP public key",
                path.display()
            )
        })?;
        let keys: Vec<serde_json::Value> = serde_json::from_str(listing.trim())
            .with_context(|| format!("parsing the key listing of {}", path.display()))?;
        let first = keys
            .first()
            .with_context(|| format!("--trust-key {} holds no public key", path.display()))?;
        let fingerprint = first["fingerprint"].as_str().unwrap_or_default().to_owned();
        let armoured = data.windows(10).any(|w| w == b"-----BEGIN");
        let file = format!(
            "{:02}-{fingerprint}.{}",
            i + 1,
            if armoured { "asc" } else { "gpg" }
        );
        for k in &keys {
            eprintln!(
                "xtask: trusting key {} ({}) from {}",
                k["fingerprint"].as_str().unwrap_or("?"),
                k["uid"].as_str().unwrap_or("?"),
                path.display()
            );
        }
        out.push(TrustedKey {
            source: path.clone(),
            file,
            sha256: util::sha256_hex(&data),
            uid: first["uid"].as_str().unwrap_or_default().to_owned(),
            fingerprint,
            data,
        });
    }
    Ok(out)
}

/// Lays out the hybrid ISO: El Torito BIOS (GRUB `cdboot` core, boot info table) and UEFI (`EFI/ESP.IMG`)
/// entries; in the MBR, GRUB's `boot.img` pointing at `BOOT/GRUB/CORE.IMG`, partition 1 (type 0, the
/// whole image, which UEFI ignores) and partition 2 (type 0xEF, the ESP image).
fn build_iso(
    files: &[images::iso::IsoFile],
    volume_id: &str,
    epoch: u32,
    boot_img: &[u8],
    build_id: &str,
) -> anyhow::Result<Vec<u8>> {
    use images::iso::{BiosBoot, IsoImage, IsoOptions, MbrPartition};
    let mut iso = IsoImage::new(
        IsoOptions {
            volume_id: volume_id.to_owned(),
            epoch,
            bios_boot: Some(BiosBoot {
                path: "BOOT/GRUB/ELTORITO.IMG".to_owned(),
                load_sectors: 4,
                boot_info_table: true,
            }),
            efi_boot: Some("EFI/ESP.IMG".to_owned()),
        },
        files.to_vec(),
    )
    .context("laying out the ISO")?;
    let core = iso
        .layout("BOOT/GRUB/CORE.IMG")
        .context("the ISO lacks BOOT/GRUB/CORE.IMG")?;
    let esp = iso
        .layout("EFI/ESP.IMG")
        .context("the ISO lacks EFI/ESP.IMG")?;
    let core_img = iso
        .file_mut("BOOT/GRUB/CORE.IMG")
        .context("the ISO lacks BOOT/GRUB/CORE.IMG")?;
    images::biosboot::place_core(core_img, core.lba512()).context("placing GRUB's core.img")?;
    let code =
        images::biosboot::mbr_code(boot_img, core.lba512()).context("placing GRUB's boot.img")?;
    let sectors = |n: u64| u32::try_from(n).context("the ISO is too large for an MBR");
    let signature = u32::from_le_bytes(
        guid_from(build_id, "iso-mbr")[..4]
            .try_into()
            .unwrap_or([0; 4]),
    );
    iso.set_mbr(
        &code,
        signature,
        &[
            MbrPartition {
                bootable: true,
                kind: 0x00,
                first_lba: 0,
                sectors: sectors(iso.size() / 512)?,
            },
            MbrPartition {
                bootable: false,
                kind: 0xef,
                first_lba: sectors(esp.lba512())?,
                sectors: sectors(esp.sectors512())?,
            },
        ],
    )?;
    Ok(iso.to_vec()?)
}

/// Every file of the ISO as it is on the medium (after patching), for the manifest.
fn iso_files_on_medium(
    iso: &[u8],
    files: &[images::iso::IsoFile],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut cursor = std::io::Cursor::new(iso);
    files
        .iter()
        .map(|f| {
            let e = images::iso::find_file(&mut cursor, &f.path)
                .with_context(|| format!("reading {} back from the ISO", f.path))?;
            let start = (u64::from(e.lba) * images::iso::BLOCK) as usize;
            let data = iso
                .get(start..start + e.len as usize)
                .context("ISO extent past the end")?;
            Ok(json!({ "path": f.path, "sha256": util::sha256_hex(data), "size": data.len(), "lba": e.lba }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_of_the_build_machine_are_found() {
        let root = PathBuf::from("/work/checkout");
        let m = json!({
            "kernel": { "vmlinuz": { "source": "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb:/boot/vmlinuz-6.1.0-57-amd64" } },
            "stub": { "source": "--stub linuxx64.efi.stub" },
            "trusted_keys": [{ "file": "/etc/rescue/trusted-keys/01-AB.asc", "source": "debian.asc" }],
            "tools": [{ "from": "libc6_2.36-9+deb12u14_amd64.deb:/lib/x86_64-linux-gnu/libc.so.6" }],
        });
        assert!(host_paths_in(&m, std::slice::from_ref(&root)).is_empty());
        let leaky = json!({
            "kernel": { "vmlinuz": { "source": "/boot/vmlinuz-6.1.0-57-amd64" } },
            "note": "built in /work/checkout/target/rescue",
            "list": ["relative", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"],
        });
        assert_eq!(
            host_paths_in(&leaky, &[root]),
            [
                "/boot/vmlinuz-6.1.0-57-amd64",
                "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
                "built in /work/checkout/target/rescue",
            ]
        );
    }

    #[test]
    fn the_pinned_rustc_is_the_one_building_and_a_build_path_in_a_binary_is_found() {
        let root = util::project_root();
        let channel = toolchain_channel(&root).unwrap();
        assert!(channel.starts_with("1."), "{channel}");
        let vv = check_rustc(&root).unwrap();
        assert!(vv.contains(&format!("release: {channel}")), "{vv:?}");
        let bin = b"\0panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/x/src/lib.rs\0";
        assert_eq!(
            path_in(bin, Path::new("/root/.cargo")).as_deref(),
            Some("/root/.cargo/")
        );
        assert_eq!(
            path_in(b"\0/cargo/registry/src/x.rs\0", Path::new("/root/.cargo")),
            None
        );
    }

    /// The manifest of the last `cargo xtask build` (when `RESCUE_ARTIFACTS` names it, as `cargo xtask
    /// test` does) holds no path of the machine that built it.
    #[test]
    fn the_built_manifest_holds_no_path_of_the_build_machine() {
        let Some(dir) = std::env::var_os("RESCUE_ARTIFACTS") else {
            if std::env::var_os("RESCUE_REQUIRE_BOOT_FILES").is_some() {
                panic!("RESCUE_ARTIFACTS is not set");
            }
            return;
        };
        let dir = PathBuf::from(dir);
        let text = fs::read_to_string(dir.join("build-manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        let forbidden = [util::project_root(), fs::canonicalize(&dir).unwrap(), dir];
        assert_eq!(host_paths_in(&m, &forbidden), Vec::<String>::new());
        assert_eq!(m["kernel"]["override"], false);
        assert_eq!(
            m["inputs"]["packages"].as_array().map(Vec::len),
            Some(inputs::Lock::load().unwrap().pins.len())
        );
        // The toolchain that made the binary: the pinned rustc and host packages.
        let channel = toolchain_channel(&util::project_root()).unwrap();
        let rustc: Vec<&str> = m["toolchain"]["rustc"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(
            rustc.contains(&format!("release: {channel}").as_str()),
            "{rustc:?}"
        );
        let lock = inputs::Lock::load().unwrap();
        let recorded: Vec<(String, String)> = m["toolchain"]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["version"].as_str().unwrap().into(),
                )
            })
            .collect();
        let pinned: Vec<(String, String)> = lock
            .all("toolchain")
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        assert_eq!(recorded, pinned);
        for t in m["tools"].as_array().unwrap() {
            let from = t["from"].as_str().unwrap();
            assert!(
                from.contains(".deb:/"),
                "{from} is not from a pinned package"
            );
        }
    }
}
