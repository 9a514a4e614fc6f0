//! The workload as a Linux guest's /init (pid 1 in a vmct microVM of the linux guest model).
//!
//! [`start`]: write the boot-timer port (Firecracker's method: value 123 to port 0x3f0, so the VMM
//! timestamps "/init started"), mount /proc, /sys and /dev (devtmpfs), and read the scenario from the
//! kernel command line (`vmct.workload=cpu,--iters,1000`; dotted parameters never reach argv). With
//! `VMCT_DISK=1` in the environment (a `KEY=value` word on the kernel command line) it mounts the VM's
//! virtio-blk disk `/dev/vda` (ext4) on [`DISK_MOUNT`] and points the io scenario there
//! (`VMCT_IO_DIR`); otherwise the io scenario is unsupported ([`NO_DISK_ENV`]): an initramfs lives in
//! RAM, and its write+fsync figures would not be a disk's.
//! [`finish`]: end the VM. It uses `reboot(RB_AUTOBOOT)`, not `RB_POWER_OFF`: the guest kernel has no
//! ACPI, so power-off would fall back to halting and then panic when init exits; a reboot with
//! `reboot=k` resets through the i8042, which the VMM takes as the VM's end (Firecracker's semantics).
//! The port numbers must match `microvm::linux::layout::ports`.
use std::ffi::CString;

/// Boot-timer port and value (`microvm::linux::layout::ports::BOOT_TIMER{,_VALUE}`).
const BOOT_TIMER_PORT: u16 = 0x3f0;
const BOOT_TIMER_VALUE: u8 = 123;
/// Kernel command-line parameter with the scenario (`microvm::linux::boot::WORKLOAD_PARAM`).
const WORKLOAD_PARAM: &str = "vmct.workload=";

/// Where /init mounts the VM's disk.
pub const DISK_MOUNT: &str = "/disk";
/// The environment variable that asks /init to mount the VM's disk (value `1`).
pub const DISK_ENV: &str = "VMCT_DISK";
/// Set by /init when the guest has no disk; the io scenario then reports `unsupported`.
pub const NO_DISK_ENV: &str = "VMCT_IO_NO_DISK";

/// True when this process is a guest's /init: pid 1, started as `/init`, and nothing mounted yet.
/// (A container's workload may be pid 1 too, but is started as /bin/vmct-workload with /proc mounted.)
pub fn is_guest_init() -> bool {
    std::process::id() == 1
        && std::env::args_os().next().is_some_and(|a| a == "/init")
        && !std::path::Path::new("/proc/self").exists()
}

/// Signal the VMM, mount what the workload needs, and return the scenario's arguments.
pub fn start() -> Vec<String> {
    boot_timer();
    for (src, target, fstype) in
        [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")]
    {
        if let Err(e) = mount(src, target, fstype) {
            eprintln!("vmct-workload: init: mount {fstype} on {target}: {e}");
        }
    }
    mount_disk();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    workload_args(&cmdline)
}

/// Mount the VM's disk when asked to (see the module docs); say so on the console when it fails.
fn mount_disk() {
    if std::env::var_os(DISK_ENV).is_none_or(|v| v != "1") {
        std::env::set_var(NO_DISK_ENV, "1");
        return;
    }
    let r = std::fs::create_dir_all(DISK_MOUNT).and_then(|_| mount("/dev/vda", DISK_MOUNT, "ext4"));
    match r {
        Ok(()) => std::env::set_var("VMCT_IO_DIR", DISK_MOUNT),
        Err(e) => {
            eprintln!("vmct-workload: init: mount /dev/vda (ext4) on {DISK_MOUNT}: {e}");
            std::env::set_var(NO_DISK_ENV, "1");
        }
    }
}

/// The scenario's arguments from a kernel command line.
pub fn workload_args(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(WORKLOAD_PARAM))
        .map(|v| v.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// End the VM after the workload finished with `status` (already reported in its `done` line).
pub fn finish(status: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: sync and reboot take no pointers; as pid 1 with CAP_SYS_BOOT reboot does not return on
    // success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    eprintln!("vmct-workload: init: reboot failed ({}); status {status}", std::io::Error::last_os_error());
    loop {
        // SAFETY: pause has no preconditions; pid 1 must not exit.
        unsafe { libc::pause() };
    }
}

fn mount(src: &str, target: &str, fstype: &str) -> std::io::Result<()> {
    let (src, target, fstype) = (cstr(src), cstr(target), cstr(fstype));
    // SAFETY: all strings are valid NUL-terminated C strings living across the call; no data argument.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in a constant path")
}

#[cfg(target_arch = "x86_64")]
fn boot_timer() {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(BOOT_TIMER_PORT.into(), 1, 1) } != 0 {
        return;
    }
    // SAFETY: the port was granted just above; in a vmct VM it is the VMM's boot-timer port, and the
    // write has no effect on guest memory or registers besides al/dx, which are declared.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") BOOT_TIMER_PORT, in("al") BOOT_TIMER_VALUE, options(nomem, nostack));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn boot_timer() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scenario_from_the_kernel_command_line() {
        let c = "console=ttyS0 reboot=k quiet vmct.workload=cpu,--iters,1000 nomodule\n";
        assert_eq!(workload_args(c), ["cpu", "--iters", "1000"]);
        assert!(workload_args("console=ttyS0").is_empty());
    }
}
