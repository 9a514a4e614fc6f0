//! `vmct compare`: one plan run on every available backend, written to a run directory, rendered as a
//! report. Partial results are written after each experiment, so an interrupted run still has data.
//!
//! run.json keeps the whole plan ([`Settings`], field `full_plan`; JSON conventions in
//! `crate::experiments`) beside the older summary `plan`, and [`load_plan`] reads it back for
//! `vmct compare --plan`, which re-runs exactly that plan.
use crate::backend::vmm_peers::{self, Peer};
use crate::backend::Backend;
use crate::experiments::registry::{self, RunContext};
use crate::experiments::{density, memory, overhead, snapshot, startup};
use crate::progress::{self, Mode};
use results::env::LoadSnapshot;
use results::{ExperimentId, HostEnv, Plan, RunDir, RunMeta};
use std::path::{Path, PathBuf};
use std::time::Duration;
use workloads::scenario::Scenario;

/// Errors that stop the whole run (a failing backend only stops its own experiment).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The run directory could not be written.
    #[error(transparent)]
    RunDir(#[from] results::RunDirError),
    /// Stopped by Ctrl-C.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// No backend can run here.
    #[error("no selected backend is available on this host: {0}")]
    NoBackends(String),
    /// The plan could not be written as JSON.
    #[error("cannot record the plan in run.json: {0}")]
    PlanJson(#[source] serde_json::Error),
    /// A plan file (`--plan`) could not be read, is not a run.json, or holds an invalid plan.
    #[error("--plan {path}: {reason}")]
    BadPlan {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what would be valid.
        reason: String,
    },
    /// A run.json written before the whole plan was recorded: it cannot be replayed exactly.
    #[error(
        "--plan {path}: this run.json was written by an older vmct and records only a summary of its plan \
         (no `full_plan`), so it cannot be re-run exactly. The nearest command is:\n  {nearest}\n\
         (timeouts, concurrency levels, overhead sizes, snapshot and blast settings and --peer paths were not \
         recorded and would come from the preset)"
    )]
    NotReplayable {
        /// The file.
        path: PathBuf,
        /// The nearest `vmct compare` command line, from the recorded summary.
        nearest: String,
    },
}

/// Most instances `--density-max` (and a replayed plan) may ask for per backend.
pub const MAX_DENSITY_INSTANCES: u32 = 100_000;

/// The knobs of a run; [`Settings::quick`] and [`Settings::default_plan`] are the two presets.
///
/// Stored whole in run.json as `full_plan` (durations as seconds in `*_s` fields, scenarios as their
/// words; see `crate::experiments`); unknown fields are rejected when it is read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Experiments to run (they run in [`ExperimentId::ALL`]'s order whatever this order is).
    pub experiments: Vec<ExperimentId>,
    /// Backends to run, by name (empty: every backend the host offers). run.json records the backends
    /// the run considered, available or not.
    pub backends: Vec<String>,
    /// Peer VMMs to run beside ours (`--peer NAME=PATH`).
    pub peers: Vec<Peer>,
    /// Startup plan.
    pub startup: startup::StartupPlan,
    /// Density plan.
    pub density: density::DensityPlan,
    /// Overhead plan.
    pub overhead: overhead::OverheadPlan,
    /// Snapshot plan.
    pub snapshot: snapshot::SnapshotPlan,
    /// Blast-radius settings (None: probes only).
    pub blast: Option<crate::isolation::blast::BlastOptions>,
    /// Memory over time and sharing plan (run.json files without it get [`memory::MemoryPlan::default`]).
    #[serde(default)]
    pub memory: memory::MemoryPlan,
    /// Whether this is the quick preset.
    pub quick: bool,
    /// Whether this is the scale preset ([`Settings::scale`]; absent in older plans: false).
    #[serde(default)]
    pub scale: bool,
    /// The image measured instead of the vmct workload (`--image NAME --ready RULE [-- CMD]`); absent
    /// for the vmct workload (and in run.json files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePlan>,
}

/// The image workload of a run, as `vmct compare --image NAME --ready RULE [-- CMD ARGS]` gave it; a
/// replay (`--plan`) runs the same image from the local store with the same rule and command.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePlan {
    /// The image's name in the store (`vmct images`).
    pub name: String,
    /// When its process counts as ready: `tcp:PORT`, `log:REGEX` or `exit`.
    pub ready: String,
    /// The command and arguments replacing the image's Cmd (empty: its own Cmd).
    pub command: Vec<String>,
}

