//! Ctrl-C / SIGTERM / SIGHUP handling: the first signal sets a flag that every experiment loop checks, so the
//! run unwinds through its Drop guards (processes, VMs, cgroups, mounts removed) instead of dying
//! with objects left on the host. A second signal exits at once (then `vmct gc` cleans up).
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Install the handlers for SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH session).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Whether the user asked to stop.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Error returned by loops that stopped because of a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: stopped on Ctrl-C/SIGTERM after cleaning up")]
pub struct Interrupted;

/// `Err(Interrupted)` if a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
