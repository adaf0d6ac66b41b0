//! Server-side scripts that run commands for whoever sends a request: the webshell a restore must not
//! put back under the web root.
//!
//! A candidate is a file a web server executes by its name: PHP, JSP, ASP(.NET) anywhere;
//! CGI, Perl, Python, Ruby and shell scripts only inside a web-served tree (`/var/www`, `/srv/www`,
//! `public_html`, `htdocs`, `cgi-bin`, …). Its content is searched case-insensitively with whitespace
//! squeezed (`eval (` is `eval(`) for a command-execution sink together with request input, or for the
//! obfuscated forms webshells use (`eval(base64_decode(`, `$_GET['f']($_GET['c'])`). Pure functions;
//! never prints.

/// How many bytes of a candidate are screened; a bigger one is held unscreened.
pub const SCREEN_LIMIT: usize = 4 << 20;

/// Extensions a web server executes wherever the file lies.
const SERVER_SIDE: &[&str] = &[
    "php", "php3", "php4", "php5", "php7", "php8", "phtml", "pht", "phar", "phps", "jsp", "jspx",
    "jspf", "asp", "aspx", "ashx", "asmx",
];
/// Extensions executed only in a web-served tree (CGI).
const CGI: &[&str] = &["cgi", "pl", "py", "rb", "sh", "inc", "fcgi"];
/// Path components that mark a web-served tree.
const WEB_DIRS: &[&str] = &[
    "www",
    "htdocs",
    "httpdocs",
    "public_html",
    "wwwroot",
    "webapps",
    "cgi-bin",
    "webroot",
    "html",
];
/// Path prefixes of web roots (in the examined root, without the leading `/`).
const WEB_ROOTS: &[&str] = &[
    "var/www/",
    "srv/www/",
    "srv/http/",
    "srv/web/",
    "usr/share/nginx/",
];

/// The language family a server-side script is screened as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Php,
    Jsp,
    Asp,
    /// CGI: Perl, Python, Ruby, shell (all screened, the extension does not say which).
    Cgi,
}

/// Whether `orig` (a path in the examined root, without the leading `/`) is a server-side script, and
/// so has its content screened.
pub fn is_candidate(orig: &str) -> bool {
    family(orig).is_some()
}

fn in_web_tree(orig: &str) -> bool {
    WEB_ROOTS.iter().any(|r| orig.starts_with(r))
        || orig.split('/').rev().skip(1).any(|c| WEB_DIRS.contains(&c))
}

fn family(orig: &str) -> Option<Family> {
    let name = orig.rsplit('/').next().unwrap_or(orig);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    if SERVER_SIDE.contains(&ext.as_str()) {
        return Some(if ext.starts_with("js") {
            Family::Jsp
        } else if ext.starts_with("as") {
            Family::Asp
        } else {
            Family::Php
        });
    }
    if (CGI.contains(&ext.as_str()) || orig.split('/').any(|c| c == "cgi-bin")) && in_web_tree(orig)
    {
        return Some(if ext == "inc" {
            Family::Php
        } else {
            Family::Cgi
        });
    }
    None
}

/// Lowercase, ASCII whitespace removed except one space between two word characters (so `eval (` is
/// `eval(` and `echo shell_exec` keeps its word boundary).
fn squash(content: &[u8]) -> Vec<u8> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::with_capacity(content.len());
    let mut gap = false;
    for &b in content {
        if b.is_ascii_whitespace() {
            gap = true;
            continue;
        }
        if gap && word(b) && out.last().is_some_and(|&l| word(l)) {
            out.push(b' ');
        }
        gap = false;
        out.push(b.to_ascii_lowercase());
    }
    out
}

fn find(hay: &[u8], needle: &str) -> Option<usize> {
    memchr::memmem::find(hay, needle.as_bytes())
}

