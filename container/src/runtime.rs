//! The runtime: prepares a container (state dirs, cgroup, plan), clones the init and drives it over
//! the typed channel ([`crate::init`]), then owns the container until it is stopped or dropped.
//!
//! Parent side of the start sequence (the child's side is in [`crate::init`]):
//! 1. `prepare`: private dirs `<state>/<id>/{upper,work,rootfs}` (chowned to the mapped root with a
//!    user namespace), pipes, the init plan.
//! 2. `cgroup`: create the cgroup and write its limits.
//! 3. `clone`: `clone3` with new pid, mount, uts, ipc, net (and user) namespaces and a pidfd.
//! 4. `attach`: write the uid/gid maps (user namespace), put the child in its cgroup, set up the veth
//!    (bridge network), send `Go`.
//! 5. `exec`: read the child's stage reports until the channel closes on exec (or a failure arrives);
//!    the child's last report comes right before `execve`, so EOF after it means exec succeeded.
use crate::cgroup::{self, CgroupDirs, Cgroups};
use crate::devices::{self, DeviceRule};
use crate::image::Image;
use crate::init::{self, ChildMsg, InitPlan, Op, Stage};
use crate::limits::{LimitError, Limits};
use crate::net::{Bridge, NetError, NetMode, Veth};
use crate::seccomp_profile::{self, ProfileError, ProfileInfo};
use crate::security::{self, CapsPlan, HostPaths, SecurityError};
use crate::sys::{self, WaitStatus};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where containers' private dirs live by default. World-traversable on purpose: a user-namespaced
/// container's root (a mapped uid) must be able to reach its overlay dirs.
pub const DEFAULT_STATE_ROOT: &str = "/var/tmp/vmct/containers";

/// First host uid/gid of the user namespace mapping (`container-userns`): container ids 0..65535 map
/// to host ids USERNS_BASE..USERNS_BASE+65535.
pub const USERNS_BASE: u32 = 1_000_000;
/// Size of the mapping.
pub const USERNS_SIZE: u32 = 65_536;

/// Errors starting or running a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id is unusable.
    #[error("container: bad id '{id}': {reason}")]
    BadId {
        /// Id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// Bad limits.
    #[error("container {id}: {source}")]
    Limits {
        /// Id.
        id: String,
        /// Cause.
        source: LimitError,
    },
    /// cgroup failure.
    #[error("container {id}: {source}")]
    Cgroup {
        /// Id.
        id: String,
        /// Cause.
        source: cgroup::CgroupError,
    },
    /// Security profile failure.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The seccomp profile could not be read or compiled.
    #[error("container runtime: {0}")]
    Seccomp(#[from] ProfileError),
    /// Network failure.
    #[error("container {id}: {source}")]
    Net {
        /// Id.
        id: String,
        /// Cause.
        source: NetError,
    },
    /// A host-side operation failed.
    #[error("container {id}: {what} {path}: {source}")]
    Io {
        /// Id.
        id: String,
        /// What was done.
        what: &'static str,
        /// Path or object.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The container's state dir exists already.
    #[error("container {id}: state dir {path} exists (id in use, or a leftover: run `vmct gc`)")]
    InUse {
        /// Id.
        id: String,
        /// Path.
        path: PathBuf,
    },
    /// The init reported a failure.
    #[error("container {id}: init failed in stage '{stage}': {what}: {err}")]
    Init {
        /// Id.
        id: String,
        /// Stage name.
        stage: &'static str,
        /// The step.
        what: String,
        /// errno text.
        err: String,
    },
    /// The init died without reporting.
    #[error("container {id}: init ended before exec without a report ({status:?})")]
    InitDied {
        /// Id.
        id: String,
        /// Its wait status.
        status: Option<WaitStatus>,
    },
    /// The init stopped reporting before exec (it is killed and removed).
    #[error("container {id}: init reported nothing for {secs} s after stage '{last}': killed")]
    StartTimeout {
        /// Id.
        id: String,
        /// The last stage reached.
        last: &'static str,
        /// Seconds waited.
        secs: u64,
    },
}

/// How long the parent waits for each stage report of a starting container.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Security/isolation profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// What `docker run` / `podman run` give by default: all namespaces but user, Docker's default
    /// capabilities, no_new_privs, Podman's default seccomp profile
    /// ([`seccomp_profile::DEFAULT_PROFILE_PATH`]), the default device rules ([`devices::DEFAULT_RULES`]),
    /// masked and read-only paths ([`security::masked_paths`], [`security::READONLY_PATHS`]), sysfs
    /// read-only.
    Default,
    /// Docker's `--privileged`: no user namespace, all capabilities, all devices, no seccomp, no
    /// no_new_privs, no masked paths, sysfs read-write.
    Privileged,
    /// Default plus a user namespace (root in the container is uid [`USERNS_BASE`] on the host).
    Userns,
}

impl Profile {
    /// Name ("default", "privileged", "userns").
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Privileged => "privileged",
            Profile::Userns => "userns",
        }
    }

    /// One line saying what the profile applies (for run.json and the report).
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Default => {
                "default: Docker/Podman defaults (device cgroup rules, masked and read-only paths, containers-common seccomp, Docker's capabilities, no_new_privs)"
            }
            Profile::Privileged => "privileged: like docker run --privileged (all capabilities and devices, no seccomp, no masked paths)",
            Profile::Userns => {
                "userns: default plus a user namespace (container root is an unprivileged host uid)"
            }
        }
    }

    /// Whether Docker's default confinement (devices, masks, seccomp) applies.
    pub fn confined(self) -> bool {
        self != Profile::Privileged
    }
}

