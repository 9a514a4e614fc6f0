//! One empty network namespace per runtime process, whose sysfs the containers without network
//! devices of their own mount (issue 18 item 1: launch latency as the host fills).
//!
//! Why: sysfs has one superblock per network namespace, and mounting it looks the namespace's
//! superblock up by walking every sysfs superblock of the host (`sget_fc` -> `kernfs_test_super`,
//! under the global `sb_lock`). With one fresh namespace per container, every launch walked one
//! superblock per live container: measured with `perf record -a -g` at 2000 live containers (load
//! average ~20), `kernfs_test_super` under `mount(2)` took 130 of the runtime's samples, the largest
//! single item of the launch, next to `chroot_fs_refs` under `pivot_root` (108; that walk over every
//! task of the host is what `pivot_root` does and stays). Each such superblock also registers a
//! memcg-aware shrinker, which every new memory cgroup sizes its shrinker table by.
//!
//! How: the runtime creates one network namespace with only a loopback device (brought up, like a
//! container's own) and keeps an fd to it; the container init enters it just for its sysfs mount
//! ([`crate::rootfs::Op::SysfsOf`]) and goes back to its own namespace. All such containers share
//! one sysfs superblock, so the walk stays short however many are alive.
//!
//! What a container sees is unchanged except for `/sys/class/net` (and `/sys/devices/virtual/net`):
//! it lists the shared namespace's `lo` instead of the container's own `lo` (same name, index and
//! flags; its statistics are the shared namespace's, which no one uses). No host device is visible
//! either way, the mount keeps its read-only flags, and the namespace is the runtime's own (it holds
//! nothing but `lo`). Used only where that view is the same: the default profile with a private,
//! loopback-only network; a bridged container (its `eth0` must show), a user namespace (it may not
//! enter a namespace of the host's user namespace) and the privileged profile (read-write sysfs)
//! mount their own as before.
//!
//! The namespace lives as long as the process's fd (and any sysfs mount of it): nothing is left on
//! the host after the process exits, so there is nothing for `vmct gc` to find.
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

static SHARED: OnceLock<Result<OwnedFd, String>> = OnceLock::new();

/// Create the namespace in a short-lived thread (a thread may unshare its network namespace alone).
fn create() -> Result<OwnedFd, String> {
    let t = std::thread::Builder::new().name("vmct-sysfs-netns".into()).spawn(|| -> Result<OwnedFd, String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare a network namespace: {e}"))?;
        crate::sys::Sys::loopback_up(&crate::sys::Real)
            .map_err(|e| format!("bring lo up: {}", crate::sys::strerror(e)))?;
        let f = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))?;
        Ok(f.into())
    });
    t.map_err(|e| format!("spawn a thread: {e}"))?.join().map_err(|_| "the thread panicked".to_string())?
}

/// The shared namespace's fd (close-on-exec; created on first use), or why it could not be made.
pub fn netns() -> Result<BorrowedFd<'static>, String> {
    SHARED.get_or_init(create).as_ref().map(AsFd::as_fd).map_err(|e| format!("shared sysfs network namespace: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_per_process_other_than_ours() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (unshare CLONE_NEWNET)");
            return;
        }
        use std::os::fd::AsRawFd;
        let fd = netns().expect("shared netns").as_raw_fd();
        assert_eq!(netns().map(|f| f.as_raw_fd()), Ok(fd), "created once");
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let shared = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(shared.to_string_lossy().starts_with("net:["), "{shared:?}");
        assert_ne!(ours, shared, "not the process's own network namespace");
    }
}
