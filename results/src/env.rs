//! Host environment capture: what a figure was measured on (CPU, memory, kernel, KVM flavour,
//! cgroup layout, frequency scaling, load).
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// Which KVM implementation backs /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmFlavour {
    /// Intel VT-x.
    KvmIntel,
    /// AMD-V.
    KvmAmd,
    /// Nested paravirtual KVM without hardware virtualization: guest CPL0 code is interpreted.
    KvmPvm,
    /// /dev/kvm present but the flavour could not be told.
    KvmUnknown,
    /// No usable /dev/kvm.
    None,
}

impl KvmFlavour {
    /// Detect from /sys/module and /proc/cpuinfo (kvm_pvm: module present and no vmx/svm flag).
    pub fn detect() -> KvmFlavour {
        Self::detect_in(Path::new("/"))
    }

    /// Detection against a root directory (for tests with fake /sys and /proc trees).
    pub fn detect_in(root: &Path) -> KvmFlavour {
        if !root.join("dev/kvm").exists() {
            return KvmFlavour::None;
        }
        let cpuinfo = fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        let module = |m: &str| root.join("sys/module").join(m).exists();
        if module("kvm_pvm") && !has("vmx") && !has("svm") {
            KvmFlavour::KvmPvm
        } else if module("kvm_intel") {
            KvmFlavour::KvmIntel
        } else if module("kvm_amd") {
            KvmFlavour::KvmAmd
        } else if module("kvm_pvm") {
            KvmFlavour::KvmPvm
        } else {
            KvmFlavour::KvmUnknown
        }
    }

    /// The name used in run.json and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            KvmFlavour::KvmIntel => "kvm_intel",
            KvmFlavour::KvmAmd => "kvm_amd",
            KvmFlavour::KvmPvm => "kvm_pvm",
            KvmFlavour::KvmUnknown => "kvm_unknown",
            KvmFlavour::None => "none",
        }
    }

    /// Whether a Linux guest can run userspace on this flavour.
    pub fn runs_linux_guest(self) -> bool {
        matches!(self, KvmFlavour::KvmIntel | KvmFlavour::KvmAmd)
    }
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupLayout {
    /// Unified hierarchy only (cgroup2 at /sys/fs/cgroup).
    V2,
    /// Legacy controllers only.
    V1,
    /// Legacy controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// No cgroup filesystem found.
    None,
}

impl CgroupLayout {
    /// Detect from /proc/self/mountinfo.
    pub fn detect() -> CgroupLayout {
        Self::from_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Classify a mountinfo text.
    pub fn from_mountinfo(text: &str) -> CgroupLayout {
        let mut v1 = false;
        let mut v2 = false;
        for line in text.lines() {
            let Some((_, post)) = line.split_once(" - ") else { continue };
            match post.split_whitespace().next() {
                Some("cgroup") => v1 = true,
                Some("cgroup2") => v2 = true,
                _ => {}
            }
        }
        match (v1, v2) {
            (true, true) => CgroupLayout::Hybrid,
            (true, false) => CgroupLayout::V1,
            (false, true) => CgroupLayout::V2,
            (false, false) => CgroupLayout::None,
        }
    }

    /// The name used in run.json and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupLayout::V2 => "v2",
            CgroupLayout::V1 => "v1",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::None => "none",
        }
    }
}

/// Load and CPU-steal snapshot, taken before and after a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSnapshot {
    /// 1-minute load average.
    pub loadavg_1m: f64,
    /// Cumulative steal time across CPUs, in seconds (from /proc/stat).
    pub steal_s: f64,
    /// Cumulative total CPU time across CPUs, in seconds.
    pub total_cpu_s: f64,
    /// MemAvailable in bytes.
    pub mem_available_bytes: u64,
}

impl LoadSnapshot {
    /// Read /proc/loadavg, /proc/stat and /proc/meminfo.
    pub fn capture() -> LoadSnapshot {
        let loadavg_1m = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
            .unwrap_or(0.0);
        let (steal_s, total_cpu_s) = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let cpu = s.lines().next()?;
                let v: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal ...; USER_HZ is 100 on Linux.
                Some((v.get(7).copied().unwrap_or(0.0) / 100.0, v.iter().take(8).sum::<f64>() / 100.0))
            })
            .unwrap_or((0.0, 0.0));
        LoadSnapshot {
            loadavg_1m,
            steal_s,
            total_cpu_s,
            mem_available_bytes: meminfo_bytes("MemAvailable").unwrap_or(0),
        }
    }
}

/// One field of /proc/meminfo in bytes (`MemAvailable`, `Slab`, ...).
pub fn meminfo_bytes(field: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text, field)
}

