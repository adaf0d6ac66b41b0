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
/// segment holding it (by `mapping`) gives the file offset; and the gaps, the parts of the ranges no
/// segment holds (in order, merged).
fn cover(segments: &[(u64, &Segment)], ranges: &[RamRange]) -> (Vec<Piece>, Vec<RamRange>) {
    let mut pieces = Vec::new();
    let mut gaps: Vec<RamRange> = Vec::new();
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
                // The kernel maps whole pages only: the part of a page a range shares with a hole
                // is read as unreadable (zero-filled and listed), not a gap to fill from elsewhere.
                if !partial_page_edge(r, at, next) {
                    match gaps.last_mut() {
                        Some(g) if g.end.saturating_add(1) == at => g.end = next - 1,
                        _ => gaps.push(RamRange {
                            start: at,
                            end: next - 1,
                        }),
                    }
                }
                if next == 0 {
                    break;
                }
                at = next;
                continue;
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
    (pieces, gaps)
}

/// `ranges` without `gaps` (both sorted; every gap lies inside one range).
pub fn subtract(ranges: &[RamRange], gaps: &[RamRange]) -> Vec<RamRange> {
    let mut out = Vec::new();
    for r in ranges {
        let mut at = r.start;
        let mut open = true;
        for g in gaps.iter().filter(|g| g.end >= r.start && g.start <= r.end) {
            if g.start > at {
                out.push(RamRange {
                    start: at,
                    end: g.start - 1,
                });
            }
            match g.end.checked_add(1) {
                Some(next) => at = next,
                None => open = false,
            }
        }
        if open && at <= r.end {
            out.push(RamRange {
                start: at,
                end: r.end,
            });
        }
    }
    out
}

/// Bytes in `ranges`.
pub fn total(ranges: &[RamRange]) -> u64 {
    ranges.iter().map(RamRange::bytes).sum()
}

