//! `cargo xtask bench build|boot|acquire|s3|timeline|mount|live|triage`: measured figures for docs/benchmarks.md. Medians of
//! repeated runs, because the machine is shared and noisy.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use tests::{Artifacts, Boot, Firmware, QemuBuilder};

use crate::build::{self, BuildOptions};
use crate::{
    bench_acquire, bench_live, bench_mount, bench_s3, bench_timeline, bench_triage, deps, util,
};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => bench_build(),
        Some("boot") => bench_boot(),
        Some("acquire") => bench_acquire::run(&args[1..]),
        Some("s3") => bench_s3::run(&args[1..]),
        Some("timeline") => bench_timeline::run(&args[1..]),
        Some("mount") => bench_mount::run(&args[1..]),
        Some("live") => bench_live::run(&args[1..]),
        Some("triage") => bench_triage::run(&args[1..]),
        _ => bail!("usage: cargo xtask bench build|boot|acquire|s3|timeline|mount|live|triage"),
    }
}

fn bench_build() -> anyhow::Result<()> {
    // The first build warms the cargo cache and the kernel download cache.
    let opts = BuildOptions::parse(&[])?;
    build::build(&opts)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        build::build(&opts)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let art = Artifacts {
        dir: opts.out.clone(),
    };
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(0.0)
    };
    println!("| measure | value |\n|---|---|");
    println!(
        "| `cargo xtask build`, warm cache (median of 3) | {:.1} s |",
        util::median(times)
    );
    println!(
        "| initramfs.cpio.zst (profile generic) | {:.1} MiB |",
        size(&art.initramfs())
    );
    println!("| rescue.efi (UKI) | {:.1} MiB |", size(&art.efi()));
    println!("| rescue-usb.img | {:.1} MiB |", size(&art.usb_image()));
    Ok(())
}

fn time_to_prompt(b: &QemuBuilder) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut vm = b.spawn()?;
    vm.wait_prompt(Duration::from_secs(120))?;
    let secs = t.elapsed().as_secs_f64();
    vm.send_line("poweroff")?;
    let _ = vm.wait_exit(Duration::from_secs(30));
    Ok(secs)
}

fn bench_boot() -> anyhow::Result<()> {
    deps::ensure_packages(deps::TEST)?;
    let art = Artifacts {
        dir: util::project_root().join("target/rescue"),
    };
    if !art.usb_image().is_file() {
        bail!("run `cargo xtask build` first");
    }
    let work = util::project_root().join("target/bench-boot");
    std::fs::create_dir_all(&work)?;
    let usb = work.join("rescue-usb.img");
    std::fs::copy(art.usb_image(), &usb)?;
    let direct = QemuBuilder::direct(&art, &work);
    let mut uefi = QemuBuilder::new(Boot::UsbImage(usb), &work).firmware(Firmware::Ovmf);
    // The boot as a user sees it: GRUB's own 3 s timeout, no test arguments typed into the menu.
    uefi.grub_test_args = false;
    let mut d = Vec::new();
    let mut u = Vec::new();
    for _ in 0..3 {
        d.push(time_to_prompt(&direct)?);
        u.push(time_to_prompt(&uefi)?);
    }
    println!("| boot to `rescue> ` under QEMU TCG (median of 3) | seconds |\n|---|---|");
    println!(
        "| direct kernel + initramfs (SeaBIOS) | {:.1} |",
        util::median(d)
    );
    println!("| rescue-usb.img via OVMF + UKI | {:.1} |", util::median(u));
    Ok(())
}
