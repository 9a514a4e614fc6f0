//! Guest physical memory layout and port map of the bare guest model: the one place these numbers live.
//!
//! The bare guest runs at CPL3 with identity-mapped memory (guest virtual = guest physical). The VMM
//! builds everything below [`IMAGE_BASE`]; the guest ELF is linked at [`IMAGE_BASE`] and its heap runs
//! from the end of the image (rounded up to 2 MiB) to the end of guest RAM.
//!
//! ```text
//! 0x0000_0000  not mapped (null guard)
//! 0x0000_1000  GDT                       supervisor
//! 0x0000_2000  IDT (256 gates)           supervisor
//! 0x0000_3000  TSS (RSP0 = KERNEL_STACK_TOP) + I/O permission bitmap (8 KiB + 1)  supervisor
//! 0x0000_5800  iretq trampoline (ring 0)  supervisor
//! 0x0000_6000  exception stubs (ring 0, 16 bytes per vector)  supervisor
//! 0x0000_7000  kernel stack (2 pages, used by exception delivery and the trampoline)  supervisor
//! 0x0000_9000  boot info (BootInfo)      user read/write
//! 0x0000_a000  mailbox (protocol lines)  user read/write, 32 KiB
//! 0x0001_2000  page tables: PML4, PDPT, low page table, one PD per GiB  supervisor
//! 0x0010_0000  user stack (1 MiB, grows down from 0x20_0000)  user read/write
//! 0x0020_0000  guest image (ELF PT_LOAD segments), then heap up to the end of RAM  user, 2 MiB pages
//! RAM end      MMIO window: 2 MiB mapped in the page tables but backed by no memory slot
//! ```
//!
//! The first 2 MiB use 4 KiB pages (so the null page and the VMM's structures can be protected from
//! the guest); the rest uses 2 MiB pages. Anything above the MMIO window is not mapped: a guest access
//! there is a page fault, reported through the exception stubs.
//!
//! This module is shared with the guest (`workloads/guest` depends on this crate by path), so it uses
//! nothing but `core`.

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a large (2 MiB) page: the mapping granularity above [`LOW_MAP_END`].
pub const HUGE_PAGE_SIZE: u64 = 0x20_0000;
/// End of the region mapped with 4 KiB pages.
pub const LOW_MAP_END: u64 = HUGE_PAGE_SIZE;
/// One GiB: the span of one page directory.
pub const GIB: u64 = 1 << 30;

