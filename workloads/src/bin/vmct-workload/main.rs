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
mod image;
mod init;
mod linux;
mod probes;

use std::process::ExitCode;
use workloads::scenario::Scenario;

fn main() -> ExitCode {
    if init::is_guest_init() {
        // /init of a linux-guest microVM: scenario from the kernel command line, VM ends after it.
        // With `vmct.image=1` it runs an image from its root disk instead (see `image`).
        let args = init::start();
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        init::finish(if image::requested(&cmdline) { image::run(args) } else { run(args) });
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
    if let Err(e) = dirty_files() {
        eprintln!("vmct-workload: {e}");
        return 1;
    }
    memory_merge();
    let mut platform = linux::LinuxPlatform::new();
    let status = workloads::runner::run(&scenario, &mut platform);
    u8::try_from(status).unwrap_or(1)
}

/// Environment variable asking the workload to make all its memory mergeable by KSM (the memory
/// experiment's KSM sweep): `1` calls `prctl(PR_SET_MEMORY_MERGE, 1)` (Linux >= 6.4) before the
/// scenario. A kernel without it answers EINVAL: the workload says so on stderr and runs unmerged
/// (the harness reads which mappings are mergeable from /proc/PID/smaps).
pub const MEMORY_MERGE_ENV: &str = "VMCT_MEMORY_MERGE";

fn memory_merge() {
    if std::env::var_os(MEMORY_MERGE_ENV).is_some_and(|v| v == "1") {
        // SAFETY: PR_SET_MEMORY_MERGE takes integer arguments only and changes no memory we hold.
        let r = unsafe { libc::prctl(libc::PR_SET_MEMORY_MERGE, 1, 0, 0, 0) };
        if r != 0 {
            eprintln!("vmct-workload: prctl(PR_SET_MEMORY_MERGE): {}", std::io::Error::last_os_error());
        }
    }
}

/// `VMCT_DIRTY_FILE_MIB=N`: write N MiB to `vmct-dirty.dat` in the working directory before the
/// scenario, so the instance has file state to save (the snapshot experiment's container commit).
fn dirty_files() -> Result<(), String> {
    let Some(v) = std::env::var_os("VMCT_DIRTY_FILE_MIB") else { return Ok(()) };
    let mib: u64 = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n <= workloads::scenario::MAX_MIB)
        .ok_or_else(|| format!("VMCT_DIRTY_FILE_MIB={v:?}: expected a whole number of MiB"))?;
    if mib == 0 {
        return Ok(());
    }
    use std::io::Write;
    let mut f = std::fs::File::create("vmct-dirty.dat").map_err(|e| format!("cannot create vmct-dirty.dat: {e}"))?;
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&chunk).map_err(|e| format!("cannot write vmct-dirty.dat: {e}"))?;
    }
    Ok(())
}
