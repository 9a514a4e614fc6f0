//! PID probes: see the host's processes, and read or trace the harness's canary process.
use super::{sys, Ctx, Verdict};

/// Scan `/proc/*/cmdline` for the canary process (nonce in its argv). Harmless: reads only.
pub fn host_visible(ctx: &Ctx) -> Verdict {
    let Some(nonce) = &ctx.nonce else { return Verdict::error("no nonce given (VMCT_CANARY_NONCE unset)") };
    let dir = match std::fs::read_dir("/proc") {
        Ok(d) => d,
        Err(e) => return Verdict::blocked(format!("{} listing /proc", sys::io_name(&e))),
    };
    let mut pids = 0usize;
    let mut found = None;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        pids += 1;
        if found.is_none() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(nonce.as_str()) {
                    found = Some(pid);
                }
            }
        }
    }
    match found {
        Some(pid) => Verdict::reached(format!("host canary process visible as pid {pid}; {pids} pids visible")),
        None => Verdict::blocked(format!("{pids} pids visible, none is the host canary process")),
    }
}

/// Read the canary process's argv with `process_vm_readv`, then `PTRACE_SEIZE` it. Harmless: a read of
/// a sleeper the harness started for this purpose; a seize neither stops nor signals the tracee, and the
/// forked probe child exits right after, which detaches it.
pub fn ptrace_host(ctx: &Ctx) -> Verdict {
    let (Some(pid), Some(nonce)) = (ctx.pid, &ctx.nonce) else {
        return Verdict::error("no canary pid given (VMCT_CANARY_PID unset)");
    };
    let mut notes = Vec::new();
    if let Some((addr, len)) = ctx.pid_argv {
        let mut buf = vec![0u8; len.min(4096)];
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: local points to our own writable buffer of that length; remote is only read by the kernel
        // in the target process, and a bad address yields EFAULT.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n > 0 {
            let got = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
            if got.contains(nonce.as_str()) {
                return Verdict::reached(format!("process_vm_readv read the host canary's argv (pid {pid})"));
            }
            notes.push(format!("process_vm_readv read {n} bytes of another process"));
        } else {
            notes.push(format!("process_vm_readv: {}", sys::errno_name(sys::errno())));
        }
    }
    // SAFETY: PTRACE_SEIZE takes no pointers; it fails cleanly when not permitted.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
    if r == 0 {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmd).contains(nonce.as_str());
        // SAFETY: detach the seized tracee (it is not stopped, so this may fail; exiting detaches anyway).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
        if ours || cmd.is_empty() {
            return Verdict::reached(format!("PTRACE_SEIZE of host pid {pid} succeeded; {}", notes.join("; ")));
        }
        notes.push(format!("pid {pid} here is a different process (seized and released)"));
        return Verdict::blocked(notes.join("; "));
    }
    notes.push(format!("PTRACE_SEIZE: {}", sys::errno_name(sys::errno())));
    Verdict::blocked(notes.join("; "))
}
