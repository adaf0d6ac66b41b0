//! `cargo xtask`: builds the rescue media, boots it, tests and benchmarks it. Orchestration only: the
//! logic worth testing lives in the `initramfs` and `images` crates.

mod bench;
mod bench_acquire;
mod bench_live;
mod bench_mount;
mod bench_s3;
mod bench_timeline;
mod bench_triage;
mod bootloader;
mod build;
mod deps;
mod fuzz;
mod inputs;
mod kernel;
mod qemu;
mod repro;
mod test;
mod tools;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build [--kernel PATH --modules DIR] [--profile NAME] [--out DIR] [--trust-key FILE]...
        [--sign-key KEY --sign-cert CERT]
                         build target/rescue/: rescue.efi, rescue-usb.img, rescue.iso, initramfs.cpio.zst,
                         vmlinuz, build-manifest.json, SHA256SUMS; --trust-key embeds an OpenPGP key for
                         `rescue reinstall verify` (fingerprints listed in build-manifest.json);
                         --sign-*: sign the UKI with sbsign
  update-inputs          pin the current Debian versions of every build input in xtask/inputs.lock
                         (kernel, shim, GRUB, systemd stub, mkfs tools and their libraries) and print
                         what changed; builds use only what the lock pins, and the build host's
                         toolchain packages (gcc, libc6-dev, ...) must be the pinned versions
  repro --fresh-root [--warm]
                         build here, then build a clean clone of HEAD in a fresh Debian 12 root
                         (debootstrap; own host name, user, umask, TZ, locale; pinned toolchain from
                         the archive) and compare the SHA256SUMS; --warm keeps the second build's
                         compiled crates from the last run (root only; slow: a full release compile)
  qemu [--direct | --iso] [--ovmf | --bios | --secure-boot]
       [--disk FILE[,if=virtio|ahci|nvme|usb][,sector=4096]]... [--memory MiB]
                         boot the built image in QEMU (TCG) with the serial console on stdio
  test [--reproducibility | --soak N [--busy K]]
                         fmt, clippy, unit tests, build, QEMU boot tests (what CI runs); with
                         --reproducibility only the two builds (the second from a copy of the checkout
                         at another path, in its own target directory) and their comparison; with
                         --soak only the QEMU scenarios, N times in a row next to K busy loops
                         (default 2), the record in target/soak.md
  fuzz [--seconds N] [--seed S] [NAME]
                         run every fuzz target of the rescue parsers (or those whose test name
                         contains NAME) for N seconds each (default 60); `test` runs a short smoke
  bench build|boot|acquire|s3|timeline|mount|live|triage
                         measure build time, boot time and size, acquisition, upload or mount speed,
                         the timeline's body file against fls and its events per second, or memory
                         capture on a running guest next to AVML
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "build" => build::run(rest).map(|_| ()),
        "update-inputs" => inputs::update(rest),
        "repro" => repro::run(rest),
        "qemu" => qemu::run(rest),
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
