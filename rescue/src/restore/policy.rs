//! The screening policy of a restore: which files may come back from a backup onto a freshly installed
//! system. Pure functions over paths, modes and hashes, so every rule is unit-tested.
//!
//! - a file whose SHA-256 is on the blocklist (IOC hashes from the investigation) is refused;
//! - a file a triage finding names ([`findings`]) is refused (critical, high) or held (medium, low,
//!   info), the finding's id and why as the reason;
//! - setuid/setgid files and files with capabilities (`security.capability`) are refused, even with
//!   `--allow-executables`, unless that exact path is also listed with `--include PATH`; executables
//!   (any `x` bit, or ELF content) are refused unless `--allow-executables`;
//! - persistence points are held for review unless the path is listed explicitly with `--include PATH`:
//!   account databases (never restored wholesale; compared with the new system's, see [`accounts`]),
//!   `authorized_keys` and ssh login scripts, sshd configuration, sudoers, PAM configuration and
//!   modules, cron and at jobs, systemd units, init scripts, `ld.so.preload` and the dynamic linker's
//!   configuration, udev rules, kernel modules and their loading configuration, apt/dpkg configuration
//!   (hooks run commands), shell startup files (also `/etc/skel`), XDG autostart entries, polkit rules;
//! - server-side scripts that run commands for a request ([`scripts`]) are held;
//! - `../` and absolute paths (archive path traversal) are refused;
//! - `--exclude` beats `--include`; with any `--include`, only matching files are considered.
//!
//! "Held" means: not written to TARGET, listed for review in the restore manifest (`review`) and on the
//! console; the operator releases a held file by running the restore again with its exact path in
//! `--include`. Rules name system paths (`etc/sudoers`): a path is matched as it was on the original
//! system, `--source-root` (default `/`) joined with its path in the backup. Without `--source-root`, a
//! backup whose top level looks like `/etc` (`passwd`, `pam.d`, `sudoers.d`, …) is screened as `/etc`
//! too.

use std::collections::BTreeSet;

use super::accounts;
use super::findings::{Findings, Match};
use super::scripts;

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
    /// The directory of the original system SOURCE's root holds, without slashes at the ends ("" for
    /// `/`).
    pub source_root: String,
    /// Whether the operator named the source root (`--source-root`); if not, findings also match by
    /// tail and a backup of `/etc` is recognised by its top level.
    pub source_root_given: bool,
    /// Triage findings.
    pub findings: Findings,
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
    #[error("--source-root {0:?} is not an absolute directory (such as /etc or /home)")]
    SourceRoot(String),
}

fn strip_root(p: &str) -> &str {
    let p = p.strip_prefix("./").unwrap_or(p);
    p.trim_start_matches('/')
}

