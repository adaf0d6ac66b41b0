//! Where `--out` of a live response lies. Writing to a disk of the running system overwrites the
//! deleted files an examiner would recover later; writing to a RAM filesystem displaces the memory
//! being captured. Both are refused unless the operator says `--allow-local-out`.
//!
//! The rule, from the mount table (`/proc/self/mountinfo`) and sysfs:
//! - the filesystem holding `out` is the mount whose mount point is the longest prefix of the nearest
//!   existing parent (canonical; of two mounts on one point the later, visible one);
//! - tmpfs, ramfs (and a filesystem on a `zram` or `brd` RAM disk) → [`OutPlace::Ram`];
//! - a network filesystem (NFS, CIFS/SMB, 9p, sshfs, …) → [`OutPlace::Separate`];
//! - an overlay → the filesystem of its `upperdir`, where its writes land;
//! - a block device → the whole disks beneath it: a partition's disk, the `slaves/` of dm and md
//!   devices, a loop device's backing device or the disks of the filesystem holding its backing file
//!   (a loop over a file on the system disk IS the system disk: the bytes land there), recursively;
//!   → [`OutPlace::SystemDisk`] when one of those disks also backs `/`, `/boot`, `/usr`, `/var`,
//!   `/home`, an active swap area (`/proc/swaps`) or a mount point listed in the running system's
//!   `/etc/fstab` (mounted or not: an fstab entry is resolved through `/dev/disk/by-*`), else
//!   [`OutPlace::Separate`].
//!
//! Only reads: `/proc/self/mountinfo`, `/proc/swaps`, `/etc/fstab`, `/sys/class/block`, `/sys/dev/block`
//! and the links under `/dev`. [`classify_in`] takes those roots, so tests run on fixture trees.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::blkro::{self, Mount};
use crate::live::Roots;

/// The kind of place `--out` lies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutPlace {
    /// A disk that holds none of the running system's filesystems (an evidence stick), or a network
    /// filesystem.
    Separate,
    /// A disk that holds the running system's filesystems (named, with what it holds).
    SystemDisk { disk: String, holds: Vec<String> },
    /// A RAM filesystem (tmpfs, ramfs).
    Ram { fstype: String },
}

/// Mount points whose disk is the running system's even when `/etc/fstab` does not list them.
const SYSTEM_MOUNTS: &[&str] = &["/", "/boot", "/usr", "/var", "/home"];
/// Filesystems whose bytes live in RAM.
const RAM_FS: &[&str] = &["tmpfs", "ramfs", "devtmpfs", "hugetlbfs"];
/// Filesystems whose bytes go over the network (or to the hypervisor's host), not to a local disk.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "virtiofs",
    "ceph",
    "glusterfs",
    "afs",
    "fuse.sshfs",
    "fuse.glusterfs",
    "fuse.s3fs",
    "fuse.rclone",
];
/// Block devices that are RAM: compressed RAM disks and the `brd` driver's `ram0`….
const RAM_DISK_PREFIXES: &[&str] = &["zram", "ram"];
/// How deep stacked devices are followed (a crafted or broken sysfs must not loop for ever).
const MAX_DEPTH: usize = 16;

/// Classifies `out` (an existing directory, or the nearest existing parent of one to be created).
pub fn classify(out: &Path) -> io::Result<OutPlace> {
    let absolute = if out.is_absolute() {
        out.to_owned()
    } else {
        std::env::current_dir()?.join(out)
    };
    // The nearest existing parent (a dangling symlink does not count: nothing can be written there).
    let mut existing = absolute.as_path();
    while fs::metadata(existing).is_err()
        && let Some(parent) = existing.parent()
    {
        existing = parent;
    }
    let canonical = fs::canonicalize(existing)?;
    let roots = Roots::host();
    let system = System::read(&roots, &roots.proc.join("self/mountinfo"))?;
    Ok(system.classify(&canonical))
}

