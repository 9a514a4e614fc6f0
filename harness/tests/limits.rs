#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Limit flags (`--cpus`, `--mem`, `--pids`, `--vcpus`, durations) are applied exactly as given or refused
//! with exit 2 and the valid range; the unlimited spellings users know from Docker are accepted.
mod common;

use common::{kernel_objects, leftovers, vmct};
use harness::privileged::{gate, Need};
use std::io::Read;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(vmct()).arg("run").args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn out_of_range_limits_are_usage_errors_naming_the_valid_range() {
    let cases: [(&[&str], &str); 10] = [
        (&["--backend", "container", "--cpus", "0.0001"], "from 0.01 to"),
        (&["--backend", "container", "--cpus", "0.001"], "from 0.01 to"),
        (&["--backend", "container", "--cpus", "1000000"], "from 0.01 to"),
        (&["--backend", "container", "--pids", "99999999"], "from 1 to 4194304"),
        (&["--backend", "container", "--pids", "-2"], "from 1 to 4194304"),
        (&["--backend", "container", "--mem", "64Q"], "'64Q'"),
        (&["--backend", "container", "--mem", "512KiB"], "1 MiB"),
        (&["--backend", "process", "--mem", "64MiB"], "does not apply --mem"),
        (&["--backend", "container", "--timeout", "0s"], "--timeout"),
        (&["--backend", "container", "--hold-for", "forever"], "--hold-for"),
    ];
    for (args, want) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn microvm_guest_memory_and_vcpus_are_used_as_given_or_refused() {
    if !gate("microvm_guest_memory_and_vcpus_are_used_as_given_or_refused", &[Need::Kvm]) {
        return;
    }
    for (args, want) in [
        (["--mem", "5MiB"], "multiple of 2.00 MiB from 4.00 MiB to 64.0 GiB"),
        (["--mem", "2MiB"], "multiple of 2.00 MiB from 4.00 MiB"),
        (["--vcpus", "0"], "0 vCPUs: expected 1 to 256"),
        (["--pids", "10"], "does not apply --pids"),
    ] {
        let out = run(&[&["--backend", "microvm"][..], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Start `vmct run --backend container` holding an idle instance with `limits`, and return the cgroup
/// files `names` of its instance (read from every cgroup dir of it that has them), then stop it.
fn cgroup_values(limits: &[&str], names: &[&str]) -> Vec<(String, String)> {
    let mut child = Command::new(vmct())
        .args(["run", "--backend", "container", "--workload", "idle", "--hold-for", "20s"])
        .args(limits)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("ready ") {
        let n = out.read(&mut b).unwrap();
        if n == 0 {
            let mut e = String::new();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            panic!("{limits:?}: vmct run ended before ready: {}{e}", String::from_utf8_lossy(&seen));
        }
        seen.extend_from_slice(&b[..n]);
    }
    let mut values = Vec::new();
    for o in kernel_objects(pid) {
        let Some(dir) = o.strip_prefix("cgroup ") else { continue };
        for n in names {
            if let Ok(v) = std::fs::read_to_string(std::path::Path::new(dir).join(n)) {
                values.push((n.to_string(), v.trim().to_string()));
            }
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(leftovers(pid).is_empty(), "{:?}", leftovers(pid));
    values
}

#[test]
fn container_limits_reach_the_cgroup_exactly_and_unlimited_spellings_mean_no_limit() {
    if !gate("container_limits_reach_the_cgroup_exactly_and_unlimited_spellings_mean_no_limit", &[Need::Root]) {
        return;
    }
    let quota = |v: &[(String, String)]| -> Option<String> {
        v.iter().find(|(n, _)| n == "cpu.cfs_quota_us" || n == "cpu.max").map(|(_, v)| v.clone())
    };
    let pids = |v: &[(String, String)]| v.iter().find(|(n, _)| n == "pids.max").map(|(_, v)| v.clone());
    let names = ["cpu.cfs_quota_us", "cpu.max", "pids.max", "memory.limit_in_bytes", "memory.max"];
    // 0.015 CPUs is 1500 us per 100 ms period, not rounded to 0.01.
    let v = cgroup_values(&["--cpus", "0.015"], &names);
    let q = quota(&v).unwrap_or_default();
    assert!(q == "1500" || q.starts_with("1500 "), "{v:?}");
    // The largest pids limit the kernel takes.
    let v = cgroup_values(&["--pids", "4194304"], &names);
    assert_eq!(pids(&v).as_deref(), Some("4194304"), "{v:?}");
    // Docker's unlimited spellings: no pids limit at all.
    for unlimited in ["-1", "max", "0"] {
        let v = cgroup_values(&["--pids", unlimited], &names);
        assert!(pids(&v).is_none_or(|p| p == "max"), "--pids {unlimited}: {v:?}");
    }
    // 64MB is 64 x 10^6 bytes, as the one size parser reads it everywhere.
    let v = cgroup_values(&["--mem", "64MB"], &names);
    assert!(v.iter().any(|(n, x)| n.starts_with("memory.") && x == "64000000"), "{v:?}");
}
