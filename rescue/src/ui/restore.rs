//! `restore SOURCE TARGET`: the line-mode face of [`crate::restore`]. Opens the source (mounting a disk
//! or image read-only), clears and mounts a target disk when TARGET is a device, runs the screened
//! restore, writes `restore-manifest.json`, prints the summary, the refusals and the files held for
//! review, and logs the result in the case log.
//!
//! Exit codes: 0 complete, 1 error, 2 usage, 4 a file failed its read-back or the backup manifest lists
//! files the source lacks, 5 incomplete (target full): rerun the same command to resume.

use std::path::{Path, PathBuf};

use crate::args::restore::RestoreArgs;
use crate::case::{self, Locked};
use crate::restore::{self, Action, RestoreError, Restorer, policy, source};

/// Exit code: a file failed verification, or the manifest names files the source lacks.
pub const EXIT_NOT_VERIFIED: u8 = 4;
/// Exit code: stopped before the end (target full); rerun to resume.
pub const EXIT_INCOMPLETE: u8 = 5;

/// A target disk mounted read-write for the restore; synced and unmounted when dropped.
struct TargetMount {
    mountpoint: PathBuf,
}

impl Drop for TargetMount {
    fn drop(&mut self) {
        nix::unistd::sync();
        let _ = nix::mount::umount(&self.mountpoint);
    }
}

/// The target disk, mounted for a real run (read-write) or a dry run (read-only, as a source is).
/// Held until the restore ends; dropping it unmounts.
enum MountedTarget {
    Writable { _mount: TargetMount },
    ReadOnly { _mount: Box<source::Mounted> },
}

/// Mounts the unlocked target disk read-write: the whole disk when it holds a filesystem, else the
/// partition a dry run would choose (the only Linux filesystem), through the kernel's partition device.
fn mount_target(dev: &Path) -> anyhow::Result<(TargetMount, PathBuf)> {
    let mp = PathBuf::from("/mnt/restore-target");
    std::fs::create_dir_all(&mp)?;
    let flags = nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOSUID;
    let node = match source::partition_to_mount(dev, source::SourceKind::Device, None)? {
        None => dev.to_owned(),
        Some(c) => {
            super::sayln!("target: {}", c.describe());
            partition_node(dev, c.entry.number).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no device node for partition {}: the kernel has not read its partition table",
                    dev.display(),
                    c.entry.number
                )
            })?
        }
    };
    for fs in ["ext4", "xfs", "btrfs", "vfat", "exfat"] {
        if nix::mount::mount(Some(node.as_path()), &mp, Some(fs), flags, None::<&str>).is_ok() {
            return Ok((TargetMount { mountpoint: mp }, node));
        }
    }
    anyhow::bail!(
        "no ext4, xfs, btrfs, FAT or exFAT filesystem on {} could be mounted as the restore target",
        node.display()
    )
}

/// The kernel's device node for partition `number` of the disk `dev`.
fn partition_node(dev: &Path, number: u32) -> Option<PathBuf> {
    let name = crate::blkro::sysfs_name(dev).ok()?;
    crate::blkro::partitions_of(&name)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(Path::new("/sys/class/block").join(p).join("partition"))
                .is_ok_and(|n| n.trim() == number.to_string())
        })
        .map(|p| PathBuf::from("/dev").join(p))
}

fn report_dir(a: &RestoreArgs, target_root: &Path) -> Option<PathBuf> {
    if let Some(d) = &a.report_dir {
        return Some(d.clone());
    }
    if crate::system::in_rescue_system()
        && let Ok(l) = Locked::open()
        && let (Some(d), Some(c)) = (&l.state.destination, &l.state.case_id)
    {
        return Some(Path::new(&d.mountpoint).join(c));
    }
    (!a.dry_run).then(|| target_root.to_owned())
}

/// The findings files to screen with: those given with `--findings`, and inside the rescue system every
/// one the case's triage runs recorded (said on the console; a recorded file that cannot be found stops
/// the restore rather than letting what it names back). Returns all of them and the case's own.
fn findings_files(a: &RestoreArgs) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files = a.findings.clone();
    let mut from_case = Vec::new();
    if !crate::system::in_rescue_system() {
        return Ok((files, from_case));
    }
    let given: Vec<PathBuf> = files
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    for t in Locked::open()?.state.triages {
        let path = PathBuf::from(&t.findings);
        if let Err(e) = std::fs::metadata(&path) {
            anyhow::bail!(
                "this case's triage of {} recorded its findings in {}, which cannot be read ({e}): mount the evidence destination holding them, so that the restore screens with them",
                t.source,
                path.display()
            );
        }
        let say = format!(
            "screening with the findings of this case's triage of {}: {}",
            t.source,
            path.display()
        );
        if a.json {
            super::esayln!("{say}");
        } else {
            super::sayln!("{say}");
        }
        if !given.contains(&std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
            files.push(path.clone());
        }
        from_case.push(path);
    }
    Ok((files, from_case))
}

