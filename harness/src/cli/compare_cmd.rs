//! `vmct compare`: the main job.
use super::UsageError;
use crate::backend::registry;
use crate::compare::{self, Settings};
use crate::progress::Mode;
use crate::units::{human_bytes, human_secs, parse_size};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmct compare`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vmct compare                      # default plan, all available backends (12+ min on a quiet 2-core host; run.json wall_times: where it went)\n  vmct compare --quick              # under a minute\n  vmct compare --scale              # density sweeps to the memory budget or a host limit\n  vmct compare --backends process,microvm,container --experiments startup\n  vmct compare RUN_A RUN_B          # compare two earlier runs side by side\n  vmct compare RUN_A RUN_B RUN_C    # merge several runs (hosts) into one page\n  vmct compare --plan RUN_DIR       # re-run exactly the plan recorded in RUN_DIR/run.json"
)]
pub struct CompareArgs {
    /// Earlier run directories instead of running experiments: two give a comparison with deltas
    /// (RUN_B/compare.html), three or more a merged page (as `vmct report --merge`).
    #[arg(value_name = "RUN_DIR", num_args = 0..)]
    pub runs: Vec<PathBuf>,
    /// A short plan that finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// The density sweep at scale: each backend swept until the memory budget, --density-max or a
    /// host limit (named in the results), with idle CPU and a victim at 1, 10, 100, 1000, 10000 alive.
    #[arg(long, conflicts_with = "quick")]
    pub scale: bool,
    /// Comma-separated backends (default: every available one).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Comma-separated experiments (default: all; --quick: all but crosscheck, the peer cross-check).
    #[arg(long, value_delimiter = ',', value_parser = ExperimentParser)]
    pub experiments: Vec<results::ExperimentId>,
    /// Measured sequential launches per backend.
    #[arg(long)]
    pub runs_per_backend: Option<u32>,
    /// Warm-up launches per backend.
    #[arg(long)]
    pub warmup: Option<u32>,
    /// Density: memory budget for the sweep (default: half of MemAvailable), e.g. 8GiB.
    #[arg(long)]
    pub density_budget: Option<String>,
    /// Density: stop at this many instances per backend.
    #[arg(long)]
    pub density_max: Option<u32>,
    /// Density: MiB each idle instance touches and holds.
    #[arg(long)]
    pub hold_mib: Option<u64>,
    /// Output directory (default: results/runs/<run id>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Do not render the HTML report at the end.
    #[arg(long)]
    pub no_report: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print a JSON summary at the end instead of text.
    #[arg(long)]
    pub json: bool,
    /// A peer VMM to measure beside ours: qemu=PATH or firecracker=PATH (boots the linux guest model).
    #[arg(long, value_name = "NAME=PATH", value_parser = crate::backend::vmm_peers::parse_peer)]
    pub peer: Vec<crate::backend::vmm_peers::Peer>,
    /// Re-run exactly the plan an earlier run recorded (its backends, peers, experiments, sizes,
    /// timeouts): a run directory or its run.json. Only the density safety floor is recomputed for this
    /// host. Flags that change the plan cannot be combined with it.
    #[arg(long, value_name = "RUN_DIR|RUN_JSON", conflicts_with_all = PLAN_FLAGS)]
    pub plan: Option<PathBuf>,
    /// Measure this image (see `vmct images`) instead of the vmct workload: its own process (Entrypoint
    /// ++ the command after `--`, else Cmd) on every backend; startup, density and isolation apply.
    #[arg(long)]
    pub image: Option<String>,
    /// With --image: when its process counts as ready: tcp:PORT, log:REGEX or exit.
    #[arg(long, value_name = "RULE", requires = "image")]
    pub ready: Option<String>,
    /// With --image: the command and arguments, replacing the image's Cmd.
    #[arg(last = true, value_name = "CMD ARGS", requires = "image")]
    pub command: Vec<String>,
}

/// The arguments a recorded plan fixes (ids of clap's `conflicts_with_all` for `--plan`).
const PLAN_FLAGS: [&str; 14] = [
    "runs",
    "quick",
    "scale",
    "backends",
    "experiments",
    "runs_per_backend",
    "warmup",
    "density_budget",
    "density_max",
    "hold_mib",
    "peer",
    "image",
    "ready",
    "command",
];

/// Run the command.
pub fn run(a: CompareArgs, argv: &[String]) -> anyhow::Result<ExitCode> {
    match a.runs.as_slice() {
        [] => {}
        [x, y] => return super::report_cmd::compare_runs(x, y, a.json),
        [_] => {
            return Err(UsageError(
                "pass two or more run directories to compare (RUN_A RUN_B [RUN_C ...]), or none to run experiments"
                    .into(),
            )
            .into())
        }
        many => return super::report_cmd::merge_runs(many, a.out.clone(), a.json),
    }
    let avail = results::env::meminfo_bytes("MemAvailable").unwrap_or(4 << 30);
    let mut s = match &a.plan {
        Some(p) => {
            let mut s = compare::load_plan(p).map_err(|e| UsageError(e.to_string()))?;
            s.density.floor_bytes = compare::host_floor_bytes(avail);
            s
        }
        None => settings_from_flags(&a, avail)?,
    };
    let (workload, work_dir) = super::workload_and_workdir()?;
    let mut backends = registry::all_with_peers(&workload, &work_dir, &s.peers);
    if !s.backends.is_empty() {
        backends = registry::select(backends, &s.backends).map_err(|e| match &a.plan {
            Some(p) => UsageError(format!("--plan {}: {e}", p.display())),
            None => UsageError(e),
        })?;
    }
    // The image: from the flags, or from a replayed plan (which recorded name, rule and command).
    let wanted = match (&a.image, s.image.take()) {
        (Some(name), _) => Some((name.clone(), a.ready.clone(), a.command.clone())),
        (None, Some(p)) => Some((p.name, Some(p.ready), p.command)),
        (None, None) => None,
    };
    let image = match wanted {
        Some((name, ready, command)) => {
            let (run, na) = super::compare_image::prepare(&name, ready.as_deref(), &command, &workload, &mut s)
                .map_err(|e| match &a.plan {
                    Some(p) => UsageError(format!(
                        "--plan {}: the run measured the image '{name}' (--ready {}): {}",
                        p.display(),
                        ready.as_deref().unwrap_or("?"),
                        e.0
                    )),
                    None => e,
                })?;
            backends = super::compare_image::wrap(backends, &run)?;
            s.image = Some(compare::ImagePlan { name, ready: ready.unwrap_or_default(), command });
            Some((run, na))
        }
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("results/runs").join(compare::new_run_id()));
    let mode = Mode::auto(a.quiet);
    let host = super::env_cmd::host_env(&backends);
    crate::progress::note(mode, &format!("vmct compare: writing {}", out.display()));
    let mut outcome = compare::run(&backends, &s, out, argv.to_vec(), host, mode)?;
    if let Some((run, na)) = image {
        super::compare_image::record(&outcome.run_dir, &run, na)?;
    }
    if !a.no_report {
        let rd = results::RunDir::open(&outcome.run_dir)?;
        match report::render(&rd) {
            Ok(p) => outcome.report = Some(p),
            Err(e) => outcome.failures.push(format!("report: {e}")),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        if !outcome.startup_medians.is_empty() {
            println!("\nlaunch-to-ready (sequential, median):");
            for (b, m, n) in &outcome.startup_medians {
                println!("  {b:<22} {:>10}   (n={n})", human_secs(*m));
            }
        }
        if !outcome.density.is_empty() {
            println!("\ndensity (host memory per instance, fitted):");
            for (b, n, slope) in &outcome.density {
                println!("  {b:<22} {:>12}   ({n} instances)", human_bytes(*slope));
            }
        }
        for f in &outcome.failures {
            println!("warning: {f}");
        }
        println!("\nrun directory: {}", outcome.run_dir.display());
        if let Some(r) = &outcome.report {
            println!("report: {}", r.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--experiments` words against [`results::ExperimentId::ALL`] and lists them as the flag's
