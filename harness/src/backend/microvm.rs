//! The `microvm` backend: the workload as the **bare** guest (no guest OS, CPL3) in a KVM microVM,
//! one VMM process per VM so density measures the real per-VM cost.
//!
//! The VMM process is the static `vmct-vmm` binary embedded in `vmct` (crate `microvm`, built by
//! `harness/build.rs`, extracted once to the cache by [`artifacts::vmm_path`]). It is small and
//! statically linked, so exec costs less than re-executing the (large, dynamically linked) `vmct`
//! binary; `VMCT_VMM_LAUNCH=reexec` selects `vmct __vmm ...` instead (same code, for comparison).
//! The VMM prints its phases (`vmm_start`, `kvm_open`, `vm_create`, `memory`, `load`, `vcpu_setup`,
//! `first_exit`, `ready`) as `@vmct phase` lines, which [`ChildInstance`] turns into launch phases.
//! A VM that ends abnormally exits with a code that [`microvm::vm::exit_code_kind`] maps to the typed
//! error kind (`guest_exception`, `unknown_port`, `mmio`, `watchdog`, ...), reported in
//! [`ExitInfo::error`]; the full message is in the instance log.
//!
//! Confinement: every VMM runs its guest under its seccomp allowlist ([`microvm::confine`]) and, unless
//! `VMCT_VMM_JAIL=off`, inside a jail ([`super::vmm_jail`]): own pid, mount, network and IPC
//! namespaces, an empty per-VM root, its own cgroup, no capabilities, a non-root uid. A VMM killed by
//! its filter ends with SIGSYS, reported as such in [`ExitInfo::error`]. Snapshots are written by the
//! jailed VMM into its jail root and moved to the requested directory by the harness.
use super::child::ChildInstance;
use super::vmm_jail::{JailFiles, JailMode, JailPool, PreparedJail, JAIL_ENV, JAIL_GUEST, JAIL_VMM};
use super::{Backend, BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready, Saved};
use crate::artifacts;
use crate::clock;
use crate::memstat;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use workloads::scenario::Scenario;

/// Backend name.
pub const NAME: &str = "microvm";

/// Name of the guest-memory mapping in the VMM's /proc/PID/smaps (a memfd).
pub const GUEST_MAPPING: &str = "/memfd:vmct-guest";

/// How long a VMM may take to save a snapshot before [`Instance::save_state`] gives up.
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// True for the smaps header line of guest memory: the memfd of a booted VM, or the snapshot memory
/// file a restored VM maps copy-on-write.
pub fn is_guest_mapping(header: &str) -> bool {
    header.contains(GUEST_MAPPING) || header.contains(&format!("/{}", microvm::snapshot::MEMORY_FILE))
}

/// Guest memory beyond the scenario's working set when the spec sets no memory limit: the image,
/// its stack and the VMM's structures live in the first 4 MiB.
pub const DEFAULT_HEADROOM_BYTES: u64 = 16 << 20;

/// Entry of `vmct __vmm ...`: runs one VM in this process.
pub fn vmm_main(args: &[String]) -> ExitCode {
    ExitCode::from(microvm::vmm::main(args))
}

/// The microVM backends vmct offers (the bare guest model).
pub fn backends() -> Vec<Box<dyn Backend>> {
    vec![Box::new(MicrovmBackend::default())]
}

/// KVM flavour and the guest models that can run here, for `vmct env`: `Ok` with one line per fact
/// (`kvm kvm_pvm`, `microvm/bare available`, `microvm/linux unavailable: ...`), `Err(reason)` when
/// /dev/kvm is unusable.
pub fn kvm_status() -> Result<Vec<String>, String> {
    let s = microvm::status::kvm_status();
    match s.flavour {
        Some(_) => Ok(s.lines()),
        None => Err(s.bare.err().unwrap_or_default()),
    }
}

/// Guest memory for `spec`: its memory limit, or the scenario's working set plus headroom.
pub fn guest_mem_bytes(mem_limit: Option<u64>, scenario: &Scenario) -> u64 {
    let bytes = mem_limit.unwrap_or_else(|| scenario.working_set_bytes() + DEFAULT_HEADROOM_BYTES);
    bytes.max(microvm::layout::MIN_MEM_BYTES)
}

