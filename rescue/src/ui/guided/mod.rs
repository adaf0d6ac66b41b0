//! Guided mode: the incident steps (case, inventory, evidence destination, acquire, triage, timeline,
//! reinstall, restore, report) as a numbered menu printed in front of the `rescue> ` prompt, each step asking its questions
//! with dialoguer prompts (select, input, confirm) and then running the same line-mode commands an
//! experienced operator would type, so the case log records identical entries either way.
//!
//! The menu marks what is done and what is next. `line` hides it (pure line mode), `shell` brings it
//! back. On a terminal dialoguer draws the prompts (ASCII-only [`SimpleTheme`], no colour: fit for a
//! 115200-baud serial line; `j`/`k`/Tab move as well as the arrow keys, since escape sequences may arrive
//! split on a slow line); where dialoguer cannot work (no terminal, `TERM=dumb`, or `RESCUE_MENU=numbered`)
//! every prompt falls back to a numbered list answered with a typed line.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;

use nix::sys::termios;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use dialoguer::theme::SimpleTheme;
use dialoguer::{Confirm, Input, MultiSelect, Select};

use super::prompt::Executor;
use crate::case::{self, CaseState, Locked};
use crate::devices::{self, BlockDevice};

/// Prints a message word-wrapped to the console's width.
macro_rules! say {
    ($($arg:tt)*) => {
        print!("{}", crate::ui::wrap_text(&format!($($arg)*), crate::ui::columns()))
    };
}

mod ask;
mod steps;
mod volumes;

use self::ask::*;
use self::steps::*;

/// Whether the menu is shown (guided) or hidden (line mode) on this console.
static GUIDED: AtomicBool = AtomicBool::new(false);

/// Shows the menu from now on (and now).
pub fn enable() {
    GUIDED.store(true, Ordering::SeqCst);
}

/// Whether the menu is shown.
pub fn enabled() -> bool {
    GUIDED.load(Ordering::SeqCst)
}

/// `line`: hides the menu; numbers still start steps.
pub fn disable() {
    GUIDED.store(false, Ordering::SeqCst);
    say!(
        "line mode: type commands at the prompt ('help' lists them); 'shell' shows the guided menu again"
    );
}

/// The steps, in the order of an incident response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Case,
    Inventory,
    Evidence,
    Acquire,
    Triage,
    Timeline,
    Reinstall,
    Restore,
    Report,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Case,
        Step::Inventory,
        Step::Evidence,
        Step::Acquire,
        Step::Triage,
        Step::Timeline,
        Step::Reinstall,
        Step::Restore,
        Step::Report,
    ];

    fn title(self) -> &'static str {
        match self {
            Step::Case => "Case",
            Step::Inventory => "Inventory",
            Step::Evidence => "Evidence destination",
            Step::Acquire => "Acquire",
            Step::Triage => "Triage",
            Step::Timeline => "Timeline",
            Step::Reinstall => "Reinstall",
            Step::Restore => "Restore",
            Step::Report => "Report / power off",
        }
    }

    /// The step a menu number names (`1` … `9`).
    pub fn from_number(text: &str) -> Option<Step> {
        let n: usize = text.trim().parse().ok()?;
        Step::ALL.get(n.checked_sub(1)?).copied()
    }

    fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }
}

/// Where `inventory` saved its file for this state.
fn inventory_saved(state: &CaseState) -> bool {
    let dir = match (&state.destination, &state.case_id) {
        (Some(d), Some(c)) => Path::new(&d.mountpoint).join(c),
        _ => case::state_dir(),
    };
    dir.join("inventory.json").exists() || case::state_dir().join("inventory.json").exists()
}