impl Settings {
    /// `--quick`: under a minute on a 2-core host (without the peer cross-check and the crash experiment, see
    /// [`quick_experiments`]).
    pub fn quick(mem_available: u64) -> Settings {
        Settings {
            experiments: quick_experiments(),
            backends: Vec::new(),
            peers: Vec::new(),
            startup: startup::StartupPlan {
                warmup: 3,
                runs: 30,
                concurrency: vec![4],
                concurrent_launches: 24,
                timeout: Duration::from_secs(20),
            },
            density: density::DensityPlan {
                hold_mib: 4,
                budget_bytes: mem_available / 2,
                max_instances: 40,
                floor_bytes: host_floor_bytes(mem_available),
                timeout: Duration::from_secs(20),
                probe_at: vec![1],
                idle_window: Duration::from_millis(500),
                victim_iters: 50_000,
            },
            overhead: overhead::OverheadPlan {
                scenarios: vec![
                    Scenario::Cpu { iters: 100_000 },
                    Scenario::Mem { mib: 16 },
                    Scenario::Syscall { n: 100_000 },
                    Scenario::Io { mib: 8 },
                ],
                runs: 2,
                timeout: Duration::from_secs(60),
            },
            snapshot: snapshot::SnapshotPlan::quick(),
            blast: Some(crate::isolation::blast::BlastOptions {
                victim_iters: 50_000,
                rounds: 2,
                hog_secs: 10.0,
                hog_mib: 256,
                ..Default::default()
            }),
            memory: memory::MemoryPlan::quick(),
            quick: true,
            scale: false,
            image: None,
        }
    }

    /// The default plan ([`default_experiments`], the peer cross-check included): stable p99s, a
    /// 1000-instance density sweep when the budget allows.
    pub fn default_plan(mem_available: u64) -> Settings {
        Settings {
            experiments: default_experiments(),
            backends: Vec::new(),
            peers: Vec::new(),
            startup: startup::StartupPlan {
                warmup: 10,
                runs: 300,
                concurrency: vec![2, 4, 8],
                concurrent_launches: 160,
                timeout: Duration::from_secs(30),
            },
            density: density::DensityPlan {
                hold_mib: 4,
                budget_bytes: mem_available / 2,
                max_instances: 1000,
                floor_bytes: host_floor_bytes(mem_available),
                timeout: Duration::from_secs(30),
                probe_at: vec![1, 100],
                idle_window: Duration::from_secs(1),
                victim_iters: 100_000,
            },
            overhead: overhead::OverheadPlan {
                scenarios: vec![
                    Scenario::Cpu { iters: 1_000_000 },
                    Scenario::Mem { mib: 64 },
                    Scenario::Syscall { n: 1_000_000 },
                    Scenario::Io { mib: 32 },
                ],
                runs: 5,
                timeout: Duration::from_secs(120),
            },
            snapshot: snapshot::SnapshotPlan::default_plan(),
            blast: Some(crate::isolation::blast::BlastOptions { hog_secs: 20.0, rounds: 3, ..Default::default() }),
            memory: memory::MemoryPlan::default_plan(),
            quick: false,
            scale: false,
            image: None,
        }
    }

    /// `--scale` (issue 18 item 2): the density sweep only, each backend swept until the memory budget
    /// (half of MemAvailable), [`MAX_DENSITY_INSTANCES`] (or `--density-max`) or a host limit, which then
    /// stops the sweep and is named (`crate::hostlimit`); idle CPU and a victim at 1, 10, 100, 1000 and
    /// 10 000 instances alive and at the last step, idle CPU over 2 s. The user-space kernel is swept to
    /// its limit too, and so is an emulated backend (without --scale capped at [`EMULATED_DENSITY_MAX`]: its
    /// instances boot in seconds and together keep host cores busy emulating their timers).
    pub fn scale(mem_available: u64) -> Settings {
        let d = Settings::default_plan(mem_available);
        Settings {
            experiments: vec![ExperimentId::Density, ExperimentId::Memory],
            density: density::DensityPlan {
                max_instances: MAX_DENSITY_INSTANCES,
                probe_at: vec![1, 10, 100, 1000, 10_000],
                idle_window: Duration::from_secs(2),
                ..d.density
            },
            scale: true,
            ..d
        }
    }

    /// The summary of the plan recorded in run.json's `plan` (the report reads it).
    pub fn to_plan(&self) -> Plan {
        Plan {
            experiments: self.experiments.iter().map(|e| e.to_string()).collect(),
            backends: self.backends.clone(),
            quick: self.quick,
            warmup: self.startup.warmup,
            startup_runs: self.startup.runs,
            concurrency: self.startup.concurrency.clone(),
            density_hold_mib: self.density.hold_mib,
            density_budget_bytes: self.density.budget_bytes,
            density_max_instances: self.density.max_instances,
            overhead_runs: self.overhead.runs,
        }
    }

