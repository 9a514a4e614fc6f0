//! The one rule deciding whether a measured figure may be shown as a result and compared with others. The
//! headline cards, the section tables, the verdicts, the capacity planner, the comparison and the merged page
//! all judge figures with [`Figure::check`], so a figure refused in one place is refused everywhere.
//!
//! The rule, in order:
//! 1. the value is finite (a NaN slope from a one-point fit, an infinite rate from a zero duration are not
//!    measurements);
//! 2. the value lies in its quantity's [`Domain`]: durations, per-instance costs, rates and ratios of two of
//!    them are > 0 (a 0 s startup or a negative memory slope cannot be measured, only produced by a broken clock
//!    or by memory handed back during a sweep); counts are >= 0;
//! 3. the figure rests on at least [`MIN_SAMPLES`] samples when its sample count is known: a single sample
//!    has no spread, so it is shown, marked, but never compared (it never wins a verdict, a planner pick or a
//!    "best" mark).
//!
//! A figure failing 1 or 2 is not shown as a number at all, only the reason.
use crate::data::RunData;
use results::{BlastRow, DensityFit, OverheadRow, SnapshotRow, StartupSummary};

/// Samples a figure needs to be compared (a single sample has no spread to judge it by).
pub const MIN_SAMPLES: u32 = 2;

/// Below this coefficient of determination a density fit (host memory against instances alive) is called
/// poor wherever it is shown: the section's table and the planner say so beside the figure, which stays
/// usable but rough (memory handed back or taken by others during the sweep bends the line).
pub const POOR_FIT_R2: f64 = 0.9;

/// What the report says beside a fit's r² when it is poor ([`POOR_FIT_R2`]); None for a good or unknown fit.
pub fn poor_fit(r2: f64) -> Option<&'static str> {
    (r2.is_finite() && r2 < POOR_FIT_R2).then_some("poor linear fit: the per-instance figure is rough")
}

/// The values a quantity can take when it was measured correctly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    /// Durations, per-instance costs, rates and ratios of those: strictly positive.
    Positive,
    /// Counts (isolation failures): zero or more.
    NonNegative,
    /// Host memory per instance when each instance held (touched and kept) this many bytes: positive and at
    /// least half of it; less means the measurement missed memory the instance provably holds (a fit a few
    /// percent under the held bytes is noise of the fit and stands; the planner notes it).
    AtLeastHeld(f64),
    /// Instances per GiB when each instance held this many bytes: positive and at most 1 GiB / held.
    AtMostPerGibHeld(f64),
}

/// Why a figure is not valid. The message is shown in the report next to (or instead of) the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Flaw {
    /// NaN or infinite.
    #[error("invalid: {0} (not a finite number)")]
    NotFinite(f64),
    /// Zero or negative where only positive values can be measured.
    #[error("invalid: {0} (must be greater than zero)")]
    NotPositive(f64),
    /// Negative where counts are expected.
    #[error("invalid: {0} (a count cannot be negative)")]
    Negative(f64),
    /// Below what each instance provably holds (value, held bytes).
    #[error("implausible: {0} B per instance is less than half the {1} B each instance held")]
    BelowHeld(f64, f64),
    /// More instances per GiB than fit when each holds its working set (value, the most possible).
    #[error("implausible: {0} per GiB is more than twice the {1} that fit when each instance holds its working set")]
    AboveHeldFit(f64, f64),
    /// Fewer samples than [`MIN_SAMPLES`].
    #[error("n = {0}: too few samples to compare")]
    TooFewSamples(u32),
}

impl Flaw {
    /// The message with the value formatted by `fmt` (`invalid: −976 KiB (must be greater than zero)`).
    pub fn describe(&self, fmt: impl Fn(f64) -> String) -> String {
        match self {
            Flaw::NotPositive(v) => format!("invalid: {} (must be greater than zero)", fmt(*v)),
            Flaw::Negative(v) => format!("invalid: {} (a count cannot be negative)", fmt(*v)),
            // The bound is said in its own unit, not through `fmt` (which may prefix the figure's name).
            Flaw::AboveHeldFit(v, max) => format!(
                "implausible: {} is more than twice the {} per GiB that fit when each instance holds its working set",
                fmt(*v),
                crate::units::sig3(*max)
            ),
            Flaw::BelowHeld(v, held) => format!(
                "implausible: {} per instance is less than half the {} each instance held",
                fmt(*v),
                crate::units::fmt_bytes(*held)
            ),
            _ => self.to_string(),
        }
    }

    /// A short form for table cells beside the value (`n = 1, not compared`); the full message for the others.
    pub fn short(&self) -> String {
        match self {
            Flaw::TooFewSamples(n) => format!("n = {n}, not compared"),
            _ => self.to_string(),
        }
    }

    /// Whether the value is still shown (marked): only for too few samples, and only with at least one.
    pub fn shows_value(&self) -> bool {
        matches!(self, Flaw::TooFewSamples(n) if *n > 0)
    }
}

/// A measured figure: its value, what values it can take, and the samples it rests on when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The value, in the unit of its column.
    pub value: f64,
    /// What values are possible.
    pub domain: Domain,
    /// Samples behind the value (launches, fitted density steps, runs); None when the CSV does not say.
    pub n: Option<u32>,
}

