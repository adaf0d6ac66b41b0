//! PID 1 of the rescue system. In order: mount the kernel filesystems, write-block every disk before
//! anything probes it, keep write-blocking disks that appear later (uevent listener plus a periodic
//! sweep), load drivers (coldplug), start a console prompt on every active console, then supervise:
//! reap children, respawn consoles, power off or reboot on request.
//!
//! Never activates swap, never assembles md/LVM/dm, never mounts a disk, never resumes hibernation,
//! never brings a network interface up. Messages go to the kernel console through `init::console`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::system::{AUTO_ENV, PowerAction, RESCUE_SYSTEM_ENV, RUN_ENV, SHELL_ENV};
use crate::{blkro, coldplug, uevent};

mod console;

fn mount_fs(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    let _ = fs::create_dir_all(target);
    if let Err(e) = mount(Some(source), target, Some(fstype), flags, data) {
        console::warn(&format!("mounting {fstype} on {target}: {e}"));
    }
}

fn mount_kernel_filesystems() {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", nosuid_nodev_noexec, None);
    mount_fs("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, None);
    mount_fs(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    );
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=0620,ptmxmode=0666"),
    );
    mount_fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    );
    mount_fs(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    let _ = fs::create_dir_all("/run/rescue");
    let _ = fs::create_dir_all("/mnt");
}

/// efivarfs read-only: we read Secure Boot state and never write firmware variables.
fn mount_efivarfs() {
    if Path::new("/sys/firmware/efi/efivars").is_dir() {
        mount_fs(
            "efivarfs",
            "/sys/firmware/efi/efivars",
            "efivarfs",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        );
    }
}

/// Write-blocks every block device except the ones the operator unlocked; returns failures.
fn sweep() -> Vec<(String, blkro::BlkRoError)> {
    blkro::protect_all(&crate::case::unlocked_names())
}

/// Says which devices could not be write-blocked, and why (the whole cause, errno included); not the ones
/// with nothing to block yet ([`blkro::BlkRoError::nothing_to_block`]).
fn warn_unblocked(failures: Vec<(String, blkro::BlkRoError)>) {
    for (name, e) in failures.iter().filter(|(_, e)| !e.nothing_to_block()) {
        console::warn(&format!(
            "write-blocking /dev/{name}: {}",
            crate::error_chain(e)
        ));
    }
}

/// Set once the boot's drivers have settled: from then on a disk that appears was plugged in (or
/// hot-added), and init says so on the console.
static SETTLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The console line for a disk that appeared after boot: what it is, and whether the kernel now holds
/// it read-only (read back with `BLKROGET`, not assumed).
fn new_disk_message(d: &crate::devices::BlockDevice) -> String {
    let mut about = vec![d.transport.clone()];
    if let Some(serial) = &d.serial {
        about.push(format!("serial {serial}"));
    }
    about.push(crate::devices::human_size(d.size_bytes));
    let parts = d.partitions.len();
    match parts {
        0 => {}
        1 => about.push("1 partition".to_owned()),
        n => about.push(format!("{n} partitions")),
    }
    let state = if d.read_only && d.partitions.iter().all(|p| p.read_only) {
        "write-blocked"
    } else {
        "NOT write-blocked"
    };
    format!("new disk {} ({}): {state}", d.name, about.join(", "))
}

fn protect_new(name: &str, added: bool) {
    if crate::case::unlocked_names().iter().any(|n| n == name) {
        return;
    }
    let dev = PathBuf::from("/dev").join(name);
    let result = blkro::set_read_only(&dev, true);
    // A whole disk with hardware behind it (not a partition, loop, md or dm device our own commands
    // make): a responder at the console sees that the disk just plugged in is write-blocked.
    if added
        && SETTLED.load(std::sync::atomic::Ordering::Relaxed)
        && Path::new("/sys/block").join(name).join("device").exists()
    {
        // The kernel scanned the partition table before announcing the disk; their own events follow,
        // but the line below speaks for the whole disk, so they are write-blocked first.
        let unlocked = crate::case::unlocked_names();
        for p in blkro::partitions_of(name) {
            if !unlocked.contains(&p) {
                let _ = blkro::set_read_only(&PathBuf::from("/dev").join(&p), true);
            }
        }
        let d = crate::devices::describe_name(name);
        if d.read_only && d.partitions.iter().all(|p| p.read_only) {
            console::info(&new_disk_message(&d));
        } else {
            console::warn(&new_disk_message(&d));
        }
    }
    if let Err(e) = result {
        // An array `md assemble` creates is inactive until it starts, and md refuses BLKROSET (ENODEV)
        // until then: it holds no data yet, starts read-only, and is marked once running. A stopped
        // array's node goes away under us (`md stop`): nothing to block, like an unbound loop device.
        let inactive_md = name.starts_with("md")
            && matches!(&e,
                blkro::BlkRoError::SetReadOnly { source, .. }
                | blkro::BlkRoError::GetReadOnly { source, .. } if *source == nix::Error::ENODEV);
        if !inactive_md && !e.nothing_to_block() {
            console::warn(&format!(
                "write-blocking new device {}: {}",
                dev.display(),
                crate::error_chain(&e)
            ));
        }
    }
}

