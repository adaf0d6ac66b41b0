//! nginx and apache logs. Access logs in the common/combined format (`[10/Oct/2000:13:55:36 -0700]`,
//! the offset is in the line); error logs in nginx's `2024/01/02 03:04:05 [error] ...` and apache's
//! `[Wed Oct 11 14:32:52.123456 2000] [core:error] ...` forms, both local time without a zone.

use super::{Context, LogError, for_each_line, num};
use crate::timeline::event::{Civil, month_number};

/// Request patterns that probe or exploit: path traversal, file disclosure, injection, webshell hints.
fn judge_request(req: &str) -> Option<&'static str> {
    let r = req.to_ascii_lowercase();
    if r.contains("../") || r.contains("%2e%2e") || r.contains("..%2f") {
        return Some("path traversal in a request");
    }
    if r.contains("/etc/passwd") || r.contains("/proc/self/environ") {
        return Some("file disclosure attempt");
    }
    if r.contains("union select") || r.contains("union%20select") || r.contains("${jndi:") {
        return Some("injection attempt");
    }
    if r.contains("cmd=")
        || r.contains("exec=")
        || r.contains("/shell.php")
        || r.contains("c99.php")
        || r.contains("r57.php")
    {
        return Some("webshell-like request");
    }
    None
}

/// `10/Oct/2000:13:55:36 -0700` → UTC microseconds.
fn clf_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 26
        || !b[..26].is_ascii()
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let c = Civil {
        year: num(&s[7..11])?,
        month: month_number(&b[3..6])?,
        day: num(&s[0..2])?,
        hour: num(&s[12..14])?,
        minute: num(&s[15..17])?,
        second: num(&s[18..20])?,
        micros: 0,
    };
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off = sign * (num::<i64>(&s[22..24])? * 3600 + num::<i64>(&s[24..26])? * 60);
    c.valid().then(|| (c.as_utc_seconds() - off) * 1_000_000)
}

/// Splits `"quoted" rest` → (quoted, rest), honouring `\"`.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let r = s.strip_prefix('"')?;
    let mut esc = false;
    for (i, c) in r.char_indices() {
        match c {
            '\\' if !esc => esc = true,
            '"' if !esc => return Some((&r[..i], r[i + 1..].trim_start())),
            _ => esc = false,
        }
    }
    None
}

pub fn parse_access(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        let parsed = (|| {
            let (client, rest) = l.split_once(' ')?;
            let (_ident, rest) = rest.split_once(' ')?;
            let (user, rest) = rest.split_once(' ')?;
            let rest = rest.strip_prefix('[')?;
            let (time, rest) = rest.split_once(']')?;
            let t = clf_time(time)?;
            let (request, rest) = quoted(rest.trim_start())?;
            let mut it = rest.split(' ');
            let status = it.next()?;
            let size = it.next().unwrap_or("-");
            let after = rest.splitn(3, ' ').nth(2).unwrap_or("");
            let (referer, after) = quoted(after).unwrap_or(("", after));
            let (agent, _) = quoted(after).unwrap_or(("", ""));
            Some((client, user, t, request, status, size, referer, agent))
        })();
        let Some((client, user, t, request, status, size, referer, agent)) = parsed else {
            return ctx.unparsed(n, l, "not a common/combined access log line");
        };
        let mut e = ctx
            .event(
                t,
                "Request Received",
                format!("{client} \"{request}\" {status} {size}"),
            )
            .attr("client", client)
            .attr("user", if user == "-" { "" } else { user })
            .attr("status", status)
            .attr("referer", if referer == "-" { "" } else { referer })
            .attr("user_agent", agent);
        if let Some(why) = judge_request(request) {
            e = e.flag(why);
        }
        ctx.emit(e)
    })?;
    Ok(())
}

/// nginx `2024/01/02 03:04:05 [error] 12#12: msg` → local time and the rest.
fn nginx_error(s: &str) -> Option<(Civil, &str)> {
    let b = s.as_bytes();
    if b.len() < 20
        || !b[..20].is_ascii()
        || b[4] != b'/'
        || b[7] != b'/'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let c = Civil {
        year: num(&s[0..4])?,
        month: num(&s[5..7])?,
        day: num(&s[8..10])?,
        hour: num(&s[11..13])?,
        minute: num(&s[14..16])?,
        second: num(&s[17..19])?,
        micros: 0,
    };
    c.valid().then(|| (c, s[19..].trim_start()))
}

