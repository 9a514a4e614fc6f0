//! One linux-guest VM per process: the entry point behind `vmct __vmm-linux`.
//!
//! ```text
//! vmct __vmm-linux --kernel PATH [--initramfs PATH] [--mem-mib N] [--timeout-s N]
//!                  [--kernel-log] [--early-console] [--pvm-workarounds] -- WORKLOAD ARGS...
//! ```
//! Stdout carries `@vmct phase NAME MONO_NS` lines for [`Phase`]s as they happen, then every console
//! line of the guest (the workload's protocol lines among them). Host stdin is typed into the guest
//! console; at its end the VMM types `stop` (what the `idle` workload waits for). The exit status is
//! the workload's `done` status, or one of the codes below for abnormal ends ([`exit_code_kind`]).
use super::vm::{Console, Control, LinuxVm, LinuxVmConfig, Observer, Outcome, Phase};
use super::{boot, layout};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use workloads::protocol::{Message, PREFIX};

/// Bad command line or unreadable input.
pub const USAGE_EXIT: u8 = 2;
/// Abnormal ends: the guest reset before `done`, panicked, triple-faulted, hit a KVM internal error,
/// was stopped by the watchdog, halted; or the VMM failed.
pub const ABNORMAL_EXITS: [(u8, &str); 7] = [
    (64, "reset_without_done"),
    (65, "guest_panic"),
    (66, "triple_fault"),
    (67, "kvm_internal_error"),
    (68, "watchdog"),
    (69, "halted"),
    (70, "vmm_error"),
];

/// The kind of an abnormal exit status, if it is one.
pub fn exit_code_kind(code: i32) -> Option<&'static str> {
    ABNORMAL_EXITS.iter().find(|(c, _)| i32::from(*c) == code).map(|(_, k)| *k)
}

fn code_of(kind: &str) -> u8 {
    ABNORMAL_EXITS.iter().find(|(_, k)| *k == kind).map_or(70, |(c, _)| *c)
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs file.
    pub initramfs: Option<PathBuf>,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// Watchdog.
    pub timeout: Duration,
    /// Command-line options (workload arguments included).
    pub cmdline: boot::CmdlineOptions,
}

/// Parse `args` (without the program name and subcommand).
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut kernel = None;
    let mut initramfs = None;
    let mut mem_mib = layout::DEFAULT_MEM_BYTES >> 20;
    let mut timeout = Duration::from_secs(600);
    let mut cmdline = boot::CmdlineOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--kernel" => kernel = Some(PathBuf::from(value("--kernel")?)),
            "--initramfs" => initramfs = Some(PathBuf::from(value("--initramfs")?)),
            "--mem-mib" => mem_mib = value("--mem-mib")?.parse().map_err(|e| format!("--mem-mib: {e}"))?,
            "--timeout-s" => {
                timeout =
                    Duration::from_secs_f64(value("--timeout-s")?.parse().map_err(|e| format!("--timeout-s: {e}"))?)
            }
            "--kernel-log" => cmdline.kernel_log = true,
            "--early-console" => cmdline.early_console = true,
            "--pvm-workarounds" => cmdline.pvm_workarounds = true,
            "--" => {
                cmdline.workload_args = it.by_ref().cloned().collect();
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let kernel = kernel.ok_or("--kernel PATH is required")?;
    Ok(Args { kernel, initramfs, mem_mib, timeout, cmdline })
}

/// Prints phases and console lines on stdout; remembers the workload's `done` status.
struct Forward {
    done: Option<i32>,
}

impl Observer for Forward {
    fn phase(&mut self, phase: Phase, mono_ns: u64) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(phase.protocol_line(mono_ns).as_bytes());
        let _ = out.flush();
    }
}

impl Console for Forward {
    fn console_line(&mut self, _: u64, line: &str) -> Control {
        // Protocol lines may follow kernel output on the same line (no newline before /init's first
        // write): start them at the prefix.
        let line = line.find(PREFIX).map_or(line, |i| &line[i..]);
        if let Ok(Message::Done { status }) = Message::decode(line) {
            self.done = Some(status);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        Control::Continue
    }
}

/// Run one VM; returns the process exit status.
pub fn main(args: &[String]) -> u8 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vmct __vmm-linux: {e}");
            return USAGE_EXIT;
        }
    };
    let initramfs = match &args.initramfs {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("vmct __vmm-linux: cannot read initramfs {}: {e}", p.display());
                return USAGE_EXIT;
            }
        },
        None => None,
    };
    let cmdline = match boot::cmdline(&args.cmdline) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmct __vmm-linux: {e}");
            return USAGE_EXIT;
        }
    };
    let cfg = LinuxVmConfig {
        kernel: args.kernel.clone(),
        initramfs,
        mem_bytes: args.mem_mib << 20,
        cmdline,
        timeout: args.timeout,
    };
    let vm = match LinuxVm::new(&cfg) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("vmct __vmm-linux: {e}");
            return code_of("vmm_error");
        }
    };
    let input = vm.console_input();
    // Host stdin -> guest console; at EOF, `stop`. Detached: the process ends with the VM.
    let _ = std::thread::Builder::new().name("vmct-linux-stdin".into()).spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        loop {
            let chunk: Vec<u8> = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => b"stop\n".to_vec(),
                Ok(n) => buf[..n].to_vec(),
            };
            let eof = chunk == b"stop\n";
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = input.send(rest);
                rest = &rest[n..];
                if !rest.is_empty() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if eof {
                return;
            }
        }
    });
    let mut fwd = Forward { done: None };
    match vm.run(&mut fwd) {
        Ok(report) => match (&report.outcome, fwd.done) {
            (Outcome::Reset | Outcome::Stopped, Some(status)) => u8::try_from(status).unwrap_or(1),
            (outcome, _) => {
                let kind = match outcome {
                    Outcome::Reset | Outcome::Stopped => "reset_without_done",
                    Outcome::Panic { .. } => "guest_panic",
                    Outcome::TripleFault => "triple_fault",
                    Outcome::KvmInternalError => "kvm_internal_error",
                    Outcome::Watchdog { .. } => "watchdog",
                    Outcome::Halted => "halted",
                };
                eprintln!("vmct __vmm-linux: guest ended abnormally: {outcome:?}");
                if let Some(l) = report.last_lines.last() {
                    eprintln!("vmct __vmm-linux: last console line: {l}");
                }
                code_of(kind)
            }
        },
        Err(e) => {
            eprintln!("vmct __vmm-linux: {e}");
            code_of("vmm_error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_the_vmm_command_line() {
        let a =
            parse_args(&s(&["--kernel", "/k", "--mem-mib", "256", "--pvm-workarounds", "--", "cpu", "--iters", "5"]))
                .unwrap();
        assert_eq!(a.kernel, PathBuf::from("/k"));
        assert_eq!(a.mem_mib, 256);
        assert!(a.cmdline.pvm_workarounds && !a.cmdline.kernel_log);
        assert_eq!(a.cmdline.workload_args, ["cpu", "--iters", "5"]);
        assert!(parse_args(&s(&["--mem-mib", "1"])).unwrap_err().contains("--kernel"));
        assert!(parse_args(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn abnormal_exit_codes_are_distinct_and_named() {
        assert_eq!(exit_code_kind(65), Some("guest_panic"));
        assert_eq!(exit_code_kind(0), None);
        assert_eq!(exit_code_kind(2), None);
        let mut codes: Vec<u8> = ABNORMAL_EXITS.iter().map(|c| c.0).collect();
        codes.dedup();
        assert_eq!(codes.len(), ABNORMAL_EXITS.len());
    }
}