/// Guest memory resident vs VMM overhead of the VMM process `pid`, from /proc/PID/smaps.
pub fn vmm_stats(pid: u32) -> InstanceStats {
    split_guest_memory(pid, is_guest_mapping)
}

/// RSS/PSS of a VMM process with its resident guest memory (mappings matching `is_guest`, from
/// /proc/PID/smaps) split from the VMM's own overhead. Shared by both guest models.
pub fn split_guest_memory(pid: u32, is_guest: impl FnMut(&str) -> bool) -> InstanceStats {
    let Some(m) = memstat::proc_mem(pid) else { return InstanceStats::default() };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let guest = memstat::smaps_rss_where(&smaps, is_guest);
    InstanceStats {
        rss_bytes: Some(m.rss_bytes),
        pss_bytes: Some(m.pss_bytes),
        guest_mem_bytes: Some(guest),
        vmm_overhead_bytes: Some(m.rss_bytes.saturating_sub(guest)),
        cgroup_usage_bytes: None,
    }
}

/// The `microvm` backend (guest model `bare`).
#[derive(Default)]
pub struct MicrovmBackend {
    available: OnceLock<Result<(), String>>,
    jails: OnceLock<Result<Arc<JailPool>, String>>,
}

impl MicrovmBackend {
    /// A backend whose VMM jails are in `mode`, whatever `VMCT_VMM_JAIL` says (tests of the warm, pooled
    /// path; the environment variable picks the mode otherwise).
    pub fn with_jail_mode(mode: JailMode) -> MicrovmBackend {
        let b = MicrovmBackend::default();
        let _ = b.jails.set(Ok(Arc::new(JailPool::new(mode))));
        b
    }

    fn availability(&self) -> &Result<(), String> {
        self.available.get_or_init(|| microvm::status::kvm_status().bare)
    }

    /// The VMM command without arguments (`vmct-vmm`, or `vmct __vmm` with `VMCT_VMM_LAUNCH=reexec`).
    fn vmm_command(&self) -> Result<Command, BackendError> {
        let unavailable = |e: artifacts::ArtifactError| BackendError::Unavailable {
            backend: NAME.to_string(),
            reason: e.to_string(),
        };
        Ok(if std::env::var("VMCT_VMM_LAUNCH").is_ok_and(|v| v == "reexec") {
            let exe = std::env::current_exe().map_err(|e| BackendError::Launch {
                backend: NAME.to_string(),
                reason: format!("cannot find the vmct binary to re-exec: {e}"),
            })?;
            let mut c = Command::new(exe);
            c.arg("__vmm");
            c
        } else {
            Command::new(artifacts::vmm_path().map_err(unavailable)?)
        })
    }

    /// The jails of this backend's VMMs, in the mode `VMCT_VMM_JAIL` selects.
    fn jails(&self) -> Result<Arc<JailPool>, BackendError> {
        let pool = self.jails.get_or_init(|| {
            let mode = JailMode::parse(std::env::var(JAIL_ENV).ok().as_deref()).map_err(|e| e.to_string())?;
            Ok(Arc::new(JailPool::new(mode)))
        });
        pool.clone().map_err(|reason| BackendError::Launch { backend: NAME.to_string(), reason })
    }

    /// What a jail holds: the static VMM binary and the guest image.
    fn jail_files(&self) -> Result<JailFiles, BackendError> {
        let unavailable = |e: artifacts::ArtifactError| BackendError::Unavailable {
            backend: NAME.to_string(),
            reason: e.to_string(),
        };
        Ok(JailFiles {
            vmm: artifacts::vmm_path().map_err(unavailable)?,
            guest: artifacts::guest_path().map_err(unavailable)?,
        })
    }

