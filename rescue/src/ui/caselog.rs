//! `log verify FILE`: the verdict on a case log's hash chain.

use std::path::Path;

use anyhow::Context;

use crate::caselog;

/// Exit code: the chain is broken.
pub const EXIT_BROKEN: u8 = 4;

pub fn run_verify(file: &Path) -> anyhow::Result<u8> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match caselog::verify(&bytes) {
        Ok(entries) => {
            let last = entries.last().map(|e| e.utc.as_str()).unwrap_or("-");
            println!(
                "{}: {} entries, chain intact (last entry {last})",
                file.display(),
                entries.len()
            );
            Ok(0)
        }
        Err(e) => {
            println!("{}: BROKEN at {e}", file.display());
            Ok(EXIT_BROKEN)
        }
    }
}
