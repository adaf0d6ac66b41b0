//! Host-side fixtures the scenarios share: running a tool and checking it, a throw-away GnuPG signer,
//! files with given modes and ext4 images made from a directory without root, reading files back out of
//! ext4 images with `debugfs`, and an initramfs that trusts an extra key the way
//! `cargo xtask build --trust-key` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Artifacts, display, sha256_file};

/// Runs a host tool; its standard output, or an error naming the command and its standard error.
pub fn run_tool(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output()?;
    anyhow::ensure!(
        o.status.success(),
        "{} failed: {}",
        display(cmd),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `root/rel` (creating its directories) with permission bits `mode`.
pub fn write_file(root: &Path, rel: &str, data: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, data)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Every file under `dir` except directories and lost+found: relative path → (content, mode & 0o7777).
pub fn tree(dir: &Path) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    fn walk(
        dir: &Path,
        rel: &str,
        out: &mut BTreeMap<String, (Vec<u8>, u32)>,
    ) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(dir.join(rel))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                if r != "lost+found" {
                    walk(dir, &r, out)?;
                }
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(r, (std::fs::read(e.path())?, mode));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// An ext4 image of `mib` MiB holding the tree `dir` (or empty), made without root.
pub fn mkfs_ext4(image: &Path, mib: u64, dir: Option<&Path>) -> anyhow::Result<()> {
    std::fs::File::create(image)?.set_len(mib << 20)?;
    let mut c = Command::new("mkfs.ext4");
    c.args(["-F", "-q"]);
    if let Some(d) = dir {
        c.arg("-d").arg(d);
    }
    run_tool(c.arg(image))?;
    Ok(())
}

/// Copies the whole tree of the ext4 image `image` into `out` (no mount, no root).
pub fn debugfs_rdump(image: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    run_tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", out.display()))
            .arg(image),
    )?;
    Ok(())
}

/// A throw-away GnuPG home with one signing key.
pub struct Signer {
    home: tempfile::TempDir,
    pub fpr: String,
}

impl Signer {
    pub fn new(uid: &str) -> anyhow::Result<Self> {
        // GnuPG's agent socket path must stay short: a home directly under /tmp.
        let home = tempfile::Builder::new().prefix("g").tempdir_in("/tmp")?;
        let mut s = Signer {
            home,
            fpr: String::new(),
        };
        s.gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"])?;
        let listing = s.gpg(&["--with-colons", "--list-keys", uid])?;
        s.fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .ok_or_else(|| anyhow::anyhow!("no fingerprint in {listing}"))?;
        Ok(s)
    }

    pub fn gpg(&self, args: &[&str]) -> anyhow::Result<String> {
        run_tool(
            Command::new("gpg")
                .env("GNUPGHOME", self.home.path())
                .args([
                    "--batch",
                    "--yes",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args),
        )
    }

    /// Writes SHA256SUMS for `files` into `dir`, its armoured detached signature (SHA256SUMS.sign) and
    /// the public key (signer.asc).
    pub fn sign_sums(&self, dir: &Path, files: &[&str]) -> anyhow::Result<()> {
        let mut sums = String::new();
        for f in files {
            sums.push_str(&format!("{}  {f}\n", sha256_file(&dir.join(f))?));
        }
        std::fs::write(dir.join("SHA256SUMS"), sums)?;
        let sums = dir.join("SHA256SUMS");
        let sig = dir.join("SHA256SUMS.sign");
        let key = dir.join("signer.asc");
        self.gpg(&[
            "--local-user",
            &self.fpr,
            "--armor",
            "--output",
            sig.to_str().unwrap_or_default(),
            "--detach-sign",
            sums.to_str().unwrap_or_default(),
        ])?;
        self.gpg(&[
            "--armor",
            "--output",
            key.to_str().unwrap_or_default(),
            "--export",
            &self.fpr,
        ])?;
        Ok(())
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// An ext4 image labelled `label` holding the files of `dir` (top level) with `extra_mib` to spare.
pub fn ext4_from(dir: &Path, image: &Path, extra_mib: u64, label: &str) -> anyhow::Result<()> {
    let mut size = 0u64;
    for e in std::fs::read_dir(dir)?.flatten() {
        size += e.metadata()?.len();
    }
    std::fs::File::create(image)?.set_len(size + (extra_mib << 20))?;
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-F", "-q", "-L", label, "-d"])
            .arg(dir)
            .arg(image),
    )?;
    Ok(())
}

/// Copies `inside` out of the ext4 image `image` to `out` (no mount, no root).
pub fn debugfs_dump(image: &Path, inside: &str, out: &Path) -> anyhow::Result<()> {
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {inside} {}", out.display()))
        .arg(image)
        .output()?;
    anyhow::ensure!(
        o.status.success() && out.exists(),
        "debugfs dump {inside}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// The build's initramfs with `key` embedded as `/etc/rescue/trusted-keys/01-<name>.asc` (what
/// `cargo xtask build --trust-key` does), as an uncompressed cpio in front of it (the kernel unpacks
/// concatenated archives). Written into `work`; returns its path.
pub fn initrd_with_trusted_key(
    art: &Artifacts,
    key: &Path,
    name: &str,
    work: &Path,
) -> anyhow::Result<PathBuf> {
    let extra = work.join("extra-initrd");
    let keys = extra.join("etc/rescue/trusted-keys");
    std::fs::create_dir_all(&keys)?;
    let file = format!("01-{name}.asc");
    std::fs::copy(key, keys.join(&file))?;
    let mut child = Command::new("cpio")
        .current_dir(&extra)
        .args(["--quiet", "-o", "-H", "newc", "--owner", "0:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("cpio stdin"))?;
        stdin.write_all(
            format!("etc\netc/rescue\netc/rescue/trusted-keys\netc/rescue/trusted-keys/{file}\n")
                .as_bytes(),
        )?;
    }
    let cpio = child.wait_with_output()?;
    anyhow::ensure!(
        cpio.status.success(),
        "cpio: {}",
        String::from_utf8_lossy(&cpio.stderr)
    );
    let initrd = work.join(format!("initrd-with-{name}-key"));
    let mut bytes = cpio.stdout;
    bytes.extend(std::fs::read(art.initramfs())?);
    std::fs::write(&initrd, bytes)?;
    Ok(initrd)
}
