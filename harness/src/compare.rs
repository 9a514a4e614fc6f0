//! `vmct compare`: one plan run on every available backend, written to a run directory, rendered as a
//! report. Partial results are written after each experiment, so an interrupted run still has data.
use crate::backend::Backend;
use crate::experiments::{density, overhead, snapshot, startup, ExperimentError};
use crate::progress::{self, Mode};
use results::env::LoadSnapshot;
use results::{HostEnv, Plan, RunDir, RunMeta};
use std::path::PathBuf;
use std::time::Duration;
use workloads::scenario::Scenario;

/// The experiments `compare` can run.
pub const EXPERIMENTS: &[&str] = &["startup", "overhead", "density", "isolation", "snapshot"];

/// Errors that stop the whole run (a failing backend only stops its own experiment).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The run directory could not be written.
    #[error(transparent)]
    RunDir(#[from] results::RunDirError),
    /// Stopped by Ctrl-C.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// No backend can run here.
    #[error("no selected backend is available on this host: {0}")]
    NoBackends(String),
}

/// The knobs of a run; [`Settings::quick`] and [`Settings::default_plan`] are the two presets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Experiments to run, from [`EXPERIMENTS`].
    pub experiments: Vec<String>,
    /// Startup plan.
    pub startup: startup::StartupPlan,
    /// Density plan.
    pub density: density::DensityPlan,
    /// Overhead plan.
    pub overhead: overhead::OverheadPlan,
    /// Snapshot plan.
    pub snapshot: snapshot::SnapshotPlan,
    /// Blast-radius settings (None: probes only).
    pub blast: Option<crate::isolation::blast::BlastOptions>,
    /// Whether this is the quick preset.
    pub quick: bool,
}

impl Settings {
    /// `--quick`: under a minute on a 2-core host.
    pub fn quick(mem_available: u64) -> Settings {
        Settings {
            experiments: EXPERIMENTS.iter().map(|s| s.to_string()).collect(),
            startup: startup::StartupPlan {
                warmup: 3,
                runs: 30,
                concurrency: vec![4],
                concurrent_launches: 24,
                timeout: Duration::from_secs(20),
            },
            density: density::DensityPlan {
                hold_mib: 4,
                budget_bytes: mem_available / 2,
                max_instances: 40,
                floor_bytes: floor(mem_available),
                timeout: Duration::from_secs(20),
            },
            overhead: overhead::OverheadPlan {
                scenarios: vec![
                    Scenario::Cpu { iters: 100_000 },
                    Scenario::Mem { mib: 16 },
                    Scenario::Syscall { n: 100_000 },
                    Scenario::Io { mib: 8 },
                ],
                runs: 2,
                timeout: Duration::from_secs(60),
            },
            snapshot: snapshot::SnapshotPlan::quick(),
            blast: Some(crate::isolation::blast::BlastOptions {
                victim_iters: 50_000,
                rounds: 2,
                hog_secs: 10.0,
                hog_mib: 256,
                ..Default::default()
            }),
            quick: true,
        }
    }

    /// The default plan: stable p99s, a 1000-instance density sweep when the budget allows.
    pub fn default_plan(mem_available: u64) -> Settings {
        Settings {
            experiments: EXPERIMENTS.iter().map(|s| s.to_string()).collect(),
            startup: startup::StartupPlan {
                warmup: 10,
                runs: 300,
                concurrency: vec![2, 4, 8],
                concurrent_launches: 160,
                timeout: Duration::from_secs(30),
            },
            density: density::DensityPlan {
                hold_mib: 4,
                budget_bytes: mem_available / 2,
                max_instances: 1000,
                floor_bytes: floor(mem_available),
                timeout: Duration::from_secs(30),
            },
            overhead: overhead::OverheadPlan {
                scenarios: vec![
                    Scenario::Cpu { iters: 1_000_000 },
                    Scenario::Mem { mib: 64 },
                    Scenario::Syscall { n: 1_000_000 },
                    Scenario::Io { mib: 32 },
                ],
                runs: 5,
                timeout: Duration::from_secs(120),
            },
            snapshot: snapshot::SnapshotPlan::default_plan(),
            blast: Some(crate::isolation::blast::BlastOptions { hog_secs: 20.0, rounds: 3, ..Default::default() }),
            quick: false,
        }
    }

