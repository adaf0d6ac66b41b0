//! A suspect host for `rescue live`: the build's Debian kernel boots the rescue initramfs (for its
//! kernel modules, `modprobe` and the `rescue` binary) with a second cpio appended that holds busybox
//! with its library closure, a static test program (`tests/guest/livetarget.c`) and a script run as
//! `rdinit` in place of rescue's init. The script mounts the evidence disk (ext4 labelled `EVIDENCE`,
//! made on the host) read-write at `/evidence` and the boot stick's FAT (`RESCUE`) read-only at
//! `/stick`, then leaves a busybox shell on the serial console for the scenario to drive.
//!
//! Also here: the test program's pattern (the same xorshift stream it writes into memory), the LiME
//! header parser the scenario checks a dump with, and the "System RAM" ranges of `/proc/iomem`.
//! Used by the `live` scenario and by `cargo xtask bench live`.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::Digest;

use crate::fixtures::run_tool;
use crate::{Artifacts, Boot, Bus, Disk, Qemu, QemuBuilder};

/// The source of the guest's test program.
const LIVETARGET_C: &str = include_str!("../guest/livetarget.c");

/// The label of the evidence disk's ext4 filesystem (the guest finds it with `findfs`).
pub const EVIDENCE_LABEL: &str = "EVIDENCE";

/// The static binary on the boot stick (its FAT partition), as the guest mounts it.
pub const STICK_RESCUE: &str = "/stick/RESCUE/RESCUE";

/// The guest's shell prompt.
pub const GUEST_PROMPT: &str = "live# ";

fn cache_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cache")
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The static test program, compiled with the host's gcc once per source and compiler version and
/// cached under `target/cache/livetarget/KEY/livetarget` (built in a temporary directory, then renamed).
pub fn livetarget() -> anyhow::Result<PathBuf> {
    let gcc = run_tool(Command::new("gcc").arg("--version"))
        .context("the live scenario compiles its test program with gcc (apt-get install gcc)")?;
    let key = short_hash(&[LIVETARGET_C.as_bytes(), gcc.as_bytes()]);
    let root = cache_root().join("livetarget");
    let dir = root.join(&key);
    let bin = dir.join("livetarget");
    if bin.is_file() {
        return Ok(bin);
    }
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{key}-"))
        .tempdir_in(&root)?;
    let src = tmp.path().join("livetarget.c");
    fs::write(&src, LIVETARGET_C)?;
    run_tool(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(tmp.path().join("livetarget"))
            .arg(&src),
    )
    .context("compiling tests/guest/livetarget.c (static: needs libc6-dev)")?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(tmp.keep(), &dir).with_context(|| format!("moving to {}", dir.display()))?;
    Ok(bin)
}

/// The bytes `livetarget pattern SEED PAGES` writes into its pages (xorshift64, little-endian words).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = if seed == 0 { 1 } else { seed };
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What `livetarget pattern` reported on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternProcess {
    pub pid: u32,
    pub seed: u64,
    /// The physical address of each page, in order.
    pub phys: Vec<u64>,
}

impl PatternProcess {
    /// Parses the fields after `LIVETARGET-READY `.
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("no {name}= in {line:?}"))
        };
        let phys = field("phys")?
            .split(',')
            .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("bad phys= in {line:?}"))?;
        let pages: usize = field("pages")?.parse()?;
        anyhow::ensure!(phys.len() == pages, "{pages} pages but {phys:?}");
        Ok(PatternProcess {
            pid: field("pid")?.parse()?,
            seed: field("seed")?.parse()?,
            phys,
        })
    }
}

/// One range of a LiME file: physical `start..=end`, its data at `offset` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimeRange {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
}

impl LimeRange {
    /// Bytes of memory the range holds.
    pub fn size(&self) -> u64 {
        self.end - self.start + 1
    }

    /// The file offset of physical address `addr`, if this range holds it.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        (self.start..=self.end)
            .contains(&addr)
            .then(|| self.offset + (addr - self.start))
    }
}

/// LiME's header magic, `EMiL` on disk.
pub const LIME_MAGIC: u32 = 0x4C69_4D45;

