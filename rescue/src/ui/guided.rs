//! Guided mode: the incident steps (case, inventory, evidence destination, acquire, reinstall, restore,
//! report) as a numbered menu printed in front of the `rescue> ` prompt, each step asking its questions
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
        print!("{}", super::wrap_text(&format!($($arg)*), super::columns()))
    };
}

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
    Reinstall,
    Restore,
    Report,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Case,
        Step::Inventory,
        Step::Evidence,
        Step::Acquire,
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
            Step::Reinstall => "Reinstall",
            Step::Restore => "Restore",
            Step::Report => "Report / power off",
        }
    }

    /// The step a menu number names (`1` … `7`).
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
            Step::Reinstall => (
                true,
                "target interlock, then deploy a verified image or kexec a verified installer"
                    .into(),
            ),
            Step::Restore => (
                true,
                "target interlock, then a screened restore (dry run first)".into(),
            ),
            Step::Report => (true, "case log, chain check, safe power-off".into()),
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

/// Keeps the terminal from echoing (and line-buffering) while a dialoguer prompt runs: dialoguer reads
/// one key at a time in raw mode and draws its own echo, so bytes that arrive between two key reads (a
/// fast typist, a pasted answer, a test harness) must not be echoed a second time by the line discipline.
struct QuietTerminal(Option<termios::Termios>);

impl QuietTerminal {
    fn new() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return QuietTerminal(None);
        };
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(termios::LocalFlags::ECHO | termios::LocalFlags::ICANON);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &quiet);
        QuietTerminal(Some(saved))
    }
}

impl Drop for QuietTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, saved);
        }
    }
}

/// Prompts: dialoguer on a terminal, numbered lists otherwise.
struct Ask {
    /// Runs the line-mode commands a step issues (the dispatcher, handed in by the caller).
    exec: Executor,
    fancy: bool,
    term: dialoguer::console::Term,
    theme: SimpleTheme,
}

/// `Ok(None)`: the operator cancelled (Esc, `q`, Ctrl-C).
type Answer<T> = anyhow::Result<Option<T>>;

fn cancelled<T>(e: dialoguer::Error) -> Answer<T> {
    let dialoguer::Error::IO(io) = e;
    if io.kind() == std::io::ErrorKind::Interrupted {
        println!();
        Ok(None)
    } else {
        Err(io.into())
    }
}

/// A question fitted to `width` columns: the lines to print before the prompt, and the prompt's own last
/// line (kept two columns short for the `: ` or `? ` a prompt appends).
pub fn prompt_lines(prompt: &str, width: usize) -> (String, String) {
    let mut lines = super::wrap(prompt, width.saturating_sub(2), 0);
    let last = lines.pop().unwrap_or_default();
    let lead = lines
        .iter()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    (lead, last)
}

/// Choices of a list fitted to `width` columns after a marker of `marker` columns (`> `, `[x] `, `12) `).
fn fit_items(items: &[String], width: usize, marker: usize) -> Vec<String> {
    items
        .iter()
        .map(|i| super::truncate(i, width.saturating_sub(marker).max(8)))
        .collect()
}

impl Ask {
    fn new(exec: Executor) -> Self {
        let fancy = std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
            && std::env::var("TERM").is_ok_and(|t| t != "dumb")
            && std::env::var("RESCUE_MENU").map_or(true, |m| m != "numbered");
        Ask {
            exec,
            fancy,
            term: dialoguer::console::Term::stdout(),
            theme: SimpleTheme,
        }
    }

    /// Prints all but the last line of `prompt` fitted to the console; returns the last line.
    fn fit(&self, prompt: &str) -> String {
        let (lead, last) = prompt_lines(prompt, super::columns());
        print!("{lead}");
        let _ = std::io::stdout().flush();
        last
    }

    /// After dialoguer took an Enter: the LF of a CR LF pair must not answer the next prompt.
    fn after_fancy<T>(answer: Answer<T>) -> Answer<T> {
        super::lineedit::take_pending_lf();
        answer
    }