/// Where a container's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// /dev/null.
    Null,
    /// A pipe; take the read end with [`Container::take_stdout`] / [`Container::take_stderr`].
    Pipe,
    /// Append to a file (created if missing).
    File(PathBuf),
    /// stderr only: wherever stdout goes.
    SameAsStdout,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Unique id: cgroup, state dir and hostname; `[A-Za-z0-9_.-]`, at most 64 bytes.
    pub id: String,
    /// Arguments after the image's entry point.
    pub args: Vec<String>,
    /// Extra environment (after the image's).
    pub env: Vec<(String, String)>,
    /// Limits.
    pub limits: Limits,
    /// stdout.
    pub stdout: Output,
    /// stderr.
    pub stderr: Output,
    /// Give the container a terminal: a pty opened by the init in the container's own devpts (so
    /// `tty` and `/dev/pts` inside see it) whose peer is its stdin, stdout, stderr and controlling
    /// terminal (`stdout`/`stderr` are then ignored); take the master with [`Container::take_terminal`].
    pub terminal: bool,
}

impl ContainerSpec {
    /// A spec with no limits, stdout piped and stderr merged into it.
    pub fn new(id: impl Into<String>, args: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            args,
            env: Vec::new(),
            limits: Limits::default(),
            stdout: Output::Pipe,
            stderr: Output::SameAsStdout,
            terminal: false,
        }
    }
}

/// A runtime for one image and profile; cheap to share (`start` takes `&self`).
#[derive(Debug)]
pub struct Runtime {
    image: Image,
    profile: Profile,
    state_root: PathBuf,
    cgroups: Arc<dyn Cgroups>,
    caps: Option<CapsPlan>,
    seccomp: Arc<Vec<seccompiler::BpfProgram>>,
    seccomp_info: Option<ProfileInfo>,
    paths: HostPaths,
    net: NetMode,
    bridge: Option<Arc<Bridge>>,
}

impl Runtime {
    /// A runtime for `image` with `profile`, cgroups auto-detected, state under [`DEFAULT_STATE_ROOT`].
    /// Confined profiles read and compile the seccomp profile at
    /// [`seccomp_profile::DEFAULT_PROFILE_PATH`] here (once per process, see [`seccomp_profile::load`]).
    pub fn new(image: Image, profile: Profile) -> Result<Runtime, RuntimeError> {
        Runtime::with_seccomp_profile(image, profile, Path::new(seccomp_profile::DEFAULT_PROFILE_PATH))
    }

    /// [`Runtime::new`] with the seccomp profile read from `path` (ignored by `Privileged`).
    pub fn with_seccomp_profile(image: Image, profile: Profile, path: &Path) -> Result<Runtime, RuntimeError> {
        let cgroups: Arc<dyn Cgroups> =
            Arc::from(cgroup::detect().map_err(|source| RuntimeError::Cgroup { id: "-".into(), source })?);
        let (caps, seccomp, seccomp_info, paths) = if profile.confined() {
            let compiled = seccomp_profile::load(path, security::DEFAULT_CAPS)?;
            let info = compiled.info.clone();
            (
                Some(security::caps_plan(security::DEFAULT_CAPS)?),
                vec![(*compiled.bpf).clone()],
                Some(info),
                HostPaths::detect(),
            )
        } else {
            (None, Vec::new(), None, HostPaths::default())
        };
        let rt = Runtime {
            image,
            profile,
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
            cgroups,
            caps,
            seccomp: Arc::new(seccomp),
            seccomp_info,
            paths,
            net: NetMode::Private,
            bridge: None,
        };
        rt.ensure_state_root()?;
        Ok(rt)
    }