    /// Check a plan read from a file: every value in the range the CLI flags accept. The error names
    /// the field and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        if self.experiments.is_empty() {
            return Err(format!("experiments is empty; valid experiments: {}", ExperimentId::valid_list()));
        }
        if self.startup.runs == 0 {
            return Err("startup.runs is 0: expected at least 1".into());
        }
        if !(1..=MAX_DENSITY_INSTANCES).contains(&self.density.max_instances) {
            return Err(format!(
                "density.max_instances is {}: expected 1 to {MAX_DENSITY_INSTANCES}",
                self.density.max_instances
            ));
        }
        if self.density.hold_mib > workloads::scenario::MAX_MIB {
            return Err(format!(
                "density.hold_mib is {}: expected at most {}",
                self.density.hold_mib,
                workloads::scenario::MAX_MIB
            ));
        }
        if self.memory.instances == 0 || !(1..=workloads::scenario::MAX_MIB).contains(&self.memory.burst_mib) {
            return Err(format!(
                "memory.instances is {} and memory.burst_mib {}: expected at least 1 instance and 1 to {} MiB",
                self.memory.instances,
                self.memory.burst_mib,
                workloads::scenario::MAX_MIB
            ));
        }
        if !(1..=workloads::scenario::MAX_MIB).contains(&self.memory.file_set_mib) {
            return Err(format!(
                "memory.file_set_mib is {}: expected 1 to {} MiB",
                self.memory.file_set_mib,
                workloads::scenario::MAX_MIB
            ));
        }
        if self.density.budget_bytes == 0 {
            return Err("density.budget_bytes is 0: expected above 0".into());
        }
        self.peers.iter().try_for_each(vmm_peers::check_peer)
    }
}

/// The experiments the default plan runs: every one, the peer cross-check (`crosscheck`, issue 15 item
/// 6) included (it took about 2.5 min while each whole-process `vmct run` on runsc spent about 3.3 s
/// choosing its platform; that choice is now cached per host: `crate::backend::runsc::cached_choice`),
/// but `memory`, which waits a minute per backend for give-back: it runs in `--scale` and with
/// `--experiments memory`.
pub fn default_experiments() -> Vec<ExperimentId> {
    ExperimentId::ALL.iter().copied().filter(|&e| e != ExperimentId::Memory).collect()
}

/// The experiments `--quick` runs: every one but the peer cross-check, which times each peer's own
/// CLI n = 30 times per clock ([`crate::experiments::crosscheck::RUNS`]) and would not fit the quick
/// preset's minute; `--experiments crosscheck` runs it there too.
pub fn quick_experiments() -> Vec<ExperimentId> {
    // The crash experiment's emulated guests take about half a minute on their own.
    default_experiments().into_iter().filter(|&e| e != ExperimentId::CrossCheck && e != ExperimentId::Crash).collect()
}

/// Sample sizes for a backend whose guest CPU is emulated ([`results::BackendInfo::emulated`]): each
/// of its boots takes seconds (QEMU TCG here: about 2-3 s to ready), so it gets small samples (at most
/// [`EMULATED_STARTUP_RUNS`] startup launches, one concurrency level, a density sweep of at most
/// [`EMULATED_DENSITY_MAX`] instances (except with `--scale`, which sweeps every model to its limit: a
/// sweep of about a hundred emulated guests here), two overhead repetitions) and longer timeouts, keeping the default
/// `vmct compare` within minutes (the blast radius: 2 victim rounds of at most 50 000 blocks, hogs of
/// at most 10 s). Its timings are emulation-bound anyway; what it is run for (guest memory,
/// isolation, crash behaviour) does not need large samples.
pub fn for_emulated(s: &Settings) -> Settings {
    let mut e = s.clone();
    let at_least = |t: Duration, min: u64| t.max(Duration::from_secs(min));
    e.startup.warmup = s.startup.warmup.min(1);
    e.startup.runs = s.startup.runs.min(EMULATED_STARTUP_RUNS);
    e.startup.concurrency = s.startup.concurrency.iter().copied().filter(|c| *c > 1).min().into_iter().collect();
    e.startup.concurrent_launches = s.startup.concurrent_launches.min(4);
    e.startup.timeout = at_least(s.startup.timeout, 60);
    if !s.scale {
        e.density.max_instances = s.density.max_instances.min(EMULATED_DENSITY_MAX);
    }
    e.density.timeout = at_least(s.density.timeout, 60);
    e.overhead.runs = s.overhead.runs.min(2);
    e.overhead.timeout = at_least(s.overhead.timeout, 180);
    e.memory.instances = s.memory.instances.min(2);
    e.memory.timeout = at_least(s.memory.timeout, 120);
    e.blast = s.blast.as_ref().map(|b| crate::isolation::blast::BlastOptions {
        victim_iters: b.victim_iters.min(50_000),
        rounds: b.rounds.min(2),
        hog_secs: b.hog_secs.min(10.0),
        timeout: at_least(b.timeout, 120),
        ..b.clone()
    });
    e
}

/// Sample sizes for a user-space kernel (gVisor's runsc): each launch starts a Sentry and a Gofer
/// (about 0.3 s to ready here with the ptrace platform) and each system call costs tens of
/// microseconds, so it gets at most [`USER_KERNEL_STARTUP_RUNS`] startup launches (3 warm-ups, at most
/// 40 per concurrency level), a density sweep of at most [`USER_KERNEL_DENSITY_MAX`] instances (except
/// with `--scale`, which sweeps it to its limit) and at most 3 overhead repetitions (the scenarios keep
/// their sizes, so its ratios compare like for like).
pub fn for_user_space_kernel(s: &Settings) -> Settings {
    let mut u = s.clone();
    u.startup.warmup = s.startup.warmup.min(3);
    u.startup.runs = s.startup.runs.min(USER_KERNEL_STARTUP_RUNS);
    u.startup.concurrent_launches = s.startup.concurrent_launches.min(40);
    if !s.scale {
        u.density.max_instances = s.density.max_instances.min(USER_KERNEL_DENSITY_MAX);
    }
    u.overhead.runs = s.overhead.runs.min(3);
    u
}

