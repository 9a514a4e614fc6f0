//! The `container` backends: our runtime (crate `container`) with three profiles.
//!
//! | backend | profile |
//! |---|---|
//! | `container` | default: pid/mount/uts/ipc/net/cgroup namespaces, Docker's default caps, no_new_privs, Podman's seccomp profile, Docker's device rules, masked and read-only paths |
//! | `container-privileged` | Docker's `--privileged`: no user namespace, all caps and devices, no seccomp, no masks |
//! | `container-userns` | default plus a user namespace |
//!
//! All share one base image (the workload binary and the mount points it needs), built once under
//! [`image_root`]. The workload's stdout+stderr come back through one pipe that is streamed to the
//! harness and copied to `<log_dir>/<id>.log`.
use super::lines::{Line, LineReader};
use super::{Backend, BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Phase, Ready};
use crate::clock;
use crate::memstat;
use container::{ContainerSpec, Image, Limits, ProcessUser, Profile, Runtime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Path of the workload inside the image.
pub const WORKLOAD_IN_IMAGE: &str = "/bin/vmct-workload";

/// Where images are built: `<cache>/images` when every ancestor of the cache dir is world-traversable
/// (a user-namespaced container root must reach its layers), else `/var/tmp/vmct/images`.
pub fn image_root() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let cache = crate::artifacts::cache_dir();
    let traversable = cache
        .ancestors()
        .filter(|a| a.exists())
        .all(|a| a.metadata().is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if traversable {
        cache.join("images")
    } else {
        PathBuf::from("/var/tmp/vmct/images")
    }
}

/// The shared base image for `workload` (built once, keyed by the workload's content).
pub fn base_image(workload: &Path) -> Result<Image, String> {
    let bytes = std::fs::read(workload).map_err(|e| format!("cannot read workload {}: {e}", workload.display()))?;
    let hash = crate::artifacts::content_hash(&bytes);
    let dest = image_root().join(format!("base-{hash:016x}"));
    let owner = Some((container::USERNS_BASE, container::USERNS_BASE));
    let layer =
        container::image::build_layer(&dest, &[(workload, WORKLOAD_IN_IMAGE)], owner).map_err(|e| e.to_string())?;
    let mut img = Image::open(vec![layer], vec![WORKLOAD_IN_IMAGE.into()]).map_err(|e| e.to_string())?;
    // The `io` scenario writes into its working directory: the container's own (overlay) filesystem.
    img.cwd = "/work".into();
    Ok(img)
}

const PROFILES: [(&str, Profile); 3] = [
    ("container", Profile::Default),
    ("container-privileged", Profile::Privileged),
    ("container-userns", Profile::Userns),
];

/// `container`, `container-privileged` and `container-userns`.
pub fn backends(workload: &Path) -> Vec<Box<dyn Backend>> {
    PROFILES
        .into_iter()
        .map(|(name, profile)| Box::new(ContainerBackend::new(name, profile, workload)) as Box<dyn Backend>)
        .collect()
}

/// The container backend called `name`, if it is one of ours.
pub fn by_name(name: &str, workload: &Path) -> Option<ContainerBackend> {
    PROFILES.into_iter().find(|(n, _)| *n == name).map(|(n, p)| ContainerBackend::new(n, p, workload))
}

/// One profile of our runtime.
pub struct ContainerBackend {
    name: &'static str,
    profile: Profile,
    workload: PathBuf,
    runtime: Mutex<Option<Result<Arc<Runtime>, String>>>,
    /// Runtimes of images made from committed layers (`restore`, `--image`), by layer list.
    committed: Mutex<Vec<(Vec<PathBuf>, Arc<Runtime>)>>,
    /// Runtimes of images run with their own process ([`Backend::launch_image`]), by launch key.
    images: Mutex<Vec<(String, Arc<Runtime>)>>,
}

impl ContainerBackend {
    /// A backend named `name` running `workload` with `profile` (the runtime is set up on first use).
    pub fn new(name: &'static str, profile: Profile, workload: &Path) -> ContainerBackend {
        ContainerBackend {
            name,
            profile,
            workload: workload.to_path_buf(),
            runtime: Mutex::new(None),
            committed: Mutex::new(Vec::new()),
            images: Mutex::new(Vec::new()),
        }
    }

    /// The runtime (image built, cgroups detected, seccomp compiled), or why it is unavailable.
    pub fn runtime(&self) -> Result<Arc<Runtime>, String> {
        let mut g = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(|| {
            if !nix::unistd::geteuid().is_root() {
                return Err("needs root (cgroups, mounts, namespaces); run vmct as root".into());
            }
            let img = base_image(&self.workload)?;
            Runtime::new(img, self.profile).map(Arc::new).map_err(|e| e.to_string())
        })
        .clone()
    }
}

impl Backend for ContainerBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn info(&self) -> results::BackendInfo {
        let rt = self.runtime();
        results::BackendInfo {
            name: self.name.into(),
            kind: results::BackendKind::Ours,
            model: results::IsolationModel::Container,
            guest_model: None,
            available: rt.is_ok(),
            reason: rt.as_ref().err().cloned(),
            version: rt
                .as_ref()
                .ok()
                .map(|r| format!("profile {}, cgroup {:?}", r.profile().name(), r.cgroup_version())),
            isolation: rt.ok().map(|r| super::surface::isolation_profile(r.profile(), r.seccomp_info())),
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // Limits through the instance's cgroup; state saved by committing the upper layer to an image.
        results::Capabilities {
            save_state: true,
            cgroup_limits: true,
            limits: true,
            linux_probes: true,
            ..results::Capabilities::default()
        }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        let limits = Limits { memory_bytes: spec.mem_limit_bytes, cpus: spec.cpu_quota, pids: spec.pids_limit };
        limits.validate().map_err(|e| e.to_string())
    }

    fn attack_surface(&self) -> super::surface::BackendSurface {
        let rt = self.runtime().ok();
        let seccomp = rt.as_ref().and_then(|r| r.seccomp_info());
        super::surface::container_surface(self.profile, seccomp, "vmct's container runtime")
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let launched_ns = clock::mono_ns();
        let rt = self.runtime().map_err(|reason| BackendError::Unavailable { backend: self.name.into(), reason })?;
        self.launch_on(&rt, spec, launched_ns)
    }

    /// Start a container from a committed layer: the base image's layers plus `saved.path` on top.
    fn restore(&self, saved: &super::Saved, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let launched_ns = clock::mono_ns();
        let base = self.runtime().map_err(|reason| BackendError::Unavailable { backend: self.name.into(), reason })?;
        let mut layers = base.image().layers.clone();
        layers.push(saved.path.clone());
        self.launch_layers(layers, spec, launched_ns)
    }

    /// The image's layers as lower dirs, its argv, environment, working directory and user (uid:gid
    /// resolved in the image, no supplementary groups; inside the user namespace for
    /// `container-userns`, see [`container::ProcessUser`]); the profile's security settings as for the
    /// workload. Runtimes are kept per (layers, argv\[0\], env, cwd).
    fn launch_image(
        &self,
        l: &crate::images::run::ImageLaunch,
        spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let launched_ns = clock::mono_ns();
        let unavailable = |reason: String| BackendError::Unavailable { backend: self.name.into(), reason };
        let key = format!("{:?}|{}|{:?}|{}", l.layers, l.argv[0], l.env, l.cwd);
        let rt = {
            let mut g = self.images.lock().unwrap_or_else(|e| e.into_inner());
            match g.iter().find(|(k, _)| *k == key) {
                Some((_, rt)) => rt.clone(),
                None => {
                    if !nix::unistd::geteuid().is_root() {
                        return Err(unavailable("needs root (cgroups, mounts, namespaces); run vmct as root".into()));
                    }
                    let mut img = Image::open(l.layers.clone(), vec![l.argv[0].clone()])
                        .map_err(|e| unavailable(format!("image '{}': {e}", l.image)))?;
                    img.env = l.env.clone();
                    img.cwd = l.cwd.clone();
                    let rt = Arc::new(Runtime::new(img, self.profile).map_err(|e| unavailable(e.to_string()))?);
                    g.push((key, rt.clone()));
                    rt
                }
            }
        };
        let (uid, gid) = l.uid_gid;
        // Root stays as before (the runtime's own groups); anything else is switched to by the init.
        let user = (l.uid_gid != (0, 0)).then(|| ProcessUser { uid, gid, groups: Vec::new() });
        self.launch_args(&rt, spec, l.argv[1..].to_vec(), user, launched_ns)
    }
}

impl ContainerBackend {
    /// Start a container of the image made of `layers` (bottom first) with the base image's entry point;
    /// runtimes of such images are kept for later launches.
    pub fn launch_layers(
        &self,
        layers: Vec<PathBuf>,
        spec: &InstanceSpec,
        launched_ns: u64,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable { backend: self.name.into(), reason };
        let rt = {
            let mut g = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            match g.iter().find(|(l, _)| *l == layers) {
                Some((_, rt)) => rt.clone(),
                None => {
                    let base = self.runtime().map_err(unavailable)?;
                    let img = Image::open(layers.clone(), base.image().entry.clone())
                        .map_err(|e| unavailable(e.to_string()))?;
                    let rt = Arc::new(Runtime::new(img, self.profile).map_err(|e| unavailable(e.to_string()))?);
                    g.push((layers, rt.clone()));
                    rt
                }
            }
        };
        self.launch_on(&rt, spec, launched_ns)
    }

    /// The base image's layers (bottom first).
    pub fn base_layers(&self) -> Result<Vec<PathBuf>, String> {
        Ok(self.runtime()?.image().layers.clone())
    }
}

impl ContainerBackend {
    fn launch_on(
        &self,
        rt: &Runtime,
        spec: &InstanceSpec,
        launched_ns: u64,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let args = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        self.launch_args(rt, spec, args, None, launched_ns)
    }

    /// Start a container of `rt`'s image with `args` after its entry point, as `user` (None: root).
    fn launch_args(
        &self,
        rt: &Runtime,
        spec: &InstanceSpec,
        args: Vec<String>,
        user: Option<ProcessUser>,
        launched_ns: u64,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let launch_err = |reason: String| BackendError::Launch { backend: self.name.into(), reason };
        let mut cs = ContainerSpec::new(spec.id.clone(), args);
        cs.env = spec.env.clone();
        cs.user = user;
        cs.limits = Limits { memory_bytes: spec.mem_limit_bytes, cpus: spec.cpu_quota, pids: spec.pids_limit };
        let log = match &spec.log_dir {
            Some(dir) => {
                let io = |context: &str| {
                    let backend = self.name.to_string();
                    let context = format!("{context} {}", dir.display());
                    move |source| BackendError::Io { backend, context, source }
                };
                std::fs::create_dir_all(dir).map_err(io("create log dir"))?;
                Some(std::fs::File::create(dir.join(format!("{}.log", spec.id))).map_err(io("create log file in"))?)
            }
            None => None,
        };
        let mut c = rt.start(&cs).map_err(|e| launch_err(e.to_string()))?;
        let out = c.take_stdout().ok_or_else(|| launch_err("no stdout pipe".into()))?;
        let mut reader = LineReader::new(out).map_err(|source| BackendError::Io {
            backend: self.name.into(),
            context: "set up output pipe".into(),
            source,
        })?;
        if let Some(f) = log {
            reader = reader.tee(f);
        }
        Ok(Box::new(ContainerInstance {
            backend: self.name.into(),
            id: spec.id.clone(),
            c: Some(c),
            reader,
            launched_ns,
        }))
    }
}

/// A running container of ours.
pub struct ContainerInstance {
    backend: String,
    id: String,
    c: Option<container::Container>,
    reader: LineReader,
    launched_ns: u64,
}

impl ContainerInstance {
    fn read(&mut self, timeout: Duration) -> Result<Line, BackendError> {
        self.reader.next(timeout).map_err(|source| BackendError::Io {
            backend: self.backend.clone(),
            context: format!("read from container {}", self.id),
            source,
        })
    }

    fn timeout(&self, what: &'static str, timeout: Duration) -> BackendError {
        BackendError::Timeout { backend: self.backend.clone(), id: self.id.clone(), what, timeout, log: String::new() }
    }

    fn exited(&mut self, what: &'static str) -> BackendError {
        let exit = match self.c.as_mut().and_then(|c| c.wait(super::REAP_GRACE)) {
            Some(container::sys::WaitStatus::Exited(s)) => format!("exit status {s}"),
            Some(container::sys::WaitStatus::Signaled(s)) => format!("killed by signal {s}"),
            None => "still running, output closed".into(),
        };
        let oom = self.c.as_ref().and_then(|c| c.oom_kills()).unwrap_or(0);
        let exit = if oom > 0 { format!("{exit}, OOM-killed") } else { exit };
        let tail = self.reader.tail.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join(" | ");
        BackendError::Exited {
            backend: self.backend.clone(),
            id: self.id.clone(),
            what,
            exit,
            log: if tail.is_empty() { String::new() } else { format!(": {tail}") },
        }
    }
}

impl Instance for ContainerInstance {
    fn id(&self) -> &str {
        &self.id
    }

    fn request_stop(&mut self) {
        if let Some(c) = self.c.as_mut() {
            c.close_stdin();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.c.as_ref().map(|c| c.pid())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        let deadline = clock::deadline_ns(timeout);
        loop {
            let left = Duration::from_nanos(deadline.saturating_sub(clock::mono_ns()));
            match self.read(left)? {
                Line::Event(ready_ns, Event::Ready) => {
                    let t = self.c.as_ref().map(|c| c.timings.clone()).unwrap_or_default();
                    // The backend's own launch stamp (before the runtime lookup) starts the clock.
                    let t = container::Timings { launched_ns: self.launched_ns.min(t.launched_ns), ..t };
                    let mut phases: Vec<Phase> =
                        t.phases().into_iter().map(|(n, d)| Phase { name: n.into(), duration_s: d }).collect();
                    phases.push(Phase {
                        name: "to_ready".into(),
                        duration_s: clock::ns_to_s(ready_ns.saturating_sub(t.exec_ns())),
                    });
                    return Ok(Ready { launched_ns: t.launched_ns, ready_ns, phases });
                }
                Line::Event(_, Event::Done { .. }) | Line::Eof => return Err(self.exited("reported ready")),
                Line::Event(..) | Line::Text(_) => {}
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
                Line::Timeout => return Err(self.timeout("report ready", timeout)),
            }
        }
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError> {
        let deadline = clock::deadline_ns(timeout);
        loop {
            let left = Duration::from_nanos(deadline.saturating_sub(clock::mono_ns()));
            match self.read(left)? {
                Line::Event(ns, e) => return Ok(Some((ns, e))),
                Line::Text(_) => {}
                Line::Eof => return Ok(None),
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
                Line::Timeout => return Err(self.timeout("finish", timeout)),
            }
        }
    }

    fn next_line(&mut self, timeout: Duration) -> Result<Line, BackendError> {
        self.read(timeout)
    }

    fn stats(&mut self) -> InstanceStats {
        let Some(c) = &self.c else { return InstanceStats::default() };
        let m = memstat::proc_mem(c.pid());
        InstanceStats {
            rss_bytes: m.map(|m| m.rss_bytes),
            pss_bytes: m.map(|m| m.pss_bytes),
            cgroup_usage_bytes: c.usage_bytes(),
            ..Default::default()
        }
    }

    /// Commit: the container's upper dir becomes a read-only layer (`dir/layer.tar` + `dir/layer/`); the
    /// container keeps running. `bytes` is the layer tar's size.
    fn save_state(&mut self, dir: &Path) -> Result<super::Saved, BackendError> {
        let err = |reason: String| BackendError::Save { backend: self.backend.clone(), id: self.id.clone(), reason };
        let c = self.c.as_ref().ok_or_else(|| err("the container has stopped".into()))?;
        let upper = c.state_dir().ok_or_else(|| err("the container has no state dir".into()))?.join("upper");
        let t0 = std::time::Instant::now();
        let layer = container::commit::commit_into(&upper, dir, &[]).map_err(|e| err(e.to_string()))?;
        Ok(super::Saved {
            path: layer.dir,
            bytes: layer.tar_bytes,
            duration_s: t0.elapsed().as_secs_f64(),
            checks_restore: false,
        })
    }

    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        let Some(mut c) = self.c.take() else { return Ok(ExitInfo::default()) };
        // After a stop request (a signal to vmct) nothing waits for a graceful end.
        let r = c.stop(if crate::interrupt::requested() { Duration::ZERO } else { timeout });
        // Drain what the container wrote before it ended (its log gets the last lines too).
        while let Ok(Line::Event(..) | Line::Text(_)) = self.reader.next(Duration::ZERO) {}
        let exit = r.map_err(|e| BackendError::Launch { backend: self.backend.clone(), reason: e.to_string() })?;
        Ok(ExitInfo {
            status: exit.status,
            signal: exit.signal,
            oom_killed: exit.oom_killed,
            error: exit.oom_killed.then(|| "OOM-killed by the memory limit".to_string()),
        })
    }
}
