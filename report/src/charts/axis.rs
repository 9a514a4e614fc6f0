//! Numeric chart axes whose ticks are chosen here, not by plotters: plotters' log axis labels only powers of ten
//! (a 2-8 ms CDF got the single label "10", 330-380 launches/s got none), and its linear ticks on a 0..1.05
//! axis are 0.1-steps that an integer axis cannot label. An [`Axis`] always has at least two labelled ticks:
//!
//! - linear: steps of 1, 2 or 5 x 10^k, at most [`MAX_TICKS`] of them; a zero-width range is padded
//!   (v ± 50 %, or 0..1 for 0) before ticks are chosen;
//! - log: asked for by charts whose values may span decades; used only when the range spans at least one
//!   decade (else the axis is linear, since a sub-decade log axis holds at most one power of ten). Labels at
//!   1, 2 and 5 x 10^k when the range spans at most three decades, else at the powers of ten; grid lines
//!   (unlabelled) at 2..9 x 10^k;
//! - integer (instance and launcher counts): steps of at least 1, so every label is a whole number;
//! - categories (bar charts): one labelled tick at the centre of each row.
//!
//! [`Axis`] implements plotters' [`Ranged`], so a chart is built with `build_cartesian_2d(x_axis, y_axis)`.
//! Hand-written because plotters has no coordinate combining these rules; it is small and tested below.
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use std::ops::Range;

/// Most labelled ticks on a linear axis (an 880 px chart fits them without overlap).
pub const MAX_TICKS: usize = 8;

/// How values map to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Position proportional to the value.
    Linear,
    /// Position proportional to log10 of the value (values > 0 only).
    Log,
}

/// A numeric axis: drawn range, scale, labelled ticks and unlabelled grid lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    lo: f64,
    hi: f64,
    scale: Scale,
    ticks: Vec<f64>,
    grid: Vec<f64>,
    /// Decimals of linear tick labels (from the step), None on log axes (labels use three significant digits).
    decimals: Option<usize>,
}

/// `lo..hi` made finite, ordered and wider than zero.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo.min(hi), lo.max(hi)),
        (true, false) => (lo, lo),
        (false, true) => (hi, hi),
        (false, false) => (0.0, 1.0),
    };
    let scale = lo.abs().max(hi.abs());
    if hi - lo > scale * 1e-9 {
        (lo, hi)
    } else if scale == 0.0 {
        (0.0, 1.0)
    } else {
        let v = (lo + hi) / 2.0;
        (v - v.abs() * 0.5, v + v.abs() * 0.5)
    }
}

/// Multiples of `step` inside `lo..=hi` (computed as integer multiples, so no drift).
// The bounds are tick indexes of a finite range with at most a few thousand steps; `as` saturates otherwise.
#[allow(clippy::cast_possible_truncation)]
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

impl Axis {
    /// A linear axis over `lo..hi` (bounds in any order; non-finite or zero-width ranges padded).
    pub fn linear(lo: f64, hi: f64) -> Axis {
        Axis::linear_with(lo, hi, 0.0)
    }

    /// A linear axis whose ticks are whole numbers (counts); the range is widened to hold two of them.
    pub fn integer(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = padded(lo, hi);
        Axis::linear_with(lo, hi.max(lo.ceil() + 1.0), 1.0)
    }

