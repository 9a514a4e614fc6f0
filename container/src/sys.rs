//! Every `unsafe` system call of the runtime, in one small module.
//!
//! Hand-written on purpose (not nix): the container init runs between a fork-style `clone3` and
//! `execve` in a copy of a multi-threaded parent, where only async-signal-safe calls are allowed. These
//! wrappers take `&CStr` / raw values prepared by the parent and never allocate, so the child cannot
//! deadlock on a malloc lock some other parent thread held at clone time.
//!
//! The child's steps go through the [`Sys`] trait so the init sequence is unit-testable without root
//! (see `init::tests`).
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// An errno value (positive).
pub type Errno = i32;

fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn check(rc: libc::c_long) -> Result<(), Errno> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Host CLOCK_MONOTONIC in nanoseconds (vDSO; async-signal-safe).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The system calls the container init makes between clone and exec.
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// umount2(2).
    fn umount2(&self, target: &CStr, flags: i32) -> Result<(), Errno>;
    /// mkdir(2); EEXIST is not an error.
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// mknod(2).
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> Result<(), Errno>;
    /// Create an empty regular file (a bind-mount target).
    fn touch(&self, path: &CStr) -> Result<(), Errno>;
    /// symlink(2).
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// pivot_root(".", "."): the old root ends up stacked on the new one (then detach ".").
    fn pivot_root_dot(&self) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// Bring the loopback interface up (SIOCSIFFLAGS on "lo").
    fn loopback_up(&self) -> Result<(), Errno>;
    /// setresgid(0,0,0) + setresuid(0,0,0) (after the parent wrote the user namespace maps).
    fn become_root(&self) -> Result<(), Errno>;
    /// unshare(2).
    fn unshare(&self, flags: i32) -> Result<(), Errno>;
    /// dup2(2) (clears close-on-exec on `to`).
    fn dup2(&self, from: RawFd, to: RawFd) -> Result<(), Errno>;
    /// Give the process a terminal from the container's own devpts (after the pivot): open
    /// `/dev/ptmx`, unlock it, open its peer, send the master to the parent over the unix socket
    /// `sock` (SCM_RIGHTS, like runc's console socket), make the peer stdin/stdout/stderr, start a
    /// session and make the peer its controlling terminal.
    fn terminal(&self, sock: RawFd) -> Result<(), Errno>;
    /// Drop capability `cap` from the bounding set.
    fn capbset_drop(&self, cap: u32) -> Result<(), Errno>;
    /// Clear the ambient set and set effective = permitted = inheritable = `mask` (capset v3).
    fn capset(&self, mask: u64) -> Result<(), Errno>;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn no_new_privs(&self) -> Result<(), Errno>;
    /// Install a seccomp BPF filter (needs no_new_privs or CAP_SYS_ADMIN).
    fn seccomp(&self, prog: &[seccompiler::sock_filter]) -> Result<(), Errno>;
    /// execve(2); only returns on failure.
    fn execve(&self, path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno;
    /// write(2) all of `buf` (the channel; messages are < PIPE_BUF so one write is atomic).
    fn write(&self, fd: RawFd, buf: &[u8]) -> Result<(), Errno>;
    /// read(2) exactly `buf.len()` bytes; Ok(false) at EOF.
    fn read_exact(&self, fd: RawFd, buf: &mut [u8]) -> Result<bool, Errno>;
    /// Host monotonic clock, ns.
    fn now_ns(&self) -> u64 {
        mono_ns()
    }
}

/// The real system calls.
pub struct Real;

fn opt(p: Option<&CStr>) -> *const libc::c_char {
    p.map_or(std::ptr::null(), |c| c.as_ptr())
}

