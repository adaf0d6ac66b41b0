//! Accounts: `/etc/passwd`, `/etc/shadow` and `/etc/group` (UID 0 besides root, login shells on
//! system accounts, empty, weak or recently changed passwords, privileged groups).

use super::{User, lines, login_shell};
use crate::triage::category as cat;
use crate::triage::{Collector, Severity};

/// Groups whose members hold root's powers or can read or write what gives them.
const PRIVILEGED_GROUPS: [&str; 6] = ["root", "sudo", "wheel", "admin", "shadow", "disk"];

pub(super) fn accounts(c: &mut Collector<'_>) -> Vec<User> {
    let passwd_path = b"/etc/passwd";
    let mut users = Vec::new();
    let passwd = c.fs.read_text(passwd_path).unwrap_or_default();
    let mut by_uid: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (n, line) in lines(&passwd) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            c.add_line(
                Severity::Low,
                cat::ACCOUNT,
                passwd_path,
                n,
                line,
                "a malformed passwd line".into(),
            );
            continue;
        }
        let Ok(uid) = f[2].parse::<u32>() else {
            continue;
        };
        let u = User {
            name: f[0].to_owned(),
            uid,
            home: f[5].to_owned(),
            shell: f[6].to_owned(),
        };
        by_uid.entry(uid).or_default().push(u.name.clone());
        if uid == 0 && u.name != "root" {
            c.add_line(
                Severity::Critical,
                cat::ACCOUNT,
                passwd_path,
                n,
                line,
                format!("a second uid-0 account: {} has root's powers", u.name),
            );
        }
        match f[1] {
            "" => c.add_line(
                Severity::Critical,
                cat::ACCOUNT,
                passwd_path,
                n,
                line,
                format!(
                    "{} has an empty password field in passwd: logs in without a password",
                    u.name
                ),
            ),
            "x" | "*" | "!" | "!!" => {}
            _ => c.add_line(
                Severity::High,
                cat::ACCOUNT,
                passwd_path,
                n,
                line,
                format!(
                    "{} has a password hash in passwd itself (readable by every user)",
                    u.name
                ),
            ),
        }
        if login_shell(&u.shell) {
            if uid != 0 && uid < 1000 && u.name != "sync" {
                c.add_line(
                    Severity::Medium,
                    cat::ACCOUNT,
                    passwd_path,
                    n,
                    line,
                    format!(
                        "system account {} (uid {uid}) has a login shell {}",
                        u.name, u.shell
                    ),
                );
            } else {
                c.add_line(
                    Severity::Info,
                    cat::ACCOUNT,
                    passwd_path,
                    n,
                    line,
                    format!("account {} (uid {uid}) can log in ({})", u.name, u.shell),
                );
            }
        }
        users.push(u);
    }
    for (uid, names) in &by_uid {
        if names.len() > 1 && *uid != 0 {
            c.add(
                Severity::Medium,
                cat::ACCOUNT,
                passwd_path,
                format!("uid {uid} is shared by {}", names.join(", ")),
            );
        }
    }
    let group = c.fs.read_text(b"/etc/group").unwrap_or_default();
    let mut by_gid: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (n, line) in lines(&group) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        if let Ok(gid) = f[2].parse::<u32>() {
            by_gid.entry(gid).or_default().push(f[0].to_owned());
        }
        if ["sudo", "wheel", "admin", "root"].contains(&f[0]) && !f[3].trim().is_empty() {
            c.add_line(
                Severity::Low,
                cat::ACCOUNT,
                b"/etc/group",
                n,
                line,
                format!("members of the administrators' group {}: {}", f[0], f[3]),
            );
        }
    }
    for (gid, names) in &by_gid {
        if names.len() > 1 {
            // A second name for root's or the administrators' gid is that group's powers.
            let privileged = names
                .iter()
                .find(|n| PRIVILEGED_GROUPS.contains(&n.as_str()));
            let (sev, why) = match privileged {
                Some(g) => (
                    Severity::Medium,
                    format!(
                        "gid {gid} of the privileged group {g} is shared by {}",
                        names.join(", ")
                    ),
                ),
                None => (
                    Severity::Low,
                    format!("gid {gid} is shared by {}", names.join(", ")),
                ),
            };
            c.add(sev, cat::ACCOUNT, b"/etc/group", why);
        }
    }
    let shadow = c.fs.read_text(b"/etc/shadow").unwrap_or_default();
    let today = chrono::Utc::now().timestamp() / 86400;
    for (n, line) in lines(&shadow) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            continue;
        }
        let (name, hash) = (f[0], f[1]);
        let login = users
            .iter()
            .find(|u| u.name == name)
            .is_some_and(|u| login_shell(&u.shell));
        // Never put a hash into the findings: the line is shown with it masked.
        let masked = format!("{name}:{}:{}", mask(hash), f[2..].join(":"));
        if hash.is_empty() {
            c.add_line(
                if login {
                    Severity::Critical
                } else {
                    Severity::High
                },
                cat::ACCOUNT,
                b"/etc/shadow",
                n,
                &masked,
                format!("{name} has an empty password: anyone can log in as {name}"),
            );
        } else if let Some(weak) = weak_hash(hash) {
            c.add_line(
                Severity::High,
                cat::ACCOUNT,
                b"/etc/shadow",
                n,
                &masked,
                format!("{name} has a weak password hash ({weak})"),
            );
        }
        if let Ok(day) = f[2].parse::<i64>() {
            let changed = day * 86400;
            if c.since.is_some_and(|s| changed >= s - 86400) && usable(hash) {
                c.add_line(
                    Severity::Medium,
                    cat::ACCOUNT,
                    b"/etc/shadow",
                    n,
                    &masked,
                    format!(
                        "{name}'s password was changed on {} (in the attack window)",
                        day_string(day)
                    ),
                );
            } else if day > today + 1 {
                c.add_line(
                    Severity::Low,
                    cat::ACCOUNT,
                    b"/etc/shadow",
                    n,
                    &masked,
                    format!(
                        "{name}'s last password change is in the future ({})",
                        day_string(day)
                    ),
                );
            } else if usable(hash) {
                c.add_line(
                    Severity::Info,
                    cat::ACCOUNT,
                    b"/etc/shadow",
                    n,
                    &masked,
                    format!("{name} has a password, last changed {}", day_string(day)),
                );
            }
        }
    }
    users
}

