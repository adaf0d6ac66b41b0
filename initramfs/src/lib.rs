//! Pure building blocks for the rescue initramfs: a reproducible newc cpio writer, the kernel-module
//! index (`modules.dep`, `modules.alias`, `modules.softdep`, `modules.builtin`) with dependency closure,
//! firmware names from `.modinfo`, ELF inspection and module decompression.
//!
//! Nothing here touches the running system: functions take bytes or paths and return values. The same
//! index parser is used by `xtask` at build time and by the `rescue` coldplug at run time.

pub mod cpio;
#[cfg(feature = "build")]
pub mod deb;
#[cfg(feature = "build")]
pub mod decompress;
pub mod elf;
pub mod firmware;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod golden;
pub mod modinfo;
pub mod modules;
pub mod profile;
