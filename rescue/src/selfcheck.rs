//! Self-check of the boot medium: is what booted what was built?
//!
//! The builder embeds `/etc/rescue/boot-files.json` in the initramfs: the sha256 of every boot file that
//! does not contain the initramfs (kernel, shim, GRUB, menus, marker), and for `RESCUE/INITRD.IMG` the
//! hash and size of its main (compressed) part. `INITRD.IMG` is `head ‖ main`, where the small head
//! archive carries `boot-files.json` itself, so the file cannot hold its own hash; instead the check
//! hashes the last `main_size` bytes and compares the head's `boot-files.json` byte for byte with the
//! copy this system booted with.
//!
//! The medium is found read-only, without mounting: a FAT32 filesystem labelled `RESCUE` (the ESP of
//! `rescue-usb.img`, or partition 2 of the ISO) or an ISO 9660 volume whose id is this build's (a CD, or
//! the ISO written to a disk); one holding this build's marker file wins. Files are read with `fatfs` and
//! [`images::iso`], through a handle opened `O_RDONLY` whose `Write` always fails. The whole medium's
//! sha256 (the ISO's volume size, or the GPT disk up to its backup header) is slow under emulation and
//! is computed separately ([`hash_medium`]).
//!
//! Never prints: results are values, stored as JSON in [`RESULT_PATH`] for the banner and `status`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::devices;

/// The expected hashes, written by the builder into the initramfs.
pub const BOOT_FILES_PATH: &str = "/etc/rescue/boot-files.json";
/// The result, for the banner and `status`.
pub const RESULT_PATH: &str = "/run/rescue/selfcheck.json";

#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    #[error("reading {path}")]
    ReadRecord {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {path}")]
    ParseRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("opening {path}")]
    OpenMedium {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the FAT filesystem on {path}")]
    ReadFat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the ISO 9660 filesystem on {path}")]
    ReadIso {
        path: PathBuf,
        #[source]
        source: images::iso::IsoReadError,
    },
    #[error("watching {path} for the whole-medium hash")]
    WatchResult {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One file the builder recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Media kinds holding the file: `fat`, `iso`.
    pub on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitramfsRecord {
    pub path: String,
    pub main_sha256: String,
    pub main_size: u64,
}

/// `/etc/rescue/boot-files.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootFiles {
    pub schema: String,
    pub build_id: String,
    pub fat_label: String,
    pub iso_volume_id: String,
    pub initramfs: InitramfsRecord,
    pub files: Vec<FileRecord>,
}

impl BootFiles {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, SelfCheckError> {
        serde_json::from_slice(bytes).map_err(|source| SelfCheckError::ParseRecord {
            path: path.to_owned(),
            source,
        })
    }

    /// The marker file naming this build (`RESCUE/ID_<BUILD>`).
    pub fn marker(&self) -> String {
        format!("RESCUE/ID_{}", self.build_id.to_uppercase())
    }
}

/// Which filesystem the medium is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediumKind {
    Fat,
    Iso,
}

/// A boot medium candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Medium {
    /// Whole disk name (`sr0`, `sda`).
    pub disk: String,
    /// Node holding the filesystem (`/dev/sr0`, `/dev/sda1`).
    pub node: PathBuf,
    pub kind: MediumKind,
    /// Whether this build's marker file is on it.
    pub this_build: bool,
}

/// One file's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    pub path: String,
    pub ok: bool,
    /// What was found instead, or why it could not be read.
    pub problem: Option<String>,
}

/// Everything the banner shows about the medium.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheck {
    pub build_id: Option<String>,
    pub medium: Option<Medium>,
    pub files: Vec<FileCheck>,
    /// Why there is no per-file result (no record, no medium).
    pub note: Option<String>,
    /// sha256 of the whole medium, once computed.
    pub medium_sha256: Option<String>,
    pub medium_bytes: Option<u64>,
    /// Set while the medium hash is being computed or when it failed.
    pub medium_hash_state: Option<String>,
}

