//! One microVM: the boot recipe ([`Vm::boot`]) and the run loop ([`Vm::run`]).
//!
//! Boot, in order (each step is a phase with a host CLOCK_MONOTONIC timestamp in [`Vm::timeline`]):
//! 1. `kvm_open`: open /dev/kvm, check the API version and the capabilities we use.
//! 2. `vm_create`: `KVM_CREATE_VM`.
//! 3. `memory`: guest RAM as one memfd mapping (pages cost nothing until touched), one memory slot.
//! 4. `load`: the guest image, then GDT, IDT, TSS, exception stubs and page tables (see [`crate::arch`]).
//! 5. `vcpu_setup`: vCPUs, the boot-info block (TSC frequency, scenario words), registers so vCPU 0
//!    starts at the image entry at CPL3 with IOPL=3.
//!
//! The run loop then serves the port map of [`crate::layout::ports`] and records `first_exit`, `ready`
//! (the first `@vmct ready` line from the guest) and `done`. Anything else the guest does that leaves
//! the VM (unknown port, MMIO, HLT, shutdown, KVM internal error, a CPU exception, running past the
//! watchdog) ends the VM with a [`VmError`] naming the exit and the guest RIP; nothing the guest does
//! makes the VMM panic.
//!
//! vCPU 0 runs the workload. Extra vCPUs are created and configured (their cost is real); with `cpu`
//! work they run the same kernel loop on threads of their own ([`crate::smp`]), otherwise they stay
//! parked: the bare guest has no SMP bring-up.
use crate::arch;
use crate::layout::{self, ports, probe_exit, BootInfo, ProbeArea};
use crate::loader::{self, Image, LoadError, Loaded};
use crate::snapshot::SnapshotError;
use crate::sys::{self, SysError, ThreadTimer};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use std::path::PathBuf;
use std::time::Duration;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// What to boot.
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// Guest RAM in bytes (rounded up to 2 MiB; between [`layout::MIN_MEM_BYTES`] and
    /// [`layout::MAX_MEM_BYTES`]).
    pub mem_bytes: u64,
    /// Number of vCPUs (vCPU 0 runs the workload; the others run `cpu` work too, see [`crate::smp`], or park).
    pub vcpus: u32,
    /// Scenario words for the guest, e.g. `cpu --iters 1000`.
    pub args: String,
    /// Wall-clock limit for guest execution (time blocked waiting for stop does not count).
    pub watchdog: Option<Duration>,
    /// Probe mode: unknown ports, MMIO and CPU exceptions are recorded and the guest resumed at the
    /// point it registered, instead of ending the VM.
    pub probe_mode: bool,
    /// A [`layout::hooks`] test hook the guest runs instead of its scenario.
    pub test_hook: u32,
}

impl VmConfig {
    /// One vCPU, 64 MiB, a 10-minute watchdog, running `args`.
    pub fn new(args: impl Into<String>) -> VmConfig {
        VmConfig {
            mem_bytes: 64 << 20,
            vcpus: 1,
            args: args.into(),
            watchdog: Some(Duration::from_secs(600)),
            probe_mode: false,
            test_hook: layout::hooks::NONE,
        }
    }
}

