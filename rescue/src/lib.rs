//! The rescue system: PID 1 init, the guided shell, and the host CLI share these modules.
//!
//! Only [`ui`] knows that a terminal exists; every other module returns values and errors and reports
//! progress through callbacks. See `ARCHITECTURE.md` for the invariants.

pub mod acquire;
pub mod args;
pub mod ata;
pub mod blkro;
pub mod case;
pub mod caselog;
pub mod cli;
pub mod coldplug;
pub mod devices;
pub mod dm;
pub mod evidence;
pub mod examine;
pub mod extfs;
pub mod format;
#[cfg(test)]
mod fuzzing;
pub mod host;
pub mod init;
pub mod inventory;
pub mod live;
pub mod lvm;
pub mod md;
pub mod mount;
pub mod net;
pub mod pkgdb;
pub mod reinstall;
pub mod report;
pub mod restore;
pub mod s3;
pub mod selfcheck;
pub mod selftest;
pub mod system;
#[cfg(test)]
mod testing;
pub mod timeline;
pub mod triage;
pub mod uevent;
pub mod ui;

/// `err: cause: cause` on one line: an error and every source below it.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
