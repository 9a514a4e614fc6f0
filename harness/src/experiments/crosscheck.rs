//! The peer cross-check (issue 15 item 6): is "ours is x times crun" what crun's own command line would
//! say? For our container backend (default profile) and every peer container runtime (crun, runc,
//! runsc), the `ready` workload (it announces `ready` and exits at once) is timed n times on each clock
//! of [`CrossClock`]:
//! - `vmct-launch-to-ready`: launch to `ready` inside this process, as the startup experiment times it;
//! - `peer-cli-run` (peers): the peer CLI's own whole-process `run` of the same generated bundle
//!   ([`Backend::own_cli_run`]), spawn to exit, `delete` included when needed;
//! - `vmct-run`: whole-process `vmct run --backend B --workload ready --json`, spawn to exit;
//! - `vmct-run-start`: vmct's own start in it, spawn to the launch stamp it prints (`launched_mono_ns`);
//! - `vmct-run-less-start`: per sample, the two above subtracted.
//!
//! Each clock gets one untimed warm-up first (the first launch builds the base image). n is the
//! startup plan's run count capped at [`RUNS`] (the user-space-kernel plan for runsc), so the default
//! plan takes n = 30. The default plan runs it; `--quick` only when named (`--experiments crosscheck`;
//! see `crate::compare::default_experiments`).
use super::registry::{Experiment, RunContext};
use super::startup::StartupPlan;
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, BackendError};
use crate::compare::{CompareError, Settings};
use results::crosscheck::fill_ratios;
use results::{BackendKind, CrossCheckRow, CrossClock, ExperimentId, IsolationModel, Record};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use workloads::scenario::Scenario;

/// The most samples per clock (hyperfine's default minimum is 10; 30 keeps p10/p90 meaningful).
pub const RUNS: u32 = 30;

/// The cross-check experiment.
pub struct CrossCheck;

impl Experiment for CrossCheck {
    const ID: ExperimentId = ExperimentId::CrossCheck;
    type Plan = StartupPlan;
    type Row = CrossCheckRow;
    const FILES: &'static [&'static str] = &[CrossCheckRow::FILE];
    fn plan(settings: &Settings) -> &StartupPlan {
        &settings.startup
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let vmct = vmct_bin();
        if vmct.is_none() {
            cx.warn("crosscheck: the vmct binary was not found next to this program: no vmct-run clocks".into());
        }
        let ours = cx.backends.iter().find(|b| is_ours(**b)).map(|b| b.name().to_string());
        let mut rows = Vec::new();
        for &b in cx.backends.iter().filter(|b| is_ours(**b) || is_peer_container(**b)) {
            cx.on_backend(b);
            let plan = Self::plan(cx.plan_for(b));
            match measure(b, plan.runs.min(RUNS), plan.timeout, vmct.as_deref()) {
                Ok(r) => rows.extend(r),
                Err(e) => cx.failed(Self::ID, b, e)?,
            }
            if let Some(o) = &ours {
                fill_ratios(&mut rows, o);
            }
            cx.run_dir.write_csv(&rows)?;
        }
        Ok(())
    }
}

/// Our container backend with the default profile.
fn is_ours(b: &dyn Backend) -> bool {
    let i = b.info();
    i.kind == BackendKind::Ours
        && i.model == IsolationModel::Container
        && i.isolation.is_some_and(|p| p.profile == container::Profile::Default.describe())
}

/// A peer runtime of the container kind (crun, runc) or a user-space kernel run as one (runsc).
fn is_peer_container(b: &dyn Backend) -> bool {
    let i = b.info();
    i.kind == BackendKind::Peer && matches!(i.model, IsolationModel::Container | IsolationModel::UserSpaceKernel)
}

/// The `vmct` binary: this program when it is vmct, else `vmct` in this program's directory or its
/// parent (a test binary in `target/*/deps`).
pub fn vmct_bin() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    if me.file_name().is_some_and(|n| n == "vmct") {
        return Some(me);
    }
    let dir = me.parent()?;
    [dir.join("vmct"), dir.parent()?.join("vmct")].into_iter().find(|p| p.is_file())
}

/// Every clock of `b`, `n` samples each (after one warm-up each).
pub fn measure(
    b: &dyn Backend,
    n: u32,
    timeout: Duration,
    vmct: Option<&Path>,
) -> Result<Vec<CrossCheckRow>, ExperimentError> {
    let name = b.name();
    let mut rows = Vec::new();
    let mut ready = Vec::new();
    for i in 0..=n {
        crate::interrupt::check()?;
        let (mut inst, r) = launch_ready(b, spec(Scenario::Ready), timeout)?;
        inst.stop(timeout)?;
        if i > 0 {
            ready.push(r.launch_to_ready_s());
        }
    }
    let what = format!("launch to ready of `ready` on {name} inside vmct");
    rows.extend(CrossCheckRow::of(name, CrossClock::VmctLaunchToReady, &what, &ready));
    let mut cli = Vec::new();
    for i in 0..=n {
        crate::interrupt::check()?;
        match b.own_cli_run(&spec(Scenario::Ready), timeout)? {
            Some(s) if i > 0 => cli.push(s),
            Some(_) => {}
            None => break,
        }
    }
    let what = format!("`{name} run` of the generated bundle, spawn to exit, delete included");
    rows.extend(CrossCheckRow::of(name, CrossClock::PeerCliRun, &what, &cli));
    if let Some(vmct) = vmct {
        let (mut whole, mut start) = (Vec::new(), Vec::new());
        for i in 0..=n {
            crate::interrupt::check()?;
            let (w, s) = vmct_run(vmct, name, timeout)?;
            if i > 0 {
                whole.push(w);
                start.push(s);
            }
        }
        let less: Vec<f64> = whole.iter().zip(&start).map(|(w, s)| w - s).collect();
        let cmd = format!("`vmct run --backend {name} --workload ready --json`");
        rows.extend(CrossCheckRow::of(name, CrossClock::VmctRun, &format!("{cmd}, spawn to exit"), &whole));
        let what = format!("{cmd}, spawn to its launch of the instance");
        rows.extend(CrossCheckRow::of(name, CrossClock::VmctRunStart, &what, &start));
        let what = format!("{cmd}, its launch of the instance to exit");
        rows.extend(CrossCheckRow::of(name, CrossClock::VmctRunLessStart, &what, &less));
    }
    Ok(rows)
}

/// One whole-process `vmct run` of `ready` on `backend`: (spawn to exit, spawn to its launch stamp),
/// seconds.
fn vmct_run(vmct: &Path, backend: &str, timeout: Duration) -> Result<(f64, f64), BackendError> {
    let fail = |reason: String| BackendError::Launch { backend: backend.into(), reason };
    let mut cmd = Command::new(vmct);
    cmd.args(["run", "--backend", backend, "--workload", "ready", "--json", "--timeout"])
        .arg(format!("{}s", timeout.as_secs().max(1)));
    let t0 = crate::clock::mono_ns();
    let out = cmd.output().map_err(|e| fail(format!("cannot start {}: {e}", vmct.display())))?;
    let t1 = crate::clock::mono_ns();
    if !out.status.success() {
        return Err(fail(format!(
            "vmct run exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("vmct run --json printed no JSON report: {e}")))?;
    let launched = v["launched_mono_ns"]
        .as_u64()
        .filter(|l| (t0..=t1).contains(l))
        .ok_or_else(|| fail(format!("vmct run --json: launched_mono_ns missing or outside the run: {v}")))?;
    Ok((crate::clock::ns_to_s(t1 - t0), crate::clock::ns_to_s(launched - t0)))
}