fn day_string(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day {day}"))
}

/// A hash that can be logged in with (not locked, not empty).
fn usable(hash: &str) -> bool {
    !hash.is_empty() && !hash.starts_with('!') && !hash.starts_with('*')
}

fn mask(hash: &str) -> String {
    if !usable(hash) {
        return hash.to_owned();
    }
    match hash.rsplit_once('$') {
        Some((params, _)) => format!("{params}$<hash>"),
        None => "<hash>".into(),
    }
}

/// The weakness of a crypt(3) hash: DES, MD5; `None` for SHA-2 crypt, yescrypt, bcrypt, or a locked one.
fn weak_hash(hash: &str) -> Option<&'static str> {
    if !usable(hash) {
        return None;
    }
    if hash.starts_with("$1$") {
        Some("MD5-crypt")
    } else if hash.starts_with("$3$") {
        Some("NT hash")
    } else if !hash.starts_with('$') && hash.len() == 13 {
        Some("DES crypt, 8 characters at most")
    } else if !hash.starts_with('$') {
        Some("not a crypt(3) hash: possibly plain text")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_locked_hashes() {
        assert_eq!(weak_hash("$1$salt$abc"), Some("MD5-crypt"));
        assert_eq!(
            weak_hash("abJnggxhB/yWI"),
            Some("DES crypt, 8 characters at most")
        );
        assert_eq!(weak_hash("$y$j9T$salt$hash"), None);
        assert_eq!(weak_hash("$6$salt$hash"), None);
        assert_eq!(weak_hash("!$6$salt$hash"), None);
        assert_eq!(weak_hash("*"), None);
        assert_eq!(mask("$6$salt$hash"), "$6$salt$<hash>");
    }
}
