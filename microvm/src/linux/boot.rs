//! The x86 64-bit boot protocol, as pure functions (no KVM): kernel command line, e820 map,
//! zero page, initrd placement, GDT and identity page tables. The run loop writes what these
//! return into guest memory; unit tests check them against Documentation/x86/boot.rst.
use super::layout::{self, ports};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};

/// Errors building the boot data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BootError {
    /// The command line does not fit the kernel's buffer.
    #[error("linux boot: kernel command line is {len} bytes, the limit is {max}: {cmdline}")]
    CmdlineTooLong {
        /// Its length with the NUL.
        len: usize,
        /// The limit.
        max: usize,
        /// The command line.
        cmdline: String,
    },
    /// A workload argument cannot travel in `vmct.workload=` (whitespace, comma, quote or empty).
    #[error("linux boot: workload argument {0:?} cannot be passed on the kernel command line")]
    BadWorkloadArg(String),
    /// Guest memory size out of range.
    #[error("linux boot: guest memory of {bytes} bytes is outside [{min}, {max}]")]
    MemorySize {
        /// Requested.
        bytes: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
    /// The initramfs does not fit between the kernel and the top of RAM.
    #[error("linux boot: initramfs of {initrd} bytes does not fit above the kernel (ends at {kernel_end:#x}) in {mem} bytes of RAM")]
    InitrdTooLarge {
        /// Initramfs size.
        initrd: u64,
        /// End of the kernel image.
        kernel_end: u64,
        /// Guest memory.
        mem: u64,
    },
}

/// The kernel command-line parameter carrying the workload scenario, comma-separated
/// (`vmct.workload=cpu,--iters,1000`). Dotted parameters are not passed to /init as arguments,
/// so /init reads it from /proc/cmdline.
pub const WORKLOAD_PARAM: &str = "vmct.workload";

/// Parameters every vmct guest gets (Firecracker-style, plus what halved boot time on kvm_pvm):
/// the 8250 console on ttyS0, reset through the i8042 on reboot and 1 s after a panic, one UART,
/// no keyboard/mouse probing, trust the TSC and CPU RNG, no legacy PTYs, no modules.
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 8250.nr_uarts=1 i8042.noaux i8042.nokbd \
     no_timer_check tsc=reliable random.trust_cpu=on pty.legacy_count=0 nomodule";

/// Extra parameters a kvm_pvm host needs to get as far as it can (instructions its interpreter
/// lacks: xsave/xrstor, clac/stac, popcnt, cmpxchg16b). See shared/HOST-NOTES.md.
pub const PVM_CMDLINE: &str = "noxsave clearcpuid=smap,popcnt,cx16";

/// What goes on the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdlineOptions {
    /// The workload's arguments (`["cpu", "--iters", "1000"]`); empty = no workload parameter.
    pub workload_args: Vec<String>,
    /// Print the kernel log on the console; false adds `quiet` (fewer serial exits: faster boot).
    pub kernel_log: bool,
    /// Add `earlyprintk=ttyS0`: kernel messages from the first instructions of setup_arch on.
    pub early_console: bool,
    /// Add [`PVM_CMDLINE`].
    pub pvm_workarounds: bool,
    /// Anything else, appended last.
    pub extra: Vec<String>,
}

/// Build the command line (without the NUL).
pub fn cmdline(opts: &CmdlineOptions) -> Result<String, BootError> {
    let mut s = String::from(BASE_CMDLINE);
    if !opts.kernel_log {
        s.push_str(" quiet");
    }
    if opts.early_console {
        s.push_str(" earlyprintk=ttyS0");
    }
    if opts.pvm_workarounds {
        s.push(' ');
        s.push_str(PVM_CMDLINE);
    }
    if !opts.workload_args.is_empty() {
        for a in &opts.workload_args {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == '\'') {
                return Err(BootError::BadWorkloadArg(a.clone()));
            }
        }
        s.push_str(&format!(" {WORKLOAD_PARAM}={}", opts.workload_args.join(",")));
    }
    for e in &opts.extra {
        s.push(' ');
        s.push_str(e);
    }
    if s.len() + 1 > layout::CMDLINE_MAX_BYTES {
        return Err(BootError::CmdlineTooLong { len: s.len() + 1, max: layout::CMDLINE_MAX_BYTES, cmdline: s });
    }
    Ok(s)
}

