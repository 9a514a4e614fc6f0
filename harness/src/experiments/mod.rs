//! The experiments `vmct compare` runs on every backend: [`startup`], [`density`], [`overhead`], [`snapshot`]
//! and [`isolation`] (whose probes and blast radius live in `crate::isolation`), each registered in
//! [`registry`]. Each takes backends through the [`Backend`] trait only, so tests drive them with a fake
//! backend.
//!
//! The plan structs ([`startup::StartupPlan`], [`density::DensityPlan`], [`overhead::OverheadPlan`],
//! [`snapshot::SnapshotPlan`], and `crate::isolation::blast::BlastOptions`) are serde types stored whole
//! in run.json (`full_plan`, see `crate::compare::Settings`). One convention for their JSON: a duration is
//! a number of seconds in a field whose name ends in `_s` ([`duration_s`]), a scenario is the words
//! `vmct-workload` takes, e.g. `"cpu --iters 100000"` ([`scenario_words`]); unknown fields are rejected
//! so a replay never drops a setting silently.
pub mod crash;
pub mod crosscheck;
pub mod density;
pub mod isolation;
pub mod memory;
pub mod overhead;
pub mod page_cache;
pub mod registry;
pub mod snapshot;
pub mod startup;

use crate::backend::{Backend, BackendError, Instance, InstanceSpec, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use workloads::scenario::Scenario;

/// Errors that end one experiment on one backend (the run goes on with the next backend).
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The user pressed Ctrl-C.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// A measurement could not be taken (the workload failed, the host has no figure for it).
    #[error("{backend}: {reason}")]
    Measurement {
        /// Backend name.
        backend: String,
        /// What is missing and why.
        reason: String,
    },
}

/// A fresh instance id: `vmct-<harness pid>-<n>`, short enough for hostnames and cgroup names, and
/// carrying the prefix `vmct gc` looks for.
pub fn next_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}-{}", crate::backend::NAME_PREFIX, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Launch one instance of `scenario` and wait until it is ready.
pub fn launch_ready(
    backend: &dyn Backend,
    spec: InstanceSpec,
    timeout: Duration,
) -> Result<(Box<dyn Instance>, Ready), BackendError> {
    let mut inst = backend.launch(&spec)?;
    let ready = inst.wait_ready(timeout)?;
    Ok((inst, ready))
}

/// A spec with a fresh id for `scenario`.
pub fn spec(scenario: Scenario) -> InstanceSpec {
    InstanceSpec::new(next_id(), scenario)
}

/// Serde for a [`Duration`] as a number of seconds (JSON `20.0`, `0.01`); name the field `..._s`.
/// Reading rounds to the nanosecond, so written values read back exactly; a negative, non-finite or
/// too large number is an error naming the value.
pub mod duration_s {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Write `d` as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Read seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        from_secs(secs).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid duration {secs} s: expected a finite number of seconds >= 0"))
        })
    }

    /// `secs` rounded to the nanosecond, or None when negative, not finite or out of range.
    pub fn from_secs(secs: f64) -> Option<Duration> {
        let ns = (secs * 1e9).round();
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast below in range.
        #[allow(clippy::cast_possible_truncation)]
        (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then(|| Duration::from_nanos(ns as u64))
    }
}

/// Serde for a list of [`Scenario`]s as the words `vmct-workload` takes (`"cpu --iters 1000"`), parsed
/// back with [`Scenario::parse`] so a bad word or size is an error naming it.
pub mod scenario_words {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use workloads::scenario::Scenario;

    /// Write each scenario as its words.
    pub fn serialize<S: Serializer>(v: &[Scenario], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|sc| sc.to_string()).collect::<Vec<_>>().serialize(s)
    }

    /// Parse each scenario's words.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Scenario>, D::Error> {
        let words = Vec::<String>::deserialize(d)?;
        words
            .iter()
            .map(|w| Scenario::parse(w.split_whitespace()).map_err(|e| serde::de::Error::custom(format!("'{w}': {e}"))))
            .collect()
    }
}

