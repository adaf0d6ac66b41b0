//! Index of one kernel's modules, read from depmod's text files (`modules.dep`, `modules.alias`,
//! `modules.softdep`, `modules.builtin`), and the questions the builder and the coldplug ask of it:
//! which modules a profile needs (closure), in which order to load one (load order), which modules claim a
//! device (modalias glob match), and a smaller index holding only what went into the initramfs.
//!
//! Kernel packages that ship no `modules.dep` (Debian's, which run depmod at install time) are indexed from
//! the `.ko` files themselves with `generate_index` (feature `build`).
//!
//! Pure data: nothing here loads a module or looks at the running system. Matching follows kmod: module
//! names and alias strings compare with `-` and `_` equal (outside `[...]`), patterns are `fnmatch(3)` globs.

mod fnmatch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use fnmatch::fnmatch;

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
    #[error("walking the modules directory {}", path.display())]
    WalkModulesDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// Builds the index from the `.ko` files under `modules_dir` (a `/lib/modules/VERSION` directory), for
/// kernel packages that ship no modules.dep: dependencies from each module's `depends=`, aliases from
/// `alias=`, softdeps from `softdep=`, built-ins from `modules.builtin` if present. Symlinks (`build`,
/// `source`) are not followed. Where two files give the same module name, one under `updates/` wins, else
/// the first in path order.
#[cfg(feature = "build")]
pub fn generate_index(modules_dir: &Path) -> Result<ModuleIndex, ModuleIndexError> {
    let mut paths = Vec::new();
    collect_module_files(modules_dir, modules_dir, &mut paths)?;
    paths.sort();

    let mut infos: BTreeMap<String, (String, crate::modinfo::ModInfo)> = BTreeMap::new();
    for rel in paths {
        let Some(name) = name_from_path(&rel) else {
            continue;
        };
        if infos
            .get(&name)
            .is_some_and(|(kept, _)| kept.starts_with("updates/") || !rel.starts_with("updates/"))
        {
            continue;
        }
        let path = modules_dir.join(&rel);
        let bytes = std::fs::read(&path).map_err(|source| ModuleIndexError::ReadModule {
            path: path.clone(),
            source,
        })?;
        let (_, plain) = crate::decompress::decompress_by_name(&rel, &bytes).map_err(|source| {
            ModuleIndexError::DecompressModule {
                path: path.clone(),
                source,
            }
        })?;
        let info = crate::modinfo::parse(&plain)
            .map_err(|source| ModuleIndexError::ParseModinfo { path, source })?;
        infos.insert(name, (rel, info));
    }

    let builtin = match std::fs::read_to_string(modules_dir.join(BUILTIN)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ModuleIndexError::ReadIndexFile {
                path: modules_dir.join(BUILTIN),
                source,
            });
        }
    };
    let mut index = ModuleIndex::parse("", "", "", &builtin)?;

    // First the direct dependencies, then expand each into modules.dep's transitive form.
    for (name, (rel, info)) in &infos {
        let mut deps = Vec::new();
        for dep in &info.depends {
            if infos.contains_key(dep) {
                deps.push(dep.clone());
            } else if !index.builtin.contains_key(dep) {
                return Err(ModuleIndexError::ResolveDependency {
                    module: name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
        index.modules.insert(
            name.clone(),
            Module {
                path: rel.clone(),
                deps,
            },
        );
    }
    let transitive: Vec<(String, Vec<String>)> = index
        .modules
        .keys()
        .map(|name| {
            let mut order = index.order(name, false);
            order.pop(); // the module itself
            order.reverse(); // modules.dep lists the first to load last
            (name.clone(), order)
        })
        .collect();
    for (name, deps) in transitive {
        if let Some(module) = index.modules.get_mut(&name) {
            module.deps = deps;
        }
    }

    for (name, (_, info)) in &infos {
        // A pattern with whitespace could not be written back to modules.alias; none exist in practice.
        for alias in info
            .aliases
            .iter()
            .filter(|a| !a.is_empty() && !a.contains(char::is_whitespace))
        {
            index.push_alias(alias, name);
        }
        let mut soft = Softdep::default();
        for value in &info.softdeps {
            parse_softdep_words(value.split_whitespace(), &mut soft);
        }
        if !soft.pre.is_empty() || !soft.post.is_empty() {
            index.softdeps.insert(name.clone(), soft);
        }
    }
    Ok(index)
}

#[cfg(feature = "build")]
fn collect_module_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
) -> Result<(), ModuleIndexError> {
    let walk_error = |source| ModuleIndexError::WalkModulesDir {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(walk_error)? {
        let entry = entry.map_err(walk_error)?;
        let file_type = entry.file_type().map_err(walk_error)?;
        let path = entry.path();
        if file_type.is_dir() {
            collect_module_files(root, &path, out)?;
        } else if file_type.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            if name_from_path(rel).is_some() {
                out.push(rel.to_owned());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/arch/x86/crypto/crc32c-intel.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/usb/storage/uas.ko: kernel/drivers/usb/storage/usb-storage.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/usb/host/ehci-hcd.ko:
kernel/drivers/usb/host/ehci-pci.ko: kernel/drivers/usb/host/ehci-hcd.ko
kernel/drivers/usb/host/uhci-hcd.ko:
kernel/drivers/ipmi/ipmi_msghandler.ko:
kernel/drivers/ipmi/ipmi_devintf.ko: kernel/drivers/ipmi/ipmi_msghandler.ko
";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias fs-ext4 ext4
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip62in* uas
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* uas
alias pci:v*d*sv*sd*bc0Csc03i00* uhci-hcd
alias devname:loop-control loop
alias ghost-alias ghost
";
    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep uhci_hcd pre: ehci_pci
softdep ipmi_msghandler post: ipmi_devintf
softdep cifs gcm
";
    const BUILTIN: &str = "kernel/drivers/input/keyboard/atkbd.ko\nkernel/drivers/block/loop.ko\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, ALIAS, SOFTDEP, BUILTIN).unwrap()
    }

    #[test]
    fn names_paths_and_builtins() {
        let index = index();
        assert!(index.contains("usb-storage"));
        assert!(index.contains("usb_storage"));
        assert_eq!(
            index.module_path("crc32c_intel"),
            Some("kernel/arch/x86/crypto/crc32c-intel.ko.xz")
        );
        assert_eq!(
            index.module_path("crc32c-generic"),
            Some("kernel/crypto/crc32c_generic.ko.zst")
        );
        assert!(index.is_builtin("atkbd"));
        assert!(!index.contains("atkbd"));
        assert_eq!(index.names().count(), 18);
        assert_eq!(index.names().next(), Some("ahci"));
        assert_eq!(name_from_path("x/foo.ko.gz").as_deref(), Some("foo"));
        assert_eq!(name_from_path("x/foo.bin"), None);
        assert_eq!(name_from_path(".ko"), None);
    }

    #[test]
    fn load_order_puts_deepest_dependencies_first() {
        assert_eq!(
            index().load_order("ahci").unwrap(),
            ["scsi_common", "scsi_mod", "libata", "libahci", "ahci"]
        );
    }

    #[test]
    fn load_order_applies_softdeps_through_aliases() {
        // ext4's "pre: crypto-crc32c" is an alias claimed by two modules; both load before ext4.
        assert_eq!(
            index().load_order("ext4").unwrap(),
            [
                "crc32c_generic",
                "crc32c_intel",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        assert_eq!(
            index().load_order("uhci-hcd").unwrap(),
            ["ehci_hcd", "ehci_pci", "uhci_hcd"]
        );
        assert_eq!(
            index().load_order("ipmi_msghandler").unwrap(),
            ["ipmi_msghandler", "ipmi_devintf"]
        );
    }

    #[test]
    fn load_order_of_builtin_is_empty_and_unknown_is_an_error() {
        assert!(index().load_order("atkbd").unwrap().is_empty());
        let err = index().load_order("nosuch").unwrap_err();
        assert!(matches!(err, ModuleIndexError::LookUpModule { ref name } if name == "nosuch"));
    }

    #[test]
    fn softdep_cycles_terminate() {
        let index = ModuleIndex::parse(
            "a.ko:\nb.ko:\n",
            "",
            "softdep a post: b\nsoftdep b pre: a\n",
            "",
        )
        .unwrap();
        assert_eq!(index.load_order("a").unwrap(), ["a", "b"]);
        assert_eq!(index.load_order("b").unwrap(), ["a", "b"]);
    }

    #[test]
    fn long_dependency_chains_do_not_overflow_the_stack() {
        let n = 100_000;
        let dep: String = (0..n)
            .map(|i| {
                if i == 0 {
                    "m0.ko:\n".to_owned()
                } else {
                    format!("m{i}.ko: m{}.ko\n", i - 1)
                }
            })
            .collect();
        let index = ModuleIndex::parse(&dep, "", "", "").unwrap();
        let order = index.load_order(&format!("m{}", n - 1)).unwrap();
        assert_eq!(order.len(), n);
        assert_eq!(order[0], "m0");
    }

    #[test]
    fn matches_modalias_globs() {
        let index = index();
        assert_eq!(
            index.match_modalias("usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00"),
            ["uas", "usb_storage"]
        );
        assert_eq!(
            index.match_modalias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            ["ahci"]
        );
        assert!(
            index
                .match_modalias("pci:v00008086d00002922sv00001AF4sd00001100bc02sc00i00")
                .is_empty()
        );
        // '-' and '_' are the same in alias strings too.
        assert_eq!(index.match_modalias("fs_ext4"), ["ext4"]);
        assert_eq!(
            index.match_modalias("pci:v00008086d00002934sv00001AF4sd00001100bc0Csc03i00"),
            ["uhci_hcd"]
        );
    }

    #[test]
    fn alias_normalisation_keeps_bracket_ranges() {
        assert_eq!(normalize_alias("usb:v*p*d0[0-3]*-x"), "usb:v*p*d0[0-3]*_x");
    }

    #[test]
    fn closure_collects_deps_softdeps_and_reports_missing() {
        let closure = index().closure(&[
            "ahci",
            "ext4",
            "fs-vfat",
            "atkbd",
            "uas",
            "devname:loop-control",
            "ghost-alias",
        ]);
        let expected: BTreeSet<String> = [
            "ahci",
            "libahci",
            "libata",
            "scsi_mod",
            "scsi_common",
            "ext4",
            "jbd2",
            "mbcache",
            "crc16",
            "crc32c_intel",
            "crc32c_generic",
            "uas",
            "usb_storage",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(closure.modules, expected);
        // "devname:loop-control" resolves to the builtin loop; "ghost-alias" to a module depmod never listed.
        assert_eq!(closure.missing, ["fs-vfat", "ghost"]);
    }

    #[test]
    fn restrict_and_round_trip_through_files() {
        let index = index();
        let full_again = ModuleIndex::parse(
            &index.to_files().dep,
            &index.to_files().alias,
            &index.to_files().softdep,
            &index.to_files().builtin,
        )
        .unwrap();
        assert_eq!(full_again, index);

        let closure = index.closure(&["ext4", "uas"]);
        let small = index.restrict(&closure.modules);
        let files = small.to_files();
        assert!(!files.dep.contains("ahci"));
        assert!(files.dep.contains("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n"));
        assert_eq!(
            files.alias,
            "alias fs-ext4 ext4\nalias crypto-crc32c crc32c_intel\nalias crc32c crc32c_intel\n\
             alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip62in* uas\nalias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* uas\n"
        );
        assert_eq!(files.softdep, "softdep ext4 pre: crypto-crc32c\n");
        assert_eq!(files.builtin, BUILTIN);
        let reparsed =
            ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap();
        assert_eq!(reparsed, small);
        assert_eq!(
            reparsed.load_order("ext4").unwrap(),
            index.load_order("ext4").unwrap()
        );
        assert_eq!(reparsed.closure(&["ext4", "uas"]), closure);
    }

    #[test]
    fn strips_compression_suffixes_for_decompressed_images() {
        let mut small = index().restrict(&index().closure(&["ext4"]).modules);
        assert_eq!(
            small.module_path("crc32c_intel"),
            Some("kernel/arch/x86/crypto/crc32c-intel.ko.xz")
        );
        small.strip_compression_suffixes();
        assert_eq!(
            small.module_path("crc32c_intel"),
            Some("kernel/arch/x86/crypto/crc32c-intel.ko")
        );
        assert_eq!(
            small.module_path("crc32c_generic"),
            Some("kernel/crypto/crc32c_generic.ko")
        );
        assert_eq!(small.module_path("ext4"), Some("kernel/fs/ext4/ext4.ko"));
        let files = small.to_files();
        assert!(
            !files.dep.contains(".xz") && !files.dep.contains(".zst"),
            "{}",
            files.dep
        );
        assert_eq!(
            ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap(),
            small
        );
    }

    #[test]
    fn corrupt_lines_name_file_and_line() {
        let err = ModuleIndex::parse("a.ko:\nkernel/b.ko kernel/a.ko\n", "", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.dep",
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "parsing modules.dep line 2: expected 'PATH: DEPENDENCIES'"
        );

        let err = ModuleIndex::parse("a.ko:\n", "alias x a\nalias y\n", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.alias",
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ModuleIndex::parse("a.ko:\n", "\nalias x a extra\n", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.alias",
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ModuleIndex::parse("a.ko:\n", "aliass x a\n", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.alias",
                    line: 1,
                    ..
                }
            ),
            "{err:?}"
        );

        let err = ModuleIndex::parse("a.ko:\nb.txt:\n", "", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.dep",
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ModuleIndex::parse("a.ko: c.ko\nb.ko:\n", "", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.dep",
                    line: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ModuleIndex::parse("a.ko:\nx/a.ko:\n", "", "", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.dep",
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ModuleIndex::parse("a.ko:\n", "", "soft a pre: b\n", "").unwrap_err();
        assert!(
            matches!(
                err,
                ModuleIndexError::ParseLine {
                    file: "modules.softdep",
                    line: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn load_reads_files_and_needs_dep_and_alias() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        let err = ModuleIndex::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, ModuleIndexError::ReadIndexFile { ref path, .. } if path.ends_with("modules.alias"))
        );
        std::fs::write(dir.path().join("modules.alias"), ALIAS).unwrap();
        let without_optional = ModuleIndex::load(dir.path()).unwrap();
        assert!(!without_optional.is_builtin("atkbd"));
        std::fs::write(dir.path().join("modules.softdep"), SOFTDEP).unwrap();
        std::fs::write(dir.path().join("modules.builtin"), BUILTIN).unwrap();
        assert_eq!(ModuleIndex::load(dir.path()).unwrap(), index());
    }

    #[cfg(feature = "build")]
    mod generate {
        use super::super::*;
        use crate::elf::{ET_REL, fixture::elf};

        fn module(dir: &Path, rel: &str, modinfo: &str) {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes = elf(
                ET_REL,
                &[],
                &[(".modinfo", modinfo.replace(';', "\0").into_bytes())],
            );
            let bytes = if rel.ends_with(".xz") {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut &bytes[..], &mut out).unwrap();
                out
            } else {
                bytes
            };
            std::fs::write(path, bytes).unwrap();
        }

        #[test]
        fn builds_the_index_from_ko_files() {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            module(
                d,
                "kernel/drivers/scsi/scsi_common.ko",
                "name=scsi_common;depends=;",
            );
            module(
                d,
                "kernel/drivers/scsi/scsi_mod.ko",
                "name=scsi_mod;depends=scsi_common;",
            );
            module(
                d,
                "kernel/drivers/ata/libata.ko",
                "name=libata;depends=scsi_mod,scsi_common;",
            );
            module(
                d,
                "kernel/drivers/ata/libahci.ko",
                "depends=libata,scsi_mod,scsi_common;",
            );
            module(
                d,
                "kernel/drivers/ata/ahci.ko.xz",
                "alias=pci:v*d*sv*sd*bc01sc06i01*;depends=libahci,libata,crc-builtin;softdep=pre: fs-ext4;name=ahci;",
            );
            module(d, "kernel/fs/ext4/ext4.ko", "alias=fs-ext4;depends=;");
            module(
                d,
                "updates/ext4.ko",
                "alias=fs-ext4;alias=ext4-from-updates;depends=;",
            );
            std::fs::write(d.join("modules.builtin"), "kernel/lib/crc-builtin.ko\n").unwrap();
            std::os::unix::fs::symlink("/nonexistent", d.join("build")).unwrap();

            let index = generate_index(d).unwrap();
            assert_eq!(
                index.names().collect::<Vec<_>>(),
                [
                    "ahci",
                    "ext4",
                    "libahci",
                    "libata",
                    "scsi_common",
                    "scsi_mod"
                ]
            );
            assert_eq!(index.module_path("ext4"), Some("updates/ext4.ko"));
            assert_eq!(
                index.load_order("ahci").unwrap(),
                [
                    "ext4",
                    "scsi_common",
                    "scsi_mod",
                    "libata",
                    "libahci",
                    "ahci"
                ]
            );
            assert_eq!(index.match_modalias("ext4-from-updates"), ["ext4"]);
            let files = index.to_files();
            assert!(files.dep.contains(
                "kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko \
                 kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n"
            ), "{}", files.dep);
            assert_eq!(files.softdep, "softdep ahci pre: fs-ext4\n");
            assert_eq!(
                ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin)
                    .unwrap(),
                index
            );
        }

        #[test]
        fn unknown_dependency_is_an_error() {
            let dir = tempfile::tempdir().unwrap();
            module(dir.path(), "kernel/a.ko", "depends=nothere;");
            let err = generate_index(dir.path()).unwrap_err();
            assert!(
                matches!(err, ModuleIndexError::ResolveDependency { ref dependency, .. } if dependency == "nothere")
            );
        }

        #[test]
        fn broken_module_names_its_file() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("bad.ko"), b"not an elf").unwrap();
            let err = generate_index(dir.path()).unwrap_err();
            assert!(
                matches!(err, ModuleIndexError::ParseModinfo { ref path, .. } if path.ends_with("bad.ko"))
            );
        }
    }
}