    /// `min_step`: smallest tick step allowed (1 for integer axes, 0 for none).
    fn linear_with(lo: f64, hi: f64, min_step: f64) -> Axis {
        let (lo, hi) = padded(lo, hi);
        // The smallest 1/2/5 x 10^k step giving at most MAX_TICKS ticks; the step before it gave more than
        // MAX_TICKS, so this one gives at least MAX_TICKS / 2.5 > 2.
        #[allow(clippy::cast_possible_truncation)] // a decimal exponent of a finite f64: within -324..=308
        let mut k = ((hi - lo) / MAX_TICKS as f64).log10().floor() as i32;
        let step = 'found: loop {
            for m in [1.0, 2.0, 5.0] {
                let step = m * 10f64.powi(k);
                if step >= min_step && multiples(lo, hi, step).len() <= MAX_TICKS {
                    break 'found step;
                }
            }
            k += 1;
        };
        #[allow(clippy::cast_possible_truncation)] // minus a decimal exponent, at least 0: at most 324
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        let ticks = multiples(lo, hi, step);
        let grid = multiples(lo, hi, step / 2.0);
        Axis { lo, hi, scale: Scale::Linear, ticks, grid, decimals: Some(decimals) }
    }

    /// A log axis over positive `lo..hi` when it spans a decade or more, else a linear axis over the same range.
    pub fn log_or_linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = padded(lo, hi);
        if lo <= 0.0 || hi / lo < 10.0 {
            return Axis::linear(lo, hi);
        }
        #[allow(clippy::cast_possible_truncation)] // decimal exponents of finite positive f64s: within -324..=309
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let inside = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
        let at = |ms: &[f64]| -> Vec<f64> {
            (k0..=k1).flat_map(|k| ms.iter().map(move |m| m * 10f64.powi(k))).filter(inside).collect()
        };
        let decades = at(&[1.0]);
        let ticks = if decades.len() <= 3 {
            at(&[1.0, 2.0, 5.0])
        } else {
            // Every n-th power of ten, n chosen so at most MAX_TICKS are labelled (at least 4 powers exist).
            let every = decades.len().div_ceil(MAX_TICKS);
            decades.iter().step_by(every).copied().collect()
        };
        let grid = at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        Axis { lo, hi, scale: Scale::Log, ticks, grid, decimals: None }
    }

    /// One labelled tick at the centre of each of `n` rows (row i spans i..i+1), for bar charts.
    pub fn categories(n: usize) -> Axis {
        let n = n.max(1);
        let ticks = (0..n).map(|i| i as f64 + 0.5).collect();
        Axis { lo: 0.0, hi: n as f64, scale: Scale::Linear, ticks, grid: Vec::new(), decimals: Some(0) }
    }

    /// The scale in use (a log request over less than a decade gives [`Scale::Linear`]).
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// The labelled tick values, ascending.
    pub fn ticks(&self) -> &[f64] {
        &self.ticks
    }

    /// The tick label of `v`: as many decimals as the step needs (linear), else three significant digits.
    pub fn label(&self, v: f64) -> String {
        match self.decimals {
            Some(d) => {
                let s = format!("{v:.d$}");
                let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
                if s == "-0" {
                    "0".into()
                } else {
                    s.to_string()
                }
            }
            None => crate::units::tick(v),
        }
    }

    /// An axis title with the scale noted: `"rate (1/s)"` becomes `"rate (1/s, log scale)"` on a log axis.
    pub fn title(&self, desc: &str) -> String {
        match (self.scale, desc.strip_suffix(')')) {
            (Scale::Linear, _) => desc.to_string(),
            (Scale::Log, Some(open)) if open.contains('(') => format!("{open}, log scale)"),
            (Scale::Log, _) => format!("{desc} (log scale)"),
        }
    }

    /// Position of `v` as a fraction of the axis (0 at `lo`, 1 at `hi`), clamped far outside so pixel
    /// coordinates cannot overflow.
    fn fraction(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log if v > 0.0 => (v / self.lo).ln() / (self.hi / self.lo).ln(),
            Scale::Log => 0.0,
        };
        if f.is_nan() {
            0.0
        } else {
            f.clamp(-10.0, 11.0)
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    // A pixel coordinate: inside the drawing area for values on the axis; `as` saturates (and maps NaN to 0)
    // for values far off it, which plotters clips.
    #[allow(clippy::cast_possible_truncation)]
    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let len = f64::from(limit.1 - limit.0);
        limit.0 + (len * self.fraction(*value) + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.grid.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(a: &Axis) -> Vec<String> {
        a.ticks().iter().map(|v| a.label(*v)).collect()
    }

    fn distinct(a: &Axis) -> usize {
        let mut l = labels(a);
        l.dedup();
        l.len()
    }

    #[test]
    fn a_sub_decade_log_request_becomes_linear_with_several_labels() {
        let a = Axis::log_or_linear(2.0 / 1.3, 8.0 * 1.3);
        assert_eq!(a.scale(), Scale::Linear);
        assert_eq!(labels(&a), ["2", "4", "6", "8", "10"]);
        let r = Axis::log_or_linear(330.0 / 1.5, 380.0 * 1.5);
        assert_eq!(r.scale(), Scale::Linear);
        assert!(distinct(&r) >= 2, "{:?}", labels(&r));
        assert_eq!(a.title("t (ms)"), "t (ms)");
    }

    #[test]
    fn log_axes_label_one_two_five_or_powers_of_ten() {
        let a = Axis::log_or_linear(1.5, 40.0);
        assert_eq!((a.scale(), labels(&a)), (Scale::Log, ["2", "5", "10", "20"].map(String::from).to_vec()));
        assert_eq!(a.title("rate (1/s)"), "rate (1/s, log scale)");
        assert_eq!(a.title("rate"), "rate (log scale)");
        let wide = Axis::log_or_linear(1e-4, 1e6);
        assert_eq!(labels(&wide), ["0.0001", "0.01", "1", "100", "10000", "1000000"]);
        assert!(wide.grid.contains(&0.003));
    }

    #[test]
    fn degenerate_ranges_are_padded() {
        for (lo, hi) in [(5.0, 5.0), (0.0, 0.0), (-3.0, -3.0), (f64::NAN, 2.0), (f64::NAN, f64::INFINITY), (7.0, 1.0)] {
            for a in [Axis::linear(lo, hi), Axis::log_or_linear(lo, hi), Axis::integer(lo, hi)] {
                assert!(distinct(&a) >= 2, "{lo}..{hi}: {a:?}");
                assert!(a.lo < a.hi && a.lo.is_finite() && a.hi.is_finite(), "{lo}..{hi}: {a:?}");
            }
        }
    }

    #[test]
    fn linear_labels_are_distinct_even_far_from_zero() {
        let a = Axis::linear(1000.0, 1002.0);
        assert!(distinct(&a) >= 4, "{:?}", labels(&a));
        assert_eq!(labels(&Axis::linear(0.0, 1.12)), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(labels(&Axis::linear(-0.3, 0.3))[..3], ["-0.3", "-0.2", "-0.1"]);
        assert!(labels(&Axis::linear(0.0, 3e9)).len() <= MAX_TICKS);
    }

    #[test]
    fn integer_axes_have_whole_number_ticks() {
        assert_eq!(labels(&Axis::integer(0.0, 1.05)), ["0", "1"]);
        assert_eq!(labels(&Axis::integer(0.0, 0.5)), ["0", "1"]);
        assert_eq!(labels(&Axis::integer(0.0, 64.0 * 1.05)), ["0", "10", "20", "30", "40", "50", "60"]);
    }

    #[test]
    fn maps_values_to_pixels() {
        let a = Axis::linear(0.0, 10.0);
        assert_eq!((a.map(&0.0, (0, 100)), a.map(&5.0, (0, 100)), a.map(&10.0, (0, 100))), (0, 50, 100));
        let l = Axis::log_or_linear(1.0, 100.0);
        assert_eq!((l.map(&10.0, (0, 100)), l.map(&0.0, (0, 100))), (50, 0));
        assert_eq!(a.map(&f64::INFINITY, (0, 100)), 1100);
    }
}
