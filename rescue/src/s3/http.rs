//! A small blocking HTTP/1.1 client for one origin: keep-alive connections over TCP or TLS (rustls with
//! the `ring` provider), `Content-Length` and chunked response bodies, response headers kept for the
//! caller (S3 needs `Date` and `ETag`). It only connects out; it never listens.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("endpoint {0:?} is not an http:// or https:// URL with a host")]
    ParseEndpoint(String),
    #[error("resolving {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("reading CA certificates from {path}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable PEM certificate")]
    EmptyCa { path: PathBuf },
    #[error(
        "no CA certificates: the system bundle {0} is missing; give --ca FILE (or --insecure, recorded in the manifest)"
    )]
    MissingCa(String),
    #[error("setting up TLS")]
    ConfigureTls(#[source] rustls::Error),
    #[error("talking to {addr}")]
    Exchange {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "TLS with {addr} failed (a certificate the CA bundle does not vouch for needs --ca FILE, or --insecure)"
    )]
    Tls {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("malformed HTTP response from {addr}: {what}")]
    ParseResponse { addr: String, what: String },
}

impl HttpError {
    /// True when trying again on a fresh connection may help (dropped connection, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Exchange { .. } | Self::ParseResponse { .. }
        )
    }
}

/// How to check the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system bundle (`/etc/ssl/certs/ca-certificates.crt`).
    System,
    /// PEM certificates from this file.
    CaFile(PathBuf),
    /// No check at all (`--insecure`; recorded in the manifest).
    Insecure,
}

/// System CA bundle path on Debian.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where requests go: scheme, host and port of the endpoint URL (any path in it is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::ParseEndpoint(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_owned(), p.parse().map_err(|_| bad())?)
            }
            _ => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self { tls, host, port })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A response with its body read completely.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Builds the TLS configuration once per client.
pub fn tls_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HttpError::ConfigureTls)?;
    let config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
            .with_no_client_auth(),
        Trust::System | Trust::CaFile(_) => {
            let path = match trust {
                Trust::CaFile(p) => p.clone(),
                _ => {
                    let p = PathBuf::from(SYSTEM_CA_BUNDLE);
                    if !p.exists() {
                        return Err(HttpError::MissingCa(SYSTEM_CA_BUNDLE.to_owned()));
                    }
                    p
                }
            };
            let roots = load_roots(&path)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, HttpError> {
    let pem = std::fs::read(path).map_err(|source| HttpError::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(HttpError::EmptyCa {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate (signatures on the handshake are still checked).
#[derive(Debug)]
struct AcceptAnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One keep-alive connection to an origin, opened lazily and reopened after an error.
pub struct Connection {
    origin: Origin,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    stream: Option<BufReader<Box<dyn Stream>>>,
}

impl Connection {
    pub fn new(origin: Origin, tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Self {
        Self {
            origin,
            tls,
            timeout,
            stream: None,
        }
    }

    fn connect(&self) -> Result<BufReader<Box<dyn Stream>>, HttpError> {
        let addr = self.origin.addr();
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|source| HttpError::Resolve {
                host: self.origin.host.clone(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let conn_err = |source| HttpError::Connect {
            addr: addr.clone(),
            source,
        };
        let tcp = tcp.ok_or_else(|| conn_err(last))?;
        tcp.set_read_timeout(Some(self.timeout)).map_err(conn_err)?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(conn_err)?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = ServerName::try_from(self.origin.host.clone())
                    .map_err(|_| HttpError::ParseEndpoint(self.origin.host.clone()))?;
                let conn = rustls::ClientConnection::new(Arc::clone(cfg), name)
                    .map_err(HttpError::ConfigureTls)?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Ok(BufReader::with_capacity(64 << 10, stream))
    }

    /// Sends one request (`target` is the encoded path and query) and reads the whole response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let result = self.exchange(method, target, headers, body);
        match &result {
            Ok(r)
                if r.header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close")) =>
            {
                self.stream = None
            }
            Err(_) => self.stream = None,
            Ok(_) => {}
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        let addr = self.origin.addr();
        let tls = self.tls.is_some();
        let io_err = |source: io::Error| {
            // rustls reports handshake and certificate failures as InvalidData.
            if tls && source.kind() == io::ErrorKind::InvalidData {
                HttpError::Tls {
                    addr: addr.clone(),
                    source,
                }
            } else {
                HttpError::Exchange {
                    addr: addr.clone(),
                    source,
                }
            }
        };
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::ParseResponse {
                addr,
                what: "no connection".to_owned(),
            });
        };
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.origin.host_header(),
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let w = stream.get_mut();
        w.write_all(head.as_bytes()).map_err(io_err)?;
        w.write_all(body).map_err(io_err)?;
        w.flush().map_err(io_err)?;
        read_response(stream, method == "HEAD").map_err(|e| match e {
            ReadError::Io(source) => io_err(source),
            ReadError::Parse(what) => HttpError::ParseResponse {
                addr: addr.clone(),
                what,
            },
        })
    }
}

enum ReadError {
    Io(io::Error),
    Parse(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = r.take(64 << 10).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        )));
    }
    while line.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ReadError::Parse("non-UTF-8 header line".to_owned()))
}

/// Reads a response from `r`. Bodies larger than 1 GiB are refused.
fn read_response(r: &mut impl BufRead, head_only: bool) -> Result<Response, ReadError> {
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Parse(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Parse(format!("status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Parse(format!("header line {line:?}")))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 {
            return Ok(resp);
        }
        let body = if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            read_chunked(r)?
        } else if let Some(len) = resp.header("content-length") {
            let len: u64 = len
                .parse()
                .map_err(|_| ReadError::Parse(format!("content-length {len:?}")))?;
            if len > 1 << 30 {
                return Err(ReadError::Parse(format!("body of {len} bytes")));
            }
            let mut body = vec![0; len as usize];
            r.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            r.take(1 << 30).read_to_end(&mut body)?;
            body
        };
        return Ok(Response { body, ..resp });
    }
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Parse(format!("chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > 1 << 30 {
            return Err(ReadError::Parse("chunked body over 1 GiB".to_owned()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports() {
        let o = Origin::parse("http://127.0.0.1:9000/ignored").unwrap();
        assert_eq!((o.tls, o.host.as_str(), o.port), (false, "127.0.0.1", 9000));
        assert_eq!(o.host_header(), "127.0.0.1:9000");
        let o = Origin::parse("https://s3.example.org").unwrap();
        assert_eq!(
            (o.tls, o.port, o.host_header()),
            (true, 443, "s3.example.org".to_owned())
        );
        assert!(Origin::parse("ftp://x").is_err());
        assert!(Origin::parse("http://").is_err());
    }

    #[test]
    fn responses_parse_with_length_chunked_and_continue() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let a = read_response(&mut r, false).ok().unwrap();
        assert_eq!(
            (a.status, a.body.as_slice(), a.header("date")),
            (200, &b"hello"[..], Some("x"))
        );
        let b = read_response(&mut r, false).ok().unwrap();
        assert_eq!((b.status, b.body.as_slice()), (404, &b"abcde"[..]));
        assert!(read_response(&mut r, false).is_err());
    }
}
