//! The rootfs mount plan: the filesystem steps ([`Op`]) the container init walks in its rootfs and
//! pivot stages, built by the parent before clone ([`build_ops`]).
//!
//! Order (runc's): make every mount private, the overlay, proc, sysfs, Docker's read-only paths, its
//! masked paths, /dev (tmpfs + nodes, or bind mounts of the host's nodes in a user namespace), devpts,
//! the /dev symlinks, /tmp; then the pivot: chdir to the new root, `pivot_root(".", ".")`, detach the
//! old root, chdir "/".
//!
//! Launch cost as the host fills (issue 18 item 1, `perf record -a -g` with thousands of idle
//! containers alive): `pivot_root` updates every task of the host whose root or cwd is the old root
//! (`chroot_fs_refs` walks all threads, locking each), so it grows with the number of live processes
//! on the host, ours or not; it was the largest single item of a launch at 5000 alive (27% of the
//! runtime's samples). It stays: runc's `--no-pivot` alternative (`MS_MOVE` + `chroot`) would leave
//! the host's root mount, with its submounts, under the container's root in its mount namespace
//! (listed in its mountinfo, one `umount` away), and the kernel refuses `MOVE_MOUNT_BENEATH` under a
//! namespace's root. Superblocks are kept few instead (sysfs shared, see [`crate::sysfs_netns`];
//! one tmpfs for all masked dirs): every superblock is a step of the host-wide walks of mounting
//! sysfs and of creating and offlining memory cgroups.
use crate::image::Image;
use crate::security::HostPaths;
use crate::spec::Profile;
use crate::sys::{Errno, Sys};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

/// A C string from `b` with any NUL bytes dropped.
pub(crate) fn cstr(b: &[u8]) -> CString {
    CString::new(b.iter().copied().filter(|c| *c != 0).collect::<Vec<u8>>()).unwrap_or_default()
}

/// One filesystem step of the rootfs/pivot stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// mount(2).
    Mount {
        /// Source.
        src: Option<CString>,
        /// Target.
        target: CString,
        /// Filesystem type.
        fstype: Option<CString>,
        /// MS_* flags.
        flags: u64,
        /// Data.
        data: Option<CString>,
    },
    /// mkdir (EEXIST ok).
    Mkdir(CString, u32),
    /// mknod.
    Mknod(CString, u32, u64),
    /// Empty file (bind target).
    Touch(CString),
    /// symlink(target, link).
    Symlink(CString, CString),
    /// chdir.
    Chdir(CString),
    /// pivot_root(".", ".").
    PivotRoot,
    /// umount2(".", MNT_DETACH): drop the old root stacked under ".".
    DetachOldRoot,
    /// Mount sysfs on `target` from inside the network namespace `netns` (an fd the init holds), then
    /// go back to the init's own network namespace: the mount shows that namespace's network devices
    /// and shares its superblock (see [`crate::sysfs_netns`]).
    SysfsOf {
        /// The network namespace (fd in the init's table; closed by the step).
        netns: RawFd,
        /// Target.
        target: CString,
        /// MS_* flags.
        flags: u64,
    },
}

impl Op {
    /// For error messages.
    pub fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mount { src, target, fstype, data, .. } => format!(
                "mount {} ({}) on {}{}",
                src.as_ref().map(s).unwrap_or_default(),
                fstype.as_ref().map(s).unwrap_or_else(|| "bind/propagation".into()),
                s(target),
                data.as_ref().map(|d| format!(" with '{}'", s(d))).unwrap_or_default()
            ),
            Op::Mkdir(p, _) => format!("mkdir {}", s(p)),
            Op::Mknod(p, ..) => format!("mknod {}", s(p)),
            Op::Touch(p) => format!("create {}", s(p)),
            Op::Symlink(t, l) => format!("symlink {} -> {}", s(l), s(t)),
            Op::Chdir(p) => format!("chdir {}", s(p)),
            Op::PivotRoot => "pivot_root(\".\", \".\")".into(),
            Op::DetachOldRoot => "detach the old root".into(),
            Op::SysfsOf { target, .. } => {
                format!("mount sysfs (of the runtime's shared empty network namespace) on {}", s(target))
            }
        }
    }

    pub(crate) fn run<S: Sys + ?Sized>(&self, sys: &S) -> Result<(), Errno> {
        match self {
            Op::Mount { src, target, fstype, flags, data } => {
                sys.mount(src.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
            }
            Op::Mkdir(p, m) => sys.mkdir(p, *m),
            Op::Mknod(p, m, d) => sys.mknod(p, *m, *d),
            Op::Touch(p) => sys.touch(p),
            Op::Symlink(t, l) => sys.symlink(t, l),
            Op::Chdir(p) => sys.chdir(p),
            Op::PivotRoot => sys.pivot_root_dot(),
            Op::DetachOldRoot => sys.umount2(c".", libc::MNT_DETACH),
            Op::SysfsOf { netns, target, flags } => {
                let own = sys.open_ro(c"/proc/thread-self/ns/net")?;
                let mounted = sys
                    .setns(*netns, libc::CLONE_NEWNET)
                    .and_then(|()| sys.mount(Some(c"sysfs"), target, Some(c"sysfs"), *flags, None));
                // Back to the container's own network namespace whatever happened: no later step may
                // run in the shared one (a failure here fails the start).
                let back = sys.setns(own, libc::CLONE_NEWNET);
                sys.close(own);
                sys.close(*netns);
                back.and(mounted)
            }
        }
    }
}

