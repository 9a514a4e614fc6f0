//! What a backend declares about its attack surface (issue 13, /work/shared CONTRACT.md): the profile it
//! runs, the seccomp filter of its instances, what its VMM handles for a guest, and how many host system
//! calls its supervising process (VMM or runtime) can still make. The isolation experiment joins this
//! with what the probes measured into a [`results::AttackSurfaceRow`] ([`surface_row`]).
//!
//! `None` means "not declared" and is rendered so; it is never read as zero.
use container::seccomp_profile::ProfileInfo;
use container::Profile;
use results::{GuestModel, IsolationModel};
use std::path::PathBuf;
use workloads::probe_ids::CensusCounts;

/// The seccomp profile an instance runs under (a copy of `container::seccomp_profile::ProfileInfo`).
/// An empty `path` declares "no filter at all" ([`SeccompProfileInfo::unfiltered`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeccompProfileInfo {
    /// The profile file read at run time (empty: unfiltered).
    pub path: PathBuf,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// System calls the profile allows for this instance (unit: system calls).
    pub syscalls_allowed: u32,
    /// Syscall names in the profile this kernel/arch does not know, skipped (as runc does).
    pub unknown_names_skipped: Vec<String>,
}

impl SeccompProfileInfo {
    /// An instance with no seccomp filter: every system call of the table is allowed.
    pub fn unfiltered() -> SeccompProfileInfo {
        SeccompProfileInfo { syscalls_allowed: unfiltered_syscalls(), ..Default::default() }
    }
}

impl From<&ProfileInfo> for SeccompProfileInfo {
    fn from(p: &ProfileInfo) -> SeccompProfileInfo {
        SeccompProfileInfo {
            path: p.path.clone(),
            sha256: p.sha256.clone(),
            syscalls_allowed: p.syscalls_allowed,
            unknown_names_skipped: p.unknown_names_skipped.clone(),
        }
    }
}

/// What a VMM handles for its guest (a copy of `microvm::confine::VmmSurface`, as strings and counts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmmSurfaceInfo {
    /// VM exit kinds the run loop handles (anything else ends the VM); empty for a VMM described by its
    /// device models instead.
    pub exit_kinds: Vec<String>,
    /// The device models the guest's accesses reach, for a VMM measured that way (QEMU's `info qtree`);
    /// None for a VMM that declares its exit kinds.
    pub device_models: Option<Vec<String>>,
    /// I/O port ranges, as `microvm::confine` gives them.
    pub io_ports: Vec<(u16, u16)>,
    /// MMIO ranges, as `microvm::confine` gives them.
    pub mmio_ranges: Vec<(u64, u64)>,
    /// Host system calls the VMM's seccomp filter allows (unit: system calls).
    pub syscalls_allowed: u32,
    /// Where the lists come from, naming every entry, when they were measured rather than declared by
    /// the VMM's own code (e.g. QEMU's monitor, [`super::qemu_surface`]); None: declared by the VMM.
    pub source: Option<String>,
}

/// A backend's declared attack surface. The default declares nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendSurface {
    /// The isolation profile the backend runs (e.g. `default: Docker/Podman defaults (...)`).
    pub profile: String,
    /// The seccomp profile its instances run under; None: not declared (or no profile file).
    pub seccomp_profile: Option<SeccompProfileInfo>,
    /// What its VMM handles for a guest (microVMs); None: not a VMM, or not declared.
    pub vmm: Option<VmmSurfaceInfo>,
    /// Host system calls the supervising VMM or runtime process may make after its confinement
    /// (the whole table when it is unfiltered); None: not declared.
    pub supervisor_syscalls_allowed: Option<u32>,
    /// Which process supervises the instance and how it is confined.
    pub supervisor_note: String,
    /// What a user-space kernel (gVisor's Sentry) answers for the workload; None: not one.
    pub user_kernel: Option<UserKernelSurfaceInfo>,
}

/// Layer (b) of a user-space kernel: the system calls it implements for the workload, and what becomes of
/// the OCI seccomp profile the bundle carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserKernelSurfaceInfo {
    /// System calls the user-space kernel implements (fully or partly); None: not readable.
    pub syscalls_implemented: Option<u32>,
    /// Where that count comes from.
    pub syscalls_source: String,
    /// What the instance's seccomp column says (e.g. that the OCI profile is not applied).
    pub instance_seccomp: String,
}

