//! One bare-guest microVM: its configuration and the boot recipe ([`Vm::boot`]).
//!
//! Boot, in order (each step is a [`Phase`] with a host CLOCK_MONOTONIC timestamp in [`Vm::timeline`]):
//! 1. `kvm_open`, `vm_create`: open /dev/kvm, check it, `KVM_CREATE_VM` ([`VmBuilder::new`]).
//! 2. `memory`: guest RAM as one memfd mapping (pages cost nothing until touched), one memory slot.
//! 3. `load`: the guest image, then GDT, IDT, TSS, exception stubs and page tables (see [`crate::arch`]).
//! 4. `vcpu_setup`: vCPUs ([`VmBuilder::vcpus`]), the boot-info block (TSC frequency, scenario words),
//!    registers so vCPU 0 starts at the image entry at CPL3 with IOPL=3.
//!
//! The run loop ([`crate::vcpu`]) then serves the port map of [`crate::layout::ports`]; the driver
//! that also serves snapshot requests is [`Vm::run`] ([`crate::run`]).
//!
//! vCPU 0 runs the workload. Extra vCPUs are created and configured (their cost is real); with `cpu`
//! work they run the same kernel loop on threads of their own ([`crate::smp`]), otherwise they stay
//! parked: the bare guest has no SMP bring-up.
use crate::arch;
use crate::builder::{Machine, VmBuilder};
use crate::layout::{self, BootInfo, ProbeArea};
use crate::loader::{self, Image, Loaded};
use crate::observe::Phase;
use crate::sys;
use std::path::PathBuf;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub use crate::builder::open_kvm;
pub use crate::error::{exit_code_kind, ErrorKind, VmError};
pub use crate::observe::{CollectHost, Host, HostCommand, Timeline};

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

/// A booted microVM.
pub struct Vm {
    /// vCPUs, VM, KVM and guest memory (in drop order).
    pub(crate) machine: Machine,
    pub(crate) config: VmConfig,
    pub(crate) loaded: Loaded,
    pub(crate) tsc_khz: u32,
    /// Host timestamps of every setup phase.
    pub timeline: Timeline,
    /// The guest's first `@vmct ready` line has been seen (the `ready` phase is reported once).
    pub(crate) ready_seen: bool,
    /// A snapshot asked for: saved at the guest's next stop-port read (see [`layout::wait`]).
    pub(crate) pending_snapshot: Option<PathBuf>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("config", &self.config).field("loaded", &self.loaded).finish()
    }
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
    if usize::try_from(c.test_hook).map_or(true, |h| h >= layout::hooks::NAMES.len()) {
        return Err(VmError::Config(format!("unknown test hook {}", c.test_hook)));
    }
    Ok(mem)
}

pub(crate) fn mem_err(e: impl std::fmt::Display) -> VmError {
    VmError::memory(e)
}

fn setup_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    VmError::kvm(what)
}

impl Vm {
    /// Boot a VM to the point where vCPU 0 is about to run the guest (see the module docs for the
    /// steps). Nothing has run yet.
    pub fn boot(config: VmConfig, image: Image<'_>) -> Result<Vm, VmError> {
        let mut timeline = Timeline::default();
        let mem_bytes = check_config(&config)?;

        // 1. KVM and the VM.
        let mut builder = VmBuilder::new(&mut timeline)?;

        // 2. Guest memory: one memfd-backed mapping, one slot.
        let mem = builder.memfd_memory(c"vmct-guest", mem_bytes)?;
        timeline.mark(Phase::Memory);

        // 3. The image and the system structures.
        let loaded = loader::load(mem, mem_bytes, image)?;
        write_system(mem, mem_bytes)?;
        timeline.mark(Phase::Load);

        // 4. vCPUs, boot info, registers.
        let machine = builder.vcpus(config.vcpus)?;
        let (vcpus, mem) = (&machine.vcpus, &machine.mem);
        let tsc_khz = vcpus[0].get_tsc_khz().unwrap_or(0);
        let mut info = BootInfo {
            magic: layout::BOOT_MAGIC,
            tsc_khz: u64::from(tsc_khz),
            mem_bytes,
            heap_start: loaded.heap_start(),
            heap_end: mem_bytes,
            vcpus: config.vcpus,
            flags: if config.probe_mode { layout::FLAG_PROBE_MODE } else { 0 },
            test_hook: config.test_hook,
            args_len: u32::try_from(config.args.len()).expect("checked: at most ARGS_CAPACITY bytes"),
            probe: ProbeArea::default(),
            args: [0; layout::ARGS_CAPACITY],
        };
        info.args[..config.args.len()].copy_from_slice(config.args.as_bytes());
        mem.write_obj(sys::Plain(info), GuestAddress(layout::BOOT_INFO_ADDR)).map_err(mem_err)?;
        let base = vcpus[0].get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
        let user_sregs = arch::sregs(base);
        // vCPU 0 starts on the ring-0 trampoline, whose `iretq` enters the image at CPL3 with IOPL=3.
        write_iret_frame(mem, loaded.entry, layout::USER_STACK_TOP)?;
        for v in vcpus {
            v.set_sregs(&user_sregs).map_err(setup_err("KVM_SET_SREGS"))?;
        }
        vcpus[0].set_regs(&trampoline_regs()).map_err(setup_err("KVM_SET_REGS"))?;
        timeline.mark(Phase::VcpuSetup);

        Ok(Vm::assemble(machine, config, loaded, tsc_khz, timeline))
    }

    /// A VM from its parts (boot and restore), not yet run.
    pub(crate) fn assemble(machine: Machine, config: VmConfig, loaded: Loaded, tsc_khz: u32, timeline: Timeline) -> Vm {
        Vm { machine, config, loaded, tsc_khz, timeline, ready_seen: false, pending_snapshot: None }
    }

    /// The configuration the VM was booted (or restored) with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The guest's TSC frequency in kHz as KVM reports it (0 if unknown).
    pub fn tsc_khz(&self) -> u32 {
        self.tsc_khz
    }

    /// Where the image was loaded.
    pub fn loaded(&self) -> Loaded {
        self.loaded
    }

    /// vCPU 0's RIP (0 if KVM will not say): for exit errors.
    pub(crate) fn rip(&self) -> u64 {
        self.machine.vcpus[0].get_regs().map(|r| r.rip).unwrap_or(0)
    }
}

/// Registers for the ring-0 trampoline: RIP on the `iretq`, RSP on the IRET frame.
pub(crate) fn trampoline_regs() -> kvm_bindings::kvm_regs {
    kvm_bindings::kvm_regs {
        rip: layout::TRAMPOLINE_ADDR,
        rsp: arch::iret_frame_addr(),
        rflags: 0x2,
        rdi: layout::BOOT_INFO_ADDR,
        ..Default::default()
    }
}

pub(crate) fn write_iret_frame(mem: &GuestMemoryMmap, rip: u64, rsp: u64) -> Result<(), VmError> {
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
        assert!(matches!(Vm::boot(c.clone(), Image::Raw(&[0x90])), Err(VmError::Config(_))));
        c.args = "ready".into();
        c.test_hook = u32::MAX;
        assert!(matches!(Vm::boot(c, Image::Raw(&[0x90])), Err(VmError::Config(_))));
    }
}
