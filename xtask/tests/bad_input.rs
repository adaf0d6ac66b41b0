//! `cargo xtask build` with bad input fails fast with a clear message and writes nothing.

use std::fs;
use std::path::Path;
use std::process::Command;

/// A file that looks like a bzImage of `release` to the setup-header check.
fn fake_kernel(path: &Path, release: &str) {
    let mut img = vec![0u8; 0x1000];
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x20e..0x210].copy_from_slice(&0x0400u16.to_le_bytes());
    let v = format!("{release} (test@example) #1 SMP\0");
    img[0x600..0x600 + v.len()].copy_from_slice(v.as_bytes());
    fs::write(path, img).unwrap();
}

fn fake_modules(root: &Path, release: &str) -> std::path::PathBuf {
    let dir = root.join("lib/modules").join(release);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    dir
}

fn build(args: &[&str], out: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("build")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn stub_installed() -> bool {
    Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub").exists()
}

#[test]
fn missing_kernel_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (ok, err) = build(
        &[
            "--kernel",
            "/nonexistent/vmlinuz",
            "--modules",
            "/nonexistent",
        ],
        &out,
    );
    assert!(!ok);
    assert!(
        err.contains("kernel /nonexistent/vmlinuz does not exist"),
        "{err}"
    );
    assert!(!out.exists(), "a failed build wrote {}", out.display());
}

#[test]
fn kernel_and_modules_of_different_releases_are_refused() {
    if !stub_installed() && std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none() {
        eprintln!("skipped: systemd-boot-efi not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    fake_kernel(&kernel, "6.1.0-99-amd64");
    let modules = fake_modules(dir.path(), "6.1.0-11-amd64");
    let out = dir.path().join("out");
    let (ok, err) = build(
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
        ],
        &out,
    );
    assert!(!ok);
    assert!(
        err.contains("is release 6.1.0-99-amd64 but the modules directory"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn stub_that_is_not_pe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    fake_kernel(&kernel, "6.1.0-1-amd64");
    let modules = fake_modules(dir.path(), "6.1.0-1-amd64");
    let stub = dir.path().join("stub.efi");
    fs::write(&stub, b"#!/bin/sh\necho not a PE\n").unwrap();
    let out = dir.path().join("out");
    let (ok, err) = build(
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
            "--stub",
            stub.to_str().unwrap(),
        ],
        &out,
    );
    assert!(!ok);
    assert!(err.contains("is not a usable PE file"), "{err}");
    assert!(!out.exists());
}

#[test]
fn corrupted_module_index_line_is_reported_with_its_line() {
    if !stub_installed() && std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none() {
        eprintln!("skipped: systemd-boot-efi not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    fake_kernel(&kernel, "6.1.0-2-amd64");
    let modules = fake_modules(dir.path(), "6.1.0-2-amd64");
    fs::write(
        modules.join("modules.dep"),
        "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko\nthis line has no colon\n",
    )
    .unwrap();
    fs::write(
        modules.join("modules.alias"),
        "alias pci:v*d*sv*sd*bc01sc06i01* ahci\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (ok, err) = build(
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
        ],
        &out,
    );
    assert!(!ok);
    assert!(
        err.contains("modules.dep") && err.contains('2'),
        "error names the file and line: {err}"
    );
    assert!(!out.exists());
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    fake_kernel(&kernel, "6.1.0-3-amd64");
    let modules = fake_modules(dir.path(), "6.1.0-3-amd64");
    let out = dir.path().join("out");
    let (ok, err) = build(
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
            "--profile",
            "tiny",
        ],
        &out,
    );
    assert!(!ok);
    assert!(
        err.contains("unknown profile \"tiny\"") && err.contains("generic"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn trust_keys_that_are_missing_or_not_keys_are_refused_before_building() {
    if !stub_installed() && std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    fake_kernel(&kernel, "6.1.0-3-amd64");
    let modules = fake_modules(dir.path(), "6.1.0-3-amd64");
    let not_a_key = dir.path().join("notes.txt");
    fs::write(&not_a_key, "trust me\n").unwrap();
    let out = dir.path().join("out");
    for (key, want) in [
        (
            "/nonexistent/key.asc",
            "reading --trust-key /nonexistent/key.asc",
        ),
        (not_a_key.to_str().unwrap(), "is not an OpenPGP public key"),
    ] {
        let (ok, err) = build(
            &[
                "--kernel",
                kernel.to_str().unwrap(),
                "--modules",
                modules.to_str().unwrap(),
                "--trust-key",
                key,
            ],
            &out,
        );
        assert!(!ok);
        assert!(err.contains(want), "{err}");
        assert!(!out.exists());
    }
}
