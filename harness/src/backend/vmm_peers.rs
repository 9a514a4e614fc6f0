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

/// Parse `NAME=PATH`; the error names the input and the valid names.
pub fn parse_peer(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid peer '{s}': expected NAME=PATH with NAME one of {}", NAMES.join(", ")))?;
    if !NAMES.contains(&name) {
        return Err(format!("unknown peer '{name}' in '{s}': valid peers: {}", NAMES.join(", ")));
    }
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("peer {name}: {} does not exist or is not a file", path.display()));
    }
    Ok((name.to_string(), path))
}

/// A peer VMM.
pub struct VmmPeer {
    name: String,
    path: PathBuf,
    workload: PathBuf,
}

/// The backend for `name` at `path`.
pub fn backend(name: &str, path: &Path, workload: &Path) -> Box<dyn Backend> {
    Box::new(VmmPeer { name: name.into(), path: path.into(), workload: workload.into() })
}

impl VmmPeer {
    fn version(&self) -> Option<String> {
        let out = Command::new(&self.path).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
    }

    fn unavailable(&self) -> Option<String> {
        // The peers boot the same guest as microvm-linux: what stops it stops them.
        super::microvm_linux::availability().err().map(|r| format!("{} boots the linux guest model: {r}", self.name))
    }
}

impl Backend for VmmPeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> results::BackendInfo {
        let reason = self.unavailable();
        results::BackendInfo {
            isolation: None,
            name: self.name.clone(),
            kind: "peer".into(),
            model: "microvm".into(),
            guest_model: Some("linux".into()),
            available: reason.is_none(),
            reason,
            version: self.version(),
        }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |reason: String| BackendError::Launch { backend: self.name.clone(), reason };
        let kernel = super::microvm_linux::availability()
            .map_err(|reason| BackendError::Unavailable { backend: self.name.clone(), reason })?;
        let initrd = super::microvm_linux::initramfs_for(&self.workload).map_err(fail)?;
        let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
        let append =
            cmdline(&CmdlineOptions { workload_args: args, ..Default::default() }).map_err(|e| fail(e.to_string()))?;
        let mem_mib = super::microvm_linux::guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario) >> 20;
        let cmd = match self.name.as_str() {
            "qemu" => {
                let mut c = Command::new(&self.path);
                c.args([
                    "-M",
                    "microvm",
                    "-enable-kvm",
                    "-cpu",
                    "host",
                    "-nodefaults",
                    "-no-user-config",
                    "-nographic",
                ])
                .args(["-serial", "stdio", "-no-reboot", "-m", &format!("{mem_mib}M")])
                .args(["-smp", &spec.vcpus.to_string()])
                .arg("-kernel")
                .arg(&kernel)
                .arg("-initrd")
                .arg(&initrd)
                .args(["-append", &append]);
                c
            }
            _ => {
                let dir = std::env::temp_dir().join(format!("{}-fc", spec.id));
                std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
                let cfg = serde_json::json!({
                    "boot-source": {"kernel_image_path": kernel, "initrd_path": initrd, "boot_args": append},
                    "drives": [],
                    "machine-config": {"vcpu_count": spec.vcpus, "mem_size_mib": mem_mib},
                });
                let path = dir.join("config.json");
                std::fs::write(&path, cfg.to_string())
                    .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
                let mut c = Command::new(&self.path);
                c.arg("--no-api").arg("--config-file").arg(&path);
                let inst = ChildInstance::spawn(&self.name, spec, c)?.with_cleanup(move || {
                    let _ = std::fs::remove_dir_all(&dir);
                });
                return Ok(Box::new(inst));
            }
        };
        Ok(Box::new(ChildInstance::spawn(&self.name, spec, cmd)?))
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
        assert_eq!(parse_peer("qemu=/bin/sh").unwrap(), ("qemu".to_string(), PathBuf::from("/bin/sh")));
    }
}
