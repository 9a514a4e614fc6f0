//! [`Runtime::start`] as named stage functions, one per [`LaunchStage`] (see the list in
//! [`crate::runtime`]).
use super::{LaunchStage, Runtime, RuntimeError, STAGE_TIMEOUT, USERNS_BASE, USERNS_SIZE};
use crate::channel::{self, ChildFds, ChildMsg, ParentEnd, Report, Stage};
use crate::fdslots;
use crate::handle::Container;
use crate::init::{self, InitPlan};
use crate::net::NetMode;
use crate::rootfs::{build_ops, cstr, share_sysfs, sysfs_netns_fd, Op};
use crate::spec::{check_id, check_user, open_output, ContainerSpec, Output, ProcessUser, Profile};
use crate::sys;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Runtime {
    /// Start a container; returns once its entry point was exec'd (or with the failing stage). On
    /// error the partly started container is removed (the handle's `Drop`).
    pub fn start(&self, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let launched_ns = sys::mono_ns();
        check_id(&spec.id)?;
        check_user(&spec.id, self.profile, spec.user.as_ref())?;
        spec.limits.validate().map_err(|source| RuntimeError::Limits { id: spec.id.clone(), source })?;
        let mut c = Container::new(spec.id.clone(), self.cgroups.clone(), launched_ns);
        let prepared = self.prepare(spec, &mut c)?;
        c.mark_launch(LaunchStage::Prepare);
        self.create_cgroup(spec, &mut c)?;
        c.mark_launch(LaunchStage::Cgroup);
        let mut started = self.clone_init(&mut c, prepared)?;
        c.mark_launch(LaunchStage::Clone);
        self.attach(&mut c, &mut started)?;
        c.mark_launch(LaunchStage::Attach);
        self.wait_for_exec(&mut c, started)?;
        c.mark_launch(LaunchStage::Exec);
        Ok(c)
    }

    /// Stage 1: the private dirs, the channel, stdio and the init plan.
    fn prepare(&self, spec: &ContainerSpec, c: &mut Container) -> Result<Prepared, RuntimeError> {
        let id = &spec.id;
        let dir = self.state_root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::InUse { id: id.clone(), path: dir })
            }
            Err(e) => return Err(io(id, "create", &dir)(e)),
        }
        c.state_dir = Some(dir.clone());
        let dirs = StateDirs { upper: dir.join("upper"), work: dir.join("work"), rootfs: dir.join("rootfs") };
        for d in [&dirs.upper, &dirs.work, &dirs.rootfs] {
            std::fs::create_dir(d).map_err(io(id, "create", d))?;
        }
        if self.profile == Profile::Userns {
            for d in [&dirs.upper, &dirs.work] {
                sys::chown(&cstr(d.as_os_str().as_encoded_bytes()), USERNS_BASE, USERNS_BASE)
                    .map_err(io(id, "chown", d))?;
            }
        }
        let (channel, child_channel) = channel::channel().map_err(io(id, "create the channel of", &dir))?;
        let (stdin_r, stdin_w) = sys::pipe().map_err(io(id, "create pipe", &dir))?;
        // With a terminal, stdio is /dev/null until the init replaces it with the terminal's peer.
        let (stdout, stderr) =
            if spec.terminal { (&Output::Null, &Output::Null) } else { (&spec.stdout, &spec.stderr) };
        let (out_child, out_parent) = open_output(stdout, None).map_err(io(id, "open stdout for", &dir))?;
        let (err_child, err_parent) = open_output(stderr, Some(&out_child)).map_err(io(id, "open stderr for", &dir))?;
        let term =
            if spec.terminal { Some(sys::socketpair().map_err(io(id, "create socket pair", &dir))?) } else { None };
        let mut plan = self.plan(spec, &dirs, [&stdin_r, &out_child, &err_child], &child_channel);
        plan.terminal_sock = term.as_ref().map(|(_, child)| child.as_raw_fd());
        let argv = init::ptrs(&plan.argv);
        let envp = init::ptrs(&plan.envp);
        Ok(Prepared {
            dirs,
            channel,
            child_channel,
            stdin: (stdin_r, stdin_w),
            stdout: (out_child, out_parent),
            stderr: (err_child, err_parent),
            term,
            plan,
            argv,
            envp,
        })
    }

    /// Stage 2: the cgroup with its limits (and device rules for confined profiles).
    fn create_cgroup(&self, spec: &ContainerSpec, c: &mut Container) -> Result<(), RuntimeError> {
        let cg = self
            .cgroups
            .create(&spec.id, &spec.limits, self.device_rules())
            .map_err(|source| RuntimeError::Cgroup { id: spec.id.clone(), source })?;
        c.cg = Some(cg);
        Ok(())
    }

    /// Stage 3: clone the init into its new namespaces; the child walks the plan and never returns.
    fn clone_init(&self, c: &mut Container, mut p: Prepared) -> Result<Started, RuntimeError> {
        // The child's ends go into the reserved low fd slots and the child shares the fd table until
        // it keeps a copy of the fds below them only (see `crate::fdslots`).
        let mut slots =
            fdslots::lock().map_err(|e| io(&c.id, "lock fd slots for", &p.dirs.rootfs)(std::io::Error::other(e)))?;
        let placed = (|| -> std::io::Result<()> {
            let stdio = [&p.stdin.0, &p.stdout.0, &p.stderr.0];
            p.plan.stdio = [slots.place(stdio[0])?, slots.place(stdio[1])?, slots.place(stdio[2])?];
            p.plan.channel = p.child_channel.placed(|fd| slots.place(fd))?;
            if let Some((_, child)) = &p.term {
                p.plan.terminal_sock = Some(slots.place(child)?);
            }
            if let (Some(fd), Some(netns)) = (sysfs_netns_fd(&mut p.plan.ops), self.shared_sysfs_netns()) {
                *fd = slots.place(netns)?;
            }
            Ok(())
        })();
        if let Err(e) = placed {
            slots.clear();
            return Err(io(&c.id, "place fds for", &p.dirs.rootfs)(e));
        }
        p.plan.own_fds_below = Some(slots.keep_below());
        let parent_ends = [Some(&p.stdin.1), p.stdout.1.as_ref(), p.stderr.1.as_ref(), p.term.as_ref().map(|t| &t.0)];
        p.plan.parent_fds =
            parent_ends.into_iter().flatten().map(AsRawFd::as_raw_fd).chain(p.channel.raw_fds()).collect();
        let mut flags = (libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET
            | libc::CLONE_FILES) as u64;
        if self.profile == Profile::Userns {
            flags |= libc::CLONE_NEWUSER as u64;
        }
        // SAFETY: the child branch only walks the prepared plan through `sys::Real` (async-signal-safe
        // system calls, no allocation) and ends in execve or _exit.
        let cloned = match unsafe { sys::clone_fork(flags) } {
            Ok(None) => {
                // The init takes its own fd table first, then closes the parent's ends there.
                let msg = init::run(&sys::Real, &p.plan, &p.argv, &p.envp);
                p.plan.channel.failed(&sys::Real, msg);
                sys::exit_child(127);
            }
            Ok(Some(cl)) => cl,
            Err(e) => {
                slots.clear();
                return Err(io(&c.id, "clone3 for", &p.dirs.rootfs)(e));
            }
        };
        c.pid = cloned.pid;
        c.stdin = Some(p.stdin.1);
        c.stdout = p.stdout.1;
        c.stderr = p.stderr.1;
        // The slots hold copies of the child's ends (channel, stdio, terminal peer) until the child has
        // its own fd table (see `attach`); the originals are not needed any more.
        drop((p.child_channel, p.stdin.0, p.stdout.0, p.stderr.0, p.plan));
        let term = p.term.map(|(parent, _child)| parent);
        Ok(Started { dirs: p.dirs, channel: p.channel, term, slots: Some(slots), first: None })
    }

    /// Stage 4: uid/gid maps, cgroup membership, veth; then `Go`.
    fn attach(&self, c: &mut Container, s: &mut Started) -> Result<(), RuntimeError> {
        if self.profile == Profile::Userns {
            let base = format!("/proc/{}", c.pid);
            let map = format!("0 {USERNS_BASE} {USERNS_SIZE}\n");
            // setgroups stays "allow" (as runc leaves it when run as root): the init sets the
            // process's groups inside the namespace, dropping the host groups it was cloned with.
            for (f, v) in [("uid_map", map.as_str()), ("gid_map", map.as_str())] {
                let p = PathBuf::from(format!("{base}/{f}"));
                std::fs::write(&p, v).map_err(io(&c.id, "write", &p))?;
            }
        }
        if let Some(cg) = &c.cg {
            self.cgroups.attach(cg, c.pid).map_err(|source| RuntimeError::Cgroup { id: c.id.clone(), source })?;
        }
        if let Some(b) = &self.bridge {
            if self.net == NetMode::Bridge {
                let v = b.attach(&c.id, c.pid).map_err(|source| RuntimeError::Net { id: c.id.clone(), source })?;
                c.veth = Some(v);
            }
        }
        // The init's first report says it has its own fd table (or why not); it was sent right after
        // the clone, so waiting for it here, after the work above, costs no extra hand-over.
        let first = s.channel.next_report(STAGE_TIMEOUT).map_err(io(&c.id, "read channel of", &s.dirs.rootfs))?;
        s.slots = None;
        if !matches!(first, Report::Msg(ChildMsg::Reached { stage: Stage::Files, .. })) {
            s.first = Some(first);
        }
        s.channel.send_go().map_err(io(&c.id, "signal", &s.dirs.rootfs))
    }

    /// Stage 5: the child's stage reports until the channel closes on exec, then the terminal.
    fn wait_for_exec(&self, c: &mut Container, s: Started) -> Result<(), RuntimeError> {
        let mut before_exec = false;
        let mut last = LaunchStage::Attach.name();
        let mut first = s.first;
        loop {
            // A child that hangs (it must not, but a bug or a stuck kernel call would) must not hang
            // the harness: the Container guard kills and removes it on return.
            let report = match first.take() {
                Some(r) => r,
                None => s.channel.next_report(STAGE_TIMEOUT).map_err(io(&c.id, "read channel of", &s.dirs.rootfs))?,
            };
            match report {
                Report::TimedOut => {
                    return Err(RuntimeError::StartTimeout { id: c.id.clone(), last, secs: STAGE_TIMEOUT.as_secs() })
                }
                Report::Msg(ChildMsg::Reached { stage, ns }) => {
                    before_exec |= stage == Stage::Seccomp;
                    last = stage.name();
                    c.mark_init(stage, ns);
                }
                Report::Msg(ChildMsg::Failed { stage, op, errno }) => {
                    let what = match stage {
                        Stage::Rootfs | Stage::Pivot => self.describe_op(&s.dirs, usize::from(op)),
                        Stage::Exec => format!("execve {}", self.image.entry[0]),
                        Stage::Cwd => format!("chdir to the working directory {}", self.image.cwd),
                        _ => stage.name().to_string(),
                    };
                    let (id, err) = (c.id.clone(), sys::strerror(errno));
                    return Err(RuntimeError::Init { id, stage: stage.name(), what, err });
                }
                Report::Closed => break,
            }
        }
        // EOF after the pre-exec report: exec'd (the entry point may even have finished already).
        if !before_exec {
            let status = c.wait(Duration::from_secs(1));
            return Err(RuntimeError::InitDied { id: c.id.clone(), status });
        }
        if let Some(sock) = &s.term {
            // The init sent the master before exec, so it is queued on the socket by now.
            let err = || io(&c.id, "receive the terminal of", &s.dirs.rootfs);
            c.terminal = sys::recv_fd(sock.as_raw_fd()).map_err(err())?;
            if c.terminal.is_none() {
                return Err(err()(std::io::Error::new(std::io::ErrorKind::NotFound, "the init sent no terminal")));
            }
        }
        Ok(())
    }

    fn describe_op(&self, dirs: &StateDirs, op: usize) -> String {
        let (ops, _) = self.ops(dirs);
        ops.get(op).map(Op::describe).unwrap_or_else(|| format!("step {op}"))
    }

    /// Rootfs + pivot ops (and the index where pivot starts); sysfs from the shared namespace where
    /// [`Runtime::shared_sysfs_netns`] gives one (its fd is placed in the init's table at clone).
    fn ops(&self, d: &StateDirs) -> (Vec<Op>, usize) {
        let (mut ops, pivot_from) = build_ops(&self.image, self.profile, &self.paths, &d.rootfs, &d.upper, &d.work);
        if let Some(netns) = self.shared_sysfs_netns() {
            share_sysfs(&mut ops, netns.as_raw_fd());
        }
        (ops, pivot_from)
    }

    /// The network namespace whose sysfs this runtime's containers mount ([`crate::sysfs_netns`]):
    /// only for the default profile with a private, loopback-only network (where its view is the
    /// container's own); None otherwise, or if the namespace could not be made (then each container
    /// mounts its own, as the other profiles do).
    fn shared_sysfs_netns(&self) -> Option<BorrowedFd<'static>> {
        (self.profile == Profile::Default && self.net == NetMode::Private)
            .then(crate::sysfs_netns::netns)
            .and_then(Result::ok)
    }

    fn plan(&self, spec: &ContainerSpec, dirs: &StateDirs, stdio: [&OwnedFd; 3], channel: &ChildFds) -> InitPlan {
        let (ops, pivot_from) = self.ops(dirs);
        let userns = self.profile == Profile::Userns;
        let mut argv: Vec<CString> = self.image.entry.iter().map(|a| cstr(a.as_bytes())).collect();
        argv.extend(spec.args.iter().map(|a| cstr(a.as_bytes())));
        let envp =
            self.image.env.iter().chain(spec.env.iter()).map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect();
        // In a user namespace the init always sets its groups: it was cloned with the host's (root's
        // gid 0 among them), which the namespace cannot map but the kernel still checks.
        let user = spec.user.clone().or_else(|| userns.then(|| ProcessUser { uid: 0, gid: 0, groups: Vec::new() }));
        // Docker gives a non-root user no effective/permitted capabilities, only the bounding set.
        let non_root = user.as_ref().is_some_and(|u| u.uid != 0);
        let caps = self.caps.clone().map(|c| if non_root { crate::security::CapsPlan { mask: 0, ..c } } else { c });
        InitPlan {
            stdio: [stdio[0].as_raw_fd(), stdio[1].as_raw_fd(), stdio[2].as_raw_fd()],
            own_fds_below: None,
            parent_fds: Vec::new(),
            terminal_sock: None,
            channel: channel.end(),
            early_sync: userns,
            become_root: userns,
            ops,
            pivot_from,
            hostname: cstr(&spec.id.as_bytes()[..spec.id.len().min(64)]),
            loopback: true,
            cgroup_ns: true,
            cwd: cstr(self.image.cwd.as_bytes()),
            user,
            caps,
            no_new_privs: self.profile != Profile::Privileged,
            seccomp: self.seccomp.clone(),
            exec_path: cstr(self.image.entry[0].as_bytes()),
            argv,
            envp,
        }
    }
}