/// Walks the 32-byte LiME headers of a whole file (magic, version 1, start, inclusive end, 8 zero
/// bytes, then the range's data) and fails unless the last range ends exactly at the end of the file.
pub fn lime_ranges(mut f: impl Read + Seek) -> anyhow::Result<Vec<LimeRange>> {
    let size = f.seek(SeekFrom::End(0))?;
    let mut at = 0u64;
    let mut out = Vec::new();
    while at < size {
        f.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 32];
        f.read_exact(&mut h)
            .with_context(|| format!("short LiME header at {at}"))?;
        let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
        let magic = u32::from_le_bytes(h[0..4].try_into().unwrap_or_default());
        let version = u32::from_le_bytes(h[4..8].try_into().unwrap_or_default());
        let (start, end, reserved) = (word(8), word(16), word(24));
        if magic != LIME_MAGIC || version != 1 || reserved != 0 || end < start {
            bail!(
                "no LiME header at file offset {at}: magic {magic:#x}, version {version}, \
                 {start:#x}..={end:#x}, reserved {reserved:#x}"
            );
        }
        let r = LimeRange {
            start,
            end,
            offset: at + 32,
        };
        at = r.offset + r.size();
        if at > size {
            bail!("LiME range {start:#x}..={end:#x} runs past the end of the file ({size} bytes)");
        }
        out.push(r);
    }
    Ok(out)
}

/// The top-level "System RAM" ranges of `/proc/iomem` (as root: real addresses), `(start, end)`
/// inclusive.
pub fn system_ram(iomem: &str) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for line in iomem.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(' ') {
            continue;
        }
        let Some((range, name)) = line.split_once(" : ") else {
            continue;
        };
        if name.trim() != "System RAM" {
            continue;
        }
        let (a, b) = range
            .split_once('-')
            .with_context(|| format!("bad /proc/iomem line {line:?}"))?;
        out.push((u64::from_str_radix(a, 16)?, u64::from_str_radix(b, 16)?));
    }
    anyhow::ensure!(
        out.iter().any(|(a, b)| b > a),
        "no System RAM in /proc/iomem (printed as an unprivileged user?):\n{iomem}"
    );
    Ok(out)
}

/// The script the guest runs as `rdinit` (busybox sh): mounts, modules, the two disks, then a shell
/// loop on the serial console that runs each line it reads.
fn script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /evidence /stick
mount -t tmpfs tmpfs /tmp
fail() {{ echo "LIVE-GUEST-FAILED: $*"; poweroff -f; }}
{uevents}uevents_start
# Memory compaction may move locked pages: the test program's reported addresses must hold.
echo 0 > /proc/sys/vm/compact_unevictable_allowed || fail compact_unevictable_allowed
for m in virtio_pci virtio_blk ext4 vfat nls_cp437 nls_utf8; do
  /sbin/modprobe $m || fail "modprobe $m"
done
until findfs LABEL={EVIDENCE_LABEL} >/dev/null && findfs LABEL=RESCUE >/dev/null; do
  uevent_wait 'add *' || fail "the evidence disk or the stick did not appear"
done
uevents_stop
mount -t ext4 "$(findfs LABEL={EVIDENCE_LABEL})" /evidence || fail "mount evidence"
mount -t vfat -o ro,iocharset=utf8 "$(findfs LABEL=RESCUE)" /stick || fail "mount stick"
echo LIVE-GUEST-READY
# A read-eval loop rather than an interactive shell: the terminal's own echo, no line editor redrawing
# long command lines.
exec setsid cttyhack sh -c 'while printf "{GUEST_PROMPT}"; read -r line; do eval "$line"; done'
"#,
        uevents = crate::GUEST_UEVENTS_SH
    )
}

const PROGRAM_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
];

