#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Golden files: a fixture run with every value of every closed set the records carry (backend kind,
//! isolation model, guest model, startup mode, density stop reason, probe outcome, blast neighbour),
//! written through [`RunDir`] and compared byte for byte with the files checked in under
//! `tests/golden/`. The files were written before the closed sets became enums (issue 16 item 1): the
//! typed records must write exactly the bytes the string records wrote, and read them back.
//!
//! `VMCT_BLESS=1 cargo test -p results --test golden` rewrites the files (only for an intended schema
//! change; say so in the commit).
use results::env::{LoadSnapshot, PeerInfo};
use results::*;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn backend(name: &str, kind: &str, model: &str, guest: Option<&str>, emulated: bool) -> BackendInfo {
    BackendInfo {
        name: name.into(),
        kind: kind.parse().unwrap(),
        model: model.parse().unwrap(),
        guest_model: guest.map(|g| g.parse().unwrap()),
        available: name != "qemu",
        reason: (name == "qemu").then(|| "not found on PATH".into()),
        version: (kind == "peer").then(|| "1.2.3".into()),
        emulated,
        isolation: (model == "container").then(|| IsolationProfile {
            profile: "default: Docker/Podman defaults".into(),
            seccomp_path: Some("/usr/share/containers/seccomp.json".into()),
            seccomp_sha256: Some("ab12".into()),
            seccomp_syscalls_allowed: Some(370),
            seccomp_unknown_names_skipped: vec!["new_call".into()],
            device_rules: vec!["a *:* rwm".into(), "c 1:3 rwm".into()],
        }),
    }
}

const BACKENDS: &[(&str, &str, &str, Option<&str>, bool)] = &[
    ("process", "baseline", "process", None, false),
    ("microvm", "ours", "microvm", Some("bare"), false),
    ("microvm-linux", "ours", "microvm", Some("linux"), false),
    ("container", "ours", "container", None, false),
    ("crun", "peer", "container", None, false),
    ("qemu-tcg", "peer", "microvm", Some("linux"), true),
    ("qemu", "peer", "microvm", Some("linux"), false),
];

fn meta() -> RunMeta {
    let mut m = RunMeta {
        schema_version: 1,
        id: "20261201T000000Z-golden".into(),
        started_unix_s: 1_764_547_200.25,
        finished_unix_s: 1_764_547_260.5,
        vmct_version: "0.1.0".into(),
        git_commit: Some("0123abcd".into()),
        command: vec!["vmct".into(), "compare".into(), "--quick".into()],
        plan: Plan {
            experiments: vec!["startup".into(), "density".into(), "isolation".into()],
            backends: BACKENDS.iter().map(|b| b.0.to_string()).collect(),
            quick: true,
            warmup: 2,
            startup_runs: 5,
            concurrency: vec![4],
            density_hold_mib: 16,
            density_budget_bytes: 1 << 30,
            density_max_instances: 25,
            overhead_runs: 3,
        },
        host: HostEnv {
            hostname: "golden".into(),
            cpu_model: "Test CPU @ 2.0GHz".into(),
            cores: 2,
            mem_total_bytes: 8 << 30,
            kernel: "6.1.0-test".into(),
            kvm: KvmFlavour::KvmIntel,
            cgroup: CgroupLayout::Hybrid,
            cpufreq_governor: None,
            virtualized: true,
            peers: vec![PeerInfo { name: "crun".into(), path: "/usr/bin/crun".into(), version: "1.2.3".into() }],
        },
        backends: BACKENDS.iter().map(|b| backend(b.0, b.1, b.2, b.3, b.4)).collect(),
        attack_surface: surface(),
        transfer: Vec::new(),
        caveats: vec!["quick run".into()],
        load_before: LoadSnapshot { loadavg_1m: 0.5, steal_s: 1.0, total_cpu_s: 100.0, mem_available_bytes: 4 << 30 },
        load_after: None,
        harness_timestamp_cost_s: Some(2e-8),
        full_plan: Some(serde_json::json!({"experiments": ["startup"], "startup": {"timeout_s": 20.0}})),
        wall_times: Vec::new(),
    };
    // Every mark value: qemu-tcg's startup is emulated, the bare guest's is its model's only.
    m.transfer = results::transfer::marks(&m);
    m
}

