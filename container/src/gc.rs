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
/// set (the container init) has a parent that is not pid 1, is alive, and is not in `dying` (processes
/// the caller's gc removes first).
fn owned_except(pids: &[i32], dying: &[i32]) -> bool {
    pids.iter().any(|p| match ppid(*p) {
        Some(pp) if !pids.contains(&pp) && !dying.contains(&pp) => pp > 1 && Path::new(&format!("/proc/{pp}")).exists(),
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

/// One leftover that gc removes; its `Display` is the line `vmct gc` prints (the same in a dry run and
/// a real run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A process still in a leftover cgroup (killed with SIGKILL).
    StrayProcess {
        /// Host pid.
        pid: i32,
        /// The cgroup it is in.
        cgroup: PathBuf,
    },
    /// A cgroup directory (its processes are killed first).
    Cgroup(PathBuf),
    /// A mount under the state root (detached).
    Mount(String),
    /// A bridge network namespace bind mount under /run/netns (detached and its file removed).
    Netns(String),
    /// A veth in the host namespace (`ip link del`).
    Link(String),
    /// A container's private dir under the state root (removed recursively).
    Dir(PathBuf),
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::StrayProcess { pid, cgroup } => write!(f, "stray process {pid} in {}", cgroup.display()),
            Leftover::Cgroup(d) => write!(f, "cgroup {}", d.display()),
            Leftover::Mount(m) => write!(f, "mount {m}"),
            Leftover::Netns(m) => write!(f, "netns {m}"),
            Leftover::Link(l) => write!(f, "link {l}"),
            Leftover::Dir(d) => write!(f, "dir {}", d.display()),
        }
    }
}

impl Leftover {
    /// Remove it.
    pub fn remove(&self) -> Result<(), String> {
        match self {
            // Gone already (it died since it was found) is what removing it means.
            Leftover::StrayProcess { pid, .. } => match crate::sys::kill(*pid, libc::SIGKILL) {
                Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(e.to_string()),
                _ => Ok(()),
            },
            Leftover::Cgroup(d) => cgroup::remove_dir(d).map_err(|e| e.to_string()),
            Leftover::Mount(m) => {
                let c = std::ffi::CString::new(m.as_str()).unwrap_or_default();
                crate::sys::umount_detach(&c).map_err(|e| format!("umount: {e}"))
            }
            Leftover::Netns(m) => {
                let c = std::ffi::CString::new(m.as_str()).unwrap_or_default();
                // Not mounted any more (its namespace is gone) is fine: the file is what is left.
                let _ = crate::sys::umount_detach(&c);
                match fs::remove_file(m) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("remove: {e}")),
                    _ => Ok(()),
                }
            }
            Leftover::Link(name) => match std::process::Command::new("ip").args(["link", "del", name]).status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("ip link del: {s}")),
                Err(e) => Err(format!("ip link del: {e}")),
            },
            Leftover::Dir(d) => match fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("remove: {e}")),
                _ => Ok(()),
            },
        }
    }
}

/// What gc would remove, in removal order, and what it keeps.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcPlan {
    /// To remove, in order (processes before their cgroups, deeper mounts first, dirs last).
    pub leftovers: Vec<Leftover>,
    /// Kept because their owner still runs.
    pub kept: Vec<String>,
    /// Could not be looked at.
    pub errors: Vec<String>,
}

impl GcPlan {
    /// Remove every leftover (in order); what was removed and what failed.
    pub fn remove(self) -> GcReport {
        let mut rep = GcReport { kept: self.kept, errors: self.errors, ..Default::default() };
        for l in &self.leftovers {
            match l.remove() {
                Ok(()) => rep.removed.push(l.to_string()),
                Err(e) => rep.errors.push(format!("{l}: {e}")),
            }
        }
        rep
    }

    /// The report of a dry run: every leftover listed as it would be removed.
    pub fn listed(self) -> GcReport {
        GcReport {
            removed: self.leftovers.iter().map(ToString::to_string).collect(),
            kept: self.kept,
            errors: self.errors,
        }
    }
}

/// gc with the default state root ([`crate::DEFAULT_STATE_ROOT`]).
pub fn gc(prefix: &str) -> GcReport {
    gc_in(prefix, Path::new(crate::DEFAULT_STATE_ROOT))
}

/// gc with an explicit state root: [`find_in`], then [`GcPlan::remove`].
pub fn gc_in(prefix: &str, state_root: &Path) -> GcReport {
    find_in(prefix, state_root).remove()
}