/// The rescue initramfs of `art` followed by a cpio holding busybox (with its libraries), the test
/// program as `/livetarget`, each of `extra` as `/NAME` (mode 0755), and the script as `/live-init`.
pub fn write_initrd(
    art: &Artifacts,
    livetarget: &Path,
    extra: &[(&str, &Path)],
    out: &Path,
) -> anyhow::Result<()> {
    let base = art.initramfs();
    let mut bytes = fs::read(&base).with_context(|| format!("reading {}", base.display()))?;
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    let mut archive = initramfs::cpio::Archive::new();
    for d in [
        "bin",
        "sbin",
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "tmp",
        "evidence",
        "stick",
    ] {
        archive.add_dir(d, 0o755);
    }
    let busybox = PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join("busybox"))
        .find(|p| p.is_file())
        .context("busybox not found (apt-get install busybox)")?;
    let busybox = fs::read(fs::canonicalize(&busybox)?)?;
    let closure = initramfs::elf::library_closure(&[busybox.as_slice()], |lib| {
        LIBRARY_DIRS.iter().find_map(|d| {
            let p = fs::canonicalize(Path::new(d).join(lib)).ok()?;
            Some((lib.to_owned(), fs::read(p).ok()?))
        })
    })?;
    if !closure.missing.is_empty() {
        bail!("libraries not found: {}", closure.missing.join(", "));
    }
    archive.add_file("bin/busybox", 0o755, busybox);
    for (name, data) in closure.libraries {
        archive.add_file(&format!("lib/x86_64-linux-gnu/{name}"), 0o755, data);
    }
    for interp in closure.interpreters {
        let data = fs::read(fs::canonicalize(&interp)?)?;
        archive.add_file(interp.trim_start_matches('/'), 0o755, data);
    }
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    archive.add_file("livetarget", 0o755, read(livetarget)?);
    for (name, path) in extra {
        archive.add_file(name, 0o755, read(path)?);
    }
    archive.add_symlink("etc/mtab", "/proc/self/mounts");
    archive.add_file("live-init", 0o755, script().into_bytes());
    archive.write(&mut bytes, 0)?;
    fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

/// The suspect host: kernel, the initrd of [`write_initrd`] in `work`, a copy of the boot stick and a
/// fresh ext4 evidence disk of `evidence_mib` (both virtio). Returns the builder and the evidence
/// image's path.
pub fn suspect_host(
    art: &Artifacts,
    work: &Path,
    memory_mib: u32,
    evidence_mib: u64,
    extra: &[(&str, &Path)],
) -> anyhow::Result<(QemuBuilder, PathBuf)> {
    let livetarget = livetarget()?;
    let initrd = work.join("live-initrd");
    write_initrd(art, &livetarget, extra, &initrd)?;
    let evidence = work.join("evidence.img");
    fs::File::create(&evidence)?.set_len(evidence_mib << 20)?;
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-F", "-q", "-L", EVIDENCE_LABEL])
            .arg(&evidence),
    )?;
    let stick = work.join("rescue-usb.img");
    fs::copy(art.usb_image(), &stick)
        .with_context(|| format!("copying {}", art.usb_image().display()))?;
    let mut b = QemuBuilder::new(
        Boot::Direct {
            kernel: art.vmlinuz(),
            initrd,
            cmdline: format!("{} rdinit=/live-init loglevel=1", crate::TEST_CMDLINE),
        },
        work,
    );
    b.memory_mib = memory_mib;
    let mut ev = Disk::new(&evidence, Bus::Virtio);
    ev.serial = Some("EVIDENCE1".to_owned());
    let mut st = Disk::new(&stick, Bus::Virtio);
    st.serial = Some("STICK1".to_owned());
    Ok((b.disk(ev).disk(st), evidence))
}

/// Waits for the guest's shell after boot.
pub fn wait_shell(vm: &mut Qemu, timeout: Duration) -> anyhow::Result<()> {
    let out = vm.expect("LIVE-GUEST-", timeout)?;
    let rest = vm.expect("\n", Duration::from_secs(10))?;
    vm.check(
        rest.starts_with("READY"),
        &format!("the suspect host did not come up: {out}{rest}"),
    )?;
    vm.expect(GUEST_PROMPT, Duration::from_secs(60))?;
    Ok(())
}