fn surface() -> Vec<AttackSurfaceRow> {
    BACKENDS
        .iter()
        .take(4)
        .map(|b| AttackSurfaceRow {
            backend: b.0.into(),
            model: b.2.parse().unwrap(),
            profile: "p".into(),
            host_syscalls_table: Some(373),
            host_syscalls_reachable: Some(if b.2 == "microvm" { 0 } else { 300 }),
            host_syscalls_source: "census".into(),
            ..AttackSurfaceRow::default()
        })
        .collect()
}

/// Every startup mode the harness writes: `cold`, `sequential`, `concurrent-K`.
const MODES: &[&str] = &["cold", "sequential", "concurrent-4"];

fn startup() -> (Vec<StartupSample>, Vec<PhaseSample>, Vec<StartupSummary>) {
    let mut samples = Vec::new();
    let mut phases = Vec::new();
    let mut sums = Vec::new();
    for (i, m) in MODES.iter().enumerate() {
        // Typed by the record's field (a string before issue 16, an enum after).
        let mode = || m.parse().unwrap();
        let iteration = u32::try_from(i).expect("three modes");
        samples.push(StartupSample {
            backend: "microvm".into(),
            mode: mode(),
            iteration,
            warmup: i == 1,
            launch_to_ready_s: 0.003 + i as f64 * 1e-4,
            outlier: i == 2,
        });
        for p in ["vmm_start", "confine", "ready"] {
            phases.push(PhaseSample {
                backend: "microvm".into(),
                mode: mode(),
                iteration,
                phase: p.into(),
                duration_s: 1e-4,
            });
        }
        sums.push(StartupSummary {
            backend: "microvm".into(),
            mode: mode(),
            n: 5,
            median_s: 0.003,
            p90_s: 0.004,
            p99_s: 0.005,
            min_s: 0.002,
            max_s: 0.006,
            mean_s: 0.0035,
            mad_s: 0.0001,
            outliers: 1,
            launches_per_s: (i == 2).then_some(250.5),
        });
    }
    (samples, phases, sums)
}

/// Every density stop reason the harness writes.
const STOPS: &[&str] = &[
    "count",
    "budget",
    "host memory floor",
    "interrupted",
    "error: microvm: launch failed: out of memory, \"quoted\"",
    "count (2 instances needed a kill on teardown)",
];

fn density() -> (Vec<DensityStep>, Vec<DensityFit>) {
    let steps = vec![DensityStep {
        backend: "container".into(),
        instances: 3,
        mem_available_bytes: 10,
        mem_used_delta_bytes: -5,
        slab_bytes: 7,
        slab_delta_bytes: 2,
        instance_rss_bytes: None,
        guest_mem_bytes: Some(4096),
        vmm_overhead_bytes: None,
        cgroup_usage_bytes: Some(1),
        pss_bytes: None,
        launch_s: 0.5,
    }];
    let fits = STOPS
        .iter()
        .map(|s| DensityFit {
            backend: "container".into(),
            hold_mib: 16,
            instances: 25,
            stop_reason: s.parse().unwrap(),
            slope_bytes: 17.5e6,
            intercept_bytes: 1e6,
            r2: 0.999,
            slab_slope_bytes: 1024.0,
            vmm_overhead_bytes: None,
            instances_per_gib: 61.3,
            launch_at_max_s: 0.02,
            teardown_s: 0.4,
            harness_step_s: Some(1e-5),
            fit_from_instances: Some(12),
            drift_bytes_per_s: None,
            guest_mem_bytes: Some(2.5e6),
        })
        .collect();
    (steps, fits)
}

/// Every probe outcome an isolation row carries.
const OUTCOMES: &[&str] = &["blocked", "reached", "error", "unsupported"];

fn isolation() -> Vec<IsolationRow> {
    OUTCOMES
        .iter()
        .map(|o| IsolationRow {
            backend: "container".into(),
            profile: "default".into(),
            probe: format!("probe.{o}"),
            outcome: o.parse().unwrap(),
            detail: "saw, with a comma".into(),
            host_check: String::new(),
            failure: *o == "reached",
        })
        .collect()
}

