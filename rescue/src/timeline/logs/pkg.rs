//! Package managers and the audit log: `dpkg.log` (`2024-01-02 03:04:05 install pkg:amd64 <none> 1.0`,
//! local time), apt's `history.log` (blocks from `Start-Date:` to `End-Date:`; one event per block),
//! dnf's logs (`2024-01-02T03:04:05+0000 INFO ...`, zone in the line) and `audit.log`
//! (`type=ADD_USER msg=audit(1700000000.123:456): ...`, epoch seconds).

use super::syslog::{Stamp, iso_time};
use super::{Context, LogError, for_each_line, num};

pub fn parse_dpkg(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        let Some((Stamp::Local(c), rest)) = iso_time(l) else {
            return ctx.unparsed(n, l, "not a dpkg.log line (YYYY-MM-DD HH:MM:SS ...)");
        };
        let rest = rest.trim_start();
        let action = rest.split(' ').next().unwrap_or("");
        let t = ctx.local(&c);
        let mut e = ctx
            .event(t, "Package Change", format!("dpkg {rest}"))
            .attr("action", action)
            .attr("local_time", ctx.zone.choice.name.as_str());
        if matches!(action, "install" | "remove" | "purge" | "upgrade") {
            e = e.attr("package", rest.split(' ').nth(1).unwrap_or(""));
        }
        ctx.emit(e)
    })?;
    Ok(())
}

pub fn parse_apt_history(ctx: &mut Context<'_>) -> Result<(), LogError> {
    struct Block {
        start: i64,
        line: u64,
        fields: Vec<(String, String)>,
    }
    let path = ctx.file.real.clone();
    let mut block: Option<Block> = None;
    let flush = |ctx: &mut Context<'_>, b: Block| -> Result<(), LogError> {
        let get = |k: &str| {
            b.fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let mut what = Vec::new();
        for k in [
            "Install",
            "Upgrade",
            "Remove",
            "Purge",
            "Downgrade",
            "Reinstall",
        ] {
            let v = get(k);
            if !v.is_empty() {
                let count = v.split("), ").count();
                what.push(format!("{} {count}", k.to_lowercase()));
            }
        }
        let cmd = get("Commandline");
        let msg = format!(
            "apt: {}{}{}",
            if cmd.is_empty() {
                "(no command line)"
            } else {
                cmd
            },
            if what.is_empty() { "" } else { " → " },
            what.join(", ")
        );
        let mut e = ctx
            .event(b.start, "Package Change", msg)
            .attr("line", b.line)
            .attr("local_time", ctx.zone.choice.name.as_str());
        for (k, v) in &b.fields {
            e = e.attr(&k.to_lowercase().replace('-', "_"), v.as_str());
        }
        ctx.emit(e)
    };
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        if l.trim().is_empty() {
            if let Some(b) = block.take() {
                flush(ctx, b)?;
            }
            return Ok(());
        }
        let Some((key, value)) = l.split_once(": ") else {
            return ctx.unparsed(n, l, "not a `Key: value` line of apt's history.log");
        };
        if key == "Start-Date" {
            if let Some(b) = block.take() {
                flush(ctx, b)?;
            }
            let v = value.trim().replace("  ", " ");
            return match iso_time(&v) {
                Some((Stamp::Local(c), _)) => {
                    block = Some(Block {
                        start: ctx.local(&c),
                        line: n,
                        fields: Vec::new(),
                    });
                    Ok(())
                }
                _ => ctx.unparsed(n, l, "Start-Date is not YYYY-MM-DD HH:MM:SS"),
            };
        }
        match &mut block {
            Some(b) if key != "End-Date" => {
                b.fields.push((key.to_owned(), value.to_owned()));
                Ok(())
            }
            Some(_) => Ok(()),
            None => ctx.unparsed(n, l, "apt history line outside a Start-Date block"),
        }
    })?;
    if let Some(b) = block.take() {
        flush(ctx, b)?;
    }
    Ok(())
}

pub fn parse_dnf(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        let (t, rest) = match iso_time(l) {
            Some((Stamp::Utc(t), rest)) => (t, rest),
            Some((Stamp::Local(c), rest)) => (ctx.local(&c), rest),
            _ => return ctx.unparsed(n, l, "not a dnf log line (ISO time first)"),
        };
        let rest = rest.trim_start();
        let e = ctx
            .event(t, "Entry Written", rest.to_owned())
            .attr("level", rest.split(' ').next().unwrap_or(""));
        ctx.emit(e)
    })?;
    Ok(())
}

