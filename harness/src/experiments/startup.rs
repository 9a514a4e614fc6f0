//! Startup: launch-to-ready distributions per backend (cold, sequential after warm-up, and under K
//! concurrent launchers), with the backend's phase breakdown.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, Ready};
use crate::compare::{CompareError, Settings};
use crate::progress::{Mode, Task};
use results::stats;
use results::{ExperimentId, PhaseSample, Record, StartupMode, StartupSample, StartupSummary};
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

/// What to measure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupPlan {
    /// Warm-up launches (recorded, excluded from statistics).
    pub warmup: u32,
    /// Measured sequential launches.
    pub runs: u32,
    /// Concurrency levels (each > 1) for the launch-rate measurement.
    pub concurrency: Vec<u32>,
    /// Launches per concurrency level.
    pub concurrent_launches: u32,
    /// Per-launch timeout (JSON: `timeout_s`, seconds).
    #[serde(rename = "timeout_s", with = "super::duration_s")]
    pub timeout: Duration,
}

/// Everything one backend produced.
#[derive(Debug, Default)]
pub struct StartupOutput {
    /// All samples (warm-up flagged).
    pub samples: Vec<StartupSample>,
    /// Phases of every sample.
    pub phases: Vec<PhaseSample>,
    /// One summary per mode.
    pub summaries: Vec<StartupSummary>,
}

fn one(backend: &dyn Backend, timeout: Duration) -> Result<Ready, ExperimentError> {
    let (mut inst, ready) = launch_ready(backend, spec(Scenario::Ready), timeout)?;
    inst.stop(timeout)?;
    Ok(ready)
}

fn record(out: &mut StartupOutput, backend: &str, mode: StartupMode, iteration: u32, warmup: bool, r: &Ready) {
    out.samples.push(StartupSample {
        backend: backend.into(),
        mode,
        iteration,
        warmup,
        launch_to_ready_s: r.launch_to_ready_s(),
        outlier: false,
    });
    for p in &r.phases {
        out.phases.push(PhaseSample {
            backend: backend.into(),
            mode,
            iteration,
            phase: p.name.clone(),
            duration_s: p.duration_s,
        });
    }
}

/// Summarise the non-warm-up samples of one mode and flag their outliers in place.
pub fn summarize_mode(
    samples: &mut [StartupSample],
    backend: &str,
    mode: StartupMode,
    wall_s: Option<f64>,
) -> Option<StartupSummary> {
    let idx: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.backend == backend && s.mode == mode && !s.warmup)
        .map(|(i, _)| i)
        .collect();
    let xs: Vec<f64> = idx.iter().map(|i| samples[*i].launch_to_ready_s).collect();
    let s = stats::summarize(&xs)?;
    for (k, i) in idx.iter().enumerate() {
        samples[*i].outlier = s.outlier[k];
    }
    Some(StartupSummary {
        backend: backend.into(),
        mode,
        n: u32::try_from(s.n).expect("at most the plan's launches, a u32"),
        median_s: s.median,
        p90_s: s.p90,
        p99_s: s.p99,
        min_s: s.min,
        max_s: s.max,
        mean_s: s.mean,
        mad_s: s.mad,
        outliers: u32::try_from(s.outlier.iter().filter(|o| **o).count()).expect("at most n"),
        launches_per_s: wall_s.map(|w| s.n as f64 / w.max(1e-9)),
    })
}

/// Run the startup experiment on one backend.
pub fn run(backend: &dyn Backend, plan: &StartupPlan, mode: Mode) -> Result<StartupOutput, ExperimentError> {
    let name = backend.name().to_string();
    let mut out = StartupOutput::default();
    let total = 1
        + u64::from(plan.warmup)
        + u64::from(plan.runs)
        + plan.concurrency.len() as u64 * u64::from(plan.concurrent_launches);
    let mut task = Task::new(mode, format!("{} {name}", ExperimentId::Startup), total);

    // Cold: the first launch of this backend in this run (images built, caches cold).
    crate::interrupt::check()?;
    let r = one(backend, plan.timeout)?;
    record(&mut out, &name, StartupMode::Cold, 0, false, &r);
    task.inc();

    for i in 0..plan.warmup + plan.runs {
        crate::interrupt::check()?;
        let r = one(backend, plan.timeout)?;
        let warm = i < plan.warmup;
        record(&mut out, &name, StartupMode::Sequential, if warm { i } else { i - plan.warmup }, warm, &r);
        task.inc();
    }
    let mut summaries = Vec::new();
    summaries.extend(summarize_mode(&mut out.samples, &name, StartupMode::Cold, None));
    summaries.extend(summarize_mode(&mut out.samples, &name, StartupMode::Sequential, None));
    if let Some(s) = summaries.last() {
        task.message(format!("median {}", crate::units::human_secs(s.median_s)));
    }

    for &k in plan.concurrency.iter().filter(|k| **k > 1) {
        let mode = StartupMode::Concurrent(k);
        let per = plan.concurrent_launches.div_ceil(k).max(1);
        let t0 = Instant::now();
        let task_ref = std::sync::Mutex::new(&mut task);
        let results: Vec<Result<Vec<Ready>, ExperimentError>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..k)
                .map(|_| {
                    s.spawn(|| {
                        let mut v = Vec::new();
                        for _ in 0..per {
                            crate::interrupt::check()?;
                            v.push(one(backend, plan.timeout)?);
                            if let Ok(mut t) = task_ref.lock() {
                                t.inc();
                            }
                        }
                        Ok(v)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("launcher thread panicked")).collect()
        });
        let wall = t0.elapsed().as_secs_f64();
        let mut it = 0;
        for r in results {
            for ready in r? {
                record(&mut out, &name, mode, it, false, &ready);
                it += 1;
            }
        }
        summaries.extend(summarize_mode(&mut out.samples, &name, mode, Some(wall)));
    }
    out.summaries = summaries;
    let seq = out.summaries.iter().find(|s| s.mode == StartupMode::Sequential);
    task.finish(&seq.map(|s| format!("median {}", crate::units::human_secs(s.median_s))).unwrap_or_default());
    Ok(out)
}

