//! The `microvm-linux` backend: the workload as /init of a Linux guest (one kernel per VM, the
//! Firecracker model), one VMM process per VM (`vmct __vmm-linux`, see [`vmm_linux_main`]).
//!
//! Needs VT-x/AMD-V: on kvm_pvm hosts [`Backend::info`] says so and experiments skip it; there
//! [`probe`] boots the kernel only far enough to measure its first console byte.
//! The guest image is the container's base image (same layers) packed as an initramfs with the
//! workload as /init, built once per workload and cached next to the kernel.
//!
//! Phases (from the VMM's `@vmct phase` lines): `vmm_setup` (VM built, vCPU configured),
//! `kernel_entry` (first VM exit), `first_console_byte`, `init_start` (the workload's boot-timer
//! port write), then `to_ready`.
use super::child::ChildInstance;
use super::{Backend, BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready};
use crate::{artifacts, kernel};
use microvm::linux::{self as linux, initramfs, ProbeOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::Duration;
use workloads::scenario::Scenario;

/// Backend name.
pub const NAME: &str = "microvm-linux";

/// Hidden subcommand of `vmct` that runs one linux-guest VM.
pub const VMM_SUBCOMMAND: &str = "__vmm-linux";

/// The `vmct` binary to re-exec as the VMM, when the current executable is not `vmct` (tests).
pub const VMCT_BIN_ENV: &str = "VMCT_BIN";

/// Guest memory beyond the scenario's working set: the kernel, its page cache and the initramfs.
pub const DEFAULT_HEADROOM_BYTES: u64 = 96 << 20;

/// Why the backend cannot run here without a kernel.
pub const NO_KERNEL_REASON: &str = "no guest kernel: run `vmct kernel build` first (or set VMCT_KERNEL)";

/// Entry of `vmct __vmm-linux ...`: runs one VM in this process.
pub fn vmm_linux_main(args: &[String]) -> ExitCode {
    ExitCode::from(linux::vmm::main(args))
}

/// The backend.
pub fn backend() -> Box<dyn Backend> {
    Box::new(MicrovmLinuxBackend::default())
}

/// The kernel to boot, or why the linux model cannot run on this host.
pub fn availability() -> Result<PathBuf, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm is not usable ({e})"))?;
    if let Some(why) = linux::unavailable_reason(linux::flavour()) {
        return Err(match linux::pvm::check() {
            Ok(abi) => format!("{why} ({})", abi.describe()),
            Err(e) => format!("{why} ({e})"),
        });
    }
    kernel::cached().ok_or_else(|| NO_KERNEL_REASON.to_string())
}

/// On any KVM host: boot the guest kernel (`kernel`, else the cached one) far enough to measure the
/// time to its first console byte and how far it gets (for `vmct run --backend microvm-linux` on
/// kvm_pvm, where [`linux::FirstByte::unavailable`] then gives the reason it stops).
pub fn probe(kernel: Option<&Path>, timeout: Duration) -> Result<linux::FirstByte, BackendError> {
    let unavailable = |reason: String| BackendError::Unavailable { backend: NAME.into(), reason };
    let path = match kernel {
        Some(k) => k.to_path_buf(),
        None => kernel::cached().ok_or_else(|| unavailable(NO_KERNEL_REASON.into()))?,
    };
    let opts = ProbeOptions { timeout, ..Default::default() };
    linux::probe_first_byte(&path, &opts)
        .map_err(|e| BackendError::Launch { backend: NAME.into(), reason: e.to_string() })
}

/// Guest memory for a spec: its memory limit, or the working set plus headroom, in whole MiB,
/// within the VMM's limits.
pub fn guest_mem_bytes(mem_limit: Option<u64>, scenario: &Scenario) -> u64 {
    let bytes = mem_limit.unwrap_or_else(|| scenario.working_set_bytes() + DEFAULT_HEADROOM_BYTES);
    (bytes.div_ceil(1 << 20) << 20).clamp(linux::layout::MIN_MEM_BYTES, linux::layout::MAX_MEM_BYTES)
}

