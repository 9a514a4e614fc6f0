//! `vmct run`: one instance, its messages and timings.
use super::UsageError;
use crate::backend::{registry, BackendError, Event, Instance, InstanceSpec};
use crate::units::{human_secs, parse_cpus, parse_duration, parse_mem, parse_pids};
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;
use workloads::scenario::Scenario;

/// Longest `vmct run` spends booting the linux guest as far as a host without a usable KVM allows, to
/// say where it stops.
pub const PARTIAL_BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `vmct run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vmct run --image web --ready tcp:8080 --hold-for 5s\n  vmct run --image tools --backend qemu-tcg -- /bin/sh -c 'exit 3'\n  vmct run --backend process --workload cpu --json\n  vmct run --backend microvm --workload idle --hold-mib 64 --hold-for 5s\n  vmct run --backend container --workload 'mem --mib 32'"
)]
pub struct RunArgs {
    /// Backend: process, microvm, container, container-privileged, container-userns, crun, runc, runsc.
    #[arg(long, short, default_value = "process")]
    pub backend: String,
    /// Workload: ready, idle, cpu, mem, syscall, io, probe (flags may follow in quotes: 'cpu --iters 5');
    /// default ready. With --image and no --workload, the image's own process runs instead.
    #[arg(long, short)]
    pub workload: Option<String>,
    /// cpu: SHA-256 block compressions.
    #[arg(long, allow_hyphen_values = true)]
    pub iters: Option<String>,
    /// mem/io: MiB to touch or write.
    #[arg(long, allow_hyphen_values = true)]
    pub mib: Option<String>,
    /// idle: MiB to touch and hold.
    #[arg(long, allow_hyphen_values = true)]
    pub hold_mib: Option<String>,
    /// syscall: round trips.
    #[arg(long, allow_hyphen_values = true)]
    pub n: Option<String>,
    /// Memory limit (containers) or guest memory (microVMs: a multiple of 2 MiB from 4 MiB to 64 GiB),
    /// e.g. 256MiB or 256M (powers of 1024; 256MB is 256 x 10^6 bytes); at least 1 MiB.
    #[arg(long)]
    pub mem: Option<String>,
    /// CPU quota (containers) in CPUs from 0.01 to the host's CPUs, e.g. 0.5; 0 = no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Maximum processes (containers), 1 to 4194304; -1, 0, max or unlimited = no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub pids: Option<String>,
    /// vCPUs (microVMs), 1 to 256.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// How long to keep an `idle` instance alive after it is ready (Ctrl-C stops it early).
    #[arg(long, default_value = "0s")]
    pub hold_for: String,
    /// Give up if the instance has not finished after this long.
    #[arg(long, default_value = "120s")]
    pub timeout: String,
    /// microVM guest model: bare (default) or linux (same as `--backend microvm-linux`).
    #[arg(long)]
    pub guest: Option<results::GuestModel>,
    /// Run this image (see `vmct images`): its own process (Entrypoint ++ the command after `--`, else
    /// Cmd) with its environment, working directory and user, on a container backend (the default here)
    /// or a linux guest (qemu-tcg, microvm-linux). With --workload, the vmct workload runs in the
    /// image's layers instead (our container backends).
    #[arg(long)]
    pub image: Option<String>,
    /// With --image: when the image's process counts as ready: tcp:PORT, log:REGEX or exit (default).
    #[arg(long, value_name = "RULE", requires = "image")]
    pub ready: Option<String>,
    /// With --image: the command and arguments, replacing the image's Cmd.
    #[arg(last = true, value_name = "CMD ARGS", requires = "image")]
    pub command: Vec<String>,
    /// Write the instance's output to DIR/<id>.log (default: vmct's log directory, read by `vmct logs`).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A peer VMM to measure beside ours: qemu=PATH or firecracker=PATH (boots the linux guest model).
    #[arg(long, value_name = "NAME=PATH", value_parser = crate::backend::vmm_peers::parse_peer)]
    pub peer: Vec<crate::backend::vmm_peers::Peer>,
}

/// Scenario words from `--workload` plus the per-scenario flags.
pub fn scenario_of(a: &RunArgs) -> Result<Scenario, UsageError> {
    let mut words: Vec<String> =
        a.workload.as_deref().unwrap_or("ready").split_whitespace().map(String::from).collect();
    for (flag, v) in [("--iters", &a.iters), ("--mib", &a.mib), ("--hold-mib", &a.hold_mib), ("--n", &a.n)] {
        if let Some(v) = v {
            words.push(flag.into());
            words.push(v.clone());
        }
    }
    Scenario::parse(words.iter().map(String::as_str)).map_err(|e| UsageError(e.to_string()))
}

#[derive(serde::Serialize)]
struct RunReport {
    backend: String,
    id: String,
    workload: String,
    launch_to_ready_s: f64,
    /// Host CLOCK_MONOTONIC when the launch began, ns (a caller timing this process subtracts its start).
    launched_mono_ns: u64,
    phases: Vec<(String, f64)>,
    results: Vec<serde_json::Value>,
    probes: Vec<serde_json::Value>,
    unsupported: Vec<serde_json::Value>,
    failed: Vec<serde_json::Value>,
    stats: serde_json::Value,
    exit_status: Option<i32>,
    exit_signal: Option<i32>,
    oom_killed: bool,
    error: Option<String>,
}

/// Run the command.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    if let (Some(image), None) = (&a.image, &a.workload) {
        return super::run_image::run(&a, image);
    }
    if a.ready.is_some() || !a.command.is_empty() {
        return Err(
            UsageError("--ready and a command after `--` run an image's own process: drop --workload".into()).into()
        );
    }
    let scenario = scenario_of(&a)?;
    let timeout = parse_duration(&a.timeout).map_err(|e| UsageError(format!("--timeout: {e}")))?;
    if timeout.is_zero() {
        return Err(UsageError(format!("--timeout: '{}' leaves no time to run; give more than 0s", a.timeout)).into());
    }
    let hold_for = parse_duration(&a.hold_for).map_err(|e| UsageError(format!("--hold-for: {e}")))?;
    let mem = a.mem.as_deref().map(parse_mem).transpose().map_err(|e| UsageError(format!("--mem: {e}")))?;
    let cpus = a.cpus.as_deref().map(parse_cpus).transpose().map_err(|e| UsageError(format!("--cpus: {e}")))?;
    let pids = a.pids.as_deref().map(parse_pids).transpose().map_err(|e| UsageError(format!("--pids: {e}")))?;
    let (workload, work_dir) = super::workload_and_workdir()?;
    let all = registry::all_with_peers(&workload, &work_dir, &a.peer);
    let name = backend_for(&a.backend, a.guest)?;
    let backend = registry::select(all, std::slice::from_ref(&name)).map_err(UsageError)?.remove(0);
    let info = backend.info();
    if !info.available && info.name == "microvm-linux" && results::KvmFlavour::detect() == results::KvmFlavour::KvmPvm {
        // Boot as far as this host allows and measure it, then say plainly why userspace cannot run.
        let fb = crate::backend::microvm_linux::probe(None, timeout.min(PARTIAL_BOOT_TIMEOUT))?;
        println!("{}", fb.summary());
        return Ok(ExitCode::from(1));
    }
    let mut spec = InstanceSpec::new(crate::experiments::next_id(), scenario);
    spec.mem_limit_bytes = mem;
    spec.cpu_quota = cpus.flatten();
    spec.pids_limit = pids.flatten();
    spec.vcpus = a.vcpus;
    // Every limit is applied as given on this backend, or refused here naming the valid range (before the
    // availability check: a backend option the user got wrong is a usage error, not "unavailable").
    backend.check_spec(&spec).map_err(|e| UsageError(format!("{}: {e}", info.name)))?;
    if !info.available {
        anyhow::bail!("backend {} is not available here: {}", info.name, info.reason.unwrap_or_default());
    }
    spec.log_dir = Some(a.log_dir.clone().unwrap_or_else(crate::logs::dir));
    let mut record = crate::logs::LogRecord {
        id: spec.id.clone(),
        backend: name.clone(),
        workload: scenario.to_string(),
        owner_pid: std::process::id(),
        started_unix_s: crate::logs::unix_now(),
        ended_unix_s: None,
        exit: None,
    };
    if a.log_dir.is_none() {
        let _ = record.save();
    }

    let ours = crate::backend::container::by_name(&a.backend, &workload);
    let image = match &a.image {
        None => None,
        Some(name) => {
            if ours.is_none() {
                return Err(UsageError(format!(
                    "--image needs a container backend (container, container-privileged, container-userns), not '{}'",
                    a.backend
                ))
                .into());
            }
            Some(crate::images::load(name).map_err(|e| UsageError(e.to_string()))?)
        }
    };
    // Our containers record the layers they mount for their lifetime, so no image removal deletes
    // them underneath (and `vmct commit` knows what the container runs).
    let layers = match (&image, &ours) {
        (Some(i), _) => Some(i.layers.clone()),
        (None, Some(cb)) => cb.base_layers().ok(),
        (None, None) => None,
    };
    let _in_use = match layers {
        Some(l) => Some(
            crate::images::usage::acquire(&crate::images::usage::UsageRecord::new(&spec.id, image.as_ref(), l))
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => None,
    };
    let mut inst = match (&image, &ours) {
        (Some(i), Some(cb)) => cb.launch_layers(i.layers.clone(), &spec, crate::clock::mono_ns()),
        _ => backend.launch(&spec),
    }
    .with_context(|| format!("launching {} on {}", scenario, name))?;
    let ready = match inst.wait_ready(timeout) {
        Err(BackendError::Interrupted(_)) => return stopped_by_signal(inst.as_mut(), &mut record, a.log_dir.is_none()),
        r => r?,
    };
    let mut rep = RunReport {
        backend: name.clone(),
        id: spec.id.clone(),
        workload: scenario.to_string(),
        launch_to_ready_s: ready.launch_to_ready_s(),
        launched_mono_ns: ready.launched_ns,
        phases: ready.phases.iter().map(|p| (p.name.clone(), p.duration_s)).collect(),
        results: vec![],
        probes: vec![],
        unsupported: vec![],
        failed: vec![],
        stats: serde_json::Value::Null,
        exit_status: None,
        exit_signal: None,
        oom_killed: false,
        error: None,
    };
    if !a.json {
        println!("backend   {}  (instance {})", name, spec.id);
        println!("workload  {scenario}");
        let ph: Vec<String> = ready.phases.iter().map(|p| format!("{} {}", p.name, human_secs(p.duration_s))).collect();
        println!("ready     {}  ({})", human_secs(rep.launch_to_ready_s), ph.join(", "));
    }
    let stats = inst.stats();
    rep.stats = serde_json::json!({
        "rss_bytes": stats.rss_bytes, "pss_bytes": stats.pss_bytes, "guest_mem_bytes": stats.guest_mem_bytes,
        "vmm_overhead_bytes": stats.vmm_overhead_bytes, "cgroup_usage_bytes": stats.cgroup_usage_bytes,
    });
    if matches!(scenario, Scenario::Idle { .. }) {
        if !a.json {
            let f = |v: Option<u64>| v.map(|b| crate::units::human_bytes(b as f64)).unwrap_or_else(|| "-".into());
            println!(
                "memory    rss {}  pss {}  guest {}  vmm overhead {}  cgroup {}",
                f(stats.rss_bytes),
                f(stats.pss_bytes),
                f(stats.guest_mem_bytes),
                f(stats.vmm_overhead_bytes),
                f(stats.cgroup_usage_bytes)
            );
        }
        let until = std::time::Instant::now() + hold_for;
        while std::time::Instant::now() < until && !crate::interrupt::requested() {
            std::thread::sleep(crate::interrupt::POLL_SLICE);
        }
        if crate::interrupt::requested() {
            return stopped_by_signal(inst.as_mut(), &mut record, a.log_dir.is_none());
        }
    } else {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next = match inst.next_event(left) {
                Err(BackendError::Interrupted(_)) => {
                    return stopped_by_signal(inst.as_mut(), &mut record, a.log_dir.is_none())
                }
                r => r?,
            };
            let Some((ns, e)) = next else { break };
            let t = crate::clock::ns_to_s(ns.saturating_sub(ready.launched_ns));
            match e {
                Event::Result { name, value, unit } => {
                    if !a.json {
                        println!("result    {name} = {value:.6e} {unit}   (at +{})", human_secs(t));
                    }
                    rep.results.push(serde_json::json!({"name": name, "value": value, "unit": unit, "at_s": t}));
                }
                Event::Probe { id, outcome, detail } => {
                    if !a.json {
                        println!("probe     {id:<28} {:<8} {detail}", outcome.as_str());
                    }
                    rep.probes.push(serde_json::json!({"id": id, "outcome": outcome.as_str(), "detail": detail}));
                }
                Event::Unsupported { what, reason } => {
                    if !a.json {
                        println!("unsupported {what}: {reason}");
                    }
                    rep.unsupported.push(serde_json::json!({"what": what, "reason": reason}));
                }
                Event::Failed { what, reason } => {
                    if !a.json {
                        println!("failed    {what}: {reason}");
                    }
                    rep.failed.push(serde_json::json!({"what": what, "reason": reason}));
                }
                Event::Done { status } => {
                    rep.exit_status = Some(status);
                    break;
                }
                Event::Ready | Event::Phase { .. } => {}
            }
        }
    }
    if crate::interrupt::requested() {
        // Ctrl-C on a terminal also reaches the instance (same process group): it may have ended first.
        return stopped_by_signal(inst.as_mut(), &mut record, a.log_dir.is_none());
    }
    let exit = inst.stop(crate::backend::STOP_GRACE)?;
    rep.exit_status = rep.exit_status.or(exit.status);
    rep.exit_signal = exit.signal;
    rep.oom_killed = exit.oom_killed;
    rep.error = exit.error.clone();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        match (&exit.error, exit.oom_killed, rep.exit_status, exit.signal) {
            (Some(err), _, _, _) => println!("ended     {err}"),
            (_, true, _, _) => println!("ended     OOM-killed by the memory limit"),
            (_, _, Some(s), _) => println!("done      status {s}"),
            (_, _, _, Some(sig)) => println!("ended     killed by signal {sig}"),
            _ => println!("ended"),
        }
    }
    if a.log_dir.is_none() {
        record.ended_unix_s = Some(crate::logs::unix_now());
        record.exit = Some(match (&exit.error, exit.oom_killed, rep.exit_status, exit.signal) {
            (Some(e), _, _, _) => e.clone(),
            (_, true, _, _) => "oom-killed".into(),
            (_, _, Some(s), _) => format!("exited {s}"),
            (_, _, _, Some(sig)) => format!("signal {sig}"),
            _ => "ended".into(),
        });
        let _ = record.save();
    }
    let ok = exit.error.is_none() && !exit.oom_killed && rep.exit_status.unwrap_or(0) == 0 && rep.failed.is_empty();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A signal asked vmct to stop: stop the instance at once (no grace: the workload may be in the middle of
/// a long computation, or a vCPU in guest code), say so, and exit 128 + signal like a shell would.
fn stopped_by_signal(
    inst: &mut dyn Instance,
    record: &mut crate::logs::LogRecord,
    save_record: bool,
) -> anyhow::Result<ExitCode> {
    let sig = crate::interrupt::signal().unwrap_or(libc::SIGINT);
    let name = crate::interrupt::signal_name(sig);
    let t0 = std::time::Instant::now();
    let stopped = inst.stop(Duration::ZERO);
    let took = t0.elapsed().as_secs_f64();
    crate::interrupt::set_reported();
    match &stopped {
        Ok(_) => eprintln!("interrupted by {name}: instance {} stopped and removed in {}", inst.id(), human_secs(took)),
        Err(e) => eprintln!("interrupted by {name}: stopping instance {} failed: {e}", inst.id()),
    }
    if save_record {
        record.ended_unix_s = Some(crate::logs::unix_now());
        record.exit = Some(format!("interrupted by {name}"));
        let _ = record.save();
    }
    stopped?;
    Ok(ExitCode::from(crate::interrupt::exit_code(sig)))
}

/// The backend `--backend NAME --guest MODEL` names: our microVM with that guest model, or NAME itself
/// without `--guest`.
fn backend_for(backend: &str, guest: Option<results::GuestModel>) -> Result<String, UsageError> {
    use crate::backend::{microvm, microvm_linux};
    use results::GuestModel;
    match (backend, guest) {
        (_, None) => Ok(backend.to_string()),
        (microvm::NAME | microvm_linux::NAME, Some(GuestModel::Bare)) => Ok(microvm::NAME.to_string()),
        (microvm::NAME | microvm_linux::NAME, Some(GuestModel::Linux)) => Ok(microvm_linux::NAME.to_string()),
        (b, Some(_)) => Err(UsageError(format!("--guest applies to the microvm backend, not '{b}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::GuestModel;

    /// `--guest` picks the guest model whichever microVM name came with it (`microvm-linux --guest bare`
    /// used to run the linux guest).
    #[test]
    fn guest_picks_the_microvm_backend() {
        let b = |n: &str, g| backend_for(n, g).map_err(|e| e.0);
        assert_eq!(b("microvm", Some(GuestModel::Linux)).unwrap(), "microvm-linux");
        assert_eq!(b("microvm-linux", Some(GuestModel::Bare)).unwrap(), "microvm");
        assert_eq!(b("microvm-linux", None).unwrap(), "microvm-linux");
        assert_eq!(b("crun", None).unwrap(), "crun");
        assert!(b("crun", Some(GuestModel::Linux)).unwrap_err().contains("not 'crun'"));
    }
}
