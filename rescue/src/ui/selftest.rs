//! `selftest write-block`: prints one line per device and a verdict.

use crate::selftest::{self, WriteOutcome};

/// Exit code when any device accepted a write.
pub const EXIT_WRITE_ACCEPTED: u8 = 6;

pub fn run_write_block() -> anyhow::Result<u8> {
    let probes = selftest::write_block();
    for p in &probes {
        let what = match &p.outcome {
            WriteOutcome::RefusedAtOpen { error } => format!("write refused at open ({error})"),
            WriteOutcome::RefusedAtWrite { error } => format!("write refused ({error})"),
            WriteOutcome::Accepted => "WRITE ACCEPTED - NOT WRITE-BLOCKED".to_owned(),
            WriteOutcome::NotTested { error } => {
                format!("not tested: first sector unreadable ({error})")
            }
        };
        println!("{:<16} {what}", p.device);
    }
    let refused = probes.iter().filter(|p| p.refused()).count();
    let accepted = probes
        .iter()
        .filter(|p| p.outcome == WriteOutcome::Accepted)
        .count();
    println!(
        "write-block selftest: {refused} of {} devices refused writes, {accepted} accepted",
        probes.len()
    );
    if accepted > 0 {
        println!("write-block selftest: FAILED");
        Ok(EXIT_WRITE_ACCEPTED)
    } else {
        println!("write-block selftest: PASSED");
        Ok(0)
    }
}
