//! What a running VM reports and who receives it, for both guest models: the typed [`Phase`]s with
//! host CLOCK_MONOTONIC timestamps, the [`Timeline`] of a VM's setup phases, the one [`Observer`]
//! trait that receives phases, and the bare model's [`Host`] (observer + guest output + stop/snapshot
//! commands). The linux model's console observer extends [`Observer`] the same way
//! ([`crate::linux::vm::Console`]).
use crate::sys;
use std::path::PathBuf;

/// A VM milestone. The bare model's setup phases are in [`Timeline`]s, its run-loop phases and all
/// linux-model phases go to an [`Observer`] as they happen; each becomes one `@vmct phase NAME NS` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Bare: the VMM process started (before reading its image or snapshot).
    VmmStart,
    /// Bare: /dev/kvm opened and checked.
    KvmOpen,
    /// Bare: `KVM_CREATE_VM` done.
    VmCreate,
    /// Bare: guest memory mapped and registered.
    Memory,
    /// Bare: the image (or a snapshot's state file) loaded.
    Load,
    /// Bare: vCPUs created and configured.
    VcpuSetup,
    /// Bare: the VMM's seccomp filter is in place (just before the first `KVM_RUN`).
    Confine,
    /// Bare: the first VM exit.
    FirstExit,
    /// Bare: the guest's first `@vmct ready` line.
    Ready,
    /// Bare: the guest wrote the exit port.
    Done,
    /// Linux: the VM is built and the vCPU configured (just before the first `KVM_RUN`).
    VmmSetup,
    /// Linux: the first VM exit: the kernel is executing.
    KernelEntry,
    /// Linux: the first byte on the serial console.
    FirstConsoleByte,
    /// Linux: /init wrote the boot-timer port.
    InitStart,
}

impl Phase {
    /// Name used in `@vmct phase` lines (lower case and `_`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::VmmStart => "vmm_start",
            Phase::KvmOpen => "kvm_open",
            Phase::VmCreate => "vm_create",
            Phase::Memory => "memory",
            Phase::Load => "load",
            Phase::VcpuSetup => "vcpu_setup",
            Phase::Confine => "confine",
            Phase::FirstExit => "first_exit",
            Phase::Ready => "ready",
            Phase::Done => "done",
            Phase::VmmSetup => "vmm_setup",
            Phase::KernelEntry => "kernel_entry",
            Phase::FirstConsoleByte => "first_console_byte",
            Phase::InitStart => "init_start",
        }
    }

    /// The `@vmct phase NAME MONO_NS` protocol line (with its newline).
    pub fn protocol_line(self, mono_ns: u64) -> String {
        let mut line = String::with_capacity(48);
        let msg = workloads::protocol::Message::Phase { name: self.as_str(), mono_ns };
        // Writing into a String cannot fail.
        let _ = msg.encode(&mut line);
        line
    }
}

/// Host timestamps of a VM's setup phases, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// (phase, host CLOCK_MONOTONIC ns).
    pub marks: Vec<(Phase, u64)>,
}

impl Timeline {
    /// Record `phase` now; returns the timestamp.
    pub fn mark(&mut self, phase: Phase) -> u64 {
        let ns = sys::mono_ns();
        self.marks.push((phase, ns));
        ns
    }

    /// Timestamp of `phase`, if recorded.
    pub fn get(&self, phase: Phase) -> Option<u64> {
        self.marks.iter().find(|m| m.0 == phase).map(|m| m.1)
    }
}

/// Receives a VM's milestones as they happen (both guest models).
pub trait Observer {
    /// `phase` was reached at host CLOCK_MONOTONIC `mono_ns`.
    fn phase(&mut self, phase: Phase, mono_ns: u64);
}

/// What the host answers while the guest waits on [`crate::layout::ports::WAIT_STOP`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCommand {
    /// End the wait: the guest finishes its scenario.
    Stop,
    /// Save a snapshot of the VM into this directory, then keep waiting.
    Snapshot(PathBuf),
}

/// What the bare model's run loop needs from whoever runs the VM (the VMM process, a test, a bench).
pub trait Host: Observer {
    /// Complete protocol lines the guest sent (newline-terminated).
    fn output(&mut self, lines: &str);
    /// Block until the guest should stop (the guest is waiting on [`crate::layout::ports::WAIT_STOP`]).
    fn wait_for_stop(&mut self);
    /// Block until the host has a command for a guest waiting on [`crate::layout::ports::WAIT_STOP`].
    /// The default only knows [`HostCommand::Stop`] (after [`Host::wait_for_stop`]).
    fn wait_for_command(&mut self) -> HostCommand {
        self.wait_for_stop();
        HostCommand::Stop
    }
}

/// A [`Host`] that collects everything in memory (tests, benches); `wait_for_stop` returns at once.
#[derive(Debug, Default)]
pub struct CollectHost {
    /// All output, concatenated.
    pub output: String,
    /// Phases seen.
    pub phases: Vec<(Phase, u64)>,
}

impl Observer for CollectHost {
    fn phase(&mut self, phase: Phase, mono_ns: u64) {
        self.phases.push((phase, mono_ns));
    }
}

impl Host for CollectHost {
    fn output(&mut self, lines: &str) {
        self.output.push_str(lines);
    }
    fn wait_for_stop(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lines_are_protocol_lines() {
        assert_eq!(Phase::VmCreate.protocol_line(42), "@vmct phase vm_create 42\n");
        for p in [Phase::VmmSetup, Phase::KernelEntry, Phase::FirstConsoleByte, Phase::InitStart, Phase::FirstExit] {
            assert!(p.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            let line = p.protocol_line(7);
            let msg = workloads::protocol::Message::decode(&line).unwrap();
            assert_eq!(msg, workloads::protocol::Message::Phase { name: p.as_str(), mono_ns: 7 });
        }
    }

    #[test]
    fn timeline_keeps_marks_in_order() {
        let mut t = Timeline::default();
        let a = t.mark(Phase::KvmOpen);
        let b = t.mark(Phase::VmCreate);
        assert!(a <= b);
        assert_eq!(t.get(Phase::VmCreate), Some(b));
        assert_eq!(t.get(Phase::Ready), None);
    }
}
