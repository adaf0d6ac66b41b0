//! Driver loading without udev or kmod: match every `modalias` in sysfs against the module index that
//! the builder wrote into the initramfs, and load each match with its dependency closure through
//! `finit_module(2)`. The same code answers the kernel's `request_module` calls when the binary is
//! invoked as `/sbin/modprobe` (filesystems, crypto, `fs-*` aliases).
//!
//! Uses the `initramfs` crate's index parser: one parser for the builder and for the running system.

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use initramfs::modules::ModuleIndex;
use serde::{Deserialize, Serialize};

/// Where init leaves the coldplug report for `drivers` and the banner.
pub const REPORT_PATH: &str = "/run/rescue/coldplug.json";

/// Errors setting up driver loading.
#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    #[error("loading the module index from {dir}")]
    LoadIndex {
        dir: PathBuf,
        #[source]
        source: initramfs::modules::ModuleIndexError,
    },
    #[error("no such module or alias: {0}")]
    UnknownModule(String),
    #[error("opening module file {path}")]
    OpenModule {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading module {name}")]
    LoadModule {
        name: String,
        #[source]
        source: nix::Error,
    },
}

/// A device that reported a modalias no module matched, with no driver bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnmatchedDevice {
    pub devpath: String,
    pub modalias: String,
}

/// What coldplug did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColdplugReport {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub unmatched: Vec<UnmatchedDevice>,
}

/// The modules directory of the running kernel.
pub fn modules_dir() -> PathBuf {
    Path::new("/lib/modules").join(crate::host::kernel_release())
}

/// Module loader state: the index and what has been loaded or tried.
pub struct Coldplug {
    index: ModuleIndex,
    dir: PathBuf,
    tried: BTreeSet<String>,
    pub report: ColdplugReport,
}

impl Coldplug {
    pub fn open(dir: &Path) -> Result<Self, ColdplugError> {
        let index = ModuleIndex::load(dir).map_err(|source| ColdplugError::LoadIndex {
            dir: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            index,
            dir: dir.to_owned(),
            tried: BTreeSet::new(),
            report: ColdplugReport::default(),
        })
    }

    fn is_loaded(name: &str) -> bool {
        // /sys/module/<name>/initstate exists only for loaded loadable modules.
        Path::new("/sys/module")
            .join(name)
            .join("initstate")
            .exists()
    }

    /// Loads one module and everything it needs. Returns the modules newly loaded.
    pub fn load_module(&mut self, name: &str) -> Result<Vec<String>, ColdplugError> {
        let order = self
            .index
            .load_order(name)
            .map_err(|_| ColdplugError::UnknownModule(name.to_owned()))?;
        let mut newly = Vec::new();
        for module in order {
            if self.tried.contains(&module) || Self::is_loaded(&module) {
                continue;
            }
            self.tried.insert(module.clone());
            let Some(rel) = self.index.module_path(&module) else {
                continue;
            };
            let path = self.dir.join(rel);
            match finit(&path, &module) {
                Ok(()) => {
                    self.report.loaded.push(module.clone());
                    newly.push(module);
                }
                Err(e) => {
                    self.report
                        .failed
                        .push((module.clone(), crate::error_chain(&e)));
                    // A failed dependency means the module itself cannot load either.
                    if module != initramfs::modules::normalize(name) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Ok(newly)
    }

    /// Loads every module whose alias matches; returns whether any alias matched.
    pub fn load_modalias(&mut self, modalias: &str) -> bool {
        let matches = self.index.match_modalias(modalias);
        for name in &matches {
            let _ = self.load_module(name);
        }
        !matches.is_empty()
    }

    /// One pass over sysfs; returns how many modules were newly loaded.
    pub fn round(&mut self) -> usize {
        let before = self.report.loaded.len();
        for (devpath, alias) in scan_modaliases(Path::new("/sys/devices")) {
            let matched = self.load_modalias(&alias);
            let bound = Path::new(&devpath).join("driver").exists();
            if !matched && !bound && !self.report.unmatched.iter().any(|u| u.devpath == devpath) {
                self.report.unmatched.push(UnmatchedDevice {
                    devpath,
                    modalias: alias,
                });
            }
        }
        self.report.loaded.len() - before
    }

    /// Drops devices from the unmatched list that have a driver by now.
    pub fn refresh_unmatched(&mut self) {
        self.report
            .unmatched
            .retain(|u| !Path::new(&u.devpath).join("driver").exists());
    }
}

fn finit(path: &Path, name: &str) -> Result<(), ColdplugError> {
    let file = fs::File::open(path).map_err(|source| ColdplugError::OpenModule {
        path: path.to_owned(),
        source,
    })?;
    let params = CString::default();
    match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(source) => Err(ColdplugError::LoadModule {
            name: name.to_owned(),
            source,
        }),
    }
}

/// Every `(device directory, modalias)` under `root`, without following symlinks.
pub fn scan_modaliases(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file()
                && entry.file_name() == "modalias"
                && let Ok(text) = fs::read_to_string(entry.path())
                && !text.trim().is_empty()
            {
                out.push((dir.display().to_string(), text.trim().to_owned()));
            }
        }
    }
    out.sort();
    out
}

/// `/sbin/modprobe` for the kernel's `request_module`: `modprobe -q -- NAME`. Returns the exit code.
pub fn modprobe_main(args: &[OsString]) -> u8 {
    let names: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.starts_with('-'))
        .collect();
    let Ok(mut cp) = Coldplug::open(&modules_dir()) else {
        return 1;
    };
    let mut code = 0;
    for name in names {
        let ok = if cp.index.contains(&name) || cp.index.is_builtin(&name) {
            cp.index.is_builtin(&name) || cp.load_module(&name).is_ok()
        } else {
            cp.load_modalias(&name)
        };
        if !ok {
            code = 1;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_are_found_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("pci0000:00/0000:00:04.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(
            dev.join("modalias"),
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path(), dev.join("subsystem")).unwrap();
        let found = scan_modaliases(dir.path());
        assert_eq!(found.len(), 1);
        assert!(found[0].1.starts_with("pci:v00001AF4d00001001"));
    }
}
