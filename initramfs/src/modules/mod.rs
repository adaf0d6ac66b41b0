//! Index of one kernel's modules, read from depmod's text files (`modules.dep`, `modules.alias`,
//! `modules.softdep`, `modules.builtin`), and the questions the builder and the coldplug ask of it:
//! which modules a profile needs (closure), in which order to load one (load order), which modules claim a
//! device (modalias glob match), and a smaller index holding only what went into the initramfs.
//!
//! Kernel packages that ship no `modules.dep` (Debian's, which run depmod at install time) are indexed from
//! the `.ko` files themselves with `generate_index`, in `generate` (feature `build`: the builder needs it,
//! the running system, which reads the index the builder wrote, does not).
//!
//! Pure data: nothing here loads a module or looks at the running system. Matching follows kmod: module
//! names and alias strings compare with `-` and `_` equal (outside `[...]`), patterns are `fnmatch(3)` globs.

mod fnmatch;
#[cfg(feature = "build")]
mod generate;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use fnmatch::fnmatch;
#[cfg(feature = "build")]
pub use generate::generate_index;

#[derive(Debug, thiserror::Error)]
pub enum ModuleIndexError {
    #[error("parsing {file} line {line}: {reason}")]
    ParseLine {
        file: &'static str,
        line: usize,
        reason: String,
    },
    #[error("reading {}", path.display())]
    ReadIndexFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("looking up module {name}: not in modules.dep and not built in")]
    LookUpModule { name: String },
    #[cfg(feature = "build")]
    #[error("walking the modules directory {}", path.display())]
    WalkModulesDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "build")]
    #[error("reading module {}", path.display())]
    ReadModule {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "build")]
    #[error("decompressing module {}", path.display())]
    DecompressModule {
        path: PathBuf,
        #[source]
        source: crate::decompress::DecompressError,
    },
    #[cfg(feature = "build")]
    #[error("parsing the .modinfo of {}", path.display())]
    ParseModinfo {
        path: PathBuf,
        #[source]
        source: crate::modinfo::ModinfoError,
    },
    #[error("resolving dependency {dependency} of module {module}: no such module")]
    ResolveDependency { module: String, dependency: String },
}

/// `-` and `_` are interchangeable in module names; the kernel and kmod use `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Like [`normalize`] but leaves `[...]` sets of a glob alone (kmod's `alias_normalize`), so `[0-9]`
/// keeps its range.
fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_set = false;
    for c in alias.chars() {
        match c {
            '[' => in_set = true,
            ']' => in_set = false,
            '-' if !in_set => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The module name a path in depmod's files stands for: `kernel/drivers/usb/storage/usb-storage.ko.xz` →
/// `usb_storage`. `None` if the file name does not end in `.ko` (optionally compressed).
pub fn name_from_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let file = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    let stem = file.strip_suffix(".ko")?;
    (!stem.is_empty()).then(|| normalize(stem))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Module {
    path: String,
    /// Hard dependencies as listed in modules.dep (transitive; the last one loads first).
    deps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Alias {
    pattern: String,
    normalized: String,
    module: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Softdep {
    pre: Vec<String>,
    post: Vec<String>,
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    modules: BTreeMap<String, Module>,
    aliases: Vec<Alias>,
    softdeps: BTreeMap<String, Softdep>,
    /// Name → the line it came from (usually the path), to write it back unchanged.
    builtin: BTreeMap<String, String>,
}

/// Modules to put in the image, and requested names nothing provides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    pub modules: BTreeSet<String>,
    pub missing: Vec<String>,
}

/// The four depmod text files, as [`ModuleIndex::parse`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFiles {
    pub dep: String,
    pub alias: String,
    pub softdep: String,
    pub builtin: String,
}

const DEP: &str = "modules.dep";
const ALIAS: &str = "modules.alias";
const SOFTDEP: &str = "modules.softdep";
const BUILTIN: &str = "modules.builtin";

/// Non-empty, non-comment lines with 1-based numbers.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn line_error(file: &'static str, line: usize, reason: impl Into<String>) -> ModuleIndexError {
    ModuleIndexError::ParseLine {
        file,
        line,
        reason: reason.into(),
    }
}

/// Splits softdep words (`pre: a b post: c`) into pre and post lists. Words before any `pre:`/`post:` are
/// ignored, as kmod does (old `MODULE_SOFTDEP("gcm")` style).
fn parse_softdep_words<'a>(words: impl Iterator<Item = &'a str>, into: &mut Softdep) {
    #[derive(PartialEq)]
    enum Mode {
        None,
        Pre,
        Post,
    }
    let mut mode = Mode::None;
    for word in words {
        match word {
            "pre:" => mode = Mode::Pre,
            "post:" => mode = Mode::Post,
            _ if mode == Mode::Pre => into.pre.push(word.to_owned()),
            _ if mode == Mode::Post => into.post.push(word.to_owned()),
            _ => {}
        }
    }
}