/// Why a VM could not boot or ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The configuration is out of range.
    #[error("microvm: invalid configuration: {0}")]
    Config(String),
    /// /dev/kvm does not exist.
    #[error(
        "microvm: /dev/kvm does not exist: this host has no KVM (enable virtualization, load kvm_intel or kvm_amd)"
    )]
    KvmMissing,
    /// /dev/kvm exists but cannot be opened.
    #[error("microvm: cannot open /dev/kvm: {0} (run as root or add the user to the kvm group)")]
    KvmAccess(kvm_ioctls::Error),
    /// The KVM API version is not 12.
    #[error("microvm: KVM API version {0}, expected 12")]
    KvmApi(i32),
    /// A capability we need is missing.
    #[error("microvm: KVM lacks the capability {0}")]
    KvmCap(&'static str),
    /// A KVM ioctl during setup failed.
    #[error("microvm: {what} failed: {source}")]
    Setup {
        /// The step.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be created or written.
    #[error("microvm: guest memory: {0}")]
    Memory(String),
    /// An OS wrapper failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The image could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `KVM_RUN` itself failed.
    #[error("microvm: KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
    /// The guest accessed a port outside the port map.
    #[error("microvm: guest {dir} unknown port 0x{port:x} ({size} bytes) at rip 0x{rip:x}")]
    UnknownPort {
        /// `out` or `in`.
        dir: &'static str,
        /// The port.
        port: u16,
        /// Access size.
        size: usize,
        /// Guest RIP.
        rip: u64,
    },
    /// The guest accessed guest-physical memory with no memory slot (MMIO).
    #[error("microvm: guest MMIO {dir} at 0x{addr:x} ({size} bytes), outside guest RAM, at rip 0x{rip:x}")]
    Mmio {
        /// `read` or `write`.
        dir: &'static str,
        /// Guest physical address.
        addr: u64,
        /// Access size.
        size: usize,
        /// Guest RIP.
        rip: u64,
    },
    /// The vCPU halted (ring-0 `hlt`).
    #[error("microvm: guest halted (HLT exit) at rip 0x{rip:x}")]
    Hlt {
        /// Guest RIP.
        rip: u64,
    },
    /// Shutdown, usually a triple fault.
    #[error("microvm: guest shutdown (triple fault) at rip 0x{rip:x}")]
    Shutdown {
        /// Guest RIP.
        rip: u64,
    },
    /// KVM could not emulate or handle something.
    #[error("microvm: KVM internal error (suberror {suberror}{}) at rip 0x{rip:x}", if *.suberror == 1 { ": emulation failure" } else { "" })]
    Internal {
        /// `kvm_run.internal.suberror`.
        suberror: u32,
        /// Guest RIP.
        rip: u64,
    },
    /// The hardware refused to enter the guest.
    #[error("microvm: VM entry failed (hardware reason 0x{reason:x}) at rip 0x{rip:x}")]
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
        /// Guest RIP.
        rip: u64,
    },
    /// An exit the VMM does not handle.
    #[error("microvm: unexpected exit {exit} at rip 0x{rip:x}")]
    UnexpectedExit {
        /// The exit, as debug text.
        exit: String,
        /// Guest RIP.
        rip: u64,
    },
    /// A CPU exception in the guest, reported by the ring-0 stub.
    #[error("microvm: guest exception {vector} ({name}) error code 0x{error_code:x} at rip 0x{rip:x} (cpl {cpl}, cr2 0x{cr2:x})")]
    GuestException {
        /// Vector.
        vector: u64,
        /// Its name.
        name: &'static str,
        /// Error code (0 if the vector has none).
        error_code: u64,
        /// Faulting RIP.
        rip: u64,
        /// Privilege level the exception came from.
        cpl: u64,
        /// CR2 (the faulting address of a page fault).
        cr2: u64,
    },
    /// The guest ran past the watchdog.
    #[error("microvm: watchdog: guest still running after {limit:?}, killed at rip 0x{rip:x}")]
    Watchdog {
        /// The limit.
        limit: Duration,
        /// Guest RIP when stopped.
        rip: u64,
    },
    /// The mailbox header is out of range.
    #[error("microvm: guest mailbox claims {len} bytes (capacity {})", layout::MAILBOX_CAPACITY)]
    Mailbox {
        /// Claimed length.
        len: u32,
    },
    /// A snapshot to restore from could not be read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The VMM could not confine itself (jail or seccomp filter); the guest never ran.
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
}

impl VmError {
    /// Short kind name: `unknown_port`, `mmio`, `hlt`, `shutdown`, `internal_error`, `fail_entry`,
    /// `unexpected_exit`, `guest_exception`, `watchdog`, `mailbox`, `kvm_unavailable`, `setup`,
    /// `snapshot` (a snapshot to restore from is unreadable), `confine` (jail or seccomp filter failed).
    pub fn kind(&self) -> &'static str {
        match self {
            VmError::UnknownPort { .. } => "unknown_port",
            VmError::Mmio { .. } => "mmio",
            VmError::Hlt { .. } => "hlt",
            VmError::Shutdown { .. } => "shutdown",
            VmError::Internal { .. } => "internal_error",
            VmError::FailEntry { .. } => "fail_entry",
            VmError::UnexpectedExit { .. } => "unexpected_exit",
            VmError::GuestException { .. } => "guest_exception",
            VmError::Watchdog { .. } => "watchdog",
            VmError::Mailbox { .. } => "mailbox",
            VmError::KvmMissing | VmError::KvmAccess(_) | VmError::KvmApi(_) | VmError::KvmCap(_) => "kvm_unavailable",
            VmError::Config(_) => "config",
            VmError::Snapshot(_) => "snapshot",
            VmError::Confine(_) => "confine",
            _ => "setup",
        }
    }

    /// Process exit code of a VMM that ended with this error (see [`exit_code_kind`]).
    pub fn exit_code(&self) -> u8 {
        EXIT_CODES.iter().position(|k| *k == self.kind()).map_or(70, |i| 64 + i as u8)
    }
}

