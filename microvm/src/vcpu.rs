//! The bare guest's vCPU loop: one `KVM_RUN` and its exit at a time ([`Vm::run_once`]).
//!
//! [`Vm::start`] makes the loop's state ([`VcpuRun`]: the watchdog on this thread) and calls the
//! caller's `before_guest` hook (where the VMM installs its seccomp filter); each
//! [`Vm::run_once`] then runs vCPU 0 until its next exit, serves it and returns a [`VcpuEvent`]:
//! `Handled` (go on), `Exited` (the guest wrote the exit port) or `SnapshotRequested` (the guest is
//! parked in its stop-port read and the host asked for a snapshot). Snapshot requests are served by
//! the caller, outside this loop ([`crate::run`]), so this module knows nothing of snapshots.
//!
//! The loop serves the port map of [`crate::layout::ports`] and reports [`Phase::FirstExit`],
//! [`Phase::Ready`] (the first `@vmct ready` line from the guest) and [`Phase::Done`]. Anything else
//! the guest does that leaves the VM (unknown port, MMIO, HLT, shutdown, KVM internal error, a CPU
//! exception, running past the watchdog) ends the VM with a [`VmError`] naming the exit and the guest
//! RIP; nothing the guest does makes the VMM panic.
use crate::arch;
use crate::error::VmError;
use crate::layout::{self, ports, probe_exit, ProbeArea};
use crate::observe::{Host, HostCommand, Phase};
use crate::sys::{self, Watchdog};
use crate::vm::{mem_err, trampoline_regs, write_iret_frame, Vm};
use kvm_ioctls::VcpuExit;
use std::path::PathBuf;
use vm_memory::{Bytes, GuestAddress};
use workloads::protocol::Message;

/// Metric-name prefix of the `@vmct result` lines only the VMM writes (its snapshot figures): the
/// guest's lines with it are marked as forged, like its `phase` lines.
pub const VMM_RESULT_PREFIX: &str = "snapshot.";

/// The VM-exit kinds the run loop handles ([`HANDLED_EXITS`]); every other exit ends the VM as
/// `unexpected_exit`. Handled means "serviced or turned into a typed error", e.g. an MMIO access is
/// handled by ending the VM ([`VmError::Mmio`]), not by emulating a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// `KVM_EXIT_IO`, OUT: the port map.
    IoOut,
    /// `KVM_EXIT_IO`, IN: the port map.
    IoIn,
    /// `KVM_EXIT_MMIO`, read: ends the VM (recorded in probe mode).
    MmioRead,
    /// `KVM_EXIT_MMIO`, write: ends the VM (recorded in probe mode).
    MmioWrite,
    /// `KVM_EXIT_HLT`: ends the VM.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`: ends the VM.
    Shutdown,
    /// `KVM_EXIT_INTERNAL_ERROR`: ends the VM.
    InternalError,
    /// `KVM_EXIT_FAIL_ENTRY`: ends the VM.
    FailEntry,
}

impl ExitKind {
    /// Field name (`io_out`, `mmio_read`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoOut => "io_out",
            ExitKind::IoIn => "io_in",
            ExitKind::MmioRead => "mmio_read",
            ExitKind::MmioWrite => "mmio_write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::InternalError => "internal_error",
            ExitKind::FailEntry => "fail_entry",
        }
    }
}

/// Every [`ExitKind`]: the exits the run loop handles (see [`Step::kind`], which maps each step of
/// the loop to its kind; a test checks both agree).
pub const HANDLED_EXITS: [ExitKind; 8] = [
    ExitKind::IoOut,
    ExitKind::IoIn,
    ExitKind::MmioRead,
    ExitKind::MmioWrite,
    ExitKind::Hlt,
    ExitKind::Shutdown,
    ExitKind::InternalError,
    ExitKind::FailEntry,
];

/// What one [`Vm::run_once`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    /// The exit was served (or `KVM_RUN` was interrupted before the watchdog's limit): run again.
    Handled,
    /// The guest wrote the exit port with this status.
    Exited(u32),
    /// The host asked for a snapshot into this directory and vCPU 0 sits in a completed stop-port
    /// read (see [`layout::wait`]): the caller saves it, then runs again.
    SnapshotRequested(PathBuf),
}

/// The run loop's state between [`Vm::run_once`] calls.
#[derive(Debug)]
pub struct VcpuRun {
    watchdog: Option<Watchdog>,
    first_exit_seen: bool,
    eagain: sys::EagainStreak,
}

