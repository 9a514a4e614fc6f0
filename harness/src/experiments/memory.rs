//! Memory over time and sharing (issue 18 item 3), on every usable backend:
//!
//! 1. Give-back ([`give_back`], `memory_giveback.csv`): N instances of `burst --mib M`, launched one
//!    after another and kept alive together. Each reports ready, waits 1 s, touches M MiB
//!    (`burst.touched`), holds them 1 s, frees them (`burst.freed`) and idles. Per instance the host
//!    memory it holds is read right after ready ("before"), from `burst.touched` until `burst.freed`
//!    every [`PEAK_POLL`] (the largest reading is the peak), then at once after the free and every
//!    [`AFTER_POLL`] until [`MemoryPlan::after`] after its free ("after"); while a later instance
//!    launches (seconds for an emulated guest) the earlier ones are not read, so "half back" has that
//!    resolution. The row is the mean over the instances, labelled
//!    with how freed memory can go back to the host ([`Backend::give_back`]).
//! 2. KSM ([`ksm_sweep`], `ksm.csv`, unless [`MemoryPlan::ksm`] is off): N instances of
//!    `idle --hold-mib M` asked to make their memory mergeable (`VMCT_MEMORY_MERGE=1`:
//!    `prctl(PR_SET_MEMORY_MERGE)` in the Linux workload; a VMM's guest memory is mergeable only if the
//!    VMM marked it MADV_MERGEABLE), then KSM switched on ([`crate::ksm::KsmGuard`], restored
//!    afterwards) for [`MemoryPlan::ksm_window`]. KSM's counters are only brought up to date by its
//!    scans (with `run=0` they keep counting pages of processes long gone), so the baseline is read
//!    after the instances stopped, once KSM completed two more full scans or stopped scanning (at most
//!    [`BASELINE_MAX`]).
//!    Saved per instance = (`pages_sharing` at the end of the window - baseline) x page size / N; the
//!    CPU ksmd spent over the window from its /proc stat; which memory was mergeable at all from the
//!    `mg` flag in /proc/PID/smaps of each instance's host process.
//!
//! "Held" is the per-instance host accounting of the density experiment: the cgroup's memory usage
//! when the backend has one (containers, runsc), else the RSS of the instance's host process (the VMM
//! or QEMU, guest memory included; the workload itself for the process baseline).
//!
//!
//! 3. Page-cache sharing ([`super::page_cache`], `page_cache.csv`, unless [`MemoryPlan::page_cache`]
//!    is off): N instances of one image reading the same file set of [`MemoryPlan::file_set_mib`] MiB.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, BackendError, Event, Instance, InstanceStats, STOP_GRACE};
use crate::compare::{CompareError, Settings};
use crate::ksm::{self, Counters, KsmGuard, Restored};
use crate::progress::{Mode, Task};
use results::{ExperimentId, GiveBackRow, KsmRow, PageCacheRow, Record};
use std::path::Path;
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

/// How often the peak is read while a burst is held.
pub const PEAK_POLL: Duration = Duration::from_millis(100);
/// How often held memory is read after the free.
pub const AFTER_POLL: Duration = Duration::from_millis(500);

/// Longest wait for KSM's baseline scans after the instances stopped.
pub const BASELINE_MAX: Duration = Duration::from_secs(20);
/// Counters unchanged this long mean ksmd has nothing left to scan.
pub const BASELINE_STILL: Duration = Duration::from_secs(2);
/// How long a wait sleeps between checks of the stop flag and the counters.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// What to measure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPlan {
    /// Instances alive together (N).
    pub instances: u32,
    /// MiB each instance touches then frees (give-back) or holds (KSM) (M).
    pub burst_mib: u64,
    /// How long after its free an instance's "after" is read (JSON: `after_s`).
    #[serde(rename = "after_s", with = "super::duration_s")]
    pub after: Duration,
    /// Run the KSM sweep.
    pub ksm: bool,
    /// How long KSM runs (JSON: `ksm_window_s`).
    #[serde(rename = "ksm_window_s", with = "super::duration_s")]
    pub ksm_window: Duration,
    /// KSM's `pages_to_scan` during the window (the kernel's default is 100).
    pub ksm_pages_to_scan: u32,
    /// KSM's `sleep_millisecs` during the window (the kernel's default is 20).
    pub ksm_sleep_millisecs: u32,
    /// Per-launch and per-event timeout (JSON: `timeout_s`).
    #[serde(rename = "timeout_s", with = "super::duration_s")]
    pub timeout: Duration,
    /// Run the page-cache sharing measurement (run.json files without it: true).
    #[serde(default = "yes")]
    pub page_cache: bool,
    /// MiB of the file set the N instances read (run.json files without it: 64).
    #[serde(default = "default_file_set_mib")]
    pub file_set_mib: u64,
}

