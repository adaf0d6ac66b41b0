//! Boot loaders from Debian packages: the Microsoft-signed `shim`, Debian's signed monolithic GRUB
//! (`grubx64.efi.signed`, which reads `/EFI/debian/grub.cfg` on the device it was loaded from: its
//! embedded prefix is `/EFI/debian`, with `$cmdpath/grub.cfg` as fallback) and GRUB's i386-pc images for
//! legacy BIOS. The packages are the ones pinned in `xtask/inputs.lock` (fetched and checked by
//! [`crate::inputs`]), read in Rust (`initramfs::deb`: ar, data.tar.xz, tar), and recorded in the build
//! manifest.
//!
//! BIOS GRUB needs a `core.img` holding the modules and a small embedded configuration; only GRUB's own
//! `grub-mkimage` (package `grub-common`) can link one, so it runs here with the modules of the pinned
//! `grub-pc-bin` package (`-d`). Its output is byte-identical across runs. It also writes the GRUB menu.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{inputs, util};
use anyhow::Context;

/// Roles of the lock (`xtask/inputs.lock`) a build unpacks: shim, MokManager (in the helpers
/// package), GRUB for UEFI and BIOS.
const ROLES: &[&str] = &["shim", "mok-manager", "grub-efi", "grub-pc"];

/// GRUB modules linked into the BIOS `core.img` (dependencies are added by `grub-mkimage`).
const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "part_gpt",
    "fat",
    "iso9660",
    "normal",
    "configfile",
    "linux",
    "search",
    "search_fs_file",
    "serial",
    "terminal",
    "terminfo",
    "vga_text",
    "echo",
    "test",
    "sleep",
];

/// The boot loader files of one build.
#[derive(Debug, Clone)]
pub struct BootLoaders {
    /// `shimx64.efi.signed` (Microsoft UEFI CA signature), the removable-media `BOOTX64.EFI`.
    pub shim: Vec<u8>,
    /// `mmx64.efi.signed`: MokManager, which shim starts when verification of GRUB fails.
    pub mok_manager: Vec<u8>,
    /// `grubx64.efi.signed` (Debian's signature, trusted by shim).
    pub grub_efi: Vec<u8>,
    /// GRUB's 512-byte i386-pc MBR code.
    pub boot_img: Vec<u8>,
    /// `grub-mkimage -O i386-pc`: `diskboot.img` + core, for the BIOS boot partition and the hybrid ISO.
    pub core_disk: Vec<u8>,
    /// `grub-mkimage -O i386-pc-eltorito`: `cdboot.img` + core, the El Torito BIOS image.
    pub core_cd: Vec<u8>,
    pub packages: Vec<inputs::Pin>,
}

/// The pinned package's files (its `.deb` fetched and checked by [`inputs::fetch`]).
fn package(pin: &inputs::Pin) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let deb = inputs::fetch(pin)?;
    let bytes = fs::read(&deb).with_context(|| format!("reading {}", deb.display()))?;
    initramfs::deb::data_files(&bytes).with_context(|| format!("unpacking {}", deb.display()))
}