/// Kinds in exit-code order: a VMM that ends with error kind `EXIT_CODES[i]` exits with `64 + i`.
pub const EXIT_CODES: &[&str] = &[
    "config",
    "kvm_unavailable",
    "setup",
    "unknown_port",
    "mmio",
    "hlt",
    "shutdown",
    "internal_error",
    "fail_entry",
    "unexpected_exit",
    "guest_exception",
    "watchdog",
    "mailbox",
    "snapshot",
    "confine",
];

/// The error kind of a VMM process exit code, if it is one of ours.
pub fn exit_code_kind(code: i32) -> Option<&'static str> {
    let i = usize::try_from(code.checked_sub(64)?).ok()?;
    EXIT_CODES.get(i).copied()
}

/// Host timestamps of the VM's phases, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// (phase, host CLOCK_MONOTONIC ns).
    pub marks: Vec<(&'static str, u64)>,
}

impl Timeline {
    /// Record `name` now; returns the timestamp.
    pub fn mark(&mut self, name: &'static str) -> u64 {
        let ns = sys::mono_ns();
        self.marks.push((name, ns));
        ns
    }

    /// Timestamp of `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.marks.iter().find(|m| m.0 == name).map(|m| m.1)
    }
}

/// What the host answers while the guest waits on [`ports::WAIT_STOP`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCommand {
    /// End the wait: the guest finishes its scenario.
    Stop,
    /// Save a snapshot of the VM into this directory, then keep waiting.
    Snapshot(PathBuf),
}

/// What the run loop needs from whoever runs the VM (the VMM process, a test, a bench).
pub trait Host {
    /// A run-loop phase was reached (`first_exit`, `ready`, `done`) at host CLOCK_MONOTONIC `mono_ns`.
    fn phase(&mut self, name: &'static str, mono_ns: u64);
    /// Complete protocol lines the guest sent (newline-terminated).
    fn output(&mut self, lines: &str);
    /// Block until the guest should stop (the guest is waiting on [`ports::WAIT_STOP`]).
    fn wait_for_stop(&mut self);
    /// Block until the host has a command for a guest waiting on [`ports::WAIT_STOP`]. The default
    /// only knows [`HostCommand::Stop`] (after [`Host::wait_for_stop`]).
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
    pub phases: Vec<(&'static str, u64)>,
}

impl Host for CollectHost {
    fn phase(&mut self, name: &'static str, mono_ns: u64) {
        self.phases.push((name, mono_ns));
    }
    fn output(&mut self, lines: &str) {
        self.output.push_str(lines);
    }
    fn wait_for_stop(&mut self) {}
}

/// A booted microVM. Field order is drop order: vCPUs, then the VM fd, then guest memory.
pub struct Vm {
    pub(crate) vcpus: Vec<VcpuFd>,
    _vm: VmFd,
    _kvm: Kvm,
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) config: VmConfig,
    pub(crate) loaded: Loaded,
    pub(crate) tsc_khz: u32,
    /// Host timestamps of every phase so far.
    pub timeline: Timeline,
    ready_seen: bool,
    /// A snapshot asked for: saved at the guest's next stop-port read (see [`layout::wait`]).
    pending_snapshot: Option<PathBuf>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("config", &self.config).field("loaded", &self.loaded).finish()
    }
}

/// Open /dev/kvm and check it is usable (API version 12, user memory regions).
pub fn open_kvm() -> Result<Kvm, VmError> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT => VmError::KvmMissing,
        _ => VmError::KvmAccess(e),
    })?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(VmError::KvmApi(api));
    }
    if !kvm.check_extension(Cap::UserMemory) {
        return Err(VmError::KvmCap("KVM_CAP_USER_MEMORY"));
    }
    Ok(kvm)
}