/// Global descriptor table.
pub const GDT_ADDR: u64 = 0x1000;
/// Interrupt descriptor table (256 16-byte gates).
pub const IDT_ADDR: u64 = 0x2000;
/// 64-bit task state segment (only RSP0 is used).
pub const TSS_ADDR: u64 = 0x3000;
/// Offset of the I/O permission bitmap in the TSS (right after the 104-byte TSS proper).
pub const TSS_IOMAP_OFFSET: u64 = 104;
/// Size of the I/O permission bitmap (one bit per port) plus its all-ones terminating byte.
pub const IOMAP_BYTES: u64 = 8192 + 1;
/// TSS limit (size minus one): the TSS and the whole I/O bitmap.
#[allow(clippy::cast_possible_truncation)] // 104 + 8193 - 1 = 8296: checked to fit just below
pub const TSS_LIMIT: u32 = (TSS_IOMAP_OFFSET + IOMAP_BYTES - 1) as u32;
const _: () = assert!(TSS_IOMAP_OFFSET + IOMAP_BYTES - 1 <= u32::MAX as u64);
/// Ring-0 trampoline (one `iretq`, after the I/O bitmap): vCPUs start here at CPL0 with an IRET frame
/// on the kernel stack and drop to CPL3 (also how a probe resumes after an exception).
pub const TRAMPOLINE_ADDR: u64 = 0x5800;
/// Ring-0 exception stubs, [`STUB_SIZE`] bytes per vector.
pub const STUBS_ADDR: u64 = 0x6000;
/// Bytes per exception stub.
pub const STUB_SIZE: u64 = 16;
/// Number of exception vectors with stubs (all 256 gates point at a stub).
pub const IDT_ENTRIES: u64 = 256;
/// Lowest address of the kernel stack used by exception delivery.
pub const KERNEL_STACK_BOTTOM: u64 = 0x7000;
/// Initial RSP0 (top of the kernel stack).
pub const KERNEL_STACK_TOP: u64 = 0x9000;
/// Boot information block ([`BootInfo`]).
pub const BOOT_INFO_ADDR: u64 = 0x9000;
/// Mailbox: a little-endian u32 byte count at [`MAILBOX_ADDR`], text from [`MAILBOX_TEXT`].
pub const MAILBOX_ADDR: u64 = 0xa000;
/// Mailbox size in bytes (header included).
pub const MAILBOX_SIZE: u64 = 0x8000;
/// First byte of mailbox text.
pub const MAILBOX_TEXT: u64 = MAILBOX_ADDR + 8;
/// Mailbox text capacity in bytes.
pub const MAILBOX_CAPACITY: u64 = MAILBOX_SIZE - 8;
/// Level-4 page map.
pub const PML4_ADDR: u64 = 0x1_2000;
/// Page directory pointer table (one, covering 512 GiB).
pub const PDPT_ADDR: u64 = 0x1_3000;
/// Page table of the first 2 MiB (4 KiB pages).
pub const PT_LOW_ADDR: u64 = 0x1_4000;
/// First page directory; PD number `i` (covering GiB `i`) is at `PD_ADDR + i * PAGE_SIZE`.
pub const PD_ADDR: u64 = 0x1_5000;
/// Bottom of the user stack.
pub const USER_STACK_BOTTOM: u64 = 0x10_0000;
/// Initial user RSP.
pub const USER_STACK_TOP: u64 = 0x20_0000;
/// Stack of each secondary vCPU that runs guest code, bytes: carved from the bottom of the user stack
/// (vCPU 0's stack grows down from [`USER_STACK_TOP`] and keeps the upper 768 KiB).
pub const SECONDARY_STACK_BYTES: u64 = 0x4000;
/// Most secondary vCPUs (vCPU 1, 2, ...) that run guest code; any beyond stay parked. 16 stacks of
/// [`SECONDARY_STACK_BYTES`] use the lowest 256 KiB of the user stack.
pub const MAX_RUNNING_SECONDARIES: u32 = 16;

/// Initial RSP of secondary vCPU `index` (1 to [`MAX_RUNNING_SECONDARIES`]); the VMM also puts `index`
/// in RSI, which is 0 on vCPU 0, so the guest's entry tells them apart.
pub const fn secondary_stack_top(index: u32) -> u64 {
    USER_STACK_BOTTOM + index as u64 * SECONDARY_STACK_BYTES
}

/// Where the guest image is linked and loaded; also the lowest valid entry point.
pub const IMAGE_BASE: u64 = 0x20_0000;

/// Smallest guest RAM size (image + a little heap).
pub const MIN_MEM_BYTES: u64 = 4 << 20;
/// Largest guest RAM size (the PDs live below 1 MiB: 64 of them plus one for the MMIO window).
pub const MAX_MEM_BYTES: u64 = 64 * GIB;
/// Size of the MMIO window right above guest RAM.
pub const MMIO_WINDOW_SIZE: u64 = HUGE_PAGE_SIZE;

