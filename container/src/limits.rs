//! Resource limits and their parsing ("64M", "0.5").

/// Errors parsing a limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// A size that is not a number with an optional K/M/G/T suffix.
    #[error("limits: bad size '{0}': expected a whole number with an optional K, M, G or T suffix (e.g. 64M)")]
    BadSize(String),
    /// A size too large to represent.
    #[error("limits: size '{0}' does not fit in 64 bits")]
    SizeOverflow(String),
    /// A CPU quota that is not a positive number.
    #[error("limits: bad cpu quota '{0}': expected a positive number of CPUs (e.g. 0.5)")]
    BadCpus(String),
    /// A limit of zero (nothing could run).
    #[error("limits: {what} must be greater than zero")]
    Zero {
        /// Which limit.
        what: &'static str,
    },
    /// A memory limit below what any process needs.
    #[error("limits: memory limit {0} bytes is below the 1 MiB minimum")]
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

impl Limits {
    /// Reject limits nothing could run under.
    pub fn validate(&self) -> Result<(), LimitError> {
        if let Some(m) = self.memory_bytes {
            if m == 0 {
                return Err(LimitError::Zero { what: "memory limit" });
            }
            if m < 1 << 20 {
                return Err(LimitError::TooSmallMemory(m));
            }
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c > 0.0) {
                return Err(LimitError::BadCpus(c.to_string()));
            }
        }
        if self.pids == Some(0) {
            return Err(LimitError::Zero { what: "pids limit" });
        }
        Ok(())
    }

    /// CFS quota for the CPU limit, microseconds per [`CPU_PERIOD_US`] (at least 1000).
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpus.map(|c| ((c * CPU_PERIOD_US as f64).round() as u64).max(1000))
    }
}

/// Parse a size: digits with an optional binary suffix K, M, G, T (optionally followed by "i" and/or
/// "B"), e.g. "64M", "512KiB", "1073741824". "64Q" is an error naming the value.
pub fn parse_size(s: &str) -> Result<u64, LimitError> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    if num.is_empty() {
        return Err(LimitError::BadSize(s.into()));
    }
    let n: u64 = num.parse().map_err(|_| LimitError::SizeOverflow(s.into()))?;
    let unit = suffix.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(LimitError::BadSize(s.into())),
    };
    if suffix.eq_ignore_ascii_case("i") || (suffix.len() > 1 && unit.is_empty()) {
        return Err(LimitError::BadSize(s.into()));
    }
    n.checked_mul(1u64 << shift).ok_or_else(|| LimitError::SizeOverflow(s.into()))
}

/// Parse a CPU quota ("0.5", "2").
pub fn parse_cpus(s: &str) -> Result<f64, LimitError> {
    match s.trim().parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 => Ok(c),
        _ => Err(LimitError::BadCpus(s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        let e = parse_size("64Q").unwrap_err();
        assert_eq!(e, LimitError::BadSize("64Q".into()));
        assert!(e.to_string().contains("'64Q'"), "{e}");
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(matches!(parse_size("99999999999T"), Err(LimitError::SizeOverflow(_))));
    }

    #[test]
    fn cpus_and_validation() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("abc").unwrap_err().to_string().contains("abc"));
        let l = Limits { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids: Some(10) };
        assert!(l.validate().is_ok());
        assert_eq!(l.cpu_quota_us(), Some(50_000));
        assert!(Limits { memory_bytes: Some(0), ..Default::default() }.validate().is_err());
        assert!(Limits { memory_bytes: Some(4096), ..Default::default() }.validate().is_err());
        assert!(Limits { pids: Some(0), ..Default::default() }.validate().is_err());
        assert!(Limits { cpus: Some(f64::NAN), ..Default::default() }.validate().is_err());
    }
}
