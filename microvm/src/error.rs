//! Why a bare-guest VM could not boot or ended abnormally ([`VmError`]), and the closed set of error
//! kinds ([`ErrorKind`]) that the `vmct-vmm` process turns into its exit code.
//!
//! Every variant maps to exactly one kind (an exhaustive match: a new variant does not compile until
//! it has one), and every kind has one exit code, `64 + its index in` [`ErrorKind::ALL`]. The harness
//! maps exit codes back with [`exit_code_kind`].
use crate::builder::BuildError;
use crate::layout;
use crate::loader::LoadError;
use crate::sys::SysError;
use std::time::Duration;

/// What kind of end a VMM error is: the exit-code contract between `vmct-vmm` and the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is out of range.
    Config,
    /// /dev/kvm is missing, inaccessible or lacks what we need.
    KvmUnavailable,
    /// A setup step (KVM ioctl, memory, image load, OS call) or `KVM_RUN` itself failed.
    Setup,
    /// The guest used a port outside the port map.
    UnknownPort,
    /// The guest accessed memory with no slot (MMIO).
    Mmio,
    /// The vCPU halted.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// KVM internal error.
    InternalError,
    /// VM entry failed.
    FailEntry,
    /// An exit the run loop does not handle.
    UnexpectedExit,
    /// A CPU exception in the guest.
    GuestException,
    /// The guest ran past the watchdog.
    Watchdog,
    /// The mailbox header was out of range.
    Mailbox,
    /// A snapshot to restore from is unreadable.
    Snapshot,
    /// The VMM could not confine itself (jail or seccomp filter).
    Confine,
}

impl ErrorKind {
    /// Every kind, in exit-code order: kind `ALL[i]` exits with `64 + i`.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Config,
        ErrorKind::KvmUnavailable,
        ErrorKind::Setup,
        ErrorKind::UnknownPort,
        ErrorKind::Mmio,
        ErrorKind::Hlt,
        ErrorKind::Shutdown,
        ErrorKind::InternalError,
        ErrorKind::FailEntry,
        ErrorKind::UnexpectedExit,
        ErrorKind::GuestException,
        ErrorKind::Watchdog,
        ErrorKind::Mailbox,
        ErrorKind::Snapshot,
        ErrorKind::Confine,
    ];

    /// Field name: `config`, `kvm_unavailable`, `setup`, `unknown_port`, `mmio`, `hlt`, `shutdown`,
    /// `internal_error`, `fail_entry`, `unexpected_exit`, `guest_exception`, `watchdog`, `mailbox`,
    /// `snapshot`, `confine`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::KvmUnavailable => "kvm_unavailable",
            ErrorKind::Setup => "setup",
            ErrorKind::UnknownPort => "unknown_port",
            ErrorKind::Mmio => "mmio",
            ErrorKind::Hlt => "hlt",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::InternalError => "internal_error",
            ErrorKind::FailEntry => "fail_entry",
            ErrorKind::UnexpectedExit => "unexpected_exit",
            ErrorKind::GuestException => "guest_exception",
            ErrorKind::Watchdog => "watchdog",
            ErrorKind::Mailbox => "mailbox",
            ErrorKind::Snapshot => "snapshot",
            ErrorKind::Confine => "confine",
        }
    }

    /// Process exit code of a VMM that ended with this kind (64..=78).
    pub fn exit_code(self) -> u8 {
        let i = Self::ALL.iter().position(|k| *k == self).expect("ALL lists every kind");
        64 + u8::try_from(i).expect("15 kinds fit in a u8")
    }

    /// The kind of a VMM process exit code, if it is one of ours.
    pub fn from_exit_code(code: i32) -> Option<ErrorKind> {
        let i = usize::try_from(code.checked_sub(64)?).ok()?;
        Self::ALL.get(i).copied()
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error kind name of a VMM process exit code, if it is one of ours.
pub fn exit_code_kind(code: i32) -> Option<&'static str> {
    ErrorKind::from_exit_code(code).map(ErrorKind::as_str)
}

