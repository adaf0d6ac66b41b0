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
        header(&self.headers, name)
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

/// Bodies at least this large are sent with `Expect: 100-continue`: a store that refuses the request
/// says so before megabytes travel, and its answer is not lost to a broken pipe.
pub const EXPECT_CONTINUE_BYTES: usize = 1 << 20;
/// How long to wait for `100 Continue` (or an early refusal) before sending the body anyway: servers
/// that ignore `Expect` never answer it (RFC 9110 §10.1.1).
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);
/// [`Connection::request`] refuses bodies larger than this; stream them with [`Connection::body_reader`].
pub const MAX_BUFFERED_BODY: u64 = 1 << 30;

/// The status line and headers of a response whose body has not been read yet.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response the server sent that breaks HTTP/1.1 framing (carried inside an `io::Error`).
#[derive(Debug)]
struct Malformed(String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

fn malformed(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(what.into()))
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many `Content-Length` bytes remain.
    Length(u64),
    /// Chunked: bytes left in the current chunk; `started` once a chunk was read (a CRLF follows it).
    Chunked { left: u64, started: bool },
    /// Until the server closes the connection.
    Eof,
    /// Read completely.
    Done,
}

impl Framing {
    fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Length(0))
    }
}

/// The body of the response [`Connection::send_request`] returned, not yet read.
#[derive(Debug, Clone, Copy)]
struct Pending {
    framing: Framing,
    /// The connection may carry another request once the body is read.
    keep: bool,
}

/// One keep-alive connection to an origin, opened lazily and reopened after an error. A connection
/// is reused only when the last response was HTTP/1.1, did not say `Connection: close`, and its body
/// had a known end and was read to it.
pub struct Connection {
    origin: Origin,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    stream: Option<BufReader<Box<dyn Stream>>>,
    /// The same socket as `stream`, to shorten its read timeout while waiting for `100 Continue`.
    socket: Option<TcpStream>,
    pending: Option<Pending>,
    opened: u64,
}

impl Connection {
    pub fn new(origin: Origin, tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Self {
        Self {
            origin,
            tls,
            timeout,
            stream: None,
            socket: None,
            pending: None,
            opened: 0,
        }
    }

    /// How many TCP connections this has opened so far (tests prove reuse and non-reuse with it).
    pub fn connections_opened(&self) -> u64 {
        self.opened
    }

    fn connect(&self) -> Result<(BufReader<Box<dyn Stream>>, TcpStream), HttpError> {
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
        let socket = tcp.try_clone().map_err(conn_err)?;
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
        Ok((BufReader::with_capacity(64 << 10, stream), socket))
    }

    fn close(&mut self) {
        self.stream = None;
        self.socket = None;
        self.pending = None;
    }

    /// Keeps the connection for the next request only when the last body was read to its end.
    fn settle(&mut self) {
        if let Some(p) = self.pending.take()
            && !(p.keep && p.framing.finished())
        {
            self.close();
        }
    }

    fn classify(&self, source: io::Error) -> HttpError {
        let addr = self.origin.addr();
        if let Some(m) = source.get_ref().and_then(|e| e.downcast_ref::<Malformed>()) {
            return HttpError::ParseResponse {
                addr,
                what: m.0.clone(),
            };
        }
        // rustls reports handshake and certificate failures as InvalidData.
        if self.tls.is_some() && source.kind() == io::ErrorKind::InvalidData {
            HttpError::Tls { addr, source }
        } else {
            HttpError::Exchange { addr, source }
        }
    }

    /// Sends one request (`target` is the encoded path and query) and reads the whole response;
    /// bodies over [`MAX_BUFFERED_BODY`] are refused.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let head = self.send_request(method, target, headers, body)?;
        let body = self.read_body_to_end(MAX_BUFFERED_BODY)?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Reads the pending body completely, refusing more than `limit` bytes.
    pub fn read_body_to_end(&mut self, limit: u64) -> Result<Vec<u8>, HttpError> {
        if let Some(Pending {
            framing: Framing::Length(n),
            ..
        }) = self.pending
            && n > limit
        {
            self.close();
            return Err(HttpError::ParseResponse {
                addr: self.origin.addr(),
                what: format!("a body of {n} bytes (more than {limit} are not buffered)"),
            });
        }
        let mut body = Vec::new();
        let read = self.body_reader().take(limit + 1).read_to_end(&mut body);
        if let Err(e) = read {
            return Err(self.classify(e));
        }
        if body.len() as u64 > limit {
            self.close();
            return Err(HttpError::ParseResponse {
                addr: self.origin.addr(),
                what: format!("a body of more than {limit} bytes"),
            });
        }
        self.settle();
        Ok(body)
    }

    /// The pending body as a stream. Reading it to its end keeps the connection for the next
    /// request; dropping it earlier closes the connection.
    pub fn body_reader(&mut self) -> BodyReader<'_> {
        BodyReader { conn: self }
    }

