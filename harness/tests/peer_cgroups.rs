#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! crun and runc `mkdir -p` the parents of the cgroupsPath vmct gives them (this process's memory
//! cgroup path) in every hierarchy. Those that did not exist before are vmct's to remove: after
//! overlapping launches (a density sweep) and, through `vmct gc`, after a run killed with SIGKILL. Its own
//! test binary, so no other peer launch of this process holds the parents while it looks.
use harness::backend::InstanceSpec;
use harness::privileged::{gate, Need};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

mod common;

const T: Duration = Duration::from_secs(30);

/// The tests look at the same directories: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This process's memory cgroup path (the cgroupsPath parent the peers get).
fn own_path() -> String {
    let pc = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    container::cgroup::own_path(&pc, Some("memory")).or_else(|| container::cgroup::own_path(&pc, None)).unwrap()
}

/// Which directories of `own_path()` and its ancestors exist, in every hierarchy.
fn chain() -> Vec<(PathBuf, bool)> {
    let rel = own_path();
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if h.file_type().unwrap().is_symlink() || !h.path().join("cgroup.procs").exists() {
            continue;
        }
        let mut p = h.path();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            p = p.join(c);
            out.push((p.clone(), p.exists()));
        }
    }
    out.sort();
    out
}

#[test]
fn overlapping_peer_launches_remove_the_parent_cgroups_they_caused() {
    if !gate("overlapping_peer_launches_remove_the_parent_cgroups_they_caused", &[Need::Root]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = chain();
    for name in ["crun", "runc"] {
        let Some(b) = common::peer(name) else { continue };
        let spec = |n: u32| {
            let id = format!("vmct-t{}-{name}-{n}", std::process::id());
            InstanceSpec::new(id, Scenario::parse("idle --hold-mib 1".split_whitespace()).unwrap())
        };
        // The first makes the parents; the second finds them made; the first ends while the second lives.
        let mut a = b.launch(&spec(0)).unwrap();
        a.wait_ready(T).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut c = b.launch(&spec(1)).unwrap();
        c.wait_ready(T).unwrap_or_else(|e| panic!("{name}: {e}"));
        a.stop(T).unwrap();
        drop(a);
        c.stop(T).unwrap();
        drop(c);
        assert_eq!(chain(), before, "{name}: cgroup directories it caused are left (or ones that existed are gone)");
    }
}

#[test]
fn gc_removes_the_parent_cgroups_of_a_killed_peer_run() {
    if !gate("gc_removes_the_parent_cgroups_of_a_killed_peer_run", &[Need::Root]) || common::peer("crun").is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = chain();
    let mut run = Command::new(common::vmct())
        .args(["run", "--backend", "crun", "--workload", "idle", "--hold-for", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready once the runtime made the container's cgroup (then every parent exists).
    let leaf_made = || {
        chain().iter().any(|(p, _)| {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| common::is_of(&e.file_name().to_string_lossy(), run.id()))
        })
    };
    let deadline = Instant::now() + T;
    while !leaf_made() {
        assert!(Instant::now() < deadline, "the crun run never made its cgroup");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let made: Vec<PathBuf> =
        chain().into_iter().zip(&before).filter(|((_, now), (_, was))| *now && !*was).map(|((p, _), _)| p).collect();
    let dry = Command::new(common::vmct()).args(["gc", "--dry-run"]).output().unwrap();
    let listed = String::from_utf8_lossy(&dry.stdout).into_owned();
    for p in &made {
        let why = String::from_utf8_lossy(&dry.stderr);
        assert!(
            listed.contains(&format!("parent cgroup {}", p.display())),
            "not listed: {}\n{listed}{why}",
            p.display()
        );
    }
    assert!(made.iter().all(|p| p.exists()), "a dry run removes nothing");
    let out = Command::new(common::vmct()).arg("gc").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let after = chain();
    let changed: Vec<_> = after.iter().filter(|d| !before.contains(d)).collect();
    assert!(changed.is_empty(), "gc left a parent it caused (or removed one that existed): {changed:?}\n{text}");
    assert!(common::leftovers(run.id()).is_empty(), "{:?}\n{text}", common::leftovers(run.id()));
}
