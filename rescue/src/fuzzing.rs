//! The fuzz harness behind every `#[cfg(test)] mod fuzz` target of this crate (test-only: it is not in
//! the binary). A target is a function over bytes an attacker or a broken device controls; the harness
//! feeds it mutations of valid samples (bits flipped, bytes replaced by boundary values, ranges cut,
//! repeated or spliced from another sample, numbers in text swapped for huge ones, dictionary tokens
//! inserted) and plain random bytes, and fails when a case
//! - panics (the input is shrunk, saved under `target/fuzz-failures/` and printed as a byte string to
//!   paste into a regression test),
//! - runs longer than [`HANG`] (a loop that does not end on some input), or
//! - asks the allocator for one block larger than the input could justify (1 MiB plus 64 bytes per
//!   input byte), the allocation a length field read from the input
//!   would cause.
//!
//! Budget: with `RESCUE_FUZZ_SECONDS=N` (what `cargo xtask fuzz` sets) each target runs N seconds from
//! a seed taken from the clock (`RESCUE_FUZZ_SEED` replays one); otherwise it is the smoke of the normal
//! `cargo test` run: [`SMOKE_CASES`] cases from a fixed seed, cut short after [`SMOKE_TIME`]. Either
//! way a target that ran no case fails, and with `RESCUE_TEST_MARKERS` set each target leaves the marker
//! `fuzz-NAME` holding its case count, which `cargo xtask test` and `cargo xtask fuzz` check.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Cases of the smoke in a plain `cargo test` run.
pub const SMOKE_CASES: u64 = 3000;
/// The smoke of one target stops after this long even if it has not run [`SMOKE_CASES`] (a loaded
/// machine); it has run at least one case by then or it fails.
pub const SMOKE_TIME: Duration = Duration::from_secs(3);
/// One case running longer than this is a hang (debug build, loaded 2-core machine: generous).
pub const HANG: Duration = Duration::from_secs(20);

/// The allocator of the test binary: the system allocator, and a check of every block's size against
/// the limit of the case running on this thread.
struct Counting;

thread_local! {
    /// 0: no limit (every thread but a fuzz worker inside a case).
    static LIMIT: Cell<usize> = const { Cell::new(0) };
    /// The largest block asked for beyond [`LIMIT`] during the current case.
    static OVER: Cell<usize> = const { Cell::new(0) };
}

thread_local! {
    /// The input of the case running on this thread, for [`dump_before_abort`].
    static INPUT: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// Where the input goes when a case asks for so much memory that the process may abort.
static DUMP_PATH: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

fn note_size(size: usize) {
    let _ = LIMIT.try_with(|l| {
        let limit = l.get();
        if limit != 0 && size > limit {
            let _ = OVER.try_with(|o| o.set(o.get().max(size)));
            if size >= 1 << 30 {
                dump_before_abort(size);
            }
        }
    });
}

/// A block of a GiB or more may fail, and a failed allocation aborts the process before the harness
/// can report: the input is written out first, without allocating.
fn dump_before_abort(size: usize) {
    let Some(path) = DUMP_PATH.get() else { return };
    let Ok((ptr, len)) = INPUT.try_with(Cell::get) else {
        return;
    };
    // SAFETY: `path` is a valid C string; `ptr`/`len` describe the input slice `one_case` borrowed
    // for the duration of the case running on this thread; the message is a static byte string.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            if !ptr.is_null() {
                let _ = libc::write(fd, ptr.cast(), len);
            }
            libc::close(fd);
        }
        let msg = b"fuzz: a case asked for a block of 1 GiB or more; its input is in target/fuzz-failures/huge-allocation.bin\n";
        let _ = libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    let _ = size;
}

// SAFETY: every call is forwarded unchanged to `System`; the only addition reads and writes
// const-initialised thread-local cells, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_size(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One fuzz target: its name, valid samples to mutate, tokens worth inserting, and its limits.
pub struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    dict: Vec<Vec<u8>>,
    max_len: usize,
}

impl Target {
    pub fn new(name: &'static str) -> Target {
        Target {
            name,
            seeds: Vec::new(),
            dict: Vec::new(),
            max_len: 64 << 10,
        }
    }

