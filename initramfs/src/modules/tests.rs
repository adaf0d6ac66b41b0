//! Tests of the index: parsing depmod's files, load order, modalias matching, closure, restriction.

use super::*;

pub(crate) const DEP: &str = "\
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
pub(crate) const ALIAS: &str = "\
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
pub(crate) const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep uhci_hcd pre: ehci_pci
softdep ipmi_msghandler post: ipmi_devintf
softdep cifs gcm
";
pub(crate) const BUILTIN: &str =
    "kernel/drivers/input/keyboard/atkbd.ko\nkernel/drivers/block/loop.ko\n";

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
    assert!(files.dep.contains(
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n"
    ));
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
