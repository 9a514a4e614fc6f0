//! Density, launch latency as the host fills (issue 18 item 1): the launch-to-ready time of every
//! density step (`density.csv` `launch_s`) against the instances alive before it, one series per
//! backend, with a least-squares line whose slope is given in ms per 1000 instances alive.
use crate::charts::lines::{xy_chart, XyChart, XySeries};
use crate::charts::{Chart, ChartError};
use crate::data::RunData;
use crate::html::figure;
use crate::units::sig3;
use results::{stats, DensityStep, Record};

/// A backend's fitted growth of launch latency: ms per 1000 instances alive, with its sample count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySlope {
    /// Slope, milliseconds of launch-to-ready per 1000 instances alive.
    pub ms_per_1000: f64,
    /// Intercept, milliseconds (the fitted launch with none alive).
    pub ms_at_0: f64,
    /// Steps fitted.
    pub n: usize,
}

/// (instances alive before the launch, launch-to-ready ms) of `backend`'s steps.
fn points(steps: &[DensityStep], backend: &str) -> Vec<(f64, f64)> {
    steps
        .iter()
        .filter(|s| s.backend == backend && s.launch_s.is_finite())
        .map(|s| (f64::from(s.instances.saturating_sub(1)), s.launch_s * 1e3))
        .collect()
}

/// The fitted slope for `backend`, None with fewer than 3 steps or no spread in instances alive.
pub fn slope(steps: &[DensityStep], backend: &str) -> Option<LatencySlope> {
    let pts = points(steps, backend);
    if pts.len() < 3 {
        return None;
    }
    let line = stats::fit_line(&pts)?;
    line.slope.is_finite().then_some(LatencySlope {
        ms_per_1000: line.slope * 1000.0,
        ms_at_0: line.intercept,
        n: pts.len(),
    })
}

/// The table cell for the density table's "launch growth" column.
pub fn slope_cell(run: &RunData, backend: &str) -> String {
    match run.density.as_deref().and_then(|s| slope(s, backend)) {
        Some(s) => format!("{} ms/1000 alive (n={})", sig3(s.ms_per_1000), s.n),
        None => "<span class=\"na\">-</span>".into(),
    }
}

/// The chart "launch latency vs instances alive" and its figure HTML; None without steps.
pub fn chart(run: &RunData) -> Result<Option<(Chart, String)>, ChartError> {
    let Some(steps) = run.density.as_deref() else { return Ok(None) };
    let series: Vec<XySeries> = run
        .backends()
        .into_iter()
        .filter_map(|b| {
            let pts = points(steps, &b);
            if pts.is_empty() {
                return None;
            }
            let fit = slope(steps, &b);
            let legend = match fit {
                Some(f) => format!("{b}: {} ms per 1000 alive (n={})", sig3(f.ms_per_1000), pts.len()),
                None => format!("{b} (n={})", pts.len()),
            } + &crate::marks::chart_note(run, &b, results::Quantity::Startup);
            Some(XySeries { backend: b, legend, points: pts, fit: fit.map(|f| (f.ms_per_1000 / 1000.0, f.ms_at_0)) })
        })
        .collect();
    let n: usize = series.iter().map(|s| s.points.len()).sum();
    let spec = XyChart {
        file: "density_launch.svg".into(),
        title: format!("Launch latency vs instances alive (n = {n} launches; dashed = fit)"),
        x_desc: "instances alive".into(),
        y_desc: "launch to ready (ms)".into(),
        series,
        connect: false,
        log_y: false,
        integer_x: true,
    };
    Ok(xy_chart(&spec)?.map(|c| {
        let html = figure(&c, DensityStep::FILE);
        (c, html)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(backend: &str, instances: u32, launch_s: f64) -> DensityStep {
        DensityStep {
            backend: backend.into(),
            instances,
            mem_available_bytes: 0,
            mem_used_delta_bytes: 0,
            slab_bytes: 0,
            slab_delta_bytes: 0,
            instance_rss_bytes: None,
            guest_mem_bytes: None,
            vmm_overhead_bytes: None,
            cgroup_usage_bytes: None,
            pss_bytes: None,
            launch_s,
        }
    }

    #[test]
    fn slope_is_ms_per_1000_alive_per_backend() {
        // 4 ms with none alive, +2 ms per 1000 alive; another backend flat at 1 ms.
        let mut steps: Vec<DensityStep> =
            (1..=50).map(|n| step("a", n * 100, 0.004 + 2e-6 * f64::from(n * 100 - 1))).collect();
        steps.extend((1..=10).map(|n| step("b", n, 0.001)));
        let a = slope(&steps, "a").unwrap();
        assert!((a.ms_per_1000 - 2.0).abs() < 1e-9 && (a.ms_at_0 - 4.0).abs() < 1e-9, "{a:?}");
        assert_eq!(a.n, 50);
        assert!(slope(&steps, "b").unwrap().ms_per_1000.abs() < 1e-9);
        assert_eq!(slope(&steps[..2], "a"), None, "too few steps");
        assert_eq!(slope(&steps, "c"), None);
    }
}
