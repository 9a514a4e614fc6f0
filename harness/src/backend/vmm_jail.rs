//! The jail of a `microvm` VMM process, modelled on Firecracker's jailer: the VMM is born in its own
//! pid, mount, network and IPC namespaces, with a root directory holding only what it needs, in its
//! own cgroup, without capabilities and as a non-root uid. The VMM itself then installs its seccomp
//! filter right before its guest runs ([`microvm::confine`]).
//!
//! Preparing a jail ([`PreparedJail::prepare`]), on a short-lived thread of the harness:
//! 1. `unshare(CLONE_FS|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC)`, keeping the three namespace files; the
//!    VMM's uid/gid is [`JAIL_ID_BASE`] plus the new network namespace's inode number (unique among
//!    live namespaces);
//! 2. the jail directory `/tmp/vmct-jail-<seq>-<owner pid>` (`vmct gc` removes those of dead owners)
//!    gets hard links (copies across filesystems) of the VMM binary and the guest image, and
//!    `dev/kvm`, a new device node owned by the VMM's uid (as the jailer does: /dev/kvm on the host is
//!    `root:root 0600`, which a non-root uid could not open);
//! 3. in the new mount namespace: everything private, the jail bound onto itself `nosuid`,
//!    `pivot_root` into it, the old root detached;
//! 4. the cgroup `vmct-jail-<seq>-<owner pid>` (memory, and pids with [`JAIL_PIDS_MAX`]).
//!
//! Spawning into it ([`PreparedJail::spawn`]): children inherit the spawning thread's namespaces,
//! root, cgroups and credentials, so the launching thread itself steps into the jail for the one
//! `posix_spawn` and back out ([`ThreadInJail`]), every step a per-thread one (about 0.1 ms in all
//! here): `setns` into the network, IPC and mount namespaces (the thread has its own fs struct),
//! `unshare(CLONE_NEWPID)` (the child is pid 1 of a new namespace), its thread id into the cgroup's
//! `tasks` files (cgroup v1 moves threads alone), no supplementary groups, and the jail's uid/gid as
//! real and effective ids through the raw system calls (glibc's wrappers would change every thread
//! of the harness), keeping root as the saved id to come back. The VMM is exec'd with no
//! capabilities (not root: none are computed at exec) from a `nosuid` root.
//!
//! Launch cost: preparing costs about 1-2 ms here (a network namespace alone about 0.5 ms, and its
//! teardown runs later in a kernel worker that competes with the next launches). By default each jail
//! is prepared on the launch path ([`JailMode::Inline`]): that is the cold launch, and the container it
//! is compared with also makes its namespaces and cgroups on its launch path (issue 18 item 7: a warm
//! path is reported only in pairs, for both models alike, and cold stays the default comparison).
//! Measured side by side here (release, quick startup plan, n = 30 sequential launches, 2 rounds,
//! 2026-12-01): microVM launch-to-ready median 2.73 / 2.91 ms inline against 1.65 / 1.53 ms pooled; the
//! container 3.37-3.66 ms, the process 0.69-0.80 ms in the same runs.
//! `VMCT_VMM_JAIL=pooled` prepares jails ahead and reuses them ([`JailMode::Pooled`]): a spare is
//! prepared after an instance stops if none is left, and the jail of a VMM that has ended is cleaned
//! ([`JailPool::recycle`]) and kept for a later VMM, never for two live VMMs at once (as Firecracker's
//! jailer joins a network namespace its orchestrator made in advance with `--netns`): a warm path with
//! no container counterpart yet, so never the default. `off` runs the VMM unjailed (its seccomp filter
//! still applies).
//!
//! Open files: a live VMM costs the harness only its two pipes (stdin, output). A jail holds its three
//! namespace files after its spawn only while it may be reused: at most [`JAIL_SPARES`] jails of a pool
//! (spares and jails of live VMMs together) hold a [`KeepPermit`]; any other jail drops them right after
//! its spawn (the VMM keeps the namespaces alive) and is removed, not reused, when its VMM stops. The
//! cgroup `tasks` files are opened for each spawn, not held (the parents', the same for every jail,
//! once per launching thread). A density sweep of thousands of VMMs once held 9 fds per VMM and
//! stopped on the harness's `RLIMIT_NOFILE` at 2219 VMMs (20000 files) while 5000 containers fitted.
//!
//! Not done: the capability bounding set stays the host's (dropping it is per thread and cannot be
//! undone on the launching thread; in the VMM it would cost about 0.1 ms). It only limits what an
//! `execve` could gain, and the VMM is not root, has a `nosuid` root, and its filter forbids `execve`.
//! On a cgroup v2 host a thread cannot join a cgroup alone, so there the harness moves the VMM into its
//! cgroup right after the spawn (its first allocations are charged to the harness's cgroup); this
//! host is hybrid (v1), so that branch is not exercised here.
use container::cgroup::{CgroupDirs, Cgroups};
use container::limits::Limits;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where jail roots are made.
pub const JAIL_BASE: &str = "/tmp";
/// Name prefix of jail roots and their cgroups (`vmct-jail-<seq>-<owner pid>`).
pub const JAIL_PREFIX: &str = "vmct-jail-";
/// First uid/gid of jailed VMMs; each adds its network namespace's inode number (below 2^28).
pub const JAIL_ID_BASE: u32 = 0x4000_0000;
/// `pids.max` of a jailed VMM's cgroup: the launching harness thread while it spawns, the VMM's one
/// thread, and the kernel thread KVM starts at the first `KVM_RUN` (`kvm-nx-lpage-recovery`), which it
/// attaches to the cgroups of the VM's owner (without room for it `KVM_RUN` fails with EAGAIN: seen
/// here), and one thread per secondary vCPU that runs guest code (`microvm::smp`, at most
/// [`microvm::layout::MAX_RUNNING_SECONDARIES`]).
pub const JAIL_PIDS_MAX: u64 = 3 + microvm::layout::MAX_RUNNING_SECONDARIES as u64;
/// Jails a pool keeps for reuse at most, spares and jails of live VMMs together ([`KeepPermit`]s; the
/// most VMMs a run keeps alive at once is larger only in the density sweep, whose extra jails are
/// prepared at launch, release their namespace files after the spawn and are removed at stop).
pub const JAIL_SPARES: usize = 8;
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
    /// Jails prepared ahead and reused (a warm path: `VMCT_VMM_JAIL=pooled`).
    Pooled,
    /// Each jail prepared on the launch path: the cold launch (default).
    Inline,
    /// No jail (the seccomp filter still applies).
    Off,
}