impl Sys for Real {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        // SAFETY: all pointers are NUL-terminated strings or null, valid for the call.
        check(unsafe { libc::mount(opt(src), target.as_ptr(), opt(fstype), flags, opt(data).cast()) } as _)
    }

    fn umount2(&self, target: &CStr, flags: i32) -> Result<(), Errno> {
        // SAFETY: target is a valid C string.
        check(unsafe { libc::umount2(target.as_ptr(), flags) } as _)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: path is a valid C string.
        match check(unsafe { libc::mkdir(path.as_ptr(), mode) } as _) {
            Err(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> Result<(), Errno> {
        // SAFETY: path is a valid C string.
        check(unsafe { libc::mknod(path.as_ptr(), mode, dev) } as _)?;
        // The umask applied to mknod; set the permission bits asked for.
        // SAFETY: path is a valid C string.
        check(unsafe { libc::chmod(path.as_ptr(), mode & 0o7777) } as _)
    }

    fn touch(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: path is a valid C string; the fd is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
        check(fd as _)?;
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        // SAFETY: both are valid C strings.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } as _)
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: path is a valid C string.
        check(unsafe { libc::chdir(path.as_ptr()) } as _)
    }

    fn pivot_root_dot(&self) -> Result<(), Errno> {
        let dot = c".";
        // SAFETY: pivot_root takes two C strings; "." is static.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) })
    }

    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        let b = name.to_bytes();
        // SAFETY: pointer and length describe the bytes of `name`.
        check(unsafe { libc::sethostname(b.as_ptr().cast(), b.len()) } as _)
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        // SAFETY: socket(2) with constant arguments.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(s as _)?;
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads a valid ifreq; s is our socket, closed right after.
        let rc = unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) };
        let r = check(rc as _);
        // SAFETY: s is our socket.
        unsafe { libc::close(s) };
        r
    }

    fn become_root(&self) -> Result<(), Errno> {
        // Raw system calls, not glibc's setresgid/setresuid: in a multi-threaded parent glibc's wrappers
        // broadcast the change to every thread it knows of (nptl "setxid") and wait for them. The child
        // of clone3 has one thread but inherits glibc's thread list, so the wrapper would wait forever
        // (seen with concurrent launchers: the container-userns child hung in futex_wait).
        // SAFETY: plain syscalls with integer arguments.
        check(unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) } as _)?;
        // SAFETY: as above.
        check(unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) } as _)
    }

    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        // SAFETY: integer argument.
        check(unsafe { libc::unshare(flags) } as _)
    }

    fn dup2(&self, from: RawFd, to: RawFd) -> Result<(), Errno> {
        if from == to {
            // dup2 would keep FD_CLOEXEC; clear it instead.
            // SAFETY: fcntl on an fd number; no memory involved.
            return check(unsafe { libc::fcntl(from, libc::F_SETFD, 0) } as _);
        }
        // SAFETY: integer arguments.
        check(unsafe { libc::dup2(from, to) } as _)
    }

    fn terminal(&self, sock: RawFd) -> Result<(), Errno> {
        // SAFETY: a NUL-terminated literal path and integer flags.
        let master = unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        check(master as _)?;
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads an int from a valid pointer.
        check(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } as _)?;
        // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the peer (Linux 4.13+).
        let slave = unsafe { libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
        check(slave as _)?;
        send_fd(sock, master)?;
        // SAFETY: closing an fd this function opened.
        unsafe { libc::close(master) };
        for to in 0..3 {
            // SAFETY: integer arguments.
            check(unsafe { libc::dup2(slave, to) } as _)?;
        }
        // SAFETY: closing an fd this function opened (0-2 keep their copies).
        unsafe { libc::close(slave) };
        // SAFETY: setsid takes no arguments.
        check(unsafe { libc::setsid() } as _)?;
        // SAFETY: ioctl with an integer argument (0: do not steal a terminal owned by another session).
        check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } as _)
    }

    fn capbset_drop(&self, cap: u32) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } as _)
    }

    fn capset(&self, mask: u64) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
        check(rc as _)?;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
        let lo = mask as u32;
        let hi = (mask >> 32) as u32;
        let data = [
            Data { effective: lo, permitted: lo, inheritable: lo },
            Data { effective: hi, permitted: hi, inheritable: hi },
        ];
        // SAFETY: header and two data structs laid out as the kernel's v3 ABI; both live for the call.
        check(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) })
    }

    fn no_new_privs(&self) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _)
    }

    fn seccomp(&self, prog: &[seccompiler::sock_filter]) -> Result<(), Errno> {
        // seccompiler's sock_filter is #[repr(C)] with the kernel's layout, like libc's.
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
        // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies it.
        check(unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog) })
    }

    fn execve(&self, path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
        debug_assert!(argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()));
        // SAFETY: argv and envp are null-terminated arrays of pointers to C strings the parent built
        // and keeps alive (the child owns a copy of that memory).
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    }

    fn write(&self, fd: RawFd, buf: &[u8]) -> Result<(), Errno> {
        loop {
            // SAFETY: buf is valid for reads of its length.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return if n == buf.len() as isize { Ok(()) } else { Err(if n < 0 { errno() } else { libc::EIO }) };
        }
    }

    fn read_exact(&self, fd: RawFd, buf: &mut [u8]) -> Result<bool, Errno> {
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: the destination range is inside buf.
            let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
            match n {
                0 => return Ok(false),
                n if n < 0 => {
                    let e = errno();
                    if e != libc::EINTR {
                        return Err(e);
                    }
                }
                n => got += n as usize,
            }
        }
        Ok(true)
    }
}

