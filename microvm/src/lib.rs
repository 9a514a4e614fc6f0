//! vmct's VMM: a KVM microVM for the **bare** guest model (no guest OS; the workload runs at CPL3).
//!
//! The boot is one recipe ([`vm::Vm::boot`]): check KVM -> create the VM -> guest memory -> load the
//! guest ELF -> GDT/IDT/TSS/page tables -> vCPU registers (CPL3, IOPL=3) -> run loop ([`vm::Vm::run`]).
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
//! Modules: [`layout`] (addresses, port map, boot-info block), [`arch`] (descriptor tables, stubs,
//! page tables), [`loader`], [`vm`] (boot + run loop + typed exit errors), [`vmm`] (the one-VM-per-process
//! entry point behind the `vmct-vmm` binary), [`snapshot`] (save a paused VM, restore copy-on-write), [`smp`] (secondary vCPUs running `cpu` work), [`status`] (KVM flavour, guest models), [`confine`] (the VMM's jail and seccomp
//! filter), [`sys`] and [`confine`] (the only `unsafe` code).
pub mod arch;
pub mod confine;
pub mod layout;
pub mod linux;
pub mod loader;
pub mod smp;
pub mod snapshot;
pub mod status;
pub mod sys;
pub mod vm;
pub mod vmm;
