//! rpm header blobs as the rpmdb stores them (the header without its 8-byte magic): a count of index
//! entries and the data length, the index (tag, type, offset, count; 16 bytes each, big-endian), then
//! the data store. Only reading values by tag; region tags and signatures are not checked (the
//! database is the suspect's own: what it says is compared with the disk, not trusted).

/// What is wrong with a header, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HeaderError(String);

impl HeaderError {
    pub fn new(what: impl Into<String>) -> HeaderError {
        HeaderError(what.into())
    }
}

fn bad<T>(what: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError(what.into()))
}

pub mod tag {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const ARCH: u32 = 1022;
    pub const OLDFILENAMES: u32 = 1027;
    pub const FILESIZES: u32 = 1028;
    pub const FILESTATES: u32 = 1029;
    pub const FILEMODES: u32 = 1030;
    pub const FILEDIGESTS: u32 = 1035;
    pub const FILELINKTOS: u32 = 1036;
    pub const FILEFLAGS: u32 = 1037;
    pub const FILEUSERNAME: u32 = 1039;
    pub const FILEGROUPNAME: u32 = 1040;
    pub const FILEVERIFYFLAGS: u32 = 1045;
    pub const DIRINDEXES: u32 = 1116;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const LONGFILESIZES: u32 = 5008;
    pub const FILEDIGESTALGO: u32 = 5011;
}

const CHAR: u32 = 1;
const INT8: u32 = 2;
const INT16: u32 = 3;
const INT32: u32 = 4;
const INT64: u32 = 5;
const STRING: u32 = 6;
const BIN: u32 = 7;
const STRING_ARRAY: u32 = 8;
const I18NSTRING: u32 = 9;

/// rpm's own limits (`hdrblobVerifyInfo`): at most 0xffff tags and 256 MiB of data.
const MAX_TAGS: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    kind: u32,
    offset: usize,
    count: usize,
}

/// A parsed header (borrowing the blob).
#[derive(Debug)]
pub struct Header<'a> {
    entries: Vec<Entry>,
    data: &'a [u8],
}

