//! The OS and KVM wrappers of both guest models that need `unsafe`: a memory slot registration, a
//! memfd, `mincore`, the clock, the suberror of an internal-error exit, the vCPU watchdog (a
//! thread-directed timer signal that kicks `KVM_RUN` out with EINTR), and the plain-data marker for
//! the boot-info block. With [`crate::confine`] (seccomp, rlimits) the only `unsafe` in the crate.
use crate::layout::{BootInfo, ProbeArea};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::OnceLock;
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
    /// Installing the watchdog signal's handler failed.
    #[error("microvm: watchdog signal {signal}: sigaction failed: {source}")]
    Signal {
        /// The signal number.
        signal: libc::c_int,
        /// Cause.
        source: std::io::Error,
    },
    /// `mincore` on guest memory failed.
    #[error("microvm: mincore on guest memory ({len} bytes) failed: {source}")]
    Mincore {
        /// Length of the range.
        len: usize,
        /// Cause.
        source: std::io::Error,
    },
}

/// A plain-data block of the guest ABI ([`crate::layout`]), readable and writable as guest memory
/// (`Bytes::read_obj` / `write_obj`). The ABI types live in the `no_std`, dependency-free `guest-abi`
/// crate, so the `vm-memory` marker trait is implemented here, on this wrapper.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct Plain<T>(pub T);

// SAFETY: BootInfo is repr(C), made only of integers and a byte array, with no padding (its size,
// 1120 bytes, is the sum of its fields; checked by a test), so every byte pattern is a valid value;
// the wrapper is repr(transparent).
unsafe impl ByteValued for Plain<BootInfo> {}
// SAFETY: ProbeArea is repr(C) with five u64 fields: no padding, every byte pattern valid; the
// wrapper is repr(transparent).
unsafe impl ByteValued for Plain<ProbeArea> {}

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
    let region_len = mem.iter().next().map_or(0, |r| host_len(vm_memory::GuestMemoryRegion::len(r)));
    if len > region_len {
        return Err(SysError::Mincore { len, source: std::io::Error::from_raw_os_error(libc::EINVAL) });
    }
    let pages = len.div_ceil(host_len(crate::layout::PAGE_SIZE));
    let mut vec = vec![0u8; pages];
    // SAFETY: `host..host+len` lies inside the first region's live mapping (checked above), which is
    // page aligned (mmap); `vec` has one byte per page of that range, as mincore requires.
    let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(SysError::Mincore { len, source: std::io::Error::last_os_error() });
    }
    Ok(vec.into_iter().map(|b| b & 1 == 1).collect())
}

/// A guest size or offset as a host length: lossless on the 64-bit hosts KVM x86 runs on (guest RAM is
/// at most 64 GiB).
pub fn host_len(bytes: u64) -> usize {
    usize::try_from(bytes).expect("a 64-bit host: usize holds every guest size")
}

/// Host CLOCK_MONOTONIC in nanoseconds (the clock of every vmct timestamp).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // CLOCK_MONOTONIC is never negative.
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// How long `KVM_RUN` may keep failing with EAGAIN before a run loop gives up ([`EagainStreak`]).
/// KVM returns EAGAIN when the vCPU is not runnable after it was woken (an AP still waiting for
/// INIT/SIPI, a request that never clears); retrying at once is right for a few returns, but a vCPU
/// that stays so would spin a host CPU until the watchdog (tens of seconds).
pub const KVM_RUN_EAGAIN_LIMIT: Duration = Duration::from_millis(500);
/// Fewest consecutive EAGAIN returns before giving up, whatever the time: one slow return never
/// counts as stuck.
pub const KVM_RUN_EAGAIN_MIN: u32 = 1000;

/// Consecutive EAGAIN returns of `KVM_RUN`: the bounded retry of every run loop (vCPU 0 of the bare
/// guest, its secondaries, the linux guest's vCPU). Reads the clock through the vDSO only, so it needs
/// no system call the VMM's seccomp filter would have to allow.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EagainStreak {
    count: u32,
    since_ns: u64,
}

/// A `KVM_RUN` that kept returning EAGAIN ([`EagainStreak::again`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "KVM_RUN returned EAGAIN {count} times in a row over {after:?}: the vCPU never became runnable \
     (gave up after {KVM_RUN_EAGAIN_LIMIT:?} instead of spinning until the watchdog)"
)]
pub struct StuckVcpu {
    /// Consecutive EAGAIN returns.
    pub count: u32,
    /// From the first of them to the last.
    pub after: Duration,
}

impl EagainStreak {
    /// `KVM_RUN` returned anything but EAGAIN: the streak ends.
    pub fn reset(&mut self) {
        self.count = 0;
    }

    /// `KVM_RUN` returned EAGAIN at `now_ns` (host CLOCK_MONOTONIC): Ok to retry, or the streak once
    /// it holds at least [`KVM_RUN_EAGAIN_MIN`] returns over at least [`KVM_RUN_EAGAIN_LIMIT`].
    pub fn again(&mut self, now_ns: u64) -> Result<(), StuckVcpu> {
        if self.count == 0 {
            self.since_ns = now_ns;
        }
        self.count = self.count.saturating_add(1);
        let after = Duration::from_nanos(now_ns.saturating_sub(self.since_ns));
        if self.count >= KVM_RUN_EAGAIN_MIN && after >= KVM_RUN_EAGAIN_LIMIT {
            return Err(StuckVcpu { count: self.count, after });
        }
        Ok(())
    }
}

