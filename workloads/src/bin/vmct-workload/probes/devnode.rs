//! Device-node probes (`dev.node.*`): create a node for a host device on a filesystem that allows device
//! nodes and open it, as `mknod /tty0 c 4 0` would in a shell inside the instance.
//!
//! A node on a `nodev` filesystem can never be opened, whatever the isolation: a probe that puts its node
//! under /tmp (mounted nodev) can only ever say "blocked" (the fault of the old `dev.mknod_block` probe,
//! issue 13). So the node goes, in order of preference, to a private tmpfs the probe child mounts without
//! `nodev` in its own mount namespace (nothing outside the child sees it), else to the first writable
//! directory of [`FALLBACK_DIRS`] whose filesystem allows device nodes (the instance's own root, its /dev).
//!
//! Harmless: the node is opened `O_RDONLY|O_NONBLOCK|O_NOCTTY` and closed, never read, written or
//! ioctl'd; it is removed right after, and the private tmpfs ends with the probe child.
use super::{sys, Ctx, Verdict};
use workloads::probe_ids::{self as ids, DevKind, DeviceNode};

/// Where the private tmpfs is mounted (first existing directory), inside the probe child's own mount
/// namespace.
const TMPFS_TARGETS: &[&str] = &["/tmp", "/mnt", "/run", "/var/tmp", "/dev/shm"];

/// Directories tried when no private tmpfs could be mounted: the instance's root, its /dev, its
/// working directory.
const FALLBACK_DIRS: &[&str] = &["/", "/dev", "/work", "/run", "/var/tmp", "/tmp"];

/// Does the filesystem holding `dir` refuse device nodes (`ST_NODEV`)? None when statvfs fails.
fn nodev(dir: &str) -> Option<bool> {
    let p = sys::cstr(dir);
    // SAFETY: zeroed statvfs is a valid out-buffer for statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is a valid path; st is a valid out-pointer.
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_flag & libc::ST_NODEV != 0)
}

/// The directories of `candidates` whose filesystem allows device nodes, in order, and a note for each
/// one left out. A directory on a `nodev` filesystem is never returned.
pub fn usable_dirs<'a>(candidates: &[&'a str], nodev: impl Fn(&str) -> Option<bool>) -> (Vec<&'a str>, Vec<String>) {
    let mut ok = Vec::new();
    let mut notes = Vec::new();
    for d in candidates {
        match nodev(d) {
            Some(false) => ok.push(*d),
            Some(true) => notes.push(format!("{d}: nodev")),
            None => notes.push(format!("{d}: absent")),
        }
    }
    (ok, notes)
}

/// Mount a private tmpfs without `nodev` in a new mount namespace of this (forked, disposable) probe
/// child; returns its mount point.
fn private_tmpfs() -> Result<&'static str, String> {
    // SAFETY: unshare with a flag constant; affects only this single-threaded probe child.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!("unshare(CLONE_NEWNS): {}", sys::errno_name(sys::errno())));
    }
    let root = sys::cstr("/");
    // SAFETY: valid path; NULL source/type/data are allowed for a propagation change.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!("make / private: {}", sys::errno_name(sys::errno())));
    }
    let (src, fstype, data) = (sys::cstr("vmct-probe"), sys::cstr("tmpfs"), sys::cstr("mode=700,size=64k"));
    let mut errs = Vec::new();
    for t in TMPFS_TARGETS.iter().filter(|t| std::path::Path::new(t).is_dir()) {
        let target = sys::cstr(t);
        // SAFETY: valid NUL-terminated strings; the mount lives in this child's private namespace.
        let r = unsafe {
            libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_NOSUID, data.as_ptr().cast())
        };
        if r == 0 {
            return Ok(t);
        }
        errs.push(format!("mount tmpfs on {t}: {}", sys::errno_name(sys::errno())));
    }
    Err(if errs.is_empty() { "no mount point for a tmpfs".into() } else { errs.join(", ") })
}

/// The device numbers of `d`: fixed, or the host root disk's from the harness (else from this
/// instance's own mount table when it sees a real disk there).
fn numbers(ctx: &Ctx, d: &DeviceNode) -> Option<(u32, u32)> {
    match d.major {
        Some(m) => Some((m, d.minor)),
        None => ctx.host_root_dev.or_else(|| {
            ids::root_dev_from_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
        }),
    }
}

