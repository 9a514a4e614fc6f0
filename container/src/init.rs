//! The container init: what the cloned child does between `clone3` and `execve`, as named stages
//! reported over the typed channel ([`crate::channel`]); its filesystem steps are [`crate::rootfs`]'s.
//!
//! The parent builds an [`InitPlan`] (every path, string and BPF program prepared in advance); the child
//! only walks it through [`Sys`], so nothing allocates after clone.
//!
//! Order (each numbered step is a [`Stage`]; the child reports a timestamp after rootfs and pivot):
//! 0. `Files`: take an fd table of its own holding only the runtime's low fd slots (the init is cloned
//!    sharing the runtime's table, see [`crate::fdslots`]), report it, close the parent's ends.
//! 1. `Stdio`: dup2 the stdio pipes to 0, 1, 2.
//! 2. `Sync` (user namespace only): wait for the parent's `Go` (uid/gid maps written, cgroup
//!    attached), then become root in the namespace.
//! 3. `Rootfs`: make every mount private, mount the overlay (inside the child's own mount namespace, so
//!    no host mount can leak), then proc, sysfs, /dev (tmpfs + nodes), devpts, /tmp.
//! 4. `Pivot`: chdir to the new root, `pivot_root(".", ".")`, detach the old root, chdir "/".
//! 5. `Hostname`, `Network` (loopback up).
//! 6. `Sync` (no user namespace): wait for `Go` (cgroup attached).
//! 7. `CgroupNs`: unshare the cgroup namespace now that the child is in its cgroup (so the namespace
//!    is rooted there); `Cwd`: chdir to the working directory.
//! 8. `Caps` (drop the bounding set), `Identity` (the process user: setgroups, setresgid, setresuid,
//!    runc's order, with every capability still held), `Caps` (effective = permitted = inheritable:
//!    the profile's set, none for a non-root user), `NoNewPrivs`, `Seccomp` (then report it), `Exec`.
//!    Seccomp comes last, after no_new_privs, as runc does when no_new_privs is set; the privileged
//!    profile installs no filter.
use crate::channel::{ChildEnd, ChildMsg, Stage};
use crate::rootfs::Op;
use crate::sys::{Errno, Sys};
use std::ffi::CString;
use std::os::fd::RawFd;

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub struct InitPlan {
    /// The init shares the runtime's fd table until it copies the fds below this number into a table
    /// of its own, first thing ([`Stage::Files`], reported so the parent may reuse its fd slots);
    /// None: the init was cloned with a copy of the whole table.
    pub own_fds_below: Option<u32>,
    /// The parent's ends, closed in the init's own table right after [`Stage::Files`]: kept open
    /// there, a parent killed before it sends `Go` would leave the init waiting for it forever (its
    /// own copy of the writer keeps the socket open), outside any cgroup gc could find.
    pub parent_fds: Vec<RawFd>,
    /// Child's stdio: fds to dup2 onto 0, 1, 2.
    pub stdio: [RawFd; 3],
    /// Unix socket to the parent: after the pivot, open a terminal in the container's devpts, send
    /// its master here and make it stdio and the controlling terminal ([`Sys::terminal`]).
    pub terminal_sock: Option<RawFd>,
    /// The child's end of the start channel.
    pub channel: ChildEnd,
    /// Wait for Go before the rootfs (user namespace) instead of after the network stage.
    pub early_sync: bool,
    /// setresuid/gid(0) after the early sync.
    pub become_root: bool,
    /// Rootfs ops, then pivot ops (`pivot_from` is the index of the first pivot op).
    pub ops: Vec<Op>,
    /// Index of the first op of the pivot stage.
    pub pivot_from: usize,
    /// Hostname.
    pub hostname: CString,
    /// Bring lo up.
    pub loopback: bool,
    /// unshare(CLONE_NEWCGROUP) after attach.
    pub cgroup_ns: bool,
    /// Working directory inside the container.
    pub cwd: CString,
    /// The process user, switched to after the bounding set is dropped and before the capability
    /// sets are set (so setgroups/setresgid/setresuid still hold CAP_SETGID/CAP_SETUID); None: stay
    /// root with the groups the init has.
    pub user: Option<crate::spec::ProcessUser>,
    /// Capability plan; None keeps everything (privileged). The parent gives a mask of 0 for a
    /// non-root user.
    pub caps: Option<crate::security::CapsPlan>,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Seccomp programs, installed in order.
    pub seccomp: std::sync::Arc<Vec<seccompiler::BpfProgram>>,
    /// Program path.
    pub exec_path: CString,
    /// argv storage (pointed to by `argv_ptrs`).
    pub argv: Vec<CString>,
    /// envp storage.
    pub envp: Vec<CString>,
}