    /// Sends one request and reads the response's status line and headers; the body is left for
    /// [`Connection::body_reader`] (or [`Connection::read_body_to_end`]). Bodies of at least
    /// [`EXPECT_CONTINUE_BYTES`] go with `Expect: 100-continue`, and a final answer that arrives
    /// before or while the body is sent is returned (the connection is then not reused).
    pub fn send_request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ResponseHead, HttpError> {
        self.settle();
        let mut result = self.exchange(method, target, headers, body, true);
        if let Ok((head, _)) = &result
            && head.status == 417
            && body.len() >= EXPECT_CONTINUE_BYTES
        {
            // Expectation Failed (an old proxy): once more, without `Expect`.
            self.close();
            result = self.exchange(method, target, headers, body, false);
        }
        match result {
            Ok((head, pending)) => {
                self.pending = Some(pending);
                Ok(head)
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
        allow_expect: bool,
    ) -> Result<(ResponseHead, Pending), HttpError> {
        if self.stream.is_none() {
            let (stream, socket) = self.connect()?;
            self.stream = Some(stream);
            self.socket = Some(socket);
            self.opened += 1;
        }
        let expect = allow_expect && body.len() >= EXPECT_CONTINUE_BYTES;
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.origin.host_header(),
            body.len()
        );
        if expect {
            head.push_str("Expect: 100-continue\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let head_only = method == "HEAD";
        let timeout = self.timeout;
        let (Some(stream), Some(socket)) = (self.stream.as_mut(), self.socket.as_ref()) else {
            return Err(HttpError::ParseResponse {
                addr: self.origin.addr(),
                what: "no connection".to_owned(),
            });
        };
        let sent = (|| -> io::Result<Option<(ResponseHead, Pending)>> {
            let w = stream.get_mut();
            w.write_all(head.as_bytes())?;
            if expect {
                w.flush()?;
                // A short wait for `100 Continue` or an early refusal, then the body regardless.
                socket.set_read_timeout(Some(EXPECT_WAIT.min(timeout)))?;
                let early = stream.fill_buf().map(|b| !b.is_empty());
                socket.set_read_timeout(Some(timeout))?;
                match early {
                    Ok(true) => {
                        let first = read_head(stream)?;
                        if !(100..200).contains(&first.0.status) {
                            // Refused before the body: the server may still expect it, so the
                            // connection is not reused.
                            let framing = framing(&first.0, head_only)?;
                            return Ok(Some((
                                first.0,
                                Pending {
                                    framing,
                                    keep: false,
                                },
                            )));
                        }
                    }
                    Ok(false) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection before the request body",
                        ));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            let w = stream.get_mut();
            if let Err(e) = w.write_all(body).and_then(|()| w.flush()) {
                // The server may have answered (a refusal) and closed before reading it all.
                return match read_final_head(stream) {
                    Ok((h, _)) => {
                        let framing = framing(&h, head_only)?;
                        Ok(Some((
                            h,
                            Pending {
                                framing,
                                keep: false,
                            },
                        )))
                    }
                    Err(_) => Err(e),
                };
            }
            Ok(None)
        })();
        let early = sent.map_err(|e| self.classify(e))?;
        if let Some(answer) = early {
            return Ok(answer);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::ParseResponse {
                addr: self.origin.addr(),
                what: "no connection".to_owned(),
            });
        };
        let read = read_final_head(stream).and_then(|(h, http11)| {
            let framing = framing(&h, head_only)?;
            let keep = reusable(&h, http11, framing);
            Ok((h, Pending { framing, keep }))
        });
        read.map_err(|e| self.classify(e))
    }

    /// Reads from the body of the last response; 0 at its end. Unlike [`Connection::body_reader`],
    /// stopping early leaves the decision to the next request (which then opens a new connection).
    pub fn read_body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(0);
        };
        if buf.is_empty() || p.framing == Framing::Done {
            return Ok(0);
        }
        let Some(stream) = self.stream.as_mut() else {
            self.pending = None;
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection was closed",
            ));
        };
        match read_framed(stream, &mut p.framing, buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }
}

