//! `state/hidden-processes.json`: processes a rootkit hides from the `/proc` listing (a `getdents`
//! filter) but the kernel still answers for when asked by number: every PID from 1 to
//! `/proc/sys/kernel/pid_max` is probed with `stat("/proc/PID")`. A thread answers that probe too
//! without being listed (only thread-group leaders are), so a PID whose `Tgid` differs is a thread,
//! not a hidden process. A process that started between the listing and the probe is not hidden
//! either: the directory is listed again after the probe, and only a PID absent from both listings
//! counts.

use std::collections::BTreeSet;
use std::path::Path;

use super::doc::{self, Doc};
use super::processes::{self, Clock, ExeCache, Read1};
use crate::live::{Artifact, Roots};

/// The kernel's largest `pid_max` (`PID_MAX_LIMIT` on 64-bit), probed when `pid_max` cannot be read.
pub const PID_MAX_LIMIT: u32 = 4 << 20;

/// The PIDs that answer `exists` but are in neither listing: candidates, before threads are told
/// apart. `first` is the listing before the probe; `relist` lists again after it.
pub fn unlisted(
    first: &BTreeSet<u32>,
    pid_max: u32,
    exists: &mut dyn FnMut(u32) -> bool,
    relist: &mut dyn FnMut() -> BTreeSet<u32>,
) -> Vec<u32> {
    let found: Vec<u32> = (1..=pid_max)
        .filter(|p| !first.contains(p) && exists(*p))
        .collect();
    if found.is_empty() {
        return found;
    }
    let second = relist();
    found.into_iter().filter(|p| !second.contains(p)).collect()
}

/// `stat` of `/proc/PID` without building a path per PID.
fn exists_in(proc: &Path) -> impl FnMut(u32) -> bool {
    let dir = std::fs::File::open(proc).ok();
    move |pid: u32| {
        let Some(dir) = &dir else {
            return false;
        };
        nix::sys::stat::fstatat(
            dir,
            pid.to_string().as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
    }
}

/// Reads `/proc/sys/kernel/pid_max`.
pub fn pid_max(proc: &Path, d: &mut Doc) -> u32 {
    let path = proc.join("sys/kernel/pid_max");
    match doc::read(&path) {
        Ok(b) => match doc::num::<u32>(&b) {
            Some(n) if n > 0 && n <= PID_MAX_LIMIT => n,
            _ => {
                d.note(format!(
                    "{}: {:?} is not a PID limit; probed up to {PID_MAX_LIMIT}",
                    path.display(),
                    doc::text(&b[..b.len().min(40)])
                ));
                PID_MAX_LIMIT
            }
        },
        Err(e) => {
            d.note(format!(
                "{}: {}; probed up to {PID_MAX_LIMIT}",
                path.display(),
                doc::why(&e)
            ));
            PID_MAX_LIMIT
        }
    }
}

/// Collects `state/hidden-processes.json`; `listed` is the listing the process collector saw.
/// Returns the hidden PIDs (the socket collector names them as owners too).
pub fn collect(
    roots: &Roots,
    listed: &[u32],
    cache: &mut ExeCache,
    out: &mut Vec<Artifact>,
) -> Vec<u32> {
    let proc = &roots.proc;
    let mut d = Doc::start(
        "state/hidden-processes.json",
        "rescue.live.hidden-processes/1",
        "stat /proc/PID for 1..pid_max against the /proc listing, /proc/PID/status Tgid",
    );
    let max = pid_max(proc, &mut d);
    let first: BTreeSet<u32> = listed.iter().copied().collect();
    let mut exists = exists_in(proc);
    let mut relist = || -> BTreeSet<u32> {
        doc::numeric_entries(proc)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    };
    let candidates = unlisted(&first, max, &mut exists, &mut relist);
    let clock = Clock::read(proc, &mut d);
    let mut hidden = Vec::new();
    let mut threads = 0usize;
    for pid in candidates {
        match processes::read_one(proc, pid, &clock, cache, out, &mut d) {
            Read1::Process(p) => {
                d.note(format!(
                    "PID {pid} ({}) answers by number but is missing from the /proc listing: \
                     a sign of a rootkit hiding it",
                    p.comm
                ));
                hidden.push(*p);
            }
            Read1::Thread { .. } => threads += 1,
            Read1::Gone => {}
        }
    }
    let pids = hidden.iter().map(|p| p.pid).collect();
    out.push(d.finish(vec![
        ("pid_max", doc::json(&max)),
        ("listed", doc::json(&listed.len())),
        ("threads_not_listed", doc::json(&threads)),
        ("hidden", doc::json(&hidden)),
    ]));
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_missing_from_both_listings_is_a_candidate_a_new_one_is_not() {
        let first: BTreeSet<u32> = [1, 2, 3].into();
        let alive: BTreeSet<u32> = [1, 2, 3, 7, 9, 12].into();
        let mut exists = |p: u32| alive.contains(&p);
        // 9 started during the probe and is listed the second time.
        let mut relist = || -> BTreeSet<u32> { [1, 2, 3, 9].into() };
        assert_eq!(unlisted(&first, 10, &mut exists, &mut relist), [7]);
    }

    #[test]
    fn nothing_unlisted_needs_no_second_listing() {
        let first: BTreeSet<u32> = [1].into();
        let mut exists = |p: u32| p == 1;
        let mut relist = || -> BTreeSet<u32> { panic!("listed again for nothing") };
        assert!(unlisted(&first, 100, &mut exists, &mut relist).is_empty());
    }

    #[test]
    fn pid_max_garbage_falls_back_to_the_kernel_limit() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/kernel")).unwrap();
        let mut d = Doc::start("x", "x", "x");
        assert_eq!(pid_max(t.path(), &mut d), PID_MAX_LIMIT);
        std::fs::write(t.path().join("sys/kernel/pid_max"), "99999999999999\n").unwrap();
        assert_eq!(pid_max(t.path(), &mut d), PID_MAX_LIMIT);
        std::fs::write(t.path().join("sys/kernel/pid_max"), "32768\n").unwrap();
        assert_eq!(pid_max(t.path(), &mut d), 32768);
    }
}
