//! Density, what idle neighbours cost and do (issue 18 items 4 and 5): the host CPU idle instances
//! consume (`idle_cpu.csv`) and a victim launched among N idle neighbours of its own backend
//! (`victim.csv`): its launch-to-ready and the p50 and p99 of its `cpu` iteration latency, as tables
//! and a chart of the victim's p99 against the neighbours alive.
use crate::charts::lines::{xy_chart, XyChart, XySeries};
use crate::charts::{Chart, ChartError};
use crate::data::RunData;
use crate::html::{backend, figure, no_rows, num, table};
use crate::units::{fmt_secs, sig3};
use results::{IdleCpuRow, Record, VictimRow};

/// The idle CPU cell: milliseconds of host CPU per idle instance per second of wall time.
fn per_instance(v: f64) -> String {
    format!("{} ms/s", sig3(v * 1e3))
}

/// The idle CPU table's HTML; a line saying it was not measured when `idle_cpu.csv` is absent.
fn idle_table(run: &RunData) -> String {
    let csv = IdleCpuRow::FILE;
    let Some(rows) = run.idle_cpu.as_deref() else {
        return format!(
            "<p class=\"notrun\">Idle CPU per instance: not measured in this run (<code>{csv}</code> is absent).</p>"
        );
    };
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (run.backend_rank(&r.backend), r.alive));
    let mut html = String::from(
        "<h3>Idle CPU per instance</h3><p>Host CPU time consumed by <i>alive</i> idle instances (<code>idle \
         --hold-mib W</code>, the sweep's own) over one window: every thread of each instance's host process tree \
         (VMM and vCPU threads, emulator, runtime shim, container init), from <code>/proc/PID/task/TID/schedstat</code>. \
         Work the host kernel does outside those threads is not in it. One window per row (n = 1); \
         <i>per instance</i> is CPU milliseconds per idle instance per second (1000 ms/s = one core busy).</p>",
    );
    if rows.is_empty() {
        html.push_str(&no_rows(csv, "has no idle CPU row"));
        return html;
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                backend(&r.backend),
                num(&r.alive.to_string(), csv),
                num(&fmt_secs(r.window_s), csv),
                num(&fmt_secs(r.host_cpu_s), csv),
                num(&per_instance(r.cpu_s_per_instance_per_s), csv),
            ]
        })
        .collect();
    html.push_str(&table(&["backend", "alive", "window", "host CPU", "per instance"], &body));
    html
}

/// An iteration latency cell; a zero is shown as what it is: iterations shorter than the instance
/// clock's tick (a guest without a high-resolution clock source, e.g. an emulated one whose clock
/// advances by 10 ms jiffies).
fn iteration_cell(v: f64, csv: &str) -> String {
    if v > 0.0 {
        num(&fmt_secs(v), csv)
    } else {
        format!("{} <span class=\"unsup\">under the instance clock's tick</span>", num("0", csv))
    }
}

