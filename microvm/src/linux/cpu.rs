//! Boot-time vCPU state for the 64-bit Linux entry, as Firecracker sets it
//! (`arch/x86_64/{regs,msr,interrupts}.rs`, `cpu_config`). Order, as Firecracker's `configure`:
//! 1. CPUID (supported leaves, APIC id, hypervisor bit), before the MSRs KVM checks against it;
//! 2. boot MSRs;
//! 3. general registers (rip = entry, rsi = zero page);
//! 4. FPU;
//! 5. special registers (GDT, long mode, paging);
//! 6. LAPIC LINT0 = ExtINT, LINT1 = NMI.
use super::{boot, layout};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

/// Errors setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A vCPU ioctl failed.
    #[error("linux vcpu: {what} failed: {source}")]
    Ioctl {
        /// Which step.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// KVM accepted fewer MSRs than given.
    #[error("linux vcpu: KVM set {set} of {wanted} boot MSRs")]
    Msrs {
        /// Set.
        set: usize,
        /// Given.
        wanted: usize,
    },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Ioctl { what, source }
}

/// MSR indices Firecracker initialises at boot, and their values.
pub const BOOT_MSRS: [(u32, u64); 11] = [
    (0x174, 0),             // IA32_SYSENTER_CS
    (0x175, 0),             // IA32_SYSENTER_ESP
    (0x176, 0),             // IA32_SYSENTER_EIP
    (0xc000_0081, 0),       // STAR
    (0xc000_0083, 0),       // CSTAR
    (0xc000_0102, 0),       // KERNEL_GS_BASE
    (0xc000_0084, 0),       // SYSCALL_MASK
    (0xc000_0082, 0),       // LSTAR
    (0x10, 0),              // IA32_TSC
    (0x1a0, 1),             // IA32_MISC_ENABLE: fast strings
    (0x2ff, (1 << 11) | 6), // MTRRdefType: MTRRs enabled, default write-back
];

/// CR0 protection enable.
const CR0_PE: u64 = 1;
/// CR0 paging.
const CR0_PG: u64 = 1 << 31;
/// CR4 physical address extension.
const CR4_PAE: u64 = 1 << 5;
/// EFER long mode enable / active.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// LAPIC local vector table registers and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 4;
const APIC_MODE_EXTINT: u32 = 7;

/// Configure vCPU `id` to enter a 64-bit kernel at `entry`.
pub fn configure(kvm: &Kvm, vcpu: &VcpuFd, id: u8, entry: u64) -> Result<(), CpuError> {
    // 1. CPUID.
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            // Initial APIC id in EBX[31:24], one logical CPU, and the hypervisor bit in ECX[31].
            e.ebx = (e.ebx & 0x0000_ffff) | (1 << 16) | (u32::from(id) << 24);
            e.ecx |= 1 << 31;
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
    // 2. MSRs.
    let entries: Vec<kvm_msr_entry> =
        BOOT_MSRS.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries).expect("11 MSRs fit the FAM wrapper");
    let set = vcpu.set_msrs(&msrs).map_err(ioctl("KVM_SET_MSRS"))?;
    if set != entries.len() {
        return Err(CpuError::Msrs { set, wanted: entries.len() });
    }
    // 3. General registers.
    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: layout::BOOT_STACK_POINTER,
        rbp: layout::BOOT_STACK_POINTER,
        rsi: layout::ZERO_PAGE_START,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
    // 4. FPU.
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;
    // 5. Special registers: flat segments from the boot GDT, long mode with the identity map.
    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    sregs.gdt.base = layout::GDT_START;
    sregs.gdt.limit = u16::try_from(std::mem::size_of_val(&boot::GDT) - 1).expect("four descriptors: 31");
    sregs.idt.base = layout::IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = boot::segment(1);
    let data = boot::segment(2);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = boot::segment(3);
    sregs.cr3 = layout::PML4_START;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    // 6. LAPIC: LINT0 delivers the PIC's interrupts (ExtINT), LINT1 NMIs.
    let mut lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let v = lapic_reg(&lapic.regs, reg);
        set_lapic_reg(&mut lapic.regs, reg, (v & !0x700) | (mode << 8));
    }
    vcpu.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))?;
    Ok(())
}

fn lapic_reg(regs: &[libc::c_char; 1024], at: usize) -> u32 {
    u32::from_le_bytes([regs[at] as u8, regs[at + 1] as u8, regs[at + 2] as u8, regs[at + 3] as u8])
}

fn set_lapic_reg(regs: &mut [libc::c_char; 1024], at: usize, v: u32) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        regs[at + i] = b as libc::c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_register_round_trip() {
        let mut regs = [0 as libc::c_char; 1024];
        set_lapic_reg(&mut regs, APIC_LVT0, 0x0001_0700);
        assert_eq!(lapic_reg(&regs, APIC_LVT0), 0x0001_0700);
        assert_eq!(lapic_reg(&regs, APIC_LVT1), 0);
    }

    #[test]
    fn boot_msrs_match_firecracker() {
        let get = |i| BOOT_MSRS.iter().find(|m| m.0 == i).map(|m| m.1);
        assert_eq!(get(0x1a0), Some(1));
        assert_eq!(get(0x2ff), Some(0x806));
        assert_eq!(get(0xc000_0082), Some(0));
    }
}
