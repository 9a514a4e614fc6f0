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
//!   what the guest itself holds or exposes (guest memory, kernel objects, the attack surface it reaches
//!   directly, probe outcomes, crash containment, saved-state size) transfers; the VMM's side of the
//!   attack surface (its exits, devices and confinement) is the emulator's, standing in for the deployed
//!   model's VMM ([`Transfer::StandInVmm`]);
//! - a Linux guest under our KVM VMM transfers on VT-x/AMD-V; on kvm_pvm its time figures do not
//!   (guest kernel code is interpreted, ../shared/HOST-NOTES.md: [`Transfer::InterpretedGuestKernel`]).
//!
//! Which quantities each experiment's figures measure is one table, [`experiment_quantities`] (an
//! exhaustive `match`: a new experiment does not compile without its quantities); run.json records the
//! mark of every (backend, quantity) the run measured ([`TransferMark`], [`marks`]).
use crate::env::KvmFlavour;
use crate::experiment::ExperimentId;
use crate::rundir::{BackendInfo, RunMeta};
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
    /// Attack surface the instance reaches directly: host syscalls reachable from inside (layer a of
    /// `attack_surface.csv`).
    AttackSurface,
    /// The VMM's side of the attack surface: the exits and devices it handles for the guest and the host
    /// syscalls its confinement still allows (layers b and c): a property of the VMM that ran.
    VmmSurface,
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
        Quantity::VmmSurface,
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
    /// Does not transfer: describes the VMM standing in for the deployed model's (QEMU under TCG for the
    /// linux guest on a host where our VMM cannot run it), not the deployed model's VMM.
    StandInVmm,
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
            Transfer::StandInVmm => "stand-in VMM: does not transfer",
        }
    }
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mark())
    }
}

/// The quantities an experiment's figures measure, its main figure's first (the one the comparison
/// pages show). Every CSV column an experiment writes is one of these:
/// - startup: launch-to-ready, phases, launch rate (`startup*.csv`);
/// - overhead: workload throughput and ratios to the process baseline (`overhead.csv`);
/// - density: host memory per instance (slope, instances per GiB, VMM/emulator overhead), guest RAM
///   touched, slab (kernel objects) per instance, launch latency at depth and teardown (startup);
/// - isolation: probe outcomes (`isolation.csv`), attack surface (`attack_surface.csv`), victim
///   slowdown next to a neighbour (`blast.csv`);
/// - snapshot: save time, saved bytes, restore-to-ready and cold start (startup);
/// - crosscheck: the peer CLI's own whole-process run and vmct's clocks (startup).
pub fn experiment_quantities(e: ExperimentId) -> &'static [Quantity] {
    use Quantity as Q;
    match e {
        ExperimentId::Startup => &[Q::Startup],
        ExperimentId::Overhead => &[Q::Throughput],
        ExperimentId::Density => {
            &[Q::HostMemory, Q::GuestMemory, Q::KernelObjects, Q::Startup, Q::IdleCpu, Q::Throughput]
        }
        ExperimentId::Isolation => &[Q::ProbeOutcome, Q::AttackSurface, Q::VmmSurface, Q::Slowdown],
        ExperimentId::Snapshot => &[Q::SaveTime, Q::SaveSize, Q::Startup],
        ExperimentId::CrossCheck => &[Q::Startup],
        ExperimentId::Crash => &[Q::CrashContainment, Q::Slowdown],
        ExperimentId::Memory => &[Q::HostMemory, Q::IdleCpu],
    }
}

/// The transfer mark of one (backend, quantity) a run measured, as run.json records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferMark {
    /// Backend name, as in run.json's `backends`.
    pub backend: String,
    /// What the figures measure.
    pub quantity: Quantity,
    /// Whether they transfer to a VT-x/AMD-V host running the deployed model.
    pub transfer: Transfer,
}

/// The marks of every (backend, quantity) `meta`'s run measured: each backend that ran, times the
/// quantities of each experiment of its plan ([`experiment_quantities`]; words naming no experiment,
/// such as older files' `blast`, map to the experiment that now writes their CSV or are skipped), in
/// backend then quantity order, without repeats.
pub fn marks(meta: &RunMeta) -> Vec<TransferMark> {
    let mut quantities: Vec<Quantity> = Vec::new();
    for word in &meta.plan.experiments {
        let id = if word == "blast" { Ok(ExperimentId::Isolation) } else { word.parse::<ExperimentId>() };
        for q in id.map(experiment_quantities).unwrap_or_default() {
            if !quantities.contains(q) {
                quantities.push(*q);
            }
        }
    }
    quantities.sort_by_key(|q| Quantity::ALL.iter().position(|x| x == q));
    let mut out = Vec::new();
    for b in meta.backends.iter().filter(|b| b.available) {
        for &q in &quantities {
            out.push(TransferMark { backend: b.name.clone(), quantity: q, transfer: transfer(q, b, meta.host.kvm) });
        }
    }
    out
}

