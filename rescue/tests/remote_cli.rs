//! `rescue acquire --out s3://…` and `rescue verify s3://…` through the real binary against a real S3
//! server on the loopback: `s3s-fs` (checks SigV4 and request checksums), started per test on a free
//! port with its own root directory. Objects are also checked on the server's disk with independent
//! tools (`sha256sum`, `sha256sum -c SHA256SUMS`): s3s-fs stores `BUCKET/KEY` as plain files.
//!
//! Gate: the server binary comes from `RESCUE_S3S_FS`, `target/tools/bin/s3s-fs` or `~/.cargo/bin`;
//! without one the tests skip, unless `RESCUE_REQUIRE_S3S=1` (set by `cargo xtask test`, which installs
//! it) turns the skip into a failure.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rescue");
const TIMEOUT: Duration = Duration::from_secs(180);
const ACCESS: &str = "RESCUETESTKEY";
const SECRET: &str = "rescue-test-secret-0123456789";
const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) -> Output {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {line}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = s3::wait_exit(child, TIMEOUT, &line);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[path = "common/s3.rs"]
mod s3;

/// An s3s-fs server on 127.0.0.1 (`common/s3.rs`: waited for on its own "server is running" line),
/// killed on drop.
struct Store {
    port: u16,
    root: PathBuf,
    _server: s3::Server,
}

impl Store {
    fn start(bucket: &str) -> Option<Store> {
        let server = s3::Server::s3s_fs(bucket)?;
        Some(Store {
            port: server.port,
            root: server.root.clone().unwrap(),
            _server: server,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn rescue(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args)
            .args(["--endpoint", &self.endpoint()])
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }

    /// Every file under the store's root (objects and multipart leftovers), relative.
    fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.root, &self.root, &mut v);
        v.sort();
        v
    }
}

/// Deterministic, incompressible-looking test data with a zero stripe.
fn make_source(dir: &Path, size: usize) -> PathBuf {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        if (i * 8 / MIB) % 5 == 3 {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let p = dir.join("source.img");
    fs::write(&p, &data).unwrap();
    p
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tool_sha256(path: &Path) -> String {
    let o = run(Command::new("sha256sum").arg(path));
    assert!(o.status.success(), "sha256sum: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn manifest(store: &Store, prefix: &str) -> Value {
    let p = store
        .root
        .join("evidence")
        .join(prefix)
        .join("manifest.json");
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Checks the stored object equals the source and every recorded part hash holds.
fn check_stored(store: &Store, prefix: &str, src: &Path) -> Value {
    let dir = store.root.join("evidence").join(prefix);
    let object = dir.join("image.raw");
    let source = fs::read(src).unwrap();
    assert_eq!(
        fs::read(&object).unwrap(),
        source,
        "stored object differs from the source"
    );
    let m = manifest(store, prefix);
    assert_eq!(m["complete"], true);
    assert_eq!(m["hashes"]["sha256"].as_str().unwrap(), tool_sha256(src));
    let parts = m["remote"]["parts"].as_array().unwrap();
    let part_bytes = m["remote"]["part_bytes"].as_u64().unwrap();
    assert!(part_bytes >= 8 * MIB as u64);
    assert_eq!(parts.len(), source.len().div_ceil(part_bytes as usize));
    for p in parts {
        let (o, n) = (
            p["offset"].as_u64().unwrap() as usize,
            p["size_bytes"].as_u64().unwrap() as usize,
        );
        assert_eq!(p["sha256"].as_str().unwrap(), sha256(&source[o..o + n]));
    }
    let o = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir));
    assert!(o.status.success(), "sha256sum -c: {}", text(&o));
    assert!(
        !dir.join(".rescue-upload.json").exists(),
        "upload state left behind"
    );
    m
}

#[test]
fn acquire_to_the_store_then_verify_and_detect_damage() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 20 * MIB + 4096);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/CASE-1/host-a/disk-1";
    let o = store.rescue(
        &[
            "acquire",
            src_s,
            "--out",
            url,
            "--hash",
            "sha256,md5",
            "--window",
            "4M",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = check_stored(&store, "CASE-1/host-a/disk-1", &src);
    // Hash windows as for a local acquisition: 4 MiB windows tiling the source, the last short.
    let source = fs::read(&src).unwrap();
    let windows = m["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6);
    for w in windows {
        let (o, n) = (
            w["offset"].as_u64().unwrap() as usize,
            w["length"].as_u64().unwrap() as usize,
        );
        assert_eq!(w["sha256"].as_str().unwrap(), sha256(&source[o..o + n]));
    }
    assert_eq!(m["remote"]["parts"].as_array().unwrap().len(), 3);
    assert_eq!(m["remote"]["insecure"], false);
    let md5 = run(Command::new("md5sum").arg(&src));
    assert!(String::from_utf8_lossy(&md5.stdout).starts_with(m["hashes"]["md5"].as_str().unwrap()));
    let log = fs::read_to_string(
        store
            .root
            .join("evidence/CASE-1/host-a/disk-1/acquisition.log"),
    )
    .unwrap();
    assert!(log.contains("acquisition complete"), "{log}");
    assert!(
        !log.contains(SECRET) && !text(&o).contains(SECRET),
        "secret leaked"
    );

    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("verified"),
        "{}",
        text(&v)
    );

    // A second writer to the same prefix is refused and changes nothing.
    let before = store.files();
    let again = store.rescue(&["acquire", src_s, "--out", url], &[]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds objects"),
        "{}",
        text(&again)
    );
    assert_eq!(store.files(), before);

    // One flipped byte in the middle part: verify fails and names it.
    let object = store.root.join("evidence/CASE-1/host-a/disk-1/image.raw");
    let mut bytes = fs::read(&object).unwrap();
    bytes[9 * MIB] ^= 0xff;
    fs::write(&object, &bytes).unwrap();
    let bad = store.rescue(&["verify", url, "--json"], &[]);
    assert_eq!(bad.status.code(), Some(4), "{}", text(&bad));
    let out = String::from_utf8_lossy(&bad.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["report"]["first_bad_part"], 2, "{out}");
    // The flipped byte is at 9 MiB: the window at 8 MiB is named.
    assert!(out.contains("window 2 at offset 8388608"), "{out}");
}

#[test]
fn bad_credentials_missing_bucket_and_unreachable_store_are_refused_cleanly() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 9 * MIB);
    let src_s = src.to_str().unwrap();
    let before = store.files();

    let o = store.rescue(
        &["acquire", src_s, "--out", "s3://evidence/c/h/e"],
        &[("AWS_SECRET_ACCESS_KEY", "wrong-secret")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the credentials"), "{}", text(&o));
    assert!(!err.contains("wrong-secret"), "secret echoed");
    assert_eq!(
        store.files(),
        before,
        "something was written with bad credentials"
    );

    let o = store.rescue(&["acquire", src_s, "--out", "s3://nosuchbucket/x"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{}",
        text(&o)
    );

    // A credentials file that others can read works, with a warning.
    let creds = tmp.path().join("creds");
    fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = Command::new(BIN);
    c.args([
        "acquire",
        src_s,
        "--out",
        "s3://evidence",
        "--case",
        "C9",
        "--evidence-id",
        "e1",
    ])
    .args([
        "--endpoint",
        &store.endpoint(),
        "--credentials",
        creds.to_str().unwrap(),
    ])
    .env_remove("AWS_ACCESS_KEY_ID")
    .env_remove("AWS_SECRET_ACCESS_KEY");
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("readable by every user"),
        "{}",
        text(&o)
    );
    // Default prefix <case>/<host serial>/<evidence-id>/.
    let under: Vec<String> = store
        .files()
        .into_iter()
        .filter(|f| f.starts_with("evidence/C9/") && f.ends_with("/e1/manifest.json"))
        .collect();
    assert_eq!(under.len(), 1, "{:?}", store.files());

    // Nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Command::new(BIN);
    c.args(["acquire", src_s, "--out", "s3://evidence/u"])
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("connecting to 127.0.0.1"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_killed_upload_resumes_and_a_wrong_clock_is_corrected() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/CASE-2/host-b/disk-2";
    // SIGKILL once 16 MiB are stored (the test hook), with this machine's clock an hour slow.
    let o = store.rescue(
        &["acquire", src_s, "--out", url],
        &[
            ("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216"),
            ("RESCUE_TEST_CLOCK_ERROR_SECS", "-3600"),
        ],
    );
    assert_eq!(o.status.code(), None, "not killed: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("clock differs"),
        "{}",
        text(&o)
    );
    let dir = store.root.join("evidence/CASE-2/host-b/disk-2");
    assert!(dir.join(".rescue-upload.json").exists());
    assert!(!dir.join("image.raw").exists());

    let o = store.rescue(
        &["acquire", src_s, "--out", url, "--resume", "--json"],
        &[("RESCUE_TEST_CLOCK_ERROR_SECS", "-3600")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(last["reused_parts"].as_u64().unwrap() >= 2, "{out}");
    let m = check_stored(&store, "CASE-2/host-b/disk-2", &src);
    let offset = m["remote"]["clock_offset_secs"].as_i64().unwrap();
    assert!((3500..3700).contains(&offset), "offset {offset}");
    assert_eq!(m["resumes"].as_array().unwrap().len(), 1);
    // No multipart leftovers on the server.
    assert!(
        !store.files().iter().any(|f| f.contains(".upload_id-")),
        "{:?}",
        store.files()
    );
    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = run(Command::new("openssl").args(args).current_dir(dir));
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
}

/// A TLS front (socat with a certificate from a throw-away CA) for the store.
struct TlsFront {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl TlsFront {
    fn start(store: &Store, dir: &Path) -> TlsFront {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=rescue-test-ca",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("socat")
            // -d -d: it says "listening on" once the socket listens.
            .args(["-d", "-d"])
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                dir.join("leaf.pem").display(),
                dir.join("leaf.key").display()
            ))
            .arg(format!("TCP:127.0.0.1:{}", store.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting socat (package socat)");
        let err = child.stderr.take().unwrap();
        s3::wait_for_line(&mut child, err, "listening on", dir.join("socat.log"));
        TlsFront {
            child,
            port,
            ca: dir.join("ca.pem"),
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_with_a_custom_ca_without_it_and_insecure() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 9 * MIB);
    let src_s = src.to_str().unwrap();
    let tls = TlsFront::start(&store, tmp.path());
    let https = format!("https://127.0.0.1:{}", tls.port);
    let go = |url: &str, extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["acquire", src_s, "--out", url, "--endpoint", &https])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        run(&mut c)
    };

    // The CA is not in the system bundle: a clear TLS failure, nothing written.
    let before = store.files();
    let o = go("s3://evidence/tls/none", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("TLS with 127.0.0.1"),
        "{}",
        text(&o)
    );
    assert_eq!(store.files(), before);

    let o = go("s3://evidence/tls/ca", &["--ca", tls.ca.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = check_stored(&store, "tls/ca", &src);
    assert_eq!(m["remote"]["insecure"], false);
    assert_eq!(m["remote"]["ca_file"].as_str(), tls.ca.to_str());
    assert_eq!(m["remote"]["endpoint"].as_str(), Some(https.as_str()));

    let o = go("s3://evidence/tls/insecure", &["--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--insecure"),
        "{}",
        text(&o)
    );
    let m = check_stored(&store, "tls/insecure", &src);
    assert_eq!(m["remote"]["insecure"], true);
    let log = fs::read_to_string(store.root.join("evidence/tls/insecure/acquisition.log")).unwrap();
    assert!(log.contains("NOT checked"), "{log}");
}

#[test]
fn the_store_refuses_a_part_whose_checksum_does_not_match() {
    use rescue::s3::client::S3Error;
    use rescue::s3::{Store as S3, StoreConfig};
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let s3 = S3::new(StoreConfig {
        endpoint: store.endpoint(),
        region: "us-east-1".to_owned(),
        bucket: "evidence".to_owned(),
        credentials: rescue::s3::sigv4::Credentials::new(ACCESS, SECRET),
        trust: rescue::s3::http::Trust::System,
        timeout: Duration::from_secs(30),
        local_clock_error: 0,
    })
    .unwrap();
    let mut c = s3.client();
    let id = c.create_multipart("x/image.raw").unwrap();
    let data = vec![7u8; 1 << 20];
    let wrong: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(b"something else").into()
    };
    let err = c
        .upload_part("x/image.raw", &id, 1, &data, &wrong)
        .expect_err("a part with a wrong checksum was accepted");
    // Real S3 answers BadDigest / XAmzContentSHA256Mismatch (reported as RejectChecksum); s3s-fs
    // answers 500 after comparing the payload hash. Either way the part is not stored and the error
    // is not a network failure, so an acquisition aborts instead of waiting for --resume.
    assert!(
        matches!(err, S3Error::RejectChecksum { .. } | S3Error::Status { .. }) && !err.is_network(),
        "unexpected error: {err:?}"
    );
    c.abort_multipart("x/image.raw", &id).unwrap();
    assert!(
        !store.files().iter().any(|f| f.contains(".upload_id-")),
        "{:?}",
        store.files()
    );
}

/// A TCP relay in front of the store that can cut connections: once after `cut_after` client bytes,
/// and every connection while `down` is set (a network outage), which happens by itself once
/// `outage_after` client bytes went through.
struct FlakyLink {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyLink {
    fn start(upstream: u16, cut_after: u64, outage_after: u64) -> FlakyLink {
        use std::io::Write;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&down);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (sent, cut, d2) = (Arc::clone(&sent), Arc::clone(&cut), Arc::clone(&d));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if total > outage_after {
                            d2.store(true, Ordering::SeqCst);
                        }
                        if d2.load(Ordering::SeqCst)
                            || (total > cut_after && !cut.swap(true, Ordering::SeqCst))
                        {
                            break;
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_in.shutdown(std::net::Shutdown::Both);
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        FlakyLink { port, down }
    }
}

#[test]
fn a_dropped_connection_is_retried_and_an_outage_resumes() {
    use std::sync::atomic::Ordering;
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 30 * MIB);
    let src_s = src.to_str().unwrap();
    let link = FlakyLink::start(store.port, 12 * MIB as u64, u64::MAX);
    let endpoint = format!("http://127.0.0.1:{}", link.port);
    let go = |url: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["acquire", src_s, "--out", url, "--endpoint", &endpoint])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };
    // One connection cut in the middle of a part: the request is retried, the run completes.
    let o = go("s3://evidence/flaky/once", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    check_stored(&store, "flaky/once", &src);

    // Store unreachable before anything started: a plain error (nothing to resume).
    link.down.store(true, Ordering::SeqCst);
    let o = go("s3://evidence/flaky/outage", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    link.down.store(false, Ordering::SeqCst);

    // An outage mid-upload that outlasts the retries: exit 5, then --resume completes it.
    let link2 = FlakyLink::start(store.port, u64::MAX, 20 * MIB as u64);
    let endpoint2 = format!("http://127.0.0.1:{}", link2.port);
    let go2 = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["acquire", src_s, "--out", "s3://evidence/flaky/outage"])
            .args(["--endpoint", &endpoint2])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        run(&mut c)
    };
    let o = go2(&[]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--resume"),
        "{}",
        text(&o)
    );
    link2.down.store(false, Ordering::SeqCst);
    let o = {
        // The relay would go down again after another 20 MiB; give the resume a clean link.
        let mut c = Command::new(BIN);
        c.args([
            "acquire",
            src_s,
            "--out",
            "s3://evidence/flaky/outage",
            "--resume",
        ])
        .args(["--endpoint", &store.endpoint()])
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
        run(&mut c)
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    check_stored(&store, "flaky/outage", &src);
}

/// Our S3 client, for downloading what an acquisition stored.
fn client(store: &Store) -> rescue::s3::client::Client {
    use rescue::s3::{Store as S3, StoreConfig};
    S3::new(StoreConfig {
        endpoint: store.endpoint(),
        region: "us-east-1".to_owned(),
        bucket: "evidence".to_owned(),
        credentials: rescue::s3::sigv4::Credentials::new(ACCESS, SECRET),
        trust: rescue::s3::http::Trust::System,
        timeout: Duration::from_secs(30),
        local_clock_error: 0,
    })
    .unwrap()
    .client()
}

/// Downloads every object under `prefix` into a fresh directory, as an examiner would.
fn download(store: &Store, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(store);
    let objects = c.list_objects(&format!("{prefix}/")).unwrap();
    assert!(!objects.is_empty(), "nothing under {prefix}");
    for (key, _) in objects {
        let name = key.rsplit('/').next().unwrap();
        fs::write(dir.path().join(name), c.get_object(&key, None).unwrap()).unwrap();
    }
    dir
}

/// A local acquisition of the same source with the same options, to compare image files with.
fn local_acquisition(src: &Path, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acq");
    let o = run(Command::new(BIN)
        .args([
            "acquire",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    dir
}

fn assert_sums_and_local_verify(dir: &Path) {
    let o = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dir));
    assert!(o.status.success(), "sha256sum -c: {}", text(&o));
    let v = run(Command::new(BIN).arg("verify").arg(dir));
    assert_eq!(v.status.code(), Some(0), "local verify: {}", text(&v));
}

fn zstd_decompress(file: &Path) -> Vec<u8> {
    let o = run(Command::new("zstd").arg("-dc").arg(file));
    assert!(o.status.success(), "zstd -d: {}", text(&o));
    o.stdout
}

/// Every recorded part hash holds for the bytes of its object.
fn check_parts(m: &Value, dir: &Path) {
    let parts = m["remote"]["parts"].as_array().unwrap();
    for o in m["outputs"].as_array().unwrap() {
        let file = o["file"].as_str().unwrap();
        if file == "unreadable.map" {
            continue;
        }
        let bytes = fs::read(dir.join(file)).unwrap();
        let mine: Vec<&Value> = parts.iter().filter(|p| p["file"] == file).collect();
        assert!(!mine.is_empty(), "no parts listed for {file}");
        let mut next = 0;
        for (i, p) in mine.iter().enumerate() {
            assert_eq!(p["number"].as_u64().unwrap(), i as u64 + 1);
            let (at, n) = (
                p["offset"].as_u64().unwrap() as usize,
                p["size_bytes"].as_u64().unwrap() as usize,
            );
            assert_eq!(at, next, "parts of {file} leave a gap");
            assert_eq!(p["sha256"].as_str().unwrap(), sha256(&bytes[at..at + n]));
            next = at + n;
        }
        assert_eq!(next, bytes.len(), "parts do not cover {file}");
        assert_eq!(o["sha256"].as_str().unwrap(), sha256(&bytes));
    }
}

#[test]
fn a_zstd_upload_is_the_local_seekable_file_and_damage_is_localised() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 20 * MIB + 4096);
    let src_s = src.to_str().unwrap();
    let source = fs::read(&src).unwrap();
    let url = "s3://evidence/z/host/disk";
    let o = store.rescue(
        &[
            "acquire", src_s, "--out", url, "--format", "zstd", "--window", "4M",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = download(&store, "z/host/disk");
    let m: Value =
        serde_json::from_slice(&fs::read(got.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["image"]["format"], "zstd-seekable");
    assert_eq!(m["image"]["zstd_level"], -1);
    assert_eq!(m["outputs"][0]["file"], "image.raw.zst");
    assert_eq!(m["hashes"]["sha256"].as_str().unwrap(), sha256(&source));
    let object = got.path().join("image.raw.zst");
    assert!(!got.path().join("image.raw").exists());
    assert!(fs::metadata(&object).unwrap().len() < source.len() as u64);
    assert_eq!(
        zstd_decompress(&object),
        source,
        "zstd -d differs from the source"
    );
    check_parts(&m, got.path());
    assert_sums_and_local_verify(got.path());
    // Byte for byte what a local acquisition writes: the same frames and seek table.
    let local = local_acquisition(&src, &["--format", "zstd"]);
    assert!(
        fs::read(local.path().join("acq/image.raw.zst")).unwrap() == fs::read(&object).unwrap(),
        "the uploaded image.raw.zst differs from a local one"
    );
    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // Flip one byte in the middle of the 64 KiB frame at stream offset 10 MiB (window 2: 8..12 MiB) of
    // the stored object.
    let stored = store.root.join("evidence/z/host/disk/image.raw.zst");
    let mut bytes = fs::read(&stored).unwrap();
    let len = rescue::acquire::seekable::table_len_from_footer(&bytes[bytes.len() - 9..]).unwrap();
    let frames =
        rescue::acquire::seekable::parse_seek_table(&bytes[bytes.len() - len as usize..]).unwrap();
    // 4 MiB reads cut into the default 64 KiB frames, the last one 4096 bytes.
    assert_eq!(frames.len(), 20 * 16 + 1);
    let hit = 10 * 16;
    let start: usize = frames[..hit].iter().map(|f| f.compressed as usize).sum();
    let at = start + frames[hit].compressed as usize / 2;
    bytes[at] ^= 0x55;
    fs::write(&stored, &bytes).unwrap();
    let bad = store.rescue(&["verify", url, "--json"], &[]);
    assert_eq!(bad.status.code(), Some(4), "{}", text(&bad));
    let out = String::from_utf8_lossy(&bad.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let part_bytes = m["remote"]["part_bytes"].as_u64().unwrap() as usize;
    assert_eq!(
        last["report"]["first_bad_part"],
        at / part_bytes + 1,
        "{out}"
    );
    assert_eq!(last["report"]["first_bad_window"]["index"], 2, "{out}");
    assert!(out.contains("window 2 at offset 8388608"), "{out}");
    // Only that window: the frames after it still decode to the right bytes.
    assert!(!out.contains("window 3 at offset"), "{out}");
    let plain = store.rescue(&["verify", url], &[]);
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("first bad window: 2"),
        "{}",
        text(&plain)
    );
}

#[test]
fn split_uploads_are_segments_that_concatenate_to_the_source_and_verify_source_matches() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 20 * MIB + 4096);
    let src_s = src.to_str().unwrap();
    let source = fs::read(&src).unwrap();

    // Raw, split in 8 MiB segments, with the source read a second time.
    let url = "s3://evidence/split/raw";
    let o = store.rescue(
        &[
            "acquire",
            src_s,
            "--out",
            url,
            "--split",
            "8M",
            "--verify-source",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hashes match"),
        "{}",
        text(&o)
    );
    let got = download(&store, "split/raw");
    let m: Value =
        serde_json::from_slice(&fs::read(got.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["source_verification"]["matched"], true);
    assert_eq!(
        m["source_verification"]["hashes"]["sha256"]
            .as_str()
            .unwrap(),
        sha256(&source)
    );
    let names: Vec<&str> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "image.raw.001",
            "image.raw.002",
            "image.raw.003",
            "unreadable.map"
        ]
    );
    assert!(!got.path().join("image.raw").exists());
    let mut joined = Vec::new();
    for n in &names[..3] {
        joined.extend(fs::read(got.path().join(n)).unwrap());
    }
    assert_eq!(
        joined, source,
        "the segments do not concatenate to the source"
    );
    assert_eq!(
        fs::metadata(got.path().join("image.raw.003"))
            .unwrap()
            .len(),
        4 * MIB as u64 + 4096
    );
    check_parts(&m, got.path());
    assert_sums_and_local_verify(got.path());
    let local = local_acquisition(&src, &["--split", "8M"]);
    for n in &names[..3] {
        assert!(
            fs::read(local.path().join("acq").join(n)).unwrap()
                == fs::read(got.path().join(n)).unwrap(),
            "{n} differs from a local acquisition's"
        );
    }
    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // zstd and split: the compressed stream is cut, as locally; verify joins and decompresses.
    let url = "s3://evidence/split/zstd";
    let o = store.rescue(
        &[
            "acquire", src_s, "--out", url, "--format", "zstd", "--split", "5M",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = download(&store, "split/zstd");
    let local = local_acquisition(&src, &["--format", "zstd", "--split", "5M"]);
    let mut local_names: Vec<String> = fs::read_dir(local.path().join("acq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("image.raw.zst."))
        .collect();
    local_names.sort();
    assert!(local_names.len() >= 3, "{local_names:?}");
    let mut joined = Vec::new();
    for n in &local_names {
        let mine = fs::read(got.path().join(n)).unwrap_or_default();
        assert!(
            mine == fs::read(local.path().join("acq").join(n)).unwrap(),
            "{n} differs from a local acquisition's"
        );
        joined.extend(mine);
    }
    let cat = tmp.path().join("joined.zst");
    fs::write(&cat, &joined).unwrap();
    assert_eq!(zstd_decompress(&cat), source);
    let m: Value =
        serde_json::from_slice(&fs::read(got.path().join("manifest.json")).unwrap()).unwrap();
    check_parts(&m, got.path());
    assert_sums_and_local_verify(got.path());
    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // A damaged segment fails verify and is named.
    let seg = store.root.join("evidence/split/raw/image.raw.002");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[100] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let bad = store.rescue(&["verify", "s3://evidence/split/raw", "--json"], &[]);
    assert_eq!(bad.status.code(), Some(4), "{}", text(&bad));
    let out = String::from_utf8_lossy(&bad.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["report"]["first_bad_object"], "image.raw.002", "{out}");
    assert_eq!(last["report"]["first_bad_part"], 1, "{out}");
}

/// Kills a zstd upload once 16 MiB are stored, resumes it, and compares with an uninterrupted one.
fn kill_and_resume(store: &Store, src: &Path, prefix: &str, extra: &[&str]) -> Value {
    let src_s = src.to_str().unwrap();
    let url = format!("s3://evidence/{prefix}");
    let mut args = vec!["acquire", src_s, "--out", url.as_str()];
    args.extend_from_slice(extra);
    let o = store.rescue(&args, &[("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216")]);
    assert_eq!(o.status.code(), None, "not killed: {}", text(&o));
    let dir = store.root.join("evidence").join(prefix);
    assert!(dir.join(".rescue-upload.json").exists());
    assert!(!dir.join("manifest.json").exists());

    // --resume alone continues with the recorded --format and --split.
    let o = store.rescue(
        &["acquire", src_s, "--out", &url, "--resume", "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(last["reused_parts"].as_u64().unwrap() >= 2, "{out}");
    let m = manifest(store, prefix);
    assert_eq!(m["resumes"].as_array().unwrap().len(), 1);
    assert!(!dir.join(".rescue-upload.json").exists());
    assert!(
        !store.files().iter().any(|f| f.contains(".upload_id-")),
        "multipart leftovers: {:?}",
        store.files()
    );
    let v = store.rescue(&["verify", &url], &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // The same objects and hashes as an upload that was never interrupted.
    let clean = format!("{prefix}-clean");
    let curl = format!("s3://evidence/{clean}");
    let mut args = vec!["acquire", src_s, "--out", curl.as_str()];
    args.extend_from_slice(extra);
    let o = store.rescue(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = manifest(store, &clean);
    assert_eq!(m["hashes"], c["hashes"]);
    // unreadable.map names the start time, which differs; the image objects must not.
    let images = |v: &Value| -> Vec<Value> {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["file"] != "unreadable.map")
            .cloned()
            .collect()
    };
    assert_eq!(images(&m), images(&c));
    let parts = |v: &Value| -> Vec<(String, String)> {
        v["remote"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["file"].to_string(), p["sha256"].to_string()))
            .collect()
    };
    assert_eq!(parts(&m), parts(&c));
    for o in images(&m) {
        let f = o["file"].as_str().unwrap();
        assert!(
            fs::read(dir.join(f)).unwrap()
                == fs::read(store.root.join("evidence").join(&clean).join(f)).unwrap(),
            "{f} differs from the uninterrupted upload's"
        );
    }
    m
}

#[test]
fn killed_zstd_and_split_uploads_resume_to_identical_objects() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 40 * MIB);
    let source = fs::read(&src).unwrap();

    let m = kill_and_resume(&store, &src, "resume/zstd", &["--format", "zstd"]);
    assert_eq!(m["hashes"]["sha256"].as_str().unwrap(), sha256(&source));
    let object = store.root.join("evidence/resume/zstd/image.raw.zst");
    assert_eq!(zstd_decompress(&object), source);
    let local = local_acquisition(&src, &["--format", "zstd"]);
    assert!(
        fs::read(local.path().join("acq/image.raw.zst")).unwrap() == fs::read(&object).unwrap(),
        "the resumed image.raw.zst differs from a local one"
    );

    let m = kill_and_resume(
        &store,
        &src,
        "resume/split",
        &["--format", "zstd", "--split", "12M"],
    );
    let dir = store.root.join("evidence/resume/split");
    let mut joined = Vec::new();
    for o in m["outputs"].as_array().unwrap() {
        let f = o["file"].as_str().unwrap();
        if f.starts_with("image.raw.zst.") {
            joined.extend(fs::read(dir.join(f)).unwrap());
        }
    }
    let cat = tmp.path().join("joined.zst");
    fs::write(&cat, &joined).unwrap();
    assert_eq!(zstd_decompress(&cat), source);
    let o = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir));
    assert!(o.status.success(), "sha256sum -c: {}", text(&o));
}

#[test]
fn ctrl_c_during_verify_source_keeps_the_state_and_resume_verifies() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 20 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/reread/stop";
    let o = store.rescue(
        &["acquire", src_s, "--out", url, "--verify-source"],
        &[("RESCUE_TEST_INTERRUPT_REREAD_AFTER_BYTES", "4194304")],
    );
    // Interrupted, resumable: not 4 (the source did not change) and nothing removed.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let dir = store.root.join("evidence/reread/stop");
    assert!(dir.join(".rescue-upload.json").exists(), "{}", text(&o));
    assert!(!dir.join("manifest.json").exists());
    let state = fs::read_to_string(dir.join(".rescue-upload.json")).unwrap();
    assert!(state.contains("re-read interrupted"), "{state}");
    assert!(!state.contains("HASHES DIFFER"), "{state}");

    let o = store.rescue(
        &[
            "acquire",
            src_s,
            "--out",
            url,
            "--resume",
            "--verify-source",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = check_stored(&store, "reread/stop", &src);
    assert_eq!(m["source_verification"]["matched"], true);
}

#[test]
fn a_changed_completed_object_aborts_the_unfinished_uploads_and_keeps_the_rest() {
    use sha2::Digest;
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 20 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/changed/split";
    let args = [
        "acquire",
        src_s,
        "--out",
        url,
        "--split",
        "8M",
        "--verify-source",
    ];
    // All three segments completed, the re-read interrupted: the state stays.
    let o = store.rescue(
        &args,
        &[("RESCUE_TEST_INTERRUPT_REREAD_AFTER_BYTES", "4194304")],
    );
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // Make the last segment an unfinished multipart upload holding one part, as a kill before its
    // completion leaves it.
    let mut c = client(&store);
    let state_key = "changed/split/.rescue-upload.json";
    let mut st: Value = serde_json::from_slice(&c.get_object(state_key, None).unwrap()).unwrap();
    let last = st["objects"].as_array().unwrap().len() - 1;
    let name = st["objects"][last]["name"].as_str().unwrap().to_owned();
    let key = format!("changed/split/{name}");
    c.delete_object(&key).unwrap();
    let id = c.create_multipart(&key).unwrap();
    let data = vec![7u8; 4096];
    let digest: [u8; 32] = sha2::Sha256::digest(&data).into();
    c.upload_part(&key, &id, 1, &data, &digest).unwrap();
    st["objects"][last]["upload_id"] = id.clone().into();
    st["objects"][last]["completed"] = false.into();
    st["objects"][last]["parts"] = serde_json::json!({});
    c.put_object(state_key, &serde_json::to_vec(&st).unwrap(), false)
        .unwrap();
    assert!(
        store.files().iter().any(|f| f.contains(&id)),
        "{:?}",
        store.files()
    );

    // The source changes inside the first (completed) segment.
    let mut bytes = fs::read(&src).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&src, &bytes).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = store.rescue(&resume, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("differs from the source"), "{}", text(&o));
    assert!(
        err.contains("unfinished multipart uploads were aborted"),
        "{}",
        text(&o)
    );
    assert!(err.contains("new prefix"), "{}", text(&o));
    assert!(
        !store.files().iter().any(|f| f.contains(&id)),
        "multipart upload left open: {:?}",
        store.files()
    );
    let dir = store.root.join("evidence/changed/split");
    assert!(dir.join(".rescue-upload.json").exists());
    assert!(dir.join("image.raw.001").exists() && dir.join("image.raw.002").exists());
    assert!(!dir.join("manifest.json").exists());
}

/// Ctrl-C during a zstd upload: the incomplete manifest counts source bytes (whole frames inside the
/// stored parts), not the compressed bytes stored, so `--resume` and the examiner read the same figure.
#[test]
fn an_interrupted_zstd_upload_reports_source_bytes_acquired() {
    use rescue::acquire::seekable::{FOOTER_LEN, parse_seek_table, table_len_from_footer};
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Every fifth MiB zero: frames of 1 MiB compress to about 0.8 of the source. Large enough that
    // the reader is still going when the first part is stored.
    let src = make_source(tmp.path(), 160 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/zstd/stop";
    let args = [
        "acquire",
        src_s,
        "--out",
        url,
        "--format",
        "zstd",
        "--block-size",
        "1M",
    ];
    let mut first = args.to_vec();
    first.push("--json");
    let o = store.rescue(
        &first,
        &[
            ("RESCUE_TEST_ABORT_AFTER_BYTES", "1"),
            ("RESCUE_TEST_ABORT_SIGNAL", "SIGINT"),
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let acquired = last["manifest"]["acquired_bytes"].as_u64().unwrap();

    let o = store.rescue(&[&args[..], &["--resume"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let image = fs::read(store.root.join("evidence/zstd/stop/image.raw.zst")).unwrap();
    let table_len = table_len_from_footer(&image[image.len() - FOOTER_LEN..]).unwrap() as usize;
    let frames = parse_seek_table(&image[image.len() - table_len..]).unwrap();
    // The run stopped at a part boundary (8 MiB of output): the source bytes of the frames inside it.
    let mut ends = Vec::new();
    let (mut out_end, mut src_end) = (0u64, 0u64);
    for f in &frames {
        out_end += u64::from(f.compressed);
        src_end += u64::from(f.decompressed);
        ends.push((out_end, src_end));
    }
    let whole_frames = |stored: u64| {
        ends.iter()
            .take_while(|(o, _)| *o <= stored)
            .last()
            .map_or(0, |(_, s)| *s)
    };
    let part = 8 * MIB as u64;
    let expected: Vec<u64> = (1..=20).map(|k| whole_frames(k * part)).collect();
    assert!(
        acquired > 0 && expected.contains(&acquired),
        "acquired_bytes {acquired} is not the source bytes of the frames in whole stored parts {expected:?}"
    );
    assert!(acquired > part, "{acquired} counts compressed bytes");
}

#[test]
fn a_resume_with_another_zstd_level_is_refused() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/level/zstd";
    let o = store.rescue(
        &["acquire", src_s, "--out", url, "--format", "zstd"],
        &[("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216")],
    );
    assert_eq!(o.status.code(), None, "not killed: {}", text(&o));
    let o = store.rescue(
        &[
            "acquire",
            src_s,
            "--out",
            url,
            "--resume",
            "--zstd-level",
            "19",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--zstd-level"), "{}", text(&o));
    // Refused before anything changed: the upload still resumes.
    let o = store.rescue(&["acquire", src_s, "--out", url, "--resume"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_state_with_zstd_but_no_level_is_refused() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/level/missing";
    let o = store.rescue(
        &["acquire", src_s, "--out", url, "--format", "zstd"],
        &[("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216")],
    );
    assert_eq!(o.status.code(), None, "not killed: {}", text(&o));
    let mut c = client(&store);
    let key = "level/missing/.rescue-upload.json";
    let mut st: Value = serde_json::from_slice(&c.get_object(key, None).unwrap()).unwrap();
    st["zstd_level"] = Value::Null;
    c.put_object(key, &serde_json::to_vec(&st).unwrap(), false)
        .unwrap();
    let o = store.rescue(&["acquire", src_s, "--out", url, "--resume"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("impossible settings"), "{}", text(&o));
    assert!(
        !store
            .root
            .join("evidence/level/missing/image.raw.zst")
            .exists()
    );
}

#[test]
fn verify_s3_requires_sha256sums_to_list_the_manifest() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 9 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/sums/nomanifest";
    let o = store.rescue(&["acquire", src_s, "--out", url], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // An edited manifest would be caught by its SHA256SUMS line, so drop that line too.
    let mut c = client(&store);
    let key = "sums/nomanifest/SHA256SUMS";
    let sums = String::from_utf8(c.get_object(key, None).unwrap()).unwrap();
    let kept: String = sums
        .lines()
        .filter(|l| !l.ends_with("manifest.json"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, sums);
    c.put_object(key, kept.as_bytes(), false).unwrap();
    let v = store.rescue(&["verify", url], &[]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("SHA256SUMS lists manifest.json"),
        "{}",
        text(&v)
    );
}

#[test]
fn verify_s3_reports_a_part_range_that_overflows() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 9 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/edited/range";
    let o = store.rescue(&["acquire", src_s, "--out", url], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut c = client(&store);
    let key = "edited/range/manifest.json";
    let mut m: Value = serde_json::from_slice(&c.get_object(key, None).unwrap()).unwrap();
    m["remote"]["parts"][1]["offset"] = u64::MAX.into();
    c.put_object(key, &serde_json::to_vec_pretty(&m).unwrap(), false)
        .unwrap();
    let v = store.rescue(&["verify", url], &[]);
    // A verification failure, not a crash.
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
}

/// Issue 17: parts the store holds that neither its listing (s3s-fs lists no checksum and no ETag) nor
/// the state proves are sent again and the resume finishes; the progress says what the store holds.
#[test]
fn a_resume_sends_unproven_parts_again_and_reports_what_is_stored() {
    let Some(store) = Store::start("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 40 * MIB);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/unproven/raw";
    let o = store.rescue(
        &["acquire", src_s, "--out", url],
        &[("RESCUE_TEST_ABORT_AFTER_BYTES", "16777216")],
    );
    assert_eq!(o.status.code(), None, "not killed: {}", text(&o));
    // As if the kill came before the state recorded the parts: the store holds them, the state does not.
    let mut c = client(&store);
    let key = "unproven/raw/.rescue-upload.json";
    let mut st: Value = serde_json::from_slice(&c.get_object(key, None).unwrap()).unwrap();
    let objects = st["objects"].as_array_mut().unwrap();
    assert!(
        objects
            .iter()
            .any(|o| !o["parts"].as_object().unwrap().is_empty()),
        "the killed run recorded parts: {st}"
    );
    for o in objects.iter_mut() {
        o["parts"] = serde_json::json!({});
    }
    c.put_object(key, &serde_json::to_vec(&st).unwrap(), false)
        .unwrap();
    let o = store.rescue(&["acquire", src_s, "--out", url, "--resume"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    check_stored(&store, "unproven/raw", &src);
    // The progress says what the store holds, not "0 B stored" from start to end.
    let last = text(&o)
        .lines()
        .rfind(|l| l.starts_with("upload: "))
        .unwrap_or_default()
        .to_owned();
    assert!(last.contains("40.0 MiB stored"), "{}", text(&o));
    // A second resume has nothing to do: the acquisition is complete.
    let o = store.rescue(&["acquire", src_s, "--out", url, "--resume"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
