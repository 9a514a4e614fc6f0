#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! `vmct gc --dry-run` lists exactly what `vmct gc` then removes, for runs killed with SIGKILL (no Drop
//! guard, no signal handler) at several points of their life, and the host is clean of the killed run's
//! objects afterwards. Only objects of the killed runs are compared: other runs (other engineers, CI
//! jobs) may leave or remove their own at the same time. The killed vmct and both gc runs are children of
//! this test process, so they see the same cgroups.
mod common;

use common::{kernel_objects, vmct};
use harness::privileged::{gate, Need};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// When to kill the run.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// As soon as the first kernel object or state dir of its instance exists (mid-launch).
    FirstObject,
    /// The `n`th poll after the first object (later in the launch: rootfs, mounts, init).
    Launching(u32),
    /// Once it printed its `ready` line (the instance runs).
    Ready,
}

/// gc's lines that are about the vmct process `pid`.
fn lines_of(json: &[u8], pid: u32) -> (Vec<String>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let of = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .filter(|l| {
                // Objects named for the pid (instances, probe dirs, VMM jails), or processes it owned.
                l.ends_with(&format!("of dead vmct {pid}"))
                    || l.split_whitespace().any(|w| w.rsplit('/').next().is_some_and(|n| common::is_of(n, pid)))
            })
            .map(String::from)
            .collect()
    };
    (of("removed"), of("errors"))
}

/// Start `vmct run` on `backend` holding an idle instance, SIGKILL it at `point`, and return its pid.
/// `marker` (a unique `--log-dir`) finds copies of the killed vmct (a cloned init not yet exec'd).
fn killed_run(backend: &str, point: Point, marker: &str) -> u32 {
    let mut child = Command::new(vmct())
        .args(["run", "--backend", backend, "--workload", "idle", "--hold-for", "20s", "--log-dir", marker])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    match point {
        Point::FirstObject | Point::Launching(_) => {
            let polls = if let Point::Launching(n) = point { n } else { 0 };
            let deadline = Instant::now() + Duration::from_secs(30);
            while kernel_objects(pid).is_empty() {
                assert!(Instant::now() < deadline, "{backend}: no instance object appeared");
                assert!(child.try_wait().unwrap().is_none(), "{backend}: vmct run ended early");
            }
            for _ in 0..polls {
                let _ = kernel_objects(pid);
            }
        }
        Point::Ready => {
            let mut out = child.stdout.take().unwrap();
            let mut seen = Vec::new();
            let mut b = [0u8; 512];
            while !String::from_utf8_lossy(&seen).contains("ready ") {
                let n = out.read(&mut b).unwrap();
                assert!(n > 0, "{backend}: vmct run ended before ready: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&b[..n]);
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Let what dies with its parent (PR_SET_PDEATHSIG) die, so the two gc runs see the same host.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut before = leftovers_now(pid);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = leftovers_now(pid);
        if now == before || Instant::now() > deadline {
            return pid;
        }
        before = now;
    }
}

fn leftovers_now(pid: u32) -> Vec<String> {
    let mut l = common::owned_processes(pid);
    l.extend(kernel_objects(pid));
    l
}

fn gc(dry_run: bool) -> Vec<u8> {
    let mut cmd = Command::new(vmct());
    cmd.args(["gc", "--json"]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.code().is_some(), "{out:?}");
    out.stdout
}

#[test]
fn gc_dry_run_lists_what_gc_removes_for_runs_killed_at_several_points() {
    if !gate("gc_dry_run_lists_what_gc_removes_for_runs_killed_at_several_points", &[Need::Root]) {
        return;
    }
    let mut cases: Vec<(&str, Point)> = vec![
        ("container", Point::Ready),
        ("container", Point::FirstObject),
        ("container", Point::FirstObject),
        ("container", Point::Launching(1)),
        ("container", Point::Launching(2)),
        ("container", Point::Launching(3)),
        ("container", Point::Launching(5)),
        ("container-userns", Point::FirstObject),
        ("container-userns", Point::FirstObject),
        ("container-userns", Point::Launching(2)),
        ("container-userns", Point::Ready),
        ("process", Point::Ready),
    ];
    if gate("gc_dry_run_lists_what_gc_removes_for_runs_killed_at_several_points (microvm)", &[Need::Kvm]) {
        cases.push(("microvm", Point::Ready));
    }
    let logs = tempfile::tempdir().unwrap();
    for (i, (backend, point)) in cases.into_iter().enumerate() {
        let marker = logs.path().join(i.to_string()).to_string_lossy().into_owned();
        let pid = killed_run(backend, point, &marker);
        let left = leftovers_now(pid);
        let (listed, list_errors) = lines_of(&gc(true), pid);
        let (removed, errors) = lines_of(&gc(false), pid);
        let case = format!("{backend} killed at {point:?} (vmct {pid}): left {left:#?}");
        assert!(list_errors.is_empty() && errors.is_empty(), "{case}\n{list_errors:?}\n{errors:?}");
        assert_eq!(listed, removed, "{case}: the dry run and the real run disagree");
        assert!(listed.len() >= left.len(), "{case}: the dry run missed some of them: {listed:#?}");
        if matches!(point, Point::Ready) && backend.starts_with("container") {
            // The case of issue 17: a killed container leaves at least its (empty) memory cgroup.
            assert!(listed.iter().any(|l| l.starts_with("cgroup ")), "{case}: {listed:#?}");
        }
        eprintln!("{backend} killed at {point:?}: gc listed and removed {listed:?}");
        let after = common::leftovers_marked(pid, Some(&marker));
        assert!(after.is_empty(), "{case}: still there after gc: {after:#?}");
    }
}