impl JailMode {
    /// From the environment value (unset = inline, the cold launch).
    pub fn parse(v: Option<&str>) -> Result<JailMode, JailError> {
        match v {
            Some("pooled") => Ok(JailMode::Pooled),
            None | Some("") | Some("inline") => Ok(JailMode::Inline),
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
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(from, to).map(|_| ()).map_err(io("copy", from))
        }
        Err(e) => Err(io("hard-link", from)(e)),
    }
}

/// What goes into a jail besides /dev/kvm: (host file, name in the jail root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailFiles {
    /// The static VMM binary.
    pub vmm: PathBuf,
    /// The guest image.
    pub guest: PathBuf,
}

/// The right of one jail to outlive its VMM and be reused, holding its namespace files meanwhile;
/// a pool hands out at most [`JAIL_SPARES`] (counted in the shared counter, given back on drop).
#[derive(Debug)]
pub struct KeepPermit(Arc<AtomicUsize>);

impl KeepPermit {
    /// A permit from `held` (the permits out now) if fewer than `max` are out.
    pub fn acquire(held: &Arc<AtomicUsize>, max: usize) -> Option<KeepPermit> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| KeepPermit(held.clone()))
    }
}

impl Drop for KeepPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One jail, ready for a VMM; removed (directory, cgroup, namespaces) on drop.
#[derive(Debug)]
pub struct PreparedJail {
    /// The jail root as the host sees it.
    pub dir: PathBuf,
    /// The jail's network, IPC and mount namespaces: until the spawn, and after it only with `keep`.
    ns: Option<[File; 3]>,
    /// Present when the jail may be reused after its VMM (module docs, open files).
    keep: Option<KeepPermit>,
    cgroup: CgroupDirs,
    /// Per v1 hierarchy: the cgroup's `tasks` file and its parent's (where the launching thread
    /// returns), opened at each spawn (v2 has no `tasks`: empty).
    tasks: Vec<(PathBuf, PathBuf)>,
    /// uid and gid the VMM runs as.
    pub uid: u32,
    files: JailFiles,
}

