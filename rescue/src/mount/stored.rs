//! The stored bytes of an acquisition's image (`image.raw`, `image.raw.zst`, or their `--split`
//! segments `.001`, `.002`, …) as one run of bytes readable at any offset, from a directory (`pread`
//! on files opened read-only once) or from an S3 prefix (ranged GETs, one keep-alive connection per
//! concurrent reader). The manifest says which files there are and how large each must be; a file of
//! another size is refused before anything is served.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::acquire::manifest::{MANIFEST_FILE, MAP_FILE, Manifest, ManifestError};
use crate::s3::client::Client;
use crate::s3::{S3Error, S3Url, Store};

/// Where an acquisition is.
#[derive(Clone)]
pub enum Location {
    /// A directory holding `manifest.json` and the image files.
    Dir(PathBuf),
    /// An S3 prefix holding the same objects.
    S3 { store: Store, url: S3Url },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::S3 { url, .. } => write!(f, "{url}"),
        }
    }
}

/// Errors opening or reading the stored image.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("loading the manifest of {location}")]
    LoadManifest {
        location: String,
        #[source]
        source: ManifestError,
    },
    #[error("{location} holds no manifest.json (give the acquisition's directory or full prefix)")]
    MissingManifest { location: String },
    #[error(
        "the acquisition in {location} is incomplete ({reason}); finish it with `rescue acquire --resume`"
    )]
    RejectIncomplete { location: String, reason: String },
    #[error("image file {file} in {location} is missing")]
    MissingImageFile { location: String, file: String },
    #[error(
        "image file {file} in {location} holds {actual} bytes, not the {expected} the manifest records"
    )]
    MismatchedImageSize {
        location: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("opening image file {path}")]
    OpenImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading image file {file} at offset {offset}")]
    ReadFile {
        file: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("reading object {key} at offset {offset}")]
    ReadObject {
        key: String,
        offset: u64,
        #[source]
        source: Box<S3Error>,
    },
    #[error("the store")]
    Store(#[source] Box<S3Error>),
    #[error(
        "reading {len} bytes at stored offset {offset}: past the end of the image ({total} bytes)"
    )]
    ReadPastEnd { offset: u64, len: u64, total: u64 },
}

/// One image file or object and where it sits in the stored run.
struct Part {
    name: String,
    start: u64,
    size: u64,
}

enum Backend {
    Files(Vec<File>),
    Objects {
        store: Store,
        url: S3Url,
        /// Idle connections; a reader takes one (or opens a new one) and puts it back.
        idle: Mutex<Vec<Client>>,
    },
}

/// The image files of one acquisition as one run of bytes.
pub struct Stored {
    parts: Vec<Part>,
    total: u64,
    backend: Backend,
}

