//! Tidy checks on `rescue`'s own source text, in the spirit of rust-analyzer's tidy tests: the
//! boundaries ARCHITECTURE.md promises are checked on every `cargo test`, not hoped for.
//!
//! - Engine modules (every top-level module of `rescue/src` except `main`, `cli`, `init` and `ui`)
//!   never print, read stdin, touch termios or exit the process.
//! - Engine modules import nothing from `main`, `cli`, `init` or `ui`.
//! - No import cycle between `rescue`'s top-level modules.
//! - Tests wait on the thing they wait for, not on a timer: no `thread::sleep` call and no shell
//!   `sleep N` in a test's source (`tests/`, `rescue/tests/`) unless an `allow(sleep):` comment on
//!   the line or right above it says why.
//!
//! The scan works on source text with comments, string and character literals blanked out, so a doc
//! comment naming `crate::ui` or a message containing "println!" does not count. Code under
//! `#[cfg(test)]` (inline items and `#[cfg(test)] mod x;` files) is skipped: it is not in the binary,
//! and tests may print. Each check is a function that the real tree and a fixture with planted
//! violations both go through, so each test shows it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules that may print, read the terminal and choose exit codes.
const FRONT: [&str; 4] = ["main", "cli", "init", "ui"];

/// One source file: the top-level module it belongs to, its path (for messages) and its text.
#[derive(Debug, Clone)]
struct SourceFile {
    module: String,
    path: String,
    text: String,
}

// ---------------------------------------------------------------------------------------------------
// Lexing: blank comments and literals, skip #[cfg(test)] items, split into tokens.
// ---------------------------------------------------------------------------------------------------

/// For a raw string literal starting at `i` (`r"`, `r#"`, `br##"`, …): the index of its opening quote
/// and the number of `#`.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    let start = match (b.get(i), b.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b'), Some('r')) => i + 2,
        _ => return None,
    };
    let mut j = start;
    while b.get(j) == Some(&'#') {
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((j, j - start))
}

/// `text` with comments, string, byte-string, raw-string and char literals replaced by spaces (line
/// breaks kept), so what remains is code.
fn blank_comments_and_literals(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if let Some((open, hashes)) = raw_string_start(&b, i).filter(|_| !prev_ident) {
            // Raw string: r#"…"#, br"…".
            let mut k = open + 1;
            while k < b.len() {
                if b[k] == '"' && (0..hashes).all(|h| b.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for &ch in &b[i..k.min(b.len())] {
                out.push(blank(ch));
            }
            i = k;
        } else if c == '"' || (c == 'b' && next == Some('"') && !prev_ident) {
            let mut k = if c == 'b' { i + 2 } else { i + 1 };
            while k < b.len() && b[k] != '"' {
                if b[k] == '\\' {
                    k += 1;
                }
                k += 1;
            }
            let end = (k + 1).min(b.len());
            for &ch in &b[i..end] {
                out.push(blank(ch));
            }
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '\'') or a lifetime ('a): only the former closes.
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == '\'' && k > i + 2)
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    for &ch in &b[i..=k] {
                        out.push(blank(ch));
                    }
                    i = k + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Punct(char),
}

/// Identifiers and single punctuation characters, each with its 1-based line.
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphabetic() || c == '_' {
            let mut id = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    id.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((Token::Ident(id), line));
        } else if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
            {
                chars.next();
            }
        } else if !c.is_whitespace() {
            out.push((Token::Punct(c), line));
        }
    }
    out
}

fn is_ident(t: Option<&(Token, usize)>, s: &str) -> bool {
    matches!(t, Some((Token::Ident(i), _)) if i == s)
}

fn is_punct(t: Option<&(Token, usize)>, p: char) -> bool {
    matches!(t, Some((Token::Punct(c), _)) if *c == p)
}