/// Cost of the harness timestamping one event (median of `n` back-to-back clock reads), seconds.
pub fn timestamp_cost_s(n: usize) -> f64 {
    let mut d = Vec::with_capacity(n);
    for _ in 0..n {
        let a = crate::clock::mono_ns();
        let b = crate::clock::mono_ns();
        d.push((b - a) as f64 * 1e-9);
    }
    results::stats::median(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_and_read_back_exactly() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct T {
            #[serde(rename = "t_s", with = "duration_s")]
            t: Duration,
        }
        for t in [Duration::ZERO, Duration::from_nanos(1), Duration::from_millis(10), Duration::from_secs(120)] {
            let v = serde_json::to_value(T { t }).unwrap();
            assert_eq!(v["t_s"], t.as_secs_f64());
            assert_eq!(serde_json::from_value::<T>(v).unwrap().t, t);
        }
        for bad in ["-0.5", "1e30"] {
            let e = serde_json::from_str::<T>(&format!("{{\"t_s\": {bad}}}")).unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{e}");
        }
    }

    #[test]
    fn scenarios_are_their_words() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct T {
            #[serde(with = "scenario_words")]
            s: Vec<Scenario>,
        }
        let t = T { s: vec![Scenario::Ready, Scenario::Mem { mib: 3 }] };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v, serde_json::json!({"s": ["ready", "mem --mib 3"]}));
        assert_eq!(serde_json::from_value::<T>(v).unwrap(), t);
        let e = serde_json::from_str::<T>(r#"{"s": ["mem --mib 0"]}"#).unwrap_err().to_string();
        assert!(e.contains("'mem --mib 0'") && e.contains("invalid value '0'"), "{e}");
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake backend for experiment logic tests: instances "start" instantly, report ready, and
    //! account a fixed amount of memory against a shared fake host meter.
    use super::*;
    use crate::backend::{Event, ExitInfo, InstanceStats, Phase};
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    /// Fake backend.
    pub struct FakeBackend {
        pub name: String,
        pub per_instance: i64,
        pub used: Arc<AtomicI64>,
        pub fail_after: Option<u64>,
        pub launched: AtomicU64,
        pub supports_syscall: bool,
        /// The `io` scenario fails like a full disk (a `failed` message, status 1).
        pub io_fails: bool,
        pub rate: f64,
        /// Instances can save state (working set + 4 KiB bytes) and the backend restores it.
        pub saves: bool,
        /// The launch error's reason once `fail_after` launches were made.
        pub fail_reason: &'static str,
        /// `request` and `stop` as instances are told to stop and are stopped, in order.
        pub stop_log: Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl FakeBackend {
        pub fn new(name: &str, per_instance: i64) -> FakeBackend {
            FakeBackend {
                name: name.into(),
                per_instance,
                used: Arc::new(AtomicI64::new(0)),
                fail_after: None,
                launched: AtomicU64::new(0),
                supports_syscall: true,
                io_fails: false,
                rate: 100.0,
                saves: false,
                fail_reason: "fake limit",
                stop_log: Arc::default(),
            }
        }
    }

    pub struct FakeInstance {
        id: String,
        scenario: Scenario,
        used: Arc<AtomicI64>,
        per_instance: i64,
        events: Vec<Event>,
        alive: bool,
        saves: bool,
        stop_log: Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl Backend for FakeBackend {
        fn name(&self) -> &str {
            &self.name
        }
        fn info(&self) -> results::BackendInfo {
            results::BackendInfo {
                isolation: None,
                name: self.name.clone(),
                kind: results::BackendKind::Ours,
                model: results::IsolationModel::Process,
                guest_model: None,
                available: true,
                reason: None,
                version: None,
                emulated: false,
            }
        }
        fn capabilities(&self) -> results::Capabilities {
            results::Capabilities { save_state: self.saves, linux_probes: true, ..results::Capabilities::default() }
        }
        fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
            let n = self.launched.fetch_add(1, Ordering::SeqCst);
            if self.fail_after.is_some_and(|f| n >= f) {
                return Err(BackendError::Launch { backend: self.name.clone(), reason: self.fail_reason.into() });
            }
            self.used.fetch_add(self.per_instance, Ordering::SeqCst);
            let mut events = Vec::new();
            match spec.scenario {
                Scenario::Syscall { .. } if !self.supports_syscall => {
                    events.push(Event::Unsupported { what: "syscall".into(), reason: "no syscalls".into() })
                }
                Scenario::Cpu { .. } => {
                    events.push(Event::Result { name: "cpu.sha256".into(), value: self.rate, unit: "blocks/s".into() });
                    events.push(Event::Result { name: "cpu.check".into(), value: 7.0, unit: "u32".into() });
                    use workloads::protocol as p;
                    for (name, value, unit) in [
                        (p::CPU_ITERATIONS_TIMED, 200.0, "count"),
                        (p::CPU_ITER_P50, 1e-3, "s"),
                        (p::CPU_ITER_P99, 3e-3, "s"),
                    ] {
                        events.push(Event::Result { name: name.into(), value, unit: unit.into() });
                    }
                }
                Scenario::Syscall { .. } => events.push(Event::Result {
                    name: "syscall.getpid".into(),
                    value: self.rate,
                    unit: "calls/s".into(),
                }),
                _ => {}
            }
            if matches!(spec.scenario, Scenario::Io { .. }) && self.io_fails {
                events.push(Event::Failed { what: "io".into(), reason: "ENOSPC writing MiB 3 of 9".into() });
                events.push(Event::Done { status: 1 });
            } else {
                events.push(Event::Done { status: 0 });
            }
            events.reverse();
            Ok(Box::new(FakeInstance {
                id: spec.id.clone(),
                scenario: spec.scenario,
                used: self.used.clone(),
                per_instance: self.per_instance,
                events,
                alive: true,
                saves: self.saves,
                stop_log: self.stop_log.clone(),
            }))
        }
        fn restore(
            &self,
            saved: &crate::backend::Saved,
            spec: &InstanceSpec,
        ) -> Result<Box<dyn Instance>, BackendError> {
            if !self.saves || !saved.path.exists() {
                return Err(BackendError::Unavailable { backend: self.name.clone(), reason: "fake".into() });
            }
            self.launch(spec)
        }
    }

    impl Instance for FakeInstance {
        fn id(&self) -> &str {
            &self.id
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn wait_ready(&mut self, _: Duration) -> Result<Ready, BackendError> {
            let t = crate::clock::mono_ns();
            let _ = self.scenario;
            Ok(Ready {
                launched_ns: t,
                ready_ns: t + 1_000_000,
                phases: vec![Phase { name: "all".into(), duration_s: 1e-3 }],
            })
        }
        fn next_event(&mut self, _: Duration) -> Result<Option<(u64, Event)>, BackendError> {
            Ok(self.events.pop().map(|e| (0, e)))
        }
        fn stats(&mut self) -> InstanceStats {
            InstanceStats { rss_bytes: Some(self.per_instance as u64), ..Default::default() }
        }
        fn request_stop(&mut self) {
            self.stop_log.lock().unwrap().push("request");
        }
        fn stop(&mut self, _: Duration) -> Result<ExitInfo, BackendError> {
            if std::mem::take(&mut self.alive) {
                self.used.fetch_sub(self.per_instance, Ordering::SeqCst);
                self.stop_log.lock().unwrap().push("stop");
            }
            Ok(ExitInfo { status: Some(0), ..Default::default() })
        }
        fn save_state(&mut self, dir: &std::path::Path) -> Result<crate::backend::Saved, BackendError> {
            if !self.saves {
                return Err(BackendError::Unavailable { backend: self.id.clone(), reason: "fake".into() });
            }
            Ok(crate::backend::Saved {
                path: dir.to_path_buf(),
                bytes: self.scenario.working_set_bytes() + 4096,
                duration_s: 0.01,
                checks_restore: false,
            })
        }
    }

    impl Drop for FakeInstance {
        fn drop(&mut self) {
            let _ = self.stop(Duration::ZERO);
        }
    }
}
