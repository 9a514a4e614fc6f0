//! The **linux** guest model: one Linux kernel per VM, booted like Firecracker boots it (64-bit
//! direct entry, zero page, e820, identity page tables, serial console), with an initramfs whose
//! /init is the static `vmct-workload` binary.
//!
//! It needs VT-x/AMD-V. On `kvm_pvm` hosts guest kernel code is interpreted (about 1000x slower) and
//! guest userspace cannot make system calls, so [`probe_first_byte`] boots the kernel only to measure
//! the time to its first console byte and how far it gets, and [`unavailable_reason`] says why the model
//! cannot run workloads there.
//!
//! ```no_run
//! use microvm::linux::{boot, vm::{LinuxVm, LinuxVmConfig}, initramfs};
//! # struct Print;
//! # impl microvm::observe::Observer for Print {
//! #     fn phase(&mut self, _: microvm::observe::Phase, _: u64) {}
//! # }
//! # impl microvm::linux::vm::Console for Print {
//! #     fn console_line(&mut self, _: u64, l: &str) -> microvm::linux::vm::Control {
//! #         println!("{l}"); microvm::linux::vm::Control::Continue }
//! # }
//! let cpio = initramfs::build(&[], "vmct-workload".as_ref()).unwrap();
//! let opts = boot::CmdlineOptions { workload_args: vec!["ready".into()], ..Default::default() };
//! let cfg = LinuxVmConfig {
//!     kernel: "vmlinux".into(),
//!     initramfs: Some(cpio),
//!     mem_bytes: 128 << 20,
//!     cmdline: boot::cmdline(&opts).unwrap(),
//!     timeout: std::time::Duration::from_secs(10),
//! };
//! let report = LinuxVm::new(&cfg).unwrap().run(&mut Print).unwrap();
//! println!("{:?}", report.outcome);
//! ```
//!
//! Modules: [`layout`] (addresses and ports, in one place), [`boot`] (boot protocol as pure
//! functions), [`initramfs`] (cpio newc from layer directories), [`cpu`] (vCPU boot state),
//! [`vm`] (build + run loop), [`vmm`] (the one-VM-per-process entry point). KVM, VM, memory and
//! vCPU creation, the OS wrappers and the watchdog are the bare model's ([`crate::builder`],
//! [`crate::sys`]).
pub mod boot;
pub mod cpu;
pub mod initramfs;
pub mod layout;
pub mod pvm;
pub mod vm;
pub mod vmm;

use crate::builder::BuildError;
use crate::status::Flavour;
use crate::sys::{self, SysError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm::{Console, Control, LinuxVm, LinuxVmConfig, Observer, Outcome, Phase};

/// Why the linux model cannot run workloads on a kvm_pvm host.
pub const PVM_REASON: &str = "kvm_pvm cannot run guest userspace: guest kernel code is interpreted, so the linux \
     guest model needs a host with VT-x/AMD-V";

/// Errors of the linux guest model's VMM (guest behaviour is an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A KVM ioctl failed.
    #[error("linux vm: {what} failed: {source}")]
    Kvm {
        /// Which.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// `KVM_RUN` kept returning EAGAIN ([`crate::sys::EagainStreak`]).
    #[error("linux vm: {0}")]
    Stuck(crate::sys::StuckVcpu),
    /// KVM, the VM, guest memory or the vCPU could not be created ([`crate::builder`]).
    #[error("linux vm: {0}")]
    Build(#[from] BuildError),
    /// Writing boot data into guest memory failed.
    #[error("linux vm: cannot write the {what} into guest memory: {reason}")]
    GuestWrite {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The kernel image could not be loaded.
    #[error("linux vm: cannot load kernel {path}: {reason}")]
    Kernel {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Boot data is invalid.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// vCPU setup failed.
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    /// The serial console's eventfd.
    #[error("linux vm: serial console interrupt: {source}")]
    Serial {
        /// Cause.
        source: std::io::Error,
    },
    /// The watchdog could not be started.
    #[error("linux vm: {0}")]
    Watchdog(SysError),
    /// `KVM_EXIT_FAIL_ENTRY`.
    #[error("linux vm: the vCPU could not enter the guest (hardware reason {reason:#x})")]
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// An exit the VMM does not handle.
    #[error("linux vm: unexpected VM exit {0}")]
    UnexpectedExit(String),
}

impl LinuxError {
    fn guest_write<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> LinuxError {
        move |e| LinuxError::GuestWrite { what, reason: e.to_string() }
    }
}

/// The KVM flavour of this host.
pub fn flavour() -> Flavour {
    crate::status::flavour_at(Path::new("/"))
}

/// `Some(reason)` if the linux model cannot run workloads on a host of this flavour.
pub fn unavailable_reason(flavour: Flavour) -> Option<&'static str> {
    match flavour {
        Flavour::Pvm => Some(PVM_REASON),
        _ => None,
    }
}

/// Options of [`probe_first_byte`].
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Stop after this long at the latest.
    pub timeout: Duration,
    /// Stop at the first complete console line (a quick check) instead of running to the timeout
    /// or the guest's end (how far it gets).
    pub stop_at_first_line: bool,
    /// Guest memory, bytes.
    pub mem_bytes: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(120),
            stop_at_first_line: false,
            mem_bytes: layout::DEFAULT_MEM_BYTES,
        }
    }
}

