//! Golden hash of a cpio archive written from fixed inputs, computed with the code as it was before
//! the module index and the tar reader were reorganised: a refactoring that changes one byte of the
//! initramfs fails here.

use crate::cpio::Archive;
use sha2::{Digest, Sha256};

#[test]
fn cpio_bytes_are_what_they_were() {
    let mut a = Archive::new();
    a.add_dir("etc/rescue", 0o755);
    a.add_file("init", 0o755, b"\x7fELF static init".to_vec());
    a.add_file(
        "lib/modules/6.1.0/modules.dep",
        0o644,
        b"kernel/fs/ext4/ext4.ko:\n".to_vec(),
    );
    a.add_file("etc/rescue/empty", 0o600, Vec::new());
    a.add_symlink("sbin/modprobe", "/init");
    a.add_char_device("dev/console", 0o600, 5, 1);
    a.add_file(
        "usr/share/big",
        0o644,
        (0..70_001u32).map(|i| (i * 7 % 251) as u8).collect(),
    );
    let mut out = Vec::new();
    a.write(&mut out, 1_700_000_000).unwrap();
    let hash: String = Sha256::digest(&out)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hash,
        "e713516118bcd710a7f6229b71ccfb3d76b770da51f5b3db98741261a210ca9c"
    );
}
