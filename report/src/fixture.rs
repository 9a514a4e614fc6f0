//! A small, deterministic, complete run directory for tests (ours and the CLI's) and for previewing the report:
//! every CSV present, kvm_pvm host, microVM (bare) faster to start than containers, one privileged container
//! leaking, a fork-loop neighbour hurting a container victim. Not part of the stable API.
use results::env::LoadSnapshot;
use results::stats::{fit_line, summarize};
use results::*;
use std::path::Path;

/// Deterministic noise in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn backend(name: &str, kind: &str, model: &str, guest: Option<&str>, available: bool) -> BackendInfo {
    BackendInfo {
        isolation: None,
        name: name.into(),
        kind: kind.parse().expect("fixture kind"),
        model: model.parse().expect("fixture model"),
        guest_model: guest.map(|g| g.parse().expect("fixture guest model")),
        available,
        reason: (!available).then(|| "kvm_pvm cannot run a linux guest's userspace".to_string()),
        version: (kind == "peer").then(|| format!("{name} version 1.2.3")),
        emulated: false,
    }
}

/// The fixture's run.json.
pub fn meta() -> RunMeta {
    let host = HostEnv {
        hostname: "fixture-host".into(),
        cpu_model: "Fixture CPU @ 2.0GHz".into(),
        cores: 2,
        mem_total_bytes: 24 << 30,
        kernel: "6.1.0-fixture".into(),
        kvm: KvmFlavour::KvmPvm,
        cgroup: CgroupLayout::Hybrid,
        cpufreq_governor: None,
        virtualized: true,
        peers: vec![results::env::PeerInfo {
            name: "crun".into(),
            path: "/usr/bin/crun".into(),
            version: "crun version 1.2.3".into(),
        }],
    };
    let caveats = host.caveats();
    RunMeta {
        schema_version: results::rundir::SCHEMA_VERSION,
        id: "fixture-run".into(),
        started_unix_s: 1_700_000_000.0,
        finished_unix_s: 1_700_000_600.0,
        vmct_version: "0.1.0".into(),
        git_commit: Some("0123abc".into()),
        command: vec!["vmct".into(), "compare".into(), "--quick".into()],
        plan: Plan {
            experiments: [
                "startup",
                "density",
                "overhead",
                "isolation",
                "blast",
                "snapshot",
                "crosscheck",
                "crash",
                "memory",
            ]
            .map(String::from)
            .to_vec(),
            backends: vec![],
            quick: true,
            warmup: 2,
            startup_runs: 20,
            concurrency: vec![2, 4],
            density_hold_mib: 16,
            density_budget_bytes: 2 << 30,
            density_max_instances: 10,
            overhead_runs: 5,
        },
        host,
        backends: vec![
            backend("process", "baseline", "process", None, true),
            backend("microvm", "ours", "microvm", Some("bare"), true),
            backend("microvm-linux", "ours", "microvm", Some("linux"), false),
            backend("container", "ours", "container", None, true),
            backend("container-privileged", "ours", "container", None, true),
            backend("crun", "peer", "container", None, true),
        ],
        attack_surface: surface_rows(),
        transfer: Vec::new(),
        caveats,
        load_before: LoadSnapshot {
            loadavg_1m: 0.4,
            steal_s: 10.0,
            total_cpu_s: 1000.0,
            mem_available_bytes: 20 << 30,
        },
        load_after: Some(LoadSnapshot {
            loadavg_1m: 1.2,
            steal_s: 12.0,
            total_cpu_s: 2200.0,
            mem_available_bytes: 20 << 30,
        }),
        harness_timestamp_cost_s: Some(2.5e-8),
        full_plan: None,
        wall_times: Vec::new(),
    }
}