/// Create the node of `d` and open it; see the module docs.
pub fn probe(ctx: &Ctx, d: &DeviceNode) -> Verdict {
    let Some((major, minor)) = numbers(ctx, d) else {
        return Verdict::error(format!(
            "{}: device number unknown (no {} from the harness)",
            d.name,
            ids::ENV_HOST_ROOT_DEV
        ));
    };
    let (kind, mode) = match d.kind {
        DevKind::Char => ('c', libc::S_IFCHR),
        DevKind::Block => ('b', libc::S_IFBLK),
    };
    let what = format!("{} ({kind} {major}:{minor})", d.name);
    let mut notes = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    match private_tmpfs() {
        Ok(t) => dirs.push(t.to_string()),
        Err(e) => notes.push(format!("no private tmpfs: {e}")),
    }
    let (fallback, skipped) = usable_dirs(FALLBACK_DIRS, nodev);
    dirs.extend(fallback.iter().map(|s| s.to_string()));
    notes.extend(skipped);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for dir in &dirs {
        if nodev(dir) == Some(true) {
            notes.push(format!("{dir}: nodev"));
            continue;
        }
        // `vmct-probe-<what>-<pid>`: `vmct gc` removes it if this child is killed before it can.
        let node = format!("{}/vmct-probe-node-{}-{pid}", dir.trim_end_matches('/'), d.name.replace(['/', ' '], "_"));
        let p = sys::cstr(&node);
        // SAFETY: p is a valid path; mode and device numbers are plain integers.
        if unsafe { libc::mknod(p.as_ptr(), mode | 0o600, libc::makedev(major, minor)) } != 0 {
            let e = sys::errno();
            if e == libc::EPERM {
                return Verdict::blocked(format!("mknod {what} in {dir}: EPERM; {}", notes.join("; ")));
            }
            notes.push(format!("mknod in {dir}: {}", sys::errno_name(e)));
            continue;
        }
        let opened = super::dev::open(&node, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY);
        let _ = std::fs::remove_file(&node);
        return match opened {
            Ok(()) => Verdict::reached(format!("created {what} in {dir} and opened it read-only (never read)")),
            Err(e) if e == libc::EPERM || e == libc::EACCES => {
                Verdict::blocked(format!("created {what} in {dir}; open refused: {}", sys::errno_name(e)))
            }
            Err(e) if e == libc::ENXIO || e == libc::ENODEV => Verdict::error(format!(
                "created {what} in {dir}; open allowed but no such device in this kernel: {}",
                sys::errno_name(e)
            )),
            Err(e) => Verdict::error(format!("created {what} in {dir}; open: {}", sys::errno_name(e))),
        };
    }
    Verdict::error(format!("{what}: no writable directory allows device nodes ({})", notes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodev_filesystems_are_never_used_for_nodes() {
        // /tmp nodev (the old mknod probe's only place), / allows nodes, /work absent.
        let fake = |d: &str| match d {
            "/tmp" => Some(true),
            "/" => Some(false),
            _ => None,
        };
        let (ok, notes) = usable_dirs(&["/tmp", "/", "/work"], fake);
        assert_eq!(ok, ["/"]);
        assert_eq!(notes, ["/tmp: nodev", "/work: absent"]);
    }

    #[test]
    fn statvfs_sees_nodev() {
        // /proc is mounted nodev on common hosts, but not everywhere; only check the call works.
        assert!(nodev("/").is_some());
        assert_eq!(nodev("/nonexistent-vmct"), None);
    }

    #[test]
    fn the_root_disk_number_comes_from_the_harness_first() {
        let d = ids::DEVICE_NODES.iter().find(|d| d.id == ids::DEV_NODE_ROOTDISK).unwrap();
        let ctx = Ctx { host_root_dev: Some((254, 0)), ..Ctx::default() };
        assert_eq!(numbers(&ctx, d), Some((254, 0)));
        let tty = ids::DEVICE_NODES.iter().find(|d| d.id == "dev.node.tty0").unwrap();
        assert_eq!(numbers(&Ctx::default(), tty), Some((4, 0)));
    }
}
