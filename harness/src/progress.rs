//! Progress for long loops: an indicatif bar with ETA on a terminal, periodic plain lines otherwise
//! (CI logs), nothing with `--quiet`.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Redraw interval of a progress bar.
pub const BAR_TICK: Duration = Duration::from_millis(200);

/// Least time between two progress lines in [`Mode::Lines`].
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

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
}

impl Task {
    /// Start a task of `total` steps.
    pub fn new(mode: Mode, label: impl Into<String>, total: u64) -> Task {
        let label = label.into();
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(label.clone());
            b.enable_steady_tick(BAR_TICK);
            b
        });
        if mode == Mode::Lines {
            eprintln!("{label}: 0/{total}");
        }
        Task { mode, bar, label, total, done: 0, started: Instant::now(), last_line: Instant::now() }
    }

    /// Advance by one step.
    pub fn inc(&mut self) {
        self.done += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if self.mode == Mode::Lines && self.last_line.elapsed() > LINE_INTERVAL {
            self.last_line = Instant::now();
            let eta = self.started.elapsed().as_secs_f64() / self.done as f64
                * (self.total - self.done.min(self.total)) as f64;
            eprintln!("{}: {}/{} (eta {:.0}s)", self.label, self.done, self.total, eta);
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
