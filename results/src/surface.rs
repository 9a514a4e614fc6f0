//! `attack_surface.csv`: the attack surface of each backend in three layers (issue 13), written by the
//! isolation experiment and copied into run.json next to the backend's info.
//!
//! | layer | what | unit | from |
//! |---|---|---|---|
//! | (a) | host-kernel system calls the instance reaches directly | system calls | the `census.syscalls` probe of the same run (measured), or 0 by construction for a VM guest |
//! | (b) | VM exit kinds, I/O port ranges and MMIO ranges the VMM handles for the guest; for a user-space kernel (runsc), the system calls its Sentry implements | kinds, ranges, system calls | the VMM's declared surface (microVMs); `runsc help syscalls` (runsc) |
//! | (c) | host system calls the VMM or runtime process can still make after its confinement | system calls | measured from the live process's seccomp filters, every thread, with zero arguments (harness `backend::confinement`); else declared (its allowlist's size, or the whole table when unfiltered); the source says which |
//!
//! `None` in a count means "not declared" (the backend does not say), never zero.
use serde::{Deserialize, Serialize};

/// The attack surface of one backend in one run. Counts are numbers of system calls, exit kinds or
/// address ranges as the field name says; every group carries a `*_source` saying where it came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttackSurfaceRow {
    /// Backend name.
    pub backend: String,
    /// Isolation model (`process`, `container`, `microvm`, `user-space-kernel`), from the backend's info.
    pub model: crate::vocab::IsolationModel,
    /// The isolation profile the backend declares it ran (devices, masked paths, seccomp, confinement).
    pub profile: String,
    /// (a) Entries of the x86_64 system call table the census probed against.
    pub host_syscalls_table: Option<u32>,
    /// (a) Host-kernel system calls the instance reaches directly (0 by construction for a VM guest).
    pub host_syscalls_reachable: Option<u32>,
    /// (a) Calls refused with EPERM/ENOSYS or a seccomp kill: filtered, or not built into the kernel.
    pub host_syscalls_refused: Option<u32>,
    /// (a) Of the refused calls, those the process baseline's census of the same run reached: what the
    /// isolation filtered (None without a baseline census).
    pub host_syscalls_filtered: Option<u32>,
    /// (a) Calls the census never makes (they end, fork or block whatever their arguments).
    pub host_syscalls_skipped: Option<u32>,
    /// (a) Where the layer (a) figures come from.
    pub host_syscalls_source: String,
    /// The instance's seccomp filter: allowed system calls (the whole table when unfiltered).
    pub instance_seccomp_allowed: Option<u32>,
    /// The instance's seccomp filter: `unfiltered`, or the profile file with its sha256.
    pub instance_seccomp: String,
    /// (b) VM exit kinds the VMM handles for the guest.
    pub vmm_exit_kinds: Option<u32>,
    /// (b) I/O port ranges the VMM handles.
    pub vmm_io_port_ranges: Option<u32>,
    /// (b) MMIO ranges the VMM handles.
    pub vmm_mmio_ranges: Option<u32>,
    /// (b) The lists behind the counts (exit kinds; ports and MMIO ranges in hex), or why absent.
    pub vmm_source: String,
    /// (c) Host system calls the supervising VMM or runtime process may make after its confinement.
    pub supervisor_syscalls_allowed: Option<u32>,
    /// (c) Which process that is and how it is confined.
    pub supervisor_source: String,
    /// (b) For a user-space kernel (gVisor's Sentry): the system calls it implements for the workload
    /// (`vmm_source` says where from). Absent in files written before it existed.
    #[serde(default)]
    pub user_kernel_syscalls_implemented: Option<u32>,
    /// (b) For a VMM measured by its device models rather than its exit handling (QEMU: its `info qtree`
    /// devices; under TCG there are no VM exits at all): how many device models the guest's accesses
    /// reach; `vmm_exit_kinds` is then empty. Absent in files written before it existed.
    #[serde(default)]
    pub vmm_device_models: Option<u32>,
}
impl crate::records::Record for AttackSurfaceRow {
    const FILE: &'static str = "attack_surface.csv";
}
