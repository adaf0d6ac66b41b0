//! The S3 client against a store that misbehaves the way real networks and stores do: a fake S3
//! server on 127.0.0.1, scripted per test, that drops an answer after acting on the request, refuses
//! a part before reading it, closes mid-body, answers HTTP/1.0 or sends an absurd chunk size. Each
//! test asserts what the caller (the upload, `verify s3://`) is told: the call succeeds when the store
//! holds what we sent, and a refusal arrives as the store's own words, not as a network failure.
//!
//! The second half runs whole acquisitions through the scripted proxy of `common/s3.rs` in front of
//! s3s-fs: answers lost after the store acted, and a store that refuses to replace a part it holds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rescue::s3::client::{Client, CompletedPart, base64};
use rescue::s3::http::Trust;
use rescue::s3::sigv4::Credentials;
use rescue::s3::{S3Error, Store, StoreConfig};
use sha2::{Digest, Sha256};

/// A request as the fake store saw it. `body` is empty until the script asks for it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// False while only the head was read.
    full: bool,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// What the fake store does with a request.
enum Act {
    /// Read the body (after `100 Continue` when asked for) and ask the script again.
    ReadBody,
    /// An HTTP/1.1 answer with Content-Length; the connection stays open. Given before the body
    /// is read, the answer is sent at once and the connection closed with the body unread.
    Reply(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// Close without answering (the answer was "lost").
    Drop,
}

type Script = Box<dyn FnMut(&Req) -> Act + Send>;

/// The fake store; every request it saw, in order.
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(script: impl FnMut(&Req) -> Act + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let script = Arc::clone(&script);
                let seen = Arc::clone(&seen2);
                std::thread::spawn(move || serve(s, &script, &seen));
            }
        });
        Fake { port, seen }
    }

    fn client(&self, credentials: Credentials) -> Client {
        Store::new(StoreConfig {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            region: "us-east-1".to_owned(),
            bucket: "evidence".to_owned(),
            credentials,
            trust: Trust::System,
            timeout: Duration::from_secs(20),
            local_clock_error: 0,
        })
        .unwrap()
        .client()
    }

    fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, query_has: &str) -> usize {
        self.seen()
            .iter()
            .filter(|r| r.method == method && r.query().contains(query_has))
            .count()
    }
}

fn serve(s: TcpStream, script: &Mutex<Script>, seen: &Mutex<Vec<Req>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut it = line.split_whitespace();
        let (method, target) = (
            it.next().unwrap_or("").to_owned(),
            it.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut req = Req {
            method,
            target,
            headers,
            body: Vec::new(),
            full: false,
        };
        let mut act = script.lock().unwrap()(&req);
        if let Act::ReadBody = act {
            if req.header("expect").is_some() {
                let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let n: usize = req
                .header("content-length")
                .map_or(0, |n| n.parse().unwrap());
            req.body = vec![0; n];
            if r.read_exact(&mut req.body).is_err() {
                return;
            }
            req.full = true;
            act = script.lock().unwrap()(&req);
        }
        let early = !req.full;
        seen.lock().unwrap().push(req);
        match act {
            Act::ReadBody => panic!("the script asked for the body twice"),
            Act::Reply(status, headers, body) => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if w.write_all(head.as_bytes()).is_err() || w.write_all(&body).is_err() {
                    return;
                }
                if early {
                    return;
                }
            }
            Act::Raw(bytes) => {
                let _ = w.write_all(&bytes);
                return;
            }
            Act::Drop => return,
        }
    }
}

fn error(status: u16, code: &str) -> Act {
    let doc =
        format!("<Error><Code>{code}</Code><Message>the fake store says {code}</Message></Error>");
    Act::Reply(status, vec![], doc.into_bytes())
}

fn ok() -> Act {
    Act::Reply(200, vec![], Vec::new())
}

fn creds() -> Credentials {
    Credentials::new("AKFAKE", "fake-secret")
}