/// A container's private dirs under the state root.
struct StateDirs {
    upper: PathBuf,
    work: PathBuf,
    rootfs: PathBuf,
}

/// What [`Runtime::prepare`] made for the clone: both channel ends, (child, parent) stdio ends, the
/// terminal socket pair (parent, child), the plan and its argv/envp pointer arrays.
struct Prepared {
    dirs: StateDirs,
    channel: ParentEnd,
    child_channel: ChildFds,
    stdin: (OwnedFd, OwnedFd),
    stdout: (OwnedFd, Option<OwnedFd>),
    stderr: (OwnedFd, Option<OwnedFd>),
    term: Option<(OwnedFd, OwnedFd)>,
    plan: InitPlan,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

/// The parent's side after the clone.
struct Started {
    dirs: StateDirs,
    channel: ParentEnd,
    term: Option<OwnedFd>,
    /// The fd slots, held until the init reports [`Stage::Files`].
    slots: Option<fdslots::Held>,
    /// The init's first report, if it was not [`Stage::Files`] (a failure, or a timeout).
    first: Option<Report>,
}

/// Maps an I/O error of `what` on `path` to [`RuntimeError::Io`].
fn io(id: &str, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let (id, path) = (id.to_string(), path.display().to_string());
    move |source| RuntimeError::Io { id, what, path, source }
}
