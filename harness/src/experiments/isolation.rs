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
                for (b, s) in &o.wall_s {
                    cx.wall.add(b, *s);
                }
                for n in o.notes {
                    progress::note(cx.mode, &line(&n));
                }
            }
            Err(IsolationError::Interrupted(i)) => return Err(i.into()),
            Err(e) => cx.warn(line(&e.to_string())),
        }
        Ok(())
    }
}

/// A note or error of the isolation experiment as printed and recorded: `isolation: ` and the message,
/// the experiment's name once even when the message already starts with it.
fn line(msg: &str) -> String {
    let prefix = format!("{}: ", Isolation::ID);
    format!("{prefix}{}", msg.strip_prefix(&prefix).unwrap_or(msg))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The notes `crate::isolation` returns and its errors, as `vmct compare` prints and records them:
    /// one `isolation: ` (a restore error read "isolation: isolation: container: ...").
    #[test]
    fn notes_and_errors_name_the_experiment_once() {
        let e = IsolationError::Setup("no workload binary".into());
        assert_eq!(line(&e.to_string()), "isolation: setup failed: no workload binary");
        for n in [
            crate::isolation::launch_note("fake", "failed", "it did not start"),
            crate::isolation::restore_note("fake", "x"),
        ] {
            assert_eq!(line(&n).matches("isolation:").count(), 1, "{}", line(&n));
        }
        assert_eq!(line("isolation: fake: x"), "isolation: fake: x");
        assert_eq!(line("blast: fake: oom case skipped"), "isolation: blast: fake: oom case skipped");
    }
}
