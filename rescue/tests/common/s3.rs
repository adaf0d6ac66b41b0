//! S3 stores and a scripted fault proxy for the remote-evidence tests (issue 17). Include it with
//! `#[path = "common/s3.rs"] mod s3;`.
//!
//! - [`Server::s3s_fs`]: s3s-fs on a free loopback port, started with `RUST_LOG=info` and waited for
//!   on its own "server is running at" line (printed after the bind). The binary comes from
//!   `RESCUE_S3S_FS`, `target/tools/bin/s3s-fs` or `~/.cargo/bin`; without one the test skips, unless
//!   `RESCUE_REQUIRE_S3S=1` (set by `cargo xtask test`) makes that a failure.
//! - [`Server::moto`]: moto's server (`python -m moto.server`) from the virtualenv `cargo xtask test`
//!   makes (`RESCUE_MOTO_PYTHON`, else `target/cache/moto-*/venv/bin/python`), waited for on its own
//!   "Running on" line; skipped without it unless `RESCUE_REQUIRE_MOTO=1`.
//! - [`Proxy`]: a relay in front of a store that, per request and as the test's script says,
//!   forwards it, refuses it before reading its body, holds it (never forwarded; the test is told),
//!   holds its answer (the store acted on it; the test is told), or loses its answer (the connection
//!   closes once the store answered). A held request lets a test SIGKILL `rescue` at an exact moment
//!   by waiting on the proxy's event, never on a timer.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ACCESS: &str = "RESCUETESTKEY";
pub const SECRET: &str = "rescue-test-secret-0123456789";
/// How long a store may take to say it listens, and a proxy event to arrive.
pub const WAIT: Duration = Duration::from_secs(180);

/// Records that the gated test `test` really ran (`RESCUE_TEST_MARKERS`, checked by `cargo xtask
/// test`).
pub fn ran(test: &str) {
    if let Some(m) = std::env::var_os("RESCUE_TEST_MARKERS") {
        let _ = std::fs::create_dir_all(&m);
        let _ = std::fs::write(Path::new(&m).join(test), b"ran\n");
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The s3s-fs binary; `None` skips (unless `RESCUE_REQUIRE_S3S=1`).
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let found = [
        std::env::var_os("RESCUE_S3S_FS").map(PathBuf::from),
        Some(repo().join("target/tools/bin/s3s-fs")),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("RESCUE_REQUIRE_S3S").as_deref() != Ok("1"),
            "s3s-fs not found (cargo install s3s-fs@0.14.1 --features binary --locked)"
        );
        eprintln!("skipped: no s3s-fs binary (cargo xtask test installs it)");
    }
    found
}

