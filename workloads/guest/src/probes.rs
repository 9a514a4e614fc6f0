//! The guest-side isolation probes (`probe` scenario): each one tries to leave the guest (a port
//! outside the port map, memory outside guest RAM, a privileged instruction at CPL3) and reports
//! `@vmct probe guest.<id> blocked|reached|error <detail>`.
//!
//! The VMM runs this scenario in probe mode: before each probe the guest registers a resume point in
//! the boot-info probe area (`probe_try`); an exit that would end the VM (unknown port, MMIO, CPU
//! exception) is recorded there instead and the guest continues (after the access, or at the resume
//! point for an exception).
use crate::layout::{self, probe_exit, ProbeArea};
use crate::{inl, outl, Guest, Line};
use core::arch::{asm, global_asm};
use core::fmt::Write;
use workloads::protocol::{Message, ProbeOutcome};

global_asm!(
    ".global vmct_probe_try",
    "vmct_probe_try:", // rdi = probe fn, rsi = &ProbeArea
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8", // 16-byte alignment at the call
    "lea rax, [rip + 2f]",
    "mov [rsi], rax",     // resume_rip
    "mov [rsi + 8], rsp", // resume_rsp
    "call rdi",
    "2:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
);

extern "C" {
    fn vmct_probe_try(probe: extern "C" fn(), area: *mut ProbeArea);
}

fn area() -> *mut ProbeArea {
    (layout::BOOT_INFO_ADDR + layout::PROBE_AREA_OFFSET) as *mut ProbeArea
}

/// Run `probe` with a resume point armed; returns what the VMM recorded.
fn try_probe(probe: extern "C" fn()) -> ProbeArea {
    // SAFETY: the probe area is user read/write guest memory; the VMM writes it only during our exits.
    unsafe {
        core::ptr::write_volatile(area(), ProbeArea::default());
        vmct_probe_try(probe, area());
        let seen = core::ptr::read_volatile(area());
        core::ptr::write_volatile(area(), ProbeArea::default());
        seen
    }
}

extern "C" fn port_post() {
    outl(0x80, 0x42);
}
extern "C" fn port_serial_in() {
    let _ = inl(0x3f8);
}
extern "C" fn port_pci_config() {
    outl(0xcf8, 0x8000_0000);
}
extern "C" fn mmio_above_ram() {
    let info = crate::boot_info();
    let addr = layout::align_up(info.mem_bytes, layout::HUGE_PAGE_SIZE);
    // SAFETY: deliberately reads the MMIO window above RAM (no memory slot): the VMM records it.
    let _ = unsafe { core::ptr::read_volatile(addr as *const u64) };
}
extern "C" fn read_unmapped() {
    // SAFETY: deliberately reads far above guest RAM, where nothing is mapped: a page fault.
    let _ = unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
}
extern "C" fn read_host_kernel_address() {
    // SAFETY: deliberately reads a typical host kernel direct-map address: a page fault in the guest.
    let _ = unsafe { core::ptr::read_volatile(0xffff_8880_0000_0000u64 as *const u64) };
}
extern "C" fn write_page_tables() {
    // SAFETY: deliberately writes the guest's own PML4 (a supervisor page): a page fault at CPL3.
    unsafe { core::ptr::write_volatile(layout::PML4_ADDR as *mut u64, 0) };
}
extern "C" fn priv_cli() {
    // SAFETY: privileged at CPL3 (#GP expected); the flag it would clear is the guest's own.
    unsafe { asm!("cli", options(nomem, nostack)) };
}
extern "C" fn priv_hlt() {
    // SAFETY: privileged at CPL3: #GP expected.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}
extern "C" fn priv_wrmsr() {
    // SAFETY: privileged at CPL3 (#GP expected); would write IA32_LSTAR with 0.
    unsafe { asm!("wrmsr", in("ecx") 0xc000_0082u32, in("eax") 0u32, in("edx") 0u32, options(nomem, nostack)) };
}
extern "C" fn priv_mov_cr3() {
    // SAFETY: privileged at CPL3 (#GP expected).
    unsafe { asm!("mov cr3, {}", in(reg) 0u64, options(nostack)) };
}
extern "C" fn priv_lgdt() {
    let desc = [0u64; 2];
    // SAFETY: privileged at CPL3 (#GP expected).
    unsafe { asm!("lgdt [{}]", in(reg) desc.as_ptr(), options(nostack)) };
}

/// (id, what it tries, probe, target is outside the guest).
const CATALOGUE: &[(&str, &str, extern "C" fn(), bool)] = &[
    ("guest.port_post", "out to port 0x80", port_post, true),
    ("guest.port_serial", "in from port 0x3f8", port_serial_in, true),
    ("guest.port_pci_config", "out to PCI config port 0xcf8", port_pci_config, true),
    ("guest.mmio_above_ram", "read right above guest RAM", mmio_above_ram, true),
    ("guest.read_unmapped", "read at 0x4000000000", read_unmapped, true),
    ("guest.read_host_kernel_address", "read at 0xffff888000000000", read_host_kernel_address, true),
    ("guest.write_page_tables", "write the guest PML4 from CPL3", write_page_tables, false),
    ("guest.priv_cli", "cli at CPL3", priv_cli, false),
    ("guest.priv_hlt", "hlt at CPL3", priv_hlt, false),
    ("guest.priv_wrmsr", "wrmsr IA32_LSTAR at CPL3", priv_wrmsr, false),
    ("guest.priv_mov_cr3", "mov cr3 at CPL3", priv_mov_cr3, false),
    ("guest.priv_lgdt", "lgdt at CPL3", priv_lgdt, false),
];

fn exception_name(v: u64) -> &'static str {
    match v {
        6 => "#UD",
        13 => "#GP",
        14 => "#PF",
        _ => "exception",
    }
}

/// Run the probe catalogue.
pub fn run(g: &mut Guest) {
    if crate::boot_info().flags & layout::FLAG_PROBE_MODE == 0 {
        let reason = "the VMM did not enable probe mode (probes would end the VM)";
        g.send(&Message::Probe { id: "guest.catalogue", outcome: ProbeOutcome::Error, detail: reason });
        return;
    }
    for &(id, what, probe, outside) in CATALOGUE {
        let seen = try_probe(probe);
        let mut detail = Line::new();
        let outcome = match seen.exit_kind {
            probe_exit::UNKNOWN_PORT => {
                let _ = write!(detail, "{what}: the VMM rejected port 0x{:x} (no device)", seen.value);
                ProbeOutcome::Blocked
            }
            probe_exit::MMIO => {
                let _ = write!(detail, "{what}: MMIO exit at 0x{:x}, no memory behind it", seen.value);
                ProbeOutcome::Blocked
            }
            probe_exit::EXCEPTION => {
                let _ = write!(detail, "{what}: {} ({}) at CPL3", exception_name(seen.value), seen.value);
                ProbeOutcome::Blocked
            }
            _ if outside => {
                let _ = write!(detail, "{what}: completed without any exit");
                ProbeOutcome::Reached
            }
            _ => {
                let _ = write!(detail, "{what}: completed inside the guest without a trap");
                ProbeOutcome::Error
            }
        };
        let detail = core::str::from_utf8(detail.as_bytes()).unwrap_or("");
        g.send(&Message::Probe { id, outcome, detail });
    }
}
