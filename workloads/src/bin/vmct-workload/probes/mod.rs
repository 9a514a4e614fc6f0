//! The isolation probe catalogue (scenario `probe`), Linux build.
//!
//! Each probe tries one thing a workload must not be able to do to its host or neighbours and reports
//! `@vmct probe ID OUTCOME DETAIL`:
//! - `reached`: the probe read, changed or reached host or neighbour state (an isolation failure), or for
//!   `info.*` / `census.*` probes: the information is visible (a shared-kernel fact, not a failure);
//! - `blocked`: the boundary stopped it;
//! - `error`: the probe could not decide.
//!
//! The harness plants the canaries and tells the probes where they are through the environment (see
//! [`Ctx::from_env`]; the names are mirrored in `harness::isolation::canary`). Every probe is harmless by
//! design even when isolation fails: it only reads canaries the harness planted, writes only values the
//! harness restores, connects only to the harness's loopback listener, and undoes what it can itself
//! (unmounts, moves back, revokes). Each probe runs in its own forked child with a timeout, so a probe
//! that crashes, hangs or is killed by seccomp cannot take the catalogue down.
mod caps;
mod census;
mod cgroup;
mod clock;
mod dev;
mod devnode;
mod fs;
mod info;
mod kernel;
mod keyring;
mod masked;
mod mount;
mod net;
mod pid;
pub(crate) mod sys;
mod sysctl;
mod uts;

use std::path::PathBuf;
use std::time::Duration;
use workloads::probe_ids::{self as ids, DeviceNode};
use workloads::protocol::ProbeOutcome;

pub use workloads::probe_ids::{
    ENV_ADDR, ENV_CGROUP, ENV_FILE, ENV_HOST_KEYRING, ENV_HOST_NS, ENV_HOST_ROOT_DEV, ENV_NONCE, ENV_ONLY, ENV_PID,
    ENV_PID_ARGV, ENV_SYSCTL,
};

/// How long one probe may take before its child is killed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the canaries are, as the harness said.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// Run nonce.
    pub nonce: Option<String>,
    /// Canary file path.
    pub file: Option<PathBuf>,
    /// Listener address.
    pub addr: Option<String>,
    /// Canary pid.
    pub pid: Option<i32>,
    /// Canary argv address and length.
    pub pid_argv: Option<(u64, usize)>,
    /// Sysctl path.
    pub sysctl: Option<PathBuf>,
    /// Escape cgroup directory.
    pub cgroup: Option<PathBuf>,
    /// Host namespace inodes by kind.
    pub host_ns: Vec<(String, u64)>,
    /// Host root's user keyring serial.
    pub host_keyring: Option<i64>,
    /// `(major, minor)` of the host's root disk.
    pub host_root_dev: Option<(u32, u32)>,
}

impl Ctx {
    /// Read the canary locations from the environment.
    pub fn from_env() -> Ctx {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ctx {
            nonce: var(ENV_NONCE),
            file: var(ENV_FILE).map(PathBuf::from),
            addr: var(ENV_ADDR),
            pid: var(ENV_PID).and_then(|p| p.parse().ok()),
            pid_argv: var(ENV_PID_ARGV).and_then(|s| parse_argv_loc(&s)),
            sysctl: var(ENV_SYSCTL).map(PathBuf::from),
            cgroup: var(ENV_CGROUP).map(PathBuf::from),
            host_ns: var(ENV_HOST_NS).map(|s| parse_host_ns(&s)).unwrap_or_default(),
            host_keyring: var(ENV_HOST_KEYRING).and_then(|s| s.parse().ok()),
            host_root_dev: var(ENV_HOST_ROOT_DEV).and_then(|s| workloads::probe_ids::parse_dev(&s)),
        }
    }

    /// Is the caller in the host's namespace of `kind`? None when either side is unknown.
    pub fn same_ns(&self, kind: &str) -> Option<bool> {
        let host = self.host_ns.iter().find(|(k, _)| k == kind)?.1;
        Some(sys::own_ns(kind)? == host)
    }

    /// Short tag of the nonce used for values the probes write (hostname, domainname).
    pub fn tag(&self) -> String {
        let n = self.nonce.as_deref().unwrap_or("none");
        format!("vmct-probe-{}", &n[..n.len().min(8)])
    }
}

