#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Our container runtime and the crun/runc peers end to end, through the same `Backend`/`Instance` API
//! the experiments use. Needs root (skips without it unless `VMCT_REQUIRE_PRIVILEGED=1`).
use harness::backend::container::backends;
use harness::backend::{collect_events, Backend, Event, InstanceSpec};
use harness::privileged::{gate, required, Need};
use std::path::{Path, PathBuf};
use std::time::Duration;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(30);

fn workload() -> PathBuf {
    harness::artifacts::workload_path().unwrap()
}

fn spec(id: &str, words: &str) -> InstanceSpec {
    InstanceSpec::new(format!("vmct-t{}-{id}", std::process::id()), Scenario::parse(words.split_whitespace()).unwrap())
}

fn backend(name: &str) -> Box<dyn Backend> {
    let w = workload();
    backends(&w).into_iter().chain(harness::backend::peers::backends(&w)).find(|b| b.name() == name).unwrap()
}

fn results(ev: &[Event]) -> Vec<(String, f64)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Result { name, value, .. } => Some((name.clone(), *value)),
            _ => None,
        })
        .collect()
}

#[test]
fn default_profile_runs_ready_and_cpu() {
    if !gate("default_profile_runs_ready_and_cpu", &[Need::Root]) {
        return;
    }
    let b = backend("container");
    assert!(b.info().available, "{:?}", b.info().reason);
    let mut i = b.launch(&spec("ready", "ready")).unwrap();
    let r = i.wait_ready(T).unwrap();
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    for want in ["prepare", "cgroup", "clone", "rootfs", "pivot", "attach", "exec", "to_ready"] {
        assert!(names.contains(&want), "phase {want} missing from {names:?}");
    }
    let ev = collect_events(i.as_mut(), T).unwrap();
    assert_eq!(ev.last(), Some(&Event::Done { status: 0 }), "{ev:?}");
    let exit = i.stop(T).unwrap();
    assert_eq!((exit.status, exit.oom_killed), (Some(0), false));

    let mut i = b.launch(&spec("cpu", "cpu --iters 20000")).unwrap();
    i.wait_ready(T).unwrap();
    let ev = collect_events(i.as_mut(), T).unwrap();
    assert!(!results(&ev).is_empty(), "{ev:?}");
    assert_eq!(i.stop(T).unwrap().status, Some(0));
}

#[test]
fn every_profile_and_io_run() {
    if !gate("every_profile_and_io_run", &[Need::Root]) {
        return;
    }
    for name in ["container", "container-privileged", "container-userns"] {
        let b = backend(name);
        let mut i = b.launch(&spec(&format!("io-{name}"), "io --mib 2")).unwrap();
        i.wait_ready(T).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ev = collect_events(i.as_mut(), T).unwrap();
        assert!(results(&ev).iter().any(|(n, _)| n == "io.read"), "{name}: {ev:?}");
        let st = i.stats();
        assert!(st.cgroup_usage_bytes.is_some(), "{name}: {st:?}");
        assert_eq!(i.stop(T).unwrap().status, Some(0), "{name}");
    }
}

fn ns_links(pid: u32) -> Vec<(String, String)> {
    ["pid", "mnt", "uts", "ipc", "net", "cgroup", "user"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap().display().to_string()))
        .collect()
}

#[test]
fn namespaces_differ_from_the_hosts() {
    if !gate("namespaces_differ_from_the_hosts", &[Need::Root]) {
        return;
    }
    let host = ns_links(std::process::id());
    for (name, user_differs) in [("container", false), ("container-privileged", false), ("container-userns", true)] {
        let b = backend(name);
        let mut i = b.launch(&spec(&format!("ns-{name}"), "idle --hold-mib 1")).unwrap();
        i.wait_ready(T).unwrap();
        let pid = i.pid().unwrap();
        let theirs = ns_links(pid);
        for ((n, h), (_, c)) in host.iter().zip(&theirs) {
            if n == "user" {
                assert_eq!(h != c, user_differs, "{name}: user ns {h} vs {c}");
            } else {
                assert_ne!(h, c, "{name}: {n} namespace is the host's");
            }
        }
        // The cgroup namespace is rooted at the container's own cgroup.
        let cg = std::fs::read_to_string(format!("/proc/{pid}/root/proc/self/cgroup")).unwrap_or_default();
        assert!(cg.is_empty() || cg.lines().any(|l| l.ends_with(":/")), "{name}: {cg}");
        assert_eq!(i.stop(T).unwrap().status, Some(0), "{name}");
    }
}

