//! Peer runtimes `crun` and `runc`: the same base image as our `container` backend, run through a
//! generated OCI bundle (`container::oci`) with `<runtime> --root STATE run -b BUNDLE ID` in the
//! foreground (one child process, so [`ChildInstance`] handles it).
//!
//! Per launch, like containerd: `<state root>/<id>/{upper,work,rootfs,state,config.json}`; the overlay is
//! mounted in a private mount namespace entered between fork and exec of the runtime (the host never
//! sees it). crun 1.8 refuses the hybrid cgroup layout, so on hybrid hosts the same private namespace
//! also detaches /sys/fs/cgroup/unified (HOST-NOTES.md). Both get an absolute `cgroupsPath` under this
//! process's own memory cgroup; intermediate directories that creates in other hierarchies are removed
//! again with the container.
use super::child::ChildInstance;
use super::{Backend, BackendError, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready};
use crate::memstat;
use container::cgroup::{self, CgroupVersion};
use container::oci::{self, OciInputs};
use container::{Image, Limits, Profile};
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `crun` and `runc`.
pub fn backends(workload: &Path) -> Vec<Box<dyn Backend>> {
    ["crun", "runc"].into_iter().map(|n| Box::new(PeerBackend::new(n, workload)) as Box<dyn Backend>).collect()
}

/// Find `bin` in PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

struct Setup {
    bin: PathBuf,
    version: String,
    image: Image,
    hybrid: bool,
    /// cgroupsPath parent (this process's own memory cgroup path, or the v2 path).
    cgroup_parent: String,
}

/// One peer runtime.
pub struct PeerBackend {
    name: &'static str,
    workload: PathBuf,
    setup: Mutex<Option<Result<Arc<Setup>, String>>>,
}

impl PeerBackend {
    /// `name` is the binary (`crun` or `runc`), looked up in PATH.
    pub fn new(name: &'static str, workload: &Path) -> PeerBackend {
        PeerBackend { name, workload: workload.to_path_buf(), setup: Mutex::new(None) }
    }

    fn setup(&self) -> Result<Arc<Setup>, String> {
        let mut g = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(|| {
            let pkg = self.name;
            let bin = which(self.name)
                .ok_or_else(|| format!("{} not found in PATH; install it with apt-get install {pkg}", self.name))?;
            let out = Command::new(&bin).arg("--version").output().map_err(|e| format!("{}: {e}", bin.display()))?;
            let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
            if !nix::unistd::geteuid().is_root() {
                return Err("needs root (cgroups, mounts); run vmct as root".into());
            }
            // The bundle carries Podman's seccomp profile: a missing package is said here, not per launch.
            let profile = Path::new(container::seccomp_profile::DEFAULT_PROFILE_PATH);
            container::seccomp_profile::load(profile, container::security::DEFAULT_CAPS).map_err(|e| e.to_string())?;
            let image = super::container::base_image(&self.workload)?;
            let cg = cgroup::detect().map_err(|e| e.to_string())?;
            let pc = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let own = match cg.version() {
                CgroupVersion::V2 => cgroup::own_path(&pc, None),
                _ => cgroup::own_path(&pc, Some("memory")),
            }
            .unwrap_or_else(|| "/".into());
            Ok(Arc::new(Setup {
                bin,
                version,
                image,
                hybrid: cg.version() == CgroupVersion::Hybrid,
                cgroup_parent: own.trim_end_matches('/').to_string(),
            }))
        })
        .clone()
    }
}

