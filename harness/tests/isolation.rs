#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Isolation probes against real setups (needs root): the process baseline is the deliberately weakest
//! setup, so every key probe must report `reached` there and the host-side checks must detect and undo
//! the changes; then the container profiles when the container backends are built in.
use harness::backend::{registry, Backend};
use harness::isolation::{self, canary, IsolationOptions};
use harness::privileged::{gate, Need};
use results::{IsolationRow, ProbeOutcome as O};
use std::path::PathBuf;

fn opts() -> IsolationOptions {
    // One writer for the cached workload binary (tests run in parallel threads).
    static W: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let workload = W.get_or_init(|| harness::artifacts::workload_path().expect("workload binary")).clone();
    let mut o = IsolationOptions::new(workload, std::env::temp_dir());
    o.blast = None;
    o
}

fn row<'a>(rows: &'a [IsolationRow], id: &str) -> &'a IsolationRow {
    rows.iter().find(|r| r.probe == id).unwrap_or_else(|| panic!("no row for {id}: {rows:#?}"))
}

fn host_state() -> (String, String, String) {
    let r = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    (r("/proc/sys/kernel/hostname"), r("/proc/sys/kernel/domainname"), r(canary::SYSCTL))
}

/// The tests of this file plant canaries and check for leftovers of the host: one at a time, so a
/// test's leftover check never sees the canaries of another test still running in this process.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn leftovers() -> Vec<PathBuf> {
    // Backends' one-time host checks (runsc's platform detection runs a real sandbox in a
    // `vmct-probe-runsc-<pid>` scratch dir, once per process, under a lock) may be running in another
    // test thread of this process: finish them first, so only what stays behind counts.
    let o = opts();
    for b in registry::all(&o.workload, &o.work_dir) {
        let _ = b.info();
    }
    let mut v = Vec::new();
    for dir in [std::env::temp_dir(), PathBuf::from("/sys/fs/cgroup/pids"), PathBuf::from("/sys/fs/cgroup")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Probe scratch dirs end in their owner's pid: another vmct's (a concurrent run) are not ours.
            let ours = !n.starts_with("vmct-probe-") || n.ends_with(&format!("-{}", std::process::id()));
            if ours && (n.starts_with("vmct-canary-") || n.starts_with("vmct-escape-") || n.starts_with("vmct-probe-"))
            {
                v.push(e.path());
            }
        }
    }
    v
}

fn backend(name: &str) -> Option<Box<dyn Backend>> {
    let o = opts();
    registry::all(&o.workload, &o.work_dir).into_iter().find(|b| b.name() == name)
}

#[test]
fn every_key_probe_detects_the_unisolated_process_baseline_and_the_host_undoes_it() {
    let _serial = serial();
    if !gate("isolation process baseline", &[Need::Root]) {
        return;
    }
    let before = host_state();
    let b = backend("process").expect("process backend");
    let (rows, notes) = isolation::probe_backend(b.as_ref(), &opts(), &[]).expect("probe run");
    for r in &rows {
        eprintln!("{:<20} {:<8} fail={:<5} {} | {}", r.probe, r.outcome, r.failure, r.detail, r.host_check);
    }
    assert_eq!(host_state(), before, "host values restored");
    assert!(leftovers().is_empty(), "leftovers: {:?}", leftovers());
    assert!(notes.is_empty(), "{notes:?}");
    for id in [
        "fs.host_canary",
        "pid.host_visible",
        "pid.ptrace_host",
        "net.host_loopback",
        "net.raw_socket",
        "uts.hostname",
        "uts.domainname",
        "sysctl.host_write",
        "mount.tmpfs",
        "mount.proc",
        "mount.sysfs",
        "dev.block",
        "caps.raise",
        "clock.settime",
        "keyring.add_key",
        "cgroup.escape",
        "cgroup.raise_limit",
    ] {
        let r = row(&rows, id);
        assert_eq!(r.outcome, O::Reached, "{id} on the unisolated baseline: {r:?}");
        assert!(r.failure, "{id} counted as a failure: {r:?}");
    }
    if std::path::Path::new("/dev/kvm").exists() {
        assert_eq!(row(&rows, "dev.kvm").outcome, O::Reached);
    }
    // Host-side detection, not just the probe's word.
    assert!(row(&rows, "uts.hostname").host_check.contains("restored"), "{rows:#?}");
    assert!(row(&rows, "sysctl.host_write").host_check.contains("restored"));
    assert!(row(&rows, "net.host_loopback").host_check.starts_with("listener got 1"));
    assert!(row(&rows, "cgroup.escape").host_check.contains("entered"));
    // Information rows are never failures; the census found a real surface.
    assert!(!row(&rows, "info.kernel").failure);
    let census = row(&rows, "census.syscalls");
    let counts = workloads::probe_ids::CensusCounts::parse(&census.detail).expect("census counts");
    assert!(!census.failure && counts.reachable > 100, "{census:?}");
    assert_eq!(counts.table, harness::backend::surface::unfiltered_syscalls(), "the census probes the whole table");
    assert_reaches_host_devices_and_sysrq("process", &rows);
}

