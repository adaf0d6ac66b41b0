//! The rescue system: PID 1 init, the guided shell, and the host CLI share these modules.
//!
//! Only [`ui`] knows that a terminal exists; every other module returns values and errors and reports
//! progress through callbacks. See `ARCHITECTURE.md` for the invariants.

pub mod acquire;
pub mod blkro;
pub mod case;
pub mod caselog;
pub mod cli;
pub mod coldplug;
pub mod devices;
pub mod host;
pub mod init;
pub mod inventory;
pub mod selftest;
pub mod uevent;
pub mod ui;

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
