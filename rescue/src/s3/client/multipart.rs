//! Multipart uploads: create, upload parts (a part the store already holds with our bytes is accepted),
//! list, complete (a completion whose answer was lost is found by the object it made), abort; the
//! multipart ETag and composite checksum S3 computes.

use super::*;

/// A part as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    /// Base64 SHA-256 when the store reports it.
    pub checksum_sha256: Option<String>,
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
    hex::decode(s).ok()
}

/// Standard base64 with padding, strictly (canonical padding, no other characters).
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A part for CompleteMultipartUpload.
#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub number: u32,
    pub etag: String,
    pub checksum_sha256: String,
}

impl Client {
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

    /// The multipart uploads in progress under `prefix`: (key, upload id). Stores that do not keep
    /// such a listing (s3s-fs) answer an error.
    pub fn list_multipart_uploads(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q = vec![
                ("uploads".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.to_owned()),
            ];
            if let Some((k, u)) = &markers {
                q.push(("key-marker".to_owned(), k.clone()));
                q.push(("upload-id-marker".to_owned(), u.clone()));
            }
            let r = self.send(Call {
                op: "ListMultipartUploads",
                method: "GET",
                key: None,
                query: &q,
                extra: &[],
                body: &[],
                body_sha256: None,
            })?;
            let r = self.check("ListMultipartUploads", prefix, r)?;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            for u in xml::elements(&body, "Upload") {
                if let (Some(k), Some(id)) = (xml::text(u, "Key"), xml::text(u, "UploadId")) {
                    out.push((k, id));
                }
            }
            let next =
                xml::text(&body, "NextKeyMarker").zip(xml::text(&body, "NextUploadIdMarker"));
            if xml::text(&body, "IsTruncated").as_deref() != Some("true")
                || next.is_none()
                || next == markers
            {
                return Ok(out);
            }
            markers = next;
        }
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
