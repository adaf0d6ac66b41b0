//! Building the module index from the `.ko` files themselves, as depmod would, for kernel packages that
//! ship no `modules.dep`: dependencies, aliases and softdeps from each module's `.modinfo`. Build-time
//! only (feature `build`); reads the modules directory it is given and nothing else.

use super::{
    BUILTIN, Module, ModuleIndex, ModuleIndexError, Softdep, name_from_path, parse_softdep_words,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Builds the index from the `.ko` files under `modules_dir` (a `/lib/modules/VERSION` directory), for
/// kernel packages that ship no modules.dep: dependencies from each module's `depends=`, aliases from
/// `alias=`, softdeps from `softdep=`, built-ins from `modules.builtin` if present. Symlinks (`build`,
/// `source`) are not followed. Where two files give the same module name, one under `updates/` wins, else
/// the first in path order.
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
    use crate::elf::{ET_REL, fixture::elf};
    use std::path::Path;

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
            ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap(),
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