    /// The seccomp profile in force (None for `Privileged`).
    pub fn seccomp_info(&self) -> Option<&ProfileInfo> {
        self.seccomp_info.as_ref()
    }

    /// The device cgroup rules in force (None for `Privileged`: all devices, as `--privileged`).
    pub fn device_rules(&self) -> Option<&'static [DeviceRule]> {
        self.profile.confined().then_some(devices::DEFAULT_RULES)
    }

    /// Keep container state under `dir` instead (must be traversable by the mapped root for `Userns`).
    pub fn with_state_root(mut self, dir: impl Into<PathBuf>) -> Result<Runtime, RuntimeError> {
        self.state_root = dir.into();
        self.ensure_state_root()?;
        Ok(self)
    }

    /// Networking: [`NetMode::Private`] (default: loopback only) or [`NetMode::Bridge`] (a veth into a
    /// project-owned bridge namespace, created now).
    pub fn with_network(mut self, net: NetMode) -> Result<Runtime, RuntimeError> {
        if net == NetMode::Bridge && self.bridge.is_none() {
            let b =
                Bridge::create(crate::NAME_PREFIX).map_err(|source| RuntimeError::Net { id: "-".into(), source })?;
            self.bridge = Some(Arc::new(b));
        }
        self.net = net;
        Ok(self)
    }

    fn ensure_state_root(&self) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.state_root).map_err(|source| RuntimeError::Io {
            id: "-".into(),
            what: "create state root",
            path: self.state_root.display().to_string(),
            source,
        })
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The cgroup layout in use.
    pub fn cgroup_version(&self) -> cgroup::CgroupVersion {
        self.cgroups.version()
    }

    /// Start a container; returns once its entry point was exec'd (or with the failing stage).
    pub fn start(&self, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let launched_ns = sys::mono_ns();
        check_id(&spec.id)?;
        let id = spec.id.clone();
        spec.limits.validate().map_err(|source| RuntimeError::Limits { id: id.clone(), source })?;
        let io = |what: &'static str, path: &Path| {
            let id = id.clone();
            let path = path.display().to_string();
            move |source| RuntimeError::Io { id, what, path, source }
        };
        let userns = self.profile == Profile::Userns;
        let mut c = Container {
            id: id.clone(),
            pid: 0,
            pidfd: None,
            stdin: None,
            stdout: None,
            stderr: None,
            terminal: None,
            cgroups: self.cgroups.clone(),
            cg: None,
            state_dir: None,
            veth: None,
            exit: None,
            timings: Timings { launched_ns, marks: Vec::new() },
        };

        // 1. prepare
        let dir = self.state_root.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::InUse { id, path: dir })
            }
            Err(e) => return Err(io("create", &dir)(e)),
        }
        c.state_dir = Some(dir.clone());
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir(d).map_err(io("create", d))?;
        }
        if userns {
            for d in [&upper, &work] {
                sys::chown(&cstr(d.as_os_str().as_encoded_bytes()), USERNS_BASE, USERNS_BASE)
                    .map_err(io("chown", d))?;
            }
        }
        let (c2p_r, c2p_w) = sys::pipe().map_err(io("create pipe", &dir))?;
        // A socket rather than a pipe for the start byte: send(MSG_NOSIGNAL) reports a child that died
        // early as EPIPE without raising SIGPIPE in the harness.
        let (p2c_w, p2c_r) = sys::socketpair().map_err(io("create socket pair", &dir))?;
        let (stdin_r, stdin_w) = sys::pipe().map_err(io("create pipe", &dir))?;
        // With a terminal, stdio is /dev/null until the init replaces it with the terminal's peer.
        let (stdout, stderr) =
            if spec.terminal { (&Output::Null, &Output::Null) } else { (&spec.stdout, &spec.stderr) };
        let (out_child, out_parent) = open_output(stdout, None).map_err(io("open stdout for", &dir))?;
        let (err_child, err_parent) = open_output(stderr, Some(&out_child)).map_err(io("open stderr for", &dir))?;
        let term = if spec.terminal { Some(sys::socketpair().map_err(io("create socket pair", &dir))?) } else { None };
        let mut plan = self.plan(spec, &rootfs, &upper, &work, [&stdin_r, &out_child, &err_child], &c2p_w, &p2c_r);
        plan.terminal_sock = term.as_ref().map(|(_, child)| child.as_raw_fd());
        let argv = init::ptrs(&plan.argv);
        let envp = init::ptrs(&plan.envp);
        c.mark("prepare", sys::mono_ns());

        // 2. cgroup
        let cg = self
            .cgroups
            .create(&id, &spec.limits, self.device_rules())
            .map_err(|source| RuntimeError::Cgroup { id: id.clone(), source })?;
        c.cg = Some(cg);
        c.mark("cgroup", sys::mono_ns());

        // 3. clone
        let mut flags =
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET)
                as u64;
        if userns {
            flags |= libc::CLONE_NEWUSER as u64;
        }
        // SAFETY: the child branch only walks the prepared plan through `sys::Real` (async-signal-safe
        // system calls, no allocation) and ends in execve or _exit.
        let cloned = match unsafe { sys::clone_fork(flags) } {
            Ok(None) => {
                // The parent's ends, copied into this child's fd table: kept open here, a parent killed
                // before it sends the start byte would leave this child waiting for it forever (its own
                // copy of the writer keeps the socket open), outside any cgroup gc could find.
                let parent_ends =
                    [Some(&p2c_w), Some(&c2p_r), Some(&stdin_w), out_parent.as_ref(), err_parent.as_ref()];
                for fd in parent_ends.into_iter().flatten() {
                    sys::close_in_child(fd.as_raw_fd());
                }
                if let Some((parent, _)) = &term {
                    sys::close_in_child(parent.as_raw_fd());
                }
                let msg = init::run(&sys::Real, &plan, &argv, &envp);
                let _ = sys::Sys::write(&sys::Real, plan.to_parent, &msg.encode());
                sys::exit_child(127);
            }
            Ok(Some(cl)) => cl,
            Err(e) => return Err(io("clone3 for", &dir)(e)),
        };
        c.pid = cloned.pid;
        c.pidfd = Some(cloned.pidfd);
        c.mark("clone", sys::mono_ns());
        drop((c2p_w, p2c_r, stdin_r, out_child, err_child, plan));
        let term_parent = term.map(|(parent, _child)| parent);
        c.stdin = Some(stdin_w);
        c.stdout = out_parent;
        c.stderr = err_parent;

        // 4. attach
        if userns {
            let base = format!("/proc/{}", c.pid);
            let map = format!("0 {USERNS_BASE} {USERNS_SIZE}\n");
            for (f, v) in [("setgroups", "deny"), ("uid_map", map.as_str()), ("gid_map", map.as_str())] {
                let p = PathBuf::from(format!("{base}/{f}"));
                std::fs::write(&p, v).map_err(io("write", &p))?;
            }
        }
        if let Some(cg) = &c.cg {
            self.cgroups.attach(cg, c.pid).map_err(|source| RuntimeError::Cgroup { id: id.clone(), source })?;
        }
        if let Some(b) = &self.bridge {
            if self.net == NetMode::Bridge {
                let v = b.attach(&id, c.pid).map_err(|source| RuntimeError::Net { id: id.clone(), source })?;
                c.veth = Some(v);
            }
        }
        let go = [init::GO];
        match sys::send_nosignal(p2c_w.as_raw_fd(), &go) {
            // EPIPE: the child already failed; its message on the channel says where (read below).
            Ok(()) | Err(libc::EPIPE) => {}
            Err(e) => return Err(io("signal", &dir)(std::io::Error::from_raw_os_error(e))),
        }
        c.mark("attach", sys::mono_ns());

        // 5. exec: the channel closes (close-on-exec) when the entry point replaced the init.
        let mut buf = [0u8; init::MSG_LEN];
        let mut before_exec = false;
        let mut last = "attach";
        loop {
            // A child that hangs (it must not, but a bug or a stuck kernel call would) must not hang
            // the harness: the Container guard kills and removes it on return.
            if !sys::poll_in(c2p_r.as_raw_fd(), STAGE_TIMEOUT.as_millis() as i32).unwrap_or(true) {
                return Err(RuntimeError::StartTimeout { id, last, secs: STAGE_TIMEOUT.as_secs() });
            }
            match sys::Sys::read_exact(&sys::Real, c2p_r.as_raw_fd(), &mut buf) {
                Ok(true) => match ChildMsg::decode(&buf) {
                    Some(ChildMsg::Reached { stage, ns }) => {
                        before_exec |= stage == Stage::Seccomp;
                        last = stage.name();
                        c.mark(stage.name(), ns)
                    }
                    Some(ChildMsg::Failed { stage, op, errno }) => {
                        let what = if matches!(stage, Stage::Rootfs | Stage::Pivot) {
                            self.describe_op(spec, &rootfs, &upper, &work, op as usize)
                        } else if stage == Stage::Exec {
                            format!("execve {}", self.image.entry[0])
                        } else {
                            stage.name().to_string()
                        };
                        return Err(RuntimeError::Init { id, stage: stage.name(), what, err: sys::strerror(errno) });
                    }
                    None => break,
                },
                Ok(false) => break,
                Err(e) => return Err(io("read channel of", &dir)(std::io::Error::from_raw_os_error(e))),
            }
        }
        // EOF after the pre-exec report: exec'd (the entry point may even have finished already).
        if !before_exec {
            let st = c.wait(Duration::from_secs(1));
            return Err(RuntimeError::InitDied { id, status: st });
        }
        if let Some(sock) = &term_parent {
            // The init sent the master before exec, so it is queued on the socket by now.
            c.terminal = sys::recv_fd(sock.as_raw_fd()).map_err(io("receive the terminal of", &dir))?;
            if c.terminal.is_none() {
                let e = std::io::Error::new(std::io::ErrorKind::NotFound, "the init sent no terminal");
                return Err(io("receive the terminal of", &dir)(e));
            }
        }
        c.mark("exec", sys::mono_ns());
        drop(p2c_w);
        Ok(c)
    }

    fn describe_op(&self, spec: &ContainerSpec, rootfs: &Path, upper: &Path, work: &Path, op: usize) -> String {
        let plan = self.plan_ops(spec, rootfs, upper, work);
        plan.0.get(op).map(Op::describe).unwrap_or_else(|| format!("step {op}"))
    }

    /// Rootfs + pivot ops (and the index where pivot starts).
    fn plan_ops(&self, _spec: &ContainerSpec, rootfs: &Path, upper: &Path, work: &Path) -> (Vec<Op>, usize) {
        build_ops(&self.image, self.profile, &self.paths, rootfs, upper, work)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        spec: &ContainerSpec,
        rootfs: &Path,
        upper: &Path,
        work: &Path,
        stdio: [&OwnedFd; 3],
        to_parent: &OwnedFd,
        from_parent: &OwnedFd,
    ) -> InitPlan {
        let (ops, pivot_from) = self.plan_ops(spec, rootfs, upper, work);
        let userns = self.profile == Profile::Userns;
        let mut argv: Vec<CString> = self.image.entry.iter().map(|a| cstr(a.as_bytes())).collect();
        argv.extend(spec.args.iter().map(|a| cstr(a.as_bytes())));
        let envp =
            self.image.env.iter().chain(spec.env.iter()).map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect();
        InitPlan {
            stdio: [stdio[0].as_raw_fd(), stdio[1].as_raw_fd(), stdio[2].as_raw_fd()],
            terminal_sock: None,
            to_parent: to_parent.as_raw_fd(),
            from_parent: from_parent.as_raw_fd(),
            early_sync: userns,
            become_root: userns,
            ops,
            pivot_from,
            hostname: cstr(&spec.id.as_bytes()[..spec.id.len().min(64)]),
            loopback: true,
            cgroup_ns: true,
            cwd: cstr(self.image.cwd.as_bytes()),
            caps: self.caps.clone(),
            no_new_privs: self.profile != Profile::Privileged,
            seccomp: self.seccomp.clone(),
            exec_path: cstr(self.image.entry[0].as_bytes()),
            argv,
            envp,
        }
    }
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b.iter().copied().filter(|c| *c != 0).collect::<Vec<u8>>()).unwrap_or_default()
}

