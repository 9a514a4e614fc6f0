//! The figures the capacity planner plans with ([`crate::planner`]), for one configuration pair, each with its
//! value, unit, sample count, the run, host and backend it came from, and its transfer mark
//! ([`results::transfer`]).
//!
//! [`PlanFigures::from_runs`] is the ONE place that reads them from runs: the primary run first, then every
//! merged run (`vmct plan --merge`), the first usable figure wins. For the Linux-guest VM side a figure of the
//! pair's own backend comes first; when that backend is a stand-in whose figure does not transfer (qemu-tcg,
//! emulated), a merged run's non-emulated Linux guest (`microvm-linux` on a VT-x host) fills it. A figure that
//! exists but does not transfer is kept (so the planner can say why it is not used) only when no usable one
//! exists.
//!
//! Idle CPU (`idle_cpu.csv`, density sweep), memory give-back (`memory_giveback.csv`), KSM (`ksm.csv`, both
//! of the memory experiment) and host limits (the density stop reason) come from their CSVs through
//! [`idle_cpu_of`], [`give_back_of`], [`ksm_of`], page-cache sharing (`page_cache.csv`, memory experiment)
//! through [`page_cache_of`] (rows with figures only: the bare guest's "not measured" row has none).
use crate::data::{Model, RunData};
use crate::pair::ConfigPair;
use crate::validity;
use results::transfer::{transfer, Quantity, Transfer};
use results::{BackendInfo, BackendKind, Record};
use serde::Serialize;
use std::fmt;

/// Where a figure came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// Run id.
    pub run: String,
    /// Host label of that run ("name (N cores, X GiB)").
    pub host: String,
    /// KVM flavour of that host (`kvm_intel`, `kvm_pvm`, ...).
    pub kvm: String,
    /// Backend measured.
    pub backend: String,
    /// CSV file of the run the figure is read from.
    pub file: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of run {} on {}, {}", self.backend, self.run, self.host, self.kvm)
    }
}

/// A figure with its unit, sample count, source and transfer mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    /// The value (its fields say their units).
    pub value: T,
    /// Unit of the main value, as shown.
    pub unit: &'static str,
    /// Samples behind the value (launches, fitted density steps, instances measured, runs).
    pub n: u32,
    /// Where it was measured.
    pub source: Source,
    /// Whether it transfers to a VT-x/AMD-V host running the deployed model.
    pub transfer: Transfer,
}

impl<T> Sourced<T> {
    /// Whether the planner may use the figure for a side of model `side`: it transfers, or it describes the bare
    /// model and the side IS the bare model.
    pub fn usable_for(&self, side: Model) -> bool {
        self.transfer.transfers() || (self.transfer == Transfer::BareModelOnly && side == Model::MicrovmBare)
    }

    /// "n = 20, microvm of run X on host (2 cores, 24 GiB), kvm_pvm, startup_summary.csv; bare model only".
    pub fn cite(&self) -> String {
        format!("n = {}, {}, {}; {}", self.n, self.source, self.source.file, self.transfer.mark())
    }
}

/// A memory figure measured while each instance held a working set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeldMemory {
    /// Bytes per instance.
    pub bytes: f64,
    /// Working set each instance held during the measurement, bytes (included in `bytes`).
    pub held_bytes: f64,
    /// r² of the density fit the figure comes from (None: not a fitted figure).
    pub fit_r2: Option<f64>,
}

/// Growth of launch-to-ready with instances alive ([`crate::density_latency`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LaunchGrowth {
    /// Milliseconds of launch-to-ready per 1000 instances alive.
    pub ms_per_1000: f64,
    /// Most instances alive before a measured launch.
    pub max_alive: u32,
}

/// Page-cache sharing of one model (page_cache.csv), per byte of the files all instances read. Split so a
/// plan at any density counts the shared copy once: a row measured at N = 4 says 16 MiB per container for
/// a 64 MiB set, of which 16 MiB is a quarter of the one shared copy; at 1000 containers it is 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PageCacheShare {
    /// Host bytes each instance holds privately per byte of files (its own copy, its growth).
    pub private_per_byte: f64,
    /// Host bytes held once per host per byte of files (the shared host page cache).
    pub shared_per_byte: f64,
}

