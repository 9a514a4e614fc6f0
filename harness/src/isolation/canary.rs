//! Host canaries: what the harness plants before an instance runs the probe catalogue, how it checks
//! them afterwards, and how it undoes any change. Everything planted is owned by [`Canaries`], whose
//! `Drop` restores host values and removes the file, listener, sleeper process and cgroup.
//!
//! The environment names are the workload's own ([`workloads::probe_ids`]), re-exported here.
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often [`HostLock::acquire`] retries while another vmct process holds the lock.
const LOCK_RETRY: Duration = Duration::from_millis(50);
/// How often the canary listener's non-blocking accept loop looks for a connection.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// How long the accept loop gets to pick up connections made just before the instance ended.
const ACCEPT_SETTLE: Duration = Duration::from_millis(30);
/// Longest the listener waits for a connection to send its nonce.
const NONCE_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a canary process may take to exec (its argv then shows the nonce), and how often to look.
const EXEC_WAIT: Duration = Duration::from_secs(2);
const EXEC_POLL: Duration = Duration::from_millis(1);
/// Retries (and the pause between them) for removing the escape cgroup once its probe child is reaped.
const RMDIR_TRIES: u32 = 50;
const RMDIR_RETRY: Duration = Duration::from_millis(20);

pub use workloads::probe_ids::{
    ENV_ADDR, ENV_CGROUP, ENV_FILE, ENV_HOST_KEYRING, ENV_HOST_NS, ENV_HOST_ROOT_DEV, ENV_NONCE, ENV_ONLY, ENV_PID,
    ENV_PID_ARGV, ENV_SYSCTL,
};

/// The sysctl the probes write: global (not namespaced), integer, and harmless to bump by one
/// (seconds a lease holder gets before a conflicting open breaks the lease).
pub const SYSCTL: &str = "/proc/sys/fs/lease-break-time";

/// Namespace kinds whose host inodes the probes compare with their own.
const NS_KINDS: &[&str] = &["mnt", "uts", "pid", "net", "ipc", "user", "cgroup"];

/// Errors planting canaries.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// A canary could not be created.
    #[error("isolation canaries: cannot {what}: {source}")]
    Plant {
        /// What was being created.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Another isolation run holds the host canaries.
    #[error("isolation canaries: another vmct isolation run is using the host canaries (waited {0:?}); try again")]
    Busy(Duration),
}

fn plant(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CanaryError {
    let what = what.into();
    move |source| CanaryError::Plant { what, source }
}

/// Host-wide lock: an abstract unix socket only one isolation run can bind. Nothing is left on the host
/// (abstract names vanish with the socket). Canaries change host-wide values (hostname, sysctl), so two
/// runs (two test binaries, two users) must not interleave.
pub struct HostLock {
    _sock: std::os::unix::net::UnixListener,
}

impl HostLock {
    /// Take the lock, waiting up to `timeout`.
    pub fn acquire(timeout: Duration) -> Result<HostLock, CanaryError> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(b"vmct-isolation-canaries")
            .map_err(plant("name the host lock"))?;
        let t0 = Instant::now();
        loop {
            match std::os::unix::net::UnixListener::bind_addr(&addr) {
                Ok(s) => return Ok(HostLock { _sock: s }),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && t0.elapsed() < timeout => {
                    std::thread::sleep(LOCK_RETRY)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(CanaryError::Busy(timeout)),
                Err(e) => return Err(plant("bind the host lock")(e)),
            }
        }
    }
}

/// 16 random bytes as hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    // SAFETY: b is a valid writable buffer of b.len() bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Fallback: time and pid; the nonce only needs to be unguessable by accident, not by an attacker.
        let t = crate::clock::mono_ns() ^ (std::process::id() as u64) << 40;
        b[..8].copy_from_slice(&t.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The loopback listener: records connections whose first line carries the nonce.
struct Listener {
    addr: String,
    hits: Arc<AtomicU32>,
    others: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(nonce: &str) -> std::io::Result<Listener> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?.to_string();
        let hits = Arc::new(AtomicU32::new(0));
        let others = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, o, s, n) = (hits.clone(), others.clone(), stop.clone(), nonce.to_string());
        let thread = std::thread::Builder::new().name("vmct-canary-listener".into()).spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        if carries(c, &n) {
                            h.fetch_add(1, Ordering::SeqCst);
                        } else {
                            o.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        })?;
        Ok(Listener { addr, hits, others, stop, thread: Some(thread) })
    }

    /// Let the accept loop pick up connections made just before the instance ended.
    fn settle(&self) {
        std::thread::sleep(ACCEPT_SETTLE);
    }
}