/// Most sequential startup launches of a user-space kernel ([`for_user_space_kernel`]).
pub const USER_KERNEL_STARTUP_RUNS: u32 = 50;
/// Most instances of a user-space kernel's density sweep ([`for_user_space_kernel`]).
pub const USER_KERNEL_DENSITY_MAX: u32 = 100;

/// Why an available user-space-kernel backend (runsc) is left out of this run, if it is: `--quick`
/// leaves it out (its rows take about a minute more here: 0.3 s per launch, a Sentry round trip per
/// system call) unless named in `--backends`.
pub fn user_space_kernel_left_out(info: &results::BackendInfo, s: &Settings) -> Option<String> {
    (info.model == results::IsolationModel::UserSpaceKernel
        && info.available
        && s.quick
        && !s.backends.contains(&info.name))
    .then(|| {
        "left out of --quick: each launch starts a Sentry and a Gofer (about 0.3 s) and its rows add about a \
         minute (name it in --backends to run it)"
            .to_string()
    })
}

/// Most sequential startup launches of an emulated backend ([`for_emulated`]).
pub const EMULATED_STARTUP_RUNS: u32 = 10;
/// Most instances of an emulated backend's density sweep ([`for_emulated`]).
pub const EMULATED_DENSITY_MAX: u32 = 8;

/// Why an available emulated backend is left out of this run, if it is: with `--quick` (its boots
/// take seconds), or when a backend of the same model and guest model runs here without emulation
/// (it is a stand-in for hosts where that one cannot run). A backend the user named in `--backends`
/// always runs.
pub fn emulated_left_out(info: &results::BackendInfo, all: &[results::BackendInfo], s: &Settings) -> Option<String> {
    if !info.emulated || !info.available || s.backends.contains(&info.name) {
        return None;
    }
    if s.quick {
        return Some(
            "left out of --quick: its guest CPU is emulated and each boot takes seconds (name it in --backends to run it)"
                .into(),
        );
    }
    all.iter()
        .find(|o| !o.emulated && o.available && o.model == info.model && o.guest_model == info.guest_model)
        .map(|o| format!("{} runs the same guest model here without emulation", o.name))
}

/// Read the whole plan recorded in a run directory or its run.json, for `vmct compare --plan`. The
/// plan comes back as it was run, except `density.floor_bytes`, a host safety limit the caller
/// recomputes for this host ([`host_floor_bytes`]).
///
/// Errors: [`CompareError::BadPlan`] (unreadable file, not a run.json, invalid plan; names the file),
/// [`CompareError::NotReplayable`] (a run.json of an older vmct without `full_plan`).
pub fn load_plan(path: &Path) -> Result<Settings, CompareError> {
    let file = if path.is_dir() { path.join("run.json") } else { path.to_path_buf() };
    let bad = |reason: String| CompareError::BadPlan { path: file.clone(), reason };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        bad(format!("cannot read it ({e}); pass a run directory written by `vmct compare` or its run.json"))
    })?;
    let meta: RunMeta = serde_json::from_str(&text).map_err(|e| bad(format!("not a vmct run.json: {e}")))?;
    let Some(full) = meta.full_plan else {
        return Err(CompareError::NotReplayable { path: file, nearest: nearest_command(&meta.plan) });
    };
    let s: Settings = serde_json::from_value(full).map_err(|e| bad(format!("invalid full_plan: {e}")))?;
    s.validate().map_err(|e| bad(format!("invalid full_plan: {e}")))?;
    Ok(s)
}

/// The `vmct compare` command line nearest to a plan summary (for run.json files without `full_plan`).
fn nearest_command(p: &Plan) -> String {
    let mut c = String::from("vmct compare");
    if p.quick {
        c.push_str(" --quick");
    }
    if !p.backends.is_empty() {
        c.push_str(&format!(" --backends {}", p.backends.join(",")));
    }
    // Only names this vmct knows (older runs listed "blast", now part of "isolation").
    let known: Vec<&str> =
        p.experiments.iter().map(String::as_str).filter(|e| e.parse::<ExperimentId>().is_ok()).collect();
    if !known.is_empty() {
        c.push_str(&format!(" --experiments {}", known.join(",")));
    }
    c.push_str(&format!(
        " --warmup {} --runs-per-backend {} --density-budget {}B --density-max {} --hold-mib {}",
        p.warmup, p.startup_runs, p.density_budget_bytes, p.density_max_instances, p.density_hold_mib
    ));
    c
}

/// The density sweep's host safety floor on a host with `mem_available` bytes available: at least a
/// quarter of it (and 1 GiB) stays free whatever the budget says.
pub fn host_floor_bytes(mem_available: u64) -> u64 {
    (mem_available / 4).max(1 << 30).min(mem_available)
}

