#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The microvm backend end to end: one VMM process per VM booting the bare guest, through the same
//! `Backend`/`Instance` API the experiments use. Needs /dev/kvm (skips without it unless
//! `VMCT_REQUIRE_PRIVILEGED=1`).
use harness::backend::microvm::{backends, MicrovmBackend};
use harness::backend::vmm_jail::JailMode;
use harness::backend::{collect_events, Backend, Event, Instance, InstanceSpec};
use harness::privileged::{gate, Need};
use std::time::Duration;
use workloads::protocol::ProbeOutcome;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(30);

fn spec(id: &str, words: &str) -> InstanceSpec {
    InstanceSpec::new(format!("vmct-test-{id}"), Scenario::parse(words.split_whitespace()).unwrap())
}

fn results(events: &[Event]) -> Vec<(String, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Result { name, value, .. } => Some((name.clone(), *value)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_scenario_boots_and_reports() {
    if !gate("every_scenario_boots_and_reports", &[Need::Kvm]) {
        return;
    }
    let b = MicrovmBackend::default();
    assert!(b.info().available, "{:?}", b.info().reason);

    // ready: phases from the VMM, then done 0.
    let mut i = b.launch(&spec("ready", "ready")).unwrap();
    let r = i.wait_ready(T).unwrap();
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    for want in ["vmm_start", "kvm_open", "vm_create", "memory", "load", "vcpu_setup", "first_exit", "ready"] {
        assert!(names.contains(&want), "phase {want} missing from {names:?}");
    }
    assert!(r.launch_to_ready_s() > 0.0 && r.launch_to_ready_s() < 5.0);
    let ev = collect_events(i.as_mut(), T).unwrap();
    assert_eq!(ev.last(), Some(&Event::Done { status: 0 }), "{ev:?}");
    let exit = i.stop(T).unwrap();
    assert_eq!((exit.status, exit.error), (Some(0), None));

    // cpu: ops/s and the same check value as the host kernels compute.
    let mut i = b.launch(&spec("cpu", "cpu --iters 20000")).unwrap();
    i.wait_ready(T).unwrap();
    let res = results(&collect_events(i.as_mut(), T).unwrap());
    let check = workloads::kernels::cpu_sha256_chain(20000) as f64;
    assert!(res.iter().any(|(n, v)| n == "cpu.sha256" && *v > 0.0), "{res:?}");
    assert!(res.contains(&("cpu.check".to_string(), check)), "{res:?}");
    i.stop(T).unwrap();

    // mem: three bandwidth figures.
    let mut i = b.launch(&spec("mem", "mem --mib 4")).unwrap();
    i.wait_ready(T).unwrap();
    let res = results(&collect_events(i.as_mut(), T).unwrap());
    for m in ["mem.first_touch", "mem.seq", "mem.random_pages"] {
        assert!(res.iter().any(|(n, v)| n == m && *v > 0.0), "{m}: {res:?}");
    }
    i.stop(T).unwrap();

    // syscall / io: unsupported, never zero.
    for (id, words) in [("syscall", "syscall --n 5"), ("io", "io --mib 1")] {
        let mut i = b.launch(&spec(id, words)).unwrap();
        i.wait_ready(T).unwrap();
        let ev = collect_events(i.as_mut(), T).unwrap();
        assert!(
            ev.iter().any(
                |e| matches!(e, Event::Unsupported { what, reason } if what == id && reason.contains("bare guest"))
            ),
            "{ev:?}"
        );
        assert!(results(&ev).is_empty());
        i.stop(T).unwrap();
    }
}

#[test]
fn idle_holds_memory_until_stopped_and_splits_guest_from_vmm_memory() {
    if !gate("idle_holds_memory_until_stopped_and_splits_guest_from_vmm_memory", &[Need::Kvm]) {
        return;
    }
    let b = &backends()[0];
    let mut i = b.launch(&spec("idle", "idle --hold-mib 8")).unwrap();
    i.wait_ready(T).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Still running: it waits for stop.
    assert!(i.next_event(Duration::from_millis(100)).is_err());
    let s = i.stats();
    let guest = s.guest_mem_bytes.unwrap();
    assert!(guest >= 8 << 20, "guest memory resident {guest}");
    let overhead = s.vmm_overhead_bytes.unwrap();
    assert!(overhead > 0 && overhead < 16 << 20, "vmm overhead {overhead}");
    let exit = i.stop(T).unwrap();
    assert_eq!(exit.status, Some(0));
}

fn misbehave(hook: &str, watchdog_ms: Option<u64>) -> (Option<i32>, Option<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(hook, "ready");
    s.env.push(("VMCT_GUEST_TEST_HOOK".into(), hook.into()));
    if let Some(ms) = watchdog_ms {
        s.env.push(("VMCT_VM_WATCHDOG_MS".into(), ms.to_string()));
    }
    s.log_dir = Some(dir.path().to_path_buf());
    let mut i = MicrovmBackend::default().launch(&s).unwrap();
    i.wait_ready(T).unwrap();
    let _ = collect_events(i.as_mut(), T).unwrap();
    let exit = i.stop(T).unwrap();
    let log = std::fs::read_to_string(dir.path().join(format!("{}.log", s.id))).unwrap();
    (exit.status, exit.error, log)
}

#[test]
fn misbehaving_guests_end_with_typed_errors_and_the_harness_carries_on() {
    if !gate("misbehaving_guests_end_with_typed_errors_and_the_harness_carries_on", &[Need::Kvm]) {
        return;
    }
    let cases = [
        ("fault-ud", "guest_exception", "#UD invalid opcode"),
        ("unknown-port", "unknown_port", "unknown port 0x604"),
        ("unmapped-read", "guest_exception", "#PF page fault"),
        ("mmio-write", "mmio", "guest MMIO write"),
    ];
    for (hook, kind, text) in cases {
        let (status, error, log) = misbehave(hook, None);
        assert_eq!(
            harness::backend::microvm::describe_exit(status.unwrap()).as_deref(),
            Some(format!("vm ended abnormally: {kind} (see the instance log)").as_str()),
            "{hook}: {log}"
        );
        assert!(error.unwrap().contains(kind));
        assert!(log.contains(text) && log.contains("at rip 0x"), "{hook}: {log}");
    }
    let t = std::time::Instant::now();
    let (_, error, log) = misbehave("loop-forever", Some(300));
    assert!(error.unwrap().contains("watchdog"), "{log}");
    assert!(log.contains("watchdog: guest still running after 300ms"), "{log}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // The harness carries on: a healthy VM right after.
    let mut i = MicrovmBackend::default().launch(&spec("after", "ready")).unwrap();
    i.wait_ready(T).unwrap();
    assert_eq!(i.stop(T).unwrap().status, Some(0));
}

#[test]
fn probe_scenario_reports_guest_probes() {
    if !gate("probe_scenario_reports_guest_probes", &[Need::Kvm]) {
        return;
    }
    let mut i = MicrovmBackend::default().launch(&spec("probe", "probe")).unwrap();
    i.wait_ready(T).unwrap();
    let ev = collect_events(i.as_mut(), T).unwrap();
    let probes: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Probe { id, outcome, detail } => Some((id.clone(), *outcome, detail.clone())),
            _ => None,
        })
        .collect();
    assert!(!probes.is_empty(), "{ev:?}");
    for (id, outcome, detail) in &probes {
        assert!(id.starts_with("guest."), "{id}");
        assert_eq!(*outcome, ProbeOutcome::Blocked, "{id}: {detail}");
    }
    assert_eq!(ev.last(), Some(&Event::Done { status: 0 }));
    assert_eq!(i.stop(T).unwrap().status, Some(0));
}

fn status_field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
}

