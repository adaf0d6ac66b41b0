//! Just enough XML for S3's responses: the text of named elements and the bodies of repeated elements.
//! S3 answers with flat, namespace-default documents (no attributes we need, no CDATA), so a tag scanner
//! is sufficient and keeps a parser dependency out of the static binary.

/// The bodies of every `<tag>…</tag>` (also `<tag attr="…">`), in document order, not nested.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        // `<Part>` or `<Part …>`, not `<PartNumber>`.
        let Some(c) = after.chars().next() else { break };
        if c != '>' && !c.is_whitespace() {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` element.
pub fn text(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|t| unescape(t.trim()))
}

/// Resolves the five predefined entities and numeric references.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an element body.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parts_response_is_read() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
<Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag><Size>8388608</Size></Part>
<Part><PartNumber>2</PartNumber><ChecksumSHA256>q80=</ChecksumSHA256><Size>5</Size></Part>
<IsTruncated>false</IsTruncated></ListPartsResult>"#;
        let parts = elements(xml, "Part");
        assert_eq!(parts.len(), 2);
        assert_eq!(text(parts[0], "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(text(parts[1], "PartNumber").as_deref(), Some("2"));
        assert_eq!(text(parts[1], "ChecksumSHA256").as_deref(), Some("q80="));
        assert_eq!(text(xml, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(text(xml, "Missing"), None);
        assert_eq!(unescape("a&amp;b&#65;&#x42;&bogus"), "a&bAB&bogus");
        assert_eq!(escape("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}

/// Fuzz targets (see `crate::fuzzing`): S3's XML answers (ListParts, ListObjectsV2, errors, multipart
/// initiation), read the way the client reads them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn answers(b: &[u8]) {
        let xml = String::from_utf8_lossy(b);
        for part in elements(&xml, "Part") {
            for tag in ["PartNumber", "ETag", "Size", "ChecksumSHA256"] {
                let _ = text(part, tag);
            }
        }
        for c in elements(&xml, "Contents") {
            let _ = text(c, "Key");
            let _ = text(c, "Size");
        }
        for tag in [
            "Code",
            "Message",
            "UploadId",
            "IsTruncated",
            "NextPartNumberMarker",
            "NextContinuationToken",
        ] {
            if let Some(t) = text(&xml, tag) {
                // What we escape comes back the same.
                assert_eq!(unescape(&escape(&t)), t);
            }
        }
        let s = unescape(&xml);
        assert!(s.len() <= xml.len() * 4, "unescaping grew the text");
    }

    #[test]
    fn s3_xml() {
        Target::new("s3-xml")
            .seed(r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><UploadId>u&amp;1</UploadId>
<Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag><Size>8388608</Size></Part>
<Part><PartNumber>2</PartNumber><ChecksumSHA256>q80=</ChecksumSHA256><Size>5</Size></Part>
<IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker></ListPartsResult>"#)
            .seed(r#"<ListBucketResult><Contents><Key>case/a&#x41;&#65;.raw</Key><Size>10</Size></Contents><Contents/><NextContinuationToken>t</NextContinuationToken></ListBucketResult>"#)
            .seed(r#"<Error><Code>NoSuchUpload</Code><Message>The upload &lt;x&gt; does not exist</Message></Error>"#)
            .dict(&[b"<Part>", b"</Part>", b"<Part ", b"/>", b"&amp;", b"&#x", b"&#", b";", b"<ETag>", b"</ETag>", b"&#x110000;", b"&#xD800;"])
            .run(answers);
    }
}
