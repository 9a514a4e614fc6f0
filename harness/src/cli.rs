//! The command line (thin: parsing and printing; work happens in experiments and backends).
use std::process::ExitCode;

/// Entry point of the `vmct` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The VMM re-exec path is hot (it is part of microVM launch): dispatch before any parsing.
    if args.get(1).map(String::as_str) == Some("__vmm") {
        return crate::backend::microvm::vmm_main(&args[2..]);
    }
    ExitCode::SUCCESS
}
