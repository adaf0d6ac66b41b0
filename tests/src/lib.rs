//! QEMU harness for end-to-end scenarios: a builder (boot medium, firmware, disks with their controller
//! and sector size, timeout) → a running VM with its serial console on a pipe → `expect` / `run` at the
//! `rescue> ` prompt → exit. Every wait has a timeout; `Drop` kills QEMU; every failure carries the serial
//! log and the exact QEMU command line. Waits are on output, never on a timer: the serial consoles
//! (ttyS0, and ttyS1 through a socket), QMP events (`expect_event`, from a monitor QEMU connects to as
//! it starts) and init's console lines (`expect_new_disk`). A boot through GRUB gets
//! [`GRUB_TEST_ARGS`] typed into GRUB's editor by `wait_prompt`.
//!
//! Gating: scenarios run only when `RESCUE_ARTIFACTS` names a build directory (`cargo xtask test` sets it)
//! and each one that runs leaves a marker in `RESCUE_TEST_MARKERS`, so the runner can prove nothing was
//! skipped.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod fixtures;
pub mod live;
pub mod storage;

/// The prompt printed by the rescue system's line mode.
pub const PROMPT: &str = "rescue> ";

/// Shell functions for a guest script (busybox sh, with a `fail` function defined before): waits on
/// the kernel's uevents instead of polling for a device node. `uevents_start` runs busybox's netlink
/// listener (`uevent`), which writes one `ACTION DEVNAME` line per event into a fifo read on fd 3, and
/// returns once an event it caused itself (`change null`, caused again after each second without it:
/// the listener does not say when its socket is bound) came back through it, so no later event can be
/// missed; `uevent_wait PATTERN` reads events until one matches the shell pattern (failing after
/// 120 s without any event); `uevents_stop` ends the listener. The kernel creates a device node before
/// it sends the device's `add` event.
pub const GUEST_UEVENTS_SH: &str = r#"uevents_start() {
  mkfifo /tmp/uevents || fail "mkfifo /tmp/uevents"
  uevent sh -c 'echo "$ACTION $DEVNAME"' >/tmp/uevents &
  UEVENT_PID=$!
  exec 3</tmp/uevents
  # The listener binds its socket a moment after it starts and says nothing when it has: cause an
  # event until one comes back through it, each wait ending with an event or after a second.
  n=0
  until echo change >/sys/class/mem/null/uevent && read -r -t 1 ev <&3 && [ "$ev" = "change null" ]; do
    n=$((n+1)); [ $n -gt 120 ] && fail "the uevent listener heard nothing"
  done
}
uevent_wait() {
  while read -r -t 120 ev <&3; do case "$ev" in $1) return 0;; esac; done
  return 1
}
uevents_stop() {
  kill $UEVENT_PID
  exec 3<&-
  rm -f /tmp/uevents
}
"#;

/// Firmware to boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default BIOS (SeaBIOS).
    SeaBios,
    /// OVMF without Secure Boot.
    Ovmf,
    /// OVMF with Secure Boot enforced and Microsoft's keys enrolled (`OVMF_CODE_4M.secboot.fd` with a
    /// copy of `OVMF_VARS_4M.ms.fd`; needs SMM).
    OvmfSecureBoot,
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    Ahci,
    Nvme,
    Usb,
}

impl Bus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "virtio" => Some(Bus::Virtio),
            "ahci" | "sata" => Some(Bus::Ahci),
            "nvme" => Some(Bus::Nvme),
            "usb" => Some(Bus::Usb),
            _ => None,
        }
    }

    /// The `transport` value `devices --json` reports for this bus.
    pub fn transport(self) -> &'static str {
        match self {
            Bus::Virtio => "virtio",
            Bus::Ahci => "sata",
            Bus::Nvme => "nvme",
            Bus::Usb => "usb",
        }
    }
}

/// A disk image attached to the VM.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub bus: Bus,
    pub sector: Option<u32>,
    pub serial: Option<String>,
    pub bootindex: Option<u32>,
    /// 512-byte sectors whose reads fail with EIO (QEMU's blkdebug driver).
    pub fail_reads: Vec<u64>,
}

impl Disk {
    pub fn new(path: impl Into<PathBuf>, bus: Bus) -> Self {
        Disk {
            path: path.into(),
            bus,
            sector: None,
            serial: None,
            bootindex: None,
            fail_reads: Vec::new(),
        }
    }

    /// Parses the `cargo xtask qemu --disk FILE[,if=BUS][,sector=N]` syntax.
    pub fn parse_spec(spec: &str) -> anyhow::Result<Self> {
        let mut parts = spec.split(',');
        let path = parts
            .next()
            .filter(|p| !p.is_empty())
            .context("--disk needs a file")?;
        let mut disk = Disk::new(path, Bus::Virtio);
        for opt in parts {
            match opt.split_once('=') {
                Some(("if", v)) => {
                    disk.bus = Bus::parse(v)
                        .with_context(|| format!("unknown bus {v:?} (virtio, ahci, nvme, usb)"))?
                }
                Some(("sector", v)) => {
                    disk.sector = Some(
                        v.parse()
                            .with_context(|| format!("bad sector size {v:?}"))?,
                    )
                }
                Some(("serial", v)) => disk.serial = Some(v.to_owned()),
                _ => bail!("unknown disk option {opt:?} in {spec:?}"),
            }
        }
        Ok(disk)
    }
}

