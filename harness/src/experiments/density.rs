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
//!
//! A launch that fails on a host limit (open files, pids, threads, namespaces: see
//! [`crate::hostlimit`]) stops the sweep as `host limit: LIMIT at VALUE`, and the instances alive are
//! torn down as after any stop.
//!
//! At the steps of [`DensityPlan::probe_at`] and at the last step alive, the sweep measures what the
//! idle instances cost and do to a newcomer (issue 18 items 4 and 5): the host CPU time their process
//! trees consume over [`DensityPlan::idle_window`] (`idle_cpu.csv`), then one more instance, the victim,
//! running `cpu --iters` [`DensityPlan::victim_iters`] among them: its launch-to-ready and the p50 and
//! p99 of its iteration latency (`victim.csv`). The victim is stopped before the sweep goes on.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{collect_events, Backend, Event, Instance};
use crate::compare::{CompareError, Settings};
use crate::hostlimit::{HostLimit, HostView};
use crate::progress::{Mode, Task};
use results::stats;
use results::{DensityFit, DensityStep, DensityStop, ExperimentId, IdleCpuRow, Record, StopReason, VictimRow};
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

/// Host memory readings (a trait so the sweep logic is testable without a host).
pub trait HostMeter {
    /// MemAvailable, bytes.
    fn mem_available(&self) -> u64;
    /// Slab, bytes.
    fn slab(&self) -> u64;
    /// The host limit behind a failed launch's error text, if one is at its value.
    fn host_limit(&self, error: &str) -> Option<HostLimit> {
        crate::hostlimit::identify(error, &HostView::host())
    }
    /// The processes of the trees rooted at `pids` (see [`process_tree`]); None when /proc cannot be
    /// listed.
    fn process_tree(&self, pids: &[u32]) -> Option<Vec<u32>> {
        process_tree(std::path::Path::new("/proc"), pids)
    }
    /// CPU time consumed so far by every thread of `pids`, per thread id, ns (see [`threads_cpu_ns`]).
    fn threads_cpu_ns(&self, pids: &[u32]) -> std::collections::HashMap<u32, u64> {
        threads_cpu_ns(std::path::Path::new("/proc"), pids)
    }
}

/// The processes of the trees rooted at `roots`: each root and its descendants, by the parent pid in
/// `PROC/PID/stat`. One scan of every process on the host (about 1 s with 3000 processes on a loaded
/// 2-core host), so it is done once per measurement, outside the timed window. None when `proc`
/// cannot be listed.
pub fn process_tree(proc: &std::path::Path, roots: &[u32]) -> Option<Vec<u32>> {
    use std::collections::HashMap;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(pid) = todo.pop() {
        if seen.insert(pid) {
            out.push(pid);
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    Some(out)
}

/// CPU time of every thread of `pids`, per thread id, ns: the first field of
/// `PROC/PID/task/TID/schedstat` (time on a CPU, user and system). Processes gone are left out.
pub fn threads_cpu_ns(proc: &std::path::Path, pids: &[u32]) -> std::collections::HashMap<u32, u64> {
    let mut out = std::collections::HashMap::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(proc.join(pid.to_string()).join("task")) else { continue };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                out.insert(tid, ns);
            }
        }
    }
    out
}

/// CPU ns consumed between two [`threads_cpu_ns`] readings: each thread's growth, threads born in
/// between counted from zero, threads gone by the second reading not counted.
pub fn cpu_between(before: &std::collections::HashMap<u32, u64>, after: &std::collections::HashMap<u32, u64>) -> u64 {
    after.iter().map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum()
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
    /// Instances alive at which idle CPU and a victim are measured (the last step alive is measured
    /// too when this is not empty). Absent in older plans: none.
    #[serde(default)]
    pub probe_at: Vec<u32>,
    /// Window over which idle CPU is measured (JSON: `idle_window_s`; zero: not measured).
    #[serde(default, rename = "idle_window_s", with = "super::duration_s")]
    pub idle_window: Duration,
    /// SHA-256 blocks of the victim's `cpu` scenario (0: no victim).
    #[serde(default)]
    pub victim_iters: u64,
}

/// The sweep's records.
#[derive(Debug)]
pub struct DensityOutput {
    /// One row per step.
    pub steps: Vec<DensityStep>,
    /// The fit.
    pub fit: DensityFit,
    /// Idle CPU at the probed steps.
    pub idle_cpu: Vec<IdleCpuRow>,
    /// The victims launched at the probed steps.
    pub victims: Vec<VictimRow>,
}

