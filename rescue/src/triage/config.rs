//! Detectors over the examined root's configuration: accounts, SSH, sudoers, PAM, cron and at,
//! systemd, init scripts, the dynamic loader, shell start-up files and XDG autostart, udev rules,
//! kernel module loading, apt hooks. Each reads files through [`super::RootFs`] (inside the root,
//! never executing anything) and adds findings to the [`Collector`].

use super::category as cat;
use super::patterns::suspicious_command;
use super::rootfs::join;
use super::{Collector, Severity};

/// Runs every configuration detector.
pub fn run_all(c: &mut Collector<'_>) {
    let users = accounts(c);
    ssh(c, &users);
    sudo(c);
    pam(c);
    cron(c);
    systemd(c, &users);
    init_scripts(c);
    loader(c);
    shell(c, &users);
    udev(c);
    kernel_modules(c);
    apt_hooks(c);
}

/// An account of the root's `/etc/passwd`.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: String,
    pub shell: String,
}

/// A shell that lets an account log in.
fn login_shell(shell: &str) -> bool {
    !(shell.is_empty()
        || shell.ends_with("/nologin")
        || shell.ends_with("/false")
        || shell.ends_with("/sync")
        || shell.ends_with("/shutdown")
        || shell.ends_with("/halt"))
}

/// Non-comment, non-empty lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
}

