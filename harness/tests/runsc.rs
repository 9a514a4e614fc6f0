#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! gVisor's runsc as a peer (issue 20): it reaches ready on the platform detected here, answers every
//! container probe, records the syscall scenario's ratio to the process baseline, and leaves nothing of
//! its own run (state dir, cgroup, Sentry/Gofer process). Bad input: runsc missing, a platform it does
//! not offer. Needs root and Debian's `runsc` (skips without them unless `VMCT_REQUIRE_PRIVILEGED=1`).
mod common;

use harness::backend::{collect_events, Backend, Event, InstanceSpec};
use harness::privileged::{gate, Need};
use std::time::Duration;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(60);

/// The runsc backend, or None (skip) when it is unavailable and skipping is allowed.
fn runsc(test: &str) -> Option<Box<dyn Backend>> {
    if !gate(test, &[Need::Root]) {
        return None;
    }
    common::peer("runsc")
}

fn id(tag: &str) -> String {
    format!("vmct-{}-runsc-{tag}", std::process::id())
}

#[test]
fn runsc_reaches_ready_on_the_detected_platform() {
    let Some(b) = runsc("runsc_reaches_ready_on_the_detected_platform") else { return };
    let info = b.info();
    assert_eq!((info.kind.as_str(), info.model.as_str()), ("peer", "user-space-kernel"));
    let version = info.version.unwrap_or_default();
    assert!(version.starts_with("runsc version") && version.contains("; platform "), "{version}");
    let mut i = b.launch(&InstanceSpec::new(id("ready"), Scenario::Ready)).unwrap();
    let r = i.wait_ready(T).unwrap();
    assert!(r.ready_ns > r.launched_ns);
    let ev = collect_events(i.as_mut(), T).unwrap();
    assert_eq!(ev.last(), Some(&Event::Done { status: 0 }), "{ev:?}");
    assert_eq!(i.stop(T).unwrap().status, Some(0));
    // A live sandbox's memory: the split into the workload's memory (the Sentry's memory file) and the
    // sandbox's own is read, and so is its cgroup.
    let mut i = b.launch(&InstanceSpec::new(id("idle"), Scenario::Idle { hold_mib: 4 })).unwrap();
    i.wait_ready(T).unwrap();
    let s = i.stats();
    assert!(s.guest_mem_bytes.is_some_and(|b| b > 0) && s.vmm_overhead_bytes.is_some_and(|b| b > 0), "{s:?}");
    assert!(s.rss_bytes.unwrap_or(0) > 0 && s.cgroup_usage_bytes.is_some(), "{s:?}");
    i.stop(T).unwrap();
}

#[test]
fn a_probe_run_returns_every_container_probe_id() {
    let Some(b) = runsc("a_probe_run_returns_every_container_probe_id") else { return };
    let canaries = harness::isolation::canary::Canaries::plant().unwrap();
    let mut spec = InstanceSpec::new(id("probe"), Scenario::Probe);
    spec.env.extend(canaries.env());
    let mut i = b.launch(&spec).unwrap();
    i.wait_ready(T).unwrap();
    let ev = collect_events(i.as_mut(), T).unwrap();
    i.stop(T).unwrap();
    drop(canaries);
    let got: Vec<&str> =
        ev.iter().filter_map(|e| if let Event::Probe { id, .. } = e { Some(id.as_str()) } else { None }).collect();
    let missing: Vec<&str> = workloads::probe_ids::catalogue().filter(|p| !got.contains(p)).collect();
    assert!(missing.is_empty(), "runsc did not report {missing:?}; it reported {got:?}");
    // The attack surface read from this run: layer (b) from runsc itself, (c) from the live Sentry.
    let s = b.attack_surface();
    let u = s.user_kernel.expect("runsc declares a user-space kernel");
    assert!(u.syscalls_implemented.is_some_and(|n| n > 0), "{u:?}");
    assert!(
        s.supervisor_note.contains("measured from the live process's seccomp filter"),
        "the Sentry's filter was read: {}",
        s.supervisor_note
    );
    eprintln!("runsc layer (c): {:?}: {}", s.supervisor_syscalls_allowed, s.supervisor_note);
    assert!(s.supervisor_syscalls_allowed.is_some_and(|n| n < harness::backend::surface::unfiltered_syscalls()));
}

#[test]
fn the_syscall_scenario_records_a_ratio_to_the_process_baseline() {
    let Some(b) = runsc("the_syscall_scenario_records_a_ratio_to_the_process_baseline") else { return };
    let (w, work) = (harness::artifacts::workload_path().unwrap(), tempfile::tempdir().unwrap());
    let process = harness::backend::process::ProcessBackend::new(w, work.path().to_path_buf());
    let plan = harness::experiments::overhead::OverheadPlan {
        scenarios: vec![Scenario::Syscall { n: 2000 }],
        runs: 1,
        timeout: T,
    };
    let quiet = harness::progress::Mode::Quiet;
    let mut rows = harness::experiments::overhead::run(&process, &plan, quiet).unwrap();
    rows.extend(harness::experiments::overhead::run(b.as_ref(), &plan, quiet).unwrap());
    harness::experiments::overhead::add_ratios(&mut rows, "process");
    let r = rows.iter().find(|r| r.backend == "runsc" && r.scenario == "syscall").expect("a runsc syscall row");
    let ratio = r.ratio_to_process.unwrap_or_else(|| panic!("no ratio: {r:?}"));
    assert!(ratio.is_finite() && ratio > 0.0, "{r:?}");
}

