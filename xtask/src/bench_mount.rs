//! `cargo xtask bench mount`: read throughput through `rescue mount` of zstd seekable acquisitions
//! (the default 64 KiB frames, 32 KiB frames, and 4 MiB frames as acquisitions made before frames were
//! cut smaller than the read block have) against reading the decompressed raw file and against
//! `ewfmount` of an E01 (`ewfacquire -u -c fast`) of the same disk: sequential (1 MiB reads, the whole
//! image) and random 4 KiB reads at 4 KiB-aligned offsets, each mount fresh for every run so no run
//! reads another's page cache. Targets take turns within a run, so a burst of load on the shared
//! machine hits all of them. Also the stored size and how long each image took to make. Prints
//! medians, the load average before and after, and writes the markdown table to
//! `target/bench/mount.md`.
//!
//! Flags: `--out-dir DIR` (default `/dev/shm/rescue-bench-mount`), `--size MIB` (default 1024),
//! `--runs N` (default 3), `--reads N` random reads per run (default 1000).

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{bench_acquire, deps, util};

struct Options {
    out_dir: PathBuf,
    size_mib: u64,
    runs: usize,
    reads: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        out_dir: PathBuf::from("/dev/shm/rescue-bench-mount"),
        size_mib: 1024,
        runs: 3,
        reads: 1000,
    };
    let mut it = args.iter().filter(|a| a.as_str() != "mount");
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out-dir" => o.out_dir = PathBuf::from(value()?),
            "--size" => o.size_mib = value()?.parse().context("--size takes MiB")?,
            "--runs" => o.runs = value()?.parse().context("--runs takes a count")?,
            "--reads" => o.reads = value()?.parse().context("--reads takes a count")?,
            other => {
                bail!("unknown flag {other:?}; flags: --out-dir DIR --size MIB --runs N --reads N")
            }
        }
    }
    o.runs = o.runs.max(1);
    o.reads = o.reads.max(1);
    Ok(o)
}

/// How a target's file is made readable for one run, and undone afterwards.
enum Serve {
    /// A plain file (the decompressed raw image on tmpfs).
    File(PathBuf),
    /// `rescue mount DIR MNT`, read as `MNT/image.raw`.
    Rescue { rescue: PathBuf, dir: PathBuf },
    /// `ewfmount IMAGE.E01 MNT`, read as `MNT/ewf1`.
    Ewf(PathBuf),
}

struct Target {
    name: String,
    /// Stored MiB and seconds to make, for images made here.
    made: Option<(u64, f64)>,
    serve: Serve,
    mnt: PathBuf,
    seq: Vec<f64>,
    random: Vec<f64>,
}

impl Target {
    /// Makes the file readable; returns its path.
    fn up(&self) -> anyhow::Result<PathBuf> {
        match &self.serve {
            Serve::File(p) => Ok(p.clone()),
            Serve::Rescue { rescue, dir } => {
                fs::create_dir_all(&self.mnt)?;
                util::output(Command::new(rescue).arg("mount").arg(dir).arg(&self.mnt))?;
                Ok(self.mnt.join("image.raw"))
            }
            Serve::Ewf(e01) => {
                fs::create_dir_all(&self.mnt)?;
                // ewfmount returns once mounted and serves from the background.
                util::output(Command::new("ewfmount").arg(e01).arg(&self.mnt))?;
                Ok(self.mnt.join("ewf1"))
            }
        }
    }

    fn down(&self) -> anyhow::Result<()> {
        match &self.serve {
            Serve::File(_) => Ok(()),
            Serve::Rescue { rescue, .. } => {
                util::output(Command::new(rescue).arg("umount").arg(&self.mnt)).map(|_| ())
            }
            Serve::Ewf(_) => util::output(Command::new("umount").arg(&self.mnt)).map(|_| ()),
        }
    }
}

/// MB/s reading the whole file with 1 MiB reads.
fn sequential(path: &Path) -> anyhow::Result<f64> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    advise(&f, libc::POSIX_FADV_SEQUENTIAL);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let t = Instant::now();
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// MB/s of `reads` 4 KiB reads at pseudo-random 4 KiB-aligned offsets (the same offsets for every
/// target of a run).
fn random(path: &Path, reads: usize, seed: u64) -> anyhow::Result<f64> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    advise(&f, libc::POSIX_FADV_RANDOM);
    let pages = f.metadata()?.len() / 4096;
    let mut x = seed | 1;
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.read_exact_at(&mut buf, (x % pages) * 4096)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok((reads * 4096) as f64 / t.elapsed().as_secs_f64() / 1e6)
}

