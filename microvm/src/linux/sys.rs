//! The linux guest model's only `unsafe` code: guest memory registration, a memfd, the clock and a
//! signal that kicks a vCPU thread out of `KVM_RUN` (for the watchdog).
use kvm_ioctls::VmFd;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Once;

/// The signal that interrupts `KVM_RUN` (a no-op handler makes the ioctl return EINTR). The bare-guest
/// VMM uses SIGRTMIN+2; this one is separate so the two never share a handler.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// Register `size` bytes at host address `host` as guest memory at `gpa` in `slot`.
///
/// The caller keeps the mapping alive (and unmoved) as long as `vm` exists: the run loop owns both.
pub fn set_memory_slot(vm: &VmFd, slot: u32, gpa: u64, size: u64, host: *mut u8) -> std::io::Result<()> {
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `host` points to a live mapping of `size` bytes owned by the VM's `GuestMemoryMmap`, which
    // the caller drops only after the VmFd; KVM only reads/writes guest memory through it.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// An anonymous memory file named `name` (`/memfd:NAME` in /proc/PID/smaps) of `size` bytes.
pub fn memfd(name: &std::ffi::CStr, size: u64) -> std::io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh fd that nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size)?;
    Ok(f)
}

/// Host CLOCK_MONOTONIC, ns.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

extern "C" fn on_kick(_: libc::c_int) {}

/// A handle that interrupts one thread's blocking ioctl (`KVM_RUN`) with [`kick_signal`].
#[derive(Debug, Clone, Copy)]
pub struct Kicker {
    thread: libc::pthread_t,
}

impl Kicker {
    /// For the calling thread; installs the no-op handler once per process (without SA_RESTART, so
    /// `KVM_RUN` returns EINTR).
    pub fn for_current_thread() -> std::io::Result<Kicker> {
        static INSTALL: Once = Once::new();
        let mut err = None;
        INSTALL.call_once(|| {
            // SAFETY: a zeroed sigaction is a valid empty action; we set a handler that does nothing
            // (async-signal-safe) and an empty mask before installing it.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
                    err = Some(std::io::Error::last_os_error());
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        // SAFETY: pthread_self has no preconditions.
        Ok(Kicker { thread: unsafe { libc::pthread_self() } })
    }

    /// Send the signal. The thread must still be alive: the run loop joins its watchdog before returning.
    pub fn kick(&self) {
        // SAFETY: `thread` is a live thread of this process (see above); the signal has a handler.
        unsafe { libc::pthread_kill(self.thread, kick_signal()) };
    }
}
