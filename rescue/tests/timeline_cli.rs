//! `rescue timeline` through the real binary (issue 14), each output checked by a tool someone else
//! wrote: Sleuth Kit's `fls`/`mactime` against our body file on an ext4 image made by `mke2fs -d`,
//! `journalctl --file … -o json` against our journal reader (journals written here by
//! `systemd-journal-remote` in zstd, LZ4 and XZ, compact and regular), `last -f` against our wtmp
//! events and `lastb -f` against our btmp events (both made by `utmpdump -r`), `sha256sum -c` on the
//! outputs; and Timesketch's required fields and types on every line, a one-line timeline included.
//!
//! Gated parts: a missing tool skips unless `RESCUE_REQUIRE_TOOLS=1`, root/loop devices unless
//! `RESCUE_REQUIRE_LOOP=1` (both set by `cargo xtask test`); every gated part that ran leaves a marker
//! `timeline-*` in `RESCUE_TEST_MARKERS`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

#[path = "common/root.rs"]
mod root;
use root::need_root;

fn rescue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        // Whole lines: these tests read what each line says; columns_cli checks 80 and 40 columns.
        .env("COLUMNS", "1000")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether `tool` runs; a missing tool skips the test unless `RESCUE_REQUIRE_TOOLS` is set.
fn have(tool: &str, what: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v \"$0\"", tool])
        .output()
        .is_ok_and(|o| o.status.success())
        || Path::new(tool).is_file();
    if !ok {
        assert!(
            std::env::var_os("RESCUE_REQUIRE_TOOLS").is_none(),
            "{what} needs {tool} and RESCUE_REQUIRE_TOOLS forbids skipping it"
        );
        eprintln!("skipped {what}: {tool} is not installed");
    }
    ok
}