/// What each step has done so far, and which step is next.
pub fn progress(state: &CaseState) -> (Vec<(Step, String)>, Step) {
    let acquired = state.acquisitions.len();
    let verified = state.acquisitions.iter().filter(|a| a.verified).count();
    let status = |s: Step| -> (bool, String) {
        match s {
            Step::Case => match &state.case_id {
                Some(id) => (
                    true,
                    format!(
                        "done: {id}, examiner {}",
                        state.examiner.as_deref().unwrap_or("-")
                    ),
                ),
                None => (false, "open a case: id, examiner, true time".into()),
            },
            Step::Inventory => {
                if inventory_saved(state) {
                    (true, "done: inventory.json saved".into())
                } else {
                    (false, "machine identity, disks, partitions".into())
                }
            }
            Step::Evidence => match &state.destination {
                Some(d) => (
                    true,
                    format!("done: {} ({}) on {}", d.device, d.fstype, d.mountpoint),
                ),
                None => (false, "unlock, (format,) mount the evidence disk".into()),
            },
            Step::Acquire => {
                if acquired == 0 {
                    (false, "image source disks, then verify".into())
                } else {
                    (
                        verified == acquired,
                        format!("{acquired} acquired, {verified} verified"),
                    )
                }
            }
            Step::Triage => match state.triages.len() {
                0 => (
                    false,
                    "persistence and tampering on a source disk or acquisition; its findings screen the restore"
                        .into(),
                ),
                n => {
                    let serious: usize = state
                        .triages
                        .iter()
                        .flat_map(|t| ["critical", "high"].map(|k| t.counts.get(k).copied().unwrap_or(0)))
                        .sum();
                    (true, format!("done: {n} run(s), {serious} critical or high finding(s)"))
                }
            },
            Step::Timeline => (
                true,
                "file times (body file) and logs as a sorted, hashed timeline".into(),
            ),
            Step::Reinstall => (
                true,
                "target interlock, then deploy a verified image or kexec a verified installer"
                    .into(),
            ),
            Step::Restore => (
                true,
                "target interlock, then a screened restore (dry run first)".into(),
            ),
            Step::Report => (
                true,
                "incident report (signed with your key), chain check, safe power-off".into(),
            ),
        }
    };
    let mut next = Step::Report;
    let mut lines = Vec::new();
    for s in Step::ALL {
        let (done, text) = status(s);
        if !done && next == Step::Report && s.number() <= 4 {
            next = s;
        }
        lines.push((s, text));
    }
    (lines, next)
}

/// The first screen's reminder that a live response comes before the rescue system (docs/live-media.md).
const LIVE_FIRST: &str =
    "memory first: run 'rescue live' on a suspect host BEFORE rebooting into rescue";

