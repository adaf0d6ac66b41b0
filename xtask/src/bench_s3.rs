//! `cargo xtask bench s3`: upload throughput of `rescue acquire --out s3://…` to a local `s3s-fs` store on
//! the loopback against `rescue acquire` to a local directory, same source file, both outputs on tmpfs.
//! Prints medians of round-robin runs, the ratio (target ≥ 0.7×) and peak RSS (target ≤ 256 MiB), and
//! writes the markdown table to `target/bench/s3.md`. Then the client CPU per GiB of `rescue` next to
//! `rclone copy` and `aws s3 cp` (Debian packages) uploading the same file to
//! the same store in the same rounds (issue 17). Also owns installing `s3s-fs` for the tests.
//!
//! Flags: `--size MIB` (default 1024), `--runs N` (default 3), `--dir DIR` (default `/dev/shm/rescue-bench-s3`).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{deps, util};

/// Version the tests are written against.
const S3S_FS: &str = "s3s-fs@0.14.1";

/// Returns the `s3s-fs` binary, installing it into `target/tools` with `cargo install` when missing.
pub fn ensure_s3s_fs() -> anyhow::Result<PathBuf> {
    let root = util::project_root().join("target/tools");
    let bin = root.join("bin/s3s-fs");
    if bin.is_file() {
        return Ok(bin);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let b = Path::new(&home).join(".cargo/bin/s3s-fs");
        if b.is_file() {
            return Ok(b);
        }
    }
    eprintln!("xtask: installing {S3S_FS} (the S3 server the remote-evidence tests run against)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    util::run(
        Command::new(cargo)
            .args([
                "install",
                S3S_FS,
                "--features",
                "binary",
                "--locked",
                "--root",
            ])
            .arg(&root),
    )?;
    if !bin.is_file() {
        bail!("cargo install {S3S_FS} did not produce {}", bin.display());
    }
    Ok(bin)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run: wall seconds, CPU seconds (user + system) and peak RSS in KiB.
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// Runs `cmd` under `/usr/bin/time -v`.
fn timed(cmd: &Command) -> anyhow::Result<Sample> {
    let mut t = Command::new("/usr/bin/time");
    t.arg("-v").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    t.stdout(Stdio::null());
    let start = Instant::now();
    let out = t.output().context("running /usr/bin/time")?;
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("`{}` failed: {err}", util::display(&t));
    }
    let field = |name: &str| -> f64 {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Sample {
        wall: secs,
        cpu: field("User time (seconds): ") + field("System time (seconds): "),
        rss_kib: field("Maximum resident set size (kbytes): ") as u64,
    })
}

/// The other clients: file-name tag, how the table names them.
const OTHERS: [(&str, &str); 2] = [
    (
        "rclone",
        "`rclone copy` (Debian rclone 1.60: MD5 of the file and per part, 4 × 8 MiB parts)",
    ),
    (
        "aws",
        "`aws s3 cp` (Debian awscli 2.9: its default checksums, it has no `--checksum-algorithm`; 8 MiB parts)",
    ),
];