fn check_id(id: &str) -> Result<(), RuntimeError> {
    let bad = |reason| Err(RuntimeError::BadId { id: id.into(), reason });
    if id.is_empty() || id.len() > 64 {
        return bad("must be 1 to 64 bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || id.starts_with('.') {
        return bad("only letters, digits, '_', '.', '-' are allowed (and no leading '.')");
    }
    Ok(())
}

/// (child end, parent end) for one output.
fn open_output(o: &Output, stdout_child: Option<&OwnedFd>) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    match o {
        Output::Null => Ok((std::fs::OpenOptions::new().write(true).open("/dev/null")?.into(), None)),
        Output::Pipe => {
            let (r, w) = sys::pipe()?;
            Ok((w, Some(r)))
        }
        Output::File(p) => Ok((std::fs::OpenOptions::new().create(true).append(true).open(p)?.into(), None)),
        Output::SameAsStdout => match stdout_child {
            Some(fd) => Ok((fd.try_clone()?, None)),
            None => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "stdout cannot be SameAsStdout")),
        },
    }
}

/// The rootfs and pivot steps for a container (see [`crate::init`]); `paths` are the masked and
/// read-only paths to apply (empty for `Privileged`).
pub fn build_ops(
    image: &Image,
    profile: Profile,
    paths: &HostPaths,
    rootfs: &Path,
    upper: &Path,
    work: &Path,
) -> (Vec<Op>, usize) {
    let c = |s: &str| cstr(s.as_bytes());
    let r = |sub: &str| {
        let p = if sub.is_empty() { rootfs.to_path_buf() } else { rootfs.join(sub) };
        cstr(p.as_os_str().as_encoded_bytes())
    };
    let userns = profile == Profile::Userns;
    let m = |src: &str, target: CString, fstype: Option<&str>, flags: u64, data: Option<&str>| Op::Mount {
        src: Some(c(src)),
        target,
        fstype: fstype.map(c),
        flags,
        data: data.map(c),
    };
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME};
    let mut ops = vec![
        Op::Mount { src: None, target: c("/"), fstype: None, flags: MS_REC | MS_PRIVATE, data: None },
        m("overlay", r(""), Some("overlay"), 0, Some(&image.overlay_data(upper, work))),
        m("proc", r("proc"), Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        m(
            "sysfs",
            r("sys"),
            Some("sysfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC | if profile == Profile::Privileged { 0 } else { MS_RDONLY },
            None,
        ),
    ];
    // Docker's read-only paths: host-wide kernel knobs stay readable but not writable, even for the
    // container's root (sysctls such as fs.* are not namespaced and are guarded only by file mode).
    // Then its masked paths (runc's order). Paths this kernel lacks were dropped by HostPaths.
    use libc::MS_REMOUNT;
    for p in &paths.readonly {
        ops.push(m(&format!("{}", rootfs.join(p).display()), r(p), None, MS_BIND | MS_REC, None));
        ops.push(Op::Mount {
            src: None,
            target: r(p),
            fstype: None,
            flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data: None,
        });
    }
    for p in &paths.masked_files {
        ops.push(m("/dev/null", r(p), None, MS_BIND, None));
    }
    for p in &paths.masked_dirs {
        ops.push(m("tmpfs", r(p), Some("tmpfs"), MS_RDONLY, None));
    }
    ops.push(m("tmpfs", r("dev"), Some("tmpfs"), MS_NOSUID | MS_STRICTATIME, Some("mode=755,size=65536k")));
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9), ("tty", 5, 0)] {
        let target = r(&format!("dev/{name}"));
        if userns {
            // mknod is not allowed in a user namespace: bind the host's nodes instead.
            ops.push(Op::Touch(target.clone()));
            ops.push(m(&format!("/dev/{name}"), target, None, MS_BIND, None));
        } else {
            ops.push(Op::Mknod(target, libc::S_IFCHR | 0o666, libc::makedev(major, minor)));
        }
    }
    ops.push(Op::Mkdir(r("dev/pts"), 0o755));
    ops.push(m(
        "devpts",
        r("dev/pts"),
        Some("devpts"),
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        ops.push(Op::Symlink(c(target), r(&format!("dev/{link}"))));
    }
    ops.push(m("tmpfs", r("tmp"), Some("tmpfs"), MS_NOSUID | MS_NODEV, Some("mode=1777")));
    let pivot_from = ops.len();
    ops.extend([Op::Chdir(r("")), Op::PivotRoot, Op::DetachOldRoot, Op::Chdir(c("/"))]);
    (ops, pivot_from)
}