/// The `tasks` files of `cgroup` and of its parents, for the v1 hierarchies that have them.
fn tasks_paths(cgroup: &CgroupDirs) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut seen: Vec<&Path> = Vec::new();
    for (_, d) in &cgroup.dirs {
        let (tasks, parent) = (d.join("tasks"), d.parent().unwrap_or(Path::new("/")).join("tasks"));
        if seen.contains(&d.as_path()) || !tasks.exists() {
            continue;
        }
        seen.push(d);
        out.push((tasks, parent));
    }
    out
}

fn open_for_write(p: &Path) -> Result<File, JailError> {
    std::fs::OpenOptions::new().write(true).open(p).map_err(io("open", p))
}

/// Entries of a jail root that belong to the jail itself (anything else a VMM run left is removed
/// before the jail is reused).
const JAIL_ENTRIES: [&str; 3] = ["vmct-vmm", "vmct-guest", "dev"];

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Steps 1-3 on a thread of their own; returns the namespace files (net, ipc, mnt) and the uid.
fn make_jail(dir: PathBuf, files: JailFiles) -> Result<([File; 3], u32), JailError> {
    let thread = std::thread::Builder::new().name("vmct-jail".into()).spawn(move || {
        let flags = CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET;
        unshare(flags | CloneFlags::CLONE_NEWIPC).map_err(sys("unshare(mnt, net, ipc)"))?;
        let open = |ns: &str| {
            let p = PathBuf::from(format!("/proc/thread-self/ns/{ns}"));
            File::open(&p).map_err(io("open", &p))
        };
        let ns = [open("net")?, open("ipc")?, open("mnt")?];
        let ino = ns[0].metadata().map_err(io("stat", Path::new("the jail network namespace")))?.ino();
        let uid = JAIL_ID_BASE + (ino & 0x0fff_ffff) as u32;
        // 2. The jail's files.
        link_or_copy(&files.vmm, &dir.join(&JAIL_VMM[1..]))?;
        link_or_copy(&files.guest, &dir.join(&JAIL_GUEST[1..]))?;
        let dev = dir.join("dev");
        std::fs::create_dir(&dev).map_err(io("create", &dev))?;
        let kvm = dev.join("kvm");
        let (kind, mode) = (nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o600));
        nix::sys::stat::mknod(&kvm, kind, mode, nix::sys::stat::makedev(KVM_DEV.0, KVM_DEV.1))
            .map_err(sys("mknod dev/kvm"))?;
        std::os::unix::fs::chown(&kvm, Some(uid), Some(uid)).map_err(io("chown", &kvm))?;
        // 3. The root.
        let none: Option<&str> = None;
        mount(none, "/", none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none).map_err(sys("make / private"))?;
        mount(Some(&dir), &dir, none, MsFlags::MS_BIND, none).map_err(sys("bind the jail root"))?;
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
        mount(none, &dir, none, remount, none).map_err(sys("remount the jail root nosuid"))?;
        nix::unistd::chdir(&dir).map_err(sys("chdir to the jail root"))?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
        Ok((ns, uid))
    });
    thread
        .map_err(|e| JailError::Spawner(e.to_string()))?
        .join()
        .unwrap_or_else(|_| Err(JailError::Spawner("the jail thread panicked".into())))
}

