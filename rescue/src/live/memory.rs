//! Where a running kernel's physical memory can be read, without loading a module: the "System RAM"
//! ranges of `/proc/iomem`, then `/proc/kcore` (an ELF core file whose `PT_LOAD` program headers map
//! physical memory into the kernel's address space), falling back to `/dev/crash` (RHEL's crash
//! driver) and `/dev/mem` (offset = physical address). Each source that cannot serve every range says
//! why, in words ([`Attempt`]); kernel lockdown is read from `/sys/kernel/security/lockdown` and named
//! in the reason of a source it refuses.
//!
//! Only reads: every file is opened `O_RDONLY`. Never prints.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Roots;

/// One "System RAM" range of `/proc/iomem`, `end` inclusive (as iomem and LiME write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RamRange {
    pub start: u64,
    pub end: u64,
}

impl RamRange {
    /// Bytes in the range.
    pub fn bytes(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// Errors finding the RAM ranges.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("reading {path}")]
    ReadIomem {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} lists no \"System RAM\" range")]
    MissingRam { path: PathBuf },
    #[error(
        "{path} shows every address as 0: the kernel hides them from a process without CAP_SYS_ADMIN (run as root)"
    )]
    HiddenAddresses { path: PathBuf },
    #[error("line {line} of {path} is not `START-END : NAME`")]
    ParseIomem { path: PathBuf, line: usize },
}

/// The top-level "System RAM" ranges of an iomem listing (nested entries such as "Kernel code" lie
/// inside them and are skipped), sorted, overlapping or touching ones merged. `Err(line)` names the
/// first malformed top-level line (1-based).
pub fn parse_iomem(text: &str) -> Result<Vec<RamRange>, usize> {
    let mut out: Vec<RamRange> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with(' ') || line.starts_with('\t') {
            continue;
        }
        let (span, name) = line.split_once(" : ").ok_or(i + 1)?;
        if name.trim() != "System RAM" {
            continue;
        }
        let (a, b) = span.trim().split_once('-').ok_or(i + 1)?;
        let start = u64::from_str_radix(a, 16).map_err(|_| i + 1)?;
        let end = u64::from_str_radix(b, 16).map_err(|_| i + 1)?;
        if end < start {
            return Err(i + 1);
        }
        out.push(RamRange { start, end });
    }
    out.sort_by_key(|r| r.start);
    let mut merged: Vec<RamRange> = Vec::new();
    for r in out {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// The RAM ranges of the running system (`PROC/iomem`).
pub fn ram_ranges(roots: &Roots) -> Result<Vec<RamRange>, MemoryError> {
    let path = roots.proc.join("iomem");
    let text = std::fs::read_to_string(&path).map_err(|source| MemoryError::ReadIomem {
        path: path.clone(),
        source,
    })?;
    let ranges = parse_iomem(&text).map_err(|line| MemoryError::ParseIomem {
        path: path.clone(),
        line,
    })?;
    if ranges.is_empty() {
        return Err(MemoryError::MissingRam { path });
    }
    if ranges.iter().all(|r| r.start == 0 && r.end == 0) {
        return Err(MemoryError::HiddenAddresses { path });
    }
    Ok(ranges)
}

/// The kernel lockdown mode (`none`, `integrity`, `confidentiality`), `None` where the kernel has no
/// lockdown LSM (or securityfs is not mounted).
pub fn lockdown(roots: &Roots) -> Option<String> {
    let text = std::fs::read_to_string(roots.sys.join("kernel/security/lockdown")).ok()?;
    let open = text.find('[')?;
    let close = text[open..].find(']')? + open;
    Some(text[open + 1..close].to_owned())
}

/// Reads physical memory.
pub trait PhysRead: Send + Sync {
    /// Reads up to `buf.len()` bytes at physical address `phys`; a short read is allowed, `Ok(0)` never
    /// returned for a mapped address (an end of file becomes an error: the page is unreadable).
    fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize>;
}

/// A `PT_LOAD` program header of an ELF64 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
}