/// Listens for uevents: write-blocks new block devices at once, forwards modaliases to the loader.
fn spawn_uevent_thread(aliases: mpsc::Sender<String>, activity: mpsc::Sender<()>) {
    let listener = match uevent::Listener::open() {
        Ok(l) => l,
        Err(e) => {
            console::warn(&format!(
                "uevents unavailable, relying on the periodic sweep: {e}"
            ));
            return;
        }
    };
    thread::spawn(move || {
        loop {
            match listener.next() {
                Ok(Some(ev)) => {
                    if ev.action == "add" || ev.action == "change" {
                        if ev.subsystem.as_deref() == Some("block")
                            && let Some(name) = &ev.devname
                        {
                            protect_new(name, ev.action == "add");
                        }
                        if let Some(alias) = ev.modalias {
                            let _ = aliases.send(alias);
                        }
                    }
                    let _ = activity.send(());
                }
                Ok(None) => {}
                Err(_) => {
                    // Overflow: the periodic sweep and coldplug rescan cover what was missed.
                    let _ = activity.send(());
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    });
}

/// Periodic safety net in case an event was lost.
fn spawn_sweeper() {
    thread::spawn(|| {
        loop {
            thread::sleep(Duration::from_secs(1));
            for (name, e) in sweep() {
                // Devices vanish between listing and opening; only report the ones still there.
                if Path::new("/sys/class/block").join(&name).exists() && !e.nothing_to_block() {
                    console::warn(&format!(
                        "write-blocking /dev/{name}: {}",
                        crate::error_chain(&e)
                    ));
                }
            }
        }
    });
}

/// Loads drivers for everything present, then keeps loading for hotplugged devices. Returns once the
/// system has been quiet for a moment (or a time limit passes), leaving the loader running.
fn coldplug_and_settle(aliases: mpsc::Receiver<String>, activity: mpsc::Receiver<()>) {
    let dir = coldplug::modules_dir();
    let mut cp = match coldplug::Coldplug::open(&dir) {
        Ok(cp) => cp,
        Err(e) => {
            console::warn(&format!(
                "no drivers will be loaded: {}",
                crate::error_chain(&e)
            ));
            return;
        }
    };
    for _ in 0..4 {
        if cp.round() == 0 {
            break;
        }
    }
    console::info(&format!(
        "{} drivers loaded at {:.1} s; waiting for devices to settle",
        cp.report.loaded.len(),
        uptime()
    ));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let mut last_report = Instant::now();
        let mut settled = false;
        loop {
            match aliases.recv_timeout(Duration::from_millis(300)) {
                Ok(alias) => {
                    cp.load_modalias(&alias);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_secs(1)),
            }
            if !settled && done_rx.try_recv().is_ok() {
                // After settling, rescan once: catches devices whose uevents were lost.
                cp.round();
                settled = true;
            }
            if last_report.elapsed() > Duration::from_millis(500) {
                cp.refresh_unmatched();
                write_report(&cp.report);
                last_report = Instant::now();
            }
        }
    });
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match activity.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => quiet_since = Instant::now(),
            Err(_) if quiet_since.elapsed() >= Duration::from_millis(1500) => break,
            Err(_) => {}
        }
    }
    let _ = done_tx.send(());
    // Keep draining so the uevent thread never blocks.
    thread::spawn(move || while activity.recv().is_ok() {});
}

fn write_report(report: &coldplug::ColdplugReport) {
    if let Ok(json) = serde_json::to_vec(report) {
        let tmp = format!("{}.tmp", coldplug::REPORT_PATH);
        if fs::write(&tmp, json).is_ok() {
            let _ = fs::rename(tmp, coldplug::REPORT_PATH);
        }
    }
}

