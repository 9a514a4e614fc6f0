//! The jail of a `microvm` VMM process, modelled on Firecracker's jailer: the VMM is born in its own
//! pid, mount, network and IPC namespaces, with a root directory holding only what it needs, in its
//! own cgroup, without capabilities and as a non-root uid. The VMM itself then installs its seccomp
//! filter right before its guest runs ([`microvm::confine`]).
//!
//! Preparing a jail ([`PreparedJail::prepare`]) is done by a thread of the harness that then spawns
//! the VMM and ends (a *spawner*); children inherit the spawning thread's namespaces, root, cgroups
//! and credentials, so the VMM needs no privileged step of its own. The spawner, in order:
//! 1. `unshare(CLONE_FS|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC)`; the VMM's uid/gid is [`JAIL_ID_BASE`]
//!    plus the new network namespace's inode number (unique among live namespaces);
//! 2. fills the jail directory `/tmp/vmct-jail-<seq>-<owner pid>` (`vmct gc` removes those of dead
//!    owners): hard links (copies across filesystems) of the VMM binary and the guest image, and
//!    `dev/kvm`, a new device node owned by the VMM's uid (as the jailer does: /dev/kvm on the host
//!    is `root:root 0600`);
//! 3. joins the cgroup `vmct-jail-<seq>-<owner pid>` (memory, and pids with [`JAIL_PIDS_MAX`]) by
//!    writing its thread id to each `tasks` file (cgroup v1: threads can move alone);
//! 4. in its mount namespace: everything private, the jail bound onto itself `nosuid`, `pivot_root`
//!    into it, the old root detached;
//! 5. `unshare(CLONE_NEWPID)` (its next child is pid 1 of a new namespace), `no_new_privs`, an empty
//!    capability bounding set, no supplementary groups, then the uid/gid (thread-only `setres[ug]id`
//!    system calls: glibc's wrappers would change every thread of the harness), which clears its
//!    permitted, effective and ambient capabilities;
//! 6. waits for the VMM's command, spawns it (`posix_spawn`), hands the child back and ends.
//!
//! Launch cost: steps 1-5 cost about 1 ms here (a network namespace alone about 0.5 ms, joining a
//! v1 cgroup about 0.1 ms), five times the whole confinement budget, so by default a spare jail is
//! prepared ahead ([`JailMode::Pooled`], refilled after an instance stops: as Firecracker's jailer
//! joins a network namespace its orchestrator made in advance with `--netns`); the launch then only
//! hands the command to the spare's spawner. `VMCT_VMM_JAIL=inline` prepares each jail on the launch
//! path instead, `off` runs the VMM unjailed (its seccomp filter still applies).
//! On a cgroup v2 host a thread cannot join a cgroup of its own, so there the harness moves the VMM
//! into its cgroup right after the spawn (its first allocations are charged to the harness's cgroup);
//! this host is hybrid (v1), so that branch is not exercised here.
use container::cgroup::{CgroupDirs, Cgroups};
use container::limits::Limits;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

/// Where jail roots are made.
pub const JAIL_BASE: &str = "/tmp";
/// Name prefix of jail roots and their cgroups (`vmct-jail-<seq>-<owner pid>`).
pub const JAIL_PREFIX: &str = "vmct-jail-";
/// First uid/gid of jailed VMMs; each adds its network namespace's inode number (below 2^28).
pub const JAIL_ID_BASE: u32 = 0x4000_0000;
/// `pids.max` of a jailed VMM's cgroup: the spawner thread until it ends, the VMM's one thread, and
/// the kernel thread KVM starts at the first `KVM_RUN` (`kvm-nx-lpage-recovery`), which it attaches to
/// the cgroups of the VM's owner (without room for it `KVM_RUN` fails with EAGAIN: seen here).
pub const JAIL_PIDS_MAX: u64 = 3;
/// Environment variable selecting [`JailMode`].
pub const JAIL_ENV: &str = "VMCT_VMM_JAIL";
/// The VMM binary inside the jail.
pub const JAIL_VMM: &str = "/vmct-vmm";
/// The guest image inside the jail.
pub const JAIL_GUEST: &str = "/vmct-guest";
/// Linux's `MISC_MAJOR` 10, minor 232: /dev/kvm.
const KVM_DEV: (u64, u64) = (10, 232);

/// Errors preparing a jail or spawning into it.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// A file step failed.
    #[error("vmm jail: {what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A namespace, mount or credential call failed.
    #[error("vmm jail: {what} failed: {source} (the jail needs root)")]
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
    /// The spawner thread is gone or could not start.
    #[error("vmm jail: spawner thread: {0}")]
    Spawner(String),
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

