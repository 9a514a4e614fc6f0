#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Container start benchmarks (root only; prints a skip line otherwise):
//! - `start/clone_pivot_exec`: `Runtime::start` through clone, rootfs, pivot_root, cgroup attach, caps,
//!   seccomp and exec (returns when exec succeeded);
//! - `start/start_to_ready`: the same plus reading the workload's `@vmct ready` line from the pipe.
//!
//! The image is the workload in `VMCT_WORKLOAD` (`vmct-workload ready`) if set, else busybox-static
//! (`sh -c 'echo @vmct ready'`). Cleanup (stop) is outside the timed region.
use container::{ContainerSpec, Image, Output, Profile, Runtime};
use criterion::{criterion_group, criterion_main, Criterion};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn image() -> Option<(Image, Vec<String>)> {
    let dir = PathBuf::from("/var/tmp/vmct/images");
    if let Some(w) = std::env::var_os("VMCT_WORKLOAD") {
        let layer =
            container::image::build_layer(&dir.join("bench-workload"), &[(Path::new(&w), "/bin/w")], None).ok()?;
        return Some((Image::open(vec![layer], vec!["/bin/w".into()]).ok()?, vec!["ready".into()]));
    }
    let bb = Path::new("/bin/busybox");
    let layer = container::image::build_layer(&dir.join("bench-busybox"), &[(bb, "/bin/busybox")], None).ok()?;
    let args = vec!["sh".into(), "-c".into(), "echo @vmct ready".into()];
    Some((Image::open(vec![layer], vec!["/bin/busybox".into()]).ok()?, args))
}

fn bench(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped container start benches: needs root");
        return;
    }
    let Some((img, args)) = image() else {
        eprintln!("skipped container start benches: set VMCT_WORKLOAD or install busybox-static");
        return;
    };
    let rt = Runtime::new(img, Profile::Default).expect("runtime");
    let mut n = 0u64;
    let spec = |n: &mut u64| {
        *n += 1;
        let mut s = ContainerSpec::new(format!("vmct-bench-{}-{n}", std::process::id()), args.clone());
        s.stdout = Output::Pipe;
        s
    };
    let mut g = c.benchmark_group("start");
    g.sample_size(50).measurement_time(Duration::from_secs(10));
    g.bench_function("clone_pivot_exec", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = spec(&mut n);
                let t = Instant::now();
                let mut ct = rt.start(&s).expect("start");
                total += t.elapsed();
                ct.stop(Duration::from_secs(5)).expect("stop");
            }
            total
        })
    });
    g.bench_function("start_to_ready", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = spec(&mut n);
                let t = Instant::now();
                let mut ct = rt.start(&s).expect("start");
                let out = std::fs::File::from(ct.take_stdout().expect("stdout"));
                let mut line = String::new();
                BufReader::new(out).read_line(&mut line).expect("read");
                total += t.elapsed();
                assert_eq!(line.trim(), "@vmct ready");
                ct.stop(Duration::from_secs(5)).expect("stop");
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
