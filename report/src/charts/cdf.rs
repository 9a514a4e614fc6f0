//! Startup CDF: fraction of launches ready by time t, per backend, on a log time axis (linear when all samples
//! lie within one decade, see [`super::axis`]).
use super::axis::Axis;
use super::{draw_svg, Chart, ChartError, FONT, WIDTH};
use crate::palette::backend_color;
use plotters::prelude::*;

/// One backend's samples, in seconds.
#[derive(Debug, Clone)]
pub struct CdfSeries {
    /// Backend name.
    pub backend: String,
    /// Launch-to-ready samples, seconds.
    pub samples_s: Vec<f64>,
    /// Appended to the legend entry (a transfer mark, `crate::marks::chart_note`; may be empty).
    pub note: String,
}

/// Draw the startup CDF. `series` with no samples are skipped; returns None when nothing is left.
pub fn startup_cdf(series: &[CdfSeries], mode: &str) -> Result<Option<Chart>, ChartError> {
    let series: Vec<&CdfSeries> = series.iter().filter(|s| !s.samples_s.is_empty()).collect();
    if series.is_empty() {
        return Ok(None);
    }
    let total: usize = series.iter().map(|s| s.samples_s.len()).sum();
    let all = series.iter().flat_map(|s| s.samples_s.iter().copied()).filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo_ms, hi_ms) = if lo <= hi { (lo * 1e3 / 1.3, hi * 1e3 * 1.3) } else { (0.01, 1.0) };
    let x = Axis::log_or_linear(lo_ms, hi_ms);
    let y = Axis::linear(0.0, 1.0);
    let x_desc = x.title("launch to ready (ms)");
    let title = format!("Startup: launch-to-ready CDF ({mode}, warm-up excluded, n = {total} launches)");
    draw_svg("startup_cdf.svg", &title, (WIDTH, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 18))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), y)?;
        chart
            .configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc("fraction of launches ready")
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for s in &series {
            let mut v: Vec<f64> = s.samples_s.iter().map(|x| x * 1e3).filter(|x| *x > 0.0).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            // A step function: each sample raises the curve by 1/n.
            let mut pts = Vec::with_capacity(v.len() * 2);
            for (i, x) in v.iter().enumerate() {
                pts.push((*x, i as f64 / n));
                pts.push((*x, (i + 1) as f64 / n));
            }
            let c = backend_color(&s.backend);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(format!("{} (n={}){}", s.backend, v.len(), s.note))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
    .map(Some)
}