/// Host CPU the idle `alive` instances consume over `window` (None when an instance has no host pid
/// or /proc cannot be read).
fn idle_cpu(backend: &str, alive: &[Box<dyn Instance>], window: Duration, meter: &dyn HostMeter) -> Option<IdleCpuRow> {
    let pids: Vec<u32> = alive.iter().map(|i| i.pid()).collect::<Option<_>>()?;
    let tree = meter.process_tree(&pids)?;
    // Each reading is timed at its middle: the window is the time between the two middles.
    let read = || {
        let t = Instant::now();
        let r = meter.threads_cpu_ns(&tree);
        (r, t + t.elapsed() / 2)
    };
    let (before, t0) = read();
    std::thread::sleep(window);
    let (after, t1) = read();
    let window_s = (t1 - t0).as_secs_f64();
    let host_cpu_s = cpu_between(&before, &after) as f64 * 1e-9;
    let n = u32::try_from(alive.len()).ok()?;
    Some(IdleCpuRow {
        backend: backend.into(),
        alive: n,
        window_s,
        host_cpu_s,
        cpu_s_per_instance_per_s: host_cpu_s / f64::from(n) / window_s,
    })
}

/// Launch the victim (`cpu --iters iters`) among `neighbours` idle instances, run it to its end and
/// stop it. Err: why there is no row (the sweep notes it and goes on).
fn victim(backend: &dyn Backend, neighbours: u32, iters: u64, timeout: Duration) -> Result<VictimRow, String> {
    use workloads::protocol::{CPU_ITERATIONS_TIMED, CPU_ITER_P50, CPU_ITER_P99};
    let (mut inst, ready) = launch_ready(backend, spec(Scenario::Cpu { iters }), timeout).map_err(|e| e.to_string())?;
    let events = collect_events(inst.as_mut(), timeout);
    // Stopped whatever the events said; a failure to stop is the instance's Drop's to clean.
    let _ = inst.stop(crate::backend::STOP_GRACE);
    let events = events.map_err(|e| e.to_string())?;
    let get = |want: &str| {
        events.iter().find_map(|e| match e {
            Event::Result { name, value, .. } if name == want => Some(*value),
            _ => None,
        })
    };
    match (get(CPU_ITERATIONS_TIMED), get(CPU_ITER_P50), get(CPU_ITER_P99)) {
        (Some(n), Some(p50), Some(p99)) => Ok(VictimRow {
            backend: backend.name().into(),
            neighbours,
            launch_to_ready_s: ready.launch_to_ready_s(),
            // A count of at most workloads::protocol::CPU_ITERATIONS, sent as a float.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            iterations: n as u32,
            iter_p50_s: p50,
            iter_p99_s: p99,
        }),
        _ => Err(format!("the victim reported no per-iteration latencies ({} events)", events.len())),
    }
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

/// Instances a sweep is expected to reach: where the memory budget stops it at the host memory each
/// instance has cost so far (`used` bytes for `alive` instances), or `max` if that comes first; `max`
/// until 10 instances give a usable rate. The progress line's count and ETA follow it, so a `--scale`
/// sweep (max 100 000) shows its real end, not 100 000.
pub fn projected_total(alive: u64, used: i64, budget: u64, max: u64) -> u64 {
    if alive < 10 || used <= 0 {
        return max;
    }
    let per = used as f64 / alive as f64;
    let fit = (budget as f64 / per).ceil();
    if fit.is_finite() && fit < max as f64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // finite, 0 < fit < max (a u64)
        let fit = fit as u64;
        fit.max(alive)
    } else {
        max
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
    let (mut idle_rows, mut victims) = (Vec::new(), Vec::new());
    let mut probed_at = 0usize;
    let mut probe_s = 0.0;
    let mut probe = |alive: &[Box<dyn Instance>], task: &mut Task| {
        let t0 = Instant::now();
        let n = u32::try_from(alive.len()).expect("at most max_instances, a u32");
        if plan.idle_window > Duration::ZERO {
            task.message(format!("idle CPU of {n}"));
            match idle_cpu(&name, alive, plan.idle_window, meter) {
                Some(r) => idle_rows.push(r),
                None => {
                    let why = "an instance has no host process, or /proc could not be read";
                    crate::progress::note(mode, &format!("{name}: no idle CPU row at {n} alive: {why}"))
                }
            }
        }
        if plan.victim_iters > 0 {
            task.message(format!("victim among {n}"));
            match victim(backend, n, plan.victim_iters, plan.timeout) {
                Ok(v) => victims.push(v),
                Err(e) => crate::progress::note(mode, &format!("{name}: no victim row at {n} alive: {e}")),
            }
        }
        probe_s += t0.elapsed().as_secs_f64();
    };
    while alive.len() < plan.max_instances as usize {
        if crate::interrupt::requested() {
            stop_reason = StopReason::Interrupted;
            break;
        }
        let (mut inst, ready) = match launch_ready(backend, spec(scenario), plan.timeout) {
            Ok(x) => x,
            Err(e) => {
                let text = e.to_string();
                stop_reason = match meter.host_limit(&text) {
                    Some(HostLimit { limit, value }) => StopReason::HostLimit { limit, value },
                    None => StopReason::Error(text),
                };
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
        if plan.probe_at.contains(&u32::try_from(alive.len()).expect("at most max_instances, a u32")) {
            probe(&alive, &mut task);
            probed_at = alive.len();
        }
        if used > 0 && used as u64 >= plan.budget_bytes {
            stop_reason = StopReason::Budget;
            break;
        }
        task.set_total(projected_total(alive.len() as u64, used, plan.budget_bytes, plan.max_instances.into()));
        if avail < plan.floor_bytes {
            stop_reason = StopReason::HostMemoryFloor;
            break;
        }
    }
    if !plan.probe_at.is_empty() && !alive.is_empty() && probed_at != alive.len() && !crate::interrupt::requested() {
        probe(&alive, &mut task);
    }
    if probe_s > 0.0 {
        crate::progress::note(mode, &format!("{name}: idle CPU and victims took {probe_s:.1} s"));
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
    Ok(DensityOutput { steps, fit, idle_cpu: idle_rows, victims })
}

/// The density experiment, as registered.
pub struct Density;

impl Experiment for Density {
    const ID: ExperimentId = ExperimentId::Density;
    type Plan = DensityPlan;
    type Row = DensityFit;
    const FILES: &'static [&'static str] = &[DensityFit::FILE, DensityStep::FILE, IdleCpuRow::FILE, VictimRow::FILE];

    fn plan(settings: &Settings) -> &DensityPlan {
        &settings.density
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let (mut steps, mut fits, mut idle, mut victims) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for b in cx.backends {
            cx.on_backend(*b);
            match sweep(*b, Self::plan(cx.plan_for(*b)), &ProcMeter, cx.mode) {
                Ok(o) => {
                    cx.outcome.density.push((o.fit.backend.clone(), o.fit.instances, o.fit.slope_bytes));
                    steps.extend(o.steps);
                    fits.push(o.fit);
                    idle.extend(o.idle_cpu);
                    victims.extend(o.victims);
                }
                Err(e) => cx.failed(Self::ID, *b, e)?,
            }
            cx.run_dir.write_csv(&steps)?;
            cx.run_dir.write_csv(&fits)?;
            cx.run_dir.write_csv(&idle)?;
            cx.run_dir.write_csv(&victims)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A --scale sweep (max 100 000) that will stop at the budget shows the budget's count: 10 instances at
    /// 2 MiB each with a 1 GiB budget end near 512; before 10 instances, or when max comes first, max.
    #[test]
    fn the_projected_total_follows_the_budget_at_the_cost_so_far() {
        const MIB: i64 = 1 << 20;
        assert_eq!(super::projected_total(10, 20 * MIB, 1 << 30, 100_000), 512);
        assert_eq!(super::projected_total(9, 18 * MIB, 1 << 30, 100_000), 100_000);
        assert_eq!(super::projected_total(10, 20 * MIB, 1 << 30, 300), 300);
        assert_eq!(super::projected_total(50, -MIB, 1 << 30, 300), 300, "memory handed back: no projection");
        assert_eq!(super::projected_total(600, 20 * MIB, 1 << 20, 100_000), 600, "never below what is alive");
    }

    use super::*;
    use crate::experiments::fake::FakeBackend;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    struct FakeMeter {
        total: u64,
        used: Arc<AtomicI64>,
    }

    /// A meter whose host limits are read from a fake /proc and /sys under `view.root`.
    struct LimitedMeter {
        inner: FakeMeter,
        view: HostView,
    }

    impl HostMeter for LimitedMeter {
        fn mem_available(&self) -> u64 {
            self.inner.mem_available()
        }
        fn slab(&self) -> u64 {
            self.inner.slab()
        }
        fn host_limit(&self, error: &str) -> Option<HostLimit> {
            crate::hostlimit::identify(error, &self.view)
        }
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
            probe_at: Vec::new(),
            idle_window: Duration::ZERO,
            victim_iters: 0,
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
    fn a_launch_failing_on_a_host_limit_stops_the_sweep_naming_it_and_tears_down() {
        let d = tempfile::tempdir().unwrap();
        let file = |p: &str, text: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        file("proc/self/cgroup", "3:pids:/t\n");
        file("sys/fs/cgroup/pids/t/pids.max", "100\n");
        file("sys/fs/cgroup/pids/t/pids.current", "100\n");
        let mut b = FakeBackend::new("fake", 1 << 20);
        b.fail_after = Some(7);
        b.fail_reason = "spawning vmct-workload: Resource temporarily unavailable (os error 11)";
        let view = HostView { root: d.path().to_path_buf(), nofile_soft: 1024, nproc_soft: None };
        let m = LimitedMeter { inner: FakeMeter { total: 1 << 30, used: b.used.clone() }, view };
        let out = sweep(&b, &plan(u64::MAX, 25), &m, Mode::Quiet).unwrap();
        assert_eq!(out.fit.instances, 7);
        let want = StopReason::HostLimit { limit: "pids.max of the parent cgroup /t".into(), value: 100 };
        assert_eq!(out.fit.stop_reason, want.into());
        assert_eq!(out.fit.stop_reason.to_string(), "host limit: pids.max of the parent cgroup /t at 100");
        assert_eq!(b.used.load(Ordering::SeqCst), 0, "all instances stopped");
        // The same error far from the limit stays an error.
        file("sys/fs/cgroup/pids/t/pids.current", "1\n");
        b.launched.store(0, Ordering::SeqCst);
        let out = sweep(&b, &plan(u64::MAX, 25), &m, Mode::Quiet).unwrap();
        assert!(matches!(out.fit.stop_reason.reason, StopReason::Error(_)), "{:?}", out.fit.stop_reason);
    }

    #[test]
    fn victims_are_launched_at_the_probed_steps_and_the_last_one() {
        let b = FakeBackend::new("fake", 1 << 20);
        let m = FakeMeter { total: 1 << 30, used: b.used.clone() };
        let mut p = plan(u64::MAX, 8);
        (p.probe_at, p.victim_iters, p.idle_window) = (vec![1, 5], 1000, Duration::from_millis(1));
        let out = sweep(&b, &p, &m, Mode::Quiet).unwrap();
        let at: Vec<u32> = out.victims.iter().map(|v| v.neighbours).collect();
        assert_eq!(at, vec![1, 5, 8]);
        let v = &out.victims[0];
        assert_eq!((v.iterations, v.iter_p50_s, v.iter_p99_s), (200, 1e-3, 3e-3));
        assert!((v.launch_to_ready_s - 1e-3).abs() < 1e-12);
        assert!(out.idle_cpu.is_empty(), "fake instances have no host process to read");
        assert_eq!(out.steps.len(), 8, "victims are not steps");
        assert_eq!(b.used.load(Ordering::SeqCst), 0, "victims and instances stopped");
        // Nothing probed when the plan names no step.
        let out = sweep(&b, &plan(u64::MAX, 3), &m, Mode::Quiet).unwrap();
        assert!(out.victims.is_empty() && out.idle_cpu.is_empty());
    }

    #[test]
    fn idle_cpu_reads_every_thread_of_the_process_tree() {
        let me = std::process::id();
        let spin = std::thread::spawn(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::black_box(0u64);
            }
        });
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        spin.join().unwrap();
        let proc = std::path::Path::new("/proc");
        let tree = process_tree(proc, &[me]).unwrap();
        assert!(tree.contains(&me) && tree.contains(&child.id()), "the root and its child");
        let before = threads_cpu_ns(proc, &tree);
        assert!(before.contains_key(&me), "the root's own threads");
        assert!(before.contains_key(&child.id()), "a child's threads");
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let after = threads_cpu_ns(proc, &tree);
        assert!(cpu_between(&before, &after) > 0);
        child.kill().unwrap();
        child.wait().unwrap();
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