/// KSM's effect on one model (ksm.csv).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsmSaving {
    /// Host memory KSM saved per instance, bytes.
    pub saved_bytes_per_instance: f64,
    /// CPU ksmd spent while the instances were merged, cores (CPU seconds per second of the window). Its
    /// cost follows the scan rate the experiment set (pages_to_scan, sleep_millisecs in run.json's plan),
    /// not the number of instances: dividing it by the instances measured and scaling it to thousands
    /// would invent a figure.
    pub ksmd_cores: f64,
}

/// A host limit that stopped a density sweep (pids, open files, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLimit {
    /// The limit's name and value as recorded ("pids.max of the parent cgroup at 4096").
    pub name: String,
    /// Instances alive when it stopped the sweep.
    pub instances: u64,
}

/// The figures of one side of the pair. `None`: not measured in any run given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideFigures {
    /// Backend name (the pair's).
    pub backend: String,
    /// Its model.
    #[serde(skip)]
    pub model: Model,
    /// Host memory per instance from the density sweep's slope (density_summary.csv), bytes.
    pub density_slope: Option<Sourced<HeldMemory>>,
    /// Guest RAM the guest touched per instance (microVMs; density_summary.csv `guest_mem_bytes`), bytes.
    pub guest_ram: Option<Sourced<HeldMemory>>,
    /// The VMM's (or emulator's) own host memory per instance beyond guest RAM, bytes.
    pub vmm_overhead: Option<Sourced<f64>>,
    /// Linux-guest side only: our VMM's overhead measured with the bare guest (same VMM binary, under KVM),
    /// used only in a labelled composition when the Linux guest's own VMM overhead does not transfer, bytes.
    pub bare_vmm_overhead: Option<Sourced<f64>>,
    /// p99 launch-to-ready on a nearly empty host (startup_summary.csv, sequential), seconds.
    pub startup_p99: Option<Sourced<f64>>,
    /// Launch-to-ready growth with instances alive (density.csv).
    pub launch_growth: Option<Sourced<LaunchGrowth>>,
    /// CPU-scenario time vs the process baseline (overhead.csv, median ratio; > 1 is slower).
    pub cpu_ratio: Option<Sourced<f64>>,
    /// Host CPU an idle instance costs, cores (CPU seconds per instance per second; idle_cpu.csv).
    pub idle_cpu: Option<Sourced<f64>>,
    /// Fraction of a working-set burst still held 60 s after it was freed (memory_giveback.csv), 0 to 1.
    pub give_back: Option<Sourced<f64>>,
    /// What files all instances read cost the host (page_cache.csv), per byte of files: a private part per
    /// instance (near 1 when every instance caches its own copy, a VM) and a part held once per host
    /// whatever the count (the shared page cache of containers).
    pub page_cache: Option<Sourced<PageCacheShare>>,
    /// KSM savings and cost (ksm.csv).
    pub ksm: Option<Sourced<KsmSaving>>,
    /// A host limit that stopped the density sweep.
    pub host_limit: Option<Sourced<HostLimit>>,
    /// Figures that exist but were refused as impossible values: (figure name as the planner says it, why).
    pub refused: Vec<(String, String)>,
}

impl SideFigures {
    /// A side with no figures.
    pub fn empty(backend: &str, model: Model) -> SideFigures {
        SideFigures {
            backend: backend.into(),
            model,
            density_slope: None,
            guest_ram: None,
            vmm_overhead: None,
            bare_vmm_overhead: None,
            startup_p99: None,
            launch_growth: None,
            cpu_ratio: None,
            idle_cpu: None,
            give_back: None,
            page_cache: None,
            ksm: None,
            host_limit: None,
            refused: Vec::new(),
        }
    }
}

/// Every figure the planner uses, for the container side and the VM side of one pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanFigures {
    /// The container configuration's figures.
    pub container: SideFigures,
    /// The VM configuration's figures.
    pub vm: SideFigures,
}

impl PlanFigures {
    /// Every refused figure of both sides, "backend: figure why".
    pub fn refused(&self) -> Vec<String> {
        [&self.container, &self.vm]
            .iter()
            .flat_map(|s| s.refused.iter().map(move |(what, why)| format!("{}: {what} {why}", s.backend)))
            .collect()
    }
}

