//! `vmct gc`: remove leftovers named with the project prefix — cgroups (and stray processes in them),
//! private dirs under the state root, host mounts under it, bridge namespaces and veths.
//!
//! A container is *live* (kept) when its init still has a living parent other than pid 1: the runtime
//! that started it is still running. Otherwise its processes are strays and are killed.
use crate::cgroup;
use std::fs;
use std::path::{Path, PathBuf};

/// What gc found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcReport {
    /// Objects removed.
    pub removed: Vec<String>,
    /// Objects kept because their owner still runs.
    pub kept: Vec<String>,
    /// Objects that could not be removed, with the reason.
    pub errors: Vec<String>,
}

fn ppid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the processes of a cgroup belong to a running owner: the one whose parent is outside the
/// set (the container init) has a parent that is not pid 1 and is alive.
fn owned(pids: &[i32]) -> bool {
    pids.iter().any(|p| match ppid(*p) {
        Some(pp) if !pids.contains(&pp) => pp > 1 && Path::new(&format!("/proc/{pp}")).exists(),
        _ => false,
    })
}

fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> =
        rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.path()).collect();
    v.sort();
    v
}

/// gc with the default state root ([`crate::DEFAULT_STATE_ROOT`]).
pub fn gc(prefix: &str) -> GcReport {
    gc_in(prefix, Path::new(crate::DEFAULT_STATE_ROOT))
}

/// gc with an explicit state root.
pub fn gc_in(prefix: &str, state_root: &Path) -> GcReport {
    let mut rep = GcReport::default();
    if prefix.len() < 2 {
        rep.errors.push(format!("gc: refusing the too-short prefix '{prefix}'"));
        return rep;
    }
    let mut live = Vec::new();
    // 1. cgroups and the processes in them.
    if let Ok(cg) = cgroup::detect() {
        let mut parents = cg.parents();
        // Peers (crun/runc) and older layouts may have put them at hierarchy roots too.
        for p in cg.parents() {
            if let Some(root) = p.ancestors().find(|a| a.parent() == Some(Path::new("/sys/fs/cgroup"))) {
                parents.push(root.to_path_buf());
            }
        }
        parents.sort();
        parents.dedup();
        for parent in parents {
            for d in entries_with_prefix(&parent, prefix) {
                if !d.is_dir() {
                    continue;
                }
                let pids = cgroup::procs(&d);
                let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if !pids.is_empty() && owned(&pids) {
                    rep.kept.push(format!("cgroup {} ({} processes of a running owner)", d.display(), pids.len()));
                    live.push(name);
                    continue;
                }
                for p in &pids {
                    let _ = crate::sys::kill(*p, libc::SIGKILL);
                    rep.removed.push(format!("stray process {p} in {}", d.display()));
                }
                match cgroup::remove_dir(&d) {
                    Ok(()) => rep.removed.push(format!("cgroup {}", d.display())),
                    Err(e) => rep.errors.push(e.to_string()),
                }
            }
        }
    }
    // 2. host mounts under the state root or /run/netns carrying the prefix (deepest first).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| {
            let p = Path::new(m);
            (p.starts_with(state_root) || p.starts_with("/run/netns"))
                && p.components().any(|c| c.as_os_str().to_string_lossy().starts_with(prefix))
                && !live.iter().any(|l| m.contains(l.as_str()))
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    // 3. bridge namespaces `<prefix>-net-<pid>` of runtimes that are gone.
    for ns in entries_with_prefix(Path::new("/run/netns"), prefix) {
        let name = ns.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let owner = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            rep.kept.push(format!("netns {name} of running pid {}", owner.unwrap_or(0)));
            mounts.retain(|m| !m.ends_with(&name));
            continue;
        }
        let s = ns.to_string_lossy().into_owned();
        if !mounts.contains(&s) {
            mounts.push(s);
        }
    }
    for m in &mounts {
        let c = std::ffi::CString::new(m.as_str()).unwrap_or_default();
        match crate::sys::umount_detach(&c) {
            Ok(()) => rep.removed.push(format!("mount {m}")),
            Err(e) => rep.errors.push(format!("umount {m}: {e}")),
        }
        if m.starts_with("/run/netns/") {
            let _ = fs::remove_file(m);
            rep.removed.push(format!("netns {m}"));
        }
    }
    // 4. veths in the host namespace carrying the prefix (ours live in bridge namespaces; this catches
    //    ends that were moved out or created by older versions).
    for l in entries_with_prefix(Path::new("/sys/class/net"), prefix) {
        let name = l.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match std::process::Command::new("ip").args(["link", "del", &name]).status() {
            Ok(s) if s.success() => rep.removed.push(format!("link {name}")),
            Ok(s) => rep.errors.push(format!("ip link del {name}: {s}")),
            Err(e) => rep.errors.push(format!("ip link del {name}: {e}")),
        }
    }
    // 5. private dirs of containers that are not live.
    for d in entries_with_prefix(state_root, prefix) {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if live.contains(&name) {
            rep.kept.push(format!("dir {}", d.display()));
            continue;
        }
        match fs::remove_dir_all(&d) {
            Ok(()) => rep.removed.push(format!("dir {}", d.display())),
            Err(e) => rep.errors.push(format!("remove {}: {e}", d.display())),
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_dead_state_dirs_and_refuses_short_prefix() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("vmcttest-gc-1/upper/x")).unwrap();
        std::fs::create_dir_all(t.path().join("other")).unwrap();
        let r = gc_in("vmcttest-gc-", t.path());
        assert!(r.removed.iter().any(|s| s.contains("vmcttest-gc-1")), "{r:?}");
        assert!(!t.path().join("vmcttest-gc-1").exists());
        assert!(t.path().join("other").exists());
        assert!(!gc_in("v", t.path()).errors.is_empty());
    }

    #[test]
    fn ownership_rule() {
        // Our own process: its parent (the test runner's parent) is alive.
        let me = std::process::id() as i32;
        assert_eq!(owned(&[me]), ppid(me).is_some_and(|p| p > 1));
        assert!(!owned(&[]));
    }
}