    /// Start a VMM with `args` (after `--guest`/`--restore`, which `what` gives as host and jail
    /// paths), in a jail from the pool unless jails are off; the jail's cost counts in launch-to-ready.
    fn spawn_vmm(
        &self,
        spec: &InstanceSpec,
        what: VmmInput<'_>,
        args: &[String],
    ) -> Result<MicrovmInstance, BackendError> {
        let launched_ns = clock::mono_ns();
        let launch_err = |reason: String| BackendError::Launch { backend: NAME.to_string(), reason };
        let pool = self.jails()?;
        let files = self.jail_files()?;
        let jail = pool
            .take(&files)
            .map_err(|e| launch_err(format!("cannot confine the VMM: {e} (set {JAIL_ENV}=off to run it unjailed)")))?;
        let inner = match jail {
            None => {
                let mut cmd = self.vmm_command()?;
                match what {
                    VmmInput::Guest => cmd.arg("--guest").arg(&files.guest),
                    VmmInput::Restore(dir) => cmd.arg("--restore").arg(dir),
                };
                cmd.args(args);
                let child = ChildInstance::spawn(NAME, spec, cmd)?.with_confinement_measured();
                return Ok(MicrovmInstance {
                    inner: child.with_stats(vmm_stats).with_launched_ns(launched_ns),
                    jail: None,
                    pool,
                    files,
                    snapshots: 0,
                });
            }
            Some(mut j) => {
                if std::env::var("VMCT_VMM_LAUNCH").is_ok_and(|v| v == "reexec") {
                    return Err(launch_err(format!(
                        "VMCT_VMM_LAUNCH=reexec cannot run in the VMM jail (it holds only the static vmct-vmm); set {JAIL_ENV}=off"
                    )));
                }
                let mut cmd = Command::new(JAIL_VMM);
                match what {
                    VmmInput::Guest => {
                        cmd.args(["--guest", JAIL_GUEST]);
                    }
                    VmmInput::Restore(dir) => {
                        // The snapshot's files, linked into the jail (a missing one stays missing:
                        // the VMM reports it as a typed snapshot error).
                        let inside = j.dir.join("restore");
                        let link = std::fs::create_dir(&inside).map_err(|e| e.to_string()).and_then(|_| {
                            for f in [microvm::snapshot::MEMORY_FILE, microvm::snapshot::STATE_FILE] {
                                if !dir.join(f).exists() {
                                    continue;
                                }
                                super::vmm_jail::link_or_copy(&dir.join(f), &inside.join(f))
                                    .map_err(|e| e.to_string())?;
                            }
                            Ok(())
                        });
                        link.map_err(|e| launch_err(format!("cannot put the snapshot into the VMM jail: {e}")))?;
                        cmd.args(["--restore", "/restore"]);
                    }
                }
                cmd.args(args);
                let child = ChildInstance::spawn_with(NAME, spec, cmd, |c| j.spawn(c))?.with_confinement_measured();
                (child, j)
            }
        };
        let (child, jail) = inner;
        Ok(MicrovmInstance {
            inner: child.with_stats(vmm_stats).with_launched_ns(launched_ns),
            jail: Some(jail),
            pool,
            files,
            snapshots: 0,
        })
    }

    /// [`Backend::launch`] with the concrete instance type (tests look at its jail).
    pub fn launch_microvm(&self, spec: &InstanceSpec) -> Result<MicrovmInstance, BackendError> {
        if let Err(reason) = self.availability() {
            return Err(BackendError::Unavailable { backend: NAME.to_string(), reason: reason.clone() });
        }
        let mut args = Vec::new();
        let mem_mib = guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario).div_ceil(1 << 20);
        args.extend(["--mem-mib".to_string(), mem_mib.to_string(), "--vcpus".into(), spec.vcpus.max(1).to_string()]);
        if spec.scenario == Scenario::Probe {
            args.push("--probe".into());
        }
        args.push("--".into());
        args.extend(spec.scenario.to_string().split_whitespace().map(String::from));
        self.spawn_vmm(spec, VmmInput::Guest, &args)
    }
}

/// What a VMM starts from.
#[derive(Clone, Copy)]
enum VmmInput<'a> {
    /// Boot the guest image.
    Guest,
    /// Restore the snapshot in this host directory.
    Restore(&'a Path),
}

