//! `rescue live` on a running suspect host (`tests::live`: the Debian kernel, busybox, a test program,
//! an ext4 evidence disk and the boot stick mounted read-only), checked on the host with tools
//! someone else wrote.
//!
//! In the guest: a process fills pages with a known random pattern, locks them and reports their
//! physical addresses (`/proc/self/pagemap`); `rescue live --out /evidence/live1` runs from the stick;
//! then a copy of the test program is started from `/tmp` and deleted, and
//! `rescue live --format lime-zstd --out /evidence/live2` runs; the guest powers off.
//!
//! On the host, from the evidence disk (read with `debugfs`, no mount): the LiME ranges equal the
//! guest's "System RAM" ranges of `/proc/iomem`; every pattern page is at its reported physical
//! address in the dump; Volatility 3's `banners.Banners` finds the guest's `/proc/version` at a physical
//! address inside a LiME range, and the bytes there are that banner (Volatility reads a file it cannot
//! parse as raw, which would give file offsets); the process list holds the pattern process with the
//! SHA-256 of the test program; the deleted executable is recovered with that hash; `sha256sum -c`
//! passes in both directories and their `memory/`; `zstd -d` of the second image is the LiME stream its
//! manifest hashed, over the same ranges, with the deleted program's pattern where it said.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use tests::fixtures::{debugfs_rdump, run_tool};
use tests::live::{self, LimeRange};
use tests::{gate, sha256_file};

/// Generous: TCG on a shared, loaded machine reads and hashes 512 MiB.
const LIVE_TIMEOUT: Duration = Duration::from_secs(1800);
const T: Duration = Duration::from_secs(120);
const MEMORY_MIB: u32 = 512;
const PATTERN_SEED: u64 = 0x5eed_1234_abcd;
const PATTERN_PAGES: usize = 16;
const DELETED_SEED: u64 = 0xde1e_7ed0;

/// The Python of the Volatility 3 virtualenv `cargo xtask test` makes.
fn volatility_python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RESCUE_VOLATILITY_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cache");
    fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("volatility3-"))
        .map(|e| e.path().join("venv/bin/python"))
        .find(|p| p.exists())
        .context(
            "no Volatility 3 virtualenv: set RESCUE_VOLATILITY_PYTHON (cargo xtask test makes \
             target/cache/volatility3-VERSION)",
        )
}

/// The text between two marker lines the guest printed.
fn between(text: &str, begin: &str, end: &str) -> anyhow::Result<String> {
    let (_, rest) = text
        .split_once(begin)
        .with_context(|| format!("no {begin} in {text}"))?;
    let (body, _) = rest
        .split_once(end)
        .with_context(|| format!("no {end} in {text}"))?;
    Ok(body.trim_start_matches('\n').to_owned())
}

/// `rescue live` exits 0 when everything was collected, 3 when memory was captured with pages it
/// could not read (zero-filled and listed): the bytes between the end of a page-truncated range of
/// `/proc/kcore` and the end of a "System RAM" range that does not end on a page boundary. Otherwise
/// the failure carries the memory record of `live-manifest.json` (which sources were tried and why
/// they failed).
fn live_succeeded(
    vm: &mut tests::Qemu,
    what: &str,
    out_dir: &str,
    (status, out): &(i32, String),
) -> anyhow::Result<()> {
    if *status == 0 || *status == 3 {
        return Ok(());
    }
    let (_, manifest) = live::sh(vm, &format!("cat {out_dir}/live-manifest.json"), T)?;
    let memory = serde_json::from_str::<serde_json::Value>(manifest.trim())
        .map(|m| m["memory"].to_string())
        .unwrap_or(manifest);
    Err(anyhow::anyhow!(
        "{what} exited {status}:\n{out}\nmemory: {memory}\n{}",
        vm.log()
    ))
}

/// `live-manifest.json` of a live response.
fn live_manifest(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let p = dir.join("live-manifest.json");
    Ok(serde_json::from_slice(
        &fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    )?)
}

