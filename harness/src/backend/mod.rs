//! Backends: one trait, one implementation per way of running the workload.
//!
//! | backend | model | what it launches |
//! |---|---|---|
//! | `process` | process (baseline) | `vmct-workload` as a plain child process |
//! | `microvm` | microVM, bare guest | one VMM process per VM (`vmct __vmm`), the workload at guest CPL3 |
//! | `microvm-linux` | microVM, linux guest | one VMM process per VM (`vmct __vmm-linux`), a Linux kernel with the workload as /init |
//! | `container` / `container-privileged` / `container-userns` | container | our runtime (crate `container`) with its default, privileged or user-namespace profile |
//! | `crun` / `runc` | container (peer) | the same image through a generated OCI bundle |
//! | `runsc` | user-space kernel (peer, gVisor) | the same OCI bundle, the workload's system calls answered by runsc's Sentry |
//! | `qemu-tcg` | microVM, linux guest (peer, emulated) | Debian's QEMU with TCG booting the same kernel and initramfs as `microvm-linux`, where KVM cannot run it |
//! | `qemu` / `firecracker` (only with `--peer NAME=PATH`) | microVM, linux guest (peer) | the peer VMM booting the same kernel and initramfs as `microvm-linux` |
//!
//! (Unit tests check this table against [`registry`] and [`vmm_peers::NAMES`]: its names, and its model
//! column against each backend's declared [`Backend::info`] and [`Backend::capabilities`].)
//!
//! Every [`Instance`] owns what it created (process, VM, cgroup, mounts): dropping it without
//! [`Instance::stop`] kills and removes everything.
pub mod child;
pub mod confinement;
pub mod container;
pub mod lines;
pub mod microvm;
pub mod microvm_linux;
pub mod peers;
pub mod process;
pub mod qemu_surface;
pub mod qemu_tcg;
pub mod registry;
pub mod runsc;
pub mod surface;
pub mod vmm_jail;
pub mod vmm_peers;

use crate::clock;
use std::path::PathBuf;
use std::time::Duration;
use workloads::protocol::{Message, ProbeOutcome};
use workloads::scenario::Scenario;

/// Name prefix of every kernel object and file the harness creates; `vmct gc` looks for it.
pub const NAME_PREFIX: &str = "vmct";

/// How long an instance asked to stop (stdin closed) gets to exit on its own before it is killed, when
/// an experiment tears it down.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for an instance that has ended, or is ending, to be reaped before it is killed
/// or reported as it is.
pub const REAP_GRACE: Duration = Duration::from_secs(2);

/// How often a wait for an instance's exit (or for a cgroup to empty) looks again.
pub const REAP_POLL: Duration = Duration::from_micros(200);

/// Environment variable carrying the pid of the harness that owns an instance (see `vmct gc`).
pub const OWNER_ENV: &str = "VMCT_OWNER";

