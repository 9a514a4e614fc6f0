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
use super::child::ChildInstance;
use super::{Backend, BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready, Saved};
use crate::artifacts;
use crate::memstat;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
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
}

impl MicrovmBackend {
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

    fn command(&self, spec: &InstanceSpec) -> Result<Command, BackendError> {
        let guest = artifacts::guest_path()
            .map_err(|e| BackendError::Unavailable { backend: NAME.to_string(), reason: e.to_string() })?;
        let mut cmd = self.vmm_command()?;
        let mem_mib = guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario).div_ceil(1 << 20);
        cmd.arg("--guest").arg(guest);
        cmd.args(["--mem-mib", &mem_mib.to_string(), "--vcpus", &spec.vcpus.max(1).to_string()]);
        if spec.scenario == Scenario::Probe {
            cmd.arg("--probe");
        }
        cmd.arg("--").args(spec.scenario.to_string().split_whitespace());
        Ok(cmd)
    }
}

impl Backend for MicrovmBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn info(&self) -> results::BackendInfo {
        let avail = self.availability();
        results::BackendInfo {
            name: NAME.into(),
            kind: "ours".into(),
            model: "microvm".into(),
            guest_model: Some("bare".into()),
            available: avail.is_ok(),
            reason: avail.as_ref().err().cloned(),
            version: None,
            emulated: false,
        }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        if let Err(reason) = self.availability() {
            return Err(BackendError::Unavailable { backend: NAME.to_string(), reason: reason.clone() });
        }
        let cmd = self.command(spec)?;
        let child = ChildInstance::spawn(NAME, spec, cmd)?.with_stats(vmm_stats);
        Ok(Box::new(MicrovmInstance { inner: child }))
    }

    /// A new VMM restoring the snapshot in `saved.path` (`vmct-vmm --restore DIR`): guest memory is the
    /// snapshot's memory file mapped copy-on-write; the guest reports `ready` again, then
    /// `restore.memory_ok`. Only `spec.id`, `spec.log_dir` and `spec.env` are used: the VM's shape is
    /// the snapshot's.
    fn restore(&self, saved: &Saved, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        if let Err(reason) = self.availability() {
            return Err(BackendError::Unavailable { backend: NAME.to_string(), reason: reason.clone() });
        }
        let mut cmd = self.vmm_command()?;
        cmd.arg("--restore").arg(&saved.path);
        let child = ChildInstance::spawn(NAME, spec, cmd)?.with_stats(vmm_stats);
        Ok(Box::new(MicrovmInstance { inner: child }))
    }
}

/// A VMM process; like [`ChildInstance`], plus the typed VM error in [`ExitInfo::error`].
pub struct MicrovmInstance {
    inner: ChildInstance,
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

    /// Snapshot the VM into `dir` (the VMM pauses it while the guest waits for stop, as in `idle`,
    /// writes `dir`, and lets it go on). `duration_s` is the pause the VMM measured; `bytes` what it
    /// wrote (memory pages without holes, plus the state file).
    fn save_state(&mut self, dir: &std::path::Path) -> Result<Saved, BackendError> {
        self.inner.send_line(&format!("snapshot {}", dir.display()))?;
        let id = self.id().to_string();
        let failed = |reason: String| BackendError::Save { backend: NAME.into(), id: id.clone(), reason };
        let mut save_s = None;
        loop {
            match self.inner.next_event(SAVE_TIMEOUT)? {
                Some((_, Event::Result { name, value, .. })) if name == "snapshot.save_s" => save_s = Some(value),
                Some((_, Event::Result { name, value, .. })) if name == "snapshot.bytes" => {
                    return Ok(Saved {
                        path: dir.to_path_buf(),
                        bytes: value as u64,
                        duration_s: save_s.unwrap_or(0.0),
                        checks_restore: true,
                    })
                }
                Some((_, Event::Unsupported { what, reason })) if what == "snapshot" => return Err(failed(reason)),
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
        assert_eq!((i.name.as_str(), i.model.as_str(), i.guest_model.as_deref()), ("microvm", "microvm", Some("bare")));
        assert_eq!(i.available, i.reason.is_none());
    }
}