impl SelfCheck {
    /// Whether every file matched.
    pub fn passed(&self) -> bool {
        self.medium.is_some() && !self.files.is_empty() && self.files.iter().all(|f| f.ok)
    }

    /// Whether the whole-medium hash is still running.
    pub fn hashing(&self) -> bool {
        self.medium_sha256.is_none() && self.medium_hash_state.as_deref() == Some(HASH_COMPUTING)
    }
}

/// `medium_hash_state` while the whole-medium hash runs.
const HASH_COMPUTING: &str = "computing";

/// A block device opened `O_RDONLY`; `fatfs` wants `Write` too, which always fails here.
struct ReadOnly(File);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for ReadOnly {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the boot medium is read only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn open(path: &Path) -> Result<File, SelfCheckError> {
    File::open(path).map_err(|source| SelfCheckError::OpenMedium {
        path: path.to_owned(),
        source,
    })
}

/// The FAT32 volume label at 0x47 when `sector` is a FAT32 boot sector.
pub fn fat32_label(sector: &[u8]) -> Option<String> {
    (sector.len() >= 0x5a && &sector[0x52..0x5a] == b"FAT32   ").then(|| {
        String::from_utf8_lossy(&sector[0x47..0x52])
            .trim_end()
            .to_owned()
    })
}

/// The ISO 9660 volume id of the filesystem on `node`, if it holds one.
pub fn iso_volume_id(node: &Path) -> Option<String> {
    let mut f = File::open(node).ok()?;
    images::iso::volume_info(&mut f)
        .ok()
        .flatten()
        .map(|v| v.volume_id)
}

/// Reads a whole file from the medium.
pub fn read_file(medium: &Medium, path: &str) -> Result<Vec<u8>, SelfCheckError> {
    let file = open(&medium.node)?;
    match medium.kind {
        MediumKind::Iso => {
            let mut f = file;
            let e =
                images::iso::find_file(&mut f, path).map_err(|source| SelfCheckError::ReadIso {
                    path: medium.node.clone(),
                    source,
                })?;
            let mut data = vec![0u8; e.len as usize];
            f.read_exact_at(&mut data, u64::from(e.lba) * images::iso::BLOCK)
                .map_err(|source| SelfCheckError::OpenMedium {
                    path: medium.node.clone(),
                    source,
                })?;
            Ok(data)
        }
        MediumKind::Fat => {
            let fat_err = |source| SelfCheckError::ReadFat {
                path: medium.node.clone(),
                source,
            };
            let fs =
                fatfs::FileSystem::new(ReadOnly(file), fatfs::FsOptions::new()).map_err(fat_err)?;
            let mut f = fs.root_dir().open_file(path).map_err(fat_err)?;
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(fat_err)?;
            Ok(data)
        }
    }
}

/// Every disk or partition carrying a rescue filesystem: FAT32 labelled `fat_label`, or ISO 9660 with
/// a volume id starting with `RESCUE`. `expected` (this build) marks the ones holding its marker.
pub fn find_media(expected: Option<&BootFiles>) -> Vec<Medium> {
    let mut found = Vec::new();
    let label = expected.map_or("RESCUE", |e| e.fat_label.as_str());
    for disk in devices::list().unwrap_or_default() {
        // The whole disk first: an ISO written to a disk is ISO 9660 there, its ESP a partition.
        let nodes = std::iter::once(disk.path.clone())
            .chain(disk.partitions.iter().map(|p| p.path.clone()));
        for node in nodes {
            let node = PathBuf::from(node);
            let kind = if iso_volume_id(&node).is_some_and(|id| id.starts_with("RESCUE")) {
                Some(MediumKind::Iso)
            } else {
                let mut sector = [0u8; 512];
                let read = File::open(&node).and_then(|f| f.read_exact_at(&mut sector, 0));
                (read.is_ok() && fat32_label(&sector).as_deref() == Some(label))
                    .then_some(MediumKind::Fat)
            };
            let Some(kind) = kind else { continue };
            let mut m = Medium {
                disk: disk.name.clone(),
                node,
                kind,
                this_build: false,
            };
            m.this_build = expected.is_some_and(|e| read_file(&m, &e.marker()).is_ok());
            found.push(m);
            break;
        }
    }
    found
}

/// The FAT filesystem of `medium`, where an operator's files (`rescue.run=`) go: the medium itself, or
/// for an ISO written to a disk, the FAT32 partition labelled `label` on the same disk (the ESP a hybrid
/// image carries); `None` for a CD, which has no FAT filesystem.
pub fn fat_of(medium: &Medium, label: &str) -> Option<Medium> {
    if medium.kind == MediumKind::Fat {
        return Some(medium.clone());
    }
    let disk = devices::list()
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.name == medium.disk)?;
    disk.partitions.iter().find_map(|p| {
        let mut sector = [0u8; 512];
        let node = PathBuf::from(&p.path);
        let read = File::open(&node).and_then(|f| f.read_exact_at(&mut sector, 0));
        (read.is_ok() && fat32_label(&sector).as_deref() == Some(label)).then(|| Medium {
            disk: medium.disk.clone(),
            node,
            kind: MediumKind::Fat,
            this_build: medium.this_build,
        })
    })
}

