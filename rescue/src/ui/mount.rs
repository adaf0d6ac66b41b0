//! `rescue mount` and `rescue umount` (engine: [`crate::mount`]).
//!
//! By default the server runs in the background so the prompt comes back (inside the rescue system
//! there is no second terminal to leave a foreground server on): `rescue mount` starts itself again as
//! `rescue mount --foreground …` in its own process group, with stdin closed, stdout a pipe and stderr
//! the log `/run/rescue/mounts/<mount point>.log`, waits for the one line that says the file system is
//! mounted (or for the process to end, then shows the log's error), and returns. The server records its
//! pid in `/run/rescue/mounts/<mount point>.pid` and holds a lock on that file while it runs, so
//! `rescue umount` can unmount and then wait until the server has really exited.
//!
//! In the foreground, SIGINT/SIGTERM/SIGHUP unmount (lazily when the mount is in use: the server keeps
//! answering until the last user lets go), and serving ends when the mount is gone.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::args::mount::{MountArgs, UmountArgs};
use crate::mount::stored::{self, Location};
use crate::mount::{Image, MountError, MountEvent};
use crate::s3::Store;

/// Where background servers keep their log and pid files.
pub const STATE_DIR: &str = "/run/rescue/mounts";
/// How long `rescue umount` waits for the server to exit after unmounting.
const EXIT_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_THREADS: usize = 4;
/// Exit code: mounted, or unmounted and the server gone.
const EXIT_OK: u8 = 0;

/// A file name for a mount point: `/mnt/case 1` → `mnt-case_1`.
fn state_name(mp: &Path) -> String {
    let s: String = mp
        .to_string_lossy()
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') => c,
            _ => '_',
        })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "root".to_owned()
    } else {
        s.to_owned()
    }
}

/// Where this user's servers keep their files: [`STATE_DIR`] for root; for another user (who mounts
/// through `fusermount3`) `$XDG_RUNTIME_DIR/rescue/mounts`, or `rescue-mounts-UID` in the temporary
/// directory, private to the user.
fn state_dir() -> PathBuf {
    let uid = crate::mount::euid();
    if uid == 0 {
        return PathBuf::from(STATE_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(run) if run.is_dir() => run.join("rescue/mounts"),
        _ => std::env::temp_dir().join(format!("rescue-mounts-{uid}")),
    }
}

/// Creates the state directory (mode 0700 for a user other than root) and checks that it is this
/// user's own directory, not a link or someone else's directory in a shared temporary directory.
fn create_state_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = state_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let meta = fs::symlink_metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let uid = crate::mount::euid();
    if uid != 0 && (!meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0) {
        bail!(
            "{} is not a directory private to user {uid}; remove it or set XDG_RUNTIME_DIR",
            dir.display()
        );
    }
    Ok(dir)
}

fn state_file(mp: &Path, ext: &str) -> PathBuf {
    state_dir().join(format!("{}.{ext}", state_name(mp)))
}

/// The mount point, canonical: an existing empty directory, or created (one level, like `mkdir`: the
/// rescue system's prompt has no `mkdir`).
fn mountpoint_dir(p: &Path) -> anyhow::Result<PathBuf> {
    if !p.exists() {
        fs::create_dir(p).with_context(|| format!("creating mount point {}", p.display()))?;
    }
    let c = p
        .canonicalize()
        .ok()
        .filter(|c| c.is_dir())
        .with_context(|| format!("mount point {} is not a directory", p.display()))?;
    if crate::mount::is_ours(&c) {
        bail!(
            "{} is already a `rescue mount` mount point (`rescue umount {}` first)",
            c.display(),
            c.display()
        );
    }
    if fs::read_dir(&c).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "mount point {} is not empty; mounting would hide what is in it",
            c.display()
        );
    }
    Ok(c)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn log_event(e: &MountEvent) {
    match e {
        MountEvent::WindowVerified { index, offset } => {
            super::esayln!("{} window {index} at offset {offset}: verified", now());
        }
        MountEvent::WindowMismatch {
            index,
            offset,
            length,
            expected,
            actual,
        } => eprint!(
            "{}",
            mismatch_text(
                &now(),
                (*index, *offset, *length),
                expected,
                actual,
                super::columns()
            )
        ),
        MountEvent::ReadFailed {
            offset,
            length,
            error,
        } => super::esayln!(
            "{} read of {length} bytes at offset {offset} failed (EIO): {error}",
            now()
        ),
    }
}