fn yes() -> bool {
    true
}

fn default_file_set_mib() -> u64 {
    64
}

impl MemoryPlan {
    /// `--quick`: 2 instances, 16 MiB, 10 s after the free, KSM for 10 s, a 16 MiB file set.
    pub fn quick() -> MemoryPlan {
        MemoryPlan {
            instances: 2,
            burst_mib: 16,
            after: Duration::from_secs(10),
            ksm: true,
            ksm_window: Duration::from_secs(10),
            ksm_pages_to_scan: 1000,
            ksm_sleep_millisecs: 20,
            timeout: Duration::from_secs(20),
            page_cache: true,
            file_set_mib: 16,
        }
    }

    /// The default plan: 4 instances, 64 MiB, 60 s after the free, KSM for 30 s, a 64 MiB file set.
    pub fn default_plan() -> MemoryPlan {
        MemoryPlan {
            instances: 4,
            burst_mib: 64,
            after: Duration::from_secs(60),
            ksm: true,
            ksm_window: Duration::from_secs(30),
            ksm_pages_to_scan: 1000,
            ksm_sleep_millisecs: 20,
            timeout: Duration::from_secs(30),
            page_cache: true,
            file_set_mib: default_file_set_mib(),
        }
    }
}

impl Default for MemoryPlan {
    /// [`MemoryPlan::default_plan`] (run.json files written before this experiment existed).
    fn default() -> MemoryPlan {
        MemoryPlan::default_plan()
    }
}

/// Host memory an instance holds, and which accounting gave it: the cgroup's usage, else the RSS of
/// its host process.
pub fn held(st: &InstanceStats) -> Option<(u64, &'static str)> {
    st.cgroup_usage_bytes
        .map(|b| (b, "cgroup memory usage"))
        .or_else(|| st.rss_bytes.map(|b| (b, "RSS of the instance's host process (a VMM's includes guest memory)")))
}

fn measurement(backend: &dyn Backend, reason: String) -> ExperimentError {
    ExperimentError::Measurement { backend: backend.name().into(), reason }
}

fn held_now(b: &dyn Backend, inst: &mut dyn Instance) -> Result<(u64, &'static str), ExperimentError> {
    held(&inst.stats()).ok_or_else(|| measurement(b, format!("instance {} has no host memory accounting", inst.id())))
}

/// Wait for the result `name`; Ok(false) on timeout. A failure, `done` or the end of the stream is an
/// error naming what arrived.
fn wait_result(
    b: &dyn Backend,
    inst: &mut dyn Instance,
    name: &str,
    timeout: Duration,
) -> Result<bool, ExperimentError> {
    Ok(wait_result_value(b, inst, name, timeout)?.is_some())
}

/// Wait for the result `name` and return its value; Ok(None) on timeout. A failure, `done` or the end
/// of the stream is an error naming what arrived.
pub fn wait_result_value(
    b: &dyn Backend,
    inst: &mut dyn Instance,
    name: &str,
    timeout: Duration,
) -> Result<Option<f64>, ExperimentError> {
    let next = match inst.next_event(timeout) {
        Err(BackendError::Timeout { .. }) => return Ok(None),
        r => r?,
    };
    match next {
        Some((_, Event::Result { name: n, value, .. })) if n == name => Ok(Some(value)),
        Some((_, Event::Failed { what, reason })) => Err(measurement(b, format!("{what} failed: {reason}"))),
        Some((_, e)) => Err(measurement(b, format!("expected result {name}, got {e:?}"))),
        None => Err(measurement(b, format!("the instance ended before result {name}"))),
    }
}

