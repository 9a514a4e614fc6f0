//! Capacity planner: how many instances of each backend fit on a target host, and which meet a p99 startup SLO,
//! from the run's measured density slopes and startup percentiles. Every assumption is stated in the output and
//! every figure beyond what was measured is marked as extrapolated. Density slopes, p99 startups and CPU ratios
//! are judged by [`crate::validity`]: a figure the rule refuses is not planned with, and the notes say why.
use crate::data::{Model, RunData};
use crate::units::{fmt_bytes, fmt_secs, sig3};
use crate::validity;
use results::{RunDir, RunDirError};
use serde::Serialize;
use std::fmt;

/// Errors planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The run directory could not be read.
    #[error("planner: {0}")]
    Run(#[from] RunDirError),
    /// The run has neither density nor startup results, so there is nothing to plan from.
    #[error(
        "planner: {0} has no density_summary.csv and no startup_summary.csv; run `vmct compare` with the density and startup experiments first"
    )]
    NoData(String),
    /// An input is zero or not finite.
    #[error("planner: invalid input: {0}")]
    Input(String),
}

/// What to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanInput {
    /// Host memory to fill, bytes.
    pub host_mem_bytes: u64,
    /// Host cores.
    pub cores: u32,
    /// Memory each instance's workload keeps resident, bytes.
    pub working_set_bytes: u64,
    /// Startup SLO: p99 launch-to-ready, seconds.
    pub slo_p99_s: f64,
}

impl PlanInput {
    /// The report's default: this run's host memory and cores, 128 MiB working set, 50 ms p99.
    pub fn default_for(run: &RunData) -> PlanInput {
        PlanInput {
            host_mem_bytes: run.meta.host.mem_total_bytes,
            cores: run.meta.host.cores,
            working_set_bytes: 128 << 20,
            slo_p99_s: 0.050,
        }
    }
}

/// The plan for one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendPlan {
    /// Backend name.
    pub backend: String,
    /// Isolation model (`process`, `container`, `microVM (bare guest)`, `microVM (linux guest)`).
    pub model: String,
    /// Measured per-instance overhead beyond the working set held in the sweep, bytes (slope - held).
    pub overhead_per_instance_bytes: Option<f64>,
    /// Planned memory per instance: overhead + working set, bytes.
    pub mem_per_instance_bytes: Option<f64>,
    /// Instances that fit in host memory.
    pub fit_by_memory: Option<u64>,
    /// Instances that fit by CPU: None, since per-instance CPU demand is not measured by vmct.
    pub fit_by_cpu: Option<u64>,
    /// Measured CPU-scenario overhead vs the process baseline (median ratio), when measured.
    pub cpu_overhead_ratio: Option<f64>,
    /// Cores' worth of process-equivalent work, `cores / cpu_overhead_ratio`.
    pub effective_cores: Option<f64>,
    /// Measured p99 launch-to-ready (sequential), seconds; None when not measured or not a possible value (the
    /// notes say why).
    pub p99_startup_s: Option<f64>,
    /// Measured p99 sample count.
    pub p99_samples: Option<u32>,
    /// Whether the measured p99 meets the SLO; None when the p99 is missing or fails [`crate::validity`]'s rule
    /// (e.g. a single launch), so such a backend is never recommended.
    pub meets_slo: Option<bool>,
    /// Isolation failures measured for this backend (all profiles).
    pub isolation_failures: Option<u32>,
    /// Instances reached in the density sweep.
    pub measured_instances: Option<u32>,
    /// Whether `fit_by_memory` goes beyond the measured instance count (or host memory).
    pub extrapolated: bool,
    /// Notes specific to this backend (extrapolation, poor fit, missing data).
    pub notes: Vec<String>,
}

