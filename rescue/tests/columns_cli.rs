//! What `case`, `timeline` and `restore` draw fits the console through the real binary: at 80
//! columns (no terminal: the width a serial console falls back to) and at 40 (`COLUMNS=40`, a
//! narrow BMC console), with paths deep enough to need wrapping. Every word stays on the screen:
//! squeezing the whitespace out of the output gives back each value the test put in (a path a
//! responder may have to type again is broken only where it is wider than a line).

use std::path::Path;
use std::process::{Command, Output};

fn rescue(args: &[&str], columns: usize, state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(args)
        .env_remove("RESCUE_SYSTEM")
        .env_remove("RESCUE_CONSOLE")
        .env("COLUMNS", columns.to_string())
        .env("RESCUE_STATE_DIR", state)
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

/// A directory below `base` whose path is longer than a 40-column line, with words to wrap at.
fn deep(base: &Path, leaf: &str) -> std::path::PathBuf {
    let p = base
        .join("incident response")
        .join("db7 web front end")
        .join(leaf);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Every line of `o` fits `width`, and each of `whole` is in it once whitespace is squeezed out.
fn fits(o: &Output, width: usize, whole: &[&str], what: &str) {
    let t = text(o);
    assert!(o.status.success(), "{what} at {width}:\n{t}");
    let wide: Vec<&str> = t.lines().filter(|l| l.chars().count() > width).collect();
    assert!(
        wide.is_empty(),
        "{what}: lines wider than {width} columns: {wide:#?}\n{t}"
    );
    let squeezed: String = t.split_whitespace().collect();
    for w in whole {
        let w: String = w.split_whitespace().collect();
        assert!(
            squeezed.contains(&w),
            "{what} at {width}: {w:?} is lost:\n{t}"
        );
    }
}

#[test]
fn case_lines_fit_80_and_40_columns() {
    for width in [80, 40] {
        let d = tempfile::tempdir().unwrap();
        let state = deep(d.path(), "case state");
        let o = rescue(
            &[
                "case",
                "new",
                "IR-2026-0042",
                "--examiner",
                "J. Doe, incident response on call",
                "--notes",
                "rack 4, the database server behind the web front end",
                "--true-time",
                "2030-01-01 00:00:00",
            ],
            width,
            &state,
        );
        fits(
            &o,
            width,
            &["case IR-2026-0042 opened", "unlock DEVICE --confirm SERIAL"],
            "case new",
        );
        let o = rescue(&["case", "show"], width, &state);
        let log = state.join("case-log.jsonl");
        fits(
            &o,
            width,
            &["IR-2026-0042", "J. Doe, incident response on call", s(&log)],
            "case show",
        );
    }
}

#[test]
fn timeline_lines_fit_80_and_40_columns() {
    for width in [80, 40] {
        let d = tempfile::tempdir().unwrap();
        let root = deep(d.path(), "suspect root");
        std::fs::create_dir_all(root.join("var/log")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "db7\n").unwrap();
        std::fs::write(
            root.join("var/log/dpkg.log"),
            "2024-05-01 12:00:00 install netcat-openbsd:amd64 <none> 1.219-1\nnot dpkg\n",
        )
        .unwrap();
        let out = deep(d.path(), "timeline output").join("db7");
        let o = rescue(
            &["timeline", s(&root), "--out", s(&out), "--tz", "UTC"],
            width,
            d.path(),
        );
        fits(
            &o,
            width,
            &[s(&root), "1 unparsed lines kept in unparsed.jsonl"],
            "timeline",
        );
    }
}

#[test]
fn restore_lines_fit_80_and_40_columns() {
    for width in [80, 40] {
        let d = tempfile::tempdir().unwrap();
        let src = deep(d.path(), "backup of the web root");
        std::fs::create_dir_all(src.join("srv/www/shop/assets")).unwrap();
        std::fs::write(src.join("srv/www/shop/assets/logo.txt"), b"logo").unwrap();
        std::fs::create_dir_all(src.join("etc/cron.d")).unwrap();
        std::fs::write(
            src.join("etc/cron.d/nightly-report"),
            b"* * * * * root /tmp/x",
        )
        .unwrap();
        let dst = deep(d.path(), "new root");
        let report = deep(d.path(), "restore report");
        for dry in [true, false] {
            let mut args = vec!["restore", s(&src), s(&dst), "--report-dir", s(&report)];
            if dry {
                args.push("--dry-run");
            }
            let o = rescue(&args, width, d.path());
            let manifest = report.join("restore-manifest.json");
            fits(
                &o,
                width,
                &[
                    "HELD",
                    "etc/cron.d/nightly-report: cron entry",
                    if dry { "1 would-restore" } else { "1 restored" },
                    s(&manifest),
                ],
                if dry { "restore --dry-run" } else { "restore" },
            );
        }
    }
}