impl PreparedJail {
    /// Prepare a jail (module docs, steps 1-4) with `files`; `cg` is the host's cgroup layout.
    pub fn prepare(cg: &dyn Cgroups, files: &JailFiles) -> Result<PreparedJail, JailError> {
        let name = format!("{JAIL_PREFIX}{}-{}", SEQ.fetch_add(1, Ordering::Relaxed), std::process::id());
        let dir = Path::new(JAIL_BASE).join(&name);
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let made = make_jail(dir.clone(), files.clone()).and_then(|(ns, uid)| {
            let cgroup = cg.create(&name, &Limits { pids: Some(JAIL_PIDS_MAX), ..Default::default() }, None)?;
            let tasks = tasks_paths(&cgroup);
            Ok((ns, uid, cgroup, tasks))
        });
        match made {
            Ok((ns, uid, cgroup, tasks)) => {
                Ok(PreparedJail { dir, ns: Some(ns), keep: None, cgroup, tasks, uid, files: files.clone() })
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Spawn `cmd` (a command line of jail paths, [`JAIL_VMM`] ...) into this jail from the calling
    /// thread (see [`ThreadInJail`]). A jail without a [`KeepPermit`] drops its namespace files after
    /// the spawn (its VMM keeps them alive): it serves this one VMM only.
    pub fn spawn(&mut self, mut cmd: Command) -> std::io::Result<Child> {
        let thread = ThreadInJail::enter(self).map_err(std::io::Error::other)?;
        let child = cmd.spawn();
        drop(cmd);
        thread.leave().map_err(std::io::Error::other)?;
        if self.keep.is_none() {
            self.ns = None;
        }
        let child = child?;
        if self.tasks.is_empty() {
            for (_, d) in &self.cgroup.dirs {
                std::fs::write(d.join("cgroup.procs"), child.id().to_string())?;
            }
        }
        Ok(child)
    }

    /// Make the jail ready for another VMM once its VMM has ended: remove what the run left in the
    /// jail root (snapshot and restore directories). Nothing else a VMM can create under its seccomp
    /// filter outlives it: no sockets, SysV or POSIX IPC objects, mounts or processes.
    fn clean(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            if JAIL_ENTRIES.iter().any(|n| e.file_name() == *n) {
                continue;
            }
            let p = e.path();
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// The cgroup of the jail.
    pub fn cgroup(&self) -> &CgroupDirs {
        &self.cgroup
    }

    /// Whether the jail may serve another VMM after this one: it holds a [`KeepPermit`] and its
    /// namespace files.
    pub fn reusable(&self) -> bool {
        self.keep.is_some() && self.ns.is_some()
    }
}

/// The launching thread's own namespaces, kept per thread (they never change for it).
struct HostNs {
    net: File,
    ipc: File,
    mnt: File,
    pid: File,
}

thread_local! {
    static HOST_NS: std::cell::OnceCell<HostNs> = const { std::cell::OnceCell::new() };
    /// The `tasks` files the launching thread returns to (the jails' parents: the same for every
    /// jail of a hierarchy), opened once per thread.
    static PARENT_TASKS: std::cell::RefCell<Vec<(PathBuf, File)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A descriptor of the `tasks` file `path` of a jail's parent cgroup, from the thread's cache.
fn parent_tasks(path: &Path) -> Result<File, JailError> {
    PARENT_TASKS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, f)) = c.iter().find(|(p, _)| p == path) {
            return f.try_clone().map_err(io("dup", path));
        }
        let f = open_for_write(path)?;
        let dup = f.try_clone().map_err(io("dup", path))?;
        c.push((path.to_path_buf(), f));
        Ok(dup)
    })
}

/// The calling thread, stepped into a jail for one spawn; [`ThreadInJail::leave`] (or drop) restores
/// it exactly: ids, groups, cgroups, pid namespace for children, mount namespace and working
/// directory, IPC and network namespaces. A restore that fails would leave this harness thread in a
/// jail, so it panics.
pub struct ThreadInJail {
    ids: (libc::uid_t, libc::uid_t, libc::uid_t, libc::gid_t, libc::gid_t, libc::gid_t),
    groups: Vec<libc::gid_t>,
    cwd: Option<File>,
    /// `tasks` files to return to, one per cgroup joined.
    back: Vec<File>,
    done: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Net,
    Ipc,
    Mnt,
    Pid,
    Cgroups,
    Ids,
}

fn raw(what: &'static str, rc: libc::c_long) -> Result<(), JailError> {
    errno(what, rc)
}

impl ThreadInJail {
    /// Step into `jail` (which must still hold its namespace files: not yet spawned into, or reusable).
    pub fn enter(jail: &PreparedJail) -> Result<ThreadInJail, JailError> {
        let [netns, ipcns, mntns] = jail
            .ns
            .as_ref()
            .ok_or_else(|| JailError::Spawner("the jail served its VMM and released its namespaces".into()))?;
        let host = HOST_NS.with(|h| -> Result<(), JailError> {
            if h.get().is_some() {
                return Ok(());
            }
            let open = |p: &str| File::open(p).map_err(io("open", Path::new(p)));
            let ns = HostNs {
                net: open("/proc/thread-self/ns/net")?,
                ipc: open("/proc/thread-self/ns/ipc")?,
                mnt: open("/proc/thread-self/ns/mnt")?,
                pid: open("/proc/self/ns/pid")?,
            };
            let _ = h.set(ns);
            Ok(())
        });
        host?;
        let (mut ru, mut eu, mut su, mut rg, mut eg, mut sg) = (0, 0, 0, 0, 0, 0);
        // SAFETY: valid out-pointers for the two calls.
        unsafe {
            libc::getresuid(&mut ru, &mut eu, &mut su);
            libc::getresgid(&mut rg, &mut eg, &mut sg);
        }
        let groups = nix::unistd::getgroups().map_err(sys("getgroups"))?.into_iter().map(|g| g.as_raw()).collect();
        let mut t = ThreadInJail {
            ids: (ru, eu, su, rg, eg, sg),
            groups,
            cwd: File::open(".").ok(),
            back: Vec::new(),
            done: Vec::new(),
        };
        // The cgroup first: its files are not visible from the jail's mount namespace.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() }.to_string();
        t.done.push(Step::Cgroups);
        for (tasks, parent) in &jail.tasks {
            let back = parent_tasks(parent)?;
            open_for_write(tasks)?.write_all(tid.as_bytes()).map_err(io("join cgroup of", &jail.dir))?;
            t.back.push(back);
        }
        nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(sys("setns(jail network namespace)"))?;
        t.done.push(Step::Net);
        nix::sched::setns(ipcns, CloneFlags::CLONE_NEWIPC).map_err(sys("setns(jail IPC namespace)"))?;
        t.done.push(Step::Ipc);
        // A thread started by this one since the last spawn shares its fs struct, which setns(mnt)
        // refuses: take a private one again (a no-op when it is already private).
        unshare(CloneFlags::CLONE_FS).map_err(sys("unshare(CLONE_FS)"))?;
        nix::sched::setns(mntns, CloneFlags::CLONE_NEWNS).map_err(sys("setns(jail mount namespace)"))?;
        t.done.push(Step::Mnt);
        unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare(pid)"))?;
        t.done.push(Step::Pid);
        let id = jail.uid;
        t.done.push(Step::Ids);
        // SAFETY: raw thread-only credential system calls with plain arguments; the saved ids stay
        // the caller's so `leave` can come back.
        unsafe {
            raw("setgroups([])", libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()))?;
            raw("setresgid", libc::syscall(libc::SYS_setresgid, id, id, sg))?;
            raw("setresuid", libc::syscall(libc::SYS_setresuid, id, id, su))?;
        }
        Ok(t)
    }

