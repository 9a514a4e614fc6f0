//! The closed sets run.json and the CSVs carry, as enums: what a backend is ([`BackendKind`],
//! [`IsolationModel`], [`GuestModel`], [`Capabilities`]) and the words the records use for a startup mode
//! ([`StartupMode`]), why a density sweep stopped ([`DensityStop`]), a probe's outcome
//! ([`ProbeOutcome`]) and a blast neighbour ([`Neighbour`]).
//!
//! Each value is written as the word the string records wrote before these types existed (issue 16:
//! the golden test `tests/golden.rs` checks the bytes), and an unknown word read back is an error that
//! names it and the valid ones.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A word outside a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("results: unknown {set} {value:?}; valid: {valid}")]
pub struct VocabError {
    /// Which set (e.g. "isolation model").
    pub set: &'static str,
    /// The word given.
    pub value: String,
    /// The valid words, comma-separated.
    pub valid: String,
}

/// Serialize as the value's word ([`fmt::Display`]) and read it back with [`FromStr`]: the same text in
/// CSV and JSON.
macro_rules! serde_as_word {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let w = std::borrow::Cow::<'de, str>::deserialize(d)?;
                w.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A closed set of unit variants, each with its word: `as_str`, `ALL`, Display, FromStr, serde.
macro_rules! closed_set {
    ($(#[$m:meta])* $t:ident, $set:literal { $($(#[$vm:meta])* $v:ident => $w:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $t {
            $($(#[$vm])* $v,)+
        }
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$($t::$v,)+];
            /// The word written in run.json and the CSVs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $w,)+
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = VocabError;
            fn from_str(s: &str) -> Result<$t, VocabError> {
                $t::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| VocabError {
                    set: $set,
                    value: s.to_string(),
                    valid: $t::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
        serde_as_word!($t);
    };
}

closed_set!(
    /// Who a backend is in the comparison.
    BackendKind, "backend kind" {
        /// The no-isolation baseline (`process`): every ratio is to it.
        Baseline => "baseline",
        /// Built in this project (our VMM and our container runtime).
        Ours => "ours",
        /// Someone else's runtime or VMM (crun, runc, runsc, QEMU, Firecracker).
        Peer => "peer",
    }
);

closed_set!(
    /// What stands between the workload and the host kernel.
    IsolationModel, "isolation model" {
        /// A plain host process: nothing.
        Process => "process",
        /// Namespaces, cgroups, seccomp and capabilities on the host kernel.
        Container => "container",
        /// Hardware virtualisation (or its emulation): the guest has its own kernel or none.
        Microvm => "microvm",
        /// A kernel in user space intercepting the workload's system calls (gVisor's runsc, issue 20).
        UserSpaceKernel => "user-space-kernel",
    }
);

/// `Process`, the model with nothing in between: only for records built field by field
/// (`..Default::default()` in tests); every row the harness writes takes the model from the backend.
impl Default for IsolationModel {
    fn default() -> IsolationModel {
        IsolationModel::Process
    }
}

closed_set!(
    /// What a microVM runs as its guest.
    GuestModel, "guest model" {
        /// The bare guest: the workload at CPL3 on a few pages, no OS, no system calls.
        Bare => "bare",
        /// A Linux kernel with the workload as /init.
        Linux => "linux",
    }
);

closed_set!(
    /// A probe's outcome in `isolation.csv`: the three the workload reports
    /// (`workloads::protocol::ProbeOutcome`) plus `unsupported`, written by the harness for probes a
    /// backend could not run.
    ProbeOutcome, "probe outcome" {
        /// The isolation boundary stopped the probe.
        Blocked => "blocked",
        /// The probe reached host or neighbour state.
        Reached => "reached",
        /// The probe could not decide.
        Error => "error",
        /// The probe did not run on this backend (not applicable, or the instance never ran).
        Unsupported => "unsupported",
    }
);

closed_set!(
    /// The neighbour of a blast-radius case (`blast.csv`).
    Neighbour, "blast neighbour" {
        /// Memory hog.
        MemoryHog => "memory-hog",
        /// CPU hog (one spinning thread per CPU).
        CpuHog => "cpu-hog",
        /// Fork loop.
        ForkLoop => "fork-loop",
        /// Memory hog above its memory limit: the kernel OOM-kills it (cgroup-limited backends).
        Oom => "oom",
    }
);

impl Neighbour {
    /// Name in `blast.csv` (the same as [`Neighbour::as_str`]).
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

/// How the launches of a startup measurement were made (`startup*.csv` column `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StartupMode {
    /// `cold`: the first launch after the image was built.
    Cold,
    /// `sequential`: one launch at a time.
    Sequential,
    /// `concurrent-K`: K launchers in parallel.
    Concurrent(u32),
}

impl StartupMode {
    /// K of `concurrent-K`, None for the other modes.
    pub fn concurrency(self) -> Option<u32> {
        match self {
            StartupMode::Concurrent(k) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for StartupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupMode::Cold => f.pad("cold"),
            StartupMode::Sequential => f.pad("sequential"),
            StartupMode::Concurrent(k) => f.pad(&format!("concurrent-{k}")),
        }
    }
}

impl FromStr for StartupMode {
    type Err = VocabError;
    fn from_str(s: &str) -> Result<StartupMode, VocabError> {
        match s {
            "cold" => Ok(StartupMode::Cold),
            "sequential" => Ok(StartupMode::Sequential),
            _ => s.strip_prefix("concurrent-").and_then(|k| k.parse().ok()).map(StartupMode::Concurrent).ok_or_else(
                || VocabError {
                    set: "startup mode",
                    value: s.into(),
                    valid: "cold, sequential, concurrent-K (K a whole number)".into(),
                },
            ),
        }
    }
}
serde_as_word!(StartupMode);

/// Why a density sweep stopped adding instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `count`: it reached the instance count limit.
    Count,
    /// `budget`: the next instance would exceed the memory budget.
    Budget,
    /// `host memory floor`: MemAvailable fell to the floor the harness keeps for the host.
    HostMemoryFloor,
    /// `interrupted`: a signal asked vmct to stop.
    Interrupted,
    /// `error: MESSAGE`: launching or measuring the next instance failed.
    Error(String),
    /// `host limit: LIMIT at VALUE`: launching the next instance failed on a limit of the host, named
    /// with where it is set and its value (e.g. `pids.max of the parent cgroup /a/b at 4096`,
    /// `RLIMIT_NOFILE (open files of the harness) at 1024`, `user.max_net_namespaces at 100`).
    HostLimit {
        /// The limit and where it is set (no ` at ` inside; the value follows it).
        limit: String,
        /// Its value when the launch failed.
        value: u64,
    },
}

/// `density_summary.csv` column `stop_reason`: why the sweep stopped, and how many instances needed a
/// kill on teardown (written as a suffix ` (N instances needed a kill on teardown)` when N > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DensityStop {
    /// Why the sweep stopped.
    pub reason: StopReason,
    /// Instances that did not stop when asked and were killed.
    pub teardown_kills: u32,
}

impl From<StopReason> for DensityStop {
    fn from(reason: StopReason) -> DensityStop {
        DensityStop { reason, teardown_kills: 0 }
    }
}

const KILL_SUFFIX: &str = " instances needed a kill on teardown)";

/// Word before a [`StopReason::HostLimit`]'s limit.
const HOST_LIMIT: &str = "host limit: ";

impl fmt::Display for DensityStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            StopReason::Count => f.write_str("count")?,
            StopReason::Budget => f.write_str("budget")?,
            StopReason::HostMemoryFloor => f.write_str("host memory floor")?,
            StopReason::Interrupted => f.write_str("interrupted")?,
            StopReason::Error(e) => write!(f, "error: {e}")?,
            StopReason::HostLimit { limit, value } => write!(f, "{HOST_LIMIT}{limit} at {value}")?,
        }
        if self.teardown_kills > 0 {
            write!(f, " ({}{KILL_SUFFIX}", self.teardown_kills)?;
        }
        Ok(())
    }
}

