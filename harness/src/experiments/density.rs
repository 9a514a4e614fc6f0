//! Density: start `idle --hold-mib W` instances one after another, keeping all alive, until a memory
//! budget or a count limit; record host MemAvailable/Slab and the newest instance's own accounting
//! after each step; fit the per-instance cost; tear everything down.
//!
//! Host memory drifts after a large teardown: on this project's hosts MemAvailable kept rising by
//! 10-25 MiB/s for over a minute after 1000 instances were stopped, so the first few hundred instances
//! of the next sweep read as nearly free (a microVM sweep right after another sweep fitted 3.9 MiB per
//! instance, 4.9 MiB when run first). Two defences: [`settle`] waits (at most 10 s) until the drift is
//! under 4 MiB/s and records what it measured, and [`fit`] uses the upper half of the sweep
//! (instances N/2..N) when there are at least [`UPPER_HALF_MIN_STEPS`] steps.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, Instance};
use crate::compare::{CompareError, Settings};
use crate::progress::{Mode, Task};
use results::stats;
use results::{DensityFit, DensityStep, DensityStop, ExperimentId, Record, StopReason};
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

/// Host memory readings (a trait so the sweep logic is testable without a host).
pub trait HostMeter {
    /// MemAvailable, bytes.
    fn mem_available(&self) -> u64;
    /// Slab, bytes.
    fn slab(&self) -> u64;
}

/// Reads /proc/meminfo.
pub struct ProcMeter;

impl HostMeter for ProcMeter {
    fn mem_available(&self) -> u64 {
        results::env::meminfo_bytes("MemAvailable").unwrap_or(0)
    }
    fn slab(&self) -> u64 {
        results::env::meminfo_bytes("Slab").unwrap_or(0)
    }
}

/// What to sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityPlan {
    /// MiB each instance touches and holds.
    pub hold_mib: u64,
    /// Stop once host memory used by the sweep reaches this many bytes.
    pub budget_bytes: u64,
    /// Stop at this many instances.
    pub max_instances: u32,
    /// Never let MemAvailable fall below this many bytes (host safety floor). Recorded with the plan,
    /// but a replay (`vmct compare --plan`) recomputes it for the host it runs on.
    pub floor_bytes: u64,
    /// Per-launch timeout (JSON: `timeout_s`, seconds).
    #[serde(rename = "timeout_s", with = "super::duration_s")]
    pub timeout: Duration,
}

/// The sweep's records.
#[derive(Debug)]
pub struct DensityOutput {
    /// One row per step.
    pub steps: Vec<DensityStep>,
    /// The fit.
    pub fit: DensityFit,
}

/// Sweeps with at least this many steps are fitted over their upper half only.
pub const UPPER_HALF_MIN_STEPS: usize = 20;

