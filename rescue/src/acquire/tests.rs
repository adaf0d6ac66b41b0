//! Engine tests over in-memory and file sources: hashes, windows, zstd, split, bad sectors, resume,
//! verify.

use std::sync::atomic::AtomicUsize;

use std::fs;
use std::path::Path;

use super::checkpoint::Checkpoint;
use super::manifest::MAP_FILE;
use super::segments::Layout;
use super::source::Extent;
use super::source::tests::{FlakySource, pattern};
use super::*;

fn info(size: u64) -> SourceInfo {
    SourceInfo {
        path: "test:source".into(),
        kind: "regular_file".into(),
        size_bytes: size,
        logical_sector_size: 512,
        physical_sector_size: 512,
        model: None,
        serial: None,
        wwn: None,
        transport: None,
    }
}

fn source(len: usize, bad: Vec<u64>) -> FlakySource {
    FlakySource {
        data: pattern(len),
        sector: 512,
        bad_sectors: bad,
        transient_failures: AtomicUsize::new(0),
    }
}

fn opts(dir: &Path) -> AcquireOptions {
    AcquireOptions {
        out_dir: dir.to_owned(),
        block_size: Some(64 << 10),
        window: Some(100_000),
        ..Default::default()
    }
}

fn run(o: &AcquireOptions, src: &FlakySource) -> Result<AcquireOutcome, AcquireError> {
    let size = src.data.len() as u64;
    acquire_from(
        o,
        src,
        info(size),
        ReadOnlyState::default(),
        &|| Some(size),
        &mut |_| {},
    )
}

fn verify_dir(dir: &Path) -> VerifyReport {
    verify(dir, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

#[test]
fn raw_acquisition_hashes_windows_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000_000, vec![]);
    let mut o = opts(dir.path());
    o.hashes = Some(vec![HashAlgorithm::Sha256, HashAlgorithm::Md5]);
    let out = run(&o, &src).unwrap();
    assert_eq!(out.status, AcquireStatus::Complete);
    let m = &out.manifest;
    assert_eq!(m.hashes["sha256"], hash::sha256_hex(&src.data));
    assert_eq!(m.windows.len(), 10);
    assert_eq!(
        m.windows[3].sha256,
        hash::sha256_hex(&src.data[300_000..400_000])
    );
    assert_eq!(fs::read(dir.path().join("image.raw")).unwrap(), src.data);
    assert_eq!(m.outputs[0].sha256, m.hashes["sha256"]);
    assert!(!dir.path().join(checkpoint::CHECKPOINT_FILE).exists());
    let report = verify_dir(dir.path());
    assert!(report.ok, "{:#?}", report.checks);

    // The same directory is refused for a second acquisition.
    let again = run(&o, &src).unwrap_err();
    assert!(
        matches!(again, AcquireError::RejectExistingAcquisition { .. }),
        "{again}"
    );
    let resumed = {
        let mut r = o.clone();
        r.resume = true;
        run(&r, &src).unwrap_err()
    };
    assert!(
        matches!(resumed, AcquireError::RejectCompleteAcquisition { .. }),
        "{resumed}"
    );
}

#[test]
fn flipped_byte_names_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000_000, vec![]);
    run(&opts(dir.path()), &src).unwrap();
    let p = dir.path().join("image.raw");
    let mut img = fs::read(&p).unwrap();
    img[456_789] ^= 0x40;
    fs::write(&p, img).unwrap();
    let report = verify_dir(dir.path());
    assert!(!report.ok);
    let w = report.first_bad_window.unwrap();
    assert_eq!((w.index, w.offset), (4, 400_000));
    assert_eq!(report.bad_windows, 1);
}