/// Records that a gated check ran.
fn mark(name: &str) {
    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&m);
        let _ = std::fs::write(Path::new(&m).join(format!("timeline-{name}")), b"ran\n");
    }
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn events(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("timeline.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Timesketch's import needs `message`, `datetime` (ISO 8601), `timestamp` (an integer, µs) and
/// `timestamp_desc` on every line; we promise `source`, `path`, `host` too.
fn assert_timesketch(out: &Path) {
    let evs = events(out);
    for e in &evs {
        for k in [
            "message",
            "datetime",
            "timestamp_desc",
            "source",
            "path",
            "host",
        ] {
            assert!(e[k].is_string(), "{k} is not a string in {e}");
        }
        let ts = e["timestamp"]
            .as_i64()
            .unwrap_or_else(|| panic!("timestamp is not an integer: {e}"));
        let dt = e["datetime"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(dt).unwrap_or_else(|_| panic!("{dt}"));
        assert_eq!(
            parsed.timestamp_micros(),
            ts,
            "datetime and timestamp agree in {e}"
        );
        assert!(dt.ends_with("+00:00"), "UTC: {dt}");
    }
    let csv = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("datetime,timestamp,timestamp_desc,message,source,path,host")
    );
    let o = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "sha256sum -c: {}", text(&o));
}

#[test]
fn a_one_line_log_gives_a_valid_one_line_timeline() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "db7\n").unwrap();
    std::fs::write(
        root.join("var/log/dpkg.log"),
        "2024-05-01 12:00:00 install netcat-openbsd:amd64 <none> 1.219-1\nthis is not dpkg\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&root), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("1 events"), "{t}");
    assert!(t.contains("1 unparsed lines"), "{t}");
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["timestamp"], 1_714_564_800_000_000i64);
    assert_eq!(evs[0]["datetime"], "2024-05-01T12:00:00+00:00");
    assert_eq!(evs[0]["host"], "db7");
    assert_eq!(evs[0]["path"], "/var/log/dpkg.log");
    assert_timesketch(&out);
    let unparsed = std::fs::read_to_string(out.join("unparsed.jsonl")).unwrap();
    assert!(unparsed.contains("this is not dpkg"));

    // A zone that cannot be known is stated.
    std::fs::remove_file(root.join("etc/hostname")).unwrap();
    let out2 = d.path().join("out2");
    let o = rescue(&["timeline", s(&root), "--out", s(&out2)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("unknown"), "{}", text(&o));
    assert!(
        events(&out2)[0]["time_zone"]
            .as_str()
            .unwrap()
            .contains("unknown")
    );

    // Bad windows are refused in words.
    let o = rescue(&[
        "timeline",
        s(&root),
        "--out",
        s(&d.path().join("o3")),
        "--from",
        "soon",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a time"), "{}", text(&o));
}

/// A journal export (systemd's export format) with three entries, one long enough to be compressed.
fn export() -> Vec<u8> {
    let mut out = Vec::new();
    let msgs = [
        "Server listening on 0.0.0.0 port 22.".to_owned(),
        "Accepted password for root from 203.0.113.9 port 50022 ssh2".to_owned(),
        format!("long line {}", "ABCDEFGH".repeat(200)),
    ];
    for (i, m) in msgs.iter().enumerate() {
        out.extend(format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE={m}\nSYSLOG_IDENTIFIER=sshd\n_PID={}\n_HOSTNAME=web1\nPRIORITY=6\n\n",
            1_700_000_000_000_000u64 + i as u64 * 1_000_001,
            1000 + i,
            700 + i
        ).bytes());
    }
    out
}

/// A regular journal with every DATA payload of at least 1 KiB compressed by xz(1) the way systemd
/// stores an XZ field: payload replaced by the XZ stream, object size shrunk (the space freed is an
/// UNUSED object), flag `COMPRESSED_XZ` (1) on the object and `COMPRESSED-XZ` (1) in the header.
fn recompress_xz(journal: &[u8]) -> Vec<u8> {
    let mut b = journal.to_vec();
    let le = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let incompat = u32::from_le_bytes(b[12..16].try_into().unwrap());
    // XZ 1, LZ4 2, ZSTD 8, COMPACT 16: none of them (KEYED-HASH 4 may be there).
    assert_eq!(incompat & 0x1b, 0, "an uncompressed, regular journal");
    let (start, end) = (le(&b, 88), le(&b, 88) + le(&b, 96));
    let mut off = start;
    let mut done = 0;
    while off + 16 <= end && le(&b, off + 8) >= 16 {
        let size = le(&b, off + 8);
        if b[off] == 1 && size - 64 >= 1024 {
            let payload = b[off + 64..off + size].to_vec();
            let mut child = Command::new("xz")
                .args(["--format=xz", "--check=crc64", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&payload).unwrap();
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success() && o.stdout.len() < payload.len());
            b[off + 64..off + 64 + o.stdout.len()].copy_from_slice(&o.stdout);
            let new_size = 64 + o.stdout.len();
            b[off + 8..off + 16].copy_from_slice(&(new_size as u64).to_le_bytes());
            b[off + 1] |= 1;
            // The space freed becomes one UNUSED object (type 0), so the objects still follow
            // one another for a sequential scan (ours); journalctl reads entries by offset.
            // (`journalctl --verify` rejects the UNUSED object: it is not an XZ check.)
            let (freed_at, old_end) = (off + new_size.div_ceil(8) * 8, off + size.div_ceil(8) * 8);
            assert!(old_end - freed_at >= 16);
            b[freed_at..old_end].fill(0);
            b[freed_at + 8..freed_at + 16]
                .copy_from_slice(&((old_end - freed_at) as u64).to_le_bytes());
            done += 1;
        }
        off += size.div_ceil(8) * 8;
    }
    assert_eq!(done, 1, "the long MESSAGE field was recompressed");
    b[12..16].copy_from_slice(&(incompat | 1).to_le_bytes());
    b
}

#[test]
fn journal_events_match_journalctl() {
    let remote = "/usr/lib/systemd/systemd-journal-remote";
    if !have(remote, "the journal check")
        || !have("journalctl", "the journal check")
        || !have("xz", "the journal check")
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let jdir = root.join("var/log/journal/0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&jdir).unwrap();
    let export_file = d.path().join("export");
    std::fs::write(&export_file, export()).unwrap();
    let mut files = Vec::new();
    // systemd 252 compresses with zstd (no switch for LZ4/XZ: the LZ4 decoder is checked against
    // lz4(1) in the unit tests); compact and regular layouts, compressed and not.
    for (name, compress, compact, flags) in [
        (
            "zstd-compact",
            "yes",
            "1",
            "COMPRESSED-ZSTD KEYED-HASH COMPACT",
        ),
        ("zstd-regular", "yes", "0", "COMPRESSED-ZSTD KEYED-HASH"),
        ("plain", "no", "0", "KEYED-HASH"),
    ] {
        let j = jdir.join(format!("system@{name}.journal"));
        run(Command::new(remote)
            .env("SYSTEMD_JOURNAL_COMPACT", compact)
            .arg(format!("--compress={compress}"))
            .arg("-o")
            .arg(&j)
            .arg(&export_file));
        let header = run(Command::new("journalctl")
            .arg("--file")
            .arg(&j)
            .arg("--header"));
        assert!(
            header
                .lines()
                .any(|l| l.starts_with("Incompatible flags:") && l.trim_end().ends_with(flags)),
            "{name}: {header}"
        );
        files.push(j);
    }
    // XZ (systemd's default before 246; systemd 252 here has no switch for it): the plain journal with
    // its long MESSAGE field compressed by xz(1) in place, as systemd stores one (the object shrinks,
    // its XZ flag and the header's COMPRESSED-XZ are set). journalctl decoding it with liblzma is the
    // check that the file is what an XZ journal is.
    let xz = jdir.join("system@xz.journal");
    std::fs::write(&xz, recompress_xz(&std::fs::read(&files[2]).unwrap())).unwrap();
    let header = run(Command::new("journalctl")
        .arg("--file")
        .arg(&xz)
        .arg("--header"));
    assert!(
        header.lines().any(|l| l.starts_with("Incompatible flags:")
            && l.trim_end().ends_with("COMPRESSED-XZ KEYED-HASH")),
        "xz: {header}"
    );
    files.push(xz);
    // A damaged copy: the second ENTRY object's size field overwritten. It must not stop the run;
    // the first entry is read and the loss is reported.
    let mut bad = std::fs::read(&files[0]).unwrap();
    let le = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let mut off = le(&bad, 88);
    let mut entries_seen = 0;
    while off + 16 <= bad.len() && le(&bad, off + 8) >= 16 {
        if bad[off] == 3 {
            entries_seen += 1;
            if entries_seen == 2 {
                bad[off + 8..off + 16].copy_from_slice(&u64::MAX.to_le_bytes());
                break;
            }
        }
        off += le(&bad, off + 8).div_ceil(8) * 8;
    }
    assert_eq!(entries_seen, 2, "found the second ENTRY object");
    let damaged_dir = root.join("var/log/journal/damaged");
    std::fs::create_dir_all(&damaged_dir).unwrap();
    std::fs::write(damaged_dir.join("system@damaged.journal~"), &bad).unwrap();

    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&root), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    let ours = events(&out);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timeline-summary.json")).unwrap()).unwrap();
    let damaged = summary["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"].as_str().unwrap().contains("damaged"))
        .unwrap();
    assert_eq!(damaged["events"], 1, "{damaged}");
    assert_eq!(damaged["unparsed"], 1, "the damage is reported: {damaged}");
    let unparsed = std::fs::read_to_string(out.join("unparsed.jsonl")).unwrap();
    assert!(unparsed.contains("impossible size"), "{unparsed}");
    for j in &files {
        let shown = format!("/{}", j.strip_prefix(&root).unwrap().display());
        let mut want = Vec::new();
        for l in run(Command::new("journalctl")
            .arg("--file")
            .arg(j)
            .args(["-o", "json"]))
        .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t: i64 = v["__REALTIME_TIMESTAMP"].as_str().unwrap().parse().unwrap();
            let msg = format!(
                "{}[{}]: {}",
                v["SYSLOG_IDENTIFIER"].as_str().unwrap(),
                v["_PID"].as_str().unwrap(),
                v["MESSAGE"].as_str().unwrap()
            );
            want.push((t, msg, v["_HOSTNAME"].as_str().unwrap().to_owned()));
        }
        assert_eq!(want.len(), 3, "journalctl reads 3 entries from {shown}");
        let mut got: Vec<(i64, String, String)> = ours
            .iter()
            .filter(|e| e["path"] == shown.as_str())
            .map(|e| {
                (
                    e["timestamp"].as_i64().unwrap(),
                    e["message"].as_str().unwrap().to_owned(),
                    e["host"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{shown}");
    }
    // Forty more copies, each with 8 bytes overwritten at a different place: one run reads them all
    // without a panic, and says what it could not read.
    let fuzz_root = d.path().join("fuzz");
    let fdir = fuzz_root.join("var/log/journal/f");
    std::fs::create_dir_all(&fdir).unwrap();
    let good = std::fs::read(&files[1]).unwrap();
    let used = (le(&good, 88) + le(&good, 96)).min(good.len());
    for k in 0..40 {
        let mut b = good.clone();
        let at = 8 + k * (used - 16) / 40;
        b[at..at + 8].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        std::fs::write(fdir.join(format!("f{k}.journal")), b).unwrap();
    }
    let fout = d.path().join("fuzz-out");
    let o = rescue(&["timeline", s(&fuzz_root), "--out", s(&fout), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_timesketch(&fout);

    let root_login = ours
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains("Accepted password for root")
        })
        .unwrap();
    assert_eq!(root_login["suspicious"], "root logged in over SSH");
    assert_timesketch(&out);
    mark("journalctl");
}

/// A row as `last`/`lastb -w --time-format iso` print it: user, terminal, host, time.
type LastRow = (String, String, String, String);

/// Writes the utmp file `path` from `utmpdump`'s text form (`utmpdump -r`).
fn utmpdump_reverse(dump: &str, path: &Path) {
    use std::io::Write;
    let mut child = Command::new("utmpdump")
        .arg("-r")
        .arg("-o")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// What `tool` (`last` or `lastb`) prints for `file` in UTC, and its rows (the "… begins" line
/// left out; "system boot" kept as one terminal).
fn last_rows(tool: &str, file: &Path) -> (String, BTreeSet<LastRow>) {
    let out = run(Command::new(tool)
        .env("TZ", "UTC")
        .args(["-w", "--time-format", "iso", "-f"])
        .arg(file));
    let rows = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(" begins "))
        .map(|l| {
            // `user tty host time ...`
            let l = l.replace("system boot", "system_boot");
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].replace('_', " "),
                f[2].to_owned(),
                f[3].to_owned(),
            )
        })
        .collect();
    (out, rows)
}

/// A utmp event of ours as `last` would print it (time in whole seconds, UTC).
fn last_row(e: &serde_json::Value) -> LastRow {
    let secs = e["timestamp"].as_i64().unwrap().div_euclid(1_000_000);
    (
        e["user"].as_str().unwrap().to_owned(),
        e["terminal"].as_str().unwrap().to_owned(),
        e["remote_host"].as_str().unwrap().to_owned(),
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string(),
    )
}

#[test]
fn wtmp_events_match_last() {
    if !have("utmpdump", "the wtmp check") || !have("last", "the wtmp check") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    let dump = "\
[2] [00000] [~~  ] [reboot  ] [~           ] [6.1.0-13-amd64      ] [0.0.0.0        ] [2023-11-14T22:00:00,000000+00:00]
[7] [01234] [ts/0] [root    ] [pts/0       ] [203.0.113.9         ] [203.0.113.9    ] [2023-11-14T22:13:20,250000+00:00]
[7] [01240] [ts/1] [eve     ] [pts/1       ] [198.51.100.4        ] [198.51.100.4   ] [2023-11-14T23:01:02,000000+00:00]
[8] [01234] [ts/0] [        ] [pts/0       ] [                    ] [0.0.0.0        ] [2023-11-14T22:30:00,000000+00:00]
";
    let wtmp = root.join("var/log/wtmp");
    utmpdump_reverse(dump, &wtmp);
    let (last, theirs) = last_rows("last", &wtmp);
    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&root), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let ours = events(&out);
    let ours_set: BTreeSet<LastRow> = ours
        .iter()
        .filter(|e| e["timestamp_desc"] == "Login" || e["timestamp_desc"] == "Boot")
        .map(|e| {
            let mut row = last_row(e);
            if e["timestamp_desc"] == "Boot" {
                (row.0, row.1) = ("reboot".to_owned(), "system boot".to_owned());
            }
            row
        })
        .collect();
    assert_eq!(theirs.len(), 3, "{last}");
    assert_eq!(ours_set, theirs, "last -f says:\n{last}");
    // The logout `last` pairs with root's session is our Logout event on pts/0.
    assert!(last.contains("- 2023-11-14T22:30:00+00:00"));
    assert!(ours.iter().any(|e| e["timestamp_desc"] == "Logout"
        && e["terminal"] == "pts/0"
        && e["timestamp"] == 1_700_001_000_000_000i64));
    mark("last");
}