    /// A valid input (the more realistic, the deeper the mutations reach).
    pub fn seed(mut self, bytes: impl AsRef<[u8]>) -> Target {
        self.seeds.push(bytes.as_ref().to_vec());
        self
    }

    /// Tokens of the format (keywords, separators, magic numbers) the mutator inserts.
    pub fn dict(mut self, tokens: &[&[u8]]) -> Target {
        self.dict.extend(tokens.iter().map(|t| t.to_vec()));
        self
    }

    /// Longest input generated (default 64 KiB).
    pub fn max_len(mut self, n: usize) -> Target {
        self.max_len = n;
        self
    }

    /// The largest block a case of `len` bytes may ask for.
    fn limit_for(&self, len: usize) -> usize {
        (1 << 20) + 64 * len
    }

    /// Runs the target over generated inputs (see the module doc for the budget) and panics with the
    /// failing input if a case fails.
    pub fn run(self, f: fn(&[u8])) {
        let budget = Budget::from_env();
        let outcome = run_budget(&self, f, &budget);
        match outcome {
            Outcome::Done { cases } => {
                assert!(cases > 0, "fuzz target {} ran no case", self.name);
                eprintln!(
                    "fuzz target {}: {cases} cases, seed {:#x}, 0 failures",
                    self.name, budget.seed
                );
                if let Some(dir) = std::env::var_os("RESCUE_TEST_MARKERS") {
                    let dir = PathBuf::from(dir);
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(
                        dir.join(format!("fuzz-{}", self.name)),
                        format!("{cases}\n"),
                    );
                }
            }
            Outcome::Failed { cases, input, why } => {
                let saved = save(self.name, &input);
                panic!(
                    "fuzz target {}: case {cases} (seed {:#x}) {why}\ninput ({} bytes, saved as {}):\n{}",
                    self.name,
                    budget.seed,
                    input.len(),
                    saved,
                    byte_literal(&input)
                );
            }
        }
    }
}

struct Budget {
    cases: u64,
    time: Duration,
    seed: u64,
    /// One case running longer than this is a hang ([`HANG`]).
    hang: Duration,
}

impl Budget {
    fn from_env() -> Budget {
        let seed_env = std::env::var("RESCUE_FUZZ_SEED")
            .ok()
            .and_then(|s| parse_u64(&s));
        match std::env::var("RESCUE_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(secs) => Budget {
                cases: u64::MAX,
                time: Duration::from_secs(secs),
                seed: seed_env.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1)
                }),
                hang: HANG,
            },
            None => Budget {
                cases: SMOKE_CASES,
                time: SMOKE_TIME,
                seed: seed_env.unwrap_or(0x5eed_f022),
                hang: HANG,
            },
        }
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

enum Outcome {
    Done {
        cases: u64,
    },
    Failed {
        cases: u64,
        input: Vec<u8>,
        why: String,
    },
}

/// What the worker shares with the watchdog: the case running and since when.
struct Current {
    input: Vec<u8>,
    started: Option<Instant>,
    case: u64,
}

fn failures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures")
}

fn run_budget(t: &Target, f: fn(&[u8]), budget: &Budget) -> Outcome {
    install_hook();
    DUMP_PATH.get_or_init(|| {
        let dir = failures_dir();
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("huge-allocation.bin");
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
    });
    let current = Arc::new(Mutex::new(Current {
        input: Vec::new(),
        started: None,
        case: 0,
    }));
    let (tx, rx) = mpsc::channel();
    let worker_current = Arc::clone(&current);
    let seeds = t.seeds.clone();
    let dict = t.dict.clone();
    let (max_len, name) = (t.max_len, t.name);
    let (cases_max, time, seed) = (budget.cases, budget.time, budget.seed);
    let spawned = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            let t = Target {
                name,
                seeds,
                dict,
                max_len,
            };
            let mut rng = Rng(seed | 1);
            let start = Instant::now();
            let mut cases = 0u64;
            while cases < cases_max && (cases == 0 || start.elapsed() < time) {
                let input = generate(&t, &mut rng);
                cases += 1;
                if let Ok(mut c) = worker_current.lock() {
                    c.input.clone_from(&input);
                    c.started = Some(Instant::now());
                    c.case = cases;
                }
                if let Err(why) = one_case(&t, f, &input) {
                    let input = shrink(&t, f, input, &why, &worker_current);
                    let _ = tx.send(Outcome::Failed { cases, input, why });
                    return;
                }
            }
            let _ = tx.send(Outcome::Done { cases });
        });
    if let Err(e) = spawned {
        panic!("spawning the fuzz worker: {e}");
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(outcome) => return outcome,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("fuzz worker of {} ended without a result", t.name)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let c = current.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(s) = c.started
                    && s.elapsed() > budget.hang
                {
                    // The worker is left running: a thread cannot be stopped, the test fails anyway.
                    return Outcome::Failed {
                        cases: c.case,
                        input: c.input.clone(),
                        why: format!(
                            "did not finish within {:.1} s (a hang)",
                            budget.hang.as_secs_f64()
                        ),
                    };
                }
            }
        }
    }
}

