#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Launch-to-ready of our container and of the bare microVM with N = 0 and N = 1000 idle instances
//! of the same backend alive (issue 18 item 1: launch latency as the host fills). Run:
//! `cargo bench -p harness --bench launch_alive` (root, /dev/kvm for the microVM; a backend this host
//! cannot run is skipped with its reason). `VMCT_BENCH_ALIVE=0,500` picks other densities.
//!
//! Only launch -> ready of the measured instance is timed; filling the host with idle instances
//! (`Scenario::Idle`, no held memory) and stopping every instance happen outside the measured time.
//! Sample counts are small (10 samples, 2 s): filling to 1000 takes seconds per backend.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use harness::backend::{registry, Backend, Instance, InstanceSpec};
use harness::experiments::{launch_ready, next_id};
use std::time::Duration;
use workloads::scenario::Scenario;

/// The backends compared: our container runtime (default profile) and the bare microVM.
const BACKENDS: [&str; 2] = ["container", "microvm"];
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Densities from `VMCT_BENCH_ALIVE` (comma-separated counts), default 0 and 1000.
fn densities() -> Vec<usize> {
    match std::env::var("VMCT_BENCH_ALIVE") {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("VMCT_BENCH_ALIVE: {n:?} is not a whole number (expected e.g. 0,1000)"))
            })
            .collect(),
        Err(_) => vec![0, 1000],
    }
}

fn stop_all(alive: &mut Vec<Box<dyn Instance>>) {
    for mut inst in alive.drain(..) {
        let _ = inst.stop(Duration::from_secs(5));
    }
}

fn launch_alive(c: &mut Criterion) {
    // Two fds per instance stay open (stdout pipe, pidfd): the soft fd limit to the hard one.
    harness::hostlimit::raise_nofile();
    let workload = harness::artifacts::workload_path().expect("workload binary");
    let work_dir = std::env::temp_dir();
    let backends: Vec<Box<dyn Backend>> =
        registry::all(&workload, &work_dir).into_iter().filter(|b| BACKENDS.contains(&b.name())).collect();
    let mut g = c.benchmark_group("launch_to_ready_alive");
    g.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for b in &backends {
        let info = b.info();
        if !info.available {
            eprintln!("skipping {}: {}", info.name, info.reason.unwrap_or_default());
            continue;
        }
        let mut alive: Vec<Box<dyn Instance>> = Vec::new();
        for n in densities() {
            while alive.len() > n {
                let _ = alive.pop().map(|mut i| i.stop(Duration::from_secs(5)));
            }
            while alive.len() < n {
                match launch_ready(
                    b.as_ref(),
                    InstanceSpec::new(next_id(), Scenario::Idle { hold_mib: 0 }),
                    READY_TIMEOUT,
                ) {
                    Ok((inst, _)) => alive.push(inst),
                    Err(e) => {
                        let reached = alive.len();
                        stop_all(&mut alive);
                        panic!("{}: filling to {n} alive stopped at {reached}: {e}", info.name);
                    }
                }
            }
            g.bench_with_input(BenchmarkId::new(info.name.clone(), format!("alive_{n}")), &n, |bench, _| {
                bench.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let spec = InstanceSpec::new(next_id(), Scenario::Ready);
                        let (mut inst, r) = launch_ready(b.as_ref(), spec, READY_TIMEOUT).expect("launch");
                        total += Duration::from_nanos(r.ready_ns - r.launched_ns);
                        inst.stop(Duration::from_secs(5)).expect("stop");
                    }
                    total
                })
            });
        }
        stop_all(&mut alive);
    }
    g.finish();
}

criterion_group!(benches, launch_alive);
criterion_main!(benches);
