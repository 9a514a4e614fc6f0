//! `vmct-workload`: the static Linux build of the workload, run as a host process, as a container's
//! entry point and as a Linux guest's /init. One scenario per invocation:
//!
//! ```text
//! vmct-workload ready | idle [--hold-mib N] | cpu [--iters N] | mem [--mib N]
//!             | syscall [--n N] | io [--mib N] | probe
//! ```
//! Messages go to stdout in the [`workloads::protocol`] format; `idle` waits until stdin is closed or
//! a line `stop` arrives.
mod hog;
mod init;
mod linux;
mod probes;

use std::process::ExitCode;
use workloads::scenario::Scenario;

fn main() -> ExitCode {
    if init::is_guest_init() {
        // /init of a linux-guest microVM: scenario from the kernel command line, VM ends after it.
        init::finish(run(init::start()));
    }
    ExitCode::from(run(std::env::args().skip(1).collect()))
}

/// Run the scenario given by `args`; returns the exit status.
fn run(args: Vec<String>) -> u8 {
    if args.first().map(String::as_str) == Some("--help") || args.first().map(String::as_str) == Some("-h") {
        println!("usage: vmct-workload <{}> [--flag N]", workloads::scenario::NAMES.join("|"));
        return 0;
    }
    if let Some(status) = hog::run_if_requested(&mut linux::LinuxPlatform::new()) {
        return u8::try_from(status).unwrap_or(1);
    }
    let scenario = match Scenario::parse(args.iter().map(String::as_str)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmct-workload: {e}");
            return 2;
        }
    };
    let mut platform = linux::LinuxPlatform::new();
    let status = workloads::runner::run(&scenario, &mut platform);
    u8::try_from(status).unwrap_or(1)
}
