//! Attack-surface figures a backend reports about itself (issue 13, shared contract between the
//! container, VMM and probe sides): which isolation profile it runs, the seccomp profile its
//! instances get, what the VMM handles for a guest, and what the supervising process (VMM or
//! container runtime) can still call after its own confinement.
//!
//! This module holds exactly the shapes of the contract; the container side fills them for our
//! runtime's profiles and for crun/runc ([`container_surface`]).
use container::seccomp_profile::ProfileInfo;
use container::Profile;

/// A seccomp profile file and what its filter allows (a plain copy of
/// `container::seccomp_profile::ProfileInfo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeccompProfileInfo {
    /// The profile file.
    pub path: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Distinct syscalls the filter allows (some only for some argument values).
    pub syscalls_allowed: u32,
    /// Names the filter compiler did not know: skipped.
    pub unknown_names_skipped: Vec<String>,
}

impl From<&ProfileInfo> for SeccompProfileInfo {
    fn from(p: &ProfileInfo) -> SeccompProfileInfo {
        SeccompProfileInfo {
            path: p.path.display().to_string(),
            sha256: p.sha256.clone(),
            syscalls_allowed: p.syscalls_allowed,
            unknown_names_skipped: p.unknown_names_skipped.clone(),
        }
    }
}

/// What a VMM handles for its guest (a plain copy of `microvm::confine::VmmSurface`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmmSurfaceInfo {
    /// VM exit kinds the run loop handles.
    pub exit_kinds: Vec<String>,
    /// I/O port ranges handled, inclusive (first, last).
    pub io_ports: Vec<(u16, u16)>,
    /// MMIO ranges handled, inclusive (first, last) guest-physical addresses.
    pub mmio_ranges: Vec<(u64, u64)>,
    /// Syscalls the VMM thread's filter allows.
    pub syscalls_allowed: u32,
}

/// One backend's attack-surface figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendSurface {
    /// The isolation profile and what it applies.
    pub profile: String,
    /// The seccomp profile its instances run under, if any.
    pub seccomp_profile: Option<SeccompProfileInfo>,
    /// For microVMs: what the VMM handles for the guest.
    pub vmm: Option<VmmSurfaceInfo>,
    /// Syscalls the supervising process (VMM, container runtime) may make after its confinement;
    /// None: unfiltered.
    pub supervisor_syscalls_allowed: Option<u32>,
    /// What the supervisor figure means here.
    pub supervisor_note: String,
}

/// The surface of a container run with `profile` under `seccomp` by `runtime` (e.g. "vmct's
/// container runtime", "crun"), whose own process is not seccomp-filtered.
pub fn container_surface(profile: Profile, seccomp: Option<&ProfileInfo>, runtime: &str) -> BackendSurface {
    BackendSurface {
        profile: profile.describe().to_string(),
        seccomp_profile: seccomp.map(SeccompProfileInfo::from),
        vmm: None,
        supervisor_syscalls_allowed: None,
        supervisor_note: format!(
            "{runtime}: the runtime process on the host is not seccomp-filtered; the container's processes call the host kernel directly under the profile's filter"
        ),
    }
}

/// The `run.json` record of a container backend's profile.
pub fn isolation_profile(profile: Profile, seccomp: Option<&ProfileInfo>) -> results::IsolationProfile {
    let rules = if profile.confined() { container::devices::DEFAULT_RULES } else { &[] };
    results::IsolationProfile {
        profile: profile.describe().to_string(),
        seccomp_path: seccomp.map(|s| s.path.display().to_string()),
        seccomp_sha256: seccomp.map(|s| s.sha256.clone()),
        seccomp_syscalls_allowed: seccomp.map(|s| s.syscalls_allowed),
        seccomp_unknown_names_skipped: seccomp.map(|s| s.unknown_names_skipped.clone()).unwrap_or_default(),
        device_rules: container::devices::v1_writes(rules)
            .into_iter()
            .map(|(f, v)| {
                let verb = if f == "devices.deny" { "deny" } else { "allow" };
                if v == "a" {
                    format!("{verb} a *:* rwm")
                } else {
                    format!("{verb} {v}")
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_named_with_their_seccomp_file_and_devices() {
        let info = ProfileInfo {
            path: "/usr/share/containers/seccomp.json".into(),
            sha256: "ab".repeat(32),
            syscalls_allowed: 370,
            unknown_names_skipped: vec!["x".into()],
        };
        let p = isolation_profile(Profile::Default, Some(&info));
        assert!(p.profile.starts_with("default: Docker/Podman defaults"));
        assert_eq!(p.seccomp_sha256.as_deref(), Some(info.sha256.as_str()));
        assert_eq!(p.device_rules[0], "deny a *:* rwm");
        assert!(p.device_rules.contains(&"allow c 1:3 rwm".to_string()));
        assert!(p.caveat("container").unwrap().contains("1 syscall(s)"));
        let priv_ = isolation_profile(Profile::Privileged, None);
        assert!(priv_.device_rules.is_empty() && priv_.seccomp_path.is_none() && priv_.caveat("x").is_none());
        let s = container_surface(Profile::Userns, Some(&info), "crun");
        assert_eq!(s.seccomp_profile.unwrap().syscalls_allowed, 370);
        assert!(s.supervisor_syscalls_allowed.is_none());
    }
}