/// Errors reading an ELF core header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KcoreError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian ELF file (class {class}, data {data})")]
    UnsupportedElf { class: u8, data: u8 },
    #[error("the ELF header is cut short: {what}")]
    ShortElf { what: &'static str },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const PT_LOAD: u32 = 1;
const PHDR_SIZE: usize = 56;
/// `e_phnum` saying the real count is in section header 0 (`sh_info`).
const PN_XNUM: u16 = 0xffff;

/// Where the program headers are: `(e_phoff, count)`, from the ELF header (and, with
/// [`PN_XNUM`], section header 0 read by `read`).
fn phdr_table(
    read: &dyn Fn(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<Result<(u64, usize), KcoreError>, io::Error> {
    let eh = read(0, 64)?;
    if eh.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Ok(Err(KcoreError::NotElf));
    }
    let (class, data) = (eh.get(4).copied(), eh.get(5).copied());
    if class != Some(2) || data != Some(1) {
        return Ok(Err(KcoreError::UnsupportedElf {
            class: class.unwrap_or(0),
            data: data.unwrap_or(0),
        }));
    }
    let (Some(phoff), Some(phentsize), Some(phnum), Some(shoff)) = (
        u64_at(&eh, 0x20),
        u16_at(&eh, 0x36),
        u16_at(&eh, 0x38),
        u64_at(&eh, 0x28),
    ) else {
        return Ok(Err(KcoreError::ShortElf { what: "ELF header" }));
    };
    if usize::from(phentsize) != PHDR_SIZE {
        return Ok(Err(KcoreError::ShortElf {
            what: "program header size is not 56",
        }));
    }
    let count = if phnum == PN_XNUM {
        let sh = read(shoff, 64)?;
        match u32_at(&sh, 44) {
            Some(n) => n as usize,
            None => return Ok(Err(KcoreError::ShortElf { what: "section 0" })),
        }
    } else {
        usize::from(phnum)
    };
    Ok(Ok((phoff, count)))
}

/// The `PT_LOAD` segments of an ELF64 little-endian core file, read through `read(offset, len)`.
pub fn load_segments(
    read: &dyn Fn(u64, usize) -> io::Result<Vec<u8>>,
) -> io::Result<Result<Vec<Segment>, KcoreError>> {
    let (phoff, count) = match phdr_table(read)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let table = read(phoff, count * PHDR_SIZE)?;
    if table.len() < count * PHDR_SIZE {
        return Ok(Err(KcoreError::ShortElf {
            what: "program headers",
        }));
    }
    let mut out = Vec::new();
    for p in table.chunks_exact(PHDR_SIZE) {
        let field = |at| u64_at(p, at).unwrap_or(0);
        if u32_at(p, 0) == Some(PT_LOAD) {
            out.push(Segment {
                offset: field(8),
                vaddr: field(16),
                paddr: field(24),
                filesz: field(32),
            });
        }
    }
    Ok(Ok(out))
}

/// One contiguous piece of physical memory and where the core file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub phys: u64,
    pub len: u64,
    pub file_offset: u64,
}

/// How the segments were tied to physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// The segments' `p_paddr` (kernels since 4.19 set it for RAM and kernel text).
    Paddr,
    /// Older kernels leave `p_paddr` 0: physical = virtual − the direct map's offset, the offset that
    /// places the most RAM inside the segments.
    DirectMap { offset: u64 },
}