/// The Python of the moto virtualenv; `None` skips (unless `RESCUE_REQUIRE_MOTO=1`).
pub fn moto_python() -> Option<PathBuf> {
    let from_env = std::env::var_os("RESCUE_MOTO_PYTHON").map(PathBuf::from);
    let cached = std::fs::read_dir(repo().join("target/cache"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("moto-"))
        .map(|e| e.path().join("venv/bin/python"))
        .find(|p| p.exists());
    let found = from_env.filter(|p| p.exists()).or(cached);
    if found.is_none() {
        assert!(
            std::env::var("RESCUE_REQUIRE_MOTO").as_deref() != Ok("1"),
            "moto's virtualenv not found (cargo xtask test makes it under target/cache)"
        );
        eprintln!("skipped: no moto virtualenv (cargo xtask test makes it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads `out` on a thread until a line contains `needle` (then the rest goes to `log`); fails when
/// the process closes it first or after [`WAIT`].
pub fn wait_for_line(
    child: &mut Child,
    out: impl Read + Send + 'static,
    needle: &str,
    log: PathBuf,
) {
    let (tx, rx) = channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log).unwrap();
        let mut out = BufReader::new(out);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = tx.send(Err(seen));
                return;
            }
            seen.push_str(&line);
            if line.contains(&needle) {
                let _ = tx.send(Ok(()));
                break;
            }
        }
        let _ = log.write_all(seen.as_bytes());
        // A full pipe would stop the server: keep draining it.
        let _ = std::io::copy(&mut out, &mut log);
    });
    match rx.recv_timeout(WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("exited before it listened:\n{seen}"),
        Err(_) => {
            let _ = child.kill();
            panic!("did not say it listens within {WAIT:?}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3sFs,
    Moto,
}

/// A store on 127.0.0.1, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub kind: Kind,
    /// s3s-fs keeps `BUCKET/KEY` as plain files (and multipart leftovers as `.upload*` files) here.
    pub root: Option<PathBuf>,
    /// moto's virtualenv Python (its boto3 is an independent client).
    pub python: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// s3s-fs with one empty bucket.
    pub fn s3s_fs(bucket: &str) -> Option<Server> {
        let bin = s3s_fs_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&root)
            // Its log says when it listens: "server is running at http://…", printed after the bind.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap())
            .spawn()
            .expect("starting s3s-fs");
        let out = child.stdout.take().unwrap();
        wait_for_line(
            &mut child,
            out,
            "server is running at",
            dir.path().join("server.log"),
        );
        Some(Server {
            child,
            port,
            kind: Kind::S3sFs,
            root: Some(root),
            python: None,
            dir,
        })
    }

    /// moto's server with one empty bucket (made with a plain CreateBucket; moto checks no
    /// signatures unless asked to).
    pub fn moto(bucket: &str) -> Option<Server> {
        Self::moto_with(bucket, &[])
    }

    /// moto's server with these environment variables (`INITIAL_NO_AUTH_ACTION_COUNT=N`: requests
    /// after the first N are checked against its IAM and STS: signatures, keys, session tokens).
    pub fn moto_with(bucket: &str, env: &[(&str, &str)]) -> Option<Server> {
        let python = moto_python()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("server.out")).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting moto's server");
        let err = child.stderr.take().unwrap();
        // Werkzeug: " * Running on http://127.0.0.1:PORT", printed once the socket listens.
        wait_for_line(&mut child, err, "Running on", dir.path().join("server.log"));
        let s = Server {
            child,
            port,
            kind: Kind::Moto,
            root: None,
            python: Some(python),
            dir,
        };
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            c,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "moto: CreateBucket {bucket}: {answer}"
        );
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every file under s3s-fs's root (objects and multipart leftovers), relative, sorted.
    pub fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut v = Vec::new();
        if let Some(root) = &self.root {
            walk(root, root, &mut v);
        }
        v.sort();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request head as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Head {
    /// `PUT /evidence/x?partNumber=1&uploadId=… HTTP/1.1`
    pub line: String,
    pub method: String,
    pub target: String,
    /// `name: value`, lower-cased.
    pub headers: Vec<String>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(&prefix))
            .map(str::trim)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// One query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query()
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// An UploadPart.
    pub fn is_part(&self) -> bool {
        self.method == "PUT" && self.param("partNumber").is_some()
    }

    /// CompleteMultipartUpload.
    pub fn is_complete(&self) -> bool {
        self.method == "POST" && self.param("uploadId").is_some()
    }

    /// CreateMultipartUpload.
    pub fn is_create(&self) -> bool {
        self.method == "POST"
            && self
                .query()
                .split('&')
                .any(|kv| kv == "uploads" || kv == "uploads=")
    }

    /// A PUT of the object named `name` (the last path element).
    pub fn is_put_of(&self, name: &str) -> bool {
        self.method == "PUT"
            && self.query().is_empty()
            && self.path().ends_with(&format!("/{name}"))
    }

    /// The prefix claim: the conditional PUT of the upload state.
    pub fn is_claim(&self) -> bool {
        self.is_put_of(".rescue-upload.json") && self.header("if-none-match") == Some("*")
    }

    /// A later write of the upload state.
    pub fn is_state_write(&self) -> bool {
        self.is_put_of(".rescue-upload.json") && self.header("if-none-match").is_none()
    }
}

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Forward,
    /// Answer this status and S3 error code at once, without reading the body, and close.
    Refuse(u16, &'static str),
    /// Never forward it; tell the test; keep the connection open until the client goes.
    Hold,
    /// Forward it; when the store answers (it acted on the request), tell the test and never relay
    /// the answer; the connection stays open until the client goes.
    HoldAnswer,
    /// Forward it; when the store answers, close the client's connection (the answer is lost).
    LoseAnswer,
}

type Script = Box<dyn FnMut(&Head) -> Act + Send>;

