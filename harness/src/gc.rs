//! Leftover collection for `vmct gc`: processes of dead harness runs (found by the `VMCT_OWNER`
//! variable every instance carries), probe scratch directories, host values a killed isolation run left
//! changed (from its [`crate::isolation::journal`]), and kernel objects named with the project prefix
//! (cgroups, mounts, network namespaces, veths, container state dirs; found by [`container::find_in`]).
//!
//! One code path finds everything ([`plan`]) before anything is removed; `--dry-run` lists that plan and
//! the real run removes exactly it, so the two print the same lines.
use crate::backend::OWNER_ENV;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Directories named `<prefix><anything>-<owner pid>` that processes leave under the bases, with
/// what they are: probe scratch directories, the memory experiment's page-cache file set layer
/// ([`crate::experiments::page_cache`], under /var/tmp), and the jail roots of VMMs
/// ([`crate::backend::vmm_jail`], owned by the harness that prepared them; their cgroups, named the
/// same, go with the other prefixed cgroups).
const SCRATCH_DIRS: [(&str, &str); 3] = [
    ("vmct-probe-", "probe directory"),
    (crate::backend::vmm_jail::JAIL_PREFIX, "VMM jail directory"),
    (crate::experiments::page_cache::LAYER_PREFIX, "page-cache file set layer"),
];

/// One leftover the harness itself finds (kernel objects come from the container runtime).
#[derive(Debug, Clone, PartialEq)]
pub enum Leftover {
    /// An instance process whose harness is dead (killed with SIGKILL).
    Process {
        /// Host pid.
        pid: u32,
        /// Its command name.
        comm: String,
        /// The dead harness's pid.
        owner: u32,
    },
    /// A probe's scratch directory whose probe process is dead (a mount on it is detached first).
    ProbeDir {
        /// What it is ("probe directory", "VMM jail directory").
        kind: &'static str,
        /// The directory.
        path: PathBuf,
        /// The dead probe's pid.
        pid: u32,
    },
    /// A runsc (gVisor) sandbox recorded in a vmct state dir whose harness is dead: removed with
    /// `runsc --root ROOT delete --force ID` (its Sentry and Gofer, cgroups and runsc state) before the
    /// state dir itself goes.
    RunscSandbox(crate::backend::runsc::LeftSandbox),
    /// A kernel object or state dir named with the prefix.
    Kernel(container::Leftover),
    /// An empty parent cgroup directory a peer runtime created for a killed run's cgroupsPath (recorded
    /// in its bundle, [`crate::backend::peers::CGROUP_PARENTS_FILE`]); removed with rmdir only.
    CgroupParent(PathBuf),
    /// A linux guest's root disk (or its record, or a build's temporary) of an image that is gone
    /// (`crate::images::rootdisk::orphans`).
    RootDisk(PathBuf),
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::Process { pid, comm, owner } => write!(f, "process {pid} ({comm}) of dead vmct {owner}"),
            Leftover::ProbeDir { kind, path, pid } => write!(f, "{kind} {} of dead pid {pid}", path.display()),
            Leftover::RunscSandbox(s) => write!(f, "runsc sandbox {} (state {})", s.id, s.root.display()),
            Leftover::Kernel(k) => k.fmt(f),
            Leftover::RootDisk(p) => write!(f, "root disk {} of a removed image", p.display()),
            Leftover::CgroupParent(p) => write!(f, "parent cgroup {} a peer runtime created", p.display()),
        }
    }
}

