//! `vmct isolation`: the probe matrix and blast radius alone, written to a run directory.
use super::UsageError;
use crate::backend::registry;
use crate::compare::Settings;
use crate::progress::Mode;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmct isolation`.
#[derive(Debug, clap::Args)]
pub struct IsolationArgs {
    /// Comma-separated backends (default: every available one; `process` always runs as the baseline).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Skip the blast-radius (noisy neighbour) part.
    #[arg(long)]
    pub no_blast: bool,
    /// Shorter neighbour runs.
    #[arg(long)]
    pub quick: bool,
    /// Output directory (default: results/runs/<run id>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run the command.
pub fn run(a: IsolationArgs, argv: &[String]) -> anyhow::Result<ExitCode> {
    let avail = results::env::meminfo_bytes("MemAvailable").unwrap_or(4 << 30);
    let mut s = if a.quick { Settings::quick(avail) } else { Settings::default_plan(avail) };
    s.experiments = vec![results::ExperimentId::Isolation];
    if a.no_blast {
        s.blast = None;
    }
    let (workload, work_dir) = super::workload_and_workdir()?;
    let mut backends = registry::all(&workload, &work_dir);
    if !a.backends.is_empty() {
        backends = registry::select(backends, &a.backends).map_err(UsageError)?;
    }
    let out = a.out.unwrap_or_else(|| PathBuf::from("results/runs").join(crate::compare::new_run_id()));
    let mode = Mode::auto(a.quiet);
    let host = super::env_cmd::host_env(&backends);
    let outcome = crate::compare::run(&backends, &s, out, argv.to_vec(), host, mode)?;
    let rd = results::RunDir::open(&outcome.run_dir)?;
    let rows: Vec<results::IsolationRow> = rd.read_csv()?;
    let mut per: Vec<(String, String, usize, usize)> = Vec::new();
    for r in &rows {
        match per.iter_mut().find(|p| p.0 == r.backend) {
            Some(p) => {
                p.2 += 1;
                p.3 += r.failure as usize;
            }
            None => per.push((r.backend.clone(), r.profile.clone(), 1, r.failure as usize)),
        }
    }
    println!("\nisolation failures (probes that reached host or neighbour state):");
    for (b, prof, n, f) in per {
        println!("  {b:<22} {prof:<34} {f:>3} of {n}");
    }
    for f in &outcome.failures {
        println!("warning: {f}");
    }
    let report = report::render(&rd)?;
    println!("\nrun directory: {}\nreport: {}", outcome.run_dir.display(), report.display());
    Ok(ExitCode::SUCCESS)
}