/// Errors from launching or talking to an instance.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot run on this host; the reason says why and what would fix it.
    #[error("{backend}: unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Why.
        reason: String,
    },
    /// Launch failed.
    #[error("{backend}: launch failed: {reason}")]
    Launch {
        /// Backend name.
        backend: String,
        /// Why.
        reason: String,
    },
    /// The instance did not report within the timeout.
    #[error("{backend}: instance {id} did not {what} within {timeout:?}{log}")]
    Timeout {
        /// Backend name.
        backend: String,
        /// Instance id.
        id: String,
        /// What was awaited (`report ready`, `finish`).
        what: &'static str,
        /// The timeout.
        timeout: Duration,
        /// What happened to the instance and the last lines of its output, if known (prefixed with
        /// "; "), e.g. a guest's console when it never reached ready.
        log: String,
    },
    /// The instance ended before reporting what was awaited.
    #[error("{backend}: instance {id} exited before it {what} ({exit}){log}")]
    Exited {
        /// Backend name.
        backend: String,
        /// Instance id.
        id: String,
        /// What was awaited.
        what: &'static str,
        /// Exit description.
        exit: String,
        /// Tail of its error output, if any (prefixed with ": ").
        log: String,
    },
    /// Saving a running instance's state (snapshot, commit) failed; the instance may still run.
    #[error("{backend}: saving the state of {id} failed: {reason}")]
    Save {
        /// Backend name.
        backend: String,
        /// Instance id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A signal asked vmct to stop while it waited on the instance (see [`crate::interrupt`]); the
    /// caller stops the instance at once.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// I/O with the instance failed.
    #[error("{backend}: {context}: {source}")]
    Io {
        /// Backend name.
        backend: String,
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What to run and with which limits.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Unique id, starting with [`NAME_PREFIX`] (used for cgroup, hostname, log file names).
    pub id: String,
    /// The workload scenario.
    pub scenario: Scenario,
    /// Memory limit (containers: cgroup limit; microVMs: guest memory size), bytes. None = backend default.
    pub mem_limit_bytes: Option<u64>,
    /// CPU quota in CPUs (e.g. 0.5). None = unlimited.
    pub cpu_quota: Option<f64>,
    /// Maximum number of processes (containers). None = backend default.
    pub pids_limit: Option<u64>,
    /// vCPUs (microVMs).
    pub vcpus: u32,
    /// Directory for this instance's logs (stdout/stderr or console). None = discard.
    pub log_dir: Option<PathBuf>,
    /// Extra environment for the workload (e.g. probe canary locations).
    pub env: Vec<(String, String)>,
}

impl InstanceSpec {
    /// A spec with defaults: no limits, one vCPU, no logs.
    pub fn new(id: impl Into<String>, scenario: Scenario) -> InstanceSpec {
        InstanceSpec {
            id: id.into(),
            scenario,
            mem_limit_bytes: None,
            cpu_quota: None,
            pids_limit: None,
            vcpus: 1,
            log_dir: None,
            // Lets `vmct gc` tell leftovers of a dead harness from instances of a live one.
            env: vec![(OWNER_ENV.to_string(), std::process::id().to_string())],
        }
    }
}

/// A phase of a launch, as the backend measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Phase name.
    pub name: String,
    /// Duration, seconds.
    pub duration_s: f64,
}

/// The `ready` message arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// Host CLOCK_MONOTONIC when the launch was requested, ns.
    pub launched_ns: u64,
    /// Host CLOCK_MONOTONIC when `ready` arrived, ns.
    pub ready_ns: u64,
    /// Phases the backend reports, in order (they need not add up to the total).
    pub phases: Vec<Phase>,
}

impl Ready {
    /// Launch-to-ready, seconds.
    pub fn launch_to_ready_s(&self) -> f64 {
        clock::ns_to_s(self.ready_ns.saturating_sub(self.launched_ns))
    }
}

/// A protocol message owned by the harness, with its host arrival time.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `ready`.
    Ready,
    /// `result`.
    Result {
        /// Metric.
        name: String,
        /// Value.
        value: f64,
        /// Unit.
        unit: String,
    },
    /// `probe`.
    Probe {
        /// Probe id.
        id: String,
        /// Outcome.
        outcome: ProbeOutcome,
        /// Detail.
        detail: String,
    },
    /// `unsupported`.
    Unsupported {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// `failed`: a scenario the platform can run failed this time (see [`Message::Failed`]).
    Failed {
        /// What.
        what: String,
        /// The error and the progress made.
        reason: String,
    },
    /// `phase` (host-side components only).
    Phase {
        /// Name.
        name: String,
        /// Host CLOCK_MONOTONIC ns.
        mono_ns: u64,
    },
    /// `done`.
    Done {
        /// Status.
        status: i32,
    },
}

impl From<&Message<'_>> for Event {
    fn from(m: &Message<'_>) -> Event {
        match *m {
            Message::Ready => Event::Ready,
            Message::Result { name, value, unit } => Event::Result { name: name.into(), value, unit: unit.into() },
            Message::Probe { id, outcome, detail } => Event::Probe { id: id.into(), outcome, detail: detail.into() },
            Message::Unsupported { what, reason } => Event::Unsupported { what: what.into(), reason: reason.into() },
            Message::Failed { what, reason } => Event::Failed { what: what.into(), reason: reason.into() },
            Message::Phase { name, mono_ns } => Event::Phase { name: name.into(), mono_ns },
            Message::Done { status } => Event::Done { status },
        }
    }
}