impl Leftover {
    /// Remove it.
    pub fn remove(&self) -> Result<(), String> {
        match self {
            // SAFETY: kill(2) on a pid; no memory is involved.
            Leftover::Process { pid, .. } => match unsafe { libc::kill(*pid as i32, libc::SIGKILL) } {
                0 => Ok(()),
                // Gone already (it died since it was found) is what removing it means.
                _ => match std::io::Error::last_os_error() {
                    e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                    e => Err(e.to_string()),
                },
            },
            Leftover::ProbeDir { path, .. } => {
                use std::os::unix::fs::MetadataExt;
                let base_dev = path.parent().and_then(|b| fs::metadata(b).ok()).map(|m| m.dev());
                if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                    // SAFETY: a valid NUL-terminated path; fails harmlessly when nothing is mounted there.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
                if fs::metadata(path).map(|m| m.dev()).ok() != base_dev {
                    return Err("still a mount point".into());
                }
                // Device nodes of `dev.node.*` probes are files (`vmct-probe-node-<name>-<pid>`).
                let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
                if is_dir { fs::remove_dir_all(path) } else { fs::remove_file(path) }.map_err(|e| e.to_string())
            }
            Leftover::RunscSandbox(s) => {
                let bin = crate::backend::peers::which(crate::backend::runsc::NAME)
                    .ok_or_else(|| "runsc not found in PATH (Debian package runsc)".to_string())?;
                crate::backend::runsc::delete(&bin, &s.root, &s.id)
            }
            Leftover::Kernel(k) => k.remove(),
            Leftover::CgroupParent(p) => match fs::remove_dir(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Leftover::RootDisk(p) => {
                let is_dir = fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
                if is_dir { fs::remove_dir_all(p) } else { fs::remove_file(p) }.map_err(|e| e.to_string())
            }
        }
    }
}

/// What gc would remove, in removal order (processes first, then directories and kernel objects).
#[derive(Debug, Default)]
pub struct Plan {
    /// To remove, in order.
    pub leftovers: Vec<Leftover>,
    /// Kept because their owner still runs.
    pub kept: Vec<String>,
    /// Could not be looked at.
    pub errors: Vec<String>,
}

/// Instance processes of dead harness runs (not this process).
fn processes(plan: &mut Plan) {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Some(owner) = owner_of(pid) else { continue };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        if owner != pid && alive(owner) && owner != me {
            plan.kept.push(format!("process {pid} ({comm}) of running vmct {owner}"));
            continue;
        }
        plan.leftovers.push(Leftover::Process { pid, comm, owner });
    }
}

/// The harness pid in an instance id `<prefix>-<pid>-<n>`.
fn owner_in_id(id: &str) -> Option<u32> {
    id.strip_prefix(crate::backend::NAME_PREFIX)?.trim_start_matches('-').split('-').next()?.parse().ok()
}

/// runsc's Sentry and Gofer processes (argv\[0\] `runsc-sandbox` / `runsc-gofer`, which do not carry
/// the owner variable) whose `--root` is a vmct state dir, and the sandboxes recorded there, of dead
/// harnesses.
fn runsc_leftovers(state_root: &Path, plan: &mut Plan) {
    let me = std::process::id();
    let root_flag = format!("--root={}/{}", state_root.display(), crate::backend::NAME_PREFIX);
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if !matches!(args.first().map(String::as_str), Some("runsc-sandbox" | "runsc-gofer")) {
            continue;
        }
        let Some(root) = args.iter().find(|a| a.starts_with(&root_flag)) else { continue };
        let id = Path::new(root.trim_start_matches("--root=")).parent().and_then(|p| p.file_name());
        let Some(owner) = id.and_then(|i| owner_in_id(&i.to_string_lossy())) else { continue };
        let comm = args[0].clone();
        if owner != me && alive(owner) {
            plan.kept.push(format!("process {pid} ({comm}) of running vmct {owner}"));
            continue;
        }
        plan.leftovers.push(Leftover::Process { pid, comm, owner });
    }
    for s in crate::backend::runsc::left_sandboxes(state_root, crate::backend::NAME_PREFIX) {
        match owner_in_id(&s.id) {
            Some(owner) if owner != me && alive(owner) => {
                plan.kept.push(format!("runsc sandbox {} of running vmct {owner}", s.id));
            }
            _ => plan.leftovers.push(Leftover::RunscSandbox(s)),
        }
    }
}

/// Scratch directories of probe processes that were killed before they could remove them.
fn probe_dirs(bases: &[&Path], plan: &mut Plan) {
    for base in bases {
        for e in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((pid, kind)) = SCRATCH_DIRS.iter().find_map(|(prefix, kind)| {
                Some((name.strip_prefix(prefix)?.rsplit('-').next()?.parse::<u32>().ok()?, *kind))
            }) else {
                continue;
            };
            let path = e.path();
            if alive(pid) {
                plan.kept.push(format!("{kind} {} of running pid {pid}", path.display()));
                continue;
            }
            plan.leftovers.push(Leftover::ProbeDir { kind, path, pid });
        }
    }
}