#[test]
fn a_jailed_vmm_runs_its_guest_in_its_own_namespaces_without_capabilities_under_its_filter() {
    if !gate(
        "a_jailed_vmm_runs_its_guest_in_its_own_namespaces_without_capabilities_under_its_filter",
        &[Need::Root, Need::Kvm],
    ) {
        return;
    }
    // The warm, pooled path (VMCT_VMM_JAIL=pooled), whose jails are reused; the cold default is checked below.
    let b = MicrovmBackend::with_jail_mode(JailMode::Pooled);
    let cwd = std::env::current_dir().unwrap();
    let mut i = b.launch_microvm(&spec("jailed", "idle")).unwrap();
    // The launching thread stepped into the jail for the spawn and is back out of it.
    for ns in ["net", "ipc", "mnt", "pid_for_children"] {
        let here = std::fs::read_link(format!("/proc/thread-self/ns/{ns}")).unwrap();
        let process = std::fs::read_link(format!("/proc/self/ns/{}", ns.trim_end_matches("_for_children"))).unwrap();
        assert_eq!(here, process, "launching thread left in another {ns} namespace");
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0);
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    i.wait_ready(T).unwrap();
    let pid = i.pid().unwrap();
    let (dir, cgroups) = i.jail_paths().expect("a jail (VMCT_VMM_JAIL is not off)");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // The bounding set stays the host's (dropping it costs 0.1 ms, and it only limits what an execve
    // could gain: the VMM is not root, its root is nosuid, it has no_new_privs and may not execve).
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(status_field(&status, cap), "0000000000000000", "{cap} of the VMM: {status}");
    }
    let uid = status_field(&status, "Uid:");
    assert!(uid.split_whitespace().all(|u| u != "0"), "VMM uid {uid}");
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    assert_eq!(status_field(&status, "Seccomp:"), "2", "seccomp filter mode");
    assert_eq!(status_field(&status, "NSpid:").split_whitespace().last(), Some("1"), "pid 1 of its own pid namespace");
    for ns in ["mnt", "net", "ipc", "pid"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace shared with the host");
    }
    // Its root is the jail directory holding only what it needs; its cgroup is the jail's.
    let ls = |d: String| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(ls(format!("/proc/{pid}/root")), ["dev", "vmct-guest", "vmct-vmm"]);
    assert_eq!(ls(format!("/proc/{pid}/root/dev")), ["kvm"]);
    assert!(dir.is_dir());
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(cg.lines().any(|l| l.contains(":memory:") && l.ends_with(name)), "{cg}");
    let first_pid_ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    std::fs::create_dir(dir.join("snapshot-9")).unwrap();
    // And the guest still runs to the end; the jail is kept for reuse until the backend goes.
    let exit = i.stop(T).unwrap();
    assert_eq!((exit.status, exit.error), (Some(0), None));
    drop(i);
    // The next VMM gets the cleaned jail (never while the first lived) and a new pid namespace.
    let mut i = b.launch_microvm(&spec("jailed-again", "ready")).unwrap();
    let pid = i.pid().unwrap();
    assert_eq!(i.jail_paths().unwrap().0, dir);
    assert!(!dir.join("snapshot-9").exists(), "the last run's files were not cleaned");
    assert_ne!(std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(), first_pid_ns);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.lines().any(|l| l.contains(":memory:") && l.ends_with(name)), "{cg}");
    i.wait_ready(T).unwrap();
    assert_eq!(i.stop(T).unwrap().status, Some(0));
    // Instances share the backend's pool; when both are gone, so are the jails.
    drop(i);
    drop(b);
    assert!(!dir.exists(), "jail dir {} left behind", dir.display());
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    // The cold default (VMCT_VMM_JAIL unset: inline) prepares each jail at launch and removes it at stop:
    // nothing is kept ahead for the next VMM, as the container keeps nothing ahead either.
    let cold = MicrovmBackend::default();
    let mut i = cold.launch_microvm(&spec("jailed-cold", "ready")).unwrap();
    let (dir, cgroups) = i.jail_paths().expect("a jail");
    i.wait_ready(T).unwrap();
    assert_eq!(i.stop(T).unwrap().status, Some(0));
    drop(i);
    assert!(!dir.exists(), "a cold launch's jail {} was kept", dir.display());
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} kept", d.display());
    }
    drop(cold);
}

