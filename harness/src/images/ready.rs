//! Readiness of an image's own process, applied by the harness from outside the instance (containers):
//! [`Readiness`] is the rule (`tcp:PORT`, `log:REGEX`, `exit`; parsed by
//! [`workloads::image_run::ReadyRule`], the same parser the linux guest's /init uses), and
//! [`ReadyInstance`] wraps an instance whose process does not speak the vmct protocol.
//!
//! Clock rules are the built-in scenarios' (shared/DESIGN.md, `crate::clock`): launch-to-ready is
//! host CLOCK_MONOTONIC from "launch requested" (stamped before the backend does any work) to the
//! moment the rule is met, as the host sees it:
//! - `tcp:PORT`: the instant a connect to 127.0.0.1:PORT succeeds, from a thread that entered the
//!   container's network namespace with setns(2) and polls every [`TCP_POLL`];
//! - `log:REGEX`: the arrival of the first stdout/stderr line that matches;
//! - `exit`: the end of the process's output (its exit); the exit status is recorded.
use crate::backend::lines::Line;
use crate::backend::{BackendError, Event, ExitInfo, Instance, InstanceStats, Phase, Ready};
use crate::clock;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use workloads::image_run::ReadyRule;

/// Interval between two connect attempts of the `tcp:PORT` rule.
pub const TCP_POLL: Duration = Duration::from_millis(2);

/// Longest wait between SIGTERM and SIGKILL when an image's process is stopped.
pub const STOP_GRACE: Duration = Duration::from_millis(500);

/// Errors of a readiness rule given by the user; each names the rule and the valid forms.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Not one of the forms.
    #[error("--ready: {0}")]
    Form(String),
    /// `log:` with a regular expression the `regex` crate refuses.
    #[error("--ready: invalid regular expression in 'log:{re}': {why}")]
    Regex {
        /// The expression.
        re: String,
        /// The regex crate's message.
        why: String,
    },
}

/// A parsed readiness rule.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// A TCP connect to 127.0.0.1:PORT inside the instance succeeds.
    Tcp(u16),
    /// A stdout/stderr line matches.
    Log(regex::Regex),
    /// The process runs to completion.
    Exit,
}

impl Readiness {
    /// Parse `tcp:PORT`, `log:REGEX` or `exit`.
    pub fn parse(s: &str) -> Result<Readiness, ReadyError> {
        match ReadyRule::parse(s).map_err(|e| ReadyError::Form(e.to_string()))? {
            ReadyRule::Tcp(p) => Ok(Readiness::Tcp(p)),
            ReadyRule::Exit => Ok(Readiness::Exit),
            ReadyRule::Log(re) => regex::Regex::new(re)
                .map(Readiness::Log)
                .map_err(|e| ReadyError::Regex { re: re.into(), why: e.to_string() }),
        }
    }

    /// Whether the process keeps running once ready (all but `exit`).
    pub fn holds_alive(&self) -> bool {
        !matches!(self, Readiness::Exit)
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Tcp(p) => write!(f, "tcp:{p}"),
            Readiness::Log(re) => write!(f, "log:{}", re.as_str()),
            Readiness::Exit => f.write_str("exit"),
        }
    }
}

fn netns_id(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// The first process of the tree under `root` (itself included) in another network namespace than
/// vmct's: the container's (a peer runtime's pid is on the host, its init below it).
pub fn netns_pid(root: u32) -> Option<u32> {
    let own = netns_id("self")?;
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if netns_id(&p.to_string()).is_some_and(|n| n != own) {
            return Some(p);
        }
        for t in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            todo.extend(kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()));
        }
    }
    None
}

/// Poll `127.0.0.1:port` inside the network namespace of the instance whose main pid is `root`, from
/// a thread of its own that enters that namespace; sends the host time of the first successful
/// connect. Ends when `stop` is set.
pub fn tcp_prober(root: u32, port: u16, stop: Arc<AtomicBool>) -> mpsc::Receiver<Result<u64, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ns = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(p) = netns_pid(root) {
                match std::fs::File::open(format!("/proc/{p}/ns/net")) {
                    Ok(f) => break f,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot open the network namespace of pid {p}: {e}")));
                        return;
                    }
                }
            }
            std::thread::sleep(TCP_POLL);
        };
        // Only this thread enters the namespace (a network namespace is per thread).
        if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
            let _ = tx.send(Err(format!("setns into the container's network namespace: {e}")));
            return;
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while !stop.load(Ordering::Relaxed) {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                let _ = tx.send(Ok(clock::mono_ns()));
                return;
            }
            std::thread::sleep(TCP_POLL);
        }
    });
    rx
}

/// An instance running an image's own process, made ready by a [`Readiness`] rule the harness applies.
pub struct ReadyInstance {
    backend: String,
    inner: Box<dyn Instance>,
    rule: Readiness,
    launched_ns: u64,
    /// How the process ended, for the `exit` rule (reaped when it became ready).
    exit: Option<ExitInfo>,
    done_sent: bool,
    stop_prober: Arc<AtomicBool>,
}