/// The transfer mark of `q` for `backend` of `run`; a backend missing from run.json is judged by its model.
fn mark(run: &RunData, backend: &str, q: Quantity) -> Transfer {
    let info = run.meta.backends.iter().find(|b| b.name == backend).cloned().unwrap_or_else(|| {
        let (model, guest) = match run.model(backend) {
            Model::MicrovmBare => (results::IsolationModel::Microvm, Some(results::GuestModel::Bare)),
            Model::MicrovmLinux => (results::IsolationModel::Microvm, Some(results::GuestModel::Linux)),
            Model::Process => (results::IsolationModel::Process, None),
            Model::UserSpaceKernel => (results::IsolationModel::UserSpaceKernel, None),
            Model::Container => (results::IsolationModel::Container, None),
        };
        BackendInfo {
            name: backend.into(),
            kind: BackendKind::Ours,
            model,
            guest_model: guest,
            available: true,
            reason: None,
            version: None,
            emulated: false,
            isolation: None,
        }
    });
    transfer(q, &info, run.meta.host.kvm)
}

/// One run's backend, as a place figures are read from.
struct At<'a> {
    run: &'a RunData,
    backend: String,
}

impl At<'_> {
    fn sourced<T>(&self, value: T, unit: &'static str, n: u32, file: &str, q: Quantity) -> Sourced<T> {
        Sourced {
            value,
            unit,
            n,
            source: Source {
                run: self.run.meta.id.clone(),
                host: self.run.host_label(),
                kvm: self.run.meta.host.kvm.as_str().to_string(),
                backend: self.backend.clone(),
                file: file.to_string(),
            },
            transfer: mark(self.run, &self.backend, q),
        }
    }
}

/// The first figure usable for a side of `model` among `places`, else the first one found (kept so the
/// planner can say why it is not used).
fn first<T>(places: &[At<'_>], model: Model, get: impl Fn(&At<'_>) -> Option<Sourced<T>>) -> Option<Sourced<T>> {
    let found: Vec<Sourced<T>> = places.iter().filter_map(get).collect();
    let pos = found.iter().position(|s| s.usable_for(model)).unwrap_or(0);
    found.into_iter().nth(pos)
}

/// Median idle CPU per instance from `(instances alive, cpu_s_per_instance_per_s)` rows of one backend: the
/// row at the highest density (the closest to a full host). Returns (cores per instance, instances alive).
pub fn idle_cpu_of(rows: impl IntoIterator<Item = (u32, f64)>) -> Option<(f64, u32)> {
    rows.into_iter().filter(|(_, c)| c.is_finite() && *c >= 0.0).max_by_key(|(n, _)| *n).map(|(n, c)| (c, n))
}

/// Fraction of a burst still held after it was freed, from `(instances, burst_bytes, held_before, held_after)`
/// rows (per instance, host view): median over rows of (after − before) / burst, clamped to 0..=1. Returns
/// (fraction, instances over all rows).
pub fn give_back_of(rows: impl IntoIterator<Item = (u32, u64, u64, u64)>) -> Option<(f64, u32)> {
    let mut n = 0u32;
    let fr: Vec<f64> = rows
        .into_iter()
        .filter(|r| r.1 > 0)
        .map(|(i, burst, before, after)| {
            n = n.saturating_add(i);
            ((after as f64 - before as f64) / burst as f64).clamp(0.0, 1.0)
        })
        .collect();
    (!fr.is_empty()).then(|| (results::stats::median(&fr), n))
}

/// Page-cache sharing per byte of files, from `(instances, file_bytes, private_bytes_per_instance,
/// shared_host_cache_bytes)` rows: the row with the most instances. Returns (share, instances).
pub fn page_cache_of(rows: impl IntoIterator<Item = (u32, u64, f64, u64)>) -> Option<(PageCacheShare, u32)> {
    rows.into_iter().filter(|r| r.1 > 0 && r.2.is_finite()).max_by_key(|r| r.0).map(|(n, file, private, shared)| {
        let file = file as f64;
        (PageCacheShare { private_per_byte: (private / file).max(0.0), shared_per_byte: shared as f64 / file }, n)
    })
}

