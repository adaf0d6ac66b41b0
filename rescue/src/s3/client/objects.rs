//! Objects: list, head, ranged and streamed GETs (resumed where a connection broke), PUT (conditional),
//! DELETE.

use super::*;

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

impl Client {
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
}