/// The mactime rows of a body file, as sets of (date, size, macb, mode, uid, gid, inode, name).
fn mactime_rows(body: &Path) -> (BTreeSet<String>, String) {
    let o = Command::new("mactime")
        .args(["-b", s(body), "-d", "-y", "-z", "UTC"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "mactime: {err}");
    let rows = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    (rows, err)
}

#[test]
fn bodyfile_rows_match_fls_through_mactime() {
    if !need_root("the fls comparison (loop devices)")
        || !have("fls", "the fls comparison")
        || !have("mactime", "the fls comparison")
        || !have("mke2fs", "the fls comparison")
        || !have("sfdisk", "the fls comparison")
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    for dir in ["etc/cron.d", "home/eve/.ssh", "usr/bin", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "fs1\n").unwrap();
    std::fs::write(tree.join("etc/cron.d/job"), "* * * * * root /tmp/x\n").unwrap();
    std::fs::write(
        tree.join("home/eve/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA eve\n",
    )
    .unwrap();
    std::fs::write(tree.join("usr/bin/tool"), vec![0x7f; 5000]).unwrap();
    std::fs::write(tree.join("tmp/a|b%41\\c"), "odd name").unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", tree.join("etc/link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(tree.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    for (p, t) in [
        ("etc/cron.d/job", "2023-03-04 05:06:07"),
        ("usr/bin/tool", "2022-01-02 03:04:05"),
    ] {
        run(Command::new("touch").args(["-d", t]).arg(tree.join(p)));
    }
    // A GPT disk image with one partition at sector 2048 holding an ext4 made from the tree.
    let img = d.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let mut sf = Command::new("sfdisk");
    sf.arg("-q").arg(&img).stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\nstart=2048, size=61440, type=linux\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext4",
            "-I",
            "256",
            "-E",
            "offset=1048576",
            "-d",
        ])
        .arg(&tree)
        .arg(&img)
        .arg("30M"));

    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&img), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("fs1"), "{}", text(&o));
    let body = out.join("bodyfile.txt");
    let (ours, err) = mactime_rows(&body);
    assert!(
        err.trim().is_empty(),
        "mactime complains about our body file: {err}"
    );

    let fls = run(Command::new("fls")
        .args(["-r", "-m", "/", "-o", "2048"])
        .arg(&img));
    // fls writes names raw: leave out the one it cannot express, and its own virtual entries.
    let fls_body = d.path().join("fls.body");
    let kept: String = fls
        .lines()
        .filter(|l| !l.contains("a|b") && !l.contains("$OrphanFiles") && !l.contains("lost+found"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&fls_body, kept).unwrap();
    let (theirs, _) = mactime_rows(&fls_body);
    let ours_cmp: BTreeSet<String> = ours
        .iter()
        .filter(|r| !r.contains("a|b") && !r.contains("lost+found"))
        .cloned()
        .collect();
    // mactime folds a file's times into one row when they fall in the same second: count files.
    let names: BTreeSet<&str> = theirs.iter().filter_map(|r| r.rsplit(',').next()).collect();
    assert!(
        names.len() >= 13,
        "fls gave rows for every file of the tree: {theirs:#?}"
    );
    assert_eq!(
        ours_cmp,
        theirs,
        "mactime rows differ\nonly ours: {:#?}\nonly fls: {:#?}",
        ours_cmp.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours_cmp).collect::<Vec<_>>()
    );
    // The odd name survives: mactime decodes our %XX escapes back into the name's bytes.
    assert!(
        ours.iter().any(|r| r.ends_with("\"/tmp/a|b%41\\c\"")),
        "{ours:#?}"
    );
    assert_timesketch(&out);
    mark("fls");
}