/// The startup experiment, as registered.
pub struct Startup;

impl Experiment for Startup {
    const ID: ExperimentId = ExperimentId::Startup;
    type Plan = StartupPlan;
    type Row = StartupSummary;
    const FILES: &'static [&'static str] = &[StartupSummary::FILE, StartupSample::FILE, PhaseSample::FILE];

    fn plan(settings: &Settings) -> &StartupPlan {
        &settings.startup
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let (mut samples, mut phases, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for b in cx.backends {
            cx.on_backend(*b);
            match run(*b, Self::plan(cx.plan_for(*b)), cx.mode) {
                Ok(o) => {
                    samples.extend(o.samples);
                    phases.extend(o.phases);
                    sums.extend(o.summaries);
                }
                Err(e) => cx.failed(Self::ID, *b, e)?,
            }
            cx.run_dir.write_csv(&samples)?;
            cx.run_dir.write_csv(&phases)?;
            cx.run_dir.write_csv(&sums)?;
        }
        cx.outcome.startup_medians = sums
            .iter()
            .filter(|s| s.mode == StartupMode::Sequential)
            .map(|s| (s.backend.clone(), s.median_s, s.n))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::fake::FakeBackend;

    #[test]
    fn records_cold_warmup_sequential_and_concurrent() {
        let b = FakeBackend::new("fake", 1);
        let plan = StartupPlan {
            warmup: 2,
            runs: 5,
            concurrency: vec![1, 3],
            concurrent_launches: 6,
            timeout: Duration::from_secs(1),
        };
        let out = run(&b, &plan, Mode::Quiet).unwrap();
        let count = |m: &str, w: bool| out.samples.iter().filter(|s| s.mode.to_string() == m && s.warmup == w).count();
        assert_eq!(count("cold", false), 1);
        assert_eq!(count("sequential", true), 2);
        assert_eq!(count("sequential", false), 5);
        assert_eq!(count("concurrent-3", false), 6);
        let modes: Vec<_> = out.summaries.iter().map(|s| (s.mode, s.n)).collect();
        assert_eq!(modes, vec![(StartupMode::Cold, 1), (StartupMode::Sequential, 5), (StartupMode::Concurrent(3), 6)]);
        assert!(out.summaries[2].launches_per_s.unwrap() > 0.0);
        assert!((out.summaries[1].median_s - 1e-3).abs() < 1e-12);
        assert_eq!(out.phases.len(), out.samples.len());
        // Everything launched was stopped.
        assert_eq!(b.used.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failing_backend_ends_with_its_error() {
        let mut b = FakeBackend::new("fake", 1);
        b.fail_after = Some(3);
        let plan = StartupPlan {
            warmup: 1,
            runs: 10,
            concurrency: vec![],
            concurrent_launches: 0,
            timeout: Duration::from_secs(1),
        };
        let e = run(&b, &plan, Mode::Quiet).unwrap_err().to_string();
        assert!(e.contains("fake limit"), "{e}");
    }

    #[test]
    fn outliers_are_flagged_in_the_samples() {
        let mut v: Vec<StartupSample> = [1.0, 1.1, 0.9, 1.0, 1.05, 9.0]
            .iter()
            .enumerate()
            .map(|(i, x)| StartupSample {
                backend: "b".into(),
                mode: StartupMode::Sequential,
                iteration: u32::try_from(i).unwrap(),
                warmup: false,
                launch_to_ready_s: *x,
                outlier: false,
            })
            .collect();
        let s = summarize_mode(&mut v, "b", StartupMode::Sequential, None).unwrap();
        assert_eq!(s.outliers, 1);
        assert!(v[5].outlier && !v[0].outlier);
        assert_eq!(s.n, 6);
    }
}