fn errno(what: &'static str, rc: libc::c_long) -> Result<(), JailError> {
    if rc != 0 {
        return Err(JailError::Sys { what, source: nix::Error::last() });
    }
    Ok(())
}

/// Hard-link `from` to `to`, or copy it when they are on different filesystems.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<(), JailError> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => std::fs::copy(from, to).map(|_| ()).map_err(io("copy", from)),
        Err(e) => Err(io("hard-link", from)(e)),
    }
}

/// What goes into a jail besides /dev/kvm: (host file, name in the jail root).
#[derive(Debug, Clone)]
pub struct JailFiles {
    /// The static VMM binary.
    pub vmm: PathBuf,
    /// The guest image.
    pub guest: PathBuf,
}

/// A spawn request for a spawner: the command, answered with the child.
type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

/// One jail with its spawner thread waiting; removed (directory, cgroup) on drop.
#[derive(Debug)]
pub struct PreparedJail {
    /// The jail root as the host sees it.
    pub dir: PathBuf,
    cgroup: CgroupDirs,
    /// uid and gid the VMM runs as.
    pub uid: u32,
    /// The cgroup could not be joined by the spawner (v2): the VMM is moved after the spawn.
    attach_after_spawn: bool,
    spawner: Option<(mpsc::Sender<Request>, std::thread::JoinHandle<()>)>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Steps 1-5 on the spawner thread; returns the uid.
fn enter_jail(dir: &Path, files: &JailFiles, cgroup: &CgroupDirs) -> Result<(u32, bool), JailError> {
    let flags = CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(sys("unshare(mnt, net, ipc)"))?;
    let net = Path::new("/proc/thread-self/ns/net");
    let ino = std::fs::metadata(net).map_err(io("stat", net))?.ino();
    let uid = JAIL_ID_BASE + (ino & 0x0fff_ffff) as u32;
    // 2. The jail's files.
    link_or_copy(&files.vmm, &dir.join(&JAIL_VMM[1..]))?;
    link_or_copy(&files.guest, &dir.join(&JAIL_GUEST[1..]))?;
    let dev = dir.join("dev");
    std::fs::create_dir(&dev).map_err(io("create", &dev))?;
    let kvm = dev.join("kvm");
    let kvm_dev = nix::sys::stat::makedev(KVM_DEV.0, KVM_DEV.1);
    nix::sys::stat::mknod(&kvm, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o600), kvm_dev)
        .map_err(sys("mknod dev/kvm"))?;
    std::os::unix::fs::chown(&kvm, Some(uid), Some(uid)).map_err(io("chown", &kvm))?;
    // 3. The cgroup: this thread alone (v1 `tasks`); on v2 the VMM is moved after the spawn.
    let mut attach_after_spawn = false;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() }.to_string();
    let mut seen: Vec<&Path> = Vec::new();
    for (_, d) in &cgroup.dirs {
        if seen.contains(&d.as_path()) {
            continue;
        }
        seen.push(d);
        let tasks = d.join("tasks");
        if tasks.exists() {
            std::fs::write(&tasks, &tid).map_err(io("join cgroup (tasks)", &tasks))?;
        } else {
            attach_after_spawn = true;
        }
    }
    // 4. The root.
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none).map_err(sys("make / private"))?;
    mount(Some(dir), dir, none, MsFlags::MS_BIND, none).map_err(sys("bind the jail root"))?;
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    mount(none, dir, none, remount, none).map_err(sys("remount the jail root nosuid"))?;
    nix::unistd::chdir(dir).map_err(sys("chdir to the jail root"))?;
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    // 5. Pid namespace for the child, then privileges (this thread only).
    unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare(pid)"))?;
    // SAFETY: prctl with constant arguments, affecting this thread.
    errno("prctl(PR_SET_NO_NEW_PRIVS)", unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
    caps::clear(None, caps::CapSet::Bounding).map_err(|e| JailError::Spawner(format!("drop bounding set: {e}")))?;
    // SAFETY: raw thread-only credential system calls with plain integer arguments.
    unsafe {
        errno("setgroups([])", libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()))?;
        errno("setresgid", libc::syscall(libc::SYS_setresgid, uid, uid, uid))?;
        errno("setresuid", libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
    }
    let left = caps::read(None, caps::CapSet::Permitted).map_err(|e| JailError::Spawner(e.to_string()))?;
    if !left.is_empty() {
        return Err(JailError::Spawner(format!("capabilities left after the uid change: {left:?}")));
    }
    Ok((uid, attach_after_spawn))
}