/// audit record types a responder looks at first.
fn judge_audit(kind: &str, rest: &str) -> Option<&'static str> {
    match kind {
        "ADD_USER" => Some("user account created"),
        "ADD_GROUP" => Some("group created"),
        "USER_MGMT" | "GRP_MGMT" => Some("account management"),
        "USER_LOGIN" | "USER_AUTH"
            if rest.contains("acct=\"root\"") && rest.contains("res=success") =>
        {
            Some("root logged in")
        }
        k if k.starts_with("ANOM_") => Some("audit anomaly"),
        _ => None,
    }
}

pub fn parse_audit(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        let parsed = (|| {
            // Optional `node=host ` prefix.
            let s = match l.strip_prefix("node=") {
                Some(r) => r.split_once(' ')?.1,
                None => l,
            };
            let s = s.strip_prefix("type=")?;
            let (kind, rest) = s.split_once(' ')?;
            let rest = rest.strip_prefix("msg=audit(")?;
            let (stamp, rest) = rest.split_once("):")?;
            let (time, serial) = stamp.split_once(':')?;
            let (secs, frac) = time.split_once('.').unwrap_or((time, "0"));
            let secs: i64 = num(secs)?;
            if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let ms: i64 = num(&format!("{frac:0<3}")[..3])?;
            Some((
                kind,
                rest.trim_start(),
                secs.checked_mul(1_000_000)?.checked_add(ms * 1000)?,
                serial,
            ))
        })();
        let Some((kind, rest, t, serial)) = parsed else {
            return ctx.unparsed(
                n,
                l,
                "not an audit record (type=… msg=audit(SECONDS:SERIAL): …)",
            );
        };
        let mut e = ctx
            .event(t, "Entry Written", format!("{kind} {rest}"))
            .attr("audit_type", kind)
            .attr("audit_serial", serial);
        if let Some(why) = judge_audit(kind, rest) {
            e = e.flag(why);
        }
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
    fn dpkg_and_apt_history_read_local_time() {
        let zone = Zone::named("+01:00", std::path::Path::new("/none"), "--tz").unwrap();
        let (c, s) = run(
            LogKind::Dpkg,
            "/var/log/dpkg.log",
            b"2024-01-02 03:04:05 install nmap:amd64 <none> 7.93\n2024-01-02 03:04:06 status installed nmap:amd64 7.93\nbroken\n",
            0,
            &zone,
        );
        assert_eq!((s.events, s.unparsed), (2, 1));
        assert_eq!(iso8601(c.events[0].timestamp), "2024-01-02T02:04:05+00:00");
        assert_eq!(c.events[0].attributes["package"], "nmap:amd64");

        let hist = b"\nStart-Date: 2024-01-02  03:04:05\nCommandline: apt install nmap\nRequested-By: eve (1000)\nInstall: nmap:amd64 (7.93), libpcap0.8:amd64 (1.10, automatic)\nEnd-Date: 2024-01-02  03:04:09\n\nStart-Date: 2024-01-03  00:00:00\nUpgrade: bash:amd64 (5.2-1, 5.2-2)\nEnd-Date: 2024-01-03  00:00:01\n";
        let (c, s) = run(
            LogKind::AptHistory,
            "/var/log/apt/history.log",
            hist,
            0,
            &zone,
        );
        assert_eq!((s.events, s.unparsed), (2, 0));
        assert_eq!(c.events[0].message, "apt: apt install nmap → install 2");
        assert_eq!(c.events[0].attributes["requested_by"], "eve (1000)");
        assert_eq!(iso8601(c.events[1].timestamp), "2024-01-02T23:00:00+00:00");
    }

    #[test]
    fn dnf_and_audit_carry_their_own_zone() {
        let (c, s) = run(
            LogKind::Dnf,
            "/var/log/dnf.log",
            b"2024-01-02T03:04:05+0100 INFO Installed: nmap\nTraceback (most recent call last):\n2024-01-02T03:04:06Z DDEBUG x\n",
            0,
            &Zone::unknown("x"),
        );
        assert_eq!((s.events, s.unparsed), (2, 1));
        assert_eq!(iso8601(c.events[0].timestamp), "2024-01-02T02:04:05+00:00");
        assert!(!c.events[0].attributes.contains_key("time_zone"));

        let (c, s) = run(
            LogKind::Audit,
            "/var/log/audit/audit.log",
            b"type=ADD_USER msg=audit(1700000000.123:456): pid=1 uid=0 acct=\"backdoor\" res=success\nnode=h type=SYSCALL msg=audit(1700000001.5:457): arch=c000003e\nnonsense\n",
            0,
            &Zone::utc("t"),
        );
        assert_eq!((s.events, s.unparsed), (2, 1));
        assert_eq!(c.events[0].timestamp, 1_700_000_000_123_000);
        assert_eq!(
            c.events[0].suspicious.as_deref(),
            Some("user account created")
        );
        assert_eq!(c.events[1].timestamp, 1_700_000_001_500_000);
    }
}