/// KSM savings from `(instances, saved_bytes_per_instance, ksm_cpu_s, window_s)` rows: the row with the most
/// instances. Returns (saving, instances).
pub fn ksm_of(rows: impl IntoIterator<Item = (u32, f64, f64, f64)>) -> Option<(KsmSaving, u32)> {
    rows.into_iter()
        .filter(|r| r.0 > 0 && r.3 > 0.0 && r.1.is_finite())
        .max_by_key(|r| r.0)
        .map(|(n, saved, cpu, window)| (KsmSaving { saved_bytes_per_instance: saved, ksmd_cores: cpu / window }, n))
}

fn side(places: &[At<'_>], backend: &str, model: Model, bare: &[At<'_>]) -> SideFigures {
    let mut refused = Vec::new();
    let fit_of = |a: &At<'_>| a.run.density_fit.iter().flatten().find(|f| f.backend == a.backend).cloned();
    let dfile = results::DensityFit::FILE;
    for a in places {
        if let Some(f) = fit_of(a) {
            if let Err(flaw) = validity::density_slope(&f).check() {
                refused.push((
                    "density slope".into(),
                    format!("{}: cannot plan memory", flaw.describe(crate::units::fmt_bytes)),
                ));
            }
        }
        if let Some(s) = a.run.startup_of(&a.backend) {
            if let Err(flaw) = validity::startup_p99(s).check() {
                refused.push((
                    "p99 startup".into(),
                    format!("{}: not judged against the SLO", flaw.describe(crate::units::fmt_secs)),
                ));
            }
        }
    }
    let held = |f: &results::DensityFit| (f.hold_mib << 20) as f64;
    let vmm = |a: &At<'_>| {
        let f = fit_of(a)?;
        let v = f.vmm_overhead_bytes.filter(|v| v.is_finite() && *v >= 0.0)?;
        Some(a.sourced(v, "B", f.instances, dfile, Quantity::HostMemory))
    };
    SideFigures {
        backend: backend.into(),
        model,
        density_slope: first(places, model, |a| {
            let f = fit_of(a)?;
            let v = validity::density_slope(&f).check().ok()?;
            let n = validity::fitted_steps(&f);
            let m = HeldMemory { bytes: v, held_bytes: held(&f), fit_r2: Some(f.r2) };
            Some(a.sourced(m, "B", n, dfile, Quantity::HostMemory))
        }),
        guest_ram: first(places, model, |a| {
            let f = fit_of(a)?;
            let v = f.guest_mem_bytes.filter(|v| v.is_finite() && *v > 0.0)?;
            Some(a.sourced(
                HeldMemory { bytes: v, held_bytes: held(&f), fit_r2: None },
                "B",
                f.instances,
                dfile,
                Quantity::GuestMemory,
            ))
        }),
        vmm_overhead: first(places, model, vmm),
        bare_vmm_overhead: (model == Model::MicrovmLinux).then(|| first(bare, Model::MicrovmBare, vmm)).flatten(),
        startup_p99: first(places, model, |a| {
            let s = a.run.startup_of(&a.backend)?;
            let v = validity::startup_p99(s).check().ok()?;
            Some(a.sourced(v, "s", s.n, results::StartupSummary::FILE, Quantity::Startup))
        }),
        launch_growth: first(places, model, |a| {
            let steps = a.run.density.as_deref()?;
            let s = crate::density_latency::slope(steps, &a.backend)?;
            let max_alive =
                steps.iter().filter(|x| x.backend == a.backend).map(|x| x.instances.saturating_sub(1)).max()?;
            let n = u32::try_from(s.n).unwrap_or(u32::MAX);
            let g = LaunchGrowth { ms_per_1000: s.ms_per_1000, max_alive };
            Some(a.sourced(g, "ms/1000 alive", n, results::DensityStep::FILE, Quantity::Startup))
        }),
        cpu_ratio: first(places, model, |a| {
            let rows: Vec<&results::OverheadRow> = a
                .run
                .overhead
                .iter()
                .flatten()
                .filter(|o| o.backend == a.backend && !o.failed && o.scenario == "cpu")
                .filter(|o| !validity::is_check_value(&o.unit))
                .collect();
            let r: Vec<f64> = rows.iter().filter_map(|o| validity::overhead_ratio(o)?.check().ok()).collect();
            let n = rows.iter().map(|o| o.n).min()?;
            (!r.is_empty()).then(|| {
                a.sourced(results::stats::median(&r), "x process", n, results::OverheadRow::FILE, Quantity::Throughput)
            })
        }),
        idle_cpu: first(places, model, |a| {
            let rows = a.run.idle_cpu.iter().flatten().filter(|r| r.backend == a.backend);
            let (cores, alive) = idle_cpu_of(rows.map(|r| (r.alive, r.cpu_s_per_instance_per_s)))?;
            Some(a.sourced(cores, "cores", alive, results::IdleCpuRow::FILE, Quantity::IdleCpu))
        }),
        give_back: first(places, model, |a| {
            let rows = a.run.memory_giveback.iter().flatten().filter(|r| r.backend == a.backend);
            let (held, n) =
                give_back_of(rows.map(|r| (r.instances, r.burst_bytes, r.held_before_bytes, r.held_after_bytes)))?;
            Some(a.sourced(held, "of the burst", n, results::GiveBackRow::FILE, Quantity::HostMemory))
        }),
        page_cache: first(places, model, |a| {
            let rows = a.run.page_cache.iter().flatten().filter(|r| r.backend == a.backend);
            let (share, n) = page_cache_of(rows.filter_map(|r| {
                Some((r.instances, r.file_bytes, r.private_bytes_per_instance?, r.shared_host_cache_bytes?))
            }))?;
            Some(a.sourced(share, "B per B of files", n, results::PageCacheRow::FILE, Quantity::HostMemory))
        }),
        ksm: first(places, model, |a| {
            let rows = a.run.ksm.iter().flatten().filter(|r| r.backend == a.backend);
            let (k, n) = ksm_of(rows.map(|r| (r.instances, r.saved_bytes_per_instance, r.ksm_cpu_s, r.window_s)))?;
            Some(a.sourced(k, "B", n, results::KsmRow::FILE, Quantity::HostMemory))
        }),
        host_limit: first(places, model, |a| {
            let f = fit_of(a)?;
            let results::StopReason::HostLimit { limit, value } = &f.stop_reason.reason else { return None };
            let name = format!("{limit} at {value}");
            let limit = HostLimit { name, instances: u64::from(f.instances) };
            Some(a.sourced(limit, "instances", f.instances, dfile, Quantity::KernelObjects))
        }),
        refused,
    }
}