impl<'a> Header<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        if blob.len() < 8 {
            return bad("shorter than a header (8 bytes)");
        }
        let be =
            |at: usize| u32::from_be_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
        let il = be(0) as usize;
        let dl = be(4) as usize;
        if il == 0 || il > MAX_TAGS || dl > MAX_DATA {
            return bad(format!(
                "{il} tags and {dl} data bytes are outside rpm's limits"
            ));
        }
        let data_start = 8 + il * 16;
        let Some(data) = blob.get(data_start..data_start + dl) else {
            return bad(format!(
                "{il} tags and {dl} data bytes need {} bytes, the blob has {}",
                data_start + dl,
                blob.len()
            ));
        };
        let entries = (0..il)
            .map(|i| {
                let at = 8 + i * 16;
                Entry {
                    tag: be(at),
                    kind: be(at + 4),
                    offset: be(at + 8) as usize,
                    count: be(at + 12) as usize,
                }
            })
            .collect();
        Ok(Header { entries, data })
    }

    fn find(&self, tag: u32) -> Option<Entry> {
        self.entries.iter().rev().find(|e| e.tag == tag).copied()
    }

    fn bytes(&self, e: Entry, width: usize) -> Result<&'a [u8], HeaderError> {
        let len = e.count.checked_mul(width);
        match len.and_then(|l| self.data.get(e.offset..e.offset.checked_add(l)?)) {
            Some(b) => Ok(b),
            None => bad(format!(
                "tag {} ({} × {width} bytes at {}) runs past the data ({} bytes)",
                e.tag,
                e.count,
                e.offset,
                self.data.len()
            )),
        }
    }

    /// The strings of a STRING, STRING_ARRAY or I18NSTRING tag (empty when absent).
    pub fn strings(&self, tag: u32) -> Result<Vec<&'a [u8]>, HeaderError> {
        let Some(e) = self.find(tag) else {
            return Ok(Vec::new());
        };
        if !matches!(e.kind, STRING | STRING_ARRAY | I18NSTRING) {
            return bad(format!("tag {tag} has type {}, not a string", e.kind));
        }
        let count = if e.kind == STRING { 1 } else { e.count };
        // Each string takes at least its NUL: the data bounds how many there can be.
        let mut out = Vec::with_capacity(count.min(self.data.len()));
        let mut at = e.offset;
        for _ in 0..count {
            let rest = self.data.get(at..).unwrap_or_default();
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                return bad(format!("a string of tag {tag} is not terminated"));
            };
            out.push(&rest[..end]);
            at += end + 1;
        }
        Ok(out)
    }

    /// The first string of a tag, lossily as text.
    pub fn string(&self, tag: u32) -> Result<Option<String>, HeaderError> {
        Ok(self
            .strings(tag)?
            .first()
            .map(|s| String::from_utf8_lossy(s).into_owned()))
    }

    /// The integers of an integer (or CHAR/BIN, byte-wise) tag (empty when absent).
    pub fn ints(&self, tag: u32) -> Result<Vec<i64>, HeaderError> {
        let Some(e) = self.find(tag) else {
            return Ok(Vec::new());
        };
        let width = match e.kind {
            CHAR | INT8 | BIN => 1,
            INT16 => 2,
            INT32 => 4,
            INT64 => 8,
            k => return bad(format!("tag {tag} has type {k}, not an integer")),
        };
        let b = self.bytes(e, width)?;
        Ok(b.chunks_exact(width)
            .map(|c| match width {
                1 => i64::from(c[0]),
                2 => i64::from(u16::from_be_bytes([c[0], c[1]])),
                4 => i64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                _ => i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header blob from (tag, type, count, data) entries.
    pub(crate) fn blob(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, count, bytes) in entries {
            while *kind == INT32 && data.len() % 4 != 0 {
                data.push(0);
            }
            for v in [*tag, *kind, data.len() as u32, *count] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = (entries.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }

    pub(crate) fn strs(v: &[&str]) -> Vec<u8> {
        v.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    pub(crate) fn i32s(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    #[test]
    fn strings_and_integers_by_tag() {
        let b = blob(&[
            (tag::NAME, STRING, 1, strs(&["bash"])),
            (tag::BASENAMES, STRING_ARRAY, 2, strs(&["bash", "sh"])),
            (tag::FILEMODES, INT16, 2, vec![0x81, 0xed, 0xa1, 0xff]),
            (tag::FILEFLAGS, INT32, 2, i32s(&[0, 17])),
        ]);
        let h = Header::parse(&b).unwrap();
        assert_eq!(h.string(tag::NAME).unwrap().as_deref(), Some("bash"));
        assert_eq!(
            h.strings(tag::BASENAMES).unwrap(),
            vec![&b"bash"[..], b"sh"]
        );
        assert_eq!(h.ints(tag::FILEMODES).unwrap(), vec![0o100755, 0o120777]);
        assert_eq!(h.ints(tag::FILEFLAGS).unwrap(), vec![0, 17]);
        assert!(h.ints(tag::DIRINDEXES).unwrap().is_empty());
        assert!(h.ints(tag::NAME).is_err(), "a string is not an integer");
    }

    #[test]
    fn damaged_headers_are_errors() {
        assert!(Header::parse(&[0, 0, 0, 1]).is_err());
        assert!(
            Header::parse(&[0, 0, 0, 9, 0, 0, 0, 0]).is_err(),
            "index past the blob"
        );
        let mut b = blob(&[(tag::BASENAMES, STRING_ARRAY, 3, strs(&["a", "b"]))]);
        assert!(Header::parse(&b).unwrap().strings(tag::BASENAMES).is_err());
        // A count that would overflow offset arithmetic.
        b = blob(&[(tag::FILEFLAGS, INT32, u32::MAX, i32s(&[1]))]);
        assert!(Header::parse(&b).unwrap().ints(tag::FILEFLAGS).is_err());
    }
}