fn md5_hex(data: &[u8]) -> String {
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn part(number: u32, data: &[u8]) -> CompletedPart {
    CompletedPart {
        number,
        etag: format!("\"{}\"", md5_hex(data)),
        checksum_sha256: base64(&Sha256::digest(data)),
    }
}

/// The Complete is done by the store but its answer is lost; the retry is told 404 NoSuchUpload.
fn forgetful_complete(head_etag: Option<String>) -> Fake {
    let mut completes = 0;
    Fake::start(move |req| {
        if !req.full {
            return Act::ReadBody;
        }
        match (req.method.as_str(), req.query().contains("uploadId")) {
            ("POST", true) => {
                completes += 1;
                if completes == 1 {
                    Act::Drop
                } else {
                    error(404, "NoSuchUpload")
                }
            }
            ("HEAD", false) => match &head_etag {
                Some(e) => Act::Reply(
                    200,
                    vec![
                        ("ETag", format!("\"{e}\"")),
                        ("Content-Length", "0".to_owned()),
                    ],
                    Vec::new(),
                ),
                None => Act::Reply(404, vec![], Vec::new()),
            },
            _ => error(400, "Unexpected"),
        }
    })
}

#[test]
fn a_complete_whose_answer_was_lost_is_accepted_when_the_store_holds_the_object() {
    let parts = [part(1, &[1u8; 100]), part(2, b"tail")];
    let mut md5s = md5::Md5::digest([1u8; 100]).to_vec();
    md5s.extend_from_slice(&md5::Md5::digest(b"tail"));
    let etag = format!("{}-2", md5_hex(&md5s));
    let fake = forgetful_complete(Some(etag));
    let mut c = fake.client(creds());
    c.complete_multipart("case/image.raw", "upload-1", &parts)
        .expect("the object the lost Complete made is ours");
    assert_eq!(fake.count("POST", "uploadId"), 2);
    assert_eq!(fake.count("HEAD", ""), 1);

    // A store that also holds no object: the refusal stands, with the store's words.
    let fake = forgetful_complete(None);
    let mut c = fake.client(creds());
    let e = c
        .complete_multipart("case/image.raw", "upload-1", &parts)
        .unwrap_err();
    assert!(
        matches!(&e, S3Error::Status { status: 404, code, .. } if code == "NoSuchUpload"),
        "{e:?}"
    );

    // An object of another upload (another part count) is not taken for ours.
    let fake = forgetful_complete(Some(format!("{}-3", md5_hex(b"x"))));
    let mut c = fake.client(creds());
    assert!(
        c.complete_multipart("case/image.raw", "upload-1", &parts)
            .is_err()
    );
}

/// A store of small objects honouring `If-None-Match: *`; `lose_first_put` drops the first answer.
fn claim_store(held: Option<Vec<u8>>, lose_first_put: bool) -> Fake {
    let objects: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    if let Some(h) = held {
        objects
            .lock()
            .unwrap()
            .insert("/evidence/case/state.json".to_owned(), h);
    }
    let mut puts = 0;
    Fake::start(move |req| {
        if !req.full {
            return Act::ReadBody;
        }
        let mut objects = objects.lock().unwrap();
        match req.method.as_str() {
            "PUT" => {
                puts += 1;
                let refused =
                    req.header("if-none-match") == Some("*") && objects.contains_key(req.path());
                if !refused {
                    objects.insert(req.path().to_owned(), req.body.clone());
                }
                if lose_first_put && puts == 1 {
                    Act::Drop
                } else if refused {
                    error(412, "PreconditionFailed")
                } else {
                    ok()
                }
            }
            "GET" => match objects.get(req.path()) {
                Some(b) => Act::Reply(200, vec![], b.clone()),
                None => error(404, "NoSuchKey"),
            },
            _ => error(400, "Unexpected"),
        }
    })
}

#[test]
fn a_conditional_put_whose_answer_was_lost_is_our_own_claim() {
    let ours = br#"{"run":"ours"}"#;
    let fake = claim_store(None, true);
    let mut c = fake.client(creds());
    c.put_object("case/state.json", ours, true)
        .expect("the 412 of the retry is about our own claim");
    assert_eq!(fake.count("PUT", ""), 2);
    assert_eq!(fake.count("GET", ""), 1);

    // Someone else's claim, with or without a lost answer on our side, stays someone else's.
    for lose in [false, true] {
        let fake = claim_store(Some(br#"{"run":"theirs"}"#.to_vec()), lose);
        let mut c = fake.client(creds());
        let e = c.put_object("case/state.json", ours, true).unwrap_err();
        assert!(matches!(e, S3Error::Status { status: 412, .. }), "{e:?}");
    }
}

#[test]
fn a_part_refused_on_retry_is_accepted_when_the_store_lists_it_with_our_bytes() {
    let data = vec![9u8; 2 << 20];
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let etag = format!("\"{}\"", md5_hex(&data));
    for listed_etag in [etag.clone(), "\"0000\"".to_owned()] {
        let mut uploads = 0;
        let size = data.len();
        let listed = listed_etag.clone();
        let fake = Fake::start(move |req| {
            match (req.method.as_str(), req.query()) {
            ("PUT", q) if q.contains("partNumber=1") => {
                if req.full {
                    // The part is stored, the answer lost.
                    return Act::Drop;
                }
                uploads += 1;
                if uploads == 1 {
                    Act::ReadBody
                } else {
                    // Like s3s-fs: a part it holds is not replaced, refused before the body.
                    error(403, "AccessDenied")
                }
            }
            ("GET", q) if q.contains("uploadId") => Act::Reply(
                200,
                vec![],
                format!(
                    "<ListPartsResult><Part><PartNumber>1</PartNumber><ETag>{listed}</ETag><Size>{size}</Size></Part><IsTruncated>false</IsTruncated></ListPartsResult>"
                )
                .into_bytes(),
            ),
            _ => error(400, "Unexpected"),
        }
        });
        let mut c = fake.client(creds());
        let got = c.upload_part("case/image.raw", "up-1", 1, &data, &sha);
        if listed_etag == etag {
            assert_eq!(got.unwrap(), etag);
        } else {
            // Held with other bytes: the store's refusal, in its words.
            let e = got.unwrap_err();
            assert!(!e.is_network(), "{e:?}");
            assert!(format!("{e}").contains("AccessDenied"), "{e}");
        }
    }
}

#[test]
fn a_part_refused_before_its_body_is_read_is_reported_at_once_not_retried() {
    let fake = Fake::start(|req| match req.method.as_str() {
        "PUT" => error(403, "AccessDenied"),
        _ => error(403, "AccessDenied"),
    });
    let data = vec![1u8; 16 << 20];
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let mut c = fake.client(creds());
    let e = c
        .upload_part("case/image.raw", "up-1", 1, &data, &sha)
        .unwrap_err();
    assert!(!e.is_network(), "a refusal is not a network failure: {e:?}");
    assert!(format!("{e}").contains("AccessDenied"), "{e}");
    assert_eq!(
        fake.count("PUT", "partNumber"),
        1,
        "refusals are not retried"
    );
    let put = fake.seen().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.header("expect"), Some("100-continue"));
    assert!(!put.full, "the body was never sent");
}

#[test]
fn http10_answers_cut_bodies_and_absurd_chunks_end_in_the_right_bytes() {
    let object: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let obj = object.clone();
    let mut gets = 0;
    let fake = Fake::start(move |req| {
        if !req.full {
            return Act::ReadBody;
        }
        gets += 1;
        match gets {
            // HTTP/1.0, body until close.
            1 | 2 => {
                let mut raw = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
                raw.extend_from_slice(&obj);
                Act::Raw(raw)
            }
            // Cut in the middle of the body.
            3 => {
                let mut raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", obj.len())
                    .into_bytes();
                raw.extend_from_slice(&obj[..obj.len() / 2]);
                Act::Raw(raw)
            }
            // A chunk size no one can hold.
            5 => {
                let mut raw =
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n".to_vec();
                raw.extend_from_slice(&obj[..4]);
                raw.extend_from_slice(b"\r\nffffffffffffffff\r\n");
                raw.extend_from_slice(&obj[4..]);
                Act::Raw(raw)
            }
            _ => Act::Reply(200, vec![], obj.clone()),
        }
    });
    let mut c = fake.client(creds());
    for _ in 0..4 {
        assert_eq!(c.get_object("case/image.raw", None).unwrap(), object);
    }
    assert_eq!(fake.count("GET", ""), 6);
}

#[test]
fn temporary_credentials_send_a_signed_security_token() {
    let fake = Fake::start(|req| {
        if !req.full {
            return Act::ReadBody;
        }
        ok()
    });
    let mut c = fake.client(creds().with_session_token("FQoGZXIvYXdzEJr/session+token=="));
    c.put_object("case/log.txt", b"log", false).unwrap();
    let mut plain = fake.client(creds());
    plain.put_object("case/log.txt", b"log", false).unwrap();
    let seen = fake.seen();
    assert_eq!(
        seen[0].header("x-amz-security-token"),
        Some("FQoGZXIvYXdzEJr/session+token==")
    );
    let auth = seen[0].header("authorization").unwrap();
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        signed.split(';').any(|h| h == "x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(seen[1].header("x-amz-security-token"), None);
}

#[test]
fn ranges_stream_without_buffering_and_resume_where_the_connection_broke() {
    let object: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let obj = object.clone();
    let mut gets = 0;
    let fake = Fake::start(move |req| {
        if !req.full {
            return Act::ReadBody;
        }
        gets += 1;
        let range = req.header("range").unwrap_or("bytes=0-");
        let (a, b) = range
            .trim_start_matches("bytes=")
            .split_once('-')
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
            .unwrap();
        let body = obj[a..=b].to_vec();
        // The third answer breaks once; the fifth to eighth break every time.
        if gets == 3 || (5..=8).contains(&gets) {
            let mut raw = format!(
                "HTTP/1.1 206 Partial\r\nETag: \"v1\"\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body[..1000]);
            return Act::Raw(raw);
        }
        Act::Reply(206, vec![("ETag", "\"v1\"".to_owned())], body)
    });
    let mut c = fake.client(creds());
    let mut hashed = |a: u64, b: u64| -> std::io::Result<Vec<u8>> {
        let mut r = c.get_object_reader("case/image.raw", Some((a, b))).unwrap();
        assert_eq!(r.remaining(), Some(b - a + 1));
        let mut hasher = Sha256::new();
        let n = std::io::copy(&mut r, &mut hasher)?;
        assert_eq!(n, b - a + 1);
        Ok(hasher.finalize().to_vec())
    };
    for (a, b) in [
        (0u64, 2_499_999u64),
        (2_500_000, 2_999_999),
        (20_000, 29_999),
    ] {
        assert_eq!(
            hashed(a, b).unwrap(),
            Sha256::digest(&object[a as usize..=b as usize]).to_vec()
        );
    }
    // The broken third answer was resumed from where it broke, only if the object is unchanged.
    let resumed = &fake.seen()[3];
    assert_eq!(resumed.header("range"), Some("bytes=21000-29999"));
    assert_eq!(resumed.header("if-match"), Some("\"v1\""));
    // A connection that breaks every time: the reader gives up with the error.
    let e = hashed(0, 9999).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(fake.seen().len(), 8);
    // The connection is replaced and the next call works.
    assert_eq!(
        hashed(0, 9).unwrap(),
        Sha256::digest(&object[..10]).to_vec()
    );
}

// ---------------------------------------------------------------------------------------------
// The whole acquisition through a fault-injecting proxy (`common/s3.rs`) in front of a real store
// (s3s-fs).

#[path = "common/s3.rs"]
mod s3;

use s3::{ACCESS, Act as Via, Proxy, SECRET, Server};

const BIN: &str = env!("CARGO_BIN_EXE_rescue");

fn rescue_through(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn source(dir: &std::path::Path, mib: u64) -> (std::path::PathBuf, Vec<u8>) {
    let src = dir.join("source.img");
    let data: Vec<u8> = (0..mib << 20)
        .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    (src, data)
}

fn sha256sum_c(dir: &std::path::Path) {
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "sha256sum -c: {}{}",
        String::from_utf8_lossy(&sums.stdout),
        String::from_utf8_lossy(&sums.stderr)
    );
}

#[test]
fn an_acquisition_completes_when_the_answers_to_claim_part_and_complete_are_lost() {
    let Some(store) = Server::s3s_fs("evidence") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = source(tmp.path(), 20);
    // The prefix claim (conditional PUT of the state), the first part, CompleteMultipartUpload: each
    // loses its answer once, after the store acted on it.
    let mut lost = [false; 3];
    let proxy = Proxy::start(store.port, move |h| {
        let which = [
            h.is_claim(),
            h.is_part() && h.param("partNumber") == Some("1"),
            h.is_complete(),
        ];
        match which.iter().zip(lost.iter_mut()).find(|(w, l)| **w && !**l) {
            Some((_, l)) => {
                *l = true;
                Via::LoseAnswer
            }
            None => Via::Forward,
        }
    });
    let (code, text) = rescue_through(
        &proxy.endpoint(),
        &[
            "acquire",
            src.to_str().unwrap(),
            "--out",
            "s3://evidence/lossy",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{text}");
    let events = proxy.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("lost answer to "))
            .count(),
        3,
        "every fault was injected: {events:?}\n{text}"
    );
    let root = store.root.as_ref().unwrap();
    let stored = std::fs::read(root.join("evidence/lossy/image.raw")).unwrap();
    assert!(stored == data, "the stored object differs from the source");
    sha256sum_c(&root.join("evidence/lossy"));
}

/// Issue 17, "a resume that can never finish": the store holds parts of the interrupted run that
/// it can neither prove (s3s-fs lists no checksum and no ETag, and the state recorded none for
/// them, as after a kill between a part and the state write) nor replace (this store, like the one
/// in the issue, answers 403 before reading the body of a part number it already holds). The resume
/// aborts that object's multipart upload, says so, starts it again and finishes; the other
/// objects' proven parts are kept, not sent again.
#[test]
fn a_resume_restarts_an_object_whose_held_parts_can_be_neither_proven_nor_replaced() {
    let Some(store) = Server::s3s_fs("evidence") else {
        return;
    };
    let root = store.root.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = source(tmp.path(), 40);
    let src_s = src.to_str().unwrap();
    let url = "s3://evidence/refuse";
    // Killed (SIGKILL) once 24 MiB are stored: image.raw.001 is whole, image.raw.002 has parts.
    let (code, text) = rescue_through(
        &store.endpoint(),
        &["acquire", src_s, "--out", url, "--split", "16M"],
        &[("RESCUE_TEST_ABORT_AFTER_BYTES", "25165824")],
    );
    assert_eq!(code, None, "not killed: {text}");
    // The state forgets image.raw.002's parts, as a kill between the part and the state write does.
    let mut c = Store::new(StoreConfig {
        endpoint: store.endpoint(),
        region: "us-east-1".to_owned(),
        bucket: "evidence".to_owned(),
        credentials: Credentials::new(ACCESS, SECRET),
        trust: Trust::System,
        timeout: Duration::from_secs(30),
        local_clock_error: 0,
    })
    .unwrap()
    .client();
    let key = "refuse/.rescue-upload.json";
    let mut st: serde_json::Value =
        serde_json::from_slice(&c.get_object(key, None).unwrap()).unwrap();
    let objects = st["objects"].as_array_mut().unwrap();
    assert_eq!(objects[0]["name"], "image.raw.001");
    assert_eq!(objects[0]["parts"].as_object().unwrap().len(), 2, "{st}");
    assert_eq!(objects[1]["name"], "image.raw.002");
    assert!(!objects[1]["parts"].as_object().unwrap().is_empty(), "{st}");
    let old = objects[1]["upload_id"].as_str().unwrap().to_owned();
    objects[1]["parts"] = serde_json::json!({});
    c.put_object(key, &serde_json::to_vec(&st).unwrap(), false)
        .unwrap();
    assert!(
        root.join(format!(".upload_id-{old}.part-1")).exists(),
        "the store holds part 1 of {old}"
    );

    // Through a proxy that refuses to replace any part the store holds.
    let held = root.clone();
    let proxy = Proxy::start(store.port, move |h| {
        let file = match (h.param("uploadId"), h.param("partNumber")) {
            (Some(id), Some(n)) if h.method == "PUT" => format!(".upload_id-{id}.part-{n}"),
            _ => return Via::Forward,
        };
        if held.join(file).exists() {
            Via::Refuse(403, "AccessDenied")
        } else {
            Via::Forward
        }
    });
    let (code, text) = rescue_through(
        &proxy.endpoint(),
        &["acquire", src_s, "--out", url, "--resume", "--json"],
        &[],
    );
    assert_eq!(code, Some(0), "{text}");
    let refused: Vec<String> = proxy
        .events()
        .into_iter()
        .filter(|e| e.starts_with("refused "))
        .collect();
    // image.raw.002's held parts are refused (and, when the kill came late, parts of
    // image.raw.003 the state had not recorded yet).
    assert!(
        refused.iter().any(|e| e.contains(&old)),
        "the old upload of image.raw.002 was refused: {refused:?}\n{text}"
    );
    // Said on the terminal and in the acquisition log; one more pass over the source restarts every
    // object the refusal concerns, not one pass per object.
    assert!(
        text.contains("from the interrupted run") && text.contains("refuses to replace it"),
        "{text}"
    );
    assert_eq!(text.matches("refuses to replace it").count(), 1, "{text}");
    let dir = root.join("evidence/refuse");
    let log = std::fs::read_to_string(dir.join("acquisition.log")).unwrap();
    assert!(
        log.contains(&format!("aborted multipart upload {old}")),
        "{log}"
    );
    // The refused uploads are gone, not left billed and invisible.
    let files = store.files();
    for e in &refused {
        let id = e
            .split("uploadId=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            !files.iter().any(|f| f.contains(id)),
            "the refused upload {id} is left: {files:?}"
        );
    }
    // image.raw.001's two proven parts were kept.
    let result: serde_json::Value = serde_json::from_str(
        text.lines()
            .rfind(|l| l.contains("\"reused_parts\""))
            .unwrap(),
    )
    .unwrap();
    assert!(result["reused_parts"].as_u64().unwrap() >= 2, "{text}");
    // The objects are the source.
    let mut joined = Vec::new();
    for n in 1..=3 {
        joined.extend(std::fs::read(dir.join(format!("image.raw.00{n}"))).unwrap());
    }
    assert!(joined == data, "the stored segments are not the source");
    sha256sum_c(&dir);
    assert!(!dir.join(".rescue-upload.json").exists());
}

/// Issue 17, "nothing that was complete in the store is deleted": a store that refuses for good
/// (403) to complete the last object ends the run, and its multipart upload is aborted, but the
/// image objects already completed stay, with the upload state that names them.
#[test]
fn a_refusal_keeps_the_objects_already_completed() {
    let Some(store) = Server::s3s_fs("evidence") else {
        return;
    };
    let root = store.root.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = source(tmp.path(), 40);
    let proxy = Proxy::start(store.port, |h| {
        if h.is_complete() && h.path().ends_with("/image.raw.003") {
            Via::Refuse(403, "AccessDenied")
        } else {
            Via::Forward
        }
    });
    let (code, text) = rescue_through(
        &proxy.endpoint(),
        &[
            "acquire",
            src.to_str().unwrap(),
            "--out",
            "s3://evidence/keep",
            "--split",
            "16M",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(
        proxy.events().iter().any(|e| e.starts_with("refused ")),
        "the refusal was injected: {text}"
    );
    assert!(
        text.contains("completed image objects") && text.contains("kept"),
        "the message says what is kept: {text}"
    );
    let dir = root.join("evidence/keep");
    assert!(
        std::fs::read(dir.join("image.raw.001")).unwrap() == data[..16 << 20],
        "the completed image.raw.001 is still in the store, unchanged: {text}"
    );
    if let Ok(two) = std::fs::read(dir.join("image.raw.002")) {
        assert!(
            two == data[16 << 20..32 << 20],
            "image.raw.002 is the source"
        );
    }
    assert!(
        !dir.join("image.raw.003").exists(),
        "the refused object was not completed"
    );
    assert!(
        dir.join(".rescue-upload.json").exists(),
        "the state naming the kept objects stays"
    );
}
