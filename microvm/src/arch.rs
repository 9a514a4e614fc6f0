//! x86-64 system structures the VMM builds in guest memory: GDT, IDT, TSS, ring-0 exception stubs and
//! identity-mapped page tables, plus the matching `kvm_segment`s and control registers.
//!
//! All functions are pure (bytes and words out), so they are unit-tested without KVM.
use crate::layout::*;
use kvm_bindings::{kvm_segment, kvm_sregs};

/// Page-table entry bits.
pub mod pte {
    /// Present.
    pub const P: u64 = 1;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User accessible.
    pub const US: u64 = 1 << 2;
    /// Large page (in a PD: 2 MiB).
    pub const PS: u64 = 1 << 7;
}

/// CR0 bits.
pub mod cr0 {
    /// Protected mode.
    pub const PE: u64 = 1;
    /// Monitor coprocessor (SSE needs it with OSFXSR).
    pub const MP: u64 = 1 << 1;
    /// Extension type.
    pub const ET: u64 = 1 << 4;
    /// Native FPU error reporting.
    pub const NE: u64 = 1 << 5;
    /// Write protect (ring 0 honours read-only pages).
    pub const WP: u64 = 1 << 16;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Physical address extension (required for long mode).
    pub const PAE: u64 = 1 << 5;
    /// FXSAVE/FXRSTOR and SSE enabled.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SSE exceptions are #XM instead of #UD.
    pub const OSXMMEXCPT: u64 = 1 << 10;
}

/// EFER bits.
pub mod efer {
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
}

/// A segment descriptor in its decoded form (what both the GDT and `kvm_segment` are made from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Base address.
    pub base: u64,
    /// 20-bit limit (in pages when `flags` has G).
    pub limit: u32,
    /// Access byte: P, DPL, S, type.
    pub access: u8,
    /// Flags nibble: G, D/B, L, AVL.
    pub flags: u8,
}

impl Descriptor {
    /// The 8-byte GDT encoding (for a system descriptor, the low half).
    pub fn encode(&self) -> u64 {
        let base = self.base & 0xffff_ffff;
        let limit = self.limit as u64 & 0xf_ffff;
        (limit & 0xffff)
            | (base & 0xff_ffff) << 16
            | (self.access as u64) << 40
            | (limit >> 16) << 48
            | (self.flags as u64 & 0xf) << 52
            | (base >> 24) << 56
    }

    /// The `kvm_segment` KVM expects in `set_sregs` for this descriptor loaded with `selector`.
    pub fn segment(&self, selector: u16) -> kvm_segment {
        let g = (self.flags >> 3) & 1;
        kvm_segment {
            base: self.base,
            limit: if g == 1 { (self.limit << 12) | 0xfff } else { self.limit },
            selector,
            type_: self.access & 0xf,
            present: (self.access >> 7) & 1,
            dpl: (self.access >> 5) & 3,
            db: (self.flags >> 2) & 1,
            s: (self.access >> 4) & 1,
            l: (self.flags >> 1) & 1,
            g,
            avl: self.flags & 1,
            unusable: 0,
            padding: 0,
        }
    }
}

/// Ring-0 64-bit code.
pub const KERNEL_CODE: Descriptor = Descriptor { base: 0, limit: 0xf_ffff, access: 0x9b, flags: 0xa };
/// Ring-0 data.
pub const KERNEL_DATA: Descriptor = Descriptor { base: 0, limit: 0xf_ffff, access: 0x93, flags: 0xc };
/// Ring-3 64-bit code.
pub const USER_CODE: Descriptor = Descriptor { base: 0, limit: 0xf_ffff, access: 0xfb, flags: 0xa };
/// Ring-3 data.
pub const USER_DATA: Descriptor = Descriptor { base: 0, limit: 0xf_ffff, access: 0xf3, flags: 0xc };
/// The busy 64-bit TSS (type 0xb), as loaded into TR.
pub const TSS: Descriptor = Descriptor { base: TSS_ADDR, limit: TSS_LIMIT, access: 0x8b, flags: 0 };

/// The GDT: null, kernel code, kernel data, user code, user data, TSS (two slots).
pub fn gdt() -> [u64; GDT_ENTRIES] {
    [
        0,
        KERNEL_CODE.encode(),
        KERNEL_DATA.encode(),
        USER_CODE.encode(),
        USER_DATA.encode(),
        TSS.encode(),
        TSS.base >> 32,
    ]
}