/// A GPT disk whose /var is its own partition, named in the root's /etc/fstab by `var_spec` (`/` by
/// `root_spec`; `UUID` for the filesystem's, `PARTUUID` for the partition's): the logs on it are
/// found as /var/log/..., the body file names its files under /var, and the output says which
/// partition was mounted where.
fn separate_var(root_spec: &str, var_spec: &str) {
    let d = tempfile::tempdir().unwrap();
    let var_uuid = "7d0c1e8a-54b1-4c6e-9a53-0f4e2c9b1a77";
    let var_spec = var_spec.replace("{uuid}", var_uuid);
    let root_spec = root_spec.replace("{uuid}", "0b7e3c52-1111-4222-8333-944455556666");
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var")).unwrap();
    std::fs::write(root.join("etc/hostname"), "db2\n").unwrap();
    std::fs::write(
        root.join("etc/fstab"),
        format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             {root_spec} / ext4 errors=remount-ro 0 1\n\
             {var_spec} /var ext4 defaults 0 2\n"
        ),
    )
    .unwrap();
    let var = d.path().join("var");
    std::fs::create_dir_all(var.join("log")).unwrap();
    std::fs::write(
        var.join("log/auth.log"),
        "Mar  3 10:00:00 db2 sshd[41]: Accepted password for root from 203.0.113.7 port 51000 ssh2\n",
    )
    .unwrap();
    run(Command::new("touch")
        .args(["-d", "2024-03-04 00:00:00Z"])
        .arg(var.join("log/auth.log")));
    let img = d.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let mut sf = Command::new("sfdisk");
    sf.arg("-q").arg(&img).stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"label: gpt\nstart=2048, size=30720, type=linux\n\
              start=32768, size=40960, type=linux, uuid=6C2E8F6A-9A1B-4C55-8D1E-3F0C2B7A9E10, name=varpart\n",
        )
        .unwrap();
    assert!(child.wait().unwrap().success());
    for (tree, offset, size, uuid) in [
        (
            &root,
            2048u64,
            "15M",
            "0b7e3c52-1111-4222-8333-944455556666",
        ),
        (&var, 32768, "20M", var_uuid),
    ] {
        run(Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-U", uuid, "-E"])
            .arg(format!("offset={}", offset * 512))
            .arg("-d")
            .arg(tree)
            .arg(&img)
            .arg(size));
    }

    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&img), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains(&format!(
            "filesystem /var: /etc/fstab names it {var_spec} at /var"
        )),
        "{said}"
    );
    let login = events(&out)
        .into_iter()
        .find(|e| e["path"] == "/var/log/auth.log")
        .unwrap_or_else(|| panic!("no event from /var/log/auth.log: {said}"));
    assert_eq!(login["datetime"], "2024-03-03T10:00:00+00:00");
    assert_eq!(login["suspicious"], "root logged in over SSH");
    let body = std::fs::read_to_string(out.join("bodyfile.txt")).unwrap();
    assert!(body.contains("|/var/log/auth.log|"), "{body}");
    assert!(body.contains("|/etc/fstab|"), "{body}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timeline-summary.json")).unwrap()).unwrap();
    let mounted: Vec<&str> = summary["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["mounted_at"].as_str())
        .collect();
    assert_eq!(mounted, ["/", "/var"], "{summary}");
}