/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 256;

fn check_config(c: &VmConfig) -> Result<u64, VmError> {
    let mem = layout::align_up(c.mem_bytes, layout::HUGE_PAGE_SIZE);
    if !(layout::MIN_MEM_BYTES..=layout::MAX_MEM_BYTES).contains(&mem) {
        return Err(VmError::Config(format!(
            "guest memory {} bytes is outside {}..={} bytes",
            c.mem_bytes,
            layout::MIN_MEM_BYTES,
            layout::MAX_MEM_BYTES
        )));
    }
    if c.vcpus == 0 || c.vcpus > MAX_VCPUS {
        return Err(VmError::Config(format!("{} vCPUs: expected 1..={MAX_VCPUS}", c.vcpus)));
    }
    if c.args.len() > layout::ARGS_CAPACITY {
        return Err(VmError::Config(format!(
            "scenario words are {} bytes, more than {}",
            c.args.len(),
            layout::ARGS_CAPACITY
        )));
    }
    if c.test_hook as usize >= layout::hooks::NAMES.len() {
        return Err(VmError::Config(format!("unknown test hook {}", c.test_hook)));
    }
    Ok(mem)
}

fn mem_err(e: impl std::fmt::Display) -> VmError {
    VmError::Memory(e.to_string())
}

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

impl Vm {
    /// Boot a VM to the point where vCPU 0 is about to run the guest (see the module docs for the
    /// steps). Nothing has run yet.
    pub fn boot(config: VmConfig, image: Image<'_>) -> Result<Vm, VmError> {
        let mut timeline = Timeline::default();
        let mem_bytes = check_config(&config)?;

        // 1. KVM.
        let kvm = open_kvm()?;
        timeline.mark("kvm_open");

        // 2. The VM.
        let vm = kvm.create_vm().map_err(|source| VmError::Setup { what: "KVM_CREATE_VM", source })?;
        timeline.mark("vm_create");

        // 3. Guest memory: one memfd-backed mapping, one slot.
        let file = sys::memfd(c"vmct-guest", mem_bytes)?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            mem_bytes as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(mem_err)?;
        let host = mem.get_host_address(GuestAddress(0)).map_err(mem_err)?;
        sys::set_memory_slot(&vm, 0, 0, mem_bytes, host)?;
        timeline.mark("memory");

        // 4. The image and the system structures.
        let loaded = loader::load(&mem, mem_bytes, image)?;
        write_system(&mem, mem_bytes)?;
        timeline.mark("load");

        // 5. vCPUs, boot info, registers.
        let mut vcpus = Vec::with_capacity(config.vcpus as usize);
        for id in 0..config.vcpus {
            vcpus.push(vm.create_vcpu(id as u64).map_err(|source| VmError::Setup { what: "KVM_CREATE_VCPU", source })?);
        }
        let tsc_khz = vcpus[0].get_tsc_khz().unwrap_or(0);
        let mut info = BootInfo {
            magic: layout::BOOT_MAGIC,
            tsc_khz: tsc_khz as u64,
            mem_bytes,
            heap_start: loaded.heap_start(),
            heap_end: mem_bytes,
            vcpus: config.vcpus,
            flags: if config.probe_mode { layout::FLAG_PROBE_MODE } else { 0 },
            test_hook: config.test_hook,
            args_len: config.args.len() as u32,
            probe: ProbeArea::default(),
            args: [0; layout::ARGS_CAPACITY],
        };
        info.args[..config.args.len()].copy_from_slice(config.args.as_bytes());
        mem.write_obj(info, GuestAddress(layout::BOOT_INFO_ADDR)).map_err(mem_err)?;
        let base = vcpus[0].get_sregs().map_err(|source| VmError::Setup { what: "KVM_GET_SREGS", source })?;
        let user_sregs = arch::sregs(base);
        // vCPU 0 starts on the ring-0 trampoline, whose `iretq` enters the image at CPL3 with IOPL=3.
        write_iret_frame(&mem, loaded.entry, layout::USER_STACK_TOP)?;
        for v in &vcpus {
            v.set_sregs(&user_sregs).map_err(|source| VmError::Setup { what: "KVM_SET_SREGS", source })?;
        }
        vcpus[0].set_regs(&trampoline_regs()).map_err(|source| VmError::Setup { what: "KVM_SET_REGS", source })?;
        timeline.mark("vcpu_setup");

        Ok(Vm::assemble(vcpus, vm, kvm, mem, config, loaded, tsc_khz, timeline))
    }

