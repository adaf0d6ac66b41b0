//! `state/time.json`: the time sources, so an examiner can place every other time: the current
//! clocksource (`/sys/devices/system/clocksource/clocksource0`), `CLOCK_REALTIME` against
//! `CLOCK_BOOTTIME` (their difference is the boot time to the microsecond, compared with `btime`),
//! the kernel's NTP state from a read-only `adjtimex` (synchronized or not, offset, frequency,
//! error bounds) and the hardware clock (`/sys/class/rtc/rtc0/since_epoch`) against the system clock.
//!
//! The clocks are system calls: they read the running kernel, whatever [`Roots`] points at.

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// The kernel's NTP state (`adjtimex` with no mode bit set changes nothing).
#[derive(Debug, Clone, Serialize)]
pub struct Ntp {
    /// `TIME_OK`, `TIME_INS`, `TIME_DEL`, `TIME_OOP`, `TIME_WAIT`, `TIME_ERROR` (not synchronized).
    pub state: String,
    pub synchronized: bool,
    /// `STA_*` bits in words.
    pub status: Vec<String>,
    pub offset_seconds: f64,
    /// Frequency correction, parts per million.
    pub frequency_ppm: f64,
    pub max_error_seconds: f64,
    pub estimated_error_seconds: f64,
    /// TAI − UTC, seconds.
    pub tai_offset: i64,
}

const STA: [(i32, &str); 16] = [
    (0x0001, "PLL"),
    (0x0002, "PPSFREQ"),
    (0x0004, "PPSTIME"),
    (0x0008, "FLL"),
    (0x0010, "INS"),
    (0x0020, "DEL"),
    (0x0040, "UNSYNC"),
    (0x0080, "FREQHOLD"),
    (0x0100, "PPSSIGNAL"),
    (0x0200, "PPSJITTER"),
    (0x0400, "PPSWANDER"),
    (0x0800, "PPSERROR"),
    (0x1000, "CLOCKERR"),
    (0x2000, "NANO"),
    (0x4000, "MODE"),
    (0x8000, "CLK"),
];

/// The fields of a `struct timex` this module reports, in words.
pub fn ntp_from(
    ret: i32,
    status: i32,
    offset: i64,
    freq: i64,
    maxerror: i64,
    esterror: i64,
    tai: i64,
) -> Ntp {
    let state = match ret {
        0 => "TIME_OK",
        1 => "TIME_INS",
        2 => "TIME_DEL",
        3 => "TIME_OOP",
        4 => "TIME_WAIT",
        5 => "TIME_ERROR",
        _ => "unknown",
    };
    let nano = status & 0x2000 != 0;
    Ntp {
        state: state.into(),
        synchronized: ret != 5 && status & 0x0040 == 0,
        status: STA
            .iter()
            .filter(|(b, _)| status & b != 0)
            .map(|(_, w)| (*w).to_owned())
            .collect(),
        offset_seconds: offset as f64 / if nano { 1e9 } else { 1e6 },
        frequency_ppm: freq as f64 / 65536.0,
        max_error_seconds: maxerror as f64 / 1e6,
        estimated_error_seconds: esterror as f64 / 1e6,
        tai_offset: tai,
    }
}

fn ntp(d: &mut Doc) -> Option<Ntp> {
    // SAFETY: an all-zero `timex` is a valid value (plain integers); with `modes` 0 adjtimex only
    // fills it in and changes nothing.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable `timex` for the duration of the call.
    let ret = unsafe { libc::adjtimex(&mut t) };
    if ret < 0 {
        d.note(format!("adjtimex: {}", std::io::Error::last_os_error()));
        return None;
    }
    Some(ntp_from(
        ret,
        t.status,
        t.offset,
        t.freq,
        t.maxerror,
        t.esterror,
        i64::from(t.tai),
    ))
}

fn clock(id: nix::time::ClockId, d: &mut Doc) -> Option<f64> {
    match nix::time::clock_gettime(id) {
        Ok(t) => Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9),
        Err(e) => {
            d.note(format!("clock_gettime({id:?}): {e}"));
            None
        }
    }
}

