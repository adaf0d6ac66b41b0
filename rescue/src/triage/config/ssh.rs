//! SSH: the server's configuration (and what it includes) and every account's `authorized_keys`,
//! each key with its options and its `ssh-keygen -l` fingerprint.

use super::{User, lines};
use crate::triage::category as cat;
use crate::triage::rootfs::join;
use crate::triage::{Collector, Severity};

/// `sshd_config` and the files it includes, as (path, text).
fn sshd_configs(c: &Collector<'_>) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    let main = b"/etc/ssh/sshd_config".to_vec();
    let Some(text) = c.fs.read_text(&main) else {
        return out;
    };
    let mut includes = Vec::new();
    for (_, l) in lines(&text) {
        let mut w = l.split_whitespace();
        if w.next().is_some_and(|k| k.eq_ignore_ascii_case("include")) {
            includes.extend(w.map(str::to_owned));
        }
    }
    out.push((main, text));
    for inc in includes {
        let pattern = if inc.starts_with('/') {
            inc
        } else {
            format!("/etc/ssh/{inc}")
        };
        // A glob in the last component only (`sshd_config.d/*.conf`), matched against the listing.
        let (dir, name) = pattern.rsplit_once('/').unwrap_or(("/etc/ssh", &pattern));
        let Ok(pat) = glob::Pattern::new(name) else {
            continue;
        };
        for n in c.fs.list(dir.as_bytes()) {
            if pat.matches(&String::from_utf8_lossy(&n)) {
                let p = join(dir.as_bytes(), &n);
                if let Some(t) = c.fs.read_text(&p) {
                    out.push((p, t));
                }
            }
        }
    }
    out
}

pub(super) fn ssh(c: &mut Collector<'_>, users: &[User]) {
    let mut key_files = vec![
        ".ssh/authorized_keys".to_owned(),
        ".ssh/authorized_keys2".to_owned(),
    ];
    for (path, text) in sshd_configs(c) {
        for (n, line) in lines(&text) {
            let mut w = line.split_whitespace();
            let Some(key) = w.next().map(str::to_ascii_lowercase) else {
                continue;
            };
            let value: Vec<&str> = w.collect();
            let v = value.join(" ").to_ascii_lowercase();
            match key.as_str() {
                "permitrootlogin" if v == "yes" => c.add_line(
                    Severity::Medium,
                    cat::SSH,
                    &path,
                    n,
                    line,
                    "sshd lets root log in with a password (PermitRootLogin yes)".into(),
                ),
                "permitemptypasswords" if v == "yes" => c.add_line(
                    Severity::High,
                    cat::SSH,
                    &path,
                    n,
                    line,
                    "sshd accepts empty passwords (PermitEmptyPasswords yes)".into(),
                ),
                "authorizedkeyscommand" if v != "none" => c.add_line(
                    Severity::High,
                    cat::SSH,
                    &path,
                    n,
                    line,
                    "sshd asks a program for authorized keys (AuthorizedKeysCommand): it can let anyone in".into(),
                ),
                "authorizedkeysfile" => {
                    let default = v == ".ssh/authorized_keys .ssh/authorized_keys2"
                        || v == ".ssh/authorized_keys";
                    if !default {
                        c.add_line(
                            Severity::Medium,
                            cat::SSH,
                            &path,
                            n,
                            line,
                            "sshd reads authorized keys from a non-default place (AuthorizedKeysFile)".into(),
                        );
                    }
                    key_files.extend(value.iter().map(|s| (*s).to_owned()));
                }
                "authorizedprincipalscommand" if v != "none" => c.add_line(
                    Severity::High,
                    cat::SSH,
                    &path,
                    n,
                    line,
                    "sshd asks a program for authorized principals (AuthorizedPrincipalsCommand)".into(),
                ),
                _ => {}
            }
        }
    }
    key_files.sort();
    key_files.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for u in users {
        for pattern in &key_files {
            let expanded = pattern
                .replace("%%", "\u{0}")
                .replace("%h", &u.home)
                .replace("%u", &u.name)
                .replace("%U", &u.uid.to_string())
                .replace('\u{0}', "%");
            let path = if expanded.starts_with('/') {
                expanded
            } else {
                format!("{}/{}", u.home.trim_end_matches('/'), expanded)
            };
            if path == "/" || !seen.insert(path.clone()) {
                continue;
            }
            if let Some(text) = c.fs.read_text(path.as_bytes()) {
                authorized_keys(c, path.as_bytes(), &text, u);
            }
        }
    }
}

/// The key options, key type, key blob and comment of an `authorized_keys` line.
fn parse_key_line(line: &str) -> Option<(String, &str, &str, &str)> {
    const TYPES: [&str; 8] = [
        "ssh-rsa",
        "ssh-ed25519",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    // Options may hold quoted spaces: find the key type as a word.
    let mut in_quote = false;
    let mut start = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i <= bytes.len() {
        let at_end = i == bytes.len();
        if !at_end && bytes[i] == b'"' {
            in_quote = !in_quote;
        } else if at_end || (!in_quote && bytes[i] == b' ') {
            let word = &line[start..i];
            if TYPES.contains(&word) {
                let options = line[..start].trim().to_owned();
                let mut rest = line[i..].trim_start().splitn(2, ' ');
                let blob = rest.next().unwrap_or("");
                let comment = rest.next().unwrap_or("").trim();
                return Some((options, word, blob, comment));
            }
            start = i + 1;
        }
        i += 1;
    }
    None
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
pub fn fingerprint(blob_b64: &str) -> Option<String> {
    use base64::Engine;
    use sha2::Digest;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob_b64)
        .ok()?;
    let d = sha2::Sha256::digest(&blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)
    ))
}

fn authorized_keys(c: &mut Collector<'_>, path: &[u8], text: &str, u: &User) {
    for (n, line) in lines(text) {
        let Some((options, kind, blob, comment)) = parse_key_line(line) else {
            c.add_line(
                Severity::Low,
                cat::SSH,
                path,
                n,
                line,
                format!("an unparsable line in {}'s authorized keys", u.name),
            );
            continue;
        };
        let fp = fingerprint(blob).unwrap_or_else(|| "an undecodable key".into());
        let who = format!(
            "{kind} {fp}{}",
            if comment.is_empty() {
                String::new()
            } else {
                format!(" ({comment})")
            }
        );
        let opts = options.to_ascii_lowercase();
        let (sev, why) = if opts.contains("command=") {
            (
                Severity::High,
                format!("authorized key for {} runs a forced command: {who}", u.name),
            )
        } else if opts.contains("environment=") {
            (
                Severity::High,
                format!(
                    "authorized key for {} sets environment variables: {who}",
                    u.name
                ),
            )
        } else if u.uid == 0 {
            (
                Severity::Medium,
                format!("authorized key for {}: {who}", u.name),
            )
        } else {
            (
                Severity::Low,
                format!("authorized key for {}: {who}", u.name),
            )
        };
        c.add_line(sev, cat::SSH, path, n, line, why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_with_options_and_comments_parse_and_fingerprint_like_ssh_keygen() {
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let line = format!("command=\"/bin/sh -c 'x y'\",no-pty ssh-ed25519 {blob} evil@host");
        let (opts, kind, b, comment) = parse_key_line(&line).unwrap();
        assert_eq!(opts, "command=\"/bin/sh -c 'x y'\",no-pty");
        assert_eq!(kind, "ssh-ed25519");
        assert_eq!(b, blob);
        assert_eq!(comment, "evil@host");
        assert!(fingerprint(blob).unwrap().starts_with("SHA256:"));
        assert!(parse_key_line("garbage").is_none());
    }
}