impl VcpuRun {
    fn arm(&mut self) -> Result<(), VmError> {
        match &mut self.watchdog {
            Some(w) => Ok(w.arm()?),
            None => Ok(()),
        }
    }

    fn disarm(&mut self) -> Result<(), VmError> {
        match &mut self.watchdog {
            Some(w) => Ok(w.disarm()?),
            None => Ok(()),
        }
    }
}

/// Owned summary of one vCPU exit (so the vCPU is not borrowed while we handle it).
enum Step {
    Out { port: u16, value: u32, size: usize },
    In { port: u16, size: usize },
    WaitedStop,
    Snapshot(PathBuf),
    Mmio { addr: u64, write: bool, size: usize },
    Hlt,
    Shutdown,
    Internal,
    FailEntry(u64),
    Other(String),
    Interrupted,
}

impl Step {
    /// The exit kind this step handles; None for an unhandled exit or an interrupted `KVM_RUN`.
    /// The bridge between the run loop's steps and [`HANDLED_EXITS`] (checked by a test).
    #[cfg_attr(not(test), allow(dead_code))]
    fn kind(&self) -> Option<ExitKind> {
        Some(match self {
            Step::Out { .. } => ExitKind::IoOut,
            Step::In { .. } | Step::WaitedStop | Step::Snapshot(_) => ExitKind::IoIn,
            Step::Mmio { write: false, .. } => ExitKind::MmioRead,
            Step::Mmio { write: true, .. } => ExitKind::MmioWrite,
            Step::Hlt => ExitKind::Hlt,
            Step::Shutdown => ExitKind::Shutdown,
            Step::Internal => ExitKind::InternalError,
            Step::FailEntry(_) => ExitKind::FailEntry,
            Step::Other(_) | Step::Interrupted => return None,
        })
    }
}

/// The little-endian bytes of a port-read reply, cut to the access size.
fn reply(data: &mut [u8], value: u32) {
    let n = data.len().min(4);
    data[..n].copy_from_slice(&value.to_le_bytes()[..n]);
}

impl Vm {
    /// Prepare the run loop on this thread (the watchdog signals this thread), then call `before_guest`
    /// once, after the loop's own setup and before the first `KVM_RUN`: where the VMM confines itself
    /// and installs its seccomp filter, so nothing the guest does runs unconfined and setup needs no
    /// filter entries. The watchdog is armed last.
    pub fn start(
        &mut self,
        host: &mut dyn Host,
        before_guest: &mut dyn FnMut(&mut dyn Host) -> Result<(), VmError>,
    ) -> Result<VcpuRun, VmError> {
        let watchdog = match self.config.watchdog {
            Some(limit) => Some(Watchdog::for_current_thread(limit)?),
            None => None,
        };
        let mut run = VcpuRun { watchdog, first_exit_seen: false, eagain: sys::EagainStreak::default() };
        before_guest(host)?;
        run.arm()?;
        Ok(run)
    }

