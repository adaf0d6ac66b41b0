//! The S3 operations the acquisition needs, path-style (`/BUCKET/KEY`), signed with SigV4, over the
//! blocking HTTP client: ListObjectsV2, Head/Get (with `Range`)/Put/DeleteObject, and the multipart
//! calls (Create, UploadPart with `x-amz-checksum-sha256`, ListParts, Complete, Abort).
//!
//! Clock: every response's `Date` header is compared with the local clock; when they differ by more
//! than a minute the offset is adopted and every later request is signed with the corrected time (a
//! compromised server's RTC may be wrong, and SigV4 refuses more than 15 minutes of skew). The offset is
//! readable by the caller, which records it; nothing here prints.
//!
//! Retries and what they cannot know: when an attempt's answer is lost (the connection drops after the
//! request went out), the store may have acted on it. The calls that are not idempotent find out what
//! the store holds before reporting a refusal of the retry: CompleteMultipartUpload answered 404 looks
//! for the completed object (HEAD), a conditional PUT answered 412 reads the object back and compares
//! bytes, and an UploadPart refused on retry looks for the part in ListParts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::http::{Connection, HttpError, MAX_BUFFERED_BODY, Origin, Response, Trust, tls_config};
use super::sigv4::{self, Credentials, EMPTY_SHA256, uri_encode};
use super::xml;
use crate::acquire::hash::hex;

/// Skew below this is ignored (the `Date` header has one-second resolution and requests take time).
pub const SKEW_TOLERANCE_SECS: i64 = 60;
/// Attempts per request when the connection drops or the store is busy.
pub const ATTEMPTS: u32 = 6;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("bucket {bucket:?} does not exist on {endpoint}")]
    MissingBucket { bucket: String, endpoint: String },
    #[error(
        "the store refused the credentials ({code}: {message}); check the access key and secret"
    )]
    RejectCredentials { code: String, message: String },
    #[error(
        "the store says our clock is wrong even after correcting it by {offset_secs} s from its Date header ({message})"
    )]
    RejectClock { offset_secs: i64, message: String },
    #[error("the store rejected the checksum of {what} ({code}: {message})")]
    RejectChecksum {
        what: String,
        code: String,
        message: String,
    },
    #[error("{op} failed: HTTP {status} {code}: {message}")]
    Status {
        op: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{op}: the store's answer lacks {what}")]
    ParseAnswer { op: String, what: String },
    #[error("encoding the upload state")]
    EncodeState(#[source] serde_json::Error),
    #[error("{op}: gave up after {attempts} attempts")]
    GiveUp {
        op: String,
        attempts: u32,
        #[source]
        source: HttpError,
    },
}

impl S3Error {
    /// True when the failure is the network (worth a later `--resume`), not the store's refusal.
    pub fn is_network(&self) -> bool {
        matches!(self, Self::GiveUp { .. } | Self::Http(_))
    }
}

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub credentials: Credentials,
    pub trust: Trust,
    pub timeout: Duration,
    /// Seconds added to the local clock before anything else (tests simulate a wrong RTC with it).
    pub local_clock_error: i64,
}

struct Shared {
    cfg: StoreConfig,
    origin: Origin,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Server time minus local time, seconds; 0 until a response shows skew.
    offset: AtomicI64,
    skewed: AtomicBool,
}

/// A store handle; cheap to clone, each [`Store::client`] has its own connection.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Result<Self, S3Error> {
        let origin = Origin::parse(&cfg.endpoint)?;
        let tls = if origin.tls {
            Some(tls_config(&cfg.trust)?)
        } else {
            None
        };
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                origin,
                tls,
                offset: AtomicI64::new(0),
                skewed: AtomicBool::new(false),
            }),
        })
    }

    /// A client with its own keep-alive connection (one per uploader thread).
    pub fn client(&self) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            conn: Connection::new(
                self.shared.origin.clone(),
                self.shared.tls.clone(),
                self.shared.cfg.timeout,
            ),
        }
    }

    /// Seconds the store's clock is ahead of ours (negative: behind), when skew was detected.
    pub fn clock_offset(&self) -> Option<i64> {
        self.shared
            .skewed
            .load(Ordering::Relaxed)
            .then(|| self.shared.offset.load(Ordering::Relaxed))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.cfg
    }
}

