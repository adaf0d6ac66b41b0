//! `state/processes.json`: every process the `/proc` listing shows, read from `/proc/PID/stat`,
//! `status`, `cmdline`, `environ` (only `LD_PRELOAD`/`LD_LIBRARY_PATH`), the `exe`, `cwd` and `root`
//! links, with the SHA-256 of the executable read through `/proc/PID/exe` (which reaches a deleted
//! file or a `memfd:` as long as the process lives). Deleted and `memfd:` executables are also copied
//! as `state/exe/PID-NAME`, once per distinct content. Processes that exit while being read are
//! normal and only counted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// The largest executable copied into the live response (a copy is held in memory until written).
pub const MAX_EXE_COPY: u64 = 512 << 20;

/// `PF_KTHREAD` in the `flags` field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` this collector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The name between the parentheses (up to 15 bytes, may hold spaces and `)`, any bytes).
    pub comm: Vec<u8>,
    pub state: char,
    pub ppid: Option<u32>,
    pub flags: Option<u64>,
    pub threads: Option<u64>,
    /// Clock ticks after boot when the process started.
    pub starttime: Option<u64>,
}

/// Parses `/proc/PID/stat`. The name is everything between the first `(` and the last `)`, since a
/// process may name itself `a) R 1 (b`. `None` when there is no `(…)` at all.
pub fn parse_stat(b: &[u8]) -> Option<Stat> {
    let open = b.iter().position(|&c| c == b'(')?;
    let close = b.iter().rposition(|&c| c == b')')?;
    if close < open {
        return None;
    }
    let pid = doc::num(&b[..open])?;
    let comm = b[open + 1..close].to_vec();
    let rest: Vec<&[u8]> = b[close + 1..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let f = |i: usize| rest.get(i).copied();
    Some(Stat {
        pid,
        comm,
        state: f(0).and_then(|s| s.first()).map_or('?', |&c| c as char),
        ppid: f(1).and_then(doc::num),
        flags: f(6).and_then(doc::num),
        threads: f(17).and_then(doc::num),
        starttime: f(19).and_then(doc::num),
    })
}

/// Real, effective, saved and filesystem IDs (`Uid:`/`Gid:` of `/proc/PID/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub fs: u32,
}

/// The fields of `/proc/PID/status` this collector uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub tgid: Option<u32>,
    pub uid: Option<Ids>,
    pub gid: Option<Ids>,
}

fn ids(v: Option<&[u8]>) -> Option<Ids> {
    let n: Vec<u32> = v?
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .map(doc::num)
        .collect::<Option<_>>()?;
    match n[..] {
        [real, effective, saved, fs] => Some(Ids {
            real,
            effective,
            saved,
            fs,
        }),
        _ => None,
    }
}

/// Parses `/proc/PID/status`.
pub fn parse_status(b: &[u8]) -> Status {
    Status {
        tgid: doc::field(b, "Tgid").and_then(doc::num),
        uid: ids(doc::field(b, "Uid")),
        gid: ids(doc::field(b, "Gid")),
    }
}

/// `/proc/PID/cmdline`: NUL-separated arguments (a trailing NUL ends the last one; a process that
/// rewrote its arguments may leave one string with spaces).
pub fn parse_cmdline(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(b"\0").unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0).map(text).collect()
}

/// The values of the loader variables an implant uses, from `/proc/PID/environ`.
pub fn loader_variables(environ: &[u8]) -> Vec<String> {
    environ
        .split(|&c| c == 0)
        .filter(|v| v.starts_with(b"LD_PRELOAD=") || v.starts_with(b"LD_LIBRARY_PATH="))
        .map(text)
        .collect()
}

/// One process.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: Option<Ids>,
    pub gid: Option<Ids>,
    /// The state letter of `/proc/PID/stat` (`R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`).
    pub state: String,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// RFC 3339 UTC: the boot time plus `start_ticks`.
    pub start_time: Option<String>,
    pub start_ticks: Option<u64>,
    pub threads: Option<u64>,
    pub kernel_thread: bool,
    /// The `exe` link as the kernel shows it, `" (deleted)"` included.
    pub exe: Option<String>,
    pub exe_deleted: bool,
    pub exe_memfd: bool,
    pub exe_sha256: Option<String>,
    pub exe_size: Option<u64>,
    /// The copy in this live response (`state/exe/PID-NAME`), for a deleted or `memfd:` executable.
    pub exe_copy: Option<String>,
    pub cwd: Option<String>,
    /// The process's root directory when it is not `/` (a chroot or a container).
    pub root: Option<String>,
    /// `LD_PRELOAD=…` and `LD_LIBRARY_PATH=…` from its environment.
    pub loader_env: Vec<String>,
}

