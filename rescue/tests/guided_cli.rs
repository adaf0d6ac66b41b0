//! `rescue shell` on a host without a terminal: the guided menu falls back to numbered prompts answered
//! with typed lines, and step 1 opens the case with the operator's true time (the clock offset lands in the
//! case state and the case log).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// `rescue ARGS` in rescue-system mode, its state in `state`, prompts as numbered lists.
fn rescue_mode(state: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env("RESCUE_SYSTEM", "1")
        .env_remove("RESCUE_CONSOLE")
        .env("RESCUE_STATE_DIR", state)
        .env("RESCUE_MENU", "numbered")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads a Triage or Timeline step's output up to the prompt of its source list: what it read, and the
/// number of the "another source" choice (it depends on the disks this host has). Reading also stops
/// where the step ends, so a step without that choice fails the test instead of waiting for an answer.
fn another_source(stdout: &mut impl Read) -> (String, String) {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("(empty cancels): ") && !seen.contains("finished; next:") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the step lists its sources:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let choice = seen
        .lines()
        .find(|l| l.contains("another source"))
        .and_then(|l| l.trim().split(')').next())
        .unwrap_or_else(|| panic!("the step offers another source:\n{seen}"))
        .trim()
        .to_owned();
    (seen, choice)
}

/// Runs guided step `step` of the shell in rescue-system mode, picks "another source" from its list
/// (which must carry `title`), answers with `path` and then `rest` (one answer per line), and returns
/// everything printed once the shell has ended, after checking that it succeeded.
fn another_source_step(state: &Path, step: &str, title: &str, path: &Path, rest: &str) -> String {
    let mut child = rescue_mode(state, &["shell"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    writeln!(stdin, "{step}").unwrap();
    let (seen, choice) = another_source(&mut stdout);
    assert!(seen.contains(title), "{seen}");
    write!(stdin, "{choice}\n{}\n{rest}", path.display()).unwrap();
    drop(stdin);
    let mut tail = String::new();
    stdout.read_to_string(&mut tail).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!("{seen}{tail}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    out
}

/// Step 5 in rescue-system mode (state in a temp dir, numbered prompts): the operator picks "another
/// source" (its number depends on the disks this host has, so it is read from the list), names a mounted
/// root, and the step runs `triage` into the case, shows the table and records the findings in the case.
#[test]
fn guided_triage_step_records_the_findings_in_the_case() {
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
    let o = rescue_mode(&state, &["case", "new", "G-18", "--examiner", "Guide"])
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");

    let out = another_source_step(&state, "5", "Triage of", &root, "\n");
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
    let o = rescue_mode(&state, &["case", "show"])
        .wait_with_output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!("triage      {}: 0 critical", root.display())),
        "case show lists the triage run:\n{shown}"
    );
}

/// Step 6 accepts any source path as step 5 does (issue 20: an image that `rescue mount` serves, or a
/// mounted root), not only the case's acquisitions and this host's disks: the operator picks "another
/// source", names a mounted root, and the step runs `timeline` into the case directory on the evidence
/// destination.
#[test]
fn guided_timeline_step_takes_another_source_by_its_path() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let evidence = d.path().join("evidence");
    let root = d.path().join("root");
    for (rel, data) in [
        ("etc/hostname", &b"db7\n"[..]),
        (
            "var/log/dpkg.log",
            b"2024-05-01 12:00:00 install netcat-openbsd:amd64 <none> 1.219-1\n",
        ),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let o = rescue_mode(&state, &["case", "new", "G-20", "--examiner", "Guide"])
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The evidence destination step 3 would have mounted: a directory here.
    let case_json = state.join("case.json");
    let mut case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&case_json).unwrap()).unwrap();
    case["destination"] = serde_json::json!({
        "device": "/dev/null",
        "serial": null,
        "mountpoint": evidence.display().to_string(),
        "fstype": "ext4",
    });
    std::fs::write(&case_json, serde_json::to_vec(&case).unwrap()).unwrap();
    std::fs::create_dir_all(evidence.join("G-20")).unwrap();

    // The source's path, then the zone, from and to.
    let out = another_source_step(&state, "6", "Timeline of", &root, "UTC\n\n\n");
    assert!(
        out.contains("MOUNTPOINT/image.raw"),
        "the path prompt names what rescue mount serves:\n{out}"
    );
    let dir = evidence.join("G-20/timeline-root");
    assert!(
        out.contains(&format!(
            "[guided] timeline {} --out {} --tz UTC",
            root.display(),
            dir.display()
        )),
        "the step shows the line-mode command it runs:\n{out}"
    );
    assert!(out.contains("timeline written to"), "{out}");
    let lines = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap();
    assert!(
        lines.contains("netcat-openbsd") && lines.contains("\"host\":\"db7\""),
        "{lines}"
    );
}