fn accounts(c: &mut Collector<'_>) -> Vec<User> {
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
            c.add(
                Severity::Low,
                cat::ACCOUNT,
                b"/etc/group",
                format!("gid {gid} is shared by {}", names.join(", ")),
            );
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

fn ssh(c: &mut Collector<'_>, users: &[User]) {
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

fn sudo(c: &mut Collector<'_>) {
    let mut files = vec![b"/etc/sudoers".to_vec()];
    for p in c.fs.files_in(b"/etc/sudoers.d") {
        c.if_unowned(Severity::Medium, cat::SUDO, &p, "a sudoers drop-in");
        files.push(p);
    }
    for path in files {
        let Some(text) = c.fs.read_text(&path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("defaults") {
                if lower.contains("!authenticate") {
                    c.add_line(
                        Severity::High,
                        cat::SUDO,
                        &path,
                        n,
                        line,
                        "sudo asks nobody for a password (!authenticate)".into(),
                    );
                }
                if lower.contains("ld_preload") || lower.contains("ld_library_path") {
                    c.add_line(
                        Severity::High,
                        cat::SUDO,
                        &path,
                        n,
                        line,
                        "sudo keeps loader variables (LD_PRELOAD/LD_LIBRARY_PATH)".into(),
                    );
                }
                continue;
            }
            if lower.contains("nopasswd") {
                c.add_line(
                    Severity::High,
                    cat::SUDO,
                    &path,
                    n,
                    line,
                    "sudo without a password (NOPASSWD)".into(),
                );
                continue;
            }
            let who = l.split_whitespace().next().unwrap_or("");
            let everything = l.contains('=') && l.trim_end().ends_with("ALL");
            let admin = ["root", "%sudo", "%admin", "%wheel"].contains(&who);
            if everything
                && !admin
                && !who.eq_ignore_ascii_case("defaults")
                && !who.ends_with("_Alias")
            {
                c.add_line(
                    Severity::High,
                    cat::SUDO,
                    &path,
                    n,
                    line,
                    format!("{who} may run anything as root through sudo"),
                );
            }
        }
    }
}

fn pam(c: &mut Collector<'_>) {
    let mut files = c.fs.files_in(b"/etc/pam.d");
    for p in &files {
        // pam-auth-update writes these from the profiles packages install; their lines are checked below.
        if p.starts_with(b"/etc/pam.d/common-") {
            continue;
        }
        c.if_unowned(Severity::Medium, cat::PAM, p, "a PAM configuration file");
    }
    files.push(b"/etc/pam.conf".to_vec());
    for path in files {
        let Some(text) = c.fs.read_text(&path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let w: Vec<&str> = line.split_whitespace().collect();
            // pam.conf has the service name first.
            let w = if path.ends_with(b"pam.conf") && w.len() > 1 {
                &w[1..]
            } else {
                &w[..]
            };
            let (Some(kind), Some(control), Some(module)) = (w.first(), w.get(1), w.get(2)) else {
                continue;
            };
            if kind.starts_with('@') {
                continue;
            }
            let module = if control.starts_with('[') {
                // `[success=1 default=ignore] pam_unix.so`: the module follows the bracket.
                match w.iter().position(|x| x.ends_with(']')) {
                    Some(i) => w.get(i + 1).copied().unwrap_or(""),
                    None => continue,
                }
            } else {
                module
            };
            if module.contains("pam_exec") {
                c.add_line(
                    Severity::High,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    "PAM runs a program (pam_exec)".into(),
                );
            } else if module.contains("pam_permit")
                && kind.trim_start_matches('-') == "auth"
                && *control == "sufficient"
            {
                c.add_line(
                    Severity::Critical,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    "PAM accepts anyone (pam_permit.so sufficient in auth)".into(),
                );
            } else if module.starts_with('/') && !module.contains("/security/") {
                c.add_line(
                    Severity::High,
                    cat::PAM,
                    &path,
                    n,
                    line,
                    format!("PAM loads a module from outside the module directories: {module}"),
                );
            }
        }
    }
}

fn cron(c: &mut Collector<'_>) {
    let mut system = vec![b"/etc/crontab".to_vec(), b"/etc/anacrontab".to_vec()];
    for p in c.fs.files_in(b"/etc/cron.d") {
        c.if_unowned(Severity::Medium, cat::CRON, &p, "a cron.d file");
        system.push(p);
    }
    for path in &system {
        let Some(text) = c.fs.read_text(path) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            // Variable assignments (`SHELL=/bin/sh`) are not jobs.
            if l.split_whitespace().next().is_some_and(|w| w.contains('=')) {
                continue;
            }
            match suspicious_command(l) {
                Some(why) => c.add_line(
                    Severity::High,
                    cat::CRON,
                    path,
                    n,
                    line,
                    format!("cron job {why}"),
                ),
                None => c.add_line(Severity::Info, cat::CRON, path, n, line, "cron job".into()),
            }
        }
    }
    for period in ["hourly", "daily", "weekly", "monthly", "yearly"] {
        let dir = format!("/etc/cron.{period}");
        for p in c.fs.files_in(dir.as_bytes()) {
            let name = p.rsplit(|&b| b == b'/').next().unwrap_or(b"");
            if name == b".placeholder" {
                continue;
            }
            if !c.if_unowned(
                Severity::Medium,
                cat::CRON,
                &p,
                &format!("a cron.{period} script"),
            ) {
                c.add(
                    Severity::Info,
                    cat::CRON,
                    &p,
                    format!("cron.{period} script"),
                );
            }
            script_lines(c, &p, cat::CRON, "cron script");
        }
    }
    for dir in [
        &b"/var/spool/cron/crontabs"[..],
        b"/var/spool/cron",
        b"/var/spool/cron/tabs",
    ] {
        for p in c.fs.files_in(dir) {
            let Some(text) = c.fs.read_text(&p) else {
                continue;
            };
            let user = String::from_utf8_lossy(p.rsplit(|&b| b == b'/').next().unwrap_or(b""))
                .into_owned();
            for (n, line) in lines(&text) {
                if line
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains('='))
                {
                    continue;
                }
                match suspicious_command(line) {
                    Some(why) => c.add_line(
                        Severity::High,
                        cat::CRON,
                        &p,
                        n,
                        line,
                        format!("{user}'s crontab job {why}"),
                    ),
                    None => c.add_line(
                        Severity::Medium,
                        cat::CRON,
                        &p,
                        n,
                        line,
                        format!("{user}'s crontab job"),
                    ),
                }
            }
        }
    }
    for dir in [&b"/var/spool/cron/atjobs"[..], b"/var/spool/at"] {
        for p in c.fs.files_in(dir) {
            if p.ends_with(b".SEQ") {
                continue;
            }
            let text = c.fs.read_text(&p).unwrap_or_default();
            // The command is at the end of the job file, after at's environment set-up.
            let cmd = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with('}'))
                .unwrap_or("");
            match suspicious_command(&text) {
                Some(why) => c.add_line(
                    Severity::High,
                    cat::AT,
                    &p,
                    0,
                    cmd,
                    format!("queued at job {why}"),
                ),
                None => c.add_line(
                    Severity::Medium,
                    cat::AT,
                    &p,
                    0,
                    cmd,
                    "queued at job".into(),
                ),
            }
        }
    }
}