/// Number of entries of the native (x86_64) system call table: what an unfiltered process may call.
pub fn unfiltered_syscalls() -> u32 {
    workloads::probe_ids::syscall_table::len()
}

/// Text for an unfiltered process.
pub fn unfiltered_note(who: &str) -> String {
    format!("{who}: no seccomp filter, so every one of the {} x86_64 system calls", unfiltered_syscalls())
}

/// Join a backend's declaration with what its instance's census measured (`census_detail`: the
/// `census.syscalls` probe's detail, if it ran) into the row of `attack_surface.csv`; with the process
/// baseline's census of the same run (`baseline_detail`), the calls refused in the instance that the
/// host itself answers are counted apart (`host_syscalls_filtered`: what the isolation took away).
///
/// Layer (a) for a VM guest (`info.model` [`IsolationModel::Microvm`]) is 0 by construction: the guest's system calls,
/// if it has an OS at all, go to its own kernel; it reaches the host only through VM exits (layer b).
pub fn surface_row(
    info: &results::BackendInfo,
    declared: &BackendSurface,
    census_detail: Option<&str>,
    baseline_detail: Option<&str>,
) -> results::AttackSurfaceRow {
    let census = census_detail.and_then(CensusCounts::parse);
    let mut row = results::AttackSurfaceRow {
        backend: info.name.clone(),
        model: info.model,
        profile: declared.profile.clone(),
        ..Default::default()
    };
    if let Some(u) = &declared.user_kernel {
        row.host_syscalls_reachable = Some(0);
        let census = match census {
            Some(c) => format!(
                "; the census inside the sandbox reached {} of {} calls and had {} refused: all answered by the \
                 Sentry, not the host kernel",
                c.reachable, c.table, c.filtered
            ),
            None => String::new(),
        };
        row.host_syscalls_source = format!(
            "0 by construction: the workload's system calls trap into the Sentry (gVisor's user-space kernel), \
             which makes its own host calls under its own filter (layer c){census}"
        );
        row.user_kernel_syscalls_implemented = u.syscalls_implemented;
    } else if info.model == IsolationModel::Microvm {
        row.host_syscalls_reachable = Some(0);
        let guest = match (info.guest_model, census) {
            (Some(GuestModel::Bare), _) => "the bare guest has no OS and makes no system calls".to_string(),
            (_, Some(c)) => format!(
                "the census inside the guest reached {} of {} guest-kernel calls (the guest's own kernel, not the host's)",
                c.reachable, c.table
            ),
            _ => "the guest's system calls go to its own kernel".to_string(),
        };
        row.host_syscalls_source =
            format!("0 by construction: {guest}; the guest reaches the host only through VM exits (layer b)");
    } else if let Some(c) = census {
        row.host_syscalls_table = Some(c.table);
        row.host_syscalls_reachable = Some(c.reachable);
        row.host_syscalls_refused = Some(c.filtered);
        row.host_syscalls_skipped = Some(c.skipped);
        row.host_syscalls_source =
            "measured: census.syscalls probe inside the instance, this run (refused = EPERM/ENOSYS/killed: \
             filtered, or not built into the host kernel)"
                .into();
        if let (Some(own), Some(base)) = (census_detail, baseline_detail) {
            let host: Vec<&str> = CensusCounts::names(base, "filtered").collect();
            let cut = CensusCounts::names(own, "filtered").filter(|n| !host.contains(n)).count();
            row.host_syscalls_filtered = Some(count(cut));
            row.host_syscalls_source.push_str("; filtered = refused here but answered on the process baseline");
        }
    } else {
        row.host_syscalls_source = "not measured: the census did not run on this backend in this run".into();
    }
    match &declared.seccomp_profile {
        _ if declared.user_kernel.is_some() => {
            row.instance_seccomp =
                declared.user_kernel.as_ref().map(|u| u.instance_seccomp.clone()).unwrap_or_default();
        }
        Some(p) if p.path.as_os_str().is_empty() => {
            row.instance_seccomp_allowed = Some(p.syscalls_allowed);
            row.instance_seccomp = "unfiltered: no seccomp filter (every call of the x86_64 table)".into();
        }
        Some(p) => {
            row.instance_seccomp_allowed = Some(p.syscalls_allowed);
            row.instance_seccomp = format!(
                "{} (sha256 {}){}",
                p.path.display(),
                p.sha256,
                if p.unknown_names_skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} unknown names skipped: {}",
                        p.unknown_names_skipped.len(),
                        p.unknown_names_skipped.join(",")
                    )
                }
            );
        }
        None => row.instance_seccomp = "not declared".into(),
    }
    match &declared.vmm {
        None if declared.user_kernel.is_some() => {
            row.vmm_source = declared.user_kernel.as_ref().map(|u| u.syscalls_source.clone()).unwrap_or_default();
        }
        Some(v) => {
            match &v.device_models {
                Some(d) => row.vmm_device_models = Some(count(d.len())),
                None => row.vmm_exit_kinds = Some(count(v.exit_kinds.len())),
            }
            row.vmm_io_port_ranges = Some(count(v.io_ports.len()));
            row.vmm_mmio_ranges = Some(count(v.mmio_ranges.len()));
            let ports: Vec<String> = v.io_ports.iter().map(|(a, b)| format!("{a:#x}-{b:#x}")).collect();
            let mmio: Vec<String> = v.mmio_ranges.iter().map(|(a, b)| format!("{a:#x}-{b:#x}")).collect();
            row.vmm_source = v.source.clone().unwrap_or_else(|| {
                format!(
                    "declared by the VMM: exits [{}]; ports [{}]; mmio [{}]",
                    v.exit_kinds.join(","),
                    ports.join(","),
                    mmio.join(",")
                )
            });
        }
        None if info.model == IsolationModel::Microvm => row.vmm_source = "not declared".into(),
        None => row.vmm_source = "not applicable: no VMM".into(),
    }
    row.supervisor_syscalls_allowed = declared.supervisor_syscalls_allowed;
    row.supervisor_source =
        if declared.supervisor_note.is_empty() { "not declared".into() } else { declared.supervisor_note.clone() };
    row
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The profile runsc runs: the peers' default bundle inside gVisor's Sentry, whose OCI seccomp profile
/// runsc does not install by default.
pub fn user_space_kernel_profile() -> String {
    format!(
        "{} in gVisor's Sentry (runsc); the bundle's OCI seccomp profile is not installed (runsc without \
         --oci-seccomp, its default)",
        Profile::Default.describe()
    )
}