fn carries(mut c: TcpStream, nonce: &str) -> bool {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(NONCE_READ_TIMEOUT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 128];
    while buf.len() < 256 {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if String::from_utf8_lossy(&buf).contains(nonce) {
            return true;
        }
    }
    String::from_utf8_lossy(&buf).contains(nonce)
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sleeper process with the nonce in its argv; killed on drop.
struct Sleeper {
    child: Child,
    argv: Option<(u64, usize)>,
}

impl Sleeper {
    fn start(nonce: &str) -> std::io::Result<Sleeper> {
        let mut cmd = Command::new("sleep");
        cmd.arg0(format!("vmct-canary-{nonce}")).arg("3600").stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; the sleeper dies with the harness.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        let t0 = Instant::now();
        // Wait until exec has replaced the argv (the fork still shows ours).
        while t0.elapsed() < EXEC_WAIT {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(nonce) {
                break;
            }
            std::thread::sleep(EXEC_POLL);
        }
        let argv = argv_location(pid);
        Ok(Sleeper { child, argv })
    }
}

/// `arg_start` and length of a process's argv, from /proc/PID/stat fields 48 and 49.
fn argv_location(pid: u32) -> Option<(u64, usize)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let start: u64 = f.get(48 - 3)?.parse().ok()?;
    let end: u64 = f.get(49 - 3)?.parse().ok()?;
    Some((start, usize::try_from(end.checked_sub(start)?).ok()?))
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The escape cgroup: an empty cgroup directly under a hierarchy root; removed on drop.
struct EscapeCgroup {
    dir: PathBuf,
}

impl EscapeCgroup {
    fn create(nonce: &str) -> Option<EscapeCgroup> {
        let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else {
            return None;
        };
        let dir = root.join(format!("vmct-escape-{}", &nonce[..12]));
        std::fs::create_dir(&dir).ok()?;
        Some(EscapeCgroup { dir })
    }

    /// Did any process ever enter? (`pids.peak` where the kernel has it, else current members.)
    fn entered(&self) -> Option<bool> {
        if let Ok(p) = std::fs::read_to_string(self.dir.join("pids.peak")) {
            return p.trim().parse::<u64>().ok().map(|n| n > 0);
        }
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).ok()?;
        if procs.trim().is_empty() {
            None
        } else {
            Some(true)
        }
    }
}

impl Drop for EscapeCgroup {
    fn drop(&mut self) {
        // A probe child that could not move back has exited by now; rmdir succeeds once it is reaped.
        for _ in 0..RMDIR_TRIES {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(RMDIR_RETRY);
        }
    }
}

/// A host string value (hostname, domainname, sysctl) snapshotted at plant time and restored on check
/// and on drop.
struct HostValue {
    what: &'static str,
    path: PathBuf,
    original: Option<String>,
}

impl HostValue {
    fn snapshot(what: &'static str, path: &str) -> HostValue {
        let original = std::fs::read_to_string(path).ok().map(|s| s.trim_end_matches('\n').to_string());
        HostValue { what, path: PathBuf::from(path), original }
    }

    fn current(&self) -> Option<String> {
        std::fs::read_to_string(&self.path).ok().map(|s| s.trim_end_matches('\n').to_string())
    }

    /// `Some(changed value)` if it differs from the snapshot (and restore it).
    fn check_and_restore(&self) -> Result<Option<String>, String> {
        let (Some(orig), Some(now)) = (&self.original, self.current()) else { return Ok(None) };
        if &now == orig {
            return Ok(None);
        }
        self.restore().map(|()| Some(now))
    }

