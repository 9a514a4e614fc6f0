//! gVisor's `runsc` (Debian package `runsc`): the user-space-kernel model. The workload's system calls
//! go to the Sentry, a kernel written in Go running as an ordinary host process, and file access goes
//! through the Gofer process; the workload itself reaches no host system call directly.
//!
//! This module holds what is particular to runsc; the launch itself is the peers' one
//! ([`super::peers::PeerBackend`]: the same generated OCI bundle, image, default profile and limits as
//! crun and runc), with runsc's global flags from [`Setup::global_args`]:
//! `runsc --root STATE --network=none --platform=P run --bundle BUNDLE ID`.
//!
//! - Platform ([`choose_platform`]): `systrap` where the installed runsc offers it, else `kvm` where a
//!   real short run on `/dev/kvm` finishes, else `ptrace`; each candidate is tried with
//!   `runsc --platform=P do /bin/true` ([`try_platform`]), never assumed. `VMCT_RUNSC_PLATFORM=NAME`
//!   ([`PLATFORM_ENV`]) asks for one platform; a name the installed runsc does not offer is an error
//!   naming those it offers. The detection (about 3.3 s here: the kvm test run times out on `kvm_pvm`)
//!   is cached per host in [`platform_cache_file`], keyed by [`HostKey`] (the runsc binary's path,
//!   size, mtime and version, the kernel release, whether `/dev/kvm` exists): a whole-process
//!   `vmct run --backend runsc` no longer pays it each time. A key that no longer matches, or a file
//!   that does not parse, is detected again and rewritten; the environment variable bypasses the cache.
//! - Attack surface: the Sentry's implemented system calls from `runsc help syscalls -format json`
//!   ([`sentry_syscalls`]); the Sentry's own host seccomp filter read from the live Sentry with
//!   `PTRACE_SECCOMP_GET_FILTER` and evaluated per system call number ([`super::confinement`], [`note_ready`]).
//! - Memory ([`sandbox_stats`]): Sentry + Gofer + the Sentry's stub processes, split by smaps into the
//!   workload's memory (the Sentry's `memfd:runsc-memory` file, which backs all application memory)
//!   and the sandbox's own overhead.
use super::InstanceStats;
use crate::memstat;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Backend name and binary.
pub const NAME: &str = "runsc";
/// The Debian package that installs it.
pub const PACKAGE: &str = "runsc";
/// Environment variable choosing the platform (`ptrace`, `kvm`, `systrap` where offered); unset:
/// the first that works of [`PREFERENCE`].
pub const PLATFORM_ENV: &str = "VMCT_RUNSC_PLATFORM";
/// Platforms in order of preference (gVisor's documentation: systrap replaces ptrace as the default
/// where it exists; kvm is the fast path where hardware virtualization works).
pub const PREFERENCE: [&str; 3] = ["systrap", "kvm", "ptrace"];
/// How long a platform's test run (`runsc do /bin/true`) may take before it counts as not working
/// (a working run takes about 0.4 s here with ptrace).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(3);
/// The mapping backing all application memory in the Sentry (gVisor's `pgalloc` memory file).
pub const MEMORY_FILE: &str = "/memfd:runsc-memory";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    /// A runsc command could not be started or failed.
    #[error("runsc: {what}: {reason}")]
    Command {
        /// The command.
        what: String,
        /// Why.
        reason: String,
    },
    /// The requested platform is not one the installed runsc offers.
    #[error(
        "{PLATFORM_ENV}={requested}: the installed runsc ({version}) does not offer platform '{requested}'; it offers: {}",
        offered.join(", ")
    )]
    UnknownPlatform {
        /// What was asked for.
        requested: String,
        /// runsc's version line.
        version: String,
        /// What `runsc help platforms` lists.
        offered: Vec<String>,
    },
    /// No platform ran a test sandbox.
    #[error("runsc: no platform works here: {}", notes.join("; "))]
    NoPlatform {
        /// Per platform, why not.
        notes: Vec<String>,
    },
    /// Reading the Sentry's seccomp filter failed.
    #[error("runsc: reading the seccomp filter of Sentry pid {pid}: {reason}")]
    Filter {
        /// Sentry pid.
        pid: u32,
        /// Why.
        reason: String,
    },
}

