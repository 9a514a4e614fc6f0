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
use crate::layout::{self, wait};
use crate::loader::Loaded;
use crate::sys;
use crate::vm::{self, Timeline, Vm, VmConfig, VmError};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

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
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Kvm { what, source }
}

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
            vcpus: self.vcpus.len() as u32,
            args: self.args.clone(),
            watchdog: self.watchdog_ms.map(Duration::from_millis),
            probe_mode: self.probe_mode,
            test_hook: self.test_hook,
        }
    }
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
        format!(
            "@vmct result snapshot.memory_bytes {} bytes\n@vmct result snapshot.resident_pages {} pages\n\
             @vmct result snapshot.save_s {} s\n@vmct result snapshot.bytes {} bytes\n",
            self.memory_bytes,
            self.resident_pages,
            self.pause_s,
            self.bytes()
        )
    }
}

/// The protocol line the VMM prints when a snapshot failed (the VM keeps running): `failed`, since
/// saving is something this VMM does and this attempt did not (a full disk, a write error).
pub fn failure_line(e: &SnapshotError) -> String {
    let mut line = String::new();
    let reason = e.to_string();
    let _ = workloads::protocol::Message::Failed { what: "snapshot", reason: &reason }.encode(&mut line);
    line
}

/// True if `page` is all zero bytes (vectorizable: no early exit inside a 64-byte line).
fn is_zero(page: &[u8]) -> bool {
    page.chunks(64).all(|line| line.iter().fold(0u8, |a, b| a | b) == 0)
}

/// Write the resident, non-zero pages of guest memory `[0, mem_bytes)` into a new sparse file at
/// `path` of length `mem_bytes`; returns (bytes written, resident pages).
pub fn save_memory(mem: &GuestMemoryMmap, mem_bytes: u64, path: &Path) -> Result<(u64, u64), SnapshotError> {
    const RUN_PAGES: usize = 256;
    let page = layout::PAGE_SIZE as usize;
    let file = File::create(path).map_err(io_err(path))?;
    file.set_len(mem_bytes).map_err(io_err(path))?;
    let resident = sys::resident_pages(mem, mem_bytes as usize)?;
    let n = resident.len();
    let mut buf = vec![0u8; RUN_PAGES * page];
    let (mut written, mut i) = (0u64, 0usize);
    while i < n {
        if !resident[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && resident[j] && j - i < RUN_PAGES {
            j += 1;
        }
        let run = &mut buf[..(j - i) * page];
        mem.read_slice(run, GuestAddress((i * page) as u64)).map_err(|e| SnapshotError::Memory(e.to_string()))?;
        let mut k = 0;
        while k < j - i {
            if is_zero(&run[k * page..(k + 1) * page]) {
                k += 1;
                continue;
            }
            let mut l = k;
            while l < j - i && !is_zero(&run[l * page..(l + 1) * page]) {
                l += 1;
            }
            file.write_all_at(&run[k * page..l * page], ((i + k) * page) as u64).map_err(io_err(path))?;
            written += ((l - k) * page) as u64;
            k = l;
        }
        i = j;
    }
    let resident_pages = resident.iter().filter(|r| **r).count() as u64;
    Ok((written, resident_pages))
}

/// Map `path` (a snapshot memory file of exactly `mem_bytes`) as guest memory, `MAP_PRIVATE`:
/// copy-on-write, nothing read until the guest touches it.
pub fn map_memory(path: &Path, mem_bytes: u64) -> Result<GuestMemoryMmap, SnapshotError> {
    let file = std::fs::OpenOptions::new().read(true).open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len != mem_bytes {
        return Err(SnapshotError::Format {
            path: path.into(),
            reason: format!("memory file is {len} bytes, the state says {mem_bytes}"),
        });
    }
    let memory = |e: String| SnapshotError::Memory(format!("map {}: {e}", path.display()));
    let region = MmapRegionBuilder::new(mem_bytes as usize)
        .with_file_offset(FileOffset::new(file, 0))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
        .build()
        .map_err(|e| memory(e.to_string()))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or_else(|| memory("region overflows".into()))?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| memory(e.to_string()))
}

