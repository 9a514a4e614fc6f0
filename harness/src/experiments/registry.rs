//! The experiments `vmct compare` runs, as registered units.
//!
//! Each experiment is a type implementing [`Experiment`] in its own module: its id
//! ([`results::ExperimentId`]), its plan type within the whole plan ([`Settings`]), its headline row
//! type (the CSV the report's section for it reads) and how it runs on the usable backends. [`experiment`]
//! maps every id to its experiment with an exhaustive `match`, so an id without an experiment does not
//! compile; [`all`] is the list `vmct compare` runs in order, `--experiments` parses against and
//! progress and failure messages are named from.
//!
//! Adding an experiment `foo` (tried with a toy, then dropped):
//! 1. `results`: its row type with `impl Record` (`foo.csv`) in a file of its own, and one line
//!    `Foo = "foo",` in `results/src/experiment.rs`;
//! 2. `harness`: `experiments/foo.rs` with `struct Foo` implementing [`Experiment`] (a plan that is not
//!    `()` is also a field of [`Settings`] and its two presets), and its arm in [`experiment`] (the
//!    compiler asks for it);
//! 3. `report`: a type implementing `report::ReportSection` in a file of its own, listed in
//!    `report::registry::SECTIONS` (this module's tests fail until it is), and a few rows in
//!    `report::fixture::write`, the complete run the report's tests render;
//! 4. the `mod` lines of the new files.
use super::ExperimentError;
use crate::backend::Backend;
use crate::compare::{CompareError, Outcome, Settings};
use crate::progress::{self, Mode};
use results::{ExperimentId, Record, RunDir, RunMeta, WallTime};
use std::time::{Duration, Instant};

/// One experiment of `vmct compare`.
pub trait Experiment: Sync + 'static {
    /// Its id (the word `--experiments` takes and run.json records).
    const ID: ExperimentId;
    /// Its settings within the whole plan.
    type Plan;
    /// The row type of its headline CSV: the file the report's section for this experiment reads
    /// (checked by a test against `report::registry::SECTIONS`).
    type Row: Record;
    /// Every CSV file it writes, its headline row's first.
    const FILES: &'static [&'static str];
    /// Its plan within `settings` (which is the plan of one backend: see [`RunContext::plan_for`]).
    fn plan(settings: &Settings) -> &Self::Plan;
    /// Run it on every usable backend, writing its CSVs into the run directory as it goes (so an
    /// interrupted run keeps what was measured). A backend's failure is recorded with
    /// [`RunContext::failed`] and the run goes on; only a Ctrl-C or an unwritable run directory ends it.
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError>;
}

/// What the registry holds: an [`Experiment`] with its types erased.
pub trait Registered: Sync {
    /// [`Experiment::ID`].
    fn id(&self) -> ExperimentId;
    /// The file of [`Experiment::Row`].
    fn row_file(&self) -> &'static str;
    /// [`Experiment::FILES`].
    fn files(&self) -> &'static [&'static str];
    /// [`Experiment::run`].
    fn execute(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError>;
}

impl<E: Experiment> Registered for E {
    fn id(&self) -> ExperimentId {
        E::ID
    }
    fn row_file(&self) -> &'static str {
        E::Row::FILE
    }
    fn files(&self) -> &'static [&'static str] {
        E::FILES
    }
    fn execute(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let t0 = Instant::now();
        let r = self.run(cx);
        cx.finish_experiment(E::ID, t0.elapsed());
        r
    }
}

/// The experiment that runs `id`.
pub fn experiment(id: ExperimentId) -> &'static dyn Registered {
    match id {
        ExperimentId::Startup => &super::startup::Startup,
        ExperimentId::Overhead => &super::overhead::Overhead,
        ExperimentId::Density => &super::density::Density,
        ExperimentId::Isolation => &super::isolation::Isolation,
        ExperimentId::Snapshot => &super::snapshot::Snapshot,
        ExperimentId::CrossCheck => &super::crosscheck::CrossCheck,
        ExperimentId::Crash => &super::crash::Crash,
        ExperimentId::Memory => &super::memory::Memory,
    }
}

/// Every experiment, in run order.
pub fn all() -> impl Iterator<Item = &'static dyn Registered> {
    ExperimentId::ALL.iter().map(|&id| experiment(id))
}

