//! The command grammar shared by the host CLI and the `rescue> ` prompt: every clap argument struct
//! in one place, parsing a prompt line, and the usage exit code. Pure data and parsers: nothing here
//! runs a command, prints or exits ([`crate::cli`] dispatches, [`crate::ui`] shows results).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod acquire;
pub mod live;
pub mod mount;
pub mod net;
pub mod reinstall;
pub mod report;
pub mod restore;
pub mod storage;
pub mod timeline;
pub mod triage;

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
    Acquire(Box<acquire::AcquireArgs>),
    /// Live response on a running host, before it is powered off: volatile state and memory (LiME),
    /// hashed, to an evidence disk or s3://.
    Live(Box<live::LiveArgs>),
    /// Recompute and compare every hash of an acquisition.
    Verify(acquire::VerifyArgs),
    /// Show an acquisition's manifest (a summary, or the whole manifest as one JSON line).
    Manifest {
        /// Acquisition directory (holding manifest.json).
        dir: PathBuf,
        /// The manifest itself, as one line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve an acquisition (directory or s3://) read-only as MOUNTPOINT/image.raw, in the background.
    Mount(Box<mount::MountArgs>),
    /// Unmount what `rescue mount` mounted and wait for its server to exit.
    Umount(mount::UmountArgs),
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
        what: reinstall::ReinstallCommand,
    },
    /// Write a verified image to a disk and read it back.
    Deploy(Box<reinstall::DeployArgs>),
    /// Restore files from a backup onto the new root: checksummed, screened, read back.
    Restore(Box<restore::RestoreArgs>),
    /// Find how an attacker persists, offline, from a write-blocked disk, an image or a mounted root.
    Triage(Box<triage::TriageArgs>),
    /// What happened when: body file of every file's times, and the logs' events as a Timesketch
    /// timeline (JSONL and CSV), sorted, hashed.
    Timeline(Box<timeline::TimelineArgs>),
    /// Build the incident report of the case (Markdown, JSON, HTML), signed with the examiner's key;
    /// `report verify DIR` checks one.
    Report(Box<report::ReportArgs>),
    /// Network interfaces: bring one up on request (DHCP or static), take it down, show them.
    Net {
        #[command(subcommand)]
        what: net::NetCommand,
    },
    /// LVM volumes, read-only and on request only: activate, deactivate.
    Lvm {
        #[command(subcommand)]
        what: storage::LvmCommand,
    },
    /// md RAID arrays, read-only and on request only: assemble, stop.
    Md {
        #[command(subcommand)]
        what: storage::MdCommand,
    },
    /// Version, build, kernel, boot mode and write-block state.
    Status {
        /// Wait up to SECONDS for the whole-medium hash of the boot medium (it runs in the
        /// background after boot) before showing the status.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
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
