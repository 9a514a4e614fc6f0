//! Overhead: the `cpu`, `mem`, `syscall` and `io` scenarios on each backend, as ratios to the process
//! baseline measured in the same run. A scenario a backend cannot run by design is a row with
//! `supported=false` and the reason, never a zero; a run that failed (a `failed` message, or a nonzero
//! `done` status) is a row with `failed=true` and the error, never `unsupported`.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{collect_events, Backend, Event};
use crate::compare::{CompareError, Settings};
use crate::progress::{Mode, Task};
use results::stats;
use results::{ExperimentId, OverheadRow, Record};
use std::collections::BTreeMap;
use std::time::Duration;
use workloads::scenario::Scenario;

/// What to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverheadPlan {
    /// Scenarios with their sizes (JSON: their words, e.g. `"cpu --iters 100000"`).
    #[serde(with = "super::scenario_words")]
    pub scenarios: Vec<Scenario>,
    /// Repetitions of each.
    pub runs: u32,
    /// Per-run timeout (JSON: `timeout_s`, seconds).
    #[serde(rename = "timeout_s", with = "super::duration_s")]
    pub timeout: Duration,
}

/// Run all scenarios on one backend; rows without ratios (see [`add_ratios`]).
pub fn run(backend: &dyn Backend, plan: &OverheadPlan, mode: Mode) -> Result<Vec<OverheadRow>, ExperimentError> {
    let name = backend.name().to_string();
    let mut task = Task::new(
        mode,
        format!("{} {name}", ExperimentId::Overhead),
        plan.scenarios.len() as u64 * u64::from(plan.runs),
    );
    let mut rows = Vec::new();
    for sc in &plan.scenarios {
        // metric -> (unit, values)
        let mut metrics: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
        let mut unsupported: Option<String> = None;
        let mut failed: Option<String> = None;
        for _ in 0..plan.runs {
            crate::interrupt::check()?;
            let (mut inst, _) = launch_ready(backend, spec(*sc), plan.timeout)?;
            let events = collect_events(inst.as_mut(), plan.timeout)?;
            inst.stop(plan.timeout)?;
            task.inc();
            for e in events {
                match e {
                    // The count of timed iterations is the same every run: not a figure of the backend.
                    Event::Result { name, .. } if name == workloads::protocol::CPU_ITERATIONS_TIMED => {}
                    Event::Result { name, value, unit } => {
                        metrics.entry(name).or_insert_with(|| (unit, Vec::new())).1.push(value)
                    }
                    Event::Unsupported { reason, .. } => unsupported = Some(reason),
                    Event::Failed { reason, .. } => failed = Some(reason),
                    Event::Done { status } if status != 0 && failed.is_none() => {
                        failed = Some(format!("the workload ended with status {status}"))
                    }
                    _ => {}
                }
            }
            if unsupported.is_some() || failed.is_some() {
                break;
            }
        }
        if unsupported.is_some() || failed.is_some() {
            rows.push(OverheadRow {
                backend: name.clone(),
                scenario: sc.name().into(),
                metric: String::new(),
                unit: String::new(),
                n: 0,
                median: f64::NAN,
                mad: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                ratio_to_process: None,
                supported: failed.is_some(),
                failed: failed.is_some(),
                reason: failed.or(unsupported).unwrap_or_default(),
            });
            continue;
        }
        for (metric, (unit, values)) in metrics {
            let Some(s) = stats::summarize(&values) else { continue };
            rows.push(OverheadRow {
                backend: name.clone(),
                scenario: sc.name().into(),
                metric,
                unit,
                n: u32::try_from(s.n).expect("at most the plan's runs, a u32"),
                median: s.median,
                mad: s.mad,
                min: s.min,
                max: s.max,
                ratio_to_process: None,
                supported: true,
                reason: String::new(),
                failed: false,
            });
        }
    }
    task.finish("");
    Ok(rows)
}

