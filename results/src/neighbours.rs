//! What idle neighbours cost and do to a newcomer (issue 18 items 4 and 5), measured by the density
//! sweep at chosen steps while its instances are alive:
//!
//! | file | record |
//! |---|---|
//! | `idle_cpu.csv` | [`IdleCpuRow`]: host CPU time the idle instances consumed over a fixed window |
//! | `victim.csv` | [`VictimRow`]: one more instance (the victim) launched among them, its launch-to-ready and its `cpu` scenario's per-iteration latency |
use crate::records::Record;
use serde::{Deserialize, Serialize};

/// Host CPU time consumed by `alive` idle instances of one backend over `window_s` seconds.
///
/// The CPU time is the sum over each instance's host process tree (the instance's host process and
/// its descendants, found once before the window; every thread: user + system time from
/// `/proc/PID/task/TID/schedstat`, ns), read before and after the window; guest timer ticks, VMM
/// threads, emulators and runtime shims are all in it, work the host kernel does outside those
/// processes is not, nor processes started during the window (idle instances start none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleCpuRow {
    /// Backend name.
    pub backend: String,
    /// Instances alive (all idle: `idle --hold-mib W`) during the window.
    pub alive: u32,
    /// Length of the window, seconds (host CLOCK_MONOTONIC, between the middles of the two readings).
    pub window_s: f64,
    /// Host CPU time all `alive` instances consumed in the window, seconds.
    pub host_cpu_s: f64,
    /// `host_cpu_s / alive / window_s`: CPU seconds per idle instance per second (1.0 = one core busy).
    pub cpu_s_per_instance_per_s: f64,
}

impl Record for IdleCpuRow {
    const FILE: &'static str = "idle_cpu.csv";
}

/// A victim launched with `neighbours` idle instances of the same backend alive.
///
/// The victim runs the `cpu` scenario, which times each of its iterations (a fixed number of SHA-256
/// blocks, `workloads::protocol::CPU_ITER_P50`/`CPU_ITER_P99`) on the instance's own monotonic clock;
/// only differences of that clock are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VictimRow {
    /// Backend name.
    pub backend: String,
    /// Idle instances of the same backend alive while the victim launched and ran.
    pub neighbours: u32,
    /// Victim's launch-to-ready, host CLOCK_MONOTONIC, seconds.
    pub launch_to_ready_s: f64,
    /// Iterations the victim timed.
    pub iterations: u32,
    /// Median iteration latency, seconds.
    pub iter_p50_s: f64,
    /// 99th percentile iteration latency (nearest rank), seconds.
    pub iter_p99_s: f64,
}

impl Record for VictimRow {
    const FILE: &'static str = "victim.csv";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_csv_with_their_column_names() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::RunDir::create(d.path()).unwrap();
        let idle = vec![IdleCpuRow {
            backend: "container".into(),
            alive: 10,
            window_s: 2.0,
            host_cpu_s: 0.002,
            cpu_s_per_instance_per_s: 1e-4,
        }];
        let victim = vec![VictimRow {
            backend: "microvm".into(),
            neighbours: 100,
            launch_to_ready_s: 0.003,
            iterations: 100,
            iter_p50_s: 0.001,
            iter_p99_s: 0.002,
        }];
        rd.write_csv(&idle).unwrap();
        rd.write_csv(&victim).unwrap();
        let head = std::fs::read_to_string(d.path().join("idle_cpu.csv")).unwrap();
        assert!(head.starts_with("backend,alive,window_s,host_cpu_s,cpu_s_per_instance_per_s\n"), "{head}");
        let head = std::fs::read_to_string(d.path().join("victim.csv")).unwrap();
        assert!(head.starts_with("backend,neighbours,launch_to_ready_s,iterations,iter_p50_s,iter_p99_s\n"), "{head}");
        assert_eq!(rd.read_csv::<IdleCpuRow>().unwrap(), idle);
        assert_eq!(rd.read_csv::<VictimRow>().unwrap(), victim);
    }
}
