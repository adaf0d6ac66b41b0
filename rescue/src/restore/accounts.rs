//! Account databases (`passwd`, `shadow`, `group`, `gshadow`, their `-` backups, `subuid`, `subgid`)
//! compared with the new system's: a restore never puts them back wholesale, it holds them and writes
//! this comparison for the operator, who merges the accounts the data needs by hand.
//!
//! The comparison is by account, not by line: accounts only in the backup (added), only in the new
//! system (removed), in both with different fields (changed). It flags what an attacker adds: a second
//! uid-0 or gid-0 account, an empty password, a member added to a privileged group. Password hashes never
//! appear in it (only "hash differs", "empty", "locked"). Pure functions over bytes; never prints.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Which account database a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Passwd,
    Shadow,
    Group,
    Gshadow,
    /// `subuid` / `subgid`: ranges, not accounts.
    SubIds,
}

/// The database a path (in the examined root, without the leading `/`) is: `etc/NAME` or `etc/NAME-`.
pub fn database(orig: &str) -> Option<Database> {
    let name = orig.strip_prefix("etc/")?;
    match name.strip_suffix('-').unwrap_or(name) {
        "passwd" => Some(Database::Passwd),
        "shadow" => Some(Database::Shadow),
        "group" => Some(Database::Group),
        "gshadow" => Some(Database::Gshadow),
        "subuid" | "subgid" => Some(Database::SubIds),
        _ => None,
    }
}

/// Groups whose members can become root or read every disk.
const PRIVILEGED_GROUPS: &[&str] = &[
    "root", "sudo", "wheel", "admin", "adm", "shadow", "disk", "docker", "lxd", "libvirt", "kvm",
];

/// The comparison: a one-line summary and the text written beside the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub summary: String,
    pub text: String,
}

/// Records by their first field (the account or group name), in file order; comments and blank lines
/// skipped.
fn records(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<String> = l.split(':').map(str::to_owned).collect();
            (fields[0].clone(), fields)
        })
        .collect()
}

fn field(r: &[String], i: usize) -> &str {
    r.get(i).map_or("", String::as_str)
}

/// A password field as it may be shown: never the hash itself.
fn password(p: &str) -> &'static str {
    match p {
        "" => "EMPTY (no password)",
        "x" => "in shadow",
        p if p.starts_with('!') || p.starts_with('*') => "locked",
        _ => "a hash",
    }
}

/// Field names per database (index → name); the password field (1) is described, never shown.
fn field_names(db: Database) -> &'static [&'static str] {
    match db {
        Database::Passwd => &["name", "password", "uid", "gid", "gecos", "home", "shell"],
        Database::Shadow => &[
            "name",
            "password",
            "last change",
            "min",
            "max",
            "warn",
            "inactive",
            "expire",
        ],
        Database::Group => &["name", "password", "gid", "members"],
        Database::Gshadow => &["name", "password", "admins", "members"],
        Database::SubIds => &["name", "start", "count"],
    }
}

/// How one record is shown (password replaced by its description).
fn show(db: Database, r: &[String]) -> String {
    let mut out: Vec<String> = r.to_vec();
    if db != Database::SubIds && out.len() > 1 {
        out[1] = format!("<{}>", password(&out[1]));
    }
    out.join(":")
}

/// What is alarming about a record of the backup.
fn flags(db: Database, r: &[String], new: Option<&Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let name = field(r, 0);
    match db {
        Database::Passwd => {
            if field(r, 2) == "0" && name != "root" {
                out.push("UID 0: a second superuser".to_owned());
            }
            if field(r, 1).is_empty() {
                out.push("EMPTY password".to_owned());
            }
        }
        Database::Shadow | Database::Gshadow => {
            if field(r, 1).is_empty() {
                out.push("EMPTY password".to_owned());
            }
        }
        Database::Group => {
            if field(r, 2) == "0" && name != "root" {
                out.push("GID 0".to_owned());
            }
            if PRIVILEGED_GROUPS.contains(&name) {
                let before: Vec<&str> = new
                    .map(|n| field(n, 3).split(',').filter(|m| !m.is_empty()).collect())
                    .unwrap_or_default();
                let added: Vec<&str> = field(r, 3)
                    .split(',')
                    .filter(|m| !m.is_empty() && !before.contains(m))
                    .collect();
                if !added.is_empty() {
                    out.push(format!(
                        "privileged group {name} gains {}",
                        added.join(", ")
                    ));
                }
            }
        }
        Database::SubIds => {}
    }
    out
}