/// Flags the suspicious lines of a script not owned by a package (a package's own scripts are long
/// and legitimately use every pattern; a changed one is a package-integrity finding instead).
fn script_lines(c: &mut Collector<'_>, path: &[u8], category: &str, what: &str) {
    if c.owners.owner(path).is_some() {
        return;
    }
    let Some(text) = c.fs.read_text(path) else {
        return;
    };
    for (n, line) in lines(&text) {
        if let Some(why) = suspicious_command(line) {
            c.add_line(
                Severity::High,
                category,
                path,
                n,
                line,
                format!("{what} {why}"),
            );
        }
    }
}

const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".timer", ".socket", ".path", ".mount", ".target",
];

fn systemd(c: &mut Collector<'_>, users: &[User]) {
    let mut dirs: Vec<Vec<u8>> = [
        "/etc/systemd/system",
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/etc/systemd/user",
        "/usr/lib/systemd/user",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for u in users.iter().filter(|u| !u.home.is_empty() && u.home != "/") {
        dirs.push(format!("{}/.config/systemd/user", u.home.trim_end_matches('/')).into_bytes());
    }
    let mut seen_dirs = std::collections::BTreeSet::new();
    for dir in &dirs {
        // /lib is /usr/lib on a merged-/usr system: read each real directory once.
        let key = c.fs.lstat(dir).map(|m| m.inode);
        if key.is_none() || !seen_dirs.insert(key) {
            continue;
        }
        let in_home =
            !dir.starts_with(b"/etc") && !dir.starts_with(b"/usr") && !dir.starts_with(b"/lib");
        for name in c.fs.list(dir) {
            let p = join(dir, &name);
            let Some(m) = c.fs.lstat(&p) else {
                continue;
            };
            let n = String::from_utf8_lossy(&name).into_owned();
            use crate::examine::walk::FileKind;
            match m.kind {
                FileKind::File if UNIT_SUFFIXES.iter().any(|s| n.ends_with(s)) => {
                    if in_home {
                        c.add(
                            Severity::Medium,
                            cat::SYSTEMD,
                            &p,
                            format!("a user's systemd unit {n}"),
                        );
                    } else {
                        c.if_unowned(
                            Severity::Medium,
                            cat::SYSTEMD,
                            &p,
                            &format!("systemd unit {n}"),
                        );
                    }
                    unit_exec_lines(c, &p);
                }
                FileKind::Dir if n.ends_with(".d") => {
                    for f in c.fs.files_in(&p) {
                        if f.ends_with(b".conf") {
                            c.if_unowned(Severity::Medium, cat::SYSTEMD, &f, "a systemd drop-in");
                            unit_exec_lines(c, &f);
                        }
                    }
                }
                // What the administrator (or an attacker) enabled; packages' static wants are theirs.
                FileKind::Dir
                    if (n.ends_with(".wants") || n.ends_with(".requires"))
                        && !dir.starts_with(b"/usr")
                        && !dir.starts_with(b"/lib") =>
                {
                    for unit in c.fs.list(&p) {
                        let up = join(&p, &unit);
                        let u = String::from_utf8_lossy(&unit);
                        c.add(
                            Severity::Info,
                            cat::SYSTEMD,
                            &up,
                            format!("enabled unit {u} ({n})"),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    for dir in [
        "/etc/systemd/system-generators",
        "/usr/local/lib/systemd/system-generators",
        "/usr/lib/systemd/system-generators",
        "/lib/systemd/system-generators",
        "/etc/systemd/user-generators",
        "/usr/lib/systemd/user-generators",
    ] {
        for p in c.fs.files_in(dir.as_bytes()) {
            c.if_unowned(
                Severity::High,
                cat::SYSTEMD,
                &p,
                "a systemd generator (runs early at every boot)",
            );
        }
    }
}

fn unit_exec_lines(c: &mut Collector<'_>, path: &[u8]) {
    let Some(text) = c.fs.read_text(path) else {
        return;
    };
    for (n, line) in lines(&text) {
        let l = line.trim_start();
        if l.starts_with("Exec")
            && let Some(why) = suspicious_command(l)
        {
            c.add_line(
                Severity::High,
                cat::SYSTEMD,
                path,
                n,
                line,
                format!("systemd unit {why}"),
            );
        }
    }
}

fn init_scripts(c: &mut Collector<'_>) {
    let rc = b"/etc/rc.local";
    if let Some(text) = c.fs.read_text(rc) {
        let body: Vec<(usize, &str)> = lines(&text).filter(|(_, l)| l.trim() != "exit 0").collect();
        if !body.is_empty() {
            let (n, first) = body[0];
            let bad = body
                .iter()
                .find_map(|(n, l)| suspicious_command(l).map(|w| (*n, *l, w)));
            match bad {
                Some((n, l, why)) => c.add_line(
                    Severity::High,
                    cat::INIT,
                    rc,
                    n,
                    l,
                    format!("rc.local {why}"),
                ),
                None => c.add_line(
                    Severity::Medium,
                    cat::INIT,
                    rc,
                    n,
                    first,
                    format!("rc.local runs {} command(s) at boot", body.len()),
                ),
            }
        }
    }
    for p in c.fs.files_in(b"/etc/init.d") {
        c.if_unowned(Severity::Medium, cat::INIT, &p, "an init.d script");
        script_lines(c, &p, cat::INIT, "init.d script");
    }
}

fn loader(c: &mut Collector<'_>) {
    // Read raw: every non-blank line is a library loaded into every dynamically linked program.
    for name in c.fs.list(b"/etc") {
        if !name.starts_with(b"ld.so.preload") {
            continue;
        }
        let p = join(b"/etc", &name);
        if name != b"ld.so.preload" {
            c.add(
                Severity::High,
                cat::LOADER,
                &p,
                "a file named like ld.so.preload (a renamed or staged preload list)".into(),
            );
        }
        let text = c.fs.read_text(&p).unwrap_or_default();
        for (n, line) in lines(&text) {
            c.add_line(
                Severity::Critical,
                cat::LOADER,
                &p,
                n,
                line,
                format!("preloads {} into every program", line.trim()),
            );
        }
    }
    let mut confs = vec![b"/etc/ld.so.conf".to_vec()];
    for p in c.fs.files_in(b"/etc/ld.so.conf.d") {
        c.if_unowned(
            Severity::Medium,
            cat::LOADER,
            &p,
            "a library path file (ld.so.conf.d)",
        );
        confs.push(p);
    }
    for p in confs {
        let text = c.fs.read_text(&p).unwrap_or_default();
        for (n, line) in lines(&text) {
            let l = line.trim();
            let odd = ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root"]
                .iter()
                .any(|d| l.starts_with(d))
                || l.split('/')
                    .any(|part| part.starts_with('.') && part.len() > 1 && part != "..");
            if odd {
                c.add_line(
                    Severity::High,
                    cat::LOADER,
                    &p,
                    n,
                    line,
                    format!("libraries are searched in {l}"),
                );
            }
        }
    }
}

fn shell(c: &mut Collector<'_>, users: &[User]) {
    let mut files: Vec<Vec<u8>> = [
        "/etc/profile",
        "/etc/bash.bashrc",
        "/etc/bashrc",
        "/etc/environment",
        "/etc/zsh/zshrc",
        "/etc/zsh/zprofile",
        "/etc/zsh/zshenv",
        "/etc/csh.cshrc",
        "/etc/csh.login",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for p in c.fs.files_in(b"/etc/profile.d") {
        c.if_unowned(Severity::Medium, cat::SHELL, &p, "a profile.d script");
        files.push(p);
    }
    for p in c.fs.files_in(b"/etc/xdg/autostart") {
        c.if_unowned(Severity::Medium, cat::SHELL, &p, "an XDG autostart entry");
    }
    let mut homes = std::collections::BTreeSet::new();
    for u in users {
        let home = u.home.trim_end_matches('/');
        if home.is_empty() || !homes.insert(home.to_owned()) {
            continue;
        }
        for rc in [
            ".bashrc",
            ".bash_profile",
            ".bash_login",
            ".profile",
            ".bash_logout",
            ".zshrc",
            ".zprofile",
            ".zshenv",
            ".config/fish/config.fish",
        ] {
            files.push(format!("{home}/{rc}").into_bytes());
        }
        for p in
            c.fs.files_in(format!("{home}/.config/autostart").as_bytes())
        {
            c.add(
                Severity::Medium,
                cat::SHELL,
                &p,
                format!("{}'s XDG autostart entry", u.name),
            );
        }
    }
    for p in files {
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        for (n, line) in lines(&text) {
            let l = line.trim();
            let lower = l.to_ascii_lowercase();
            if let Some(why) = suspicious_command(l) {
                c.add_line(
                    Severity::High,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    format!("shell start-up file {why}"),
                );
            } else if ["alias sudo=", "alias su=", "alias ssh=", "alias passwd="]
                .iter()
                .any(|a| lower.starts_with(a))
            {
                c.add_line(
                    Severity::High,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    "an alias replaces a credential-handling command".into(),
                );
            } else if lower.contains("prompt_command=")
                || (lower.starts_with("trap ") && lower.contains("debug"))
            {
                c.add_line(
                    Severity::Medium,
                    cat::SHELL,
                    &p,
                    n,
                    line,
                    "runs a command at every prompt".into(),
                );
            }
        }
    }
}

fn udev(c: &mut Collector<'_>) {
    for dir in [
        "/etc/udev/rules.d",
        "/usr/lib/udev/rules.d",
        "/lib/udev/rules.d",
        "/usr/local/lib/udev/rules.d",
    ] {
        for p in c.fs.files_in(dir.as_bytes()) {
            let unowned = c.owners.unowned(&p);
            let Some(text) = c.fs.read_text(&p) else {
                continue;
            };
            let mut runs = 0;
            for (n, line) in lines(&text) {
                if !line.contains("RUN") && !line.contains("PROGRAM") {
                    continue;
                }
                runs += 1;
                if let Some(why) = suspicious_command(line) {
                    c.add_line(
                        Severity::High,
                        cat::UDEV,
                        &p,
                        n,
                        line,
                        format!("udev rule {why}"),
                    );
                } else if unowned {
                    c.add_line(
                        Severity::High,
                        cat::UDEV,
                        &p,
                        n,
                        line,
                        "a udev rule not owned by any package runs a program (RUN/PROGRAM)".into(),
                    );
                }
            }
            if unowned && runs == 0 {
                c.add(
                    Severity::Low,
                    cat::UDEV,
                    &p,
                    "a udev rules file not owned by any package".into(),
                );
            }
        }
    }
}

fn kernel_modules(c: &mut Collector<'_>) {
    let mut load = vec![b"/etc/modules".to_vec()];
    for dir in [
        "/etc/modules-load.d",
        "/usr/lib/modules-load.d",
        "/lib/modules-load.d",
    ] {
        load.extend(c.fs.files_in(dir.as_bytes()));
    }
    for p in load {
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        let unowned = c.owners.unowned(&p);
        for (n, line) in lines(&text) {
            let m = line.trim();
            c.add_line(
                if unowned {
                    Severity::Medium
                } else {
                    Severity::Info
                },
                cat::KERNEL_MODULE,
                &p,
                n,
                line,
                format!(
                    "module {m} loaded at boot{}",
                    if unowned {
                        " from a file not owned by any package"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    for dir in ["/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"] {
        for p in c.fs.files_in(dir.as_bytes()) {
            c.if_unowned(
                Severity::Medium,
                cat::KERNEL_MODULE,
                &p,
                "a modprobe.d file",
            );
            let Some(text) = c.fs.read_text(&p) else {
                continue;
            };
            for (n, line) in lines(&text) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if matches!(w.first(), Some(&"install") | Some(&"remove")) {
                    let cmd = w.get(2..).map(|r| r.join(" ")).unwrap_or_default();
                    let harmless = [
                        "/bin/true",
                        "/bin/false",
                        "/usr/bin/true",
                        "/usr/bin/false",
                        "true",
                        "false",
                    ]
                    .contains(&cmd.as_str());
                    if !harmless {
                        c.add_line(
                            Severity::High,
                            cat::KERNEL_MODULE,
                            &p,
                            n,
                            line,
                            "modprobe runs a command instead of (or with) loading a module".into(),
                        );
                    }
                }
            }
        }
    }
}

fn apt_hooks(c: &mut Collector<'_>) {
    for p in c.fs.files_in(b"/etc/apt/apt.conf.d") {
        let unowned = c.owners.unowned(&p);
        let Some(text) = c.fs.read_text(&p) else {
            continue;
        };
        for (n, line) in lines(&text) {
            if !line.contains("Invoke") && !line.contains("Pre-Install-Pkgs") {
                continue;
            }
            if let Some(why) = suspicious_command(line) {
                c.add_line(
                    Severity::High,
                    cat::PACKAGE,
                    &p,
                    n,
                    line,
                    format!("an apt hook {why}"),
                );
            } else if unowned {
                c.add_line(
                    Severity::High,
                    cat::PACKAGE,
                    &p,
                    n,
                    line,
                    "an apt hook (runs with every apt run) not owned by any package".into(),
                );
            }
        }
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
