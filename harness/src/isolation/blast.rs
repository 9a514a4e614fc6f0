//! Blast radius: how much a noisy or failing neighbour slows a victim instance on the same backend.
//!
//! The victim runs `cpu --iters N` instances back to back; its latency is the in-instance compute time
//! (`iters / cpu.sha256 rate`), so launch cost does not dilute the effect. It is measured alone, then
//! while one neighbour runs a memory hog, a CPU hog or a fork loop (the workload's `VMCT_HOG` modes),
//! each without and with limits (`mem_limit_bytes`, `cpu_quota`, `pids_limit`); containers add an
//! OOM-killed neighbour (a memory hog above its limit). Every hog is bounded: time (`hog_secs`, and it
//! is killed when the victim is done), size (at most a quarter of MemAvailable), and processes
//! (`fork_max` live children at most, fewer under the pids limit).
//!
//! Equal CPU allotment: every neighbour gets the same CPU allotment in every model
//! ([`apply_allotment`]): `allotment_cpus` (default: the host's CPUs) without limits, `limit_cpu` with
//! them, taken as N vCPUs by a VM (the bare guest runs its CPU hog on every vCPU, see `microvm::smp`),
//! as a CPU quota of N by a container, and as N hog threads by the Linux workload everywhere (also in
//! a Linux guest). The allotment as applied is `blast.csv`'s `neighbour_cpus` column.
use super::IsolationError;
use crate::backend::{collect_events, Backend, Event, Instance, InstanceSpec};
use results::{BackendInfo, BlastRow, Capabilities, GuestModel, IsolationModel};
use std::time::Duration;
use workloads::scenario::Scenario;

/// Blast-radius options (part of the run's plan in run.json, see `crate::experiments`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastOptions {
    /// SHA-256 blocks per victim run.
    pub victim_iters: u64,
    /// Victim runs per condition (median reported).
    pub rounds: usize,
    /// Upper bound on a hog's lifetime, seconds (JSON: `hog_s`).
    #[serde(rename = "hog_s")]
    pub hog_secs: f64,
    /// Memory hog size, MiB (capped at MemAvailable/4).
    pub hog_mib: u64,
    /// Memory limit of a limited neighbour, bytes.
    pub limit_mem_bytes: u64,
    /// CPU allotment of a limited neighbour, CPUs (a VM gets it rounded up to whole vCPUs).
    pub limit_cpu: f64,
    /// CPU allotment of a neighbour without limits, CPUs (JSON `allotment_cpus`; plans written before
    /// it existed read the host's CPUs).
    #[serde(default = "host_cpus")]
    pub allotment_cpus: u32,
    /// Pids limit of a limited neighbour.
    pub limit_pids: u64,
    /// Most live children of the fork loop.
    pub fork_max: u64,
    /// Per-instance timeout (JSON: `timeout_s`, seconds).
    #[serde(rename = "timeout_s", with = "crate::experiments::duration_s")]
    pub timeout: Duration,
}

impl Default for BlastOptions {
    fn default() -> Self {
        BlastOptions {
            victim_iters: 200_000,
            rounds: 5,
            hog_secs: 60.0,
            hog_mib: 1024,
            limit_mem_bytes: 128 << 20,
            // A whole CPU, so a VM (whole vCPUs) can be given the same allotment as a container.
            limit_cpu: 1.0,
            allotment_cpus: host_cpus(),
            limit_pids: 32,
            fork_max: 256,
            timeout: Duration::from_secs(120),
        }
    }
}

/// How long a neighbour gets to exit once the victim is done before it is killed: a hog never ends on its
/// own before its `hog_secs`, so it is killed almost at once.
pub const HOG_STOP_GRACE: Duration = Duration::from_millis(200);

/// The host's online CPUs (the default allotment of a neighbour without limits).
fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// The CPU allotment of a neighbour, CPUs: `allotment_cpus` without limits, `limit_cpu` with them.
pub fn allotment(limited: bool, o: &BlastOptions) -> f64 {
    if limited {
        o.limit_cpu
    } else {
        f64::from(o.allotment_cpus.max(1))
    }
}

