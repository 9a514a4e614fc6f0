//! Launch time of one container as the number of live containers grows, per start stage (root only).
//!
//! `cargo run --release -p container --example launch_vs_alive -- [MAX [STEP [SAMPLES]]]`
//! (defaults 3000, 1000, 20). Holds idle containers (`vmct-workload idle` from `VMCT_WORKLOAD` if set,
//! else busybox-static `sh -c 'echo @vmct ready; read x'`); at N = 0, STEP, 2*STEP, .. MAX alive it
//! starts and stops SAMPLES more, one at a time, and prints the median of each stage's duration
//! ([`container::Timings::phases`]) and of start-to-ready, in milliseconds. Every container is
//! stopped (cgroup, state dir removed) before it exits, also on error.
use container::{Container, ContainerSpec, Image, Output, Profile, Runtime};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn image() -> Result<(Image, Vec<String>), String> {
    let dir = PathBuf::from("/var/tmp/vmct/images");
    if let Some(w) = std::env::var_os("VMCT_WORKLOAD") {
        let layer = container::image::build_layer(&dir.join("alive-workload"), &[(Path::new(&w), "/bin/w")], None)
            .map_err(|e| e.to_string())?;
        let img = Image::open(vec![layer], vec!["/bin/w".into()]).map_err(|e| e.to_string())?;
        return Ok((img, vec!["idle".into()]));
    }
    let bb = Path::new("/bin/busybox");
    let layer = container::image::build_layer(&dir.join("alive-busybox"), &[(bb, "/bin/busybox")], None)
        .map_err(|e| e.to_string())?;
    let args = vec!["sh".into(), "-c".into(), "echo @vmct ready; read x".into()];
    Ok((Image::open(vec![layer], vec!["/bin/busybox".into()]).map_err(|e| e.to_string())?, args))
}

/// Start one container and wait for its first line; returns it with the seconds start-to-ready.
fn start_ready(rt: &Runtime, id: String, args: &[String]) -> Result<(Container, f64), String> {
    let mut s = ContainerSpec::new(id, args.to_vec());
    s.stdout = Output::Pipe;
    let t = Instant::now();
    let mut c = rt.start(&s).map_err(|e| e.to_string())?;
    let out = std::fs::File::from(c.take_stdout().ok_or("no stdout")?);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.contains("@vmct ready") {
        return Err(format!("unexpected first line {line:?}"));
    }
    Ok((c, t.elapsed().as_secs_f64()))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn run(alive: &mut Vec<Container>, max: usize, step: usize, samples: usize) -> Result<(), String> {
    let (img, args) = image()?;
    let rt = Runtime::new(img, Profile::Default).map_err(|e| e.to_string())?;
    let pid = std::process::id();
    let mut n = 0u64;
    let mut next_id = || {
        n += 1;
        format!("vmct-alive-{pid}-{n}")
    };
    let mut target = 0;
    loop {
        while alive.len() < target {
            alive.push(start_ready(&rt, next_id(), &args)?.0);
        }
        let mut phases: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        let mut ready = Vec::new();
        // For profilers: the samples at this density start now (`perf record -a` can wait for it).
        eprintln!("sampling at alive={target}");
        for _ in 0..samples {
            let (mut c, s) = start_ready(&rt, next_id(), &args)?;
            for (name, d) in c.timings.phases() {
                phases.entry(name).or_default().push(d * 1e3);
            }
            ready.push(s * 1e3);
            c.stop(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        }
        let cols: Vec<String> = phases.iter_mut().map(|(k, v)| format!("{k}={:.3}", median(v))).collect();
        println!("alive={target} n={samples} start_to_ready_ms={:.3} | {}", median(&mut ready), cols.join(" "));
        if target >= max {
            return Ok(());
        }
        target = (target + step).min(max);
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("launch_vs_alive: needs root");
        std::process::exit(2);
    }
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(Ok(d), |a| a.parse::<usize>());
    let (Ok(max), Ok(step), Ok(samples)) = (arg(1, 3000), arg(2, 1000), arg(3, 20)) else {
        eprintln!("usage: launch_vs_alive [MAX [STEP [SAMPLES]]] (whole numbers)");
        std::process::exit(2);
    };
    let mut alive = Vec::new();
    let r = run(&mut alive, max, step.max(1), samples.max(1));
    let t = Instant::now();
    let held = alive.len();
    for mut c in alive.drain(..) {
        let _ = c.stop(Duration::from_secs(5));
    }
    eprintln!("stopped {held} containers in {:.1} s", t.elapsed().as_secs_f64());
    if let Err(e) = r {
        eprintln!("launch_vs_alive: {e}");
        std::process::exit(1);
    }
}
