//! Capabilities and the default seccomp filter, computed once in the parent.
//!
//! The capability *names* come from the `caps` crate; the child applies them with raw `prctl`/`capset`
//! calls ([`crate::sys`]) because it must not allocate between clone and exec. The seccomp filter is
//! compiled with `seccompiler` (Firecracker's) into BPF once per runtime.
use caps::Capability;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

/// Errors building the security profile.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// seccompiler rejected the filter.
    #[error("seccomp: cannot build the default filter: {0}")]
    Seccomp(String),
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
    /// effective = permitted = inheritable mask.
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

/// System calls the default filter denies with EPERM (Docker's default profile denies these, or
/// allows them only with capabilities the default set does not hold).
pub const DENIED_SYSCALLS: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("settimeofday", libc::SYS_settimeofday),
    ("adjtimex", libc::SYS_adjtimex),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("vhangup", libc::SYS_vhangup),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("syslog", libc::SYS_syslog),
];

/// The `CLONE_NEW*` flags `clone(2)` may not use inside the container.
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> seccompiler::TargetArch {
    #[cfg(target_arch = "aarch64")]
    return seccompiler::TargetArch::aarch64;
    #[cfg(not(target_arch = "aarch64"))]
    seccompiler::TargetArch::x86_64
}

/// The default filter as two BPF programs, both installed:
/// 1. [`DENIED_SYSCALLS`] and `clone` with any namespace flag fail with EPERM;
/// 2. `clone3` fails with ENOSYS (its flags live in memory BPF cannot read; ENOSYS makes libcs fall
///    back to `clone`, which filter 1 checks) — Docker does the same.
pub fn default_seccomp() -> Result<Vec<BpfProgram>, SecurityError> {
    let err = |e: &dyn std::fmt::Display| SecurityError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS.iter().map(|(_, nr)| (*nr, vec![])).collect();
    let mut clone_rules = Vec::new();
    for f in CLONE_NS_FLAGS {
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*f), *f).map_err(|e| err(&e))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch())
        .map_err(|e| err(&e))?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(|e| err(&e))?;
    Ok(vec![deny.try_into().map_err(|e| err(&e))?, clone3.try_into().map_err(|e| err(&e))?])
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
    fn seccomp_filter_compiles() {
        let progs = default_seccomp().unwrap();
        assert_eq!(progs.len(), 2);
        assert!(progs[0].len() > DENIED_SYSCALLS.len());
        assert!(DENIED_SYSCALLS.iter().any(|(n, _)| *n == "kexec_load"));
    }
}