    /// The plan as recorded in run.json.
    pub fn to_plan(&self, backends: &[String]) -> Plan {
        Plan {
            experiments: self.experiments.clone(),
            backends: backends.to_vec(),
            quick: self.quick,
            warmup: self.startup.warmup,
            startup_runs: self.startup.runs,
            concurrency: self.startup.concurrency.clone(),
            density_hold_mib: self.density.hold_mib,
            density_budget_bytes: self.density.budget_bytes,
            density_max_instances: self.density.max_instances,
            overhead_runs: self.overhead.runs,
        }
    }
}

/// Keep at least a quarter of available memory (and 1 GiB) free whatever the budget says.
fn floor(mem_available: u64) -> u64 {
    (mem_available / 4).max(1 << 30).min(mem_available)
}

/// A new run id: UTC date-time plus the harness pid.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (d, s) = (secs / 86400, secs % 86400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{}", s / 3600, s % 3600 / 60, s % 60, std::process::id())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// What the run produced, for the CLI's summary.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The report, if rendered.
    pub report: Option<PathBuf>,
    /// Backend/experiment failures (the run went on).
    pub failures: Vec<String>,
    /// Sequential startup medians: (backend, seconds, n).
    pub startup_medians: Vec<(String, f64, u32)>,
    /// Density: (backend, instances, bytes per instance).
    pub density: Vec<(String, u32, f64)>,
}

