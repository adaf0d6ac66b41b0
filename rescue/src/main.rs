//! Thin entry point: PID 1 boots the rescue system, anything else is the host CLI.

fn main() -> std::process::ExitCode {
    rescue::cli::main()
}