/// The victim table and chart; a line saying it was not measured when `victim.csv` is absent.
fn victim_part(run: &RunData) -> Result<(String, Option<Chart>), ChartError> {
    let csv = VictimRow::FILE;
    let Some(rows) = run.victim.as_deref() else {
        let line = format!(
            "<p class=\"notrun\">Victim among neighbours: not measured in this run (<code>{csv}</code> is absent).</p>"
        );
        return Ok((line, None));
    };
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (run.backend_rank(&r.backend), r.neighbours));
    let mut html = String::from(
        "<h3>A victim among idle neighbours</h3><p>At chosen steps of the sweep one more instance of the same \
         backend (the victim) is launched among the <i>neighbours</i> alive and runs the <code>cpu</code> scenario \
         in equal iterations, each timed on the instance's own clock: its launch-to-ready (host clock) and the \
         median and 99th percentile (nearest rank) of its iterations. One victim per row; <i>iterations</i> is the \
         sample count of its percentiles. The victim shares the host's CPUs with whatever else runs there: read its \
         p99 with the host load recorded in run.json.</p>",
    );
    if rows.is_empty() {
        html.push_str(&no_rows(csv, "has no victim row"));
        return Ok((html, None));
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                backend(&r.backend),
                num(&r.neighbours.to_string(), csv),
                num(&fmt_secs(r.launch_to_ready_s), csv),
                num(&r.iterations.to_string(), csv),
                iteration_cell(r.iter_p50_s, csv),
                iteration_cell(r.iter_p99_s, csv),
                if r.iter_p50_s > 0.0 {
                    num(&format!("{}×", sig3(r.iter_p99_s / r.iter_p50_s)), csv)
                } else {
                    "<span class=\"na\">-</span>".into()
                },
            ]
        })
        .collect();
    html.push_str(&table(
        &["backend", "neighbours", "launch to ready", "iterations", "iteration p50", "iteration p99", "p99 / p50"],
        &body,
    ));
    let series: Vec<XySeries> = run
        .backends()
        .into_iter()
        .filter_map(|b| {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.backend == b && r.iter_p99_s.is_finite() && r.iter_p99_s > 0.0)
                .map(|r| (f64::from(r.neighbours), r.iter_p99_s * 1e3))
                .collect();
            (!pts.is_empty()).then(|| XySeries {
                legend: format!("{b} (n={} victims)", pts.len()),
                backend: b,
                points: pts,
                fit: None,
            })
        })
        .collect();
    let n: usize = series.iter().map(|s| s.points.len()).sum();
    let spec = XyChart {
        file: "density_victim.svg".into(),
        title: format!("Victim's iteration p99 vs idle neighbours alive (n = {n} victims)"),
        x_desc: "idle neighbours alive".into(),
        y_desc: "victim iteration p99 (ms)".into(),
        series,
        connect: true,
        log_y: false,
        integer_x: true,
    };
    let chart = xy_chart(&spec)?;
    if let Some(c) = &chart {
        html.push_str(&figure(c, csv));
    }
    Ok((html, chart))
}

/// The density section's part on idle neighbours: its HTML and charts.
pub fn part(run: &RunData) -> Result<(String, Vec<Chart>), ChartError> {
    let mut html = idle_table(run);
    let (v, chart) = victim_part(run)?;
    html.push_str(&v);
    Ok((html, chart.into_iter().collect()))
}

/// Rows for the report fixture (`crate::fixture`): idle CPU and a victim at 1 and 10 alive for the
/// fixture's `container` and `microvm`.
pub fn fixture_rows() -> (Vec<IdleCpuRow>, Vec<VictimRow>) {
    let mut idle = Vec::new();
    let mut victims = Vec::new();
    for (b, cpu, launch) in [("container", 2e-5, 0.004), ("microvm", 1e-4, 0.003)] {
        for alive in [1u32, 10] {
            let host_cpu_s = cpu * f64::from(alive) * 2.0;
            idle.push(IdleCpuRow {
                backend: b.into(),
                alive,
                window_s: 2.0,
                host_cpu_s,
                cpu_s_per_instance_per_s: cpu,
            });
            victims.push(VictimRow {
                backend: b.into(),
                neighbours: alive,
                launch_to_ready_s: launch * (1.0 + f64::from(alive) / 100.0),
                iterations: 200,
                iter_p50_s: 5e-4,
                iter_p99_s: 5e-4 * (1.5 + f64::from(alive) / 10.0),
            });
        }
    }
    (idle, victims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_shows_idle_cpu_and_victim_tables_and_a_chart() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let run = RunData::load(&rd).unwrap();
        let (html, charts) = part(&run).unwrap();
        assert!(html.contains("Idle CPU per instance") && html.contains("0.0200 ms/s"), "{html}");
        assert!(html.contains("A victim among idle neighbours") && html.contains("2.50×"), "{html}");
        assert_eq!(charts.len(), 1);
        assert!(charts[0].svg.contains("n = 4 victims"), "the chart names its sample count");
        assert!(!html.contains("clock's tick"));
        // A guest whose clock ticks every 10 ms: its iterations read as 0, shown as under the tick.
        let mut victims = run.victim.clone().unwrap();
        victims[0].iter_p50_s = 0.0;
        rd.write_csv(&victims).unwrap();
        let (html, _) = part(&RunData::load(&rd).unwrap()).unwrap();
        assert!(html.contains("under the instance clock's tick"), "{html}");
        // An older run without the files says so instead of showing empty tables.
        std::fs::remove_file(d.path().join(IdleCpuRow::FILE)).unwrap();
        std::fs::remove_file(d.path().join(VictimRow::FILE)).unwrap();
        let run = RunData::load(&rd).unwrap();
        let (html, charts) = part(&run).unwrap();
        assert!(html.contains("not measured in this run") && charts.is_empty(), "{html}");
    }
}
