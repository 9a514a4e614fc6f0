//! Resource limits of a container and the ranges the kernel enforces them in (parsing lives with the
//! command line: `harness::units`).

/// Errors of a limit outside what the kernel can enforce as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// A CPU quota outside [`MIN_CPUS`]..=host CPUs, or not a finite number.
    #[error("limits: cpu quota {value} CPUs is outside the valid range {MIN_CPUS} to {max} (the CPUs of this host)")]
    CpusRange {
        /// The quota given.
        value: f64,
        /// CPUs of this host.
        max: usize,
    },
    /// A CPU quota finer than the quota's resolution ([`CPU_RESOLUTION`]).
    #[error(
        "limits: cpu quota {0} CPUs is finer than the {CPU_RESOLUTION} CPU resolution of the CFS quota (1 us per 100 ms period)"
    )]
    CpusResolution(f64),
    /// A limit of zero (nothing could run).
    #[error("limits: {what} must be greater than zero")]
    Zero {
        /// Which limit.
        what: &'static str,
    },
    /// A pids limit above what the kernel accepts.
    #[error(
        "limits: pids limit {0} is above the kernel's maximum {PIDS_MAX} (PID_MAX_LIMIT); leave it out for no limit"
    )]
    TooManyPids(u64),
    /// A memory limit below what any process needs.
    #[error("limits: memory limit {0} bytes is below the {MIN_MEMORY_BYTES}-byte (1 MiB) minimum")]
    TooSmallMemory(u64),
}

/// Limits for one container (None = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory limit, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU quota in CPUs (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
}

/// CFS period used for CPU quotas, microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Smallest CPU quota, CPUs: the kernel's 1 ms minimum `cpu.cfs_quota_us` over [`CPU_PERIOD_US`]
/// (Documentation/scheduler/sched-bwc.rst; Docker's `--cpus` has the same 0.01 minimum).
pub const MIN_CPUS: f64 = 0.01;

/// Resolution of a CPU quota, CPUs: 1 us of quota per [`CPU_PERIOD_US`].
pub const CPU_RESOLUTION: f64 = 1e-5;

/// Largest pids limit the kernel accepts: PID_MAX_LIMIT on 64-bit hosts (include/linux/threads.h);
/// `pids.max` refuses anything above with EINVAL.
pub const PIDS_MAX: u64 = 4 * 1024 * 1024;

/// Smallest memory limit, bytes.
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;

/// CPUs this process may run on (the upper bound of a CPU quota, as in Docker).
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Limits {
    /// Reject limits nothing could run under, or that the kernel would not enforce as given.
    pub fn validate(&self) -> Result<(), LimitError> {
        if let Some(m) = self.memory_bytes {
            if m == 0 {
                return Err(LimitError::Zero { what: "memory limit" });
            }
            if m < MIN_MEMORY_BYTES {
                return Err(LimitError::TooSmallMemory(m));
            }
        }
        if let Some(c) = self.cpus {
            let max = host_cpus();
            if !(c.is_finite() && c >= MIN_CPUS && c <= max as f64) {
                return Err(LimitError::CpusRange { value: c, max });
            }
            let steps = c / CPU_RESOLUTION;
            if (steps - steps.round()).abs() > 1e-6 {
                return Err(LimitError::CpusResolution(c));
            }
        }
        match self.pids {
            Some(0) => return Err(LimitError::Zero { what: "pids limit" }),
            Some(p) if p > PIDS_MAX => return Err(LimitError::TooManyPids(p)),
            _ => {}
        }
        Ok(())
    }

    /// CFS quota for the CPU limit, microseconds per [`CPU_PERIOD_US`] (exact for limits that pass
    /// [`Limits::validate`]).
    #[allow(clippy::cast_possible_truncation)] // rounded on purpose; validated limits are far below u64::MAX
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpus.map(|c| (c * CPU_PERIOD_US as f64).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_applied_as_given_or_refused_with_the_range() {
        let l = Limits { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids: Some(10) };
        assert!(l.validate().is_ok());
        assert_eq!(l.cpu_quota_us(), Some(50_000));
        let cpus = |c: f64| Limits { cpus: Some(c), ..Default::default() };
        assert_eq!(cpus(0.01).cpu_quota_us(), Some(1000));
        assert_eq!(cpus(0.015).cpu_quota_us(), Some(1500));
        assert!(cpus(0.015).validate().is_ok());
        for tiny in [0.0001, 0.001, 0.009] {
            let e = cpus(tiny).validate().unwrap_err();
            assert!(e.to_string().contains("0.01 to"), "{tiny}: {e}");
        }
        assert!(cpus(host_cpus() as f64 + 1.0).validate().is_err());
        assert!(matches!(cpus(0.123456).validate(), Err(LimitError::CpusResolution(_))));
        assert!(cpus(f64::NAN).validate().is_err());
        assert!(Limits { memory_bytes: Some(0), ..Default::default() }.validate().is_err());
        assert!(Limits { memory_bytes: Some(4096), ..Default::default() }.validate().is_err());
        assert!(Limits { pids: Some(0), ..Default::default() }.validate().is_err());
        assert!(Limits { pids: Some(PIDS_MAX), ..Default::default() }.validate().is_ok());
        let e = Limits { pids: Some(PIDS_MAX + 1), ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("4194304"), "{e}");
    }
}