/// [`classify`] on fixture roots: `path` is the canonical nearest existing parent of `out`, read
/// against `roots.proc/self/mountinfo`, `roots.proc/swaps`, `roots.root/etc/fstab`, `roots.sys` and
/// `roots.dev`.
pub fn classify_in(roots: &Roots, path: &Path) -> io::Result<OutPlace> {
    let system = System::read(roots, &roots.proc.join("self/mountinfo"))?;
    Ok(system.classify(path))
}

/// What ultimately holds a filesystem's bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Base {
    /// A whole disk, by sysfs name.
    Disk(String),
    /// RAM: the filesystem type or RAM disk that holds it.
    Ram(String),
    /// Another machine (network filesystem), or a filesystem with no block device and no RAM
    /// (a read-only overlay, a FUSE filesystem of unknown kind).
    Elsewhere,
}

/// The running system's storage as the rule needs it.
struct System {
    mounts: Vec<Mount>,
    /// Active swap areas: (file name, whether it is a partition).
    swaps: Vec<(String, bool)>,
    /// `/etc/fstab`: (source spec, mount point), swap entries left out (`/proc/swaps` has the active ones).
    fstab: Vec<(String, String)>,
    sys: PathBuf,
    dev: PathBuf,
}

impl System {
    fn read(roots: &Roots, mountinfo: &Path) -> io::Result<Self> {
        let text = fs::read_to_string(mountinfo).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading the mount table {}: {e}", mountinfo.display()),
            )
        })?;
        // A system without swap or without an fstab (a live system, a container) has none to name.
        let swaps = fs::read_to_string(roots.proc.join("swaps")).unwrap_or_default();
        let fstab = fs::read_to_string(roots.root.join("etc/fstab")).unwrap_or_default();
        Ok(System {
            mounts: blkro::parse_mountinfo(&text),
            swaps: parse_swaps(&swaps),
            fstab: parse_fstab(&fstab),
            sys: roots.sys.clone(),
            dev: roots.dev.clone(),
        })
    }

    fn classify(&self, path: &Path) -> OutPlace {
        let bases = self.bases_of_path(path, 0);
        let system = self.system_disks();
        for base in &bases {
            if let Base::Disk(d) = base
                && let Some(holds) = system.get(d)
            {
                return OutPlace::SystemDisk {
                    disk: d.clone(),
                    holds: holds.clone(),
                };
            }
        }
        for base in &bases {
            if let Base::Ram(fstype) = base {
                return OutPlace::Ram {
                    fstype: fstype.clone(),
                };
            }
        }
        OutPlace::Separate
    }

    /// Whole disks of the running system, each with what it holds (`/`, `/boot`, `swap /dev/vda3`).
    fn system_disks(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut add = |bases: Vec<Base>, what: String| {
            for b in bases {
                if let Base::Disk(d) = b {
                    let holds = out.entry(d).or_default();
                    if !holds.contains(&what) {
                        holds.push(what.clone());
                    }
                }
            }
        };
        let mut points: Vec<String> = SYSTEM_MOUNTS.iter().map(|p| p.to_string()).collect();
        for (_, point) in &self.fstab {
            if !points.contains(point) {
                points.push(point.clone());
            }
        }
        for point in &points {
            // The visible mount on that point; `/usr` on the root filesystem is the root's disk.
            if let Some(m) = self.mounts.iter().rev().find(|m| &m.target == point) {
                add(self.bases_of_mount(m, 0), point.clone());
            }
        }
        for (spec, point) in &self.fstab {
            if self.mounts.iter().any(|m| &m.target == point) {
                continue;
            }
            // Listed but not mounted now (`noauto`, failed): its disk is still the system's.
            if let Some(name) = self.fstab_device(spec) {
                add(self.bases_of_block(&name, 0), point.clone());
            }
        }
        for (file, partition) in &self.swaps {
            let bases = if *partition {
                self.device_name(file)
                    .map(|n| self.bases_of_block(&n, 0))
                    .unwrap_or_default()
            } else {
                self.bases_of_path(Path::new(file), 0)
            };
            add(bases, format!("swap {file}"));
        }
        out
    }

    /// The mount holding `path` (absolute, canonical): the longest mount point that is a prefix of it,
    /// the later of two on the same point.
    fn mount_of(&self, path: &Path) -> Option<&Mount> {
        let mut best: Option<&Mount> = None;
        for m in &self.mounts {
            if path.starts_with(&m.target)
                && best.is_none_or(|b| Path::new(&m.target).components().count() >= depth(b))
            {
                best = Some(m);
            }
        }
        best
    }

    fn bases_of_path(&self, path: &Path, depth: usize) -> Vec<Base> {
        match self.mount_of(path) {
            Some(m) => self.bases_of_mount(m, depth),
            None => vec![Base::Elsewhere],
        }
    }

    fn bases_of_mount(&self, m: &Mount, depth: usize) -> Vec<Base> {
        if depth > MAX_DEPTH {
            return vec![Base::Elsewhere];
        }
        if RAM_FS.contains(&m.fstype.as_str()) {
            return vec![Base::Ram(m.fstype.clone())];
        }
        if NETWORK_FS.contains(&m.fstype.as_str()) {
            return vec![Base::Elsewhere];
        }
        if m.fstype == "overlay" {
            // Writes land in the upper directory; an overlay without one is read-only.
            return match m
                .options
                .split(',')
                .find_map(|o| o.strip_prefix("upperdir="))
            {
                Some(upper) => self.bases_of_path(Path::new(upper), depth + 1),
                None => vec![Base::Elsewhere],
            };
        }
        let name = self
            .number_name(&m.device)
            .or_else(|| self.device_name(&m.source));
        match name {
            Some(name) => self.bases_of_block(&name, depth + 1),
            None => vec![Base::Elsewhere],
        }
    }

    /// The whole disks (or RAM disks) beneath the block device `name`.
    fn bases_of_block(&self, name: &str, depth: usize) -> Vec<Base> {
        if depth > MAX_DEPTH {
            return vec![Base::Disk(name.to_owned())];
        }
        let disk = blkro::whole_disk_in(&self.sys, name);
        if disk != name {
            return self.bases_of_block(&disk, depth + 1);
        }
        if RAM_DISK_PREFIXES.iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|n| n.chars().next().is_some_and(|c| c.is_ascii_digit()))
        }) {
            return vec![Base::Ram(name.to_owned())];
        }
        let class = self.sys.join("class/block").join(name);
        let mut lower = Vec::new();
        let mut slaves: Vec<String> = fs::read_dir(class.join("slaves"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        slaves.sort();
        for s in slaves {
            lower.extend(self.bases_of_block(&s, depth + 1));
        }
        if let Ok(backing) = fs::read_to_string(class.join("loop/backing_file")) {
            let backing = backing.trim_end_matches('\n');
            // The kernel appends " (deleted)" when the backing file was unlinked: still on that disk.
            let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
            match self.device_name(backing) {
                Some(dev) => lower.extend(self.bases_of_block(&dev, depth + 1)),
                None => lower.extend(self.bases_of_path(Path::new(backing), depth + 1)),
            }
        }
        if lower.is_empty() {
            lower.push(Base::Disk(name.to_owned()));
        }
        lower.sort();
        lower.dedup();
        lower
    }

    /// The sysfs name of the block device with number `major:minor`, if it is one.
    fn number_name(&self, number: &str) -> Option<String> {
        let real = fs::canonicalize(self.sys.join("dev/block").join(number)).ok()?;
        Some(real.file_name()?.to_string_lossy().into_owned())
    }

    /// The sysfs name of a `/dev/…` node (following `/dev/mapper/…` and `/dev/disk/by-*` links, or a
    /// device-mapper name in sysfs), if it is a block device the kernel lists.
    fn device_name(&self, node: &str) -> Option<String> {
        let rel = node.strip_prefix("/dev/")?;
        let known = |n: &str| self.sys.join("class/block").join(n).exists();
        if let Ok(real) = fs::canonicalize(self.dev.join(rel))
            && let Some(n) = real.file_name().map(|n| n.to_string_lossy().into_owned())
            && known(&n)
        {
            return Some(n);
        }
        if let Some(mapped) = rel.strip_prefix("mapper/") {
            return fs::read_dir(self.sys.join("class/block"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| {
                    fs::read_to_string(self.sys.join("class/block").join(n).join("dm/name"))
                        .is_ok_and(|s| s.trim_end() == mapped)
                });
        }
        let last = rel.rsplit('/').next()?;
        known(last).then(|| last.to_owned())
    }

    /// The block device an fstab source names: `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=` through
    /// `/dev/disk/by-*`, or a `/dev/` path.
    fn fstab_device(&self, spec: &str) -> Option<String> {
        let spec = spec.trim_matches('"');
        for (key, dir) in [
            ("UUID=", "uuid"),
            ("LABEL=", "label"),
            ("PARTUUID=", "partuuid"),
            ("PARTLABEL=", "partlabel"),
        ] {
            if let Some(v) = spec.strip_prefix(key) {
                return self.device_name(&format!("/dev/disk/by-{dir}/{}", v.trim_matches('"')));
            }
        }
        self.device_name(spec)
    }
}

fn depth(m: &Mount) -> usize {
    Path::new(&m.target).components().count()
}

/// `/proc/swaps`: (file name, whether it is a partition), header skipped.
fn parse_swaps(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let kind = f.next()?;
            // The kernel escapes spaces in swap file names as \040, like the mount table.
            Some((
                name.replace("\\040", " ").replace("\\011", "\t"),
                kind == "partition",
            ))
        })
        .collect()
}

