//! Low fd numbers reserved for a starting container's ends, so its init never holds a copy of the
//! runtime process's whole fd table.
//!
//! Why: a fork-style clone copies the parent's fd table, and `execve` then closes every close-on-exec
//! entry of that copy one by one (`do_close_on_exec` -> `filp_close`). A harness keeps two fds per
//! live instance (stdin, stdout), so with thousands alive each launch paid thousands of
//! closes: measured with `perf record` at 1500 live containers, `do_close_on_exec` was 9.7% of all
//! samples of the launch loop, and the exec stage grew with every instance alive.
//!
//! How: the init is cloned with `CLONE_FILES` (it shares the table, nothing is copied) and its first
//! step is `close_range(K, ~0, CLOSE_RANGE_UNSHARE)` ([`crate::sys::Sys::unshare_fds`]), which gives it
//! a table holding copies of fds below K only. Every fd the init needs is first `dup3`'d into one of
//! [`SLOTS`] fd numbers reserved at the runtime's creation (when the process had few fds, so K is
//! small). The slots are one process-wide set behind a mutex held from the `dup3`s until the init
//! reports [`crate::channel::Stage::Files`]; then they are pointed back at /dev/null, which closes the
//! runtime's copies. A side effect: fds of the runtime process at K or above, close-on-exec or not,
//! can never reach a container.
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// How many slots: stdin, stdout, stderr, the two channel ends, the terminal socket, the shared sysfs
/// network namespace ([`crate::sysfs_netns`]).
pub const SLOTS: usize = 7;

/// The reserved fd numbers (each holds /dev/null, close-on-exec, while no start is using it).
#[derive(Debug)]
pub struct Slots {
    null: OwnedFd,
    slots: [OwnedFd; SLOTS],
    used: usize,
}

static SHARED: OnceLock<Result<Mutex<Slots>, String>> = OnceLock::new();

fn open_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// Reserve the slots now if not done yet (call early, while the process has few fds open).
pub fn reserve() -> Result<(), String> {
    SHARED
        .get_or_init(|| {
            let err = |e: std::io::Error| format!("reserve fd slots: {e}");
            let null = open_null().map_err(err)?;
            let mut v = Vec::with_capacity(SLOTS);
            for _ in 0..SLOTS {
                v.push(null.try_clone().map_err(err)?);
            }
            let slots: [OwnedFd; SLOTS] = v.try_into().map_err(|_| "reserve fd slots: count".to_string())?;
            Ok(Mutex::new(Slots { null, slots, used: 0 }))
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// The slots, locked for one start; dropping it points them back at /dev/null ([`Slots::clear`]).
#[derive(Debug)]
pub struct Held(MutexGuard<'static, Slots>);

impl std::ops::Deref for Held {
    type Target = Slots;
    fn deref(&self) -> &Slots {
        &self.0
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Slots {
        &mut self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Lock the slots for one start (reserving them first if needed).
pub fn lock() -> Result<Held, String> {
    reserve()?;
    let m = SHARED.get().and_then(|r| r.as_ref().ok()).ok_or("fd slots unavailable")?;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    g.used = 0;
    Ok(Held(g))
}

impl Slots {
    /// Put (a duplicate of) `fd` into the next free slot, close-on-exec; returns the slot's number.
    pub fn place(&mut self, fd: impl AsFd) -> std::io::Result<RawFd> {
        let slot = self.slots.get_mut(self.used).ok_or_else(|| std::io::Error::other("no free fd slot"))?;
        nix::unistd::dup3(fd.as_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        self.used += 1;
        Ok(slot.as_raw_fd())
    }

    /// One above the highest slot number: the init keeps fds below it.
    pub fn keep_below(&self) -> u32 {
        let max = self.slots.iter().map(AsRawFd::as_raw_fd).max().unwrap_or(0);
        u32::try_from(max).map_or(u32::MAX, |m| m.saturating_add(1))
    }

    /// Point every slot back at /dev/null (closing the runtime's copies of a container's ends).
    pub fn clear(&mut self) {
        for slot in &mut self.slots[..self.used] {
            // Cannot fail for a valid fd pair; if it did, the slot keeps a harmless extra reference.
            let _ = nix::unistd::dup3(self.null.as_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC);
        }
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_take_duplicates_and_give_them_back() {
        let mut g = lock().unwrap();
        let (r, w) = crate::sys::pipe().unwrap();
        let a = g.place(&r).unwrap();
        let b = g.place(&w).unwrap();
        assert_ne!(a, b);
        assert!(u32::try_from(a.max(b)).unwrap() < g.keep_below());
        drop((r, w));
        // The slots hold the pipe: a byte written through one slot arrives at the other.
        assert_eq!(nix::unistd::write(g.slots[1].as_fd(), b"x"), Ok(1));
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(g.slots[0].as_fd(), &mut buf), Ok(1));
        g.clear();
        // Back to /dev/null: reads give EOF.
        assert_eq!(nix::unistd::read(g.slots[0].as_fd(), &mut buf), Ok(0));
    }
}
