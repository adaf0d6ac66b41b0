//! Facts about the running system that every layer may ask: whether this process runs inside the
//! rescue system, the names of the environment variables init hands its consoles, and asking PID 1
//! for a power action.
//!
//! A leaf: it imports nothing from this crate, so `init`, `cli`, `ui` and the engine can all depend on
//! it without depending on each other. It never prints.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Environment variable set to `1` for every process init starts.
pub const RESCUE_SYSTEM_ENV: &str = "RESCUE_SYSTEM";

/// Environment variable through which init passes `rescue.shell=` (`line`: no guided menu at start-up).
pub const SHELL_ENV: &str = "RESCUE_SHELL";

/// Environment variable through which init passes `rescue.run=` (a command file on the boot medium).
pub const RUN_ENV: &str = "RESCUE_RUN";

/// Environment variable through which init passes the unattended command list (`rescue.auto=`).
pub const AUTO_ENV: &str = "RESCUE_AUTO";

/// True in processes started by the rescue system's init.
pub fn in_rescue_system() -> bool {
    std::env::var(RESCUE_SYSTEM_ENV).is_ok_and(|v| v == "1")
}

/// What the operator asked init to do with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
    /// Start the kernel loaded with `kexec_file_load` (`reinstall boot`), through init's shutdown.
    Kexec,
}

impl PowerAction {
    /// The signal init waits for to carry out this action.
    pub fn signal(self) -> Signal {
        match self {
            PowerAction::PowerOff => Signal::SIGUSR2,
            PowerAction::Reboot => Signal::SIGTERM,
            PowerAction::Kexec => Signal::SIGHUP,
        }
    }
}

/// Errors asking init for a power action.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("poweroff and reboot are only available inside the rescue system")]
    NotRescueSystem,
    #[error("signalling init")]
    SignalInit(#[source] nix::Error),
}

/// Asks PID 1 to sync, stop everything and power off or reboot.
pub fn request_power(action: PowerAction) -> Result<(), PowerError> {
    if !in_rescue_system() {
        return Err(PowerError::NotRescueSystem);
    }
    nix::sys::signal::kill(Pid::from_raw(1), action.signal()).map_err(PowerError::SignalInit)
}
