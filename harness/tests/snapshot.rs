#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! MicroVM snapshot and restore end to end, through the `Backend`/`Instance` API: a VM snapshotted in
//! the middle of `idle --hold-mib 8` restores, reports ready again with its held memory intact, and two
//! VMs restored from one snapshot share its pages. Needs /dev/kvm (skips without it unless
//! `VMCT_REQUIRE_PRIVILEGED=1`).
use harness::backend::microvm::MicrovmBackend;
use harness::backend::{Backend, Event, Instance, InstanceSpec};
use harness::privileged::{gate, Need};
use std::path::PathBuf;
use std::time::Duration;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(30);

fn spec(id: &str) -> InstanceSpec {
    InstanceSpec::new(format!("vmct-test-snap-{id}-{}", std::process::id()), Scenario::Idle { hold_mib: 8 })
}

/// A snapshot directory removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The results a restored VM reports after `ready` (it stops at `restore.held_bytes`).
fn restore_results(inst: &mut dyn Instance) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    while let Some((_, e)) = inst.next_event(T).unwrap() {
        if let Event::Result { name, value, .. } = e {
            let last = name == "restore.held_bytes";
            out.push((name, value));
            if last {
                break;
            }
        }
    }
    out
}

#[test]
fn a_snapshotted_idle_vm_restores_twice_with_its_memory_intact_and_shared() {
    if !gate("a_snapshotted_idle_vm_restores_twice_with_its_memory_intact_and_shared", &[Need::Kvm]) {
        return;
    }
    let b = MicrovmBackend::default();
    let dir = Dir(std::env::temp_dir().join(format!("vmct-test-snapshot-{}", std::process::id())));

    let mut vm = b.launch(&spec("orig")).unwrap();
    vm.wait_ready(T).unwrap();
    let saved = vm.save_state(&dir.0).unwrap();
    // 8 MiB held plus the image and system pages, but far less than the 24 MiB of guest RAM.
    assert!(saved.bytes >= 8 << 20 && saved.bytes < 12 << 20, "{saved:?}");
    assert!(saved.duration_s > 0.0 && saved.duration_s < 5.0, "{saved:?}");
    let mem = std::fs::metadata(dir.0.join(microvm::snapshot::MEMORY_FILE)).unwrap();
    assert_eq!(mem.len(), 24 << 20, "the memory file is guest RAM sized (sparse)");

    // The original keeps running after the snapshot and still stops cleanly.
    let exit = vm.stop(T).unwrap();
    assert_eq!((exit.status, exit.error), (Some(0), None));

    let mut a = b.restore(&saved, &spec("a")).unwrap();
    let ready = a.wait_ready(T).unwrap();
    let names: Vec<&str> = ready.phases.iter().map(|p| p.name.as_str()).collect();
    for want in ["vmm_start", "kvm_open", "vm_create", "load", "memory", "vcpu_setup", "ready"] {
        assert!(names.contains(&want), "phase {want} missing from {names:?}");
    }
    let res = restore_results(a.as_mut());
    assert!(res.contains(&("restore.memory_ok".into(), 1.0)), "{res:?}");
    assert!(res.contains(&("restore.held_bytes".into(), (8 << 20) as f64)), "{res:?}");

    let mut b2 = b.restore(&saved, &spec("b")).unwrap();
    b2.wait_ready(T).unwrap();
    let res = restore_results(b2.as_mut());
    assert!(res.contains(&("restore.memory_ok".into(), 1.0)), "{res:?}");

    // Both read all 8 MiB back: those page-cache pages of the snapshot are mapped by both.
    let (sa, sb) = (a.stats(), b2.stats());
    let shared = harness::experiments::snapshot::shared_between(&sa, &sb).unwrap();
    assert!(shared >= 7 << 20, "shared {shared} bytes; a {sa:?} b {sb:?}");
    assert!(sa.guest_mem_bytes.unwrap() >= 8 << 20, "{sa:?}");

    // A restored VM can be snapshotted again (its memory is now a private file mapping).
    let dir2 = Dir(std::env::temp_dir().join(format!("vmct-test-snapshot2-{}", std::process::id())));
    let saved2 = a.save_state(&dir2.0).unwrap();
    let mut c = b.restore(&saved2, &spec("c")).unwrap();
    c.wait_ready(T).unwrap();
    let res = restore_results(c.as_mut());
    assert!(res.contains(&("restore.memory_ok".into(), 1.0)), "{res:?}");

    for mut i in [a, b2, c] {
        let exit = i.stop(T).unwrap();
        assert_eq!((exit.status, exit.error), (Some(0), None));
    }
}

#[test]
fn restoring_a_missing_or_foreign_snapshot_fails_with_a_typed_error() {
    if !gate("restoring_a_missing_or_foreign_snapshot_fails_with_a_typed_error", &[Need::Kvm]) {
        return;
    }
    let b = MicrovmBackend::default();
    let dir = Dir(std::env::temp_dir().join(format!("vmct-test-badsnap-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join(microvm::snapshot::STATE_FILE), br#"{"magic":"other","version":1}"#).unwrap();
    let saved = harness::backend::Saved { path: dir.0.clone(), bytes: 0, duration_s: 0.0, checks_restore: true };
    let mut i = b.restore(&saved, &spec("bad")).unwrap();
    assert!(i.wait_ready(T).is_err());
    let exit = i.stop(T).unwrap();
    assert_eq!(exit.error.as_deref(), Some("vm ended abnormally: snapshot (see the instance log)"));
}
