//! The S3 operations the acquisition needs, path-style (`/BUCKET/KEY`), signed with SigV4, over the
//! blocking HTTP client: ListObjectsV2, Head/Get (with `Range`)/Put/DeleteObject, and the multipart
//! calls (Create, UploadPart with `x-amz-checksum-sha256`, ListParts, Complete, Abort).
//!
//! Clock: every response's `Date` header is compared with the local clock; when they differ by more
//! than a minute the offset is adopted and every later request is signed with the corrected time (a
//! compromised server's RTC may be wrong, and SigV4 refuses more than 15 minutes of skew). The offset is
//! readable by the caller, which records it; nothing here prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::http::{Connection, HttpError, Origin, Response, Trust, tls_config};
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

/// A part for CompleteMultipartUpload.
#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub number: u32,
    pub etag: String,
    pub checksum_sha256: String,
}

/// One request before signing.
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
        let Call {
            op,
            method,
            key,
            query,
            extra,
            body,
            body_sha256,
        } = call;
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
            match self.conn.request(method, &target, &wire, body) {
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
                        last_err = Some(S3Error::Status {
                            op: op.to_owned(),
                            status: r.status,
                            code,
                            message,
                        });
                        continue;
                    }
                    return Ok(r);
                }
                Err(e) if e.is_transient() => last_err = Some(S3Error::Http(e)),
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
        let r = self.send(Call {
            op: "PutObject",
            method: "PUT",
            key: Some(key),
            query: &[],
            extra: &extra,
            body: data,
            body_sha256: Some(&hex(&digest)),
        })?;
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
        let r = self.send(Call {
            op: "UploadPart",
            method: "PUT",
            key: Some(key),
            query: &q,
            extra: &extra,
            body: data,
            body_sha256: Some(&hex(sha256)),
        })?;
        let r = self.check("UploadPart", &what, r)?;
        r.header("etag")
            .map(str::to_owned)
            .ok_or_else(|| S3Error::ParseAnswer {
                op: "UploadPart".to_owned(),
                what: "ETag".to_owned(),
            })
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
        let r = self.send(Call {
            op: "CompleteMultipartUpload",
            method: "POST",
            key: Some(key),
            query: &q,
            extra: &[],
            body: body.as_bytes(),
            body_sha256: None,
        })?;
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