/// /var named by filesystem UUID (Debian's installer), by the partition's PARTUUID and GPT name,
/// and by device name beside a device-named `/` (older installers).
#[test]
fn logs_on_a_separate_var_partition_are_found() {
    if !need_root("the separate /var check (loop devices)")
        || !have("mke2fs", "the separate /var check")
        || !have("sfdisk", "the separate /var check")
    {
        return;
    }
    separate_var("UUID={uuid}", "UUID={uuid}");
    separate_var(
        "UUID={uuid}",
        "PARTUUID=6c2e8f6a-9a1b-4c55-8d1e-3f0c2b7a9e10",
    );
    separate_var("UUID={uuid}", "/dev/disk/by-partlabel/varpart");
    separate_var("/dev/sda1", "/dev/sda2");
    separate_var("/dev/nvme0n1p1", "/dev/nvme0n1p2");
    mark("separate-var");
}

/// The findings triage wrote beside the timeline's directory become flagged events on their own.
#[test]
fn triage_findings_beside_the_output_become_events() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("web3");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let case = d.path().join("CASE-1");
    std::fs::create_dir_all(case.join("triage-web3")).unwrap();
    std::fs::write(
        case.join("triage-web3/findings.json"),
        r#"{"schema":"rescue.triage/1","findings":[{"id":"x","severity":"high","category":"ssh",
            "path":"/root/.ssh/authorized_keys","why":"key not in any package","root":"the directory",
            "in_window":true,"evidence":{"mtime":"2026-11-30T02:14:07.500000000Z","ctime":null}}]}"#,
    )
    .unwrap();
    let out = case.join("timeline-web3");
    let o = rescue(&["timeline", s(&root), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("triage-web3/findings.json"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains(
            "first suspicious: 2026-11-30T02:14:07.500000+00:00 triage (key not in any package)"
        ),
        "{}",
        text(&o)
    );
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["source"], "triage");
    assert_eq!(evs[0]["timestamp_desc"], "Content Modification Time");
    assert_timesketch(&out);
}

/// The mactime rows with a symlink's ` -> target` cut from the name: fls writes the target of a
/// symlink whose target lies in its inode but not of one whose target lies in a block.
fn without_targets(rows: &BTreeSet<String>) -> BTreeSet<String> {
    rows.iter()
        .map(|r| match r.find(" -> ") {
            Some(i) if r.ends_with('"') => format!("{}\"", &r[..i]),
            _ => r.clone(),
        })
        .collect()
}

