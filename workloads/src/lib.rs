//! The vmct workload core: the same code runs as a host process, inside a container,
//! inside a Linux microVM guest and as the bare (no OS) microVM guest.
//!
//! It is `no_std` so the bare guest can link it without an OS. The pieces:
//! - [`protocol`]: the message set every platform speaks (`ready`, `result`, `probe`, `done`, ...).
//! - [`scenario`]: the scenarios (`ready`, `idle`, `cpu`, `mem`, `syscall`, `io`, `probe`) and their arguments.
//! - [`kernels`]: the measured compute and memory kernels.
//! - [`runner`]: runs a scenario against a [`runner::Platform`], the thin layer each build provides.
//! - [`image_run`]: an image's own process as the workload: readiness rules and the guest's run parameters.
//! - [`probe_ids`]: the isolation probe ids, their targets and the canary environment names (shared with the harness).
#![no_std]

pub mod image_run;
pub mod kernels;
pub mod probe_ids;
pub mod protocol;
pub mod runner;
pub mod scenario;
pub mod sha256;

/// One mebibyte in bytes.
pub const MIB: usize = 1 << 20;
