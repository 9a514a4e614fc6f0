//! cgroups v1, v2 and hybrid behind one trait ([`Cgroups`]), auto-detected from /proc/self/mountinfo.
//!
//! Placement: each container's cgroup is created under the runtime process's *own* cgroup in every
//! hierarchy it uses (from /proc/self/cgroup). On the hybrid hosts this matters for `memory`, whose
//! own path is not the root. Only the controllers a container needs are used, to keep launch lean:
//! `memory` always (usage and OOM kills are always readable), `pids` and `cpu` only when limited.
//! v1 `cpuset` is never used (it would need `cpuset.cpus`/`cpuset.mems` copied before attaching).
//! Device rules ([`crate::devices`]), when given, go to the v1 `devices` controller, or on v2 into a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the container's cgroup (v2 has no devices files).
use crate::devices::{self, DeviceRule};
use crate::limits::{Limits, CPU_PERIOD_US};
use std::fs;
use std::path::{Path, PathBuf};

mod v1;
mod v2;

pub use v1::V1;
pub use v2::{attach_device_program, V2};

/// Errors from cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found.
    #[error("cgroup: no usable memory cgroup hierarchy found in /proc/self/mountinfo ({0})")]
    NotFound(String),
    /// Creating a directory failed.
    #[error("cgroup: cannot create {path}: {source}")]
    Create {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The cgroup already exists (id reuse or a leftover; run `vmct gc`).
    #[error("cgroup: {0} already exists (a leftover? run `vmct gc`)")]
    Exists(PathBuf),
    /// Writing a control file failed.
    #[error("cgroup: cannot write '{value}' to {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Value.
        value: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The device program could not be loaded or attached (cgroup v2).
    #[error("cgroup: cannot apply device rules to {path}: {source}")]
    Devices {
        /// cgroup directory.
        path: PathBuf,
        /// Cause (with the verifier's log for a load failure).
        source: std::io::Error,
    },
    /// Removing the cgroup failed.
    #[error("cgroup: cannot remove {path}: {source}")]
    Remove {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Which layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a (mostly empty) v2 mount: controllers are used through v1.
    Hybrid,
    /// Unified hierarchy only.
    V2,
}

/// A controller vmct uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// memory.
    Memory,
    /// pids.
    Pids,
    /// cpu.
    Cpu,
    /// devices (v1 only; v2 uses a BPF program).
    Devices,
}

impl Controller {
    /// v1 name.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Devices => "devices",
        }
    }
}

/// The directories of one container's cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupDirs {
    /// (controller, directory); on v2 one entry per controller, all the same directory.
    pub dirs: Vec<(Controller, PathBuf)>,
}

impl CgroupDirs {
    fn of(&self, c: Controller) -> Option<&Path> {
        self.dirs.iter().find(|(k, _)| *k == c).map(|(_, p)| p.as_path())
    }

    fn unique(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = Vec::new();
        for (_, p) in &self.dirs {
            if !v.contains(&p.as_path()) {
                v.push(p);
            }
        }
        v
    }
}

/// One interface over v1, v2 and hybrid hosts.
pub trait Cgroups: Send + Sync + std::fmt::Debug {
    /// The layout.
    fn version(&self) -> CgroupVersion;
    /// Create cgroup `name` for `limits` and write the limits; with `devices`, restrict device access
    /// to those rules (None: no device restriction beyond the parent's).
    fn create(&self, name: &str, limits: &Limits, devices: Option<&[DeviceRule]>) -> Result<CgroupDirs, CgroupError>;
    /// Move `pid` into the cgroup.
    fn attach(&self, dirs: &CgroupDirs, pid: i32) -> Result<(), CgroupError>;
    /// Memory usage now, bytes.
    fn usage_bytes(&self, dirs: &CgroupDirs) -> Option<u64>;
    /// How many times the memory limit OOM-killed a task of this cgroup.
    fn oom_kills(&self, dirs: &CgroupDirs) -> Option<u64>;
    /// The parent directories where containers' cgroups live (for gc).
    fn parents(&self) -> Vec<PathBuf>;
}