/// Selector of the ring-0 64-bit code segment (exception stubs).
pub const KERNEL_CS: u16 = 0x08;
/// Selector of the ring-0 data segment.
pub const KERNEL_DS: u16 = 0x10;
/// Selector of the ring-3 64-bit code segment (index 3, RPL 3).
pub const USER_CS: u16 = 0x1b;
/// Selector of the ring-3 data segment (index 4, RPL 3).
pub const USER_DS: u16 = 0x23;
/// Selector of the TSS (index 5, 16-byte descriptor).
pub const TSS_SEL: u16 = 0x28;
/// Number of 8-byte GDT slots (null, kcode, kdata, ucode, udata, TSS low, TSS high).
pub const GDT_ENTRIES: usize = 7;

/// Initial RFLAGS: reserved bit 1 and IOPL=3, interrupts off. `kvm_pvm` does not honour IOPL at CPL3,
/// so port access is granted by the TSS I/O bitmap instead: it allows every port, so every port access
/// exits to the VMM, which serves the port map and rejects the rest.
pub const GUEST_RFLAGS: u64 = 0x3002;

/// Port map. Every port not listed ends the VM with a typed error (or is recorded, in probe mode).
pub mod ports {
    /// OUT: the mailbox holds complete protocol lines; the VMM forwards them and empties it.
    pub const DOORBELL: u16 = 0x0600;
    /// OUT (u32 status): the guest is finished; the VMM forwards the mailbox and ends the VM.
    pub const EXIT: u16 = 0x0601;
    /// IN (u32): blocks until the host says stop (stdin closed or `stop`) or asks for a snapshot;
    /// reads one of [`super::wait`] (0 = stop).
    pub const WAIT_STOP: u16 = 0x0602;
    /// OUT from the ring-0 exception stubs: the exception frame is on the kernel stack (RSP).
    pub const FAULT: u16 = 0x0603;
    /// First port outside the map, used by probes and tests to hit an unknown port.
    pub const FIRST_UNMAPPED: u16 = 0x0604;

    /// What a mapped port does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Role {
        /// [`DOORBELL`] (OUT).
        Doorbell,
        /// [`EXIT`] (OUT).
        Exit,
        /// [`WAIT_STOP`] (IN).
        WaitStop,
        /// [`FAULT`] (OUT).
        Fault,
    }

    /// The port map: the run loop dispatches through it ([`role`]) and the attack-surface figures
    /// list it. Any other port (or a mapped port in the other direction) is an unknown-port exit.
    pub const MAP: [(u16, Role); 4] =
        [(DOORBELL, Role::Doorbell), (EXIT, Role::Exit), (WAIT_STOP, Role::WaitStop), (FAULT, Role::Fault)];

    /// The role of `port` in [`MAP`], if mapped.
    pub fn role(port: u16) -> Option<Role> {
        MAP.iter().find(|(p, _)| *p == port).map(|(_, r)| *r)
    }
}

/// What a read of [`ports::WAIT_STOP`] returns: why the wait ended.
///
/// A snapshot is two rounds: the VMM answers [`wait::SNAPSHOT_PREPARE`] (the guest records a checksum
/// of the memory it holds and waits again), then saves the VM at that second wait. The saved vCPU has
/// the read completed with [`wait::RESTORED`], so a VM restored from the snapshot resumes right after
/// the read, checks its memory and reports `ready` again; the running VM gets [`wait::SNAPSHOT_DONE`].
pub mod wait {
    /// Stop: finish the scenario.
    pub const STOP: u32 = 0;
    /// This VM was just restored from a snapshot: report `ready`, check held memory, wait again.
    pub const RESTORED: u32 = 1;
    /// A snapshot is about to be taken: record a checksum of held memory, wait again.
    pub const SNAPSHOT_PREPARE: u32 = 2;
    /// The snapshot was written (this is the original VM): wait again.
    pub const SNAPSHOT_DONE: u32 = 3;
}

/// [`BootInfo::magic`]: "VMCTBOOT".
pub const BOOT_MAGIC: u64 = 0x544f_4f42_5443_4d56;
/// [`BootInfo::flags`]: probe mode (faulting exits are recorded and the guest resumed).
pub const FLAG_PROBE_MODE: u32 = 1;
/// Capacity of [`BootInfo::args`].
pub const ARGS_CAPACITY: usize = 1024;

