//! `vmct run --image NAME [--ready RULE] [-- CMD ARGS]`: one instance of an image's own process
//! (see `crate::images::run`), its launch-to-ready under the rule, and how it ended.
use super::run_cmd::RunArgs;
use super::UsageError;
use crate::backend::{registry, Backend, BackendError, Event, InstanceSpec};
use crate::images::ready::Readiness;
use crate::images::run::{ImageBackend, ImageRun, ImageSupport};
use crate::units::{human_bytes, human_secs, parse_cpus, parse_duration, parse_mem, parse_pids};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use workloads::scenario::Scenario;

/// The rule when `--ready` is not given: the process runs to completion, as `docker run` does.
pub const DEFAULT_RULE: &str = "exit";

#[derive(serde::Serialize)]
struct ImageRunReport {
    backend: String,
    id: String,
    image: String,
    digest: Option<String>,
    argv: Vec<String>,
    ready_rule: String,
    launch_to_ready_s: f64,
    phases: Vec<(String, f64)>,
    rootdisk: Option<crate::images::rootdisk::RootDisk>,
    exit_status: Option<i32>,
    exit_signal: Option<i32>,
    error: Option<String>,
}

/// The backend to run an image on: the process baseline runs no image, so `--backend process`
/// (the default of `vmct run`) means our container here.
fn backend_name(a: &RunArgs) -> String {
    match (a.backend.as_str(), a.guest) {
        ("process", _) => "container".into(),
        ("microvm", Some(results::GuestModel::Linux)) => "microvm-linux".into(),
        (b, _) => b.into(),
    }
}

/// Run the image's process; `a.image` is set and no `--workload` was given.
pub fn run(a: &RunArgs, image: &str) -> anyhow::Result<ExitCode> {
    let rule_text = a.ready.clone().unwrap_or_else(|| DEFAULT_RULE.into());
    let rule = Readiness::parse(&rule_text).map_err(|e| UsageError(e.to_string()))?;
    let timeout = parse_duration(&a.timeout).map_err(|e| UsageError(format!("--timeout: {e}")))?;
    let hold_for = parse_duration(&a.hold_for).map_err(|e| UsageError(format!("--hold-for: {e}")))?;
    let mem = a.mem.as_deref().map(parse_mem).transpose().map_err(|e| UsageError(format!("--mem: {e}")))?;
    let cpus = a.cpus.as_deref().map(parse_cpus).transpose().map_err(|e| UsageError(format!("--cpus: {e}")))?;
    let pids = a.pids.as_deref().map(parse_pids).transpose().map_err(|e| UsageError(format!("--pids: {e}")))?;
    let rec = crate::images::load(image).map_err(|e| UsageError(e.to_string()))?;
    let (workload, work_dir) = super::workload_and_workdir()?;
    let run = ImageRun::new(rec, &a.command, rule, &workload).map_err(|e| UsageError(e.to_string()))?;
    let run = Arc::new(run);
    let name = backend_name(a);
    let all = registry::all_with_peers(&workload, &work_dir, &a.peer);
    let inner = registry::select(all, std::slice::from_ref(&name)).map_err(UsageError)?.remove(0);
    let support = crate::images::run::support(&inner.info());
    if let ImageSupport::None(why) = support {
        // Said plainly, not a failure: this model has no OS to run an image in.
        println!("{name}: {why}");
        return Ok(ExitCode::SUCCESS);
    }
    let backend = ImageBackend::new(inner, run.clone());
    let info = backend.info();
    if !info.available {
        anyhow::bail!("backend {} is not available here: {}", info.name, info.reason.unwrap_or_default());
    }
    let mut spec = InstanceSpec::new(crate::experiments::next_id(), Scenario::Ready);
    spec.mem_limit_bytes = mem;
    spec.cpu_quota = cpus.flatten();
    spec.pids_limit = pids.flatten();
    spec.vcpus = a.vcpus;
    backend.check_spec(&spec).map_err(|e| UsageError(format!("{}: {e}", info.name)))?;
    spec.log_dir = Some(a.log_dir.clone().unwrap_or_else(crate::logs::dir));
    if support == ImageSupport::RootDisk {
        let d = run.rootdisk().map_err(|e| anyhow::anyhow!(e))?;
        if !a.json {
            println!(
                "root disk {} {} ({} allocated) {} {}",
                d.fs,
                human_bytes(d.size_bytes as f64),
                human_bytes(d.bytes as f64),
                if d.cached { "cached, built in" } else { "built in" },
                human_secs(d.build_s)
            );
        }
    }
    // Containers record the layers they mount, so no image removal deletes them underneath.
    let _in_use = match support {
        ImageSupport::Layers => Some(
            crate::images::usage::acquire(&crate::images::usage::UsageRecord::new(
                &spec.id,
                Some(&run.record),
                run.launch.layers.clone(),
            ))
            .map_err(|e| UsageError(e.to_string()))?,
        ),
        _ => None,
    };
    let mut inst = backend.launch(&spec)?;
    let ready = match inst.wait_ready(timeout) {
        Err(BackendError::Interrupted(_)) => {
            let _ = inst.stop(Duration::ZERO);
            return Ok(ExitCode::from(crate::interrupt::exit_code(crate::interrupt::signal().unwrap_or(libc::SIGINT))));
        }
        r => r?,
    };
    let mut rep = ImageRunReport {
        backend: name.clone(),
        id: spec.id.clone(),
        image: run.record.name.clone(),
        digest: run.record.digest.clone(),
        argv: run.launch.argv.clone(),
        ready_rule: rule_text.clone(),
        launch_to_ready_s: ready.launch_to_ready_s(),
        phases: ready.phases.iter().map(|p| (p.name.clone(), p.duration_s)).collect(),
        rootdisk: run.built_rootdisk().cloned(),
        exit_status: None,
        exit_signal: None,
        error: None,
    };
    if !a.json {
        println!("backend   {name}  (instance {})", spec.id);
        println!("image     {}  argv {:?}", run.record.name, run.launch.argv);
        let ph: Vec<String> = ready.phases.iter().map(|p| format!("{} {}", p.name, human_secs(p.duration_s))).collect();
        println!("ready     {}  (rule {rule_text}; {})", human_secs(rep.launch_to_ready_s), ph.join(", "));
    }
    if run.launch.ready.as_ref().is_some_and(Readiness::holds_alive) {
        let until = std::time::Instant::now() + hold_for;
        while std::time::Instant::now() < until && !crate::interrupt::requested() {
            std::thread::sleep(crate::interrupt::POLL_SLICE);
        }
    } else {
        // The exit rule: the instance has ended; its `done` carries the status.
        while let Ok(Some((_, e))) = inst.next_event(timeout) {
            if let Event::Done { status } = e {
                rep.exit_status = Some(status);
                break;
            }
        }
    }
    let exit = inst.stop(Duration::from_secs(5))?;
    rep.exit_status = rep.exit_status.or(exit.status);
    rep.exit_signal = exit.signal;
    rep.error = exit.error.clone();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        match (&rep.error, rep.exit_status, rep.exit_signal) {
            (Some(e), _, _) => println!("ended     {e}"),
            (_, Some(s), _) => println!("exit      status {s}"),
            (_, _, Some(sig)) => println!("ended     killed by signal {sig}"),
            _ => println!("ended"),
        }
    }
    let held = run.launch.ready.as_ref().is_some_and(Readiness::holds_alive);
    // A held process is stopped by vmct: how it ends then is not a failure.
    let ok = rep.error.is_none() && (held || rep.exit_status == Some(0));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