/// The parent cgroups recorded in the leftover state dirs among `kernel` that will be empty once
/// `kernel`'s cgroups are gone, deepest first; one that holds other cgroups is kept (named in `kept`).
fn cgroup_parents(kernel: &[container::Leftover], root: &Path, kept: &mut Vec<String>) -> Vec<Leftover> {
    let going: Vec<&Path> = kernel
        .iter()
        .filter_map(|l| match l {
            container::Leftover::Cgroup(d) => Some(d.as_path()),
            _ => None,
        })
        .collect();
    let mut parents: Vec<PathBuf> = kernel
        .iter()
        .filter_map(|l| match l {
            container::Leftover::Dir(d) => Some(crate::backend::peers::recorded_parents(d, root)),
            _ => None,
        })
        .flatten()
        .filter(|p| p.is_dir())
        .collect();
    parents.sort_by_key(|p| (std::cmp::Reverse(p.components().count()), p.clone()));
    parents.dedup();
    let (mut out, mut staying) = (Vec::new(), Vec::new());
    for p in &parents {
        let other = fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .find(|c| !going.contains(&c.as_path()) && (!parents.contains(c) || staying.contains(c)));
        match other {
            Some(o) => {
                kept.push(format!("parent cgroup {} (holds {})", p.display(), o.display()));
                staying.push(p.clone());
            }
            None => out.push(Leftover::CgroupParent(p.clone())),
        }
    }
    out
}

/// Most scans a real `vmct gc` makes ([`collect`]): each later pass removes what a killed process of the dead
/// run made after the previous scan.
pub const MAX_PASSES: usize = 4;

/// Everything gc would remove now (removes nothing): the one list both `--dry-run` and a real run use.
pub fn plan() -> Plan {
    let mut plan = Plan::default();
    processes(&mut plan);
    runsc_leftovers(Path::new(container::DEFAULT_STATE_ROOT), &mut plan);
    probe_dirs(&PROBE_DIR_BASES.map(Path::new), &mut plan);
    // Peer runtimes (crun, runc) of a dead harness go first: the container inits they parent are not
    // "owned" by them.
    let dying: Vec<i32> = plan
        .leftovers
        .iter()
        .filter_map(|l| match l {
            Leftover::Process { pid, .. } => i32::try_from(*pid).ok(),
            _ => None,
        })
        .collect();
    let c = container::find_in_except(crate::backend::NAME_PREFIX, Path::new(container::DEFAULT_STATE_ROOT), &dying);
    let parents = cgroup_parents(&c.leftovers, Path::new("/sys/fs/cgroup"), &mut plan.kept);
    plan.leftovers.extend(c.leftovers.into_iter().map(Leftover::Kernel));
    plan.leftovers.extend(parents);
    let images = crate::images::list();
    plan.leftovers.extend(crate::images::rootdisk::orphans(&images).into_iter().map(Leftover::RootDisk));
    plan.kept.extend(c.kept);
    plan.errors.extend(c.errors);
    plan
}

impl Plan {
    /// Remove (unless `dry_run`) every leftover in order and report it; a dry run reports the same lines.
    pub fn execute(self, dry_run: bool) -> GcReport {
        let mut rep = GcReport { kept: self.kept, errors: self.errors, ..Default::default() };
        for l in &self.leftovers {
            match if dry_run { Ok(()) } else { l.remove() } {
                Ok(()) => rep.removed.push(l.to_string()),
                Err(e) => rep.errors.push(format!("{l}: {e}")),
            }
        }
        rep
    }
}