/// A new run id: UTC date-time plus the harness pid.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    run_id_at(secs, std::process::id())
}

/// The run id of a run started `unix_s` seconds after the epoch by harness `pid`:
/// `YYYYMMDD-HHMMSS-<pid>`, UTC, so ids of one host sort by start time.
fn run_id_at(unix_s: u64, pid: u32) -> String {
    let (d, s) = (unix_s / 86_400, unix_s % 86_400);
    let (year, month, day) = report::timefmt::civil_from_days(d as i64);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{pid}", s / 3600, s % 3600 / 60, s % 60)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// What the run produced, for the CLI's summary.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The report, if rendered.
    pub report: Option<PathBuf>,
    /// Backend/experiment failures (the run went on).
    pub failures: Vec<String>,
    /// Sequential startup medians: (backend, seconds, n).
    pub startup_medians: Vec<(String, f64, u32)>,
    /// Density: (backend, instances, bytes per instance).
    pub density: Vec<(String, u32, f64)>,
}

/// Run the experiments on `backends`, writing into `out`.
pub fn run(
    backends: &[Box<dyn Backend>],
    settings: &Settings,
    out: PathBuf,
    command: Vec<String>,
    host: HostEnv,
    mode: Mode,
) -> Result<Outcome, CompareError> {
    let rd = RunDir::create(&out)?;
    let mut infos: Vec<results::BackendInfo> = backends.iter().map(|b| b.info()).collect();
    let left_out: Vec<(usize, String)> = infos
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            emulated_left_out(b, &infos, settings).or_else(|| user_space_kernel_left_out(b, settings)).map(|r| (i, r))
        })
        .collect();
    for (i, reason) in &left_out {
        infos[*i].available = false;
        infos[*i].reason = Some(reason.clone());
    }
    let emulated = for_emulated(settings);
    let user_kernel = for_user_space_kernel(settings);
    let usable: Vec<&dyn Backend> =
        backends.iter().zip(&infos).filter(|(_, i)| i.available).map(|(b, _)| b.as_ref()).collect();
    if usable.is_empty() {
        let why =
            infos.iter().map(|i| format!("{}: {}", i.name, i.reason.clone().unwrap_or_default())).collect::<Vec<_>>();
        return Err(CompareError::NoBackends(why.join("; ")));
    }
    for i in infos.iter().filter(|i| !i.available) {
        progress::note(mode, &format!("skipping {}: {}", i.name, i.reason.as_deref().unwrap_or("unavailable")));
    }
    // Left-out emulated backends are not recorded, so a replay (which names its backends) leaves them out too.
    let considered = infos.iter().enumerate().filter(|(i, _)| !left_out.iter().any(|(j, _)| j == i));
    let recorded = Settings { backends: considered.map(|(_, i)| i.name.clone()).collect(), ..settings.clone() };
    let mut meta = RunMeta {
        schema_version: results::rundir::SCHEMA_VERSION,
        id: out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        started_unix_s: unix_now(),
        finished_unix_s: 0.0,
        vmct_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: Some(crate::artifacts::GIT_COMMIT.to_string()).filter(|s| !s.is_empty()),
        command,
        plan: recorded.to_plan(),
        caveats: host
            .caveats()
            .into_iter()
            .chain(infos.iter().filter_map(|i| i.isolation.as_ref()?.caveat(&i.name)))
            .collect(),
        host,
        backends: infos,
        attack_surface: Vec::new(),
        transfer: Vec::new(),
        load_before: LoadSnapshot::capture(),
        load_after: None,
        harness_timestamp_cost_s: Some(crate::experiments::timestamp_cost_s(10_000)),
        full_plan: Some(serde_json::to_value(&recorded).map_err(CompareError::PlanJson)?),
        wall_times: Vec::new(),
    };
    if settings.experiments.contains(&ExperimentId::Density) {
        meta.caveats.push(crate::hostlimit::raise_nofile().to_string());
    }
    rd.write_meta(&meta)?;
    let mut outcome =
        Outcome { run_dir: out, report: None, failures: Vec::new(), startup_medians: Vec::new(), density: Vec::new() };
    let mut cx = RunContext {
        backends: &usable,
        settings,
        emulated: &emulated,
        user_kernel: &user_kernel,
        run_dir: &rd,
        mode,
        meta: &mut meta,
        outcome: &mut outcome,
        wall: registry::WallClock::default(),
    };
    for e in registry::all().filter(|e| settings.experiments.contains(&e.id())) {
        e.execute(&mut cx)?;
    }

    let after = LoadSnapshot::capture();
    meta.caveats.extend(load_caveats(&meta.load_before, &after, meta.host.cores));
    meta.load_after = Some(after);
    meta.finished_unix_s = unix_now();
    meta.transfer = results::transfer::marks(&meta);
    rd.write_meta(&meta)?;
    Ok(outcome)
}

