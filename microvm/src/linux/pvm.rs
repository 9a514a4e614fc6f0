//! A measured check for the PVM guest ABI on a kvm_pvm host (shared/HOST-NOTES.md): upstream PVM runs a
//! PVM-enabled guest kernel at native speed, and offers its MSRs (0x4b564df0-0x4b564df7) and CPUID
//! leaf 0x40000002; the kvm_pvm of this project's hosts offers neither, so no guest kernel runs faster
//! than the stock one there. The check creates a throwaway VM with one vCPU (through the shared
//! [`crate::builder`], with a minimal guest memory nothing touches) and asks KVM.
use crate::builder::{BuildError, VmBuilder};
use crate::observe::Timeline;
use kvm_bindings::{kvm_msr_entry, Msrs, KVM_MAX_CPUID_ENTRIES};

/// The first PVM MSR (`MSR_PVM_LINEAR_ADDRESS_RANGE` in Ant Group's PVM patches).
pub const PVM_MSR: u32 = 0x4b56_4df0;
/// The PVM CPUID leaf (PVM features).
pub const PVM_CPUID_LEAF: u32 = 0x4000_0002;

/// Errors of the check.
#[derive(Debug, thiserror::Error)]
pub enum PvmCheckError {
    /// A KVM ioctl failed before the check could ask.
    #[error("pvm check: {what} failed: {source}")]
    Kvm {
        /// Which.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// The throwaway VM could not be built.
    #[error("pvm check: {0}")]
    Build(#[from] BuildError),
}

/// What KVM answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvmAbi {
    /// `KVM_GET_MSRS` on a vCPU read [`PVM_MSR`].
    pub msr_readable: bool,
    /// [`PVM_MSR`] is in `KVM_GET_MSR_INDEX_LIST`.
    pub msr_listed: bool,
    /// `KVM_GET_SUPPORTED_CPUID` has leaf [`PVM_CPUID_LEAF`].
    pub cpuid_leaf: bool,
}

impl PvmAbi {
    /// Whether a PVM-enabled guest kernel could run (any sign of the ABI).
    pub fn present(&self) -> bool {
        self.msr_readable || self.msr_listed || self.cpuid_leaf
    }

    /// One sentence saying what was measured.
    pub fn describe(&self) -> String {
        let yes_no = |b: bool, yes: &str, no: &str| if b { yes.to_string() } else { no.to_string() };
        format!(
            "measured: KVM_GET_MSRS {} MSR {PVM_MSR:#x}, which {} in KVM_GET_MSR_INDEX_LIST, and \
             KVM_GET_SUPPORTED_CPUID {} leaf {PVM_CPUID_LEAF:#x}: {}",
            yes_no(self.msr_readable, "reads", "refuses"),
            yes_no(self.msr_listed, "is", "is not"),
            yes_no(self.cpuid_leaf, "has", "has no"),
            yes_no(self.present(), "the PVM guest ABI is offered", "no PVM guest ABI")
        )
    }
}

/// Ask this host's KVM (needs read-write /dev/kvm).
pub fn check() -> Result<PvmAbi, PvmCheckError> {
    let kvm_err = |what| move |source| PvmCheckError::Kvm { what, source };
    let mut builder = VmBuilder::new(&mut Timeline::default())?;
    let kvm = builder.kvm();
    let msr_listed = kvm.get_msr_index_list().map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?.as_slice().contains(&PVM_MSR);
    let cpuid_leaf = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?
        .as_slice()
        .iter()
        .any(|e| e.function == PVM_CPUID_LEAF);
    builder.memfd_memory(c"vmct-pvm-check", crate::layout::HUGE_PAGE_SIZE)?;
    let machine = builder.vcpus(1)?;
    let vcpu = &machine.vcpus[0];
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index: PVM_MSR, ..Default::default() }])
        .expect("one MSR fits the FAM wrapper");
    // KVM_GET_MSRS returns how many MSRs it read: 0 (or an error) when it refuses the index.
    let msr_readable = vcpu.get_msrs(&mut msrs).is_ok_and(|n| n == 1);
    Ok(PvmAbi { msr_readable, msr_listed, cpuid_leaf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_says_what_was_measured() {
        let none = PvmAbi { msr_readable: false, msr_listed: false, cpuid_leaf: false };
        let d = none.describe();
        assert!(d.contains("refuses MSR 0x4b564df0") && d.contains("has no leaf 0x40000002"), "{d}");
        assert!(d.ends_with("no PVM guest ABI") && !none.present());
        let some = PvmAbi { msr_readable: true, ..none };
        assert!(some.present() && some.describe().contains("reads MSR"));
    }

    /// Wherever /dev/kvm is usable, KVM answers all three questions.
    #[test]
    fn check_answers_on_a_kvm_host() {
        if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
            eprintln!("skipped check_answers_on_a_kvm_host: no usable /dev/kvm");
            return;
        }
        let a = check().unwrap();
        eprintln!("{}", a.describe());
    }
}