/// Whether `spec` can run as given on the linux guest model (`backend` names it in the error): guest
/// memory in whole MiB within the model's range, one vCPU, no container limits.
pub fn check_linux_spec(backend: &str, spec: &InstanceSpec) -> Result<(), String> {
    use linux::layout::{MAX_MEM_BYTES, MIN_MEM_BYTES};
    super::check_guest_memory(spec.mem_limit_bytes, 1 << 20, MIN_MEM_BYTES, MAX_MEM_BYTES)?;
    if spec.vcpus != 1 {
        return Err(format!("{} vCPUs: the linux guest model runs one vCPU", spec.vcpus));
    }
    super::not_applied(backend, spec, false, "a microVM's CPU share is its vCPUs and it has no host processes to count")
}

/// The initramfs for `workload`: the container's base-image layers plus /init, cached by content.
pub fn initramfs_for(workload: &Path) -> Result<PathBuf, String> {
    let image = super::container::base_image(workload)?;
    let bytes = std::fs::read(workload).map_err(|e| format!("cannot read workload {}: {e}", workload.display()))?;
    let key = format!("{:?}{:016x}", image.layers, artifacts::content_hash(&bytes));
    let path = kernel::kernels_dir().join(format!("initramfs-{:016x}.cpio", artifacts::content_hash(key.as_bytes())));
    if path.is_file() {
        return Ok(path);
    }
    let cpio = initramfs::build(&image.layers, workload).map_err(|e| e.to_string())?;
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, cpio).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    Ok(path)
}

/// Guest memory resident vs VMM overhead of a VMM process, from /proc/PID/smaps.
pub fn vmm_stats(pid: u32) -> InstanceStats {
    let name = format!("/memfd:{}", linux::vm::GUEST_MEMFD_NAME);
    super::microvm::split_guest_memory(pid, |h| h.contains(&name))
}

/// The error description for a VMM exit status, if it is not a plain workload status.
pub fn describe_exit(code: i32) -> Option<String> {
    if code == i32::from(linux::vmm::USAGE_EXIT) {
        return Some("vmm: bad command line, kernel or initramfs (see the instance log)".into());
    }
    linux::vmm::exit_code_kind(code).map(|kind| format!("vm ended abnormally: {kind} (see the instance log)"))
}

/// The `microvm-linux` backend.
#[derive(Default)]
pub struct MicrovmLinuxBackend {
    available: OnceLock<Result<PathBuf, String>>,
    initramfs: OnceLock<Result<PathBuf, String>>,
}

impl MicrovmLinuxBackend {
    fn availability(&self) -> &Result<PathBuf, String> {
        self.available.get_or_init(availability)
    }

    fn command(&self, spec: &InstanceSpec, kernel: &Path) -> Result<Command, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable { backend: NAME.into(), reason };
        let initramfs = self
            .initramfs
            .get_or_init(|| artifacts::workload_path().map_err(|e| e.to_string()).and_then(|w| initramfs_for(&w)))
            .clone()
            .map_err(unavailable)?;
        let exe = match std::env::var_os(VMCT_BIN_ENV).filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| BackendError::Launch {
                backend: NAME.into(),
                reason: format!("cannot find the vmct binary to re-exec: {e}"),
            })?,
        };
        let mut cmd = Command::new(exe);
        cmd.arg(VMM_SUBCOMMAND).arg("--kernel").arg(kernel).arg("--initramfs").arg(initramfs);
        let mib = guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario) >> 20;
        cmd.args(["--mem-mib", &mib.to_string()]);
        cmd.arg("--").args(spec.scenario.to_string().split_whitespace());
        Ok(cmd)
    }
}

