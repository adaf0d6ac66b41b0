//! Host packages the builder and tests need. Missing ones are installed with `apt-get` when running as
//! root; otherwise the build stops with the exact command to run.

use std::process::Command;
use std::sync::Once;

use anyhow::bail;

use crate::util;

static APT_UPDATE: Once = Once::new();

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Refreshes apt's package lists once per run (a fresh machine may have none), when running as root.
pub fn apt_update() -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut result = Ok(());
    APT_UPDATE.call_once(|| {
        result = util::run(Command::new("apt-get").args(["update", "-q"]));
    });
    result
}

/// Ensures each `(tool, package)` is present: `tool` is a program name on PATH or an absolute file path.
pub fn ensure_packages(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !util::have(tool))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let cmdline = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() || !util::have("apt-get") {
        bail!("missing host packages; run as root: {cmdline}");
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    apt_update()?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !util::have(tool))
        .map(|(t, _)| *t)
        .collect();
    if !still.is_empty() {
        bail!("still missing after `{cmdline}`: {}", still.join(", "));
    }
    Ok(())
}

/// What `cargo xtask build` needs.
/// (The kernel, boot loaders, EFI stub and the initramfs tools come from the packages pinned in
/// `xtask/inputs.lock`, never from the host: see `crate::inputs`.)
pub const BUILD: &[(&str, &str)] = &[
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
    // Links GRUB's BIOS core.img from the pinned grub-pc-bin modules (issue 6).
    ("grub-mkimage", "grub-common"),
];