/// The suberror of a `KVM_EXIT_INTERNAL_ERROR` exit (0 if the last exit was something else).
pub fn internal_error_suberror(run: &kvm_bindings::kvm_run) -> u32 {
    if run.exit_reason != kvm_bindings::KVM_EXIT_INTERNAL_ERROR {
        return 0;
    }
    // SAFETY: for KVM_EXIT_INTERNAL_ERROR, `internal` is the active member of the exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}

extern "C" fn on_watchdog_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that kicks a vCPU thread out of `KVM_RUN` (one for the whole process, as Firecracker's
/// `VCPU_RTSIG_OFFSET`): its handler does nothing, and without `SA_RESTART` the ioctl returns EINTR.
pub fn watchdog_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 2
}

/// Install the no-op handler of [`watchdog_signal`] once per process; every caller sees its result.
fn install_watchdog_handler() -> Result<(), SysError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(watchdog_signal(), on_watchdog_signal).map_err(|e| e.errno())
    });
    r.map_err(|errno| SysError::Signal { signal: watchdog_signal(), source: std::io::Error::from_raw_os_error(errno) })
}

/// A one-shot-then-repeating timer that sends [`watchdog_signal`] to one thread: it interrupts that
/// thread's `KVM_RUN` (which returns EINTR) once the deadline has passed, and keeps firing every few
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
        install_watchdog_handler()?;
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
        let ts = |d: Duration| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(d.subsec_nanos()),
        };
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

/// The vCPU watchdog of both guest models: a [`ThreadTimer`] on the vCPU thread and the deadline it
/// stands for. The run loop arms it while guest code runs, disarms it while the VMM waits for its host
/// (that time does not count), and on an interrupted `KVM_RUN` asks [`Watchdog::expired`].
#[derive(Debug)]
pub struct Watchdog {
    timer: ThreadTimer,
    limit: Duration,
    deadline_ns: u64,
}

/// How often the timer fires again once the deadline has passed (so a signal that lands just before
/// `KVM_RUN` is entered is followed by another).
const WATCHDOG_REPEAT: Duration = Duration::from_millis(5);

impl Watchdog {
    /// A disarmed watchdog for the calling (vCPU) thread.
    pub fn for_current_thread(limit: Duration) -> Result<Watchdog, SysError> {
        Ok(Watchdog { timer: ThreadTimer::for_current_thread()?, limit, deadline_ns: u64::MAX })
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Start (or restart) the limit from now.
    pub fn arm(&mut self) -> Result<(), SysError> {
        self.timer.set(Some(self.limit), WATCHDOG_REPEAT)?;
        let limit_ns = u64::try_from(self.limit.as_nanos()).unwrap_or(u64::MAX);
        self.deadline_ns = mono_ns().saturating_add(limit_ns);
        Ok(())
    }

    /// Stop counting (time until the next [`Watchdog::arm`] does not count).
    pub fn disarm(&mut self) -> Result<(), SysError> {
        self.deadline_ns = u64::MAX;
        self.timer.set(None, Duration::ZERO)
    }

    /// True once the armed limit has passed.
    pub fn expired(&self) -> bool {
        mono_ns() >= self.deadline_ns
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn kvm_run_eagain_is_retried_a_bounded_while_then_named() {
        let ms = 1_000_000u64;
        let mut s = EagainStreak::default();
        // Many returns in a short time, or a few over a long time: still retried.
        for i in 0..5000 {
            assert_eq!(s.again(10 * ms + i), Ok(()));
        }
        let mut slow = EagainStreak::default();
        for i in 0..10 {
            assert_eq!(slow.again(i * 1000 * ms), Ok(()));
        }
        // Both bounds passed: the error says what happened.
        let e = s.again(10 * ms + 600 * ms).unwrap_err();
        assert_eq!(e.count, 5001);
        assert_eq!(e.after, Duration::from_millis(600));
        assert!(e.to_string().contains("EAGAIN 5001 times"), "{e}");
        // Any other return ends the streak: the clock starts again.
        s.reset();
        for i in 0..2000 {
            assert_eq!(s.again(2000 * ms + i), Ok(()));
        }
    }

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

    #[test]
    fn watchdog_interrupts_a_blocking_call_on_its_thread_after_the_limit() {
        let mut w = Watchdog::for_current_thread(Duration::from_millis(30)).unwrap();
        assert!(!w.expired());
        w.arm().unwrap();
        // A blocking call with no SA_RESTART handler: the watchdog's signal ends it with EINTR.
        let t = std::time::Instant::now();
        loop {
            // SAFETY: pause has no preconditions; it returns when a handled signal arrives.
            let rc = unsafe { libc::pause() };
            assert_eq!(rc, -1);
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINTR));
            if w.expired() {
                break;
            }
        }
        assert!(t.elapsed() >= Duration::from_millis(30));
        w.disarm().unwrap();
        assert!(!w.expired());
    }
}