/// `needle` (a function call such as `exec(`) as a whole word: not `curl_exec(`, `$pdo->exec(`.
fn call(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    let mut from = 0;
    while let Some(i) = find(&hay[from..], needle) {
        let at = from + i;
        let before = at.checked_sub(1).map(|j| hay[j]);
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b"_>:$.".contains(&b)) {
            return true;
        }
        from = at + n.len();
    }
    false
}

const PHP_INPUT: &[&str] = &[
    "$_get",
    "$_post",
    "$_request",
    "$_cookie",
    "$_files",
    "$_server['http_",
    "$_server[\"http_",
    "php://input",
    "getallheaders(",
    "apache_request_headers(",
    "$http_raw_post_data",
];
/// Sinks that count together with request input anywhere in the file (`assert` only when handed the
/// request directly: `assert($x > 0)` beside `$_FILES` is ordinary code).
const PHP_SINKS: &[&str] = &[
    "eval(",
    "system(",
    "exec(",
    "passthru(",
    "shell_exec(",
    "popen(",
    "proc_open(",
    "pcntl_exec(",
    "create_function(",
];
const PHP_DECODERS: &[&str] = &[
    "base64_decode(",
    "gzinflate(",
    "gzuncompress(",
    "gzdecode(",
    "str_rot13(",
    "hex2bin(",
    "urldecode(",
    "rawurldecode(",
    "convert_uudecode(",
];
const JSP_INPUT: &[&str] = &[
    "request.getparameter",
    "request.getinputstream",
    "request.getheader",
    "request.getreader",
];
const ASP_INPUT: &[&str] = &[
    "request(",
    "request.form",
    "request.querystring",
    "request.item",
    "request[",
    "request.params",
];
const ASP_SINKS: &[&str] = &[
    "wscript.shell",
    "process.start(",
    "processstartinfo",
    "shell.application",
    "eval(",
    "execute(",
];
const CGI_INPUT: &[&str] = &[
    "query_string",
    "cgi.fieldstorage",
    "param(",
    "request.args",
    "request.form",
    "cgi->new",
    "cgi.new",
    "$env{",
    "http_",
];
const CGI_SINKS: &[&str] = &[
    "system(",
    "exec(",
    "qx(",
    "qx{",
    "qx/",
    "eval(",
    "eval\"",
    "eval$",
    "os.system(",
    "os.popen(",
    "subprocess.",
    "pty.spawn(",
    "popen(",
    "`$",
    "io.popen",
    "%x(",
];