impl ReadyInstance {
    /// Wrap `inner`, launched at `launched_ns` (host CLOCK_MONOTONIC), of backend `backend`.
    pub fn new(backend: &str, inner: Box<dyn Instance>, rule: Readiness, launched_ns: u64) -> ReadyInstance {
        ReadyInstance {
            backend: backend.into(),
            inner,
            rule,
            launched_ns,
            exit: None,
            done_sent: false,
            stop_prober: Arc::new(AtomicBool::new(false)),
        }
    }

    fn exited(&mut self) -> BackendError {
        let e = self.inner.stop(Duration::from_secs(2)).unwrap_or_default();
        let exit = match (e.status, e.signal) {
            (Some(s), _) => format!("exit status {s}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".into(),
        };
        BackendError::Exited {
            backend: self.backend.clone(),
            id: self.inner.id().into(),
            what: "met its readiness rule",
            exit,
            log: format!(" (rule {}; its output is in the instance's log)", self.rule),
        }
    }

    fn ready(&self, ready_ns: u64) -> Ready {
        let name = match self.rule {
            Readiness::Exit => "to_exit",
            _ => "to_ready",
        };
        let duration_s = clock::ns_to_s(ready_ns.saturating_sub(self.launched_ns));
        Ready { launched_ns: self.launched_ns, ready_ns, phases: vec![Phase { name: name.into(), duration_s }] }
    }
}

impl Drop for ReadyInstance {
    fn drop(&mut self) {
        self.stop_prober.store(true, Ordering::Relaxed);
    }
}

impl Instance for ReadyInstance {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        let deadline = clock::mono_ns() + u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let prober = match (&self.rule, self.inner.pid()) {
            (Readiness::Tcp(port), Some(pid)) => Some(tcp_prober(pid, *port, self.stop_prober.clone())),
            _ => None,
        };
        loop {
            if let Some(rx) = &prober {
                match rx.try_recv() {
                    Ok(Ok(ns)) => return Ok(self.ready(ns)),
                    Ok(Err(reason)) => return Err(BackendError::Launch { backend: self.backend.clone(), reason }),
                    Err(_) => {}
                }
            }
            let left = Duration::from_nanos(deadline.saturating_sub(clock::mono_ns()));
            let slice = if prober.is_some() { left.min(TCP_POLL) } else { left };
            match self.inner.next_line(slice)? {
                Line::Text(t) => {
                    if let Readiness::Log(re) = &self.rule {
                        if re.is_match(&t) {
                            return Ok(self.ready(clock::mono_ns()));
                        }
                    }
                }
                Line::Event(..) => {}
                Line::Eof if matches!(self.rule, Readiness::Exit) => {
                    let at = clock::mono_ns();
                    self.exit = Some(self.inner.stop(Duration::from_secs(5))?);
                    return Ok(self.ready(at));
                }
                Line::Eof => {
                    self.stop_prober.store(true, Ordering::Relaxed);
                    return Err(self.exited());
                }
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
                Line::Timeout if clock::mono_ns() < deadline => {}
                Line::Timeout => {
                    self.stop_prober.store(true, Ordering::Relaxed);
                    return Err(BackendError::Timeout {
                        backend: self.backend.clone(),
                        id: self.inner.id().into(),
                        what: "meet its readiness rule",
                        timeout,
                        log: format!("; rule {}", self.rule),
                    });
                }
            }
        }
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError> {
        if let Some(e) = &self.exit {
            if self.done_sent {
                return Ok(None);
            }
            self.done_sent = true;
            let status = e.status.or(e.signal.map(|s| 128 + s)).unwrap_or(-1);
            return Ok(Some((clock::mono_ns(), Event::Done { status })));
        }
        self.inner.next_event(timeout)
    }

    fn stats(&mut self) -> InstanceStats {
        self.inner.stats()
    }

    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        self.stop_prober.store(true, Ordering::Relaxed);
        match self.exit.clone() {
            Some(e) => Ok(e),
            None => {
                // As `docker stop`: SIGTERM first (a peer runtime forwards it to the container), the
                // backend's stop (SIGKILL) after a grace of at most STOP_GRACE: a process that is pid 1
                // of its namespace without a SIGTERM handler (busybox httpd) ignores SIGTERM, and a
                // density sweep stops hundreds of them.
                if let Some(pid) = self.inner.pid().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
                }
                self.inner.stop(timeout.min(STOP_GRACE))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_the_regex_checked() {
        assert!(matches!(Readiness::parse("tcp:8080").unwrap(), Readiness::Tcp(8080)));
        assert!(Readiness::parse("log:listening on \\d+").unwrap().holds_alive());
        assert!(!Readiness::parse("exit").unwrap().holds_alive());
        let e = Readiness::parse("port:80").unwrap_err().to_string();
        assert!(
            e.contains("port:80") && e.contains("tcp:PORT") && e.contains("log:REGEX") && e.contains("exit"),
            "{e}"
        );
        let e = Readiness::parse("log:([").unwrap_err().to_string();
        assert!(e.contains("log:([") && e.contains("regular expression"), "{e}");
    }

    #[test]
    fn our_own_process_is_in_no_other_network_namespace() {
        assert_eq!(netns_pid(std::process::id()), None);
    }
}