/// Memory accounting of one live instance; None where the backend has no such figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceStats {
    /// RSS of the instance's host processes (VMM, or container init), bytes.
    pub rss_bytes: Option<u64>,
    /// PSS of the instance's host processes, bytes.
    pub pss_bytes: Option<u64>,
    /// Guest memory resident (microVMs), bytes.
    pub guest_mem_bytes: Option<u64>,
    /// VMM RSS excluding guest memory (microVMs), bytes.
    pub vmm_overhead_bytes: Option<u64>,
    /// cgroup memory usage (containers), bytes.
    pub cgroup_usage_bytes: Option<u64>,
}

/// How an instance ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExitInfo {
    /// Exit status, if it exited.
    pub status: Option<i32>,
    /// Terminating signal, if killed.
    pub signal: Option<i32>,
    /// The memory limit killed it.
    pub oom_killed: bool,
    /// A typed error description for abnormal ends (e.g. a VM exit the VMM does not handle).
    pub error: Option<String>,
}

/// State saved from a running instance (a VM snapshot or a container commit).
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// Where the state lives (snapshot directory, or the committed image/layer).
    pub path: PathBuf,
    /// Bytes written to save it (allocated on disk, holes excluded).
    pub bytes: u64,
    /// Host seconds the instance was paused or busy saving.
    pub duration_s: f64,
    /// Instances restored from it report `restore.memory_ok` once they have checked the restored
    /// memory (microVMs); the snapshot experiment waits for that before measuring sharing.
    pub checks_restore: bool,
}

/// One way of running the workload.
pub trait Backend: Send + Sync {
    /// Backend name as used on the command line and in results.
    fn name(&self) -> &str;
    /// Kind, model and availability on this host.
    fn info(&self) -> results::BackendInfo;
    /// What the backend can do (save state, cgroup limits, Linux probes, own kernel, emulated CPU),
    /// declared by it whether or not it is available here: the experiments decide by this and by
    /// [`Backend::info`]'s model, never by [`Backend::name`]. `emulated` equals `info().emulated`.
    fn capabilities(&self) -> results::Capabilities;
    /// How memory an instance frees can go back to the host (the memory experiment labels its give-back
    /// rows with it). The default, by model: a microVM keeps the guest pages it touched
    /// ([`results::GiveBack::None`]); every other model's workload frees to the host kernel itself.
    /// A VMM offering free-page reporting or a balloon says so.
    fn give_back(&self) -> results::GiveBack {
        match self.info().model {
            results::IsolationModel::Microvm => results::GiveBack::None,
            _ => results::GiveBack::ProcessFrees,
        }
    }
    /// Start an instance; returns as soon as it is launched (not ready).
    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError>;
    /// Whether `spec`'s limits (memory, CPUs, pids, vCPUs) can be applied exactly as given here: `Err`
    /// names the limit, why, and the valid range. The CLI calls it before launching (usage error, exit 2)
    /// so a limit is never silently rounded, clamped or ignored. The default accepts every spec.
    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        let _ = spec;
        Ok(())
    }

    /// Start an instance from state saved by [`Instance::save_state`] (VM restore, or a container
    /// started from the committed image). The instance reports `ready` again when it runs.
    fn restore(&self, saved: &Saved, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let _ = (saved, spec);
        Err(BackendError::Unavailable { backend: self.name().into(), reason: "cannot restore saved state".into() })
    }
    /// The isolation profile this backend runs and the attack surface it declares (layers b and c, and
    /// its instances' seccomp profile); the default declares nothing ("not declared" in the report).
    fn attack_surface(&self) -> surface::BackendSurface {
        surface::BackendSurface::default()
    }

    /// The runtime's own command line timed whole-process on `spec` (a peer runtime: `<peer> run` of the
    /// bundle it would launch, spawn to exit, `delete` included when needed), seconds; Ok(None) for a
    /// backend without a command line of its own (the default).
    fn own_cli_run(&self, spec: &InstanceSpec, timeout: Duration) -> Result<Option<f64>, BackendError> {
        let _ = (spec, timeout);
        Ok(None)
    }

    /// Start an instance of an image's own process (`vmct run --image`, `vmct compare --image`):
    /// its argv, environment, working directory and user, on `launch.layers` (containers) or its root
    /// disk (linux guests, which apply the readiness rule inside). The default: not possible here.
    fn launch_image(
        &self,
        launch: &crate::images::run::ImageLaunch,
        spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let _ = (launch, spec);
        Err(BackendError::Unavailable { backend: self.name().into(), reason: "cannot run an image".into() })
    }
}