/// One instance of the give-back measurement.
struct Burst {
    inst: Box<dyn Instance>,
    before: u64,
    peak: u64,
    freed_at: Instant,
    after: Option<(u64, f64)>,
    half_back_s: Option<f64>,
}

/// Read the held memory of every freed instance still in its window: note when half its burst is back,
/// and take its "after" reading once `after` has passed since its free.
fn poll_freed(b: &dyn Backend, bursts: &mut [Burst], after: Duration) -> Result<(), ExperimentError> {
    for x in bursts.iter_mut().filter(|x| x.after.is_none()) {
        let h = held_now(b, x.inst.as_mut())?.0;
        let t = x.freed_at.elapsed();
        if x.half_back_s.is_none() && x.peak > x.before && h <= x.before + (x.peak - x.before) / 2 {
            x.half_back_s = Some(t.as_secs_f64());
        }
        if t >= after {
            x.after = Some((h, t.as_secs_f64()));
        }
    }
    Ok(())
}

/// The give-back measurement on `b` (see the module docs).
pub fn give_back(b: &dyn Backend, plan: &MemoryPlan, mode: Mode) -> Result<GiveBackRow, ExperimentError> {
    let n = plan.instances.max(1);
    let mut task = Task::new(mode, format!("{} give-back {}", ExperimentId::Memory, b.name()), u64::from(n));
    let mut bursts: Vec<Burst> = Vec::with_capacity(n as usize);
    let mut how = "";
    for _ in 0..n {
        crate::interrupt::check()?;
        let (mut inst, _) = launch_ready(b, spec(Scenario::Burst { mib: plan.burst_mib }), plan.timeout)?;
        let (before, h) = held_now(b, inst.as_mut())?;
        how = h;
        if !wait_result(b, inst.as_mut(), "burst.touched", plan.timeout)? {
            return Err(measurement(b, "no burst.touched within the timeout".into()));
        }
        let mut peak = held_now(b, inst.as_mut())?.0;
        let deadline = Instant::now() + plan.timeout;
        loop {
            crate::interrupt::check()?;
            match inst.next_event(PEAK_POLL) {
                Ok(Some((_, Event::Result { name, .. }))) if name == "burst.freed" => break,
                Ok(Some((_, e))) => return Err(measurement(b, format!("expected burst.freed, got {e:?}"))),
                Ok(None) => return Err(measurement(b, "the instance ended before burst.freed".into())),
                Err(BackendError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(e) => return Err(e.into()),
            }
            peak = peak.max(held_now(b, inst.as_mut())?.0);
            poll_freed(b, &mut bursts, plan.after)?;
        }
        let mut x = Burst { inst, before, peak, freed_at: Instant::now(), after: None, half_back_s: None };
        poll_freed(b, std::slice::from_mut(&mut x), plan.after)?;
        bursts.push(x);
        task.inc();
    }
    task.message("waiting for give-back");
    while bursts.iter().any(|x| x.after.is_none()) {
        crate::interrupt::check()?;
        std::thread::sleep(AFTER_POLL);
        poll_freed(b, &mut bursts, plan.after)?;
    }
    let mean = |f: &dyn Fn(&Burst) -> f64| bursts.iter().map(f).sum::<f64>() / bursts.len() as f64;
    let mean_bytes = |f: &dyn Fn(&Burst) -> u64| bursts.iter().map(f).sum::<u64>() / bursts.len() as u64;
    let before = mean_bytes(&|x| x.before);
    let peak = mean_bytes(&|x| x.peak);
    let after = mean_bytes(&|x| x.after.map_or(0, |a| a.0));
    let after_s = mean(&|x| x.after.map_or(0.0, |a| a.1));
    let halves: Vec<f64> = bursts.iter().filter_map(|x| x.half_back_s).collect();
    let mechanism = b.give_back();
    let row = GiveBackRow {
        backend: b.name().into(),
        instances: n,
        burst_bytes: plan.burst_mib << 20,
        held_before_bytes: before,
        held_peak_bytes: peak,
        held_after_bytes: after,
        mechanism,
        after_s,
        given_back_fraction: GiveBackRow::fraction(before, peak, after),
        half_back_s: (halves.len() == bursts.len()).then(|| results::stats::median(&halves)),
        detail: format!("held = {how}; mean of {n} instances alive together; mechanism: {mechanism}"),
    };
    for mut x in bursts {
        let _ = x.inst.stop(STOP_GRACE);
    }
    task.finish(&format!(
        "{} held after {:.0} s (peak {})",
        crate::units::human_bytes(after as f64),
        after_s,
        crate::units::human_bytes(peak as f64)
    ));
    Ok(row)
}

/// `pid` and every process below it (a peer runtime's `run` process has the container's processes below
/// it; a VMM or our container's init is the whole instance).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 1024 {
        all.extend(crate::backend::peers::children(all[i]));
        i += 1;
    }
    all
}