/// Directories of `rel` (a cgroup path) and its ancestors that do not exist yet in any hierarchy under
/// /sys/fs/cgroup: the runtime will create them, and cleanup removes them (deepest first).
fn missing_cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else { return out };
    for h in rd.flatten() {
        let base = h.path();
        if !base.join("cgroup.procs").exists() {
            continue;
        }
        let mut p = base.clone();
        for comp in rel.trim_start_matches('/').split('/').filter(|c| !c.is_empty()) {
            p = p.join(comp);
            if !p.exists() {
                out.push(p.clone());
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn cleanup(bin: &Path, bundle: &Path, id: &str, memcg: &Path, dirs: &[PathBuf]) {
    // The runtime removes its container on a normal exit; if it was killed, the container may live on.
    for pid in cgroup::procs(memcg) {
        let _ = container::sys::kill(pid, libc::SIGKILL);
    }
    let state = bundle.join("state");
    if state.join(id).exists() {
        let _ = Command::new(bin)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    for d in dirs {
        let _ = cgroup::remove_dir(d);
    }
    let _ = std::fs::remove_dir_all(bundle);
}

/// RSS/PSS of the container init (the runtime's child) and its cgroup's memory usage.
fn peer_stats(runtime_pid: u32) -> InstanceStats {
    let children =
        std::fs::read_to_string(format!("/proc/{runtime_pid}/task/{runtime_pid}/children")).unwrap_or_default();
    let Some(init) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) else {
        return InstanceStats::default();
    };
    let m = memstat::proc_mem(init);
    let pc = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
    let usage = cgroup::own_path(&pc, Some("memory"))
        .map(|p| PathBuf::from("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')).join("memory.usage_in_bytes"))
        .or_else(|| {
            cgroup::own_path(&pc, None)
                .map(|p| PathBuf::from("/sys/fs/cgroup").join(p.trim_start_matches('/')).join("memory.current"))
        })
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| s.trim().parse().ok());
    InstanceStats {
        rss_bytes: m.map(|m| m.rss_bytes),
        pss_bytes: m.map(|m| m.pss_bytes),
        cgroup_usage_bytes: usage,
        ..Default::default()
    }
}

impl Backend for PeerBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn info(&self) -> results::BackendInfo {
        let s = self.setup();
        results::BackendInfo {
            name: self.name.into(),
            kind: "peer".into(),
            model: "container".into(),
            guest_model: None,
            available: s.is_ok(),
            reason: s.as_ref().err().cloned(),
            version: s.as_ref().ok().map(|s| s.version.clone()),
            isolation: s.ok().map(|_| super::surface::isolation_profile(Profile::Default, peer_seccomp().as_ref())),
            emulated: false,
        }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        let limits = Limits { memory_bytes: spec.mem_limit_bytes, cpus: spec.cpu_quota, pids: spec.pids_limit };
        limits.validate().map_err(|e| e.to_string())
    }

    fn attack_surface(&self) -> super::surface::BackendSurface {
        super::surface::container_surface(Profile::Default, peer_seccomp().as_ref(), self.name)
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let s = self.setup().map_err(|reason| BackendError::Unavailable { backend: self.name.into(), reason })?;
        let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        self.launch_with(&s, spec, &s.image, &args, (0, 0))
    }

    /// The bundle is generated from the image's config: its layers, argv, environment, working
    /// directory and user (uid:gid resolved in the image), with the same default profile.
    fn launch_image(
        &self,
        l: &crate::images::run::ImageLaunch,
        spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable { backend: self.name.into(), reason };
        let s = self.setup().map_err(unavailable)?;
        let mut image = Image::open(l.layers.clone(), vec![l.argv[0].clone()])
            .map_err(|e| unavailable(format!("image '{}': {e}", l.image)))?;
        image.env = l.env.clone();
        image.cwd = l.cwd.clone();
        self.launch_with(&s, spec, &image, &l.argv[1..], l.uid_gid)
    }
}

impl PeerBackend {
    /// Launch `image` with `args` after its entry point as `user` (uid, gid).
    fn launch_with(
        &self,
        s: &Setup,
        spec: &InstanceSpec,
        image: &Image,
        args: &[String],
        user: (u32, u32),
    ) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |reason: String| BackendError::Launch { backend: self.name.into(), reason };
        let limits = Limits { memory_bytes: spec.mem_limit_bytes, cpus: spec.cpu_quota, pids: spec.pids_limit };
        limits.validate().map_err(|e| fail(e.to_string()))?;
        let bundle = Path::new(container::DEFAULT_STATE_ROOT).join(&spec.id);
        let io = |what: &str, p: &Path| {
            let reason = format!("{what} {}", p.display());
            move |e: std::io::Error| BackendError::Launch { backend: "peer".into(), reason: format!("{reason}: {e}") }
        };
        std::fs::create_dir_all(bundle.parent().unwrap_or(Path::new("/"))).map_err(io("create", &bundle))?;
        std::fs::create_dir(&bundle).map_err(io("create bundle", &bundle))?;
        let cgroups_path = format!("{}/{}", s.cgroup_parent, spec.id);
        let dirs = missing_cgroup_dirs(&cgroups_path);
        let memcg = PathBuf::from("/sys/fs/cgroup/memory").join(cgroups_path.trim_start_matches('/'));
        // From here on the guard removes the bundle (and cgroups) on any error.
        struct Guard(Option<Box<dyn FnOnce() + Send>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(f) = self.0.take() {
                    f()
                }
            }
        }
        let (bin, b2, id2) = (s.bin.clone(), bundle.clone(), spec.id.clone());
        let mut guard = Guard(Some(Box::new(move || cleanup(&bin, &b2, &id2, &memcg, &dirs))));
        let (upper, work, rootfs) = (bundle.join("upper"), bundle.join("work"), bundle.join("rootfs"));
        for d in [&upper, &work, &rootfs, &bundle.join("state")] {
            std::fs::create_dir(d).map_err(io("create", d))?;
        }
        let cfg = oci::config_json(&OciInputs {
            image,
            args,
            env: &spec.env,
            hostname: &spec.id,
            limits,
            cgroups_path: &cgroups_path,
            rootfs: "rootfs",
            profile: Profile::Default,
        })
        .map_err(|e| fail(e.to_string()))?;
        let cfg = with_user(cfg, user).map_err(fail)?;
        let cfg_path = bundle.join("config.json");
        std::fs::write(&cfg_path, cfg).map_err(io("write", &cfg_path))?;
        let target = CString::new(rootfs.as_os_str().as_encoded_bytes()).map_err(|e| fail(e.to_string()))?;
        let data = CString::new(image.overlay_data(&upper, &work)).map_err(|e| fail(e.to_string()))?;
        let unified = (self.name == "crun" && s.hybrid).then(|| c"/sys/fs/cgroup/unified".to_owned());
        let mut cmd = Command::new(&s.bin);
        cmd.arg("--root").arg(bundle.join("state")).arg("run").arg("-b").arg(&bundle).arg(&spec.id);
        // SAFETY: the closure only makes async-signal-safe system calls on strings prepared before the
        // fork (container::sys::private_mount_ns allocates nothing).
        unsafe {
            cmd.pre_exec(move || container::sys::private_mount_ns(Some((&target, &data)), unified.as_deref()));
        }
        // The OCI config carries the environment; the runtime itself gets the owner variable too.
        let mut runtime_spec = spec.clone();
        runtime_spec.env.retain(|(k, _)| k == super::OWNER_ENV);
        let child = ChildInstance::spawn(self.name, &runtime_spec, cmd)?;
        let cleanup_fn = guard.0.take().unwrap_or_else(|| Box::new(|| ()));
        let inner = child.with_stats(peer_stats).with_cleanup(cleanup_fn);
        let memcg = PathBuf::from("/sys/fs/cgroup/memory").join(cgroups_path.trim_start_matches('/'));
        Ok(Box::new(PeerInstance { inner, memcg, v2: !s.hybrid && !memcg_exists_v1(), vmstat_oom: vmstat_oom_kills() }))
    }
}

/// `cfg` (an OCI config.json) with `process.user` set to `user` (uid, gid); unchanged for root.
fn with_user(cfg: String, user: (u32, u32)) -> Result<String, String> {
    if user == (0, 0) {
        return Ok(cfg);
    }
    let mut v: serde_json::Value = serde_json::from_str(&cfg).map_err(|e| format!("config.json: {e}"))?;
    v["process"]["user"] = serde_json::json!({ "uid": user.0, "gid": user.1 });
    serde_json::to_string_pretty(&v).map_err(|e| format!("config.json: {e}"))
}

/// The seccomp profile the generated bundles carry (Podman's default, resolved for Docker's default
/// capabilities), if it can be read.
fn peer_seccomp() -> Option<container::seccomp_profile::ProfileInfo> {
    let path = Path::new(container::seccomp_profile::DEFAULT_PROFILE_PATH);
    container::seccomp_profile::load(path, container::security::DEFAULT_CAPS).ok().map(|c| c.info.clone())
}

fn memcg_exists_v1() -> bool {
    Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// The host's OOM-kill counter (/proc/vmstat `oom_kill`).
fn vmstat_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// A peer container: [`ChildInstance`] plus OOM-kill reporting.
///
/// The peer deletes its cgroup as soon as the container ends, often before `stop` could read the
/// cgroup's own counter; then an OOM kill is inferred from the runtime's exit status 137 (128+SIGKILL)
/// together with a rise of the host's OOM-kill counter during the instance's life.
struct PeerInstance {
    inner: ChildInstance,
    memcg: PathBuf,
    v2: bool,
    vmstat_oom: u64,
}

impl PeerInstance {
    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
        std::fs::read_to_string(self.memcg.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Instance for PeerInstance {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        self.inner.wait_ready(timeout)
    }
    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, super::Event)>, BackendError> {
        self.inner.next_event(timeout)
    }
    fn next_line(&mut self, timeout: Duration) -> Result<super::lines::Line, BackendError> {
        self.inner.next_line(timeout)
    }
    fn stats(&mut self) -> InstanceStats {
        self.inner.stats()
    }
    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        // Kills happen before stop; the cgroup is gone after it.
        let before = self.oom_kills();
        let mut e = self.inner.stop(timeout)?;
        let killed = e.status == Some(128 + libc::SIGKILL) || e.signal == Some(libc::SIGKILL);
        e.oom_killed = before > 0 || (killed && vmstat_oom_kills() > self.vmstat_oom);
        if e.oom_killed {
            e.error = Some("OOM-killed by the memory limit".into());
        }
        Ok(e)
    }
}