    fn restore(&self) -> Result<(), String> {
        let Some(orig) = &self.original else { return Ok(()) };
        if self.current().as_ref() == Some(orig) {
            return Ok(());
        }
        std::fs::write(&self.path, format!("{orig}\n"))
            .map_err(|e| format!("cannot restore {} ({}): {e}", self.what, self.path.display()))
    }
}

impl Drop for HostValue {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("vmct isolation: {e}");
        }
    }
}

/// What the host saw after one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostChecks {
    /// The canary file still holds the nonce unchanged.
    pub file_intact: bool,
    /// Connections to the listener that carried the nonce.
    pub listener_hits: u32,
    /// Other connections to the listener.
    pub listener_others: u32,
    /// Hostname the instance set on the host (restored).
    pub hostname_changed: Option<String>,
    /// Domainname the instance set on the host (restored).
    pub domainname_changed: Option<String>,
    /// Sysctl value the instance wrote on the host (restored).
    pub sysctl_changed: Option<String>,
    /// Whether a process entered the escape cgroup (None: no trace available).
    pub cgroup_entered: Option<bool>,
    /// Restores that failed (each one a message).
    pub restore_errors: Vec<String>,
}

/// Every canary of one instance run.
pub struct Canaries {
    nonce: String,
    dir: PathBuf,
    file: PathBuf,
    listener: Listener,
    sleeper: Option<Sleeper>,
    hostname: HostValue,
    domainname: HostValue,
    sysctl: HostValue,
    cgroup: Option<EscapeCgroup>,
    host_ns: String,
    host_keyring: Option<i64>,
    /// Last, so it is removed only after the host values above restored themselves on drop.
    _journal: Option<super::journal::JournalGuard>,
}

impl Canaries {
    /// Plant a fresh set (new nonce). The caller should hold a [`HostLock`].
    pub fn plant() -> Result<Canaries, CanaryError> {
        let nonce = nonce();
        let dir = std::env::temp_dir().join(format!("vmct-canary-{}", &nonce[..12]));
        std::fs::create_dir_all(&dir).map_err(plant(format!("create {}", dir.display())))?;
        let file = dir.join("canary");
        // Build the guard before planting the rest so a failure below still removes the directory.
        let guard = DirGuard(dir.clone());
        std::fs::write(&file, format!("vmct-canary {nonce}\n")).map_err(plant(format!("write {}", file.display())))?;
        let listener = Listener::start(&nonce).map_err(plant("open the loopback listener"))?;
        let sleeper = Sleeper::start(&nonce).ok();
        let host_ns = NS_KINDS
            .iter()
            .filter_map(|k| {
                let l = std::fs::read_link(format!("/proc/self/ns/{k}")).ok()?;
                let s = l.to_string_lossy();
                let ino = s.split_once(":[")?.1.strip_suffix(']')?.to_string();
                Some(format!("{k}={ino}"))
            })
            .collect::<Vec<_>>()
            .join(",");
        // SAFETY: KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_USER_KEYRING (-4) without creating it; integers only.
        let kr = unsafe { libc::syscall(libc::SYS_keyctl, 0, -4, 0) };
        std::mem::forget(guard);
        let hostname = HostValue::snapshot("hostname", "/proc/sys/kernel/hostname");
        let domainname = HostValue::snapshot("domainname", "/proc/sys/kernel/domainname");
        let sysctl = HostValue::snapshot("sysctl", SYSCTL);
        let journal = super::journal::Journal {
            owner_pid: std::process::id(),
            canary_dir: dir.clone(),
            values: [&hostname, &domainname, &sysctl]
                .iter()
                .filter_map(|v| {
                    let original = v.original.clone()?;
                    Some(super::journal::SavedValue { what: v.what.into(), path: v.path.clone(), original })
                })
                .collect(),
        };
        // Only root can change these values (and write /run); without a journal a SIGKILLed run
        // leaves them to the user, which `vmct gc` would otherwise fix.
        let journal = super::journal::write_in(Path::new(super::journal::DIR), &journal).ok();
        Ok(Canaries {
            cgroup: EscapeCgroup::create(&nonce),
            nonce,
            dir,
            file,
            listener,
            sleeper,
            hostname,
            domainname,
            sysctl,
            host_ns,
            host_keyring: (kr > 0).then_some(kr),
            _journal: journal,
        })
    }