/// The recommended backend and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Backend name.
    pub backend: String,
    /// Its isolation model.
    pub model: String,
    /// Why, in one sentence.
    pub why: String,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanOutput {
    /// The input.
    pub input: PlanInput,
    /// Run id the figures come from.
    pub run_id: String,
    /// Host the run was measured on.
    pub measured_on: String,
    /// One row per backend with data.
    pub backends: Vec<BackendPlan>,
    /// The recommendation (None when no isolating backend meets the SLO with data).
    pub recommended: Option<Recommendation>,
    /// Every assumption the numbers rest on.
    pub assumptions: Vec<String>,
}

/// Plan from a run directory.
pub fn plan(run: &RunDir, input: &PlanInput) -> Result<PlanOutput, PlanError> {
    let data = RunData::load(run)?;
    plan_data(&data, input)
}

/// Plan from an already loaded run.
pub fn plan_data(run: &RunData, input: &PlanInput) -> Result<PlanOutput, PlanError> {
    if input.host_mem_bytes == 0 || input.cores == 0 {
        return Err(PlanError::Input("host memory and cores must be greater than zero".into()));
    }
    if !(input.slo_p99_s.is_finite() && input.slo_p99_s > 0.0) {
        return Err(PlanError::Input(format!("p99 SLO must be a positive duration, got {} s", input.slo_p99_s)));
    }
    if run.density_fit.is_none() && run.startup_summary.is_none() {
        return Err(PlanError::NoData(run.dir.display().to_string()));
    }
    let measured_mem = run.meta.host.mem_total_bytes;
    let mut rows = Vec::new();
    for b in run.backends() {
        let fit = run.density_fit.iter().flatten().find(|f| f.backend == b);
        let st = run.startup_of(&b);
        if fit.is_none() && st.is_none() {
            continue;
        }
        let model = run.model(&b);
        let mut notes = Vec::new();
        let mut extrapolated = false;
        let (overhead, per, fit_mem) = match fit.map(|f| (f, validity::density_slope(f).check())) {
            Some((f, Ok(_))) => {
                let held = (f.hold_mib << 20) as f64;
                let overhead = (f.slope_bytes - held).max(0.0);
                let per = overhead + input.working_set_bytes as f64;
                let fixed = f.intercept_bytes.max(0.0);
                let usable = (input.host_mem_bytes as f64 - fixed).max(0.0);
                // Whole instances, at least 0; `as` saturates at u64::MAX for an absurdly small `per`.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = if per > 0.0 { (usable / per).floor() as u64 } else { 0 };
                if n > u64::from(f.instances) {
                    extrapolated = true;
                    notes.push(format!(
                        "measured up to {} instances on a {} host, extrapolated to {} instances on {}",
                        f.instances,
                        fmt_bytes(measured_mem as f64),
                        n,
                        fmt_bytes(input.host_mem_bytes as f64)
                    ));
                }
                if f.r2 < 0.9 {
                    notes.push(format!("density fit is poor (r² = {}): treat the count as rough", sig3(f.r2)));
                }
                if f.slope_bytes < held {
                    notes.push(format!(
                        "measured slope {} is below the {} MiB held per instance (pages shared or not yet resident)",
                        fmt_bytes(f.slope_bytes),
                        f.hold_mib
                    ));
                }
                (Some(overhead), Some(per), Some(n))
            }
            Some((_, Err(flaw))) => {
                notes.push(format!("density slope {}: cannot plan memory", flaw.describe(fmt_bytes)));
                (None, None, None)
            }
            None => {
                notes.push("no density sweep for this backend".into());
                (None, None, None)
            }
        };
        let cpu_ratio = {
            let r: Vec<f64> = run
                .overhead
                .iter()
                .flatten()
                .filter(|o| o.backend == b && !o.failed && o.scenario == "cpu" && !validity::is_check_value(&o.unit))
                .filter_map(|o| validity::overhead_ratio(o)?.check().ok())
                .collect();
            (!r.is_empty()).then(|| results::stats::median(&r))
        };
        let failures = run
            .isolation
            .as_ref()
            .map(|rows| {
                let n = rows.iter().filter(|r| r.backend == b && r.failure).count();
                u32::try_from(n).expect("fewer than 2^32 isolation rows in memory")
            })
            .filter(|_| run.isolation.iter().flatten().any(|r| r.backend == b));
        let p99 = st.map(validity::startup_p99);
        match p99.map(|f| f.check()) {
            None => notes.push("no startup measurement for this backend".into()),
            Some(Err(flaw)) => {
                notes.push(format!("p99 startup {}: not judged against the SLO", flaw.describe(fmt_secs)))
            }
            Some(Ok(_)) => {}
        }
        if input.cores > run.meta.host.cores {
            if let Some(s) = st {
                notes.push(format!(
                    "p99 startup measured on {} cores with {} samples; not extrapolated to {} cores",
                    run.meta.host.cores, s.n, input.cores
                ));
            }
        }
        rows.push(BackendPlan {
            backend: b.clone(),
            model: model.label().to_string(),
            overhead_per_instance_bytes: overhead,
            mem_per_instance_bytes: per,
            fit_by_memory: fit_mem,
            fit_by_cpu: None,
            cpu_overhead_ratio: cpu_ratio,
            effective_cores: cpu_ratio.filter(|r| *r > 0.0).map(|r| f64::from(input.cores) / r),
            p99_startup_s: p99.and_then(|f| f.shown()),
            p99_samples: st.map(|s| s.n),
            meets_slo: p99.and_then(|f| f.check().ok()).map(|v| v <= input.slo_p99_s),
            isolation_failures: failures,
            measured_instances: fit.map(|f| f.instances),
            extrapolated,
            notes,
        });
    }
    let recommended = recommend(run, &rows);
    let mut assumptions = vec![
        format!(
            "Figures come from run {} measured on {} ({}).",
            run.meta.id,
            run.host_label(),
            run.meta.host.kvm.as_str()
        ),
        format!(
            "Memory per instance = measured density slope − the working set held during the sweep + your working set \
             ({}); the working set is assumed resident, not shared between instances (no KSM, no page sharing) \
             and not overcommitted.",
            fmt_bytes(input.working_set_bytes as f64)
        ),
        "Instances by memory = (host memory − fitted fixed cost (intercept)) / memory per instance, rounded down; \
         no memory is reserved for the host OS beyond that."
            .to_string(),
        "The density slope is assumed to stay linear beyond the largest count measured.".to_string(),
        "Instances by CPU are not computed: vmct does not measure a workload's CPU demand. The CPU overhead ratio \
         vs the process baseline (cpu scenario) is shown; effective cores = cores / that ratio."
            .to_string(),
        format!(
            "Startup SLO: measured sequential p99 launch-to-ready ≤ {}; p99 is measured on this run's host and is \
             not scaled to the target host.",
            fmt_secs(input.slo_p99_s)
        ),
        "Recommendation: among isolating backends (not the process baseline) that meet the SLO, the one with no \
         isolation failures and the most instances by memory; ties go to the stronger isolation model (microVM)."
            .to_string(),
    ];
    if input.host_mem_bytes > measured_mem && measured_mem > 0 {
        assumptions.push(format!(
            "The target host ({}) has more memory than the measured host ({}): counts above the measured instances \
             are extrapolated.",
            fmt_bytes(input.host_mem_bytes as f64),
            fmt_bytes(measured_mem as f64)
        ));
    }
    Ok(PlanOutput {
        input: *input,
        run_id: run.meta.id.clone(),
        measured_on: run.host_label(),
        backends: rows,
        recommended,
        assumptions,
    })
}

