//! cgroup v1 (and the hybrid layout): one hierarchy per controller.
use super::*;

/// cgroup v1 (and hybrid): one hierarchy per controller.
#[derive(Debug, Clone)]
pub struct V1 {
    /// (controller, parent directory for containers = mount point + own path).
    pub parents: Vec<(Controller, PathBuf)>,
    /// Hybrid layout (a v2 mount exists too).
    pub hybrid: bool,
}

impl Cgroups for V1 {
    fn version(&self) -> CgroupVersion {
        if self.hybrid {
            CgroupVersion::Hybrid
        } else {
            CgroupVersion::V1
        }
    }

    fn create(&self, name: &str, limits: &Limits, devices: Option<&[DeviceRule]>) -> Result<CgroupDirs, CgroupError> {
        let mut out = CgroupDirs::default();
        let wanted = [
            (Controller::Memory, true),
            (Controller::Pids, limits.pids.is_some()),
            (Controller::Cpu, limits.cpus.is_some()),
            (Controller::Devices, devices.is_some()),
        ];
        for (c, needed) in wanted {
            if !needed {
                continue;
            }
            let Some((_, parent)) = self.parents.iter().find(|(k, _)| *k == c) else {
                if c == Controller::Memory {
                    return Err(CgroupError::NotFound("no v1 memory hierarchy".into()));
                }
                let _ = remove(&out);
                return Err(CgroupError::NotFound(format!("no v1 {} hierarchy for the requested limit", c.name())));
            };
            let dir = parent.join(name);
            if let Err(e) = mkdir(&dir) {
                let _ = remove(&out);
                return Err(e);
            }
            out.dirs.push((c, dir.clone()));
            let r = match c {
                Controller::Memory => match limits.memory_bytes {
                    Some(m) => write(dir.join("memory.limit_in_bytes"), &m.to_string()),
                    None => Ok(()),
                },
                Controller::Pids => write(dir.join("pids.max"), &limits.pids.unwrap_or(0).to_string()),
                Controller::Cpu => {
                    // The default period is 100 ms (CPU_PERIOD_US), so only the quota is written.
                    write(dir.join("cpu.cfs_quota_us"), &limits.cpu_quota_us().unwrap_or(0).to_string())
                }
                Controller::Devices => write_rules(&dir, devices.unwrap_or_default()),
            };
            if let Err(e) = r {
                let _ = remove(&out);
                return Err(e);
            }
        }
        Ok(out)
    }

    fn attach(&self, dirs: &CgroupDirs, pid: i32) -> Result<(), CgroupError> {
        let p = pid.to_string();
        for d in dirs.unique() {
            write(d.join("cgroup.procs"), &p)?;
        }
        Ok(())
    }

    fn usage_bytes(&self, dirs: &CgroupDirs) -> Option<u64> {
        read_u64(dirs.of(Controller::Memory)?.join("memory.usage_in_bytes"))
    }

    fn oom_kills(&self, dirs: &CgroupDirs) -> Option<u64> {
        keyed(dirs.of(Controller::Memory)?.join("memory.oom_control"), "oom_kill")
    }

    fn parents(&self) -> Vec<PathBuf> {
        self.parents.iter().map(|(_, p)| p.clone()).collect()
    }
}
