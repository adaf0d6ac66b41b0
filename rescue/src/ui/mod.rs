//! Everything that knows a terminal exists: rendering command results, progress, errors, the banner and
//! the line-mode prompt. Other modules return values; this module decides how a person sees them.

pub mod acquire;
pub mod case;
pub mod caselog;
pub mod devices;
pub mod guided;
pub mod lineedit;
pub mod net;
pub mod prompt;
pub mod reinstall;
pub mod remote;
pub mod restore;
pub mod selftest;
pub mod serial;
pub mod status;

pub use crate::error_chain;

/// Prints `error: …` with the whole cause chain to stderr.
pub fn print_error(err: &anyhow::Error) {
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    eprintln!("error: {}", chain.join(": "));
}
