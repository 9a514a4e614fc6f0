//! Leftover collection for `vmct gc`: processes of dead harness runs (found by the `VMCT_OWNER`
//! variable every instance carries), host values a killed isolation run left changed (from its
//! [`crate::isolation::journal`]), and kernel objects named with the project prefix (delegated to
//! the runtimes that create them).
use crate::backend::OWNER_ENV;
use std::fs;

/// What gc found and did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects removed (or that would be, with --dry-run).
    pub removed: Vec<String>,
    /// Objects kept because their harness is still running.
    pub kept: Vec<String>,
    /// Objects that could not be removed.
    pub errors: Vec<String>,
}

fn alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// The owner pid recorded in a process's environment.
fn owner_of(pid: u32) -> Option<u32> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let s = std::str::from_utf8(kv).ok()?;
        s.strip_prefix(OWNER_ENV)?.strip_prefix('=')?.parse().ok()
    })
}

/// Where the workload's isolation probes make their scratch directories and device nodes
/// (`vmct-probe-<what>-<pid>`).
pub const PROBE_DIR_BASES: [&str; 4] = ["/tmp", "/dev/shm", "/run", "/var/tmp"];

/// Scratch directories of probe processes that were killed before they could remove them (a mount
/// point they may still carry is detached first; a directory that stays a mount point is reported).
fn probe_dirs(bases: &[&std::path::Path], dry_run: bool, rep: &mut GcReport) {
    use std::os::unix::fs::MetadataExt;
    for base in bases {
        let Ok(base_dev) = fs::metadata(base).map(|m| m.dev()) else { continue };
        for e in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("vmct-probe-").and_then(|r| r.rsplit('-').next()?.parse::<u32>().ok())
            else {
                continue;
            };
            let path = e.path();
            if alive(pid) {
                rep.kept.push(format!("probe directory {} of running pid {pid}", path.display()));
                continue;
            }
            let what = format!("probe directory {} of dead pid {pid}", path.display());
            if !dry_run {
                if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                    // SAFETY: a valid NUL-terminated path; fails harmlessly when nothing is mounted there.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
                if fs::metadata(&path).map(|m| m.dev()).ok() != Some(base_dev) {
                    rep.errors.push(format!("{what}: still a mount point"));
                    continue;
                }
                // Device nodes of `dev.node.*` probes are files (`vmct-probe-node-<name>-<pid>`).
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if let Err(e) = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) } {
                    rep.errors.push(format!("{what}: {e}"));
                    continue;
                }
            }
            rep.removed.push(what);
        }
    }
}

/// Find and (unless `dry_run`) remove leftovers.
pub fn collect(dry_run: bool) -> GcReport {
    let mut rep = GcReport::default();
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return rep };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Some(owner) = owner_of(pid) else { continue };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        if owner != pid && alive(owner) && owner != me {
            rep.kept.push(format!("process {pid} ({comm}) of running vmct {owner}"));
            continue;
        }
        let what = format!("process {pid} ({comm}) of dead vmct {owner}");
        if !dry_run {
            // SAFETY: kill(2) on a pid; no memory is involved.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
                rep.errors.push(format!("{what}: {}", std::io::Error::last_os_error()));
                continue;
            }
        }
        rep.removed.push(what);
    }
    probe_dirs(&PROBE_DIR_BASES.map(std::path::Path::new), dry_run, &mut rep);
    let j = crate::isolation::journal::recover_in(std::path::Path::new(crate::isolation::journal::DIR), dry_run);
    rep.removed.extend(j.removed);
    rep.kept.extend(j.kept);
    rep.errors.extend(j.errors);
    if dry_run {
        rep.kept.push("kernel objects (cgroups, netns, veths, container state) are only listed when removed; run without --dry-run".into());
    } else {
        // Cgroups, network namespaces, veths and per-container state named with the prefix.
        let c = container::gc(crate::backend::NAME_PREFIX);
        rep.removed.extend(c.removed);
        rep.kept.extend(c.kept);
        rep.errors.extend(c.errors);
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_dirs_of_dead_pids_are_removed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this pid is never alive.
        let dead = t.path().join("vmct-probe-mknod-4194305");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("vda"), b"").unwrap();
        let live = t.path().join(format!("vmct-probe-proc-{}", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        std::fs::create_dir(t.path().join("vmct-probe-not-a-pid")).unwrap();
        let node = t.path().join("vmct-probe-node-loop-control-4194305");
        std::fs::write(&node, b"").unwrap();
        let mut rep = GcReport::default();
        probe_dirs(&[t.path()], true, &mut rep);
        assert!(dead.exists() && rep.removed.len() == 2, "dry run lists only: {rep:?}");
        let mut rep = GcReport::default();
        probe_dirs(&[t.path()], false, &mut rep);
        assert!(!dead.exists() && !node.exists() && live.exists(), "{rep:?}");
        assert_eq!((rep.removed.len(), rep.kept.len(), rep.errors.len()), (2, 1, 0), "{rep:?}");
    }
}