    /// A VM from its parts (boot and restore), not yet run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        vcpus: Vec<VcpuFd>,
        vm: VmFd,
        kvm: Kvm,
        mem: GuestMemoryMmap,
        config: VmConfig,
        loaded: Loaded,
        tsc_khz: u32,
        timeline: Timeline,
    ) -> Vm {
        Vm {
            vcpus,
            _vm: vm,
            _kvm: kvm,
            mem,
            config,
            loaded,
            tsc_khz,
            timeline,
            ready_seen: false,
            pending_snapshot: None,
        }
    }

    /// The guest's TSC frequency in kHz as KVM reports it (0 if unknown).
    pub fn tsc_khz(&self) -> u32 {
        self.tsc_khz
    }

    /// Where the image was loaded.
    pub fn loaded(&self) -> Loaded {
        self.loaded
    }

    fn rip(&self) -> u64 {
        self.vcpus[0].get_regs().map(|r| r.rip).unwrap_or(0)
    }

    /// Run vCPU 0 until the guest exits through [`ports::EXIT`] (returns its status) or ends
    /// abnormally (a typed [`VmError`]). Must be called on the thread that will run the vCPU (the
    /// watchdog signals this thread).
    pub fn run(&mut self, host: &mut dyn Host) -> Result<u32, VmError> {
        self.run_with(host, &mut |_| Ok(()))
    }

    /// [`Vm::run`], calling `before_guest` once on this thread after the run loop's own setup (the
    /// watchdog timer) and before the first `KVM_RUN`: where the VMM confines itself and installs its
    /// seccomp filter, so nothing the guest does runs unconfined and setup needs no filter entries.
    pub fn run_with(
        &mut self,
        host: &mut dyn Host,
        before_guest: &mut dyn FnMut(&mut dyn Host) -> Result<(), VmError>,
    ) -> Result<u32, VmError> {
        let watchdog = match self.config.watchdog {
            Some(limit) => Some((ThreadTimer::for_current_thread()?, limit)),
            None => None,
        };
        let arm = |on: bool| -> Result<u64, VmError> {
            if let Some((t, limit)) = &watchdog {
                t.set(on.then_some(*limit), Duration::from_millis(5))?;
                return Ok(sys::mono_ns() + limit.as_nanos() as u64);
            }
            Ok(u64::MAX)
        };
        before_guest(host)?;
        let mut deadline = arm(true)?;
        let mut first = true;
        loop {
            let step = match self.vcpus[0].run() {
                Ok(VcpuExit::IoOut(port, data)) => {
                    let mut b = [0u8; 4];
                    let n = data.len().min(4);
                    b[..n].copy_from_slice(&data[..n]);
                    Step::Out { port, value: u32::from_le_bytes(b), size: data.len() }
                }
                Ok(VcpuExit::IoIn(port, data)) if ports::role(port) == Some(ports::Role::WaitStop) => {
                    arm(false)?;
                    let step = if let Some(dir) = self.pending_snapshot.take() {
                        // Second round: the guest has recorded its checksum. The saved vCPU's read
                        // returns RESTORED; save_snapshot then changes ours to SNAPSHOT_DONE.
                        data.copy_from_slice(&layout::wait::RESTORED.to_le_bytes()[..data.len().min(4)]);
                        Step::Snapshot(dir)
                    } else {
                        let reply = match host.wait_for_command() {
                            HostCommand::Stop => layout::wait::STOP,
                            HostCommand::Snapshot(dir) => {
                                self.pending_snapshot = Some(dir);
                                layout::wait::SNAPSHOT_PREPARE
                            }
                        };
                        data.copy_from_slice(&reply.to_le_bytes()[..data.len().min(4)]);
                        Step::WaitedStop
                    };
                    deadline = arm(true)?;
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
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Interrupted,
                Err(e) => return Err(VmError::Run(e)),
            };
            if first {
                first = false;
                let ns = self.timeline.mark("first_exit");
                host.phase("first_exit", ns);
            }
            match step {
                Step::Out { port, .. } if ports::role(port) == Some(ports::Role::Doorbell) => self.drain(host)?,
                Step::Out { port, value, .. } if ports::role(port) == Some(ports::Role::Exit) => {
                    let ns = self.timeline.mark("done");
                    host.phase("done", ns);
                    self.drain(host)?;
                    return Ok(value);
                }
                Step::Out { port, .. } if ports::role(port) == Some(ports::Role::Fault) => self.fault()?,
                Step::Out { port, size, .. } => {
                    if !self.probe_record(probe_exit::UNKNOWN_PORT, port as u64)? {
                        return Err(VmError::UnknownPort { dir: "out", port, size, rip: self.rip() });
                    }
                }
                Step::In { port, size } => {
                    if !self.probe_record(probe_exit::UNKNOWN_PORT, port as u64)? {
                        return Err(VmError::UnknownPort { dir: "in", port, size, rip: self.rip() });
                    }
                }
                Step::WaitedStop => {}
                Step::Snapshot(dir) => {
                    let lines = match self.save_snapshot(&dir) {
                        Ok(info) => info.protocol_lines(),
                        Err(e) => crate::snapshot::failure_line(&e),
                    };
                    host.output(&lines);
                }
                Step::Mmio { addr, write, size } => {
                    if !self.probe_record(probe_exit::MMIO, addr)? {
                        let dir = if write { "write" } else { "read" };
                        return Err(VmError::Mmio { dir, addr, size, rip: self.rip() });
                    }
                }
                Step::Hlt => return Err(VmError::Hlt { rip: self.rip() }),
                Step::Shutdown => return Err(VmError::Shutdown { rip: self.rip() }),
                Step::Internal => {
                    let suberror = sys::internal_error_suberror(self.vcpus[0].get_kvm_run());
                    return Err(VmError::Internal { suberror, rip: self.rip() });
                }
                Step::FailEntry(reason) => return Err(VmError::FailEntry { reason, rip: self.rip() }),
                Step::Other(exit) => return Err(VmError::UnexpectedExit { exit, rip: self.rip() }),
                Step::Interrupted => {
                    if let Some((_, limit)) = &watchdog {
                        if sys::mono_ns() >= deadline {
                            return Err(VmError::Watchdog { limit: *limit, rip: self.rip() });
                        }
                    }
                }
            }
        }
    }

    /// Forward the mailbox's lines to the host and empty it.
    fn drain(&mut self, host: &mut dyn Host) -> Result<(), VmError> {
        let len: u32 = self.mem.read_obj(GuestAddress(layout::MAILBOX_ADDR)).map_err(mem_err)?;
        if len == 0 {
            return Ok(());
        }
        if len as u64 > layout::MAILBOX_CAPACITY {
            return Err(VmError::Mailbox { len });
        }
        let mut buf = vec![0u8; len as usize];
        self.mem.read_slice(&mut buf, GuestAddress(layout::MAILBOX_TEXT)).map_err(mem_err)?;
        self.mem.write_obj(0u32, GuestAddress(layout::MAILBOX_ADDR)).map_err(mem_err)?;
        let text = String::from_utf8_lossy(&buf);
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.lines() {
            if !self.ready_seen && line == "@vmct ready" {
                self.ready_seen = true;
                let ns = self.timeline.mark("ready");
                host.phase("ready", ns);
            }
            // Phase lines carry host timestamps: only the VMM writes them.
            if line.starts_with("@vmct phase") || line.starts_with("@vmct result snapshot.") {
                out.push_str("guest sent a VMM-only line (dropped): ");
            }
            out.push_str(line);
            out.push('\n');
        }
        host.output(&out);
        Ok(())
    }

    /// Handle a report from the ring-0 exception stub.
    fn fault(&mut self) -> Result<(), VmError> {
        let regs = self.vcpus[0].get_regs().map_err(|source| VmError::Setup { what: "KVM_GET_REGS", source })?;
        let mut frame = [0u64; 7];
        for (i, w) in frame.iter_mut().enumerate() {
            *w = self.mem.read_obj(GuestAddress(regs.rsp.wrapping_add(8 * i as u64))).unwrap_or(0);
        }
        let [vector, error_code, rip, cs, ..] = frame;
        let cr2 = self.vcpus[0].get_sregs().map(|s| s.cr2).unwrap_or(0);
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
        write_iret_frame(&self.mem, area.resume_rip, area.resume_rsp)?;
        self.vcpus[0].set_regs(&trampoline_regs()).map_err(|source| VmError::Setup { what: "KVM_SET_REGS", source })?;
        Ok(())
    }

    fn probe_area(&self) -> Result<ProbeArea, VmError> {
        self.mem.read_obj(GuestAddress(layout::BOOT_INFO_ADDR + layout::PROBE_AREA_OFFSET)).map_err(mem_err)
    }

    fn write_probe(&self, area: ProbeArea) -> Result<(), VmError> {
        self.mem.write_obj(area, GuestAddress(layout::BOOT_INFO_ADDR + layout::PROBE_AREA_OFFSET)).map_err(mem_err)
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

/// Registers for the ring-0 trampoline: RIP on the `iretq`, RSP on the IRET frame.
fn trampoline_regs() -> kvm_bindings::kvm_regs {
    kvm_bindings::kvm_regs {
        rip: layout::TRAMPOLINE_ADDR,
        rsp: arch::iret_frame_addr(),
        rflags: 0x2,
        rdi: layout::BOOT_INFO_ADDR,
        ..Default::default()
    }
}

fn write_iret_frame(mem: &GuestMemoryMmap, rip: u64, rsp: u64) -> Result<(), VmError> {
    let frame: Vec<u8> = arch::iret_frame(rip, rsp).iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&frame, GuestAddress(arch::iret_frame_addr())).map_err(mem_err)
}

/// Write GDT, IDT, TSS, trampoline, exception stubs and page tables into guest memory.
fn write_system(mem: &GuestMemoryMmap, mem_bytes: u64) -> Result<(), VmError> {
    let words = |w: &[u64]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    mem.write_slice(&words(&arch::gdt()), GuestAddress(layout::GDT_ADDR)).map_err(mem_err)?;
    mem.write_slice(&words(&arch::idt()), GuestAddress(layout::IDT_ADDR)).map_err(mem_err)?;
    mem.write_slice(&arch::tss(), GuestAddress(layout::TSS_ADDR)).map_err(mem_err)?;
    mem.write_slice(&arch::TRAMPOLINE, GuestAddress(layout::TRAMPOLINE_ADDR)).map_err(mem_err)?;
    mem.write_slice(&arch::stubs(), GuestAddress(layout::STUBS_ADDR)).map_err(mem_err)?;
    for (addr, table) in arch::page_tables(mem_bytes) {
        mem.write_slice(&words(&table[..]), GuestAddress(addr)).map_err(mem_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_before_touching_kvm() {
        let mut c = VmConfig::new("ready");
        c.mem_bytes = 1 << 20;
        assert!(matches!(Vm::boot(c.clone(), Image::Raw(&[0x90])), Err(VmError::Config(_))));
        c.mem_bytes = 64 << 20;
        c.vcpus = 0;
        assert!(matches!(Vm::boot(c.clone(), Image::Raw(&[0x90])), Err(VmError::Config(_))));
        c.vcpus = 1;
        c.args = "x".repeat(layout::ARGS_CAPACITY + 1);
        assert!(matches!(Vm::boot(c, Image::Raw(&[0x90])), Err(VmError::Config(_))));
    }

    #[test]
    fn exit_errors_name_the_exit_and_rip_and_map_to_exit_codes() {
        let e = VmError::UnknownPort { dir: "out", port: 0x1234, size: 1, rip: 0x20_0010 };
        assert_eq!(e.to_string(), "microvm: guest out unknown port 0x1234 (1 bytes) at rip 0x200010");
        assert_eq!(exit_code_kind(e.exit_code() as i32), Some("unknown_port"));
        let e = VmError::GuestException {
            vector: 14,
            name: arch::vector_name(14),
            error_code: 4,
            rip: 0x20_1000,
            cpl: 3,
            cr2: 0xdead_0000,
        };
        assert!(e.to_string().contains("#PF page fault") && e.to_string().contains("cr2 0xdead0000"), "{e}");
        assert_eq!(exit_code_kind(e.exit_code() as i32), Some("guest_exception"));
        let e = VmError::Internal { suberror: 1, rip: 5 };
        assert!(e.to_string().contains("emulation failure"));
        let e = VmError::Watchdog { limit: Duration::from_millis(200), rip: 0x20_0000 };
        assert_eq!(exit_code_kind(e.exit_code() as i32), Some("watchdog"));
        for k in EXIT_CODES {
            let code = 64 + EXIT_CODES.iter().position(|x| x == k).unwrap() as i32;
            assert_eq!(exit_code_kind(code), Some(*k));
        }
        assert_eq!(exit_code_kind(0), None);
        assert_eq!(exit_code_kind(1), None);
    }

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

    /// Tests needing /dev/kvm: skip with a reason, or fail when `VMCT_REQUIRE_PRIVILEGED=1` (CI).
    fn kvm_gate(test: &str) -> bool {
        match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            Ok(_) => true,
            Err(e) if std::env::var("VMCT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") => {
                panic!("{test}: needs /dev/kvm ({e}), and VMCT_REQUIRE_PRIVILEGED=1 forbids skipping")
            }
            Err(e) => {
                eprintln!(
                    "skipped {test}: needs /dev/kvm ({e}) (set VMCT_REQUIRE_PRIVILEGED=1 to make this a failure)"
                );
                false
            }
        }
    }

    fn run_raw(code: &[u8], watchdog_ms: u64) -> (Result<u32, VmError>, CollectHost) {
        let mut c = VmConfig::new("ready");
        c.mem_bytes = 8 << 20;
        c.watchdog = Some(Duration::from_millis(watchdog_ms));
        let mut vm = Vm::boot(c, Image::Raw(code)).unwrap();
        let mut host = CollectHost::default();
        (vm.run(&mut host), host)
    }

    const EXIT_7: &[u8] = &[0xb8, 7, 0, 0, 0, 0x66, 0xba, 0x01, 0x06, 0xef]; // mov eax,7; mov dx,0x601; out dx,eax

    #[test]
    fn raw_guest_exits_through_the_exit_port_with_phases() {
        if !kvm_gate("raw_guest_exits_through_the_exit_port_with_phases") {
            return;
        }
        let (r, host) = run_raw(EXIT_7, 5000);
        assert_eq!(r.unwrap(), 7);
        let names: Vec<_> = host.phases.iter().map(|p| p.0).collect();
        assert_eq!(names, ["first_exit", "done"]);
    }

    #[test]
    fn misbehaving_raw_guests_end_with_typed_errors() {
        if !kvm_gate("misbehaving_raw_guests_end_with_typed_errors") {
            return;
        }
        let ud2 = [0x0f, 0x0b];
        match run_raw(&ud2, 5000).0 {
            Err(VmError::GuestException { vector: 6, rip, cpl: 3, .. }) => assert_eq!(rip, layout::IMAGE_BASE),
            other => panic!("ud2: {other:?}"),
        }
        let port = [0x66, 0xba, 0x04, 0x06, 0xee]; // mov dx,0x604; out dx,al
        match run_raw(&port, 5000).0 {
            Err(VmError::UnknownPort { port: 0x604, dir: "out", .. }) => {}
            other => panic!("port: {other:?}"),
        }
        let mut unmapped = vec![0x48, 0xa1]; // movabs rax, [0x40_0000_0000]
        unmapped.extend_from_slice(&0x40_0000_0000u64.to_le_bytes());
        match run_raw(&unmapped, 5000).0 {
            Err(VmError::GuestException { vector: 14, cr2: 0x40_0000_0000, .. }) => {}
            other => panic!("unmapped: {other:?}"),
        }
        let mut mmio = vec![0xa2]; // movabs [8 MiB], al: the MMIO window above 8 MiB of RAM
        mmio.extend_from_slice(&(8u64 << 20).to_le_bytes());
        match run_raw(&mmio, 5000).0 {
            Err(VmError::Mmio { addr, dir: "write", .. }) => assert_eq!(addr, 8 << 20),
            other => panic!("mmio: {other:?}"),
        }
        let t = std::time::Instant::now();
        match run_raw(&[0xeb, 0xfe], 200).0 {
            Err(VmError::Watchdog { rip, .. }) => assert_eq!(rip, layout::IMAGE_BASE),
            other => panic!("loop: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(3), "watchdog took {:?}", t.elapsed());
    }
}
