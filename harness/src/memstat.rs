//! Per-process memory accounting from /proc/PID/smaps_rollup and /proc/PID/smaps.

use std::fs;

/// Resident and proportional memory of one process, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcMem {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Proportional set size.
    pub pss_bytes: u64,
}

/// Read /proc/PID/smaps_rollup; None if the process is gone.
pub fn proc_mem(pid: u32) -> Option<ProcMem> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(parse_rollup(&text))
}

/// Parse an smaps_rollup text.
pub fn parse_rollup(text: &str) -> ProcMem {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    ProcMem { rss_bytes: field("Rss"), pss_bytes: field("Pss") }
}

/// Sum of `Rss` of the mappings in an smaps text whose header line satisfies `pred`.
pub fn smaps_rss_where(text: &str, pred: impl FnMut(&str) -> bool) -> u64 {
    smaps_sum_where(text, "Rss", pred)
}

/// Sum of the `field` (`Rss`, `Pss`, ...; kB in the file) of the mappings in an smaps text whose header
/// line satisfies `pred`, in bytes.
pub fn smaps_sum_where(text: &str, field: &str, mut pred: impl FnMut(&str) -> bool) -> u64 {
    let mut total = 0;
    let mut take = false;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            take = pred(line);
        } else if take {
            if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
                total += rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup_and_smaps() {
        let r = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  1200 kB\nPss:   300 kB\n";
        assert_eq!(parse_rollup(r), ProcMem { rss_bytes: 1200 * 1024, pss_bytes: 300 * 1024 });
        let s = "7f00-7f10 rw-p 00000000 00:00 0 \nRss: 8 kB\nPss: 8 kB\n\
                 7f20-7f30 rw-s 00000000 00:01 5 /memfd:guest (deleted)\nRss: 100 kB\n";
        assert_eq!(smaps_rss_where(s, |h| h.contains("guest")), 100 * 1024);
        assert_eq!(smaps_rss_where(s, |h| !h.contains("guest")), 8 * 1024);
        assert_eq!(smaps_sum_where(s, "Pss", |_| true), 8 * 1024, "Pss, not Pss_Dirty or Rss");
        assert!(proc_mem(std::process::id()).unwrap().rss_bytes > 0);
    }
}