impl Backend for MicrovmBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn info(&self) -> results::BackendInfo {
        let avail = self.availability();
        results::BackendInfo {
            isolation: None,
            name: NAME.into(),
            kind: results::BackendKind::Ours,
            model: results::IsolationModel::Microvm,
            guest_model: Some(results::GuestModel::Bare),
            available: avail.is_ok(),
            reason: avail.as_ref().err().cloned(),
            version: None,
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // The guest's memory size is its limit; snapshot and restore; the bare guest has no OS to probe.
        results::Capabilities { save_state: true, limits: true, ..results::Capabilities::default() }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        use microvm::layout::{HUGE_PAGE_SIZE, MAX_MEM_BYTES, MIN_MEM_BYTES};
        super::check_guest_memory(spec.mem_limit_bytes, HUGE_PAGE_SIZE, MIN_MEM_BYTES, MAX_MEM_BYTES)?;
        if !(1..=microvm::vm::MAX_VCPUS).contains(&spec.vcpus) {
            return Err(format!("{} vCPUs: expected 1 to {}", spec.vcpus, microvm::vm::MAX_VCPUS));
        }
        super::not_applied(
            NAME,
            spec,
            false,
            "a microVM's CPU share is its vCPUs (--vcpus) and it has no host processes to count",
        )
    }

    fn attack_surface(&self) -> super::surface::BackendSurface {
        use super::surface::{BackendSurface, VmmSurfaceInfo};
        // One definition: the exit kinds, port map and allowlist the VMM itself uses.
        let s = microvm::confine::bare_surface();
        let mut surface = BackendSurface {
            profile: "bare guest: no OS, the workload at guest CPL3; VMM jailed (own mount/pid/net/ipc namespaces, cgroup, no capabilities, non-root uid)".into(),
            seccomp_profile: None,
            vmm: Some(VmmSurfaceInfo {
                exit_kinds: s.exit_kinds.iter().map(|k| k.to_string()).collect(),
                device_models: None,
                io_ports: s.io_ports.clone(),
                mmio_ranges: s.mmio_ranges.clone(),
                syscalls_allowed: s.syscalls_allowed,
                source: None,
            }),
            supervisor_syscalls_allowed: Some(s.syscalls_allowed),
            supervisor_note: format!(
                "the VMM process (`vmct-vmm`): seccomp allowlist of {} system calls on its vCPU thread (KVM ioctls by request number), anything else kills it",
                s.syscalls_allowed
            ),
            user_kernel: None,
        };
        super::confinement::apply(NAME, "the VMM process (`vmct-vmm`)", &mut surface);
        surface
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        if let Err(reason) = self.availability() {
            return Err(BackendError::Unavailable { backend: NAME.to_string(), reason: reason.clone() });
        }
        // Guest memory is used as given or refused, never rounded up.
        let (granule, min, max) =
            (microvm::layout::HUGE_PAGE_SIZE, microvm::layout::MIN_MEM_BYTES, microvm::layout::MAX_MEM_BYTES);
        super::check_guest_memory(spec.mem_limit_bytes, granule, min, max)
            .map_err(|reason| BackendError::Launch { backend: NAME.into(), reason })?;
        Ok(Box::new(self.launch_microvm(spec)?))
    }

    /// A new VMM restoring the snapshot in `saved.path` (`vmct-vmm --restore DIR`): guest memory is the
    /// snapshot's memory file mapped copy-on-write; the guest reports `ready` again, then
    /// `restore.memory_ok`. Only `spec.id`, `spec.log_dir` and `spec.env` are used: the VM's shape is
    /// the snapshot's.
    fn restore(&self, saved: &Saved, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        if let Err(reason) = self.availability() {
            return Err(BackendError::Unavailable { backend: NAME.to_string(), reason: reason.clone() });
        }
        Ok(Box::new(self.spawn_vmm(spec, VmmInput::Restore(&saved.path), &[])?))
    }
}