/// Fit per-instance cost from steps (slope of MemAvailable drop vs instances), over the upper half of
/// the sweep when it is long enough (see the module docs); `drift` is what [`settle`] measured.
pub fn fit(
    backend: &str,
    hold_mib: u64,
    steps: &[DensityStep],
    stop_reason: DensityStop,
    teardown_s: f64,
    bookkeeping_s: &[f64],
    drift_bytes_per_s: f64,
) -> DensityFit {
    let last = steps.last().map_or(0, |s| s.instances);
    let from = if steps.len() >= UPPER_HALF_MIN_STEPS { last / 2 + 1 } else { 1 };
    let used = steps.iter().filter(|s| s.instances >= from);
    let pts: Vec<(f64, f64)> = used.clone().map(|s| (s.instances as f64, s.mem_used_delta_bytes as f64)).collect();
    let slab: Vec<(f64, f64)> = used.map(|s| (s.instances as f64, s.slab_delta_bytes as f64)).collect();
    let line = stats::fit_line(&pts);
    let slope = line.map_or(f64::NAN, |l| l.slope);
    let overheads: Vec<f64> = steps.iter().filter_map(|s| s.vmm_overhead_bytes.map(|v| v as f64)).collect();
    let guest: Vec<f64> = steps.iter().filter_map(|s| s.guest_mem_bytes.map(|v| v as f64)).collect();
    let tail: Vec<f64> = steps.iter().rev().take(10).map(|s| s.launch_s).collect();
    DensityFit {
        backend: backend.into(),
        hold_mib,
        instances: steps.last().map_or(0, |s| s.instances),
        stop_reason,
        slope_bytes: slope,
        intercept_bytes: line.map_or(f64::NAN, |l| l.intercept),
        r2: line.map_or(f64::NAN, |l| l.r2),
        slab_slope_bytes: stats::fit_line(&slab).map_or(f64::NAN, |l| l.slope),
        vmm_overhead_bytes: (!overheads.is_empty()).then(|| stats::median(&overheads)),
        instances_per_gib: if slope > 0.0 { (1u64 << 30) as f64 / slope } else { f64::NAN },
        launch_at_max_s: if tail.is_empty() { f64::NAN } else { stats::median(&tail) },
        teardown_s,
        harness_step_s: (!bookkeeping_s.is_empty()).then(|| stats::median(bookkeeping_s)),
        fit_from_instances: Some(from),
        drift_bytes_per_s: drift_bytes_per_s.is_finite().then_some(drift_bytes_per_s),
        guest_mem_bytes: (!guest.is_empty()).then(|| stats::median(&guest)),
    }
}

/// Drift below which host memory counts as settled, bytes per second.
pub const SETTLED_DRIFT: f64 = 4.0 * 1024.0 * 1024.0;

/// Longest [`settle`] waits for host memory to settle.
pub const SETTLE_MAX: Duration = Duration::from_secs(10);

/// How often [`settle`] reads MemAvailable; its window is the last second of readings.
pub const SETTLE_POLL: Duration = Duration::from_millis(100);

/// Wait (at most [`SETTLE_MAX`]) until MemAvailable moved by less than [`SETTLED_DRIFT`] over the last second,
/// so memory the previous sweep's teardown hands back is not counted against this one. Returns the
/// settled MemAvailable and the drift over that last second, bytes/s (positive: memory coming back).
pub fn settle(meter: &dyn HostMeter) -> (u64, f64) {
    let start = Instant::now();
    let mut window = std::collections::VecDeque::from([meter.mem_available()]);
    loop {
        std::thread::sleep(SETTLE_POLL);
        let now = meter.mem_available();
        window.push_back(now);
        if window.len() > 11 {
            window.pop_front();
        }
        if window.len() == 11 {
            let drift = now as f64 - window[0] as f64;
            // A stop request ends the wait too (the caller checks it before the next instance).
            if drift.abs() < SETTLED_DRIFT || start.elapsed() >= SETTLE_MAX || crate::interrupt::requested() {
                return (now, drift);
            }
        }
    }
}

