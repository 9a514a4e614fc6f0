#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The memory experiment (issue 18 item 3) through `vmct compare`'s registry on the process baseline,
//! our container and the bare microVM with N = 2 and a 4 MiB burst: rows of the right shape, freed
//! memory back on the host for the process and the container but not for the bare microVM (no
//! mechanism), mergeable memory only where the workload asked for it, and the host's KSM settings
//! as they were after the run and after a SIGKILLed run once `vmct gc` ran. Needs root and /dev/kvm
//! (skips without them unless `VMCT_REQUIRE_PRIVILEGED=1`).
mod common;

use harness::compare::Settings;
use harness::experiments::memory::{ksm_unavailable, KsmPaths};
use harness::ksm::{Tunables, SYSFS};
use harness::privileged::{gate, required, Need};
use harness::progress::Mode;
use results::{ExperimentId, GiveBack, GiveBackRow, KsmRow, RunDir};
use std::path::Path;
use std::time::{Duration, Instant};

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// Only one test of this crate touches the host's KSM at a time.
static KSM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ksm_usable(test: &str) -> bool {
    if let Some(why) = ksm_unavailable(KsmPaths::host()) {
        assert!(!required(), "{test}: KSM unusable and VMCT_REQUIRE_PRIVILEGED=1: {why}");
        eprintln!("skipped {test}: {why}");
        return false;
    }
    true
}

#[test]
fn memory_rows_show_give_back_by_model_and_ksm_settings_are_put_back() {
    let test = "memory_rows_show_give_back_by_model_and_ksm_settings_are_put_back";
    if !gate(test, &[Need::Root, Need::Kvm]) {
        return;
    }
    let _one = KSM.lock().unwrap_or_else(|e| e.into_inner());
    if !ksm_usable(test) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let w = harness::artifacts::workload_path().unwrap();
    let all = harness::backend::registry::all(&w, d.path());
    let names = ["process", "container", "microvm"];
    let backends = harness::backend::registry::select(all, &names.map(String::from)).unwrap();
    for b in &backends {
        assert!(b.info().available, "{} unavailable: {:?}", b.name(), b.info().reason);
    }
    let mut s = Settings::quick(8 << 30);
    s.experiments = vec![ExperimentId::Memory];
    (s.memory.instances, s.memory.burst_mib) = (2, 4);
    (s.memory.after, s.memory.ksm_window) = (Duration::from_secs(2), Duration::from_secs(3));
    let before = Tunables::read(Path::new(SYSFS)).unwrap();
    let out = d.path().join("run");
    let host = results::HostEnv::capture();
    let o = harness::compare::run(&backends, &s, out.clone(), vec!["vmct".into()], host, Mode::Quiet).unwrap();
    assert_eq!(Tunables::read(Path::new(SYSFS)).unwrap(), before, "KSM settings put back");
    assert!(o.failures.is_empty(), "{:?}", o.failures);
    let rd = RunDir::open(&out).unwrap();
    let rows: Vec<GiveBackRow> = rd.read_csv().unwrap();
    assert_eq!(sorted(rows.iter().map(|r| r.backend.as_str()).collect()), sorted(names.to_vec()), "{rows:?}");
    let burst = 4u64 << 20;
    for r in &rows {
        assert_eq!((r.instances, r.burst_bytes), (2, burst), "{r:?}");
        assert!(r.held_peak_bytes >= r.held_before_bytes + burst / 2, "the burst shows on the host: {r:?}");
        assert!(r.after_s >= 2.0, "{r:?}");
        if r.backend == "microvm" {
            assert_eq!(r.mechanism, GiveBack::None, "{r:?}");
            assert!(r.held_after_bytes >= r.held_before_bytes + burst / 2, "a bare guest keeps its pages: {r:?}");
        } else {
            assert_eq!(r.mechanism, GiveBack::ProcessFrees, "{r:?}");
            assert!(r.held_after_bytes < r.held_peak_bytes - burst / 2, "munmap frees to the host: {r:?}");
            assert!(r.given_back_fraction.is_some_and(|f| f > 0.5), "{r:?}");
        }
    }
    let ksm: Vec<KsmRow> = rd.read_csv().unwrap();
    assert_eq!(sorted(ksm.iter().map(|r| r.backend.as_str()).collect()), sorted(names.to_vec()), "{ksm:?}");
    for r in &ksm {
        assert_eq!((r.instances, r.hold_bytes), (2, burst), "{r:?}");
        assert!(r.saved_bytes_per_instance >= 0.0 && r.window_s >= 3.0, "{r:?}");
        // The bare microVM's guest memory is a shared memfd mapping: never mergeable.
        let none = r.mergeable.starts_with("0.0 of");
        assert_eq!(none, r.backend == "microvm", "{r:?}");
    }
}