/// One 16-byte IDT gate (as two little-endian words): a present DPL0 64-bit interrupt gate to `handler`.
pub fn idt_gate(handler: u64) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | (KERNEL_CS as u64) << 16
        | 0x8e_u64 << 40 // P=1, DPL=0, type 0xe (64-bit interrupt gate)
        | ((handler >> 16) & 0xffff) << 48;
    [lo, handler >> 32]
}

/// The IDT: every vector points at its stub.
pub fn idt() -> Vec<u64> {
    (0..IDT_ENTRIES).flat_map(|v| idt_gate(STUBS_ADDR + v * STUB_SIZE)).collect()
}

/// The TSS with its I/O permission bitmap: RSP0 (offset 4) is the kernel stack, the I/O map base
/// (offset 102) points right after the TSS, and the bitmap allows every port (all zero bits) up to its
/// all-ones terminating byte. Every port access from CPL3 therefore exits to the VMM.
pub fn tss() -> Vec<u8> {
    let mut t = vec![0u8; (TSS_LIMIT + 1) as usize];
    t[4..12].copy_from_slice(&KERNEL_STACK_TOP.to_le_bytes());
    t[102..104].copy_from_slice(&u16::try_from(TSS_IOMAP_OFFSET).expect("104 fits in u16").to_le_bytes());
    t[TSS_LIMIT as usize] = 0xff;
    t
}

/// Does the CPU push an error code for this vector?
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// [`STUB_SIZE`] as an array length.
#[allow(clippy::cast_possible_truncation)] // 16 bytes
const STUB_BYTES: usize = STUB_SIZE as usize;

/// The ring-0 stub of `vector`: make the frame uniform (push 0 when the CPU pushed no error code),
/// push the vector, report through [`ports::FAULT`], halt. Five instructions, because ring-0 code is
/// interpreted on some hosts. The VMM reads the frame at RSP: vector, error code, RIP, CS, RFLAGS,
/// RSP, SS.
pub fn stub(vector: u8) -> [u8; STUB_BYTES] {
    let mut code = Vec::with_capacity(STUB_BYTES);
    if !has_error_code(vector) {
        code.extend_from_slice(&[0x6a, 0x00]); // push 0
    }
    code.push(0x68); // push imm32 (sign-extended to 64 bits; vectors are < 256)
    code.extend_from_slice(&(vector as u32).to_le_bytes());
    code.extend_from_slice(&[0x66, 0xba]); // mov dx, imm16
    code.extend_from_slice(&ports::FAULT.to_le_bytes());
    code.push(0xee); // out dx, al
    code.push(0xf4); // hlt
    code.extend_from_slice(&[0xeb, 0xfd]); // jmp back to hlt
    let mut out = [0x90u8; STUB_BYTES]; // nop padding
    out[..code.len()].copy_from_slice(&code);
    out
}

/// All stubs, back to back.
pub fn stubs() -> Vec<u8> {
    (0..IDT_ENTRIES).flat_map(|v| stub(u8::try_from(v).expect("256 vectors, 0..=255"))).collect()
}

/// One page-table page to write: guest physical address and its 512 entries.
pub type TablePage = (u64, Box<[u64; 512]>);

/// Flags of the 4 KiB page at `addr` in the low 2 MiB (0 = not present).
pub fn low_page_flags(addr: u64) -> u64 {
    let user = pte::P | pte::RW | pte::US;
    let kernel = pte::P | pte::RW;
    let tables_end = PD_ADDR + (MAX_MEM_BYTES / GIB + 1) * PAGE_SIZE;
    match addr {
        0 => 0,
        a if a < BOOT_INFO_ADDR => kernel,
        a if a < MAILBOX_ADDR + MAILBOX_SIZE => user,
        a if (PML4_ADDR..tables_end).contains(&a) => kernel,
        a if (USER_STACK_BOTTOM..USER_STACK_TOP).contains(&a) => user,
        _ => 0,
    }
}

