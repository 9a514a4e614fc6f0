//! The start channel between the runtime (parent) and the container init (child), with typed ends:
//! [`ParentEnd`] and [`ChildEnd`] have one method per message, so neither side writes raw bytes.
//!
//! Two one-way links, both close-on-exec:
//! - child -> parent: a pipe carrying fixed-size [`ChildMsg`]s (a stage reached with its timestamp, or
//!   the stage and step that failed). The pipe closes when the entry point replaced the init, so EOF
//!   after [`Stage::Seccomp`] means `execve` succeeded.
//! - parent -> child: a unix socket carrying the one `Go` byte (cgroup attached, uid/gid maps written).
//!   A socket rather than a pipe: `send(MSG_NOSIGNAL)` reports a child that died early as EPIPE
//!   without raising SIGPIPE in the harness.
//!
//! The child side only holds raw fds and calls [`Sys`] (no allocation between clone and exec).
use crate::sys::{self, Errno, Sys};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A named stage of the init (the child side of the start sequence, see [`crate::init`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Redirect stdio.
    Stdio = 1,
    /// Wait for the parent.
    Sync = 2,
    /// Become root in the user namespace; later, switch to the process user
    /// ([`crate::spec::ProcessUser`]).
    Identity = 3,
    /// Mount the root filesystem.
    Rootfs = 4,
    /// pivot_root and detach the old root.
    Pivot = 5,
    /// Set the hostname.
    Hostname = 6,
    /// Bring up loopback.
    Network = 7,
    /// New cgroup namespace.
    CgroupNs = 8,
    /// Drop capabilities.
    Caps = 9,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs = 10,
    /// Install seccomp.
    Seccomp = 11,
    /// execve.
    Exec = 12,
    /// Open the terminal in the container's devpts and hand its master to the parent.
    Terminal = 13,
    /// Own fd table: stop sharing the runtime's (see [`crate::sys::Sys::unshare_fds`]).
    Files = 14,
    /// Change to the process's working directory (`process.cwd`, the image's WorkingDir).
    Cwd = 15,
}

impl Stage {
    /// Every stage, in declaration order.
    pub const ALL: [Stage; 15] = [
        Stage::Stdio,
        Stage::Sync,
        Stage::Identity,
        Stage::Rootfs,
        Stage::Pivot,
        Stage::Hostname,
        Stage::Network,
        Stage::CgroupNs,
        Stage::Caps,
        Stage::NoNewPrivs,
        Stage::Seccomp,
        Stage::Exec,
        Stage::Terminal,
        Stage::Files,
        Stage::Cwd,
    ];

    /// Name as used in phases and errors.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Stdio => "stdio",
            Stage::Sync => "sync",
            Stage::Identity => "identity",
            Stage::Rootfs => "rootfs",
            Stage::Pivot => "pivot",
            Stage::Hostname => "hostname",
            Stage::Network => "network",
            Stage::CgroupNs => "cgroupns",
            Stage::Caps => "caps",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::Seccomp => "seccomp",
            Stage::Exec => "exec",
            Stage::Terminal => "terminal",
            Stage::Files => "files",
            Stage::Cwd => "cwd",
        }
    }

    fn from_u8(v: u8) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u8 == v)
    }
}

/// A message from the child to the parent (fixed [`MSG_LEN`] bytes, written atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildMsg {
    /// The child finished `stage` at host monotonic `ns`.
    Reached {
        /// Stage.
        stage: Stage,
        /// Timestamp.
        ns: u64,
    },
    /// Step `op` (index into the plan's ops, or 0) of `stage` failed with `errno`.
    Failed {
        /// Stage.
        stage: Stage,
        /// Op index.
        op: u16,
        /// errno.
        errno: Errno,
    },
}

/// Size of an encoded [`ChildMsg`].
pub const MSG_LEN: usize = 16;

impl ChildMsg {
    /// Encode: byte 0 the kind (1 reached, 2 failed), byte 1 the stage, then little-endian fields
    /// (failed: op at 2..4, errno at 4..8; reached: ns at 8..16).
    pub fn encode(&self) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        match *self {
            ChildMsg::Reached { stage, ns } => {
                b[0] = 1;
                b[1] = stage as u8;
                b[8..].copy_from_slice(&ns.to_le_bytes());
            }
            ChildMsg::Failed { stage, op, errno } => {
                b[0] = 2;
                b[1] = stage as u8;
                b[2..4].copy_from_slice(&op.to_le_bytes());
                b[4..8].copy_from_slice(&errno.to_le_bytes());
            }
        }
        b
    }

    /// Decode; None for garbage.
    pub fn decode(b: &[u8; MSG_LEN]) -> Option<ChildMsg> {
        let stage = Stage::from_u8(b[1])?;
        match b[0] {
            1 => Some(ChildMsg::Reached { stage, ns: u64::from_le_bytes(b[8..].try_into().ok()?) }),
            2 => Some(ChildMsg::Failed {
                stage,
                op: u16::from_le_bytes([b[2], b[3]]),
                errno: i32::from_le_bytes(b[4..8].try_into().ok()?),
            }),
            _ => None,
        }
    }
}

/// The parent's one message to the child: go on (cgroup attached, maps written).
pub(crate) const GO: u8 = 0x60;

/// Create the channel: the parent's end and the child's fds (which the parent keeps open until the
/// clone and then drops, see [`ChildFds::end`]).
pub fn channel() -> std::io::Result<(ParentEnd, ChildFds)> {
    let (from_child, to_parent) = sys::pipe()?;
    let (to_child, from_parent) = sys::socketpair()?;
    Ok((ParentEnd { to_child, from_child }, ChildFds { to_parent, from_parent }))
}

