//! The jail of a `microvm` VMM process, modelled on Firecracker's jailer: its own pid, mount,
//! network and IPC namespaces, a mount namespace whose root is an empty per-VM directory, its own
//! cgroup (memory and `pids.max` 2), no capabilities and a non-root uid. The VMM enters it itself
//! right before its guest runs (see [`microvm::confine`]); this module prepares it.
//!
//! Preparing a jail ([`PreparedJail::prepare`]), done by a short-lived thread of the harness:
//! 1. `mkdir /tmp/vmct-jail-<seq>-<owner pid>` (the jail root as the host sees it; `vmct gc` removes
//!    those of dead owners);
//! 2. `unshare(CLONE_FS|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC)` and keep the three namespace files open;
//! 3. in the new mount namespace: everything private, bind the directory onto itself `nosuid,nodev,
//!    noexec`, `pivot_root` into it and detach the old root: the namespace sees only that directory;
//! 4. create the cgroup `vmct-jail-<seq>-<owner pid>` (memory; pids with `pids.max` 2: the bare VMM's one
//!    thread and KVM's worker thread, nothing else);
//! 5. the uid/gid: [`JAIL_ID_BASE`] plus the network namespace's inode number (unique among live
//!    namespaces), so no two live VMMs share a uid.
//!
//! The VMM reopens the namespace files through `/proc/<harness pid>/fd/N`, so nothing has to be
//! inherited across exec (which would force `fork` instead of `posix_spawn` on the launch path).
//! Its pid namespace is made at spawn ([`PidNsForSpawn`]). Why a non-root uid works although
//! /dev/kvm is `root:root 0600`: the VMM opens /dev/kvm and builds the VM before it drops to the uid
//! and keeps using those fds.
//!
//! Launch cost: creating a network namespace costs about 0.5 ms here, more than the whole confinement
//! budget, so by default jails are prepared ahead ([`JailMode::Pooled`]: one spare, refilled after an
//! instance stops, as Firecracker's jailer joins a network namespace its orchestrator made in advance
//! with `--netns`). `VMCT_VMM_JAIL=inline` prepares each jail on the launch path instead, `off` runs
//! the VMM unconfined (its seccomp filter still applies).
use container::cgroup::{CgroupDirs, Cgroups};
use container::limits::Limits;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where jail roots are made.
pub const JAIL_BASE: &str = "/tmp";
/// Name prefix of jail roots and their cgroups (`vmct-jail-<seq>-<owner pid>`).
pub const JAIL_PREFIX: &str = "vmct-jail-";
/// First uid/gid of jailed VMMs; each adds its network namespace's inode number (below 2^28).
pub const JAIL_ID_BASE: u32 = 0x4000_0000;
/// `pids.max` of a jailed VMM's cgroup: the bare VMM is a single thread, plus the kernel thread KVM
/// starts at the first `KVM_RUN` of a VM (`kvm-nx-lpage-recovery`), which it attaches to the cgroups
/// of the VM's owner (with 1, `KVM_RUN` fails with EAGAIN forever: measured on this project's hosts).
pub const JAIL_PIDS_MAX: u64 = 2;
/// Environment variable selecting [`JailMode`].
pub const JAIL_ENV: &str = "VMCT_VMM_JAIL";

/// Errors preparing a jail.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// A step failed.
    #[error("vmm jail: {what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A namespace or mount call failed.
    #[error("vmm jail: {what} failed: {source} (the jail needs root: CAP_SYS_ADMIN for namespaces and mounts)")]
    Sys {
        /// The call.
        what: &'static str,
        /// Cause.
        source: nix::Error,
    },
    /// The cgroup could not be created.
    #[error("vmm jail: {0}")]
    Cgroup(#[from] container::cgroup::CgroupError),
    /// The value of [`JAIL_ENV`] is not a mode.
    #[error("{JAIL_ENV}='{0}': expected pooled, inline or off")]
    Mode(String),
}

/// How VMMs are confined ([`JAIL_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailMode {
    /// Jails prepared ahead, one spare (default).
    Pooled,
    /// Each jail prepared on the launch path.
    Inline,
    /// No jail (the seccomp filter still applies).
    Off,
}

