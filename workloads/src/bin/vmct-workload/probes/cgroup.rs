//! Cgroup probes: move into a host cgroup the harness created, and rewrite the instance's own limit.
use super::{sys, Ctx, Verdict};
use std::path::{Path, PathBuf};

/// v1 controller directories the probes recognise.
const V1: &[&str] = &["pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer"];

/// The caller's cgroup path in the hierarchy mounted at `root` (v1 controller dir or the v2 root).
fn own_path(root: &Path) -> Option<String> {
    let me = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let ctrl = root.file_name()?.to_string_lossy().into_owned();
    let v1 = V1.contains(&ctrl.as_str());
    me.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = if v1 { ctrls.split(',').any(|c| c == ctrl) } else { ctrls.is_empty() };
        hit.then(|| path.to_string())
    })
}

/// Write our pid into the escape cgroup's `cgroup.procs`, confirm, and move back. Harmless: the cgroup
/// is an empty one the harness created for this purpose and removes afterwards; the probe child moves
/// back to where it was and exits.
pub fn escape(ctx: &Ctx) -> Verdict {
    let Some(dir) = &ctx.cgroup else { return Verdict::error("no escape cgroup given (VMCT_CANARY_CGROUP unset)") };
    let Some(root) = dir.parent() else { return Verdict::error(format!("bad cgroup path {}", dir.display())) };
    let back = own_path(root);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if let Err(e) = std::fs::write(dir.join("cgroup.procs"), format!("{pid}\n")) {
        return Verdict::blocked(format!("{} writing {}/cgroup.procs", sys::io_name(&e), dir.display()));
    }
    let moved_back = back
        .map(|b| root.join(b.trim_start_matches('/')).join("cgroup.procs"))
        .map(|p| std::fs::write(&p, format!("{pid}\n")).is_ok())
        .unwrap_or(false);
    Verdict::reached(format!(
        "moved itself into the host cgroup {}{}",
        dir.display(),
        if moved_back { " and back" } else { " (could not move back; the probe child exits)" }
    ))
}

/// Candidate limit files of the caller's own cgroup, only in the project's cgroups (path contains
/// `vmct`) or at a cgroup namespace's root: cgroups the project did not create are never written.
fn own_limit_files(me: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for l in me.lines() {
        let mut it = l.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else { continue };
        let path = path.trim_start_matches('/');
        if !path.contains("vmct") {
            continue;
        }
        for c in ctrls.split(',') {
            match c {
                "pids" => v.push(Path::new("/sys/fs/cgroup/pids").join(path).join("pids.max")),
                "memory" => v.push(Path::new("/sys/fs/cgroup/memory").join(path).join("memory.limit_in_bytes")),
                "" => {
                    v.push(Path::new("/sys/fs/cgroup").join(path).join("pids.max"));
                    v.push(Path::new("/sys/fs/cgroup").join(path).join("memory.max"));
                }
                _ => {}
            }
        }
    }
    // Inside a cgroup namespace the own cgroup is the mount's root (these files do not exist at a
    // host hierarchy's root).
    for f in ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids/pids.max"] {
        v.push(PathBuf::from(f));
    }
    v
}

/// Is the caller in no project cgroup and not in a cgroup namespace (every path is a host path)?
fn unconfined(me: &str) -> bool {
    !me.contains("vmct") && me.lines().any(|l| l.rsplit(':').next().is_some_and(|p| p.len() > 1))
}

/// Rewrite the instance's own pids/memory limit with its current value. Harmless: writing the same value
/// is a no-op, and only the project's own cgroups are touched; success means the instance could raise
/// its own limit.
pub fn raise_limit(_: &Ctx) -> Verdict {
    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut notes = Vec::new();
    for f in own_limit_files(&me) {
        let Ok(v) = std::fs::read_to_string(&f) else { continue };
        match std::fs::write(&f, v.as_bytes()) {
            Ok(()) => {
                return Verdict::reached(format!("rewrote its own limit {} (same value {})", f.display(), v.trim()))
            }
            Err(e) => notes.push(format!("{} writing {}", sys::io_name(&e), f.display())),
        }
    }
    if !notes.is_empty() {
        Verdict::blocked(notes.join("; "))
    } else if unconfined(&me) {
        Verdict::reached("in no project cgroup: no pids/memory limit confines it")
    } else {
        Verdict::blocked("no limit file of its own cgroup is visible")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_project_cgroups_are_candidates() {
        let me = "8:pids:/vmct-1-2\n4:memory:/process_api/abc\n0::/\n";
        let f = own_limit_files(me);
        assert!(f.contains(&PathBuf::from("/sys/fs/cgroup/pids/vmct-1-2/pids.max")));
        assert!(!f.iter().any(|p| p.to_string_lossy().contains("process_api")));
        assert!(unconfined("4:memory:/process_api/abc\n0::/\n"));
        assert!(!unconfined("0::/\n"));
    }
}
