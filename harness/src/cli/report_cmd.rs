//! `vmct report` and `vmct plan`: read a run directory, never re-measure.
use super::UsageError;
use anyhow::Context;
use results::RunDir;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmct report`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vmct report results/runs/<id>                       # re-render one run's report.html\n  vmct report results/runs/<id> --pair crun:microvm-linux       # verdict table for that pair\n  vmct report results/runs/<new> --baseline results/runs/<old>   # plus compare.html with deltas\n  vmct report --merge hostA/run hostB/run hostC/run   # several hosts in one page (report/out/merged-<time>/)"
)]
pub struct ReportArgs {
    /// The run directory to render (written by `vmct compare`); with --merge, two or more.
    #[arg(value_name = "RUN_DIR", required = true, num_args = 1..)]
    pub run_dirs: Vec<PathBuf>,
    /// Also write a side-by-side comparison against this earlier run (RUN_DIR/compare.html).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "merge")]
    pub baseline: Option<PathBuf>,
    /// Merge the run directories (e.g. one per host) into one page: merged.html with a column per run.
    #[arg(long)]
    pub merge: bool,
    /// Where to write the page (a directory, or a file ending in .html; created if needed; charts go beside
    /// it); default RUN_DIR/report.html, with --merge report/out/merged-<time>/.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// With --merge: print the merged figures as JSON instead of writing the page.
    #[arg(long, requires = "merge")]
    pub json: bool,
    /// The configuration pair of the verdict table, CONTAINER:VM (backend names of the run, e.g.
    /// container:microvm-linux); default: our container's default profile against the linux guest. The other pairs
    /// stay on the page, folded. With --merge: a pair of the first run.
    #[arg(long, value_name = "CONTAINER:VM")]
    pub pair: Option<String>,
}

/// Arguments of `vmct plan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vmct plan --host-mem 256GiB --cores 64 --working-set 128MiB --cpu-per-instance 0.25 --slo-p99 50ms results/runs/<id>\n  vmct plan --pair crun:qemu-tcg results/runs/<id>\n  vmct plan results/runs/<here> --merge vtx-host/run    # a VT-x host's run fills the linux guest's figures"
)]
pub struct PlanArgs {
    /// The run directory whose measurements to plan with (the primary run).
    pub run_dir: PathBuf,
    /// Another run whose figures fill what the primary run lacks or measured only in a form that does not
    /// transfer (e.g. a VT-x host's run for the linux guest); repeat for several.
    #[arg(long, value_name = "RUN_DIR")]
    pub merge: Vec<PathBuf>,
    /// The configuration pair to plan, CONTAINER:VM (backend names of the run; default: our container's default
    /// profile vs the linux guest).
    #[arg(long, value_name = "CONTAINER:VM")]
    pub pair: Option<String>,
    /// Memory of the target host, e.g. 256GiB (default: this host's).
    #[arg(long)]
    pub host_mem: Option<String>,
    /// Cores of the target host (default: this host's).
    #[arg(long)]
    pub cores: Option<u32>,
    /// Memory each instance's workload itself uses, e.g. 128MiB.
    #[arg(long, default_value = "128MiB")]
    pub working_set: String,
    /// CPU each instance's workload itself needs, in cores (0 or more, e.g. 0.25); default 0.01.
    #[arg(long, value_name = "CORES", default_value_t = report::PlanInput::DEFAULT_CPU_PER_INSTANCE, allow_negative_numbers = true)]
    pub cpu_per_instance: f64,
    /// A transient burst each instance touches and frees beyond its working set, e.g. 64MiB (planned with the
    /// memory give-back measured).
    #[arg(long, default_value = "0B")]
    pub burst: String,
    /// Files every instance reads from the same image, e.g. 200MiB (planned with the page-cache sharing measured).
    #[arg(long, default_value = "0B")]
    pub file_set: String,
    /// Startup SLO: launch-to-ready p99 at the planned density must be at most this, e.g. 50ms.
    #[arg(long, default_value = "50ms")]
    pub slo_p99: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn open(p: &PathBuf) -> anyhow::Result<RunDir> {
    RunDir::open(p).map_err(|e| UsageError(e.to_string()).into())
}

/// `vmct report`.
pub fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    if a.merge {
        return merge_runs_with(&a.run_dirs, a.out, a.json, a.pair.as_deref());
    }
    let [run_dir] = a.run_dirs.as_slice() else {
        return Err(UsageError(format!(
            "{} run directories given: render one, or add --merge to merge several into one page",
            a.run_dirs.len()
        ))
        .into());
    };
    let rd = open(run_dir)?;
    let pair = pair_of(&rd, a.pair.as_deref())?;
    let path = report::render_to(&rd, pair.as_ref(), a.out.as_deref())
        .with_context(|| format!("rendering {}", run_dir.display()))?;
    println!("report: {}", path.display());
    if let Some(b) = &a.baseline {
        let base = open(b)?;
        let cmp = report::compare(&base, &rd, rd.path())?;
        println!("comparison with {}: {}", b.display(), cmp.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--pair CONTAINER:VM` checked against the run: a usage error (exit 2) naming the valid backends of each side.
fn pair_of(rd: &RunDir, text: Option<&str>) -> anyhow::Result<Option<report::pair::ConfigPair>> {
    let Some(text) = text else { return Ok(None) };
    let run = report::data::RunData::load(rd).with_context(|| format!("reading {}", rd.path().display()))?;
    report::pair::ConfigPair::parse(text, &run).map(Some).map_err(|e| {
        let list = |v: Vec<String>| if v.is_empty() { "none in this run".to_string() } else { v.join(", ") };
        UsageError(format!(
            "--pair: {e}\n  container backends of {}: {}\n  VM backends: {}",
            rd.path().display(),
            list(report::pair::ConfigPair::containers(&run)),
            list(report::pair::ConfigPair::vms(&run))
        ))
        .into()
    })
}

/// `vmct plan`.
pub fn plan(a: PlanArgs) -> anyhow::Result<ExitCode> {
    let runs = std::iter::once(&a.run_dir).chain(&a.merge).map(open).collect::<anyhow::Result<Vec<RunDir>>>()?;
    let host_mem_bytes = match &a.host_mem {
        Some(s) => crate::units::parse_size(s).map_err(|e| UsageError(format!("--host-mem: {e}")))?,
        None => results::env::meminfo_bytes("MemTotal").unwrap_or(0),
    };
    let cores = a.cores.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    });
    if host_mem_bytes == 0 || cores == 0 {
        return Err(UsageError("--host-mem and --cores must be above 0".into()).into());
    }
    if !(a.cpu_per_instance.is_finite() && a.cpu_per_instance >= 0.0) {
        return Err(UsageError(format!(
            "--cpu-per-instance {}: give the cores each instance needs, 0 or more (e.g. 0.25)",
            a.cpu_per_instance
        ))
        .into());
    }
    let size = |flag: &str, v: &str| {
        crate::units::parse_size(v).map_err(|e| anyhow::Error::from(UsageError(format!("--{flag}: {e}"))))
    };
    let working_set_bytes = size("working-set", &a.working_set)?;
    let slo = crate::units::parse_duration(&a.slo_p99).map_err(|e| UsageError(format!("--slo-p99: {e}")))?;
    if slo.is_zero() {
        return Err(UsageError(format!(
            "--slo-p99: '{}' is a target no launch can meet; give more than 0s",
            a.slo_p99
        ))
        .into());
    }
    let input = report::PlanInput {
        host_mem_bytes,
        cores,
        working_set_bytes,
        slo_p99_s: slo.as_secs_f64(),
        cpu_per_instance: a.cpu_per_instance,
        burst_bytes: size("burst", &a.burst)?,
        file_set_bytes: size("file-set", &a.file_set)?,
    };
    let out = match report::plan(&runs, a.pair.as_deref(), &input) {
        Ok(out) => out,
        Err(e @ (report::PlanError::Input(_) | report::PlanError::Pair(_) | report::PlanError::NoPair(_))) => {
            return Err(UsageError(e.to_string()).into())
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmct compare RUN_A RUN_B`.
pub fn compare_runs(a: &PathBuf, b: &PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let (ra, rb) = (open(a)?, open(b)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&report::deltas(&ra, &rb)?)?);
    } else {
        let path = report::compare(&ra, &rb, rb.path())?;
        println!("comparison: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmct report --merge RUN...` and `vmct compare RUN_A RUN_B RUN_C...`: several runs in one page.
pub fn merge_runs(dirs: &[PathBuf], out: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    merge_runs_with(dirs, out, json, None)
}

/// [`merge_runs`] with the verdicts' pair (`--pair`, checked against the first run).
pub fn merge_runs_with(
    dirs: &[PathBuf],
    out: Option<PathBuf>,
    json: bool,
    pair: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if dirs.len() < 2 {
        return Err(UsageError("--merge needs two or more run directories".into()).into());
    }
    let runs = dirs.iter().map(open).collect::<anyhow::Result<Vec<RunDir>>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report::merged(&runs)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let out =
        out.unwrap_or_else(|| PathBuf::from("report/out").join(format!("merged-{}", crate::compare::new_run_id())));
    let pair = pair_of(&runs[0], pair)?;
    let path = report::merge::merge_with_pair(&runs, &out, pair.as_ref())?;
    println!("merged report of {} runs: {}", runs.len(), path.display());
    Ok(ExitCode::SUCCESS)
}
