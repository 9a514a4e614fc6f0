//! An instance that is one host child process speaking the protocol on stdout: the process baseline,
//! the microVM's VMM process, and the crun/runc peers all use it.
use super::lines::{Line, LineReader};
use super::{BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Phase, Ready};
use crate::clock;
use crate::memstat;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process whose stdout and stderr both feed one protocol stream.
pub struct ChildInstance {
    backend: String,
    id: String,
    child: Option<Child>,
    reader: LineReader,
    launched_ns: u64,
    spawned_ns: u64,
    marks: Vec<(String, u64)>,
    /// Extra memory accounting for this instance (e.g. the VMM's guest-memory split).
    stats_fn: Option<fn(u32) -> InstanceStats>,
    /// Run on stop/drop after the process is reaped (e.g. remove a peer's state).
    cleanup: Option<Box<dyn FnOnce() + Send>>,
    /// Phases marked by plain output lines: (text the line contains, phase name), see
    /// [`ChildInstance::with_text_phases`].
    text_phases: Vec<(&'static str, &'static str)>,
    /// Measure the process's seccomp confinement at ready ([`ChildInstance::with_confinement_measured`]).
    measure_confinement: bool,
    /// The instance runs the `ready` scenario (it ends right after ready).
    scenario_ends_at_ready: bool,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints; the flags are valid.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl ChildInstance {
    /// Spawn `cmd` with stdin piped and stdout+stderr into one pipe. The launch timestamp is taken
    /// just before the spawn.
    pub fn spawn(backend: &str, spec: &InstanceSpec, cmd: Command) -> Result<ChildInstance, BackendError> {
        Self::spawn_with(backend, spec, cmd, |mut c| c.spawn())
    }

    /// [`ChildInstance::spawn`] with the final spawn done by `spawn`, which must drop the command once
    /// the child is started (e.g. a thread that spawns from inside a jail).
    pub fn spawn_with(
        backend: &str,
        spec: &InstanceSpec,
        mut cmd: Command,
        spawn: impl FnOnce(Command) -> std::io::Result<Child>,
    ) -> Result<ChildInstance, BackendError> {
        let io = |context: &str| {
            let backend = backend.to_string();
            let context = context.to_string();
            move |source| BackendError::Io { backend, context, source }
        };
        let (r, w) = pipe().map_err(io("create output pipe"))?;
        let w2 = w.try_clone().map_err(io("dup output pipe"))?;
        let log = match &spec.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io("create log dir"))?;
                Some(std::fs::File::create(dir.join(format!("{}.log", spec.id))).map_err(io("create log file"))?)
            }
            None => None,
        };
        cmd.stdin(Stdio::piped()).stdout(Stdio::from(w)).stderr(Stdio::from(w2));
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let program = cmd.get_program().to_os_string();
        let launched_ns = clock::mono_ns();
        // Our copies of the write ends went into `cmd`; `spawn` drops it so EOF arrives when the
        // child exits.
        let child = spawn(cmd).map_err(|e| BackendError::Launch {
            backend: backend.to_string(),
            reason: format!("cannot start {program:?}: {e}"),
        })?;
        let spawned_ns = clock::mono_ns();
        let mut reader = LineReader::new(r).map_err(io("set up output pipe"))?;
        if let Some(f) = log {
            reader = reader.tee(f);
        }
        Ok(ChildInstance {
            backend: backend.to_string(),
            id: spec.id.clone(),
            child: Some(child),
            reader,
            launched_ns,
            spawned_ns,
            marks: Vec::new(),
            stats_fn: None,
            cleanup: None,
            text_phases: Vec::new(),
            measure_confinement: false,
            scenario_ends_at_ready: matches!(spec.scenario, workloads::scenario::Scenario::Ready),
        })
    }

    /// Use `f(pid)` for [`Instance::stats`] instead of plain RSS/PSS.
    pub fn with_stats(mut self, f: fn(u32) -> InstanceStats) -> Self {
        self.stats_fn = Some(f);
        self
    }

    /// Count launch-to-ready from `ns` (host CLOCK_MONOTONIC), earlier than the spawn: for backends
    /// that do launch work of their own before spawning (e.g. the VMM's jail).
    pub fn with_launched_ns(mut self, ns: u64) -> Self {
        self.launched_ns = self.launched_ns.min(ns);
        self
    }

    /// Mark a phase when a plain output line containing `text` arrives (host arrival time), e.g. a
    /// guest kernel's console line `Run /init as init process`; the first match of each counts.
    pub fn with_text_phases(mut self, phases: &[(&'static str, &'static str)]) -> Self {
        self.text_phases = phases.to_vec();
        self
    }

    /// At ready, measure this process's seccomp confinement as the backend's supervisor
    /// ([`super::confinement::note_ready`]: once per backend per vmct process), for layer (c). Not for
    /// the `ready` scenario, whose instance ends right after ready: a process exiting under the
    /// reader would be counted in part, and its exit status could reach the reader instead of us.
    pub fn with_confinement_measured(mut self) -> Self {
        self.measure_confinement = !self.scenario_ends_at_ready;
        self
    }

    /// The last plain (non-protocol) output lines, oldest first, at most `n`.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let t = &self.reader.tail;
        t[t.len().saturating_sub(n)..].to_vec()
    }

    /// Run `f` after the process is gone (stop or drop).
    pub fn with_cleanup(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.cleanup = Some(Box::new(f));
        self
    }

    /// Write one command line (a newline is added) to the child's stdin, e.g. the VMM's
    /// `snapshot DIR`; read the reply with [`Instance::next_event`]. A child that already exited gives
    /// an `Io` error (broken pipe), never a SIGPIPE: `vmct` restores SIGPIPE's default action, which
    /// would end the whole harness.
    pub fn send_line(&mut self, line: &str) -> Result<(), BackendError> {
        use std::io::Write;
        let io = |source| BackendError::Io {
            backend: self.backend.clone(),
            context: format!("write a command to instance {}", self.id),
            source,
        };
        let stdin = self
            .child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "instance stopped")))?;
        without_sigpipe(|| stdin.write_all(format!("{line}\n").as_bytes()).and_then(|_| stdin.flush())).map_err(io)
    }

    fn read(&mut self, timeout: Duration) -> Result<Line, BackendError> {
        self.reader.next(timeout).map_err(|source| BackendError::Io {
            backend: self.backend.clone(),
            context: format!("read from instance {}", self.id),
            source,
        })
    }

    fn exited(&mut self, what: &'static str) -> BackendError {
        let exit = match self.child.as_mut().map(|c| c.wait()) {
            Some(Ok(st)) => describe(&st),
            Some(Err(e)) => format!("wait failed: {e}"),
            None => "already stopped".into(),
        };
        let tail = self.tail(5).join(" | ");
        BackendError::Exited {
            backend: self.backend.clone(),
            id: self.id.clone(),
            what,
            exit,
            log: if tail.is_empty() { String::new() } else { format!(": {tail}") },
        }
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(f) = self.cleanup.take() {
            f();
        }
    }
}