/// The pieces of the file that hold `ranges`, each range walked from its start: at every address the
/// segment holding it (by `mapping`) gives the file offset. `Err` names the first address of a range
/// that no segment holds.
fn cover(segments: &[(u64, &Segment)], ranges: &[RamRange]) -> Result<Vec<Piece>, (u64, u64)> {
    let mut pieces = Vec::new();
    for r in ranges {
        let mut at = r.start;
        while at <= r.end {
            let seg = segments
                .iter()
                .filter(|(phys, s)| *phys <= at && at - *phys < s.filesz)
                // The one reaching furthest (a text segment may lie inside the direct map).
                .max_by_key(|(phys, s)| phys.saturating_add(s.filesz));
            let Some((phys, s)) = seg else {
                // The gap runs to the next segment start or the range's end.
                let next = segments
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| *p > at && *p <= r.end)
                    .min()
                    .unwrap_or(r.end.saturating_add(1));
                if partial_page_edge(r, at, next) {
                    // The kernel maps whole pages only: the part of a page a range shares with a
                    // hole is read as unreadable (zero-filled and listed), not a reason to give up.
                    at = next;
                    continue;
                }
                return Err((at, next - at));
            };
            let seg_end = phys.saturating_add(s.filesz); // exclusive
            let end = seg_end.min(r.end.saturating_add(1));
            pieces.push(Piece {
                phys: at,
                len: end - at,
                file_offset: s.offset + (at - phys),
            });
            at = end;
            if end == 0 {
                break;
            }
        }
    }
    Ok(pieces)
}

const PAGE: u64 = 4096;

/// True when `[at, next)` is the part of a page at the head or tail of range `r` that the range
/// shares with a hole: `/proc/kcore` maps whole pages of RAM only, so on every PC BIOS machine the
/// tail of the first range (`…-0009fbff`) is in no segment.
fn partial_page_edge(r: &RamRange, at: u64, next: u64) -> bool {
    let end = r.end.saturating_add(1);
    let head =
        at == r.start && !r.start.is_multiple_of(PAGE) && next <= r.start.next_multiple_of(PAGE);
    let tail = next == end && !end.is_multiple_of(PAGE) && at >= end - end % PAGE;
    head || tail
}

/// Ties the segments of a kcore to physical memory and checks every RAM range is covered. `Err` is the
/// reason in words.
pub fn map_kcore(
    segments: &[Segment],
    ranges: &[RamRange],
) -> Result<(Mapping, Vec<Piece>), String> {
    let has_paddr = segments.iter().any(|s| s.paddr != 0 && s.paddr != u64::MAX);
    if has_paddr {
        let by_paddr: Vec<(u64, &Segment)> = segments
            .iter()
            .filter(|s| s.paddr != u64::MAX)
            .map(|s| (s.paddr, s))
            .collect();
        return cover(&by_paddr, ranges)
            .map(|p| (Mapping::Paddr, p))
            .map_err(|(at, len)| not_covered(at, len, "p_paddr"));
    }
    // Candidate offsets: a segment starting at a range's start (the direct map holds each range whole).
    let mut best: Option<(u64, u64)> = None; // (covered bytes, offset)
    for s in segments {
        for r in ranges {
            let Some(offset) = s.vaddr.checked_sub(r.start) else {
                continue;
            };
            let covered: u64 = ranges
                .iter()
                .map(|q| {
                    segments
                        .iter()
                        .filter_map(|t| {
                            let phys = t.vaddr.checked_sub(offset)?;
                            let lo = phys.max(q.start);
                            let hi = phys.saturating_add(t.filesz).min(q.end.saturating_add(1));
                            (hi > lo).then(|| hi - lo)
                        })
                        .sum::<u64>()
                })
                .sum();
            if best.is_none_or(|(c, _)| covered > c) {
                best = Some((covered, offset));
            }
        }
    }
    let Some((_, offset)) = best else {
        return Err("no kcore segment starts where a System RAM range starts, so the direct map's offset cannot be found".to_owned());
    };
    let by_vaddr: Vec<(u64, &Segment)> = segments
        .iter()
        .filter_map(|s| Some((s.vaddr.checked_sub(offset)?, s)))
        .collect();
    cover(&by_vaddr, ranges)
        .map(|p| (Mapping::DirectMap { offset }, p))
        .map_err(|(at, len)| not_covered(at, len, "the direct map"))
}