/// Null-terminated pointer array over `v`.
pub fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Run the plan; returns only on failure (after exec succeeded the process image is gone).
/// `argv`/`envp` are [`ptrs`] of the plan's vectors, built by the parent before clone.
pub fn run<S: Sys + ?Sized>(
    sys: &S,
    p: &InitPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ChildMsg {
    let fail = |stage: Stage, op: usize, errno: Errno| ChildMsg::Failed {
        stage,
        op: u16::try_from(op).unwrap_or(u16::MAX),
        errno,
    };
    macro_rules! step {
        ($stage:expr, $e:expr) => {
            if let Err(errno) = $e {
                return fail($stage, 0, errno);
            }
        };
    }
    let reached = |stage: Stage| p.channel.reached(sys, stage);
    let sync = || p.channel.wait_for_go(sys);
    if let Some(below) = p.own_fds_below {
        step!(Stage::Files, sys.unshare_fds(below));
        reached(Stage::Files);
    }
    for fd in &p.parent_fds {
        sys.close(*fd);
    }
    for (fd, to) in p.stdio.iter().zip(0..) {
        step!(Stage::Stdio, sys.dup2(*fd, to));
    }
    if p.early_sync {
        step!(Stage::Sync, sync());
    }
    if p.become_root {
        step!(Stage::Identity, sys.become_root());
    }
    for (i, op) in p.ops.iter().enumerate() {
        if i == p.pivot_from {
            reached(Stage::Rootfs);
        }
        let stage = if i < p.pivot_from { Stage::Rootfs } else { Stage::Pivot };
        if let Err(errno) = op.run(sys) {
            return fail(stage, i, errno);
        }
    }
    reached(Stage::Pivot);
    if let Some(sock) = p.terminal_sock {
        step!(Stage::Terminal, sys.terminal(sock));
    }
    step!(Stage::Hostname, sys.sethostname(&p.hostname));
    if p.loopback {
        step!(Stage::Network, sys.loopback_up());
    }
    if !p.early_sync {
        step!(Stage::Sync, sync());
    }
    if p.cgroup_ns {
        step!(Stage::CgroupNs, sys.unshare(libc::CLONE_NEWCGROUP));
    }
    step!(Stage::Cwd, sys.chdir(&p.cwd));
    if let Some(c) = &p.caps {
        for cap in &c.drop_bounding {
            step!(Stage::Caps, sys.capbset_drop(*cap));
        }
    }
    if let Some(u) = &p.user {
        step!(Stage::Identity, sys.setgroups(&u.groups));
        step!(Stage::Identity, sys.setresgid(u.gid));
        step!(Stage::Identity, sys.setresuid(u.uid));
    }
    if let Some(c) = &p.caps {
        step!(Stage::Caps, sys.capset(c.mask));
    }
    if p.no_new_privs {
        step!(Stage::NoNewPrivs, sys.no_new_privs());
    }
    for prog in p.seccomp.iter() {
        step!(Stage::Seccomp, sys.seccomp(prog));
    }
    // Tells the parent that everything before exec worked: EOF after this means exec succeeded.
    reached(Stage::Seccomp);
    fail(Stage::Exec, 0, sys.execve(&p.exec_path, argv, envp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::GO;
    use std::cell::RefCell;
    use std::ffi::CStr;

    /// Records calls; fails the call whose description contains `fail_on`.
    #[derive(Default)]
    struct Fake {
        log: RefCell<Vec<String>>,
        fail_on: Option<&'static str>,
    }

    impl Fake {
        fn rec(&self, s: String) -> Result<(), Errno> {
            let fail = self.fail_on.is_some_and(|f| s.contains(f));
            self.log.borrow_mut().push(s);
            if fail {
                Err(libc::ENOENT)
            } else {
                Ok(())
            }
        }
    }

    impl Sys for Fake {
        fn mount(&self, s: Option<&CStr>, t: &CStr, f: Option<&CStr>, _: u64, _: Option<&CStr>) -> Result<(), Errno> {
            self.rec(format!("mount {:?} {:?} {:?}", s, t, f))
        }
        fn umount2(&self, t: &CStr, _: i32) -> Result<(), Errno> {
            self.rec(format!("umount {t:?}"))
        }
        fn mkdir(&self, p: &CStr, _: u32) -> Result<(), Errno> {
            self.rec(format!("mkdir {p:?}"))
        }
        fn mknod(&self, p: &CStr, _: u32, _: u64) -> Result<(), Errno> {
            self.rec(format!("mknod {p:?}"))
        }
        fn touch(&self, p: &CStr) -> Result<(), Errno> {
            self.rec(format!("touch {p:?}"))
        }
        fn symlink(&self, t: &CStr, l: &CStr) -> Result<(), Errno> {
            self.rec(format!("symlink {t:?} {l:?}"))
        }
        fn chdir(&self, p: &CStr) -> Result<(), Errno> {
            self.rec(format!("chdir {p:?}"))
        }
        fn pivot_root_dot(&self) -> Result<(), Errno> {
            self.rec("pivot_root".into())
        }
        fn sethostname(&self, n: &CStr) -> Result<(), Errno> {
            self.rec(format!("hostname {n:?}"))
        }
        fn loopback_up(&self) -> Result<(), Errno> {
            self.rec("lo up".into())
        }
        fn become_root(&self) -> Result<(), Errno> {
            self.rec("become_root".into())
        }
        fn setgroups(&self, g: &[libc::gid_t]) -> Result<(), Errno> {
            self.rec(format!("setgroups {g:?}"))
        }
        fn setresgid(&self, g: u32) -> Result<(), Errno> {
            self.rec(format!("setresgid {g}"))
        }
        fn setresuid(&self, u: u32) -> Result<(), Errno> {
            self.rec(format!("setresuid {u}"))
        }
        fn unshare(&self, f: i32) -> Result<(), Errno> {
            self.rec(format!("unshare {f:#x}"))
        }
        fn open_ro(&self, p: &CStr) -> Result<RawFd, Errno> {
            self.rec(format!("open {p:?}")).map(|()| 90)
        }
        fn setns(&self, fd: RawFd, t: i32) -> Result<(), Errno> {
            self.rec(format!("setns {fd} {t:#x}"))
        }
        fn close(&self, fd: RawFd) {
            let _ = self.rec(format!("close {fd}"));
        }
        fn unshare_fds(&self, below: u32) -> Result<(), Errno> {
            self.rec(format!("unshare_fds {below}"))
        }
        fn dup2(&self, a: RawFd, b: RawFd) -> Result<(), Errno> {
            self.rec(format!("dup2 {a} {b}"))
        }
        fn terminal(&self, sock: RawFd) -> Result<(), Errno> {
            self.rec(format!("terminal {sock}"))
        }
        fn capbset_drop(&self, c: u32) -> Result<(), Errno> {
            self.rec(format!("bset_drop {c}"))
        }
        fn capset(&self, m: u64) -> Result<(), Errno> {
            self.rec(format!("capset {m:#x}"))
        }
        fn no_new_privs(&self) -> Result<(), Errno> {
            self.rec("nnp".into())
        }
        fn seccomp(&self, p: &[seccompiler::sock_filter]) -> Result<(), Errno> {
            self.rec(format!("seccomp {}", p.len()))
        }
        fn execve(&self, p: &CStr, _: &[*const libc::c_char], _: &[*const libc::c_char]) -> Errno {
            let _ = self.rec(format!("execve {p:?}"));
            libc::ENOENT
        }
        fn write(&self, _: RawFd, b: &[u8]) -> Result<(), Errno> {
            let m = ChildMsg::decode(b.try_into().unwrap()).unwrap();
            if let ChildMsg::Reached { stage, .. } = m {
                self.log.borrow_mut().push(format!("reached {}", stage.name()));
            }
            Ok(())
        }
        fn read_exact(&self, _: RawFd, b: &mut [u8]) -> Result<bool, Errno> {
            self.log.borrow_mut().push("sync".into());
            b[0] = GO;
            Ok(true)
        }
        fn now_ns(&self) -> u64 {
            42
        }
    }

    fn plan(userns: bool) -> InitPlan {
        let c = |s: &str| CString::new(s).unwrap();
        InitPlan {
            own_fds_below: Some(9),
            parent_fds: vec![7],
            stdio: [3, 4, 4],
            terminal_sock: None,
            channel: ChildEnd { to_parent: 5, from_parent: 6 },
            early_sync: userns,
            become_root: userns,
            ops: vec![
                Op::Mount { src: None, target: c("/"), fstype: None, flags: 0, data: None },
                Op::Mount {
                    src: Some(c("overlay")),
                    target: c("/r"),
                    fstype: Some(c("overlay")),
                    flags: 0,
                    data: None,
                },
                Op::Chdir(c("/r")),
                Op::PivotRoot,
                Op::DetachOldRoot,
            ],
            pivot_from: 2,
            hostname: c("vmct-x"),
            loopback: true,
            cgroup_ns: true,
            cwd: c("/work"),
            user: None,
            caps: Some(crate::security::CapsPlan { drop_bounding: vec![21], mask: 1 }),
            no_new_privs: true,
            seccomp: std::sync::Arc::new(vec![vec![seccompiler::sock_filter { code: 6, jt: 0, jf: 0, k: 0 }]]),
            exec_path: c("/bin/w"),
            argv: vec![c("w")],
            envp: vec![],
        }
    }

    #[test]
    fn stages_run_in_order() {
        let f = Fake::default();
        let p = plan(false);
        let m = run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        assert_eq!(m, ChildMsg::Failed { stage: Stage::Exec, op: 0, errno: libc::ENOENT });
        let log = f.log.borrow();
        let pos = |s: &str| log.iter().position(|l| l.starts_with(s)).unwrap_or_else(|| panic!("{s} in {log:?}"));
        // The init's own fd table comes first, and the parent hears of it before anything else.
        assert_eq!(log[..3], ["unshare_fds 9", "reached files", "close 7"]);
        assert!(pos("dup2") < pos("mount None"));
        assert!(pos("mount Some(\"overlay\")") < pos("reached rootfs"));
        assert!(pos("reached rootfs") < pos("pivot_root"));
        assert!(pos("pivot_root") < pos("umount \".\""));
        assert!(pos("reached pivot") < pos("hostname"));
        assert!(pos("lo up") < pos("sync"));
        // The cgroup namespace is created only after the parent attached the cgroup (sync).
        assert!(pos("sync") < pos("unshare 0x2000000"));
        assert!(pos("bset_drop") < pos("capset"));
        assert!(pos("capset") < pos("nnp"));
        assert!(pos("nnp") < pos("seccomp"));
        assert!(pos("seccomp") < pos("reached seccomp"));
        assert!(pos("reached seccomp") < pos("execve"));
        assert!(!log.iter().any(|l| l == "become_root" || l.starts_with("setres") || l.starts_with("setgroups")));
        assert!(!log.iter().any(|l| l.starts_with("terminal")), "no terminal asked for");
    }

    #[test]
    fn a_terminal_is_opened_after_the_pivot_in_the_containers_devpts() {
        let f = Fake::default();
        let mut p = plan(false);
        p.terminal_sock = Some(9);
        run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        let log = f.log.borrow();
        let pos = |s: &str| log.iter().position(|l| l.starts_with(s)).unwrap_or_else(|| panic!("{s} in {log:?}"));
        assert!(pos("reached pivot") < pos("terminal 9"));
        assert!(pos("terminal 9") < pos("hostname") && pos("terminal 9") < pos("seccomp"));
    }

    #[test]
    fn userns_syncs_first_and_becomes_root() {
        let f = Fake::default();
        let p = plan(true);
        run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        let log = f.log.borrow();
        let pos = |s: &str| log.iter().position(|l| l.starts_with(s)).unwrap();
        assert!(pos("sync") < pos("become_root"));
        assert!(pos("become_root") < pos("mount"));
        assert_eq!(log.iter().filter(|l| *l == "sync").count(), 1);
    }

    #[test]
    fn the_user_switch_comes_after_root_work_and_before_the_capability_sets() {
        let f = Fake::default();
        let mut p = plan(false);
        p.user = Some(crate::spec::ProcessUser { uid: 1000, gid: 1001, groups: vec![27] });
        run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        let log = f.log.borrow();
        let pos = |s: &str| log.iter().position(|l| l.starts_with(s)).unwrap_or_else(|| panic!("{s} in {log:?}"));
        // Everything that needs root first: mounts, pivot, hostname, cgroup namespace, bounding set.
        let last = |s: &str| log.iter().rposition(|l| l.starts_with(s)).unwrap_or_else(|| panic!("{s} in {log:?}"));
        for before in
            ["mount", "umount", "hostname", "lo up", "sync", "unshare 0x2000000", "chdir \"/work\"", "bset_drop"]
        {
            assert!(last(before) < pos("setgroups"), "{before} before the switch: {log:?}");
        }
        // runc's order: groups, gid, uid (setgroups and setresgid need CAP_SETGID, gone after setresuid).
        assert!(pos("setgroups [27]") < pos("setresgid 1001"));
        assert!(pos("setresgid 1001") < pos("setresuid 1000"));
        // Then the capability sets, no_new_privs and seccomp, the filter last before exec.
        assert!(pos("setresuid 1000") < pos("capset"));
        assert!(pos("capset") < pos("nnp") && pos("nnp") < pos("seccomp") && pos("seccomp") < pos("execve"));
    }

    #[test]
    fn a_failed_user_switch_is_the_identity_stage_and_nothing_runs_after_it() {
        let f = Fake { fail_on: Some("setresuid"), ..Default::default() };
        let mut p = plan(false);
        p.user = Some(crate::spec::ProcessUser { uid: 1000, gid: 1000, groups: vec![] });
        let m = run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        assert_eq!(m, ChildMsg::Failed { stage: Stage::Identity, op: 0, errno: libc::ENOENT });
        assert!(f.log.borrow().iter().any(|l| l == "setgroups []"));
        assert!(!f.log.borrow().iter().any(|l| l.starts_with("capset") || l.starts_with("seccomp")));
    }

    #[test]
    fn a_missing_working_directory_is_the_cwd_stage() {
        let f = Fake { fail_on: Some("chdir \"/work\""), ..Default::default() };
        let p = plan(false);
        let m = run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        assert_eq!(m, ChildMsg::Failed { stage: Stage::Cwd, op: 0, errno: libc::ENOENT });
        assert_eq!(Stage::Cwd.name(), "cwd");
        assert!(!f.log.borrow().iter().any(|l| l.starts_with("capset") || l.starts_with("execve")));
    }

    #[test]
    fn failure_names_stage_and_op() {
        let f = Fake { fail_on: Some("overlay"), ..Default::default() };
        let p = plan(false);
        let m = run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        assert_eq!(m, ChildMsg::Failed { stage: Stage::Rootfs, op: 1, errno: libc::ENOENT });
        assert!(p.ops[1].describe().contains("overlay"));
        assert!(!f.log.borrow().iter().any(|l| l.starts_with("execve")));
    }

    /// The shared sysfs mount enters the shared namespace only for the mount and goes back to the
    /// init's own, also when the mount fails (no later step may run in the shared namespace).
    #[test]
    fn shared_sysfs_goes_back_to_the_containers_own_netns_even_on_failure() {
        let c = |s: &str| CString::new(s).unwrap();
        let with_sysfs = || {
            let mut p = plan(false);
            p.ops.insert(
                2,
                Op::Mount {
                    src: Some(c("sysfs")),
                    target: c("/r/sys"),
                    fstype: Some(c("sysfs")),
                    flags: 1,
                    data: None,
                },
            );
            p.pivot_from += 1;
            assert!(crate::rootfs::share_sysfs(&mut p.ops, 8));
            p
        };
        let net = format!("{:#x}", libc::CLONE_NEWNET);
        let want = [
            "open \"/proc/thread-self/ns/net\"".to_string(),
            format!("setns 8 {net}"),
            "mount Some(\"sysfs\") \"/r/sys\" Some(\"sysfs\")".to_string(),
            format!("setns 90 {net}"),
            "close 90".to_string(),
            "close 8".to_string(),
        ];
        let f = Fake::default();
        let p = with_sysfs();
        assert!(matches!(
            run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp)),
            ChildMsg::Reached { stage: Stage::Exec, .. } | ChildMsg::Failed { stage: Stage::Exec, .. }
        ));
        let log = f.log.borrow();
        let at = log.iter().position(|l| l.starts_with("open")).expect("opens its own netns");
        assert_eq!(log[at..at + want.len()], want, "{log:#?}");
        assert!(p.ops[2].describe().contains("sysfs") && p.ops[2].describe().contains("/r/sys"));

        let f = Fake { fail_on: Some("mount Some(\"sysfs\")"), ..Default::default() };
        let p = with_sysfs();
        let m = run(&f, &p, &ptrs(&p.argv), &ptrs(&p.envp));
        assert_eq!(m, ChildMsg::Failed { stage: Stage::Rootfs, op: 2, errno: libc::ENOENT });
        let log = f.log.borrow();
        assert!(log.contains(&format!("setns 90 {net}")), "went back to its own netns: {log:#?}");
        assert!(!log.iter().any(|l| l.starts_with("pivot_root") || l.starts_with("execve")), "{log:#?}");
    }
}
