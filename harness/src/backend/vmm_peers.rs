//! Peer VMMs the user points at with `--peer qemu=PATH` or `--peer firecracker=PATH`. They boot the
//! linux guest model (the cached guest kernel and the same initramfs as `microvm-linux`, whose /init is
//! the workload) and the workload's protocol lines arrive on their serial console on stdout.
use super::child::ChildInstance;
use super::{Backend, BackendError, Instance, InstanceSpec};
use microvm::linux::boot::{cmdline, CmdlineOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Peer VMM names `--peer` accepts.
pub const NAMES: &[&str] = &["qemu", "firecracker"];

/// The peer VMMs vmct knows how to drive (the closed set behind [`NAMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerVmm {
    /// QEMU's `microvm` machine type (`qemu-system-x86_64 -M microvm`).
    Qemu,
    /// Firecracker, configured with `--no-api --config-file`.
    Firecracker,
}

impl PeerVmm {
    /// Every peer VMM, in [`NAMES`] order.
    pub const ALL: [PeerVmm; 2] = [PeerVmm::Qemu, PeerVmm::Firecracker];

    /// The name: the backend's name and the `NAME` of `--peer NAME=PATH`.
    pub fn name(self) -> &'static str {
        match self {
            PeerVmm::Qemu => "qemu",
            PeerVmm::Firecracker => "firecracker",
        }
    }

    /// The peer called `name`, if any.
    pub fn from_name(name: &str) -> Option<PeerVmm> {
        PeerVmm::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A peer VMM binary the user pointed at (`--peer NAME=PATH`); part of the run's plan in run.json.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Which VMM.
    pub vmm: PeerVmm,
    /// Its binary.
    pub path: PathBuf,
}

/// Parse `NAME=PATH`; the error names the input and the valid names.
pub fn parse_peer(s: &str) -> Result<Peer, String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid peer '{s}': expected NAME=PATH with NAME one of {}", NAMES.join(", ")))?;
    let vmm = PeerVmm::from_name(name)
        .ok_or_else(|| format!("unknown peer '{name}' in '{s}': valid peers: {}", NAMES.join(", ")))?;
    let peer = Peer { vmm, path: PathBuf::from(path) };
    check_peer(&peer)?;
    Ok(peer)
}

/// Check that the peer's binary exists (also for peers read back from a recorded plan).
pub fn check_peer(peer: &Peer) -> Result<(), String> {
    if !peer.path.is_file() {
        return Err(format!("peer {}: {} does not exist or is not a file", peer.vmm.name(), peer.path.display()));
    }
    Ok(())
}

/// A peer VMM.
pub struct VmmPeer {
    vmm: PeerVmm,
    path: PathBuf,
    workload: PathBuf,
}

/// The backend for `peer`.
pub fn backend(peer: &Peer, workload: &Path) -> Box<dyn Backend> {
    Box::new(VmmPeer { vmm: peer.vmm, path: peer.path.clone(), workload: workload.into() })
}

impl VmmPeer {
    fn version(&self) -> Option<String> {
        let out = Command::new(&self.path).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
    }

    fn unavailable(&self) -> Option<String> {
        // The peers boot the same guest as microvm-linux: what stops it stops them.
        super::microvm_linux::availability()
            .err()
            .map(|r| format!("{} boots the linux guest model: {r}", self.vmm.name()))
    }
}

impl Backend for VmmPeer {
    fn name(&self) -> &str {
        self.vmm.name()
    }

