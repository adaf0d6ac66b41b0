//! The upload state object (`.rescue-upload.json` under the prefix, schema `rescue.s3-upload/2`): the
//! settings, each image object's multipart upload and the parts stored with their SHA-256 and ETag,
//! the log so far. It is the object-store destination's resume record; version-1 states (one raw
//! upload) still read. Also what a resume may trust of a part the store lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::client::{ListedPart, S3Error};
use crate::acquire::ImageFormat;
use crate::acquire::checkpoint::Settings;
use crate::acquire::hash::HashAlgorithm;
use crate::acquire::manifest::{CaseInfo, ResumeRecord, now_rfc3339};
use crate::acquire::segments::Layout;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StatePart {
    pub(super) size: u64,
    pub(super) sha256: String,
    /// The ETag the store answered for this upload of the part. On resume `sha256` is trusted for a
    /// part the store lists without a checksum only when the listed ETag is this one (a store that
    /// lists no ETag, like s3s-fs, relies on the record being dropped durably before the part is
    /// replaced, see [`PartResult::Replace`]). Absent in older states: such a part is uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag: Option<String>,
}

/// ETags compare without their quotes; an empty one names nothing.
pub(super) fn same_etag(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_matches('"'), b.trim_matches('"'));
    !a.is_empty() && a == b
}

/// What a resume may trust of a part the store lists: its own checksum when it lists one (required
/// then); else the recorded SHA-256 when the state recorded an ETag and the store lists the same one
/// or none at all; else nothing (the part is uploaded again).
pub(super) fn held_part(listed: &ListedPart, recorded: Option<&StatePart>) -> Held {
    let (sha256_b64, sha256_hex) = match &listed.checksum_sha256 {
        Some(b64) => (Some(b64.clone()), None),
        None => (
            None,
            recorded
                .filter(|r| {
                    r.etag.as_deref().is_some_and(|e| {
                        listed.etag.trim_matches('"').is_empty() || same_etag(e, &listed.etag)
                    })
                })
                .map(|r| r.sha256.clone()),
        ),
    };
    Held {
        size: listed.size,
        sha256_b64,
        sha256_hex,
        etag: listed.etag.clone(),
    }
}

/// One image object (`image.raw`, `image.raw.zst`, or a segment of either) and its multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateObject {
    pub(super) name: String,
    pub(super) upload_id: String,
    pub(super) parts: BTreeMap<u32, StatePart>,
    /// CompleteMultipartUpload succeeded: the object exists and its upload id is gone.
    #[serde(default)]
    pub(super) completed: bool,
}

pub(super) fn raw_format() -> String {
    ImageFormat::Raw.manifest_name().to_owned()
}

/// The state object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UploadState {
    pub(super) schema: String,
    /// `rescue.s3-upload/1` (raw only) kept the one upload of `image.raw` here; read, never written.
    #[serde(default, skip_serializing)]
    pub(super) upload_id: String,
    #[serde(default, skip_serializing)]
    pub(super) parts: BTreeMap<u32, StatePart>,
    /// Image objects in stream order, each created when the stream reaches it.
    #[serde(default)]
    pub(super) objects: Vec<StateObject>,
    #[serde(default = "raw_format")]
    pub(super) format: String,
    #[serde(default)]
    pub(super) split_bytes: Option<u64>,
    #[serde(default)]
    pub(super) zstd_level: Option<i32>,
    pub(super) part_bytes: u64,
    pub(super) block_bytes: u64,
    /// zstd frame size; absent in records made when a frame was one read block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) frame_bytes: Option<u64>,
    pub(super) hashes: Vec<HashAlgorithm>,
    #[serde(default)]
    pub(super) window_bytes: Option<u64>,
    pub(super) retries: u32,
    pub(super) source_path: String,
    pub(super) source_size: u64,
    pub(super) source_serial: Option<String>,
    pub(super) case: CaseInfo,
    pub(super) started_at: String,
    pub(super) resumes: Vec<ResumeRecord>,
    pub(super) log: Vec<String>,
    /// The image object's name before `.zst` and segment suffixes when not `image.raw` (a memory
    /// capture's `memory.lime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) image_stem: Option<String>,
}

impl UploadState {
    pub(super) fn line(&mut self, msg: &str) {
        self.log.push(format!("{} {msg}", now_rfc3339()));
    }

    /// Moves a version-1 record (one `image.raw` upload) into `objects`.
    pub(super) fn upgrade(&mut self) {
        if self.objects.is_empty() && !self.upload_id.is_empty() {
            self.objects.push(StateObject {
                name: ImageFormat::Raw.base_name().to_owned(),
                upload_id: std::mem::take(&mut self.upload_id),
                parts: std::mem::take(&mut self.parts),
                completed: false,
            });
        }
    }

    /// The image settings recorded, as a local checkpoint holds them.
    pub(super) fn settings(&self) -> Settings {
        Settings {
            format: self.format.clone(),
            split_bytes: self.split_bytes,
            hashes: self.hashes.clone(),
            window_bytes: self.window_bytes,
            block_bytes: self.block_bytes,
            frame_bytes: self.frame_bytes,
            zstd_level: self.zstd_level,
            retries: self.retries,
        }
    }

    pub(super) fn set_settings(&mut self, s: Settings) {
        self.format = s.format;
        self.split_bytes = s.split_bytes;
        self.hashes = s.hashes;
        self.window_bytes = s.window_bytes;
        self.block_bytes = s.block_bytes;
        self.frame_bytes = s.frame_bytes;
        self.zstd_level = s.zstd_level;
        self.retries = s.retries;
    }

    pub(super) fn layout(&self) -> Layout {
        let format = ImageFormat::from_manifest_name(&self.format).unwrap_or(ImageFormat::Raw);
        let base = match (&self.image_stem, format) {
            (None, _) => format.base_name().to_owned(),
            (Some(stem), ImageFormat::Raw) => stem.clone(),
            (Some(stem), ImageFormat::Zstd) => format!("{stem}.zst"),
        };
        Layout {
            base,
            split: self.split_bytes,
        }
    }
}

/// What the store already holds of a part on resume.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) size: u64,
    /// Base64 checksum from ListParts, or hex from our state object.
    pub(super) sha256_b64: Option<String>,
    pub(super) sha256_hex: Option<String>,
    pub(super) etag: String,
}

/// The state object's bytes. Serialising plain data does not fail in practice, but an empty state
/// written over a good one would lose the upload ids, so a failure is an error, never `[]`.
pub(super) fn state_json(state: &UploadState) -> Result<Vec<u8>, S3Error> {
    serde_json::to_vec_pretty(state).map_err(S3Error::EncodeState)
}