fn not_covered(at: u64, len: u64, how: &str) -> String {
    format!(
        "no kcore segment holds physical {at:#x}-{:#x} ({len} bytes of System RAM; mapped by {how})",
        at + len - 1
    )
}

/// `/proc/kcore` read through its pieces.
pub struct Kcore {
    file: File,
    /// Sorted by `phys`.
    pieces: Vec<Piece>,
}

impl PhysRead for Kcore {
    fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize> {
        let i = self.pieces.partition_point(|p| p.phys <= phys);
        let piece = i
            .checked_sub(1)
            .map(|i| self.pieces[i])
            .filter(|p| phys - p.phys < p.len)
            .ok_or_else(|| io::Error::other(format!("physical {phys:#x} is not in kcore")))?;
        let left = piece.len - (phys - piece.phys);
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        match self
            .file
            .read_at(&mut buf[..n], piece.file_offset + (phys - piece.phys))?
        {
            0 if n > 0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("kcore ends before physical {phys:#x}"),
            )),
            got => Ok(got),
        }
    }
}

/// A device whose offsets are physical addresses (`/dev/crash`, `/dev/mem`).
pub struct PhysDevice {
    file: File,
}

impl PhysRead for PhysDevice {
    fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize> {
        match self.file.read_at(buf, phys)? {
            0 if !buf.is_empty() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the device ends before physical {phys:#x}"),
            )),
            n => Ok(n),
        }
    }
}

/// What one source gave, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The path read (`/proc/kcore`, `/dev/crash`, `/dev/mem`).
    pub source: String,
    /// True for the source the capture reads.
    pub used: bool,
    /// How it was mapped, or why it was not used.
    pub detail: String,
}

/// The chosen source, the attempts (in order) and the lockdown mode seen.
pub struct Opened {
    pub reader: Option<Box<dyn PhysRead>>,
    pub attempts: Vec<Attempt>,
}

fn lockdown_hint(err: &io::Error, lockdown: Option<&str>, blocked_under: &[&str]) -> String {
    let denied = matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
    ) || err.raw_os_error() == Some(libc::EPERM);
    match lockdown {
        Some(mode) if denied && blocked_under.contains(&mode) => {
            format!(" (kernel lockdown is [{mode}], which forbids it)")
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        _ if denied && unsafe { libc::geteuid() } != 0 => " (not running as root)".to_owned(),
        _ => String::new(),
    }
}

/// Reads one page at the start of the first range and of the largest range: a source that opens but
/// refuses RAM (a strict `/dev/mem` allows only the first MiB) fails here.
fn probe(reader: &dyn PhysRead, ranges: &[RamRange]) -> io::Result<()> {
    let largest = ranges.iter().max_by_key(|r| r.bytes());
    for r in ranges.first().into_iter().chain(largest) {
        // A whole page inside the range (its partial pages may be in no kcore segment).
        let start = r.start.next_multiple_of(PAGE);
        let len = r.end.saturating_add(1).saturating_sub(start).min(PAGE);
        let mut page = vec![0u8; len as usize];
        let mut done = 0;
        while done < page.len() {
            done += reader.read_phys(&mut page[done..], start + done as u64)?;
        }
    }
    Ok(())
}

fn open_kcore(path: &Path, ranges: &[RamRange]) -> Result<(Kcore, String), io::Error> {
    let file = File::open(path)?;
    let read = |offset: u64, len: usize| -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        buf.truncate(done);
        Ok(buf)
    };
    let segments = load_segments(&read)?.map_err(io::Error::other)?;
    let (mapping, pieces) = map_kcore(&segments, ranges).map_err(io::Error::other)?;
    let how = match mapping {
        Mapping::Paddr => format!(
            "{} PT_LOAD segments, physical addresses from p_paddr",
            segments.len()
        ),
        Mapping::DirectMap { offset } => format!(
            "{} PT_LOAD segments, p_paddr unset: physical = virtual - {offset:#x} (the direct map)",
            segments.len()
        ),
    };
    let mut pieces = pieces;
    pieces.sort_by_key(|p| p.phys);
    Ok((Kcore { file, pieces }, how))
}

