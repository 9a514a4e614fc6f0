//! Confinement of the VMM process: its seccomp filter, and the attack-surface figures.
//!
//! The jail itself (own pid, mount, network and IPC namespaces, an empty-but-for-what-it-needs root,
//! own cgroup, no capabilities, a non-root uid) is made by the launcher before exec, as Firecracker's
//! jailer does (`harness::backend::vmm_jail`): the VMM is born in it. What the VMM does itself, just
//! before its guest runs ([`before_guest`]), when everything it needs is open:
//! 1. `RLIMIT_CORE` 0 (a VMM killed by its filter leaves no core file);
//! 2. installs the seccomp allowlist of the vCPU thread ([`vcpu_filter`]): only the syscalls the run
//!    loop, its exit handlers and the snapshot path make after setup, and `ioctl` only with the KVM
//!    requests in [`kvm_ioctls`]; anything else kills the VMM with SIGSYS (`SECCOMP_RET_KILL_PROCESS`,
//!    as Firecracker's default filters).
//!
//! The filter is one table ([`vcpu_allowlist`]) from which the installed BPF program, seccompiler's
//! reference compilation, the count in [`VmmSurface::syscalls_allowed`] and the tests are derived. The
//! bare VMM has a single thread (the vCPU thread also serves stdin/stdout), so "one filter per VMM
//! thread" is one filter here.
//!
//! Not filtered: the linux guest model's VMM ([`crate::linux::vmm`], `vmct __vmm-linux`). It has a
//! second thread (the stdin reader), serial/i8042/irqchip/PIT exits with syscalls of their own, and on
//! this project's `kvm_pvm` hosts its guest never reaches userspace (a 50-95 s interpreted boot that
//! dies on the first guest syscall), so an allowlist for it cannot be traced and checked through a
//! whole run here; an unchecked one would kill its VMs on the hosts where that model works.
use crate::layout::ports;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

/// Errors while confining the VMM.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A system call of the confinement failed.
    #[error("vmct-vmm: confine: {what} failed: {source}")]
    Sys {
        /// The step.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// seccompiler rejected the filter or the kernel refused it.
    #[error("vmct-vmm: seccomp: {0}")]
    Seccomp(String),
}

fn sys_err(what: &'static str) -> impl FnOnce(std::io::Error) -> ConfineError {
    move |source| ConfineError::Sys { what, source }
}

/// Steps 1-2 of the module docs, with `filter` from [`vcpu_filter`] (built during setup).
pub fn before_guest(filter: &BpfProgram) -> Result<(), ConfineError> {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit struct for the call's duration.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        return Err(sys_err("setrlimit(RLIMIT_CORE, 0)")(std::io::Error::last_os_error()));
    }
    apply_vcpu_filter(filter)
}

/// KVM ioctl request numbers, as `_IO*(KVMIO, nr, type)` (linux/kvm.h), computed with vmm-sys-util's
/// macros like kvm-ioctls does (its own constants are private).
mod kvm_nr {
    #![allow(missing_docs)]
    use kvm_bindings::{kvm_fpu, kvm_msrs, kvm_regs, kvm_sregs, KVMIO};
    use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};
    ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
    ioctl_ior_nr!(KVM_GET_FPU, KVMIO, 0x8c, kvm_fpu);
}

/// The KVM ioctls the vCPU thread may make after setup, with who needs them: the run loop
/// (`KVM_RUN`; RIP for exit errors and probe records; the fault handler's registers), and the
/// snapshot path (`KVM_GET_MSRS` for the TSC, `KVM_GET_FPU`, `KVM_SET_REGS` for the wait result).
pub fn kvm_ioctls() -> [(&'static str, u64); 6] {
    [
        ("KVM_RUN", kvm_nr::KVM_RUN() as u64),
        ("KVM_GET_REGS", kvm_nr::KVM_GET_REGS() as u64),
        ("KVM_SET_REGS", kvm_nr::KVM_SET_REGS() as u64),
        ("KVM_GET_SREGS", kvm_nr::KVM_GET_SREGS() as u64),
        ("KVM_GET_MSRS", kvm_nr::KVM_GET_MSRS() as u64),
        ("KVM_GET_FPU", kvm_nr::KVM_GET_FPU() as u64),
    ]
}

/// Names of [`kvm_ioctls`], for documentation and the attack-surface figures.
pub const KVM_IOCTLS: [&str; 6] =
    ["KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_GET_MSRS", "KVM_GET_FPU"];

/// `open` flags of the only `openat` after setup: `File::create` of a snapshot file.
const SNAPSHOT_OPEN_FLAGS: u64 = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u64;

/// An argument rule of the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRule {
    /// Any arguments.
    Any,
    /// `ioctl` whose request (argument 1) is one of [`kvm_ioctls`].
    KvmIoctl,
    /// `openat` whose flags (argument 2) are exactly `O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC`.
    CreateFile,
}

