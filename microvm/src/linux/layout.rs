//! Guest physical memory layout and port map of the linux guest model, in one place.
//!
//! The values follow Firecracker's `arch/x86_64/layout.rs` and the x86 boot protocol
//! (Documentation/x86/boot.rst, zero-page.rst):
//!
//! ```text
//! 0x0000_0500  GDT (4 entries: null, code64, data, tss)
//! 0x0000_0520  IDT (empty, limit 7: the kernel installs its own)
//! 0x0000_7000  zero page (struct boot_params), rsi at entry
//! 0x0000_8ff0  boot stack top (rsp/rbp at entry)
//! 0x0000_9000  PML4 -> 0xa000 PDPT -> 0xb000 PD: identity map of the first 1 GiB in 2 MiB pages
//! 0x0002_0000  kernel command line (NUL-terminated, at most CMDLINE_MAX_BYTES)
//! 0x0009_fc00  EBDA start: [EBDA_START, 1 MiB) is reserved in the e820 map
//! 0x0010_0000  HIMEM_START: usable RAM from here to the end of guest memory
//! 0x0100_0000  where a vmlinux is linked to load (CONFIG_PHYSICAL_START), bzImage code32_start
//! top of RAM   initramfs, page aligned
//! ```

/// Address of the GDT.
pub const GDT_START: u64 = 0x500;
/// Address of the (empty) boot IDT.
pub const IDT_START: u64 = 0x520;
/// Address of the zero page (`boot_params`), passed in rsi.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table (cr3).
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory (512 x 2 MiB entries = 1 GiB identity map).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line accepted (x86 COMMAND_LINE_SIZE), NUL included.
pub const CMDLINE_MAX_BYTES: usize = 2048;
/// Start of the extended BIOS data area: end of low usable RAM.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory (1 MiB): where the e820 map resumes usable RAM.
pub const HIMEM_START: u64 = 0x10_0000;
/// Guest memory the boot identity map covers (the kernel builds its own page tables at once).
pub const IDENTITY_MAP_BYTES: u64 = 1 << 30;
/// Most guest memory: RAM stays below the 32-bit MMIO hole at 3 GiB (one e820 RAM range above 1 MiB).
pub const MAX_MEM_BYTES: u64 = 3 << 30;
/// Smallest guest memory that holds a vmct guest kernel plus its initramfs.
pub const MIN_MEM_BYTES: u64 = 64 << 20;
/// Default guest memory.
pub const DEFAULT_MEM_BYTES: u64 = 128 << 20;
/// TSS address KVM needs on Intel (3 pages below 4 GiB, outside RAM), as Firecracker.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;

/// `type_of_loader` "undefined" (0xff), as Firecracker.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `boot_flag` magic.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` magic "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `kernel_alignment`: 16 MiB.
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// Offset of a bzImage's 64-bit entry (`startup_64`) from its load address.
pub const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// e820 entry types.
pub const E820_RAM: u32 = 1;
/// Reserved range.
pub const E820_RESERVED: u32 = 2;

/// Ports the VMM emulates (everything else: reads 0xff, writes ignored; PIC/PIT are in KVM).
pub mod ports {
    /// COM1 (ttyS0), 8 registers: the console, via vm-superio's 8250.
    pub const COM1: u16 = 0x3f8;
    /// Number of COM1 registers.
    pub const COM1_LEN: u16 = 8;
    /// GSI of COM1's interrupt.
    pub const COM1_IRQ: u32 = 4;
    /// Boot-timer port: the workload's /init writes [`BOOT_TIMER_VALUE`] here first thing
    /// (Firecracker's method for measuring boot to /init).
    pub const BOOT_TIMER: u16 = 0x3f0;
    /// Value written to [`BOOT_TIMER`].
    pub const BOOT_TIMER_VALUE: u8 = 123;
    /// i8042 command port: the guest kernel (`reboot=k`) writes [`I8042_RESET`] here to reboot,
    /// which the VMM takes as the end of the VM (Firecracker's semantics).
    pub const I8042_COMMAND: u16 = 0x64;
    /// The i8042 "pulse reset line" command.
    pub const I8042_RESET: u8 = 0xfe;
    /// The legacy I/O-delay port (CONFIG_IO_DELAY_0X80): writes ignored.
    pub const IO_DELAY: u16 = 0x80;
}
