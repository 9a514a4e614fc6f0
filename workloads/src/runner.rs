//! Runs a [`Scenario`] on a [`Platform`]: the same control flow on every platform.
//!
//! Every scenario first reports `ready` (so launch-to-ready is measured the same way for all of them),
//! then its results, then `done`. Scenarios a platform cannot run by design are reported as
//! `unsupported` (status 0), never as zero; a scenario that ran and failed is reported as `failed` with
//! the error and how far it got, and `done` carries status 1.
use crate::kernels;
use crate::protocol::{Message, CPU_ITERATIONS, CPU_ITERATIONS_TIMED, CPU_ITER_P50, CPU_ITER_P99};
use crate::scenario::Scenario;
use core::fmt::Write;

/// What each platform build provides to the runner.
pub trait Platform {
    /// The instance's own monotonic clock in nanoseconds (only differences are used).
    fn now_ns(&mut self) -> u64;
    /// Send one message to the host.
    fn emit(&mut self, msg: &Message<'_>);
    /// A writable buffer of `bytes` bytes, not yet touched (first-touch cost is measured).
    /// `Err(reason)` is a failure of this run (the memory is not there), reported as `failed`.
    fn memory(&mut self, bytes: usize) -> Result<&mut [u8], &'static str>;
    /// Block until the host says stop (stdin closed, or the VMM's stop port answers).
    fn wait_for_stop(&mut self);
    /// Run a scenario only this platform knows (`syscall`, `io`, `probe`, `read`), emitting its results.
    fn run_platform(&mut self, scenario: &Scenario) -> Result<(), ScenarioError>;
    /// Give the memory handed out by [`Platform::memory`] back to the platform's OS; true if it was
    /// returned (the default: a platform without an OS to return it to keeps it, false).
    fn release_memory(&mut self) -> bool {
        false
    }
    /// Deliver the messages emitted so far now (the default: `emit` already did).
    fn flush(&mut self) {}
    /// Wait about `ms` milliseconds (the default spins on [`Platform::now_ns`]).
    fn pause_ms(&mut self, ms: u64) {
        let end = self.now_ns().saturating_add(ms.saturating_mul(1_000_000));
        while self.now_ns() < end {
            core::hint::spin_loop();
        }
    }
}

/// Why a platform scenario produced no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioError {
    /// The platform cannot run it by design (e.g. no system calls on the bare guest): `unsupported`.
    Unsupported(&'static str),
    /// It ran and failed: `failed` with the error and the progress made (e.g. errno and MiB written).
    Failed(Detail),
}

/// Capacity of a [`Detail`] in bytes (held inline: the core has no allocator; small enough that a
/// `Result` carrying it stays cheap to return). Put the important words first.
pub const DETAIL_CAPACITY: usize = 112;

/// A failure's description, formatted without allocation (`write!(d, ...)`); text beyond
/// [`DETAIL_CAPACITY`] bytes is cut at a character boundary.
#[derive(Clone, PartialEq, Eq)]
pub struct Detail {
    b: [u8; DETAIL_CAPACITY],
    len: u8,
}

impl Detail {
    /// An empty description.
    pub const fn new() -> Detail {
        Detail { b: [0; DETAIL_CAPACITY], len: 0 }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.b[..usize::from(self.len)]).unwrap_or("")
    }
}

impl Default for Detail {
    fn default() -> Self {
        Detail::new()
    }
}