/// The platform chosen and why the others are not used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlatformChoice {
    /// The platform runsc runs with.
    pub chosen: String,
    /// What `runsc help platforms` lists.
    pub offered: Vec<String>,
    /// One line per other platform: why it is not used (not offered, its test run failed, not tried).
    pub others: Vec<String>,
}

impl PlatformChoice {
    /// `platform ptrace (kvm: ...; systrap: ...)`, for the backend's version field and `vmct env`.
    pub fn describe(&self) -> String {
        if self.others.is_empty() {
            format!("platform {}", self.chosen)
        } else {
            format!("platform {} ({})", self.chosen, self.others.join("; "))
        }
    }
}

/// `runsc help platforms`: the platforms this runsc offers, one a line.
pub fn offered_platforms(bin: &Path) -> Result<Vec<String>, RunscError> {
    let out = Command::new(bin).args(["help", "platforms"]).output().map_err(|e| RunscError::Command {
        what: format!("{} help platforms", bin.display()),
        reason: e.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Choose the platform: `requested` if given (it must be offered, and its test run must work), else
/// the first of [`PREFERENCE`] that is offered and whose test run (`works`) succeeds. `kvm_note` is
/// added to a failing kvm test (e.g. the host's KVM flavour).
pub fn choose_platform(
    offered: &[String],
    version: &str,
    requested: Option<&str>,
    kvm_note: &str,
    mut works: impl FnMut(&str) -> Result<(), String>,
) -> Result<PlatformChoice, RunscError> {
    let is_offered = |p: &str| offered.iter().any(|o| o == p);
    let mut others = Vec::new();
    let candidates: Vec<&str> = match requested {
        Some(r) if !is_offered(r) => {
            return Err(RunscError::UnknownPlatform {
                requested: r.into(),
                version: version.into(),
                offered: offered.to_vec(),
            })
        }
        Some(r) => vec![r],
        None => PREFERENCE.to_vec(),
    };
    let mut chosen = None;
    for p in candidates {
        if !is_offered(p) {
            others.push(format!("{p}: not offered by this runsc (it offers {})", offered.join(", ")));
            continue;
        }
        if let Some(c) = &chosen {
            others.push(format!("{p}: offered, not tried ({c} preferred)"));
            continue;
        }
        match works(p) {
            Ok(()) => chosen = Some(p.to_string()),
            Err(why) if p == "kvm" && !kvm_note.is_empty() => others.push(format!("kvm: {why} ({kvm_note})")),
            Err(why) => others.push(format!("{p}: {why}")),
        }
    }
    if requested.is_some() {
        others.extend(
            offered
                .iter()
                .filter(|o| Some(o.as_str()) != requested)
                .map(|o| format!("{o}: not tried ({PLATFORM_ENV})")),
        );
    }
    match chosen {
        Some(chosen) => Ok(PlatformChoice { chosen, offered: offered.to_vec(), others }),
        None => Err(RunscError::NoPlatform { notes: others }),
    }
}

/// A real short run on platform `p`: `runsc --platform=P do /bin/true` (host root read-only under an
/// overlay, no network, no cgroups), killed with its process group after [`TRY_TIMEOUT`]. Its state dir
/// is a `vmct-probe-runsc-<pid>` scratch directory (removed; `vmct gc` finds it if vmct is killed).
pub fn try_platform(bin: &Path, p: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    if p == "kvm" && std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Err("no usable /dev/kvm".into());
    }
    let root = std::env::temp_dir().join(format!("vmct-probe-runsc-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("--root")
        .arg(&root)
        .args(["--network=none", "--ignore-cgroups", &format!("--platform={p}"), "do", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let result = match child {
        Err(e) => Err(format!("cannot start {}: {e}", bin.display())),
        Ok(mut c) => loop {
            match c.try_wait() {
                Ok(Some(st)) if st.success() => break Ok(()),
                Ok(Some(st)) => {
                    let mut err = String::new();
                    if let Some(mut e) = c.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                    break Err(format!("a test run (`runsc --platform={p} do /bin/true`) failed ({st}): {last}"));
                }
                Ok(None) if started.elapsed() < TRY_TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    // The group is the runsc we started and the sandbox processes it forked.
                    let pgid = i32::try_from(c.id()).expect("pids fit in i32");
                    let _ = container::sys::kill(-pgid, libc::SIGKILL);
                    let _ = c.wait();
                    break Err(format!(
                        "a test run (`runsc --platform={p} do /bin/true`) did not finish within {} s",
                        TRY_TIMEOUT.as_secs()
                    ));
                }
            }
        },
    };
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// A platform asked for with [`PLATFORM_ENV`] must be one `bin` offers: the error names those it offers.
pub fn check_requested_platform(bin: &Path) -> Result<(), String> {
    let Some(requested) = std::env::var(PLATFORM_ENV).ok().filter(|s| !s.is_empty()) else { return Ok(()) };
    let offered = offered_platforms(bin).map_err(|e| e.to_string())?;
    if offered.contains(&requested) {
        return Ok(());
    }
    let out = Command::new(bin).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    let version = String::from_utf8_lossy(&out).lines().next().unwrap_or("").trim().to_string();
    Err(RunscError::UnknownPlatform { requested, version, offered }.to_string())
}

/// The platform detection of this process: once per process, and without [`PLATFORM_ENV`] once per
/// host and runsc binary ([`cached_choice`] with [`platform_cache_file`] and [`HostKey::of`]); with
/// it, the requested platform's test run every process.
pub fn platform(bin: &Path, version: &str) -> Result<PlatformChoice, String> {
    static CACHE: Mutex<Option<(String, Result<PlatformChoice, String>)>> = Mutex::new(None);
    let requested = std::env::var(PLATFORM_ENV).ok().filter(|s| !s.is_empty());
    let key = format!("{}|{}", bin.display(), requested.as_deref().unwrap_or(""));
    let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, r)) = g.as_ref() {
        if *k == key {
            return r.clone();
        }
    }
    let detect = || {
        offered_platforms(bin).map_err(|e| e.to_string()).and_then(|offered| {
            let kvm = results::HostEnv::capture().kvm;
            let note = format!("/dev/kvm here is {}", kvm.as_str());
            choose_platform(&offered, version, requested.as_deref(), &note, |p| try_platform(bin, p))
                .map_err(|e| e.to_string())
        })
    };
    let host = HostKey::of(bin, version);
    let r = cached_choice(&platform_cache_file(), host.as_ref(), requested.as_deref(), detect);
    *g = Some((key, r.clone()));
    r
}

/// What a cached platform choice depends on: the runsc binary (path, size, mtime, `--version` line),
/// the kernel release and whether `/dev/kvm` exists. Any change means the cache is stale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostKey {
    /// The runsc binary as found in PATH.
    pub bin: PathBuf,
    /// Its size, bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Its `--version` first line.
    pub version: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// Whether `/dev/kvm` exists.
    pub kvm: bool,
}

impl HostKey {
    /// The key of `bin` on this host; None if the binary cannot be stat'ed (then nothing is cached).
    pub fn of(bin: &Path, version: &str) -> Option<HostKey> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(bin).ok()?;
        Some(HostKey {
            bin: bin.to_path_buf(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            version: version.to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            kvm: Path::new("/dev/kvm").exists(),
        })
    }
}

/// The cache file's contents.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CachedChoice {
    key: HostKey,
    choice: PlatformChoice,
}

/// Where the platform choice is cached: `runsc-platform.json` in vmct's cache directory
/// (`crate::artifacts::cache_dir`, the user cache dir).
pub fn platform_cache_file() -> PathBuf {
    crate::artifacts::cache_dir().join("runsc-platform.json")
}

/// The choice cached in `file` for `key`, else `detect()`'s, which is written to `file` when it
/// succeeded (a failure is not cached: the next process detects again). A file that is missing, does
/// not parse, or holds another key is detected again and replaced; a cache that cannot be written is
/// only a slower next start. A `requested` platform ([`PLATFORM_ENV`]) wins: detected, never read from
/// or written to the cache; so does a binary without a key.
pub fn cached_choice(
    file: &Path,
    key: Option<&HostKey>,
    requested: Option<&str>,
    detect: impl FnOnce() -> Result<PlatformChoice, String>,
) -> Result<PlatformChoice, String> {
    let Some(key) = key.filter(|_| requested.is_none()) else { return detect() };
    let cached = std::fs::read(file).ok().and_then(|b| serde_json::from_slice::<CachedChoice>(&b).ok());
    if let Some(c) = cached.filter(|c| c.key == *key) {
        return Ok(c.choice);
    }
    let choice = detect()?;
    let entry = CachedChoice { key: key.clone(), choice: choice.clone() };
    if let (Some(dir), Ok(json)) = (file.parent(), serde_json::to_vec_pretty(&entry)) {
        // Written whole and renamed, so a concurrent reader sees the old file or the new one.
        let tmp = dir.join(format!(".runsc-platform.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&tmp, json));
        if written.and_then(|()| std::fs::rename(&tmp, file)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(choice)
}

/// Global flags for every runsc command of an instance: no network (`--network=none`, Docker's
/// `--network none`) and the chosen platform.
pub fn global_args(choice: &PlatformChoice) -> Vec<String> {
    vec!["--network=none".into(), format!("--platform={}", choice.chosen)]
}

/// System calls the Sentry implements, from `runsc help syscalls -format json -os linux -arch amd64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SentrySyscalls {
    /// "Full Support".
    pub full: u32,
    /// "Partial Support".
    pub partial: u32,
    /// "Unimplemented" (they return an error such as ENOSYS).
    pub unimplemented: u32,
}

impl SentrySyscalls {
    /// Implemented at all (full or partial).
    pub fn implemented(&self) -> u32 {
        self.full + self.partial
    }

    /// Parse the JSON output of `runsc help syscalls -format json`: `{os: {arch: {syscalls: {nr: {support}}}}}`.
    pub fn parse(json: &str) -> Option<SentrySyscalls> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let table = v.get("linux")?.get("amd64")?.get("syscalls")?.as_object()?;
        let mut s = SentrySyscalls::default();
        for e in table.values() {
            match e.get("support").and_then(|x| x.as_str()).unwrap_or("") {
                "Full Support" => s.full += 1,
                "Partial Support" => s.partial += 1,
                _ => s.unimplemented += 1,
            }
        }
        Some(s)
    }
}

/// Run `runsc help syscalls` and count.
pub fn sentry_syscalls(bin: &Path) -> Result<SentrySyscalls, RunscError> {
    let what = "help syscalls -format json -os linux -arch amd64";
    let out = Command::new(bin)
        .args(["help", "syscalls", "-format", "json", "-os", "linux", "-arch", "amd64"])
        .output()
        .map_err(|e| RunscError::Command { what: what.into(), reason: e.to_string() })?;
    SentrySyscalls::parse(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| RunscError::Command { what: what.into(), reason: "output is not the expected JSON".into() })
}

/// The host processes of one sandbox under the `runsc run` process `runtime_pid`: its Gofer and its
/// Sentry (`runsc-gofer`, `runsc-sandbox` in argv\[0\]) and the Sentry's descendants (with the ptrace
/// platform, the stub processes whose address spaces hold the workload's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPids {
    /// The Sentry (`runsc-sandbox boot`).
    pub sentry: Option<u32>,
    /// The Gofer.
    pub gofer: Option<u32>,
    /// Descendants of the Sentry.
    pub stubs: Vec<u32>,
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn argv0(pid: u32) -> String {
    let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(c.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
}

/// Find the sandbox's processes from the `runsc run` pid.
pub fn sandbox_pids(runtime_pid: u32) -> SandboxPids {
    let mut s = SandboxPids::default();
    for c in children(runtime_pid) {
        match argv0(c).as_str() {
            "runsc-sandbox" => s.sentry = Some(c),
            "runsc-gofer" => s.gofer = Some(c),
            _ => {}
        }
    }
    let mut todo: Vec<u32> = s.sentry.into_iter().collect();
    while let Some(p) = todo.pop() {
        for c in children(p) {
            s.stubs.push(c);
            todo.push(c);
        }
    }
    s
}

/// Memory of one sandbox: RSS and PSS summed over Sentry, Gofer and stubs; `guest_mem_bytes` = the
/// bytes allocated to the Sentry's [`MEMORY_FILE`] (its `st_blocks`, through `/proc/SENTRY/fd`): every
/// page of the workload's memory, and the sandbox's own file cache, lives in that file, whether or not
/// a process maps it right now; `vmm_overhead_bytes` = the PSS of everything else the three map (the
/// Sentry's and Gofer's own heap, stacks and binary), i.e. total PSS minus the PSS of the memory-file
/// mappings. cgroup usage from the Sentry's memory cgroup (runsc puts Sentry and Gofer in the bundle's
/// `cgroupsPath`).
pub fn sandbox_stats(runtime_pid: u32) -> InstanceStats {
    let pids = sandbox_pids(runtime_pid);
    let Some(sentry) = pids.sentry else { return InstanceStats::default() };
    let (mut rss, mut pss, mut app) = (0u64, 0u64, 0u64);
    for p in std::iter::once(sentry).chain(pids.gofer).chain(pids.stubs.iter().copied()) {
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{p}/smaps")) else { continue };
        rss += memstat::smaps_sum_where(&smaps, "Rss", |_| true);
        pss += memstat::smaps_sum_where(&smaps, "Pss", |_| true);
        app += memstat::smaps_sum_where(&smaps, "Pss", |h| h.split_whitespace().nth(5) == Some(MEMORY_FILE));
    }
    InstanceStats {
        rss_bytes: Some(rss),
        pss_bytes: Some(pss),
        guest_mem_bytes: memory_file_bytes(sentry),
        vmm_overhead_bytes: Some(pss.saturating_sub(app)),
        cgroup_usage_bytes: super::peers::cgroup_usage_of(sentry),
    }
}

/// Bytes allocated to the Sentry's memory file (found among its open files by name), if readable.
fn memory_file_bytes(sentry: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(format!("/proc/{sentry}/fd")).ok()?.flatten().find_map(|fd| {
        let target = std::fs::read_link(fd.path()).ok()?;
        target
            .to_string_lossy()
            .starts_with(MEMORY_FILE)
            .then(|| std::fs::metadata(fd.path()).ok())?
            .map(|m| m.blocks() * 512)
    })
}

/// Measure the Sentry of the sandbox under `runtime_pid` as runsc's supervisor, once per process
/// (the first ready sandbox): [`super::confinement::note_ready`].
pub fn note_ready(runtime_pid: u32) {
    if super::confinement::measured(NAME).is_some() {
        return;
    }
    // A sandbox whose workload already ended may be gone mid-read: then the next ready one is read.
    if let Some(sentry) = sandbox_pids(runtime_pid).sentry {
        super::confinement::note_ready(NAME, sentry, super::confinement::Descend::No);
    }
}

/// A runsc sandbox a killed vmct left: its `runsc --root STATE` state files under a vmct state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftSandbox {
    /// runsc's `--root`.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
}

/// runsc sandboxes recorded in `<state_root>/<prefix>*/state` (runsc writes `<id>_sandbox:<id>.state`
/// there), for `vmct gc`.
pub fn left_sandboxes(state_root: &Path, prefix: &str) -> Vec<LeftSandbox> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(state_root).into_iter().flatten().flatten() {
        if !d.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let root = d.path().join("state");
        for f in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".state").and_then(|s| s.split_once("_sandbox:")).map(|(c, _)| c) {
                out.push(LeftSandbox { root: root.clone(), id: id.to_string() });
            }
        }
    }
    out
}

/// `runsc --root ROOT delete --force ID`: kills the sandbox's processes, removes its cgroups and state.
pub fn delete(bin: &Path, root: &Path, id: &str) -> Result<(), String> {
    let st = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("runsc delete --force {id} exited with {st}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Vec<String> {
        vec!["kvm".into(), "ptrace".into()]
    }

    #[test]
    fn systrap_is_used_only_when_offered_and_kvm_only_when_its_run_works() {
        let c = choose_platform(&offered(), "v", None, "kvm_pvm", |p| {
            if p == "kvm" {
                Err("did not finish".into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(c.chosen, "ptrace");
        assert!(c.others[0].starts_with("systrap: not offered"), "{:?}", c.others);
        assert_eq!(c.others[1], "kvm: did not finish (kvm_pvm)");
        let with_systrap = vec!["systrap".to_string(), "ptrace".into()];
        let c = choose_platform(&with_systrap, "v", None, "", |_| Ok(())).unwrap();
        assert_eq!(c.chosen, "systrap");
        let c = choose_platform(&offered(), "v", None, "", |_| Ok(())).unwrap();
        assert_eq!(c.chosen, "kvm", "kvm is preferred where its test run works");
    }

    fn key(size: u64) -> HostKey {
        HostKey {
            bin: "/usr/bin/runsc".into(),
            size,
            mtime_ns: 1,
            version: "runsc version X".into(),
            kernel: "6.1.0".into(),
            kvm: true,
        }
    }

    #[test]
    fn the_platform_choice_is_cached_per_host_and_detected_again_when_stale_or_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sub/runsc-platform.json");
        let calls = std::cell::Cell::new(0);
        let detect = |chosen: &'static str| {
            let calls = &calls;
            move || {
                calls.set(calls.get() + 1);
                Ok(PlatformChoice { chosen: chosen.into(), offered: offered(), others: vec!["kvm: no".into()] })
            }
        };
        let first = cached_choice(&file, Some(&key(10)), None, detect("ptrace")).unwrap();
        assert_eq!((first.chosen.as_str(), calls.get()), ("ptrace", 1));
        // Same host and binary: read back, not detected.
        assert_eq!(cached_choice(&file, Some(&key(10)), None, detect("kvm")).unwrap(), first);
        assert_eq!(calls.get(), 1);
        // Another binary (size): stale, detected again and rewritten.
        assert_eq!(cached_choice(&file, Some(&key(11)), None, detect("kvm")).unwrap().chosen, "kvm");
        assert_eq!(cached_choice(&file, Some(&key(11)), None, detect("ptrace")).unwrap().chosen, "kvm");
        assert_eq!(calls.get(), 2);
        // A corrupt file: detected again.
        std::fs::write(&file, "{not json").unwrap();
        assert_eq!(cached_choice(&file, Some(&key(11)), None, detect("ptrace")).unwrap().chosen, "ptrace");
        assert_eq!(calls.get(), 3);
        // A failed detection is returned and not cached.
        let k = HostKey { kvm: false, ..key(11) };
        assert_eq!(cached_choice(&file, Some(&k), None, || Err("no platform".into())).unwrap_err(), "no platform");
        assert_eq!(cached_choice(&file, Some(&k), None, detect("kvm")).unwrap().chosen, "kvm");
        assert_eq!(calls.get(), 4);
        // VMCT_RUNSC_PLATFORM wins over the cache (which says kvm) and leaves it as it was.
        assert_eq!(cached_choice(&file, Some(&k), Some("ptrace"), detect("ptrace")).unwrap().chosen, "ptrace");
        assert_eq!(cached_choice(&file, Some(&k), None, detect("ptrace")).unwrap().chosen, "kvm");
        assert_eq!(calls.get(), 5);
        let names: Vec<String> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["runsc-platform.json"], "no temporary file left");
    }

    #[test]
    fn a_platform_runsc_does_not_offer_is_an_error_naming_those_it_offers() {
        let e = choose_platform(&offered(), "runsc version X", Some("bogus"), "", |_| Ok(())).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("bogus") && s.contains("kvm, ptrace") && s.contains(PLATFORM_ENV), "{s}");
        let e = choose_platform(&offered(), "v", None, "", |_| Err("no".into())).unwrap_err();
        assert!(e.to_string().contains("ptrace: no"), "{e}");
    }

    #[test]
    fn the_syscall_table_json_is_counted_by_support() {
        let j = r#"{"linux":{"amd64":{"syscalls":{"0":{"name":"read","support":"Full Support"},
            "1":{"name":"ptrace","support":"Partial Support"},"2":{"name":"x","support":"Unimplemented"}}}}}"#;
        let s = SentrySyscalls::parse(j).unwrap();
        assert_eq!((s.full, s.partial, s.unimplemented, s.implemented()), (1, 1, 1, 2));
        assert_eq!(SentrySyscalls::parse("{}"), None);
    }

    #[test]
    fn left_sandboxes_are_found_by_their_state_files() {
        let t = tempfile::tempdir().unwrap();
        let st = t.path().join("vmct-4194305-1/state");
        std::fs::create_dir_all(&st).unwrap();
        std::fs::write(st.join("vmct-4194305-1_sandbox:vmct-4194305-1.state"), "{}").unwrap();
        std::fs::write(st.join("vmct-4194305-1_sandbox:vmct-4194305-1.lock"), "").unwrap();
        std::fs::create_dir_all(t.path().join("other/state")).unwrap();
        let l = left_sandboxes(t.path(), "vmct");
        assert_eq!(l, vec![LeftSandbox { root: st, id: "vmct-4194305-1".into() }]);
    }
}