/// A window that failed its hash, every line at most `width` characters: the event (the window named
/// as people and scripts look for it), then both digests, each whole on an 80-column console.
fn mismatch_text(
    at: &str,
    (index, offset, length): (usize, u64, u64),
    expected: &str,
    actual: &str,
    width: usize,
) -> String {
    let mut text = super::wrap_text(
        &format!(
            "{at} window {index} at offset {offset} ({length} bytes) DOES NOT MATCH the manifest's \
             sha256; reads of it fail with EIO"
        ),
        width,
    );
    for l in super::table::labelled("  expected ", expected, width)
        .into_iter()
        .chain(super::table::labelled("  found    ", actual, width))
    {
        text.push_str(&l);
        text.push('\n');
    }
    text
}

/// `rescue mount`.
pub fn run_mount(args: &MountArgs) -> anyhow::Result<u8> {
    if args.foreground {
        return serve(args);
    }
    let mp = mountpoint_dir(&args.mountpoint)?;
    create_state_dir()?;
    let log_path = state_file(&mp, "log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding this program to start the server")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg("--foreground")
        .arg(&args.source)
        .arg(&mp);
    if args.verify_windows {
        cmd.arg("--verify-windows");
    }
    if let Some(t) = args.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    let r = &args.remote;
    for (flag, value) in [
        ("--endpoint", r.endpoint.as_ref().map(|s| s.as_str().into())),
        ("--region", r.region.as_ref().map(|s| s.as_str().into())),
        (
            "--credentials",
            r.credentials.as_ref().map(|p| p.as_os_str().to_owned()),
        ),
        ("--ca", r.ca.as_ref().map(|p| p.as_os_str().to_owned())),
    ] {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    }
    if r.insecure {
        cmd.arg("--insecure");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // Out of the terminal's foreground group: Ctrl-C at the prompt does not reach the server.
        .process_group(0);
    let mut child = cmd.spawn().context("starting the mount server")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if !line.starts_with("mounted ") {
        let status = child.wait().context("waiting for the mount server")?;
        let mut text = String::new();
        let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
        let text = text.trim();
        let text = text.strip_prefix("error: ").unwrap_or(text);
        bail!(
            "the mount server stopped ({status}): {}",
            if text.is_empty() { "no message" } else { text }
        );
    }
    super::say(&line);
    super::sayln!(
        "served in the background by process {} (log: {}); `rescue umount {}` unmounts",
        child.id(),
        log_path.display(),
        mp.display()
    );
    Ok(EXIT_OK)
}

/// Unmounts on SIGINT/SIGTERM/SIGHUP while the server runs; dropping it restores the signal mask.
struct SignalUnmount {
    thread: Option<std::thread::JoinHandle<()>>,
    old: SigSet,
}

impl SignalUnmount {
    fn start(mp: PathBuf) -> anyhow::Result<Self> {
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGUSR1,
        ] {
            set.add(s);
        }
        // Blocked here, the serving threads started later inherit the mask and only this thread sees them.
        let old = set
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .context("blocking signals")?;
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                // SIGUSR1 is the server itself saying it is done.
                if let Ok(sig) = set.wait()
                    && sig != Signal::SIGUSR1
                {
                    super::esayln!("{} {sig}: unmounting {}", now(), mp.display());
                    let r = match crate::mount::unmount(&mp, false) {
                        Err(MountError::Busy { .. }) => {
                            super::esayln!("{} in use: detaching it lazily", now());
                            crate::mount::unmount(&mp, true)
                        }
                        r => r,
                    };
                    if let Err(e) = r {
                        super::esayln!("{} {}", now(), crate::error_chain(&e));
                    }
                }
            })
            .context("starting the signal thread")?;
        Ok(Self {
            thread: Some(thread),
            old,
        })
    }
}

impl Drop for SignalUnmount {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                use std::os::unix::thread::JoinHandleExt;
                // SAFETY: the thread is not joined yet, so its pthread_t is valid; the signal is one it
                // waits for (blocked, in its sigwait set), so no handler runs.
                unsafe { libc::pthread_kill(t.as_pthread_t() as libc::pthread_t, libc::SIGUSR1) };
            }
            let _ = t.join();
        }
        let _ = self.old.thread_set_mask();
    }
}