impl core::fmt::Debug for Detail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Write for Detail {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let len = usize::from(self.len);
        let mut take = s.len().min(DETAIL_CAPACITY - len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.b[len..len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len = u8::try_from(len + take).expect("at most DETAIL_CAPACITY (< 256) bytes");
        Ok(())
    }
}

impl From<&str> for Detail {
    fn from(s: &str) -> Detail {
        let mut d = Detail::new();
        let _ = d.write_str(s);
        d
    }
}

/// Small fixed-size string for formatting result names without allocation.
struct Buf<const N: usize> {
    b: [u8; N],
    len: usize,
}

impl<const N: usize> Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(core::fmt::Error);
        }
        self.b[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The `q`th percentile of sorted `v` by the nearest-rank rule (the value at rank ceil(q/100 * n)),
/// None for an empty `v`.
fn nearest_rank(v: &[u64], q: usize) -> Option<u64> {
    let rank = (q * v.len()).div_ceil(100).max(1);
    v.get(rank - 1).copied()
}

fn rate(work: f64, ns: u64) -> f64 {
    work * 1e9 / (ns.max(1) as f64)
}

/// Run `scenario` to completion on `p`; returns the exit status (0 on success). Emits `done`.
pub fn run<P: Platform>(scenario: &Scenario, p: &mut P) -> i32 {
    let status = match *scenario {
        Scenario::Ready => {
            p.emit(&Message::Ready);
            0
        }
        Scenario::Idle { hold_mib } => {
            let bytes = usize::try_from(hold_mib).unwrap_or(usize::MAX).saturating_mul(crate::MIB);
            let held = if bytes > 0 {
                match p.memory(bytes) {
                    Ok(buf) => {
                        kernels::touch_pages(buf);
                        true
                    }
                    Err(reason) => {
                        p.emit(&Message::Failed { what: "idle", reason });
                        false
                    }
                }
            } else {
                true
            };
            if held {
                p.emit(&Message::Ready);
                p.wait_for_stop();
                0
            } else {
                1
            }
        }
        Scenario::Cpu { iters } => {
            p.emit(&Message::Ready);
            let mut times = [0u64; CPU_ITERATIONS];
            let n = usize::try_from(iters).unwrap_or(usize::MAX).min(CPU_ITERATIONS);
            let mut chain = kernels::Sha256Chain::new();
            let t0 = p.now_ns();
            let mut prev = t0;
            for (i, t) in times[..n].iter_mut().enumerate() {
                // The first `iters % n` iterations take one block more.
                chain.run(iters / n as u64 + u64::from((i as u64) < iters % n as u64));
                let now = p.now_ns();
                *t = now - prev;
                prev = now;
            }
            let ns = prev - t0;
            p.emit(&Message::Result { name: "cpu.sha256", value: rate(iters as f64, ns), unit: "blocks/s" });
            p.emit(&Message::Result { name: "cpu.check", value: chain.check() as f64, unit: "u32" });
            let times = &mut times[..n];
            times.sort_unstable();
            p.emit(&Message::Result { name: CPU_ITERATIONS_TIMED, value: n as f64, unit: "count" });
            for (name, q) in [(CPU_ITER_P50, 50), (CPU_ITER_P99, 99)] {
                let v = nearest_rank(times, q).map_or(f64::NAN, |ns| ns as f64 / 1e9);
                p.emit(&Message::Result { name, value: v, unit: "s" });
            }
            0
        }
        Scenario::Mem { mib } => {
            p.emit(&Message::Ready);
            let bytes = usize::try_from(mib).unwrap_or(usize::MAX).saturating_mul(crate::MIB);
            let t0 = p.now_ns();
            match p.memory(bytes) {
                Ok(_) => {}
                Err(reason) => {
                    p.emit(&Message::Failed { what: "mem", reason });
                    return finish(p, 1);
                }
            }
            // Re-borrow per phase so the platform's clock can be read in between.
            let pages = kernels::touch_pages(p.memory(bytes).unwrap_or(&mut []));
            let t1 = p.now_ns();
            let (seq_bytes, _) = kernels::seq_pass(p.memory(bytes).unwrap_or(&mut []));
            let t2 = p.now_ns();
            let touches = pages.max(1) * 4;
            kernels::random_pages(p.memory(bytes).unwrap_or(&mut []), touches);
            let t3 = p.now_ns();
            let page = kernels::PAGE as f64;
            p.emit(&Message::Result {
                name: "mem.first_touch",
                value: rate(pages as f64 * page, t1 - t0),
                unit: "bytes/s",
            });
            p.emit(&Message::Result { name: "mem.seq", value: rate(seq_bytes as f64, t2 - t1), unit: "bytes/s" });
            p.emit(&Message::Result {
                name: "mem.random_pages",
                value: rate(touches as f64, t3 - t2),
                unit: "pages/s",
            });
            0
        }
        Scenario::Burst { mib } => {
            p.emit(&Message::Ready);
            p.flush();
            p.pause_ms(crate::scenario::BURST_QUIET_MS);
            let bytes = usize::try_from(mib).unwrap_or(usize::MAX).saturating_mul(crate::MIB);
            match p.memory(bytes) {
                Ok(buf) => {
                    kernels::touch_pages(buf);
                }
                Err(reason) => {
                    p.emit(&Message::Failed { what: "burst", reason });
                    return finish(p, 1);
                }
            }
            p.emit(&Message::Result { name: "burst.touched", value: bytes as f64, unit: "bytes" });
            p.flush();
            p.pause_ms(crate::scenario::BURST_HOLD_MS);
            let freed = p.release_memory();
            p.emit(&Message::Result { name: "burst.freed", value: if freed { 1.0 } else { 0.0 }, unit: "bool" });
            p.flush();
            p.wait_for_stop();
            0
        }
        Scenario::Syscall { .. } | Scenario::Io { .. } | Scenario::Probe | Scenario::Read { .. } => {
            p.emit(&Message::Ready);
            let mut name = Buf::<16> { b: [0; 16], len: 0 };
            let _ = name.write_str(scenario.name());
            let what = core::str::from_utf8(&name.b[..name.len]).unwrap_or("scenario");
            match p.run_platform(scenario) {
                Ok(()) => 0,
                Err(ScenarioError::Unsupported(reason)) => {
                    p.emit(&Message::Unsupported { what, reason });
                    0
                }
                Err(ScenarioError::Failed(detail)) => {
                    p.emit(&Message::Failed { what, reason: detail.as_str() });
                    1
                }
            }
        }
    };
    finish(p, status)
}

fn finish<P: Platform>(p: &mut P, status: i32) -> i32 {
    p.emit(&Message::Done { status });
    status
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    struct Fake {
        t: u64,
        out: Vec<String>,
        mem: Vec<u8>,
        stopped: bool,
        platform: Result<(), ScenarioError>,
        mem_limit: usize,
    }

    impl Platform for Fake {
        fn now_ns(&mut self) -> u64 {
            self.t += 1000;
            self.t
        }
        fn emit(&mut self, msg: &Message<'_>) {
            let mut s = String::new();
            msg.encode(&mut s).unwrap();
            self.out.push(s);
        }
        fn memory(&mut self, bytes: usize) -> Result<&mut [u8], &'static str> {
            if bytes > self.mem_limit {
                return Err("mmap of the working set failed");
            }
            if self.mem.len() < bytes {
                self.mem = vec![0; bytes];
            }
            Ok(&mut self.mem[..bytes])
        }
        fn wait_for_stop(&mut self) {
            self.stopped = true;
        }
        fn run_platform(&mut self, _: &Scenario) -> Result<(), ScenarioError> {
            self.platform.clone()
        }
    }

    fn fake() -> Fake {
        let platform = Err(ScenarioError::Unsupported("no system calls here"));
        Fake { t: 0, out: Vec::new(), mem: Vec::new(), stopped: false, platform, mem_limit: usize::MAX }
    }

    #[test]
    fn every_scenario_reports_ready_first_and_done_last() {
        for s in [
            "ready",
            "idle --hold-mib 1",
            "cpu --iters 3",
            "mem --mib 1",
            "syscall --n 2",
            "io --mib 1",
            "probe",
            "burst --mib 1",
        ] {
            let sc = Scenario::parse(s.split_whitespace()).unwrap();
            let mut f = fake();
            assert_eq!(run(&sc, &mut f), 0);
            assert_eq!(f.out.first().unwrap(), "@vmct ready\n", "{s}");
            assert_eq!(f.out.last().unwrap(), "@vmct done 0\n", "{s}");
        }
    }

    #[test]
    fn unsupported_scenarios_say_so_instead_of_reporting_zero() {
        let mut f = fake();
        run(&Scenario::Syscall { n: 5 }, &mut f);
        assert_eq!(f.out[1], "@vmct unsupported syscall no system calls here\n");
        assert!(!f.out.iter().any(|l| l.contains("result")));
    }

    #[test]
    fn failures_are_reported_as_failed_with_their_error_and_a_nonzero_status() {
        let mut f = fake();
        let mut d = Detail::new();
        write!(d, "ENOSPC (No space left on device) writing MiB {} of {}", 913, 1_048_576).unwrap();
        f.platform = Err(ScenarioError::Failed(d));
        assert_eq!(run(&Scenario::Io { mib: 1_048_576 }, &mut f), 1);
        assert_eq!(f.out[1], "@vmct failed io ENOSPC (No space left on device) writing MiB 913 of 1048576\n");
        assert_eq!(f.out.last().unwrap(), "@vmct done 1\n");
        for sc in [Scenario::Mem { mib: 2 }, Scenario::Idle { hold_mib: 2 }] {
            let mut f = fake();
            f.mem_limit = crate::MIB;
            assert_eq!(run(&sc, &mut f), 1, "{sc}");
            assert!(f.out.iter().any(|l| l.starts_with(&std::format!("@vmct failed {} ", sc.name()))), "{:?}", f.out);
            assert!(!f.out.iter().any(|l| l.contains("unsupported")), "{:?}", f.out);
        }
    }

    #[test]
    fn details_are_cut_at_their_capacity_on_a_character_boundary() {
        let mut d = Detail::new();
        write!(d, "{}", "é".repeat(DETAIL_CAPACITY)).unwrap();
        assert_eq!(d.as_str().len(), DETAIL_CAPACITY);
        assert!(d.as_str().chars().all(|c| c == 'é'));
    }

    #[test]
    fn idle_touches_memory_and_waits() {
        let mut f = fake();
        run(&Scenario::Idle { hold_mib: 1 }, &mut f);
        assert!(f.stopped);
        assert_eq!(f.mem.iter().filter(|b| **b == 1).count(), crate::MIB / kernels::PAGE);
    }

    #[test]
    fn burst_touches_reports_frees_then_waits() {
        let mut f = fake();
        assert_eq!(run(&Scenario::Burst { mib: 1 }, &mut f), 0);
        assert!(f.stopped);
        assert_eq!(f.mem.iter().filter(|b| **b == 1).count(), crate::MIB / kernels::PAGE);
        let touched = std::format!("@vmct result burst.touched {} bytes\n", crate::MIB);
        assert_eq!(f.out[1..3], [touched, String::from("@vmct result burst.freed 0 bool\n")]);
        assert!(f.t >= 2_000_000_000, "the quiet and hold pauses passed on the platform's clock");
        let mut f = fake();
        f.mem_limit = 0;
        assert_eq!(run(&Scenario::Burst { mib: 1 }, &mut f), 1);
        assert!(!f.stopped);
    }

    #[test]
    fn cpu_reports_rate_and_check() {
        let mut f = fake();
        run(&Scenario::Cpu { iters: 4 }, &mut f);
        let check = kernels::cpu_sha256_chain(4);
        assert!(f.out.iter().any(|l| l.starts_with("@vmct result cpu.sha256 ") && l.ends_with(" blocks/s\n")));
        assert!(f.out.contains(&std::format!("@vmct result cpu.check {check} u32\n")));
        assert!(f.out.iter().any(|l| l == "@vmct result cpu.iterations 4 count\n"), "{:?}", f.out);
    }

    #[test]
    fn cpu_times_each_iteration_and_reports_p50_and_p99() {
        // The fake clock advances 1 us per read: every iteration reads it once.
        let mut f = fake();
        run(&Scenario::Cpu { iters: 1001 }, &mut f);
        let check = kernels::cpu_sha256_chain(1001);
        assert!(f.out.contains(&std::format!("@vmct result cpu.check {check} u32\n")), "{:?}", f.out);
        for want in ["cpu.iterations 200 count", "cpu.iter_p50 0.000001 s", "cpu.iter_p99 0.000001 s"] {
            assert!(f.out.contains(&std::format!("@vmct result {want}\n")), "{want}: {:?}", f.out);
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: std::vec::Vec<u64> = (1..=200).collect();
        assert_eq!((nearest_rank(&v, 50), nearest_rank(&v, 99)), (Some(100), Some(198)));
        assert_eq!((nearest_rank(&[7], 99), nearest_rank(&[], 50)), (Some(7), None));
    }
}
