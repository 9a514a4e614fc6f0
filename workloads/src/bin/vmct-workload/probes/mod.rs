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
mod fs;
mod info;
mod keyring;
mod mount;
mod net;
mod pid;
pub(crate) mod sys;
mod sysctl;
mod uts;

use std::path::PathBuf;
use std::time::Duration;
use workloads::protocol::ProbeOutcome;

/// Random nonce of this run (hex); every canary carries it.
pub const ENV_NONCE: &str = "VMCT_CANARY_NONCE";
/// Host path of the canary file (outside the instance's root).
pub const ENV_FILE: &str = "VMCT_CANARY_FILE";
/// `127.0.0.1:PORT` of the harness's loopback listener.
pub const ENV_ADDR: &str = "VMCT_CANARY_ADDR";
/// Host pid of the canary process (nonce in its argv).
pub const ENV_PID: &str = "VMCT_CANARY_PID";
/// `ADDR:LEN` (hex address, decimal length) of the canary process's argv in its memory.
pub const ENV_PID_ARGV: &str = "VMCT_CANARY_PID_ARGV";
/// `/proc/sys/...` path of the sysctl the harness restores.
pub const ENV_SYSCTL: &str = "VMCT_CANARY_SYSCTL";
/// Host path of the cgroup directory created for the escape probe.
pub const ENV_CGROUP: &str = "VMCT_CANARY_CGROUP";
/// Host namespace inodes: `mnt=N,uts=N,pid=N,net=N,ipc=N,user=N,cgroup=N`.
pub const ENV_HOST_NS: &str = "VMCT_HOST_NS";
/// Serial of the host root's user keyring.
pub const ENV_HOST_KEYRING: &str = "VMCT_HOST_KEYRING";
/// Optional comma-separated list of probe ids to run (default: all).
pub const ENV_ONLY: &str = "VMCT_PROBE_ONLY";

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

/// One catalogue entry.
pub struct Probe {
    /// Probe id (a single token).
    pub id: &'static str,
    /// The probe.
    pub run: fn(&Ctx) -> Verdict,
}

/// The catalogue, in report order.
pub const CATALOGUE: &[Probe] = &[
    Probe { id: "fs.host_canary", run: fs::host_canary },
    Probe { id: "pid.host_visible", run: pid::host_visible },
    Probe { id: "pid.ptrace_host", run: pid::ptrace_host },
    Probe { id: "net.host_loopback", run: net::host_loopback },
    Probe { id: "net.raw_socket", run: net::raw_socket },
    Probe { id: "uts.hostname", run: uts::hostname },
    Probe { id: "uts.domainname", run: uts::domainname },
    Probe { id: "sysctl.host_write", run: sysctl::host_write },
    Probe { id: "mount.tmpfs", run: mount::tmpfs },
    Probe { id: "mount.proc", run: mount::proc },
    Probe { id: "mount.sysfs", run: mount::sysfs },
    Probe { id: "dev.kvm", run: dev::kvm },
    Probe { id: "dev.mem", run: dev::mem },
    Probe { id: "dev.block", run: dev::block },
    Probe { id: "dev.mknod_block", run: dev::mknod_block },
    Probe { id: "caps.raise", run: caps::raise },
    Probe { id: "clock.settime", run: clock::settime },
    Probe { id: "keyring.add_key", run: keyring::add_key },
    Probe { id: "cgroup.escape", run: cgroup::escape },
    Probe { id: "cgroup.raise_limit", run: cgroup::raise_limit },
    Probe { id: "info.kernel", run: info::kernel },
    Probe { id: "info.cpuinfo", run: info::cpuinfo },
];

/// Run one probe in a forked child and turn crashes, seccomp kills and hangs into verdicts.
pub fn run_one(p: &Probe, ctx: &Ctx) -> Verdict {
    let (out, end) = sys::fork_run(PROBE_TIMEOUT, || (p.run)(ctx).encode());
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
    for p in CATALOGUE.iter().filter(|p| wanted(p.id)) {
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
    fn ids_are_unique_tokens() {
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|p| p.id).collect();
        ids.push(census::ID);
        for id in &ids {
            assert!(!id.is_empty() && !id.contains(char::is_whitespace));
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn a_crashing_probe_is_an_error_not_blocked() {
        fn crash(_: &Ctx) -> Verdict {
            // SAFETY: the probe runs in a forked child; abort ends only that child.
            unsafe { libc::abort() }
        }
        let v = run_one(&Probe { id: "t.crash", run: crash }, &Ctx::default());
        assert_eq!(v.outcome, ProbeOutcome::Error);
    }
}
