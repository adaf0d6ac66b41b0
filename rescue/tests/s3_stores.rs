//! Issue 17 on two stores no one here wrote: s3s-fs and moto's server (both started per test on a
//! free loopback port, waited for on their own "listening" lines, see `common/s3.rs`).
//!
//! - **Kill at every moment**: `rescue acquire --out s3://…` is SIGKILLed at chosen moments — before
//!   the state is first stored, after the store took the prefix claim, between parts and the state
//!   write, during CompleteMultipartUpload, after a Complete the state did not record, before the
//!   manifest, before the state is removed. The moment is an event of the scripted proxy between
//!   `rescue` and the store (the request it holds), never a timer. Then the same command with
//!   `--resume` must finish with the same objects, part hashes and stream hashes as an uninterrupted
//!   run, leave no multipart upload behind, and delete nothing that was complete (same bytes, and on
//!   s3s-fs the same file).
//! - **moto as a second store**: raw, zstd + split, `verify s3://` catching a flipped byte, and
//!   temporary credentials (a session token, signed).
//!
//! Objects are checked with `sha256sum -c SHA256SUMS` and `zstd -d`; on moto they are downloaded by
//! moto's own boto3 as well. Gated: each test leaves a marker (`RESCUE_TEST_MARKERS`) that `cargo xtask
//! test` requires.

#[path = "common/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use s3::{ACCESS, Act, Head, Kind, Proxy, SECRET, Server};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rescue");
const TIMEOUT: Duration = Duration::from_secs(300);
const MIB: usize = 1 << 20;

/// Runs `rescue` to the end; exit code (None: killed by a signal) and everything it said.
fn rescue(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = s3::spawn_rescue(BIN, endpoint, args, env, dir.path(), "rescue");
    let status = s3::wait_exit(child, TIMEOUT, &format!("rescue {args:?}"));
    (status.code(), said(dir.path(), "rescue", status))
}

fn said(dir: &Path, name: &str, status: std::process::ExitStatus) -> String {
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
    format!(
        "status {status:?}\n--- stdout\n{}--- stderr\n{}",
        read("out"),
        read("err")
    )
}