/// The surface of gVisor's runsc (`bin`) running the peers' bundle, which carries `seccomp`:
/// (b) the Sentry's implemented system calls (`runsc help syscalls`), (c) the Sentry's own host seccomp
/// filter as read from the first sandbox that reached ready in this process
/// ([`super::confinement::measured`]; "not measured" when none did).
pub fn user_space_kernel_surface(bin: &std::path::Path, seccomp: Option<&ProfileInfo>) -> BackendSurface {
    let (implemented, syscalls_source) = match super::runsc::sentry_syscalls(bin) {
        Ok(s) => (
            Some(s.implemented()),
            format!(
                "the Sentry implements {} system calls ({} fully, {} partly; {} of the amd64 table unimplemented, \
                 they return errors): `runsc help syscalls -format json`, this runsc",
                s.implemented(),
                s.full,
                s.partial,
                s.unimplemented
            ),
        ),
        Err(e) => (None, format!("not readable: {e}")),
    };
    let instance_seccomp = match seccomp {
        Some(p) => format!(
            "not applied: the bundle carries {} (sha256 {}), but runsc loads an OCI seccomp profile only with \
             --oci-seccomp, which is off by default (as Docker's runsc runtime runs it)",
            p.path.display(),
            p.sha256
        ),
        None => "none: runsc loads an OCI seccomp profile only with --oci-seccomp (off by default)".into(),
    };
    let mut surface = BackendSurface {
        profile: user_space_kernel_profile(),
        seccomp_profile: None,
        vmm: None,
        supervisor_syscalls_allowed: None,
        supervisor_note:
            "not measured: no runsc sandbox reached ready in this run, so the Sentry's filter was not read".into(),
        user_kernel: Some(UserKernelSurfaceInfo {
            syscalls_implemented: implemented,
            syscalls_source,
            instance_seccomp,
        }),
    };
    if super::confinement::measured(super::runsc::NAME).is_some() {
        super::confinement::apply(super::runsc::NAME, "gVisor's Sentry (runsc-sandbox)", &mut surface);
    } else if let Some(f) = super::confinement::last_failure(super::runsc::NAME) {
        surface.supervisor_note = format!("not measured: the Sentry's filter could not be read: {f}");
    }
    surface
}