#[test]
fn cleanup_leaves_no_runsc_state_cgroup_or_process() {
    let Some(_) = runsc("cleanup_leaves_no_runsc_state_cgroup_or_process") else { return };
    let out = std::process::Command::new(common::vmct())
        .args(["run", "--backend", "runsc", "--workload", "idle", "--hold-mib", "4", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inst = v["instance"].as_str().or_else(|| v["id"].as_str()).unwrap_or_default().to_string();
    assert!(inst.starts_with("vmct-"), "instance id in {v}");
    // vmct's own leftovers (processes carrying its owner variable, cgroups, state dirs, mounts) ...
    let pid: u32 = inst.split('-').nth(1).unwrap().parse().unwrap();
    assert_eq!(common::leftovers(pid), Vec::<String>::new());
    // ... and runsc's: a Sentry or Gofer whose --root is this instance's state dir, any cgroup named after it.
    let root = format!("--root={}/{inst}/state", container::DEFAULT_STATE_ROOT);
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).unwrap_or_default().split(|b| *b == 0).any(|a| a == root.as_bytes())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(procs.is_empty(), "runsc processes left: {procs:?}");
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .flat_map(|h| walk(&h.path(), 4))
        .filter(|p| p.ends_with(&inst))
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// Directories under `dir` down to `depth` levels, as strings.
fn walk(dir: &std::path::Path, depth: u32) -> Vec<String> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path().display().to_string());
            out.extend(walk(&e.path(), depth - 1));
        }
    }
    out
}

#[test]
fn runsc_missing_is_unavailable_naming_the_debian_package() {
    if !gate("runsc_missing_is_unavailable_naming_the_debian_package", &[Need::Root]) {
        return;
    }
    let out = std::process::Command::new(common::vmct())
        .args(["run", "--backend", "runsc"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("runsc not found") && err.contains("Debian package runsc"), "{err}");
}

#[test]
fn a_platform_runsc_does_not_offer_is_a_usage_error_naming_those_it_offers() {
    let Some(_) = runsc("a_platform_runsc_does_not_offer_is_a_usage_error_naming_those_it_offers") else { return };
    let out = std::process::Command::new(common::vmct())
        .args(["run", "--backend", "runsc"])
        .env(harness::backend::runsc::PLATFORM_ENV, "bogus")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bogus") && err.contains("it offers: ") && err.contains("ptrace"), "{err}");
}

#[test]
fn gc_removes_the_sandbox_of_a_sigkilled_vmct() {
    let Some(_) = runsc("gc_removes_the_sandbox_of_a_sigkilled_vmct") else { return };
    let mut run = std::process::Command::new(common::vmct())
        .args(["run", "--backend", "runsc", "--workload", "idle", "--hold-for", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = run.id();
    let root = format!("--root={}/vmct-{pid}-0/state", container::DEFAULT_STATE_ROOT);
    let sandbox = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let c = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first() == Some(&&b"runsc-sandbox"[..]) && args.contains(&root.as_bytes())
            })
            .count()
    };
    let deadline = std::time::Instant::now() + T;
    while sandbox() == 0 {
        assert!(std::time::Instant::now() < deadline, "no Sentry appeared for {root}");
        assert!(run.try_wait().unwrap().is_none(), "vmct ended before its sandbox started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // `kill -9` of vmct and its runtime process (as a group kill would): no Drop guard and no runsc
    // cleanup runs, so runsc's state file, the cgroup and the bundle stay behind.
    let runtime: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    run.kill().unwrap();
    for p in runtime {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    run.wait().unwrap();
    // The Sentry and Gofer die with their runtime (runsc sets a parent-death signal); let that settle so
    // the dry run and the real run see the same host.
    let settle = std::time::Instant::now() + Duration::from_secs(3);
    while sandbox() > 0 && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!common::kernel_objects(pid).is_empty(), "the kill left nothing to collect");
    let gc = |dry: bool| {
        let mut c = std::process::Command::new(common::vmct());
        c.arg("gc");
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut mine: Vec<String> = text
            .lines()
            .filter(|l| l.contains(&format!("vmct-{pid}-")))
            .map(|l| l.trim_start_matches("would remove ").trim_start_matches("removed ").to_string())
            .collect();
        mine.sort();
        mine
    };
    let planned = gc(true);
    assert!(planned.iter().any(|l| l.starts_with("dir ")), "{planned:?}");
    assert_eq!(gc(false), planned, "the dry run lists what the real run removes");
    assert_eq!(sandbox(), 0, "the Sentry is gone");
    assert_eq!(common::leftovers(pid), Vec::<String>::new());
}
