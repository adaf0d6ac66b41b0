//! The binary a responder runs from the stick on a suspect host must work on old kernels (issue 15,
//! docs/live-media.md "Minimum kernel": Linux 3.2). strace makes every x86-64 system call added after
//! 3.2 fail with `ENOSYS`, as such a kernel would, around an acquisition (driver, pipeline threads,
//! case log, SHA256SUMS); the result must still pass `sha256sum -c` and equal the source. A new call
//! without a fallback on that path (an `openat2`, a direct `statx`) makes this test fail.

use std::fs;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rescue");

/// Every x86-64 system call newer than Linux 3.2, as an strace regular expression (3.5 `kcmp` …
/// 6.13 `*xattrat`; 3.17 `getrandom`, 4.11 `statx`, 4.18 `rseq`, 5.3 `clone3`, 5.6 `openat2`).
const AFTER_3_2: &str = "/^(kcmp|finit_module|sched_setattr|sched_getattr|renameat2|seccomp|getrandom|\
memfd_create|kexec_file_load|bpf|execveat|userfaultfd|membarrier|mlock2|copy_file_range|preadv2|\
pwritev2|pkey_.*|statx|io_pgetevents|rseq|pidfd_.*|io_uring_.*|open_tree|move_mount|fsopen|fsconfig|\
fsmount|fspick|clone3|close_range|openat2|faccessat2|process_madvise|process_mrelease|epoll_pwait2|\
mount_setattr|quotactl_fd|landlock_.*|memfd_secret|futex_waitv|futex_wake|futex_wait|futex_requeue|\
set_mempolicy_home_node|cachestat|fchmodat2|map_shadow_stack|statmount|listmount|lsm_.*|mseal|\
setxattrat|getxattrat|listxattrat|removexattrat)$";

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

#[test]
fn an_acquisition_works_when_every_call_after_linux_3_2_is_missing() {
    if !have("strace") {
        assert!(
            std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
            "strace is missing and RESCUE_REQUIRE_TOOLS=1 forbids skipping"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&src, &data).unwrap();
    let out = dir.path().join("out");
    let trace = dir.path().join("trace.txt");
    let run = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg("-e")
        .arg(format!("inject={AFTER_3_2}:error=ENOSYS"))
        .arg(BIN)
        .arg("acquire")
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .args(["--case", "OLD-1", "--evidence-id", "e1"])
        .output()
        .unwrap();
    let trace_text = fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        run.status.success(),
        "acquire under ENOSYS injection: {run:?}\n{}",
        trace_text
            .lines()
            .filter(|l| l.contains("INJECTED"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The injection happened: the run made calls a 3.2 kernel lacks and was refused them.
    assert!(
        trace_text
            .lines()
            .any(|l| l.contains("statx(") && l.contains("(INJECTED)")),
        "no statx was refused; is the injection working?"
    );
    let check = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c: {check:?}");
    let sums = Command::new("sha256sum")
        .arg(&src)
        .arg(out.join("image.raw"))
        .output()
        .unwrap();
    let sums = String::from_utf8_lossy(&sums.stdout);
    let digests: Vec<&str> = sums.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(digests.len(), 2, "{sums}");
    assert_eq!(
        digests[0], digests[1],
        "the image equals the source: {sums}"
    );
}
