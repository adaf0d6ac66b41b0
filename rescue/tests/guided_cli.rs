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
        out.lines()
            .any(|l| l.contains("run 'rescue live' on a suspect host BEFORE rebooting")),
        "the first screen says the live response comes before the reboot:\n{out}"
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

/// Step 5 in rescue-system mode (state in a temp dir, numbered prompts): the operator picks "another
/// source" (its number depends on the disks this host has, so it is read from the list), names a mounted
/// root, and the step runs `triage` into the case, shows the table and records the findings in the case.
#[test]
fn guided_triage_step_records_the_findings_in_the_case() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let root = d.path().join("root");
    for (rel, data) in [
        ("etc/os-release", &b"ID=debian\n"[..]),
        ("usr/bin/true", b"\x7fELF"),
        ("srv/data/.sync/agent.conf", b"beacon\n"),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let rescue_mode = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env_remove("RESCUE_CONSOLE")
            .env("RESCUE_STATE_DIR", &state)
            .env("RESCUE_MENU", "numbered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let o = rescue_mode(&["case", "new", "G-18", "--examiner", "Guide"])
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");

    let mut child = rescue_mode(&["shell"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "5").unwrap();
    let mut seen = String::new();
    let choice = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the step lists its sources:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("another source") {
            break line.trim().split(')').next().unwrap().trim().to_owned();
        }
    };
    assert!(seen.contains("Triage of"), "{seen}");
    write!(stdin, "{choice}\n{}\n\n", root.display()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!("{seen}{rest}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    let findings = state.join("triage-root/findings.json");
    assert!(
        out.contains(&format!(
            "[guided] triage {} --out {}",
            root.display(),
            state.join("triage-root").display()
        )),
        "the step shows the line-mode command it runs:\n{out}"
    );
    assert!(
        out.contains("/srv/data/.sync") && out.contains("triage: 0 critical"),
        "the findings table:\n{out}"
    );
    assert!(out.contains("findings recorded in the case"), "{out}");
    assert!(
        out.contains("5  Triage") && out.contains("done: 1 run(s)"),
        "the menu shows the step done:\n{out}"
    );
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("case.json")).unwrap()).unwrap();
    let t = &case["triages"][0];
    assert_eq!(
        t["findings"],
        findings.canonicalize().unwrap().display().to_string()
    );
    assert!(t["counts"]["low"].as_u64().is_some_and(|n| n > 0), "{t}");
    let log = std::fs::read(state.join("case-log.jsonl")).unwrap();
    let entries = rescue::caselog::verify(&log).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.command == format!("triage {}", root.display())
                && e.detail["counts"]["low"].as_u64().is_some_and(|n| n > 0)),
        "the case log records the triage"
    );
    let o = rescue_mode(&["case", "show"]).wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!("triage      {}: 0 critical", root.display())),
        "case show lists the triage run:\n{shown}"
    );
}