/// What the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `-kernel/-initrd/-append`.
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// A disk image as a removable USB stick (firmware boots it).
    UsbImage(PathBuf),
    /// A boot medium on a given drive type (firmware boots it).
    Medium(PathBuf, Drive),
}

/// How a boot medium is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// A SATA (AHCI) CD-ROM drive, the way BMC virtual media often shows up.
    SataCd,
    /// A CD-ROM drive behind USB mass storage (BMC "virtual CD" on USB).
    UsbCd,
    /// A removable USB disk.
    UsbDisk,
    /// A fixed SATA disk (e.g. the ISO written to a disk).
    SataDisk,
}

/// Builder for one VM.
#[derive(Debug, Clone)]
pub struct QemuBuilder {
    pub boot: Boot,
    pub firmware: Firmware,
    pub disks: Vec<Disk>,
    pub memory_mib: u32,
    pub workdir: PathBuf,
    pub extra: Vec<String>,
    /// Serial and monitor multiplexed on stdio for a person (Ctrl-A X quits) instead of a test pipe.
    pub interactive: bool,
    /// For a boot through GRUB (a medium or the USB image): [`Qemu::wait_prompt`] first boots the
    /// default entry with [`GRUB_TEST_ARGS`] appended. Off where the untouched menu's own timeout must
    /// boot (a benchmark of the boot as a user sees it).
    pub grub_test_args: bool,
    /// A second serial port (ttyS1) whose output [`Qemu::expect_ttys1`] waits on.
    pub ttys1: bool,
}

/// Artifacts of `cargo xtask build`.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
}

impl Artifacts {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio.zst")
    }
    pub fn usb_image(&self) -> PathBuf {
        self.dir.join("rescue-usb.img")
    }
    pub fn efi(&self) -> PathBuf {
        self.dir.join("rescue.efi")
    }
    pub fn iso(&self) -> PathBuf {
        self.dir.join("rescue.iso")
    }
}

/// Command line for direct boots in tests: serial only, and a kernel panic ends QEMU (`-no-reboot`).
/// `no_timer_check`: under TCG on a loaded host the kernel's IO-APIC timer check can fail and panic
/// before init runs ("IO-APIC + timer doesn't work"); the check proves nothing about our code.
/// `cryptomgr.notests`: the kernel's crypto self-tests (Debian builds them in) once hung a boot under
/// TCG `-cpu max` before init ran (soft lockup in `cryptomgr_test` for 365 s, 2026-12-06); they test
/// the kernel's ciphers on an emulated CPU, not our code. See docs/booting.md.
pub const TEST_CMDLINE: &str = "console=ttyS0,115200n8 quiet noresume raid=noautodetect panic=-1 \
     no_timer_check cryptomgr.notests";

/// What the harness appends to the GRUB entry it boots from a medium, through GRUB's entry editor
/// ([`Qemu::grub_edit_and_boot`]): the same `no_timer_check` and `cryptomgr.notests` as
/// [`TEST_CMDLINE`]. The product's entries carry neither, on purpose. On real hardware the kernel's
/// timer check is what finds a board whose MP table lies about the timer IRQ and routes it another
/// way, and on KVM, VMware and Hyper-V the kernel skips the check by itself (it sets `no_timer_check`
/// when it recognises the hypervisor). Only TCG, an emulator the kernel cannot recognise, starves the
/// check's ~10-tick window on a loaded host and panics ("IO-APIC + timer doesn't work"). The crypto
/// self-tests are quick on real CPUs and stop a broken cipher driver before the kernel uses it (it
/// checks module signatures with them); only under TCG did one hang. docs/booting.md says the same.
pub const GRUB_TEST_ARGS: &str = "no_timer_check cryptomgr.notests";

/// Returns the artifacts when gated suites are enabled, and records that this test ran. Without the
/// gate the test reports itself skipped and returns `None`.
pub fn gate(test_name: &str) -> Option<Artifacts> {
    let Some(dir) = std::env::var_os("RESCUE_ARTIFACTS") else {
        eprintln!(
            "skipped {test_name}: set RESCUE_ARTIFACTS to a build directory (cargo xtask test does)"
        );
        return None;
    };
    if let Some(markers) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&markers);
        let _ = std::fs::write(Path::new(&markers).join(test_name), b"ran\n");
    }
    Some(Artifacts {
        dir: PathBuf::from(dir),
    })
}

impl QemuBuilder {
    pub fn new(boot: Boot, workdir: &Path) -> Self {
        QemuBuilder {
            boot,
            firmware: Firmware::SeaBios,
            disks: Vec::new(),
            memory_mib: 1024,
            workdir: workdir.to_owned(),
            extra: Vec::new(),
            interactive: false,
            grub_test_args: true,
            ttys1: false,
        }
    }