thread_local! {
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Panics on a fuzz worker thread are expected and caught: their message and place are recorded
/// for the report instead of printed once per shrinking step.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Errors of some dependencies (the `pgp` crate) capture a backtrace when RUST_BACKTRACE is
        // set; symbolizing the first one loads the debug info (megabytes) into a process-wide
        // cache. Loading it here, before any case, keeps that out of the allocation check.
        let _ = std::backtrace::Backtrace::force_capture().to_string();
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let fuzz = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("fuzz-"));
            if fuzz {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = Some(format!("panicked at {at}: {msg}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one case with the allocation limit armed: `Err` says how it failed.
fn one_case(t: &Target, f: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    OVER.with(|o| o.set(0));
    INPUT.with(|i| i.set((input.as_ptr(), input.len())));
    LIMIT.with(|l| l.set(t.limit_for(input.len())));
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(input)));
    LIMIT.with(|l| l.set(0));
    INPUT.with(|i| i.set((std::ptr::null(), 0)));
    if r.is_err() {
        return Err(PANIC_AT
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panicked".to_owned()));
    }
    let over = OVER.with(|o| o.get());
    if over > 0 {
        return Err(format!(
            "allocated one block of {over} bytes for a {}-byte input (limit {})",
            input.len(),
            t.limit_for(input.len())
        ));
    }
    Ok(())
}

/// The same kind of failure (panic place or allocation) on a smaller input.
fn same_failure(a: &str, b: &str) -> bool {
    let key = |s: &str| {
        s.split(": ")
            .next()
            .unwrap_or("")
            .split(" bytes")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    a.starts_with("allocated") && b.starts_with("allocated") || key(a) == key(b)
}

/// Cuts chunks out of a failing input while it still fails the same way (at most 2000 tries or
/// 30 s). Each try is a case the watchdog times.
fn shrink(
    t: &Target,
    f: fn(&[u8]),
    mut input: Vec<u8>,
    why: &str,
    current: &Mutex<Current>,
) -> Vec<u8> {
    let start = Instant::now();
    let mut tries = 0;
    let mut chunk = (input.len() / 2).max(1);
    let more = |tries: usize| tries < 2000 && start.elapsed() < Duration::from_secs(30);
    while chunk >= 1 && more(tries) {
        let mut progressed = false;
        let mut at = 0;
        while at < input.len() && more(tries) {
            let end = (at + chunk).min(input.len());
            let mut cand = input[..at].to_vec();
            cand.extend_from_slice(&input[end..]);
            tries += 1;
            if let Ok(mut c) = current.lock() {
                c.input.clone_from(&cand);
                c.started = Some(Instant::now());
            }
            match one_case(t, f, &cand) {
                Err(w) if same_failure(why, &w) => {
                    input = cand;
                    progressed = true;
                }
                _ => at += chunk,
            }
        }
        if !progressed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    input
}

fn save(name: &str, input: &[u8]) -> String {
    let dir = failures_dir();
    let path = dir.join(format!("{name}-{:016x}.bin", fnv(input)));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs `f` once on `input` the way a fuzz case runs (panic caught, the default allocation limit
/// armed): what a regression test of a crashing input asserts is `Ok`.
pub fn replay(f: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    install_hook();
    let t = Target::new("replay");
    let input = input.to_vec();
    // On a thread named like a fuzz worker, so the hook records the panic instead of printing it.
    std::thread::Builder::new()
        .name("fuzz-replay".into())
        .spawn(move || one_case(&t, f, &input))
        .map_err(|e| format!("spawning the replay: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the replay thread died".into()))
}

/// `b"…"` with escapes: what a regression test pastes.
pub fn byte_literal(b: &[u8]) -> String {
    let mut s = String::from("b\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

/// xorshift64*: deterministic from the seed, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

const BIG_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"ffffffffffffffff",
    b"9223372036854775807",
    b"-9223372036854775808",
];

fn generate(t: &Target, rng: &mut Rng) -> Vec<u8> {
    let mut b = if t.seeds.is_empty() || rng.chance(16) {
        let most = if rng.chance(4) { 4096 } else { 64 };
        let n = rng.below(most);
        (0..n).map(|_| rng.next() as u8).collect()
    } else {
        t.seeds[rng.below(t.seeds.len())].clone()
    };
    // Most cases: a few mutations, so the input still looks like the format and reaches deep code.
    let n = 1 + if rng.chance(3) {
        rng.below(16)
    } else {
        rng.below(3)
    };
    for _ in 0..n {
        mutate(t, rng, &mut b);
    }
    b.truncate(t.max_len);
    b
}

fn mutate(t: &Target, rng: &mut Rng, b: &mut Vec<u8>) {
    let len = b.len();
    match rng.below(13) {
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            b[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            // A boundary value, 1/2/4/8 bytes, either byte order, anywhere (often aligned).
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let w = 1 << rng.below(4);
            let mut i = rng.below(len);
            if rng.chance(2) {
                i &= !(w - 1);
            }
            let bytes = if rng.chance(2) {
                v.to_le_bytes()
            } else {
                (v << (64 - 8 * w as u32).min(63)).to_be_bytes()
            };
            for k in 0..w {
                if i + k < len {
                    b[i + k] = bytes[k];
                }
            }
        }
        3 if len > 0 => {
            // Truncate.
            b.truncate(rng.below(len));
        }
        4 if len > 0 => {
            // Cut a range out.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            b.drain(i..i + n);
        }
        5 if len > 0 => {
            // Repeat a range.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(512));
            let piece = b[i..i + n].to_vec();
            let at = rng.below(len + 1);
            b.splice(at..at, piece);
        }
        6 => {
            // Insert random bytes.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(32);
            let piece: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(at..at, piece);
        }
        7 if !t.dict.is_empty() => {
            let tok = t.dict[rng.below(t.dict.len())].clone();
            let at = rng.below(len + 1);
            if rng.chance(2) || at == len {
                b.splice(at..at, tok);
            } else {
                let end = (at + tok.len()).min(len);
                b.splice(at..end, tok);
            }
        }
        8 if len > 0 => {
            // A number in text becomes a huge, negative or overflowing one.
            let start = rng.below(len);
            if let Some(off) = b[start..].iter().position(u8::is_ascii_digit) {
                let i = start + off;
                let end = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let big = BIG_NUMBERS[rng.below(BIG_NUMBERS.len())].to_vec();
                b.splice(i..end, big);
            }
        }
        9 if t.seeds.len() > 1 => {
            // Splice: our head, another sample's tail.
            let other = &t.seeds[rng.below(t.seeds.len())];
            let at = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            b.truncate(at);
            b.extend_from_slice(&other[from..]);
        }
        10 => {
            // Extend with a run of one byte (long lines, long fields, zero padding).
            let most = if rng.chance(8) { 8192 } else { 64 };
            let n = 1 + rng.below(most);
            let c = [0u8, 0xff, b'a', b' ', b'\n', b'9'][rng.below(6)];
            let at = rng.below(len + 1);
            b.splice(at..at, std::iter::repeat_n(c, n));
        }
        11 if len > 1 => {
            // Swap two bytes.
            let (i, j) = (rng.below(len), rng.below(len));
            b.swap(i, j);
        }
        12 if len > 0 => {
            // Overwrite with a copy of another part of itself.
            let (i, j) = (rng.below(len), rng.below(len));
            let n = 1 + rng.below((len - i.max(j)).min(64));
            let piece = b[i..i + n].to_vec();
            b[j..j + n].copy_from_slice(&piece);
        }
        _ => b.push(rng.next() as u8),
    }
}

/// The bytes as a file the target can open: readers that take a `File` (SQLite, Berkeley DB, journal
/// files) get a fresh anonymous one per case.
pub fn file_of(bytes: &[u8]) -> std::fs::File {
    use std::io::{Seek, Write};
    let mut f = tempfile::tempfile().unwrap_or_else(|e| panic!("temporary file: {e}"));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("writing the temporary file: {e}"));
    f.rewind()
        .unwrap_or_else(|e| panic!("rewinding the temporary file: {e}"));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            cases: 500,
            time: Duration::from_secs(30),
            seed: 7,
            hang: HANG,
        }
    }

    fn panics_on_magic(b: &[u8]) {
        if b.windows(3).any(|w| w == b"BAD") {
            panic!("planted panic");
        }
    }

    #[test]
    fn a_planted_panic_is_found_and_shrunk_to_its_cause() {
        let t = Target::new("planted")
            .seed(b"a good line\nanother good line\n")
            .dict(&[b"BAD"]);
        match run_budget(&t, panics_on_magic, &budget()) {
            Outcome::Failed { input, why, .. } => {
                assert_eq!(input, b"BAD", "{why}");
                assert!(why.contains("planted panic"), "{why}");
                assert!(why.contains("fuzzing.rs"), "{why}");
            }
            Outcome::Done { cases } => panic!("{cases} cases and the planted panic not found"),
        }
    }

    fn allocates_what_the_input_says(b: &[u8]) {
        if let [a, b2, c, d, ..] = *b {
            let n = u32::from_le_bytes([a, b2, c, d]) as usize;
            if n > 1 << 24 {
                // A length field believed: this is what the limit is there to catch.
                let v: Vec<u8> = Vec::with_capacity(n);
                std::hint::black_box(v);
            }
        }
    }

    #[test]
    fn an_allocation_the_input_cannot_justify_is_a_failure() {
        let t = Target::new("planted-alloc").seed([0u8, 0, 0, 0, 1, 2, 3]);
        match run_budget(&t, allocates_what_the_input_says, &budget()) {
            Outcome::Failed { why, input, .. } => {
                assert!(why.starts_with("allocated one block of"), "{why}");
                assert!(input.len() >= 4);
            }
            Outcome::Done { cases } => panic!("{cases} cases and the planted allocation not found"),
        }
    }

    fn stalls_on_magic(b: &[u8]) {
        if b.windows(4).any(|w| w == b"STOP") {
            // Long enough for the watchdog below; the worker thread ends soon after the test.
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    #[test]
    fn a_case_that_does_not_finish_is_reported_with_its_input() {
        let t = Target::new("planted-hang").seed(b"go on").dict(&[b"STOP"]);
        let b = Budget {
            hang: Duration::from_millis(300),
            ..budget()
        };
        match run_budget(&t, stalls_on_magic, &b) {
            Outcome::Failed { input, why, .. } => {
                assert!(why.contains("a hang"), "{why}");
                assert!(input.windows(4).any(|w| w == b"STOP"), "{input:?}");
            }
            Outcome::Done { cases } => panic!("{cases} cases and the planted hang not found"),
        }
    }

    #[test]
    fn a_quiet_target_runs_every_case_of_its_budget() {
        let t = Target::new("quiet").seed(b"x");
        match run_budget(&t, |b| assert!(b.len() <= 64 << 10), &budget()) {
            Outcome::Done { cases } => assert_eq!(cases, 500),
            Outcome::Failed { why, .. } => panic!("{why}"),
        }
    }

    #[test]
    fn replay_reports_the_panic_of_a_crashing_input_and_passes_a_good_one() {
        let err = replay(panics_on_magic, b"xxBADxx").unwrap_err();
        assert!(err.contains("planted panic"), "{err}");
        assert_eq!(replay(panics_on_magic, b"good"), Ok(()));
        let err = replay(allocates_what_the_input_says, &(1u32 << 28).to_le_bytes()).unwrap_err();
        assert!(err.starts_with("allocated one block"), "{err}");
    }

    #[test]
    fn byte_literals_paste_back_as_the_same_bytes() {
        assert_eq!(byte_literal(b"a\"\\\n\x00\xff"), r#"b"a\"\\\n\x00\xff""#);
    }
}