/// What [`probe_first_byte`] saw. Times are from the start of the probe (before /dev/kvm is opened).
#[derive(Debug, Clone)]
pub struct FirstByte {
    /// KVM flavour of the host.
    pub flavour: Flavour,
    /// The command line used.
    pub cmdline: String,
    /// VM built and vCPU configured.
    pub vmm_setup: Duration,
    /// First VM exit.
    pub first_exit: Option<Duration>,
    /// First console byte.
    pub first_byte: Option<Duration>,
    /// First complete console line and when it arrived.
    pub first_line: Option<(Duration, String)>,
    /// Last console line and when it arrived (how far the kernel got).
    pub last_line: Option<(Duration, String)>,
    /// Console lines seen.
    pub lines: usize,
    /// How the run ended.
    pub outcome: Outcome,
    /// VM exits handled.
    pub exits: u64,
    /// On hosts where the linux model cannot run workloads, why ([`PVM_REASON`]).
    pub unavailable: Option<&'static str>,
}

impl FirstByte {
    /// A few human lines for `vmct run --backend microvm-linux` on a host that cannot run it.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let mut s = format!("linux guest on {}: VMM setup {}", self.flavour.as_str(), ms(self.vmm_setup));
        match self.first_byte {
            Some(d) => s += &format!(", first console byte after {}", ms(d)),
            None => s += ", no console output",
        }
        if let Some((d, l)) = &self.last_line {
            s += &format!("\nlast console line ({} lines) after {}: {l}", self.lines, ms(*d));
        }
        s += &format!("\nended: {:?} after {} VM exits", self.outcome, self.exits);
        if let Some(why) = self.unavailable {
            s += &format!("\nstopped: {why}");
        }
        s
    }
}