/// What an experiment's run gets from `vmct compare`.
pub struct RunContext<'a> {
    /// The backends that run here, in the order given.
    pub backends: &'a [&'a dyn Backend],
    /// The whole plan.
    pub settings: &'a Settings,
    /// The plan of backends with an emulated guest CPU (`crate::compare::for_emulated`).
    pub emulated: &'a Settings,
    /// The plan of user-space-kernel backends (runsc; `crate::compare::for_user_space_kernel`).
    pub user_kernel: &'a Settings,
    /// Where the CSVs go.
    pub run_dir: &'a RunDir,
    /// Progress output.
    pub mode: Mode,
    /// run.json as it will be written at the end (experiments add caveats, the attack surface).
    pub meta: &'a mut RunMeta,
    /// The summary the CLI prints (failures, headline figures).
    pub outcome: &'a mut Outcome,
    /// Wall-clock time of the running experiment per backend (see [`RunContext::on_backend`]).
    pub wall: WallClock,
}

/// Where the running experiment's time goes: the backend it is on since when, and the seconds each
/// backend took so far (summed when an experiment comes back to a backend), in first-seen order.
#[derive(Debug, Default)]
pub struct WallClock {
    current: Option<(String, Instant)>,
    done: Vec<(String, f64)>,
}

impl WallClock {
    /// From now on the time is `backend`'s (the previous backend's time ends here).
    pub fn start(&mut self, backend: &str) {
        self.stop();
        self.current = Some((backend.to_string(), Instant::now()));
    }

    /// The running backend's time ends here.
    pub fn stop(&mut self) {
        if let Some((b, t0)) = self.current.take() {
            self.add(&b, t0.elapsed().as_secs_f64());
        }
    }

    /// Add `s` seconds to `backend` (for an experiment that times its backends itself).
    pub fn add(&mut self, backend: &str, s: f64) {
        match self.done.iter_mut().find(|(b, _)| b == backend) {
            Some((_, t)) => *t += s,
            None => self.done.push((backend.to_string(), s)),
        }
    }

    /// The records of experiment `id`, which took `whole` in all: one per backend, then the whole;
    /// the clock is empty afterwards.
    pub fn take(&mut self, id: ExperimentId, whole: Duration) -> Vec<WallTime> {
        self.stop();
        let per = self.done.drain(..).map(|(b, s)| WallTime { experiment: id, backend: Some(b), wall_s: s });
        per.chain(std::iter::once(WallTime { experiment: id, backend: None, wall_s: whole.as_secs_f64() })).collect()
    }
}

