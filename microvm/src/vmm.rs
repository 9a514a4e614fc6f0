//! The VMM process: one VM per process, protocol lines on stdout, "stop" on stdin.
//!
//! ```text
//! vmct-vmm --guest PATH [--mem-mib N] [--vcpus N] [--watchdog-ms N] [--probe] [--test-hook NAME] -- WORDS...
//! vmct-vmm --restore DIR [--watchdog-ms N]
//! ```
//! Just before the guest runs, the VMM installs its seccomp allowlist (always, see [`crate::confine`]);
//! the `confine` phase marks when it is in place. Its jail, if any, is made by the launcher.
//! `--test-violate-seccomp` (or `VMCT_VMM_TEST_VIOLATE_SECCOMP=1`) makes it then attempt a syscall
//! outside the allowlist, for tests: the kernel kills it with SIGSYS.
//! stdout carries `@vmct phase NAME MONO_NS` lines (vmm_start, kvm_open, vm_create, memory, load,
//! vcpu_setup, first_exit, ready; done before the guest's last lines), then the guest's protocol
//! lines. The guest's `idle` wait ends when stdin reaches EOF or reads a `stop` line; a `snapshot DIR`
//! line saves the VM into DIR (see [`crate::snapshot`]), answers with `@vmct result snapshot.* ...` lines
//! ending with `snapshot.bytes` (or one `@vmct failed snapshot REASON` line) and keeps waiting.
//! `--restore DIR` starts a VM from such a snapshot instead of booting one: it reports `ready` again
//! and continues where the snapshotted VM was. On an abnormal end
//! the VMM prints `vmct-vmm: error: ...` on stderr and exits with the error's code
//! ([`crate::vm::exit_code_kind`] maps it back to a kind). `VMCT_VM_WATCHDOG_MS` and
//! `VMCT_GUEST_TEST_HOOK` in the environment override the flags (so a harness can set them per instance).
use crate::confine;
use crate::error::{ErrorKind, VmError};
use crate::layout::hooks;
use crate::loader::Image;
use crate::observe::{Host, HostCommand, Observer, Phase};
use crate::snapshot::SnapshotError;
use crate::sys;
use crate::vm::{Vm, VmConfig};
use std::io::{BufRead, Write};
use std::time::Duration;

/// Exit code for command-line errors.
pub const USAGE_EXIT: u8 = 2;

/// Command-line errors of the VMM process.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A flag is unknown or lacks its value.
    #[error("vmct-vmm: {0}\nusage: vmct-vmm --guest PATH [--mem-mib N] [--vcpus N] [--watchdog-ms N] [--probe] [--test-hook NAME] -- WORDS...\n       vmct-vmm --restore DIR [--watchdog-ms N]")]
    Usage(String),
    /// The guest image cannot be read.
    #[error("vmct-vmm: cannot read guest image {path}: {source}")]
    Guest {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Guest ELF path (empty with `--restore`).
    pub guest: String,
    /// VM configuration (with `--restore`, only the watchdog is used, and only if given).
    pub config: VmConfig,
    /// Snapshot directory to restore from instead of booting.
    pub restore: Option<String>,
    /// Test hook: attempt a syscall outside the seccomp allowlist once it is installed.
    pub violate_seccomp: bool,
}

fn hook_number(name: &str) -> Result<u32, ArgsError> {
    hooks::NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| u32::try_from(i).expect("a handful of hooks"))
        .ok_or_else(|| ArgsError::Usage(format!("unknown test hook '{name}'; valid: {}", hooks::NAMES.join(", "))))
}