pub fn run(a: &RestoreArgs) -> anyhow::Result<u8> {
    let command = format!("restore {} {}", a.source.display(), a.target.display());
    let blocklist = match &a.blocklist {
        Some(p) => policy::parse_blocklist(
            &std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("reading the blocklist {}: {e}", p.display()))?,
        ),
        None => Default::default(),
    };
    let (files, from_case) = findings_files(a)?;
    let findings = restore::findings::load_all(&files)?;
    let pol = policy::Policy::new(&a.include, &a.exclude, blocklist, a.allow_executables)?
        .with_source_root(a.source_root.as_deref())?
        .with_findings(findings);

    if let Some(disk) = source::shared_disk(&a.source, &a.target) {
        anyhow::bail!(
            "the restore source {} and the target {} are both on {disk}: a backup is never restored onto the disk it is read from",
            a.source.display(),
            a.target.display()
        );
    }
    let mount_base = if crate::system::in_rescue_system() {
        case::state_dir()
    } else {
        std::env::temp_dir()
    };
    // The target: a disk (cleared by the interlock, confirmed, unlocked, mounted) or a directory.
    let target_is_device = std::fs::metadata(&a.target)
        .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        .unwrap_or(false);
    let mut _target_mount = None;
    let mut clearance = Vec::new();
    let target_root = if target_is_device {
        let Some(confirm) = &a.confirm else {
            anyhow::bail!(
                "{} is a disk: confirm it with --confirm SERIAL (or give a mounted directory)",
                a.target.display()
            );
        };
        let mut locked = Locked::open()?;
        let c = case::target_interlock(&mut locked, &a.target, a.reason.as_deref()).inspect_err(
            |e| {
                let _ = locked.log(
                    "result",
                    &command,
                    serde_json::json!({"refused": e.to_string()}),
                );
            },
        )?;
        let confirmed = if a.dry_run {
            // The same checks as the real run; nothing becomes writable.
            case::confirm_target(&c, &a.target, confirm).map(|()| Vec::new())
        } else {
            case::unlock_target(&locked, &c, &a.target, confirm)
        };
        if let Err(e) = confirmed {
            let _ = locked.log(
                "result",
                &command,
                serde_json::json!({"refused": e.to_string()}),
            );
            return Err(e.into());
        }
        clearance.push(c);
        drop(locked);
        let (root, shown) = if a.dry_run {
            let m = source::mount_readonly(&a.target, &mount_base)?;
            if let Some(p) = &m.partition {
                super::sayln!("target: {}", p.describe());
            }
            let shown = format!(
                "target {} ({}) mounted read-only for the dry run ({}; nothing is written) on {}",
                m.device.display(),
                m.fstype,
                m.options,
                m.mountpoint.display()
            );
            let root = m.mountpoint.clone();
            _target_mount = Some(MountedTarget::ReadOnly {
                _mount: Box::new(m),
            });
            (root, shown)
        } else {
            let (m, dev) = mount_target(&a.target)?;
            let shown = format!(
                "target {} mounted on {}",
                dev.display(),
                m.mountpoint.display()
            );
            let root = m.mountpoint.clone();
            _target_mount = Some(MountedTarget::Writable { _mount: m });
            (root, shown)
        };
        super::sayln!("{shown}");
        root
    } else {
        if crate::system::in_rescue_system() {
            let mut locked = Locked::open()?;
            for disk in crate::blkro::backing_disks(&a.target) {
                let dev = PathBuf::from("/dev").join(&disk);
                clearance.push(case::target_interlock(
                    &mut locked,
                    &dev,
                    a.reason.as_deref(),
                )?);
            }
        }
        a.target.clone()
    };

    let kind = source::classify(&a.source)?;
    if a.partition.is_some()
        && matches!(
            kind,
            source::SourceKind::Dir | source::SourceKind::Tar | source::SourceKind::TarZst
        )
    {
        anyhow::bail!(
            "--partition applies to a disk image or a disk; {} is a directory or an archive",
            a.source.display()
        );
    }
    let mut restorer = Restorer::new(
        &a.source.display().to_string(),
        &target_root,
        pol,
        a.manifest.as_deref(),
        a.dry_run,
    )?;
    let walked = {
        let mut visit = |e: &restore::SourceEntry, c: restore::Content<'_>| restorer.entry(e, c);
        match kind {
            source::SourceKind::Dir => source::walk_dir(&a.source, &mut visit),
            source::SourceKind::Tar => source::walk_tar(&a.source, false, &mut visit),
            source::SourceKind::TarZst => source::walk_tar(&a.source, true, &mut visit),
            source::SourceKind::Image | source::SourceKind::Device => {
                let m = source::mount_readonly_partition(&a.source, &mount_base, a.partition)?;
                if let Some(p) = &m.partition {
                    super::sayln!("source: {}", p.describe());
                }
                super::sayln!(
                    "source {} ({}) mounted read-only ({})",
                    m.device.display(),
                    m.fstype,
                    m.options
                );
                let r = source::walk_dir(&m.mountpoint, &mut visit);
                drop(m);
                r
            }
        }
    };
    let stop = match &walked {
        Ok(()) => None,
        Err(e @ RestoreError::TargetFull { .. }) => Some(crate::error_chain(e)),
        Err(e) => Some(crate::error_chain(e)),
    };
    let mut manifest = restorer.finish(stop.clone());
    if let Some(f) = &mut manifest.findings {
        f.from_case = from_case.iter().map(|p| p.display().to_string()).collect();
    }
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    let (saved, diffs) = match report_dir(a, &target_root) {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            crate::acquire::manifest::write_durable(&dir, restore::MANIFEST_NAME, &bytes)?;
            let diffs = restore::write_held_diffs(&dir, &manifest).map_err(|e| {
                anyhow::anyhow!(
                    "writing the account database comparisons under {} (the restore manifest is written): {e}",
                    dir.join(restore::HELD_DIR).display()
                )
            })?;
            (Some(dir.join(restore::MANIFEST_NAME)), diffs)
        }
        None => (None, Vec::new()),
    };
    let count = |a: Action| manifest.counts.get(a.name()).copied().unwrap_or(0);
    if crate::system::in_rescue_system() {
        super::case::log_command(
            "result",
            &command,
            serde_json::json!({
                "counts": manifest.counts, "complete": manifest.complete,
                "stop_reason": manifest.stop_reason, "manifest": saved,
                "review": manifest.review, "clearance": clearance,
                "findings": manifest.findings, "source_root": manifest.source_root,
            }),
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&manifest)?);
    } else {
        for f in &manifest.files {
            if matches!(
                f.action,
                Action::Refused | Action::Held | Action::Missing | Action::Failed
            ) {
                print!(
                    "{}",
                    file_line(
                        &f.action.name().to_uppercase(),
                        &f.path,
                        f.reason.as_deref().unwrap_or("-"),
                        super::columns()
                    )
                );
            }
        }
        let summary: Vec<String> = manifest
            .counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        super::sayln!(
            "{}restore {}: {}",
            if a.dry_run { "dry-run " } else { "" },
            if manifest.complete {
                "complete"
            } else {
                "INCOMPLETE"
            },
            summary.join(", ")
        );
        if !manifest.review.is_empty() {
            super::sayln!(
                "held for review (not written; restore each by listing it with --include PATH): {}",
                manifest.review.join(" ")
            );
        }
        for d in &diffs {
            super::sayln!(
                "account database compared with the new system's: {}",
                d.display()
            );
        }
        if let Some(f) = &manifest.findings {
            super::sayln!(
                "findings: {} of {} findings naming a path name a file of this backup (source root {}){}",
                f.matched.len(),
                f.naming_paths,
                manifest.source_root,
                if f.unmatched.is_empty() || !f.matched.is_empty() {
                    String::new()
                } else {
                    " — if the backup is of a subdirectory, name it with --source-root DIR".into()
                }
            );
        }
        if let Some(p) = &saved {
            super::sayln!("restore manifest: {}", p.display());
        }
    }
    if let Err(e) = walked {
        if matches!(e, RestoreError::TargetFull { .. }) {
            super::esayln!("error: {}", crate::error_chain(&e));
            return Ok(EXIT_INCOMPLETE);
        }
        return Err(e.into());
    }
    if count(Action::Failed) > 0 || count(Action::Missing) > 0 {
        return Ok(EXIT_NOT_VERIFIED);
    }
    Ok(0)
}

