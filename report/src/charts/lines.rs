//! XY charts: launch rate vs concurrency, and host memory used vs instances with the fitted per-instance line.
use super::axis::Axis;
use super::{draw_svg, Chart, ChartError, FONT, WIDTH};
use crate::palette::backend_color;
use plotters::prelude::*;

/// One backend's points and optional fitted line `y = slope * x + intercept`.
#[derive(Debug, Clone)]
pub struct XySeries {
    /// Backend name.
    pub backend: String,
    /// Legend text (backend name plus the headline figure and sample count).
    pub legend: String,
    /// Measured points.
    pub points: Vec<(f64, f64)>,
    /// Fitted line (slope, intercept), drawn dashed over the measured x range.
    pub fit: Option<(f64, f64)>,
}

/// An XY chart to draw.
#[derive(Debug, Clone)]
pub struct XyChart {
    /// File name.
    pub file: String,
    /// Caption with the sample count.
    pub title: String,
    /// X axis title with unit.
    pub x_desc: String,
    /// Y axis title with unit.
    pub y_desc: String,
    /// Series.
    pub series: Vec<XySeries>,
    /// Connect points with lines (launch rate) or not (density scatter with a fit).
    pub connect: bool,
    /// Log-scale y axis (values spanning orders of magnitude, e.g. launch rates); linear when the values lie
    /// within one decade. The axis title gets ", log scale" when the axis is logarithmic.
    pub log_y: bool,
    /// X values are integers (concurrency, instances): ticks at whole numbers only.
    pub integer_x: bool,
}

/// Draw an XY chart; None when no series has points. Non-finite points are not drawn.
pub fn xy_chart(spec: &XyChart) -> Result<Option<Chart>, ChartError> {
    let series: Vec<XySeries> = spec
        .series
        .iter()
        .map(|s| XySeries {
            points: s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect(),
            ..s.clone()
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (xmax, ymax, ymin) = pts.fold((0f64, 0f64, 0f64), |(a, b, c), p| (a.max(p.0), b.max(p.1), c.min(p.1)));
    let xmax = if xmax > 0.0 { xmax * 1.05 } else { 1.0 };
    let x = if spec.integer_x { Axis::integer(0.0, xmax) } else { Axis::linear(0.0, xmax) };
    let ypos = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| *y > 0.0);
    let (ylo, yhi) = ypos.fold((f64::MAX, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let y = if spec.log_y && ylo <= yhi {
        Axis::log_or_linear(ylo / 1.5, yhi * 1.5)
    } else {
        Axis::linear(if ymin < 0.0 { ymin * 1.1 } else { 0.0 }, if ymax > 0.0 { ymax * 1.1 } else { 0.0 })
    };
    let y_desc = y.title(&spec.y_desc);
    draw_svg(&spec.file, &spec.title, (WIDTH, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&spec.title, (FONT, 18))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x.clone(), y.clone())?;
        chart
            .configure_mesh()
            .x_desc(spec.x_desc.as_str())
            .y_desc(y_desc.as_str())
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| y.label(*v))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for s in &series {
            let c = backend_color(&s.backend);
            let mut p = s.points.clone();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            if spec.connect {
                chart.draw_series(LineSeries::new(p.clone(), c.stroke_width(2)))?;
            }
            chart
                .draw_series(p.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled())))?
                .label(s.legend.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
            if let Some((slope, icept)) = s.fit.filter(|f| f.0.is_finite() && f.1.is_finite()) {
                let x0 = p.first().map_or(0.0, |q| q.0);
                let x1 = p.last().map_or(0.0, |q| q.0);
                chart.draw_series(DashedLineSeries::new(
                    vec![(x0, slope * x0 + icept), (x1, slope * x1 + icept)],
                    8,
                    5,
                    c.stroke_width(2),
                ))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
    .map(Some)
}