/// Every blast neighbour.
const NEIGHBOURS: &[&str] = &["memory-hog", "cpu-hog", "fork-loop", "oom"];

fn blast() -> Vec<BlastRow> {
    NEIGHBOURS
        .iter()
        .map(|n| BlastRow {
            backend: "microvm".into(),
            neighbour: n.parse().unwrap(),
            limited: *n == "oom",
            victim_alone_s: 0.001,
            victim_with_neighbour_s: 0.0012,
            slowdown: 1.2,
            victim_ok: true,
            neighbour_cpus: Some(2.0),
        })
        .collect()
}

fn snapshot() -> Vec<SnapshotRow> {
    vec![SnapshotRow {
        backend: "microvm".into(),
        dirty_mib: 16,
        save_s: 0.01,
        save_bytes: 16 << 20,
        restore_s: 0.002,
        cold_start_s: 0.003,
        shared_bytes: Some(1 << 20),
    }]
}

fn overhead() -> Vec<OverheadRow> {
    vec![OverheadRow {
        backend: "microvm".into(),
        scenario: "syscall".into(),
        metric: String::new(),
        unit: String::new(),
        n: 0,
        median: 0.0,
        mad: 0.0,
        min: 0.0,
        max: 0.0,
        ratio_to_process: None,
        supported: false,
        reason: "bare guest has no system calls".into(),
        failed: false,
    }]
}

/// Write the fixture run into `dir`; returns the file names written.
fn write_fixture(rd: &RunDir) -> Vec<&'static str> {
    rd.write_meta(&meta()).unwrap();
    let (samples, phases, sums) = startup();
    rd.write_csv(&samples).unwrap();
    rd.write_csv(&phases).unwrap();
    rd.write_csv(&sums).unwrap();
    let (steps, fits) = density();
    rd.write_csv(&steps).unwrap();
    rd.write_csv(&fits).unwrap();
    rd.write_csv(&overhead()).unwrap();
    rd.write_csv(&isolation()).unwrap();
    rd.write_csv(&blast()).unwrap();
    rd.write_csv(&snapshot()).unwrap();
    rd.write_csv(&surface()).unwrap();
    vec![
        "run.json",
        StartupSample::FILE,
        PhaseSample::FILE,
        StartupSummary::FILE,
        DensityStep::FILE,
        DensityFit::FILE,
        OverheadRow::FILE,
        IsolationRow::FILE,
        BlastRow::FILE,
        SnapshotRow::FILE,
        AttackSurfaceRow::FILE,
    ]
}

#[test]
fn a_fixture_run_writes_the_golden_bytes() {
    let d = tempfile::tempdir().unwrap();
    let rd = RunDir::create(d.path().join("run")).unwrap();
    let files = write_fixture(&rd);
    let bless = std::env::var_os("VMCT_BLESS").is_some();
    for f in files {
        let got = std::fs::read(rd.path().join(f)).unwrap();
        let path = golden_dir().join(f);
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            got == want,
            "{f} differs from {}:\n--- got\n{}\n--- want\n{}",
            path.display(),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn the_golden_files_read_back_as_the_fixture() {
    let rd = RunDir::open(golden_dir()).unwrap();
    assert_eq!(rd.read_meta().unwrap(), meta());
    let (samples, phases, sums) = startup();
    assert_eq!(rd.read_csv::<StartupSample>().unwrap(), samples);
    assert_eq!(rd.read_csv::<PhaseSample>().unwrap(), phases);
    assert_eq!(rd.read_csv::<StartupSummary>().unwrap(), sums);
    let (steps, fits) = density();
    assert_eq!(rd.read_csv::<DensityStep>().unwrap(), steps);
    assert_eq!(rd.read_csv::<DensityFit>().unwrap(), fits);
    assert_eq!(rd.read_csv::<OverheadRow>().unwrap(), overhead());
    assert_eq!(rd.read_csv::<IsolationRow>().unwrap(), isolation());
    assert_eq!(rd.read_csv::<BlastRow>().unwrap(), blast());
    assert_eq!(rd.read_csv::<SnapshotRow>().unwrap(), snapshot());
    assert_eq!(rd.read_csv::<AttackSurfaceRow>().unwrap(), surface());
}