/// Find and (unless `dry_run`) remove leftovers; host values of killed isolation runs are put back
/// from their journals (listed the same way by a dry run).
pub fn collect(dry_run: bool) -> GcReport {
    let first = plan();
    // Container state dirs this run removes: their usage records go too, in a dry run as in a real one.
    let doomed: std::collections::BTreeSet<String> = first
        .leftovers
        .iter()
        .filter_map(|l| match l {
            Leftover::Kernel(container::Leftover::Dir(d)) => Some(d.file_name()?.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let mut rep = first.execute(dry_run);
    if !dry_run {
        // A process of the dead run that this pass killed may have made more objects between the scan and its
        // end (crun makes a container's cgroup one hierarchy at a time): scan again until a pass finds nothing
        // (at most MAX_PASSES); an error of an earlier pass that a later one resolved is not reported.
        for _ in 1..MAX_PASSES {
            let again = plan();
            if again.leftovers.is_empty() {
                break;
            }
            let r = again.execute(false);
            rep.removed.extend(r.removed);
            rep.errors = r.errors;
        }
    }
    let j = crate::isolation::journal::recover_in(Path::new(crate::isolation::journal::DIR), dry_run);
    rep.removed.extend(j.removed);
    rep.kept.extend(j.kept);
    rep.errors.extend(j.errors);
    // After the containers: a dead owner's usage record goes once its container state is gone.
    let store = crate::images::store::collect(dry_run, &doomed);
    rep.removed.extend(store.removed);
    rep.kept.extend(store.kept);
    rep.errors.extend(store.errors);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runsc_sandboxes_of_dead_harnesses_are_listed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so 4194305 is never alive; pid 1 always is.
        for id in ["vmct-4194305-0", "vmct-1-0"] {
            let st = t.path().join(id).join("state");
            std::fs::create_dir_all(&st).unwrap();
            std::fs::write(st.join(format!("{id}_sandbox:{id}.state")), "{}").unwrap();
        }
        let mut plan = Plan::default();
        runsc_leftovers(t.path(), &mut plan);
        let listed: Vec<String> = plan.leftovers.iter().map(ToString::to_string).collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].starts_with("runsc sandbox vmct-4194305-0"), "{listed:?}");
        assert_eq!(plan.kept, vec!["runsc sandbox vmct-1-0 of running vmct 1".to_string()]);
        assert_eq!(owner_in_id("vmct-12-3"), Some(12));
        assert_eq!(owner_in_id("other-12-3"), None);
    }

    #[test]
    fn parent_cgroups_recorded_by_a_killed_peer_run_go_once_empty_and_busy_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cgroup");
        let (mine, busy) = (root.join("cpu/process_api/h1"), root.join("blkio/process_api/h1"));
        let leaf = mine.join("vmct-4194305-0");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::create_dir_all(busy.join("someone-else")).unwrap();
        let state = t.path().join("vmct-4194305-0");
        std::fs::create_dir(&state).unwrap();
        let record = [&mine, &root.join("cpu/process_api"), &busy, Path::new("/etc"), &root.join("cpu/../../x")];
        let text: String = record.iter().map(|p| format!("{}\n", p.display())).collect();
        std::fs::write(state.join(crate::backend::peers::CGROUP_PARENTS_FILE), text).unwrap();
        let kernel = [container::Leftover::Cgroup(leaf.clone()), container::Leftover::Dir(state)];
        let mut kept = Vec::new();
        let found = cgroup_parents(&kernel, &root, &mut kept);
        let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
        // Deepest first; the one holding another cgroup (and paths outside the root) are not listed.
        let want = [&mine, &root.join("cpu/process_api")]
            .map(|p| format!("parent cgroup {} a peer runtime created", p.display()));
        assert_eq!(listed, want, "{kept:?}");
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].contains(&busy.display().to_string()), "{kept:?}");
        std::fs::remove_dir(&leaf).unwrap();
        let rep = Plan { leftovers: found, ..Default::default() }.execute(false);
        assert!(rep.errors.is_empty() && !root.join("cpu/process_api").exists() && busy.exists(), "{rep:?}");
    }

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
        let mut plan = Plan::default();
        probe_dirs(&[t.path()], &mut plan);
        let listed = Plan { leftovers: plan.leftovers.clone(), ..Default::default() }.execute(true);
        assert!(dead.exists() && node.exists() && listed.removed.len() == 2, "dry run lists only: {listed:?}");
        let rep = plan.execute(false);
        assert!(!dead.exists() && !node.exists() && live.exists(), "{rep:?}");
        assert_eq!((rep.removed.len(), rep.kept.len(), rep.errors.len()), (2, 1, 0), "{rep:?}");
        assert_eq!(listed.removed, rep.removed);
    }

    /// The memory experiment's file set layer of a killed run goes; a running one's stays.
    #[test]
    fn page_cache_file_sets_of_dead_runs_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let prefix = crate::experiments::page_cache::LAYER_PREFIX;
        assert!(PROBE_DIR_BASES.contains(&crate::experiments::page_cache::LAYER_BASE), "gc scans where it is made");
        let dead = t.path().join(format!("{prefix}64m-4194305"));
        std::fs::create_dir_all(dead.join(".vmct-fileset")).unwrap();
        std::fs::write(dead.join(".vmct-fileset/data.bin"), b"x").unwrap();
        let live = t.path().join(format!("{prefix}64m-{}", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let mut plan = Plan::default();
        probe_dirs(&[t.path()], &mut plan);
        let rep = plan.execute(false);
        assert!(!dead.exists() && live.exists(), "{rep:?}");
        assert!(rep.removed.iter().any(|r| r.contains("page-cache file set layer")), "{rep:?}");
    }
}