/// Run `write` with SIGPIPE blocked in this thread; a SIGPIPE it raised (the reader is gone: EPIPE) is
/// taken off the thread's pending set before the old mask comes back, so the write fails with
/// `BrokenPipe` instead of killing the process.
fn without_sigpipe<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let pipe = SigSet::from(Signal::SIGPIPE);
    let old = pipe.thread_swap_mask(SigmaskHow::SIG_BLOCK).map_err(std::io::Error::from)?;
    let r = write();
    if r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        // EPIPE on a pipe raises SIGPIPE for the writing thread (blocked signals stay pending even when
        // ignored), so take it, without waiting in case it is not there.
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `pipe.as_ref()` is a valid sigset_t, the siginfo pointer may be null, and `zero` is a
        // valid timespec living across the call.
        unsafe { libc::sigtimedwait(pipe.as_ref(), std::ptr::null_mut(), &zero) };
    }
    let _ = old.thread_set_mask();
    r
}

fn describe(st: &std::process::ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit".into(),
    }
}

impl Instance for ChildInstance {
    fn id(&self) -> &str {
        &self.id
    }

    fn request_stop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        let deadline = clock::deadline_ns(timeout);
        loop {
            let left = Duration::from_nanos(deadline.saturating_sub(clock::mono_ns()));
            match self.read(left)? {
                Line::Event(ready_ns, Event::Ready) => {
                    let mut phases = Vec::new();
                    let mut prev = self.launched_ns;
                    if self.marks.is_empty() {
                        phases.push(Phase { name: "spawn".into(), duration_s: clock::ns_to_s(self.spawned_ns - prev) });
                        prev = self.spawned_ns;
                    }
                    for (name, ns) in &self.marks {
                        phases.push(Phase { name: name.clone(), duration_s: clock::ns_to_s(ns.saturating_sub(prev)) });
                        prev = *ns;
                    }
                    phases.push(Phase {
                        name: "to_ready".into(),
                        duration_s: clock::ns_to_s(ready_ns.saturating_sub(prev)),
                    });
                    if let (true, Some(pid)) = (self.measure_confinement, self.child.as_ref().map(Child::id)) {
                        super::confinement::note_ready(&self.backend, pid, super::confinement::Descend::Yes);
                    }
                    return Ok(Ready { launched_ns: self.launched_ns, ready_ns, phases });
                }
                Line::Event(_, Event::Phase { name, mono_ns }) => self.marks.push((name, mono_ns)),
                Line::Event(_, Event::Done { .. }) | Line::Eof => return Err(self.exited("reported ready")),
                Line::Text(t) => {
                    let now = clock::mono_ns();
                    if let Some((_, name)) = self
                        .text_phases
                        .iter()
                        .find(|(text, name)| t.contains(text) && !self.marks.iter().any(|(m, _)| m == name))
                    {
                        self.marks.push((name.to_string(), now));
                    }
                }
                Line::Event(..) => {}
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
                Line::Timeout => {
                    let tail = self.tail(5).join(" | ");
                    return Err(BackendError::Timeout {
                        backend: self.backend.clone(),
                        id: self.id.clone(),
                        what: "report ready",
                        timeout,
                        log: if tail.is_empty() { String::new() } else { format!("; last output: {tail}") },
                    });
                }
            }
        }
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError> {
        let deadline = clock::deadline_ns(timeout);
        loop {
            let left = Duration::from_nanos(deadline.saturating_sub(clock::mono_ns()));
            match self.read(left)? {
                Line::Event(ns, e) => return Ok(Some((ns, e))),
                Line::Text(_) => {}
                Line::Eof => return Ok(None),
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
                Line::Timeout => {
                    return Err(BackendError::Timeout {
                        backend: self.backend.clone(),
                        id: self.id.clone(),
                        what: "finish",
                        timeout,
                        log: String::new(),
                    })
                }
            }
        }
    }