/// The body of the last response, as a stream (see [`Connection::body_reader`]).
pub struct BodyReader<'a> {
    conn: &'a mut Connection,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.read_body(buf)
    }
}

impl Drop for BodyReader<'_> {
    fn drop(&mut self) {
        self.conn.settle();
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.take(64 << 10).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(malformed("a header line longer than 64 KiB"));
    }
    while line.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| malformed("non-UTF-8 header line"))
}

/// Reads one status line and its headers (an interim `1xx` too); the flag is true for HTTP/1.1.
fn read_head(r: &mut impl BufRead) -> io::Result<(ResponseHead, bool)> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| malformed(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= 256 {
            return Err(malformed("more than 256 header lines"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("header line {line:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok((ResponseHead { status, headers }, version == "HTTP/1.1"))
}

/// Reads heads until a final (non-`1xx`) one.
fn read_final_head(r: &mut impl BufRead) -> io::Result<(ResponseHead, bool)> {
    loop {
        let head = read_head(r)?;
        if !(100..200).contains(&head.0.status) {
            return Ok(head);
        }
    }
}

/// How the body after `head` ends (RFC 9112 §6.3).
fn framing(head: &ResponseHead, head_only: bool) -> io::Result<Framing> {
    if head_only || head.status == 204 || head.status == 304 {
        return Ok(Framing::Done);
    }
    if head
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Framing::Chunked {
            left: 0,
            started: false,
        });
    }
    match head.header("content-length") {
        Some(len) => len
            .parse()
            .map(Framing::Length)
            .map_err(|_| malformed(format!("content-length {len:?}"))),
        None => Ok(Framing::Eof),
    }
}

/// Whether the connection can carry another request after this response's body: not after
/// HTTP/1.0 (no keep-alive unless negotiated, which we never ask for), `Connection: close`, or a
/// body that ends only when the server closes.
fn reusable(head: &ResponseHead, http11: bool, framing: Framing) -> bool {
    http11
        && framing != Framing::Eof
        && !head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
}

fn chunk_size(line: &str) -> io::Result<u64> {
    let text = line.split(';').next().unwrap_or("").trim();
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!("chunk size {line:?}")));
    }
    u64::from_str_radix(text, 16).map_err(|_| malformed(format!("chunk size {line:?}")))
}