impl PlanFigures {
    /// Read the pair's figures from `runs` (the primary run first, then merged runs; module docs).
    pub fn from_runs(runs: &[RunData], pair: &ConfigPair) -> PlanFigures {
        let named = |b: &str| -> Vec<At<'_>> {
            runs.iter()
                .filter(|r| r.backends().iter().any(|x| x == b))
                .map(|run| At { run, backend: b.into() })
                .collect()
        };
        let model_of = |b: &str| runs.first().map_or(Model::Container, |r| r.model(b));
        let container = side(&named(&pair.container), &pair.container, model_of(&pair.container), &[]);
        let vm_model = model_of(&pair.vm);
        let mut vm_places = named(&pair.vm);
        let mut bare = Vec::new();
        for run in runs {
            let ours = |b: &String| {
                run.meta.backends.iter().any(|i| &i.name == b && i.kind == BackendKind::Ours && !i.emulated)
            };
            for b in run.backends() {
                let m = run.model(&b);
                if vm_model == Model::MicrovmLinux && m == Model::MicrovmLinux && b != pair.vm && !run.emulated(&b) {
                    vm_places.push(At { run, backend: b.clone() });
                }
                if m == Model::MicrovmBare && ours(&b) {
                    bare.push(At { run, backend: b });
                }
            }
        }
        let vm = side(&vm_places, &pair.vm, vm_model, &bare);
        PlanFigures { container, vm }
    }
}

/// Test runs: the fixture with the Linux guest measured only under QEMU TCG here (its rows added; the run
/// from a VT-x host is `crate::fixture::write_vtx_host`).
#[cfg(test)]
pub(crate) mod test_runs {
    use results::{DensityFit, DensityStep, RunDir, StartupMode, StartupSummary};
    use std::path::Path;