/// The fixture's attack surface: measured layer (a) for the process and containers, 0 by construction for
/// the bare microVM with its VMM's declared exits, and undeclared figures where a backend says nothing.
pub fn surface_rows() -> Vec<AttackSurfaceRow> {
    let measured = "measured: census.syscalls probe inside the instance, this run";
    let row = |b: &str, model: &str, profile: &str, reach: Option<(u32, u32)>| AttackSurfaceRow {
        backend: b.into(),
        model: model.parse().expect("fixture model"),
        profile: profile.into(),
        host_syscalls_table: reach.map(|_| 382),
        host_syscalls_reachable: reach.map(|r| r.0),
        host_syscalls_refused: reach.map(|r| r.1),
        host_syscalls_skipped: reach.map(|_| 17),
        host_syscalls_filtered: reach.map(|r| r.1 - 25),
        host_syscalls_source: measured.into(),
        instance_seccomp: "not declared".into(),
        vmm_source: "not applicable: no VMM".into(),
        supervisor_syscalls_allowed: Some(382),
        supervisor_source: "unfiltered".into(),
        ..Default::default()
    };
    let mut v = vec![
        AttackSurfaceRow {
            instance_seccomp_allowed: Some(382),
            instance_seccomp: "unfiltered: no seccomp filter".into(),
            supervisor_syscalls_allowed: None,
            supervisor_source: "not applicable: no supervisor".into(),
            ..row("process", "process", "none (baseline, no isolation)", Some((340, 25)))
        },
        AttackSurfaceRow {
            host_syscalls_reachable: Some(0),
            host_syscalls_source: "0 by construction: the bare guest has no OS".into(),
            vmm_exit_kinds: Some(4),
            vmm_io_port_ranges: Some(2),
            vmm_mmio_ranges: Some(0),
            vmm_source: "declared by the VMM: exits [IoIn,IoOut,Hlt,Shutdown]; ports [0x3f8-0x3ff,0xe9-0xe9]; mmio []"
                .into(),
            supervisor_syscalls_allowed: Some(41),
            supervisor_source: "the VMM's seccomp allowlist".into(),
            ..row("microvm", "microvm", "bare guest", None)
        },
        row("container", "container", "default", Some((300, 65))),
        AttackSurfaceRow {
            instance_seccomp_allowed: Some(382),
            instance_seccomp: "unfiltered: no seccomp filter".into(),
            ..row("container-privileged", "container", "privileged", Some((338, 27)))
        },
        row("crun", "container", "runtime defaults", Some((305, 60))),
    ];
    v[2].instance_seccomp = "not declared".into();
    v
}

/// Typical startup (seconds) of each fixture backend.
pub const STARTUP_S: &[(&str, f64)] =
    &[("process", 0.0011), ("microvm", 0.0032), ("container", 0.024), ("container-privileged", 0.021), ("crun", 0.043)];

/// Write the whole fixture into `dir` (created if needed) and return it.
pub fn write(dir: &Path) -> Result<RunDir, RunDirError> {
    write_drawn(dir, 42, 1.0)
}

