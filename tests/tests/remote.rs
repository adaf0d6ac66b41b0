//! Remote evidence end to end: the rescue system boots with NICs it must leave down, the operator brings
//! one up with DHCP (QEMU's user-mode network in `restrict=on` mode: the guest reaches nothing but a
//! single `guestfwd` to an `s3s-fs` store on the host's loopback), and acquires a disk to the store.
//! The host then checks that the stored object equals the source disk and that every part hash in the
//! manifest holds. Also: an interface without link and one where nobody answers DHCP fail cleanly.
//! No traffic leaves the loopback and QEMU's own network.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::Digest;
use tests::says;
use tests::{Bus, Disk, QemuBuilder, gate, make_disk, sha256_file};

const ACCESS: &str = "QEMUTESTKEY";
const SECRET: &str = "qemu-test-secret-42";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `out` on a thread until a line holds `needle`, then keeps draining it (a full pipe would stop
/// the writer); fails when the writer closes it first or after `timeout`.
fn wait_for_line(
    out: Option<impl std::io::Read + Send + 'static>,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let out = out.ok_or_else(|| anyhow::anyhow!("no output pipe"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut out = std::io::BufReader::new(out);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = tx.send(Err(seen));
                return;
            }
            seen.push_str(&line);
            if line.contains(&needle) {
                let _ = tx.send(Ok(()));
                break;
            }
        }
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(seen)) => Err(anyhow::anyhow!("exited before it listened:\n{seen}")),
        Err(_) => Err(anyhow::anyhow!("did not say it listens within {timeout:?}")),
    }
}

fn s3s_fs() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        std::env::var_os("RESCUE_S3S_FS").map(PathBuf::from),
        Some(root.join("target/tools/bin/s3s-fs")),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .ok_or_else(|| anyhow::anyhow!("s3s-fs not found (cargo xtask test installs it)"))
}

