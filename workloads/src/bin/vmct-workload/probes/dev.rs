//! Device probes: open /dev/kvm, /dev/mem and block devices; create a block device node.
use super::{sys, Ctx, Verdict};

fn open(path: &str, flags: i32) -> Result<(), i32> {
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

/// Create a block device node for a host disk in a private directory and open it read-only. Harmless:
/// never read; the node and directory are removed.
pub fn mknod_block(_: &Ctx) -> Verdict {
    let devs = block_devices();
    if devs.is_empty() {
        return Verdict::blocked("no block devices listed in /sys/block");
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let bases = ["/tmp", "/dev/shm", "/run", "/var/tmp", "."];
    let Some(dir) =
        bases.iter().map(|b| format!("{b}/vmct-probe-mknod-{pid}")).find(|d| std::fs::create_dir(d).is_ok())
    else {
        return Verdict::error("no writable directory for the device node");
    };
    let mut notes = Vec::new();
    let mut verdict = None;
    for (name, dev) in devs.iter().take(4) {
        let Some((maj, min)) = dev.split_once(':').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))) else {
            continue;
        };
        let node = format!("{dir}/{name}");
        let p = sys::cstr(&node);
        // SAFETY: p is a valid path; mode and device numbers are plain integers.
        let r = unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(maj, min)) };
        if r != 0 {
            notes.push(format!("mknod {name}: {}", sys::errno_name(sys::errno())));
            break;
        }
        let o = open(&node, libc::O_RDONLY | libc::O_NONBLOCK);
        let _ = std::fs::remove_file(&node);
        match o {
            Ok(()) => {
                verdict = Some(Verdict::reached(format!("created a node for host disk {name} ({dev}) and opened it")));
                break;
            }
            Err(e) => notes.push(format!("{name}: mknod ok, open {}", sys::errno_name(e))),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    verdict.unwrap_or_else(|| Verdict::blocked(notes.join("; ")))
}
