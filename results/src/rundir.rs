//! The run directory: `run.json` plus one CSV per record type, written and read back here.
use crate::env::{HostEnv, LoadSnapshot};
use crate::records::Record;
use crate::vocab::{BackendKind, GuestModel, IsolationModel};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Version of the files' layout; bumped when a record changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors reading or writing a run directory. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// The directory could not be created or written.
    #[error("results: cannot write {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("results: cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("results: bad CSV in {path}: {source}")]
    Csv {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
    /// run.json is malformed.
    #[error("results: bad JSON in {path}: {source}")]
    Json {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// run.json is missing: not a run directory.
    #[error("results: {0} is not a vmct run directory (no run.json); pass a directory written by `vmct compare`")]
    NotARun(PathBuf),
}

/// What the run was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Experiments run, as words ([`crate::ExperimentId::as_str`]); kept as written, so run.json files of older
    /// versions (which also listed `blast`, now part of `isolation`) read unchanged.
    pub experiments: Vec<String>,
    /// Backends requested.
    pub backends: Vec<String>,
    /// Whether this was `--quick`.
    pub quick: bool,
    /// Warm-up launches per backend.
    pub warmup: u32,
    /// Measured launches per backend (sequential).
    pub startup_runs: u32,
    /// Concurrency levels for the launch-rate measurement.
    pub concurrency: Vec<u32>,
    /// Density: MiB each instance holds.
    pub density_hold_mib: u64,
    /// Density: memory budget, bytes.
    pub density_budget_bytes: u64,
    /// Density: instance count limit.
    pub density_max_instances: u32,
    /// Overhead: repetitions per scenario.
    pub overhead_runs: u32,
}

/// One backend as seen by this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend name.
    pub name: String,
    /// `baseline`, `ours` or `peer`.
    pub kind: BackendKind,
    /// Isolation model: `process`, `container`, `microvm` or `user-space-kernel`.
    pub model: IsolationModel,
    /// For microVMs: `bare` or `linux`.
    pub guest_model: Option<GuestModel>,
    /// Whether it ran in this run.
    pub available: bool,
    /// Why not, when unavailable.
    pub reason: Option<String>,
    /// Version string (peers).
    pub version: Option<String>,
    /// The guest's CPU is emulated (QEMU TCG), not run by hardware virtualisation: its startup and CPU
    /// figures are emulation-bound and its emulator's memory is no VMM's; its isolation, crash
    /// behaviour and guest memory are the guest's own. Absent in older run.json files (false).
    #[serde(default)]
    pub emulated: bool,
    /// The isolation profile it ran with (container backends; absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationProfile>,
}

/// The isolation profile a container backend ran with: what run.json and the report name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IsolationProfile {
    /// The profile and what it applies (e.g. "default: Docker/Podman defaults (...)").
    pub profile: String,
    /// The seccomp profile file, if a filter was installed.
    #[serde(default)]
    pub seccomp_path: Option<String>,
    /// SHA-256 (hex) of that file.
    #[serde(default)]
    pub seccomp_sha256: Option<String>,
    /// Distinct syscalls the filter allows (some only for some argument values).
    #[serde(default)]
    pub seccomp_syscalls_allowed: Option<u32>,
    /// Syscall names in the profile the filter compiler did not know: skipped (they get the default
    /// action, an errno).
    #[serde(default)]
    pub seccomp_unknown_names_skipped: Vec<String>,
    /// Device cgroup rules in order, v1 syntax (`a *:* rwm` denied first, then allowed ones); empty:
    /// no device restriction.
    #[serde(default)]
    pub device_rules: Vec<String>,
}

impl IsolationProfile {
    /// The caveat to record when the profile skipped unknown syscall names.
    pub fn caveat(&self, backend: &str) -> Option<String> {
        (!self.seccomp_unknown_names_skipped.is_empty()).then(|| {
            format!(
                "{backend}: seccomp profile {} names {} syscall(s) the filter compiler does not know, skipped (they get the profile's default errno): {}",
                self.seccomp_path.as_deref().unwrap_or("-"),
                self.seccomp_unknown_names_skipped.len(),
                self.seccomp_unknown_names_skipped.join(", ")
            )
        })
    }
}