/// A running instance. Dropping it kills it and removes everything it created.
pub trait Instance: Send {
    /// Instance id.
    fn id(&self) -> &str;
    /// Host pid of the instance's main process (VMM or container init), if any.
    fn pid(&self) -> Option<u32>;
    /// Wait for `ready`; returns launch and ready timestamps and phases.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError>;
    /// Next message after `ready` (results, probes, done); None at end of stream.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError>;
    /// Memory accounting now.
    fn stats(&mut self) -> InstanceStats;
    /// Tell the workload to stop (close its stdin), wait up to `timeout`, then kill; clean up.
    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError>;
    /// Tell the workload to stop (close its stdin) without waiting, so a caller ending many instances
    /// lets them end together and then reaps each with [`Instance::stop`] (a density sweep's
    /// teardown). The default does nothing: `stop` then does all of it.
    fn request_stop(&mut self) {}
    /// The next line of the instance's output, plain or protocol (readiness rules of an image's own
    /// process read it: `crate::images::ready`). The default: the backend does not expose its output.
    fn next_line(&mut self, timeout: Duration) -> Result<lines::Line, BackendError> {
        let _ = timeout;
        Err(BackendError::Unavailable { backend: self.id().into(), reason: "its output lines are not exposed".into() })
    }
    /// Save the running instance's state under `dir` (VM snapshot; container commit) and keep running.
    fn save_state(&mut self, dir: &std::path::Path) -> Result<Saved, BackendError> {
        let _ = dir;
        Err(BackendError::Unavailable { backend: self.id().into(), reason: "cannot save state".into() })
    }
}

/// Collect everything after `ready` until `done` or end of stream.
pub fn collect_events(inst: &mut dyn Instance, timeout: Duration) -> Result<Vec<Event>, BackendError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match inst.next_event(left)? {
            None => return Ok(out),
            Some((_, e)) => {
                let done = matches!(e, Event::Done { .. });
                out.push(e);
                if done {
                    return Ok(out);
                }
            }
        }
    }
}

/// A guest memory size given by the user must be used as given: a multiple of `granule` bytes within
/// `min..=max` (the VMM would otherwise round it up or refuse it late).
pub fn check_guest_memory(mem: Option<u64>, granule: u64, min: u64, max: u64) -> Result<(), String> {
    let Some(b) = mem else { return Ok(()) };
    if b % granule != 0 || !(min..=max).contains(&b) {
        let f = |x: u64| crate::units::human_bytes(x as f64);
        return Err(format!(
            "guest memory {b} bytes ({}) cannot be used as given: expected a multiple of {} from {} to {}",
            f(b),
            f(granule),
            f(min),
            f(max)
        ));
    }
    Ok(())
}

/// The error for limits a backend does not apply (rather than ignoring them).
pub fn not_applied(backend: &str, spec: &InstanceSpec, mem: bool, why: &str) -> Result<(), String> {
    let mut given = Vec::new();
    if mem && spec.mem_limit_bytes.is_some() {
        given.push("--mem");
    }
    if spec.cpu_quota.is_some() {
        given.push("--cpus");
    }
    if spec.pids_limit.is_some() {
        given.push("--pids");
    }
    if given.is_empty() {
        return Ok(());
    }
    Err(format!("{backend} does not apply {}: {why}", given.join(", ")))
}