/// Identity-mapped page tables for `mem_bytes` of RAM: 4 KiB pages below 2 MiB (see
/// [`low_page_flags`]), user 2 MiB pages from 2 MiB to the end of the MMIO window, nothing above.
pub fn page_tables(mem_bytes: u64) -> Vec<TablePage> {
    let table = |addr| -> TablePage { (addr, Box::new([0u64; 512])) };
    let link = pte::P | pte::RW | pte::US;
    let mut pml4 = table(PML4_ADDR);
    pml4.1[0] = PDPT_ADDR | link;
    let mut pdpt = table(PDPT_ADDR);
    let mut low = table(PT_LOW_ADDR);
    for (i, e) in low.1.iter_mut().enumerate() {
        let addr = i as u64 * PAGE_SIZE;
        let flags = low_page_flags(addr);
        *e = if flags == 0 { 0 } else { addr | flags };
    }
    let end = mapped_end(mem_bytes);
    let mut pds = Vec::new();
    for g in 0..page_directories(mem_bytes) {
        let mut pd = table(PD_ADDR + g * PAGE_SIZE);
        pdpt.1[usize::try_from(g).expect("at most 64 page directories")] = pd.0 | link;
        for (i, e) in pd.1.iter_mut().enumerate() {
            let addr = g * GIB + i as u64 * HUGE_PAGE_SIZE;
            *e = match addr {
                0 => PT_LOW_ADDR | link,
                a if a < end => a | pte::P | pte::RW | pte::US | pte::PS,
                _ => 0,
            };
        }
        pds.push(pd);
    }
    let mut all = vec![pml4, pdpt, low];
    all.extend(pds);
    all
}

/// The trampoline at [`TRAMPOLINE_ADDR`]: `iretq`.
pub const TRAMPOLINE: [u8; 2] = [0x48, 0xcf];

/// The IRET frame (lowest address first) that makes the trampoline enter `rip` at CPL3 with `rsp`,
/// flat user segments and IOPL=3. It sits at [`iret_frame_addr`].
pub fn iret_frame(rip: u64, rsp: u64) -> [u64; 5] {
    [rip, USER_CS as u64, GUEST_RFLAGS, rsp, USER_DS as u64]
}

/// Where the IRET frame goes: the top of the kernel stack.
pub const fn iret_frame_addr() -> u64 {
    KERNEL_STACK_TOP - 5 * 8
}

/// Special registers for a vCPU that starts in 64-bit mode at CPL0 on the trampoline: kernel code
/// and stack segments, flat user data segments, the TSS, GDT/IDT, paging with our tables, SSE
/// enabled. `base` is what `get_sregs` returned (it keeps KVM's APIC base and interrupt bitmap).
pub fn sregs(mut base: kvm_sregs) -> kvm_sregs {
    base.cs = KERNEL_CODE.segment(KERNEL_CS);
    let data = USER_DATA.segment(USER_DS);
    base.ds = data;
    base.es = data;
    base.fs = data;
    base.gs = data;
    base.ss = KERNEL_DATA.segment(KERNEL_DS);
    base.tr = TSS.segment(TSS_SEL);
    base.ldt = kvm_segment { type_: 2, present: 1, unusable: 1, ..Default::default() };
    base.gdt.base = GDT_ADDR;
    base.gdt.limit = u16::try_from(GDT_ENTRIES * 8 - 1).expect("7 descriptors");
    base.idt.base = IDT_ADDR;
    base.idt.limit = u16::try_from(IDT_ENTRIES * 16 - 1).expect("256 gates of 16 bytes: 4095");
    base.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
    base.cr3 = PML4_ADDR;
    base.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT;
    base.efer = efer::LME | efer::LMA;
    base
}