/// Pids listed in `dir/cgroup.procs`.
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kill everything left in the cgroup, then remove its directories (retrying while the kernel
/// finishes tearing tasks down).
pub fn remove(dirs: &CgroupDirs) -> Result<(), CgroupError> {
    for d in dirs.unique() {
        remove_dir(d)?;
    }
    Ok(())
}

/// Remove one cgroup directory: kill its processes, retry rmdir for up to about 10 s (a v1 memory
/// cgroup can stay busy for seconds while the kernel offlines it during a mass teardown; two of
/// about 10,000 outlived a 2 s limit in a default-plan run on this project's hosts).
pub fn remove_dir(d: &Path) -> Result<(), CgroupError> {
    let mut delay = std::time::Duration::from_micros(100);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                for pid in procs(d) {
                    let _ = crate::sys::kill(pid, libc::SIGKILL);
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(50));
            }
            Err(source) => return Err(CgroupError::Remove { path: d.to_path_buf(), source }),
        }
    }
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    fs::write(&path, value).map_err(|source| CgroupError::Write { path, value: value.into(), source })
}

/// Write v1 device rules: the kernel parses one rule per write(2), so each file is opened once and
/// written once per rule (a third of the system calls of a `fs::write` per rule; about 35 us for
/// Docker's 12 rules on this project's hosts instead of about 170 us).
fn write_rules(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    use std::io::Write;
    let mut open: Option<(&'static str, fs::File)> = None;
    for (name, value) in devices::v1_writes(rules) {
        let path = dir.join(name);
        let err = |source| CgroupError::Write { path: path.clone(), value: value.clone(), source };
        if open.as_ref().is_none_or(|(n, _)| *n != name) {
            open =
                Some((name, fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(err)?));
        }
        if let Some((_, f)) = open.as_mut() {
            f.write_all(value.as_bytes()).map_err(err)?;
        }
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CgroupError::Exists(path.into())),
        Err(source) => Err(CgroupError::Create { path: path.into(), source }),
    }
}