#[test]
fn windows_are_opt_in_and_a_mismatch_without_them_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000_000, vec![]);
    let mut o = opts(dir.path());
    o.window = None;
    let m = run(&o, &src).unwrap().manifest;
    assert_eq!(m.image.window_bytes, None);
    assert!(m.windows.is_empty());
    assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    let report = verify_dir(dir.path());
    assert!(report.ok, "{:#?}", report.checks);
    assert!(report.note.is_none());

    let p = dir.path().join("image.raw");
    let mut img = fs::read(&p).unwrap();
    img[456_789] ^= 0x40;
    fs::write(&p, img).unwrap();
    let report = verify_dir(dir.path());
    assert!(!report.ok);
    assert!(report.first_bad_window.is_none());
    let note = report.note.unwrap_or_default();
    assert!(
        note.contains("no hash windows were recorded") && note.contains("--window"),
        "{note}"
    );
}

#[test]
fn zstd_split_acquisition_is_seekable_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = pattern(900_000);
    data[200_000..600_000].fill(0);
    let src = FlakySource {
        data,
        sector: 512,
        bad_sectors: vec![],
        transient_failures: AtomicUsize::new(0),
    };
    let mut o = opts(dir.path());
    o.format = Some(ImageFormat::Zstd);
    o.split = Some(100_000);
    o.hashes = Some(vec![HashAlgorithm::Blake3, HashAlgorithm::Sha1]);
    o.frame_size = Some(16 << 10);
    let out = run(&o, &src).unwrap();
    assert_eq!(out.manifest.image.frame_bytes, Some(16 << 10));
    let files: Vec<_> = out
        .manifest
        .outputs
        .iter()
        .map(|f| f.file.clone())
        .collect();
    assert!(
        files[0] == "image.raw.zst.001" && files.last().unwrap() == MAP_FILE,
        "{files:?}"
    );
    let mut joined = Vec::new();
    for f in &out.manifest.outputs[..out.manifest.outputs.len() - 1] {
        joined.extend(fs::read(dir.path().join(&f.file)).unwrap());
        assert_eq!(
            f.sha256,
            hash::sha256_hex(&fs::read(dir.path().join(&f.file)).unwrap())
        );
    }
    assert_eq!(zstd::stream::decode_all(&joined[..]).unwrap(), src.data);
    // Four 16 KiB frames per 64 KiB read, each listed in the seek table.
    let table_len =
        seekable::table_len_from_footer(&joined[joined.len() - seekable::FOOTER_LEN..]).unwrap();
    let table = seekable::parse_seek_table(&joined[joined.len() - table_len as usize..]).unwrap();
    assert_eq!(table.len(), src.data.len().div_ceil(16 << 10));
    assert!(
        table[..table.len() - 1]
            .iter()
            .all(|f| f.decompressed == 16 << 10)
    );
    assert_eq!(
        out.manifest.hashes["blake3"],
        blake3::hash(&src.data).to_hex().to_string()
    );
    assert!(verify_dir(dir.path()).ok);

    // Damage one compressed byte in the middle: verify names a window rather than failing opaquely.
    let seg = dir.path().join(&out.manifest.outputs[0].file);
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&seg, bytes).unwrap();
    let report = verify_dir(dir.path());
    assert!(!report.ok);
    assert!(report.first_bad_window.is_some(), "{report:#?}");
}

#[test]
fn bad_sectors_are_zero_filled_listed_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(300 * 512, vec![10, 11, 200]);
    let out = run(&opts(dir.path()), &src).unwrap();
    assert_eq!(out.status, AcquireStatus::CompleteWithUnreadable);
    assert_eq!(
        out.manifest.unreadable,
        [
            Extent {
                offset: 5120,
                length: 1024
            },
            Extent {
                offset: 200 * 512,
                length: 512
            }
        ]
    );
    let img = fs::read(dir.path().join("image.raw")).unwrap();
    let mut expect = src.data.clone();
    expect[5120..6144].fill(0);
    expect[102_400..102_912].fill(0);
    assert_eq!(img, expect);
    assert_eq!(out.manifest.hashes["sha256"], hash::sha256_hex(&expect));
    let map = fs::read_to_string(dir.path().join(MAP_FILE)).unwrap();
    assert!(map.contains("0x00001400  0x00000400  -"), "{map}");
    assert!(verify_dir(dir.path()).ok);
}