fn mac_iface(status: &serde_json::Value, mac: &str) -> anyhow::Result<String> {
    status
        .as_array()
        .and_then(|a| a.iter().find(|i| i["mac"] == mac))
        .and_then(|i| i["name"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no interface with MAC {mac} in {status}"))
}

#[test]
fn dhcp_then_acquire_to_an_s3_store_on_the_host() -> anyhow::Result<()> {
    let Some(art) = gate("dhcp_then_acquire_to_an_s3_store_on_the_host") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let store = work.path().join("store");
    fs::create_dir_all(store.join("evidence"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(s3s_fs()?)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS, "--secret-key", SECRET])
        .arg(&store)
        // Its log says when it listens: "server is running at http://…", printed after the bind.
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take();
    let _server = Server(child);
    wait_for_line(out, "server is running at", Duration::from_secs(180))
        .map_err(|e| anyhow::anyhow!("s3s-fs: {e}"))?;

    let disk = work.path().join("evidence.img");
    let size: u64 = 24 << 20;
    make_disk(&disk, size, 11)?;
    let before = sha256_file(&disk)?;
    // Credentials on their own small medium, as an operator would bring them.
    let creds = work.path().join("creds.img");
    let mut text =
        format!("aws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n").into_bytes();
    text.resize(1 << 20, 0);
    fs::write(&creds, &text)?;

    let fwd = format!("tcp:10.0.2.100:9000-cmd:socat STDIO TCP:127.0.0.1:{port}");
    let mut d = Disk::new(&disk, Bus::Virtio);
    d.serial = Some("REMOTE1".to_owned());
    let mut c = Disk::new(&creds, Bus::Virtio);
    c.serial = Some("CREDS1".to_owned());
    let b = QemuBuilder::direct(&art, work.path())
        .disk(d)
        .disk(c)
        .user_nic("net0", "52:54:00:00:00:10", &[fwd])
        .user_nic("net1", "52:54:00:00:00:11", &[])
        .isolated_nic("net2", "52:54:00:00:00:12");
    let mut vm = b.spawn()?;
    vm.wait_prompt(Duration::from_secs(120))?;

    // Nothing is up until asked.
    let status = vm.run_json("net status --json", Duration::from_secs(60))?;
    let all = status.as_array().cloned().unwrap_or_default();
    vm.check(all.len() == 3, &format!("three NICs listed: {status}"))?;
    vm.check(
        all.iter()
            .all(|i| i["up"] == false && i["driver"] == "virtio_net"),
        &format!("every NIC is down and driven by virtio_net: {status}"),
    )?;
    let good = mac_iface(&status, "52:54:00:00:00:10")?;
    let unplugged = mac_iface(&status, "52:54:00:00:00:11")?;
    let silent = mac_iface(&status, "52:54:00:00:00:12")?;

    // No link: refused quickly, the interface left down.
    vm.hmp("set_link net1 off")?;
    let out = vm.run(
        &format!("net up {unplugged} --dhcp"),
        Duration::from_secs(60),
    )?;
    vm.check(
        says(&out, "has no link"),
        &format!("no-link refusal:\n{out}"),
    )?;
    // Nobody answers DHCP: a clear timeout.
    let out = vm.run(
        &format!("net up {silent} --dhcp --timeout 5"),
        Duration::from_secs(60),
    )?;
    vm.check(
        says(&out, "no DHCP OFFER"),
        &format!("DHCP timeout:\n{out}"),
    )?;

    let out = vm.run(&format!("net up {good} --dhcp"), Duration::from_secs(120))?;
    vm.check(
        // restrict=on: QEMU's DHCP offers no router or DNS; the store's guestfwd address is on-link.
        says(&out, "10.0.2.15/24, gateway none (dhcp from 10.0.2.2)")
            && !says(&out, "(exit status"),
        &format!("DHCP lease from QEMU's server:\n{out}"),
    )?;
    let status = vm.run_json("net status --json", Duration::from_secs(60))?;
    let up: Vec<&serde_json::Value> = status
        .as_array()
        .map(|a| a.iter().filter(|i| i["up"] == true).collect())
        .unwrap_or_default();
    vm.check(
        up.len() == 1 && up[0]["name"] == good.as_str(),
        &format!("exactly the requested interface is up: {status}"),
    )?;

    let out = vm.run(
        "acquire /dev/vda --out s3://evidence/CASE-Q/vm/disk-1 --endpoint http://10.0.2.100:9000 --credentials /dev/vdb --case CASE-Q --evidence-id disk-1",
        Duration::from_secs(900),
    )?;
    vm.check(
        says(&out, "acquired /dev/vda") && !says(&out, "(exit status"),
        &format!("acquire to the store:\n{out}"),
    )?;
    let verify = vm.run(
        "verify s3://evidence/CASE-Q/vm/disk-1 --endpoint http://10.0.2.100:9000 --credentials /dev/vdb",
        Duration::from_secs(600),
    )?;
    vm.check(
        verify.contains("verified"),
        &format!("verify from the guest:\n{verify}"),
    )?;
    let down = vm.run("net down", Duration::from_secs(60))?;
    vm.check(says(&down, ": down"), &format!("net down:\n{down}"))?;

    // The same interface with a static address, route and DNS instead of DHCP.
    let out = vm.run(
        &format!("net up {good} --address 10.0.2.20/24 --gateway 10.0.2.2 --dns 10.0.2.3"),
        Duration::from_secs(60),
    )?;
    vm.check(
        says(
            &out,
            "10.0.2.20/24, gateway 10.0.2.2 (static), dns 10.0.2.3",
        ),
        &format!("static configuration:\n{out}"),
    )?;
    let status = vm.run_json("net status --json", Duration::from_secs(60))?;
    let config = status
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == good.as_str()))
        .map(|i| i["config"].clone())
        .unwrap_or_default();
    vm.check(
        config["method"] == "static" && config["wrote_resolv_conf"] == true,
        &format!("net status shows the static configuration: {status}"),
    )?;
    let verify = vm.run(
        "verify s3://evidence/CASE-Q/vm/disk-1 --endpoint http://10.0.2.100:9000 --credentials /dev/vdb",
        Duration::from_secs(600),
    )?;
    vm.check(
        verify.contains("verified"),
        &format!("verify over the static address:\n{verify}"),
    )?;
    let down = vm.run("net down", Duration::from_secs(60))?;
    vm.check(says(&down, ": down"), &format!("net down:\n{down}"))?;
    vm.send_line("poweroff")?;
    vm.wait_exit(Duration::from_secs(60))?;

    // On the host: the object is the disk, and every recorded part hash holds.
    let dir = store.join("evidence/CASE-Q/vm/disk-1");
    let object = fs::read(dir.join("image.raw"))?;
    assert_eq!(object.len() as u64, size);
    assert_eq!(
        sha2::Sha256::digest(&object)[..],
        sha2::Sha256::digest(fs::read(&disk)?)[..]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json"))?)?;
    assert_eq!(manifest["hashes"]["sha256"].as_str(), Some(before.as_str()));
    assert_eq!(manifest["source"]["serial"], "REMOTE1");
    let parts = manifest["remote"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(parts.len(), 3, "{manifest}");
    for p in &parts {
        let o = p["offset"].as_u64().unwrap_or(0) as usize;
        let n = p["size_bytes"].as_u64().unwrap_or(0) as usize;
        let h: String = sha2::Sha256::digest(&object[o..o + n])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(p["sha256"].as_str(), Some(h.as_str()), "part {p}");
    }
    let o = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&dir)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    Ok(())
}
