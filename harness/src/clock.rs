//! Host CLOCK_MONOTONIC in nanoseconds: the one clock every timestamp in vmct uses.
//!
//! `std::time::Instant` is CLOCK_MONOTONIC on Linux too, but it cannot be turned into a number that a
//! separate process (the VMM) can compare against; raw nanoseconds can.

/// Current host CLOCK_MONOTONIC, nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CLOCK_MONOTONIC nanosecond `timeout` from now; saturates at `u64::MAX` (about 584 years of
/// uptime) for a timeout too long to express.
pub fn deadline_ns(timeout: std::time::Duration) -> u64 {
    mono_ns().saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
}

/// Nanoseconds to seconds.
pub fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_monotonic() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a && a > 0);
        assert_eq!(ns_to_s(1_500_000_000), 1.5);
    }
}
