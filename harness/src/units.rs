//! Units for the CLI. Parsing and formatting live in the report crate (one implementation for the CLI,
//! the planner and the report); errors become the plain strings usage errors carry.
pub use report::units::{fmt_bytes as human_bytes, fmt_secs as human_secs};

/// Parse a size such as `256MiB`; the error names the input and the valid units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    report::parse_size(s).map_err(|e| e.to_string())
}

/// Parse a duration such as `50ms`; the error names the input and the valid units.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    report::parse_duration(s).map_err(|e| e.to_string())
}
