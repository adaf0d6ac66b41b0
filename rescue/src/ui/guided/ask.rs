//! The prompt layer of guided mode: dialoguer prompts (select, input, confirm) on a terminal, numbered
//! lists answered with a typed line elsewhere, every question and choice fitted to the console's width.

use super::*;

/// Keeps the terminal from echoing (and line-buffering) while a dialoguer prompt runs: dialoguer reads
/// one key at a time in raw mode and draws its own echo, so bytes that arrive between two key reads (a
/// fast typist, a pasted answer, a test harness) must not be echoed a second time by the line discipline.
pub(super) struct QuietTerminal(Option<termios::Termios>);

impl QuietTerminal {
    pub(super) fn new() -> Self {
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
pub(super) struct Ask {
    /// Runs the line-mode commands a step issues (the dispatcher, handed in by the caller).
    pub(super) exec: Executor,
    fancy: bool,
    term: dialoguer::console::Term,
    theme: SimpleTheme,
}

/// `Ok(None)`: the operator cancelled (Esc, `q`, Ctrl-C).
pub(super) type Answer<T> = anyhow::Result<Option<T>>;

pub(super) fn cancelled<T>(e: dialoguer::Error) -> Answer<T> {
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
    let mut lines = crate::ui::wrap(prompt, width.saturating_sub(2), 0);
    let last = lines.pop().unwrap_or_default();
    let lead = lines
        .iter()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    (lead, last)
}

/// Choices of a list fitted to `width` columns after a marker of `marker` columns (`> `, `[x] `, `12) `).
pub(super) fn fit_items(items: &[String], width: usize, marker: usize) -> Vec<String> {
    items
        .iter()
        .map(|i| crate::ui::truncate(i, width.saturating_sub(marker).max(8)))
        .collect()
}

impl Ask {
    pub(super) fn new(exec: Executor) -> Self {
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
    pub(super) fn fit(&self, prompt: &str) -> String {
        let (lead, last) = prompt_lines(prompt, crate::ui::columns());
        print!("{lead}");
        let _ = std::io::stdout().flush();
        last
    }

    /// After dialoguer took an Enter: the LF of a CR LF pair must not answer the next prompt.
    pub(super) fn after_fancy<T>(answer: Answer<T>) -> Answer<T> {
        crate::ui::lineedit::take_pending_lf();
        answer
    }

    pub(super) fn select(&self, prompt: &str, items: &[String]) -> Answer<usize> {
        let width = crate::ui::columns();
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

    pub(super) fn multi(&self, prompt: &str, items: &[String]) -> Answer<Vec<usize>> {
        let width = crate::ui::columns();
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
    pub(super) fn input(&self, prompt: &str, default: Option<&str>) -> Answer<String> {
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

    pub(super) fn confirm(&self, prompt: &str) -> anyhow::Result<bool> {
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

    pub(super) fn line(&self, prompt: &str) -> anyhow::Result<Option<String>> {
        Ok(crate::ui::lineedit::read_line(prompt)?.map(|l| l.trim().to_owned()))
    }
}
