//! The `microvm` backend (placeholder until the microvm issue lands).
use std::process::ExitCode;

/// Entry of `vmct __vmm ...`: runs one VM in this process.
pub fn vmm_main(_args: &[String]) -> ExitCode {
    eprintln!("vmct __vmm: the microVM backend is not built yet");
    ExitCode::from(1)
}