/// The value of `name=` on the kernel command line; a value may be double-quoted to hold spaces.
pub fn kernel_param(cmdline: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let mut rest = cmdline;
    while let Some(at) = rest.find(&prefix) {
        let starts_word = at == 0 || rest[..at].ends_with(char::is_whitespace);
        let value = &rest[at + prefix.len()..];
        if starts_word {
            return Some(match value.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or("").to_owned(),
                None => value.split_whitespace().next().unwrap_or("").to_owned(),
            });
        }
        rest = value;
    }
    None
}

/// The device behind `/dev/console`: the last `console=` on the command line (`tty0` meaning `tty1`).
pub fn primary_console(cmdline: &str) -> Option<PathBuf> {
    let last = cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("console="))
        .next_back()?;
    let name = last.split(',').next().unwrap_or(last);
    let name = if name == "tty0" { "tty1" } else { name };
    Some(PathBuf::from("/dev").join(name))
}

/// Consoles to run a prompt on: the kernel's active consoles, `tty0` meaning the first VT.
pub fn active_consoles() -> Vec<PathBuf> {
    let text = fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for name in text.split_whitespace() {
        let tty = if name == "tty0" { "tty1" } else { name };
        let path = PathBuf::from("/dev").join(tty);
        if path.exists() && !out.contains(&path) {
            out.push(path);
        }
    }
    // BMC serial-over-LAN is ttyS0 or ttyS1 depending on the vendor: offer a prompt on every serial port
    // that has a UART behind it, even when the command line named the other one.
    for port in ["ttyS0", "ttyS1"] {
        let has_uart = fs::read_to_string(format!("/sys/class/tty/{port}/type"))
            .is_ok_and(|t| t.trim() != "0");
        let path = PathBuf::from("/dev").join(port);
        if has_uart && path.exists() && !out.contains(&path) {
            out.push(path);
        }
    }
    if out.is_empty() {
        out.push(PathBuf::from("/dev/console"));
    }
    out
}

fn spawn_console(tty: &Path, auto: Option<&str>, run: Option<&str>) -> Option<Child> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/init"));
    let mut cmd = Command::new(exe);
    cmd.arg("console")
        .arg(tty)
        .env(RESCUE_SYSTEM_ENV, "1")
        .env("HOME", "/root")
        .env("PATH", "/bin:/sbin");
    if let Some(list) = auto {
        cmd.env(AUTO_ENV, list);
    }
    if let Some(file) = run {
        cmd.env(RUN_ENV, file);
    }
    // `rescue.shell=line` starts the bare prompt without the guided menu in front of it.
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(mode) = kernel_param(&cmdline, "rescue.shell") {
        cmd.env(SHELL_ENV, mode);
    }
    match cmd.spawn() {
        Ok(child) => Some(child),
        Err(e) => {
            console::warn(&format!("starting the prompt on {}: {e}", tty.display()));
            None
        }
    }
}

fn power(action: PowerAction, children: &mut BTreeMap<i32, (PathBuf, Child)>) -> ! {
    console::info(match action {
        PowerAction::PowerOff => "syncing disks and powering off",
        PowerAction::Reboot => "syncing disks and rebooting",
        PowerAction::Kexec => "syncing disks and starting the loaded installer kernel",
    });
    // Send that line before the prompts are stopped: when a prompt's session ends the kernel hangs its
    // terminal up, and a hang-up discards whatever the UART has not sent yet. A console that could not
    // send it (stalled by flow control) is not waited for a second time below.
    let consoles = console_devices();
    let stalled = drain_consoles(&consoles, DRAIN_TIMEOUT);
    for (_, (_, child)) in children.iter_mut() {
        let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline
        && children
            .values_mut()
            .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
    {
        thread::sleep(Duration::from_millis(50));
    }
    for (_, (_, child)) in children.iter_mut() {
        let _ = child.kill();
    }
    nix::unistd::sync();
    unmount_evidence();
    nix::unistd::sync();
    // The last lines on a SOL log ("syncing disks and powering off", warnings) must leave the UART
    // before the machine goes.
    let flowing: Vec<PathBuf> = consoles
        .into_iter()
        .filter(|tty| !stalled.iter().any(|(s, _)| s == tty))
        .collect();
    for (tty, why) in stalled
        .into_iter()
        .chain(drain_consoles(&flowing, DRAIN_TIMEOUT))
    {
        console::warn(&format!("{}: {why}", tty.display()));
    }
    let how = match action {
        PowerAction::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        PowerAction::Kexec => nix::sys::reboot::RebootMode::RB_KEXEC,
    };
    // reboot(2) returns only when it failed.
    let Err(e) = nix::sys::reboot::reboot(how);
    // A kexec that does not start (nothing loaded any more): the consoles are gone and the evidence
    // unmounted, so power off rather than reboot into whatever the firmware boots next.
    console::warn(&format!("{action:?} failed ({e}); powering off"));
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        thread::sleep(Duration::from_secs(60));
    }
}