/// Collects `state/time.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let mut d = Doc::start(
        "state/time.json",
        "rescue.live.time/1",
        "clock_gettime(REALTIME, BOOTTIME, MONOTONIC), adjtimex (read-only), /sys/devices/system/clocksource/clocksource0, /sys/class/rtc/rtc0, /proc/stat btime",
    );
    let cs = roots.sys.join("devices/system/clocksource/clocksource0");
    let mut small = |name: &str| match doc::read(&cs.join(name)) {
        Ok(b) => Some(text(b.trim_ascii())),
        Err(e) => {
            d.note(format!("{}: {}", cs.join(name).display(), doc::why(&e)));
            None
        }
    };
    let current = small("current_clocksource");
    let available = small("available_clocksource");
    let realtime = clock(nix::time::ClockId::CLOCK_REALTIME, &mut d);
    let boottime = clock(nix::time::ClockId::CLOCK_BOOTTIME, &mut d);
    let monotonic = clock(nix::time::ClockId::CLOCK_MONOTONIC, &mut d);
    let boot_from_clocks = realtime.zip(boottime).map(|(r, b)| r - b);
    let btime: Option<u64> = doc::read(&roots.proc.join("stat")).ok().and_then(|b| {
        b.split(|&c| c == b'\n')
            .find_map(|l| doc::num(l.strip_prefix(b"btime ")?))
    });
    let rtc_path = roots.sys.join("class/rtc/rtc0/since_epoch");
    let rtc: Option<u64> = match doc::read(&rtc_path) {
        Ok(b) => doc::num(&b),
        Err(e) => {
            d.note(format!(
                "{}: {} (no hardware clock, or a virtual machine without one)",
                rtc_path.display(),
                doc::why(&e)
            ));
            None
        }
    };
    let ntp = ntp(&mut d);
    if let Some(n) = &ntp
        && !n.synchronized
    {
        d.note(
            "the kernel says the system clock is not synchronized (adjtimex TIME_ERROR/STA_UNSYNC)",
        );
    }
    d.finish(vec![
        ("clocksource", doc::json(&current)),
        ("available_clocksources", doc::json(&available)),
        ("realtime", doc::json(&realtime.and_then(doc::rfc3339_secs))),
        ("realtime_unix", doc::json(&realtime)),
        ("boottime_seconds", doc::json(&boottime)),
        ("monotonic_seconds", doc::json(&monotonic)),
        (
            "boot_time_from_clocks",
            doc::json(&boot_from_clocks.and_then(doc::rfc3339_secs)),
        ),
        ("boot_time_btime", doc::json(&btime)),
        (
            "boot_time_difference_seconds",
            doc::json(&boot_from_clocks.zip(btime).map(|(c, b)| c - b as f64)),
        ),
        ("rtc_unix", doc::json(&rtc)),
        (
            "rtc_minus_realtime_seconds",
            doc::json(&rtc.zip(realtime).map(|(r, t)| r as f64 - t)),
        ),
        ("ntp", doc::json(&ntp)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_state_in_words() {
        let n = ntp_from(
            5,
            0x0040 | 0x2000,
            1_500_000_000,
            65536 * 3,
            16_000_000,
            16_000_000,
            37,
        );
        assert_eq!(n.state, "TIME_ERROR");
        assert!(!n.synchronized);
        assert_eq!(n.status, ["UNSYNC", "NANO"]);
        assert_eq!(n.offset_seconds, 1.5);
        assert_eq!(n.frequency_ppm, 3.0);
        assert_eq!(n.max_error_seconds, 16.0);
        let ok = ntp_from(0, 0x0001, -2000, 0, 0, 0, 0);
        assert!(ok.synchronized);
        assert_eq!(ok.offset_seconds, -0.002);
        assert_eq!(ntp_from(99, 0, 0, 0, 0, 0, 0).state, "unknown");
    }

    #[test]
    fn the_clocks_of_this_machine_agree_with_its_boot_time() {
        let roots = Roots::host();
        let a = collect(&roots);
        let v: serde_json::Value = serde_json::from_slice(&a.bytes).unwrap();
        // btime is whole seconds; the clocks give the boot time to the microsecond.
        let diff = v["boot_time_difference_seconds"].as_f64().unwrap();
        assert!(diff.abs() < 2.0, "{v:#}");
        assert!(v["ntp"]["state"].is_string());
    }
}
