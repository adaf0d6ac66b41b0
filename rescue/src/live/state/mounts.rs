//! `state/mounts.json`: the mount table of this process's mount namespace (`/proc/self/mountinfo`)
//! and, when PID 1 lives in another one (we run inside a container or a private namespace), PID 1's
//! too (`/proc/1/mountinfo`).

use std::path::Path;

use serde::Serialize;

use super::doc::{self, Doc, text};
use crate::live::{Artifact, Roots};

/// One line of `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The directory of the filesystem mounted here (`/` unless a bind mount of a subdirectory).
    pub root: String,
    pub mount_point: String,
    pub mount_options: String,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub propagation: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Undoes the kernel's `\ooo` octal escapes (space, tab, newline, backslash) of mountinfo paths.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 3 < s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(s[i + 1] - b'0') * 64
                + u32::from(s[i + 2] - b'0') * 8
                + u32::from(s[i + 3] - b'0');
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Parses `mountinfo`; lines not in the kernel's format come back as errors.
pub fn parse_mountinfo(b: &[u8]) -> (Vec<Mount>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in b.split(|&c| c == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let f: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
        let parsed = (|| {
            let sep = f.iter().position(|x| *x == b"-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            let t = |b: &[u8]| text(&unescape(b));
            Some(Mount {
                id: doc::num(f[0])?,
                parent: doc::num(f[1])?,
                device: t(f[2]),
                root: t(f[3]),
                mount_point: t(f[4]),
                mount_options: t(f[5]),
                propagation: f[6..sep].iter().map(|x| t(x)).collect(),
                fstype: t(f[sep + 1]),
                source: t(f[sep + 2]),
                super_options: f.get(sep + 3).map(|x| t(x)).unwrap_or_default(),
            })
        })();
        match parsed {
            Some(m) => out.push(m),
            None => bad.push(format!(
                "line {}: {:?}",
                i + 1,
                text(&line[..line.len().min(120)])
            )),
        }
    }
    (out, bad)
}

fn table(path: &Path, d: &mut Doc) -> Vec<Mount> {
    match doc::read(path) {
        Ok(b) => {
            let (m, bad) = parse_mountinfo(&b);
            for x in bad {
                d.note(format!("{}: {x}", path.display()));
            }
            m
        }
        Err(e) => {
            d.note(format!("{}: {}", path.display(), doc::why(&e)));
            Vec::new()
        }
    }
}

/// Collects `state/mounts.json`.
pub fn collect(roots: &Roots) -> Artifact {
    let mut d = Doc::start(
        "state/mounts.json",
        "rescue.live.mounts/1",
        "/proc/self/mountinfo, /proc/1/mountinfo when PID 1 is in another mount namespace",
    );
    let proc = &roots.proc;
    let own_ns = doc::readlink(&proc.join("self/ns/mnt"))
        .ok()
        .map(|b| text(&b));
    let init_ns = doc::readlink(&proc.join("1/ns/mnt")).ok().map(|b| text(&b));
    let mounts = table(&proc.join("self/mountinfo"), &mut d);
    let init = if init_ns.is_some() && init_ns != own_ns {
        d.note("PID 1 is in another mount namespace: its mount table is listed as init_mounts");
        Some(table(&proc.join("1/mountinfo"), &mut d))
    } else {
        None
    };
    d.finish(vec![
        ("namespace", doc::json(&own_ns)),
        ("mounts", doc::json(&mounts)),
        ("init_namespace", doc::json(&init_ns)),
        ("init_mounts", doc::json(&init)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_with_propagation_escapes_and_no_super_options() {
        let b = b"36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
22 27 0:21 / /proc rw,relatime - proc proc\n\
garbage line\n\
1 2 3 4 5 6 -\n\
99999999999999999999999 1 0:1 / / rw - x y z\n";
        let (m, bad) = parse_mountinfo(b);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].propagation, ["master:1", "shared:2"]);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].super_options, "rw,errors=continue");
        assert_eq!(m[1].super_options, "");
    }

    #[test]
    fn unescape_octal_only_when_complete() {
        assert_eq!(unescape(b"a\\040b\\134\\011"), b"a b\\\t");
        assert_eq!(unescape(b"x\\04"), b"x\\04");
        assert_eq!(unescape(b"\\777"), b"\\777");
        assert_eq!(unescape(b"\\"), b"\\");
    }
}
