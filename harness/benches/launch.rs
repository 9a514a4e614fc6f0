#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Launch-to-ready of every available backend, side by side in one criterion group (run:
//! `cargo bench -p harness --bench launch`; criterion's report lands in target/criterion/).
//! Only launch -> ready is timed; stopping the instance happens outside the measured time.
use criterion::{criterion_group, criterion_main, Criterion};
use harness::backend::{registry, InstanceSpec};
use std::time::Duration;
use workloads::scenario::Scenario;

fn launch_to_ready(c: &mut Criterion) {
    let workload = harness::artifacts::workload_path().expect("workload binary");
    let work_dir = std::env::temp_dir();
    let mut g = c.benchmark_group("launch_to_ready");
    g.sample_size(50).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    for b in registry::all(&workload, &work_dir) {
        let info = b.info();
        if !info.available {
            eprintln!("skipping {}: {}", info.name, info.reason.unwrap_or_default());
            continue;
        }
        g.bench_function(info.name.clone(), |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let spec = InstanceSpec::new(harness::experiments::next_id(), Scenario::Ready);
                    let mut inst = b.launch(&spec).expect("launch");
                    let r = inst.wait_ready(Duration::from_secs(30)).expect("ready");
                    total += Duration::from_nanos(r.ready_ns - r.launched_ns);
                    inst.stop(Duration::from_secs(5)).expect("stop");
                }
                total
            })
        });
    }
    g.finish();
}

fn harness_bookkeeping(c: &mut Criterion) {
    c.bench_function("timestamp_one_event", |b| b.iter(harness::clock::mono_ns));
    c.bench_function("decode_one_message", |b| {
        b.iter(|| {
            workloads::protocol::Message::decode(std::hint::black_box("@vmct result cpu.sha256 5384651.79 blocks/s\n"))
        })
    });
}

criterion_group!(benches, launch_to_ready, harness_bookkeeping);
criterion_main!(benches);
