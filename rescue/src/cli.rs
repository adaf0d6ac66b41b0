//! Command-line grammar shared by the host CLI and the `rescue> ` prompt, and the dispatcher that runs a
//! parsed command. Exit codes are documented on [`ExitStatus`]-like constants below.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::ui;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed (the message says why).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line was not understood.
pub const EXIT_USAGE: u8 = 2;

/// The rescue system and its host CLI.
#[derive(Debug, Parser)]
#[command(name = "rescue", version = crate::VERSION, about = "Incident-response rescue system and forensic acquisition tool")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every command, as typed on a host shell or at the `rescue> ` prompt.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List disks with identity, size, sector sizes, transport and read-only state.
    Devices {
        /// One JSON array on one line.
        #[arg(long)]
        json: bool,
    },
    /// Image a disk or file read-only with inline hashing.
    Acquire(Box<ui::acquire::AcquireArgs>),
    /// Recompute and compare every hash of an acquisition.
    Verify(ui::acquire::VerifyArgs),
    /// Show an acquisition's manifest (a summary, or the whole manifest as one JSON line).
    Manifest {
        /// Acquisition directory (holding manifest.json).
        dir: PathBuf,
        /// The manifest itself, as one line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Open or show the case (id, examiner, sources, evidence destination, case log).
    Case {
        #[command(subcommand)]
        what: CaseCommand,
    },
    /// Machine identity and every disk with its partition table and filesystem signatures (saved as
    /// inventory.json in the case directory).
    Inventory {
        /// One JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// Make exactly one disk writable as the evidence destination, after confirming its serial.
    Unlock {
        /// The disk (e.g. /dev/sdb).
        device: PathBuf,
        /// The disk's serial number, or its last 6 characters (its size in bytes if it has no serial).
        #[arg(long, value_name = "SERIAL")]
        confirm: String,
    },
    /// Mount an unlocked disk or partition as the evidence destination and move the case log onto it.
    MountEvidence {
        /// The partition (or whole disk) holding an ext4, exFAT or FAT32 filesystem.
        device: PathBuf,
    },
    /// Format an unlocked disk or partition as the evidence filesystem (ERASES it; confirm with its serial).
    Format {
        /// The unlocked disk or partition.
        device: PathBuf,
        /// Filesystem to create (label EVIDENCE).
        #[arg(long = "fs", value_enum)]
        fs: crate::format::Filesystem,
        /// The disk's serial number, or its last 6 characters (its size in bytes if it has no serial).
        #[arg(long, value_name = "SERIAL")]
        confirm: String,
    },
    /// The guided incident steps: show the guided menu in front of the prompt (`line` hides it).
    Shell,
    /// Check a case log's hash chain.
    Log {
        #[command(subcommand)]
        what: LogCommand,
    },
    /// Prove properties of the running system.
    Selftest {
        #[command(subcommand)]
        what: SelftestCommand,
    },
    /// Verify an installer or golden image (signed checksums), list trusted keys, boot an installer ISO.
    Reinstall {
        #[command(subcommand)]
        what: ui::reinstall::ReinstallCommand,
    },
    /// Write a verified image to a disk and read it back.
    Deploy(Box<ui::reinstall::DeployArgs>),
    /// Restore files from a backup onto the new root: checksummed, screened, read back.
    Restore(Box<ui::restore::RestoreArgs>),
    /// Network interfaces: bring one up on request (DHCP or static), take it down, show them.
    Net {
        #[command(subcommand)]
        what: ui::net::NetCommand,
    },
    /// Version, build, kernel, boot mode and write-block state.
    Status,
    /// Drivers loaded at boot and devices no driver matched.
    Drivers,
    /// Sync and power off (rescue system only).
    Poweroff,
    /// Sync and reboot (rescue system only).
    Reboot,
    /// Run the line-mode prompt on a terminal device (started by init for each console).
    #[command(hide = true)]
    Console { tty: PathBuf },
}

/// What `case` does.
#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Open a case.
    New {
        /// Case identifier (letters, digits, '-', '_', '.'); names the directory on the evidence disk.
        id: String,
        #[arg(long, value_name = "NAME")]
        examiner: Option<String>,
        #[arg(long, value_name = "TEXT")]
        notes: Option<String>,
        /// The true UTC time now ("YYYY-MM-DD HH:MM:SS"), when this machine's clock is wrong: the offset
        /// goes into the case log and every manifest of the case.
        #[arg(long, value_name = "TIME")]
        true_time: Option<String>,
    },
    /// Show the case.
    Show,
    /// Check whether a disk may be overwritten by a reinstall or restore (the target interlock): refused
    /// for the boot medium and the evidence disk, and without a reason for unverified or unacquired disks.
    Target {
        /// The disk to reinstall or restore onto.
        device: PathBuf,
        /// Why overwriting is acceptable although its evidence is not verified (logged in the case log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// What `log` does.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Verify that no line of a case log was edited, inserted or deleted (exit 4 if one was).
    Verify {
        /// The case log (`case-log.jsonl`).
        file: PathBuf,
    },
}

/// What `selftest` can prove.
#[derive(Debug, Subcommand)]
pub enum SelftestCommand {
    /// Try to write to every disk and partition and report that each write was refused.
    WriteBlock,
}

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
            if crate::init::in_rescue_system() {
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
        Command::Shell => ui::guided::run_shell(),
        Command::Verify(args) if crate::init::in_rescue_system() => {
            ui::case::run_case_verify(&args)
        }
        Command::Verify(args) => ui::acquire::run_verify(&args),
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
        Command::Net { what } => ui::net::run(&what),
        Command::Status => ui::status::run(),
        Command::Drivers => ui::status::run_drivers(),
        Command::Poweroff => ui::status::run_power(crate::init::PowerAction::PowerOff),
        Command::Reboot => ui::status::run_power(crate::init::PowerAction::Reboot),
        Command::Console { tty } => ui::prompt::run_console(&tty),
    }
}

/// Parses one prompt line with the same grammar as the CLI. `Err` holds clap's rendered message.
pub fn parse_line(words: &[String]) -> Result<Command, clap::Error> {
    let argv = std::iter::once("rescue".to_owned()).chain(words.iter().cloned());
    Cli::try_parse_from(argv).map(|cli| cli.command)
}

/// Splits a prompt line into words: whitespace separates, single and double quotes group, backslash escapes.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err("line ends with a backslash".to_owned()),
            },
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_owned());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words("devices --json").unwrap(),
            ["devices", "--json"]
        );
        assert_eq!(
            split_words(r#"acquire /dev/sda --notes "disk from rack 4" --case 'A 1'"#).unwrap(),
            [
                "acquire",
                "/dev/sda",
                "--notes",
                "disk from rack 4",
                "--case",
                "A 1"
            ]
        );
        assert_eq!(split_words(r"a\ b").unwrap(), ["a b"]);
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn prompt_lines_use_the_cli_grammar() {
        assert!(matches!(
            parse_line(&["devices".into(), "--json".into()]),
            Ok(Command::Devices { json: true })
        ));
        assert!(matches!(
            parse_line(&["selftest".into(), "write-block".into()]),
            Ok(Command::Selftest {
                what: SelftestCommand::WriteBlock
            })
        ));
        assert!(parse_line(&["frobnicate".into()]).is_err());
    }
}
