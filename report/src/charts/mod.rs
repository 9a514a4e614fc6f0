//! SVG charts drawn with plotters' SVG backend. Every chart has axis titles with units, a legend and the sample
//! count in its caption; colours come from [`crate::palette`] so a backend looks the same everywhere.
pub mod bars;
pub mod cdf;
pub mod lines;

/// Errors drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// plotters failed while drawing.
    #[error("report: cannot draw chart {chart}: {message}")]
    Draw {
        /// The chart's file name.
        chart: String,
        /// plotters' message.
        message: String,
    },
}

/// One drawn chart: an SVG document plus where it goes.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name inside RUN_DIR (`startup_cdf.svg`).
    pub file: String,
    /// Title, also the SVG's caption.
    pub title: String,
    /// The SVG document.
    pub svg: String,
}

/// Chart width in SVG pixels (the page scales it to fit).
pub const WIDTH: u32 = 880;
/// Font family of chart text: the viewer's default sans-serif (nothing to download).
pub const FONT: &str = "sans-serif";

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Run a drawing closure against a fresh SVG string of the given size and wrap the outcome.
pub(crate) fn draw_svg(
    file: &str,
    title: &str,
    size: (u32, u32),
    f: impl FnOnce(&plotters::drawing::DrawingArea<plotters::prelude::SVGBackend, plotters::coord::Shift>) -> DrawResult,
) -> Result<Chart, ChartError> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let wrap = |e: Box<dyn std::error::Error>| ChartError::Draw { chart: file.into(), message: e.to_string() };
        root.fill(&WHITE).map_err(|e| wrap(e.into()))?;
        f(&root).map_err(wrap)?;
        root.present().map_err(|e| wrap(e.into()))?;
    }
    Ok(Chart { file: file.into(), title: title.into(), svg: add_title(&svg, title) })
}

/// Give the SVG an accessible `<title>` (shown as a tooltip and read by screen readers).
fn add_title(svg: &str, title: &str) -> String {
    match svg.find('>') {
        Some(i) if svg.starts_with("<svg") => {
            format!("{}<title>{}</title>{}", &svg[..=i], crate::html::esc(title), &svg[i + 1..])
        }
        _ => svg.to_string(),
    }
}
