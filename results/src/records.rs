//! One record type per CSV file. Field names carry their unit (`_s` seconds, `_bytes` bytes).
//!
//! | file | record |
//! |---|---|
//! | `startup.csv` | [`StartupSample`] |
//! | `startup_phases.csv` | [`PhaseSample`] |
//! | `startup_summary.csv` | [`StartupSummary`] |
//! | `density.csv` | [`DensityStep`] |
//! | `density_summary.csv` | [`DensityFit`] |
//! | `overhead.csv` | [`OverheadRow`] |
//! | `isolation.csv` | [`IsolationRow`] |
//! | `blast.csv` | [`BlastRow`] |
//! | `snapshot.csv` | [`SnapshotRow`] |
//! | `attack_surface.csv` | [`crate::surface::AttackSurfaceRow`] |
use crate::vocab::{DensityStop, Neighbour, ProbeOutcome, StartupMode};
use serde::{Deserialize, Serialize};

/// A record that lives in one CSV file of a run directory.
pub trait Record: Serialize + for<'de> Deserialize<'de> {
    /// File name inside RUN_DIR.
    const FILE: &'static str;
}

macro_rules! record {
    ($t:ty, $f:literal) => {
        impl Record for $t {
            const FILE: &'static str = $f;
        }
    };
}

/// One launch-to-ready measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupSample {
    /// Backend name (process, microvm, container, container-privileged, crun, runc, ...).
    pub backend: String,
    /// `cold` (first launch after image build), `sequential`, or `concurrent-K` (K launchers in parallel).
    pub mode: StartupMode,
    /// Iteration number within (backend, mode), from 0.
    pub iteration: u32,
    /// Warm-up runs are recorded but excluded from statistics.
    pub warmup: bool,
    /// Host CLOCK_MONOTONIC from launch requested to the `ready` message, seconds.
    pub launch_to_ready_s: f64,
    /// Flagged by the MAD rule (|x - median| > 3 * 1.4826 * MAD); never dropped.
    pub outlier: bool,
}
record!(StartupSample, "startup.csv");

/// One phase of one launch, as reported by the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSample {
    /// Backend name.
    pub backend: String,
    /// Mode as in [`StartupSample::mode`].
    pub mode: StartupMode,
    /// Iteration number.
    pub iteration: u32,
    /// Phase name, as the backend reports it, each phase the time since the previous mark: the marks of
    /// the backend's own components (the bare VMM's `vmm_start`, `kvm_open`, `vm_create`, `memory`,
    /// `load`, `vcpu_setup`, `confine`, `first_exit`, `ready`; the linux VMM's `vmm_setup`,
    /// `kernel_entry`, `first_console_byte`, `init_start`; QEMU's `kernel_start`, `init_start`; our
    /// container runtime's `prepare`, `cgroup`, `clone`, `attach`, `rootfs`, `pivot`, `seccomp`,
    /// `exec`), or `spawn` for a backend without marks (process, crun, runc), then the harness's
    /// `to_ready`. Open, not an enum: each backend's components name their own steps.
    pub phase: String,
    /// Phase duration, seconds.
    pub duration_s: f64,
}
record!(PhaseSample, "startup_phases.csv");

/// Statistics of one (backend, mode) startup distribution, warm-up excluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupSummary {
    /// Backend name.
    pub backend: String,
    /// Mode.
    pub mode: StartupMode,
    /// Number of measured (non-warm-up) samples.
    pub n: u32,
    /// Median, seconds.
    pub median_s: f64,
    /// 90th percentile, seconds.
    pub p90_s: f64,
    /// 99th percentile, seconds.
    pub p99_s: f64,
    /// Minimum, seconds.
    pub min_s: f64,
    /// Maximum, seconds.
    pub max_s: f64,
    /// Mean, seconds.
    pub mean_s: f64,
    /// Median absolute deviation, seconds.
    pub mad_s: f64,
    /// Samples flagged as outliers.
    pub outliers: u32,
    /// Launches completed per second of wall time (concurrent modes), else None.
    pub launches_per_s: Option<f64>,
}
record!(StartupSummary, "startup_summary.csv");

/// Host state after the density sweep started `instances` instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityStep {
    /// Backend name.
    pub backend: String,
    /// Instances alive.
    pub instances: u32,
    /// Host MemAvailable, bytes.
    pub mem_available_bytes: u64,
    /// MemAvailable drop since before the first instance, bytes.
    pub mem_used_delta_bytes: i64,
    /// Host Slab, bytes.
    pub slab_bytes: u64,
    /// Slab growth since before the first instance, bytes.
    pub slab_delta_bytes: i64,
    /// RSS of the newest instance's processes, bytes.
    pub instance_rss_bytes: Option<u64>,
    /// Guest memory resident in the newest VMM, bytes (microVMs).
    pub guest_mem_bytes: Option<u64>,
    /// VMM RSS excluding guest memory of the newest VMM, bytes (microVMs).
    pub vmm_overhead_bytes: Option<u64>,
    /// cgroup memory usage of the newest container, bytes.
    pub cgroup_usage_bytes: Option<u64>,
    /// PSS of the newest instance's processes, bytes.
    pub pss_bytes: Option<u64>,
    /// Launch-to-ready of the newest instance at this density, seconds.
    pub launch_s: f64,
}
record!(DensityStep, "density.csv");

