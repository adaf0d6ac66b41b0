//! `--verify-source`: the source read a second time through the same pipeline and compared with what
//! the acquisition hashed.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use super::buffer::{self, BufferPool};
use super::hash::HashAlgorithm;
use super::manifest::{SourceVerification, now_rfc3339};
use super::pipeline::{self, Ending, Output, StreamError};
use super::source::{self, BlockReader, Extent, ReadAt};
use super::{Phase, Progress, STREAM_BUDGET, reading_observer};

/// `--verify-source` for local and object-store acquisitions: re-reads the source, compares with what
/// the acquisition hashed (`acquired`: stream hashes and unreadable extents) and logs both steps.
/// `None` when `cancel` stopped the re-read: partial hashes say nothing about the source, which is not a
/// mismatch (the caller says what that leaves).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_source(
    reader: &(dyn ReadAt + Sync),
    size: u64,
    sector: u32,
    block: usize,
    hashes: &[HashAlgorithm],
    retries: u32,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
    acquired: (&BTreeMap<String, String>, &[Extent]),
    log: &mut dyn FnMut(&str),
) -> Result<Option<SourceVerification>, StreamError> {
    log("re-reading the source to compare (--verify-source)");
    let pool = BufferPool::for_stream(block, STREAM_BUDGET);
    let mut unreadable = Vec::new();
    let mut blocks = BlockReader::new(reader, 0, size, sector, retries);
    let mut produce = |pool: &BufferPool| -> Result<Option<buffer::Block>, StreamError> {
        let b = blocks.next_block(pool)?;
        for e in b.iter().flat_map(|b| &b.unreadable) {
            source::push_extent(&mut unreadable, *e);
        }
        Ok(b)
    };
    let mut observe = reading_observer(Phase::VerifySource, size, progress, cancel);
    let r = pipeline::run(
        &pool,
        hashes,
        None,
        Output::None,
        &mut produce,
        &mut observe,
    )
    .map_err(|f| f.error)?;
    if r.ending == Ending::Stopped {
        // Stopped on request: partial hashes say nothing about the source.
        return Ok(None);
    }
    let matched = r.hashes == *acquired.0 && unreadable == acquired.1;
    log(&format!(
        "source re-read: {}",
        if matched {
            "hashes match"
        } else {
            "HASHES DIFFER"
        }
    ));
    Ok(Some(SourceVerification {
        matched,
        hashes: r.hashes,
        unreadable,
        finished_at: now_rfc3339(),
    }))
}
