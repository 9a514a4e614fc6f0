//! The contract between vmct's VMM and its bare guest: one definition, compiled into both.
//!
//! The VMM (crate `microvm`, as `microvm::layout`) and the freestanding guest ELF (`workloads/guest`,
//! built in its own cargo invocation) both depend on this crate by path, so the addresses, the port
//! map and the boot-info block cannot drift apart. It uses nothing but `core` and has no
//! dependencies (the guest's lock file stays free of host crates).
#![no_std]

pub mod layout;
