//! The snapshot's state file: a small JSON [`Header`] (magic, version, VM configuration, and per vCPU
//! the registers, special registers, FPU/SSE state and the TSC).
use super::{io_err, SnapshotError, MAGIC, STATE_FILE, VERSION};
use crate::vm::VmConfig;
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The FPU/SSE state of a vCPU (`kvm_fpu`, field for field; the padding is not saved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fpu {
    /// x87 registers.
    pub fpr: [[u8; 16]; 8],
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged tag word.
    pub ftwx: u8,
    /// Last x87 opcode.
    pub last_opcode: u16,
    /// Last x87 instruction pointer.
    pub last_ip: u64,
    /// Last x87 data pointer.
    pub last_dp: u64,
    /// XMM registers.
    pub xmm: [[u8; 16]; 16],
    /// SSE control/status.
    pub mxcsr: u32,
}

impl From<&kvm_fpu> for Fpu {
    fn from(f: &kvm_fpu) -> Fpu {
        Fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<&Fpu> for kvm_fpu {
    fn from(f: &Fpu) -> kvm_fpu {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

/// Saved state of one vCPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VcpuState {
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, descriptor-table and control registers.
    pub sregs: kvm_sregs,
    /// FPU and SSE registers.
    pub fpu: Fpu,
    /// Guest TSC (None if KVM would not report it).
    pub tsc: Option<u64>,
}

/// The state file: what a restore needs besides memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: String,
    /// [`VERSION`].
    pub version: u32,
    /// Guest RAM size; the memory file has exactly this length.
    pub mem_bytes: u64,
    /// Scenario words the VM was booted with.
    pub args: String,
    /// Probe mode.
    pub probe_mode: bool,
    /// Test hook.
    pub test_hook: u32,
    /// Watchdog of the original VM, ms (None = none).
    pub watchdog_ms: Option<u64>,
    /// TSC frequency the guest was told, kHz.
    pub tsc_khz: u32,
    /// Image entry point.
    pub entry: u64,
    /// Image end.
    pub image_end: u64,
    /// Bytes of guest memory written to [`MEMORY_FILE`] (the rest is holes).
    pub memory_bytes: u64,
    /// Host CLOCK_MONOTONIC when the snapshot was taken, ns.
    pub taken_mono_ns: u64,
    /// One entry per vCPU, in id order.
    pub vcpus: Vec<VcpuState>,
}

impl Header {
    /// Serialize as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with derived impls into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse and check magic and version; `path` is for messages.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Header, SnapshotError> {
        #[derive(Deserialize)]
        struct Probe {
            magic: String,
            version: u32,
        }
        let format = |e: serde_json::Error| SnapshotError::Format { path: path.into(), reason: e.to_string() };
        let p: Probe = serde_json::from_slice(bytes).map_err(format)?;
        if p.magic != MAGIC {
            return Err(SnapshotError::Magic { path: path.into(), found: p.magic });
        }
        if p.version != VERSION {
            return Err(SnapshotError::Version { path: path.into(), found: p.version });
        }
        let h: Header = serde_json::from_slice(bytes).map_err(format)?;
        if h.vcpus.is_empty() {
            return Err(SnapshotError::Format { path: path.into(), reason: "no vCPU state".into() });
        }
        Ok(h)
    }

    /// Read and check `DIR/`[`STATE_FILE`].
    pub fn read(dir: &Path) -> Result<Header, SnapshotError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        Header::from_json(&bytes, &path)
    }

    /// The VM configuration to restore with.
    pub fn config(&self) -> VmConfig {
        VmConfig {
            mem_bytes: self.mem_bytes,
            vcpus: u32::try_from(self.vcpus.len()).expect("a VM has at most MAX_VCPUS vCPUs"),
            args: self.args.clone(),
            watchdog: self.watchdog_ms.map(Duration::from_millis),
            probe_mode: self.probe_mode,
            test_hook: self.test_hook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{self, wait};

    fn header() -> Header {
        let mut regs = kvm_regs { rip: 0x20_1234, rax: wait::RESTORED as u64, rsp: 0x1f_fff0, ..Default::default() };
        regs.rflags = 0x3202;
        let mut sregs = kvm_sregs { cr0: 0x8000_0011, cr3: layout::PML4_ADDR, efer: 0x500, ..Default::default() };
        sregs.cs.selector = layout::USER_CS;
        sregs.gdt.base = layout::GDT_ADDR;
        let mut fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
        fpu.xmm[3][7] = 0xab;
        Header {
            magic: MAGIC.into(),
            version: VERSION,
            mem_bytes: 24 << 20,
            args: "idle --hold-mib 8".into(),
            probe_mode: false,
            test_hook: 0,
            watchdog_ms: Some(600_000),
            tsc_khz: 2_000_000,
            entry: 0x20_0000,
            image_end: 0x21_0000,
            memory_bytes: 9 << 20,
            taken_mono_ns: 42,
            vcpus: vec![VcpuState { regs, sregs, fpu: Fpu::from(&fpu), tsc: Some(99) }],
        }
    }

    #[test]
    fn header_round_trips_through_json() {
        let h = header();
        let json = h.to_json();
        let back = Header::from_json(&json, Path::new("x")).unwrap();
        assert_eq!(back.to_json(), json);
        assert_eq!(back.vcpus[0].regs.rip, 0x20_1234);
        assert_eq!(back.vcpus[0].sregs.cs.selector, layout::USER_CS);
        assert_eq!(back.vcpus[0].sregs.gdt.base, layout::GDT_ADDR);
        let fpu = kvm_fpu::from(&back.vcpus[0].fpu);
        assert_eq!((fpu.fcw, fpu.mxcsr, fpu.xmm[3][7]), (0x37f, 0x1f80, 0xab));
        let c = back.config();
        assert_eq!((c.mem_bytes, c.vcpus, c.args.as_str()), (24 << 20, 1, "idle --hold-mib 8"));
        assert_eq!(c.watchdog, Some(Duration::from_secs(600)));
    }

    #[test]
    fn wrong_magic_version_or_garbage_is_refused_with_the_path() {
        let mut h = header();
        h.magic = "firecracker".into();
        let e = Header::from_json(&h.to_json(), Path::new("/s/state")).unwrap_err();
        assert!(matches!(e, SnapshotError::Magic { .. }) && e.to_string().contains("/s/state"), "{e}");
        let mut h = header();
        h.version = VERSION + 1;
        let e = Header::from_json(&h.to_json(), Path::new("/s/state")).unwrap_err();
        assert!(e.to_string().contains("format version 2"), "{e}");
        assert!(matches!(Header::from_json(b"{", Path::new("p")), Err(SnapshotError::Format { .. })));
        let mut h = header();
        h.vcpus.clear();
        assert!(matches!(Header::from_json(&h.to_json(), Path::new("p")), Err(SnapshotError::Format { .. })));
    }
}