fn read_at(f: &mut fs::File, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// `sha256sum -c SHA256SUMS` in `dir`.
fn sha256sum_check(dir: &Path) -> anyhow::Result<String> {
    run_tool(
        Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(dir),
    )
}

/// The process record of `pid` in the live response's process list.
fn process(dir: &Path, pid: u32) -> anyhow::Result<serde_json::Value> {
    let list = dir.join("state/processes.json");
    let v: serde_json::Value = serde_json::from_slice(
        &fs::read(&list).with_context(|| format!("reading {}", list.display()))?,
    )?;
    v["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["pid"].as_u64() == Some(pid.into()))
        .cloned()
        .with_context(|| format!("pid {pid} is not in {}", list.display()))
}

/// Volatility 3's banners.Banners on `image`: (physical offset, banner) pairs.
fn volatility_banners(
    python: &Path,
    image: &Path,
    work: &Path,
) -> anyhow::Result<Vec<(u64, String)>> {
    let cache = work.join("volatility-cache");
    fs::create_dir_all(&cache)?;
    let out = run_tool(
        Command::new(python)
            .args([
                "-c",
                "import sys; sys.argv[0] = 'vol'; import volatility3.cli as c; c.main()",
            ])
            .args(["-q", "--offline", "-r", "json", "--cache-path"])
            .arg(&cache)
            .arg("-f")
            .arg(image)
            .arg("banners.Banners"),
    )?;
    let rows: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("Volatility printed no JSON:\n{out}"))?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["Offset"].as_u64()?, r["Banner"].as_str()?.to_owned())))
        .collect())
}