/// The menu as shown in front of the prompt, fitted to `width` columns: step texts wrap under their
/// column; below 64 columns each step's text goes on its own lines under the step's number and title.
pub fn menu_text(state: &CaseState, width: usize) -> String {
    let (lines, next) = progress(state);
    let rule_width = width.saturating_sub(1).clamp(8, 69);
    let title = " guided mode ";
    let left = (rule_width.saturating_sub(title.len())) / 2;
    let mut out = format!(
        "{}{title}{}\n",
        "-".repeat(left),
        "-".repeat(rule_width.saturating_sub(left + title.len()))
    );
    if state.case_id.is_none() {
        // The first screen: the memory and volatile state of a suspect host are gone once it reboots.
        out.push_str(&super::wrap_text(LIVE_FIRST, width));
    }
    let wide = width >= 64;
    for (s, text) in lines {
        let mark = if s == next { "next>" } else { "     " };
        if wide {
            let head = format!("{mark} {}  {:<22} ", s.number(), s.title());
            let body = super::wrap(&text, width - head.len(), 0);
            for (i, l) in body.iter().enumerate() {
                let lead = if i == 0 {
                    head.clone()
                } else {
                    " ".repeat(head.len())
                };
                out.push_str(format!("{lead}{l}").trim_end());
                out.push('\n');
            }
        } else {
            out.push_str(&super::wrap_text(
                &format!("{mark} {} {}", s.number(), s.title()),
                width,
            ));
            for l in super::wrap(&format!("        {text}"), width, 0) {
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
    }
    out.push_str(&super::wrap_text(
        &format!(
            "type a step number (next: {}), a command ('help'), or 'line' to hide this menu",
            next.number()
        ),
        width,
    ));
    out.push_str(&"-".repeat(rule_width));
    out.push('\n');
    out
}

/// Prints the menu for the current case state.
pub fn print_menu() {
    let state = Locked::open().map(|l| l.state).unwrap_or_default();
    print!("{}", menu_text(&state, super::columns()));
    let _ = std::io::stdout().flush();
}

/// `rescue shell`: shows the menu on this console (inside the rescue system the console's prompt then
/// keeps showing it); on a host it runs the same menu-and-prompt loop on this terminal.
pub fn run_shell(exec: Executor) -> anyhow::Result<u8> {
    enable();
    if std::env::var_os("RESCUE_CONSOLE").is_some() {
        print_menu();
        return Ok(0);
    }
    super::prompt::interactive_loop("host", exec)?;
    Ok(0)
}

/// Quotes a word for the prompt grammar ([`crate::args::split_words`]).
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
    if plain {
        return word.to_owned();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Runs one line-mode command as if typed, showing it first so the operator learns the line mode.
fn run(ask: &Ask, words: &[&str]) -> u8 {
    let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    println!("[guided] {line}");
    super::prompt::execute(&line, &console_name(), ask.exec).unwrap_or(0)
}

fn console_name() -> String {
    std::env::var("RESCUE_CONSOLE").unwrap_or_else(|_| "host".to_owned())
}

fn state() -> CaseState {
    Locked::open().map(|l| l.state).unwrap_or_default()
}

fn disk_line(d: &BlockDevice) -> String {
    disk_line_for(d, super::columns())
}

/// A disk as a choice: name, size, transport, model and serial, or as much as fits in `width` columns
/// after a list marker, dropping model and transport first so the serial the operator checks stays.
fn disk_line_for(d: &BlockDevice, width: usize) -> String {
    let serial = d.serial.as_deref().unwrap_or("(none)");
    let size = devices::human_size(d.size_bytes);
    let candidates = [
        format!(
            "{:<8} {:>10}  {:<8} {:<20} serial {serial}",
            d.name,
            size,
            d.transport,
            d.model.as_deref().unwrap_or("-"),
        ),
        format!("{} {size} serial {serial}", d.name),
        format!("{} {size} {serial}", d.name),
    ];
    let room = width.saturating_sub(6);
    candidates
        .iter()
        .find(|c| c.chars().count() <= room)
        .unwrap_or(&candidates[2])
        .clone()
}

/// Runs one step of the guided flow, then shows what it did and the menu.
pub fn run_step(step: Step, exec: Executor) -> anyhow::Result<()> {
    say!("== step {}: {} ==", step.number(), step.title());
    let ask = Ask::new(exec);
    match step {
        Step::Case => step_case(&ask)?,
        Step::Inventory => {
            run(&ask, &["inventory"]);
            volumes::offer(&ask)?;
        }
        Step::Evidence => step_evidence(&ask)?,
        Step::Acquire => step_acquire(&ask)?,
        Step::Triage => step_triage(&ask)?,
        Step::Timeline => step_timeline(&ask)?,
        Step::Reinstall => step_target(&ask, "reinstall")?,
        Step::Restore => step_target(&ask, "restore")?,
        Step::Report => step_report(&ask)?,
    }
    let s = state();
    let (_, next) = progress(&s);
    say!(
        "== step {} finished; next: {} {} ==",
        step.number(),
        next.number(),
        next.title()
    );
    print!("{}", menu_text(&s, super::columns()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_split_back_unchanged() {
        for w in ["plain", "two words", "a\"b", "back\\slash", "", "x'y"] {
            let line = format!("case new {}", quote(w));
            let words = crate::args::split_words(&line).unwrap();
            assert_eq!(words[2], w, "{line}");
        }
    }

    #[test]
    fn the_menu_points_at_the_first_unfinished_step() {
        let mut s = CaseState::default();
        assert_eq!(progress(&s).1, Step::Case);
        s.case_id = Some("C".into());
        // Inventory is optional for "next" only when saved; with no state dir it is not.
        s.destination = Some(case::Destination {
            device: "/dev/sdb1".into(),
            serial: None,
            mountpoint: "/mnt/evidence".into(),
            fstype: "ext4".into(),
        });
        let next = progress(&s).1;
        assert!(matches!(next, Step::Inventory | Step::Acquire), "{next:?}");
        let text = menu_text(&s, 80);
        assert!(text.contains("done: /dev/sdb1 (ext4)"), "{text}");
        assert!(text.is_ascii(), "serial consoles get ASCII only");
        assert!(
            text.contains("next> 1  Case") || text.contains("  1  Case"),
            "{text}"
        );
        assert_eq!(Step::from_number("3"), Some(Step::Evidence));
        assert_eq!(Step::from_number("0"), None);
        assert_eq!(Step::from_number("5"), Some(Step::Triage));
        assert_eq!(Step::from_number("6"), Some(Step::Timeline));
        assert_eq!(Step::from_number("9"), Some(Step::Report));
        assert_eq!(Step::from_number("10"), None);
        // A triage run marks step 5 done with its serious findings counted.
        assert!(menu_text(&s, 80).contains("5  Triage                 persistence"));
        s.triages.push(case::TriageRecord {
            source: "/dev/sda".into(),
            findings: "/mnt/evidence/C/triage-sda/findings.json".into(),
            sha256: "00".into(),
            counts: [("critical", 1), ("high", 2), ("low", 7)]
                .map(|(k, v)| (k.to_owned(), v))
                .into(),
        });
        let text = menu_text(&s, 80);
        assert!(
            text.contains("5  Triage                 done: 1 run(s), 3 critical or high"),
            "{text}"
        );
    }

    #[test]
    fn the_menu_fits_80_and_40_columns() {
        let mut s = CaseState::default();
        for width in [80, 40] {
            let text = menu_text(&s, width);
            assert!(super::super::widest(&text) <= width, "{width}:\n{text}");
            // Every step's text is there, whole words in order.
            let words: Vec<&str> = text.split_whitespace().collect();
            let joined = words.join(" ");
            assert!(
                joined.contains("deploy a verified image or kexec a verified installer"),
                "{width}: {joined}"
            );
        }
        let text = menu_text(&s, 80);
        assert!(
            text.contains("next> 1  Case                   open a case"),
            "{text}"
        );
        // The first screen says, on one line, that the live response comes before the reboot.
        assert!(
            text.lines()
                .any(|l| l == LIVE_FIRST && l.contains("BEFORE rebooting")),
            "{text}"
        );
        assert!(
            menu_text(&s, 40)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(LIVE_FIRST),
            "wrapped whole at 40 columns"
        );
        s.case_id = Some("INCIDENT-2026-0042-DATACENTER-EAST".into());
        s.examiner = Some("Jane Doe-Example, Incident Response".into());
        s.destination = Some(case::Destination {
            device: "/dev/nvme10n1p12".into(),
            serial: None,
            mountpoint: "/mnt/evidence".into(),
            fstype: "exfat".into(),
        });
        for width in [80, 40] {
            let text = menu_text(&s, width);
            assert!(super::super::widest(&text) <= width, "{width}:\n{text}");
        }
        // Once a case is open the reminder has done its job.
        assert!(!menu_text(&s, 80).contains("rescue live"));
    }

    #[test]
    fn long_prompts_and_choices_fit_80_and_40_columns() {
        let prompts = [
            "True UTC time now, YYYY-MM-DD HH:MM:SS (Enter: the clock is right)".to_owned(),
            "Type the serial (or its last 6 characters) of /dev/nvme10n1 to make it writable"
                .to_owned(),
            "Formatting ERASES everything on /dev/nvme10n1. Type its serial (or its last 6 characters) again"
                .to_owned(),
            "Disk or CD holding the image and its checksum list (mounted read-only) (j/k or arrows, Enter; q cancels)"
                .to_owned(),
        ];
        for width in [80, 40] {
            for p in &prompts {
                let (lead, last) = prompt_lines(p, width);
                assert!(super::super::widest(&lead) <= width, "{width}: {lead}");
                assert!(last.len() + 2 <= width, "{width}: {last}");
                let all = format!("{lead} {last}");
                assert_eq!(
                    all.split_whitespace().collect::<Vec<_>>(),
                    p.split_whitespace().collect::<Vec<_>>()
                );
            }
            let disk = BlockDevice {
                name: "nvme10n1".into(),
                path: "/dev/nvme10n1".into(),
                size_bytes: 3840 << 30,
                logical_sector_size: 512,
                physical_sector_size: 4096,
                model: Some("SAMSUNG MZQL23T8HCLS-00A07".into()),
                serial: Some("S64HNE0T123456".into()),
                wwn: None,
                transport: "nvme".into(),
                removable: false,
                read_only: true,
                partitions: Vec::new(),
            };
            let item = disk_line_for(&disk, width);
            // The serial, which the operator checks before unlocking, survives fitting.
            assert!(
                fit_items(std::slice::from_ref(&item), width, 6)[0].ends_with(" S64HNE0T123456"),
                "{width}: {item}"
            );
            for marker in [2, 4, 6] {
                let fitted = fit_items(std::slice::from_ref(&item), width, marker);
                assert!(fitted[0].len() + marker <= width, "{width}: {fitted:?}");
                assert!(fitted[0].starts_with("nvme10n1"), "{fitted:?}");
            }
        }
    }
}
