//! Shared-kernel facts: kernel version and CPU model. `reached` means visible; these are information,
//! not failures (the harness never counts them).
use super::{Ctx, Verdict};

/// `uname` release and version. Harmless: a read.
pub fn kernel(_: &Ctx) -> Verdict {
    // SAFETY: utsname is plain old data; zeroed is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Verdict::blocked("uname failed");
    }
    let s = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates each field within its array.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned()
    };
    Verdict::reached(format!(
        "kernel {} {} visible (shared-kernel fact, information only)",
        s(&u.release),
        s(&u.version)
    ))
}

/// Model name and flag count from /proc/cpuinfo. Harmless: a read.
pub fn cpuinfo(_: &Ctx) -> Verdict {
    let Ok(s) = std::fs::read_to_string("/proc/cpuinfo") else { return Verdict::blocked("/proc/cpuinfo not readable") };
    let field = |k: &str| s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim());
    let cpus = s.lines().filter(|l| l.starts_with("processor")).count();
    let flags = field("flags").map_or(0, |f| f.split_whitespace().count());
    Verdict::reached(format!(
        "{cpus} cpus, model '{}', {flags} flags visible (shared-kernel fact, information only)",
        field("model name").unwrap_or("?")
    ))
}