impl RunContext<'_> {
    /// The plan of backend `b`: [`RunContext::emulated`] for an emulated one, [`RunContext::user_kernel`]
    /// for a user-space kernel, else the whole plan.
    pub fn plan_for(&self, b: &dyn Backend) -> &Settings {
        if b.capabilities().emulated {
            self.emulated
        } else if b.info().model == results::IsolationModel::UserSpaceKernel {
            self.user_kernel
        } else {
            self.settings
        }
    }

    /// Experiment time from now on is backend `b`'s (recorded in run.json's `wall_times`): called by
    /// each experiment as it starts on a backend.
    pub fn on_backend(&mut self, b: &dyn Backend) {
        self.wall.start(b.name());
    }

    /// Record experiment `id`'s wall time (`whole`, and per backend) in run.json's `wall_times`, and
    /// print it with its longest backends.
    pub fn finish_experiment(&mut self, id: ExperimentId, whole: Duration) {
        let times = self.wall.take(id, whole);
        let mut per: Vec<&WallTime> = times.iter().filter(|t| t.backend.is_some()).collect();
        per.sort_by(|a, b| b.wall_s.total_cmp(&a.wall_s));
        let longest: Vec<String> = per
            .iter()
            .take(3)
            .map(|t| format!("{} {}", t.backend.as_deref().unwrap_or(""), crate::units::human_secs(t.wall_s)))
            .collect();
        let detail = if longest.is_empty() { String::new() } else { format!(" (longest: {})", longest.join(", ")) };
        progress::note(self.mode, &format!("{id}: {} wall{detail}", crate::units::human_secs(whole.as_secs_f64())));
        self.meta.wall_times.extend(times);
    }

    /// Note that experiment `id` failed on backend `b` and go on; a Ctrl-C ends the run.
    pub fn failed(&mut self, id: ExperimentId, b: &dyn Backend, e: ExperimentError) -> Result<(), CompareError> {
        if let ExperimentError::Interrupted(i) = e {
            return Err(i.into());
        }
        self.warn(format!("{id} on {}: {e}", b.name()));
        Ok(())
    }

    /// Print a warning and record it among the run's failures.
    pub fn warn(&mut self, msg: String) {
        progress::note(self.mode, &format!("warning: {msg}"));
        self.outcome.failures.push(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_maps_to_its_own_experiment_whose_row_it_writes() {
        for &id in ExperimentId::ALL {
            let e = experiment(id);
            assert_eq!(e.id(), id, "the registry's arm for {id} holds another experiment");
            assert_eq!(e.files().first(), Some(&e.row_file()), "{id}: FILES starts with its row's file");
        }
        let ids: Vec<ExperimentId> = all().map(|e| e.id()).collect();
        assert_eq!(ids, ExperimentId::ALL);
    }

    #[test]
    fn the_wall_clock_sums_each_backends_time_and_ends_with_the_whole() {
        let mut w = WallClock::default();
        w.start("a");
        w.start("b");
        w.add("a", 2.0);
        w.stop();
        w.add("c", 1.0);
        let t = w.take(ExperimentId::Density, Duration::from_secs(5));
        let names: Vec<Option<&str>> = t.iter().map(|t| t.backend.as_deref()).collect();
        assert_eq!(names, [Some("a"), Some("b"), Some("c"), None]);
        assert!(t[0].wall_s >= 2.0 && t[0].wall_s < 3.0, "{t:?}");
        assert_eq!((t[2].wall_s, t[3].wall_s), (1.0, 5.0));
        assert!(t.iter().all(|t| t.experiment == ExperimentId::Density));
        assert!(w.take(ExperimentId::Startup, Duration::ZERO).len() == 1, "empty after take");
    }

    /// What an experiment declares it writes is what a run of it writes (density, which waits for host
    /// memory to settle, and isolation, which needs the workload binary, are left out).
    #[test]
    fn experiments_write_the_files_they_declare() {
        let d = tempfile::tempdir().unwrap();
        let backends: Vec<Box<dyn Backend>> =
            vec![Box::new(crate::experiments::fake::FakeBackend::new("fake", 1 << 20))];
        let mut s = Settings::quick(8 << 30);
        s.experiments = vec![ExperimentId::Startup, ExperimentId::Overhead, ExperimentId::Snapshot];
        (s.startup.warmup, s.startup.runs, s.startup.concurrent_launches, s.overhead.runs) = (0, 2, 2, 1);
        let out = d.path().join("run");
        let host = results::HostEnv::capture();
        crate::compare::run(&backends, &s, out.clone(), vec!["vmct".into()], host, Mode::Quiet).unwrap();
        let mut written: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".csv"))
            .collect();
        written.sort();
        // Every experiment's wall time, on its backend and as a whole, is in run.json.
        let meta = RunDir::open(&out).unwrap().read_meta().unwrap();
        for &id in &s.experiments {
            let of = |b: Option<&str>| meta.wall_times.iter().any(|t| t.experiment == id && t.backend.as_deref() == b);
            assert!(of(Some("fake")) && of(None), "{id}: {:?}", meta.wall_times);
        }
        let mut declared: Vec<String> =
            s.experiments.iter().flat_map(|&id| experiment(id).files()).map(|f| f.to_string()).collect();
        declared.sort();
        assert_eq!(written, declared);
    }

    /// Every registered experiment's headline CSV has a section in the report, and every section of
    /// the report reads a CSV its experiment writes.
    #[test]
    fn every_experiment_has_a_report_section_and_every_section_an_experiment() {
        let sections = report::registry::SECTIONS;
        for e in all() {
            assert!(
                sections.iter().any(|s| s.csv() == e.row_file() && s.experiment() == e.id()),
                "experiment {} writes {} but no report section shows it (add one to report::registry::SECTIONS)",
                e.id(),
                e.row_file()
            );
        }
        for s in sections {
            let e = experiment(s.experiment());
            assert!(
                e.files().contains(&s.csv()),
                "report section {} reads {}, which experiment {} does not write ({:?})",
                s.id(),
                s.csv(),
                e.id(),
                e.files()
            );
        }
    }
}