    pub fn direct(art: &Artifacts, workdir: &Path) -> Self {
        Self::new(
            Boot::Direct {
                kernel: art.vmlinuz(),
                initrd: art.initramfs(),
                cmdline: TEST_CMDLINE.to_owned(),
            },
            workdir,
        )
    }

    pub fn firmware(mut self, f: Firmware) -> Self {
        self.firmware = f;
        self
    }

    pub fn disk(mut self, d: Disk) -> Self {
        self.disks.push(d);
        self
    }

    /// A virtio NIC on QEMU's user-mode network in `restrict=on` mode (the guest reaches nothing
    /// outside), with the given MAC and optional `guestfwd` rules such as
    /// `tcp:10.0.2.100:9000-cmd:socat STDIO TCP:127.0.0.1:PORT`. QEMU's built-in DHCP still answers.
    pub fn user_nic(mut self, id: &str, mac: &str, guestfwd: &[String]) -> Self {
        let mut netdev = format!("user,id={id},restrict=on");
        for f in guestfwd {
            // QEMU option syntax: a literal comma is doubled.
            netdev.push_str(&format!(",guestfwd={}", f.replace(',', ",,")));
        }
        self.extra.extend([
            "-netdev".to_owned(),
            netdev,
            "-device".to_owned(),
            format!("virtio-net-pci,netdev={id},mac={mac}"),
        ]);
        self
    }

    /// A virtio NIC on an empty QEMU hub: link up, but nobody answers (no DHCP server).
    pub fn isolated_nic(mut self, id: &str, mac: &str) -> Self {
        self.extra.extend([
            "-netdev".to_owned(),
            format!("hubport,id={id},hubid=7"),
            "-device".to_owned(),
            format!("virtio-net-pci,netdev={id},mac={mac}"),
        ]);
        self
    }

    /// Where QEMU listens for QMP commands.
    pub fn qmp_socket(&self) -> PathBuf {
        self.workdir.join("qmp.sock")
    }