/// Device nodes the host itself can open (`/dev/NAME` opens here) must be reached by an instance that is
/// not isolated from the host's devices, and /proc/sysrq-trigger must open for write where the host has
/// it. Entries the host cannot open either (absent driver, the host's own device cgroup) prove nothing
/// and are skipped, with a note.
fn assert_reaches_host_devices_and_sysrq(backend: &str, rows: &[IsolationRow]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut checked = 0;
    for d in workloads::probe_ids::DEVICE_NODES.iter().filter(|d| d.major.is_some()) {
        let host = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/dev/{}", d.name));
        let r = row(rows, d.id);
        match host {
            Ok(_) => {
                assert_eq!(r.outcome, O::Reached, "{backend}: {} opens on the host: {r:?}", d.id);
                checked += 1;
            }
            Err(e) => eprintln!("{backend}: {} not checked: the host cannot open /dev/{} either ({e})", d.id, d.name),
        }
    }
    assert!(checked > 0, "no host device to check against");
    let sysrq = row(rows, "kernel.sysrq_trigger");
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        assert_eq!(sysrq.outcome, O::Reached, "{backend}: {sysrq:?}");
    } else {
        assert!(sysrq.outcome == O::Error && sysrq.detail.contains("ENOENT"), "absent on this host: {sysrq:?}");
    }
}

/// The Linux backends available on this host (process, containers, crun/runc, a Linux guest when it runs).
fn linux_backends() -> Vec<Box<dyn Backend>> {
    let o = opts();
    registry::all(&o.workload, &o.work_dir)
        .into_iter()
        .filter(|b| {
            let i = b.info();
            let linux = b.capabilities().linux_probes;
            if linux && !i.available {
                eprintln!("{}: unavailable here, not probed: {:?}", i.name, i.reason);
            }
            linux && i.available
        })
        .collect()
}

#[test]
fn every_linux_backend_reports_every_new_probe() {
    let _serial = serial();
    if !gate("isolation new probes on every Linux backend", &[Need::Root]) {
        return;
    }
    let mut o = opts();
    let ids: Vec<String> = workloads::probe_ids::surface_probes().map(String::from).collect();
    o.probes = Some(ids.clone());
    let backends = linux_backends();
    assert!(backends.iter().any(|b| b.name() == "process"));
    for b in &backends {
        let (rows, notes) = isolation::probe_backend(b.as_ref(), &o, &[]).unwrap();
        // A Linux guest gets no environment from the host (so no VMCT_PROBE_ONLY): it may report more.
        let new: Vec<&IsolationRow> = rows.iter().filter(|r| ids.contains(&r.probe)).collect();
        let got: Vec<&str> = new.iter().map(|r| r.probe.as_str()).collect();
        assert_eq!(got, ids, "{}: every new probe once, in order: {rows:#?} {notes:?}", b.name());
        for r in new {
            assert!(["reached", "blocked", "error"].contains(&r.outcome.as_str()), "{r:?}");
        }
    }
    assert!(leftovers().is_empty(), "leftovers: {:?}", leftovers());
}

#[test]
fn privileged_container_reaches_the_device_and_sysrq_probes() {
    let _serial = serial();
    if !gate("isolation privileged devices", &[Need::Root]) {
        return;
    }
    let Some(p) = backend("container-privileged") else { panic!("no container-privileged backend") };
    if !p.info().available {
        eprintln!("skipped: container-privileged unavailable: {:?}", p.info().reason);
        return;
    }
    let mut o = opts();
    o.probes = Some(workloads::probe_ids::surface_probes().map(String::from).collect());
    let (rows, notes) = isolation::probe_backend(p.as_ref(), &o, &[]).unwrap();
    for r in &rows {
        eprintln!("{:<26} {:<8} {}", r.probe, r.outcome, r.detail);
    }
    assert!(notes.is_empty(), "{notes:?}");
    assert_reaches_host_devices_and_sysrq("container-privileged", &rows);
}

