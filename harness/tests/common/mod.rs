//! Helpers shared by integration tests: what one vmct process left on the host, found by its pid only
//! (other engineers' and CI jobs' instances may run at the same time and are never looked at).
#![allow(dead_code)] // each test crate uses a subset
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `vmct` binary under test.
pub fn vmct() -> PathBuf {
    assert_cmd::cargo::cargo_bin("vmct")
}

/// True if an object name belongs to the vmct process `pid`: instance ids `vmct-<pid>-<n>`, the shell's
/// `vmct-shell-<pid>`, the bridge netns `vmct-net-<pid>`, probe scratch dirs and VMM jails (directory and
/// cgroups) `vmct-probe-...-<pid>`, `vmct-jail-<seq>-<pid>`.
pub fn is_of(name: &str, pid: u32) -> bool {
    name.starts_with(&format!("vmct-{pid}-"))
        || name == format!("vmct-shell-{pid}")
        || name == format!("vmct-net-{pid}")
        || (name.starts_with("vmct-probe-") || name.starts_with(harness::backend::vmm_jail::JAIL_PREFIX))
            && name.ends_with(&format!("-{pid}"))
}

/// Processes whose environment says the vmct `owner` started them (`VMCT_OWNER`), except `owner`.
pub fn owned_processes(owner: u32) -> Vec<String> {
    let want = format!("VMCT_OWNER={owner}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == owner {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push(format!("process {pid} ({})", comm.trim()));
        }
    }
    out
}

/// Cgroup directories, container state dirs, mounts and network namespaces of the vmct process `pid`
/// (cgroups at any depth of every hierarchy, as `vmct gc` looks for them).
pub fn kernel_objects(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    // Every hierarchy at any depth, as `vmct gc` looks: a peer runtime creates its cgroups at the
    // memory cgroup's path in every hierarchy, which need not be this process's path there.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for d in container::cgroup::find_named(&container::cgroup::parse_mountinfo(&mountinfo), "vmct") {
        if is_of(&d.file_name().unwrap_or_default().to_string_lossy(), pid) {
            out.push(format!("cgroup {}", d.display()));
        }
    }
    let named = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| is_of(&e.file_name().to_string_lossy(), pid))
            .map(|e| e.path())
            .collect()
    };
    out.extend(named(Path::new(container::DEFAULT_STATE_ROOT)).into_iter().map(|d| format!("dir {}", d.display())));
    out.extend(named(Path::new("/run/netns")).into_iter().map(|d| format!("netns {}", d.display())));
    for base in harness::gc::PROBE_DIR_BASES {
        out.extend(named(Path::new(base)).into_iter().map(|d| format!("probe dir {}", d.display())));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for m in mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4)) {
        if Path::new(m).components().any(|c| is_of(&c.as_os_str().to_string_lossy(), pid)) {
            out.push(format!("mount {m}"));
        }
    }
    out
}

/// Live processes (other than `except`) whose command line contains `marker`: copies of a vmct process
/// (a container init cloned but not yet exec'd) carry its arguments. Give each vmct under test a unique
/// marker argument (e.g. its `--log-dir`) so only its own copies match.
pub fn processes_with_arg(marker: &str, except: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if pid != except && cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
            out.push(format!("process {pid} (a copy of vmct with {marker})"));
        }
    }
    out
}

/// Everything the vmct process `pid` left: processes and kernel objects. Processes may take a moment to
/// be reaped after a kill, so this waits up to 2 s for them before reporting.
pub fn leftovers(pid: u32) -> Vec<String> {
    leftovers_marked(pid, None)
}

/// [`leftovers`], plus copies of the vmct process found by a unique argument `marker`.
pub fn leftovers_marked(pid: u32, marker: Option<&str>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut l = owned_processes(pid);
        if let Some(m) = marker {
            l.extend(processes_with_arg(m, pid));
        }
        l.extend(kernel_objects(pid));
        if l.is_empty() || Instant::now() >= deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The peer runtime `name` (crun, runc, runsc), or None (said on stderr) when it is unavailable and
/// skipping is allowed; with `VMCT_REQUIRE_PRIVILEGED=1` an unavailable peer fails the test.
pub fn peer(name: &str) -> Option<Box<dyn harness::backend::Backend>> {
    let w = harness::artifacts::workload_path().unwrap();
    let b = harness::backend::peers::backends(&w).into_iter().find(|b| b.name() == name).expect("a peer runtime");
    let info = b.info();
    if !info.available {
        assert!(
            !harness::privileged::required(),
            "{name} unavailable and VMCT_REQUIRE_PRIVILEGED=1: {:?}",
            info.reason
        );
        eprintln!("skipped {name}: {:?}", info.reason);
        return None;
    }
    Some(b)
}
