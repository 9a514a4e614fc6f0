//! Progress for long loops: an indicatif bar with ETA on a terminal, periodic plain lines otherwise
//! (CI logs), nothing with `--quiet`.
//!
//! The ETA comes from a moving rate ([`MovingRate`]): the last [`RATE_WINDOW`] steps, with the time
//! the current step has taken so far counted in, so it follows a rate that changes (launches slowing
//! as a host fills up) instead of averaging it away over the whole run.
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Redraw interval of a progress bar.
pub const BAR_TICK: Duration = Duration::from_millis(200);

/// Least time between two progress lines in [`Mode::Lines`].
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// Steps the moving rate looks back over.
pub const RATE_WINDOW: usize = 8;

/// Step rate over the last [`RATE_WINDOW`] steps, on a clock given by the caller (time since the task
/// started), so it can be tested with a synthetic clock.
#[derive(Debug, Clone, Default)]
pub struct MovingRate {
    /// When each of the last `RATE_WINDOW + 1` steps finished (time since the start); the first entry is
    /// the window's left edge.
    done_at: VecDeque<Duration>,
    /// Steps finished in all.
    done: u64,
}

impl MovingRate {
    /// Record one finished step at `at` (time since the start).
    pub fn step(&mut self, at: Duration) {
        self.done += 1;
        self.done_at.push_back(at);
        if self.done_at.len() > RATE_WINDOW + 1 {
            self.done_at.pop_front();
        }
    }

    /// Steps per second over the window, at `now`: the steps in the window over the time from the
    /// window's left edge (or the start) to `now`, so a step that is taking long lowers the rate
    /// before it finishes. None before the first step.
    pub fn rate(&self, now: Duration) -> Option<f64> {
        let last = *self.done_at.back()?;
        // The window's left edge: the start while the window is not full, then the step before the
        // window's first.
        let (edge, steps) = if self.done_at.len() <= RATE_WINDOW {
            (Duration::ZERO, self.done_at.len())
        } else {
            (self.done_at[0], RATE_WINDOW)
        };
        let span = now.max(last).saturating_sub(edge).as_secs_f64();
        (span > 0.0).then(|| steps as f64 / span)
    }

    /// Time left for `total` steps at the moving rate, at `now`. None before the first step.
    pub fn eta(&self, total: u64, now: Duration) -> Option<Duration> {
        let left = total.saturating_sub(self.done);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate(now)?;
        Some(Duration::from_secs_f64((left as f64 / rate).min(1e7)))
    }
}

/// "12s", "3m05s", or "?" before the first step.
fn fmt_eta(eta: Option<Duration>) -> String {
    match eta.map(|d| d.as_secs()) {
        None => "?".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        Some(s) => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars on stderr.
    Bar,
    /// A plain line every few seconds on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines otherwise.
    pub fn auto(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// One progress task (one experiment on one backend).
pub struct Task {
    mode: Mode,
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    rate: Arc<Mutex<MovingRate>>,
}

impl Task {
    /// Start a task of `total` steps.
    pub fn new(mode: Mode, label: impl Into<String>, total: u64) -> Task {
        let label = label.into();
        let started = Instant::now();
        let rate = Arc::new(Mutex::new(MovingRate::default()));
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new(total);
            let r = Arc::clone(&rate);
            let moving_eta = move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let eta = r.lock().ok().and_then(|r| r.eta(s.len().unwrap_or(0), started.elapsed()));
                let _ = w.write_str(&fmt_eta(eta));
            };
            b.set_style(
                ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg} (eta {moving_eta})")
                    .expect("valid template")
                    .with_key("moving_eta", moving_eta)
                    .progress_chars("=> "),
            );
            b.set_prefix(label.clone());
            b.enable_steady_tick(BAR_TICK);
            b
        });
        if mode == Mode::Lines {
            eprintln!("{label}: 0/{total}");
        }
        Task { mode, bar, label, total, done: 0, started, last_line: Instant::now(), rate }
    }

    /// Advance by one step.
    pub fn inc(&mut self) {
        self.done += 1;
        let now = self.started.elapsed();
        let eta = self.rate.lock().map(|mut r| {
            r.step(now);
            r.eta(self.total, now)
        });
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if self.mode == Mode::Lines && self.last_line.elapsed() > LINE_INTERVAL {
            self.last_line = Instant::now();
            let eta = fmt_eta(eta.ok().flatten());
            eprintln!("{}: {}/{} (eta {eta})", self.label, self.done, self.total);
        }
    }

    /// Change the number of steps the task expects (a sweep that learns where it will stop, e.g. the memory
    /// budget at the memory each instance costs so far): the count shown and the ETA follow it.
    pub fn set_total(&mut self, total: u64) {
        let total = total.max(self.done);
        if total == self.total {
            return;
        }
        self.total = total;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// Set a short status message.
    pub fn message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
        }
    }

    /// Finish with a summary line.
    pub fn finish(self, summary: &str) {
        match self.bar {
            Some(b) => b.finish_with_message(summary.to_string()),
            None if self.mode == Mode::Lines => {
                eprintln!("{}: done in {:.1}s {summary}", self.label, self.started.elapsed().as_secs_f64())
            }
            None => {}
        }
    }
}

/// Print a line that does not garble bars.
pub fn note(mode: Mode, text: &str) {
    if mode != Mode::Quiet {
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Steps of 1 s, then steps of 5 s (a host filling up): once the window holds only slow steps the
    /// ETA is the slow rate times the steps left, where a whole-run average would still say about half.
    #[test]
    fn the_eta_follows_a_rate_that_changes() {
        let total = 40;
        let mut r = MovingRate::default();
        let mut t = 0.0;
        for _ in 0..20 {
            t += 1.0;
            r.step(secs(t));
        }
        assert_eq!(r.eta(total, secs(t)), Some(secs(20.0)), "20 left at 1 step/s");
        for _ in 0..RATE_WINDOW {
            t += 5.0;
            r.step(secs(t));
        }
        let left = (total - 20 - RATE_WINDOW as u64) as f64;
        let eta = r.eta(total, secs(t)).unwrap().as_secs_f64();
        assert!((eta - left * 5.0).abs() < 1e-6, "eta {eta} s, want {} s", left * 5.0);
        let whole_run_average = t / (20 + RATE_WINDOW) as f64 * left;
        assert!(whole_run_average < eta * 0.6, "the old estimate ({whole_run_average} s) was far too low");
    }

    /// A step that is taking long raises the ETA before it finishes; none before the first step; zero
    /// when done.
    #[test]
    fn a_stalled_step_raises_the_eta_and_the_ends_are_defined() {
        let mut r = MovingRate::default();
        assert_eq!(r.eta(10, secs(3.0)), None);
        r.step(secs(1.0));
        r.step(secs(2.0));
        let steady = r.eta(10, secs(2.0)).unwrap();
        assert_eq!(steady, secs(8.0));
        assert!(r.eta(10, secs(12.0)).unwrap() > steady * 4, "a 10 s wait counts in");
        for i in 3..=10 {
            r.step(secs(f64::from(i)));
        }
        assert_eq!(r.eta(10, secs(10.0)), Some(Duration::ZERO));
        assert_eq!((fmt_eta(None), fmt_eta(Some(secs(185.0)))), ("?".to_string(), "3m05s".to_string()));
    }
}
