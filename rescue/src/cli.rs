//! The dispatcher: runs a command parsed by the grammar in [`crate::args`] through the `ui` module that
//! shows it, and chooses the process's exit code. Also the binary's entry point (PID 1 becomes init).
//! The prompt and the guided menu get [`run`] handed to them as their executor.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use crate::args::EXIT_USAGE;
use crate::args::{CaseCommand, Cli, Command, LogCommand, SelftestCommand};
use crate::system::{self, PowerAction};
use crate::ui;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed (the message says why).
pub const EXIT_FAILURE: u8 = 1;

/// Entry point for the binary: PID 1 becomes init, `modprobe` is the kernel's module helper, anything
/// else is the CLI.
pub fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() == 1 {
        crate::init::run_pid1();
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if argv0 == "modprobe" {
        return ExitCode::from(crate::coldplug::modprobe_main(&args[1..]));
    }
    let cli = Cli::parse();
    ExitCode::from(run(cli.command))
}

/// Runs one parsed command and returns its exit code; errors are printed by the UI.
pub fn run(command: Command) -> u8 {
    match dispatch(command) {
        Ok(code) => code,
        Err(err) => {
            ui::print_error(&err);
            EXIT_FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Devices { json } => ui::devices::run(json),
        Command::Acquire(mut args) => {
            if system::in_rescue_system() {
                // Inside the rescue system the case supplies defaults and the interlocks apply.
                let mut locked = crate::case::Locked::open()?;
                crate::case::add_source(&mut locked, &args.source)?;
                args.case_id = args.case_id.or_else(|| locked.state.case_id.clone());
                args.examiner = args.examiner.or_else(|| locked.state.examiner.clone());
                args.clock_offset = args.clock_offset.or(locked.state.clock_offset_seconds);
                drop(locked);
                return ui::case::run_case_acquire(*args);
            }
            ui::acquire::run_acquire(&args)
        }
        Command::Live(args) => ui::live::run(&args),
        Command::Case {
            what:
                CaseCommand::New {
                    id,
                    examiner,
                    notes,
                    true_time,
                },
        } => ui::case::run_case_new(
            &id,
            examiner.as_deref(),
            notes.as_deref(),
            true_time.as_deref(),
        ),
        Command::Case {
            what: CaseCommand::Show,
        } => ui::case::run_case_show(),
        Command::Case {
            what: CaseCommand::Target { device, reason },
        } => ui::case::run_case_target(&device, reason.as_deref()),
        Command::Inventory { json } => ui::case::run_inventory(json),
        Command::Unlock { device, confirm } => ui::case::run_unlock(&device, &confirm),
        Command::MountEvidence { device } => ui::case::run_mount_evidence(&device),
        Command::Format {
            device,
            fs,
            confirm,
        } => ui::case::run_format(&device, fs, &confirm),
        Command::Shell => ui::guided::run_shell(run),
        Command::Verify(args) if system::in_rescue_system() => ui::case::run_case_verify(&args),
        Command::Verify(args) => ui::acquire::run_verify(&args),
        Command::Mount(args) => ui::mount::run_mount(&args),
        Command::Umount(args) => ui::mount::run_umount(&args),
        Command::Manifest { dir, json } => ui::acquire::run_manifest(&dir, json),
        Command::Log {
            what: LogCommand::Verify { file },
        } => ui::caselog::run_verify(&file),
        Command::Selftest {
            what: SelftestCommand::WriteBlock,
        } => ui::selftest::run_write_block(),
        Command::Reinstall { what } => ui::reinstall::run(what),
        Command::Deploy(args) => ui::reinstall::run_deploy(&args),
        Command::Restore(args) => ui::restore::run(&args),
        Command::Triage(args) => ui::triage::run(&args),
        Command::Timeline(args) => ui::timeline::run(&args),
        Command::Report(args) => ui::report::run(&args),
        Command::Net { what } => ui::net::run(&what),
        Command::Lvm { what } => ui::storage::run_lvm(&what),
        Command::Md { what } => ui::storage::run_md(&what),
        Command::Status { wait } => ui::status::run(wait),
        Command::Drivers => ui::status::run_drivers(),
        Command::Poweroff => ui::status::run_power(PowerAction::PowerOff),
        Command::Reboot => ui::status::run_power(PowerAction::Reboot),
        Command::Console { tty } => ui::prompt::run_console(&tty, run),
    }
}
