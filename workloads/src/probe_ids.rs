//! The contract between the probe catalogue (run inside an instance by the Linux workload) and the
//! harness (which plants canaries, reads the results and builds the attack-surface figures): probe ids,
//! the per-id targets (device numbers, masked paths), the canary environment names, and the census
//! summary format. Kept here, in the `no_std` core both sides link, so the two can never drift apart:
//! the workload's catalogue is checked against [`CATALOGUE`] in its tests, and the harness re-exports
//! the environment names.
//!
//! Every Linux platform (process baseline, our containers, crun/runc, the Linux guest) runs the same
//! list, in this order.

/// Random nonce of this run (hex); every canary carries it.
pub const ENV_NONCE: &str = "VMCT_CANARY_NONCE";
/// Host path of the canary file (outside the instance's root).
pub const ENV_FILE: &str = "VMCT_CANARY_FILE";
/// `127.0.0.1:PORT` of the harness's loopback listener.
pub const ENV_ADDR: &str = "VMCT_CANARY_ADDR";
/// Host pid of the canary process (nonce in its argv).
pub const ENV_PID: &str = "VMCT_CANARY_PID";
/// `ADDR:LEN` (hex address, decimal length) of the canary process's argv in its memory.
pub const ENV_PID_ARGV: &str = "VMCT_CANARY_PID_ARGV";
/// `/proc/sys/...` path of the sysctl the harness restores.
pub const ENV_SYSCTL: &str = "VMCT_CANARY_SYSCTL";
/// Host path of the cgroup directory created for the escape probe.
pub const ENV_CGROUP: &str = "VMCT_CANARY_CGROUP";
/// Host namespace inodes: `mnt=N,uts=N,pid=N,net=N,ipc=N,user=N,cgroup=N`.
pub const ENV_HOST_NS: &str = "VMCT_HOST_NS";
/// Serial of the host root's user keyring.
pub const ENV_HOST_KEYRING: &str = "VMCT_HOST_KEYRING";
/// `MAJOR:MINOR` of the block device holding the host's root filesystem (from the host's
/// /proc/self/mountinfo), for [`DEV_NODE_ROOTDISK`]: an instance cannot see the host's mount table.
pub const ENV_HOST_ROOT_DEV: &str = "VMCT_HOST_ROOT_DEV";
/// Optional comma-separated list of probe ids to run (default: all).
pub const ENV_ONLY: &str = "VMCT_PROBE_ONLY";

/// Kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    /// Character device (`S_IFCHR`).
    Char,
    /// Block device (`S_IFBLK`).
    Block,
}

/// A device node the `dev.node.*` probes create on a filesystem that allows device nodes and open
/// (never read or written). Numbers are the kernel's fixed assignments (Documentation/admin-guide/devices.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode {
    /// Probe id.
    pub id: &'static str,
    /// Name under /dev on a host.
    pub name: &'static str,
    /// Char or block.
    pub kind: DevKind,
    /// Major number; `None` for the host's root disk, whose number comes from [`ENV_HOST_ROOT_DEV`].
    pub major: Option<u32>,
    /// Minor number.
    pub minor: u32,
}

/// Probe id of the host root disk node (its number comes from [`ENV_HOST_ROOT_DEV`]).
pub const DEV_NODE_ROOTDISK: &str = "dev.node.rootdisk";

/// Character and block devices a container must not open even when it can create their nodes: none is
/// in the OCI/Docker default device allowlist.
pub const DEVICE_NODES: &[DeviceNode] = &[
    DeviceNode { id: "dev.node.tty0", name: "tty0", kind: DevKind::Char, major: Some(4), minor: 0 },
    DeviceNode { id: "dev.node.loop_control", name: "loop-control", kind: DevKind::Char, major: Some(10), minor: 237 },
    DeviceNode { id: "dev.node.fuse", name: "fuse", kind: DevKind::Char, major: Some(10), minor: 229 },
    DeviceNode { id: "dev.node.net_tun", name: "net/tun", kind: DevKind::Char, major: Some(10), minor: 200 },
    DeviceNode { id: "dev.node.mem", name: "mem", kind: DevKind::Char, major: Some(1), minor: 1 },
    DeviceNode { id: "dev.node.kmsg", name: "kmsg", kind: DevKind::Char, major: Some(1), minor: 11 },
    DeviceNode { id: "dev.node.loop0", name: "loop0", kind: DevKind::Block, major: Some(7), minor: 0 },
    DeviceNode { id: DEV_NODE_ROOTDISK, name: "host root disk", kind: DevKind::Block, major: None, minor: 0 },
];