/// The default and userns profiles and crun/runc with the generated bundle (device cgroup, masked paths,
/// containers-common seccomp) block every device, masked-path and kernel-reach probe.
#[test]
fn hardened_profiles_block_every_new_probe() {
    let _serial = serial();
    if !gate("isolation hardened profiles", &[Need::Root]) {
        return;
    }
    let mut o = opts();
    o.probes = Some(workloads::probe_ids::surface_probes().map(String::from).collect());
    let base = backend("process").expect("process backend");
    let (baseline, _) = isolation::probe_backend(base.as_ref(), &o, &[]).unwrap();
    let podman_allows = unconditionally_allowed(container::seccomp_profile::DEFAULT_PROFILE_PATH);
    for name in ["container", "container-userns", "crun", "runc"] {
        let b = backend(name).unwrap_or_else(|| panic!("no {name} backend"));
        assert!(b.info().available, "{name} must run here: {:?}", b.info().reason);
        let (mut rows, _) = isolation::probe_backend(b.as_ref(), &o, &baseline).unwrap();
        isolation::annotate_with_baseline(&mut rows, &baseline);
        for r in &rows {
            let host = row(&baseline, &r.probe);
            // Blocked; or not applicable because the host itself has no such path/device; or a system call
            // the containers-common profile itself allows (Podman's default, e.g. keyctl): the peers run with
            // the profile their users get, and the matrix still counts the reach.
            // runc (1.1, Debian bookworm) adds its own built-in device allowlist, which includes /dev/net/tun
            // (c 10:200 rwm), to every container's rules whatever the bundle says: a real default of runc.
            let allowed_by_profile = r.probe.strip_prefix("kernel.").is_some_and(|call| podman_allows.contains(call))
                || (name == "runc" && r.probe == "dev.node.net_tun");
            let ok =
                r.outcome == O::Blocked || (r.outcome == O::Error && host.outcome != O::Reached) || allowed_by_profile;
            assert!(
                ok && (allowed_by_profile || !r.failure),
                "{name}: {} must be blocked: {r:?} (baseline {host:?})",
                r.probe
            );
        }
    }
}

#[test]
fn container_profiles_when_available() {
    let _serial = serial();
    if !gate("isolation container profiles", &[Need::Root]) {
        return;
    }
    let o = opts();
    let base = backend("process").expect("process backend");
    let Some(default) = backend("container") else {
        eprintln!("skipped container profiles: no `container` backend in this build yet");
        return;
    };
    let before = host_state();
    let (baseline, _) = isolation::probe_backend(base.as_ref(), &o, &[]).unwrap();
    let (mut rows, notes) = isolation::probe_backend(default.as_ref(), &o, &baseline).unwrap();
    isolation::annotate_with_baseline(&mut rows, &baseline);
    assert_eq!(host_state(), before);
    if rows.iter().all(|r| r.outcome == O::Unsupported) {
        eprintln!("skipped: container unavailable here: {:?}", rows.first());
        return;
    }
    // The device, masked-path and kernel-reach probes of issue 13 are held to "blocked" by
    // `hardened_profiles_block_every_new_probe` (gated until the container hardening is merged).
    let new: Vec<&str> = workloads::probe_ids::surface_probes().collect();
    let fails: Vec<&IsolationRow> = rows.iter().filter(|r| r.failure && !new.contains(&r.probe.as_str())).collect();
    assert!(fails.is_empty(), "container default must show no failures: {fails:#?}\nnotes {notes:?}");
    assert_eq!(row(&rows, "fs.host_canary").outcome, O::Blocked);
    assert_eq!(row(&rows, "net.host_loopback").outcome, O::Blocked);

    if let Some(p) = backend("container-privileged") {
        let (rows, _) = isolation::probe_backend(p.as_ref(), &o, &baseline).unwrap();
        assert_eq!(host_state(), before, "privileged changes undone");
        let fails: Vec<&str> = rows.iter().filter(|r| r.failure).map(|r| r.probe.as_str()).collect();
        assert!(!fails.is_empty(), "privileged profile must show real failures: {rows:#?}");
        eprintln!("container-privileged failures: {fails:?}");
    }
    assert!(leftovers().is_empty(), "leftovers: {:?}", leftovers());
}

#[test]
fn blast_radius_on_the_process_backend_is_bounded_and_reported() {
    let _serial = serial();
    if !gate("blast radius process", &[Need::Root]) {
        return;
    }
    let b = backend("process").expect("process backend");
    let bo = isolation::blast::BlastOptions {
        victim_iters: 20_000,
        rounds: 2,
        hog_secs: 20.0,
        hog_mib: 64,
        fork_max: 32,
        ..Default::default()
    };
    let (rows, notes) = isolation::blast::run_blast(b.as_ref(), &bo, &|m| eprintln!("{m}")).unwrap();
    eprintln!("{rows:#?}\n{notes:#?}");
    assert_eq!(rows.len(), 3, "{rows:#?} {notes:?}");
    for r in &rows {
        assert!(r.victim_ok && r.slowdown.is_finite() && r.slowdown > 0.0, "{r:?}");
        // The process baseline's neighbour gets the same allotment as a container's: N hog threads.
        assert_eq!(r.neighbour_cpus, Some(f64::from(bo.allotment_cpus)), "{r:?}");
    }
}

