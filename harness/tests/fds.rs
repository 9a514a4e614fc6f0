#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Open files the harness itself holds per live instance (issue 18 item 2): a density sweep must be
//! stopped by what the isolation model costs, never by the harness's own bookkeeping. A bare microVM
//! once held 9 fds of the harness (two pipes, three namespace files and four cgroup `tasks` files of
//! its jail), so `RLIMIT_NOFILE` stopped the sweep at a fifth of the instances containers reached.
//!
//! Each backend launches `2 * HALF` idle instances through the `Backend` API; the harness's fds
//! (`/proc/self/fd`) are counted with `HALF` and `2 * HALF` alive: the growth over the second half,
//! per instance, is the marginal cost (past the [`JAIL_SPARES`] jails a VMM pool may keep for reuse),
//! and everything is gone after the stops (fds back to the count before, no jail directory or cgroup
//! of this process). Counts, not timings. `VMCT_FD_TEST_HALF=50` makes it a measurement at 100 alive
//! (`cargo test -p harness --test fds -- --nocapture` prints the breakdown by fd kind).
mod common;

use harness::backend::vmm_jail::JAIL_SPARES;
use harness::backend::{Backend, Instance, InstanceSpec};
use harness::privileged::{gate, Need};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(30);

/// Tests of this file count the fds of one process: one at a time.
static ONE: Mutex<()> = Mutex::new(());

/// Fds a live instance of our backends may cost the harness: its stdin pipe and its output pipe.
const PER_INSTANCE_MAX: f64 = 2.0;

fn half() -> usize {
    std::env::var("VMCT_FD_TEST_HALF").ok().and_then(|v| v.parse().ok()).unwrap_or(JAIL_SPARES + 2)
}

/// The harness's open fds by kind (`pipe`, `net`, `mnt`, `anon_inode:[pidfd]`, a path's last two
/// components, ...).
fn fds() -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let t = target.to_string_lossy();
        let kind = if let Some((k, _)) = t.split_once(":[") {
            k.to_string()
        } else if t.starts_with('/') {
            let c: Vec<&str> = t.rsplit('/').take(2).collect();
            format!("file .../{}", c.into_iter().rev().collect::<Vec<_>>().join("/"))
                .replace(|ch: char| ch.is_ascii_digit(), "#")
        } else {
            t.to_string()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

fn total(k: &BTreeMap<String, usize>) -> usize {
    k.values().sum()
}

/// What grew from `a` to `b`, by kind.
fn growth(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = b
        .iter()
        .map(|(k, n)| (k.clone(), *n as i64 - a.get(k).copied().unwrap_or(0) as i64))
        .filter(|(_, d)| *d != 0)
        .collect();
    out.extend(a.iter().filter(|(k, _)| !b.contains_key(*k)).map(|(k, n)| (k.clone(), -(*n as i64))));
    out
}

fn spec(n: usize) -> InstanceSpec {
    InstanceSpec::new(format!("vmct-{}-fd{n}", std::process::id()), Scenario::Idle { hold_mib: 0 })
}

fn launch(b: &dyn Backend, n: usize) -> Box<dyn Instance> {
    let mut i = b.launch(&spec(n)).unwrap_or_else(|e| panic!("{}: launch {n}: {e}", b.name()));
    i.wait_ready(T).unwrap_or_else(|e| panic!("{}: ready {n}: {e}", b.name()));
    i
}

/// Launch `2 * half()` instances of `b`; returns the fds per instance over the second half (and
/// asserts everything is gone after). One instance is launched and stopped first, so that what a
/// backend sets up once (a runtime, a jail pool's spare, the launching thread's own namespace files)
/// is in the count before.
fn fds_per_instance(b: &dyn Backend) -> f64 {
    let h = half();
    launch(b, 0).stop(T).unwrap();
    let before = fds();
    let mut alive: Vec<Box<dyn Instance>> = (1..=h).map(|n| launch(b, n)).collect();
    let at_half = fds();
    alive.extend((h + 1..=2 * h).map(|n| launch(b, n)));
    let at_full = fds();
    for mut i in alive {
        i.stop(T).unwrap();
    }
    let after = fds();
    let per = (total(&at_full) as f64 - total(&at_half) as f64) / h as f64;
    eprintln!(
        "{}: {} fds before, +{} with {h} alive, +{} with {} alive: {per:.2} fds per instance past {h}; \
         growth to {} alive by kind: {:?}",
        b.name(),
        total(&before),
        total(&at_half) as i64 - total(&before) as i64,
        total(&at_full) as i64 - total(&before) as i64,
        2 * h,
        2 * h,
        growth(&before, &at_full)
    );
    // Stopped instances hold nothing (a pool's spares are at most what it held before plus its cap).
    assert!(total(&after) <= total(&before) + 3 * JAIL_SPARES, "{}: {:?}", b.name(), growth(&before, &after));
    per
}

fn workload() -> std::path::PathBuf {
    harness::artifacts::workload_path().unwrap()
}

#[test]
fn a_live_bare_microvm_costs_the_harness_only_its_two_pipes() {
    if !gate("a_live_bare_microvm_costs_the_harness_only_its_two_pipes", &[Need::Root, Need::Kvm]) {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    {
        // What the launching thread opens once (its own namespace files, the jails' parent cgroups'
        // `tasks` files) is opened by a first backend, so what the second leaves is its own.
        let first = harness::backend::microvm::MicrovmBackend::default();
        launch(&first, 0).stop(T).unwrap();
        drop(first);
        let before = fds();
        let b = harness::backend::microvm::MicrovmBackend::default();
        let per = fds_per_instance(&b);
        assert!(per <= PER_INSTANCE_MAX, "microvm: {per} fds per live instance");
        drop(b);
        // The backend gone, its pool's jails are gone too.
        let extra = growth(&before, &fds());
        assert!(extra.iter().all(|(_, d)| *d <= 0), "fds left by the microvm backend: {extra:?}");
    }
    assert_eq!(common::leftovers(std::process::id()), Vec::<String>::new());
}

#[test]
fn a_live_container_costs_the_harness_only_its_two_pipes() {
    if !gate("a_live_container_costs_the_harness_only_its_two_pipes", &[Need::Root]) {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let b = harness::backend::container::by_name("container", &workload()).unwrap();
    let per = fds_per_instance(&b);
    assert!(per <= PER_INSTANCE_MAX, "container: {per} fds per live instance");
    assert_eq!(common::leftovers(std::process::id()), Vec::<String>::new());
}

#[test]
fn a_live_process_costs_the_harness_only_its_two_pipes() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let b = harness::backend::process::ProcessBackend::new(workload(), d.path().to_path_buf());
    let per = fds_per_instance(&b);
    assert!(per <= PER_INSTANCE_MAX, "process: {per} fds per live instance");
    assert_eq!(common::leftovers(std::process::id()), Vec::<String>::new());
}

/// The peers' figures, measured beside ours (their runtimes hold what they hold; the harness's own
/// share is the pipes it reads them through).
#[test]
fn peers_cost_the_harness_a_bounded_number_of_fds_per_live_instance() {
    if !gate("peers_cost_the_harness_a_bounded_number_of_fds_per_live_instance", &[Need::Root]) {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["crun", "runc", "runsc"] {
        let Some(b) = common::peer(name) else { continue };
        let per = fds_per_instance(b.as_ref());
        assert!(per <= PER_INSTANCE_MAX, "{name}: {per} fds per live instance");
    }
    assert_eq!(common::leftovers(std::process::id()), Vec::<String>::new());
}