    fn restore(&mut self) -> Result<(), JailError> {
        let (ru, eu, su, rg, eg, sg) = self.ids;
        while let Some(step) = self.done.pop() {
            match step {
                // SAFETY: raw thread-only credential system calls back to the saved values.
                Step::Ids => unsafe {
                    raw("setresuid back", libc::syscall(libc::SYS_setresuid, ru, eu, su))?;
                    raw("setresgid back", libc::syscall(libc::SYS_setresgid, rg, eg, sg))?;
                    let n = self.groups.len();
                    raw("setgroups back", libc::syscall(libc::SYS_setgroups, n, self.groups.as_ptr()))?;
                },
                Step::Cgroups => {
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() }.to_string();
                    for back in self.back.drain(..) {
                        (&back).write_all(tid.as_bytes()).map_err(io("leave cgroup", Path::new("(parent tasks)")))?;
                    }
                }
                Step::Pid => HOST_NS.with(|h| -> Result<(), JailError> {
                    let f = &h.get().ok_or_else(|| JailError::Spawner("host namespaces lost".into()))?.pid;
                    nix::sched::setns(f, CloneFlags::CLONE_NEWPID).map_err(sys("setns(own pid namespace)"))
                })?,
                Step::Mnt => HOST_NS.with(|h| -> Result<(), JailError> {
                    let f = &h.get().ok_or_else(|| JailError::Spawner("host namespaces lost".into()))?.mnt;
                    nix::sched::setns(f, CloneFlags::CLONE_NEWNS).map_err(sys("setns(own mount namespace)"))?;
                    if let Some(cwd) = &self.cwd {
                        nix::unistd::fchdir(cwd).map_err(sys("fchdir back"))?;
                    }
                    Ok(())
                })?,
                Step::Ipc => HOST_NS.with(|h| -> Result<(), JailError> {
                    let f = &h.get().ok_or_else(|| JailError::Spawner("host namespaces lost".into()))?.ipc;
                    nix::sched::setns(f, CloneFlags::CLONE_NEWIPC).map_err(sys("setns(own IPC namespace)"))
                })?,
                Step::Net => HOST_NS.with(|h| -> Result<(), JailError> {
                    let f = &h.get().ok_or_else(|| JailError::Spawner("host namespaces lost".into()))?.net;
                    nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(sys("setns(own network namespace)"))
                })?,
            }
        }
        Ok(())
    }

    /// Step back out.
    pub fn leave(mut self) -> Result<(), JailError> {
        self.restore()
    }
}

