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

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110; an RFC 2822 date) to Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.timestamp())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
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
}

mod multipart;
mod objects;

pub use self::multipart::{
    CompletedPart, ListedPart, composite_checksum, multipart_etag, unbase64,
};
pub use self::objects::{ObjectMeta, ObjectReader, READ_RESUMES};

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
