//! Clock probe: set the realtime clock (not covered by time namespaces).
use super::{sys, Ctx, Verdict};

/// `clock_settime(CLOCK_REALTIME, now)`. Harmless: sets the clock to the time just read, a no-op up to
/// the microseconds between the two calls.
pub fn settime(_: &Ctx) -> Verdict {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return Verdict::error(format!("clock_gettime: {}", sys::errno_name(sys::errno())));
    }
    // SAFETY: ts is a valid timespec holding the current time.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } == 0 {
        Verdict::reached("clock_settime(CLOCK_REALTIME) allowed: the host clock can be changed (set to now, a no-op)")
    } else {
        Verdict::blocked(format!("clock_settime(CLOCK_REALTIME): {}", sys::errno_name(sys::errno())))
    }
}