/// `rclone copy` and `aws s3 cp` of `source` to run `i`'s keys, in [`OTHERS`]' order.
fn other_clients(source: &Path, endpoint: &str, i: usize) -> Vec<Command> {
    let mut rclone = Command::new("/usr/bin/rclone");
    rclone
        .arg("copy")
        .arg(source)
        .arg(format!(":s3:bench/rclone-{i}"))
        .args(["--s3-chunk-size", "8M", "--s3-upload-concurrency", "4"])
        // A CA bundle in the environment makes rclone refuse its plain-HTTP transport.
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_S3_PROVIDER", "Other")
        .env("RCLONE_S3_ENDPOINT", endpoint)
        .env("RCLONE_S3_REGION", "us-east-1")
        .env("RCLONE_S3_ACCESS_KEY_ID", "BENCHKEY")
        .env("RCLONE_S3_SECRET_ACCESS_KEY", "bench-secret");
    let mut aws = Command::new("/usr/bin/aws");
    aws.args(["s3", "cp", "--no-progress"])
        .arg(source)
        .arg(format!("s3://bench/aws-{i}/source.img"))
        .args(["--endpoint-url", endpoint])
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", "BENCHKEY")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    vec![rclone, aws]
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut size_mib: u64 = 1024;
    let mut runs = 3usize;
    let mut dir = PathBuf::from("/dev/shm/rescue-bench-s3");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--size" => size_mib = value()?.parse().context("--size takes MiB")?,
            "--runs" => runs = value()?.parse().context("--runs takes a count")?,
            "--dir" => dir = PathBuf::from(value()?),
            other => bail!("unknown flag {other:?}; flags: --size MIB --runs N --dir DIR"),
        }
    }
    // The other clients, uploading the same file to the same store (issue 17). By path: a pyenv or
    // pip `aws` on PATH is not the Debian one.
    deps::ensure_packages(&[
        ("/usr/bin/time", "time"),
        ("/usr/bin/rclone", "rclone"),
        ("/usr/bin/aws", "awscli"),
    ])?;
    let server_bin = ensure_s3s_fs()?;
    let root = util::project_root();
    util::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(&root)
            .args(["build", "--release", "--locked", "-p", "rescue"]),
    )?;
    let rescue = root.join("target/release/rescue");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let source = dir.join("source.img");
    {
        // Pseudo-random with zero stripes: neither side can skip work.
        let mut data = vec![0u8; 1 << 20];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut f = fs::File::create(&source)?;
        for i in 0..size_mib {
            for c in data.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&if i % 4 == 3 { 0 } else { x }.to_le_bytes());
            }
            std::io::Write::write_all(&mut f, &data)?;
        }
    }
    let store = dir.join("store");
    fs::create_dir_all(store.join("bench"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _server = Server(
        Command::new(&server_bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "BENCHKEY", "--secret-key", "bench-secret"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting s3s-fs")?,
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("s3s-fs did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let server_pid = _server.0.id();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let (mut cpu_local, mut cpu_remote, mut cpu_server) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_local, mut rss_remote) = (0, 0);
    // Per other client: wall, client CPU, server CPU, peak RSS.
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>, u64);
    let mut others: Vec<Samples> = OTHERS.iter().map(|_| Default::default()).collect();
    for i in 0..runs.max(1) {
        let out = dir.join(format!("local-{i}"));
        let mut c = Command::new(&rescue);
        c.arg("acquire").arg(&source).arg("--out").arg(&out);
        let s = timed(&c)?;
        eprintln!(
            "bench: local run {i}: {:.1} s, {:.1} s CPU, {} MiB RSS",
            s.wall,
            s.cpu,
            s.rss_kib / 1024
        );
        local.push(s.wall);
        cpu_local.push(s.cpu);
        rss_local = rss_local.max(s.rss_kib);
        let _ = fs::remove_dir_all(&out);

        let mut c = Command::new(&rescue);
        c.arg("acquire")
            .arg(&source)
            .args([
                "--out",
                &format!("s3://bench/run-{i}"),
                "--endpoint",
                &endpoint,
            ])
            .env("AWS_ACCESS_KEY_ID", "BENCHKEY")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret");
        let before = process_cpu(server_pid);
        let s = timed(&c)?;
        let server = process_cpu(server_pid) - before;
        eprintln!(
            "bench: s3 run {i}: {:.1} s, {:.1} s CPU (server {server:.1} s), {} MiB RSS",
            s.wall,
            s.cpu,
            s.rss_kib / 1024
        );
        remote.push(s.wall);
        cpu_remote.push(s.cpu);
        cpu_server.push(server);
        rss_remote = rss_remote.max(s.rss_kib);
        let _ = fs::remove_dir_all(store.join(format!("bench/run-{i}")));

        for (k, c) in other_clients(&source, &endpoint, i).iter().enumerate() {
            let before = process_cpu(server_pid);
            let s = timed(c)?;
            let server = process_cpu(server_pid) - before;
            eprintln!(
                "bench: {} run {i}: {:.1} s, {:.1} s CPU (server {server:.1} s), {} MiB RSS",
                OTHERS[k].0,
                s.wall,
                s.cpu,
                s.rss_kib / 1024
            );
            others[k].0.push(s.wall);
            others[k].1.push(s.cpu);
            others[k].2.push(server);
            others[k].3 = others[k].3.max(s.rss_kib);
            let _ = fs::remove_dir_all(store.join(format!("bench/{}-{i}", OTHERS[k].0)));
        }
    }
    let (l, r) = (util::median(local), util::median(remote));
    let (cl, cr, cs) = (
        util::median(cpu_local),
        util::median(cpu_remote),
        util::median(cpu_server),
    );
    let mb = size_mib as f64 * 1.048576;
    let ratio = l / r;
    let table = format!(
        "| run ({size_mib} MiB file, tmpfs, median of {runs}) | time (s) | MB/s | CPU of rescue (s) | CPU of s3s-fs (s) | peak RSS |\n|---|---:|---:|---:|---:|---:|\n\
         | `rescue acquire source.img --out local-0` | {l:.1} | {:.0} | {cl:.1} | | {:.0} MiB |\n\
         | `rescue acquire source.img --out s3://bench/run-0` to s3s-fs on loopback | {r:.1} | {:.0} | {cr:.1} | {cs:.1} | {:.0} MiB |\n\n\
         Upload / local throughput: **{ratio:.2}×** (target ≥ 0.7×: {}); peak RSS of the upload {:.0} MiB (target ≤ 256 MiB: {}).\n",
        mb / l,
        rss_local as f64 / 1024.0,
        mb / r,
        rss_remote as f64 / 1024.0,
        if ratio >= 0.7 { "yes" } else { "**no**" },
        rss_remote as f64 / 1024.0,
        if rss_remote <= 256 * 1024 {
            "yes"
        } else {
            "**no**"
        },
    );
    let gib = size_mib as f64 / 1024.0;
    let mut cpu = format!(
        "\n| client, {size_mib} MiB file to s3s-fs on loopback (median of {runs}) | time (s) | CPU of the client (s) | client CPU-s per GiB | CPU of s3s-fs (s) | peak RSS |\n|---|---:|---:|---:|---:|---:|\n\
         | `rescue acquire --out s3://…` (stream SHA-256, `x-amz-checksum-sha256` per part) | {r:.1} | {cr:.1} | {:.2} | {cs:.1} | {:.0} MiB |\n",
        cr / gib,
        rss_remote as f64 / 1024.0
    );
    let mut lowest = f64::MAX;
    for (k, (wall, client, server, rss)) in others.into_iter().enumerate() {
        let c = util::median(client);
        lowest = lowest.min(c);
        cpu.push_str(&format!(
            "| {} | {:.1} | {c:.1} | {:.2} | {:.1} | {:.0} MiB |\n",
            OTHERS[k].1,
            util::median(wall),
            c / gib,
            util::median(server),
            rss as f64 / 1024.0
        ));
    }
    cpu.push_str(&format!(
        "\n`rescue` CPU per GiB / the lower of the other two: **{:.2}×** (goal ≤ 1: {}).\n",
        cr / lowest,
        if cr <= lowest { "met" } else { "**not met**" }
    ));
    let table = table + &cpu;
    println!("{table}");
    let md = root.join("target/bench/s3.md");
    fs::create_dir_all(md.parent().unwrap_or(&root))?;
    fs::write(&md, &table)?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
