//! Parsing and formatting of sizes and durations, for the planner's command line and the report's tables.
//!
//! Sizes: a number (fractions allowed) followed by `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). The short
//! forms `K`, `M`, `G`, `T` also mean powers of 1024 (as in `docker run -m 512M`); `KB`, `MB`, `GB`, `TB` are SI
//! (powers of 1000). Units are case-insensitive. Durations: a number followed by `ns`, `us` (or `µs`), `ms`, `s`
//! or `min`.
use std::time::Duration;

/// Errors parsing a size or a duration; the message names the offending text and the accepted units.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitsError {
    /// Not a number followed by a size unit.
    #[error("invalid size '{0}': expected a number with unit B, KiB, MiB, GiB, TiB (e.g. 256GiB, 128MiB, 512M)")]
    Size(String),
    /// Not a number followed by a duration unit.
    #[error("invalid duration '{0}': expected a number with unit ns, us, ms, s, min (e.g. 50ms, 2s, 500us)")]
    Duration(String),
}

const KIB: f64 = 1024.0;

/// Split "12.5GiB" into (12.5, "GiB"); None when the number part is missing or malformed.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let v: f64 = num.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some((v, unit.trim()))
}

/// Parse a size such as `256GiB`, `128MiB`, `512M` or `4096B` into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitsError> {
    let err = || UnitsError::Size(text.to_string());
    let (v, unit) = split_number(text).ok_or_else(err)?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "k" | "kib" => KIB,
        "m" | "mib" => KIB * KIB,
        "g" | "gib" => KIB * KIB * KIB,
        "t" | "tib" => KIB * KIB * KIB * KIB,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(err()),
    };
    let bytes = v * mult;
    // A fraction of a byte (`0.5B`, `1.0000001KiB`) cannot be applied as given. `u64::MAX as f64` is 2^64 (it
    // rounds up), itself out of range: `>=` keeps every accepted value exactly representable.
    if bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(err());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a whole number in 0..2^64, checked above
    let bytes = bytes as u64;
    Ok(bytes)
}

/// Parse a duration such as `50ms`, `2s`, `500us` or `1.5min`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitsError> {
    let err = || UnitsError::Duration(text.to_string());
    let (v, unit) = split_number(text).ok_or_else(err)?;
    let secs = match unit {
        "ns" => v * 1e-9,
        "us" | "µs" | "μs" => v * 1e-6,
        "ms" => v * 1e-3,
        "s" => v,
        "min" => v * 60.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

/// Format bytes with a binary unit and three significant digits (`1.50 GiB`, `640 KiB`, `12 B`).
pub fn fmt_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v.abs() >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", v.round())
    } else {
        format!("{} {}", sig3(v), units[i])
    }
}

/// Format seconds with a human unit and three significant digits (`850 µs`, `12.3 ms`, `1.20 s`).
pub fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "n/a".into();
    }
    let a = s.abs();
    if a == 0.0 {
        "0 s".into()
    } else if a < 1e-6 {
        format!("{} ns", sig3(s * 1e9))
    } else if a < 1e-3 {
        format!("{} µs", sig3(s * 1e6))
    } else if a < 1.0 {
        format!("{} ms", sig3(s * 1e3))
    } else {
        format!("{} s", sig3(s))
    }
}

/// A value with an SI prefix and three significant digits: `fmt_si(1851441976.0, "blocks/s")` is
/// `1.85 G blocks/s`, `fmt_si(0.0042, "passes")` is `4.20 m passes`, `fmt_si(60.2, "")` is `60.2`. Values from 1 to 999
/// get no prefix; beyond 10^15 or below 10^-9 the largest or smallest prefix is used.
pub fn fmt_si(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    const PREFIXES: [(f64, &str); 9] = [
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
    ];
    // Round to three significant digits first, so 999.7 becomes 1.00 k rather than 1000.
    let v = if v == 0.0 {
        0.0
    } else {
        #[allow(clippy::cast_possible_truncation)] // a decimal exponent of a finite f64: within -324..=308
        let r = 10f64.powi(v.abs().log10().floor() as i32 - 2);
        (v / r).round() * r
    };
    let a = v.abs();
    let (scale, prefix) = if a == 0.0 {
        (1.0, "")
    } else {
        PREFIXES.iter().copied().find(|(s, _)| a >= *s * (1.0 - 1e-12)).unwrap_or(PREFIXES[PREFIXES.len() - 1])
    };
    let num = sig3(v / scale);
    match (prefix, unit) {
        ("", "") => num,
        (p, "") => format!("{num} {p}"),
        ("", u) => format!("{num} {u}"),
        // vmct's units are words (blocks/s, calls/s, pages/s): the prefix stands apart, as in "1.85 G blocks/s".
        (p, u) => format!("{num} {p} {u}"),
    }
}