fn take(files: &BTreeMap<String, Vec<u8>>, path: &str, package: &str) -> anyhow::Result<Vec<u8>> {
    files
        .get(path)
        .cloned()
        .with_context(|| format!("package {package} has no {path}"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The configuration embedded in the BIOS `core.img`: find the medium by its build marker and hand
/// over to the menu on it.
fn early_config(marker: &str) -> String {
    format!(
        "search --no-floppy --file --set=root /{marker}\n\
         set prefix=($root)/BOOT/GRUB\n\
         configfile ($root)/BOOT/GRUB/GRUB.CFG\n"
    )
}

fn mkimage(
    modules_dir: &Path,
    format: &str,
    early_cfg: &Path,
    out: &Path,
) -> anyhow::Result<Vec<u8>> {
    util::run(
        Command::new("grub-mkimage")
            .arg("-d")
            .arg(modules_dir)
            .args(["-O", format, "-p", "/BOOT/GRUB", "-c"])
            .arg(early_cfg)
            .arg("-o")
            .arg(out)
            .args(BIOS_MODULES),
    )?;
    read(out)
}

/// Fetches the pinned packages and links the BIOS core images in `work` (this build's own scratch
/// directory). `marker` is the medium's marker file (e.g. `RESCUE/ID_0123…`), which the BIOS core
/// searches for.
pub fn prepare(lock: &inputs::Lock, work: &Path, marker: &str) -> anyhow::Result<BootLoaders> {
    let mut contents = Vec::new();
    let mut packages = Vec::new();
    for role in ROLES {
        let pin = lock.role(role)?;
        contents.push(package(pin)?);
        packages.push(pin.clone());
    }
    let (shim, helpers, grub, pc) = (&contents[0], &contents[1], &contents[2], &contents[3]);
    let names: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
    // grub-mkimage reads the i386-pc modules from a directory: write the package's, fresh each build.
    let modules_dir = work.join("i386-pc");
    let _ = fs::remove_dir_all(&modules_dir);
    fs::create_dir_all(&modules_dir)
        .with_context(|| format!("creating {}", modules_dir.display()))?;
    for (path, data) in pc {
        if let Some(name) = path.strip_prefix("usr/lib/grub/i386-pc/")
            && !name.contains('/')
        {
            let to = modules_dir.join(name);
            fs::write(&to, data).with_context(|| format!("writing {}", to.display()))?;
        }
    }
    let cfg = work.join("early.cfg");
    fs::write(&cfg, early_config(marker)).with_context(|| format!("writing {}", cfg.display()))?;
    Ok(BootLoaders {
        shim: take(shim, "usr/lib/shim/shimx64.efi.signed", &names[0])?,
        mok_manager: take(helpers, "usr/lib/shim/mmx64.efi.signed", &names[1])?,
        grub_efi: take(
            grub,
            "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
            &names[2],
        )?,
        boot_img: take(pc, "usr/lib/grub/i386-pc/boot.img", &names[3])?,
        core_disk: mkimage(&modules_dir, "i386-pc", &cfg, &work.join("core.img"))?,
        core_cd: mkimage(
            &modules_dir,
            "i386-pc-eltorito",
            &cfg,
            &work.join("eltorito.img"),
        )?,
        packages,
    })
}

/// One boot menu entry's console arguments.
pub const CONSOLES: &[(&str, &str)] = &[
    ("serial ttyS0 only", "console=ttyS0,115200n8"),
    ("serial ttyS1 only", "console=ttyS1,115200n8"),
    ("VGA only", "console=tty0"),
];

/// The kernel command line without its `console=` arguments.
pub fn cmdline_without_consoles(cmdline: &str) -> String {
    cmdline
        .split_whitespace()
        .filter(|w| !w.starts_with("console="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where GRUB draws its menu. The firmware mirrors what its own console shows onto the serial line (OVMF
/// and BMC console redirection through the UEFI console, SeaBIOS's sercon and BIOS redirection through
/// INT 10h), with box-drawing bytes (CP437 or UTF-8) and colour escapes, and GRUB's `console` terminal is
/// that firmware console. So the menu never goes through it: GRUB's own serial terminal draws it in
/// ASCII with VT100 cursor moves and no colour (`terminfo -a serial vt100`: the chosen entry is marked
/// `*` and in reverse video); on BIOS the screen gets the same menu from `vga_text`, which writes the
/// text memory directly (no INT 10h, so nothing mirrored); on UEFI the screen has no such path (GRUB's
/// graphical terminal needs a font file), so it gets one ASCII line, printed before the firmware console
/// is switched off, saying where the menu is and what starts by itself.
const SERIAL_MENU: &str = "terminfo -a serial vt100\n\
    terminal_input console serial\n\
    if [ \"$grub_platform\" = \"efi\" ]; then\n\
    \techo \"The boot menu is on serial ttyS0 (115200 8N1); the first entry starts in 3 s.\"\n\
    \tterminal_output serial\n\
    else\n\
    \tterminal_output vga_text serial\n\
    fi\n";

/// The GRUB menu, the same for UEFI and BIOS: default entry with `cmdline` (VGA and ttyS0), then
/// serial-only ttyS0, serial-only ttyS1, VGA-only; on UEFI also the unsigned UKI.
pub fn grub_cfg(cmdline: &str, version: &str, build_id: &str, marker: &str) -> String {
    let base = cmdline_without_consoles(cmdline);
    let entry = |title: &str, args: &str| {
        format!(
            "menuentry 'rescue {version} ({title})' {{\n\
             \tlinux /RESCUE/VMLINUZ {args}\n\
             \tinitrd /RESCUE/INITRD.IMG\n\
             }}\n"
        )
    };
    let mut cfg = format!(
        "# rescue {version}, build {build_id}: generated by cargo xtask build\n\
         set timeout=3\n\
         set default=0\n\
         serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
         {SERIAL_MENU}\
         search --no-floppy --file --set=root /{marker}\n"
    );
    cfg.push_str(&entry("VGA and serial ttyS0", cmdline));
    for (title, console) in CONSOLES {
        cfg.push_str(&entry(title, &format!("{base} {console}")));
    }
    cfg.push_str(
        "if [ \"$grub_platform\" = \"efi\" ]; then\n\
         menuentry 'rescue UKI (unsigned unless signed with --sign-key; Secure Boot refuses it otherwise)' {\n\
         \tchainloader /EFI/RESCUE/RESCUE.EFI\n\
         }\n\
         fi\n",
    );
    cfg
}

/// Signs a PE file (the UKI) with `sbsign` from Debian's `sbsigntool`: an explicitly optional step for
/// users enrolling their own key (`cargo xtask build --sign-key KEY --sign-cert CERT`).
pub fn sbsign(pe: &[u8], key: &Path, cert: &Path, work: &Path) -> anyhow::Result<Vec<u8>> {
    crate::deps::ensure_packages(&[("sbsign", "sbsigntool")])?;
    let input = work.join("unsigned.efi");
    let output = work.join("signed.efi");
    fs::write(&input, pe).with_context(|| format!("writing {}", input.display()))?;
    let _ = fs::remove_file(&output);
    util::run(
        Command::new("sbsign")
            .arg("--key")
            .arg(key)
            .arg("--cert")
            .arg(cert)
            .arg("--output")
            .arg(&output)
            .arg(&input),
    )?;
    read(&output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_has_the_four_consoles_and_the_uki() {
        let cfg = grub_cfg(
            "console=tty0 console=ttyS0,115200n8 quiet noresume",
            "0.1.0",
            "abc",
            "RESCUE/ID_ABC",
        );
        assert!(cfg.contains("set timeout=3"));
        assert!(cfg.contains(
            "linux /RESCUE/VMLINUZ console=tty0 console=ttyS0,115200n8 quiet noresume\n"
        ));
        assert!(cfg.contains("linux /RESCUE/VMLINUZ quiet noresume console=ttyS0,115200n8\n"));
        assert!(cfg.contains("linux /RESCUE/VMLINUZ quiet noresume console=ttyS1,115200n8\n"));
        assert!(cfg.contains("linux /RESCUE/VMLINUZ quiet noresume console=tty0\n"));
        assert_eq!(cfg.matches("menuentry").count(), 5);
        assert!(cfg.contains("chainloader /EFI/RESCUE/RESCUE.EFI"));
        assert!(cfg.contains("search --no-floppy --file --set=root /RESCUE/ID_ABC"));
    }

    #[test]
    fn the_menu_never_goes_through_the_firmware_console() {
        let cfg = grub_cfg("console=tty0 quiet", "0.1.0", "abc", "RESCUE/ID_ABC");
        assert!(cfg.is_ascii());
        let outputs: Vec<&str> = cfg
            .lines()
            .filter_map(|l| l.trim().strip_prefix("terminal_output "))
            .collect();
        assert_eq!(outputs, ["serial", "vga_text serial"], "{cfg}");
        assert!(cfg.contains("terminfo -a serial vt100\n"), "{cfg}");
        // The terminal set-up comes before anything the menu prints.
        assert!(cfg.find("terminal_output").unwrap() < cfg.find("menuentry").unwrap());
        assert!(BIOS_MODULES.contains(&"vga_text") && BIOS_MODULES.contains(&"terminfo"));
    }
}
