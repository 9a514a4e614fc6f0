//! The one VM builder of both guest models (boot, snapshot restore and the linux model use it):
//! open /dev/kvm, create the VM, give it guest memory, create its vCPUs.
//!
//! The recipe, in order (each caller adds its model's steps between them):
//! 1. [`VmBuilder::new`]: open /dev/kvm, check it ([`open_kvm`]), `KVM_CREATE_VM`
//!    ([`Phase::KvmOpen`], [`Phase::VmCreate`]);
//! 2. [`VmBuilder::memfd_memory`] (a fresh memfd, so /proc/PID/smaps tells guest memory from VMM
//!    overhead) or [`VmBuilder::memory`] (a mapping the caller made, e.g. a snapshot's file), registered
//!    as slot 0 at guest physical 0;
//! 3. [`VmBuilder::vcpus`]: `KVM_CREATE_VCPU` for ids `0..count`: the only place vCPUs are created.
//!    The result is a [`Machine`], which owns everything in drop order.
use crate::error::ErrorKind;
use crate::observe::{Phase, Timeline};
use crate::sys::{self, SysError};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Why a VM could not be built (each model wraps these in its own error).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
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
    /// A KVM ioctl failed (during setup, or a vCPU register access).
    #[error("microvm: {what} failed: {source}")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be mapped, read or written.
    #[error("microvm: guest memory: {0}")]
    Memory(String),
    /// An OS wrapper failed (memfd, memory slot, watchdog timer).
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl BuildError {
    /// [`ErrorKind::KvmUnavailable`] when /dev/kvm is missing, inaccessible or lacks what we need;
    /// [`ErrorKind::Setup`] for a failed step.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::KvmMissing | BuildError::KvmAccess(_) | BuildError::KvmApi(_) | BuildError::KvmCap(_) => {
                ErrorKind::KvmUnavailable
            }
            BuildError::Kvm { .. } | BuildError::Memory(_) | BuildError::Sys(_) => ErrorKind::Setup,
        }
    }
}

/// Open /dev/kvm and check it is usable (API version 12, user memory regions).
pub fn open_kvm() -> Result<Kvm, BuildError> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT => BuildError::KvmMissing,
        _ => BuildError::KvmAccess(e),
    })?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(BuildError::KvmApi(api));
    }
    if !kvm.check_extension(Cap::UserMemory) {
        return Err(BuildError::KvmCap("KVM_CAP_USER_MEMORY"));
    }
    Ok(kvm)
}

/// A built VM: vCPUs, VM fd, KVM fd and guest memory. Field order is drop order: the vCPUs, then the
/// VM fd, then guest memory (which must outlive every fd that maps it).
pub struct Machine {
    /// vCPUs, index = vCPU id.
    pub vcpus: Vec<VcpuFd>,
    /// The VM.
    pub vm: VmFd,
    /// /dev/kvm.
    pub kvm: Kvm,
    /// Guest RAM: one region at guest physical 0, memory slot 0.
    pub mem: GuestMemoryMmap,
}

/// A VM being built: steps 1-3 of the module docs.
pub struct VmBuilder {
    vm: VmFd,
    kvm: Kvm,
    mem: Option<GuestMemoryMmap>,
}

impl VmBuilder {
    /// Step 1: open and check /dev/kvm, create the VM; marks [`Phase::KvmOpen`] and [`Phase::VmCreate`].
    pub fn new(timeline: &mut Timeline) -> Result<VmBuilder, BuildError> {
        let kvm = open_kvm()?;
        timeline.mark(Phase::KvmOpen);
        let vm = kvm.create_vm().map_err(|source| BuildError::Kvm { what: "KVM_CREATE_VM", source })?;
        timeline.mark(Phase::VmCreate);
        Ok(VmBuilder { vm, kvm, mem: None })
    }

    /// /dev/kvm.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The VM (for model-specific setup: irqchip, PIT, irqfds).
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// Step 2 with fresh memory: `bytes` of guest RAM in a memfd named `name` (pages cost nothing until
    /// touched), registered as slot 0.
    pub fn memfd_memory(&mut self, name: &std::ffi::CStr, bytes: u64) -> Result<&GuestMemoryMmap, BuildError> {
        let len = sys::host_len(bytes);
        let file = sys::memfd(name, bytes)?;
        let mem =
            GuestMemoryMmap::<()>::from_ranges_with_files([(GuestAddress(0), len, Some(FileOffset::new(file, 0)))])
                .map_err(|e| BuildError::Memory(e.to_string()))?;
        self.memory(mem, bytes)
    }

    /// Step 2 with a mapping the caller made: register its first `bytes` as slot 0.
    pub fn memory(&mut self, mem: GuestMemoryMmap, bytes: u64) -> Result<&GuestMemoryMmap, BuildError> {
        let host = mem.get_host_address(GuestAddress(0)).map_err(|e| BuildError::Memory(e.to_string()))?;
        sys::set_memory_slot(&self.vm, 0, 0, bytes, host)?;
        Ok(self.mem.insert(mem))
    }

    /// Step 3: create vCPUs `0..count` and hand over the whole machine. Needs step 2 first.
    pub fn vcpus(self, count: u32) -> Result<Machine, BuildError> {
        let mem = self.mem.ok_or_else(|| BuildError::Memory("vCPUs created before guest memory".into()))?;
        let vcpus = (0..count)
            .map(|id| {
                self.vm.create_vcpu(u64::from(id)).map_err(|source| BuildError::Kvm { what: "KVM_CREATE_VCPU", source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Machine { vcpus, vm: self.vm, kvm: self.kvm, mem })
    }
}
