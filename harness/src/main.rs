//! `vmct`: see `vmct --help` and README.md.
fn main() -> std::process::ExitCode {
    harness::cli::main()
}