impl Figure {
    /// A figure that must be > 0 (duration, size, rate, ratio).
    pub fn positive(value: f64) -> Figure {
        Figure { value, domain: Domain::Positive, n: None }
    }

    /// A count (>= 0).
    pub fn count(value: f64) -> Figure {
        Figure { value, domain: Domain::NonNegative, n: None }
    }

    /// The same figure resting on `n` samples.
    pub fn samples(self, n: u32) -> Figure {
        Figure { n: Some(n), ..self }
    }

    /// The rule (see the module docs): the value when valid, else why not.
    pub fn check(&self) -> Result<f64, Flaw> {
        let v = self.value;
        if !v.is_finite() {
            return Err(Flaw::NotFinite(v));
        }
        match self.domain {
            Domain::Positive if v <= 0.0 => return Err(Flaw::NotPositive(v)),
            Domain::NonNegative if v < 0.0 => return Err(Flaw::Negative(v)),
            Domain::AtLeastHeld(_) if v <= 0.0 => return Err(Flaw::NotPositive(v)),
            Domain::AtLeastHeld(held) if v < held / 2.0 => return Err(Flaw::BelowHeld(v, held)),
            Domain::AtMostPerGibHeld(_) if v <= 0.0 => return Err(Flaw::NotPositive(v)),
            Domain::AtMostPerGibHeld(max) if v > 2.0 * max => return Err(Flaw::AboveHeldFit(v, max)),
            _ => {}
        }
        match self.n {
            Some(n) if n < MIN_SAMPLES => Err(Flaw::TooFewSamples(n)),
            _ => Ok(v),
        }
    }

    /// Whether the figure may be compared.
    pub fn valid(&self) -> bool {
        self.check().is_ok()
    }

    /// The value to show: when valid, or when its only flaw keeps the value (too few samples).
    pub fn shown(&self) -> Option<f64> {
        match self.check() {
            Ok(v) => Some(v),
            Err(f) if f.shows_value() => Some(self.value),
            Err(_) => None,
        }
    }
}

/// Median launch-to-ready of a startup summary row, seconds, on its `n` launches.
pub fn startup_median(s: &StartupSummary) -> Figure {
    Figure::positive(s.median_s).samples(s.n)
}

/// p99 launch-to-ready of a startup summary row, seconds, on its `n` launches.
pub fn startup_p99(s: &StartupSummary) -> Figure {
    Figure::positive(s.p99_s).samples(s.n)
}

/// Launches per second of a concurrent startup row, on its `n` launches (None when not measured).
pub fn launch_rate(s: &StartupSummary) -> Option<Figure> {
    s.launches_per_s.map(|r| Figure::positive(r).samples(s.n))
}

/// Density steps a fit rests on: those from `fit_from_instances` (else 1) to `instances`.
pub fn fitted_steps(f: &DensityFit) -> u32 {
    f.instances.saturating_sub(f.fit_from_instances.unwrap_or(1).max(1)) + 1
}

/// Fitted host memory per instance, bytes.
pub fn density_slope(f: &DensityFit) -> Figure {
    // Each instance touched and kept `hold_mib`: a slope below it missed memory the instance provably holds
    // (a real run on a loaded host fitted 193 KiB per instance holding 4 MiB).
    Figure { value: f.slope_bytes, domain: Domain::AtLeastHeld((f.hold_mib << 20) as f64), n: None }
        .samples(fitted_steps(f))
}

/// Instances per GiB of host memory (1 GiB / slope). Judged together with the slope it comes from: when the slope
/// is not a possible value the figure is 1 GiB / slope (negative, or NaN), whatever the CSV's column holds (the
/// harness writes NaN there for a negative slope), so the reason shows the sign.
pub fn instances_per_gib(f: &DensityFit) -> Figure {
    let value = if density_slope(f).check().is_err_and(|e| !e.shows_value()) {
        (1u64 << 30) as f64 / f.slope_bytes
    } else {
        f.instances_per_gib
    };
    if f.hold_mib > 0 {
        // As many as fit when each holds its working set, at most: more says the slope missed memory.
        let max = (1u64 << 30) as f64 / (f.hold_mib << 20) as f64;
        return Figure { value, domain: Domain::AtMostPerGibHeld(max), n: None }.samples(fitted_steps(f));
    }
    Figure::positive(value).samples(fitted_steps(f))
}

/// An overhead row's ratio to the process baseline, on its `n` runs (None when unsupported or without a
/// baseline).
pub fn overhead_ratio(o: &OverheadRow) -> Option<Figure> {
    o.ratio_to_process.filter(|_| o.supported).map(|r| Figure::positive(r).samples(o.n))
}

/// Whether an overhead metric is a check value (unit `u32`: the workload's computed result, which must equal the
/// process baseline's, so its ratio is 1 or a correctness failure) rather than a cost to compare.
pub fn is_check_value(unit: &str) -> bool {
    unit == "u32"
}

/// A victim's slowdown next to a neighbour (blast.csv holds one figure per pair, sample count not recorded).
pub fn blast_slowdown(b: &BlastRow) -> Figure {
    Figure::positive(b.slowdown)
}