/// Give the neighbour `s` the CPU allotment `cpus` the way its isolation `model` takes it: whole vCPUs
/// for a microVM (rounded up: a VM cannot have part of a vCPU), a CPU quota for a container, nothing
/// for the process baseline (it applies no limits); in every model the CPU hog spins that many threads
/// (`VMCT_HOG_THREADS`, rounded up). Returns the allotment as applied (the `neighbour_cpus` column).
pub fn apply_allotment(s: &mut InstanceSpec, model: IsolationModel, cpus: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // ceil of a positive CPU count, far below u32::MAX
    let whole = cpus.ceil().max(1.0) as u32;
    s.env.push(("VMCT_HOG_THREADS".into(), whole.to_string()));
    match model {
        IsolationModel::Microvm => {
            s.vcpus = whole;
            f64::from(whole)
        }
        IsolationModel::Process => f64::from(whole),
        _ => {
            s.cpu_quota = Some(cpus);
            cpus
        }
    }
}

/// One neighbour case (the closed set `blast.csv` names).
pub use results::Neighbour;

/// The neighbour cases that apply to a backend with `info` and `caps`, and notes on those that do not:
/// limited cases need limits ([`Capabilities::limits`]), the `oom` case a host cgroup that OOM-kills
/// ([`Capabilities::cgroup_limits`]), the fork loop a guest with processes (not [`GuestModel::Bare`]).
pub fn cases(info: &BackendInfo, caps: Capabilities) -> (Vec<(Neighbour, bool)>, Vec<String>) {
    let backend = &info.name;
    let mut v = Vec::new();
    let mut notes = Vec::new();
    for n in [Neighbour::MemoryHog, Neighbour::CpuHog, Neighbour::ForkLoop] {
        v.push((n, false));
        if caps.limits {
            v.push((n, true));
        }
    }
    if !caps.limits {
        notes.push(format!("blast: {backend}: limited cases skipped (the backend applies no limits)"));
    }
    if caps.cgroup_limits {
        v.push((Neighbour::Oom, true));
    } else {
        notes.push(format!(
            "blast: {backend}: oom case skipped (applies to backends that limit memory with a host cgroup)"
        ));
    }
    if info.guest_model == Some(GuestModel::Bare) {
        v.retain(|(n, _)| *n != Neighbour::ForkLoop);
        notes.push(format!("blast: {backend}: fork-loop skipped (a bare guest has no processes)"));
        notes.push(format!(
            "blast: {backend}: faulting/runaway guest skipped: the backend exposes no way to launch a \
             faulting guest through the Backend trait, and the bare guest has no VMCT_HOG modes"
        ));
    }
    (v, notes)
}

/// MemAvailable in MiB.
fn mem_available_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// The neighbour's spec for a case on a backend of isolation `model`, and its CPU allotment as applied
/// ([`apply_allotment`]).
pub fn neighbour_spec(n: Neighbour, limited: bool, o: &BlastOptions, model: IsolationModel) -> (InstanceSpec, f64) {
    let mib = o.hog_mib.min(mem_available_mib().map_or(512, |m| m / 4)).max(16);
    // The Linux workload runs the VMCT_HOG mode and ignores the scenario; a platform without hog modes
    // (the bare guest) runs the scenario, which hogs the same resource, bounded by size or count.
    let scenario = match n {
        Neighbour::MemoryHog => Scenario::Idle { hold_mib: mib },
        Neighbour::Oom => Scenario::Idle { hold_mib: ((o.limit_mem_bytes >> 20) * 2).max(64).min(mib) },
        // At most 6e8 blocks (saturating at 0 for a negative time): the cast cannot truncate a real count.
        #[allow(clippy::cast_possible_truncation)]
        Neighbour::CpuHog => Scenario::Cpu { iters: (o.hog_secs.min(120.0) * 5e6) as u64 },
        Neighbour::ForkLoop => Scenario::Ready,
    };
    let mut s = InstanceSpec::new(crate::experiments::next_id(), scenario);
    let (kind, extra): (&str, Vec<(&str, String)>) = match n {
        Neighbour::MemoryHog => ("mem", vec![("VMCT_HOG_MIB", mib.to_string())]),
        Neighbour::Oom => ("mem", vec![("VMCT_HOG_MIB", ((o.limit_mem_bytes >> 20) * 2).max(64).min(mib).to_string())]),
        Neighbour::CpuHog => ("cpu", vec![]),
        Neighbour::ForkLoop => ("fork", vec![("VMCT_HOG_PROCS", o.fork_max.min(512).to_string())]),
    };
    s.env.push(("VMCT_HOG".into(), kind.into()));
    s.env.push(("VMCT_HOG_SECS".into(), o.hog_secs.min(120.0).to_string()));
    for (k, v) in extra {
        s.env.push((k.into(), v));
    }
    if limited {
        s.mem_limit_bytes = Some(o.limit_mem_bytes);
        s.pids_limit = Some(o.limit_pids);
    }
    let cpus = apply_allotment(&mut s, model, allotment(limited, o));
    (s, cpus)
}