/// Index just past `#[ … ]` starting at `i` (which holds `#`).
fn skip_attribute(toks: &[(Token, usize)], i: usize) -> usize {
    let mut depth = 0;
    let mut k = i + 1;
    while k < toks.len() {
        match &toks[k].0 {
            Token::Punct('[') => depth += 1,
            Token::Punct(']') => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
        k += 1;
    }
    k
}

/// What a file compiles into the binary: its tokens with every `#[cfg(test)]` item removed, and the
/// names of `#[cfg(test)] mod x;` children (whose files are test-only).
fn non_test_tokens(code: &str) -> (Vec<(Token, usize)>, Vec<String>) {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut test_children = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let cfg_test = is_punct(toks.get(i), '#')
            && is_punct(toks.get(i + 1), '[')
            && is_ident(toks.get(i + 2), "cfg")
            && is_punct(toks.get(i + 3), '(')
            && is_ident(toks.get(i + 4), "test")
            && is_punct(toks.get(i + 5), ')')
            && is_punct(toks.get(i + 6), ']');
        if !cfg_test {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        // Skip this attribute, any further attributes, then the item: up to a `;` at depth 0 or the
        // close of its first top-level `{ … }`.
        let mut k = i + 7;
        while is_punct(toks.get(k), '#') {
            k = skip_attribute(&toks, k);
        }
        let item_start = k;
        let mut depth = 0i32;
        while k < toks.len() {
            match &toks[k].0 {
                Token::Punct('(' | '[' | '{') => depth += 1,
                Token::Punct(')' | ']') => depth -= 1,
                Token::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        k += 1;
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => {
                    // `mod name;`: the child file is test-only.
                    let words: Vec<&str> = toks[item_start..k]
                        .iter()
                        .filter_map(|(t, _)| match t {
                            Token::Ident(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect();
                    if let [.., "mod", name] = words.as_slice() {
                        test_children.push((*name).to_owned());
                    }
                    k += 1;
                    break;
                }
                _ => {}
            }
            k += 1;
        }
        i = k;
    }
    (out, test_children)
}

// ---------------------------------------------------------------------------------------------------
// Loading the tree.
// ---------------------------------------------------------------------------------------------------

fn rs_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Names declared with `mod NAME;` in the crate root (any visibility and attributes).
fn declared_modules(lib_rs: &str) -> Vec<String> {
    let (toks, _) = non_test_tokens(&blank_comments_and_literals(lib_rs));
    let mut out = Vec::new();
    for w in toks.windows(3) {
        if let [
            (Token::Ident(m), _),
            (Token::Ident(name), _),
            (Token::Punct(';'), _),
        ] = w
            && m == "mod"
        {
            out.push(name.clone());
        }
    }
    out
}

/// Every production source file of `rescue/src`, tagged with its top-level module (`main` for the
/// binary's `main.rs`). Files that only a `#[cfg(test)] mod x;` declares are left out.
fn load_tree(src: &Path) -> Vec<SourceFile> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("reading rescue/src/lib.rs");
    let mut files: Vec<(String, PathBuf)> = vec![("main".to_owned(), src.join("main.rs"))];
    for m in declared_modules(&lib) {
        let single = src.join(format!("{m}.rs"));
        if single.is_file() {
            files.push((m.clone(), single));
        }
        let mut under = Vec::new();
        rs_files_under(&src.join(&m), &mut under);
        under.sort();
        files.extend(under.into_iter().map(|p| (m.clone(), p)));
    }
    let mut loaded = Vec::new();
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    for (module, path) in &files {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let (_, children) = non_test_tokens(&blank_comments_and_literals(&text));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let child_dir = if stem == "mod" {
            path.parent().unwrap_or(src).to_owned()
        } else {
            path.with_extension("")
        };
        for c in children {
            test_only.insert(child_dir.join(format!("{c}.rs")));
            test_only.insert(child_dir.join(&c).join("mod.rs"));
        }
        loaded.push((module.clone(), path.clone(), text));
    }
    loaded
        .into_iter()
        .filter(|(_, p, _)| !test_only.contains(p))
        .map(|(module, path, text)| SourceFile {
            module,
            path: path
                .strip_prefix(src.parent().unwrap_or(src))
                .unwrap_or(&path)
                .display()
                .to_string(),
            text,
        })
        .collect()
}

fn real_tree() -> Vec<SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = load_tree(&src);
    // Guard against a loader that silently finds nothing: the tree has dozens of modules.
    let modules: BTreeSet<&str> = files.iter().map(|f| f.module.as_str()).collect();
    assert!(
        modules.len() >= 20
            && ["acquire", "cli", "init", "ui", "s3"]
                .iter()
                .all(|m| modules.contains(m)),
        "tidy found too few modules in {}: {modules:?}",
        src.display()
    );
    files
}

// ---------------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------------

/// `path:line: what` for every print, stdin read, termios call or process exit in an engine module.
fn engine_side_effects(files: &[SourceFile]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !FRONT.contains(&f.module.as_str())) {
        let (toks, _) = non_test_tokens(&blank_comments_and_literals(&f.text));
        for (i, (tok, line)) in toks.iter().enumerate() {
            let Token::Ident(id) = tok else { continue };
            let prev = i.checked_sub(1).and_then(|p| toks.get(p));
            let after_path = is_punct(prev, ':')
                && i >= 3
                && is_punct(toks.get(i - 2), ':')
                && matches!(&toks[i - 3].0, Token::Ident(s) if ["process", "libc", "unistd"].contains(&s.as_str()));
            let what = match id.as_str() {
                "print" | "println" | "eprint" | "eprintln" | "dbg"
                    if is_punct(toks.get(i + 1), '!') =>
                {
                    Some("prints")
                }
                // `.stdin(Stdio::null())` configures a child process; anything else reaches ours.
                "stdin" if !is_punct(prev, '.') => Some("reads stdin"),
                "Stdin" | "StdinLock" | "STDIN_FILENO" => Some("reads stdin"),
                "termios" | "Termios" | "tcgetattr" | "tcsetattr" | "cfmakeraw" | "TCGETS"
                | "TCSETS" => Some("touches termios"),
                "exit" | "_exit" | "abort" if after_path => Some("exits the process"),
                "exit" | "_exit"
                    if is_punct(toks.get(i + 1), '(')
                        && !is_punct(prev, '.')
                        && !is_punct(prev, ':')
                        && !is_ident(prev, "fn") =>
                {
                    Some("exits the process")
                }
                _ => None,
            };
            if let Some(what) = what {
                found.push(format!("{}:{line}: {what} ({id})", f.path));
            }
        }
    }
    found
}

/// The marker of a sleep that is not a poll; the reason follows it on the same line.
const ALLOW_SLEEP: &str = "allow(sleep):";

/// `path:line: what` for every sleep in test sources: a call of `sleep` (`thread::sleep`, `usleep`,
/// `nanosleep`) in code, or a shell `sleep N` in a string (a guest script) outside comments. A line
/// is allowed when it, or the comment lines right above it, carry [`ALLOW_SLEEP`] and a reason of at
/// least three words.
fn timed_waits(files: &[SourceFile]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let raw: Vec<&str> = f.text.lines().collect();
        let allowed = |line: usize| {
            let explained = |l: &str| {
                l.split_once(ALLOW_SLEEP)
                    .is_some_and(|(_, why)| why.split_whitespace().count() >= 3)
            };
            let at = line - 1;
            explained(raw[at])
                || raw[..at]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim_start().starts_with("//"))
                    .any(|l| explained(l))
        };
        let mut hits = Vec::new();
        let toks = tokens(&blank_comments_and_literals(&f.text));
        for (i, (tok, line)) in toks.iter().enumerate() {
            let Token::Ident(id) = tok else { continue };
            let prev = i.checked_sub(1).and_then(|p| toks.get(p));
            if ["sleep", "usleep", "nanosleep"].contains(&id.as_str())
                && is_punct(toks.get(i + 1), '(')
                && !is_ident(prev, "fn")
            {
                hits.push((*line, format!("sleeps ({id})")));
            }
        }
        for (n, l) in raw.iter().enumerate() {
            let t = l.trim_start();
            if t.starts_with("//") || t.starts_with("/*") || t.starts_with('*') {
                continue;
            }
            let mut rest = *l;
            while let Some(at) = rest.find("sleep") {
                let before = rest[..at].chars().next_back();
                let after = &rest[at + "sleep".len()..];
                let arg = after.trim_start_matches([' ', '\t']);
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && after.len() > arg.len()
                    && arg.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                {
                    hits.push((n + 1, "sleeps in a shell script (sleep N)".to_owned()));
                }
                rest = after;
            }
        }
        hits.sort();
        for (line, what) in hits {
            if !allowed(line) {
                found.push(format!("{}:{line}: {what}", f.path));
            }
        }
    }
    found
}