    fn next_line(&mut self, timeout: Duration) -> Result<Line, BackendError> {
        self.read(timeout)
    }

    fn stats(&mut self) -> InstanceStats {
        let Some(pid) = self.pid() else { return InstanceStats::default() };
        if let Some(f) = self.stats_fn {
            return f(pid);
        }
        let m = memstat::proc_mem(pid).unwrap_or_default();
        InstanceStats { rss_bytes: Some(m.rss_bytes), pss_bytes: Some(m.pss_bytes), ..Default::default() }
    }

    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        let Some(child) = self.child.as_mut() else { return Ok(ExitInfo::default()) };
        drop(child.stdin.take());
        // After a stop request (a signal to vmct) nothing waits for a graceful end.
        let timeout = if crate::interrupt::requested() { Duration::ZERO } else { timeout };
        let deadline = clock::deadline_ns(timeout);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if clock::mono_ns() < deadline => std::thread::sleep(super::REAP_POLL),
                Ok(None) => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        self.child = None;
        // Drain what the instance wrote before it exited (its log gets the last lines too).
        while let Ok(Line::Event(..) | Line::Text(_)) = self.reader.next(Duration::ZERO) {}
        self.finish();
        Ok(ExitInfo {
            status: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            oom_killed: false,
            error: None,
        })
    }
}

impl Drop for ChildInstance {
    fn drop(&mut self) {
        self.finish();
    }
}