/// A host path Docker, Podman, containerd and runc mask in a container (moby `oci/defaults.go`
/// `DefaultLinuxSpec().Linux.MaskedPaths`; files are covered with /dev/null, directories with an empty
/// read-only tmpfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedPath {
    /// Probe id.
    pub id: &'static str,
    /// Absolute path.
    pub path: &'static str,
}

/// The masked-path probes: `reached` when the path is readable with content.
pub const MASKED_PATHS: &[MaskedPath] = &[
    MaskedPath { id: "masked.proc_acpi", path: "/proc/acpi" },
    MaskedPath { id: "masked.proc_asound", path: "/proc/asound" },
    MaskedPath { id: "masked.proc_kcore", path: "/proc/kcore" },
    MaskedPath { id: "masked.proc_keys", path: "/proc/keys" },
    MaskedPath { id: "masked.proc_latency_stats", path: "/proc/latency_stats" },
    MaskedPath { id: "masked.proc_timer_list", path: "/proc/timer_list" },
    MaskedPath { id: "masked.proc_timer_stats", path: "/proc/timer_stats" },
    MaskedPath { id: "masked.proc_sched_debug", path: "/proc/sched_debug" },
    MaskedPath { id: "masked.proc_scsi", path: "/proc/scsi" },
    MaskedPath { id: "masked.sys_firmware", path: "/sys/firmware" },
    MaskedPath { id: "masked.sys_powercap", path: "/sys/devices/virtual/powercap" },
];

/// Kernel-crash and kernel-extension entry points, each reached with arguments the kernel rejects
/// (never executed): `blocked` on EPERM/EACCES (capabilities, seccomp) or ENOSYS (a filter),
/// `reached` when the kernel's own argument checks answered.
pub const KERNEL_REACH: &[&str] = &[
    "kernel.sysrq_trigger",
    "kernel.reboot",
    "kernel.kexec_load",
    "kernel.kexec_file_load",
    "kernel.init_module",
    "kernel.finit_module",
    "kernel.bpf",
    "kernel.perf_event_open",
    "kernel.userfaultfd",
    "kernel.io_uring_setup",
    "kernel.keyctl",
    "kernel.add_key",
];

/// The probes that existed before the device, masked-path and kernel-reach groups, in report order.
pub const BASE_PROBES: &[&str] = &[
    "fs.host_canary",
    "pid.host_visible",
    "pid.ptrace_host",
    "net.host_loopback",
    "net.raw_socket",
    "uts.hostname",
    "uts.domainname",
    "sysctl.host_write",
    "mount.tmpfs",
    "mount.proc",
    "mount.sysfs",
    "dev.kvm",
    "dev.mem",
    "dev.block",
    "caps.raise",
    "clock.settime",
    "keyring.add_key",
    "cgroup.escape",
    "cgroup.raise_limit",
    "info.kernel",
    "info.cpuinfo",
];

/// Probe id of the syscall census (last in every run).
pub const CENSUS: &str = "census.syscalls";

/// Every probe id of the Linux catalogue in report order: [`BASE_PROBES`], [`DEVICE_NODES`],
/// [`MASKED_PATHS`], [`KERNEL_REACH`], then [`CENSUS`].
pub fn catalogue() -> impl Iterator<Item = &'static str> {
    BASE_PROBES
        .iter()
        .copied()
        .chain(DEVICE_NODES.iter().map(|d| d.id))
        .chain(MASKED_PATHS.iter().map(|m| m.id))
        .chain(KERNEL_REACH.iter().copied())
        .chain(core::iter::once(CENSUS))
}

/// Probe ids added by issue 13 (device nodes, masked paths, kernel reach): the ones every Linux backend
/// must report and the hardened profiles must block.
pub fn surface_probes() -> impl Iterator<Item = &'static str> {
    DEVICE_NODES.iter().map(|d| d.id).chain(MASKED_PATHS.iter().map(|m| m.id)).chain(KERNEL_REACH.iter().copied())
}

/// The native system call table (x86_64 on x86_64 hosts) from the `syscalls` crate (generated from the
/// kernel's syscall_64.tbl; 0.8 ends at 469 `file_setattr`, Linux 6.17): the census probes it and the
/// harness counts "unfiltered" against it.
#[cfg(feature = "linux")]
pub mod syscall_table {
    pub use syscalls::Sysno;

    /// Every entry in number order, holes skipped. (Built from `Sysno::new` because `Sysno::iter` of
    /// syscalls 0.8.1 stops before the last entry.)
    pub fn entries() -> impl Iterator<Item = Sysno> {
        (0..=Sysno::last().id()).filter_map(|i| usize::try_from(i).ok().and_then(Sysno::new))
    }

    /// Number of entries (system calls).
    pub fn len() -> u32 {
        u32::try_from(entries().count()).unwrap_or(u32::MAX)
    }
}

