//! Every command line that README.md and docs/*.md quote for a reader to type parses.
//!
//! Quoted lines are the ones in fenced code blocks and in inline code that begin with `rescue `,
//! `rescue> ` (the prompt) or `cargo xtask `. A `rescue` line is parsed with the binary's own clap
//! grammar (nothing runs): an unknown command or flag, a missing argument or a bad value fails. A
//! `cargo xtask` line is checked against xtask's source: the task must be an arm of the dispatch in
//! `xtask/src/main.rs` (and a `bench` kind an arm of `xtask/src/bench.rs`), and every `--flag` must be
//! an arm of the flag match in the module that task dispatches to. So the check follows xtask when it
//! gains or loses a task or a flag, without a list kept here. Relative links between the documents
//! must lead to an existing file and heading.

use std::path::{Path, PathBuf};

use clap::Parser;

/// The rescue command grammar. The clap structs may move between modules; this is the one place
/// that names them.
fn parse_rescue(words: &[String]) -> Result<(), String> {
    let argv = std::iter::once("rescue".to_owned()).chain(words.iter().cloned());
    rescue::args::Cli::try_parse_from(argv)
        .map(|_| ())
        .map_err(|e| {
            // clap's message without its usage block: "error: …" and the lines naming what is wrong.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| !l.is_empty())
                .collect();
            lines.join(" ")
        })
}

/// Splits a line into words the way the `rescue> ` prompt does (quotes group, backslash escapes).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    rescue::args::split_words(line)
}

/// Words the prompt itself answers without the command grammar (see `ui::prompt`).
const PROMPT_BUILTINS: &[&str] = &["line", "help", "?"];

/// A command line found in a document: where it is and what it says.
#[derive(Debug, Clone, PartialEq)]
struct Quoted {
    line: usize,
    text: String,
}

/// The command lines quoted in a Markdown text, with continuation lines (`\` at the end) joined.
fn quoted_commands(markdown: &str) -> Vec<Quoted> {
    let mut found = Vec::new();
    let mut in_fence = false;
    let mut pending: Option<Quoted> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            pending = None;
            continue;
        }
        if in_fence {
            let (text, start) = match pending.take() {
                Some(mut p) => {
                    p.text.push(' ');
                    p.text.push_str(trimmed);
                    (p.text, p.line)
                }
                None => (trimmed.to_owned(), line_no),
            };
            if let Some(stripped) = text.strip_suffix('\\') {
                pending = Some(Quoted {
                    line: start,
                    text: stripped.trim_end().to_owned(),
                });
            } else if is_command(&text) {
                found.push(Quoted { line: start, text });
            }
            continue;
        }
        // Inline code: the text between pairs of backticks.
        let mut parts = raw.split('`');
        parts.next();
        while let Some(code) = parts.next() {
            if is_command(code.trim()) {
                found.push(Quoted {
                    line: line_no,
                    text: code.trim().to_owned(),
                });
            }
            parts.next();
        }
    }
    found
}

fn is_command(text: &str) -> bool {
    text.starts_with("rescue ") || text.starts_with("rescue> ") || text.starts_with("cargo xtask ")
}

/// One `"name" =>` / `Some("name") =>` arm of a `match`: the names it takes and the module it calls
/// (`build::run(…)` gives `build`), if it calls one.
#[derive(Debug)]
struct Arm {
    names: Vec<String>,
    module: Option<String>,
}