/// Why a VM could not boot or ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The configuration is out of range.
    #[error("microvm: invalid configuration: {0}")]
    Config(String),
    /// KVM, the VM, guest memory or the vCPUs could not be created or set up, or an OS wrapper
    /// failed ([`crate::builder`]).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The image could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `KVM_RUN` itself failed.
    #[error("microvm: KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
    /// `KVM_RUN` kept returning EAGAIN ([`crate::sys::EagainStreak`]).
    #[error("microvm: {0}")]
    Stuck(crate::sys::StuckVcpu),
    /// The guest accessed a port outside the port map.
    #[error("microvm: guest {dir} unknown port 0x{port:x} ({size} bytes) at rip 0x{rip:x}")]
    UnknownPort {
        /// `out` or `in`.
        dir: &'static str,
        /// The port.
        port: u16,
        /// Access size.
        size: usize,
        /// Guest RIP.
        rip: u64,
    },
    /// The guest accessed guest-physical memory with no memory slot (MMIO).
    #[error("microvm: guest MMIO {dir} at 0x{addr:x} ({size} bytes), outside guest RAM, at rip 0x{rip:x}")]
    Mmio {
        /// `read` or `write`.
        dir: &'static str,
        /// Guest physical address.
        addr: u64,
        /// Access size.
        size: usize,
        /// Guest RIP.
        rip: u64,
    },
    /// The vCPU halted (ring-0 `hlt`).
    #[error("microvm: guest halted (HLT exit) at rip 0x{rip:x}")]
    Hlt {
        /// Guest RIP.
        rip: u64,
    },
    /// Shutdown, usually a triple fault.
    #[error("microvm: guest shutdown (triple fault) at rip 0x{rip:x}")]
    Shutdown {
        /// Guest RIP.
        rip: u64,
    },
    /// KVM could not emulate or handle something.
    #[error("microvm: KVM internal error (suberror {suberror}{}) at rip 0x{rip:x}", if *.suberror == 1 { ": emulation failure" } else { "" })]
    Internal {
        /// `kvm_run.internal.suberror`.
        suberror: u32,
        /// Guest RIP.
        rip: u64,
    },
    /// The hardware refused to enter the guest.
    #[error("microvm: VM entry failed (hardware reason 0x{reason:x}) at rip 0x{rip:x}")]
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
        /// Guest RIP.
        rip: u64,
    },
    /// An exit the VMM does not handle.
    #[error("microvm: unexpected exit {exit} at rip 0x{rip:x}")]
    UnexpectedExit {
        /// The exit, as debug text.
        exit: String,
        /// Guest RIP.
        rip: u64,
    },
    /// A CPU exception in the guest, reported by the ring-0 stub.
    #[error("microvm: guest exception {vector} ({name}) error code 0x{error_code:x} at rip 0x{rip:x} (cpl {cpl}, cr2 0x{cr2:x})")]
    GuestException {
        /// Vector.
        vector: u64,
        /// Its name.
        name: &'static str,
        /// Error code (0 if the vector has none).
        error_code: u64,
        /// Faulting RIP.
        rip: u64,
        /// Privilege level the exception came from.
        cpl: u64,
        /// CR2 (the faulting address of a page fault).
        cr2: u64,
    },
    /// The guest ran past the watchdog.
    #[error("microvm: watchdog: guest still running after {limit:?}, killed at rip 0x{rip:x}")]
    Watchdog {
        /// The limit.
        limit: Duration,
        /// Guest RIP when stopped.
        rip: u64,
    },
    /// The mailbox header is out of range.
    #[error("microvm: guest mailbox claims {len} bytes (capacity {})", layout::MAILBOX_CAPACITY)]
    Mailbox {
        /// Claimed length.
        len: u32,
    },
    /// The VMM could not confine itself (jail or seccomp filter); the guest never ran.
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
}

