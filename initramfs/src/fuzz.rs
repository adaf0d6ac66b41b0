//! Property tests of the parsers that read bytes a damaged medium or a hostile file controls (issue 19):
//! the cpio reader, the module index (depmod's text files, `fnmatch` globs, `.modinfo` strings) and,
//! with the `build` feature, the ELF reader and the `.deb` (ar + tar) reader. Arbitrary and
//! mutated-valid inputs must give a value or an error, never a panic, and every query on an index that
//! parsed must answer.
//!
//! Each property runs proptest's default 256 cases, so `cargo test` stays fast; `PROPTEST_CASES=N`
//! runs more. Inputs that once made a parser panic are kept at the end as named regression tests.

use crate::cpio::{Archive, read_entries};
use crate::modules::{ModuleIndex, fnmatch};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Crashing inputs are kept as named tests below, not in files proptest would write into src/.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Overwrites bytes at `at % len` and optionally cuts the result short.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let len = bytes.len();
    if len > 0 {
        for &(at, b) in edits {
            bytes[at % len] = b;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (len + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)
}

fn cut() -> impl Strategy<Value = Option<usize>> {
    proptest::option::weighted(0.2, any::<usize>())
}

fn sample_cpio() -> Vec<u8> {
    let mut a = Archive::new();
    a.add_file("init", 0o755, b"#!init".to_vec());
    a.add_file("etc/rescue/x", 0o644, vec![7; 33]);
    a.add_symlink("sbin/modprobe", "/init");
    a.add_char_device("dev/console", 0o600, 5, 1);
    let mut out = Vec::new();
    a.write(&mut out, 0).unwrap();
    out
}

/// Asks an index every question the builder and the coldplug ask.
fn query_index(index: &ModuleIndex, modalias: &str) {
    let names: Vec<String> = index.names().map(str::to_owned).collect();
    for name in &names {
        let _ = index.load_order(name);
        let _ = index.module_path(name);
    }
    let _ = index.load_order(modalias);
    let _ = index.match_modalias(modalias);
    let closure = index.closure(&[modalias, "ext4", "crypto-crc32c"]);
    let mut small = index.restrict(&closure.modules);
    small.strip_compression_suffixes();
    let _ = small.to_files();
    let _ = index.to_files();
}

/// Turns arbitrary bytes into text made mostly of the characters depmod's files are made of.
fn depmod_text(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ab_-.:/ \n#*?[]!^\\kopresftaliuxz0";
    bytes
        .iter()
        .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cpio_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = read_entries(&bytes);
        let mut with_magic = b"070701".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = read_entries(&with_magic);
    }

    #[test]
    fn cpio_reader_survives_mutated_archives(edits in edits(), cut in cut()) {
        let _ = read_entries(&mutate(sample_cpio(), &edits, cut));
    }

    #[test]
    fn module_index_survives_arbitrary_text(
        dep in "\\PC{0,200}", alias in "\\PC{0,200}", softdep in "\\PC{0,100}", builtin in "\\PC{0,100}",
        modalias in "\\PC{0,40}",
    ) {
        if let Ok(index) = ModuleIndex::parse(&dep, &alias, &softdep, &builtin) {
            query_index(&index, &modalias);
        }
    }

    #[test]
    fn module_index_survives_mutated_files(
        which in 0..4usize,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        modalias in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        use crate::modules::tests::{ALIAS, BUILTIN, DEP, SOFTDEP};
        let mut files = [DEP, ALIAS, SOFTDEP, BUILTIN].map(|f| f.as_bytes().to_vec());
        let text = depmod_text(&edits.iter().map(|e| e.1).collect::<Vec<_>>());
        let edits: Vec<(usize, u8)> = edits.iter().zip(text.bytes()).map(|((at, _), b)| (*at, b)).collect();
        files[which] = mutate(std::mem::take(&mut files[which]), &edits, None);
        let [dep, alias, softdep, builtin] = files.map(|f| String::from_utf8(f).unwrap());
        if let Ok(index) = ModuleIndex::parse(&dep, &alias, &softdep, &builtin) {
            query_index(&index, &depmod_text(&modalias));
            query_index(&index, "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
        }
    }

    #[test]
    fn fnmatch_survives_arbitrary_patterns(pattern in proptest::collection::vec(any::<u8>(), 0..40), text in "\\PC{0,60}") {
        let pattern = depmod_text(&pattern);
        let _ = fnmatch(&pattern, &text);
        let _ = fnmatch(&pattern, &depmod_text(text.as_bytes()));
    }

    #[test]
    fn modinfo_strings_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::modinfo::parse_strings(&bytes);
    }
}

#[cfg(feature = "build")]
mod build {
    use super::*;
    use crate::elf::fixture::elf;
    use crate::elf::{ET_DYN, ET_REL};

    fn sample_elf() -> Vec<u8> {
        // PT_LOAD (string table at vaddr 0), PT_DYNAMIC (DT_STRTAB, DT_NEEDED), PT_INTERP, and sections.
        let mut dynamic = Vec::new();
        for (tag, value) in [(5u64, 0u64), (1, 1), (0, 0)] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&value.to_le_bytes());
        }
        elf(
            ET_DYN,
            &[
                (1, b"\0libc.so.6\0".to_vec()),
                (2, dynamic),
                (3, b"/lib64/ld.so\0".to_vec()),
            ],
            &[(".modinfo", b"name=a\0depends=b,c\0alias=pci:*\0".to_vec())],
        )
    }

    fn read_all_of_elf(bytes: &[u8]) {
        let _ = crate::elf::inspect(bytes);
        let _ = crate::elf::dynamic_needs(bytes);
        let _ = crate::elf::file_type(bytes);
        let _ = crate::elf::section_by_name(bytes, ".modinfo");
        let _ = crate::modinfo::parse(bytes);
        let _ = crate::elf::library_closure(&[bytes], |_| Some(("/lib/x".into(), bytes.to_vec())));
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn elf_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            read_all_of_elf(&bytes);
            let mut with_magic = b"\x7fELF\x02\x01\x01".to_vec();
            with_magic.extend_from_slice(&bytes);
            read_all_of_elf(&with_magic);
        }

        #[test]
        fn elf_reader_survives_mutated_files(edits in edits(), cut in cut(), module in any::<bool>()) {
            let bytes = if module {
                elf(ET_REL, &[], &[(".modinfo", b"name=x\0".to_vec()), (".text", vec![0x90; 9])])
            } else {
                sample_elf()
            };
            read_all_of_elf(&mutate(bytes, &edits, cut));
        }

        #[test]
        fn deb_reader_survives_arbitrary_and_mutated_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048), edits in edits(), cut in cut(),
        ) {
            let _ = crate::deb::data_files(&bytes);
            let _ = crate::deb::tar_files(&bytes);
            let mut ar = b"!<arch>\n".to_vec();
            ar.extend_from_slice(&bytes);
            let _ = crate::deb::ar_members(&ar);
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_path("./usr/lib/x.efi").unwrap();
            h.set_size(700);
            h.set_cksum();
            tar.append(&h, &[1u8; 700][..]).unwrap();
            let tar = tar.into_inner().unwrap();
            let _ = crate::deb::tar_files(&mutate(tar.clone(), &edits, cut));
            let mut deb = b"!<arch>\n".to_vec();
            deb.extend_from_slice(format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "data.tar", 0, 0, 0, 100644, tar.len()).as_bytes());
            deb.extend_from_slice(&tar);
            let _ = crate::deb::data_files(&mutate(deb, &edits, cut));
        }
    }
}