fn read_u64(path: PathBuf) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key N` from a flat-keyed file (memory.events, memory.oom_control).
fn keyed(path: PathBuf, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// A cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Mount point.
    pub point: PathBuf,
    /// v2?
    pub v2: bool,
    /// v1 controllers (super options).
    pub controllers: Vec<String>,
}

/// cgroup mounts in a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mut post = post.split_whitespace();
        let (fstype, _src, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
        let point = pre.split_whitespace().nth(4).unwrap_or("");
        match fstype {
            Some("cgroup2") => out.push(Mount { point: point.into(), v2: true, controllers: vec![] }),
            Some("cgroup") => out.push(Mount {
                point: point.into(),
                v2: false,
                controllers: opts.split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// The process's own path for v1 controller `name` (or v2 when `name` is None) in /proc/self/cgroup.
pub fn own_path(proc_cgroup: &str, name: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = match name {
            None => ctrls.is_empty(),
            Some(n) => ctrls.split(',').any(|c| c == n),
        };
        hit.then(|| path.to_string())
    })
}

fn join_rel(base: &Path, rel: &str) -> PathBuf {
    base.join(rel.trim_start_matches('/'))
}

/// Pick the driver from a mountinfo and a /proc/self/cgroup text.
pub fn from_texts(mountinfo: &str, proc_cgroup: &str) -> Result<Box<dyn Cgroups>, CgroupError> {
    let mounts = parse_mountinfo(mountinfo);
    let v1: Vec<&Mount> = mounts.iter().filter(|m| !m.v2).collect();
    let has_v2 = mounts.iter().any(|m| m.v2);
    if v1.iter().any(|m| m.controllers.iter().any(|c| c == "memory")) {
        let mut parents = Vec::new();
        for c in [Controller::Memory, Controller::Pids, Controller::Cpu, Controller::Devices] {
            if let Some(m) = v1.iter().find(|m| m.controllers.iter().any(|x| x == c.name())) {
                let own = own_path(proc_cgroup, Some(c.name())).unwrap_or_else(|| "/".into());
                parents.push((c, join_rel(&m.point, &own)));
            }
        }
        return Ok(Box::new(V1 { parents, hybrid: has_v2 }));
    }
    if let Some(m) = mounts.iter().find(|m| m.v2) {
        let own = own_path(proc_cgroup, None).unwrap_or_else(|| "/".into());
        return Ok(Box::new(V2 { parent: join_rel(&m.point, &own) }));
    }
    Err(CgroupError::NotFound(format!("{} cgroup mounts, none with memory", mounts.len())))
}

/// Deepest cgroup level [`find_named`] looks at below a hierarchy's mount point (host cgroup trees
/// are a few levels deep: slice/scope/instance).
pub const FIND_DEPTH: usize = 8;

/// Every cgroup directory named `prefix*`, at any depth (up to [`FIND_DEPTH`]) of every cgroup
/// hierarchy mounted on this host (`mounts`: [`parse_mountinfo`] of /proc/self/mountinfo), not only
/// below this process's own cgroups: a peer runtime (crun, runc, runsc) creates its container's
/// cgroup at the same path in every hierarchy (vmct hands it the memory cgroup's path), and a run
/// killed in another login session or systemd scope left its cgroups below that scope. A directory
/// found is not descended into. Sorted, deepest first (children are removed before parents).
pub fn find_named(mounts: &[Mount], prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), prefix, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    let mut points: Vec<&Path> = mounts.iter().map(|m| m.point.as_path()).collect();
    points.sort();
    points.dedup();
    for p in points {
        walk(p, prefix, FIND_DEPTH, &mut out);
    }
    out.sort_by(|a, b| b.components().count().cmp(&a.components().count()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// Detect this host's layout.
pub fn detect() -> Result<Box<dyn Cgroups>, CgroupError> {
    let mi = fs::read_to_string("/proc/self/mountinfo").map_err(|e| CgroupError::NotFound(e.to_string()))?;
    let pc = fs::read_to_string("/proc/self/cgroup").map_err(|e| CgroupError::NotFound(e.to_string()))?;
    from_texts(&mi, &pc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MI: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
";
    const HYBRID_PC: &str = "8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn find_named_looks_below_every_hierarchy_not_only_the_own_cgroup() {
        // The layout a killed crun run leaves when vmct's memory cgroup is /scope but its pids
        // cgroup is the root: crun created /scope/vmct-1-0 in every hierarchy.
        let t = tempfile::tempdir().unwrap();
        for h in ["memory", "pids"] {
            fs::create_dir_all(t.path().join(h).join("scope/vmct-1-0/inner")).unwrap();
            fs::create_dir_all(t.path().join(h).join("other")).unwrap();
        }
        fs::create_dir_all(t.path().join("pids/vmct-2-0")).unwrap();
        let mounts: Vec<Mount> = ["memory", "pids"]
            .iter()
            .map(|h| Mount { point: t.path().join(h), v2: false, controllers: vec![(*h).to_string()] })
            .collect();
        let found = find_named(&mounts, "vmct");
        let rel: Vec<String> = found.iter().map(|p| p.strip_prefix(t.path()).unwrap().display().to_string()).collect();
        assert_eq!(rel, ["memory/scope/vmct-1-0", "pids/scope/vmct-1-0", "pids/vmct-2-0"]);
    }

    #[test]
    fn detects_hybrid_and_v2() {
        let h = from_texts(HYBRID_MI, HYBRID_PC).unwrap();
        assert_eq!(h.version(), CgroupVersion::Hybrid);
        assert_eq!(
            h.parents(),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                PathBuf::from("/sys/fs/cgroup/pids"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/devices"),
            ]
        );
        let v2 = from_texts("40 1 0:5 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/user.slice/x\n").unwrap();
        assert_eq!(v2.version(), CgroupVersion::V2);
        assert_eq!(v2.parents(), vec![PathBuf::from("/sys/fs/cgroup/user.slice/x")]);
        assert!(from_texts("1 1 0:1 / / rw - ext4 /dev/vda rw\n", "").is_err());
    }

    fn fake_v1(tmp: &Path) -> V1 {
        let parents = vec![
            (Controller::Memory, tmp.join("memory/own")),
            (Controller::Pids, tmp.join("pids")),
            (Controller::Cpu, tmp.join("cpu")),
            (Controller::Devices, tmp.join("devices")),
        ];
        for (_, p) in &parents {
            fs::create_dir_all(p).unwrap();
        }
        V1 { parents, hybrid: true }
    }

    fn clear_files(dirs: &CgroupDirs) {
        for d in dirs.unique() {
            for e in fs::read_dir(d).unwrap() {
                fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
    }

    #[test]
    fn v1_writes_limits_only_where_needed() {
        let t = tempfile::tempdir().unwrap();
        let v1 = fake_v1(t.path());
        // No limits: memory only, nothing written.
        let d = v1.create("vmct-a", &Limits::default(), None).unwrap();
        assert_eq!(d.dirs, vec![(Controller::Memory, t.path().join("memory/own/vmct-a"))]);
        assert_eq!(fs::read_dir(&d.dirs[0].1).unwrap().count(), 0);
        assert!(matches!(v1.create("vmct-a", &Limits::default(), None), Err(CgroupError::Exists(_))));
        remove(&d).unwrap();
        // All limits.
        let l = Limits { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids: Some(32) };
        let d = v1.create("vmct-b", &l, None).unwrap();
        let rd = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(rd(t.path().join("memory/own/vmct-b/memory.limit_in_bytes")), "67108864");
        assert_eq!(rd(t.path().join("pids/vmct-b/pids.max")), "32");
        assert_eq!(rd(t.path().join("cpu/vmct-b/cpu.cfs_quota_us")), "50000");
        v1.attach(&d, 1234).unwrap();
        assert_eq!(procs(&t.path().join("pids/vmct-b")), vec![1234]);
        fs::write(t.path().join("memory/own/vmct-b/memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(
            t.path().join("memory/own/vmct-b/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(v1.usage_bytes(&d), Some(4096));
        assert_eq!(v1.oom_kills(&d), Some(2));
        clear_files(&d);
        remove(&d).unwrap();
        assert!(!t.path().join("pids/vmct-b").exists());
    }

    #[test]
    fn v1_device_rules_deny_all_then_allow_each() {
        let t = tempfile::tempdir().unwrap();
        let v1 = fake_v1(t.path());
        let d = v1.create("vmct-e", &Limits::default(), Some(crate::devices::DEFAULT_RULES)).unwrap();
        let dev = t.path().join("devices/vmct-e");
        assert_eq!(
            d.dirs,
            vec![(Controller::Memory, t.path().join("memory/own/vmct-e")), (Controller::Devices, dev.clone())]
        );
        // A plain file concatenates the writes; the kernel applies each write(2) as one rule.
        assert_eq!(fs::read_to_string(dev.join("devices.deny")).unwrap(), "a");
        let allow: String =
            crate::devices::v1_writes(crate::devices::DEFAULT_RULES)[1..].iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(fs::read_to_string(dev.join("devices.allow")).unwrap(), allow);
        v1.attach(&d, 55).unwrap();
        assert_eq!(procs(&dev), vec![55]);
        clear_files(&d);
        remove(&d).unwrap();
        // No devices hierarchy but rules asked for: a clear error, nothing left behind.
        let mut v1 = fake_v1(t.path());
        v1.parents.retain(|(c, _)| *c != Controller::Devices);
        let e = v1.create("vmct-f", &Limits::default(), Some(crate::devices::DEFAULT_RULES)).unwrap_err();
        assert!(e.to_string().contains("devices"), "{e}");
        assert!(!t.path().join("memory/own/vmct-f").exists());
    }

    #[test]
    fn v1_missing_controller_is_a_clear_error_and_undoes() {
        let t = tempfile::tempdir().unwrap();
        let mut v1 = fake_v1(t.path());
        v1.parents.retain(|(c, _)| *c != Controller::Pids);
        let e = v1.create("vmct-c", &Limits { pids: Some(5), ..Default::default() }, None).unwrap_err();
        assert!(e.to_string().contains("pids"), "{e}");
        assert!(!t.path().join("memory/own/vmct-c").exists());
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), "memory").unwrap();
        let v2 = V2 { parent: t.path().to_path_buf() };
        let l = Limits { memory_bytes: Some(1 << 30), cpus: Some(2.0), pids: Some(100) };
        let d = v2.create("vmct-d", &l, None).unwrap();
        let dir = t.path().join("vmct-d");
        let rd = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(rd("memory.max"), "1073741824");
        assert_eq!(rd("pids.max"), "100");
        assert_eq!(rd("cpu.max"), "200000 100000");
        // The fake file keeps only the last write; real cgroupfs accumulates.
        assert_eq!(fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(), "+cpu");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        fs::write(dir.join("memory.current"), "8192").unwrap();
        assert_eq!(v2.oom_kills(&d), Some(1));
        assert_eq!(v2.usage_bytes(&d), Some(8192));
        v2.attach(&d, 77).unwrap();
        assert_eq!(procs(&dir), vec![77]);
        clear_files(&d);
        remove(&d).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn own_path_parsing() {
        assert_eq!(own_path(HYBRID_PC, Some("memory")).as_deref(), Some("/process_api/abc"));
        assert_eq!(own_path(HYBRID_PC, Some("cpuacct")).as_deref(), Some("/"));
        assert_eq!(own_path(HYBRID_PC, None).as_deref(), Some("/"));
        assert_eq!(own_path("", Some("memory")), None);
    }
}
