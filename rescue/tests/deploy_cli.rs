//! `rescue deploy` through the real binary (issue 13): the target interlock never clears a device
//! stacked on case evidence, whatever reason is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/root.rs"]
mod root;
use root::need_root;

fn rescue(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.args(args).env_remove("RESCUE_SYSTEM");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A loop device attached with `losetup` (util-linux), detached when dropped.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path) -> Self {
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Loop(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn deploy_never_unlocks_a_loop_device_over_an_acquisition_image() {
    if !need_root("deploy_never_unlocks_a_loop_device_over_an_acquisition_image") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let disk = d.path().join("suspect.img");
    std::fs::write(&disk, vec![0x42u8; 1 << 20]).unwrap();
    let acq = d.path().join("disk-1");
    let o = rescue(&["acquire", s(&disk), "--out", s(&acq)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let evidence = acq.join("image.raw");
    let before = std::fs::read(&evidence).unwrap();
    // Writable loop: nothing but the interlock stands between deploy and the evidence.
    let lo = Loop::attach(&evidence);
    let golden = d.path().join("golden.img");
    std::fs::write(&golden, vec![0xEEu8; 64 << 10]).unwrap();
    let o = rescue(
        &[
            "deploy",
            s(&golden),
            "--target",
            s(&lo.0),
            "--confirm",
            &(1u64 << 20).to_string(),
            "--reason",
            "spare disk",
        ],
        &[("RESCUE_STATE_DIR", &state)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is a loop device over the acquisition image"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("unlocked for writing"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&evidence).unwrap(),
        before,
        "the evidence is unchanged"
    );
    let unlocked = std::fs::read_to_string(state.join("unlocked")).unwrap_or_default();
    assert!(unlocked.trim().is_empty(), "nothing unlocked: {unlocked}");
}