/// A part as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    /// Base64 SHA-256 when the store reports it.
    pub checksum_sha256: Option<String>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    /// Base64 SHA-256 (`…-N` for a multipart object) when the store keeps one.
    pub checksum_sha256: Option<String>,
}

/// How often an [`ObjectReader`] resumes a body whose connection broke.
pub const READ_RESUMES: u32 = 3;

/// An object's bytes as they arrive (see [`Client::get_object_reader`]). Reading to the end keeps the
/// connection for the next call; dropping it earlier closes the connection.
pub struct ObjectReader<'a> {
    client: &'a mut Client,
    key: String,
    /// Offset in the object of the next byte.
    next: u64,
    /// Offset of the last byte, when known (a range, or the store gave a length).
    end: Option<u64>,
    remaining: Option<u64>,
    etag: Option<String>,
    resumes: u32,
}

impl ObjectReader<'_> {
    /// Bytes still to come, when the store said how many.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    /// Asks for the rest of the body again after a broken connection.
    fn resume(&mut self, cause: &std::io::Error) -> bool {
        let (Some(end), Some(etag)) = (self.end, self.etag.clone()) else {
            return false;
        };
        let malformed = cause.kind() == std::io::ErrorKind::InvalidData;
        if self.resumes >= READ_RESUMES || malformed || self.next > end {
            return false;
        }
        self.resumes += 1;
        std::thread::sleep(Duration::from_millis(250 * u64::from(self.resumes)));
        let range = Some((self.next, end));
        self.client
            .start_get(&self.key, range, Some(&etag))
            .is_ok_and(|(n, _)| n == Some(end - self.next + 1))
    }
}

impl std::io::Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = loop {
            match self.client.conn.read_body(buf) {
                Ok(n) => break n,
                Err(e) if self.resume(&e) => {}
                Err(e) => return Err(e),
            }
        };
        if let Some(left) = self.remaining {
            if n as u64 > left {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the store sent more bytes of {} than asked for", self.key),
                ));
            }
            if n == 0 && left > 0 && !buf.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the store sent {left} bytes fewer of {} than asked for",
                        self.key
                    ),
                ));
            }
            self.remaining = Some(left - n as u64);
        }
        self.next += n as u64;
        Ok(n)
    }
}

/// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, `-` and the part count;
/// `None` when a part's ETag is not an MD5.
pub fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    let mut md5s = Vec::with_capacity(parts.len() * 16);
    for p in parts {
        md5s.extend_from_slice(&unhex(p.etag.trim_matches('"')).filter(|b| b.len() == 16)?);
    }
    Some(format!("{}-{}", hex(&md5::Md5::digest(&md5s)), parts.len()))
}