/// The workload arguments of a command line built by [`cmdline`] (what /init does with /proc/cmdline).
pub fn workload_args_of(cmdline: &str) -> Option<Vec<String>> {
    let prefix = format!("{WORKLOAD_PARAM}=");
    let v = cmdline.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str()))?;
    Some(v.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect())
}

/// Check a guest memory size.
pub fn check_mem(bytes: u64) -> Result<(), BootError> {
    if !(layout::MIN_MEM_BYTES..=layout::MAX_MEM_BYTES).contains(&bytes) || !bytes.is_multiple_of(layout::PAGE_SIZE) {
        return Err(BootError::MemorySize { bytes, min: layout::MIN_MEM_BYTES, max: layout::MAX_MEM_BYTES });
    }
    Ok(())
}

/// The e820 map for `mem_bytes` of RAM at 0: low RAM up to the EBDA, the EBDA..1 MiB hole reserved,
/// RAM from 1 MiB to the end.
pub fn e820_map(mem_bytes: u64) -> Vec<boot_e820_entry> {
    vec![
        boot_e820_entry { addr: 0, size: layout::EBDA_START, r#type: layout::E820_RAM },
        boot_e820_entry {
            addr: layout::EBDA_START,
            size: layout::HIMEM_START - layout::EBDA_START,
            r#type: layout::E820_RESERVED,
        },
        boot_e820_entry { addr: layout::HIMEM_START, size: mem_bytes - layout::HIMEM_START, r#type: layout::E820_RAM },
    ]
}

/// Where the initramfs goes: the top of RAM, page aligned down (Firecracker's choice), above `kernel_end`.
pub fn initrd_address(mem_bytes: u64, kernel_end: u64, initrd_len: u64) -> Result<u64, BootError> {
    let too_large = BootError::InitrdTooLarge { initrd: initrd_len, kernel_end, mem: mem_bytes };
    let addr = mem_bytes.checked_sub(initrd_len).ok_or(too_large.clone())? & !(layout::PAGE_SIZE - 1);
    if addr < kernel_end {
        return Err(too_large);
    }
    Ok(addr)
}

/// The zero page. `header` is a bzImage's own setup header (its 64-bit entry reads fields such as
/// `init_size` from it); an ELF vmlinux has none. `cmdline_len` excludes the NUL.
pub fn zero_page(
    mem_bytes: u64,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    header: Option<setup_header>,
) -> boot_params {
    let mut p = boot_params::default();
    if let Some(h) = header {
        p.hdr = h;
    }
    p.hdr.type_of_loader = layout::KERNEL_LOADER_OTHER;
    p.hdr.boot_flag = layout::KERNEL_BOOT_FLAG_MAGIC;
    p.hdr.header = layout::KERNEL_HDR_MAGIC;
    p.hdr.kernel_alignment = layout::KERNEL_MIN_ALIGNMENT_BYTES;
    // Guest RAM is at most MAX_MEM_BYTES (3 GiB, check_mem), so every address and size in it fits the
    // boot protocol's 32-bit fields; the command line is at most CMDLINE_MAX_BYTES.
    let low32 = |x: u64| u32::try_from(x).expect("below 4 GiB: guest RAM is at most 3 GiB");
    p.hdr.cmd_line_ptr = low32(layout::CMDLINE_START);
    p.hdr.cmdline_size = u32::try_from(cmdline_len).expect("at most CMDLINE_MAX_BYTES");
    if let Some((addr, len)) = initrd {
        p.hdr.ramdisk_image = low32(addr);
        p.hdr.ramdisk_size = low32(len);
    }
    let map = e820_map(mem_bytes);
    for (slot, e) in p.e820_table.iter_mut().zip(&map) {
        *slot = *e;
    }
    p.e820_entries = u8::try_from(map.len()).expect("three e820 entries");
    p
}

/// One GDT descriptor (Firecracker's `gdt_entry`): `flags` holds the access byte (bits 0-7) and the
/// flags nibble (bits 12-15).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, 64-bit code (selector 0x08), data (0x10), TSS (0x18).
pub const GDT: [u64; 4] =
    [gdt_entry(0, 0, 0), gdt_entry(0xa09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff), gdt_entry(0x808b, 0, 0xfffff)];

/// A KVM segment register loaded from GDT entry `index`.
pub fn segment(index: usize) -> kvm_bindings::kvm_segment {
    let e = GDT[index];
    // Masked bit fields of the descriptor: each fits its target type.
    let bits = |x: u64| u32::try_from(x).expect("a masked descriptor field");
    let bit = |x: u64| u8::try_from(x & 1).expect("one bit");
    let g = bit(e >> 55);
    let limit = bits(((e & 0x000f_0000_0000_0000) >> 32) | (e & 0xffff));
    let present = bit(e >> 47);
    kvm_bindings::kvm_segment {
        base: ((e & 0xff00_0000_0000_0000) >> 32) | ((e & 0x0000_00ff_0000_0000) >> 16) | ((e & 0xffff_0000) >> 16),
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: u16::try_from(index * 8).expect("four GDT entries"),
        type_: ((e >> 40) & 0xf) as u8,
        present,
        dpl: ((e >> 45) & 3) as u8,
        db: ((e >> 54) & 1) as u8,
        s: ((e >> 44) & 1) as u8,
        l: ((e >> 53) & 1) as u8,
        g,
        avl: ((e >> 52) & 1) as u8,
        padding: 0,
        unusable: u8::from(present == 0),
    }
}

/// Identity page tables as (guest address, 64-bit entry) writes: PML4[0] -> PDPT, PDPT[0] -> PD,
/// PD[i] = 2 MiB page i (present, writable, huge).
pub fn page_table_writes() -> Vec<(u64, u64)> {
    let mut w = vec![(layout::PML4_START, layout::PDPTE_START | 0x03), (layout::PDPTE_START, layout::PDE_START | 0x03)];
    w.extend((0..512u64).map(|i| (layout::PDE_START + i * 8, (i << 21) | 0x83)));
    w
}

/// True if a console line is the kernel's panic banner.
pub fn is_panic_line(line: &str) -> bool {
    line.contains("Kernel panic - not syncing")
}

/// True if an `out` to `port` with `data` is the guest asking to reset (our end-of-VM signal).
pub fn is_reset(port: u16, data: &[u8]) -> bool {
    port == ports::I8042_COMMAND && data.first() == Some(&ports::I8042_RESET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_has_console_reset_and_workload() {
        let opts =
            CmdlineOptions { workload_args: vec!["cpu".into(), "--iters".into(), "1000".into()], ..Default::default() };
        let c = cmdline(&opts).unwrap();
        for w in ["console=ttyS0", "reboot=k", "panic=1", "8250.nr_uarts=1", "pty.legacy_count=0", "quiet"] {
            assert!(c.split_whitespace().any(|x| x == w), "{w} missing from {c}");
        }
        assert!(!c.contains("clearcpuid") && !c.contains("earlyprintk"));
        assert_eq!(workload_args_of(&c).unwrap(), ["cpu", "--iters", "1000"]);
    }

    #[test]
    fn cmdline_options_add_their_words() {
        let opts = CmdlineOptions {
            kernel_log: true,
            early_console: true,
            pvm_workarounds: true,
            extra: vec!["lpj=1000".into()],
            ..Default::default()
        };
        let c = cmdline(&opts).unwrap();
        assert!(!c.contains("quiet") && !c.contains(WORKLOAD_PARAM));
        assert!(c.contains(" earlyprintk=ttyS0") && c.contains(" noxsave clearcpuid=smap,popcnt,cx16"));
        assert!(c.ends_with(" lpj=1000"));
        assert_eq!(workload_args_of(&c), None);
    }

    #[test]
    fn cmdline_rejects_what_the_kernel_would_split_or_truncate() {
        for bad in ["a b", "a,b", "", "x\"y"] {
            let opts = CmdlineOptions { workload_args: vec![bad.into()], ..Default::default() };
            assert_eq!(cmdline(&opts), Err(BootError::BadWorkloadArg(bad.into())));
        }
        let opts = CmdlineOptions { extra: vec!["x".repeat(layout::CMDLINE_MAX_BYTES)], ..Default::default() };
        assert!(matches!(cmdline(&opts), Err(BootError::CmdlineTooLong { .. })));
    }

    #[test]
    fn e820_map_covers_ram_with_the_legacy_hole_reserved() {
        let mem = 128 << 20;
        let m = e820_map(mem);
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].addr, m[0].size, m[0].r#type), (0, 0x9fc00, 1));
        assert_eq!((m[1].addr, m[1].addr + m[1].size, m[1].r#type), (0x9fc00, 0x10_0000, 2));
        assert_eq!((m[2].addr, m[2].addr + m[2].size, m[2].r#type), (0x10_0000, mem, 1));
        // Contiguous, no overlap, and the boot data (zero page, page tables, cmdline) is in usable RAM.
        assert!(m.windows(2).all(|w| w[0].addr + w[0].size == w[1].addr));
        for a in [layout::ZERO_PAGE_START, layout::PML4_START, layout::PDE_START, layout::CMDLINE_START] {
            assert!(a + 0x1000 <= m[0].size, "{a:#x} outside low RAM");
        }
        assert!(layout::CMDLINE_START + layout::CMDLINE_MAX_BYTES as u64 <= layout::EBDA_START);
    }

    #[test]
    fn zero_page_follows_the_boot_protocol() {
        let mem = 256 << 20;
        let p = zero_page(mem, 42, Some((0x0f00_0000, 0x12345)), None);
        let h = p.hdr;
        assert_eq!({ h.boot_flag }, 0xaa55);
        assert_eq!({ h.header }, 0x5372_6448, "HdrS");
        assert_eq!({ h.type_of_loader }, 0xff);
        assert_eq!({ h.cmd_line_ptr }, 0x20000);
        assert_eq!({ h.cmdline_size }, 42);
        assert_eq!({ h.kernel_alignment }, 0x100_0000);
        assert_eq!(({ h.ramdisk_image }, { h.ramdisk_size }), (0x0f00_0000, 0x12345));
        assert_eq!(p.e820_entries, 3);
        let last = p.e820_table[2];
        assert_eq!(({ last.addr }, { last.size }), (0x10_0000, mem - 0x10_0000));
        // Offsets fixed by Documentation/x86/zero-page.rst.
        let base = &p as *const boot_params as usize;
        assert_eq!(std::ptr::addr_of!(p.e820_entries) as usize - base, 0x1e8);
        assert_eq!(std::ptr::addr_of!(p.hdr) as usize - base, 0x1f1);
        assert_eq!(std::ptr::addr_of!(p.e820_table) as usize - base, 0x2d0);
        assert_eq!(std::mem::size_of::<boot_params>(), 4096);
    }

    #[test]
    fn zero_page_keeps_a_bzimage_header_but_sets_ours() {
        let h = setup_header { init_size: 0x0123_4000, version: 0x20f, loadflags: 1, ..Default::default() };
        let p = zero_page(128 << 20, 10, None, Some(h));
        assert_eq!(({ p.hdr.init_size }, { p.hdr.version }), (0x0123_4000, 0x20f));
        assert_eq!(({ p.hdr.type_of_loader }, { p.hdr.ramdisk_size }), (0xff, 0));
    }

    #[test]
    fn initrd_goes_page_aligned_at_the_top_of_ram() {
        let mem = 128 << 20;
        assert_eq!(initrd_address(mem, 32 << 20, 5000).unwrap(), mem - 8192);
        assert!(initrd_address(mem, 100 << 20, 30 << 20).is_err());
        assert!(initrd_address(mem, 0, mem + 1).is_err());
    }

    #[test]
    fn memory_limits() {
        assert!(check_mem(128 << 20).is_ok());
        assert!(check_mem(1 << 20).is_err());
        assert!(check_mem(2 << 30).is_ok() && check_mem(4 << 30).is_err());
        assert!(check_mem((128 << 20) + 1).is_err());
    }

    #[test]
    fn gdt_segments_are_flat_64bit_code_and_data() {
        let cs = segment(1);
        assert_eq!((cs.selector, cs.l, cs.db, cs.present, cs.type_, cs.s, cs.dpl), (0x08, 1, 0, 1, 0xb, 1, 0));
        assert_eq!((cs.base, cs.limit, cs.g), (0, 0xffff_ffff, 1));
        let ds = segment(2);
        assert_eq!((ds.selector, ds.l, ds.db, ds.type_), (0x10, 0, 1, 3));
        let tr = segment(3);
        assert_eq!((tr.selector, tr.type_, tr.s), (0x18, 0xb, 0));
        assert_eq!(segment(0).unusable, 1);
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn page_tables_identity_map_one_gib() {
        let w = page_table_writes();
        assert_eq!(w.len(), 514);
        assert_eq!(w[0], (0x9000, 0xa003));
        assert_eq!(w[1], (0xa000, 0xb003));
        assert_eq!(w[2], (0xb000, 0x83));
        assert_eq!(w[513], (0xb000 + 511 * 8, (511 << 21) | 0x83));
    }

    #[test]
    fn panic_and_reset_are_recognised() {
        assert!(is_panic_line("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs"));
        assert!(!is_panic_line("panic=1"));
        assert!(is_reset(0x64, &[0xfe]) && !is_reset(0x64, &[0xd1]) && !is_reset(0x60, &[0xfe]));
    }
}