/// `MAJOR:MINOR` of the filesystem mounted at `/` in a /proc/self/mountinfo text (its 3rd field on the
/// line whose 5th field is `/`). None when there is no such line or the device is anonymous (major 0:
/// overlayfs, tmpfs, a container's root).
pub fn root_dev_from_mountinfo(mountinfo: &str) -> Option<(u32, u32)> {
    let dev = mountinfo.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let dev = f.nth(2)?;
        let _root = f.next()?;
        (f.next()? == "/").then_some(dev)
    })?;
    parse_dev(dev).filter(|(major, _)| *major != 0)
}

/// `254:0` -> (254, 0).
pub fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The syscall census's counts over the x86_64 system call table, as the first fields of its detail:
/// `table=T reachable=R filtered=F skipped=S`. Units: system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CensusCounts {
    /// Entries of the x86_64 table probed against (named system calls, holes excluded).
    pub table: u32,
    /// Calls that reached the kernel's implementation (any result but EPERM/ENOSYS).
    pub reachable: u32,
    /// Calls refused with EPERM/ENOSYS or a seccomp kill (filtered before the implementation).
    pub filtered: u32,
    /// Calls never invoked because they end, fork, block or act whatever their arguments.
    pub skipped: u32,
}

impl core::fmt::Display for CensusCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "table={} reachable={} filtered={} skipped={}",
            self.table, self.reachable, self.filtered, self.skipped
        )
    }
}

impl CensusCounts {
    /// Parse the counts from a census detail (the `key=N` fields before the first `;`). None when a
    /// field is missing (e.g. a detail written by an older workload).
    pub fn parse(detail: &str) -> Option<CensusCounts> {
        let head = detail.split(';').next()?;
        let field = |key: &str| {
            head.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u32>().ok())
        };
        Some(CensusCounts {
            table: field("table")?,
            reachable: field("reachable")?,
            filtered: field("filtered")?,
            skipped: field("skipped")?,
        })
    }

    /// The system call names of the `; LIST: a,b,c` part of a census detail (`LIST` is `filtered` or
    /// `skipped`); empty when absent.
    pub fn names<'a>(detail: &'a str, list: &str) -> impl Iterator<Item = &'a str> {
        let part =
            detail.split("; ").find_map(|p| p.strip_prefix(list).and_then(|r| r.strip_prefix(": "))).unwrap_or("");
        part.split(',').filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn ids_are_unique_tokens_in_groups() {
        let ids: Vec<&str> = catalogue().collect();
        for id in &ids {
            assert!(!id.is_empty() && !id.contains(char::is_whitespace) && !id.contains(','), "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate probe id");
        assert!(DEVICE_NODES.iter().all(|d| d.id.starts_with("dev.node.")));
        assert!(MASKED_PATHS.iter().all(|m| m.id.starts_with("masked.") && m.path.starts_with('/')));
        assert!(KERNEL_REACH.iter().all(|k| k.starts_with("kernel.")));
        assert_eq!(*ids.last().unwrap(), CENSUS);
    }

    #[test]
    fn masked_list_is_dockers() {
        // moby oci/defaults.go MaskedPaths (2024), the list issue 13 names.
        let docker = [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ];
        assert_eq!(MASKED_PATHS.iter().map(|m| m.path).collect::<Vec<_>>(), docker);
    }

    #[test]
    fn root_device_comes_from_the_last_mount_on_slash() {
        let host = "22 27 0:21 / /proc rw - proc proc rw\n27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert_eq!(root_dev_from_mountinfo(host), Some((254, 0)));
        let container = "27 1 254:0 / / rw - ext4 /dev/vda rw\n600 500 0:55 / / rw - overlay overlay rw\n";
        assert_eq!(root_dev_from_mountinfo(container), None, "anonymous overlay root");
        assert_eq!(parse_dev("7:0"), Some((7, 0)));
        assert_eq!(parse_dev("x"), None);
    }

    #[test]
    fn census_counts_roundtrip_and_reject_old_details() {
        let c = CensusCounts { table: 373, reachable: 300, filtered: 60, skipped: 13 };
        let s = std::format!("{c}; filtered: bpf,kexec_load");
        assert_eq!(CensusCounts::parse(&s), Some(c));
        assert_eq!(CensusCounts::names(&s, "filtered").collect::<Vec<_>>(), ["bpf", "kexec_load"]);
        assert_eq!(CensusCounts::names(&s, "skipped").count(), 0);
        assert_eq!(CensusCounts::parse("reachable=5 of 400 (numbers 0-470)"), None);
        assert_eq!(CensusCounts::parse(""), None);
    }
}