impl FromStr for DensityStop {
    type Err = VocabError;
    fn from_str(s: &str) -> Result<DensityStop, VocabError> {
        let (head, teardown_kills) = s
            .strip_suffix(KILL_SUFFIX)
            .and_then(|h| h.rsplit_once(" ("))
            .and_then(|(h, n)| Some((h, n.parse().ok()?)))
            .unwrap_or((s, 0));
        let reason =
            match head {
                "count" => StopReason::Count,
                "budget" => StopReason::Budget,
                "host memory floor" => StopReason::HostMemoryFloor,
                "interrupted" => StopReason::Interrupted,
                _ => match head.strip_prefix("error: ") {
                    Some(e) => StopReason::Error(e.to_string()),
                    None if head.starts_with(HOST_LIMIT) => {
                        let limit =
                            head[HOST_LIMIT.len()..].rsplit_once(" at ").and_then(|(l, v)| Some((l, v.parse().ok()?)));
                        match limit {
                            Some((limit, value)) => StopReason::HostLimit { limit: limit.to_string(), value },
                            None => {
                                return Err(VocabError {
                                    set: "density stop reason",
                                    value: s.into(),
                                    valid: "host limit: LIMIT at VALUE (VALUE a whole number)".into(),
                                })
                            }
                        }
                    }
                    None => return Err(VocabError {
                        set: "density stop reason",
                        value: s.into(),
                        valid:
                            "count, budget, host memory floor, interrupted, error: MESSAGE, host limit: LIMIT at VALUE \
                                (each optionally \
                                followed by \" (N instances needed a kill on teardown)\")"
                                .into(),
                    }),
                },
            };
        Ok(DensityStop { reason, teardown_kills })
    }
}
serde_as_word!(DensityStop);