/// possible values in `--help`; an unknown word is a usage error (exit 2) naming it and the valid ones.
#[derive(Debug, Clone, Copy)]
struct ExperimentParser;

impl clap::builder::TypedValueParser for ExperimentParser {
    type Value = results::ExperimentId;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<results::ExperimentId, clap::Error> {
        value.to_string_lossy().parse().map_err(|e: results::UnknownExperiment| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("--experiments: {e}\n")).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(results::ExperimentId::ALL.iter().map(|e| clap::builder::PossibleValue::new(e.as_str()))))
    }
}

/// The plan from a preset (`--quick` or the default) and the flags that change it.
fn settings_from_flags(a: &CompareArgs, avail: u64) -> anyhow::Result<Settings> {
    let mut s = if a.quick {
        Settings::quick(avail)
    } else if a.scale {
        Settings::scale(avail)
    } else {
        Settings::default_plan(avail)
    };
    s.backends = a.backends.clone();
    s.peers = a.peer.clone();
    if !a.experiments.is_empty() {
        s.experiments = a.experiments.clone();
    }
    if let Some(n) = a.runs_per_backend {
        if n == 0 {
            return Err(UsageError("invalid value '0' for '--runs-per-backend': expected at least 1".into()).into());
        }
        s.startup.runs = n;
    }
    if let Some(w) = a.warmup {
        s.startup.warmup = w;
    }
    if let Some(b) = &a.density_budget {
        s.density.budget_bytes = parse_size(b).map_err(|e| UsageError(format!("--density-budget: {e}")))?;
        if s.density.budget_bytes == 0 {
            return Err(UsageError("--density-budget must be above 0".into()).into());
        }
    }
    if let Some(m) = a.density_max {
        if m == 0 || m > compare::MAX_DENSITY_INSTANCES {
            return Err(UsageError(format!(
                "invalid value '{m}' for '--density-max': expected 1 to {}",
                compare::MAX_DENSITY_INSTANCES
            ))
            .into());
        }
        s.density.max_instances = m;
    }
    if let Some(h) = a.hold_mib {
        if h > workloads::scenario::MAX_MIB {
            return Err(UsageError(format!(
                "invalid value '{h}' for '--hold-mib': expected at most {}",
                workloads::scenario::MAX_MIB
            ))
            .into());
        }
        s.density.hold_mib = h;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    /// Every argument of `vmct compare` either changes the plan (so `--plan` refuses it) or is one of
    /// the few that only change where and how the run reports.
    #[test]
    fn every_plan_changing_flag_conflicts_with_plan() {
        let cmd = CompareArgs::augment_args(clap::Command::new("compare"));
        let mut ids: Vec<&str> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
        ids.retain(|id| !["plan", "out", "no_report", "quiet", "json"].contains(id));
        ids.sort();
        let mut plan_flags = PLAN_FLAGS.to_vec();
        plan_flags.sort();
        assert_eq!(ids, plan_flags);
    }

    fn parse(argv: &[&str]) -> Result<CompareArgs, clap::Error> {
        use clap::FromArgMatches;
        let cmd = CompareArgs::augment_args(clap::Command::new("compare"));
        CompareArgs::from_arg_matches(&cmd.try_get_matches_from(argv)?)
    }

    #[test]
    fn experiments_parse_against_the_registry() {
        use results::ExperimentId;
        let a = parse(&["compare", "--experiments", "density,startup"]).unwrap();
        assert_eq!(a.experiments, [ExperimentId::Density, ExperimentId::Startup]);
        let e = parse(&["compare", "--experiments", "startup,teleport"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("unknown experiment 'teleport'; valid experiments: startup, overhead"), "{msg}");
        let help = CompareArgs::augment_args(clap::Command::new("compare")).render_long_help().to_string();
        for id in ExperimentId::ALL {
            assert!(help.contains(id.as_str()), "{id} missing from --help: {help}");
        }
    }
}
