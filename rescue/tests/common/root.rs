//! Gate shared by the CLI tests that need root (loop devices, mounts).

/// Whether this test may do what needs root; a test that cannot is skipped (with `what` said), unless
/// `RESCUE_REQUIRE_LOOP=1` (set by `cargo xtask test`) makes that a failure.
pub fn need_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("RESCUE_REQUIRE_LOOP").is_err(),
        "{what} needs root and RESCUE_REQUIRE_LOOP=1 forbids skipping it"
    );
    eprintln!("skipped {what}: needs root");
    false
}