/// `7ffd1234:56` -> (0x7ffd1234, 56).
fn parse_argv_loc(s: &str) -> Option<(u64, usize)> {
    let (a, l) = s.split_once(':')?;
    Some((u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?, l.parse().ok()?))
}

/// `mnt=1,uts=2` -> [("mnt",1),("uts",2)].
fn parse_host_ns(s: &str) -> Vec<(String, u64)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Outcome.
    pub outcome: ProbeOutcome,
    /// What the probe saw (one line).
    pub detail: String,
}

impl Verdict {
    /// `reached` with detail.
    pub fn reached(detail: impl Into<String>) -> Verdict {
        Verdict { outcome: ProbeOutcome::Reached, detail: detail.into() }
    }
    /// `blocked` with detail.
    pub fn blocked(detail: impl Into<String>) -> Verdict {
        Verdict { outcome: ProbeOutcome::Blocked, detail: detail.into() }
    }
    /// `error` with detail.
    pub fn error(detail: impl Into<String>) -> Verdict {
        Verdict { outcome: ProbeOutcome::Error, detail: detail.into() }
    }

    fn encode(&self) -> String {
        format!("{}\t{}", self.outcome.as_str(), self.detail.replace(['\n', '\r', '\t'], " "))
    }

    fn decode(s: &str) -> Option<Verdict> {
        let (o, d) = s.split_once('\t')?;
        let outcome = match o {
            "reached" => ProbeOutcome::Reached,
            "blocked" => ProbeOutcome::Blocked,
            "error" => ProbeOutcome::Error,
            _ => return None,
        };
        Some(Verdict { outcome, detail: d.to_string() })
    }
}