#[cfg(test)]
mod tests {
    /// The module doc's table lists exactly the backends the registry offers plus the peer VMMs.
    #[test]
    fn the_backend_table_names_every_backend() {
        let doc: Vec<&str> = include_str!("mod.rs").lines().map_while(|l| l.strip_prefix("//!")).collect();
        let listed: Vec<&str> = doc
            .iter()
            .filter(|l| l.starts_with(" | `"))
            .flat_map(|l| l.split('|').nth(1).unwrap_or("").split('`').skip(1).step_by(2))
            .filter(|n| !n.starts_with("--")) // `--peer NAME=PATH` is how, not which
            .collect();
        let dir = std::path::Path::new("/nonexistent");
        let mut offered = super::registry::names(&super::registry::all(dir, dir));
        offered.extend(super::vmm_peers::NAMES.iter().map(|n| n.to_string()));
        let mut l: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
        l.sort();
        offered.sort();
        assert_eq!(l, offered);
    }

    /// Every backend (the registry's and the peer VMMs') declares a model and capabilities that agree
    /// with each other and with the model column of the module doc's table.
    #[test]
    fn every_backend_declares_a_consistent_model_and_capabilities() {
        use results::{BackendKind, GuestModel, IsolationModel};
        let doc: Vec<&str> = include_str!("mod.rs").lines().map_while(|l| l.strip_prefix("//!")).collect();
        let mut column = std::collections::BTreeMap::new();
        for row in doc.iter().filter(|l| l.starts_with(" | `")) {
            let cells: Vec<&str> = row.split('|').collect();
            for name in cells[1].split('`').skip(1).step_by(2).filter(|n| !n.starts_with("--")) {
                column.insert(name.to_string(), cells[2].trim().to_string());
            }
        }
        let dir = std::path::Path::new("/nonexistent");
        let mut all = super::registry::all(dir, dir);
        for vmm in super::vmm_peers::PeerVmm::ALL {
            all.push(super::vmm_peers::backend(&super::vmm_peers::Peer { vmm, path: dir.join("vmm") }, dir));
        }
        for b in &all {
            let (i, c) = (b.info(), b.capabilities());
            let name = b.name();
            assert_eq!(i.name, name);
            assert_eq!(i.emulated, c.emulated, "{name}: info and capabilities disagree on emulation");
            assert_eq!(i.guest_model.is_some(), i.model == IsolationModel::Microvm, "{name}: guest model");
            assert_eq!(c.linux_probes, i.guest_model != Some(GuestModel::Bare), "{name}: Linux probes");
            assert!(!c.own_kernel || i.guest_model == Some(GuestModel::Linux), "{name}: own kernel");
            assert!(!c.cgroup_limits || c.limits, "{name}: cgroup limits are limits");
            assert_eq!(i.kind == BackendKind::Baseline, i.model == IsolationModel::Process, "{name}: baseline");
            let col = column.get(name).unwrap_or_else(|| panic!("{name} is not in the module doc's table"));
            let model = match i.model {
                IsolationModel::Process => "process",
                IsolationModel::Container => "container",
                IsolationModel::Microvm => "microVM",
                IsolationModel::UserSpaceKernel => "user-space kernel",
            };
            let says = |w: &str| col.contains(w);
            assert!(says(model), "{name}: table says {col:?}, declared {:?}", i.model);
            assert_eq!(says("bare guest"), i.guest_model == Some(GuestModel::Bare), "{name}: {col:?}");
            assert_eq!(says("linux guest"), i.guest_model == Some(GuestModel::Linux), "{name}: {col:?}");
            assert_eq!(says("baseline"), i.kind == BackendKind::Baseline, "{name}: {col:?}");
            assert_eq!(says("peer"), i.kind == BackendKind::Peer, "{name}: {col:?}");
            assert_eq!(says("emulated"), c.emulated, "{name}: {col:?}");
        }
    }
}
