//! `rescue mount`: an acquisition's byte stream served as one read-only file, `MOUNTPOINT/image.raw`,
//! through FUSE, so a loop device, Sleuth Kit or triage can read the acquired disk without
//! decompressing or downloading it first.
//!
//! - [`stored`]: where the image files are (a directory, or an S3 prefix read with ranged GETs), seen
//!   as one run of stored bytes (split segments joined).
//! - [`image`]: the acquired stream on top of it (raw bytes, or zstd seekable frames found through the
//!   seek table, with a small LRU cache of decoded frames), and `--verify-windows`: no byte of a hash
//!   window is served before the whole window hashed to the manifest's value.
//! - [`fuse`]: the read-only subset of the FUSE protocol, encoded and decoded in safe Rust.
//! - [`session`]: opening `/dev/fuse` (loading the `fuse` module on demand), `mount(2)`, the serving
//!   threads, and unmounting.
//!
//! Never writes to the acquisition, never prints: events (a window that does not match, a frame that
//! does not decompress) go to a callback the caller logs.

pub mod fuse;
pub mod image;
pub mod session;
pub mod stored;

pub use image::{Image, ImageError, MountEvent};
pub use session::{MountError, Mounted, euid, is_ours, mount, unmount};
pub use stored::{Location, StoredError};