/// Test hooks the guest runs instead of its scenario ([`BootInfo::test_hook`]): misbehaviour on demand.
pub mod hooks {
    /// Run the scenario normally.
    pub const NONE: u32 = 0;
    /// Execute `ud2` (invalid opcode, vector 6).
    pub const FAULT_UD: u32 = 1;
    /// Spin forever (watchdog).
    pub const LOOP_FOREVER: u32 = 2;
    /// Write to an unknown port.
    pub const UNKNOWN_PORT: u32 = 3;
    /// Read unmapped guest-virtual memory far above RAM (page fault).
    pub const UNMAPPED_READ: u32 = 4;
    /// Write into the MMIO window right above RAM (MMIO exit).
    pub const MMIO_WRITE: u32 = 5;
    /// Names accepted on the VMM command line, index = hook number.
    pub const NAMES: &[&str] = &["none", "fault-ud", "loop-forever", "unknown-port", "unmapped-read", "mmio-write"];
}

/// Outcome codes the VMM writes into [`ProbeArea::exit_kind`] before resuming a probe.
pub mod probe_exit {
    /// Nothing happened (the access completed inside the guest).
    pub const NONE: u64 = 0;
    /// A port the VMM does not serve (value = port).
    pub const UNKNOWN_PORT: u64 = 1;
    /// MMIO outside guest RAM (value = guest physical address).
    pub const MMIO: u64 = 2;
    /// A CPU exception at CPL3 (value = vector).
    pub const EXCEPTION: u64 = 3;
}

/// Where a probe resumes after a recorded exit, and what the VMM saw.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeArea {
    /// Guest RIP to resume at (0 = no probe armed: the exit ends the VM).
    pub resume_rip: u64,
    /// Guest RSP to resume with.
    pub resume_rsp: u64,
    /// One of [`probe_exit`].
    pub exit_kind: u64,
    /// Port, address or vector, depending on `exit_kind`.
    pub value: u64,
    /// Guest RIP at the exit.
    pub rip: u64,
}

/// Boot information the VMM writes at [`BOOT_INFO_ADDR`] before the guest starts.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// TSC frequency in kHz (guest clock = rdtsc / tsc_khz).
    pub tsc_khz: u64,
    /// Guest RAM size in bytes.
    pub mem_bytes: u64,
    /// First heap byte (2 MiB aligned, above the image).
    pub heap_start: u64,
    /// End of the heap (= end of RAM).
    pub heap_end: u64,
    /// Number of vCPUs of the VM (only vCPU 0 runs the workload).
    pub vcpus: u32,
    /// [`FLAG_PROBE_MODE`] and future flags.
    pub flags: u32,
    /// One of [`hooks`].
    pub test_hook: u32,
    /// Length of the scenario words in `args`.
    pub args_len: u32,
    /// Probe resume point and results.
    pub probe: ProbeArea,
    /// Scenario words separated by spaces (UTF-8), e.g. `cpu --iters 1000`.
    pub args: [u8; ARGS_CAPACITY],
}

/// Byte offset of [`BootInfo::probe`] in the block (the VMM updates only that part).
pub const PROBE_AREA_OFFSET: u64 = core::mem::offset_of!(BootInfo, probe) as u64;

/// Round `x` up to a multiple of `align` (a power of two).
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// End of the region the page tables map for `mem_bytes` of RAM (RAM plus the MMIO window).
pub const fn mapped_end(mem_bytes: u64) -> u64 {
    align_up(mem_bytes, HUGE_PAGE_SIZE) + MMIO_WINDOW_SIZE
}

/// Number of page directories needed for `mem_bytes` of RAM.
pub const fn page_directories(mem_bytes: u64) -> u64 {
    align_up(mapped_end(mem_bytes), GIB) / GIB
}