/// apache `[Wed Oct 11 14:32:52.123456 2000] rest` → local time and the rest.
fn apache_error(s: &str) -> Option<(Civil, &str)> {
    let r = s.strip_prefix('[')?;
    let (inside, rest) = r.split_once(']')?;
    let parts: Vec<&str> = inside.split_whitespace().collect();
    if parts.len() != 5 {
        return None;
    }
    let month = month_number(parts[1].as_bytes())?;
    let (hms, frac) = parts[3].split_once('.').unwrap_or((parts[3], ""));
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|c| c.is_ascii_digit()) {
        num::<u32>(&format!("{frac:0<6}")[..6])?
    } else {
        return None;
    };
    let c = Civil {
        year: num(parts[4])?,
        month,
        day: num(parts[2])?,
        hour: num(t[0])?,
        minute: num(t[1])?,
        second: num(t[2])?,
        micros,
    };
    c.valid().then(|| (c, rest.trim_start()))
}

pub fn parse_error(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        let Some((c, rest)) = nginx_error(l).or_else(|| apache_error(l)) else {
            return ctx.unparsed(n, l, "not an nginx or apache error log line");
        };
        let t = ctx.local(&c);
        let e = ctx
            .event(t, "Entry Written", rest.to_owned())
            .attr("local_time", ctx.zone.choice.name.as_str());
        ctx.emit(e)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::timeline::event::iso8601;
    use crate::timeline::logs::LogKind;
    use crate::timeline::logs::testutil::run;
    use crate::timeline::tz::Zone;

    #[test]
    fn access_lines_carry_their_offset() {
        let log = br#"203.0.113.7 - - [10/Oct/2023:13:55:36 -0700] "GET /index.php?page=../../etc/passwd HTTP/1.1" 200 2326 "-" "curl/8.0"
::1 - bob [10/Oct/2023:20:55:37 +0000] "POST /login HTTP/1.1" 302 0 "https://x/" "Mozilla/5.0 (X11; \"quoted\")"
not an access line
"#;
        let (c, s) = run(
            LogKind::WebAccess,
            "/var/log/nginx/access.log",
            log,
            0,
            &Zone::utc("t"),
        );
        assert_eq!((s.events, s.unparsed), (2, 1));
        assert_eq!(iso8601(c.events[0].timestamp), "2023-10-10T20:55:36+00:00");
        assert_eq!(
            c.events[0].suspicious.as_deref(),
            Some("path traversal in a request")
        );
        assert_eq!(c.events[1].attributes["user"], "bob");
        assert_eq!(c.events[1].attributes["status"], "302");
        assert!(
            c.events[1].attributes["user_agent"]
                .as_str()
                .unwrap()
                .contains("quoted")
        );
    }

    #[test]
    fn error_lines_of_both_servers_use_the_zone() {
        let log = b"2023/10/10 13:55:36 [error] 12#12: *1 open() failed\n\
                    [Wed Oct 11 14:32:52.123456 2023] [core:error] [pid 35708] AH00037: x\n\
                    [Wed Oct 11 14:32:53 2023] [error] [client 1.2.3.4] File does not exist\n\
                    \tcontinuation\n";
        let zone = Zone::named("+02:00", std::path::Path::new("/none"), "--tz").unwrap();
        let (c, s) = run(
            LogKind::WebError,
            "/var/log/apache2/error.log",
            log,
            0,
            &zone,
        );
        assert_eq!((s.events, s.unparsed), (3, 1));
        assert_eq!(iso8601(c.events[0].timestamp), "2023-10-10T11:55:36+00:00");
        assert_eq!(
            iso8601(c.events[1].timestamp),
            "2023-10-11T12:32:52.123456+00:00"
        );
        assert!(c.events[2].message.contains("File does not exist"));
    }
}