    /// The full QEMU command line.
    pub fn command(&self) -> anyhow::Result<Command> {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2",
        ]);
        c.args(["-m", &self.memory_mib.to_string()]);
        if self.interactive {
            c.args([
                "-nographic",
                "-serial",
                "mon:stdio",
                "-no-reboot",
                "-nodefaults",
            ]);
        } else {
            c.args([
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-nodefaults",
            ]);
        }
        c.args(["-device", "qemu-xhci,id=xhci"]);
        // QMP for hotplugging devices during a scenario.
        c.arg("-qmp").arg(format!(
            "unix:{},server=on,wait=off",
            self.qmp_socket().display()
        ));
        let ovmf = match self.firmware {
            Firmware::SeaBios => None,
            Firmware::Ovmf => Some(("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
            Firmware::OvmfSecureBoot => {
                // The Secure Boot build keeps its variables in SMM-protected flash.
                c.args([
                    "-machine",
                    "smm=on",
                    "-global",
                    "driver=cfi.pflash01,property=secure,value=on",
                ]);
                Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"))
            }
        };
        if let Some((code, vars_template)) = ovmf {
            let vars = self.workdir.join("OVMF_VARS.fd");
            std::fs::copy(Path::new("/usr/share/OVMF").join(vars_template), &vars)
                .with_context(|| format!("copying {vars_template} (package ovmf)"))?;
            c.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/{code}"
            ));
            c.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        match &self.boot {
            Boot::Direct {
                kernel,
                initrd,
                cmdline,
            } => {
                c.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(cmdline);
            }
            Boot::UsbImage(img) => {
                c.arg("-drive").arg(format!(
                    "if=none,id=bootdisk,format=raw,file={}",
                    img.display()
                ));
                c.args([
                    "-device",
                    "usb-storage,bus=xhci.0,drive=bootdisk,removable=on,bootindex=0",
                ]);
            }
            Boot::Medium(img, drive) => {
                // IDE disks cannot be read-only in QEMU: tests give disks a copy and compare hashes.
                let media = match drive {
                    Drive::SataCd | Drive::UsbCd => "media=cdrom,readonly=on",
                    Drive::UsbDisk | Drive::SataDisk => "media=disk",
                };
                c.arg("-drive").arg(format!(
                    "if=none,id=bootmedium,format=raw,{media},file={}",
                    img.display()
                ));
                match drive {
                    // ide.5: the last AHCI port, away from the test disks (which count from ide.0).
                    Drive::SataCd => {
                        c.args(["-device", "ide-cd,drive=bootmedium,bus=ide.5,bootindex=0"])
                    }
                    Drive::SataDisk => c.args([
                        "-device",
                        "ide-hd,drive=bootmedium,bus=ide.5,serial=BOOTDISK,bootindex=0",
                    ]),
                    Drive::UsbDisk => c.args([
                        "-device",
                        "usb-storage,bus=xhci.0,drive=bootmedium,removable=on,bootindex=0",
                    ]),
                    Drive::UsbCd => c.args([
                        "-device",
                        "usb-bot,bus=xhci.0,id=usbcd",
                        "-device",
                        "scsi-cd,bus=usbcd.0,drive=bootmedium,bootindex=0",
                    ]),
                };
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            let id = format!("disk{i}");
            let file = if d.fail_reads.is_empty() {
                d.path.display().to_string()
            } else {
                let conf = self.workdir.join(format!("blkdebug{i}.conf"));
                let rules: String = d
                    .fail_reads
                    .iter()
                    .map(|s| format!("[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{s}\"\nonce = \"off\"\n\n"))
                    .collect();
                std::fs::write(&conf, rules)
                    .with_context(|| format!("writing {}", conf.display()))?;
                format!("blkdebug:{}:{}", conf.display(), d.path.display())
            };
            c.arg("-drive").arg(format!(
                "if=none,id={id},format=raw,cache=unsafe,file={file}"
            ));
            let mut dev = match d.bus {
                Bus::Virtio => format!("virtio-blk-pci,drive={id}"),
                Bus::Ahci => format!("ide-hd,drive={id},bus=ide.{}", i % 6),
                Bus::Nvme => format!("nvme,drive={id}"),
                Bus::Usb => format!("usb-storage,bus=xhci.0,drive={id}"),
            };
            let serial = d
                .serial
                .clone()
                .unwrap_or_else(|| format!("RESCUE-TEST-{i}"));
            dev.push_str(&format!(",serial={serial}"));
            if let Some(s) = d.sector {
                dev.push_str(&format!(",logical_block_size={s},physical_block_size={s}"));
            }
            if let Some(b) = d.bootindex {
                dev.push_str(&format!(",bootindex={b}"));
            }
            c.arg("-device").arg(dev);
        }
        c.args(&self.extra);
        Ok(c)
    }

    pub fn spawn(&self) -> anyhow::Result<Qemu> {
        let mut cmd = self.command()?;
        // A second QMP monitor, for events only: QEMU connects to our socket as it starts, so the
        // session is in command mode (and receives every event) before the guest runs.
        let events_path = self.workdir.join("qmp-events.sock");
        let _ = std::fs::remove_file(&events_path);
        let events_listener = UnixListener::bind(&events_path)
            .with_context(|| format!("listening on {}", events_path.display()))?;
        cmd.arg("-chardev")
            .arg(format!(
                "socket,id=qmpevents,path={},server=off",
                events_path.display()
            ))
            .args(["-mon", "chardev=qmpevents,mode=control"]);
        // ttyS1 on a socket QEMU connects to as it starts, read like ttyS0.
        let ttys1_listener = if self.ttys1 {
            let path = self.workdir.join("ttyS1.sock");
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)
                .with_context(|| format!("listening on {}", path.display()))?;
            cmd.arg("-chardev")
                .arg(format!(
                    "socket,id=ttys1,path={},server=off",
                    path.display()
                ))
                .args(["-serial", "chardev:ttys1"]);
            Some(listener)
        } else {
            None
        };
        let cmdline = display(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmdline}"))?;
        let pidfd = pidfd_open(&child);
        let stdin = child.stdin.take().context("qemu stdin")?;
        let log = feed(Vec::new(), 0);
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            pump(stream, &log);
        }
        let mut vm = Qemu {
            child,
            pidfd: None,
            stdin: Some(stdin),
            log,
            mark: 0,
            cmdline,
            qmp: self.qmp_socket(),
            events: feed(Vec::new(), 0),
            event_mark: 0,
            ttys1: feed(Vec::new(), 0),
            ttys1_mark: 0,
            grub_pending: self.grub_test_args
                && matches!(self.boot, Boot::Medium(..) | Boot::UsbImage(_)),
        };
        vm.pidfd = Some(pidfd.map_err(|e| vm.failure(&format!("pidfd_open of qemu: {e}")))?);
        // QEMU connects its sockets before it starts the guest; only a QEMU that exits or hangs at
        // start-up fails here.
        let deadline = Instant::now() + Duration::from_secs(120);
        let events = vm.accept(&events_listener, "its QMP event monitor", deadline)?;
        let reader = qmp_negotiate(events, deadline)
            .map_err(|e| vm.failure(&format!("QMP event monitor: {e:#}")))?;
        qmp_events(reader, &vm.events);
        if let Some(listener) = ttys1_listener {
            let stream = vm.accept(&listener, "ttyS1", deadline)?;
            pump(Box::new(stream), &vm.ttys1);
        }
        Ok(vm)
    }
}

/// What arrives from QEMU (a serial port's bytes, QMP events) and how many of its sources are still
/// open: a wait on it ends when what it waits for arrived, or when no source is left to send it.
struct Feed<T> {
    items: T,
    open: usize,
}

type Shared<T> = Arc<(Mutex<Feed<T>>, Condvar)>;

fn feed<T>(items: T, open: usize) -> Shared<T> {
    Arc::new((Mutex::new(Feed { items, open }), Condvar::new()))
}