/// Caveats from load measured before and after the run: other work on the host, or CPU stolen by the
/// hypervisor, changes what the timings mean.
pub fn load_caveats(before: &LoadSnapshot, after: &LoadSnapshot, cores: u32) -> Vec<String> {
    let mut c = Vec::new();
    let busy = 0.5 * cores as f64;
    if before.loadavg_1m > busy {
        c.push(format!(
            "The host was busy before the run (1-minute load {:.2} on {cores} cores): timings include contention.",
            before.loadavg_1m
        ));
    }
    let total = after.total_cpu_s - before.total_cpu_s;
    let steal = after.steal_s - before.steal_s;
    if total > 0.0 && steal / total > 0.02 {
        c.push(format!(
            "{:.1}% of CPU time was stolen by the hypervisor during the run: other tenants competed for the CPUs.",
            100.0 * steal / total
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::RunDir;

    #[test]
    fn load_and_steal_become_caveats() {
        let b = LoadSnapshot { loadavg_1m: 3.0, steal_s: 10.0, total_cpu_s: 100.0, mem_available_bytes: 0 };
        let a = LoadSnapshot { loadavg_1m: 1.0, steal_s: 15.0, total_cpu_s: 200.0, mem_available_bytes: 0 };
        let c = load_caveats(&b, &a, 2);
        assert_eq!(c.len(), 2);
        assert!(c[0].contains("load 3.00") && c[1].contains("5.0% of CPU time was stolen"));
        let quiet = LoadSnapshot { loadavg_1m: 0.1, ..a.clone() };
        assert!(load_caveats(&quiet, &quiet, 2).is_empty());
    }

    /// A plan with a non-preset value in every section, fractional durations included.
    fn odd_plan() -> Settings {
        let mut s = Settings::quick(8 << 30);
        s.experiments = vec![ExperimentId::Startup];
        s.peers = vec![Peer { vmm: vmm_peers::PeerVmm::Firecracker, path: "/bin/sh".into() }];
        s.startup.runs = 3;
        s.startup.concurrency = vec![2, 3];
        s.startup.concurrent_launches = 4;
        s.startup.timeout = Duration::from_millis(1500);
        s.density.hold_mib = 3;
        s.density.timeout = Duration::from_nanos(1);
        s.overhead.scenarios = vec![Scenario::Cpu { iters: 7 }, Scenario::Io { mib: 2 }];
        s.overhead.timeout = Duration::from_secs_f64(0.1);
        s.snapshot.dirty_mib = vec![5];
        s.snapshot.settle = Duration::from_millis(10);
        s.blast = Some(crate::isolation::blast::BlastOptions { hog_secs: 0.3, limit_cpu: 0.7, ..Default::default() });
        s.image = Some(ImagePlan { name: "web".into(), ready: "tcp:8080".into(), command: vec!["httpd".into()] });
        s
    }

    #[test]
    fn replayed_plan_equals_the_original() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let backends: Vec<Box<dyn Backend>> =
            vec![Box::new(crate::experiments::fake::FakeBackend::new("fake", 1 << 20))];
        let plan = odd_plan();
        let host = HostEnv::capture();
        run(&backends, &plan, out.clone(), vec!["vmct".into()], host, Mode::Quiet).unwrap();
        let written: RunMeta = RunDir::open(&out).unwrap().read_meta().unwrap();
        let original = written.full_plan.clone().unwrap();
        // What was run is what was recorded, with the backends the run considered filled in.
        let expected = Settings { backends: vec!["fake".into()], ..plan };
        assert_eq!(original, serde_json::to_value(&expected).unwrap());
        assert_eq!(written.plan, expected.to_plan());
        // Read back from the directory and from run.json: the same plan, the same JSON.
        for path in [out.clone(), out.join("run.json")] {
            let replayed = load_plan(&path).unwrap();
            assert_eq!(replayed, expected);
            assert_eq!(serde_json::to_value(&replayed).unwrap(), original);
        }
        // The conventions: seconds in `*_s` fields, scenarios as words, blast's hog time as `hog_s`.
        assert_eq!(original["startup"]["timeout_s"], 1.5);
        assert_eq!(original["snapshot"]["settle_s"], 0.01);
        assert_eq!(original["overhead"]["scenarios"][0], "cpu --iters 7");
        assert_eq!(original["blast"]["hog_s"], 0.3);
        assert_eq!(original["peers"][0]["vmm"], "firecracker");
        // Both presets round-trip too.
        for p in [Settings::quick(1 << 30), Settings::default_plan(64 << 30), Settings::scale(64 << 30)] {
            let v = serde_json::to_value(&p).unwrap();
            assert_eq!(serde_json::from_value::<Settings>(v).unwrap(), p);
        }
    }

    #[test]
    fn an_old_run_json_without_the_whole_plan_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        report::fixture::write(d.path()).unwrap();
        let e = load_plan(d.path()).unwrap_err();
        assert!(matches!(e, CompareError::NotReplayable { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("run.json") && msg.contains("older vmct") && msg.contains("cannot be re-run"), "{msg}");
        let nearest =
            "vmct compare --quick --experiments startup,density,overhead,isolation,snapshot,crosscheck,crash,memory --warmup 2 \
                       --runs-per-backend 20 --density-budget 2147483648B --density-max 10 --hold-mib 16\n";
        assert!(msg.contains(nearest), "{msg}");
    }

    #[test]
    fn bad_plan_files_name_the_file_and_the_field() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope.json");
        let e = load_plan(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.json") && e.contains("cannot read"), "{e}");
        let garbage = d.path().join("garbage.json");
        std::fs::write(&garbage, "{").unwrap();
        let e = load_plan(&garbage).unwrap_err().to_string();
        assert!(e.contains("garbage.json") && e.contains("not a vmct run.json"), "{e}");

        let mut meta = report::fixture::meta();
        let good = serde_json::to_value(odd_plan()).unwrap();
        type Spoil = fn(&mut serde_json::Value);
        let cases: [(&str, Spoil); 6] = [
            ("unknown field `extra`", |v| v["startup"]["extra"] = 1.into()),
            ("unknown variant `blast`, expected one of `startup`, `overhead`", |v| {
                v["experiments"][0] = "blast".into()
            }),
            ("missing field `timeout_s`", |v| {
                v["density"].as_object_mut().unwrap().remove("timeout_s");
            }),
            ("invalid duration -1 s", |v| v["overhead"]["timeout_s"] = (-1.0).into()),
            ("unknown workload 'teleport'", |v| v["overhead"]["scenarios"][0] = "teleport".into()),
            ("startup.runs is 0", |v| v["startup"]["runs"] = 0.into()),
        ];
        let file = d.path().join("run.json");
        for (want, spoil) in cases {
            let mut v = good.clone();
            spoil(&mut v);
            meta.full_plan = Some(v);
            RunDir::create(d.path()).unwrap().write_meta(&meta).unwrap();
            let e = load_plan(&file).unwrap_err();
            assert!(matches!(e, CompareError::BadPlan { .. }), "{e:?}");
            let e = e.to_string();
            assert!(e.contains(&*file.to_string_lossy()) && e.contains(want), "{want}: {e}");
        }
    }

    fn info(name: &str, guest: Option<&str>, emulated: bool, available: bool) -> results::BackendInfo {
        results::BackendInfo {
            isolation: None,
            name: name.into(),
            kind: results::BackendKind::Peer,
            model: results::IsolationModel::Microvm,
            guest_model: guest.map(|g| g.parse().unwrap()),
            available,
            reason: None,
            version: None,
            emulated,
        }
    }

    #[test]
    fn an_emulated_backend_stands_in_only_where_its_model_cannot_run() {
        let tcg = info("qemu-tcg", Some("linux"), true, true);
        let linux_down = info("microvm-linux", Some("linux"), false, false);
        let linux_up = info("microvm-linux", Some("linux"), false, true);
        let bare = info("microvm", Some("bare"), false, true);
        let default = Settings::default_plan(8 << 30);
        assert_eq!(emulated_left_out(&tcg, &[bare.clone(), linux_down, tcg.clone()], &default), None);
        let why = emulated_left_out(&tcg, &[bare, linux_up.clone(), tcg.clone()], &default).unwrap();
        assert!(why.contains("microvm-linux runs the same guest model"), "{why}");
        let quick = Settings::quick(8 << 30);
        assert!(emulated_left_out(&tcg, std::slice::from_ref(&tcg), &quick).unwrap().contains("--quick"));
        // Named by the user (or by a replayed plan): always run.
        let named = Settings { backends: vec!["qemu-tcg".into()], ..quick };
        assert_eq!(emulated_left_out(&tcg, &[linux_up.clone(), tcg.clone()], &named), None);
        assert_eq!(emulated_left_out(&linux_up, std::slice::from_ref(&linux_up), &default), None);
    }

    #[test]
    fn a_user_space_kernel_gets_small_samples_and_sits_out_quick_unless_named() {
        let d = Settings::default_plan(64 << 30);
        let u = for_user_space_kernel(&d);
        assert_eq!((u.startup.runs, u.density.max_instances, u.overhead.runs), (50, 100, 3));
        assert_eq!(u.overhead.scenarios, d.overhead.scenarios, "the same sizes as every other backend");
        let mut runsc = info("runsc", None, false, true);
        runsc.model = results::IsolationModel::UserSpaceKernel;
        let quick = Settings::quick(8 << 30);
        assert!(user_space_kernel_left_out(&runsc, &quick).unwrap().contains("--quick"));
        assert_eq!(user_space_kernel_left_out(&runsc, &d), None);
        let named = Settings { backends: vec!["runsc".into()], ..quick };
        assert_eq!(user_space_kernel_left_out(&runsc, &named), None);
        assert_eq!(user_space_kernel_left_out(&info("crun", None, false, true), &Settings::quick(8 << 30)), None);
    }

    #[test]
    fn the_scale_preset_sweeps_every_model_to_its_limit_with_probes_along_the_way() {
        let s = Settings::scale(64 << 30);
        assert_eq!(s.experiments, vec![ExperimentId::Density, ExperimentId::Memory]);
        assert_eq!(s.density.max_instances, MAX_DENSITY_INSTANCES);
        assert_eq!(s.density.budget_bytes, 32 << 30);
        assert_eq!(s.density.probe_at, vec![1, 10, 100, 1000, 10_000]);
        assert_eq!(s.density.idle_window, Duration::from_secs(2));
        assert!(s.validate().is_ok());
        assert_eq!(for_user_space_kernel(&s).density.max_instances, MAX_DENSITY_INSTANCES, "runsc swept too");
        assert_eq!(for_emulated(&s).density.max_instances, MAX_DENSITY_INSTANCES, "the emulated guest swept too");
        // The other presets probe a few steps only, and an older plan without the fields probes none.
        assert_eq!(Settings::default_plan(64 << 30).density.probe_at, vec![1, 100]);
        let mut v = serde_json::to_value(Settings::quick(1 << 30)).unwrap();
        for f in ["probe_at", "idle_window_s", "victim_iters"] {
            v["density"].as_object_mut().unwrap().remove(f);
        }
        v.as_object_mut().unwrap().remove("scale");
        let old: Settings = serde_json::from_value(v).unwrap();
        assert!(old.density.probe_at.is_empty() && old.density.victim_iters == 0 && !old.scale);
    }

    /// The page-cache part of the memory plan: 4 instances and a 64 MiB set by default, 2 and 16 MiB with
    /// --quick, on by default in plans written before it existed, and a set of 0 MiB is refused by name.
    #[test]
    fn the_memory_plan_reads_a_file_set_and_old_plans_get_the_default() {
        let (d, q) = (Settings::default_plan(8 << 30), Settings::quick(8 << 30));
        assert_eq!((d.memory.instances, d.memory.file_set_mib, d.memory.page_cache), (4, 64, true));
        assert_eq!((q.memory.instances, q.memory.file_set_mib), (2, 16));
        let mut v = serde_json::to_value(&q).unwrap();
        for f in ["page_cache", "file_set_mib"] {
            v["memory"].as_object_mut().unwrap().remove(f);
        }
        let old: Settings = serde_json::from_value(v).unwrap();
        assert!(old.memory.page_cache && old.memory.file_set_mib == 64);
        let mut bad = q;
        bad.memory.file_set_mib = 0;
        assert!(bad.validate().unwrap_err().contains("memory.file_set_mib is 0"));
    }

    #[test]
    fn emulated_backends_get_small_samples() {
        let d = Settings::default_plan(8 << 30);
        let e = for_emulated(&d);
        assert_eq!((e.startup.runs, e.startup.warmup), (EMULATED_STARTUP_RUNS, 1));
        assert_eq!(e.startup.concurrency, vec![2]);
        assert_eq!(e.density.max_instances, EMULATED_DENSITY_MAX);
        assert_eq!(e.overhead.runs, 2);
        assert!(e.startup.timeout >= Duration::from_secs(60));
        let b = e.blast.unwrap();
        assert!(b.rounds <= 2 && b.hog_secs <= 10.0 && b.victim_iters <= 50_000);
        // Never larger than what was asked for.
        let mut tiny = Settings::quick(8 << 30);
        tiny.startup.runs = 3;
        tiny.density.max_instances = 2;
        let t = for_emulated(&tiny);
        assert_eq!((t.startup.runs, t.density.max_instances), (3, 2));
    }

    #[test]
    fn the_default_plan_runs_the_peer_cross_check_and_quick_leaves_it_out() {
        let d = Settings::default_plan(8 << 30);
        assert!(d.experiments.contains(&ExperimentId::CrossCheck), "{:?}", d.experiments);
        // Every experiment but `memory` (a minute per backend: `--scale` and `--experiments memory`).
        let all_but_memory: Vec<ExperimentId> =
            ExperimentId::ALL.iter().copied().filter(|&e| e != ExperimentId::Memory).collect();
        assert_eq!(d.experiments, all_but_memory);
        let q = Settings::quick(8 << 30);
        assert!(!q.experiments.contains(&ExperimentId::CrossCheck), "{:?}", q.experiments);
        // n >= 30 per clock for every container peer (and runsc, on its own smaller plan).
        for s in [&d, &for_user_space_kernel(&d)] {
            assert!(s.startup.runs.min(crate::experiments::crosscheck::RUNS) >= 30);
        }
    }

    #[test]
    fn run_ids_sort_by_time() {
        // 2023-11-14 22:13:20 UTC; one second, one day, one year later (and a shorter pid) sort after it.
        let t = 1_700_000_000;
        let first = run_id_at(t, 40_000);
        assert_eq!(first, "20231114-221320-40000");
        for later in [run_id_at(t + 1, 7), run_id_at(t + 86_400, 7), run_id_at(t + 366 * 86_400, 7)] {
            assert!(later > first, "{later} <= {first}");
        }
        assert_eq!(run_id_at(951_782_400, 1), "20000229-000000-1");
        let id = new_run_id();
        assert_eq!(id.len(), "20261128-143000-".len() + std::process::id().to_string().len());
    }
}
