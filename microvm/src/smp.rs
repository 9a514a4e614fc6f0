//! Secondary vCPUs of the bare guest: with `cpu` work, every vCPU a VM is given runs it.
//!
//! The bare guest has no SMP bring-up (no APIC, no INIT/SIPI): the VMM starts each secondary vCPU
//! itself, directly at CPL3 on the image entry with its own stack ([`layout::secondary_stack_top`]) and
//! its index in RSI (0 on vCPU 0, whose trampoline leaves RSI clear), and runs it on a thread of its
//! own. This is how a VM neighbour gets the same CPU allotment as a container with a CPU quota of N
//! whose hog spins N threads (the blast-radius experiment at equal allotment).
//!
//! Only the `cpu` scenario starts secondaries ([`runs_secondaries`]); any other scenario leaves them
//! created, configured and parked, as before (snapshots and probes stay single-vCPU). At most
//! [`layout::MAX_RUNNING_SECONDARIES`] run.
//!
//! A secondary thread confines itself with the vCPU filter before its first `KVM_RUN` (the same
//! allowlist as vCPU 0). It ends its guest work with an OUT to [`layout::ports::EXIT`], which ends that
//! vCPU only; the thread then blocks on a pipe nobody writes to (thread exit would need system calls
//! the filter refuses) until vCPU 0 ends the process. An unexpected exit of a secondary (fault, HLT,
//! unknown port) parks it the same way, after one line on stderr; a failing `KVM_RUN` (EFAULT once
//! vCPU 0 has unmapped guest memory at the end) parks it silently.
use crate::layout::{self, ports};
use crate::vm::{Vm, VmError};
use kvm_ioctls::{VcpuExit, VcpuFd};
use seccompiler::BpfProgram;
use std::io::Read;

/// Whether a VM with `args` runs its secondary vCPUs: the scenario is `cpu` (the kernel loop every
/// vCPU can run alone; other scenarios need vCPU 0's mailbox and stop port).
pub fn runs_secondaries(args: &str) -> bool {
    args.split_whitespace().next() == Some("cpu")
}

/// How many secondaries of a VM with `vcpus` vCPUs and `args` run guest code.
pub fn running_secondaries(vcpus: u32, args: &str) -> u32 {
    if runs_secondaries(args) {
        vcpus.saturating_sub(1).min(layout::MAX_RUNNING_SECONDARIES)
    } else {
        0
    }
}

/// The registers of secondary `index`: the image entry at CPL3 with IOPL=3 (RFLAGS 0x3002, as vCPU 0
/// gets from its trampoline), its own stack, its index in RSI.
fn secondary_regs(entry: u64, index: u32) -> kvm_bindings::kvm_regs {
    kvm_bindings::kvm_regs {
        rip: entry,
        rsp: layout::secondary_stack_top(index),
        rflags: 0x3002,
        rsi: u64::from(index),
        ..Default::default()
    }
}

impl Vm {
    /// Start the running secondaries ([`running_secondaries`]) of a booted VM on threads of their own,
    /// each confined with `filter` before its first `KVM_RUN`; returns how many started. Call before
    /// [`Vm::run_with`]. The started vCPUs leave `self` (vCPU 0 and parked ones stay).
    ///
    /// # Errors
    /// [`VmError::Build`] (kind setup) naming the register call or the thread spawn that failed.
    pub fn start_secondaries(&mut self, filter: &BpfProgram) -> Result<u32, VmError> {
        let n = running_secondaries(self.config.vcpus, &self.config.args) as usize;
        if n == 0 || self.machine.vcpus.len() <= n {
            return Ok(0);
        }
        let setup = VmError::kvm;
        let base = self.machine.vcpus[0].get_sregs().map_err(setup("KVM_GET_SREGS"))?;
        let mut sregs = crate::arch::sregs(base);
        sregs.cs = crate::arch::USER_CODE.segment(layout::USER_CS);
        sregs.ss = crate::arch::USER_DATA.segment(layout::USER_DS);
        let started: Vec<VcpuFd> = self.machine.vcpus.drain(1..=n).collect();
        for (i, vcpu) in started.into_iter().enumerate() {
            let index = u32::try_from(i + 1).expect("at most MAX_RUNNING_SECONDARIES");
            vcpu.set_sregs(&sregs).map_err(setup("KVM_SET_SREGS (secondary vCPU)"))?;
            vcpu.set_regs(&secondary_regs(self.loaded.entry, index)).map_err(setup("KVM_SET_REGS (secondary vCPU)"))?;
            let (park, park_writer) = std::io::pipe().map_err(|e| spawn_err(&e))?;
            let filter = filter.clone();
            std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || run_secondary(vcpu, index, &filter, park, park_writer))
                .map_err(|e| spawn_err(&e))?;
        }
        Ok(u32::try_from(n).expect("at most MAX_RUNNING_SECONDARIES"))
    }
}