/// One filesystem made by `mke2fs ARGS -d TREE`, changed by `then` (e2fsck, debugfs), whose body
/// file must come from the ext reader, give mactime the same rows as `fls -r -m /` (less the deleted
/// names fls finds in directory slack and its virtual `$OrphanFiles`, which we do not list), and be
/// line for line the body file of the same filesystem mounted `ro,noload` and walked.
fn ext_reader_case(
    d: &Path,
    label: &str,
    mkfs: &[&str],
    tree: &Path,
    then: &[&[&str]],
    fls_reads_crtime: bool,
) -> (String, BTreeSet<String>) {
    let img = d.join(format!("{label}.img"));
    run(Command::new("mke2fs")
        .args(["-q", "-F"])
        .args(mkfs)
        .arg("-d")
        .arg(tree)
        .arg(&img)
        .arg("64M"));
    for cmd in then {
        let o = Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(&img)
            .output()
            .unwrap();
        // e2fsck exits 1 when it changed the filesystem (here: directories re-indexed).
        assert!(
            o.status.code().is_some_and(|c| c <= 1),
            "{label}: {cmd:?}: {}",
            text(&o)
        );
    }
    let out = d.join(format!("out-{label}"));
    let o = rescue(&["timeline", s(&img), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{label}: {}", text(&o));
    assert!(
        text(&o).contains("listed by the ext reader\n"),
        "{label}: {}",
        text(&o)
    );
    let body = out.join("bodyfile.txt");
    let (ours, err) = mactime_rows(&body);
    assert!(err.trim().is_empty(), "{label}: mactime complains: {err}");

    let fls = run(Command::new("fls").args(["-r", "-m", "/"]).arg(&img));
    let deleted: String = fls
        .lines()
        .filter(|l| l.contains("(deleted"))
        .map(|l| format!("{l}\n"))
        .collect();
    // fls also reads the index records of an htree directory (`e2fsck -D` writes them into the
    // slack of its index blocks) as names, which neither the kernel nor we list. Most come out of
    // no type (`-/`), but a record's hash bytes are read as the name's length and type: of 30
    // filesystems made as below (each with its own hash seed), 12 had such names in /big and 2 had
    // one typed as a symlink (`l/`); a CI run once met a "socket" `/big/^` on inode 7 (the number
    // of a leaf block). The only htree directory in these trees is /big, whose names the test
    // made, so fls's names there count only if they are among them.
    let htree: BTreeSet<String> = std::fs::read_dir(tree.join("big"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let real = |l: &str| {
        l.split('|')
            .nth(1)
            .and_then(|name| name.strip_prefix("/big/"))
            .is_none_or(|name| htree.contains(name))
    };
    let kept: String = fls
        .lines()
        .filter(|l| {
            !l.contains("$OrphanFiles") && !l.contains("(deleted") && !l.contains("|-/") && real(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let fls_body = d.join(format!("fls-{label}.body"));
    std::fs::write(&fls_body, kept).unwrap();
    let (theirs, _) = mactime_rows(&fls_body);
    // Sleuth Kit reads birth times only where it takes the filesystem for ext4; the kernel (and so
    // the mounted walk and we) reports them from any inode large enough to hold one.
    let ours_cmp = if fls_reads_crtime {
        ours.clone()
    } else {
        let no_crtime: String = std::fs::read_to_string(&body)
            .unwrap()
            .lines()
            .map(|l| format!("{}|0\n", &l[..l.rfind('|').unwrap()]))
            .collect();
        let p = d.join(format!("ours-{label}-no-crtime.body"));
        std::fs::write(&p, no_crtime).unwrap();
        mactime_rows(&p).0
    };
    let (ours_n, theirs_n) = (without_targets(&ours_cmp), without_targets(&theirs));
    assert_eq!(
        ours_n,
        theirs_n,
        "{label}: mactime rows differ\nonly ours: {:#?}\nonly fls: {:#?}",
        ours_n.difference(&theirs_n).take(20).collect::<Vec<_>>(),
        theirs_n.difference(&ours_n).take(20).collect::<Vec<_>>()
    );

    // The same filesystem mounted and walked gives the same lines (same escaping, link targets).
    let mnt = d.join(format!("mnt-{label}"));
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "ro,noload,loop"])
        .arg(&img)
        .arg(&mnt));
    let walked = d.join(format!("walked-{label}"));
    let o = rescue(&["timeline", s(&mnt), "--out", s(&walked), "--tz", "UTC"]);
    run(Command::new("umount").arg(&mnt));
    assert!(o.status.success(), "{label}: {}", text(&o));
    let sorted = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let (a, b) = (sorted(&body), sorted(&walked.join("bodyfile.txt")));
    assert_eq!(
        a.len(),
        b.len(),
        "{label}: as many lines as the mounted walk"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{label}: ext reader vs mounted walk");
    }
    (deleted, ours)
}

/// The ext reader (issue 14: body file without mounting) on the layouts it must read, each checked
/// against Sleuth Kit's fls through mactime and against the mounted walk: ext4 with 64-bit group
/// descriptors and flex_bg, an htree directory of 12 000 names (`e2fsck -D` indexes it), a file of
/// uid 70000/gid 80000, birth times, and a file deleted by debugfs (fls lists it as deleted from the
/// directory's slack; the body file, like the mounted walk, lists only live names); ext4 with inline
/// data and meta_bg on 1 KiB blocks; ext3 and ext2 (block maps, 128-byte inodes without birth times).
#[test]
fn the_ext_reader_body_file_matches_fls_and_the_mounted_walk() {
    if !need_root("the ext reader check (loop mounts)")
        || !have("fls", "the ext reader check")
        || !have("mactime", "the ext reader check")
        || !have("mke2fs", "the ext reader check")
        || !have("debugfs", "the ext reader check")
        || !have("e2fsck", "the ext reader check")
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    for dir in ["etc/ssh", "home/eve", "usr/bin", "tmp", "var/log", "big"] {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "extbox\n").unwrap();
    std::fs::write(tree.join("etc/gone"), "deleted later\n").unwrap();
    std::fs::write(tree.join("usr/bin/tool"), vec![0x7f; 70_000]).unwrap();
    std::fs::write(tree.join("home/eve/notes"), "high ids").unwrap();
    std::fs::write(tree.join("tmp/new\nline|%"), "odd").unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", tree.join("etc/short")).unwrap();
    std::os::unix::fs::symlink("/".to_owned() + &"t".repeat(120), tree.join("etc/long")).unwrap();
    std::os::unix::fs::chown(tree.join("home/eve/notes"), Some(70_000), Some(80_000)).unwrap();
    run(Command::new("touch")
        .args(["-d", "2021-06-07 08:09:10Z"])
        .arg(tree.join("usr/bin/tool")));
    let small = d.path().join("small");
    run(Command::new("cp").arg("-a").arg(&tree).arg(&small));
    for i in 0..12_000 {
        std::fs::write(tree.join(format!("big/file-{i:05}")), b"").unwrap();
    }

    let (deleted, rows) = ext_reader_case(
        d.path(),
        "ext4",
        &["-t", "ext4", "-I", "256", "-O", "64bit,flex_bg"],
        &tree,
        &[
            &["e2fsck", "-fyD"],
            &["debugfs", "-w", "-R", "rm /etc/gone"],
        ],
        true,
    );
    assert!(
        deleted.contains("/etc/gone (deleted)"),
        "fls lists the deleted file: {deleted}"
    );
    assert!(!rows.iter().any(|r| r.contains("/etc/gone")), "we do not");
    let big: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.contains("\"/big/file-"))
        .filter_map(|r| r.rsplit(',').next())
        .collect();
    assert_eq!(big.len(), 12_000, "every name of the htree directory");
    assert!(
        rows.iter()
            .any(|r| r.contains(",70000,80000,") && r.ends_with("\"/home/eve/notes\"")),
        "high uid and gid bits"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("2021-06-07T08:09:10Z,70000,m") && r.contains("/usr/bin/tool")),
        "{rows:#?}"
    );
    ext_reader_case(
        d.path(),
        "inline",
        &[
            "-t",
            "ext4",
            "-b",
            "1024",
            "-I",
            "256",
            "-O",
            "inline_data,meta_bg,^resize_inode",
        ],
        &small,
        &[],
        true,
    );
    ext_reader_case(d.path(), "ext3", &["-t", "ext3"], &small, &[], false);
    let (_, ext2) = ext_reader_case(
        d.path(),
        "ext2",
        &["-t", "ext2", "-I", "128"],
        &small,
        &[],
        false,
    );
    assert!(
        ext2.iter()
            .filter(|r| r.split(',').nth(2).is_some_and(|m| m.ends_with('b')))
            .all(|r| r.starts_with("0000-00-00")),
        "no birth time on 128-byte inodes: {ext2:#?}"
    );
    mark("ext-reader");
}

/// Sets a file's modification time (the syslog-style parsers date the last line by it).
fn set_mtime(path: &Path, unix_seconds: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds))
        .unwrap();
}