/// Reads body bytes framed by `framing` into `buf`, advancing it; 0 at the end of the body.
fn read_framed(r: &mut impl BufRead, framing: &mut Framing, buf: &mut [u8]) -> io::Result<usize> {
    let cut = |left: u64| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed {left} bytes before the end of the body"),
        )
    };
    loop {
        match *framing {
            Framing::Done => return Ok(0),
            Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(0);
            }
            Framing::Length(left) => {
                let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = r.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(cut(left));
                }
                *framing = Framing::Length(left - n as u64);
                return Ok(n);
            }
            Framing::Chunked { left: 0, started } => {
                if started && !read_line(r)?.is_empty() {
                    return Err(malformed("no line end after a chunk"));
                }
                let size = chunk_size(&read_line(r)?)?;
                if size == 0 {
                    // Trailers, then the empty line.
                    let mut trailers = 0;
                    while !read_line(r)?.is_empty() {
                        trailers += 1;
                        if trailers > 256 {
                            return Err(malformed("more than 256 trailer lines"));
                        }
                    }
                    *framing = Framing::Done;
                    return Ok(0);
                }
                *framing = Framing::Chunked {
                    left: size,
                    started: true,
                };
            }
            Framing::Chunked { left, started } => {
                let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = r.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(cut(left));
                }
                *framing = Framing::Chunked {
                    left: left - n as u64,
                    started,
                };
                return Ok(n);
            }
            Framing::Eof => {
                let n = r.read(buf)?;
                if n == 0 {
                    *framing = Framing::Done;
                }
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Reads one whole response the way [`Connection`] does; the flag: may the connection be reused.
    fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<(Response, bool)> {
        let (head, http11) = read_final_head(r)?;
        let mut f = framing(&head, head_only)?;
        let keep = reusable(&head, http11, f);
        let mut body = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = read_framed(r, &mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        let ResponseHead { status, headers } = head;
        Ok((
            Response {
                status,
                headers,
                body,
            },
            keep,
        ))
    }

    fn is_malformed(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|e| e.is::<Malformed>())
    }

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
        let (a, keep) = read_response(&mut r, false).ok().unwrap();
        assert_eq!(
            (a.status, a.body.as_slice(), a.header("date")),
            (200, &b"hello"[..], Some("x"))
        );
        assert!(keep);
        let (b, keep) = read_response(&mut r, false).ok().unwrap();
        assert_eq!((b.status, b.body.as_slice()), (404, &b"abcde"[..]));
        assert!(keep);
        assert!(read_response(&mut r, false).is_err());
    }

    #[test]
    fn absurd_chunk_sizes_are_malformed_not_a_panic() {
        for size in [
            "ffffffffffffffff",
            "fffffffffffffffff",
            "+5",
            "",
            "-1",
            "0x10",
        ] {
            let raw = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n{size}\r\nxyz\r\n0\r\n\r\n"
            );
            let mut r = BufReader::new(raw.as_bytes());
            let e = read_response(&mut r, false).err().unwrap();
            assert!(is_malformed(&e), "{size:?}: {e}");
            assert!(e.to_string().contains("chunk size"), "{e}");
        }
        // A chunk without its CRLF, a chunk cut short, a length cut short.
        let mut r = BufReader::new(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"[..],
        );
        assert!(is_malformed(&read_response(&mut r, false).err().unwrap()));
        let mut r =
            BufReader::new(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc"[..]);
        let e = read_response(&mut r, false).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]);
        let e = read_response(&mut r, false).err().unwrap();
        assert!(e.to_string().contains("7 bytes before the end"), "{e}");
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"[..]);
        assert!(is_malformed(&read_response(&mut r, false).err().unwrap()));
        let mut r = BufReader::new(&b"HTTP/1.1 99999 Odd\r\n\r\n"[..]);
        assert!(is_malformed(&read_response(&mut r, false).err().unwrap()));
    }

    #[test]
    fn http10_close_and_read_to_eof_answers_are_not_reused() {
        let cases: [(&[u8], bool); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (
                b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nok", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", true),
        ];
        for (raw, want) in cases {
            let mut r = BufReader::new(raw);
            let (resp, keep) = read_response(&mut r, false).unwrap();
            assert_eq!(keep, want, "{}", String::from_utf8_lossy(raw));
            assert_eq!(resp.body.len(), if resp.status == 204 { 0 } else { 2 });
        }
    }

    /// A server on 127.0.0.1 that runs `serve` for each accepted connection, one after another.
    fn serve(
        connections: usize,
        serve: impl Fn(usize, TcpStream) + Send + 'static,
    ) -> (Origin, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for i in 0..connections {
                let (s, _) = listener.accept().unwrap();
                serve(i, s);
            }
        });
        let origin = Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        (origin, t)
    }

    /// Reads a request head; returns its lines.
    fn request_head(r: &mut impl BufRead) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap() == 0 {
                return lines;
            }
            if l == "\r\n" {
                return lines;
            }
            lines.push(l.trim_end().to_owned());
        }
    }

    fn content_length(head: &[String]) -> usize {
        head.iter()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse().unwrap())
    }

    #[test]
    fn a_connection_is_not_reused_after_an_http10_answer_read_to_eof() {
        let (origin, server) = serve(2, |_, s| {
            let mut r = BufReader::new(s.try_clone().unwrap());
            request_head(&mut r);
            let mut w = s;
            w.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        });
        let mut c = Connection::new(origin, None, Duration::from_secs(10));
        for _ in 0..2 {
            let r = c.request("GET", "/b/k", &[], b"").unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"until close"[..]));
        }
        assert_eq!(c.connections_opened(), 2);
        server.join().unwrap();
    }

    #[test]
    fn keep_alive_reuses_a_connection_only_after_a_body_read_to_its_end() {
        let (origin, server) = serve(2, |_, s| {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            while !request_head(&mut r).is_empty() {
                let body = b"0123456789";
                let _ = w.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = w.write_all(body);
                let _ = w.write_all(b"\r\n0\r\n\r\n");
            }
        });
        let mut c = Connection::new(origin, None, Duration::from_secs(10));
        for _ in 0..2 {
            let h = c.send_request("GET", "/b/k", &[], b"").unwrap();
            assert_eq!(h.status, 200);
            let mut body = String::new();
            c.body_reader().read_to_string(&mut body).unwrap();
            assert_eq!(body, "0123456789");
        }
        assert_eq!(c.connections_opened(), 1);
        // A body dropped half read: the next request needs a new connection.
        c.send_request("GET", "/b/k", &[], b"").unwrap();
        let mut three = [0u8; 3];
        c.body_reader().read_exact(&mut three).unwrap();
        let r = c.request("GET", "/b/k", &[], b"").unwrap();
        assert_eq!(r.body, b"0123456789");
        assert_eq!(c.connections_opened(), 2);
        drop(c);
        server.join().unwrap();
    }

    #[test]
    fn a_refusal_before_the_body_is_read_reaches_the_caller() {
        // The server reads the head only, refuses, and closes with the body unread.
        let (origin, server) = serve(1, |_, s| {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let head = request_head(&mut r);
            assert!(head.iter().any(|l| l == "Expect: 100-continue"), "{head:?}");
            let mut w = s;
            let doc = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
            w.write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{doc}",
                    doc.len()
                )
                .as_bytes(),
            )
            .unwrap();
        });
        let mut c = Connection::new(origin, None, Duration::from_secs(10));
        let part = vec![7u8; 16 << 20];
        let r = c.request("PUT", "/b/k?partNumber=1", &[], &part).unwrap();
        assert_eq!(r.status, 403);
        assert!(String::from_utf8_lossy(&r.body).contains("AccessDenied"));
        server.join().unwrap();
        assert_eq!(c.connections_opened(), 1);
    }

    #[test]
    fn large_bodies_follow_100_continue_and_servers_that_ignore_expect_still_get_them() {
        // 0: answers 100 Continue; 1: ignores Expect; 2: refuses it with 417 (an old proxy).
        for mode in 0..3 {
            let (origin, server) = serve(if mode == 2 { 2 } else { 1 }, move |i, s| {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let head = request_head(&mut r);
                let mut w = s;
                let expect = head.iter().any(|l| l == "Expect: 100-continue");
                if mode == 2 && i == 0 {
                    assert!(expect);
                    w.write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    return;
                }
                assert_eq!(expect, mode != 2, "{head:?}");
                if mode == 0 {
                    w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                }
                let mut body = vec![0u8; content_length(&head)];
                r.read_exact(&mut body).unwrap();
                let n = body.iter().filter(|b| **b == 7).count().to_string();
                w.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{n}", n.len()).as_bytes(),
                )
                .unwrap();
            });
            let mut c = Connection::new(origin, None, Duration::from_secs(10));
            let part = vec![7u8; 3 << 20];
            let r = c.request("PUT", "/b/k", &[], &part).unwrap();
            assert_eq!(
                (r.status, r.body),
                (200, (3u32 << 20).to_string().into_bytes())
            );
            server.join().unwrap();
        }
    }
}