/// Time to save state (snapshot.csv: one save per row, sample count not recorded).
pub fn save_time(s: &SnapshotRow) -> Figure {
    Figure::positive(s.save_s)
}

/// The sequential startup median of every backend that has one, for the headline card and the verdict.
pub fn startup_medians(run: &RunData) -> Vec<(String, Figure)> {
    run.backends().into_iter().filter_map(|b| run.startup_of(&b).map(|s| (b, startup_median(s)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A density slope below the memory each instance held is implausible, and so is the instances/GiB it
    /// gives (review of issue 15: a real run on a loaded host showed "5.42 k instances/GiB (193 KiB each,
    /// holding 4 MiB)" as a valid figure and the density verdict used it).
    #[test]
    fn a_slope_below_the_held_memory_is_implausible() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let fits: Vec<DensityFit> = rd.read_csv().unwrap();
        let mut f = fits.into_iter().find(|f| f.backend == "container").unwrap();
        (f.hold_mib, f.slope_bytes) = (4, 193.0 * 1024.0);
        f.instances_per_gib = (1u64 << 30) as f64 / f.slope_bytes;
        assert_eq!(density_slope(&f).check(), Err(Flaw::BelowHeld(193.0 * 1024.0, (4u64 << 20) as f64)));
        let per_gib = instances_per_gib(&f).check();
        assert!(matches!(per_gib, Err(Flaw::AboveHeldFit(_, max)) if max == 256.0), "{per_gib:?}");
        let words = density_slope(&f).check().unwrap_err().describe(|b| format!("{b} B"));
        assert!(words.starts_with("implausible: 197632 B per instance is less than half the 4.00 MiB"), "{words}");
        // A few percent under the held memory is noise of the fit: it stands (3.90 MiB holding 4 MiB, real run).
        f.slope_bytes = 3.90 * (1u64 << 20) as f64;
        f.instances_per_gib = (1u64 << 30) as f64 / f.slope_bytes;
        assert!(density_slope(&f).valid() && instances_per_gib(&f).valid());
        // At or above the held memory it stands.
        f.slope_bytes = (5u64 << 20) as f64;
        f.instances_per_gib = (1u64 << 30) as f64 / f.slope_bytes;
        assert!(density_slope(&f).valid() && instances_per_gib(&f).valid());
        // Nothing held: only positive.
        f.hold_mib = 0;
        f.slope_bytes = 1000.0;
        f.instances_per_gib = (1u64 << 30) as f64 / 1000.0;
        assert!(density_slope(&f).valid() && instances_per_gib(&f).valid());
    }

    #[test]
    fn the_rule_refuses_impossible_values_and_marks_single_samples() {
        assert_eq!(Figure::positive(0.004).samples(20).check(), Ok(0.004));
        assert_eq!(Figure::positive(f64::NAN).check().unwrap_err().to_string(), "invalid: NaN (not a finite number)");
        let neg = Figure::positive(-1e6).check().unwrap_err();
        assert_eq!(neg.describe(crate::units::fmt_bytes), "invalid: -977 KiB (must be greater than zero)");
        assert_eq!(Figure::positive(0.0).samples(1).check(), Err(Flaw::NotPositive(0.0)));
        assert_eq!(Figure::positive(-1e6).check(), Err(Flaw::NotPositive(-1e6)));
        assert_eq!(Figure::positive(f64::INFINITY).shown(), None);
        let single = Figure::positive(0.003).samples(1);
        assert_eq!((single.valid(), single.shown()), (false, Some(0.003)));
        assert_eq!(Figure::positive(0.003).samples(0).shown(), None);
        assert_eq!(Figure::count(0.0).check(), Ok(0.0));
        assert_eq!(Figure::count(-1.0).check(), Err(Flaw::Negative(-1.0)));
        assert!(Figure::positive(1.0).valid(), "unknown sample count is not a flaw");
    }

    #[test]
    fn a_fit_rests_on_its_fitted_steps() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let mut f: Vec<DensityFit> = rd.read_csv().unwrap();
        assert_eq!(fitted_steps(&f[0]), 10);
        f[0].fit_from_instances = Some(6);
        assert_eq!(fitted_steps(&f[0]), 5);
        f[0].instances = 1;
        f[0].fit_from_instances = None;
        assert_eq!(density_slope(&f[0]).check(), Err(Flaw::TooFewSamples(1)));
        // A negative slope makes the count negative even when the CSV holds NaN for it.
        f[1].slope_bytes = -1048576.0;
        f[1].instances_per_gib = f64::NAN;
        assert_eq!(instances_per_gib(&f[1]).check(), Err(Flaw::NotPositive(-1024.0)));
    }

    /// A low r² is flagged beside the figure (it was shown as a plain number); a good or NaN one is not.
    #[test]
    fn a_poor_density_fit_is_flagged() {
        assert!(poor_fit(0.006).is_some_and(|w| w.contains("poor linear fit")));
        assert_eq!(poor_fit(0.97), None);
        assert_eq!(poor_fit(f64::NAN), None);
    }
}
