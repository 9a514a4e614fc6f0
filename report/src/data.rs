//! Everything the report reads from one run directory, loaded once: run.json plus each CSV, with "absent" (the
//! experiment did not run) kept apart from "present but empty".
use results::{
    BlastRow, DensityFit, DensityStep, GuestModel, IsolationModel, IsolationRow, OverheadRow, PhaseSample, Record,
    RunDir, RunDirError, RunMeta, SnapshotRow, StartupMode, StartupSample, StartupSummary,
};
use std::path::PathBuf;

/// One run, loaded. `None` means the CSV file is absent.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run directory.
    pub dir: PathBuf,
    /// run.json.
    pub meta: RunMeta,
    /// startup.csv.
    pub startup: Option<Vec<StartupSample>>,
    /// startup_phases.csv.
    pub phases: Option<Vec<PhaseSample>>,
    /// startup_summary.csv.
    pub startup_summary: Option<Vec<StartupSummary>>,
    /// density.csv.
    pub density: Option<Vec<DensityStep>>,
    /// density_summary.csv.
    pub density_fit: Option<Vec<DensityFit>>,
    /// overhead.csv.
    pub overhead: Option<Vec<OverheadRow>>,
    /// isolation.csv.
    pub isolation: Option<Vec<IsolationRow>>,
    /// blast.csv.
    pub blast: Option<Vec<BlastRow>>,
    /// snapshot.csv.
    pub snapshot: Option<Vec<SnapshotRow>>,
    /// crosscheck.csv.
    pub crosscheck: Option<Vec<results::CrossCheckRow>>,
    /// crash.csv.
    pub crash: Option<Vec<results::CrashRow>>,
    /// attack_surface.csv.
    pub attack_surface: Option<Vec<results::AttackSurfaceRow>>,
    /// idle_cpu.csv (density sweep).
    pub idle_cpu: Option<Vec<results::IdleCpuRow>>,
    /// victim.csv (density sweep).
    pub victim: Option<Vec<results::VictimRow>>,
    /// memory_giveback.csv.
    pub memory_giveback: Option<Vec<results::GiveBackRow>>,
    /// ksm.csv.
    pub ksm: Option<Vec<results::KsmRow>>,
    /// page_cache.csv.
    pub page_cache: Option<Vec<results::PageCacheRow>>,
}

fn opt<R: Record>(rd: &RunDir) -> Result<Option<Vec<R>>, RunDirError> {
    if rd.has::<R>() {
        rd.read_csv::<R>().map(Some)
    } else {
        Ok(None)
    }
}

/// The isolation model of a backend, with the microVM guest model split out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Model {
    /// Plain host process (the baseline).
    Process,
    /// Namespaced container (ours or a peer runtime).
    Container,
    /// MicroVM, bare guest model.
    MicrovmBare,
    /// MicroVM, linux guest model.
    MicrovmLinux,
    /// User-space kernel (gVisor's runsc): neither a container nor a VM in verdicts and the planner.
    UserSpaceKernel,
}

impl Model {
    /// Words for tables.
    pub fn label(self) -> &'static str {
        match self {
            Model::Process => "process",
            Model::Container => "container",
            Model::MicrovmBare => "microVM (bare guest)",
            Model::MicrovmLinux => "microVM (linux guest)",
            Model::UserSpaceKernel => "user-space kernel (gVisor)",
        }
    }
}

impl RunData {
    /// Read run.json and every CSV.
    pub fn load(rd: &RunDir) -> Result<RunData, RunDirError> {
        Ok(RunData {
            dir: rd.path().to_path_buf(),
            meta: rd.read_meta()?,
            startup: opt(rd)?,
            phases: opt(rd)?,
            startup_summary: opt(rd)?,
            density: opt(rd)?,
            density_fit: opt(rd)?,
            overhead: opt(rd)?,
            isolation: opt(rd)?,
            blast: opt(rd)?,
            snapshot: opt(rd)?,
            crosscheck: opt(rd)?,
            crash: opt(rd)?,
            attack_surface: opt(rd)?,
            idle_cpu: opt(rd)?,
            victim: opt(rd)?,
            memory_giveback: opt(rd)?,
            ksm: opt(rd)?,
            page_cache: opt(rd)?,
        })
    }