/// Close `fd` in a cloned child (async-signal-safe; errors are of no use there). For the parent's ends
/// of the start channels, which the child's fd table copied and would otherwise keep open.
pub fn close_in_child(fd: RawFd) {
    // SAFETY: close(2) on an int; the child owns its copy of the fd table and never uses `fd` again.
    unsafe { libc::close(fd) };
}

/// End the child without running any destructor or atexit handler.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

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

/// A msghdr over one iovec with `cbuf` (8-byte aligned, 32 bytes) as its whole control buffer.
fn msghdr(iov: &mut libc::iovec, cbuf: &mut [u64; 4]) -> libc::msghdr {
    // SAFETY: msghdr is plain data (pointers and integers) for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cbuf);
    msg
}

/// Send `fd` with one data byte over the unix socket `sock` (SCM_RIGHTS); no allocation, so the
/// container init may call it.
fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), Errno> {
    let byte = [b'T'];
    let mut iov = libc::iovec { iov_base: byte.as_ptr() as *mut libc::c_void, iov_len: 1 };
    // Room for one cmsghdr carrying one int (CMSG_SPACE(4) is 24 on 64-bit Linux), 8-byte aligned.
    let mut cbuf = [0u64; 4];
    let mut msg = msghdr(&mut iov, &mut cbuf);
    // SAFETY: `msg` points to live locals; the CMSG_* helpers compute offsets inside `cbuf`, which
    // is large enough for one int.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        check(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as _)
    }
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
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
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
    // SAFETY: the kernel returned a fresh program fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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
    /// A pidfd for it (CLONE_PIDFD).
    pub pidfd: OwnedFd,
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

/// `clone3` with fork semantics (no new stack, no CLONE_VM) plus `ns_flags` and CLONE_PIDFD.
/// Returns `Ok(None)` in the child and `Ok(Some(..))` in the parent.
///
/// # Safety
/// The caller's child branch must only make async-signal-safe calls (the [`Sys`] methods) and must end
/// in `execve` or [`exit_child`]: the child is a copy of a possibly multi-threaded process.
pub unsafe fn clone_fork(ns_flags: u64) -> std::io::Result<Option<Cloned>> {
    let mut pidfd: i32 = -1;
    let args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM or a stack, the child
    // continues on a private copy of this stack, like fork(2). The caller upholds the child contract.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args, std::mem::size_of::<CloneArgs>()) };
    match rc {
        0 => Ok(None),
        pid if pid > 0 => Ok(Some(Cloned {
            pid: pid as i32,
            // SAFETY: the kernel stored a fresh pidfd we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        })),
        _ => Err(std::io::Error::last_os_error()),
    }
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