/// `/etc/fstab`: (source, mount point) of every entry with an absolute mount point.
fn parse_fstab(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let source = f.next()?;
            let point = f.next()?.replace("\\040", " ");
            let point = match point.trim_end_matches('/') {
                "" => "/".to_owned(),
                p => p.to_owned(),
            };
            point.starts_with('/').then(|| (source.to_owned(), point))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fixture system: `proc/self/mountinfo`, `proc/swaps`, `etc/fstab`, a sysfs with
    /// `class/block` and `dev/block` links like the kernel's, and a `/dev` with by-uuid links.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in [
                "proc/self",
                "root/etc",
                "sys/class/block",
                "sys/dev/block",
                "dev",
            ] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            fs::write(
                dir.path().join("proc/swaps"),
                "Filename Type Size Used Priority\n",
            )
            .unwrap();
            Fixture { dir }
        }

        fn roots(&self) -> Roots {
            let p = self.dir.path();
            Roots {
                proc: p.join("proc"),
                sys: p.join("sys"),
                dev: p.join("dev"),
                root: p.join("root"),
            }
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }

        /// A block device `name` (`parent` for a partition) with number `number`, and its `/dev` node.
        fn block(&self, name: &str, number: &str, parent: Option<&str>) -> PathBuf {
            let sys = self.dir.path().join("sys");
            let rel = match parent {
                Some(p) => format!("devices/block/{p}/{name}"),
                None => format!("devices/block/{name}"),
            };
            let d = sys.join(&rel);
            fs::create_dir_all(d.join("slaves")).unwrap();
            fs::write(d.join("dev"), format!("{number}\n")).unwrap();
            if parent.is_some() {
                fs::write(d.join("partition"), "1\n").unwrap();
            }
            symlink(format!("../../{rel}"), sys.join("class/block").join(name)).unwrap();
            symlink(format!("../../{rel}"), sys.join("dev/block").join(number)).unwrap();
            fs::write(self.dir.path().join("dev").join(name), "").unwrap();
            d
        }

        /// `upper` is built on `lower` (a dm or md device over a partition).
        fn slave(&self, upper: &str, lower: &str) {
            let sys = self.dir.path().join("sys/class/block");
            fs::write(sys.join(upper).join("slaves").join(lower), "").unwrap();
        }

        fn link(&self, rel: &str, to: &str) {
            let p = self.dir.path().join("dev").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(to, p).unwrap();
        }

        fn classify(&self, path: &str) -> OutPlace {
            classify_in(&self.roots(), Path::new(path)).unwrap()
        }
    }

    /// `sda`: `sda1` /boot, `sda2` an md member; `sdb`: `sdb1` the other md member; `md0` holds LVM
    /// (`dm-0` root, `dm-1` home); `sdc1`: an evidence stick at /mnt/evidence; `vdb`: a disk in fstab
    /// (`/data`, noauto, not mounted); `sdd`: swap; `loop0` over a file on the root filesystem, `loop1`
    /// over a file in /dev/shm, `loop2` over the stick's partition; an overlay with its upper dir on /;
    /// tmpfs, NFS and sshfs.
    fn server() -> Fixture {
        let f = Fixture::new();
        f.block("sda", "8:0", None);
        f.block("sda1", "8:1", Some("sda"));
        f.block("sda2", "8:2", Some("sda"));
        f.block("sdb", "8:16", None);
        f.block("sdb1", "8:17", Some("sdb"));
        f.block("sdc", "8:32", None);
        f.block("sdc1", "8:33", Some("sdc"));
        f.block("sdd", "8:48", None);
        f.block("vdb", "254:16", None);
        f.block("md0", "9:0", None);
        f.slave("md0", "sda2");
        f.slave("md0", "sdb1");
        for (dm, n, vol) in [("dm-0", "253:0", "vg-root"), ("dm-1", "253:1", "vg-home")] {
            f.block(dm, n, None);
            f.slave(dm, "md0");
            f.write(
                &format!("sys/devices/block/{dm}/dm/name"),
                &format!("{vol}\n"),
            );
            f.link(&format!("mapper/{vol}"), &format!("../{dm}"));
        }
        f.link("disk/by-uuid/0b5e-data", "../../vdb");
        for (l, n, backing) in [
            ("loop0", "7:0", "/var/lib/images/disk.img"),
            ("loop1", "7:1", "/dev/shm/scratch.img (deleted)"),
            ("loop2", "7:2", "/dev/sdc1"),
        ] {
            f.block(l, n, None);
            f.write(
                &format!("sys/devices/block/{l}/loop/backing_file"),
                &format!("{backing}\n"),
            );
        }
        f.write(
            "proc/self/mountinfo",
            "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n\
             23 22 8:1 / /boot rw,relatime shared:2 - ext4 /dev/sda1 rw\n\
             24 22 253:1 / /home rw,relatime shared:3 - xfs /dev/mapper/vg-home rw\n\
             25 22 0:23 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw\n\
             26 22 8:33 / /mnt/evidence rw,relatime - exfat /dev/sdc1 rw\n\
             27 22 7:0 / /mnt/image rw,relatime - ext4 /dev/loop0 rw\n\
             28 22 7:1 / /mnt/shm-image rw,relatime - ext4 /dev/loop1 rw\n\
             29 22 0:40 / /mnt/nfs rw,relatime - nfs4 srv:/export rw,vers=4.2\n\
             30 22 0:41 / /mnt/ssh rw,relatime - fuse.sshfs user@host:/ rw\n\
             31 22 0:42 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work\n\
             32 22 7:2 / /mnt/stick-image rw,relatime - ext4 /dev/loop2 rw\n\
             33 22 0:43 / /mnt/tmp rw - tmpfs tmpfs rw\n\
             34 33 8:32 / /mnt/tmp rw - ext4 /dev/sdc rw\n",
        );
        f.write(
            "root/etc/fstab",
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             /dev/mapper/vg-root /  ext4 defaults 0 1\n\
             UUID=0b5e-data /data/ ext4 noauto 0 2\n\
             /dev/sdd none swap sw 0 0\n",
        );
        f.write(
            "proc/swaps",
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
             /dev/sdd                                partition\t1048572\t\t0\t\t-2\n",
        );
        f
    }

    fn system(disk: &str, holds: &[&str]) -> OutPlace {
        OutPlace::SystemDisk {
            disk: disk.to_owned(),
            holds: holds.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn the_root_filesystem_through_lvm_on_md_names_both_member_disks() {
        let f = server();
        // dm-0 → md0 → sda2 + sdb1: the first disk found is named, with all it holds.
        assert_eq!(
            f.classify("/srv/out"),
            system("sda", &["/", "/boot", "/home"])
        );
        assert_eq!(
            f.classify("/home/alice"),
            system("sda", &["/", "/boot", "/home"])
        );
        assert_eq!(f.classify("/boot"), system("sda", &["/", "/boot", "/home"]));
    }

    #[test]
    fn ram_filesystems_and_ram_backed_loops_are_ram() {
        let f = server();
        let ram = |t: &str| OutPlace::Ram {
            fstype: t.to_owned(),
        };
        assert_eq!(f.classify("/dev/shm/out"), ram("tmpfs"));
        // A loop over a (deleted) file in /dev/shm: the bytes land in RAM.
        assert_eq!(f.classify("/mnt/shm-image/out"), ram("tmpfs"));
    }

    #[test]
    fn a_stick_a_network_filesystem_and_a_loop_over_the_stick_are_separate() {
        let f = server();
        assert_eq!(f.classify("/mnt/evidence/case-1"), OutPlace::Separate);
        assert_eq!(f.classify("/mnt/nfs/case-1"), OutPlace::Separate);
        assert_eq!(f.classify("/mnt/ssh/case-1"), OutPlace::Separate);
        assert_eq!(f.classify("/mnt/stick-image"), OutPlace::Separate);
        // The stick mounted over a tmpfs on the same point: the later mount is the one written.
        assert_eq!(f.classify("/mnt/tmp/x"), OutPlace::Separate);
    }

    #[test]
    fn a_loop_over_a_file_on_the_system_disk_is_the_system_disk() {
        let f = server();
        assert_eq!(
            f.classify("/mnt/image/out"),
            system("sda", &["/", "/boot", "/home"])
        );
    }

    #[test]
    fn an_overlay_is_where_its_upper_directory_is() {
        let f = server();
        assert_eq!(
            f.classify("/var/lib/docker/overlay2/x/merged/tmp"),
            system("sda", &["/", "/boot", "/home"])
        );
    }

    #[test]
    fn fstab_entries_not_mounted_and_swap_partitions_make_a_disk_the_systems() {
        let f = server();
        f.write(
            "proc/self/mountinfo",
            "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n\
             40 22 254:16 / /mnt/a rw,relatime - ext4 /dev/vdb rw\n\
             41 22 8:48 / /mnt/b rw,relatime - ext4 /dev/sdd rw\n",
        );
        assert_eq!(f.classify("/mnt/a/out"), system("vdb", &["/data"]));
        assert_eq!(f.classify("/mnt/b/out"), system("sdd", &["swap /dev/sdd"]));
        // Without the fstab line and the swap, the same disks are separate.
        f.write("root/etc/fstab", "");
        f.write("proc/swaps", "Filename Type Size Used Priority\n");
        assert_eq!(f.classify("/mnt/a/out"), OutPlace::Separate);
        assert_eq!(f.classify("/mnt/b/out"), OutPlace::Separate);
    }

    #[test]
    fn a_swap_file_makes_its_disk_the_systems_and_a_zram_disk_is_ram() {
        let f = Fixture::new();
        f.block("nvme0n1", "259:0", None);
        f.block("nvme0n1p1", "259:1", Some("nvme0n1"));
        f.block("nvme1n1", "259:2", None);
        f.block("zram0", "252:0", None);
        f.write(
            "proc/self/mountinfo",
            "22 1 0:30 / / rw - tmpfs tmpfs rw\n\
             23 22 259:1 / /srv/big rw - xfs /dev/nvme0n1p1 rw\n\
             24 22 259:2 / /mnt/x rw - xfs /dev/nvme1n1 rw\n\
             25 22 252:0 / /var/cache rw - ext4 /dev/zram0 rw\n",
        );
        f.write(
            "proc/swaps",
            "Filename Type Size Used Priority\n/srv/big/swap\\040file file 100 0 -2\n/dev/zram0 partition 100 0 100\n",
        );
        assert_eq!(
            f.classify("/srv/big/out"),
            system("nvme0n1", &["swap /srv/big/swap file"])
        );
        assert_eq!(f.classify("/mnt/x"), OutPlace::Separate);
        assert_eq!(
            f.classify("/var/cache/out"),
            OutPlace::Ram {
                fstype: "zram0".into()
            }
        );
        assert_eq!(
            f.classify("/out"),
            OutPlace::Ram {
                fstype: "tmpfs".into()
            }
        );
    }

    #[test]
    fn a_missing_mount_table_is_an_error_naming_it() {
        let f = Fixture::new();
        let err = classify_in(&f.roots(), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("mountinfo"), "{err}");
    }

    #[test]
    fn a_cycle_in_sysfs_ends() {
        let f = Fixture::new();
        f.block("dm-0", "253:0", None);
        f.block("dm-1", "253:1", None);
        f.slave("dm-0", "dm-1");
        f.slave("dm-1", "dm-0");
        f.write(
            "proc/self/mountinfo",
            "22 1 253:0 / / rw - ext4 /dev/dm-0 rw\n",
        );
        assert!(matches!(f.classify("/x"), OutPlace::SystemDisk { .. }));
    }

    /// Runs a host tool, failing the test with its output.
    fn tool(program: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} (util-linux, e2fsprogs): {e}"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Unmounts and detaches what the host test set up, whatever happens.
    struct Undo(Vec<(&'static str, PathBuf)>);

    impl Drop for Undo {
        fn drop(&mut self) {
            for (what, path) in self.0.iter().rev() {
                let _ = match *what {
                    "umount" => nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
                        .map_err(io::Error::from),
                    _ => std::process::Command::new("losetup")
                        .arg("-d")
                        .arg(path)
                        .status()
                        .map(drop),
                };
            }
        }
    }

    /// This machine, as root: a directory under the temporary directory is on the disk that util-linux
    /// (`findmnt`, `lsblk`) says holds it, and that disk holds `/`; a tmpfs mounted there is RAM; an ext4
    /// on a loop device over a file in that directory is the system disk too (the bytes land there);
    /// an ext4 on a loop over a file in the tmpfs is RAM.
    #[test]
    fn this_hosts_root_a_tmpfs_and_loop_devices_over_files() {
        if !crate::testing::can_attach_loop_devices() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let source = tool(
            "findmnt",
            &["-n", "-o", "SOURCE", "--target", base.to_str().unwrap()],
        );
        let root_source = tool("findmnt", &["-n", "-o", "SOURCE", "/"]);
        let parent = tool("lsblk", &["-n", "-d", "-o", "PKNAME", &source]);
        let name = tool("lsblk", &["-n", "-d", "-o", "NAME", &source]);
        let disk = if parent.is_empty() { name } else { parent };
        let place = classify(&base).unwrap();
        let OutPlace::SystemDisk { disk: found, holds } = &place else {
            panic!("{} is on {source}: {place:?}", base.display());
        };
        assert_eq!(found, &disk, "{place:?}");
        if source == root_source {
            assert!(holds.contains(&"/".to_owned()), "{place:?}");
        }
        // A directory still to be created: its nearest existing parent decides.
        assert_eq!(classify(&base.join("case/live-1")).unwrap(), place);

        let mut undo = Undo(Vec::new());
        let ram = base.join("ram");
        fs::create_dir(&ram).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &ram,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64m"),
        )
        .unwrap();
        undo.0.push(("umount", ram.clone()));
        assert_eq!(
            classify(&ram.join("out")).unwrap(),
            OutPlace::Ram {
                fstype: "tmpfs".into()
            }
        );

        for (dir, expected) in [
            (&base, place.clone()),
            (
                &ram,
                OutPlace::Ram {
                    fstype: "tmpfs".into(),
                },
            ),
        ] {
            let image = dir.join("fs.img");
            fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
            tool("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
            let loop_dev = tool("losetup", &["--find", "--show", image.to_str().unwrap()]);
            undo.0.push(("detach", PathBuf::from(&loop_dev)));
            let mnt = dir.join("mnt");
            fs::create_dir(&mnt).unwrap();
            nix::mount::mount(
                Some(Path::new(&loop_dev)),
                &mnt,
                Some("ext4"),
                // Read-only: this host hands out write-protected loop devices; where `out` lies does
                // not depend on it.
                nix::mount::MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .unwrap();
            undo.0.push(("umount", mnt.clone()));
            assert_eq!(
                classify(&mnt.join("out")).unwrap(),
                expected,
                "ext4 on {loop_dev} over {}",
                image.display()
            );
        }
    }
}
