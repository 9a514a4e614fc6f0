//! Noisy-neighbour hogs for the blast-radius experiment, selected by `VMCT_HOG` before the scenario is
//! parsed (the no_std core's scenario list stays unchanged):
//!
//! ```text
//! VMCT_HOG=mem|cpu|fork|tick  VMCT_HOG_SECS=S (<= 120)  VMCT_HOG_MIB=N (mem, <= 4096)  VMCT_HOG_PROCS=N (fork, <= 512)
//! VMCT_HOG_THREADS=N (cpu, <= 64; default: the CPUs this process may use)
//! ```
//! `tick` is not a hog but a heartbeat (the crash experiment, harness `experiments::crash`): one thread
//! hashing like `cpu` that reports its rate as `@vmct result tick.sha256 R blocks/s` every
//! [`TICK_EVERY`], so whoever reads the console sees which instances are alive and how fast they run.
//!
//! Every hog is bounded in time, size and process count, reports `ready` once it is hogging, a result
//! when it ends, then `done`. The harness normally kills it earlier.
use crate::linux::LinuxPlatform;
use std::time::{Duration, Instant};
use workloads::protocol::Message;
use workloads::runner::Platform;

/// Selects the hog.
pub const ENV_HOG: &str = "VMCT_HOG";
/// Longest a hog runs.
const MAX_SECS: f64 = 120.0;
/// Largest memory hog.
const MAX_MIB: u64 = 4096;
/// Most live children of the fork loop.
const MAX_PROCS: u64 = 512;
/// Threads of the CPU hog (the neighbour's CPU allotment, rounded up).
pub const ENV_HOG_THREADS: &str = "VMCT_HOG_THREADS";
/// Most CPU hog threads.
const MAX_THREADS: u64 = 64;

fn env_num(k: &str, default: f64, max: f64) -> f64 {
    std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(default).clamp(0.0, max)
}

/// Run the hog named in `VMCT_HOG`, if any; returns its exit status.
pub fn run_if_requested(p: &mut LinuxPlatform) -> Option<i32> {
    let kind = std::env::var(ENV_HOG).ok().filter(|k| !k.is_empty())?;
    let secs = env_num("VMCT_HOG_SECS", 30.0, MAX_SECS);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    // env_num clamps to 0..=max, and a float-to-int `as` saturates: the counts are whole and in range.
    #[allow(clippy::cast_possible_truncation)]
    let count = |name, default, max: u64| env_num(name, default, max as f64) as u64;
    let status = match kind.as_str() {
        "mem" => mem(p, count("VMCT_HOG_MIB", 256.0, MAX_MIB), deadline),
        "cpu" => cpu(p, deadline),
        "fork" => fork(p, count("VMCT_HOG_PROCS", 64.0, MAX_PROCS), deadline),
        "tick" => tick(p, deadline),
        other => {
            p.emit(&Message::Unsupported { what: "hog", reason: "unknown VMCT_HOG (mem, cpu, fork, tick)" });
            eprintln!("vmct-workload: unknown hog {other}");
            1
        }
    };
    p.emit(&Message::Done { status });
    Some(status)
}

/// Touch `mib` MiB once, report ready, then keep re-touching every page until the deadline.
fn mem(p: &mut LinuxPlatform, mib: u64, deadline: Instant) -> i32 {
    let bytes = usize::try_from(mib).expect("at most MAX_MIB") << 20;
    let buf = match p.memory(bytes) {
        Ok(b) => b,
        Err(reason) => {
            p.emit(&Message::Unsupported { what: "hog", reason });
            return 1;
        }
    };
    let mut passes = 0u64;
    let step = |buf: &mut [u8]| {
        for i in (0..buf.len()).step_by(4096) {
            buf[i] = buf[i].wrapping_add(1);
        }
    };
    step(buf);
    p.emit(&Message::Ready);
    while Instant::now() < deadline {
        let buf = p.memory(bytes).unwrap_or(&mut []);
        step(buf);
        passes += 1;
    }
    p.emit(&Message::Result { name: "hog.mem_passes", value: passes as f64, unit: "passes" });
    0
}

/// Spin `VMCT_HOG_THREADS` threads (the neighbour's CPU allotment; default one per CPU this process
/// may use) until the deadline.
fn cpu(p: &mut LinuxPlatform, deadline: Instant) -> i32 {
    let online = std::thread::available_parallelism().map_or(2, |n| n.get());
    // env_num clamps to [0, MAX_THREADS], so the float holds a small whole count.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (env_num(ENV_HOG_THREADS, online as f64, MAX_THREADS as f64) as usize).max(1);
    p.emit(&Message::Ready);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut blocks = 0u64;
                while Instant::now() < deadline {
                    std::hint::black_box(workloads::kernels::cpu_sha256_chain(1000));
                    blocks += 1000;
                }
                blocks
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    p.emit(&Message::Result { name: "hog.cpu_blocks", value: total as f64, unit: "blocks" });
    0
}

/// Interval between two heartbeats of [`tick`].
pub const TICK_EVERY: Duration = Duration::from_millis(250);
/// Name of [`tick`]'s heartbeat result.
pub const TICK_RESULT: &str = "tick.sha256";

/// Hash SHA-256 block chains on one thread until the deadline, reporting the rate of each
/// [`TICK_EVERY`] interval (blocks/s) as a heartbeat.
fn tick(p: &mut LinuxPlatform, deadline: Instant) -> i32 {
    p.emit(&Message::Ready);
    let (mut since, mut blocks) = (Instant::now(), 0u64);
    while Instant::now() < deadline {
        std::hint::black_box(workloads::kernels::cpu_sha256_chain(200));
        blocks += 200;
        let dt = since.elapsed();
        if dt >= TICK_EVERY {
            p.emit(&Message::Result { name: TICK_RESULT, value: blocks as f64 / dt.as_secs_f64(), unit: "blocks/s" });
            (since, blocks) = (Instant::now(), 0);
        }
    }
    0
}

/// Fork children that live 20 ms each, keeping at most `max` alive, until the deadline. Each child dies
/// with its parent (PR_SET_PDEATHSIG), so killing the hog ends them all.
fn fork(p: &mut LinuxPlatform, max: u64, deadline: Instant) -> i32 {
    p.emit(&Message::Ready);
    let (mut live, mut forks, mut failures) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        if live >= max.max(1) {
            // SAFETY: waiting for any of our children; status pointer may be null.
            if unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {
                live -= 1;
            }
            continue;
        }
        // SAFETY: the hog is single-threaded; the child only calls async-signal-safe functions.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: async-signal-safe calls in the child, then _exit.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    libc::usleep(20_000);
                    libc::_exit(0);
                }
            }
            pid if pid > 0 => {
                forks += 1;
                live += 1;
            }
            _ => {
                failures += 1;
                // Reap one (or back off) when the pids limit says no.
                // SAFETY: as above.
                if unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {
                    live -= 1;
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // SAFETY: non-blocking reap of finished children.
        while live > 0 && unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {
            live -= 1;
        }
    }
    p.emit(&Message::Result { name: "hog.forks", value: forks as f64, unit: "forks" });
    p.emit(&Message::Result { name: "hog.fork_failures", value: failures as f64, unit: "failures" });
    0
}
