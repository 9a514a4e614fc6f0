//! Kernel-crash and kernel-extension reach (`kernel.*`): can the instance get into the kernel code that
//! reboots, replaces or extends the kernel? Every call is made with arguments the kernel rejects, so
//! nothing is ever executed; the answer tells who said no:
//! - `blocked`: EPERM/EACCES (a capability check, an LSM or a seccomp errno rule) or ENOSYS (a seccomp
//!   filter, or the call is not built into this kernel), or a seccomp kill (SIGSYS, see `run_one`);
//! - `reached`: any other errno (EINVAL, EBADF, EFAULT, ENOEXEC, EOPNOTSUPP): the kernel's own argument
//!   checks ran, past the capability check.
//!
//! The arguments, and why they cannot act (read in the Linux 6.1 sources, Debian's linux-source-6.1;
//! the test `calls_never_succeed_here` checks on the host at hand, as root, that none succeeds):
//! - `reboot(MAGIC1, 0, 0xdeadbeef, NULL)`: CAP_SYS_BOOT, then the magic pair (magic2 0 is none of
//!   the four) -> EINVAL before any command (kernel/reboot.c);
//! - `kexec_load(0, 0, NULL, ~0)` / `kexec_file_load(-1, -1, 0, NULL, ~0)`: CAP_SYS_BOOT, then the flag
//!   word has unknown bits -> EINVAL (kernel/kexec.c, kexec_file.c);
//! - `init_module(NULL, 0, NULL)`: CAP_SYS_MODULE, then a length below an ELF header -> ENOEXEC
//!   (kernel/module/main.c); `finit_module(-1, "", 0)`: CAP_SYS_MODULE, then fd -1 -> EBADF;
//! - `bpf(INT_MAX, NULL, 0)`: no such command -> EINVAL (kernel/bpf/syscall.c);
//! - `perf_event_open(NULL, -1, -1, -1, ~0)`: unknown flags -> EINVAL first thing (kernel/events/core.c);
//! - `userfaultfd(~0)`: unknown flags -> EINVAL (fs/userfaultfd.c);
//! - `io_uring_setup(0, NULL)`: copying the NULL params -> EFAULT (io_uring/io_uring.c);
//! - `keyctl(INT_MAX, 0, 0, 0, 0)`: no such operation -> EOPNOTSUPP (security/keys/keyctl.c);
//! - `add_key(NULL, NULL, NULL, 0, 0)`: copying the NULL type name -> EFAULT;
//! - /proc/sysrq-trigger is opened for writing and closed: nothing is written.
use super::{sys, Ctx, Verdict};
use workloads::protocol::ProbeOutcome;

/// `LINUX_REBOOT_MAGIC1` (include/uapi/linux/reboot.h).
const REBOOT_MAGIC1: u64 = 0xfee1_dead;
/// Not a reboot command.
const REBOOT_BAD_CMD: u64 = 0xdead_beef;
/// Not a command of bpf(2) or keyctl(2).
const BAD_CMD: u64 = i32::MAX as u64;
/// Every flag bit set: unknown bits make the flag checks fail.
const ALL_FLAGS: u64 = u64::MAX;
/// fd -1 as a syscall argument.
const NO_FD: u64 = u64::MAX;
/// `PROC_SUPER_MAGIC` (include/uapi/linux/magic.h).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Who answered a call made with invalid arguments: `Blocked` for EPERM/EACCES/ENOSYS, `Reached` for
/// success or any other errno (the kernel's own checks).
pub fn classify(ret: i64, errno: i32) -> ProbeOutcome {
    if ret >= 0 {
        return ProbeOutcome::Reached;
    }
    match errno {
        libc::EPERM | libc::EACCES | libc::ENOSYS => ProbeOutcome::Blocked,
        _ => ProbeOutcome::Reached,
    }
}

/// Make the call and turn the answer into a verdict. A call that returned a descriptor (it never should
/// with these arguments) has it closed.
fn call(what: &str, nr: i64, a: [u64; 5], returns_fd: bool) -> Verdict {
    // SAFETY: the arguments are the invalid ones listed in the module docs; the kernel rejects them
    // before acting, and the probe runs in a forked child.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) };
    let e = sys::errno();
    if r >= 0 {
        if returns_fd {
            // SAFETY: r is a descriptor this call just returned to us; closed once.
            unsafe { libc::close(i32::try_from(r).expect("a file descriptor is an int")) };
        }
        return Verdict::reached(format!("{what} returned {r} (expected a rejection)"));
    }
    let detail = format!("{what}: {}", sys::errno_name(e));
    match classify(r, e) {
        ProbeOutcome::Blocked => Verdict::blocked(detail),
        _ => Verdict::reached(format!("{detail} (the kernel's argument checks answered)")),
    }
}

