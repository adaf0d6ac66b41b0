//! Restore engine tests on real directories and archives in a temporary directory.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

fn sha(data: &[u8]) -> String {
    checksums::hash_reader(data, Algorithm::Sha256, &mut |_| {})
        .unwrap()
        .0
}

fn run(
    source: &Path,
    target: &Path,
    policy: Policy,
    manifest: Option<&Path>,
    dry: bool,
) -> RestoreManifest {
    let mut r = Restorer::new("test", target, policy, manifest, dry).unwrap();
    let kind = source::classify(source).unwrap();
    match kind {
        source::SourceKind::Dir => source::walk_dir(source, &mut |e, c| r.entry(e, c)).unwrap(),
        source::SourceKind::Tar => {
            source::walk_tar(source, false, &mut |e, c| r.entry(e, c)).unwrap()
        }
        source::SourceKind::TarZst => {
            source::walk_tar(source, true, &mut |e, c| r.entry(e, c)).unwrap()
        }
        other => panic!("unexpected {other:?}"),
    }
    r.finish(None)
}

fn rec<'a>(m: &'a RestoreManifest, path: &str) -> &'a FileRecord {
    m.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in {:#?}", m.files))
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn screened_directory_restore_with_manifest_blocklist_and_rerun() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("backup");
    let dst = t.path().join("newroot");
    fs::create_dir_all(&dst).unwrap();
    write(&src, "srv/data/good.txt", b"good data\n", 0o640);
    write(&src, "srv/data/corrupt.db", b"bit rot happened", 0o644);
    write(&src, "usr/local/bin/suid", b"#!/bin/sh\n", 0o4755);
    write(&src, "srv/data/ioc.bin", b"malware payload", 0o644);
    write(
        &src,
        "root/.ssh/authorized_keys",
        b"ssh-ed25519 AAAA attacker",
        0o600,
    );
    write(&src, "home/a/elf", b"\x7fELF\x02\x01\x01", 0o644);
    std::os::unix::fs::symlink("/etc/shadow", src.join("srv/data/link")).unwrap();
    let sums = t.path().join("SHA256SUMS");
    fs::write(
        &sums,
        format!(
            "{}  ./srv/data/good.txt\n{}  srv/data/corrupt.db\n{}  usr/local/bin/suid\n{}  srv/data/ioc.bin\n{}  root/.ssh/authorized_keys\n{}  home/a/elf\n{}  srv/data/gone.txt\n",
            sha(b"good data\n"),
            sha(b"original db"),
            sha(b"#!/bin/sh\n"),
            sha(b"malware payload"),
            sha(b"ssh-ed25519 AAAA attacker"),
            sha(b"\x7fELF\x02\x01\x01"),
            sha(b"lost"),
        ),
    )
    .unwrap();
    let block: BTreeSet<String> = [sha(b"malware payload")].into_iter().collect();
    let policy = || Policy::new(&[], &[], block.clone(), false).unwrap();

    let m = run(&src, &dst, policy(), Some(&sums), false);
    assert_eq!(rec(&m, "srv/data/good.txt").action, Action::Restored);
    assert_eq!(
        fs::read(dst.join("srv/data/good.txt")).unwrap(),
        b"good data\n"
    );
    let meta = fs::metadata(dst.join("srv/data/good.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "mode preserved");
    assert_eq!(
        meta.modified().unwrap(),
        fs::metadata(src.join("srv/data/good.txt"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()))
            .unwrap(),
        "mtime preserved (to the second)"
    );
    let c = rec(&m, "srv/data/corrupt.db");
    assert_eq!(c.action, Action::Refused);
    assert!(c.reason.as_deref().unwrap().contains("corrupted"), "{c:?}");
    assert!(
        rec(&m, "usr/local/bin/suid")
            .reason
            .as_deref()
            .unwrap()
            .contains("setuid")
    );
    assert!(
        rec(&m, "srv/data/ioc.bin")
            .reason
            .as_deref()
            .unwrap()
            .contains("blocklist")
    );
    assert_eq!(rec(&m, "root/.ssh/authorized_keys").action, Action::Held);
    assert_eq!(m.review, ["root/.ssh/authorized_keys"]);
    assert!(
        rec(&m, "home/a/elf")
            .reason
            .as_deref()
            .unwrap()
            .contains("ELF")
    );
    assert_eq!(rec(&m, "srv/data/gone.txt").action, Action::Missing);
    // Checksum lists vouch for content; a symlink has none and is recreated as a link.
    assert_eq!(rec(&m, "srv/data/link").action, Action::Restored);
    assert_eq!(
        fs::read_link(dst.join("srv/data/link")).unwrap(),
        Path::new("/etc/shadow")
    );
    for refused in [
        "srv/data/corrupt.db",
        "usr/local/bin/suid",
        "srv/data/ioc.bin",
        "root/.ssh/authorized_keys",
        "home/a/elf",
    ] {
        assert!(
            !dst.join(refused).exists(),
            "{refused} must not be on the target"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(dst.join("srv/data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "good.txt and link, no temporary files: {leftovers:?}"
    );

    // Rerun: identical files are skipped; listing the persistence point explicitly restores it.
    let policy2 = Policy::new(
        &["/root/.ssh/authorized_keys".into(), "srv/**".into()],
        &[],
        block.clone(),
        false,
    )
    .unwrap();
    let m2 = run(&src, &dst, policy2, Some(&sums), false);
    assert_eq!(rec(&m2, "srv/data/good.txt").action, Action::Identical);
    assert_eq!(
        rec(&m2, "root/.ssh/authorized_keys").action,
        Action::Restored
    );
    assert_eq!(rec(&m2, "home/a/elf").action, Action::Excluded);
}

#[test]
fn symlinks_are_recreated_never_followed_and_target_symlinks_are_not_written_through() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("backup");
    let dst = t.path().join("newroot");
    let outside = t.path().join("outside");
    fs::create_dir_all(&dst).unwrap();
    fs::create_dir_all(&outside).unwrap();
    write(&src, "etc/app/conf", b"x=1\n", 0o644);
    write(&src, "var/www/index.html", b"<html>", 0o644);
    std::os::unix::fs::symlink("../../../outside", src.join("var/www/up")).unwrap();
    // The new root holds a planted symlink: etc -> outside.
    std::os::unix::fs::symlink(&outside, dst.join("etc")).unwrap();
    let m = run(&src, &dst, Policy::default(), None, false);
    let conf = rec(&m, "etc/app/conf");
    assert_eq!(conf.action, Action::Failed, "{conf:?}");
    assert!(
        conf.reason.as_deref().unwrap().contains("symlink"),
        "{conf:?}"
    );
    assert!(
        !outside.join("app").exists(),
        "nothing was written through the planted symlink"
    );
    assert_eq!(rec(&m, "var/www/up").action, Action::Restored);
    assert_eq!(
        fs::read_link(dst.join("var/www/up")).unwrap(),
        Path::new("../../../outside"),
        "the link is restored as a link"
    );
    assert_eq!(fs::read(dst.join("var/www/index.html")).unwrap(), b"<html>");
}

#[test]
fn tar_traversal_is_refused_and_dry_run_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("newroot");
    fs::create_dir_all(&dst).unwrap();
    let tarpath = t.path().join("backup.tar");
    let mut b = tar::Builder::new(fs::File::create(&tarpath).unwrap());
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        // set_path refuses '..'; write the raw name as an attacker's archive would.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("./srv/ok.txt", b"fine", 0o644);
    add("../../escape.txt", b"evil", 0o644);
    add("srv/../../escape2.txt", b"evil", 0o644);
    add("srv/run.sh", b"#!/bin/sh", 0o755);
    b.finish().unwrap();
    drop(b);

    let m = run(&tarpath, &dst, Policy::default(), None, true);
    assert_eq!(rec(&m, "srv/ok.txt").action, Action::WouldRestore);
    assert!(
        fs::read_dir(&dst).unwrap().next().is_none(),
        "a dry run writes nothing"
    );

    let m = run(&tarpath, &dst, Policy::default(), None, false);
    assert_eq!(rec(&m, "srv/ok.txt").action, Action::Restored);
    assert_eq!(fs::read(dst.join("srv/ok.txt")).unwrap(), b"fine");
    for evil in ["../../escape.txt", "srv/../../escape2.txt"] {
        let r = rec(&m, evil);
        assert_eq!(r.action, Action::Refused);
        assert!(r.reason.as_deref().unwrap().contains("traversal"));
    }
    assert!(!t.path().join("escape.txt").exists());
    assert!(!t.path().parent().unwrap().join("escape2.txt").exists());
    assert_eq!(rec(&m, "srv/run.sh").action, Action::Refused);
    assert_eq!(
        fs::metadata(dst.join("srv/ok.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // The same archive compressed with zstd.
    let zpath = t.path().join("backup.tar.zst");
    fs::write(
        &zpath,
        zstd::encode_all(&fs::read(&tarpath).unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let dst2 = t.path().join("root2");
    fs::create_dir_all(&dst2).unwrap();
    let m = run(&zpath, &dst2, Policy::default(), None, false);
    assert_eq!(rec(&m, "srv/ok.txt").action, Action::Restored);
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: lgetxattr into a buffer of the given size.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

#[test]
fn xattrs_come_back_from_directories_and_pax_archives() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("backup");
    write(&src, "srv/tagged.txt", b"tagged", 0o644);
    let p = std::ffi::CString::new(src.join("srv/tagged.txt").to_str().unwrap()).unwrap();
    let name = std::ffi::CString::new("user.origin").unwrap();
    // SAFETY: setxattr with valid C strings and a value buffer of the given length.
    let rc =
        unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"backup-7".as_ptr().cast(), 8, 0) };
    assert_eq!(rc, 0, "the test directory supports user xattrs");
    let dst = t.path().join("root");
    fs::create_dir_all(&dst).unwrap();
    run(&src, &dst, Policy::default(), None, false);
    assert_eq!(
        getxattr(&dst.join("srv/tagged.txt"), "user.origin").as_deref(),
        Some(&b"backup-7"[..])
    );

    let tarpath = t.path().join("x.tar");
    let mut b = tar::Builder::new(fs::File::create(&tarpath).unwrap());
    b.append_pax_extensions([("SCHILY.xattr.user.origin", &b"tar-9"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("srv/from-tar.txt").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"abc"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let dst2 = t.path().join("root2");
    fs::create_dir_all(&dst2).unwrap();
    let m = run(&tarpath, &dst2, Policy::default(), None, false);
    assert_eq!(rec(&m, "srv/from-tar.txt").action, Action::Restored);
    assert_eq!(
        getxattr(&dst2.join("srv/from-tar.txt"), "user.origin").as_deref(),
        Some(&b"tar-9"[..])
    );
}

#[test]
fn tar_hard_links_point_only_at_files_this_restore_screened() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let tarpath = t.path().join("links.tar");
    let mut b = tar::Builder::new(fs::File::create(&tarpath).unwrap());
    let mut file = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    file("srv/a.txt", b"shared", 0o644);
    file("usr/bin/su2", b"#!/bin/sh", 0o4755);
    let mut link = |name: &str, to: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        let n = to.len();
        h.as_old_mut().linkname[..n].copy_from_slice(to);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
    };
    link("srv/b.txt", b"srv/a.txt");
    link("srv/c", b"usr/bin/su2");
    link("srv/d", b"../../etc/shadow");
    // A webshell restored as data, then linked in under the web root.
    link("var/www/html/s.php", b"srv/a.txt");
    let mut sym = |name: &str, to: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_link_name(to).unwrap();
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
    };
    sym("var/www/html/t.php", "../../../srv/a.txt");
    sym("var/www/html/logo.png", "../../../srv/a.txt");
    b.finish().unwrap();
    drop(b);
    let dst = t.path().join("root");
    fs::create_dir_all(&dst).unwrap();
    let m = run(&tarpath, &dst, Policy::default(), None, false);
    // The setuid file listed exactly: its hard link (header mode 0644) still needs its own listing.
    let listed = t.path().join("listed");
    fs::create_dir_all(&listed).unwrap();
    let p = Policy::new(
        &["/usr/bin/su2".into(), "srv/*".into()],
        &[],
        BTreeSet::new(),
        true,
    )
    .unwrap();
    let l = run(&tarpath, &listed, p, None, false);
    assert_eq!(rec(&l, "usr/bin/su2").action, Action::Restored);
    assert!(
        matches!(&rec(&l, "srv/c").reason, Some(r) if r.contains("hard link to the setuid/setgid file usr/bin/su2")),
        "{:?}",
        rec(&l, "srv/c")
    );
    assert!(listed.join("usr/bin/su2").exists() && !listed.join("srv/c").exists());
    assert_eq!(rec(&m, "srv/b.txt").action, Action::Restored);
    assert_eq!(
        fs::metadata(dst.join("srv/b.txt")).unwrap().ino(),
        fs::metadata(dst.join("srv/a.txt")).unwrap().ino(),
        "restored as a hard link"
    );
    assert!(
        rec(&m, "srv/c")
            .reason
            .as_deref()
            .unwrap()
            .contains("not restored")
    );
    assert!(
        rec(&m, "srv/d")
            .reason
            .as_deref()
            .unwrap()
            .contains("traversal")
    );
    assert!(!dst.join("srv/c").exists() && !dst.join("srv/d").exists());
    for held in ["var/www/html/s.php", "var/www/html/t.php"] {
        assert_eq!(rec(&m, held).action, Action::Held, "{held}");
        assert!(dst.join(held).symlink_metadata().is_err(), "{held}");
    }
    assert_eq!(rec(&m, "var/www/html/logo.png").action, Action::Restored);
}

#[test]
fn a_file_that_changes_between_hashing_and_copying_is_refused_and_leaves_nothing() {
    // procfs hands out a new random UUID on every open: a regular file whose content differs between
    // the screening hash and the copy, exactly like a file an attacker (or a busy service) rewrites.
    let changing = Path::new("/proc/sys/kernel/random/uuid");
    let first = fs::read(changing).unwrap();
    assert_ne!(
        first,
        fs::read(changing).unwrap(),
        "the fixture changes per open"
    );
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("newroot");
    fs::create_dir_all(&dst).unwrap();
    let mut r = Restorer::new("test", &dst, Policy::default(), None, false).unwrap();
    let entry = SourceEntry {
        raw_path: "srv/data/ledger.csv".to_owned(),
        kind: EntryKind::File,
        mode: 0o640,
        uid: 0,
        gid: 0,
        atime: 0,
        mtime: 0,
        size: first.len() as u64,
        xattrs: Vec::new(),
    };
    r.entry(&entry, Content::Path(changing)).unwrap();
    let m = r.finish(None);
    let f = rec(&m, "srv/data/ledger.csv");
    assert_eq!(f.action, Action::Refused, "{f:?}");
    assert!(
        f.reason
            .as_deref()
            .unwrap()
            .contains("changed between hashing and copying"),
        "{f:?}"
    );
    let dir = dst.join("srv/data");
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "neither the file nor its temporary copy is left: {left:?}"
    );
}

#[test]
fn directory_times_are_restored_after_their_contents() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("backup");
    write(&src, "srv/data/a.txt", b"alpha", 0o644);
    write(&src, "srv/data/deep/b.txt", b"beta", 0o644);
    write(&src, "srv/empty/.keep", b"", 0o644);
    let stamp = |rel: &str, secs: u64| {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let f = fs::File::open(src.join(rel)).unwrap();
        f.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when))
            .unwrap();
    };
    // Children first: stamping a directory does not change its parent.
    stamp("srv/data/deep", 1_000_000_300);
    stamp("srv/data", 1_000_000_200);
    stamp("srv/empty", 1_000_000_150);
    stamp("srv", 1_000_000_100);
    let mtime = |root: &Path, rel: &str| fs::metadata(root.join(rel)).unwrap().mtime();
    for rel in ["srv", "srv/data", "srv/data/deep", "srv/empty"] {
        assert!(mtime(&src, rel) < 1_100_000_000, "fixture {rel}");
    }

    let dst = t.path().join("newroot");
    fs::create_dir_all(&dst).unwrap();
    let m = run(&src, &dst, Policy::default(), None, false);
    assert_eq!(rec(&m, "srv/data/deep/b.txt").action, Action::Restored);
    for rel in ["srv", "srv/data", "srv/data/deep", "srv/empty"] {
        assert_eq!(mtime(&dst, rel), mtime(&src, rel), "mtime of {rel}");
    }

    // The same from a tar archive (GNU tar keeps directory mtimes in the header).
    let tar_path = t.path().join("backup.tar");
    let st = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&src)
        .arg("srv")
        .status()
        .unwrap();
    assert!(st.success());
    let dst2 = t.path().join("newroot2");
    fs::create_dir_all(&dst2).unwrap();
    run(&tar_path, &dst2, Policy::default(), None, false);
    for rel in ["srv", "srv/data", "srv/data/deep", "srv/empty"] {
        assert_eq!(
            mtime(&dst2, rel),
            mtime(&src, rel),
            "mtime of {rel} from tar"
        );
    }
}

#[test]
fn the_partition_of_a_whole_disk_source_is_the_one_named_or_the_only_linux_filesystem() {
    use crate::inventory::TableEntry;
    let e = |number: u32, sig: Option<&str>| TableEntry {
        number,
        start_bytes: u64::from(number) << 20,
        size_bytes: 1 << 20,
        type_id: "0x83".into(),
        name: None,
        signature: sig.map(str::to_owned),
    };
    let disk = Path::new("disk.img");
    let pick = |entries: &[TableEntry], wanted| {
        source::choose_partition(disk, Some("gpt"), entries, wanted)
            .map(|c| c.map(|c| (c.entry.number, c.named)))
    };
    let esp_root = [e(1, Some("vfat")), e(2, Some("swap")), e(3, Some("ext4"))];
    assert_eq!(pick(&esp_root, None).unwrap(), Some((3, false)));
    assert_eq!(pick(&esp_root, Some(1)).unwrap(), Some((1, true)));
    let msg = |r: Result<Option<(u32, bool)>, source::SourceError>| r.unwrap_err().to_string();
    assert!(msg(pick(&esp_root, Some(9))).contains("there is no partition 9"));
    let two = [e(1, Some("ext4")), e(2, Some("xfs"))];
    let m = msg(pick(&two, None));
    assert!(
        m.contains("GPT partition table (1: ext4, 1.0 MiB; 2: xfs, 1.0 MiB)")
            && m.contains("--partition N"),
        "{m}"
    );
    assert_eq!(pick(&[e(1, Some("vfat"))], None).unwrap(), Some((1, false)));
    assert!(msg(pick(&[e(1, Some("swap")), e(2, None)], None)).contains("--partition N"));
    // No partition table: the whole device, unless a partition was named.
    assert_eq!(
        source::choose_partition(disk, None, &[], None).unwrap(),
        None
    );
    assert!(source::choose_partition(disk, None, &[], Some(1)).is_err());
}