/// run.json: everything needed to interpret the CSVs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Layout version of the run directory.
    pub schema_version: u32,
    /// Run id (also the directory name).
    pub id: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// End, seconds since the Unix epoch (0 while running).
    pub finished_unix_s: f64,
    /// vmct version.
    pub vmct_version: String,
    /// git commit of the source tree vmct was built from, if known.
    pub git_commit: Option<String>,
    /// The command line.
    pub command: Vec<String>,
    /// The plan.
    pub plan: Plan,
    /// The host.
    pub host: HostEnv,
    /// Backends and their availability.
    pub backends: Vec<BackendInfo>,
    /// The attack surface of each backend that ran the isolation experiment (also `attack_surface.csv`);
    /// empty when it did not run, or in run.json files written before issue 13.
    #[serde(default)]
    pub attack_surface: Vec<crate::surface::AttackSurfaceRow>,
    /// Whether each (backend, quantity) the run measured transfers to a VT-x/AMD-V host running the
    /// deployed model ([`crate::transfer::marks`], written with the finished run). Empty in run.json files
    /// written before issue 15; readers then apply the rule ([`crate::transfer::mark_of`]).
    #[serde(default)]
    pub transfer: Vec<crate::transfer::TransferMark>,
    /// Conditions that change what the numbers mean.
    pub caveats: Vec<String>,
    /// Load before the run.
    pub load_before: LoadSnapshot,
    /// Load after the run.
    pub load_after: Option<LoadSnapshot>,
    /// Cost of the harness's own timestamping of one event, seconds (median).
    pub harness_timestamp_cost_s: Option<f64>,
    /// The whole plan, enough to re-run it (`vmct compare --plan`): the harness's `compare::Settings`
    /// as JSON, which the harness reads and validates. Durations are seconds in fields named `*_s`,
    /// workload scenarios their words (`"cpu --iters 100000"`). None in run.json files written before
    /// it was recorded (absent in the file; [`RunMeta::plan`] is the summary every run has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_plan: Option<serde_json::Value>,
    /// Wall-clock time of each experiment, as a whole (`backend` None) and on each backend, in run
    /// order: where a run's time went, so the long poles of a plan can be seen. Empty in run.json files
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wall_times: Vec<WallTime>,
}

/// Wall-clock time one experiment took, on one backend or as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WallTime {
    /// The experiment (`startup`, `density`, ...).
    pub experiment: crate::ExperimentId,
    /// The backend; None for the experiment as a whole (its backends plus what it does around them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Host CLOCK_MONOTONIC elapsed, seconds.
    pub wall_s: f64,
}