/// Name of an exception vector (`#PF`, ...), for error messages.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD exception",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        _ => "interrupt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_encodes_the_classic_flat_descriptors() {
        let g = gdt();
        assert_eq!(g[0], 0);
        assert_eq!(g[1], 0x00af_9b00_0000_ffff);
        assert_eq!(g[2], 0x00cf_9300_0000_ffff);
        assert_eq!(g[3], 0x00af_fb00_0000_ffff);
        assert_eq!(g[4], 0x00cf_f300_0000_ffff);
        // TSS at 0x3000, limit 0x2068 (TSS + I/O bitmap), busy 64-bit TSS.
        assert_eq!(g[5], 0x0000_8b00_3000_2068);
        assert_eq!(g[6], 0);
        assert_eq!((USER_CS >> 3) as usize, 3);
        assert_eq!((USER_DS >> 3) as usize, 4);
        assert_eq!((TSS_SEL >> 3) as usize, 5);
    }

    #[test]
    fn segments_match_the_recipe_seen_working() {
        let cs = USER_CODE.segment(USER_CS);
        assert_eq!((cs.selector, cs.dpl, cs.l, cs.db, cs.s, cs.present, cs.type_), (0x1b, 3, 1, 0, 1, 1, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = USER_DATA.segment(USER_DS);
        assert_eq!((ds.selector, ds.dpl, ds.l, ds.db, ds.type_), (0x23, 3, 0, 1, 3));
        let tr = TSS.segment(TSS_SEL);
        assert_eq!((tr.base, tr.limit, tr.type_, tr.s, tr.g), (TSS_ADDR, 0x2068, 0xb, 0, 0));
        let s = sregs(kvm_sregs::default());
        assert_eq!((s.cs.selector, s.cs.dpl, s.ss.selector), (KERNEL_CS, 0, KERNEL_DS));
        assert_eq!(iret_frame(0x20_0000, USER_STACK_TOP), [0x20_0000, 0x1b, 0x3002, USER_STACK_TOP, 0x23]);
        assert!(TRAMPOLINE_ADDR > TSS_ADDR + TSS_LIMIT as u64 && TRAMPOLINE_ADDR < STUBS_ADDR);
        assert_eq!(s.cr3, PML4_ADDR);
        assert_ne!(s.cr4 & cr4::OSFXSR, 0);
        assert_ne!(s.cr0 & cr0::MP, 0);
        assert_eq!(s.efer, efer::LME | efer::LMA);
    }

    #[test]
    fn idt_gates_point_at_stubs() {
        let g = idt_gate(0x1234_5678_9abc_def0);
        assert_eq!(g[0] & 0xffff, 0xdef0);
        assert_eq!((g[0] >> 16) & 0xffff, KERNEL_CS as u64);
        assert_eq!((g[0] >> 40) & 0xff, 0x8e);
        assert_eq!(g[0] >> 48, 0x9abc);
        assert_eq!(g[1], 0x1234_5678);
        let idt = idt();
        assert_eq!(idt.len() as u64 * 8, IDT_ENTRIES * 16);
        assert_eq!(idt[14 * 2] & 0xffff, (STUBS_ADDR + 14 * STUB_SIZE) & 0xffff);
    }

    #[test]
    fn stubs_fit_and_push_a_uniform_frame() {
        let ud = stub(6);
        assert_eq!(&ud[..7], &[0x6a, 0, 0x68, 6, 0, 0, 0]);
        let pf = stub(14);
        assert_eq!(&pf[..5], &[0x68, 14, 0, 0, 0]);
        assert!(stub(255).contains(&0xee));
        assert_eq!(stubs().len() as u64, IDT_ENTRIES * STUB_SIZE);
        let t = tss();
        assert_eq!(u64::from_le_bytes(t[4..12].try_into().unwrap()), KERNEL_STACK_TOP);
        assert_eq!(t.len(), 104 + 8192 + 1);
        assert_eq!((t[102], t[103], t[104], t[8296]), (104, 0, 0, 0xff));
        assert!(TSS_ADDR + t.len() as u64 <= TRAMPOLINE_ADDR);
    }

    #[test]
    fn page_tables_map_ram_and_mmio_window_only() {
        let mem = 64 << 20;
        let pts = page_tables(mem);
        let find = |a| pts.iter().find(|p| p.0 == a).unwrap();
        assert_eq!(find(PML4_ADDR).1[0], PDPT_ADDR | 7);
        assert_eq!(find(PDPT_ADDR).1[0], PD_ADDR | 7);
        assert_eq!(find(PDPT_ADDR).1[1], 0);
        let pd = find(PD_ADDR);
        assert_eq!(pd.1[0], PT_LOW_ADDR | 7);
        assert_eq!(pd.1[1], HUGE_PAGE_SIZE | 0x87);
        assert_eq!(pd.1[32], (64 << 20) | 0x87, "MMIO window right above RAM is mapped");
        assert_eq!(pd.1[33], 0, "nothing above the MMIO window");
        let low = find(PT_LOW_ADDR);
        assert_eq!(low.1[0], 0, "null page unmapped");
        assert_eq!(low.1[1], GDT_ADDR | 3, "GDT supervisor only");
        assert_eq!(low.1[8], (KERNEL_STACK_TOP - PAGE_SIZE) | 3);
        assert_eq!(low.1[9], BOOT_INFO_ADDR | 7);
        assert_eq!(low.1[10], MAILBOX_ADDR | 7);
        assert_eq!(low.1[0x12], PML4_ADDR | 3);
        assert_eq!(low.1[0x100], USER_STACK_BOTTOM | 7);
        assert_eq!(low.1[0x60], 0);
        // 3 GiB of RAM needs 4 page directories (the MMIO window spills into the fourth GiB).
        assert_eq!(page_tables(3 * GIB).len(), 3 + 4);
        assert_eq!(page_directories(MAX_MEM_BYTES), MAX_MEM_BYTES / GIB + 1);
        assert!(PD_ADDR + page_directories(MAX_MEM_BYTES) * PAGE_SIZE <= USER_STACK_BOTTOM);
    }
}