/// Boot time and clock ticks, to turn `starttime` into a date.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `btime` of `/proc/stat` (UNIX seconds).
    pub boot_time: Option<u64>,
    pub ticks_per_second: u64,
}

impl Clock {
    pub fn read(proc: &Path, d: &mut Doc) -> Clock {
        let boot_time = match doc::read(&proc.join("stat")) {
            Ok(b) => b.split(|&c| c == b'\n').find_map(|l| {
                let v = l.strip_prefix(b"btime ")?;
                doc::num(v)
            }),
            Err(e) => {
                d.note(format!(
                    "{}: {}; start times are left out",
                    proc.join("stat").display(),
                    doc::why(&e)
                ));
                None
            }
        };
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Clock {
            boot_time,
            ticks_per_second: if t > 0 { t as u64 } else { 100 },
        }
    }

    fn start(&self, ticks: u64) -> Option<String> {
        let boot = self.boot_time? as f64;
        doc::rfc3339_secs(boot + ticks as f64 / self.ticks_per_second as f64)
    }
}

/// What is known of one executable's content.
#[derive(Debug, Clone)]
struct ExeContent {
    sha256: String,
    size: u64,
}

/// Hashes of executables already read (by inode, size and mtime: hundreds of processes share a
/// handful of binaries) and the copies already made (by hash).
#[derive(Debug, Default)]
pub struct ExeCache {
    by_inode: HashMap<(u64, u64, u64, i64, i64), ExeContent>,
    copied: HashMap<String, String>,
}

/// `comm` made safe as a file-name part: letters, digits, `.`, `_`, `-`; anything else `_`.
fn file_part(comm: &[u8]) -> String {
    let s: String = comm
        .iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-' {
                c as char
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn sha256_stream(r: &mut impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Reads the executable of `pid` through `/proc/PID/exe`: its hash, and a copy when `copy`.
fn read_exe(
    proc: &Path,
    p: &mut Process,
    copy: bool,
    cache: &mut ExeCache,
    out: &mut Vec<Artifact>,
    d: &mut Doc,
) {
    let path = proc.join(p.pid.to_string()).join("exe");
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if doc::gone(&e) => return,
        Err(e) => {
            d.note(format!("{}: {}", path.display(), doc::why(&e)));
            return;
        }
    };
    let key = f
        .metadata()
        .ok()
        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
    if !copy && let Some(c) = key.and_then(|k| cache.by_inode.get(&k)) {
        p.exe_sha256 = Some(c.sha256.clone());
        p.exe_size = Some(c.size);
        return;
    }
    if copy {
        let mut bytes = Vec::new();
        match (&mut f).take(MAX_EXE_COPY + 1).read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 > MAX_EXE_COPY => {
                d.note(format!(
                    "{}: larger than {} MiB, hashed but not copied",
                    path.display(),
                    MAX_EXE_COPY >> 20
                ));
                let mut h = Sha256::new();
                h.update(&bytes);
                let rest = sha256_rest(&mut f, h, bytes.len() as u64);
                match rest {
                    Ok((sha, size)) => {
                        p.exe_sha256 = Some(sha);
                        p.exe_size = Some(size);
                    }
                    Err(e) => d.note(format!("{}: {}", path.display(), doc::why(&e))),
                }
            }
            Ok(_) => {
                let sha = hex::encode(Sha256::digest(&bytes));
                p.exe_size = Some(bytes.len() as u64);
                let name = match cache.copied.get(&sha) {
                    Some(n) => n.clone(),
                    None => {
                        let name = format!("state/exe/{}-{}", p.pid, file_part(p.comm.as_bytes()));
                        cache.copied.insert(sha.clone(), name.clone());
                        out.push(doc::file_artifact(
                            &name,
                            bytes,
                            &path.display().to_string(),
                            &doc::now_rfc3339(),
                        ));
                        name
                    }
                };
                p.exe_copy = Some(name);
                p.exe_sha256 = Some(sha);
            }
            Err(e) => d.note(format!("{}: {}", path.display(), doc::why(&e))),
        }
        return;
    }
    match sha256_stream(&mut f) {
        Ok((sha, size)) => {
            if let Some(k) = key {
                cache.by_inode.insert(
                    k,
                    ExeContent {
                        sha256: sha.clone(),
                        size,
                    },
                );
            }
            p.exe_sha256 = Some(sha);
            p.exe_size = Some(size);
        }
        Err(e) => d.note(format!("{}: {}", path.display(), doc::why(&e))),
    }
}