impl Backend for MicrovmLinuxBackend {
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
            guest_model: Some(results::GuestModel::Linux),
            available: avail.is_ok(),
            reason: avail.as_ref().err().cloned(),
            version: None,
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // The guest's memory size is its limit; the Linux guest runs the probe catalogue on its own kernel.
        results::Capabilities { limits: true, linux_probes: true, own_kernel: true, ..results::Capabilities::default() }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        check_linux_spec(NAME, spec)
    }

    fn attack_surface(&self) -> super::surface::BackendSurface {
        use super::surface::{unfiltered_note, unfiltered_syscalls, BackendSurface};
        // The linux guest model's VMM is not seccomp-filtered (microvm::confine says why): unfiltered.
        let mut s = BackendSurface {
            profile: "linux guest: its own kernel and initramfs".into(),
            seccomp_profile: None,
            vmm: None,
            supervisor_syscalls_allowed: Some(unfiltered_syscalls()),
            supervisor_note: unfiltered_note("the VMM process (`vmct __vmm-linux`), unconfined"),
            user_kernel: None,
        };
        super::confinement::apply(NAME, "the VMM process (`vmct __vmm-linux`)", &mut s);
        s
    }

    /// Not yet: an image's root disk needs a virtio-blk device, which vmct's VMM does not have (the
    /// `qemu-tcg` backend and the qemu/firecracker peers run images).
    fn launch_image(
        &self,
        l: &crate::images::run::ImageLaunch,
        _spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        Err(BackendError::Unavailable {
            backend: self.name().into(),
            reason: format!(
                "cannot run image '{}': its root disk needs a virtio-blk device, which vmct's VMM does not have yet",
                l.image
            ),
        })
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        use linux::layout::{MAX_MEM_BYTES, MIN_MEM_BYTES};
        super::check_guest_memory(spec.mem_limit_bytes, 1 << 20, MIN_MEM_BYTES, MAX_MEM_BYTES)
            .map_err(|reason| BackendError::Launch { backend: NAME.into(), reason })?;
        let kernel =
            self.availability().clone().map_err(|reason| BackendError::Unavailable { backend: NAME.into(), reason })?;
        let cmd = self.command(spec, &kernel)?;
        let child = ChildInstance::spawn(NAME, spec, cmd)?.with_stats(vmm_stats).with_confinement_measured();
        Ok(Box::new(MicrovmLinuxInstance { inner: child }))
    }
}

/// A VMM process; like [`ChildInstance`], plus the typed VM outcome in [`ExitInfo::error`].
pub struct MicrovmLinuxInstance {
    inner: ChildInstance,
}

impl Instance for MicrovmLinuxInstance {
    fn id(&self) -> &str {
        self.inner.id()
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
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_the_linux_guest_model_and_says_why_not() {
        let i = MicrovmLinuxBackend::default().info();
        assert_eq!(
            (i.name.as_str(), i.model.as_str(), i.guest_model.map(|g| g.as_str())),
            (NAME, "microvm", Some("linux"))
        );
        assert_eq!(i.available, i.reason.is_none());
        if linux::flavour() == microvm::status::Flavour::Pvm {
            assert!(i.reason.unwrap().contains("kvm_pvm cannot run guest userspace"));
        }
    }

    #[test]
    fn guest_memory_is_whole_mib_within_limits() {
        assert_eq!(guest_mem_bytes(None, &Scenario::Ready), DEFAULT_HEADROOM_BYTES);
        assert_eq!(guest_mem_bytes(Some(1 << 20), &Scenario::Ready), linux::layout::MIN_MEM_BYTES);
        assert_eq!(guest_mem_bytes(Some((200 << 20) + 1), &Scenario::Ready), 201 << 20);
        assert_eq!(guest_mem_bytes(Some(1 << 40), &Scenario::Ready), linux::layout::MAX_MEM_BYTES);
    }

    #[test]
    fn exit_codes_become_typed_outcomes() {
        assert_eq!(describe_exit(0), None);
        assert!(describe_exit(65).unwrap().contains("guest_panic"));
        assert!(describe_exit(68).unwrap().contains("watchdog"));
        assert!(describe_exit(2).unwrap().contains("bad command line"));
    }
}
