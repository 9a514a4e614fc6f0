//! Transfer marks (issue 15 item 5): whether a figure measured on this host transfers to a host with
//! hardware virtualisation (VT-x/AMD-V) running the deployed model.
//!
//! The rule, by what the figure measures ([`Quantity`]) and how the backend ran ([`BackendInfo`], the
//! host's [`KvmFlavour`]):
//! - processes, containers and user-space kernels run natively on the host kernel: their figures
//!   transfer (to a host of the same kernel and load);
//! - the bare guest (no OS, Hyperlight-like) describes the bare model only: every figure of it is
//!   [`Transfer::BareModelOnly`], never a stand-in for a Linux-guest microVM;
//! - a Linux guest under QEMU TCG (emulated CPU): its time and CPU figures are emulation-bound
//!   ([`Transfer::EmulatedCpu`]) and its host memory includes the emulator's translation cache, no VMM's;
//!   what the guest itself holds or exposes (guest memory, kernel objects, attack surface, probe outcomes,
//!   crash containment, saved-state size) transfers;
//! - a Linux guest under our KVM VMM transfers on VT-x/AMD-V; on kvm_pvm its time figures do not
//!   (guest kernel code is interpreted, ../shared/HOST-NOTES.md: [`Transfer::InterpretedGuestKernel`]).
use crate::env::KvmFlavour;
use crate::rundir::BackendInfo;
use crate::vocab::{GuestModel, IsolationModel};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a figure measures, as far as transfer is concerned. Every figure of every experiment maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantity {
    /// Wall-clock launch times (launch-to-ready, phases, cold/sequential/concurrent).
    Startup,
    /// Workload throughput and overhead ratios (cpu, syscall, io scenarios).
    Throughput,
    /// Host CPU an idle instance costs.
    IdleCpu,
    /// A neighbour's slowdown next to a hog (blast radius).
    Slowdown,
    /// Time to save or restore state (snapshot, commit).
    SaveTime,
    /// Host memory per instance, including the VMM's or emulator's own.
    HostMemory,
    /// Memory the guest itself touches (guest RAM, guest kernel footprint).
    GuestMemory,
    /// Kernel objects per instance (namespaces, cgroups, file descriptors, threads).
    KernelObjects,
    /// Attack surface: host syscalls reachable, VM exit kinds, device models, confinement of the VMM.
    AttackSurface,
    /// Isolation probe outcomes.
    ProbeOutcome,
    /// Instances surviving a kernel crash (crash containment).
    CrashContainment,
    /// Size of saved state.
    SaveSize,
}

impl Quantity {
    /// Every quantity.
    pub const ALL: &'static [Quantity] = &[
        Quantity::Startup,
        Quantity::Throughput,
        Quantity::IdleCpu,
        Quantity::Slowdown,
        Quantity::SaveTime,
        Quantity::HostMemory,
        Quantity::GuestMemory,
        Quantity::KernelObjects,
        Quantity::AttackSurface,
        Quantity::ProbeOutcome,
        Quantity::CrashContainment,
        Quantity::SaveSize,
    ];

    /// Whether the figure is a time or CPU figure (bound to how the guest CPU runs).
    pub fn is_time_or_cpu(self) -> bool {
        matches!(
            self,
            Quantity::Startup | Quantity::Throughput | Quantity::IdleCpu | Quantity::Slowdown | Quantity::SaveTime
        )
    }
}

/// Whether a figure transfers to a VT-x/AMD-V host running the deployed model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transfer {
    /// Transfers as measured.
    Transfers,
    /// Describes the bare (no-OS, Hyperlight-like) guest model only, not a Linux-guest microVM.
    BareModelOnly,
    /// Does not transfer: the guest CPU was emulated (QEMU TCG).
    EmulatedCpu,
    /// Does not transfer: KVM here interprets guest kernel code (kvm_pvm).
    InterpretedGuestKernel,
}

impl Transfer {
    /// Whether verdicts and the planner may use the figure for the deployed model.
    pub fn transfers(self) -> bool {
        self == Transfer::Transfers
    }

    /// The short mark shown beside a figure in the report.
    pub fn mark(self) -> &'static str {
        match self {
            Transfer::Transfers => "transfers",
            Transfer::BareModelOnly => "bare model only",
            Transfer::EmulatedCpu => "emulated: does not transfer",
            Transfer::InterpretedGuestKernel => "interpreted guest kernel: does not transfer",
        }
    }
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mark())
    }
}

/// Whether `quantity`, measured on `backend` on a host whose KVM is `kvm`, transfers (module docs).
pub fn transfer(quantity: Quantity, backend: &BackendInfo, kvm: KvmFlavour) -> Transfer {
    if backend.model != IsolationModel::Microvm && !backend.emulated {
        return Transfer::Transfers;
    }
    if backend.guest_model == Some(GuestModel::Bare) {
        return Transfer::BareModelOnly;
    }
    if backend.emulated {
        return if quantity.is_time_or_cpu() || quantity == Quantity::HostMemory {
            Transfer::EmulatedCpu
        } else {
            Transfer::Transfers
        };
    }
    if quantity.is_time_or_cpu() && !kvm.runs_linux_guest() {
        return Transfer::InterpretedGuestKernel;
    }
    Transfer::Transfers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BackendKind;

    fn backend(model: IsolationModel, guest: Option<GuestModel>, emulated: bool) -> BackendInfo {
        BackendInfo {
            name: "x".into(),
            kind: BackendKind::Ours,
            model,
            guest_model: guest,
            available: true,
            reason: None,
            version: None,
            emulated,
            isolation: None,
        }
    }

    #[test]
    fn emulated_linux_guest_keeps_structural_figures_only() {
        let tcg = backend(IsolationModel::Microvm, Some(GuestModel::Linux), true);
        assert_eq!(transfer(Quantity::Startup, &tcg, KvmFlavour::KvmIntel), Transfer::EmulatedCpu);
        assert_eq!(transfer(Quantity::HostMemory, &tcg, KvmFlavour::KvmPvm), Transfer::EmulatedCpu);
        for q in [Quantity::GuestMemory, Quantity::KernelObjects, Quantity::AttackSurface, Quantity::CrashContainment] {
            assert_eq!(transfer(q, &tcg, KvmFlavour::KvmPvm), Transfer::Transfers, "{q:?}");
        }
    }

    #[test]
    fn bare_guest_is_its_own_model_and_native_models_transfer() {
        let bare = backend(IsolationModel::Microvm, Some(GuestModel::Bare), false);
        let ct = backend(IsolationModel::Container, None, false);
        for q in Quantity::ALL {
            assert_eq!(transfer(*q, &bare, KvmFlavour::KvmIntel), Transfer::BareModelOnly);
            assert!(transfer(*q, &ct, KvmFlavour::KvmPvm).transfers());
        }
    }

    #[test]
    fn linux_guest_under_kvm_transfers_only_with_hardware_virtualisation() {
        let linux = backend(IsolationModel::Microvm, Some(GuestModel::Linux), false);
        assert_eq!(transfer(Quantity::Startup, &linux, KvmFlavour::KvmPvm), Transfer::InterpretedGuestKernel);
        assert_eq!(transfer(Quantity::HostMemory, &linux, KvmFlavour::KvmPvm), Transfer::Transfers);
        assert!(transfer(Quantity::Startup, &linux, KvmFlavour::KvmAmd).transfers());
    }
}
