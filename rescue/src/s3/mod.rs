//! S3-compatible object storage as an evidence destination: SigV4 signing ([`sigv4`]), a small blocking
//! HTTP/1.1 + TLS client ([`http`]), the S3 calls ([`client`]), multipart acquisition with resume
//! ([`upload`]) and verification by re-downloading ([`verify`]).
//!
//! Library code: nothing here prints or exits, and nothing listens — every connection is one the
//! operator started. Credentials are never logged (their `Debug` redacts the secret).

pub mod client;
pub mod credentials;
pub mod http;
pub mod sigv4;
pub mod upload;
pub mod verify;
pub mod xml;

pub use client::{S3Error, Store, StoreConfig};
pub use upload::{S3Url, UploadError, UploadEvent, UploadOptions, UploadOutcome, upload};