/// Replace the sysfs mount of `ops` by [`Op::SysfsOf`] `netns` (same target and flags); false if
/// `ops` mounts no sysfs.
pub(crate) fn share_sysfs(ops: &mut [Op], netns: RawFd) -> bool {
    for op in ops.iter_mut() {
        if let Op::Mount { fstype: Some(f), target, flags, .. } = op {
            if f.to_bytes() == b"sysfs" {
                *op = Op::SysfsOf { netns, target: target.clone(), flags: *flags };
                return true;
            }
        }
    }
    false
}

/// The fd the [`Op::SysfsOf`] step of `ops` uses, to be placed in the init's fd table.
pub(crate) fn sysfs_netns_fd(ops: &mut [Op]) -> Option<&mut RawFd> {
    ops.iter_mut().find_map(|op| match op {
        Op::SysfsOf { netns, .. } => Some(netns),
        _ => None,
    })
}

/// The rootfs and pivot steps for a container (see [`crate::init`]); `paths` are the masked and
/// read-only paths to apply (empty for `Privileged`).
pub fn build_ops(
    image: &Image,
    profile: Profile,
    paths: &HostPaths,
    rootfs: &Path,
    upper: &Path,
    work: &Path,
) -> (Vec<Op>, usize) {
    let c = |s: &str| cstr(s.as_bytes());
    let r = |sub: &str| {
        let p = if sub.is_empty() { rootfs.to_path_buf() } else { rootfs.join(sub) };
        cstr(p.as_os_str().as_encoded_bytes())
    };
    let userns = profile == Profile::Userns;
    let m = |src: &str, target: CString, fstype: Option<&str>, flags: u64, data: Option<&str>| Op::Mount {
        src: Some(c(src)),
        target,
        fstype: fstype.map(c),
        flags,
        data: data.map(c),
    };
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME};
    let mut ops = vec![
        Op::Mount { src: None, target: c("/"), fstype: None, flags: MS_REC | MS_PRIVATE, data: None },
        m("overlay", r(""), Some("overlay"), 0, Some(&image.overlay_data(upper, work))),
        m("proc", r("proc"), Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        m(
            "sysfs",
            r("sys"),
            Some("sysfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC | if profile == Profile::Privileged { 0 } else { MS_RDONLY },
            None,
        ),
    ];
    // Docker's read-only paths: host-wide kernel knobs stay readable but not writable, even for the
    // container's root (sysctls such as fs.* are not namespaced and are guarded only by file mode).
    // Then its masked paths (runc's order). Paths this kernel lacks were dropped by HostPaths.
    use libc::MS_REMOUNT;
    for p in &paths.readonly {
        ops.push(m(&format!("{}", rootfs.join(p).display()), r(p), None, MS_BIND | MS_REC, None));
        ops.push(Op::Mount {
            src: None,
            target: r(p),
            fstype: None,
            flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data: None,
        });
    }
    for p in &paths.masked_files {
        ops.push(m("/dev/null", r(p), None, MS_BIND, None));
    }
    // One empty read-only tmpfs for all masked dirs: the first gets it, the others are bind mounts of
    // it (a bind keeps the read-only mount flag, and the superblock itself is read-only). Each
    // superblock costs every later memory cgroup creation and offline on the host a walk step (its
    // shrinker and list_lrus), so a container makes as few as the same view needs.
    for (i, p) in paths.masked_dirs.iter().enumerate() {
        match paths.masked_dirs.first().filter(|_| i > 0) {
            None => ops.push(m("tmpfs", r(p), Some("tmpfs"), MS_RDONLY, None)),
            Some(first) => {
                ops.push(m(&format!("{}", rootfs.join(first).display()), r(p), None, MS_BIND, None));
            }
        }
    }
    ops.push(m("tmpfs", r("dev"), Some("tmpfs"), MS_NOSUID | MS_STRICTATIME, Some("mode=755,size=65536k")));
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9), ("tty", 5, 0)] {
        let target = r(&format!("dev/{name}"));
        if userns {
            // mknod is not allowed in a user namespace: bind the host's nodes instead.
            ops.push(Op::Touch(target.clone()));
            ops.push(m(&format!("/dev/{name}"), target, None, MS_BIND, None));
        } else {
            ops.push(Op::Mknod(target, libc::S_IFCHR | 0o666, libc::makedev(major, minor)));
        }
    }
    ops.push(Op::Mkdir(r("dev/pts"), 0o755));
    ops.push(m(
        "devpts",
        r("dev/pts"),
        Some("devpts"),
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        ops.push(Op::Symlink(c(target), r(&format!("dev/{link}"))));
    }
    ops.push(m("tmpfs", r("tmp"), Some("tmpfs"), MS_NOSUID | MS_NODEV, Some("mode=1777")));
    let pivot_from = ops.len();
    ops.extend([Op::Chdir(r("")), Op::PivotRoot, Op::DetachOldRoot, Op::Chdir(c("/"))]);
    (ops, pivot_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_mount_overlay_then_pivot() {
        let t = tempfile::tempdir().unwrap();
        for d in crate::image::MOUNT_POINTS.iter().chain(["bin"].iter()) {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("bin/w"), b"").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path().join("bin/w"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let img = Image::open(vec![t.path().into()], vec!["/bin/w".into()]).unwrap();
        let hp = HostPaths {
            masked_files: vec!["proc/keys"],
            masked_dirs: vec!["sys/firmware", "proc/acpi"],
            readonly: vec!["proc/sys"],
        };
        let (ops, pivot) =
            build_ops(&img, Profile::Default, &hp, Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
        let descs: Vec<String> = ops.iter().map(Op::describe).collect();
        assert!(descs.iter().any(|d| d == "mount /dev/null (bind/propagation) on /s/r/proc/keys"), "{descs:#?}");
        assert!(descs.iter().any(|d| d == "mount tmpfs (tmpfs) on /s/r/sys/firmware"), "{descs:#?}");
        let fw = ops.iter().find_map(|o| match o {
            Op::Mount { target, flags, .. } if target.to_bytes() == b"/s/r/sys/firmware" => Some(*flags),
            _ => None,
        });
        assert_eq!(fw, Some(libc::MS_RDONLY));
        // Further masked dirs bind the first one's read-only tmpfs (no second superblock).
        assert!(
            descs.iter().any(|d| d == "mount /s/r/sys/firmware (bind/propagation) on /s/r/proc/acpi"),
            "{descs:#?}"
        );
        assert_eq!(descs.iter().filter(|d| d.starts_with("mount tmpfs (tmpfs) on /s/r/")).count(), 3, "{descs:#?}");
        // Masks come after proc and sysfs are mounted (else they would be hidden under them).
        let at = |t: &str| descs.iter().position(|d| d.ends_with(t)).unwrap();
        assert!(at("on /s/r/sys") < at("on /s/r/sys/firmware") && at("on /s/r/proc") < at("on /s/r/proc/keys"));
        assert!(ops[1].describe().contains("overlay") && ops[1].describe().contains("upperdir=/s/u"));
        assert!(ops.iter().any(|o| matches!(o, Op::Mknod(p, ..) if p.to_bytes() == b"/s/r/dev/null")));
        assert_eq!(ops[pivot..], [Op::Chdir(cstr(b"/s/r")), Op::PivotRoot, Op::DetachOldRoot, Op::Chdir(cstr(b"/"))]);
        let sysfs = |p| {
            let (o, _) =
                build_ops(&img, p, &HostPaths::default(), Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
            o.iter()
                .find_map(|o| match o {
                    Op::Mount { target, flags, .. } if target.to_bytes() == b"/s/r/sys" => Some(*flags),
                    _ => None,
                })
                .unwrap()
        };
        assert_ne!(sysfs(Profile::Default) & libc::MS_RDONLY, 0);
        assert_eq!(sysfs(Profile::Privileged) & libc::MS_RDONLY, 0);
        let (uops, _) = build_ops(&img, Profile::Userns, &hp, Path::new("/s/r"), Path::new("/s/u"), Path::new("/s/w"));
        assert!(!uops.iter().any(|o| matches!(o, Op::Mknod(..))));
        assert!(uops.iter().any(|o| matches!(o, Op::Touch(_))));
    }
}