/// A run killed with SIGKILL while KSM is on leaves its journal; `vmct gc` puts the settings back.
#[test]
fn a_killed_memory_run_leaves_ksm_to_vmct_gc() {
    let test = "a_killed_memory_run_leaves_ksm_to_vmct_gc";
    if !gate(test, &[Need::Root]) {
        return;
    }
    let _one = KSM.lock().unwrap_or_else(|e| e.into_inner());
    if !ksm_usable(test) {
        return;
    }
    let vmct = harness::experiments::crosscheck::vmct_bin().expect("the vmct binary is built beside the tests");
    let before = Tunables::read(Path::new(SYSFS)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(&vmct)
        .args(["compare", "--quick", "--quiet", "--experiments", "memory", "--backends", "process", "--out"])
        .arg(d.path().join("run"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut on = false;
    while t0.elapsed() < Duration::from_secs(90) && child.try_wait().unwrap().is_none() {
        if Tunables::read(Path::new(SYSFS)).unwrap().0[0] == "1" {
            on = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(on, "the run never switched KSM on");
    assert_ne!(Tunables::read(Path::new(SYSFS)).unwrap(), before, "killed with KSM on");
    let gc = std::process::Command::new(&vmct).arg("gc").output().unwrap();
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let said = String::from_utf8_lossy(&gc.stdout);
    assert!(said.contains("ksm run"), "gc names what it restored: {said}");
    assert_eq!(Tunables::read(Path::new(SYSFS)).unwrap(), before, "vmct gc put KSM back");
}

/// Page-cache sharing (issue 18 item 3 b) with N = 2 and a 16 MiB file set: our container's instances
/// share the host page cache of the layer's file (counted once, so the host memory per instance is
/// well under the set), each qemu-tcg guest caches its own copy in guest RAM (its private growth is
/// most of the set) and the host caches none of its O_DIRECT root disk; the bare microVM says why it
/// is not measured. The layer and the root disk go with the file set, and the run leaves nothing.
#[test]
fn containers_share_the_host_page_cache_and_guests_each_cache_their_own_copy() {
    use harness::experiments::page_cache::{page_cache, FileSet, BARE};
    let test = "containers_share_the_host_page_cache_and_guests_each_cache_their_own_copy";
    if !gate(test, &[Need::Root, Need::Kvm]) {
        return;
    }
    let mib = 16u64;
    let set_bytes = mib << 20;
    let d = tempfile::tempdir().unwrap();
    let w = harness::artifacts::workload_path().unwrap();
    let vmct = harness::images::run::vmct_layer(&w).unwrap();
    let set = FileSet::create(d.path(), mib, vmct).unwrap();
    let all = harness::backend::registry::all(&w, d.path());
    let mut names = vec!["process", "container", "microvm"];
    let qemu = harness::kernel::cached_bzimage_path().is_file()
        && harness::backend::peers::which(harness::backend::qemu_tcg::QEMU_BIN).is_some();
    if qemu {
        names.push("qemu-tcg");
    } else {
        assert!(!required(), "{test}: qemu-tcg needs qemu-system-x86 and the guest kernel (`vmct kernel build`)");
        eprintln!("{test}: qemu-tcg part skipped (no QEMU or no cached guest kernel)");
    }
    let backends =
        harness::backend::registry::select(all, &names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut plan = harness::experiments::memory::MemoryPlan::quick();
    (plan.instances, plan.file_set_mib, plan.timeout) = (2, mib, Duration::from_secs(120));
    for b in &backends {
        let r = page_cache(b.as_ref(), &plan, &set, Mode::Quiet).unwrap();
        assert_eq!((r.instances, r.file_bytes), (2, set_bytes), "{r:?}");
        let (private, shared, per) =
            (r.private_bytes_per_instance, r.shared_host_cache_bytes, r.host_bytes_per_instance);
        match b.name() {
            "microvm" => {
                assert!(per.is_none() && r.how.contains(BARE), "{r:?}");
                continue;
            }
            "qemu-tcg" => {
                let copy = r.copy_bytes_per_instance.expect("guest RAM is a memory file");
                assert!(copy >= set_bytes as f64 * 0.75, "each guest caches its copy: {r:?}");
                assert!(private.unwrap() >= copy && r.private_growth_bytes_per_instance.unwrap() > 0.0, "{r:?}");
                assert!(shared.unwrap() < set_bytes / 4, "cache=none: the host caches little of the disk: {r:?}");
                assert!(r.how.contains("cache=none"), "{r:?}");
            }
            _ => {
                // Counted once and split: under the set per instance; the read went through the cache.
                assert!(shared.unwrap() >= set_bytes / 2, "the set is in the host page cache: {r:?}");
                assert!(private.unwrap() < set_bytes as f64 / 4.0, "read() leaves no private copy: {r:?}");
                assert_eq!(r.copy_bytes_per_instance, None, "no memory file: {r:?}");
                assert!(per.unwrap() < set_bytes as f64 * 0.8, "{r:?}");
            }
        }
        let p = private.unwrap();
        assert!((per.unwrap() - (p + shared.unwrap() as f64 / 2.0)).abs() < 1.0, "{r:?}");
    }
    let root = set.root().to_path_buf();
    assert!(
        std::fs::read_dir(&root).unwrap().flatten().any(|e| e.path().extension().is_some_and(|x| x == "ext4")) || !qemu
    );
    drop(set);
    assert!(!root.exists(), "the file set's layer and root disk are removed");
    let left = common::leftovers(std::process::id());
    assert!(left.is_empty(), "{left:?}");
}