/// Launch timestamps: `launched_ns` plus (stage, host monotonic ns) marks in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// When `start` was called.
    pub launched_ns: u64,
    /// Marks (parent: prepare, cgroup, clone, attach, exec; child: rootfs, pivot, seccomp = ready to exec).
    pub marks: Vec<(&'static str, u64)>,
}

impl Timings {
    /// Phases as (name, seconds): the gaps between successive marks, sorted by time, each named after
    /// the mark that ends it.
    pub fn phases(&self) -> Vec<(&'static str, f64)> {
        let mut m = self.marks.clone();
        m.sort_by_key(|(_, ns)| *ns);
        let mut prev = self.launched_ns;
        m.into_iter()
            .map(|(n, ns)| {
                let d = ns.saturating_sub(prev) as f64 / 1e9;
                prev = prev.max(ns);
                (n, d)
            })
            .collect()
    }

    /// The last mark (exec), ns.
    pub fn exec_ns(&self) -> u64 {
        self.marks.iter().map(|(_, ns)| *ns).max().unwrap_or(self.launched_ns)
    }
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exit {
    /// Exit status, if it exited.
    pub status: Option<i32>,
    /// Signal, if killed.
    pub signal: Option<i32>,
    /// The memory limit OOM-killed a task of the container.
    pub oom_killed: bool,
}

/// A running (or ended) container. Dropping it kills its processes and removes its cgroup, veth and
/// private dirs (its mounts live in its own mount namespace and vanish with it).
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: i32,
    pidfd: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
    cgroups: Arc<dyn Cgroups>,
    cg: Option<CgroupDirs>,
    state_dir: Option<PathBuf>,
    veth: Option<Veth>,
    exit: Option<WaitStatus>,
    /// Launch timestamps.
    pub timings: Timings,
}

