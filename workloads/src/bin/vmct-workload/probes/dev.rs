//! Device probes: open the /dev/kvm, /dev/mem and block device nodes the instance was given. Nodes the
//! instance creates itself are [`super::devnode`]'s.
use super::{sys, Ctx, Verdict};

pub(super) fn open(path: &str, flags: i32) -> Result<(), i32> {
    let p = sys::cstr(path);
    // SAFETY: p is a valid NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(sys::errno());
    }
    // SAFETY: fd was just opened and is closed once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Open /dev/kvm read-write. Harmless: no ioctl is issued.
pub fn kvm(_: &Ctx) -> Verdict {
    match open("/dev/kvm", libc::O_RDWR) {
        Ok(()) => Verdict::reached("opened /dev/kvm read-write"),
        Err(e) => Verdict::blocked(format!("{} opening /dev/kvm", sys::errno_name(e))),
    }
}

/// Open /dev/mem read-only. Harmless: nothing is read.
pub fn mem(_: &Ctx) -> Verdict {
    match open("/dev/mem", libc::O_RDONLY) {
        Ok(()) => Verdict::reached("opened /dev/mem read-only (nothing read)"),
        Err(e) => Verdict::blocked(format!("{} opening /dev/mem", sys::errno_name(e))),
    }
}

/// Block devices named in /sys/block with their `MAJ:MIN`.
fn block_devices() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dev = std::fs::read_to_string(e.path().join("dev")).ok()?.trim().to_string();
                    Some((name, dev))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Open every `/dev/<name>` of /sys/block read-only and non-blocking. Harmless: opened, never read.
pub fn block(_: &Ctx) -> Verdict {
    let devs = block_devices();
    let mut opened = Vec::new();
    let mut denied = Vec::new();
    for (name, _) in &devs {
        match open(&format!("/dev/{name}"), libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(()) => opened.push(name.clone()),
            Err(e) => denied.push(format!("{name}:{}", sys::errno_name(e))),
        }
    }
    let detail = format!("opened [{}] denied [{}]", opened.join(","), denied.join(","));
    if devs.is_empty() {
        Verdict::blocked("no block devices listed in /sys/block")
    } else if opened.is_empty() {
        Verdict::blocked(detail)
    } else {
        Verdict::reached(detail)
    }
}