/// How long one console may take to send what is queued for it (4 KiB at 9600 baud is about 4 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Every console a line may have been written to: the active consoles and `/dev/console`.
pub fn console_devices() -> Vec<PathBuf> {
    let mut ttys = active_consoles();
    let console = PathBuf::from("/dev/console");
    if !ttys.contains(&console) {
        ttys.push(console);
    }
    ttys
}

/// Waits until each terminal in `ttys` has sent its queued output (`tcdrain`), at most `timeout` each
/// (a serial line stalled by flow control must not stop a power-off). Called on every path that ends
/// the rescue system: power-off, reboot and kexec. Returns the terminals that could not be drained, why.
pub fn drain_consoles(ttys: &[PathBuf], timeout: Duration) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = std::io::Write::flush(&mut std::io::stderr());
    let mut failed = Vec::new();
    for tty in ttys {
        // O_NONBLOCK: a serial port without carrier must not block the open.
        let file = match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(tty)
        {
            Ok(f) => f,
            Err(e) => {
                failed.push((tty.clone(), format!("opening to drain: {e}")));
                continue;
            }
        };
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(nix::sys::termios::tcdrain(&file));
        });
        match done_rx.recv_timeout(timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push((tty.clone(), format!("draining: {e}"))),
            Err(_) => failed.push((tty.clone(), format!("output not sent after {timeout:?}"))),
        }
    }
    failed
}

/// Unmounts every filesystem under /mnt (evidence destinations), innermost first.
fn unmount_evidence() {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<String> = blkro::parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.target)
        .filter(|t| t.starts_with("/mnt/"))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Err(e) = nix::mount::umount(t.as_str()) {
            console::warn(&format!("unmounting {t}: {e}"));
        }
    }
}

/// PID 1 main: never returns; a panic in setup is reported and the system still reaches the prompt.
pub fn run_pid1() -> ! {
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        signals.add(s);
    }
    // Block before any thread exists so every thread inherits the mask and only sigwait sees them.
    let _ = signals.thread_block();
    if let Err(panic) = std::panic::catch_unwind(setup) {
        console::warn(&format!("init setup failed: {panic:?}"));
    }
    let mut children: BTreeMap<i32, (PathBuf, Child)> = BTreeMap::new();
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let auto = kernel_param(&cmdline, "rescue.auto");
    // `rescue.run=PATH`: a command file on the boot medium, run like rescue.auto.
    let run = kernel_param(&cmdline, "rescue.run");
    let primary = primary_console(&cmdline);
    for tty in active_consoles() {
        let runs_auto =
            (auto.is_some() || run.is_some()) && primary.as_deref().is_none_or(|p| p == tty);
        if let Some(child) = spawn_console(
            &tty,
            auto.as_deref().filter(|_| runs_auto),
            run.as_deref().filter(|_| runs_auto),
        ) {
            children.insert(child.id() as i32, (tty, child));
        }
    }
    loop {
        let Ok(sig) = signals.wait() else { continue };
        match sig {
            Signal::SIGCHLD => reap(&mut children),
            Signal::SIGUSR2 | Signal::SIGPWR | Signal::SIGUSR1 => {
                power(PowerAction::PowerOff, &mut children)
            }
            Signal::SIGTERM => power(PowerAction::Reboot, &mut children),
            Signal::SIGHUP => power(PowerAction::Kexec, &mut children),
            Signal::SIGINT => {
                console::info("Ctrl-Alt-Del ignored: type 'poweroff' or 'reboot' at the prompt")
            }
            _ => {}
        }
    }
}