    fn select(&self, prompt: &str, items: &[String]) -> Answer<usize> {
        let width = super::columns();
        if self.fancy {
            let _quiet = QuietTerminal::new();
            let shown = self.fit(&format!("{prompt} (j/k or arrows, Enter; q cancels)"));
            return Self::after_fancy(
                Select::with_theme(&self.theme)
                    .with_prompt(shown)
                    .items(&fit_items(items, width, 2))
                    .default(0)
                    .interact_on_opt(&self.term)
                    .or_else(cancelled),
            );
        }
        println!("{}:", self.fit(prompt));
        for (i, it) in fit_items(items, width, 6).iter().enumerate() {
            println!("{:>4}) {it}", i + 1);
        }
        loop {
            let Some(line) = self.line(&format!("choose 1-{} (empty cancels): ", items.len()))?
            else {
                return Ok(None);
            };
            if line.is_empty() {
                return Ok(None);
            }
            match line.parse::<usize>() {
                Ok(n) if (1..=items.len()).contains(&n) => return Ok(Some(n - 1)),
                _ => say!("not a choice: {line}"),
            }
        }
    }

    fn multi(&self, prompt: &str, items: &[String]) -> Answer<Vec<usize>> {
        let width = super::columns();
        if self.fancy {
            let _quiet = QuietTerminal::new();
            let shown = self.fit(&format!(
                "{prompt} (Space marks, j/k or arrows move, Enter accepts)"
            ));
            return Self::after_fancy(
                MultiSelect::with_theme(&self.theme)
                    .with_prompt(shown)
                    .items(&fit_items(items, width, 4))
                    .interact_on_opt(&self.term)
                    .or_else(cancelled),
            );
        }
        println!("{}:", self.fit(prompt));
        for (i, it) in fit_items(items, width, 6).iter().enumerate() {
            println!("{:>4}) {it}", i + 1);
        }
        let Some(line) = self.line("numbers separated by spaces (empty cancels): ")? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for w in line.split([' ', ',']).filter(|w| !w.is_empty()) {
            match w.parse::<usize>() {
                Ok(n) if (1..=items.len()).contains(&n) && !out.contains(&(n - 1)) => {
                    out.push(n - 1)
                }
                _ => {
                    say!("not a choice: {w}");
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// A line of text; `default` is taken on an empty answer.
    fn input(&self, prompt: &str, default: Option<&str>) -> Answer<String> {
        if self.fancy {
            let _quiet = QuietTerminal::new();
            let mut i = Input::<String>::with_theme(&self.theme)
                .with_prompt(self.fit(prompt))
                .allow_empty(true);
            if let Some(d) = default.filter(|d| !d.is_empty()) {
                i = i.default(d.to_owned());
            }
            return Self::after_fancy(
                i.interact_text_on(&self.term)
                    .map(|s| Some(s.trim().to_owned()))
                    .or_else(cancelled),
            );
        }
        let shown = match default {
            Some(d) if !d.is_empty() => format!("{} ", self.fit(&format!("{prompt} [{d}]:"))),
            _ => format!("{} ", self.fit(&format!("{prompt}:"))),
        };
        Ok(self.line(&shown)?.map(|l| {
            if l.is_empty() {
                default.unwrap_or_default().to_owned()
            } else {
                l
            }
        }))
    }

    fn confirm(&self, prompt: &str) -> anyhow::Result<bool> {
        if self.fancy {
            let _quiet = QuietTerminal::new();
            let shown = self.fit(&format!("{prompt} [y/n]"));
            let shown = match shown.strip_suffix("[y/n]") {
                Some(rest) => rest.trim_end().to_owned(),
                None => shown,
            };
            return Ok(Self::after_fancy(
                Confirm::with_theme(&self.theme)
                    .with_prompt(shown)
                    .default(false)
                    .interact_on_opt(&self.term)
                    .or_else(cancelled),
            )?
            .unwrap_or(false));
        }
        Ok(self
            .line(&format!("{} ", self.fit(&format!("{prompt} [y/N]:"))))?
            .is_some_and(|l| l.eq_ignore_ascii_case("y") || l.eq_ignore_ascii_case("yes")))
    }

    fn line(&self, prompt: &str) -> anyhow::Result<Option<String>> {
        Ok(super::lineedit::read_line(prompt)?.map(|l| l.trim().to_owned()))
    }
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
        }
        Step::Evidence => step_evidence(&ask)?,
        Step::Acquire => step_acquire(&ask)?,
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

fn step_case(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    if s.case_id.is_some() {
        say!("a case is open:");
        run(ask, &["case", "show"]);
        return Ok(());
    }
    let id = loop {
        let Some(id) = ask.input("Case id (letters, digits, - _ .)", None)? else {
            return Ok(());
        };
        match case::check_case_id(&id) {
            Ok(()) => break id,
            Err(e) => say!("{e}"),
        }
    };
    let Some(examiner) = ask.input("Examiner", None)? else {
        return Ok(());
    };
    let Some(notes) = ask.input("Notes (optional)", Some(""))? else {
        return Ok(());
    };
    let clock = crate::acquire::manifest::now_rfc3339();
    say!(
        "this machine's clock (RTC) says {clock} (RTC device: {})",
        crate::caselog::rtc_now().unwrap_or_else(|| "unreadable".into())
    );
    let true_time = loop {
        let Some(t) = ask.input(
            "True UTC time now, YYYY-MM-DD HH:MM:SS (Enter: the clock is right)",
            Some(""),
        )?
        else {
            return Ok(());
        };
        if t.is_empty() || case::parse_utc(&t).is_some() {
            break t;
        }
        say!("not a time: {t:?}; e.g. 2026-11-29 15:04:05");
    };
    let mut words = vec!["case", "new", id.as_str()];
    if !examiner.is_empty() {
        words.extend(["--examiner", examiner.as_str()]);
    }
    if !notes.is_empty() {
        words.extend(["--notes", notes.as_str()]);
    }
    if !true_time.is_empty() {
        words.extend(["--true-time", true_time.as_str()]);
    }
    run(ask, &words);
    Ok(())
}

fn step_evidence(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    if s.case_id.is_none() {
        say!("open a case first (step 1): the case log and the case directory need its id");
        return Ok(());
    }
    if let Some(d) = &s.destination {
        say!(
            "the evidence destination is {} ({}) on {}",
            d.device,
            d.fstype,
            d.mountpoint
        );
        return Ok(());
    }
    let boot = case::boot_medium_disks();
    let disks: Vec<BlockDevice> = devices::list()?
        .into_iter()
        .filter(|d| !boot.contains(&d.name) && !s.sources.contains(&d.name))
        .collect();
    if disks.is_empty() {
        say!(
            "no disk can be the destination (boot medium and source disks are never offered); attach one and try again"
        );
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(i) = ask.select("Evidence destination disk", &items)? else {
        return Ok(());
    };
    let disk = &disks[i];
    say!("chosen: {}", disk_line(disk));
    for p in &disk.partitions {
        say!(
            "  partition {:<10} {:>10}",
            p.name,
            devices::human_size(p.size_bytes)
        );
    }
    let confirm_what = if disk.serial.is_some() {
        "serial (or its last 6 characters)"
    } else {
        "size in bytes (it reports no serial)"
    };
    if !s.unlocked.contains(&disk.name) {
        let Some(typed) = ask.input(
            &format!(
                "Type the {confirm_what} of {} to make it writable",
                disk.path
            ),
            None,
        )?
        else {
            return Ok(());
        };
        if run(ask, &["unlock", &disk.path, "--confirm", &typed]) != 0 {
            say!("{} stays write-blocked", disk.path);
            return Ok(());
        }
    }
    let actions = [
        "Mount the filesystem it already has".to_owned(),
        "Format it as ext4 (ERASES it), then mount".to_owned(),
        "Format it as exFAT (ERASES it), then mount".to_owned(),
    ];
    let Some(action) = ask.select("What to do with it", &actions)? else {
        return Ok(());
    };
    // A disk with partitions: mount or format one of them, or the whole disk.
    let target = if !disk.partitions.is_empty() {
        let mut items: Vec<String> = disk
            .partitions
            .iter()
            .map(|p| format!("{} ({})", p.path, devices::human_size(p.size_bytes)))
            .collect();
        items.push(format!("{} (whole disk)", disk.path));
        let which = if action == 0 {
            "Which filesystem"
        } else {
            "Format which"
        };
        let Some(j) = ask.select(which, &items)? else {
            return Ok(());
        };
        disk.partitions
            .get(j)
            .map_or_else(|| disk.path.clone(), |p| p.path.clone())
    } else {
        disk.path.clone()
    };
    if action > 0 {
        let fs = if action == 1 { "ext4" } else { "exfat" };
        let Some(typed) = ask.input(
            &format!(
                "Formatting ERASES everything on {}. Type its {confirm_what} again",
                disk.path
            ),
            None,
        )?
        else {
            return Ok(());
        };
        if run(ask, &["format", &target, "--fs", fs, "--confirm", &typed]) != 0 {
            return Ok(());
        }
    }
    run(ask, &["mount-evidence", &target]);
    Ok(())
}

fn step_acquire(ask: &Ask) -> anyhow::Result<()> {
    let s = state();
    let (Some(case_id), Some(dest)) = (&s.case_id, &s.destination) else {
        say!("open a case (step 1) and mount an evidence destination (step 3) first");
        return Ok(());
    };
    let boot = case::boot_medium_disks();
    let disks: Vec<BlockDevice> = devices::list()?
        .into_iter()
        .filter(|d| !boot.contains(&d.name) && !s.unlocked.contains(&d.name))
        .collect();
    if disks.is_empty() {
        say!("no disk to acquire (the boot medium and the evidence disk are never offered)");
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(chosen) = ask.multi("Disks to acquire", &items)? else {
        return Ok(());
    };
    if chosen.is_empty() {
        say!("nothing chosen");
        return Ok(());
    }
    let case_dir = Path::new(&dest.mountpoint).join(case_id);
    for i in chosen {
        let disk = &disks[i];
        let default_id = disk.name.clone();
        let evidence_id = loop {
            let Some(e) =
                ask.input(&format!("Evidence id for {}", disk.path), Some(&default_id))?
            else {
                return Ok(());
            };
            match case::check_case_id(&e) {
                Ok(()) => break e,
                Err(_) => say!("an evidence id names a directory: letters, digits, - _ ."),
            }
        };
        let dir: PathBuf = case_dir.join(&evidence_id);
        let dir_s = dir.display().to_string();
        let mut words = vec![
            "acquire",
            disk.path.as_str(),
            "--out",
            dir_s.as_str(),
            "--evidence-id",
            evidence_id.as_str(),
        ];
        if dir.join(".resume.json").exists() {
            say!("{dir_s} holds an interrupted acquisition: continuing it");
            words.push("--resume");
        }
        let code = run(ask, &words);
        if code != 0 && code != super::acquire::EXIT_UNREADABLE {
            say!(
                "{} is not completely acquired (exit status {code}); choose step 4 again to continue it",
                disk.path
            );
            continue;
        }
        let verdict = run(ask, &["verify", &dir_s]);
        say!(
            "{}: {}",
            disk.path,
            if verdict == 0 {
                "acquired and verified"
            } else {
                "acquired, but VERIFICATION FAILED"
            }
        );
    }
    Ok(())
}

fn step_target(ask: &Ask, what: &str) -> anyhow::Result<()> {
    let disks = devices::list()?;
    if disks.is_empty() {
        say!("no disks");
        return Ok(());
    }
    let items: Vec<String> = disks.iter().map(disk_line).collect();
    let Some(i) = ask.select(&format!("Disk to {what}"), &items)? else {
        return Ok(());
    };
    let disk = &disks[i];
    let mut reason = None;
    let mut code = run(ask, &["case", "target", &disk.path]);
    if code != 0 {
        // The boot medium and the evidence disk are refused whatever the reason: do not ask for one.
        let hard =
            case::boot_medium_disks().contains(&disk.name) || state().unlocked.contains(&disk.name);
        if hard {
            return Ok(());
        }
        let Some(typed) = ask.input(
            "Reason to overwrite it anyway (recorded in the case log; empty cancels)",
            Some(""),
        )?
        else {
            return Ok(());
        };
        if typed.is_empty() {
            say!("{} is not cleared as a {what} target", disk.path);
            return Ok(());
        }
        code = run(ask, &["case", "target", &disk.path, "--reason", &typed]);
        reason = Some(typed);
    }
    if code != 0 {
        return Ok(());
    }
    say!("{} is cleared as the {what} target", disk.path);
    if what == "reinstall" {
        reinstall_onto(ask, &disk.path, reason.as_deref())
    } else {
        restore_onto(ask, &disk.path, reason.as_deref())
    }
}

/// Asks for a path; `None` when the operator leaves it empty or cancels.
fn ask_path(ask: &Ask, prompt: &str) -> anyhow::Result<Option<String>> {
    Ok(ask
        .input(prompt, Some(""))?
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty()))
}

/// `--sums FILE [--sig FILE] [--keyring FILE]` as the operator names them (nothing when no list is given:
/// the command then says the image is not authenticated, or refuses).
fn ask_sums(ask: &Ask) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    if let Some(sums) = ask_path(
        ask,
        "Checksum list (SHA256SUMS, CHECKSUM, ...; empty: none, an acquisition manifest is used if present)",
    )? {
        words.extend(["--sums".to_owned(), sums]);
        if let Some(sig) = ask_path(
            ask,
            "Its detached signature (.sign/.gpg; empty: the list is cleartext-signed)",
        )? {
            words.extend(["--sig".to_owned(), sig]);
        }
        if let Some(key) = ask_path(
            ask,
            "The signer's public key file (empty: the keys built into this image)",
        )? {
            words.extend(["--keyring".to_owned(), key]);
        }
    }
    Ok(words)
}

/// Where the image and its checksum list are read from: `--media DEVICE` (a disk, partition or CD other
/// than the target and the evidence disk, mounted read-only by the command), or no medium (paths in the
/// rescue system, e.g. under /mnt/evidence). `None` when the operator cancels.
fn ask_media(ask: &Ask, target: &str) -> anyhow::Result<Option<Vec<String>>> {
    let s = state();
    let mut choices: Vec<(String, Option<String>)> = vec![(
        "No medium: paths in the rescue system (e.g. /mnt/evidence/...)".to_owned(),
        None,
    )];
    for d in devices::list()? {
        if d.path == target || s.unlocked.contains(&d.name) {
            continue;
        }
        if d.partitions.is_empty() {
            choices.push((disk_line(&d), Some(d.path.clone())));
        }
        for p in &d.partitions {
            let line = format!(
                "{:<8} {:>10}  partition of {} (serial {})",
                p.name,
                devices::human_size(p.size_bytes),
                d.name,
                d.serial.as_deref().unwrap_or("none")
            );
            choices.push((line, Some(p.path.clone())));
        }
    }
    let items: Vec<String> = choices.iter().map(|(l, _)| l.clone()).collect();
    let Some(i) = ask.select(
        "Disk or CD holding the image and its checksum list (mounted read-only)",
        &items,
    )?
    else {
        return Ok(None);
    };
    Ok(Some(match &choices[i].1 {
        Some(dev) => vec!["--media".to_owned(), dev.clone()],
        None => Vec::new(),
    }))
}

/// Reinstall step after the interlock: write a verified image onto the disk, or kexec a verified installer.
fn reinstall_onto(ask: &Ask, target: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let actions = [
        format!("Write a verified golden/installer image onto {target} (deploy, read back)"),
        "Boot a verified installer ISO now (kexec; the rescue system ends)".to_owned(),
        "Nothing now".to_owned(),
    ];
    let Some(choice) = ask.select("Reinstall how", &actions)? else {
        return Ok(());
    };
    match choice {
        0 => {
            let Some(media) = ask_media(ask, target)? else {
                return Ok(());
            };
            let Some(image) = ask_path(ask, "Image file (raw, image.raw.zst or ISO)")? else {
                return Ok(());
            };
            let sums = ask_sums(ask)?;
            let Some(serial) = ask_path(
                ask,
                &format!("Type the serial of {target} (or its last 6 characters) to overwrite it"),
            )?
            else {
                return Ok(());
            };
            let mut words = vec!["deploy".to_owned(), image, "--target".to_owned()];
            words.extend([target.to_owned(), "--confirm".to_owned(), serial]);
            words.extend(media);
            words.extend(sums);
            if let Some(r) = reason {
                words.extend(["--reason".to_owned(), r.to_owned()]);
            }
            run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
        }
        1 => {
            let Some(media) = ask_media(ask, target)? else {
                return Ok(());
            };
            let Some(iso) = ask_path(ask, "Installer ISO")? else {
                return Ok(());
            };
            let mut words = vec!["reinstall".to_owned(), "boot".to_owned(), iso];
            words.extend(media);
            words.extend(ask_sums(ask)?);
            if ask.confirm("Verify it and boot it now (this ends the rescue system)?")? {
                run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Restore step after the interlock: a dry run first (what would be restored and what refused), then the
/// restore itself after a confirmation.
fn restore_onto(ask: &Ask, target: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let Some(source) = ask_path(
        ask,
        "Backup to restore from (directory, .tar/.tar.zst, disk image or disk)",
    )?
    else {
        return Ok(());
    };
    let mut words = vec!["restore".to_owned(), source, target.to_owned()];
    if let Some(sums) = ask_path(
        ask,
        "The backup's checksum list (SHA256SUMS or restore-manifest.json; empty: none)",
    )? {
        words.extend(["--manifest".to_owned(), sums]);
    }
    if let Some(list) = ask_path(ask, "Blocklist of IOC hashes (empty: none)")? {
        words.extend(["--blocklist".to_owned(), list]);
    }
    if let Some(r) = reason {
        words.extend(["--reason".to_owned(), r.to_owned()]);
    }
    let Some(serial) = ask_path(
        ask,
        &format!("Type the serial of {target} (or its last 6 characters) to write to it"),
    )?
    else {
        return Ok(());
    };
    words.extend(["--confirm".to_owned(), serial]);
    let mut dry = words.clone();
    dry.push("--dry-run".to_owned());
    if run(ask, &dry.iter().map(String::as_str).collect::<Vec<_>>()) != 0 {
        return Ok(());
    }
    if ask.confirm("Restore these files now (screened files stay out, as listed above)?")? {
        run(ask, &words.iter().map(String::as_str).collect::<Vec<_>>());
    }
    Ok(())
}

fn step_report(ask: &Ask) -> anyhow::Result<()> {
    run(ask, &["case", "show"]);
    let s = state();
    for a in &s.acquisitions {
        say!(
            "  {:<8} {:<40} {} {}",
            a.disk,
            a.dir,
            if a.complete { "complete" } else { "INCOMPLETE" },
            if a.verified {
                "verified"
            } else {
                "NOT verified"
            }
        );
    }
    let log = Locked::open()?.log_path();
    run(ask, &["log", "verify", &log.display().to_string()]);
    if ask.confirm("Power off now (sync, unmount the evidence disk, power off)?")? {
        run(ask, &["poweroff"]);
    }
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
        assert_eq!(Step::from_number("8"), None);
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