impl ModuleIndex {
    /// Parses the contents of modules.dep, modules.alias, modules.softdep and modules.builtin (the last two
    /// may be empty strings).
    pub fn parse(
        dep: &str,
        alias: &str,
        softdep: &str,
        builtin: &str,
    ) -> Result<Self, ModuleIndexError> {
        let mut index = ModuleIndex::default();
        let mut dep_lines: Vec<(usize, String, Vec<String>)> = Vec::new();
        for (line, text) in content_lines(dep) {
            let (path, deps) = text
                .split_once(':')
                .ok_or_else(|| line_error(DEP, line, "expected 'PATH: DEPENDENCIES'"))?;
            let path = path.trim();
            let name = name_from_path(path).ok_or_else(|| {
                line_error(DEP, line, format!("{path:?} is not a kernel module path"))
            })?;
            let mut dep_names = Vec::new();
            for dep_path in deps.split_whitespace() {
                dep_names.push(name_from_path(dep_path).ok_or_else(|| {
                    line_error(
                        DEP,
                        line,
                        format!("{dep_path:?} is not a kernel module path"),
                    )
                })?);
            }
            if index
                .modules
                .insert(
                    name.clone(),
                    Module {
                        path: path.to_owned(),
                        deps: dep_names.clone(),
                    },
                )
                .is_some()
            {
                return Err(line_error(DEP, line, format!("module {name} listed twice")));
            }
            dep_lines.push((line, name, dep_names));
        }
        for (line, name, deps) in &dep_lines {
            if let Some(missing) = deps.iter().find(|d| !index.modules.contains_key(*d)) {
                return Err(line_error(
                    DEP,
                    *line,
                    format!("{name} depends on {missing}, which has no line"),
                ));
            }
        }

        for (line, text) in content_lines(alias) {
            let words: Vec<&str> = text.split_whitespace().collect();
            let [keyword, pattern, module] = words[..] else {
                return Err(line_error(ALIAS, line, "expected 'alias PATTERN MODULE'"));
            };
            if keyword != "alias" {
                return Err(line_error(ALIAS, line, "expected 'alias PATTERN MODULE'"));
            }
            index.push_alias(pattern, &normalize(module));
        }

        for (line, text) in content_lines(softdep) {
            let mut words = text.split_whitespace();
            let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
                return Err(line_error(
                    SOFTDEP,
                    line,
                    "expected 'softdep MODULE pre: ... post: ...'",
                ));
            };
            let mut soft = Softdep::default();
            parse_softdep_words(words, &mut soft);
            if !soft.pre.is_empty() || !soft.post.is_empty() {
                let entry = index.softdeps.entry(normalize(module)).or_default();
                entry.pre.extend(soft.pre);
                entry.post.extend(soft.post);
            }
        }