/// Every rescue medium found by [`find_media`], judged by the boot record when there is one (inside the
/// rescue system), by the default label otherwise: the one rule for "is this the boot medium".
pub fn media() -> Vec<Medium> {
    let record = load_record().ok();
    find_media(record.as_ref().map(|(b, _)| b))
}

/// The medium this system booted from: the first holding this build's marker, else the first found.
pub fn boot_medium(media: &[Medium]) -> Option<Medium> {
    media
        .iter()
        .find(|m| m.this_build)
        .or_else(|| media.first())
        .cloned()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares the initramfs file found on the medium with the record (see the module doc).
pub fn check_initramfs(file: &[u8], expected: &BootFiles, own_record: &[u8]) -> Result<(), String> {
    let main_size = expected.initramfs.main_size as usize;
    if file.len() < main_size {
        return Err(format!(
            "{} bytes, shorter than its {main_size}-byte main part",
            file.len()
        ));
    }
    let (head, main) = file.split_at(file.len() - main_size);
    let actual = sha256_hex(main);
    if actual != expected.initramfs.main_sha256 {
        return Err(format!(
            "main part sha256 {actual}, expected {}",
            expected.initramfs.main_sha256
        ));
    }
    let entries =
        initramfs::cpio::read_entries(head).map_err(|e| format!("head archive unreadable: {e}"))?;
    let record = entries
        .iter()
        .find(|e| e.path == BOOT_FILES_PATH.trim_start_matches('/'))
        .ok_or("head archive lacks etc/rescue/boot-files.json")?;
    if record.data != own_record {
        return Err("head archive's boot-files.json differs from the one that booted".to_owned());
    }
    if entries.iter().any(|e| e.is_file() && e.path != record.path) {
        return Err("head archive holds files besides boot-files.json".to_owned());
    }
    Ok(())
}

/// Hashes the files on `medium` against `expected`. `own_record` is the raw `boot-files.json`.
pub fn check_medium(medium: &Medium, expected: &BootFiles, own_record: &[u8]) -> Vec<FileCheck> {
    let kind = match medium.kind {
        MediumKind::Fat => "fat",
        MediumKind::Iso => "iso",
    };
    let mut out = Vec::new();
    for rec in expected
        .files
        .iter()
        .filter(|r| r.on.iter().any(|o| o == kind))
    {
        let (ok, problem) = match read_file(medium, &rec.path) {
            Ok(data) => {
                let actual = sha256_hex(&data);
                if actual == rec.sha256 {
                    (true, None)
                } else {
                    (
                        false,
                        Some(format!("sha256 {actual}, expected {}", rec.sha256)),
                    )
                }
            }
            Err(e) => (false, Some(crate::error_chain(&e))),
        };
        out.push(FileCheck {
            path: rec.path.clone(),
            ok,
            problem,
        });
    }
    let (ok, problem) = match read_file(medium, &expected.initramfs.path) {
        Ok(data) => match check_initramfs(&data, expected, own_record) {
            Ok(()) => (true, None),
            Err(p) => (false, Some(p)),
        },
        Err(e) => (false, Some(crate::error_chain(&e))),
    };
    out.push(FileCheck {
        path: expected.initramfs.path.clone(),
        ok,
        problem,
    });
    out
}

/// Bytes of the medium that belong to the image: the ISO's volume size, or a GPT disk up to its backup
/// header, else the whole device.
pub fn medium_extent(medium: &Medium) -> Result<u64, SelfCheckError> {
    let disk = PathBuf::from(format!("/dev/{}", medium.disk));
    let f = open(&disk)?;
    let device_size = {
        let mut g = &f;
        g.seek(SeekFrom::End(0))
            .map_err(|source| SelfCheckError::OpenMedium {
                path: disk.clone(),
                source,
            })?
    };
    let mut g = &f;
    if let Ok(Some(v)) = images::iso::volume_info(&mut g) {
        return Ok(v.size.min(device_size));
    }
    let mut header = [0u8; 512];
    if f.read_exact_at(&mut header, 512).is_ok() && &header[..8] == b"EFI PART" {
        let mut alt = [0u8; 8];
        alt.copy_from_slice(&header[32..40]);
        let end = (u64::from_le_bytes(alt) + 1) * 512;
        return Ok(end.min(device_size));
    }
    Ok(device_size)
}

/// sha256 of the first `len` bytes of the medium's disk.
pub fn hash_medium(medium: &Medium, len: u64) -> Result<String, SelfCheckError> {
    let disk = PathBuf::from(format!("/dev/{}", medium.disk));
    let mut f = open(&disk)?.take(len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|source| SelfCheckError::OpenMedium {
                path: disk.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Loads the record this system booted with.
pub fn load_record() -> Result<(BootFiles, Vec<u8>), SelfCheckError> {
    let path = Path::new(BOOT_FILES_PATH);
    let bytes = fs::read(path).map_err(|source| SelfCheckError::ReadRecord {
        path: path.to_owned(),
        source,
    })?;
    Ok((BootFiles::parse(&bytes, path)?, bytes))
}

/// Finds the medium and checks its files (not the whole-medium hash).
pub fn run() -> SelfCheck {
    let (expected, own) = match load_record() {
        Ok(r) => r,
        Err(e) => {
            return SelfCheck {
                note: Some(crate::error_chain(&e)),
                ..SelfCheck::default()
            };
        }
    };
    let media = find_media(Some(&expected));
    let Some(medium) = boot_medium(&media) else {
        return SelfCheck {
            build_id: Some(expected.build_id),
            note: Some(
                "no boot medium found (no FAT32 labelled RESCUE, no RESCUE ISO 9660)".to_owned(),
            ),
            ..SelfCheck::default()
        };
    };
    let files = check_medium(&medium, &expected, &own);
    SelfCheck {
        build_id: Some(expected.build_id),
        medium: Some(medium),
        files,
        medium_hash_state: Some(HASH_COMPUTING.to_owned()),
        ..SelfCheck::default()
    }
}

/// Stores a result for the banner (atomically).
pub fn store(result: &SelfCheck) -> io::Result<()> {
    store_at(Path::new(RESULT_PATH), result)
}

fn store_at(path: &Path, result: &SelfCheck) -> io::Result<()> {
    let json = serde_json::to_vec(result).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, json)?;
    fs::rename(tmp, path)
}

/// The stored result, if the check has run.
pub fn stored() -> Option<SelfCheck> {
    stored_at(Path::new(RESULT_PATH))
}

fn stored_at(path: &Path) -> Option<SelfCheck> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// The stored result once the whole-medium hash is done (or failed), waiting at most `timeout` for
/// it; still computing after that, the result says so. Woken by inotify when the result is renamed
/// into place ([`store`]), not by a timer. Outside the rescue system (no result directory) it
/// returns at once.
pub fn wait_hashed(timeout: std::time::Duration) -> Result<Option<SelfCheck>, SelfCheckError> {
    wait_hashed_at(Path::new(RESULT_PATH), timeout)
}

fn wait_hashed_at(
    path: &Path,
    timeout: std::time::Duration,
) -> Result<Option<SelfCheck>, SelfCheckError> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Ok(stored_at(path));
    }
    let watch_err = |source| SelfCheckError::WatchResult {
        path: dir.to_owned(),
        source,
    };
    let inotify =
        Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(watch_err)?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        )
        .map_err(watch_err)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // The watch is in place before each look, so no store between a look and the wait is missed.
        let check = stored_at(path);
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !check.as_ref().is_some_and(SelfCheck::hashing) || left.is_zero() {
            return Ok(check);
        }
        let wait = nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&inotify),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, wait) {
            Ok(_) => {}
            // Ctrl-C at the prompt: stop waiting and show what there is.
            Err(nix::errno::Errno::EINTR) => return Ok(stored_at(path)),
            Err(e) => return Err(watch_err(e)),
        }
        match inotify.read_events() {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(watch_err(e)),
        }
    }
}

