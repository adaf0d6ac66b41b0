//! `reinstall verify|keys|boot` and `deploy`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// What `reinstall` does.
#[derive(Debug, Subcommand)]
pub enum ReinstallCommand {
    /// Prove an installer or golden image authentic: signed checksum list, then its hash.
    Verify(VerifyArgs),
    /// The OpenPGP keys embedded in this build (or in --keyring files).
    Keys {
        /// Show these keyrings instead of the embedded keys.
        #[arg(long, value_name = "FILE")]
        keyring: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Verify an installer ISO, load its kernel and initrd with kexec and boot into it.
    Boot(BootArgs),
}

/// Checksum list and signature options shared by verify, deploy and boot.
#[derive(Debug, Clone, Args, Default)]
pub struct SumsArgs {
    /// The checksum list (SHA256SUMS, SHA512SUMS, CHECKSUM; GNU or BSD tag format; may be cleartext-signed).
    #[arg(long, value_name = "FILE")]
    pub sums: Option<PathBuf>,
    /// Detached signature of the list (armoured or binary, e.g. SHA256SUMS.sign, SHA256SUMS.gpg).
    #[arg(long, value_name = "FILE")]
    pub sig: Option<PathBuf>,
    /// Trusted public keys (armoured or binary); repeatable. Default: the keys embedded in this build.
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
    /// Accept a checksum list that is not signed (proves integrity only against the list itself).
    #[arg(long)]
    pub allow_unsigned: bool,
    /// A disk, partition or CD holding the files: mounted read-only (ro,noload,nodev,nosuid,noexec);
    /// relative IMAGE, --sums, --sig and --keyring paths are looked up inside it.
    #[arg(long, value_name = "DEVICE")]
    pub media: Option<PathBuf>,
}

/// `reinstall verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The installer ISO or image file.
    pub image: PathBuf,
    #[command(flatten)]
    pub sums: SumsArgs,
    /// Prove the file through a distribution's signed archive metadata: this InRelease (or Release,
    /// with --sig Release.gpg). With --packages, FILE is a .deb listed there; with --sums, FILE is an
    /// image listed in the installer's SHA256SUMS; with neither, FILE is a file the Release lists.
    #[arg(long, value_name = "FILE", conflicts_with = "allow_unsigned")]
    pub release: Option<PathBuf>,
    /// The Packages index (listed in --release; uncompressed or .gz) that lists the .deb.
    #[arg(
        long,
        value_name = "FILE",
        requires = "release",
        conflicts_with = "sums"
    )]
    pub packages: Option<PathBuf>,
    /// The result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `reinstall boot`.
#[derive(Debug, Clone, Args)]
pub struct BootArgs {
    /// The installer ISO.
    pub iso: PathBuf,
    #[command(flatten)]
    pub sums: SumsArgs,
    /// Kernel path inside the ISO (default: the first known layout: Debian, Ubuntu, Rocky/Alma).
    #[arg(long, value_name = "PATH", requires = "initrd")]
    pub kernel: Option<String>,
    /// Initrd path inside the ISO.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<String>,
    /// Extra kernel command line for the installer (our console= is added unless this sets one).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub append: String,
    /// Load the kernel but do not reboot into it.
    #[arg(long)]
    pub no_reboot: bool,
}

/// `deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Raw disk image, image.raw.zst from `rescue acquire`, or installer ISO.
    pub image: PathBuf,
    /// The disk to overwrite.
    #[arg(long, value_name = "DEVICE")]
    pub target: PathBuf,
    /// The target's serial number (or its last 6 characters; its size in bytes if it has none).
    #[arg(long, value_name = "SERIAL")]
    pub confirm: String,
    #[command(flatten)]
    pub sums: SumsArgs,
    /// Why the interlock may be overridden (the target was never acquired in this case); logged.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}