/// Where the KSM sweep reads and writes (tests point it elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct KsmPaths<'a> {
    /// KSM's sysfs directory ([`ksm::SYSFS`]).
    pub sysfs: &'a Path,
    /// The journal directory ([`crate::isolation::journal::DIR`]).
    pub journal: &'a Path,
}

impl KsmPaths<'static> {
    /// The host's.
    pub fn host() -> KsmPaths<'static> {
        KsmPaths { sysfs: Path::new(ksm::SYSFS), journal: Path::new(crate::isolation::journal::DIR) }
    }
}

/// Why KSM cannot be measured here, if it cannot (no KSM, or another user runs it).
pub fn ksm_unavailable(paths: KsmPaths<'_>) -> Option<String> {
    match ksm::Tunables::read(paths.sysfs) {
        Err(e) => Some(e.to_string()),
        Ok(t) if t.0[0] != "0" => Some(format!(
            "KSM already runs here (run = {}): another user relies on it, so vmct leaves it alone",
            t.0[0]
        )),
        Ok(_) => None,
    }
}

/// KSM's counters once they no longer count the stopped instances: after two more full scans than
/// `scans`, or once ksmd stopped scanning (nothing mergeable left: counters unchanged for
/// [`BASELINE_STILL`]); None when neither happened within [`BASELINE_MAX`].
fn baseline(sysfs: &Path, scans: u64) -> Result<Option<Counters>, ExperimentError> {
    let t0 = Instant::now();
    let (mut last, mut since) = (Counters::read(sysfs), Instant::now());
    while t0.elapsed() < BASELINE_MAX {
        crate::interrupt::check()?;
        std::thread::sleep(SLEEP_SLICE);
        let now = Counters::read(sysfs);
        if now.full_scans >= scans + 2 {
            return Ok(Some(now));
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= BASELINE_STILL {
            return Ok(Some(now));
        }
    }
    Ok(None)
}

/// The KSM sweep on `b` (see the module docs).
pub fn ksm_sweep(
    b: &dyn Backend,
    plan: &MemoryPlan,
    paths: KsmPaths<'_>,
    mode: Mode,
) -> Result<KsmRow, ExperimentError> {
    let n = plan.instances.max(1);
    let mut task = Task::new(mode, format!("{} ksm {}", ExperimentId::Memory, b.name()), u64::from(n));
    let mut insts: Vec<Box<dyn Instance>> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        crate::interrupt::check()?;
        let mut s = spec(Scenario::Idle { hold_mib: plan.burst_mib });
        s.env.push(("VMCT_MEMORY_MERGE".into(), "1".into()));
        insts.push(launch_ready(b, s, plan.timeout)?.0);
        task.inc();
    }
    let held_mean = |insts: &mut [Box<dyn Instance>]| -> Result<u64, ExperimentError> {
        let mut sum = 0u64;
        for i in insts.iter_mut() {
            sum += held_now(b, i.as_mut())?.0;
        }
        Ok(sum / insts.len() as u64)
    };
    let held_before = held_mean(&mut insts)?;
    let (mut mergeable, mut resident) = (0u64, 0u64);
    for pid in insts.iter().filter_map(|i| i.pid()).flat_map(process_tree) {
        if let Some((m, r)) = ksm::mergeable_rss(pid) {
            mergeable += m;
            resident += r;
        }
    }
    task.message("KSM on");
    let mut guard = KsmGuard::enable(paths.sysfs, paths.journal, plan.ksm_pages_to_scan, plan.ksm_sleep_millisecs)
        .map_err(|e| measurement(b, e.to_string()))?;
    let (c0, cpu0, t0) = (Counters::read(paths.sysfs), ksm::ksmd_cpu_s(), Instant::now());
    while t0.elapsed() < plan.ksm_window {
        crate::interrupt::check()?;
        std::thread::sleep(SLEEP_SLICE);
    }
    let (c1, cpu1, window_s) = (Counters::read(paths.sysfs), ksm::ksmd_cpu_s(), t0.elapsed().as_secs_f64());
    let held_after = held_mean(&mut insts)?;
    for mut i in insts {
        let _ = i.stop(STOP_GRACE);
    }
    // The counters are only brought up to date by scans: keep KSM on for two more full scans without our
    // instances, so the baseline holds everything but them (and the next backend starts from clean counters).
    task.message("KSM baseline");
    let base = baseline(paths.sysfs, c1.full_scans)?;
    let restored = guard.restore();
    if let Restored::ChangedMeanwhile(t) = restored {
        return Err(measurement(
            b,
            format!("KSM settings were changed by another user meanwhile ({:?}): figures dropped", t.0),
        ));
    }
    let Some(base) = base else {
        return Err(measurement(
            b,
            format!("KSM's counters did not settle within {BASELINE_MAX:?} after the instances stopped: no baseline"),
        ));
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as f64;
    let saved = c1.pages_sharing.saturating_sub(base.pages_sharing) as f64 * page / f64::from(n);
    let mib = |x: u64| x as f64 / f64::from(1u32 << 20);
    let mergeable = if resident == 0 {
        "unknown: no host process to read /proc/PID/smaps from".to_string()
    } else {
        format!(
            "{:.1} of {:.1} MiB resident in mergeable mappings (VmFlags mg), host processes of all {n} instances",
            mib(mergeable),
            mib(resident)
        )
    };
    let row = KsmRow {
        backend: b.name().into(),
        instances: n,
        saved_bytes_per_instance: saved,
        ksm_cpu_s: cpu0.zip(cpu1).map_or(f64::NAN, |(a, z)| z - a),
        window_s,
        hold_bytes: plan.burst_mib << 20,
        held_before_bytes: held_before,
        held_after_bytes: held_after,
        full_scans: c1.full_scans.saturating_sub(c0.full_scans),
        mergeable,
    };
    task.finish(&format!("{} saved per instance", crate::units::human_bytes(saved)));
    Ok(row)
}

/// The memory experiment, as registered.
pub struct Memory;

impl Experiment for Memory {
    const ID: ExperimentId = ExperimentId::Memory;
    type Plan = MemoryPlan;
    type Row = GiveBackRow;
    const FILES: &'static [&'static str] = &[GiveBackRow::FILE, KsmRow::FILE, PageCacheRow::FILE];

    fn plan(settings: &Settings) -> &MemoryPlan {
        &settings.memory
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let mut rows = Vec::new();
        for &b in cx.backends {
            match give_back(b, Self::plan(cx.plan_for(b)), cx.mode) {
                Ok(r) => rows.push(r),
                Err(e) => cx.failed(Self::ID, b, e)?,
            }
            cx.run_dir.write_csv(&rows)?;
        }
        if cx.settings.memory.page_cache {
            page_cache_rows(cx)?;
        } else {
            cx.warn(format!("{}: page-cache sharing not measured: the plan turns it off", Self::ID));
        }
        let mut ksm_rows: Vec<KsmRow> = Vec::new();
        let paths = KsmPaths::host();
        let skip =
            if !cx.settings.memory.ksm { Some("the plan turns it off".to_string()) } else { ksm_unavailable(paths) };
        match skip {
            Some(why) => cx.warn(format!("{}: KSM sweep not run: {why}", Self::ID)),
            None => {
                for &b in cx.backends {
                    match ksm_sweep(b, Self::plan(cx.plan_for(b)), paths, cx.mode) {
                        Ok(r) => ksm_rows.push(r),
                        Err(e) => cx.failed(Self::ID, b, e)?,
                    }
                }
            }
        }
        cx.run_dir.write_csv(&ksm_rows)?;
        Ok(())
    }
}