/// How a catalogue entry runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// A probe function of its own.
    Plain(fn(&Ctx) -> Verdict),
    /// Create this device node and open it ([`devnode::probe`]).
    Node(&'static DeviceNode),
    /// Read this masked path ([`masked::probe`]).
    Masked(&'static str),
}

/// One catalogue entry.
pub struct Probe {
    /// Probe id (a single token, from [`workloads::probe_ids`]).
    pub id: &'static str,
    /// The probe.
    pub run: Run,
}

impl Probe {
    fn call(&self, ctx: &Ctx) -> Verdict {
        match self.run {
            Run::Plain(f) => f(ctx),
            Run::Node(d) => devnode::probe(ctx, d),
            Run::Masked(p) => masked::probe(p),
        }
    }
}

/// The probe function behind a base or kernel-reach id of [`workloads::probe_ids`].
fn plain(id: &str) -> Option<fn(&Ctx) -> Verdict> {
    Some(match id {
        "fs.host_canary" => fs::host_canary,
        "pid.host_visible" => pid::host_visible,
        "pid.ptrace_host" => pid::ptrace_host,
        "net.host_loopback" => net::host_loopback,
        "net.raw_socket" => net::raw_socket,
        "uts.hostname" => uts::hostname,
        "uts.domainname" => uts::domainname,
        "sysctl.host_write" => sysctl::host_write,
        "mount.tmpfs" => mount::tmpfs,
        "mount.proc" => mount::proc,
        "mount.sysfs" => mount::sysfs,
        "dev.kvm" => dev::kvm,
        "dev.mem" => dev::mem,
        "dev.block" => dev::block,
        "caps.raise" => caps::raise,
        "clock.settime" => clock::settime,
        "keyring.add_key" => keyring::add_key,
        "cgroup.escape" => cgroup::escape,
        "cgroup.raise_limit" => cgroup::raise_limit,
        "info.kernel" => info::kernel,
        "info.cpuinfo" => info::cpuinfo,
        "kernel.sysrq_trigger" => kernel::sysrq_trigger,
        "kernel.reboot" => kernel::reboot,
        "kernel.kexec_load" => kernel::kexec_load,
        "kernel.kexec_file_load" => kernel::kexec_file_load,
        "kernel.init_module" => kernel::init_module,
        "kernel.finit_module" => kernel::finit_module,
        "kernel.bpf" => kernel::bpf,
        "kernel.perf_event_open" => kernel::perf_event_open,
        "kernel.userfaultfd" => kernel::userfaultfd,
        "kernel.io_uring_setup" => kernel::io_uring_setup,
        "kernel.keyctl" => kernel::keyctl,
        "kernel.add_key" => kernel::add_key,
        _ => return None,
    })
}

/// The catalogue in report order: every id of [`workloads::probe_ids::catalogue`] but the census, which
/// [`run_all`] runs last on its own. An id without a probe here is a build error caught by the tests.
pub fn catalogue() -> Vec<Probe> {
    ids::catalogue()
        .filter(|id| *id != census::ID)
        .filter_map(|id| {
            let run = if let Some(d) = ids::DEVICE_NODES.iter().find(|d| d.id == id) {
                Run::Node(d)
            } else if let Some(m) = ids::MASKED_PATHS.iter().find(|m| m.id == id) {
                Run::Masked(m.path)
            } else {
                Run::Plain(plain(id)?)
            };
            Some(Probe { id, run })
        })
        .collect()
}

/// Run one probe in a forked child and turn crashes, seccomp kills and hangs into verdicts.
pub fn run_one(p: &Probe, ctx: &Ctx) -> Verdict {
    let (out, end) = sys::fork_run(PROBE_TIMEOUT, || p.call(ctx).encode());
    match (Verdict::decode(&out), end) {
        (Some(v), _) => v,
        (None, sys::End::Signaled(libc::SIGSYS)) => Verdict::blocked("killed by a seccomp filter (SIGSYS)"),
        (None, sys::End::Signaled(s)) => Verdict::error(format!("probe died with signal {s}")),
        (None, sys::End::TimedOut) => Verdict::error(format!("probe timed out after {PROBE_TIMEOUT:?}")),
        (None, sys::End::Exited(c)) => Verdict::error(format!("probe ended (status {c}) without a verdict: {out}")),
    }
}

/// Run the catalogue (or the `VMCT_PROBE_ONLY` subset) and the syscall census, emitting each result.
pub fn run_all(emit: &mut dyn FnMut(&str, ProbeOutcome, &str)) {
    let ctx = Ctx::from_env();
    let only: Option<Vec<String>> =
        std::env::var(ENV_ONLY).ok().filter(|s| !s.is_empty()).map(|s| s.split(',').map(str::to_string).collect());
    let wanted = |id: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == id));
    for p in catalogue().iter().filter(|p| wanted(p.id)) {
        let v = run_one(p, &ctx);
        emit(p.id, v.outcome, &v.detail);
    }
    if wanted(census::ID) {
        let v = census::run();
        emit(census::ID, v.outcome, &v.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_formats_parse() {
        assert_eq!(parse_argv_loc("7ffd0010:42"), Some((0x7ffd0010, 42)));
        assert_eq!(parse_argv_loc("0x10:1"), Some((0x10, 1)));
        assert_eq!(parse_host_ns("mnt=5,uts=7,bad"), vec![("mnt".into(), 5), ("uts".into(), 7)]);
    }

    #[test]
    fn verdicts_roundtrip_through_the_pipe_format() {
        let v = Verdict::reached("a\tb\nc");
        assert_eq!(Verdict::decode(&v.encode()), Some(Verdict::reached("a b c")));
        assert_eq!(Verdict::decode("nonsense"), None);
    }

    #[test]
    fn the_catalogue_is_the_shared_id_list_in_order() {
        let ours: Vec<&str> = catalogue().iter().map(|p| p.id).chain([census::ID]).collect();
        let shared: Vec<&str> = ids::catalogue().collect();
        assert_eq!(ours, shared, "every shared probe id has a probe, in the shared order");
    }

    #[test]
    fn a_crashing_probe_is_an_error_not_blocked() {
        fn crash(_: &Ctx) -> Verdict {
            // SAFETY: the probe runs in a forked child; abort ends only that child.
            unsafe { libc::abort() }
        }
        let v = run_one(&Probe { id: "t.crash", run: Run::Plain(crash) }, &Ctx::default());
        assert_eq!(v.outcome, ProbeOutcome::Error);
    }
}