/// The arms of the string matches in a Rust source text whose patterns are string literals.
fn match_arms(source: &str) -> Vec<Arm> {
    let mut arms = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        let Some((lhs, rhs)) = line.split_once("=>") else {
            continue;
        };
        let mut names = Vec::new();
        for alt in lhs.split('|') {
            let alt = alt.trim();
            let alt = alt
                .strip_prefix("Some(")
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or(alt);
            match alt.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                Some(name) if !name.contains('"') => names.push(name.to_owned()),
                _ => {
                    names.clear();
                    break;
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        let rhs = rhs.trim();
        let module = rhs.split_once("::").map(|(m, _)| m.to_owned()).filter(|m| {
            !m.is_empty()
                && m.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        arms.push(Arm { names, module });
    }
    arms
}

/// What xtask accepts, read from its source.
struct Xtask {
    src: PathBuf,
}

impl Xtask {
    fn read(&self, module: &str) -> Result<String, String> {
        let path = self.src.join(format!("{module}.rs"));
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    /// Checks `cargo xtask WORDS…`.
    fn check(&self, words: &[String]) -> Result<(), String> {
        let Some((task, rest)) = words.split_first() else {
            return Err("no task after `cargo xtask`".to_owned());
        };
        let main = match_arms(&self.read("main")?);
        let arm = main
            .iter()
            .find(|a| a.names.contains(task))
            .ok_or_else(|| format!("xtask/src/main.rs dispatches no task {task:?}"))?;
        let Some(mut module) = arm.module.clone() else {
            return Ok(());
        };
        let mut source = self.read(&module)?;
        let mut rest = rest;
        // A task that dispatches on its first word (`bench build|boot|acquire|s3`).
        let kinds: Vec<Arm> = source
            .lines()
            .filter(|l| l.trim_start().starts_with("Some(\""))
            .flat_map(match_arms)
            // `Some("--soak")` is a flag of the task, not a kind.
            .filter(|a| a.names.iter().all(|n| !n.starts_with("--")))
            .collect();
        if !kinds.is_empty() {
            let Some((kind, after)) = rest.split_first() else {
                return Err(format!("`{task}` needs one of its kinds"));
            };
            let arm = kinds
                .iter()
                .find(|a| a.names.contains(kind))
                .ok_or_else(|| format!("xtask/src/{module}.rs has no {task} kind {kind:?}"))?;
            if let Some(m) = &arm.module {
                module = m.clone();
                source = self.read(&module)?;
            }
            rest = after;
        }
        let flags: Vec<String> = match_arms(&source)
            .into_iter()
            .flat_map(|a| a.names)
            .filter(|n| n.starts_with("--"))
            .collect();
        for word in rest {
            if !word.starts_with("--") {
                continue;
            }
            let flag = word.split_once('=').map_or(word.as_str(), |(f, _)| f);
            if !flags.iter().any(|f| f == flag) {
                return Err(format!(
                    "`cargo xtask {task}` has no flag {flag} (xtask/src/{module}.rs takes: {})",
                    flags.join(" ")
                ));
            }
        }
        Ok(())
    }
}

/// Checks one quoted command line; `Err` says what is wrong.
fn check_line(xtask: &Xtask, text: &str) -> Result<(), String> {
    let (prompt, rest) = if let Some(r) = text.strip_prefix("rescue> ") {
        (true, r)
    } else if let Some(r) = text.strip_prefix("rescue ") {
        (false, r)
    } else if let Some(r) = text.strip_prefix("cargo xtask ") {
        return xtask.check(&words_of(r)?);
    } else {
        return Err("not a command line".to_owned());
    };
    let words = words_of(rest)?;
    if prompt && (words.is_empty() || PROMPT_BUILTINS.contains(&words[0].as_str())) {
        return Ok(());
    }
    parse_rescue(&words)
}

/// The words of a line, up to a shell comment.
fn words_of(line: &str) -> Result<Vec<String>, String> {
    let mut words = split_words(line)?;
    if let Some(comment) = words.iter().position(|w| w.starts_with('#')) {
        words.truncate(comment);
    }
    Ok(words)
}

/// Every failure in one document, as `FILE:LINE: `text`: why`, and how many lines were checked.
fn check_document(xtask: &Xtask, name: &str, markdown: &str) -> (Vec<String>, usize) {
    let quoted = quoted_commands(markdown);
    let failures = quoted
        .iter()
        .filter_map(|q| {
            check_line(xtask, &q.text)
                .err()
                .map(|why| format!("{name}:{}: `{}`: {why}", q.line, q.text))
        })
        .collect();
    (failures, quoted.len())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the rescue crate sits inside the workspace")
        .to_path_buf()
}

fn xtask() -> Xtask {
    Xtask {
        src: workspace().join("xtask/src"),
    }
}

/// README.md and every docs/*.md, sorted.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("reading docs/")
        .map(|e| e.expect("reading docs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

#[test]
fn every_command_line_in_the_docs_parses() {
    let xtask = xtask();
    let root = workspace();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut readme_lines = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let (f, n) = check_document(&xtask, &name, &text);
        failures.extend(f);
        checked += n;
        if name == "README.md" {
            readme_lines = quoted_commands(&text).into_iter().map(|q| q.text).collect();
        }
    }
    assert!(
        failures.is_empty(),
        "{} quoted command line(s) do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The scan itself must have found the commands a newcomer needs, or it checked nothing.
    for needed in ["cargo xtask build", "cargo xtask test"] {
        assert!(
            readme_lines.iter().any(|l| l.starts_with(needed)),
            "README.md quotes no `{needed}` (found: {readme_lines:?})"
        );
    }
    assert!(
        checked >= 40,
        "only {checked} command lines found in README.md and docs/"
    );
}

#[test]
fn planted_bad_lines_are_refused() {
    let xtask = xtask();
    let doc = "\
# A document with mistakes

```sh
rescue acquire /dev/sdb --out /mnt/evidence/case-1/disk-1 --hash sha256 --no-such-flag
rescue> frobnicate /dev/sdb
rescue unlock /dev/sdc
rescue format /dev/sdc1 --fs ntfs --confirm 1A2B3C
cargo xtask bild
cargo xtask build --kernal /boot/vmlinuz
cargo xtask bench acquire --no-such-flag
cargo xtask bench nothing
```

Inline too: `rescue devices --jsn` and `rescue verify`.
";
    let (failures, checked) = check_document(&xtask, "planted.md", doc);
    assert_eq!(checked, 10, "{failures:?}");
    assert_eq!(
        failures.len(),
        10,
        "every planted line must fail: {failures:#?}"
    );
    assert!(failures[0].contains("--no-such-flag"), "{}", failures[0]);
    assert!(failures[4].contains("no task \"bild\""), "{}", failures[4]);
    assert!(failures[5].contains("no flag --kernal"), "{}", failures[5]);

    let good = "\
```sh
rescue acquire /dev/sdb --out /mnt/evidence/case-1/disk-1 --hash sha256,md5 \\
               --window 1G   # a comment
rescue> devices --json
rescue> line
cargo xtask build --kernel /boot/vmlinuz-6.1.0-28-amd64 --modules /lib/modules/6.1.0-28-amd64
cargo xtask bench acquire --runs 5
cargo xtask test
```
and `rescue verify /mnt/evidence/case-1/disk-1`, `cargo xtask qemu --iso --bios`.
";
    let (failures, checked) = check_document(&xtask, "good.md", good);
    assert_eq!(checked, 8);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn xtask_dispatch_is_read_from_its_source() {
    let main = match_arms(&xtask().read("main").expect("xtask/src/main.rs"));
    let tasks: Vec<&str> = main
        .iter()
        .filter(|a| a.module.is_some())
        .flat_map(|a| a.names.iter().map(String::as_str))
        .collect();
    // If this finds nothing, the reader no longer understands main.rs and every xtask line would
    // be refused; fix the reader, not the docs.
    assert!(
        tasks.contains(&"build") && tasks.contains(&"test"),
        "{tasks:?}"
    );
}

#[test]
fn continuation_lines_and_inline_code_are_found() {
    let md = "text `rescue devices` and `not a command`\n```\nrescue acquire /dev/sdb \\\n  --out /tmp/x\ncd /tmp\n```\n";
    assert_eq!(
        quoted_commands(md),
        [
            Quoted {
                line: 1,
                text: "rescue devices".to_owned()
            },
            Quoted {
                line: 3,
                text: "rescue acquire /dev/sdb --out /tmp/x".to_owned()
            },
        ]
    );
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Relative links `[text](path#anchor)` of a document that lead nowhere.
fn broken_links(doc: &Path, markdown: &str) -> Vec<String> {
    let dir = doc.parent().unwrap_or(Path::new("."));
    let mut broken = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        for target in line.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if target.contains("://") || target.is_empty() {
                continue;
            }
            let (file, frag) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                doc.to_path_buf()
            } else {
                dir.join(file)
            };
            let Ok(text) = std::fs::read_to_string(&path) else {
                broken.push(format!(
                    "{}:{}: {target}: no such file",
                    doc.display(),
                    i + 1
                ));
                continue;
            };
            if !frag.is_empty() && !anchors(&text).iter().any(|a| a == frag) {
                broken.push(format!(
                    "{}:{}: {target}: no such heading",
                    doc.display(),
                    i + 1
                ));
            }
        }
    }
    broken
}

#[test]
fn links_between_the_docs_lead_somewhere() {
    let mut broken = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        broken.extend(broken_links(&path, &text));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));

    let dir = workspace().join("docs");
    let planted = "[a](nowhere.md) [b](benchmarks.md#no-such-section) [c](#also-not-here)";
    let found = broken_links(&dir.join("benchmarks.md"), planted);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[2].ends_with("#also-not-here: no such heading"),
        "{}",
        found[2]
    );
    assert!(
        broken_links(
            &dir.join("benchmarks.md"),
            "[d](#upload-cargo-xtask-bench-s3)"
        )
        .is_empty()
    );
    assert_eq!(
        anchor(" Acquisition (`cargo xtask bench acquire`)"),
        "acquisition-cargo-xtask-bench-acquire"
    );
}
