//! Stop requests by signal: the first catchable signal whose default action would end vmct sets a flag
//! that every experiment loop and every wait on an instance checks (within [`POLL_SLICE`]), so the run
//! unwinds through its Drop guards (processes, VMs, cgroups, mounts removed, the terminal restored)
//! instead of dying with objects left on the host. A second signal exits at once with 128 + signal
//! (after putting back a terminal registered with [`TerminalGuard`]); `vmct gc` cleans up the rest.
//!
//! Handled ([`SIGNALS`], from signal(7), "Term" and "Core" default actions): HUP, INT, QUIT, PIPE (only
//! when vmct's own stdout or stderr is closed, see below), ALRM, TERM, USR1, USR2, XCPU, XFSZ, VTALRM, PROF,
//! IO, PWR, STKFLT and the real-time signals. Not handled: KILL and STOP (not catchable), and the
//! synchronous faults ILL, FPE, SEGV, BUS, TRAP, SYS and ABRT (raised by the faulting code itself, which
//! cannot go on after the handler returns).
//!
//! Commands without instances (build, commit, report, ...) do not poll the flag: they finish their work
//! (nothing is left half-written) and vmct then exits with 128 + signal. `vmct kernel build` (minutes of
//! make) is the exception: each step runs in its own process group, which a stop request ends
//! ([`crate::kernel::build`]); the build directory stays as make's cache.
//!
//! SIGPIPE also arrives when vmct writes to the stdin of an instance that has exited: that write fails
//! with EPIPE and is handled where it happens. Only a SIGPIPE while vmct's stdout or stderr has no reader
//! (a closed terminal session, `vmct ... | head`) is a stop request; its exit is quiet, like other Unix tools.
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// The signal that asked to stop (0 = none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Longest time a wait on an instance may go without checking [`requested`] (signals can land on
/// another thread, so an interrupted poll(2) alone is not enough).
pub const POLL_SLICE: Duration = Duration::from_millis(20);

/// The signals that request a stop (the real-time signals are added by [`install`]).
pub const SIGNALS: [libc::c_int; 15] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
];

/// The terminal settings to put back if a second signal ends vmct at once (see [`TerminalGuard`]).
struct SavedTerminal {
    set: AtomicBool,
    termios: UnsafeCell<libc::termios>,
}

// SAFETY: `termios` is written only while `set` is false (no reader), by the one thread holding the
// guard, and read by the signal handler only after `set` was published with SeqCst.
unsafe impl Sync for SavedTerminal {}

static TERMINAL: SavedTerminal = SavedTerminal {
    set: AtomicBool::new(false),
    // SAFETY: termios is a plain C struct of integers and arrays, for which all-zero is valid.
    termios: UnsafeCell::new(unsafe { std::mem::zeroed() }),
};

/// True if `fd` is a pipe, socket or terminal whose other end is gone (poll reports POLLERR/POLLHUP).
fn peer_gone(fd: libc::c_int) -> bool {
    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout; poll is async-signal-safe.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0 }
}

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGPIPE && !peer_gone(1) && !peer_gone(2) {
        // A write to an instance's pipe: the write itself fails with EPIPE.
        return;
    }
    if SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        if TERMINAL.set.load(Ordering::SeqCst) {
            // SAFETY: tcsetattr is async-signal-safe; the saved termios was published before `set`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, TERMINAL.termios.get()) };
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Install the handler for every signal in [`SIGNALS`] and the real-time signals.
pub fn install() {
    let rt = libc::SIGRTMIN()..=libc::SIGRTMAX();
    for sig in SIGNALS.into_iter().chain(rt) {
        // SAFETY: a zeroed sigaction is a valid empty action; the handler only uses atomics, poll,
        // tcsetattr and _exit, all async-signal-safe. No SA_RESTART: blocking waits return EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal asked to stop.
pub fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// The signal that asked to stop, if any.
pub fn signal() -> Option<libc::c_int> {
    Some(SIGNAL.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// The exit code for a run stopped by `sig`: 128 + signal number, as shells report it (130 for
/// SIGINT, 143 for SIGTERM, 129 for SIGHUP).
pub fn exit_code(sig: libc::c_int) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// The name of a signal, e.g. `SIGTERM` (`signal 40` for one without a name).
pub fn signal_name(sig: libc::c_int) -> String {
    nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| {
        if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        } else {
            format!("signal {sig}")
        }
    })
}

static REPORTED: AtomicBool = AtomicBool::new(false);

/// A command says it has told the user about the stop itself (so `main` does not say it again).
pub fn set_reported() {
    REPORTED.store(true, Ordering::SeqCst);
}

/// Whether the command has told the user about the stop.
pub fn reported() -> bool {
    REPORTED.load(Ordering::SeqCst)
}

/// Error returned by loops that stopped because of a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}: stopped after cleaning up", signal().map(signal_name).unwrap_or_else(|| "a signal".into()))]
pub struct Interrupted;

/// `Err(Interrupted)` if a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Registers terminal settings that the signal handler puts back on stdin if a second signal ends vmct
/// before the normal cleanup (the shell's raw mode) could; unregisters when dropped.
pub struct TerminalGuard(());

impl TerminalGuard {
    /// Register `saved` (the settings to restore on fd 0).
    pub fn new(saved: &libc::termios) -> TerminalGuard {
        TERMINAL.set.store(false, Ordering::SeqCst);
        // SAFETY: `set` is false, so the handler does not read `termios` while we write it.
        unsafe { *TERMINAL.termios.get() = *saved };
        TERMINAL.set.store(true, Ordering::SeqCst);
        TerminalGuard(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        TERMINAL.set.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_names_follow_the_shell() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGHUP), 129);
        assert_eq!(signal_name(libc::SIGQUIT), "SIGQUIT");
        assert_eq!(signal_name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }

    #[test]
    fn every_terminating_catchable_signal_is_handled_and_no_fault_is() {
        let rt = libc::SIGRTMIN()..=libc::SIGRTMAX();
        for sig in 1..=libc::SIGRTMAX() {
            let faults = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS, libc::SIGTRAP, libc::SIGSYS];
            let not_terminating = [libc::SIGCHLD, libc::SIGCONT, libc::SIGURG, libc::SIGWINCH, libc::SIGTSTP];
            let stops = [libc::SIGTTIN, libc::SIGTTOU, libc::SIGKILL, libc::SIGSTOP, libc::SIGABRT];
            let handled = SIGNALS.contains(&sig) || rt.contains(&sig);
            let skipped = faults.contains(&sig) || not_terminating.contains(&sig) || stops.contains(&sig);
            // glibc keeps 32 and 33 for itself (threads, set*id), below SIGRTMIN.
            if sig == 32 || sig == 33 {
                continue;
            }
            assert!(handled != skipped, "signal {sig} ({}) must be in exactly one list", signal_name(sig));
        }
    }
}
