//! `vmct images history NAME`: what made each layer of an image, like `docker history`.
//!
//! An image record keeps its history (oldest first) in [`super::ImageRecord::history`]: an imported
//! image the entries of its config's `history` (what `docker build` wrote: `created_by`, `created`,
//! `comment`, `empty_layer`), a built image its parent's history plus the build, a committed image its
//! parent's plus the commit. Records written before history was kept get one derived from their
//! layers ([`of`]).
use super::ImageRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What created a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// vmct's own base image (the workload binary) or busybox layer.
    Base,
    /// `vmct images import`: an entry of the image config's history.
    Imported,
    /// `vmct build` from a spec.
    Built,
    /// `vmct commit` from a container.
    Committed,
}

impl Origin {
    /// The name shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Base => "base",
            Origin::Imported => "imported",
            Origin::Built => "built",
            Origin::Committed => "committed",
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// What created it.
    pub origin: Origin,
    /// The command or action (an imported entry's `created_by`, "built from spec PATH", ...).
    pub created_by: String,
    /// Creation time, seconds since the epoch (None when the image does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_unix_s: Option<f64>,
    /// The layer directory; None for an entry that made no layer (`ENV`, `CMD` in a Dockerfile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<PathBuf>,
    /// Size of the layer, bytes (the uncompressed tar of an imported layer, the files of others).
    #[serde(default)]
    pub size_bytes: u64,
    /// The entry's comment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Entries for layers nothing recorded (vmct's base and busybox layers, or an older record's).
pub fn for_layers(layers: &[PathBuf]) -> Vec<HistoryEntry> {
    layers
        .iter()
        .map(|l| HistoryEntry {
            origin: Origin::Base,
            created_by: describe_base(l),
            created_unix_s: l.metadata().ok().and_then(|m| m.modified().ok()).map(unix_s),
            layer: Some(l.clone()),
            size_bytes: super::dir_bytes(l),
            comment: None,
        })
        .collect()
}

fn describe_base(l: &Path) -> String {
    let name = l.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with("busybox-") {
        "busybox layer (Debian's busybox-static)".into()
    } else if name.starts_with("base-") {
        "vmct base layer (the workload binary and mount points)".into()
    } else {
        format!("layer {} (no history recorded)", l.display())
    }
}

fn unix_s(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The history of `rec`, oldest first: its stored history when that covers every layer, else one
/// derived from its layers (the last one from its spec or container).
pub fn of(rec: &ImageRecord) -> Vec<HistoryEntry> {
    let covered = rec.history.iter().filter(|h| h.layer.is_some()).count();
    if covered == rec.layers.len() {
        return rec.history.clone();
    }
    let Some((last, below)) = rec.layers.split_last() else { return Vec::new() };
    let mut v = for_layers(below);
    let mut top = for_layers(std::slice::from_ref(last)).remove(0);
    top.created_unix_s = Some(rec.created_unix_s);
    if !rec.from_container.is_empty() {
        top.origin = Origin::Committed;
        top.created_by = format!("committed from container {}", rec.from_container);
    } else if let Some(spec) = &rec.spec {
        top.origin = Origin::Built;
        top.created_by = format!("built from spec {}", spec.display());
    }
    v.push(top);
    v
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), after Howard Hinnant's
/// `days_from_civil` (<https://howardhinnant.github.io/date_algorithms.html>).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of days since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T12:30:00.5Z`, `...+02:00`), the form
/// image configs use; None if it is not one. Hand-written (twenty lines) because the workspace has no
/// date crate and needs nothing else of one.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (b, c) = (s.as_bytes(), s.len());
    if c < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let mut secs = (days * 86_400 + num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?) as f64;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(frac.len());
        secs += format!("0.{}", &frac[..n]).parse::<f64>().ok()?;
        rest = &frac[n..];
    }
    match rest.as_bytes().first()? {
        b'Z' | b'z' if rest.len() == 1 => Some(secs),
        sign @ (b'+' | b'-') if rest.len() == 6 => {
            let off = (rest.get(1..3)?.parse::<i64>().ok()? * 60 + rest.get(4..6)?.parse::<i64>().ok()?) * 60;
            Some(if *sign == b'+' { secs - off as f64 } else { secs + off as f64 })
        }
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
pub fn format_utc(unix_s: f64) -> String {
    // A float-to-int `as` saturates; times are within i64 seconds by far.
    #[allow(clippy::cast_possible_truncation)]
    let t = unix_s.floor() as i64;
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15Z"), Some(1_709_209_815.0));
        assert_eq!(parse_rfc3339("2024-02-29T14:30:15.25+02:00"), Some(1_709_209_815.25));
        assert_eq!(parse_rfc3339("2023-05-19T20:06:45.123456789Z").map(|s| s.floor()), Some(1_684_526_805.0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15"), None, "an offset is required");
        assert_eq!(format_utc(1_709_209_815.9), "2024-02-29 12:30:15");
        assert_eq!(format_utc(0.0), "1970-01-01 00:00:00");
    }

    #[test]
    fn records_without_history_get_one_from_their_layers() {
        let rec: ImageRecord = serde_json::from_value(serde_json::json!({
            "name": "c", "layers": ["/nonexistent/base", "/nonexistent/c/layer"], "from_container": "vmct-1-0",
            "layer_tar_bytes": 0, "whiteouts": 0, "created_unix_s": 5.0
        }))
        .unwrap();
        let h = of(&rec);
        assert_eq!(h.iter().map(|e| e.origin).collect::<Vec<_>>(), vec![Origin::Base, Origin::Committed]);
        assert_eq!(h[1].created_by, "committed from container vmct-1-0");
        assert_eq!(h[1].created_unix_s, Some(5.0));
    }
}