/// The pid file, locked while the server runs; removed when dropped.
struct PidFile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidFile {
    fn create(mp: &Path) -> anyhow::Result<Self> {
        create_state_dir()?;
        let path = state_file(mp, "pid");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", path.display()))?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(Self { path, _lock: lock })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The server: opens the acquisition, mounts, serves until unmounted.
fn serve(args: &MountArgs) -> anyhow::Result<u8> {
    let location = if super::remote::is_s3(&args.source) {
        let url = super::remote::parse_url(&args.source)?;
        let store = Store::new(super::remote::store_config(&args.remote, &url.bucket)?)?;
        Location::S3 { store, url }
    } else {
        Location::Dir(args.source.clone())
    };
    let (manifest, stored) = stored::open(&location)?;
    let mut image = Image::new(manifest, stored)?;
    if args.verify_windows {
        image = image.verify_windows()?;
    }
    let image = image.on_event(log_event);
    let size = image.size();
    let format = image.manifest().image.format.clone();
    let windows = image.manifest().windows.len();
    let mounted = crate::mount::mount(image, &mountpoint_dir(&args.mountpoint)?)?;
    let mp = mounted.mountpoint().to_owned();
    let pid = match PidFile::create(&mp) {
        Ok(p) => Some(p),
        Err(e) => {
            super::esayln!("warning: {e:#}; `rescue umount` will not wait for this server");
            None
        }
    };
    let signals = SignalUnmount::start(mp.clone());
    if crate::system::in_rescue_system() {
        super::case::log_command(
            "mount",
            &format!("mount {} {}", location, mp.display()),
            serde_json::json!({
                "source": location.to_string(),
                "mountpoint": mp.display().to_string(),
                "verify_windows": args.verify_windows,
                "size_bytes": size,
            }),
        );
    }
    let line = format!(
        "mounted {location} on {}/image.raw ({} bytes, {format}{}), read-only",
        mp.display(),
        size,
        if args.verify_windows {
            format!(", {windows} windows verified on first read")
        } else {
            String::new()
        }
    );
    // To the background parent this is the one line that says the mount is up (it wraps it when
    // it shows it); on a terminal it is for a person.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        super::sayln!("{line}");
    } else {
        println!("{line}");
    }
    let _ = std::io::stdout().flush();
    super::esayln!(
        "{} serving {location} on {}; Ctrl-C or `rescue umount {}` unmounts",
        now(),
        mp.display(),
        mp.display()
    );
    let result = mounted.serve(args.threads.unwrap_or(DEFAULT_THREADS));
    drop(signals);
    drop(pid);
    result?;
    super::esayln!("{} {} unmounted; server exits", now(), mp.display());
    Ok(EXIT_OK)
}

/// `rescue umount`.
pub fn run_umount(args: &UmountArgs) -> anyhow::Result<u8> {
    // The pid file is opened before unmounting: the server removes it as soon as it stops serving.
    let pid_path = args
        .mountpoint
        .canonicalize()
        .ok()
        .map(|mp| state_file(&mp, "pid"));
    let pid_file = pid_path.as_ref().and_then(|p| File::open(p).ok());
    let mp = crate::mount::unmount(&args.mountpoint, args.lazy)?;
    let (Some(mut file), Some(pid_path)) = (pid_file, pid_path) else {
        super::sayln!("unmounted {}", mp.display());
        return Ok(EXIT_OK);
    };
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    let pid = pid.trim().to_owned();
    if args.lazy {
        super::sayln!(
            "detached {}; server process {pid} exits when the last user closes it",
            mp.display()
        );
        return Ok(EXIT_OK);
    }
    // The server holds an exclusive lock on its pid file until it exits: a blocking shared lock
    // returns the moment it has exited. (On a timeout the waiting thread is left to the process's end.)
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            Flock::lock(file, FlockArg::LockShared)
                .map(drop)
                .map_err(|(_, e)| e),
        );
    });
    match rx.recv_timeout(EXIT_WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context(format!("waiting on {}", pid_path.display())),
        Err(_) => bail!(
            "unmounted {}, but server process {pid} has not exited after {} s",
            mp.display(),
            EXIT_WAIT.as_secs()
        ),
    }
    let _ = fs::remove_file(&pid_path);
    super::sayln!("unmounted {}; server process {pid} exited", mp.display());
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_mismatch_fits_80_and_40_columns_with_both_digests_whole_at_80() {
        let (e, a) = ("a".repeat(64), "b".repeat(64));
        let at = "2026-12-05T21:00:00Z";
        let t = mismatch_text(at, (3, 3145728, 1048576), &e, &a, 80);
        assert!(super::super::widest(&t) <= 80, "{t}");
        assert!(
            t.starts_with(&format!(
                "{at} window 3 at offset 3145728 (1048576 bytes) DOES NOT MATCH"
            )),
            "{t}"
        );
        assert!(t.contains(&format!("  expected {e}\n")), "{t}");
        assert!(t.contains(&format!("  found    {a}\n")), "{t}");
        let t = mismatch_text(at, (3, 3145728, 1048576), &e, &a, 40);
        assert!(super::super::widest(&t) <= 40, "{t}");
        let squeezed: String = t.split_whitespace().collect();
        assert!(squeezed.contains(&e) && squeezed.contains(&a), "{t}");
    }

    #[test]
    fn state_names_are_flat_file_names() {
        assert_eq!(state_name(Path::new("/mnt/case 1")), "mnt-case_1");
        assert_eq!(state_name(Path::new("/")), "root");
        assert_eq!(state_name(Path::new("/tmp/.x/y")), "tmp-.x-y");
    }
}