impl Container {
    fn mark(&mut self, name: &'static str, ns: u64) {
        self.timings.marks.push((name, ns));
    }

    /// Id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's init (the entry point).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The read end of stdout (with [`Output::Pipe`]), once.
    pub fn take_stdout(&mut self) -> Option<OwnedFd> {
        self.stdout.take()
    }

    /// The read end of stderr (with [`Output::Pipe`]), once.
    pub fn take_stderr(&mut self) -> Option<OwnedFd> {
        self.stderr.take()
    }

    /// The master end of the container's pty (with [`ContainerSpec::terminal`]), once.
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// Close the container's stdin (the workload's `idle` scenario ends then).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// cgroup memory usage now, bytes.
    pub fn usage_bytes(&self) -> Option<u64> {
        self.cgroups.usage_bytes(self.cg.as_ref()?)
    }

    /// OOM kills so far.
    pub fn oom_kills(&self) -> Option<u64> {
        self.cgroups.oom_kills(self.cg.as_ref()?)
    }

    /// The cgroup directories.
    pub fn cgroup_dirs(&self) -> Option<&CgroupDirs> {
        self.cg.as_ref()
    }

    /// The container's private dir (upper, work, rootfs).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The container's address with [`NetMode::Bridge`].
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.veth.as_ref().map(|v| v.addr)
    }

    /// Wait up to `timeout` for the init to exit; None if it still runs.
    pub fn wait(&mut self, timeout: Duration) -> Option<WaitStatus> {
        if self.exit.is_none() {
            if let Some(fd) = &self.pidfd {
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                if sys::poll_in(fd.as_raw_fd(), ms).unwrap_or(true) {
                    if let Ok(Some(st)) = sys::waitpid(self.pid, false) {
                        self.exit = Some(st);
                        self.pidfd = None;
                    }
                }
            }
        }
        self.exit
    }

    /// Close stdin, wait up to `timeout`, SIGKILL if needed; read OOM kills; remove everything.
    pub fn stop(&mut self, timeout: Duration) -> Result<Exit, RuntimeError> {
        self.close_stdin();
        if self.wait(timeout).is_none() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            self.wait(Duration::from_secs(10));
        }
        let oom_killed = self.oom_kills().unwrap_or(0) > 0;
        let exit = match self.exit {
            Some(WaitStatus::Exited(s)) => Exit { status: Some(s), signal: None, oom_killed },
            Some(WaitStatus::Signaled(s)) => Exit { status: None, signal: Some(s), oom_killed },
            None => Exit { oom_killed, ..Default::default() },
        };
        self.cleanup()?;
        Ok(exit)
    }

    fn cleanup(&mut self) -> Result<(), RuntimeError> {
        if self.exit.is_none() && self.pid > 0 {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            if let Ok(Some(st)) = sys::waitpid(self.pid, false) {
                self.exit = Some(st);
            }
            self.pidfd = None;
        }
        let mut first: Option<RuntimeError> = None;
        self.veth = None;
        if let Some(cg) = self.cg.take() {
            if let Err(source) = cgroup::remove(&cg) {
                first.get_or_insert(RuntimeError::Cgroup { id: self.id.clone(), source });
            }
        }
        if let Some(d) = self.state_dir.take() {
            if let Err(source) = std::fs::remove_dir_all(&d) {
                if source.kind() != std::io::ErrorKind::NotFound {
                    first.get_or_insert(RuntimeError::Io {
                        id: self.id.clone(),
                        what: "remove",
                        path: d.display().to_string(),
                        source,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("vmct-1.a_b").is_ok());
        for bad in ["", "a/b", "..", "x y", &"a".repeat(65)] {
            assert!(matches!(check_id(bad), Err(RuntimeError::BadId { .. })), "{bad}");
        }
    }

    #[test]
    fn ops_mount_overlay_then_pivot() {
        let t = tempfile::tempdir().unwrap();
        for d in crate::image::MOUNT_POINTS.iter().chain(["bin"].iter()) {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("bin/w"), b"").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path().join("bin/w"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let img = Image::open(vec![t.path().into()], vec!["/bin/w".into()]).unwrap();
        let hp = HostPaths {
            masked_files: vec!["proc/keys"],
            masked_dirs: vec!["sys/firmware"],
            readonly: vec!["proc/sys"],
        };
        let (ops, pivot) =
            build_ops(&img, Profile::Default, &hp, Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
        let descs: Vec<String> = ops.iter().map(Op::describe).collect();
        assert!(descs.iter().any(|d| d == "mount /dev/null (bind/propagation) on /s/r/proc/keys"), "{descs:#?}");
        assert!(descs.iter().any(|d| d == "mount tmpfs (tmpfs) on /s/r/sys/firmware"), "{descs:#?}");
        let fw = ops.iter().find_map(|o| match o {
            Op::Mount { target, flags, .. } if target.to_bytes() == b"/s/r/sys/firmware" => Some(*flags),
            _ => None,
        });
        assert_eq!(fw, Some(libc::MS_RDONLY));
        // Masks come after proc and sysfs are mounted (else they would be hidden under them).
        let at = |t: &str| descs.iter().position(|d| d.ends_with(t)).unwrap();
        assert!(at("on /s/r/sys") < at("on /s/r/sys/firmware") && at("on /s/r/proc") < at("on /s/r/proc/keys"));
        assert!(ops[1].describe().contains("overlay") && ops[1].describe().contains("upperdir=/s/u"));
        assert!(ops.iter().any(|o| matches!(o, Op::Mknod(p, ..) if p.to_bytes() == b"/s/r/dev/null")));
        assert_eq!(ops[pivot..], [Op::Chdir(cstr(b"/s/r")), Op::PivotRoot, Op::DetachOldRoot, Op::Chdir(cstr(b"/"))]);
        let sysfs = |p| {
            let (o, _) =
                build_ops(&img, p, &HostPaths::default(), Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
            o.iter()
                .find_map(|o| match o {
                    Op::Mount { target, flags, .. } if target.to_bytes() == b"/s/r/sys" => Some(*flags),
                    _ => None,
                })
                .unwrap()
        };
        assert_ne!(sysfs(Profile::Default) & libc::MS_RDONLY, 0);
        assert_eq!(sysfs(Profile::Privileged) & libc::MS_RDONLY, 0);
        let (uops, _) = build_ops(&img, Profile::Userns, &hp, Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
        assert!(!uops.iter().any(|o| matches!(o, Op::Mknod(..))));
        assert!(uops.iter().any(|o| matches!(o, Op::Touch(_))));
    }

    #[test]
    fn phases_sorted_by_time() {
        let t = Timings { launched_ns: 100, marks: vec![("clone", 300), ("rootfs", 250), ("exec", 500)] };
        assert_eq!(t.phases(), vec![("rootfs", 150e-9), ("clone", 50e-9), ("exec", 200e-9)]);
        assert_eq!(t.exec_ns(), 500);
    }
}
