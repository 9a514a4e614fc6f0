//! The runtime's host-side system calls: pipes and sockets for the start channel, receiving the
//! terminal, the v2 device program, `clone3`, signals, waiting, unmounting, chown. Unlike the
//! [`super::Sys`] calls these run in the harness process (they may allocate).
use super::{errno, msghdr, Errno, Real, Sys};
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// send(2) `buf` on a socket without raising SIGPIPE when the peer is gone (EPIPE is returned
/// instead), so a host process that keeps SIGPIPE's default action (to end quietly in a closed
/// pipeline) is not killed when a container dies before reading its start byte.
pub fn send_nosignal(sock: RawFd, buf: &[u8]) -> Result<(), Errno> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    let n = unsafe { libc::send(sock, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(errno());
    }
    if n as usize != buf.len() {
        return Err(libc::EIO);
    }
    Ok(())
}
/// Receive one fd sent by [`Sys::terminal`] on `sock`, without blocking; `Ok(None)` if none is queued.
pub fn recv_fd(sock: RawFd) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cbuf = [0u64; 4];
    let mut msg = msghdr(&mut iov, &mut cbuf);
    // SAFETY: `msg` points to live locals; recvmsg writes at most `msg_controllen` bytes into `cbuf`,
    // and an fd received with SCM_RIGHTS is new in this process and owned by nobody else.
    unsafe {
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn socketpair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: socketpair writes two fds into `fds`.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh fds that nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds that nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `bpf(2)` command numbers and constants used (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Load a `BPF_PROG_TYPE_CGROUP_DEVICE` program; the kernel verifier's log is in the error.
pub fn bpf_load_cgroup_device(prog: &[crate::devices::Insn]) -> std::io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 16 * 1024];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).map_err(|_| std::io::Error::other("BPF program longer than 2^32"))?,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).expect("16 KiB"),
        log_buf: log.as_mut_ptr() as u64,
        prog_name: *b"vmct_devices\0\0\0\0",
        ..Default::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix of the size passed; insns, license and log_buf point at
    // live buffers of the lengths given (Insn is #[repr(C)] with struct bpf_insn's layout).
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr, std::mem::size_of::<ProgLoadAttr>()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
        return Err(std::io::Error::new(e.kind(), format!("BPF_PROG_LOAD: {e}; verifier: {text}")));
    }
    let fd = RawFd::try_from(fd).expect("the kernel's fds are ints");
    // SAFETY: the kernel returned a fresh program fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach a cgroup device program to the cgroup v2 directory open as `cgroup` (BPF_F_ALLOW_MULTI,
/// like runc). The attachment keeps the program alive; it goes away with the cgroup.
pub fn bpf_attach_cgroup_device(cgroup: RawFd, prog: RawFd) -> std::io::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup as u32,
        attach_bpf_fd: prog as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix of the size passed; the fds are the caller's.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attr, std::mem::size_of::<ProgAttachAttr>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Result of [`clone_fork`] in the parent.
pub struct Cloned {
    /// Host pid of the child.
    pub pid: i32,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3` with fork semantics (no new stack, no CLONE_VM) plus `ns_flags`. No pidfd is taken: a
/// runtime with thousands of containers alive would hold one per container; [`pidfd_open`] makes one
/// when waiting.
/// Returns `Ok(None)` in the child and `Ok(Some(..))` in the parent.
///
/// # Safety
/// The caller's child branch must only make async-signal-safe calls (the [`Sys`] methods) and must end
/// in `execve` or [`super::exit_child`]: the child is a copy of a possibly multi-threaded process.
pub unsafe fn clone_fork(ns_flags: u64) -> std::io::Result<Option<Cloned>> {
    let args = CloneArgs { flags: ns_flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM or a stack, the child
    // continues on a private copy of this stack, like fork(2). The caller upholds the child contract.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args, std::mem::size_of::<CloneArgs>()) };
    match rc {
        0 => Ok(None),
        pid if pid > 0 => Ok(Some(Cloned { pid: i32::try_from(pid).expect("the kernel's pids are ints") })),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// `pidfd_open(2)` (Linux 5.3, as `clone3`): a pidfd for `pid`. For a child of this process that is not
/// yet reaped the pid cannot be reused meanwhile, so the pidfd is for that child, even a zombie.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: integer arguments; on success the kernel returns a fresh fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).expect("the kernel's fds are ints");
    // SAFETY: a fresh fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: integer arguments.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Wait status of a reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

/// waitpid(pid); `nohang`: return Ok(None) if still running.
pub fn waitpid(pid: i32, nohang: bool) -> std::io::Result<Option<WaitStatus>> {
    let mut st = 0;
    loop {
        // SAFETY: st is a valid int to write the status to.
        let r = unsafe { libc::waitpid(pid, &mut st, if nohang { libc::WNOHANG } else { 0 }) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(if libc::WIFEXITED(st) {
            WaitStatus::Exited(libc::WEXITSTATUS(st))
        } else {
            WaitStatus::Signaled(libc::WTERMSIG(st))
        }));
    }
}

/// poll(2) one fd for readability (`POLLIN`; a pidfd is readable when its process exits).
/// Returns true if ready within `ms` (-1 = forever).
pub fn poll_in(fd: RawFd, ms: i32) -> std::io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// umount2(path, MNT_DETACH) for gc (host side).
pub fn umount_detach(path: &CStr) -> std::io::Result<()> {
    // SAFETY: path is a valid C string.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// chown(2) (host side: a user-namespaced container's upper dir).
pub fn chown(path: &CStr, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: path is a valid C string.
    if unsafe { libc::chown(path.as_ptr(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel runs x32-ABI system calls: asks for `getpid` with the x32 bit set
/// (`__X32_SYSCALL_BIT`, 0x40000000), which a kernel without x32 support answers with ENOSYS.
/// Harmless either way.
pub fn kernel_runs_x32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: getpid takes no arguments and has no effects.
        let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        rc > 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Description of an errno, e.g. "No such file or directory (os error 2)".
pub fn strerror(e: Errno) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// For a peer runtime's `pre_exec` (runs between fork and exec, so async-signal-safe calls only): move
/// into a private mount namespace, mount an overlay there (so the host never sees it), and detach
/// `umount` if given (crun 1.8 refuses hybrid cgroups unless /sys/fs/cgroup/unified is gone).
pub fn private_mount_ns(overlay: Option<(&CStr, &CStr)>, umount: Option<&CStr>) -> std::io::Result<()> {
    let r = Real;
    let err = std::io::Error::from_raw_os_error;
    r.unshare(libc::CLONE_NEWNS).map_err(err)?;
    r.mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(err)?;
    if let Some((target, data)) = overlay {
        r.mount(Some(c"overlay"), target, Some(c"overlay"), 0, Some(data)).map_err(err)?;
    }
    if let Some(u) = umount {
        r.umount2(u, libc::MNT_DETACH).map_err(err)?;
    }
    Ok(())
}