/// Fill `ratio_to_process` (median / the `baseline` backend's median of the same metric; `baseline` is the
/// backend of kind [`results::BackendKind::Baseline`], the process). Check values (unit `u32`) get a ratio
/// too: 1.0 means the backend computed exactly what the process did.
pub fn add_ratios(rows: &mut [OverheadRow], baseline: &str) {
    let base: BTreeMap<String, f64> =
        rows.iter().filter(|r| r.backend == baseline && r.supported).map(|r| (r.metric.clone(), r.median)).collect();
    for r in rows.iter_mut().filter(|r| r.supported) {
        r.ratio_to_process = base.get(&r.metric).filter(|b| **b != 0.0).map(|b| r.median / b);
    }
}

/// Metrics whose check value differs from the process baseline (a correctness failure).
pub fn check_mismatches(rows: &[OverheadRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.unit == "u32" && r.ratio_to_process.is_some_and(|x| x != 1.0))
        .map(|r| format!("{} computed a different {} than the process baseline", r.backend, r.metric))
        .collect()
}

/// The overhead experiment, as registered.
pub struct Overhead;

impl Experiment for Overhead {
    const ID: ExperimentId = ExperimentId::Overhead;
    type Plan = OverheadPlan;
    type Row = OverheadRow;
    const FILES: &'static [&'static str] = &[OverheadRow::FILE];

    fn plan(settings: &Settings) -> &OverheadPlan {
        &settings.overhead
    }

    /// Every backend's rows, then the ratios to the process baseline and a caveat per check value that
    /// differs between backends.
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let mut rows = Vec::new();
        for b in cx.backends {
            cx.on_backend(*b);
            match run(*b, Self::plan(cx.plan_for(*b)), cx.mode) {
                Ok(r) => rows.extend(r),
                Err(e) => cx.failed(Self::ID, *b, e)?,
            }
        }
        if let Some(base) = cx.backends.iter().find(|b| crate::isolation::is_baseline(**b)) {
            add_ratios(&mut rows, base.name());
        }
        cx.meta.caveats.extend(check_mismatches(&rows));
        cx.run_dir.write_csv(&rows)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::fake::FakeBackend;

    #[test]
    fn ratios_against_the_process_baseline_and_unsupported_rows() {
        let mut p = FakeBackend::new("process", 1);
        p.rate = 200.0;
        let mut v = FakeBackend::new("vm", 1);
        v.rate = 100.0;
        v.supports_syscall = false;
        let plan = OverheadPlan {
            scenarios: vec![Scenario::Cpu { iters: 1 }, Scenario::Syscall { n: 1 }],
            runs: 3,
            timeout: Duration::from_secs(1),
        };
        let mut rows = run(&p, &plan, Mode::Quiet).unwrap();
        rows.extend(run(&v, &plan, Mode::Quiet).unwrap());
        add_ratios(&mut rows, "process");
        let get = |b: &str, m: &str| rows.iter().find(|r| r.backend == b && r.metric == m).unwrap();
        assert_eq!(get("vm", "cpu.sha256").ratio_to_process, Some(0.5));
        assert_eq!(get("vm", "cpu.sha256").n, 3);
        assert_eq!(get("process", "syscall.getpid").ratio_to_process, Some(1.0));
        let uns = rows.iter().find(|r| r.backend == "vm" && r.scenario == "syscall").unwrap();
        assert!(!uns.supported && uns.reason == "no syscalls" && uns.median.is_nan());
        assert!(check_mismatches(&rows).is_empty());
    }

    #[test]
    fn a_failed_run_is_a_failure_row_not_unsupported() {
        let mut v = FakeBackend::new("container", 1);
        v.io_fails = true;
        let plan = OverheadPlan { scenarios: vec![Scenario::Io { mib: 9 }], runs: 3, timeout: Duration::from_secs(1) };
        let rows = run(&v, &plan, Mode::Quiet).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert!(r.failed && r.supported && r.reason.contains("ENOSPC") && r.median.is_nan(), "{r:?}");
    }
}