/// Top-level names of `/etc` that identify a backup of `/etc` itself.
const ETC_TOP: &[&str] = &[
    "passwd",
    "passwd-",
    "shadow",
    "shadow-",
    "group",
    "group-",
    "gshadow",
    "gshadow-",
    "subuid",
    "subuid-",
    "subgid",
    "subgid-",
    "sudoers",
    "sudoers.d",
    "sudo.conf",
    "pam.d",
    "pam.conf",
    "security",
    "ssh",
    "ld.so.conf",
    "ld.so.conf.d",
    "ld.so.preload",
    "udev",
    "modprobe.d",
    "modules-load.d",
    "modules",
    "apt",
    "dpkg",
    "profile",
    "profile.d",
    "bash.bashrc",
    "bashrc",
    "environment",
    "zsh",
    "skel",
    "xdg",
    "crontab",
    "anacrontab",
    "cron.d",
    "cron.daily",
    "cron.hourly",
    "cron.weekly",
    "cron.monthly",
    "systemd",
    "init.d",
    "rc.local",
    "rc.d",
    "rc0.d",
    "rc1.d",
    "rc2.d",
    "rc3.d",
    "rc4.d",
    "rc5.d",
    "rc6.d",
    "rcS.d",
    "polkit-1",
];

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
            ..Policy::default()
        })
    }

    /// `--source-root DIR`: the directory of the original system (and of the examined root the
    /// findings describe) that SOURCE's root holds. `None` keeps `/` with the guesses described above.
    pub fn with_source_root(mut self, root: Option<&str>) -> Result<Self, PolicyError> {
        if let Some(r) = root {
            if !r.starts_with('/') || r.split('/').any(|c| c == "..") {
                return Err(PolicyError::SourceRoot(r.to_owned()));
            }
            self.source_root = r
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect::<Vec<_>>()
                .join("/");
            self.source_root_given = true;
        }
        Ok(self)
    }

    /// The triage findings the restore screens against ([`super::findings::load_all`]).
    pub fn with_findings(mut self, f: Findings) -> Self {
        self.findings = f;
        self
    }

    /// The source root as the operator would write it (`/`, `/etc`).
    pub fn source_root_display(&self) -> String {
        format!("/{}", self.source_root)
    }

    /// Where `rel` lay on the original system (without the leading `/`), and for a backup that looks
    /// like `/etc` without a named root, where it lay if the backup is of `/etc`.
    pub fn origins(&self, rel: &str) -> Vec<String> {
        let mut out = vec![if self.source_root.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.source_root)
        }];
        let top = rel.split('/').next().unwrap_or(rel);
        if !self.source_root_given && ETC_TOP.contains(&top) {
            out.push(format!("etc/{rel}"));
        }
        out
    }

    /// The persistence point `rel` is, if any.
    pub fn kind(&self, rel: &str) -> Option<&'static str> {
        self.origins(rel).iter().find_map(|o| persistence_kind(o))
    }

    /// The account database `rel` is, if any.
    pub fn account_database(&self, rel: &str) -> Option<accounts::Database> {
        self.origins(rel).iter().find_map(|o| accounts::database(o))
    }

    /// Whether `rel` is a server-side script whose content is screened.
    pub fn is_script(&self, rel: &str) -> bool {
        self.origins(rel).iter().any(|o| scripts::is_candidate(o))
    }

    /// What in a server-side script runs commands for a request, if anything.
    pub fn script_verdict(&self, rel: &str, content: &[u8], complete: bool) -> Verdict {
        let Some(orig) = self
            .origins(rel)
            .into_iter()
            .find(|o| scripts::is_candidate(o))
        else {
            return Verdict::Allow;
        };
        if self.include_literal.contains(rel) {
            return Verdict::Allow;
        }
        if !complete {
            return Verdict::Hold(format!(
                "server-side script larger than {} MiB, not screened: held for review; restore it by listing it: --include /{rel}",
                scripts::SCREEN_LIMIT >> 20
            ));
        }
        match scripts::command_execution(&orig, content) {
            Some(what) => Verdict::Hold(format!(
                "server-side script that runs commands ({what}): held for review; restore it by listing it: --include /{rel}"
            )),
            None => Verdict::Allow,
        }
    }

    /// A link whose name makes a web server run it, while what it points to was not screened as a
    /// script (a symlink's target never is; a hard link's only under the name it was first restored
    /// with, `linked`): held, so a webshell cannot come back under an innocent name plus a link.
    pub fn link_verdict(&self, rel: &str, linked: Option<&str>) -> Verdict {
        if !self.is_script(rel)
            || self.include_literal.contains(rel)
            || linked.is_some_and(|l| self.is_script(l))
        {
            return Verdict::Allow;
        }
        Verdict::Hold(format!(
            "link named like a server-side script, to content not screened as one: held for review; restore it by listing it: --include /{rel}"
        ))
    }

    /// The ids of the findings naming `rel`.
    pub fn finding_ids(&self, rel: &str) -> Vec<String> {
        let (f, _) = self
            .findings
            .lookup(&self.source_root, rel, !self.source_root_given);
        let mut ids: Vec<String> = f.iter().map(|f| f.id.clone()).collect();
        ids.dedup();
        ids
    }

    /// The findings' verdict on `rel`: refuse (critical/high), hold (the rest, or any guessed match).
    fn finding_verdict(&self, rel: &str) -> Verdict {
        let (found, how) = self
            .findings
            .lookup(&self.source_root, rel, !self.source_root_given);
        let Some(first) = found.first() else {
            return Verdict::Allow;
        };
        let mut reason = first.describe();
        if found.len() > 1 {
            let more: Vec<&str> = found[1..].iter().map(|f| f.id.as_str()).collect();
            reason.push_str(&format!(" (also {})", more.join(", ")));
        }
        match how {
            Match::Exact if first.severity.refuses() => Verdict::Refuse(reason),
            Match::Exact => Verdict::Hold(format!(
                "{reason}: held for review; restore it by listing it: --include /{rel}"
            )),
            Match::Tail => Verdict::Hold(format!(
                "{reason}: it names {}, which this file may be (the backup's root is taken as /; --source-root DIR maps findings exactly); held for review",
                first.path.as_deref().unwrap_or("?")
            )),
        }
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
        self.check_entry(rel, mode, false)
    }

    /// [`Policy::check_meta`], also told whether the file carries capabilities (`security.capability`).
    pub fn check_entry(&self, rel: &str, mode: u32, capabilities: bool) -> Verdict {
        if let Some(why) = traversal(rel) {
            return Verdict::Refuse(why);
        }
        let sel = self.selected(rel);
        if sel != Verdict::Allow {
            return sel;
        }
        let listed = self.include_literal.contains(rel);
        let finding = self.finding_verdict(rel);
        if let Verdict::Refuse(_) = finding {
            return finding;
        }
        let privileged = [
            (mode & 0o4000 != 0, "setuid file"),
            (mode & 0o2000 != 0, "setgid file"),
            (capabilities, "file with capabilities (security.capability)"),
        ];
        if let Some((_, what)) = privileged.iter().find(|(on, _)| *on) {
            if !self.allow_executables {
                return Verdict::Refuse(format!(
                    "{what} (restore it with --allow-executables --include /{rel})"
                ));
            }
            if !listed {
                return Verdict::Refuse(format!(
                    "{what}: refused even with --allow-executables unless listed exactly: --include /{rel}"
                ));
            }
        }
        if !self.allow_executables && mode & 0o111 != 0 {
            return Verdict::Refuse(
                "executable (mode has an x bit; use --allow-executables)".into(),
            );
        }
        if listed {
            return Verdict::Allow;
        }
        if let Verdict::Hold(_) = finding {
            return finding;
        }
        if let Some(kind) = self.kind(rel) {
            let how = if self.account_database(rel).is_some() {
                "held, never restored wholesale (merge the accounts you need by hand)"
            } else {
                "held for review"
            };
            return Verdict::Hold(format!(
                "{kind}: {how}; restore it by listing it: --include /{rel}"
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

/// The kind of persistence point a path of the original system (without the leading `/`) is, if any.
pub fn persistence_kind(orig: &str) -> Option<&'static str> {
    let rel = strip_root(orig);
    let comps: Vec<&str> = rel.split('/').collect();
    let (name, dirs) = comps.split_last()?;
    let name = *name;
    let parent = dirs.last().copied().unwrap_or("");
    let under = |d: &str| dirs.contains(&d);
    let etc_rest = rel.strip_prefix("etc/");
    let etc = |p: &str| etc_rest == Some(p);
    let in_etc = |d: &str| {
        etc_rest
            .and_then(|r| r.strip_prefix(d))
            .is_some_and(|r| r.starts_with('/'))
    };
    if accounts::database(rel).is_some() {
        return Some("account database");
    }
    if name == "authorized_keys" || name == "authorized_keys2" {
        return Some("ssh authorized_keys");
    }
    if (parent == ".ssh" && (name == "rc" || name == "environment")) || etc("ssh/sshrc") {
        return Some("ssh login script");
    }
    if name == "sshd_config" || under("sshd_config.d") {
        return Some("sshd configuration");
    }
    if rel.starts_with("etc/cron")
        || rel.starts_with("var/spool/cron/")
        || rel == "etc/anacrontab"
        || rel.starts_with("var/spool/anacron/")
    {
        return Some("cron entry");
    }
    if rel.starts_with("var/spool/at/") {
        return Some("at job");
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
    if in_etc("init.d")
        || in_etc("rc.d")
        || (comps.len() == 3
            && comps[0] == "etc"
            && comps[1].starts_with("rc")
            && comps[1].ends_with(".d"))
    {
        return Some("init script");
    }
    if name == "ld.so.preload" {
        return Some("ld.so.preload");
    }
    if etc("ld.so.conf") || under("ld.so.conf.d") {
        return Some("dynamic linker configuration");
    }
    if name == "sudoers" || etc("sudo.conf") || under("sudoers.d") {
        return Some("sudoers");
    }
    if etc("pam.conf") || under("pam.d") || in_etc("security") {
        return Some("PAM configuration");
    }
    if (name.starts_with("pam_") && name.contains(".so"))
        || (parent == "security" && name.ends_with(".so"))
    {
        return Some("PAM module");
    }
    if under("udev") && (name.ends_with(".rules") || under("rules.d")) {
        return Some("udev rule");
    }
    if etc("modules") || etc("modprobe.conf") || under("modules-load.d") || under("modprobe.d") {
        return Some("kernel module loading configuration");
    }
    if [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        return Some("kernel module");
    }
    if etc("apt/apt.conf") || under("apt.conf.d") || etc("dpkg/dpkg.cfg") || under("dpkg.cfg.d") {
        return Some("apt/dpkg configuration (can run commands as hooks)");
    }
    if parent == "autostart" && dirs.len() >= 2 && matches!(dirs[dirs.len() - 2], "xdg" | ".config")
    {
        return Some("XDG autostart entry");
    }
    if under("polkit-1") && under("rules.d") {
        return Some("polkit rule");
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
        "etc/bashrc",
        "etc/environment",
        "etc/rc.local",
        "etc/csh.cshrc",
        "etc/csh.login",
    ];
    if rc_names.contains(&name)
        || rc_paths.contains(&rel)
        || in_etc("profile.d")
        || in_etc("zsh")
        || in_etc("skel")
    {
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
        // --allow-executables alone does not bring back setuid, setgid or capabilities: the exact
        // path must be listed too.
        let p = policy(&[], &[], true);
        for (mode, caps, what) in [
            (0o104755, false, "setuid"),
            (0o102755, false, "setgid"),
            (0o100755, true, "capabilities"),
        ] {
            assert!(
                matches!(p.check_entry("usr/bin/x", mode, caps), Verdict::Refuse(r) if r.contains(what) && r.contains("--include /usr/bin/x")),
                "{what}"
            );
        }
        assert_eq!(p.check_meta("usr/bin/y", 0o100755), Verdict::Allow);
        let p = policy(&["/usr/bin/x"], &[], true);
        assert_eq!(p.check_meta("usr/bin/x", 0o104755), Verdict::Allow);
        assert_eq!(p.check_entry("usr/bin/x", 0o100755, true), Verdict::Allow);
        let p = policy(&["/usr/bin/x"], &[], false);
        assert!(
            matches!(p.check_meta("usr/bin/x", 0o104755), Verdict::Refuse(r) if r.contains("--allow-executables"))
        );
        let p = policy(&[], &[], true);
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
        ]
        .into_iter()
        .chain([
            "etc/passwd",
            "etc/shadow-",
            "etc/gshadow",
            "etc/subuid",
            "etc/sudoers",
            "etc/sudoers.d/90-x",
            "etc/pam.d/sshd",
            "etc/security/pam_env.conf",
            "lib/x86_64-linux-gnu/security/pam_backdoor.so",
            "etc/ssh/sshd_config",
            "etc/ssh/sshd_config.d/10-x.conf",
            "root/.ssh/rc",
            "etc/ld.so.conf",
            "etc/ld.so.conf.d/x.conf",
            "etc/udev/rules.d/99-x.rules",
            "usr/lib/udev/rules.d/99-y.rules",
            "etc/modules-load.d/x.conf",
            "etc/modprobe.d/x.conf",
            "lib/modules/6.1.0/extra/rootkit.ko.xz",
            "etc/apt/apt.conf.d/99hook",
            "etc/dpkg/dpkg.cfg.d/hook",
            "etc/xdg/autostart/x.desktop",
            "home/a/.config/autostart/y.desktop",
            "etc/skel/.bashrc",
            "etc/init.d/backdoor",
            "var/spool/at/a0001",
            "etc/polkit-1/rules.d/00-x.rules",
        ]) {
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
        for path in [
            "srv/passwd",
            "etc/hostname",
            "etc/xdg/user-dirs.conf",
            "home/a/doc/security/report.txt",
        ] {
            assert_eq!(
                policy(&[], &[], false).check_meta(path, 0o100644),
                Verdict::Allow,
                "{path}"
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
    fn the_source_root_maps_a_backup_of_etc_and_a_backup_that_looks_like_etc_is_screened_as_one() {
        // A tar of /etc, mapped by the operator.
        let p = policy(&[], &[], false)
            .with_source_root(Some("/etc/"))
            .unwrap();
        assert!(
            matches!(p.check_meta("sudoers.d/x", 0o100644), Verdict::Hold(r) if r.contains("sudoers"))
        );
        assert!(p.account_database("passwd").is_some());
        // Mapped elsewhere: /srv/passwd is data.
        let p = policy(&[], &[], false)
            .with_source_root(Some("/srv"))
            .unwrap();
        assert_eq!(p.check_meta("passwd", 0o100644), Verdict::Allow);
        // Not mapped: the top level looks like /etc.
        let p = policy(&[], &[], false);
        assert!(matches!(
            p.check_meta("pam.d/sshd", 0o100644),
            Verdict::Hold(_)
        ));
        assert!(
            matches!(p.check_meta("rc2.d/S01x", 0o100644), Verdict::Hold(r) if r.contains("init script"))
        );
        assert!(
            matches!(p.check_meta("passwd", 0o100644), Verdict::Hold(r) if r.contains("never restored wholesale"))
        );
        assert_eq!(p.check_meta("data/pam.d.txt", 0o100644), Verdict::Allow);
        assert!(
            policy(&[], &[], false)
                .with_source_root(Some("etc"))
                .is_err()
        );
        assert!(
            policy(&[], &[], false)
                .with_source_root(Some("/a/../b"))
                .is_err()
        );
    }

    #[test]
    fn findings_refuse_or_hold_by_severity() {
        let json = r#"{"schema":"rescue.triage/1","findings":[
            {"id":"C1","severity":"critical","category":"web","path":"/var/www/html/s.php","why":"webshell"},
            {"id":"M1","severity":"medium","category":"cron","path":"/srv/app/run.txt","why":"changed in the window"}]}"#;
        let mut f = Findings::default();
        f.add(std::path::Path::new("f.json"), json.as_bytes())
            .unwrap();
        let p = policy(&[], &[], false).with_findings(f.clone());
        assert!(
            matches!(p.check_meta("var/www/html/s.php", 0o100644), Verdict::Refuse(r) if r.starts_with("finding C1 (critical, web): webshell"))
        );
        assert!(
            matches!(p.check_meta("srv/app/run.txt", 0o100644), Verdict::Hold(r) if r.contains("finding M1"))
        );
        assert_eq!(p.finding_ids("srv/app/run.txt"), ["M1"]);
        // --include releases a held finding, never a refused one.
        let p = policy(&["/srv/app/run.txt", "/var/www/html/s.php"], &[], false).with_findings(f);
        assert_eq!(p.check_meta("srv/app/run.txt", 0o100644), Verdict::Allow);
        assert!(matches!(
            p.check_meta("var/www/html/s.php", 0o100644),
            Verdict::Refuse(_)
        ));
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