/// The vCPU thread's allowlist after setup: (syscall name, number, argument rule, who needs it).
/// Found by tracing the VMM (`strace`) through every scenario, the exit errors, the watchdog and a
/// snapshot, and kept minimal; compare Firecracker's `resources/seccomp/x86_64-unknown-linux-musl.json`
/// (vcpu thread).
pub fn vcpu_allowlist() -> Vec<(&'static str, i64, ArgRule, &'static str)> {
    use ArgRule::*;
    vec![
        ("ioctl", libc::SYS_ioctl, KvmIoctl, "KVM_RUN and vCPU register access"),
        ("read", libc::SYS_read, Any, "stdin commands (stop, snapshot DIR)"),
        ("write", libc::SYS_write, Any, "protocol lines on stdout, errors on stderr, the snapshot state file"),
        ("timer_settime", libc::SYS_timer_settime, Any, "arm and disarm the watchdog"),
        ("timer_delete", libc::SYS_timer_delete, Any, "watchdog timer dropped at the end"),
        ("rt_sigreturn", libc::SYS_rt_sigreturn, Any, "return from the watchdog signal handler"),
        ("clock_gettime", libc::SYS_clock_gettime, Any, "timestamps (when the vDSO is not used)"),
        ("mmap", libc::SYS_mmap, Any, "allocator"),
        ("munmap", libc::SYS_munmap, Any, "allocator, unmapping guest memory at the end"),
        ("mremap", libc::SYS_mremap, Any, "allocator (growing buffers)"),
        ("brk", libc::SYS_brk, Any, "allocator"),
        ("close", libc::SYS_close, Any, "snapshot files; VM fds at the end"),
        ("sigaltstack", libc::SYS_sigaltstack, Any, "Rust runtime teardown of the main thread's signal stack"),
        ("exit", libc::SYS_exit, Any, "thread exit"),
        ("exit_group", libc::SYS_exit_group, Any, "process exit"),
        ("openat", libc::SYS_openat, CreateFile, "snapshot: create the memory and state files"),
        ("mkdir", libc::SYS_mkdir, Any, "snapshot: create its directory"),
        ("statx", libc::SYS_statx, Any, "snapshot: check the directory exists"),
        ("newfstatat", libc::SYS_newfstatat, Any, "snapshot: check the directory exists (older libc)"),
        ("ftruncate", libc::SYS_ftruncate, Any, "snapshot: size the memory file"),
        ("mincore", libc::SYS_mincore, Any, "snapshot: which guest pages are resident"),
        ("pwrite64", libc::SYS_pwrite64, Any, "snapshot: write resident guest pages"),
    ]
}

fn target_arch() -> seccompiler::TargetArch {
    #[cfg(target_arch = "aarch64")]
    return seccompiler::TargetArch::aarch64;
    #[cfg(not(target_arch = "aarch64"))]
    seccompiler::TargetArch::x86_64
}

/// A syscall number as the 32-bit `seccomp_data.nr` a filter compares.
fn syscall_nr(nr: i64) -> u32 {
    u32::try_from(nr).expect("x86_64 syscall numbers are small and positive")
}

/// Allowed argument values of a rule: (argument index, values of its low 32 bits).
fn rule_values(rule: ArgRule) -> Option<(u32, Vec<u32>)> {
    match rule {
        ArgRule::Any => None,
        ArgRule::KvmIoctl => {
            let low = |r: u64| u32::try_from(r).expect("ioctl requests are 32-bit (_IOC)");
            Some((1, kvm_ioctls().iter().map(|(_, r)| low(*r)).collect()))
        }
        ArgRule::CreateFile => Some((2, vec![u32::try_from(SNAPSHOT_OPEN_FLAGS).expect("open flags are 32-bit")])),
    }
}

