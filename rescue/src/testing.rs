//! Helpers shared by the library's unit tests.

/// Whether this test run may attach loop devices and mount (it runs as root). Not as root the test
/// is skipped, unless `RESCUE_REQUIRE_LOOP` is set (as `cargo xtask test` sets it): then it fails.
pub fn can_attach_loop_devices() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("RESCUE_REQUIRE_LOOP").is_err(),
            "needs root and RESCUE_REQUIRE_LOOP=1 forbids skipping it"
        );
        return false;
    }
    true
}