    fn info(&self) -> results::BackendInfo {
        let reason = self.unavailable();
        results::BackendInfo {
            isolation: None,
            name: self.vmm.name().into(),
            kind: results::BackendKind::Peer,
            model: results::IsolationModel::Microvm,
            guest_model: Some(results::GuestModel::Linux),
            available: reason.is_none(),
            reason,
            version: self.version(),
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // The same Linux guest as microvm-linux, booted by the peer VMM (no snapshot driving here).
        results::Capabilities { limits: true, linux_probes: true, own_kernel: true, ..results::Capabilities::default() }
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        super::microvm_linux::check_linux_spec(self.name(), spec)
    }

    /// Layer (c) measured from the first live instance of this run ([`super::confinement`]), as the
    /// user's binary runs it (no `-sandbox` for QEMU; Firecracker installs its own filters); layers (a)
    /// and (b) are not declared for a peer VMM.
    fn attack_surface(&self) -> super::surface::BackendSurface {
        let mut s = super::surface::BackendSurface {
            profile: format!("linux guest under {} (the binary given with --peer)", self.vmm.name()),
            supervisor_note: "not measured: no instance reached ready in this run".into(),
            ..Default::default()
        };
        if super::confinement::measured(self.vmm.name()).is_some() {
            super::confinement::apply(self.vmm.name(), &format!("the {} process", self.vmm.name()), &mut s);
        }
        s
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |reason: String| BackendError::Launch { backend: self.vmm.name().into(), reason };
        let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        let append =
            cmdline(&CmdlineOptions { workload_args: args, ..Default::default() }).map_err(|e| fail(e.to_string()))?;
        self.launch_with(spec, &append, None)
    }

    /// The image's root disk read-only on virtio-blk and its run on the kernel command line, as on
    /// `qemu-tcg` (the guest's /init applies the readiness rule). Not run on a host without VT-x/AMD-V.
    fn launch_image(
        &self,
        l: &crate::images::run::ImageLaunch,
        spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |reason: String| BackendError::Launch { backend: self.vmm.name().into(), reason };
        let disk = l.rootdisk.as_deref().ok_or_else(|| fail(format!("image '{}' has no root disk", l.image)))?;
        let mut spec = spec.clone();
        // As qemu-tcg: without a readiness rule the vmct workload runs the scenario asked in the image.
        if l.ready.is_some() {
            spec.scenario = workloads::scenario::Scenario::Ready;
        }
        let append = super::qemu_tcg::image_cmdline(&spec, l).map_err(fail)?;
        self.launch_with(&spec, &append, Some(disk))
    }
}

impl VmmPeer {
    /// Boot the linux guest model with kernel command line `append` and, if given, `disk` attached
    /// read-only.
    fn launch_with(
        &self,
        spec: &InstanceSpec,
        append: &str,
        disk: Option<&std::path::Path>,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let name = self.vmm.name();
        let fail = |reason: String| BackendError::Launch { backend: name.into(), reason };
        let kernel = super::microvm_linux::availability()
            .map_err(|reason| BackendError::Unavailable { backend: name.into(), reason })?;
        let initrd = super::microvm_linux::initramfs_for(&self.workload).map_err(fail)?;
        let mem_mib = super::microvm_linux::guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario) >> 20;
        let cmd = match self.vmm {
            PeerVmm::Qemu => {
                let args = super::qemu_tcg::QemuArgs {
                    accel: super::qemu_tcg::Accel::Kvm,
                    kernel: &kernel,
                    initrd: &initrd,
                    append,
                    mem_mib,
                    vcpus: spec.vcpus,
                    disk,
                    sandbox: None,
                    balloon: false,
                };
                let mut c = Command::new(&self.path);
                // A shared root disk is opened read-only.
                c.args(args.to_args().into_iter().map(|a| {
                    if a.starts_with("file=") {
                        format!("{a},readonly=on")
                    } else {
                        a
                    }
                }));
                c
            }
            PeerVmm::Firecracker => {
                let dir = std::env::temp_dir().join(format!("{}-fc", spec.id));
                std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
                let cfg = serde_json::json!({
                    "boot-source": {"kernel_image_path": kernel, "initrd_path": initrd, "boot_args": append},
                    "drives": disk.map_or_else(Vec::new, |d| vec![serde_json::json!({
                        "drive_id": "rootdisk", "path_on_host": d, "is_root_device": false, "is_read_only": true
                    })]),
                    "machine-config": {"vcpu_count": spec.vcpus, "mem_size_mib": mem_mib},
                });
                let path = dir.join("config.json");
                std::fs::write(&path, cfg.to_string())
                    .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
                let mut c = Command::new(&self.path);
                c.arg("--no-api").arg("--config-file").arg(&path);
                let inst = ChildInstance::spawn(name, spec, c)?.with_confinement_measured().with_cleanup(move || {
                    let _ = std::fs::remove_dir_all(&dir);
                });
                return Ok(Box::new(inst));
            }
        };
        Ok(Box::new(ChildInstance::spawn(name, spec, cmd)?.with_confinement_measured()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_arguments_are_checked() {
        assert!(parse_peer("qemu").unwrap_err().contains("expected NAME=PATH"));
        assert!(parse_peer("bochs=/bin/sh").unwrap_err().contains("unknown peer 'bochs'"));
        assert!(parse_peer("qemu=/nonexistent/qemu").unwrap_err().contains("does not exist"));
        assert_eq!(parse_peer("qemu=/bin/sh").unwrap(), Peer { vmm: PeerVmm::Qemu, path: PathBuf::from("/bin/sh") });
        assert_eq!(parse_peer("firecracker=/bin/sh").unwrap().vmm, PeerVmm::Firecracker);
    }

    #[test]
    fn names_are_the_closed_set() {
        let names: Vec<&str> = PeerVmm::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, NAMES);
        for p in PeerVmm::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
    }
}