    fn add_backend(rd: &RunDir, like: &str, name: &str, guest: f64, vmm: f64, p99: f64, ms_per_1000: f64) {
        let mut fits: Vec<DensityFit> = rd.read_csv().unwrap();
        let mut f = fits.iter().find(|f| f.backend == like).unwrap().clone();
        (f.backend, f.guest_mem_bytes, f.vmm_overhead_bytes) = (name.into(), Some(guest), Some(vmm));
        fits.push(f);
        rd.write_csv(&fits).unwrap();
        let mut steps: Vec<DensityStep> = rd.read_csv().unwrap();
        let mut more: Vec<DensityStep> = steps.iter().filter(|s| s.backend == like).cloned().collect();
        for s in &mut more {
            s.backend = name.into();
            s.launch_s = p99 / 2.0 + ms_per_1000 / 1e6 * f64::from(s.instances - 1);
        }
        steps.extend(more);
        rd.write_csv(&steps).unwrap();
        let mut st: Vec<StartupSummary> = rd.read_csv().unwrap();
        let mut s = st.iter().find(|s| s.backend == like && s.mode == StartupMode::Sequential).unwrap().clone();
        (s.backend, s.p99_s, s.median_s) = (name.into(), p99, p99 / 2.0);
        st.push(s);
        rd.write_csv(&st).unwrap();
    }

    /// The fixture with `qemu-tcg` (emulated Linux guest): 40 MB guest RAM touched, a 90 MB emulator, 2 s p99.
    pub(crate) fn emulated_here(dir: &Path) -> RunDir {
        let rd = crate::fixture::write_with_emulated_guest(dir).unwrap();
        add_backend(&rd, "microvm", "qemu-tcg", 40e6, 90e6, 2.0, 500.0);
        rd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_aggregations_take_the_fullest_host_and_clamp_fractions() {
        assert_eq!(idle_cpu_of([(10, 0.002), (1000, 0.004), (100, 0.003)]), Some((0.004, 1000)));
        assert_eq!(idle_cpu_of([]), None);
        // 64 MiB burst: one keeps all of it, one gives back half, one frees more than it took (clamped).
        let mib = 1u64 << 20;
        let g = give_back_of([(10, 64 * mib, 0, 64 * mib), (10, 64 * mib, 0, 32 * mib), (5, 64 * mib, 8 * mib, 0)]);
        assert_eq!(g, Some((0.5, 25)));
        let share = |p: f64, s: f64| PageCacheShare { private_per_byte: p, shared_per_byte: s };
        assert_eq!(page_cache_of([(4, 100, 100.0, 0), (16, 100, 2.0, 100)]), Some((share(0.02, 1.0), 16)));
        let (k, n) = ksm_of([(100, 1e6, 5.0, 50.0)]).unwrap();
        assert_eq!(n, 100);
        assert!((k.ksmd_cores - 0.1).abs() < 1e-12 && k.saved_bytes_per_instance == 1e6);
    }

    fn load(rd: &results::RunDir) -> RunData {
        RunData::load(rd).unwrap()
    }

    #[test]
    fn emulated_linux_guest_keeps_its_guest_ram_and_a_vt_x_run_fills_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let run = load(&test_runs::emulated_here(&d.path().join("a")));
        let pair = ConfigPair::parse("container:qemu-tcg", &run).unwrap();
        let f = PlanFigures::from_runs(std::slice::from_ref(&run), &pair);
        let vm = &f.vm;
        assert!(vm.guest_ram.as_ref().unwrap().usable_for(Model::MicrovmLinux));
        let emu = vm.vmm_overhead.as_ref().unwrap();
        assert_eq!((emu.transfer, emu.value), (Transfer::EmulatedCpu, 90e6));
        assert!(!emu.usable_for(Model::MicrovmLinux));
        assert_eq!(vm.startup_p99.as_ref().unwrap().transfer, Transfer::EmulatedCpu);
        let bare = vm.bare_vmm_overhead.as_ref().unwrap();
        assert_eq!((bare.source.backend.as_str(), bare.transfer), ("microvm", Transfer::BareModelOnly));
        assert!(f.container.density_slope.as_ref().unwrap().usable_for(Model::Container));
        assert_eq!(f.container.density_slope.as_ref().unwrap().source.run, "fixture-run");

        // A run from a VT-x host with microvm-linux measured fills the VM side's VMM overhead and startup.
        let vtx = crate::fixture::write_vtx_host(&d.path().join("b")).unwrap();
        let fits: Vec<results::DensityFit> = vtx.read_csv().unwrap();
        let fit = fits.iter().find(|f| f.backend == "microvm-linux").unwrap();
        let sums: Vec<results::StartupSummary> = vtx.read_csv().unwrap();
        let linux =
            |s: &&results::StartupSummary| s.backend == "microvm-linux" && s.mode == results::StartupMode::Sequential;
        let p99 = sums.iter().find(linux).unwrap().p99_s;
        let runs = [run, load(&vtx)];
        let f = PlanFigures::from_runs(&runs, &pair);
        let o = f.vm.vmm_overhead.as_ref().unwrap();
        let from = (o.source.run.as_str(), o.source.backend.as_str());
        assert_eq!((Some(o.value), from), (fit.vmm_overhead_bytes, ("fixture-vtx-run", "microvm-linux")));
        assert!(o.transfer.transfers());
        let p = f.vm.startup_p99.as_ref().unwrap();
        assert_eq!((p.value, p.source.run.as_str(), p.transfer), (p99, "fixture-vtx-run", Transfer::Transfers));
        // Guest RAM: the pair's own backend's figure transfers, so it stays first.
        assert_eq!(f.vm.guest_ram.as_ref().unwrap().source.backend, "qemu-tcg");
        // The container side reads the primary run first.
        assert_eq!(f.container.startup_p99.as_ref().unwrap().source.run, "fixture-run");
    }