        for (_, text) in content_lines(builtin) {
            let name = name_from_path(text).unwrap_or_else(|| normalize(text));
            index.builtin.insert(name, text.to_owned());
        }
        Ok(index)
    }

    /// Reads modules.dep and modules.alias (required) and modules.softdep and modules.builtin (optional)
    /// from a `/lib/modules/VERSION` directory.
    pub fn load(dir: &Path) -> Result<Self, ModuleIndexError> {
        let read = |name: &str, required: bool| -> Result<String, ModuleIndexError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(source) => Err(ModuleIndexError::ReadIndexFile { path, source }),
            }
        };
        Self::parse(
            &read(DEP, true)?,
            &read(ALIAS, true)?,
            &read(SOFTDEP, false)?,
            &read(BUILTIN, false)?,
        )
    }

    fn push_alias(&mut self, pattern: &str, module: &str) {
        self.aliases.push(Alias {
            pattern: pattern.to_owned(),
            normalized: normalize_alias(pattern),
            module: module.to_owned(),
        });
    }

    /// A loadable module listed in modules.dep.
    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(&normalize(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains_key(&normalize(name))
    }

    /// Path relative to the modules directory, as in modules.dep.
    pub fn module_path(&self, name: &str) -> Option<&str> {
        self.modules.get(&normalize(name)).map(|m| m.path.as_str())
    }

    /// Loadable module names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Built-in module names, sorted.
    pub fn builtin_names(&self) -> impl Iterator<Item = &str> {
        self.builtin.keys().map(String::as_str)
    }

    /// Modules whose alias pattern matches `modalias` (e.g. a device's `/sys/.../modalias`), sorted and
    /// deduplicated.
    pub fn match_modalias(&self, modalias: &str) -> Vec<String> {
        let wanted = normalize_alias(modalias);
        let matched: BTreeSet<&str> = self
            .aliases
            .iter()
            .filter(|a| fnmatch(&a.normalized, &wanted))
            .map(|a| a.module.as_str())
            .collect();
        matched.into_iter().map(str::to_owned).collect()
    }

    /// What a softdep word stands for: a module, nothing (built in), or the modules of an alias
    /// (`crypto-crc32c`). Unknown names resolve to nothing, as modprobe skips them.
    fn resolve_softdep(&self, word: &str) -> Vec<String> {
        let name = normalize(word);
        if self.modules.contains_key(&name) {
            return vec![name];
        }
        if self.builtin.contains_key(&name) {
            return Vec::new();
        }
        self.match_modalias(word)
            .into_iter()
            .filter(|m| self.modules.contains_key(m))
            .collect()
    }

    /// Everything to load for `name`, in load order: softdep "pre" targets, hard dependencies (deepest
    /// first), the module, softdep "post" targets; each module once. Built-in → empty list.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, ModuleIndexError> {
        let name = normalize(name);
        if !self.modules.contains_key(&name) {
            return if self.builtin.contains_key(&name) {
                Ok(Vec::new())
            } else {
                Err(ModuleIndexError::LookUpModule { name })
            };
        }
        Ok(self.order(&name, true))
    }

    /// Depth-first post-order over dependencies, with an explicit stack so that a long (or hostile)
    /// dependency chain cannot overflow the call stack.
    fn order(&self, start: &str, with_softdeps: bool) -> Vec<String> {
        enum Step {
            Visit(String),
            Emit(String),
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![Step::Visit(start.to_owned())];
        while let Some(step) = stack.pop() {
            let name = match step {
                Step::Emit(name) => {
                    out.push(name);
                    continue;
                }
                Step::Visit(name) => name,
            };
            let Some(module) = self.modules.get(&name) else {
                continue;
            };
            if !seen.insert(name.clone()) {
                continue;
            }
            let soft = if with_softdeps {
                self.softdeps.get(&name)
            } else {
                None
            };
            let resolve = |words: Option<&Vec<String>>| -> Vec<String> {
                words
                    .into_iter()
                    .flatten()
                    .flat_map(|w| self.resolve_softdep(w))
                    .collect()
            };
            let pre = resolve(soft.map(|s| &s.pre));
            let post = resolve(soft.map(|s| &s.post));
            // Pushed in reverse of execution order.
            stack.extend(post.into_iter().rev().map(Step::Visit));
            stack.push(Step::Emit(name.clone()));
            // modules.dep lists dependencies so that the last one loads first.
            stack.extend(module.deps.iter().cloned().map(Step::Visit));
            stack.extend(pre.into_iter().rev().map(Step::Visit));
        }
        out
    }

    /// Modules needed for the given module names or aliases, with their dependencies and softdeps,
    /// transitively. Names that are neither a module, a built-in nor a matching alias go to `missing`.
    pub fn closure<S: AsRef<str>>(&self, names: &[S]) -> Closure {
        let mut closure = Closure::default();
        for requested in names {
            let requested = requested.as_ref();
            let name = normalize(requested);
            let targets = if self.modules.contains_key(&name) || self.builtin.contains_key(&name) {
                vec![name]
            } else {
                self.match_modalias(requested)
            };
            if targets.is_empty() {
                closure.missing.push(requested.to_owned());
            }
            for target in targets {
                match self.load_order(&target) {
                    Ok(order) => closure.modules.extend(order),
                    // An alias pointing at a module depmod does not list.
                    Err(_) => closure.missing.push(target),
                }
            }
        }
        closure
    }

    /// A new index holding only the modules in `keep` (which should be closed under dependencies, as a
    /// [`Closure`] is), their aliases and softdeps. Built-ins are kept whole.
    pub fn restrict(&self, keep: &BTreeSet<String>) -> ModuleIndex {
        let keep: BTreeSet<String> = keep
            .iter()
            .map(|n| normalize(n))
            .filter(|n| self.modules.contains_key(n))
            .collect();
        let modules = keep
            .iter()
            .map(|name| {
                let module = &self.modules[name];
                let deps = module
                    .deps
                    .iter()
                    .filter(|d| keep.contains(*d))
                    .cloned()
                    .collect();
                (
                    name.clone(),
                    Module {
                        path: module.path.clone(),
                        deps,
                    },
                )
            })
            .collect();
        let aliases = self
            .aliases
            .iter()
            .filter(|a| keep.contains(&a.module))
            .cloned()
            .collect();
        // A softdep word survives if it still means something in the small index.
        let useful = |word: &String| {
            let name = normalize(word);
            self.builtin.contains_key(&name)
                || self.resolve_softdep(word).iter().any(|m| keep.contains(m))
        };
        let softdeps = self
            .softdeps
            .iter()
            .filter(|(name, _)| keep.contains(*name))
            .map(|(name, s)| {
                let pre = s.pre.iter().filter(|w| useful(w)).cloned().collect();
                let post = s.post.iter().filter(|w| useful(w)).cloned().collect();
                (name.clone(), Softdep { pre, post })
            })
            .filter(|(_, s)| !s.pre.is_empty() || !s.post.is_empty())
            .collect();
        ModuleIndex {
            modules,
            aliases,
            softdeps,
            builtin: self.builtin.clone(),
        }
    }

    /// Rewrites module paths `x.ko.xz` / `x.ko.zst` / `x.ko.gz` to `x.ko`, for an index describing modules
    /// that were decompressed on their way into the image.
    pub fn strip_compression_suffixes(&mut self) {
        for module in self.modules.values_mut() {
            if let Some(plain) = [".xz", ".zst", ".gz"]
                .iter()
                .find_map(|ext| module.path.strip_suffix(ext))
            {
                module.path = plain.to_owned();
            }
        }
    }

    /// The four text files, modules sorted by name, aliases in index order.
    pub fn to_files(&self) -> IndexFiles {
        let mut files = IndexFiles::default();
        for module in self.modules.values() {
            files.dep.push_str(&module.path);
            files.dep.push(':');
            for dep in &module.deps {
                if let Some(target) = self.modules.get(dep) {
                    files.dep.push(' ');
                    files.dep.push_str(&target.path);
                }
            }
            files.dep.push('\n');
        }
        for alias in &self.aliases {
            files
                .alias
                .push_str(&format!("alias {} {}\n", alias.pattern, alias.module));
        }
        for (name, soft) in &self.softdeps {
            files.softdep.push_str(&format!("softdep {name}"));
            for (keyword, words) in [("pre:", &soft.pre), ("post:", &soft.post)] {
                if !words.is_empty() {
                    files
                        .softdep
                        .push_str(&format!(" {keyword} {}", words.join(" ")));
                }
            }
            files.softdep.push('\n');
        }
        for line in self.builtin.values() {
            files.builtin.push_str(line);
            files.builtin.push('\n');
        }
        files
    }
}