/// Open /proc/sysrq-trigger for writing (nothing is written). `reached` only when the opened file is
/// procfs's own (a /dev/null bind over it is a mask).
pub fn sysrq_trigger(_: &Ctx) -> Verdict {
    let path = "/proc/sysrq-trigger";
    let p = sys::cstr(path);
    // SAFETY: p is a valid path; the fd is closed below and nothing is written to it.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        let e = sys::errno();
        return match e {
            libc::EPERM | libc::EACCES | libc::EROFS => {
                Verdict::blocked(format!("open {path} for write: {}", sys::errno_name(e)))
            }
            _ => Verdict::error(format!("open {path} for write: {}", sys::errno_name(e))),
        };
    }
    // SAFETY: zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid out-pointer.
    let r = unsafe { libc::fstatfs(fd, &mut st) };
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Verdict::error(format!("fstatfs {path}: {}", sys::errno_name(sys::errno())));
    }
    // `f_type` is `c_long` on x86_64 glibc but another width elsewhere: widen explicitly.
    #[allow(clippy::useless_conversion)]
    let f_type = i64::from(st.f_type);
    if f_type == PROC_SUPER_MAGIC {
        Verdict::reached(format!("opened {path} for write (nothing written)"))
    } else {
        Verdict::blocked(format!("{path} opened, but it is not procfs (f_type {:#x}): masked", st.f_type))
    }
}

/// `reboot` with a wrong second magic and an invalid command.
pub fn reboot(_: &Ctx) -> Verdict {
    call("reboot(MAGIC1, 0, 0xdeadbeef, NULL)", libc::SYS_reboot, [REBOOT_MAGIC1, 0, REBOOT_BAD_CMD, 0, 0], false)
}

/// `kexec_load` with unknown flags.
pub fn kexec_load(_: &Ctx) -> Verdict {
    call("kexec_load(0, 0, NULL, ~0)", libc::SYS_kexec_load, [0, 0, 0, ALL_FLAGS, 0], false)
}

/// `kexec_file_load` with bad fds and unknown flags.
pub fn kexec_file_load(_: &Ctx) -> Verdict {
    call("kexec_file_load(-1, -1, 0, NULL, ~0)", libc::SYS_kexec_file_load, [NO_FD, NO_FD, 0, 0, ALL_FLAGS], false)
}

/// `init_module` with an empty image.
pub fn init_module(_: &Ctx) -> Verdict {
    call("init_module(NULL, 0, NULL)", libc::SYS_init_module, [0, 0, 0, 0, 0], false)
}

/// `finit_module` with fd -1.
pub fn finit_module(_: &Ctx) -> Verdict {
    let empty = c"";
    call("finit_module(-1, \"\", 0)", libc::SYS_finit_module, [NO_FD, empty.as_ptr() as u64, 0, 0, 0], false)
}

/// `bpf` with no such command.
pub fn bpf(_: &Ctx) -> Verdict {
    call("bpf(INT_MAX, NULL, 0)", libc::SYS_bpf, [BAD_CMD, 0, 0, 0, 0], true)
}

/// `perf_event_open` with unknown flags.
pub fn perf_event_open(_: &Ctx) -> Verdict {
    call("perf_event_open(NULL, -1, -1, -1, ~0)", libc::SYS_perf_event_open, [0, NO_FD, NO_FD, NO_FD, ALL_FLAGS], true)
}

/// `userfaultfd` with unknown flags.
pub fn userfaultfd(_: &Ctx) -> Verdict {
    call("userfaultfd(~0)", libc::SYS_userfaultfd, [ALL_FLAGS, 0, 0, 0, 0], true)
}

/// `io_uring_setup` with NULL params.
pub fn io_uring_setup(_: &Ctx) -> Verdict {
    call("io_uring_setup(0, NULL)", libc::SYS_io_uring_setup, [0, 0, 0, 0, 0], true)
}

/// `keyctl` with no such operation.
pub fn keyctl(_: &Ctx) -> Verdict {
    call("keyctl(INT_MAX, 0, 0, 0, 0)", libc::SYS_keyctl, [BAD_CMD, 0, 0, 0, 0], false)
}

/// `add_key` with a NULL type name.
pub fn add_key(_: &Ctx) -> Verdict {
    call("add_key(NULL, NULL, NULL, 0, 0)", libc::SYS_add_key, [0, 0, 0, 0, 0], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_decides_who_answered() {
        assert_eq!(classify(-1, libc::EPERM), ProbeOutcome::Blocked, "capability or seccomp errno");
        assert_eq!(classify(-1, libc::EACCES), ProbeOutcome::Blocked);
        assert_eq!(classify(-1, libc::ENOSYS), ProbeOutcome::Blocked, "seccomp filter or not built in");
        for e in [libc::EINVAL, libc::EBADF, libc::EFAULT, libc::ENOEXEC, libc::EOPNOTSUPP] {
            assert_eq!(classify(-1, e), ProbeOutcome::Reached, "errno {e} comes from the kernel proper");
        }
        assert_eq!(classify(3, 0), ProbeOutcome::Reached);
    }

    #[test]
    fn calls_never_succeed_here() {
        // Whatever the privileges of the test process, none of the invalid calls may succeed.
        for f in [
            reboot as fn(&Ctx) -> Verdict,
            kexec_load,
            kexec_file_load,
            init_module,
            finit_module,
            bpf,
            perf_event_open,
            userfaultfd,
            io_uring_setup,
            keyctl,
            add_key,
        ] {
            let v = super::super::run_one(
                &super::super::Probe { id: "t", run: super::super::Run::Plain(f) },
                &Ctx::default(),
            );
            assert!(!v.detail.contains("returned"), "{v:?}");
            assert_ne!(v.outcome, ProbeOutcome::Error, "{v:?}");
        }
    }
}
