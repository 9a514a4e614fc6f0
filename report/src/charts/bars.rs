//! Horizontal (optionally stacked) bar charts: startup phases, overhead ratios, blast-radius slowdowns, snapshot
//! save times. One bar per row, labelled on the left; an optional reference line (e.g. 1.0 = process baseline).
use super::axis::Axis;
use super::{draw_svg, Chart, ChartError, FONT, WIDTH};
use crate::units::sig3;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar: its label and stacked segments (length, colour), left to right.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Segments, stacked.
    pub segments: Vec<(f64, RGBColor)>,
}

/// A bar chart to draw.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// File name (`startup_phases.svg`).
    pub file: String,
    /// Caption, including the sample count.
    pub title: String,
    /// X axis title with unit.
    pub x_desc: String,
    /// Legend entries.
    pub legend: Vec<(String, RGBColor)>,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
    /// A vertical reference line and its legend text.
    pub reference: Option<(f64, String)>,
}

/// Draw a bar chart; None when there are no bars.
pub fn bar_chart(spec: &BarChart) -> Result<Option<Chart>, ChartError> {
    if spec.bars.is_empty() {
        return Ok(None);
    }
    let n = spec.bars.len();
    // Negative and non-finite segments are drawn as empty.
    let len = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let total = |b: &Bar| b.segments.iter().map(|s| len(s.0)).sum::<f64>();
    let max = spec.bars.iter().map(total).fold(spec.reference.as_ref().map_or(0.0, |r| r.0), f64::max);
    let x = Axis::linear(0.0, if max > 0.0 { max * 1.12 } else { 0.0 });
    let rows = Axis::categories(n);
    let longest = spec.bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(8);
    let label_w = u32::try_from(longest).unwrap_or(u32::MAX).saturating_mul(7).saturating_add(16).clamp(90, 300);
    let legend_rows = u32::try_from(spec.legend.len()).expect("a legend has fewer than 2^32 entries")
        + u32::from(spec.reference.is_some());
    let height = (120 + u32::try_from(n).expect("a chart has fewer than 2^32 bars") * 30).max(100 + legend_rows * 20);
    let labels: Vec<String> = spec.bars.iter().map(|b| b.label.clone()).collect();
    let legend = legend_entries(spec);
    let legend_w = if legend.is_empty() { 0 } else { legend_width(&legend) };
    draw_svg(&spec.file, &spec.title, (WIDTH, height), |root| {
        let root = root.titled(&spec.title, (FONT, 18))?;
        let (plot, side) = root.split_horizontally(WIDTH - legend_w);
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(label_w)
            .build_cartesian_2d(x.clone(), rows)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(spec.x_desc.as_str())
            .x_label_formatter(&|v| x.label(*v))
            // Row i spans i..i+1 and is labelled at its centre; bars are listed top to bottom, the y axis grows
            // upwards.
            .y_label_formatter(&|v| {
                let row = v.floor();
                if row >= 0.0 && row < n as f64 {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a whole number in 0..n
                    let row = row as usize;
                    labels[n - 1 - row].clone()
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(238, 238, 238))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (i, bar) in spec.bars.iter().enumerate() {
            let row = (n - 1 - i) as f64;
            let mut x = 0.0;
            for (seg, color) in &bar.segments {
                let seg = len(*seg);
                let mut r = Rectangle::new([(x, row), (x + seg, row + 1.0)], color.filled());
                r.set_margin(5, 5, 0, 0);
                chart.draw_series(std::iter::once(r))?;
                x += seg;
            }
            chart.draw_series(std::iter::once(Text::new(
                format!(" {}", sig3(x)),
                (x, row + 0.5),
                (FONT, 12).into_font().color(&RGBColor(60, 60, 60)).pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        if let Some((x, _)) = &spec.reference {
            let x = *x;
            chart.draw_series(DashedLineSeries::new(vec![(x, 0.0), (x, n as f64)], 6, 4, BLACK.stroke_width(1)))?;
        }
        draw_legend(&side, &legend)?;
        Ok(())
    })
    .map(Some)
}

/// A legend entry: text, colour, and whether it is a line (reference) rather than a filled box.
type Entry = (String, RGBColor, bool);

fn legend_entries(spec: &BarChart) -> Vec<Entry> {
    let mut v: Vec<Entry> = spec.legend.iter().map(|(t, c)| (t.clone(), *c, false)).collect();
    if let Some((_, t)) = &spec.reference {
        v.push((t.clone(), BLACK, true));
    }
    v
}

fn legend_width(entries: &[Entry]) -> u32 {
    let longest = entries.iter().map(|e| e.0.chars().count()).max().unwrap_or(0);
    u32::try_from(longest).unwrap_or(u32::MAX).saturating_mul(7).saturating_add(44).clamp(120, 260)
}

/// Draw legend entries stacked in their own column right of the plot, so they never hide a bar.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[Entry],
) -> super::DrawResult
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(());
    }
    area.draw(&Text::new("legend", (8, 14), (FONT, 13).into_font().color(&RGBColor(110, 110, 110))))?;
    for (i, (text, color, line)) in entries.iter().enumerate() {
        let y = 36 + i32::try_from(i).expect("a legend has fewer than 2^31 entries") * 20;
        if *line {
            area.draw(&PathElement::new(vec![(8, y), (24, y)], color.stroke_width(1)))?;
        } else {
            area.draw(&Rectangle::new([(8, y - 6), (22, y + 6)], color.filled()))?;
        }
        area.draw(&Text::new(
            text.clone(),
            (30, y),
            (FONT, 13).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}