/// [`write`] with the random draws from `seed` and every startup time scaled by `startup_scale`: two
/// seeds are two runs drawn from the same distribution (noise tests, `crate::noise`).
pub fn write_drawn(dir: &Path, seed: u64, startup_scale: f64) -> Result<RunDir, RunDirError> {
    let rd = RunDir::create(dir)?;
    rd.write_meta(&meta())?;
    let mut rng = Lcg(seed);
    let mut samples = Vec::new();
    let mut summaries = Vec::new();
    let mut phases = Vec::new();
    for &(b, base) in STARTUP_S {
        for (mode, runs, slow) in [("sequential", 20u32, 1.0), ("concurrent-2", 8, 1.3), ("concurrent-4", 8, 1.9)] {
            let mut xs = Vec::new();
            for i in 0..runs + 2 {
                let warm = mode == "sequential" && i < 2;
                let mut v = base * startup_scale * slow * (1.0 + 0.08 * rng.next());
                if i == runs + 1 && mode == "sequential" {
                    v *= 2.5; // one slow launch: the p99 tail
                }
                if !warm {
                    xs.push(v);
                }
                samples.push(StartupSample {
                    backend: b.into(),
                    mode: mode.parse().expect("fixture mode"),
                    iteration: i,
                    warmup: warm,
                    launch_to_ready_s: v,
                    outlier: false,
                });
                if mode == "sequential" && !warm {
                    let names: &[(&str, f64)] = match b {
                        "microvm" => &[
                            ("vm_create", 0.2),
                            ("memory", 0.15),
                            ("load", 0.2),
                            ("vcpu_setup", 0.1),
                            ("guest_to_ready", 0.35),
                        ],
                        "process" => &[("spawn", 0.7), ("ready", 0.3)],
                        "crun" => &[],
                        _ => &[
                            ("clone", 0.1),
                            ("cgroup", 0.25),
                            ("rootfs", 0.3),
                            ("pivot_root", 0.05),
                            ("exec", 0.2),
                            ("ready", 0.1),
                        ],
                    };
                    for (p, share) in names {
                        phases.push(PhaseSample {
                            backend: b.into(),
                            mode: mode.parse().expect("fixture mode"),
                            iteration: i,
                            phase: (*p).into(),
                            duration_s: v * share,
                        });
                    }
                }
            }
            let s = summarize(&xs).expect("samples");
            let k = mode.strip_prefix("concurrent-").and_then(|k| k.parse::<f64>().ok());
            summaries.push(StartupSummary {
                backend: b.into(),
                mode: mode.parse().expect("fixture mode"),
                n: u32::try_from(s.n).expect("the fixture has a few dozen samples"),
                median_s: s.median,
                p90_s: s.p90,
                p99_s: s.p99,
                min_s: s.min,
                max_s: s.max,
                mean_s: s.mean,
                mad_s: s.mad,
                outliers: u32::try_from(s.outlier.iter().filter(|o| **o).count()).expect("a few dozen samples"),
                launches_per_s: k.map(|k| k / s.mean),
            });
        }
    }
    rd.write_csv(&samples)?;
    rd.write_csv(&phases)?;
    rd.write_csv(&summaries)?;

    let mut steps = Vec::new();
    let mut fits = Vec::new();
    for (b, per_mib, fixed_mib) in [("process", 17.0, 1.0), ("microvm", 19.5, 3.0), ("container", 18.2, 6.0)] {
        let mut pts = Vec::new();
        for n in 1..=10u32 {
            #[allow(clippy::cast_possible_truncation)] // a few hundred MiB in bytes: far inside i64
            let used = ((per_mib * f64::from(n) + fixed_mib + 0.3 * rng.next()) * 1048576.0) as i64;
            pts.push((f64::from(n), used as f64));
            steps.push(DensityStep {
                backend: b.into(),
                instances: n,
                mem_available_bytes: (20u64 << 30) - used as u64,
                mem_used_delta_bytes: used,
                slab_bytes: 300 << 20,
                slab_delta_bytes: i64::from(n) * 200_000,
                instance_rss_bytes: Some(17 << 20),
                guest_mem_bytes: (b == "microvm").then_some(16 << 20),
                vmm_overhead_bytes: (b == "microvm").then_some(3 << 20),
                cgroup_usage_bytes: (b == "container").then_some(17 << 20),
                pss_bytes: Some(17 << 20),
                launch_s: 0.01,
            });
        }
        let f = fit_line(&pts).expect("fit");
        fits.push(DensityFit {
            backend: b.into(),
            hold_mib: 16,
            instances: 10,
            stop_reason: results::StopReason::Count.into(),
            slope_bytes: f.slope,
            intercept_bytes: f.intercept,
            r2: f.r2,
            slab_slope_bytes: 200_000.0,
            vmm_overhead_bytes: (b == "microvm").then_some(3.0 * 1048576.0),
            instances_per_gib: 1073741824.0 / f.slope,
            launch_at_max_s: 0.012,
            teardown_s: 0.2,
            harness_step_s: Some(1e-4),
            fit_from_instances: Some(1),
            drift_bytes_per_s: Some(0.0),
            guest_mem_bytes: None,
        });
    }
    rd.write_csv(&steps)?;
    rd.write_csv(&fits)?;

    let mut over = Vec::new();
    for (b, r) in [("process", 1.0), ("microvm", 1.02), ("container", 1.01), ("crun", 1.01)] {
        for (scen, metric, unit, base) in [
            ("cpu", "cpu.sha256", "s", 0.5),
            // The workload's result: must equal the process baseline's (ratio exactly 1).
            ("cpu", "cpu.check", "u32", 1851441976.0),
            ("mem", "mem.seq", "bytes/s", 2577775405.0),
            ("syscall", "syscall.getpid", "ns", 60.0),
        ] {
            if b == "microvm" && scen == "syscall" {
                over.push(OverheadRow {
                    backend: b.into(),
                    scenario: scen.into(),
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
                });
                continue;
            }
            let ratio = match (scen, unit) {
                (_, "u32") => 1.0,
                ("syscall", _) if b != "process" => r * 1.4,
                _ => r,
            };
            over.push(OverheadRow {
                backend: b.into(),
                scenario: scen.into(),
                metric: metric.into(),
                unit: unit.into(),
                n: 5,
                median: base * ratio,
                mad: if unit == "u32" { 0.0 } else { base * 0.01 },
                min: if unit == "u32" { base } else { base * ratio * 0.98 },
                max: if unit == "u32" { base } else { base * ratio * 1.03 },
                ratio_to_process: Some(ratio),
                supported: true,
                reason: String::new(),
                failed: false,
            });
        }
    }
    rd.write_csv(&over)?;

    let probes =
        ["read_host_canary", "write_host_file", "signal_neighbour", "reach_host_net", "read_kernel_log", "load_module"];
    let mut iso = Vec::new();
    for (b, profile, fails) in [
        ("microvm", "default", &[][..]),
        ("container", "default", &["read_kernel_log"][..]),
        ("container-privileged", "privileged", &["read_kernel_log", "load_module", "write_host_file"][..]),
        ("crun", "default", &["read_kernel_log"][..]),
    ] {
        for p in probes {
            let failure = fails.contains(&p);
            iso.push(IsolationRow {
                backend: b.into(),
                profile: profile.into(),
                probe: p.into(),
                outcome: if failure { ProbeOutcome::Reached } else { ProbeOutcome::Blocked },
                detail: if failure { "read 4 KiB <kmsg> & \"friends\"".into() } else { "EPERM".into() },
                host_check: if p == "write_host_file" { "canary unchanged".into() } else { String::new() },
                failure,
            });
        }
    }
    rd.write_csv(&iso)?;
    rd.write_csv(&surface_rows())?;

    let mut blast = Vec::new();
    for (b, hit) in [("microvm", 1.05), ("container", 1.2)] {
        for (n, limited, extra) in [("cpu-hog", true, 1.0f64), ("memory-hog", true, 1.1), ("fork-loop", false, 2.7)] {
            let s = if b == "container" && n == "fork-loop" { hit * extra } else { 1.0 + (hit - 1.0) * extra.min(1.1) };
            blast.push(BlastRow {
                backend: b.into(),
                neighbour: n.parse().expect("fixture neighbour"),
                limited,
                victim_alone_s: 0.010,
                victim_with_neighbour_s: 0.010 * s,
                slowdown: s,
                victim_ok: true,
                neighbour_cpus: Some(2.0),
            });
        }
    }
    rd.write_csv(&blast)?;

    let mut snaps = Vec::new();
    for (b, save_per_mib, bytes_per_mib) in [("container", 0.0030, 1.0), ("microvm", 0.0012, 1.05)] {
        for dirty in [16u64, 64] {
            snaps.push(SnapshotRow {
                backend: b.into(),
                dirty_mib: dirty,
                save_s: 0.004 + save_per_mib * dirty as f64,
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // MiBs of bytes, positive
                save_bytes: (bytes_per_mib * (dirty << 20) as f64) as u64,
                restore_s: if b == "microvm" { 0.0021 } else { 0.019 },
                cold_start_s: if b == "microvm" { 0.0032 } else { 0.024 },
                shared_bytes: (b == "microvm").then_some(dirty << 20),
            });
        }
    }
    rd.write_csv(&snaps)?;

    // Cross-check: five samples per clock, in milliseconds.
    use results::CrossClock as C;
    let ms = |base: f64| [0.0, 0.3, -0.2, 0.5, 0.1].map(|d| (base + d) * 1e-3);
    let mut cross = Vec::new();
    for (b, clock, base) in [
        ("container", C::VmctLaunchToReady, 4.5),
        ("container", C::VmctRun, 14.0),
        ("container", C::VmctRunStart, 5.4),
        ("container", C::VmctRunLessStart, 8.6),
        ("crun", C::VmctLaunchToReady, 14.0),
        ("crun", C::PeerCliRun, 14.2),
        ("crun", C::VmctRun, 25.0),
        ("crun", C::VmctRunStart, 5.5),
        ("crun", C::VmctRunLessStart, 19.5),
    ] {
        cross.extend(results::CrossCheckRow::of(b, clock, &format!("{clock} on {b}"), &ms(base)));
    }
    results::crosscheck::fill_ratios(&mut cross, "container");
    rd.write_csv(&cross)?;
    let (idle, victims) = crate::density_neighbours::fixture_rows();
    rd.write_csv(&idle)?;
    rd.write_csv(&victims)?;
    rd.write_csv(&crash_rows())?;
    rd.write_csv(&memory_rows())?;
    rd.write_csv(&ksm_rows())?;
    rd.write_csv(&page_cache_rows())?;
    Ok(rd)
}