/// What in `content` runs commands for a request, if anything: `Some("PHP system() on request input")`.
pub fn command_execution(orig: &str, content: &[u8]) -> Option<String> {
    let fam = family(orig)?;
    let s = squash(content);
    let any = |list: &[&'static str]| list.iter().copied().find(|n| find(&s, n).is_some());
    let any_call = |list: &[&'static str]| list.iter().copied().find(|n| call(&s, n));
    let name = |n: &str| n.trim_end_matches('(').to_owned();
    match fam {
        Family::Php => {
            for sink in ["eval(", "assert("] {
                for dec in PHP_DECODERS {
                    if find(&s, &format!("{sink}{dec}")).is_some() {
                        return Some(format!(
                            "PHP {}() of {}() output (an obfuscated webshell)",
                            name(sink),
                            name(dec)
                        ));
                    }
                }
            }
            for sink in [
                "eval(",
                "assert(",
                "system(",
                "exec(",
                "passthru(",
                "shell_exec(",
            ] {
                for input in ["$_get", "$_post", "$_request", "$_cookie"] {
                    if call(&s, &format!("{sink}{input}")) {
                        return Some(format!("PHP {}() of {input}", name(sink)));
                    }
                }
            }
            if let Some(input) = request_var_called(&s) {
                return Some(format!("PHP calls a function named by {input}"));
            }
            if s.contains(&b'`')
                && PHP_INPUT
                    .iter()
                    .any(|i| find(&s, &format!("`{i}")).is_some())
            {
                return Some("PHP backtick shell command from request input".into());
            }
            let sink = any_call(PHP_SINKS)?;
            let input = any(PHP_INPUT)?;
            Some(format!("PHP {}() with request input ({input})", name(sink)))
        }
        Family::Jsp => {
            if find(&s, "runtime.getruntime().exec(").is_some() {
                return Some("JSP Runtime.getRuntime().exec()".into());
            }
            let sink = any(&["processbuilder(", "scriptengine", ".exec("])?;
            let input = any(JSP_INPUT)?;
            Some(format!("JSP {} with request input ({input})", name(sink)))
        }
        Family::Asp => {
            let sink = any(ASP_SINKS)?;
            if sink == "wscript.shell" || sink == "processstartinfo" {
                return Some(format!("ASP {sink}"));
            }
            let input = any(ASP_INPUT)?;
            Some(format!("ASP {} with request input ({input})", name(sink)))
        }
        Family::Cgi => {
            let sink = any_call(CGI_SINKS)?;
            let input = any(CGI_INPUT)?;
            Some(format!(
                "CGI script {} with request input ({input})",
                name(sink)
            ))
        }
    }
}

/// `$_GET['f'](…)`: a function whose name comes from the request.
fn request_var_called(s: &[u8]) -> Option<&'static str> {
    for input in ["$_get[", "$_post[", "$_request[", "$_cookie["] {
        let mut from = 0;
        while let Some(i) = find(&s[from..], input) {
            let start = from + i + input.len();
            if let Some(close) = s[start..].iter().position(|&b| b == b']')
                && s.get(start + close + 1) == Some(&b'(')
            {
                return Some(input.trim_end_matches('['));
            }
            from = start;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webshells_are_found() {
        for (path, body) in [
            (
                "var/www/html/up/x.php",
                &b"<?php @eval($_POST['c']); ?>"[..],
            ),
            (
                "var/www/html/s.php",
                b"<?php echo shell_exec ( $_GET[\"cmd\"] );",
            ),
            (
                "home/a/public_html/i.php",
                b"<?php eval(base64_decode('ZWNobyAx'));",
            ),
            ("srv/x.PHTML", b"<?php $_GET['f']($_GET['c']);"),
            ("var/www/a.php", b"<?php echo `$_GET[c]`;"),
            (
                "var/lib/tomcat9/webapps/ROOT/cmd.jsp",
                b"<% Runtime.getRuntime().exec(request.getParameter(\"c\")); %>",
            ),
            (
                "inetpub/wwwroot/c.aspx",
                b"<% var p = new ProcessStartInfo(\"cmd.exe\"); %>",
            ),
            (
                "usr/lib/cgi-bin/x.cgi",
                b"#!/usr/bin/perl\nuse CGI; my $q = CGI->new; system($q->param('c'));",
            ),
            (
                "var/www/cgi-bin/s.py",
                b"import cgi, os\nf = cgi.FieldStorage()\nos.system(f.getvalue('c'))",
            ),
        ] {
            assert!(is_candidate(path), "{path}");
            assert!(command_execution(path, body).is_some(), "{path}");
        }
    }

    #[test]
    fn ordinary_code_and_non_web_scripts_are_not_flagged() {
        for (path, body) in [
            // curl_exec and PDO::exec are not command execution.
            (
                "var/www/html/api.php",
                &b"<?php $c = curl_init($_GET['u']); curl_exec($c); $pdo->exec('SELECT 1');"[..],
            ),
            // A sink without request input.
            (
                "var/www/html/cron.php",
                b"<?php exec('php artisan schedule:run');",
            ),
            (
                "var/www/html/index.php",
                b"<?php echo htmlspecialchars($_GET['q']);",
            ),
        ] {
            assert_eq!(command_execution(path, body), None, "{path}");
        }
        // A Python script outside a web tree is not a server-side script.
        assert!(!is_candidate("usr/local/lib/tool.py"));
        assert!(!is_candidate("home/a/notes.txt"));
        assert!(is_candidate("home/a/public_html/cgi.py"));
        assert!(is_candidate("srv/app/shell.php"));
    }
}
