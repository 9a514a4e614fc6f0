//! vmct's VMM: a KVM microVM for the **bare** guest model (no guest OS; the workload runs at CPL3).
//!
//! The boot is one recipe ([`vm::Vm::boot`]): check KVM -> create the VM -> guest memory -> load the
//! guest ELF -> GDT/IDT/TSS/page tables -> vCPU registers (CPL3, IOPL=3) -> run loop ([`vm::Vm::run`]).
//! KVM, VM, memory and vCPU creation is one [`builder`] shared by boot, snapshot restore and the
//! linux guest model.
//! The guest talks to the VMM through the port map in [`layout::ports`]: protocol lines go into a
//! mailbox in guest memory and one doorbell port forwards them.
//!
//! ```no_run
//! use microvm::{loader::Image, vm::{CollectHost, Vm, VmConfig}};
//! let guest = std::fs::read("vmct-guest").unwrap();
//! let mut vm = Vm::boot(VmConfig::new("cpu --iters 1000"), Image::Elf(&guest)).unwrap();
//! let mut host = CollectHost::default();
//! let status = vm.run(&mut host).unwrap();
//! assert!(host.output.contains("@vmct ready"));
//! assert_eq!(status, 0);
//! ```
//!
//! Modules, from the bottom: [`layout`] (addresses, port map, boot-info block: the `guest-abi` crate),
//! [`sys`] (OS and KVM wrappers, the watchdog), [`observe`] (typed phases, the observer and host
//! traits), [`builder`] (KVM, VM, memory, vCPUs), [`arch`] (descriptor tables, stubs, page tables),
//! [`loader`], [`error`] (typed errors and exit kinds), [`vm`] (configuration and boot), [`vcpu`] (the
//! run loop, one exit at a time), [`snapshot`] (save a paused VM, restore copy-on-write; depends on
//! [`vm`], not the reverse), [`run`] (the driver: run loop plus snapshot requests), [`vmm`] (the
//! one-VM-per-process entry point behind the `vmct-vmm` binary), [`status`] (KVM flavour, guest
//! models), [`confine`] (the VMM's seccomp filter), [`linux`] (the linux guest model), [`smp`] (secondary vCPUs running `cpu` work). The only
//! `unsafe` code is in [`sys`] and [`confine`].
pub mod arch;
pub mod builder;
pub mod confine;
pub mod error;
/// The bare guest's memory layout and port map: the [`guest_abi`] crate, shared with the guest.
pub use guest_abi::layout;
pub mod linux;
pub mod loader;
pub mod observe;
pub mod run;
pub mod smp;
pub mod snapshot;
pub mod status;
pub mod sys;
pub mod vcpu;
pub mod vm;
pub mod vmm;
