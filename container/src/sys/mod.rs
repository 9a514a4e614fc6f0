//! Every `unsafe` system call of the runtime: the container init's (the [`Sys`] trait, here) and the
//! host side's (`host`, re-exported here).
//!
//! Hand-written on purpose (not nix): the container init runs between a fork-style `clone3` and
//! `execve` in a copy of a multi-threaded parent, where only async-signal-safe calls are allowed. These
//! wrappers take `&CStr` / raw values prepared by the parent and never allocate, so the child cannot
//! deadlock on a malloc lock some other parent thread held at clone time.
//!
//! The child's steps go through the [`Sys`] trait so the init sequence is unit-testable without root
//! (see `init::tests`).
use std::ffi::CStr;
use std::os::fd::RawFd;

mod host;

pub use host::*;

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
    /// setgroups(2): replace the supplementary groups with `groups` (raw system call, see
    /// `become_root`).
    fn setgroups(&self, groups: &[libc::gid_t]) -> Result<(), Errno>;
    /// setresgid(gid, gid, gid) (raw system call).
    fn setresgid(&self, gid: u32) -> Result<(), Errno>;
    /// setresuid(uid, uid, uid) (raw system call); from uid 0 to a non-zero uid the kernel clears the
    /// effective, permitted and ambient capabilities (no `PR_SET_KEEPCAPS`).
    fn setresuid(&self, uid: u32) -> Result<(), Errno>;
    /// unshare(2).
    fn unshare(&self, flags: i32) -> Result<(), Errno>;
    /// open(2) read-only and close-on-exec (a namespace file such as `/proc/thread-self/ns/net`).
    fn open_ro(&self, path: &CStr) -> Result<RawFd, Errno>;
    /// setns(2): join the namespace `fd` refers to (`nstype` a `CLONE_NEW*` flag, checked by the kernel).
    fn setns(&self, fd: RawFd, nstype: i32) -> Result<(), Errno>;
    /// close(2), errors ignored (an fd that is not open is fine).
    fn close(&self, fd: RawFd);
    /// Stop sharing the fd table (the init is cloned with CLONE_FILES) keeping a copy of fds below
    /// `keep_below` only: `close_range(keep_below, ~0, CLOSE_RANGE_UNSHARE)`. The kernel then copies
    /// `keep_below` fds instead of the harness's whole table, which grows with every live instance.
    fn unshare_fds(&self, keep_below: u32) -> Result<(), Errno>;
    /// dup2(2) (clears close-on-exec on `to`).
    fn dup2(&self, from: RawFd, to: RawFd) -> Result<(), Errno>;
    /// Give the process a terminal from the container's own devpts (after the pivot): open
    /// `/dev/ptmx`, unlock it, open its peer, send the master to the parent over the unix socket
    /// `sock` (SCM_RIGHTS, like runc's console socket), make the peer stdin/stdout/stderr, start a
    /// session and make the peer its controlling terminal.
    fn terminal(&self, sock: RawFd) -> Result<(), Errno>;
    /// Drop capability `cap` from the bounding set.
    fn capbset_drop(&self, cap: u32) -> Result<(), Errno>;
    /// Clear the ambient set, set effective = permitted = `mask` and empty the inheritable set
    /// (capset v3), as Docker does since CVE-2022-24769 (moby 20.10.14: a non-empty inheritable set let
    /// programs with inheritable file capabilities gain them at execve).
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
        #[allow(clippy::cast_possible_truncation)] // IFF_UP | IFF_RUNNING is 0x41
        const UP_RUNNING: libc::c_short = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ifr.ifr_ifru.ifru_flags = UP_RUNNING;
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

    fn setgroups(&self, groups: &[libc::gid_t]) -> Result<(), Errno> {
        let ptr = if groups.is_empty() { std::ptr::null() } else { groups.as_ptr() };
        // SAFETY: `ptr` is null or `groups`, a valid array of `groups.len()` gids for the call.
        check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), ptr) })
    }

    fn setresgid(&self, gid: u32) -> Result<(), Errno> {
        // SAFETY: integer arguments (raw, not glibc's wrapper: see `become_root`).
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }

    fn setresuid(&self, uid: u32) -> Result<(), Errno> {
        // SAFETY: integer arguments (raw, not glibc's wrapper: see `become_root`).
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }

    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        // SAFETY: integer argument.
        check(unsafe { libc::unshare(flags) } as _)
    }

    fn open_ro(&self, path: &CStr) -> Result<RawFd, Errno> {
        // SAFETY: path is a valid C string; the caller owns (and closes) the returned fd.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        check(fd as _)?;
        Ok(fd)
    }

    fn setns(&self, fd: RawFd, nstype: i32) -> Result<(), Errno> {
        // SAFETY: integer arguments; the kernel checks that `fd` is a namespace of type `nstype`.
        check(unsafe { libc::setns(fd, nstype) } as _)
    }

    fn close(&self, fd: RawFd) {
        close_in_child(fd);
    }

    fn unshare_fds(&self, keep_below: u32) -> Result<(), Errno> {
        // SAFETY: integer arguments; the fds at or above `keep_below` are not in this process's own
        // table afterwards, and the init uses only fds below it (the runtime's fd slots).
        check(unsafe { libc::syscall(libc::SYS_close_range, keep_below, u32::MAX, libc::CLOSE_RANGE_UNSHARE) })
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
        let [lo, hi] = [mask & 0xffff_ffff, mask >> 32].map(|w| u32::try_from(w).unwrap_or(u32::MAX));
        let data = [
            Data { effective: lo, permitted: lo, inheritable: 0 },
            Data { effective: hi, permitted: hi, inheritable: 0 },
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
        let Ok(len) = u16::try_from(prog.len()) else { return Err(libc::EINVAL) };
        let fprog = libc::sock_fprog { len, filter: prog.as_ptr() as *mut libc::sock_filter };
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
#[allow(clippy::cast_possible_truncation)] // size_of::<c_int>() is 4
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