/// The vCPU thread's seccomp filter as seccompiler compiles it: [`vcpu_allowlist`] allowed, anything
/// else `SECCOMP_RET_KILL_PROCESS`. Used as the reference for [`vcpu_filter`] (same decisions, checked
/// by a test for every syscall number): seccompiler emits a linear chain of comparisons, which the
/// kernel walks once per syscall number when it installs the filter (seccomp's action cache), so
/// installing it cost about 100 us here, half the VMM's whole confinement budget.
pub fn vcpu_filter_seccompiler() -> Result<BpfProgram, ConfineError> {
    let err = |e: &dyn std::fmt::Display| ConfineError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr, rule, _) in vcpu_allowlist() {
        let mut rs = Vec::new();
        if let Some((arg, values)) = rule_values(rule) {
            for v in values {
                let c = SeccompCondition::new(
                    u8::try_from(arg).expect("argument 0..6"),
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    u64::from(v),
                )
                .map_err(|e| err(&e))?;
                rs.push(SeccompRule::new(vec![c]).map_err(|e| err(&e))?);
            }
        }
        rules.insert(nr, rs);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, target_arch())
        .map_err(|e| err(&e))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| err(&e))
}

/// Classic-BPF opcodes and seccomp constants used by [`vcpu_filter`] (linux/filter.h, linux/seccomp.h).
mod bpf {
    pub const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    pub const JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
    pub const JGE_K: u16 = 0x35; // BPF_JMP (5) | BPF_JGE (0x30) | BPF_K (0)
    pub const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    pub const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    pub const RET_KILL_PROCESS: u32 = 0x8000_0000; // SECCOMP_RET_KILL_PROCESS
    /// Offsets in `struct seccomp_data`: nr, arch, then args[6] as u64 (low word first on x86_64).
    pub const NR: u32 = 0;
    pub const ARCH: u32 = 4;
    pub const ARGS: u32 = 16;
    /// AUDIT_ARCH_X86_64.
    pub const AUDIT_ARCH: u32 = 0xc000_003e;
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

fn jump_len(n: usize) -> Result<u8, ConfineError> {
    u8::try_from(n).map_err(|_| ConfineError::Seccomp(format!("BPF jump of {n} instructions is too long")))
}

/// Binary search over the sorted allowlist; each leaf allows its syscall (after its argument rule).
fn search(entries: &[(i64, ArgRule)]) -> Result<Vec<seccompiler::sock_filter>, ConfineError> {
    use bpf::*;
    if let [(nr, rule)] = entries {
        let mut block = match rule_values(*rule) {
            None => vec![insn(RET_K, 0, 0, RET_ALLOW)],
            Some((arg, values)) => {
                // LD arg; JEQ v_k -> ALLOW ...; KILL; ALLOW
                let n = values.len();
                let mut b = vec![insn(LD_W_ABS, 0, 0, ARGS + 8 * arg)];
                for (k, v) in values.iter().enumerate() {
                    b.push(insn(JEQ_K, jump_len(n - k)?, 0, *v));
                }
                b.push(insn(RET_K, 0, 0, RET_KILL_PROCESS));
                b.push(insn(RET_K, 0, 0, RET_ALLOW));
                b
            }
        };
        let mut out = vec![insn(JEQ_K, 0, jump_len(block.len())?, syscall_nr(*nr))];
        out.append(&mut block);
        out.push(insn(RET_K, 0, 0, RET_KILL_PROCESS));
        return Ok(out);
    }
    let mid = entries.len() / 2;
    let mut left = search(&entries[..mid])?;
    let mut right = search(&entries[mid..])?;
    let mut out = vec![insn(JGE_K, jump_len(left.len())?, 0, syscall_nr(entries[mid].0))];
    out.append(&mut left);
    out.append(&mut right);
    Ok(out)
}

/// The vCPU thread's seccomp filter: [`vcpu_allowlist`] allowed (with its argument rules), anything
/// else, and any other architecture, `SECCOMP_RET_KILL_PROCESS`. Hand-built as a binary search over
/// syscall numbers (a dozen instructions per syscall instead of seccompiler's linear chain, see
/// [`vcpu_filter_seccompiler`], whose decisions it must match: a test checks every syscall number);
/// installed with seccompiler.
pub fn vcpu_filter() -> Result<BpfProgram, ConfineError> {
    use bpf::*;
    if !cfg!(target_arch = "x86_64") {
        return vcpu_filter_seccompiler();
    }
    let mut entries: Vec<(i64, ArgRule)> = vcpu_allowlist().iter().map(|(_, nr, r, _)| (*nr, *r)).collect();
    entries.sort_unstable_by_key(|e| e.0);
    let mut prog = vec![
        insn(LD_W_ABS, 0, 0, ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH),
        insn(RET_K, 0, 0, RET_KILL_PROCESS),
        insn(LD_W_ABS, 0, 0, NR),
    ];
    prog.extend(search(&entries)?);
    Ok(prog)
}

/// Step 4: install `prog` on the calling thread (sets `no_new_privs` first, as seccomp requires).
pub fn apply_vcpu_filter(prog: &BpfProgram) -> Result<(), ConfineError> {
    seccompiler::apply_filter(prog).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// Test hook (`vmct-vmm --test-violate-seccomp`): after the filter is installed, attempt a syscall
/// outside the allowlist (`socket(AF_INET, SOCK_STREAM)`, harmless even if it were allowed: the VMM
/// is in its own empty network namespace). Under the filter this never returns: the kernel kills the
/// process with SIGSYS. Returns a message if the call was *not* blocked.
pub fn violate_seccomp_for_test() -> String {
    // SAFETY: socket(2) with constant arguments; the fd, if any, is closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        // SAFETY: the fd was just created and is ours.
        unsafe { libc::close(fd) };
    }
    format!("vmct-vmm: test hook: socket(2) outside the seccomp allowlist was not blocked (returned {fd})")
}

/// The VMM's attack surface as seen from the guest and from the host (see the isolation contract):
/// what the VMM handles for the guest and how many host syscalls it can still make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmSurface {
    /// VM-exit kinds the run loop handles (anything else ends the VM as `unexpected_exit`).
    pub exit_kinds: Vec<&'static str>,
    /// I/O port ranges (first, last, inclusive) the VMM serves; other ports end the VM (or are
    /// recorded in probe mode).
    pub io_ports: Vec<(u16, u16)>,
    /// MMIO ranges (first, last guest-physical address, inclusive) the VMM emulates a device for.
    pub mmio_ranges: Vec<(u64, u64)>,
    /// Syscalls in the VMM's seccomp allowlist after confinement.
    pub syscalls_allowed: u32,
}

