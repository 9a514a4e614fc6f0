//! Small wrappers around the raw system calls the probes use: errno names, running a probe in a forked
//! child with a timeout, and namespace identity. Every `unsafe` block of the probe tree that is not a
//! one-off system call lives here.
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Symbolic name of an errno value (for probe details).
pub fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EDQUOT => "EDQUOT",
        libc::ENOSPC => "ENOSPC",
        libc::EFBIG => "EFBIG",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

/// Name of the last error of an `std::io::Error`.
pub fn io_name(e: &std::io::Error) -> String {
    e.raw_os_error().map(errno_name).unwrap_or_else(|| e.to_string())
}

/// How a forked probe child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (SIGSYS: a seccomp kill).
    Signaled(i32),
    /// Did not finish in time and was killed.
    TimedOut,
}

/// Run `f` in a forked child with `timeout`; returns the `String` it returned and how it ended.
pub fn fork_run(timeout: Duration, f: impl FnOnce() -> String) -> (String, End) {
    fork_stream(timeout, |w| {
        let out = f();
        let _ = std::io::Write::write_all(w, out.as_bytes());
    })
}

/// Run `f` in a forked child with `timeout`; returns everything it wrote to the pipe it is given (kept
/// even when the child is killed part-way) and how it ended.
///
/// The workload is single-threaded, so the child may allocate. A probe that crashes, is killed by a
/// seccomp filter or hangs cannot take the catalogue down with it; process-wide changes a probe makes
/// (capabilities, cgroup membership, ptrace attachments) end with the child.
pub fn fork_stream(timeout: Duration, f: impl FnOnce(&mut std::fs::File)) -> (String, End) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return (format!("pipe: {}", errno_name(errno())), End::Exited(-1));
    }
    // SAFETY: pipe2 succeeded; both fds are fresh and owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the workload is single-threaded, so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return (format!("fork: {}", errno_name(errno())), End::Exited(-1));
    }
    if pid == 0 {
        drop(r);
        let mut w = std::fs::File::from(w);
        f(&mut w);
        drop(w);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let deadline = Instant::now() + timeout;
    let mut reader = std::fs::File::from(r);
    let mut out = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&reader), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: pfd is one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n == 0 {
            timed_out = true;
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        let mut buf = [0u8; 4096];
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
    }
    if timed_out {
        // SAFETY: pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid int.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    let end = if timed_out {
        End::TimedOut
    } else if libc::WIFSIGNALED(status) {
        End::Signaled(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    };
    (String::from_utf8_lossy(&out).into_owned(), end)
}

/// Inode of the caller's namespace of `kind` (`mnt`, `uts`, `pid`, ...), from `/proc/self/ns`.
pub fn own_ns(kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    parse_ns_link(&link.to_string_lossy())
}

/// `uts:[4026531838]` -> 4026531838.
pub fn parse_ns_link(s: &str) -> Option<u64> {
    s.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// A NUL-terminated copy of `s` for system calls.
pub fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', "")).expect("NULs removed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links_parse() {
        assert_eq!(parse_ns_link("uts:[4026531838]"), Some(4026531838));
        assert_eq!(parse_ns_link("garbage"), None);
    }

    #[test]
    fn fork_run_reports_output_and_crashes() {
        let (out, end) = fork_run(Duration::from_secs(5), || "hello".into());
        assert_eq!((out.as_str(), end), ("hello", End::Exited(0)));
        let (_, end) = fork_run(Duration::from_secs(5), || {
            // SAFETY: aborting the forked test child only.
            unsafe { libc::abort() }
        });
        assert_eq!(end, End::Signaled(libc::SIGABRT));
        let (_, end) = fork_run(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(10));
            String::new()
        });
        assert_eq!(end, End::TimedOut);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(9999), "errno 9999");
    }
}