/// The pid of a live process (not this one) that an object name says owns it: the harness names
/// instances `<prefix>-<pid>-<n>`, shells `<prefix>-shell-<pid>`, bridge namespaces `<prefix>-net-<pid>`,
/// VMM jails `<prefix>-jail-<seq>-<pid>` (pooled: empty until a VMM joins, so only the name says they
/// are in use; a concurrent `vmct gc` removed a running harness's pooled jail cgroups, and its next
/// VMM launch failed with ENODEV joining them).
/// Keeps an empty cgroup a running harness has just made (before its init joins) from being removed; a
/// reused pid only makes gc keep (and report) more, never remove more.
fn live_owner_by_name(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.trim_start_matches('-');
    let pid: u32 = if let Some(jail) = rest.strip_prefix("jail-") {
        jail.rsplit('-').next()?.parse().ok()?
    } else {
        let rest = rest.strip_prefix("shell-").or_else(|| rest.strip_prefix("net-")).unwrap_or(rest);
        rest.split('-').next()?.parse().ok()?
    };
    (pid > 1 && pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Find leftovers named with `prefix` (removes nothing): cgroups (and the processes in them), mounts
/// under `state_root` and /run/netns, bridge namespaces, host veths, private dirs under `state_root`.
pub fn find_in(prefix: &str, state_root: &Path) -> GcPlan {
    find_in_except(prefix, state_root, &[])
}

/// [`find_in`] for a caller whose gc kills the processes `dying` first (a peer runtime of a dead harness
/// that is the parent of a container's init): a cgroup whose processes' only live parents are among them
/// is a leftover, not kept.
pub fn find_in_except(prefix: &str, state_root: &Path, dying: &[i32]) -> GcPlan {
    let mut plan = GcPlan::default();
    if prefix.len() < 2 {
        plan.errors.push(format!("gc: refusing the too-short prefix '{prefix}'"));
        return plan;
    }
    let mut live = Vec::new();
    // 1. cgroups and the processes in them: anywhere in every hierarchy (cgroup::find_named).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for d in cgroup::find_named(&cgroup::parse_mountinfo(&mountinfo), prefix) {
        let pids = cgroup::procs(&d);
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !pids.is_empty() && owned_except(&pids, dying) {
            plan.kept.push(format!("cgroup {} ({} processes of a running owner)", d.display(), pids.len()));
            live.push(name);
            continue;
        }
        if let Some(owner) = live_owner_by_name(&name, prefix) {
            plan.kept.push(format!("cgroup {} of running vmct {owner}", d.display()));
            live.push(name);
            continue;
        }
        for p in &pids {
            plan.leftovers.push(Leftover::StrayProcess { pid: *p, cgroup: d.clone() });
        }
        plan.leftovers.push(Leftover::Cgroup(d));
    }
    // 2. host mounts under the state root or /run/netns carrying the prefix (deepest first).
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
    let mut netns = Vec::new();
    for ns in entries_with_prefix(Path::new("/run/netns"), prefix) {
        let name = ns.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let owner = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let s = ns.to_string_lossy().into_owned();
        mounts.retain(|m| *m != s);
        if owner.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            plan.kept.push(format!("netns {name} of running pid {}", owner.unwrap_or(0)));
            continue;
        }
        netns.push(s);
    }
    plan.leftovers.extend(mounts.into_iter().map(Leftover::Mount));
    plan.leftovers.extend(netns.into_iter().map(Leftover::Netns));
    // 4. veths in the host namespace carrying the prefix (ours live in bridge namespaces; this catches
    //    ends that were moved out or created by older versions).
    for l in entries_with_prefix(Path::new("/sys/class/net"), prefix) {
        let name = l.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        plan.leftovers.push(Leftover::Link(name));
    }
    // 5. private dirs of containers that are not live.
    for d in entries_with_prefix(state_root, prefix) {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if live.contains(&name) {
            plan.kept.push(format!("dir {}", d.display()));
            continue;
        }
        if let Some(owner) = live_owner_by_name(&name, prefix) {
            plan.kept.push(format!("dir {} of running vmct {owner}", d.display()));
            continue;
        }
        plan.leftovers.push(Leftover::Dir(d));
    }
    plan
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
    fn a_dry_run_lists_exactly_what_the_real_run_removes() {
        let t = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so 4194305 is never alive; our own pid is alive.
        for d in ["vmcttest-4194305-0/upper/x", "vmcttest-shell-4194305", "other"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let live = format!("vmcttest-{}-0", std::os::unix::process::parent_id());
        std::fs::create_dir_all(t.path().join(&live)).unwrap();
        let plan = find_in("vmcttest", t.path());
        let listed = plan.clone().listed();
        assert!(t.path().join("vmcttest-4194305-0").exists(), "a dry run removes nothing");
        let done = plan.remove();
        assert_eq!(listed.removed, done.removed);
        assert_eq!(done.removed.len(), 2, "{done:?}");
        assert!(done.kept.iter().any(|k| k.contains(&live)), "{done:?}");
        assert!(t.path().join(&live).exists() && t.path().join("other").exists());
        assert!(!t.path().join("vmcttest-4194305-0").exists() && !t.path().join("vmcttest-shell-4194305").exists());
    }

    #[test]
    fn owners_are_read_from_names() {
        let parent = std::os::unix::process::parent_id();
        assert_eq!(live_owner_by_name(&format!("vmct-{parent}-3"), "vmct"), Some(parent));
        assert_eq!(live_owner_by_name(&format!("vmct-shell-{parent}"), "vmct"), Some(parent));
        assert_eq!(live_owner_by_name("vmct-4194305-3", "vmct"), None);
        // A pooled VMM jail of a running harness (named by vmm_jail: `vmct-jail-<seq>-<owner>`).
        assert_eq!(live_owner_by_name(&format!("vmct-jail-7-{parent}"), "vmct"), Some(parent));
        assert_eq!(live_owner_by_name("vmct-jail-7-4194305", "vmct"), None);
        assert_eq!(live_owner_by_name("vmct-t12-gc-1", "vmct"), None);
        assert_eq!(live_owner_by_name(&format!("vmct-{}-0", std::process::id()), "vmct"), None);
    }

    #[test]
    fn ownership_rule() {
        // Our own process: its parent (the test runner's parent) is alive.
        let me = std::process::id() as i32;
        assert_eq!(owned_except(&[me], &[]), ppid(me).is_some_and(|p| p > 1));
        assert!(!owned_except(&[], &[]));
        assert!(!owned_except(&[me], &ppid(me).into_iter().collect::<Vec<_>>()), "a dying parent owns nothing");
    }
}
