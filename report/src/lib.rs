//! vmct's report: one self-contained HTML page per run (inline SVG charts drawn with plotters, inline CSS, no
//! network), a capacity planner, verdicts on the classic container-vs-VM claims, run comparison, and several runs
//! (hosts) merged into one page.
//!
//! Everything is derived from the files of a run directory (`run.json` and the CSVs defined by [`results`]), so
//! any run can be re-rendered:
//!
//! ```no_run
//! let run = results::RunDir::open("results/runs/2024-05-01T12-00-00")?;
//! let page = report::render(&run)?;
//! println!("{}", page.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
pub mod charts;
pub mod compare;
pub mod crash;
pub mod crosscheck;
pub mod data;
pub mod density_latency;
pub mod density_neighbours;
#[doc(hidden)]
pub mod fixture;
pub mod html;
pub mod image;
pub mod marks;
pub mod memory;
pub mod merge;
pub mod models;
pub mod noise;
pub mod pair;
pub mod palette;
pub mod plan_figures;
pub mod planner;
pub mod registry;
mod render;
pub mod sections;
pub mod surface;
pub mod timefmt;
pub mod units;
pub mod validity;
pub mod verdicts;

pub use compare::{compare, deltas, DeltaRow, RunDeltas};
pub use merge::{merge, merged, MergedRow, MergedRuns};
pub use planner::{plan, Binding, Limit, LimitKind, LimitStatus, PlanError, PlanInput, PlanOutput, SidePlan};
pub use registry::{ReportSection, SECTIONS};
pub use units::{parse_duration, parse_size, UnitsError};
pub use verdicts::{ClaimVerdict, Verdict};

use std::path::PathBuf;

/// Errors rendering a report or a comparison.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run directory could not be read.
    #[error("report: {0}")]
    Run(#[from] results::RunDirError),
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    /// An output file could not be written.
    #[error("report: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Render RUN_DIR/report.html (plus one .svg per chart in RUN_DIR) and return the report's path.
pub fn render(run: &results::RunDir) -> Result<PathBuf, ReportError> {
    let data = data::RunData::load(run)?;
    render::render_run(&data)
}

/// [`render`] with the verdicts' main pair chosen (`vmct report --pair`); None is the default pair.
/// The pair is checked against the run with [`pair::ConfigPair::parse`] by the caller.
pub fn render_with_pair(run: &results::RunDir, pair: Option<&pair::ConfigPair>) -> Result<PathBuf, ReportError> {
    render_to(run, pair, None)
}

/// [`render_with_pair`] into `out` (`vmct report RUN --out PATH`: a directory, or a file ending in `.html`,
/// created if needed; the charts go beside it); None writes RUN_DIR/report.html.
pub fn render_to(
    run: &results::RunDir,
    pair: Option<&pair::ConfigPair>,
    out: Option<&std::path::Path>,
) -> Result<PathBuf, ReportError> {
    let data = data::RunData::load(run)?;
    render::render_run_to(&data, pair, out)
}

/// The verdicts on the classic claims for a run's default pair (the main table the report shows).
pub fn verdicts(run: &results::RunDir) -> Result<Vec<ClaimVerdict>, ReportError> {
    Ok(verdicts::verdicts(&data::RunData::load(run)?))
}