fn reap(children: &mut BTreeMap<i32, (PathBuf, Child)>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                if let Some((tty, _)) = children.remove(&pid.as_raw()) {
                    // A console that keeps dying must not spin: wait a moment before respawning.
                    thread::sleep(Duration::from_secs(1));
                    if let Some(child) = spawn_console(&tty, None, None) {
                        children.insert(child.id() as i32, (tty, child));
                    }
                }
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn setup() {
    mount_kernel_filesystems();
    // Write-block before anything else looks at a disk: the kernel may already have found some.
    warn_unblocked(sweep());
    let (alias_tx, alias_rx) = mpsc::channel();
    let (activity_tx, activity_rx) = mpsc::channel();
    spawn_uevent_thread(alias_tx, activity_tx);
    spawn_sweeper();
    let _ = nix::unistd::sethostname("rescue");
    // Ctrl-Alt-Del must not reboot a machine mid-acquisition: the kernel sends SIGINT to init instead.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    mount_efivarfs();
    console::info(&format!(
        "every disk write-blocked at {:.1} s; loading drivers",
        uptime()
    ));
    coldplug_and_settle(alias_rx, activity_rx);
    warn_unblocked(sweep());
    console::info(&format!("drivers settled at {:.1} s", uptime()));
    SETTLED.store(true, std::sync::atomic::Ordering::Relaxed);
    // Self-check of the boot medium: the file hashes before the consoles start, so the banner has
    // them; the whole-medium hash continues in the background.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        crate::selfcheck::run_and_store_then(move || {
            let _ = tx.send(());
        })
    });
    let _ = rx.recv_timeout(Duration::from_secs(60));
}

/// Seconds since the kernel started, for boot timing messages.
fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_disk_is_named_with_its_serial_size_and_read_back_state() {
        let mut d = crate::devices::BlockDevice {
            name: "sdb".into(),
            path: "/dev/sdb".into(),
            size_bytes: 2_000_398_934_016,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            model: Some("WDC WD20EFRX".into()),
            serial: Some("WD-WCC4M0123456".into()),
            wwn: None,
            transport: "usb".into(),
            removable: false,
            read_only: true,
            partitions: Vec::new(),
        };
        assert_eq!(
            new_disk_message(&d),
            "new disk sdb (usb, serial WD-WCC4M0123456, 1.8 TiB): write-blocked"
        );
        let part = |n: u32, ro: bool| crate::devices::Partition {
            name: format!("sdb{n}"),
            path: format!("/dev/sdb{n}"),
            number: Some(n),
            start_bytes: 1 << 20,
            size_bytes: 1 << 30,
            read_only: ro,
        };
        d.partitions = vec![part(1, true), part(2, true)];
        assert_eq!(
            new_disk_message(&d),
            "new disk sdb (usb, serial WD-WCC4M0123456, 1.8 TiB, 2 partitions): write-blocked"
        );
        // One writable partition is enough to say the disk is not write-blocked.
        d.partitions = vec![part(1, true), part(2, false)];
        d.serial = None;
        assert_eq!(
            new_disk_message(&d),
            "new disk sdb (usb, 1.8 TiB, 2 partitions): NOT write-blocked"
        );
        d.partitions.clear();
        d.read_only = false;
        assert_eq!(
            new_disk_message(&d),
            "new disk sdb (usb, 1.8 TiB): NOT write-blocked"
        );
    }

    #[test]
    fn kernel_params_are_found_with_and_without_quotes() {
        let cmdline = "console=tty0 console=ttyS0,115200n8 quiet rescue.auto=\"devices --json;selftest write-block\" x.rescue.auto=no";
        assert_eq!(
            kernel_param(cmdline, "rescue.auto").as_deref(),
            Some("devices --json;selftest write-block")
        );
        assert_eq!(
            kernel_param("a rescue.auto=status b", "rescue.auto").as_deref(),
            Some("status")
        );
        assert_eq!(kernel_param("x.rescue.auto=no", "rescue.auto"), None);
        assert_eq!(primary_console(cmdline), Some(PathBuf::from("/dev/ttyS0")));
        assert_eq!(
            primary_console("console=tty0"),
            Some(PathBuf::from("/dev/tty1"))
        );
        assert_eq!(primary_console("quiet"), None);
    }

    #[test]
    fn draining_waits_for_terminals_and_reports_what_it_could_not_drain() {
        use std::io::Read;
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
        ))
        .unwrap();
        // Queued output on the terminal: the drain returns once the other end has read it.
        fs::OpenOptions::new()
            .write(true)
            .open(&slave)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, b"syncing disks and powering off\r\n")
            })
            .unwrap();
        let mut master = fs::File::from(pty.master);
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 64];
            let n = master.read(&mut buf).unwrap();
            // The master stays open until the drain is done: a closed master hangs the terminal up.
            (buf[..n].to_vec(), master)
        });
        let failed = drain_consoles(
            &[slave.clone(), PathBuf::from("/nonexistent/ttyS9")],
            Duration::from_secs(20),
        );
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, PathBuf::from("/nonexistent/ttyS9"));
        assert!(failed[0].1.contains("opening to drain"), "{failed:?}");
        assert!(
            String::from_utf8_lossy(&reader.join().unwrap().0).contains("powering off"),
            "the line reached the other end"
        );
    }
}
