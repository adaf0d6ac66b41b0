//! The rescue binary as a host CLI: `devices` works outside the rescue system, power commands refuse.

use std::process::Command;

fn rescue(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .output()
        .unwrap()
}

#[test]
fn devices_json_is_one_array_on_one_line_matching_sysfs() {
    let out = rescue(&["devices", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let list: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let list = list.as_array().unwrap();
    // Every non-RAM disk in /sys/block is listed (loop devices only when attached).
    let mut expected: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("ram") && !n.starts_with("zram"))
        .filter(|n| {
            !n.starts_with("loop")
                || std::fs::read_to_string(format!("/sys/block/{n}/size"))
                    .is_ok_and(|s| s.trim() != "0")
        })
        .collect();
    expected.sort();
    let names: Vec<String> = list
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, expected);
    for d in list {
        let name = d["name"].as_str().unwrap();
        let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(d["size_bytes"].as_u64(), Some(sectors * 512), "{name}");
        for key in [
            "path",
            "logical_sector_size",
            "physical_sector_size",
            "model",
            "serial",
            "transport",
            "removable",
            "read_only",
            "partitions",
        ] {
            assert!(d.get(key).is_some(), "{name} lacks {key}");
        }
    }
}

#[test]
fn devices_table_has_a_header() {
    let out = rescue(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Side by side under a header when it fits the 80 columns a pipe gets, else one block per disk
    // starting with its name (a host's long models and serials).
    let list: serde_json::Value =
        serde_json::from_slice(&rescue(&["devices", "--json"]).stdout).unwrap();
    let first = list[0]["name"].as_str().unwrap_or("(no disks found)");
    let head = text.lines().next().unwrap_or_default();
    assert!(head.starts_with("DEVICE") || head == first, "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(text.is_ascii(), "serial consoles get ASCII only");
}

#[test]
fn power_commands_refuse_on_a_host() {
    for cmd in ["poweroff", "reboot"] {
        let out = rescue(&[cmd]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("only available inside the rescue system"),
            "{err}"
        );
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = rescue(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn log_verify_passes_and_fails_after_one_edited_byte() {
    use rescue::caselog::{CaseLog, Record};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case-log.jsonl");
    let mut log = CaseLog::in_memory();
    for cmd in [
        "case new CASE-7",
        "unlock /dev/sdc --confirm 4C53",
        "acquire /dev/sda --out /mnt/evidence",
    ] {
        log.append(Record {
            kind: "action".into(),
            command: cmd.into(),
            detail: serde_json::json!({}),
        })
        .unwrap();
    }
    log.attach(&path).unwrap();
    let out = rescue(&["log", "verify", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 entries, chain intact"));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"sdc ").unwrap();
    bytes[at + 2] = b'b';
    std::fs::write(&path, &bytes).unwrap();
    let out = rescue(&["log", "verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN at line 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