/// What the parent reads next from the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A message.
    Msg(ChildMsg),
    /// The channel closed (exec succeeded, or the child died) or carried garbage.
    Closed,
    /// Nothing arrived within the timeout.
    TimedOut,
}

/// The parent's end.
#[derive(Debug)]
pub struct ParentEnd {
    to_child: OwnedFd,
    from_child: OwnedFd,
}

impl ParentEnd {
    /// The parent's fds, which the child's fd table copies at clone and must close
    /// ([`sys::close_in_child`]).
    pub fn raw_fds(&self) -> [RawFd; 2] {
        [self.to_child.as_raw_fd(), self.from_child.as_raw_fd()]
    }

    /// Tell the child to go on. A child that already failed (EPIPE) is not an error here: its
    /// failure report is waiting on the channel.
    pub fn send_go(&self) -> std::io::Result<()> {
        match sys::send_nosignal(self.to_child.as_raw_fd(), &[GO]) {
            Ok(()) | Err(libc::EPIPE) => Ok(()),
            Err(e) => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// Wait up to `timeout` for the child's next report.
    pub fn next_report(&self, timeout: Duration) -> std::io::Result<Report> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        if !sys::poll_in(self.from_child.as_raw_fd(), ms).unwrap_or(true) {
            return Ok(Report::TimedOut);
        }
        let mut buf = [0u8; MSG_LEN];
        match sys::Real.read_exact(self.from_child.as_raw_fd(), &mut buf) {
            Ok(true) => Ok(ChildMsg::decode(&buf).map_or(Report::Closed, Report::Msg)),
            Ok(false) => Ok(Report::Closed),
            Err(e) => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// The child's fds as owned by the parent before the clone.
#[derive(Debug)]
pub struct ChildFds {
    to_parent: OwnedFd,
    from_parent: OwnedFd,
}

impl ChildFds {
    /// The raw end with both fds first moved by `place` (e.g. into [`crate::fdslots`]).
    pub fn placed(&self, mut place: impl FnMut(&OwnedFd) -> std::io::Result<RawFd>) -> std::io::Result<ChildEnd> {
        Ok(ChildEnd { to_parent: place(&self.to_parent)?, from_parent: place(&self.from_parent)? })
    }

    /// The raw end the child uses (valid while `self` lives; the clone copies it).
    pub fn end(&self) -> ChildEnd {
        ChildEnd { to_parent: self.to_parent.as_raw_fd(), from_parent: self.from_parent.as_raw_fd() }
    }
}

/// The child's end: raw fds and [`Sys`] calls only, so it can be used between clone and exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildEnd {
    /// Pipe the child writes [`ChildMsg`]s to.
    pub to_parent: RawFd,
    /// Socket the child reads `Go` from.
    pub from_parent: RawFd,
}

impl ChildEnd {
    /// Report that `stage` is done, stamped with [`Sys::now_ns`]. Errors are ignored: a parent that
    /// is gone will not read it, and the init goes on to fail or exec anyway.
    pub fn reached<S: Sys + ?Sized>(&self, sys: &S, stage: Stage) {
        let _ = sys.write(self.to_parent, &ChildMsg::Reached { stage, ns: sys.now_ns() }.encode());
    }

    /// Report a failure (the init's last message before `_exit`).
    pub fn failed<S: Sys + ?Sized>(&self, sys: &S, msg: ChildMsg) {
        let _ = sys.write(self.to_parent, &msg.encode());
    }

    /// Wait for the parent's `Go`; ECANCELED if the parent closed the channel or sent anything else.
    pub fn wait_for_go<S: Sys + ?Sized>(&self, sys: &S) -> Result<(), Errno> {
        let mut b = [0u8; 1];
        match sys.read_exact(self.from_parent, &mut b) {
            Ok(true) if b[0] == GO => Ok(()),
            Ok(_) => Err(libc::ECANCELED),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip() {
        for m in [
            ChildMsg::Reached { stage: Stage::Pivot, ns: u64::MAX - 3 },
            ChildMsg::Failed { stage: Stage::Seccomp, op: 7, errno: libc::EPERM },
        ] {
            assert_eq!(ChildMsg::decode(&m.encode()), Some(m));
        }
        assert_eq!(ChildMsg::decode(&[0; MSG_LEN]), None);
        for s in Stage::ALL {
            assert_eq!(Stage::from_u8(s as u8), Some(s));
        }
    }

    #[test]
    fn typed_ends_carry_go_reports_and_eof() {
        let (parent, child_fds) = channel().unwrap();
        let child = child_fds.end();
        parent.send_go().unwrap();
        assert_eq!(child.wait_for_go(&sys::Real), Ok(()));
        child.reached(&sys::Real, Stage::Rootfs);
        child.failed(&sys::Real, ChildMsg::Failed { stage: Stage::Exec, op: 0, errno: libc::ENOENT });
        match parent.next_report(Duration::from_secs(5)).unwrap() {
            Report::Msg(ChildMsg::Reached { stage: Stage::Rootfs, ns }) => assert!(ns > 0),
            r => panic!("{r:?}"),
        }
        assert_eq!(
            parent.next_report(Duration::from_secs(5)).unwrap(),
            Report::Msg(ChildMsg::Failed { stage: Stage::Exec, op: 0, errno: libc::ENOENT })
        );
        assert_eq!(parent.next_report(Duration::from_millis(10)).unwrap(), Report::TimedOut);
        drop(child_fds);
        assert_eq!(parent.next_report(Duration::from_secs(5)).unwrap(), Report::Closed);
    }

    #[test]
    fn a_closed_parent_cancels_the_wait_for_go() {
        let (parent, child_fds) = channel().unwrap();
        drop(parent);
        assert_eq!(child_fds.end().wait_for_go(&sys::Real), Err(libc::ECANCELED));
    }
}