#[test]
fn live_response_memory_and_state_check_out_with_volatility() -> anyhow::Result<()> {
    let Some(art) = gate("live_response_memory_and_state_check_out_with_volatility") else {
        return Ok(());
    };
    let started = Instant::now();
    let python = volatility_python()?;
    let work = tempfile::tempdir()?;
    let vm_dir = work.path().join("vm");
    fs::create_dir(&vm_dir)?;
    let (builder, evidence) = live::suspect_host(&art, &vm_dir, MEMORY_MIB, 1536, &[])?;
    let program_sha = sha256_file(&live::livetarget()?)?;
    let mut vm = builder.spawn()?;
    live::wait_shell(&mut vm, Duration::from_secs(600))?;

    // The static binary on the stick, as a responder runs it from the mounted medium.
    let rescue = live::STICK_RESCUE;
    live::sh_ok(&mut vm, &format!("test -x {rescue}"), T)?;
    let facts = live::sh_ok(
        &mut vm,
        "echo IOMEM-BEGIN; cat /proc/iomem; echo IOMEM-END; echo VERSION-BEGIN; \
         cat /proc/version; echo VERSION-END",
        T,
    )?;
    let ram = live::system_ram(&between(&facts, "IOMEM-BEGIN\n", "IOMEM-END")?)?;
    let version = between(&facts, "VERSION-BEGIN\n", "VERSION-END")?;
    let version = version.trim_end().to_owned();

    let pattern = live::start_pattern(&mut vm, "/livetarget", PATTERN_SEED, PATTERN_PAGES)?;
    let t = Instant::now();
    let out1 = live::sh(
        &mut vm,
        &format!("{rescue} live --out /evidence/live1"),
        LIVE_TIMEOUT,
    )?;
    let live1_secs = t.elapsed().as_secs_f64();
    live_succeeded(&mut vm, "rescue live", "/evidence/live1", &out1)?;

    live::sh_ok(&mut vm, "cp /livetarget /tmp/deleted-target", T)?;
    let deleted = live::start_pattern(&mut vm, "/tmp/deleted-target", DELETED_SEED, 2)?;
    live::sh_ok(&mut vm, "rm /tmp/deleted-target", T)?;
    let t = Instant::now();
    let out2 = live::sh(
        &mut vm,
        &format!("{rescue} live --format lime-zstd --out /evidence/live2"),
        LIVE_TIMEOUT,
    )?;
    let live2_secs = t.elapsed().as_secs_f64();
    live_succeeded(
        &mut vm,
        "rescue live --format lime-zstd",
        "/evidence/live2",
        &out2,
    )?;
    live::sh_ok(&mut vm, "sync; umount /evidence", T)?;
    vm.send_line("poweroff -f")?;
    vm.wait_exit(T)?;
    let guest_secs = started.elapsed().as_secs_f64();

    let got = work.path().join("got");
    debugfs_rdump(&evidence, &got)?;
    let (live1, live2) = (got.join("live1"), got.join("live2"));

    // Both directories, and the memory acquisition in each, check out with sha256sum.
    for dir in [&live1, &live1.join("memory"), &live2, &live2.join("memory")] {
        sha256sum_check(dir).with_context(|| format!("sha256sum -c in {}", dir.display()))?;
    }
    let (m1, m2) = (live_manifest(&live1)?, live_manifest(&live2)?);
    for m in [&m1, &m2] {
        assert_eq!(m["schema"], "rescue.live/1");
        assert_eq!(m["memory"]["captured"], true, "{}", m["memory"]);
        let listed: Vec<(u64, u64)> = m["memory"]["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["start"].as_u64()?, r["end"].as_u64()?)))
            .collect();
        assert_eq!(listed, ram, "the manifest's ranges are System RAM");
    }

    // The LiME ranges are the guest's System RAM.
    let image = live1.join("memory/memory.lime");
    let ranges = live::lime_ranges(fs::File::open(&image)?)?;
    let spans: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(
        spans, ram,
        "the LiME ranges are the guest's System RAM ranges"
    );

    // Every pattern page is where pagemap said it was.
    let mut dump = fs::File::open(&image)?;
    let want = live::pattern(pattern.seed, PATTERN_PAGES * 4096);
    let at = |addr: u64| ranges.iter().find_map(|r| r.file_offset(addr));
    for (i, phys) in pattern.phys.iter().enumerate() {
        let off =
            at(*phys).with_context(|| format!("page {i} at {phys:#x} is in no LiME range"))?;
        let page = read_at(&mut dump, off, 4096)?;
        assert!(
            page == want[i * 4096..(i + 1) * 4096],
            "pattern page {i} is not at physical {phys:#x} (file offset {off}) in the dump"
        );
    }

    // Volatility 3 finds the guest's banner at a physical address inside a LiME range, and the dump
    // holds that banner there.
    let banners = volatility_banners(&python, &image, work.path())?;
    let mut banner_at = |(offset, banner): &(u64, String)| -> anyhow::Result<bool> {
        let Some(file_off) = ranges
            .iter()
            .find_map(|r: &LimeRange| r.file_offset(*offset))
        else {
            return Ok(false);
        };
        let bytes = read_at(&mut dump, file_off, banner.len())?;
        Ok(bytes == banner.as_bytes() && version.starts_with(banner.trim_end()))
    };
    let mut placed = Vec::new();
    for b in &banners {
        if banner_at(b)? {
            placed.push(b.clone());
        }
    }
    assert!(
        !placed.is_empty(),
        "Volatility found no banner of {version:?} at a physical address inside a LiME range \
         holding it; it reported {banners:?}"
    );

    // The pattern process, with the hash of the program it runs; the deleted program recovered.
    let p = process(&live1, pattern.pid)?;
    assert_eq!(p["exe"], "/livetarget", "{p}");
    assert_eq!(p["exe_sha256"], program_sha.as_str(), "{p}");
    assert_eq!(p["cmdline"][0], "/livetarget", "{p}");
    let d = process(&live2, deleted.pid)?;
    assert_eq!(d["exe_deleted"], true, "{d}");
    assert_eq!(d["exe"], "/tmp/deleted-target (deleted)", "{d}");
    assert_eq!(d["exe_sha256"], program_sha.as_str(), "{d}");
    let copy = d["exe_copy"]
        .as_str()
        .with_context(|| format!("no copy of the deleted executable: {d}"))?;
    assert_eq!(
        sha256_file(&live2.join(copy))?,
        program_sha,
        "the copy {copy} of the deleted executable is the test program"
    );

    // zstd -d of the second image: a LiME stream over the same ranges.
    let zst = live2.join("memory/memory.lime.zst");
    let decoded = work.path().join("live2.lime");
    run_tool(
        Command::new("zstd")
            .args(["-q", "-d", "-f"])
            .arg(&zst)
            .arg("-o")
            .arg(&decoded),
    )?;
    let ranges2 = live::lime_ranges(fs::File::open(&decoded)?)?;
    assert_eq!(
        ranges2.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(),
        ram,
        "zstd -d of the lime-zstd image is a LiME stream over the System RAM ranges"
    );
    assert_eq!(
        m2["memory"]["hashes"]["sha256"].as_str(),
        Some(sha256_file(&decoded)?.as_str()),
        "zstd -d gives the LiME stream the manifest hashed"
    );
    let mut dump2 = fs::File::open(&decoded)?;
    let want2 = live::pattern(deleted.seed, 2 * 4096);
    for (i, phys) in deleted.phys.iter().enumerate() {
        let off = ranges2
            .iter()
            .find_map(|r| r.file_offset(*phys))
            .with_context(|| format!("page {i} at {phys:#x} is in no LiME range"))?;
        assert!(
            read_at(&mut dump2, off, 4096)? == want2[i * 4096..(i + 1) * 4096],
            "the deleted program's pattern page {i} is at {phys:#x} in the decoded lime-zstd image"
        );
    }

    eprintln!(
        "live scenario: {MEMORY_MIB} MiB guest, `{rescue} live` {live1_secs:.0} s (lime), \
         {live2_secs:.0} s (lime-zstd); guest {guest_secs:.0} s, whole test {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
