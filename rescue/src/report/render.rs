//! The report as a person reads it: one outline of sections, paragraphs, lists and tables built from
//! [`Report`], written out as Markdown or as a self-contained HTML page (inline CSS for print, no
//! scripts, nothing fetched). Never prints.

use serde_json::Value;

use super::{LIST_CAP, Report, SEVERITIES, severity_rank};

enum Block {
    Para(String),
    List(Vec<String>),
    Table(Vec<&'static str>, Vec<Vec<String>>),
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn when(system: &str, truth: &Option<String>) -> String {
    match truth {
        Some(t) if t != system => format!("{t} (machine clock {system})"),
        _ => system.to_owned(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn capped(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().take(LIST_CAP).cloned().collect();
    if items.len() > LIST_CAP {
        out.push(format!(
            "... and {} more (all of them in report.json)",
            items.len() - LIST_CAP
        ));
    }
    out
}

/// A table of the first [`LIST_CAP`] of `items`, each made a row by `row`, then a line saying how
/// many `more` there are (all of them in report.json); nothing for no items.
fn capped_table<T>(
    blocks: &mut Vec<Block>,
    header: Vec<&'static str>,
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
    more: &str,
) {
    if items.is_empty() {
        return;
    }
    blocks.push(Block::Table(
        header,
        items.iter().take(LIST_CAP).map(row).collect(),
    ));
    if items.len() > LIST_CAP {
        blocks.push(Block::Para(format!(
            "... and {} {more} (all of them in report.json).",
            items.len() - LIST_CAP
        )));
    }
}

fn outline(r: &Report) -> (String, Vec<Section>) {
    let title = format!(
        "Incident report: case {}",
        r.case.case_id.as_deref().unwrap_or("(no case id)")
    );
    let mut s = Vec::new();
    let c = &r.case;
    s.push(Section {
        title: "Case".into(),
        blocks: vec![Block::Table(
            vec!["", ""],
            vec![
                vec!["case".into(), opt(&c.case_id)],
                vec!["examiner".into(), opt(&c.examiner)],
                vec!["notes".into(), opt(&c.notes)],
                vec!["opened".into(), opt(&c.opened_utc)],
                vec![
                    "clock offset".into(),
                    c.clock_offset_seconds.map_or_else(
                        || "none recorded: times are this machine's clock".into(),
                        |o| {
                            format!("{o:+} s (true time minus this machine's clock; applied below)")
                        },
                    ),
                ],
                vec!["case directory".into(), c.case_dir.clone()],
                vec![
                    "report made".into(),
                    format!(
                        "{} by rescue {}",
                        when(&r.generated.system_clock, &r.generated.true_time),
                        r.generated.version
                    ),
                ],
            ],
        )],
    });
    s.push(Section {
        title: "Host".into(),
        blocks: vec![match &r.host {
            Some(Value::Object(m)) => Block::Table(
                vec!["", ""],
                std::iter::once(vec!["from".to_owned(), opt(&r.host_source)])
                    .chain(m.iter().map(|(k, v)| vec![k.clone(), value_text(v)]))
                    .collect(),
            ),
            _ => Block::Para(
                "No host identity was recorded (no inventory.json and no acquisition manifest)."
                    .into(),
            ),
        }],
    });
    let mut scope = Vec::new();
    match &r.scope.disks {
        Some(d) => scope.push(Block::Table(
            vec!["disk", "size (bytes)", "model", "serial", "transport"],
            d.iter()
                .map(|x| {
                    ["name", "size_bytes", "model", "serial", "transport"]
                        .iter()
                        .map(|k| value_text(x.get(*k).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect(),
        )),
        None => scope.push(Block::Para(
            "No inventory of the machine's disks was taken.".into(),
        )),
    }
    if r.scope.acquisitions.is_empty() {
        scope.push(Block::Para("No acquisition was made in this case.".into()));
    } else {
        scope.push(Block::Table(
            vec![
                "acquisition",
                "source",
                "serial",
                "bytes",
                "state",
                "hashes of the acquired stream",
            ],
            r.scope
                .acquisitions
                .iter()
                .map(|a| {
                    vec![
                        a.dir.clone(),
                        format!("{} {}", a.source, a.model.as_deref().unwrap_or(""))
                            .trim()
                            .into(),
                        opt(&a.serial),
                        a.size_bytes.to_string(),
                        format!(
                            "{}, {}{}",
                            if a.complete { "complete" } else { "INCOMPLETE" },
                            a.verification,
                            if a.unreadable_extents > 0 {
                                format!(", {} unreadable extents", a.unreadable_extents)
                            } else {
                                String::new()
                            }
                        ),
                        a.hashes
                            .iter()
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ]
                })
                .collect(),
        ));
    }
    if r.scope.memory.is_empty() {
        scope.push(Block::Para(
            "No memory capture was made in this case.".into(),
        ));
    } else {
        scope.push(Block::List(
            r.scope
                .memory
                .iter()
                .map(|m| {
                    format!(
                        "memory capture {} ({} bytes, sha256 {})",
                        m.path, m.size_bytes, m.sha256
                    )
                })
                .collect(),
        ));
    }
    s.push(Section {
        title: "Scope".into(),
        blocks: scope,
    });
    let timeline = match &r.timeline {
        None => vec![Block::Para(
            "No timeline was built (no timeline.jsonl in the case directory).".into(),
        )],
        Some(t) => {
            let ev = |e: &Option<super::Event>| {
                e.as_ref().map_or_else(
                    || "-".into(),
                    |e| {
                        let why = e
                            .suspicious
                            .as_ref()
                            .map(|w| format!("; flagged: {w}"))
                            .unwrap_or_default();
                        format!(
                            "{} {} ({}; {}{why})",
                            e.datetime, e.message, e.source, e.path
                        )
                    },
                )
            };
            let mut blocks = vec![Block::Table(
                vec!["", ""],
                vec![
                    vec!["timelines".into(), t.files.join(", ")],
                    vec![
                        "events".into(),
                        format!("{} ({} lines not understood)", t.events, t.unparsed_lines),
                    ],
                    vec!["first event".into(), ev(&t.first_event)],
                    vec!["last event".into(), ev(&t.last_event)],
                    vec![
                        "attacker activity".into(),
                        format!(
                            "{} events flagged suspicious by the timeline, on paths the findings \
                             name, or from triage",
                            t.attacker_events
                        ),
                    ],
                    vec![
                        "first attacker activity".into(),
                        ev(&t.first_attacker_activity),
                    ],
                    vec![
                        "last attacker activity".into(),
                        ev(&t.last_attacker_activity),
                    ],
                ],
            )];
            blocks.push(Block::Para(if t.persistence.is_empty() {
                "Persistence: none found by triage (no finding of a persistence category, medium or \
                 worse)."
                    .into()
            } else {
                format!(
                    "Persistence found by triage, earliest first ({}):",
                    t.persistence.len()
                )
            }));
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            capped_table(
                &mut blocks,
                vec!["first seen", "last seen", "mtime", "finding", "path"],
                &t.persistence,
                |p| {
                    vec![
                        opt(&p.first_seen),
                        opt(&p.last_seen),
                        opt(&p.mtime),
                        format!("{} {}", p.severity, p.category),
                        p.path.clone(),
                    ]
                },
                "more",
            );
            blocks
        }
    };
    s.push(Section {
        title: "Timeline highlights".into(),
        blocks: timeline,
    });
    let findings = match &r.findings {
        None => vec![Block::Para(
            "No triage was run (no findings.json in the case directory).".into(),
        )],
        Some(f) => {
            let mut counts: Vec<(&String, &u64)> = f.counts.iter().collect();
            counts.sort_by_key(|(s, _)| severity_rank(s));
            let mut blocks = vec![Block::Para(format!(
                "From {}: {}.",
                f.files.join(", "),
                if counts.is_empty() {
                    "no findings".into()
                } else {
                    counts
                        .iter()
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))];
            capped_table(
                &mut blocks,
                vec!["severity", "category", "path", "why", "times"],
                &f.items,
                |x| {
                    let mut times: Vec<String> = x
                        .times
                        .iter()
                        .map(|(k, v)| format!("{k} {}", value_text(v)))
                        .collect();
                    if let (Some(a), Some(b)) = (&x.first_seen, &x.last_seen) {
                        times.push(format!("timeline {a} .. {b}"));
                    }
                    vec![
                        x.severity.clone(),
                        x.category.clone(),
                        x.path.clone(),
                        x.why.clone(),
                        times.join("; "),
                    ]
                },
                "more findings",
            );
            blocks
        }
    };
    s.push(Section {
        title: format!("Findings by severity ({})", SEVERITIES.join(", ")),
        blocks: findings,
    });
    let action_rows = |list: &[super::Action]| -> Vec<Vec<String>> {
        list.iter()
            .map(|a| {
                vec![
                    a.seq.to_string(),
                    when(&a.system_clock, &a.true_time),
                    a.kind.clone(),
                    a.command.clone(),
                    a.outcome.clone(),
                ]
            })
            .collect()
    };
    s.push(Section {
        title: "Actions taken (case log)".into(),
        blocks: if r.actions.is_empty() {
            vec![Block::Para(
                "The case log holds no entry that can be trusted (see Case log below).".into(),
            )]
        } else {
            vec![Block::Table(
                vec!["#", "time", "kind", "command", "outcome"],
                action_rows(&r.actions),
            )]
        },
    });
    let rr = &r.reinstall_restore;
    let mut blocks = Vec::new();
    if rr.records.is_empty() {
        blocks.push(Block::Para(
            "No reinstall, deploy, restore or target decision is recorded in the case log.".into(),
        ));
    } else {
        blocks.push(Block::Table(
            vec!["#", "time", "kind", "command", "verdict"],
            action_rows(&rr.records),
        ));
    }
    if rr.restores.is_empty() {
        blocks.push(Block::Para(
            "No restore manifest (restore-manifest.json) is in the case directory.".into(),
        ));
    }
    for m in &rr.restores {
        blocks.push(Block::Para(format!(
            "Restore {} ({} -> {}){}: {}; {}.",
            m.file,
            m.source,
            m.target,
            if m.dry_run { ", dry run" } else { "" },
            if m.complete { "complete" } else { "INCOMPLETE" },
            m.counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
        if !m.refused.is_empty() {
            blocks.push(Block::Para("Refused:".into()));
            blocks.push(Block::List(capped(&m.refused)));
        }
        if !m.held.is_empty() {
            blocks.push(Block::Para("Held for review:".into()));
            blocks.push(Block::List(capped(&m.held)));
        }
    }
    s.push(Section {
        title: "Reinstall and restore".into(),
        blocks,
    });
    s.push(Section {
        title: "Open items".into(),
        blocks: vec![if r.open_items.is_empty() {
            Block::Para("None.".into())
        } else {
            Block::List(r.open_items.clone())
        }],
    });
    let mut ev = vec![Block::Table(
        vec!["file", "bytes", "sha256"],
        r.evidence
            .iter()
            .map(|e| vec![e.path.clone(), e.size_bytes.to_string(), e.sha256.clone()])
            .collect(),
    )];
    let reused: Vec<&str> = r
        .evidence
        .iter()
        .filter(|e| e.sha256_from.is_some())
        .map(|e| e.path.as_str())
        .collect();
    if !reused.is_empty() {
        ev.push(Block::Para(format!(
            "Not read again for this report: {}. Their SHA-256 is the one verify proved against the acquisition's manifest in this case; each file has the same inode, size, modification and change time as then (sha256_from in report.json).",
            reused.join(", ")
        )));
    }
    if !r.evidence_links.is_empty() {
        ev.push(Block::Para(format!(
            "Symbolic links (not followed, not hashed): {}",
            r.evidence_links.join(", ")
        )));
    }
    ev.push(Block::Para(format!(
        "The same list is `{}` beside this report (paths relative to the report directory): \
         `sha256sum -c {}` in the report directory checks it.",
        super::INDEX_NAME,
        super::INDEX_NAME
    )));
    s.push(Section {
        title: "Evidence files".into(),
        blocks: ev,
    });
    let l = &r.case_log;
    let mut log = vec![Block::Para(format!(
        "{} entries, chain {}; final chain hash {}. The snapshot `{}` beside this report is the log as it \
         was when the report was made (`rescue log verify {}`).",
        l.entries,
        if l.intact {
            "intact".to_owned()
        } else {
            format!("BROKEN ({})", l.broken.as_deref().unwrap_or("-"))
        },
        l.final_hash.as_deref().unwrap_or("-"),
        l.file,
        l.file
    ))];
    log.push(Block::Para(match &r.signature {
        Some(sig) => format!(
            "Signed by {} (key {}{}, {}, {}): detached signatures {} beside {}. Check with \
             `rescue report verify DIR --keyring KEY` or `gpgv --keyring KEY FILE.asc FILE`.",
            sig.uid,
            sig.fingerprint,
            sig.signing_subkey
                .as_ref()
                .map(|s| format!(", subkey {s}"))
                .unwrap_or_default(),
            sig.algorithm,
            sig.hash,
            super::SIG_SUFFIX,
            sig.files.join(", ")
        ),
        None => "This report is UNSIGNED. Write down the final chain hash above, or send it out of band, to \
                 prove later that the case log was not changed."
            .into(),
    }));
    s.push(Section {
        title: "Case log and signature".into(),
        blocks: log,
    });
    (title, s)
}

fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// The report in Markdown.
pub(super) fn markdown(r: &Report) -> String {
    let (title, sections) = outline(r);
    let mut out = format!("# {title}\n");
    for s in sections {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!("## {}\n\n", s.title));
        for b in s.blocks {
            match b {
                Block::Para(p) => out.push_str(&format!("{p}\n\n")),
                Block::List(items) => {
                    for i in items {
                        out.push_str(&format!("- {}\n", i.replace('\n', " ")));
                    }
                    out.push('\n');
                }
                Block::Table(head, rows) => {
                    out.push_str(&format!(
                        "| {} |\n|{}\n",
                        head.iter()
                            .map(|h| md_cell(h))
                            .collect::<Vec<_>>()
                            .join(" | "),
                        "---|".repeat(head.len())
                    ));
                    for row in rows {
                        out.push_str(&format!(
                            "| {} |\n",
                            row.iter()
                                .map(|c| md_cell(c))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        ));
                    }
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline code (`...`) of the outline's paragraphs, as HTML.
fn esc_para(text: &str) -> String {
    esc(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

const CSS: &str = "body{font-family:sans-serif;font-size:10.5pt;margin:2em;color:#000;background:#fff}\
h1{font-size:16pt}h2{font-size:13pt;border-bottom:1px solid #888;margin-top:1.5em}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #999;padding:2px 4px;\
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#eee}\
code,td{font-size:9pt}@page{size:A4;margin:15mm}\
@media print{body{margin:0}h2{break-after:avoid}tr{break-inside:avoid}thead{display:table-header-group}}";

/// The report as one self-contained HTML page that prints well.
pub(super) fn html(r: &Report) -> String {
    let (title, sections) = outline(r);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    for s in sections {
        out.push_str(&format!("<h2>{}</h2>\n", esc(&s.title)));
        for b in s.blocks {
            match b {
                Block::Para(p) => out.push_str(&format!("<p>{}</p>\n", esc_para(&p))),
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for i in items {
                        out.push_str(&format!("<li>{}</li>\n", esc_para(&i)));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(head, rows) => {
                    out.push_str("<table>\n");
                    if head.iter().any(|h| !h.is_empty()) {
                        out.push_str("<thead><tr>");
                        for h in head {
                            out.push_str(&format!("<th>{}</th>", esc(h)));
                        }
                        out.push_str("</tr></thead>\n");
                    }
                    out.push_str("<tbody>\n");
                    for row in rows {
                        out.push_str("<tr>");
                        for c in row {
                            out.push_str(&format!("<td>{}</td>", esc(&c)));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody></table>\n");
                }
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}