/// The one formatting of a value in its unit for every table of the report (and the comparison and merged
/// pages), three significant digits throughout:
/// - durations (`s`, `ms`, `us`, `µs`, `ns`): [`fmt_secs`] (`12.3 ms`);
/// - bytes (`bytes`, `B`) and byte rates (`bytes/s`, `B/s`): [`fmt_bytes`] (`2.40 GiB/s`), binary units like every
///   size in the report;
/// - `ratio`: `1.23×`; `count`: a whole number;
/// - `u32` (a workload's check value, a bit pattern rather than a quantity): hexadecimal (`0x6e5ac338`);
/// - any other unit, or none: [`fmt_si`] (`1.85 G blocks/s`, `9.00 GB/s`, `60.2`).
pub fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let secs = match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" | "μs" => Some(1e-6),
        "ns" => Some(1e-9),
        _ => None,
    };
    if let Some(scale) = secs {
        return fmt_secs(v * scale);
    }
    match unit {
        "bytes" | "B" => fmt_bytes(v),
        "bytes/s" | "B/s" => format!("{}/s", fmt_bytes(v)),
        "ratio" => format!("{}×", sig3(v)),
        "count" => format!("{v:.0}"),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a whole number in u32's range, checked
        "u32" if v >= 0.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0 => format!("{:#010x}", v as u32),
        "1/GiB" => fmt_si(v, ""),
        _ => fmt_si(v, unit),
    }
}

/// Three significant digits, no exponent (`0.0123`, `1.23`, `123`, `12300`).
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    #[allow(clippy::cast_possible_truncation)] // a decimal exponent of a finite f64: within -324..=308
    let mag = v.abs().log10().floor() as i32;
    let decimals = (2 - mag).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Axis tick label: up to three significant digits without trailing zeros (`80`, `0.5`, `12.5`).
pub fn tick(v: f64) -> String {
    let s = sig3(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("256GiB").unwrap(), 256 << 30);
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5gib").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size(" 2 TiB ").unwrap(), 2 << 40);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
    }

    #[test]
    fn rejects_bad_sizes_with_a_clear_message() {
        // 2^64 bytes does not fit a u64: refused, not saturated to u64::MAX; the largest TiB count below it is kept.
        assert!(parse_size("16777216TiB").is_err());
        assert_eq!(parse_size("16777215TiB").unwrap(), 16_777_215 << 40);
        let e = parse_size("64Q").unwrap_err().to_string();
        assert!(e.starts_with("invalid size '64Q': expected a number with unit B, KiB, MiB, GiB, TiB"), "{e}");
        for bad in ["", "GiB", "12", "-1GiB", "1.2.3MiB", "1e3MiB", "0.5B", "1.0001KiB", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("500µs").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("1.5min").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ns").unwrap(), Duration::from_nanos(250));
        let e = parse_duration("50").unwrap_err().to_string();
        assert!(e.contains("invalid duration '50'") && e.contains("ms"), "{e}");
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(fmt_secs(0.0123), "12.3 ms");
        assert_eq!(fmt_secs(0.00085), "850 µs");
        assert_eq!(fmt_secs(1.2), "1.20 s");
        assert_eq!(fmt_bytes(1536.0 * 1024.0 * 1024.0), "1.50 GiB");
        assert_eq!(fmt_bytes(12.0), "12 B");
        assert_eq!(sig3(123.456), "123");
        assert_eq!(sig3(0.012345), "0.0123");
        assert_eq!((tick(80.0), tick(0.5), tick(12.5)), ("80".to_string(), "0.5".to_string(), "12.5".to_string()));
    }

    #[test]
    fn every_unit_gets_three_significant_digits() {
        // The overhead table printed these raw (issue 17, case 13).
        assert_eq!(fmt_value(1851441976.0, "u32"), "0x6e5ac338");
        assert_eq!(fmt_value(2577775405.0, "bytes/s"), "2.40 GiB/s");
        assert_eq!(fmt_value(1851441976.0, "blocks/s"), "1.85 G blocks/s");
        assert_eq!(fmt_value(12345.0, "calls/s"), "12.3 k calls/s");
        assert_eq!(fmt_value(999.7, "pages/s"), "1.00 k pages/s");
        assert_eq!(fmt_value(9.0, "GB/s"), "9.00 GB/s");
        assert_eq!(fmt_value(60.0, "ns"), "60.0 ns");
        assert_eq!(fmt_value(0.5, "s"), "500 ms");
        assert_eq!(fmt_value(3.0 * 1048576.0, "bytes"), "3.00 MiB");
        assert_eq!(fmt_value(1.234, "ratio"), "1.23×");
        assert_eq!(fmt_value(3.0, "count"), "3");
        assert_eq!(fmt_value(60.2, "1/GiB"), "60.2");
        assert_eq!(fmt_value(0.0042, "passes"), "4.20 m passes");
        assert_eq!(fmt_value(0.0, "forks"), "0 forks");
        assert_eq!(fmt_value(-2500.0, ""), "-2.50 k");
        assert_eq!(fmt_value(f64::NAN, "s"), "n/a");
        // No table value is longer than 3 significant digits plus a prefix and the unit.
        for v in [1.0, 12.0, 123.0, 1234.0, 12345.0, 1.2e8, 4.2e12, 7e17, 3e-4, 5e-9] {
            let s = fmt_si(v, "x/s");
            let digits = s.chars().filter(char::is_ascii_digit).count();
            assert!(digits <= 4, "{v}: {s}");
        }
    }
}