/// Opens the first source that serves every range: `PROC/kcore`, then `DEV/crash`, then `DEV/mem`.
pub fn open_source(roots: &Roots, ranges: &[RamRange], lockdown: Option<&str>) -> Opened {
    let mut attempts = Vec::new();
    let kcore = roots.proc.join("kcore");
    let fail = |path: &Path, what: &str, e: &io::Error, blocked: &[&str]| Attempt {
        source: path.display().to_string(),
        used: false,
        detail: format!(
            "{what}: {}{}",
            crate::error_chain(e),
            lockdown_hint(e, lockdown, blocked)
        ),
    };
    match open_kcore(&kcore, ranges) {
        Ok((k, how)) => match probe(&k, ranges) {
            Ok(()) => {
                attempts.push(Attempt {
                    source: kcore.display().to_string(),
                    used: true,
                    detail: how,
                });
                return Opened {
                    reader: Some(Box::new(k)),
                    attempts,
                };
            }
            Err(e) => attempts.push(fail(&kcore, "reading RAM", &e, &["confidentiality"])),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => attempts.push(Attempt {
            source: kcore.display().to_string(),
            used: false,
            detail: "missing (a kernel built without CONFIG_PROC_KCORE)".to_owned(),
        }),
        Err(e) => attempts.push(fail(&kcore, "opening", &e, &["confidentiality"])),
    }
    for name in ["crash", "mem"] {
        let path = roots.dev.join(name);
        let blocked: &[&str] = &["integrity", "confidentiality"];
        match File::open(&path) {
            Ok(file) => {
                let dev = PhysDevice { file };
                match probe(&dev, ranges) {
                    Ok(()) => {
                        attempts.push(Attempt {
                            source: path.display().to_string(),
                            used: true,
                            detail: "offsets are physical addresses".to_owned(),
                        });
                        return Opened {
                            reader: Some(Box::new(dev)),
                            attempts,
                        };
                    }
                    Err(e) => attempts.push(fail(&path, "reading RAM", &e, blocked)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => attempts.push(Attempt {
                source: path.display().to_string(),
                used: false,
                detail: if name == "crash" {
                    "missing (the crash driver is not loaded; rescue never loads a module)"
                        .to_owned()
                } else {
                    "missing".to_owned()
                },
            }),
            Err(e) => attempts.push(fail(&path, "opening", &e, blocked)),
        }
    }
    Opened {
        reader: None,
        attempts,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01e03816 : Kernel code
  01e03817-0266f47f : Kernel data
7ffe0000-7fffffff : Reserved
fd000000-fdffffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:02.0
100000000-17fffffff : System RAM
";

    #[test]
    fn iomem_gives_the_top_level_system_ram_ranges() {
        let r = parse_iomem(IOMEM).unwrap();
        assert_eq!(
            r,
            vec![
                RamRange {
                    start: 0x1000,
                    end: 0x9fbff
                },
                RamRange {
                    start: 0x10_0000,
                    end: 0x7ffd_ffff
                },
                RamRange {
                    start: 0x1_0000_0000,
                    end: 0x1_7fff_ffff
                },
            ]
        );
        assert_eq!(r[0].bytes(), 0x9ec00);
        // A nested "System RAM" (some kernels list one under a bus) is not a second copy.
        let nested = "00100000-001fffff : System RAM\n  00100000-0010ffff : System RAM\n";
        assert_eq!(parse_iomem(nested).unwrap().len(), 1);
        assert_eq!(parse_iomem("00100000 System RAM\n"), Err(1));
    }

    #[test]
    fn iomem_read_without_privilege_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/iomem"),
            "00000000-00000000 : System RAM\n00000000-00000000 : System RAM\n",
        )
        .unwrap();
        let roots = Roots {
            proc: dir.path().join("proc"),
            ..Roots::host()
        };
        let err = ram_ranges(&roots).unwrap_err();
        assert!(err.to_string().contains("run as root"), "{err}");
    }

    /// An ELF64 core file: header, program headers, then each segment's bytes.
    pub(crate) fn craft_kcore(segments: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
        // (vaddr, paddr, bytes)
        let phoff = 64u64;
        let data_start = phoff + (segments.len() * PHDR_SIZE) as u64 + 8;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut offset = data_start;
        for (vaddr, paddr, bytes) in segments {
            let mut p = [0u8; PHDR_SIZE];
            p[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            p[4..8].copy_from_slice(&7u32.to_le_bytes());
            p[8..16].copy_from_slice(&offset.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            p[40..48].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&p);
            offset += bytes.len() as u64;
        }
        out.resize(data_start as usize, 0);
        for (_, _, bytes) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    fn segments_of(file: &[u8]) -> Vec<Segment> {
        let read = |o: u64, n: usize| -> io::Result<Vec<u8>> {
            Ok(file
                .get(o as usize..(o as usize + n).min(file.len()))
                .unwrap_or_default()
                .to_vec())
        };
        load_segments(&read).unwrap().unwrap()
    }

    const DIRECT: u64 = 0xffff_8880_0000_0000;

    #[test]
    fn kcore_segments_map_physical_memory_by_paddr() {
        let ranges = [
            RamRange {
                start: 0x1000,
                end: 0x2fff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x10_3fff,
            },
        ];
        let file = craft_kcore(&[
            // vmalloc: no physical address.
            (0xffff_c900_0000_0000, u64::MAX, vec![9; 0x1000]),
            (DIRECT + 0x1000, 0x1000, vec![1; 0x2000]),
            (DIRECT + 0x10_0000, 0x10_0000, vec![2; 0x4000]),
            // Kernel text, inside the second range again: either mapping reads the same bytes.
            (0xffff_ffff_8100_0000, 0x10_1000, vec![2; 0x1000]),
        ]);
        let segs = segments_of(&file);
        assert_eq!(segs.len(), 4);
        let (mapping, pieces) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(mapping, Mapping::Paddr);
        let first = 64 + 4 * 56 + 8 + 0x1000;
        assert_eq!(
            pieces[0],
            Piece {
                phys: 0x1000,
                len: 0x2000,
                file_offset: first
            }
        );
        assert_eq!(pieces.iter().map(|p| p.len).sum::<u64>(), 0x6000);
        assert_eq!(pieces[1].file_offset, first + 0x2000);

        // A range the segments do not hold is named.
        let more = [
            ranges[0],
            RamRange {
                start: 0x10_0000,
                end: 0x10_7fff,
            },
        ];
        let err = map_kcore(&segs, &more).unwrap_err();
        assert!(err.contains("0x104000-0x107fff"), "{err}");
    }

    /// Every PC BIOS machine: the first range ends mid-page (`00001000-0009fbff : System RAM`) and
    /// kcore maps whole pages only. The partial page is no reason to refuse kcore: it is read as
    /// unreadable (zero-filled and listed); a missing whole page still is.
    #[test]
    fn a_partial_page_at_a_range_edge_is_unreadable_not_a_refusal() {
        let ranges = [
            RamRange {
                start: 0x1000,
                end: 0x9_fbff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x10_3fff,
            },
        ];
        let file = craft_kcore(&[
            (DIRECT + 0x1000, 0x1000, vec![1; 0x9_e000]),
            (DIRECT + 0x10_0000, 0x10_0000, vec![2; 0x4000]),
        ]);
        let segs = segments_of(&file);
        let (_, pieces) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(pieces[0].phys, 0x1000);
        assert_eq!(
            pieces[0].len, 0x9_e000,
            "the whole pages of the first range"
        );
        let kcore = Kcore {
            file: {
                let mut f = tempfile::tempfile().unwrap();
                std::io::Write::write_all(&mut f, &file).unwrap();
                f
            },
            pieces,
        };
        probe(&kcore, &ranges).unwrap();
        let mut buf = [0u8; 16];
        assert!(kcore.read_phys(&mut buf, 0x9_f000).is_err());
        assert_eq!(kcore.read_phys(&mut buf, 0x9_eff0).unwrap(), 16);

        // A whole page missing at the tail is still named.
        let short = [RamRange {
            start: 0x1000,
            end: 0xa_0fff,
        }];
        let err = map_kcore(&segs, &short).unwrap_err();
        assert!(err.contains("0x9f000-0xa0fff"), "{err}");
    }

    #[test]
    fn kcore_without_paddr_is_mapped_through_the_direct_map_offset() {
        let ranges = [
            RamRange {
                start: 0x1000,
                end: 0x1fff,
            },
            RamRange {
                start: 0x20_0000,
                end: 0x20_1fff,
            },
        ];
        let file = craft_kcore(&[
            (0xffff_ffff_8100_0000, 0, vec![7; 0x1000]),
            (DIRECT + 0x1000, 0, vec![1; 0x1000]),
            (DIRECT + 0x20_0000, 0, vec![2; 0x2000]),
        ]);
        let segs = segments_of(&file);
        let (mapping, pieces) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(mapping, Mapping::DirectMap { offset: DIRECT });
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1].phys, 0x20_0000);
        assert_eq!(pieces[1].file_offset, segs[2].offset);
    }

    #[test]
    fn elf_headers_that_are_not_a_core_are_refused() {
        let read_of = |file: Vec<u8>| {
            move |o: u64, n: usize| -> io::Result<Vec<u8>> {
                Ok(file
                    .get(o as usize..(o as usize + n).min(file.len()))
                    .unwrap_or_default()
                    .to_vec())
            }
        };
        assert_eq!(
            load_segments(&read_of(b"hello".to_vec())).unwrap(),
            Err(KcoreError::NotElf)
        );
        let mut elf32 = craft_kcore(&[]);
        elf32[4] = 1;
        assert!(matches!(
            load_segments(&read_of(elf32)).unwrap(),
            Err(KcoreError::UnsupportedElf { class: 1, .. })
        ));
        let mut cut = craft_kcore(&[(DIRECT, 0, vec![0; 16])]);
        cut.truncate(80);
        assert!(matches!(
            load_segments(&read_of(cut)).unwrap(),
            Err(KcoreError::ShortElf { .. })
        ));
    }

    #[test]
    fn a_refusal_under_lockdown_names_the_mode_that_forbids_the_source() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let kcore_blocked = ["confidentiality"];
        assert_eq!(
            lockdown_hint(&eperm, Some("confidentiality"), &kcore_blocked),
            " (kernel lockdown is [confidentiality], which forbids it)"
        );
        // Integrity lockdown leaves /proc/kcore readable: its refusal has another cause.
        assert!(!lockdown_hint(&eperm, Some("integrity"), &kcore_blocked).contains("lockdown"));
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            lockdown_hint(&eio, Some("confidentiality"), &kcore_blocked),
            ""
        );
    }

    #[test]
    fn lockdown_mode_is_the_bracketed_word() {
        let dir = tempfile::tempdir().unwrap();
        let sec = dir.path().join("kernel/security");
        std::fs::create_dir_all(&sec).unwrap();
        let roots = Roots {
            sys: dir.path().to_owned(),
            ..Roots::host()
        };
        assert_eq!(lockdown(&roots), None);
        std::fs::write(sec.join("lockdown"), "none [integrity] confidentiality\n").unwrap();
        assert_eq!(lockdown(&roots).as_deref(), Some("integrity"));
    }
}