fn spawn_err(e: &std::io::Error) -> VmError {
    let errno = e.raw_os_error().unwrap_or(libc::EAGAIN);
    VmError::kvm("starting a secondary vCPU thread")(kvm_ioctls::Error::new(errno))
}

/// A secondary's thread: confine, run until the guest ends this vCPU, then park forever.
fn run_secondary(
    mut vcpu: VcpuFd,
    index: u32,
    filter: &BpfProgram,
    mut park: std::io::PipeReader,
    _park_writer: std::io::PipeWriter,
) {
    let mut eagain = crate::sys::EagainStreak::default();
    let unexpected = match crate::confine::apply_vcpu_filter(filter) {
        Err(e) => Some(e.to_string()),
        Ok(()) => loop {
            let r = vcpu.run();
            if !matches!(&r, Err(e) if e.errno() == libc::EAGAIN) {
                eagain.reset();
            }
            match r {
                Ok(VcpuExit::IoOut(port, _)) if ports::role(port) == Some(ports::Role::Exit) => break None,
                Err(e) if e.errno() == libc::EAGAIN => {
                    if let Err(stuck) = eagain.again(crate::sys::mono_ns()) {
                        break Some(stuck.to_string());
                    }
                }
                Err(e) if e.errno() == libc::EINTR => {}
                Ok(other) => break Some(format!("{other:?}")),
                // EFAULT while vCPU 0 tears the VM down (guest memory unmapped): the process is ending.
                Err(_) => break None,
            }
        },
    };
    if let Some(why) = unexpected {
        eprintln!("vmct-vmm: secondary vCPU {index} parked after an unexpected exit: {why}");
    }
    // The writer lives in this frame, so this read blocks until the process ends.
    let mut b = [0u8; 1];
    while park.read(&mut b).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cpu_work_runs_secondaries_and_at_most_the_cap() {
        assert_eq!(running_secondaries(2, "cpu --iters 5"), 1);
        assert_eq!(running_secondaries(1, "cpu --iters 5"), 0);
        assert_eq!(running_secondaries(2, "idle --hold-mib 8"), 0);
        assert_eq!(running_secondaries(2, "probe"), 0);
        assert_eq!(running_secondaries(200, "cpu"), layout::MAX_RUNNING_SECONDARIES);
    }

    #[test]
    fn secondary_stacks_are_disjoint_and_below_vcpu0s() {
        let tops: Vec<u64> = (1..=layout::MAX_RUNNING_SECONDARIES).map(layout::secondary_stack_top).collect();
        assert_eq!(tops[0] - layout::SECONDARY_STACK_BYTES, layout::USER_STACK_BOTTOM);
        assert!(tops.windows(2).all(|w| w[1] - w[0] == layout::SECONDARY_STACK_BYTES));
        // vCPU 0 keeps at least 512 KiB above the highest secondary stack.
        assert!(layout::USER_STACK_TOP - tops[tops.len() - 1] >= 512 << 10);
        let r = secondary_regs(layout::IMAGE_BASE, 3);
        assert_eq!((r.rsi, r.rflags & 0x3000), (3, 0x3000));
    }
}