/// Crash containment: 0 of 3 containers survive their guest kernel's crash, 2 of 3 VMs survive one's.
fn crash_rows() -> Vec<results::CrashRow> {
    let row = |backend: &str, model, survivors, victim_slowdown| results::CrashRow {
        backend: backend.into(),
        model,
        instances: 3,
        crashed: 1,
        survivors,
        victim_slowdown,
        detail: format!("fixture: {backend} under QEMU TCG"),
    };
    vec![
        row("container", results::IsolationModel::Container, 0, None),
        row("qemu-tcg", results::IsolationModel::Microvm, 2, Some(0.8)),
    ]
}

/// Give-back rows: the container frees 3/4 of a 64 MiB burst, the bare microVM keeps it.
fn memory_rows() -> Vec<results::GiveBackRow> {
    let mib = 1u64 << 20;
    [("container", 1, 65, 17, results::GiveBack::ProcessFrees), ("microvm", 2, 66, 66, results::GiveBack::None)]
        .map(|(b, before, peak, after, mechanism)| results::GiveBackRow {
            backend: b.into(),
            instances: 4,
            burst_bytes: 64 * mib,
            held_before_bytes: before * mib,
            held_peak_bytes: peak * mib,
            held_after_bytes: after * mib,
            mechanism,
            after_s: 60.2,
            given_back_fraction: results::GiveBackRow::fraction(before * mib, peak * mib, after * mib),
            half_back_s: (after < peak).then_some(0.5),
            detail: "held = fixture".into(),
        })
        .to_vec()
}

