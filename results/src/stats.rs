//! Statistics over samples, hyperfine style: median, percentiles, MAD-based outlier flags (never
//! deletions), and a least-squares line for density slopes.

/// Summary of a sample set.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Sample count.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Median absolute deviation (unscaled).
    pub mad: f64,
    /// Per-sample outlier flags, in input order.
    pub outlier: Vec<bool>,
}

/// Outlier threshold in scaled MADs (1.4826 * MAD estimates sigma for normal data).
pub const OUTLIER_MADS: f64 = 3.0;

/// Percentile `p` (0..=100) of sorted data, linear interpolation between closest ranks.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    // rank is finite and within 0..=len-1, so both fit a usize exactly.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Median of unsorted data.
pub fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, 50.0)
}

/// Summarise `xs`. Returns None for an empty slice.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    if xs.is_empty() {
        return None;
    }
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let med = percentile_sorted(&s, 50.0);
    let dev: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&dev);
    let scaled = 1.4826 * mad;
    let outlier =
        xs.iter().map(|x| if scaled > 0.0 { (x - med).abs() > OUTLIER_MADS * scaled } else { false }).collect();
    Some(Summary {
        n: xs.len(),
        median: med,
        p90: percentile_sorted(&s, 90.0),
        p99: percentile_sorted(&s, 99.0),
        min: s[0],
        max: s[s.len() - 1],
        mean: xs.iter().sum::<f64>() / xs.len() as f64,
        mad,
        outlier,
    })
}

/// Least-squares fit y = slope * x + intercept, with r².
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineFit {
    /// Slope.
    pub slope: f64,
    /// Intercept.
    pub intercept: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

/// Fit a line through points; None with fewer than two distinct x.
pub fn fit_line(points: &[(f64, f64)]) -> Option<LineFit> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = points.iter().map(|p| (p.1 - (slope * p.0 + intercept)).powi(2)).sum();
    let r2 = if ss_tot == 0.0 { 1.0 } else { 1.0 - ss_res / ss_tot };
    Some(LineFit { slope, intercept, r2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_inputs_give_known_statistics() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&xs).unwrap();
        assert_eq!(s.n, 100);
        assert_eq!(s.median, 50.5);
        assert!((s.p90 - 90.1).abs() < 1e-9);
        assert!((s.p99 - 99.01).abs() < 1e-9);
        assert_eq!((s.min, s.max, s.mean), (1.0, 100.0, 50.5));
        assert_eq!(s.mad, 25.0);
        assert!(s.outlier.iter().all(|o| !o));
    }

    #[test]
    fn outliers_are_flagged_not_dropped() {
        let xs = [10.0, 11.0, 10.5, 9.5, 10.2, 9.8, 100.0];
        let s = summarize(&xs).unwrap();
        assert_eq!(s.n, 7);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.outlier, vec![false, false, false, false, false, false, true]);
        assert_eq!(s.median, 10.2);
    }

    #[test]
    fn constant_samples_have_no_outliers_and_empty_has_no_summary() {
        let s = summarize(&[3.0; 5]).unwrap();
        assert_eq!((s.mad, s.p99), (0.0, 3.0));
        assert!(s.outlier.iter().all(|o| !o));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn fits_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        let f = fit_line(&pts).unwrap();
        assert!((f.slope - 3.0).abs() < 1e-12 && (f.intercept - 7.0).abs() < 1e-12 && (f.r2 - 1.0).abs() < 1e-12);
        assert!(fit_line(&[(1.0, 1.0)]).is_none());
        assert!(fit_line(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }
}