/// Runs `command` in the guest's shell and waits for it to finish; returns its exit status and what
/// it printed (without the echoed command line).
pub fn sh(vm: &mut Qemu, command: &str, timeout: Duration) -> anyhow::Result<(i32, String)> {
    // The quotes split the marker in the echoed command line, so only the real output matches it.
    vm.send_line(&format!("{command}; echo \"@@LIVE-E\"\"ND $?@@\""))?;
    let text = vm.expect("@@LIVE-END ", timeout)?;
    let status = vm.expect("@@", Duration::from_secs(10))?;
    let status: i32 = status
        .trim_end_matches("@@")
        .trim()
        .parse()
        .with_context(|| format!("bad status after `{command}`: {status:?}"))?;
    vm.expect(GUEST_PROMPT, Duration::from_secs(30))?;
    let body = text.strip_suffix("@@LIVE-END ").unwrap_or(&text);
    let body = body.replace('\r', "");
    // Drop the echo of the command itself: everything up to the line holding the split marker.
    let body = match body.find("\"@@LIVE-E\"\"ND") {
        Some(i) => body[i..]
            .split_once('\n')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default(),
        None => body,
    };
    Ok((status, body))
}

/// [`sh`] that fails (with the serial log) unless the command exits 0.
pub fn sh_ok(vm: &mut Qemu, command: &str, timeout: Duration) -> anyhow::Result<String> {
    let (status, out) = sh(vm, command, timeout)?;
    vm.check(
        status == 0,
        &format!("`{command}` exited {status} in the guest:\n{out}"),
    )?;
    Ok(out)
}

/// Starts `program pattern SEED PAGES` in the background and returns what it reported once its
/// pages are locked (or fails if it exited instead).
pub fn start_pattern(
    vm: &mut Qemu,
    program: &str,
    seed: u64,
    pages: usize,
) -> anyhow::Result<PatternProcess> {
    // The program's output goes into a fifo that `head` reads until the first line: its READY line
    // once the pages are locked, or what it said before it exited (then `head` sees the fifo's end).
    let fifo = format!("/tmp/pattern-{seed}.fifo");
    let report = sh_ok(
        vm,
        &format!(
            "mkfifo {fifo} && {{ {program} pattern {seed} {pages} > {fifo} 2>&1 & }} && \
             head -n 1 {fifo}"
        ),
        Duration::from_secs(300),
    )?;
    let line = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("LIVETARGET-READY "))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{program} pattern did not lock its pages:\n{report}\n{}",
                vm.log()
            )
        })?;
    let p = PatternProcess::parse(line)?;
    anyhow::ensure!(p.seed == seed, "{program} reported seed {}", p.seed);
    Ok(p)
}

/// What `livetarget time COMMAND` measured of one command.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Wall seconds.
    pub wall: f64,
    /// Peak RSS, KiB.
    pub maxrss_kib: u64,
    /// CPU seconds in user space and in the kernel (all threads).
    pub user: f64,
    pub sys: f64,
}

/// `livetarget time COMMAND`: wall seconds and peak RSS (KiB) of the command, which must exit with
/// one of `ok` (e.g. `rescue live`'s 3: captured with unreadable pages).
pub fn timed(
    vm: &mut Qemu,
    command: &str,
    ok: &[i32],
    timeout: Duration,
) -> anyhow::Result<(f64, u64)> {
    let t = timing(vm, command, ok, timeout)?;
    Ok((t.wall, t.maxrss_kib))
}

/// `livetarget time COMMAND`, everything it measured.
pub fn timing(
    vm: &mut Qemu,
    command: &str,
    ok: &[i32],
    timeout: Duration,
) -> anyhow::Result<Timing> {
    let out = sh_ok(vm, &format!("/livetarget time {command}"), timeout)?;
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("LIVETARGET-TIME "))
        .with_context(|| format!("no LIVETARGET-TIME line after `{command}`:\n{out}"))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name}= in {line:?}"))
    };
    let status: i32 = field("status")?.parse()?;
    anyhow::ensure!(
        ok.contains(&status),
        "`{command}` exited {status} in the guest:\n{out}"
    );
    Ok(Timing {
        wall: field("wall")?.parse()?,
        maxrss_kib: field("maxrss_kib")?.parse()?,
        user: field("user")?.parse()?,
        sys: field("sys")?.parse()?,
    })
}