/// Page-cache rows: 4 containers share one 64 MiB cached copy (16.25 MiB each); the bare microVM has no
/// file system.
fn page_cache_rows() -> Vec<results::PageCacheRow> {
    let mib = (1u64 << 20) as f64;
    vec![
        results::PageCacheRow {
            backend: "container".into(),
            instances: 4,
            file_bytes: 64 << 20,
            private_bytes_per_instance: Some(0.25 * mib),
            private_growth_bytes_per_instance: Some(0.25 * mib),
            copy_bytes_per_instance: None,
            shared_host_cache_bytes: Some(64 << 20),
            host_bytes_per_instance: Some(16.25 * mib),
            how: "fixture: shared = host page cache of the layer's file".into(),
        },
        results::PageCacheRow::not_measured("microvm", 4, 64 << 20, "the bare guest has no file system"),
    ]
}

/// KSM rows: the container's memory merges, the bare microVM's does not.
fn ksm_rows() -> Vec<results::KsmRow> {
    let mib = 1u64 << 20;
    [
        (
            "container",
            48.0,
            "64.0 of 66.0 MiB resident in mergeable mappings (VmFlags mg), host processes of all 4 instances",
        ),
        (
            "microvm",
            0.0,
            "0.0 of 70.0 MiB resident in mergeable mappings (VmFlags mg), host processes of all 4 instances",
        ),
    ]
    .map(|(b, saved_mib, mergeable)| results::KsmRow {
        backend: b.into(),
        instances: 4,
        saved_bytes_per_instance: saved_mib * mib as f64,
        ksm_cpu_s: 1.5,
        window_s: 30.0,
        hold_bytes: 64 * mib,
        held_before_bytes: 66 * mib,
        held_after_bytes: 66 * mib,
        full_scans: 3,
        mergeable: mergeable.into(),
    })
    .to_vec()
}

/// [`write`] plus an emulated linux guest `qemu-tcg` (a copy of the `microvm` backend's info with
/// `guest_model` linux and `emulated` true) in run.json; its rows are the tests' to add.
pub fn write_with_emulated_guest(dir: &Path) -> Result<RunDir, RunDirError> {
    let rd = write(dir)?;
    let mut meta = rd.read_meta()?;
    if let Some(vm) = meta.backends.iter().find(|b| b.name == "microvm") {
        let mut tcg = vm.clone();
        (tcg.name, tcg.guest_model, tcg.emulated) = ("qemu-tcg".into(), Some(GuestModel::Linux), true);
        meta.backends.push(tcg);
    }
    rd.write_meta(&meta)?;
    Ok(rd)
}