/// What a backend can do, declared by the backend (`harness::backend::Backend::capabilities`); the
/// harness and report decide by these and by [`IsolationModel`], never by a backend's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Its instances can save their running state and the backend can start new ones from it (VM
    /// snapshot and restore, container commit): the snapshot experiment runs.
    pub save_state: bool,
    /// It applies memory, CPU and pids limits through a host cgroup around the workload, so a
    /// neighbour over its memory limit is OOM-killed by the host kernel (the blast `oom` case).
    pub cgroup_limits: bool,
    /// It applies the instance limits of [`Capabilities::cgroup_limits`] or a guest's fixed memory and
    /// vCPUs: the blast experiment's "limited" cases mean something.
    pub limits: bool,
    /// Its workload runs the Linux probe catalogue (device nodes, procfs, system calls); false for a
    /// guest without an OS.
    pub linux_probes: bool,
    /// The workload runs on its own kernel (a VM guest's), not the host's: probes that act on "the
    /// kernel" act on that one.
    pub own_kernel: bool,
    /// The guest CPU is emulated (QEMU TCG), not run by hardware virtualisation (also
    /// `BackendInfo::emulated` in run.json).
    pub emulated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_name_the_valid_ones() {
        for m in IsolationModel::ALL {
            assert_eq!(m.as_str().parse::<IsolationModel>().unwrap(), *m);
        }
        assert_eq!(IsolationModel::UserSpaceKernel.to_string(), "user-space-kernel");
        assert_eq!(format!("{:<9}|{:>14}", GuestModel::Bare, StartupMode::Concurrent(4)), "bare     |  concurrent-4");
        assert_eq!(serde_json::to_string(&IsolationModel::UserSpaceKernel).unwrap(), "\"user-space-kernel\"");
        let e = "vm".parse::<IsolationModel>().unwrap_err().to_string();
        assert!(e.contains("isolation model \"vm\"") && e.contains("process, container, microvm"), "{e}");
        assert!(serde_json::from_str::<BackendKind>("\"mine\"").unwrap_err().to_string().contains("baseline, ours"));
        for m in ["cold", "sequential", "concurrent-16"] {
            assert_eq!(m.parse::<StartupMode>().unwrap().to_string(), m);
        }
        assert_eq!("concurrent-4".parse::<StartupMode>().unwrap().concurrency(), Some(4));
        assert!("concurrent-x".parse::<StartupMode>().is_err());
    }

    #[test]
    fn density_stop_reads_its_suffix_and_error_text() {
        let s: DensityStop = "error: launch failed (x) (3 instances needed a kill on teardown)".parse().unwrap();
        assert_eq!(s, DensityStop { reason: StopReason::Error("launch failed (x)".into()), teardown_kills: 3 });
        assert_eq!(s.to_string(), "error: launch failed (x) (3 instances needed a kill on teardown)");
        assert_eq!("budget".parse::<DensityStop>().unwrap(), StopReason::Budget.into());
        assert!("full".parse::<DensityStop>().unwrap_err().to_string().contains("host memory floor"));
    }

    #[test]
    fn a_host_limit_reads_back_with_its_name_and_value() {
        let r = StopReason::HostLimit { limit: "pids.max of the parent cgroup /a at b".into(), value: 4096 };
        let s = DensityStop { reason: r, teardown_kills: 2 };
        let text = s.to_string();
        assert_eq!(
            text,
            "host limit: pids.max of the parent cgroup /a at b at 4096 (2 instances needed a kill on teardown)"
        );
        assert_eq!(text.parse::<DensityStop>().unwrap(), s);
        let e = "host limit: pids.max at many".parse::<DensityStop>().unwrap_err().to_string();
        assert!(e.contains("VALUE a whole number"), "{e}");
    }
}
