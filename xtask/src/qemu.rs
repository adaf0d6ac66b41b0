//! `cargo xtask qemu`: boots the built media under QEMU (TCG) with the serial console on stdio, using the
//! same command builder as the test harness.

use std::path::PathBuf;

use anyhow::{Context, bail};
use tests::{Artifacts, Boot, Disk, Drive, Firmware, QemuBuilder};

use crate::{deps, util};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    deps::ensure_packages(deps::TEST)?;
    let art = Artifacts {
        dir: util::project_root().join("target/rescue"),
    };
    if !art.usb_image().is_file() {
        bail!(
            "{} does not exist: run `cargo xtask build` first",
            art.usb_image().display()
        );
    }
    let workdir = util::project_root().join("target/qemu");
    std::fs::create_dir_all(&workdir)?;
    let mut direct = false;
    let mut iso = false;
    let mut secure_boot = false;
    let mut disks = Vec::new();
    let mut memory = 1024;
    let mut ovmf = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--direct" => direct = true,
            "--iso" => iso = true,
            "--secure-boot" => secure_boot = true,
            "--ovmf" => ovmf = Some(true),
            "--bios" => ovmf = Some(false),
            "--disk" => disks.push(Disk::parse_spec(
                it.next().context("--disk needs FILE[,if=BUS][,sector=N]")?,
            )?),
            "--memory" => {
                memory = it
                    .next()
                    .context("--memory needs MiB")?
                    .parse()
                    .context("--memory needs a number of MiB")?
            }
            other => bail!("unknown qemu option {other:?} (see `cargo xtask help`)"),
        }
    }
    let boot = if direct {
        Boot::Direct {
            kernel: art.vmlinuz(),
            initrd: art.initramfs(),
            cmdline: crate::build::DEFAULT_CMDLINE.to_owned(),
        }
    } else if iso {
        Boot::Medium(art.iso(), Drive::SataCd)
    } else {
        // A copy: the firmware or a test inside the VM must never change the built image.
        let copy: PathBuf = workdir.join("rescue-usb.img");
        std::fs::copy(art.usb_image(), &copy)?;
        Boot::UsbImage(copy)
    };
    let firmware = match (secure_boot, ovmf.unwrap_or(!direct)) {
        (true, _) => Firmware::OvmfSecureBoot,
        (false, true) => Firmware::Ovmf,
        (false, false) => Firmware::SeaBios,
    };
    let mut b = QemuBuilder::new(boot, &workdir).firmware(firmware);
    b.memory_mib = memory;
    b.interactive = true;
    for d in disks {
        b = b.disk(d);
    }
    let mut cmd = b.command()?;
    eprintln!("xtask: {} (Ctrl-A X quits)", util::display(&cmd));
    util::run(&mut cmd)
}