/// The SHA-256 checksum S3 gives a multipart object: SHA-256 of the parts' binary checksums, base64,
/// `-` and the part count.
pub fn composite_checksum(parts: &[CompletedPart]) -> Option<String> {
    let mut sums = Vec::with_capacity(parts.len() * 32);
    for p in parts {
        sums.extend_from_slice(&unbase64(&p.checksum_sha256).filter(|b| b.len() == 32)?);
    }
    Some(format!(
        "{}-{}",
        base64(&Sha256::digest(&sums)),
        parts.len()
    ))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Standard base64 with padding, strictly.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, q) in b.chunks(4).enumerate() {
        let last = i + 1 == b.len() / 4;
        let pad = q.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for c in &q[..4 - pad] {
            n = n << 6 | value(*c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// A part for CompleteMultipartUpload.
#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub number: u32,
    pub etag: String,
    pub checksum_sha256: String,
}

/// One request before signing.
#[derive(Clone, Copy)]
struct Call<'a> {
    op: &'a str,
    method: &'a str,
    key: Option<&'a str>,
    query: &'a [(String, String)],
    extra: &'a [(String, String)],
    body: &'a [u8],
    body_sha256: Option<&'a str>,
}

/// One connection's worth of S3 calls.
pub struct Client {
    shared: Arc<Shared>,
    conn: Connection,
}

fn local_now(shared: &Shared) -> i64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    t + shared.cfg.local_clock_error
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: i64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn error_fields(r: &Response) -> (String, String) {
    let body = String::from_utf8_lossy(&r.body);
    (
        xml::text(&body, "Code").unwrap_or_else(|| format!("HTTP{}", r.status)),
        xml::text(&body, "Message").unwrap_or_default(),
    )
}

impl Client {
    fn bucket(&self) -> &str {
        &self.shared.cfg.bucket
    }

    fn adopt_date(&self, r: &Response) -> bool {
        let Some(server) = r.header("date").and_then(parse_http_date) else {
            return false;
        };
        let diff = server - local_now(&self.shared);
        let current = self.shared.offset.load(Ordering::Relaxed);
        if (diff - current).abs() > SKEW_TOLERANCE_SECS {
            self.shared.offset.store(diff, Ordering::Relaxed);
            self.shared
                .skewed
                .store(diff.abs() > SKEW_TOLERANCE_SECS, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Signs and sends, retrying dropped connections, 5xx answers and one clock correction.
    fn send(&mut self, call: Call<'_>) -> Result<Response, S3Error> {
        self.send_tracked(call).map(|(r, _)| r)
    }

    /// As [`Client::send`]; the flag is true when an earlier attempt may have reached the store
    /// without its answer reaching us (dropped connection, 5xx), so the store may already have acted.
    fn send_tracked(&mut self, call: Call<'_>) -> Result<(Response, bool), S3Error> {
        self.send_core(&call, false)
    }

    /// The retry loop. Error answers (4xx, 5xx) come back with their body read; a 2xx answer has its
    /// body left on the connection when `stream` is set, else read too.
    fn send_core(&mut self, call: &Call<'_>, stream: bool) -> Result<(Response, bool), S3Error> {
        let Call {
            op,
            method,
            key,
            query,
            extra,
            body,
            body_sha256,
        } = *call;
        let path = match key {
            Some(k) => format!("/{}/{}", self.bucket(), k),
            None => format!("/{}", self.bucket()),
        };
        let payload = match body_sha256 {
            Some(h) => h.to_owned(),
            None if body.is_empty() => EMPTY_SHA256.to_owned(),
            None => hex(&Sha256::digest(body)),
        };
        let q = sigv4::canonical_query(query);
        let target = if q.is_empty() {
            uri_encode(&path, true)
        } else {
            format!("{}?{q}", uri_encode(&path, true))
        };
        let mut clock_retry = false;
        let mut ambiguous = false;
        let mut last_err = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 && !clock_retry {
                std::thread::sleep(Duration::from_millis(250 << attempt.min(5)));
            }
            clock_retry = false;
            let now = local_now(&self.shared) + self.shared.offset.load(Ordering::Relaxed);
            let date = sigv4::amz_date(now);
            let mut headers = vec![
                ("host".to_owned(), self.shared.origin.host_header()),
                ("x-amz-date".to_owned(), date.clone()),
                ("x-amz-content-sha256".to_owned(), payload.clone()),
            ];
            if let Some(token) = self.shared.cfg.credentials.session_token() {
                headers.push(("x-amz-security-token".to_owned(), token.to_owned()));
            }
            headers.extend(extra.iter().cloned());
            let auth = sigv4::authorization(
                &self.shared.cfg.credentials,
                &self.shared.cfg.region,
                "s3",
                &date,
                &sigv4::Request {
                    method,
                    path: &path,
                    query,
                    headers: &headers,
                    payload_sha256: &payload,
                },
            );
            // The connection writes Host itself.
            let mut wire: Vec<(String, String)> = headers.into_iter().skip(1).collect();
            wire.push(("Authorization".to_owned(), auth));
            let answer = self
                .conn
                .send_request(method, &target, &wire, body)
                .and_then(|head| {
                    let body = if stream && (200..300).contains(&head.status) {
                        Vec::new()
                    } else {
                        self.conn.read_body_to_end(MAX_BUFFERED_BODY)?
                    };
                    Ok(Response {
                        status: head.status,
                        headers: head.headers,
                        body,
                    })
                });
            match answer {
                Ok(r) => {
                    let corrected = self.adopt_date(&r);
                    if r.status == 403 {
                        let (code, message) = error_fields(&r);
                        if code == "RequestTimeTooSkewed" {
                            if corrected {
                                clock_retry = true;
                                continue;
                            }
                            return Err(S3Error::RejectClock {
                                offset_secs: self.shared.offset.load(Ordering::Relaxed),
                                message,
                            });
                        }
                    }
                    if r.status >= 500 {
                        let (code, message) = error_fields(&r);
                        ambiguous = true;
                        last_err = Some(S3Error::Status {
                            op: op.to_owned(),
                            status: r.status,
                            code,
                            message,
                        });
                        continue;
                    }
                    return Ok((r, ambiguous));
                }
                Err(e) if e.is_transient() => {
                    // Refused connections never reached the store; anything later may have.
                    ambiguous |= !matches!(e, HttpError::Connect { .. });
                    last_err = Some(S3Error::Http(e));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(match last_err {
            Some(S3Error::Http(source)) => S3Error::GiveUp {
                op: op.to_owned(),
                attempts: ATTEMPTS,
                source,
            },
            Some(e) => e,
            None => S3Error::ParseAnswer {
                op: op.to_owned(),
                what: "any answer".to_owned(),
            },
        })
    }

    fn check(&self, op: &str, what: &str, r: Response) -> Result<Response, S3Error> {
        if (200..300).contains(&r.status) {
            return Ok(r);
        }
        let (code, message) = error_fields(&r);
        Err(match code.as_str() {
            "NoSuchBucket" => S3Error::MissingBucket {
                bucket: self.bucket().to_owned(),
                endpoint: self.shared.cfg.endpoint.clone(),
            },
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => {
                S3Error::RejectCredentials { code, message }
            }
            "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch" => {
                S3Error::RejectChecksum {
                    what: what.to_owned(),
                    code,
                    message,
                }
            }
            _ => S3Error::Status {
                op: op.to_owned(),
                status: r.status,
                code,
                message,
            },
        })
    }

    /// Every object key (with its size) under `prefix`.
    pub fn list_objects(&mut self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("list-type".to_owned(), "2".to_owned()),
                ("prefix".to_owned(), prefix.to_owned()),
            ];
            if let Some(t) = &token {
                q.push(("continuation-token".to_owned(), t.clone()));
            }
            let r = self.send(Call {
                op: "ListObjectsV2",
                method: "GET",
                key: None,
                query: &q,
                extra: &[],
                body: &[],
                body_sha256: None,
            })?;
            let r = self.check("ListObjectsV2", prefix, r)?;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            for c in xml::elements(&body, "Contents") {
                if let Some(k) = xml::text(c, "Key") {
                    let size = xml::text(c, "Size")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    out.push((k, size));
                }
            }
            token = xml::text(&body, "NextContinuationToken");
            if xml::text(&body, "IsTruncated").as_deref() != Some("true") || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The object's size, or `None` if it does not exist.
    pub fn head_object(&mut self, key: &str) -> Result<Option<u64>, S3Error> {
        let r = self.send(Call {
            op: "HeadObject",
            method: "HEAD",
            key: Some(key),
            query: &[],
            extra: &[],
            body: &[],
            body_sha256: None,
        })?;
        if r.status == 404 {
            return Ok(None);
        }
        let r = self.check("HeadObject", key, r)?;
        Ok(r.header("content-length").and_then(|l| l.parse().ok()))
    }

    /// The object's size, ETag and (when the store keeps one) SHA-256 checksum, or `None` if it
    /// does not exist.
    pub fn head_object_meta(&mut self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        let extra = [("x-amz-checksum-mode".to_owned(), "ENABLED".to_owned())];
        let r = self.send(Call {
            op: "HeadObject",
            method: "HEAD",
            key: Some(key),
            query: &[],
            extra: &extra,
            body: &[],
            body_sha256: None,
        })?;
        if r.status == 404 {
            return Ok(None);
        }
        let r = self.check("HeadObject", key, r)?;
        Ok(Some(ObjectMeta {
            size: r.header("content-length").and_then(|l| l.parse().ok()),
            etag: r.header("etag").map(|e| e.trim_matches('"').to_owned()),
            checksum_sha256: r.header("x-amz-checksum-sha256").map(str::to_owned),
        }))
    }

    /// The whole object, or the inclusive byte range `[start, end]`, as a stream: nothing is
    /// buffered, so parts of any size can be hashed as they arrive. The answer's length is checked
    /// against the range. A connection lost mid-body is resumed where it broke (a ranged GET with
    /// `If-Match` on the first answer's ETag, so a changed object is an error, never a splice), up
    /// to [`READ_RESUMES`] times; then the reader returns the error.
    pub fn get_object_reader(
        &mut self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ObjectReader<'_>, S3Error> {
        let (expected, etag) = self.start_get(key, range, None)?;
        let next = range.map_or(0, |(a, _)| a);
        Ok(ObjectReader {
            client: self,
            key: key.to_owned(),
            next,
            end: expected.and_then(|n| (next + n).checked_sub(1)),
            remaining: expected,
            etag,
            resumes: 0,
        })
    }

    /// Sends a GET whose body stays on the connection; returns the body's length (as asked for, or
    /// as the store says) and the object's ETag.
    fn start_get(
        &mut self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<(Option<u64>, Option<String>), S3Error> {
        let mut extra: Vec<(String, String)> = range
            .map(|(a, b)| vec![("range".to_owned(), format!("bytes={a}-{b}"))])
            .unwrap_or_default();
        if let Some(e) = if_match {
            extra.push(("if-match".to_owned(), format!("\"{e}\"")));
        }
        let call = Call {
            op: "GetObject",
            method: "GET",
            key: Some(key),
            query: &[],
            extra: &extra,
            body: &[],
            body_sha256: None,
        };
        let (r, _) = self.send_core(&call, true)?;
        let r = self.check("GetObject", key, r)?;
        let length: Option<u64> = r.header("content-length").and_then(|l| l.parse().ok());
        let etag = r.header("etag").map(|e| e.trim_matches('"').to_owned());
        let expected = match range {
            Some((a, b)) => {
                let want = b.saturating_sub(a).saturating_add(1);
                if let Some(got) = length.filter(|l| *l != want) {
                    return Err(S3Error::ParseAnswer {
                        op: "GetObject".to_owned(),
                        what: format!("the {want} bytes asked for (got {got})"),
                    });
                }
                Some(want)
            }
            None => length,
        };
        Ok((expected, etag))
    }

    /// The whole object, or the inclusive byte range `[start, end]`.
    pub fn get_object(&mut self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, S3Error> {
        let extra: Vec<(String, String)> = range
            .map(|(a, b)| vec![("range".to_owned(), format!("bytes={a}-{b}"))])
            .unwrap_or_default();
        let r = self.send(Call {
            op: "GetObject",
            method: "GET",
            key: Some(key),
            query: &[],
            extra: &extra,
            body: &[],
            body_sha256: None,
        })?;
        let r = self.check("GetObject", key, r)?;
        if let Some((a, b)) = range
            && r.body.len() as u64 != b - a + 1
        {
            return Err(S3Error::ParseAnswer {
                op: "GetObject".to_owned(),
                what: format!("the {} bytes asked for (got {})", b - a + 1, r.body.len()),
            });
        }
        Ok(r.body)
    }

    /// Stores a small object with its SHA-256 checksum; `if_absent` refuses to replace an existing one.
    pub fn put_object(&mut self, key: &str, data: &[u8], if_absent: bool) -> Result<(), S3Error> {
        let digest = Sha256::digest(data);
        let mut extra = vec![("x-amz-checksum-sha256".to_owned(), base64(&digest))];
        if if_absent {
            extra.push(("if-none-match".to_owned(), "*".to_owned()));
        }
        let (r, ambiguous) = self.send_tracked(Call {
            op: "PutObject",
            method: "PUT",
            key: Some(key),
            query: &[],
            extra: &extra,
            body: data,
            body_sha256: Some(&hex(&digest)),
        })?;
        // An earlier attempt may have stored the object before its answer was lost: then the 412
        // is about our own object, which reads back byte for byte.
        if r.status == 412
            && if_absent
            && ambiguous
            && self
                .get_object(key, None)
                .is_ok_and(|stored| stored == data)
        {
            return Ok(());
        }
        self.check("PutObject", key, r).map(|_| ())
    }

    pub fn delete_object(&mut self, key: &str) -> Result<(), S3Error> {
        let r = self.send(Call {
            op: "DeleteObject",
            method: "DELETE",
            key: Some(key),
            query: &[],
            extra: &[],
            body: &[],
            body_sha256: None,
        })?;
        if r.status == 404 {
            return Ok(());
        }
        self.check("DeleteObject", key, r).map(|_| ())
    }

    /// Starts a multipart upload with SHA-256 part checksums; returns the upload id.
    pub fn create_multipart(&mut self, key: &str) -> Result<String, S3Error> {
        let q = [("uploads".to_owned(), String::new())];
        let extra = [("x-amz-checksum-algorithm".to_owned(), "SHA256".to_owned())];
        let r = self.send(Call {
            op: "CreateMultipartUpload",
            method: "POST",
            key: Some(key),
            query: &q,
            extra: &extra,
            body: &[],
            body_sha256: None,
        })?;
        let r = self.check("CreateMultipartUpload", key, r)?;
        xml::text(&String::from_utf8_lossy(&r.body), "UploadId").ok_or_else(|| {
            S3Error::ParseAnswer {
                op: "CreateMultipartUpload".to_owned(),
                what: "UploadId".to_owned(),
            }
        })
    }

    /// Uploads part `number`; `sha256` is the data's digest. Returns the ETag.
    pub fn upload_part(
        &mut self,
        key: &str,
        upload_id: &str,
        number: u32,
        data: &[u8],
        sha256: &[u8; 32],
    ) -> Result<String, S3Error> {
        let q = [
            ("partNumber".to_owned(), number.to_string()),
            ("uploadId".to_owned(), upload_id.to_owned()),
        ];
        let extra = [("x-amz-checksum-sha256".to_owned(), base64(sha256))];
        let what = format!("part {number} of {key}");
        let (r, ambiguous) = self.send_tracked(Call {
            op: "UploadPart",
            method: "PUT",
            key: Some(key),
            query: &q,
            extra: &extra,
            body: data,
            body_sha256: Some(&hex(sha256)),
        })?;
        // Refused after an attempt whose answer was lost, or refused because the store will not
        // replace a part it holds (s3s-fs answers 403): the part may be there already, ours.
        if (400..500).contains(&r.status)
            && (ambiguous || r.status == 403)
            && let Ok(Some(etag)) = self.held_part(key, upload_id, number, data, sha256)
        {
            return Ok(etag);
        }
        let r = self.check("UploadPart", &what, r)?;
        r.header("etag")
            .map(str::to_owned)
            .ok_or_else(|| S3Error::ParseAnswer {
                op: "UploadPart".to_owned(),
                what: "ETag".to_owned(),
            })
    }

    /// The ETag of part `number` when the store holds it with exactly these bytes (its SHA-256
    /// checksum, or an MD5 ETag, matches).
    fn held_part(
        &mut self,
        key: &str,
        upload_id: &str,
        number: u32,
        data: &[u8],
        sha256: &[u8; 32],
    ) -> Result<Option<String>, S3Error> {
        let parts = self.list_parts(key, upload_id)?;
        let Some(p) = parts.into_iter().find(|p| p.number == number) else {
            return Ok(None);
        };
        if p.size != data.len() as u64 {
            return Ok(None);
        }
        let proven = match &p.checksum_sha256 {
            Some(c) => *c == base64(sha256),
            None => p.etag.trim_matches('"') == hex(&md5::Md5::digest(data)),
        };
        Ok(proven.then_some(p.etag))
    }

    /// The parts uploaded so far.
    pub fn list_parts(&mut self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>, S3Error> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut q = vec![("uploadId".to_owned(), upload_id.to_owned())];
            if let Some(m) = &marker {
                q.push(("part-number-marker".to_owned(), m.clone()));
            }
            let r = self.send(Call {
                op: "ListParts",
                method: "GET",
                key: Some(key),
                query: &q,
                extra: &[],
                body: &[],
                body_sha256: None,
            })?;
            let r = self.check("ListParts", key, r)?;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            for p in xml::elements(&body, "Part") {
                let number = xml::text(p, "PartNumber").and_then(|n| n.parse().ok());
                let size = xml::text(p, "Size").and_then(|n| n.parse().ok());
                if let (Some(number), Some(size)) = (number, size) {
                    out.push(ListedPart {
                        number,
                        size,
                        etag: xml::text(p, "ETag").unwrap_or_default(),
                        checksum_sha256: xml::text(p, "ChecksumSHA256"),
                    });
                }
            }
            marker = xml::text(&body, "NextPartNumberMarker");
            if xml::text(&body, "IsTruncated").as_deref() != Some("true") || marker.is_none() {
                out.sort_by_key(|p| p.number);
                return Ok(out);
            }
        }
    }

    pub fn complete_multipart(
        &mut self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), S3Error> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for p in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>",
                p.number,
                xml::escape(&p.etag),
                p.checksum_sha256
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let q = [("uploadId".to_owned(), upload_id.to_owned())];
        let (r, ambiguous) = self.send_tracked(Call {
            op: "CompleteMultipartUpload",
            method: "POST",
            key: Some(key),
            query: &q,
            extra: &[],
            body: body.as_bytes(),
            body_sha256: None,
        })?;
        // A store forgets a finished upload: a retry of a Complete whose answer was lost gets 404
        // NoSuchUpload (moto), or 403 AccessDenied (s3s-fs 0.14). Either way, look for the object.
        if (r.status == 404 || (ambiguous && (400..500).contains(&r.status)))
            && matches!(self.holds_completed(key, parts, ambiguous), Ok(true))
        {
            return Ok(());
        }
        let r = self.check("CompleteMultipartUpload", key, r)?;
        // S3 may answer 200 with an error document after a long merge.
        let text = String::from_utf8_lossy(&r.body);
        if let Some(code) = xml::text(&text, "Code").filter(|_| text.contains("<Error>")) {
            return Err(S3Error::Status {
                op: "CompleteMultipartUpload".to_owned(),
                status: r.status,
                code,
                message: xml::text(&text, "Message").unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Whether the object under `key` is the one completing `parts` makes: its ETag is the
    /// multipart ETag of the parts' MD5 ETags, or its SHA-256 checksum is the composite of theirs;
    /// after a lost answer (`ambiguous`) a multipart ETag of the right part count is enough (stores
    /// whose ETags are not MD5s).
    fn holds_completed(
        &mut self,
        key: &str,
        parts: &[CompletedPart],
        ambiguous: bool,
    ) -> Result<bool, S3Error> {
        let Some(meta) = self.head_object_meta(key)? else {
            return Ok(false);
        };
        let etag = meta.etag.unwrap_or_default();
        if multipart_etag(parts).is_some_and(|e| e == etag) {
            return Ok(true);
        }
        if let (Some(have), Some(want)) = (&meta.checksum_sha256, composite_checksum(parts))
            && *have == want
        {
            return Ok(true);
        }
        Ok(ambiguous && etag.ends_with(&format!("-{}", parts.len())))
    }

    pub fn abort_multipart(&mut self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let q = [("uploadId".to_owned(), upload_id.to_owned())];
        let r = self.send(Call {
            op: "AbortMultipartUpload",
            method: "DELETE",
            key: Some(key),
            query: &q,
            extra: &[],
            body: &[],
            body_sha256: None,
        })?;
        if r.status == 404 {
            return Ok(());
        }
        self.check("AbortMultipartUpload", key, r).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_and_checksums_follow_s3() {
        // Two parts "a" * 5 MiB and "b": the S3 ETag is md5(md5(a) || md5(b))-2.
        let a = vec![b'a'; 5 << 20];
        let parts: Vec<CompletedPart> = [&a[..], b"b"]
            .iter()
            .enumerate()
            .map(|(i, d)| CompletedPart {
                number: i as u32 + 1,
                etag: format!("\"{}\"", hex(&md5::Md5::digest(d))),
                checksum_sha256: base64(&Sha256::digest(d)),
            })
            .collect();
        let mut md5s = md5::Md5::digest(&a).to_vec();
        md5s.extend_from_slice(&md5::Md5::digest(b"b"));
        assert_eq!(
            multipart_etag(&parts),
            Some(format!("{}-2", hex(&md5::Md5::digest(&md5s))))
        );
        let mut sums = Sha256::digest(&a).to_vec();
        sums.extend_from_slice(&Sha256::digest(b"b"));
        assert_eq!(
            composite_checksum(&parts),
            Some(format!("{}-2", base64(&Sha256::digest(&sums))))
        );
        let odd = [CompletedPart {
            number: 1,
            etag: "not-an-md5".to_owned(),
            checksum_sha256: "???".to_owned(),
        }];
        assert_eq!(
            (multipart_etag(&odd), composite_checksum(&odd)),
            (None, None)
        );
    }

    #[test]
    fn http_dates_and_base64() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foobar",
            &[0xff, 0xfe, 0x00, 0x80],
        ] {
            assert_eq!(unbase64(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(unbase64("Zg="), None);
        assert_eq!(unbase64("Z=g="), None);
        assert_eq!(unbase64("Zg==Zg=="), None);
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // SHA-256 of "" in the form S3 uses for x-amz-checksum-sha256.
        assert_eq!(
            base64(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
