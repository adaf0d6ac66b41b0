//! The screening policy of a restore: which files may come back from a backup onto a freshly installed
//! system. Pure functions over paths, modes and hashes, so every rule is unit-tested.
//!
//! - a file whose SHA-256 is on the blocklist (IOC hashes from the investigation) is refused;
//! - setuid/setgid files and executables (any `x` bit, or ELF content) are refused unless
//!   `--allow-executables`;
//! - persistence points — `authorized_keys`, cron entries, systemd units, `ld.so.preload`, shell rc
//!   files — are held for review unless the path is listed explicitly with `--include PATH`;
//! - `../` and absolute paths (archive path traversal) are refused;
//! - `--exclude` beats `--include`; with any `--include`, only matching files are considered.

use std::collections::BTreeSet;

/// Why a file is not restored (or needs review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Restore it.
    Allow,
    /// Not selected by `--include`/`--exclude`.
    Excluded(String),
    /// Refused, with the reason.
    Refuse(String),
    /// A persistence point, not listed explicitly: held back and shown for review.
    Hold(String),
}

/// The operator's choices.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub include: Vec<glob::Pattern>,
    /// The `--include` arguments as typed, for explicit listing of persistence points.
    pub include_literal: BTreeSet<String>,
    pub exclude: Vec<glob::Pattern>,
    pub blocklist: BTreeSet<String>,
    pub allow_executables: bool,
}

/// Errors building a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("bad glob {pattern:?}")]
    Glob {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
}

fn strip_root(p: &str) -> &str {
    let p = p.strip_prefix("./").unwrap_or(p);
    p.trim_start_matches('/')
}

impl Policy {
    pub fn new(
        include: &[String],
        exclude: &[String],
        blocklist: BTreeSet<String>,
        allow_executables: bool,
    ) -> Result<Self, PolicyError> {
        let compile = |v: &[String]| -> Result<Vec<glob::Pattern>, PolicyError> {
            v.iter()
                .map(|p| {
                    glob::Pattern::new(strip_root(p)).map_err(|source| PolicyError::Glob {
                        pattern: p.clone(),
                        source,
                    })
                })
                .collect()
        };
        Ok(Policy {
            include: compile(include)?,
            include_literal: include.iter().map(|p| strip_root(p).to_owned()).collect(),
            exclude: compile(exclude)?,
            blocklist,
            allow_executables,
        })
    }

    /// Selection by `--include`/`--exclude` (a path relative to the source root, without leading `/`).
    pub fn selected(&self, rel: &str) -> Verdict {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        if let Some(p) = self.exclude.iter().find(|p| p.matches_with(rel, opts)) {
            return Verdict::Excluded(format!("matches --exclude {}", p.as_str()));
        }
        if !self.include.is_empty() && !self.include.iter().any(|p| p.matches_with(rel, opts)) {
            return Verdict::Excluded("matches no --include".into());
        }
        Verdict::Allow
    }

    /// Rules that need only the path and mode (checked before any byte is copied).
    pub fn check_meta(&self, rel: &str, mode: u32) -> Verdict {
        if let Some(why) = traversal(rel) {
            return Verdict::Refuse(why);
        }
        let sel = self.selected(rel);
        if sel != Verdict::Allow {
            return sel;
        }
        if !self.allow_executables {
            if mode & 0o4000 != 0 {
                return Verdict::Refuse(
                    "setuid file (use --allow-executables to restore it)".into(),
                );
            }
            if mode & 0o2000 != 0 {
                return Verdict::Refuse(
                    "setgid file (use --allow-executables to restore it)".into(),
                );
            }
            if mode & 0o111 != 0 {
                return Verdict::Refuse(
                    "executable (mode has an x bit; use --allow-executables)".into(),
                );
            }
        }
        if let Some(kind) = persistence_kind(rel)
            && !self.include_literal.contains(rel)
        {
            return Verdict::Hold(format!(
                "{kind}: held for review; restore it by listing it: --include /{rel}"
            ));
        }
        Verdict::Allow
    }

    /// Rules that need the content: blocklisted hash, ELF magic.
    pub fn check_content(&self, sha256: &str, head: &[u8]) -> Verdict {
        if self.blocklist.contains(sha256) {
            return Verdict::Refuse(format!("sha256 {sha256} is on the blocklist"));
        }
        if !self.allow_executables && head.starts_with(b"\x7fELF") {
            return Verdict::Refuse(
                "executable (ELF binary without an x bit; use --allow-executables)".into(),
            );
        }
        Verdict::Allow
    }
}

/// `Some(reason)` when an archive path is absolute or climbs out with `..`.
pub fn traversal(raw: &str) -> Option<String> {
    if raw.starts_with('/') {
        return Some(format!(
            "absolute path {raw:?} in the archive (path traversal)"
        ));
    }
    if raw.split('/').any(|c| c == "..") {
        return Some(format!("{raw:?} climbs out with '..' (path traversal)"));
    }
    None
}