    /// The model of a backend: from run.json when listed there, else guessed from its name.
    pub fn model(&self, backend: &str) -> Model {
        match self.meta.backends.iter().find(|b| b.name == backend) {
            Some(b) => match b.model {
                IsolationModel::Process => Model::Process,
                IsolationModel::Microvm if b.guest_model == Some(GuestModel::Linux) => Model::MicrovmLinux,
                IsolationModel::Microvm => Model::MicrovmBare,
                IsolationModel::UserSpaceKernel => Model::UserSpaceKernel,
                IsolationModel::Container => Model::Container,
            },
            None if backend == "process" => Model::Process,
            None if backend.starts_with("microvm-linux") => Model::MicrovmLinux,
            None if backend.starts_with("microvm") => Model::MicrovmBare,
            None if backend == "runsc" => Model::UserSpaceKernel,
            None => Model::Container,
        }
    }

    /// Whether run.json marks the backend's guest CPU as emulated (QEMU TCG): its startup and density
    /// figures (which include the emulator) never feed a verdict.
    pub fn emulated(&self, backend: &str) -> bool {
        self.meta.backends.iter().any(|b| b.name == backend && b.emulated)
    }

    /// All backend names: run.json's order first, then any that only appear in a CSV.
    pub fn backends(&self) -> Vec<String> {
        let mut names: Vec<String> = self.meta.backends.iter().map(|b| b.name.clone()).collect();
        let mut add = |n: &str| {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        };
        for s in self.startup_summary.iter().flatten() {
            add(&s.backend);
        }
        for s in self.density_fit.iter().flatten() {
            add(&s.backend);
        }
        for s in self.overhead.iter().flatten() {
            add(&s.backend);
        }
        for s in self.isolation.iter().flatten() {
            add(&s.backend);
        }
        for s in self.blast.iter().flatten() {
            add(&s.backend);
        }
        for s in self.snapshot.iter().flatten() {
            add(&s.backend);
        }
        for s in self.crosscheck.iter().flatten() {
            add(&s.backend);
        }
        for s in self.crash.iter().flatten() {
            add(&s.backend);
        }
        for s in self.memory_giveback.iter().flatten() {
            add(&s.backend);
        }
        for s in self.ksm.iter().flatten() {
            add(&s.backend);
        }
        for s in self.page_cache.iter().flatten() {
            add(&s.backend);
        }
        names
    }

    /// Order `xs` by the backend order of [`RunData::backends`].
    pub fn backend_rank(&self, backend: &str) -> usize {
        self.backends().iter().position(|b| b == backend).unwrap_or(usize::MAX)
    }

    /// The sequential startup summary of a backend (or its first summary when no sequential mode exists).
    pub fn startup_of(&self, backend: &str) -> Option<&StartupSummary> {
        let rows = self.startup_summary.as_ref()?;
        rows.iter()
            .find(|s| s.backend == backend && s.mode == StartupMode::Sequential)
            .or_else(|| rows.iter().find(|s| s.backend == backend && s.mode.concurrency().is_none()))
    }

    /// Why an experiment's CSV is absent, in words, from what run.json says.
    pub fn why_absent(&self, experiment: &str) -> String {
        let exps = &self.meta.plan.experiments;
        if !exps.iter().any(|e| e == experiment) {
            if exps.is_empty() {
                "the plan in run.json lists no experiments".to_string()
            } else {
                format!("not in this run's plan (experiments: {})", exps.join(", "))
            }
        } else if self.meta.finished_unix_s == 0.0 {
            "planned, but the run did not finish (run.json has no end time)".to_string()
        } else {
            "planned, but no results file was written; see the caveats above".to_string()
        }
    }

    /// Host label: "hostname (N cores, X GiB)".
    pub fn host_label(&self) -> String {
        let h = &self.meta.host;
        format!(
            "{} ({} cores, {})",
            if h.hostname.is_empty() { "unknown host" } else { &h.hostname },
            h.cores,
            crate::units::fmt_bytes(h.mem_total_bytes as f64)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_space_kernel_is_its_own_model_not_a_container() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let mut run = RunData::load(&RunDir::open(d.path()).unwrap()).unwrap();
        assert_eq!(run.model("runsc"), Model::UserSpaceKernel, "guessed from the name when run.json lacks it");
        let mut info = run.meta.backends.iter().find(|b| b.name == "crun").unwrap().clone();
        (info.name, info.model) = ("gvisor".into(), IsolationModel::UserSpaceKernel);
        run.meta.backends.push(info);
        assert_eq!(run.model("gvisor"), Model::UserSpaceKernel);
        assert_eq!(run.model("crun"), Model::Container);
    }
}