/// Inside a case (`RESCUE_SYSTEM=1`), the timeline's summary lands in the case log as one `result`
/// entry: events per source, the span, the first suspicious event (a root SSH login, before the
/// account it then created) and the SHA-256 of each output, each the same as the written timeline says
/// and as `sha256sum` computes.
#[test]
fn inside_a_case_the_summary_goes_to_the_case_log() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("web9");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "web9\n").unwrap();
    let auth = root.join("var/log/auth.log");
    std::fs::write(
        &auth,
        "May  1 09:00:00 web9 sshd[100]: Failed password for invalid user admin from 198.51.100.7 port 4000 ssh2\n\
         May  1 10:15:30 web9 sshd[101]: Accepted password for root from 203.0.113.9 port 4001 ssh2\n\
         May  1 10:16:00 web9 useradd[200]: new user: name=backdoor, UID=1001\n",
    )
    .unwrap();
    // 2024-05-02T00:00:00Z: the year of the May lines is 2024.
    set_mtime(&auth, 1_714_608_000);
    std::fs::write(
        root.join("var/log/dpkg.log"),
        "2024-04-30 08:00:00 install nginx:amd64 <none> 1.22.1-9\n\
         2024-05-03 12:00:00 remove nginx:amd64 1.22.1-9 <none>\n",
    )
    .unwrap();
    let state = d.path().join("state");
    let in_case = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rescue"))
            .args(args)
            .env("RESCUE_SYSTEM", "1")
            .env("RESCUE_STATE_DIR", &state)
            .env_remove("RESCUE_CONSOLE")
            .env("COLUMNS", "1000")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let o = in_case(&["case", "new", "C-14", "--examiner", "T"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = d.path().join("timeline-web9");
    let o = in_case(&["timeline", s(&root), "--out", s(&out), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));

    let log = std::fs::read_to_string(state.join("case-log.jsonl")).unwrap();
    let command = format!("timeline {} --out {}", s(&root), s(&out));
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "result" && e["command"] == command.as_str())
        .collect();
    assert_eq!(entries.len(), 1, "one result entry for the run:\n{log}");
    let detail = &entries[0]["detail"];
    assert_eq!(detail["events"], 5, "{detail}");
    assert_eq!(
        detail["per_source"],
        serde_json::json!({"auth.log": 3, "dpkg": 2}),
        "{detail}"
    );
    assert_eq!(detail["first"], "2024-04-30T08:00:00+00:00", "{detail}");
    assert_eq!(detail["last"], "2024-05-03T12:00:00+00:00", "{detail}");
    assert_eq!(detail["suspicious"], 2, "{detail}");
    assert_eq!(
        detail["first_suspicious"],
        serde_json::json!({
            "datetime": "2024-05-01T10:15:30+00:00",
            "source": "auth.log",
            "path": "/var/log/auth.log",
            "message": "sshd: Accepted password for root from 203.0.113.9 port 4001 ssh2",
            "why": "root logged in over SSH",
        }),
        "{detail}"
    );
    assert_eq!(detail["unparsed"], 0, "{detail}");
    assert_eq!(detail["zone"]["name"], "UTC", "{detail}");
    assert_eq!(detail["out"], s(&out), "{detail}");

    // The summary is the timeline's own: counts per source, first and last line, as written.
    let evs = events(&out);
    let mut per_source = serde_json::Map::new();
    for e in &evs {
        let n = per_source
            .entry(e["source"].as_str().unwrap())
            .or_insert(serde_json::json!(0));
        *n = serde_json::json!(n.as_u64().unwrap() + 1);
    }
    assert_eq!(detail["per_source"], serde_json::Value::Object(per_source));
    assert_eq!(detail["first"], evs[0]["datetime"]);
    assert_eq!(detail["last"], evs[evs.len() - 1]["datetime"]);
    // Each output's hash in the case log is the one sha256sum computes for the file.
    let sums = detail["sha256"].as_object().unwrap();
    for f in ["timeline.jsonl", "timeline.csv", "bodyfile.txt"] {
        let line = run(Command::new("sha256sum").arg(out.join(f)));
        assert_eq!(
            sums[f].as_str(),
            line.split_whitespace().next(),
            "{f} in the case log: {detail}"
        );
    }
    // Outside a case the same run writes nothing to a case log.
    let before = std::fs::read(state.join("case-log.jsonl")).unwrap();
    let o = rescue(&[
        "timeline",
        s(&root),
        "--out",
        s(&d.path().join("elsewhere")),
        "--tz",
        "UTC",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(state.join("case-log.jsonl")).unwrap(), before);
}

/// yum.log lines carry no year and no zone: the zone is the one given, the year that of the file's
/// mtime for the last line, one less before each New Year in the file; a last line in a month after
/// the mtime's month was written the year before. Every value of each event as a user reads it.
#[test]
fn yum_log_events_carry_their_inferred_year_zone_and_package() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rocky");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "db3\n").unwrap();
    let yum = root.join("var/log/yum.log");
    std::fs::write(
        &yum,
        "Dec 30 23:10:01 Installed: nmap-2:7.92-1.el8.x86_64\n\
         Dec 31 08:00:00 Updated: openssl-libs-1:1.1.1k-9.el8.x86_64\n\
         not a yum line\n\
         Jan 02 03:04:05 Erased: telnet-1:0.17-76.el8.x86_64\n",
    )
    .unwrap();
    // 2025-01-10T12:00:00Z: the January line is 2025, the December lines before it 2024.
    set_mtime(&yum, 1_736_510_400);
    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&root), "--out", s(&out), "--tz", "+02:00"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 unparsed lines"), "{}", text(&o));
    let evs = events(&out);
    let got: Vec<(&str, i64, &str)> = evs
        .iter()
        .map(|e| {
            (
                e["datetime"].as_str().unwrap(),
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap(),
            )
        })
        .collect();
    // Local +02:00 times, two hours earlier in UTC.
    assert_eq!(
        got,
        [
            (
                "2024-12-30T21:10:01+00:00",
                1_735_593_001_000_000,
                "Installed: nmap-2:7.92-1.el8.x86_64"
            ),
            (
                "2024-12-31T06:00:00+00:00",
                1_735_624_800_000_000,
                "Updated: openssl-libs-1:1.1.1k-9.el8.x86_64"
            ),
            (
                "2025-01-02T01:04:05+00:00",
                1_735_779_845_000_000,
                "Erased: telnet-1:0.17-76.el8.x86_64"
            ),
        ]
    );
    for e in &evs {
        assert_eq!(e["source"], "yum", "{e}");
        assert_eq!(e["path"], "/var/log/yum.log", "{e}");
        assert_eq!(e["timestamp_desc"], "Package Change", "{e}");
        // yum.log names no host: the examined system's hostname.
        assert_eq!(e["host"], "db3", "{e}");
        assert_eq!(e["local_time"], "+02:00", "{e}");
        assert_eq!(
            e["year_inferred"], "from the file's mtime 2025-01-10",
            "{e}"
        );
        assert!(e.get("suspicious").is_none_or(|s| s.is_null()), "{e}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timeline-summary.json")).unwrap()).unwrap();
    let note = summary.to_string();
    assert!(
        note.contains("the last line dated by the file's mtime (2025-01-10T12:00:00+00:00), 1 year boundary in the file"),
        "{note}"
    );
    assert_timesketch(&out);

    // Last line in November, mtime in February: the November was the year before.
    std::fs::write(
        &yum,
        "Nov 20 08:00:00 Installed: socat-1.7.4.1-5.el9.x86_64\n",
    )
    .unwrap();
    set_mtime(&yum, 1_738_368_000); // 2025-02-01T00:00:00Z
    let out2 = d.path().join("out2");
    let o = rescue(&["timeline", s(&root), "--out", s(&out2), "--tz", "UTC"]);
    assert!(o.status.success(), "{}", text(&o));
    let evs = events(&out2);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["datetime"], "2024-11-20T08:00:00+00:00");
    assert_eq!(evs[0]["message"], "Installed: socat-1.7.4.1-5.el9.x86_64");
}