/// Fitted per-instance cost of one density sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityFit {
    /// Backend name.
    pub backend: String,
    /// Working set each instance held, MiB.
    pub hold_mib: u64,
    /// Instances reached.
    pub instances: u32,
    /// Why the sweep stopped (`count`, `budget`, `host memory floor`, `interrupted`, `error: ...`,
    /// `host limit: LIMIT at VALUE`).
    pub stop_reason: DensityStop,
    /// Least-squares slope of host memory used vs instances, bytes per instance.
    pub slope_bytes: f64,
    /// Intercept of the fit, bytes.
    pub intercept_bytes: f64,
    /// Coefficient of determination of the fit.
    pub r2: f64,
    /// Slab slope, bytes per instance (kernel memory).
    pub slab_slope_bytes: f64,
    /// Median VMM overhead per instance, bytes (microVMs): the VMM process's RSS outside guest memory.
    /// For an emulated backend (run.json `emulated`) this is the emulator's overhead (QEMU and its TCG
    /// translation cache), which no KVM VMM has: shown, never used for density verdicts.
    pub vmm_overhead_bytes: Option<f64>,
    /// Instances per GiB of host memory, from the slope.
    pub instances_per_gib: f64,
    /// Median launch-to-ready at the highest density, seconds.
    pub launch_at_max_s: f64,
    /// Seconds to tear all instances down (all told to stop at once, then each reaped and cleaned up).
    pub teardown_s: f64,
    /// Median time the harness spent on its own bookkeeping per step (stats and host meter reads),
    /// seconds: shows the sweep's own cost does not grow with N.
    #[serde(default)]
    pub harness_step_s: Option<f64>,
    /// The fit uses steps with at least this many instances (the upper half of long sweeps).
    #[serde(default)]
    pub fit_from_instances: Option<u32>,
    /// How fast MemAvailable was still moving when the sweep started, bytes/s (positive: memory
    /// coming back to the host from earlier work).
    #[serde(default)]
    pub drift_bytes_per_s: Option<f64>,
    /// Median guest memory resident per instance, bytes (microVMs: guest RAM the guest touched, from
    /// the VMM's guest-memory mapping in /proc/PID/smaps).
    #[serde(default)]
    pub guest_mem_bytes: Option<f64>,
}
record!(DensityFit, "density_summary.csv");

/// One overhead metric of one backend, with its ratio to the process baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverheadRow {
    /// Backend name.
    pub backend: String,
    /// Scenario (cpu, mem, syscall, io).
    pub scenario: String,
    /// Metric name (cpu.sha256, mem.seq, ...), empty when unsupported.
    pub metric: String,
    /// Unit of the values.
    pub unit: String,
    /// Samples.
    pub n: u32,
    /// Median.
    pub median: f64,
    /// Median absolute deviation.
    pub mad: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// median / process median (same run), when both exist.
    pub ratio_to_process: Option<f64>,
    /// False when the backend cannot run the scenario by design.
    pub supported: bool,
    /// Why unsupported, or the error of a failed run (empty otherwise).
    pub reason: String,
    /// The backend can run the scenario but a run of it failed (`reason` has the error, e.g. the
    /// errno and how many MiB were written); no figures. Absent in files from older versions: false.
    #[serde(default)]
    pub failed: bool,
}
record!(OverheadRow, "overhead.csv");

/// One isolation probe on one backend/profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationRow {
    /// Backend name.
    pub backend: String,
    /// Profile (default, privileged, userns, ...).
    pub profile: String,
    /// Probe id.
    pub probe: String,
    /// blocked | reached | error | unsupported.
    pub outcome: ProbeOutcome,
    /// What the probe saw.
    pub detail: String,
    /// What the host-side check found (empty when no host check applies).
    pub host_check: String,
    /// True when the probe reached host or neighbour state (an isolation failure).
    pub failure: bool,
}
record!(IsolationRow, "isolation.csv");

/// Victim latency under a noisy or faulting neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlastRow {
    /// Backend name.
    pub backend: String,
    /// Neighbour behaviour (memory-hog, cpu-hog, fork-loop, oom).
    pub neighbour: Neighbour,
    /// Whether the neighbour ran with limits.
    pub limited: bool,
    /// Victim median latency alone, seconds.
    pub victim_alone_s: f64,
    /// Victim median latency with the neighbour, seconds.
    pub victim_with_neighbour_s: f64,
    /// with / alone.
    pub slowdown: f64,
    /// Whether the victim and harness survived.
    pub victim_ok: bool,
    /// The neighbour's CPU allotment as applied, CPUs: its vCPUs (a VM), its CPU quota (a container) or
    /// its hog threads (the process baseline, which applies no quota); the CPU hog spins that many
    /// threads (or vCPUs) in every model. Empty in runs written before the column existed.
    #[serde(default)]
    pub neighbour_cpus: Option<f64>,
}
record!(BlastRow, "blast.csv");

/// Cost of saving and restoring state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Backend name.
    pub backend: String,
    /// Working set dirtied before saving, MiB.
    pub dirty_mib: u64,
    /// Seconds to save (commit or snapshot).
    pub save_s: f64,
    /// Bytes written to save.
    pub save_bytes: u64,
    /// Seconds from launch to ready when starting from saved state.
    pub restore_s: f64,
    /// Seconds from launch to ready on a cold start, same run.
    pub cold_start_s: f64,
    /// Bytes shared between two instances restored from the same state.
    pub shared_bytes: Option<u64>,
}
record!(SnapshotRow, "snapshot.csv");