/// Parse the VMM command line (without the program name); `env` looks up overriding variables.
pub fn parse_args(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Args, ArgsError> {
    let mut config = VmConfig::new("");
    let mut guest = None;
    let mut restore = None;
    let mut watchdog_set = false;
    let mut violate_seccomp = env("VMCT_VMM_TEST_VIOLATE_SECCOMP").is_some_and(|v| v == "1");
    let mut words = Vec::new();
    let mut it = args.iter();
    let num = |flag: &str, v: Option<&String>| -> Result<u64, ArgsError> {
        let v = v.ok_or_else(|| ArgsError::Usage(format!("{flag} needs a value")))?;
        v.parse().map_err(|_| ArgsError::Usage(format!("{flag}: '{v}' is not a whole number")))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--guest" => {
                guest = Some(it.next().ok_or_else(|| ArgsError::Usage("--guest needs a path".into()))?.clone())
            }
            "--mem-mib" => config.mem_bytes = num(a, it.next())?.saturating_mul(1 << 20),
            "--vcpus" => config.vcpus = u32::try_from(num(a, it.next())?).unwrap_or(u32::MAX),
            "--watchdog-ms" => {
                config.watchdog = Some(Duration::from_millis(num(a, it.next())?));
                watchdog_set = true;
            }
            "--restore" => {
                restore = Some(it.next().ok_or_else(|| ArgsError::Usage("--restore needs a directory".into()))?.clone())
            }
            "--probe" => config.probe_mode = true,
            "--test-violate-seccomp" => violate_seccomp = true,
            "--test-hook" => {
                config.test_hook =
                    hook_number(it.next().ok_or_else(|| ArgsError::Usage("--test-hook needs a name".into()))?)?
            }
            "--" => {
                words.extend(it.by_ref().cloned());
            }
            other => return Err(ArgsError::Usage(format!("unknown argument '{other}'"))),
        }
    }
    if let Some(ms) = env("VMCT_VM_WATCHDOG_MS") {
        config.watchdog = Some(Duration::from_millis(num("VMCT_VM_WATCHDOG_MS", Some(&ms))?));
        watchdog_set = true;
    }
    if let Some(h) = env("VMCT_GUEST_TEST_HOOK") {
        config.test_hook = hook_number(&h)?;
    }
    config.args = words.join(" ");
    if let Some(dir) = restore {
        if guest.is_some() || !config.args.is_empty() {
            return Err(ArgsError::Usage("--restore DIR takes no --guest and no scenario words".into()));
        }
        if !watchdog_set {
            config.watchdog = None;
        }
        return Ok(Args { guest: String::new(), config, restore: Some(dir), violate_seccomp });
    }
    let guest = guest.ok_or_else(|| ArgsError::Usage("--guest PATH is required".into()))?;
    if config.args.is_empty() {
        return Err(ArgsError::Usage("no scenario words after --".into()));
    }
    Ok(Args { guest, config, restore: None, violate_seccomp })
}

/// The process [`Host`]: phases are buffered and written with the next guest output in one write.
struct StdioHost {
    pending: String,
}

impl StdioHost {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        // The harness reading our stdout may be gone; there is nobody left to tell.
        let _ = out.write_all(self.pending.as_bytes()).and_then(|_| out.flush());
        self.pending.clear();
    }
}

impl Observer for StdioHost {
    fn phase(&mut self, phase: Phase, mono_ns: u64) {
        self.pending.push_str(&phase.protocol_line(mono_ns));
    }
}

impl Host for StdioHost {
    fn output(&mut self, lines: &str) {
        self.pending.push_str(lines);
        self.flush();
    }
    fn wait_for_stop(&mut self) {
        while self.wait_for_command() != HostCommand::Stop {}
    }
    fn wait_for_command(&mut self) -> HostCommand {
        self.flush();
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => return HostCommand::Stop,
                Ok(_) => {
                    if let Some(c) = parse_command(&line) {
                        return c;
                    }
                }
            }
        }
    }
}

/// A command line on the VMM's stdin: `stop`, or `snapshot DIR`; None for anything else (ignored).
pub fn parse_command(line: &str) -> Option<HostCommand> {
    let line = line.trim();
    match line.split_once(' ') {
        None if line == "stop" => Some(HostCommand::Stop),
        Some(("snapshot", dir)) if !dir.trim().is_empty() => Some(HostCommand::Snapshot(dir.trim().into())),
        _ => None,
    }
}