/// btmp records (written by sshd and login for failed attempts) are Failed Login events with the user,
/// terminal and remote host as `lastb -f` shows them, microseconds kept, none flagged (failed logins are
/// the Internet's background noise); the btmp made by `utmpdump -r`.
#[test]
fn btmp_events_match_lastb() {
    if !have("utmpdump", "the btmp check") || !have("lastb", "the btmp check") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    let dump = "\
[6] [01234] [    ] [admin   ] [ssh:notty   ] [198.51.100.7        ] [198.51.100.7   ] [2023-11-14T22:13:20,250000+00:00]
[6] [01240] [    ] [root    ] [ssh:notty   ] [203.0.113.50        ] [203.0.113.50   ] [2023-11-14T23:01:02,000000+00:00]
[6] [01250] [tty1] [oracle  ] [tty1        ] [console             ] [0.0.0.0        ] [2023-11-15T01:00:00,999999+00:00]
";
    let btmp = root.join("var/log/btmp");
    utmpdump_reverse(dump, &btmp);
    let (lastb, theirs) = last_rows("lastb", &btmp);
    assert_eq!(theirs.len(), 3, "{lastb}");

    let out = d.path().join("out");
    let o = rescue(&["timeline", s(&root), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let evs = events(&out);
    assert_eq!(evs.len(), 3, "{evs:?}");
    let ours: BTreeSet<LastRow> = evs.iter().map(last_row).collect();
    assert_eq!(ours, theirs, "lastb -f says:\n{lastb}");
    let got: Vec<(i64, &str, i64)> = evs
        .iter()
        .map(|e| {
            (
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap(),
                e["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                1_700_000_000_250_000,
                "failed login: admin on ssh:notty from 198.51.100.7",
                1234
            ),
            (
                1_700_002_862_000_000,
                "failed login: root on ssh:notty from 203.0.113.50",
                1240
            ),
            (
                1_700_010_000_999_999,
                "failed login: oracle on tty1 from console",
                1250
            ),
        ]
    );
    for e in &evs {
        assert_eq!(e["source"], "btmp", "{e}");
        assert_eq!(e["path"], "/var/log/btmp", "{e}");
        assert_eq!(e["timestamp_desc"], "Failed Login", "{e}");
        assert!(e.get("suspicious").is_none_or(|s| s.is_null()), "{e}");
    }
    assert!(
        text(&o).contains("first suspicious: none flagged"),
        "{}",
        text(&o)
    );
    assert_timesketch(&out);
    mark("lastb");
}