/// The proxy; events: `held LINE`, `held answer to LINE`, `refused LINE`, `lost answer to LINE`.
pub struct Proxy {
    pub port: u16,
    events: Mutex<Receiver<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(store_port: u16, script: impl FnMut(&Head) -> Act + Send + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", store_port)) else {
                    return;
                };
                let (script, seen, tx) = (Arc::clone(&script), Arc::clone(&seen2), tx.clone());
                std::thread::spawn(move || relay(client, server, &script, &seen, &tx));
            }
        });
        Proxy {
            port,
            events: Mutex::new(rx),
            seen,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next event, waited for (at most [`WAIT`]).
    pub fn wait_event(&self) -> String {
        self.events
            .lock()
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| {
                panic!(
                    "no proxy event within {WAIT:?}; requests seen: {:#?}",
                    self.seen()
                )
            })
    }

    /// Events so far, without waiting.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().try_iter().collect()
    }

    /// Every request line seen, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Answers {
    Relay,
    Hold(String),
    Lose(String),
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    script: &Mutex<Script>,
    seen: &Mutex<Vec<String>>,
    events: &Sender<String>,
) {
    let answers = Arc::new(Mutex::new(Answers::Relay));
    {
        let (mut from_server, mut to_client) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let answers = Arc::clone(&answers);
        let events = events.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match from_server.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut bytes = &buf[..n];
                let mode = answers.lock().unwrap().clone();
                if mode != Answers::Relay {
                    // An interim `100 Continue` lets the body go; the final answer is the store's
                    // word that it acted.
                    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
                    if bytes.starts_with(interim) {
                        if to_client.write_all(interim).is_err() {
                            break;
                        }
                        bytes = &bytes[interim.len()..];
                        if bytes.is_empty() {
                            continue;
                        }
                    }
                    match mode {
                        Answers::Lose(line) => {
                            let _ = c2.shutdown(Shutdown::Both);
                            let _ = s2.shutdown(Shutdown::Both);
                            let _ = events.send(format!("lost answer to {line}"));
                            break;
                        }
                        Answers::Hold(line) => {
                            let _ = events.send(format!("held answer to {line}"));
                            // Swallow the rest; the client waits until it is killed.
                            while matches!(from_server.read(&mut buf), Ok(n) if n > 0) {}
                            break;
                        }
                        Answers::Relay => unreachable!(),
                    }
                }
                if to_client.write_all(bytes).is_err() {
                    break;
                }
            }
        });
    }
    let mut r = BufReader::new(client.try_clone().unwrap());
    let mut w = server;
    loop {
        let mut raw = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let end = line == "\r\n";
            raw.push(line);
            if end {
                break;
            }
        }
        let line = raw[0].trim_end().to_owned();
        let mut it = line.split_whitespace();
        let head = Head {
            method: it.next().unwrap_or("").to_owned(),
            target: it.next().unwrap_or("").to_owned(),
            line: line.clone(),
            headers: raw[1..]
                .iter()
                .map(|l| l.trim_end().to_ascii_lowercase())
                .filter(|l| !l.is_empty())
                .collect(),
        };
        let length: u64 = head
            .header("content-length")
            .map_or(0, |n| n.parse().unwrap_or(0));
        seen.lock().unwrap().push(line.clone());
        let act = script.lock().unwrap()(&head);
        match act {
            Act::Forward => {}
            Act::Refuse(status, code) => {
                let body = format!(
                    "<Error><Code>{code}</Code><Message>the proxy refuses {code}</Message></Error>"
                );
                let _ = write!(
                    &client,
                    "HTTP/1.1 {status} Refused\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = events.send(format!("refused {line}"));
                let _ = client.shutdown(Shutdown::Both);
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            Act::Hold => {
                let _ = events.send(format!("held {line}"));
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
                return;
            }
            Act::HoldAnswer => *answers.lock().unwrap() = Answers::Hold(line.clone()),
            Act::LoseAnswer => *answers.lock().unwrap() = Answers::Lose(line.clone()),
        }
        if w.write_all(raw.concat().as_bytes()).is_err() {
            return;
        }
        if std::io::copy(&mut (&mut r).take(length), &mut w).is_err() {
            return;
        }
    }
}

/// `rescue` with the store's credentials and endpoint, output into files under `dir`.
pub fn spawn_rescue(
    bin: &str,
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
    dir: &Path,
    name: &str,
) -> Child {
    let mut c = Command::new(bin);
    c.args(args)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("starting rescue")
}

/// Waits for `child` (a blocking wait on a thread), killing it and failing after `timeout`.
pub fn wait_exit(mut child: Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let pid = child.id() as i32;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped (the wait above
            // has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("timed out after {timeout:?}: {what}");
        }
    }
}