/// A VMM process; like [`ChildInstance`], plus the typed VM error in [`ExitInfo::error`]. Field
/// order is drop order: the process is reaped before its jail is removed.
pub struct MicrovmInstance {
    inner: ChildInstance,
    jail: Option<PreparedJail>,
    pool: Arc<JailPool>,
    files: JailFiles,
    snapshots: u32,
}

impl MicrovmInstance {
    /// The jail root (host view) and cgroup directories of this VMM, while it has a jail.
    pub fn jail_paths(&self) -> Option<(PathBuf, Vec<PathBuf>)> {
        let j = self.jail.as_ref()?;
        Some((j.dir.clone(), j.cgroup().dirs.iter().map(|(_, d)| d.clone()).collect()))
    }
}

/// What [`ExitInfo::error`] says about a VMM killed by signal `sig`.
pub fn describe_signal(sig: i32) -> Option<String> {
    (sig == libc::SIGSYS).then(|| {
        "vmm killed by its seccomp filter (SIGSYS): it made a syscall outside its allowlist (see the instance log)"
            .to_string()
    })
}

/// Move the snapshot files of `from` into `to` (rename; a copy across filesystems), then remove `from`.
fn move_snapshot(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for name in [microvm::snapshot::MEMORY_FILE, microvm::snapshot::STATE_FILE] {
        let (a, b) = (from.join(name), to.join(name));
        if let Err(e) = std::fs::rename(&a, &b) {
            if e.raw_os_error() != Some(libc::EXDEV) {
                return Err(e);
            }
            std::fs::copy(&a, &b)?;
        }
    }
    std::fs::remove_dir_all(from)
}

/// The error description for a VMM exit code, if it is not a plain guest status.
pub fn describe_exit(code: i32) -> Option<String> {
    if code == i32::from(microvm::vmm::USAGE_EXIT) {
        return Some("vmm: bad command line or guest image (see the instance log)".into());
    }
    microvm::vm::exit_code_kind(code).map(|kind| format!("vm ended abnormally: {kind} (see the instance log)"))
}