impl Vm {
    /// Save this VM to `dir` (created if needed). Call only while vCPU 0 sits in a
    /// [`layout::ports::WAIT_STOP`] read whose result was set to [`wait::RESTORED`] (the run loop does
    /// this); afterwards the read returns [`wait::SNAPSHOT_DONE`] to this VM, whether saving worked
    /// or not.
    pub fn save_snapshot(&mut self, dir: &Path) -> Result<SnapshotInfo, SnapshotError> {
        let t0 = sys::mono_ns();
        // 1. Complete the pending port read: KVM_RUN with immediate_exit returns EINTR right after.
        self.vcpus[0].set_kvm_immediate_exit(1);
        let r = self.vcpus[0].run().map(|e| format!("{e:?}"));
        self.vcpus[0].set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(SnapshotError::Kvm { what: "KVM_RUN (immediate exit)", source: e }),
            Ok(exit) => return Err(SnapshotError::State(format!("vCPU exited ({exit}) instead of pausing"))),
        }
        let result = self.write_snapshot(dir, t0);
        // 3. The running VM: its read now returns SNAPSHOT_DONE.
        let mut regs = self.vcpus[0].get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.rax = wait::SNAPSHOT_DONE as u64;
        self.vcpus[0].set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
        result
    }

    fn write_snapshot(&mut self, dir: &Path, t0: u64) -> Result<SnapshotInfo, SnapshotError> {
        // 2. vCPU state, then memory, then the state file (a directory without it is no snapshot).
        let mut vcpus = Vec::with_capacity(self.vcpus.len());
        for v in &self.vcpus {
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
        if vcpus[0].regs.rax as u32 != wait::RESTORED {
            return Err(SnapshotError::State(format!(
                "vCPU 0 is not in a completed stop-port read (rax 0x{:x}, rip 0x{:x})",
                vcpus[0].regs.rax, vcpus[0].regs.rip
            )));
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mem_bytes = layout::align_up(self.config.mem_bytes, layout::HUGE_PAGE_SIZE);
        let (memory_bytes, resident_pages) = save_memory(&self.mem, mem_bytes, &dir.join(MEMORY_FILE))?;
        let header = Header {
            magic: MAGIC.into(),
            version: VERSION,
            mem_bytes,
            args: self.config.args.clone(),
            probe_mode: self.config.probe_mode,
            test_hook: self.config.test_hook,
            watchdog_ms: self.config.watchdog.map(|w| w.as_millis() as u64),
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
            state_bytes: json.len() as u64,
            resident_pages,
            pause_s: sys::mono_ns().saturating_sub(t0) as f64 / 1e9,
        })
    }

    /// A new VM from the snapshot in `dir`, ready to [`Vm::run`]: its memory is the snapshot's memory
    /// file mapped copy-on-write, its vCPUs carry the saved state. `watchdog` overrides the saved one.
    ///
    /// Phases (in [`Vm::timeline`]): `kvm_open`, `vm_create`, `load` (state file read), `memory`,
    /// `vcpu_setup`.
    pub fn restore(dir: &Path, watchdog: Option<Duration>) -> Result<Vm, VmError> {
        let mut timeline = Timeline::default();
        let kvm = vm::open_kvm()?;
        timeline.mark("kvm_open");
        let vm_fd = kvm.create_vm().map_err(|source| VmError::Setup { what: "KVM_CREATE_VM", source })?;
        timeline.mark("vm_create");
        let header = Header::read(dir)?;
        let mut config = header.config();
        if watchdog.is_some() {
            config.watchdog = watchdog;
        }
        timeline.mark("load");
        let mem = map_memory(&dir.join(MEMORY_FILE), header.mem_bytes)?;
        let host = mem.get_host_address(GuestAddress(0)).map_err(|e| VmError::Memory(e.to_string()))?;
        sys::set_memory_slot(&vm_fd, 0, 0, header.mem_bytes, host)?;
        timeline.mark("memory");
        let mut vcpus = Vec::with_capacity(header.vcpus.len());
        for (id, s) in header.vcpus.iter().enumerate() {
            let v =
                vm_fd.create_vcpu(id as u64).map_err(|source| VmError::Setup { what: "KVM_CREATE_VCPU", source })?;
            v.set_sregs(&s.sregs).map_err(|source| VmError::Setup { what: "KVM_SET_SREGS", source })?;
            v.set_regs(&s.regs).map_err(|source| VmError::Setup { what: "KVM_SET_REGS", source })?;
            v.set_fpu(&kvm_fpu::from(&s.fpu)).map_err(|source| VmError::Setup { what: "KVM_SET_FPU", source })?;
            if let Some(tsc) = s.tsc {
                // Best effort: a guest clock that jumps only affects differences across the restore.
                if let Ok(msrs) =
                    Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, data: tsc, ..Default::default() }])
                {
                    let _ = v.set_msrs(&msrs);
                }
            }
            vcpus.push(v);
        }
        timeline.mark("vcpu_setup");
        let loaded = Loaded { entry: header.entry, end: header.image_end };
        Ok(Vm::assemble(vcpus, vm_fd, kvm, mem, config, loaded, header.tsc_khz, timeline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn memory_is_saved_sparse_and_mapped_back_copy_on_write() {
        let dir = std::env::temp_dir().join(format!("vmct-snaptest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 8u64 << 20;
        let file = sys::memfd(c"vmct-test", size).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            size as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap();
        mem.write_obj(0x1122_3344u32, GuestAddress(0x1000)).unwrap();
        mem.write_obj(7u8, GuestAddress(0x40_0000)).unwrap();
        mem.write_obj(0u8, GuestAddress(0x60_0000)).unwrap(); // resident but zero: a hole
        let path = dir.join(MEMORY_FILE);
        let (written, resident) = save_memory(&mem, size, &path).unwrap();
        assert_eq!(written, 2 * layout::PAGE_SIZE);
        assert!(resident >= 3, "{resident}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);

        let back = map_memory(&path, size).unwrap();
        assert_eq!(back.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 0x1122_3344);
        assert_eq!(back.read_obj::<u8>(GuestAddress(0x40_0000)).unwrap(), 7);
        back.write_obj(9u8, GuestAddress(0x40_0000)).unwrap();
        // Copy-on-write: the file keeps the saved byte.
        let mut b = [0u8; 1];
        File::open(&path).unwrap().read_exact_at(&mut b, 0x40_0000).unwrap();
        assert_eq!(b[0], 7);
        assert!(matches!(map_memory(&path, size * 2), Err(SnapshotError::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn protocol_lines_are_results() {
        let i =
            SnapshotInfo { dir: "/d".into(), memory_bytes: 4096, state_bytes: 100, resident_pages: 3, pause_s: 0.5 };
        assert!(i.protocol_lines().ends_with("@vmct result snapshot.bytes 4196 bytes\n"));
        let e = SnapshotError::State("x\ny".into());
        assert_eq!(failure_line(&e), "@vmct failed snapshot microvm: snapshot: x y\n");
    }
}
