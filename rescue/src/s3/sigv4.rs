//! AWS Signature Version 4 for the `Authorization` header (the "header-based auth" flavour S3 uses):
//! canonical request, string to sign, derived signing key, HMAC-SHA256 signature. Pure functions over
//! strings; the time is an argument so tests use AWS's published vectors.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::acquire::hash::hex;

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of an empty payload, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key pair, with the session token of temporary (STS/SSO) credentials. `Debug` never
/// shows the secret or the token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            session_token: None,
        }
    }

    /// Temporary credentials: requests carry the token as `x-amz-security-token` (signed).
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

/// One request as SigV4 sees it. `path` is the raw (unencoded) absolute path; `query` raw pairs;
/// `headers` the headers to sign (names any case; `host` and `x-amz-date` must be among them).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub payload_sha256: &'a str,
}

/// RFC 3986 unreserved characters pass; everything else is `%XX` (uppercase). `/` passes when
/// `keep_slash` (object key paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: pairs encoded, sorted by name then value, joined with `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    h.sort();
    let canonical = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// The canonical request and the signed-headers list.
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(req.headers);
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, true),
        canonical_query(req.query),
        headers,
        signed,
        req.payload_sha256
    );
    (text, signed)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `Authorization` header value for `req` signed at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn authorization(
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (creq, signed) = canonical_request(req);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        creds.access_key
    )
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch (the epoch itself for a time chrono cannot hold).
pub fn amz_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // AWS Signature Version 4 test suite, "get-vanilla" and "get-vanilla-query-order-key-case".
    #[test]
    fn aws_test_suite_get_vanilla() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let headers = h(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            canonical_request(&req).0,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            authorization(&creds, "us-east-1", "service", "20150830T123600Z", &req),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        let query = h(&[("Param2", "value2"), ("Param1", "value1")]);
        let req = Request {
            query: &query,
            ..req
        };
        assert!(
            authorization(&creds, "us-east-1", "service", "20150830T123600Z", &req).ends_with(
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    // The S3 documentation's "GET Object" example (sig-v4-header-based-auth).
    #[test]
    fn s3_documentation_get_object_example() {
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        let headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        assert!(
            authorization(&creds, "us-east-1", "s3", "20130524T000000Z", &req).ends_with(
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(uri_encode("a b/c~d$", true), "a%20b/c~d%24");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert!(!format!("{:?}", Credentials::new("AK", "SECRET")).contains("SECRET"));
        let temporary = Credentials::new("AK", "SECRET").with_session_token("TOKEN");
        assert_eq!(temporary.session_token(), Some("TOKEN"));
        assert!(!format!("{temporary:?}").contains("TOKEN"));
    }
}