/// Merge sorted ports into inclusive ranges.
fn port_ranges(mut ports: Vec<u16>) -> Vec<(u16, u16)> {
    ports.sort_unstable();
    ports.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for p in ports {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(p) => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// What the bare-guest VMM handles and allows: exit kinds from the run loop's table
/// ([`crate::vcpu::HANDLED_EXITS`]), ports from its port map ([`ports::MAP`]), no MMIO device (an MMIO
/// access ends the VM), and the size of [`vcpu_allowlist`].
pub fn bare_surface() -> VmmSurface {
    VmmSurface {
        exit_kinds: crate::vcpu::HANDLED_EXITS.iter().map(|k| k.name()).collect(),
        io_ports: port_ranges(ports::MAP.iter().map(|(p, _)| *p).collect()),
        mmio_ranges: Vec::new(),
        syscalls_allowed: u32::try_from(vcpu_allowlist().len()).expect("a short list"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_match_linux_kvm_h() {
        // The values in linux/kvm.h on x86_64 (and in Firecracker's x86_64 seccomp JSON).
        let want = [
            ("KVM_RUN", 0xae80),
            ("KVM_GET_REGS", 0x8090_ae81),
            ("KVM_SET_REGS", 0x4090_ae82),
            ("KVM_GET_SREGS", 0x8138_ae83),
            ("KVM_GET_MSRS", 0xc008_ae88),
            ("KVM_GET_FPU", 0x81a0_ae8c),
        ];
        assert_eq!(kvm_ioctls().to_vec(), want.to_vec());
        assert_eq!(kvm_ioctls().map(|k| k.0), KVM_IOCTLS);
    }

    #[test]
    fn allowlist_is_small_has_no_process_or_network_calls_and_compiles() {
        let list = vcpu_allowlist();
        let names: Vec<&str> = list.iter().map(|l| l.0).collect();
        for forbidden in ["socket", "connect", "clone", "clone3", "fork", "vfork", "execve", "ptrace", "kill", "open"] {
            assert!(!names.contains(&forbidden), "{forbidden} must not be allowed");
        }
        let mut nrs: Vec<i64> = list.iter().map(|l| l.1).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), list.len(), "a syscall is listed twice");
        let prog = vcpu_filter().unwrap();
        assert!(prog.len() > list.len(), "{} BPF instructions", prog.len());
        assert_eq!(bare_surface().syscalls_allowed as usize, list.len());
    }

    /// A classic-BPF interpreter for the opcodes seccompiler and [`vcpu_filter`] emit.
    fn run_bpf(prog: &[seccompiler::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                o if o >= 16 && (o - 16) % 4 == 0 => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        #[allow(clippy::cast_possible_truncation)] // the low word, on purpose
                        let low = a as u32;
                        low
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            match i.code {
                0x20 => acc = word(i.k),
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(acc == i.k),
                0x25 => pc += jump(acc > i.k),
                0x35 => pc += jump(acc >= i.k),
                0x45 => pc += jump(acc & i.k != 0),
                0x54 => acc &= i.k,
                0x06 => return i.k,
                c => panic!("opcode 0x{c:x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn the_binary_search_filter_decides_exactly_like_seccompilers() {
        let ours = vcpu_filter().unwrap();
        let reference = vcpu_filter_seccompiler().unwrap();
        assert!(ours.len() < reference.len(), "{} vs {} instructions", ours.len(), reference.len());
        let mut args_set: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
        for (_, req) in kvm_ioctls() {
            args_set.push([6, req, 0, 0, 0, 0]);
            args_set.push([6, req + 1, 0, 0, 0, 0]);
            args_set.push([6, req | 1 << 40, 0, 0, 0, 0]);
        }
        args_set.push([0, 0, SNAPSHOT_OPEN_FLAGS, 0o666, 0, 0]);
        args_set.push([0, 0, SNAPSHOT_OPEN_FLAGS | libc::O_APPEND as u64, 0o666, 0, 0]);
        args_set.push([0, 0, libc::O_RDONLY as u64, 0, 0, 0]);
        let arch = bpf::AUDIT_ARCH;
        let mut allowed = 0;
        for nr in (0..600u32).chain([0x4000_0000, 0x4000_0010, 0x4000_0200, u32::MAX]) {
            for args in &args_set {
                for a in [arch, 0x4000_0003] {
                    let (x, y) = (run_bpf(&ours, nr, a, *args), run_bpf(&reference, nr, a, *args));
                    assert_eq!(x, y, "nr {nr} arch 0x{a:x} args {args:x?}");
                    allowed += (x == bpf::RET_ALLOW) as u32;
                }
            }
        }
        assert!(allowed > 0);
        // Spot checks: KVM_RUN allowed, another ioctl and socket killed.
        assert_eq!(
            run_bpf(&ours, syscall_nr(libc::SYS_ioctl), arch, [6, kvm_ioctls()[0].1, 0, 0, 0, 0]),
            bpf::RET_ALLOW
        );
        assert_eq!(run_bpf(&ours, syscall_nr(libc::SYS_ioctl), arch, [6, 0x5401, 0, 0, 0, 0]), bpf::RET_KILL_PROCESS);
        assert_eq!(run_bpf(&ours, syscall_nr(libc::SYS_socket), arch, [0; 6]), bpf::RET_KILL_PROCESS);
    }

    #[test]
    fn port_ranges_merge_neighbours() {
        assert_eq!(port_ranges(vec![0x603, 0x600, 0x601, 0x602, 0x3f8]), vec![(0x3f8, 0x3f8), (0x600, 0x603)]);
        assert_eq!(port_ranges(vec![]), vec![]);
    }

    #[test]
    fn bare_surface_comes_from_the_port_map_and_exit_table() {
        let s = bare_surface();
        assert_eq!(s.io_ports, vec![(ports::DOORBELL, ports::FAULT)]);
        assert!(s.mmio_ranges.is_empty());
        assert!(s.exit_kinds.contains(&"io_out") && s.exit_kinds.contains(&"mmio_write"), "{:?}", s.exit_kinds);
    }

    /// The filter really kills: a forked child installs it and calls socket(2).
    #[test]
    fn a_syscall_outside_the_allowlist_kills_with_sigsys() {
        let prog = vcpu_filter().unwrap();
        // SAFETY: fork in a test; the child only makes raw syscalls and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: a valid rlimit struct (no core file from the SIGSYS below).
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
            if apply_vcpu_filter(&prog).is_err() {
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(3) };
            }
            let _ = violate_seccomp_for_test();
            // SAFETY: as above.
            unsafe { libc::_exit(4) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFSIGNALED(status), "child exited with {}", libc::WEXITSTATUS(status));
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
