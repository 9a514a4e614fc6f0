//! The experiments `vmct compare` runs on every backend: [`startup`], [`density`], [`overhead`], [`snapshot`]
//! (isolation lives in `crate::isolation`). Each takes backends through the [`Backend`] trait only, so
//! tests drive them with a fake backend.
pub mod density;
pub mod overhead;
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
        pub rate: f64,
        /// Instances can save state (working set + 4 KiB bytes) and the backend restores it.
        pub saves: bool,
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
                rate: 100.0,
                saves: false,
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
    }

    impl Backend for FakeBackend {
        fn name(&self) -> &str {
            &self.name
        }
        fn info(&self) -> results::BackendInfo {
            results::BackendInfo {
                isolation: None,
                name: self.name.clone(),
                kind: "ours".into(),
                model: "process".into(),
                guest_model: None,
                available: true,
                reason: None,
                version: None,
            }
        }
        fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
            let n = self.launched.fetch_add(1, Ordering::SeqCst);
            if self.fail_after.is_some_and(|f| n >= f) {
                return Err(BackendError::Launch { backend: self.name.clone(), reason: "fake limit".into() });
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
                }
                Scenario::Syscall { .. } => events.push(Event::Result {
                    name: "syscall.getpid".into(),
                    value: self.rate,
                    unit: "calls/s".into(),
                }),
                _ => {}
            }
            events.push(Event::Done { status: 0 });
            events.reverse();
            Ok(Box::new(FakeInstance {
                id: spec.id.clone(),
                scenario: spec.scenario,
                used: self.used.clone(),
                per_instance: self.per_instance,
                events,
                alive: true,
                saves: self.saves,
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
        fn stop(&mut self, _: Duration) -> Result<ExitInfo, BackendError> {
            if std::mem::take(&mut self.alive) {
                self.used.fetch_sub(self.per_instance, Ordering::SeqCst);
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