/// The mark of `quantity` on `backend` in `meta`'s run: run.json's recorded mark when it has one, else
/// the rule applied to the backend's info and the host's KVM (run.json files written before the marks
/// were recorded); a backend run.json does not list is taken as native ([`Transfer::Transfers`]).
pub fn mark_of(meta: &RunMeta, backend: &str, quantity: Quantity) -> Transfer {
    if let Some(m) = meta.transfer.iter().find(|m| m.backend == backend && m.quantity == quantity) {
        return m.transfer;
    }
    match meta.backends.iter().find(|b| b.name == backend) {
        Some(b) => transfer(quantity, b, meta.host.kvm),
        None => Transfer::Transfers,
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
        } else if quantity == Quantity::VmmSurface {
            Transfer::StandInVmm
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

    /// Every experiment names its quantities, and every quantity some experiment measures is one a
    /// figure can carry (the crash-containment experiment adds [`Quantity::CrashContainment`]).
    #[test]
    fn every_experiment_has_its_quantities() {
        for &e in ExperimentId::ALL {
            let qs = experiment_quantities(e);
            assert!(!qs.is_empty(), "{e} has no quantities");
            for q in qs {
                assert!(Quantity::ALL.contains(q), "{e}: {q:?} not in Quantity::ALL");
            }
        }
    }

    fn meta_with(backends: Vec<BackendInfo>, kvm: KvmFlavour, experiments: &[&str]) -> RunMeta {
        let mut host = crate::env::HostEnv::capture();
        host.kvm = kvm;
        RunMeta {
            schema_version: crate::rundir::SCHEMA_VERSION,
            id: "t".into(),
            started_unix_s: 0.0,
            finished_unix_s: 0.0,
            vmct_version: "0".into(),
            git_commit: None,
            command: Vec::new(),
            plan: crate::rundir::Plan {
                experiments: experiments.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            host,
            backends,
            attack_surface: Vec::new(),
            transfer: Vec::new(),
            wall_times: Vec::new(),
            caveats: Vec::new(),
            load_before: crate::env::LoadSnapshot::capture(),
            load_after: None,
            harness_timestamp_cost_s: None,
            full_plan: None,
        }
    }

    /// run.json's marks cover every (backend that ran, quantity of a planned experiment), by the rule;
    /// an old file without them gets the same marks from the rule.
    #[test]
    fn marks_cover_every_backend_and_quantity_the_run_measured() {
        let mut tcg = backend(IsolationModel::Microvm, Some(GuestModel::Linux), true);
        tcg.name = "qemu-tcg".into();
        let mut ct = backend(IsolationModel::Container, None, false);
        ct.name = "container".into();
        let mut gone = backend(IsolationModel::Microvm, Some(GuestModel::Linux), false);
        (gone.name, gone.available) = ("microvm-linux".into(), false);
        let mut m = meta_with(vec![tcg, ct, gone], KvmFlavour::KvmPvm, &["startup", "blast", "bogus"]);
        let marks = marks(&m);
        let want = [
            Quantity::Startup,
            Quantity::AttackSurface,
            Quantity::VmmSurface,
            Quantity::ProbeOutcome,
            Quantity::Slowdown,
        ];
        assert_eq!(marks.len(), 2 * want.len(), "{marks:?}");
        for q in want {
            for b in ["qemu-tcg", "container"] {
                assert!(marks.iter().any(|x| x.backend == b && x.quantity == q), "{b} {q:?} in {marks:?}");
            }
        }
        let of = |b: &str, q| marks.iter().find(|x| x.backend == b && x.quantity == q).unwrap().transfer;
        assert_eq!(of("qemu-tcg", Quantity::Startup), Transfer::EmulatedCpu);
        assert_eq!(of("qemu-tcg", Quantity::AttackSurface), Transfer::Transfers);
        assert!(!marks.iter().any(|x| x.backend == "microvm-linux"), "a backend that did not run has no marks");
        assert_eq!(mark_of(&m, "qemu-tcg", Quantity::Startup), Transfer::EmulatedCpu, "old file: from the rule");
        m.transfer = marks.clone();
        m.transfer[0].transfer = Transfer::Transfers;
        let first = &m.transfer[0];
        assert_eq!(mark_of(&m, &first.backend, first.quantity), Transfer::Transfers, "the recorded mark wins");
        assert_eq!(mark_of(&m, "unlisted", Quantity::Startup), Transfer::Transfers);
    }

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
        // QEMU's exits, devices and seccomp filter are the stand-in's, not the deployed VMM's.
        assert_eq!(transfer(Quantity::VmmSurface, &tcg, KvmFlavour::KvmPvm), Transfer::StandInVmm);
        let qemu_kvm = backend(IsolationModel::Microvm, Some(GuestModel::Linux), false);
        assert_eq!(transfer(Quantity::VmmSurface, &qemu_kvm, KvmFlavour::KvmIntel), Transfer::Transfers);
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