/// One file's verdict, `ACTION    path: reason`, fitted to `width`: the action keeps its column and
/// the rest continues under the path, so the line still starts as scripts and people look for it.
fn file_line(action: &str, path: &str, reason: &str, width: usize) -> String {
    let head = format!("{action:<9} ");
    let room = width.saturating_sub(head.len()).max(20);
    let pad = " ".repeat(head.len().min(width.saturating_sub(room)));
    super::wrap(&format!("{path}: {reason}"), room, 2)
        .into_iter()
        .enumerate()
        .map(|(i, l)| format!("{}{}\n", if i == 0 { &head } else { &pad }, l.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_verdict_fits_80_and_40_columns_and_keeps_its_columns() {
        let reason = "setuid file: refused even with --allow-executables unless listed exactly: \
                      --include /usr/local/bin/helper";
        assert_eq!(
            file_line("HELD", "etc/cron.d/job", "cron entry", 80),
            "HELD      etc/cron.d/job: cron entry\n"
        );
        for width in [80, 40] {
            let t = file_line("REFUSED", "usr/local/bin/helper", reason, width);
            assert!(super::super::widest(&t) <= width, "{width}:\n{t}");
            assert!(t.starts_with("REFUSED   usr/local/bin/helper:"), "{t}");
            assert!(
                t.lines().skip(1).all(|l| l.starts_with("          ")),
                "{t}"
            );
            let words: Vec<&str> = t.split_whitespace().collect();
            assert_eq!(
                words.join(" "),
                format!("REFUSED usr/local/bin/helper: {reason}")
            );
        }
    }
}
