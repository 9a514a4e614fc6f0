//! Units and limits for the CLI: one parser per kind of value. Sizes and durations are parsed in the
//! report crate (one implementation for the CLI, the planner and the report: `K`/`M`/`G`/`T` and
//! `KiB`/`MiB`/... are powers of 1024, `KB`/`MB`/... powers of 1000, a unit is required); CPU and
//! pids limits here, with the ranges the container runtime enforces ([`container::limits`]).
//! Errors are the plain strings usage errors carry (exit 2), naming the input and what is valid.
pub use report::units::{fmt_bytes as human_bytes, fmt_secs as human_secs};

/// Parse a size such as `256MiB`; the error names the input and the valid units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    report::parse_size(s).map_err(|e| e.to_string())
}

/// Parse a duration such as `50ms`; the error names the input and the valid units.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    report::parse_duration(s).map_err(|e| e.to_string())
}

/// Parse a CPU limit (`--cpus`): a number of CPUs from 0.01 to the host's CPUs, in steps of 0.00001
/// (1 us of CFS quota per 100 ms period), applied exactly; `0` means no limit (as in Docker, whose
/// `--cpus 0.000` is "no limit"). `Ok(None)` = no limit.
pub fn parse_cpus(s: &str) -> Result<Option<f64>, String> {
    use container::limits::{host_cpus, MIN_CPUS};
    let max = host_cpus();
    let range = format!("expected a number of CPUs from {MIN_CPUS} to {max} (this host's CPUs), or 0 for no limit");
    let c: f64 = s.trim().parse().map_err(|_| format!("invalid CPU limit '{s}': {range}"))?;
    if c == 0.0 {
        return Ok(None);
    }
    match (container::Limits { cpus: Some(c), ..Default::default() }).validate() {
        Ok(()) => Ok(Some(c)),
        Err(e @ container::LimitError::CpusResolution(_)) => Err(format!("invalid CPU limit '{s}': {e}")),
        Err(_) => Err(format!("invalid CPU limit '{s}': {range}")),
    }
}

/// Parse a pids limit (`--pids`): 1 to the kernel's maximum (4194304, PID_MAX_LIMIT), or `-1`, `0`,
/// `max` or `unlimited` for no limit (Docker's and Podman's `--pids-limit -1` and `0`, the cgroup's
/// `max`). `Ok(None)` = no limit.
pub fn parse_pids(s: &str) -> Result<Option<u64>, String> {
    let max = container::limits::PIDS_MAX;
    let range = format!("expected a number of processes from 1 to {max}, or -1, 0, max or unlimited for no limit");
    match s.trim() {
        "-1" | "0" | "max" | "unlimited" => Ok(None),
        t => match t.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!("invalid pids limit '{s}': {range}")),
        },
    }
}

/// Parse a memory limit (`--mem`): a size (see [`parse_size`]) of at least 1 MiB; backends check their
/// own upper bounds (a microVM's guest memory range) before launching.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let b = parse_size(s)?;
    container::Limits { memory_bytes: Some(b), ..Default::default() }
        .validate()
        .map_err(|e| format!("invalid memory limit '{s}': {e}"))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_limits_are_exact_or_refused_with_the_range() {
        assert_eq!(parse_cpus("0.5"), Ok(Some(0.5)));
        assert_eq!(parse_cpus("0.01"), Ok(Some(0.01)));
        assert_eq!(parse_cpus("0.015"), Ok(Some(0.015)));
        assert_eq!(parse_cpus("0"), Ok(None));
        for bad in ["0.0001", "0.001", "-1", "abc", "1e9", "NaN", "inf"] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")) && e.contains("from 0.01 to"), "{bad}: {e}");
        }
        assert!(parse_cpus("0.123456").unwrap_err().contains("resolution"));
    }

    #[test]
    fn pids_limits_take_the_unlimited_spellings_and_the_kernel_range() {
        assert_eq!(parse_pids("32"), Ok(Some(32)));
        assert_eq!(parse_pids("4194304"), Ok(Some(4_194_304)));
        for unlimited in ["-1", "0", "max", "unlimited"] {
            assert_eq!(parse_pids(unlimited), Ok(None), "{unlimited}");
        }
        for bad in ["4194305", "99999999999", "-2", "1.5", "lots"] {
            let e = parse_pids(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")) && e.contains("1 to 4194304"), "{bad}: {e}");
        }
    }

    #[test]
    fn memory_limits_share_the_one_size_parser() {
        assert_eq!(parse_mem("64M"), Ok(64 << 20));
        assert_eq!(parse_mem("64MiB"), Ok(64 << 20));
        assert_eq!(parse_mem("64MB"), Ok(64_000_000));
        assert!(parse_mem("512KiB").unwrap_err().contains("1 MiB"));
        assert!(parse_mem("64Q").unwrap_err().contains("'64Q'"));
        assert!(parse_mem("0.5B").is_err());
    }
}
