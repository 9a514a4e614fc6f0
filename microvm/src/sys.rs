//! The bare guest model's `unsafe` code: a memory slot registration, a memfd, a thread-directed watchdog
//! timer, and the plain-data marker for the boot-info block. With [`crate::linux::sys`] (the linux
//! guest model's) the only `unsafe` in the crate; everything else is safe code.
use crate::layout::{BootInfo, ProbeArea};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Once;
use std::time::Duration;
use vm_memory::ByteValued;

/// Errors of the OS wrappers.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("microvm: cannot register guest memory slot {slot} ({size} bytes at guest 0x{gpa:x}): {source}")]
    MemorySlot {
        /// Slot number.
        slot: u32,
        /// Guest physical address.
        gpa: u64,
        /// Size in bytes.
        size: u64,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// `memfd_create` failed.
    #[error("microvm: memfd_create for guest memory failed: {0}")]
    Memfd(std::io::Error),
    /// Creating or arming the watchdog timer failed.
    #[error("microvm: watchdog timer: {0}")]
    Timer(std::io::Error),
    /// `mincore` on guest memory failed.
    #[error("microvm: mincore on guest memory ({len} bytes) failed: {source}")]
    Mincore {
        /// Length of the range.
        len: usize,
        /// Cause.
        source: std::io::Error,
    },
}

// SAFETY: BootInfo is repr(C), made only of integers and a byte array, with no padding (its size,
// 1120 bytes, is the sum of its fields), so every byte pattern is a valid value.
unsafe impl ByteValued for BootInfo {}
// SAFETY: ProbeArea is repr(C) with five u64 fields: no padding, every byte pattern valid.
unsafe impl ByteValued for ProbeArea {}

/// Register `size` bytes of host memory at `host_addr` as guest physical memory at `gpa`.
///
/// The caller keeps the mapping alive for as long as `vm` exists (the [`crate::vm::Vm`] owns both and
/// drops the VM fd first).
pub fn set_memory_slot(vm: &VmFd, slot: u32, gpa: u64, size: u64, host_addr: *mut u8) -> Result<(), SysError> {
    let region = kvm_userspace_memory_region {
        slot,
        flags: 0,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: host_addr as u64,
    };
    // SAFETY: `host_addr..host_addr+size` is a live mapping owned by the caller's guest memory object,
    // which outlives the VM fd (field order in `Vm`); KVM only accesses it while the VM exists.
    unsafe { vm.set_user_memory_region(region) }.map_err(|source| SysError::MemorySlot { slot, gpa, size, source })
}

/// An anonymous memory file named `name` (shows as `/memfd:NAME (deleted)` in /proc/PID/smaps, which is
/// how the harness tells guest memory from VMM overhead). Its pages cost nothing until touched.
pub fn memfd(name: &std::ffi::CStr, size: u64) -> Result<File, SysError> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SysError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a fresh fd that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).map_err(SysError::Memfd)?;
    Ok(file)
}

/// Which pages of guest memory `[0, len)` are resident (page-cache or anonymous pages exist for them):
/// for a memfd, the pages the guest or the VMM touched; for a private file mapping (a restored VM),
/// the pages of the file in the page cache plus the copied-on-write ones. One flag per 4 KiB page.
pub fn resident_pages(mem: &vm_memory::GuestMemoryMmap, len: usize) -> Result<Vec<bool>, SysError> {
    use vm_memory::{GuestAddress, GuestMemoryBackend};
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(|e| SysError::Mincore { len, source: std::io::Error::other(e.to_string()) })?;
    let region_len = mem.iter().next().map_or(0, |r| vm_memory::GuestMemoryRegion::len(r) as usize);
    if len > region_len {
        return Err(SysError::Mincore { len, source: std::io::Error::from_raw_os_error(libc::EINVAL) });
    }
    let pages = len.div_ceil(crate::layout::PAGE_SIZE as usize);
    let mut vec = vec![0u8; pages];
    // SAFETY: `host..host+len` lies inside the first region's live mapping (checked above), which is
    // page aligned (mmap); `vec` has one byte per page of that range, as mincore requires.
    let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(SysError::Mincore { len, source: std::io::Error::last_os_error() });
    }
    Ok(vec.into_iter().map(|b| b & 1 == 1).collect())
}

/// Host CLOCK_MONOTONIC in nanoseconds (the clock of every vmct timestamp).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The suberror of a `KVM_EXIT_INTERNAL_ERROR` exit (0 if the last exit was something else).
pub fn internal_error_suberror(run: &kvm_bindings::kvm_run) -> u32 {
    if run.exit_reason != kvm_bindings::KVM_EXIT_INTERNAL_ERROR {
        return 0;
    }
    // SAFETY: for KVM_EXIT_INTERNAL_ERROR, `internal` is the active member of the exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}

extern "C" fn on_watchdog_signal(_: libc::c_int) {}

fn watchdog_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

/// A one-shot-then-repeating timer that sends a signal to one thread: it interrupts that thread's
/// `KVM_RUN` (which returns EINTR) once the deadline has passed, and keeps firing every few
/// milliseconds so a signal that lands just before `KVM_RUN` is entered cannot be lost.
#[derive(Debug)]
pub struct ThreadTimer {
    timer: libc::timer_t,
}

// SAFETY: a timer_t is a kernel handle (an id); using it from another thread is allowed.
unsafe impl Send for ThreadTimer {}

impl ThreadTimer {
    /// A disarmed timer that targets the calling thread.
    pub fn for_current_thread() -> Result<ThreadTimer, SysError> {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // SAFETY: a zeroed sigaction is a valid empty action; we then set a handler that does
            // nothing (async-signal-safe) and no SA_RESTART, so blocking ioctls return EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_watchdog_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(watchdog_signal(), &sa, std::ptr::null_mut());
            }
        });
        // SAFETY: a zeroed sigevent is valid; the fields we set select thread-directed delivery.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = watchdog_signal();
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `timer` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
            return Err(SysError::Timer(std::io::Error::last_os_error()));
        }
        Ok(ThreadTimer { timer })
    }

    /// Fire after `after`, then every `every`; `None` disarms.
    pub fn set(&self, after: Option<Duration>, every: Duration) -> Result<(), SysError> {
        let ts = |d: Duration| libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as _ };
        let spec = match after {
            // A zero it_value disarms, so arm at least 1 ns.
            Some(a) => libc::itimerspec { it_value: ts(a.max(Duration::from_nanos(1))), it_interval: ts(every) },
            None => libc::itimerspec { it_value: ts(Duration::ZERO), it_interval: ts(Duration::ZERO) },
        };
        // SAFETY: `self.timer` is a live timer (deleted only in Drop); `spec` is valid.
        if unsafe { libc::timer_settime(self.timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(SysError::Timer(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: the timer is live and deleted exactly once.
        unsafe { libc::timer_delete(self.timer) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_has_no_padding() {
        let sum = 5 * 8 + 4 * 4 + std::mem::size_of::<ProbeArea>() + crate::layout::ARGS_CAPACITY;
        assert_eq!(std::mem::size_of::<BootInfo>(), sum);
        assert!(std::mem::size_of::<BootInfo>() as u64 <= crate::layout::PAGE_SIZE);
    }

    #[test]
    fn memfd_has_the_requested_size_and_timer_arms() {
        let f = memfd(c"vmct-test", 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        let t = ThreadTimer::for_current_thread().unwrap();
        t.set(Some(Duration::from_secs(60)), Duration::from_millis(5)).unwrap();
        t.set(None, Duration::ZERO).unwrap();
    }
}
