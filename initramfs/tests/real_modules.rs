//! Checks the module index and the `generic` profile against a real kernel's modules directory.
//!
//! Gated: runs only when `RESCUE_KERNEL_MODULES_DIR` names a `/lib/modules/VERSION` directory (set by
//! `cargo xtask test`). If the variable is set, a bad directory fails the test instead of skipping it.
//! Without `modules.dep` (Debian ships none; depmod makes it at install time) the index is generated from
//! the `.ko` files; with both available, the generated index must agree with depmod's.

use std::path::{Path, PathBuf};

use initramfs::modules::ModuleIndex;
use initramfs::profile;

const VARIABLE: &str = "RESCUE_KERNEL_MODULES_DIR";

fn modules_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(VARIABLE)?);
    assert!(
        dir.join("kernel").is_dir(),
        "{VARIABLE}={} has no kernel/ directory",
        dir.display()
    );
    Some(dir)
}

fn index_for(dir: &Path) -> ModuleIndex {
    if dir.join("modules.dep").is_file() {
        return ModuleIndex::load(dir)
            .unwrap_or_else(|e| panic!("loading {}: {e:?}", dir.display()));
    }
    #[cfg(feature = "build")]
    return initramfs::modules::generate_index(dir)
        .unwrap_or_else(|e| panic!("indexing {}: {e:?}", dir.display()));
    #[cfg(not(feature = "build"))]
    panic!(
        "{} has no modules.dep and generating one needs the `build` feature",
        dir.display()
    );
}

#[test]
fn generic_profile_closure_on_real_kernel() {
    let Some(dir) = modules_dir() else {
        eprintln!("{VARIABLE} not set; skipping the real-kernel check");
        return;
    };
    let index = index_for(&dir);
    assert!(
        index.names().count() > 1000,
        "suspiciously few modules in {}",
        dir.display()
    );

    let generic = profile::generic();
    let closure = index.closure(generic.modules);
    let unexpected: Vec<&String> = closure
        .missing
        .iter()
        .filter(|m| !profile::may_be_absent(m))
        .collect();
    assert!(
        unexpected.is_empty(),
        "generic profile names nothing provides: {unexpected:?}"
    );
    for name in [
        "ahci",
        "nvme",
        "virtio_blk",
        "virtio_pci",
        "sd_mod",
        "usb_storage",
        "uas",
        "ext4",
        "vfat",
        "e1000e",
    ] {
        assert!(
            index.contains(name) || index.is_builtin(name),
            "{name} neither module nor built in"
        );
        assert!(
            closure.modules.contains(name) || index.is_builtin(name),
            "{name} not in the closure"
        );
    }
    // Dependencies that only the closure brings in.
    for dep in [
        "libahci", "libata", "scsi_mod", "jbd2", "mbcache", "usbcore",
    ] {
        assert!(
            closure.modules.contains(dep) || index.is_builtin(dep),
            "{dep} missing from the closure"
        );
    }
    let mut bytes = 0;
    for name in &closure.modules {
        let path = dir.join(
            index
                .module_path(name)
                .expect("closure holds only known modules"),
        );
        bytes += std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
    }
    eprintln!(
        "generic closure: {} modules, {} bytes on disk",
        closure.modules.len(),
        bytes
    );

    // Each module's own .modinfo names it as the index does, and firmware names come out of it.
    #[cfg(feature = "build")]
    {
        let mut firmware = Vec::new();
        for name in &closure.modules {
            let rel = index.module_path(name).unwrap();
            let bytes = std::fs::read(dir.join(rel)).unwrap();
            let (_, plain) = initramfs::decompress::decompress_by_name(rel, &bytes).unwrap();
            let info = initramfs::modinfo::parse(&plain).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
            assert_eq!(
                info.name
                    .as_deref()
                    .map(initramfs::modules::normalize)
                    .as_deref(),
                Some(name.as_str())
            );
            firmware.extend(info.firmware);
        }
        assert!(
            firmware
                .iter()
                .any(|f| f.starts_with("bnx2x/") || f.starts_with("tigon/")),
            "{firmware:?}"
        );
        eprintln!("generic closure requests {} firmware files", firmware.len());
    }

    // The small index written into the image answers the same questions for the closure.
    let small = index.restrict(&closure.modules);
    let files = small.to_files();
    let reparsed =
        ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap();
    assert_eq!(reparsed.closure(generic.modules), closure);
    assert_eq!(
        reparsed.load_order("ahci").unwrap(),
        index.load_order("ahci").unwrap()
    );
    // An AHCI controller and a USB mass-storage device find their drivers through the small index.
    assert_eq!(
        reparsed.match_modalias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
        ["ahci"]
    );
    let usb = reparsed.match_modalias("usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00");
    assert!(usb.contains(&"usb_storage".to_owned()), "{usb:?}");
}

/// With depmod's files present, the pure-Rust index built from the `.ko` files must say the same.
#[cfg(feature = "build")]
#[test]
fn generated_index_agrees_with_depmod() {
    let Some(dir) = modules_dir() else { return };
    if !dir.join("modules.dep").is_file() {
        eprintln!("{} has no modules.dep to compare with", dir.display());
        return;
    }
    let depmod = ModuleIndex::load(&dir).unwrap().to_files();
    let ours = initramfs::modules::generate_index(&dir).unwrap().to_files();

    use std::collections::BTreeSet;
    let dep_sets = |text: &str| -> BTreeSet<(String, BTreeSet<String>)> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, deps)| {
                (
                    m.to_owned(),
                    deps.split_whitespace().map(str::to_owned).collect(),
                )
            })
            .collect()
    };
    assert_eq!(
        dep_sets(&ours.dep),
        dep_sets(&depmod.dep),
        "modules.dep differs"
    );
    let sorted = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&ours.alias),
        sorted(&depmod.alias),
        "modules.alias differs"
    );
    assert_eq!(
        sorted(&ours.softdep),
        sorted(&depmod.softdep),
        "modules.softdep differs"
    );
    assert_eq!(ours.builtin, depmod.builtin);
}