#[test]
fn interrupted_run_resumes_to_identical_hashes() {
    for format in [ImageFormat::Raw, ImageFormat::Zstd] {
        let src = source(2_000_000, vec![7]);
        let clean = tempfile::tempdir().unwrap();
        let mut o = opts(clean.path());
        o.format = Some(format);
        o.split = Some(300_000);
        // zstd: four frames per read, so the resumed run re-reads frames, not reads.
        o.frame_size = (format == ImageFormat::Zstd).then_some(16 << 10);
        let want = run(&o, &src).unwrap().manifest;

        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.format = Some(format);
        o.split = Some(300_000);
        o.frame_size = (format == ImageFormat::Zstd).then_some(16 << 10);
        o.checkpoint_bytes = Some(200_000);
        let cancel = Arc::clone(&o.cancel);
        let size = src.data.len() as u64;
        let out = acquire_from(
            &o,
            &src,
            info(size),
            ReadOnlyState::default(),
            &|| Some(size),
            &mut |p| {
                if p.done_bytes >= 1_000_000 {
                    cancel.store(true, Ordering::SeqCst);
                }
            },
        )
        .unwrap();
        assert_eq!(out.status, AcquireStatus::Interrupted);
        assert!(!out.manifest.complete);
        assert!(Manifest::load(dir.path()).is_ok_and(|m| !m.complete));
        assert!(verify(dir.path(), &AtomicBool::new(false), &mut |_| {}).is_err());

        // Garbage after the checkpoint (as after a crash) is cut away.
        let cp = Checkpoint::load(dir.path()).unwrap().unwrap();
        let last = Layout {
            base: format.base_name().into(),
            split: Some(300_000),
        }
        .files_for(cp.output_bytes);
        let (name, _) = last.last().unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(name))
            .unwrap();
        io::Write::write_all(&mut f, b"partial garbage").unwrap();

        if format == ImageFormat::Zstd {
            let mut r = opts(dir.path());
            r.resume = true;
            r.frame_size = Some(32 << 10);
            let err = run(&r, &src).unwrap_err();
            assert!(error_chain(&err).contains("--frame-size"), "{err}");
        }
        let mut r = opts(dir.path());
        r.resume = true;
        r.format = Some(format);
        let got = run(&r, &src).unwrap().manifest;
        assert!(got.complete);
        assert_eq!(got.hashes, want.hashes, "{format:?}");
        assert_eq!(got.windows, want.windows);
        assert_eq!(got.unreadable, want.unreadable);
        let outs = |m: &Manifest| {
            m.outputs
                .iter()
                .map(|o| (o.file.clone(), o.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            outs(&got)[..outs(&got).len() - 1],
            outs(&want)[..outs(&want).len() - 1]
        );
        assert_eq!(got.resumes.len(), 1);
        assert!(verify_dir(dir.path()).ok);
    }
}

#[test]
fn resume_refuses_changed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(500_000, vec![]);
    let o = opts(dir.path());
    o.cancel.store(true, Ordering::SeqCst);
    assert_eq!(run(&o, &src).unwrap().status, AcquireStatus::Interrupted);
    let mut r = opts(dir.path());
    r.resume = true;
    r.format = Some(ImageFormat::Zstd);
    let err = run(&r, &src).unwrap_err();
    assert!(matches!(err, AcquireError::MismatchResume { .. }), "{err}");
    let mut r = opts(dir.path());
    r.resume = true;
    r.window = Some(200_000);
    let err = run(&r, &src).unwrap_err();
    assert!(error_chain(&err).contains("--window"), "{err}");
}

