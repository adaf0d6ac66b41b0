//! Thin entry point: PID 1 boots the rescue system, anything else is the host CLI.

fn main() -> std::process::ExitCode {
    // A reader that goes away (`rescue restore … | head -1`) ends the CLI the way it ends coreutils:
    // killed by SIGPIPE, quietly. Rust starts with SIGPIPE ignored, and then every print to the closed
    // pipe panics. PID 1 keeps it ignored: init must never die of a signal.
    if std::process::id() != 1 {
        // SAFETY: restores the default disposition of one signal at start-up, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    rescue::cli::main()
}