/// Run the sweep on one backend.
pub fn sweep(
    backend: &dyn Backend,
    plan: &DensityPlan,
    meter: &dyn HostMeter,
    mode: Mode,
) -> Result<DensityOutput, ExperimentError> {
    let name = backend.name().to_string();
    let mut task = Task::new(mode, format!("{} {name}", ExperimentId::Density), plan.max_instances as u64);
    let (avail0, drift) = settle(meter);
    let slab0 = meter.slab();
    let mut alive: Vec<Box<dyn Instance>> = Vec::with_capacity(plan.max_instances as usize);
    let mut steps = Vec::with_capacity(plan.max_instances as usize);
    let mut stop_reason = StopReason::Count;
    let scenario = Scenario::Idle { hold_mib: plan.hold_mib };
    let mut bookkeeping = Vec::with_capacity(plan.max_instances as usize);
    while alive.len() < plan.max_instances as usize {
        if crate::interrupt::requested() {
            stop_reason = StopReason::Interrupted;
            break;
        }
        let (mut inst, ready) = match launch_ready(backend, spec(scenario), plan.timeout) {
            Ok(x) => x,
            Err(e) => {
                stop_reason = StopReason::Error(e.to_string());
                break;
            }
        };
        let t_book = Instant::now();
        let st = inst.stats();
        alive.push(inst);
        let avail = meter.mem_available();
        let slab = meter.slab();
        bookkeeping.push(t_book.elapsed().as_secs_f64());
        let used = avail0 as i64 - avail as i64;
        steps.push(DensityStep {
            backend: name.clone(),
            instances: u32::try_from(alive.len()).expect("at most max_instances, a u32"),
            mem_available_bytes: avail,
            mem_used_delta_bytes: used,
            slab_bytes: slab,
            slab_delta_bytes: slab as i64 - slab0 as i64,
            instance_rss_bytes: st.rss_bytes,
            guest_mem_bytes: st.guest_mem_bytes,
            vmm_overhead_bytes: st.vmm_overhead_bytes,
            cgroup_usage_bytes: st.cgroup_usage_bytes,
            pss_bytes: st.pss_bytes,
            launch_s: ready.launch_to_ready_s(),
        });
        task.inc();
        if used > 0 && used as u64 >= plan.budget_bytes {
            stop_reason = StopReason::Budget;
            break;
        }
        if avail < plan.floor_bytes {
            stop_reason = StopReason::HostMemoryFloor;
            break;
        }
    }
    task.message("tearing down");
    let t0 = Instant::now();
    let mut teardown_kills = 0;
    // Every instance is told to stop first, so they end together; then each is reaped. One by one,
    // each stop waited for its instance's end (a peer runtime's exit and cleanup: tens of ms each).
    for inst in &mut alive {
        inst.request_stop();
    }
    for mut inst in alive.drain(..) {
        if inst.stop(crate::backend::STOP_GRACE).is_err() {
            teardown_kills += 1;
        }
    }
    let teardown_s = t0.elapsed().as_secs_f64();
    let stop = DensityStop { reason: stop_reason, teardown_kills };
    let fit = fit(&name, plan.hold_mib, &steps, stop, teardown_s, &bookkeeping, drift);
    task.finish(&format!("{} instances, {} per instance", fit.instances, crate::units::human_bytes(fit.slope_bytes)));
    if crate::interrupt::requested() {
        return Err(crate::interrupt::Interrupted.into());
    }
    Ok(DensityOutput { steps, fit })
}

/// The density experiment, as registered.
pub struct Density;