#[test]
fn memory_limit_oom_kills_a_hog_and_reports_it() {
    if !gate("memory_limit_oom_kills_a_hog_and_reports_it", &[Need::Root]) {
        return;
    }
    for name in ["container", "container-userns"] {
        let b = backend(name);
        let mut s = spec(&format!("oom-{name}"), "ready");
        s.mem_limit_bytes = Some(32 << 20);
        s.env.extend([("VMCT_HOG".into(), "mem".into()), ("VMCT_HOG_MIB".into(), "256".into())]);
        let mut i = b.launch(&s).unwrap();
        // The hog touches 256 MiB before `ready`: the limit kills it first.
        assert!(i.wait_ready(T).is_err(), "{name}: hog reported ready under a 32 MiB limit");
        let exit = i.stop(T).unwrap();
        assert!(exit.oom_killed, "{name}: {exit:?}");
        assert_eq!(exit.signal, Some(libc::SIGKILL), "{name}: {exit:?}");
    }
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !gate("pids_limit_stops_a_fork_loop", &[Need::Root]) {
        return;
    }
    let b = backend("container");
    let mut s = spec("pids", "ready");
    s.pids_limit = Some(8);
    s.env.extend([
        ("VMCT_HOG".into(), "fork".into()),
        ("VMCT_HOG_PROCS".into(), "64".into()),
        ("VMCT_HOG_SECS".into(), "1".into()),
    ]);
    let mut i = b.launch(&s).unwrap();
    i.wait_ready(T).unwrap();
    let ev = collect_events(i.as_mut(), T).unwrap();
    let r = results(&ev);
    let failures = r.iter().find(|(n, _)| n == "hog.fork_failures").map(|(_, v)| *v).unwrap_or(0.0);
    assert!(failures > 0.0, "pids.max did not stop any fork: {r:?}");
    i.stop(T).unwrap();
}

/// A busybox-static image layer (for shell-driven checks), or None if busybox is not installed.
fn busybox_image(dir: &Path) -> Option<container::Image> {
    let bb = Path::new("/bin/busybox");
    if !bb.exists() {
        assert!(!required(), "busybox-static is needed (apt-get install busybox-static)");
        eprintln!("skipped busybox checks: /bin/busybox missing (apt-get install busybox-static)");
        return None;
    }
    let layer = container::image::build_layer(&dir.join("bb"), &[(bb, "/bin/busybox")], None).unwrap();
    std::fs::write(layer.join("etc/base.txt"), "base\n").unwrap();
    Some(container::Image::open(vec![layer], vec!["/bin/busybox".into()]).unwrap())
}

