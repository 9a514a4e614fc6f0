#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! A scenario that fails is reported as a failure (the error, how far it got, a nonzero exit), never as
//! "unsupported"; "unsupported" stays for what a platform cannot run by design (syscalls on the bare guest).
mod common;

use common::vmct;
use harness::privileged::{gate, Need};
use std::process::Command;

/// A 2 MiB tmpfs mounted on a temp dir for the test's lifetime.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new() -> SmallFs {
        let d = tempfile::tempdir().unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(d.path()).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn an_io_run_on_a_full_filesystem_is_a_failure_with_errno_and_progress() {
    if !gate("an_io_run_on_a_full_filesystem_is_a_failure_with_errno_and_progress", &[Need::Root]) {
        return;
    }
    let fs = SmallFs::new();
    let run = |json: bool| {
        let mut c = Command::new(vmct());
        c.args(["run", "--backend", "process", "--workload", "io", "--mib", "8"]).env("VMCT_IO_DIR", fs.0.path());
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let out = run(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("failed    io: ENOSPC writing MiB 3 (2 of 8 MiB written)"), "{text}");
    assert!(!text.contains("unsupported"), "{text}");
    assert_eq!(std::fs::read_dir(fs.0.path()).unwrap().count(), 0, "the io file is removed after a failure");
    let out = run(true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["exit_status"], 1, "{v}");
    assert!(v["failed"][0]["reason"].as_str().unwrap().contains("ENOSPC"), "{v}");
    assert_eq!(v["unsupported"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn microvm_failures_and_unsupported_scenarios_are_told_apart() {
    if !gate("microvm_failures_and_unsupported_scenarios_are_told_apart", &[Need::Kvm]) {
        return;
    }
    // 64 MiB cannot be touched in a 40 MiB guest: a failure of this run.
    let out = Command::new(vmct())
        .args(["run", "--backend", "microvm", "--workload", "mem --mib 64", "--mem", "40MiB"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("failed    mem: guest memory too small"), "{text}");
    // The bare guest has no system calls by design: unsupported, and not a failure.
    let out = Command::new(vmct()).args(["run", "--backend", "microvm", "--workload", "syscall"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("unsupported syscall:") && !text.contains("failed"), "{text}");
}

#[test]
fn a_snapshot_that_cannot_be_written_is_a_save_failure_and_the_vm_runs_on() {
    use harness::backend::{Backend, BackendError, InstanceSpec};
    if !gate("a_snapshot_that_cannot_be_written_is_a_save_failure_and_the_vm_runs_on", &[Need::Kvm]) {
        return;
    }
    let b = harness::backend::microvm::MicrovmBackend::default();
    let spec = InstanceSpec::new(
        format!("vmct-test-snapfail-{}", std::process::id()),
        workloads::scenario::Scenario::Idle { hold_mib: 1 },
    );
    let t = std::time::Duration::from_secs(30);
    let mut vm = b.launch(&spec).unwrap();
    vm.wait_ready(t).unwrap();
    // /proc takes no new directories: the VMM's write fails (a failure, reported as such).
    match vm.save_state(std::path::Path::new("/proc/vmct-no-such-dir/snap")) {
        Err(BackendError::Save { reason, .. }) => assert!(reason.contains("/proc/vmct-no-such-dir"), "{reason}"),
        other => panic!("expected a save failure, got {other:?}"),
    }
    // The VM keeps running and stops cleanly.
    let exit = vm.stop(t).unwrap();
    assert_eq!(exit.status, Some(0), "{exit:?}");
}
