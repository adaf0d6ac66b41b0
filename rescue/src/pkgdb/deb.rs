//! Streaming a `.deb`: the `ar` members in order, the control and data tars decompressed on the fly
//! (`.xz` by `lzma-rs` on a helper thread, `.zst`, `.gz`, plain). Nothing is unpacked to disk and no
//! member is held whole in memory, so a 400 MiB kernel package costs a few buffers.
//!
//! Not `initramfs::deb`: that one reads a whole package into memory and is build-time only (its
//! decompressors are behind the `build` feature, which the rescue binary does not have).

use std::io::{self, BufReader, Read};
use std::sync::mpsc;

/// What is wrong with a package file, in words.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("reading the package")]
    Read(#[source] io::Error),
    #[error("not an ar archive (no !<arch> magic)")]
    NotAr,
    #[error("ar member header at byte {0} is damaged")]
    BadArHeader(u64),
    #[error("member {0} is compressed in a format this build does not read")]
    Compression(String),
    #[error("decompressing {member}")]
    Decompress {
        member: String,
        #[source]
        source: io::Error,
    },
}

/// What the caller wants after a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Calls `member(name, contents)` for each `ar` member in order. Whatever the callback leaves unread
/// is skipped.
pub fn ar_members<R: Read + Send>(
    mut r: R,
    member: &mut dyn FnMut(&str, &mut (dyn Read + Send)) -> Result<Flow, DebError>,
) -> Result<(), DebError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| DebError::NotAr)?;
    if &magic != b"!<arch>\n" {
        return Err(DebError::NotAr);
    }
    let mut offset = 8u64;
    loop {
        let mut h = [0u8; 60];
        match read_full(&mut r, &mut h).map_err(DebError::Read)? {
            0 => return Ok(()),
            60 => {}
            _ => return Err(DebError::BadArHeader(offset)),
        }
        if &h[58..60] != b"`\n" {
            return Err(DebError::BadArHeader(offset));
        }
        let name = String::from_utf8_lossy(&h[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: u64 = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(DebError::BadArHeader(offset))?;
        let mut take = (&mut r).take(size);
        let flow = member(&name, &mut take)?;
        if flow == Flow::Stop {
            return Ok(());
        }
        io::copy(&mut take, &mut io::sink()).map_err(DebError::Read)?;
        if take.limit() != 0 {
            return Err(DebError::BadArHeader(offset));
        }
        if size % 2 == 1 {
            let mut pad = [0u8; 1];
            let _ = read_full(&mut r, &mut pad).map_err(DebError::Read)?;
        }
        offset += 60 + size + size % 2;
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A `Read` fed by another thread in chunks.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The `Write` end: chunks of decompressed bytes to the reader.
struct ChannelWriter {
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Calls `body` with the decompressed contents of a `*.tar[.xz|.zst|.gz]` member.
pub fn with_tar<T>(
    name: &str,
    member: &mut (dyn Read + Send),
    body: &mut dyn FnMut(&mut dyn Read) -> Result<T, DebError>,
) -> Result<T, DebError> {
    let err = |source| DebError::Decompress {
        member: name.to_owned(),
        source,
    };
    match name.rsplit_once(".tar").map(|(_, ext)| ext) {
        Some("") => body(member),
        Some(".gz") => body(&mut flate2::read::MultiGzDecoder::new(member)),
        Some(".zst") => body(&mut zstd::stream::read::Decoder::new(member).map_err(err)?),
        Some(".xz") => std::thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel(8);
            let worker = s.spawn(move || {
                let mut input = BufReader::with_capacity(256 * 1024, member);
                let mut out =
                    io::BufWriter::with_capacity(256 * 1024, ChannelWriter { tx: tx.clone() });
                let r = lzma_rs::xz_decompress(&mut input, &mut out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    .and_then(|()| io::Write::flush(&mut out));
                drop(out);
                if let Err(e) = r
                    && e.kind() != io::ErrorKind::BrokenPipe
                {
                    let _ = tx.send(Err(e));
                }
            });
            let mut reader = ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            let result = body(&mut reader);
            // Unblock the decompressor if the body stopped early, then wait for it.
            drop(reader);
            let _ = worker.join();
            result
        }),
        _ => Err(DebError::Compression(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, data) in members {
            out.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn members_stream_in_order_and_xz_decompresses_through_the_helper_thread() {
        let mut xz = Vec::new();
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        let deb = ar(&[
            ("debian-binary", b"2.0\n"),
            ("data.tar.xz", &xz),
            ("odd", b"x"),
        ]);
        let mut seen = Vec::new();
        ar_members(&deb[..], &mut |name, r| {
            seen.push(name.to_owned());
            if name == "data.tar.xz" {
                let got = with_tar(name, r, &mut |t| {
                    let mut v = Vec::new();
                    t.read_to_end(&mut v).map_err(DebError::Read)?;
                    Ok(v)
                })?;
                assert_eq!(got, plain);
            }
            Ok(Flow::Continue)
        })
        .unwrap();
        assert_eq!(seen, ["debian-binary", "data.tar.xz", "odd"]);
        assert!(matches!(
            ar_members(&b"!<arch>\nshort"[..], &mut |_, _| Ok(Flow::Continue)),
            Err(DebError::BadArHeader(8))
        ));
        let mut r = &b"garbage"[..];
        let err = with_tar("data.tar.xz", &mut r, &mut |t| {
            let mut v = Vec::new();
            t.read_to_end(&mut v).map_err(DebError::Read)
        })
        .unwrap_err();
        assert!(matches!(err, DebError::Read(_)), "{err}");
    }
}

/// Fuzz targets (see `crate::fuzzing`): `.deb` packages from installation media (ar, then the
/// compressed tar members, streamed), as `pkgdb::media` reads them.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::Target;

    fn debs(b: &[u8]) {
        let _ = ar_members(b, &mut |name, r| {
            if name.contains(".tar") {
                with_tar(name, r, &mut |t| {
                    let mut a = tar::Archive::new(t);
                    let entries = a.entries().map_err(DebError::Read)?;
                    for e in entries {
                        let mut e = e.map_err(DebError::Read)?;
                        let _ = e.path().map_err(DebError::Read)?;
                        io::copy(&mut e, &mut io::sink()).map_err(DebError::Read)?;
                    }
                    Ok(())
                })?;
            }
            Ok(Flow::Continue)
        });
    }

    #[test]
    fn deb_packages() {
        Target::new("deb")
            .seed(include_bytes!(
                "../../tests/fixtures/debian/samba-ad-dc_4.17.12+dfsg-0+deb12u2_all.deb"
            ))
            .dict(&[
                b"!<arch>\n",
                b"`\n",
                b"data.tar.xz",
                b"control.tar.zst",
                b".tar.gz",
            ])
            .run(debs);
    }
}