/// Parse one field (kB) of a meminfo text into bytes.
pub fn parse_meminfo(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// A peer runtime or VMM found on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer name: crun, runc, qemu, firecracker.
    pub name: String,
    /// Executable path.
    pub path: String,
    /// First line of its version output.
    pub version: String,
}

/// The host a run was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEnv {
    /// Host name.
    pub hostname: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: u32,
    /// MemTotal in bytes.
    pub mem_total_bytes: u64,
    /// Kernel release (uname -r).
    pub kernel: String,
    /// KVM flavour.
    pub kvm: KvmFlavour,
    /// cgroup layout.
    pub cgroup: CgroupLayout,
    /// cpufreq scaling governor of cpu0, if the host exposes one.
    pub cpufreq_governor: Option<String>,
    /// Whether this looks like a virtual machine (hypervisor CPU flag).
    pub virtualized: bool,
    /// Peer runtimes and VMMs found, with versions.
    pub peers: Vec<PeerInfo>,
}

impl HostEnv {
    /// Capture the current host (peers are filled in by the harness, which knows where to look).
    pub fn capture() -> HostEnv {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let virtualized =
            cpuinfo.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
        let cores = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        let read = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_string()).ok();
        HostEnv {
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
            cpu_model,
            cores,
            mem_total_bytes: meminfo_bytes("MemTotal").unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            kvm: KvmFlavour::detect(),
            cgroup: CgroupLayout::detect(),
            cpufreq_governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            virtualized,
            peers: Vec::new(),
        }
    }

    /// Conditions that change what the numbers mean, in words, for run.json and the report.
    pub fn caveats(&self) -> Vec<String> {
        let mut c = Vec::new();
        match self.kvm {
            KvmFlavour::KvmPvm => c.push(
                "KVM is kvm_pvm (nested, no VT-x/AMD-V): guest user-mode code runs natively, guest kernel-mode code is \
                 interpreted about 1000x slower, so the linux guest model cannot run userspace here; microVM figures \
                 are for the bare guest model."
                    .into(),
            ),
            KvmFlavour::None => c.push("No usable /dev/kvm: no microVM figures in this run.".into()),
            _ => {}
        }
        if self.cgroup == CgroupLayout::Hybrid {
            c.push(
                "cgroups are hybrid (v1 controllers plus a v2 mount): container limits use the v1 controllers.".into(),
            );
        }
        if let Some(g) = &self.cpufreq_governor {
            if g != "performance" {
                c.push(format!("CPU frequency scaling governor is '{g}', not 'performance': timings may drift."));
            }
        }
        if self.virtualized {
            c.push(
                "The host is itself a virtual machine: other tenants can steal CPU time (see steal before/after)."
                    .into(),
            );
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_cgroup_layouts() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let v2 = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(CgroupLayout::from_mountinfo(v1), CgroupLayout::V1);
        assert_eq!(CgroupLayout::from_mountinfo(v2), CgroupLayout::V2);
        assert_eq!(CgroupLayout::from_mountinfo(&format!("{v1}{v2}")), CgroupLayout::Hybrid);
        assert_eq!(CgroupLayout::from_mountinfo(""), CgroupLayout::None);
    }

    #[test]
    fn detects_kvm_pvm_in_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert_eq!(KvmFlavour::detect_in(r), KvmFlavour::None);
        fs::create_dir_all(r.join("dev")).unwrap();
        fs::write(r.join("dev/kvm"), "").unwrap();
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(r.join("proc/cpuinfo"), "flags\t: fpu sse2 hypervisor\n").unwrap();
        fs::create_dir_all(r.join("sys/module/kvm_pvm")).unwrap();
        assert_eq!(KvmFlavour::detect_in(r), KvmFlavour::KvmPvm);
        fs::remove_dir(r.join("sys/module/kvm_pvm")).unwrap();
        fs::create_dir_all(r.join("sys/module/kvm_intel")).unwrap();
        fs::write(r.join("proc/cpuinfo"), "flags\t: fpu vmx\n").unwrap();
        assert_eq!(KvmFlavour::detect_in(r), KvmFlavour::KvmIntel);
        assert!(KvmFlavour::KvmIntel.runs_linux_guest() && !KvmFlavour::KvmPvm.runs_linux_guest());
    }

    #[test]
    fn parses_meminfo_fields_in_bytes() {
        let t = "MemTotal:       24576000 kB\nMemAvailable:   1000 kB\nSlab:  7 kB\n";
        assert_eq!(parse_meminfo(t, "MemAvailable"), Some(1_024_000));
        assert_eq!(parse_meminfo(t, "Slab"), Some(7168));
        assert_eq!(parse_meminfo(t, "Mem"), None);
    }
}