fn recommend(run: &RunData, rows: &[BackendPlan]) -> Option<Recommendation> {
    let cands: Vec<&BackendPlan> = rows
        .iter()
        .filter(|r| run.model(&r.backend) != Model::Process)
        .filter(|r| r.meets_slo == Some(true))
        .filter(|r| r.isolation_failures.unwrap_or(0) == 0)
        .collect();
    // Tie-break by isolation boundary: own kernel per VM, then a user-space kernel, then a shared kernel.
    let strength = |r: &BackendPlan| match run.model(&r.backend) {
        Model::MicrovmBare | Model::MicrovmLinux => 2,
        Model::UserSpaceKernel => 1,
        _ => 0,
    };
    let best = cands.iter().max_by(|a, b| {
        a.fit_by_memory.unwrap_or(0).cmp(&b.fit_by_memory.unwrap_or(0)).then(strength(a).cmp(&strength(b)))
    })?;
    let fit = best.fit_by_memory.map_or("an unmeasured number of".to_string(), |n| n.to_string());
    Some(Recommendation {
        backend: best.backend.clone(),
        model: best.model.clone(),
        why: format!(
            "meets the p99 SLO ({} measured), {} isolation failures, and fits {} instances by memory{}",
            best.p99_startup_s.map_or("n/a".into(), fmt_secs),
            best.isolation_failures.map_or("unmeasured".into(), |f| f.to_string()),
            fit,
            if best.extrapolated { " (extrapolated)" } else { "" }
        ),
    })
}

