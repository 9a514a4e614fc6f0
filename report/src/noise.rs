//! Is a difference between two runs beyond noise? A bootstrap confidence interval of the difference, as
//! criterion decides "no change detected" vs "changed", on the raw samples each run keeps.
//!
//! For a figure computed from raw samples (a startup median or p99 from `startup.csv`'s per-launch rows,
//! a density slope or instances per GiB from `density.csv`'s steps over the fitted range), [`test`]
//! resamples both runs' samples with replacement ([`RESAMPLES`] times, a seeded RNG so the page is the
//! same every time), computes the figure on each resample and takes the 2.5th and 97.5th percentiles of
//! B − A. The change is real when that 95% interval excludes zero *and* lies wholly beyond
//! [`NOISE_THRESHOLD`] of A's figure (criterion's `noise_threshold`, default 1%): otherwise "no change
//! detected". Exact figures (probe failure counts) have no sampling noise; figures with no raw samples
//! kept (overhead medians, blast slowdowns, save times) are not tested and never coloured.
//!
//! Hand-written (about 60 lines) rather than pulling criterion's analysis in: criterion's bootstrap is
//! not a public API. The RNG is `oorandom` (PCG), the one criterion itself uses.
use crate::data::RunData;
use serde::Serialize;

/// Bootstrap resamples per test.
pub const RESAMPLES: usize = 2000;
/// Confidence level of the interval.
pub const CONFIDENCE: f64 = 0.95;
/// Changes smaller than this fraction of A's figure are noise even when the interval excludes zero
/// (criterion's default `noise_threshold`).
pub const NOISE_THRESHOLD: f64 = 0.01;
/// Fewest raw samples per side for a test.
pub const MIN_SAMPLES: usize = 5;
/// The RNG seed: fixed, so a comparison page is reproducible.
const SEED: u64 = 0x766d_6374; // "vmct"

/// What the noise test says about one compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Noise {
    /// The 95% CI of B − A excludes zero and the noise threshold: a real change of `by` (unit of the
    /// figure).
    Changed {
        /// B − A on the full samples.
        by: f64,
        /// Lower end of the 95% CI of B − A.
        ci_low: f64,
        /// Upper end.
        ci_high: f64,
        /// Raw samples in A and B.
        n: (usize, usize),
    },
    /// The 95% CI of B − A includes zero or lies within the noise threshold.
    NoChange {
        /// B − A on the full samples.
        by: f64,
        /// Lower end of the 95% CI of B − A.
        ci_low: f64,
        /// Upper end.
        ci_high: f64,
        /// Raw samples in A and B.
        n: (usize, usize),
    },
    /// An exact figure (a count): any difference is a change.
    Exact,
    /// Not tested, with the reason (no raw samples kept, too few).
    Untested {
        /// Why.
        reason: String,
    },
}

impl Noise {
    /// Whether a difference may be shown as better or worse.
    pub fn beyond_noise(&self) -> bool {
        matches!(self, Noise::Changed { .. } | Noise::Exact)
    }

    /// "changed by +1.20 ms (95% CI +0.800 ms to +1.60 ms, n = 20/20)", "no change detected (...)",
    /// or the reason it was not tested; `fmt` formats a value of the figure's unit (sign added here).
    pub fn describe(&self, fmt: impl Fn(f64) -> String) -> String {
        let signed = |v: f64| format!("{}{}", if v < 0.0 { "−" } else { "+" }, fmt(v.abs()));
        let ci = |lo: f64, hi: f64, n: (usize, usize)| {
            format!("{:.0}% CI {} to {}, n = {}/{}", CONFIDENCE * 100.0, signed(lo), signed(hi), n.0, n.1)
        };
        match self {
            Noise::Changed { by, ci_low, ci_high, n } => {
                format!("changed by {} ({})", signed(*by), ci(*ci_low, *ci_high, *n))
            }
            Noise::NoChange { ci_low, ci_high, n, .. } => format!("no change detected ({})", ci(*ci_low, *ci_high, *n)),
            Noise::Exact => "exact count".into(),
            Noise::Untested { reason } => format!("noise not tested: {reason}"),
        }
    }
}

