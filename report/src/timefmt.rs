//! UTC date formatting for run timestamps (seconds since the Unix epoch), without a date library.

/// `2024-05-01 12:34:56 UTC`, or `unknown` for 0 / non-finite values.
pub fn utc(unix_s: f64) -> String {
    if !unix_s.is_finite() || unix_s <= 0.0 {
        return "unknown".into();
    }
    #[allow(clippy::cast_possible_truncation)] // whole seconds; saturates only for dates billions of years away
    let secs = unix_s.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// (year, month 1-12, day 1-31) of the UTC day `z` days after 1970-01-01 (negative: before), by
/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar). vmct's one date routine:
/// the harness's run ids use it too.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("a day of the month is 1 to 31");
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("a month is 1 to 12");
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_dates() {
        assert_eq!(super::utc(0.0), "unknown");
        assert_eq!(super::utc(1_700_000_000.5), "2023-11-14 22:13:20 UTC");
        assert_eq!(super::utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }
}