impl fmt::Display for PlanOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.input;
        writeln!(
            f,
            "Capacity plan: {} host memory, {} cores, {} working set per instance, p99 startup SLO {}",
            fmt_bytes(i.host_mem_bytes as f64),
            i.cores,
            fmt_bytes(i.working_set_bytes as f64),
            fmt_secs(i.slo_p99_s)
        )?;
        writeln!(f, "from run {} measured on {}", self.run_id, self.measured_on)?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<22} {:<22} {:>12} {:>12} {:>10} {:>10} {:>5} {:>9}",
            "backend", "model", "mem/inst", "fit (mem)", "eff.cores", "p99", "SLO", "iso.fail"
        )?;
        for b in &self.backends {
            let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:<22} {:<22} {:>12} {:>12} {:>10} {:>10} {:>5} {:>9}",
                b.backend,
                b.model,
                opt(b.mem_per_instance_bytes.map(fmt_bytes)),
                opt(b.fit_by_memory.map(|n| format!("{n}{}", if b.extrapolated { "*" } else { "" }))),
                opt(b.effective_cores.map(sig3)),
                opt(b.p99_startup_s.map(fmt_secs)),
                opt(b.meets_slo.map(|m| if m { "yes".into() } else { "no".into() })),
                opt(b.isolation_failures.map(|n| n.to_string())),
            )?;
        }
        writeln!(f, "(* extrapolated beyond the measured instance count)")?;
        writeln!(f)?;
        match &self.recommended {
            Some(r) => writeln!(f, "Recommended: {} ({}): {}", r.backend, r.model, r.why)?,
            None => writeln!(f, "Recommended: none: no isolating backend meets the SLO without isolation failures")?,
        }
        let notes: Vec<String> =
            self.backends.iter().flat_map(|b| b.notes.iter().map(move |n| format!("{}: {n}", b.backend))).collect();
        if !notes.is_empty() {
            writeln!(f, "\nNotes:")?;
            for n in notes {
                writeln!(f, "  - {n}")?;
            }
        }
        writeln!(f, "\nAssumptions:")?;
        for a in &self.assumptions {
            writeln!(f, "  - {a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::{DensityFit, StartupSummary};

    const MIB: u64 = 1 << 20;

    fn fit(backend: &str, slope_mib: f64, instances: u32) -> DensityFit {
        DensityFit {
            backend: backend.into(),
            hold_mib: 16,
            instances,
            stop_reason: results::StopReason::Count.into(),
            slope_bytes: slope_mib * MIB as f64,
            intercept_bytes: 0.0,
            r2: 0.99,
            slab_slope_bytes: 0.0,
            vmm_overhead_bytes: None,
            instances_per_gib: 1024.0 / slope_mib,
            launch_at_max_s: 0.01,
            teardown_s: 0.1,
            harness_step_s: None,
            fit_from_instances: None,
            drift_bytes_per_s: None,
            guest_mem_bytes: None,
        }
    }

    fn startup(backend: &str, p99: f64) -> StartupSummary {
        StartupSummary {
            backend: backend.into(),
            mode: results::StartupMode::Sequential,
            n: 20,
            median_s: p99 / 2.0,
            p90_s: p99 * 0.9,
            p99_s: p99,
            min_s: p99 / 3.0,
            max_s: p99,
            mean_s: p99 / 2.0,
            mad_s: 0.0,
            outliers: 0,
            launches_per_s: None,
        }
    }

    fn run(dir: &std::path::Path) -> RunDir {
        let rd = RunDir::create(dir).unwrap();
        rd.write_meta(&crate::fixture::meta()).unwrap();
        // container: 16 MiB held + 4 MiB overhead; microvm: 16 + 8; crun: 16 + 4 but slow to start.
        rd.write_csv(&[fit("container", 20.0, 10), fit("microvm", 24.0, 10), fit("crun", 20.0, 10)]).unwrap();
        rd.write_csv(&[startup("container", 0.040), startup("microvm", 0.010), startup("crun", 0.060)]).unwrap();
        rd
    }

    #[test]
    fn known_inputs_give_known_counts() {
        let d = tempfile::tempdir().unwrap();
        let rd = run(d.path());
        let input =
            PlanInput { host_mem_bytes: 13_200 * MIB, cores: 64, working_set_bytes: 128 * MIB, slo_p99_s: 0.050 };
        let out = plan(&rd, &input).unwrap();
        let row = |b: &str| out.backends.iter().find(|r| r.backend == b).unwrap().clone();
        let c = row("container");
        assert_eq!(c.overhead_per_instance_bytes, Some(4.0 * MIB as f64));
        assert_eq!(c.mem_per_instance_bytes, Some(132.0 * MIB as f64));
        assert_eq!(c.fit_by_memory, Some(100));
        assert!(
            c.extrapolated && c.notes[0].contains("measured up to 10 instances on a 24.0 GiB host"),
            "{:?}",
            c.notes
        );
        assert_eq!(c.meets_slo, Some(true));
        assert_eq!(c.fit_by_cpu, None);
        let m = row("microvm");
        assert_eq!(m.fit_by_memory, Some(97)); // 13200 / 136 = 97.05
        assert_eq!(row("crun").meets_slo, Some(false));
        // container fits the most among those meeting the SLO.
        assert_eq!(out.recommended.as_ref().unwrap().backend, "container");
        let text = out.to_string();
        assert!(text.contains("Assumptions:") && text.contains("extrapolated"), "{text}");
        assert!(text.contains("Recommended: container"), "{text}");
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["backends"][0]["backend"], "microvm");
    }

    #[test]
    fn a_tight_slo_leaves_only_the_fast_backend_and_a_small_host_is_not_extrapolated() {
        let d = tempfile::tempdir().unwrap();
        let rd = run(d.path());
        let input = PlanInput { host_mem_bytes: 1320 * MIB, cores: 2, working_set_bytes: 128 * MIB, slo_p99_s: 0.020 };
        let out = plan(&rd, &input).unwrap();
        assert_eq!(out.recommended.as_ref().unwrap().backend, "microvm");
        let c = out.backends.iter().find(|r| r.backend == "container").unwrap();
        assert_eq!((c.fit_by_memory, c.extrapolated), (Some(10), false));
    }

    #[test]
    fn rejects_bad_inputs_and_empty_runs() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::create(d.path()).unwrap();
        rd.write_meta(&crate::fixture::meta()).unwrap();
        let ok = PlanInput { host_mem_bytes: 1 << 30, cores: 1, working_set_bytes: 0, slo_p99_s: 0.05 };
        assert!(plan(&rd, &ok).unwrap_err().to_string().contains("no density_summary.csv"));
        let bad = PlanInput { cores: 0, ..ok };
        assert!(matches!(plan(&rd, &bad), Err(PlanError::Input(_))));
    }
}