/// Run the experiments on `backends`, writing into `out`.
pub fn run(
    backends: &[Box<dyn Backend>],
    settings: &Settings,
    out: PathBuf,
    command: Vec<String>,
    host: HostEnv,
    mode: Mode,
) -> Result<Outcome, CompareError> {
    let rd = RunDir::create(&out)?;
    let infos: Vec<results::BackendInfo> = backends.iter().map(|b| b.info()).collect();
    let usable: Vec<&dyn Backend> =
        backends.iter().zip(&infos).filter(|(_, i)| i.available).map(|(b, _)| b.as_ref()).collect();
    if usable.is_empty() {
        let why =
            infos.iter().map(|i| format!("{}: {}", i.name, i.reason.clone().unwrap_or_default())).collect::<Vec<_>>();
        return Err(CompareError::NoBackends(why.join("; ")));
    }
    for i in infos.iter().filter(|i| !i.available) {
        progress::note(mode, &format!("skipping {}: {}", i.name, i.reason.as_deref().unwrap_or("unavailable")));
    }
    let mut meta = RunMeta {
        schema_version: results::rundir::SCHEMA_VERSION,
        id: out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        started_unix_s: unix_now(),
        finished_unix_s: 0.0,
        vmct_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: Some(crate::artifacts::GIT_COMMIT.to_string()).filter(|s| !s.is_empty()),
        command,
        plan: settings.to_plan(&infos.iter().map(|i| i.name.clone()).collect::<Vec<_>>()),
        caveats: host.caveats(),
        host,
        backends: infos,
        attack_surface: Vec::new(),
        load_before: LoadSnapshot::capture(),
        load_after: None,
        harness_timestamp_cost_s: Some(crate::experiments::timestamp_cost_s(10_000)),
    };
    rd.write_meta(&meta)?;
    let mut failures = Vec::new();
    let wants = |e: &str| settings.experiments.iter().any(|x| x == e);

    let mut startup_medians = Vec::new();
    if wants("startup") {
        let (mut samples, mut phases, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for b in &usable {
            match startup::run(*b, &settings.startup, mode) {
                Ok(o) => {
                    samples.extend(o.samples);
                    phases.extend(o.phases);
                    sums.extend(o.summaries);
                }
                Err(e) => record_failure(&mut failures, mode, "startup", *b, e)?,
            }
            rd.write_csv(&samples)?;
            rd.write_csv(&phases)?;
            rd.write_csv(&sums)?;
        }
        startup_medians =
            sums.iter().filter(|s| s.mode == "sequential").map(|s| (s.backend.clone(), s.median_s, s.n)).collect();
    }

    if wants("overhead") {
        let mut rows = Vec::new();
        for b in &usable {
            match overhead::run(*b, &settings.overhead, mode) {
                Ok(r) => rows.extend(r),
                Err(e) => record_failure(&mut failures, mode, "overhead", *b, e)?,
            }
        }
        overhead::add_ratios(&mut rows);
        meta.caveats.extend(overhead::check_mismatches(&rows));
        rd.write_csv(&rows)?;
    }

    let mut density_out = Vec::new();
    if wants("density") {
        let (mut steps, mut fits) = (Vec::new(), Vec::new());
        for b in &usable {
            match density::sweep(*b, &settings.density, &density::ProcMeter, mode) {
                Ok(o) => {
                    density_out.push((o.fit.backend.clone(), o.fit.instances, o.fit.slope_bytes));
                    steps.extend(o.steps);
                    fits.push(o.fit);
                }
                Err(e) => record_failure(&mut failures, mode, "density", *b, e)?,
            }
            rd.write_csv(&steps)?;
            rd.write_csv(&fits)?;
        }
    }

    if wants("isolation") {
        match isolation(&usable, settings, mode) {
            Ok(o) => {
                rd.write_csv(&o.rows)?;
                rd.write_csv(&o.blast)?;
                rd.write_csv(&o.surface)?;
                meta.attack_surface = o.surface;
                for n in o.notes {
                    progress::note(mode, &format!("isolation: {n}"));
                }
            }
            Err(crate::isolation::IsolationError::Interrupted(i)) => return Err(i.into()),
            Err(e) => {
                let msg = format!("isolation: {e}");
                progress::note(mode, &format!("warning: {msg}"));
                failures.push(msg);
            }
        }
    }

    if wants("snapshot") {
        let mut rows = Vec::new();
        for b in &usable {
            match snapshot::run(*b, &settings.snapshot, mode) {
                Ok(r) => rows.extend(r),
                Err(e) => record_failure(&mut failures, mode, "snapshot", *b, e)?,
            }
            rd.write_csv(&rows)?;
        }
    }

    let after = LoadSnapshot::capture();
    meta.caveats.extend(load_caveats(&meta.load_before, &after, meta.host.cores));
    meta.load_after = Some(after);
    meta.finished_unix_s = unix_now();
    rd.write_meta(&meta)?;
    Ok(Outcome { run_dir: out, report: None, failures, startup_medians, density: density_out })
}

/// Note a backend's failed experiment and go on; a Ctrl-C stops the whole run.
fn record_failure(
    failures: &mut Vec<String>,
    mode: Mode,
    what: &str,
    b: &dyn Backend,
    e: ExperimentError,
) -> Result<(), CompareError> {
    if let ExperimentError::Interrupted(i) = e {
        return Err(i.into());
    }
    let msg = format!("{what} on {}: {e}", b.name());
    progress::note(mode, &format!("warning: {msg}"));
    failures.push(msg);
    Ok(())
}

/// The isolation experiment (probe catalogue + blast radius) on the usable backends.
pub fn isolation(
    backends: &[&dyn Backend],
    settings: &Settings,
    mode: Mode,
) -> Result<crate::isolation::IsolationOutcome, crate::isolation::IsolationError> {
    let workload =
        crate::artifacts::workload_path().map_err(|e| crate::isolation::IsolationError::Setup(e.to_string()))?;
    let work_dir = crate::artifacts::cache_dir().join("work");
    let mut opts = crate::isolation::IsolationOptions::new(workload, work_dir);
    opts.blast = settings.blast.clone();
    crate::isolation::run_isolation(backends, &opts, &|m| progress::note(mode, m))
}

/// Caveats from load measured before and after the run: other work on the host, or CPU stolen by the
/// hypervisor, changes what the timings mean.
pub fn load_caveats(before: &LoadSnapshot, after: &LoadSnapshot, cores: u32) -> Vec<String> {
    let mut c = Vec::new();
    let busy = 0.5 * cores as f64;
    if before.loadavg_1m > busy {
        c.push(format!(
            "The host was busy before the run (1-minute load {:.2} on {cores} cores): timings include contention.",
            before.loadavg_1m
        ));
    }
    let total = after.total_cpu_s - before.total_cpu_s;
    let steal = after.steal_s - before.steal_s;
    if total > 0.0 && steal / total > 0.02 {
        c.push(format!(
            "{:.1}% of CPU time was stolen by the hypervisor during the run: other tenants competed for the CPUs.",
            100.0 * steal / total
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_steal_become_caveats() {
        let b = LoadSnapshot { loadavg_1m: 3.0, steal_s: 10.0, total_cpu_s: 100.0, mem_available_bytes: 0 };
        let a = LoadSnapshot { loadavg_1m: 1.0, steal_s: 15.0, total_cpu_s: 200.0, mem_available_bytes: 0 };
        let c = load_caveats(&b, &a, 2);
        assert_eq!(c.len(), 2);
        assert!(c[0].contains("load 3.00") && c[1].contains("5.0% of CPU time was stolen"));
        let quiet = LoadSnapshot { loadavg_1m: 0.1, ..a.clone() };
        assert!(load_caveats(&quiet, &quiet, 2).is_empty());
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261128-143000-".len() + std::process::id().to_string().len());
        assert!(id.starts_with("20"));
    }
}
