//! Capabilities and the masked and read-only paths, computed once in the parent (the seccomp
//! profile is [`crate::seccomp_profile`], the device rules [`crate::devices`]).
//!
//! The capability *names* come from the `caps` crate; the child applies them with raw `prctl`/`capset`
//! calls ([`crate::sys`]) because it must not allocate between clone and exec.
use caps::Capability;

/// Errors building the security profile.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The capability state could not be read.
    #[error("capabilities: cannot read {what}: {reason}")]
    Caps {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// What the child does with capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsPlan {
    /// Capabilities to drop from the bounding set, by number.
    pub drop_bounding: Vec<u32>,
    /// effective = permitted mask; the inheritable and ambient sets are empty (Docker since
    /// CVE-2022-24769, see [`crate::sys::Sys::capset`]).
    pub mask: u64,
}

/// Names of the default capability set, for OCI configs ("CAP_CHOWN", ...).
pub fn default_cap_names() -> Vec<String> {
    DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
}

/// The plan that keeps only `keep` (intersected with what this process has).
pub fn caps_plan(keep: &[Capability]) -> Result<CapsPlan, SecurityError> {
    let supported = caps::runtime::thread_all_supported();
    let permitted = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| SecurityError::Caps { what: "permitted set", reason: e.to_string() })?;
    let mut drop_bounding: Vec<u32> =
        supported.iter().filter(|c| !keep.contains(c)).map(|c| c.index() as u32).collect();
    drop_bounding.sort_unstable();
    let mask = keep.iter().filter(|c| permitted.contains(c)).fold(0u64, |m, c| m | c.bitmask());
    Ok(CapsPlan { drop_bounding, mask })
}

/// Paths Docker and containerd mask in a non-privileged container (moby `oci/defaults.go`
/// `DefaultSpec().Linux.MaskedPaths`, containerd `oci/spec.go`): files get /dev/null bound over them,
/// directories an empty read-only tmpfs. One list with the isolation probes that check them
/// (`workloads::probe_ids::MASKED_PATHS`).
pub fn masked_paths() -> impl Iterator<Item = &'static str> {
    workloads::probe_ids::MASKED_PATHS.iter().map(|m| m.path)
}

/// Paths Docker and containerd make read-only (same sources as [`masked_paths`]).
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// [`masked_paths`] and [`READONLY_PATHS`] that exist on this host (the container's proc and sysfs are
/// this kernel's), checked once per runtime. Missing ones are skipped silently, as runc does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPaths {
    /// Masked files (relative to the root, no leading '/').
    pub masked_files: Vec<&'static str>,
    /// Masked directories.
    pub masked_dirs: Vec<&'static str>,
    /// Read-only paths.
    pub readonly: Vec<&'static str>,
}

impl HostPaths {
    /// Look at the host's /proc and /sys.
    pub fn detect() -> HostPaths {
        HostPaths::detect_under(std::path::Path::new("/"))
    }

    /// Look under `root` instead of "/" (tests).
    pub fn detect_under(root: &std::path::Path) -> HostPaths {
        let mut h = HostPaths::default();
        for p in masked_paths() {
            let rel = p.trim_start_matches('/');
            match std::fs::metadata(root.join(rel)) {
                Ok(m) if m.is_dir() => h.masked_dirs.push(rel),
                Ok(_) => h.masked_files.push(rel),
                Err(_) => {}
            }
        }
        h.readonly =
            READONLY_PATHS.iter().map(|p| p.trim_start_matches('/')).filter(|p| root.join(p).exists()).collect();
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_plan_keeps_only_the_default_set() {
        let p = caps_plan(DEFAULT_CAPS).unwrap();
        assert!(p.drop_bounding.contains(&(Capability::CAP_SYS_ADMIN.index() as u32)));
        assert!(!p.drop_bounding.contains(&(Capability::CAP_CHOWN.index() as u32)));
        assert_eq!(p.mask & Capability::CAP_SYS_ADMIN.bitmask(), 0);
        assert_eq!(default_cap_names().len(), 14);
        assert!(default_cap_names().contains(&"CAP_NET_BIND_SERVICE".to_string()));
    }

    #[test]
    fn masked_and_readonly_lists_are_moby_and_containerds() {
        // moby oci/defaults.go and containerd oci/spec.go (both hold these paths).
        let moby_masked = "/proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list \
                           /proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware /sys/devices/virtual/powercap";
        let moby_readonly = "/proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger";
        let words = |s: &'static str| s.split_whitespace().collect::<Vec<_>>();
        assert_eq!(masked_paths().collect::<Vec<_>>(), words(moby_masked));
        assert_eq!(READONLY_PATHS, words(moby_readonly));
    }

    #[test]
    fn host_paths_skip_missing_and_split_files_from_dirs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc/acpi")).unwrap();
        std::fs::create_dir_all(t.path().join("proc/sys")).unwrap();
        std::fs::write(t.path().join("proc/keys"), "").unwrap();
        let h = HostPaths::detect_under(t.path());
        assert_eq!(h.masked_dirs, ["proc/acpi"]);
        assert_eq!(h.masked_files, ["proc/keys"]);
        assert_eq!(h.readonly, ["proc/sys"]);
    }
}
