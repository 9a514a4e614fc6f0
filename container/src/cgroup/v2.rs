//! cgroup v2: one directory with every controller; device rules as a BPF program.
use super::*;

/// cgroup v2: one directory with every controller.
#[derive(Debug, Clone)]
pub struct V2 {
    /// Parent directory for containers (mount point + own path).
    pub parent: PathBuf,
}

impl Cgroups for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, name: &str, limits: &Limits, devices: Option<&[DeviceRule]>) -> Result<CgroupDirs, CgroupError> {
        // Enable the controllers for children (fails with EBUSY if the parent has processes and is
        // not the root: then vmct must run in a delegated cgroup of its own).
        let ctl = self.parent.join("cgroup.subtree_control");
        let enabled = fs::read_to_string(&ctl).unwrap_or_default();
        let mut want = vec!["memory"];
        if limits.pids.is_some() {
            want.push("pids");
        }
        if limits.cpus.is_some() {
            want.push("cpu");
        }
        for c in want {
            if !enabled.split_whitespace().any(|e| e == c) {
                write(ctl.clone(), &format!("+{c}"))?;
            }
        }
        let dir = self.parent.join(name);
        mkdir(&dir)?;
        let out = CgroupDirs {
            dirs: vec![
                (Controller::Memory, dir.clone()),
                (Controller::Pids, dir.clone()),
                (Controller::Cpu, dir.clone()),
            ],
        };
        let mut writes = Vec::new();
        if let Some(m) = limits.memory_bytes {
            writes.push(("memory.max", m.to_string()));
            if dir.join("memory.swap.max").exists() {
                writes.push(("memory.swap.max", "0".into()));
            }
        }
        if let Some(p) = limits.pids {
            writes.push(("pids.max", p.to_string()));
        }
        if let Some(q) = limits.cpu_quota_us() {
            writes.push(("cpu.max", format!("{q} {CPU_PERIOD_US}")));
        }
        for (f, v) in writes {
            if let Err(e) = write(dir.join(f), &v) {
                let _ = remove(&out);
                return Err(e);
            }
        }
        if let Some(rules) = devices {
            if let Err(source) = attach_device_program(&dir, rules) {
                let _ = remove(&out);
                return Err(CgroupError::Devices { path: dir, source });
            }
        }
        Ok(out)
    }

    fn attach(&self, dirs: &CgroupDirs, pid: i32) -> Result<(), CgroupError> {
        match dirs.unique().first() {
            Some(d) => write(d.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }

    fn usage_bytes(&self, dirs: &CgroupDirs) -> Option<u64> {
        read_u64(dirs.of(Controller::Memory)?.join("memory.current"))
    }

    fn oom_kills(&self, dirs: &CgroupDirs) -> Option<u64> {
        keyed(dirs.of(Controller::Memory)?.join("memory.events"), "oom_kill")
    }

    fn parents(&self) -> Vec<PathBuf> {
        vec![self.parent.clone()]
    }
}

/// Load the device program for `rules` and attach it to the cgroup v2 directory `dir`.
pub fn attach_device_program(dir: &Path, rules: &[DeviceRule]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let prog = crate::sys::bpf_load_cgroup_device(&devices::cgroup_device_program(rules))?;
    let cg = fs::File::open(dir)?;
    crate::sys::bpf_attach_cgroup_device(cg.as_raw_fd(), prog.as_raw_fd())
}