#[test]
fn cow_leaves_the_base_layer_untouched_and_logs_are_captured() {
    if !gate("cow_leaves_the_base_layer_untouched_and_logs_are_captured", &[Need::Root]) {
        return;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let Some(img) = busybox_image(t.path()) else { return };
    let base = img.layers[0].clone();
    let rt = container::Runtime::new(img, container::Profile::Default).unwrap();
    let log = t.path().join("out.log");
    let mut s = container::ContainerSpec::new(
        format!("vmct-t{}-cow", std::process::id()),
        vec![
            "sh".into(),
            "-c".into(),
            "echo changed >> /etc/base.txt; touch /bin/new; cat /etc/base.txt; echo oops >&2".into(),
        ],
    );
    s.stdout = container::Output::File(log.clone());
    let mut c = rt.start(&s).unwrap();
    let exit = c.stop(T).unwrap();
    assert_eq!(exit.status, Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "base\nchanged\noops\n");
    assert_eq!(std::fs::read_to_string(base.join("etc/base.txt")).unwrap(), "base\n");
    assert!(!base.join("bin/new").exists());
    // Two containers share the base and do not see each other's writes.
    s.id = format!("vmct-t{}-cow2", std::process::id());
    s.args = vec!["sh".into(), "-c".into(), "test ! -e /bin/new && cat /etc/base.txt".into()];
    let mut c = rt.start(&s).unwrap();
    assert_eq!(c.stop(T).unwrap().status, Some(0));
    assert!(std::fs::read_to_string(&log).unwrap().ends_with("oops\nbase\n"));

    // Harness logs: the protocol is streamed and copied to <log_dir>/<id>.log.
    let b = backend("container");
    let mut hs = spec("logs", "ready");
    hs.log_dir = Some(t.path().join("logs"));
    let mut i = b.launch(&hs).unwrap();
    i.wait_ready(T).unwrap();
    collect_events(i.as_mut(), T).unwrap();
    i.stop(T).unwrap();
    let text = std::fs::read_to_string(t.path().join(format!("logs/{}.log", hs.id))).unwrap();
    assert!(text.contains("@vmct ready") && text.contains("@vmct done 0"), "{text}");
}

#[test]
fn seccomp_and_caps_apply_in_the_default_profile_only() {
    if !gate("seccomp_and_caps_apply_in_the_default_profile_only", &[Need::Root]) {
        return;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let Some(img) = busybox_image(t.path()) else { return };
    for (profile, want) in [(container::Profile::Default, 1), (container::Profile::Privileged, 0)] {
        let rt = container::Runtime::new(img.clone(), profile).unwrap();
        let log = t.path().join(format!("{}.log", profile.name()));
        let mut s = container::ContainerSpec::new(
            format!("vmct-t{}-sec-{}", std::process::id(), profile.name()),
            vec![
                "sh".into(),
                "-c".into(),
                "grep -E '^(Seccomp|NoNewPrivs|Cap(Inh|Prm|Eff|Amb)):' /proc/self/status; hostname".into(),
            ],
        );
        s.stdout = container::Output::File(log.clone());
        let mut c = rt.start(&s).unwrap();
        assert_eq!(c.stop(T).unwrap().status, Some(0));
        let out = std::fs::read_to_string(&log).unwrap();
        assert!(out.contains(&format!("Seccomp:\t{}", want * 2)), "{out}");
        assert!(out.contains(&format!("NoNewPrivs:\t{want}")), "{out}");
        assert!(out.contains(&s.id), "hostname: {out}");
        if want == 1 {
            assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
            assert!(out.contains("CapPrm:\t00000000a80425fb"), "{out}");
            // Docker since CVE-2022-24769 (moby 20.10.14): the inheritable set is empty.
            assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
            assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
        }
    }
}

/// Issue 18 item 1: default-profile containers mount the sysfs of one shared, empty network
/// namespace (one superblock, so a launch no longer walks one sysfs superblock per live container);
/// their /sys shows no host device, stays read-only; other profiles keep their own.
#[test]
fn default_containers_share_one_sysfs_of_an_empty_netns() {
    if !gate("default_containers_share_one_sysfs_of_an_empty_netns", &[Need::Root]) {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dev = |pid: u32| std::fs::metadata(format!("/proc/{pid}/root/sys")).unwrap().dev();
    let launch = |name: &str, id: &str| {
        let mut i = backend(name).launch(&spec(id, "idle --hold-mib 1")).unwrap();
        i.wait_ready(T).unwrap();
        i
    };
    let mut a = launch("container", "sysfs-a");
    let mut b = launch("container", "sysfs-b");
    let mut p = launch("container-privileged", "sysfs-p");
    let (pa, pb, pp) = (a.pid().unwrap(), b.pid().unwrap(), p.pid().unwrap());
    let host = std::fs::metadata("/sys").unwrap().dev();
    assert_eq!(dev(pa), dev(pb), "default containers share one sysfs superblock");
    assert_ne!(dev(pa), host, "not the host's sysfs");
    assert_ne!(dev(pp), dev(pa), "the privileged profile mounts its own sysfs");
    for pid in [pa, pb] {
        let mut net: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root/sys/class/net"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        net.sort();
        assert_eq!(net, ["lo"], "only a loopback device is visible");
        let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let sys = mi.lines().find(|l| l.split(' ').nth(4) == Some("/sys")).unwrap_or_else(|| panic!("{mi}"));
        assert!(sys.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"), "read-only: {sys}");
        // The init went back to its own network namespace after the mount.
        let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(own, std::fs::read_link("/proc/self/ns/net").unwrap());
    }
    assert_ne!(
        std::fs::read_link(format!("/proc/{pa}/ns/net")).unwrap(),
        std::fs::read_link(format!("/proc/{pb}/ns/net")).unwrap()
    );
    for i in [&mut a, &mut b, &mut p] {
        assert_eq!(i.stop(T).unwrap().status, Some(0));
    }
}

#[test]
fn a_runtime_fd_never_reaches_a_container_even_without_close_on_exec() {
    if !gate("a_runtime_fd_never_reaches_a_container_even_without_close_on_exec", &[Need::Root]) {
        return;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let Some(img) = busybox_image(t.path()) else { return };
    let rt = container::Runtime::new(img, container::Profile::Default).unwrap();
    // A harness fd as the thousands a density sweep holds, here even inheritable (F_DUPFD leaves
    // close-on-exec off): the init copies only the runtime's low fd slots, so it cannot see it.
    let file = std::fs::File::open("/dev/null").unwrap();
    let high = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD(900)).unwrap();
    assert!(high >= 900);
    let log = t.path().join("fds.log");
    let mut s = container::ContainerSpec::new(
        format!("vmct-t{}-fds", std::process::id()),
        vec!["sh".into(), "-c".into(), "ls /proc/self/fd".into()],
    );
    s.stdout = container::Output::File(log.clone());
    let mut c = rt.start(&s).unwrap();
    assert_eq!(c.stop(T).unwrap().status, Some(0));
    let fds: Vec<i32> =
        std::fs::read_to_string(&log).unwrap().split_whitespace().filter_map(|f| f.parse().ok()).collect();
    assert!(fds.contains(&0) && fds.contains(&1), "{fds:?}");
    assert!(!fds.contains(&high), "fd {high} of the runtime process reached the container: {fds:?}");
    nix::unistd::close(high).unwrap();
}

/// Objects whose name starts with `prefix`: mounts, cgroups, bridge netns, links, state dirs.
fn leak_counts(prefix: &str) -> Vec<(&'static str, usize)> {
    let mounts =
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(prefix)).count();
    let cgroups = walkdir_depth("/sys/fs/cgroup", 5)
        .iter()
        .filter(|e| e.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .count();
    let count = |dir: &str, pre: &str| {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(pre)).count())
            .unwrap_or(0)
    };
    vec![
        ("mounts", mounts),
        ("cgroups", cgroups),
        ("netns", count("/run/netns", &format!("vmct-net-{}", std::process::id()))),
        ("links", count("/sys/class/net", "vmct")),
        ("state dirs", count(container::DEFAULT_STATE_ROOT, prefix)),
        ("processes", processes_with(prefix)),
    ]
}

/// Processes whose hostname-bearing environment names `prefix` (none of ours should outlive a run).
fn processes_with(prefix: &str) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else { return 0 };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|p| p.to_string_lossy().contains(prefix)))
        .count()
}