impl VmError {
    /// The error's kind (exhaustive: every variant names its own).
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmError::Config(_) => ErrorKind::Config,
            VmError::Build(e) => e.kind(),
            VmError::Load(_) | VmError::Run(_) | VmError::Stuck(_) => ErrorKind::Setup,
            VmError::UnknownPort { .. } => ErrorKind::UnknownPort,
            VmError::Mmio { .. } => ErrorKind::Mmio,
            VmError::Hlt { .. } => ErrorKind::Hlt,
            VmError::Shutdown { .. } => ErrorKind::Shutdown,
            VmError::Internal { .. } => ErrorKind::InternalError,
            VmError::FailEntry { .. } => ErrorKind::FailEntry,
            VmError::UnexpectedExit { .. } => ErrorKind::UnexpectedExit,
            VmError::GuestException { .. } => ErrorKind::GuestException,
            VmError::Watchdog { .. } => ErrorKind::Watchdog,
            VmError::Mailbox { .. } => ErrorKind::Mailbox,
            VmError::Confine(_) => ErrorKind::Confine,
        }
    }

    /// Process exit code of a VMM that ended with this error (see [`exit_code_kind`]).
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

impl From<SysError> for VmError {
    fn from(e: SysError) -> VmError {
        VmError::Build(BuildError::Sys(e))
    }
}

impl VmError {
    /// A failed KVM ioctl `what` (setup, or vCPU registers in the run loop): kind [`ErrorKind::Setup`].
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Build(BuildError::Kvm { what, source })
    }

    /// Guest memory could not be read or written: kind [`ErrorKind::Setup`].
    pub fn memory(e: impl std::fmt::Display) -> VmError {
        VmError::Build(BuildError::Memory(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_errors_name_the_exit_and_rip_and_map_to_exit_codes() {
        let e = VmError::UnknownPort { dir: "out", port: 0x1234, size: 1, rip: 0x20_0010 };
        assert_eq!(e.to_string(), "microvm: guest out unknown port 0x1234 (1 bytes) at rip 0x200010");
        assert_eq!(exit_code_kind(i32::from(e.exit_code())), Some("unknown_port"));
        let e = VmError::GuestException {
            vector: 14,
            name: crate::arch::vector_name(14),
            error_code: 4,
            rip: 0x20_1000,
            cpl: 3,
            cr2: 0xdead_0000,
        };
        assert!(e.to_string().contains("#PF page fault") && e.to_string().contains("cr2 0xdead0000"), "{e}");
        assert_eq!(exit_code_kind(i32::from(e.exit_code())), Some("guest_exception"));
        let e = VmError::Internal { suberror: 1, rip: 5 };
        assert!(e.to_string().contains("emulation failure"));
        let e = VmError::Watchdog { limit: Duration::from_millis(200), rip: 0x20_0000 };
        assert_eq!(exit_code_kind(i32::from(e.exit_code())), Some("watchdog"));
        assert_eq!(exit_code_kind(0), None);
        assert_eq!(exit_code_kind(1), None);
        assert_eq!(exit_code_kind(79), None);
    }

    /// The exit codes are a contract with the harness (and with VMMs already built): they must not move.
    #[test]
    fn exit_codes_are_the_published_ones() {
        let published = [
            "config",
            "kvm_unavailable",
            "setup",
            "unknown_port",
            "mmio",
            "hlt",
            "shutdown",
            "internal_error",
            "fail_entry",
            "unexpected_exit",
            "guest_exception",
            "watchdog",
            "mailbox",
            "snapshot",
            "confine",
        ];
        for (i, name) in published.iter().enumerate() {
            let code = 64 + i32::try_from(i).unwrap();
            assert_eq!(exit_code_kind(code), Some(*name));
            assert_eq!(i32::from(ErrorKind::from_exit_code(code).unwrap().exit_code()), code);
        }
    }

    /// Errors that used to fall into a `_ => "setup"` wildcard: each has its kind by name now.
    #[test]
    fn setup_failures_are_setup_and_kvm_failures_are_kvm_unavailable() {
        assert_eq!(VmError::from(SysError::Timer(std::io::Error::other("x"))).kind(), ErrorKind::Setup);
        assert_eq!(VmError::Run(kvm_ioctls::Error::new(libc::EFAULT)).kind(), ErrorKind::Setup);
        assert_eq!(VmError::from(BuildError::KvmMissing).kind(), ErrorKind::KvmUnavailable);
        assert_eq!(VmError::from(BuildError::Memory("m".into())).kind(), ErrorKind::Setup);
        assert_eq!(VmError::from(BuildError::KvmApi(11)).exit_code(), 65);
    }
}
