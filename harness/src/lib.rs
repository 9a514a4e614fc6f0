//! vmct harness: runs one workload as a microVM, a container and a plain process (plus peer runtimes),
//! measures startup, density, overhead and isolation, and writes a run directory the report renders.
//!
//! The CLI ([`cli`]) is thin: experiments ([`experiments`]) drive [`backend::Backend`]s.
pub mod artifacts;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod experiments;
pub mod gc;
pub mod hostlimit;
pub mod images;
pub mod interrupt;
pub mod isolation;
pub mod kernel;
pub mod ksm;
pub mod logs;
pub mod memstat;
pub mod privileged;
pub mod progress;
pub mod shell;
pub mod units;