fn walkdir_depth(root: &str, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from(root), 0)];
    while let Some((d, n)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                if n < depth {
                    stack.push((e.path(), n + 1));
                }
            }
        }
    }
    out
}

#[test]
fn no_object_left_after_1000_runs() {
    if !gate("no_object_left_after_1000_runs", &[Need::Root]) {
        return;
    }
    let n: usize = std::env::var("VMCT_LEAK_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let b = backend("container");
    let prefix = format!("vmct-t{}-leak", std::process::id());
    let zero: Vec<(&str, usize)> = leak_counts(&prefix).into_iter().map(|(k, _)| (k, 0)).collect();
    assert_eq!(leak_counts(&prefix), zero);
    for k in 0..n {
        let mut i = b.launch(&spec(&format!("leak-{k}"), "ready")).unwrap();
        i.wait_ready(T).unwrap();
        i.stop(T).unwrap();
    }
    // A launch dropped without stop must clean up too.
    let mut i = b.launch(&spec("leak-drop", "idle --hold-mib 1")).unwrap();
    i.wait_ready(T).unwrap();
    drop(i);
    assert_eq!(leak_counts(&prefix), zero, "after {n} runs");
}

#[test]
fn clear_errors_for_bad_rootfs_limits_and_missing_runtime() {
    if !gate("clear_errors_for_bad_rootfs_limits_and_missing_runtime", &[Need::Root]) {
        return;
    }
    let e = container::Image::open(vec!["/nonexistent/vmct-rootfs".into()], vec!["/bin/w".into()]).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/vmct-rootfs") && e.to_string().contains("missing rootfs"), "{e}");
    let e = harness::units::parse_size("64Q").unwrap_err();
    assert!(e.contains("'64Q'") && e.contains("MiB"), "{e}");
    let b = backend("container");
    let mut s = spec("badlimit", "ready");
    s.pids_limit = Some(0);
    let e = b.launch(&s).err().expect("pids limit 0 must be refused").to_string();
    assert!(e.contains("pids limit must be greater than zero"), "{e}");
    s.pids_limit = None;
    s.mem_limit_bytes = Some(4096);
    let e = b.launch(&s).err().unwrap().to_string();
    assert!(e.contains("4096"), "{e}");
    let missing = harness::backend::peers::PeerBackend::new("vmct-no-such-runtime", &workload());
    let info = missing.info();
    assert!(!info.available);
    let reason = info.reason.unwrap();
    assert!(reason.contains("vmct-no-such-runtime not found in PATH; install the Debian package"), "{reason}");
    let e = missing.launch(&spec("nort", "ready")).err().unwrap().to_string();
    assert!(e.contains("not found in PATH"), "{e}");
}

#[test]
fn peers_launch_ready_when_installed() {
    if !gate("peers_launch_ready_when_installed", &[Need::Root]) {
        return;
    }
    for name in ["crun", "runc"] {
        let b = backend(name);
        let info = b.info();
        if !info.available {
            assert!(!required(), "{name}: {:?}", info.reason);
            eprintln!("skipped {name}: {:?}", info.reason);
            continue;
        }
        assert!(info.version.as_deref().unwrap_or("").contains(name), "{info:?}");
        let mut i = b.launch(&spec(&format!("peer-{name}"), "ready")).unwrap();
        i.wait_ready(T).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ev = collect_events(i.as_mut(), T).unwrap();
        assert_eq!(ev.last(), Some(&Event::Done { status: 0 }), "{name}: {ev:?}");
        assert_eq!(i.stop(T).unwrap().status, Some(0), "{name}");
        // Limits and OOM through the peer too.
        let mut s = spec(&format!("peer-oom-{name}"), "ready");
        s.mem_limit_bytes = Some(32 << 20);
        s.env.extend([("VMCT_HOG".into(), "mem".into()), ("VMCT_HOG_MIB".into(), "256".into())]);
        let mut i = b.launch(&s).unwrap();
        assert!(i.wait_ready(T).is_err(), "{name}");
        assert!(i.stop(T).unwrap().oom_killed, "{name}");
    }
}

#[test]
fn bridge_network_gives_a_private_address_and_loopback_is_up() {
    if !gate("bridge_network_gives_a_private_address_and_loopback_is_up", &[Need::Root]) {
        return;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let Some(img) = busybox_image(t.path()) else { return };
    let script = "ip -4 addr show lo | grep -q 'inet 127.0.0.1' && ip -4 addr show eth0 && ping -c1 -W2 10.213.0.1";
    let run = |rt: &container::Runtime, id: &str| {
        let log = t.path().join(format!("{id}.log"));
        let mut s = container::ContainerSpec::new(
            format!("vmct-t{}-{id}", std::process::id()),
            vec!["sh".into(), "-c".into(), script.into()],
        );
        s.stdout = container::Output::File(log.clone());
        let mut c = rt.start(&s).unwrap();
        let addr = c.address();
        let st = c.stop(T).unwrap().status;
        (st, addr, std::fs::read_to_string(&log).unwrap())
    };
    // Private (default): loopback only, so the ping has nowhere to go.
    let rt = container::Runtime::new(img.clone(), container::Profile::Default).unwrap();
    let (st, addr, out) = run(&rt, "net-private");
    assert_ne!(st, Some(0), "{out}");
    assert_eq!(addr, None);
    // Bridge: eth0 with a 10.213/16 address that reaches the bridge in the project's namespace.
    let rt = rt.with_network(container::NetMode::Bridge).unwrap();
    let (st, addr, out) = run(&rt, "net-bridge");
    assert_eq!(st, Some(0), "{out}");
    let addr = addr.unwrap();
    assert_eq!(addr.octets()[..2], [10, 213]);
    assert!(out.contains(&addr.to_string()), "{out}");
    let netns = format!("vmct-net-{}", std::process::id());
    assert!(Path::new("/run/netns").join(&netns).exists());
    drop(rt);
    assert!(!Path::new("/run/netns").join(&netns).exists(), "bridge namespace left behind");
}

#[test]
fn gc_removes_leftovers_by_prefix() {
    if !gate("gc_removes_leftovers_by_prefix", &[Need::Root]) {
        return;
    }
    let prefix = format!("vmct-t{}-gc", std::process::id());
    // A leftover cgroup with a stray process (orphaned: its parent is gone), and a private dir.
    let rt = container::Runtime::new(
        harness::backend::container::base_image(&workload()).unwrap(),
        container::Profile::Default,
    )
    .unwrap();
    let mut c = rt.start(&container::ContainerSpec::new(format!("{prefix}-1"), vec!["idle".into()])).unwrap();
    let cg = c.cgroup_dirs().unwrap().dirs[0].1.clone();
    let dir = c.state_dir().unwrap().to_path_buf();
    // The container's runtime is alive (this test): gc keeps it.
    let r = container::gc(&prefix);
    assert!(r.kept.iter().any(|k| k.contains(&prefix)), "{r:?}");
    assert!(cg.exists() && dir.exists());
    c.stop(T).unwrap();
    // Leftovers without processes: an empty cgroup and a private dir.
    std::fs::create_dir(&cg).unwrap();
    std::fs::create_dir_all(dir.join("upper/x")).unwrap();
    let r = container::gc(&prefix);
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(!cg.exists() && !dir.exists(), "{r:?}");
    assert_eq!(r.removed.len(), 2, "{r:?}");
}

#[test]
fn commit_carries_new_and_deleted_files_into_a_new_image() {
    if !gate("commit_carries_new_and_deleted_files_into_a_new_image", &[Need::Root]) {
        return;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let Some(img) = busybox_image(t.path()) else { return };
    let base = img.layers[0].clone();
    std::fs::write(base.join("etc/doomed.txt"), "delete me\n").unwrap();
    let rt = container::Runtime::new(img.clone(), container::Profile::Default).unwrap();
    let mut s = container::ContainerSpec::new(
        format!("vmct-t{}-commit", std::process::id()),
        vec!["sh".into(), "-c".into(), "echo added > /etc/added.txt && rm /etc/doomed.txt".into()],
    );
    let mut c = rt.start(&s).unwrap();
    assert!(c.wait(T).is_some(), "the writer finished");
    let upper = c.state_dir().unwrap().join("upper");
    let layer = container::commit::commit(&upper, &t.path().join("commit")).unwrap();
    assert_eq!(c.stop(T).unwrap().status, Some(0));
    assert_eq!(layer.whiteouts, 1);
    assert!(layer.tar_bytes > 0);

    // A new image: the old layers plus the committed one.
    let img2 = container::Image::open(vec![base.clone(), layer.dir.clone()], img.entry.clone()).unwrap();
    let rt2 = container::Runtime::new(img2, container::Profile::Default).unwrap();
    let log = t.path().join("out.log");
    s.id = format!("vmct-t{}-commit2", std::process::id());
    s.args = vec!["sh".into(), "-c".into(), "cat /etc/added.txt; test ! -e /etc/doomed.txt && echo gone".into()];
    s.stdout = container::Output::File(log.clone());
    let mut c2 = rt2.start(&s).unwrap();
    assert_eq!(c2.stop(T).unwrap().status, Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "added\ngone\n");
    // The base layer is unchanged.
    assert_eq!(std::fs::read_to_string(base.join("etc/doomed.txt")).unwrap(), "delete me\n");
    assert!(!base.join("etc/added.txt").exists());
}