/// The page-cache rows of every backend, from one file set built for the run and removed after it
/// (also when a backend fails or the run is interrupted).
fn page_cache_rows(cx: &mut RunContext<'_>) -> Result<(), CompareError> {
    use super::page_cache::{page_cache, FileSet, LAYER_BASE};
    let mib = cx.settings.memory.file_set_mib;
    let set = crate::artifacts::workload_path()
        .map_err(|e| e.to_string())
        .and_then(|w| crate::images::run::vmct_layer(&w).map_err(|e| format!("the vmct layer: {e}")))
        .and_then(|vmct| FileSet::create(Path::new(LAYER_BASE), mib, vmct).map_err(|e| e.to_string()));
    let set = match set {
        Ok(s) => s,
        Err(e) => {
            cx.warn(format!("{}: page-cache sharing not measured: {e}", Memory::ID));
            return Ok(());
        }
    };
    let mut rows: Vec<PageCacheRow> = Vec::new();
    for &b in cx.backends {
        match page_cache(b, Memory::plan(cx.plan_for(b)), &set, cx.mode) {
            Ok(r) => rows.push(r),
            Err(e) => cx.failed(Memory::ID, b, e)?,
        }
        cx.run_dir.write_csv(&rows)?;
    }
    drop(set);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::fake::FakeBackend;

    #[test]
    fn held_memory_is_the_cgroup_usage_else_the_host_process_rss() {
        let st = InstanceStats { rss_bytes: Some(5), cgroup_usage_bytes: Some(7), ..Default::default() };
        assert_eq!(held(&st).unwrap().0, 7);
        assert_eq!(held(&InstanceStats { rss_bytes: Some(5), ..Default::default() }).unwrap().0, 5);
        assert!(held(&InstanceStats::default()).is_none());
    }

    #[test]
    fn plans_read_back_and_old_run_json_files_get_the_default() {
        let p = MemoryPlan::quick();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["after_s"], 10.0);
        assert_eq!(serde_json::from_value::<MemoryPlan>(v).unwrap(), p);
        assert_eq!(MemoryPlan::default(), MemoryPlan::default_plan());
    }

    /// A workload that never reports its burst is an error naming what arrived, not a row.
    #[test]
    fn a_backend_whose_workload_skips_the_burst_is_a_measurement_error() {
        let b = FakeBackend::new("fake", 1 << 20);
        let mut p = MemoryPlan::quick();
        p.timeout = Duration::from_millis(200);
        let e = give_back(&b, &p, Mode::Quiet).unwrap_err().to_string();
        assert!(e.contains("fake") && e.contains("burst.touched") && e.contains("Done"), "{e}");
    }

    #[test]
    fn the_process_tree_holds_the_children_of_children() {
        let mut c = std::process::Command::new("sh").args(["-c", "sleep 30 & wait"]).spawn().unwrap();
        let t0 = Instant::now();
        while process_tree(c.id()).len() < 2 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let tree = process_tree(std::process::id());
        assert!(tree.contains(&c.id()), "{tree:?}");
        let below = process_tree(c.id());
        for p in below.iter().skip(1) {
            let _ = std::process::Command::new("kill").arg(p.to_string()).status();
        }
        assert!(below.len() >= 2, "sh and its sleep: {below:?}");
        let _ = c.kill();
        let _ = c.wait();
    }

    #[test]
    fn ksm_is_not_measured_where_it_is_missing_or_already_used() {
        let d = tempfile::tempdir().unwrap();
        let paths = KsmPaths { sysfs: d.path(), journal: d.path() };
        assert!(ksm_unavailable(paths).unwrap().contains("not available"));
        for (n, v) in ksm::TUNABLES.iter().zip(["1", "100", "20"]) {
            std::fs::write(d.path().join(n), v).unwrap();
        }
        assert!(ksm_unavailable(paths).unwrap().contains("already runs"));
        std::fs::write(d.path().join("run"), "0").unwrap();
        assert_eq!(ksm_unavailable(paths), None);
    }
}
