//! Peer runtimes `crun`, `runc` and gVisor's `runsc`: the same base image as our `container` backend,
//! run through a generated OCI bundle (`container::oci`) with
//! `<runtime> --root STATE [GLOBAL FLAGS] run --bundle BUNDLE ID` in the foreground (one child process,
//! so [`ChildInstance`] handles it). runsc differs only in its global flags (platform, no network), its
//! model (a user-space kernel, not a container) and how its memory and attack surface are read
//! ([`super::runsc`]).
//!
//! Per launch, like containerd: `<state root>/<id>/{upper,work,rootfs,state,config.json}`; the overlay is
//! mounted in a private mount namespace entered between fork and exec of the runtime (the host never
//! sees it). crun 1.8 refuses the hybrid cgroup layout, so on hybrid hosts the same private namespace
//! also detaches /sys/fs/cgroup/unified (HOST-NOTES.md). Both get an absolute `cgroupsPath` under this
//! process's own memory cgroup; the parent directories that creates in other hierarchies (and did not
//! exist before) are removed again with the last container that needs them, and recorded in the bundle
//! for `vmct gc` after a killed run.
use super::child::ChildInstance;
use super::{Backend, BackendError, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready, Saved};
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

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `crun`, `runc` and `runsc`.
pub fn backends(workload: &Path) -> Vec<Box<dyn Backend>> {
    ["crun", "runc", super::runsc::NAME]
        .into_iter()
        .map(|n| Box::new(PeerBackend::new(n, workload)) as Box<dyn Backend>)
        .collect()
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
    /// Flags before the subcommand of every `run` (runsc: `--network=none --platform=P`).
    global_args: Vec<String>,
    image: Image,
    hybrid: bool,
    /// cgroupsPath parent (this process's own memory cgroup path, or the v2 path).
    cgroup_parent: String,
}

/// How a peer runtime isolates: an OCI container runtime on the shared host kernel (crun, runc), or
/// gVisor's user-space kernel (runsc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// crun, runc.
    Container,
    /// runsc: the workload's system calls go to the Sentry ([`super::runsc`]).
    UserSpaceKernel,
}

/// One peer runtime.
pub struct PeerBackend {
    name: &'static str,
    flavour: Flavour,
    workload: PathBuf,
    setup: Mutex<Option<Result<Arc<Setup>, String>>>,
}

impl PeerBackend {
    /// `name` is the binary (`crun`, `runc` or `runsc`), looked up in PATH; its Debian package has the
    /// same name.
    pub fn new(name: &'static str, workload: &Path) -> PeerBackend {
        let flavour = if name == super::runsc::NAME { Flavour::UserSpaceKernel } else { Flavour::Container };
        PeerBackend { name, flavour, workload: workload.to_path_buf(), setup: Mutex::new(None) }
    }

    fn setup(&self) -> Result<Arc<Setup>, String> {
        let mut g = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(|| {
            let pkg = self.name;
            let bin = which(self.name).ok_or_else(|| {
                format!("{} not found in PATH; install the Debian package {pkg} (apt-get install {pkg})", self.name)
            })?;
            let out = Command::new(&bin).arg("--version").output().map_err(|e| format!("{}: {e}", bin.display()))?;
            let mut version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
            if !nix::unistd::geteuid().is_root() {
                return Err("needs root (cgroups, mounts); run vmct as root".into());
            }
            let mut global_args = Vec::new();
            if self.flavour == Flavour::UserSpaceKernel {
                let choice = super::runsc::platform(&bin, &version)?;
                global_args = super::runsc::global_args(&choice);
                version = format!("{version}; {}", choice.describe());
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
                global_args,
                image,
                hybrid: cg.version() == CgroupVersion::Hybrid,
                cgroup_parent: own.trim_end_matches('/').to_string(),
            }))
        })
        .clone()
    }
}