impl PreparedJail {
    /// Prepare a jail (module docs, steps 1-5) with `files`; `cg` is the host's cgroup layout.
    pub fn prepare(cg: &dyn Cgroups, files: &JailFiles) -> Result<PreparedJail, JailError> {
        let name = format!("{JAIL_PREFIX}{}-{}", SEQ.fetch_add(1, Ordering::Relaxed), std::process::id());
        let dir = Path::new(JAIL_BASE).join(&name);
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let cgroup = match cg.create(&name, &Limits { pids: Some(JAIL_PIDS_MAX), ..Default::default() }) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
        };
        let mut jail = PreparedJail { dir, cgroup, uid: 0, attach_after_spawn: false, spawner: None };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (dir, files, cgroup) = (jail.dir.clone(), files.clone(), jail.cgroup.clone());
        let handle = std::thread::Builder::new()
            .name("vmct-jail".into())
            .spawn(move || {
                let entered = enter_jail(&dir, &files, &cgroup);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                // 6. One spawn, then this thread (and its namespaces and credentials) ends.
                if let Ok((mut cmd, reply)) = req_rx.recv() {
                    let child = cmd.spawn();
                    drop(cmd);
                    let _ = reply.send(child);
                }
            })
            .map_err(|e| JailError::Spawner(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok((uid, attach_after_spawn))) => {
                jail.uid = uid;
                jail.attach_after_spawn = attach_after_spawn;
                jail.spawner = Some((req_tx, handle));
                Ok(jail)
            }
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(JailError::Spawner("ended before the jail was ready".into()))
            }
        }
    }

    /// Spawn `cmd` (a command line of jail paths, [`JAIL_VMM`] ...) in this jail; one spawn per jail.
    pub fn spawn(&mut self, cmd: Command) -> std::io::Result<Child> {
        let gone = || std::io::Error::other("vmm jail: the spawner thread is gone");
        let (tx, handle) = self.spawner.take().ok_or_else(gone)?;
        let (reply_tx, reply_rx) = mpsc::channel();
        tx.send((cmd, reply_tx)).map_err(|_| gone())?;
        let child = reply_rx.recv().map_err(|_| gone())?;
        let _ = handle.join();
        let child = child?;
        if self.attach_after_spawn {
            let procs: Vec<PathBuf> = self.cgroup.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect();
            for p in procs {
                std::fs::write(&p, child.id().to_string())?;
            }
        }
        Ok(child)
    }

    /// The cgroup of the jail.
    pub fn cgroup(&self) -> &CgroupDirs {
        &self.cgroup
    }
}

impl Drop for PreparedJail {
    fn drop(&mut self) {
        // An unused spawner ends when its request channel closes.
        if let Some((tx, handle)) = self.spawner.take() {
            drop(tx);
            let _ = handle.join();
        }
        // The jail root is mounted only inside its own mount namespace: on the host a plain directory.
        // A spawner that just ended can stay listed in the cgroup for a moment after `join` (its
        // exit is not finished), and removing a busy cgroup kills what it lists: wait until the
        // harness is gone from it; if it does not go, leave the cgroup to `vmct gc`.
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let ours = |c: &CgroupDirs| c.dirs.iter().any(|(_, d)| container::cgroup::procs(d).contains(&me));
        while ours(&self.cgroup) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if ours(&self.cgroup) {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
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

    fn prepare(&self, files: &JailFiles) -> Result<PreparedJail, JailError> {
        let cg = self.cgroups.as_ref().map_err(|e| JailError::Spawner(format!("no cgroups for the jail: {e}")))?;
        PreparedJail::prepare(cg.as_ref(), files)
    }

    /// A jail for the next VMM (None when the mode is off): the spare, or one prepared now.
    pub fn take(&self, files: &JailFiles) -> Result<Option<PreparedJail>, JailError> {
        if self.mode == JailMode::Off {
            return Ok(None);
        }
        if let Some(j) = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(Some(j));
        }
        self.prepare(files).map(Some)
    }

    /// In pooled mode, prepare a spare if there is none (called after an instance stops, off the
    /// launch path). A failure is left for the next [`JailPool::take`] to report.
    pub fn refill(&self, files: &JailFiles) {
        if self.mode != JailMode::Pooled {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_empty() {
            if let Ok(j) = self.prepare(files) {
                spare.push(j);
            }
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

    #[test]
    fn link_or_copy_links_on_one_filesystem() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        link_or_copy(&a, &t.path().join("b")).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().nlink(), 2);
        assert!(link_or_copy(&t.path().join("missing"), &t.path().join("c")).is_err());
    }
}
