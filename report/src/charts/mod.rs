//! SVG charts drawn with plotters' SVG backend. Every chart has axis titles with units, a legend and the sample
//! count in its caption; colours come from [`crate::palette`] so a backend looks the same everywhere.
pub mod axis;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::bars::{bar_chart, Bar, BarChart};
    use super::cdf::{startup_cdf, CdfSeries};
    use super::lines::{xy_chart, XyChart, XySeries};
    use plotters::style::RGBColor;

    /// One `<text>` element of a plotters SVG: (x, y, dy, anchor, text, rotated).
    fn texts(svg: &str) -> Vec<(i32, i32, String, String, String, bool)> {
        let attr = |tag: &str, name: &str| -> String {
            let k = format!(" {name}=\"");
            tag.find(&k).map_or(String::new(), |i| {
                let rest = &tag[i + k.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
        };
        let mut out = Vec::new();
        for part in svg.split("<text").skip(1) {
            let Some(end) = part.find('>') else { continue };
            let tag = &part[..end];
            let body = &part[end + 1..part.find("</text>").unwrap_or(end + 1)];
            out.push((
                attr(tag, "x").parse().unwrap_or(0),
                attr(tag, "y").parse().unwrap_or(0),
                attr(tag, "dy"),
                attr(tag, "text-anchor"),
                body.trim().to_string(),
                tag.contains("transform="),
            ));
        }
        out
    }

    /// The tick labels plotters drew on the x axis (centred under the plot, the lowest row of centred
    /// labels) and on the y axis (right-aligned left of the plot), in drawing order.
    pub(crate) fn axis_labels(svg: &str) -> (Vec<String>, Vec<String>) {
        let t = texts(svg);
        let xs: Vec<_> = t.iter().filter(|e| e.2 == "0.76em" && e.3 == "middle" && !e.5).collect();
        let low = xs.iter().map(|e| e.1).max().unwrap_or(0);
        let x = xs.iter().filter(|e| e.1 == low && low > 60).map(|e| e.4.clone()).collect();
        let y = t.iter().filter(|e| e.2 == "0.5ex" && e.3 == "end").map(|e| e.4.clone()).collect();
        (x, y)
    }

    fn distinct(v: &[String]) -> usize {
        let mut d: Vec<&String> = v.iter().filter(|s| !s.is_empty()).collect();
        d.sort();
        d.dedup();
        d.len()
    }

    /// A problem with one axis' labels: fewer than two distinct values, or a label that is not a number.
    fn check(what: &str, labels: &[String]) -> Option<String> {
        let unreadable =
            labels.iter().filter(|l| !l.is_empty()).find(|l| l.trim_end_matches('%').parse::<f64>().is_err());
        if distinct(labels) < 2 || unreadable.is_some() {
            Some(format!("{what} labels {labels:?}"))
        } else {
            None
        }
    }

    /// Sample sets: (name, values) spanning less than a decade, several decades, nothing (all equal), one value.
    fn spans(unit: f64) -> Vec<(&'static str, Vec<f64>)> {
        vec![
            ("sub-decade", [2.0, 3.1, 4.5, 6.0, 8.0].map(|v| v * unit).to_vec()),
            ("narrow", [330.0, 345.0, 360.0, 380.0].map(|v| v * unit).to_vec()),
            ("multi-decade", [0.15, 2.0, 40.0, 900.0].map(|v| v * unit).to_vec()),
            ("zero-width", vec![5.0 * unit; 6]),
            ("single point", vec![7.0 * unit]),
        ]
    }

    #[test]
    fn cdf_axes_have_two_labels_whatever_the_span() {
        let mut bad = Vec::new();
        for (name, v) in spans(1e-3) {
            let s = [CdfSeries { backend: "container".into(), samples_s: v, note: String::new() }];
            let c = startup_cdf(&s, "sequential").unwrap().unwrap();
            let (x, y) = axis_labels(&c.svg);
            bad.extend(check(&format!("{name}: x"), &x));
            bad.extend(check(&format!("{name}: y"), &y));
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn xy_axes_have_two_labels_whatever_the_span() {
        let mut bad = Vec::new();
        for log_y in [true, false] {
            for (name, v) in spans(1.0) {
                for xs in [vec![1.0], vec![1.0, 2.0, 4.0, 8.0], vec![3.0; 3]] {
                    let points: Vec<(f64, f64)> = xs.iter().cycle().zip(&v).map(|(x, y)| (*x, *y)).collect();
                    let spec = XyChart {
                        file: "t.svg".into(),
                        title: "t".into(),
                        x_desc: "x".into(),
                        y_desc: "y".into(),
                        series: vec![XySeries { backend: "crun".into(), legend: "crun".into(), points, fit: None }],
                        connect: true,
                        log_y,
                        integer_x: true,
                    };
                    let c = xy_chart(&spec).unwrap().unwrap();
                    let (x, y) = axis_labels(&c.svg);
                    bad.extend(check(&format!("{name} log_y={log_y} xs={xs:?}: x"), &x));
                    bad.extend(check(&format!("{name} log_y={log_y} xs={xs:?}: y"), &y));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn bar_axes_have_two_labels_whatever_the_span() {
        let mut bad = Vec::new();
        for (name, v) in spans(1.0).into_iter().chain([("zeros", vec![0.0, 0.0])]) {
            let bars: Vec<Bar> = v
                .iter()
                .enumerate()
                .map(|(i, x)| Bar { label: format!("bar {i}"), segments: vec![(*x, RGBColor(1, 2, 3))] })
                .collect();
            let spec = BarChart {
                file: "t.svg".into(),
                title: "t".into(),
                x_desc: "x".into(),
                legend: vec![],
                bars,
                reference: None,
            };
            let c = bar_chart(&spec).unwrap().unwrap();
            let (x, y) = axis_labels(&c.svg);
            bad.extend(check(&format!("{name}: x"), &x));
            if distinct(&y) != v.len() {
                bad.push(format!("{name}: one label per bar expected, got {y:?}"));
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