/// The kind of persistence point a path is, if any.
pub fn persistence_kind(rel: &str) -> Option<&'static str> {
    let rel = strip_root(rel);
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if name == "authorized_keys" || name == "authorized_keys2" {
        return Some("ssh authorized_keys");
    }
    if rel.starts_with("etc/cron")
        || rel.starts_with("var/spool/cron/")
        || rel == "etc/anacrontab"
        || rel.starts_with("var/spool/anacron/")
    {
        return Some("cron entry");
    }
    let unit_ext = [
        ".service",
        ".timer",
        ".socket",
        ".path",
        ".mount",
        ".automount",
    ];
    if rel.starts_with("etc/systemd/")
        || rel.starts_with("lib/systemd/system")
        || rel.starts_with("usr/lib/systemd/system")
        || rel.contains(".config/systemd/")
        || unit_ext.iter().any(|e| name.ends_with(e))
    {
        return Some("systemd unit");
    }
    if name == "ld.so.preload" {
        return Some("ld.so.preload");
    }
    let rc_names = [
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".zlogin",
        ".cshrc",
        ".tcshrc",
        ".kshrc",
    ];
    let rc_paths = [
        "etc/profile",
        "etc/bash.bashrc",
        "etc/environment",
        "etc/rc.local",
        "etc/zsh/zshrc",
        "etc/zsh/zprofile",
        "etc/zsh/zshenv",
    ];
    if rc_names.contains(&name) || rc_paths.contains(&rel) || rel.starts_with("etc/profile.d/") {
        return Some("shell startup file");
    }
    None
}

/// Parses a blocklist: the first 64-hex-digit word of every line (so plain hash lists and
/// `sha256sum` output both work).
pub fn parse_blocklist(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(include: &[&str], exclude: &[&str], allow: bool) -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let block = parse_blocklist(&format!("{}  evil.bin\n# c\nnothex\n", "ab".repeat(32)));
        Policy::new(&s(include), &s(exclude), block, allow).unwrap()
    }

    #[test]
    fn setuid_setgid_and_executables_need_allow_executables() {
        let p = policy(&[], &[], false);
        assert!(
            matches!(p.check_meta("usr/bin/x", 0o104755), Verdict::Refuse(r) if r.contains("setuid"))
        );
        assert!(
            matches!(p.check_meta("usr/bin/x", 0o102755), Verdict::Refuse(r) if r.contains("setgid"))
        );
        assert!(
            matches!(p.check_meta("srv/run.sh", 0o100744), Verdict::Refuse(r) if r.contains("executable"))
        );
        assert_eq!(p.check_meta("srv/data.csv", 0o100644), Verdict::Allow);
        assert!(matches!(
            p.check_content(&"00".repeat(32), b"\x7fELF\x02"),
            Verdict::Refuse(_)
        ));
        let p = policy(&[], &[], true);
        assert_eq!(p.check_meta("usr/bin/x", 0o104755), Verdict::Allow);
        assert_eq!(
            p.check_content(&"00".repeat(32), b"\x7fELF\x02"),
            Verdict::Allow
        );
    }

    #[test]
    fn blocklisted_hashes_are_refused() {
        let p = policy(&[], &[], true);
        assert!(
            matches!(p.check_content(&"ab".repeat(32), b"x"), Verdict::Refuse(r) if r.contains("blocklist"))
        );
        assert_eq!(p.check_content(&"cd".repeat(32), b"x"), Verdict::Allow);
        assert_eq!(p.blocklist.len(), 1);
    }

    #[test]
    fn persistence_points_are_held_unless_listed_explicitly() {
        for path in [
            "root/.ssh/authorized_keys",
            "etc/cron.d/backdoor",
            "var/spool/cron/crontabs/root",
            "etc/systemd/system/evil.service",
            "home/a/.config/systemd/user/x.timer",
            "etc/ld.so.preload",
            "home/a/.bashrc",
            "etc/profile.d/zz.sh",
        ] {
            let p = policy(&[], &[], false);
            assert!(
                matches!(p.check_meta(path, 0o100644), Verdict::Hold(_)),
                "{path}"
            );
            let p = policy(&[&format!("/{path}")], &[], false);
            assert_eq!(
                p.check_meta(path, 0o100644),
                Verdict::Allow,
                "{path} listed"
            );
        }
        // A wildcard is not an explicit listing.
        let p = policy(&["root/**"], &[], false);
        assert!(matches!(
            p.check_meta("root/.ssh/authorized_keys", 0o100600),
            Verdict::Hold(_)
        ));
        assert_eq!(persistence_kind("srv/www/index.html"), None);
    }

    #[test]
    fn include_and_exclude_select_and_exclude_wins() {
        let p = policy(&["srv/**"], &["srv/tmp/*"], false);
        assert_eq!(p.check_meta("srv/a/b.txt", 0o100644), Verdict::Allow);
        assert!(matches!(
            p.check_meta("srv/tmp/x", 0o100644),
            Verdict::Excluded(_)
        ));
        assert!(matches!(
            p.check_meta("home/x", 0o100644),
            Verdict::Excluded(_)
        ));
    }

    #[test]
    fn traversal_is_refused() {
        assert!(traversal("../etc/passwd").is_some());
        assert!(traversal("a/../../b").is_some());
        assert!(traversal("/etc/shadow").is_some());
        assert!(traversal("a/..b/c").is_none());
        let p = policy(&[], &[], true);
        assert!(
            matches!(p.check_meta("x/../../y", 0o100644), Verdict::Refuse(r) if r.contains("traversal"))
        );
    }
}