/// `0x1000-0x9fbff, 0x100000-0x7ffdffff` (inclusive ends, as iomem writes them).
pub fn list(ranges: &[RamRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{:#x}-{:#x}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Ties the segments of a kcore to physical memory: the mapping, the pieces of the file that hold RAM
/// and the gaps, the parts of `ranges` no segment holds (some hypervisors' and older kernels' kcore
/// map only part of RAM). `Err` is the reason in words when no physical address can be tied to the
/// segments at all.
pub fn map_kcore(
    segments: &[Segment],
    ranges: &[RamRange],
) -> Result<(Mapping, Vec<Piece>, Vec<RamRange>), String> {
    let has_paddr = segments.iter().any(|s| s.paddr != 0 && s.paddr != u64::MAX);
    if has_paddr {
        let by_paddr: Vec<(u64, &Segment)> = segments
            .iter()
            .filter(|s| s.paddr != u64::MAX)
            .map(|s| (s.paddr, s))
            .collect();
        let (pieces, gaps) = cover(&by_paddr, ranges);
        return Ok((Mapping::Paddr, pieces, gaps));
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
    let (pieces, gaps) = cover(&by_vaddr, ranges);
    Ok((Mapping::DirectMap { offset }, pieces, gaps))
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

/// Physical memory read from several sources, each serving its own ranges (a kcore that maps only
/// part of RAM, and `/dev/crash` or `/dev/mem` for the rest).
pub struct Composite {
    /// Sorted, disjoint: each range and the index of the source that reads it.
    parts: Vec<(RamRange, usize)>,
    sources: Vec<Box<dyn PhysRead>>,
}

impl PhysRead for Composite {
    fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize> {
        let i = self.parts.partition_point(|(r, _)| r.start <= phys);
        let Some((r, source)) = i
            .checked_sub(1)
            .map(|i| self.parts[i])
            .filter(|(r, _)| phys <= r.end)
        else {
            // No source holds it: unreadable. Cheap, since the driver narrows a failing block
            // down page by page (no allocation, no formatting).
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        };
        let left = r.end - phys + 1;
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        self.sources[source].read_phys(&mut buf[..n], phys)
    }
}

/// What one source gave, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The path read (`/proc/kcore`, `/dev/crash`, `/dev/mem`).
    pub source: String,
    /// True for a source the capture reads.
    pub used: bool,
    /// How it was mapped, or why it was not used.
    pub detail: String,
    /// The physical ranges read from it (empty when not used).
    pub ranges: Vec<RamRange>,
}

/// The chosen sources, the attempts (in order) and what no source holds.
pub struct Opened {
    pub reader: Option<Box<dyn PhysRead>>,
    pub attempts: Vec<Attempt>,
    /// Parts of RAM no source could read (zero-filled and listed as unreadable in the capture).
    pub unserved: Vec<RamRange>,
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

/// A whole page inside `r` (its partial pages may be in no kcore segment), up to [`PAGE`] bytes.
fn page_in(r: &RamRange) -> (u64, usize) {
    let start = r.start.next_multiple_of(PAGE);
    let len = r.end.saturating_add(1).saturating_sub(start).min(PAGE);
    (start, len as usize)
}

fn read_page(reader: &dyn PhysRead, phys: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut page = vec![0u8; len];
    let mut done = 0;
    while done < page.len() {
        done += reader.read_phys(&mut page[done..], phys + done as u64)?;
    }
    Ok(page)
}

/// Reads one page at the start of the first range and of the largest range: a source that opens but
/// refuses RAM (a strict `/dev/mem` allows only the first MiB) fails here.
fn probe(reader: &dyn PhysRead, ranges: &[RamRange]) -> io::Result<()> {
    let largest = ranges.iter().max_by_key(|r| r.bytes());
    for r in ranges.first().into_iter().chain(largest) {
        let (start, len) = page_in(r);
        read_page(reader, start, len)?;
    }
    Ok(())
}

/// A page known to hold data (never all zeros in real memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub phys: u64,
    /// What it is, for the reason (`the kernel's code ("Kernel code" in /proc/iomem)`).
    pub what: String,
}

/// Pages sampled across the ranges a device would serve when no witness can be read through it.
const ZERO_SAMPLES: u64 = 16;

/// Why a device that answered the probe still cannot be trusted, or `None`: under
/// `CONFIG_STRICT_DEVMEM` `/dev/mem` may serve zeros instead of refusing RAM it guards (on x86 the
/// RAM below 1 MiB; other architectures and vendor kernels differ). A witness page read as zeros
/// through it proves it; without a witness it can read, [`ZERO_SAMPLES`] pages spread over `ranges`
/// that all read as zeros (or fail) are taken as the same answer.
pub fn zeros_instead_of_ram(
    dev: &dyn PhysRead,
    witnesses: &[Witness],
    ranges: &[RamRange],
) -> Option<String> {
    const WHY: &str = "the kernel serves zeros for RAM it guards (CONFIG_STRICT_DEVMEM), so what it gives is not memory";
    for w in witnesses {
        match read_page(dev, w.phys, PAGE as usize) {
            Ok(page) if page.iter().all(|b| *b == 0) => {
                return Some(format!(
                    "reads zeros at physical {:#x}, {}: {WHY}",
                    w.phys, w.what
                ));
            }
            Ok(_) => return None,
            // Refused there (a strict /dev/mem refuses RAM above 1 MiB): no proof either way.
            Err(_) => {}
        }
    }
    let pages: u64 = ranges
        .iter()
        .map(|r| {
            r.end
                .saturating_add(1)
                .saturating_sub(r.start.next_multiple_of(PAGE))
                / PAGE
        })
        .sum();
    if pages == 0 {
        return None;
    }
    let step = (pages / ZERO_SAMPLES).max(1);
    let mut sampled = 0;
    let mut index = 0u64;
    for r in ranges {
        let first = r.start.next_multiple_of(PAGE);
        let n = r.end.saturating_add(1).saturating_sub(first) / PAGE;
        let mut k = index.next_multiple_of(step) - index;
        while k < n && sampled < ZERO_SAMPLES {
            let data = read_page(dev, first + k * PAGE, PAGE as usize)
                .is_ok_and(|p| p.iter().any(|b| *b != 0));
            if data {
                return None;
            }
            sampled += 1;
            k += step;
        }
        index += n;
    }
    Some(format!(
        "each of the {sampled} pages sampled in {} reads as zeros or fails, and no page known to hold data could be read through it to tell otherwise: {WHY}",
        list(ranges)
    ))
}

/// The first "Kernel code" entry nested in an iomem listing (`None` where addresses are hidden).
pub fn parse_kernel_code(text: &str) -> Option<RamRange> {
    text.lines().find_map(|line| {
        let (span, name) = line.trim().split_once(" : ")?;
        if name.trim() != "Kernel code" {
            return None;
        }
        let (a, b) = span.split_once('-')?;
        let r = RamRange {
            start: u64::from_str_radix(a, 16).ok()?,
            end: u64::from_str_radix(b, 16).ok()?,
        };
        (r.start != 0 && r.end >= r.start).then_some(r)
    })
}

/// The kernel's code (`PROC/iomem`), a witness no real memory source reads as zeros.
fn kernel_code(roots: &Roots) -> Option<RamRange> {
    parse_kernel_code(&std::fs::read_to_string(roots.proc.join("iomem")).ok()?)
}

/// A kcore opened and tied to physical memory: its reader, how, and what it does not hold.
pub struct KcoreFound {
    pub reader: Box<dyn PhysRead>,
    pub how: String,
    pub gaps: Vec<RamRange>,
}

fn open_kcore(path: &Path, ranges: &[RamRange]) -> Result<KcoreFound, io::Error> {
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
    let (mapping, mut pieces, gaps) = map_kcore(&segments, ranges).map_err(io::Error::other)?;
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
    pieces.sort_by_key(|p| p.phys);
    Ok(KcoreFound {
        reader: Box::new(Kcore { file, pieces }),
        how,
        gaps,
    })
}

/// A source as it opened (or why not), for [`choose`].
pub struct Candidate<T> {
    /// `/proc/kcore`, `/dev/crash`, `/dev/mem`.
    pub path: String,
    pub opened: io::Result<T>,
}

/// Picks the sources: `/proc/kcore` for the RAM its segments hold, then the first device (in order)
/// that reads the rest, neither refusing it nor serving zeros for it
/// ([`zeros_instead_of_ram`], with `text`, the kernel's code, and pages kcore reads as data as
/// witnesses). What no source holds is listed in `unserved`.
pub fn choose(
    ranges: &[RamRange],
    text: Option<RamRange>,
    lockdown: Option<&str>,
    kcore: Candidate<KcoreFound>,
    devices: Vec<Candidate<Box<dyn PhysRead>>>,
) -> Opened {
    let mut attempts = Vec::new();
    let mut sources: Vec<Box<dyn PhysRead>> = Vec::new();
    let mut parts: Vec<(RamRange, usize)> = Vec::new();
    let mut left = ranges.to_vec();
    // The kernel's code is never all zeros: a witness against a device serving zeros for RAM.
    let text_page = text.and_then(|t| {
        let p = t.start.next_multiple_of(PAGE);
        (p.saturating_add(PAGE - 1) <= t.end).then_some(p)
    });
    let mut witnesses: Vec<Witness> = text_page
        .map(|phys| Witness {
            phys,
            what: "the kernel's code (\"Kernel code\" in /proc/iomem)".to_owned(),
        })
        .into_iter()
        .collect();
    let fail = |path: &str, what: &str, e: &io::Error, blocked: &[&str]| Attempt {
        source: path.to_owned(),
        used: false,
        detail: format!(
            "{what}: {}{}",
            crate::error_chain(e),
            lockdown_hint(e, lockdown, blocked)
        ),
        ranges: Vec::new(),
    };
    let mut kcore_attempt = None;
    match kcore.opened {
        Ok(found) => {
            let held = subtract(ranges, &found.gaps);
            if held.is_empty() {
                attempts.push(Attempt {
                    source: kcore.path,
                    used: false,
                    detail: format!("{}; no segment holds any System RAM", found.how),
                    ranges: Vec::new(),
                });
            } else {
                match probe(found.reader.as_ref(), &held) {
                    Ok(()) => {
                        // Pages kcore reads as data witness against a device serving zeros.
                        for r in &held {
                            let (phys, len) = page_in(r);
                            if len == PAGE as usize
                                && Some(phys) != text_page
                                && read_page(found.reader.as_ref(), phys, len)
                                    .is_ok_and(|p| p.iter().any(|b| *b != 0))
                            {
                                witnesses.push(Witness {
                                    phys,
                                    what: "a page /proc/kcore reads as data".to_owned(),
                                });
                            }
                        }
                        let detail = if found.gaps.is_empty() {
                            found.how
                        } else {
                            format!(
                                "{}; it holds {} of {} bytes of System RAM, no segment holds {} ({} bytes)",
                                found.how,
                                total(&held),
                                total(ranges),
                                list(&found.gaps),
                                total(&found.gaps)
                            )
                        };
                        sources.push(found.reader);
                        parts.extend(held.iter().map(|r| (*r, 0)));
                        left = found.gaps;
                        kcore_attempt = Some(attempts.len());
                        attempts.push(Attempt {
                            source: kcore.path,
                            used: true,
                            detail,
                            ranges: held,
                        });
                    }
                    Err(e) => {
                        attempts.push(fail(&kcore.path, "reading RAM", &e, &["confidentiality"]))
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => attempts.push(Attempt {
            source: kcore.path,
            used: false,
            detail: "missing (a kernel built without CONFIG_PROC_KCORE)".to_owned(),
            ranges: Vec::new(),
        }),
        Err(e) => attempts.push(fail(&kcore.path, "opening", &e, &["confidentiality"])),
    }
    let blocked: &[&str] = &["integrity", "confidentiality"];
    for dev in devices {
        if left.is_empty() {
            break;
        }
        let crash = dev.path.ends_with("/crash");
        match dev.opened {
            Ok(reader) => match probe(reader.as_ref(), &left) {
                Ok(()) => match zeros_instead_of_ram(reader.as_ref(), &witnesses, &left) {
                    None => {
                        let index = sources.len();
                        sources.push(reader);
                        parts.extend(left.iter().map(|r| (*r, index)));
                        attempts.push(Attempt {
                            source: dev.path,
                            used: true,
                            detail: if kcore_attempt.is_some() {
                                "offsets are physical addresses; it reads what /proc/kcore does not hold".to_owned()
                            } else {
                                "offsets are physical addresses".to_owned()
                            },
                            ranges: std::mem::take(&mut left),
                        });
                    }
                    Some(why) => attempts.push(Attempt {
                        source: dev.path,
                        used: false,
                        detail: why,
                        ranges: Vec::new(),
                    }),
                },
                Err(e) => attempts.push(fail(&dev.path, "reading RAM", &e, blocked)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => attempts.push(Attempt {
                source: dev.path,
                used: false,
                detail: if crash {
                    "missing (the crash driver is not loaded; rescue never loads a module)"
                        .to_owned()
                } else {
                    "missing".to_owned()
                },
                ranges: Vec::new(),
            }),
            Err(e) => attempts.push(fail(&dev.path, "opening", &e, blocked)),
        }
    }
    if sources.is_empty() {
        return Opened {
            reader: None,
            attempts,
            unserved: ranges.to_vec(),
        };
    }
    if let Some(i) = kcore_attempt
        && !left.is_empty()
    {
        attempts[i].detail.push_str(
            "; no other source reads the rest, so it is zero-filled and listed as unreadable",
        );
    }
    parts.sort_by_key(|(r, _)| r.start);
    Opened {
        reader: Some(Box::new(Composite { parts, sources })),
        attempts,
        unserved: left,
    }
}

/// Opens the sources of physical memory: `PROC/kcore` for what it maps, then `DEV/crash`, then
/// `DEV/mem` for the rest (see [`choose`]).
pub fn open_source(roots: &Roots, ranges: &[RamRange], lockdown: Option<&str>) -> Opened {
    let kcore = roots.proc.join("kcore");
    let kcore = Candidate {
        path: kcore.display().to_string(),
        opened: open_kcore(&kcore, ranges),
    };
    let devices = ["crash", "mem"]
        .iter()
        .map(|name| {
            let path = roots.dev.join(name);
            Candidate {
                path: path.display().to_string(),
                opened: File::open(&path)
                    .map(|file| Box::new(PhysDevice { file }) as Box<dyn PhysRead>),
            }
        })
        .collect();
    choose(ranges, kernel_code(roots), lockdown, kcore, devices)
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
        let (mapping, pieces, gaps) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(mapping, Mapping::Paddr);
        assert_eq!(gaps, []);
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

        // The part of a range the segments do not hold is a gap, the rest still pieces.
        let more = [
            ranges[0],
            RamRange {
                start: 0x10_0000,
                end: 0x10_7fff,
            },
        ];
        let (_, pieces, gaps) = map_kcore(&segs, &more).unwrap();
        assert_eq!(pieces.iter().map(|p| p.len).sum::<u64>(), 0x6000);
        assert_eq!(
            gaps,
            [RamRange {
                start: 0x10_4000,
                end: 0x10_7fff
            }]
        );
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
        let (_, pieces, gaps) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(gaps, [], "a partial page is not a gap");
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

        // A whole page missing at the tail is a gap.
        let short = [RamRange {
            start: 0x1000,
            end: 0xa_0fff,
        }];
        let (_, _, gaps) = map_kcore(&segs, &short).unwrap();
        assert_eq!(
            gaps,
            [RamRange {
                start: 0x9_f000,
                end: 0xa_0fff
            }]
        );
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
        let (mapping, pieces, gaps) = map_kcore(&segs, &ranges).unwrap();
        assert_eq!(mapping, Mapping::DirectMap { offset: DIRECT });
        assert_eq!(gaps, []);
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

    /// Physical memory as a function: `None` is a refusal (`EPERM`).
    struct Fake(fn(u64) -> Option<u8>);

    impl PhysRead for Fake {
        fn read_phys(&self, buf: &mut [u8], phys: u64) -> io::Result<usize> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (self.0)(phys + i as u64)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::EPERM))?;
            }
            Ok(buf.len())
        }
    }

    fn data(a: u64) -> u8 {
        (a.wrapping_mul(31) ^ (a >> 12)) as u8 | 1
    }

    const FIRST: RamRange = RamRange {
        start: 0x1000,
        end: 0x9_fbff,
    };
    const SECOND: RamRange = RamRange {
        start: 0x10_0000,
        end: 0x2f_ffff,
    };
    const TEXT: RamRange = RamRange {
        start: 0x10_0000,
        end: 0x10_ffff,
    };

    fn missing<T>(path: &str) -> Candidate<T> {
        Candidate {
            path: path.to_owned(),
            opened: Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn device(path: &str, f: fn(u64) -> Option<u8>) -> Candidate<Box<dyn PhysRead>> {
        Candidate {
            path: path.to_owned(),
            opened: Ok(Box::new(Fake(f))),
        }
    }

    /// A kcore holding the second range only (the first, below 1 MiB, is in no segment).
    fn kcore_without_first() -> Candidate<KcoreFound> {
        Candidate {
            path: "/proc/kcore".to_owned(),
            opened: Ok(KcoreFound {
                reader: Box::new(Fake(|a| (a >= 0x10_0000).then(|| data(a)))),
                how: "2 PT_LOAD segments".to_owned(),
                gaps: vec![FIRST],
            }),
        }
    }

    fn read_all(reader: &dyn PhysRead, r: RamRange) -> Vec<u8> {
        read_page(reader, r.start, r.bytes() as usize).unwrap()
    }

    /// A kernel that serves zeros for guarded RAM (`CONFIG_STRICT_DEVMEM`): the capture must not take
    /// those zeros as memory. Seen three ways: the kernel's own code reads as zeros; x86's rule (RAM
    /// below 1 MiB reads as zeros, above it is refused) where no page with data can be read through
    /// it; and, as the counter-case, a device that reads a witness as data is trusted even where the
    /// RAM it serves happens to hold zeros.
    #[test]
    fn dev_mem_serving_zeros_for_ram_is_refused_not_captured() {
        let ranges = [FIRST, SECOND];
        // 1. No kcore; /dev/mem reads zeros everywhere, the kernel code too.
        let o = choose(
            &ranges,
            Some(TEXT),
            Some("none"),
            missing("/proc/kcore"),
            vec![missing("/dev/crash"), device("/dev/mem", |_| Some(0))],
        );
        assert!(o.reader.is_none());
        assert_eq!(o.unserved, ranges);
        let mem = &o.attempts[2];
        assert!(!mem.used && mem.ranges.is_empty());
        assert!(
            mem.detail
                .contains("reads zeros at physical 0x100000, the kernel's code")
                && mem.detail.contains("CONFIG_STRICT_DEVMEM"),
            "{}",
            mem.detail
        );

        // 2. x86's strict rule, with kcore lacking the first range: the device answers the probe
        //    (zeros below 1 MiB) but refuses every witness; the sampled pages are all zeros.
        let strict: fn(u64) -> Option<u8> = |a| (a < 0x10_0000).then_some(0);
        let o = choose(
            &ranges,
            Some(TEXT),
            None,
            kcore_without_first(),
            vec![missing("/dev/crash"), device("/dev/mem", strict)],
        );
        let reader = o.reader.expect("kcore still reads what it holds");
        assert_eq!(o.unserved, [FIRST]);
        let (k, mem) = (&o.attempts[0], &o.attempts[2]);
        assert!(k.used && k.ranges == [SECOND], "{k:?}");
        assert!(
            k.detail.contains("no segment holds 0x1000-0x9fbff")
                && k.detail.contains("zero-filled and listed as unreadable"),
            "{}",
            k.detail
        );
        assert!(!mem.used);
        assert!(
            mem.detail
                .contains("each of the 16 pages sampled in 0x1000-0x9fbff reads as zeros"),
            "{}",
            mem.detail
        );
        let mut b = [0u8; 8];
        assert!(reader.read_phys(&mut b, 0x2000).is_err(), "unserved");
        assert_eq!(read_all(reader.as_ref(), SECOND)[5], data(0x10_0005));

        // 3. Memory that is zero but a device that reads kcore's witness pages as data: trusted.
        let honest: fn(u64) -> Option<u8> = |a| Some(if a < 0x10_0000 { 0 } else { data(a) });
        let o = choose(
            &ranges,
            Some(TEXT),
            None,
            kcore_without_first(),
            vec![missing("/dev/crash"), device("/dev/mem", honest)],
        );
        assert!(o.unserved.is_empty());
        assert!(o.attempts[2].used, "{:?}", o.attempts[2]);
    }

    /// A kcore that maps part of RAM is used for that part; the next source that can read the rest
    /// reads it, and the manifest lists which ranges came from where. Files stand for the sources:
    /// a crafted kcore whose segments hold the first range and the first MiB of the second, and a
    /// `/dev/mem` whose offsets are physical addresses, holding other bytes than kcore, so that each
    /// byte of the capture shows which source it came from.
    #[test]
    fn a_kcore_that_maps_part_of_ram_is_used_for_it_and_dev_mem_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (proc, dev) = (dir.path().join("proc"), dir.path().join("dev"));
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            proc.join("iomem"),
            "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n\
             00100000-002fffff : System RAM\n  00100000-0010ffff : Kernel code\n",
        )
        .unwrap();
        let bytes = |lo: u64, hi: u64| (lo..hi).map(data).collect::<Vec<u8>>();
        std::fs::write(
            proc.join("kcore"),
            craft_kcore(&[
                (DIRECT + 0x1000, 0x1000, bytes(0x1000, 0x9_f000)),
                (DIRECT + 0x10_0000, 0x10_0000, bytes(0x10_0000, 0x20_0000)),
            ]),
        )
        .unwrap();
        let mem: Vec<u8> = (0..0x30_0000u64).map(|a| !data(a)).collect();
        std::fs::write(dev.join("mem"), mem).unwrap();
        let roots = Roots {
            proc,
            dev,
            ..Roots::host()
        };
        let ranges = ram_ranges(&roots).unwrap();
        assert_eq!(ranges, [FIRST, SECOND]);
        assert_eq!(kernel_code(&roots), Some(TEXT));
        let o = open_source(&roots, &ranges, None);
        let summary: Vec<(&str, bool, &[RamRange])> = o
            .attempts
            .iter()
            .map(|a| {
                (
                    a.source.rsplit('/').next().unwrap(),
                    a.used,
                    a.ranges.as_slice(),
                )
            })
            .collect();
        let upper = RamRange {
            start: 0x20_0000,
            end: 0x2f_ffff,
        };
        assert_eq!(
            summary,
            [
                (
                    "kcore",
                    true,
                    &[
                        FIRST,
                        RamRange {
                            start: 0x10_0000,
                            end: 0x1f_ffff
                        }
                    ][..]
                ),
                ("crash", false, &[][..]),
                ("mem", true, &[upper][..]),
            ]
        );
        assert!(
            o.attempts[0]
                .detail
                .contains("no segment holds 0x200000-0x2fffff (1048576 bytes)"),
            "{}",
            o.attempts[0].detail
        );
        assert!(o.unserved.is_empty());
        let reader = o.reader.unwrap();
        // The first range's whole pages from kcore; its partial last page from no source.
        let first = read_page(reader.as_ref(), 0x1000, 0x9_e000).unwrap();
        assert_eq!(first, bytes(0x1000, 0x9_f000));
        assert!(reader.read_phys(&mut [0u8; 4], 0x9_f000).is_err());
        let mut second = vec![0u8; SECOND.bytes() as usize];
        let mut done = 0;
        while done < second.len() {
            // Reads straddling the boundary between the sources stop at it.
            done += reader
                .read_phys(&mut second[done..], SECOND.start + done as u64)
                .unwrap();
        }
        assert_eq!(second[..0x10_0000], bytes(0x10_0000, 0x20_0000)[..]);
        let from_mem: Vec<u8> = (0x20_0000..0x30_0000u64).map(|a| !data(a)).collect();
        assert_eq!(second[0x10_0000..], from_mem[..]);
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
