//! The `process` backend: the workload as a plain host child process, the baseline every other
//! backend is compared with.
use super::child::ChildInstance;
use super::surface::{BackendSurface, SeccompProfileInfo};
use super::{Backend, BackendError, Instance, InstanceSpec};
use std::path::PathBuf;
use std::process::Command;

/// The baseline's isolation profile: none.
pub const PROFILE: &str = "none (baseline, no isolation)";

/// Runs `vmct-workload` directly.
pub struct ProcessBackend {
    workload: PathBuf,
    work_dir: PathBuf,
}

impl ProcessBackend {
    /// `workload`: the static workload binary; `work_dir`: its working directory (the `io` scenario
    /// writes there).
    pub fn new(workload: PathBuf, work_dir: PathBuf) -> ProcessBackend {
        ProcessBackend { workload, work_dir }
    }
}

impl Backend for ProcessBackend {
    fn name(&self) -> &str {
        "process"
    }

    fn info(&self) -> results::BackendInfo {
        results::BackendInfo {
            isolation: None,
            name: "process".into(),
            kind: results::BackendKind::Baseline,
            model: results::IsolationModel::Process,
            guest_model: None,
            available: true,
            reason: None,
            version: None,
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // A plain child process: no limits, no saved state, the host's kernel.
        results::Capabilities { linux_probes: true, ..results::Capabilities::default() }
    }

    fn attack_surface(&self) -> BackendSurface {
        BackendSurface {
            profile: PROFILE.into(),
            seccomp_profile: Some(SeccompProfileInfo::unfiltered()),
            vmm: None,
            supervisor_syscalls_allowed: None,
            supervisor_note: "not applicable: no supervisor; the workload is itself an unconfined host process".into(),
            user_kernel: None,
        }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let mut cmd = Command::new(&self.workload);
        cmd.args(spec.scenario.to_string().split_whitespace()).current_dir(&self.work_dir);
        Ok(Box::new(ChildInstance::spawn(self.name(), spec, cmd)?))
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        super::not_applied(self.name(), spec, true, "it is the unconfined baseline; use a container backend")
    }
}