#[test]
fn a_vmm_that_breaks_its_seccomp_filter_is_killed_by_sigsys_and_leaves_nothing_behind() {
    if !gate(
        "a_vmm_that_breaks_its_seccomp_filter_is_killed_by_sigsys_and_leaves_nothing_behind",
        &[Need::Root, Need::Kvm],
    ) {
        return;
    }
    let log_dir = tempfile::tempdir().unwrap();
    let mut s = spec("violate", "ready");
    s.env.push(("VMCT_VMM_TEST_VIOLATE_SECCOMP".into(), "1".into()));
    s.log_dir = Some(log_dir.path().to_path_buf());
    let b = MicrovmBackend::default();
    let mut i = b.launch_microvm(&s).unwrap();
    let pid = i.pid().unwrap();
    let (dir, cgroups) = i.jail_paths().expect("a jail (VMCT_VMM_JAIL is not off)");
    let e = i.wait_ready(T).unwrap_err().to_string();
    assert!(e.contains("killed by signal 31"), "{e}");
    let exit = i.stop(T).unwrap();
    assert_eq!(exit.signal, Some(libc::SIGSYS), "{exit:?}");
    assert!(exit.error.as_deref().unwrap_or("").contains("seccomp filter (SIGSYS)"), "{exit:?}");
    let log = std::fs::read_to_string(log_dir.path().join(format!("{}.log", s.id))).unwrap();
    assert!(!log.contains("was not blocked"), "{log}");
    // Nothing left: the process, its jail directory, its cgroups.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "VMM {pid} still exists");
    assert!(!dir.exists(), "jail dir {} left behind", dir.display());
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    // The harness carries on, also after this thread started another one (which shares its fs
    // struct, as std threads do).
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let mut i = b.launch(&spec("after-sigsys", "ready")).unwrap();
    drop(tx);
    let _ = other.join();
    i.wait_ready(T).unwrap();
    assert_eq!(i.stop(T).unwrap().status, Some(0));
}