impl Drop for ThreadInJail {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            panic!("vmm jail: cannot bring the launching thread back out of the jail: {e}");
        }
    }
}

impl Drop for PreparedJail {
    fn drop(&mut self) {
        // The jail root is mounted only inside its own mount namespace: on the host a plain directory.
        // Removing a busy cgroup kills what it lists: never let that be the harness (its launching
        // thread visits the cgroup for a spawn); if it stays listed, leave the cgroup to `vmct gc`.
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + super::REAP_GRACE;
        let ours = |c: &CgroupDirs| c.dirs.iter().any(|(_, d)| container::cgroup::procs(d).contains(&me));
        while ours(&self.cgroup) && std::time::Instant::now() < deadline {
            std::thread::sleep(super::REAP_POLL);
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
    /// [`KeepPermit`]s out (spares and reusable jails of live VMMs), at most [`JAIL_SPARES`].
    kept: Arc<AtomicUsize>,
}

impl JailPool {
    /// A pool in `mode` for this host's cgroup layout.
    pub fn new(mode: JailMode) -> JailPool {
        let cgroups = container::cgroup::detect().map_err(|e| e.to_string());
        JailPool { mode, cgroups, spare: Mutex::new(Vec::new()), kept: Arc::new(AtomicUsize::new(0)) }
    }

    /// Jails of this pool that hold their namespace files for reuse (spares and jails of live VMMs
    /// that will be reused), at most [`JAIL_SPARES`].
    pub fn kept(&self) -> usize {
        self.kept.load(Ordering::Acquire)
    }

    fn permit(&self) -> Option<KeepPermit> {
        (self.mode == JailMode::Pooled).then(|| KeepPermit::acquire(&self.kept, JAIL_SPARES)).flatten()
    }

    /// The mode.
    pub fn mode(&self) -> JailMode {
        self.mode
    }

    fn prepare(&self, files: &JailFiles) -> Result<PreparedJail, JailError> {
        let cg = self.cgroups.as_ref().map_err(|e| JailError::Spawner(format!("no cgroups for the jail: {e}")))?;
        PreparedJail::prepare(cg.as_ref(), files)
    }

    /// A jail for the next VMM (None when the mode is off): a spare, or one prepared now, which is
    /// reusable after its VMM if a [`KeepPermit`] is left (else it serves that VMM only).
    pub fn take(&self, files: &JailFiles) -> Result<Option<PreparedJail>, JailError> {
        if self.mode == JailMode::Off {
            return Ok(None);
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(j) if j.files == *files => Ok(Some(j)),
            other => {
                // A spare for other files is removed (with its permit) before a new jail asks for one.
                drop(other);
                let mut j = self.prepare(files)?;
                j.keep = self.permit();
                Ok(Some(j))
            }
        }
    }

    /// Take back the jail of a VMM that has ended (reaped), to be used again by a later VMM; in
    /// modes other than pooled, for a jail without a [`KeepPermit`], or beyond [`JAIL_SPARES`]
    /// spares, it is removed instead.
    pub fn recycle(&self, jail: PreparedJail) {
        if self.mode != JailMode::Pooled || !jail.reusable() || jail.clean().is_err() {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < JAIL_SPARES {
            spare.push(jail);
        }
    }

    /// In pooled mode, prepare a spare if there is none (called after an instance stops, off the
    /// launch path) and a [`KeepPermit`] is left (when all are out, live VMMs hold them and their
    /// jails come back as spares when they stop). A failure is left for the next [`JailPool::take`]
    /// to report.
    pub fn refill(&self, files: &JailFiles) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if !spare.is_empty() {
            return;
        }
        let Some(keep) = self.permit() else { return };
        if let Ok(mut j) = self.prepare(files) {
            j.keep = Some(keep);
            spare.push(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_are_named() {
        // Cold by default: the container it is compared with makes its namespaces on its launch path too.
        assert_eq!(JailMode::parse(None).unwrap(), JailMode::Inline);
        assert_eq!(JailMode::parse(Some("pooled")).unwrap(), JailMode::Pooled);
        assert_eq!(JailMode::parse(Some("inline")).unwrap(), JailMode::Inline);
        assert_eq!(JailMode::parse(Some("off")).unwrap(), JailMode::Off);
        let e = JailMode::parse(Some("loose")).unwrap_err().to_string();
        assert!(e.contains("VMCT_VMM_JAIL='loose'") && e.contains("pooled, inline or off"), "{e}");
    }

    #[test]
    fn keep_permits_are_capped_and_given_back_on_drop() {
        let held = Arc::new(AtomicUsize::new(0));
        let mut permits: Vec<KeepPermit> = (0..5).filter_map(|_| KeepPermit::acquire(&held, 3)).collect();
        assert_eq!((permits.len(), held.load(Ordering::Acquire)), (3, 3));
        permits.pop();
        assert_eq!(held.load(Ordering::Acquire), 2);
        permits.extend(KeepPermit::acquire(&held, 3));
        assert!(KeepPermit::acquire(&held, 3).is_none());
        drop(permits);
        assert_eq!(held.load(Ordering::Acquire), 0);
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