impl JailMode {
    /// From the environment value (unset = pooled).
    pub fn parse(v: Option<&str>) -> Result<JailMode, JailError> {
        match v {
            None | Some("") | Some("pooled") => Ok(JailMode::Pooled),
            Some("inline") => Ok(JailMode::Inline),
            Some("off") => Ok(JailMode::Off),
            Some(other) => Err(JailError::Mode(other.into())),
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> JailError {
    move |source| JailError::Sys { what, source }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JailError + 'a {
    move |source| JailError::Io { what, path: path.to_path_buf(), source }
}

/// One jail, ready for a VMM; removed (directory, cgroup, namespaces) on drop.
#[derive(Debug)]
pub struct PreparedJail {
    /// The jail root as the host sees it.
    pub dir: PathBuf,
    netns: File,
    ipcns: File,
    mntns: File,
    cgroup: CgroupDirs,
    /// uid and gid the VMM runs its guest as.
    pub uid: u32,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The namespaces of step 2-3, made on a thread of their own (a thread may unshare its mount
/// namespace once it has its own fs struct; the harness's other threads are unaffected).
fn make_namespaces(dir: PathBuf) -> Result<[File; 3], JailError> {
    std::thread::Builder::new()
        .name("vmct-jail".into())
        .spawn(move || -> Result<[File; 3], JailError> {
            let flags = CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET;
            unshare(flags | CloneFlags::CLONE_NEWIPC).map_err(sys("unshare(mnt, net, ipc)"))?;
            let open = |ns: &str| {
                let p = PathBuf::from(format!("/proc/thread-self/ns/{ns}"));
                File::open(&p).map_err(io("open", &p))
            };
            let files = [open("net")?, open("ipc")?, open("mnt")?];
            let none: Option<&str> = None;
            mount(none, "/", none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none).map_err(sys("make / private"))?;
            mount(Some(&dir), &dir, none, MsFlags::MS_BIND, none).map_err(sys("bind the jail root"))?;
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            mount(none, &dir, none, remount | MsFlags::MS_NOEXEC, none).map_err(sys("remount nosuid,nodev,noexec"))?;
            nix::unistd::chdir(&dir).map_err(sys("chdir to the jail root"))?;
            nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
            umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
            nix::unistd::chdir("/").map_err(sys("chdir /"))?;
            Ok(files)
        })
        .map_err(io("spawn a thread for", Path::new("the jail namespaces")))?
        .join()
        .unwrap_or_else(|_| Err(JailError::Mode("jail thread panicked".into())))
}

impl PreparedJail {
    /// Prepare a jail (steps 1-5 of the module docs); `cg` is the host's cgroup layout.
    pub fn prepare(cg: &dyn Cgroups) -> Result<PreparedJail, JailError> {
        let name = format!("{JAIL_PREFIX}{}-{}", SEQ.fetch_add(1, Ordering::Relaxed), std::process::id());
        let dir = Path::new(JAIL_BASE).join(&name);
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let remove_dir = |e| {
            let _ = std::fs::remove_dir(&dir);
            e
        };
        let [netns, ipcns, mntns] = make_namespaces(dir.clone()).map_err(remove_dir)?;
        let cgroup = cg.create(&name, &Limits { pids: Some(JAIL_PIDS_MAX), ..Default::default() });
        let cgroup = cgroup.map_err(|e| remove_dir(JailError::from(e)))?;
        let ino = netns.metadata().map(|m| m.ino()).unwrap_or(0);
        let uid = JAIL_ID_BASE + (ino & 0x0fff_ffff) as u32;
        Ok(PreparedJail { dir, netns, ipcns, mntns, cgroup, uid })
    }

    /// What the VMM gets as `--jail`.
    pub fn jail(&self) -> microvm::confine::Jail {
        let me = std::process::id();
        let fd = |f: &File| Some(PathBuf::from(format!("/proc/{me}/fd/{}", f.as_raw_fd())));
        let mut cgroups: Vec<PathBuf> = Vec::new();
        for (_, d) in &self.cgroup.dirs {
            if !cgroups.contains(d) {
                cgroups.push(d.clone());
            }
        }
        microvm::confine::Jail {
            netns: fd(&self.netns),
            ipcns: fd(&self.ipcns),
            mntns: fd(&self.mntns),
            cgroups,
            uid: self.uid,
            gid: self.uid,
        }
    }

    /// The cgroup of the jail (memory usage of the VMM).
    pub fn cgroup(&self) -> &CgroupDirs {
        &self.cgroup
    }
}

impl Drop for PreparedJail {
    fn drop(&mut self) {
        // The namespaces go when their files close (and the VMM has ended); the directory is only
        // mounted inside the jail's own mount namespace, so on the host it is a plain directory.
        let _ = container::cgroup::remove(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Jails for one backend: a spare prepared ahead ([`JailMode::Pooled`]) or none.
#[derive(Debug)]
pub struct JailPool {
    mode: JailMode,
    cgroups: Result<Box<dyn Cgroups>, String>,
    spare: Mutex<Vec<PreparedJail>>,
}

impl JailPool {
    /// A pool in `mode` for this host's cgroup layout.
    pub fn new(mode: JailMode) -> JailPool {
        let cgroups = container::cgroup::detect().map_err(|e| e.to_string());
        JailPool { mode, cgroups, spare: Mutex::new(Vec::new()) }
    }

    /// The mode.
    pub fn mode(&self) -> JailMode {
        self.mode
    }

    fn prepare(&self) -> Result<PreparedJail, JailError> {
        let cg = self.cgroups.as_ref().map_err(|e| JailError::Mode(format!("no cgroups for the jail: {e}")))?;
        PreparedJail::prepare(cg.as_ref())
    }

    /// A jail for the next VMM (None when the mode is off): the spare, or one prepared now.
    pub fn take(&self) -> Result<Option<PreparedJail>, JailError> {
        if self.mode == JailMode::Off {
            return Ok(None);
        }
        if let Some(j) = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(Some(j));
        }
        self.prepare().map(Some)
    }

    /// In pooled mode, prepare a spare if there is none (called after an instance stops, off the
    /// launch path). Failures are left for the next [`JailPool::take`] to report.
    pub fn refill(&self) {
        if self.mode != JailMode::Pooled {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_empty() {
            if let Ok(j) = self.prepare() {
                spare.push(j);
            }
        }
    }
}

/// The pid namespace of the next process this thread spawns: `unshare(CLONE_NEWPID)` makes it the
/// first process (pid 1) of a new namespace; dropping this restores the thread's own namespace for
/// later children (`setns` to the process's active pid namespace). Only this thread is affected,
/// and it must not start threads while this lives.
pub struct PidNsForSpawn(());

fn own_pid_ns() -> Result<&'static File, JailError> {
    static OWN: OnceLock<File> = OnceLock::new();
    if let Some(f) = OWN.get() {
        return Ok(f);
    }
    let p = Path::new("/proc/self/ns/pid");
    let f = File::open(p).map_err(io("open", p))?;
    Ok(OWN.get_or_init(|| f))
}

impl PidNsForSpawn {
    /// Make the next child of this thread pid 1 of a new pid namespace.
    pub fn enter() -> Result<PidNsForSpawn, JailError> {
        own_pid_ns()?;
        unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare(pid)"))?;
        Ok(PidNsForSpawn(()))
    }
}

impl Drop for PidNsForSpawn {
    fn drop(&mut self) {
        if let Ok(f) = own_pid_ns() {
            // Cannot fail for the caller's own active namespace as root; if it did, later children
            // of this thread would get a fresh pid namespace each, which is harmless.
            let _ = nix::sched::setns(f, CloneFlags::CLONE_NEWPID);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_are_named() {
        assert_eq!(JailMode::parse(None).unwrap(), JailMode::Pooled);
        assert_eq!(JailMode::parse(Some("inline")).unwrap(), JailMode::Inline);
        assert_eq!(JailMode::parse(Some("off")).unwrap(), JailMode::Off);
        let e = JailMode::parse(Some("loose")).unwrap_err().to_string();
        assert!(e.contains("VMCT_VMM_JAIL='loose'") && e.contains("pooled, inline or off"), "{e}");
    }
}