/// `pidfd_open(2)` of QEMU's process: readable once it has exited, whatever reaps it.
fn pidfd_open(child: &Child) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Blocks until one of `fds` is readable or `timeout` passed; returns which are readable.
fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> std::io::Result<Vec<bool>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms =
            libc::c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `polls` is a valid array of `polls.len()` pollfd structs for the whole call.
        let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(polls.iter().map(|p| p.revents != 0).collect());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads QEMU's event monitor greeting and enters command mode; fails on a monitor that says
/// nothing until `deadline`.
fn qmp_negotiate(
    stream: UnixStream,
    deadline: Instant,
) -> anyhow::Result<std::io::BufReader<UnixStream>> {
    use std::io::BufRead;
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    writeln!(
        writer,
        "{}",
        serde_json::json!({"execute": "qmp_capabilities"})
    )?;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("QMP closed the connection during negotiation");
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if v.get("return").is_some() {
            reader.get_ref().set_read_timeout(None)?;
            return Ok(reader);
        }
        if let Some(err) = v.get("error") {
            bail!("qmp_capabilities failed: {err}");
        }
    }
}

/// Keeps every event QEMU sends on `reader` (a thread), until QEMU closes the monitor.
fn qmp_events(mut reader: std::io::BufReader<UnixStream>, events: &Shared<Vec<serde_json::Value>>) {
    use std::io::BufRead;
    let events = Arc::clone(events);
    if let Ok(mut f) = events.0.lock() {
        f.open += 1;
    }
    thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader.read_line(&mut line);
            let Ok(mut f) = events.0.lock() else { return };
            match read {
                Ok(0) | Err(_) => {
                    f.open -= 1;
                    events.1.notify_all();
                    return;
                }
                Ok(_) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v.get("event").is_some()
                    {
                        f.items.push(v);
                    }
                    events.1.notify_all();
                }
            }
        }
    });
}

/// Appends what `stream` delivers to `log` (a thread), until it ends.
fn pump(mut stream: Box<dyn Read + Send>, log: &Shared<Vec<u8>>) {
    let log = Arc::clone(log);
    if let Ok(mut f) = log.0.lock() {
        f.open += 1;
    }
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let read = stream.read(&mut buf);
            let Ok(mut f) = log.0.lock() else { return };
            match read {
                Ok(0) | Err(_) => {
                    f.open -= 1;
                    log.1.notify_all();
                    return;
                }
                Ok(n) => {
                    f.items.extend_from_slice(&buf[..n]);
                    log.1.notify_all();
                }
            }
        }
    });
}

/// The command line as a shell would show it.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A running VM.
pub struct Qemu {
    child: Child,
    /// QEMU's process as a pidfd: readable once it has exited ([`Qemu::wait_exit`]).
    pidfd: Option<OwnedFd>,
    stdin: Option<ChildStdin>,
    /// The serial console (ttyS0) and QEMU's own stderr.
    log: Shared<Vec<u8>>,
    /// Offset in the log up to which output has been consumed by `expect`.
    mark: usize,
    pub cmdline: String,
    qmp: PathBuf,
    /// QMP events (`{"event": …, "data": …}`) in the order QEMU sent them.
    events: Shared<Vec<serde_json::Value>>,
    /// Events before this index were consumed by `expect_event`.
    event_mark: usize,
    /// GRUB's menu is still to be answered by [`Qemu::wait_prompt`] (see `grub_test_args`).
    grub_pending: bool,
    /// What ttyS1 printed (with [`QemuBuilder::ttys1`]), and how far `expect_ttys1` consumed it.
    ttys1: Shared<Vec<u8>>,
    ttys1_mark: usize,
}

impl Qemu {
    /// Runs a human-monitor command (e.g. `drive_add`, `device_add`) through QMP and returns its output.
    pub fn hmp(&self, command: &str) -> anyhow::Result<String> {
        use std::io::BufRead;
        use std::os::unix::net::UnixStream;
        let stream = UnixStream::connect(&self.qmp)
            .with_context(|| format!("connecting to QMP at {}", self.qmp.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = std::io::BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let read_reply =
            |reader: &mut std::io::BufReader<UnixStream>| -> anyhow::Result<serde_json::Value> {
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        bail!("QMP closed the connection");
                    }
                    let v: serde_json::Value = serde_json::from_str(&line)?;
                    if v.get("event").is_none() {
                        return Ok(v);
                    }
                }
            };
        read_reply(&mut reader)?; // greeting
        writeln!(
            writer,
            "{}",
            serde_json::json!({"execute": "qmp_capabilities"})
        )?;
        read_reply(&mut reader)?;
        writeln!(
            writer,
            "{}",
            serde_json::json!({"execute": "human-monitor-command", "arguments": {"command-line": command}})
        )?;
        let reply = read_reply(&mut reader)?;
        if let Some(err) = reply.get("error") {
            return Err(self.failure(&format!("QMP `{command}` failed: {err}")));
        }
        let out = reply["return"].as_str().unwrap_or_default().to_owned();
        if out.to_lowercase().contains("error") {
            return Err(self.failure(&format!("monitor `{command}` failed: {out}")));
        }
        Ok(out)
    }