/// A run standing in for one from a host with VT-x (issue 15 item 5): [`write_with_emulated_guest`]'s run
/// with host KVM `kvm_intel` (host `fixture-vtx-host`, run `fixture-vtx-run`) and the linux guest as
/// `microvm-linux`, run by our VMM without emulation, with its own startup rows (the bare guest's modes,
/// 12x its times) and density rows (the bare guest's sweep plus 24 MiB per instance); `qemu-tcg` is left
/// out as `vmct compare` leaves it out on such a host (unavailable: microvm-linux runs the same guest
/// model without emulation).
pub fn write_vtx_host(dir: &Path) -> Result<RunDir, RunDirError> {
    let rd = write_with_emulated_guest(dir)?;
    let mut meta = rd.read_meta()?;
    meta.id = "fixture-vtx-run".into();
    meta.host.hostname = "fixture-vtx-host".into();
    meta.host.kvm = KvmFlavour::KvmIntel;
    meta.host.virtualized = false;
    meta.caveats = meta.host.caveats();
    for b in &mut meta.backends {
        match b.name.as_str() {
            "microvm-linux" => (b.available, b.reason, b.emulated) = (true, None, false),
            "qemu-tcg" => {
                b.available = false;
                b.reason = Some("microvm-linux runs the same guest model here without emulation".into());
            }
            _ => {}
        }
    }
    rd.write_meta(&meta)?;
    let linux = "microvm-linux";
    let mut samples: Vec<StartupSample> = rd.read_csv()?;
    let mut more: Vec<StartupSample> = samples.iter().filter(|s| s.backend == "microvm").cloned().collect();
    for s in &mut more {
        (s.backend, s.launch_to_ready_s) = (linux.into(), s.launch_to_ready_s * 12.0);
    }
    samples.extend(more);
    rd.write_csv(&samples)?;
    let mut sums: Vec<StartupSummary> = rd.read_csv()?;
    let mut more: Vec<StartupSummary> = sums.iter().filter(|s| s.backend == "microvm").cloned().collect();
    for s in &mut more {
        s.backend = linux.into();
        for v in [&mut s.median_s, &mut s.p90_s, &mut s.p99_s, &mut s.min_s, &mut s.max_s, &mut s.mean_s, &mut s.mad_s]
        {
            *v *= 12.0;
        }
        s.launches_per_s = s.launches_per_s.map(|r| r / 12.0);
    }
    sums.extend(more);
    rd.write_csv(&sums)?;
    let extra_mib: i64 = 24;
    let extra = (extra_mib << 20) as f64;
    let mut steps: Vec<DensityStep> = rd.read_csv()?;
    let mut more: Vec<DensityStep> = steps.iter().filter(|s| s.backend == "microvm").cloned().collect();
    for s in &mut more {
        s.backend = linux.into();
        s.mem_used_delta_bytes += (extra_mib << 20) * i64::from(s.instances);
    }
    steps.extend(more);
    rd.write_csv(&steps)?;
    let mut fits: Vec<DensityFit> = rd.read_csv()?;
    let mut more: Vec<DensityFit> = fits.iter().filter(|f| f.backend == "microvm").cloned().collect();
    for f in &mut more {
        f.backend = linux.into();
        f.slope_bytes += extra;
        f.instances_per_gib = 1073741824.0 / f.slope_bytes;
    }
    fits.extend(more);
    rd.write_csv(&fits)?;
    Ok(rd)
}

/// Write the fixture into `dir`, then degrade it the way broken runs do (issue 17, case 9): the `container`
/// sequential startup is a single launch of 0 s; `container-privileged` has a single 0.5 ms launch (plausible,
/// but one sample, faster than every microVM); no concurrent startup mode was measured (startup_summary.csv is
/// present without launch rates); the `microvm` density fit has a NaN slope and the `container` fit a negative
/// one (-1074 instances per GiB).
pub fn write_degenerate(dir: &Path) -> Result<RunDir, RunDirError> {
    let rd = write(dir)?;
    let mut rows: Vec<StartupSummary> = rd.read_csv()?;
    rows.retain(|r| r.mode == StartupMode::Sequential);
    for r in &mut rows {
        let single = match r.backend.as_str() {
            "container" => 0.0,
            "container-privileged" => 0.0005,
            _ => continue,
        };
        (r.n, r.median_s, r.p90_s, r.p99_s, r.min_s, r.max_s, r.mean_s, r.mad_s) =
            (1, single, single, single, single, single, single, 0.0);
    }
    rd.write_csv(&rows)?;
    let mut fits: Vec<DensityFit> = rd.read_csv()?;
    for f in &mut fits {
        match f.backend.as_str() {
            "microvm" => (f.slope_bytes, f.instances_per_gib, f.r2) = (f64::NAN, f64::NAN, f64::NAN),
            "container" => (f.slope_bytes, f.instances_per_gib) = (-999_750.0, 1073741824.0 / -999_750.0),
            _ => {}
        }
    }
    rd.write_csv(&fits)?;
    Ok(rd)
}
