//! Examining a suspect system read-only, shared by triage, timeline and restore: opening a SOURCE
//! (a mounted root, an image file, a raw acquisition, a disk or partition) as a list of read-only
//! mounted roots ([`source`]), the one place that decides mount options ([`mount`]), and the one
//! filesystem walker ([`walk`]).
//!
//! Never: write to a source, mount without `ro,nodev,nosuid,noexec`, follow a symlink out of a root,
//! or run anything found on it.

pub mod mount;
pub mod source;
pub mod walk;