/// The test sources of the workspace: `tests/` (QEMU harness and scenarios) and `rescue/tests/`
/// (CLI tests), without this file, whose fixtures plant sleeps on purpose.
fn test_sources() -> Vec<SourceFile> {
    let rescue = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rs_files_under(&rescue.join("tests"), &mut paths);
    rs_files_under(&rescue.join("../tests/src"), &mut paths);
    rs_files_under(&rescue.join("../tests/tests"), &mut paths);
    paths.retain(|p| !p.ends_with("rescue/tests/tidy.rs"));
    paths.sort();
    let files: Vec<SourceFile> = paths
        .iter()
        .map(|p| SourceFile {
            module: String::new(),
            path: p
                .strip_prefix(rescue.join(".."))
                .unwrap_or(p)
                .display()
                .to_string(),
            text: fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())),
        })
        .collect();
    // Guard against a loader that silently finds nothing: both trees hold many tests.
    assert!(
        files.len() >= 30
            && files.iter().any(|f| f.path.ends_with("tests/src/lib.rs"))
            && files
                .iter()
                .any(|f| f.path.ends_with("rescue/tests/acquire_cli.rs")),
        "tidy found too few test sources: {:?}",
        files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    files
}

/// Top-level modules a file refers to: `crate::m` (also inside `use crate::{m, …}` groups), `rescue::m`
/// in the binary, and `super::…` chains that climb to the crate root. With the line of each reference.
fn referenced_modules(file: &SourceFile, known: &BTreeSet<String>) -> Vec<(String, usize)> {
    let (toks, _) = non_test_tokens(&blank_comments_and_literals(&file.text));
    let root_names: &[&str] = if file.module == "main" {
        &["rescue"]
    } else {
        &["crate"]
    };
    // How many `super` reach the crate root from this file: rescue/src/ui/acquire.rs is two levels down.
    let rel = file.path.strip_prefix("src/").unwrap_or(&file.path);
    let depth = rel.matches('/').count() + 1 - usize::from(rel.ends_with("/mod.rs"));
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = &toks[i];
        let mut root_at = None;
        if let Token::Ident(id) = tok {
            let prev_is_path = i >= 1 && is_punct(toks.get(i - 1), ':');
            if root_names.contains(&id.as_str()) && !prev_is_path {
                root_at = Some(i + 1);
            } else if id == "super" && !prev_is_path {
                let mut k = i;
                let mut supers = 0;
                while is_ident(toks.get(k), "super")
                    && is_punct(toks.get(k + 1), ':')
                    && is_punct(toks.get(k + 2), ':')
                {
                    supers += 1;
                    k += 3;
                }
                if supers >= depth {
                    root_at = Some(k - 2);
                }
            }
        }
        if let Some(at) = root_at
            && is_punct(toks.get(at), ':')
            && is_punct(toks.get(at + 1), ':')
        {
            match toks.get(at + 2) {
                Some((Token::Ident(m), _)) if known.contains(m) => out.push((m.clone(), *line)),
                Some((Token::Punct('{'), _)) => {
                    // A group: the first name of every comma-separated entry at depth 1.
                    let mut depth = 0;
                    let mut expect_name = true;
                    let mut k = at + 2;
                    while k < toks.len() {
                        match &toks[k].0 {
                            Token::Punct('{') => {
                                depth += 1;
                                if depth == 1 {
                                    expect_name = true;
                                }
                            }
                            Token::Punct('}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Token::Punct(',') if depth == 1 => expect_name = true,
                            Token::Ident(m) if depth == 1 && expect_name => {
                                if known.contains(m) {
                                    out.push((m.clone(), toks[k].1));
                                }
                                expect_name = false;
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// Edges between top-level modules: `from → to → [(path, line)]`.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn module_graph(files: &[SourceFile]) -> Graph {
    let known: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph: Graph = known.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    for f in files {
        for (to, line) in referenced_modules(f, &known) {
            if to != f.module {
                graph
                    .entry(f.module.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(format!("{}:{line}", f.path));
            }
        }
    }
    graph
}

/// `path:line: engine module m uses f` for every reference from an engine module to main/cli/init/ui.
fn engine_reaches_front(files: &[SourceFile]) -> Vec<String> {
    let graph = module_graph(files);
    let mut found = Vec::new();
    for (from, tos) in &graph {
        if FRONT.contains(&from.as_str()) {
            continue;
        }
        for (to, sites) in tos {
            if FRONT.contains(&to.as_str()) {
                for s in sites {
                    found.push(format!("{s}: engine module {from} uses {to}"));
                }
            }
        }
    }
    found
}

/// Every cycle between top-level modules, each as `a -> b -> a` with the first reference of each edge.
/// One cycle per strongly connected component (found by a depth-first search inside it).
fn module_cycles(files: &[SourceFile]) -> Vec<String> {
    let graph = module_graph(files);
    // Tarjan's strongly connected components.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        components: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            let w = w.as_str();
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(comp);
        }
    }
    let mut s = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    let mut cycles = Vec::new();
    for comp in s.components.iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<&str> = comp.iter().copied().collect();
        // Walk from the smallest member along edges inside the component until a module repeats.
        let start = *members.iter().next().expect("non-empty");
        let mut path = vec![start];
        let mut cur = start;
        loop {
            let next = graph[cur]
                .keys()
                .map(String::as_str)
                .find(|w| members.contains(w))
                .expect("a module in a cycle has an edge inside it");
            if let Some(pos) = path.iter().position(|p| *p == next) {
                let ring: Vec<&str> = path[pos..].iter().copied().chain([next]).collect();
                let evidence: Vec<String> = ring
                    .windows(2)
                    .map(|e| format!("{} -> {} at {}", e[0], e[1], graph[e[0]][e[1]][0]))
                    .collect();
                cycles.push(format!("{} ({})", ring.join(" -> "), evidence.join("; ")));
                break;
            }
            path.push(next);
            cur = next;
        }
    }
    cycles
}

// ---------------------------------------------------------------------------------------------------
// Tests: the real tree, and a fixture with planted violations through the same functions.
// ---------------------------------------------------------------------------------------------------

fn fixture(files: &[(&str, &str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(module, path, text)| SourceFile {
            module: (*module).to_owned(),
            path: (*path).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

#[test]
fn engine_modules_never_print_read_stdin_touch_termios_or_exit() {
    let found = engine_side_effects(&real_tree());
    assert!(
        found.is_empty(),
        "engine modules must return values and errors and leave the terminal and the exit code to \
         ui/cli (see ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_side_effect_check_finds_planted_violations() {
    let engine = r####"//! Says println!("x") and std::process::exit(1) in a comment: not code.
use std::io::Write;
/* block comment: eprintln!("no") /* nested: dbg!(1) */ still comment */
fn quiet(out: &mut impl Write) -> std::io::Result<()> {
    let _ = "print!(\"in a string\") stdin termios";
    let _ = r#"libc::exit(3) "quoted" "#;
    let _ = '"';
    writeln!(out, "fine")?;
    std::process::Command::new("true").stdin(std::process::Stdio::null()).status()?;
    Ok(())
}
fn loud<'a>(s: &'a str) -> &'a str {
    println!("{s}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _ = nix::sys::termios::tcgetattr(std::io::stdin());
    dbg!(s);
    std::process::exit(2)
}
fn bye() { libc::exit(1); }
#[cfg(test)]
mod tests {
    #[test]
    fn may_print() { println!("tests may print"); std::process::exit(0); }
}
"####;
    let ui = r#"pub fn show() { println!("the ui prints"); std::process::exit(1) }"#;
    let found = engine_side_effects(&fixture(&[
        ("engine", "src/engine.rs", engine),
        ("ui", "src/ui/mod.rs", ui),
    ]));
    assert_eq!(
        found,
        [
            "src/engine.rs:13: prints (println)",
            "src/engine.rs:15: reads stdin (stdin)",
            "src/engine.rs:16: touches termios (termios)",
            "src/engine.rs:16: touches termios (tcgetattr)",
            "src/engine.rs:16: reads stdin (stdin)",
            "src/engine.rs:17: prints (dbg)",
            "src/engine.rs:18: exits the process (exit)",
            "src/engine.rs:20: exits the process (exit)",
        ]
    );
}

#[test]
fn engine_modules_import_nothing_from_main_cli_init_ui() {
    let found = engine_reaches_front(&real_tree());
    assert!(
        found.is_empty(),
        "engine modules must not depend on main, cli, init or ui:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_boundary_check_finds_planted_imports() {
    let files = fixture(&[
        (
            "acquire",
            "src/acquire/mod.rs",
            "//! Progress is shown by `crate::ui::acquire`.\nuse crate::{case, system};\n",
        ),
        (
            "acquire",
            "src/acquire/writer.rs",
            "use crate::{\n    devices,\n    ui::{self, print_error},\n};\n",
        ),
        (
            "acquire",
            "src/acquire/reader.rs",
            "fn f() { if super::super::init::ready() {} }\nfn g() { super::writer::go() }\n",
        ),
        (
            "case",
            "src/case.rs",
            "fn f() -> u8 { crate::cli::EXIT_OK }\n",
        ),
        ("system", "src/system.rs", "pub fn f() {}\n"),
        ("devices", "src/devices.rs", "\n"),
        ("ui", "src/ui/mod.rs", "use crate::{acquire, case};\n"),
        ("cli", "src/cli.rs", "use crate::ui;\n"),
        ("init", "src/init.rs", "\n"),
    ]);
    assert_eq!(
        engine_reaches_front(&files),
        [
            "src/acquire/reader.rs:1: engine module acquire uses init",
            "src/acquire/writer.rs:3: engine module acquire uses ui",
            "src/case.rs:1: engine module case uses cli",
        ]
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let cycles = module_cycles(&real_tree());
    assert!(
        cycles.is_empty(),
        "import cycles between rescue's top-level modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_planted_cycle() {
    // The cycle this crate had: cli uses ui, the prompt used cli back; init and ui used each other.
    let files = fixture(&[
        (
            "main",
            "src/main.rs",
            "fn main() { rescue::cli::main(); }\n",
        ),
        (
            "cli",
            "src/cli.rs",
            "use crate::ui;\nfn f() { crate::init::run_pid1() }\n",
        ),
        ("ui", "src/ui/mod.rs", "pub mod prompt;\n"),
        (
            "ui",
            "src/ui/prompt.rs",
            "use crate::cli;\n#[cfg(test)]\nmod tests { use crate::init; }\n",
        ),
        (
            "init",
            "src/init.rs",
            "use crate::{blkro, ui};\nuse crate::system::RESCUE_SYSTEM_ENV;\n",
        ),
        ("blkro", "src/blkro.rs", "\n"),
        ("system", "src/system.rs", "\n"),
    ]);
    assert_eq!(
        module_cycles(&files),
        [
            "cli -> init -> ui -> cli (cli -> init at src/cli.rs:2; init -> ui at src/init.rs:1; ui -> cli at src/ui/prompt.rs:1)"
        ]
    );
    // Without the back edges there is no cycle.
    let acyclic: Vec<SourceFile> = files
        .into_iter()
        .map(|mut f| {
            if f.module == "ui" || f.module == "init" {
                f.text = f
                    .text
                    .replace("crate::cli", "crate::system")
                    .replace(", ui", "");
            }
            f
        })
        .collect();
    assert_eq!(module_cycles(&acyclic), Vec::<String>::new());
}

#[test]
fn tests_wait_on_events_not_on_timers() {
    let found = timed_waits(&test_sources());
    assert!(
        found.is_empty(),
        "a test waits on a timer: wait on the output, event or file that says the thing happened \
         (a console line, a QMP event, a uevent, a pidfd, a blocking read), or say why the sleep is \
         no poll in an `{ALLOW_SLEEP} reason` comment:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_sleep_check_finds_planted_sleeps() {
    let planted = r####"//! A doc comment may say thread::sleep(d) and `sleep 0.1`.
use std::thread;
use std::time::Duration;
fn poll() {
    thread::sleep(Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(1));
    let script = "while [ ! -b /dev/vdb ]; do sleep 0.1; done";
    let later = r#"i=0; until grep -q READY out; do sleep 1; done"#;
    // allow(sleep): too short
    thread::sleep(Duration::from_secs(2));
    let fine = "exec /bin/sleepy 3; ln -s sleep x; asleep 2";
    // allow(sleep): waits for the clock itself to pass a timestamp tick, not for an event
    thread::sleep(Duration::from_millis(60));
    let planted = b"#!/bin/sh\nexec sleep 1\n"; // allow(sleep): a planted file, never run here
    let _ = (script, later, fine, planted);
}
fn sleep(d: Duration) -> Duration { d }
"####;
    let found = timed_waits(&fixture(&[("", "tests/tests/planted.rs", planted)]));
    assert_eq!(
        found,
        [
            "tests/tests/planted.rs:5: sleeps (sleep)",
            "tests/tests/planted.rs:6: sleeps (sleep)",
            "tests/tests/planted.rs:7: sleeps in a shell script (sleep N)",
            "tests/tests/planted.rs:8: sleeps in a shell script (sleep N)",
            "tests/tests/planted.rs:10: sleeps (sleep)",
        ]
    );
}