    /// The run nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Host pid of the sleeper canary, if it started.
    pub fn sleeper_pid(&self) -> Option<u32> {
        self.sleeper.as_ref().map(|s| s.child.id())
    }

    /// The canary file path.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The environment telling the probes where the canaries are.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (ENV_NONCE.to_string(), self.nonce.clone()),
            (ENV_FILE.to_string(), self.file.display().to_string()),
            (ENV_ADDR.to_string(), self.listener.addr.clone()),
            (ENV_SYSCTL.to_string(), SYSCTL.to_string()),
            (ENV_HOST_NS.to_string(), self.host_ns.clone()),
        ];
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some((major, minor)) = workloads::probe_ids::root_dev_from_mountinfo(&mountinfo) {
            v.push((ENV_HOST_ROOT_DEV.to_string(), format!("{major}:{minor}")));
        }
        if let Some(s) = &self.sleeper {
            v.push((ENV_PID.to_string(), s.child.id().to_string()));
            if let Some((a, l)) = s.argv {
                v.push((ENV_PID_ARGV.to_string(), format!("{a:x}:{l}")));
            }
        }
        if let Some(c) = &self.cgroup {
            v.push((ENV_CGROUP.to_string(), c.dir.display().to_string()));
        }
        if let Some(k) = self.host_keyring {
            v.push((ENV_HOST_KEYRING.to_string(), k.to_string()));
        }
        v
    }

    /// Check every canary from the host side, restoring any changed host value.
    pub fn check(&self) -> HostChecks {
        self.listener.settle();
        let mut restore_errors = Vec::new();
        let mut take = |r: Result<Option<String>, String>| {
            r.unwrap_or_else(|e| {
                restore_errors.push(e);
                Some("(changed, restore failed)".into())
            })
        };
        let hostname_changed = take(self.hostname.check_and_restore());
        let domainname_changed = take(self.domainname.check_and_restore());
        let sysctl_changed = take(self.sysctl.check_and_restore());
        HostChecks {
            file_intact: std::fs::read_to_string(&self.file)
                .is_ok_and(|s| s == format!("vmct-canary {}\n", self.nonce)),
            listener_hits: self.listener.hits.load(Ordering::SeqCst),
            listener_others: self.listener.others.load(Ordering::SeqCst),
            hostname_changed,
            domainname_changed,
            sysctl_changed,
            cgroup_entered: self.cgroup.as_ref().and_then(EscapeCgroup::entered),
            restore_errors,
        }
    }
}

/// Removes the canary directory.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        // Host values restore themselves (HostValue::drop); the rest goes here.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn argv_location_of_self_is_found() {
        let (a, l) = argv_location(std::process::id()).expect("own argv");
        assert!(a > 0 && l > 0);
    }

    #[test]
    fn listener_counts_only_nonce_connections() {
        let l = Listener::start("abc123").unwrap();
        let mut c = TcpStream::connect(&l.addr).unwrap();
        std::io::Write::write_all(&mut c, b"abc123\n").unwrap();
        drop(c);
        let c2 = TcpStream::connect(&l.addr).unwrap();
        drop(c2);
        let t0 = Instant::now();
        while l.hits.load(Ordering::SeqCst) + l.others.load(Ordering::SeqCst) < 2 && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(l.hits.load(Ordering::SeqCst), 1);
        assert_eq!(l.others.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn host_values_restore_in_a_fake_file() {
        let dir = std::env::temp_dir().join(format!("vmct-test-hv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("v");
        std::fs::write(&f, "45\n").unwrap();
        let hv = HostValue::snapshot("test", f.to_str().unwrap());
        assert_eq!(hv.check_and_restore(), Ok(None));
        std::fs::write(&f, "46\n").unwrap();
        assert_eq!(hv.check_and_restore(), Ok(Some("46".into())));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "45\n");
        std::fs::write(&f, "47\n").unwrap();
        drop(hv);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "45\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