fn sha256_rest(f: &mut File, mut h: Sha256, mut n: u64) -> io::Result<(String, u64)> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

/// What reading one PID found.
#[derive(Debug)]
pub enum Read1 {
    Process(Box<Process>),
    /// It exited (or never existed) while being read.
    Gone,
    /// A thread of another process (`Tgid` differs from the PID).
    Thread {
        tgid: u32,
    },
}

/// Reads one process. Copies (deleted, `memfd:`) go to `out`; what could not be read to `d`.
pub fn read_one(
    proc: &Path,
    pid: u32,
    clock: &Clock,
    cache: &mut ExeCache,
    out: &mut Vec<Artifact>,
    d: &mut Doc,
) -> Read1 {
    let dir = proc.join(pid.to_string());
    let stat = match doc::read(&dir.join("stat")) {
        Ok(b) => b,
        Err(e) if doc::gone(&e) => return Read1::Gone,
        Err(e) => {
            d.note(format!("{}: {}", dir.join("stat").display(), doc::why(&e)));
            return Read1::Gone;
        }
    };
    let Some(st) = parse_stat(&stat) else {
        d.note(format!(
            "{}: not in the kernel's format: {:?}",
            dir.join("stat").display(),
            text(&stat[..stat.len().min(80)])
        ));
        return Read1::Gone;
    };
    let status = match doc::read(&dir.join("status")) {
        Ok(b) => parse_status(&b),
        Err(e) if doc::gone(&e) => return Read1::Gone,
        Err(e) => {
            d.note(format!(
                "{}: {}",
                dir.join("status").display(),
                doc::why(&e)
            ));
            Status::default()
        }
    };
    if let Some(tgid) = status.tgid
        && tgid != pid
    {
        return Read1::Thread { tgid };
    }
    let mut optional = |name: &str| -> Option<Vec<u8>> {
        match doc::read(&dir.join(name)) {
            Ok(b) => Some(b),
            Err(e) if doc::gone(&e) => None,
            Err(e) => {
                d.note(format!("{}: {}", dir.join(name).display(), doc::why(&e)));
                None
            }
        }
    };
    let cmdline = optional("cmdline")
        .map(|b| parse_cmdline(&b))
        .unwrap_or_default();
    let loader_env = optional("environ")
        .map(|b| loader_variables(&b))
        .unwrap_or_default();
    let kernel_thread = st.flags.is_some_and(|f| f & PF_KTHREAD != 0);
    let link = |name: &str, d: &mut Doc| -> Option<Vec<u8>> {
        match doc::readlink(&dir.join(name)) {
            Ok(t) => Some(t),
            // Kernel threads have no exe/cwd; a zombie has none either.
            Err(e) if doc::gone(&e) => None,
            Err(_) if kernel_thread => None,
            Err(e) => {
                d.note(format!("{}: {}", dir.join(name).display(), doc::why(&e)));
                None
            }
        }
    };
    let exe = link("exe", d);
    let cwd = link("cwd", d);
    let root = link("root", d).filter(|r| r != b"/");
    let exe_deleted = exe.as_ref().is_some_and(|e| e.ends_with(b" (deleted)"));
    let exe_memfd = exe.as_ref().is_some_and(|e| e.starts_with(b"/memfd:"));
    let mut p = Process {
        pid,
        ppid: st.ppid,
        uid: status.uid,
        gid: status.gid,
        state: st.state.to_string(),
        comm: text(&st.comm),
        cmdline,
        start_time: st.starttime.and_then(|t| clock.start(t)),
        start_ticks: st.starttime,
        threads: st.threads,
        kernel_thread,
        exe: exe.as_deref().map(text),
        exe_deleted,
        exe_memfd,
        exe_sha256: None,
        exe_size: None,
        exe_copy: None,
        cwd: cwd.as_deref().map(text),
        root: root.as_deref().map(text),
        loader_env,
    };
    if exe.is_some() {
        read_exe(proc, &mut p, exe_deleted || exe_memfd, cache, out, d);
    }
    Read1::Process(Box::new(p))
}

