//! VM snapshots of the bare guest: save a paused VM to a directory, restore a new VM from it.
//!
//! A snapshot directory holds two files:
//! - [`MEMORY_FILE`]: guest RAM as a sparse file of exactly `mem_bytes`. Only pages that are resident
//!   in the VM's memory (`mincore`) and not all-zero are written (`pwrite`); everything else is a hole.
//! - [`STATE_FILE`]: a small JSON [`Header`] (magic, version, VM configuration, and per vCPU the
//!   registers, special registers, FPU/SSE state and the TSC).
//!
//! Saving happens while the guest waits on [`crate::layout::ports::WAIT_STOP`] (see
//! [`crate::layout::wait`] for the two-round protocol):
//! 1. the pending port read is completed with [`crate::layout::wait::RESTORED`] by a `KVM_RUN` with
//!    `immediate_exit` set (KVM's documented way to make the vCPU state consistent before saving it);
//! 2. vCPU state is read, memory and state are written (not fsynced: the page cache is the snapshot's
//!    first home, as with Firecracker's default);
//! 3. the running VM's read result is changed to [`crate::layout::wait::SNAPSHOT_DONE`] and it goes on.
//!
//! Restoring ([`Vm::restore`]) maps [`MEMORY_FILE`] `MAP_PRIVATE` (copy-on-write, nothing is copied up
//! front: pages fault in from the page cache when the guest touches them), so several VMs restored from
//! one snapshot share its page-cache pages until they write them. The vCPUs get the saved state and the
//! guest resumes right after its port read, which returns `RESTORED`.
use crate::builder::VmBuilder;
use crate::error::{ErrorKind, VmError};
use crate::layout::{self, wait};
use crate::loader::Loaded;
use crate::observe::{Phase, Timeline};
use crate::sys;
use crate::vcpu::VMM_RESULT_PREFIX;
use crate::vm::Vm;
use kvm_bindings::{kvm_fpu, kvm_msr_entry, Msrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use workloads::protocol::Message;

mod memory;
mod state;

pub use memory::{map_memory, save_memory};
pub use state::{Fpu, Header, VcpuState};

/// Guest memory file inside a snapshot directory (this name shows in /proc/PID/smaps of restored VMs).
pub const MEMORY_FILE: &str = "vmct-guest.mem";
/// State file inside a snapshot directory.
pub const STATE_FILE: &str = "vmct-state.json";
/// [`Header::magic`].
pub const MAGIC: &str = "vmct-snapshot";
/// [`Header::version`] this VMM writes and reads.
pub const VERSION: u32 = 1;
/// `MSR_IA32_TSC`: saved so the guest clock keeps counting from where it was.
const MSR_IA32_TSC: u32 = 0x10;

/// Why a snapshot could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file of the snapshot could not be created, written or read.
    #[error("microvm: snapshot {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The state file is not a vmct snapshot.
    #[error("microvm: snapshot {path}: not a vmct snapshot (magic {found:?}, expected {MAGIC:?})")]
    Magic {
        /// The state file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The snapshot was written by an incompatible VMM.
    #[error("microvm: snapshot {path}: format version {found}, this VMM reads version {VERSION}")]
    Version {
        /// The state file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The state file is malformed or does not match the memory file.
    #[error("microvm: snapshot {path}: {reason}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A KVM call while saving failed.
    #[error("microvm: snapshot: {what} failed: {source}")]
    Kvm {
        /// The call.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// The vCPU was not where a snapshot can be taken.
    #[error("microvm: snapshot: {0}")]
    State(String),
    /// Reading guest memory failed.
    #[error("microvm: snapshot: guest memory: {0}")]
    Memory(String),
    /// An OS wrapper failed.
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// Building the restored VM failed (KVM, memory slot, vCPU state).
    #[error(transparent)]
    Vm(#[from] VmError),
}

impl SnapshotError {
    /// The exit kind of a VMM whose restore failed this way: the VM's own kind for a KVM or setup
    /// failure, [`ErrorKind::Snapshot`] for an unreadable or unusable snapshot.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Vm(e) => e.kind(),
            SnapshotError::Io { .. }
            | SnapshotError::Magic { .. }
            | SnapshotError::Version { .. }
            | SnapshotError::Format { .. }
            | SnapshotError::Kvm { .. }
            | SnapshotError::State(_)
            | SnapshotError::Memory(_)
            | SnapshotError::Sys(_) => ErrorKind::Snapshot,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Kvm { what, source }
}

/// What [`Vm::save_snapshot`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Guest memory bytes written (holes excluded).
    pub memory_bytes: u64,
    /// Size of the state file.
    pub state_bytes: u64,
    /// Guest RAM pages resident when saving (touched by guest or VMM), 4 KiB each.
    pub resident_pages: u64,
    /// Seconds the vCPU was paused for the save (state + memory written).
    pub pause_s: f64,
}

impl SnapshotInfo {
    /// Total bytes written.
    pub fn bytes(&self) -> u64 {
        self.memory_bytes + self.state_bytes
    }

    /// The protocol lines the VMM prints for a saved snapshot.
    pub fn protocol_lines(&self) -> String {
        // Whole counts print the same as f64 (`{}` of 4096.0 is `4096`) up to 2^53.
        let figures = [
            ("memory_bytes", self.memory_bytes as f64, "bytes"),
            ("resident_pages", self.resident_pages as f64, "pages"),
            ("save_s", self.pause_s, "s"),
            ("bytes", self.bytes() as f64, "bytes"),
        ];
        let mut lines = String::with_capacity(160);
        for (metric, value, unit) in figures {
            let name = format!("{VMM_RESULT_PREFIX}{metric}");
            // Writing into a String cannot fail.
            let _ = Message::Result { name: &name, value, unit }.encode(&mut lines);
        }
        lines
    }
}

/// The protocol line the VMM prints when a snapshot failed (the VM keeps running): `failed`, since
/// saving is something this VMM does and this attempt did not (a full disk, a write error).
pub fn failure_line(e: &SnapshotError) -> String {
    let mut line = String::new();
    let reason = e.to_string();
    let _ = Message::Failed { what: "snapshot", reason: &reason }.encode(&mut line);
    line
}

impl Vm {
    /// Save this VM to `dir` (created if needed). Call only while vCPU 0 sits in a
    /// [`layout::ports::WAIT_STOP`] read whose result was set to [`wait::RESTORED`] (the run loop does
    /// this); afterwards the read returns [`wait::SNAPSHOT_DONE`] to this VM, whether saving worked
    /// or not.
    pub fn save_snapshot(&mut self, dir: &Path) -> Result<SnapshotInfo, SnapshotError> {
        let t0 = sys::mono_ns();
        // 1. Complete the pending port read: KVM_RUN with immediate_exit returns EINTR right after.
        self.machine.vcpus[0].set_kvm_immediate_exit(1);
        let r = self.machine.vcpus[0].run().map(|e| format!("{e:?}"));
        self.machine.vcpus[0].set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(SnapshotError::Kvm { what: "KVM_RUN (immediate exit)", source: e }),
            Ok(exit) => return Err(SnapshotError::State(format!("vCPU exited ({exit}) instead of pausing"))),
        }
        let result = self.write_snapshot(dir, t0);
        // 3. The running VM: its read now returns SNAPSHOT_DONE.
        let mut regs = self.machine.vcpus[0].get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.rax = u64::from(wait::SNAPSHOT_DONE);
        self.machine.vcpus[0].set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
        result
    }

    fn write_snapshot(&mut self, dir: &Path, t0: u64) -> Result<SnapshotInfo, SnapshotError> {
        // 2. vCPU state, then memory, then the state file (a directory without it is no snapshot).
        let mut vcpus = Vec::with_capacity(self.machine.vcpus.len());
        for v in &self.machine.vcpus {
            let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, ..Default::default() }])
                .map_err(|e| SnapshotError::State(format!("MSR list: {e:?}")))?;
            let tsc = match v.get_msrs(&mut msrs) {
                Ok(1) => Some(msrs.as_slice()[0].data),
                _ => None,
            };
            vcpus.push(VcpuState {
                regs: v.get_regs().map_err(kvm_err("KVM_GET_REGS"))?,
                sregs: v.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?,
                fpu: Fpu::from(&v.get_fpu().map_err(kvm_err("KVM_GET_FPU"))?),
                tsc,
            });
        }
        if vcpus[0].regs.rax != u64::from(wait::RESTORED) {
            return Err(SnapshotError::State(format!(
                "vCPU 0 is not in a completed stop-port read (rax 0x{:x}, rip 0x{:x})",
                vcpus[0].regs.rax, vcpus[0].regs.rip
            )));
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mem_bytes = layout::align_up(self.config.mem_bytes, layout::HUGE_PAGE_SIZE);
        let (memory_bytes, resident_pages) = save_memory(&self.machine.mem, mem_bytes, &dir.join(MEMORY_FILE))?;
        let header = Header {
            magic: MAGIC.into(),
            version: VERSION,
            mem_bytes,
            args: self.config.args.clone(),
            probe_mode: self.config.probe_mode,
            test_hook: self.config.test_hook,
            watchdog_ms: self.config.watchdog.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            tsc_khz: self.tsc_khz,
            entry: self.loaded.entry,
            image_end: self.loaded.end,
            memory_bytes,
            taken_mono_ns: t0,
            vcpus,
        };
        let json = header.to_json();
        let path = dir.join(STATE_FILE);
        std::fs::write(&path, &json).map_err(io_err(&path))?;
        Ok(SnapshotInfo {
            dir: dir.to_path_buf(),
            memory_bytes,
            state_bytes: json.len() as u64, // usize to u64: lossless on x86_64
            resident_pages,
            pause_s: sys::mono_ns().saturating_sub(t0) as f64 / 1e9,
        })
    }

    /// A new VM from the snapshot in `dir`, ready to [`Vm::run`]: its memory is the snapshot's memory
    /// file mapped copy-on-write, its vCPUs carry the saved state. `watchdog` overrides the saved one.
    ///
    /// Phases (in [`Vm::timeline`]): `kvm_open`, `vm_create`, `load` (state file read), `memory`,
    /// `vcpu_setup`.
    pub fn restore(dir: &Path, watchdog: Option<Duration>) -> Result<Vm, SnapshotError> {
        let mut timeline = Timeline::default();
        let mut builder = VmBuilder::new(&mut timeline).map_err(VmError::from)?;
        let header = Header::read(dir)?;
        let mut config = header.config();
        if watchdog.is_some() {
            config.watchdog = watchdog;
        }
        timeline.mark(Phase::Load);
        let mem = map_memory(&dir.join(MEMORY_FILE), header.mem_bytes)?;
        builder.memory(mem, header.mem_bytes).map_err(VmError::from)?;
        timeline.mark(Phase::Memory);
        let machine = builder.vcpus(config.vcpus).map_err(VmError::from)?;
        for (v, s) in machine.vcpus.iter().zip(&header.vcpus) {
            v.set_sregs(&s.sregs).map_err(VmError::kvm("KVM_SET_SREGS"))?;
            v.set_regs(&s.regs).map_err(VmError::kvm("KVM_SET_REGS"))?;
            v.set_fpu(&kvm_fpu::from(&s.fpu)).map_err(VmError::kvm("KVM_SET_FPU"))?;
            if let Some(tsc) = s.tsc {
                // Best effort: a guest clock that jumps only affects differences across the restore.
                if let Ok(msrs) =
                    Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, data: tsc, ..Default::default() }])
                {
                    let _ = v.set_msrs(&msrs);
                }
            }
        }
        timeline.mark(Phase::VcpuSetup);
        let loaded = Loaded { entry: header.entry, end: header.image_end };
        Ok(Vm::assemble(machine, config, loaded, header.tsc_khz, timeline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_are_results() {
        let i =
            SnapshotInfo { dir: "/d".into(), memory_bytes: 4096, state_bytes: 100, resident_pages: 3, pause_s: 0.5 };
        assert_eq!(
            i.protocol_lines(),
            "@vmct result snapshot.memory_bytes 4096 bytes\n@vmct result snapshot.resident_pages 3 pages\n\
             @vmct result snapshot.save_s 0.5 s\n@vmct result snapshot.bytes 4196 bytes\n"
        );
        let e = SnapshotError::State("x\ny".into());
        assert_eq!(failure_line(&e), "@vmct failed snapshot microvm: snapshot: x y\n");
    }
}