#[test]
fn resume_cannot_add_windows_and_keeps_the_recorded_choice() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(500_000, vec![]);
    let mut o = opts(dir.path());
    o.window = None;
    o.cancel.store(true, Ordering::SeqCst);
    assert_eq!(run(&o, &src).unwrap().status, AcquireStatus::Interrupted);
    assert_eq!(
        Checkpoint::load(dir.path())
            .unwrap()
            .unwrap()
            .settings
            .window_bytes,
        None
    );
    let mut r = opts(dir.path());
    r.resume = true;
    let err = run(&r, &src).unwrap_err();
    assert!(
        matches!(&err, AcquireError::MismatchResume { what, recorded, .. }
            if what == "--window" && recorded == "none"),
        "{err}"
    );
    r.window = None;
    let m = run(&r, &src).unwrap().manifest;
    assert!(m.complete && m.windows.is_empty() && m.image.window_bytes.is_none());
    assert!(verify_dir(dir.path()).ok);
}

#[test]
fn split_smaller_than_buffer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.split = Some(4096);
    let err = run(&o, &source(10_000, vec![])).unwrap_err();
    assert!(
        matches!(err, AcquireError::RejectSmallSplit { .. }),
        "{err}"
    );
}

#[test]
fn source_that_shrinks_is_an_error_and_not_complete() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(100_000, vec![]);
    // Claim a larger size than the data: the reader hits the end early.
    let err = acquire_from(
        &opts(dir.path()),
        &src,
        info(200_000),
        ReadOnlyState::default(),
        &|| Some(100_000),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        error_chain(&err).contains("size changed"),
        "{}",
        error_chain(&err)
    );
    assert!(!Manifest::load(dir.path()).unwrap().complete);
}

#[test]
fn sizes_parse_with_units() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4M"), Ok(4 << 20));
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert!(parse_size("12Q").is_err());
    assert!(parse_size("abc").is_err());
}