/// CPU ticks (user + system, guest time included) of the thread named `comm` in process `pid`.
fn thread_ticks(pid: u32, comm: &str) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if std::fs::read_to_string(t.path().join("comm")).ok()?.trim() != comm {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
    }
    None
}

/// A bare guest given 2 vCPUs runs its `cpu` work on both (the blast radius's equal allotment): the
/// VMM's secondary vCPU thread spends CPU time. Before, extra vCPUs were created but stayed parked.
#[test]
fn cpu_work_runs_on_every_vcpu_the_guest_is_given() {
    if !gate("cpu_work_runs_on_every_vcpu_the_guest_is_given", &[Need::Kvm]) {
        return;
    }
    let b = MicrovmBackend::default();
    let mut s = spec("smp", "cpu --iters 100000000");
    s.vcpus = 2;
    let mut i = b.launch(&s).unwrap();
    i.wait_ready(T).unwrap();
    let pid = i.pid().expect("the VMM's pid");
    let mut ticks = None;
    for _ in 0..100 {
        ticks = thread_ticks(pid, "vcpu1");
        if ticks.is_some_and(|t| t > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = i.stop(Duration::from_millis(200));
    assert!(ticks.is_some_and(|t| t > 0), "secondary vCPU thread vcpu1 of VMM {pid}: ticks {ticks:?}");
    // One vCPU: no secondary thread.
    let mut one = b.launch(&spec("smp1", "cpu --iters 100000000")).unwrap();
    one.wait_ready(T).unwrap();
    let pid = one.pid().unwrap();
    assert_eq!(thread_ticks(pid, "vcpu1"), None);
    let _ = one.stop(Duration::from_millis(200));
}

#[test]
fn the_vmms_layer_c_is_measured_from_its_live_filter() {
    if !gate("the_vmms_layer_c_is_measured_from_its_live_filter", &[Need::Root, Need::Kvm]) {
        return;
    }
    let b = MicrovmBackend::default();
    let declared = microvm::confine::bare_surface().syscalls_allowed;
    let mut i = b.launch_microvm(&spec("confinement", "idle")).unwrap();
    i.wait_ready(T).unwrap();
    let c = harness::backend::confinement::Confinement::measure(i.pid().unwrap()).unwrap();
    assert_eq!(i.stop(T).unwrap().status, Some(0));
    eprintln!("{}", c.note("vmct-vmm"));
    // Every thread is filtered, and no thread allows more than the VMM's own allowlist declares.
    assert!(c.threads.iter().all(|t| t.mode == 2), "{c:?}");
    let t = c.least_confined().expect("filters readable");
    let all = t.allowed.unwrap() + t.argument_dependent.unwrap();
    assert!(all <= declared && t.allowed.unwrap() > 0, "measured {all}, declared {declared}: {c:?}");
    // The backend's surface now carries the measurement taken at ready.
    let s = b.attack_surface();
    assert!(s.supervisor_note.contains("measured from the live process"), "{}", s.supervisor_note);
}
