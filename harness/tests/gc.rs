#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! `vmct gc` after a run killed with SIGKILL (no Drop guard ran): the host values the isolation canaries
//! journaled are put back, and the journal, canary directory and instances are gone. Its own test binary, so
//! no other isolation run is in flight while gc restores host values.
use harness::privileged::{gate, Need};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each test here runs `vmct gc`, which removes the other's leftovers-to-be (a stand-in of a dead run is a
/// leftover for any gc): one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_values() -> Vec<String> {
    ["/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname", harness::isolation::canary::SYSCTL]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[test]
fn gc_restores_host_values_and_removes_leftovers_of_a_sigkilled_isolation_run() {
    if !gate("gc_restores_host_values_and_removes_leftovers_of_a_sigkilled_isolation_run", &[Need::Root]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_values();
    let vmct = assert_cmd::cargo::cargo_bin("vmct");
    let out = tempfile::tempdir().unwrap();
    let mut run = Command::new(&vmct)
        .args(["isolation", "--backends", "process", "--no-blast", "--out"])
        .arg(out.path().join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = Path::new(harness::isolation::journal::DIR).join(format!("host-values-{}.json", run.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !journal.exists() {
        assert!(Instant::now() < deadline, "the isolation run never planted its canaries");
        assert!(run.try_wait().unwrap().is_none(), "the isolation run ended before planting canaries");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let its probe instance start (a child of the run), so the kill also leaves a probe mid-way.
    let has_child = || {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(run.id())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_child() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    // Change a journaled value the way a probe that escaped would, then kill the run without cleanup.
    std::fs::write("/proc/sys/kernel/domainname", "vmct-gc-test\n").unwrap();
    run.kill().unwrap();
    run.wait().unwrap();
    let j: harness::isolation::journal::Journal = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    let out = Command::new(&vmct).arg("gc").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("domainname /proc/sys/kernel/domainname restored"), "{text}");
    assert_eq!(host_values(), before, "gc put every journaled value back");
    assert!(!journal.exists() && !j.canary_dir.exists(), "{text}");
    // The killed run's probe process (if it had started) was killed by gc; its scratch dirs are gone too.
    for base in harness::gc::PROBE_DIR_BASES {
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with("vmct-probe-"), "left behind: {base}/{n}\n{text}");
        }
    }
}

/// One `vmct gc` removes what a process of the dead run makes while gc runs: a stand-in for crun, which
/// makes a container's cgroup one hierarchy at a time and went on making them between gc's scan and its
/// kill (CI saw blkio, cpu and cpuacct cgroups of a killed crun run left after gc). gc scans again after
/// each pass until one finds nothing.
#[test]
fn one_gc_removes_what_a_dying_process_of_the_dead_run_makes_during_it() {
    if !gate("one_gc_removes_what_a_dying_process_of_the_dead_run_makes_during_it", &[Need::Root]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A dead "harness": a process that has exited (its pid is not reused within this test).
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let v1 = Path::new("/sys/fs/cgroup/pids");
    let base = if v1.is_dir() { v1.to_path_buf() } else { Path::new("/sys/fs/cgroup").to_path_buf() };
    let prefix = format!("vmct-{dead_pid}-");
    let script =
        format!("i=0; while :; do mkdir {}/{prefix}$i 2>/dev/null; i=$((i+1)); sleep 0.001; done", base.display());
    let mut maker = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env(harness::backend::OWNER_ENV, dead_pid.to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ours = || -> Vec<String> {
        std::fs::read_dir(&base)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ours().len() < 20 {
        assert!(Instant::now() < deadline, "the stand-in never made its cgroups");
        std::thread::sleep(Duration::from_millis(5));
    }
    let vmct = assert_cmd::cargo::cargo_bin("vmct");
    let out = Command::new(&vmct).arg("gc").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = maker.kill();
    let _ = maker.wait();
    let left = ours();
    for n in &left {
        let _ = std::fs::remove_dir(base.join(n));
    }
    assert!(text.contains(&format!("of dead vmct {dead_pid}")), "gc did not stop the stand-in:\n{text}");
    assert!(left.is_empty(), "one gc left {} cgroups the dying process made: {left:?}\n{text}", left.len());
}