/// A namespaces-only sandbox (`unshare` with pid, mount, uts, net, ipc, cgroup namespaces; still root in
/// the host user namespace, host filesystem, writable /proc/sys): a deliberately weakened container.
struct UnshareBackend(PathBuf);

impl Backend for UnshareBackend {
    fn name(&self) -> &str {
        "unshare"
    }
    fn info(&self) -> results::BackendInfo {
        results::BackendInfo {
            isolation: None,
            name: "unshare".into(),
            kind: results::BackendKind::Peer,
            model: results::IsolationModel::Container,
            guest_model: None,
            available: true,
            reason: None,
            version: None,
            emulated: false,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // Namespaces only: no cgroup, no limits, the host's kernel.
        results::Capabilities { linux_probes: true, ..results::Capabilities::default() }
    }
    fn launch(
        &self,
        spec: &harness::backend::InstanceSpec,
    ) -> Result<Box<dyn harness::backend::Instance>, harness::backend::BackendError> {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--fork", "--pid", "--mount-proc", "--uts", "--net", "--ipc", "--mount", "--cgroup"])
            .arg(&self.0)
            .args(spec.scenario.to_string().split_whitespace());
        Ok(Box::new(harness::backend::child::ChildInstance::spawn("unshare", spec, cmd)?))
    }
}

#[test]
fn namespaces_alone_block_namespaced_probes_but_not_the_sysctl_write() {
    let _serial = serial();
    if !gate("isolation unshare sandbox", &[Need::Root]) {
        return;
    }
    if std::process::Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: no unshare binary");
        return;
    }
    let o = opts();
    let before = host_state();
    let (rows, _) = isolation::probe_backend(&UnshareBackend(o.workload.clone()), &o, &[]).unwrap();
    for r in &rows {
        eprintln!("{:<20} {:<8} fail={:<5} {} | {}", r.probe, r.outcome, r.failure, r.detail, r.host_check);
    }
    assert_eq!(host_state(), before, "host values restored");
    for id in ["pid.host_visible", "pid.ptrace_host", "net.host_loopback"] {
        assert_eq!(row(&rows, id).outcome, O::Blocked, "{id}");
    }
    for id in ["uts.hostname", "uts.domainname", "net.raw_socket", "mount.tmpfs", "net.host_loopback"] {
        assert!(!row(&rows, id).failure, "{id} stays inside its namespace: {:?}", row(&rows, id));
    }
    // Same filesystem, same user namespace, writable /proc/sys: real failures the host detects.
    assert!(row(&rows, "fs.host_canary").failure);
    let s = row(&rows, "sysctl.host_write");
    assert!(s.failure && s.host_check.contains("restored"), "{s:?}");
    assert!(leftovers().is_empty(), "leftovers: {:?}", leftovers());
}

#[test]
fn run_isolation_adds_the_baseline_and_marks_host_wide_denials() {
    let _serial = serial();
    if !gate("isolation run_isolation", &[Need::Root]) {
        return;
    }
    let o = opts();
    let sandbox = UnshareBackend(o.workload.clone());
    let out = isolation::run_isolation(&[&sandbox], &o, &|m| eprintln!("{m}")).unwrap();
    let backends: Vec<(String, usize)> = out.failures();
    assert_eq!(backends.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["process", "unshare"]);
    assert!(backends[0].1 > backends[1].1, "the baseline fails more probes: {backends:?}");
    let base = out.rows.iter().find(|r| r.backend == "process").unwrap();
    assert_eq!(base.profile, "none (baseline, no isolation)");
    // /dev/vda is denied on this host even to the baseline: a blocked dev.mem/dev.* row in the
    // sandbox that the host blocks too must say so.
    for r in out.rows.iter().filter(|r| r.backend == "unshare" && r.outcome == O::Blocked) {
        let b = out.rows.iter().find(|b| b.backend == "process" && b.probe == r.probe).unwrap();
        assert_eq!(b.outcome == O::Blocked, r.host_check.contains("host-wide"), "{r:?} vs {b:?}");
    }
}

/// Names the seccomp profile at `path` allows with no capability or argument condition.
fn unconditionally_allowed(path: &str) -> std::collections::BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .filter(|r| {
            r["includes"].as_object().is_none_or(|o| o.is_empty()) && r["args"].as_array().is_none_or(|a| a.is_empty())
        })
        .flat_map(|r| r["names"].as_array().unwrap().iter().filter_map(|n| n.as_str().map(String::from)))
        .collect()
}