/// What the process collector found, for the collectors after it.
#[derive(Debug, Default)]
pub struct Listing {
    /// The PIDs the `/proc` listing showed.
    pub listed: Vec<u32>,
}

/// Collects `state/processes.json` (and the executable copies).
pub fn collect(roots: &Roots, cache: &mut ExeCache, out: &mut Vec<Artifact>) -> Listing {
    let proc = &roots.proc;
    let mut d = Doc::start(
        "state/processes.json",
        "rescue.live.processes/1",
        "/proc/PID/{stat,status,cmdline,environ,exe,cwd,root}, /proc/stat btime",
    );
    let clock = Clock::read(proc, &mut d);
    let listed = match doc::numeric_entries(proc) {
        Ok(l) => l,
        Err(e) => {
            d.note(format!("listing {}: {}", proc.display(), doc::why(&e)));
            Vec::new()
        }
    };
    let mut processes = Vec::new();
    let mut exited = 0usize;
    for &pid in &listed {
        match read_one(proc, pid, &clock, cache, out, &mut d) {
            Read1::Process(p) => processes.push(*p),
            Read1::Gone => exited += 1,
            Read1::Thread { tgid } => d.note(format!(
                "{pid} is listed in {} but is a thread of {tgid}",
                proc.display()
            )),
        }
    }
    if exited > 0 {
        d.note(format!(
            "{exited} processes exited while the list was read (listed, then gone)"
        ));
    }
    out.push(d.finish(vec![
        ("boot_time", doc::json(&clock.boot_time)),
        ("ticks_per_second", doc::json(&clock.ticks_per_second)),
        ("processes", doc::json(&processes)),
    ]));
    Listing { listed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"1234 (a) R 1 (b) S 77 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 \
        4242 10000 200 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_name_may_hold_parentheses_and_spaces() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, b"a) R 1 (b");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, Some(77));
        assert_eq!(s.threads, Some(3));
        assert_eq!(s.starttime, Some(4242));
        assert_eq!(s.flags, Some(4194560));
    }

    #[test]
    fn hostile_stat_lines_give_none_or_missing_fields_never_a_panic() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 no parens"), None);
        assert_eq!(parse_stat(b") 12 ("), None);
        let t = parse_stat(b"12 (x").map(|s| s.comm);
        assert_eq!(t, None);
        let s = parse_stat(b"12 (\xff\xfe) R").unwrap();
        assert_eq!(s.ppid, None);
        assert_eq!(text(&s.comm), "\\xff\\xfe");
        let s = parse_stat(b"99999999999999999999 (x) R 1").unwrap_or(Stat {
            pid: 0,
            comm: Vec::new(),
            state: '?',
            ppid: None,
            flags: None,
            threads: None,
            starttime: None,
        });
        assert_eq!(s.pid, 0, "a PID beyond u32 is not a process");
        let s = parse_stat(b"5 (x) R 99999999999999999999 0 0 0 0 0").unwrap();
        assert_eq!(s.ppid, None);
    }

    #[test]
    fn status_ids_and_tgid() {
        let s = parse_status(b"Name:\tx\nTgid:\t10\nPid:\t11\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\n");
        assert_eq!(s.tgid, Some(10));
        assert_eq!(
            s.uid,
            Some(Ids {
                real: 1000,
                effective: 0,
                saved: 0,
                fs: 0
            })
        );
        assert_eq!(s.gid, None, "a truncated Gid line is unknown, not zero");
    }

    #[test]
    fn cmdline_and_loader_environment() {
        assert_eq!(
            parse_cmdline(b"/bin/sh\0-c\0echo hi\0"),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"sshd: root [priv]"), ["sshd: root [priv]"]);
        assert_eq!(
            loader_variables(b"HOME=/root\0LD_PRELOAD=/tmp/.x.so\0PATH=/bin\0"),
            ["LD_PRELOAD=/tmp/.x.so"]
        );
    }

    #[test]
    fn copy_names_are_safe_file_names() {
        assert_eq!(file_part(b"sshd"), "sshd");
        assert_eq!(file_part(b"../../etc"), "_.._.._etc");
        assert_eq!(file_part(b"a b/\xff"), "a_b__");
        assert_eq!(file_part(b""), "_");
    }
}