/// Incompressible-looking data with zero stripes (so zstd has something to do).
fn make_source(dir: &Path, size: usize) -> (std::path::PathBuf, Vec<u8>) {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        if (i * 8 / MIB) % 5 == 3 {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let p = dir.join("source.img");
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn client(server: &Server) -> rescue::s3::client::Client {
    use rescue::s3::{Store, StoreConfig};
    Store::new(StoreConfig {
        endpoint: server.endpoint(),
        region: "us-east-1".to_owned(),
        bucket: "evidence".to_owned(),
        credentials: rescue::s3::sigv4::Credentials::new(ACCESS, SECRET),
        trust: rescue::s3::http::Trust::System,
        timeout: Duration::from_secs(60),
        local_clock_error: 0,
    })
    .unwrap()
    .client()
}

/// Every object under `prefix/`, by name.
fn objects(server: &Server, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut c = client(server);
    c.list_objects(&format!("{prefix}/"))
        .unwrap()
        .into_iter()
        .map(|(key, _)| {
            let name = key.rsplit('/').next().unwrap().to_owned();
            let bytes = c.get_object(&key, None).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Downloads `prefix/` into a directory: with moto's boto3 on moto (a client someone else wrote),
/// else with ours; then `sha256sum -c SHA256SUMS` there.
fn download_and_check_sums(server: &Server, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    match &server.python {
        Some(python) => {
            let script = r#"
import os, sys, boto3
endpoint, prefix, out = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="x", aws_secret_access_key="x")
for o in s3.list_objects_v2(Bucket="evidence", Prefix=prefix + "/").get("Contents", []):
    s3.download_file("evidence", o["Key"], os.path.join(out, o["Key"].rsplit("/", 1)[1]))
print(" ".join(u["Key"] + ":" + u["UploadId"] for u in s3.list_multipart_uploads(Bucket="evidence").get("Uploads", [])))
"#;
            let o = Command::new(python)
                .args(["-c", script, &server.endpoint(), prefix])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "boto3: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                "",
                "moto still holds multipart uploads (downloading {prefix})"
            );
        }
        None => {
            for (name, bytes) in objects(server, prefix) {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
        }
    }
    let o = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sha256sum -c: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

/// The image objects (`image.raw…`), concatenated in name order, decompressed when zstd.
fn image_stream(dir: &Path) -> Vec<u8> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("image.raw"))
        .collect();
    names.sort();
    let mut joined = Vec::new();
    for n in &names {
        joined.extend(std::fs::read(dir.join(n)).unwrap());
    }
    if names.iter().any(|n| n.contains(".zst")) {
        let cat = dir.join("joined.zst");
        std::fs::write(&cat, &joined).unwrap();
        let o = Command::new("zstd").arg("-dc").arg(&cat).output().unwrap();
        assert!(o.status.success(), "zstd -d");
        o.stdout
    } else {
        joined
    }
}

fn manifest(server: &Server, prefix: &str) -> Value {
    let bytes = client(server)
        .get_object(&format!("{prefix}/manifest.json"), None)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The image outputs (name, size, SHA-256) and the parts (object, number, SHA-256).
fn shape(m: &Value) -> (Vec<Value>, Vec<(String, u64, String)>) {
    let images = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["file"] != "unreadable.map")
        .cloned()
        .collect();
    let parts = m["remote"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_owned(),
                p["number"].as_u64().unwrap(),
                p["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (images, parts)
}

/// Image objects as they stand (bytes, and the file's inode on s3s-fs: a deleted and rewritten
/// object gets a new one).
fn complete_images(server: &Server, prefix: &str) -> BTreeMap<String, (Vec<u8>, Option<u64>)> {
    use std::os::unix::fs::MetadataExt;
    objects(server, prefix)
        .into_iter()
        .filter(|(n, _)| n.starts_with("image.raw"))
        .map(|(n, bytes)| {
            let ino = server.root.as_ref().map(|r| {
                std::fs::metadata(r.join("evidence").join(prefix).join(&n))
                    .unwrap()
                    .ino()
            });
            (n, (bytes, ino))
        })
        .collect()
}

type Script = Box<dyn FnMut(&Head) -> Act + Send>;

/// The moments to kill at: a name, and the proxy script that holds the request (or its answer)
/// that marks the moment.
fn kill_points() -> Vec<(&'static str, Script)> {
    fn once(mut at: impl FnMut(&Head) -> Option<Act> + Send + 'static) -> Script {
        let mut fired = false;
        Box::new(move |h| match at(h) {
            Some(act) if !fired => {
                fired = true;
                act
            }
            _ => Act::Forward,
        })
    }
    vec![
        (
            "before the state is first stored",
            once(|h| h.is_claim().then_some(Act::Hold)),
        ),
        (
            "after the store took the prefix claim, its answer not yet read",
            once(|h| h.is_claim().then_some(Act::HoldAnswer)),
        ),
        (
            "after CreateMultipartUpload, before the state names the upload",
            {
                let mut creates = 0;
                once(move |h| {
                    creates += usize::from(h.is_create());
                    (creates == 2 && h.is_state_write()).then_some(Act::Hold)
                })
            },
        ),
        ("between parts and the state write", {
            // The state write that follows parts, not the one that names a new upload.
            let (mut parts, mut after_create) = (0, false);
            once(move |h| {
                if h.is_part() {
                    parts += 1;
                } else if h.is_create() {
                    after_create = true;
                } else if h.is_state_write() {
                    if std::mem::take(&mut after_create) {
                        return None;
                    }
                    return (parts >= 3).then_some(Act::Hold);
                }
                None
            })
        }),
        (
            "during the first CompleteMultipartUpload",
            once(|h| h.is_complete().then_some(Act::Hold)),
        ),
        ("after the second Complete, before the state records it", {
            let mut completes = 0;
            once(move |h| {
                completes += usize::from(h.is_complete());
                (h.is_complete() && completes == 2).then_some(Act::HoldAnswer)
            })
        }),
        (
            "with every object complete, before the manifest",
            once(|h| h.is_put_of("manifest.json").then_some(Act::Hold)),
        ),
        (
            "before the state is removed",
            once(|h| {
                (h.method == "DELETE" && h.path().ends_with("/.rescue-upload.json"))
                    .then_some(Act::Hold)
            }),
        ),
    ]
}

/// Kills an upload (zstd, segments of 16 MiB: three objects) at every moment of [`kill_points`],
/// resumes each with the same command and `--resume`, and compares with an uninterrupted upload.
fn kill_matrix(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();
    let opts = ["--format", "zstd", "--split", "16M"];
    let acquire = |prefix: &str, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = ["acquire", src_s, "--out"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(format!("s3://evidence/{prefix}"));
        a.extend(opts.iter().map(|s| s.to_string()));
        if resume {
            a.extend(["--resume".to_owned(), "--json".to_owned()]);
        }
        a
    };

    let clean_args = acquire("clean", false);
    let clean_args: Vec<&str> = clean_args.iter().map(String::as_str).collect();
    let (code, text) = rescue(&server.endpoint(), &clean_args, &[]);
    assert_eq!(code, Some(0), "uninterrupted run: {text}");
    let clean = manifest(server, "clean");
    let clean_objects = objects(server, "clean");
    assert_eq!(
        image_stream(download_and_check_sums(server, "clean").path()),
        data
    );

    for (i, (moment, script)) in kill_points().into_iter().enumerate() {
        let prefix = format!("kill-{i}");
        let proxy = Proxy::start(server.port, script);
        let args = acquire(&prefix, false);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = tempfile::tempdir().unwrap();
        let mut child = s3::spawn_rescue(BIN, &proxy.endpoint(), &args, &[], run.path(), "killed");
        let event = proxy.wait_event();
        assert!(event.starts_with("held"), "{moment}: {event}");
        child.kill().unwrap();
        let status = s3::wait_exit(child, TIMEOUT, moment);
        let text = said(run.path(), "killed", status);
        assert_eq!(status.code(), None, "{moment}: not killed: {text}");
        let before = complete_images(server, &prefix);

        let args = acquire(&prefix, true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = rescue(&server.endpoint(), &args, &[]);
        assert_eq!(code, Some(0), "{moment} ({event}): the resume: {text}");

        // The same objects, parts and stream hashes as the uninterrupted run.
        let m = manifest(server, &prefix);
        assert_eq!(m["hashes"], clean["hashes"], "{moment}");
        assert_eq!(shape(&m), shape(&clean), "{moment}");
        let now = objects(server, &prefix);
        for (name, bytes) in clean_objects
            .iter()
            .filter(|(n, _)| n.starts_with("image."))
        {
            assert!(
                now.get(name) == Some(bytes),
                "{moment}: {name} differs from the uninterrupted run's"
            );
        }
        assert!(
            !now.contains_key(".rescue-upload.json"),
            "{moment}: state left"
        );
        let dir = download_and_check_sums(server, &prefix);
        assert!(image_stream(dir.path()) == data, "{moment}: not the source");
        // Nothing that was complete was deleted (or rewritten).
        let after = complete_images(server, &prefix);
        for (name, held) in &before {
            assert!(
                after.get(name) == Some(held),
                "{moment}: the complete {name} was deleted or rewritten"
            );
        }
        if moment.starts_with("after CreateMultipartUpload") {
            // The upload the killed run started is aborted where the store lists uploads; where it
            // cannot (s3s-fs), the log says it was not looked for.
            let log = String::from_utf8_lossy(&now["acquisition.log"]).into_owned();
            let said = if server.kind == Kind::S3sFs {
                "not looked for: a multipart upload the interrupted run may have started"
            } else {
                "aborted multipart upload"
            };
            assert!(log.contains(said), "{moment}: no {said:?} in {log}");
        }
        if server.kind == Kind::S3sFs {
            let parts: Vec<String> = server
                .files()
                .into_iter()
                .filter(|f| f.contains(".upload_id-"))
                .collect();
            assert!(parts.is_empty(), "{moment}: multipart leftovers {parts:?}");
        }
        let v = rescue(
            &server.endpoint(),
            &["verify", &format!("s3://evidence/{prefix}")],
            &[],
        );
        assert_eq!(v.0, Some(0), "{moment}: verify: {}", v.1);
    }
}

#[test]
fn every_kill_point_resumes_to_the_same_objects_on_s3s_fs() {
    let Some(server) = Server::s3s_fs("evidence") else {
        return;
    };
    kill_matrix(&server);
    s3::ran("kill-matrix-s3s-fs");
}

#[test]
fn every_kill_point_resumes_to_the_same_objects_on_moto() {
    let Some(server) = Server::moto("evidence") else {
        return;
    };
    kill_matrix(&server);
    s3::ran("kill-matrix-moto");
}

/// moto's boto3 (a client someone else wrote) against moto's server: `script` gets the endpoint as
/// `sys.argv[1]` and the extra arguments after it; returns what it printed.
fn boto3(server: &Server, script: &str, args: &[&str]) -> String {
    let o = Command::new(server.python.as_ref().unwrap())
        .args(["-c", script, &server.endpoint()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn moto_holds_raw_zstd_split_resumed_and_verified_uploads() {
    let Some(server) = Server::moto("evidence") else {
        return;
    };
    let e = server.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();

    // Raw: the object is the source; verify s3:// agrees.
    let (code, text) = rescue(&e, &["acquire", src_s, "--out", "s3://evidence/raw"], &[]);
    assert_eq!(code, Some(0), "{text}");
    let dir = download_and_check_sums(&server, "raw");
    assert!(image_stream(dir.path()) == data, "raw: not the source");
    let (code, text) = rescue(&e, &["verify", "s3://evidence/raw"], &[]);
    assert_eq!(code, Some(0), "{text}");

    // One flipped byte in the stored object: verify s3:// fails and names where.
    let mut c = client(&server);
    let mut bytes = c.get_object("raw/image.raw", None).unwrap();
    bytes[20 * MIB + 5] ^= 0x01;
    c.put_object("raw/image.raw", &bytes, false).unwrap();
    let (code, text) = rescue(&e, &["verify", "s3://evidence/raw", "--json"], &[]);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("\"first_bad_part\":3"), "{text}");

    // zstd + split: the segments concatenate to a zstd stream of the source (zstd -d says so).
    let (code, text) = rescue(
        &e,
        &[
            "acquire",
            src_s,
            "--out",
            "s3://evidence/zst",
            "--format",
            "zstd",
            "--split",
            "12M",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{text}");
    let dir = download_and_check_sums(&server, "zst");
    assert!(
        image_stream(dir.path()) == data,
        "zstd+split: not the source"
    );
    let (code, text) = rescue(&e, &["verify", "s3://evidence/zst"], &[]);
    assert_eq!(code, Some(0), "{text}");

    // kill -9 once 16 MiB are stored, then --resume: the parts moto holds are checked and kept.
    let (code, text) = rescue(
        &e,
        &["acquire", src_s, "--out", "s3://evidence/killed"],
        &[("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216")],
    );
    assert_eq!(code, None, "not killed: {text}");
    let (code, text) = rescue(
        &e,
        &[
            "acquire",
            src_s,
            "--out",
            "s3://evidence/killed",
            "--resume",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{text}");
    let result: Value = serde_json::from_str(
        text.lines()
            .rfind(|l| l.contains("\"reused_parts\""))
            .unwrap(),
    )
    .unwrap();
    assert!(result["reused_parts"].as_u64().unwrap() >= 2, "{text}");
    let dir = download_and_check_sums(&server, "killed");
    assert!(image_stream(dir.path()) == data, "resumed: not the source");
    s3::ran("moto-store");
}

/// Temporary credentials as organisations hand them out: moto checks every request after the
/// first four (the bucket, a role, its policy, AssumeRole) against its IAM and STS, so an upload with
/// the assumed role's key works only when the session token is sent and signed; without it, or
/// with another one, moto refuses.
#[test]
fn moto_accepts_temporary_credentials_only_with_their_session_token() {
    let Some(server) = Server::moto_with("evidence", &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")])
    else {
        return;
    };
    let creds = boto3(
        &server,
        r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x")
iam = boto3.client("iam", **kw)
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
iam.create_role(RoleName="responder", AssumeRolePolicyDocument=json.dumps(trust))
iam.put_role_policy(RoleName="responder", PolicyName="evidence", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
c = boto3.client("sts", **kw).assume_role(
    RoleArn="arn:aws:iam::123456789012:role/responder", RoleSessionName="ir")["Credentials"]
print(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
"#,
        &[],
    );
    let mut it = creds.split_whitespace();
    let (key, secret, token) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = make_source(tmp.path(), 20 * MIB);
    let src_s = src.to_str().unwrap();
    let e = server.endpoint();
    let with = |token: Option<&str>| -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", key.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
        ];
        if let Some(t) = token {
            env.push(("AWS_SESSION_TOKEN", t.to_owned()));
        }
        env
    };
    let run = |args: &[&str], env: &[(&'static str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        rescue(&e, args, &env)
    };
    // Without the token, or with another one: refused.
    let (code, text) = run(
        &["acquire", src_s, "--out", "s3://evidence/nosession"],
        &with(None),
    );
    assert_ne!(code, Some(0), "{text}");
    let wrong = format!("{token}x");
    let (code, text) = run(
        &["acquire", src_s, "--out", "s3://evidence/nosession"],
        &with(Some(&wrong)),
    );
    assert_ne!(code, Some(0), "{text}");
    // With it: the upload and its verification go through.
    let (code, text) = run(
        &["acquire", src_s, "--out", "s3://evidence/session"],
        &with(Some(token)),
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["verify", "s3://evidence/session"], &with(Some(token)));
    assert_eq!(code, Some(0), "{text}");
    let got = boto3(
        &server,
        r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  aws_session_token=sys.argv[4])
sys.stdout.write(s3.get_object(Bucket="evidence", Key="session/image.raw")["Body"].read().hex())
"#,
        &[key, secret, token],
    );
    assert!(got == hex(&data), "the object is not the source");
    s3::ran("moto-session-token");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