/// Bootstrap the difference `stat(b) − stat(a)`: (point estimate, CI low, CI high). None when a side has
/// fewer than [`MIN_SAMPLES`] samples or the statistic is not finite on the full samples.
pub fn bootstrap_difference<T: Copy>(a: &[T], b: &[T], stat: impl Fn(&[T]) -> f64) -> Option<(f64, f64, f64)> {
    if a.len() < MIN_SAMPLES || b.len() < MIN_SAMPLES {
        return None;
    }
    let point = stat(b) - stat(a);
    if !point.is_finite() {
        return None;
    }
    let mut rng = oorandom::Rand64::new(u128::from(SEED));
    let mut draw = |xs: &[T], buf: &mut Vec<T>| {
        buf.clear();
        let n = u64::try_from(xs.len()).expect("a slice length fits u64");
        for _ in 0..xs.len() {
            let i = usize::try_from(rng.rand_range(0..n)).expect("an index below a slice length");
            buf.push(xs[i]);
        }
    };
    let (mut ra, mut rb) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    let mut diffs: Vec<f64> = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        draw(a, &mut ra);
        draw(b, &mut rb);
        let d = stat(&rb) - stat(&ra);
        if d.is_finite() {
            diffs.push(d);
        }
    }
    if diffs.len() < RESAMPLES / 2 {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0 * 100.0;
    let lo = results::stats::percentile_sorted(&diffs, tail);
    let hi = results::stats::percentile_sorted(&diffs, 100.0 - tail);
    Some((point, lo, hi))
}

/// Test B against A for a statistic of raw samples; `scale` is A's figure (the noise threshold is a
/// fraction of it).
pub fn test<T: Copy>(a: &[T], b: &[T], stat: impl Fn(&[T]) -> f64) -> Noise {
    let n = (a.len(), b.len());
    let Some((by, ci_low, ci_high)) = bootstrap_difference(a, b, &stat) else {
        return Noise::Untested { reason: format!("too few raw samples (n = {}/{}, need {MIN_SAMPLES})", n.0, n.1) };
    };
    let threshold = NOISE_THRESHOLD * stat(a).abs();
    let changed = ci_low > threshold || ci_high < -threshold;
    if changed {
        Noise::Changed { by, ci_low, ci_high, n }
    } else {
        Noise::NoChange { by, ci_low, ci_high, n }
    }
}

/// The raw samples behind a compared figure of a run.
enum Raw {
    /// Per-launch seconds (startup median or p99).
    Launches(Vec<f64>, f64),
    /// Density steps (instances, bytes used) over the fitted range; `per_gib`: instances per GiB
    /// rather than the slope.
    Steps(Vec<(f64, f64)>, bool),
}

fn raw(r: &RunData, section: &str, backend: &str, metric: &str) -> Option<Raw> {
    match section {
        "startup" => {
            let (stat, mode) = metric.split_once(' ')?;
            let pct = match stat {
                "median" => 50.0,
                "p99" => 99.0,
                _ => return None,
            };
            let xs: Vec<f64> = r
                .startup
                .as_ref()?
                .iter()
                .filter(|s| s.backend == backend && s.mode.to_string() == mode && !s.warmup)
                .map(|s| s.launch_to_ready_s)
                .collect();
            Some(Raw::Launches(xs, pct))
        }
        "density" => {
            let per_gib = match metric {
                "per-instance slope" => false,
                "instances per GiB" => true,
                _ => return None,
            };
            let from = r.density_fit.as_ref()?.iter().find(|f| f.backend == backend)?.fit_from_instances.unwrap_or(1);
            let pts: Vec<(f64, f64)> = r
                .density
                .as_ref()?
                .iter()
                .filter(|s| s.backend == backend && s.instances >= from)
                .map(|s| (f64::from(s.instances), s.mem_used_delta_bytes as f64))
                .collect();
            Some(Raw::Steps(pts, per_gib))
        }
        _ => None,
    }
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    results::stats::percentile_sorted(&s, p)
}