/// Run one VM as this process; returns the process exit code (the guest's status, or an error code).
pub fn main(args: &[String]) -> u8 {
    let start = sys::mono_ns();
    let args = match parse_args(args, |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return USAGE_EXIT;
        }
    };
    let mut host = StdioHost { pending: String::with_capacity(1024) };
    let vm = match &args.restore {
        Some(dir) => {
            host.phase(Phase::VmmStart, start);
            Vm::restore(std::path::Path::new(dir), args.config.watchdog).map_err(VmmError::Restore)
        }
        None => {
            let image = match std::fs::read(&args.guest) {
                Ok(b) => b,
                Err(source) => {
                    eprintln!("{}", ArgsError::Guest { path: args.guest.clone(), source });
                    return USAGE_EXIT;
                }
            };
            host.phase(Phase::VmmStart, start);
            Vm::boot(args.config, Image::Elf(&image)).map_err(VmmError::Vm)
        }
    };
    let result = vm.and_then(|mut vm| {
        for (phase, ns) in vm.timeline.marks.clone() {
            host.phase(phase, ns);
        }
        // Built during setup; installed right before the first KVM_RUN.
        let filter = confine::vcpu_filter().map_err(VmError::from)?;
        // Secondary vCPUs with work of their own (see crate::smp) confine themselves on their threads.
        vm.start_secondaries(&filter)?;
        let mut before_guest = |host: &mut dyn Host| -> Result<(), VmError> {
            confine::before_guest(&filter)?;
            host.phase(Phase::Confine, sys::mono_ns());
            if args.violate_seccomp {
                host.output(&format!("{}\n", confine::violate_seccomp_for_test()));
            }
            Ok(())
        };
        Ok(vm.run_with(&mut host, &mut before_guest)?)
    });
    host.flush();
    match result {
        Ok(status) => u8::try_from(status).unwrap_or(1),
        Err(e) => report(&e),
    }
}

/// How the VMM process ended abnormally: booting or running the VM failed, or restoring it did.
#[derive(Debug, thiserror::Error)]
enum VmmError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Restore(SnapshotError),
}

impl VmmError {
    fn kind(&self) -> ErrorKind {
        match self {
            VmmError::Vm(e) => e.kind(),
            VmmError::Restore(e) => e.kind(),
        }
    }
}

fn report(e: &VmmError) -> u8 {
    let kind = e.kind();
    eprintln!("vmct-vmm: error: {e} [{kind}]");
    kind.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_words_and_env_overrides() {
        let a = parse_args(
            &s(&["--guest", "/g", "--mem-mib", "32", "--vcpus", "2", "--probe", "--", "cpu", "--iters", "5"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(a.guest, "/g");
        assert_eq!(a.config.mem_bytes, 32 << 20);
        assert_eq!(a.config.vcpus, 2);
        assert!(a.config.probe_mode);
        assert_eq!(a.config.args, "cpu --iters 5");
        let env = |k: &str| match k {
            "VMCT_VM_WATCHDOG_MS" => Some("250".to_string()),
            "VMCT_GUEST_TEST_HOOK" => Some("loop-forever".to_string()),
            _ => None,
        };
        let a = parse_args(&s(&["--guest", "/g", "--", "ready"]), env).unwrap();
        assert_eq!(a.config.watchdog, Some(Duration::from_millis(250)));
        assert_eq!(a.config.test_hook, hooks::LOOP_FOREVER);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let e = parse_args(&s(&["--", "ready"]), |_| None).unwrap_err().to_string();
        assert!(e.contains("--guest PATH is required"), "{e}");
        let e = parse_args(&s(&["--guest", "/g", "--mem-mib", "x", "--", "ready"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("'x' is not a whole number"));
        let e = parse_args(&s(&["--guest", "/g", "--test-hook", "nope", "--", "ready"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("valid: none, fault-ud"));
        let e = parse_args(&s(&["--guest", "/g"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("no scenario words"));
        let e = parse_args(&s(&["--restore", "/d", "--", "idle"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("--restore DIR takes no --guest"), "{e}");
    }

    #[test]
    fn restore_needs_only_a_directory_and_keeps_the_snapshot_watchdog_unless_given() {
        let a = parse_args(&s(&["--restore", "/snap"]), |_| None).unwrap();
        assert_eq!((a.restore.as_deref(), a.config.watchdog), (Some("/snap"), None));
        let a = parse_args(&s(&["--restore", "/snap", "--watchdog-ms", "5"]), |_| None).unwrap();
        assert_eq!(a.config.watchdog, Some(Duration::from_millis(5)));
    }

    #[test]
    fn stdin_commands_are_stop_and_snapshot() {
        assert_eq!(parse_command("stop\n"), Some(HostCommand::Stop));
        assert_eq!(parse_command("snapshot /tmp/a b\n"), Some(HostCommand::Snapshot("/tmp/a b".into())));
        assert_eq!(parse_command("snapshot \n"), None);
        assert_eq!(parse_command("hello\n"), None);
    }
}