/// The surface of a container run with `profile` under `seccomp` by `runtime` (e.g. "vmct's
/// container runtime", "crun"), whose own process is not seccomp-filtered.
pub fn container_surface(profile: Profile, seccomp: Option<&ProfileInfo>, runtime: &str) -> BackendSurface {
    BackendSurface {
        profile: profile.describe().to_string(),
        // An unconfined profile (privileged) installs no filter: unfiltered, not "not declared".
        seccomp_profile: match seccomp {
            Some(p) => Some(SeccompProfileInfo::from(p)),
            None if !profile.confined() => Some(SeccompProfileInfo::unfiltered()),
            None => None,
        },
        vmm: None,
        supervisor_syscalls_allowed: Some(unfiltered_syscalls()),
        supervisor_note: unfiltered_note(runtime),
        user_kernel: None,
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

    fn info(name: &str, model: &str, guest: Option<&str>) -> results::BackendInfo {
        results::BackendInfo {
            emulated: false,
            isolation: None,
            name: name.into(),
            kind: results::BackendKind::Ours,
            model: model.parse().unwrap(),
            guest_model: guest.map(|g| g.parse().unwrap()),
            available: true,
            reason: None,
            version: None,
        }
    }

    #[test]
    fn containers_take_layer_a_from_the_census() {
        let d = "table=382 reachable=300 filtered=65 skipped=17; x86_64 table";
        let r = surface_row(&info("container", "container", None), &BackendSurface::default(), Some(d), None);
        assert_eq!(
            (r.host_syscalls_table, r.host_syscalls_reachable, r.host_syscalls_refused),
            (Some(382), Some(300), Some(65))
        );
        assert!(r.host_syscalls_source.starts_with("measured"));
        assert_eq!(r.instance_seccomp, "not declared");
        assert_eq!(r.supervisor_syscalls_allowed, None);
        assert_eq!(r.supervisor_source, "not declared");
        assert!(r.vmm_source.starts_with("not applicable"));
    }

    #[test]
    fn filtered_counts_only_what_the_host_itself_answers() {
        let base = "table=383 reachable=341 filtered=2 skipped=17; x86_64 table to file_setattr (469); filtered: uselib,_sysctl; skipped: fork";
        let own = "table=383 reachable=339 filtered=4 skipped=17; x86_64 table to file_setattr (469); filtered: uselib,_sysctl,bpf,reboot; skipped: fork";
        let r = surface_row(&info("container", "container", None), &BackendSurface::default(), Some(own), Some(base));
        assert_eq!((r.host_syscalls_refused, r.host_syscalls_filtered), (Some(4), Some(2)));
        let r = surface_row(&info("container", "container", None), &BackendSurface::default(), Some(own), None);
        assert_eq!(r.host_syscalls_filtered, None, "no baseline, no claim");
    }

    #[test]
    fn a_vm_guest_reaches_no_host_syscalls_by_construction() {
        let r = surface_row(&info("microvm", "microvm", Some("bare")), &BackendSurface::default(), None, None);
        assert_eq!(r.host_syscalls_reachable, Some(0));
        assert!(r.host_syscalls_source.contains("by construction"));
        assert_eq!((r.vmm_exit_kinds, r.vmm_source.as_str()), (None, "not declared"));
        // A Linux guest's census counts its own kernel, never the host's.
        let d = "table=382 reachable=340 filtered=25 skipped=17";
        let r =
            surface_row(&info("microvm-linux", "microvm", Some("linux")), &BackendSurface::default(), Some(d), None);
        assert_eq!((r.host_syscalls_reachable, r.host_syscalls_table), (Some(0), None));
        assert!(r.host_syscalls_source.contains("guest-kernel"));
    }

    #[test]
    fn a_user_space_kernel_reaches_no_host_syscalls_and_declares_the_sentry_layers() {
        let s = BackendSurface {
            user_kernel: Some(UserKernelSurfaceInfo {
                syscalls_implemented: Some(321),
                syscalls_source: "runsc help syscalls".into(),
                instance_seccomp: "not applied".into(),
            }),
            supervisor_syscalls_allowed: Some(80),
            supervisor_note: "Sentry filter".into(),
            ..Default::default()
        };
        let d = "table=382 reachable=250 filtered=115 skipped=17";
        let r = surface_row(&info("runsc", "user-space-kernel", None), &s, Some(d), None);
        assert_eq!(r.host_syscalls_reachable, Some(0));
        assert!(r.host_syscalls_source.contains("reached 250 of 382"), "{}", r.host_syscalls_source);
        assert_eq!(r.user_kernel_syscalls_implemented, Some(321));
        assert_eq!((r.vmm_source.as_str(), r.instance_seccomp.as_str()), ("runsc help syscalls", "not applied"));
        assert_eq!((r.supervisor_syscalls_allowed, r.supervisor_source.as_str()), (Some(80), "Sentry filter"));
    }

    #[test]
    fn declared_layers_are_copied_with_their_lists() {
        let s = BackendSurface {
            profile: "p".into(),
            seccomp_profile: Some(SeccompProfileInfo {
                path: "/usr/share/containers/seccomp.json".into(),
                sha256: "ab".into(),
                syscalls_allowed: 370,
                unknown_names_skipped: vec!["foo".into()],
            }),
            vmm: Some(VmmSurfaceInfo {
                exit_kinds: vec!["IoIn".into(), "Hlt".into()],
                device_models: None,
                io_ports: vec![(0x3f8, 0x3ff)],
                mmio_ranges: vec![],
                syscalls_allowed: 40,
                source: None,
            }),
            supervisor_syscalls_allowed: Some(40),
            supervisor_note: "VMM".into(),
            user_kernel: None,
        };
        let r = surface_row(&info("microvm", "microvm", Some("bare")), &s, None, None);
        assert_eq!(r.instance_seccomp_allowed, Some(370));
        assert!(
            r.instance_seccomp.contains("sha256 ab") && r.instance_seccomp.contains("1 unknown names skipped: foo")
        );
        assert_eq!((r.vmm_exit_kinds, r.vmm_io_port_ranges, r.vmm_mmio_ranges), (Some(2), Some(1), Some(0)));
        assert_eq!(r.vmm_device_models, None);
        assert!(r.vmm_source.contains("0x3f8-0x3ff"));
        // A VMM measured by its device models (QEMU) fills that column, not the exit kinds.
        let mut q = s.clone();
        q.vmm.as_mut().unwrap().device_models = Some(vec!["isa-serial".into(), "virtio-mmio".into(), "ioapic".into()]);
        q.vmm.as_mut().unwrap().exit_kinds = Vec::new();
        let r = surface_row(&info("qemu-tcg", "microvm", Some("linux")), &q, None, None);
        assert_eq!((r.vmm_exit_kinds, r.vmm_device_models), (None, Some(3)));
        assert_eq!(
            (r.supervisor_syscalls_allowed, r.supervisor_source.as_str(), r.profile.as_str()),
            (Some(40), "VMM", "p")
        );
    }

    #[test]
    fn unfiltered_is_the_whole_table() {
        assert!(unfiltered_syscalls() > 350, "x86_64 has ~380 system calls");
        let s = BackendSurface { seccomp_profile: Some(SeccompProfileInfo::unfiltered()), ..Default::default() };
        let r = surface_row(&info("process", "process", None), &s, None, None);
        assert_eq!(r.instance_seccomp_allowed, Some(unfiltered_syscalls()));
        assert!(r.instance_seccomp.starts_with("unfiltered"));
        assert!(unfiltered_note("vmct").contains(&unfiltered_syscalls().to_string()));
    }

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
        assert_eq!(s.supervisor_syscalls_allowed, Some(unfiltered_syscalls()));
    }
}