fn slope_stat(pts: &[(f64, f64)], per_gib: bool) -> f64 {
    let slope = results::stats::fit_line(pts).map_or(f64::NAN, |l| l.slope);
    match per_gib {
        true if slope > 0.0 => (1u64 << 30) as f64 / slope,
        true => f64::NAN,
        false => slope,
    }
}

/// The noise test of one compared figure of runs A and B (`section`, `backend`, `metric` as
/// `crate::compare` keys them).
pub fn test_figure(a: &RunData, b: &RunData, section: &str, backend: &str, metric: &str) -> Noise {
    if section == "isolation" {
        return Noise::Exact;
    }
    match (raw(a, section, backend, metric), raw(b, section, backend, metric)) {
        (Some(Raw::Launches(xa, p)), Some(Raw::Launches(xb, _))) => test(&xa, &xb, |s| percentile(s, p)),
        (Some(Raw::Steps(pa, g)), Some(Raw::Steps(pb, _))) => {
            // A resample of steps can repeat one instance count only: a slope needs two distinct ones.
            test(&pa, &pb, |s| slope_stat(s, g))
        }
        _ => Noise::Untested { reason: "the runs keep no raw samples for this figure".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic draws from a distribution: `n` values of `base * (1 + spread * u)`, u in [0, 1).
    fn draws(seed: u128, n: usize, base: f64, spread: f64) -> Vec<f64> {
        let mut r = oorandom::Rand64::new(seed);
        (0..n).map(|_| base * (1.0 + spread * r.rand_float())).collect()
    }

    fn median(xs: &[f64]) -> f64 {
        results::stats::median(xs)
    }

    #[test]
    fn same_distribution_is_no_change_and_a_shift_is_a_change() {
        let a = draws(1, 30, 0.010, 0.3);
        let same = draws(2, 30, 0.010, 0.3);
        let n = test(&a, &same, median);
        assert!(matches!(n, Noise::NoChange { .. }), "{n:?}");
        assert!(!n.beyond_noise());
        let shifted = draws(3, 30, 0.013, 0.3);
        let c = test(&a, &shifted, median);
        let Noise::Changed { by, ci_low, ci_high, n } = c.clone() else { panic!("{c:?}") };
        assert!(ci_low > 0.0 && ci_low <= by && by <= ci_high, "{c:?}");
        assert_eq!(n, (30, 30));
        assert!(c.beyond_noise());
        assert!(
            c.describe(|v| format!("{:.1} ms", v * 1e3)).starts_with("changed by +"),
            "{}",
            c.describe(|v| v.to_string())
        );
    }

    #[test]
    fn the_interval_is_reproducible_and_small_samples_are_not_tested() {
        let a = draws(1, 20, 1.0, 0.5);
        let b = draws(9, 20, 1.0, 0.5);
        assert_eq!(bootstrap_difference(&a, &b, median), bootstrap_difference(&a, &b, median));
        assert!(matches!(test(&a[..3], &b, median), Noise::Untested { .. }));
    }

    #[test]
    fn a_difference_inside_the_noise_threshold_is_no_change() {
        // Identical spreads shifted by 0.5%: the interval excludes zero but stays inside 1%.
        let a: Vec<f64> = (0..50).map(|i| 100.0 + f64::from(i % 5) * 0.01).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 1.005).collect();
        let n = test(&a, &b, median);
        let Noise::NoChange { ci_low, .. } = n else { panic!("{n:?}") };
        assert!(ci_low > 0.0);
    }
}