    /// idle_cpu.csv and a density sweep stopped by a host limit reach the planner (merge of the density branch).
    #[test]
    fn idle_cpu_and_a_host_limit_come_from_the_run() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let row = |alive, c| results::IdleCpuRow {
            backend: "container".into(),
            alive,
            window_s: 1.0,
            host_cpu_s: c * f64::from(alive),
            cpu_s_per_instance_per_s: c,
        };
        rd.write_csv(&[row(1, 0.01), row(100, 0.002)]).unwrap();
        let mut fits: Vec<results::DensityFit> = rd.read_csv().unwrap();
        for f in fits.iter_mut().filter(|f| f.backend == "container") {
            f.stop_reason.reason =
                results::StopReason::HostLimit { limit: "pids.max of the parent cgroup".into(), value: 4096 };
        }
        rd.write_csv(&fits).unwrap();
        let run = load(&rd);
        let pair = ConfigPair::default_for(&run).unwrap();
        let f = PlanFigures::from_runs(std::slice::from_ref(&run), &pair);
        let idle = f.container.idle_cpu.as_ref().expect("idle CPU read from idle_cpu.csv");
        assert_eq!((idle.value, idle.n), (0.002, 100), "the fullest host's row");
        let hl = f.container.host_limit.as_ref().expect("host limit read from density_summary.csv");
        assert_eq!(hl.value.name, "pids.max of the parent cgroup at 4096");
        assert!(f.vm.idle_cpu.is_none() && f.vm.host_limit.is_none());
        // memory_giveback.csv: the fixture's container keeps 16 of a 64 MiB burst (1 -> 65 -> 17 MiB).
        let g = f.container.give_back.as_ref().expect("give-back read from memory_giveback.csv");
        assert_eq!((g.value, g.n), (0.25, 4));
        assert!(f.container.ksm.is_some(), "ksm.csv read");
        // page_cache.csv: 4 containers share one 64 MiB copy, 16.25 MiB each; the bare guest has no figure.
        let p = f.container.page_cache.as_ref().expect("page cache read from page_cache.csv");
        let want = PageCacheShare { private_per_byte: 0.25 / 64.0, shared_per_byte: 1.0 };
        assert_eq!((p.value, p.n, p.transfer), (want, 4, Transfer::Transfers));
        assert!(f.vm.page_cache.is_none(), "the bare guest's row has no figure");
    }
}