    /// Everything the VM printed so far (serial console and QEMU's own stderr).
    pub fn log(&self) -> String {
        self.log
            .0
            .lock()
            .map(|l| String::from_utf8_lossy(&l.items).into_owned())
            .unwrap_or_default()
    }

    /// Accepts the connection QEMU makes to `listener` as it starts (before `deadline`), or fails if
    /// QEMU exits first.
    fn accept(
        &mut self,
        listener: &UnixListener,
        what: &str,
        deadline: Instant,
    ) -> anyhow::Result<UnixStream> {
        let pidfd = self.pidfd.as_ref().context("qemu pidfd")?;
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll_readable(&[listener.as_fd(), pidfd.as_fd()], left)?;
        if ready[0] {
            return Ok(listener.accept()?.0);
        }
        if ready[1] {
            let status = self.exit_text();
            return Err(self.failure(&format!("qemu exited ({status}) before connecting {what}")));
        }
        Err(self.failure(&format!("QEMU did not connect {what} within 120 s")))
    }

    /// QEMU's exit status once its output ended (it exits right after), for failure messages.
    fn exit_text(&mut self) -> String {
        if let Some(pidfd) = &self.pidfd {
            let _ = poll_readable(&[pidfd.as_fd()], Duration::from_secs(10));
        }
        match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            _ => "closed its output".to_owned(),
        }
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}\n--- qemu command line ---\n{}\n--- serial log ---\n{}\n--- end ---",
            self.cmdline,
            self.log()
        )
    }

    /// Waits until `pattern` appears after the mark; returns the text from the mark to the end of the match
    /// and moves the mark past it.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let log = Arc::clone(&self.log);
        let mut mark = self.mark;
        let found = self.expect_in(&log, &mut mark, pattern, false, timeout, "");
        self.mark = mark;
        found
    }

    /// [`Qemu::expect`] byte for byte: a space in `pattern` matches one space and nothing else (for
    /// GRUB's editor, whose redraws pad lines with spaces).
    pub fn expect_exact(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let log = Arc::clone(&self.log);
        let mut mark = self.mark;
        let found = self.expect_in(&log, &mut mark, pattern, true, timeout, "");
        self.mark = mark;
        found
    }

    /// Waits for init's console line about a disk that appeared after boot with serial `serial`
    /// (`rescue: new disk NAME (…, serial SERIAL, …): write-blocked`, wrapped or not), passing over
    /// lines about other disks; returns the disk's name. Fails when the line says NOT write-blocked.
    pub fn expect_new_disk(&mut self, serial: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        loop {
            self.expect("rescue: new disk ", left())?;
            let rest = self.expect("write-blocked", left())?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            let line = words.join(" ");
            if !line.contains(&format!("serial {serial},"))
                && !line.contains(&format!("serial {serial})"))
            {
                continue;
            }
            self.check(
                line.ends_with("): write-blocked"),
                &format!("init says the new disk {serial} is write-blocked: {line:?}"),
            )?;
            return Ok(words.first().copied().unwrap_or_default().to_owned());
        }
    }

    /// [`Qemu::expect`] on ttyS1 (see [`QemuBuilder::ttys1`]).
    pub fn expect_ttys1(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let log = Arc::clone(&self.ttys1);
        let mut mark = self.ttys1_mark;
        let found = self.expect_in(&log, &mut mark, pattern, false, timeout, " on ttyS1");
        self.ttys1_mark = mark;
        found
    }

    /// Everything ttyS1 printed so far.
    pub fn ttys1_log(&self) -> String {
        self.ttys1
            .0
            .lock()
            .map(|l| String::from_utf8_lossy(&l.items).into_owned())
            .unwrap_or_default()
    }

    fn expect_in(
        &mut self,
        log: &(Mutex<Feed<Vec<u8>>>, Condvar),
        mark: &mut usize,
        pattern: &str,
        exact: bool,
        timeout: Duration,
        port: &str,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = log;
        let mut log = lock
            .lock()
            .map_err(|_| anyhow::anyhow!("log lock poisoned"))?;
        loop {
            let hay = &log.items[*mark..];
            let found = if exact {
                hay.windows(pattern.len())
                    .position(|w| w == pattern.as_bytes())
                    .map(|at| at..at + pattern.len())
            } else {
                find(hay, pattern.as_bytes())
            };
            if let Some(found) = found {
                let end = *mark + found.end;
                let text = String::from_utf8_lossy(&log.items[*mark..end]).into_owned();
                *mark = end;
                return Ok(text);
            }
            // ttyS0 is in the failure's serial log; another port's output is shown here.
            let seen = |items: &[u8]| {
                if port.is_empty() {
                    String::new()
                } else {
                    format!("; it printed:\n{}", String::from_utf8_lossy(items))
                }
            };
            if log.open == 0 {
                let seen = seen(&log.items);
                drop(log);
                let status = self.exit_text();
                return Err(self.failure(&format!(
                    "qemu exited ({status}) while waiting for {pattern:?}{port}{seen}"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = seen(&log.items);
                drop(log);
                return Err(self.failure(&format!(
                    "timed out after {timeout:?} waiting for {pattern:?}{port}{seen}"
                )));
            }
            log = cvar
                .wait_timeout(log, deadline - now)
                .map_err(|_| anyhow::anyhow!("log lock poisoned"))?
                .0;
        }
    }

    /// Waits until QEMU sends the QMP event `name` whose `data` satisfies `matches` (after the last
    /// event this returned), e.g. `DEVICE_DELETED` for a device id once the guest let go of it; returns
    /// its `data`.
    pub fn expect_event(
        &mut self,
        name: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let events = Arc::clone(&self.events);
        let (lock, cvar) = &*events;
        let mut list = lock
            .lock()
            .map_err(|_| anyhow::anyhow!("event lock poisoned"))?;
        loop {
            if let Some(i) = list.items[self.event_mark..]
                .iter()
                .position(|e| e["event"] == name && matches(&e["data"]))
            {
                let i = self.event_mark + i;
                self.event_mark = i + 1;
                return Ok(list.items[i]["data"].clone());
            }
            let seen = |items: &[serde_json::Value]| {
                items.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            };
            if list.open == 0 {
                let seen = seen(&list.items);
                drop(list);
                let status = self.exit_text();
                return Err(self.failure(&format!(
                    "qemu exited ({status}) while waiting for the QMP event {name}; events so far:\n{}",
                    seen.join("\n")
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = seen(&list.items);
                drop(list);
                return Err(self.failure(&format!(
                    "timed out after {timeout:?} waiting for the QMP event {name}; events so far:\n{}",
                    seen.join("\n")
                )));
            }
            list = cvar
                .wait_timeout(list, deadline - now)
                .map_err(|_| anyhow::anyhow!("event lock poisoned"))?
                .0;
        }
    }

    /// Sends bytes to the serial console as typed, e.g. `\x03` for Ctrl-C.
    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("qemu stdin closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("qemu stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\r")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the first prompt. Booting through GRUB, first boots its default entry with
    /// [`GRUB_TEST_ARGS`] once the menu counts down (see [`QemuBuilder::grub_test_args`]).
    pub fn wait_prompt(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        if self.grub_pending {
            seen = self.expect("executed automatically in", timeout)?;
            self.grub_edit_and_boot(deadline.saturating_duration_since(Instant::now()))?;
        }
        let rest = self.expect(PROMPT, deadline.saturating_duration_since(Instant::now()))?;
        Ok(seen + &rest)
    }

    /// In GRUB's menu: opens the chosen entry in GRUB's editor (`e`), appends [`GRUB_TEST_ARGS`] to
    /// its `linux` line and boots it (Ctrl-X). GRUB's editor shows `setparams 'TITLE'`, then an empty
    /// line (the newline after the entry's `{`), then the `linux` line: two lines down. Keys are
    /// single control bytes (next line, end of line), which a serial line cannot split the way it
    /// can split an arrow key's escape sequence; each is sent once the editor has drawn the entry.
    ///
    /// Every key (the moves and each character of the arguments) is sent once GRUB has finished the
    /// one before: GRUB hides the cursor while it handles a key (`ESC [?25l`) and shows it again when
    /// done (`ESC [?25h`). On a busy machine GRUB lost and doubled keys sent in a burst
    /// (`no_timeer_chck`; under SeaBIOS a lost Ctrl-E put the arguments at the start of the line).
    /// The last redraw must show the typed text right after the `linux` line's last word: the
    /// arguments landed on that line whole, not on one of their own (which GRUB would run as a
    /// command, booting the kernel without them).
    pub fn grub_edit_and_boot(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.grub_pending = false;
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        self.send_raw(b"e")?;
        self.expect("/RESCUE/VMLINUZ", left())?;
        let drawn = self.expect("/RESCUE/INITRD.IMG", left())?;
        let tail = linux_line_tail(&drawn).ok_or_else(|| {
            self.failure("GRUB's editor drew no linux line before the initrd line")
        })?;
        let typed = format!(" {GRUB_TEST_ARGS}");
        let mut last = String::new();
        for key in b"\x0e\x0e\x05".iter().chain(typed.as_bytes()) {
            self.send_raw(&[*key])?;
            self.expect_exact("\x1b[?25l", left())?;
            last = self.expect_exact("\x1b[?25h", left())?;
        }
        let want = format!("{tail}{typed}");
        if !last.contains(&want) {
            return Err(self.failure(&format!(
                "GRUB's editor does not show {want:?} on the linux line after typing it"
            )));
        }
        self.send_raw(b"\x18")?;
        self.expect("Booting a command list", left())?;
        Ok(())
    }

    /// Types a command at the prompt and returns what it printed before the next prompt (without the
    /// echoed command line).
    pub fn run(&mut self, command: &str, timeout: Duration) -> anyhow::Result<String> {
        self.send_line(command)?;
        let text = self.expect(PROMPT, timeout)?;
        let body = text.strip_suffix(PROMPT).unwrap_or(&text);
        // Drop the echo of the command itself (first line).
        let body = match body.find('\n') {
            Some(i) if body[..i].contains(command.split_whitespace().next().unwrap_or("")) => {
                &body[i + 1..]
            }
            _ => body,
        };
        Ok(body.replace('\r', ""))
    }

    /// Runs a command whose output contains one JSON line (starting with `[` or `{`) and parses it.
    pub fn run_json(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let out = self.run(command, timeout)?;
        let line = out
            .lines()
            .find(|l| l.starts_with('[') || l.starts_with('{'))
            .ok_or_else(|| self.failure(&format!("`{command}` printed no JSON:\n{out}")))?;
        serde_json::from_str(line)
            .map_err(|e| self.failure(&format!("`{command}` printed invalid JSON ({e}): {line}")))
    }

    /// Waits for QEMU to exit on its own (on its pidfd, which becomes readable when it does).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let pidfd = self.pidfd.as_ref().context("qemu pidfd")?;
        if !poll_readable(&[pidfd.as_fd()], timeout)?[0] {
            return Err(self.failure(&format!(
                "qemu still running {timeout:?} after it should have exited"
            )));
        }
        Ok(self.child.wait()?)
    }

    /// Attaches an error to the log: use in tests as `vm.check(cond, "what")?`.
    pub fn check(&self, ok: bool, what: &str) -> anyhow::Result<()> {
        if ok { Ok(()) } else { Err(self.failure(what)) }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last word of the `linux` line in GRUB's editor as `drawn` shows it up to the `initrd` line:
/// the text before the initrd line's cursor move (`ESC [ row ; col H`) and indentation.
fn linux_line_tail(drawn: &str) -> Option<String> {
    let before = &drawn[..drawn.rfind("initrd")?];
    let before = &before[..before.rfind("\x1b[")?];
    before.split_whitespace().last().map(str::to_owned)
}

/// Where `needle` first occurs in `hay`, as the range it covers. A run of spaces in `needle` matches
/// any run of whitespace in `hay` (one byte when it ends the needle): a console wraps a long line where
/// a space was, into `\r\n` and an indentation. Other bytes, `\n` included, match only themselves.
fn find(hay: &[u8], needle: &[u8]) -> Option<std::ops::Range<usize>> {
    (0..=hay.len()).find_map(|start| match_at(hay, start, needle).map(|end| start..end))
}

/// The end of `needle` matched at `hay[start..]` by the rule of [`find`].
fn match_at(hay: &[u8], start: usize, needle: &[u8]) -> Option<usize> {
    let (mut i, mut j) = (start, 0);
    while j < needle.len() {
        if needle[j] == b' ' {
            while needle.get(j) == Some(&b' ') {
                j += 1;
            }
            if !hay.get(i)?.is_ascii_whitespace() {
                return None;
            }
            i += 1;
            if j < needle.len() {
                while hay.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
            }
        } else {
            if *hay.get(i)? != needle[j] {
                return None;
            }
            i += 1;
            j += 1;
        }
    }
    Some(i)
}

/// Whether `text` (console output) says `phrase`, wherever the console wrapped it: runs of whitespace
/// on either side compare as one space.
pub fn says(text: &str, phrase: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    squeeze(text).contains(&squeeze(phrase))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates a disk image of `size` bytes with a recognisable, position-dependent pattern.
pub fn make_disk(path: &Path, size: u64, seed: u8) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut block = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        for (i, b) in block.iter_mut().enumerate() {
            let pos = off + i as u64;
            *b = (pos / 512) as u8 ^ seed ^ (pos as u8).rotate_left(3);
        }
        let n = (size - off).min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_found_where_the_console_wrapped_it() {
        let log = b"error: /dev/vdc is the rescue boot medium and\r\n       cannot be an evidence destination\r\nrescue> ";
        let r = find(log, b"medium and cannot be").unwrap();
        assert_eq!(&log[r.end - 9..r.end], b"cannot be");
        let r = find(log, b"rescue> ").unwrap();
        assert_eq!(r.end, log.len());
        assert!(find(log, b"medium andcannot").is_none());
        assert!(find(log, b"destination rescue>").is_some());
        // `\n` still means a line's end, and a trailing space only one byte.
        let r = find(b"abc def\nx", b"\n").unwrap();
        assert_eq!(r, 7..8);
        assert_eq!(find(b"a  b", b"a ").unwrap(), 0..2);
        assert!(find(b"partial \r", b"partial line").is_none());
        assert!(says(
            "error: x is the rescue boot\r\n       medium",
            "the rescue boot medium"
        ));
        assert!(!says("the rescue\r\nboot", "rescue boot medium"));
    }

    #[test]
    fn the_linux_line_ends_where_grub_moves_the_cursor_to_the_initrd_line() {
        let drawn = "[7;3H        linux /RESCUE/VMLINUZ console=tty0 quiet nor\\\r\n\x1b[8;3Hesume raid=noautodetect                \x1b[9;3H        initrd /RESCUE/INITRD.IMG";
        assert_eq!(linux_line_tail(drawn).as_deref(), Some("raid=noautodetect"));
        assert_eq!(linux_line_tail("no editor here"), None);
    }
}