/// Boot `kernel` (no initramfs; the kernel log on the console, early console on) and measure the
/// time to its first console byte and how far it gets. On kvm_pvm the kvm_pvm workarounds go on
/// the command line and [`FirstByte::unavailable`] carries the reason the model stops there.
pub fn probe_first_byte(kernel: &Path, opts: &ProbeOptions) -> Result<FirstByte, LinuxError> {
    let start = sys::mono_ns();
    let flavour = flavour();
    let cmdline = boot::cmdline(&boot::CmdlineOptions {
        kernel_log: true,
        early_console: true,
        pvm_workarounds: flavour == Flavour::Pvm,
        ..Default::default()
    })?;
    let cfg = LinuxVmConfig {
        kernel: kernel.into(),
        initramfs: None,
        mem_bytes: opts.mem_bytes,
        cmdline: cmdline.clone(),
        timeout: opts.timeout,
    };
    struct Probe {
        start: u64,
        stop_at_first_line: bool,
        first_line: Option<(Duration, String)>,
        last_line: Option<(Duration, String)>,
        lines: usize,
    }
    impl Observer for Probe {
        fn phase(&mut self, _: Phase, _: u64) {}
    }
    impl Console for Probe {
        fn console_line(&mut self, ns: u64, line: &str) -> Control {
            let at = Duration::from_nanos(ns.saturating_sub(self.start));
            self.lines += 1;
            self.first_line.get_or_insert_with(|| (at, line.to_string()));
            self.last_line = Some((at, line.to_string()));
            if self.stop_at_first_line {
                Control::Stop
            } else {
                Control::Continue
            }
        }
    }
    let mut probe =
        Probe { start, stop_at_first_line: opts.stop_at_first_line, first_line: None, last_line: None, lines: 0 };
    let vm = LinuxVm::new(&cfg)?;
    let report = vm.run(&mut probe)?;
    let at = |p: Phase| {
        report.phases.iter().find(|(q, _)| *q == p).map(|(_, ns)| Duration::from_nanos(ns.saturating_sub(start)))
    };
    Ok(FirstByte {
        flavour,
        cmdline,
        vmm_setup: at(Phase::VmmSetup).unwrap_or_default(),
        first_exit: at(Phase::KernelEntry),
        first_byte: at(Phase::FirstConsoleByte),
        first_line: probe.first_line,
        last_line: probe.last_line,
        lines: probe.lines,
        outcome: report.outcome,
        exits: report.exits,
        unavailable: unavailable_reason(flavour),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_is_the_only_flavour_without_the_linux_model() {
        assert!(unavailable_reason(Flavour::Pvm).unwrap().contains("VT-x/AMD-V"));
        assert!(unavailable_reason(Flavour::Intel).is_none() && unavailable_reason(Flavour::Amd).is_none());
    }

    /// Developer check: `VMCT_LINUX_KERNEL=path/vmlinux cargo test -p microvm -- --ignored probe_kernel --nocapture`
    /// (the CI test with the privilege gate is harness/tests/microvm_linux.rs).
    #[test]
    #[ignore]
    fn probe_kernel() {
        let kernel = std::env::var("VMCT_LINUX_KERNEL").expect("set VMCT_LINUX_KERNEL");
        let secs = std::env::var("VMCT_LINUX_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
        let opts = ProbeOptions { timeout: Duration::from_secs(secs), ..Default::default() };
        let fb = probe_first_byte(Path::new(&kernel), &opts).unwrap();
        println!("{}\n{fb:#?}", fb.summary());
        assert!(fb.first_byte.is_some());
    }

    /// Developer check of the VMM entry point with an initramfs: on kvm_pvm it ends with a typed
    /// outcome code (no `done`). `VMCT_LINUX_KERNEL=... VMCT_LINUX_INITRAMFS=... cargo test -p microvm
    /// -- --ignored vmm_main_ends_with_a_typed_code --nocapture`
    #[test]
    #[ignore]
    fn vmm_main_ends_with_a_typed_code() {
        let kernel = std::env::var("VMCT_LINUX_KERNEL").expect("set VMCT_LINUX_KERNEL");
        let initramfs = std::env::var("VMCT_LINUX_INITRAMFS").expect("set VMCT_LINUX_INITRAMFS");
        let args: Vec<String> = [
            "--kernel",
            &kernel,
            "--initramfs",
            &initramfs,
            "--timeout-s",
            "20",
            "--kernel-log",
            "--pvm-workarounds",
            "--",
            "ready",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let code = vmm::main(&args);
        println!("exit {code} = {:?}", vmm::exit_code_kind(code.into()));
        assert!(vmm::exit_code_kind(code.into()).is_some() || code == 0);
    }
}