/// Fuzz targets (see `crate::fuzzing`): a server's answer, head and body, as the client reads it.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    /// Reads every response in `b` the way [`Connection`] does, with a buffer size and a `HEAD` flag
    /// taken from the first byte; a body is never longer than the input (`read_body_to_end`'s limit
    /// is what bounds a real one).
    fn responses(b: &[u8]) {
        let (flags, rest) = b.split_first().unwrap_or((&0, b));
        let cap = 1 + usize::from(flags & 0x3f);
        let head_only = flags & 0x40 != 0;
        let mut r = io::BufReader::with_capacity(cap, rest);
        for _ in 0..8 {
            let Ok((head, http11)) = read_final_head(&mut r) else {
                return;
            };
            let Ok(mut f) = framing(&head, head_only) else {
                return;
            };
            let _ = reusable(&head, http11, f);
            let mut body = Vec::new();
            let mut buf = [0u8; 97];
            loop {
                match read_framed(&mut r, &mut f, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
                assert!(body.len() <= rest.len(), "a body longer than the answer");
            }
            if !f.finished() {
                return;
            }
        }
    }

    #[test]
    fn http_responses() {
        Target::new("http-response")
            .seed(b"\x10HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n")
            .seed(b"\x05HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: t\r\n\r\n")
            .seed(b"\x00HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n<Error><Code>NoSuchKey</Code></Error>")
            .seed(b"\x40HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n")
            .dict(&[
                b"\r\n",
                b"HTTP/1.1 ",
                b"HTTP/1.0 ",
                b"Transfer-Encoding: chunked\r\n",
                b"Content-Length: ",
                b"Connection: close\r\n",
                b"fffffffffffffff\r\n",
                b"0\r\n\r\n",
                b": ",
                b";",
            ])
            .run(responses);
    }
}
