//! The handle of a started container: its pid and pidfd, stdio ends, cgroup, veth and private dirs,
//! launch timestamps; stopping or dropping it removes everything it owns.
use crate::cgroup::{self, CgroupDirs, Cgroups};
use crate::channel::Stage;
use crate::net::Veth;
use crate::runtime::{LaunchStage, RuntimeError};
use crate::sys::{self, WaitStatus};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Launch timestamps: `launched_ns` plus (stage, host monotonic ns) marks in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// When `start` was called.
    pub launched_ns: u64,
    /// Marks (parent: prepare, cgroup, clone, attach, exec; child: rootfs, pivot, seccomp = ready to exec).
    pub marks: Vec<(&'static str, u64)>,
}

impl Timings {
    /// Phases as (name, seconds): the gaps between successive marks, sorted by time, each named after
    /// the mark that ends it.
    pub fn phases(&self) -> Vec<(&'static str, f64)> {
        let mut m = self.marks.clone();
        m.sort_by_key(|(_, ns)| *ns);
        let mut prev = self.launched_ns;
        m.into_iter()
            .map(|(n, ns)| {
                let d = ns.saturating_sub(prev) as f64 / 1e9;
                prev = prev.max(ns);
                (n, d)
            })
            .collect()
    }

    /// The last mark (exec), ns.
    pub fn exec_ns(&self) -> u64 {
        self.marks.iter().map(|(_, ns)| *ns).max().unwrap_or(self.launched_ns)
    }
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exit {
    /// Exit status, if it exited.
    pub status: Option<i32>,
    /// Signal, if killed.
    pub signal: Option<i32>,
    /// The memory limit OOM-killed a task of the container.
    pub oom_killed: bool,
}

/// A running (or ended) container. Dropping it kills its processes and removes its cgroup, veth and
/// private dirs (its mounts live in its own mount namespace and vanish with it).
#[derive(Debug)]
pub struct Container {
    pub(crate) id: String,
    pub(crate) pid: i32,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    pub(crate) terminal: Option<OwnedFd>,
    pub(crate) cgroups: Arc<dyn Cgroups>,
    pub(crate) cg: Option<CgroupDirs>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) veth: Option<Veth>,
    pub(crate) exit: Option<WaitStatus>,
    /// Launch timestamps.
    pub timings: Timings,
}

impl Container {
    /// A handle owning nothing yet; [`crate::Runtime::start`] fills it stage by stage, so an error
    /// at any stage removes what the earlier ones made.
    pub(crate) fn new(id: String, cgroups: Arc<dyn Cgroups>, launched_ns: u64) -> Container {
        Container {
            id,
            pid: 0,
            stdin: None,
            stdout: None,
            stderr: None,
            terminal: None,
            cgroups,
            cg: None,
            state_dir: None,
            veth: None,
            exit: None,
            timings: Timings { launched_ns, marks: Vec::new() },
        }
    }

    /// Mark the end of one of the parent's stages, now.
    pub(crate) fn mark_launch(&mut self, stage: LaunchStage) {
        self.timings.marks.push((stage.name(), sys::mono_ns()));
    }

    /// Mark the end of one of the init's stages at `ns` (its report's timestamp).
    pub(crate) fn mark_init(&mut self, stage: Stage, ns: u64) {
        self.timings.marks.push((stage.name(), ns));
    }

    /// Id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's init (the entry point).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The read end of stdout (with [`crate::Output::Pipe`]), once.
    pub fn take_stdout(&mut self) -> Option<OwnedFd> {
        self.stdout.take()
    }

    /// The read end of stderr (with [`crate::Output::Pipe`]), once.
    pub fn take_stderr(&mut self) -> Option<OwnedFd> {
        self.stderr.take()
    }

    /// The master end of the container's pty (with [`crate::ContainerSpec::terminal`]), once.
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// Close the container's stdin (the workload's `idle` scenario ends then).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// cgroup memory usage now, bytes.
    pub fn usage_bytes(&self) -> Option<u64> {
        self.cgroups.usage_bytes(self.cg.as_ref()?)
    }

    /// OOM kills so far.
    pub fn oom_kills(&self) -> Option<u64> {
        self.cgroups.oom_kills(self.cg.as_ref()?)
    }

    /// The cgroup directories.
    pub fn cgroup_dirs(&self) -> Option<&CgroupDirs> {
        self.cg.as_ref()
    }

    /// The container's private dir (upper, work, rootfs).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The container's address with [`crate::NetMode::Bridge`].
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.veth.as_ref().map(|v| v.addr)
    }

    /// Wait up to `timeout` for the init to exit; None if it still runs. The pidfd polled is opened
    /// for this wait only: a live container costs the runtime's process no fd beyond its stdio pipes
    /// (the init is its unreaped child, so the pid cannot name another process meanwhile).
    pub fn wait(&mut self, timeout: Duration) -> Option<WaitStatus> {
        if self.exit.is_none() && self.pid > 0 {
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            let ended = match sys::pidfd_open(self.pid) {
                Ok(fd) => sys::poll_in(fd.as_raw_fd(), ms).unwrap_or(true),
                // Not our child any more (reaped elsewhere): ask without blocking.
                Err(_) => false,
            };
            if let Ok(Some(st)) = sys::waitpid(self.pid, !ended) {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// Close stdin, wait up to `timeout`, SIGKILL if needed; read OOM kills; remove everything.
    pub fn stop(&mut self, timeout: Duration) -> Result<Exit, RuntimeError> {
        self.close_stdin();
        if self.wait(timeout).is_none() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            self.wait(Duration::from_secs(10));
        }
        let oom_killed = self.oom_kills().unwrap_or(0) > 0;
        let exit = match self.exit {
            Some(WaitStatus::Exited(s)) => Exit { status: Some(s), signal: None, oom_killed },
            Some(WaitStatus::Signaled(s)) => Exit { status: None, signal: Some(s), oom_killed },
            None => Exit { oom_killed, ..Default::default() },
        };
        self.cleanup()?;
        Ok(exit)
    }

    fn cleanup(&mut self) -> Result<(), RuntimeError> {
        if self.exit.is_none() && self.pid > 0 {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            if let Ok(Some(st)) = sys::waitpid(self.pid, false) {
                self.exit = Some(st);
            }
        }
        let mut first: Option<RuntimeError> = None;
        self.veth = None;
        if let Some(cg) = self.cg.take() {
            if let Err(source) = cgroup::remove(&cg) {
                first.get_or_insert(RuntimeError::Cgroup { id: self.id.clone(), source });
            }
        }
        if let Some(d) = self.state_dir.take() {
            if let Err(source) = std::fs::remove_dir_all(&d) {
                if source.kind() != std::io::ErrorKind::NotFound {
                    first.get_or_insert(RuntimeError::Io {
                        id: self.id.clone(),
                        what: "remove",
                        path: d.display().to_string(),
                        source,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_sorted_by_time() {
        let t = Timings { launched_ns: 100, marks: vec![("clone", 300), ("rootfs", 250), ("exec", 500)] };
        assert_eq!(t.phases(), vec![("rootfs", 150e-9), ("clone", 50e-9), ("exec", 200e-9)]);
        assert_eq!(t.exec_ns(), 500);
    }
}