/// Runs the file check, stores it, calls `files_done`, then hashes the whole medium and stores again:
/// call on a thread.
pub fn run_and_store_then(files_done: impl FnOnce()) {
    let mut result = run();
    let _ = store(&result);
    files_done();
    if let Some(m) = result.medium.clone() {
        match medium_extent(&m).and_then(|len| Ok((len, hash_medium(&m, len)?))) {
            Ok((len, sha)) => {
                result.medium_sha256 = Some(sha);
                result.medium_bytes = Some(len);
                result.medium_hash_state = None;
            }
            Err(e) => {
                result.medium_hash_state = Some(format!("failed: {}", crate::error_chain(&e)))
            }
        }
        let _ = store(&result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_the_medium_hash_returns_the_stored_hash_once_it_is_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("selfcheck.json");
        let computing = SelfCheck {
            medium_hash_state: Some(HASH_COMPUTING.to_owned()),
            ..SelfCheck::default()
        };
        store_at(&path, &computing).unwrap();
        // Still computing: the wait gives up after its timeout and says so.
        let t0 = std::time::Instant::now();
        let seen = wait_hashed_at(&path, std::time::Duration::from_millis(300)).unwrap();
        assert!(seen.as_ref().is_some_and(SelfCheck::hashing), "{seen:?}");
        assert!(t0.elapsed() >= std::time::Duration::from_millis(300));
        // The hash lands while a waiter waits: the waiter returns it, long before its timeout.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                wait_hashed_at(&path, std::time::Duration::from_secs(600))
            })
        };
        rx.recv().unwrap();
        let done = SelfCheck {
            medium_sha256: Some("b".repeat(64)),
            medium_bytes: Some(4096),
            ..SelfCheck::default()
        };
        store_at(&path, &done).unwrap();
        let t0 = std::time::Instant::now();
        let seen = waiter.join().unwrap().unwrap();
        assert_eq!(seen, Some(done));
        assert!(t0.elapsed() < std::time::Duration::from_secs(60));
        // No result directory (the host, not the rescue system): nothing to wait for.
        let elsewhere = dir.path().join("absent/selfcheck.json");
        assert_eq!(
            wait_hashed_at(&elsewhere, std::time::Duration::from_secs(600)).unwrap(),
            None
        );
    }

    fn record(main: &[u8]) -> BootFiles {
        BootFiles {
            schema: "rescue.boot-files/1".into(),
            build_id: "0123abcd".into(),
            fat_label: "RESCUE".into(),
            iso_volume_id: "RESCUE_0123ABCD".into(),
            initramfs: InitramfsRecord {
                path: "RESCUE/INITRD.IMG".into(),
                main_sha256: sha256_hex(main),
                main_size: main.len() as u64,
            },
            files: vec![],
        }
    }

    fn initrd(json: &[u8], main: &[u8]) -> Vec<u8> {
        let mut a = initramfs::cpio::Archive::new();
        a.add_dir("etc", 0o755);
        a.add_dir("etc/rescue", 0o755);
        a.add_file("etc/rescue/boot-files.json", 0o644, json.to_vec());
        let mut out = Vec::new();
        a.write(&mut out, 0).unwrap();
        out.extend_from_slice(main);
        out
    }

    #[test]
    fn initramfs_head_and_main_are_both_checked() {
        let main = b"(zstd frame standing in for the main archive)".repeat(50);
        let rec = record(&main);
        let json = serde_json::to_vec(&rec).unwrap();
        let good = initrd(&json, &main);
        assert_eq!(check_initramfs(&good, &rec, &json), Ok(()));

        let mut bad_main = good.clone();
        let n = bad_main.len();
        bad_main[n - 10] ^= 1;
        assert!(
            check_initramfs(&bad_main, &rec, &json)
                .unwrap_err()
                .contains("main part sha256")
        );

        let other = initrd(b"{\"forged\":true}", &main);
        assert!(
            check_initramfs(&other, &rec, &json)
                .unwrap_err()
                .contains("differs")
        );
        assert!(
            check_initramfs(&main[..10], &rec, &json)
                .unwrap_err()
                .contains("shorter")
        );
    }

    #[test]
    fn fat32_labels_are_read_from_the_boot_sector() {
        let mut s = [0u8; 512];
        s[0x47..0x52].copy_from_slice(b"RESCUE     ");
        assert_eq!(fat32_label(&s), None);
        s[0x52..0x5a].copy_from_slice(b"FAT32   ");
        assert_eq!(fat32_label(&s).as_deref(), Some("RESCUE"));
    }

    #[test]
    fn iso_files_are_read_without_mounting() {
        let dir = tempfile::tempdir().unwrap();
        let iso = images::iso::IsoImage::new(
            images::iso::IsoOptions {
                volume_id: "RESCUE_0123ABCD".into(),
                epoch: 0,
                bios_boot: None,
                efi_boot: None,
            },
            vec![
                images::iso::IsoFile {
                    path: "RESCUE/VMLINUZ".into(),
                    data: b"kernel".to_vec(),
                },
                images::iso::IsoFile {
                    path: "RESCUE/ID_0123ABCD".into(),
                    data: b"0123abcd\n".to_vec(),
                },
            ],
        )
        .unwrap();
        let path = dir.path().join("m.iso");
        fs::write(&path, iso.to_vec().unwrap()).unwrap();
        assert_eq!(iso_volume_id(&path).as_deref(), Some("RESCUE_0123ABCD"));
        let m = Medium {
            disk: "none".into(),
            node: path,
            kind: MediumKind::Iso,
            this_build: true,
        };
        assert_eq!(read_file(&m, "RESCUE/VMLINUZ").unwrap(), b"kernel");
        let mut rec = record(b"main");
        rec.files.push(FileRecord {
            path: "RESCUE/VMLINUZ".into(),
            sha256: sha256_hex(b"kernel"),
            size: 6,
            on: vec!["iso".into()],
        });
        rec.files.push(FileRecord {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            sha256: sha256_hex(b"shim"),
            size: 4,
            on: vec!["fat".into()],
        });
        let checks = check_medium(&m, &rec, b"{}");
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert!(checks[0].ok, "{checks:?}");
        assert!(
            !checks[1].ok && checks[1].path == "RESCUE/INITRD.IMG",
            "{checks:?}"
        );
    }
}