    /// Run vCPU 0 to its next exit and serve it.
    pub fn run_once(&mut self, run: &mut VcpuRun, host: &mut dyn Host) -> Result<VcpuEvent, VmError> {
        let step = match self.machine.vcpus[0].run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                Step::Out { port, value: u32::from_le_bytes(b), size: data.len() }
            }
            Ok(VcpuExit::IoIn(port, data)) if ports::role(port) == Some(ports::Role::WaitStop) => {
                run.disarm()?;
                let step = if let Some(dir) = self.pending_snapshot.take() {
                    // Second round: the guest has recorded its checksum. The saved vCPU's read
                    // returns RESTORED; saving then changes ours to SNAPSHOT_DONE.
                    reply(data, layout::wait::RESTORED);
                    Step::Snapshot(dir)
                } else {
                    let value = match host.wait_for_command() {
                        HostCommand::Stop => layout::wait::STOP,
                        HostCommand::Snapshot(dir) => {
                            self.pending_snapshot = Some(dir);
                            layout::wait::SNAPSHOT_PREPARE
                        }
                    };
                    reply(data, value);
                    Step::WaitedStop
                };
                run.arm()?;
                step
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                data.fill(0xff);
                Step::In { port, size: data.len() }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                data.fill(0xff);
                Step::Mmio { addr, write: false, size: data.len() }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => Step::Mmio { addr, write: true, size: data.len() },
            Ok(VcpuExit::Hlt) => Step::Hlt,
            Ok(VcpuExit::Shutdown) => Step::Shutdown,
            Ok(VcpuExit::InternalError) => Step::Internal,
            Ok(VcpuExit::FailEntry(reason, _)) => Step::FailEntry(reason),
            Ok(other) => Step::Other(format!("{other:?}")),
            Err(e) if e.errno() == libc::EAGAIN => {
                run.eagain.again(sys::mono_ns()).map_err(VmError::Stuck)?;
                Step::Interrupted
            }
            Err(e) if e.errno() == libc::EINTR => Step::Interrupted,
            Err(e) => return Err(VmError::Run(e)),
        };
        if !matches!(step, Step::Interrupted) {
            run.eagain.reset();
        }
        if !run.first_exit_seen {
            run.first_exit_seen = true;
            let ns = self.timeline.mark(Phase::FirstExit);
            host.phase(Phase::FirstExit, ns);
        }
        match step {
            Step::Out { port, .. } if ports::role(port) == Some(ports::Role::Doorbell) => self.drain(host)?,
            Step::Out { port, value, .. } if ports::role(port) == Some(ports::Role::Exit) => {
                let ns = self.timeline.mark(Phase::Done);
                host.phase(Phase::Done, ns);
                self.drain(host)?;
                return Ok(VcpuEvent::Exited(value));
            }
            Step::Out { port, .. } if ports::role(port) == Some(ports::Role::Fault) => self.fault()?,
            Step::Out { port, size, .. } => {
                if !self.probe_record(probe_exit::UNKNOWN_PORT, u64::from(port))? {
                    return Err(VmError::UnknownPort { dir: "out", port, size, rip: self.rip() });
                }
            }
            Step::In { port, size } => {
                if !self.probe_record(probe_exit::UNKNOWN_PORT, u64::from(port))? {
                    return Err(VmError::UnknownPort { dir: "in", port, size, rip: self.rip() });
                }
            }
            Step::WaitedStop => {}
            Step::Snapshot(dir) => return Ok(VcpuEvent::SnapshotRequested(dir)),
            Step::Mmio { addr, write, size } => {
                if !self.probe_record(probe_exit::MMIO, addr)? {
                    let dir = if write { "write" } else { "read" };
                    return Err(VmError::Mmio { dir, addr, size, rip: self.rip() });
                }
            }
            Step::Hlt => return Err(VmError::Hlt { rip: self.rip() }),
            Step::Shutdown => return Err(VmError::Shutdown { rip: self.rip() }),
            Step::Internal => {
                let suberror = sys::internal_error_suberror(self.machine.vcpus[0].get_kvm_run());
                return Err(VmError::Internal { suberror, rip: self.rip() });
            }
            Step::FailEntry(reason) => return Err(VmError::FailEntry { reason, rip: self.rip() }),
            Step::Other(exit) => return Err(VmError::UnexpectedExit { exit, rip: self.rip() }),
            Step::Interrupted => {
                if let Some(w) = &run.watchdog {
                    if w.expired() {
                        return Err(VmError::Watchdog { limit: w.limit(), rip: self.rip() });
                    }
                }
            }
        }
        Ok(VcpuEvent::Handled)
    }

    /// Forward the mailbox's lines to the host and empty it.
    fn drain(&mut self, host: &mut dyn Host) -> Result<(), VmError> {
        let mem = &self.machine.mem;
        let len: u32 = mem.read_obj(GuestAddress(layout::MAILBOX_ADDR)).map_err(mem_err)?;
        if len == 0 {
            return Ok(());
        }
        let n = usize::try_from(len).ok().filter(|n| *n as u64 <= layout::MAILBOX_CAPACITY);
        let Some(n) = n else {
            return Err(VmError::Mailbox { len });
        };
        let mut buf = vec![0u8; n];
        mem.read_slice(&mut buf, GuestAddress(layout::MAILBOX_TEXT)).map_err(mem_err)?;
        mem.write_obj(0u32, GuestAddress(layout::MAILBOX_ADDR)).map_err(mem_err)?;
        let text = String::from_utf8_lossy(&buf);
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.lines() {
            match Message::decode(line) {
                Ok(Message::Ready) if !self.ready_seen => {
                    self.ready_seen = true;
                    let ns = self.timeline.mark(Phase::Ready);
                    host.phase(Phase::Ready, ns);
                }
                // Phase lines carry host timestamps and snapshot results are the VMM's: only the VMM
                // writes them.
                Ok(Message::Phase { .. }) => out.push_str("guest sent a VMM-only line (dropped): "),
                Ok(Message::Result { name, .. }) if name.starts_with(VMM_RESULT_PREFIX) => {
                    out.push_str("guest sent a VMM-only line (dropped): ")
                }
                _ => {}
            }
            out.push_str(line);
            out.push('\n');
        }
        host.output(&out);
        Ok(())
    }

    /// Handle a report from the ring-0 exception stub.
    fn fault(&mut self) -> Result<(), VmError> {
        let vcpu = &self.machine.vcpus[0];
        let regs = vcpu.get_regs().map_err(VmError::kvm("KVM_GET_REGS"))?;
        let mut frame = [0u64; 7];
        for (i, w) in (0u64..).zip(frame.iter_mut()) {
            *w = self.machine.mem.read_obj(GuestAddress(regs.rsp.wrapping_add(8 * i))).unwrap_or(0);
        }
        let [vector, error_code, rip, cs, ..] = frame;
        let cr2 = vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
        let err =
            VmError::GuestException { vector, name: arch::vector_name(vector), error_code, rip, cpl: cs & 3, cr2 };
        let area = self.probe_area()?;
        if !self.config.probe_mode || area.resume_rip == 0 || cs & 3 != 3 {
            return Err(err);
        }
        // Resume the probe at the point it registered, back at CPL3 on its own stack: we are at CPL0
        // in the stub, so go through the trampoline again.
        self.write_probe(ProbeArea {
            resume_rip: 0,
            resume_rsp: 0,
            exit_kind: probe_exit::EXCEPTION,
            value: vector,
            rip,
        })?;
        write_iret_frame(&self.machine.mem, area.resume_rip, area.resume_rsp)?;
        self.machine.vcpus[0].set_regs(&trampoline_regs()).map_err(VmError::kvm("KVM_SET_REGS"))?;
        Ok(())
    }

    fn probe_area(&self) -> Result<ProbeArea, VmError> {
        let addr = GuestAddress(layout::BOOT_INFO_ADDR + layout::PROBE_AREA_OFFSET);
        let area: sys::Plain<ProbeArea> = self.machine.mem.read_obj(addr).map_err(mem_err)?;
        Ok(area.0)
    }

    fn write_probe(&self, area: ProbeArea) -> Result<(), VmError> {
        let addr = GuestAddress(layout::BOOT_INFO_ADDR + layout::PROBE_AREA_OFFSET);
        self.machine.mem.write_obj(sys::Plain(area), addr).map_err(mem_err)
    }

    /// In probe mode with a probe armed, record an exit the guest survives (the access completes:
    /// OUT is dropped, IN and MMIO reads return all-ones); returns false when the exit must end the VM.
    fn probe_record(&mut self, exit_kind: u64, value: u64) -> Result<bool, VmError> {
        if !self.config.probe_mode {
            return Ok(false);
        }
        let area = self.probe_area()?;
        if area.resume_rip == 0 {
            return Ok(false);
        }
        let rip = self.rip();
        self.write_probe(ProbeArea { exit_kind, value, rip, ..area })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_exit_table_is_what_the_run_loop_steps_handle() {
        let steps = [
            Step::Out { port: 0, value: 0, size: 1 },
            Step::In { port: 0, size: 1 },
            Step::Mmio { addr: 0, write: false, size: 1 },
            Step::Mmio { addr: 0, write: true, size: 1 },
            Step::Hlt,
            Step::Shutdown,
            Step::Internal,
            Step::FailEntry(0),
        ];
        let kinds: Vec<ExitKind> = steps.iter().filter_map(Step::kind).collect();
        assert_eq!(kinds, HANDLED_EXITS.to_vec());
        assert_eq!(Step::Other("x".into()).kind(), None);
        assert_eq!(Step::WaitedStop.kind(), Some(ExitKind::IoIn));
    }

    #[test]
    fn port_replies_are_cut_to_the_access_size() {
        let mut one = [0u8; 1];
        reply(&mut one, 0x1234_5678);
        assert_eq!(one, [0x78]);
        let mut four = [0u8; 4];
        reply(&mut four, 0x1234_5678);
        assert_eq!(four, [0x78, 0x56, 0x34, 0x12]);
    }
}
