//! `mount` and `umount`: serving an acquisition read-only as `MOUNTPOINT/image.raw`.

use std::path::PathBuf;

use clap::Args;

use super::acquire::RemoteArgs;

/// `rescue mount`.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// Acquisition directory (holding manifest.json), or s3://BUCKET/PREFIX/ with --endpoint.
    pub source: PathBuf,
    /// Empty directory (created if missing); the acquired stream appears in it as image.raw (read-only).
    pub mountpoint: PathBuf,
    /// Check each hash window against the manifest before serving any of its bytes: a window that
    /// differs answers reads with an I/O error (EIO) and is logged. Needs an acquisition made with --window.
    #[arg(long)]
    pub verify_windows: bool,
    /// Serve in this process until unmounted (Ctrl-C unmounts) instead of in the background.
    #[arg(long)]
    pub foreground: bool,
    /// Serving threads [default: 4].
    #[arg(long, hide = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `rescue umount`.
#[derive(Debug, Clone, Args)]
pub struct UmountArgs {
    /// A directory `rescue mount` mounted on.
    pub mountpoint: PathBuf,
    /// Detach even while in use; the server exits when the last user lets go.
    #[arg(long)]
    pub lazy: bool,
}