/// What booting and checking the images needs.
pub const TEST: &[(&str, &str)] = &[
    // UKI tests build their own images with the host's stub (RESCUE_STUB).
    (
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "systemd-boot-efi",
    ),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    ("sgdisk", "gdisk"),
    ("fsck.vfat", "dosfstools"),
    ("objdump", "binutils"),
    ("zstd", "zstd"),
    ("losetup", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("blockdev", "util-linux"),
    ("sha256sum", "coreutils"),
    ("cpio", "cpio"),
    // Puts a rescue.run command file onto a copy of the boot medium.
    ("mcopy", "mtools"),
    // reinstall/restore: test keys and signatures, the installer ISO built at test time.
    ("gpg", "gnupg"),
    ("gpgconf", "gnupg"),
    // The signed incident report is checked by GnuPG's own verifier.
    ("gpgv", "gpgv"),
    ("xorriso", "xorriso"),
    ("apt-get", "apt"),
    ("socat", "socat"),
    ("openssl", "openssl"),
    // Independent checks of the hybrid ISO (issue 6).
    ("isoinfo", "genisoimage"),
    // Makes every system call newer than Linux 3.2 fail, to prove the minimum kernel (issue 15).
    ("strace", "strace"),
    // Inventory fixtures (issue 19): MBR logical partitions, md superblocks, bcache.
    ("sfdisk", "fdisk"),
    ("mdadm", "mdadm"),
    ("make-bcache", "bcache-tools"),
    ("blkid", "util-linux"),
    // Package-integrity fixtures and cross-checks (issue 18): a Debian 12 root, a rpmdb made by rpm.
    ("debootstrap", "debootstrap"),
    ("debsums", "debsums"),
    ("rpm", "rpm"),
    ("rpmbuild", "rpm"),
    // The signed RPM repository `--packages-from` checks an rpm root against.
    ("createrepo_c", "createrepo-c"),
    ("gpg", "gpg"),
    ("sqlite3", "sqlite3"),
    // Triage fixtures: file capabilities on a planted binary (issue 18).
    ("setcap", "libcap2-bin"),
    // Writes the Berkeley DB rpmdb of older RHEL (Debian's rpm no longer can).
    ("db5.3_load", "db5.3-util"),
    // Timeline (issue 14): body file vs Sleuth Kit, journal vs journalctl, wtmp vs last, LZ4 blocks.
    ("fls", "sleuthkit"), // also `rescue mount` against Sleuth Kit's view
    // `rescue mount` as a user other than root (issue 20), run as nobody through setpriv.
    ("fusermount3", "fuse3"),
    ("setpriv", "util-linux"),
    ("mactime", "sleuthkit"),
    ("journalctl", "systemd"),
    (
        "/usr/lib/systemd/systemd-journal-remote",
        "systemd-journal-remote",
    ),
    ("last", "util-linux"),
    ("utmpdump", "util-linux"),
    ("lz4", "lz4"),
    ("xz", "xz-utils"), // XZ journal fields
    // LVM/md fixtures, made in a QEMU guest with these tools copied in (tests::storage, issue 20).
    ("lvm", "lvm2"),
    ("mkfs.xfs", "xfsprogs"),
    ("mkfs.btrfs", "btrfs-progs"), // a dirty-log btrfs made at test time (btrfs_cli, issue 20)
    ("busybox", "busybox"),
    // The live-response scenario's test program, linked static (issue 15).
    ("gcc", "gcc"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
    // Live-response state (issue 15) against ps, ss, ip, lsmod and findmnt on the host's own /proc.
    ("ps", "procps"),
    ("ss", "iproute2"),
    ("ip", "iproute2"),
    ("lsmod", "kmod"),
    ("findmnt", "util-linux"),
];

/// The dissect.target version the triage cross-check runs (pinned: its plugins' output is compared).
pub const DISSECT_TARGET: &str = "3.20";

/// A virtualenv with dissect.target under `target/cache/dissect.target-VERSION/venv`; returns its
/// Python. Run plugins with `python -m dissect.target.tools.query` (see [`python_venv`]).
pub fn ensure_dissect_target() -> anyhow::Result<std::path::PathBuf> {
    python_venv(
        &format!("dissect.target-{DISSECT_TARGET}"),
        &format!("dissect.target[full]=={DISSECT_TARGET}"),
    )
}

/// The Volatility 3 version the live-response scenario opens its memory images with (pinned: the
/// scenario reads its `banners.Banners` output).
pub const VOLATILITY3: &str = "2.28.2";

/// A virtualenv with Volatility 3 under `target/cache/volatility3-VERSION/venv`; returns its Python.
/// Run it as `python -c 'import volatility3.cli as c; c.main()' ARGS` (see [`python_venv`]).
pub fn ensure_volatility3() -> anyhow::Result<std::path::PathBuf> {
    python_venv(
        &format!("volatility3-{VOLATILITY3}"),
        &format!("volatility3=={VOLATILITY3}"),
    )
}

/// A virtualenv under `target/cache/NAME/venv` with `requirement` installed by pip (made once, in a
/// temporary directory renamed into place, so NAME must carry the pinned version); returns its
/// Python. Call tools through the Python (`python -m …`): the venv's scripts keep the temporary path
/// in their shebang line.
fn python_venv(name: &str, requirement: &str) -> anyhow::Result<std::path::PathBuf> {
    let cache = util::project_root().join("target/cache");
    let dir = cache.join(name);
    let python = dir.join("venv/bin/python");
    if python.exists() {
        return Ok(python);
    }
    ensure_packages(&[
        ("python3", "python3"),
        ("/usr/lib/python3/dist-packages/pip", "python3-pip"),
    ])?;
    std::fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    util::run(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(tmp.join("venv")),
    )?;
    util::run(
        Command::new(tmp.join("venv/bin/python"))
            .args(["-m", "pip", "install", "-q"])
            .arg(requirement),
    )?;
    std::fs::rename(&tmp, &dir)?;
    Ok(python)
}

/// The moto version whose server is the second S3 store of the remote-evidence tests (issue 17).
pub const MOTO: &str = "5.2.6";

/// A virtualenv with `moto[server]` under `target/cache/moto-VERSION/venv` (made once, in a temporary
/// directory renamed into place); returns its Python. Start the store with
/// `python -m moto.server -H 127.0.0.1 -p PORT` (it says `Running on` when it listens); its boto3 is
/// the independent client the tests download with.
pub fn ensure_moto() -> anyhow::Result<std::path::PathBuf> {
    let cache = util::project_root().join("target/cache");
    let dir = cache.join(format!("moto-{MOTO}"));
    let python = dir.join("venv/bin/python");
    if python.exists() {
        return Ok(python);
    }
    ensure_packages(&[
        ("python3", "python3"),
        ("/usr/lib/python3/dist-packages/pip", "python3-pip"),
    ])?;
    std::fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".tmp-moto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    util::run(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(tmp.join("venv")),
    )?;
    util::run(
        Command::new(tmp.join("venv/bin/python"))
            .args(["-m", "pip", "install", "-q"])
            .arg(format!("moto[server]=={MOTO}")),
    )?;
    std::fs::rename(&tmp, &dir)?;
    Ok(python)
}