impl Instance for MicrovmInstance {
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
        self.inner.wait_ready(timeout)
    }
    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError> {
        self.inner.next_event(timeout)
    }
    fn stats(&mut self) -> InstanceStats {
        self.inner.stats()
    }
    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        let mut info = self.inner.stop(timeout)?;
        if let Some(code) = info.status {
            info.error = describe_exit(code);
        }
        if let Some(sig) = info.signal {
            info.error = describe_signal(sig);
        }
        // The VMM is reaped: its jail goes back to the pool (or is removed), and a spare is prepared
        // off the launch path if none is left.
        // A VMM killed by a signal (e.g. its seccomp filter) does not hand its jail on.
        if let Some(j) = self.jail.take() {
            if info.signal.is_none() {
                self.pool.recycle(j);
            }
        }
        self.pool.refill(&self.files);
        Ok(info)
    }

    /// Snapshot the VM into `dir` (the VMM pauses it while the guest waits for stop, as in `idle`,
    /// writes `dir`, and lets it go on). `duration_s` is the pause the VMM measured; `bytes` what it
    /// wrote (memory pages without holes, plus the state file).
    fn save_state(&mut self, dir: &std::path::Path) -> Result<Saved, BackendError> {
        let id = self.id().to_string();
        let failed = |reason: String| BackendError::Save { backend: NAME.into(), id: id.clone(), reason };
        // A jailed VMM sees only its jail root: it writes into a directory there that its uid owns,
        // which is then moved to `dir`.
        let jailed = match &self.jail {
            Some(j) => {
                self.snapshots += 1;
                let name = format!("snapshot-{}", self.snapshots);
                let host = j.dir.join(&name);
                std::fs::create_dir(&host)
                    .and_then(|_| std::os::unix::fs::chown(&host, Some(j.uid), Some(j.uid)))
                    .map_err(|e| failed(format!("cannot make {} for the jailed VMM: {e}", host.display())))?;
                Some((format!("/{name}"), host))
            }
            None => None,
        };
        let target = jailed.as_ref().map_or_else(|| dir.display().to_string(), |(inside, _)| inside.clone());
        self.inner.send_line(&format!("snapshot {target}"))?;
        let mut save_s = None;
        loop {
            match self.inner.next_event(SAVE_TIMEOUT)? {
                Some((_, Event::Result { name, value, .. })) if name == "snapshot.save_s" => save_s = Some(value),
                Some((_, Event::Result { name, value, .. })) if name == "snapshot.bytes" => {
                    if let Some((_, host)) = &jailed {
                        move_snapshot(host, dir)
                            .map_err(|e| failed(format!("cannot move {} to {}: {e}", host.display(), dir.display())))?;
                    }
                    // A byte count the VMM printed as a whole number (exact in f64 below 2^53).
                    #[allow(clippy::cast_possible_truncation)]
                    let bytes = value as u64;
                    return Ok(Saved {
                        path: dir.to_path_buf(),
                        bytes,
                        duration_s: save_s.unwrap_or(0.0),
                        checks_restore: true,
                    });
                }
                Some((_, Event::Failed { what, reason })) if what == "snapshot" => return Err(failed(reason)),
                Some((_, Event::Done { status })) => {
                    return Err(failed(format!("the guest finished (status {status}) instead of pausing")))
                }
                Some(_) => {}
                None => return Err(failed("the VMM exited while saving".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_defaults_to_working_set_plus_headroom() {
        assert_eq!(guest_mem_bytes(None, &Scenario::Ready), DEFAULT_HEADROOM_BYTES);
        assert_eq!(guest_mem_bytes(None, &Scenario::Mem { mib: 64 }), (64 << 20) + DEFAULT_HEADROOM_BYTES);
        assert_eq!(guest_mem_bytes(Some(1 << 20), &Scenario::Ready), microvm::layout::MIN_MEM_BYTES);
        let mut spec = InstanceSpec::new("vmct-t", Scenario::Ready);
        let b = MicrovmBackend::default();
        for bad in [1 << 20, (5 << 20) + 1, 5 << 20, 65 << 30] {
            spec.mem_limit_bytes = Some(bad);
            assert!(b.check_spec(&spec).unwrap_err().contains("from 4.00 MiB to 64.0 GiB"), "{bad}");
        }
        spec.mem_limit_bytes = Some(64 << 20);
        assert_eq!(b.check_spec(&spec), Ok(()));
        spec.vcpus = 0;
        assert!(b.check_spec(&spec).unwrap_err().contains("0 vCPUs"));
        spec.vcpus = 1;
        spec.pids_limit = Some(5);
        assert!(b.check_spec(&spec).unwrap_err().contains("--pids"));
        assert_eq!(guest_mem_bytes(Some(256 << 20), &Scenario::Ready), 256 << 20);
    }

    #[test]
    fn exit_codes_become_typed_error_kinds() {
        assert_eq!(describe_exit(0), None);
        assert_eq!(describe_exit(1), None);
        let code = microvm::vm::VmError::Hlt { rip: 0 }.exit_code() as i32;
        assert_eq!(describe_exit(code).unwrap(), "vm ended abnormally: hlt (see the instance log)");
        assert!(describe_exit(2).unwrap().contains("bad command line"));
    }

    #[test]
    fn guest_memory_is_the_memfd_or_the_snapshot_file() {
        assert!(is_guest_mapping("7f00-7f10 rw-s 00000000 00:01 5  /memfd:vmct-guest (deleted)"));
        assert!(is_guest_mapping("7f00-7f10 rw-p 00000000 fe:00 9  /tmp/vmct-x/snap/vmct-guest.mem"));
        assert!(!is_guest_mapping("7f00-7f10 r-xp 00000000 fe:00 9  /root/.cache/vmct/vmct-vmm"));
    }

    #[test]
    fn info_says_bare_and_why_not() {
        let i = MicrovmBackend::default().info();
        assert_eq!(
            (i.name.as_str(), i.model.as_str(), i.guest_model.map(|g| g.as_str())),
            ("microvm", "microvm", Some("bare"))
        );
        assert_eq!(i.available, i.reason.is_none());
    }
}