/// Where [`bundle_command`](PeerBackend) records, one path a line, the parent cgroup directories of the
/// bundle's cgroupsPath that this harness caused the runtime to create (its `mkdir -p` in every
/// hierarchy), so `vmct gc` can remove them once empty after a killed run ([`recorded_parents`]).
pub const CGROUP_PARENTS_FILE: &str = "cgroup-parents";

/// Parent cgroup directories the runtimes made for this process's bundles, with how many live bundles
/// rely on each: a parent goes when its last bundle goes (bundles of one harness run concurrently, and
/// a parent made for one is not "missing" for the next).
static CREATED_PARENTS: Mutex<std::collections::BTreeMap<PathBuf, usize>> =
    Mutex::new(std::collections::BTreeMap::new());

/// The cgroup directories of `rel` (a cgroup path) and its ancestors in every hierarchy under `root`
/// (/sys/fs/cgroup), deepest first, as (directory, whether it exists now).
fn cgroup_chain(root: &Path, rel: &str) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    // cgroup v2 alone: `root` is the one hierarchy; v1 and hybrid: one hierarchy per directory (the
    // cpu -> cpu,cpuacct style links are skipped: the same directories twice).
    let bases: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        let Ok(rd) = std::fs::read_dir(root) else { return out };
        rd.flatten()
            .filter(|h| !h.file_type().is_ok_and(|t| t.is_symlink()) && h.path().join("cgroup.procs").exists())
            .map(|h| h.path())
            .collect()
    };
    for base in bases {
        let mut p = base.clone();
        for comp in rel.trim_start_matches('/').split('/').filter(|c| !c.is_empty()) {
            p = p.join(comp);
            out.push((p.clone(), p.exists()));
        }
    }
    out.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    out
}

/// The cgroup directories a launch with cgroupsPath `rel` causes: the leaf (`…/<id>`, in every
/// hierarchy) and the parents that do not exist yet or that an earlier live bundle of this process
/// caused (counted in [`CREATED_PARENTS`]); deepest first. Parents that existed before are never
/// listed, so never removed.
fn claim_cgroup_dirs(root: &Path, rel: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut created = CREATED_PARENTS.lock().unwrap_or_else(|e| e.into_inner());
    let leaf_name = rel.rsplit('/').next().unwrap_or("");
    let (mut leaves, mut parents) = (Vec::new(), Vec::new());
    for (p, exists) in cgroup_chain(root, rel) {
        if p.file_name().is_some_and(|n| n == leaf_name) {
            leaves.push(p);
        } else if !exists || created.contains_key(&p) {
            *created.entry(p.clone()).or_insert(0) += 1;
            parents.push(p);
        }
    }
    (leaves, parents)
}