/// Loads the manifest at `location` and opens its image files, checking their sizes.
pub fn open(location: &Location) -> Result<(Manifest, Stored), StoredError> {
    let name = location.to_string();
    let manifest = match location {
        Location::Dir(dir) => {
            if !dir.join(MANIFEST_FILE).is_file() {
                return Err(StoredError::MissingManifest { location: name });
            }
            Manifest::load(dir).map_err(|source| StoredError::LoadManifest {
                location: name.clone(),
                source,
            })?
        }
        Location::S3 { store, url } => {
            let mut c = store.client();
            let key = url.key(MANIFEST_FILE);
            if c.head_object(&key)
                .map_err(|e| StoredError::Store(Box::new(e)))?
                .is_none()
            {
                return Err(StoredError::MissingManifest { location: name });
            }
            let bytes = c
                .get_object(&key, None)
                .map_err(|e| StoredError::Store(Box::new(e)))?;
            Manifest::parse(&bytes).map_err(|source| StoredError::LoadManifest {
                location: name.clone(),
                source,
            })?
        }
    };
    if !manifest.complete {
        return Err(StoredError::RejectIncomplete {
            location: name,
            reason: manifest
                .stop_reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".to_owned()),
        });
    }
    let mut parts = Vec::new();
    let mut start = 0u64;
    for o in manifest.outputs.iter().filter(|o| o.file != MAP_FILE) {
        parts.push(Part {
            name: o.file.clone(),
            start,
            size: o.size_bytes,
        });
        start = start.saturating_add(o.size_bytes);
    }
    let size_of = |file: &str, actual: Option<u64>, expected: u64| match actual {
        None => Err(StoredError::MissingImageFile {
            location: name.clone(),
            file: file.to_owned(),
        }),
        Some(a) if a != expected => Err(StoredError::MismatchedImageSize {
            location: name.clone(),
            file: file.to_owned(),
            expected,
            actual: a,
        }),
        Some(_) => Ok(()),
    };
    let backend = match location {
        Location::Dir(dir) => {
            let mut files = Vec::new();
            for p in &parts {
                let path = dir.join(&p.name);
                // A name from an edited manifest must not reach outside the directory.
                if p.name.contains('/') || !path.exists() {
                    size_of(&p.name, None, p.size)?;
                }
                let f = File::open(&path).map_err(|source| StoredError::OpenImage {
                    path: path.clone(),
                    source,
                })?;
                let len = f
                    .metadata()
                    .map_err(|source| StoredError::OpenImage {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                size_of(&p.name, Some(len), p.size)?;
                files.push(f);
            }
            Backend::Files(files)
        }
        Location::S3 { store, url } => {
            let mut c = store.client();
            for p in &parts {
                let len = c
                    .head_object(&url.key(&p.name))
                    .map_err(|e| StoredError::Store(Box::new(e)))?;
                size_of(&p.name, len, p.size)?;
            }
            Backend::Objects {
                store: store.clone(),
                url: url.clone(),
                idle: Mutex::new(vec![c]),
            }
        }
    };
    Ok((
        manifest,
        Stored {
            parts,
            total: start,
            backend,
        },
    ))
}

impl Stored {
    /// Stored bytes in all files together.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when there are no stored bytes.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// True for an object store, where every read is a request worth caching around.
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Objects { .. })
    }

    /// Fills `buf` from stored offset `offset`, across file boundaries.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StoredError> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.total) {
            return Err(StoredError::ReadPastEnd {
                offset,
                len,
                total: self.total,
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            // Parts are in order; the one holding `at` is the last one starting at or before it.
            let i = self.parts.partition_point(|p| p.start <= at) - 1;
            let p = &self.parts[i];
            let inside = at - p.start;
            let take = usize::try_from(p.size - inside)
                .map_or(buf.len() - done, |r| r.min(buf.len() - done));
            self.read_part(i, inside, &mut buf[done..done + take])?;
            done += take;
        }
        Ok(())
    }

    fn read_part(&self, i: usize, offset: u64, buf: &mut [u8]) -> Result<(), StoredError> {
        let name = &self.parts[i].name;
        match &self.backend {
            Backend::Files(files) => {
                files[i]
                    .read_exact_at(buf, offset)
                    .map_err(|source| StoredError::ReadFile {
                        file: name.clone(),
                        offset,
                        source,
                    })
            }
            Backend::Objects { store, url, idle } => {
                let key = url.key(name);
                let mut client = idle
                    .lock()
                    .ok()
                    .and_then(|mut v| v.pop())
                    .unwrap_or_else(|| store.client());
                let last = offset + buf.len() as u64 - 1;
                let data = client
                    .get_object(&key, Some((offset, last)))
                    .map_err(|source| StoredError::ReadObject {
                        key: key.clone(),
                        offset,
                        source: Box::new(source),
                    })?;
                buf.copy_from_slice(&data);
                if let Ok(mut v) = idle.lock() {
                    v.push(client);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stored_files(dir: &Path, files: &[(&str, &[u8])]) -> Stored {
        let mut parts = Vec::new();
        let mut handles = Vec::new();
        let mut start = 0;
        for (name, data) in files {
            std::fs::write(dir.join(name), data).unwrap();
            handles.push(File::open(dir.join(name)).unwrap());
            parts.push(Part {
                name: (*name).to_owned(),
                start,
                size: data.len() as u64,
            });
            start += data.len() as u64;
        }
        Stored {
            parts,
            total: start,
            backend: Backend::Files(handles),
        }
    }

    #[test]
    fn reads_span_segment_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        let s = stored_files(
            dir.path(),
            &[
                ("image.raw.001", &data[..1000]),
                ("image.raw.002", &data[1000..2000]),
                ("image.raw.003", &data[2000..]),
            ],
        );
        for (off, len) in [(0, 2500), (999, 2), (1500, 1000), (2499, 1), (0, 0)] {
            let mut buf = vec![0u8; len];
            s.read_exact_at(&mut buf, off as u64).unwrap();
            assert_eq!(buf, &data[off..off + len], "{off}+{len}");
        }
        let mut buf = vec![0u8; 2];
        assert!(matches!(
            s.read_exact_at(&mut buf, 2499),
            Err(StoredError::ReadPastEnd { .. })
        ));
    }
}