#[test]
fn stopping_while_rehashing_keeps_the_durable_point() {
    let src = source(1_500_000, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.checkpoint_bytes = Some(100_000);
    let cancel = Arc::clone(&o.cancel);
    let size = src.data.len() as u64;
    let first = acquire_from(
        &o,
        &src,
        info(size),
        ReadOnlyState::default(),
        &|| Some(size),
        &mut |p| {
            if p.done_bytes >= 1_000_000 {
                cancel.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    let durable = first.manifest.acquired_bytes;
    assert!(durable >= 1_000_000, "{durable}");

    // Stop again at once, while the resumed prefix is being re-hashed.
    let mut r = opts(dir.path());
    r.resume = true;
    r.cancel.store(true, Ordering::SeqCst);
    let second = run(&r, &src).unwrap();
    assert_eq!(second.status, AcquireStatus::Interrupted);
    assert_eq!(second.manifest.acquired_bytes, durable);
    assert_eq!(
        Checkpoint::load(dir.path()).unwrap().unwrap().source_offset,
        durable
    );

    // Leaving --window out on resume keeps the recorded windows.
    let mut r = opts(dir.path());
    r.resume = true;
    r.window = None;
    let done = run(&r, &src).unwrap();
    assert_eq!(done.manifest.hashes["sha256"], hash::sha256_hex(&src.data));
    assert_eq!(done.manifest.resumes.len(), 2);
    assert_eq!(done.manifest.image.window_bytes, Some(100_000));
    assert_eq!(done.manifest.windows.len(), 15);
}

#[test]
fn an_image_short_by_one_byte_names_the_first_window_it_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000_000, vec![]);
    run(&opts(dir.path()), &src).unwrap();
    let p = dir.path().join("image.raw");
    let img = fs::read(&p).unwrap();
    fs::write(&p, &img[..img.len() - 1]).unwrap();
    let report = verify_dir(dir.path());
    assert!(!report.ok);
    let w = report.first_bad_window.expect("a window is named");
    assert_eq!(
        (w.index, w.offset),
        (9, 900_000),
        "the last 100 000-byte window"
    );
    assert!(w.actual.contains("999999"), "{}", w.actual);
    assert_eq!(report.bad_windows, 1);

    // Cut inside the fourth window: it and every later one are incomplete.
    fs::write(&p, &img[..350_000]).unwrap();
    let report = verify_dir(dir.path());
    let w = report.first_bad_window.expect("a window is named");
    assert_eq!((w.index, report.bad_windows), (3, 7));
}

#[test]
fn a_destination_inside_an_acquisition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(200_000, vec![]);
    run(&opts(dir.path()), &src).unwrap();
    for nested in [dir.path().join("second"), dir.path().join("a/b/c")] {
        let err = run(&opts(&nested), &src).unwrap_err();
        assert!(
            matches!(&err, AcquireError::RejectNestedDestination { holder, .. }
                if holder == &fs::canonicalize(dir.path()).unwrap()),
            "{err}"
        );
        assert!(!nested.exists(), "nothing is created for a refused run");
    }
    // An interrupted acquisition counts too (its checkpoint marks it).
    let other = tempfile::tempdir().unwrap();
    let o = opts(other.path());
    o.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(run(&o, &src).unwrap().status, AcquireStatus::Interrupted);
    let err = run(&opts(&other.path().join("x")), &src).unwrap_err();
    assert!(
        matches!(err, AcquireError::RejectNestedDestination { .. }),
        "{err}"
    );
}

#[test]
fn refused_options_leave_no_directory_and_windows_have_a_floor() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(200_000, vec![]);
    let out = dir.path().join("new");
    for (split, window) in [(Some(1000), None), (None, Some(0)), (None, Some(512))] {
        let mut o = opts(&out);
        o.split = split;
        o.window = window;
        let err = run(&o, &src).unwrap_err();
        assert!(!out.exists(), "{err} left {}", out.display());
    }
    let mut o = opts(&out);
    o.window = Some(512);
    let msg = error_chain(&run(&o, &src).unwrap_err());
    assert!(msg.contains("at least 4096 bytes"), "{msg}");
    // Large sources: at most MAX_WINDOWS windows.
    assert_eq!(settings::window_floor(256 << 20), 4096);
    assert_eq!(settings::window_floor(2 << 40), 32 << 20);
}

#[test]
fn zstd_frames_default_to_64_kib_and_divide_the_read_size() {
    let requested = |block: usize, frame: Option<usize>| Requested {
        format: Some(ImageFormat::Zstd),
        split: None,
        hashes: None,
        window: None,
        zstd_level: None,
        block_size: Some(block),
        frame_size: frame,
        retries: None,
    };
    let frame = |block, frame| {
        resolve_settings(&requested(block, frame), 512, 1 << 30, None).map(|s| s.frame_bytes)
    };
    assert_eq!(frame(4 << 20, None).unwrap(), Some(64 << 10));
    // A read size 64 KiB does not divide keeps one frame per read.
    assert_eq!(frame(96 << 10, None).unwrap(), Some(96 << 10));
    assert_eq!(frame(4 << 20, Some(32 << 10)).unwrap(), Some(32 << 10));
    for bad in [0, 96 << 10, 8 << 20] {
        let err = frame(4 << 20, Some(bad)).unwrap_err();
        assert!(error_chain(&err).contains("must divide"), "{err}");
    }
    // Raw images have no frames.
    let mut raw = requested(4 << 20, None);
    raw.format = Some(ImageFormat::Raw);
    let s = resolve_settings(&raw, 512, 1 << 30, None).unwrap();
    assert_eq!(s.frame_bytes, None);
    // A record made before frames were cut smaller (no frame_bytes) keeps one frame per read.
    let mut old = resolve_settings(&requested(1 << 20, None), 512, 1 << 30, None).unwrap();
    old.frame_bytes = None;
    assert_eq!(old.frame(), 1 << 20);
    assert_eq!(old.compress().map(|c| c.frame), Some(1 << 20));
}