fn advise(f: &File, advice: libc::c_int) {
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice) };
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    deps::ensure_packages(&[
        ("ewfacquire", "ewf-tools"),
        ("ewfmount", "ewf-tools"),
        ("umount", "mount"),
    ])?;
    let root = util::project_root();
    util::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", "rescue"])
            .current_dir(&root),
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let rescue = target.join("release/rescue");
    let bench_dir = root.join("target/bench");
    fs::create_dir_all(&bench_dir)?;
    let disk = bench_dir.join(format!("mount-disk-{}.img", o.size_mib));
    bench_acquire::make_disk(&disk, o.size_mib)?;

    let out = &o.out_dir;
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(out)?;
    let raw = out.join("raw.img");
    fs::copy(&disk, &raw).context("copying the disk to the output directory")?;
    let acquire = |name: &str, extra: &[&str]| -> anyhow::Result<(PathBuf, (u64, f64))> {
        let dir = out.join(name);
        eprintln!("bench: rescue acquire --format zstd {}", extra.join(" "));
        let t = Instant::now();
        util::output(
            Command::new(&rescue)
                .arg("acquire")
                .arg(&disk)
                .arg("--out")
                .arg(&dir)
                .args(["--format", "zstd"])
                .args(extra),
        )?;
        let secs = t.elapsed().as_secs_f64();
        Ok((dir.clone(), (util::dir_size(&dir) >> 20, secs)))
    };
    let zstd = |name: &str, label: &str, extra: &[&str], mnt: &str| -> anyhow::Result<Target> {
        let (dir, made) = acquire(name, extra)?;
        Ok(Target {
            name: label.to_owned(),
            made: Some(made),
            serve: Serve::Rescue {
                rescue: rescue.clone(),
                dir,
            },
            mnt: out.join(mnt),
            seq: Vec::new(),
            random: Vec::new(),
        })
    };
    let mut targets = vec![Target {
        name: "raw file on tmpfs (no FUSE)".into(),
        made: None,
        serve: Serve::File(raw.clone()),
        mnt: PathBuf::new(),
        seq: Vec::new(),
        random: Vec::new(),
    }];
    targets.push(zstd(
        "zstd-64k",
        "rescue mount, zstd, 64 KiB frames (default)",
        &[],
        "mnt-64k",
    )?);
    targets.push(zstd(
        "zstd-32k",
        "rescue mount, zstd, 32 KiB frames (`--frame-size 32K`)",
        &["--frame-size", "32K"],
        "mnt-32k",
    )?);
    targets.push(zstd(
        "zstd-4m",
        "rescue mount, zstd, 4 MiB frames (`--frame-size 4M`: acquisitions made before)",
        &["--frame-size", "4M"],
        "mnt-4m",
    )?);
    fs::create_dir_all(out.join("ewf"))?;
    eprintln!("bench: ewfacquire -u -c fast");
    let e01_base = out.join("ewf/image");
    let t = Instant::now();
    util::output(
        Command::new("ewfacquire")
            .args(["-u", "-q", "-c", "fast", "-S", "8EiB", "-t"])
            .arg(&e01_base)
            .arg(&disk),
    )?;
    let ewf_secs = t.elapsed().as_secs_f64();
    targets.push(Target {
        name: "`ewfmount`, E01 `-c fast`".into(),
        made: Some((util::dir_size(&out.join("ewf")) >> 20, ewf_secs)),
        serve: Serve::Ewf(out.join("ewf/image.E01")),
        mnt: out.join("mnt-ewf"),
        seq: Vec::new(),
        random: Vec::new(),
    });
    let load_before = util::load_average();
    for run in 0..o.runs {
        for t in &mut targets {
            // Random first: sequential reads would fill the page cache the random reads then hit.
            let path = t.up()?;
            let r = random(&path, o.reads, 0x9E37_79B9_7F4A_7C15 ^ run as u64);
            t.down()?;
            let path = t.up()?;
            let s = sequential(&path);
            t.down()?;
            t.random.push(r?);
            t.seq.push(s?);
            eprintln!(
                "bench: run {}: {}: sequential {:.0} MB/s, random 4 KiB {:.2} MB/s",
                run + 1,
                t.name,
                t.seq[run],
                t.random[run]
            );
        }
    }
    let load_after = util::load_average();
    let mut table = format!(
        "| reader ({} MiB disk, median of {}) | stored, made in | sequential, 1 MiB reads | random 4 KiB reads ({} per run) |\n|---|---|---|---|\n",
        o.size_mib, o.runs, o.reads
    );
    for t in &targets {
        let r = util::median(t.random.clone());
        let made = t
            .made
            .map_or_else(|| "-".to_owned(), |(mib, s)| format!("{mib} MiB, {s:.1} s"));
        table.push_str(&format!(
            "| {} | {made} | {:.0} MB/s | {:.2} MB/s ({:.0} reads/s) |\n",
            t.name,
            util::median(t.seq.clone()),
            r,
            r * 1e6 / 4096.0
        ));
    }
    table.push_str(&format!(
        "\nload average (1/5/15 min) before: {load_before}; after: {load_after}; {} CPUs\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    print!("{table}");
    fs::write(bench_dir.join("mount.md"), &table)?;
    fs::remove_dir_all(out).ok();
    Ok(())
}
