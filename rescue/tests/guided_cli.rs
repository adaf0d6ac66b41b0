//! `rescue shell` on a host without a terminal: the guided menu falls back to numbered prompts answered
//! with typed lines, and step 1 opens the case with the operator's true time (the clock offset lands in the
//! case state and the case log).

use std::io::Write;
use std::process::{Command, Stdio};

fn shell(state: &std::path::Path, input: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescue"))
        .arg("shell")
        .env_remove("RESCUE_SYSTEM")
        .env_remove("RESCUE_CONSOLE")
        .env("RESCUE_STATE_DIR", state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn guided_case_step_with_numbered_prompts_records_the_clock_offset() {
    let state = tempfile::tempdir().unwrap();
    let (out, err) = shell(
        state.path(),
        "1\nbad/id\nCASE-H\nJ. Doe\nrack 4\n2030-13-01 00:00\n2030-01-01 00:00:00\n",
    );
    assert!(
        out.contains("next> 1  Case"),
        "the menu comes first:\n{out}"
    );
    assert!(
        out.contains("a case id may use letters"),
        "a bad id is asked again:\n{out}"
    );
    assert!(
        out.contains("not a time"),
        "an impossible date is asked again:\n{out}"
    );
    assert!(
        out.contains(r#"[guided] case new CASE-H --examiner "J. Doe" --notes "rack 4" --true-time "2030-01-01 00:00:00""#),
        "the step shows the line-mode command it runs:\n{out}"
    );
    assert!(out.contains("case CASE-H opened"), "{out}\n{err}");
    assert!(
        out.contains("next> 2  Inventory"),
        "the menu moves on:\n{out}"
    );
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("case.json")).unwrap()).unwrap();
    let offset = case["clock_offset_seconds"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (offset - (1_893_456_000 - now)).abs() < 120,
        "offset {offset} = 2030-01-01 minus now"
    );
    let log = std::fs::read(state.path().join("case-log.jsonl")).unwrap();
    let entries = rescue::caselog::verify(&log).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.detail["clock_offset_seconds"] == offset),
        "the offset is in the case log"
    );
    assert!(entries.iter().any(|e| e.command == "guided step 1"));
}