impl Experiment for Density {
    const ID: ExperimentId = ExperimentId::Density;
    type Plan = DensityPlan;
    type Row = DensityFit;
    const FILES: &'static [&'static str] = &[DensityFit::FILE, DensityStep::FILE];

    fn plan(settings: &Settings) -> &DensityPlan {
        &settings.density
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let (mut steps, mut fits) = (Vec::new(), Vec::new());
        for b in cx.backends {
            cx.on_backend(*b);
            match sweep(*b, Self::plan(cx.plan_for(*b)), &ProcMeter, cx.mode) {
                Ok(o) => {
                    cx.outcome.density.push((o.fit.backend.clone(), o.fit.instances, o.fit.slope_bytes));
                    steps.extend(o.steps);
                    fits.push(o.fit);
                }
                Err(e) => cx.failed(Self::ID, *b, e)?,
            }
            cx.run_dir.write_csv(&steps)?;
            cx.run_dir.write_csv(&fits)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::fake::FakeBackend;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    struct FakeMeter {
        total: u64,
        used: Arc<AtomicI64>,
    }

    impl HostMeter for FakeMeter {
        fn mem_available(&self) -> u64 {
            self.total - self.used.load(Ordering::SeqCst) as u64
        }
        fn slab(&self) -> u64 {
            1000 + self.used.load(Ordering::SeqCst) as u64 / 100
        }
    }

    fn plan(budget: u64, max: u32) -> DensityPlan {
        DensityPlan {
            hold_mib: 1,
            budget_bytes: budget,
            max_instances: max,
            floor_bytes: 0,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn stops_at_the_budget_fits_the_slope_and_tears_down() {
        let b = FakeBackend::new("fake", 4 << 20);
        let m = FakeMeter { total: 1 << 30, used: b.used.clone() };
        let out = sweep(&b, &plan(40 << 20, 1000), &m, Mode::Quiet).unwrap();
        assert_eq!(out.fit.instances, 10);
        assert_eq!(out.fit.stop_reason, StopReason::Budget.into());
        assert!((out.fit.slope_bytes - (4 << 20) as f64).abs() < 1.0);
        assert!((out.fit.instances_per_gib - 256.0).abs() < 1e-6);
        assert!((out.fit.slab_slope_bytes - (4 << 20) as f64 / 100.0).abs() < 1.0);
        assert_eq!(out.steps.len(), 10);
        assert_eq!(out.fit.fit_from_instances, Some(1), "short sweeps are fitted whole");
        assert_eq!(out.fit.drift_bytes_per_s, Some(0.0));
        assert_eq!(b.used.load(Ordering::SeqCst), 0, "all instances stopped");
        // Teardown: every instance is told to stop before the first is reaped.
        assert_eq!(*b.stop_log.lock().unwrap(), [["request"; 10], ["stop"; 10]].concat());
    }

    fn step(instances: u32, used: i64) -> DensityStep {
        DensityStep {
            backend: "b".into(),
            instances,
            mem_available_bytes: 0,
            mem_used_delta_bytes: used,
            slab_bytes: 0,
            slab_delta_bytes: 0,
            instance_rss_bytes: None,
            guest_mem_bytes: None,
            vmm_overhead_bytes: None,
            cgroup_usage_bytes: None,
            pss_bytes: None,
            launch_s: 0.001,
        }
    }

    #[test]
    fn long_sweeps_are_fitted_over_their_upper_half() {
        // 5 MiB per instance, but the host handed back memory during the first 20 instances.
        let mib = 1i64 << 20;
        let steps: Vec<DensityStep> = (1..=40)
            .map(|n| step(n, if n <= 20 { n as i64 * mib } else { 20 * mib + (n as i64 - 20) * 5 * mib }))
            .collect();
        let f = fit("b", 4, &steps, StopReason::Count.into(), 0.0, &[], 3e6);
        assert_eq!(f.fit_from_instances, Some(21));
        assert!((f.slope_bytes - 5.0 * mib as f64).abs() < 1.0, "{}", f.slope_bytes);
        assert_eq!(f.drift_bytes_per_s, Some(3e6));
        let whole = fit("b", 4, &steps[..19], StopReason::Count.into(), 0.0, &[], f64::NAN);
        assert_eq!((whole.fit_from_instances, whole.drift_bytes_per_s), (Some(1), None));
    }

    #[test]
    fn stops_at_the_count_limit_or_on_error() {
        let b = FakeBackend::new("fake", 1 << 20);
        let m = FakeMeter { total: 1 << 30, used: b.used.clone() };
        let out = sweep(&b, &plan(u64::MAX, 25), &m, Mode::Quiet).unwrap();
        assert_eq!((out.fit.instances, out.fit.stop_reason.clone()), (25, StopReason::Count.into()));

        let mut b = FakeBackend::new("fake", 1 << 20);
        b.fail_after = Some(7);
        let m = FakeMeter { total: 1 << 30, used: b.used.clone() };
        let out = sweep(&b, &plan(u64::MAX, 25), &m, Mode::Quiet).unwrap();
        assert_eq!(out.fit.instances, 7);
        assert!(
            matches!(&out.fit.stop_reason.reason, StopReason::Error(e) if e.contains("fake limit")),
            "{:?}",
            out.fit.stop_reason
        );
        assert_eq!(b.used.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn respects_the_host_safety_floor() {
        let b = FakeBackend::new("fake", 100 << 20);
        let m = FakeMeter { total: 1 << 30, used: b.used.clone() };
        let mut p = plan(u64::MAX, 1000);
        p.floor_bytes = 600 << 20;
        let out = sweep(&b, &p, &m, Mode::Quiet).unwrap();
        assert_eq!(out.fit.stop_reason, StopReason::HostMemoryFloor.into());
        assert_eq!(out.fit.instances, 5);
    }
}