/// One victim run: in-instance compute seconds, or None if it failed.
fn victim_once(backend: &dyn Backend, o: &BlastOptions) -> Option<f64> {
    let spec = InstanceSpec::new(crate::experiments::next_id(), Scenario::Cpu { iters: o.victim_iters });
    let mut inst = backend.launch(&spec).ok()?;
    inst.wait_ready(o.timeout).ok()?;
    let ev = collect_events(inst.as_mut(), o.timeout).ok()?;
    let _ = inst.stop(crate::backend::REAP_GRACE);
    ev.iter().find_map(|e| match e {
        Event::Result { name, value, .. } if name == "cpu.sha256" && *value > 0.0 => {
            Some(o.victim_iters as f64 / value)
        }
        _ => None,
    })
}

/// `rounds` victim runs; (median seconds, all ok).
fn victim(backend: &dyn Backend, o: &BlastOptions) -> (f64, bool) {
    let mut v = Vec::new();
    let mut ok = true;
    for _ in 0..o.rounds.max(1) {
        match victim_once(backend, o) {
            Some(s) => v.push(s),
            None => ok = false,
        }
    }
    (if v.is_empty() { f64::NAN } else { results::stats::median(&v) }, ok)
}

/// Run every case on `backend`; returns rows and notes (skipped cases, neighbour launch failures).
pub fn run_blast(
    backend: &dyn Backend,
    o: &BlastOptions,
    progress: &dyn Fn(&str),
) -> Result<(Vec<BlastRow>, Vec<String>), IsolationError> {
    let name = backend.name().to_string();
    let model = backend.info().model;
    let (cases, mut notes) = cases(&backend.info(), backend.capabilities());
    progress(&format!("blast: {name}: victim alone"));
    let (alone, alone_ok) = victim(backend, o);
    if !alone_ok && alone.is_nan() {
        notes.push(format!("blast: {name}: the victim cannot run alone; no blast rows"));
        return Ok((Vec::new(), notes));
    }
    let mut rows = Vec::new();
    for (n, limited) in cases {
        crate::interrupt::check()?;
        progress(&format!("blast: {name}: victim with {}{}", n.name(), if limited { " (limited)" } else { "" }));
        let (spec, cpus) = neighbour_spec(n, limited, o, model);
        let mut hog: Box<dyn Instance> = match backend.launch(&spec) {
            Ok(h) => h,
            Err(e) => {
                notes.push(format!("blast: {name}: {} neighbour failed to launch: {e}", n.name()));
                continue;
            }
        };
        // An OOM neighbour may die before (or instead of) reporting ready; that is the point.
        let ready = hog.wait_ready(o.timeout);
        if let (Err(e), false) = (&ready, n == Neighbour::Oom) {
            notes.push(format!("blast: {name}: {} neighbour did not get ready: {e}", n.name()));
        }
        let (with, ok) = victim(backend, o);
        let exit = hog.stop(HOG_STOP_GRACE);
        if n == Neighbour::Oom {
            let killed = exit.as_ref().is_ok_and(|x| x.oom_killed || x.signal == Some(libc::SIGKILL));
            notes.push(format!("blast: {name}: oom neighbour exit {exit:?} (oom kill observed: {killed})"));
        }
        rows.push(BlastRow {
            backend: name.clone(),
            neighbour: n,
            limited,
            victim_alone_s: alone,
            victim_with_neighbour_s: with,
            slowdown: with / alone,
            victim_ok: ok,
            neighbour_cpus: Some(cpus),
        });
    }
    Ok((rows, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases follow the declared capabilities and guest model, whatever the backend's name: a
    /// peer runtime with cgroup limits gets the oom case (the name-based rule gave it only to
    /// `container*`, `crun` and `runc`), a bare guest under any name loses the fork loop.
    #[test]
    fn cases_per_backend() {
        let dir = std::path::Path::new("/nonexistent");
        let all = crate::backend::registry::all(dir, dir);
        let get = |n: &str| all.iter().find(|b| b.name() == n).map(|b| cases(&b.info(), b.capabilities())).unwrap();
        let (p, notes) = get("process");
        assert!(p.iter().all(|(_, l)| !l));
        assert!(notes.iter().any(|n| n.contains("no limits")));
        let (c, _) = get("container");
        assert!(c.contains(&(Neighbour::Oom, true)));
        assert!(c.contains(&(Neighbour::ForkLoop, true)));
        let (m, notes) = get("microvm");
        assert!(notes.iter().any(|n| n.contains("faulting")));
        assert!(!m.iter().any(|(n, _)| *n == Neighbour::ForkLoop));
        let (l, _) = get("microvm-linux");
        assert!(l.contains(&(Neighbour::ForkLoop, true)) && !l.iter().any(|(n, _)| *n == Neighbour::Oom));

        let mut info = all[0].info();
        info.name = "runsc".into();
        info.model = results::IsolationModel::UserSpaceKernel;
        let caps = Capabilities { cgroup_limits: true, limits: true, linux_probes: true, ..Capabilities::default() };
        assert!(cases(&info, caps).0.contains(&(Neighbour::Oom, true)));
        (info.name, info.guest_model) = ("my-vm".into(), Some(GuestModel::Bare));
        let (v, notes) = cases(&info, Capabilities { limits: true, ..Capabilities::default() });
        assert!(!v.iter().any(|(n, _)| *n == Neighbour::ForkLoop || *n == Neighbour::Oom), "{v:?}");
        assert!(notes.iter().any(|n| n.contains("my-vm: fork-loop skipped")), "{notes:?}");
    }

    #[test]
    fn hogs_are_bounded() {
        let o = BlastOptions { hog_mib: 1 << 20, hog_secs: 1e9, fork_max: 1 << 20, ..Default::default() };
        let (s, _) = neighbour_spec(Neighbour::MemoryHog, true, &o, IsolationModel::Container);
        let get = |k: &str| s.env.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
        assert!(get("VMCT_HOG_MIB").parse::<u64>().unwrap() <= mem_available_mib().unwrap_or(2048) / 4 + 16);
        assert_eq!(get("VMCT_HOG_SECS"), "120");
        assert_eq!(s.pids_limit, Some(32));
        let (f, _) = neighbour_spec(Neighbour::ForkLoop, false, &o, IsolationModel::Container);
        assert!(f.env.iter().any(|(k, v)| k == "VMCT_HOG_PROCS" && v == "512"));
        assert_eq!(f.pids_limit, None);
    }

    /// The CPU hog's allotment is the same in every model: N vCPUs for a VM, a quota of N for a
    /// container, N hog threads everywhere, and the row records it.
    #[test]
    fn cpu_hog_neighbours_get_equal_allotments_in_every_model() {
        let o = BlastOptions { allotment_cpus: 2, limit_cpu: 1.0, ..Default::default() };
        for limited in [false, true] {
            let want = if limited { 1.0 } else { 2.0 };
            let threads = |s: &InstanceSpec| {
                s.env.iter().find(|(k, _)| k == "VMCT_HOG_THREADS").map(|(_, v)| v.parse::<f64>().unwrap())
            };
            let (vm, vm_cpus) = neighbour_spec(Neighbour::CpuHog, limited, &o, IsolationModel::Microvm);
            let (ct, ct_cpus) = neighbour_spec(Neighbour::CpuHog, limited, &o, IsolationModel::Container);
            let (pr, pr_cpus) = neighbour_spec(Neighbour::CpuHog, limited, &o, IsolationModel::Process);
            assert_eq!((vm_cpus, ct_cpus, pr_cpus), (want, want, want), "limited {limited}");
            assert_eq!(f64::from(vm.vcpus), want);
            assert_eq!(vm.cpu_quota, None, "a VM's CPU share is its vCPUs");
            assert_eq!(ct.cpu_quota, Some(want));
            assert_eq!(pr.cpu_quota, None, "the process backend applies no quota");
            for s in [&vm, &ct, &pr] {
                assert_eq!(threads(s), Some(want), "limited {limited}");
            }
        }
        // A fractional quota has no VM equivalent: the VM gets the next whole vCPU and says so.
        let half = BlastOptions { limit_cpu: 0.5, ..o };
        assert_eq!(neighbour_spec(Neighbour::CpuHog, true, &half, IsolationModel::Microvm).1, 1.0);
        assert_eq!(neighbour_spec(Neighbour::CpuHog, true, &half, IsolationModel::Container).1, 0.5);
    }
}