/// Let go of `parents` ([`claim_cgroup_dirs`]): each one no other live bundle of this process relies on
/// is removed if empty (rmdir only: one that holds other cgroups stays, and `vmct gc` looks again).
fn release_cgroup_parents(parents: &[PathBuf]) {
    let mut created = CREATED_PARENTS.lock().unwrap_or_else(|e| e.into_inner());
    for p in parents {
        let last = match created.get_mut(p) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                created.remove(p);
                true
            }
            None => true,
        };
        if last {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// The parent cgroup directories recorded in a bundle `dir` ([`CGROUP_PARENTS_FILE`]) that lie under
/// `root` (/sys/fs/cgroup; other lines are ignored, the file is not trusted further).
pub fn recorded_parents(dir: &Path, root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(dir.join(CGROUP_PARENTS_FILE)).unwrap_or_default();
    text.lines()
        .map(PathBuf::from)
        .filter(|p| {
            p.is_absolute()
                && p.starts_with(root)
                && p.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
        })
        .collect()
}

fn cleanup(bin: &Path, bundle: &Path, id: &str, memcg: &Path, leaves: &[PathBuf], parents: &[PathBuf]) {
    // The runtime removes its container on a normal exit; if it was killed, the container may live on.
    for pid in cgroup::procs(memcg) {
        let _ = container::sys::kill(pid, libc::SIGKILL);
    }
    let state = bundle.join("state");
    // runc and crun keep `state/<id>/`, runsc `state/<id>_sandbox:<id>.state`.
    let runsc_state = state.join(format!("{id}_sandbox:{id}.state"));
    if state.join(id).exists() || runsc_state.exists() {
        let _ = Command::new(bin)
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    for d in leaves {
        let _ = cgroup::remove_dir(d);
    }
    release_cgroup_parents(parents);
    let _ = std::fs::remove_dir_all(bundle);
}

/// RSS/PSS of the container init (the runtime's child) and its cgroup's memory usage.
fn peer_stats(runtime_pid: u32) -> InstanceStats {
    let Some(init) = first_child(runtime_pid) else {
        return InstanceStats::default();
    };
    let m = memstat::proc_mem(init);
    InstanceStats {
        rss_bytes: m.map(|m| m.rss_bytes),
        pss_bytes: m.map(|m| m.pss_bytes),
        cgroup_usage_bytes: cgroup_usage_of(init),
        ..Default::default()
    }
}

/// The first child of process `pid`, whichever of its threads forked it (`/proc/PID/task/TID/children`
/// lists the children of one thread only, and runc, a Go program, forks from any of its threads).
pub fn first_child(pid: u32) -> Option<u32> {
    children(pid).first().copied()
}

/// Every child of process `pid`, from all its threads, threads in id order.
pub fn children(pid: u32) -> Vec<u32> {
    let mut tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tasks.sort_unstable();
    tasks
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/task/{t}/children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// Memory usage of the memory cgroup process `pid` is in (v1 `memory.usage_in_bytes`, or v2
/// `memory.current`), bytes.
pub fn cgroup_usage_of(pid: u32) -> Option<u64> {
    let pc = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    cgroup::own_path(&pc, Some("memory"))
        .map(|p| PathBuf::from("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')).join("memory.usage_in_bytes"))
        .or_else(|| {
            cgroup::own_path(&pc, None)
                .map(|p| PathBuf::from("/sys/fs/cgroup").join(p.trim_start_matches('/')).join("memory.current"))
        })
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| s.trim().parse().ok())
}

impl Backend for PeerBackend {
    fn name(&self) -> &str {
        self.name
    }

    /// crun, runc: model `container`; runsc: model `user-space-kernel`, its version field followed by the
    /// platform it runs and why the others are not used. Capabilities (CONTRACT.md): save_state false for
    /// crun/runc (CRIU fails on this kernel), true for runsc (`runsc checkpoint`/`restore`, which end the
    /// checkpointed sandbox),
    /// cgroup_limits true (runsc puts Sentry and Gofer in the bundle's cgroup), linux_probes true,
    /// emulated false.
    fn info(&self) -> results::BackendInfo {
        let s = self.setup();
        let model = match self.flavour {
            Flavour::Container => results::IsolationModel::Container,
            Flavour::UserSpaceKernel => results::IsolationModel::UserSpaceKernel,
        };
        results::BackendInfo {
            name: self.name.into(),
            kind: results::BackendKind::Peer,
            model,
            guest_model: None,
            available: s.is_ok(),
            reason: s.as_ref().err().cloned(),
            version: s.as_ref().ok().map(|s| s.version.clone()),
            isolation: s.ok().map(|_| match self.flavour {
                Flavour::Container => super::surface::isolation_profile(Profile::Default, peer_seccomp().as_ref()),
                // The bundle carries Podman's profile, but runsc installs it only with --oci-seccomp (off
                // by default): no instance filter is recorded.
                Flavour::UserSpaceKernel => {
                    let mut p = super::surface::isolation_profile(Profile::Default, None);
                    p.profile = super::surface::user_space_kernel_profile();
                    p
                }
            }),
            emulated: false,
        }
    }

    /// Limits as our container runtime validates them; for runsc also a platform asked for with
    /// `VMCT_RUNSC_PLATFORM` that the installed runsc does not offer (a usage error naming those it offers).
    fn capabilities(&self) -> results::Capabilities {
        // The runtime puts the workload in a cgroup with the bundle's limits (runsc: Sentry and Gofer
        // too); only runsc saves state (`runsc checkpoint`/`restore`); CRIU fails on this kernel.
        results::Capabilities {
            save_state: self.flavour == Flavour::UserSpaceKernel,
            cgroup_limits: true,
            limits: true,
            linux_probes: true,
            ..results::Capabilities::default()
        }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        let limits = Limits { memory_bytes: spec.mem_limit_bytes, cpus: spec.cpu_quota, pids: spec.pids_limit };
        limits.validate().map_err(|e| e.to_string())?;
        match (self.flavour, which(self.name)) {
            (Flavour::UserSpaceKernel, Some(bin)) => super::runsc::check_requested_platform(&bin),
            _ => Ok(()),
        }
    }

    fn attack_surface(&self) -> super::surface::BackendSurface {
        match (self.flavour, self.setup()) {
            (Flavour::UserSpaceKernel, Ok(s)) => {
                super::surface::user_space_kernel_surface(&s.bin, peer_seccomp().as_ref())
            }
            _ => super::surface::container_surface(Profile::Default, peer_seccomp().as_ref(), self.name),
        }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        self.launch_with(spec, None)
    }

    /// runsc: `runsc restore --image-path DIR` of a checkpoint [`Instance::save_state`] wrote, in a fresh
    /// bundle like any launch. crun/runc: unavailable (CRIU fails on this kernel, HOST-NOTES.md).
    fn restore(&self, saved: &Saved, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        match self.flavour {
            Flavour::UserSpaceKernel => self.launch_with(spec, Some(&saved.path)),
            Flavour::Container => Err(BackendError::Unavailable {
                backend: self.name.into(),
                reason: "cannot restore saved state (checkpoints need CRIU, which fails on this kernel)".into(),
            }),
        }
    }

    /// `<peer> --root STATE [GLOBAL FLAGS] run --bundle B ID` of the bundle [`Backend::launch`] would
    /// run, timed hyperfine-style: from just before the spawn (fork, entering the private mount namespace
    /// with the bundle's overlay, exec) to the runtime's exit, seen by polling every 100 µs, plus
    /// `<peer> delete --force ID` when the container's state outlived the run (crun and runc remove it
    /// themselves on exit). Writing the bundle before and removing it after are not timed. The workload's
    /// output goes to /dev/null; a non-zero exit is an error with the runtime's stderr.
    fn own_cli_run(&self, spec: &InstanceSpec, timeout: Duration) -> Result<Option<f64>, BackendError> {
        let s = self.setup().map_err(|reason| BackendError::Unavailable { backend: self.name.into(), reason })?;
        let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        let Prepared { mut cmd, guard, bundle, .. } = self.bundle_command(&s, spec, &s.image, &args, (0, 0), None)?;
        let fail = |reason: String| BackendError::Launch { backend: self.name.into(), reason };
        let err_path = bundle.join("stderr");
        let err_file = std::fs::File::create(&err_path).map_err(|e| fail(format!("{}: {e}", err_path.display())))?;
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(err_file);
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in spec.env.iter().filter(|(k, _)| k == super::OWNER_ENV) {
            cmd.env(k, v);
        }
        let t0 = std::time::Instant::now();
        let mut child = cmd.spawn().map_err(|e| fail(format!("cannot start {}: {e}", s.bin.display())))?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if t0.elapsed() < timeout => std::thread::sleep(Duration::from_micros(100)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("{} run did not exit within {timeout:?}", self.name)));
                }
                Err(e) => return Err(fail(format!("wait for {} run: {e}", self.name))),
            }
        };
        let run_s = t0.elapsed().as_secs_f64();
        if !status.success() {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err(fail(format!("{} run exited with {status}: {}", self.name, err.trim())));
        }
        let state = bundle.join("state");
        let runsc_state = state.join(format!("{0}_sandbox:{0}.state", spec.id));
        let t1 = std::time::Instant::now();
        if state.join(&spec.id).exists() || runsc_state.exists() {
            let st = Command::new(&s.bin)
                .arg("--root")
                .arg(&state)
                .args(&s.global_args)
                .args(["delete", "--force", &spec.id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| fail(format!("cannot run {} delete: {e}", self.name)))?;
            if !st.success() {
                return Err(fail(format!("{} delete exited with {st}", self.name)));
            }
        }
        let delete_s = t1.elapsed().as_secs_f64();
        drop(guard);
        Ok(Some(run_s + delete_s))
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
        self.launch_bundle(&s, spec, &image, &l.argv[1..], l.uid_gid, None)
    }
}

impl PeerBackend {
    /// Launch `spec` in a new bundle: `run`, or for runsc with `restore_from` a checkpoint directory,
    /// `restore --image-path DIR`.
    fn launch_with(&self, spec: &InstanceSpec, restore_from: Option<&Path>) -> Result<Box<dyn Instance>, BackendError> {
        let s = self.setup().map_err(|reason| BackendError::Unavailable { backend: self.name.into(), reason })?;
        let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        self.launch_bundle(&s, spec, &s.image, &args, (0, 0), restore_from)
    }
}

impl PeerBackend {
    /// Launch `image` with `args` after its entry point as `user` (uid, gid): `run`, or for runsc with
    /// `restore_from` a checkpoint directory, `restore --image-path DIR`.
    fn launch_bundle(
        &self,
        s: &Setup,
        spec: &InstanceSpec,
        image: &Image,
        args: &[String],
        user: (u32, u32),
        restore_from: Option<&Path>,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let Prepared { cmd, mut guard, bundle, cgroups_path } =
            self.bundle_command(s, spec, image, args, user, restore_from)?;
        // The OCI config carries the environment; the runtime itself gets the owner variable too.
        let mut runtime_spec = spec.clone();
        runtime_spec.env.retain(|(k, _)| k == super::OWNER_ENV);
        let launched_ns = crate::clock::mono_ns();
        let child = ChildInstance::spawn(self.name, &runtime_spec, cmd)?;
        let cleanup_fn = guard.0.take().unwrap_or_else(|| Box::new(|| ()));
        let (stats, on_ready) = match self.flavour {
            Flavour::Container => (peer_stats as fn(u32) -> InstanceStats, None),
            Flavour::UserSpaceKernel => {
                (super::runsc::sandbox_stats as fn(u32) -> InstanceStats, Some(super::runsc::note_ready as fn(u32)))
            }
        };
        let inner = child.with_stats(stats).with_cleanup(cleanup_fn);
        let memcg = PathBuf::from("/sys/fs/cgroup/memory").join(cgroups_path.trim_start_matches('/'));
        let checkpoint = (self.flavour == Flavour::UserSpaceKernel).then(|| Checkpoint {
            bin: s.bin.clone(),
            state: bundle.join("state"),
            global_args: s.global_args.clone(),
            restored: restore_from.is_some(),
            launched_ns,
        });
        Ok(Box::new(PeerInstance {
            inner,
            memcg,
            v2: !s.hybrid && !memcg_exists_v1(),
            vmstat_oom: vmstat_oom_kills(),
            on_ready,
            checkpoint,
        }))
    }
}

impl PeerBackend {
    /// The bundle of `spec` written and the runtime's command (`run`, or runsc's `restore`) ready to
    /// spawn; the guard removes bundle and cgroups when dropped.
    fn bundle_command(
        &self,
        s: &Setup,
        spec: &InstanceSpec,
        image: &Image,
        args: &[String],
        user: (u32, u32),
        restore_from: Option<&Path>,
    ) -> Result<Prepared, BackendError> {
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
        let (leaves, parents) = claim_cgroup_dirs(Path::new(CGROUP_ROOT), &cgroups_path);
        let memcg = PathBuf::from("/sys/fs/cgroup/memory").join(cgroups_path.trim_start_matches('/'));
        // From here on the guard removes the bundle (and cgroups) on any error.
        let (bin, b2, id2) = (s.bin.clone(), bundle.clone(), spec.id.clone());
        let record: String = parents.iter().map(|p| format!("{}\n", p.display())).collect();
        let guard = Guard(Some(Box::new(move || cleanup(&bin, &b2, &id2, &memcg, &leaves, &parents))));
        // For `vmct gc` after a killed run: the parents this launch causes (removed once empty).
        let rec_path = bundle.join(CGROUP_PARENTS_FILE);
        std::fs::write(&rec_path, record).map_err(io("write", &rec_path))?;
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
        cmd.arg("--root").arg(bundle.join("state")).args(&s.global_args);
        match restore_from {
            Some(image) => cmd.arg("restore").arg(format!("--image-path={}", image.display())),
            None => cmd.arg("run"),
        };
        cmd.arg("--bundle").arg(&bundle).arg(&spec.id);
        // SAFETY: the closure only makes async-signal-safe system calls on strings prepared before the
        // fork (container::sys::private_mount_ns allocates nothing).
        unsafe {
            cmd.pre_exec(move || container::sys::private_mount_ns(Some((&target, &data)), unified.as_deref()));
        }
        Ok(Prepared { cmd, guard, bundle, cgroups_path })
    }
}

/// Runs its closure (removal of a bundle and its cgroups) when dropped, unless taken.
struct Guard(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

/// A bundle on disk and the runtime command that runs it.
struct Prepared {
    cmd: Command,
    guard: Guard,
    bundle: PathBuf,
    cgroups_path: String,
}

/// `cfg` (an OCI config.json) with `process.user` set to `user` (uid, gid); unchanged for root. A
/// non-root uid keeps the bounding set only, no effective/permitted/inheritable/ambient capabilities:
/// what Docker writes for a non-root `--user` (moby `oci.SetCapabilities`) and what vmct's runtime does.
fn with_user(cfg: String, user: (u32, u32)) -> Result<String, String> {
    if user == (0, 0) {
        return Ok(cfg);
    }
    let mut v: serde_json::Value = serde_json::from_str(&cfg).map_err(|e| format!("config.json: {e}"))?;
    v["process"]["user"] = serde_json::json!({ "uid": user.0, "gid": user.1 });
    if user.0 != 0 {
        if let Some(caps) = v["process"]["capabilities"].as_object_mut() {
            caps.retain(|k, _| k == "bounding");
        }
    }
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
    /// Called with the runtime's pid once the workload is ready (runsc: read the Sentry's filter).
    on_ready: Option<fn(u32)>,
    /// runsc: how to checkpoint this sandbox, and whether it was itself restored from one.
    checkpoint: Option<Checkpoint>,
}

/// What a runsc instance needs for `runsc checkpoint`, and the readiness of a restored one.
struct Checkpoint {
    bin: PathBuf,
    /// runsc's `--root`.
    state: PathBuf,
    global_args: Vec<String>,
    /// Restored from a checkpoint: its workload announced `ready` before the checkpoint and does not
    /// again, so ready = runsc reports the restored sandbox `running`.
    restored: bool,
    /// Host CLOCK_MONOTONIC just before `runsc restore` was spawned, ns.
    launched_ns: u64,
}

impl Checkpoint {
    /// `runsc state ID`'s status (`running`, `stopped`, ...), if it answers.
    fn status(&self, id: &str) -> Option<String> {
        let out = Command::new(&self.bin).arg("--root").arg(&self.state).args(["state", id]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get("status")?.as_str().map(String::from)
    }
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
    fn request_stop(&mut self) {
        self.inner.request_stop();
    }
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        if let Some(c) = self.checkpoint.as_ref().filter(|c| c.restored) {
            let deadline = std::time::Instant::now() + timeout;
            while std::time::Instant::now() < deadline {
                crate::interrupt::check()?;
                if c.status(self.inner.id()).as_deref() == Some("running") {
                    let phases = vec![super::Phase {
                        name: "restore".into(),
                        duration_s: crate::clock::ns_to_s(crate::clock::mono_ns().saturating_sub(c.launched_ns)),
                    }];
                    return Ok(Ready { launched_ns: c.launched_ns, ready_ns: crate::clock::mono_ns(), phases });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            return Err(BackendError::Timeout {
                backend: "runsc".into(),
                id: self.inner.id().into(),
                what: "report running after restore",
                timeout,
                log: String::new(),
            });
        }
        let r = self.inner.wait_ready(timeout)?;
        if let (Some(f), Some(pid)) = (self.on_ready, self.inner.pid()) {
            f(pid);
        }
        Ok(r)
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
    /// runsc: `runsc checkpoint --image-path DIR`, which saves the sandbox's memory and kernel state and
    /// ends the sandbox (this runsc's `--leave-running` blocks until the restarted sandbox exits, measured
    /// here, so it is not used): the instance does not keep running. crun/runc: unavailable (CRIU).
    fn save_state(&mut self, dir: &Path) -> Result<Saved, BackendError> {
        let id = self.inner.id().to_string();
        let Some(c) = &self.checkpoint else {
            return Err(BackendError::Unavailable {
                backend: id,
                reason: "cannot save state (checkpoints need CRIU, which fails on this kernel)".into(),
            });
        };
        let save = |reason: String| BackendError::Save { backend: "runsc".into(), id: id.clone(), reason };
        let t0 = std::time::Instant::now();
        let out = Command::new(&c.bin)
            .arg("--root")
            .arg(&c.state)
            .args(&c.global_args)
            .arg("checkpoint")
            .arg(format!("--image-path={}", dir.display()))
            .arg(&id)
            .output()
            .map_err(|e| save(format!("cannot run runsc checkpoint: {e}")))?;
        let duration_s = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(save(format!(
                "runsc checkpoint exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let bytes = std::fs::read_dir(dir)
            .map_err(|e| save(format!("read {}: {e}", dir.display())))?
            .flatten()
            .filter_map(|f| f.metadata().ok())
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.blocks() * 512
            })
            .sum();
        Ok(Saved { path: dir.to_path_buf(), bytes, duration_s, checks_restore: false })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_root_user_keeps_only_the_bounding_set_like_docker() {
        let caps = r#"{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"],"inheritable":[]}"#;
        let cfg = format!(r#"{{"process":{{"user":{{"uid":0,"gid":0}},"capabilities":{caps}}}}}"#);
        let v = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
        assert_eq!(with_user(cfg.clone(), (0, 0)).unwrap(), cfg, "root: unchanged");
        let user = v(with_user(cfg.clone(), (1000, 1001)).unwrap());
        assert_eq!(user["process"]["user"], serde_json::json!({ "uid": 1000, "gid": 1001 }));
        assert_eq!(user["process"]["capabilities"], serde_json::json!({ "bounding": ["CAP_KILL"] }));
        // uid 0 with another group keeps root's capabilities.
        let root_group = v(with_user(cfg, (0, 5)).unwrap());
        assert_eq!(root_group["process"]["capabilities"]["effective"], serde_json::json!(["CAP_KILL"]));
    }

    /// A child forked by another thread than the main one is found (runc forks from any thread; its
    /// instances had no memory figures before).
    #[test]
    fn children_forked_by_any_thread_are_found() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let mut c = std::process::Command::new("sleep").arg("30").spawn().unwrap();
            tx.send(c.id()).unwrap();
            let _ = done_rx.recv();
            let _ = c.kill();
            let _ = c.wait();
        });
        let child = rx.recv().unwrap();
        assert!(children(std::process::id()).contains(&child));
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
