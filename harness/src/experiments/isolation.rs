//! The isolation experiment as `vmct compare` runs it: the probe catalogue, the attack surface and the
//! blast radius (`crate::isolation`) on the usable backends, written as `isolation.csv`, `blast.csv` and
//! `attack_surface.csv` (also copied into run.json).
use super::registry::{Experiment, RunContext};
use crate::backend::Backend;
use crate::compare::{for_emulated, CompareError, Settings};
use crate::isolation::blast::BlastOptions;
use crate::isolation::{IsolationError, IsolationOptions, IsolationOutcome};
use crate::progress::{self, Mode};
use results::{AttackSurfaceRow, BlastRow, ExperimentId, IsolationRow, Record};

/// The isolation experiment, as registered.
pub struct Isolation;

impl Experiment for Isolation {
    const ID: ExperimentId = ExperimentId::Isolation;
    /// The blast-radius settings (None: probes only).
    type Plan = Option<BlastOptions>;
    type Row = IsolationRow;
    const FILES: &'static [&'static str] = &[IsolationRow::FILE, BlastRow::FILE, AttackSurfaceRow::FILE];

    fn plan(settings: &Settings) -> &Option<BlastOptions> {
        &settings.blast
    }

    /// All backends at once (the baseline is probed first); an error of the experiment as a whole is
    /// recorded as a failure and the run goes on.
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        match run(cx.backends, cx.settings, cx.mode) {
            Ok(o) => {
                cx.run_dir.write_csv(&o.rows)?;
                cx.run_dir.write_csv(&o.blast)?;
                cx.run_dir.write_csv(&o.surface)?;
                cx.meta.attack_surface = o.surface;
                for n in o.notes {
                    progress::note(cx.mode, &format!("{}: {n}", Self::ID));
                }
            }
            Err(IsolationError::Interrupted(i)) => return Err(i.into()),
            Err(e) => cx.warn(format!("{}: {e}", Self::ID)),
        }
        Ok(())
    }
}

/// The isolation experiment (probe catalogue + blast radius) on the usable backends.
pub fn run(backends: &[&dyn Backend], settings: &Settings, mode: Mode) -> Result<IsolationOutcome, IsolationError> {
    let workload = crate::artifacts::workload_path().map_err(|e| IsolationError::Setup(e.to_string()))?;
    let work_dir = crate::artifacts::cache_dir().join("work");
    let mut opts = IsolationOptions::new(workload, work_dir);
    opts.blast = Isolation::plan(settings).clone();
    opts.emulated_blast = Isolation::plan(&for_emulated(settings)).clone();
    crate::isolation::run_isolation(backends, &opts, &|m| progress::note(mode, m))
}