/// Compares the backup's database with the new system's (`None`: the new system has no such file).
pub fn compare(db: Database, rel: &str, backup: &[u8], new: Option<&[u8]>) -> Comparison {
    let b = records(&String::from_utf8_lossy(backup));
    let n = new
        .map(|n| records(&String::from_utf8_lossy(n)))
        .unwrap_or_default();
    let names = field_names(db);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# rescue restore: {rel} from the backup (held, never restored wholesale) against the new system's {}",
        if new.is_some() {
            format!("/{rel}")
        } else {
            format!("/{rel} (absent)")
        }
    );
    let _ = writeln!(
        text,
        "# + only in the backup   - only in the new system   ~ in both, fields differ   !! alarming\n# password hashes are never shown"
    );
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    let mut alarms: Vec<String> = Vec::new();
    for (name, r) in &b {
        let other = n.get(name);
        let fl = flags(db, r, other);
        for f in &fl {
            alarms.push(format!("{name}: {f}"));
        }
        let marks = if fl.is_empty() {
            String::new()
        } else {
            format!("   !! {}", fl.join("; "))
        };
        match other {
            None => {
                added.push(name.clone());
                let _ = writeln!(text, "+ {}{marks}", show(db, r));
            }
            Some(o) if o != r => {
                changed.push(name.clone());
                let diffs: Vec<String> = (1..r.len().max(o.len()))
                    .filter(|&i| field(r, i) != field(o, i))
                    .map(|i| {
                        let what = names.get(i).copied().unwrap_or("field");
                        if i == 1 && db != Database::SubIds {
                            let (old, new) = (password(field(o, i)), password(field(r, i)));
                            if old == new {
                                format!("{what}: the hash differs")
                            } else {
                                format!("{what}: {old} -> {new}")
                            }
                        } else {
                            format!("{what}: {:?} -> {:?}", field(o, i), field(r, i))
                        }
                    })
                    .collect();
                let _ = writeln!(text, "~ {name}: {}{marks}", diffs.join("; "));
            }
            Some(_) if !fl.is_empty() => {
                let _ = writeln!(text, "= {}{marks}", show(db, r));
            }
            Some(_) => {}
        }
    }
    for (name, r) in &n {
        if !b.contains_key(name) {
            removed.push(name.clone());
            let _ = writeln!(text, "- {}", show(db, r));
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else if v.len() <= 5 {
            format!(" ({})", v.join(", "))
        } else {
            format!(" ({}, …)", v[..5].join(", "))
        }
    };
    let unit = if db == Database::SubIds {
        "range"
    } else if matches!(db, Database::Group | Database::Gshadow) {
        "group"
    } else {
        "account"
    };
    let mut summary = format!(
        "{} {unit}{} added{}, {} removed{}, {} changed{} against the new system",
        added.len(),
        if added.len() == 1 { "" } else { "s" },
        list(&added),
        removed.len(),
        list(&removed),
        changed.len(),
        list(&changed)
    );
    if new.is_none() {
        summary.push_str(" (which has no such file)");
    }
    if !alarms.is_empty() {
        summary.push_str(&format!("; !! {}", alarms.join("; ")));
    }
    Comparison { summary, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "root:x:0:0:root:/root:/bin/bash\nsshd:x:105:65534::/run/sshd:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n";
    const OLD: &str = "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/bash\n";

    #[test]
    fn passwd_added_removed_changed_and_uid0_flagged() {
        let c = compare(
            Database::Passwd,
            "etc/passwd",
            OLD.as_bytes(),
            Some(NEW.as_bytes()),
        );
        assert!(
            c.summary.starts_with(
                "2 accounts added (bob, toor), 1 removed (sshd), 1 changed (alice) against the new system"
            ),
            "{}",
            c.summary
        );
        assert!(
            c.summary.contains("toor: UID 0: a second superuser"),
            "{}",
            c.summary
        );
        assert!(
            c.text
                .contains("+ toor:<in shadow>:0:0::/root:/bin/bash   !! UID 0"),
            "{}",
            c.text
        );
        assert!(c.text.contains("- sshd:"), "{}", c.text);
        assert!(
            c.text
                .contains("~ alice: shell: \"/bin/bash\" -> \"/bin/sh\""),
            "{}",
            c.text
        );
        assert!(
            !c.text.contains("root:<"),
            "root unchanged is not listed: {}",
            c.text
        );
    }

    #[test]
    fn shadow_never_shows_a_hash_and_flags_empty_passwords() {
        let old = "root:$6$salt$secrethash:19000:0:99999:7:::\nbob::19001:0:99999:7:::\n";
        let new = "root:$6$other$newhash:19500:0:99999:7:::\n";
        let c = compare(
            Database::Shadow,
            "etc/shadow",
            old.as_bytes(),
            Some(new.as_bytes()),
        );
        assert!(
            !c.text.contains("secrethash") && !c.text.contains("newhash"),
            "{}",
            c.text
        );
        assert!(
            c.text
                .contains("~ root: password: the hash differs; last change"),
            "{}",
            c.text
        );
        assert!(c.summary.contains("bob: EMPTY password"), "{}", c.summary);
    }

    #[test]
    fn a_member_added_to_a_privileged_group_is_flagged() {
        let c = compare(
            Database::Group,
            "etc/group",
            b"sudo:x:27:alice,mallory\nusers:x:100:bob\n",
            Some(b"sudo:x:27:alice\nusers:x:100:\n"),
        );
        assert!(
            c.summary
                .contains("sudo: privileged group sudo gains mallory"),
            "{}",
            c.summary
        );
        assert!(!c.summary.contains("users:"), "{}", c.summary);
        let c = compare(Database::Group, "etc/group", b"sudo:x:27:alice\n", None);
        assert!(
            c.summary.contains("which has no such file"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn databases_are_found_by_path() {
        assert_eq!(database("etc/passwd"), Some(Database::Passwd));
        assert_eq!(database("etc/shadow-"), Some(Database::Shadow));
        assert_eq!(database("etc/subgid"), Some(Database::SubIds));
        assert_eq!(database("srv/passwd"), None);
        assert_eq!(database("etc/passwdx"), None);
    }
}
