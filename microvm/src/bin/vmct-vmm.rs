//! `vmct-vmm`: one microVM per process (see [`microvm::vmm`]). Built statically and embedded in `vmct`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(microvm::vmm::main(&args))
}
