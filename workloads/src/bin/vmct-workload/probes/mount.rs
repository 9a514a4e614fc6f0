//! Mount probes: mount tmpfs, proc and sysfs on a private temporary directory, then unmount.
use super::{sys, Ctx, Verdict};
use std::path::{Path, PathBuf};

/// Mount a tmpfs. Harmless: on a fresh private directory, unmounted and removed right after.
pub fn tmpfs(ctx: &Ctx) -> Verdict {
    try_mount(ctx, "tmpfs")
}

/// Mount a proc; if it shows the host canary process, the instance sees host pids through it.
pub fn proc(ctx: &Ctx) -> Verdict {
    try_mount(ctx, "proc")
}

/// Mount a sysfs. Harmless like [`tmpfs`].
pub fn sysfs(ctx: &Ctx) -> Verdict {
    try_mount(ctx, "sysfs")
}

/// A fresh directory under the first writable base; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Option<TempDir> {
        let mut bases: Vec<PathBuf> = std::env::var_os("VMCT_PROBE_TMP").map(PathBuf::from).into_iter().collect();
        bases.extend(["/tmp", "/dev/shm", "/run", "/var/tmp"].map(PathBuf::from));
        bases.extend(std::env::current_dir().ok());
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        bases.into_iter().find_map(|b| {
            let d = b.join(format!("vmct-probe-{what}-{pid}"));
            std::fs::create_dir(&d).ok().map(|_| TempDir(d))
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn try_mount(ctx: &Ctx, fstype: &str) -> Verdict {
    let Some(dir) = TempDir::new(fstype) else {
        return detached(fstype);
    };
    let target = sys::cstr(&dir.0.to_string_lossy());
    let fs = sys::cstr(fstype);
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: all pointers are valid NUL-terminated strings; data is NULL.
    let r = unsafe { libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), flags, std::ptr::null()) };
    if r != 0 {
        return Verdict::blocked(format!("mount {fstype}: {}", sys::errno_name(sys::errno())));
    }
    let host_pids = fstype == "proc" && shows_canary(&dir.0, ctx);
    // SAFETY: target is the directory we just mounted on.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    classify(ctx, fstype, host_pids)
}

fn classify(ctx: &Ctx, fstype: &str, host_pids: bool) -> Verdict {
    if host_pids {
        return Verdict::reached(format!("mounted {fstype}; it shows the host canary process (unmounted again)"));
    }
    match ctx.same_ns("mnt") {
        Some(false) => Verdict::blocked(format!("mount {fstype} allowed only in its own mount namespace")),
        Some(true) => Verdict::reached(format!("mounted {fstype} in the host mount namespace (unmounted again)")),
        None => Verdict::reached(format!("mounted {fstype} (mount namespace unknown; unmounted again)")),
    }
}

/// Does a proc mounted at `dir` list the canary process?
fn shows_canary(dir: &Path, ctx: &Ctx) -> bool {
    let (Some(pid), Some(nonce)) = (ctx.pid, &ctx.nonce) else { return false };
    std::fs::read(dir.join(pid.to_string()).join("cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(nonce.as_str()))
}

/// No writable directory: try the new mount API, which creates a detached mount attached nowhere.
fn detached(fstype: &str) -> Verdict {
    let fs = sys::cstr(fstype);
    // SAFETY: fs is a valid NUL-terminated string.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), 0) };
    if fd < 0 {
        return Verdict::blocked(format!("no writable directory; fsopen {fstype}: {}", sys::errno_name(sys::errno())));
    }
    let fd = i32::try_from(fd).expect("a file descriptor is an int");
    // SAFETY: FSCONFIG_CMD_CREATE (6) takes no key/value; fd is our fs context.
    let c = unsafe { libc::syscall(libc::SYS_fsconfig, fd, 6, 0usize, 0usize, 0) };
    let m = if c == 0 {
        // SAFETY: fsmount on our configured context; the resulting detached mount fd is closed below.
        unsafe { libc::syscall(libc::SYS_fsmount, fd, 0, 0) }
    } else {
        -1
    };
    let e = sys::errno();
    // SAFETY: closing fds we own.
    unsafe {
        if m >= 0 {
            libc::close(i32::try_from(m).expect("a file descriptor is an int"));
        }
        libc::close(fd);
    }
    if m >= 0 {
        Verdict::reached(format!("created a detached {fstype} mount (fsopen/fsmount) without any directory"))
    } else {
        Verdict::blocked(format!("fsconfig/fsmount {fstype}: {}", sys::errno_name(e)))
    }
}