/// A run directory on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Create (or reuse) the directory; fails with the path if it cannot be written.
    pub fn create(path: impl Into<PathBuf>) -> Result<RunDir, RunDirError> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|source| RunDirError::Write { path: path.clone(), source })?;
        // Probe writability now rather than after minutes of measurement.
        let probe = path.join(".vmct-write-test");
        fs::write(&probe, b"").map_err(|source| RunDirError::Write { path: path.clone(), source })?;
        let _ = fs::remove_file(probe);
        Ok(RunDir { path })
    }

    /// Open an existing run directory (must contain run.json).
    pub fn open(path: impl Into<PathBuf>) -> Result<RunDir, RunDirError> {
        let path = path.into();
        if !path.join("run.json").is_file() {
            return Err(RunDirError::NotARun(path));
        }
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write run.json.
    pub fn write_meta(&self, meta: &RunMeta) -> Result<(), RunDirError> {
        let path = self.path.join("run.json");
        let text =
            serde_json::to_string_pretty(meta).map_err(|source| RunDirError::Json { path: path.clone(), source })?;
        fs::write(&path, text).map_err(|source| RunDirError::Write { path, source })
    }

    /// Read run.json.
    pub fn read_meta(&self) -> Result<RunMeta, RunDirError> {
        let path = self.path.join("run.json");
        let text = fs::read_to_string(&path).map_err(|source| RunDirError::Read { path: path.clone(), source })?;
        serde_json::from_str(&text).map_err(|source| RunDirError::Json { path, source })
    }

    /// Write all rows of one record type to its CSV (replacing it).
    pub fn write_csv<R: Record>(&self, rows: &[R]) -> Result<(), RunDirError> {
        let path = self.path.join(R::FILE);
        let mut w = csv::Writer::from_path(&path).map_err(|source| RunDirError::Csv { path: path.clone(), source })?;
        for r in rows {
            w.serialize(r).map_err(|source| RunDirError::Csv { path: path.clone(), source })?;
        }
        w.flush().map_err(|source| RunDirError::Write { path, source })
    }

    /// Read one record type; a missing file is an empty list (the experiment did not run).
    pub fn read_csv<R: Record>(&self) -> Result<Vec<R>, RunDirError> {
        let path = self.path.join(R::FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut r = csv::Reader::from_path(&path).map_err(|source| RunDirError::Csv { path: path.clone(), source })?;
        r.deserialize().collect::<Result<Vec<R>, _>>().map_err(|source| RunDirError::Csv { path, source })
    }

    /// Whether the CSV of a record type exists.
    pub fn has<R: Record>(&self) -> bool {
        self.path.join(R::FILE).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;

    /// blast.csv gained `neighbour_cpus` as its last column: older files still read (empty allotment)
    /// and the earlier columns keep their bytes.
    #[test]
    fn blast_csv_keeps_its_columns_and_reads_files_without_the_allotment() {
        let d = tempfile::tempdir().unwrap();
        let old = "backend,neighbour,limited,victim_alone_s,victim_with_neighbour_s,slowdown,victim_ok\n\
                   container,cpu-hog,false,0.1,0.2,2.0,true\n";
        let r = RunDir::create(d.path()).unwrap();
        std::fs::write(d.path().join(BlastRow::FILE), old).unwrap();
        let rows: Vec<BlastRow> = r.read_csv().unwrap();
        assert_eq!((rows[0].slowdown, rows[0].neighbour_cpus), (2.0, None));
        let mut row = rows[0].clone();
        row.neighbour_cpus = Some(2.0);
        r.write_csv(&[row]).unwrap();
        let text = std::fs::read_to_string(d.path().join(BlastRow::FILE)).unwrap();
        let mut lines = old.lines().zip(text.lines());
        let (h_old, h_new) = lines.next().unwrap();
        assert_eq!(h_new, format!("{h_old},neighbour_cpus"));
        let (r_old, r_new) = lines.next().unwrap();
        assert_eq!(r_new, format!("{r_old},2.0"));
    }

    fn meta() -> RunMeta {
        RunMeta {
            schema_version: SCHEMA_VERSION,
            id: "r1".into(),
            started_unix_s: 1.5,
            finished_unix_s: 2.5,
            vmct_version: "0.1.0".into(),
            git_commit: Some("abc".into()),
            command: vec!["vmct".into(), "compare".into()],
            plan: Plan { experiments: vec!["startup".into()], startup_runs: 10, ..Plan::default() },
            host: HostEnv::capture(),
            backends: vec![BackendInfo {
                isolation: None,
                name: "process".into(),
                kind: BackendKind::Baseline,
                model: IsolationModel::Process,
                guest_model: None,
                available: true,
                reason: None,
                version: None,
                emulated: false,
            }],
            attack_surface: vec![crate::surface::AttackSurfaceRow {
                backend: "process".into(),
                host_syscalls_reachable: Some(340),
                ..Default::default()
            }],
            transfer: Vec::new(),
            caveats: vec!["x".into()],
            load_before: LoadSnapshot::capture(),
            load_after: None,
            harness_timestamp_cost_s: Some(2e-8),
            full_plan: Some(serde_json::json!({"experiments": ["startup"], "startup": {"timeout_s": 20.0}})),
            wall_times: Vec::new(),
        }
    }

    #[test]
    fn run_json_without_the_whole_plan_reads_and_writes_back_unchanged() {
        let m = RunMeta { full_plan: None, ..meta() };
        let old = serde_json::to_string_pretty(&m).unwrap();
        assert!(!old.contains("full_plan"), "{old}");
        let back: RunMeta = serde_json::from_str(&old).unwrap();
        assert_eq!(back.full_plan, None);
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), old);
        let with = serde_json::to_string_pretty(&meta()).unwrap();
        assert!(with.contains("\"full_plan\"") && with.contains("\"timeout_s\": 20.0"), "{with}");
    }

    #[test]
    fn run_json_without_attack_surface_still_reads() {
        let mut v = serde_json::to_value(meta()).unwrap();
        v.as_object_mut().unwrap().remove("attack_surface");
        let m: RunMeta = serde_json::from_value(v).unwrap();
        assert!(m.attack_surface.is_empty());
    }

    /// run.json files written before the transfer marks read (empty marks: readers apply the rule).
    #[test]
    fn run_json_without_transfer_marks_still_reads() {
        let mut m = meta();
        m.transfer = crate::transfer::marks(&m);
        assert!(!m.transfer.is_empty());
        let mut v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["transfer"][0]["quantity"], "startup", "{v}");
        v.as_object_mut().unwrap().remove("transfer");
        let back: RunMeta = serde_json::from_value(v).unwrap();
        assert!(back.transfer.is_empty());
    }

    #[test]
    fn attack_surface_csv_keeps_not_declared_apart_from_zero() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::create(d.path().join("run")).unwrap();
        let rows = vec![
            crate::surface::AttackSurfaceRow {
                backend: "microvm".into(),
                host_syscalls_reachable: Some(0),
                host_syscalls_source: "by construction".into(),
                ..Default::default()
            },
            crate::surface::AttackSurfaceRow { backend: "container".into(), ..Default::default() },
        ];
        rd.write_csv(&rows).unwrap();
        let back: Vec<crate::surface::AttackSurfaceRow> = rd.read_csv().unwrap();
        assert_eq!(back, rows);
        assert_eq!(back[0].host_syscalls_reachable, Some(0));
        assert_eq!(back[1].host_syscalls_reachable, None);
    }

    #[test]
    fn json_and_csv_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::create(d.path().join("run")).unwrap();
        let m = meta();
        rd.write_meta(&m).unwrap();
        assert_eq!(RunDir::open(rd.path()).unwrap().read_meta().unwrap(), m);

        let samples = vec![
            StartupSample {
                backend: "process".into(),
                mode: crate::StartupMode::Sequential,
                iteration: 0,
                warmup: true,
                launch_to_ready_s: 0.001,
                outlier: false,
            },
            StartupSample {
                backend: "microvm".into(),
                mode: crate::StartupMode::Concurrent(4),
                iteration: 1,
                warmup: false,
                launch_to_ready_s: 1.25e-3,
                outlier: true,
            },
        ];
        rd.write_csv(&samples).unwrap();
        assert_eq!(rd.read_csv::<StartupSample>().unwrap(), samples);

        let steps = vec![DensityStep {
            backend: "container".into(),
            instances: 3,
            mem_available_bytes: 10,
            mem_used_delta_bytes: -5,
            slab_bytes: 7,
            slab_delta_bytes: 2,
            instance_rss_bytes: None,
            guest_mem_bytes: Some(4096),
            vmm_overhead_bytes: None,
            cgroup_usage_bytes: Some(1),
            pss_bytes: None,
            launch_s: 0.5,
        }];
        rd.write_csv(&steps).unwrap();
        assert_eq!(rd.read_csv::<DensityStep>().unwrap(), steps);

        let over = vec![OverheadRow {
            backend: "microvm".into(),
            scenario: "syscall".into(),
            metric: String::new(),
            unit: String::new(),
            n: 0,
            median: 0.0,
            mad: 0.0,
            min: 0.0,
            max: 0.0,
            ratio_to_process: None,
            supported: false,
            reason: "bare guest has no system calls, \"quoted\"".into(),
            failed: false,
        }];
        rd.write_csv(&over).unwrap();
        assert_eq!(rd.read_csv::<OverheadRow>().unwrap(), over);
        assert!(rd.read_csv::<SnapshotRow>().unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let e = RunDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a vmct run directory"), "{e}");
        let file = d.path().join("file");
        fs::write(&file, "").unwrap();
        let e = RunDir::create(file.join("sub")).unwrap_err().to_string();
        assert!(e.contains("cannot write") && e.contains("file/sub"), "{e}");
        fs::write(d.path().join("startup.csv"), "backend,mode\nx").unwrap();
        fs::write(d.path().join("run.json"), "{").unwrap();
        let rd = RunDir::open(d.path()).unwrap();
        assert!(rd.read_csv::<StartupSample>().unwrap_err().to_string().contains("startup.csv"));
        assert!(rd.read_meta().unwrap_err().to_string().contains("run.json"));
    }
}
